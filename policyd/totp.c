/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * TOTP (RFC 6238) second factor (R-AUTH-3, R-AUTH-6): secrets are made and kept by
 * policyd alone, in its own database (mode 0600, user mamori). No request returns a
 * secret, except the enrollment reply to the administrator who enrolled it, once.
 * Codes are checked with liboath; each accepted time step is remembered so that a
 * code is accepted once only.
 */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <liboath/oath.h>
#include <sodium.h>

#include "auth.h"
#include "handlers.h"
#include "log.h"

#define TOTP_STEP 30
#define SECRET_MAX 64

int totp_init(sqlite3 *db)
{
        if (oath_init() != OATH_OK)
                return log_error_errno(EIO, "liboath failed to initialise");
        if (sqlite3_exec(db,
                         "CREATE TABLE IF NOT EXISTS auth_totp(user TEXT PRIMARY KEY, secret BLOB NOT NULL,"
                         " algorithm TEXT NOT NULL, digits INTEGER NOT NULL, last_step INTEGER NOT NULL,"
                         " enrolled INTEGER NOT NULL)",
                         NULL, NULL, NULL) != SQLITE_OK)
                return log_error_errno(EIO, "Cannot create the TOTP table: %s", sqlite3_errmsg(db));
        return 0;
}

static int algorithm_flags(const char *a)
{
        return strcmp(a, "sha256") == 0 ? OATH_TOTP_HMAC_SHA256
             : strcmp(a, "sha512") == 0 ? OATH_TOTP_HMAC_SHA512 : 0;
}

static size_t algorithm_secret_len(const char *a)
{
        return strcmp(a, "sha256") == 0 ? 32 : strcmp(a, "sha512") == 0 ? 64 : 20;
}

int totp_enrolled(sqlite3 *db, const char *user)
{
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT 1 FROM auth_totp WHERE user = ?1", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        sqlite3_finalize(st);
        return r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : -EIO;
}

/* Runs liboath over the secret copied into locked memory; wipes it. Returns the
 * matched time step (>= 0), -EACCES, -EIO or -ENOMEM. */
static int64_t check_code(const void *blob, size_t len, const char *alg, unsigned window, const char *code)
{
        char *secret = sodium_malloc(SECRET_MAX);
        if (!secret)
                return -ENOMEM;
        memcpy(secret, blob, len);
        uint64_t counter = 0;
        int pos = 0;
        int r = oath_totp_validate4(secret, len, time(NULL), TOTP_STEP, 0, window, &pos, &counter,
                                    algorithm_flags(alg), code);
        sodium_free(secret); /* wipes */
        if (r < 0)
                return r == OATH_INVALID_OTP ? -EACCES : -EIO;
        return (int64_t)counter;
}

int totp_verify(server *srv, sqlite3 *db, const char *user, const char *code)
{
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT secret, algorithm, digits, last_step FROM auth_totp WHERE user = ?1",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r != SQLITE_ROW) {
                sqlite3_finalize(st);
                return r == SQLITE_DONE ? -ENOENT : -EIO;
        }
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        char alg[8];
        snprintf(alg, sizeof alg, "%s", (const char *)sqlite3_column_text(st, 1));
        size_t digits = (size_t)sqlite3_column_int(st, 2);
        int64_t last = sqlite3_column_int64(st, 3);
        int64_t step = -EACCES;
        size_t n = strlen(code);
        if (len > 0 && len <= SECRET_MAX && n == digits && strspn(code, "0123456789") == n)
                step = check_code(sqlite3_column_blob(st, 0), len, alg,
                                  server_config(srv)->auth.totp_window, code);
        sqlite3_finalize(st);
        if (step < 0)
                return (int)step;
        if (step <= last)
                return -EALREADY; /* this step's code (or a later one) was used already */
        if (sqlite3_prepare_v2(db, "UPDATE auth_totp SET last_step = ?2 WHERE user = ?1", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, step);
        r = sqlite3_step(st);
        sqlite3_finalize(st);
        return r == SQLITE_DONE ? 0 : -EIO;
}

/* Percent-encodes s for a URI label (RFC 3986 unreserved kept). */
static void uri_escape(const char *s, char *out, size_t size)
{
        size_t n = 0;
        for (; *s && n + 4 < size; s++) {
                unsigned char ch = *s;
                if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                    strchr("-._~", ch))
                        out[n++] = ch;
                else
                        n += snprintf(out + n, size - n, "%%%02X", ch);
        }
        out[n] = 0;
}

/* Stores a fresh secret for user; returns 0 or -EIO. */
static int store_secret(sqlite3 *db, const char *user, const unsigned char *secret, size_t len,
                        const char *alg, uint32_t digits)
{
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db,
                               "INSERT OR REPLACE INTO auth_totp(user, secret, algorithm, digits, last_step, enrolled)"
                               " VALUES (?1, ?2, ?3, ?4, -1, ?5)",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, secret, (int)len, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, alg, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, (int)digits);
        sqlite3_bind_int64(st, 5, mamori_now_us());
        int r = sqlite3_step(st);
        sqlite3_finalize(st);
        return r == SQLITE_DONE ? 0 : -EIO;
}

/* Builds the otpauth:// URI into uri (locked memory); returns 0 or -ENOMEM. */
static int make_uri(const char *user, const char *host, const unsigned char *secret, size_t len,
                    const char *alg, uint32_t digits, char *uri, size_t size)
{
        char *b32 = NULL;
        size_t b32len = 0;
        if (oath_base32_encode((const char *)secret, len, &b32, &b32len) != OATH_OK)
                return -ENOMEM;
        char label[512], ualg[8];
        char who[300];
        snprintf(who, sizeof who, "%s@%s", user, host);
        uri_escape(who, label, sizeof label);
        size_t i = 0;
        for (; alg[i] && i + 1 < sizeof ualg; i++)
                ualg[i] = (char)(alg[i] >= 'a' && alg[i] <= 'z' ? alg[i] - 32 : alg[i]);
        ualg[i] = 0;
        /* Strip base32 padding: authenticator apps expect none. */
        while (b32len && b32[b32len - 1] == '=')
                b32[--b32len] = 0;
        snprintf(uri, size, "otpauth://totp/mamori:%s?secret=%s&issuer=mamori&algorithm=%s&digits=%u&period=%d",
                 label, b32, ualg, digits, TOTP_STEP);
        sodium_memzero(b32, b32len);
        free(b32);
        return 0;
}

int handle_totp_enroll(server *srv, conn *c, const mamori_msg *req)
{
        const mamori_config *cfg = server_config(srv);
        const char *user;
        if (mamori_msg_get_str(req, MAMORI_F_USER, 256, &user) < 0 || !*user)
                return -EBADMSG;
        struct passwd *pw = getpwnam(user);
        if (!pw)
                return conn_reply(c, req->type, MAMORI_E_NOT_FOUND, "no such user");
        uid_t uid = pw->pw_uid;
        const char *alg = cfg->auth.totp_algorithm;
        size_t len = algorithm_secret_len(alg);
        unsigned char *secret = sodium_malloc(SECRET_MAX);
        char *uri = sodium_malloc(1024);
        int r = secret && uri ? 0 : -ENOMEM;
        sqlite3 *db = store_writer(server_store(srv));
        if (r >= 0) {
                randombytes_buf(secret, len);
                r = make_uri(user, store_host(server_store(srv)), secret, len, alg, cfg->auth.totp_digits, uri, 1024);
        }
        /* The secret and its auth.totp_enroll record (last) in one savepoint: both or neither. */
        bool savepoint = false;
        if (r >= 0 && (r = store_begin(server_store(srv))) >= 0)
                r = sqlite3_exec(db, "SAVEPOINT totp", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
        savepoint = r >= 0;
        if (r >= 0)
                r = store_secret(db, user, secret, len, alg, cfg->auth.totp_digits);
        if (r >= 0) {
                char by[16], digits[8];
                snprintf(by, sizeof by, "%u", conn_uid(c));
                snprintf(digits, sizeof digits, "%u", cfg->auth.totp_digits);
                r = server_evidence(srv, "auth.totp_enroll", uid, "user", user, "by_uid", by,
                                    "algorithm", alg, "digits", digits, NULL);
        }
        if (savepoint) {
                if (r < 0)
                        (void)sqlite3_exec(db, "ROLLBACK TO totp", NULL, NULL, NULL);
                if (sqlite3_exec(db, "RELEASE totp", NULL, NULL, NULL) != SQLITE_OK)
                        r = -EIO;
        }
        mamori_msg *m = NULL;
        if (r >= 0)
                r = mamori_msg_new(req->type, MAMORI_OK, &m);
        if (r >= 0) {
                mamori_msg_put_str(m, MAMORI_F_AUTH_URI, uri);
                r = conn_send(c, m);
                /* The frame was copied into the output buffer; wipe our copy. */
                sodium_memzero(m->buf, m->alloc);
                mamori_msg_free(m);
                conn_hold_for_commit(c); /* the URI leaves only once the secret is stored */
        } else
                r = conn_reply(c, req->type, MAMORI_E_STORAGE, "the secret could not be stored");
        sodium_free(secret);
        sodium_free(uri);
        return r;
}
