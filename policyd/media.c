/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The media ledger (外部記録媒体管理簿, R-REG-4..7): register, change, retire, list.
 * Every ledger change is written in the evidence batch together with its record
 * (R-EV-6), inside a savepoint, so that a change and its evidence commit or vanish
 * together and a refused request leaves nothing behind.
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evdb.h"
#include "handlers.h"
#include "log.h"
#include "media.h"

#define LIST_BATCH 128

int media_exec(sqlite3 *db, const char *sql)
{
        char *err = NULL;
        if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
                log_error("Media ledger: \"%s\" failed: %s", sql, err ? err : "?");
                sqlite3_free(err);
                return -EIO;
        }
        return 0;
}

int media_schema(sqlite3 *db)
{
        return media_exec(db,
                "CREATE TABLE IF NOT EXISTS media ("
                " no TEXT PRIMARY KEY, vendor TEXT NOT NULL, product TEXT NOT NULL,"
                " serial TEXT NOT NULL, mark_kind TEXT NOT NULL, mark TEXT NOT NULL,"
                " type TEXT NOT NULL, purpose TEXT NOT NULL, manager TEXT NOT NULL,"
                " start_us INTEGER NOT NULL, end_us INTEGER NOT NULL, remarks TEXT NOT NULL,"
                " state TEXT NOT NULL, created_us INTEGER NOT NULL, changed_us INTEGER NOT NULL,"
                " seen_us INTEGER, seen_host TEXT, seen_port TEXT);"
                "CREATE INDEX IF NOT EXISTS media_identity ON media(vendor, product, serial);"
                "CREATE TABLE IF NOT EXISTS media_users (no TEXT NOT NULL REFERENCES media(no),"
                " name TEXT NOT NULL, PRIMARY KEY (no, name)) WITHOUT ROWID;"
                "CREATE TABLE IF NOT EXISTS managers (pubkey BLOB PRIMARY KEY, name TEXT NOT NULL,"
                " trusted INTEGER NOT NULL, changed_us INTEGER NOT NULL);"
                "CREATE TABLE IF NOT EXISTS grants (id BLOB PRIMARY KEY, media TEXT NOT NULL,"
                " subject_kind INTEGER NOT NULL, subject TEXT NOT NULL, host TEXT NOT NULL,"
                " from_us INTEGER NOT NULL, until_us INTEGER NOT NULL, modes INTEGER NOT NULL,"
                " flags INTEGER NOT NULL, manager_pk BLOB NOT NULL, submitted_us INTEGER NOT NULL,"
                " signed BLOB NOT NULL, used_us INTEGER, revoked_us INTEGER);"
                "CREATE INDEX IF NOT EXISTS grants_media ON grants(media, until_us);"
                /* Revocations are permanent: a revoked grant can never come back (R-PERM-2). */
                "CREATE TABLE IF NOT EXISTS revocations (id BLOB PRIMARY KEY,"
                " manager_pk BLOB NOT NULL, time_us INTEGER NOT NULL, signed BLOB NOT NULL);");
}

int media_begin(server *srv)
{
        return store_begin(server_store(srv));
}

bool media_user_in_group(const char *user, const char *group)
{
        struct group *gr = getgrnam(group);
        if (!gr)
                return false; /* an unknown group holds nobody (fail closed) */
        for (char **m = gr->gr_mem; *m; m++)
                if (streq(*m, user))
                        return true;
        struct passwd *pw = getpwnam(user);
        return pw && pw->pw_gid == gr->gr_gid;
}

int media_refuse(server *srv, conn *c, const mamori_msg *req, const char *what, mamori_status status,
                 const char *text)
{
        char type[48], uid[16];
        snprintf(type, sizeof type, "%s.refused", what);
        snprintf(uid, sizeof uid, "%u", conn_uid(c));
        if (server_evidence(srv, type, conn_uid(c), "reason", text, "status",
                            mamori_status_to_string(status), "peer_uid", uid, NULL) >= 0)
                conn_hold_for_commit(c);
        return conn_reply(c, req->type, status, text);
}

/* The ledger fields of a register or change request; NULL/absent when not sent. */
typedef struct ledger {
        const char *no, *vendor, *product, *serial, *mark_kind, *mark;
        const char *type, *purpose, *manager, *remarks;
        int64_t start_us, end_us;
        bool have_start, have_end, clear_users;
        const char *users[MEDIA_USERS_MAX];
        size_t n_users;
} ledger;

/* Reads an optional string field bounded by max bytes. -EBADMSG when malformed. */
static int opt_str(const mamori_msg *req, uint16_t tag, size_t max, const char **ret)
{
        int r = mamori_msg_get_str(req, tag, MAMORI_STR_MAX, ret);
        if (r == -ENOENT) {
                *ret = NULL;
                return 0;
        }
        if (r < 0)
                return r;
        return strlen(*ret) > max ? -E2BIG : 0;
}

bool media_hex4(const char *s)
{
        if (strlen(s) != 4)
                return false;
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

static bool printable_ascii(const char *s)
{
        for (; *s; s++)
                if (*s < 0x20 || *s > 0x7e)
                        return false;
        return true;
}

/* Free text: valid UTF-8 (checked by the getter) without control characters. */
static bool text_ok(const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

/* Decodes and checks the ledger fields. Returns 0, or -EINVAL with *ret_why set
 * (a clear reason for the user), or -EBADMSG for a malformed message. */
static int ledger_read(const mamori_msg *req, ledger *l, const char **ret_why)
{
        static const struct {
                uint16_t tag;
                size_t off, max;
                const char *what;
        } strs[] = {
                {MAMORI_F_MEDIA_NO, offsetof(ledger, no), MAMORI_MEDIA_NO_MAX, "management number"},
                {MAMORI_F_DEV_VENDOR, offsetof(ledger, vendor), 4, "vendor"},
                {MAMORI_F_DEV_PRODUCT, offsetof(ledger, product), 4, "product"},
                {MAMORI_F_DEV_SERIAL, offsetof(ledger, serial), MEDIA_SERIAL_MAX, "serial"},
                {MAMORI_F_DEV_MARK_KIND, offsetof(ledger, mark_kind), 16, "mark kind"},
                {MAMORI_F_DEV_MARK, offsetof(ledger, mark), MEDIA_MARK_MAX, "mark"},
                {MAMORI_F_MEDIA_TYPE, offsetof(ledger, type), MEDIA_TYPE_MAX, "media type"},
                {MAMORI_F_MEDIA_PURPOSE, offsetof(ledger, purpose), MEDIA_PURPOSE_MAX, "purpose"},
                {MAMORI_F_MEDIA_MANAGER, offsetof(ledger, manager), MEDIA_MANAGER_MAX, "manager"},
                {MAMORI_F_MEDIA_REMARKS, offsetof(ledger, remarks), MEDIA_REMARKS_MAX, "remarks"},
        };
        static char why[96];
        *l = (ledger){0};
        for (size_t i = 0; i < ELEMENTSOF(strs); i++) {
                int r = opt_str(req, strs[i].tag, strs[i].max, (const char **)((char *)l + strs[i].off));
                if (r == -E2BIG) {
                        snprintf(why, sizeof why, "%s is longer than %zu bytes", strs[i].what, strs[i].max);
                        *ret_why = why;
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
                const char *v = *(const char **)((char *)l + strs[i].off);
                if (v && !text_ok(v)) {
                        snprintf(why, sizeof why, "%s holds control characters", strs[i].what);
                        *ret_why = why;
                        return -EINVAL;
                }
        }
        int r = mamori_msg_get_i64(req, MAMORI_F_MEDIA_START, &l->start_us);
        if (r < 0 && r != -ENOENT)
                return r;
        l->have_start = r >= 0;
        r = mamori_msg_get_i64(req, MAMORI_F_MEDIA_END, &l->end_us);
        if (r < 0 && r != -ENOENT)
                return r;
        l->have_end = r >= 0;
        uint8_t u8;
        r = mamori_msg_get_u8(req, MAMORI_F_MEDIA_CLEAR_USERS, &u8);
        if (r < 0 && r != -ENOENT)
                return r;
        l->clear_users = r >= 0 && u8;
        for (size_t i = 0; i < req->n_fields; i++) {
                const mamori_field *f = &req->fields[i];
                const char *s;
                if (f->tag != MAMORI_F_MEDIA_USER)
                        continue;
                if (mamori_field_str(f, MAMORI_NAME_MAX + 1, &s) < 0)
                        return -EBADMSG;
                if (!mamori_name_valid(s[0] == '@' ? s + 1 : s)) {
                        *ret_why = "a user must be a user name, or @group";
                        return -EINVAL;
                }
                if (l->n_users == MEDIA_USERS_MAX) {
                        *ret_why = "too many users";
                        return -EINVAL;
                }
                for (size_t k = 0; k < l->n_users; k++)
                        if (streq(l->users[k], s)) {
                                *ret_why = "a user is listed twice";
                                return -EINVAL;
                        }
                l->users[l->n_users++] = s;
        }
        const char *w = NULL;
        if (l->no && !mamori_media_no_valid(l->no))
                w = "a management number is 1..32 characters without spaces, control characters, ',' or '*'";
        else if ((l->vendor && !media_hex4(l->vendor)) || (l->product && !media_hex4(l->product)))
                w = "vendor and product are 4 lower-case hex digits (USB idVendor, idProduct)";
        else if (l->serial && !printable_ascii(l->serial))
                w = "a serial is printable ASCII";
        else if (l->mark_kind && !streq(l->mark_kind, "none") && !streq(l->mark_kind, "fs-uuid") &&
                 !streq(l->mark_kind, "size") && !streq(l->mark_kind, "token"))
                w = "the mark kind is none, fs-uuid, size or token";
        else if (l->mark && !printable_ascii(l->mark))
                w = "a mark is printable ASCII";
        else if (l->manager && l->manager[0] == 0)
                w = "the responsible manager is required";
        else if (l->have_start && l->have_end && l->end_us <= l->start_us)
                w = "the end of use is not after its start";
        if (w) {
                *ret_why = w;
                return -EINVAL;
        }
        return 0;
}

/* The identity rule (docs/design.md): media sharing vendor, product and serial must all
 * carry a mark of one kind, with distinct marks, so that two sticks are never confused.
 * Returns NULL if l may join the ledger, else the reason. */
static const char *identity_conflict(sqlite3 *db, const ledger *l)
{
        if (l->serial[0] == 0 && streq(l->mark_kind, "none"))
                return "this device has no serial: give a distinguishing mark (--fs-uuid, --size or --token)";
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT no, mark_kind, mark FROM media WHERE vendor = ?1 AND product = ?2"
                               " AND serial = ?3 AND state = 'active'", -1, &st, NULL) != SQLITE_OK)
                return "the ledger could not be read";
        sqlite3_bind_text(st, 1, l->vendor, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, l->product, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, l->serial, -1, SQLITE_STATIC);
        static char why[200];
        while (sqlite3_step(st) == SQLITE_ROW) {
                const char *no = (const char *)sqlite3_column_text(st, 0);
                const char *kind = (const char *)sqlite3_column_text(st, 1);
                const char *mark = (const char *)sqlite3_column_text(st, 2);
                if (streq(kind, "none") || streq(l->mark_kind, "none") || !streq(kind, l->mark_kind)) {
                        snprintf(why, sizeof why, "medium %.64s has the same vendor, product and serial: "
                                 "both need a distinguishing mark of one kind (it has %s)", no, kind);
                        return why;
                }
                if (streq(mark, l->mark)) {
                        snprintf(why, sizeof why, "medium %.64s has the same identity and mark", no);
                        return why;
                }
        }
        return NULL;
}

static void fmt_i64(char buf[static 24], int64_t v)
{
        snprintf(buf, 24, "%" PRId64, v);
}

/* Joins the users into "a,b,@g" for the evidence record. */
static void users_join(const ledger *l, char *buf, size_t size)
{
        buf[0] = 0;
        size_t n = 0;
        for (size_t i = 0; i < l->n_users && n < size; i++)
                n += snprintf(buf + n, size - n, "%s%s", i ? "," : "", l->users[i]);
}

static int insert_users(sqlite3 *db, const ledger *l)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "INSERT INTO media_users(no, name) VALUES (?1, ?2)", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        for (size_t i = 0; i < l->n_users; i++) {
                sqlite3_reset(st);
                sqlite3_bind_text(st, 1, l->no, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, l->users[i], -1, SQLITE_STATIC);
                if (sqlite3_step(st) != SQLITE_DONE)
                        return -EIO;
        }
        return 0;
}

/* Inserts the row, its users and the media.register record. Returns 0, -EEXIST, -EIO. */
static int register_write(server *srv, conn *c, const ledger *l)
{
        sqlite3 *db = store_writer(server_store(srv));
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int64_t now = mamori_now_us();
        if (sqlite3_prepare_v2(db, "INSERT INTO media(no, vendor, product, serial, mark_kind, mark, type,"
                               " purpose, manager, start_us, end_us, remarks, state, created_us, changed_us)"
                               " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'active', ?13, ?13)",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        const char *v[] = {l->no, l->vendor, l->product, l->serial, l->mark_kind, l->mark,
                           l->type, l->purpose, l->manager};
        for (int i = 0; i < 9; i++)
                sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 10, l->start_us);
        sqlite3_bind_int64(st, 11, l->end_us);
        sqlite3_bind_text(st, 12, l->remarks, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 13, now);
        int r = sqlite3_step(st);
        if (r == SQLITE_CONSTRAINT)
                return -EEXIST;
        if (r != SQLITE_DONE || insert_users(db, l) < 0)
                return -EIO;
        char start[24], end[24], users[MEDIA_USERS_MAX * 34 + 1], uid[16];
        fmt_i64(start, l->start_us);
        fmt_i64(end, l->end_us);
        users_join(l, users, sizeof users);
        snprintf(uid, sizeof uid, "%u", conn_uid(c));
        return server_evidence(srv, "media.register", conn_uid(c), "media", l->no, "vendor", l->vendor,
                               "product", l->product, "serial", l->serial, "mark_kind", l->mark_kind,
                               "mark", l->mark, "media_type", l->type, "purpose", l->purpose,
                               "manager", l->manager, "start_us", start, "end_us", end,
                               "remarks", l->remarks, "users", users, "by_uid", uid, NULL);
}

/* Runs write inside a savepoint of the batch: on failure nothing of it stays. */
static int in_savepoint(server *srv, conn *c, const ledger *l,
                        int (*write)(server *, conn *, const ledger *))
{
        sqlite3 *db = store_writer(server_store(srv));
        int r = media_begin(srv);
        if (r < 0)
                return r;
        if (media_exec(db, "SAVEPOINT ledger") < 0)
                return -EIO;
        r = write(srv, c, l);
        if (r < 0) {
                (void)media_exec(db, "ROLLBACK TO ledger");
                (void)media_exec(db, "RELEASE ledger");
                return r;
        }
        server_media_changed(srv);
        return media_exec(db, "RELEASE ledger");
}

static int handle_register(server *srv, conn *c, const mamori_msg *req)
{
        ledger l;
        const char *why = NULL;
        int r = ledger_read(req, &l, &why);
        if (r == -EINVAL)
                return media_refuse(srv, c, req, "media.register", MAMORI_E_INVALID, why);
        if (r < 0)
                return r;
        if (!l.no || !l.vendor || !l.product || !l.serial || !l.type || !l.purpose || !l.manager ||
            !l.have_start || !l.have_end)
                return media_refuse(srv, c, req, "media.register", MAMORI_E_INVALID,
                                    "missing: management number, vendor, product, serial, type, purpose,"
                                    " manager, start and end of use are all required");
        if (!l.mark_kind)
                l.mark_kind = "none";
        if (!l.mark)
                l.mark = "";
        if (!l.remarks)
                l.remarks = "";
        if (streq(l.mark_kind, "none") != (l.mark[0] == 0))
                return media_refuse(srv, c, req, "media.register", MAMORI_E_INVALID,
                                    "a mark kind needs a mark, and a mark needs its kind");
        why = identity_conflict(store_writer(server_store(srv)), &l);
        if (why)
                return media_refuse(srv, c, req, "media.register", MAMORI_E_EXISTS, why);
        r = in_savepoint(srv, c, &l, register_write);
        if (r == -EEXIST)
                return media_refuse(srv, c, req, "media.register", MAMORI_E_EXISTS,
                                    "that management number is already in the ledger");
        if (r < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "the ledger could not be written");
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

/* Applies a change's fields to the row and writes the media.change record. */
static int change_write(server *srv, conn *c, const ledger *l)
{
        sqlite3 *db = store_writer(server_store(srv));
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "UPDATE media SET type = coalesce(?2, type), purpose = coalesce(?3, purpose),"
                               " manager = coalesce(?4, manager), remarks = coalesce(?5, remarks),"
                               " start_us = coalesce(?6, start_us), end_us = coalesce(?7, end_us),"
                               " changed_us = ?8 WHERE no = ?1 AND state = 'active'"
                               " RETURNING start_us, end_us", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, l->no, -1, SQLITE_STATIC);
        const char *v[] = {l->type, l->purpose, l->manager, l->remarks};
        for (int i = 0; i < 4; i++)
                if (v[i])
                        sqlite3_bind_text(st, i + 2, v[i], -1, SQLITE_STATIC);
        if (l->have_start)
                sqlite3_bind_int64(st, 6, l->start_us);
        if (l->have_end)
                sqlite3_bind_int64(st, 7, l->end_us);
        sqlite3_bind_int64(st, 8, mamori_now_us());
        int r = sqlite3_step(st);
        if (r == SQLITE_DONE)
                return -ENOENT;
        if (r != SQLITE_ROW)
                return -EIO;
        if (sqlite3_column_int64(st, 1) <= sqlite3_column_int64(st, 0))
                return -ERANGE; /* the new dates would cross */
        sqlite3_finalize(TAKE_PTR(st));
        if (l->clear_users || l->n_users) {
                if (sqlite3_prepare_v2(db, "DELETE FROM media_users WHERE no = ?1", -1, &st, NULL) != SQLITE_OK)
                        return -EIO;
                sqlite3_bind_text(st, 1, l->no, -1, SQLITE_STATIC);
                if (sqlite3_step(st) != SQLITE_DONE || insert_users(db, l) < 0)
                        return -EIO;
        }
        char start[24] = "", end[24] = "", users[MEDIA_USERS_MAX * 34 + 1] = "", uid[16];
        if (l->have_start)
                fmt_i64(start, l->start_us);
        if (l->have_end)
                fmt_i64(end, l->end_us);
        if (l->clear_users || l->n_users)
                users_join(l, users, sizeof users);
        snprintf(uid, sizeof uid, "%u", conn_uid(c));
        /* Fields left out of the request are recorded empty: only changes are listed. */
        return server_evidence(srv, "media.change", conn_uid(c), "media", l->no,
                               "media_type", l->type ? l->type : "", "purpose", l->purpose ? l->purpose : "",
                               "manager", l->manager ? l->manager : "", "remarks", l->remarks ? l->remarks : "",
                               "start_us", start, "end_us", end, "users", users,
                               "users_changed", l->clear_users || l->n_users ? "1" : "0", "by_uid", uid, NULL);
}

static int handle_change(server *srv, conn *c, const mamori_msg *req)
{
        ledger l;
        const char *why = NULL;
        int r = ledger_read(req, &l, &why);
        if (r == -EINVAL)
                return media_refuse(srv, c, req, "media.change", MAMORI_E_INVALID, why);
        if (r < 0)
                return r;
        if (!l.no)
                return -EBADMSG;
        if (l.vendor || l.product || l.serial || l.mark_kind || l.mark)
                return media_refuse(srv, c, req, "media.change", MAMORI_E_INVALID,
                                    "the identity cannot be changed: retire the medium and register it anew");
        r = in_savepoint(srv, c, &l, change_write);
        if (r == -ENOENT)
                return media_refuse(srv, c, req, "media.change", MAMORI_E_NOT_FOUND,
                                    "no active medium with that management number");
        if (r == -ERANGE)
                return media_refuse(srv, c, req, "media.change", MAMORI_E_INVALID,
                                    "the end of use would not be after its start");
        if (r < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "the ledger could not be written");
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

static int retire_write(server *srv, conn *c, const ledger *l)
{
        sqlite3 *db = store_writer(server_store(srv));
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "UPDATE media SET state = 'retired', changed_us = ?2"
                               " WHERE no = ?1 AND state = 'active'", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, l->no, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, mamori_now_us());
        if (sqlite3_step(st) != SQLITE_DONE)
                return -EIO;
        if (sqlite3_changes(db) == 0)
                return -ENOENT;
        char uid[16];
        snprintf(uid, sizeof uid, "%u", conn_uid(c));
        return server_evidence(srv, "media.retire", conn_uid(c), "media", l->no,
                               "remarks", l->remarks ? l->remarks : "", "by_uid", uid, NULL);
}

static int handle_retire(server *srv, conn *c, const mamori_msg *req)
{
        ledger l;
        const char *why = NULL;
        int r = ledger_read(req, &l, &why);
        if (r == -EINVAL)
                return media_refuse(srv, c, req, "media.retire", MAMORI_E_INVALID, why);
        if (r < 0)
                return r;
        if (!l.no)
                return -EBADMSG;
        r = in_savepoint(srv, c, &l, retire_write);
        if (r == -ENOENT)
                return media_refuse(srv, c, req, "media.retire", MAMORI_E_NOT_FOUND,
                                    "no active medium with that management number");
        if (r < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "the ledger could not be written");
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

typedef struct listing {
        sqlite3_stmt *st, *users;
        uint16_t type;
        uint64_t sent;
} listing;

static void listing_free(void *p)
{
        listing *x = p;
        if (!x)
                return;
        sqlite3_finalize(x->st);
        sqlite3_finalize(x->users);
        free(x);
}

/* Puts one ledger row (and its users) into m. */
static void put_medium(listing *x, mamori_msg *m)
{
        sqlite3_stmt *st = x->st;
        static const uint16_t tags[] = {MAMORI_F_MEDIA_NO, MAMORI_F_DEV_VENDOR, MAMORI_F_DEV_PRODUCT,
                                        MAMORI_F_DEV_SERIAL, MAMORI_F_DEV_MARK_KIND, MAMORI_F_DEV_MARK,
                                        MAMORI_F_MEDIA_TYPE, MAMORI_F_MEDIA_PURPOSE, MAMORI_F_MEDIA_MANAGER,
                                        MAMORI_F_MEDIA_REMARKS, MAMORI_F_MEDIA_STATE};
        for (int i = 0; i < (int)ELEMENTSOF(tags); i++)
                mamori_msg_put_str(m, tags[i], (const char *)sqlite3_column_text(st, i));
        mamori_msg_put_i64(m, MAMORI_F_MEDIA_START, sqlite3_column_int64(st, 11));
        mamori_msg_put_i64(m, MAMORI_F_MEDIA_END, sqlite3_column_int64(st, 12));
        mamori_msg_put_i64(m, MAMORI_F_MEDIA_CREATED, sqlite3_column_int64(st, 13));
        mamori_msg_put_i64(m, MAMORI_F_MEDIA_CHANGED, sqlite3_column_int64(st, 14));
        if (sqlite3_column_type(st, 15) != SQLITE_NULL) {
                mamori_msg_put_i64(m, MAMORI_F_MEDIA_SEEN_TIME, sqlite3_column_int64(st, 15));
                mamori_msg_put_str(m, MAMORI_F_MEDIA_SEEN_HOST, (const char *)sqlite3_column_text(st, 16));
                mamori_msg_put_str(m, MAMORI_F_DEV_PORT, (const char *)sqlite3_column_text(st, 17));
        }
        sqlite3_reset(x->users);
        sqlite3_bind_text(x->users, 1, (const char *)sqlite3_column_text(st, 0), -1, SQLITE_TRANSIENT);
        while (sqlite3_step(x->users) == SQLITE_ROW)
                mamori_msg_put_str(m, MAMORI_F_MEDIA_USER, (const char *)sqlite3_column_text(x->users, 0));
}

/* Streams up to LIST_BATCH media, one message each. Returns 1 for more, 0 when done. */
static int listing_produce(server *srv, conn *c, void *state)
{
        listing *x = state;
        int r = SQLITE_DONE;
        for (int i = 0; i < LIST_BATCH && (r = sqlite3_step(x->st)) == SQLITE_ROW; i++) {
                mamori_msg *m;
                if (mamori_msg_new(x->type, MAMORI_MORE, &m) < 0)
                        return -ENOMEM;
                put_medium(x, m);
                conn_send(c, m);
                mamori_msg_free(m);
                x->sent++;
        }
        if (r == SQLITE_ROW)
                return 1;
        if (r != SQLITE_DONE)
                return conn_reply(c, x->type, MAMORI_E_STORAGE, "the ledger could not be read"), 0;
        mamori_msg *end;
        if (mamori_msg_new(x->type, MAMORI_OK, &end) < 0)
                return -ENOMEM;
        mamori_msg_put_u64(end, MAMORI_F_COUNT, x->sent);
        conn_send(c, end);
        mamori_msg_free(end);
        return 0;
}

/* Lists the ledger (committed data), or one medium with F_MEDIA_NO. */
static int handle_list(server *srv, conn *c, const mamori_msg *req)
{
        const char *no = NULL;
        int r = mamori_msg_get_str(req, MAMORI_F_MEDIA_NO, MAMORI_MEDIA_NO_MAX, &no);
        if (r < 0 && r != -ENOENT)
                return -EBADMSG;
        sqlite3 *db = store_reader(server_store(srv));
        listing *x = calloc(1, sizeof *x);
        if (!x)
                return -ENOMEM;
        x->type = req->type;
        if (sqlite3_prepare_v2(db, no ? "SELECT no, vendor, product, serial, mark_kind, mark, type, purpose,"
                                        " manager, remarks, state, start_us, end_us, created_us, changed_us,"
                                        " seen_us, seen_host, seen_port FROM media WHERE no = ?1"
                                      : "SELECT no, vendor, product, serial, mark_kind, mark, type, purpose,"
                                        " manager, remarks, state, start_us, end_us, created_us, changed_us,"
                                        " seen_us, seen_host, seen_port FROM media ORDER BY no",
                               -1, &x->st, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db, "SELECT name FROM media_users WHERE no = ?1 ORDER BY name", -1, &x->users,
                               NULL) != SQLITE_OK) {
                listing_free(x);
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "the ledger could not be read");
        }
        if (no)
                sqlite3_bind_text(x->st, 1, no, -1, SQLITE_TRANSIENT);
        if (no) {
                /* show: one medium, or "not found" */
                if (sqlite3_step(x->st) != SQLITE_ROW) {
                        listing_free(x);
                        return conn_reply(c, req->type, MAMORI_E_NOT_FOUND, "no medium with that management number");
                }
                mamori_msg *m;
                r = mamori_msg_new(req->type, MAMORI_OK, &m);
                if (r >= 0) {
                        put_medium(x, m);
                        r = conn_send(c, m);
                        mamori_msg_free(m);
                }
                listing_free(x);
                return r;
        }
        conn_set_producer(c, listing_produce, x, listing_free);
        return 0;
}

int media_init(server *srv)
{
        int r = media_schema(store_writer(server_store(srv)));
        if (r < 0)
                return r;
        return decide_init(srv);
}

#define READERS (ROLE_ROOT | ROLE_ADMIN | ROLE_MANAGER | ROLE_AUDITOR)

/* The agent's second connection: it hears MEDIA_CHANGED after each commit that changed
 * the ledger, the grants or the trusted keys, and decides its media again at once (a
 * revocation or retirement takes effect then, not at the next replug). */
static int handle_watch(server *srv, conn *c, const mamori_msg *req)
{
        conn_watch_media(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

/* MEDIA_CHANGED is policyd's own message; nobody may send it (the row's empty role set). */
static int handle_changed(server *srv, conn *c, const mamori_msg *req)
{
        return conn_reply(c, req->type, MAMORI_E_UNSUPPORTED, "a notification, not a request");
}

const handler media_handlers[] = {
        {MAMORI_MSG_MEDIA_REGISTER, ROLE_ADMIN, handle_register},
        {MAMORI_MSG_MEDIA_CHANGE, ROLE_ADMIN, handle_change},
        {MAMORI_MSG_MEDIA_RETIRE, ROLE_ADMIN, handle_retire},
        {MAMORI_MSG_MEDIA_LIST, READERS, handle_list},
        {MAMORI_MSG_MEDIA_DECIDE, ROLE_AGENT, handle_decide},
        {MAMORI_MSG_GRANT_CONSUME, ROLE_AGENT, handle_consume},
        {MAMORI_MSG_MEDIA_WATCH, ROLE_AGENT, handle_watch},
        {MAMORI_MSG_MEDIA_CHANGED, 0, handle_changed},
        /* R-PERM-2: the trusted keys are root's (the system security officer's), and
         * every change of them is evidence; grants need a manager role *and* a
         * signature by a trusted key, checked in grants.c. */
        {MAMORI_MSG_MANAGER_TRUST, ROLE_ROOT, handle_manager_trust},
        {MAMORI_MSG_MANAGER_UNTRUST, ROLE_ROOT, handle_manager_untrust},
        {MAMORI_MSG_MANAGER_LIST, READERS, handle_manager_list},
        {MAMORI_MSG_GRANT_SUBMIT, ROLE_MANAGER, handle_grant_submit},
        {MAMORI_MSG_GRANT_REVOKE, ROLE_MANAGER, handle_grant_revoke},
        {MAMORI_MSG_GRANT_LIST, READERS, handle_grant_list},
        {0},
};
