/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-bench-age: age encryption throughput on one file in tmpfs, ours beside
 * the reference `age` CLI, with libsodium's raw ChaCha20-Poly1305 as the ceiling.
 *   mamori-bench-age [--size MiB] [--runs N] [--threads N] [--dir /dev/shm] [--age PATH]
 * Defaults: 1024 MiB, best of 2 runs, threads = online CPUs. The target is
 * mamori at least 1.5 times as fast as `age -r` on encryption. Also printed: a plain
 * read()+write() copy of the file (the I/O any encryptor pays) and the floor it sets
 * with the one-core seal speed: (seal CPU + copy CPU) / cores. On the 2-core build
 * host that floor is ~0.8 s for 1 GiB against age's 1.2-1.5 s, which is why 1.5x is
 * out of reach with libsodium (docs/design.md, "Speed").
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "age.h"
#include "cleanup.h"

#define MiB (1024.0 * 1024.0)

typedef struct bench_cfg {
        size_t size;
        unsigned runs, threads;
        const char *dir, *age;
        char in[4096], out[4096], dec[4096], id_path[4096];
        char recipient[128];
        mamori_age_identity *id;
} bench_cfg;

/* CPU seconds (user + system) of this process, or of its waited-for children. */
static double cpu_seconds(int who)
{
        struct rusage ru;
        getrusage(who, &ru);
        return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds used by the last timed run: wall clock alone is unfair on a shared machine. */
static double last_cpu;

static double now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Writes size random bytes to path. */
static int make_input(const char *path, size_t size)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        _cleanup_free_ uint8_t *buf = malloc(1 << 20);

        if (fd < 0 || !buf)
                return -errno;
        for (size_t off = 0; off < size; off += 1 << 20) {
                size_t n = size - off < (1 << 20) ? size - off : (1 << 20);
                randombytes_buf(buf, n);
                if (write(fd, buf, n) != (ssize_t) n)
                        return -EIO;
        }
        return 0;
}

/* Times one run of our encrypt (in -> out) or decrypt (out -> dec). */
static double time_ours(const bench_cfg *c, bool decrypt)
{
        _cleanup_close_ int in = open(decrypt ? c->out : c->in, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = open(decrypt ? c->dec : c->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                                       0600);
        mamori_age_recipient rc;
        int r;

        if (in < 0 || out < 0 || mamori_age_identity_to_recipient(c->id, &rc) < 0)
                return -1;
        double t = now(), c0 = cpu_seconds(RUSAGE_SELF);
        if (decrypt) {
                mamori_age_identity *ids[] = { c->id };
                r = mamori_age_decrypt_fd(in, out, &(mamori_age_decrypt_opts) {
                        .identities = ids, .n_identities = 1, .threads = c->threads });
        } else
                r = mamori_age_encrypt_fd(in, out, &(mamori_age_encrypt_opts) {
                        .recipients = &rc, .n_recipients = 1, .threads = c->threads });
        t = now() - t;
        last_cpu = cpu_seconds(RUSAGE_SELF) - c0;
        if (r < 0) {
                fprintf(stderr, "mamori %s: %s\n", decrypt ? "decrypt" : "encrypt", strerror(-r));
                return -1;
        }
        return t;
}

/* Times one run of the age CLI: encrypt in -> out, or decrypt out -> dec. */
static double time_age(const bench_cfg *c, bool decrypt)
{
        double t = now(), c0 = cpu_seconds(RUSAGE_CHILDREN);
        pid_t pid = fork();
        int status;

        if (pid < 0)
                return -1;
        if (pid == 0) {
                if (decrypt)
                        execlp(c->age, c->age, "-d", "-i", c->id_path, "-o", c->dec, c->out, (char *) NULL);
                else
                        execlp(c->age, c->age, "-r", c->recipient, "-o", c->out, c->in, (char *) NULL);
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "%s failed\n", c->age);
                return -1;
        }
        t = now() - t;
        last_cpu = cpu_seconds(RUSAGE_CHILDREN) - c0;
        return t;
}

/* Times a plain copy in -> out, 1 MiB read()/write() at a time on one thread, as
 * `cp` would: the I/O any encryptor pays in tmpfs (CPU in *ret_cpu). */
static double time_copy(const bench_cfg *c, double *ret_cpu)
{
        _cleanup_close_ int in = open(c->in, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = open(c->dec, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        _cleanup_free_ uint8_t *buf = malloc(1 << 20);
        ssize_t n;

        if (in < 0 || out < 0 || !buf)
                return -1;
        double t = now(), c0 = cpu_seconds(RUSAGE_SELF);
        while ((n = read(in, buf, 1 << 20)) > 0)
                if (write(out, buf, (size_t) n) != n)
                        return -1;
        t = now() - t;
        *ret_cpu = cpu_seconds(RUSAGE_SELF) - c0;
        return n < 0 ? -1 : t;
}

typedef struct raw_job {
        uint8_t *buf;
        size_t len;
} raw_job;

/* Seals len bytes as 64 KiB chunks with libsodium directly: no I/O, no framing. */
static void *raw_seal(void *arg)
{
        raw_job *j = arg;
        uint8_t key[32] = { 1 }, nonce[12] = { 0 }, tag[16];

        for (size_t off = 0; off + MAMORI_AGE_CHUNK_SIZE <= j->len; off += MAMORI_AGE_CHUNK_SIZE) {
                memcpy(nonce, &off, sizeof(off));
                crypto_aead_chacha20poly1305_ietf_encrypt_detached(j->buf + off, tag, NULL, j->buf + off,
                                                                   MAMORI_AGE_CHUNK_SIZE, NULL, 0, NULL,
                                                                   nonce, key);
        }
        return NULL;
}

/* Raw seal of size bytes (in a 64 MiB buffer reused) over n threads; returns seconds. */
static double time_raw(size_t size, unsigned n)
{
        size_t per = 64u << 20, rounds = size / per / n ?: 1;
        pthread_t th[64];
        raw_job jobs[64];
        double t;

        for (unsigned i = 0; i < n; i++) {
                jobs[i] = (raw_job) { .buf = malloc(per), .len = per };
                if (!jobs[i].buf)
                        return -1;
                memset(jobs[i].buf, 0x5a, per);
        }
        t = now();
        for (size_t r = 0; r < rounds; r++) {
                for (unsigned i = 0; i < n; i++)
                        pthread_create(&th[i], NULL, raw_seal, &jobs[i]);
                for (unsigned i = 0; i < n; i++)
                        pthread_join(th[i], NULL);
        }
        t = now() - t;
        for (unsigned i = 0; i < n; i++)
                free(jobs[i].buf);
        return t * ((double) size / (double) (rounds * n * per));
}

/* Best (shortest) wall time of runs, and the least CPU time in *ret_cpu; -1 on failure. */
static double best_of(const bench_cfg *c, double (*fn)(const bench_cfg *, bool), bool decrypt,
                      double *ret_cpu)
{
        double best = -1, cpu = -1;
        for (unsigned i = 0; i < c->runs; i++) {
                double t = fn(c, decrypt);
                if (t < 0)
                        return -1;
                if (best < 0 || t < best)
                        best = t;
                if (cpu < 0 || last_cpu < cpu)
                        cpu = last_cpu;
        }
        *ret_cpu = cpu;
        return best;
}

static void row(const char *what, double secs, double cpu, double size, double ref)
{
        printf("  %-48s %7.3f %9.1f", what, secs, size / MiB / secs);
        if (cpu >= 0)
                printf(" %8.3f", cpu);
        else
                printf(" %8s", "-");
        if (ref > 0)
                printf("   %5.2fx", ref / secs);
        printf("\n");
}

/* Sets up the key files the age CLI needs. */
static int setup_keys(bench_cfg *c)
{
        _cleanup_free_ char *rs = NULL;
        char *sk = NULL;
        mamori_age_recipient rc;
        FILE *f;
        int r;

        r = mamori_age_identity_generate(&c->id);
        if (r >= 0)
                r = mamori_age_identity_to_recipient(c->id, &rc);
        if (r >= 0)
                r = mamori_age_recipient_format(&rc, &rs);
        if (r >= 0)
                r = mamori_age_identity_format(c->id, &sk);
        if (r < 0)
                return r;
        snprintf(c->recipient, sizeof(c->recipient), "%s", rs);
        f = fopen(c->id_path, "we");
        if (!f) {
                sodium_free(sk);
                return -errno;
        }
        fprintf(f, "%s\n", sk);
        fclose(f);
        sodium_free(sk);
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "size", required_argument, NULL, 's' }, { "runs", required_argument, NULL, 'n' },
                { "threads", required_argument, NULL, 't' }, { "dir", required_argument, NULL, 'd' },
                { "age", required_argument, NULL, 'a' }, {},
        };
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        bench_cfg c = { .size = 1024u << 20, .runs = 2, .threads = cpus > 0 ? (unsigned) cpus : 1,
                        .dir = "/dev/shm", .age = "age" };
        int o, r;

        while ((o = getopt_long(argc, argv, "s:n:t:d:a:", opts, NULL)) >= 0)
                switch (o) {
                case 's': c.size = (size_t) strtoul(optarg, NULL, 10) << 20; break;
                case 'n': c.runs = (unsigned) strtoul(optarg, NULL, 10) ?: 1; break;
                case 't': c.threads = (unsigned) strtoul(optarg, NULL, 10) ?: 1; break;
                case 'd': c.dir = optarg; break;
                case 'a': c.age = optarg; break;
                default: return 2;
                }
        if (sodium_init() < 0 || c.threads > 64)
                return 2;
        snprintf(c.in, sizeof(c.in), "%s/mamori-bench-age.%d.in", c.dir, (int) getpid());
        snprintf(c.out, sizeof(c.out), "%s/mamori-bench-age.%d.age", c.dir, (int) getpid());
        snprintf(c.dec, sizeof(c.dec), "%s/mamori-bench-age.%d.dec", c.dir, (int) getpid());
        snprintf(c.id_path, sizeof(c.id_path), "%s/mamori-bench-age.%d.key", c.dir, (int) getpid());

        r = setup_keys(&c);
        if (r >= 0)
                r = make_input(c.in, c.size);
        if (r < 0) {
                fprintf(stderr, "setup: %s\n", strerror(-r));
                return 1;
        }
        double age_enc_cpu, our_enc_cpu, age_dec_cpu, our_dec_cpu;
        double age_enc = best_of(&c, time_age, false, &age_enc_cpu);
        double our_enc = best_of(&c, time_ours, false, &our_enc_cpu);
        double age_dec = best_of(&c, time_age, true, &age_dec_cpu);
        double our_dec = best_of(&c, time_ours, true, &our_dec_cpu);
        double raw1 = time_raw(c.size, 1), rawn = time_raw(c.size, c.threads);
        double copy_cpu = -1, copy = -1;
        for (unsigned i = 0; i < c.runs; i++) {
                double cc = -1, t = time_copy(&c, &cc);
                if (t >= 0 && (copy < 0 || t < copy)) {
                        copy = t;
                        copy_cpu = cc;
                }
        }
        unlink(c.in);
        unlink(c.out);
        unlink(c.dec);
        unlink(c.id_path);
        mamori_age_identity_free(c.id);
        if (age_enc < 0 || our_enc < 0 || age_dec < 0 || our_dec < 0 || raw1 < 0 || rawn < 0 || copy < 0)
                return 1;

        char label[128];
        double sz = (double) c.size;
        double load[3] = {};
        getloadavg(load, 3);
        printf("age v1 throughput, %.0f MiB file in %s, %ld CPUs online, best of %u, load average %.2f\n",
               sz / MiB, c.dir, cpus, c.runs, load[0]);
        printf("  %-48s %7s %9s %8s   %6s\n", "", "wall s", "MiB/s", "CPU s", "vs age");
        snprintf(label, sizeof(label), "mamori encrypt (%u threads)", c.threads);
        row(label, our_enc, our_enc_cpu, sz, age_enc);
        row("age -r (reference CLI)", age_enc, age_enc_cpu, sz, age_enc);
        snprintf(label, sizeof(label), "mamori decrypt (%u threads)", c.threads);
        row(label, our_dec, our_dec_cpu, sz, age_dec);
        row("age -d -i (reference CLI)", age_dec, age_dec_cpu, sz, age_dec);
        row("libsodium ChaCha20-Poly1305, 1 thread, no I/O", raw1, -1, sz, 0);
        snprintf(label, sizeof(label), "libsodium ChaCha20-Poly1305, %u threads, no I/O", c.threads);
        row(label, rawn, -1, sz, 0);
        row("plain copy, read()+write() 1 MiB, 1 thread", copy, copy_cpu, sz, 0);
        /* Sealing and the copy are both unavoidable; with every core busy and perfect
         * overlap, encryption cannot take less than their CPU time spread over the cores. */
        double floor = (raw1 + copy_cpu) / (double) c.threads;
        printf("floor for mamori encrypt on %u cores (1-thread seal + copy CPU, spread): %.3f s = "
               "%.1f MiB/s, %.2fx age\n", c.threads, floor, sz / MiB / floor, age_enc / floor);
        printf("encrypt ratio mamori/age: %.2fx wall (target >= 1.50x: %s); mamori uses %.2fx "
               "age's CPU time\n", age_enc / our_enc, age_enc / our_enc >= 1.5 ? "met" : "NOT met",
               our_enc_cpu / age_enc_cpu);
        if (load[0] > cpus * 0.5)
                printf("warning: load average %.2f on %ld CPUs: other work competes, wall times are "
                       "pessimistic\n", load[0], cpus);
        return 0;
}
