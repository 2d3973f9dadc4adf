/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "cleanup.h"

#define EPOCHS_MAX 100000u

typedef struct epoch {
        uint64_t first_seq;
        uint8_t pk[MAMORI_PK_LEN];
} epoch;

typedef enum phase {
        PHASE_OK,       /* no fault yet */
        PHASE_CLASSIFY, /* a sequence anomaly seen; reading on to tell what it is */
        PHASE_DONE,     /* fault known */
} phase;

struct mamori_verifier {
        uint8_t anchor[MAMORI_PK_LEN];
        epoch *epochs;
        uint32_t n_epochs;
        phase phase;
        mamori_verify_result res;

        bool started;
        uint64_t expected;     /* next record seq */
        uint64_t last_row;     /* last row key seen */
        uint8_t prev[MAMORI_HASH_LEN];
        uint64_t sealed_seq;   /* last seq covered by a verified checkpoint */
        uint64_t max_cp_seq;   /* highest checkpoint seq seen */
        uint64_t stub_seq;     /* > 0: records up to here were purged; a purge record must say so */
        bool stub_accounted;

        /* PHASE_CLASSIFY: at row `anomaly_row` we expected `want` but read `got`. */
        uint64_t want, got, anomaly_row;
        int next_after_anomaly; /* -1 unknown, else 1 if the next row continued from got */
        bool want_found;
        uint64_t want_found_row;
};

static const char *const fault_names[_MAMORI_VERIFY_FAULT_MAX] = {
        [MAMORI_VERIFY_OK] = "ok",
        [MAMORI_VERIFY_ALTERED] = "altered",
        [MAMORI_VERIFY_MISSING] = "missing",
        [MAMORI_VERIFY_REORDERED] = "reordered",
        [MAMORI_VERIFY_INSERTED] = "inserted",
        [MAMORI_VERIFY_TRUNCATED] = "truncated",
        [MAMORI_VERIFY_BAD_SIGNATURE] = "bad-signature",
        [MAMORI_VERIFY_BAD_EPOCH] = "bad-epoch",
};

const char *mamori_verify_fault_to_string(mamori_verify_fault f)
{
        return f < _MAMORI_VERIFY_FAULT_MAX ? fault_names[f] : "invalid";
}

int mamori_verifier_new(const uint8_t anchor[MAMORI_PK_LEN], mamori_verifier **ret)
{
        mamori_verifier *v = calloc(1, sizeof *v);
        if (!v)
                return -ENOMEM;
        memcpy(v->anchor, anchor, MAMORI_PK_LEN);
        v->next_after_anomaly = -1;
        *ret = v;
        return 0;
}

void mamori_verifier_free(mamori_verifier *v)
{
        if (!v)
                return;
        free(v->epochs);
        free(v);
}

/* Records the first fault; later ones are ignored. */
__attribute__((format(printf, 4, 5))) static void fail(mamori_verifier *v, mamori_verify_fault f,
                                                       uint64_t seq, const char *fmt, ...)
{
        if (v->phase == PHASE_DONE)
                return;
        v->phase = PHASE_DONE;
        v->res.fault = f;
        v->res.seq = seq;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(v->res.message, sizeof v->res.message, fmt, ap);
        va_end(ap);
}

bool mamori_verifier_done(const mamori_verifier *v)
{
        return v->phase == PHASE_DONE;
}

int mamori_verifier_add_epoch(mamori_verifier *v, uint32_t e, uint64_t first_seq,
                              const uint8_t pk[MAMORI_PK_LEN], const uint8_t *cert)
{
        if (v->phase != PHASE_OK)
                return 0;
        if (e != v->n_epochs || e >= EPOCHS_MAX) {
                fail(v, MAMORI_VERIFY_BAD_EPOCH, first_seq, "epoch %" PRIu32 " is out of order (expected epoch %" PRIu32 ")", e, v->n_epochs);
                return 0;
        }
        if (e == 0) {
                if (sodium_memcmp(pk, v->anchor, MAMORI_PK_LEN) != 0) {
                        fail(v, MAMORI_VERIFY_BAD_EPOCH, 0, "epoch 0 key is not the anchor");
                        return 0;
                }
        } else {
                uint8_t msg[80];
                size_t n = mamori_epoch_message(e, pk, first_seq, msg);
                const epoch *p = &v->epochs[e - 1];
                if (!cert || first_seq < p->first_seq ||
                    crypto_sign_verify_detached(cert, msg, n, p->pk) != 0) {
                        fail(v, MAMORI_VERIFY_BAD_EPOCH, first_seq,
                             "epoch %" PRIu32 " (from seq %" PRIu64 "): its key is not certified by epoch %" PRIu32,
                             e, first_seq, e - 1);
                        return 0;
                }
        }
        epoch *n = realloc(v->epochs, (v->n_epochs + 1) * sizeof *n);
        if (!n)
                return -ENOMEM;
        v->epochs = n;
        n[v->n_epochs].first_seq = first_seq;
        memcpy(n[v->n_epochs].pk, pk, MAMORI_PK_LEN);
        v->n_epochs++;
        v->res.epochs = v->n_epochs;
        return 0;
}

/* Reads the seq out of a record's encoding; false if it is not a record. */
static bool peek_seq(const uint8_t *body, size_t len, uint64_t *ret)
{
        const char *type;
        size_t tl;
        return mamori_record_peek(body, len, ret, &type, &tl) == 0;
}

/* While classifying an anomaly, watch the rest of the stream. */
static void classify_row(mamori_verifier *v, uint64_t row, uint64_t seq)
{
        if (v->next_after_anomaly < 0)
                v->next_after_anomaly = seq == v->got + 1;
        if (seq == v->want && !v->want_found) {
                v->want_found = true;
                v->want_found_row = row;
        }
}

/* Checks a purge record (decoded in full: purges are rare) against the purged prefix. */
static void note_purge(mamori_verifier *v, const uint8_t *body, size_t len)
{
        static const char purge[] = "evidence.purge";
        uint64_t seq;
        const char *type;
        size_t tl;
        if (v->stub_seq == 0 || mamori_record_peek(body, len, &seq, &type, &tl) < 0 ||
            tl != STRLEN(purge) || memcmp(type, purge, tl) != 0)
                return;
        _cleanup_(mamori_record_freep) mamori_record *rec = NULL;
        if (mamori_record_decode(body, len, &rec) < 0)
                return;
        const char *last = mamori_record_get(rec, "last_seq");
        char want[32];
        snprintf(want, sizeof want, "%" PRIu64, v->stub_seq);
        if (last && streq(last, want))
                v->stub_accounted = true;
}

int mamori_verifier_add_record(mamori_verifier *v, uint64_t row, const uint8_t *body, size_t len,
                               const uint8_t stored[MAMORI_HASH_LEN])
{
        uint64_t seq;
        bool peeked = peek_seq(body, len, &seq);
        if (v->phase == PHASE_CLASSIFY) {
                if (peeked)
                        classify_row(v, row, seq);
                return 0;
        }
        if (v->phase == PHASE_DONE)
                return 0;
        if (!v->started) {
                v->started = true;
                if (v->expected == 0)
                        v->expected = 1;
        }
        /* Only the seq is read here: a record whose bytes changed is caught by its hash,
         * which covers every byte, so a full decode per record would buy nothing. */
        if (!peeked) {
                fail(v, MAMORI_VERIFY_ALTERED, v->expected,
                     "record %" PRIu64 " was altered: it is no longer a record", v->expected);
                return 0;
        }
        if (seq != v->expected) {
                v->phase = PHASE_CLASSIFY;
                v->want = v->expected;
                v->got = seq;
                v->anomaly_row = row;
                return 0;
        }
        uint8_t h[MAMORI_HASH_LEN];
        mamori_chain_hash(v->prev, body, len, h);
        if (sodium_memcmp(h, stored, MAMORI_HASH_LEN) != 0) {
                fail(v, MAMORI_VERIFY_ALTERED, seq,
                     "record %" PRIu64 " was altered: its hash does not follow from its bytes and the record before it",
                     seq);
                return 0;
        }
        note_purge(v, body, len);
        memcpy(v->prev, h, MAMORI_HASH_LEN);
        if (v->res.records == 0)
                v->res.first_seq = seq;
        v->res.last_seq = seq;
        v->res.records++;
        v->res.bytes += len;
        v->last_row = row;
        v->expected++;
        return 0;
}

/* The epoch whose records include seq (a checkpoint at an epoch's last record is that epoch's). */
static int64_t epoch_of(const mamori_verifier *v, uint64_t seq)
{
        int64_t e = -1;
        for (uint32_t i = 0; i < v->n_epochs; i++)
                if (v->epochs[i].first_seq <= seq || i == 0)
                        e = i;
        return e;
}

int mamori_verifier_add_checkpoint(mamori_verifier *v, uint64_t seq, uint32_t e,
                                   const uint8_t hash[MAMORI_HASH_LEN],
                                   const uint8_t sig[MAMORI_SIG_LEN])
{
        if (v->phase != PHASE_OK)
                return 0;
        if (seq > v->max_cp_seq)
                v->max_cp_seq = seq;
        int64_t owner = epoch_of(v, seq);
        if (owner < 0 || (uint32_t)owner != e) {
                fail(v, MAMORI_VERIFY_BAD_SIGNATURE, seq,
                     "checkpoint at seq %" PRIu64 " claims epoch %" PRIu32 ", but that seq belongs to epoch %" PRId64 ": re-signed with another epoch's key",
                     seq, e, owner);
                return 0;
        }
        uint8_t msg[64];
        size_t n = mamori_checkpoint_message(seq, hash, e, msg);
        if (crypto_sign_verify_detached(sig, msg, n, v->epochs[e].pk) != 0) {
                fail(v, MAMORI_VERIFY_BAD_SIGNATURE, seq,
                     "checkpoint at seq %" PRIu64 " (sealing records %" PRIu64 "..%" PRIu64 "): signature does not verify with epoch %" PRIu32 "'s key",
                     seq, v->sealed_seq + 1, seq, e);
                return 0;
        }
        if (!v->started) {
                /* A checkpoint before any record: the seal of a purged prefix. The chain
                 * goes on from its hash, and a purge record must account for it. */
                v->started = true;
                v->stub_seq = seq;
                v->expected = seq + 1;
                memcpy(v->prev, hash, MAMORI_HASH_LEN);
                v->sealed_seq = seq;
                v->res.checkpoints++;
                return 0;
        }
        if (seq != v->expected - 1)
                return 0; /* seals records we have not seen: judged at the end (truncation) */
        if (sodium_memcmp(hash, v->prev, MAMORI_HASH_LEN) != 0) {
                fail(v, MAMORI_VERIFY_ALTERED, seq,
                     "records %" PRIu64 "..%" PRIu64 " were altered: they do not match the checkpoint at seq %" PRIu64,
                     v->sealed_seq + 1, seq, seq);
                return 0;
        }
        v->sealed_seq = seq;
        v->res.checkpoints++;
        return 0;
}

/* Turns a sequence anomaly (at the row where `want` belonged we read `got`) into a
 * fault. If the rows after it go on from `got`, the sequence itself shifted: records
 * are missing (got > want) or one was inserted (got < want). If they go on from
 * `want`, that one record was changed, unless `want` turns up later: reordered. */
static void classify_finish(mamori_verifier *v)
{
        if (v->got > v->want && v->want_found)
                fail(v, MAMORI_VERIFY_REORDERED, v->want,
                     "records were reordered: record %" PRIu64 " is stored after record %" PRIu64 " (at %" PRIu64 ")",
                     v->want, v->got, v->want_found_row);
        else if (v->next_after_anomaly != 0 && v->got > v->want)
                fail(v, MAMORI_VERIFY_MISSING, v->want,
                     v->got - v->want == 1 ? "record %" PRIu64 " is missing" : "records %" PRIu64 "..%" PRIu64 " are missing",
                     v->want, v->got - 1);
        else if (v->next_after_anomaly != 0)
                fail(v, MAMORI_VERIFY_INSERTED, v->got,
                     "a record was inserted: two records claim seq %" PRIu64 " (the second stored at %" PRIu64 ")",
                     v->got, v->anomaly_row);
        else
                fail(v, MAMORI_VERIFY_ALTERED, v->want,
                     "record %" PRIu64 " was altered: it claims seq %" PRIu64, v->want, v->got);
}

int mamori_verifier_finish(mamori_verifier *v, mamori_verify_result *ret)
{
        if (v->phase == PHASE_CLASSIFY)
                classify_finish(v);
        if (v->phase == PHASE_OK && v->n_epochs == 0 && (v->started || v->res.records > 0))
                fail(v, MAMORI_VERIFY_BAD_EPOCH, 0, "the store has records but no epoch keys");
        if (v->phase == PHASE_OK && v->max_cp_seq > 0 && v->max_cp_seq >= v->expected)
                fail(v, MAMORI_VERIFY_TRUNCATED, v->expected,
                     "truncated: records after %" PRIu64 " are gone, but the checkpoint at seq %" PRIu64 " sealed them",
                     v->expected - 1, v->max_cp_seq);
        if (v->phase == PHASE_OK && v->stub_seq > 0 && !v->stub_accounted)
                fail(v, MAMORI_VERIFY_MISSING, 1,
                     "records 1..%" PRIu64 " are gone and no purge record accounts for them", v->stub_seq);
        if (v->phase == PHASE_OK && !v->stub_seq && v->res.records > 0 && v->res.first_seq != 1)
                fail(v, MAMORI_VERIFY_MISSING, 1, "records before %" PRIu64 " are missing", v->res.first_seq);
        v->res.unsealed = v->expected > v->sealed_seq + 1 ? v->expected - 1 - v->sealed_seq : 0;
        if (v->phase == PHASE_OK)
                snprintf(v->res.message, sizeof v->res.message,
                         "%" PRIu64 " records intact (%" PRIu64 " checkpoints, %" PRIu32 " epochs, %" PRIu64 " not yet sealed)",
                         v->res.records, v->res.checkpoints, v->res.epochs, v->res.unsealed);
        *ret = v->res;
        return v->res.fault == MAMORI_VERIFY_OK ? 0 : 1;
}

int mamori_anchor_parse(const char *text, uint8_t ret[MAMORI_PK_LEN])
{
        static const char prefix[] = "mamori-anchor-v1 ";
        if (strncmp(text, prefix, STRLEN(prefix)) != 0)
                return -EINVAL;
        const char *hex = text + STRLEN(prefix);
        size_t n = strlen(hex);
        while (n > 0 && (hex[n - 1] == '\n' || hex[n - 1] == '\r'))
                n--;
        uint8_t pk[MAMORI_PK_LEN];
        size_t got;
        if (n != 2 * MAMORI_PK_LEN ||
            sodium_hex2bin(pk, sizeof pk, hex, n, NULL, &got, NULL) != 0 || got != MAMORI_PK_LEN)
                return -EINVAL;
        memcpy(ret, pk, MAMORI_PK_LEN);
        return 0;
}

char *mamori_anchor_format(const uint8_t pk[MAMORI_PK_LEN], char buf[static 96])
{
        char hex[2 * MAMORI_PK_LEN + 1];
        sodium_bin2hex(hex, sizeof hex, pk, MAMORI_PK_LEN);
        snprintf(buf, 96, "mamori-anchor-v1 %s\n", hex);
        return buf;
}
