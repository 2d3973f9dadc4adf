/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The idle lock's pure parts: terminal and cgroup paths checked from what logind and
 * /proc say, and the deadline. Everything that comes from logind or /proc is checked
 * here before it becomes a path the root agent writes to.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "idle-logic.h"

/* Parses a decimal without sign or leading zeros, at most max. Returns 0 or -EINVAL. */
static int parse_num(const char *s, unsigned long max, unsigned long *ret)
{
        unsigned long v = 0;
        if (!*s || (s[0] == '0' && s[1]))
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned long)(*s - '0');
                if (v > max)
                        return -EINVAL;
        }
        *ret = v;
        return 0;
}

bool idle_session_id_valid(const char *id)
{
        size_t n = strlen(id);
        if (n == 0 || n >= IDLE_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= '0' && id[i] <= '9')))
                        return false;
        return true;
}

int idle_tty_path(const char *tty, char ret[static IDLE_TTY_MAX])
{
        unsigned long n;
        if (strncmp(tty, "/dev/", 5) == 0)
                tty += 5;
        if (strncmp(tty, "pts/", 4) == 0 && parse_num(tty + 4, 1UL << 20, &n) == 0) {
                snprintf(ret, IDLE_TTY_MAX, "/dev/pts/%lu", n);
                return 0;
        }
        if (strncmp(tty, "tty", 3) == 0 && parse_num(tty + 3, 63, &n) == 0 && n >= 1) {
                snprintf(ret, IDLE_TTY_MAX, "/dev/tty%lu", n);
                return 0;
        }
        return -EINVAL;
}

int idle_tty_devnum(const char *path, dev_t *ret)
{
        unsigned long n;
        if (strncmp(path, "/dev/pts/", 9) == 0 && parse_num(path + 9, 1UL << 20, &n) == 0) {
                *ret = makedev(136, n); /* devpts: MKDEV(UNIX98_PTY_SLAVE_MAJOR, index), 20-bit minor */
                return 0;
        }
        if (strncmp(path, "/dev/tty", 8) == 0 && parse_num(path + 8, 63, &n) == 0 && n >= 1) {
                *ret = makedev(4, n);
                return 0;
        }
        return -EINVAL;
}

int idle_tty_from_nr(unsigned long tty_nr, char ret[static IDLE_TTY_MAX])
{
        /* tty_nr packs the device number as new_encode_dev: minor's low byte, major, rest. */
        unsigned ma = (unsigned)((tty_nr >> 8) & 0xfff), mi = (unsigned)((tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00));
        if (ma == 4 && mi >= 1 && mi <= 63) {
                snprintf(ret, IDLE_TTY_MAX, "/dev/tty%u", mi);
                return 0;
        }
        if (ma == 136) {
                snprintf(ret, IDLE_TTY_MAX, "/dev/pts/%u", mi);
                return 0;
        }
        return -ENOTTY;
}

int idle_scope_path(uid_t uid, const char *session_id, char *ret, size_t size)
{
        if (!idle_session_id_valid(session_id))
                return -EINVAL;
        int n = snprintf(ret, size, "user.slice/user-%u.slice/session-%s.scope", (unsigned)uid, session_id);
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int idle_cgroup_where(const char *proc_cgroup, const char *scope)
{
        /* cgroup v2 only: exactly one line "0::/path". */
        if (strncmp(proc_cgroup, "0::/", 4) != 0)
                return -EINVAL;
        const char *p = proc_cgroup + 4, *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (nl && nl[1] != '\0')
                return -EINVAL;
        size_t sl = strlen(scope);
        if (len < sl || strncmp(p, scope, sl) != 0)
                return -ESRCH;
        if (len == sl)
                return 0;
        if (len == sl + 1 + strlen(IDLE_LOCK_CGROUP) && p[sl] == '/' &&
            strncmp(p + sl + 1, IDLE_LOCK_CGROUP, strlen(IDLE_LOCK_CGROUP)) == 0)
                return 1;
        return -ESRCH;
}

int64_t idle_deadline(int64_t last_us, uint32_t timeout_s)
{
        int64_t t = (int64_t)timeout_s * 1000000;
        return last_us > INT64_MAX - t ? INT64_MAX : last_us + t;
}

int64_t idle_latest(int64_t a, int64_t b)
{
        if (a <= 0)
                return b;
        if (b <= 0)
                return a;
        return a > b ? a : b;
}
