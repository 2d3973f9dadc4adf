/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Files open for writing. One written from its start in order is encrypted on the fly
 * into a temporary file on the medium and nowhere else (VIEW_CONTENT_STREAM); anything
 * else first brings the content into a plaintext stage, an unnamed file (O_TMPFILE) in
 * the root-only stage directory, so random writes, truncation and reopening work, and
 * nothing named is left behind by a crash. Commit (on flush, fsync, or a truncate
 * by path): encrypt (or copy) to ".mamori-<random>.tmp" beside the target on the
 * medium, fsync, record the transfer and wait for policyd's acknowledgement, then
 * rename into place. Any failure unlinks the temporary file: the medium never holds a
 * file without its record (R-EV-9), nor a partial one.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <sodium.h>

#include "cleanup.h"
#include "log.h"
#include "view.h"

static void sodium_freep(char **p)
{
        if (*p)
                sodium_free(*p); /* zeroes first */
}

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

/* Copies (decrypting with the organisation identities, else uid's held passphrase) the
 * stored file into the stage. */
static int load(view *v, const view_entry *e, int stage, uid_t uid)
{
        _cleanup_close_ int fd = openat(e->dir_fd, e->stored, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (e->kind == VIEW_PLAIN)
                return copy_all(fd, stage);
        int r = -EACCES; /* no identities: cannot decrypt, cannot change it either (fail closed) */
        if (v->ids) {
                mamori_age_decrypt_opts o = {.identities = v->ids, .n_identities = v->n_ids};
                r = mamori_age_decrypt_fd(fd, stage, &o);
        }
        char *pass = NULL;
        if ((r == -ENOKEY || r == -EACCES) && view_pass_get(v, uid, &pass) >= 0) {
                /* not the organisation's: a passphrase file, if the caller's passphrase opens it */
                mamori_age_decrypt_opts o = {.passphrase = pass};
                r = lseek(fd, 0, SEEK_SET) < 0 || ftruncate(stage, 0) < 0 || lseek(stage, 0, SEEK_SET) < 0
                            ? -errno
                             : mamori_age_decrypt_fd(fd, stage, &o);
                sodium_free(pass);
        }
        if (r < 0)
                return r == -EBADMSG || r == -ENOKEY ? -EIO : r;
        return 0;
}

/*
 * The feed: a write in order is copied into one of a few buffers and answered at once;
 * a thread of the node's own hands the buffers to the age writer (which encrypts on its
 * workers and writes to the medium). So the writer's next write(2) reaches the view
 * while the previous one is still being encrypted and written: without it each write
 * waits for all of that (FUSE answers one write at a time per file). An error of the
 * writer (medium full) is kept and returned by the next write or the drain, so the
 * commit never stores a file with a gap (R-EV-9).
 */
#define FEED_BUFS 4
#define FEED_BUF_MAX (1u << 20)

typedef struct view_feed {
        mamori_age_writer *w;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint8_t *buf[FEED_BUFS];
        size_t len[FEED_BUFS];
        unsigned head, count; /* next buffer to fill; buffers filled, not yet written */
        int error;
        bool stop;
} view_feed;

static void *feed_main(void *arg)
{
        view_feed *f = arg;
        pthread_mutex_lock(&f->lock);
        for (;;) {
                while (f->count == 0 && !f->stop)
                        pthread_cond_wait(&f->cond, &f->lock);
                if (f->count == 0)
                        break;
                unsigned i = (f->head + FEED_BUFS - f->count) % FEED_BUFS;
                int failed = f->error;
                bool stop = f->stop;
                pthread_mutex_unlock(&f->lock);
                int r = failed < 0 || stop ? failed : mamori_age_writer_write(f->w, f->buf[i], f->len[i]);
                pthread_mutex_lock(&f->lock);
                if (r < 0 && f->error == 0)
                        f->error = r;
                f->count--;
                pthread_cond_broadcast(&f->cond);
        }
        pthread_mutex_unlock(&f->lock);
        return NULL;
}

static view_feed *feed_free(view_feed *f)
{
        if (!f)
                return NULL;
        pthread_mutex_lock(&f->lock);
        f->stop = true; /* what is not written yet is dropped */
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
        pthread_join(f->thread, NULL);
        for (unsigned i = 0; i < FEED_BUFS; i++) {
                if (f->buf[i])
                        sodium_memzero(f->buf[i], FEED_BUF_MAX); /* plaintext */
                free(f->buf[i]);
        }
        pthread_cond_destroy(&f->cond);
        pthread_mutex_destroy(&f->lock);
        free(f);
        return NULL;
}

/* Starts the feed of w. Returns 0 or -errno. */
static int feed_new(mamori_age_writer *w, view_feed **ret)
{
        view_feed *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        f->w = w;
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->cond, NULL);
        int r = pthread_create(&f->thread, NULL, feed_main, f);
        if (r != 0) {
                pthread_cond_destroy(&f->cond);
                pthread_mutex_destroy(&f->lock);
                free(f);
                return -r;
        }
        *ret = f;
        return 0;
}

/* Queues len bytes (copied). Returns 0, or the writer's error (nothing more is queued). */
static int feed_write(view_feed *f, const uint8_t *p, size_t len)
{
        while (len > 0) {
                pthread_mutex_lock(&f->lock);
                while (f->count == FEED_BUFS && f->error == 0)
                        pthread_cond_wait(&f->cond, &f->lock);
                int r = f->error;
                pthread_mutex_unlock(&f->lock);
                if (r < 0)
                        return r;
                /* the buffer at head is free: only this thread fills it */
                if (!f->buf[f->head] && !(f->buf[f->head] = malloc(FEED_BUF_MAX)))
                        return -ENOMEM;
                size_t n = len < FEED_BUF_MAX ? len : FEED_BUF_MAX;
                memcpy(f->buf[f->head], p, n);
                f->len[f->head] = n;
                pthread_mutex_lock(&f->lock);
                f->head = (f->head + 1) % FEED_BUFS;
                f->count++;
                pthread_cond_broadcast(&f->cond);
                pthread_mutex_unlock(&f->lock);
                p += n;
                len -= n;
        }
        return 0;
}

/* Waits until everything queued is in the writer. Returns 0 or the writer's error. */
static int feed_drain(view_feed *f)
{
        pthread_mutex_lock(&f->lock);
        while (f->count > 0)
                pthread_cond_wait(&f->cond, &f->lock);
        int r = f->error;
        pthread_mutex_unlock(&f->lock);
        return r;
}

/* Drops the on-the-fly encryption and its temporary file. */
static void stream_abandon(view_node *n)
{
        if (n->sw_dir < 0)
                return;
        n->feed = feed_free(n->feed);
        n->sw = mamori_age_writer_free(n->sw);
        if (n->sw_fd >= 0)
                close(n->sw_fd);
        (void)unlinkat(n->sw_dir, n->sw_tmp, 0);
        close(n->sw_dir);
        n->sw_fd = n->sw_dir = -1;
}

/* What was written cannot be had any more: nothing of it is stored, and the writer is
 * told (fail closed, R-EV-9). Returns err. */
static int lose(view_node *n, int err)
{
        stream_abandon(n);
        (void)ftruncate(n->stage_fd, 0);
        n->content = VIEW_CONTENT_STAGE;
        n->error = err == -ENOSPC || err == -EDQUOT ? err : -EIO;
        return n->error;
}

/* True if one of the identities held opens what is encrypted to rec. */
static bool have_identity_for(view *v, const mamori_age_recipient *rec)
{
        for (size_t i = 0; i < v->n_ids; i++) {
                mamori_age_recipient r;
                if (mamori_age_identity_to_recipient(v->ids[i], &r) >= 0 &&
                    sodium_memcmp(r.public_key, rec->public_key, sizeof r.public_key) == 0)
                        return true;
        }
        return false;
}

/* Starts encrypting on the fly for a node whose content is empty and whose opener stores
 * encrypted. Without a stage copy when the identities held open the result again (else the
 * stage keeps a copy, the fallback for writes out of order). A failure only means the
 * stage is encrypted at commit, as without it. */
static void stream_start(view *v, view_node *n, int dir_fd)
{
        if (!n->encrypt || dir_fd < 0)
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
        if (fd < 0 || mamori_age_writer_new(fd, &o, &n->sw) < 0 || feed_new(n->sw, &n->feed) < 0) {
                n->sw = mamori_age_writer_free(n->sw);
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
        if (have_identity_for(v, &rec)) {
                n->content = VIEW_CONTENT_STREAM;
                n->size = 0;
        }
}

/* The content size. */
static int content_size(view_node *n, uint64_t *ret)
{
        struct stat st;
        int r = view_node_stat(n, &st);
        if (r >= 0)
                *ret = (uint64_t)st.st_size;
        return r;
}

int view_node_stat(view_node *n, struct stat *ret)
{
        if (fstat(n->stage_fd, ret) < 0)
                return -errno;
        if (n->content != VIEW_CONTENT_STAGE)
                ret->st_size = (off_t)n->size;
        return 0;
}

/* Decrypts the stream's finished temporary file into the empty stage. */
static int stage_from_temp(view *v, view_node *n)
{
        _cleanup_close_ int fd = openat(n->sw_dir, n->sw_tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (ftruncate(n->stage_fd, 0) < 0 || lseek(n->stage_fd, 0, SEEK_SET) < 0)
                return -errno;
        mamori_age_decrypt_opts o = {.identities = v->ids, .n_identities = v->n_ids};
        int r = mamori_age_decrypt_fd(fd, n->stage_fd, &o);
        uint64_t size;
        if (r >= 0 && (r = content_size(n, &size)) >= 0 && size != n->size)
                r = -EIO;
        return r;
}

int view_node_stage(view *v, view_node *n)
{
        if (n->error < 0)
                return n->error;
        int r = 0;
        if (n->content == VIEW_CONTENT_STREAM) {
                r = feed_drain(n->feed);
                if (r >= 0)
                        r = mamori_age_writer_finish(n->sw);
                if (r >= 0)
                        r = stage_from_temp(v, n);
                stream_abandon(n);
        } else if (n->content == VIEW_CONTENT_STORED) {
                view_entry e;
                r = n->path ? view_lookup(v, n->path, &e) : -ENOENT;
                if (r >= 0) {
                        _cleanup_close_ int dfd = e.dir_fd; /* closed on return; load reads through e */
                        (void)dfd;
                        if (e.kind != VIEW_AGE) /* replaced or removed meanwhile */
                                r = -ENOENT;
                        else if (ftruncate(n->stage_fd, 0) < 0 || lseek(n->stage_fd, 0, SEEK_SET) < 0)
                                r = -errno;
                        else
                                r = load(v, &e, n->stage_fd, n->uid);
                }
        }
        if (r < 0) /* the only copy could not be read back: lost, never stored (fail closed) */
                return log_error_errno(lose(n, r), "Cannot stage \"%s\": %m", n->path ?: "?");
        n->content = VIEW_CONTENT_STAGE;
        return 0;
}

/* Appends to the stream (the only copy): a medium error loses the file. */
static int stream_write(view_node *n, const void *buf, size_t len)
{
        int r = feed_write(n->feed, buf, len);
        if (r < 0)
                return lose(n, r);
        n->sw_off += len;
        n->size = n->sw_off;
        return (int)len;
}

int view_node_write(view *v, view_node *n, const void *buf, size_t len, uint64_t off)
{
        if (n->error < 0)
                return n->error;
        uint64_t size;
        int r = content_size(n, &size);
        if (r < 0)
                return r;
        if (size == 0 && off == 0 && !n->sw && n->path) { /* e.g. dd: its first close stored it empty */
                view_entry e;
                if (view_lookup(v, n->path, &e) >= 0) {
                        stream_start(v, n, e.dir_fd);
                        close(e.dir_fd);
                }
        }
        if (n->content == VIEW_CONTENT_STREAM && off == n->sw_off)
                return stream_write(n, buf, len);
        r = view_node_stage(v, n); /* out of order, or after a commit: the stage takes over */
        if (r < 0)
                return r;
        ssize_t k = pwrite(n->stage_fd, buf, len, (off_t)off);
        if (k < 0)
                return -errno;
        if (n->sw && (off != n->sw_off || feed_write(n->feed, buf, (size_t)k) < 0))
                stream_abandon(n); /* not in order, or the medium failed: the stage has it */
        else if (n->sw)
                n->sw_off += (size_t)k;
        return (int)k;
}

int view_node_truncate(view *v, view_node *n, uint64_t size)
{
        uint64_t cur;
        if (size == 0) { /* whatever was there, and whatever went wrong with it, is gone */
                stream_abandon(n);
                n->content = VIEW_CONTENT_STAGE;
                n->error = 0;
        } else if (n->error < 0)
                return n->error;
        else if (content_size(n, &cur) >= 0 && cur == size && n->content != VIEW_CONTENT_STAGE) {
                n->dirty = true; /* the size it has (cp does this after the last write): kept streaming */
                return 0;
        } else {
                int r = view_node_stage(v, n);
                if (r < 0)
                        return r;
                stream_abandon(n);
        }
        if (ftruncate(n->stage_fd, (off_t)size) < 0)
                return -errno;
        n->dirty = true;
        return 0;
}

void view_node_detach(view *v, view_node *n)
{
        (void)view_node_stage(v, n); /* a failure leaves it unreadable (n->error) */
        stream_abandon(n);
        free(n->path);
        n->path = NULL;
}

/* Finishes the on-the-fly encryption if it holds exactly the content. Returns 0 with the
 * temporary file complete and synced (n->sw_tmp in n->sw_dir, still held), or -errno. */
static int stream_finish(view_node *n, uint64_t size)
{
        if (!n->sw)
                return -ENOENT;
        int r = n->sw_off == size ? feed_drain(n->feed) : -ESPIPE;
        if (r >= 0)
                r = mamori_age_writer_finish(n->sw);
        if (r >= 0 && fsync(n->sw_fd) < 0)
                r = -errno;
        if (r >= 0 && close(TAKE_FD(n->sw_fd)) < 0)
                r = -errno;
        n->feed = feed_free(n->feed);
        n->sw = mamori_age_writer_free(n->sw);
        return r;
}

int view_node_open(view *v, const char *path, const view_entry *e, bool truncate, const view_caller *c,
                   view_node **ret)
{
        view_node *n = view_node_find(v, path);
        if (n) {
                if (truncate) {
                        int r = view_node_truncate(v, n, 0);
                        if (r < 0)
                                return r;
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
                int r = load(v, e, stage, c->uid);
                if (r < 0)
                        return r;
        }
        *nn = (view_node){.path = TAKE_PTR(p), .refs = 1, .stage_fd = TAKE_FD(stage),
                          .dirty = truncate || !existing, .uid = c->uid, .pid = c->pid, .next = v->nodes,
                          .encrypt = view_caller_form(c) == VIEW_FORM_AGE_ORG, .sw_fd = -1, .sw_dir = -1};
        if (view_form_for(c->modes) == VIEW_FORM_NONE && c->once_modes) { /* to be stored under this grant */
                nn->open_once = true;
                memcpy(nn->open_once_id, c->once_id, MAMORI_GRANT_ID_LEN);
        }
        if (truncate || !existing)
                stream_start(v, nn, e->dir_fd);
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
        stream_abandon(n);
        close(n->stage_fd);
        free(n->path);
        free(n);
}

/* The stream's temporary file stays in the directory it was opened in (sw_dir): the
 * commit moves it into the new one (one filesystem). */
void view_nodes_rename(view *v, const char *from, const char *to)
{
        size_t fl = strlen(from);
        for (view_node *n = v->nodes; n; n = n->next) {
                if (!n->path || strncmp(n->path, from, fl) != 0 || (n->path[fl] && n->path[fl] != '/'))
                        continue;
                char *np;
                if (asprintf(&np, "%s%s", to, n->path + fl) < 0) {
                        view_node_detach(v, n); /* cannot follow the rename: never committed */
                        continue;
                }
                free(n->path);
                n->path = np;
        }
}

/* Writes the stage to a new temporary file in dir_fd. Returns 0 with its name, or -errno
 * (the temporary file already removed). */
static int write_temp(view *v, int stage, int dir_fd, view_form form, const char *pass, char tmp[static 64])
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
        } else if (form == VIEW_FORM_PASSPHRASE) {
                /* age's own work factor (scrypt log2 N 18, about 1 s), never lower */
                mamori_age_encrypt_opts o = {.passphrase = pass, .scrypt_log2n = MAMORI_AGE_SCRYPT_LOG2N_DEFAULT};
                r = !pass ? -EIO : lseek(stage, 0, SEEK_SET) < 0 ? -errno : mamori_age_encrypt_fd(stage, fd, &o);
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

/* The temporary file to put in place: the finished stream, else the content encrypted
 * (or copied) now. Returns 0 with its directory in *ret_dir (n->sw_dir, or dfd) and name in
 * tmp, or -errno (nothing left on the medium). */
static int commit_temp(view *v, view_node *n, int dfd, view_form form, const char *pass, int *ret_dir,
                       char tmp[static 64])
{
        uint64_t size;
        int r = content_size(n, &size);
        if (r < 0)
                return r;
        if (form == VIEW_FORM_AGE_ORG && n->sw) {
                r = stream_finish(n, size);
                if (r >= 0) { /* encrypted while it was written */
                        snprintf(tmp, 64, "%s", n->sw_tmp);
                        *ret_dir = n->sw_dir;
                        return 0;
                }
                if (n->content == VIEW_CONTENT_STREAM) /* the only copy, and the medium failed it */
                        return lose(n, r);
                stream_abandon(n);
        }
        r = view_node_stage(v, n); /* plaintext now, or the stream was dropped: from the stage */
        if (r < 0)
                return r;
        stream_abandon(n);
        *ret_dir = dfd;
        return write_temp(v, n->stage_fd, dfd, form, pass, tmp);
}

/* After a commit that failed once its temporary file was made: the content stays for a
 * retry (staged again from the stream's file if that was the only copy), the file goes. */
static void commit_undo(view *v, view_node *n, int tmp_dir, const char *tmp)
{
        if (n->content == VIEW_CONTENT_STREAM && n->sw_dir == tmp_dir && stage_from_temp(v, n) >= 0)
                n->content = VIEW_CONTENT_STAGE;
        else if (n->content == VIEW_CONTENT_STREAM)
                (void)lose(n, -EIO);
        (void)unlinkat(tmp_dir, tmp, 0);
        stream_abandon(n);
}

/* The form of this commit by c, and the once-only grant it stores under: c's lasting rights;
 * else the grant this file already used (a later commit of the same transfer: named, not used
 * again); else c's unused once-only grant (used up with the record). Sets *ret_why when the
 * commit is refused. */
static view_form commit_form(view *v, view_node *n, const view_caller *c, view_transfer *t, const char **ret_why)
{
        view_form f = view_form_for(c->modes);
        if (f == VIEW_FORM_NONE && n->once_used && n->once_uid == c->uid) {
                f = view_form_for(n->once_modes);
                t->grant_id = n->once_id;
        } else if (f == VIEW_FORM_NONE && c->once_modes) {
                f = view_form_for(c->once_modes);
                t->grant_id = c->once_id;
                t->consume = true;
        }
        *ret_why = f != VIEW_FORM_NONE ? NULL
                   /* opened under a once-only grant another file has used up since */
                   : n->open_once && view_once_is_used(v, n->open_once_id) ? "once-only-grant-used"
                                                                          : "no-write-right";
        return f;
}

/* After policyd refused the once-only grant (used by another file, or no longer valid):
 * nobody here gets it again, and the refusal is recorded. */
static int once_refused(view *v, const view_caller *c, const view_transfer *t, int r)
{
        view_once_used(v, t->grant_id);
        refused(v, c, t->file, t->form, r == -EEXIST ? "once-only-grant-used" : "once-only-grant-refused");
        return -EACCES;
}

int view_node_commit(view *v, view_node *n, const view_caller *c)
{
        if (!n->path) /* unlinked or replaced while open: nothing to store */
                return 0;
        if (n->error < 0) /* what was written is lost: nothing is stored, the writer is told */
                return n->error;
        view_entry e;
        int r = view_lookup(v, n->path, &e);
        if (r < 0)
                return r;
        _cleanup_close_ int dfd = e.dir_fd;
        view_transfer t = {.file = e.base, .output = true};
        const char *why;
        view_form form = commit_form(v, n, c, &t, &why);
        t.form = form;
        if (why) { /* R-OUT-2/3, R-PERM-3: no right, no output */
                refused(v, c, e.base, form, why);
                return -EACCES;
        }
        if (e.kind == VIEW_DIR)
                return -EISDIR;
        uint64_t size;
        r = content_size(n, &size);
        if (r < 0)
                return r;
        _cleanup_(sodium_freep) char *pass = NULL;
        if (form == VIEW_FORM_PASSPHRASE && view_pass_get(v, c->uid, &pass) < 0) {
                /* forgotten or expired since the open: nothing to encrypt to, refused (R-OUT-1) */
                refused(v, c, e.base, form, "no-passphrase");
                return -EACCES;
        }
        bool age = form == VIEW_FORM_AGE_ORG || form == VIEW_FORM_PASSPHRASE;
        char tmp[64], stored[NAME_MAX + 8], source[PATH_MAX];
        int tmp_dir;
        r = commit_temp(v, n, dfd, form, pass, &tmp_dir, tmp);
        if (r < 0)
                return log_error_errno(r, "Cannot store \"%s\" on the medium: %m", e.base);
        snprintf(stored, sizeof stored, "%s%s", e.base, age ? VIEW_SUFFIX : "");
        view_source_path(v, c->pid, e.base, source, sizeof source);
        if (!source[0] && c->pid != n->pid)
                view_source_path(v, n->pid, e.base, source, sizeof source);
        t.stored_name = stored;
        t.source_path = source;
        t.size = size;
        r = view_evidence(v, c, &t, false);
        if (r < 0) { /* not recorded (or the grant refused): the file does not stay (R-EV-9) */
                commit_undo(v, n, tmp_dir, tmp);
                return r == -EIO ? -EIO : once_refused(v, c, &t, r);
        }
        if (t.consume) { /* this file's later commits are the same transfer */
                view_once_used(v, t.grant_id);
                n->once_used = true;
                memcpy(n->once_id, t.grant_id, MAMORI_GRANT_ID_LEN);
                n->once_uid = c->uid;
                n->once_modes = c->once_modes;
        }
        if (renameat(tmp_dir, tmp, dfd, stored) < 0) {
                r = -errno;
                commit_undo(v, n, tmp_dir, tmp);
                return log_error_errno(r, "Cannot put \"%s\" in place: %m", stored);
        }
        view_remove_other(dfd, e.base, age ? VIEW_AGE : VIEW_PLAIN);
        if (n->content == VIEW_CONTENT_STREAM)
                n->content = VIEW_CONTENT_STORED; /* the stored file is the only copy now */
        if (n->sw_dir >= 0) { /* the stream's file is in place: forgotten, not removed */
                close(n->sw_dir);
                n->sw_dir = -1;
        }
        n->dirty = false;
        return 0;
}
