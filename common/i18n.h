/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Messages a user reads are translatable (gettext, text domain "mamori", catalogs in
 * po/); the terminals' users read Japanese. Library code (the PAM module) never calls
 * setlocale or textdomain: the program's locale decides, and only our own domain is
 * bound.
 */
#pragma once

#include <libintl.h>

#define MAMORI_TEXT_DOMAIN "mamori"
#define _(s) dgettext(MAMORI_TEXT_DOMAIN, s)
#define N_(s) (s)

/* Binds the text domain to dir (the installed MAMORI_LOCALEDIR; tests: the build's
 * po/), UTF-8. Idempotent and cheap: a PAM module calls it on every entry. */
static inline void mamori_i18n_bind(const char *dir)
{
        (void)bindtextdomain(MAMORI_TEXT_DOMAIN, dir);
        (void)bind_textdomain_codeset(MAMORI_TEXT_DOMAIN, "UTF-8");
}
