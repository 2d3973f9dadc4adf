/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Test driver for pam_mamori: runs PAM operations through real libpam under
 * pam_wrapper (libpamtest), answering the conversation from the command line and
 * printing what the stack said and returned. Built with the same sanitizers as the
 * module, so the module is sanitized too. tests/pam/test-pam.py drives it.
 *
 *   pam-driver [-s SERVICE] [-u USER] [-p PASSWORD] [-c CODE] [-t TTY] [-r RHOST]
 *              [-n PARALLEL] OP...            OP: auth acct open close chauthtok
 *   pam-driver raw TYPE USER                  one bare request to policyd, prints its status
 *
 * Output lines: "error TEXT", "info TEXT", "result OP PAM_NAME"; with -n N, N
 * processes start together (a barrier) and the parent prints "count PAM_NAME K".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpamtest.h>
#include <security/pam_appl.h>

#include "client.h"
#include "wire.h"

#define MAX_OPS 8
#define MAX_ANSWERS 4

static const char *answers[MAX_ANSWERS];
static size_t n_answers, next_answer;

/* Prints a message on one line (newlines shown as " | "). */
static void print_line(const char *kind, const char *msg)
{
        printf("%s ", kind);
        for (const char *p = msg; *p; p++)
                if (*p == '\n')
                        fputs(" | ", stdout);
                else
                        putchar(*p);
        putchar('\n');
}

static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
        struct pam_response *r = calloc((size_t)n, sizeof *r);
        if (!r)
                return PAM_CONV_ERR;
        for (int i = 0; i < n; i++) {
                switch (msg[i]->msg_style) {
                case PAM_PROMPT_ECHO_OFF:
                case PAM_PROMPT_ECHO_ON:
                        print_line("prompt", msg[i]->msg);
                        r[i].resp = strdup(next_answer < n_answers ? answers[next_answer++] : "");
                        break;
                case PAM_ERROR_MSG:
                        print_line("error", msg[i]->msg);
                        break;
                case PAM_TEXT_INFO:
                        print_line("info", msg[i]->msg);
                        break;
                }
        }
        *resp = r;
        return PAM_SUCCESS;
}

static const struct {
        const char *name;
        enum pamtest_ops op;
} op_names[] = {
        {"auth", PAMTEST_AUTHENTICATE}, {"acct", PAMTEST_ACCOUNT},      {"open", PAMTEST_OPEN_SESSION},
        {"close", PAMTEST_CLOSE_SESSION}, {"chauthtok", PAMTEST_CHAUTHTOK},
};

static const char *rc_name(int rc)
{
        switch (rc) {
        case PAM_SUCCESS: return "PAM_SUCCESS";
        case PAM_AUTH_ERR: return "PAM_AUTH_ERR";
        case PAM_PERM_DENIED: return "PAM_PERM_DENIED";
        case PAM_AUTHINFO_UNAVAIL: return "PAM_AUTHINFO_UNAVAIL";
        case PAM_SESSION_ERR: return "PAM_SESSION_ERR";
        case PAM_USER_UNKNOWN: return "PAM_USER_UNKNOWN";
        case PAM_SERVICE_ERR: return "PAM_SERVICE_ERR";
        case PAM_MAXTRIES: return "PAM_MAXTRIES";
        case PAM_ACCT_EXPIRED: return "PAM_ACCT_EXPIRED";
        case PAM_IGNORE: return "PAM_IGNORE";
        case PAM_AUTHTOK_ERR: return "PAM_AUTHTOK_ERR";
        default: return "PAM_OTHER";
        }
}

/* Starts a PAM transaction with the login's items. Returns the handle or NULL. */
static pam_handle_t *prepare(const char *service, const char *user, const char *tty, const char *rhost)
{
        static struct pam_conv c = {conv, NULL};
        pam_handle_t *ph = NULL;
        if (pam_start(service, user, &c, &ph) != PAM_SUCCESS)
                return NULL;
        if (tty)
                pam_set_item(ph, PAM_TTY, tty);
        if (rhost)
                pam_set_item(ph, PAM_RHOST, rhost);
        return ph;
}

/* Runs the operations in the transaction and ends it; returns the last operation's rc. */
static int run(pam_handle_t *ph, const char *service, const char *user, char **ops, int n_ops)
{
        struct pam_testcase tests[MAX_OPS];
        int n = 0, rc = PAM_SYSTEM_ERR;
        if (!ph)
                return PAM_SYSTEM_ERR;
        for (int i = 0; i < n_ops && n < MAX_OPS; i++)
                for (size_t k = 0; k < sizeof op_names / sizeof *op_names; k++)
                        if (strcmp(ops[i], op_names[k].name) == 0)
                                tests[n++] = (struct pam_testcase){.pam_operation = op_names[k].op,
                                                                   .expected_rv = PAM_SUCCESS};
        /* libpamtest stops at the first operation that does not return PAM_SUCCESS (as an
         * application would) and ends the transaction; the caller judges what is printed. */
        (void)_pamtest_conv(service, user, conv, NULL, tests, (size_t)n, ph);
        for (int i = 0; i < n; i++) {
                printf("result %s %s\n", ops[i], rc_name(tests[i].op_rv));
                rc = tests[i].op_rv;
                if (rc != PAM_SUCCESS)
                        break; /* the later operations did not run */
        }
        fflush(stdout);
        return rc;
}

/* One bare request of type for user, as this process's uid; prints the status. */
static int raw(const char *type, const char *user)
{
        int fd = mamori_client_connect(mamori_client_socket_path(NULL));
        if (fd < 0)
                return printf("status unreachable\n"), 3;
        mamori_msg *m, *reply;
        if (mamori_msg_new((uint16_t)atoi(type), 0, &m) < 0)
                return 3;
        mamori_msg_put_str(m, MAMORI_F_USER, user);
        int r = mamori_client_call(fd, m, &reply);
        mamori_msg_free(m);
        close(fd);
        if (r < 0)
                return printf("status unreachable\n"), 3;
        uint64_t count = 0;
        printf("status %s", mamori_status_to_string(reply->status));
        if (mamori_msg_get_u64(reply, MAMORI_F_COUNT, &count) == 0)
                printf(" count %llu", (unsigned long long)count);
        putchar('\n');
        mamori_msg_free(reply);
        return 0;
}

int main(int argc, char *argv[])
{
        const char *service = "mamori-test", *user = NULL, *tty = NULL, *rhost = NULL;
        int parallel = 0, o;
        setlocale(LC_ALL, ""); /* as login and sshd do: the module's messages follow it */
        if (argc == 4 && strcmp(argv[1], "raw") == 0)
                return raw(argv[2], argv[3]);
        while ((o = getopt(argc, argv, "s:u:p:c:t:r:n:")) >= 0)
                switch (o) {
                case 's': service = optarg; break;
                case 'u': user = optarg; break;
                case 'p':
                case 'c':
                        if (n_answers < MAX_ANSWERS)
                                answers[n_answers++] = optarg;
                        break;
                case 't': tty = optarg; break;
                case 'r': rhost = optarg; break;
                case 'n': parallel = atoi(optarg); break;
                default: return 2;
                }
        if (!user || optind >= argc)
                return fprintf(stderr, "usage: pam-driver -u USER [...] OP...\n"), 2;
        if (parallel <= 0)
                return run(prepare(service, user, tty, rhost), service, user, argv + optind, argc - optind) ==
                       PAM_SUCCESS ? 0 : 1;

        /* N processes released together: each starts its transaction (pam_wrapper sets up
         * its directory then; one at a time, as its stale-directory check races), says
         * so, and blocks on the gate until the parent closes it. */
        int gate[2], ready[2], results[2];
        if (pipe(gate) < 0 || pipe(ready) < 0 || pipe(results) < 0)
                return 3;
        for (int i = 0; i < parallel; i++) {
                pid_t pid = fork();
                if (pid < 0)
                        return 3;
                if (pid == 0) {
                        char b = 0;
                        close(gate[1]);
                        close(results[0]);
                        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                        dup2(null, 1); /* the children's own lines are not wanted */
                        pam_handle_t *ph = prepare(service, user, tty, rhost);
                        (void)!write(ready[1], &b, 1);
                        (void)!read(gate[0], &b, 1);
                        int rc = run(ph, service, user, argv + optind, argc - optind);
                        (void)!write(results[1], &rc, sizeof rc);
                        _exit(0);
                }
                char b;
                if (read(ready[0], &b, 1) != 1)
                        return 3;
        }
        close(gate[0]);
        close(results[1]);
        close(gate[1]); /* go */
        int counts[64] = {0}, rc;
        while (read(results[0], &rc, sizeof rc) == sizeof rc)
                counts[rc >= 0 && rc < 64 ? rc : 63]++;
        while (wait(NULL) > 0)
                ;
        for (int i = 0; i < 64; i++)
                if (counts[i])
                        printf("count %s %d\n", rc_name(i), counts[i]);
        return 0;
}
