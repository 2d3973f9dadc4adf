/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "wire.h"

#define HDR 4u      /* frame length prefix */
#define BODY_HDR 4u /* type + status */
#define FIELD_HDR 6u

static const char *const status_names[_MAMORI_STATUS_MAX] = {
        [MAMORI_OK] = "ok",
        [MAMORI_MORE] = "more",
        [MAMORI_E_MALFORMED] = "malformed",
        [MAMORI_E_DENIED] = "denied",
        [MAMORI_E_NOT_FOUND] = "not-found",
        [MAMORI_E_EXISTS] = "exists",
        [MAMORI_E_INVALID] = "invalid",
        [MAMORI_E_STORAGE] = "storage-failure",
        [MAMORI_E_UNSUPPORTED] = "unsupported",
        [MAMORI_E_INTERNAL] = "internal-error",
        [MAMORI_E_LOCKED] = "locked",
        [MAMORI_E_BADSIG] = "bad-signature",
};

const char *mamori_status_to_string(int status)
{
        if (status < 0 || status >= _MAMORI_STATUS_MAX || !status_names[status])
                return "unknown-status";
        return status_names[status];
}

static const char *const type_names[_MAMORI_MSG_MAX] = {
        [MAMORI_MSG_PING] = "ping",
        [MAMORI_MSG_STATUS] = "status",
        [MAMORI_MSG_EVIDENCE_SUBMIT] = "evidence-submit",
        [MAMORI_MSG_EVIDENCE_QUERY] = "evidence-query",
        [MAMORI_MSG_EVIDENCE_EXPORT] = "evidence-export",
        [MAMORI_MSG_EVIDENCE_ANCHOR] = "evidence-anchor",
        [MAMORI_MSG_EVIDENCE_ROTATE] = "evidence-rotate",
        [MAMORI_MSG_EVIDENCE_PURGE] = "evidence-purge",
        [MAMORI_MSG_EVIDENCE_TRANSFER] = "evidence-transfer",
        [MAMORI_MSG_MEDIA_REGISTER] = "media-register",
        [MAMORI_MSG_MEDIA_CHANGE] = "media-change",
        [MAMORI_MSG_MEDIA_RETIRE] = "media-retire",
        [MAMORI_MSG_MEDIA_LIST] = "media-list",
        [MAMORI_MSG_MEDIA_DECIDE] = "media-decide",
        [MAMORI_MSG_GRANT_CONSUME] = "grant-consume",
        [MAMORI_MSG_MANAGER_TRUST] = "manager-trust",
        [MAMORI_MSG_MANAGER_LIST] = "manager-list",
        [MAMORI_MSG_GRANT_SUBMIT] = "grant-submit",
        [MAMORI_MSG_GRANT_REVOKE] = "grant-revoke",
        [MAMORI_MSG_GRANT_LIST] = "grant-list",
        [MAMORI_MSG_MANAGER_UNTRUST] = "manager-untrust",
        [MAMORI_MSG_MEDIA_WATCH] = "media-watch",
        [MAMORI_MSG_MEDIA_CHANGED] = "media-changed",
        [MAMORI_MSG_TOKEN_REGISTER] = "token-register",
        [MAMORI_MSG_TOKEN_RETIRE] = "token-retire",
        [MAMORI_MSG_TOKEN_LIST] = "token-list",
        [MAMORI_MSG_TOKEN_PRESENCE] = "token-presence",
        [MAMORI_MSG_AUTH_PREAUTH] = "auth-preauth",
        [MAMORI_MSG_AUTH_FAIL] = "auth-fail",
        [MAMORI_MSG_AUTH_SUCCESS] = "auth-success",
        [MAMORI_MSG_AUTH_ACCOUNT] = "auth-account",
        [MAMORI_MSG_SESSION_OPEN] = "session-open",
        [MAMORI_MSG_SESSION_CLOSE] = "session-close",
        [MAMORI_MSG_USER_STATUS] = "user-status",
        [MAMORI_MSG_USER_UNLOCK] = "user-unlock",
        [MAMORI_MSG_USER_BAN] = "user-ban",
        [MAMORI_MSG_USER_UNBAN] = "user-unban",
        [MAMORI_MSG_TOTP_ENROLL] = "totp-enroll",
        [MAMORI_MSG_AUTH_PASSWD] = "auth-passwd",
};

const char *mamori_msg_type_to_string(int type)
{
        if (type <= 0 || type >= _MAMORI_MSG_MAX)
                return NULL;
        return type_names[type];
}

static void put_be16(uint8_t *p, uint16_t v)
{
        p[0] = v >> 8;
        p[1] = v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = v >> (24 - 8 * i);
}

static uint64_t get_be(const uint8_t *p, size_t n)
{
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++)
                v = (v << 8) | p[i];
        return v;
}

int mamori_msg_new(uint16_t type, uint16_t status, mamori_msg **ret)
{
        mamori_msg *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->alloc = 256;
        m->buf = malloc(m->alloc);
        if (!m->buf) {
                free(m);
                return -ENOMEM;
        }
        m->type = type;
        m->status = status;
        put_be16(m->buf + HDR, type);
        put_be16(m->buf + HDR + 2, status);
        m->size = HDR + BODY_HDR;
        *ret = m;
        return 0;
}

void mamori_msg_free(mamori_msg *m)
{
        if (!m)
                return;
        free(m->fields);
        free(m->buf);
        free(m);
}

/* Reserves n more bytes of frame; marks the message oversize when it cannot. */
static uint8_t *msg_grow(mamori_msg *m, size_t n)
{
        if (m->oversize)
                return NULL;
        if (m->size + n > HDR + MAMORI_MSG_MAX) {
                m->oversize = true;
                return NULL;
        }
        if (m->size + n > m->alloc) {
                size_t a = m->alloc;
                while (a < m->size + n)
                        a *= 2;
                uint8_t *b = realloc(m->buf, a);
                if (!b) {
                        m->oversize = true;
                        return NULL;
                }
                m->buf = b;
                m->alloc = a;
        }
        uint8_t *p = m->buf + m->size;
        m->size += n;
        return p;
}

void mamori_msg_put_bytes(mamori_msg *m, uint16_t tag, const void *data, size_t len)
{
        if (len > MAMORI_MSG_MAX) {
                m->oversize = true;
                return;
        }
        uint8_t *p = msg_grow(m, FIELD_HDR + len);
        if (!p)
                return;
        put_be16(p, tag);
        put_be32(p + 2, len);
        if (len)
                memcpy(p + FIELD_HDR, data, len);
}

void mamori_msg_put_str(mamori_msg *m, uint16_t tag, const char *s)
{
        mamori_msg_put_bytes(m, tag, s, strlen(s));
}

void mamori_msg_put_u8(mamori_msg *m, uint16_t tag, uint8_t v)
{
        mamori_msg_put_bytes(m, tag, &v, 1);
}

void mamori_msg_put_u32(mamori_msg *m, uint16_t tag, uint32_t v)
{
        uint8_t b[4];
        put_be32(b, v);
        mamori_msg_put_bytes(m, tag, b, 4);
}

void mamori_msg_put_u64(mamori_msg *m, uint16_t tag, uint64_t v)
{
        uint8_t b[8];
        put_be32(b, v >> 32);
        put_be32(b + 4, (uint32_t)v);
        mamori_msg_put_bytes(m, tag, b, 8);
}

void mamori_msg_put_i64(mamori_msg *m, uint16_t tag, int64_t v)
{
        mamori_msg_put_u64(m, tag, (uint64_t)v);
}

void mamori_msg_put_pair(mamori_msg *m, uint16_t tag, const char *key, const char *value)
{
        size_t kl = strlen(key), vl = strlen(value);
        if (!mamori_pair_key_valid(key) || vl > MAMORI_MSG_MAX) {
                m->oversize = true; /* refuse to build what the peer would reject */
                return;
        }
        uint8_t *p = msg_grow(m, FIELD_HDR + 1 + kl + vl);
        if (!p)
                return;
        put_be16(p, tag);
        put_be32(p + 2, 1 + kl + vl);
        p[FIELD_HDR] = kl;
        memcpy(p + FIELD_HDR + 1, key, kl);
        memcpy(p + FIELD_HDR + 1 + kl, value, vl);
}

size_t mamori_msg_size(const mamori_msg *m)
{
        return m->size;
}

const uint8_t *mamori_msg_frame(mamori_msg *m, size_t *ret_len)
{
        if (m->oversize)
                return NULL;
        put_be32(m->buf, m->size - HDR);
        *ret_len = m->size;
        return m->buf;
}

int mamori_msg_decode(const uint8_t *body, size_t len, mamori_msg **ret)
{
        if (len > MAMORI_MSG_MAX)
                return -EMSGSIZE;
        if (len < BODY_HDR)
                return -EBADMSG;

        mamori_msg *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        /* One spare byte so that every field can be NUL-terminated in place. */
        m->buf = malloc(len + 1);
        if (!m->buf) {
                free(m);
                return -ENOMEM;
        }
        memcpy(m->buf, body, len);
        m->size = len;
        m->type = get_be(m->buf, 2);
        m->status = get_be(m->buf + 2, 2);

        size_t n = 0, off = BODY_HDR;
        while (off < len) {
                if (len - off < FIELD_HDR)
                        goto bad;
                uint32_t flen = get_be(m->buf + off + 2, 4);
                if (flen > len - off - FIELD_HDR)
                        goto bad;
                if (n == MAMORI_MSG_FIELDS_MAX)
                        goto bad;
                off += FIELD_HDR + flen;
                n++;
        }
        m->fields = calloc(n ? n : 1, sizeof *m->fields);
        if (!m->fields) {
                mamori_msg_free(m);
                return -ENOMEM;
        }
        off = BODY_HDR;
        for (size_t i = 0; i < n; i++) {
                m->fields[i].tag = get_be(m->buf + off, 2);
                m->fields[i].len = get_be(m->buf + off + 2, 4);
                m->fields[i].data = m->buf + off + FIELD_HDR;
                off += FIELD_HDR + m->fields[i].len;
        }
        /* Only now, with every header read, may a field's end byte be overwritten. */
        for (size_t i = 0; i < n; i++)
                ((uint8_t *)m->fields[i].data)[m->fields[i].len] = 0;
        m->n_fields = n;
        *ret = m;
        return 0;
bad:
        mamori_msg_free(m);
        return -EBADMSG;
}

static const mamori_field *find(const mamori_msg *m, uint16_t tag)
{
        for (size_t i = 0; i < m->n_fields; i++)
                if (m->fields[i].tag == tag)
                        return &m->fields[i];
        return NULL;
}

bool mamori_utf8_valid(const uint8_t *s, size_t len)
{
        size_t i = 0;
        while (i < len) {
                uint8_t c = s[i];
                size_t n;
                uint32_t cp;
                if (c == 0)
                        return false;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if ((c & 0xe0) == 0xc0) {
                        n = 1, cp = c & 0x1f;
                } else if ((c & 0xf0) == 0xe0) {
                        n = 2, cp = c & 0x0f;
                } else if ((c & 0xf8) == 0xf0) {
                        n = 3, cp = c & 0x07;
                } else
                        return false;
                if (len - i - 1 < n)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
                if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
                    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                        return false;
                i += n + 1;
        }
        return true;
}

bool mamori_pair_key_valid(const char *key)
{
        size_t n = strlen(key);
        if (n == 0 || n > MAMORI_PAIR_KEY_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((key[i] >= 'a' && key[i] <= 'z') || (key[i] >= '0' && key[i] <= '9') ||
                      key[i] == '_' || key[i] == '.'))
                        return false;
        return true;
}

int mamori_field_str(const mamori_field *f, size_t max, const char **ret)
{
        if (f->len > max || !mamori_utf8_valid(f->data, f->len))
                return -EBADMSG;
        *ret = (const char *)f->data;
        return 0;
}

int mamori_field_uint(const mamori_field *f, size_t width, uint64_t *ret)
{
        if (f->len != width)
                return -EBADMSG;
        *ret = get_be(f->data, width);
        return 0;
}

int mamori_field_pair(const mamori_field *f, char ret_key[static MAMORI_PAIR_KEY_MAX + 1],
                      const char **ret_value)
{
        if (f->len < 1)
                return -EBADMSG;
        uint8_t kl = f->data[0];
        if (kl == 0 || kl > MAMORI_PAIR_KEY_MAX || (size_t)kl + 1 > f->len)
                return -EBADMSG;
        char key[MAMORI_PAIR_KEY_MAX + 1];
        memcpy(key, f->data + 1, kl);
        key[kl] = 0;
        const uint8_t *v = f->data + 1 + kl;
        if (!mamori_pair_key_valid(key) || !mamori_utf8_valid(v, f->len - 1 - kl))
                return -EBADMSG;
        memcpy(ret_key, key, kl + 1);
        *ret_value = (const char *)v;
        return 0;
}

int mamori_msg_get_str(const mamori_msg *m, uint16_t tag, size_t max, const char **ret)
{
        const mamori_field *f = find(m, tag);
        if (!f)
                return -ENOENT;
        return mamori_field_str(f, max, ret);
}

int mamori_msg_get_bytes(const mamori_msg *m, uint16_t tag, size_t len, const uint8_t **ret)
{
        const mamori_field *f = find(m, tag);
        if (!f)
                return -ENOENT;
        if (f->len != len)
                return -EBADMSG;
        *ret = f->data;
        return 0;
}

/* Shared body of the fixed-width integer getters. */
static int get_uint(const mamori_msg *m, uint16_t tag, size_t width, uint64_t *ret)
{
        const mamori_field *f = find(m, tag);
        if (!f)
                return -ENOENT;
        return mamori_field_uint(f, width, ret);
}

int mamori_msg_get_u8(const mamori_msg *m, uint16_t tag, uint8_t *ret)
{
        uint64_t v;
        int r = get_uint(m, tag, 1, &v);
        if (r >= 0)
                *ret = v;
        return r;
}

int mamori_msg_get_u32(const mamori_msg *m, uint16_t tag, uint32_t *ret)
{
        uint64_t v;
        int r = get_uint(m, tag, 4, &v);
        if (r >= 0)
                *ret = v;
        return r;
}

int mamori_msg_get_u64(const mamori_msg *m, uint16_t tag, uint64_t *ret)
{
        return get_uint(m, tag, 8, ret);
}

int mamori_msg_get_i64(const mamori_msg *m, uint16_t tag, int64_t *ret)
{
        uint64_t v;
        int r = get_uint(m, tag, 8, &v);
        if (r >= 0)
                *ret = (int64_t)v;
        return r;
}

int mamori_reader_fill(mamori_reader *r, int fd)
{
        /* One whole frame at the cap plus 64 KiB always fits, so a frame under the cap
         * can always be completed and taken off before the buffer needs to grow more. */
        const size_t cap = HDR + MAMORI_MSG_MAX + 65536;
        /* Messages are taken off by moving off; the unread rest is moved to the front
         * only here, when room is needed (not once per message). */
        if (r->off > 0 && r->alloc - r->len < 16384) {
                memmove(r->buf, r->buf + r->off, r->len - r->off);
                r->len -= r->off;
                r->off = 0;
        }
        if (r->alloc - r->len < 16384 && r->alloc < cap) {
                size_t a = r->alloc ? r->alloc * 2 : 32768;
                if (a > cap)
                        a = cap;
                uint8_t *b = realloc(r->buf, a);
                if (!b)
                        return -ENOMEM;
                r->buf = b;
                r->alloc = a;
        }
        if (r->len == r->alloc)
                return -ENOBUFS; /* the caller must take whole frames off first */
        ssize_t n = read(fd, r->buf + r->len, r->alloc - r->len);
        if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
        r->len += n;
        return (int)n;
}

int mamori_reader_next(mamori_reader *r, mamori_msg **ret)
{
        size_t avail = r->len - r->off;
        if (avail < HDR)
                return 0;
        const uint8_t *p = r->buf + r->off;
        uint32_t blen = get_be(p, 4);
        if (blen > MAMORI_MSG_MAX)
                return -EMSGSIZE;
        if (avail < HDR + blen)
                return 0;
        mamori_msg *m;
        int k = mamori_msg_decode(p + HDR, blen, &m);
        if (k < 0)
                return k;
        r->off += HDR + blen;
        if (r->off == r->len)
                r->off = r->len = 0;
        *ret = m;
        return 1;
}

size_t mamori_reader_pending(const mamori_reader *r)
{
        return r->len - r->off;
}

void mamori_reader_done(mamori_reader *r)
{
        free(r->buf);
        *r = (mamori_reader){0};
}

int mamori_wire_send(int fd, mamori_msg *m)
{
        size_t len;
        const uint8_t *p = mamori_msg_frame(m, &len);
        if (!p)
                return -EMSGSIZE;
        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                                (void)poll(&pfd, 1, -1);
                                continue;
                        }
                        return -errno;
                }
                p += n;
                len -= n;
        }
        return 0;
}

/* Reads exactly len bytes; returns 0, -ECONNRESET at EOF, or -errno. */
static int read_full(int fd, uint8_t *p, size_t len)
{
        while (len > 0) {
                ssize_t n = read(fd, p, len);
                if (n == 0)
                        return -ECONNRESET;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= n;
        }
        return 0;
}

int mamori_wire_recv(int fd, mamori_msg **ret)
{
        uint8_t hdr[HDR];
        int r = read_full(fd, hdr, HDR);
        if (r < 0)
                return r;
        uint32_t blen = get_be(hdr, 4);
        if (blen > MAMORI_MSG_MAX)
                return -EMSGSIZE;
        _cleanup_free_ uint8_t *body = malloc(blen ? blen : 1);
        if (!body)
                return -ENOMEM;
        r = read_full(fd, body, blen);
        if (r < 0)
                return r;
        return mamori_msg_decode(body, blen, ret);
}
