/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "bech32.h"
#include "cleanup.h"

static const char charset[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
static const uint32_t generator[5] = { 0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3 };

/* One step of the BCH checksum polynomial. */
static uint32_t polymod_step(uint32_t chk, uint8_t v)
{
        uint32_t top = chk >> 25;

        chk = ((chk & 0x1ffffff) << 5) ^ v;
        for (int i = 0; i < 5; i++)
                if ((top >> i) & 1)
                        chk ^= generator[i];
        return chk;
}

/* Checksum state after the expanded lower-case hrp. */
static uint32_t polymod_hrp(const char *hrp, size_t hlen)
{
        uint32_t chk = 1;

        for (size_t i = 0; i < hlen; i++)
                chk = polymod_step(chk, (uint8_t) tolower((unsigned char) hrp[i]) >> 5);
        chk = polymod_step(chk, 0);
        for (size_t i = 0; i < hlen; i++)
                chk = polymod_step(chk, (uint8_t) tolower((unsigned char) hrp[i]) & 31);
        return chk;
}

/* Regroups bits; with pad, pads the tail with zeros, without it rejects a non-zero or long tail. */
static int convert_bits(uint8_t *out, size_t *out_len, int outbits, const uint8_t *in, size_t in_len,
                        int inbits, bool pad)
{
        uint32_t acc = 0, maxv = (1u << outbits) - 1;
        int bits = 0;
        size_t n = 0;

        for (size_t i = 0; i < in_len; i++) {
                acc = (acc << inbits) | in[i];
                bits += inbits;
                while (bits >= outbits) {
                        bits -= outbits;
                        out[n++] = (acc >> bits) & maxv;
                }
        }
        if (pad) {
                if (bits > 0)
                        out[n++] = (acc << (outbits - bits)) & maxv;
        } else if (bits >= inbits || ((acc << (outbits - bits)) & maxv) != 0)
                return -EINVAL;
        *out_len = n;
        return 0;
}

/* Validates an hrp: 1..83 printable ASCII characters (33..126). */
static int check_hrp(const char *hrp, size_t hlen)
{
        if (hlen < 1 || hlen > 83)
                return -EINVAL;
        for (size_t i = 0; i < hlen; i++)
                if (hrp[i] < 33 || hrp[i] > 126)
                        return -EINVAL;
        return 0;
}

/* hrp, "1", 5-bit groups of data, six checksum characters. */
int mamori_bech32_encode(const char *hrp, const uint8_t *data, size_t len, int upper, char **ret)
{
        size_t hlen = strlen(hrp), n5 = 0;
        uint32_t chk;
        int r;

        r = check_hrp(hrp, hlen);
        if (r < 0)
                return r;
        if (len > SIZE_MAX / 2)
                return -EINVAL;

        _cleanup_free_ uint8_t *d5 = malloc(len * 8 / 5 + 2);
        if (!d5)
                return -ENOMEM;
        convert_bits(d5, &n5, 5, data, len, 8, true);

        _cleanup_free_ char *s = malloc(hlen + 1 + n5 + 6 + 1);
        if (!s)
                return -ENOMEM;
        chk = polymod_hrp(hrp, hlen);
        for (size_t i = 0; i < hlen; i++)
                s[i] = upper ? toupper((unsigned char) hrp[i]) : tolower((unsigned char) hrp[i]);
        s[hlen] = '1';
        for (size_t i = 0; i < n5; i++) {
                chk = polymod_step(chk, d5[i]);
                s[hlen + 1 + i] = charset[d5[i]];
        }
        for (int i = 0; i < 6; i++)
                chk = polymod_step(chk, 0);
        chk ^= 1;
        for (int i = 0; i < 6; i++)
                s[hlen + 1 + n5 + i] = charset[(chk >> (5 * (5 - i))) & 31];
        s[hlen + 1 + n5 + 6] = 0;
        if (upper)
                for (char *p = s + hlen; *p; p++)
                        *p = toupper((unsigned char) *p);
        sodium_memzero(d5, len * 8 / 5 + 2);
        *ret = TAKE_PTR(s);
        return 0;
}

/* Case check, last "1" splits hrp from data, checksum, then back to bytes. */
int mamori_bech32_decode(const char *s, char **ret_hrp, uint8_t **ret_data, size_t *ret_len)
{
        size_t len = strlen(s), hlen, n5, n8;
        bool lower = false, upper = false;
        const char *sep;
        uint32_t chk;
        int r;

        for (size_t i = 0; i < len; i++) {
                if (s[i] < 33 || s[i] > 126)
                        return -EINVAL;
                lower |= islower((unsigned char) s[i]);
                upper |= isupper((unsigned char) s[i]);
        }
        if (lower && upper)
                return -EINVAL;
        sep = strrchr(s, '1');
        if (!sep)
                return -EINVAL;
        hlen = sep - s;
        r = check_hrp(s, hlen);
        if (r < 0)
                return r;
        n5 = len - hlen - 1;
        if (n5 < 6)
                return -EINVAL;

        _cleanup_free_ uint8_t *d5 = malloc(n5);
        if (!d5)
                return -ENOMEM;
        chk = polymod_hrp(s, hlen);
        for (size_t i = 0; i < n5; i++) {
                const char *p = strchr(charset, tolower((unsigned char) sep[1 + i]));
                if (!p || !*p)
                        return -EINVAL;
                d5[i] = p - charset;
                chk = polymod_step(chk, d5[i]);
        }
        if (chk != 1)
                return -EINVAL;

        _cleanup_free_ uint8_t *d8 = malloc(n5 * 5 / 8 + 1);
        _cleanup_free_ char *hrp = strndup(s, hlen);
        if (!d8 || !hrp)
                return -ENOMEM;
        r = convert_bits(d8, &n8, 8, d5, n5 - 6, 5, false);
        sodium_memzero(d5, n5);
        if (r < 0) {
                sodium_memzero(d8, n5 * 5 / 8 + 1);
                return r;
        }
        for (char *p = hrp; *p; p++)
                *p = tolower((unsigned char) *p);
        *ret_hrp = TAKE_PTR(hrp);
        *ret_data = TAKE_PTR(d8);
        *ret_len = n8;
        return 0;
}
