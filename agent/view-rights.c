/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The view's rights: policyd's decision for the medium (MEDIA_DECIDE, asked as root,
 * the agent's role), the organisation keys, and what one caller may do now, by user
 * name and the groups of getgrouplist (the same NSS view policyd decides with).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "client.h"
#include "log.h"
#include "orgkeys.h"
#include "view.h"

#define POLICYD_TIMEOUT_S 5
#define GROUPS_MAX 256

const char *view_form_to_string(view_form f)
{
        static const char *const names[] = {"age-org", "plaintext", "age-passphrase", "none"};
        return f >= 0 && f <= VIEW_FORM_NONE ? names[f] : "none";
}

view_form view_form_for(uint8_t modes)
{
        if (modes & MAMORI_MODE_WRITE_ENCRYPTED)
                return VIEW_FORM_AGE_ORG;
        if (modes & MAMORI_MODE_WRITE_PLAIN)
                return VIEW_FORM_PLAIN;
        if (modes & MAMORI_MODE_WRITE_PASSPHRASE)
                return VIEW_FORM_PASSPHRASE;
        return VIEW_FORM_NONE;
}

view_form view_caller_form(const view_caller *c)
{
        view_form f = view_form_for(c->modes);
        return f != VIEW_FORM_NONE ? f : view_form_for(c->once_modes);
}

static int64_t now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int ask(view *v, mamori_msg **ret)
{
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL;
        int r = mamori_msg_new(MAMORI_MSG_MEDIA_DECIDE, 0, &req);
        if (r < 0)
                return r;
        mamori_msg_put_str(req, MAMORI_F_DEV_VENDOR, v->vendor);
        mamori_msg_put_str(req, MAMORI_F_DEV_PRODUCT, v->product);
        mamori_msg_put_str(req, MAMORI_F_DEV_SERIAL, v->serial);
        mamori_msg_put_str(req, MAMORI_F_DEV_PORT, v->port);
        mamori_msg_put_str(req, MAMORI_F_HOST, v->host);
        mamori_msg_put_str(req, MAMORI_F_DEV_KIND, v->kind); /* an optical disc: the optical rule */
        if (v->dev_size)
                mamori_msg_put_u64(req, MAMORI_F_DEV_SIZE, v->dev_size);
        if (v->fs_uuid && v->fs_uuid[0])
                mamori_msg_put_str(req, MAMORI_F_DEV_FS_UUID, v->fs_uuid);
        _cleanup_close_ int fd = mamori_client_connect(v->socket_path);
        if (fd < 0)
                return fd;
        struct timeval tv = {.tv_sec = POLICYD_TIMEOUT_S};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        return mamori_client_call(fd, req, ret);
}

/* Parses an answer into a fresh rights struct. Returns 0 or -EBADMSG. */
static int parse(const mamori_msg *m, view_rights *ret)
{
        uint8_t verdict;
        const char *no = "";
        if (mamori_msg_get_u8(m, MAMORI_F_VERDICT, &verdict) < 0 || verdict >= _MAMORI_VERDICT_MAX)
                return -EBADMSG;
        (void)mamori_msg_get_str(m, MAMORI_F_MEDIA_NO, MAMORI_MEDIA_NO_MAX, &no);
        ret->next_change = INT64_MAX;
        if (mamori_msg_get_i64(m, MAMORI_F_NEXT_CHANGE, &ret->next_change) == -EBADMSG)
                return -EBADMSG;
        ret->verdict = verdict;
        snprintf(ret->medium, sizeof ret->medium, "%s", no);
        ret->n = 0;
        for (size_t i = 0; i < m->n_fields; i++) {
                if (m->fields[i].tag != MAMORI_F_ENTRY)
                        continue;
                if (ret->n == VIEW_ENTRIES_MAX) /* more rights than we keep: the rest are not granted (fail closed) */
                        break;
                if (mamori_entry_decode(m->fields[i].data, m->fields[i].len, &ret->entries[ret->n]) < 0)
                        return -EBADMSG;
                ret->n++;
        }
        return 0;
}

int view_rights_refresh(view *v)
{
        _cleanup_(mamori_msg_freep) mamori_msg *ans = NULL;
        _cleanup_free_ view_rights *nr = calloc(1, sizeof *nr);
        if (!nr)
                return -ENOMEM;
        nr->verdict = -1;
        nr->next_change = INT64_MAX;
        int r = ask(v, &ans);
        if (r >= 0 && ans->status != MAMORI_OK)
                r = log_warning_errno(EIO, "policyd refused the decision: %s", mamori_status_to_string(ans->status));
        if (r >= 0)
                r = parse(ans, nr);
        if (r < 0) { /* no answer: nothing is allowed until one comes (fail closed) */
                nr->verdict = -1;
                nr->n = 0;
                nr->next_change = INT64_MAX;
        }
        pthread_mutex_lock(&v->lock);
        v->rights = *nr;
        pthread_mutex_unlock(&v->lock);
        return r;
}

int view_keys_load(view *v, bool identities)
{
        mamori_age_recipient rec;
        int r = mamori_orgkeys_recipient(v->keys_dir, &rec);
        pthread_mutex_lock(&v->lock);
        if (r >= 0)
                v->recipient = rec;
        v->have_recipient = r >= 0; /* no recipient: encrypted output fails (fail closed) */
        pthread_mutex_unlock(&v->lock);
        if (r < 0)
                log_error_errno(r, "No organisation recipient in %s: encrypted writes will fail: %m", v->keys_dir);
        if (identities) {
                mamori_age_identity **ids = NULL;
                size_t n = 0;
                int k = mamori_orgkeys_identities(v->keys_dir, &ids, &n);
                if (k < 0) /* none held: encrypted files cannot be read (fail closed) */
                        log_error_errno(k, "Cannot read the organisation identities in %s: %m", v->keys_dir);
                else {
                        mamori_age_identities_free(v->ids, v->n_ids);
                        v->ids = ids;
                        v->n_ids = n;
                }
                r = r < 0 ? r : k;
        }
        return r;
}

void view_medium(view *v, char ret[static MAMORI_MEDIA_NO_MAX + 1])
{
        pthread_mutex_lock(&v->lock);
        snprintf(ret, MAMORI_MEDIA_NO_MAX + 1, "%s", v->rights.medium[0] ? v->rights.medium : v->medium_arg);
        pthread_mutex_unlock(&v->lock);
}

/* True if the user name or one of the groups is entry's subject. */
static bool entry_matches(const mamori_entry *e, const char *user, char groups[][MAMORI_NAME_MAX + 1], size_t n)
{
        if (e->kind == MAMORI_SUBJECT_ANY)
                return true;
        if (e->kind == MAMORI_SUBJECT_USER)
                return streq(e->subject, user);
        if (e->kind == MAMORI_SUBJECT_GROUP)
                for (size_t i = 0; i < n; i++)
                        if (streq(e->subject, groups[i]))
                                return true;
        return false;
}

/* The caller's groups' names. Returns the count, or -EACCES. */
static int group_names(const struct passwd *pw, char ret[][MAMORI_NAME_MAX + 1], size_t max)
{
        gid_t gids[GROUPS_MAX];
        int n = GROUPS_MAX;
        if (getgrouplist(pw->pw_name, pw->pw_gid, gids, &n) < 0)
                return -EACCES; /* more groups than we look at: decide nothing for them (fail closed) */
        size_t k = 0;
        for (int i = 0; i < n && k < max; i++) {
                struct group gr, *res = NULL;
                char buf[4096];
                if (getgrgid_r(gids[i], &gr, buf, sizeof buf, &res) == 0 && res &&
                    strlen(res->gr_name) <= MAMORI_NAME_MAX)
                        snprintf(ret[k++], MAMORI_NAME_MAX + 1, "%s", res->gr_name);
        }
        return (int)k;
}

/* True if id is in the used ring (v->lock held). */
static bool used_locked(view *v, const uint8_t id[static MAMORI_GRANT_ID_LEN])
{
        size_t n = v->n_used < VIEW_USED_MAX ? v->n_used : VIEW_USED_MAX;
        for (size_t i = 0; i < n; i++)
                if (memcmp(v->used[i], id, MAMORI_GRANT_ID_LEN) == 0)
                        return true;
        return false;
}

void view_once_used(view *v, const uint8_t id[static MAMORI_GRANT_ID_LEN])
{
        pthread_mutex_lock(&v->lock);
        /* a full ring forgets the oldest: policyd still refuses its second use (fail closed) */
        if (!used_locked(v, id))
                memcpy(v->used[v->n_used++ % VIEW_USED_MAX], id, MAMORI_GRANT_ID_LEN);
        pthread_mutex_unlock(&v->lock);
}

bool view_once_is_used(view *v, const uint8_t id[static MAMORI_GRANT_ID_LEN])
{
        pthread_mutex_lock(&v->lock);
        bool r = used_locked(v, id);
        pthread_mutex_unlock(&v->lock);
        return r;
}

/* Fills c->modes, and c->once_* with one unused once-only grant with a write mode (one
 * with write-encrypted first). A once-only grant's read mode is not used: the view uses
 * a grant up only by storing a file (fail closed). */
static void modes_for(view *v, view_caller *c, char groups[][MAMORI_NAME_MAX + 1], size_t n)
{
        int64_t now = now_us();
        pthread_mutex_lock(&v->lock);
        const view_rights *r = &v->rights;
        if (r->verdict == MAMORI_VERDICT_EXEMPT || r->verdict == MAMORI_VERDICT_AUDIT)
                c->modes = MAMORI_MODE_ALL; /* media control off or audit-only: not enforced (R-EXC-1) */
        else if (r->verdict == MAMORI_VERDICT_ALLOWED)
                for (size_t i = 0; i < r->n; i++) {
                        const mamori_entry *e = &r->entries[i];
                        if (e->until_us <= now || !entry_matches(e, c->name, groups, n))
                                continue;
                        if (!e->once) {
                                c->modes |= e->modes;
                                continue;
                        }
                        uint8_t w = e->modes & (MAMORI_MODE_WRITE_ENCRYPTED | MAMORI_MODE_WRITE_PASSPHRASE |
                                                MAMORI_MODE_WRITE_PLAIN);
                        /* the first one, or the first that encrypts */
                        bool better = !c->once_modes || ((w & MAMORI_MODE_WRITE_ENCRYPTED) &&
                                                         !(c->once_modes & MAMORI_MODE_WRITE_ENCRYPTED));
                        if (!w || !better || used_locked(v, e->id))
                                continue;
                        c->once_modes = w;
                        memcpy(c->once_id, e->id, MAMORI_GRANT_ID_LEN);
                }
        pthread_mutex_unlock(&v->lock);
}

int view_caller_get(view *v, view_caller *c)
{
        if (atomic_exchange(&v->reload_ids, false)) /* after a reload: a rotated key opens new files */
                (void)view_keys_load(v, true);
        struct fuse_context *ctx = fuse_get_context();
        return view_caller_fill(v, ctx->uid, ctx->gid, ctx->pid, c);
}

int view_caller_fill(view *v, uid_t uid, gid_t gid, pid_t pid, view_caller *c)
{
        *c = (view_caller){.uid = uid, .gid = gid, .pid = pid};
        struct passwd pw, *res = NULL;
        char buf[4096];
        if (getpwuid_r(c->uid, &pw, buf, sizeof buf, &res) != 0 || !res || strlen(res->pw_name) > MAMORI_NAME_MAX)
                return -EACCES; /* a caller without a name has no rights (fail closed) */
        snprintf(c->name, sizeof c->name, "%s", res->pw_name);
        char groups[64][MAMORI_NAME_MAX + 1];
        int n = group_names(res, groups, ELEMENTSOF(groups));
        if (n < 0)
                return n;
        modes_for(v, c, groups, n);
        return 0;
}
