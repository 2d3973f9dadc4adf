/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Telling the user why a device was refused: one line in Japanese and one in English
 * on the console and every logged-in terminal (utmp), and in the journal. The text is
 * bilingual in the source (not gettext yet); the device's strings are shown escaped
 * and quoted, never interpreted.
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

typedef struct reason_text {
        const char *reason, *ja, *en;
} reason_text;

static const reason_text texts[] = {
        {"unregistered", "登録されていない外部記録媒体です", "this medium is not registered"},
        {"retired", "廃止された外部記録媒体です", "this medium's registration was retired"},
        {"registration-expired", "使用期間が終了した外部記録媒体です", "this medium's period of use has ended"},
        {"not-yet-in-use", "使用開始日前の外部記録媒体です", "this medium's period of use has not started"},
        {"port-disabled", "このUSBポートは使用できません", "this USB port is disabled"},
        {"badusb", "キーボードと記録媒体を兼ねる機器は使用できません", "a keyboard that is also storage is refused"},
        {"class-refused", "許可されていない種類の機器です", "this kind of device is not allowed"},
        {"ambiguous-identity", "同じ識別情報の媒体が複数登録されています", "more than one medium matches this identity"},
        {"policyd-unreachable", "判定サービスに接続できないため使用できません", "the policy service cannot be reached"},
        {"identity-unusable", "機器の識別情報を読み取れません", "the device's identity cannot be used"},
};

/* The message for reason; unknown reasons get a generic line (still refused). */
static const reason_text *text_for(const char *reason)
{
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                if (streq(texts[i].reason, reason))
                        return &texts[i];
        static const reason_text generic = {"", "外部記録媒体の使用は許可されていません", "this medium is not allowed"};
        return &generic;
}

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
        const reason_text *t = text_for(dev->reason);
        char msg[4096];
        snprintf(msg, sizeof msg,
                 "\r\nmamori: USB %s:%s \"%s\" (port %s): %s。\r\nmamori: USB %s:%s \"%s\" (port %s): %s.\r\n",
                 dev->vendor, dev->product, dev->serial, dev->port, t->ja, dev->vendor, dev->product, dev->serial,
                 dev->port, t->en);
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
