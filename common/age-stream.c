/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The age payload: a 16-byte nonce, then ChaCha20-Poly1305 STREAM chunks of 64 KiB
 * under HKDF(file key, nonce, "payload"); the nonce of chunk i is i as an 11-byte
 * big-endian counter followed by 0x01 on the final chunk, 0x00 otherwise. The
 * final chunk is the one followed by end of file; it is empty only when the whole
 * payload is.
 *
 * Chunks are independent, so a ring of slots (batches of chunks) is filled by the
 * calling thread, sealed or opened in place by worker threads, and written out in
 * order by the calling thread: constant memory, every core busy. The calling thread
 * does all the I/O, one readv and one write(v) per slot straight into and out of
 * the slot's buffer, and seals or opens a waiting slot itself whenever the oldest
 * is not ready to be written.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sodium.h>

#include "age-internal.h"

#define CHUNK MAMORI_AGE_CHUNK_SIZE
#define CCHUNK (MAMORI_AGE_CHUNK_SIZE + AGE_TAG_SIZE)
#define BATCH 16 /* chunks per slot: 1 MiB of work per hand-off */

enum { SLOT_FREE, SLOT_FILLED, SLOT_DONE };

typedef struct slot {
        uint8_t *buf;          /* BATCH chunks, each at i*CCHUNK, tag after its data */
        uint32_t len[BATCH];   /* bytes in chunk i: plaintext (sealing) or ciphertext (opening) */
        unsigned n;            /* chunks used */
        uint64_t first;        /* counter of chunk 0 */
        bool last;             /* chunk n-1 is the file's final chunk */
        int state;             /* SLOT_*, under the pipeline lock when threaded */
        int error;
} __attribute__((aligned(64))) slot; /* one cache line each: workers write state and error */

typedef struct pipeline {
        bool decrypt;
        const uint8_t *key; /* payload key, in the owner's sodium memory */
        int out_fd;
        slot *slots;
        unsigned n_slots;
        pthread_t *threads;
        unsigned n_threads;
        pthread_mutex_t lock;
        pthread_cond_t work, done;
        uint64_t submitted, taken, written;
        bool stop;
} pipeline;


struct mamori_age_writer {
        pipeline p;
        age_payload_keys *keys;
        slot *cur;
        uint64_t counter; /* counter of the first chunk of the next slot */
        int error;
        bool finished;
};


/* STREAM nonce: 11-byte big-endian counter, then the last-chunk flag. */
static void stream_nonce(uint8_t nonce[12], uint64_t counter, bool last)
{
        memset(nonce, 0, 12);
        for (int i = 0; i < 8; i++)
                nonce[10 - i] = (uint8_t) (counter >> (8 * i));
        nonce[11] = last;
}

/* Seals plen bytes at p in place; the tag goes right after them. */
static void chunk_seal(const uint8_t *key, uint64_t counter, bool last, uint8_t *p, size_t plen)
{
        uint8_t nonce[12];

        stream_nonce(nonce, counter, last);
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(p, p + plen, NULL, p, plen, NULL, 0, NULL,
                                                           nonce, key);
}

/* Opens clen bytes at p in place. Returns the plaintext length or -EBADMSG. */
ssize_t age_chunk_open(const uint8_t *key, uint64_t counter, bool last, uint8_t *p, size_t clen)
{
        uint8_t nonce[12];

        if (clen < AGE_TAG_SIZE)
                return -EBADMSG;
        stream_nonce(nonce, counter, last);
        if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(p, NULL, p, clen - AGE_TAG_SIZE,
                                                               p + clen - AGE_TAG_SIZE, NULL, 0, nonce,
                                                               key) != 0)
                return -EBADMSG;
        /* Only an empty file ends in an empty chunk: a full final chunk is never
         * followed by an empty one (age before v1.0 wrote that; refuse it). */
        if (last && clen == AGE_TAG_SIZE && counter != 0)
                return -EBADMSG;
        return clen - AGE_TAG_SIZE;
}

/* Seals or opens every chunk of a slot; runs on a worker or inline. */
static void slot_process(const pipeline *p, slot *s)
{
        for (unsigned i = 0; i < s->n; i++) {
                bool last = s->last && i == s->n - 1;
                uint8_t *c = s->buf + (size_t) i * CCHUNK;

                if (!p->decrypt) {
                        chunk_seal(p->key, s->first + i, last, c, s->len[i]);
                        continue;
                }
                ssize_t n = age_chunk_open(p->key, s->first + i, last, c, s->len[i]);
                if (n < 0) {
                        s->error = (int) n;
                        return;
                }
        }
}

/* write(2) until done. Returns 0 or -errno. */
static int write_all(int fd, const uint8_t *p, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EIO;
                p += n;
                len -= n;
        }
        return 0;
}

/* Worker thread: takes filled slots in submission order and processes them. */
static void *worker_main(void *arg)
{
        pipeline *p = arg;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                while (!p->stop && p->taken == p->submitted)
                        pthread_cond_wait(&p->work, &p->lock);
                if (p->stop)
                        break;
                slot *s = &p->slots[p->taken++ % p->n_slots];
                pthread_mutex_unlock(&p->lock);
                slot_process(p, s);
                pthread_mutex_lock(&p->lock);
                s->state = SLOT_DONE;
                pthread_cond_broadcast(&p->done);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

/* Stops the workers and frees the slots. Safe on a zeroed or half-made pipeline. */
static void pipeline_done(pipeline *p)
{
        if (p->threads) {
                pthread_mutex_lock(&p->lock);
                p->stop = true;
                pthread_cond_broadcast(&p->work);
                pthread_mutex_unlock(&p->lock);
                for (unsigned i = 0; i < p->n_threads; i++)
                        pthread_join(p->threads[i], NULL);
                free(p->threads);
                pthread_cond_destroy(&p->work);
                pthread_cond_destroy(&p->done);
                pthread_mutex_destroy(&p->lock);
        }
        for (unsigned i = 0; p->slots && i < p->n_slots; i++) {
                if (p->slots[i].buf)
                        sodium_memzero(p->slots[i].buf, (size_t) BATCH * CCHUNK);
                free(p->slots[i].buf);
        }
        free(p->slots);
        *p = (pipeline) {};
}

/* Sets up slots and threads: threads 0 means online CPUs, 1 means none (inline). */
static int pipeline_init(pipeline *p, bool decrypt, const uint8_t *key, int out_fd, unsigned threads)
{
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);

        *p = (pipeline) { .decrypt = decrypt, .key = key, .out_fd = out_fd };
        if (threads == 0)
                threads = cpus > 0 ? (unsigned) cpus : 1;
        threads = threads > 64 ? 64 : threads;
        p->n_threads = threads > 1 ? threads : 0;
        p->n_slots = p->n_threads ? 2 * p->n_threads + 1 : 1;
        p->slots = aligned_alloc(_Alignof(slot), p->n_slots * sizeof(slot));
        if (!p->slots)
                return -ENOMEM;
        memset(p->slots, 0, p->n_slots * sizeof(slot));
        for (unsigned i = 0; i < p->n_slots; i++) {
                p->slots[i].buf = malloc((size_t) BATCH * CCHUNK);
                if (!p->slots[i].buf)
                        return -ENOMEM;
        }
        if (!p->n_threads)
                return 0;
        p->threads = calloc(p->n_threads, sizeof(pthread_t));
        if (!p->threads)
                return -ENOMEM;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->work, NULL);
        pthread_cond_init(&p->done, NULL);
        for (unsigned i = 0; i < p->n_threads; i++) {
                int r = pthread_create(&p->threads[i], NULL, worker_main, p);
                if (r != 0) {
                        p->n_threads = i; /* join only those that started */
                        return -r;
                }
        }
        return 0;
}

/* Waits until the oldest submitted slot is done, processing waiting slots meanwhile
 * rather than sleeping. Called with the lock held; returns with it held. */
static void wait_oldest(pipeline *p, slot *s)
{
        while (s->state != SLOT_DONE) {
                if (p->taken == p->submitted) {
                        pthread_cond_wait(&p->done, &p->lock);
                        continue;
                }
                slot *t = &p->slots[p->taken++ % p->n_slots];
                pthread_mutex_unlock(&p->lock);
                slot_process(p, t);
                pthread_mutex_lock(&p->lock);
                t->state = SLOT_DONE;
        }
}

/* Writes the plaintext chunks of an opened slot with one writev. Returns 0 or -errno. */
static int write_plain(int fd, slot *s)
{
        struct iovec iov[BATCH];
        unsigned i = 0, n = s->n;

        for (unsigned k = 0; k < n; k++)
                iov[k] = (struct iovec) { s->buf + (size_t) k * CCHUNK, s->len[k] - AGE_TAG_SIZE };
        for (;;) {
                while (i < n && iov[i].iov_len == 0)
                        i++;
                if (i == n)
                        return 0;
                ssize_t w = writev(fd, iov + i, (int) (n - i));
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                if (w == 0)
                        return -EIO;
                for (; i < n && (size_t) w >= iov[i].iov_len; i++)
                        w -= (ssize_t) iov[i].iov_len;
                if (i < n) {
                        iov[i].iov_base = (uint8_t *) iov[i].iov_base + w;
                        iov[i].iov_len -= (size_t) w;
                }
        }
}

/* Waits for the oldest submitted slot and writes it out. Returns 0 or -errno. */
static int pipeline_flush_one(pipeline *p)
{
        slot *s = &p->slots[p->written % p->n_slots];
        int r = 0;

        if (p->n_threads) {
                pthread_mutex_lock(&p->lock);
                wait_oldest(p, s);
                pthread_mutex_unlock(&p->lock);
        }
        if (s->error < 0)
                return s->error;
        if (!p->decrypt) {
                /* sealed in place: the chunks and their tags are contiguous */
                size_t total = (size_t) (s->n - 1) * CCHUNK + s->len[s->n - 1] + AGE_TAG_SIZE;
                r = write_all(p->out_fd, s->buf, total);
        } else
                r = write_plain(p->out_fd, s);
        if (r < 0)
                return r;
        s->state = SLOT_FREE;
        p->written++;
        return 0;
}

/* Returns the next slot to fill, writing out the oldest first if the ring is full. */
static int pipeline_acquire(pipeline *p, slot **ret)
{
        slot *s = &p->slots[p->submitted % p->n_slots];
        int r;

        if (p->written + p->n_slots == p->submitted) {
                r = pipeline_flush_one(p);
                if (r < 0)
                        return r;
        }
        s->n = 0;
        s->last = false;
        s->error = 0;
        *ret = s;
        return 0;
}

/* Hands a filled slot to the workers (or processes it inline). */
static void pipeline_submit(pipeline *p, slot *s)
{
        if (!p->n_threads) {
                slot_process(p, s);
                s->state = SLOT_DONE;
                p->submitted++;
                return;
        }
        pthread_mutex_lock(&p->lock);
        s->state = SLOT_FILLED;
        p->submitted++;
        pthread_cond_signal(&p->work);
        pthread_mutex_unlock(&p->lock);
}

/* Writes out everything submitted. Returns 0 or -errno. */
static int pipeline_drain(pipeline *p)
{
        while (p->written < p->submitted) {
                int r = pipeline_flush_one(p);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* readv(2) until every iovec is full or end of file; consumes iov. Returns the
 * count or -errno. Short only at end of file, whatever kind of descriptor fd is. */
static ssize_t readv_full(int fd, struct iovec *iov, int n)
{
        size_t got = 0;

        while (n > 0) {
                ssize_t k = readv(fd, iov, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                got += (size_t) k;
                for (; n > 0 && (size_t) k >= iov->iov_len; iov++, n--)
                        k -= (ssize_t) iov->iov_len;
                if (n > 0) {
                        iov->iov_base = (uint8_t *) iov->iov_base + k;
                        iov->iov_len -= (size_t) k;
                }
        }
        return (ssize_t) got;
}

/* Splits total bytes of a slot into chunks of at most size bytes (one empty chunk
 * for zero). */
static void slot_split(slot *s, size_t total, size_t size)
{
        s->n = total ? (unsigned) ((total + size - 1) / size) : 1;
        for (unsigned i = 0; i < s->n; i++)
                s->len[i] = (uint32_t) (total - (size_t) i * size < size ? total - (size_t) i * size : size);
}

/*
 * Fills one slot with ciphertext chunks and submits it; *eof once the final one is
 * in. One readv per slot, straight to the chunks' places, plus one byte of look-ahead
 * (kept as the source's pushback): a full slot is the end only if nothing follows.
 */
static int decrypt_fill(pipeline *p, age_source *in, uint64_t *counter, bool *eof)
{
        struct iovec iov[2];
        size_t total = 0, want = (size_t) BATCH * CCHUNK;
        uint8_t ahead;
        slot *s;
        ssize_t n;
        int r;

        r = pipeline_acquire(p, &s);
        if (r < 0)
                return r;
        s->first = *counter;
        /* the last look-ahead, and what the header reader read past the header */
        if (in->pushback >= 0)
                s->buf[total++] = (uint8_t) in->pushback;
        in->pushback = -1;
        if (in->pre_off < in->pre_len) {
                size_t k = in->pre_len - in->pre_off < want - total ? in->pre_len - in->pre_off : want - total;
                memcpy(s->buf + total, in->pre + in->pre_off, k);
                in->pre_off += k;
                total += k;
        }
        /* ciphertext chunks lie CCHUNK apart, contiguous: one iovec for the rest */
        iov[0] = (struct iovec) { s->buf + total, want - total };
        iov[1] = (struct iovec) { &ahead, 1 };
        n = readv_full(in->fd, iov, 2);
        if (n < 0)
                return (int) n;
        total += (size_t) n;
        if (total > want) {
                in->pushback = ahead;
                total = want;
        } else if (total == 0)
                return -EBADMSG; /* no final chunk: only possible before chunk 0 */
        slot_split(s, total, CCHUNK);
        s->last = in->pushback < 0;
        *counter += s->n;
        *eof = s->last;
        pipeline_submit(p, s);
        return 0;
}

/* Header and key, then slots of ciphertext to the workers, plaintext out in order. */
int mamori_age_decrypt_fd(int in_fd, int out_fd, const mamori_age_decrypt_opts *opts)
{
        _cleanup_sodium_free_ age_payload_keys *k = sodium_malloc(sizeof(age_payload_keys));
        age_source in = { .fd = -1, .pushback = -1 };
        pipeline p = {};
        uint64_t counter = 0;
        bool eof = false;
        int r;

        if (!k)
                return -ENOMEM;
        r = age_payload_open(in_fd, opts, &in, k);
        if (r >= 0)
                r = pipeline_init(&p, true, k->payload_key, out_fd, opts->threads);
        while (r >= 0 && !eof)
                r = decrypt_fill(&p, &in, &counter, &eof);
        if (r >= 0)
                r = pipeline_drain(&p);
        pipeline_done(&p);
        age_source_done(&in);
        return r;
}

/* Fresh file key and nonce, header and nonce written at once, workers started. */
int mamori_age_writer_new(int out_fd, const mamori_age_encrypt_opts *opts, mamori_age_writer **ret)
{
        _cleanup_free_ char *header = NULL;
        uint8_t nonce[AGE_NONCE_SIZE];
        mamori_age_writer *w;
        size_t len;
        int r;

        if (sodium_init() < 0)
                return -EIO;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->keys = sodium_malloc(sizeof(age_payload_keys));
        if (!w->keys) {
                free(w);
                return -ENOMEM;
        }
        randombytes_buf(w->keys->file_key, sizeof(w->keys->file_key));
        randombytes_buf(nonce, sizeof(nonce));
        r = age_header_build(opts, w->keys->file_key, &header, &len);
        if (r >= 0)
                r = age_hkdf_sha256(w->keys->payload_key, AGE_KEY_SIZE, w->keys->file_key,
                                    MAMORI_AGE_FILE_KEY_SIZE, nonce, sizeof(nonce), "payload");
        if (r >= 0)
                r = write_all(out_fd, (const uint8_t *) header, len);
        if (r >= 0)
                r = write_all(out_fd, nonce, sizeof(nonce));
        if (r >= 0)
                r = pipeline_init(&w->p, false, w->keys->payload_key, out_fd, opts->threads);
        if (r < 0) {
                mamori_age_writer_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

/* Where the next plaintext byte goes, if the current chunk has room; NULL otherwise. */
static uint8_t *writer_area(mamori_age_writer *w, size_t *ret_avail)
{
        slot *s = w->cur;

        if (!s || s->len[s->n - 1] == CHUNK)
                return NULL;
        *ret_avail = CHUNK - s->len[s->n - 1];
        return s->buf + (size_t) (s->n - 1) * CCHUNK + s->len[s->n - 1];
}

/* Makes room for more plaintext, known to exist: opens a chunk, or submits a full slot. */
static int writer_advance(mamori_age_writer *w)
{
        slot *s = w->cur;
        int r;

        if (s && s->n == BATCH) {
                w->counter += BATCH;
                w->cur = NULL;
                pipeline_submit(&w->p, s); /* not the last: more data follows */
                s = NULL;
        }
        if (!s) {
                r = pipeline_acquire(&w->p, &s);
                if (r < 0)
                        return r;
                s->first = w->counter;
                w->cur = s;
        }
        s->len[s->n++] = 0;
        return 0;
}

/* Records n bytes placed at writer_area(). */
static void writer_commit(mamori_age_writer *w, size_t n)
{
        w->cur->len[w->cur->n - 1] += (uint32_t) n;
}

/* Copies into the current chunk, opening chunks and handing off slots as they fill. */
int mamori_age_writer_write(mamori_age_writer *w, const void *buf, size_t len)
{
        const uint8_t *p = buf;

        if (w->error < 0)
                return w->error;
        if (w->finished)
                return -EINVAL;
        while (len > 0) {
                size_t avail;
                uint8_t *area = writer_area(w, &avail);

                if (!area) {
                        int r = writer_advance(w);
                        if (r < 0)
                                return (w->error = r);
                        continue;
                }
                size_t n = len < avail ? len : avail;
                memcpy(area, p, n);
                writer_commit(w, n);
                p += n;
                len -= n;
        }
        return 0;
}

/* Marks the last chunk final (an empty one for an empty file) and drains. */
int mamori_age_writer_finish(mamori_age_writer *w)
{
        int r;

        if (w->error < 0)
                return w->error;
        if (w->finished)
                return -EINVAL;
        w->finished = true;
        if (!w->cur) {
                r = writer_advance(w); /* empty file: one empty final chunk */
                if (r < 0)
                        return (w->error = r);
        }
        w->cur->last = true;
        pipeline_submit(&w->p, w->cur);
        w->cur = NULL;
        r = pipeline_drain(&w->p);
        if (r < 0)
                w->error = r;
        return r;
}

mamori_age_writer *mamori_age_writer_free(mamori_age_writer *w)
{
        if (!w)
                return NULL;
        pipeline_done(&w->p);
        sodium_free(w->keys);
        free(w);
        return NULL;
}

/*
 * Fills one slot with plaintext from fd and submits it; *eof once the final chunk is
 * in. One readv per slot straight to the chunks' places (CCHUNK apart, room for the
 * tags), plus one byte of look-ahead in *ahead (*have_ahead): since only more data
 * may open a new chunk, a full slot is final only if nothing follows it.
 */
static int encrypt_fill(mamori_age_writer *w, int fd, uint8_t *ahead, bool *have_ahead, bool *eof)
{
        struct iovec iov[BATCH + 1];
        size_t total = *have_ahead ? 1 : 0; /* the look-ahead byte opens the slot */
        slot *s;
        ssize_t n;
        int r;

        r = pipeline_acquire(&w->p, &s);
        if (r < 0)
                return r;
        s->first = w->counter;
        if (*have_ahead)
                s->buf[0] = *ahead;
        for (unsigned i = 0; i < BATCH; i++)
                iov[i] = (struct iovec) { s->buf + (size_t) i * CCHUNK, CHUNK };
        iov[0] = (struct iovec) { s->buf + total, CHUNK - total };
        iov[BATCH] = (struct iovec) { ahead, 1 };
        n = readv_full(fd, iov, BATCH + 1);
        if (n < 0)
                return (int) n;
        total += (size_t) n;
        *have_ahead = total > (size_t) BATCH * CHUNK;
        if (*have_ahead)
                total = (size_t) BATCH * CHUNK;
        slot_split(s, total, CHUNK); /* an empty file: one empty final chunk */
        s->last = !*have_ahead;
        w->counter += s->n;
        *eof = s->last;
        pipeline_submit(&w->p, s);
        return 0;
}

/* A writer's header and pipeline, fed straight from in_fd without an intermediate copy. */
int mamori_age_encrypt_fd(int in_fd, int out_fd, const mamori_age_encrypt_opts *opts)
{
        mamori_age_writer *w = NULL;
        bool have_ahead = false, eof = false;
        uint8_t ahead;
        int r;

        r = mamori_age_writer_new(out_fd, opts, &w);
        while (r >= 0 && !eof)
                r = encrypt_fill(w, in_fd, &ahead, &have_ahead, &eof);
        if (r >= 0) {
                w->finished = true;
                r = pipeline_drain(&w->p);
        }
        mamori_age_writer_free(w);
        return r;
}
