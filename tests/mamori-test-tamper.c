/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-test-tamper: plays the attacker against a copy of an evidence database, for
 * the tamper tests (R-EV-7, R-CRY-4). Each operation does what someone with write
 * access to the file would do, as cleverly as the data allows:
 *   alter-byte DB SEQ OFFSET    flip one bit of record SEQ's stored bytes (OFFSET < 0: from the end)
 *   delete DB SEQ               remove record SEQ
 *   swap DB A B                 exchange records A and B (bytes and stored hashes)
 *   insert DB AFTER             insert a well-formed, hash-consistent forged record after
 *                               AFTER, renumbering the rows behind it
 *   truncate DB FROM            remove records FROM.. (checkpoints stay)
 *   resign DB KEYFILE SEQ [own] rewrite record SEQ's "file" field, recompute every stored
 *                               hash after it and re-sign every later checkpoint with the
 *                               epoch key in KEYFILE (claiming that key's epoch with "own")
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "evdb.h"
#include "record.h"

static sqlite3 *db;

__attribute__((noreturn)) static void die(const char *what)
{
        fprintf(stderr, "tamper: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
        exit(2);
}

static void exec(const char *sql)
{
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
                die(sql);
}

/* Loads record seq's body and hash. */
static int load(uint64_t seq, uint8_t **body, int *len, uint8_t hash[32])
{
        sqlite3_stmt *st;
        sqlite3_prepare_v2(db, "SELECT body, hash FROM records WHERE seq = ?1", -1, &st, NULL);
        sqlite3_bind_int64(st, 1, (int64_t)seq);
        if (sqlite3_step(st) != SQLITE_ROW) {
                sqlite3_finalize(st);
                return -ENOENT;
        }
        *len = sqlite3_column_bytes(st, 0);
        *body = malloc(*len);
        memcpy(*body, sqlite3_column_blob(st, 0), *len);
        if (hash)
                memcpy(hash, sqlite3_column_blob(st, 1), 32);
        sqlite3_finalize(st);
        return 0;
}

static void store_row(uint64_t seq, const uint8_t *body, int len, const uint8_t hash[32])
{
        sqlite3_stmt *st;
        sqlite3_prepare_v2(db, "UPDATE records SET body = ?2, hash = ?3 WHERE seq = ?1", -1, &st, NULL);
        sqlite3_bind_int64(st, 1, (int64_t)seq);
        sqlite3_bind_blob(st, 2, body, len, SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 3, hash, 32, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
                die("update");
        sqlite3_finalize(st);
}

/* The stored hash of the record before seq (zeros before the first). */
static void prev_hash(uint64_t seq, uint8_t out[32])
{
        uint8_t *b;
        int len;
        memset(out, 0, 32);
        if (seq > 1 && load(seq - 1, &b, &len, out) == 0)
                free(b);
}

/* Re-encodes record seq with its "file" field changed (a well-formed forgery). */
static int forge(uint64_t seq, uint64_t new_seq, uint8_t **ret)
{
        uint8_t *b;
        int len;
        mamori_record *rec;
        if (load(seq, &b, &len, NULL) < 0 || mamori_record_decode(b, len, &rec) < 0)
                die("record to forge from");
        free(b);
        for (size_t i = 0; i < rec->n_pairs; i++)
                if (streq(rec->pairs[i].key, "file")) {
                        free(rec->pairs[i].value);
                        rec->pairs[i].value = strdup("nothing-to-see.txt");
                }
        rec->seq = new_seq;
        int n = mamori_record_encode(rec, ret);
        mamori_record_free(rec);
        return n;
}

/* Recomputes stored hashes from seq on, as an attacker hiding a change would. */
static void rehash_from(uint64_t seq)
{
        uint8_t prev[32];
        prev_hash(seq, prev);
        for (uint64_t s = seq;; s++) {
                uint8_t *b, h[32];
                int len;
                if (load(s, &b, &len, NULL) < 0)
                        break;
                mamori_chain_hash(prev, b, len, h);
                store_row(s, b, len, h);
                memcpy(prev, h, 32);
                free(b);
        }
}

static void resign(const char *keyfile, uint64_t seq, bool own)
{
        uint8_t buf[4 + 64];
        int fd = open(keyfile, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, buf, sizeof buf) != sizeof buf)
                die("key file");
        close(fd);
        uint32_t key_epoch = (uint32_t)buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3];
        uint8_t *body;
        int len = forge(seq, seq, &body);
        uint8_t prev[32], h[32];
        prev_hash(seq, prev);
        mamori_chain_hash(prev, body, len, h);
        store_row(seq, body, len, h);
        free(body);
        rehash_from(seq + 1);
        sqlite3_stmt *cp, *hs, *up;
        sqlite3_prepare_v2(db, "SELECT seq, epoch FROM checkpoints WHERE seq >= ?1 ORDER BY seq", -1, &cp, NULL);
        sqlite3_prepare_v2(db, "SELECT hash FROM records WHERE seq = ?1", -1, &hs, NULL);
        sqlite3_prepare_v2(db, "UPDATE checkpoints SET hash = ?2, sig = ?3, epoch = ?4 WHERE seq = ?1", -1, &up, NULL);
        sqlite3_bind_int64(cp, 1, (int64_t)seq);
        while (sqlite3_step(cp) == SQLITE_ROW) {
                uint64_t s = sqlite3_column_int64(cp, 0);
                uint32_t e = own ? key_epoch : (uint32_t)sqlite3_column_int64(cp, 1);
                sqlite3_reset(hs);
                sqlite3_bind_int64(hs, 1, (int64_t)s);
                if (sqlite3_step(hs) != SQLITE_ROW)
                        continue;
                uint8_t ch[32], msg[64], sig[64];
                memcpy(ch, sqlite3_column_blob(hs, 0), 32);
                size_t n = mamori_checkpoint_message(s, ch, e, msg);
                crypto_sign_detached(sig, NULL, msg, n, buf + 4);
                sqlite3_reset(up);
                sqlite3_bind_int64(up, 1, (int64_t)s);
                sqlite3_bind_blob(up, 2, ch, 32, SQLITE_TRANSIENT);
                sqlite3_bind_blob(up, 3, sig, 64, SQLITE_TRANSIENT);
                sqlite3_bind_int64(up, 4, e);
                if (sqlite3_step(up) != SQLITE_DONE)
                        die("re-sign");
        }
        sqlite3_finalize(cp);
        sqlite3_finalize(hs);
        sqlite3_finalize(up);
}

static void insert_after(uint64_t after)
{
        /* Move every later row up by one, from the top down, then forge the gap. */
        char sql[256];
        snprintf(sql, sizeof sql, "UPDATE records SET seq = -seq - 1 WHERE seq > %" PRIu64 ";"
                                  "UPDATE records SET seq = -seq WHERE seq < 0;", after);
        exec(sql);
        uint8_t *body, prev[32], h[32];
        int len = forge(after, after + 1, &body);
        prev_hash(after + 1, prev);
        mamori_chain_hash(prev, body, len, h);
        sqlite3_stmt *st;
        sqlite3_prepare_v2(db, "INSERT INTO records(seq, time_us, type, uid, body, hash) VALUES (?1, 0, 'media.output', 0, ?2, ?3)", -1, &st, NULL);
        sqlite3_bind_int64(st, 1, (int64_t)after + 1);
        sqlite3_bind_blob(st, 2, body, len, SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 3, h, 32, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
                die("insert");
        sqlite3_finalize(st);
        free(body);
}

int main(int argc, char *argv[])
{
        if (argc < 4 || sodium_init() < 0) {
                fprintf(stderr, "usage: see the comment at the top of tests/mamori-test-tamper.c\n");
                return 2;
        }
        const char *op = argv[1];
        if (sqlite3_open(argv[2], &db) != SQLITE_OK)
                die("open");
        exec("BEGIN");
        uint64_t a = strtoull(argv[3], NULL, 10);
        if (streq(op, "alter-byte") && argc == 5) {
                uint8_t *b, h[32];
                int len;
                if (load(a, &b, &len, h) < 0)
                        die("no such record");
                int off = atoi(argv[4]); /* negative: from the end */
                off = off < 0 ? len + off : off % len;
                if (off < 0)
                        die("offset");
                b[off] ^= 0x01;
                store_row(a, b, len, h);
                free(b);
        } else if (streq(op, "delete") && argc == 4) {
                char sql[128];
                snprintf(sql, sizeof sql, "DELETE FROM records WHERE seq = %" PRIu64, a);
                exec(sql);
        } else if (streq(op, "swap") && argc == 5) {
                uint64_t b_seq = strtoull(argv[4], NULL, 10);
                uint8_t *x, *y, hx[32], hy[32];
                int lx, ly;
                if (load(a, &x, &lx, hx) < 0 || load(b_seq, &y, &ly, hy) < 0)
                        die("no such record");
                store_row(a, y, ly, hy);
                store_row(b_seq, x, lx, hx);
                free(x);
                free(y);
        } else if (streq(op, "insert") && argc == 4) {
                insert_after(a);
        } else if (streq(op, "truncate") && argc == 4) {
                char sql[128];
                snprintf(sql, sizeof sql, "DELETE FROM records WHERE seq >= %" PRIu64, a);
                exec(sql);
        } else if (streq(op, "resign") && (argc == 5 || argc == 6)) {
                resign(argv[3], strtoull(argv[4], NULL, 10), argc == 6 && streq(argv[5], "own"));
        } else {
                fprintf(stderr, "tamper: unknown operation or wrong arguments\n");
                return 2;
        }
        exec("COMMIT");
        sqlite3_close(db);
        return 0;
}
