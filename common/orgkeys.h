/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The organisation's age keys (R-OUT-1, R-CRY-2, R-CRY-3), in one root-owned
 * directory (mamori.conf `crypto.keys_dir`, default /etc/mamori/keys, 0700 or 0755):
 *
 *   identities  root:root 0600: every identity ever generated, oldest first, in the
 *               format age-keygen writes ("# created: ...", "# public key: age1...",
 *               "AGE-SECRET-KEY-1..."), so `age -d -i identities` opens any file;
 *   recipient   root:root 0644: the newest identity's recipient, one "age1..." line:
 *               what all output is encrypted to.
 *
 * Rotation appends a new identity and replaces `recipient` (both written to a
 * temporary file, fsynced and renamed), so old files still decrypt and new ones use
 * the new key. Loading refuses files that are symlinks, not regular, not owned by
 * root or writable by others, and an identities file readable by others (fail
 * closed: -EPERM, nothing is encrypted or decrypted with a key someone else could
 * have swapped or read).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "age.h"

#define MAMORI_ORGKEYS_DIR_DEFAULT "/etc/mamori/keys"

/* Reads the current recipient. Returns 0, -ENOENT (no key generated yet), -EPERM
 * (ownership or mode refused), -EINVAL (malformed), or -errno. */
int mamori_orgkeys_recipient(const char *dir, mamori_age_recipient *ret);

/* Reads every identity (oldest first). Root only in practice. Returns 0 with an array
 * to free with mamori_age_identities_free, -ENOENT, -EPERM, -EINVAL, or -errno. */
int mamori_orgkeys_identities(const char *dir, mamori_age_identity ***ret, size_t *ret_n);

/* Generates a new identity. With rotate false, fails with -EEXIST if keys exist;
 * with rotate true, fails with -ENOENT if none exist. Creates dir (0700) if missing.
 * On success *ret_recipient (malloc'd, may be NULL) is the new "age1..." string.
 * Returns 0 or -errno; on failure nothing in dir has changed. */
int mamori_orgkeys_generate(const char *dir, bool rotate, char **ret_recipient);
