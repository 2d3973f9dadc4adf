/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The decision the agent asks for: "may this device, on this port and host, be used,
 * and by whom, in which modes, until when?" (R-REG-1/2/6/7/8, R-IN-1, R-OUT-2..4,
 * R-PERM-1/3, R-EXC-1), and the once-only grant's use. Grants were verified when
 * they were submitted, so nothing here checks signatures; the statements are prepared
 * once and the identity and grant lookups use indexes.
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

#define ENTRIES_MAX 512 /* more than this many rights on one medium: the rest are left out */

static struct {
        sqlite3_stmt *identity, *users, *grants, *seen, *grant_get, *grant_use;
} q;

int decide_init(server *srv)
{
        sqlite3 *db = store_writer(server_store(srv));
        struct {
                sqlite3_stmt **st;
                const char *sql;
        } s[] = {
                {&q.identity, "SELECT no, mark_kind, mark, state, start_us, end_us FROM media"
                              " WHERE vendor = ?1 AND product = ?2 AND serial = ?3"},
                {&q.users, "SELECT name FROM media_users WHERE no = ?1"},
                /* Grants for this medium or all media, this host or any, not over, not used
                 * up, not revoked, signed by a key that is still trusted. */
                {&q.grants, "SELECT g.id, g.subject_kind, g.subject, g.from_us, g.until_us, g.modes, g.flags"
                            " FROM grants g JOIN managers k ON k.pubkey = g.manager_pk AND k.trusted = 1"
                            " WHERE g.media IN (?1, '*') AND g.until_us > ?2 AND g.host IN (?3, '*')"
                            " AND g.used_us IS NULL AND g.revoked_us IS NULL"},
                {&q.seen, "UPDATE media SET seen_us = ?2, seen_host = ?3, seen_port = ?4 WHERE no = ?1"},
                {&q.grant_get, "SELECT g.media, g.subject_kind, g.subject, g.from_us, g.until_us, g.flags,"
                               " g.used_us, g.revoked_us, k.trusted FROM grants g"
                               " LEFT JOIN managers k ON k.pubkey = g.manager_pk WHERE g.id = ?1"},
                {&q.grant_use, "UPDATE grants SET used_us = ?2 WHERE id = ?1 AND used_us IS NULL"},
        };
        for (size_t i = 0; i < ELEMENTSOF(s); i++)
                if (sqlite3_prepare_v3(db, s[i].sql, -1, SQLITE_PREPARE_PERSISTENT, s[i].st, NULL) != SQLITE_OK)
                        return log_error_errno(EIO, "Media decisions: %s", sqlite3_errmsg(db));
        return 0;
}

typedef struct device {
        const char *vendor, *product, *serial, *fs_uuid, *token, *port, *host, *kind;
        uint64_t size;
        bool have_size;
        const char *user; /* optional question: may user use mode? */
        uint8_t mode;
} device;

typedef struct decision {
        mamori_verdict verdict;
        const char *reason;
        char no[MAMORI_MEDIA_NO_MAX + 1];
        int64_t end_us, next_change;
        mamori_entry entries[ENTRIES_MAX];
        size_t n_entries;
} decision;

static int req_str(const mamori_msg *req, uint16_t tag, size_t max, bool need, const char **ret)
{
        int r = mamori_msg_get_str(req, tag, max, ret);
        if (r == -ENOENT && !need) {
                *ret = NULL;
                return 0;
        }
        return r < 0 ? -EBADMSG : 0;
}

static int device_read(const mamori_msg *req, device *d)
{
        *d = (device){0};
        if (req_str(req, MAMORI_F_DEV_VENDOR, 4, true, &d->vendor) < 0 ||
            req_str(req, MAMORI_F_DEV_PRODUCT, 4, true, &d->product) < 0 ||
            req_str(req, MAMORI_F_DEV_SERIAL, MEDIA_SERIAL_MAX, true, &d->serial) < 0 ||
            req_str(req, MAMORI_F_DEV_PORT, MEDIA_PORT_MAX, true, &d->port) < 0 ||
            req_str(req, MAMORI_F_HOST, MAMORI_HOST_MAX, true, &d->host) < 0 ||
            req_str(req, MAMORI_F_DEV_KIND, 16, true, &d->kind) < 0 ||
            req_str(req, MAMORI_F_DEV_FS_UUID, MEDIA_MARK_MAX, false, &d->fs_uuid) < 0 ||
            req_str(req, MAMORI_F_DEV_TOKEN, MEDIA_MARK_MAX, false, &d->token) < 0 ||
            req_str(req, MAMORI_F_USER, MAMORI_NAME_MAX, false, &d->user) < 0)
                return -EBADMSG;
        int r = mamori_msg_get_u64(req, MAMORI_F_DEV_SIZE, &d->size);
        if (r < 0 && r != -ENOENT)
                return -EBADMSG;
        d->have_size = r >= 0;
        r = mamori_msg_get_u8(req, MAMORI_F_MODE, &d->mode);
        if (r < 0 && r != -ENOENT)
                return -EBADMSG;
        if (!streq(d->kind, "storage") && !streq(d->kind, "optical"))
                return -EBADMSG;
        if ((d->user != NULL) != (r >= 0) || (d->user && (!d->mode || (d->mode & ~MAMORI_MODE_ALL))))
                return -EBADMSG;
        return 0;
}

static bool strv_has(char **l, const char *s)
{
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

/* Whether the device shows the registered mark. */
static bool mark_matches(const device *d, const char *kind, const char *mark)
{
        if (streq(kind, "none"))
                return true;
        if (streq(kind, "fs-uuid"))
                return d->fs_uuid && strcasecmp(d->fs_uuid, mark) == 0;
        if (streq(kind, "token"))
                return d->token && streq(d->token, mark);
        if (streq(kind, "size")) {
                char buf[24];
                snprintf(buf, sizeof buf, "%" PRIu64, d->size);
                return d->have_size && streq(buf, mark);
        }
        return false; /* an unknown kind matches nothing (fail closed) */
}

/* Finds the medium. Returns 1 active match (no, dates set), 0 none, or sets reason. */
static void lookup(const device *d, decision *x, int64_t *ret_start)
{
        sqlite3_stmt *st = q.identity;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, d->vendor, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, d->product, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, d->serial, -1, SQLITE_STATIC);
        int active = 0, retired = 0, unread = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
                const char *kind = (const char *)sqlite3_column_text(st, 1);
                if ((streq(kind, "fs-uuid") && !d->fs_uuid) || (streq(kind, "size") && !d->have_size)) {
                        unread++; /* its mark is not known until the device is let in to read it */
                        continue;
                }
                if (!mark_matches(d, (const char *)sqlite3_column_text(st, 1),
                                  (const char *)sqlite3_column_text(st, 2)))
                        continue;
                bool is_active = streq((const char *)sqlite3_column_text(st, 3), "active");
                if (!is_active) {
                        if (!active && !retired)
                                snprintf(x->no, sizeof x->no, "%s", sqlite3_column_text(st, 0));
                        retired++;
                        continue;
                }
                active++;
                snprintf(x->no, sizeof x->no, "%s", sqlite3_column_text(st, 0));
                *ret_start = sqlite3_column_int64(st, 4);
                x->end_us = sqlite3_column_int64(st, 5);
        }
        sqlite3_reset(st);
        if (unread) /* the answer depends on a mark not read yet: identify first, then decide */
                x->reason = "identify";
        else if (active > 1)
                x->reason = "ambiguous-identity"; /* two media fit: refuse both (fail closed) */
        else if (active == 0)
                x->reason = retired ? "retired" : "unregistered";
}

static void add_entry(decision *x, uint8_t kind, const char *subject, uint8_t modes, uint8_t once,
                      int64_t until, const uint8_t *id)
{
        if (x->n_entries == ENTRIES_MAX) {
                log_warning("Medium %s has more than %d rights; ignoring the rest.", x->no, ENTRIES_MAX);
                return; /* leaving rights out only denies more (fail closed) */
        }
        mamori_entry *e = &x->entries[x->n_entries++];
        *e = (mamori_entry){.kind = kind, .modes = modes, .once = once, .until_us = until};
        snprintf(e->subject, sizeof e->subject, "%s", subject);
        if (id)
                memcpy(e->id, id, MAMORI_GRANT_ID_LEN);
        if (until < x->next_change)
                x->next_change = until;
}

/* Whether a grant to (kind, subject) falls within the medium's user list (R-REG-7):
 * the same user or group is listed, or the user is a member of a listed group. */
static bool subject_listed(char users[][MAMORI_NAME_MAX + 2], size_t n, uint8_t kind, const char *subject)
{
        for (size_t i = 0; i < n; i++) {
                bool grp = users[i][0] == '@';
                const char *name = users[i] + grp;
                if (grp == (kind == MAMORI_SUBJECT_GROUP) && streq(name, subject))
                        return true;
                if (grp && kind == MAMORI_SUBJECT_USER && media_user_in_group(subject, name))
                        return true;
        }
        return false;
}

/* The rights on an allowed, registered medium: the registration's own (R-IN-1 "registered",
 * R-OUT-2 without a grant) for the listed users, then the grants that apply. */
static void rights(server *srv, const device *d, decision *x, int64_t now)
{
        const mamori_config *cfg = server_config(srv);
        uint8_t base = (streq(cfg->media.input_rule, "registered") ? MAMORI_MODE_READ : 0) |
                       (cfg->media.encrypted_output_needs_grant ? 0 : MAMORI_MODE_WRITE_ENCRYPTED);
        static char users[MEDIA_USERS_MAX][MAMORI_NAME_MAX + 2];
        size_t n = 0;
        sqlite3_reset(q.users);
        sqlite3_bind_text(q.users, 1, x->no, -1, SQLITE_STATIC);
        while (n < MEDIA_USERS_MAX && sqlite3_step(q.users) == SQLITE_ROW) {
                const char *u = (const char *)sqlite3_column_text(q.users, 0);
                snprintf(users[n++], sizeof users[0], "%s", u);
                if (base)
                        add_entry(x, u[0] == '@' ? MAMORI_SUBJECT_GROUP : MAMORI_SUBJECT_USER,
                                  u + (u[0] == '@'), base, 0, x->end_us, NULL);
        }
        sqlite3_reset(q.users);

        sqlite3_stmt *st = q.grants;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, x->no, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_text(st, 3, d->host, -1, SQLITE_STATIC);
        while (sqlite3_step(st) == SQLITE_ROW) {
                uint8_t kind = sqlite3_column_int(st, 1);
                const char *subject = (const char *)sqlite3_column_text(st, 2);
                int64_t from = sqlite3_column_int64(st, 3), until = sqlite3_column_int64(st, 4);
                if (from > now) { /* not yet valid: the answer changes when it starts */
                        if (from < x->next_change)
                                x->next_change = from;
                        continue;
                }
                if (!subject_listed(users, n, kind, subject))
                        continue; /* a grant cannot widen the medium's user list (R-REG-7) */
                add_entry(x, kind, subject, sqlite3_column_int(st, 5),
                          (sqlite3_column_int(st, 6) & MAMORI_GRANT_ONCE) != 0,
                          until < x->end_us ? until : x->end_us, sqlite3_column_blob(st, 0));
        }
        sqlite3_reset(st);
}

/* Works out the decision for d at now. */
static void decide(server *srv, const device *d, decision *x, int64_t now)
{
        const mamori_config *cfg = server_config(srv);
        x->next_change = INT64_MAX;
        int64_t start = 0;
        lookup(d, x, &start);
        if (cfg->media.allowed_ports[0] && !strv_has(cfg->media.allowed_ports, d->port))
                x->reason = "port-disabled"; /* R-REG-8, before anything else */
        else if (x->reason && streq(x->reason, "unregistered") && streq(d->kind, "storage") &&
                 cfg->media.optical_read && !d->have_size)
                x->reason = "identify"; /* R-REG-2: it may be an optical drive; the agent looks (no mount) */
        else if (x->reason && streq(x->reason, "unregistered") && streq(d->kind, "optical") &&
                 cfg->media.optical_read) {
                x->reason = NULL; /* R-REG-2: the optical exception */
                x->end_us = INT64_MAX;
                add_entry(x, MAMORI_SUBJECT_ANY, "", MAMORI_MODE_READ |
                          (cfg->media.optical_write ? MAMORI_MODE_WRITE_ENCRYPTED : 0), 0, INT64_MAX, NULL);
        } else if (!x->reason && now < start) {
                x->reason = "not-yet-in-use";
                x->next_change = start;
        } else if (!x->reason && now >= x->end_us)
                x->reason = "registration-expired"; /* R-REG-6: refused like an unregistered one */
        else if (!x->reason)
                rights(srv, d, x, now);
        x->verdict = !x->reason                  ? MAMORI_VERDICT_ALLOWED
                     : streq(x->reason, "identify") ? MAMORI_VERDICT_IDENTIFY
                                                    : MAMORI_VERDICT_BLOCKED;
        if (!x->reason)
                x->reason = "";
}

/* Whether user may use mode now, by the entries. */
static bool permitted(const decision *x, const char *user, uint8_t mode)
{
        for (size_t i = 0; i < x->n_entries; i++) {
                const mamori_entry *e = &x->entries[i];
                if ((e->modes & mode) != mode)
                        continue;
                if (e->kind == MAMORI_SUBJECT_ANY ||
                    (e->kind == MAMORI_SUBJECT_USER && streq(e->subject, user)) ||
                    (e->kind == MAMORI_SUBJECT_GROUP && media_user_in_group(user, e->subject)))
                        return true;
        }
        return false;
}

static int decision_evidence(server *srv, conn *c, const device *d, const decision *x, const char *would,
                             int permit)
{
        char next[24] = "", size[24] = "", n[16], mode[64] = "";
        if (x->next_change != INT64_MAX)
                snprintf(next, sizeof next, "%" PRId64, x->next_change);
        if (d->have_size)
                snprintf(size, sizeof size, "%" PRIu64, d->size);
        snprintf(n, sizeof n, "%zu", x->n_entries);
        if (d->user)
                mamori_modes_format(d->mode, mode);
        return server_evidence(srv, "media.decision", conn_uid(c), "media", x->no,
                               "verdict", mamori_verdict_to_string(x->verdict), "reason", x->reason,
                               "enforced_reason", would, "vendor", d->vendor, "product", d->product,
                               "serial", d->serial, "fs_uuid", d->fs_uuid ? d->fs_uuid : "",
                               "size", size, "port", d->port, "device_host", d->host, "kind", d->kind,
                               "rights", n, "next_change_us", next, "user", d->user ? d->user : "",
                               "mode", mode, "permit", permit < 0 ? "" : permit ? "1" : "0", NULL);
}

int handle_decide(server *srv, conn *c, const mamori_msg *req)
{
        static decision x; /* large; the daemon is single-threaded */
        device d;
        int r = device_read(req, &d);
        if (r < 0)
                return r;
        const mamori_config *cfg = server_config(srv);
        int64_t now = mamori_now_us();
        memset(&x, 0, offsetof(decision, entries));
        x.n_entries = 0;
        decide(srv, &d, &x, now);
        const char *would = x.verdict == MAMORI_VERDICT_ALLOWED ? "allowed" : x.reason;
        if (strv_has(cfg->media.exempt_hosts, d.host)) {
                x.verdict = MAMORI_VERDICT_EXEMPT; /* R-EXC-1: media control is off there */
                x.reason = "exempt-host";
        } else if (strv_has(cfg->media.audit_only_hosts, d.host)) {
                x.verdict = MAMORI_VERDICT_AUDIT; /* decided and recorded, not enforced */
                x.reason = "audit-only-host";
        }
        if (x.verdict == MAMORI_VERDICT_EXEMPT || x.verdict == MAMORI_VERDICT_AUDIT) {
                x.n_entries = 0;
                x.next_change = INT64_MAX;
                add_entry(&x, MAMORI_SUBJECT_ANY, "", MAMORI_MODE_ALL, 0, INT64_MAX, NULL);
        }
        int permit = d.user ? x.verdict != MAMORI_VERDICT_BLOCKED && x.verdict != MAMORI_VERDICT_IDENTIFY &&
                                      permitted(&x, d.user, d.mode)
                            : -1;

        sqlite3 *db = store_writer(server_store(srv));
        r = media_begin(srv);
        if (r >= 0)
                r = media_exec(db, "SAVEPOINT decide");
        if (r >= 0 && x.no[0]) { /* the whereabouts check (R-REG-5): last seen, where */
                sqlite3_reset(q.seen);
                sqlite3_bind_text(q.seen, 1, x.no, -1, SQLITE_STATIC);
                sqlite3_bind_int64(q.seen, 2, now);
                sqlite3_bind_text(q.seen, 3, d.host, -1, SQLITE_STATIC);
                sqlite3_bind_text(q.seen, 4, d.port, -1, SQLITE_STATIC);
                r = sqlite3_step(q.seen) == SQLITE_DONE ? 0 : -EIO;
                sqlite3_reset(q.seen);
        }
        if (r >= 0)
                r = decision_evidence(srv, c, &d, &x, would, permit);
        if (r < 0) { /* no evidence, no verdict: the agent keeps the device blocked (R-EV-9) */
                (void)media_exec(db, "ROLLBACK TO decide");
                (void)media_exec(db, "RELEASE decide");
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "the decision could not be recorded");
        }
        (void)media_exec(db, "RELEASE decide");

        mamori_msg *m;
        r = mamori_msg_new(req->type, MAMORI_OK, &m);
        if (r < 0)
                return r;
        mamori_msg_put_u8(m, MAMORI_F_VERDICT, x.verdict);
        mamori_msg_put_str(m, MAMORI_F_REASON, x.reason);
        mamori_msg_put_str(m, MAMORI_F_MEDIA_NO, x.no);
        if (x.next_change != INT64_MAX)
                mamori_msg_put_i64(m, MAMORI_F_NEXT_CHANGE, x.next_change);
        if (permit >= 0)
                mamori_msg_put_u8(m, MAMORI_F_PERMIT, permit);
        for (size_t i = 0; i < x.n_entries; i++) {
                uint8_t buf[MAMORI_ENTRY_MAX];
                size_t len = mamori_entry_encode(&x.entries[i], buf);
                mamori_msg_put_bytes(m, MAMORI_F_ENTRY, buf, len);
        }
        r = conn_send(c, m);
        mamori_msg_free(m);
        conn_hold_for_commit(c); /* the verdict leaves only with its evidence durable */
        return r;
}

/* Whether the once-only grant id may be used now. Returns NULL with its medium in media, or
 * why not with the reply's status in *ret_status. A grant that cannot be read is refused
 * (fail closed: the operation it would allow does not happen). */
static const char *grant_usable(const uint8_t id[static MAMORI_GRANT_ID_LEN],
                                char media[static MAMORI_MEDIA_NO_MAX + 1], mamori_status *ret_status)
{
        sqlite3_stmt *st = q.grant_get;
        sqlite3_reset(st);
        sqlite3_bind_blob(st, 1, id, MAMORI_GRANT_ID_LEN, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_ROW) {
                sqlite3_reset(st);
                *ret_status = MAMORI_E_NOT_FOUND;
                return "no such grant";
        }
        snprintf(media, MAMORI_MEDIA_NO_MAX + 1, "%s", sqlite3_column_text(st, 0));
        int64_t now = mamori_now_us(), from = sqlite3_column_int64(st, 3), until = sqlite3_column_int64(st, 4);
        int flags = sqlite3_column_int(st, 5);
        bool used = sqlite3_column_type(st, 6) != SQLITE_NULL, revoked = sqlite3_column_type(st, 7) != SQLITE_NULL;
        bool trusted = sqlite3_column_int(st, 8) == 1;
        sqlite3_reset(st);
        const char *why = !(flags & MAMORI_GRANT_ONCE) ? "not a once-only grant"
                          : revoked                     ? "the grant was revoked"
                          : !trusted                    ? "the grant's manager key is no longer trusted"
                          : used                        ? "once-only grant already used"
                          : now < from                  ? "the grant is not valid yet"
                          : now >= until                ? "the grant has expired"
                                                        : NULL;
        *ret_status = used ? MAMORI_E_EXISTS : MAMORI_E_INVALID;
        return why;
}

/* Marks the grant used inside the caller's savepoint. Returns 0, or -EIO (also when
 * another use got there first: no row changed). */
static int grant_mark_used(sqlite3 *db, const uint8_t id[static MAMORI_GRANT_ID_LEN])
{
        sqlite3_reset(q.grant_use);
        sqlite3_bind_blob(q.grant_use, 1, id, MAMORI_GRANT_ID_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(q.grant_use, 2, mamori_now_us());
        int r = sqlite3_step(q.grant_use) == SQLITE_DONE && sqlite3_changes(db) == 1 ? 0 : -EIO;
        sqlite3_reset(q.grant_use);
        return r;
}

/* The agent reports one use of a once-only grant (R-PERM-3); a second use is refused. */
int handle_consume(server *srv, conn *c, const mamori_msg *req)
{
        const uint8_t *id;
        const char *user = NULL;
        if (mamori_msg_get_bytes(req, MAMORI_F_GRANT_ID, MAMORI_GRANT_ID_LEN, &id) < 0 ||
            req_str(req, MAMORI_F_USER, MAMORI_NAME_MAX, false, &user) < 0)
                return -EBADMSG;
        int r = media_begin(srv);
        if (r < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "the use could not be recorded");
        char media[MAMORI_MEDIA_NO_MAX + 1], idhex[33];
        mamori_status status;
        const char *why = grant_usable(id, media, &status);
        if (why)
                return media_refuse(srv, c, req, "grant.use", status, why);
        sqlite3 *db = store_writer(server_store(srv));
        if (media_exec(db, "SAVEPOINT consume") < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "the use could not be recorded");
        r = grant_mark_used(db, id);
        if (r >= 0)
                r = server_evidence(srv, "grant.use", conn_uid(c), "grant_id", mamori_grant_id_format(id, idhex),
                                    "media", media, "user", user ? user : "", NULL);
        if (r < 0) { /* not recorded, not used: the agent refuses the operation (fail closed) */
                (void)media_exec(db, "ROLLBACK TO consume");
                (void)media_exec(db, "RELEASE consume");
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "the use could not be recorded");
        }
        (void)media_exec(db, "RELEASE consume");
        server_media_changed(srv); /* the once-only right is gone */
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

int media_grant_use_submit(server *srv, conn *c, const mamori_msg *req,
                           const uint8_t id[static MAMORI_GRANT_ID_LEN], mamori_record *rec)
{
        _cleanup_(mamori_record_freep) mamori_record *own = rec;
        char media[MAMORI_MEDIA_NO_MAX + 1], idhex[33];
        mamori_status status;
        int r = media_begin(srv);
        if (r < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "evidence could not be stored");
        /* refused: nothing is stored, the grant stays as it was; the agent records its own
         * refusal (the operation did not happen) */
        const char *why = grant_usable(id, media, &status);
        if (why)
                return conn_reply(c, req->type, status, why);
        r = mamori_record_add(own, "grant_id", mamori_grant_id_format(id, idhex));
        if (r == -ENOMEM)
                return r;
        if (r < 0) /* the submitter may not name the grant itself: the field says it */
                return -EBADMSG;
        sqlite3 *db = store_writer(server_store(srv));
        if (media_exec(db, "SAVEPOINT use") < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "evidence could not be stored");
        uint64_t seq;
        r = grant_mark_used(db, id);
        if (r >= 0) /* the record is the savepoint's last write: a rollback never takes back a record */
                r = store_append(server_store(srv), TAKE_PTR(own), &seq);
        if (r < 0) { /* not stored, not used: the agent removes the file (R-EV-9), fail closed */
                (void)media_exec(db, "ROLLBACK TO use");
                (void)media_exec(db, "RELEASE use");
                return conn_reply(c, req->type, r == -EINVAL ? MAMORI_E_INVALID : MAMORI_E_STORAGE,
                                  r == -EINVAL ? "record too large" : "evidence could not be stored");
        }
        (void)media_exec(db, "RELEASE use");
        server_media_changed(srv); /* the once-only right is gone */
        return conn_reply_stored(c, req, seq);
}
