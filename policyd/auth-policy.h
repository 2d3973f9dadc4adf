/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Who the login policy (the auth section of the policy file) applies to. Shared by
 * policyd/auth.c and pam_mamori, which needs it only when policyd cannot be reached.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* True if user needs the second factor on service (R-AUTH-3): listed in auth.mfa_users
 * or a member of an auth.mfa_groups group, and service is in auth.mfa_services (or
 * that list is empty). A user that does not resolve needs it when auth.mfa_users names
 * it only. */
bool mamori_auth_needs_mfa(const mamori_config *cfg, const char *user, const char *service);
/* True if user may log in only while a token registered to them is plugged in
 * (R-AUTH-4): listed in auth.token_users or a member of an auth.token_groups group. */
bool mamori_auth_needs_token(const mamori_config *cfg, const char *user);
/* True if user gets the administrators' lockout profile: root, roles.admin_group or
 * auth.admin_groups member. */
bool mamori_auth_is_admin(const mamori_config *cfg, const char *user);
/* The lockout profile for user: failures that lock and the lock length in seconds. */
void mamori_auth_profile(const mamori_config *cfg, const char *user, uint32_t *ret_deny,
                         uint32_t *ret_unlock);
