/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The media ledger, managers, grants and decisions: policyd's internal interface
 * between media.c (ledger), grants.c (managers, grants) and media-decide.c. */
#pragma once

#include <sqlite3.h>

#include "grant.h"
#include "server.h"

/* Field caps (bytes) for the ledger's free-text fields; Japanese text is normal. */
#define MEDIA_TYPE_MAX 64
#define MEDIA_PURPOSE_MAX 512
#define MEDIA_REMARKS_MAX 2048
#define MEDIA_MANAGER_MAX 64
#define MEDIA_SERIAL_MAX 128
#define MEDIA_MARK_MAX 128
#define MEDIA_USERS_MAX 256
#define MEDIA_PORT_MAX 64

/* Creates the ledger, manager and grant tables. Returns 0 or -EIO. */
int media_schema(sqlite3 *db);
/* Prepares the decision's statements on the writer. Returns 0 or -EIO. */
int decide_init(server *srv);
/* True if the writer's open batch can take our rows (opens it). Returns 0 or -EIO. */
int media_begin(server *srv);
/* Runs sql on db (a SAVEPOINT, RELEASE, ...). Returns 0 or -EIO. */
int media_exec(sqlite3 *db, const char *sql);

/* True if s is a USB vendor or product id as the ledger keeps it: four lower-case hex digits. */
bool media_hex4(const char *s);
/* True if user (a name) is a member of group (a name), by NSS. */
bool media_user_in_group(const char *user, const char *group);

/* Refuses with status and text, recording the refusal as evidence of type
 * "<what>.refused" with the reason. Returns what conn_reply returns. */
int media_refuse(server *srv, conn *c, const mamori_msg *req, const char *what, mamori_status status,
                 const char *text);

/* evidence-submit with GRANT_ID: uses the once-only grant id and stores rec (taken) in one
 * savepoint, with a grant_id pair added, and answers like evidence-submit ("ok" with EV_SEQ
 * once durable). A grant that may not be used is refused (not-found, exists, invalid) and
 * nothing is stored; a record that cannot be stored leaves the grant unused (R-EV-9,
 * R-PERM-3). Returns what conn_reply returns, or -EBADMSG when rec already has grant_id. */
int media_grant_use_submit(server *srv, conn *c, const mamori_msg *req,
                           const uint8_t id[static MAMORI_GRANT_ID_LEN], mamori_record *rec);

int handle_decide(server *srv, conn *c, const mamori_msg *req);
int handle_consume(server *srv, conn *c, const mamori_msg *req);
int handle_manager_trust(server *srv, conn *c, const mamori_msg *req);
int handle_manager_untrust(server *srv, conn *c, const mamori_msg *req);
int handle_manager_list(server *srv, conn *c, const mamori_msg *req);
int handle_grant_submit(server *srv, conn *c, const mamori_msg *req);
int handle_grant_revoke(server *srv, conn *c, const mamori_msg *req);
int handle_grant_list(server *srv, conn *c, const mamori_msg *req);
