/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Evidence requests: submit (agent, PAM module), query and export (reviewers),
 * anchor, rotate and purge (R-EV-1..R-EV-11). */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "evdb.h"
#include "handlers.h"
#include "log.h"
#include "media.h"

#define COMPONENT_MAX 32
#define BATCH_ROWS 256
#define MSG_SOFT (MAMORI_MSG_MAX - 2048)

/* Builds a record from a submit request, and the once-only grant it reports the use of
 * (ret_grant NULL when none). Returns 0, -EBADMSG, or -ENOMEM. */
static int record_from_request(const mamori_msg *req, uid_t uid, mamori_record **ret, const uint8_t **ret_grant)
{
        const uint8_t *grant = NULL;
        _cleanup_(mamori_record_freep) mamori_record *rec = NULL;
        int r = mamori_record_new(&rec);
        if (r < 0)
                return r;
        rec->uid = uid;
        rec->time_us = mamori_now_us();
        bool have_type = false, have_component = false, have_synced = false;
        for (size_t i = 0; i < req->n_fields; i++) {
                const mamori_field *f = &req->fields[i];
                const char *s;
                uint64_t v;
                char key[MAMORI_PAIR_KEY_MAX + 1];
                switch (f->tag) {
                case MAMORI_F_EV_TYPE:
                        if (have_type || mamori_field_str(f, MAMORI_TYPE_MAX, &s) < 0 ||
                            !mamori_record_type_valid(s) || mamori_record_set(rec, &rec->type, s) < 0)
                                return -EBADMSG;
                        have_type = true;
                        break;
                case MAMORI_F_EV_COMPONENT:
                        if (have_component || mamori_field_str(f, COMPONENT_MAX, &s) < 0 || !*s ||
                            mamori_record_set(rec, &rec->component, s) < 0)
                                return -EBADMSG;
                        have_component = true;
                        break;
                case MAMORI_F_EV_TIME:
                        if (mamori_field_uint(f, 8, &v) < 0 || (int64_t)v <= 0)
                                return -EBADMSG;
                        rec->time_us = (int64_t)v; /* the event's time, e.g. a spooled record's */
                        break;
                case MAMORI_F_EV_SYNCED:
                        if (mamori_field_uint(f, 1, &v) < 0 || v > 1)
                                return -EBADMSG;
                        rec->clock_synced = v;
                        have_synced = true;
                        break;
                case MAMORI_F_EV_PAIR:
                        if (mamori_field_pair(f, key, &s) < 0 || mamori_record_add(rec, key, s) < 0)
                                return -EBADMSG;
                        break;
                case MAMORI_F_GRANT_ID: /* the once-only grant this record's operation used */
                        if (grant || f->len != MAMORI_GRANT_ID_LEN)
                                return -EBADMSG;
                        grant = f->data;
                        break;
                default:
                        return -EBADMSG; /* strict: no field we do not know */
                }
        }
        if (!have_type || !have_component)
                return -EBADMSG;
        if (!have_synced)
                rec->clock_synced = mamori_clock_synced_cached();
        *ret = TAKE_PTR(rec);
        *ret_grant = grant;
        return 0;
}

/* Appends rec and answers req: "ok" with the sequence number, sent only once the record
 * is durable (R-EV-9); not stored, the sender hears so and keeps (spools) its record. */
static int store_and_answer(server *srv, conn *c, const mamori_msg *req, mamori_record *rec)
{
        uint64_t seq;
        int r = store_append(server_store(srv), rec, &seq);
        if (r < 0)
                return conn_reply(c, req->type, r == -EINVAL ? MAMORI_E_INVALID : MAMORI_E_STORAGE,
                                  r == -EINVAL ? "record too large" : "evidence could not be stored");
        return conn_reply_stored(c, req, seq);
}

static int handle_submit(server *srv, conn *c, const mamori_msg *req)
{
        mamori_record *rec;
        const uint8_t *grant;
        int r = record_from_request(req, conn_uid(c), &rec, &grant);
        if (r < 0)
                return r;
        if (grant) /* the grant's use and the record in one savepoint (R-PERM-3, R-EV-9) */
                return media_grant_use_submit(srv, c, req, grant, rec);
        return store_and_answer(srv, c, req, rec);
}

/*
 * Transfers by mediactl encrypt/decrypt (R-EV-1, R-EV-2, R-EV-9): any local user may
 * record their own, so everything that says who and where comes from policyd: user
 * and uid from SO_PEERCRED, host from policyd's host, via "mediactl". The client
 * sends only these pairs, each once; values are recorded exactly as sent (a hostile
 * file name is evidence too) but bounded, and anything else is refused. The agent's
 * media view sends the same type and keys through EVIDENCE_SUBMIT with via="view".
 */
#define TRANSFER_NAME_MAX 255u   /* NAME_MAX: file and stored_name are basenames */
#define TRANSFER_PATH_MAX 4096u  /* PATH_MAX */
#define TRANSFER_MEDIUM_MAX 64u  /* MAMORI_MEDIA_NO_MAX */

enum { T_FILE, T_SIZE, T_DIRECTION, T_FORM, T_SOURCE_PATH, T_STORED_NAME, T_MEDIUM, _T_MAX };
static const char *const transfer_keys[_T_MAX] = {
        [T_FILE] = "file",         [T_SIZE] = "size",
        [T_DIRECTION] = "direction", [T_FORM] = "form",
        [T_SOURCE_PATH] = "source_path", [T_STORED_NAME] = "stored_name",
        [T_MEDIUM] = "medium",
};

/* A basename: 1..255 bytes, no '/', not "." or "..". */
static bool transfer_name_valid(const char *s)
{
        size_t n = strlen(s);
        return n > 0 && n <= TRANSFER_NAME_MAX && !strchr(s, '/') && strcmp(s, ".") != 0 &&
               strcmp(s, "..") != 0;
}

/* Decimal digits only, no leading zero, fits 64 bits. */
static bool transfer_size_valid(const char *s)
{
        uint64_t v = 0;
        if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 20)
                return false;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t)(*p - '0');
        }
        return true;
}

/* Why value cannot be recorded as key, or NULL if it can. */
static const char *transfer_value_problem(int k, const char *v)
{
        switch (k) {
        case T_FILE:
        case T_STORED_NAME:
                return transfer_name_valid(v) ? NULL : "file and stored_name must be file names (1-255 bytes, no '/')";
        case T_SIZE:
                return transfer_size_valid(v) ? NULL : "size must be a decimal byte count";
        case T_DIRECTION:
                return streq(v, "output") || streq(v, "input") ? NULL : "direction must be output or input";
        case T_FORM:
                return streq(v, "plaintext") || streq(v, "age-org") || streq(v, "age-passphrase")
                               ? NULL
                               : "form must be plaintext, age-org or age-passphrase";
        case T_SOURCE_PATH:
                return v[0] == '/' && strlen(v) <= TRANSFER_PATH_MAX ? NULL
                                                                     : "source_path must be an absolute path (at most 4096 bytes)";
        case T_MEDIUM:
                return strlen(v) <= TRANSFER_MEDIUM_MAX ? NULL : "medium is at most 64 bytes";
        }
        return "unknown field";
}

/* Reads the client's pairs into v[]. Returns NULL, or why the request is refused;
 * -EBADMSG in *r for a message that does not decode (drops the peer). */
static const char *transfer_read(const mamori_msg *req, const char *v[_T_MAX], int *r)
{
        *r = 0;
        for (size_t i = 0; i < req->n_fields; i++) {
                char key[MAMORI_PAIR_KEY_MAX + 1];
                const char *val;
                int k;
                if (req->fields[i].tag != MAMORI_F_EV_PAIR ||
                    mamori_field_pair(&req->fields[i], key, &val) < 0) {
                        *r = -EBADMSG;
                        return NULL;
                }
                if (streq(key, "user") || streq(key, "uid") || streq(key, "host") || streq(key, "via"))
                        return "user, uid, host and via are policyd's to set";
                for (k = 0; k < _T_MAX && !streq(key, transfer_keys[k]); k++)
                        ;
                if (k == _T_MAX)
                        return "unknown field in a transfer record";
                if (v[k])
                        return "a field is given twice";
                const char *why = transfer_value_problem(k, val);
                if (why)
                        return why;
                v[k] = val;
        }
        for (int k = 0; k < _T_MAX; k++)
                if (!v[k])
                        return "a transfer record needs file, size, direction, form, source_path, stored_name and medium";
        return NULL;
}

/* Builds the media.output / media.input record for the peer. Returns 0 or -errno. */
static int transfer_record(server *srv, conn *c, const char *v[_T_MAX], mamori_record **ret)
{
        _cleanup_(mamori_record_freep) mamori_record *rec = NULL;
        char uid[16], name_buf[16];
        uid_t u = conn_uid(c);
        struct passwd *pw = getpwuid(u);
        int r = mamori_record_new(&rec);
        if (r < 0)
                return r;
        snprintf(uid, sizeof uid, "%u", (unsigned)u);
        /* a uid without a passwd entry is recorded as its number */
        snprintf(name_buf, sizeof name_buf, "%u", (unsigned)u);
        rec->uid = u;
        rec->time_us = mamori_now_us();
        rec->clock_synced = mamori_clock_synced_cached();
        r = mamori_record_set(rec, &rec->type, streq(v[T_DIRECTION], "output") ? "media.output" : "media.input");
        if (r >= 0)
                r = mamori_record_set(rec, &rec->component, "mediactl");
        if (r >= 0)
                r = mamori_record_add(rec, "user", pw ? pw->pw_name : name_buf);
        if (r >= 0)
                r = mamori_record_add(rec, "uid", uid);
        if (r >= 0)
                r = mamori_record_add(rec, "host", store_host(server_store(srv)));
        if (r >= 0)
                r = mamori_record_add(rec, "via", "mediactl");
        for (int k = 0; r >= 0 && k < _T_MAX; k++)
                r = mamori_record_add(rec, transfer_keys[k], v[k]);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(rec);
        return 0;
}

/* A user's own transfer; answered "ok" only once the record is durable (R-EV-9). */
static int handle_transfer(server *srv, conn *c, const mamori_msg *req)
{
        const char *v[_T_MAX] = {0};
        mamori_record *rec;
        int r;
        const char *why = transfer_read(req, v, &r);
        if (r < 0)
                return r;
        if (why)
                return conn_reply(c, req->type, MAMORI_E_INVALID, why);
        r = transfer_record(srv, c, v, &rec);
        if (r < 0)
                return r == -ENOMEM ? r : conn_reply(c, req->type, MAMORI_E_INVALID, "record not acceptable");
        return store_and_answer(srv, c, req, rec);
}

typedef struct query {
        sqlite3_stmt *st;
        int64_t after_time;
        uint64_t after_seq;
        uint64_t limit, sent;
        uint16_t type;
} query;

static void query_free(void *p)
{
        query *q = p;
        if (!q)
                return;
        sqlite3_finalize(q->st);
        free(q);
}

/* Sends one batch of matching records. Returns 1 if more may follow, 0 when done. */
static int query_produce(server *srv, conn *c, void *state)
{
        query *q = state;
        sqlite3_stmt *st = q->st;
        sqlite3_bind_int64(st, 1, q->after_time);
        sqlite3_bind_int64(st, 2, (int64_t)q->after_seq);
        uint64_t want = q->limit ? q->limit - q->sent : BATCH_ROWS;
        sqlite3_bind_int64(st, 3, want < BATCH_ROWS ? (int64_t)want : BATCH_ROWS);
        mamori_msg *m = NULL;
        int rows = 0, r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                int len = sqlite3_column_bytes(st, 2);
                if (m && mamori_msg_size(m) + len + 64 > MSG_SOFT) {
                        conn_send(c, m);
                        mamori_msg_free(TAKE_PTR(m));
                }
                if (!m && mamori_msg_new(q->type, MAMORI_MORE, &m) < 0)
                        break;
                q->after_seq = sqlite3_column_int64(st, 0);
                q->after_time = sqlite3_column_int64(st, 1);
                mamori_msg_put_u64(m, MAMORI_F_EV_SEQ, q->after_seq);
                mamori_msg_put_bytes(m, MAMORI_F_EV_BODY, sqlite3_column_blob(st, 2), len);
                rows++;
        }
        sqlite3_reset(st);
        if (m) {
                conn_send(c, m);
                mamori_msg_free(m);
        }
        q->sent += rows;
        if (r != SQLITE_DONE && r != SQLITE_ROW) {
                conn_reply(c, q->type, MAMORI_E_STORAGE, "evidence could not be read");
                return 0;
        }
        if (rows == BATCH_ROWS && (!q->limit || q->sent < q->limit))
                return 1;
        mamori_msg *end;
        if (mamori_msg_new(q->type, MAMORI_OK, &end) < 0)
                return -ENOMEM;
        mamori_msg_put_u64(end, MAMORI_F_COUNT, q->sent);
        conn_send(c, end);
        mamori_msg_free(end);
        return 0;
}

/* Starts a filtered query (time range, user, media, type prefix), streamed in time order. */
static int handle_query(server *srv, conn *c, const mamori_msg *req)
{
        int64_t since = INT64_MIN, until = INT64_MAX;
        const char *user = NULL, *media = NULL, *type = NULL;
        uint64_t limit = 0;
        int r;
        if ((r = mamori_msg_get_i64(req, MAMORI_F_EV_SINCE, &since)) < 0 && r != -ENOENT)
                return -EBADMSG;
        if ((r = mamori_msg_get_i64(req, MAMORI_F_EV_UNTIL, &until)) < 0 && r != -ENOENT)
                return -EBADMSG;
        if ((r = mamori_msg_get_str(req, MAMORI_F_USER, 256, &user)) < 0 && r != -ENOENT)
                return -EBADMSG;
        if ((r = mamori_msg_get_str(req, MAMORI_F_EV_MEDIA, 256, &media)) < 0 && r != -ENOENT)
                return -EBADMSG;
        if ((r = mamori_msg_get_str(req, MAMORI_F_EV_TYPE, MAMORI_TYPE_MAX, &type)) < 0 && r != -ENOENT)
                return -EBADMSG;
        if ((r = mamori_msg_get_u64(req, MAMORI_F_LIMIT, &limit)) < 0 && r != -ENOENT)
                return -EBADMSG;
        if (type && !mamori_record_type_valid(type))
                return conn_reply(c, req->type, MAMORI_E_INVALID, "not a record type");

        char sql[512];
        snprintf(sql, sizeof sql,
                 "SELECT seq, time_us, body FROM records WHERE (time_us, seq) > (?1, ?2)"
                 " AND time_us >= ?4 AND time_us < ?5%s%s%s ORDER BY time_us, seq LIMIT ?3",
                 user ? " AND user = ?6" : "", media ? " AND media = ?7" : "",
                 type ? " AND (type = ?8 OR substr(type, 1, length(?8) + 1) = ?8 || '.')" : "");
        query *q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        if (sqlite3_prepare_v2(store_reader(server_store(srv)), sql, -1, &q->st, NULL) != SQLITE_OK) {
                query_free(q);
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "evidence could not be read");
        }
        sqlite3_bind_int64(q->st, 4, since);
        sqlite3_bind_int64(q->st, 5, until);
        if (user)
                sqlite3_bind_text(q->st, 6, user, -1, SQLITE_TRANSIENT);
        if (media)
                sqlite3_bind_text(q->st, 7, media, -1, SQLITE_TRANSIENT);
        if (type)
                sqlite3_bind_text(q->st, 8, type, -1, SQLITE_TRANSIENT);
        /* The cursor starts at the range's start, so the index range does too (starting
         * it at the smallest time would walk every entry before `since`). */
        q->after_time = since;
        q->after_seq = 0;
        q->limit = limit;
        q->type = req->type;
        conn_set_producer(c, query_produce, q, query_free);
        return 0;
}

typedef struct export {
        sqlite3 *db; /* its own connection, inside one read transaction: a consistent snapshot */
        conn *c;
        mamori_msg *m;
        uint64_t after, count;
        bool epochs_sent;
} export;

static void export_free(void *p)
{
        export *x = p;
        if (!x)
                return;
        mamori_msg_free(x->m);
        if (x->db)
                sqlite3_exec(x->db, "COMMIT", NULL, NULL, NULL);
        sqlite3_close_v2(x->db);
        free(x);
}

/* Makes room in the current reply message for n more bytes, sending a full one on. */
static int export_room(export *x, size_t n)
{
        if (x->m && mamori_msg_size(x->m) + n > MSG_SOFT) {
                int r = conn_send(x->c, x->m);
                mamori_msg_free(TAKE_PTR(x->m));
                if (r < 0)
                        return r;
        }
        if (!x->m)
                return mamori_msg_new(MAMORI_MSG_EVIDENCE_EXPORT, MAMORI_MORE, &x->m);
        return 0;
}

static int x_epoch(void *u, uint32_t e, uint64_t first, const uint8_t *pk, const uint8_t *cert)
{
        export *x = u;
        int r = export_room(x, 160);
        if (r < 0)
                return r;
        mamori_msg_put_u32(x->m, MAMORI_F_EV_EPOCH, e);
        mamori_msg_put_u64(x->m, MAMORI_F_EV_FIRST_SEQ, first);
        mamori_msg_put_bytes(x->m, MAMORI_F_EV_PUBKEY, pk, MAMORI_PK_LEN);
        if (cert)
                mamori_msg_put_bytes(x->m, MAMORI_F_EV_CERT, cert, MAMORI_SIG_LEN);
        return 0;
}

static int x_record(void *u, uint64_t seq, const uint8_t *body, size_t len, const uint8_t *hash)
{
        export *x = u;
        int r = export_room(x, len + 80);
        if (r < 0)
                return r;
        mamori_msg_put_u64(x->m, MAMORI_F_EV_SEQ, seq);
        mamori_msg_put_bytes(x->m, MAMORI_F_EV_BODY, body, len);
        mamori_msg_put_bytes(x->m, MAMORI_F_EV_HASH, hash, MAMORI_HASH_LEN);
        x->count++;
        return 0;
}

static int x_checkpoint(void *u, uint64_t seq, uint32_t e, const uint8_t *hash, const uint8_t *sig)
{
        export *x = u;
        int r = export_room(x, 160);
        if (r < 0)
                return r;
        mamori_msg_put_u64(x->m, MAMORI_F_EV_CHECKPOINT, seq);
        mamori_msg_put_u32(x->m, MAMORI_F_EV_EPOCH, e);
        mamori_msg_put_bytes(x->m, MAMORI_F_EV_HASH, hash, MAMORI_HASH_LEN);
        mamori_msg_put_bytes(x->m, MAMORI_F_EV_SIG, sig, MAMORI_SIG_LEN);
        return 0;
}

/* Streams the epochs, then records and checkpoints in order, a batch at a time. */
static int export_produce(server *srv, conn *c, void *state)
{
        export *x = state;
        mamori_evdb_walker w = {x_epoch, x_record, x_checkpoint, x};
        int r = 0;
        bool more = false;
        if (!x->epochs_sent) {
                r = mamori_evdb_walk_epochs(x->db, &w);
                x->epochs_sent = true;
                more = true;
        } else
                r = mamori_evdb_walk_items(x->db, x->after, 1024, &w, &x->after, &more);
        if (r >= 0 && x->m) {
                r = conn_send(c, x->m);
                mamori_msg_free(TAKE_PTR(x->m));
        }
        if (r < 0) {
                conn_reply(c, MAMORI_MSG_EVIDENCE_EXPORT, MAMORI_E_STORAGE, "evidence could not be read");
                return 0;
        }
        if (more)
                return 1;
        mamori_msg *end;
        if (mamori_msg_new(MAMORI_MSG_EVIDENCE_EXPORT, MAMORI_OK, &end) < 0)
                return -ENOMEM;
        mamori_msg_put_u64(end, MAMORI_F_COUNT, x->count);
        conn_send(c, end);
        mamori_msg_free(end);
        return 0;
}

static int handle_export(server *srv, conn *c, const mamori_msg *req)
{
        export *x = calloc(1, sizeof *x);
        if (!x)
                return -ENOMEM;
        x->c = c;
        if (mamori_evdb_open(store_path(server_store(srv)), true, &x->db) < 0 ||
            sqlite3_exec(x->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(x->db, "SELECT 1 FROM epochs LIMIT 1", NULL, NULL, NULL) != SQLITE_OK) {
                export_free(x);
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "evidence could not be read");
        }
        conn_set_producer(c, export_produce, x, export_free);
        return 0;
}

static int handle_anchor(server *srv, conn *c, const mamori_msg *req)
{
        mamori_msg *m;
        int r = mamori_msg_new(req->type, MAMORI_OK, &m);
        if (r < 0)
                return r;
        store *st = server_store(srv);
        mamori_msg_put_bytes(m, MAMORI_F_EV_PUBKEY, store_anchor(st), MAMORI_PK_LEN);
        mamori_msg_put_u32(m, MAMORI_F_EV_EPOCH, store_epoch(st));
        mamori_msg_put_u64(m, MAMORI_F_EV_SEQ, store_last_seq(st));
        r = conn_send(c, m);
        mamori_msg_free(m);
        return r;
}

/* Starts a new epoch now (R-CRY-2: key renewal, e.g. after a suspected compromise). */
static int handle_rotate(server *srv, conn *c, const mamori_msg *req)
{
        store *st = server_store(srv);
        int r = store_rotate(st);
        if (r < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "rotation failed");
        /* No record of its own: the certified epoch row is the rotation's evidence, and a
         * record dated now would keep every epoch from ever expiring (R-EV-11). */
        log_info("Epoch %" PRIu32 " started at the request of uid %u", store_epoch(st), conn_uid(c));
        mamori_msg *m;
        r = mamori_msg_new(req->type, MAMORI_OK, &m);
        if (r < 0)
                return r;
        mamori_msg_put_u32(m, MAMORI_F_EV_EPOCH, store_epoch(st));
        r = conn_send(c, m);
        mamori_msg_free(m);
        return r;
}

/* Runs the retention purge now (it also runs by itself; R-EV-11). */
static int handle_purge(server *srv, conn *c, const mamori_msg *req)
{
        int64_t n = store_purge(server_store(srv), mamori_now_us());
        if (n < 0)
                return conn_reply(c, req->type, MAMORI_E_STORAGE, "purge failed");
        mamori_msg *m;
        int r = mamori_msg_new(req->type, MAMORI_OK, &m);
        if (r < 0)
                return r;
        mamori_msg_put_u64(m, MAMORI_F_COUNT, (uint64_t)n);
        r = conn_send(c, m);
        mamori_msg_free(m);
        return r;
}

const handler evidence_handlers[] = {
        {MAMORI_MSG_EVIDENCE_SUBMIT, ROLE_ROOT | ROLE_AGENT, handle_submit},
        {MAMORI_MSG_EVIDENCE_QUERY, ROLE_MANAGER | ROLE_AUDITOR, handle_query},
        {MAMORI_MSG_EVIDENCE_EXPORT, ROLE_MANAGER | ROLE_AUDITOR, handle_export},
        {MAMORI_MSG_EVIDENCE_ANCHOR, ROLE_ROOT | ROLE_ADMIN | ROLE_MANAGER | ROLE_AUDITOR, handle_anchor},
        {MAMORI_MSG_EVIDENCE_ROTATE, ROLE_ROOT, handle_rotate},
        {MAMORI_MSG_EVIDENCE_PURGE, ROLE_ROOT, handle_purge},
        /* any user, about their own transfer: policyd fills in who (SO_PEERCRED) */
        {MAMORI_MSG_EVIDENCE_TRANSFER, ROLE_USER, handle_transfer},
        {0},
};
