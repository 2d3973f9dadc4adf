/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * age keys and key wrapping: X25519 identities and recipients (bech32 strings),
 * the X25519 and scrypt stanzas, HKDF-SHA256 on libsodium's HMAC-SHA256, and
 * finding the file key in a parsed header. Secrets live in sodium_malloc memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "age-internal.h"
#include "bech32.h"
#include "cleanup.h"

#define X25519_LABEL "age-encryption.org/v1/X25519"
#define SCRYPT_LABEL "age-encryption.org/v1/scrypt"
#define SCRYPT_SALT_SIZE 16
#define RECIPIENT_HRP "age"
#define IDENTITY_HRP "age-secret-key-"
#define B64_VARIANT sodium_base64_VARIANT_ORIGINAL_NO_PADDING

static const uint8_t zero_nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];

/* Scratch space for derived secrets of one wrap or unwrap, wiped by sodium_free. */
typedef struct wrap_scratch {
        uint8_t eph[32];
        uint8_t shared[32];
        uint8_t key[AGE_KEY_SIZE];
        uint8_t file_key[MAMORI_AGE_FILE_KEY_SIZE];
} wrap_scratch;

/* Extract (HMAC keyed by salt over ikm), then expand T(i) = HMAC(prk, T(i-1) || info || i). */
int age_hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *ikm, size_t ikm_len,
                    const uint8_t *salt, size_t salt_len, const char *info)
{
        crypto_auth_hmacsha256_state st;
        uint8_t prk[32], t[32];
        size_t t_len = 0;

        if (out_len > 255 * 32)
                return -EINVAL;
        crypto_auth_hmacsha256_init(&st, salt_len ? salt : (const uint8_t *) "", salt_len);
        crypto_auth_hmacsha256_update(&st, ikm, ikm_len);
        crypto_auth_hmacsha256_final(&st, prk);
        for (uint8_t i = 1; out_len > 0; i++) {
                size_t n = out_len < 32 ? out_len : 32;

                crypto_auth_hmacsha256_init(&st, prk, sizeof(prk));
                crypto_auth_hmacsha256_update(&st, t, t_len);
                crypto_auth_hmacsha256_update(&st, (const uint8_t *) info, strlen(info));
                crypto_auth_hmacsha256_update(&st, &i, 1);
                crypto_auth_hmacsha256_final(&st, t);
                t_len = 32;
                memcpy(out, t, n);
                out += n;
                out_len -= n;
        }
        sodium_memzero(prk, sizeof(prk));
        sodium_memzero(t, sizeof(t));
        sodium_memzero(&st, sizeof(st));
        return 0;
}

/* HMAC-SHA256 keyed by HKDF(file key, "", "header"). */
void age_header_mac(uint8_t mac[AGE_MAC_SIZE], const uint8_t file_key[MAMORI_AGE_FILE_KEY_SIZE],
                    const uint8_t *buf, size_t len)
{
        uint8_t key[32];

        age_hkdf_sha256(key, sizeof(key), file_key, MAMORI_AGE_FILE_KEY_SIZE, NULL, 0, "header");
        crypto_auth_hmacsha256(mac, buf, len, key);
        sodium_memzero(key, sizeof(key));
}

/* Allocates an identity in guarded, locked memory. */
static mamori_age_identity *identity_alloc(void)
{
        if (sodium_init() < 0)
                return NULL;
        return sodium_malloc(sizeof(mamori_age_identity));
}

mamori_age_identity *mamori_age_identity_free(mamori_age_identity *id)
{
        sodium_free(id); /* wipes, accepts NULL */
        return NULL;
}

int mamori_age_identity_generate(mamori_age_identity **ret)
{
        mamori_age_identity *id = identity_alloc();

        if (!id)
                return -ENOMEM;
        randombytes_buf(id->secret, sizeof(id->secret));
        *ret = id;
        return 0;
}

/* Decodes a bech32 string of exactly 32 bytes under hrp, written in the given case. */
static int decode_key32(const char *s, const char *hrp, bool upper, uint8_t out[32])
{
        _cleanup_free_ char *got_hrp = NULL;
        uint8_t *data = NULL;
        size_t len = 0;
        int r;

        for (const char *p = s; *p; p++)
                if (upper ? (*p >= 'a' && *p <= 'z') : (*p >= 'A' && *p <= 'Z'))
                        return -EINVAL;
        r = mamori_bech32_decode(s, &got_hrp, &data, &len);
        if (r < 0)
                return r;
        if (streq(got_hrp, hrp) && len == 32) {
                memcpy(out, data, 32);
                r = 0;
        } else
                r = -EINVAL;
        sodium_memzero(data, len);
        free(data);
        return r;
}

int mamori_age_identity_parse(const char *s, mamori_age_identity **ret)
{
        mamori_age_identity *id = identity_alloc();
        int r;

        if (!id)
                return -ENOMEM;
        r = decode_key32(s, IDENTITY_HRP, true, id->secret);
        if (r < 0) {
                mamori_age_identity_free(id);
                return r;
        }
        *ret = id;
        return 0;
}

void mamori_age_identities_free(mamori_age_identity **ids, size_t n)
{
        if (!ids)
                return;
        for (size_t i = 0; i < n; i++)
                mamori_age_identity_free(ids[i]);
        free(ids);
}

/* Splits lines, skips comments and blank lines; each other line must be an identity. */
int mamori_age_identities_parse_text(const char *text, mamori_age_identity ***ret, size_t *ret_n)
{
        mamori_age_identity **ids = NULL;
        size_t n = 0;
        int r = 0;

        for (const char *p = text; *p && r >= 0;) {
                size_t len = strcspn(p, "\n");
                if (len > 0 && p[0] != '#') {
                        _cleanup_sodium_free_ char *line = sodium_malloc(len + 1);
                        mamori_age_identity **a = reallocarray(ids, n + 1, sizeof(*ids));
                        if (!line || !a) {
                                r = -ENOMEM;
                                break;
                        }
                        ids = a;
                        memcpy(line, p, len);
                        line[len] = 0;
                        r = mamori_age_identity_parse(line, &ids[n]);
                        if (r >= 0)
                                n++;
                }
                p += len + (p[len] == '\n');
        }
        if (r >= 0 && n == 0)
                r = -EINVAL;
        if (r < 0) {
                mamori_age_identities_free(ids, n);
                return r;
        }
        *ret = ids;
        *ret_n = n;
        return 0;
}

int mamori_age_identity_format(const mamori_age_identity *id, char **ret)
{
        _cleanup_free_ char *s = NULL;
        char *copy;
        int r;

        r = mamori_bech32_encode(IDENTITY_HRP, id->secret, sizeof(id->secret), 1, &s);
        if (r < 0)
                return r;
        copy = sodium_malloc(strlen(s) + 1);
        if (copy)
                strcpy(copy, s);
        sodium_memzero(s, strlen(s));
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

int mamori_age_identity_to_recipient(const mamori_age_identity *id, mamori_age_recipient *ret)
{
        uint8_t pk[32];

        if (crypto_scalarmult_base(pk, id->secret) != 0 || sodium_is_zero(pk, sizeof(pk)))
                return -EINVAL;
        memcpy(ret->public_key, pk, sizeof(pk));
        return 0;
}

int mamori_age_recipient_parse(const char *s, mamori_age_recipient *ret)
{
        uint8_t pk[32];
        int r;

        r = decode_key32(s, RECIPIENT_HRP, false, pk);
        if (r < 0)
                return r;
        memcpy(ret->public_key, pk, sizeof(pk));
        return 0;
}

int mamori_age_recipient_format(const mamori_age_recipient *r, char **ret)
{
        return mamori_bech32_encode(RECIPIENT_HRP, r->public_key, sizeof(r->public_key), 0, ret);
}

/* Seals the file key under a wrap key: 32 bytes of stanza body. */
static void seal_file_key(uint8_t body[32], const uint8_t key[32], const uint8_t file_key[16])
{
        crypto_aead_chacha20poly1305_ietf_encrypt(body, NULL, file_key, MAMORI_AGE_FILE_KEY_SIZE, NULL,
                                                  0, NULL, zero_nonce, key);
}

/* Ephemeral share, shared secret, HKDF(shared, share || recipient) wraps the file key. */
int age_x25519_wrap(char **text, size_t *text_len, const mamori_age_recipient *rcpt,
                    const uint8_t file_key[MAMORI_AGE_FILE_KEY_SIZE])
{
        _cleanup_sodium_free_ wrap_scratch *s = sodium_malloc(sizeof(wrap_scratch));
        uint8_t share[32], salt[64], body[32];
        char share_b64[sodium_base64_ENCODED_LEN(32, B64_VARIANT)];

        if (!s)
                return -ENOMEM;
        randombytes_buf(s->eph, sizeof(s->eph));
        crypto_scalarmult_base(share, s->eph);
        if (crypto_scalarmult(s->shared, s->eph, rcpt->public_key) != 0)
                return -EINVAL; /* low-order recipient key */
        memcpy(salt, share, 32);
        memcpy(salt + 32, rcpt->public_key, 32);
        age_hkdf_sha256(s->key, sizeof(s->key), s->shared, 32, salt, sizeof(salt), X25519_LABEL);
        seal_file_key(body, s->key, file_key);
        sodium_bin2base64(share_b64, sizeof(share_b64), share, sizeof(share), B64_VARIANT);
        return age_stanza_append(text, text_len, (const char *[]) { "X25519", share_b64 }, 2, body,
                                 sizeof(body));
}

/* Derives the scrypt wrap key from passphrase and the 16-byte salt into key. */
static int scrypt_key(uint8_t key[32], const char *passphrase, const uint8_t salt16[16], unsigned log2n)
{
        uint8_t salt[STRLEN(SCRYPT_LABEL) + SCRYPT_SALT_SIZE];

        memcpy(salt, SCRYPT_LABEL, STRLEN(SCRYPT_LABEL));
        memcpy(salt + STRLEN(SCRYPT_LABEL), salt16, SCRYPT_SALT_SIZE);
        if (crypto_pwhash_scryptsalsa208sha256_ll((const uint8_t *) passphrase, strlen(passphrase), salt,
                                                  sizeof(salt), (uint64_t) 1 << log2n, 8, 1, key, 32) != 0)
                return errno > 0 ? -errno : -ENOMEM;
        return 0;
}

/* Random salt, scrypt(passphrase, label || salt, 2^log2n, 8, 1) wraps the file key. */
int age_scrypt_wrap(char **text, size_t *text_len, const char *passphrase, unsigned log2n,
                    const uint8_t file_key[MAMORI_AGE_FILE_KEY_SIZE])
{
        _cleanup_sodium_free_ wrap_scratch *s = sodium_malloc(sizeof(wrap_scratch));
        uint8_t salt[SCRYPT_SALT_SIZE], body[32];
        char salt_b64[sodium_base64_ENCODED_LEN(SCRYPT_SALT_SIZE, B64_VARIANT)], n_str[8];
        int r;

        if (!s)
                return -ENOMEM;
        if (log2n < 1 || log2n > 40)
                return -EINVAL;
        randombytes_buf(salt, sizeof(salt));
        r = scrypt_key(s->key, passphrase, salt, log2n);
        if (r < 0)
                return r;
        seal_file_key(body, s->key, file_key);
        sodium_bin2base64(salt_b64, sizeof(salt_b64), salt, sizeof(salt), B64_VARIANT);
        snprintf(n_str, sizeof(n_str), "%u", log2n);
        return age_stanza_append(text, text_len, (const char *[]) { "scrypt", salt_b64, n_str }, 3, body,
                                 sizeof(body));
}

/* Opens a 32-byte stanza body with key: 0 and s->file_key, or -ENOKEY (not ours). */
static int open_file_key(wrap_scratch *s, const age_stanza *st)
{
        if (crypto_aead_chacha20poly1305_ietf_decrypt(s->file_key, NULL, NULL, st->body, st->body_len,
                                                      NULL, 0, zero_nonce, s->key) != 0)
                return -ENOKEY;
        return 0;
}

/* Tries one identity on an X25519 stanza: 0 (file key in s), -ENOKEY, or -EBADMSG. */
static int x25519_unwrap(wrap_scratch *s, const age_stanza *st, const mamori_age_identity *id)
{
        uint8_t share[32], salt[64];

        if (st->n_args != 2 || st->body_len != 32 ||
            age_b64_decode_exact(st->args[1], strlen(st->args[1]), share, sizeof(share)) < 0)
                return -EBADMSG;
        /* An all-zero shared secret means a low-order share: refuse the file. */
        if (crypto_scalarmult(s->shared, id->secret, share) != 0)
                return -EBADMSG;
        memcpy(salt, share, 32);
        crypto_scalarmult_base(salt + 32, id->secret);
        age_hkdf_sha256(s->key, sizeof(s->key), s->shared, 32, salt, sizeof(salt), X25519_LABEL);
        return open_file_key(s, st);
}

/* Parses scrypt's log2(N): decimal, no leading zeros or signs, 1..cap (-E2BIG above). */
static int parse_log2n(const char *s, unsigned cap, unsigned *ret)
{
        unsigned v = 0;

        if (!*s || (s[0] == '0') || strlen(s) > 2)
                return -EBADMSG;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EBADMSG;
                v = v * 10 + (*p - '0');
        }
        if (v > cap)
                return -E2BIG;
        *ret = v;
        return 0;
}

/* Opens the scrypt stanza with the passphrase: 0, -ENOKEY (wrong passphrase), -EBADMSG, -E2BIG. */
static int scrypt_unwrap(wrap_scratch *s, const age_stanza *st, const mamori_age_decrypt_opts *opts)
{
        uint8_t salt[SCRYPT_SALT_SIZE];
        unsigned log2n;
        int r;

        if (st->n_args != 3 || st->body_len != 32 ||
            age_b64_decode_exact(st->args[1], strlen(st->args[1]), salt, sizeof(salt)) < 0)
                return -EBADMSG;
        r = parse_log2n(st->args[2], opts->scrypt_max_log2n ?: MAMORI_AGE_SCRYPT_LOG2N_MAX, &log2n);
        if (r < 0)
                return r;
        r = scrypt_key(s->key, opts->passphrase, salt, log2n);
        if (r < 0)
                return r;
        return open_file_key(s, st);
}

/* Finds the file key in the stanzas, without checking the MAC. */
static int find_file_key(wrap_scratch *s, const age_header *h, const mamori_age_decrypt_opts *opts)
{
        bool has_scrypt = false;
        int r;

        for (size_t i = 0; i < h->n_stanzas; i++)
                has_scrypt |= streq(h->stanzas[i].args[0], "scrypt");
        if (has_scrypt && h->n_stanzas != 1)
                return -EBADMSG; /* scrypt must be alone, or a passphrase file could be re-targeted */
        if (opts->passphrase)
                return has_scrypt ? scrypt_unwrap(s, &h->stanzas[0], opts) : -ENOKEY;
        for (size_t i = 0; i < h->n_stanzas; i++) {
                if (!streq(h->stanzas[i].args[0], "X25519"))
                        continue; /* other types (and grease) are not ours */
                for (size_t j = 0; j < opts->n_identities; j++) {
                        r = x25519_unwrap(s, &h->stanzas[i], opts->identities[j]);
                        if (r != -ENOKEY)
                                return r;
                }
        }
        return -ENOKEY;
}

/* Unwraps the file key, then refuses the file unless the header MAC matches. */
int age_header_unwrap(const age_header *h, const uint8_t *raw, const mamori_age_decrypt_opts *opts,
                      uint8_t ret_file_key[MAMORI_AGE_FILE_KEY_SIZE])
{
        _cleanup_sodium_free_ wrap_scratch *s = sodium_malloc(sizeof(wrap_scratch));
        uint8_t mac[AGE_MAC_SIZE];
        int r;

        if (!s)
                return -ENOMEM;
        if (!!opts->passphrase == (opts->n_identities > 0))
                return -EINVAL;
        r = find_file_key(s, h, opts);
        if (r < 0)
                return r;
        age_header_mac(mac, s->file_key, raw, h->mac_input_len);
        if (sodium_memcmp(mac, h->mac, sizeof(mac)) != 0)
                return -EBADMSG;
        memcpy(ret_file_key, s->file_key, MAMORI_AGE_FILE_KEY_SIZE);
        return 0;
}
