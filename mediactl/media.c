/* SPDX-License-Identifier: GPL-2.0-or-later */
/* mediactl media register|list|show|change|retire|inventory|decide: the media ledger
 * (R-REG-4..7) and the agent's decision, for checking a policy by hand. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#if HAVE_UDEV
#include <libudev.h>
#endif

#include "cleanup.h"
#include "client.h"
#include "grant.h"
#include "mediactl.h"
#include "record.h"

#define DAY_US (86400LL * 1000000)
#define OVERDUE_DAYS 31 /* the whereabouts check is monthly (R-REG-5) */

void ctl_bad_value(const char *what, const char *value)
{
        fprintf(stderr, "mediactl: %s: \"", what);
        print_text_safe(stderr, value);
        fprintf(stderr, "\"\n");
}

int ctl_parse_date(const char *s, bool end, int64_t *ret)
{
        int64_t t;
        if (mamori_parse_time(s, &t) < 0) {
                ctl_bad_value("not a date or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC), or no such date", s);
                return -EINVAL;
        }
        /* A bare date as an end means "through that day". */
        if (end && strlen(s) == 10 && s[4] == '-')
                t += DAY_US;
        *ret = t;
        return 0;
}

int ctl_stream(int fd, mamori_msg *req, int (*each)(const mamori_msg *m, void *u), void *u)
{
        int r = mamori_wire_send(fd, req);
        if (r < 0) {
                errno = -r;
                fprintf(stderr, "mediactl: policyd did not answer: %m\n");
                return -1;
        }
        for (;;) {
                _cleanup_(mamori_msg_freep) mamori_msg *m = NULL;
                r = mamori_wire_recv(fd, &m);
                if (r < 0) {
                        errno = -r;
                        fprintf(stderr, "mediactl: policyd did not answer: %m\n");
                        return -1;
                }
                if (m->status == MAMORI_MORE) {
                        if (each(m, u) < 0)
                                return -1;
                        continue;
                }
                if (m->status != MAMORI_OK) {
                        const char *text = NULL;
                        (void)mamori_msg_get_str(m, MAMORI_F_TEXT, MAMORI_STR_MAX, &text);
                        fprintf(stderr, "mediactl: %s: ", mamori_status_to_string(m->status));
                        print_text_safe(stderr, text ? text : "refused");
                        fputc('\n', stderr);
                } else if (m->n_fields && !mamori_msg_get_str(m, MAMORI_F_MEDIA_NO, MAMORI_MEDIA_NO_MAX, &(const char *){0}))
                        (void)each(m, u); /* "show": the one answer carries the medium */
                return m->status;
        }
}

/* Reads a device's identity through udev: USB idVendor, idProduct, serial, size and the
 * filesystem UUID. Puts them into req. Returns 0 or an exit code. */
static int device_identity(const char *path, const char *mark, mamori_msg *req)
{
#if HAVE_UDEV
        struct stat st;
        if (stat(path, &st) < 0 || !S_ISBLK(st.st_mode)) {
                ctl_bad_value("not a block device", path);
                return EXIT_USAGE;
        }
        struct udev *u = udev_new();
        struct udev_device *d = u ? udev_device_new_from_devnum(u, 'b', st.st_rdev) : NULL;
        struct udev_device *usb = d ? udev_device_get_parent_with_subsystem_devtype(d, "usb", "usb_device") : NULL;
        int r = 0;
        if (!usb) {
                ctl_bad_value("not a USB storage device (no USB parent in udev)", path);
                r = EXIT_NO;
        } else {
                const char *v = udev_device_get_sysattr_value(usb, "idVendor");
                const char *p = udev_device_get_sysattr_value(usb, "idProduct");
                const char *s = udev_device_get_sysattr_value(usb, "serial");
                struct udev_device *disk = d;
                if (streq(udev_device_get_devtype(d) ?: "", "partition"))
                        disk = udev_device_get_parent(d);
                const char *sz = disk ? udev_device_get_sysattr_value(disk, "size") : NULL;
                const char *uuid = udev_device_get_property_value(d, "ID_FS_UUID");
                mamori_msg_put_str(req, MAMORI_F_DEV_VENDOR, v ?: "");
                mamori_msg_put_str(req, MAMORI_F_DEV_PRODUCT, p ?: "");
                mamori_msg_put_str(req, MAMORI_F_DEV_SERIAL, s ?: "");
                char size[32];
                snprintf(size, sizeof size, "%llu", sz ? strtoull(sz, NULL, 10) * 512ULL : 0ULL);
                printf("Device: vendor %s product %s serial \"", v ?: "?", p ?: "?");
                print_text_safe(stdout, s ?: "");
                printf("\" size %s fs-uuid %s\n", size, uuid ?: "-");
                if (mark && streq(mark, "fs-uuid") && !uuid) {
                        fprintf(stderr, "mediactl: the device has no filesystem UUID\n");
                        r = EXIT_NO;
                } else if (mark && streq(mark, "fs-uuid")) {
                        mamori_msg_put_str(req, MAMORI_F_DEV_MARK_KIND, "fs-uuid");
                        mamori_msg_put_str(req, MAMORI_F_DEV_MARK, uuid);
                } else if (mark && streq(mark, "size")) {
                        mamori_msg_put_str(req, MAMORI_F_DEV_MARK_KIND, "size");
                        mamori_msg_put_str(req, MAMORI_F_DEV_MARK, size);
                } else if (mark && !streq(mark, "none")) {
                        ctl_bad_value("--mark with --device is none, fs-uuid or size", mark);
                        r = EXIT_USAGE;
                }
        }
        udev_device_unref(d);
        udev_unref(u);
        return r;
#else
        fprintf(stderr, "mediactl: built without libudev: give --vendor, --product and --serial\n");
        return EXIT_UNAVAILABLE;
#endif
}

static void register_usage(FILE *f)
{
        fputs("Usage: mediactl media register --no NO --type TYPE --purpose TEXT --manager NAME\n"
              "         --start DATE --end DATE [--remarks TEXT] [--users U1,@GROUP,...]\n"
              "         (--device /dev/sdX [--mark none|fs-uuid|size]\n"
              "          | --vendor HEX4 --product HEX4 --serial S [--fs-uuid U | --size BYTES | --token T])\n"
              "       mediactl media change NO [--type T] [--purpose T] [--manager N] [--start D] [--end D]\n"
              "         [--remarks T] [--users U1,@G,...]\n"
              "DATE is YYYY-MM-DD (UTC); an end date is the last day of use.\n", f);
}

/* Adds "a,b,@g" as repeated user fields. Returns 0 or -EINVAL. */
static int put_users(mamori_msg *req, const char *list)
{
        _cleanup_free_ char *dup = strdup(list);
        if (!dup)
                return -ENOMEM;
        char *save = NULL;
        for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (!mamori_name_valid(t[0] == '@' ? t + 1 : t)) {
                        ctl_bad_value("not a user name or @group", t);
                        return -EINVAL;
                }
                mamori_msg_put_str(req, MAMORI_F_MEDIA_USER, t);
        }
        return 0;
}

/* Shared by register and change: parses options into req. Returns 0 or an exit code. */
static int ledger_options(int argc, char *argv[], mamori_msg *req, bool reg, const char **ret_sock)
{
        static const struct option opts[] = {
                {"no", required_argument, NULL, 'n'},      {"type", required_argument, NULL, 't'},
                {"purpose", required_argument, NULL, 'p'}, {"manager", required_argument, NULL, 'M'},
                {"start", required_argument, NULL, 's'},   {"end", required_argument, NULL, 'e'},
                {"remarks", required_argument, NULL, 'r'}, {"users", required_argument, NULL, 'u'},
                {"device", required_argument, NULL, 'd'},  {"mark", required_argument, NULL, 'k'},
                {"vendor", required_argument, NULL, 'V'},  {"product", required_argument, NULL, 'P'},
                {"serial", required_argument, NULL, 'S'},  {"fs-uuid", required_argument, NULL, 'U'},
                {"size", required_argument, NULL, 'z'},    {"token", required_argument, NULL, 'T'},
                {"socket", required_argument, NULL, 'X'},  {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *device = NULL, *mark = NULL;
        int64_t start = 0, end = 0;
        bool have_start = false, have_end = false;
        int o, marks = 0;
        optind = 1;
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (o) {
                case 'n':
                        if (!mamori_media_no_valid(optarg)) {
                                ctl_bad_value("a management number is 1..32 characters without spaces, "
                                              "control characters, ',' or '*'", optarg);
                                return EXIT_USAGE;
                        }
                        mamori_msg_put_str(req, MAMORI_F_MEDIA_NO, optarg);
                        break;
                case 't': mamori_msg_put_str(req, MAMORI_F_MEDIA_TYPE, optarg); break;
                case 'p': mamori_msg_put_str(req, MAMORI_F_MEDIA_PURPOSE, optarg); break;
                case 'M': mamori_msg_put_str(req, MAMORI_F_MEDIA_MANAGER, optarg); break;
                case 'r': mamori_msg_put_str(req, MAMORI_F_MEDIA_REMARKS, optarg); break;
                case 's':
                case 'e':
                        if (ctl_parse_date(optarg, o == 'e', o == 's' ? &start : &end) < 0)
                                return EXIT_USAGE;
                        *(o == 's' ? &have_start : &have_end) = true;
                        mamori_msg_put_i64(req, o == 's' ? MAMORI_F_MEDIA_START : MAMORI_F_MEDIA_END,
                                           o == 's' ? start : end);
                        break;
                case 'u':
                        if (!reg)
                                mamori_msg_put_u8(req, MAMORI_F_MEDIA_CLEAR_USERS, 1);
                        if (put_users(req, optarg) < 0)
                                return EXIT_USAGE;
                        break;
                case 'd': device = optarg; break;
                case 'k': mark = optarg; break;
                case 'V': mamori_msg_put_str(req, MAMORI_F_DEV_VENDOR, optarg); break;
                case 'P': mamori_msg_put_str(req, MAMORI_F_DEV_PRODUCT, optarg); break;
                case 'S': mamori_msg_put_str(req, MAMORI_F_DEV_SERIAL, optarg); break;
                case 'U':
                case 'z':
                case 'T':
                        marks++;
                        mamori_msg_put_str(req, MAMORI_F_DEV_MARK_KIND, o == 'U' ? "fs-uuid" : o == 'z' ? "size" : "token");
                        mamori_msg_put_str(req, MAMORI_F_DEV_MARK, optarg);
                        break;
                case 'X': *ret_sock = optarg; break;
                case 'h': register_usage(stdout); return -1;
                default: register_usage(stderr); return EXIT_USAGE;
                }
        }
        if (marks > 1) {
                fprintf(stderr, "mediactl: give one distinguishing mark: --fs-uuid, --size or --token\n");
                return EXIT_USAGE;
        }
        if (have_start && have_end && end <= start) {
                fprintf(stderr, "mediactl: --end is before --start\n");
                return EXIT_USAGE;
        }
        if (device)
                return reg ? device_identity(device, mark, req) : EXIT_USAGE;
        return 0;
}

/* Sends a one-answer request; returns the exit code. */
static int simple_call(const char *sock, mamori_msg *req, const char *done)
{
        _cleanup_close_ int fd = ctl_connect(sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        _cleanup_(mamori_msg_freep) mamori_msg *rep = NULL;
        int st = ctl_call(fd, req, &rep);
        if (st < 0)
                return EXIT_UNAVAILABLE;
        if (st == MAMORI_OK && done)
                printf("%s\n", done);
        return ctl_exit_for(st);
}

static int media_register(int argc, char *argv[])
{
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL;
        if (mamori_msg_new(MAMORI_MSG_MEDIA_REGISTER, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        const char *sock = NULL;
        int r = ledger_options(argc, argv, req, true, &sock);
        if (r)
                return r < 0 ? 0 : r;
        if (optind != argc) {
                register_usage(stderr);
                return EXIT_USAGE;
        }
        return simple_call(sock, req, "registered");
}

static int media_change(int argc, char *argv[])
{
        if (argc < 2 || argv[1][0] == '-') {
                register_usage(stderr);
                return EXIT_USAGE;
        }
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL;
        if (mamori_msg_new(MAMORI_MSG_MEDIA_CHANGE, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        mamori_msg_put_str(req, MAMORI_F_MEDIA_NO, argv[1]);
        const char *sock = NULL;
        int r = ledger_options(argc - 1, argv + 1, req, false, &sock);
        if (r)
                return r < 0 ? 0 : r;
        return simple_call(sock, req, "changed");
}

static int media_retire(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"remarks", required_argument, NULL, 'r'}, {"socket", required_argument, NULL, 'X'}, {},
        };
        if (argc < 2 || argv[1][0] == '-') {
                fprintf(stderr, "Usage: mediactl media retire NO [--remarks TEXT]\n");
                return EXIT_USAGE;
        }
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL;
        if (mamori_msg_new(MAMORI_MSG_MEDIA_RETIRE, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        mamori_msg_put_str(req, MAMORI_F_MEDIA_NO, argv[1]);
        const char *sock = NULL;
        int o;
        optind = 1;
        while ((o = getopt_long(argc - 1, argv + 1, "", opts, NULL)) >= 0) {
                if (o == 'r')
                        mamori_msg_put_str(req, MAMORI_F_MEDIA_REMARKS, optarg);
                else if (o == 'X')
                        sock = optarg;
                else
                        return EXIT_USAGE;
        }
        return simple_call(sock, req, "retired");
}

typedef struct medium_view {
        output_format fmt;
        bool inventory, show;
        size_t n;
        int64_t now;
} medium_view;

static const char *get_s(const mamori_msg *m, uint16_t tag)
{
        const char *s = NULL;
        return mamori_msg_get_str(m, tag, MAMORI_STR_MAX, &s) >= 0 ? s : "";
}

static int64_t get_t(const mamori_msg *m, uint16_t tag)
{
        int64_t t = 0;
        return mamori_msg_get_i64(m, tag, &t) >= 0 ? t : 0;
}

static void users_of(const mamori_msg *m, char *buf, size_t size)
{
        size_t n = 0;
        buf[0] = 0;
        for (size_t i = 0; i < m->n_fields && n < size; i++) {
                const char *s;
                if (m->fields[i].tag == MAMORI_F_MEDIA_USER && mamori_field_str(&m->fields[i], 64, &s) >= 0)
                        n += snprintf(buf + n, size - n, "%s%s", n ? "," : "", s);
        }
}

/* YYYY-MM-DD of t; for an end (exclusive), the last day of use. */
static char *date_of(int64_t t, bool end, char buf[static 32])
{
        mamori_format_time(end ? t - 1 : t, buf);
        buf[10] = 0;
        return buf;
}

/* Whereabouts check state: "ok", "overdue" (not seen this month), "never", "-" (retired). */
static const char *check_state(const mamori_msg *m, int64_t now)
{
        if (!streq(get_s(m, MAMORI_F_MEDIA_STATE), "active"))
                return "-";
        int64_t seen = get_t(m, MAMORI_F_MEDIA_SEEN_TIME);
        if (!seen)
                return "never";
        return now - seen > OVERDUE_DAYS * DAY_US ? "overdue" : "ok";
}

static int print_medium(const mamori_msg *m, void *u)
{
        medium_view *v = u;
        char users[4096], a[32], b[32], seen[32] = "never";
        users_of(m, users, sizeof users);
        int64_t st = get_t(m, MAMORI_F_MEDIA_START), en = get_t(m, MAMORI_F_MEDIA_END);
        int64_t seen_t = get_t(m, MAMORI_F_MEDIA_SEEN_TIME);
        if (seen_t)
                mamori_format_time(seen_t, seen);
        static const struct {
                const char *key;
                uint16_t tag;
        } cols[] = {
                {"no", MAMORI_F_MEDIA_NO},           {"state", MAMORI_F_MEDIA_STATE},
                {"type", MAMORI_F_MEDIA_TYPE},       {"purpose", MAMORI_F_MEDIA_PURPOSE},
                {"manager", MAMORI_F_MEDIA_MANAGER}, {"remarks", MAMORI_F_MEDIA_REMARKS},
                {"vendor", MAMORI_F_DEV_VENDOR},     {"product", MAMORI_F_DEV_PRODUCT},
                {"serial", MAMORI_F_DEV_SERIAL},     {"mark_kind", MAMORI_F_DEV_MARK_KIND},
                {"mark", MAMORI_F_DEV_MARK},         {"seen_host", MAMORI_F_MEDIA_SEEN_HOST},
                {"seen_port", MAMORI_F_DEV_PORT},
        };
        switch (v->fmt) {
        case FORMAT_JSON:
                fputs(v->n ? ",\n{" : (v->show ? "{" : "[\n{"), stdout);
                for (size_t i = 0; i < ELEMENTSOF(cols); i++) {
                        printf("%s\"%s\":", i ? "," : "", cols[i].key);
                        print_json_string(stdout, get_s(m, cols[i].tag));
                }
                printf(",\"start\":\"%s\",\"end\":\"%s\",\"start_us\":%" PRId64 ",\"end_us\":%" PRId64,
                       date_of(st, false, a), date_of(en, true, b), st, en);
                printf(",\"last_seen\":\"%s\",\"check\":\"%s\",\"users\":[", seen_t ? seen : "",
                       check_state(m, v->now));
                for (size_t i = 0, k = 0; i < m->n_fields; i++) {
                        const char *s;
                        if (m->fields[i].tag == MAMORI_F_MEDIA_USER && mamori_field_str(&m->fields[i], 64, &s) >= 0) {
                                fputs(k++ ? "," : "", stdout);
                                print_json_string(stdout, s);
                        }
                }
                fputs("]}", stdout);
                break;
        case FORMAT_CSV:
                if (!v->n) {
                        for (size_t i = 0; i < ELEMENTSOF(cols); i++)
                                printf("%s,", cols[i].key);
                        puts("start,end,last_seen,check,users");
                }
                for (size_t i = 0; i < ELEMENTSOF(cols); i++) {
                        print_csv_cell(stdout, get_s(m, cols[i].tag));
                        putchar(',');
                }
                printf("%s,%s,%s,%s,", date_of(st, false, a), date_of(en, true, b), seen_t ? seen : "",
                       check_state(m, v->now));
                print_csv_cell(stdout, users);
                putchar('\n');
                break;
        default:
                if (v->show) {
                        for (size_t i = 0; i < ELEMENTSOF(cols); i++) {
                                printf("%-10s ", cols[i].key);
                                print_text_safe(stdout, get_s(m, cols[i].tag));
                                putchar('\n');
                        }
                        printf("%-10s %s\n%-10s %s\n%-10s %s\n%-10s ", "start", date_of(st, false, a), "end",
                               date_of(en, true, b), "last_seen", seen, "users");
                        print_text_safe(stdout, users);
                        putchar('\n');
                } else if (v->inventory) {
                        if (!v->n)
                                printf("%-20s %-8s %-8s %-27s %-20s %-8s %s\n", "NO", "STATE", "CHECK", "LAST SEEN",
                                       "HOST", "PORT", "MANAGER");
                        print_text_safe(stdout, get_s(m, MAMORI_F_MEDIA_NO));
                        printf("\t%-8s %-8s %-27s ", get_s(m, MAMORI_F_MEDIA_STATE), check_state(m, v->now), seen);
                        print_text_safe(stdout, get_s(m, MAMORI_F_MEDIA_SEEN_HOST));
                        putchar('\t');
                        print_text_safe(stdout, get_s(m, MAMORI_F_DEV_PORT));
                        putchar('\t');
                        print_text_safe(stdout, get_s(m, MAMORI_F_MEDIA_MANAGER));
                        putchar('\n');
                } else {
                        if (!v->n)
                                printf("%-20s %-8s %-10s %-10s %-12s %s\n", "NO", "STATE", "START", "END",
                                       "TYPE/MANAGER", "USERS / PURPOSE");
                        print_text_safe(stdout, get_s(m, MAMORI_F_MEDIA_NO));
                        printf("\t%-8s %s %s ", get_s(m, MAMORI_F_MEDIA_STATE), date_of(st, false, a), date_of(en, true, b));
                        print_text_safe(stdout, get_s(m, MAMORI_F_MEDIA_TYPE));
                        putchar('/');
                        print_text_safe(stdout, get_s(m, MAMORI_F_MEDIA_MANAGER));
                        putchar('\t');
                        print_text_safe(stdout, users);
                        fputs(" / ", stdout);
                        print_text_safe(stdout, get_s(m, MAMORI_F_MEDIA_PURPOSE));
                        putchar('\n');
                }
        }
        v->n++;
        return 0;
}

/* list, show NO, inventory. */
static int media_list(int argc, char *argv[], bool inventory)
{
        static const struct option opts[] = {
                {"format", required_argument, NULL, 'f'}, {"socket", required_argument, NULL, 'X'}, {},
        };
        medium_view v = {.fmt = FORMAT_TABLE, .inventory = inventory, .now = mamori_now_us()};
        const char *sock = NULL, *no = NULL;
        bool show = streq(argv[0], "show");
        if (show) {
                if (argc < 2 || argv[1][0] == '-') {
                        fprintf(stderr, "Usage: mediactl media show NO [--format table|json|csv]\n");
                        return EXIT_USAGE;
                }
                no = argv[1];
                argc--, argv++;
        }
        int o;
        optind = 1;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                if (o == 'f') {
                        v.fmt = format_from_string(optarg);
                        if (v.fmt == _FORMAT_INVALID) {
                                ctl_bad_value("--format is table, json or csv", optarg);
                                return EXIT_USAGE;
                        }
                } else if (o == 'X')
                        sock = optarg;
                else
                        return EXIT_USAGE;
        }
        v.show = show && v.fmt != FORMAT_CSV;
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL;
        if (mamori_msg_new(MAMORI_MSG_MEDIA_LIST, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        if (no)
                mamori_msg_put_str(req, MAMORI_F_MEDIA_NO, no);
        _cleanup_close_ int fd = ctl_connect(sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        int st = ctl_stream(fd, req, print_medium, &v);
        if (st < 0)
                return EXIT_UNAVAILABLE;
        if (v.fmt == FORMAT_JSON && st == MAMORI_OK)
                puts(v.show ? "" : v.n ? "\n]" : "[]");
        return ctl_exit_for(st);
}

static void decide_usage(FILE *f)
{
        fputs("Usage: mediactl media decide --vendor HEX4 --product HEX4 --serial S --port P --host H\n"
              "         [--kind storage|optical] [--fs-uuid U] [--size BYTES] [--token T]\n"
              "         [--user U --mode MODE] [--format table|json]\n"
              "Asks policyd for the agent's verdict (agent role). Exit 0 allowed (and, with --user,\n"
              "permitted), 1 blocked or not permitted.\n", f);
}

static void print_entries(const mamori_msg *m, output_format fmt)
{
        bool first = true;
        for (size_t i = 0; i < m->n_fields; i++) {
                mamori_entry e;
                if (m->fields[i].tag != MAMORI_F_ENTRY || mamori_entry_decode(m->fields[i].data, m->fields[i].len, &e) < 0)
                        continue;
                char modes[64], until[32] = "never", id[33] = "";
                if (e.until_us != INT64_MAX)
                        mamori_format_time(e.until_us, until);
                bool from_grant = !sodium_is_zero(e.id, sizeof e.id);
                if (from_grant)
                        mamori_grant_id_format(e.id, id);
                const char *kind = e.kind == MAMORI_SUBJECT_USER ? "user" : e.kind == MAMORI_SUBJECT_GROUP ? "group" : "any";
                if (fmt == FORMAT_JSON) {
                        printf("%s{\"kind\":\"%s\",\"subject\":", first ? "" : ",", kind);
                        print_json_string(stdout, e.subject);
                        printf(",\"modes\":\"%s\",\"until\":\"%s\",\"once\":%s,\"grant\":\"%s\"}",
                               mamori_modes_format(e.modes, modes), until, e.once ? "true" : "false", id);
                } else {
                        printf("  %s %s: %s until %s%s%s%s\n", kind, e.subject, mamori_modes_format(e.modes, modes),
                               until, e.once ? " (once)" : "", from_grant ? " grant " : " registration", id);
                }
                first = false;
        }
}

static int media_decide(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"vendor", required_argument, NULL, 'V'}, {"product", required_argument, NULL, 'P'},
                {"serial", required_argument, NULL, 'S'}, {"port", required_argument, NULL, 'p'},
                {"host", required_argument, NULL, 'H'},   {"kind", required_argument, NULL, 'k'},
                {"fs-uuid", required_argument, NULL, 'U'}, {"size", required_argument, NULL, 'z'},
                {"token", required_argument, NULL, 'T'},  {"user", required_argument, NULL, 'u'},
                {"mode", required_argument, NULL, 'm'},   {"format", required_argument, NULL, 'f'},
                {"socket", required_argument, NULL, 'X'}, {"help", no_argument, NULL, 'h'},
                {},
        };
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL;
        if (mamori_msg_new(MAMORI_MSG_MEDIA_DECIDE, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        const char *sock = NULL, *kind = "storage";
        output_format fmt = FORMAT_TABLE;
        int o;
        uint8_t mode;
        char *end;
        optind = 1;
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (o) {
                case 'V': mamori_msg_put_str(req, MAMORI_F_DEV_VENDOR, optarg); break;
                case 'P': mamori_msg_put_str(req, MAMORI_F_DEV_PRODUCT, optarg); break;
                case 'S': mamori_msg_put_str(req, MAMORI_F_DEV_SERIAL, optarg); break;
                case 'p': mamori_msg_put_str(req, MAMORI_F_DEV_PORT, optarg); break;
                case 'H': mamori_msg_put_str(req, MAMORI_F_HOST, optarg); break;
                case 'k': kind = optarg; break;
                case 'U': mamori_msg_put_str(req, MAMORI_F_DEV_FS_UUID, optarg); break;
                case 'T': mamori_msg_put_str(req, MAMORI_F_DEV_TOKEN, optarg); break;
                case 'u': mamori_msg_put_str(req, MAMORI_F_USER, optarg); break;
                case 'z':
                        errno = 0;
                        unsigned long long sz = strtoull(optarg, &end, 10);
                        if (errno || *end || !*optarg || optarg[0] == '-') {
                                ctl_bad_value("not a size in bytes", optarg);
                                return EXIT_USAGE;
                        }
                        mamori_msg_put_u64(req, MAMORI_F_DEV_SIZE, sz);
                        break;
                case 'm':
                        if (mamori_modes_parse(optarg, &mode) < 0) {
                                ctl_bad_value("not a mode (read, write-encrypted, write-passphrase, write-plain)", optarg);
                                return EXIT_USAGE;
                        }
                        mamori_msg_put_u8(req, MAMORI_F_MODE, mode);
                        break;
                case 'f':
                        fmt = format_from_string(optarg);
                        if (fmt != FORMAT_TABLE && fmt != FORMAT_JSON) {
                                ctl_bad_value("--format is table or json", optarg);
                                return EXIT_USAGE;
                        }
                        break;
                case 'X': sock = optarg; break;
                case 'h': decide_usage(stdout); return 0;
                default: decide_usage(stderr); return EXIT_USAGE;
                }
        }
        mamori_msg_put_str(req, MAMORI_F_DEV_KIND, kind);
        _cleanup_close_ int fd = ctl_connect(sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        _cleanup_(mamori_msg_freep) mamori_msg *rep = NULL;
        int st = ctl_call(fd, req, &rep);
        if (st < 0)
                return EXIT_UNAVAILABLE;
        if (st != MAMORI_OK)
                return ctl_exit_for(st);
        uint8_t verdict = MAMORI_VERDICT_BLOCKED, permit = 0;
        int64_t next = 0;
        (void)mamori_msg_get_u8(rep, MAMORI_F_VERDICT, &verdict); /* absent: blocked (fail closed) */
        bool asked = mamori_msg_get_u8(rep, MAMORI_F_PERMIT, &permit) >= 0;
        bool have_next = mamori_msg_get_i64(rep, MAMORI_F_NEXT_CHANGE, &next) >= 0;
        char t[32] = "";
        if (have_next)
                mamori_format_time(next, t);
        if (fmt == FORMAT_JSON) {
                printf("{\"verdict\":\"%s\",\"reason\":", mamori_verdict_to_string(verdict));
                print_json_string(stdout, get_s(rep, MAMORI_F_REASON));
                fputs(",\"media\":", stdout);
                print_json_string(stdout, get_s(rep, MAMORI_F_MEDIA_NO));
                printf(",\"next_change\":\"%s\"%s%s,\"rights\":[", t, asked ? ",\"permit\":" : "",
                       asked ? (permit ? "true" : "false") : "");
                print_entries(rep, fmt);
                puts("]}");
        } else {
                printf("verdict: %s", mamori_verdict_to_string(verdict));
                if (*get_s(rep, MAMORI_F_REASON)) {
                        fputs(" (", stdout);
                        print_text_safe(stdout, get_s(rep, MAMORI_F_REASON));
                        putchar(')');
                }
                fputs("\nmedium: ", stdout);
                print_text_safe(stdout, get_s(rep, MAMORI_F_MEDIA_NO));
                printf("\nnext change: %s\n", have_next ? t : "none");
                if (asked)
                        printf("permit: %s\n", permit ? "yes" : "no");
                print_entries(rep, fmt);
        }
        if (verdict == MAMORI_VERDICT_BLOCKED || (asked && !permit))
                return EXIT_NO;
        return 0;
}

int verb_media(int argc, char *argv[])
{
        if (argc < 2) {
                fprintf(stderr, "Usage: mediactl media register|list|show|change|retire|inventory|decide ...\n");
                return EXIT_USAGE;
        }
        const char *sub = argv[1];
        argc--, argv++;
        if (streq(sub, "register"))
                return media_register(argc, argv);
        if (streq(sub, "change"))
                return media_change(argc, argv);
        if (streq(sub, "retire"))
                return media_retire(argc, argv);
        if (streq(sub, "list") || streq(sub, "show"))
                return media_list(argc, argv, false);
        if (streq(sub, "inventory"))
                return media_list(argc, argv, true);
        if (streq(sub, "decide"))
                return media_decide(argc, argv);
        ctl_bad_value("unknown media verb", sub);
        return EXIT_USAGE;
}
