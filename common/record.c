/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timex.h>
#include <time.h>

#include "cleanup.h"
#include "record.h"
#include "wire.h"

static const char MAGIC[4] = {'M', 'R', 'E', 'C'};
#define VERSION 1

int mamori_record_new(mamori_record **ret)
{
        mamori_record *rec = calloc(1, sizeof *rec);
        if (!rec)
                return -ENOMEM;
        *ret = rec;
        return 0;
}

void mamori_record_free(mamori_record *rec)
{
        if (!rec)
                return;
        for (size_t i = 0; i < rec->n_pairs; i++) {
                free(rec->pairs[i].key);
                free(rec->pairs[i].value);
        }
        free(rec->pairs);
        free(rec->type);
        free(rec->component);
        free(rec->host);
        free(rec->machine_id);
        free(rec);
}

int mamori_record_set(mamori_record *rec, char **field, const char *value)
{
        size_t n = strlen(value);
        if (n > MAMORI_VALUE_MAX || !mamori_utf8_valid((const uint8_t *)value, n))
                return -EINVAL;
        char *c = strdup(value);
        if (!c)
                return -ENOMEM;
        free(*field);
        *field = c;
        return 0;
}

bool mamori_record_type_valid(const char *type)
{
        size_t n = strlen(type);
        if (n == 0 || n > MAMORI_TYPE_MAX || type[0] < 'a' || type[0] > 'z')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((type[i] >= 'a' && type[i] <= 'z') || (type[i] >= '0' && type[i] <= '9') ||
                      type[i] == '_' || type[i] == '.' || type[i] == '-'))
                        return false;
        return true;
}

int mamori_record_add(mamori_record *rec, const char *key, const char *value)
{
        size_t vl = strlen(value);
        if (!mamori_pair_key_valid(key) || vl > MAMORI_VALUE_MAX ||
            !mamori_utf8_valid((const uint8_t *)value, vl))
                return -EINVAL;
        if (mamori_record_get(rec, key))
                return -EEXIST;
        if (rec->n_pairs >= MAMORI_RECORD_PAIRS_MAX)
                return -E2BIG;
        if (rec->n_pairs == rec->n_alloc) { /* doubling: no realloc per field */
                size_t cap = rec->n_alloc ? rec->n_alloc * 2 : 8;
                mamori_pair *p = realloc(rec->pairs, cap * sizeof *p);
                if (!p)
                        return -ENOMEM;
                rec->pairs = p;
                rec->n_alloc = cap;
        }
        char *k = strdup(key), *v = strdup(value);
        if (!k || !v) {
                free(k);
                free(v);
                return -ENOMEM;
        }
        rec->pairs[rec->n_pairs++] = (mamori_pair){k, v};
        return 0;
}

const char *mamori_record_get(const mamori_record *rec, const char *key)
{
        for (size_t i = 0; i < rec->n_pairs; i++)
                if (streq(rec->pairs[i].key, key))
                        return rec->pairs[i].value;
        return NULL;
}

static int pair_cmp(const void *a, const void *b)
{
        return strcmp(((const mamori_pair *)a)->key, ((const mamori_pair *)b)->key);
}

typedef struct wbuf {
        uint8_t *p;
        size_t len, alloc;
        bool fail;
} wbuf;

static void wb_put(wbuf *w, const void *d, size_t n)
{
        if (w->fail)
                return;
        if (w->len + n > MAMORI_RECORD_MAX) {
                w->fail = true;
                return;
        }
        if (w->len + n > w->alloc) {
                size_t a = w->alloc ? w->alloc : 512;
                while (a < w->len + n)
                        a *= 2;
                uint8_t *q = realloc(w->p, a);
                if (!q) {
                        w->fail = true;
                        return;
                }
                w->p = q;
                w->alloc = a;
        }
        memcpy(w->p + w->len, d, n);
        w->len += n;
}

static void wb_be(wbuf *w, uint64_t v, size_t n)
{
        uint8_t b[8];
        for (size_t i = 0; i < n; i++)
                b[i] = v >> (8 * (n - 1 - i));
        wb_put(w, b, n);
}

static void wb_str(wbuf *w, const char *s)
{
        size_t n = s ? strlen(s) : 0;
        wb_be(w, n, 2);
        wb_put(w, s, n);
}

int mamori_record_encode(mamori_record *rec, uint8_t **ret)
{
        if (!rec->type || !mamori_record_type_valid(rec->type) || !rec->component || !rec->host ||
            !rec->machine_id)
                return -EINVAL;
        qsort(rec->pairs, rec->n_pairs, sizeof *rec->pairs, pair_cmp);
        wbuf w = {0};
        wb_put(&w, MAGIC, 4);
        wb_be(&w, VERSION, 1);
        wb_be(&w, rec->seq, 8);
        wb_be(&w, (uint64_t)rec->time_us, 8);
        wb_be(&w, rec->clock_synced, 1);
        wb_be(&w, rec->uid, 4);
        wb_str(&w, rec->type);
        wb_str(&w, rec->component);
        wb_str(&w, rec->host);
        wb_str(&w, rec->machine_id);
        wb_be(&w, rec->n_pairs, 2);
        for (size_t i = 0; i < rec->n_pairs; i++) {
                wb_str(&w, rec->pairs[i].key);
                size_t vl = strlen(rec->pairs[i].value);
                wb_be(&w, vl, 4);
                wb_put(&w, rec->pairs[i].value, vl);
        }
        if (w.fail) {
                free(w.p);
                return -E2BIG;
        }
        *ret = w.p;
        return (int)w.len;
}

typedef struct rbuf {
        const uint8_t *p;
        size_t len, off;
        bool fail;
} rbuf;

static uint64_t rb_be(rbuf *r, size_t n)
{
        if (r->fail || r->len - r->off < n) {
                r->fail = true;
                return 0;
        }
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++)
                v = (v << 8) | r->p[r->off + i];
        r->off += n;
        return v;
}

/* Reads a length-prefixed string of lenbytes-wide length; NULL on any problem. */
static char *rb_str(rbuf *r, size_t lenbytes, size_t max)
{
        size_t n = rb_be(r, lenbytes);
        if (r->fail || n > max || r->len - r->off < n ||
            !mamori_utf8_valid(r->p + r->off, n)) {
                r->fail = true;
                return NULL;
        }
        char *s = strndup((const char *)r->p + r->off, n);
        if (!s)
                r->fail = true;
        r->off += n;
        return s;
}

int mamori_record_decode(const uint8_t *buf, size_t len, mamori_record **ret)
{
        if (len < 5 || len > MAMORI_RECORD_MAX || memcmp(buf, MAGIC, 4) != 0 || buf[4] != VERSION)
                return -EBADMSG;
        rbuf r = {.p = buf, .len = len, .off = 5};
        mamori_record *rec;
        if (mamori_record_new(&rec) < 0)
                return -ENOMEM;
        rec->seq = rb_be(&r, 8);
        rec->time_us = (int64_t)rb_be(&r, 8);
        uint64_t synced = rb_be(&r, 1);
        rec->clock_synced = synced == 1;
        rec->uid = rb_be(&r, 4);
        rec->type = rb_str(&r, 2, MAMORI_TYPE_MAX);
        rec->component = rb_str(&r, 2, MAMORI_VALUE_MAX);
        rec->host = rb_str(&r, 2, MAMORI_VALUE_MAX);
        rec->machine_id = rb_str(&r, 2, MAMORI_VALUE_MAX);
        size_t n = rb_be(&r, 2);
        if (synced > 1 || n > MAMORI_RECORD_PAIRS_MAX || (rec->type && !mamori_record_type_valid(rec->type)))
                r.fail = true;
        if (!r.fail && n > 0) {
                rec->pairs = calloc(n, sizeof *rec->pairs);
                if (!rec->pairs)
                        r.fail = true;
                else
                        rec->n_alloc = n;
        }
        for (size_t i = 0; i < n && !r.fail; i++) {
                char *k = rb_str(&r, 2, MAMORI_PAIR_KEY_MAX);
                char *v = rb_str(&r, 4, MAMORI_VALUE_MAX);
                rec->pairs[i] = (mamori_pair){k, v};
                rec->n_pairs = i + 1;
                /* Canonical: valid keys, strictly ascending (so unique). */
                if (!r.fail && (!mamori_pair_key_valid(k) ||
                                (i > 0 && strcmp(rec->pairs[i - 1].key, k) >= 0)))
                        r.fail = true;
        }
        if (r.fail || r.off != len) {
                mamori_record_free(rec);
                return -EBADMSG;
        }
        *ret = rec;
        return 0;
}

int mamori_record_peek(const uint8_t *buf, size_t len, uint64_t *ret_seq, const char **ret_type,
                       size_t *ret_type_len)
{
        /* magic 4 | version 1 | seq 8 @5 | time 8 | synced 1 | uid 4 | type: u16 @26, bytes @28 */
        if (len < 28 || memcmp(buf, MAGIC, 4) != 0 || buf[4] != VERSION)
                return -EBADMSG;
        size_t tl = (size_t)buf[26] << 8 | buf[27];
        if (tl > MAMORI_TYPE_MAX || len - 28 < tl)
                return -EBADMSG;
        uint64_t seq = 0;
        for (int i = 0; i < 8; i++)
                seq = (seq << 8) | buf[5 + i];
        *ret_seq = seq;
        *ret_type = (const char *)buf + 28;
        *ret_type_len = tl;
        return 0;
}

void mamori_chain_hash(const uint8_t prev[MAMORI_HASH_LEN], const uint8_t *body, size_t len,
                       uint8_t next[MAMORI_HASH_LEN])
{
        crypto_generichash_state st;
        crypto_generichash_init(&st, NULL, 0, MAMORI_HASH_LEN);
        crypto_generichash_update(&st, prev, MAMORI_HASH_LEN);
        crypto_generichash_update(&st, body, len);
        crypto_generichash_final(&st, next, MAMORI_HASH_LEN);
}

static size_t be_put(uint8_t *p, uint64_t v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                p[i] = v >> (8 * (n - 1 - i));
        return n;
}

size_t mamori_checkpoint_message(uint64_t seq, const uint8_t hash[MAMORI_HASH_LEN], uint32_t epoch,
                                 uint8_t out[64])
{
        static const char tag[] = "mamori-checkpoint-v1";
        size_t o = 0;
        memcpy(out, tag, STRLEN(tag));
        o += STRLEN(tag);
        o += be_put(out + o, seq, 8);
        memcpy(out + o, hash, MAMORI_HASH_LEN);
        o += MAMORI_HASH_LEN;
        o += be_put(out + o, epoch, 4);
        return o;
}

size_t mamori_epoch_message(uint32_t epoch, const uint8_t pk[MAMORI_PK_LEN], uint64_t first_seq,
                            uint8_t out[80])
{
        static const char tag[] = "mamori-epoch-v1";
        size_t o = 0;
        memcpy(out, tag, STRLEN(tag));
        o += STRLEN(tag);
        o += be_put(out + o, epoch, 4);
        memcpy(out + o, pk, MAMORI_PK_LEN);
        o += MAMORI_PK_LEN;
        o += be_put(out + o, first_seq, 8);
        return o;
}

mamori_retention_class mamori_record_retention_class(const char *type)
{
        if (strncmp(type, "media.", 6) == 0 || strncmp(type, "device.", 7) == 0)
                return MAMORI_RETAIN_MEDIA;
        if (strncmp(type, "grant.", 6) == 0)
                return MAMORI_RETAIN_PERMISSION;
        if (strncmp(type, "auth.", 5) == 0 || strncmp(type, "session.", 8) == 0)
                return MAMORI_RETAIN_LOGIN;
        return MAMORI_RETAIN_ADMIN;
}

char *mamori_format_time(int64_t time_us, char buf[static 32])
{
        time_t t = (time_t)(time_us / 1000000);
        int64_t us = time_us % 1000000;
        if (us < 0) {
                us += 1000000;
                t -= 1;
        }
        struct tm tm;
        if (!gmtime_r(&t, &tm)) {
                snprintf(buf, 32, "@%lld", (long long)time_us);
                return buf;
        }
        size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf + n, 32 - n, ".%06lldZ", (long long)us);
        return buf;
}

/* Parses exactly n decimal digits at *s, advancing it. Returns -1 on failure. */
static int digits(const char **s, int n)
{
        int v = 0;
        for (int i = 0; i < n; i++) {
                char c = (*s)[i];
                if (c < '0' || c > '9')
                        return -1;
                v = v * 10 + (c - '0');
        }
        *s += n;
        return v;
}

static bool leap(int y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int mamori_parse_time(const char *s, int64_t *ret)
{
        if (streq(s, "now")) {
                *ret = mamori_now_us();
                return 0;
        }
        if (s[0] == '-' || s[0] == '+') {
                char *end;
                errno = 0;
                long long n = strtoll(s + 1, &end, 10);
                if (errno || end == s + 1 || n < 0 || n > 100000 || end[1] != 0)
                        return -EINVAL;
                int64_t unit = *end == 'd' ? 86400LL : *end == 'h' ? 3600LL : *end == 'm' ? 60LL : 0;
                if (!unit)
                        return -EINVAL;
                int64_t d = (int64_t)n * unit * 1000000;
                *ret = mamori_now_us() + (s[0] == '-' ? -d : d);
                return 0;
        }
        const char *p = s;
        int y = digits(&p, 4), hh = 0, mm = 0, ss = 0;
        if (y < 0 || *p++ != '-')
                return -EINVAL;
        int mo = digits(&p, 2);
        if (mo < 1 || mo > 12 || *p++ != '-')
                return -EINVAL;
        int d = digits(&p, 2);
        static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int maxd = mdays[mo - 1] + (mo == 2 && leap(y));
        if (d < 1 || d > maxd || y < 1970)
                return -EINVAL;
        if (*p == 'T' || *p == ' ') {
                p++;
                hh = digits(&p, 2);
                if (hh < 0 || hh > 23 || *p++ != ':')
                        return -EINVAL;
                mm = digits(&p, 2);
                if (mm < 0 || mm > 59)
                        return -EINVAL;
                if (*p == ':') {
                        p++;
                        ss = digits(&p, 2);
                        if (ss < 0 || ss > 59)
                                return -EINVAL;
                }
        }
        if (*p == 'Z')
                p++;
        if (*p != 0)
                return -EINVAL;
        struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                        .tm_hour = hh, .tm_min = mm, .tm_sec = ss};
        time_t t = timegm(&tm);
        *ret = (int64_t)t * 1000000;
        return 0;
}

int64_t mamori_now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

bool mamori_clock_synced_cached(void)
{
        static int64_t checked;
        static bool synced;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        if (checked == 0 || now - checked >= 1000) {
                synced = mamori_clock_synced();
                checked = now;
        }
        return synced;
}

bool mamori_clock_synced(void)
{
        struct timex tx = {0};
        int r = adjtimex(&tx);
        /* Unknown counts as not synchronised: the record then says so (R-EV-8). */
        return r >= 0 && r != TIME_ERROR && !(tx.status & STA_UNSYNC);
}
