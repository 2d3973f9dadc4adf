/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mediactl passphrase: hands the media view of one medium the passphrase its files are
 * to be encrypted to, for a user whose only write right there is write-passphrase
 * (R-OUT-2..4). Asked twice on the terminal without echo, or read from --passphrase-fd;
 * never from argv or the environment. Sent over the view's socket
 * (docs/protocol.md "Media view passphrase socket"); the view knows the caller by the
 * socket's credentials and keeps the passphrase in locked memory until it is forgotten
 * (--forget), 8 hours pass, the right ends or the medium goes.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "cleanup.h"
#include "mediactl.h"

#define VIEW_SOCKET_DIR "/run/mamori-agent/view"
#define PASS_MIN 8
#define MAGIC "MVP1"

static void pass_freep(char **p)
{
        if (*p)
                sodium_free(*p);
}

/* The view's answers (agent/view.h view_pass_status) and what they mean to the user. */
static const struct {
        const char *status, *text;
        int exit;
} answers[] = {
        {"ok", "the view encrypts your files on this medium to the passphrase", 0},
        {"forgotten", "the view no longer holds a passphrase of yours", 0},
        {"no-passphrase-right", "you hold no write-passphrase right on this medium: nothing was kept", EXIT_NO},
        {"malformed", "the view did not understand the request: nothing was changed", EXIT_UNAVAILABLE},
        {"full", "too many users hold a passphrase on this medium: nothing was kept", EXIT_UNAVAILABLE},
        {"internal-error", "the view could not keep the passphrase", EXIT_UNAVAILABLE},
};

static void usage(FILE *f)
{
        fputs("Usage: mediactl passphrase [--passphrase-fd N | --forget] [--view-socket PATH] MEDIUM-NO|MOUNTPOINT\n"
              "Sets the passphrase the media view encrypts your files to on a medium where your\n"
              "write right is write-passphrase (a copy there fails with \"Permission denied\" until\n"
              "you do). Asked twice on the terminal, or one line from descriptor N; an empty one,\n"
              "or --forget, makes the view forget yours. Kept for 8 hours at most.\n",
              f);
}

/* The socket of the view for a medium number or a mount point: named like the mount point
 * (/media/mamori/<number, '/' and control characters as '_'>). Returns 0 or -ENAMETOOLONG. */
static int socket_for(const char *arg, char ret[static sizeof(((struct sockaddr_un *)0)->sun_path)])
{
        const char *base = arg[0] == '/' ? strrchr(arg, '/') + 1 : arg;
        char name[256];
        size_t n = 0;
        for (const char *p = base; *p && n < sizeof name - 1; p++)
                name[n++] = (*p == '/' || (unsigned char)*p < 0x20 || *p == 0x7f) ? '_' : *p;
        name[n] = 0;
        size_t cap = sizeof(((struct sockaddr_un *)0)->sun_path);
        int k = snprintf(ret, cap, "%s/%s.sock", VIEW_SOCKET_DIR, name);
        return !name[0] || k < 0 || (size_t)k >= cap ? -ENAMETOOLONG : 0;
}

/* Reads the passphrase: once from fd, or twice from the terminal. Returns its length (0:
 * forget), or an exit code negated, the reason printed. */
static int get(int fd, char *pass)
{
        int n = ctl_read_passphrase(fd, "Passphrase for the medium (empty: forget): ", pass);
        if (n < 0)
                return -EXIT_UNAVAILABLE;
        if (n > 0 && n < PASS_MIN) {
                fprintf(stderr, "mediactl: the passphrase must have at least %d characters\n", PASS_MIN);
                return -EXIT_USAGE;
        }
        if (fd >= 0 || n == 0)
                return n;
        _cleanup_(pass_freep) char *again = sodium_malloc(CTL_PASS_MAX + 1);
        if (!again)
                return -EXIT_UNAVAILABLE;
        if (ctl_read_passphrase(-1, "Again: ", again) < 0 || !streq(pass, again)) {
                fprintf(stderr, "mediactl: the passphrases differ\n");
                return -EXIT_USAGE;
        }
        return n;
}

/* Sends the request and prints the answer. Returns the exit code. */
static int send_to(const char *path, const char *pass, size_t len)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path, path, strlen(path) + 1); /* checked to fit */
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                fprintf(stderr, "mediactl: no media view at %s (is the medium mounted?): %s\n", path,
                        strerror(errno));
                return EXIT_UNAVAILABLE;
        }
        _cleanup_(pass_freep) char *msg = sodium_malloc(6 + CTL_PASS_MAX);
        if (!msg)
                return EXIT_UNAVAILABLE;
        memcpy(msg, MAGIC, 4);
        msg[4] = (char)(len >> 8);
        msg[5] = (char)(len & 0xff);
        memcpy(msg + 6, pass, len);
        ssize_t k = send(fd, msg, 6 + len, MSG_NOSIGNAL);
        (void)shutdown(fd, SHUT_WR);
        char line[64] = "";
        ssize_t got = k == (ssize_t)(6 + len) ? recv(fd, line, sizeof line - 1, MSG_WAITALL) : -1;
        if (got <= 0) {
                fprintf(stderr, "mediactl: the media view did not answer\n");
                return EXIT_UNAVAILABLE;
        }
        line[got] = 0;
        line[strcspn(line, "\n")] = 0;
        for (size_t i = 0; i < ELEMENTSOF(answers); i++)
                if (streq(line, answers[i].status)) {
                        fprintf(answers[i].exit ? stderr : stdout, "mediactl: %s\n", answers[i].text);
                        return answers[i].exit;
                }
        fprintf(stderr, "mediactl: unexpected answer from the media view\n");
        return EXIT_UNAVAILABLE;
}

int verb_passphrase(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"passphrase-fd", required_argument, NULL, 'F'}, {"forget", no_argument, NULL, 'f'},
                {"view-socket", required_argument, NULL, 'S'},   {"help", no_argument, NULL, 'h'},
                {},
        };
        int o, fd = -1;
        bool forget = false;
        const char *sock = NULL;
        optind = 1;
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                switch (o) {
                case 'F':
                        if ((fd = ctl_parse_fd(optarg)) < 0) {
                                ctl_bad_value("--passphrase-fd takes a descriptor number", optarg);
                                return EXIT_USAGE;
                        }
                        break;
                case 'f': forget = true; break;
                case 'S': sock = optarg; break;
                default: usage(o == 'h' ? stdout : stderr); return o == 'h' ? 0 : EXIT_USAGE;
                }
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        if ((sock ? optind != argc : optind != argc - 1) || (forget && fd >= 0)) {
                usage(stderr);
                return EXIT_USAGE;
        }
        if (sock) {
                if (strlen(sock) >= sizeof path) {
                        ctl_bad_value("--view-socket: too long", sock);
                        return EXIT_USAGE;
                }
                memcpy(path, sock, strlen(sock) + 1);
        } else if (socket_for(argv[optind], path) < 0) {
                ctl_bad_value("not a medium number or mount point", argv[optind]);
                return EXIT_USAGE;
        }
        _cleanup_(pass_freep) char *pass = sodium_malloc(CTL_PASS_MAX + 1);
        if (!pass)
                return EXIT_UNAVAILABLE;
        pass[0] = 0;
        int n = forget ? 0 : get(fd, pass);
        if (n < 0)
                return -n;
        return send_to(path, pass, (size_t)n);
}
