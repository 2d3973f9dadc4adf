/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Each module's dispatch table, terminated by a zero row; listed in server.c. */
#pragma once

#include "server.h"

extern const handler core_handlers[];     /* core.c */
extern const handler evidence_handlers[]; /* evidence.c */
extern const handler media_handlers[];    /* media.c, media-decide.c, grants.c */
int media_init(server *srv);              /* media.c: ledger, manager and grant tables */
extern const handler auth_handlers[];     /* auth.c, totp.c */
int auth_module_init(server *srv);        /* auth.c: lockout and TOTP tables */
extern const handler token_handlers[];    /* token.c */
int token_init(server *srv);              /* token.c: the token registry */
