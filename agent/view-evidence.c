/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The view's evidence (R-EV-1, R-EV-2, R-EV-9): one record per file transferred, sent
 * to policyd and acknowledged before the file is put in place. No spool: an output
 * that cannot be recorded now does not happen (the caller fails the write).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "client.h"
#include "log.h"
#include "view.h"

#define POLICYD_TIMEOUT_S 10

static bool clock_synced(void)
{
        struct timex tx = {0};
        int st = adjtimex(&tx);
        return st >= 0 && st != TIME_ERROR && !(tx.status & STA_UNSYNC);
}

static int connect_policyd(view *v)
{
        int fd = mamori_client_connect(v->socket_path);
        if (fd < 0)
                return fd;
        struct timeval tv = {.tv_sec = POLICYD_TIMEOUT_S};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        return fd;
}

bool view_policyd_reachable(view *v)
{
        _cleanup_close_ int fd = connect_policyd(v);
        return fd >= 0;
}

int view_evidence(view *v, const view_caller *c, const view_transfer *t, bool refused)
{
        char type[48], uid[16], size[24], medium[MAMORI_MEDIA_NO_MAX + 1];
        snprintf(type, sizeof type, "media.%s%s", t->output ? "output" : "input", refused ? ".refused" : "");
        snprintf(uid, sizeof uid, "%u", (unsigned)c->uid);
        snprintf(size, sizeof size, "%" PRIu64, t->size);
        view_medium(v, medium);
        const char *kv[][2] = {
                {"user", c->name},
                {"uid", uid},
                {"host", v->host},
                {"file", t->file},
                {"size", size},
                {"direction", t->output ? "output" : "input"},
                {"form", view_form_to_string(t->form)},
                {"via", "view"},
                {"source_path", t->source_path ? t->source_path : ""},
                {"stored_name", t->stored_name ? t->stored_name : ""},
                {"medium", medium},
                {"vendor", v->vendor},
                {"product", v->product},
                {"serial", v->serial},
                {"port", v->port},
                {"reason", t->reason},
        };
        _cleanup_(mamori_msg_freep) mamori_msg *m = NULL, *ans = NULL;
        int r = mamori_msg_new(MAMORI_MSG_EVIDENCE_SUBMIT, 0, &m);
        if (r < 0)
                return -EIO;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        mamori_msg_put_str(m, MAMORI_F_EV_TYPE, type);
        mamori_msg_put_str(m, MAMORI_F_EV_COMPONENT, "agent");
        mamori_msg_put_i64(m, MAMORI_F_EV_TIME, (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
        mamori_msg_put_u8(m, MAMORI_F_EV_SYNCED, clock_synced());
        for (size_t i = 0; i < ELEMENTSOF(kv); i++)
                if (kv[i][1]) /* reason only on refusals */
                        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, kv[i][0], kv[i][1]);
        char idhex[33];
        if (t->grant_id && t->consume) /* policyd uses it and adds the grant_id pair */
                mamori_msg_put_bytes(m, MAMORI_F_GRANT_ID, t->grant_id, MAMORI_GRANT_ID_LEN);
        else if (t->grant_id)
                mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "grant_id", mamori_grant_id_format(t->grant_id, idhex));
        _cleanup_close_ int fd = connect_policyd(v);
        if (fd < 0)
                return log_error_errno(EIO, "Cannot reach policyd for the %s record of \"%s\": %s", type, t->file,
                                       strerror(-fd));
        r = mamori_client_call(fd, m, &ans);
        if (r >= 0 && t->consume && ans->status == MAMORI_E_EXISTS) /* stored nothing, used nothing */
                return log_warning_errno(EEXIST, "The once-only grant for \"%s\" was already used.", t->file);
        if (r >= 0 && t->consume && (ans->status == MAMORI_E_NOT_FOUND || ans->status == MAMORI_E_INVALID))
                return log_warning_errno(EACCES, "policyd refused the once-only grant for \"%s\".", t->file);
        if (r < 0 || ans->status != MAMORI_OK) /* not acknowledged: not stored (R-EV-9) */
                return log_error_errno(EIO, "policyd did not store the %s record of \"%s\": %s", type, t->file,
                                       r < 0 ? strerror(-r) : mamori_status_to_string(ans->status));
        return 0;
}

/* True if /proc/<pid>/fdinfo/<fd> says the descriptor is open read-only. */
static bool fd_read_only(int fdinfo_dir, const char *fd)
{
        _cleanup_close_ int f = openat(fdinfo_dir, fd, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char buf[512];
        ssize_t n = f >= 0 ? read(f, buf, sizeof buf - 1) : -1;
        if (n <= 0)
                return false;
        buf[n] = 0;
        const char *p = strstr(buf, "flags:");
        if (!p)
                return false;
        unsigned long flags = strtoul(p + 6, NULL, 8);
        return (flags & O_ACCMODE) == O_RDONLY;
}

/* True if path names base outside the view. */
static bool names_source(view *v, const char *path, const char *base)
{
        size_t mlen = strlen(v->mountpoint);
        const char *slash = strrchr(path, '/');
        return path[0] == '/' && slash && streq(slash + 1, base) &&
               !(strncmp(path, v->mountpoint, mlen) == 0 && (path[mlen] == '/' || !path[mlen]));
}

/* From the caller's open descriptors: needs ptrace access to another user's process
 * (CAP_SYS_PTRACE), which the agent's unit does not grant. */
static bool source_from_fds(view *v, pid_t pid, const char *base, char *ret, size_t size)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
        _cleanup_close_ int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        snprintf(path, sizeof path, "/proc/%d/fdinfo", (int)pid);
        _cleanup_close_ int ifd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int dup_fd = dfd >= 0 && ifd >= 0 ? dup(dfd) : -1;
        DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
        if (!d) {
                if (dup_fd >= 0)
                        close(dup_fd);
                return false;
        }
        bool found = false;
        for (struct dirent *e; !found && (e = readdir(d));) {
                char target[PATH_MAX];
                ssize_t n = readlinkat(dfd, e->d_name, target, sizeof target - 1);
                if (n <= 0)
                        continue;
                target[n] = 0;
                /* no stat of the target: it could sit on the caller's own FUSE mount and
                 * never answer, stopping the view for everyone; sockets and pipes do not
                 * read as absolute paths */
                if (!names_source(v, target, base) || !fd_read_only(ifd, e->d_name))
                        continue;
                snprintf(ret, size, "%s", target);
                found = true;
        }
        closedir(d);
        return found;
}

/* From the caller's command line (readable without privilege): an absolute argument
 * with the same base name, e.g. cp's source. What the caller said, not what it opened;
 * not looked up (see above). */
static bool source_from_cmdline(view *v, pid_t pid, const char *base, char *ret, size_t size)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        _cleanup_free_ char *buf = malloc(65536);
        ssize_t n = buf ? read(fd, buf, 65535) : -1;
        if (n <= 0)
                return false;
        buf[n] = 0;
        for (char *a = buf; a < buf + n; a += strlen(a) + 1) {
                if (names_source(v, a, base)) {
                        snprintf(ret, size, "%s", a);
                        return true;
                }
        }
        return false;
}

void view_source_path(view *v, pid_t pid, const char *base, char *ret, size_t size)
{
        ret[0] = 0;
        if (!source_from_fds(v, pid, base, ret, size))
                (void)source_from_cmdline(v, pid, base, ret, size);
}
