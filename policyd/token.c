/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Authentication tokens (R-AUTH-4): a USB device registered to one user. Where the
 * policy requires it (auth.token_users, auth.token_groups), that user may log in only
 * while the token is plugged into this terminal, and pulling it locks their sessions
 * (the agent does that).
 *
 * The registry is a ledger table (admin: token-register, token-retire; readers:
 * token-list). Presence is what the agent reports on its watch connection
 * (token-presence, for every USB device with a serial that comes or goes): it lives in
 * memory, tied to that connection, and is forgotten when the connection closes, so a
 * dead agent never leaves a pulled token counted as present (fail closed: logins that
 * need it are refused until the agent reports again). token.insert and token.remove
 * records are durable before the agent hears the answer.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "log.h"
#include "media.h"
#include "token.h"

#define PRESENT_MAX 256 /* tokens plugged in at once on this terminal; more are not counted */

typedef struct present {
        conn *by;   /* the watch connection that reported it */
        char no[MAMORI_MEDIA_NO_MAX + 1], user[MAMORI_NAME_MAX + 1], port[MEDIA_PORT_MAX + 1];
} present;

static present plugged[PRESENT_MAX];
static size_t n_plugged;

int token_schema(sqlite3 *db)
{
        return media_exec(db,
                "CREATE TABLE IF NOT EXISTS tokens (no TEXT PRIMARY KEY, user TEXT NOT NULL,"
                " vendor TEXT NOT NULL, product TEXT NOT NULL, serial TEXT NOT NULL,"
                " state TEXT NOT NULL, created_us INTEGER NOT NULL, changed_us INTEGER NOT NULL);"
                "CREATE INDEX IF NOT EXISTS tokens_identity ON tokens(vendor, product, serial);");
}

bool token_present_for(const char *user)
{
        for (size_t i = 0; i < n_plugged; i++)
                if (streq(plugged[i].user, user))
                        return true;
        return false;
}

static void forget(size_t i)
{
        plugged[i] = plugged[--n_plugged];
}

void token_conn_closed(conn *c)
{
        size_t before = n_plugged;
        for (size_t i = n_plugged; i-- > 0;)
                if (plugged[i].by == c)
                        forget(i);
        if (n_plugged != before)
                log_notice("The agent's watch connection closed: %zu plugged tokens are no longer counted.",
                           before - n_plugged);
}

static bool serial_ok(const char *s)
{
        if (!s[0] || strlen(s) > MEDIA_SERIAL_MAX)
                return false;
        for (; *s; s++)
                if (*s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

/* The identity fields; -EBADMSG when malformed, -EINVAL (why set) when unacceptable. */
static int read_identity(const mamori_msg *req, const char **vendor, const char **product, const char **serial,
                         const char **why)
{
        if (mamori_msg_get_str(req, MAMORI_F_DEV_VENDOR, 4, vendor) < 0 ||
            mamori_msg_get_str(req, MAMORI_F_DEV_PRODUCT, 4, product) < 0 ||
            mamori_msg_get_str(req, MAMORI_F_DEV_SERIAL, MEDIA_SERIAL_MAX, serial) < 0)
                return -EBADMSG;
        if (!media_hex4(*vendor) || !media_hex4(*product)) {
                *why = "vendor and product are four lower-case hex digits";
                return -EINVAL;
        }
        if (!serial_ok(*serial)) {
                *why = "a token needs a serial number (printable, at most 128 bytes)";
                return -EINVAL;
        }
        return 0;
}

/* Runs one statement with text parameters; returns sqlite's step result or -EIO. */
static int exec_text(sqlite3 *db, const char *sql, const char *const *params, size_t n)
{
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        for (size_t i = 0; i < n; i++)
                sqlite3_bind_text(st, (int)i + 1, params[i], -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        sqlite3_finalize(st);
        return r;
}

/* Ends the "token" savepoint: kept if r >= 0, else rolled back, the row with its record
 * (R-EV-6). Returns r. */
static int token_savepoint_end(sqlite3 *db, int r)
{
        if (r < 0)
                (void)media_exec(db, "ROLLBACK TO token");
        (void)media_exec(db, "RELEASE token");
        return r;
}

static int handle_register(server *srv, conn *c, const mamori_msg *req)
{
        const char *no, *user, *vendor, *product, *serial, *why = NULL;
        if (mamori_msg_get_str(req, MAMORI_F_MEDIA_NO, MAMORI_MEDIA_NO_MAX, &no) < 0 ||
            mamori_msg_get_str(req, MAMORI_F_USER, MAMORI_NAME_MAX, &user) < 0)
                return -EBADMSG;
        int r = read_identity(req, &vendor, &product, &serial, &why);
        if (r == -EBADMSG)
                return r;
        if (r < 0)
                return media_refuse(srv, c, req, "token.register", MAMORI_E_INVALID, why);
        if (!no[0] || strpbrk(no, "\t\n\r") || !mamori_name_valid(user))
                return media_refuse(srv, c, req, "token.register", MAMORI_E_INVALID,
                                    "a token needs a management number and a user name");
        sqlite3 *db = store_writer(server_store(srv));
        const char *p_no[] = {no};
        if (exec_text(db, "SELECT 1 FROM tokens WHERE no = ?1", p_no, 1) == SQLITE_ROW)
                return media_refuse(srv, c, req, "token.register", MAMORI_E_EXISTS,
                                    "a token with that management number exists");
        const char *p_id[] = {vendor, product, serial};
        if (exec_text(db, "SELECT 1 FROM tokens WHERE vendor = ?1 AND product = ?2 AND serial = ?3"
                          " AND state = 'active'", p_id, 3) == SQLITE_ROW)
                return media_refuse(srv, c, req, "token.register", MAMORI_E_EXISTS,
                                    "an active token with the same identity exists");
        if (media_begin(srv) < 0 || media_exec(db, "SAVEPOINT token") < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be stored");
        char now[24], uid[16];
        snprintf(now, sizeof now, "%" PRId64, mamori_now_us());
        snprintf(uid, sizeof uid, "%u", conn_uid(c));
        const char *p_ins[] = {no, user, vendor, product, serial, now};
        r = exec_text(db, "INSERT INTO tokens(no, user, vendor, product, serial, state, created_us, changed_us)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, 'active', CAST(?6 AS INTEGER), CAST(?6 AS INTEGER))",
                      p_ins, 6) == SQLITE_DONE ? 0 : -EIO;
        if (r >= 0)
                r = server_evidence(srv, "token.register", conn_uid(c), "token", no, "user", user, "vendor", vendor,
                                    "product", product, "serial", serial, "by_uid", uid, NULL);
        if (token_savepoint_end(db, r) < 0) /* neither the row nor the record */
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be stored");
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

static int handle_retire(server *srv, conn *c, const mamori_msg *req)
{
        const char *no;
        if (mamori_msg_get_str(req, MAMORI_F_MEDIA_NO, MAMORI_MEDIA_NO_MAX, &no) < 0)
                return -EBADMSG;
        sqlite3 *db = store_writer(server_store(srv));
        const char *p_no[] = {no};
        if (exec_text(db, "SELECT 1 FROM tokens WHERE no = ?1 AND state = 'active'", p_no, 1) != SQLITE_ROW)
                return media_refuse(srv, c, req, "token.retire", MAMORI_E_NOT_FOUND,
                                    "no active token with that management number");
        if (media_begin(srv) < 0 || media_exec(db, "SAVEPOINT token") < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be stored");
        char now[24], uid[16];
        snprintf(now, sizeof now, "%" PRId64, mamori_now_us());
        snprintf(uid, sizeof uid, "%u", conn_uid(c));
        const char *p_up[] = {no, now};
        int r = exec_text(db, "UPDATE tokens SET state = 'retired', changed_us = CAST(?2 AS INTEGER) WHERE no = ?1",
                          p_up, 2) == SQLITE_DONE ? 0 : -EIO;
        if (r >= 0)
                r = server_evidence(srv, "token.retire", conn_uid(c), "token", no, "by_uid", uid, NULL);
        if (token_savepoint_end(db, r) < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "could not be stored");
        for (size_t i = n_plugged; i-- > 0;) /* a retired token no longer lets anyone in */
                if (streq(plugged[i].no, no))
                        forget(i);
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

static int handle_list(server *srv, conn *c, const mamori_msg *req)
{
        sqlite3 *db = store_reader(server_store(srv));
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT no, user, vendor, product, serial, state FROM tokens ORDER BY no", -1, &st,
                               NULL) != SQLITE_OK)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "the token registry could not be read");
        uint64_t n = 0;
        int r = 0, s;
        while (r >= 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
                mamori_msg *m;
                r = mamori_msg_new(req->type, MAMORI_MORE, &m);
                if (r < 0)
                        break;
                const char *no = (const char *)sqlite3_column_text(st, 0);
                mamori_msg_put_str(m, MAMORI_F_MEDIA_NO, no);
                mamori_msg_put_str(m, MAMORI_F_USER, (const char *)sqlite3_column_text(st, 1));
                mamori_msg_put_str(m, MAMORI_F_DEV_VENDOR, (const char *)sqlite3_column_text(st, 2));
                mamori_msg_put_str(m, MAMORI_F_DEV_PRODUCT, (const char *)sqlite3_column_text(st, 3));
                mamori_msg_put_str(m, MAMORI_F_DEV_SERIAL, (const char *)sqlite3_column_text(st, 4));
                mamori_msg_put_str(m, MAMORI_F_MEDIA_STATE, (const char *)sqlite3_column_text(st, 5));
                bool here = false;
                for (size_t i = 0; i < n_plugged; i++)
                        here |= streq(plugged[i].no, no);
                mamori_msg_put_u8(m, MAMORI_F_TOKEN_PRESENT, here);
                r = conn_send(c, m);
                mamori_msg_free(m);
                n++;
        }
        sqlite3_finalize(st);
        if (r < 0)
                return r;
        mamori_msg *end;
        if (mamori_msg_new(req->type, MAMORI_OK, &end) < 0)
                return -ENOMEM;
        mamori_msg_put_u64(end, MAMORI_F_COUNT, n);
        r = conn_send(c, end);
        mamori_msg_free(end);
        return r;
}

/* A USB device came (present 1) or went (0). Not a token: not-found, nothing written.
 * A token: remembered (tied to this connection) or forgotten, recorded, and the reply
 * names the token's user (the agent locks that user's sessions when it went). */
static int handle_presence(server *srv, conn *c, const mamori_msg *req)
{
        const char *vendor, *product, *serial, *port, *why = NULL;
        uint8_t here;
        int r = read_identity(req, &vendor, &product, &serial, &why);
        if (r == -EBADMSG || mamori_msg_get_str(req, MAMORI_F_DEV_PORT, MEDIA_PORT_MAX, &port) < 0 ||
            mamori_msg_get_u8(req, MAMORI_F_TOKEN_PRESENT, &here) < 0 || here > 1)
                return -EBADMSG;
        if (r < 0) /* no serial, say: cannot be a token */
                return conn_reply(c, req->type, MAMORI_E_NOT_FOUND, "not a registered token");
        sqlite3 *db = store_writer(server_store(srv));
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT no, user FROM tokens WHERE vendor = ?1 AND product = ?2 AND serial = ?3"
                                   " AND state = 'active'", -1, &st, NULL) != SQLITE_OK)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "the token registry could not be read");
        sqlite3_bind_text(st, 1, vendor, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, product, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, serial, -1, SQLITE_STATIC);
        present p = {.by = c};
        bool found = sqlite3_step(st) == SQLITE_ROW;
        if (found) {
                snprintf(p.no, sizeof p.no, "%s", (const char *)sqlite3_column_text(st, 0));
                snprintf(p.user, sizeof p.user, "%s", (const char *)sqlite3_column_text(st, 1));
                snprintf(p.port, sizeof p.port, "%s", port);
        }
        sqlite3_finalize(st);
        if (!found)
                return conn_reply(c, req->type, MAMORI_E_NOT_FOUND, "not a registered token");
        size_t i = 0;
        while (i < n_plugged && !(streq(plugged[i].no, p.no) && streq(plugged[i].port, p.port)))
                i++;
        bool known = i < n_plugged;
        if (here && !known) {
                if (n_plugged == PRESENT_MAX) /* not counted: its user cannot log in by it (fail closed) */
                        return conn_reply(c, req->type, MAMORI_E_INTERNAL, "too many tokens plugged in");
                plugged[n_plugged++] = p;
        } else if (!here && known)
                forget(i);
        if (here != known) { /* a change: recorded before the agent hears it (R-EV-5) */
                r = server_evidence(srv, here ? "token.insert" : "token.remove", conn_uid(c), "token", p.no, "user",
                                    p.user, "port", port, "vendor", vendor, "product", product, "serial", serial,
                                    NULL);
                if (r < 0 && here) { /* an insertion not recorded does not count (fail closed) */
                        forget(n_plugged - 1);
                        return conn_reply(c, req->type, MAMORI_E_STORAGE, "the insertion could not be recorded");
                }
                if (r < 0) /* a removal counts all the same: the agent locks (fail closed) */
                        log_error_errno(r, "Cannot record the removal of token %s: %m", p.no);
                conn_hold_for_commit(c);
        }
        mamori_msg *m;
        r = mamori_msg_new(req->type, MAMORI_OK, &m);
        if (r < 0)
                return r;
        mamori_msg_put_str(m, MAMORI_F_USER, p.user);
        mamori_msg_put_str(m, MAMORI_F_MEDIA_NO, p.no);
        mamori_msg_put_u8(m, MAMORI_F_TOKEN_PRESENT, here);
        r = conn_send(c, m);
        mamori_msg_free(m);
        return r;
}

int token_init(server *srv)
{
        return token_schema(store_writer(server_store(srv)));
}

#define READERS (ROLE_ROOT | ROLE_ADMIN | ROLE_MANAGER | ROLE_AUDITOR)

const handler token_handlers[] = {
        {MAMORI_MSG_TOKEN_REGISTER, ROLE_ADMIN, handle_register},
        {MAMORI_MSG_TOKEN_RETIRE, ROLE_ADMIN, handle_retire},
        {MAMORI_MSG_TOKEN_LIST, READERS, handle_list},
        {MAMORI_MSG_TOKEN_PRESENCE, ROLE_AGENT, handle_presence},
        {0},
};
