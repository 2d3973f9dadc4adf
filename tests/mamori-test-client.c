/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-test-client: speaks the protocol badly on purpose, for the integration tests.
 *   types                list every request type the protocol defines: "NUMBER NAME"
 *   raw TYPE             send an empty request of TYPE; print the reply's status name
 *   malformed            send a frame whose field overruns the body; print "dropped"
 *                        if policyd closed the connection, else "served"
 *   oversize             announce a frame over the cap; print "dropped" or "served"
 *   bad-submit           a submission with a field policyd does not know
 *   submit TYPE TIME_US KEY=VALUE...   one record with exactly these fields; prints its seq
 *   transfer KEY=VALUE...              an evidence-transfer request with exactly these
 *                        pairs; prints the status, the seq and policyd's text
 * The socket is $MAMORI_SOCKET.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "wire.h"

/* After a bad frame: is the connection closed (a ping gets no answer)? */
static const char *fate(int fd)
{
        mamori_msg *m = NULL, *r = NULL;
        /* Drain any error reply first. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        while (poll(&p, 1, 2000) > 0) {
                uint8_t buf[4096];
                ssize_t n = read(fd, buf, sizeof buf);
                if (n <= 0)
                        return "dropped";
        }
        if (mamori_msg_new(MAMORI_MSG_PING, 0, &m) < 0)
                return "error";
        int k = mamori_client_call(fd, m, &r);
        mamori_msg_free(m);
        mamori_msg_free(r);
        return k < 0 ? "dropped" : "served";
}

int main(int argc, char *argv[])
{
        if (argc < 2)
                return 2;
        if (strcmp(argv[1], "types") == 0) {
                for (int t = 1; t < _MAMORI_MSG_MAX; t++)
                        if (mamori_msg_type_to_string(t))
                                printf("%d %s\n", t, mamori_msg_type_to_string(t));
                return 0;
        }
        int fd = mamori_client_connect(mamori_client_socket_path(NULL));
        if (fd < 0) {
                fprintf(stderr, "connect: %s\n", strerror(-fd));
                return 3;
        }
        if (strcmp(argv[1], "raw") == 0 && argc == 3) {
                mamori_msg *m, *r;
                if (mamori_msg_new(atoi(argv[2]), 0, &m) < 0)
                        return 3;
                int k = mamori_client_call(fd, m, &r);
                mamori_msg_free(m);
                if (k < 0) {
                        puts("dropped");
                        return 0;
                }
                puts(mamori_status_to_string(r->status));
                mamori_msg_free(r);
                return 0;
        }
        if (strcmp(argv[1], "malformed") == 0) {
                /* type ping, one field claiming 1000 bytes in a 10-byte body */
                static const uint8_t f[] = {0, 0, 0, 10, 0, 1, 0, 0, 0, 7, 0, 0, 3, 0xe8};
                if (write(fd, f, sizeof f) != sizeof f)
                        return 3;
                puts(fate(fd));
                return 0;
        }
        if (strcmp(argv[1], "oversize") == 0) {
                static const uint8_t f[] = {0x01, 0, 0, 0, 0, 1, 0, 0};
                if (write(fd, f, sizeof f) != sizeof f)
                        return 3;
                puts(fate(fd));
                return 0;
        }
        if (strcmp(argv[1], "submit") == 0 && argc >= 4) {
                mamori_msg *m, *r;
                if (mamori_msg_new(MAMORI_MSG_EVIDENCE_SUBMIT, 0, &m) < 0)
                        return 3;
                mamori_msg_put_str(m, MAMORI_F_EV_TYPE, argv[2]);
                mamori_msg_put_str(m, MAMORI_F_EV_COMPONENT, "test");
                mamori_msg_put_i64(m, MAMORI_F_EV_TIME, strtoll(argv[3], NULL, 10));
                for (int i = 4; i < argc; i++) {
                        char *eq = strchr(argv[i], '=');
                        if (!eq)
                                return 2;
                        *eq = 0;
                        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, argv[i], eq + 1);
                }
                int k = mamori_client_call(fd, m, &r);
                mamori_msg_free(m);
                if (k < 0)
                        return 3;
                uint64_t seq = 0;
                (void)mamori_msg_get_u64(r, MAMORI_F_EV_SEQ, &seq);
                printf("%s %llu\n", mamori_status_to_string(r->status), (unsigned long long)seq);
                mamori_msg_free(r);
                return 0;
        }
        if (strcmp(argv[1], "transfer") == 0) {
                mamori_msg *m, *r;
                if (mamori_msg_new(MAMORI_MSG_EVIDENCE_TRANSFER, 0, &m) < 0)
                        return 3;
                for (int i = 2; i < argc; i++) {
                        char *eq = strchr(argv[i], '=');
                        if (!eq)
                                return 2;
                        *eq = 0;
                        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, argv[i], eq + 1);
                }
                int k = mamori_client_call(fd, m, &r);
                mamori_msg_free(m);
                if (k < 0)
                        return 3;
                uint64_t seq = 0;
                const char *text = "";
                (void)mamori_msg_get_u64(r, MAMORI_F_EV_SEQ, &seq);
                (void)mamori_msg_get_str(r, MAMORI_F_TEXT, MAMORI_STR_MAX, &text);
                printf("%s %llu %s\n", mamori_status_to_string(r->status), (unsigned long long)seq, text);
                mamori_msg_free(r);
                return 0;
        }
        if (strcmp(argv[1], "bad-submit") == 0) {
                mamori_msg *m;
                if (mamori_msg_new(MAMORI_MSG_EVIDENCE_SUBMIT, 0, &m) < 0)
                        return 3;
                mamori_msg_put_str(m, MAMORI_F_EV_TYPE, "media.output");
                mamori_msg_put_str(m, MAMORI_F_EV_COMPONENT, "test");
                mamori_msg_put_str(m, 999, "unknown field");
                int k = mamori_wire_send(fd, m);
                mamori_msg_free(m);
                if (k < 0)
                        return 3;
                puts(fate(fd));
                return 0;
        }
        return 2;
}
