/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-bench-ingest: streams N evidence records to policyd, pipelined (a window of
 * submissions in flight), and prints how many became durable per second. Every
 * record counted was acknowledged, and policyd acknowledges only after the batch's
 * fsync. Also the load generator of the crash and retention tests:
 *   --print-acks     prints "ack N SEQ" for each acknowledged record N as it arrives
 *   --days-ago D     dates the records D days in the past (retention tests)
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "record.h"
#include "wire.h"

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Builds record n's submission: a media output with the R-EV-1/2 fields. */
static mamori_msg *make_record(uint64_t n, int64_t time_us, const char *type)
{
        mamori_msg *m;
        if (mamori_msg_new(MAMORI_MSG_EVIDENCE_SUBMIT, 0, &m) < 0)
                return NULL;
        char num[32], media[32], file[64], size[32];
        snprintf(num, sizeof num, "%" PRIu64, n);
        snprintf(media, sizeof media, "M-%04" PRIu64, n % 1000);
        snprintf(file, sizeof file, "report-%" PRIu64 ".pdf", n);
        snprintf(size, sizeof size, "%" PRIu64, 1000 + n % 100000);
        mamori_msg_put_str(m, MAMORI_F_EV_TYPE, type);
        mamori_msg_put_str(m, MAMORI_F_EV_COMPONENT, "bench");
        mamori_msg_put_i64(m, MAMORI_F_EV_TIME, time_us);
        mamori_msg_put_u8(m, MAMORI_F_EV_SYNCED, 1);
        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "n", num);
        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "user", n % 7 ? "staff01" : "staff02");
        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "user_name", "Yamada Taro");
        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "ip", "192.0.2.10");
        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "media", media);
        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "file", file);
        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "source_path", "/home/staff01/documents");
        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "size", size);
        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "direction", "output");
        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "encryption", "age-x25519");
        return m;
}

static void usage(FILE *f)
{
        fputs("Usage: mamori-bench-ingest --socket PATH --records N [--window W] [--print-acks]\n"
              "                           [--days-ago D] [--type TYPE]\n", f);
}

int main(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"socket", required_argument, NULL, 's'}, {"records", required_argument, NULL, 'n'},
                {"window", required_argument, NULL, 'w'}, {"print-acks", no_argument, NULL, 'p'},
                {"days-ago", required_argument, NULL, 'd'}, {"type", required_argument, NULL, 't'},
                {"help", no_argument, NULL, 'h'}, {},
        };
        const char *sock = NULL, *type = "media.output";
        uint64_t n = 10000, window = 512, days = 0;
        bool print_acks = false;
        int o;
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                switch (o) {
                case 's': sock = optarg; break;
                case 'n': n = strtoull(optarg, NULL, 10); break;
                case 'w': window = strtoull(optarg, NULL, 10); break;
                case 'p': print_acks = true; break;
                case 'd': days = strtoull(optarg, NULL, 10); break;
                case 't': type = optarg; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        if (window == 0 || !mamori_record_type_valid(type)) {
                usage(stderr);
                return 2;
        }
        int fd = mamori_client_connect(mamori_client_socket_path(sock));
        if (fd < 0) {
                fprintf(stderr, "cannot connect: %s\n", strerror(-fd));
                return 3;
        }
        int64_t base = mamori_now_us() - (int64_t)days * 86400 * 1000000;
        uint64_t sent = 0, acked = 0;
        double t0 = now_s();
        while (acked < n) {
                while (sent < n && sent - acked < window) {
                        mamori_msg *m = make_record(sent, base + (int64_t)sent, type);
                        int r = m ? mamori_wire_send(fd, m) : -ENOMEM;
                        mamori_msg_free(m);
                        if (r < 0) {
                                fprintf(stderr, "send failed after %" PRIu64 " acks: %s\n", acked, strerror(-r));
                                return 1;
                        }
                        sent++;
                }
                mamori_msg *a;
                int r = mamori_wire_recv(fd, &a);
                if (r < 0) {
                        fprintf(stderr, "connection lost after %" PRIu64 " acks: %s\n", acked, strerror(-r));
                        return 1;
                }
                uint64_t seq = 0;
                if (a->status != MAMORI_OK || mamori_msg_get_u64(a, MAMORI_F_EV_SEQ, &seq) < 0) {
                        fprintf(stderr, "record %" PRIu64 " refused: %s\n", acked, mamori_status_to_string(a->status));
                        mamori_msg_free(a);
                        return 1;
                }
                mamori_msg_free(a);
                if (print_acks) {
                        printf("ack %" PRIu64 " %" PRIu64 "\n", acked, seq);
                        fflush(stdout);
                }
                acked++;
        }
        double dt = now_s() - t0;
        fprintf(print_acks ? stderr : stdout,
                "ingest: %" PRIu64 " durable records in %.3f s: %.0f records/s (window %" PRIu64 ")\n",
                n, dt, n / dt, window);
        close(fd);
        return 0;
}
