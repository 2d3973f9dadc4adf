/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-bench-decision: decision latency through the socket (issue 4). Builds a
 * store with M registered media and G signed grants (through the policyd library:
 * the same tables and a real trusted key, each grant really signed), starts a real
 * mamori-policyd on it, and asks N decisions one after another as the agent would,
 * each with a user and a mode, timing each round trip. Every decision writes its
 * evidence record and is answered only after that record is durable (fsync), as in
 * production. Prints the median, 99th and 99.9th percentile and the maximum.
 *
 *   mamori-bench-decision [--media 10000] [--grants 100000] [--decisions 20000]
 *                         [--policyd PATH] [--dir DIR]
 * Must run as root (the agent's role) or as the configured agent user.
 *
 * On a shared, loaded machine the tail is the scheduler's: compare the ping baseline,
 * and run it as `chrt -f 10 mamori-bench-decision` (policyd inherits the real-time
 * policy) to see the decision's own latency; the CPU time per decision does not
 * depend on other load.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "grant.h"
#include "media.h"
#include "store.h"

static int64_t mono_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
}

__attribute__((noreturn)) static void die_sql(sqlite3 *db, const char *what)
{
        fprintf(stderr, "mamori-bench-decision: %s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
}

/* Fills the ledger and the grant table in one transaction. */
static void populate(const char *dir, unsigned n_media, unsigned n_grants)
{
        mamori_config *cfg;
        store *st;
        if (mamori_config_new_default(&cfg) < 0 || store_open(dir, cfg, &st) < 0) {
                fprintf(stderr, "mamori-bench-decision: cannot open a store in %s\n", dir);
                exit(1);
        }
        sqlite3 *db = store_writer(st);
        if (media_schema(db) < 0 || sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
                die_sql(db, "schema");
        uint8_t pk[MAMORI_GRANT_PK_LEN], sk[MAMORI_GRANT_SK_LEN];
        crypto_sign_keypair(pk, sk);
        sqlite3_stmt *m, *u, *g, *k;
        if (sqlite3_prepare_v2(db, "INSERT INTO media VALUES (?1, '0781', '5567', ?2, 'none', '', 'USB',"
                               " 'bench', 'manager', 0, 4102444800000000, '', 'active', 0, 0, NULL, NULL, NULL)",
                               -1, &m, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db, "INSERT INTO media_users VALUES (?1, ?2)", -1, &u, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db, "INSERT INTO grants VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                               " NULL, NULL)", -1, &g, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db, "INSERT INTO managers VALUES (?1, 'bench-manager', 1, 0)", -1, &k, NULL) != SQLITE_OK)
                die_sql(db, "prepare");
        sqlite3_bind_blob(k, 1, pk, sizeof pk, SQLITE_STATIC);
        if (sqlite3_step(k) != SQLITE_DONE)
                die_sql(db, "manager");
        char no[32], serial[32], user[32];
        for (unsigned i = 0; i < n_media; i++) {
                snprintf(no, sizeof no, "M-%05u", i);
                snprintf(serial, sizeof serial, "SER%08u", i);
                sqlite3_reset(m);
                sqlite3_bind_text(m, 1, no, -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(m, 2, serial, -1, SQLITE_TRANSIENT);
                if (sqlite3_step(m) != SQLITE_DONE)
                        die_sql(db, "media");
                for (unsigned j = 0; j < 3; j++) { /* three users per medium */
                        snprintf(user, sizeof user, "staff%03u", (i * 3 + j) % 997);
                        sqlite3_reset(u);
                        sqlite3_bind_text(u, 1, no, -1, SQLITE_TRANSIENT);
                        sqlite3_bind_text(u, 2, user, -1, SQLITE_TRANSIENT);
                        if (sqlite3_step(u) != SQLITE_DONE)
                                die_sql(db, "users");
                }
        }
        int64_t now = mamori_now_us();
        for (unsigned i = 0; i < n_grants; i++) {
                unsigned med = i % n_media;
                mamori_grant gr = {.created_us = now, .subject_kind = MAMORI_SUBJECT_USER};
                randombytes_buf(gr.id, sizeof gr.id);
                memcpy(gr.manager_pk, pk, sizeof pk);
                /* a mix: current, future and past-but-stored grants, all hosts or one */
                gr.from_us = now - 3600000000LL + (i % 10 == 9 ? 7200000000LL : 0);
                gr.until_us = gr.from_us + (int64_t)(1 + i % 48) * 3600000000LL;
                gr.modes = 1u << (i % 4);
                gr.flags = i % 17 == 0 ? MAMORI_GRANT_ONCE : 0;
                snprintf(gr.subject, sizeof gr.subject, "staff%03u", (med * 3 + i / n_media % 3) % 997);
                snprintf(gr.media, sizeof gr.media, "M-%05u", med);
                snprintf(gr.host, sizeof gr.host, "%s", i % 3 ? "*" : "pc-01");
                uint8_t blob[MAMORI_GRANT_MAX];
                int len = mamori_grant_sign(&gr, sk, blob);
                if (len < 0) {
                        fprintf(stderr, "mamori-bench-decision: signing failed\n");
                        exit(1);
                }
                sqlite3_reset(g);
                sqlite3_bind_blob(g, 1, gr.id, sizeof gr.id, SQLITE_TRANSIENT);
                sqlite3_bind_text(g, 2, gr.media, -1, SQLITE_TRANSIENT);
                sqlite3_bind_int(g, 3, gr.subject_kind);
                sqlite3_bind_text(g, 4, gr.subject, -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(g, 5, gr.host, -1, SQLITE_TRANSIENT);
                sqlite3_bind_int64(g, 6, gr.from_us);
                sqlite3_bind_int64(g, 7, gr.until_us);
                sqlite3_bind_int(g, 8, gr.modes);
                sqlite3_bind_int(g, 9, gr.flags);
                sqlite3_bind_blob(g, 10, pk, sizeof pk, SQLITE_TRANSIENT);
                sqlite3_bind_int64(g, 11, now);
                sqlite3_bind_blob(g, 12, blob, len, SQLITE_TRANSIENT);
                if (sqlite3_step(g) != SQLITE_DONE)
                        die_sql(db, "grants");
        }
        sqlite3_finalize(m);
        sqlite3_finalize(u);
        sqlite3_finalize(g);
        sqlite3_finalize(k);
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                die_sql(db, "commit");
        sodium_memzero(sk, sizeof sk);
        store_free(st);
        mamori_config_free(cfg);
}

/* Starts mamori-policyd on dir; returns its pid once the socket answers. */
static pid_t start_policyd(const char *exe, const char *dir, const char *sock, const char *conf)
{
        pid_t pid = fork();
        if (pid == 0) {
                char log[PATH_MAX + 16];
                snprintf(log, sizeof log, "%s/policyd.log", dir);
                if (!freopen(log, "a", stderr))
                        _exit(127);
                execl(exe, exe, "--state-dir", dir, "--socket", sock, "--config", conf, (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 400; i++) {
                int fd = mamori_client_connect(sock);
                if (fd >= 0) {
                        close(fd);
                        return pid;
                }
                usleep(50000);
        }
        fprintf(stderr, "mamori-bench-decision: policyd did not start (see %s/policyd.log)\n", dir);
        kill(pid, SIGKILL);
        exit(1);
}

/* CPU time (user + system) the process has used, in seconds, from /proc/PID/stat. */
static double cpu_seconds(pid_t pid)
{
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
        unsigned long long ut, st;
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                return -1;
        return (double)(ut + st) / sysconf(_SC_CLK_TCK);
}

/* One decision for medium i (or an unregistered device when i is past the ledger). */
static int ask(int fd, unsigned i, unsigned n_media, uint8_t *ret_verdict)
{
        mamori_msg *req, *rep;
        char serial[32], user[32];
        if (mamori_msg_new(MAMORI_MSG_MEDIA_DECIDE, 0, &req) < 0)
                return -ENOMEM;
        snprintf(serial, sizeof serial, "SER%08u", i);
        snprintf(user, sizeof user, "staff%03u", (i % n_media * 3 + i % 3) % 997);
        mamori_msg_put_str(req, MAMORI_F_DEV_VENDOR, "0781");
        mamori_msg_put_str(req, MAMORI_F_DEV_PRODUCT, "5567");
        mamori_msg_put_str(req, MAMORI_F_DEV_SERIAL, serial);
        mamori_msg_put_str(req, MAMORI_F_DEV_PORT, "1-1");
        mamori_msg_put_str(req, MAMORI_F_HOST, "pc-01");
        mamori_msg_put_str(req, MAMORI_F_DEV_KIND, "storage");
        mamori_msg_put_str(req, MAMORI_F_USER, user);
        mamori_msg_put_u8(req, MAMORI_F_MODE, 1u << (i % 4));
        int r = mamori_client_call(fd, req, &rep);
        mamori_msg_free(req);
        if (r < 0)
                return r;
        r = rep->status == MAMORI_OK ? mamori_msg_get_u8(rep, MAMORI_F_VERDICT, ret_verdict) : -EPROTO;
        mamori_msg_free(rep);
        return r;
}

int main(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"media", required_argument, NULL, 'm'},   {"grants", required_argument, NULL, 'g'},
                {"decisions", required_argument, NULL, 'n'}, {"policyd", required_argument, NULL, 'p'},
                {"dir", required_argument, NULL, 'd'},     {},
        };
        unsigned n_media = 10000, n_grants = 100000, n = 20000;
        char exe[PATH_MAX] = "", self[PATH_MAX];
        const char *base = NULL;
        int o;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                switch (o) {
                case 'm': n_media = strtoul(optarg, NULL, 10); break;
                case 'g': n_grants = strtoul(optarg, NULL, 10); break;
                case 'n': n = strtoul(optarg, NULL, 10); break;
                case 'p': snprintf(exe, sizeof exe, "%s", optarg); break;
                case 'd': base = optarg; break;
                default: return 2;
                }
        }
        if (!n_media || !n || sodium_init() < 0)
                return 2;
        if (!exe[0]) { /* beside us in the build tree */
                ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
                if (l < 0)
                        return 1;
                self[l] = 0;
                snprintf(exe, sizeof exe, "%s/../policyd/mamori-policyd", dirname(self));
        }
        char dir[PATH_MAX], sock[PATH_MAX + 16], conf[PATH_MAX + 16];
        snprintf(dir, sizeof dir, "%s/mamori-bench-decision.XXXXXX", base ? base : "/var/tmp");
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        snprintf(sock, sizeof sock, "%s/sock", dir);
        snprintf(conf, sizeof conf, "%s/mamori.conf", dir);
        FILE *f = fopen(conf, "we");
        if (!f)
                return 1;
        fclose(f);

        int64_t t0 = mono_ns();
        populate(dir, n_media, n_grants);
        printf("populated %u media, %u signed grants in %.1f s (state in %s)\n", n_media, n_grants,
               (mono_ns() - t0) / 1e9, dir);
        pid_t pid = start_policyd(exe, dir, sock, conf);
        int fd = mamori_client_connect(sock);
        int64_t *lat = calloc(n, sizeof *lat);
        unsigned allowed = 0, blocked = 0;
        uint8_t v;
        for (unsigned i = 0; i < 200 && fd >= 0; i++) /* warm-up: page cache, statement cache */
                (void)ask(fd, i * 7919 % n_media, n_media, &v);
        double cpu0 = cpu_seconds(pid);
        for (unsigned i = 0; i < n && fd >= 0 && lat; i++) {
                /* one in 20 is an unregistered device */
                unsigned med = i % 20 == 19 ? n_media + i : (unsigned)((i * 2654435761u) % n_media);
                int64_t a = mono_ns();
                int r = ask(fd, med, n_media, &v);
                lat[i] = mono_ns() - a;
                if (r < 0) {
                        fprintf(stderr, "mamori-bench-decision: decision %u failed: %s\n", i, strerror(-r));
                        kill(pid, SIGTERM);
                        return 1;
                }
                v == MAMORI_VERDICT_ALLOWED ? allowed++ : blocked++;
        }
        double cpu = cpu_seconds(pid) - cpu0;
        /* Baseline: a ping through the same socket (no lookup, no evidence), so that the
         * machine's own scheduling noise can be told from the decision's cost. */
        int64_t *base_lat = calloc(n, sizeof *base_lat);
        for (unsigned i = 0; i < n && fd >= 0 && base_lat; i++) {
                mamori_msg *rep;
                int64_t a = mono_ns();
                if (mamori_client_call_simple(fd, MAMORI_MSG_PING, &rep) < 0)
                        break;
                base_lat[i] = mono_ns() - a;
                mamori_msg_free(rep);
        }
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        if (fd < 0 || !lat || !base_lat)
                return 1;
        qsort(base_lat, n, sizeof *base_lat, cmp_i64);
        printf("baseline ping: median %.3f ms, p99 %.3f ms, p99.9 %.3f ms (socket round trip and scheduling only)\n",
               base_lat[n / 2] / 1e6, base_lat[(size_t)(n * 0.99)] / 1e6, base_lat[(size_t)(n * 0.999)] / 1e6);
        free(base_lat);
        qsort(lat, n, sizeof *lat, cmp_i64);
        printf("decisions: %u (%u allowed, %u blocked), each recorded as evidence before the answer\n", n,
               allowed, blocked);
        printf("latency: median %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n", lat[n / 2] / 1e6,
               lat[(size_t)(n * 0.99)] / 1e6, lat[(size_t)(n * 0.999)] / 1e6, lat[n - 1] / 1e6);
        printf("policyd CPU per decision: %.3f ms (user + system, independent of other load)\n", cpu * 1e3 / n);
        double load[1] = {0};
        if (getloadavg(load, 1) == 1)
                printf("load average during the run: %.2f on %ld CPUs\n", load[0], sysconf(_SC_NPROCESSORS_ONLN));
        printf("target p99 < 1 ms: %s\n", lat[(size_t)(n * 0.99)] < 1000000 ? "met" : "NOT met");
        free(lat);
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : 1;
}
