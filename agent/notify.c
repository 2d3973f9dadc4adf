/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Telling the user why a device was refused: a line in the terminal's language (the
 * system locale, gettext: po/ja.po) and, when that is not English, the English under
 * it, on the console and every logged-in terminal (utmp), and in the journal. The
 * texts are in logic.c (agent_refusal_message); the device's strings are shown
 * escaped and quoted, never interpreted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <utmpx.h>

#include "agent.h"
#include "cleanup.h"
#include "log.h"

/* A utmp line is a tty name: letters, digits and '/' only (so no ".."). ut_line need
 * not be NUL-terminated: only its first n bytes are read. */
static bool tty_name_ok(const char *s, size_t max)
{
        size_t n = strnlen(s, max);
        if (n == 0 || n == max)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
                      s[i] == '/'))
                        return false;
        return true;
}

static void write_to(const char *path, const char *msg)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
                (void)!write(fd, msg, strlen(msg));
}

void notify_refused(agent *a, const agent_dev *dev)
{
        char msg[4096];
        agent_refusal_message(dev->reason, dev->vendor, dev->product, dev->serial, dev->port, msg, sizeof msg);
        log_notice("Refused USB %s:%s serial \"%s\" on port %s: %s.", dev->vendor, dev->product, dev->serial,
                   dev->port, dev->reason);
        if (a->quiet)
                return;
        write_to("/dev/console", msg);
        setutxent();
        for (struct utmpx *u; (u = getutxent());) {
                if (u->ut_type != USER_PROCESS || !tty_name_ok(u->ut_line, sizeof u->ut_line))
                        continue;
                char path[sizeof u->ut_line + 8];
                snprintf(path, sizeof path, "/dev/%.*s", (int)sizeof u->ut_line, u->ut_line);
                write_to(path, msg);
        }
        endutxent();
}
