/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The idle lock's pure parts (agent/idle-logic.c): the terminal and cgroup paths the root
 * agent derives from logind and /proc, and the deadline (R-IDLE-1). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <cmocka.h>

#include "cleanup.h"
#include "idle-logic.h"

/* Only /dev/ttyN (1..63) and /dev/pts/N become paths; anything else from logind is refused. */
static void test_tty_path(void **state)
{
        static const struct {
                const char *in, *out;
        } ok[] = {
                {"tty1", "/dev/tty1"}, {"tty63", "/dev/tty63"}, {"pts/0", "/dev/pts/0"},
                {"pts/17", "/dev/pts/17"}, {"/dev/pts/3", "/dev/pts/3"}, {"/dev/tty2", "/dev/tty2"},
        };
        static const char *const bad[] = {
                "", "tty", "tty0", "tty64", "ttyS0", "console", "pts/", "pts/../tty1", "pts/1/x",
                "pts/01", "pts/-1", "/dev/../dev/tty1", "tty1 ", ":0", "ssh", "pts/99999999999999999999",
                "/dev/ptmx", "/dev/pts/ptmx",
        };
        char p[IDLE_TTY_MAX];
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                assert_int_equal(idle_tty_path(ok[i].in, p), 0);
                assert_string_equal(p, ok[i].out);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (idle_tty_path(bad[i], p) != -EINVAL)
                        fail_msg("accepted %s", bad[i]);
}

/* The device number a validated path must carry (checked with fstat on the open tty). */
static void test_tty_devnum(void **state)
{
        dev_t d;
        assert_int_equal(idle_tty_devnum("/dev/tty3", &d), 0);
        assert_true(d == makedev(4, 3));
        assert_int_equal(idle_tty_devnum("/dev/pts/5", &d), 0);
        assert_true(d == makedev(136, 5));
        assert_int_equal(idle_tty_devnum("/dev/pts/300", &d), 0);
        assert_true(d == makedev(136, 300));
        assert_int_equal(idle_tty_devnum("/dev/tty0", &d), -EINVAL);
        assert_int_equal(idle_tty_devnum("/dev/console", &d), -EINVAL);
        assert_int_equal(idle_tty_devnum("tty3", &d), -EINVAL);
}

/* /proc/PID/stat's tty_nr back to a path: the SSH case, where logind has no TTY. */
static void test_tty_from_nr(void **state)
{
        char p[IDLE_TTY_MAX];
        assert_int_equal(idle_tty_from_nr((136 << 8) | 4, p), 0); /* pts/4 */
        assert_string_equal(p, "/dev/pts/4");
        assert_int_equal(idle_tty_from_nr((136 << 8) | 44 | (256 << 12), p), 0); /* new_encode_dev */
        assert_string_equal(p, "/dev/pts/300");
        assert_int_equal(idle_tty_from_nr((4 << 8) | 2, p), 0);
        assert_string_equal(p, "/dev/tty2");
        assert_int_equal(idle_tty_from_nr(0, p), -ENOTTY);              /* no terminal */
        assert_int_equal(idle_tty_from_nr((4 << 8) | 64, p), -ENOTTY);  /* ttyS0 */
        assert_int_equal(idle_tty_from_nr((5 << 8) | 1, p), -ENOTTY);   /* /dev/console */
        assert_int_equal(idle_tty_from_nr((4 << 8) | 0, p), -ENOTTY);   /* tty0: whichever is shown */
}

/* The scope path is built from logind's uid and id, never taken from a string. */
static void test_scope_path(void **state)
{
        char p[128];
        assert_int_equal(idle_scope_path(1000, "3", p, sizeof p), 0);
        assert_string_equal(p, "user.slice/user-1000.slice/session-3.scope");
        assert_int_equal(idle_scope_path(0, "c12", p, sizeof p), 0);
        assert_string_equal(p, "user.slice/user-0.slice/session-c12.scope");
        assert_int_equal(idle_scope_path(1000, "../x", p, sizeof p), -EINVAL);
        assert_int_equal(idle_scope_path(1000, "", p, sizeof p), -EINVAL);
        assert_int_equal(idle_scope_path(1000, "a/b", p, sizeof p), -EINVAL);
        assert_int_equal(idle_scope_path(1000, "123456789012345678901234567890123", p, sizeof p), -EINVAL);
        assert_int_equal(idle_scope_path(1000, "3", p, 10), -ENAMETOOLONG);
}

/* Which processes the lock moves: those in the scope (0) or already in its lock child (1);
 * a process elsewhere, in another child, or a cgroup v1 line is not touched. */
static void test_cgroup_where(void **state)
{
        const char *s = "user.slice/user-1000.slice/session-3.scope";
        assert_int_equal(idle_cgroup_where("0::/user.slice/user-1000.slice/session-3.scope\n", s), 0);
        assert_int_equal(idle_cgroup_where("0::/user.slice/user-1000.slice/session-3.scope", s), 0);
        assert_int_equal(idle_cgroup_where("0::/user.slice/user-1000.slice/session-3.scope/mamori-lock\n", s), 1);
        assert_int_equal(idle_cgroup_where("0::/user.slice/user-1000.slice/session-33.scope\n", s), -ESRCH);
        assert_int_equal(idle_cgroup_where("0::/user.slice/user-1000.slice/session-3.scope/other\n", s), -ESRCH);
        assert_int_equal(idle_cgroup_where("0::/user.slice/user-1000.slice/session-3.scope/mamori-lockx\n", s), -ESRCH);
        assert_int_equal(idle_cgroup_where("0::/system.slice/sshd.service\n", s), -ESRCH);
        assert_int_equal(idle_cgroup_where("1:name=systemd:/user.slice\n0::/x\n", s), -EINVAL);
        assert_int_equal(idle_cgroup_where("0::/user.slice/user-1000.slice/session-3.scope\n1:x:/\n", s), -EINVAL);
        assert_int_equal(idle_cgroup_where("", s), -EINVAL);
}

/* R-IDLE-1: the deadline is last input plus the timeout, without overflow. */
static void test_deadline(void **state)
{
        assert_int_equal(idle_deadline(1000000, 900), 901000000);
        assert_int_equal(idle_deadline(0, 5), 5000000);
        assert_true(idle_deadline(INT64_MAX - 10, 900) == INT64_MAX);
        assert_int_equal(idle_latest(0, 7), 7);
        assert_int_equal(idle_latest(7, 0), 7);
        assert_int_equal(idle_latest(5, 9), 9);
        assert_int_equal(idle_latest(9, 5), 9);
        assert_int_equal(idle_latest(-1, 0), 0);
}

static void test_session_id(void **state)
{
        assert_true(idle_session_id_valid("1"));
        assert_true(idle_session_id_valid("c2"));
        assert_false(idle_session_id_valid(""));
        assert_false(idle_session_id_valid("1 "));
        assert_false(idle_session_id_valid("."));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tty_path),     cmocka_unit_test(test_tty_devnum),
                cmocka_unit_test(test_tty_from_nr),  cmocka_unit_test(test_scope_path),
                cmocka_unit_test(test_cgroup_where), cmocka_unit_test(test_deadline),
                cmocka_unit_test(test_session_id),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
