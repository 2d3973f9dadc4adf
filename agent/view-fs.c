/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Names in the view and on the medium. A file the user sees as "foo" is stored as
 * "foo.age" (encrypted) or "foo" (plaintext, never ending in ".age"); when both exist
 * the encrypted one is shown. Names the view uses itself (".mamori-*") are hidden and
 * refused. Every path is resolved beneath the raw mount without following any symlink
 * or crossing a mount (a medium could carry a symlink to /etc).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cleanup.h"
#include "log.h"
#include "view.h"

#define SIZE_CACHE 512

static bool has_suffix(const char *s)
{
        size_t n = strlen(s);
        return n > STRLEN(VIEW_SUFFIX) && streq(s + n - STRLEN(VIEW_SUFFIX), VIEW_SUFFIX);
}

int view_name_check(const char *base)
{
        if (!base[0] || streq(base, ".") || streq(base, "..") || strchr(base, '/') ||
            strncmp(base, VIEW_TEMP_PREFIX, STRLEN(VIEW_TEMP_PREFIX)) == 0)
                return -EINVAL;
        if (strlen(base) > VIEW_NAME_MAX)
                return -ENAMETOOLONG;
        return 0;
}

/* Opens dir (relative to the raw mount, "" for its root) beneath it, one component at a
 * time with O_NOFOLLOW, staying on the medium's filesystem. (Not openat2: the agent's
 * unit's system call filter answers it with ENOSYS on systemd 252.) */
static int open_beneath(view *v, const char *dir)
{
        struct stat root, st;
        if (fstat(v->raw_fd, &root) < 0)
                return -errno;
        _cleanup_free_ char *copy = strdup(dir);
        if (!copy)
                return -ENOMEM;
        int fd = openat(v->raw_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        for (char *s, *tok = strtok_r(copy, "/", &s); tok; tok = strtok_r(NULL, "/", &s)) {
                if (streq(tok, ".") || streq(tok, "..")) { /* never up, never out */
                        close(fd);
                        return -ENOENT;
                }
                int nfd = openat(fd, tok, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                int e = errno;
                close(fd);
                if (nfd < 0) /* a symlink (ELOOP) or not a directory: as if absent */
                        return e == ELOOP || e == ENOTDIR ? -ENOENT : -e;
                if (fstat(nfd, &st) < 0 || st.st_dev != root.st_dev) { /* another mount: refused */
                        close(nfd);
                        return -ENOENT;
                }
                fd = nfd;
        }
        return fd;
}

int view_open_dir(view *v, const char *path)
{
        while (*path == '/')
                path++;
        /* every component the user names must be a name the view shows */
        _cleanup_free_ char *copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        for (char *s, *tok = strtok_r(copy, "/", &s); tok; tok = strtok_r(NULL, "/", &s))
                if (view_name_check(tok) < 0)
                        return -ENOENT;
        return open_beneath(v, path);
}

int view_lookup(view *v, const char *path, view_entry *e)
{
        const char *slash = strrchr(path, '/');
        if (!slash || !slash[1])
                return -EINVAL;
        int r = view_name_check(slash + 1);
        if (r < 0)
                return r;
        *e = (view_entry){.dir_fd = -1, .kind = VIEW_NONE};
        snprintf(e->base, sizeof e->base, "%s", slash + 1);
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path);
        int dfd = view_open_dir(v, parent);
        if (dfd < 0)
                return dfd;
        char name[NAME_MAX + 8];
        snprintf(name, sizeof name, "%s" VIEW_SUFFIX, e->base);
        if (fstatat(dfd, name, &e->st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(e->st.st_mode)) {
                e->kind = VIEW_AGE;
                snprintf(e->stored, sizeof e->stored, "%s", name);
        } else if (fstatat(dfd, e->base, &e->st, AT_SYMLINK_NOFOLLOW) == 0) {
                if (S_ISDIR(e->st.st_mode))
                        e->kind = VIEW_DIR;
                else if (S_ISREG(e->st.st_mode) && !has_suffix(e->base))
                        e->kind = VIEW_PLAIN;
                /* symlinks, devices, and "x.age" that is not a regular file: not shown */
                if (e->kind != VIEW_NONE)
                        snprintf(e->stored, sizeof e->stored, "%s", e->base);
        }
        e->dir_fd = dfd;
        return 0;
}

void view_remove_other(int dir_fd, const char *base, view_kind kept)
{
        char name[NAME_MAX + 8];
        struct stat st;
        if (kept == VIEW_AGE)
                snprintf(name, sizeof name, "%s", base);
        else
                snprintf(name, sizeof name, "%s" VIEW_SUFFIX, base);
        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            unlinkat(dir_fd, name, 0) < 0)
                log_warning_errno(errno, "Cannot remove the older copy \"%s\": %m, ignoring.", name);
}

int view_age_reader(view *v, int fd, mamori_age_reader **ret)
{
        if (!v->ids) /* no identities: encrypted files cannot be opened (fail closed) */
                return -EACCES;
        mamori_age_decrypt_opts o = {.identities = v->ids, .n_identities = v->n_ids, .threads = 1};
        return mamori_age_reader_new(fd, &o, ret);
}

int view_age_reader_for(view *v, int fd, uid_t uid, mamori_age_reader **ret, view_form *ret_form)
{
        int r = view_age_reader(v, fd, ret);
        if (r != -ENOKEY && r != -EACCES) {
                if (r >= 0)
                        *ret_form = VIEW_FORM_AGE_ORG;
                return r;
        }
        /* not for the organisation's identities: the caller's passphrase, if one is held
         * (none: refused as before, fail closed). scrypt: about 1 s in the FUSE thread. */
        char *pass = NULL;
        if (view_pass_get(v, uid, &pass) < 0)
                return r;
        if (lseek(fd, 0, SEEK_SET) < 0) {
                sodium_free(pass);
                return -errno;
        }
        mamori_age_decrypt_opts o = {.passphrase = pass, .threads = 1};
        int k = mamori_age_reader_new(fd, &o, ret);
        sodium_free(pass);
        if (k < 0)
                return k == -ENOKEY ? r : k;
        *ret_form = VIEW_FORM_PASSPHRASE;
        return 0;
}

/* Plaintext sizes of .age files by (device, inode, size, mtime, ctime). */
static struct size_slot {
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtim, ctim;
        uint64_t plain;
        bool used;
} size_cache[SIZE_CACHE];

static bool same_time(struct timespec a, struct timespec b)
{
        return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

int view_age_size(view *v, int dir_fd, const char *stored, const struct stat *st, uint64_t *ret)
{
        struct size_slot *s = &size_cache[st->st_ino % SIZE_CACHE];
        if (s->used && s->dev == st->st_dev && s->ino == st->st_ino && s->size == st->st_size &&
            same_time(s->mtim, st->st_mtim) && same_time(s->ctim, st->st_ctim)) {
                *ret = s->plain;
                return 0;
        }
        _cleanup_close_ int fd = openat(dir_fd, stored, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        mamori_age_reader *rd = NULL;
        int r = view_age_reader(v, fd, &rd);
        uint64_t plain = 0;
        if (r >= 0)
                r = mamori_age_reader_size(rd, &plain);
        mamori_age_reader_free(rd);
        if (r < 0)
                return r;
        *s = (struct size_slot){.dev = st->st_dev, .ino = st->st_ino, .size = st->st_size, .mtim = st->st_mtim,
                                .ctim = st->st_ctim, .plain = plain, .used = true};
        *ret = plain;
        return 0;
}
