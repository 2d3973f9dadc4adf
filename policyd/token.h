/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Authentication tokens (policyd/token.c, R-AUTH-4): the registry and their presence. */
#pragma once

#include <sqlite3.h>
#include <stdbool.h>

#include "server.h"

/* Creates the tokens table. Returns 0 or -EIO. */
int token_schema(sqlite3 *db);
/* True if a token registered to user is plugged in now (as the agent reported on a
 * connection that is still open). */
bool token_present_for(const char *user);
/* A connection closed: the presence it reported is forgotten. */
void token_conn_closed(conn *c);
