/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Records and the chain verifier (R-EV-7, R-EV-8, R-CRY-4): canonical encoding, golden
 * bytes, and every fault the verifier must name, on chains built in memory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "chain.h"
#include "record.h"

#define N 40

static mamori_record *make(uint64_t seq, const char *file)
{
        mamori_record *r;
        assert_int_equal(mamori_record_new(&r), 0);
        r->seq = seq;
        r->time_us = 1795312930000000 + seq;
        r->clock_synced = true;
        r->uid = 0;
        assert_int_equal(mamori_record_set(r, &r->type, "media.output"), 0);
        assert_int_equal(mamori_record_set(r, &r->component, "agent"), 0);
        assert_int_equal(mamori_record_set(r, &r->host, "terminal-01"), 0);
        assert_int_equal(mamori_record_set(r, &r->machine_id, "0123456789abcdef0123456789abcdef"), 0);
        assert_int_equal(mamori_record_add(r, "user", "staff01"), 0);
        assert_int_equal(mamori_record_add(r, "file", file), 0);
        assert_int_equal(mamori_record_add(r, "direction", "output"), 0);
        return r;
}

static void test_record_roundtrip(void **state)
{
        mamori_record *r = make(7, "報告書.pdf"), *d;
        assert_int_equal(mamori_record_add(r, "user", "x"), -EEXIST);
        assert_int_equal(mamori_record_add(r, "Bad", "x"), -EINVAL);
        assert_int_equal(mamori_record_add(r, "ok", "\xff"), -EINVAL);
        uint8_t *b;
        int n = mamori_record_encode(r, &b);
        assert_true(n > 0);
        assert_int_equal(mamori_record_decode(b, n, &d), 0);
        assert_int_equal(d->seq, 7);
        assert_string_equal(d->pairs[0].key, "direction"); /* sorted */
        assert_string_equal(mamori_record_get(d, "file"), "報告書.pdf");
        uint8_t *b2;
        int n2 = mamori_record_encode(d, &b2);
        assert_int_equal(n, n2);
        assert_memory_equal(b, b2, n); /* one encoding per record */
        /* Regression: a decoded record (exactly 3 fields allocated) takes more fields. */
        for (int i = 0; i < 20; i++) {
                char k[16];
                snprintf(k, sizeof k, "extra%02d", i);
                assert_int_equal(mamori_record_add(d, k, "x"), 0);
        }
        assert_string_equal(mamori_record_get(d, "extra19"), "x");
        /* not canonical: trailing byte, bad magic, cut short */
        uint8_t *t = malloc(n + 1);
        memcpy(t, b, n);
        t[n] = 0;
        mamori_record *x = NULL;
        assert_int_equal(mamori_record_decode(t, n + 1, &x), -EBADMSG);
        t[0] = 'X';
        assert_int_equal(mamori_record_decode(t, n, &x), -EBADMSG);
        assert_int_equal(mamori_record_decode(b, n - 1, &x), -EBADMSG);
        assert_null(x);
        free(t);
        free(b);
        free(b2);
        mamori_record_free(r);
        mamori_record_free(d);
}

/* Golden: a fixed record's encoding and chain hash must never change silently. */
static void test_record_golden(void **state)
{
        mamori_record *r = make(1, "a.txt");
        uint8_t *b;
        int n = mamori_record_encode(r, &b);
        /* Derived independently of this code, from the layout in record.h, in Python:
         * struct.pack of each field and hashlib.blake2b(zeros32 + enc, digest_size=32). */
        static const char want_hex[] =
                "4d524543010000000000000001000660d3dd740c810100000000000c6d656469612e6f7574707574"
                "00056167656e74000b7465726d696e616c2d30310020303132333435363738396162636465663031"
                "323334353637383961626364656600030009646972656374696f6e000000066f7574707574000466"
                "696c6500000005612e7478740004757365720000000773746166663031";
        static const char want_hash[] = "1227445534d723b9c5ddc704c94585b796b22c5ec8d6e5823e660bcc2b7a0721";
        char hex[1024];
        sodium_bin2hex(hex, sizeof hex, b, n);
        assert_string_equal(hex, want_hex);
        uint8_t zero[32] = {0}, h[32];
        mamori_chain_hash(zero, b, n, h);
        char hh[65];
        sodium_bin2hex(hh, sizeof hh, h, 32);
        assert_string_equal(hh, want_hash);
        free(b);
        mamori_record_free(r);
}

typedef struct chain {
        uint8_t *body[N + 2];
        int len[N + 2];
        uint8_t hash[N + 2][32];
        uint8_t pk[2][32], sk[2][64];
        uint8_t cert1[64];
        uint64_t cp_seq[4];
        uint32_t cp_epoch[4];
        uint8_t cp_hash[4][32], cp_sig[4][64];
        int n_cp;
} chain;

static chain C;

/* Records 1..N; epoch 0 until 20, epoch 1 from 21; checkpoints at 10, 20, 30, 40. */
static int build(void **state)
{
        memset(&C, 0, sizeof C);
        crypto_sign_keypair(C.pk[0], C.sk[0]);
        crypto_sign_keypair(C.pk[1], C.sk[1]);
        uint8_t msg[80];
        size_t m = mamori_epoch_message(1, C.pk[1], 21, msg);
        crypto_sign_detached(C.cert1, NULL, msg, m, C.sk[0]);
        uint8_t prev[32] = {0};
        for (uint64_t s = 1; s <= N; s++) {
                char f[32];
                snprintf(f, sizeof f, "file-%02u.txt", (unsigned)s);
                mamori_record *r = make(s, f);
                C.len[s] = mamori_record_encode(r, &C.body[s]);
                mamori_record_free(r);
                mamori_chain_hash(prev, C.body[s], C.len[s], C.hash[s]);
                memcpy(prev, C.hash[s], 32);
                if (s % 10 == 0) {
                        int i = C.n_cp++;
                        uint32_t e = s <= 20 ? 0 : 1;
                        C.cp_seq[i] = s;
                        C.cp_epoch[i] = e;
                        memcpy(C.cp_hash[i], C.hash[s], 32);
                        uint8_t cm[64];
                        size_t k = mamori_checkpoint_message(s, C.hash[s], e, cm);
                        crypto_sign_detached(C.cp_sig[i], NULL, cm, k, C.sk[e]);
                }
        }
        return 0;
}

static int teardown(void **state)
{
        for (int s = 1; s <= N; s++)
                free(C.body[s]);
        return 0;
}

/* Feeds rows (row key -> record index; 0 ends) to a verifier, returns the result. */
static int run(const int *rows, int n_rows, const uint8_t *anchor, int cps, mamori_verify_result *res)
{
        mamori_verifier *v;
        assert_int_equal(mamori_verifier_new(anchor ? anchor : C.pk[0], &v), 0);
        mamori_verifier_add_epoch(v, 0, 1, C.pk[0], NULL);
        mamori_verifier_add_epoch(v, 1, 21, C.pk[1], C.cert1);
        int ci = 0;
        for (int i = 0; i < n_rows; i++) {
                int s = rows[i];
                mamori_verifier_add_record(v, i + 1, C.body[s], C.len[s], C.hash[s]);
                while (ci < cps && C.cp_seq[ci] <= (uint64_t)(i + 1) && (i + 1 == n_rows || C.cp_seq[ci] == (uint64_t)(i + 1))) {
                        mamori_verifier_add_checkpoint(v, C.cp_seq[ci], C.cp_epoch[ci], C.cp_hash[ci], C.cp_sig[ci]);
                        ci++;
                }
        }
        for (; ci < cps; ci++)
                mamori_verifier_add_checkpoint(v, C.cp_seq[ci], C.cp_epoch[ci], C.cp_hash[ci], C.cp_sig[ci]);
        int r = mamori_verifier_finish(v, res);
        mamori_verifier_free(v);
        return r;
}

static int rows[N + 2];

static int identity(void)
{
        for (int i = 0; i < N; i++)
                rows[i] = i + 1;
        return N;
}

static void expect(int n, mamori_verify_fault f, uint64_t seq)
{
        mamori_verify_result res;
        assert_int_equal(run(rows, n, NULL, 4, &res), f == MAMORI_VERIFY_OK ? 0 : 1);
        if (res.fault != f || res.seq != seq)
                fail_msg("want %s at %u, got %s at %u: %s", mamori_verify_fault_to_string(f), (unsigned)seq,
                         mamori_verify_fault_to_string(res.fault), (unsigned)res.seq, res.message);
}

static void test_intact(void **state)
{
        mamori_verify_result res;
        assert_int_equal(run(rows, identity(), NULL, 4, &res), 0);
        assert_int_equal(res.records, N);
        assert_int_equal(res.checkpoints, 4);
        assert_int_equal(res.epochs, 2);
}

static void test_missing(void **state)
{
        int n = identity();
        memmove(&rows[14], &rows[15], (n - 15) * sizeof(int)); /* drop record 15 */
        expect(n - 1, MAMORI_VERIFY_MISSING, 15);
}

static void test_reordered(void **state)
{
        int n = identity();
        rows[4] = 6;
        rows[5] = 5;
        expect(n, MAMORI_VERIFY_REORDERED, 5);
}

static void test_duplicate_is_inserted(void **state)
{
        int n = identity();
        memmove(&rows[13], &rows[12], (n - 12) * sizeof(int)); /* record 13 twice */
        expect(n + 1, MAMORI_VERIFY_INSERTED, 13);
}

static void test_altered(void **state)
{
        int n = identity();
        C.body[25][C.len[25] - 2] ^= 1;
        expect(n, MAMORI_VERIFY_ALTERED, 25);
        C.body[25][C.len[25] - 2] ^= 1;
}

static void test_truncated(void **state)
{
        identity();
        expect(35, MAMORI_VERIFY_TRUNCATED, 36);
}

static void test_bad_signature(void **state)
{
        identity();
        C.cp_sig[1][3] ^= 1;
        expect(N, MAMORI_VERIFY_BAD_SIGNATURE, 20);
        C.cp_sig[1][3] ^= 1;
        /* a later epoch's key re-signing an earlier checkpoint */
        uint8_t cm[64];
        size_t k = mamori_checkpoint_message(10, C.cp_hash[0], 1, cm);
        uint8_t saved[64];
        memcpy(saved, C.cp_sig[0], 64);
        crypto_sign_detached(C.cp_sig[0], NULL, cm, k, C.sk[1]);
        C.cp_epoch[0] = 1;
        expect(N, MAMORI_VERIFY_BAD_SIGNATURE, 10);
        C.cp_epoch[0] = 0;
        memcpy(C.cp_sig[0], saved, 64);
}

static void test_wrong_anchor(void **state)
{
        mamori_verify_result res;
        assert_int_equal(run(rows, identity(), C.pk[1], 4, &res), 1);
        assert_int_equal(res.fault, MAMORI_VERIFY_BAD_EPOCH);
        C.cert1[0] ^= 1;
        assert_int_equal(run(rows, identity(), NULL, 4, &res), 1);
        assert_int_equal(res.fault, MAMORI_VERIFY_BAD_EPOCH);
        C.cert1[0] ^= 1;
}

static void test_purged_prefix(void **state)
{
        /* records 1..20 purged: the checkpoint at 20 is the seal, and a purge record must
         * account for it; without one, the gap is "missing". */
        mamori_verifier *v;
        mamori_verify_result res;
        assert_int_equal(mamori_verifier_new(C.pk[0], &v), 0);
        mamori_verifier_add_epoch(v, 0, 1, C.pk[0], NULL);
        mamori_verifier_add_epoch(v, 1, 21, C.pk[1], C.cert1);
        mamori_verifier_add_checkpoint(v, 20, 0, C.cp_hash[1], C.cp_sig[1]);
        for (int s = 21; s <= N; s++)
                mamori_verifier_add_record(v, s, C.body[s], C.len[s], C.hash[s]);
        assert_int_equal(mamori_verifier_finish(v, &res), 1);
        assert_int_equal(res.fault, MAMORI_VERIFY_MISSING);
        mamori_verifier_free(v);
}

static void test_parse_time(void **state)
{
        int64_t t;
        assert_int_equal(mamori_parse_time("2024-02-29", &t), 0);
        assert_true(t == INT64_C(1709164800000000));
        assert_int_equal(mamori_parse_time("2023-02-29", &t), -EINVAL);
        assert_int_equal(mamori_parse_time("2026-02-30", &t), -EINVAL);
        assert_int_equal(mamori_parse_time("2026-13-01", &t), -EINVAL);
        assert_int_equal(mamori_parse_time("2026-04-31", &t), -EINVAL);
        assert_int_equal(mamori_parse_time("2026-11-22T24:00", &t), -EINVAL);
        assert_int_equal(mamori_parse_time("2026-11-22T23:59:59Z", &t), 0);
        assert_int_equal(mamori_parse_time("2026-11-22x", &t), -EINVAL);
        assert_int_equal(mamori_parse_time("-7d", &t), 0);
        assert_int_equal(mamori_parse_time("-7x", &t), -EINVAL);
        char buf[32];
        assert_string_equal(mamori_format_time(INT64_C(1709164800000001), buf), "2024-02-29T00:00:00.000001Z");
}

int main(void)
{
        if (sodium_init() < 0)
                return 1;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_record_roundtrip),
                cmocka_unit_test(test_record_golden),
                cmocka_unit_test(test_parse_time),
                cmocka_unit_test_setup_teardown(test_intact, build, teardown),
                cmocka_unit_test_setup_teardown(test_missing, build, teardown),
                cmocka_unit_test_setup_teardown(test_reordered, build, teardown),
                cmocka_unit_test_setup_teardown(test_duplicate_is_inserted, build, teardown),
                cmocka_unit_test_setup_teardown(test_altered, build, teardown),
                cmocka_unit_test_setup_teardown(test_truncated, build, teardown),
                cmocka_unit_test_setup_teardown(test_bad_signature, build, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_anchor, build, teardown),
                cmocka_unit_test_setup_teardown(test_purged_prefix, build, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
