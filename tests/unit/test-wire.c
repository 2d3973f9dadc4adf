/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The wire codec: round trips, golden bytes, and every malformed form refused. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "wire.h"

static mamori_msg *decode_frame(mamori_msg *m)
{
        size_t len;
        const uint8_t *p = mamori_msg_frame(m, &len);
        assert_non_null(p);
        mamori_msg *d;
        assert_int_equal(mamori_msg_decode(p + 4, len - 4, &d), 0);
        return d;
}

static void test_roundtrip(void **state)
{
        mamori_msg *m, *d;
        assert_int_equal(mamori_msg_new(MAMORI_MSG_EVIDENCE_SUBMIT, MAMORI_MORE, &m), 0);
        mamori_msg_put_str(m, MAMORI_F_EV_TYPE, "media.output");
        mamori_msg_put_u8(m, MAMORI_F_EV_SYNCED, 1);
        mamori_msg_put_u32(m, MAMORI_F_UID, 1000);
        mamori_msg_put_u64(m, MAMORI_F_EV_SEQ, UINT64_C(0x0102030405060708));
        mamori_msg_put_i64(m, MAMORI_F_EV_TIME, -5);
        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "file", "報告書.pdf");
        mamori_msg_put_str(m, MAMORI_F_USER, "");
        d = decode_frame(m);
        assert_int_equal(d->type, MAMORI_MSG_EVIDENCE_SUBMIT);
        assert_int_equal(d->status, MAMORI_MORE);
        const char *s;
        uint8_t u8;
        uint32_t u32;
        uint64_t u64;
        int64_t i64;
        assert_int_equal(mamori_msg_get_str(d, MAMORI_F_EV_TYPE, 64, &s), 0);
        assert_string_equal(s, "media.output");
        assert_int_equal(mamori_msg_get_u8(d, MAMORI_F_EV_SYNCED, &u8), 0);
        assert_int_equal(u8, 1);
        assert_int_equal(mamori_msg_get_u32(d, MAMORI_F_UID, &u32), 0);
        assert_int_equal(u32, 1000);
        assert_int_equal(mamori_msg_get_u64(d, MAMORI_F_EV_SEQ, &u64), 0);
        assert_true(u64 == UINT64_C(0x0102030405060708));
        assert_int_equal(mamori_msg_get_i64(d, MAMORI_F_EV_TIME, &i64), 0);
        assert_true(i64 == -5);
        assert_int_equal(mamori_msg_get_str(d, MAMORI_F_USER, 64, &s), 0);
        assert_string_equal(s, "");
        char key[MAMORI_PAIR_KEY_MAX + 1];
        const mamori_field *f = NULL;
        for (size_t i = 0; i < d->n_fields; i++)
                if (d->fields[i].tag == MAMORI_F_EV_PAIR)
                        f = &d->fields[i];
        assert_non_null(f);
        assert_int_equal(mamori_field_pair(f, key, &s), 0);
        assert_string_equal(key, "file");
        assert_string_equal(s, "報告書.pdf");
        /* twice: decoding a pair does not change the message */
        assert_int_equal(mamori_field_pair(f, key, &s), 0);
        assert_string_equal(key, "file");
        assert_int_equal(mamori_msg_get_u32(d, MAMORI_F_COUNT, &u32), -ENOENT);
        assert_int_equal(mamori_msg_get_u32(d, MAMORI_F_EV_SEQ, &u32), -EBADMSG); /* wrong width */
        mamori_msg_free(m);
        mamori_msg_free(d);
}

/* Golden: the exact bytes of a small frame (docs/protocol.md). */
static void test_golden(void **state)
{
        static const uint8_t want[] = {0, 0, 0, 14, 0, 1, 0, 0, 0, 1, 0, 0, 0, 4, 'p', 'o', 'n', 'g'};
        mamori_msg *m;
        assert_int_equal(mamori_msg_new(MAMORI_MSG_PING, MAMORI_OK, &m), 0);
        mamori_msg_put_str(m, MAMORI_F_TEXT, "pong");
        size_t len;
        const uint8_t *p = mamori_msg_frame(m, &len);
        assert_int_equal(len, sizeof want);
        assert_memory_equal(p, want, sizeof want);
        mamori_msg_free(m);
}

static void expect_bad(const uint8_t *body, size_t len, int err)
{
        mamori_msg *d = NULL;
        assert_int_equal(mamori_msg_decode(body, len, &d), err);
        assert_null(d);
}

static void test_malformed(void **state)
{
        static const uint8_t short_body[] = {0, 1, 0};
        static const uint8_t field_overrun[] = {0, 1, 0, 0, 0, 7, 0, 0, 0, 9, 'x'};
        static const uint8_t field_header_cut[] = {0, 1, 0, 0, 0, 7, 0, 0};
        expect_bad(short_body, sizeof short_body, -EBADMSG);
        expect_bad(field_overrun, sizeof field_overrun, -EBADMSG);
        expect_bad(field_header_cut, sizeof field_header_cut, -EBADMSG);
        static uint8_t big[MAMORI_MSG_MAX + 1];
        expect_bad(big, sizeof big, -EMSGSIZE);
}

static void test_strings_refused(void **state)
{
        /* embedded NUL, invalid UTF-8, overlong encoding, surrogate, too long */
        static const char *const bad[] = {"a\0b", "\xff", "\xc0\xaf", "\xed\xa0\x80", "\xe3\x81"};
        static const size_t lens[] = {3, 1, 2, 3, 2};
        for (size_t i = 0; i < 5; i++) {
                mamori_msg *m, *d;
                assert_int_equal(mamori_msg_new(1, 0, &m), 0);
                mamori_msg_put_bytes(m, MAMORI_F_USER, bad[i], lens[i]);
                d = decode_frame(m);
                const char *s;
                assert_int_equal(mamori_msg_get_str(d, MAMORI_F_USER, 64, &s), -EBADMSG);
                mamori_msg_free(m);
                mamori_msg_free(d);
        }
        mamori_msg *m, *d;
        assert_int_equal(mamori_msg_new(1, 0, &m), 0);
        mamori_msg_put_str(m, MAMORI_F_USER, "abcdef");
        d = decode_frame(m);
        const char *s;
        assert_int_equal(mamori_msg_get_str(d, MAMORI_F_USER, 5, &s), -EBADMSG);
        assert_int_equal(mamori_msg_get_str(d, MAMORI_F_USER, 6, &s), 0);
        mamori_msg_free(m);
        mamori_msg_free(d);
}

static void test_oversize_build(void **state)
{
        mamori_msg *m;
        static char big[MAMORI_MSG_MAX];
        memset(big, 'a', sizeof big - 1);
        assert_int_equal(mamori_msg_new(1, 0, &m), 0);
        mamori_msg_put_str(m, MAMORI_F_TEXT, big);
        size_t len;
        assert_null(mamori_msg_frame(m, &len));
        mamori_msg_free(m);
        assert_int_equal(mamori_msg_new(1, 0, &m), 0);
        mamori_msg_put_pair(m, MAMORI_F_EV_PAIR, "Bad Key", "v");
        assert_null(mamori_msg_frame(m, &len));
        mamori_msg_free(m);
}

static void test_reader(void **state)
{
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        mamori_msg *m;
        assert_int_equal(mamori_msg_new(MAMORI_MSG_STATUS, 0, &m), 0);
        mamori_msg_put_str(m, MAMORI_F_HOST, "terminal-01");
        size_t len;
        const uint8_t *p = mamori_msg_frame(m, &len);
        /* the frame in two pieces, then a frame announcing more than the cap */
        assert_int_equal(write(sv[0], p, 5), 5);
        mamori_reader rd = {0};
        assert_true(mamori_reader_fill(&rd, sv[1]) > 0);
        mamori_msg *d = NULL;
        assert_int_equal(mamori_reader_next(&rd, &d), 0);
        assert_int_equal(write(sv[0], p + 5, len - 5), (ssize_t)(len - 5));
        static const uint8_t huge[] = {0x7f, 0, 0, 0};
        assert_int_equal(write(sv[0], huge, 4), 4);
        assert_true(mamori_reader_fill(&rd, sv[1]) > 0);
        assert_int_equal(mamori_reader_next(&rd, &d), 1);
        assert_int_equal(d->type, MAMORI_MSG_STATUS);
        mamori_msg_free(d);
        assert_int_equal(mamori_reader_next(&rd, &d), -EMSGSIZE);
        mamori_reader_done(&rd);
        mamori_msg_free(m);
        close(sv[0]);
        close(sv[1]);
}

static void test_names(void **state)
{
        assert_string_equal(mamori_status_to_string(MAMORI_E_DENIED), "denied");
        assert_string_equal(mamori_status_to_string(_MAMORI_STATUS_MAX), "unknown-status");
        assert_string_equal(mamori_status_to_string(-1), "unknown-status");
        for (int s = 0; s < _MAMORI_STATUS_MAX; s++) /* every status has a name */
                assert_string_not_equal(mamori_status_to_string(s), "unknown-status");
        assert_null(mamori_msg_type_to_string(0));
        assert_null(mamori_msg_type_to_string(9999));
        assert_string_equal(mamori_msg_type_to_string(MAMORI_MSG_EVIDENCE_SUBMIT), "evidence-submit");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip),       cmocka_unit_test(test_golden),
                cmocka_unit_test(test_malformed),       cmocka_unit_test(test_strings_refused),
                cmocka_unit_test(test_oversize_build),  cmocka_unit_test(test_reader),
                cmocka_unit_test(test_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
