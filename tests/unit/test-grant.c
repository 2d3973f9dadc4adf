/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Signed grants (common/grant.h): canonical encoding, signatures, flip-one-byte in every
 * field, revocations, armor, names and modes (R-PERM-1..3, R-CRY-4, R-OUT-3). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "grant.h"

typedef struct fixture {
        uint8_t pk[MAMORI_GRANT_PK_LEN], sk[MAMORI_GRANT_SK_LEN];
        uint8_t pk2[MAMORI_GRANT_PK_LEN], sk2[MAMORI_GRANT_SK_LEN];
        mamori_grant g;
} fixture;

static int setup(void **state)
{
        fixture *f = calloc(1, sizeof *f);
        uint8_t seed[32] = {1}, seed2[32] = {2};
        crypto_sign_seed_keypair(f->pk, f->sk, seed);
        crypto_sign_seed_keypair(f->pk2, f->sk2, seed2);
        mamori_grant *g = &f->g;
        for (int i = 0; i < MAMORI_GRANT_ID_LEN; i++)
                g->id[i] = (uint8_t)(0xa0 + i);
        memcpy(g->manager_pk, f->pk, sizeof f->pk);
        g->created_us = 1790000000000000;
        g->from_us = 1790000000000000;
        g->until_us = 1790003600000000;
        g->modes = MAMORI_MODE_READ | MAMORI_MODE_WRITE_ENCRYPTED;
        g->flags = MAMORI_GRANT_ONCE;
        g->subject_kind = MAMORI_SUBJECT_USER;
        strcpy(g->subject, "yamada");
        strcpy(g->media, "総務-001");
        strcpy(g->host, "pc-012");
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        free(*state);
        return 0;
}

static void test_encode_roundtrip(void **state)
{
        fixture *f = *state;
        uint8_t buf[MAMORI_GRANT_MAX];
        int n = mamori_grant_encode(&f->g, buf);
        assert_true(n > 0);
        assert_memory_equal(buf, "MGRT\x01", 5);
        mamori_grant d;
        assert_int_equal(mamori_grant_decode(buf, n, &d), 0);
        assert_memory_equal(&d.id, f->g.id, MAMORI_GRANT_ID_LEN);
        assert_string_equal(d.subject, "yamada");
        assert_string_equal(d.media, "総務-001");
        assert_string_equal(d.host, "pc-012");
        assert_int_equal(d.until_us, f->g.until_us);
        assert_int_equal(d.modes, f->g.modes);
        /* one encoding only: a trailing byte or a short buffer does not decode */
        buf[n] = 0;
        assert_int_equal(mamori_grant_decode(buf, n + 1, &d), -EBADMSG);
        assert_int_equal(mamori_grant_decode(buf, n - 1, &d), -EBADMSG);
}

static void test_sign_verify(void **state)
{
        fixture *f = *state;
        uint8_t buf[MAMORI_GRANT_MAX];
        int n = mamori_grant_sign(&f->g, f->sk, buf);
        assert_int_equal(n, mamori_grant_encode(&f->g, (uint8_t[MAMORI_GRANT_MAX]){0}) + MAMORI_GRANT_SIG_LEN);
        mamori_grant d;
        assert_int_equal(mamori_grant_verify(buf, n, &d), 0);
        assert_memory_equal(d.manager_pk, f->pk, MAMORI_GRANT_PK_LEN);
        /* signing with a key that is not the grant's named key is refused */
        assert_int_equal(mamori_grant_sign(&f->g, f->sk2, buf), -EINVAL);
}

/* The wrong key: a grant naming key A but signed by B does not verify. */
static void test_wrong_key(void **state)
{
        fixture *f = *state;
        uint8_t buf[MAMORI_GRANT_MAX];
        int n = mamori_grant_sign(&f->g, f->sk, buf);
        /* re-sign the same bytes with key 2: the signature is B's, the key inside is A's */
        uint8_t msg[64 + MAMORI_GRANT_MAX];
        size_t cl = strlen("mamori-grant-v1") + 1;
        memcpy(msg, "mamori-grant-v1", cl);
        memcpy(msg + cl, buf, n - MAMORI_GRANT_SIG_LEN);
        crypto_sign_detached(buf + n - MAMORI_GRANT_SIG_LEN, NULL, msg, cl + n - MAMORI_GRANT_SIG_LEN, f->sk2);
        mamori_grant d;
        assert_int_equal(mamori_grant_verify(buf, n, &d), -EBADE);
        /* and swapping in B's public key breaks the signature A made */
        n = mamori_grant_sign(&f->g, f->sk, buf);
        memcpy(buf + 5 + MAMORI_GRANT_ID_LEN, f->pk2, MAMORI_GRANT_PK_LEN);
        assert_int_equal(mamori_grant_verify(buf, n, &d), -EBADE);
}

/* R-CRY-4: one changed byte anywhere (id, key, times, modes, flags, kind, subject,
 * media, host, signature) and the grant is refused. */
static void test_flip_every_byte(void **state)
{
        fixture *f = *state;
        uint8_t buf[MAMORI_GRANT_MAX];
        int n = mamori_grant_sign(&f->g, f->sk, buf);
        for (int i = 0; i < n; i++)
                for (int bit = 0; bit < 8; bit += 7) { /* the lowest and the highest bit */
                        uint8_t copy[MAMORI_GRANT_MAX];
                        memcpy(copy, buf, n);
                        copy[i] ^= (uint8_t)(1u << bit);
                        mamori_grant d;
                        int r = mamori_grant_verify(copy, n, &d);
                        if (r != -EBADE && r != -EBADMSG)
                                fail_msg("byte %d bit %d flipped: verify returned %d", i, bit, r);
                }
        for (int len = 0; len < n; len++) {
                mamori_grant d;
                assert_true(mamori_grant_verify(buf, len, &d) < 0);
        }
}

static void test_check(void **state)
{
        fixture *f = *state;
        mamori_grant g = f->g;
        const char *why = NULL;
        assert_int_equal(mamori_grant_check(&g, &why), 0);
        g.until_us = g.from_us; /* --until not after --from */
        assert_int_equal(mamori_grant_check(&g, &why), -EINVAL);
        assert_string_equal(why, "--until is not after --from");
        g = f->g;
        strcpy(g.subject, "山田");
        assert_int_equal(mamori_grant_check(&g, NULL), -EINVAL);
        g = f->g;
        strcpy(g.media, "*");
        strcpy(g.host, "*");
        assert_int_equal(mamori_grant_check(&g, NULL), 0);
        g.modes = 0x10;
        assert_int_equal(mamori_grant_check(&g, NULL), -EINVAL);
        g = f->g;
        g.subject_kind = MAMORI_SUBJECT_ANY; /* only decisions say "anyone" */
        assert_int_equal(mamori_grant_check(&g, NULL), -EINVAL);
        g = f->g;
        strcpy(g.host, "pc 12");
        assert_int_equal(mamori_grant_check(&g, NULL), -EINVAL);
}

static void test_media_no(void **state)
{
        assert_true(mamori_media_no_valid("A-001"));
        assert_true(mamori_media_no_valid("総務-001"));            /* Japanese labels are normal */
        assert_true(mamori_media_no_valid("12"));
        assert_false(mamori_media_no_valid(""));
        assert_false(mamori_media_no_valid("A 001"));               /* space */
        assert_false(mamori_media_no_valid("総務\xe3\x80\x80" "001")); /* ideographic space */
        assert_false(mamori_media_no_valid("A\xc2\xa0" "1"));       /* no-break space */
        assert_false(mamori_media_no_valid("A\t1"));
        assert_false(mamori_media_no_valid("A,1"));
        assert_false(mamori_media_no_valid("*"));
        assert_false(mamori_media_no_valid("\xff\xfe"));            /* not UTF-8 */
        assert_true(mamori_media_no_valid("12345678901234567890123456789012"));
        assert_false(mamori_media_no_valid("123456789012345678901234567890123")); /* 33 */
        /* 21 three-byte characters are 63 bytes; 22 are 66, over the byte cap */
        char s[128] = "";
        for (int i = 0; i < 21; i++)
                strcat(s, "総");
        assert_true(mamori_media_no_valid(s));
        strcat(s, "総");
        assert_false(mamori_media_no_valid(s));
}

static void test_modes(void **state)
{
        uint8_t m;
        char buf[64];
        assert_int_equal(mamori_modes_parse("read", &m), 0);
        assert_int_equal(m, MAMORI_MODE_READ);
        assert_int_equal(mamori_modes_parse("write-encrypted,write-plain", &m), 0);
        assert_int_equal(m, MAMORI_MODE_WRITE_ENCRYPTED | MAMORI_MODE_WRITE_PLAIN);
        assert_string_equal(mamori_modes_format(m, buf), "write-encrypted,write-plain");
        assert_int_equal(mamori_modes_parse("", &m), -EINVAL);
        assert_int_equal(mamori_modes_parse("read,", &m), -EINVAL);
        assert_int_equal(mamori_modes_parse("read,,write-plain", &m), -EINVAL);
        assert_int_equal(mamori_modes_parse("write", &m), -EINVAL);
        assert_int_equal(mamori_modes_parse("READ", &m), -EINVAL);
        /* R-OUT-3: encrypted output is its own bit, not a superset of the others */
        assert_int_equal(MAMORI_MODE_WRITE_ENCRYPTED & (MAMORI_MODE_WRITE_PLAIN | MAMORI_MODE_WRITE_PASSPHRASE), 0);
}

static void test_revoke(void **state)
{
        fixture *f = *state;
        uint8_t buf[MAMORI_REVOKE_LEN + MAMORI_GRANT_SIG_LEN], id[16], pk[32];
        int64_t t;
        mamori_revoke_sign(f->g.id, 1790000000000001, f->sk, buf);
        assert_int_equal(mamori_revoke_verify(buf, sizeof buf, id, pk, &t), 0);
        assert_memory_equal(id, f->g.id, 16);
        assert_memory_equal(pk, f->pk, 32);
        assert_int_equal(t, 1790000000000001);
        for (size_t i = 0; i < sizeof buf; i++) {
                buf[i] ^= 1;
                assert_true(mamori_revoke_verify(buf, sizeof buf, id, pk, &t) < 0);
                buf[i] ^= 1;
        }
        assert_true(mamori_revoke_verify(buf, sizeof buf - 1, id, pk, &t) < 0);
}

static void test_armor(void **state)
{
        fixture *f = *state;
        uint8_t buf[MAMORI_GRANT_MAX], out[MAMORI_GRANT_MAX];
        int n = mamori_grant_sign(&f->g, f->sk, buf);
        char *text = NULL;
        assert_int_equal(mamori_grant_armor(buf, n, &text), 0);
        assert_true(strncmp(text, "-----BEGIN MAMORI GRANT-----\n", 29) == 0);
        size_t len = strlen(text);
        assert_int_equal(mamori_grant_dearmor(text, len, out), n);
        assert_memory_equal(out, buf, n);
        assert_int_equal(mamori_grant_dearmor(text, len - 1, out), n); /* without the final newline */

        /* strict: junk before, after, a blank line, a long line, a bad character */
        char bad[4096];
        snprintf(bad, sizeof bad, "x%s", text);
        assert_int_equal(mamori_grant_dearmor(bad, strlen(bad), out), -EBADMSG);
        snprintf(bad, sizeof bad, "%sx\n", text);
        assert_int_equal(mamori_grant_dearmor(bad, strlen(bad), out), -EBADMSG);
        snprintf(bad, sizeof bad, "%s", text);
        bad[29 + 64] = 'A'; /* join the first two lines */
        assert_int_equal(mamori_grant_dearmor(bad, strlen(bad), out), -EBADMSG);
        snprintf(bad, sizeof bad, "%s", text);
        bad[30] = '!';
        assert_int_equal(mamori_grant_dearmor(bad, strlen(bad), out), -EBADMSG);
        assert_int_equal(mamori_grant_dearmor("", 0, out), -EBADMSG);

        /* a changed base64 character either does not parse or does not verify */
        for (size_t i = 29; i < len - 27; i++) {
                if (text[i] == '\n')
                        continue;
                snprintf(bad, sizeof bad, "%s", text);
                bad[i] = bad[i] == 'A' ? 'B' : 'A';
                int k = mamori_grant_dearmor(bad, len, out);
                mamori_grant d;
                if (k >= 0 && mamori_grant_verify(out, k, &d) == 0)
                        fail_msg("armor changed at %zu still verifies", i);
        }
        free(text);
}

static void test_entry_and_ids(void **state)
{
        mamori_entry e = {.kind = MAMORI_SUBJECT_GROUP, .modes = MAMORI_MODE_READ, .once = 1, .until_us = 42};
        strcpy(e.subject, "staff");
        e.id[3] = 7;
        uint8_t buf[MAMORI_ENTRY_MAX];
        size_t n = mamori_entry_encode(&e, buf);
        mamori_entry d;
        assert_int_equal(mamori_entry_decode(buf, n, &d), 0);
        assert_string_equal(d.subject, "staff");
        assert_int_equal(d.until_us, 42);
        assert_int_equal(d.id[3], 7);
        buf[0] = 9;
        assert_int_equal(mamori_entry_decode(buf, n, &d), -EBADMSG);

        uint8_t id[16], back[16];
        char hex[33];
        randombytes_buf(id, sizeof id);
        assert_int_equal(mamori_grant_id_parse(mamori_grant_id_format(id, hex), back), 0);
        assert_memory_equal(id, back, 16);
        assert_int_equal(mamori_grant_id_parse("00", back), -EINVAL);
        assert_int_equal(mamori_grant_id_parse("0123456789ABCDEF0123456789abcdef", back), -EINVAL);

        fixture *f = *state;
        char b64[48];
        uint8_t pk[32];
        assert_int_equal(mamori_pubkey_parse(mamori_pubkey_format(f->pk, b64), pk), 0);
        assert_memory_equal(pk, f->pk, 32);
        assert_int_equal(mamori_pubkey_parse("abc", pk), -EINVAL);
}

int main(void)
{
        if (sodium_init() < 0)
                return 1;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_encode_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sign_verify, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flip_every_byte, setup, teardown),
                cmocka_unit_test_setup_teardown(test_check, setup, teardown),
                cmocka_unit_test_setup_teardown(test_media_no, setup, teardown),
                cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
                cmocka_unit_test_setup_teardown(test_armor, setup, teardown),
                cmocka_unit_test_setup_teardown(test_entry_and_ids, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
