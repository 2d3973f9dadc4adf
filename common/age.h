/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * age v1 (age-encryption.org/v1, C2SP "age") on libsodium: X25519 recipients and
 * scrypt passphrases, HKDF-SHA256/HMAC-SHA256 header, ChaCha20-Poly1305 STREAM
 * payload in 64 KiB chunks. Files written here decrypt with the reference `age`
 * tool and the other way round (R-OUT-1, R-CRY-1); every byte is authenticated
 * (R-CRY-4). No ASCII armor.
 *
 * Streaming and constant memory: the fd functions and the writer use a ring of
 * batches of chunks sealed or opened by worker threads and written in order, so
 * memory is O(threads), not O(file). A failed decryption may already have written
 * a prefix of authenticated plaintext: callers discard the output on error.
 *
 * Errors: -EBADMSG malformed or tampered input (header, MAC, chunk, truncation,
 * trailing data), -ENOKEY no identity or passphrase opened any stanza, -E2BIG an
 * scrypt work factor above the caller's cap, -EINVAL bad arguments, -ENOMEM, or
 * the -errno of a failed read/write.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MAMORI_AGE_FILE_KEY_SIZE 16
#define MAMORI_AGE_CHUNK_SIZE 65536
#define MAMORI_AGE_SCRYPT_LOG2N_DEFAULT 18 /* what `age -p` uses: 256 MiB, ~1 s */
#define MAMORI_AGE_SCRYPT_LOG2N_MAX 20     /* default decrypt cap: 1 GiB of memory */
#define MAMORI_AGE_HEADER_MAX (64 * 1024)  /* longer headers are refused */
#define MAMORI_AGE_STANZAS_MAX 128         /* bounds unauthenticated work per file */

/* An X25519 identity (secret scalar, in sodium_malloc memory). */
typedef struct mamori_age_identity mamori_age_identity;
/* An X25519 recipient: the public key. Not secret. */
typedef struct mamori_age_recipient {
        uint8_t public_key[32];
} mamori_age_recipient;

/* Makes a new random identity. Returns 0, or -ENOMEM. */
int mamori_age_identity_generate(mamori_age_identity **ret);
/* Parses "AGE-SECRET-KEY-1..." (upper case only). Returns 0, -EINVAL or -ENOMEM. */
int mamori_age_identity_parse(const char *s, mamori_age_identity **ret);
/*
 * Parses an identity file as age-keygen writes it: one identity per line, '#'
 * comments and empty lines ignored. Returns 0 with a NULL-free array of *ret_n
 * identities (free with mamori_age_identities_free), -EINVAL naming no line, or
 * -ENOMEM. A file without identities is -EINVAL.
 */
int mamori_age_identities_parse_text(const char *text, mamori_age_identity ***ret, size_t *ret_n);
/* Frees an array from mamori_age_identities_parse_text; accepts NULL. */
void mamori_age_identities_free(mamori_age_identity **ids, size_t n);
/* Writes the identity's secret string to *ret in sodium_malloc memory (free with
 * sodium_free). Returns 0 or -ENOMEM. */
int mamori_age_identity_format(const mamori_age_identity *id, char **ret);
/* Computes the identity's recipient. Returns 0, or -EINVAL for a scalar that
 * yields the identity point. */
int mamori_age_identity_to_recipient(const mamori_age_identity *id, mamori_age_recipient *ret);
/* Frees and wipes; accepts NULL; returns NULL. */
mamori_age_identity *mamori_age_identity_free(mamori_age_identity *id);

/* Parses "age1..." (lower case only). Returns 0 or -EINVAL. */
int mamori_age_recipient_parse(const char *s, mamori_age_recipient *ret);
/* Formats as "age1..." into a malloc'd string. Returns 0 or -ENOMEM. */
int mamori_age_recipient_format(const mamori_age_recipient *r, char **ret);

/* What to encrypt to: either recipients, or one passphrase (never both). */
typedef struct mamori_age_encrypt_opts {
        const mamori_age_recipient *recipients;
        size_t n_recipients;
        const char *passphrase; /* NUL-terminated; the caller keeps it in locked memory */
        unsigned scrypt_log2n;  /* 0: MAMORI_AGE_SCRYPT_LOG2N_DEFAULT */
        unsigned threads;       /* 0: online CPUs; 1: no worker threads */
} mamori_age_encrypt_opts;

/* What to decrypt with: identities, or one passphrase. */
typedef struct mamori_age_decrypt_opts {
        mamori_age_identity *const *identities;
        size_t n_identities;
        const char *passphrase;
        unsigned scrypt_max_log2n; /* 0: MAMORI_AGE_SCRYPT_LOG2N_MAX */
        unsigned threads;          /* 0: online CPUs; 1: no worker threads */
} mamori_age_decrypt_opts;

/* Encrypts everything readable from in_fd to out_fd. Returns 0 or -errno (see top). */
int mamori_age_encrypt_fd(int in_fd, int out_fd, const mamori_age_encrypt_opts *opts);
/* Decrypts in_fd to out_fd, authenticating every chunk and the end of the file.
 * Returns 0 or -errno (see top); on error the output is to be discarded. */
int mamori_age_decrypt_fd(int in_fd, int out_fd, const mamori_age_decrypt_opts *opts);

/* Incremental encryption to a descriptor, for writers that get data piecemeal. */
typedef struct mamori_age_writer mamori_age_writer;
/* Writes the header to out_fd and returns a writer in *ret. Returns 0 or -errno. */
int mamori_age_writer_new(int out_fd, const mamori_age_encrypt_opts *opts, mamori_age_writer **ret);
/* Appends plaintext. Returns 0 or -errno (a failed write of an earlier batch). */
int mamori_age_writer_write(mamori_age_writer *w, const void *buf, size_t len);
/* Seals the final chunk and writes everything out. Returns 0 or -errno. Once only. */
int mamori_age_writer_finish(mamori_age_writer *w);
/* Stops the workers, wipes keys, frees; accepts NULL; returns NULL. A writer freed
 * without finish leaves a file that will not decrypt (no final chunk). */
mamori_age_writer *mamori_age_writer_free(mamori_age_writer *w);

/* Incremental decryption from a descriptor, one chunk at a time, no threads. */
typedef struct mamori_age_reader mamori_age_reader;
/* Reads and authenticates the header from in_fd. Returns 0 or -errno (see top). */
int mamori_age_reader_new(int in_fd, const mamori_age_decrypt_opts *opts, mamori_age_reader **ret);
/* Reads up to len bytes of authenticated plaintext. Returns the count, 0 at the
 * authenticated end of the file, or -errno (-EBADMSG tampered or truncated). */
ssize_t mamori_age_reader_read(mamori_age_reader *r, void *buf, size_t len);
/*
 * Random access for a seekable input (the FUSE view reads at offsets): the
 * plaintext size from the file size, and up to len bytes at plaintext offset off,
 * each chunk authenticated as it is read (the last chunk by file size must carry
 * the final flag, so truncation is caught when the end is read). Returns 0 / the
 * count (0 at or past the end), -ESPIPE for a pipe, -EBADMSG, or -errno. Sequential
 * reads after a pread return 0: use one style per reader.
 */
int mamori_age_reader_size(mamori_age_reader *r, uint64_t *ret);
ssize_t mamori_age_reader_pread(mamori_age_reader *r, void *buf, size_t len, uint64_t off);
/* Wipes and frees; accepts NULL; returns NULL. */
mamori_age_reader *mamori_age_reader_free(mamori_age_reader *r);
