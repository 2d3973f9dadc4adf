/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reading age files: the header reader shared with mamori_age_decrypt_fd (input
 * with look-ahead and pushback), and the incremental reader, sequential or at
 * offsets, one authenticated chunk at a time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "age-internal.h"

#define CHUNK MAMORI_AGE_CHUNK_SIZE
#define CCHUNK (MAMORI_AGE_CHUNK_SIZE + AGE_TAG_SIZE)

struct mamori_age_reader {
        age_source in;
        age_payload_keys *keys;
        uint8_t *chunk;
        size_t plen, off;
        uint64_t counter;
        bool done;
        int error;
        off_t start;         /* where the file began in in.fd, or -1 if not seekable */
        uint64_t cached;     /* chunk held by pread, or UINT64_MAX */
};

/* Reads up to len bytes, short only at end of file. Returns the count or -errno. */
ssize_t age_source_read(age_source *in, uint8_t *buf, size_t len)
{
        size_t got = 0;

        if (len > 0 && in->pushback >= 0) {
                buf[got++] = (uint8_t) in->pushback;
                in->pushback = -1;
        }
        if (got < len && in->pre_off < in->pre_len) {
                size_t n = in->pre_len - in->pre_off < len - got ? in->pre_len - in->pre_off : len - got;
                memcpy(buf + got, in->pre + in->pre_off, n);
                in->pre_off += n;
                got += n;
        }
        while (got < len) {
                ssize_t n = read(in->fd, buf + got, len - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                got += n;
        }
        return (ssize_t) got;
}

/* True if nothing follows; otherwise keeps the byte it read for the next read. */
int age_source_at_eof(age_source *in)
{
        uint8_t b;
        ssize_t n = age_source_read(in, &b, 1);

        if (n < 0)
                return (int) n;
        if (n == 0)
                return 1;
        in->pushback = b;
        return 0;
}

/* Frees what the header reader kept. */
void age_source_done(age_source *in)
{
        free(in->pre);
        *in = (age_source) { .fd = -1, .pushback = -1 };
}

/* Reads and parses the header, finds the file key, reads the nonce, derives the payload key. */
int age_payload_open(int fd, const mamori_age_decrypt_opts *opts, age_source *in, age_payload_keys *k)
{
        uint8_t nonce[AGE_NONCE_SIZE];
        age_header *h = NULL;
        size_t len = 0;
        int r;

        if (sodium_init() < 0)
                return -EIO;
        *in = (age_source) { .fd = fd, .pushback = -1 };
        in->pre = malloc(MAMORI_AGE_HEADER_MAX);
        if (!in->pre)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, in->pre + len, MAMORI_AGE_HEADER_MAX - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                len += n;
                r = age_header_parse(in->pre, len, &h);
                if (r != -ENODATA)
                        break;
                if (n == 0)
                        return -EBADMSG; /* the file ends inside the header */
        }
        if (r < 0)
                return r;
        in->pre_off = h->len;
        in->pre_len = len;
        in->header_len = h->len;
        r = age_header_unwrap(h, in->pre, opts, k->file_key);
        age_header_free(h);
        if (r < 0)
                return r;
        ssize_t n = age_source_read(in, nonce, sizeof(nonce));
        if (n < 0)
                return (int) n;
        if (n < (ssize_t) sizeof(nonce))
                return -EBADMSG;
        return age_hkdf_sha256(k->payload_key, sizeof(k->payload_key), k->file_key,
                               sizeof(k->file_key), nonce, sizeof(nonce), "payload");
}

/* Header, key and nonce now; chunks on demand. */
int mamori_age_reader_new(int in_fd, const mamori_age_decrypt_opts *opts, mamori_age_reader **ret)
{
        mamori_age_reader *rd;
        int r;

        rd = calloc(1, sizeof(*rd));
        if (!rd)
                return -ENOMEM;
        rd->in = (age_source) { .fd = -1, .pushback = -1 };
        rd->start = lseek(in_fd, 0, SEEK_CUR); /* -1 for pipes: pread then fails */
        rd->cached = UINT64_MAX;
        rd->keys = sodium_malloc(sizeof(age_payload_keys));
        rd->chunk = malloc(CCHUNK);
        r = rd->keys && rd->chunk ? age_payload_open(in_fd, opts, &rd->in, rd->keys) : -ENOMEM;
        if (r < 0) {
                mamori_age_reader_free(rd);
                return r;
        }
        *ret = rd;
        return 0;
}

/* Reads, authenticates and decrypts the next chunk into rd->chunk. */
static int reader_next_chunk(mamori_age_reader *rd)
{
        ssize_t n = age_source_read(&rd->in, rd->chunk, CCHUNK);
        bool last = true;
        int r;

        if (n < 0)
                return (int) n;
        if (n == CCHUNK) {
                r = age_source_at_eof(&rd->in);
                if (r < 0)
                        return r;
                last = r > 0;
        }
        rd->cached = UINT64_MAX; /* the buffer no longer holds a pread chunk */
        n = age_chunk_open(rd->keys->payload_key, rd->counter, last, rd->chunk, (size_t) n);
        if (n < 0)
                return (int) n;
        rd->counter++;
        rd->plen = (size_t) n;
        rd->off = 0;
        rd->done = last;
        return 0;
}

/* Serves plaintext from the current chunk, opening the next when it runs out. */
ssize_t mamori_age_reader_read(mamori_age_reader *rd, void *buf, size_t len)
{
        while (rd->off == rd->plen) {
                if (rd->error < 0)
                        return rd->error;
                if (rd->done)
                        return 0;
                int r = reader_next_chunk(rd);
                if (r < 0)
                        return (rd->error = r);
        }
        size_t n = len < rd->plen - rd->off ? len : rd->plen - rd->off;
        memcpy(buf, rd->chunk + rd->off, n);
        rd->off += n;
        return (ssize_t) n;
}

/* Chunk layout of a seekable file from its size: payload offset, chunk count, plaintext size. */
static int reader_layout(mamori_age_reader *rd, off_t *ret_payload, uint64_t *ret_chunks,
                         uint64_t *ret_size)
{
        struct stat st;
        off_t payload;
        uint64_t clen, n;

        if (rd->start < 0)
                return -ESPIPE;
        if (fstat(rd->in.fd, &st) < 0)
                return -errno;
        payload = rd->start + (off_t) rd->in.header_len + AGE_NONCE_SIZE;
        if (st.st_size <= payload)
                return -EBADMSG; /* no final chunk */
        clen = (uint64_t) (st.st_size - payload);
        n = (clen + CCHUNK - 1) / CCHUNK;
        if (clen - (n - 1) * CCHUNK < AGE_TAG_SIZE)
                return -EBADMSG;
        *ret_payload = payload;
        *ret_chunks = n;
        *ret_size = clen - n * AGE_TAG_SIZE;
        return 0;
}

int mamori_age_reader_size(mamori_age_reader *rd, uint64_t *ret)
{
        off_t payload = 0; /* set when reader_layout succeeds; gcc -O2 cannot see that */
        uint64_t n = 0, size = 0;
        int r = reader_layout(rd, &payload, &n, &size);

        if (r < 0)
                return r;
        *ret = size;
        return 0;
}

/* Reads and opens chunk idx of a seekable file into rd->chunk (the last one by file size). */
static int reader_load_chunk(mamori_age_reader *rd, off_t payload, uint64_t n, uint64_t idx)
{
        size_t want = idx + 1 < n ? CCHUNK : 0;
        struct stat st;
        ssize_t k, got = 0;

        if (want == 0) {
                if (fstat(rd->in.fd, &st) < 0)
                        return -errno;
                want = (size_t) ((uint64_t) (st.st_size - payload) - idx * CCHUNK);
        }
        rd->cached = UINT64_MAX;
        while ((size_t) got < want) {
                k = pread(rd->in.fd, rd->chunk + got, want - got, payload + (off_t) (idx * CCHUNK) + got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return -EBADMSG; /* shrank under us */
                got += k;
        }
        k = age_chunk_open(rd->keys->payload_key, idx, idx + 1 == n, rd->chunk, want);
        if (k < 0)
                return (int) k;
        rd->cached = idx;
        return 0;
}

/* Serves plaintext from [off, off+len) chunk by chunk, each authenticated on its own. */
ssize_t mamori_age_reader_pread(mamori_age_reader *rd, void *buf, size_t len, uint64_t off)
{
        off_t payload = 0; /* set when reader_layout succeeds; gcc -O2 cannot see that */
        uint64_t n = 0, size = 0;
        size_t done = 0;
        int r;

        r = reader_layout(rd, &payload, &n, &size);
        if (r < 0)
                return r;
        /* The sequential state shares the chunk buffer: reads after this start over. */
        rd->plen = rd->off = 0;
        rd->done = true;
        while (done < len && off < size) {
                uint64_t idx = off / CHUNK;
                size_t within = (size_t) (off % CHUNK), avail;

                if (rd->cached != idx) {
                        r = reader_load_chunk(rd, payload, n, idx);
                        if (r < 0)
                                return r;
                }
                avail = (size_t) ((idx + 1 == n ? size - idx * CHUNK : CHUNK) - within);
                avail = avail < len - done ? avail : len - done;
                memcpy((uint8_t *) buf + done, rd->chunk + within, avail);
                done += avail;
                off += avail;
        }
        return (ssize_t) done;
}

mamori_age_reader *mamori_age_reader_free(mamori_age_reader *rd)
{
        if (!rd)
                return NULL;
        age_source_done(&rd->in);
        if (rd->chunk)
                sodium_memzero(rd->chunk, CCHUNK);
        free(rd->chunk);
        sodium_free(rd->keys);
        free(rd);
        return NULL;
}
