/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The auth section's membership rules (R-AUTH-1 admin profile, R-AUTH-3 MFA scope). */
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/types.h>

#include "auth-policy.h"
#include "cleanup.h"

#define GROUPS_MAX 256

static bool strv_contains(char *const *l, const char *s)
{
        for (; l && *l; l++)
                if (strcmp(*l, s) == 0)
                        return true;
        return false;
}

/* True if user is a member (primary or supplementary) of any group in names. */
static bool member_of_any(const char *user, char *const *names)
{
        if (!names || !*names)
                return false;
        char buf[4096];
        struct passwd pwbuf, *pw = NULL;
        if (getpwnam_r(user, &pwbuf, buf, sizeof buf, &pw) != 0 || !pw)
                return false;
        gid_t groups[GROUPS_MAX];
        int n = GROUPS_MAX;
        if (getgrouplist(user, pw->pw_gid, groups, &n) < 0)
                n = GROUPS_MAX; /* truncated: look at what we have */
        for (int i = 0; i < n; i++) {
                char gbuf[8192];
                struct group grbuf, *gr = NULL;
                if (getgrgid_r(groups[i], &grbuf, gbuf, sizeof gbuf, &gr) == 0 && gr &&
                    strv_contains(names, gr->gr_name))
                        return true;
        }
        return false;
}

bool mamori_auth_needs_mfa(const mamori_config *cfg, const char *user, const char *service)
{
        if (cfg->auth.mfa_services && cfg->auth.mfa_services[0] &&
            !strv_contains(cfg->auth.mfa_services, service ? service : ""))
                return false;
        return strv_contains(cfg->auth.mfa_users, user) || member_of_any(user, cfg->auth.mfa_groups);
}

bool mamori_auth_needs_token(const mamori_config *cfg, const char *user)
{
        return strv_contains(cfg->auth.token_users, user) || member_of_any(user, cfg->auth.token_groups);
}

bool mamori_auth_is_admin(const mamori_config *cfg, const char *user)
{
        char *admin[] = {cfg->roles.admin_group, NULL};
        if (strcmp(user, "root") == 0)
                return true;
        return member_of_any(user, admin) || member_of_any(user, cfg->auth.admin_groups);
}

void mamori_auth_profile(const mamori_config *cfg, const char *user, uint32_t *ret_deny,
                         uint32_t *ret_unlock)
{
        bool admin = mamori_auth_is_admin(cfg, user);
        *ret_deny = admin ? cfg->auth.admin_deny : cfg->auth.deny;
        *ret_unlock = admin ? cfg->auth.admin_unlock_time : cfg->auth.unlock_time;
}
