/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The view's FUSE operations. Mounted without default_permissions: the kernel checks
 * nothing, every operation here checks the caller's rights (R-IN-1, R-OUT-2): some
 * right to see names, read to open for reading, write to change anything. No
 * execution (noexec mount, no x bits), no set-id, no links, no device nodes (R-ATK-1).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "view.h"

/* One open file: a write node, or a read-only descriptor on the medium. */
typedef struct view_handle {
        view_node *node;
        int fd;
        mamori_age_reader *reader;
        uint64_t size, bytes_read;
        view_form form;
        char base[NAME_MAX + 1], stored[NAME_MAX + 8];
        view_caller caller; /* who opened it, for the input record */
} view_handle;

static view *V(void)
{
        return fuse_get_context()->private_data;
}

#define CALLER(c)                                                                                          \
        view_caller c;                                                                                     \
        do {                                                                                               \
                int _r = view_caller_get(V(), &c);                                                         \
                if (_r < 0)                                                                                \
                        return _r;                                                                         \
        } while (0)

#define ANY_RIGHT (MAMORI_MODE_ALL)
#define WRITE_RIGHTS (MAMORI_MODE_WRITE_ENCRYPTED | MAMORI_MODE_WRITE_PASSPHRASE | MAMORI_MODE_WRITE_PLAIN)

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
        /* Nothing cached in the kernel: every lookup and attribute is asked for by the
         * caller at hand, and decided for that caller. */
        cfg->entry_timeout = 0;
        cfg->attr_timeout = 0;
        cfg->negative_timeout = 0;
        cfg->hard_remove = 1;
        cfg->use_ino = 0;
        /* open(O_TRUNC) arrives as one open: overwriting needs no read right */
        if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
                conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
        conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
        /* 1 MiB writes instead of 128 KiB: 8 times fewer round trips through the
         * single-threaded loop for a large copy (the kernel's max_pages, since 4.20). */
        conn->max_write = 1u << 20;
        return V();
}

/* The attributes a caller sees: owned by the caller, no x for files, no set-id. */
static void fill_stat(struct stat *st, const struct stat *raw, bool dir, uint64_t size, const view_caller *c)
{
        bool w = view_caller_modes(c) & WRITE_RIGHTS;
        *st = (struct stat){0};
        st->st_mode = dir ? (S_IFDIR | (w ? 0755 : 0555)) : (S_IFREG | (w ? 0644 : 0444));
        st->st_nlink = dir ? 2 : 1;
        st->st_uid = c->uid;
        st->st_gid = c->gid;
        st->st_size = (off_t)size;
        st->st_blksize = 4096;
        st->st_blocks = (blkcnt_t)((size + 511) / 512);
        if (raw) {
                st->st_atim = raw->st_atim;
                st->st_mtim = raw->st_mtim;
                st->st_ctim = raw->st_ctim;
        }
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
        view *v = V();
        CALLER(c);
        view_handle *h = fi ? (view_handle *)(uintptr_t)fi->fh : NULL;
        if (!path && !(h && h->node)) /* unlinked while open (hard_remove): only written ones are known */
                return -ENOENT;
        if (path && streq(path, "/")) {
                struct stat raw;
                if (fstat(v->raw_fd, &raw) < 0)
                        return -errno;
                fill_stat(st, &raw, true, 4096, &c);
                return 0;
        }
        if (!(view_caller_modes(&c) & ANY_RIGHT))
                return -EACCES; /* no right on this medium: nothing to see */
        view_node *n = h && h->node ? h->node : view_node_find(v, path);
        if (n) {
                struct stat raw;
                int r = view_node_stat(n, &raw);
                if (r < 0)
                        return r;
                fill_stat(st, &raw, false, raw.st_size, &c);
                return 0;
        }
        view_entry e;
        int r = view_lookup(v, path, &e);
        if (r < 0)
                return r == -EINVAL ? -ENOENT : r;
        _cleanup_close_ int dfd = e.dir_fd;
        uint64_t size = e.st.st_size;
        switch (e.kind) {
        case VIEW_NONE:
                return -ENOENT;
        case VIEW_AGE:
                r = view_age_size(v, dfd, e.stored, &e.st, &size);
                if (r < 0) /* not ours or damaged: shown, unreadable */
                        size = 0;
                break;
        default:
                break;
        }
        fill_stat(st, &e.st, e.kind == VIEW_DIR, size, &c);
        return 0;
}

static int op_access(const char *path, int mask)
{
        CALLER(c);
        if (streq(path, "/") && mask == F_OK)
                return 0;
        if (!(view_caller_modes(&c) & ANY_RIGHT) || ((mask & R_OK) && !(c.modes & MAMORI_MODE_READ)) ||
            ((mask & W_OK) && !(view_caller_modes(&c) & WRITE_RIGHTS)))
                return -EACCES;
        if (mask & X_OK) { /* search a directory yes, execute a file never (R-ATK-1) */
                struct stat st;
                int r = op_getattr(path, &st, NULL);
                if (r < 0)
                        return r;
                return S_ISDIR(st.st_mode) ? 0 : -EACCES;
        }
        return 0;
}

/* The name a raw directory entry is shown under, or false to hide it. */
static bool shown_name(int dfd, const struct dirent *d, char ret[static NAME_MAX + 1])
{
        const char *n = d->d_name;
        if (streq(n, ".") || streq(n, "..") || strncmp(n, VIEW_TEMP_PREFIX, STRLEN(VIEW_TEMP_PREFIX)) == 0)
                return false;
        struct stat st;
        if (fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return false;
        size_t len = strlen(n);
        bool age = len > STRLEN(VIEW_SUFFIX) && streq(n + len - STRLEN(VIEW_SUFFIX), VIEW_SUFFIX);
        if (S_ISDIR(st.st_mode)) {
                snprintf(ret, NAME_MAX + 1, "%s", n);
                return true;
        }
        if (!S_ISREG(st.st_mode))
                return false;
        if (age) {
                snprintf(ret, NAME_MAX + 1, "%.*s", (int)(len - STRLEN(VIEW_SUFFIX)), n);
                return view_name_check(ret) == 0;
        }
        char other[NAME_MAX + 8];
        snprintf(other, sizeof other, "%s" VIEW_SUFFIX, n);
        if (fstatat(dfd, other, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
                return false; /* "foo" and "foo.age": the encrypted one is shown */
        snprintf(ret, NAME_MAX + 1, "%s", n);
        return true;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags)
{
        view *v = V();
        CALLER(c);
        if (!(view_caller_modes(&c) & ANY_RIGHT))
                return -EACCES;
        int dfd = view_open_dir(v, path);
        if (dfd < 0)
                return dfd;
        DIR *d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return -errno;
        }
        fill(buf, ".", NULL, 0, 0);
        fill(buf, "..", NULL, 0, 0);
        char name[NAME_MAX + 1];
        for (struct dirent *e; (e = readdir(d));)
                if (shown_name(dirfd(d), e, name))
                        fill(buf, name, NULL, 0, 0);
        /* files being written, not yet on the medium */
        size_t pl = streq(path, "/") ? 0 : strlen(path);
        for (view_node *n = v->nodes; n; n = n->next) {
                if (!n->path || strncmp(n->path, path, pl) != 0 || n->path[pl] != '/' || strchr(n->path + pl + 1, '/'))
                        continue;
                view_entry ve;
                if (view_lookup(v, n->path, &ve) == 0) {
                        close(ve.dir_fd);
                        if (ve.kind == VIEW_NONE)
                                fill(buf, n->path + pl + 1, NULL, 0, 0);
                }
        }
        closedir(d);
        return 0;
}

/* Refusal of an output, recorded (R-OUT-2); returns -EACCES whatever the record did. */
static int refuse_output(view *v, const view_caller *c, const char *path, const char *why)
{
        const char *base = strrchr(path, '/');
        view_transfer t = {.file = base ? base + 1 : path, .output = true, .form = view_caller_form(c),
                           .reason = why, .source_path = ""};
        (void)view_evidence(v, c, &t, true);
        return -EACCES;
}

/* Checks that c may write a file now: a write right, and for passphrase output a
 * passphrase held (checked again at the commit). */
static int may_write(view *v, const view_caller *c, const char *path)
{
        view_form f = view_caller_form(c);
        if (f == VIEW_FORM_NONE)
                return refuse_output(v, c, path, "no-write-right");
        if (f == VIEW_FORM_PASSPHRASE && !view_pass_held(v, c->uid)) {
                /* nothing to encrypt to: refused, and the user told how (R-OUT-1, R-OUT-3) */
                log_notice("%s has a passphrase right but no passphrase set: "
                           "\"mediactl passphrase %s\" sets one.", c->name, v->medium_arg);
                return refuse_output(v, c, path, "no-passphrase");
        }
        return 0;
}

static int open_write(view *v, const view_caller *c, const char *path, int flags, bool create,
                      struct fuse_file_info *fi)
{
        int r = may_write(v, c, path);
        if (r < 0)
                return r;
        view_node *n = view_node_find(v, path);
        view_entry e = {.dir_fd = -1, .kind = VIEW_NONE};
        if (!n) {
                r = view_lookup(v, path, &e);
                if (r < 0)
                        return r;
        }
        _cleanup_close_ int dfd = e.dir_fd; /* closed on return; view_node_open reads through e */
        (void)dfd;
        bool exists = n || e.kind != VIEW_NONE;
        if (e.kind == VIEW_DIR)
                return -EISDIR;
        if (create && exists && (flags & O_EXCL))
                return -EEXIST;
        if (!exists && !create)
                return -ENOENT;
        bool truncate = (flags & O_TRUNC) || !exists;
        /* keeping existing content means decrypting it: that is reading (R-IN-1) */
        if (exists && !truncate && !(c->modes & MAMORI_MODE_READ))
                return -EACCES;
        _cleanup_free_ view_handle *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        r = view_node_open(v, path, &e, truncate, c, &h->node);
        if (r < 0)
                return r;
        h->fd = -1;
        h->caller = *c;
        fi->fh = (uint64_t)(uintptr_t)TAKE_PTR(h);
        fi->direct_io = 0;
        fi->keep_cache = 0;
        return 0;
}

static int open_read(view *v, const view_caller *c, const char *path, struct fuse_file_info *fi)
{
        if (!(c->modes & MAMORI_MODE_READ))
                return -EACCES; /* R-IN-1: no read right, no input */
        if (!view_policyd_reachable(v))
                return -EIO; /* the input could not be recorded (R-EV-9): refused */
        _cleanup_free_ view_handle *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->fd = -1;
        h->caller = *c;
        view_node *n = view_node_find(v, path);
        if (n) { /* being written: read what is staged, not an input from the medium */
                n->refs++;
                h->node = n;
                fi->fh = (uint64_t)(uintptr_t)TAKE_PTR(h);
                return 0;
        }
        view_entry e;
        int r = view_lookup(v, path, &e);
        if (r < 0)
                return r;
        _cleanup_close_ int dfd = e.dir_fd;
        if (e.kind == VIEW_NONE)
                return -ENOENT;
        if (e.kind == VIEW_DIR)
                return -EISDIR;
        h->fd = openat(dfd, e.stored, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (h->fd < 0)
                return -errno;
        snprintf(h->base, sizeof h->base, "%s", e.base);
        snprintf(h->stored, sizeof h->stored, "%s", e.stored);
        h->form = e.kind == VIEW_AGE ? VIEW_FORM_AGE_ORG : VIEW_FORM_PLAIN;
        h->size = e.st.st_size;
        if (e.kind == VIEW_AGE) {
                r = view_age_reader_for(v, h->fd, c->uid, &h->reader, &h->form);
                if (r >= 0)
                        r = mamori_age_reader_size(h->reader, &h->size);
                if (r < 0) {
                        mamori_age_reader_free(h->reader);
                        close(h->fd);
                        return r == -EACCES ? r : -EIO; /* not ours, or damaged: not readable */
                }
        }
        /* the size shown for a passphrase file is 0 (stat cannot run scrypt for every caller):
         * reads go to the view whatever the kernel thinks the size is */
        fi->direct_io = h->form == VIEW_FORM_PASSPHRASE;
        fi->fh = (uint64_t)(uintptr_t)TAKE_PTR(h);
        return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
        view *v = V();
        CALLER(c);
        int acc = fi->flags & O_ACCMODE;
        if (acc == O_RDONLY && !(fi->flags & O_TRUNC))
                return open_read(v, &c, path, fi);
        return open_write(v, &c, path, fi->flags, false, fi);
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
        view *v = V();
        CALLER(c);
        const char *base = strrchr(path, '/');
        int r = view_name_check(base ? base + 1 : path);
        if (r < 0)
                return r;
        return open_write(v, &c, path, fi->flags, true, fi);
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
        view_handle *h = (view_handle *)(uintptr_t)fi->fh;
        ssize_t n;
        if (h->node) {
                int r = view_node_stage(V(), h->node); /* read while written: the stage has it all */
                if (r < 0)
                        return r;
                n = pread(h->node->stage_fd, buf, size, off);
                return n < 0 ? -errno : (int)n;
        }
        if (h->reader) {
                n = mamori_age_reader_pread(h->reader, buf, size, (uint64_t)off);
                if (n < 0) /* tampered or truncated: an I/O error, never unauthenticated bytes */
                        return n == -EBADMSG ? -EIO : (int)n;
        } else if ((n = pread(h->fd, buf, size, off)) < 0)
                return -errno;
        h->bytes_read += n;
        return (int)n;
}

static int op_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
        view_handle *h = (view_handle *)(uintptr_t)fi->fh;
        if (!h->node || !h->node->path)
                return -EBADF;
        int n = view_node_write(V(), h->node, buf, size, (uint64_t)off);
        if (n < 0)
                return n;
        h->node->dirty = true;
        h->node->failed = false;
        return (int)n;
}

/* Commits a dirty node as c (the one closing or syncing, or at release the opener). */
static int commit_handle(view_handle *h, view_caller *c)
{
        if (!h->node || !h->node->dirty)
                return 0;
        int r = view_node_commit(V(), h->node, c);
        h->node->failed = r < 0;
        if (r < 0) /* the data stays staged; a later close or fsync may try again */
                log_warning_errno(r, "Write of \"%s\" by %s failed: %m", h->node->path ?: "?", c->name);
        return r;
}

static int op_flush(const char *path, struct fuse_file_info *fi)
{
        CALLER(c);
        return commit_handle((view_handle *)(uintptr_t)fi->fh, &c);
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
        CALLER(c);
        return commit_handle((view_handle *)(uintptr_t)fi->fh, &c);
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
        view *v = V();
        view_handle *h = (view_handle *)(uintptr_t)fi->fh;
        if (h->node) {
                /* no flush came (e.g. mmap): last chance, as the opener with the rights of now */
                view_caller c;
                if (h->node->dirty && !h->node->failed && h->node->refs == 1 &&
                    view_caller_fill(v, h->caller.uid, h->caller.gid, h->caller.pid, &c) >= 0)
                        (void)commit_handle(h, &c);
                view_node_unref(v, h->node);
        } else {
                if (h->bytes_read > 0) { /* one input record per file read (R-EV-1) */
                        view_transfer t = {.file = h->base, .stored_name = h->stored, .source_path = "",
                                           .size = h->size, .output = false, .form = h->form};
                        if (view_evidence(v, &h->caller, &t, false) < 0)
                                log_error("The input of \"%s\" by %s could not be recorded.", h->base, h->caller.name);
                }
                mamori_age_reader_free(h->reader);
                close(h->fd);
        }
        free(h);
        return 0;
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
        view *v = V();
        CALLER(c);
        view_handle *h = fi ? (view_handle *)(uintptr_t)fi->fh : NULL;
        if (!path && !(h && h->node))
                return -EBADF;
        int r = may_write(v, &c, path ?: "/(unlinked)");
        if (r < 0)
                return r;
        if (size < 0)
                return -EINVAL;
        if (h && h->node)
                return view_node_truncate(v, h->node, (uint64_t)size);
        /* by path: stage, cut, store at once */
        struct fuse_file_info tfi = {.flags = O_WRONLY | (size == 0 ? O_TRUNC : 0)};
        r = open_write(v, &c, path, tfi.flags, false, &tfi);
        if (r < 0)
                return r;
        view_handle *t = (view_handle *)(uintptr_t)tfi.fh;
        r = view_node_truncate(v, t->node, (uint64_t)size);
        if (r >= 0)
                r = view_node_commit(v, t->node, &c);
        view_node_unref(v, t->node);
        free(t);
        return r;
}

static int op_unlink(const char *path)
{
        view *v = V();
        CALLER(c);
        if (!(c.modes & WRITE_RIGHTS)) /* not with a once-only grant: it stores one file, nothing else */
                return -EACCES;
        view_node *n = view_node_find(v, path);
        view_entry e;
        int r = view_lookup(v, path, &e);
        if (r < 0)
                return r;
        _cleanup_close_ int dfd = e.dir_fd;
        if (e.kind == VIEW_DIR)
                return -EISDIR;
        if (e.kind == VIEW_NONE && !n)
                return -ENOENT;
        if (n) /* what is open stays readable (before its stored copy goes) */
                (void)view_node_stage(v, n);
        if (e.kind != VIEW_NONE && unlinkat(dfd, e.stored, 0) < 0)
                return -errno;
        if (n) /* open for writing: its content is never stored */
                view_node_detach(v, n);
        return 0;
}

static int op_mkdir(const char *path, mode_t mode)
{
        view *v = V();
        CALLER(c);
        if (!(c.modes & WRITE_RIGHTS)) /* not with a once-only grant: it stores one file, nothing else */
                return -EACCES;
        view_entry e;
        int r = view_lookup(v, path, &e);
        if (r < 0)
                return r;
        _cleanup_close_ int dfd = e.dir_fd;
        if (e.kind != VIEW_NONE || view_node_find(v, path))
                return -EEXIST;
        return mkdirat(dfd, e.base, 0700) < 0 ? -errno : 0;
}

static int op_rmdir(const char *path)
{
        view *v = V();
        CALLER(c);
        if (!(c.modes & WRITE_RIGHTS)) /* not with a once-only grant: it stores one file, nothing else */
                return -EACCES;
        view_entry e;
        int r = view_lookup(v, path, &e);
        if (r < 0)
                return r;
        _cleanup_close_ int dfd = e.dir_fd;
        if (e.kind != VIEW_DIR)
                return e.kind == VIEW_NONE ? -ENOENT : -ENOTDIR;
        return unlinkat(dfd, e.base, AT_REMOVEDIR) < 0 ? -errno : 0;
}

/* Renames a stored file or directory from a to b (both looked up). */
static int rename_stored(const view_entry *a, const view_entry *b, unsigned flags)
{
        if (a->kind == VIEW_DIR) {
                if (b->kind == VIEW_AGE || b->kind == VIEW_PLAIN)
                        return -ENOTDIR;
                return renameat(a->dir_fd, a->stored, b->dir_fd, b->base) < 0 ? -errno : 0;
        }
        if (b->kind == VIEW_DIR)
                return -EISDIR;
        char to[NAME_MAX + 8];
        snprintf(to, sizeof to, "%s%s", b->base, a->kind == VIEW_AGE ? VIEW_SUFFIX : "");
        if (a->kind == VIEW_PLAIN && strlen(to) > STRLEN(VIEW_SUFFIX) &&
            streq(to + strlen(to) - STRLEN(VIEW_SUFFIX), VIEW_SUFFIX))
                return -EINVAL; /* a plaintext "x.age" would be taken for an encrypted file */
        if (renameat(a->dir_fd, a->stored, b->dir_fd, to) < 0)
                return -errno;
        view_remove_other(b->dir_fd, b->base, a->kind);
        return 0;
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
        view *v = V();
        CALLER(c);
        if (!(c.modes & WRITE_RIGHTS)) /* not with a once-only grant: it stores one file, nothing else */
                return -EACCES;
        if (flags & ~RENAME_NOREPLACE)
                return -EINVAL; /* RENAME_EXCHANGE, RENAME_WHITEOUT: not offered */
        view_entry a, b;
        int r = view_lookup(v, from, &a);
        if (r < 0)
                return r;
        _cleanup_close_ int afd = a.dir_fd; /* closed on return; used through a */
        (void)afd;
        r = view_lookup(v, to, &b);
        if (r < 0)
                return r;
        _cleanup_close_ int bfd = b.dir_fd;
        view_node *na = view_node_find(v, from), *nb = view_node_find(v, to);
        if (a.kind == VIEW_NONE && !na)
                return -ENOENT;
        if ((flags & RENAME_NOREPLACE) && (b.kind != VIEW_NONE || nb))
                return -EEXIST;
        if (streq(from, to))
                return 0;
        if (nb && nb != na) /* what is open at the target stays readable (before it is replaced) */
                (void)view_node_stage(v, nb);
        if (a.kind != VIEW_NONE)
                r = rename_stored(&a, &b, flags);
        else if (b.kind == VIEW_DIR)
                r = -EISDIR;
        else if (b.kind != VIEW_NONE) /* only staged so far: what it replaces goes now */
                r = unlinkat(bfd, b.stored, 0) < 0 ? -errno : 0;
        if (r < 0)
                return r;
        if (nb && nb != na) /* the file open at the target is replaced: never stored */
                view_node_detach(v, nb);
        view_nodes_rename(v, from, to);
        return 0;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
        CALLER(c);
        if (!(view_caller_modes(&c) & WRITE_RIGHTS)) /* a once-only grant too: part of storing a file */
                return -EACCES;
        if (mode & (S_ISUID | S_ISGID | S_ISVTX))
                return -EPERM; /* no set-id on media (R-ATK-1) */
        return 0; /* modes are the view's, not stored */
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
        CALLER(c);
        if (!(view_caller_modes(&c) & WRITE_RIGHTS)) /* a once-only grant too: part of storing a file */
                return -EACCES;
        /* files are shown as the caller's: "changing" to that is a no-op, anything else refused */
        if ((uid != (uid_t)-1 && uid != c.uid) || (gid != (gid_t)-1 && gid != c.gid))
                return -EPERM;
        return 0;
}

static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
        view *v = V();
        CALLER(c);
        if (!(view_caller_modes(&c) & WRITE_RIGHTS)) /* a once-only grant too: part of storing a file */
                return -EACCES;
        if (!path || streq(path, "/")) /* the root, or unlinked while open: times not stored */
                return 0;
        view_entry e;
        int r = view_lookup(v, path, &e);
        if (r < 0)
                return r;
        _cleanup_close_ int dfd = e.dir_fd;
        if (e.kind == VIEW_NONE)
                return view_node_find(v, path) ? 0 : -ENOENT; /* staged only: stored at close with its time */
        return utimensat(dfd, e.stored, tv, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int op_statfs(const char *path, struct statvfs *st)
{
        CALLER(c);
        if (fstatvfs(V()->raw_fd, st) < 0)
                return -errno;
        st->f_namemax = VIEW_NAME_MAX;
        return 0;
}

/* No links, no device nodes, no FIFOs on the medium (R-ATK-1). */
static int op_symlink(const char *target, const char *path)
{
        return -EPERM;
}

static int op_link(const char *from, const char *to)
{
        return -EPERM;
}

static int op_mknod(const char *path, mode_t mode, dev_t rdev)
{
        return -EPERM;
}

static int op_readlink(const char *path, char *buf, size_t size)
{
        return -EINVAL; /* nothing in the view is a symlink */
}

const struct fuse_operations view_ops = {
        .init = op_init,
        .getattr = op_getattr,
        .access = op_access,
        .readdir = op_readdir,
        .open = op_open,
        .create = op_create,
        .read = op_read,
        .write = op_write,
        .flush = op_flush,
        .fsync = op_fsync,
        .release = op_release,
        .truncate = op_truncate,
        .unlink = op_unlink,
        .mkdir = op_mkdir,
        .rmdir = op_rmdir,
        .rename = op_rename,
        .chmod = op_chmod,
        .chown = op_chown,
        .utimens = op_utimens,
        .statfs = op_statfs,
        .symlink = op_symlink,
        .link = op_link,
        .mknod = op_mknod,
        .readlink = op_readlink,
};
