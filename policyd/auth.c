/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Login state for pam_mamori (R-AUTH-1, R-AUTH-2, R-AUTH-3, R-AUTH-7, R-EV-5):
 * failure counts, locks and bans, previous logins and open sessions, in policyd's
 * database so that the user they are about can neither read another's nor reset
 * their own (pam_faillock keeps a user-owned tally: linux-pam issue #299).
 *
 * Every decision is one handler run of the single-threaded server: read, count
 * and decide happen inside the open batch before the next request is looked at,
 * and the reply leaves only after the batch commits. That is what makes N
 * concurrent attempts unable to pass a limit of deny (linux-pam PR #1016).
 *
 * An attempt is reserved at preauth: it counts toward the limit before the
 * password is checked, until it is settled as a failure (written, durable before
 * the answer) or given back by a success. Reservations live in policyd's memory
 * (pending_*), so that asking costs no write and no fsync; what they guard against
 * is concurrency inside one running policyd. An attempt in flight when policyd
 * stops is not counted, as when policyd is unreachable (auth.unreachable). A peer
 * that is not root (a screen locker) gives back only its own reservation; it can
 * never lower the count below the failures that happened, nor bring a locked
 * account back.
 *
 * Each state change is written with the evidence record that describes it inside
 * one savepoint of the batch (change_begin/change_end): both commit or neither.
 * The record is always the last write in the savepoint, so a rollback never takes
 * back a record the store has already chained.
 */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "auth-policy.h"
#include "auth.h"
#include "handlers.h"
#include "log.h"
#include "token.h"

#define USER_MAX 256
#define FIELD_MAX 256
#define SOURCES_MAX 32
#define US 1000000LL

typedef struct tally {
        int64_t failures, first_fail, locked_until;
        bool banned;
} tally;

/* An attempt reserved at preauth and not yet settled (memory only, see above), with
 * the login fields its failure would be recorded with. */
typedef struct pending {
        int64_t token, created;
        char *user, *service, *rhost, *tty;
} pending;

/* Bounded, so that attempts abandoned after preauth cannot grow policyd without end;
 * when it is full the oldest is settled as a failure (evict_oldest()). */
#define PENDING_MAX 4096

static pending *pend;
static size_t n_pend;

typedef struct auth_req {
        const char *user, *service, *rhost, *tty;
        uid_t uid; /* the subject's, or (uid_t)-1 for a name that does not resolve */
} auth_req;

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS auth_tally(user TEXT PRIMARY KEY, failures INTEGER NOT NULL,"
        " first_fail INTEGER NOT NULL, locked_until INTEGER NOT NULL, banned INTEGER NOT NULL,"
        " ban_reason TEXT);"
        "CREATE TABLE IF NOT EXISTS auth_source(user TEXT NOT NULL, source TEXT NOT NULL,"
        " failures INTEGER NOT NULL, last INTEGER NOT NULL, PRIMARY KEY(user, source));"
        /* Reservations are kept in memory now (see above); an older database's table goes. */
        "DROP TABLE IF EXISTS auth_attempt;"
        "CREATE TABLE IF NOT EXISTS auth_lastlog(user TEXT PRIMARY KEY, time INTEGER NOT NULL,"
        " host TEXT NOT NULL, service TEXT NOT NULL, tty TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS auth_session(id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL,"
        " service TEXT NOT NULL, tty TEXT NOT NULL, rhost TEXT NOT NULL, pid INTEGER NOT NULL,"
        " opened INTEGER NOT NULL);";

static int auth_init(server *srv)
{
        store *st = server_store(srv);
        int r = store_begin(st);
        if (r < 0)
                return r;
        sqlite3 *db = store_writer(st);
        if (sqlite3_exec(db, schema, NULL, NULL, NULL) != SQLITE_OK)
                return log_error_errno(EIO, "Cannot create the auth tables: %s", sqlite3_errmsg(db));
        r = totp_init(db);
        if (r < 0)
                return r;
        return store_commit(st);
}

static sqlite3 *db_of(server *srv)
{
        return store_writer(server_store(srv));
}

/* Runs one statement with up to 6 bound values (text when s, else integer). */
static int exec_bound(sqlite3 *db, const char *sql, const char *s1, const char *s2, int64_t i3,
                      int64_t i4, int64_t i5, int64_t i6)
{
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
                return log_error_errno(EIO, "SQL: %s", sqlite3_errmsg(db));
        sqlite3_bind_text(st, 1, s1, -1, SQLITE_STATIC);
        if (s2)
                sqlite3_bind_text(st, 2, s2, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, i3);
        sqlite3_bind_int64(st, 4, i4);
        sqlite3_bind_int64(st, 5, i5);
        sqlite3_bind_int64(st, 6, i6);
        int r = sqlite3_step(st);
        sqlite3_finalize(st);
        return r == SQLITE_DONE || r == SQLITE_ROW ? 0 : -EIO;
}

static int tally_get(sqlite3 *db, const char *user, tally *ret)
{
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT failures, first_fail, locked_until, banned FROM auth_tally WHERE user = ?1",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        *ret = (tally){0};
        if (r == SQLITE_ROW)
                *ret = (tally){sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                               sqlite3_column_int64(st, 2), sqlite3_column_int(st, 3) != 0};
        sqlite3_finalize(st);
        return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : -EIO;
}

static int tally_put(sqlite3 *db, const char *user, const tally *t)
{
        return exec_bound(db,
                          "INSERT INTO auth_tally(user, failures, first_fail, locked_until, banned)"
                          " VALUES (?1, ?3, ?4, ?5, ?6) ON CONFLICT(user) DO UPDATE SET failures = ?3,"
                          " first_fail = ?4, locked_until = ?5, banned = ?6",
                          user, NULL, t->failures, t->first_fail, t->locked_until, t->banned);
}

static void pending_free(pending *p)
{
        free(p->user);
        free(p->service);
        free(p->rhost);
        free(p->tty);
}

static void pending_remove(size_t i)
{
        pending_free(&pend[i]);
        pend[i] = pend[--n_pend];
}

/* Drops reservations older than the interval: an attempt abandoned that long ago
 * counts no more, as a failure that old would not. */
static void pending_prune(const mamori_config *cfg, int64_t now)
{
        for (size_t i = 0; i < n_pend;)
                if (pend[i].created + (int64_t)cfg->auth.fail_interval * US < now)
                        pending_remove(i);
                else
                        i++;
}

/* The reservations outstanding for user. */
static int64_t pending_count(const char *user)
{
        int64_t n = 0;
        for (size_t i = 0; i < n_pend; i++)
                n += strcmp(pend[i].user, user) == 0;
        return n;
}

/* Reserves an attempt for a's user. Returns 0 and its token, -ENOSPC when the table
 * is full, -ENOMEM. */
static int pending_add(const auth_req *a, int64_t now, int64_t *ret_token)
{
        if (n_pend == PENDING_MAX)
                return -ENOSPC;
        if (!pend && !(pend = calloc(PENDING_MAX, sizeof *pend)))
                return -ENOMEM;
        pending p = {.created = now, .user = strdup(a->user), .service = strdup(a->service),
                     .rhost = strdup(a->rhost), .tty = strdup(a->tty)};
        if (!p.user || !p.service || !p.rhost || !p.tty) {
                pending_free(&p);
                return -ENOMEM;
        }
        randombytes_buf(&p.token, sizeof p.token);
        p.token &= INT64_MAX;
        pend[n_pend++] = p;
        *ret_token = p.token;
        return 0;
}

/* Takes the request's reservation off the table. Returns true when it was user's
 * and outstanding. */
static bool pending_take(const mamori_msg *req, const char *user)
{
        uint64_t token;
        if (mamori_msg_get_u64(req, MAMORI_F_AUTH_SESSION, &token) < 0)
                return false;
        for (size_t i = 0; i < n_pend; i++)
                if (pend[i].token == (int64_t)token && strcmp(pend[i].user, user) == 0) {
                        pending_remove(i);
                        return true;
                }
        return false;
}

/* Forgets user's reservations (an administrator's unlock). */
static void pending_drop_user(const char *user)
{
        for (size_t i = 0; i < n_pend;)
                if (strcmp(pend[i].user, user) == 0)
                        pending_remove(i);
                else
                        i++;
}

/* Opens the batch and a savepoint in it: a state change and the evidence record
 * that describes it (written last) commit together or not at all. Returns 0 or -EIO. */
static int change_begin(server *srv)
{
        if (store_begin(server_store(srv)) < 0)
                return -EIO;
        return sqlite3_exec(db_of(srv), "SAVEPOINT auth", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

/* Ends the savepoint: kept when r >= 0, undone when r < 0. Returns r, or -EIO when
 * the change could not be kept. */
static int change_end(server *srv, int r)
{
        sqlite3 *db = db_of(srv);
        if (r < 0)
                (void)sqlite3_exec(db, "ROLLBACK TO auth", NULL, NULL, NULL);
        if (sqlite3_exec(db, "RELEASE auth", NULL, NULL, NULL) != SQLITE_OK)
                return log_error_errno(EIO, "Cannot release the auth savepoint: %s", sqlite3_errmsg(db));
        return r;
}

/* Forgets failures older than the interval and locks that have run out. */
static void tally_age(const mamori_config *cfg, tally *t, int64_t now)
{
        if (t->locked_until && t->locked_until <= now) {
                t->locked_until = 0;
                t->failures = 0;
        }
        if (!t->locked_until && t->failures && t->first_fail + (int64_t)cfg->auth.fail_interval * US < now)
                t->failures = 0;
}

static void fmt_i64(char buf[static 24], int64_t v)
{
        snprintf(buf, 24, "%" PRId64, v);
}

/* Formats µs since the epoch to the second, UTC (R-EV-5: date-time to the second). */
static void fmt_time(char buf[static 32], int64_t us)
{
        mamori_format_time(us - us % US, buf);
        char *dot = strchr(buf, '.');
        if (dot)
                strcpy(dot, "Z");
}

/* Reads user, service, rhost, tty; checks that a peer that is not root asks about
 * itself only. Returns 0, 1 when the request was refused (reply sent), or -EBADMSG. */
static int read_request(server *srv, conn *c, const mamori_msg *req, auth_req *ret)
{
        auth_req a = {.service = "", .rhost = "", .tty = ""};
        if (mamori_msg_get_str(req, MAMORI_F_USER, USER_MAX, &a.user) < 0 || !*a.user)
                return -EBADMSG;
        int r;
        if ((r = mamori_msg_get_str(req, MAMORI_F_AUTH_SERVICE, FIELD_MAX, &a.service)) < 0 && r != -ENOENT)
                return -EBADMSG;
        if ((r = mamori_msg_get_str(req, MAMORI_F_AUTH_RHOST, FIELD_MAX, &a.rhost)) < 0 && r != -ENOENT)
                return -EBADMSG;
        if ((r = mamori_msg_get_str(req, MAMORI_F_AUTH_TTY, FIELD_MAX, &a.tty)) < 0 && r != -ENOENT)
                return -EBADMSG;
        struct passwd *pw = getpwnam(a.user);
        a.uid = pw ? pw->pw_uid : (uid_t)-1;
        bool self = pw && pw->pw_uid == conn_uid(c);
        /* Administrators may read and manage others' state, never authenticate as them. */
        bool manage = req->type >= MAMORI_MSG_USER_STATUS && req->type <= MAMORI_MSG_USER_UNBAN;
        bool privileged = conn_roles(c) & (manage ? ROLE_ROOT | ROLE_ADMIN : ROLE_ROOT);
        if (!self && !privileged) {
                char peer[16];
                snprintf(peer, sizeof peer, "%u", conn_uid(c));
                if (server_evidence(srv, "access.denied", conn_uid(c), "request",
                                    mamori_msg_type_to_string(req->type), "peer_uid", peer, "reason",
                                    "another user's account", NULL) >= 0)
                        conn_hold_for_commit(c);
                (void)conn_reply(c, req->type, MAMORI_E_DENIED, "you may ask about your own account only");
                return 1;
        }
        *ret = a;
        return 0;
}

/* Appends an auth.* record with the request's login fields. */
static int auth_evidence(server *srv, const char *type, const auth_req *a, const char *k1, const char *v1,
                         const char *k2, const char *v2)
{
        return server_evidence(srv, type, a->uid, "user", a->user, "service", a->service, "rhost", a->rhost,
                               "tty", a->tty, k1 ? k1 : "detail", v1 ? v1 : "", k2 ? k2 : "note", v2 ? v2 : "",
                               NULL);
}

/* Replies "locked" with the lock's end, or banned. */
static int send_locked(conn *c, uint16_t type, const tally *t)
{
        mamori_msg *m;
        int r = mamori_msg_new(type, MAMORI_E_LOCKED, &m);
        if (r < 0)
                return r;
        if (t->banned)
                mamori_msg_put_u8(m, MAMORI_F_AUTH_BANNED, 1);
        else
                mamori_msg_put_i64(m, MAMORI_F_AUTH_UNTIL, t->locked_until);
        r = conn_send(c, m);
        mamori_msg_free(m);
        conn_hold_for_commit(c);
        return r;
}

/* Records the refusal of a banned or locked account, then replies "locked". */
static int reply_locked(server *srv, conn *c, uint16_t type, const auth_req *a, const tally *t)
{
        char until[32];
        fmt_time(until, t->locked_until);
        (void)auth_evidence(srv, "auth.refused", a, "reason", t->banned ? "banned" : "locked", "until",
                            t->banned ? "" : until);
        return send_locked(c, type, t);
}

/* R-AUTH-4: a user the policy ties to a token, with none of theirs plugged in, is
 * refused before any attempt is reserved (not a failure: nothing was guessed). The
 * refusal is recorded; the reply says why, so the user can be told. */
static int refuse_without_token(server *srv, conn *c, uint16_t type, const auth_req *a)
{
        (void)auth_evidence(srv, "auth.refused", a, "reason", "token-absent", "until", "");
        mamori_msg *m;
        int r = mamori_msg_new(type, MAMORI_E_DENIED, &m);
        if (r < 0)
                return r;
        mamori_msg_put_u8(m, MAMORI_F_AUTH_TOKEN_ABSENT, 1);
        mamori_msg_put_str(m, MAMORI_F_TEXT, "the user's authentication token is not plugged in");
        r = conn_send(c, m);
        mamori_msg_free(m);
        conn_hold_for_commit(c);
        return r;
}

static bool token_missing(const mamori_config *cfg, const char *user)
{
        return mamori_auth_needs_token(cfg, user) && !token_present_for(user);
}

/* Locks the account if its failures and outstanding reservations reached the
 * profile's limit: the lock and its auth.lock record in one savepoint. Returns 1
 * when it locked, 0 when not due, -EIO (then nothing of it stays). */
static int maybe_lock(server *srv, const auth_req *a, tally *t, int64_t now)
{
        uint32_t deny, unlock;
        mamori_auth_profile(server_config(srv), a->user, &deny, &unlock);
        int64_t n = t->failures + pending_count(a->user);
        if (t->banned || t->locked_until || n < deny)
                return 0;
        tally locked = *t;
        locked.locked_until = now + (int64_t)unlock * US;
        char until[32], ns[24];
        fmt_time(until, locked.locked_until);
        fmt_i64(ns, n);
        int r = change_begin(srv);
        if (r >= 0)
                r = tally_put(db_of(srv), a->user, &locked);
        if (r >= 0)
                r = auth_evidence(srv, "auth.lock", a, "failures", ns, "until", until);
        r = change_end(srv, r);
        if (r < 0)
                return -EIO;
        *t = locked;
        return 1;
}

/* The state could not be read or written: the module treats this like an
 * unreachable policyd (pam_mamori(8), auth.unreachable). */
static int reply_storage(conn *c, uint16_t type)
{
        log_warning("Login state could not be read or written.");
        return conn_reply(c, type, MAMORI_E_STORAGE, "login state could not be stored");
}

/* A reply that wrote nothing waits for the batch only when the batch holds others'
 * writes: what it read may be among them, and must not leave before it is durable.
 * Otherwise it leaves now, not after the fsync of writes it does not depend on. */
static void hold_if_batch_open(server *srv, conn *c)
{
        if (store_dirty(server_store(srv)))
                conn_hold_for_commit(c);
        else
                conn_send_now(srv, c);
}

/* Counts one source's failure, for `mediactl user status` (failures per source). */
static int count_source(sqlite3 *db, const auth_req *a, int64_t now)
{
        const char *src = *a->rhost ? a->rhost : *a->tty ? a->tty : "local";
        return exec_bound(db,
                          "INSERT INTO auth_source(user, source, failures, last) VALUES (?1, ?2, 1, ?3)"
                          " ON CONFLICT(user, source) DO UPDATE SET failures = failures + 1, last = ?3",
                          a->user, src, now, 0, 0, 0);
}

/* Counts one failure of user now, with its per-source count and auth.fail record,
 * in one savepoint. Returns 0 or -EIO (then nothing of it stays). */
static int count_failure(server *srv, const auth_req *a, tally *t, int64_t now, const char *what)
{
        tally n = *t;
        if (n.failures++ == 0)
                n.first_fail = now;
        char ns[24];
        fmt_i64(ns, n.failures);
        int r = change_begin(srv);
        if (r >= 0)
                r = tally_put(db_of(srv), a->user, &n);
        if (r >= 0)
                r = count_source(db_of(srv), a, now);
        if (r >= 0)
                r = auth_evidence(srv, "auth.fail", a, "failures", ns, "factor", what);
        r = change_end(srv, r);
        if (r < 0)
                return -EIO;
        *t = n;
        return 0;
}

/* The reservation table is full (attempts abandoned after preauth, in bulk): the
 * oldest reservation is settled as the failure it stands for (auth.fail, factor
 * "abandoned"), so that abandoned attempts count for their own user as before and a
 * flood of them cannot make anyone else's attempt count. Returns 0 or -EIO. */
static int evict_oldest(server *srv, int64_t now)
{
        size_t o = 0;
        for (size_t i = 1; i < n_pend; i++)
                if (pend[i].created < pend[o].created)
                        o = i;
        const pending *p = &pend[o];
        struct passwd *pw = getpwnam(p->user);
        auth_req a = {p->user, p->service, p->rhost, p->tty, pw ? pw->pw_uid : (uid_t)-1};
        log_warning("Too many outstanding login attempts: the oldest, for \"%s\", counts as a failure.", p->user);
        tally t;
        if (tally_get(db_of(srv), a.user, &t) < 0)
                return -EIO;
        tally_age(server_config(srv), &t, now);
        if (count_failure(srv, &a, &t, now, "abandoned") < 0)
                return -EIO;
        /* The failure is counted: the reservation goes before the lock check, which
         * would otherwise count it twice. */
        char user[USER_MAX + 1];
        snprintf(user, sizeof user, "%s", p->user);
        pending_remove(o);
        a.user = user;
        a.service = a.rhost = a.tty = "";
        return maybe_lock(srv, &a, &t, now) < 0 ? -EIO : 0;
}

/* Reserves one attempt: refuses a banned or locked account, locks one whose failures
 * and reservations reached the limit, else reserves the attempt (in memory: nothing
 * is written) until a failure settles it or a success gives it back. Replies with a
 * token naming the reservation. */
static int handle_preauth(server *srv, conn *c, const mamori_msg *req)
{
        auth_req a;
        int r = read_request(srv, c, req, &a);
        if (r != 0)
                return r < 0 ? r : 0;
        const mamori_config *cfg = server_config(srv);
        int64_t now = mamori_now_us();
        tally t;
        if (tally_get(db_of(srv), a.user, &t) < 0)
                return reply_storage(c, req->type);
        tally_age(cfg, &t, now);
        pending_prune(cfg, now);
        if (maybe_lock(srv, &a, &t, now) < 0)
                return reply_storage(c, req->type);
        if (t.banned || t.locked_until)
                return reply_locked(srv, c, req->type, &a, &t);
        if (token_missing(cfg, a.user))
                return refuse_without_token(srv, c, req->type, &a);
        int64_t token;
        r = pending_add(&a, now, &token);
        if (r == -ENOSPC && (r = evict_oldest(srv, now)) >= 0) {
                if (tally_get(db_of(srv), a.user, &t) < 0) /* the oldest may have been this user's */
                        return reply_storage(c, req->type);
                tally_age(cfg, &t, now);
                if (t.banned || t.locked_until)
                        return reply_locked(srv, c, req->type, &a, &t);
                r = pending_add(&a, now, &token);
        }
        if (r < 0)
                return reply_storage(c, req->type);
        mamori_msg *m;
        if ((r = mamori_msg_new(req->type, MAMORI_OK, &m)) < 0)
                return r;
        mamori_msg_put_u64(m, MAMORI_F_AUTH_SESSION, (uint64_t)token);
        mamori_msg_put_u64(m, MAMORI_F_COUNT, (uint64_t)(t.failures + pending_count(a.user)));
        /* Said now, so that the module can ask for the code right after the password and
         * send it with the success: one request less. authsucc checks it all again. */
        if (mamori_auth_needs_mfa(cfg, a.user, a.service)) {
                int e = totp_enrolled(db_of(srv), a.user);
                mamori_msg_put_u8(m, MAMORI_F_AUTH_NEED_TOTP, 1);
                mamori_msg_put_u8(m, MAMORI_F_AUTH_TOTP, e > 0); /* unknown (e < 0): asked again at authsucc */
        }
        r = conn_send(c, m);
        mamori_msg_free(m);
        hold_if_batch_open(srv, c);
        return r;
}

/* Settles a failed attempt (wrong password, or wrong/replayed TOTP code): its
 * reservation becomes a counted failure, durable before the answer; locks at the
 * limit. Returns 1 when the account is (now) locked, 0, or -EIO. */
static int settle_failure(server *srv, const mamori_msg *req, const auth_req *a, tally *t, const char *what)
{
        int64_t now = mamori_now_us();
        if (tally_get(db_of(srv), a->user, t) < 0)
                return -EIO;
        tally_age(server_config(srv), t, now);
        (void)pending_take(req, a->user); /* counted below whether or not it was reserved */
        if (count_failure(srv, a, t, now, what) < 0 || maybe_lock(srv, a, t, now) < 0)
                return -EIO;
        return t->locked_until || t->banned;
}

static int handle_fail(server *srv, conn *c, const mamori_msg *req)
{
        auth_req a;
        int r = read_request(srv, c, req, &a);
        if (r != 0)
                return r < 0 ? r : 0;
        tally t;
        if ((r = settle_failure(srv, req, &a, &t, "password")) < 0)
                return reply_storage(c, req->type);
        if (r > 0)
                return send_locked(c, req->type, &t);
        r = conn_reply(c, req->type, MAMORI_OK, NULL);
        conn_hold_for_commit(c); /* the failure is durable before the answer */
        return r;
}

/* Gives back a successful attempt's reservation: root (login, sshd) checked the
 * password itself and clears the count (a write only when there was one); anyone
 * else gives back its own reservation only. Inside the caller's savepoint. */
static int settle_success(conn *c, sqlite3 *db, const mamori_msg *req, const auth_req *a, tally *t)
{
        (void)pending_take(req, a->user);
        if (!(conn_roles(c) & ROLE_ROOT) || t->failures == 0)
                return 0;
        t->failures = 0;
        return tally_put(db, a->user, t);
}

/* Replies whether the second factor is needed (and enrolled), for a success without
 * a code. Writes nothing. */
static int reply_need_totp(server *srv, conn *c, const mamori_msg *req, const auth_req *a)
{
        int e = totp_enrolled(db_of(srv), a->user);
        if (e < 0)
                return reply_storage(c, req->type);
        mamori_msg *m;
        int r = mamori_msg_new(req->type, MAMORI_OK, &m);
        if (r < 0)
                return r;
        mamori_msg_put_u8(m, MAMORI_F_AUTH_NEED_TOTP, 1);
        mamori_msg_put_u8(m, MAMORI_F_AUTH_TOTP, e > 0);
        r = conn_send(c, m);
        mamori_msg_free(m);
        hold_if_batch_open(srv, c);
        return r;
}

/* A refused TOTP code: its auth.totp record, then the attempt settles as a failure. */
static int totp_refused(server *srv, conn *c, const mamori_msg *req, const auth_req *a, tally *t,
                        const char *result)
{
        if (auth_evidence(srv, "auth.totp", a, "result", result, NULL, NULL) < 0)
                return reply_storage(c, req->type);
        int k = settle_failure(srv, req, a, t, "totp");
        if (k < 0)
                return reply_storage(c, req->type);
        if (k > 0)
                return send_locked(c, req->type, t);
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_E_INVALID, result);
}

/* The password was right: refuses a locked account, asks for the second factor
 * where the policy wants one, checks the code when given. A success is one
 * savepoint: the code's used mark, the cleared count and the auth.totp record
 * commit together, in one batch (one fsync), before the answer. */
static int handle_success(server *srv, conn *c, const mamori_msg *req)
{
        auth_req a;
        int r = read_request(srv, c, req, &a);
        if (r != 0)
                return r < 0 ? r : 0;
        const char *code = NULL;
        if ((r = mamori_msg_get_str(req, MAMORI_F_AUTH_CODE, 16, &code)) < 0 && r != -ENOENT)
                return -EBADMSG;
        sqlite3 *db = db_of(srv);
        tally t;
        if (tally_get(db, a.user, &t) < 0)
                return reply_storage(c, req->type);
        tally_age(server_config(srv), &t, mamori_now_us());
        if (t.banned || t.locked_until)
                return reply_locked(srv, c, req->type, &a, &t);
        bool mfa = mamori_auth_needs_mfa(server_config(srv), a.user, a.service);
        if (mfa && !code)
                return reply_need_totp(srv, c, req, &a);
        if ((r = change_begin(srv)) < 0)
                return reply_storage(c, req->type);
        if (mfa) {
                r = totp_verify(srv, db, a.user, code);
                if (r == -EACCES || r == -EALREADY || r == -ENOENT) {
                        const char *result = r == -EALREADY ? "replayed" : r == -ENOENT ? "not-enrolled" : "wrong";
                        if (change_end(srv, 0) < 0) /* nothing was written in it */
                                return reply_storage(c, req->type);
                        return totp_refused(srv, c, req, &a, &t, result);
                }
        }
        if (r >= 0)
                r = settle_success(c, db, req, &a, &t);
        if (r >= 0 && mfa)
                r = auth_evidence(srv, "auth.totp", &a, "result", "accepted", NULL, NULL);
        if (change_end(srv, r) < 0)
                return reply_storage(c, req->type);
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

/* Account face: banned or locked refuses even when authentication was skipped (ssh
 * keys); otherwise the previous login (R-AUTH-7). */
static int handle_account(server *srv, conn *c, const mamori_msg *req)
{
        auth_req a;
        int r = read_request(srv, c, req, &a);
        if (r != 0)
                return r < 0 ? r : 0;
        sqlite3 *db = db_of(srv);
        tally t;
        if (tally_get(db, a.user, &t) < 0)
                return reply_storage(c, req->type);
        tally_age(server_config(srv), &t, mamori_now_us());
        if (t.banned || t.locked_until)
                return reply_locked(srv, c, req->type, &a, &t);
        if (token_missing(server_config(srv), a.user)) /* also for logins without a password (ssh keys) */
                return refuse_without_token(srv, c, req->type, &a);
        mamori_msg *m;
        if ((r = mamori_msg_new(req->type, MAMORI_OK, &m)) < 0)
                return r;
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT time, host, service, tty FROM auth_lastlog WHERE user = ?1", -1, &st,
                               NULL) == SQLITE_OK) {
                sqlite3_bind_text(st, 1, a.user, -1, SQLITE_STATIC);
                if (sqlite3_step(st) == SQLITE_ROW) {
                        mamori_msg_put_i64(m, MAMORI_F_AUTH_LAST_TIME, sqlite3_column_int64(st, 0));
                        mamori_msg_put_str(m, MAMORI_F_AUTH_LAST_HOST, (const char *)sqlite3_column_text(st, 1));
                        mamori_msg_put_str(m, MAMORI_F_AUTH_LAST_SERVICE, (const char *)sqlite3_column_text(st, 2));
                        mamori_msg_put_str(m, MAMORI_F_AUTH_LAST_TTY, (const char *)sqlite3_column_text(st, 3));
                }
                sqlite3_finalize(st);
        }
        r = conn_send(c, m);
        mamori_msg_free(m);
        hold_if_batch_open(srv, c);
        return r;
}

/* Writes the previous-login mark and registers the session. Returns 0 and the
 * session's id, or -EIO. */
static int session_write(sqlite3 *db, const auth_req *a, uint32_t pid, int64_t now, int64_t *ret_id)
{
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO auth_lastlog(user, time, host, service, tty)"
                                   " VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, a->user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now);
        sqlite3_bind_text(st, 3, a->rhost, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, a->service, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, a->tty, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        sqlite3_finalize(st);
        if (r != SQLITE_DONE || sqlite3_prepare_v2(db, "INSERT INTO auth_session(user, service, tty, rhost, pid,"
                                                       " opened) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                                   -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, a->user, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, a->service, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, a->tty, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, a->rhost, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, pid);
        sqlite3_bind_int64(st, 6, now);
        r = sqlite3_step(st);
        sqlite3_finalize(st);
        if (r != SQLITE_DONE)
                return -EIO;
        *ret_id = sqlite3_last_insert_rowid(db);
        return 0;
}

/* Session opened (root peers: login, sshd, the display manager): login evidence
 * with every R-EV-5 field, the previous-login mark, and the session registered for
 * the idle watch (R-IDLE-*). */
static int handle_session_open(server *srv, conn *c, const mamori_msg *req)
{
        auth_req a;
        int r = read_request(srv, c, req, &a);
        if (r != 0)
                return r < 0 ? r : 0;
        uint32_t pid = 0;
        (void)mamori_msg_get_u32(req, MAMORI_F_AUTH_PID, &pid);
        int64_t now = mamori_now_us(), id = 0;
        char t[32], ids[24];
        if ((r = change_begin(srv)) >= 0)
                r = session_write(db_of(srv), &a, pid, now, &id);
        if (r >= 0) {
                fmt_time(t, now);
                fmt_i64(ids, id);
                r = auth_evidence(srv, "session.open", &a, "time", t, "session", ids);
        }
        if (change_end(srv, r) < 0)
                return reply_storage(c, req->type);
        mamori_msg *m;
        if ((r = mamori_msg_new(req->type, MAMORI_OK, &m)) < 0)
                return r;
        mamori_msg_put_u64(m, MAMORI_F_AUTH_SESSION, (uint64_t)id);
        r = conn_send(c, m);
        mamori_msg_free(m);
        conn_hold_for_commit(c);
        return r;
}

/* Session closed: logout evidence; the session leaves the idle watch. */
static int handle_session_close(server *srv, conn *c, const mamori_msg *req)
{
        auth_req a;
        int r = read_request(srv, c, req, &a);
        if (r != 0)
                return r < 0 ? r : 0;
        uint64_t id = 0;
        (void)mamori_msg_get_u64(req, MAMORI_F_AUTH_SESSION, &id);
        sqlite3 *db = db_of(srv);
        int64_t now = mamori_now_us(), opened = 0;
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT id, opened FROM auth_session WHERE user = ?1 AND (id = ?2 OR"
                                   " (?2 = 0 AND tty = ?3 AND service = ?4)) ORDER BY id DESC LIMIT 1",
                               -1, &st, NULL) != SQLITE_OK)
                return reply_storage(c, req->type);
        sqlite3_bind_text(st, 1, a.user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (int64_t)id);
        sqlite3_bind_text(st, 3, a.tty, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, a.service, -1, SQLITE_STATIC);
        bool found = sqlite3_step(st) == SQLITE_ROW;
        if (found) {
                id = (uint64_t)sqlite3_column_int64(st, 0);
                opened = sqlite3_column_int64(st, 1);
        }
        sqlite3_finalize(st);
        char t[32], dur[24];
        fmt_time(t, now);
        fmt_i64(dur, found ? (now - opened) / US : -1);
        r = change_begin(srv);
        if (r >= 0 && found)
                r = exec_bound(db, "DELETE FROM auth_session WHERE id = ?3", "", NULL, (int64_t)id, 0, 0, 0);
        if (r >= 0)
                r = auth_evidence(srv, "session.close", &a, "time", t, "duration_s", dur);
        if (change_end(srv, r) < 0)
                return reply_storage(c, req->type);
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

/* A password was changed (pam_mamori's password face, after pam_unix). */
static int handle_passwd(server *srv, conn *c, const mamori_msg *req)
{
        auth_req a;
        int r = read_request(srv, c, req, &a);
        if (r != 0)
                return r < 0 ? r : 0;
        if (auth_evidence(srv, "auth.passwd", &a, NULL, NULL, NULL, NULL) < 0)
                return reply_storage(c, req->type);
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

static void put_be64(uint8_t *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

/* Adds the user's failed attempts per source (the most recent SOURCES_MAX), all
 * time, to m. Returns 0 or -EIO. */
static int put_sources(sqlite3 *db, const char *user, mamori_msg *m)
{
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT source, failures, last FROM auth_source WHERE user = ?1"
                                   " ORDER BY last DESC LIMIT ?2", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, SOURCES_MAX);
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                uint8_t buf[16 + FIELD_MAX];
                const char *src = (const char *)sqlite3_column_text(st, 0);
                size_t n = src ? strnlen(src, FIELD_MAX) : 0;
                put_be64(buf, (uint64_t)sqlite3_column_int64(st, 1));
                put_be64(buf + 8, (uint64_t)sqlite3_column_int64(st, 2));
                memcpy(buf + 16, src ? src : "", n);
                mamori_msg_put_bytes(m, MAMORI_F_AUTH_SOURCE, buf, 16 + n);
        }
        sqlite3_finalize(st);
        return r == SQLITE_DONE ? 0 : -EIO;
}

/* mediactl user status: the user's own, or anyone's for administrators. */
static int handle_status(server *srv, conn *c, const mamori_msg *req)
{
        auth_req a;
        int r = read_request(srv, c, req, &a);
        if (r != 0)
                return r < 0 ? r : 0;
        sqlite3 *db = db_of(srv);
        tally t;
        int e = totp_enrolled(db, a.user);
        if (tally_get(db, a.user, &t) < 0 || e < 0)
                return reply_storage(c, req->type);
        tally_age(server_config(srv), &t, mamori_now_us());
        uint32_t deny, unlock;
        mamori_auth_profile(server_config(srv), a.user, &deny, &unlock);
        mamori_msg *m;
        if ((r = mamori_msg_new(req->type, MAMORI_OK, &m)) < 0)
                return r;
        mamori_msg_put_u64(m, MAMORI_F_COUNT, (uint64_t)t.failures);
        mamori_msg_put_u64(m, MAMORI_F_LIMIT, deny);
        mamori_msg_put_i64(m, MAMORI_F_AUTH_UNTIL, t.locked_until);
        mamori_msg_put_u8(m, MAMORI_F_AUTH_BANNED, t.banned);
        mamori_msg_put_u8(m, MAMORI_F_AUTH_TOTP, e > 0);
        if (put_sources(db, a.user, m) < 0) {
                mamori_msg_free(m);
                return reply_storage(c, req->type);
        }
        r = conn_send(c, m);
        mamori_msg_free(m);
        hold_if_batch_open(srv, c);
        return r;
}

/* unlock, ban, unban (administrators, R-AUTH-1, R-AUTH-2): each is evidence. */
static int handle_admin(server *srv, conn *c, const mamori_msg *req)
{
        auth_req a;
        int r = read_request(srv, c, req, &a);
        if (r != 0)
                return r < 0 ? r : 0;
        const char *reason = "";
        if ((r = mamori_msg_get_str(req, MAMORI_F_AUTH_REASON, FIELD_MAX, &reason)) < 0 && r != -ENOENT)
                return -EBADMSG;
        sqlite3 *db = db_of(srv);
        tally t;
        if (tally_get(db, a.user, &t) < 0)
                return reply_storage(c, req->type);
        const char *type = "auth.unlock";
        if (req->type == MAMORI_MSG_USER_UNLOCK)
                t.failures = t.locked_until = 0;
        else {
                t.banned = req->type == MAMORI_MSG_USER_BAN;
                type = t.banned ? "auth.ban" : "auth.unban";
        }
        char by[16];
        snprintf(by, sizeof by, "%u", conn_uid(c));
        r = change_begin(srv);
        if (r >= 0)
                r = tally_put(db, a.user, &t);
        if (r >= 0)
                r = exec_bound(db, "UPDATE auth_tally SET ban_reason = ?2 WHERE user = ?1", a.user, reason, 0, 0, 0, 0);
        if (r >= 0)
                r = server_evidence(srv, type, a.uid, "user", a.user, "by_uid", by, "reason", reason, NULL);
        if (change_end(srv, r) < 0)
                return reply_storage(c, req->type); /* nothing of it stays: the account is as it was */
        if (req->type == MAMORI_MSG_USER_UNLOCK)
                pending_drop_user(a.user); /* attempts in flight now settle as counted failures */
        conn_hold_for_commit(c);
        return conn_reply(c, req->type, MAMORI_OK, NULL);
}

const handler auth_handlers[] = {
        /* Any user for their own account; root (login, sshd) for anyone. */
        {MAMORI_MSG_AUTH_PREAUTH, ROLE_USER, handle_preauth},
        {MAMORI_MSG_AUTH_FAIL, ROLE_USER, handle_fail},
        {MAMORI_MSG_AUTH_SUCCESS, ROLE_USER, handle_success},
        {MAMORI_MSG_AUTH_ACCOUNT, ROLE_USER, handle_account},
        {MAMORI_MSG_USER_STATUS, ROLE_USER, handle_status},
        /* Login evidence comes from root peers only (R-EV-5). */
        {MAMORI_MSG_SESSION_OPEN, ROLE_ROOT, handle_session_open},
        {MAMORI_MSG_SESSION_CLOSE, ROLE_ROOT, handle_session_close},
        {MAMORI_MSG_AUTH_PASSWD, ROLE_ROOT, handle_passwd},
        /* Operations manager (REQUIREMENTS.md "Roles"). */
        {MAMORI_MSG_USER_UNLOCK, ROLE_ROOT | ROLE_ADMIN, handle_admin},
        {MAMORI_MSG_USER_BAN, ROLE_ROOT | ROLE_ADMIN, handle_admin},
        {MAMORI_MSG_USER_UNBAN, ROLE_ROOT | ROLE_ADMIN, handle_admin},
        {MAMORI_MSG_TOTP_ENROLL, ROLE_ROOT | ROLE_ADMIN, handle_totp_enroll},
        {0},
};

int auth_module_init(server *srv)
{
        return auth_init(srv);
}
