/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <string.h>

#include "evdb.h"
#include "log.h"

/* Records keep their canonical bytes and chain hash; a few columns are copied out of
 * the record for queries (they are not trusted by the verifier, which reads only body,
 * hash, checkpoints and epochs). */
static const char schema[] =
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB);"
        "CREATE TABLE IF NOT EXISTS records("
        "  seq INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, type TEXT NOT NULL,"
        "  uid INTEGER NOT NULL, user TEXT, media TEXT, body BLOB NOT NULL, hash BLOB NOT NULL);"
        "CREATE INDEX IF NOT EXISTS records_time ON records(time_us);"
        "CREATE INDEX IF NOT EXISTS records_user ON records(user, time_us) WHERE user IS NOT NULL;"
        "CREATE INDEX IF NOT EXISTS records_media ON records(media, time_us) WHERE media IS NOT NULL;"
        "CREATE TABLE IF NOT EXISTS checkpoints("
        "  seq INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, hash BLOB NOT NULL, sig BLOB NOT NULL,"
        "  time_us INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS epochs("
        "  epoch INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL, pubkey BLOB NOT NULL, cert BLOB,"
        "  created_us INTEGER NOT NULL);";

int mamori_evdb_open(const char *path, bool readonly, sqlite3 **ret)
{
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
        int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
        int r = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
        if (r != SQLITE_OK)
                return log_error_errno(EIO, "Failed to open evidence database \"%s\": %s", path,
                                       db ? sqlite3_errmsg(db) : sqlite3_errstr(r));
        sqlite3_busy_timeout(db, 5000);
        const char *pragmas = readonly ? "PRAGMA query_only=1;"
                                       : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                                         "PRAGMA wal_autocheckpoint=10000;"
                                         /* the indexes' pages stay in memory: 64 MiB */
                                         "PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;";
        char *err = NULL;
        if (sqlite3_exec(db, pragmas, NULL, NULL, &err) != SQLITE_OK ||
            (!readonly && sqlite3_exec(db, schema, NULL, NULL, &err) != SQLITE_OK)) {
                log_error("Failed to prepare evidence database \"%s\": %s", path, err ? err : "?");
                sqlite3_free(err);
                return -EIO;
        }
        *ret = TAKE_PTR(db);
        return 0;
}

int mamori_evdb_walk_epochs(sqlite3 *db, const mamori_evdb_walker *w)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT epoch, first_seq, pubkey, cert FROM epochs ORDER BY epoch",
                               -1, &st, NULL) != SQLITE_OK)
                return log_error_errno(EIO, "Failed to read epochs: %s", sqlite3_errmsg(db));
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                const uint8_t *pk = sqlite3_column_blob(st, 2);
                const uint8_t *cert = sqlite3_column_blob(st, 3);
                /* A key or certificate of the wrong size is passed on as absent/garbage:
                 * the verifier reports it, the reader does not judge. */
                static const uint8_t zero[MAMORI_SIG_LEN];
                if (sqlite3_column_bytes(st, 2) != MAMORI_PK_LEN)
                        pk = zero;
                if (cert && sqlite3_column_bytes(st, 3) != MAMORI_SIG_LEN)
                        cert = zero;
                int k = w->epoch(w->userdata, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                                 pk, cert);
                if (k < 0)
                        return k;
        }
        if (r != SQLITE_DONE)
                return log_error_errno(EIO, "Failed to read epochs: %s", sqlite3_errmsg(db));
        return 0;
}

/* Steps st; returns 1 with a row, 0 at the end, -EIO on error. */
static int step(sqlite3 *db, sqlite3_stmt *st)
{
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
                return 1;
        if (r == SQLITE_DONE)
                return 0;
        return log_error_errno(EIO, "Failed to read evidence: %s", sqlite3_errmsg(db));
}

/* Passes the checkpoint row in cp on. Returns the callback's value. */
static int emit_checkpoint(const mamori_evdb_walker *w, sqlite3_stmt *cp)
{
        static const uint8_t zero[MAMORI_SIG_LEN];
        const uint8_t *h = sqlite3_column_blob(cp, 2), *s = sqlite3_column_blob(cp, 3);
        if (!h || sqlite3_column_bytes(cp, 2) != MAMORI_HASH_LEN)
                h = zero;
        if (!s || sqlite3_column_bytes(cp, 3) != MAMORI_SIG_LEN)
                s = zero;
        return w->checkpoint(w->userdata, sqlite3_column_int64(cp, 0), sqlite3_column_int64(cp, 1), h, s);
}

int mamori_evdb_walk_items(sqlite3 *db, uint64_t after, uint64_t max_records,
                           const mamori_evdb_walker *w, uint64_t *ret_last, bool *ret_more)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *rs = NULL, *cs = NULL;
        if (sqlite3_prepare_v2(db, "SELECT seq, body, hash FROM records WHERE seq > ?1 ORDER BY seq",
                               -1, &rs, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db, "SELECT seq, epoch, hash, sig FROM checkpoints WHERE seq > ?1 ORDER BY seq",
                               -1, &cs, NULL) != SQLITE_OK)
                return log_error_errno(EIO, "Failed to read evidence: %s", sqlite3_errmsg(db));
        sqlite3_bind_int64(rs, 1, (int64_t)after);
        sqlite3_bind_int64(cs, 1, (int64_t)after);

        int hr = step(db, rs), hc = step(db, cs);
        uint64_t n = 0, last = after;
        int k = 0;
        while ((hr > 0 || hc > 0) && k == 0) {
                uint64_t rseq = hr > 0 ? (uint64_t)sqlite3_column_int64(rs, 0) : UINT64_MAX;
                uint64_t cseq = hc > 0 ? (uint64_t)sqlite3_column_int64(cs, 0) : UINT64_MAX;
                if (max_records && n == max_records && rseq <= cseq)
                        break; /* the batch is full; its last checkpoint was taken already */
                if (rseq <= cseq) {
                        static const uint8_t zero[MAMORI_HASH_LEN];
                        const uint8_t *h = sqlite3_column_blob(rs, 2);
                        if (!h || sqlite3_column_bytes(rs, 2) != MAMORI_HASH_LEN)
                                h = zero;
                        k = w->record(w->userdata, rseq, sqlite3_column_blob(rs, 1),
                                      sqlite3_column_bytes(rs, 1), h);
                        last = rseq;
                        n++;
                        hr = step(db, rs);
                } else {
                        if (max_records && n == max_records && cseq > last)
                                break;
                        k = emit_checkpoint(w, cs);
                        last = cseq;
                        hc = step(db, cs);
                }
        }
        if (hr < 0 || hc < 0)
                return -EIO;
        if (k < 0)
                return k;
        if (ret_last)
                *ret_last = last;
        if (ret_more)
                *ret_more = hr > 0 || hc > 0;
        return 0;
}

static int v_epoch(void *u, uint32_t e, uint64_t first, const uint8_t *pk, const uint8_t *cert)
{
        return mamori_verifier_add_epoch(u, e, first, pk, cert);
}

static int v_record(void *u, uint64_t seq, const uint8_t *body, size_t len, const uint8_t *hash)
{
        int r = mamori_verifier_add_record(u, seq, body ? body : (const uint8_t *)"", len, hash);
        return r < 0 ? r : mamori_verifier_done(u);
}

static int v_checkpoint(void *u, uint64_t seq, uint32_t e, const uint8_t *hash, const uint8_t *sig)
{
        int r = mamori_verifier_add_checkpoint(u, seq, e, hash, sig);
        return r < 0 ? r : mamori_verifier_done(u);
}

int mamori_evdb_verify(sqlite3 *db, const uint8_t anchor[MAMORI_PK_LEN], mamori_verify_result *ret)
{
        mamori_verifier *v;
        int r = mamori_verifier_new(anchor, &v);
        if (r < 0)
                return r;
        mamori_evdb_walker w = {v_epoch, v_record, v_checkpoint, v};
        /* One read transaction, so the walk sees a single consistent state. */
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        r = mamori_evdb_walk_epochs(db, &w);
        if (r >= 0)
                r = mamori_evdb_walk_items(db, 0, 0, &w, NULL, NULL);
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (r < 0) {
                mamori_verifier_free(v);
                return r;
        }
        r = mamori_verifier_finish(v, ret);
        mamori_verifier_free(v);
        return r;
}
