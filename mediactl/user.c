/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mediactl user status|unlock|ban|unban|totp-enroll (R-AUTH-1, R-AUTH-2, R-AUTH-3).
 * policyd decides who may: staff may read their own status; administrators
 * manage everyone. totp-enroll prints the otpauth:// URI and its QR code once: the
 * secret is kept by policyd alone and no request returns it again.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <qrencode.h>
#include <sodium.h>

#include "client.h"
#include "cleanup.h"
#include "mediactl.h"
#include "record.h"

static const struct {
        const char *name;
        uint16_t type;
} user_verbs[] = {
        {"status", MAMORI_MSG_USER_STATUS}, {"unlock", MAMORI_MSG_USER_UNLOCK},
        {"ban", MAMORI_MSG_USER_BAN},       {"unban", MAMORI_MSG_USER_UNBAN},
        {"totp-enroll", MAMORI_MSG_TOTP_ENROLL},
};

static void user_usage(FILE *f)
{
        fprintf(f, "Usage: mediactl user status USER [--format table|json]\n"
                   "       mediactl user unlock USER\n"
                   "       mediactl user ban USER [--reason TEXT]\n"
                   "       mediactl user unban USER\n"
                   "       mediactl user totp-enroll USER [--no-qr]\n"
                   "Common: --socket PATH\n");
}

/* One source's failed attempts, from a MAMORI_F_AUTH_SOURCE field. */
typedef struct source_count {
        uint64_t failures;
        int64_t last;
        char name[257];
} source_count;

static uint64_t get_be64(const uint8_t *p)
{
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

/* Decodes field f into s. Returns 0, or -EBADMSG for a field that is not one. */
static int source_decode(const mamori_field *f, source_count *s)
{
        if (f->len < 16 || f->len - 16 >= sizeof s->name || !mamori_utf8_valid(f->data + 16, f->len - 16))
                return -EBADMSG;
        s->failures = get_be64(f->data);
        s->last = (int64_t)get_be64(f->data + 8);
        memcpy(s->name, f->data + 16, f->len - 16);
        s->name[f->len - 16] = 0;
        return 0;
}

/* Prints the per-source failure counts of a status reply (all time, most recent first). */
static void print_sources(const mamori_msg *m, output_format fmt)
{
        bool first = true;
        if (fmt == FORMAT_JSON)
                fputs(",\"sources\":[", stdout);
        for (size_t i = 0; i < m->n_fields; i++) {
                source_count s;
                if (m->fields[i].tag != MAMORI_F_AUTH_SOURCE || source_decode(&m->fields[i], &s) < 0)
                        continue;
                char t[32];
                mamori_format_time(s.last, t);
                if (fmt == FORMAT_JSON) {
                        fputs(first ? "{\"source\":" : ",{\"source\":", stdout);
                        print_json_string(stdout, s.name);
                        printf(",\"failures\":%" PRIu64 ",\"last\":", s.failures);
                        print_json_string(stdout, t);
                        putchar('}');
                } else {
                        fputs(first ? "by source (all time):\n" : "", stdout);
                        printf("  %6" PRIu64 "  last %s  ", s.failures, t);
                        print_text_safe(stdout, s.name);
                        putchar('\n');
                }
                first = false;
        }
        if (fmt == FORMAT_JSON)
                putchar(']');
}

static void print_status(const mamori_msg *m, const char *user, output_format fmt)
{
        uint64_t failures = 0, limit = 0;
        int64_t until = 0;
        uint8_t banned = 0, totp = 0;
        (void)mamori_msg_get_u64(m, MAMORI_F_COUNT, &failures);
        (void)mamori_msg_get_u64(m, MAMORI_F_LIMIT, &limit);
        (void)mamori_msg_get_i64(m, MAMORI_F_AUTH_UNTIL, &until);
        (void)mamori_msg_get_u8(m, MAMORI_F_AUTH_BANNED, &banned);
        (void)mamori_msg_get_u8(m, MAMORI_F_AUTH_TOTP, &totp);
        bool locked = until > mamori_now_us();
        char t[32] = "";
        if (locked)
                mamori_format_time(until, t);
        if (fmt == FORMAT_JSON) {
                fputs("{\"user\":", stdout);
                print_json_string(stdout, user);
                printf(",\"failures\":%" PRIu64 ",\"limit\":%" PRIu64 ",\"locked\":%s,\"locked_until\":",
                       failures, limit, locked ? "true" : "false");
                print_json_string(stdout, t);
                printf(",\"banned\":%s,\"totp\":%s", banned ? "true" : "false", totp ? "true" : "false");
                print_sources(m, fmt);
                puts("}");
                return;
        }
        fputs("user:      ", stdout);
        print_text_safe(stdout, user);
        printf("\nfailures:  %" PRIu64 " of %" PRIu64 "\nlocked:    %s%s%s\nbanned:    %s\ntotp:      %s\n",
               failures, limit, locked ? "yes, until " : "no", t, "", banned ? "yes" : "no",
               totp ? "enrolled" : "not enrolled");
        print_sources(m, fmt);
}

/* Prints the URI as a QR code with half-block characters (two modules per line). */
static void print_qr(const char *uri)
{
        QRcode *q = QRcode_encodeString(uri, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
        if (!q) {
                fprintf(stderr, "mediactl: cannot make the QR code: %m\n");
                return;
        }
        int w = q->width, quiet = 2;
        for (int y = -quiet; y < w + quiet; y += 2) {
                for (int x = -quiet; x < w + quiet; x++) {
                        bool top = y >= 0 && y < w && x >= 0 && x < w && (q->data[y * w + x] & 1);
                        bool bot = y + 1 >= 0 && y + 1 < w && x >= 0 && x < w && (q->data[(y + 1) * w + x] & 1);
                        /* Dark modules print as spaces on a light background. */
                        fputs(top && bot ? " " : top ? "▄" : bot ? "▀" : "█", stdout);
                }
                putchar('\n');
        }
        sodium_memzero(q->data, (size_t)w * (size_t)w);
        QRcode_free(q);
}

static int print_enroll(const mamori_msg *m, bool qr)
{
        const char *uri;
        if (mamori_msg_get_str(m, MAMORI_F_AUTH_URI, 1024, &uri) < 0) {
                fprintf(stderr, "mediactl: policyd sent no URI\n");
                return EXIT_UNAVAILABLE;
        }
        printf("Scan this with the user's authenticator, or enter the URI. It is shown once only.\n%s\n", uri);
        if (qr)
                print_qr(uri);
        return 0;
}

int verb_user(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"format", required_argument, NULL, 'f'}, {"reason", required_argument, NULL, 'r'},
                {"no-qr", no_argument, NULL, 'Q'},        {"socket", required_argument, NULL, 'S'},
                {"help", no_argument, NULL, 'h'},         {},
        };
        const char *sock = NULL, *reason = NULL;
        output_format fmt = FORMAT_TABLE;
        bool qr = true;
        int o;
        while ((o = getopt_long(argc, argv, "f:r:S:h", opts, NULL)) >= 0)
                switch (o) {
                case 'f':
                        fmt = format_from_string(optarg);
                        if (fmt != FORMAT_TABLE && fmt != FORMAT_JSON)
                                return user_usage(stderr), EXIT_USAGE;
                        break;
                case 'r': reason = optarg; break;
                case 'Q': qr = false; break;
                case 'S': sock = optarg; break;
                case 'h': user_usage(stdout); return 0;
                default: user_usage(stderr); return EXIT_USAGE;
                }
        if (argc - optind != 2)
                return user_usage(stderr), EXIT_USAGE;
        const char *sub = argv[optind], *user = argv[optind + 1];
        int type = -1;
        for (size_t i = 0; i < ELEMENTSOF(user_verbs); i++)
                if (streq(sub, user_verbs[i].name))
                        type = user_verbs[i].type;
        if (type < 0)
                return user_usage(stderr), EXIT_USAGE;
        int fd = ctl_connect(sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        mamori_msg *req, *reply = NULL;
        if (mamori_msg_new((uint16_t)type, 0, &req) < 0)
                return close(fd), EXIT_UNAVAILABLE;
        mamori_msg_put_str(req, MAMORI_F_USER, user);
        if (reason)
                mamori_msg_put_str(req, MAMORI_F_AUTH_REASON, reason);
        int st = ctl_call(fd, req, &reply);
        mamori_msg_free(req);
        close(fd);
        if (st < 0)
                return EXIT_UNAVAILABLE;
        int ret = ctl_exit_for(st);
        if (st == MAMORI_OK && type == MAMORI_MSG_USER_STATUS)
                print_status(reply, user, fmt);
        else if (st == MAMORI_OK && type == MAMORI_MSG_TOTP_ENROLL)
                ret = print_enroll(reply, qr);
        if (reply) {
                sodium_memzero(reply->buf, reply->alloc); /* may hold the URI */
                mamori_msg_free(reply);
        }
        return ret;
}
