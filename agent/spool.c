/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The evidence spool (format in spool.h). */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "spool.h"
#include "wire.h"

#define MAGIC "MAMSPL1\n"

struct agent_spool {
        int fd;
        uint64_t max, head, tail, depth, dropped;
};

void agent_spool_free(agent_spool *s)
{
        if (!s)
                return;
        if (s->fd >= 0)
                close(s->fd);
        free(s);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(agent_spool *, agent_spool_free)

/* Owned by us, nothing for group or others, and of the expected type. */
static int check_owner(int fd, mode_t type)
{
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if ((st.st_mode & S_IFMT) != type || st.st_uid != geteuid() || (st.st_mode & 077))
                return -EPERM;
        return 0;
}

static int write_header(agent_spool *s)
{
        uint8_t h[AGENT_SPOOL_HEADER];
        memcpy(h, MAGIC, 8);
        uint64_t head = htobe64(s->head), dropped = htobe64(s->dropped);
        memcpy(h + 8, &head, 8);
        memcpy(h + 16, &dropped, 8);
        if (pwrite(s->fd, h, sizeof h, 0) != (ssize_t)sizeof h)
                return -EIO;
        return fdatasync(s->fd) < 0 ? -errno : 0;
}

static int read_len(agent_spool *s, uint64_t off, uint32_t *ret)
{
        uint32_t be;
        ssize_t n = pread(s->fd, &be, 4, (off_t)off);
        if (n < 0)
                return -errno;
        if (n != 4)
                return -ENODATA;
        *ret = be32toh(be);
        return 0;
}

/* Counts the records from head, cutting off a torn tail. */
static int scan(agent_spool *s, uint64_t size)
{
        uint64_t off = s->head;
        s->depth = 0;
        while (off < size) {
                uint32_t len = 0;
                if (read_len(s, off, &len) < 0 || len == 0 || len > MAMORI_MSG_MAX || off + 4 + len > size)
                        break;
                off += 4 + len;
                s->depth++;
        }
        if (off != size) {
                log_warning("Spool: a torn record at offset %llu (a crash while appending), cutting it off.",
                            (unsigned long long)off);
                if (ftruncate(s->fd, (off_t)off) < 0)
                        return -errno;
        }
        s->tail = off;
        return 0;
}

static int load(agent_spool *s)
{
        struct stat st;
        if (fstat(s->fd, &st) < 0)
                return -errno;
        if (st.st_size == 0) {
                s->head = s->tail = AGENT_SPOOL_HEADER;
                return write_header(s);
        }
        uint8_t h[AGENT_SPOOL_HEADER];
        if (st.st_size < (off_t)AGENT_SPOOL_HEADER || pread(s->fd, h, sizeof h, 0) != (ssize_t)sizeof h ||
            memcmp(h, MAGIC, 8) != 0)
                return -EBADMSG;
        uint64_t v;
        memcpy(&v, h + 8, 8);
        s->head = be64toh(v);
        memcpy(&v, h + 16, 8);
        s->dropped = be64toh(v);
        if (s->head > (uint64_t)st.st_size && st.st_size == AGENT_SPOOL_HEADER)
                s->head = AGENT_SPOOL_HEADER; /* a crash after the cut, before the header update */
        if (s->head < AGENT_SPOOL_HEADER || s->head > (uint64_t)st.st_size)
                return -EBADMSG;
        return scan(s, st.st_size);
}

int agent_spool_open(const char *dir, uint64_t max, agent_spool **ret)
{
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        int r = check_owner(dfd, S_IFDIR);
        if (r < 0)
                return r;
        _cleanup_(agent_spool_freep) agent_spool *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->max = max < AGENT_SPOOL_HEADER + 4096 ? AGENT_SPOOL_HEADER + 4096 : max;
        s->fd = openat(dfd, "spool", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (s->fd < 0)
                return -errno;
        r = check_owner(s->fd, S_IFREG);
        if (r < 0)
                return r;
        r = load(s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int agent_spool_append(agent_spool *s, const uint8_t *frame, size_t len)
{
        if (len < 4 || len > 4 + MAMORI_MSG_MAX)
                return -EINVAL;
        uint32_t be;
        memcpy(&be, frame, 4);
        if (be32toh(be) != len - 4 || len == 4)
                return -EINVAL;
        if (s->tail + len > s->max) {
                s->dropped++;
                (void)write_header(s);
                return -ENOSPC;
        }
        ssize_t n = pwrite(s->fd, frame, len, (off_t)s->tail);
        if (n != (ssize_t)len) {
                int r = n < 0 ? -errno : -EIO;
                (void)ftruncate(s->fd, (off_t)s->tail); /* no torn record left behind */
                return r;
        }
        if (fdatasync(s->fd) < 0)
                return -errno;
        s->tail += len;
        s->depth++;
        return 0;
}

int agent_spool_peek(agent_spool *s, uint8_t **ret, size_t *ret_len)
{
        if (s->depth == 0)
                return 0;
        uint32_t len = 0;
        int r = read_len(s, s->head, &len);
        if (r < 0)
                return r;
        if (len == 0 || len > MAMORI_MSG_MAX)
                return -EBADMSG;
        _cleanup_free_ uint8_t *buf = malloc(4 + (size_t)len);
        if (!buf)
                return -ENOMEM;
        if (pread(s->fd, buf, 4 + (size_t)len, (off_t)s->head) != (ssize_t)(4 + len))
                return -EIO;
        *ret_len = 4 + (size_t)len;
        *ret = TAKE_PTR(buf);
        return 1;
}

int agent_spool_pop(agent_spool *s)
{
        if (s->depth == 0)
                return -ENODATA;
        uint32_t len = 0;
        int r = read_len(s, s->head, &len);
        if (r < 0)
                return r;
        s->head += 4 + (uint64_t)len;
        s->depth--;
        if (s->depth == 0) { /* all delivered: cut back to the header, then reset head */
                if (ftruncate(s->fd, AGENT_SPOOL_HEADER) < 0)
                        return -errno;
                s->head = s->tail = AGENT_SPOOL_HEADER;
        }
        return write_header(s);
}

uint64_t agent_spool_depth(const agent_spool *s)
{
        return s->depth;
}

uint64_t agent_spool_dropped(const agent_spool *s)
{
        return s->dropped;
}

int agent_spool_clear_dropped(agent_spool *s)
{
        s->dropped = 0;
        return write_header(s);
}
