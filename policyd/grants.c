/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Trusted media-use manager keys and signed grants (R-PERM-1..3, R-EV-3). The socket
 * role lets a manager submit; only a signature by a key root has trusted makes a
 * grant (R-PERM-2). Signatures are verified here, once, when a grant is submitted.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evdb.h"
#include "handlers.h"
#include "log.h"
#include "media.h"

#define LIST_BATCH 128

/* Looks up a key: 1 trusted (name copied), 0 known but not trusted or unknown, -EIO. */
static int key_trusted(sqlite3 *db, const uint8_t *pk, char name[static 65])
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT name, trusted FROM managers WHERE pubkey = ?1", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_blob(st, 1, pk, MAMORI_GRANT_PK_LEN, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_ROW)
                return 0;
        snprintf(name, 65, "%s", sqlite3_column_text(st, 0));
        return sqlite3_column_int(st, 1) == 1;
}

static int set_trust(server *srv, conn *c, const mamori_msg *req, bool trust)
{
        const uint8_t *pk;
        const char *name = NULL;
        if (mamori_msg_get_bytes(req, MAMORI_F_MGR_PUBKEY, MAMORI_GRANT_PK_LEN, &pk) < 0)
                return -EBADMSG;
        int r = mamori_msg_get_str(req, MAMORI_F_MGR_NAME, 64, &name);
        if (r < 0 && (r != -ENOENT || trust))
                return -EBADMSG;
        const char *what = trust ? "manager.trust" : "manager.untrust";
        if (trust && !mamori_name_valid(name))
                return media_refuse(srv, c, req, what, MAMORI_E_INVALID,
                                    "a manager's name is a user name ([A-Za-z_][A-Za-z0-9_.-]*)");
        sqlite3 *db = store_writer(server_store(srv));
        if (media_begin(srv) < 0 || media_exec(db, "SAVEPOINT trust") < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be stored");
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        char old[65] = "";
        int known = key_trusted(db, pk, old);
        if (trust)
                sqlite3_prepare_v2(db, "INSERT INTO managers(pubkey, name, trusted, changed_us) VALUES (?1, ?2, 1, ?3)"
                                   " ON CONFLICT(pubkey) DO UPDATE SET name = ?2, trusted = 1, changed_us = ?3",
                                   -1, &st, NULL);
        else
                sqlite3_prepare_v2(db, "UPDATE managers SET trusted = 0, changed_us = ?3 WHERE pubkey = ?1 AND trusted = 1",
                                   -1, &st, NULL);
        sqlite3_bind_blob(st, 1, pk, MAMORI_GRANT_PK_LEN, SQLITE_STATIC);
        if (name)
                sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, mamori_now_us());
        r = known < 0 || sqlite3_step(st) != SQLITE_DONE ? -EIO : 0;
        bool changed = sqlite3_changes(db) > 0;
        char b64[48], uid[16];
        snprintf(uid, sizeof uid, "%u", conn_uid(c));
        if (r >= 0 && changed)
                r = server_evidence(srv, what, conn_uid(c), "manager", trust ? name : old,
                                    "pubkey", mamori_pubkey_format(pk, b64), "by_uid", uid, NULL);
        if (r < 0) {
                (void)media_exec(db, "ROLLBACK TO trust");
                (void)media_exec(db, "RELEASE trust");
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be stored");
        }
        (void)media_exec(db, "RELEASE trust");
        if (changed)
                server_media_changed(srv); /* grants by that key start or stop counting */
        if (!changed)
                return conn_reply(c, req->type, MAMORI_E_NOT_FOUND, "that key is not trusted");
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

int handle_manager_trust(server *srv, conn *c, const mamori_msg *req)
{
        return set_trust(srv, c, req, true);
}

int handle_manager_untrust(server *srv, conn *c, const mamori_msg *req)
{
        return set_trust(srv, c, req, false);
}

int handle_manager_list(server *srv, conn *c, const mamori_msg *req)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(store_reader(server_store(srv)),
                               "SELECT pubkey, name, trusted FROM managers ORDER BY name", -1, &st, NULL) != SQLITE_OK)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be read");
        uint64_t n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
                mamori_msg *m;
                if (mamori_msg_new(req->type, MAMORI_MORE, &m) < 0)
                        return -ENOMEM;
                mamori_msg_put_bytes(m, MAMORI_F_MGR_PUBKEY, sqlite3_column_blob(st, 0), MAMORI_GRANT_PK_LEN);
                mamori_msg_put_str(m, MAMORI_F_MGR_NAME, (const char *)sqlite3_column_text(st, 1));
                mamori_msg_put_str(m, MAMORI_F_GRANT_STATE, sqlite3_column_int(st, 2) ? "trusted" : "untrusted");
                conn_send(c, m);
                mamori_msg_free(m);
                n++;
        }
        mamori_msg *end;
        if (mamori_msg_new(req->type, MAMORI_OK, &end) < 0)
                return -ENOMEM;
        mamori_msg_put_u64(end, MAMORI_F_COUNT, n);
        int r = conn_send(c, end);
        mamori_msg_free(end);
        return r;
}

static bool exists(sqlite3 *db, const char *sql, const void *blob, size_t len, const char *text)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
                return true; /* cannot tell: treat as present, which refuses (fail closed) */
        if (blob)
                sqlite3_bind_blob(st, 1, blob, len, SQLITE_STATIC);
        else
                sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        return r != SQLITE_DONE;
}

static void fmt_time(char buf[static 32], int64_t us)
{
        mamori_format_time(us, buf);
}

/* Inserts a verified grant and its grant.create record (R-EV-3: period and grantor). */
static int grant_write(server *srv, conn *c, const mamori_grant *g, const char *grantor,
                       const uint8_t *blob, size_t len)
{
        sqlite3 *db = store_writer(server_store(srv));
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "INSERT INTO grants(id, media, subject_kind, subject, host, from_us, until_us,"
                               " modes, flags, manager_pk, submitted_us, signed) VALUES"
                               " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_blob(st, 1, g->id, MAMORI_GRANT_ID_LEN, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, g->media, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, g->subject_kind);
        sqlite3_bind_text(st, 4, g->subject, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, g->host, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, g->from_us);
        sqlite3_bind_int64(st, 7, g->until_us);
        sqlite3_bind_int(st, 8, g->modes);
        sqlite3_bind_int(st, 9, g->flags);
        sqlite3_bind_blob(st, 10, g->manager_pk, MAMORI_GRANT_PK_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 11, mamori_now_us());
        sqlite3_bind_blob(st, 12, blob, len, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
                return -EIO;
        char id[33], from[32], until[32], modes[64], b64[48], uid[16];
        fmt_time(from, g->from_us);
        fmt_time(until, g->until_us);
        snprintf(uid, sizeof uid, "%u", conn_uid(c));
        return server_evidence(srv, "grant.create", conn_uid(c), "grant_id", mamori_grant_id_format(g->id, id),
                               "media", g->media, "subject_kind", g->subject_kind == MAMORI_SUBJECT_USER ? "user" : "group",
                               g->subject_kind == MAMORI_SUBJECT_USER ? "user" : "group", g->subject,
                               "target_host", g->host, "from", from, "until", until,
                               "modes", mamori_modes_format(g->modes, modes),
                               "once", g->flags & MAMORI_GRANT_ONCE ? "1" : "0",
                               "grantor", grantor, "grantor_key", mamori_pubkey_format(g->manager_pk, b64),
                               "submitted_by_uid", uid, NULL);
}

int handle_grant_submit(server *srv, conn *c, const mamori_msg *req)
{
        const mamori_field *f = NULL;
        for (size_t i = 0; i < req->n_fields; i++)
                if (req->fields[i].tag == MAMORI_F_GRANT)
                        f = &req->fields[i];
        if (!f)
                return -EBADMSG;
        mamori_grant g;
        int r = mamori_grant_verify(f->data, f->len, &g);
        if (r == -EBADMSG)
                return media_refuse(srv, c, req, "grant.create", MAMORI_E_BADSIG,
                                    "not a valid grant: it does not decode (altered or damaged)");
        if (r < 0)
                return media_refuse(srv, c, req, "grant.create", MAMORI_E_BADSIG,
                                    "the grant's signature does not verify: altered, or signed with another key");
        sqlite3 *db = store_writer(server_store(srv));
        char grantor[65] = "";
        r = key_trusted(db, g.manager_pk, grantor);
        if (r < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be read");
        if (r == 0)
                return media_refuse(srv, c, req, "grant.create", MAMORI_E_BADSIG,
                                    "the grant is signed by a key that is not a trusted manager key");
        if (exists(db, "SELECT 1 FROM revocations WHERE id = ?1", g.id, MAMORI_GRANT_ID_LEN, NULL))
                return media_refuse(srv, c, req, "grant.create", MAMORI_E_INVALID,
                                    "this grant was revoked; a revoked grant cannot be submitted again");
        if (exists(db, "SELECT 1 FROM grants WHERE id = ?1", g.id, MAMORI_GRANT_ID_LEN, NULL))
                return media_refuse(srv, c, req, "grant.create", MAMORI_E_EXISTS, "this grant is already here");
        if (g.until_us <= mamori_now_us())
                return media_refuse(srv, c, req, "grant.create", MAMORI_E_INVALID, "the grant has already expired");
        if (!streq(g.media, "*") &&
            !exists(db, "SELECT 1 FROM media WHERE no = ?1 AND state = 'active'", NULL, 0, g.media))
                return media_refuse(srv, c, req, "grant.create", MAMORI_E_NOT_FOUND,
                                    "no active medium with that management number in this ledger");
        if (media_begin(srv) < 0 || media_exec(db, "SAVEPOINT grant") < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be stored");
        r = grant_write(srv, c, &g, grantor, f->data, f->len);
        if (r < 0) {
                (void)media_exec(db, "ROLLBACK TO grant");
                (void)media_exec(db, "RELEASE grant");
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be stored");
        }
        (void)media_exec(db, "RELEASE grant");
        server_media_changed(srv);
        conn_hold_for_commit(c);
        mamori_msg *m;
        r = mamori_msg_new(req->type, MAMORI_OK, &m);
        if (r < 0)
                return r;
        mamori_msg_put_bytes(m, MAMORI_F_GRANT_ID, g.id, MAMORI_GRANT_ID_LEN);
        r = conn_send(c, m);
        mamori_msg_free(m);
        return r;
}

/* Records the revocation (permanent) and marks the grant; writes grant.revoke. */
static int revoke_write(server *srv, conn *c, const uint8_t *id, const uint8_t *pk, const char *revoker,
                        const uint8_t *blob, size_t len)
{
        sqlite3 *db = store_writer(server_store(srv));
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *ins = NULL, *upd = NULL;
        int64_t now = mamori_now_us();
        if (sqlite3_prepare_v2(db, "INSERT INTO revocations(id, manager_pk, time_us, signed) VALUES (?1, ?2, ?3, ?4)",
                               -1, &ins, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db, "UPDATE grants SET revoked_us = ?2 WHERE id = ?1"
                               " RETURNING media, subject, from_us, until_us, manager_pk", -1, &upd, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_blob(ins, 1, id, MAMORI_GRANT_ID_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 2, pk, MAMORI_GRANT_PK_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 3, now);
        sqlite3_bind_blob(ins, 4, blob, len, SQLITE_STATIC);
        int r = sqlite3_step(ins);
        if (r == SQLITE_CONSTRAINT)
                return -EEXIST;
        if (r != SQLITE_DONE)
                return -EIO;
        sqlite3_bind_blob(upd, 1, id, MAMORI_GRANT_ID_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(upd, 2, now);
        char idh[33], from[32] = "", until[32] = "", media[MAMORI_MEDIA_NO_MAX + 1] = "";
        char subject[MAMORI_NAME_MAX + 1] = "", grantor[65] = "", b64[48], uid[16];
        if (sqlite3_step(upd) == SQLITE_ROW) {
                snprintf(media, sizeof media, "%s", sqlite3_column_text(upd, 0));
                snprintf(subject, sizeof subject, "%s", sqlite3_column_text(upd, 1));
                fmt_time(from, sqlite3_column_int64(upd, 2));
                fmt_time(until, sqlite3_column_int64(upd, 3));
                if (sqlite3_column_bytes(upd, 4) == MAMORI_GRANT_PK_LEN)
                        (void)key_trusted(db, sqlite3_column_blob(upd, 4), grantor);
        }
        sqlite3_reset(upd);
        snprintf(uid, sizeof uid, "%u", conn_uid(c));
        return server_evidence(srv, "grant.revoke", conn_uid(c), "grant_id", mamori_grant_id_format(id, idh),
                               "media", media, "subject", subject, "from", from, "until", until,
                               "grantor", grantor, "revoked_by", revoker,
                               "revoker_key", mamori_pubkey_format(pk, b64), "by_uid", uid, NULL);
}

int handle_grant_revoke(server *srv, conn *c, const mamori_msg *req)
{
        const mamori_field *f = NULL;
        for (size_t i = 0; i < req->n_fields; i++)
                if (req->fields[i].tag == MAMORI_F_REVOCATION)
                        f = &req->fields[i];
        if (!f)
                return -EBADMSG;
        uint8_t id[MAMORI_GRANT_ID_LEN], pk[MAMORI_GRANT_PK_LEN];
        int64_t t;
        int r = mamori_revoke_verify(f->data, f->len, id, pk, &t);
        if (r < 0)
                return media_refuse(srv, c, req, "grant.revoke", MAMORI_E_BADSIG,
                                    "the revocation's signature does not verify");
        sqlite3 *db = store_writer(server_store(srv));
        char revoker[65] = "";
        r = key_trusted(db, pk, revoker);
        if (r <= 0)
                return media_refuse(srv, c, req, "grant.revoke", MAMORI_E_BADSIG,
                                    "the revocation is signed by a key that is not a trusted manager key");
        if (media_begin(srv) < 0 || media_exec(db, "SAVEPOINT revoke") < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be stored");
        r = revoke_write(srv, c, id, pk, revoker, f->data, f->len);
        if (r < 0) {
                (void)media_exec(db, "ROLLBACK TO revoke");
                (void)media_exec(db, "RELEASE revoke");
                return r == -EEXIST ? media_refuse(srv, c, req, "grant.revoke", MAMORI_E_EXISTS, "already revoked")
                                    : conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be stored");
        }
        (void)media_exec(db, "RELEASE revoke");
        server_media_changed(srv);
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

typedef struct glist {
        sqlite3_stmt *st;
        uint16_t type;
        uint64_t sent;
        int64_t now;
} glist;

static void glist_free(void *p)
{
        glist *x = p;
        if (x)
                sqlite3_finalize(x->st);
        free(x);
}

static int glist_produce(server *srv, conn *c, void *state)
{
        glist *x = state;
        int r = SQLITE_DONE;
        for (int i = 0; i < LIST_BATCH && (r = sqlite3_step(x->st)) == SQLITE_ROW; i++) {
                mamori_msg *m;
                if (mamori_msg_new(x->type, MAMORI_MORE, &m) < 0)
                        return -ENOMEM;
                sqlite3_stmt *st = x->st;
                mamori_msg_put_bytes(m, MAMORI_F_GRANT, sqlite3_column_blob(st, 0), sqlite3_column_bytes(st, 0));
                const char *state_s = sqlite3_column_type(st, 1) != SQLITE_NULL ? "revoked"
                                      : sqlite3_column_type(st, 2) != SQLITE_NULL ? "used"
                                      : sqlite3_column_int64(st, 3) <= x->now  ? "expired"
                                                                                : "active";
                mamori_msg_put_str(m, MAMORI_F_GRANT_STATE, state_s);
                mamori_msg_put_str(m, MAMORI_F_MGR_NAME,
                                   sqlite3_column_type(st, 4) == SQLITE_NULL ? "" : (const char *)sqlite3_column_text(st, 4));
                conn_send(c, m);
                mamori_msg_free(m);
                x->sent++;
        }
        if (r == SQLITE_ROW)
                return 1;
        mamori_msg *end;
        if (mamori_msg_new(x->type, r == SQLITE_DONE ? MAMORI_OK : MAMORI_E_STORAGE, &end) < 0)
                return -ENOMEM;
        mamori_msg_put_u64(end, MAMORI_F_COUNT, x->sent);
        conn_send(c, end);
        mamori_msg_free(end);
        return 0;
}

/* Lists grants (committed data), filtered by medium, subject or id. */
int handle_grant_list(server *srv, conn *c, const mamori_msg *req)
{
        const char *media = NULL, *user = NULL;
        const uint8_t *id = NULL;
        int r;
        if (((r = mamori_msg_get_str(req, MAMORI_F_MEDIA_NO, MAMORI_MEDIA_NO_MAX, &media)) < 0 && r != -ENOENT) ||
            ((r = mamori_msg_get_str(req, MAMORI_F_USER, MAMORI_NAME_MAX, &user)) < 0 && r != -ENOENT) ||
            ((r = mamori_msg_get_bytes(req, MAMORI_F_GRANT_ID, MAMORI_GRANT_ID_LEN, &id)) < 0 && r != -ENOENT))
                return -EBADMSG;
        glist *x = calloc(1, sizeof *x);
        if (!x)
                return -ENOMEM;
        x->type = req->type;
        x->now = mamori_now_us();
        if (sqlite3_prepare_v2(store_reader(server_store(srv)),
                               "SELECT g.signed, g.revoked_us, g.used_us, g.until_us, k.name FROM grants g"
                               " LEFT JOIN managers k ON k.pubkey = g.manager_pk"
                               " WHERE (?1 IS NULL OR g.media = ?1) AND (?2 IS NULL OR g.subject = ?2)"
                               " AND (?3 IS NULL OR g.id = ?3) ORDER BY g.submitted_us, g.id",
                               -1, &x->st, NULL) != SQLITE_OK) {
                glist_free(x);
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be read");
        }
        if (media)
                sqlite3_bind_text(x->st, 1, media, -1, SQLITE_TRANSIENT);
        if (user)
                sqlite3_bind_text(x->st, 2, user, -1, SQLITE_TRANSIENT);
        if (id)
                sqlite3_bind_blob(x->st, 3, id, MAMORI_GRANT_ID_LEN, SQLITE_TRANSIENT);
        conn_set_producer(c, glist_produce, x, glist_free);
        return 0;
}
