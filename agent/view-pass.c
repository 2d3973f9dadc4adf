/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Passphrases for passphrase-mode output (R-OUT-2..4, docs/design.md "Media view",
 * docs/protocol.md "Media view passphrase socket"). A user whose only write right on the
 * medium is write-passphrase hands the view a passphrase with `mediactl passphrase`
 * (never through argv) over a unix socket the view listens on; the caller is known only
 * by SO_PEERCRED. The view holds it per uid in locked memory and encrypts that user's
 * files to it (age scrypt), until the user forgets it (an empty one), the time limit,
 * the user losing the right (checked at every rights refresh), or the view's end.
 *
 * A thread of its own answers the socket, one short connection at a time, so the
 * single-threaded FUSE loop never waits for a client; the held passphrases are behind
 * their own mutex (the FUSE thread copies one out when it needs it).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cleanup.h"
#include "log.h"
#include "view.h"

#define SLOTS 64                 /* users holding a passphrase on one medium at once */
#define IO_TIMEOUT_S 2           /* a client that does not send its message in time is dropped */
#define MAGIC "MVP1"             /* request: MAGIC, u16 big-endian length, that many bytes */
#define HDR_LEN (4 + 2)
#define REQ_MAX (HDR_LEN + VIEW_PASS_MAX)

typedef struct slot {
        uid_t uid;
        time_t expires; /* CLOCK_MONOTONIC seconds */
        char *pass;     /* sodium_malloc(VIEW_PASS_MAX + 1), NULL: free slot */
} slot;

struct view_pass {
        pthread_mutex_t lock;
        slot slots[SLOTS];
        int listen_fd;
        char *path;
        unsigned ttl_s; /* a held passphrase is forgotten this long after it was set */
};

const char *view_pass_status_to_string(view_pass_status s)
{
        static const char *const names[_VIEW_PASS_STATUS_MAX] = {
                [VIEW_PASS_OK] = "ok",
                [VIEW_PASS_FORGOTTEN] = "forgotten",
                [VIEW_PASS_NO_RIGHT] = "no-passphrase-right",
                [VIEW_PASS_MALFORMED] = "malformed",
                [VIEW_PASS_FULL] = "full",
                [VIEW_PASS_INTERNAL] = "internal-error",
        };
        return s >= 0 && s < _VIEW_PASS_STATUS_MAX ? names[s] : "internal-error";
}

static time_t mono_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec;
}

static void slot_wipe(slot *s)
{
        if (s->pass)
                sodium_free(s->pass); /* zeroes before freeing */
        *s = (slot){0};
}

/* The slot of uid, or NULL; an expired one is wiped first. Under p->lock. */
static slot *slot_find_locked(view_pass *p, uid_t uid)
{
        time_t now = mono_s();
        for (size_t i = 0; i < SLOTS; i++) {
                slot *s = &p->slots[i];
                if (s->pass && s->expires <= now)
                        slot_wipe(s);
                if (s->pass && s->uid == uid)
                        return s;
        }
        return NULL;
}

/* Holds pass (len bytes) for uid, replacing one held. Returns 0, -ENOSPC or -ENOMEM. */
static int store(view_pass *p, uid_t uid, const char *pass, size_t len)
{
        char *copy = sodium_malloc(VIEW_PASS_MAX + 1);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, pass, len);
        copy[len] = 0;
        pthread_mutex_lock(&p->lock);
        slot *s = slot_find_locked(p, uid);
        for (size_t i = 0; !s && i < SLOTS; i++)
                if (!p->slots[i].pass)
                        s = &p->slots[i];
        if (s) {
                slot_wipe(s);
                *s = (slot){.uid = uid, .expires = mono_s() + p->ttl_s, .pass = copy};
        }
        pthread_mutex_unlock(&p->lock);
        if (!s) {
                sodium_free(copy);
                return -ENOSPC;
        }
        return 0;
}

void view_pass_forget(view *v, uid_t uid)
{
        if (!v->pass)
                return;
        pthread_mutex_lock(&v->pass->lock);
        slot *s = slot_find_locked(v->pass, uid);
        if (s)
                slot_wipe(s);
        pthread_mutex_unlock(&v->pass->lock);
}

bool view_pass_held(view *v, uid_t uid)
{
        if (!v->pass)
                return false;
        pthread_mutex_lock(&v->pass->lock);
        bool held = slot_find_locked(v->pass, uid) != NULL;
        pthread_mutex_unlock(&v->pass->lock);
        return held;
}

int view_pass_get(view *v, uid_t uid, char **ret)
{
        if (!v->pass)
                return -ENOKEY;
        char *copy = sodium_malloc(VIEW_PASS_MAX + 1);
        if (!copy)
                return -ENOMEM;
        pthread_mutex_lock(&v->pass->lock);
        slot *s = slot_find_locked(v->pass, uid);
        if (s)
                memcpy(copy, s->pass, VIEW_PASS_MAX + 1);
        pthread_mutex_unlock(&v->pass->lock);
        if (!s) {
                sodium_free(copy);
                return -ENOKEY;
        }
        *ret = copy;
        return 0;
}

void view_pass_prune(view *v)
{
        if (!v->pass)
                return;
        uid_t uids[SLOTS];
        size_t n = 0;
        pthread_mutex_lock(&v->pass->lock);
        for (size_t i = 0; i < SLOTS; i++)
                if (v->pass->slots[i].pass)
                        uids[n++] = v->pass->slots[i].uid;
        pthread_mutex_unlock(&v->pass->lock);
        for (size_t i = 0; i < n; i++) {
                view_caller c;
                /* the right ended (grant over, revoked, taken off the medium) or cannot be
                 * decided (the user gone from NSS): the passphrase goes (fail closed) */
                if (view_caller_fill(v, uids[i], 0, 0, &c) < 0 ||
                    !(view_caller_modes(&c) & MAMORI_MODE_WRITE_PASSPHRASE)) {
                        view_pass_forget(v, uids[i]);
                        log_info("Forgot the passphrase of uid %u: no passphrase right now.", (unsigned)uids[i]);
                }
        }
}

/* Reads one request: until the length it announces, the peer's end, REQ_MAX + 1 bytes or
 * the timeout. Returns the passphrase's length (0: forget) with it in pass, or -EBADMSG. */
static int read_request(int fd, char *buf, char *pass)
{
        size_t have = 0;
        for (;;) {
                ssize_t k = read(fd, buf + have, REQ_MAX + 1 - have);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) /* the peer's end, or the timeout: what came must be complete */
                        break;
                have += (size_t)k;
                if (have > REQ_MAX)
                        return -EBADMSG; /* too long: nothing is kept (fail closed) */
                if (have >= HDR_LEN && have >= HDR_LEN + (((size_t)(uint8_t)buf[4] << 8) | (uint8_t)buf[5]))
                        break;
        }
        if (have < HDR_LEN || memcmp(buf, MAGIC, 4) != 0)
                return -EBADMSG;
        size_t len = ((size_t)(uint8_t)buf[4] << 8) | (uint8_t)buf[5];
        if (len > VIEW_PASS_MAX || have != HDR_LEN + len || memchr(buf + HDR_LEN, 0, len))
                return -EBADMSG; /* short, trailing bytes, over the cap or an embedded NUL: refused */
        memcpy(pass, buf + HDR_LEN, len);
        return (int)len;
}

/* Decides one request from the peer uid/gid/pid. */
static view_pass_status handle(view *v, int fd, const struct ucred *cr, char *buf, char *pass)
{
        int len = read_request(fd, buf, pass);
        if (len < 0)
                return VIEW_PASS_MALFORMED;
        if (len == 0) { /* forgetting one's own passphrase needs no right */
                view_pass_forget(v, cr->uid);
                return VIEW_PASS_FORGOTTEN;
        }
        view_caller c;
        /* a caller whose rights cannot be decided holds none (fail closed) */
        if (view_caller_fill(v, cr->uid, cr->gid, cr->pid, &c) < 0 ||
            !(view_caller_modes(&c) & MAMORI_MODE_WRITE_PASSPHRASE))
                return VIEW_PASS_NO_RIGHT;
        int r = store(v->pass, cr->uid, pass, (size_t)len);
        return r == -ENOSPC ? VIEW_PASS_FULL : r < 0 ? VIEW_PASS_INTERNAL : VIEW_PASS_OK;
}

static void serve_one(view *v, int fd, char *buf, char *pass)
{
        struct ucred cr;
        socklen_t sl = sizeof cr;
        struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
        view_pass_status s;
        bool known = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &sl) == 0 && sl == sizeof cr;
        if (!known)
                s = VIEW_PASS_INTERNAL; /* a caller not known is not served (fail closed) */
        else if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
                 setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
                s = VIEW_PASS_INTERNAL;
        else
                s = handle(v, fd, &cr, buf, pass);
        sodium_memzero(buf, REQ_MAX + 1);
        sodium_memzero(pass, VIEW_PASS_MAX + 1);
        char line[64];
        int n = snprintf(line, sizeof line, "%s\n", view_pass_status_to_string(s));
        (void)!send(fd, line, (size_t)n, MSG_NOSIGNAL);
        if (known)
                log_info("Passphrase request from uid %u: %s.", (unsigned)cr.uid, view_pass_status_to_string(s));
}

static void *pass_thread(void *arg)
{
        view *v = arg;
        char *buf = sodium_malloc(REQ_MAX + 1), *pass = sodium_malloc(VIEW_PASS_MAX + 1);
        if (!buf || !pass) {
                log_error("Cannot allocate locked memory: passphrases are not taken.");
                return NULL; /* nobody can set one: passphrase output stays refused (fail closed) */
        }
        for (;;) {
                int fd = accept4(v->pass->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno != EINTR && errno != ECONNABORTED)
                                nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
                        continue;
                }
                serve_one(v, fd, buf, pass);
                close(fd);
        }
        return NULL;
}

/* Opens (creating) the socket's directory: root's, not writable by others. */
static int socket_dir(const char *path)
{
        _cleanup_free_ char *dir = strdup(path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (!slash || slash == dir)
                return -EINVAL;
        *slash = 0;
        char *up = strrchr(dir, '/');
        if (up && up != dir) { /* the agent's runtime directory, if the unit did not make it */
                *up = 0;
                (void)mkdir(dir, 0755);
                *up = '/';
        }
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        if (st.st_uid != 0 || (st.st_mode & 022))
                return -EPERM; /* another user could replace the socket: not served (fail closed) */
        return 0;
}

int view_pass_start(view *v, const char *path, unsigned ttl_s)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof sa.sun_path || path[0] != '/')
                return -EINVAL;
        int r = socket_dir(path);
        if (r < 0)
                return r;
        _cleanup_free_ view_pass *p = calloc(1, sizeof *p);
        _cleanup_free_ char *pp = strdup(path);
        if (!p || !pp)
                return -ENOMEM;
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        memcpy(sa.sun_path, path, strlen(path));
        (void)unlink(path); /* one left by a view that was killed */
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
                return -errno;
        /* any local user may connect; who they are is SO_PEERCRED's answer, not the mode's */
        if (chmod(path, 0666) < 0 || listen(fd, 16) < 0) {
                r = -errno;
                (void)unlink(path);
                return r;
        }
        pthread_mutex_init(&p->lock, NULL);
        p->listen_fd = TAKE_FD(fd);
        p->path = TAKE_PTR(pp);
        p->ttl_s = ttl_s;
        v->pass = TAKE_PTR(p);
        pthread_t t;
        r = pthread_create(&t, NULL, pass_thread, v);
        if (r != 0) {
                view_pass_stop(v);
                return -r;
        }
        pthread_detach(t);
        return 0;
}

void view_pass_stop(view *v)
{
        view_pass *p = v->pass;
        if (!p)
                return;
        (void)unlink(p->path);
        pthread_mutex_lock(&p->lock);
        for (size_t i = 0; i < SLOTS; i++) /* the medium goes: every passphrase with it */
                slot_wipe(&p->slots[i]);
        pthread_mutex_unlock(&p->lock);
        /* the thread may still be in accept(): the memory and the socket stay until exit */
}
