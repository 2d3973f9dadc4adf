/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mediactl grant create|list|revoke|export|import|consume: a media-use manager's
 * signed permissions (R-PERM-1..3, R-OUT-1..3). Grants are signed here with the
 * manager's key (common/grant.h) and verified by policyd against its trusted keys.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "grant.h"
#include "mediactl.h"
#include "record.h"

static void sodium_freep(void *p)
{
        sodium_free(*(void **)p);
}

static int fd_arg(const char *s)
{
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        return errno || *end || !*s || v < 0 || v > 65535 ? -1 : (int)v;
}

/* Submits a signed grant; prints its id. Returns the exit code. */
static int submit(const char *sock, const uint8_t *blob, size_t len)
{
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL, *rep = NULL;
        if (mamori_msg_new(MAMORI_MSG_GRANT_SUBMIT, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        mamori_msg_put_bytes(req, MAMORI_F_GRANT, blob, len);
        _cleanup_close_ int fd = ctl_connect(sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        int st = ctl_call(fd, req, &rep);
        if (st < 0)
                return EXIT_UNAVAILABLE;
        const uint8_t *id;
        char hex[33];
        if (st == MAMORI_OK && mamori_msg_get_bytes(rep, MAMORI_F_GRANT_ID, MAMORI_GRANT_ID_LEN, &id) >= 0)
                printf("%s\n", mamori_grant_id_format(id, hex));
        return ctl_exit_for(st);
}

/* Writes text to path ("-" is stdout), refusing to replace a file. Returns 0 or exit code. */
static int write_new(const char *path, const char *text)
{
        if (streq(path, "-")) {
                fputs(text, stdout);
                return 0;
        }
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
                fprintf(stderr, "mediactl: cannot write \"");
                print_text_safe(stderr, path);
                fprintf(stderr, "\": %m\n");
                return EXIT_NO;
        }
        return 0;
}

static void create_usage(FILE *f)
{
        fputs("Usage: mediactl grant create (--media NO | --all) (--user U | --group G)\n"
              "         (--host H | --any-host) [--from T] --until T --mode MODE[,MODE...] [--once]\n"
              "         --key FILE [--passphrase-fd N] [--out FILE]\n"
              "MODE: read, write-encrypted, write-passphrase, write-plain. T: YYYY-MM-DD[THH:MM], now, +8h.\n", f);
}

static int create(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"media", required_argument, NULL, 'm'}, {"all", no_argument, NULL, 'a'},
                {"user", required_argument, NULL, 'u'},  {"group", required_argument, NULL, 'g'},
                {"host", required_argument, NULL, 'H'},  {"any-host", no_argument, NULL, 'A'},
                {"from", required_argument, NULL, 'f'},  {"until", required_argument, NULL, 't'},
                {"mode", required_argument, NULL, 'M'},  {"once", no_argument, NULL, 'o'},
                {"key", required_argument, NULL, 'k'},   {"passphrase-fd", required_argument, NULL, 'F'},
                {"out", required_argument, NULL, 'O'},   {"socket", required_argument, NULL, 'X'},
                {"help", no_argument, NULL, 'h'},        {},
        };
        mamori_grant g = {0};
        const char *key = NULL, *out = NULL, *sock = NULL, *media = NULL, *host = NULL, *subject = NULL;
        bool have_until = false, have_from = false;
        int pass_fd = -1, o, subjects = 0, medias = 0, hosts = 0;
        optind = 1;
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (o) {
                case 'm': media = optarg; medias++; break;
                case 'a': media = "*"; medias++; break;
                case 'u':
                case 'g':
                        subject = optarg;
                        subjects++;
                        g.subject_kind = o == 'u' ? MAMORI_SUBJECT_USER : MAMORI_SUBJECT_GROUP;
                        break;
                case 'H': host = optarg; hosts++; break;
                case 'A': host = "*"; hosts++; break;
                case 'f':
                case 't':
                        if (ctl_parse_date(optarg, o == 't', o == 'f' ? &g.from_us : &g.until_us) < 0)
                                return EXIT_USAGE;
                        *(o == 'f' ? &have_from : &have_until) = true;
                        break;
                case 'M':
                        if (mamori_modes_parse(optarg, &g.modes) < 0) {
                                ctl_bad_value("not a mode (read, write-encrypted, write-passphrase, write-plain)", optarg);
                                return EXIT_USAGE;
                        }
                        break;
                case 'o': g.flags |= MAMORI_GRANT_ONCE; break;
                case 'k': key = optarg; break;
                case 'F':
                        if ((pass_fd = fd_arg(optarg)) < 0) {
                                ctl_bad_value("not a file descriptor", optarg);
                                return EXIT_USAGE;
                        }
                        break;
                case 'O': out = optarg; break;
                case 'X': sock = optarg; break;
                case 'h': create_usage(stdout); return 0;
                default: create_usage(stderr); return EXIT_USAGE;
                }
        }
        if (medias != 1 || subjects != 1 || hosts != 1 || !have_until || !g.modes || !key || optind != argc) {
                fprintf(stderr, "mediactl: give one of --media/--all, one of --user/--group, one of "
                                "--host/--any-host, --until, --mode and --key\n");
                return EXIT_USAGE;
        }
        if (!have_from)
                g.from_us = mamori_now_us();
        if (!streq(media, "*") && !mamori_media_no_valid(media)) {
                ctl_bad_value("not a management number", media);
                return EXIT_USAGE;
        }
        if (strlen(subject) > MAMORI_NAME_MAX || !mamori_name_valid(subject)) {
                ctl_bad_value("not a user or group name", subject);
                return EXIT_USAGE;
        }
        if (strlen(host) > MAMORI_HOST_MAX || !mamori_host_valid(host, true)) {
                ctl_bad_value("not a host name", host);
                return EXIT_USAGE;
        }
        if (g.until_us <= g.from_us) {
                fprintf(stderr, "mediactl: --until is not after --from\n");
                return EXIT_USAGE;
        }
        strcpy(g.subject, subject);
        strcpy(g.media, media);
        strcpy(g.host, host);
        g.created_us = mamori_now_us();
        randombytes_buf(g.id, sizeof g.id);

        _cleanup_(sodium_freep) uint8_t *sk = sodium_malloc(MAMORI_GRANT_SK_LEN);
        if (!sk)
                return EXIT_UNAVAILABLE;
        int r = manager_load_key(key, pass_fd, sk);
        if (r < 0)
                return r == -EBADE ? EXIT_NO : EXIT_USAGE;
        crypto_sign_ed25519_sk_to_pk(g.manager_pk, sk);
        uint8_t blob[MAMORI_GRANT_MAX];
        int n = mamori_grant_sign(&g, sk, blob);
        sodium_memzero(sk, MAMORI_GRANT_SK_LEN);
        if (n < 0) {
                fprintf(stderr, "mediactl: the grant could not be made\n");
                return EXIT_USAGE;
        }
        if (out) {
                _cleanup_free_ char *text = NULL;
                if (mamori_grant_armor(blob, n, &text) < 0)
                        return EXIT_UNAVAILABLE;
                r = write_new(out, text);
                if (r)
                        return r;
        }
        return submit(sock, blob, n);
}

typedef struct grant_view {
        output_format fmt;
        size_t n;
        const char *export_path;
        int export_r;
} grant_view;

static int print_grant(const mamori_msg *m, void *u)
{
        grant_view *v = u;
        const mamori_field *f = NULL;
        for (size_t i = 0; i < m->n_fields; i++)
                if (m->fields[i].tag == MAMORI_F_GRANT)
                        f = &m->fields[i];
        mamori_grant g;
        if (!f || f->len <= MAMORI_GRANT_SIG_LEN || mamori_grant_decode(f->data, f->len - MAMORI_GRANT_SIG_LEN, &g) < 0)
                return 0;
        if (v->export_path) {
                _cleanup_free_ char *text = NULL;
                if (mamori_grant_armor(f->data, f->len, &text) < 0)
                        return -ENOMEM;
                v->export_r = write_new(v->export_path, text);
                v->n++;
                return 0;
        }
        const char *state = "", *grantor = "";
        (void)mamori_msg_get_str(m, MAMORI_F_GRANT_STATE, 16, &state);
        (void)mamori_msg_get_str(m, MAMORI_F_MGR_NAME, 64, &grantor);
        char id[33], from[32], until[32], modes[64];
        mamori_grant_id_format(g.id, id);
        mamori_format_time(g.from_us, from);
        mamori_format_time(g.until_us, until);
        mamori_modes_format(g.modes, modes);
        const char *kind = g.subject_kind == MAMORI_SUBJECT_USER ? "user" : "group";
        switch (v->fmt) {
        case FORMAT_JSON:
                printf("%s{\"id\":\"%s\",\"state\":\"%s\",\"media\":", v->n ? ",\n" : "[\n", id, state);
                print_json_string(stdout, g.media);
                printf(",\"%s\":", kind);
                print_json_string(stdout, g.subject);
                printf(",\"host\":\"%s\",\"from\":\"%s\",\"until\":\"%s\",\"modes\":\"%s\",\"once\":%s,\"grantor\":",
                       g.host, from, until, modes, g.flags & MAMORI_GRANT_ONCE ? "true" : "false");
                print_json_string(stdout, grantor);
                putchar('}');
                break;
        case FORMAT_CSV:
                if (!v->n)
                        puts("id,state,media,kind,subject,host,from,until,modes,once,grantor");
                printf("%s,%s,", id, state);
                print_csv_cell(stdout, g.media);
                printf(",%s,%s,%s,%s,%s,\"%s\",%d,", kind, g.subject, g.host, from, until, modes,
                       g.flags & MAMORI_GRANT_ONCE ? 1 : 0);
                print_csv_cell(stdout, grantor);
                putchar('\n');
                break;
        default:
                if (!v->n)
                        printf("%-32s %-8s %-12s %-20s %-12s %-27s %-27s %s\n", "ID", "STATE", "MEDIA", "WHO", "HOST",
                               "FROM", "UNTIL", "MODES (GRANTOR)");
                printf("%s %-8s ", id, state);
                print_text_safe(stdout, g.media);
                printf("\t%s:%s\t%s\t%s %s %s%s (", kind, g.subject, g.host, from, until, modes,
                       g.flags & MAMORI_GRANT_ONCE ? ",once" : "");
                print_text_safe(stdout, grantor);
                puts(")");
        }
        v->n++;
        return 0;
}

static int grant_list(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"media", required_argument, NULL, 'm'}, {"user", required_argument, NULL, 'u'},
                {"format", required_argument, NULL, 'f'}, {"socket", required_argument, NULL, 'X'}, {},
        };
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL;
        if (mamori_msg_new(MAMORI_MSG_GRANT_LIST, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        grant_view v = {.fmt = FORMAT_TABLE};
        const char *sock = NULL;
        int o;
        optind = 1;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                switch (o) {
                case 'm': mamori_msg_put_str(req, MAMORI_F_MEDIA_NO, optarg); break;
                case 'u': mamori_msg_put_str(req, MAMORI_F_USER, optarg); break;
                case 'f':
                        v.fmt = format_from_string(optarg);
                        if (v.fmt == _FORMAT_INVALID) {
                                ctl_bad_value("--format is table, json or csv", optarg);
                                return EXIT_USAGE;
                        }
                        break;
                case 'X': sock = optarg; break;
                default: return EXIT_USAGE;
                }
        }
        _cleanup_close_ int fd = ctl_connect(sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        int st = ctl_stream(fd, req, print_grant, &v);
        if (st < 0)
                return EXIT_UNAVAILABLE;
        if (v.fmt == FORMAT_JSON && st == MAMORI_OK)
                puts(v.n ? "\n]" : "[]");
        return ctl_exit_for(st);
}

/* Parses "ID [--key FILE] [--passphrase-fd N] [--socket P] [--user U]" style options. */
typedef struct id_opts {
        uint8_t id[MAMORI_GRANT_ID_LEN];
        const char *key, *sock, *user;
        int pass_fd;
} id_opts;

static int parse_id_opts(int argc, char *argv[], id_opts *x, const char *usage)
{
        static const struct option opts[] = {
                {"key", required_argument, NULL, 'k'}, {"passphrase-fd", required_argument, NULL, 'F'},
                {"socket", required_argument, NULL, 'X'}, {"user", required_argument, NULL, 'u'}, {},
        };
        *x = (id_opts){.pass_fd = -1};
        if (argc < 2 || argv[1][0] == '-') {
                fputs(usage, stderr);
                return EXIT_USAGE;
        }
        if (mamori_grant_id_parse(argv[1], x->id) < 0) {
                ctl_bad_value("not a grant id (32 lower-case hex digits)", argv[1]);
                return EXIT_USAGE;
        }
        int o;
        optind = 1;
        while ((o = getopt_long(argc - 1, argv + 1, "", opts, NULL)) >= 0) {
                switch (o) {
                case 'k': x->key = optarg; break;
                case 'X': x->sock = optarg; break;
                case 'u': x->user = optarg; break;
                case 'F':
                        if ((x->pass_fd = fd_arg(optarg)) >= 0)
                                break;
                        ctl_bad_value("not a file descriptor", optarg);
                        return EXIT_USAGE;
                default: fputs(usage, stderr); return EXIT_USAGE;
                }
        }
        return 0;
}

static int grant_revoke(int argc, char *argv[])
{
        id_opts x;
        int r = parse_id_opts(argc, argv, &x, "Usage: mediactl grant revoke ID --key FILE [--passphrase-fd N]\n");
        if (r)
                return r;
        if (!x.key) {
                fprintf(stderr, "mediactl: --key FILE is required: a revocation is signed too\n");
                return EXIT_USAGE;
        }
        _cleanup_(sodium_freep) uint8_t *sk = sodium_malloc(MAMORI_GRANT_SK_LEN);
        if (!sk)
                return EXIT_UNAVAILABLE;
        r = manager_load_key(x.key, x.pass_fd, sk);
        if (r < 0)
                return r == -EBADE ? EXIT_NO : EXIT_USAGE;
        uint8_t blob[MAMORI_REVOKE_LEN + MAMORI_GRANT_SIG_LEN];
        mamori_revoke_sign(x.id, mamori_now_us(), sk, blob);
        sodium_memzero(sk, MAMORI_GRANT_SK_LEN);
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL, *rep = NULL;
        if (mamori_msg_new(MAMORI_MSG_GRANT_REVOKE, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        mamori_msg_put_bytes(req, MAMORI_F_REVOCATION, blob, sizeof blob);
        _cleanup_close_ int fd = ctl_connect(x.sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        int st = ctl_call(fd, req, &rep);
        if (st < 0)
                return EXIT_UNAVAILABLE;
        if (st == MAMORI_OK)
                puts("revoked");
        return ctl_exit_for(st);
}

static int grant_export(int argc, char *argv[])
{
        id_opts x;
        int r = parse_id_opts(argc, argv, &x, "Usage: mediactl grant export ID FILE\n");
        if (r)
                return r;
        if (optind + 1 != argc - 1) {
                fprintf(stderr, "Usage: mediactl grant export ID FILE\n");
                return EXIT_USAGE;
        }
        grant_view v = {.export_path = argv[1 + optind]};
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL;
        if (mamori_msg_new(MAMORI_MSG_GRANT_LIST, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        mamori_msg_put_bytes(req, MAMORI_F_GRANT_ID, x.id, sizeof x.id);
        _cleanup_close_ int fd = ctl_connect(x.sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        int st = ctl_stream(fd, req, print_grant, &v);
        if (st < 0)
                return EXIT_UNAVAILABLE;
        if (st == MAMORI_OK && v.n == 0) {
                fprintf(stderr, "mediactl: no such grant\n");
                return EXIT_NO;
        }
        return st == MAMORI_OK ? v.export_r : ctl_exit_for(st);
}

static int grant_import(int argc, char *argv[])
{
        const char *sock = argc >= 4 && streq(argv[2], "--socket") ? argv[3] : NULL;
        if (argc < 2 || (argc != 2 && !sock)) {
                fprintf(stderr, "Usage: mediactl grant import FILE\n");
                return EXIT_USAGE;
        }
        _cleanup_fclose_ FILE *f = streq(argv[1], "-") ? NULL : fopen(argv[1], "re");
        if (!f && !streq(argv[1], "-")) {
                fprintf(stderr, "mediactl: cannot open \"");
                print_text_safe(stderr, argv[1]);
                fprintf(stderr, "\": %m\n");
                return EXIT_USAGE;
        }
        char text[4 * MAMORI_GRANT_MAX + 1];
        size_t n = fread(text, 1, sizeof text, f ? f : stdin);
        uint8_t blob[MAMORI_GRANT_MAX];
        int len = n < sizeof text ? mamori_grant_dearmor(text, n, blob) : -EBADMSG;
        if (len < 0) {
                fprintf(stderr, "mediactl: not a mamori grant file (damaged, or not armored)\n");
                return EXIT_NO;
        }
        return submit(sock, blob, len);
}

static int consume(int argc, char *argv[])
{
        id_opts x;
        int r = parse_id_opts(argc, argv, &x, "Usage: mediactl grant consume ID [--user U]\n");
        if (r)
                return r;
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL, *rep = NULL;
        if (mamori_msg_new(MAMORI_MSG_GRANT_CONSUME, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        mamori_msg_put_bytes(req, MAMORI_F_GRANT_ID, x.id, sizeof x.id);
        if (x.user)
                mamori_msg_put_str(req, MAMORI_F_USER, x.user);
        _cleanup_close_ int fd = ctl_connect(x.sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        int st = ctl_call(fd, req, &rep);
        if (st < 0)
                return EXIT_UNAVAILABLE;
        if (st == MAMORI_OK)
                puts("used");
        return ctl_exit_for(st);
}

int verb_grant(int argc, char *argv[])
{
        if (argc < 2) {
                fprintf(stderr, "Usage: mediactl grant create|list|revoke|export|import|consume ...\n");
                return EXIT_USAGE;
        }
        const char *sub = argv[1];
        argc--, argv++;
        if (streq(sub, "create"))
                return create(argc, argv);
        if (streq(sub, "list"))
                return grant_list(argc, argv);
        if (streq(sub, "revoke"))
                return grant_revoke(argc, argv);
        if (streq(sub, "export"))
                return grant_export(argc, argv);
        if (streq(sub, "import"))
                return grant_import(argc, argv);
        if (streq(sub, "consume"))
                return consume(argc, argv);
        ctl_bad_value("unknown grant verb", sub);
        return EXIT_USAGE;
}
