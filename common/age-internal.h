/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared between the age-*.c files (and the unit tests and the header fuzzer):
 * the parsed header, strict base64, HKDF, and the key wrapping of each stanza type.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <sodium.h>

#include "age.h"
#include "cleanup.h"

#define AGE_VERSION_LINE "age-encryption.org/v1"
#define AGE_TAG_SIZE 16
#define AGE_NONCE_SIZE 16
#define AGE_MAC_SIZE 32
#define AGE_KEY_SIZE 32
#define AGE_COLUMNS 64

/* For secrets in sodium_malloc memory: sodium_free wipes them and accepts NULL. */
static inline void sodium_freep(void *p)
{
        sodium_free(*(void **) p);
}
#define _cleanup_sodium_free_ _cleanup_(sodium_freep)

struct mamori_age_identity {
        uint8_t secret[32];
};

typedef struct age_stanza {
        char **args; /* args[0] is the type */
        size_t n_args;
        uint8_t *body;
        size_t body_len;
} age_stanza;

typedef struct age_header {
        age_stanza *stanzas;
        size_t n_stanzas;
        uint8_t mac[AGE_MAC_SIZE];
        size_t mac_input_len; /* bytes from the start through "---" */
        size_t len;           /* whole header, through the MAC line's newline */
} age_header;

/*
 * Parses a header at the start of buf. Returns 0 and *ret on success, -ENODATA if
 * buf ends before the header does (read more and call again), -EBADMSG if the
 * bytes present cannot start a valid header, -ENOMEM.
 */
int age_header_parse(const uint8_t *buf, size_t len, age_header **ret);
/* Frees a parsed header; accepts NULL; returns NULL. */
age_header *age_header_free(age_header *h);

/* Appends one stanza to a growing header text (malloc'd *text of *text_len). Returns 0 or -ENOMEM. */
int age_stanza_append(char **text, size_t *text_len, const char *const *args, size_t n_args,
                      const uint8_t *body, size_t body_len);

/* Strict unpadded standard base64: returns 0 if s[0..len) decodes to exactly out_len bytes. */
int age_b64_decode_exact(const char *s, size_t len, uint8_t *out, size_t out_len);

/* HKDF-SHA256 (RFC 5869). out_len at most 255*32. Returns 0 or -EINVAL. */
int age_hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *ikm, size_t ikm_len,
                    const uint8_t *salt, size_t salt_len, const char *info);

/* Header MAC over buf[0..mac_input_len) keyed from the file key. */
void age_header_mac(uint8_t mac[AGE_MAC_SIZE], const uint8_t file_key[MAMORI_AGE_FILE_KEY_SIZE],
                    const uint8_t *buf, size_t len);

/* X25519 stanza for one recipient, appended to the header text. Returns 0 or -errno. */
int age_x25519_wrap(char **text, size_t *text_len, const mamori_age_recipient *rcpt,
                    const uint8_t file_key[MAMORI_AGE_FILE_KEY_SIZE]);
/* scrypt stanza, appended. Returns 0 or -errno. */
int age_scrypt_wrap(char **text, size_t *text_len, const char *passphrase, unsigned log2n,
                    const uint8_t file_key[MAMORI_AGE_FILE_KEY_SIZE]);

/*
 * Finds the file key in a parsed header and checks the header MAC over raw.
 * Returns 0 and writes ret_file_key, or -EBADMSG, -ENOKEY, -E2BIG, -EINVAL, -ENOMEM.
 */
int age_header_unwrap(const age_header *h, const uint8_t *raw, const mamori_age_decrypt_opts *opts,
                      uint8_t ret_file_key[MAMORI_AGE_FILE_KEY_SIZE]);

/* Builds a complete header (stanzas, MAC line) for a fresh file key. Returns 0 or -errno. */
int age_header_build(const mamori_age_encrypt_opts *opts, const uint8_t file_key[MAMORI_AGE_FILE_KEY_SIZE],
                     char **ret_text, size_t *ret_len);

/* Input with what the header reader read past the header, and one byte of pushback. */
typedef struct age_source {
        int fd;
        uint8_t *pre;
        size_t pre_len, pre_off;
        int pushback;
        size_t header_len; /* bytes of header, for random access */
} age_source;

/* Keys of one file; sodium_malloc'd. */
typedef struct age_payload_keys {
        uint8_t file_key[MAMORI_AGE_FILE_KEY_SIZE];
        uint8_t payload_key[AGE_KEY_SIZE];
} age_payload_keys;

/* Opens one STREAM chunk (clen bytes at p, in place). Returns the plaintext length or
 * -EBADMSG (bad tag, or an empty final chunk after others). */
ssize_t age_chunk_open(const uint8_t *key, uint64_t counter, bool last, uint8_t *p, size_t clen);
/* Reads up to len bytes, short only at end of file. Returns the count or -errno. */
ssize_t age_source_read(age_source *in, uint8_t *buf, size_t len);
/* Returns 1 at end of file, 0 if a byte follows (kept for the next read), or -errno. */
int age_source_at_eof(age_source *in);
/* Frees what the header reader kept. */
void age_source_done(age_source *in);
/* Reads the header from fd, finds the file key, reads the nonce, derives the payload
 * key into k. Returns 0 or -errno (see age.h). */
int age_payload_open(int fd, const mamori_age_decrypt_opts *opts, age_source *in, age_payload_keys *k);
