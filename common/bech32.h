/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Bech32 (BIP 173) as age uses it: the checksum over the lower-cased string, no
 * 90-character limit (age secret keys are longer), strict on case and padding.
 * Used for "age1..." recipients and "AGE-SECRET-KEY-1..." identities.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * Encodes data (8-bit bytes) under hrp. upper selects an upper-case string (age
 * identities are written upper-case). Returns 0 and a malloc'd string in *ret, or
 * -EINVAL (bad hrp), -ENOMEM.
 */
int mamori_bech32_encode(const char *hrp, const uint8_t *data, size_t len, int upper, char **ret);

/*
 * Decodes s. On success returns 0 and writes the lower-cased hrp (malloc'd) to
 * *ret_hrp, the 8-bit data (malloc'd, may be sodium-free plain memory: callers
 * holding secrets wipe it) to *ret_data and its length to *ret_len. Returns
 * -EINVAL for mixed case, bad characters, a bad checksum, non-zero or excess
 * padding bits, or -ENOMEM. The caller learns the original case from s itself.
 */
int mamori_bech32_decode(const char *s, char **ret_hrp, uint8_t **ret_data, size_t *ret_len);
