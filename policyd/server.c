/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "cleanup.h"
#include "handlers.h"
#include "log.h"
#include "server.h"
#include "token.h"

#define OUT_HIGH (256u * 1024u)      /* producers pause above this much queued output */
#define OUT_CAP (32u * 1024u * 1024u) /* a peer that does not read is dropped past this */
#define GROUPS_MAX 256
#define DENIALS_MAX 16
#define CONNS_PER_UID_MAX 64 /* one user cannot take the descriptors PAM and the agent need */
#define CONNS_MAX 1000

struct conn {
        int fd;
        struct ucred cred;
        unsigned roles;
        char name[64];
        mamori_reader rd;
        mamori_msg *held;   /* a request waiting for the batch its peer depends on */
        uint8_t *out;
        size_t out_len, out_off, out_alloc;
        bool depends;       /* queued output depends on the open batch */
        bool watching;      /* hears MEDIA_CHANGED after commits that changed decisions */
        bool closing;       /* drop after the output is flushed */
        bool dead;
        unsigned denials;
        producer_fn produce;
        void *pstate;
        void (*pfree)(void *);
        conn *next;
};

struct server {
        const mamori_config *cfg;
        store *st;
        int listen_fd, epoll_fd, signal_fd;
        conn *conns;
        const handler *table[_MAMORI_MSG_MAX];
        gid_t admin_gid, manager_gid, auditor_gid;
        bool have_admin, have_manager, have_auditor;
        uid_t agent_uid;
        bool have_agent;
        bool media_changed; /* the open batch changes decisions: tell the watchers */
        bool quit;
};

/* Every module: its dispatch table and an optional start-up hook (creating its
 * tables in the store's database, say). A module adds one row here. */
static const struct module {
        const handler *table;
        int (*init)(server *srv);
} modules[] = {
        {core_handlers, NULL},
        {evidence_handlers, NULL},
        {media_handlers, media_init},
        {auth_handlers, auth_module_init},
        {token_handlers, token_init},
};

static void conn_flush(server *srv, conn *c);

store *server_store(server *srv) { return srv->st; }
const mamori_config *server_config(server *srv) { return srv->cfg; }
uid_t conn_uid(const conn *c) { return c->cred.uid; }
pid_t conn_pid(const conn *c) { return c->cred.pid; }
unsigned conn_roles(const conn *c) { return c->roles; }

/* Resolves the configured role groups and agent user. A name that does not resolve
 * grants that role to nobody (fail closed). */
static void resolve_roles(server *srv)
{
        struct {
                const char *name;
                gid_t *gid;
                bool *have;
        } g[] = {
                {srv->cfg->roles.admin_group, &srv->admin_gid, &srv->have_admin},
                {srv->cfg->roles.manager_group, &srv->manager_gid, &srv->have_manager},
                {srv->cfg->roles.auditor_group, &srv->auditor_gid, &srv->have_auditor},
        };
        for (size_t i = 0; i < ELEMENTSOF(g); i++) {
                struct group *gr = g[i].name ? getgrnam(g[i].name) : NULL;
                *g[i].have = gr != NULL;
                if (gr)
                        *g[i].gid = gr->gr_gid;
                else
                        log_warning("Group \"%s\" does not exist: nobody holds that role", g[i].name ? g[i].name : "");
        }
        struct passwd *pw = srv->cfg->roles.agent_user ? getpwnam(srv->cfg->roles.agent_user) : NULL;
        srv->have_agent = pw != NULL;
        if (pw)
                srv->agent_uid = pw->pw_uid;
}

int server_new(const mamori_config *cfg, store *st, int listen_fd, server **ret)
{
        server *srv = calloc(1, sizeof *srv);
        if (!srv)
                return -ENOMEM;
        srv->cfg = cfg;
        srv->st = st;
        srv->listen_fd = listen_fd;
        srv->signal_fd = -1;
        for (size_t t = 0; t < ELEMENTSOF(modules); t++)
                for (const handler *h = modules[t].table; h->type; h++) {
                        if (srv->table[h->type]) {
                                free(srv);
                                return log_error_errno(EINVAL, "Request type %u is handled twice", h->type);
                        }
                        srv->table[h->type] = h;
                }
        resolve_roles(srv);
        for (size_t t = 0; t < ELEMENTSOF(modules); t++) {
                int r = modules[t].init ? modules[t].init(srv) : 0;
                if (r < 0) {
                        free(srv);
                        return r;
                }
        }
        srv->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        srv->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (srv->epoll_fd < 0 || srv->signal_fd < 0) {
                server_free(srv);
                return log_error_errno(errno, "Failed to set up the event loop: %m");
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev);
        ev.data.ptr = srv;
        epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->signal_fd, &ev);
        *ret = srv;
        return 0;
}

static void conn_free(conn *c)
{
        token_conn_closed(c); /* the token presence it reported is forgotten (fail closed) */
        if (c->pfree)
                c->pfree(c->pstate);
        mamori_msg_free(c->held);
        mamori_reader_done(&c->rd);
        free(c->out);
        close(c->fd);
        free(c);
}

void server_free(server *srv)
{
        if (!srv)
                return;
        while (srv->conns) {
                conn *c = srv->conns;
                srv->conns = c->next;
                conn_free(c);
        }
        if (srv->epoll_fd >= 0)
                close(srv->epoll_fd);
        if (srv->signal_fd >= 0)
                close(srv->signal_fd);
        free(srv);
}

/* Works out a new peer's roles from SO_PEERCRED and SO_PEERGROUPS. */
static void conn_roles_init(server *srv, conn *c)
{
        gid_t groups[GROUPS_MAX];
        socklen_t len = sizeof groups;
        int n = 0;
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
                n = len / sizeof(gid_t);
        /* If the groups cannot be had, the peer holds only what its uid/gid give (fail closed). */
        c->roles = ROLE_USER;
        if (c->cred.uid == 0)
                c->roles |= ROLE_ROOT | ROLE_AGENT;
        if (srv->have_agent && c->cred.uid == srv->agent_uid)
                c->roles |= ROLE_AGENT;
        for (int i = -1; i < n; i++) {
                gid_t g = i < 0 ? c->cred.gid : groups[i];
                if (srv->have_admin && g == srv->admin_gid)
                        c->roles |= ROLE_ADMIN;
                if (srv->have_manager && g == srv->manager_gid)
                        c->roles |= ROLE_MANAGER;
                if (srv->have_auditor && g == srv->auditor_gid)
                        c->roles |= ROLE_AUDITOR;
        }
}

static void accept_all(server *srv)
{
        for (;;) {
                int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                log_warning_errno(errno, "accept() failed: %m, ignoring.");
                        return;
                }
                conn *c = calloc(1, sizeof *c);
                socklen_t l = sizeof c->cred;
                if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &l) < 0) {
                        free(c);
                        close(fd); /* no credentials, no service (fail closed) */
                        continue;
                }
                unsigned total = 0, same = 0;
                for (conn *o = srv->conns; o; o = o->next) {
                        total++;
                        same += o->cred.uid == c->cred.uid;
                }
                /* Over the cap: refused (fail closed for that peer); root is never refused
                 * for another user's connections, only for its own count. */
                if (total >= CONNS_MAX || same >= CONNS_PER_UID_MAX) {
                        log_warning("Too many connections (uid %u has %u), refusing pid %d.", c->cred.uid, same,
                                    (int)c->cred.pid);
                        free(c);
                        close(fd);
                        continue;
                }
                c->fd = fd;
                snprintf(c->name, sizeof c->name, "pid %d uid %u", (int)c->cred.pid, c->cred.uid);
                conn_roles_init(srv, c);
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        conn_free(c);
                        continue;
                }
                c->next = srv->conns;
                srv->conns = c;
        }
}

int conn_send(conn *c, mamori_msg *m)
{
        size_t len;
        const uint8_t *p = mamori_msg_frame(m, &len);
        if (!p)
                return -EMSGSIZE;
        if (c->out_len + len > OUT_CAP) {
                c->dead = true; /* a peer that does not read its replies is dropped */
                return -ENOBUFS;
        }
        if (c->out_len + len > c->out_alloc) {
                size_t a = c->out_alloc ? c->out_alloc : 4096;
                while (a < c->out_len + len)
                        a *= 2;
                uint8_t *n = realloc(c->out, a);
                if (!n)
                        return -ENOMEM;
                c->out = n;
                c->out_alloc = a;
        }
        memcpy(c->out + c->out_len, p, len);
        c->out_len += len;
        return 0;
}

int conn_reply(conn *c, uint16_t type, mamori_status status, const char *text)
{
        mamori_msg *m;
        int r = mamori_msg_new(type, status, &m);
        if (r < 0)
                return r;
        if (text)
                mamori_msg_put_str(m, MAMORI_F_TEXT, text);
        r = conn_send(c, m);
        mamori_msg_free(m);
        return r;
}

int conn_reply_stored(conn *c, const mamori_msg *req, uint64_t seq)
{
        mamori_msg *m;
        int r = mamori_msg_new(req->type, MAMORI_OK, &m);
        if (r < 0)
                return r;
        mamori_msg_put_u64(m, MAMORI_F_EV_SEQ, seq);
        r = conn_send(c, m);
        mamori_msg_free(m);
        conn_hold_for_commit(c); /* "ok" leaves only once the record is durable */
        return r;
}

void conn_watch_media(conn *c)
{
        c->watching = true;
}

void server_media_changed(server *srv)
{
        srv->media_changed = true;
}

void conn_hold_for_commit(conn *c)
{
        c->depends = true;
}

void conn_send_now(server *srv, conn *c)
{
        if (!c->depends && !c->produce)
                conn_flush(srv, c);
}

void conn_set_producer(conn *c, producer_fn fn, void *state, void (*free_state)(void *))
{
        if (c->pfree)
                c->pfree(c->pstate);
        c->produce = fn;
        c->pstate = state;
        c->pfree = free_state;
}

int server_evidence(server *srv, const char *type, uid_t uid, ...)
{
        mamori_record *rec;
        int r = mamori_record_new(&rec);
        if (r < 0)
                return r;
        rec->time_us = mamori_now_us();
        rec->clock_synced = mamori_clock_synced_cached();
        rec->uid = uid;
        r = mamori_record_set(rec, &rec->type, type);
        if (r >= 0)
                r = mamori_record_set(rec, &rec->component, "policyd");
        va_list ap;
        va_start(ap, uid);
        const char *k;
        while (r >= 0 && (k = va_arg(ap, const char *))) {
                const char *v = va_arg(ap, const char *);
                r = mamori_record_add(rec, k, v ? v : "");
        }
        va_end(ap);
        if (r < 0) {
                mamori_record_free(rec);
                return r;
        }
        return store_append(srv->st, rec, NULL);
}

/* Refuses a request the peer's roles do not allow; the refusal is evidence. */
static int deny(server *srv, conn *c, const mamori_msg *req, const char *name)
{
        char uid[16], pid[16], type[16];
        snprintf(uid, sizeof uid, "%u", c->cred.uid);
        snprintf(pid, sizeof pid, "%d", (int)c->cred.pid);
        snprintf(type, sizeof type, "%u", req->type);
        int r = server_evidence(srv, "access.denied", c->cred.uid, "request", name ? name : type,
                                "peer_uid", uid, "peer_pid", pid, NULL);
        if (r >= 0)
                conn_hold_for_commit(c);
        if (++c->denials >= DENIALS_MAX)
                c->closing = true; /* a peer probing for what it may do is cut short */
        return conn_reply(c, req->type, MAMORI_E_DENIED, "this request needs a role you do not hold");
}

/* Handles one request. Returns 0, or negative to drop the peer. */
static int dispatch(server *srv, conn *c, mamori_msg *req)
{
        const char *name = mamori_msg_type_to_string(req->type);
        const handler *h = req->type < _MAMORI_MSG_MAX ? srv->table[req->type] : NULL;
        if (!h || !name) /* unlisted means refused */
                return conn_reply(c, req->type, MAMORI_E_UNSUPPORTED, "unknown request");
        if (!(h->roles & c->roles)) /* an empty role set allows nobody */
                return deny(srv, c, req, name);
        int r = h->fn(srv, c, req);
        if (r == -EBADMSG) {
                log_warning("Malformed %s request from %s: dropping the peer.", name, c->name);
                (void)conn_reply(c, req->type, MAMORI_E_MALFORMED, "malformed request");
                c->closing = true;
                return 0;
        }
        if (r < 0)
                log_warning_errno(r, "%s request from %s failed: %m", name, c->name);
        return r == -ENOMEM ? r : 0;
}

/* Handles the requests buffered for c, stopping at one that must wait for the batch. */
static void process(server *srv, conn *c)
{
        while (!c->dead && !c->closing) {
                mamori_msg *m = c->held;
                c->held = NULL;
                if (!m) {
                        int r = mamori_reader_next(&c->rd, &m);
                        if (r == 0)
                                return;
                        if (r < 0) {
                                log_warning("%s from %s: dropping the peer.",
                                            r == -EMSGSIZE ? "Oversized message" : "Malformed message", c->name);
                                c->dead = true;
                                return;
                        }
                }
                /* While its earlier replies wait for the batch, a peer may only add
                 * submissions to it; anything else waits for the commit, in order. */
                /* Nor may a new request interleave its reply with a stream still going. */
                if ((c->depends && m->type != MAMORI_MSG_EVIDENCE_SUBMIT) || c->produce) {
                        c->held = m;
                        return;
                }
                if (dispatch(srv, c, m) < 0)
                        c->dead = true;
                mamori_msg_free(m);
        }
}

static void conn_read(server *srv, conn *c)
{
        for (;;) {
                int r = mamori_reader_fill(&c->rd, c->fd);
                if (r == -EAGAIN || r == -ENOBUFS)
                        break;
                if (r <= 0) {
                        c->dead = true;
                        return;
                }
                process(srv, c);
                if (c->held || c->dead)
                        break;
        }
        process(srv, c);
}

/* Writes what can be written; arms EPOLLOUT for the rest. */
static void conn_flush(server *srv, conn *c)
{
        while (c->out_off < c->out_len) {
                ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EAGAIN)
                                break;
                        c->dead = true;
                        return;
                }
                c->out_off += n;
        }
        if (c->out_off == c->out_len)
                c->out_off = c->out_len = 0;
        else if (c->out_off > c->out_alloc / 2) {
                memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
                c->out_len -= c->out_off;
                c->out_off = 0;
        }
        /* A streaming reply wants to hear when it may write more, even with nothing queued. */
        bool want_out = c->out_len || c->produce;
        struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Commits the batch. On failure nobody who depended on it hears "ok": those peers are
 * dropped, so a client that saw no acknowledgement knows its records were not kept. */
static void commit(server *srv)
{
        /* Also when a handler (rotate, purge) already committed the batch itself: with
         * nothing pending, nobody's output waits any more. */
        int r = store_dirty(srv->st) ? store_commit(srv->st) : 0;
        bool notify = srv->media_changed && r >= 0;
        srv->media_changed = false;
        mamori_msg *changed = NULL;
        if (notify && mamori_msg_new(MAMORI_MSG_MEDIA_CHANGED, MAMORI_OK, &changed) < 0)
                log_error("Out of memory: the agent will not hear of this change until its next decision.");
        for (conn *c = srv->conns; c; c = c->next) {
                if (r < 0 && c->depends)
                        c->dead = true;
                c->depends = false;
                if (changed && c->watching && !c->dead && conn_send(c, changed) < 0)
                        c->dead = true; /* a watcher that cannot hear is dropped: it reconnects and decides again */
        }
        mamori_msg_free(changed);
}

static void reap(server *srv)
{
        for (conn **p = &srv->conns; *p;) {
                conn *c = *p;
                if (c->dead || (c->closing && c->out_len == 0)) {
                        *p = c->next;
                        epoll_ctl(srv->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
                        conn_free(c);
                } else
                        p = &c->next;
        }
}

/* After a commit: serve held requests and streaming producers, committing again as needed. */
static void settle(server *srv)
{
        for (int round = 0; round < 8; round++) {
                commit(srv);
                bool again = false;
                for (conn *c = srv->conns; c; c = c->next) {
                        if (c->dead)
                                continue;
                        if ((c->held || (!c->depends && mamori_reader_pending(&c->rd) > 0)) && !c->produce) {
                                process(srv, c);
                                again = true;
                        }
                        while (c->produce && !c->dead && c->out_len - c->out_off < OUT_HIGH) {
                                int r = c->produce(srv, c, c->pstate);
                                if (r <= 0) {
                                        if (r < 0)
                                                c->dead = true;
                                        conn_set_producer(c, NULL, NULL, NULL);
                                }
                        }
                }
                if (!again || !store_dirty(srv->st))
                        break;
        }
        commit(srv);
        for (conn *c = srv->conns; c; c = c->next)
                if (!c->dead && !c->depends && (c->out_len > c->out_off || c->produce))
                        conn_flush(srv, c);
        reap(srv);
}

static int loop_timeout_ms(server *srv)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        int64_t d = store_next_deadline(srv->st);
        if (d == INT64_MAX)
                return -1;
        int64_t ms = (d - now) / 1000 + 1;
        return ms < 0 ? 0 : ms > 3600000 ? 3600000 : (int)ms;
}

int server_run(server *srv)
{
        (void)sd_notify(0, "READY=1\nSTATUS=Serving");
        struct epoll_event evs[64];
        while (!srv->quit) {
                int n = epoll_wait(srv->epoll_fd, evs, ELEMENTSOF(evs), loop_timeout_ms(srv));
                if (n < 0 && errno != EINTR)
                        return log_error_errno(errno, "epoll_wait() failed: %m");
                for (int i = 0; i < n; i++) {
                        void *p = evs[i].data.ptr;
                        if (!p)
                                accept_all(srv);
                        else if (p == srv) {
                                struct signalfd_siginfo si;
                                while (read(srv->signal_fd, &si, sizeof si) == sizeof si)
                                        if (si.ssi_signo != SIGHUP)
                                                srv->quit = true;
                        } else {
                                conn *c = p;
                                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                                        conn_read(srv, c);
                                /* Output that waits for the batch must not leave before it commits. */
                                if ((evs[i].events & EPOLLOUT) && !c->depends)
                                        conn_flush(srv, c);
                        }
                }
                settle(srv);
                if (store_tick(srv->st) < 0)
                        log_warning("Timed seal or rotation failed; will retry.");
        }
        (void)sd_notify(0, "STOPPING=1");
        commit(srv);
        return store_seal(srv->st);
}
