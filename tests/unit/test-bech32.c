/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Bech32 as age uses it, and age's key strings on top of it.
 * R-CRY-1 (established encodings), R-CRY-2 (keys the organisation sets itself
 * must round-trip exactly), R-CRY-4 (a mistyped key string is detected).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "age.h"
#include "bech32.h"
#include "cleanup.h"

/* Decodes s, re-encodes it in the same case, and expects the same string back. */
static void roundtrip(const char *s)
{
        _cleanup_free_ char *hrp = NULL, *again = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        size_t len = 0;
        int upper = s[strcspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")] != 0;

        assert_int_equal(mamori_bech32_decode(s, &hrp, &data, &len), 0);
        assert_int_equal(mamori_bech32_encode(hrp, data, len, upper, &again), 0);
        assert_string_equal(again, s);
}

/* BIP 173 valid strings whose data converts to whole bytes, plus age's long strings. */
static void test_valid(void **state)
{
        roundtrip("A12UEL5L");
        roundtrip("a12uel5l");
        roundtrip("abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw");
        roundtrip("split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w");
        roundtrip("?1ezyfcl");
        roundtrip("age1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0savhh7m");
        /* Longer than BIP 173's 90 characters: age lifts that limit. */
        roundtrip("age1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0jqgfzyvjz2f389q5j52ev95hz7vp3"
                  "xgengdfkxuurjw3m8s7nu06qg9pyx3z9ger5sj22fdxy6nj02pg4y56524t9wkzetfd4ch27tasxzcnrv3jk"
                  "vemgd94xkmrddehhqutjwd682anh0puh57mu04l8lqyps2pcfpvxs7ygnz5t3jxcarusjxff89y4j6te3xv6"
                  "nwwfm85l5zs69gay5kn2029f4246etdw47ctrv4nkj6mddachxath09ah6lupswzc0zvt3k88p5avy");
}

/* The decoded bytes of a known string. */
static void test_decode_bytes(void **state)
{
        _cleanup_free_ char *hrp = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        uint8_t want[32];
        size_t len = 0;

        for (int i = 0; i < 32; i++)
                want[i] = (uint8_t) i;
        assert_int_equal(mamori_bech32_decode("age1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0savhh7m",
                                              &hrp, &data, &len), 0);
        assert_string_equal(hrp, "age");
        assert_int_equal(len, 32);
        assert_memory_equal(data, want, 32);
}

/* BIP 173 invalid strings, mixed case, bad padding, and every single-character typo. */
static void test_invalid(void **state)
{
        static const char *const bad[] = {
                " 1nwldj5",            /* hrp character out of range */
                "\1771axkwrx",         /* hrp character out of range (0x7f) */
                "pzry9x0s0muk",        /* no separator */
                "1pzry9x0s0muk",       /* empty hrp */
                "x1b4n0q5v",           /* 'b' is not in the alphabet */
                "li1dgmt3",            /* checksum too short */
                "A1G7SGD8",            /* checksum made over the upper-case hrp */
                "10a06t8",             /* empty hrp */
                "1qzzfhee",            /* empty hrp */
                "A12uEL5L",            /* mixed case */
                "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
                /* non-zero padding bits */
                "age1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc03q6rzrf",
                /* a whole 5-bit group of padding */
                "age1qdd35qf",
        };
        const char *good = "age1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0savhh7m";
        char typo[128];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *hrp = NULL;
                _cleanup_free_ uint8_t *data = NULL;
                size_t len = 0;
                assert_int_equal(mamori_bech32_decode(bad[i], &hrp, &data, &len), -EINVAL);
                assert_null(hrp);
        }
        /* Bech32 detects every single substitution in the data part. */
        for (size_t i = 4; i < strlen(good); i++) {
                strcpy(typo, good);
                typo[i] = typo[i] == 'q' ? 'p' : 'q';
                _cleanup_free_ char *hrp = NULL;
                _cleanup_free_ uint8_t *data = NULL;
                size_t len = 0;
                assert_int_equal(mamori_bech32_decode(typo, &hrp, &data, &len), -EINVAL);
        }
}

/* age-keygen's identity and recipient strings: the C2SP testkit identity and its
 * recipient as `age-keygen -y` prints it. */
static void test_age_keys(void **state)
{
        const char *sk = "AGE-SECRET-KEY-1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4QX3S7F6";
        const char *pk = "age1w3tyke4gev25vaxxsvcgqu4484rf6ejpmavs57p6yz6lhy2sfs5swrvwyn";
        mamori_age_identity *id = NULL;
        mamori_age_recipient rc, parsed;
        _cleanup_free_ char *pk_str = NULL, *lower = strdup(sk);
        char *sk_str = NULL;

        assert_int_equal(mamori_age_identity_parse(sk, &id), 0);
        assert_int_equal(mamori_age_identity_to_recipient(id, &rc), 0);
        assert_int_equal(mamori_age_recipient_format(&rc, &pk_str), 0);
        assert_string_equal(pk_str, pk);
        assert_int_equal(mamori_age_identity_format(id, &sk_str), 0);
        assert_string_equal(sk_str, sk);
        sodium_free(sk_str);
        assert_int_equal(mamori_age_recipient_parse(pk, &parsed), 0);
        assert_memory_equal(parsed.public_key, rc.public_key, 32);
        mamori_age_identity_free(id);

        /* Identities are upper-case and recipients lower-case; swapped hrps fail. */
        for (char *p = lower; *p; p++)
                *p = (char) (*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        id = NULL;
        assert_int_equal(mamori_age_identity_parse(lower, &id), -EINVAL);
        assert_null(id);
        assert_int_equal(mamori_age_recipient_parse("AGE1W3TYKE4GEV25VAXXSVCGQU4484RF6EJPMAVS57P6YZ6LHY2SFS5SWRVWYN",
                                                    &parsed), -EINVAL);
        assert_int_equal(mamori_age_recipient_parse(lower, &parsed), -EINVAL);
        assert_int_equal(mamori_age_identity_parse("AGE1W3TYKE4GEV25VAXXSVCGQU4484RF6EJPMAVS57P6YZ6LHY2SFS5SWRVWYN",
                                                   &id), -EINVAL);
        /* Wrong hrp and no key-sized data. */
        assert_int_equal(mamori_age_recipient_parse("a12uel5l", &parsed), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_decode_bytes),
                cmocka_unit_test(test_invalid),
                cmocka_unit_test(test_age_keys),
        };

        if (sodium_init() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
