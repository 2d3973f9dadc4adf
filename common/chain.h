/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The evidence-chain verifier (R-EV-7, R-CRY-4): fed the epochs, then the records
 * and checkpoints in sequence order (a checkpoint after the record it seals), it
 * recomputes the hash chain, checks every checkpoint signature against the epoch
 * keys certified from the anchor, and names the first thing that does not fit.
 * The same verifier serves a live store (policyd's export stream) and an offline
 * copy of the database (mediactl verify --db).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"

typedef enum mamori_verify_fault {
        MAMORI_VERIFY_OK = 0,
        MAMORI_VERIFY_ALTERED,       /* a record's bytes changed */
        MAMORI_VERIFY_MISSING,       /* records removed */
        MAMORI_VERIFY_REORDERED,     /* records out of order */
        MAMORI_VERIFY_INSERTED,      /* a record that is not part of the chain */
        MAMORI_VERIFY_TRUNCATED,     /* records gone after a checkpoint that sealed them */
        MAMORI_VERIFY_BAD_SIGNATURE, /* a checkpoint does not verify under its epoch key */
        MAMORI_VERIFY_BAD_EPOCH,     /* the epoch key chain does not lead back to the anchor */
        _MAMORI_VERIFY_FAULT_MAX,
} mamori_verify_fault;

typedef struct mamori_verify_result {
        mamori_verify_fault fault;
        uint64_t seq;          /* the record (or checkpoint) named, 0 if none */
        char message[256];     /* one line for people */
        uint64_t records;      /* records that verified */
        uint64_t checkpoints;  /* checkpoints that verified */
        uint64_t unsealed;     /* records after the last checkpoint (verified by hash only) */
        uint64_t bytes;        /* record bytes hashed */
        uint64_t first_seq, last_seq;
        uint32_t epochs;
} mamori_verify_result;

typedef struct mamori_verifier mamori_verifier;

/* Returns the fault's name ("altered", "missing", ...). */
const char *mamori_verify_fault_to_string(mamori_verify_fault f);

/* Starts a verification against the anchor (epoch 0's public key). Returns 0 or -ENOMEM. */
int mamori_verifier_new(const uint8_t anchor[MAMORI_PK_LEN], mamori_verifier **ret);
void mamori_verifier_free(mamori_verifier *v);
/* Feed the epochs in order; cert is NULL for epoch 0. Always returns 0: faults are kept
 * and reported by mamori_verifier_finish(). */
int mamori_verifier_add_epoch(mamori_verifier *v, uint32_t epoch, uint64_t first_seq,
                              const uint8_t pk[MAMORI_PK_LEN], const uint8_t *cert);
/* Feed one stored record: its row key, canonical bytes and stored hash. */
int mamori_verifier_add_record(mamori_verifier *v, uint64_t row_seq, const uint8_t *body,
                               size_t len, const uint8_t stored_hash[MAMORI_HASH_LEN]);
/* Feed one checkpoint. */
int mamori_verifier_add_checkpoint(mamori_verifier *v, uint64_t seq, uint32_t epoch,
                                   const uint8_t hash[MAMORI_HASH_LEN],
                                   const uint8_t sig[MAMORI_SIG_LEN]);
/* True once a fault has been found and classified enough that more input cannot
 * change the verdict (callers may stop feeding). */
bool mamori_verifier_done(const mamori_verifier *v);
/* Ends the walk and fills *ret. Returns 0 if the chain is intact, 1 if not. */
int mamori_verifier_finish(mamori_verifier *v, mamori_verify_result *ret);

/* Parses "mamori-anchor-v1 <64 hex>" (trailing newline allowed). Returns 0 or -EINVAL. */
int mamori_anchor_parse(const char *text, uint8_t ret[MAMORI_PK_LEN]);
/* Formats an anchor line (with newline) into buf. Returns buf. */
char *mamori_anchor_format(const uint8_t pk[MAMORI_PK_LEN], char buf[static 96]);
