/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Signed media grants (docs/design.md, "Media ledger and grants"): one canonical
 * binary encoding that mediactl signs and policyd verifies, signed revocations, and
 * a text armor for carrying a grant to another terminal (R-PERM-1..3).
 *
 * Grant encoding (integers big-endian; str = u16 length + UTF-8 bytes, no NUL):
 *   "MGRT" u8 version=1 | id[16] | manager_pk[32] | i64 created_us | i64 from_us
 *   | i64 until_us | u8 modes | u8 flags | u8 subject_kind | str subject
 *   | str media | str host
 * media "*" means every registered medium, host "*" any host. A signed grant is
 * the encoding followed by an Ed25519 signature over
 *   "mamori-grant-v1" NUL || encoding.
 * Revocation: "MRVK" u8 version=1 | grant_id[16] | manager_pk[32] | i64 time_us,
 * signed over "mamori-revoke-v1" NUL || encoding.
 * A given grant has exactly one encoding; decoding refuses anything else.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#define MAMORI_GRANT_ID_LEN 16
#define MAMORI_GRANT_PK_LEN crypto_sign_PUBLICKEYBYTES
#define MAMORI_GRANT_SK_LEN crypto_sign_SECRETKEYBYTES
#define MAMORI_GRANT_SIG_LEN crypto_sign_BYTES
#define MAMORI_GRANT_MAX 1024u          /* a signed grant is never longer */
#define MAMORI_REVOKE_LEN (4 + 1 + 16 + 32 + 8)
#define MAMORI_MEDIA_NO_MAX 64u         /* bytes; and at most 32 characters */
#define MAMORI_MEDIA_NO_CHARS 32u
#define MAMORI_NAME_MAX 32u             /* user and group names */
#define MAMORI_HOST_MAX 253u

/* What a grant permits (R-OUT-1..3): separate bits, so that permitting encrypted
 * output does not permit passphrase or plaintext output. */
enum {
        MAMORI_MODE_READ = 1u << 0,
        MAMORI_MODE_WRITE_ENCRYPTED = 1u << 1,  /* organisation key (age recipient) */
        MAMORI_MODE_WRITE_PASSPHRASE = 1u << 2, /* self-decrypting (age scrypt) */
        MAMORI_MODE_WRITE_PLAIN = 1u << 3,
        MAMORI_MODE_ALL = 0x0f,
};

enum {
        MAMORI_GRANT_ONCE = 1u << 0, /* one operation, then used up (R-PERM-3) */
};

typedef enum mamori_subject_kind {
        MAMORI_SUBJECT_USER = 1,
        MAMORI_SUBJECT_GROUP = 2,
        MAMORI_SUBJECT_ANY = 3, /* decision entries only (optical exception); never in a grant */
} mamori_subject_kind;

typedef struct mamori_grant {
        uint8_t id[MAMORI_GRANT_ID_LEN];
        uint8_t manager_pk[MAMORI_GRANT_PK_LEN];
        int64_t created_us, from_us, until_us;
        uint8_t modes, flags, subject_kind;
        char subject[MAMORI_NAME_MAX + 1];
        char media[MAMORI_MEDIA_NO_MAX + 1];
        char host[MAMORI_HOST_MAX + 1];
} mamori_grant;

/* True if s is a valid management number: 1..32 characters of UTF-8 (Japanese labels
 * are allowed), at most 64 bytes, no whitespace (ASCII or ideographic), control
 * characters, ',', or '*' (reserved for "all media"). */
bool mamori_media_no_valid(const char *s);
/* True for a user or group name: [A-Za-z_][A-Za-z0-9_.-]*, at most 32 bytes. */
bool mamori_name_valid(const char *s);
/* True for a host name: 1..253 of [A-Za-z0-9.-], or "*" when star is true. */
bool mamori_host_valid(const char *s, bool star);

/* Parses "read,write-encrypted,..." into mode bits. Returns 0 or -EINVAL. */
int mamori_modes_parse(const char *s, uint8_t *ret);
/* Formats mode bits as "read,write-encrypted"; returns buf. */
char *mamori_modes_format(uint8_t modes, char buf[static 64]);

/* Checks a grant's fields (names, ranges, until > from). Returns 0 or -EINVAL with a
 * static reason in *ret_why (may be NULL). */
int mamori_grant_check(const mamori_grant *g, const char **ret_why);
/* Encodes canonically into buf (MAMORI_GRANT_MAX bytes). Returns the length or -EINVAL. */
int mamori_grant_encode(const mamori_grant *g, uint8_t buf[static MAMORI_GRANT_MAX]);
/* Decodes a canonical encoding (without signature). Returns 0 or -EBADMSG. */
int mamori_grant_decode(const uint8_t *buf, size_t len, mamori_grant *ret);
/* Signs g with sk (its public half must be g->manager_pk). Writes encoding||signature
 * to buf; returns its length, or -EINVAL. */
int mamori_grant_sign(const mamori_grant *g, const uint8_t sk[static MAMORI_GRANT_SK_LEN],
                      uint8_t buf[static MAMORI_GRANT_MAX]);
/* Decodes a signed grant and verifies its signature against the key inside it (the
 * caller decides whether that key is trusted). Returns 0, -EBADMSG (not a grant),
 * -EBADE (signature does not verify). Fields out of range count as -EBADMSG. */
int mamori_grant_verify(const uint8_t *buf, size_t len, mamori_grant *ret);

/* Builds a signed revocation of grant id by the key sk into out. */
void mamori_revoke_sign(const uint8_t id[static MAMORI_GRANT_ID_LEN], int64_t time_us,
                        const uint8_t sk[static MAMORI_GRANT_SK_LEN],
                        uint8_t out[static MAMORI_REVOKE_LEN + MAMORI_GRANT_SIG_LEN]);
/* Verifies a signed revocation. Returns 0 with the grant id, key and time, -EBADMSG, -EBADE. */
int mamori_revoke_verify(const uint8_t *buf, size_t len, uint8_t ret_id[static MAMORI_GRANT_ID_LEN],
                         uint8_t ret_pk[static MAMORI_GRANT_PK_LEN], int64_t *ret_time);

/* Text armor: "-----BEGIN MAMORI GRANT-----", base64 lines of 64, "-----END MAMORI GRANT-----".
 * Formats into a malloc'd string; returns 0 or -ENOMEM. */
int mamori_grant_armor(const uint8_t *buf, size_t len, char **ret);
/* Parses armored text (strictly: the two lines and base64 between them, optional final
 * newline). Returns the length of the signed grant written to out, or -EBADMSG. */
int mamori_grant_dearmor(const char *text, size_t len, uint8_t out[static MAMORI_GRANT_MAX]);

/* Lower-case hex of a grant id (33 bytes with NUL). Returns buf. */
char *mamori_grant_id_format(const uint8_t id[static MAMORI_GRANT_ID_LEN], char buf[static 33]);
/* Parses 32 hex digits. Returns 0 or -EINVAL. */
int mamori_grant_id_parse(const char *s, uint8_t ret[static MAMORI_GRANT_ID_LEN]);
/* Manager public key text form: standard base64 of the 32 bytes (44 characters). */
char *mamori_pubkey_format(const uint8_t pk[static MAMORI_GRANT_PK_LEN], char buf[static 48]);
int mamori_pubkey_parse(const char *s, uint8_t ret[static MAMORI_GRANT_PK_LEN]);

/* A decision's verdict (MAMORI_F_VERDICT). */
typedef enum mamori_verdict {
        MAMORI_VERDICT_BLOCKED = 0, /* keep the device unauthorised */
        MAMORI_VERDICT_ALLOWED = 1, /* authorise; users and modes as the entries say */
        MAMORI_VERDICT_EXEMPT = 2,  /* exempt host: media control off (R-EXC-1) */
        MAMORI_VERDICT_AUDIT = 3,   /* audit-only host: not enforced, recorded */
        MAMORI_VERDICT_IDENTIFY = 4, /* a registration with this identity carries a mark
                                      * (filesystem UUID or size) the request did not: the
                                      * agent authorises the device only to read the mark,
                                      * mounts nothing, and asks again with it */
        _MAMORI_VERDICT_MAX,
} mamori_verdict;
const char *mamori_verdict_to_string(int v);

/* One (subject, modes, expiry) of a decision (MAMORI_F_ENTRY):
 *   u8 kind | u8 modes | u8 once | i64 until_us | id[16] | subject bytes (rest)
 * id is all zero for rights that come from the registration itself. */
typedef struct mamori_entry {
        uint8_t kind, modes, once;
        int64_t until_us;
        uint8_t id[MAMORI_GRANT_ID_LEN];
        char subject[MAMORI_NAME_MAX + 1];
} mamori_entry;
#define MAMORI_ENTRY_MAX (3 + 8 + MAMORI_GRANT_ID_LEN + MAMORI_NAME_MAX)
/* Encodes e into buf; returns the length. */
size_t mamori_entry_encode(const mamori_entry *e, uint8_t buf[static MAMORI_ENTRY_MAX]);
/* Decodes an entry. Returns 0 or -EBADMSG. */
int mamori_entry_decode(const uint8_t *buf, size_t len, mamori_entry *ret);
