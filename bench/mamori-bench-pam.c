/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Authentication latency, pam_mamori against the stack a user would build today
 * from pam_faillock and pam_oath with the same settings (deny 5, unlock 900 s,
 * TOTP SHA-1, 6 digits, window 1): lockout check + password (pam_matrix under
 * pam_wrapper) + TOTP, one whole pam_start..pam_end per run, median and 99th
 * percentile. mamori's side includes its policyd (durable commits, one fsync per
 * batch) on a socket in the same temporary directory. The stacks take turns in
 * blocks of BLOCK runs, so that both meet the same load on a shared machine.
 *
 * Codes are accepted once per 30 s step by both, so every run needs a fresh step:
 * both stacks run under libfaketime reading one timestamp file that the bench
 * moves on by 30 s before each run (outside the timed part), policyd included.
 *
 *   mamori-bench-pam --policyd PATH --module PATH [--runs N]
 *
 * Needs: libpam-wrapper, libpam-oath, faketime (tools/deps bench).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <liboath/oath.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "wire.h"

#define WRAPPER "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so"
#define MATRIX "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so"
#define FAKETIME "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
#define USER "root"
#define PASSWORD "Bench#pass1"
#define BLOCK 500 /* runs per worker; the stacks take turns */
#define T0 1893456000LL /* 2030-01-01T00:00:00Z: the fake clock's start */

static char dir[] = "/tmp/mamori-bench-pam-XXXXXX";
static char secret[64];
static size_t secret_len;
static char code[16];

static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
        int *k = data;
        struct pam_response *r = calloc((size_t)n, sizeof *r);
        if (!r)
                return PAM_CONV_ERR;
        for (int i = 0; i < n; i++)
                if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF || msg[i]->msg_style == PAM_PROMPT_ECHO_ON)
                        r[i].resp = strdup((*k)++ == 0 ? PASSWORD : code);
        *resp = r;
        return PAM_SUCCESS;
}

static void write_file(const char *name, const char *text)
{
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, name);
        FILE *f = fopen(p, "w");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
                perror(p);
                exit(3);
        }
}

/* Moves the shared fake clock to step i (30 s apart, mid-step). */
static void set_clock(long i)
{
        char t[64];
        time_t s = (time_t)(T0 + 30 * i + 10);
        struct tm tm;
        gmtime_r(&s, &tm);
        strftime(t, sizeof t, "@%Y-%m-%d %H:%M:%S\n", &tm);
        write_file("clock", t);
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
}

static int64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The worker: runs the service N times; appends each run's nanoseconds (int64) to
 * DIR/lat-SERVICE and prints "median_us p99_us failures" of its own runs. */
static int worker(const char *service, long runs, long first_step)
{
        int64_t *lat = calloc((size_t)runs, sizeof *lat);
        long failed = 0;
        for (long i = 0; i < runs; i++) {
                set_clock(first_step + i);
                if (oath_totp_generate2(secret, secret_len, time(NULL), 30, 0, 6, 0, code) != OATH_OK)
                        return 3;
                int k = 0;
                struct pam_conv c = {conv, &k};
                pam_handle_t *ph;
                int64_t t = now_ns();
                int r = pam_start(service, USER, &c, &ph);
                if (r == PAM_SUCCESS)
                        r = pam_authenticate(ph, 0);
                pam_end(ph, r);
                lat[i] = now_ns() - t;
                failed += r != PAM_SUCCESS;
        }
        char p[512];
        snprintf(p, sizeof p, "%s/lat-%s", dir, service);
        FILE *f = fopen(p, "ab");
        if (!f || fwrite(lat, sizeof *lat, (size_t)runs, f) != (size_t)runs || fclose(f) != 0)
                return 3;
        qsort(lat, (size_t)runs, sizeof *lat, cmp_i64);
        printf("%.1f %.1f %ld\n", lat[runs / 2] / 1e3, lat[(runs * 99) / 100] / 1e3, failed);
        free(lat);
        return 0;
}

/* Median and 99th percentile (µs) of every run service's workers appended. Returns
 * the number of runs, or -1. */
static long summarize(const char *service, double res[2])
{
        char p[512];
        snprintf(p, sizeof p, "%s/lat-%s", dir, service);
        FILE *f = fopen(p, "rb");
        if (!f)
                return -1;
        size_t n = 0, alloc = 0;
        int64_t *lat = NULL, v;
        while (fread(&v, sizeof v, 1, f) == 1) {
                if (n == alloc) {
                        alloc = alloc ? alloc * 2 : 1024;
                        int64_t *l = realloc(lat, alloc * sizeof *l);
                        if (!l)
                                return fclose(f), free(lat), -1;
                        lat = l;
                }
                lat[n++] = v;
        }
        fclose(f);
        if (n == 0)
                return free(lat), -1;
        qsort(lat, n, sizeof *lat, cmp_i64);
        res[0] = lat[n / 2] / 1e3;
        res[1] = lat[(n * 99) / 100] / 1e3;
        free(lat);
        return (long)n;
}


/* Enrolls USER's TOTP secret with policyd (as root) and keeps it for code generation. */
static int enroll(const char *sock)
{
        int fd = -1;
        for (int i = 0; i < 200 && fd < 0; i++) {
                fd = mamori_client_connect(sock);
                if (fd < 0)
                        usleep(50000);
        }
        mamori_msg *m, *reply;
        if (fd < 0 || mamori_msg_new(MAMORI_MSG_TOTP_ENROLL, 0, &m) < 0)
                return -1;
        mamori_msg_put_str(m, MAMORI_F_USER, USER);
        int r = mamori_client_call(fd, m, &reply);
        close(fd);
        const char *uri, *s;
        if (r < 0 || reply->status != MAMORI_OK || mamori_msg_get_str(reply, MAMORI_F_AUTH_URI, 1024, &uri) < 0 ||
            !(s = strstr(uri, "secret=")))
                return -1;
        char b32[128];
        snprintf(b32, sizeof b32, "%.*s", (int)strcspn(s + 7, "&"), s + 7);
        char *raw = NULL;
        if (oath_base32_decode(b32, strlen(b32), &raw, &secret_len) != OATH_OK || secret_len > sizeof secret)
                return -1;
        memcpy(secret, raw, secret_len);
        free(raw);
        return 0;
}

static void setup(const char *module)
{
        char buf[4096], hex[130];
        write_file("passdb", USER ":" PASSWORD ":bench-mamori\n" USER ":" PASSWORD ":bench-baseline\n");
        oath_bin2hex(secret, secret_len, hex);
        snprintf(buf, sizeof buf, "HOTP/T30/6 " USER " - %s\n", hex);
        write_file("users.oath", buf);
        mkdir("svc", 0755);
        snprintf(buf, sizeof buf,
                 "auth requisite %1$s preauth socket=%2$s/sock config=%2$s/mamori.conf\n"
                 "auth [success=2 default=ignore] " MATRIX " passdb=%2$s/passdb\n"
                 "auth [default=die] %1$s authfail socket=%2$s/sock config=%2$s/mamori.conf\n"
                 "auth requisite pam_deny.so\n"
                 "auth required pam_permit.so\n"
                 "auth required %1$s authsucc socket=%2$s/sock config=%2$s/mamori.conf\n",
                 module, dir);
        write_file("svc/bench-mamori", buf);
        snprintf(buf, sizeof buf,
                 "auth requisite pam_faillock.so preauth dir=%1$s/tally deny=5 unlock_time=900\n"
                 "auth [success=1 default=bad] " MATRIX " passdb=%1$s/passdb\n"
                 "auth [default=die] pam_faillock.so authfail dir=%1$s/tally deny=5 unlock_time=900\n"
                 "auth required pam_faillock.so authsucc dir=%1$s/tally deny=5 unlock_time=900\n"
                 "auth required pam_oath.so usersfile=%1$s/users.oath window=1 digits=6\n",
                 dir);
        write_file("svc/bench-baseline", buf);
        write_file("svc/other", "auth required pam_deny.so\n"); /* libpam wants a fallback service */
}

/* Runs this program as a worker for service under pam_wrapper and libfaketime. */
static int run_worker(const char *self, const char *service, long runs, long first, double res[3])
{
        char svcdir[512], r[32], f[32];
        snprintf(svcdir, sizeof svcdir, "%s/svc", dir);
        snprintf(r, sizeof r, "%ld", runs);
        snprintf(f, sizeof f, "%ld", first);
        int p[2];
        if (pipe(p) < 0)
                return -1;
        pid_t pid = fork();
        if (pid == 0) {
                dup2(p[1], 1);
                setenv("PAM_WRAPPER", "1", 1);
                setenv("UID_WRAPPER_DISABLE_DEEPBIND", "1", 1);
                setenv("PAM_WRAPPER_SERVICE_DIR", svcdir, 1);
                setenv("LD_PRELOAD", WRAPPER " " FAKETIME, 1);
                execl(self, self, "--worker", service, "--runs", r, "--first", f, "--dir", dir, (char *)NULL);
                _exit(127);
        }
        close(p[1]);
        char out[256] = "";
        ssize_t n = read(p[0], out, sizeof out - 1);
        close(p[0]);
        int st;
        waitpid(pid, &st, 0);
        if (n <= 0 || sscanf(out, "%lf %lf %lf", &res[0], &res[1], &res[2]) != 3)
                return -1;
        return 0;
}

/* Reads the hex secret back from users.oath (worker side). */
static int load_secret(void)
{
        char p[512], line[512], hex[130];
        snprintf(p, sizeof p, "%s/users.oath", dir);
        FILE *f = fopen(p, "r");
        if (!f || !fgets(line, sizeof line, f) || sscanf(line, "%*s %*s %*s %129s", hex) != 1)
                return -1;
        fclose(f);
        secret_len = sizeof secret;
        return oath_hex2bin(hex, secret, &secret_len) == OATH_OK ? 0 : -1;
}

int main(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"policyd", required_argument, NULL, 'p'}, {"module", required_argument, NULL, 'm'},
                {"runs", required_argument, NULL, 'n'},    {"worker", required_argument, NULL, 'w'},
                {"first", required_argument, NULL, 'f'},   {"dir", required_argument, NULL, 'd'}, {},
        };
        const char *policyd = NULL, *module = NULL, *wservice = NULL;
        long runs = 10000, first = 0;
        int o;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) >= 0)
                switch (o) {
                case 'p': policyd = optarg; break;
                case 'm': module = optarg; break;
                case 'n': runs = strtol(optarg, NULL, 10); break;
                case 'w': wservice = optarg; break;
                case 'f': first = strtol(optarg, NULL, 10); break;
                case 'd': snprintf(dir, sizeof dir, "%s", optarg); break;
                default: return 2;
                }
        oath_init();
        if (wservice) {
                if (load_secret() < 0)
                        return 3;
                return worker(wservice, runs, first);
        }
        if (!policyd || !module || runs < 100) {
                fprintf(stderr, "usage: mamori-bench-pam --policyd PATH --module PATH [--runs N >= 100]\n");
                return 2;
        }
        /* Paths are taken before the bench moves into its temporary directory. */
        char *pd_path = realpath(policyd, NULL), *mod_path = realpath(module, NULL);
        if (!pd_path || !mod_path)
                return perror("--policyd/--module"), 2;
        policyd = pd_path;
        module = mod_path;
        if (!mkdtemp(dir) || chdir(dir) < 0 || mkdir("state", 0700) < 0 || mkdir("tally", 0700) < 0)
                return perror("setup"), 3;
        char sock[512], conf[512], clock[512], self[512];
        /* (the worker is this program again, under pam_wrapper and libfaketime) */
        snprintf(sock, sizeof sock, "%s/sock", dir);
        snprintf(conf, sizeof conf, "%s/mamori.conf", dir);
        snprintf(clock, sizeof clock, "%s/clock", dir);
        ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
        if (sl <= 0)
                return 3;
        self[sl] = 0;
        set_clock(0);
        write_file("mamori.conf", "auth: { deny = 5; unlock_time = 900; mfa_users = [ \"" USER "\" ];\n"
                                  "  totp_algorithm = \"sha1\"; totp_digits = 6; totp_window = 1; };\n");
        setenv("FAKETIME_TIMESTAMP_FILE", clock, 1);
        setenv("FAKETIME_NO_CACHE", "1", 1);
        setenv("DONT_FAKE_MONOTONIC", "1", 1);
        pid_t pd = fork();
        if (pd == 0) {
                setenv("LD_PRELOAD", FAKETIME, 1);
                int log = open("policyd.log", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                dup2(log, 2);
                execl(policyd, policyd, "--state-dir", "state", "--socket", sock, "--config", conf, (char *)NULL);
                _exit(127);
        }
        int ret = 3;
        double m[3], b[3];
        if (enroll(sock) < 0) {
                fprintf(stderr, "could not enroll the bench user with policyd (see its log below)\n");
                if (system("cat policyd.log >&2") != 0)
                        fprintf(stderr, "(no log)\n");
                goto out;
        }
        setup(module);
        /* Warm-up (not counted), then the measured runs in alternating blocks, so that
         * both stacks see the same machine (the host is shared: load comes and goes);
         * the order within a block alternates too. Each stack gets its own range of
         * TOTP steps. */
        if (run_worker(self, "bench-mamori", 100, 1, m) < 0 || run_worker(self, "bench-baseline", 100, 1, b) < 0 ||
            unlink("lat-bench-mamori") < 0 || unlink("lat-bench-baseline") < 0) {
                fprintf(stderr, "a warm-up worker failed\n");
                goto out;
        }
        double failed[2] = {0, 0};
        for (long done = 0, blk = 0; done < runs; done += BLOCK, blk++) {
                long n = runs - done < BLOCK ? runs - done : BLOCK;
                for (int k = 0; k < 2; k++) {
                        bool mamori = (k == 0) == (blk % 2 == 0);
                        double res[3];
                        if (run_worker(self, mamori ? "bench-mamori" : "bench-baseline", n, 1000 + done, res) < 0) {
                                fprintf(stderr, "a worker failed\n");
                                goto out;
                        }
                        failed[!mamori] += res[2];
                }
        }
        if (summarize("bench-mamori", m) != runs || summarize("bench-baseline", b) != runs) {
                fprintf(stderr, "the latencies could not be read back\n");
                goto out;
        }
        m[2] = failed[0];
        b[2] = failed[1];
        double load[3] = {0, 0, 0};
        if (getloadavg(load, 3) < 0)
                load[0] = -1;
        printf("authentication (lockout check + password + TOTP), %ld runs each, microseconds\n", runs);
        printf("%-34s %10s %10s %9s\n", "stack", "median", "p99", "failures");
        printf("%-34s %10.1f %10.1f %9.0f\n", "pam_mamori + policyd", m[0], m[1], m[2]);
        printf("%-34s %10.1f %10.1f %9.0f\n", "pam_faillock + pam_oath", b[0], b[1], b[2]);
        printf("ratio mamori/baseline: median %.2f, p99 %.2f\n", m[0] / b[0], m[1] / b[1]);
        printf("(blocks of %d alternating; load average at the end %.2f)\n", BLOCK, load[0]);
        ret = m[2] || b[2] ? 1 : 0; /* every run must authenticate, or the figures mean nothing */
out:
        kill(pd, SIGTERM);
        waitpid(pd, NULL, 0);
        char rm[600];
        snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
        if (system(rm) != 0)
                fprintf(stderr, "could not remove %s\n", dir);
        return ret;
}
