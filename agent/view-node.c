/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Files open for writing. Each is staged in plaintext in an unnamed file (O_TMPFILE)
 * in the root-only stage directory, so random writes, truncation and reopening work,
 * and nothing named is left behind by a crash. Commit (on flush, fsync, or a truncate
 * by path): encrypt (or copy) to ".mamori-<random>.tmp" beside the target on the
 * medium, fsync, record the transfer and wait for policyd's acknowledgement, then
 * rename into place. Any failure unlinks the temporary file: the medium never holds a
 * file without its record (R-EV-9), nor a partial one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <sodium.h>

#include "cleanup.h"
#include "log.h"
#include "view.h"

view_node *view_node_find(view *v, const char *path)
{
        for (view_node *n = v->nodes; n; n = n->next)
                if (n->path && streq(n->path, path))
                        return n;
        return NULL;
}

static int stage_open(view *v)
{
        int fd = openat(v->stage_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR))
                return fd < 0 ? -errno : fd;
        /* no O_TMPFILE on this filesystem: a random name, unlinked at once */
        char name[40];
        snprintf(name, sizeof name, "stage-%08x%08x", randombytes_random(), randombytes_random());
        fd = openat(v->stage_fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        (void)unlinkat(v->stage_fd, name, 0);
        return fd;
}

static int copy_all(int in, int out)
{
        if (lseek(in, 0, SEEK_SET) < 0)
                return -errno;
        for (;;) {
                ssize_t n = sendfile(out, in, NULL, 1 << 20);
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return 0;
        }
}

/* Copies (decrypting) the stored file into the stage. */
static int load(view *v, const view_entry *e, int stage)
{
        _cleanup_close_ int fd = openat(e->dir_fd, e->stored, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (e->kind == VIEW_PLAIN)
                return copy_all(fd, stage);
        if (!v->ids) /* cannot decrypt: cannot change it either (fail closed) */
                return -EACCES;
        mamori_age_decrypt_opts o = {.identities = v->ids, .n_identities = v->n_ids};
        int r = mamori_age_decrypt_fd(fd, stage, &o);
        if (r < 0)
                return r == -EBADMSG || r == -ENOKEY ? -EIO : r;
        return 0;
}

void view_node_stream_abandon(view_node *n)
{
        if (!n->sw)
                return;
        n->sw = mamori_age_writer_free(n->sw);
        close(n->sw_fd);
        (void)unlinkat(n->sw_dir, n->sw_tmp, 0);
        close(n->sw_dir);
        n->sw_fd = n->sw_dir = -1;
}

/* Starts encrypting on the fly for a new, empty node whose writer stores encrypted. A
 * failure only means the stage is encrypted at commit, as without it. */
static void stream_start(view *v, view_node *n, int dir_fd, const view_caller *c)
{
        if (view_form_for(c->modes) != VIEW_FORM_AGE_ORG || dir_fd < 0)
                return;
        pthread_mutex_lock(&v->lock);
        mamori_age_recipient rec = v->recipient;
        bool have = v->have_recipient;
        pthread_mutex_unlock(&v->lock);
        if (!have)
                return;
        int dfd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return;
        snprintf(n->sw_tmp, sizeof n->sw_tmp, VIEW_TEMP_PREFIX "%08x%08x.tmp", randombytes_random(),
                 randombytes_random());
        int fd = openat(dfd, n->sw_tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        mamori_age_encrypt_opts o = {.recipients = &rec, .n_recipients = 1};
        if (fd < 0 || mamori_age_writer_new(fd, &o, &n->sw) < 0) {
                if (fd >= 0) {
                        close(fd);
                        (void)unlinkat(dfd, n->sw_tmp, 0);
                }
                close(dfd);
                n->sw = NULL;
                return;
        }
        n->sw_fd = fd;
        n->sw_dir = dfd;
        n->sw_off = 0;
}

void view_node_wrote(view_node *n, const void *buf, size_t len, uint64_t off)
{
        if (!n->sw)
                return;
        if (off != n->sw_off || mamori_age_writer_write(n->sw, buf, len) < 0) {
                view_node_stream_abandon(n); /* not in order, or the medium failed: the stage has it */
                return;
        }
        n->sw_off += len;
}

/* Finishes the on-the-fly encryption if it holds exactly the stage. Returns 0 with the
 * temporary file complete and synced (name in n->sw_tmp, in the node's directory), or
 * -errno (abandoned). */
static int stream_finish(view_node *n, uint64_t size)
{
        if (!n->sw)
                return -ENOENT;
        int r = n->sw_off == size ? mamori_age_writer_finish(n->sw) : -ESPIPE;
        if (r >= 0 && fsync(n->sw_fd) < 0)
                r = -errno;
        if (r < 0) {
                view_node_stream_abandon(n);
                return r;
        }
        n->sw = mamori_age_writer_free(n->sw);
        close(n->sw_fd);
        close(n->sw_dir);
        n->sw_fd = n->sw_dir = -1;
        return 0;
}

int view_node_open(view *v, const char *path, const view_entry *e, bool truncate, const view_caller *c,
                   view_node **ret)
{
        view_node *n = view_node_find(v, path);
        if (n) {
                if (truncate) {
                        if (ftruncate(n->stage_fd, 0) < 0)
                                return -errno;
                        view_node_stream_abandon(n);
                        n->dirty = true;
                }
                n->refs++;
                *ret = n;
                return 0;
        }
        _cleanup_free_ view_node *nn = calloc(1, sizeof *nn);
        _cleanup_free_ char *p = strdup(path);
        if (!nn || !p)
                return -ENOMEM;
        _cleanup_close_ int stage = stage_open(v);
        if (stage < 0)
                return log_error_errno(stage, "Cannot make a staging file: %m");
        bool existing = e->kind == VIEW_AGE || e->kind == VIEW_PLAIN;
        if (existing && !truncate) {
                int r = load(v, e, stage);
                if (r < 0)
                        return r;
        }
        *nn = (view_node){.path = TAKE_PTR(p), .refs = 1, .stage_fd = TAKE_FD(stage),
                          .dirty = truncate || !existing, .uid = c->uid, .pid = c->pid, .next = v->nodes,
                          .sw_fd = -1, .sw_dir = -1};
        if (truncate || !existing)
                stream_start(v, nn, e->dir_fd, c);
        v->nodes = nn;
        *ret = TAKE_PTR(nn);
        return 0;
}

void view_node_unref(view *v, view_node *n)
{
        if (--n->refs > 0)
                return;
        for (view_node **p = &v->nodes; *p; p = &(*p)->next)
                if (*p == n) {
                        *p = n->next;
                        break;
                }
        view_node_stream_abandon(n);
        close(n->stage_fd);
        free(n->path);
        free(n);
}

void view_nodes_rename(view *v, const char *from, const char *to)
{
        size_t fl = strlen(from);
        for (view_node *n = v->nodes; n; n = n->next) {
                if (!n->path || strncmp(n->path, from, fl) != 0 || (n->path[fl] && n->path[fl] != '/'))
                        continue;
                view_node_stream_abandon(n); /* its temporary file is in the old directory */
                char *np;
                if (asprintf(&np, "%s%s", to, n->path + fl) < 0) {
                        free(n->path); /* cannot follow the rename: the node is detached, never committed */
                        n->path = NULL;
                        continue;
                }
                free(n->path);
                n->path = np;
        }
}

/* Writes the stage to a new temporary file in dir_fd. Returns 0 with its name, or -errno
 * (the temporary file already removed). */
static int write_temp(view *v, int stage, int dir_fd, view_form form, char tmp[static 64])
{
        snprintf(tmp, 64, VIEW_TEMP_PREFIX "%08x%08x.tmp", randombytes_random(), randombytes_random());
        _cleanup_close_ int fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        int r;
        if (form == VIEW_FORM_AGE_ORG) {
                pthread_mutex_lock(&v->lock);
                mamori_age_recipient rec = v->recipient;
                bool have = v->have_recipient;
                pthread_mutex_unlock(&v->lock);
                mamori_age_encrypt_opts o = {.recipients = &rec, .n_recipients = 1};
                r = !have ? -EIO : lseek(stage, 0, SEEK_SET) < 0 ? -errno : mamori_age_encrypt_fd(stage, fd, &o);
        } else
                r = copy_all(stage, fd);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && close(TAKE_FD(fd)) < 0)
                r = -errno;
        if (r < 0)
                (void)unlinkat(dir_fd, tmp, 0);
        return r;
}

/* A refusal record for output; its result does not change the refusal. */
static void refused(view *v, const view_caller *c, const char *base, view_form form, const char *why)
{
        view_transfer t = {.file = base, .output = true, .form = form, .reason = why, .source_path = ""};
        (void)view_evidence(v, c, &t, true);
}

int view_node_commit(view *v, view_node *n, const view_caller *c)
{
        if (!n->path) /* unlinked or replaced while open: nothing to store */
                return 0;
        view_entry e;
        int r = view_lookup(v, n->path, &e);
        if (r < 0)
                return r;
        _cleanup_close_ int dfd = e.dir_fd;
        view_form form = view_form_for(c->modes);
        if (form == VIEW_FORM_NONE || form == VIEW_FORM_PASSPHRASE) { /* R-OUT-2/3: no right, no output */
                refused(v, c, e.base, form, form == VIEW_FORM_NONE ? "no-write-right" : "passphrase-not-built");
                return -EACCES;
        }
        if (e.kind == VIEW_DIR)
                return -EISDIR;
        struct stat st;
        if (fstat(n->stage_fd, &st) < 0)
                return -errno;
        char tmp[64], stored[NAME_MAX + 8], source[PATH_MAX];
        if (form == VIEW_FORM_AGE_ORG && stream_finish(n, (uint64_t)st.st_size) >= 0)
                snprintf(tmp, sizeof tmp, "%s", n->sw_tmp); /* encrypted while it was written */
        else {
                view_node_stream_abandon(n);
                r = write_temp(v, n->stage_fd, dfd, form, tmp);
                if (r < 0)
                        return log_error_errno(r, "Cannot store \"%s\" on the medium: %m", e.base);
        }
        snprintf(stored, sizeof stored, "%s%s", e.base, form == VIEW_FORM_AGE_ORG ? VIEW_SUFFIX : "");
        view_source_path(v, c->pid, e.base, source, sizeof source);
        if (!source[0] && c->pid != n->pid)
                view_source_path(v, n->pid, e.base, source, sizeof source);
        view_transfer t = {.file = e.base, .stored_name = stored, .source_path = source, .size = (uint64_t)st.st_size,
                           .output = true, .form = form};
        r = view_evidence(v, c, &t, false);
        if (r < 0) { /* not recorded: the file does not stay (R-EV-9) */
                (void)unlinkat(dfd, tmp, 0);
                return -EIO;
        }
        if (renameat(dfd, tmp, dfd, stored) < 0) {
                r = -errno;
                (void)unlinkat(dfd, tmp, 0);
                return log_error_errno(r, "Cannot put \"%s\" in place: %m", stored);
        }
        view_remove_other(dfd, e.base, form == VIEW_FORM_AGE_ORG ? VIEW_AGE : VIEW_PLAIN);
        n->dirty = false;
        return 0;
}
