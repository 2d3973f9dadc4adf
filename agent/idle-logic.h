/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The idle lock's pure parts (docs/design.md "Idle lock"): which terminal and which
 * cgroup belong to a logind session, and when its idle time is up. No I/O here, so the
 * unit tests (tests/unit/test-agent-idle.c) can take every case.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IDLE_TTY_MAX 32         /* "/dev/pts/NNNNNNN" */
#define IDLE_ID_MAX 33          /* logind session ids: "12", "c3" */
#define IDLE_LOCK_CGROUP "mamori-lock"

/* Whether id is a logind session id we accept: 1..32 of [A-Za-z0-9]. */
bool idle_session_id_valid(const char *id);

/* Maps logind's TTY property ("tty3", "pts/2", "/dev/pts/2") to the device path of a
 * virtual console /dev/ttyN (N 1..63) or a pseudo-terminal slave /dev/pts/N. Returns 0,
 * or -EINVAL for anything else ("console", "ttyS0", "pts/../x", ""). */
int idle_tty_path(const char *tty, char ret[static IDLE_TTY_MAX]);

/* The device number such a path must carry: (4, N) for /dev/ttyN, (136, N) for /dev/pts/N
 * (devpts gives every slave major 136 and a 20-bit minor). Returns 0 or -EINVAL. */
int idle_tty_devnum(const char *path, dev_t *ret);

/* The terminal path of a controlling-terminal number (field tty_nr of /proc/PID/stat).
 * Returns 0, or -ENOTTY for no terminal or one that is neither ttyN nor pts/N. */
int idle_tty_from_nr(unsigned long tty_nr, char ret[static IDLE_TTY_MAX]);

/* The session's scope below the cgroup root: "user.slice/user-UID.slice/session-ID.scope".
 * Returns 0, or -EINVAL for a bad id, -ENAMETOOLONG. */
int idle_scope_path(uid_t uid, const char *session_id, char *ret, size_t size);

/* Where /proc/PID/cgroup (its text) puts the process relative to scope (as built by
 * idle_scope_path): 0 in the scope itself, 1 in its IDLE_LOCK_CGROUP child, -ESRCH
 * elsewhere (or in another child), -EINVAL for text that is not a cgroup v2 line. */
int idle_cgroup_where(const char *proc_cgroup, const char *scope);

/* When a session whose last input was at last_us (µs, CLOCK_REALTIME) is due to lock
 * after timeout_s seconds. Saturates instead of overflowing. */
int64_t idle_deadline(int64_t last_us, uint32_t timeout_s);

/* The later of two last-input times, ignoring 0 (unknown). */
int64_t idle_latest(int64_t a, int64_t b);
