/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Evidence records: the canonical binary encoding that the hash chain covers, and
 * the chain's hashing and signing rules (docs/design.md, "Evidence store").
 *
 * Encoding (all integers big-endian; str = u16 length + UTF-8 bytes, no NUL):
 *   "MREC" u8 version=1 | u64 seq | i64 time_us | u8 clock_synced | u32 uid
 *   | str type | str component | str host | str machine_id
 *   | u16 n | n × (str key | u32 length + value bytes), keys strictly ascending
 * A given record has exactly one encoding; decoding refuses anything else.
 *
 * hash(n)      = BLAKE2b-256(hash(n-1) || encoding(n)), hash(0) = 32 zero bytes
 * checkpoint   = Ed25519 over "mamori-checkpoint-v1" || u64 seq || hash(seq) || u32 epoch
 * epoch cert   = Ed25519 by epoch e-1's key over
 *                "mamori-epoch-v1" || u32 e || pubkey(e) || u64 first_seq(e)
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "cleanup.h"

#define MAMORI_HASH_LEN 32
#define MAMORI_PK_LEN crypto_sign_PUBLICKEYBYTES
#define MAMORI_SK_LEN crypto_sign_SECRETKEYBYTES
#define MAMORI_SIG_LEN crypto_sign_BYTES
#define MAMORI_RECORD_MAX (60u * 1024u) /* an encoded record fits one wire message */
#define MAMORI_RECORD_PAIRS_MAX 64u
#define MAMORI_TYPE_MAX 64u
#define MAMORI_VALUE_MAX 4096u

typedef struct mamori_pair {
        char *key;
        char *value;
} mamori_pair;

typedef struct mamori_record {
        uint64_t seq;
        int64_t time_us;
        bool clock_synced;
        uint32_t uid;
        char *type;
        char *component;
        char *host;
        char *machine_id;
        size_t n_pairs, n_alloc;
        mamori_pair *pairs; /* sorted by key, unique, after mamori_record_encode() */
} mamori_record;

/* Allocates an empty record. Returns 0 or -ENOMEM. */
int mamori_record_new(mamori_record **ret);
void mamori_record_free(mamori_record *rec);
/* Sets one of the string header fields (copies). Returns 0, -EINVAL, -ENOMEM. */
int mamori_record_set(mamori_record *rec, char **field, const char *value);
/* Adds a (key, value) field. Returns 0, -EINVAL for a bad key or value, -EEXIST when
 * the key is present, -E2BIG past MAMORI_RECORD_PAIRS_MAX, -ENOMEM. */
int mamori_record_add(mamori_record *rec, const char *key, const char *value);
/* Returns the value of key, or NULL. */
const char *mamori_record_get(const mamori_record *rec, const char *key);
/* True if type is a valid record type: 1..64 of [a-z0-9_.-], starting with a letter. */
bool mamori_record_type_valid(const char *type);

/* Encodes canonically (sorting the pairs). Returns the length (> 0) and a malloc'd
 * buffer, -EINVAL for a record that cannot be encoded, -E2BIG past MAMORI_RECORD_MAX. */
int mamori_record_encode(mamori_record *rec, uint8_t **ret);
/* Decodes a canonical encoding. Returns 0, -EBADMSG for anything not canonical, -ENOMEM. */
int mamori_record_decode(const uint8_t *buf, size_t len, mamori_record **ret);

/* Reads the seq and type out of an encoding without allocating (the verifier's fast
 * path: whether the rest is canonical is settled by the hash). Returns 0 and points
 * *ret_type at the type's bytes (not NUL-terminated), or -EBADMSG. */
int mamori_record_peek(const uint8_t *buf, size_t len, uint64_t *ret_seq, const char **ret_type,
                       size_t *ret_type_len);

/* next = BLAKE2b-256(prev || body). */
void mamori_chain_hash(const uint8_t prev[MAMORI_HASH_LEN], const uint8_t *body, size_t len,
                       uint8_t next[MAMORI_HASH_LEN]);
/* The bytes a checkpoint signature covers; returns their length. */
size_t mamori_checkpoint_message(uint64_t seq, const uint8_t hash[MAMORI_HASH_LEN], uint32_t epoch,
                                 uint8_t out[64]);
/* The bytes an epoch certificate covers; returns their length. */
size_t mamori_epoch_message(uint32_t epoch, const uint8_t pk[MAMORI_PK_LEN], uint64_t first_seq,
                            uint8_t out[80]);

/* Which retention class a record type belongs to (R-EV-11). */
typedef enum mamori_retention_class {
        MAMORI_RETAIN_MEDIA,      /* media.*, device.*: 5 years (R-EV-1, R-EV-2) */
        MAMORI_RETAIN_PERMISSION, /* grant.*: 1 year (R-EV-3) */
        MAMORI_RETAIN_LOGIN,      /* auth.*, session.*: 5 years (R-EV-5) */
        MAMORI_RETAIN_ADMIN,      /* everything else (R-EV-6) */
        _MAMORI_RETAIN_MAX,
} mamori_retention_class;
mamori_retention_class mamori_record_retention_class(const char *type);

/* Formats time_us as "YYYY-MM-DDTHH:MM:SS.uuuuuuZ". Returns buf. */
char *mamori_format_time(int64_t time_us, char buf[static 32]);
/* Parses "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS]" (UTC, optional trailing Z), or "now",
 * "-7d", "-12h". Refuses dates that do not exist. Returns 0 or -EINVAL. */
int mamori_parse_time(const char *s, int64_t *ret);
/* Current time in microseconds since the epoch, and whether the kernel's clock is
 * synchronised to a reference (adjtimex STA_UNSYNC clear). */
int64_t mamori_now_us(void);
bool mamori_clock_synced(void);
/* The same, asked of the kernel at most once a second (for hot paths). */
bool mamori_clock_synced_cached(void);
DEFINE_TRIVIAL_CLEANUP_FUNC(mamori_record *, mamori_record_free)
