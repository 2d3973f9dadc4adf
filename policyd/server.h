/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * policyd's socket server: one epoll loop, peers identified by the kernel
 * (SO_PEERCRED, SO_PEERGROUPS), every request checked against a table of who may
 * send it. Writes made while handling requests join one batch that is committed
 * (one fsync) before any reply that depends on it leaves the daemon.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "store.h"
#include "wire.h"

/* Roles a peer holds, from the kernel's word on its uid and groups. */
enum {
        ROLE_ROOT = 1u << 0,    /* uid 0: the system security officer */
        ROLE_AGENT = 1u << 1,   /* the configured agent user (and root) */
        ROLE_ADMIN = 1u << 2,   /* operations manager: roles.admin_group */
        ROLE_MANAGER = 1u << 3, /* media-use manager: roles.manager_group */
        ROLE_AUDITOR = 1u << 4, /* manager's superior: roles.auditor_group */
        ROLE_USER = 1u << 5,    /* any local user */
};

typedef struct server server;
typedef struct conn conn;

typedef int (*handler_fn)(server *srv, conn *c, const mamori_msg *req);

/* One row of a dispatch table: who may send the request, and what handles it. An
 * empty role set means nobody. Requests absent from every table are refused. */
typedef struct handler {
        uint16_t type;
        unsigned roles;
        handler_fn fn;
} handler;

/* A streaming reply: called while the peer's output is below the high-water mark.
 * Returns 1 when more is to come, 0 when finished, negative errno to drop the peer. */
typedef int (*producer_fn)(server *srv, conn *c, void *state);

int server_new(const mamori_config *cfg, store *st, int listen_fd, server **ret);
void server_free(server *srv);
/* Runs until SIGTERM/SIGINT. Returns 0 or negative errno. */
int server_run(server *srv);

/* For handlers. */
store *server_store(server *srv);
const mamori_config *server_config(server *srv);
uid_t conn_uid(const conn *c);
pid_t conn_pid(const conn *c);
unsigned conn_roles(const conn *c);
/* Queues a reply. Returns 0 or -ENOMEM/-EMSGSIZE. */
int conn_send(conn *c, mamori_msg *m);
/* Queues a reply of just a status and an optional text. Returns 0 or negative errno. */
int conn_reply(conn *c, uint16_t type, mamori_status status, const char *text);
/* The reply queued so far depends on the open batch: hold it until the commit. */
void conn_hold_for_commit(conn *c);
/* Answers req "ok" with the evidence sequence number seq, held until the record is
 * durable (R-EV-9). Returns 0 or -errno. */
int conn_reply_stored(conn *c, const mamori_msg *req, uint64_t seq);
/* The output queued so far depends on nothing uncommitted: send it now rather than
 * after the batch's commit (nothing is sent while earlier output waits for it). */
void conn_send_now(server *srv, conn *c);
/* Starts a streaming reply; state is freed with free_state when it ends. */
void conn_set_producer(conn *c, producer_fn fn, void *state, void (*free_state)(void *));

/* Makes c a watcher: after every commit that changed the ledger, the grants or the
 * trusted keys, c gets an unasked MEDIA_CHANGED message (the agent decides again). */
void conn_watch_media(conn *c);
/* The open batch changes what a decision may answer: watchers hear of it once the
 * batch commits (not if it fails: then nothing changed). */
void server_media_changed(server *srv);

/* Appends a policyd-originated evidence record to the batch: type, then (key, value)
 * string pairs ending in NULL. uid is the subject's uid (the peer's, usually).
 * Returns 0 or negative errno. */
int server_evidence(server *srv, const char *type, uid_t uid, ...) __attribute__((sentinel));
