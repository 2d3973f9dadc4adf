/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Logging for daemons and tools: one line to stderr (the journal picks it up
 * under systemd, with the <N> priority prefix when MAMORI_LOG_PREFIX is set by
 * mamori_log_open()). log_*_errno(r, ...) returns r (negative) so that
 *         return log_error_errno(r, "Failed to open %s: %m", path);
 * reads naturally; %m prints strerror(-r).
 */
#pragma once

#include <stdarg.h>
#include <syslog.h>

/* Sets the program name and whether lines get the "<N>" syslog priority prefix. */
void mamori_log_open(const char *ident, int journal_prefix);
/* Drops messages less important than level (LOG_DEBUG shows everything). */
void mamori_log_set_max_level(int level);

/* Logs a line; returns -abs(error), or 0 when error is 0. */
int mamori_log_internal(int level, int error, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define log_debug(...) mamori_log_internal(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) mamori_log_internal(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) mamori_log_internal(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) mamori_log_internal(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) mamori_log_internal(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...) mamori_log_internal(LOG_DEBUG, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) mamori_log_internal(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) mamori_log_internal(LOG_ERR, (e), __VA_ARGS__)
