/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-id128.h>
#include <systemd/sd-journal.h>

#include "cleanup.h"
#include "evdb.h"
#include "log.h"
#include "store.h"
#include "wire.h"

#define KEY_FILE "epoch.key"
#define KEY_FILE_NEW "epoch.key.new"
#define KEY_FILE_LEN (4 + MAMORI_SK_LEN)

typedef struct journal_item {
        uint64_t seq;
        mamori_record *rec;
} journal_item;

struct store {
        const mamori_config *cfg;
        char path[4096];
        int dir_fd;
        sqlite3 *db, *ro;
        sqlite3_stmt *ins, *ins_cp;
        char host[256];
        char machine_id[33];

        uint32_t epoch;
        uint8_t *sk; /* sodium_malloc'd, MAMORI_SK_LEN */
        uint8_t anchor[MAMORI_PK_LEN];

        /* chain state: committed, and as extended by the open batch */
        uint64_t seq, committed_seq;
        uint8_t prev[MAMORI_HASH_LEN], committed_prev[MAMORI_HASH_LEN];
        uint64_t sealed_seq;
        int64_t last_seal_mono, epoch_start_mono;
        bool in_batch;

        bool journal;
        journal_item *jq;
        size_t n_jq, alloc_jq;
};

static int64_t mono_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int exec(store *s, const char *sql)
{
        char *err = NULL;
        if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK) {
                log_error("Evidence store: \"%s\" failed: %s", sql, err ? err : "?");
                sqlite3_free(err);
                return -EIO;
        }
        return 0;
}

/* Reads a key file relative to the state directory, refusing links and files others
 * could read or write. Returns 0, -ENOENT, or -EPERM/-EBADMSG/-errno. */
static int key_read(store *s, const char *name, uint32_t *ret_epoch, uint8_t *sk)
{
        _cleanup_close_ int fd = openat(s->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
                return log_error_errno(EPERM, "Refusing epoch key \"%s\": not a private regular file owned by us", name);
        uint8_t buf[KEY_FILE_LEN];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n != KEY_FILE_LEN) {
                sodium_memzero(buf, sizeof buf);
                return -EBADMSG;
        }
        *ret_epoch = (uint32_t)buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3];
        memcpy(sk, buf + 4, MAMORI_SK_LEN);
        sodium_memzero(buf, sizeof buf);
        return 0;
}

/* Writes name atomically-enough for our recovery rules: create, write, fsync. */
static int key_write(store *s, const char *name, uint32_t epoch, const uint8_t *sk)
{
        (void)unlinkat(s->dir_fd, name, 0);
        _cleanup_close_ int fd = openat(s->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create \"%s\": %m", name);
        uint8_t buf[KEY_FILE_LEN] = {epoch >> 24, epoch >> 16, epoch >> 8, epoch};
        memcpy(buf + 4, sk, MAMORI_SK_LEN);
        ssize_t n = write(fd, buf, sizeof buf);
        sodium_memzero(buf, sizeof buf);
        if (n != KEY_FILE_LEN || fsync(fd) < 0)
                return log_error_errno(errno ? errno : EIO, "Failed to write \"%s\": %m", name);
        return 0;
}

static int dir_sync(store *s)
{
        return fsync(s->dir_fd) < 0 ? -errno : 0;
}

/* Writes anchor.pub (world-readable: it is public, and auditors copy it off the host). */
static int write_anchor_file(store *s)
{
        char line[96];
        mamori_anchor_format(s->anchor, line);
        (void)unlinkat(s->dir_fd, "anchor.pub", 0);
        _cleanup_close_ int fd = openat(s->dir_fd, "anchor.pub", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        /* explicit: the daemon's umask is 077 */
        if (fd < 0 || fchmod(fd, 0644) < 0 || write(fd, line, strlen(line)) != (ssize_t)strlen(line))
                return log_error_errno(errno ? errno : EIO, "Failed to write anchor.pub: %m");
        return 0;
}

/* Inserts epoch e's row (cert NULL for epoch 0) in the open transaction. Returns 0 or -EIO. */
static int insert_epoch(store *s, uint32_t e, uint64_t first_seq, const uint8_t pk[MAMORI_PK_LEN],
                        const uint8_t *cert)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, "INSERT INTO epochs(epoch, first_seq, pubkey, cert, created_us)"
                                      " VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, NULL) != SQLITE_OK)
                return log_error_errno(EIO, "Failed to record epoch %" PRIu32 ": %s", e, sqlite3_errmsg(s->db));
        sqlite3_bind_int64(st, 1, e);
        sqlite3_bind_int64(st, 2, (int64_t)first_seq);
        sqlite3_bind_blob(st, 3, pk, MAMORI_PK_LEN, SQLITE_TRANSIENT);
        if (cert)
                sqlite3_bind_blob(st, 4, cert, MAMORI_SIG_LEN, SQLITE_TRANSIENT);
        else
                sqlite3_bind_null(st, 4);
        sqlite3_bind_int64(st, 5, mamori_now_us());
        if (sqlite3_step(st) != SQLITE_DONE)
                return log_error_errno(EIO, "Failed to record epoch %" PRIu32 ": %s", e, sqlite3_errmsg(s->db));
        return 0;
}

/* Creates epoch 0 in an empty store. */
static int store_init_epochs(store *s)
{
        uint8_t pk[MAMORI_PK_LEN];
        crypto_sign_keypair(pk, s->sk);
        int r = key_write(s, KEY_FILE, 0, s->sk);
        if (r < 0)
                return r;
        r = insert_epoch(s, 0, 1, pk, NULL);
        if (r < 0)
                return r;
        memcpy(s->anchor, pk, MAMORI_PK_LEN);
        s->epoch = 0;
        (void)dir_sync(s);
        return write_anchor_file(s);
}

/* Reads epoch e's public key from the database into pk. Returns 0 or -ENOENT. */
static int db_epoch_pk(store *s, int64_t e, uint8_t pk[MAMORI_PK_LEN])
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(s->db, "SELECT pubkey FROM epochs WHERE epoch = ?1", -1, &st, NULL);
        sqlite3_bind_int64(st, 1, e);
        if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_bytes(st, 0) != MAMORI_PK_LEN)
                return -ENOENT;
        memcpy(pk, sqlite3_column_blob(st, 0), MAMORI_PK_LEN);
        return 0;
}

/* Loads the current epoch key, finishing or undoing a rotation cut short by a crash. */
static int store_load_epoch(store *s)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(s->db, "SELECT max(epoch) FROM epochs", -1, &st, NULL);
        if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_type(st, 0) == SQLITE_NULL)
                return store_init_epochs(s);
        int64_t e = sqlite3_column_int64(st, 0);
        uint8_t pk[MAMORI_PK_LEN], got[MAMORI_PK_LEN];
        if (db_epoch_pk(s, e, pk) < 0 || db_epoch_pk(s, 0, s->anchor) < 0)
                return log_error_errno(EBADMSG, "Evidence store: epoch table is damaged");

        uint32_t ke;
        int r = key_read(s, KEY_FILE_NEW, &ke, s->sk);
        if (r >= 0) {
                crypto_sign_ed25519_sk_to_pk(got, s->sk);
                if (ke == e && sodium_memcmp(got, pk, MAMORI_PK_LEN) == 0) {
                        /* The rotation committed; only the rename was lost. */
                        if (renameat(s->dir_fd, KEY_FILE_NEW, s->dir_fd, KEY_FILE) < 0)
                                return log_error_errno(errno, "Failed to finish key rotation: %m");
                        (void)dir_sync(s);
                } else
                        (void)unlinkat(s->dir_fd, KEY_FILE_NEW, 0); /* never committed */
        }
        r = key_read(s, KEY_FILE, &ke, s->sk);
        if (r < 0)
                return log_error_errno(r, "Failed to read the epoch key: %m");
        crypto_sign_ed25519_sk_to_pk(got, s->sk);
        /* Fail closed: without the current epoch's key nothing new can be sealed. */
        if (ke != e || sodium_memcmp(got, pk, MAMORI_PK_LEN) != 0)
                return log_error_errno(EBADMSG, "The epoch key file does not match epoch %" PRId64 " of the store", e);
        s->epoch = e;
        return write_anchor_file(s);
}

/* Restores seq, prev hash and seal state from the database. */
static int store_load_chain(store *s)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *a = NULL, *b = NULL;
        sqlite3_prepare_v2(s->db, "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1", -1, &a, NULL);
        sqlite3_prepare_v2(s->db, "SELECT seq, hash FROM checkpoints ORDER BY seq DESC LIMIT 1", -1, &b, NULL);
        s->seq = 0;
        memset(s->prev, 0, sizeof s->prev);
        if (sqlite3_step(a) == SQLITE_ROW && sqlite3_column_bytes(a, 1) == MAMORI_HASH_LEN) {
                s->seq = sqlite3_column_int64(a, 0);
                memcpy(s->prev, sqlite3_column_blob(a, 1), MAMORI_HASH_LEN);
        }
        if (sqlite3_step(b) == SQLITE_ROW && sqlite3_column_bytes(b, 1) == MAMORI_HASH_LEN) {
                s->sealed_seq = sqlite3_column_int64(b, 0);
                if (s->sealed_seq > s->seq) { /* everything was purged up to this seal */
                        s->seq = s->sealed_seq;
                        memcpy(s->prev, sqlite3_column_blob(b, 1), MAMORI_HASH_LEN);
                }
        }
        s->committed_seq = s->seq;
        memcpy(s->committed_prev, s->prev, MAMORI_HASH_LEN);
        return 0;
}

/* SQL function mamori_expired(type, time_us, now_us): 1 if past its retention. */
static void sql_expired(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
        const store *s = sqlite3_user_data(ctx);
        const char *type = (const char *)sqlite3_value_text(argv[0]);
        int64_t t = sqlite3_value_int64(argv[1]), now = sqlite3_value_int64(argv[2]);
        uint32_t days;
        switch (mamori_record_retention_class(type ? type : "")) {
        case MAMORI_RETAIN_MEDIA: days = s->cfg->evidence.retention_media_days; break;
        case MAMORI_RETAIN_PERMISSION: days = s->cfg->evidence.retention_permission_days; break;
        case MAMORI_RETAIN_LOGIN: days = s->cfg->evidence.retention_login_days; break;
        default: days = s->cfg->evidence.retention_admin_days; break;
        }
        sqlite3_result_int(ctx, t < now - (int64_t)days * 86400 * 1000000);
}

static int prepare(store *s)
{
        if (sqlite3_prepare_v3(s->db, "INSERT INTO records(seq, time_us, type, uid, user, media, body, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", -1, SQLITE_PREPARE_PERSISTENT, &s->ins, NULL) != SQLITE_OK ||
            sqlite3_prepare_v3(s->db, "INSERT INTO checkpoints(seq, epoch, hash, sig, time_us) VALUES (?1, ?2, ?3, ?4, ?5)", -1, SQLITE_PREPARE_PERSISTENT, &s->ins_cp, NULL) != SQLITE_OK)
                return log_error_errno(EIO, "Evidence store: %s", sqlite3_errmsg(s->db));
        if (sqlite3_create_function(s->db, "mamori_expired", 3, SQLITE_UTF8 | SQLITE_DETERMINISTIC, s, sql_expired, NULL, NULL) != SQLITE_OK)
                return -EIO;
        return 0;
}

int store_open(const char *state_dir, const mamori_config *cfg, store **ret)
{
        store *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->cfg = cfg;
        s->dir_fd = -1;
        snprintf(s->path, sizeof s->path, "%s/evidence.db", state_dir);
        s->sk = sodium_malloc(MAMORI_SK_LEN);
        int r = s->sk ? 0 : -ENOMEM;
        if (r >= 0) {
                s->dir_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (s->dir_fd < 0)
                        r = log_error_errno(errno, "Failed to open state directory \"%s\": %m", state_dir);
        }
        if (r >= 0)
                r = mamori_evdb_open(s->path, false, &s->db);
        if (r >= 0)
                r = prepare(s);
        if (r >= 0)
                r = store_load_epoch(s);
        if (r >= 0)
                r = store_load_chain(s);
        if (r >= 0)
                r = mamori_evdb_open(s->path, true, &s->ro);
        if (r < 0) {
                store_free(s);
                return r;
        }
        if (gethostname(s->host, sizeof s->host - 1) < 0)
                strcpy(s->host, "unknown");
        sd_id128_t id;
        if (sd_id128_get_machine(&id) >= 0)
                sd_id128_to_string(id, s->machine_id);
        else
                strcpy(s->machine_id, "unknown");
        s->journal = cfg->evidence.journal && access("/run/systemd/journal/socket", W_OK) == 0;
        s->last_seal_mono = s->epoch_start_mono = mono_us();
        *ret = s;
        return 0;
}

void store_free(store *s)
{
        if (!s)
                return;
        if (s->in_batch)
                (void)exec(s, "ROLLBACK");
        sqlite3_finalize(s->ins);
        sqlite3_finalize(s->ins_cp);
        /* Leave one self-contained file at a clean stop (the WAL folded in), whoever
         * else still holds a statement on this connection. */
        if (s->db)
                (void)sqlite3_exec(s->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
        sqlite3_close_v2(s->ro);
        sqlite3_close_v2(s->db);
        for (size_t i = 0; i < s->n_jq; i++)
                mamori_record_free(s->jq[i].rec);
        free(s->jq);
        sodium_free(s->sk);
        if (s->dir_fd >= 0)
                close(s->dir_fd);
        free(s);
}

/* Abandons the open batch: the database, the chain state and the journal queue all go
 * back to the last commit (nothing uncommitted is ever copied to the journal). */
static void rollback(store *s)
{
        (void)exec(s, "ROLLBACK");
        s->in_batch = false;
        s->seq = s->committed_seq;
        memcpy(s->prev, s->committed_prev, MAMORI_HASH_LEN);
        for (size_t i = 0; i < s->n_jq; i++)
                mamori_record_free(s->jq[i].rec);
        s->n_jq = 0;
}

int store_begin(store *s)
{
        if (s->in_batch)
                return 0;
        int r = exec(s, "BEGIN IMMEDIATE");
        if (r >= 0)
                s->in_batch = true;
        return r;
}

/* Keeps rec for the journal once its batch commits (takes ownership). */
static void journal_queue(store *s, uint64_t seq, mamori_record *rec)
{
        if (s->n_jq == s->alloc_jq) {
                size_t a = s->alloc_jq ? s->alloc_jq * 2 : 64;
                journal_item *n = realloc(s->jq, a * sizeof *n);
                if (!n) {
                        mamori_record_free(rec); /* the journal copy is best effort */
                        return;
                }
                s->jq = n;
                s->alloc_jq = a;
        }
        s->jq[s->n_jq++] = (journal_item){seq, rec};
}

/* Encodes, hashes and inserts rec; the caller keeps ownership. */
static int append(store *s, mamori_record *rec, uint64_t *ret_seq)
{
        if (!rec->host && mamori_record_set(rec, &rec->host, s->host) < 0)
                return -ENOMEM;
        if (!rec->machine_id && mamori_record_set(rec, &rec->machine_id, s->machine_id) < 0)
                return -ENOMEM;
        rec->seq = s->seq + 1;
        _cleanup_free_ uint8_t *body = NULL;
        int len = mamori_record_encode(rec, &body);
        if (len < 0)
                return -EINVAL;
        int r = store_begin(s);
        if (r < 0)
                return r;
        uint8_t h[MAMORI_HASH_LEN];
        mamori_chain_hash(s->prev, body, len, h);

        sqlite3_stmt *st = s->ins;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, (int64_t)rec->seq);
        sqlite3_bind_int64(st, 2, rec->time_us);
        sqlite3_bind_text(st, 3, rec->type, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, rec->uid);
        const char *user = mamori_record_get(rec, "user"), *media = mamori_record_get(rec, "media");
        if (user)
                sqlite3_bind_text(st, 5, user, -1, SQLITE_STATIC);
        else
                sqlite3_bind_null(st, 5);
        if (media)
                sqlite3_bind_text(st, 6, media, -1, SQLITE_STATIC);
        else
                sqlite3_bind_null(st, 6);
        sqlite3_bind_blob(st, 7, body, len, SQLITE_STATIC);
        sqlite3_bind_blob(st, 8, h, MAMORI_HASH_LEN, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
                return log_error_errno(EIO, "Failed to store record %" PRIu64 ": %s", rec->seq, sqlite3_errmsg(s->db));
        sqlite3_clear_bindings(st);
        s->seq = rec->seq;
        memcpy(s->prev, h, MAMORI_HASH_LEN);
        if (ret_seq)
                *ret_seq = rec->seq;
        return 0;
}

bool store_dirty(const store *s)
{
        return s->in_batch;
}

/* Inserts a checkpoint for the current head (inside the open batch). */
static int checkpoint(store *s)
{
        if (s->seq == s->sealed_seq)
                return 0;
        uint8_t msg[64], sig[MAMORI_SIG_LEN];
        size_t n = mamori_checkpoint_message(s->seq, s->prev, s->epoch, msg);
        crypto_sign_detached(sig, NULL, msg, n, s->sk);
        sqlite3_stmt *st = s->ins_cp;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, (int64_t)s->seq);
        sqlite3_bind_int64(st, 2, s->epoch);
        sqlite3_bind_blob(st, 3, s->prev, MAMORI_HASH_LEN, SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 4, sig, MAMORI_SIG_LEN, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 5, mamori_now_us());
        if (sqlite3_step(st) != SQLITE_DONE)
                return log_error_errno(EIO, "Failed to store checkpoint: %s", sqlite3_errmsg(s->db));
        return 0;
}

/* Builds a stable MESSAGE_ID for a record type. */
static void message_id(const char *type, char out[33])
{
        uint8_t h[16];
        crypto_generichash(h, sizeof h, (const uint8_t *)type, strlen(type),
                           (const uint8_t *)"mamori-message-id", 17);
        sodium_bin2hex(out, 33, h, sizeof h);
}

/* asprintf() that returns NULL on failure (its pointer is undefined then). */
__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...)
{
        char *p;
        va_list ap;
        va_start(ap, f);
        int r = vasprintf(&p, f, ap);
        va_end(ap);
        return r < 0 ? NULL : p;
}

/* Sends one record to the journal: the header as MAMORI_* fields and each of the
 * record's own fields as MAMORI_F_<KEY>. Returns sd_journal_sendv()'s result. */
static int journal_send(uint64_t seq, const mamori_record *rec)
{
        size_t n = 9 + rec->n_pairs;
        _cleanup_free_ struct iovec *iov = calloc(n, sizeof *iov);
        _cleanup_free_ char **strs = calloc(n, sizeof *strs);
        if (!iov || !strs)
                return -ENOMEM;
        char mid[33], t[32];
        message_id(rec->type, mid);
        const char *user = mamori_record_get(rec, "user");
        strs[0] = fmt("MESSAGE=mamori evidence %" PRIu64 ": %s%s%s", seq, rec->type, user ? " user=" : "",
                      user ? user : "");
        strs[1] = fmt("MESSAGE_ID=%s", mid);
        strs[2] = fmt("PRIORITY=6");
        strs[3] = fmt("MAMORI_SEQ=%" PRIu64, seq);
        strs[4] = fmt("MAMORI_TYPE=%s", rec->type);
        strs[5] = fmt("MAMORI_TIME=%s", mamori_format_time(rec->time_us, t));
        strs[6] = fmt("MAMORI_UID=%" PRIu32, rec->uid);
        strs[7] = fmt("MAMORI_CLOCK_SYNCED=%d", rec->clock_synced);
        strs[8] = fmt("MAMORI_COMPONENT=%s", rec->component);
        for (size_t i = 0; i < rec->n_pairs; i++) {
                /* Keys are [a-z0-9_.]: upper-cased, '.' as '_', they are valid field names. */
                char key[MAMORI_PAIR_KEY_MAX + 1];
                size_t j;
                for (j = 0; rec->pairs[i].key[j] && j < MAMORI_PAIR_KEY_MAX; j++)
                        key[j] = rec->pairs[i].key[j] == '.' ? '_' : toupper((unsigned char)rec->pairs[i].key[j]);
                key[j] = 0;
                strs[9 + i] = fmt("MAMORI_F_%s=%s", key, rec->pairs[i].value);
        }
        int r = 0;
        for (size_t i = 0; i < n; i++) {
                if (!strs[i])
                        r = -ENOMEM;
                else
                        iov[i] = (struct iovec){strs[i], strlen(strs[i])};
        }
        if (r == 0)
                r = sd_journal_sendv(iov, n);
        for (size_t i = 0; i < n; i++)
                free(strs[i]);
        return r;
}

/* Copies committed records to the journal (best effort: the store is the record; the
 * journal is a copy that log shipping carries off the host). */
static void journal_flush(store *s)
{
        for (size_t i = 0; i < s->n_jq; i++) {
                if (journal_send(s->jq[i].seq, s->jq[i].rec) < 0)
                        log_debug("Failed to copy record %" PRIu64 " to the journal, ignoring.", s->jq[i].seq);
                mamori_record_free(s->jq[i].rec);
        }
        s->n_jq = 0;
}

int store_commit(store *s)
{
        if (!s->in_batch)
                return 0;
        int r = 0;
        int64_t now = mono_us();
        bool due = s->seq - s->sealed_seq >= s->cfg->evidence.checkpoint_records ||
                   now - s->last_seal_mono >= (int64_t)s->cfg->evidence.checkpoint_seconds * 1000000;
        if (due)
                r = checkpoint(s);
        if (r >= 0)
                r = exec(s, "COMMIT");
        if (r < 0) {
                rollback(s);
                return -EIO;
        }
        s->in_batch = false;
        if (due && s->seq != s->sealed_seq) {
                s->sealed_seq = s->seq;
                s->last_seal_mono = now;
        }
        s->committed_seq = s->seq;
        memcpy(s->committed_prev, s->prev, MAMORI_HASH_LEN);
        journal_flush(s);
        return 0;
}

int store_append(store *s, mamori_record *rec, uint64_t *ret_seq)
{
        uint64_t seq = 0;
        int r = append(s, rec, &seq);
        if (r < 0) {
                mamori_record_free(rec);
                return r;
        }
        if (s->journal)
                journal_queue(s, seq, rec);
        else
                mamori_record_free(rec);
        if (ret_seq)
                *ret_seq = seq;
        return 0;
}

int store_seal(store *s)
{
        if (s->seq == s->sealed_seq && !s->in_batch)
                return 0;
        int r = store_begin(s);
        if (r < 0)
                return r;
        s->last_seal_mono = 0; /* forces the checkpoint in store_commit() */
        return store_commit(s);
}

int store_rotate(store *s)
{
        int r = store_seal(s);
        if (r < 0)
                return r;
        uint8_t pk[MAMORI_PK_LEN], cert[MAMORI_SIG_LEN], msg[80];
        uint8_t *nsk = sodium_malloc(MAMORI_SK_LEN);
        if (!nsk)
                return -ENOMEM;
        crypto_sign_keypair(pk, nsk);
        uint32_t e = s->epoch + 1;
        size_t n = mamori_epoch_message(e, pk, s->seq + 1, msg);
        crypto_sign_detached(cert, NULL, msg, n, s->sk);

        r = key_write(s, KEY_FILE_NEW, e, nsk);
        if (r >= 0)
                r = store_begin(s);
        if (r >= 0) {
                r = insert_epoch(s, e, s->seq + 1, pk, cert);
                if (r >= 0)
                        r = exec(s, "COMMIT");
                if (r >= 0)
                        s->in_batch = false;
                else
                        rollback(s);
        }
        if (r < 0) {
                (void)unlinkat(s->dir_fd, KEY_FILE_NEW, 0);
                sodium_free(nsk);
                return log_error_errno(r, "Epoch rotation failed; keeping epoch %" PRIu32, s->epoch);
        }
        /* The new epoch is committed: replace the old secret everywhere. */
        if (renameat(s->dir_fd, KEY_FILE_NEW, s->dir_fd, KEY_FILE) < 0)
                log_warning_errno(errno, "Failed to rename the new epoch key (fixed at next start): %m");
        (void)dir_sync(s);
        sodium_free(s->sk); /* sodium_free wipes before freeing */
        s->sk = nsk;
        s->epoch = e;
        s->epoch_start_mono = mono_us();
        log_info("Evidence epoch %" PRIu32 " begins at seq %" PRIu64, e, s->seq + 1);
        return 0;
}

int64_t store_next_deadline(const store *s)
{
        int64_t seal = s->seq != s->sealed_seq
                               ? s->last_seal_mono + (int64_t)s->cfg->evidence.checkpoint_seconds * 1000000
                               : INT64_MAX;
        int64_t rot = s->epoch_start_mono + (int64_t)s->cfg->evidence.epoch_seconds * 1000000;
        return seal < rot ? seal : rot;
}

int store_tick(store *s)
{
        int64_t now = mono_us();
        if (now >= s->epoch_start_mono + (int64_t)s->cfg->evidence.epoch_seconds * 1000000) {
                int r = store_rotate(s);
                /* A new epoch is also when old ones may have expired (R-EV-11). */
                if (r >= 0 && store_purge(s, mamori_now_us()) < 0)
                        log_warning("Retention purge failed; will retry at the next epoch, ignoring.");
                return r;
        }
        if (s->seq != s->sealed_seq &&
            now >= s->last_seal_mono + (int64_t)s->cfg->evidence.checkpoint_seconds * 1000000)
                return store_seal(s);
        return 0;
}

/* Finds the last seq of the longest purgeable prefix of whole epochs. Returns 0 and
 * *ret_last (0 if nothing to purge), or -EIO. */
static int purgeable(store *s, int64_t now_us, uint64_t *ret_last, uint32_t *ret_epoch)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *ep = NULL, *chk = NULL, *cp = NULL;
        sqlite3_prepare_v2(s->db, "SELECT epoch, first_seq FROM epochs ORDER BY epoch", -1, &ep, NULL);
        sqlite3_prepare_v2(s->db, "SELECT 1 FROM records WHERE seq BETWEEN ?1 AND ?2 AND NOT mamori_expired(type, time_us, ?3) LIMIT 1", -1, &chk, NULL);
        sqlite3_prepare_v2(s->db, "SELECT 1 FROM checkpoints WHERE seq = ?1 AND epoch = ?2", -1, &cp, NULL);
        if (!ep || !chk || !cp)
                return -EIO;
        uint64_t last = 0, prev_first = 0;
        int64_t prev_epoch = -1;
        *ret_last = 0;
        while (sqlite3_step(ep) == SQLITE_ROW) {
                int64_t e = sqlite3_column_int64(ep, 0);
                uint64_t first = sqlite3_column_int64(ep, 1);
                if (prev_epoch >= 0 && first > prev_first) {
                        uint64_t end = first - 1; /* epoch prev_epoch holds prev_first..end */
                        sqlite3_reset(chk);
                        sqlite3_bind_int64(chk, 1, (int64_t)prev_first);
                        sqlite3_bind_int64(chk, 2, (int64_t)end);
                        sqlite3_bind_int64(chk, 3, now_us);
                        if (sqlite3_step(chk) == SQLITE_ROW)
                                break; /* a record still within its period: stop here */
                        sqlite3_reset(cp);
                        sqlite3_bind_int64(cp, 1, (int64_t)end);
                        sqlite3_bind_int64(cp, 2, prev_epoch);
                        if (sqlite3_step(cp) != SQLITE_ROW)
                                break; /* not sealed at its end: cannot leave a stub */
                        last = end;
                        *ret_epoch = prev_epoch;
                }
                prev_epoch = e;
                prev_first = first;
        }
        *ret_last = last;
        return 0;
}

int64_t store_purge(store *s, int64_t now_us)
{
        int r = store_commit(s);
        if (r < 0)
                return r;
        uint64_t last = 0;
        uint32_t epoch = 0;
        r = purgeable(s, now_us, &last, &epoch);
        if (r < 0 || last == 0)
                return r;
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *first_st = NULL;
        sqlite3_prepare_v2(s->db, "SELECT min(seq), count(*) FROM records WHERE seq <= ?1", -1, &first_st, NULL);
        sqlite3_bind_int64(first_st, 1, (int64_t)last);
        if (sqlite3_step(first_st) != SQLITE_ROW)
                return -EIO;
        int64_t n = sqlite3_column_int64(first_st, 1);
        if (n == 0)
                return 0; /* already purged to here */
        uint64_t first = sqlite3_column_int64(first_st, 0);

        r = store_begin(s);
        if (r < 0)
                return r;
        char sql[256];
        snprintf(sql, sizeof sql, "DELETE FROM records WHERE seq <= %" PRIu64 "; DELETE FROM checkpoints WHERE seq < %" PRIu64 ";", last, last);
        r = exec(s, sql);
        mamori_record *rec = NULL;
        if (r >= 0)
                r = mamori_record_new(&rec);
        if (r >= 0) {
                char a[32], b[32], c[32], d[32];
                snprintf(a, sizeof a, "%" PRIu64, first);
                snprintf(b, sizeof b, "%" PRIu64, last);
                snprintf(c, sizeof c, "%" PRIu32, epoch);
                snprintf(d, sizeof d, "%" PRId64, n);
                rec->time_us = mamori_now_us();
                rec->clock_synced = mamori_clock_synced();
                rec->uid = geteuid();
                if (mamori_record_set(rec, &rec->type, "evidence.purge") < 0 ||
                    mamori_record_set(rec, &rec->component, "policyd") < 0 ||
                    mamori_record_add(rec, "first_seq", a) < 0 || mamori_record_add(rec, "last_seq", b) < 0 ||
                    mamori_record_add(rec, "through_epoch", c) < 0 || mamori_record_add(rec, "records", d) < 0 ||
                    mamori_record_add(rec, "reason", "retention") < 0)
                        r = -ENOMEM;
                if (r >= 0)
                        r = store_append(s, TAKE_PTR(rec), NULL);
                mamori_record_free(rec);
        }
        if (r >= 0)
                r = store_commit(s);
        else
                rollback(s);
        if (r < 0)
                return r;
        log_info("Purged %" PRId64 " evidence records %" PRIu64 "..%" PRIu64 " past retention", n, first, last);
        return n;
}

const uint8_t *store_anchor(const store *s) { return s->anchor; }
uint64_t store_last_seq(const store *s) { return s->committed_seq; }
uint32_t store_epoch(const store *s) { return s->epoch; }
sqlite3 *store_reader(const store *s) { return s->ro; }
sqlite3 *store_writer(const store *s) { return s->db; }
const char *store_host(const store *s) { return s->host; }
const char *store_path(const store *s) { return s->path; }
const char *store_machine_id(const store *s) { return s->machine_id; }
