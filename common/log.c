/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static const char *log_ident = "mamori";
static int log_prefix;
static int log_max = LOG_INFO;

void mamori_log_open(const char *ident, int journal_prefix)
{
        log_ident = ident;
        log_prefix = journal_prefix;
        const char *e = getenv("MAMORI_LOG_LEVEL");
        if (e && strcmp(e, "debug") == 0)
                log_max = LOG_DEBUG;
}

void mamori_log_set_max_level(int level)
{
        log_max = level;
}

int mamori_log_internal(int level, int error, const char *fmt, ...)
{
        int e = error < 0 ? -error : error;

        if (level > log_max)
                return -e;
        /* %m in fmt must print the error we were given, not whatever errno holds now. */
        int saved = errno;
        errno = e;
        char buf[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        errno = saved;
        if (log_prefix)
                fprintf(stderr, "<%d>%s\n", level, buf);
        else
                fprintf(stderr, "%s: %s\n", log_ident, buf);
        return -e;
}
