/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-view: serves one registered medium's raw mount at a path users see
 * (docs/design.md "Media view"). Started by mamori-agent after the raw mount, stopped
 * with SIGTERM before the agent unmounts it; SIGHUP asks policyd again (the agent
 * forwards its reload), as does the decision's next change time.
 *
 *   mamori-view --raw DIR --mountpoint DIR [--socket PATH] [--keys-dir DIR]
 *               [--stage-dir DIR] --medium NO --vendor V --product P --serial S
 *               --port PORT [--size BYTES] [--fs-uuid UUID] [--pass-socket PATH]
 *               [--pass-ttl SECONDS]
 *
 * --pass-socket: where users hand over the passphrase for write-passphrase output
 * (view-pass.c); without it passphrase output is refused. --pass-ttl: how long one is
 * held at most (default 8 h; the agent passes none, tests a short one).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cleanup.h"
#include "client.h"
#include "log.h"
#include "orgkeys.h"
#include "view.h"

#define RETRY_S 2 /* while policyd does not answer: ask again this often */
#define STAGE_DIR_DEFAULT "/var/lib/mamori-agent/stage"

static void usage(FILE *f)
{
        fputs("Usage: mamori-view --raw DIR --mountpoint DIR [--socket PATH] [--keys-dir DIR]\n"
              "                   [--stage-dir DIR] --medium NO --vendor V --product P --serial S\n"
              "                   --port PORT [--size BYTES] [--fs-uuid UUID] [--kind storage|optical]\n"
              "                   [--pass-socket PATH] [--pass-ttl SECONDS]\n",
              f);
}

static int parse_args(int argc, char *argv[], view *v, const char **stage, const char **pass_socket,
                      unsigned *pass_ttl)
{
        static const struct option lo[] = {
                {"raw", required_argument, NULL, 'r'},      {"mountpoint", required_argument, NULL, 'm'},
                {"socket", required_argument, NULL, 's'},   {"keys-dir", required_argument, NULL, 'k'},
                {"stage-dir", required_argument, NULL, 'S'}, {"medium", required_argument, NULL, 'n'},
                {"vendor", required_argument, NULL, 'V'},   {"product", required_argument, NULL, 'P'},
                {"serial", required_argument, NULL, 'N'},   {"port", required_argument, NULL, 'p'},
                {"size", required_argument, NULL, 'z'},     {"fs-uuid", required_argument, NULL, 'u'},
                {"kind", required_argument, NULL, 'K'},     {"pass-socket", required_argument, NULL, 'A'},
                {"pass-ttl", required_argument, NULL, 'T'},
                {"help", no_argument, NULL, 'h'},           {},
        };
        int c;
        char *end;
        while ((c = getopt_long(argc, argv, "h", lo, NULL)) >= 0)
                switch (c) {
                case 'r': v->raw_dir = optarg; break;
                case 'm': v->mountpoint = optarg; break;
                case 's': v->socket_path = optarg; break;
                case 'k': v->keys_dir = optarg; break;
                case 'S': *stage = optarg; break;
                case 'A': *pass_socket = optarg; break;
                case 'T':
                        errno = 0;
                        unsigned long ttl = strtoul(optarg, &end, 10);
                        if (errno || *end || end == optarg || optarg[0] == '-' || ttl == 0 || ttl > VIEW_PASS_TTL_S)
                                return -EINVAL; /* never longer than the default */
                        *pass_ttl = (unsigned)ttl;
                        break;
                case 'n': v->medium_arg = optarg; break;
                case 'V': v->vendor = optarg; break;
                case 'P': v->product = optarg; break;
                case 'N': v->serial = optarg; break;
                case 'p': v->port = optarg; break;
                case 'u': v->fs_uuid = optarg; break;
                case 'K':
                        if (!streq(optarg, "storage") && !streq(optarg, "optical"))
                                return -EINVAL;
                        v->kind = optarg;
                        break;
                case 'z':
                        errno = 0;
                        v->dev_size = strtoull(optarg, &end, 10);
                        if (errno || *end || end == optarg)
                                return -EINVAL;
                        break;
                case 'h': usage(stdout); exit(EXIT_SUCCESS);
                default: return -EINVAL;
                }
        if (optind != argc || !v->raw_dir || !v->mountpoint || !v->vendor || !v->product || !v->serial || !v->port ||
            !v->medium_arg || v->raw_dir[0] != '/' || v->mountpoint[0] != '/')
                return -EINVAL;
        return 0;
}

/* Opens (creating 0700) a root-only directory, checked on the descriptor. */
static int private_dir(const char *path)
{
        _cleanup_free_ char *parent = strdup(path);
        char *slash = parent ? strrchr(parent, '/') : NULL;
        if (slash && slash != parent) { /* the agent's state directory, if the unit did not make it */
                *slash = 0;
                (void)mkdir(parent, 0700);
        }
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return -errno;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_uid != 0 || (st.st_mode & 077)) {
                close(fd);
                return -EPERM; /* plaintext would be staged where others can reach it: refused */
        }
        return fd;
}

/* Makes the mount point (and its parent) 0755 root-owned directories, not symlinks. */
static int make_mountpoint(const char *path)
{
        _cleanup_free_ char *parent = strdup(path);
        if (!parent)
                return -ENOMEM;
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
                *slash = 0;
                if (mkdir(parent, 0755) < 0 && errno != EEXIST)
                        return -errno;
        }
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                return -errno;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        if (st.st_uid != 0)
                return -EPERM; /* someone else's directory: not mounted over */
        (void)fchmod(fd, 0755); /* the agent's UMask=0077 would leave it 0700 */
        return 0;
}

/* Removes the view's temporary files left on the medium by a view that was killed in the
 * middle of a commit (never recorded, so they must not stay: R-EV-9). Walks at most
 * depth levels without following symlinks or leaving the filesystem. Returns the count. */
static unsigned remove_stale_temps(int dfd, dev_t dev, unsigned depth)
{
        int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d) {
                if (fd >= 0)
                        close(fd);
                return 0;
        }
        unsigned n = 0;
        for (struct dirent *e; (e = readdir(d));) {
                struct stat st;
                if (streq(e->d_name, ".") || streq(e->d_name, "..") ||
                    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != dev)
                        continue;
                size_t len = strlen(e->d_name);
                if (S_ISREG(st.st_mode) && strncmp(e->d_name, VIEW_TEMP_PREFIX, STRLEN(VIEW_TEMP_PREFIX)) == 0 &&
                    len > 4 && streq(e->d_name + len - 4, ".tmp")) {
                        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
                                n++;
                } else if (S_ISDIR(st.st_mode) && depth > 0) {
                        _cleanup_close_ int sub = openat(dirfd(d), e->d_name,
                                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0)
                                n += remove_stale_temps(sub, dev, depth - 1);
                }
        }
        closedir(d);
        return n;
}

static int64_t realtime_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The rights thread: waits for SIGHUP or the next change time, then asks again. */
static void *rights_thread(void *arg)
{
        view *v = arg;
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGHUP);
        bool failed = false;
        for (;;) {
                pthread_mutex_lock(&v->lock);
                int64_t next = v->rights.next_change;
                pthread_mutex_unlock(&v->lock);
                struct timespec ts = {.tv_sec = failed ? RETRY_S : 3600};
                if (!failed && next != INT64_MAX) {
                        int64_t d = next - realtime_us();
                        d = d < 0 ? 0 : d + 1000; /* just after the change */
                        if (d < (int64_t)ts.tv_sec * 1000000)
                                ts = (struct timespec){.tv_sec = d / 1000000, .tv_nsec = (d % 1000000) * 1000};
                }
                int sig = sigtimedwait(&ss, NULL, &ts);
                if (sig == SIGHUP) {
                        log_info("Reload: asking policyd again, reading the keys again.");
                        (void)view_keys_load(v, false);
                        atomic_store(&v->reload_ids, true); /* the identities: by the FUSE thread */
                }
                int r = view_rights_refresh(v);
                if (r < 0 && !failed) /* said once, not every retry */
                        log_warning_errno(r, "policyd did not answer for the medium: nothing is allowed "
                                          "until it does: %m");
                else if (r >= 0 && failed)
                        log_info("policyd answers again for the medium.");
                failed = r < 0;
                if (r >= 0) /* a passphrase right that ended takes its passphrase with it */
                        view_pass_prune(v);
        }
        return NULL;
}

static int serve(view *v)
{
        struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
        if (fuse_opt_add_arg(&args, "mamori-view") < 0 || fuse_opt_add_arg(&args, "-o") < 0 ||
            fuse_opt_add_arg(&args, "allow_other,nosuid,nodev,noexec,fsname=mamori,subtype=mamori") < 0)
                return -ENOMEM;
        struct fuse *f = fuse_new(&args, &view_ops, sizeof view_ops, v);
        fuse_opt_free_args(&args);
        if (!f)
                return log_error_errno(EINVAL, "Cannot set up FUSE.");
        int r = fuse_mount(f, v->mountpoint);
        if (r != 0) {
                fuse_destroy(f);
                return log_error_errno(EIO, "Cannot mount the view on %s.", v->mountpoint);
        }
        if (fuse_set_signal_handlers(fuse_get_session(f)) < 0) {
                fuse_unmount(f);
                fuse_destroy(f);
                return -EIO;
        }
        log_info("Serving medium %s on %s.", v->medium_arg, v->mountpoint);
        r = fuse_loop(f); /* single-threaded: see view.h */
        fuse_remove_signal_handlers(fuse_get_session(f));
        fuse_unmount(f);
        fuse_destroy(f);
        (void)rmdir(v->mountpoint);
        return r < 0 ? r : 0;
}

int main(int argc, char *argv[])
{
        mamori_log_open("mamori-view", getenv("JOURNAL_STREAM") != NULL);
        (void)prctl(PR_SET_DUMPABLE, 0); /* identities in memory: no core, no ptrace by users */
        static view v = {.raw_fd = -1, .stage_fd = -1, .keys_dir = MAMORI_ORGKEYS_DIR_DEFAULT,
                         .lock = PTHREAD_MUTEX_INITIALIZER, .rights = {.verdict = -1, .next_change = INT64_MAX},
                         .fs_uuid = "", .kind = "storage"};
        const char *stage = STAGE_DIR_DEFAULT, *pass_socket = NULL;
        unsigned pass_ttl = VIEW_PASS_TTL_S;
        if (parse_args(argc, argv, &v, &stage, &pass_socket, &pass_ttl) < 0) {
                usage(stderr);
                return 2;
        }
        if (sodium_init() < 0)
                return 1;
        v.socket_path = mamori_client_socket_path(v.socket_path);
        if (gethostname(v.host, sizeof v.host - 1) < 0)
                snprintf(v.host, sizeof v.host, "unknown");
        v.raw_fd = open(v.raw_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (v.raw_fd < 0)
                return log_error_errno(errno, "Cannot open the raw mount %s: %m", v.raw_dir), 1;
        v.stage_fd = private_dir(stage);
        if (v.stage_fd < 0)
                return log_error_errno(v.stage_fd, "Stage directory %s: %m", stage), 1;
        int r = make_mountpoint(v.mountpoint);
        if (r < 0)
                return log_error_errno(r, "Mount point %s: %m", v.mountpoint), 1;
        struct stat rst;
        unsigned stale = fstat(v.raw_fd, &rst) == 0 ? remove_stale_temps(v.raw_fd, rst.st_dev, 32) : 0;
        if (stale > 0)
                log_warning("Removed %u unfinished file(s) a killed view left on the medium.", stale);
        (void)view_keys_load(&v, true);
        r = view_rights_refresh(&v);
        if (r < 0) /* served, but nothing allowed until policyd answers (fail closed) */
                log_warning_errno(r, "policyd did not answer for the medium: %m");
        /* SIGHUP is taken by the rights thread only; FUSE's handlers stop the loop on TERM/INT. */
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &ss, NULL);
        /* after the mask (its thread must not take SIGHUP), before the rights thread (which prunes) */
        if (pass_socket && (r = view_pass_start(&v, pass_socket, pass_ttl)) < 0) /* passphrase output refused */
                log_warning_errno(r, "Cannot listen for passphrases on %s: passphrase output is refused: %m",
                                  pass_socket);
        pthread_t t;
        if (pthread_create(&t, NULL, rights_thread, &v) != 0)
                return log_error_errno(EAGAIN, "Cannot start the rights thread."), 1;
        r = serve(&v);
        view_pass_stop(&v); /* the medium goes: its passphrases with it */
        mamori_age_identities_free(v.ids, v.n_ids);
        return r < 0 ? 1 : 0;
}
