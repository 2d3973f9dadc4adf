/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The idle lock in mamori-agent (agent/idle.c; docs/design.md "Idle lock"): watches
 * logind's sessions and locks each one that has had no input for idle.timeout seconds.
 */
#pragma once

struct agent;
typedef struct idle_watch idle_watch;

/* Starts watching logind's sessions on the system bus, attached to a->event. Records
 * idle.exempt (R-IDLE-2) and watches nothing on an exempt host. Returns 0 or -errno
 * (then nothing locks: the caller logs it, and the status says idle=unavailable). */
int idle_start(struct agent *a, idle_watch **ret);
/* Stops watching; locked sessions stay frozen (fail closed) and are found again by the
 * next agent. Accepts NULL. */
void idle_free(idle_watch *w);
/* Locks every open session of user now, as on idle (why: the session.lock record's
 * action, e.g. "token-removed", R-AUTH-4). Returns the number of sessions, or
 * -ENOTCONN when sessions are not watched (exempt host, no logind). */
int idle_lock_user(struct agent *a, const char *user, const char *why);
/* Appends "idle_*=" lines (timeout, exempt, sessions, locked) to the status file. */
void idle_write_status(const struct agent *a, int fd);
