/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-policyd: the local policy daemon. Holds the evidence store (and, as later
 * modules land, the media ledger, grants, lockout and MFA state) and answers the
 * agent, the PAM module and mediactl over one UNIX socket.
 *
 *   mamori-policyd --state-dir DIR --socket PATH [--config FILE]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "cleanup.h"
#include "config.h"
#include "log.h"
#include "mamori-config.h"
#include "server.h"
#include "store.h"

static void usage(FILE *f)
{
        fprintf(f, "Usage: mamori-policyd [--state-dir DIR] [--socket PATH] [--config FILE]\n"
                   "  --state-dir DIR  evidence and state (default " MAMORI_STATE_DIR ")\n"
                   "  --socket PATH    socket to serve when not socket-activated (default " MAMORI_SOCKET_PATH ")\n"
                   "  --config FILE    policy file (default " MAMORI_CONFIG_PATH ")\n");
}

/* Returns the listening socket: systemd's, or one bound at path. */
static int listen_socket(const char *path)
{
        int n = sd_listen_fds(1);
        if (n > 1)
                return log_error_errno(EINVAL, "Expected one socket from systemd, got %d", n);
        if (n == 1) {
                int fd = SD_LISTEN_FDS_START;
                fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
                return fd;
        }
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof sa.sun_path)
                return log_error_errno(ENAMETOOLONG, "Socket path too long: %s", path);
        strcpy(sa.sun_path, path);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(errno, "socket(): %m");
        (void)unlink(path);
        /* Anyone may connect; what they may ask is decided per request by their
         * credentials (SO_PEERCRED), never by the socket's mode. */
        mode_t old = umask(0111);
        int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
        umask(old);
        if (r < 0)
                return log_error_errno(errno, "Failed to bind %s: %m", path);
        if (listen(fd, 128) < 0)
                return log_error_errno(errno, "listen(): %m");
        return TAKE_FD(fd);
}

int main(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"state-dir", required_argument, NULL, 'd'},
                {"socket", required_argument, NULL, 's'},
                {"config", required_argument, NULL, 'c'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *state_dir = MAMORI_STATE_DIR, *sock = MAMORI_SOCKET_PATH, *config = NULL;
        int o;
        while ((o = getopt_long(argc, argv, "d:s:c:h", opts, NULL)) >= 0)
                switch (o) {
                case 'd': state_dir = optarg; break;
                case 's': sock = optarg; break;
                case 'c': config = optarg; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        if (optind != argc) {
                usage(stderr);
                return 2;
        }
        mamori_log_open("mamori-policyd", getenv("JOURNAL_STREAM") != NULL);
        /* Secrets live in this process: no core dumps, no ptrace by the same uid. */
        (void)prctl(PR_SET_DUMPABLE, 0);
        (void)setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0});
        umask(0077);
        if (sodium_init() < 0)
                return log_error("libsodium failed to initialise"), 1;

        mamori_config *cfg = NULL;
        _cleanup_free_ char *err = NULL;
        int r = mamori_config_load(config ? config : MAMORI_CONFIG_PATH, &cfg, &err);
        if (r == -ENOENT && !config) {
                log_notice("No %s: using the built-in defaults", MAMORI_CONFIG_PATH);
                r = mamori_config_new_default(&cfg);
        }
        if (r < 0) {
                /* Fail closed: a policy file we cannot read is not silently replaced. */
                log_error("%s", err ? err : "Failed to load the policy file");
                return 1;
        }
        store *st = NULL;
        server *srv = NULL;
        int fd = -1;
        r = store_open(state_dir, cfg, &st);
        if (r >= 0) {
                int64_t n = store_purge(st, mamori_now_us());
                if (n < 0)
                        log_warning("Retention purge failed at start; will retry at the next start, ignoring.");
                fd = listen_socket(sock);
                r = fd;
        }
        if (r >= 0)
                r = server_new(cfg, st, fd, &srv);
        if (r >= 0) {
                log_info("Serving on %s, evidence in %s", sock, state_dir);
                r = server_run(srv);
        }
        server_free(srv);
        store_free(st);
        if (fd >= 0)
                close(fd);
        mamori_config_free(cfg);
        return r < 0 ? 1 : 0;
}
