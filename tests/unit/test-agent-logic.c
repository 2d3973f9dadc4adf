/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The agent's pure logic: interface classes, BadUSB, descriptors, identity strings,
 * filesystem probing, mount names (agent/logic.c). */
#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cleanup.h"
#include "grant.h"
#include "i18n.h"
#include "logic.h"

static const uint8_t allowed[] = {0x03, 0x09};

static agent_class_verdict classify_str(const char *ifaces)
{
        agent_iface ifs[AGENT_IFACES_MAX];
        int n = agent_ifaces_parse(ifaces, ifs, AGENT_IFACES_MAX);
        assert_true(n > 0);
        return agent_classify(ifs, n, allowed, ELEMENTSOF(allowed));
}

/* The refusal notice comes from the catalog (po/ja.po, built into <build>/po): in a
 * Japanese locale the Japanese line, then the English; otherwise the English alone. */
static void test_refusal_message(void **state)
{
        const char *build = getenv("MAMORI_BUILD_ROOT");
        assert_non_null(build);
        char dir[4096], buf[1024];
        snprintf(dir, sizeof dir, "%s/po", build);
        assert_non_null(setlocale(LC_ALL, "C.UTF-8"));
        mamori_i18n_bind(dir);
        setenv("LANGUAGE", "en", 1); /* first: found translations are cached by glibc */
        agent_refusal_message("unregistered", "46f4", "0001", "S\\x22", "1-2", buf, sizeof buf);
        assert_string_equal(buf, "\r\nmamori: USB 46f4:0001 \"S\\x22\" (port 1-2): this medium is not registered.\r\n");
        setenv("LANGUAGE", "ja", 1);
        agent_refusal_message("unregistered", "46f4", "0001", "S", "1-2", buf, sizeof buf);
        assert_string_equal(buf, "\r\nmamori: USB 46f4:0001 \"S\" (port 1-2): 登録されていない外部記録媒体です。\r\n"
                                 "mamori: USB 46f4:0001 \"S\" (port 1-2): this medium is not registered.\r\n");
        agent_refusal_message("badusb", "1d6b", "0104", "B", "3-1", buf, sizeof buf);
        assert_non_null(strstr(buf, "キーボードと記録媒体を兼ねる機器は使用できません。"));
        agent_refusal_message("no-such-reason", "1d6b", "0104", "B", "3-1", buf, sizeof buf);
        assert_non_null(strstr(buf, "外部記録媒体の使用は許可されていません。")); /* unknown: generic, still refused */
        char tiny[40]; /* a short buffer: cut, terminated, never overrun */
        agent_refusal_message("unregistered", "46f4", "0001", "S", "1-2", tiny, sizeof tiny);
        assert_int_equal(strlen(tiny), sizeof tiny - 1);
        unsetenv("LANGUAGE");
}

/* Which verdicts let the device in, and which mount it: identify authorises without
 * mounting; no answer (-1) and unknown values do neither (fail closed). */
static void test_verdicts(void **state)
{
        static const struct {
                int v;
                bool auth, mount;
                const char *name;
        } t[] = {
                {MAMORI_VERDICT_BLOCKED, false, false, "blocked"}, {MAMORI_VERDICT_ALLOWED, true, true, "allowed"},
                {MAMORI_VERDICT_EXEMPT, true, true, "allowed"},    {MAMORI_VERDICT_AUDIT, true, true, "allowed"},
                {MAMORI_VERDICT_IDENTIFY, true, false, "identify"}, {-1, false, false, "blocked"},
                {_MAMORI_VERDICT_MAX, false, false, "blocked"},     {255, false, false, "blocked"},
        };
        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                assert_int_equal(agent_verdict_authorises(t[i].v), t[i].auth);
                assert_int_equal(agent_verdict_mounts(t[i].v), t[i].mount);
                assert_string_equal(agent_verdict_recorded(t[i].v), t[i].name);
        }
}

static void test_classify(void **state)
{
        assert_int_equal(classify_str(":030101:"), AGENT_LOCAL_ALLOW);        /* keyboard */
        assert_int_equal(classify_str(":030102:030000:"), AGENT_LOCAL_ALLOW); /* mouse + extra HID */
        assert_int_equal(classify_str(":090000:"), AGENT_LOCAL_ALLOW);        /* hub */
        assert_int_equal(classify_str(":080650:"), AGENT_STORAGE);
        assert_int_equal(classify_str(":080650:ff0000:"), AGENT_STORAGE);
        assert_int_equal(classify_str(":080650:030101:"), AGENT_BADUSB); /* keyboard + storage */
        assert_int_equal(classify_str(":030101:080650:"), AGENT_BADUSB);
        assert_int_equal(classify_str(":e00101:"), AGENT_REFUSE); /* bluetooth: not listed */
        assert_int_equal(classify_str(":030101:020600:"), AGENT_REFUSE); /* keyboard + network */
        /* no interface at all: refused (fail closed) */
        assert_int_equal(agent_classify(NULL, 0, allowed, ELEMENTSOF(allowed)), AGENT_REFUSE);
        /* nothing configured: only storage goes anywhere */
        agent_iface kb = {0x03, 0x01, 0x01};
        assert_int_equal(agent_classify(&kb, 1, NULL, 0), AGENT_REFUSE);
        assert_string_equal(agent_class_verdict_to_string(AGENT_BADUSB), "badusb");
        assert_string_equal(agent_class_verdict_to_string(77), "invalid");
}

static void test_ifaces_parse(void **state)
{
        agent_iface ifs[2];
        assert_int_equal(agent_ifaces_parse(":080650:", ifs, 2), 1);
        assert_int_equal(ifs[0].cls, 8);
        assert_int_equal(ifs[0].subclass, 6);
        assert_int_equal(ifs[0].protocol, 0x50);
        assert_int_equal(agent_ifaces_parse("", ifs, 2), -EINVAL);
        assert_int_equal(agent_ifaces_parse(":", ifs, 2), -EINVAL);
        assert_int_equal(agent_ifaces_parse(":08065:", ifs, 2), -EINVAL);
        assert_int_equal(agent_ifaces_parse(":0806g0:", ifs, 2), -EINVAL);
        assert_int_equal(agent_ifaces_parse(":080650", ifs, 2), -EINVAL);
        assert_int_equal(agent_ifaces_parse(":080650:030101:090000:", ifs, 2), -EINVAL); /* too many */
        assert_int_equal(agent_ifaces_parse(NULL, ifs, 2), -EINVAL);
}

static void test_classes_parse(void **state)
{
        uint8_t c[3];
        assert_int_equal(agent_classes_parse("03 09", c, 3), 2);
        assert_int_equal(c[0], 3);
        assert_int_equal(c[1], 9);
        assert_int_equal(agent_classes_parse("03,e0, 09", c, 3), 3);
        assert_int_equal(c[1], 0xe0);
        assert_int_equal(agent_classes_parse("", c, 3), 0);
        assert_int_equal(agent_classes_parse("3", c, 3), -EINVAL);
        assert_int_equal(agent_classes_parse("033", c, 3), -EINVAL);
        assert_int_equal(agent_classes_parse("zz", c, 3), -EINVAL);
        assert_int_equal(agent_classes_parse("01 02 03 04", c, 3), -EINVAL);
}

/* A mass-storage stick's and a keyboard+storage composite's raw descriptors. */
static const uint8_t dev_desc[18] = {18, 1, 0x00, 0x02, 0, 0, 0, 64, 0x81, 0x07, 0x51, 0x55, 0, 1, 1, 2, 3, 1};

static size_t build(uint8_t *buf, const uint8_t (*ifs)[3], size_t n)
{
        size_t o = 0;
        memcpy(buf, dev_desc, 18);
        o = 18;
        uint8_t cfg[9] = {9, 2, 0, 0, (uint8_t)n, 1, 0, 0x80, 50};
        memcpy(buf + o, cfg, 9);
        o += 9;
        for (size_t i = 0; i < n; i++) {
                uint8_t in[9] = {9, 4, (uint8_t)i, 0, 2, ifs[i][0], ifs[i][1], ifs[i][2], 0};
                memcpy(buf + o, in, 9);
                o += 9;
                uint8_t ep[7] = {7, 5, 0x81, 2, 0, 2, 0};
                memcpy(buf + o, ep, 7);
                o += 7;
        }
        return o;
}

static void test_descriptors(void **state)
{
        uint8_t buf[256];
        agent_iface ifs[4];
        static const uint8_t stick[][3] = {{8, 6, 0x50}};
        size_t len = build(buf, stick, 1);
        assert_int_equal(agent_descriptors_parse(buf, len, ifs, 4), 1);
        assert_int_equal(agent_classify(ifs, 1, allowed, 2), AGENT_STORAGE);
        static const uint8_t combo[][3] = {{3, 1, 1}, {8, 6, 0x50}};
        len = build(buf, combo, 2);
        assert_int_equal(agent_descriptors_parse(buf, len, ifs, 4), 2);
        assert_int_equal(agent_classify(ifs, 2, allowed, 2), AGENT_BADUSB);
        /* truncated: the last descriptor runs past the end */
        assert_int_equal(agent_descriptors_parse(buf, len - 3, ifs, 4), -EBADMSG);
        /* a zero length would loop forever: refused */
        uint8_t zero[4] = {0, 4, 0, 0};
        assert_int_equal(agent_descriptors_parse(zero, 4, ifs, 4), -EBADMSG);
        /* more interfaces than the agent reads: refused */
        assert_int_equal(agent_descriptors_parse(buf, len, ifs, 1), -E2BIG);
        /* only a device descriptor: no interfaces, so classify refuses */
        assert_int_equal(agent_descriptors_parse(dev_desc, 18, ifs, 4), 0);
}

static void test_usb_id(void **state)
{
        char id[5];
        assert_int_equal(agent_usb_id_normalize("0781", id), 0);
        assert_string_equal(id, "0781");
        assert_int_equal(agent_usb_id_normalize("ABcd", id), 0);
        assert_string_equal(id, "abcd");
        assert_int_equal(agent_usb_id_normalize("781", id), -EINVAL);
        assert_int_equal(agent_usb_id_normalize("07811", id), -EINVAL);
        assert_int_equal(agent_usb_id_normalize("07g1", id), -EINVAL);
        assert_int_equal(agent_usb_id_normalize(NULL, id), -EINVAL);
}

static void test_port(void **state)
{
        assert_true(agent_port_valid("1-1"));
        assert_true(agent_port_valid("3-1.2.4"));
        assert_false(agent_port_valid("usb1"));
        assert_false(agent_port_valid("1-"));
        assert_false(agent_port_valid("1-1."));
        assert_false(agent_port_valid("1-1-2"));
        assert_false(agent_port_valid("1.1-2"));
        assert_false(agent_port_valid("../1-1"));
        assert_false(agent_port_valid("1-1:1.0"));
        assert_false(agent_port_valid(""));
        assert_false(agent_port_valid(NULL));
}

/* Hostile strings: kept exactly (quotes, $(...), ../, non-ASCII); only invalid UTF-8,
 * control characters and the backslash are escaped, reversibly. */
static void test_escape(void **state)
{
        char out[AGENT_RECORDED_MAX];
        const char *kept[] = {"AB\"C'D", "$(reboot)", "`id`", "../../etc/passwd", "シリアル番号", "a;b|c&d", "😀"};
        for (size_t i = 0; i < ELEMENTSOF(kept); i++) {
                assert_int_equal(agent_escape(kept[i], out, sizeof out), 0);
                assert_string_equal(out, kept[i]);
        }
        assert_int_equal(agent_escape("a\\b", out, sizeof out), 0);
        assert_string_equal(out, "a\\\\b");
        assert_int_equal(agent_escape("a\nb\x1b[2J", out, sizeof out), 0);
        assert_string_equal(out, "a\\x0ab\\x1b[2J");
        assert_int_equal(agent_escape("\xff\xfe" "ok\xe3\x81", out, sizeof out), 0);
        assert_string_equal(out, "\\xff\\xfeok\\xe3\\x81");
        assert_int_equal(agent_escape("\xed\xa0\x80", out, sizeof out), 0); /* a surrogate */
        assert_string_equal(out, "\\xed\\xa0\\x80");
        char small[4];
        assert_int_equal(agent_escape("abcd", small, sizeof small), -E2BIG);
        assert_int_equal(agent_escape("abc", small, sizeof small), 0);
}

static void test_serial(void **state)
{
        char s[AGENT_SERIAL_MAX + 1], long_serial[AGENT_SERIAL_MAX + 2];
        memset(long_serial, 'A', sizeof long_serial - 1);
        long_serial[sizeof long_serial - 1] = 0;
        assert_int_equal(agent_serial_for_decide(long_serial, s), -E2BIG); /* cannot be named: blocked */
        long_serial[AGENT_SERIAL_MAX] = 0;
        assert_int_equal(agent_serial_for_decide(long_serial, s), 0);
        assert_int_equal(strlen(s), AGENT_SERIAL_MAX);
        assert_int_equal(agent_serial_for_decide(NULL, s), 0);
        assert_string_equal(s, "");
}

static void test_mount_name(void **state)
{
        char n[32];
        agent_mount_name(8, 17, n);
        assert_string_equal(n, "8-17");
        agent_mount_name(4294967295u, 4294967295u, n);
        assert_string_equal(n, "4294967295-4294967295");
}

static void test_view_dirname(void **state)
{
        char n[AGENT_VIEW_NAME_MAX];
        assert_int_equal(agent_view_dirname("M-001", "8-17", n), 0);
        assert_string_equal(n, "M-001");
        assert_int_equal(agent_view_dirname("資料/2026", "8-17", n), 0); /* UTF-8 kept, '/' replaced */
        assert_string_equal(n, "資料_2026");
        assert_int_equal(agent_view_dirname("a/../b", "8-17", n), 0);
        assert_string_equal(n, "a_.._b");
        assert_int_equal(agent_view_dirname("x\n\x7fy", "8-17", n), 0);
        assert_string_equal(n, "x__y");
        const char *numbers[] = {"", ".", "..", ".hidden"};
        for (size_t i = 0; i < 4; i++) {
                assert_int_equal(agent_view_dirname(numbers[i], "8-17", n), 1);
                assert_string_equal(n, "8-17");
        }
        char longno[200];
        memset(longno, 'a', sizeof longno - 1);
        longno[sizeof longno - 1] = 0;
        assert_int_equal(agent_view_dirname(longno, "8-17", n), 1); /* cut: never a prefix */
        assert_string_equal(n, "8-17");
}

static void test_fs_probe(void **state)
{
        static uint8_t buf[AGENT_PROBE_SIZE];
        const char *type;
        char uuid[AGENT_FS_UUID_MAX];
        memset(buf, 0, sizeof buf);
        assert_int_equal(agent_fs_probe(buf, sizeof buf, &type, uuid), 0);
        /* FAT32 with volume id 0x1234abcd */
        buf[510] = 0x55, buf[511] = 0xaa;
        memcpy(buf + 82, "FAT32   ", 8);
        buf[67] = 0xcd, buf[68] = 0xab, buf[69] = 0x34, buf[70] = 0x12;
        assert_int_equal(agent_fs_probe(buf, sizeof buf, &type, uuid), 1);
        assert_string_equal(type, "vfat");
        assert_string_equal(uuid, "1234-ABCD");
        /* an MBR alone (0x55aa, no FAT): nothing to mount */
        memset(buf + 82, 0, 8);
        assert_int_equal(agent_fs_probe(buf, sizeof buf, &type, uuid), 0);
        memset(buf, 0, sizeof buf);
        buf[1024 + 56] = 0x53, buf[1024 + 57] = 0xef;
        for (int i = 0; i < 16; i++)
                buf[1024 + 104 + i] = i * 17;
        assert_int_equal(agent_fs_probe(buf, sizeof buf, &type, uuid), 1);
        assert_string_equal(type, "ext4");
        assert_string_equal(uuid, "00112233-4455-6677-8899-aabbccddeeff");
        assert_int_equal(agent_fs_probe(buf, 1100, &type, uuid), 0); /* too short to hold it */
        memset(buf, 0, sizeof buf);
        memcpy(buf + 32769, "CD001", 5);
        assert_int_equal(agent_fs_probe(buf, sizeof buf, &type, uuid), 1);
        assert_string_equal(type, "iso9660");
        assert_string_equal(uuid, "");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_verdicts),     cmocka_unit_test(test_refusal_message),
                cmocka_unit_test(test_classify),   cmocka_unit_test(test_ifaces_parse),
                cmocka_unit_test(test_classes_parse), cmocka_unit_test(test_descriptors),
                cmocka_unit_test(test_usb_id),     cmocka_unit_test(test_port),
                cmocka_unit_test(test_escape),     cmocka_unit_test(test_serial),
                cmocka_unit_test(test_mount_name), cmocka_unit_test(test_fs_probe),
                cmocka_unit_test(test_view_dirname),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
