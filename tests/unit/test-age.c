/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * age v1: round trips, golden files written by the reference `age` CLI, the
 * STREAM rules, strict header parsing, and "flip one byte, it must fail".
 * R-OUT-1 (media output encrypted to the organisation or a passphrase, in a
 * format the reference tool reads), R-CRY-1 (established algorithms),
 * R-CRY-4 (any tampering is detected).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "age-internal.h"
#include "age.h"
#include "cleanup.h"

#define CH MAMORI_AGE_CHUNK_SIZE
#define CCH (MAMORI_AGE_CHUNK_SIZE + 16)

typedef struct buf {
        uint8_t *p;
        size_t n;
} buf;

static void buf_free(buf *b)
{
        free(b->p);
        *b = (buf) {};
}

/* The plaintext of the golden files: byte i is (i*31 + 7) mod 251. */
static buf pattern(size_t n)
{
        buf b = { .p = malloc(n + 1), .n = n };
        assert_non_null(b.p);
        for (size_t i = 0; i < n; i++)
                b.p[i] = (uint8_t) ((i * 31 + 7) % 251);
        return b;
}

static int memfd_with(const uint8_t *p, size_t n)
{
        int fd = memfd_create("age-test", MFD_CLOEXEC);
        assert_true(fd >= 0);
        for (size_t off = 0; off < n;) {
                ssize_t k = write(fd, p + off, n - off);
                assert_true(k > 0);
                off += k;
        }
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        return fd;
}

static buf slurp_fd(int fd)
{
        struct stat st;
        buf b;

        assert_int_equal(fstat(fd, &st), 0);
        b = (buf) { .p = malloc(st.st_size + 1), .n = st.st_size };
        assert_non_null(b.p);
        assert_int_equal(pread(fd, b.p, b.n, 0), (ssize_t) b.n);
        return b;
}

static buf read_data(const char *name)
{
        const char *root = getenv("MAMORI_SOURCE_ROOT");
        char path[4096];
        int fd;
        buf b;

        snprintf(path, sizeof(path), "%s/tests/data/age/%s", root ?: "../..", name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                fail_msg("cannot open %s", path);
        b = slurp_fd(fd);
        b.p[b.n] = 0;
        close(fd);
        return b;
}

static buf encrypt_mem(const mamori_age_encrypt_opts *o, const buf *plain)
{
        int in = memfd_with(plain->p, plain->n), out = memfd_create("ct", MFD_CLOEXEC);
        assert_int_equal(mamori_age_encrypt_fd(in, out, o), 0);
        buf b = slurp_fd(out);
        close(in);
        close(out);
        return b;
}

/* Decrypts with the threaded fd path and with the pull reader; both must agree. */
static int decrypt_mem(const mamori_age_decrypt_opts *o, const uint8_t *c, size_t n, buf *ret)
{
        int in = memfd_with(c, n), out = memfd_create("pt", MFD_CLOEXEC);
        int r = mamori_age_decrypt_fd(in, out, o);
        buf fdout = slurp_fd(out), rdout = { .p = malloc(n + 1) };
        mamori_age_reader *rd = NULL;
        ssize_t k = 0;

        assert_non_null(rdout.p);
        assert_int_equal(lseek(in, 0, SEEK_SET), 0);
        int r2 = mamori_age_reader_new(in, o, &rd);
        while (r2 >= 0 && (k = mamori_age_reader_read(rd, rdout.p + rdout.n, 9999)) > 0)
                rdout.n += k;
        if (r2 >= 0 && k < 0)
                r2 = (int) k;
        mamori_age_reader_free(rd);
        close(in);
        close(out);
        assert_int_equal(r, r2);
        if (r >= 0) {
                assert_int_equal(fdout.n, rdout.n);
                assert_memory_equal(fdout.p, rdout.p, fdout.n);
        }
        buf_free(&rdout);
        if (r >= 0 && ret)
                *ret = fdout;
        else
                buf_free(&fdout);
        return r;
}

typedef struct keys {
        mamori_age_identity *id[2];
        mamori_age_recipient rc[2];
} keys;

static int setup_keys(void **state)
{
        keys *k = calloc(1, sizeof(keys));
        for (int i = 0; i < 2; i++) {
                assert_int_equal(mamori_age_identity_generate(&k->id[i]), 0);
                assert_int_equal(mamori_age_identity_to_recipient(k->id[i], &k->rc[i]), 0);
        }
        *state = k;
        return 0;
}

static int teardown_keys(void **state)
{
        keys *k = *state;
        for (int i = 0; i < 2; i++)
                mamori_age_identity_free(k->id[i]);
        free(k);
        return 0;
}

/* RFC 5869 test cases 1 and 3 (HKDF-SHA256), since age's keys all come from it. */
static void test_hkdf(void **state)
{
        static const uint8_t okm1[42] = {
                0x3c, 0xb2, 0x5f, 0x25, 0xfa, 0xac, 0xd5, 0x7a, 0x90, 0x43, 0x4f, 0x64, 0xd0, 0x36,
                0x2f, 0x2a, 0x2d, 0x2d, 0x0a, 0x90, 0xcf, 0x1a, 0x5a, 0x4c, 0x5d, 0xb0, 0x2d, 0x56,
                0xec, 0xc4, 0xc5, 0xbf, 0x34, 0x00, 0x72, 0x08, 0xd5, 0xb8, 0x87, 0x18, 0x58, 0x65,
        };
        static const uint8_t okm3[42] = {
                0x8d, 0xa4, 0xe7, 0x75, 0xa5, 0x63, 0xc1, 0x8f, 0x71, 0x5f, 0x80, 0x2a, 0x06, 0x3c,
                0x5a, 0x31, 0xb8, 0xa1, 0x1f, 0x5c, 0x5e, 0xe1, 0x87, 0x9e, 0xc3, 0x45, 0x4e, 0x5f,
                0x3c, 0x73, 0x8d, 0x2d, 0x9d, 0x20, 0x13, 0x95, 0xfa, 0xa4, 0xb6, 0x1a, 0x96, 0xc8,
        };
        uint8_t ikm[22], salt[13], out[42];
        char info[11];

        memset(ikm, 0x0b, sizeof(ikm));
        for (int i = 0; i < 13; i++)
                salt[i] = (uint8_t) i;
        for (int i = 0; i < 10; i++)
                info[i] = (char) (0xf0 + i);
        info[10] = 0;
        assert_int_equal(age_hkdf_sha256(out, 42, ikm, 22, salt, 13, info), 0);
        assert_memory_equal(out, okm1, 42);
        assert_int_equal(age_hkdf_sha256(out, 42, ikm, 22, NULL, 0, ""), 0);
        assert_memory_equal(out, okm3, 42);
}

/* Encrypts to two recipients and decrypts with each, across chunk and batch edges and thread counts. */
static void test_roundtrip_x25519(void **state)
{
        keys *k = *state;
        static const size_t sizes[] = { 0, 1, CH - 1, CH, CH + 1, 2 * CH, 16 * CH, 16 * CH + 1,
                                        40 * CH + 5 };
        static const unsigned threads[] = { 1, 2, 3 };

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++)
                for (size_t t = 0; t < ELEMENTSOF(threads); t++) {
                        buf plain = pattern(sizes[i]), out = {};
                        mamori_age_encrypt_opts eo = { .recipients = k->rc, .n_recipients = 2,
                                                       .threads = threads[t] };
                        buf ct = encrypt_mem(&eo, &plain);
                        /* Header, nonce, then one tag per chunk (an empty file has one chunk). */
                        size_t chunks = sizes[i] ? (sizes[i] + CH - 1) / CH : 1;
                        assert_true(ct.n > sizes[i] + 16 * chunks + 16);
                        mamori_age_identity *second[] = { k->id[1] };
                        mamori_age_decrypt_opts d = { .identities = second, .n_identities = 1,
                                                      .threads = threads[(t + 1) % 3] };
                        assert_int_equal(decrypt_mem(&d, ct.p, ct.n, &out), 0);
                        assert_int_equal(out.n, plain.n);
                        assert_memory_equal(out.p, plain.p, plain.n);
                        buf_free(&plain);
                        buf_free(&out);
                        buf_free(&ct);
                }
}

/* Identities that match nothing give -ENOKEY; a match in second place is found. */
static void test_identity_choice(void **state)
{
        keys *k = *state;
        mamori_age_identity *other = NULL;
        buf plain = pattern(1000), out = {};
        mamori_age_encrypt_opts eo = { .recipients = &k->rc[0], .n_recipients = 1 };
        buf ct = encrypt_mem(&eo, &plain);

        assert_int_equal(mamori_age_identity_generate(&other), 0);
        mamori_age_identity *wrong[] = { other, k->id[1] }, *both[] = { other, k->id[0] };
        mamori_age_decrypt_opts d = { .identities = wrong, .n_identities = 2 };
        assert_int_equal(decrypt_mem(&d, ct.p, ct.n, NULL), -ENOKEY);
        d.identities = both;
        assert_int_equal(decrypt_mem(&d, ct.p, ct.n, &out), 0);
        assert_memory_equal(out.p, plain.p, plain.n);
        /* A passphrase does not open an X25519 file. */
        mamori_age_decrypt_opts p = { .passphrase = "x" };
        assert_int_equal(decrypt_mem(&p, ct.p, ct.n, NULL), -ENOKEY);
        mamori_age_identity_free(other);
        buf_free(&plain);
        buf_free(&out);
        buf_free(&ct);
}

/* Passphrase round trip at a low work factor; wrong passphrase; work-factor cap. */
static void test_roundtrip_passphrase(void **state)
{
        keys *k = *state;
        static const size_t sizes[] = { 0, CH + 1 };

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                buf plain = pattern(sizes[i]), out = {};
                mamori_age_encrypt_opts eo = { .passphrase = "hunter2 hunter2", .scrypt_log2n = 10 };
                buf ct = encrypt_mem(&eo, &plain);
                assert_non_null(memmem(ct.p, ct.n, " 10\n", 4));
                mamori_age_decrypt_opts d = { .passphrase = "hunter2 hunter2" };
                assert_int_equal(decrypt_mem(&d, ct.p, ct.n, &out), 0);
                assert_int_equal(out.n, plain.n);
                assert_memory_equal(out.p, plain.p, plain.n);
                d.passphrase = "hunter2 hunter3";
                assert_int_equal(decrypt_mem(&d, ct.p, ct.n, NULL), -ENOKEY);
                d = (mamori_age_decrypt_opts) { .passphrase = "hunter2 hunter2", .scrypt_max_log2n = 9 };
                assert_int_equal(decrypt_mem(&d, ct.p, ct.n, NULL), -E2BIG);
                mamori_age_identity *ids[] = { k->id[0] };
                d = (mamori_age_decrypt_opts) { .identities = ids, .n_identities = 1 };
                assert_int_equal(decrypt_mem(&d, ct.p, ct.n, NULL), -ENOKEY);
                buf_free(&plain);
                buf_free(&out);
                buf_free(&ct);
        }
        /* Both a passphrase and recipients, or neither, is refused. */
        mamori_age_encrypt_opts both = { .passphrase = "x", .recipients = k->rc, .n_recipients = 1 };
        mamori_age_writer *w = NULL;
        int fd = memfd_create("x", MFD_CLOEXEC);
        assert_int_equal(mamori_age_writer_new(fd, &both, &w), -EINVAL);
        assert_int_equal(mamori_age_writer_new(fd, &(mamori_age_encrypt_opts) {}, &w), -EINVAL);
        assert_null(w);
        close(fd);
}

/* The incremental writer, fed in ragged pieces, makes the same plaintext come back. */
static void test_writer_pieces(void **state)
{
        keys *k = *state;
        static const size_t pieces[] = { 1, 7, CH - 8, CH, 3 * CH + 1, 100000, 5 };
        buf plain = pattern(20 * CH + 4321), out = {};
        mamori_age_encrypt_opts eo = { .recipients = k->rc, .n_recipients = 1, .threads = 2 };
        mamori_age_writer *w = NULL;
        int fd = memfd_create("ct", MFD_CLOEXEC);
        size_t off = 0;

        assert_int_equal(mamori_age_writer_new(fd, &eo, &w), 0);
        for (size_t i = 0; off < plain.n; i++) {
                size_t n = pieces[i % ELEMENTSOF(pieces)];
                n = n < plain.n - off ? n : plain.n - off;
                assert_int_equal(mamori_age_writer_write(w, plain.p + off, n), 0);
                off += n;
        }
        assert_int_equal(mamori_age_writer_finish(w), 0);
        assert_int_equal(mamori_age_writer_finish(w), -EINVAL);
        assert_int_equal(mamori_age_writer_write(w, "x", 1), -EINVAL);
        mamori_age_writer_free(w);
        buf ct = slurp_fd(fd);
        close(fd);
        mamori_age_decrypt_opts d = { .identities = &k->id[0], .n_identities = 1 };
        assert_int_equal(decrypt_mem(&d, ct.p, ct.n, &out), 0);
        assert_int_equal(out.n, plain.n);
        assert_memory_equal(out.p, plain.p, plain.n);
        buf_free(&plain);
        buf_free(&out);
        buf_free(&ct);
}

static mamori_age_identity **golden_ids(size_t *n)
{
        buf text = read_data("identity.txt");
        mamori_age_identity **ids = NULL;

        assert_int_equal(mamori_age_identities_parse_text((char *) text.p, &ids, n), 0);
        assert_int_equal(*n, 1);
        sodium_memzero(text.p, text.n);
        buf_free(&text);
        return ids;
}

/* Files written by `age -r` (1.1.1) and `age -p` decrypt to the known plaintext. */
static void test_golden(void **state)
{
        static const struct {
                const char *file;
                size_t len;
        } x[] = {
                { "x25519-empty.age", 0 }, { "x25519-64k.age", CH }, { "x25519-64k1.age", CH + 1 },
                { "scrypt-empty.age", 0 }, { "scrypt-64k1.age", CH + 1 },
        };
        size_t n_ids;
        mamori_age_identity **ids = golden_ids(&n_ids);
        buf pass = read_data("passphrase.txt");

        for (size_t i = 0; i < ELEMENTSOF(x); i++) {
                buf ct = read_data(x[i].file), want = pattern(x[i].len), out = {};
                mamori_age_decrypt_opts d = { .identities = ids, .n_identities = n_ids };
                if (strncmp(x[i].file, "scrypt", 6) == 0)
                        d = (mamori_age_decrypt_opts) { .passphrase = (char *) pass.p };
                assert_int_equal(decrypt_mem(&d, ct.p, ct.n, &out), 0);
                assert_int_equal(out.n, want.n);
                assert_memory_equal(out.p, want.p, want.n);
                buf_free(&ct);
                buf_free(&want);
                buf_free(&out);
        }
        buf ct = read_data("x25519-hello.age"), out = {};
        mamori_age_decrypt_opts d = { .identities = ids, .n_identities = n_ids };
        assert_int_equal(decrypt_mem(&d, ct.p, ct.n, &out), 0);
        assert_int_equal(out.n, 5);
        assert_memory_equal(out.p, "hello", 5);
        buf_free(&ct);
        buf_free(&out);
        buf_free(&pass);
        mamori_age_identities_free(ids, n_ids);
}

/* Decrypts a copy of ct with byte i xor 0x01 (or 0x80); returns the error. */
static int decrypt_flipped(const mamori_age_decrypt_opts *d, const buf *ct, size_t i, uint8_t mask)
{
        ct->p[i] ^= mask;
        int r = decrypt_mem(d, ct->p, ct->n, NULL);
        ct->p[i] ^= mask;
        return r;
}

/* Every byte of a golden file's header, MAC, nonce, stanza body, and chunks, flipped, fails. */
static void test_golden_flip(void **state)
{
        size_t n_ids;
        mamori_age_identity **ids = golden_ids(&n_ids);
        mamori_age_decrypt_opts d = { .identities = ids, .n_identities = n_ids, .threads = 2 };
        buf ct = read_data("x25519-64k1.age");
        age_header *h = NULL;

        assert_int_equal(age_header_parse(ct.p, ct.n, &h), 0);
        size_t hlen = h->len, mac_start = h->mac_input_len + 1;
        assert_int_equal(ct.n, hlen + 16 + CCH + 17);
        age_header_free(h);
        assert_int_equal(decrypt_mem(&d, ct.p, ct.n, NULL), 0);

        for (size_t i = 0; i < hlen; i++)
                for (int m = 0; m < 2; m++) {
                        int r = decrypt_flipped(&d, &ct, i, m ? 0x80 : 0x01);
                        /* A stanza no longer opens (-ENOKEY) or the header is refused. */
                        if (r != -EBADMSG && r != -ENOKEY)
                                fail_msg("header byte %zu mask %d: %d", i, m, r);
                        if (i >= mac_start && r != -EBADMSG)
                                fail_msg("MAC byte %zu: %d", i, r);
                }
        /* Nonce, first chunk (start, middle, tag), and every byte of the final chunk. */
        size_t payload_offsets[] = { hlen, hlen + 15, hlen + 16, hlen + 16 + 30000,
                                     hlen + 16 + CCH - 1 };
        for (size_t i = 0; i < ELEMENTSOF(payload_offsets); i++)
                assert_int_equal(decrypt_flipped(&d, &ct, payload_offsets[i], 0x01), -EBADMSG);
        for (size_t i = hlen + 16 + CCH; i < ct.n; i++)
                assert_int_equal(decrypt_flipped(&d, &ct, i, 0x40), -EBADMSG);
        buf_free(&ct);
        mamori_age_identities_free(ids, n_ids);
}

/* Truncation anywhere and trailing data after the final chunk fail. */
static void test_golden_truncate_extend(void **state)
{
        size_t n_ids;
        mamori_age_identity **ids = golden_ids(&n_ids);
        mamori_age_decrypt_opts d = { .identities = ids, .n_identities = n_ids };
        buf ct = read_data("x25519-64k1.age");
        size_t hlen = ct.n - 16 - CCH - 17;
        uint8_t *big = malloc(ct.n + CCH);

        /* Inside the header, inside the nonce, no chunk at all, without the final
         * chunk (the full chunk then fails as "last"), inside the final chunk. */
        size_t cuts[] = { 10, hlen - 1, hlen + 8, hlen + 16, hlen + 16 + 100, hlen + 16 + CCH,
                          hlen + 16 + CCH + 16, ct.n - 1 };
        for (size_t i = 0; i < ELEMENTSOF(cuts); i++)
                assert_int_equal(decrypt_mem(&d, ct.p, cuts[i], NULL), -EBADMSG);
        memcpy(big, ct.p, ct.n);
        big[ct.n] = 0;
        assert_int_equal(decrypt_mem(&d, big, ct.n + 1, NULL), -EBADMSG);
        memset(big + ct.n, 0, 16);
        assert_int_equal(decrypt_mem(&d, big, ct.n + 16, NULL), -EBADMSG);
        /* A copy of the final chunk after it. */
        memcpy(big + ct.n, ct.p + ct.n - 17, 17);
        assert_int_equal(decrypt_mem(&d, big, ct.n + 17, NULL), -EBADMSG);
        /* Same for the empty file: its single empty chunk must be there, alone. */
        buf e = read_data("x25519-empty.age");
        assert_int_equal(decrypt_mem(&d, e.p, e.n - 16, NULL), -EBADMSG);
        assert_int_equal(decrypt_mem(&d, e.p, e.n - 1, NULL), -EBADMSG);
        memcpy(big, e.p, e.n);
        big[e.n] = 'x';
        assert_int_equal(decrypt_mem(&d, big, e.n + 1, NULL), -EBADMSG);
        free(big);
        buf_free(&e);
        buf_free(&ct);
        mamori_age_identities_free(ids, n_ids);
}

/* Builds a file from chosen chunks under a known file key, to test the STREAM rules. */
typedef struct crafted_chunk {
        size_t len;
        uint64_t counter;
        bool last;
} crafted_chunk;

static buf craft(const keys *k, const crafted_chunk *c, size_t n)
{
        uint8_t file_key[16], nonce[16] = { 1, 2, 3 }, pk[32], iv[12] = {};
        mamori_age_encrypt_opts eo = { .recipients = &k->rc[0], .n_recipients = 1 };
        char *header = NULL;
        size_t hlen = 0, total;

        memset(file_key, 0x42, sizeof(file_key));
        assert_int_equal(age_header_build(&eo, file_key, &header, &hlen), 0);
        assert_int_equal(age_hkdf_sha256(pk, 32, file_key, 16, nonce, 16, "payload"), 0);
        total = hlen + 16;
        for (size_t i = 0; i < n; i++)
                total += c[i].len + 16;
        buf b = { .p = malloc(total + 1), .n = total };
        memcpy(b.p, header, hlen);
        memcpy(b.p + hlen, nonce, 16);
        uint8_t *p = b.p + hlen + 16;
        for (size_t i = 0; i < n; i++) {
                buf pl = pattern(c[i].len);
                memset(iv, 0, sizeof(iv));
                for (int j = 0; j < 8; j++)
                        iv[10 - j] = (uint8_t) (c[i].counter >> (8 * j));
                iv[11] = c[i].last;
                crypto_aead_chacha20poly1305_ietf_encrypt(p, NULL, pl.p, pl.n, NULL, 0, NULL, iv, pk);
                p += c[i].len + 16;
                buf_free(&pl);
        }
        free(header);
        return b;
}

/* Expects a crafted file to decrypt (want >= 0: to that many bytes) or fail with want. */
static void check_crafted(const keys *k, const crafted_chunk *c, size_t n, int want)
{
        buf f = craft(k, c, n), out = {};
        mamori_age_decrypt_opts d = { .identities = (mamori_age_identity *const *) &k->id[0],
                                      .n_identities = 1 };
        int r = decrypt_mem(&d, f.p, f.n, &out);

        if (want >= 0) {
                assert_int_equal(r, 0);
                assert_int_equal(out.n, (size_t) want);
        } else
                assert_int_equal(r, want);
        buf_free(&out);
        buf_free(&f);
}

/* STREAM: final flag only on the final chunk, counters in order, no empty final
 * chunk after a full one, non-final chunks full. */
static void test_stream_rules(void **state)
{
        keys *k = *state;

        check_crafted(k, (crafted_chunk[]) { { CH, 0, true } }, 1, CH);
        check_crafted(k, (crafted_chunk[]) { { 0, 0, true } }, 1, 0);
        check_crafted(k, (crafted_chunk[]) { { CH, 0, false }, { 5, 1, true } }, 2, CH + 5);
        /* Control passes; now each rule broken once. */
        check_crafted(k, (crafted_chunk[]) { { CH, 0, false }, { 0, 1, true } }, 2, -EBADMSG);
        check_crafted(k, (crafted_chunk[]) { { CH, 0, true }, { 5, 1, true } }, 2, -EBADMSG);
        check_crafted(k, (crafted_chunk[]) { { CH, 0, false } }, 1, -EBADMSG);
        check_crafted(k, (crafted_chunk[]) { { 5, 0, false } }, 1, -EBADMSG);
        check_crafted(k, (crafted_chunk[]) { { CH, 1, false }, { 5, 0, true } }, 2, -EBADMSG);
        check_crafted(k, (crafted_chunk[]) { { CH, 0, false }, { 5, 2, true } }, 2, -EBADMSG);
        check_crafted(k, (crafted_chunk[]) { { 100, 0, false }, { 5, 1, true } }, 2, -EBADMSG);
        check_crafted(k, NULL, 0, -EBADMSG);
}

/* Parses text as a header and expects want. */
static void expect_header(const char *text, int want)
{
        age_header *h = NULL;
        int r = age_header_parse((const uint8_t *) text, strlen(text), &h);

        if (r != want)
                fail_msg("header %s: got %d, want %d", text, r, want);
        if (r == 0)
                assert_non_null(h);
        else
                assert_null(h);
        age_header_free(h);
}

#define V "age-encryption.org/v1\n"
#define X "-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc\nEmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U\n"
#define MAC "--- tnRUR2vmmU92czsjnioF5ujgXUetUhzUoQPPGT9wmug\n"
#define A64 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

/* Strict grammar: every malformed header is -EBADMSG, an unfinished one -ENODATA. */
static void test_header_malformed(void **state)
{
        expect_header(V X MAC, 0);
        expect_header(V X "-> grease a b\n" A64 "\n\n" MAC, 0);
        expect_header(V X "-> grease\n" A64 "\nAA\n" MAC, 0);

        expect_header("age-encryption.org/v2\n" X MAC, -EBADMSG);
        expect_header("age-encryption.org/v1 \n" X MAC, -EBADMSG);
        expect_header("age-encryption.org/v1\r\n" X MAC, -EBADMSG);
        expect_header(V MAC, -EBADMSG);                                    /* no stanza */
        expect_header(V "->\n\n" MAC, -EBADMSG);                           /* no type */
        expect_header(V "-> \n\n" MAC, -EBADMSG);                          /* empty type */
        expect_header(V "-> a  b\n\n" MAC, -EBADMSG);                      /* empty argument */
        expect_header(V "-> a b \n\n" MAC, -EBADMSG);                      /* trailing space */
        expect_header(V "-> a\tb\n\n" MAC, -EBADMSG);                      /* not VCHAR */
        expect_header(V "-> a \xc3\xa9\n\n" MAC, -EBADMSG);                 /* not ASCII */
        expect_header(V "->a\n\n" MAC, -EBADMSG);
        expect_header(V "=> a\n\n" MAC, -EBADMSG);
        expect_header(V X "-> stanza\n" A64 "AAAA\n\n" MAC, -EBADMSG);     /* 68 columns */
        expect_header(V X "-> stanza\n" A64 "\n" MAC, -EBADMSG);           /* no final short line */
        expect_header(V X "-> empty\n" MAC, -EBADMSG);                     /* no body line at all */
        expect_header(V "-> a\nAA==\n" MAC, -EBADMSG);                     /* padding */
        expect_header(V "-> a\nAB\n" MAC, -EBADMSG);                       /* non-canonical bits */
        expect_header(V "-> a\nAAAAA\n" MAC, -EBADMSG);                    /* length 1 mod 4 */
        expect_header(V "-> a\nAA-A\n" MAC, -EBADMSG);                     /* URL alphabet */
        expect_header(V "-> a\nAA AA\n" MAC, -EBADMSG);
        /* Bytes >= 0x80, which libsodium 1.0.18's base64 decoder lets through. */
        expect_header(V "-> a\nAA\x90" "A\n" MAC, -EBADMSG);
        expect_header(V "-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOC\xff\n\n" MAC, -EBADMSG);
        expect_header(V X "--- tnRUR2vmmU92czsjnioF5ujgXUetUhzUoQPPGT9wm\x80g\n", -EBADMSG);
        expect_header(V X "---\n", -EBADMSG);                              /* no MAC */
        expect_header(V X "---  tnRUR2vmmU92czsjnioF5ujgXUetUhzUoQPPGT9wmug\n", -EBADMSG);
        expect_header(V X "--- tnRUR2vmmU92czsjnioF5ujgXUetUhzUoQPPGT9wmu\n", -EBADMSG);
        expect_header(V X "--- tnRUR2vmmU92czsjnioF5ujgXUetUhzUoQPPGT9wmuh\n", -EBADMSG); /* bits */
        expect_header(V X "--- tnRUR2vmmU92czsjnioF5ujgXUetUhzUoQPPGT9wmug=\n", -EBADMSG);
        expect_header(V X "---- tnRUR2vmmU92czsjnioF5ujgXUetUhzUoQPPGT9wmug\n", -EBADMSG);
        expect_header(V X "garbage\n" MAC, -EBADMSG);

        expect_header("", -ENODATA);
        expect_header("age-encryption.org/v1", -ENODATA);
        expect_header(V X, -ENODATA);
        expect_header(V X "--- tnRUR2vmmU92czsjnioF5ujgXUetUhzUoQPPGT9wmug", -ENODATA);

        /* Too many stanzas, and a header longer than the cap. */
        size_t n = strlen(V) + (MAMORI_AGE_STANZAS_MAX + 1) * 8 + strlen(MAC) + 1;
        char *many = malloc(n), *p = many;
        p = stpcpy(p, V);
        for (int i = 0; i <= MAMORI_AGE_STANZAS_MAX; i++)
                p = stpcpy(p, "-> a\nAA\n");
        strcpy(p, MAC);
        expect_header(many, -EBADMSG);
        free(many);
        char *big = malloc(MAMORI_AGE_HEADER_MAX + 200);
        memset(big, 'A', MAMORI_AGE_HEADER_MAX + 199);
        big[MAMORI_AGE_HEADER_MAX + 199] = 0;
        memcpy(big, V "-> ", strlen(V) + 3);
        expect_header(big, -EBADMSG);
        free(big);
}

/* Parsed stanza contents: arguments and the body across a 64-column line. */
static void test_header_contents(void **state)
{
        const char *t = V "-> grease a b\n" A64 "\n\n" X MAC;
        age_header *h = NULL;

        assert_int_equal(age_header_parse((const uint8_t *) t, strlen(t), &h), 0);
        assert_int_equal(h->n_stanzas, 2);
        assert_int_equal(h->stanzas[0].n_args, 3);
        assert_string_equal(h->stanzas[0].args[2], "b");
        assert_int_equal(h->stanzas[0].body_len, 48);
        assert_int_equal(h->stanzas[1].body_len, 32);
        assert_int_equal(h->len, strlen(t));
        assert_int_equal(h->mac_input_len, strlen(t) - strlen(MAC) + 3);
        age_header_free(h);
}

/* Decrypts a header we write by hand (MAC irrelevant: it fails before). */
static int unwrap_crafted(const keys *k, const char *stanzas, const mamori_age_decrypt_opts *d)
{
        char text[2048];
        int n = snprintf(text, sizeof(text), V "%s" MAC "0123456789abcdef", stanzas);
        mamori_age_decrypt_opts dd = *d;
        mamori_age_identity *const *ids = (mamori_age_identity *const *) &k->id[0];

        if (!dd.passphrase && !dd.n_identities) {
                dd.identities = ids;
                dd.n_identities = 1;
        }
        return decrypt_mem(&dd, (const uint8_t *) text, (size_t) n, NULL);
}

/* Stanza rules: low-order shares, malformed X25519/scrypt stanzas, scrypt alone, work factor cap. */
static void test_stanza_rules(void **state)
{
        keys *k = *state;
        mamori_age_decrypt_opts ids = {}, pw = { .passphrase = "p" };
        const char *body = "EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U\n";
        char s[1024];

        /* The all-zero point, and the order-8 point that gives a zero shared secret. */
        snprintf(s, sizeof(s), "-> X25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n%s", body);
        assert_int_equal(unwrap_crafted(k, s, &ids), -EBADMSG);
        snprintf(s, sizeof(s), "-> X25519 AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n%s", body);
        assert_int_equal(unwrap_crafted(k, s, &ids), -EBADMSG);
        /* Someone else's stanza: not ours. */
        assert_int_equal(unwrap_crafted(k, X, &ids), -ENOKEY);
        /* X25519 with an extra argument, a short share, a long body. */
        snprintf(s, sizeof(s), "-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc x\n%s", body);
        assert_int_equal(unwrap_crafted(k, s, &ids), -EBADMSG);
        snprintf(s, sizeof(s), "-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDO\n%s", body);
        assert_int_equal(unwrap_crafted(k, s, &ids), -EBADMSG);
        assert_int_equal(unwrap_crafted(k, "-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc\n"
                                           "EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7UAAA\n", &ids), -EBADMSG);
        /* Unknown stanzas are skipped. */
        assert_int_equal(unwrap_crafted(k, "-> grease x\nAA\n", &ids), -ENOKEY);

        /* scrypt: alone, log2 N without leading zeros, under the cap. */
        snprintf(s, sizeof(s), "-> scrypt rF0/NwblUHHTpgQgRpe5CQ 10\n%s%s", body, X);
        assert_int_equal(unwrap_crafted(k, s, &pw), -EBADMSG);
        assert_int_equal(unwrap_crafted(k, s, &ids), -EBADMSG);
        snprintf(s, sizeof(s), "-> scrypt rF0/NwblUHHTpgQgRpe5CQ 010\n%s", body);
        assert_int_equal(unwrap_crafted(k, s, &pw), -EBADMSG);
        snprintf(s, sizeof(s), "-> scrypt rF0/NwblUHHTpgQgRpe5CQ 0\n%s", body);
        assert_int_equal(unwrap_crafted(k, s, &pw), -EBADMSG);
        snprintf(s, sizeof(s), "-> scrypt rF0/NwblUHHTpgQgRpe5CQ +9\n%s", body);
        assert_int_equal(unwrap_crafted(k, s, &pw), -EBADMSG);
        snprintf(s, sizeof(s), "-> scrypt rF0/NwblUHHTpgQgRpe5CQ 21\n%s", body);
        assert_int_equal(unwrap_crafted(k, s, &pw), -E2BIG);
        snprintf(s, sizeof(s), "-> scrypt rF0/NwblUHHTpgQgRpe5 10\n%s", body);
        assert_int_equal(unwrap_crafted(k, s, &pw), -EBADMSG);
        snprintf(s, sizeof(s), "-> scrypt rF0/NwblUHHTpgQgRpe5CQ\n%s", body);
        assert_int_equal(unwrap_crafted(k, s, &pw), -EBADMSG);
        /* Well-formed, wrong passphrase. */
        snprintf(s, sizeof(s), "-> scrypt rF0/NwblUHHTpgQgRpe5CQ 4\n%s", body);
        assert_int_equal(unwrap_crafted(k, s, &pw), -ENOKEY);
}

/* Opens a reader on a copy of ct for random access. */
static mamori_age_reader *pread_reader(const keys *k, const buf *ct, int *ret_fd)
{
        mamori_age_decrypt_opts d = { .identities = (mamori_age_identity *const *) &k->id[0],
                                      .n_identities = 1 };
        mamori_age_reader *rd = NULL;

        *ret_fd = memfd_with(ct->p, ct->n);
        assert_int_equal(mamori_age_reader_new(*ret_fd, &d, &rd), 0);
        return rd;
}

/* Random access (the FUSE view's reads): any range, each chunk authenticated, truncation caught. */
static void test_reader_pread(void **state)
{
        keys *k = *state;
        buf plain = pattern(3 * CH + 5), got = { .p = malloc(4 * CH) };
        mamori_age_encrypt_opts eo = { .recipients = &k->rc[0], .n_recipients = 1 };
        buf ct = encrypt_mem(&eo, &plain);
        static const struct {
                uint64_t off;
                size_t len;
        } ranges[] = { { 0, 10 }, { CH - 3, 7 }, { CH, CH }, { 5, 3 * CH }, { 3 * CH, 100 },
                       { 3 * CH + 4, 1 }, { 0, 4 * CH } };
        uint64_t size = 0;
        int fd;

        mamori_age_reader *rd = pread_reader(k, &ct, &fd);
        assert_int_equal(mamori_age_reader_size(rd, &size), 0);
        assert_int_equal(size, plain.n);
        for (size_t i = 0; i < ELEMENTSOF(ranges); i++) {
                size_t want = ranges[i].off + ranges[i].len <= plain.n ? ranges[i].len
                                                                        : plain.n - ranges[i].off;
                assert_int_equal(mamori_age_reader_pread(rd, got.p, ranges[i].len, ranges[i].off), want);
                assert_memory_equal(got.p, plain.p + ranges[i].off, want);
        }
        assert_int_equal(mamori_age_reader_pread(rd, got.p, 10, plain.n), 0);
        assert_int_equal(mamori_age_reader_read(rd, got.p, 10), 0);
        mamori_age_reader_free(rd);
        close(fd);

        /* A flipped byte in chunk 1 fails reads of chunk 1 only. */
        size_t hlen = ct.n - 16 - 3 * CCH - 21;
        ct.p[hlen + 16 + CCH + 100] ^= 1;
        rd = pread_reader(k, &ct, &fd);
        assert_int_equal(mamori_age_reader_pread(rd, got.p, 10, 0), 10);
        assert_int_equal(mamori_age_reader_pread(rd, got.p, 10, CH + 5), -EBADMSG);
        assert_int_equal(mamori_age_reader_pread(rd, got.p, 10, 2 * CH), 10);
        mamori_age_reader_free(rd);
        close(fd);
        ct.p[hlen + 16 + CCH + 100] ^= 1;

        /* Without the final chunk, the full chunk now last by size fails; chunk 0 still reads. */
        ct.n -= 21;
        rd = pread_reader(k, &ct, &fd);
        assert_int_equal(mamori_age_reader_size(rd, &size), 0);
        assert_int_equal(size, 3 * CH);
        assert_int_equal(mamori_age_reader_pread(rd, got.p, 10, 0), 10);
        assert_int_equal(mamori_age_reader_pread(rd, got.p, 10, 2 * CH + 1), -EBADMSG);
        mamori_age_reader_free(rd);
        close(fd);

        /* A pipe is not seekable. */
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        ct.n += 21;
        assert_true(write(pfd[1], ct.p, 4096) == 4096);
        mamori_age_decrypt_opts d = { .identities = (mamori_age_identity *const *) &k->id[0],
                                      .n_identities = 1 };
        assert_int_equal(mamori_age_reader_new(pfd[0], &d, &rd), 0);
        assert_int_equal(mamori_age_reader_pread(rd, got.p, 10, 0), -ESPIPE);
        mamori_age_reader_free(rd);
        close(pfd[0]);
        close(pfd[1]);
        buf_free(&plain);
        buf_free(&got);
        buf_free(&ct);
}

/* A pipe whose other end a child process writes p[0..n) to in uneven pieces, so
 * that reads come back short at every possible place. Returns the read end. */
static int trickle_pipe(const uint8_t *p, size_t n, pid_t *ret_pid)
{
        static const size_t pieces[] = { 1, 7, 4096, CH - 1, CH + 1, 200000, 3 };
        int fds[2];
        pid_t pid;

        assert_int_equal(pipe(fds), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(fds[0]);
                for (size_t off = 0, i = 0; off < n; i++) {
                        size_t len = pieces[i % ELEMENTSOF(pieces)];
                        ssize_t k = write(fds[1], p + off, len < n - off ? len : n - off);
                        if (k <= 0)
                                _exit(1);
                        off += (size_t) k;
                }
                _exit(0);
        }
        close(fds[1]);
        *ret_pid = pid;
        return fds[0];
}

static void reap(pid_t pid)
{
        int status;

        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Encryption and decryption read pipes that deliver short pieces: same bytes as
 * from a file, at the slot edges (16 chunks per slot) too. */
static void test_pipes_short_reads(void **state)
{
        keys *k = *state;
        static const size_t sizes[] = { 0, CH, 16 * CH, 16 * CH + 1, 32 * CH, 33 * CH + 7 };

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                buf plain = pattern(sizes[i]), out = {};
                mamori_age_encrypt_opts eo = { .recipients = &k->rc[0], .n_recipients = 1, .threads = 2 };
                mamori_age_decrypt_opts d = { .identities = &k->id[0], .n_identities = 1, .threads = 2 };
                pid_t pid;
                int in = trickle_pipe(plain.p, plain.n, &pid), ct_fd = memfd_create("ct", MFD_CLOEXEC);

                assert_int_equal(mamori_age_encrypt_fd(in, ct_fd, &eo), 0);
                reap(pid);
                close(in);
                buf ct = slurp_fd(ct_fd);
                close(ct_fd);
                assert_int_equal(decrypt_mem(&d, ct.p, ct.n, &out), 0);
                assert_int_equal(out.n, plain.n);
                assert_memory_equal(out.p, plain.p, plain.n);
                buf_free(&out);

                int pt_fd = memfd_create("pt", MFD_CLOEXEC);
                in = trickle_pipe(ct.p, ct.n, &pid);
                assert_int_equal(mamori_age_decrypt_fd(in, pt_fd, &d), 0);
                reap(pid);
                close(in);
                out = slurp_fd(pt_fd);
                close(pt_fd);
                assert_int_equal(out.n, plain.n);
                assert_memory_equal(out.p, plain.p, plain.n);
                buf_free(&out);
                buf_free(&ct);
                buf_free(&plain);
        }
}

/* A file of several slots, opened by two threads: a flipped byte in a later slot,
 * in the last full chunk or in the final chunk fails, and so does a file cut at a
 * slot edge (its last chunk then is not marked final). */
static void test_multislot_tamper(void **state)
{
        keys *k = *state;
        size_t chunks = 41;
        buf plain = pattern(40 * CH + 5);
        mamori_age_encrypt_opts eo = { .recipients = &k->rc[0], .n_recipients = 1, .threads = 2 };
        mamori_age_decrypt_opts d = { .identities = &k->id[0], .n_identities = 1, .threads = 2 };
        buf ct = encrypt_mem(&eo, &plain);
        size_t payload = ct.n - (chunks - 1) * CCH - (5 + 16);
        size_t flips[] = { payload + 20 * CCH + 1000, payload + 39 * CCH + CCH - 1, ct.n - 20, ct.n - 1 };

        assert_int_equal(decrypt_mem(&d, ct.p, ct.n, NULL), 0);
        for (size_t i = 0; i < ELEMENTSOF(flips); i++)
                assert_int_equal(decrypt_flipped(&d, &ct, flips[i], 0x01), -EBADMSG);
        size_t cuts[] = { payload + 16 * CCH, payload + 32 * CCH, payload + 40 * CCH, ct.n - 1 };
        for (size_t i = 0; i < ELEMENTSOF(cuts); i++)
                assert_int_equal(decrypt_mem(&d, ct.p, cuts[i], NULL), -EBADMSG);
        buf_free(&ct);
        buf_free(&plain);
}

/* Identity files as age-keygen writes them. */
static void test_identity_file(void **state)
{
        mamori_age_identity **ids = NULL;
        size_t n = 0;

        assert_int_equal(mamori_age_identities_parse_text(
                                 "# created: 2026-01-01T00:00:00Z\n# public key: age1...\n"
                                 "AGE-SECRET-KEY-1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4QX3S7F6\n\n"
                                 "AGE-SECRET-KEY-1GTYAV8K0GK5NPWNWFQ8PNQ54MZMR7FFUQGHX09CFGAKUAEPSV0CQDPTW8V",
                                 &ids, &n), 0);
        assert_int_equal(n, 2);
        mamori_age_identities_free(ids, n);
        ids = NULL;
        assert_int_equal(mamori_age_identities_parse_text("# only a comment\n", &ids, &n), -EINVAL);
        assert_int_equal(mamori_age_identities_parse_text(
                                 "AGE-SECRET-KEY-1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4QX3S7F7\n",
                                 &ids, &n), -EINVAL);
        assert_null(ids);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hkdf),
                cmocka_unit_test_setup_teardown(test_roundtrip_x25519, setup_keys, teardown_keys),
                cmocka_unit_test_setup_teardown(test_identity_choice, setup_keys, teardown_keys),
                cmocka_unit_test_setup_teardown(test_roundtrip_passphrase, setup_keys, teardown_keys),
                cmocka_unit_test_setup_teardown(test_writer_pieces, setup_keys, teardown_keys),
                cmocka_unit_test(test_golden),
                cmocka_unit_test(test_golden_flip),
                cmocka_unit_test(test_golden_truncate_extend),
                cmocka_unit_test_setup_teardown(test_stream_rules, setup_keys, teardown_keys),
                cmocka_unit_test(test_header_malformed),
                cmocka_unit_test(test_header_contents),
                cmocka_unit_test_setup_teardown(test_stanza_rules, setup_keys, teardown_keys),
                cmocka_unit_test(test_identity_file),
                cmocka_unit_test_setup_teardown(test_reader_pread, setup_keys, teardown_keys),
                cmocka_unit_test_setup_teardown(test_pipes_short_reads, setup_keys, teardown_keys),
                cmocka_unit_test_setup_teardown(test_multislot_tamper, setup_keys, teardown_keys),
        };

        if (sodium_init() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
