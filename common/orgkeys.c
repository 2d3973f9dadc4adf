/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The organisation's age keys (see orgkeys.h). Every file is opened relative to the
 * directory's descriptor with O_NOFOLLOW and checked with fstat on the open
 * descriptor (never stat on the path). Writers hold an flock on the directory, write
 * a temporary file, fsync it, rename it over the old one and fsync the directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cleanup.h"
#include "orgkeys.h"

#define IDENTITIES_FILE "identities"
#define RECIPIENT_FILE "recipient"
#define IDENTITIES_TMP ".identities.tmp"
#define RECIPIENT_TMP ".recipient.tmp"
#define IDENTITIES_MAX (1024 * 1024) /* ~8000 rotations; a bigger file is refused */
#define RECIPIENT_MAX 256

static inline void sodium_freep(void *p)
{
        sodium_free(*(void **)p);
}
#define _cleanup_sodium_free_ _cleanup_(sodium_freep)

/* Opens dir; with create, makes a missing last component 0700. The directory must be
 * root's and not writable by group or others (-EPERM): whoever can write it can swap
 * the keys. Returns the descriptor or -errno. */
static int open_dir(const char *dir, bool create)
{
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (!dir || !*dir)
                return -EINVAL;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && create) {
                if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                        return -errno;
                fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0)
                return errno == ELOOP || errno == ENOTDIR ? -EPERM : -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_uid != 0 || (st.st_mode & 0022))
                return -EPERM;
        return TAKE_FD(fd);
}

/* Reads name in dfd into *ret (NUL-terminated; sodium_malloc memory when secret).
 * Refuses (-EPERM) a symlink, a non-regular file, one not owned by root, writable by
 * group or others, or (secret) accessible to group or others at all. Returns 0,
 * -ENOENT, -EPERM, -EINVAL (longer than max) or -errno. */
static int read_checked(int dfd, const char *name, bool secret, size_t max, char **ret)
{
        _cleanup_close_ int fd = -1;
        struct stat st;
        char *buf;
        size_t len = 0;

        fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return errno == ELOOP ? -EPERM : -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 0022) ||
            (secret && (st.st_mode & 0077)))
                return -EPERM;
        if (st.st_size < 0 || (size_t)st.st_size > max)
                return -EINVAL;
        buf = secret ? sodium_malloc(max + 1) : malloc(max + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, buf + len, max + 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0 || (len += (size_t)n) > max) {
                        int r = n < 0 ? -errno : n > 0 ? -EINVAL : 0;
                        if (r < 0) {
                                if (secret)
                                        sodium_free(buf);
                                else
                                        free(buf);
                                return r;
                        }
                        break;
                }
        }
        buf[len] = 0;
        if (strlen(buf) != len) { /* an embedded NUL: not a text file we wrote */
                if (secret)
                        sodium_free(buf);
                else
                        free(buf);
                return -EINVAL;
        }
        *ret = buf;
        return 0;
}

int mamori_orgkeys_recipient(const char *dir, mamori_age_recipient *ret)
{
        _cleanup_close_ int dfd = -1;
        _cleanup_free_ char *text = NULL;
        mamori_age_recipient rcp;
        size_t len;
        int r;

        dfd = open_dir(dir, false);
        if (dfd < 0)
                return dfd;
        r = read_checked(dfd, RECIPIENT_FILE, false, RECIPIENT_MAX, &text);
        if (r < 0)
                return r;
        /* exactly one line: "age1...\n" (the newline optional) */
        len = strlen(text);
        if (len > 0 && text[len - 1] == '\n')
                text[--len] = 0;
        if (strchr(text, '\n') || mamori_age_recipient_parse(text, &rcp) < 0)
                return -EINVAL;
        *ret = rcp;
        return 0;
}

int mamori_orgkeys_identities(const char *dir, mamori_age_identity ***ret, size_t *ret_n)
{
        _cleanup_close_ int dfd = -1;
        _cleanup_sodium_free_ char *text = NULL;
        int r;

        dfd = open_dir(dir, false);
        if (dfd < 0)
                return dfd;
        r = read_checked(dfd, IDENTITIES_FILE, true, IDENTITIES_MAX, &text);
        if (r < 0)
                return r;
        return mamori_age_identities_parse_text(text, ret, ret_n);
}

/* Writes len bytes of data as dfd/tmp (mode, O_EXCL, O_NOFOLLOW), fsyncs it and
 * renames it to name. A stale tmp from a crash is removed first (we hold the lock).
 * Returns 0 or -errno; on failure tmp is gone and name untouched. */
static int write_replace(int dfd, const char *tmp, const char *name, const char *data,
                         size_t len, mode_t mode)
{
        _cleanup_close_ int fd = -1;
        int r = 0;

        if (unlinkat(dfd, tmp, 0) < 0 && errno != ENOENT)
                return -errno;
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, mode) < 0) /* the umask must not decide the mode */
                r = -errno;
        for (size_t off = 0; r == 0 && off < len;) {
                ssize_t n = write(fd, data + off, len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        r = n < 0 ? -errno : -EIO;
                else
                        off += (size_t)n;
        }
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r == 0 && renameat(dfd, tmp, dfd, name) < 0)
                r = -errno;
        if (r < 0)
                (void)unlinkat(dfd, tmp, 0);
        return r;
}

/* Returns 1 if name exists in dfd (as anything), 0 if not, or -errno. */
static int exists_at(int dfd, const char *name)
{
        struct stat st;

        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                return 1;
        return errno == ENOENT ? 0 : -errno;
}

/* Builds old + one age-keygen block for id into sodium_malloc memory (*ret) and the
 * recipient string (*ret_rcp, malloc). Returns 0 or -errno. */
static int build_identities(const char *old, const mamori_age_identity *id, char **ret,
                            char **ret_rcp)
{
        _cleanup_sodium_free_ char *secret = NULL;
        _cleanup_free_ char *rcp_s = NULL;
        mamori_age_recipient rcp;
        char created[32];
        struct tm tm;
        time_t now = time(NULL);
        size_t old_len = old ? strlen(old) : 0, max;
        char *text;
        int r, n;

        r = mamori_age_identity_format(id, &secret);
        if (r < 0)
                return r;
        r = mamori_age_identity_to_recipient(id, &rcp);
        if (r < 0)
                return r;
        r = mamori_age_recipient_format(&rcp, &rcp_s);
        if (r < 0)
                return r;
        if (!gmtime_r(&now, &tm) || strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                return -EINVAL;
        max = old_len + 1 + strlen(created) + strlen(rcp_s) + strlen(secret) + 64;
        text = sodium_malloc(max);
        if (!text)
                return -ENOMEM;
        memcpy(text, old ? old : "", old_len);
        if (old_len > 0 && old[old_len - 1] != '\n')
                text[old_len++] = '\n';
        n = snprintf(text + old_len, max - old_len, "# created: %s\n# public key: %s\n%s\n",
                     created, rcp_s, secret);
        if (n < 0 || (size_t)n >= max - old_len) {
                sodium_free(text);
                return -EINVAL;
        }
        *ret = text;
        *ret_rcp = TAKE_PTR(rcp_s);
        return 0;
}

/* Under the lock: reads and validates the old identities (rotate), writes the new
 * identities file, then the recipient. Identities go first: a crash between the two
 * renames leaves the old recipient, still decryptable, never a recipient without its
 * identity. If the second rename fails the first is undone. Returns 0 or -errno. */
static int generate_locked(int dfd, bool rotate, char **ret_recipient)
{
        _cleanup_sodium_free_ char *old = NULL, *text = NULL;
        _cleanup_free_ char *rcp = NULL, *rcp_line = NULL;
        mamori_age_identity *id = NULL;
        int r, have_ids, have_rcp;

        have_ids = exists_at(dfd, IDENTITIES_FILE);
        if (have_ids < 0)
                return have_ids;
        have_rcp = exists_at(dfd, RECIPIENT_FILE);
        if (have_rcp < 0)
                return have_rcp;
        if (!rotate && (have_ids || have_rcp))
                return -EEXIST;
        if (rotate && !have_ids)
                return -ENOENT;
        if (rotate) {
                mamori_age_identity **ids = NULL;
                size_t n = 0;

                r = read_checked(dfd, IDENTITIES_FILE, true, IDENTITIES_MAX, &old);
                if (r < 0)
                        return r;
                r = mamori_age_identities_parse_text(old, &ids, &n);
                if (r < 0)
                        return r; /* a file we cannot read back is not extended */
                mamori_age_identities_free(ids, n);
        }
        r = mamori_age_identity_generate(&id);
        if (r < 0)
                return r;
        r = build_identities(old, id, &text, &rcp);
        mamori_age_identity_free(id);
        if (r < 0)
                return r;
        if (asprintf(&rcp_line, "%s\n", rcp) < 0)
                return -ENOMEM;
        r = write_replace(dfd, IDENTITIES_TMP, IDENTITIES_FILE, text, strlen(text), 0600);
        if (r < 0)
                return r;
        r = write_replace(dfd, RECIPIENT_TMP, RECIPIENT_FILE, rcp_line, strlen(rcp_line), 0644);
        if (r < 0) {
                /* undo the first rename: the old identities back, or none */
                if (old)
                        (void)write_replace(dfd, IDENTITIES_TMP, IDENTITIES_FILE, old,
                                            strlen(old), 0600);
                else
                        (void)unlinkat(dfd, IDENTITIES_FILE, 0);
                (void)fsync(dfd);
                return r;
        }
        if (fsync(dfd) < 0)
                return -errno; /* the files are in place, but maybe not durable: say so */
        if (ret_recipient)
                *ret_recipient = TAKE_PTR(rcp);
        return 0;
}

int mamori_orgkeys_generate(const char *dir, bool rotate, char **ret_recipient)
{
        _cleanup_close_ int dfd = -1;
        int r;

        dfd = open_dir(dir, !rotate);
        if (dfd < 0)
                return dfd;
        /* one writer at a time: two rotations must not lose each other's identity */
        while (flock(dfd, LOCK_EX) < 0)
                if (errno != EINTR)
                        return -errno;
        r = generate_locked(dfd, rotate, ret_recipient);
        (void)flock(dfd, LOCK_UN);
        return r;
}
