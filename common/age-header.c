/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The age header's text form: strict parsing (every line checked against the
 * grammar, canonical unpadded base64, body lines of at most 64 columns ending with
 * a shorter one, a size and stanza cap) and the matching writer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "age-internal.h"
#include "cleanup.h"

#define B64_VARIANT sodium_base64_VARIANT_ORIGINAL_NO_PADDING

typedef struct cursor {
        const uint8_t *buf;
        size_t len;
        size_t pos;
} cursor;

/* Value of a standard base64 character, or -1. */
static int b64_value(unsigned char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/* Our own decoder: libsodium 1.0.18's sodium_base642bin() accepts bytes >= 0x80 as
 * alphabet characters (found by fuzz-age-header), and age needs exactly one
 * spelling of every header. */
int age_b64_decode_exact(const char *s, size_t len, uint8_t *out, size_t out_len)
{
        uint32_t acc = 0;
        unsigned bits = 0;
        size_t n = 0;

        if (len % 4 == 1 || len * 3 / 4 != out_len)
                return -EBADMSG;
        for (size_t i = 0; i < len; i++) {
                int v = b64_value((unsigned char) s[i]);
                if (v < 0)
                        return -EBADMSG; /* includes '=': padding is not allowed */
                acc = (acc << 6) | (uint32_t) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[n++] = (uint8_t) (acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        /* Leftover bits must be zero, or two strings would decode to the same bytes. */
        return acc == 0 && n == out_len ? 0 : -EBADMSG;
}

/* Hands out the next line without its newline: -ENODATA if none is complete yet. */
static int next_line(cursor *c, const char **ret, size_t *ret_len)
{
        size_t limit = c->len < MAMORI_AGE_HEADER_MAX ? c->len : MAMORI_AGE_HEADER_MAX;
        const uint8_t *nl;

        nl = c->pos < limit ? memchr(c->buf + c->pos, '\n', limit - c->pos) : NULL;
        if (!nl)
                return c->len >= MAMORI_AGE_HEADER_MAX ? -EBADMSG : -ENODATA;
        *ret = (const char *) c->buf + c->pos;
        *ret_len = nl - (c->buf + c->pos);
        c->pos += *ret_len + 1;
        return 0;
}

/* Frees one stanza's contents. */
static void stanza_done(age_stanza *s)
{
        for (size_t i = 0; i < s->n_args; i++)
                free(s->args[i]);
        free(s->args);
        free(s->body);
}

age_header *age_header_free(age_header *h)
{
        if (!h)
                return NULL;
        for (size_t i = 0; i < h->n_stanzas; i++)
                stanza_done(&h->stanzas[i]);
        free(h->stanzas);
        free(h);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(age_header *, age_header_free);

/* Splits "a b c" into arguments: each non-empty, of visible ASCII only. */
static int parse_args(age_stanza *s, const char *p, size_t len)
{
        size_t start = 0;

        for (size_t i = 0; i <= len; i++) {
                if (i < len && p[i] != ' ') {
                        if (p[i] < 0x21 || p[i] > 0x7e)
                                return -EBADMSG;
                        continue;
                }
                if (i == start)
                        return -EBADMSG; /* empty argument: leading, trailing or double space */
                char **a = reallocarray(s->args, s->n_args + 1, sizeof(char *));
                if (!a)
                        return -ENOMEM;
                s->args = a;
                s->args[s->n_args] = strndup(p + start, i - start);
                if (!s->args[s->n_args])
                        return -ENOMEM;
                s->n_args++;
                start = i + 1;
        }
        return 0;
}

/* Reads body lines up to and including the first one shorter than 64 columns. */
static int parse_body(cursor *c, age_stanza *s)
{
        for (;;) {
                const char *line;
                size_t len, n;
                int r;

                r = next_line(c, &line, &len);
                if (r < 0)
                        return r;
                if (len > AGE_COLUMNS)
                        return -EBADMSG;
                n = len * 3 / 4;
                uint8_t *b = realloc(s->body, s->body_len + n + 1);
                if (!b)
                        return -ENOMEM;
                s->body = b;
                r = age_b64_decode_exact(line, len, s->body + s->body_len, n);
                if (r < 0)
                        return r;
                s->body_len += n;
                if (len < AGE_COLUMNS)
                        return 0;
        }
}

/* Parses "-> args" and the body after it into a new stanza of h. */
static int parse_stanza(cursor *c, age_header *h, const char *line, size_t len)
{
        age_stanza *s;

        if (h->n_stanzas >= MAMORI_AGE_STANZAS_MAX)
                return -EBADMSG;
        s = reallocarray(h->stanzas, h->n_stanzas + 1, sizeof(age_stanza));
        if (!s)
                return -ENOMEM;
        h->stanzas = s;
        s = &h->stanzas[h->n_stanzas++];
        *s = (age_stanza) {};
        if (len < 4 || memcmp(line, "-> ", 3) != 0)
                return -EBADMSG;
        int r = parse_args(s, line + 3, len - 3);
        if (r < 0)
                return r;
        return parse_body(c, s);
}

/* Parses "--- <43 base64 characters>", the last header line. */
static int parse_footer(cursor *c, age_header *h, const char *line, size_t len)
{
        if (len != 4 + 43 || memcmp(line, "--- ", 4) != 0)
                return -EBADMSG;
        if (age_b64_decode_exact(line + 4, 43, h->mac, sizeof(h->mac)) < 0)
                return -EBADMSG;
        h->mac_input_len = (const uint8_t *) line - c->buf + 3;
        h->len = c->pos;
        return 0;
}

/* Version line, stanzas (each ending in a short body line), then "--- MAC". */
int age_header_parse(const uint8_t *buf, size_t len, age_header **ret)
{
        _cleanup_(age_header_freep) age_header *h = NULL;
        cursor c = { .buf = buf, .len = len };
        const char *line;
        size_t llen;
        int r;

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        r = next_line(&c, &line, &llen);
        if (r < 0)
                return r;
        if (llen != STRLEN(AGE_VERSION_LINE) || memcmp(line, AGE_VERSION_LINE, llen) != 0)
                return -EBADMSG;
        for (;;) {
                r = next_line(&c, &line, &llen);
                if (r < 0)
                        return r;
                if (llen >= 3 && memcmp(line, "---", 3) == 0) {
                        r = parse_footer(&c, h, line, llen);
                        break;
                }
                if (llen < 2 || memcmp(line, "->", 2) != 0)
                        return -EBADMSG;
                r = parse_stanza(&c, h, line, llen);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (h->n_stanzas == 0)
                return -EBADMSG;
        *ret = TAKE_PTR(h);
        return 0;
}

/* Appends len bytes to a malloc'd growing buffer. */
static int text_append(char **text, size_t *text_len, const void *p, size_t len)
{
        char *t = realloc(*text, *text_len + len + 1);
        if (!t)
                return -ENOMEM;
        memcpy(t + *text_len, p, len);
        *text_len += len;
        t[*text_len] = 0;
        *text = t;
        return 0;
}

/* "-> args", then the body as 64-column lines and a shorter (maybe empty) last one. */
int age_stanza_append(char **text, size_t *text_len, const char *const *args, size_t n_args,
                      const uint8_t *body, size_t body_len)
{
        size_t b64_size = sodium_base64_ENCODED_LEN(body_len, B64_VARIANT), b64_len, off = 0;
        int r;

        _cleanup_free_ char *b64 = malloc(b64_size);
        if (!b64)
                return -ENOMEM;
        sodium_bin2base64(b64, b64_size, body, body_len, B64_VARIANT);
        b64_len = strlen(b64);

        r = text_append(text, text_len, "->", 2);
        for (size_t i = 0; r >= 0 && i < n_args; i++) {
                r = text_append(text, text_len, " ", 1);
                if (r >= 0)
                        r = text_append(text, text_len, args[i], strlen(args[i]));
        }
        if (r >= 0)
                r = text_append(text, text_len, "\n", 1);
        /* Full 64-column lines, then a shorter (possibly empty) final line. */
        for (;;) {
                size_t n = b64_len - off < AGE_COLUMNS ? b64_len - off : AGE_COLUMNS;
                if (r >= 0)
                        r = text_append(text, text_len, b64 + off, n);
                if (r >= 0)
                        r = text_append(text, text_len, "\n", 1);
                off += n;
                if (r < 0 || n < AGE_COLUMNS)
                        break;
        }
        return r;
}

/* Version line, one stanza per recipient (or the lone scrypt one), "---", MAC. */
int age_header_build(const mamori_age_encrypt_opts *opts, const uint8_t file_key[MAMORI_AGE_FILE_KEY_SIZE],
                     char **ret_text, size_t *ret_len)
{
        _cleanup_free_ char *text = NULL;
        uint8_t mac[AGE_MAC_SIZE];
        char mac_b64[sodium_base64_ENCODED_LEN(AGE_MAC_SIZE, B64_VARIANT)];
        size_t len = 0;
        int r;

        if (!!opts->passphrase == (opts->n_recipients > 0))
                return -EINVAL; /* exactly one of the two: scrypt must be the only stanza */
        r = text_append(&text, &len, AGE_VERSION_LINE "\n", STRLEN(AGE_VERSION_LINE) + 1);
        if (r < 0)
                return r;
        if (opts->passphrase)
                r = age_scrypt_wrap(&text, &len, opts->passphrase,
                                    opts->scrypt_log2n ?: MAMORI_AGE_SCRYPT_LOG2N_DEFAULT, file_key);
        for (size_t i = 0; r >= 0 && i < opts->n_recipients; i++)
                r = age_x25519_wrap(&text, &len, &opts->recipients[i], file_key);
        if (r >= 0)
                r = text_append(&text, &len, "---", 3);
        if (r < 0)
                return r;
        age_header_mac(mac, file_key, (const uint8_t *) text, len);
        sodium_bin2base64(mac_b64, sizeof(mac_b64), mac, sizeof(mac), B64_VARIANT);
        r = text_append(&text, &len, " ", 1);
        if (r >= 0)
                r = text_append(&text, &len, mac_b64, strlen(mac_b64));
        if (r >= 0)
                r = text_append(&text, &len, "\n", 1);
        if (r < 0)
                return r;
        *ret_text = TAKE_PTR(text);
        *ret_len = len;
        return 0;
}
