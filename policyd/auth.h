/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Lockout and second-factor state inside policyd (policyd/auth.c, policyd/totp.c). */
#pragma once

#include <sqlite3.h>
#include <stdint.h>

#include "server.h"

/* Creates the TOTP table. Returns 0 or -EIO. */
int totp_init(sqlite3 *db);
/* Checks code for user against the enrolled secret and the replay mark, advancing the
 * mark on success (inside the open batch). Returns 0 when accepted, -ENOENT when no
 * secret is enrolled, -EALREADY for a replayed code, -EACCES for a wrong code or one
 * outside the window, -EIO, -ENOMEM. */
int totp_verify(server *srv, sqlite3 *db, const char *user, const char *code);
/* True if user has a TOTP secret enrolled; negative errno on error. */
int totp_enrolled(sqlite3 *db, const char *user);
/* MAMORI_MSG_TOTP_ENROLL (administrators). */
int handle_totp_enroll(server *srv, conn *c, const mamori_msg *req);
