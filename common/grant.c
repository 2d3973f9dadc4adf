/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Signed grants and revocations: canonical encoding, signatures, armor (grant.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "grant.h"
#include "wire.h"

#define GRANT_MAGIC "MGRT"
#define REVOKE_MAGIC "MRVK"
#define GRANT_CONTEXT "mamori-grant-v1" /* signed with its NUL */
#define REVOKE_CONTEXT "mamori-revoke-v1"
#define ARMOR_BEGIN "-----BEGIN MAMORI GRANT-----\n"
#define ARMOR_END "-----END MAMORI GRANT-----"
#define ARMOR_LINE 64

/* Counts UTF-8 code points, refusing whitespace and control characters; -1 if refused. */
static int label_chars(const char *s)
{
        const unsigned char *p = (const unsigned char *)s;
        int n = 0;
        for (; *p; n++) {
                if (*p < 0x20 || *p == 0x7f || *p == ' ' || *p == ',' || *p == '*')
                        return -1;
                if (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80) /* U+3000 ideographic space */
                        return -1;
                if (p[0] == 0xc2 && (p[1] == 0xa0 || p[1] < 0xa0)) /* NBSP and C1 controls */
                        return -1;
                p++;
                while ((*p & 0xc0) == 0x80)
                        p++;
        }
        return n;
}

bool mamori_media_no_valid(const char *s)
{
        size_t len = strlen(s);
        if (len == 0 || len > MAMORI_MEDIA_NO_MAX || !mamori_utf8_valid((const uint8_t *)s, len))
                return false;
        int n = label_chars(s);
        return n >= 1 && n <= (int)MAMORI_MEDIA_NO_CHARS;
}

bool mamori_name_valid(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > MAMORI_NAME_MAX)
                return false;
        if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
                        return false;
        return true;
}

bool mamori_host_valid(const char *s, bool star)
{
        size_t n = strlen(s);
        if (star && streq(s, "*"))
                return true;
        if (n == 0 || n > MAMORI_HOST_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.' || s[i] == '_'))
                        return false;
        return true;
}

static const struct {
        uint8_t bit;
        const char *name;
} mode_names[] = {
        {MAMORI_MODE_READ, "read"},
        {MAMORI_MODE_WRITE_ENCRYPTED, "write-encrypted"},
        {MAMORI_MODE_WRITE_PASSPHRASE, "write-passphrase"},
        {MAMORI_MODE_WRITE_PLAIN, "write-plain"},
};

int mamori_modes_parse(const char *s, uint8_t *ret)
{
        uint8_t m = 0;
        const char *p = s;
        while (*p) {
                size_t n = strcspn(p, ",");
                bool found = false;
                for (size_t i = 0; i < ELEMENTSOF(mode_names); i++)
                        if (strlen(mode_names[i].name) == n && strncmp(p, mode_names[i].name, n) == 0) {
                                m |= mode_names[i].bit;
                                found = true;
                        }
                if (!found)
                        return -EINVAL;
                p += n;
                if (*p == ',' && *++p == 0)
                        return -EINVAL;
        }
        if (!m)
                return -EINVAL;
        *ret = m;
        return 0;
}

char *mamori_modes_format(uint8_t modes, char buf[static 64])
{
        buf[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(mode_names); i++)
                if (modes & mode_names[i].bit) {
                        if (buf[0])
                                strcat(buf, ",");
                        strcat(buf, mode_names[i].name);
                }
        return buf;
}

int mamori_grant_check(const mamori_grant *g, const char **ret_why)
{
        const char *why = NULL;
        if (!g->modes || (g->modes & ~MAMORI_MODE_ALL))
                why = "unknown mode";
        else if (g->flags & ~MAMORI_GRANT_ONCE)
                why = "unknown flag";
        else if (g->subject_kind != MAMORI_SUBJECT_USER && g->subject_kind != MAMORI_SUBJECT_GROUP)
                why = "a grant names a user or a group";
        else if (!mamori_name_valid(g->subject))
                why = "not a valid user or group name";
        else if (!streq(g->media, "*") && !mamori_media_no_valid(g->media))
                why = "not a valid management number";
        else if (!mamori_host_valid(g->host, true))
                why = "not a valid host name";
        else if (g->from_us <= 0 || g->created_us <= 0)
                why = "time out of range";
        else if (g->until_us <= g->from_us)
                why = "--until is not after --from";
        if (why) {
                if (ret_why)
                        *ret_why = why;
                return -EINVAL;
        }
        return 0;
}

static uint8_t *put_be(uint8_t *p, uint64_t v, int n)
{
        for (int i = n - 1; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
        return p + n;
}

static uint64_t get_be(const uint8_t *p, int n)
{
        uint64_t v = 0;
        for (int i = 0; i < n; i++)
                v = v << 8 | p[i];
        return v;
}

static uint8_t *put_str(uint8_t *p, const char *s)
{
        size_t n = strlen(s);
        p = put_be(p, n, 2);
        memcpy(p, s, n);
        return p + n;
}

int mamori_grant_encode(const mamori_grant *g, uint8_t buf[static MAMORI_GRANT_MAX])
{
        if (mamori_grant_check(g, NULL) < 0)
                return -EINVAL;
        uint8_t *p = buf;
        memcpy(p, GRANT_MAGIC, 4);
        p += 4;
        *p++ = 1;
        memcpy(p, g->id, MAMORI_GRANT_ID_LEN);
        p += MAMORI_GRANT_ID_LEN;
        memcpy(p, g->manager_pk, MAMORI_GRANT_PK_LEN);
        p += MAMORI_GRANT_PK_LEN;
        p = put_be(p, (uint64_t)g->created_us, 8);
        p = put_be(p, (uint64_t)g->from_us, 8);
        p = put_be(p, (uint64_t)g->until_us, 8);
        *p++ = g->modes;
        *p++ = g->flags;
        *p++ = g->subject_kind;
        p = put_str(p, g->subject);
        p = put_str(p, g->media);
        p = put_str(p, g->host);
        return (int)(p - buf); /* bounded by the field caps: well under MAMORI_GRANT_MAX */
}

/* Reads a str of at most max bytes into out. Returns 0 or -EBADMSG. */
static int get_str(const uint8_t **p, const uint8_t *end, size_t max, char *out)
{
        if (end - *p < 2)
                return -EBADMSG;
        size_t n = get_be(*p, 2);
        *p += 2;
        if (n > max || (size_t)(end - *p) < n || !mamori_utf8_valid(*p, n))
                return -EBADMSG;
        memcpy(out, *p, n);
        out[n] = 0;
        *p += n;
        return 0;
}

int mamori_grant_decode(const uint8_t *buf, size_t len, mamori_grant *ret)
{
        const size_t fixed = 4 + 1 + MAMORI_GRANT_ID_LEN + MAMORI_GRANT_PK_LEN + 24 + 3;
        if (len < fixed || len > MAMORI_GRANT_MAX || memcmp(buf, GRANT_MAGIC, 4) != 0 || buf[4] != 1)
                return -EBADMSG;
        mamori_grant g = {0};
        const uint8_t *p = buf + 5, *end = buf + len;
        memcpy(g.id, p, MAMORI_GRANT_ID_LEN);
        p += MAMORI_GRANT_ID_LEN;
        memcpy(g.manager_pk, p, MAMORI_GRANT_PK_LEN);
        p += MAMORI_GRANT_PK_LEN;
        g.created_us = (int64_t)get_be(p, 8);
        g.from_us = (int64_t)get_be(p + 8, 8);
        g.until_us = (int64_t)get_be(p + 16, 8);
        p += 24;
        g.modes = *p++;
        g.flags = *p++;
        g.subject_kind = *p++;
        if (get_str(&p, end, MAMORI_NAME_MAX, g.subject) < 0 ||
            get_str(&p, end, MAMORI_MEDIA_NO_MAX, g.media) < 0 ||
            get_str(&p, end, MAMORI_HOST_MAX, g.host) < 0 || p != end)
                return -EBADMSG;
        /* Canonical means: re-encoding gives the same bytes. */
        uint8_t again[MAMORI_GRANT_MAX];
        int n = mamori_grant_encode(&g, again);
        if (n < 0 || (size_t)n != len || memcmp(again, buf, len) != 0)
                return -EBADMSG;
        *ret = g;
        return 0;
}

/* Signs context NUL || msg. */
static void sign_ctx(const char *ctx, const uint8_t *msg, size_t len, const uint8_t *sk, uint8_t *sig)
{
        uint8_t tmp[64 + MAMORI_GRANT_MAX];
        size_t cl = strlen(ctx) + 1;
        memcpy(tmp, ctx, cl);
        memcpy(tmp + cl, msg, len);
        crypto_sign_detached(sig, NULL, tmp, cl + len, sk);
}

static int verify_ctx(const char *ctx, const uint8_t *msg, size_t len, const uint8_t *pk, const uint8_t *sig)
{
        uint8_t tmp[64 + MAMORI_GRANT_MAX];
        size_t cl = strlen(ctx) + 1;
        memcpy(tmp, ctx, cl);
        memcpy(tmp + cl, msg, len);
        return crypto_sign_verify_detached(sig, tmp, cl + len, pk) == 0 ? 0 : -EBADE;
}

int mamori_grant_sign(const mamori_grant *g, const uint8_t sk[static MAMORI_GRANT_SK_LEN],
                      uint8_t buf[static MAMORI_GRANT_MAX])
{
        uint8_t pk[MAMORI_GRANT_PK_LEN];
        crypto_sign_ed25519_sk_to_pk(pk, sk);
        if (memcmp(pk, g->manager_pk, sizeof pk) != 0)
                return -EINVAL;
        int n = mamori_grant_encode(g, buf);
        if (n < 0 || n + MAMORI_GRANT_SIG_LEN > MAMORI_GRANT_MAX)
                return -EINVAL;
        sign_ctx(GRANT_CONTEXT, buf, n, sk, buf + n);
        return n + MAMORI_GRANT_SIG_LEN;
}

int mamori_grant_verify(const uint8_t *buf, size_t len, mamori_grant *ret)
{
        if (len <= MAMORI_GRANT_SIG_LEN || len > MAMORI_GRANT_MAX)
                return -EBADMSG;
        size_t n = len - MAMORI_GRANT_SIG_LEN;
        mamori_grant g;
        /* Structure first; a field altered into something that does not decode is
         * refused here, anything else by the signature, which covers every byte. */
        int r = mamori_grant_decode(buf, n, &g);
        if (r < 0)
                return r;
        r = verify_ctx(GRANT_CONTEXT, buf, n, g.manager_pk, buf + n);
        if (r < 0)
                return r;
        *ret = g;
        return 0;
}

void mamori_revoke_sign(const uint8_t id[static MAMORI_GRANT_ID_LEN], int64_t time_us,
                        const uint8_t sk[static MAMORI_GRANT_SK_LEN],
                        uint8_t out[static MAMORI_REVOKE_LEN + MAMORI_GRANT_SIG_LEN])
{
        uint8_t *p = out;
        memcpy(p, REVOKE_MAGIC, 4);
        p[4] = 1;
        p += 5;
        memcpy(p, id, MAMORI_GRANT_ID_LEN);
        p += MAMORI_GRANT_ID_LEN;
        crypto_sign_ed25519_sk_to_pk(p, sk);
        p += MAMORI_GRANT_PK_LEN;
        put_be(p, (uint64_t)time_us, 8);
        sign_ctx(REVOKE_CONTEXT, out, MAMORI_REVOKE_LEN, sk, out + MAMORI_REVOKE_LEN);
}

int mamori_revoke_verify(const uint8_t *buf, size_t len, uint8_t ret_id[static MAMORI_GRANT_ID_LEN],
                         uint8_t ret_pk[static MAMORI_GRANT_PK_LEN], int64_t *ret_time)
{
        if (len != MAMORI_REVOKE_LEN + MAMORI_GRANT_SIG_LEN || memcmp(buf, REVOKE_MAGIC, 4) != 0 || buf[4] != 1)
                return -EBADMSG;
        const uint8_t *pk = buf + 5 + MAMORI_GRANT_ID_LEN;
        int r = verify_ctx(REVOKE_CONTEXT, buf, MAMORI_REVOKE_LEN, pk, buf + MAMORI_REVOKE_LEN);
        if (r < 0)
                return r;
        memcpy(ret_id, buf + 5, MAMORI_GRANT_ID_LEN);
        memcpy(ret_pk, pk, MAMORI_GRANT_PK_LEN);
        *ret_time = (int64_t)get_be(pk + MAMORI_GRANT_PK_LEN, 8);
        return 0;
}

int mamori_grant_armor(const uint8_t *buf, size_t len, char **ret)
{
        size_t b64 = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
        _cleanup_free_ char *enc = malloc(b64);
        char *out = malloc(strlen(ARMOR_BEGIN) + b64 + b64 / ARMOR_LINE + strlen(ARMOR_END) + 4);
        if (!enc || !out) {
                free(out);
                return -ENOMEM;
        }
        sodium_bin2base64(enc, b64, buf, len, sodium_base64_VARIANT_ORIGINAL);
        char *p = stpcpy(out, ARMOR_BEGIN);
        size_t n = strlen(enc);
        for (size_t i = 0; i < n; i += ARMOR_LINE) {
                size_t k = n - i < ARMOR_LINE ? n - i : ARMOR_LINE;
                memcpy(p, enc + i, k);
                p += k;
                *p++ = '\n';
        }
        p = stpcpy(p, ARMOR_END);
        strcpy(p, "\n");
        *ret = out;
        return 0;
}

int mamori_grant_dearmor(const char *text, size_t len, uint8_t out[static MAMORI_GRANT_MAX])
{
        const size_t bl = strlen(ARMOR_BEGIN), el = strlen(ARMOR_END);
        if (len > 4 * MAMORI_GRANT_MAX || memchr(text, 0, len))
                return -EBADMSG;
        if (len > 0 && text[len - 1] == '\n')
                len--;
        if (len < bl + el + 1 || memcmp(text, ARMOR_BEGIN, bl) != 0 ||
            memcmp(text + len - el, ARMOR_END, el) != 0 || text[len - el - 1] != '\n')
                return -EBADMSG;
        /* Body: full lines of 64, then one shorter (or equal) line, each ending in '\n'. */
        char b64[4 * MAMORI_GRANT_MAX];
        size_t n = 0;
        const char *p = text + bl, *end = text + len - el;
        bool last = false;
        while (p < end) {
                const char *nl = memchr(p, '\n', end - p);
                if (!nl || last || nl == p || nl - p > ARMOR_LINE)
                        return -EBADMSG;
                last = nl - p < ARMOR_LINE;
                memcpy(b64 + n, p, nl - p);
                n += nl - p;
                p = nl + 1;
        }
        size_t bin;
        const char *b64end;
        if (sodium_base642bin(out, MAMORI_GRANT_MAX, b64, n, NULL, &bin, &b64end,
                              sodium_base64_VARIANT_ORIGINAL) != 0 || b64end != b64 + n)
                return -EBADMSG;
        return (int)bin;
}

char *mamori_grant_id_format(const uint8_t id[static MAMORI_GRANT_ID_LEN], char buf[static 33])
{
        return sodium_bin2hex(buf, 33, id, MAMORI_GRANT_ID_LEN);
}

int mamori_grant_id_parse(const char *s, uint8_t ret[static MAMORI_GRANT_ID_LEN])
{
        size_t bin;
        const char *end;
        if (strlen(s) != 2 * MAMORI_GRANT_ID_LEN)
                return -EINVAL;
        for (const char *p = s; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return -EINVAL;
        if (sodium_hex2bin(ret, MAMORI_GRANT_ID_LEN, s, strlen(s), NULL, &bin, &end) != 0 ||
            bin != MAMORI_GRANT_ID_LEN)
                return -EINVAL;
        return 0;
}

char *mamori_pubkey_format(const uint8_t pk[static MAMORI_GRANT_PK_LEN], char buf[static 48])
{
        return sodium_bin2base64(buf, 48, pk, MAMORI_GRANT_PK_LEN, sodium_base64_VARIANT_ORIGINAL);
}

int mamori_pubkey_parse(const char *s, uint8_t ret[static MAMORI_GRANT_PK_LEN])
{
        size_t bin;
        const char *end;
        uint8_t tmp[MAMORI_GRANT_PK_LEN];
        if (strlen(s) != 44 ||
            sodium_base642bin(tmp, sizeof tmp, s, 44, NULL, &bin, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
            bin != MAMORI_GRANT_PK_LEN || *end)
                return -EINVAL;
        /* Refuse a non-canonical spelling (different trailing bits), so one key has one text. */
        char again[48];
        if (!streq(mamori_pubkey_format(tmp, again), s))
                return -EINVAL;
        memcpy(ret, tmp, sizeof tmp);
        return 0;
}

const char *mamori_verdict_to_string(int v)
{
        static const char *const names[_MAMORI_VERDICT_MAX] = {"blocked", "allowed", "exempt", "audit-only", "identify"};
        return v >= 0 && v < _MAMORI_VERDICT_MAX ? names[v] : "invalid";
}

size_t mamori_entry_encode(const mamori_entry *e, uint8_t buf[static MAMORI_ENTRY_MAX])
{
        size_t n = strnlen(e->subject, MAMORI_NAME_MAX);
        buf[0] = e->kind;
        buf[1] = e->modes;
        buf[2] = e->once;
        put_be(buf + 3, (uint64_t)e->until_us, 8);
        memcpy(buf + 11, e->id, MAMORI_GRANT_ID_LEN);
        memcpy(buf + 11 + MAMORI_GRANT_ID_LEN, e->subject, n);
        return 11 + MAMORI_GRANT_ID_LEN + n;
}

int mamori_entry_decode(const uint8_t *buf, size_t len, mamori_entry *ret)
{
        const size_t fixed = 11 + MAMORI_GRANT_ID_LEN;
        if (len < fixed || len > MAMORI_ENTRY_MAX || buf[0] < MAMORI_SUBJECT_USER ||
            buf[0] > MAMORI_SUBJECT_ANY || (buf[1] & ~MAMORI_MODE_ALL) || buf[2] > 1 ||
            !mamori_utf8_valid(buf + fixed, len - fixed))
                return -EBADMSG;
        mamori_entry e = {.kind = buf[0], .modes = buf[1], .once = buf[2]};
        e.until_us = (int64_t)get_be(buf + 3, 8);
        memcpy(e.id, buf + 11, MAMORI_GRANT_ID_LEN);
        memcpy(e.subject, buf + fixed, len - fixed);
        e.subject[len - fixed] = 0;
        *ret = e;
        return 0;
}
