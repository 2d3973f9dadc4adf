/* SPDX-License-Identifier: GPL-2.0-or-later */
/* mediactl log, verify, evidence anchor|rotate|purge, status (R-EV-4, R-EV-7, R-EV-10). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "client.h"
#include "cleanup.h"
#include "evdb.h"
#include "mediactl.h"
#include "record.h"

/* Prints one record in the chosen format; first is true for the first record. */
static void print_record(output_format fmt, const mamori_record *rec, bool first)
{
        char t[32];
        mamori_format_time(rec->time_us, t);
        switch (fmt) {
        case FORMAT_TABLE:
                printf("%8" PRIu64 "  %s%s  %-22s %-8s uid=%-6u ", rec->seq, t, rec->clock_synced ? " " : "?",
                       rec->type, rec->component, rec->uid);
                for (size_t i = 0; i < rec->n_pairs; i++) {
                        printf("%s%s=", i ? " " : "", rec->pairs[i].key);
                        print_text_safe(stdout, rec->pairs[i].value);
                }
                putchar('\n');
                break;
        case FORMAT_JSON:
                printf("%s{\"seq\":%" PRIu64 ",\"time\":\"%s\",\"time_us\":%" PRId64 ",\"clock_synced\":%s,\"type\":",
                       first ? "[\n" : ",\n", rec->seq, t, rec->time_us, rec->clock_synced ? "true" : "false");
                print_json_string(stdout, rec->type);
                printf(",\"uid\":%u,\"component\":", rec->uid);
                print_json_string(stdout, rec->component);
                fputs(",\"host\":", stdout);
                print_json_string(stdout, rec->host);
                fputs(",\"machine_id\":", stdout);
                print_json_string(stdout, rec->machine_id);
                fputs(",\"fields\":{", stdout);
                for (size_t i = 0; i < rec->n_pairs; i++) {
                        if (i)
                                putchar(',');
                        print_json_string(stdout, rec->pairs[i].key);
                        putchar(':');
                        print_json_string(stdout, rec->pairs[i].value);
                }
                fputs("}}", stdout);
                break;
        case FORMAT_CSV: {
                if (first)
                        puts("seq,time,clock_synced,type,uid,component,host,machine_id,fields");
                printf("%" PRIu64 ",%s,%d,", rec->seq, t, rec->clock_synced);
                print_csv_cell(stdout, rec->type);
                printf(",%u,", rec->uid);
                print_csv_cell(stdout, rec->component);
                putchar(',');
                print_csv_cell(stdout, rec->host);
                putchar(',');
                print_csv_cell(stdout, rec->machine_id);
                putchar(',');
                size_t len = 1;
                for (size_t i = 0; i < rec->n_pairs; i++)
                        len += strlen(rec->pairs[i].key) + strlen(rec->pairs[i].value) + 3;
                _cleanup_free_ char *all = malloc(len);
                if (all) {
                        all[0] = 0;
                        for (size_t i = 0; i < rec->n_pairs; i++) {
                                strcat(all, i ? "; " : "");
                                strcat(all, rec->pairs[i].key);
                                strcat(all, "=");
                                strcat(all, rec->pairs[i].value);
                        }
                        print_csv_cell(stdout, all);
                }
                putchar('\n');
                break;
        }
        default:
                break;
        }
}

static void log_usage(FILE *f)
{
        fputs("Usage: mediactl log [--since T] [--until T] [--user U] [--type TYPE] [--media NO]\n"
              "                    [--limit N] [--format table|json|csv] [--socket PATH]\n"
              "T is YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC), now, or -7d/-12h.\n"
              "--type matches the type and its subtypes (--type media matches media.output).\n", f);
}

int verb_log(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"since", required_argument, NULL, 's'}, {"until", required_argument, NULL, 'u'},
                {"user", required_argument, NULL, 'U'},  {"type", required_argument, NULL, 't'},
                {"media", required_argument, NULL, 'm'}, {"limit", required_argument, NULL, 'n'},
                {"format", required_argument, NULL, 'f'}, {"socket", required_argument, NULL, 'S'},
                {"help", no_argument, NULL, 'h'},        {},
        };
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL;
        if (mamori_msg_new(MAMORI_MSG_EVIDENCE_QUERY, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        const char *sock = NULL;
        output_format fmt = FORMAT_TABLE;
        int o;
        int64_t t;
        optind = 1;
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (o) {
                case 's':
                case 'u':
                        if (mamori_parse_time(optarg, &t) < 0) {
                                fprintf(stderr, "mediactl: not a date or time: \"");
                                print_text_safe(stderr, optarg);
                                fprintf(stderr, "\"\n");
                                return EXIT_USAGE;
                        }
                        mamori_msg_put_i64(req, o == 's' ? MAMORI_F_EV_SINCE : MAMORI_F_EV_UNTIL, t);
                        break;
                case 'U': mamori_msg_put_str(req, MAMORI_F_USER, optarg); break;
                case 'm': mamori_msg_put_str(req, MAMORI_F_EV_MEDIA, optarg); break;
                case 't':
                        if (!mamori_record_type_valid(optarg)) {
                                fprintf(stderr, "mediactl: not a record type: \"");
                                print_text_safe(stderr, optarg);
                                fprintf(stderr, "\"\n");
                                return EXIT_USAGE;
                        }
                        mamori_msg_put_str(req, MAMORI_F_EV_TYPE, optarg);
                        break;
                case 'n': {
                        char *end;
                        errno = 0;
                        unsigned long long n = strtoull(optarg, &end, 10);
                        if (errno || *end || !*optarg || optarg[0] == '-' || n == 0) {
                                fprintf(stderr, "mediactl: --limit takes a positive whole number\n");
                                return EXIT_USAGE;
                        }
                        mamori_msg_put_u64(req, MAMORI_F_LIMIT, n);
                        break;
                }
                case 'f':
                        fmt = format_from_string(optarg);
                        if (fmt == _FORMAT_INVALID) {
                                fprintf(stderr, "mediactl: --format is table, json or csv\n");
                                return EXIT_USAGE;
                        }
                        break;
                case 'S': sock = optarg; break;
                case 'h': log_usage(stdout); return 0;
                default: log_usage(stderr); return EXIT_USAGE;
                }
        }
        if (optind != argc) {
                log_usage(stderr);
                return EXIT_USAGE;
        }
        _cleanup_close_ int fd = ctl_connect(sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        if (mamori_wire_send(fd, req) < 0) {
                fprintf(stderr, "mediactl: policyd did not answer\n");
                return EXIT_UNAVAILABLE;
        }
        uint64_t n = 0;
        for (;;) {
                _cleanup_(mamori_msg_freep) mamori_msg *m = NULL;
                if (mamori_wire_recv(fd, &m) < 0) {
                        fprintf(stderr, "mediactl: policyd closed the connection mid-answer\n");
                        return EXIT_UNAVAILABLE;
                }
                if (m->status == MAMORI_OK)
                        break;
                if (m->status != MAMORI_MORE) {
                        const char *text = NULL;
                        (void)mamori_msg_get_str(m, MAMORI_F_TEXT, MAMORI_STR_MAX, &text);
                        fprintf(stderr, "mediactl: %s: %s\n", mamori_status_to_string(m->status), text ? text : "");
                        return ctl_exit_for(m->status);
                }
                for (size_t i = 0; i < m->n_fields; i++) {
                        if (m->fields[i].tag != MAMORI_F_EV_BODY)
                                continue;
                        _cleanup_(mamori_record_freep) mamori_record *rec = NULL;
                        if (mamori_record_decode(m->fields[i].data, m->fields[i].len, &rec) < 0) {
                                fprintf(stderr, "mediactl: a record does not decode; run mediactl verify\n");
                                continue;
                        }
                        print_record(fmt, rec, n == 0);
                        n++;
                }
        }
        if (fmt == FORMAT_JSON)
                puts(n ? "\n]" : "[]");
        else if (fmt == FORMAT_TABLE)
                fprintf(stderr, "%" PRIu64 " records\n", n);
        return 0;
}

/* Reads an anchor file. Returns 0 or prints why not and returns -1. */
static int read_anchor(const char *path, uint8_t pk[MAMORI_PK_LEN])
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char line[256];
        if (!f || !fgets(line, sizeof line, f) || mamori_anchor_parse(line, pk) < 0) {
                fprintf(stderr, "mediactl: %s is not an anchor file (mamori-anchor-v1 ...)\n", path);
                return -1;
        }
        return 0;
}

/* Feeds one export message into the verifier. Returns 0 or -EBADMSG. */
static int feed(mamori_verifier *v, const mamori_msg *m)
{
        const mamori_field *f = m->fields, *end = m->fields + m->n_fields;
        while (f < end) {
                uint64_t a, b;
                if (f->tag == MAMORI_F_EV_SEQ && end - f >= 3 && f[1].tag == MAMORI_F_EV_BODY &&
                    f[2].tag == MAMORI_F_EV_HASH && f[2].len == MAMORI_HASH_LEN &&
                    mamori_field_uint(f, 8, &a) >= 0) {
                        mamori_verifier_add_record(v, a, f[1].data, f[1].len, f[2].data);
                        f += 3;
                } else if (f->tag == MAMORI_F_EV_CHECKPOINT && end - f >= 4 &&
                           f[1].tag == MAMORI_F_EV_EPOCH && f[2].tag == MAMORI_F_EV_HASH &&
                           f[3].tag == MAMORI_F_EV_SIG && f[2].len == MAMORI_HASH_LEN &&
                           f[3].len == MAMORI_SIG_LEN && mamori_field_uint(f, 8, &a) >= 0 &&
                           mamori_field_uint(&f[1], 4, &b) >= 0) {
                        mamori_verifier_add_checkpoint(v, a, b, f[2].data, f[3].data);
                        f += 4;
                } else if (f->tag == MAMORI_F_EV_EPOCH && end - f >= 3 &&
                           f[1].tag == MAMORI_F_EV_FIRST_SEQ && f[2].tag == MAMORI_F_EV_PUBKEY &&
                           f[2].len == MAMORI_PK_LEN && mamori_field_uint(f, 4, &a) >= 0 &&
                           mamori_field_uint(&f[1], 8, &b) >= 0) {
                        bool cert = end - f >= 4 && f[3].tag == MAMORI_F_EV_CERT && f[3].len == MAMORI_SIG_LEN;
                        mamori_verifier_add_epoch(v, a, b, f[2].data, cert ? f[3].data : NULL);
                        f += cert ? 4 : 3;
                } else
                        return -EBADMSG;
        }
        return 0;
}

/* Streams the live store from policyd into the verifier. Returns 0, or an exit code. */
static int verify_live(int fd, mamori_verifier *v)
{
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL;
        if (mamori_msg_new(MAMORI_MSG_EVIDENCE_EXPORT, 0, &req) < 0 || mamori_wire_send(fd, req) < 0)
                return EXIT_UNAVAILABLE;
        for (;;) {
                _cleanup_(mamori_msg_freep) mamori_msg *m = NULL;
                if (mamori_wire_recv(fd, &m) < 0) {
                        fprintf(stderr, "mediactl: policyd closed the connection mid-export\n");
                        return EXIT_UNAVAILABLE;
                }
                if (m->status == MAMORI_OK)
                        return 0;
                if (m->status != MAMORI_MORE) {
                        fprintf(stderr, "mediactl: %s\n", mamori_status_to_string(m->status));
                        return ctl_exit_for(m->status);
                }
                if (feed(v, m) < 0) {
                        fprintf(stderr, "mediactl: policyd sent an export that does not decode\n");
                        return EXIT_UNAVAILABLE;
                }
        }
}

/* Asks policyd for the store's own anchor (weaker than an anchor kept off the host). */
static int live_anchor(int fd, uint8_t pk[MAMORI_PK_LEN])
{
        _cleanup_(mamori_msg_freep) mamori_msg *m = NULL;
        const uint8_t *p;
        if (mamori_client_call_simple(fd, MAMORI_MSG_EVIDENCE_ANCHOR, &m) < 0 || m->status != MAMORI_OK ||
            mamori_msg_get_bytes(m, MAMORI_F_EV_PUBKEY, MAMORI_PK_LEN, &p) < 0)
                return -1;
        memcpy(pk, p, MAMORI_PK_LEN);
        return 0;
}

static void verify_usage(FILE *f)
{
        fputs("Usage: mediactl verify [--anchor FILE] [--socket PATH]   (the live store)\n"
              "       mediactl verify --db FILE --anchor FILE            (an offline copy)\n"
              "Exit 0 when intact, 1 naming the first record that does not fit.\n", f);
}

int verb_verify(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"db", required_argument, NULL, 'd'}, {"anchor", required_argument, NULL, 'a'},
                {"socket", required_argument, NULL, 'S'}, {"quiet", no_argument, NULL, 'q'},
                {"help", no_argument, NULL, 'h'}, {},
        };
        const char *db_path = NULL, *anchor_path = NULL, *sock = NULL;
        bool quiet = false;
        int o;
        optind = 1;
        while ((o = getopt_long(argc, argv, "hq", opts, NULL)) >= 0)
                switch (o) {
                case 'd': db_path = optarg; break;
                case 'a': anchor_path = optarg; break;
                case 'S': sock = optarg; break;
                case 'q': quiet = true; break;
                case 'h': verify_usage(stdout); return 0;
                default: verify_usage(stderr); return EXIT_USAGE;
                }
        if (optind != argc || (db_path && !anchor_path)) {
                verify_usage(stderr);
                return EXIT_USAGE;
        }
        uint8_t anchor[MAMORI_PK_LEN];
        if (anchor_path && read_anchor(anchor_path, anchor) < 0)
                return EXIT_USAGE;
        mamori_verify_result res;
        int r;
        if (db_path) {
                if (access(db_path, R_OK) < 0) {
                        fprintf(stderr, "mediactl: cannot read %s: %m\n", db_path);
                        return EXIT_UNAVAILABLE;
                }
                _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
                if (mamori_evdb_open(db_path, true, &db) < 0)
                        return EXIT_UNAVAILABLE;
                r = mamori_evdb_verify(db, anchor, &res);
                if (r < 0)
                        return EXIT_UNAVAILABLE;
        } else {
                _cleanup_close_ int fd = ctl_connect(sock);
                if (fd < 0)
                        return EXIT_UNAVAILABLE;
                if (!anchor_path) {
                        if (live_anchor(fd, anchor) < 0) {
                                fprintf(stderr, "mediactl: policyd refused its anchor (needs a reviewer role)\n");
                                return EXIT_NO;
                        }
                        fprintf(stderr, "mediactl: warning: checking against the store's own anchor; "
                                        "pass --anchor with the copy exported at set-up for an independent check\n");
                }
                mamori_verifier *v;
                if (mamori_verifier_new(anchor, &v) < 0)
                        return EXIT_UNAVAILABLE;
                r = verify_live(fd, v);
                if (r != 0) {
                        mamori_verifier_free(v);
                        return r;
                }
                r = mamori_verifier_finish(v, &res);
                mamori_verifier_free(v);
        }
        if (r == 0) {
                if (!quiet)
                        printf("intact: %s\n", res.message);
                return 0;
        }
        printf("NOT INTACT: %s at seq %" PRIu64 ": ", mamori_verify_fault_to_string(res.fault), res.seq);
        print_text_safe(stdout, res.message);
        putchar('\n');
        return EXIT_NO;
}

/* mediactl evidence anchor|rotate|purge */
int verb_evidence(int argc, char *argv[])
{
        const char *sock = NULL;
        int i = 1;
        if (argc >= 3 && streq(argv[1], "--socket")) {
                sock = argv[2];
                i = 3;
        }
        if (argc - i == 3 && streq(argv[i + 1], "--socket")) {
                sock = argv[i + 2];
                argc -= 2;
        }
        if (argc - i != 1 || (!streq(argv[i], "anchor") && !streq(argv[i], "rotate") && !streq(argv[i], "purge"))) {
                fputs("Usage: mediactl evidence anchor|rotate|purge [--socket PATH]\n"
                      "  anchor  print the anchor (epoch 0 public key): keep a copy off this host\n"
                      "  rotate  start a new epoch key now (root)\n"
                      "  purge   delete whole epochs past their retention period now (root)\n", stderr);
                return EXIT_USAGE;
        }
        uint16_t type = streq(argv[i], "anchor") ? MAMORI_MSG_EVIDENCE_ANCHOR
                        : streq(argv[i], "rotate") ? MAMORI_MSG_EVIDENCE_ROTATE : MAMORI_MSG_EVIDENCE_PURGE;
        _cleanup_close_ int fd = ctl_connect(sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL, *m = NULL;
        if (mamori_msg_new(type, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        int st = ctl_call(fd, req, &m);
        if (st != MAMORI_OK)
                return st < 0 ? EXIT_UNAVAILABLE : ctl_exit_for(st);
        const uint8_t *pk;
        uint32_t e;
        uint64_t n;
        if (type == MAMORI_MSG_EVIDENCE_ANCHOR && mamori_msg_get_bytes(m, MAMORI_F_EV_PUBKEY, MAMORI_PK_LEN, &pk) >= 0) {
                char line[96];
                fputs(mamori_anchor_format(pk, line), stdout);
        } else if (type == MAMORI_MSG_EVIDENCE_ROTATE && mamori_msg_get_u32(m, MAMORI_F_EV_EPOCH, &e) >= 0)
                printf("epoch %" PRIu32 " begins\n", e);
        else if (type == MAMORI_MSG_EVIDENCE_PURGE && mamori_msg_get_u64(m, MAMORI_F_COUNT, &n) >= 0)
                printf("%" PRIu64 " records purged\n", n);
        else {
                fprintf(stderr, "mediactl: unexpected answer from policyd\n");
                return EXIT_UNAVAILABLE;
        }
        return 0;
}

/* The agent's lines: its own status file (state, policyd reachability, spool depth; the
 * idle lock's timeout, exemption and locked sessions), shown even when policyd is down,
 * which is when the spool depth matters. */
static void agent_status(void)
{
        _cleanup_fclose_ FILE *f = fopen("/run/mamori-agent/status", "re");
        char line[640], state[32] = "?", policyd[32] = "?", spool[24] = "?";
        char idle[16] = "?", timeout[16] = "?", sessions[16] = "?", locked[16] = "?", by[160] = "", why[520] = "";
        if (!f) {
                puts("agent: not running");
                return;
        }
        const struct {
                const char *key;
                char *buf;
                size_t size;
        } keys[] = {
                {"state=", state, sizeof state},       {"policyd=", policyd, sizeof policyd},
                {"spool=", spool, sizeof spool},       {"idle=", idle, sizeof idle},
                {"idle_timeout=", timeout, sizeof timeout}, {"idle_sessions=", sessions, sizeof sessions},
                {"idle_locked=", locked, sizeof locked},    {"idle_exempt_approver=", by, sizeof by},
                {"idle_exempt_reason=", why, sizeof why},
        };
        while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = 0;
                for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                        if (!strncmp(line, keys[i].key, strlen(keys[i].key)))
                                snprintf(keys[i].buf, keys[i].size, "%.*s", (int)keys[i].size - 1,
                                         line + strlen(keys[i].key));
        }
        printf("agent: %s, policyd %s, spool %s records\n", state, policyd, spool);
        if (streq(idle, "exempt"))
                printf("idle lock: exempt (approved by %s: %s)\n", by, why);
        else
                printf("idle lock: %s, timeout %s s, %s sessions watched, %s locked\n", idle, timeout, sessions,
                       locked);
}

int verb_status(int argc, char *argv[])
{
        const char *sock = argc == 3 && streq(argv[1], "--socket") ? argv[2] : NULL;
        if (argc != 1 && !sock) {
                fputs("Usage: mediactl status [--socket PATH]\n", stderr);
                return EXIT_USAGE;
        }
        agent_status();
        _cleanup_close_ int fd = ctl_connect(sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL, *m = NULL;
        if (mamori_msg_new(MAMORI_MSG_STATUS, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        int st = ctl_call(fd, req, &m);
        if (st != MAMORI_OK)
                return st < 0 ? EXIT_UNAVAILABLE : ctl_exit_for(st);
        const char *version = "?", *host = "?";
        uint64_t seq = 0;
        uint32_t epoch = 0, uid = 0;
        (void)mamori_msg_get_str(m, MAMORI_F_VERSION, 64, &version);
        (void)mamori_msg_get_str(m, MAMORI_F_HOST, 256, &host);
        (void)mamori_msg_get_u64(m, MAMORI_F_EV_SEQ, &seq);
        (void)mamori_msg_get_u32(m, MAMORI_F_EV_EPOCH, &epoch);
        (void)mamori_msg_get_u32(m, MAMORI_F_UID, &uid);
        printf("policyd %s on ", version);
        print_text_safe(stdout, host);
        printf("\nevidence: last seq %" PRIu64 ", epoch %" PRIu32 "\nyou: uid %" PRIu32 ", roles:", seq, epoch, uid);
        for (size_t i = 0; i < m->n_fields; i++) {
                const char *r;
                if (m->fields[i].tag == MAMORI_F_ROLE && mamori_field_str(&m->fields[i], 32, &r) >= 0)
                        printf(" %s", r);
        }
        putchar('\n');
        return 0;
}
