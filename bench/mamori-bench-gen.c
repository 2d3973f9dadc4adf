/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-bench-gen: builds a synthetic evidence store through policyd's own store code
 * (same encoding, chain, checkpoints and epochs as the daemon), for the verify and
 * query benchmarks, and measures the machine's raw BLAKE2b speed as their ceiling.
 *   mamori-bench-gen --state-dir DIR --records N [--span-days D]
 *   mamori-bench-gen --blake2b
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "record.h"
#include "store.h"

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* BLAKE2b-256 over record-sized inputs (the verifier's work) and over 1 MiB blocks. */
static int blake2b_speed(void)
{
        static uint8_t buf[1 << 20];
        uint8_t h[32];
        randombytes_buf(buf, sizeof buf);
        size_t sizes[] = {32 + 300, sizeof buf};
        for (size_t k = 0; k < 2; k++) {
                size_t n = 0;
                double t0 = now_s(), dt;
                do {
                        for (size_t off = 0; off + sizes[k] <= sizeof buf; off += sizes[k], n += sizes[k])
                                crypto_generichash(h, 32, buf + off, sizes[k], NULL, 0);
                        dt = now_s() - t0;
                } while (dt < 1.0);
                printf("blake2b-raw %s: %.1f MB/s\n", k == 0 ? "332-byte inputs" : "1 MiB inputs", n / dt / 1e6);
        }
        return 0;
}

int main(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"state-dir", required_argument, NULL, 'd'}, {"records", required_argument, NULL, 'n'},
                {"span-days", required_argument, NULL, 's'}, {"blake2b", no_argument, NULL, 'b'},
                {},
        };
        const char *dir = NULL;
        uint64_t n = 1000000, span_days = 1826;
        int o;
        if (sodium_init() < 0)
                return 1;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) >= 0)
                switch (o) {
                case 'd': dir = optarg; break;
                case 'n': n = strtoull(optarg, NULL, 10); break;
                case 's': span_days = strtoull(optarg, NULL, 10); break;
                case 'b': return blake2b_speed();
                default: return 2;
                }
        if (!dir || n == 0)
                return 2;
        mamori_config *cfg;
        if (mamori_config_new_default(&cfg) < 0)
                return 1;
        cfg->evidence.journal = false;
        store *st;
        if (store_open(dir, cfg, &st) < 0)
                return 1;
        int64_t end = mamori_now_us(), span = (int64_t)span_days * 86400 * 1000000;
        int64_t step = span / (int64_t)n;
        double t0 = now_s();
        static const char *const users[] = {"staff01", "staff02", "staff03", "staff04", "staff05",
                                            "staff06", "staff07", "staff08", "staff09", "staff10"};
        for (uint64_t i = 0; i < n; i++) {
                mamori_record *rec;
                char media[16], file[40], size[24];
                snprintf(media, sizeof media, "M-%04" PRIu64, i % 2000);
                snprintf(file, sizeof file, "report-%" PRIu64 ".pdf", i);
                snprintf(size, sizeof size, "%" PRIu64, 1000 + (i * 7919) % 1000000);
                if (mamori_record_new(&rec) < 0)
                        return 1;
                rec->time_us = end - span + (int64_t)i * step;
                rec->clock_synced = true;
                mamori_record_set(rec, &rec->type, i % 10 ? "media.output" : "media.input");
                mamori_record_set(rec, &rec->component, "agent");
                mamori_record_add(rec, "user", users[i % 10]);
                mamori_record_add(rec, "user_name", "Yamada Taro");
                mamori_record_add(rec, "ip", "192.0.2.10");
                mamori_record_add(rec, "media", media);
                mamori_record_add(rec, "media_serial", "4C530001230524117424");
                mamori_record_add(rec, "file", file);
                mamori_record_add(rec, "source_path", "/home/staff01/documents");
                mamori_record_add(rec, "size", size);
                mamori_record_add(rec, "direction", i % 10 ? "output" : "input");
                mamori_record_add(rec, "encryption", "age-x25519");
                if (store_append(st, rec, NULL) < 0)
                        return 1;
                if (i % 20000 == 19999 && store_commit(st) < 0)
                        return 1;
                if (i % 1000000 == 999999) {
                        store_rotate(st); /* one epoch per million, as days would give */
                        fprintf(stderr, "%" PRIu64 " records, %.0f/s\n", i + 1, (i + 1) / (now_s() - t0));
                }
        }
        if (store_seal(st) < 0)
                return 1;
        printf("generated %" PRIu64 " records over %" PRIu64 " days in %.1f s\n", n, span_days, now_s() - t0);
        store_free(st);
        mamori_config_free(cfg);
        return 0;
}
