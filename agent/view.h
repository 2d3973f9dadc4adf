/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-view: the FUSE media view of one registered medium (docs/design.md "Media
 * view"). The raw filesystem is mounted root-only by the agent; the view serves it at
 * a path users see and decides every operation by the caller's rights, which it asks
 * policyd for itself (MEDIA_DECIDE). Files written are encrypted on the fly to a
 * temporary file on the medium while written in order, else staged in a root-only
 * directory and encrypted to the organisation recipient (or stored as plaintext only
 * for a write-plain right without an encrypting one) when the writer closes them, recorded
 * (EVIDENCE_SUBMIT, acknowledged), and only then renamed into place (R-OUT-1..3,
 * R-EV-1, R-EV-2, R-EV-9).
 *
 * Files: view-main.c (arguments, start, the rights thread), view-rights.c (policyd's
 * decision, the caller's modes), view-evidence.c (records), view-fs.c (names and the
 * raw tree), view-node.c (staged files and their commit), view-ops.c (FUSE operations).
 * The FUSE loop is single-threaded: operations never run concurrently, so nodes, the
 * size cache and the policyd calls need no locks; only the rights (refreshed by a
 * thread) are behind a mutex, and a stream's writer is fed by a thread of its own
 * (view-node.c, "feed"), touched by the FUSE thread only once that has drained.
 */
#pragma once

#define FUSE_USE_VERSION 31

#include <fuse.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "age.h"
#include "grant.h"

#define VIEW_ENTRIES_MAX 256
#define VIEW_SUFFIX ".age"
#define VIEW_TEMP_PREFIX ".mamori-" /* reserved: temporary files on the medium */
#define VIEW_NAME_MAX (NAME_MAX - 4) /* room for ".age" */
#define VIEW_USED_MAX 64 /* once-only grants this view used, remembered until policyd's answer drops them */

/* policyd's answer for this medium. */
typedef struct view_rights {
        int verdict; /* mamori_verdict, or -1: no answer (nothing allowed) */
        char medium[MAMORI_MEDIA_NO_MAX + 1];
        int64_t next_change; /* µs, INT64_MAX none */
        size_t n;
        mamori_entry entries[VIEW_ENTRIES_MAX];
} view_rights;

typedef struct view_node view_node;
typedef struct view_pass view_pass;

typedef struct view {
        int raw_fd, stage_fd;
        const char *raw_dir, *mountpoint, *socket_path, *keys_dir;
        char host[256];
        const char *vendor, *product, *serial, *port, *fs_uuid, *medium_arg;
        const char *kind;       /* "storage" or "optical", as the agent asked policyd */
        uint64_t dev_size;
        pthread_mutex_t lock; /* rights and recipient */
        view_rights rights;
        uint8_t used[VIEW_USED_MAX][MAMORI_GRANT_ID_LEN]; /* once-only grants used or refused (ring) */
        size_t n_used;
        mamori_age_recipient recipient;
        bool have_recipient;
        mamori_age_identity **ids; /* used by the FUSE thread only */
        size_t n_ids;
        _Atomic bool reload_ids;   /* set on SIGHUP: the FUSE thread reads them again */
        view_node *nodes;
        view_pass *pass; /* passphrases held for passphrase-mode output (view-pass.c), NULL: none taken */
} view;

/* Who is calling, and what they may do (filled once per operation). */
typedef struct view_caller {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        char name[MAMORI_NAME_MAX + 1];
        uint8_t modes; /* MAMORI_MODE_* bits held now (not once-only) */
        /* An unused once-only grant with a write mode (R-PERM-3): its write modes, 0 if none.
         * It allows one file transfer: create, write, truncate and store one file. */
        uint8_t once_modes;
        uint8_t once_id[MAMORI_GRANT_ID_LEN];
} view_caller;
/* All modes c holds now, an unused once-only grant's included. */
static inline uint8_t view_caller_modes(const view_caller *c)
{
        return c->modes | c->once_modes;
}

/* The form a write by this caller is stored in. */
typedef enum view_form {
        VIEW_FORM_AGE_ORG,
        VIEW_FORM_PLAIN,
        VIEW_FORM_PASSPHRASE, /* age scrypt to the passphrase the writer handed the view */
        VIEW_FORM_NONE,       /* no write right */
} view_form;
const char *view_form_to_string(view_form f);
/* encrypted whenever write-encrypted is held (R-OUT-1); plaintext only for write-plain
 * without it (R-OUT-3); to the writer's passphrase only for write-passphrase alone (R-OUT-1, R-OUT-3). */
view_form view_form_for(uint8_t modes);
/* The form c's next file is stored in: by c's lasting rights, else by an unused once-only
 * grant's (which that file then uses up). */
view_form view_caller_form(const view_caller *c);

/* view-rights.c */
/* Asks policyd about the medium and stores the answer. Returns 0, or -errno (then the
 * rights are cleared: nothing is allowed until an answer comes, fail closed). */
int view_rights_refresh(view *v);
/* Reads the recipient (and, with identities, the identities, replacing those held: FUSE
 * thread only) from the keys directory. Returns 0 or -errno; a missing recipient leaves
 * have_recipient false (encrypted writes fail), missing identities keep those held. */
int view_keys_load(view *v, bool identities);
/* Fills c for the current FUSE request. Returns 0, or -EACCES when the caller's name
 * cannot be resolved (nothing allowed: fail closed). */
int view_caller_get(view *v, view_caller *c);
/* The same for a given caller. */
int view_caller_fill(view *v, uid_t uid, gid_t gid, pid_t pid, view_caller *c);
/* Remembers that a once-only grant was used (or refused by policyd): callers no longer get
 * it, even before policyd's next answer. */
void view_once_used(view *v, const uint8_t id[static MAMORI_GRANT_ID_LEN]);
/* True if this view used (or was refused) the once-only grant id. */
bool view_once_is_used(view *v, const uint8_t id[static MAMORI_GRANT_ID_LEN]);
/* The medium's management number as policyd last said it (copied). */
void view_medium(view *v, char ret[static MAMORI_MEDIA_NO_MAX + 1]);

/* view-evidence.c */
/* The transfer facts of one record. */
typedef struct view_transfer {
        const char *file, *stored_name, *source_path, *reason;
        uint64_t size;
        bool output;
        view_form form;
        const uint8_t *grant_id; /* the once-only grant the output used, or NULL */
        bool consume;            /* policyd uses grant_id up with the record (else only names it) */
} view_transfer;
/* Submits "media.output"/"media.input" (refused: "<type>.refused" with reason) and waits
 * for policyd's acknowledgement. With consume, policyd uses the once-only grant and stores
 * the record together, or neither. Returns 0 once stored, -EEXIST (consume: the grant was
 * already used), -EACCES (consume: policyd refuses the grant otherwise), or -EIO. */
int view_evidence(view *v, const view_caller *c, const view_transfer *t, bool refused);
/* True if policyd accepts connections now (reads are refused otherwise: R-EV-9). */
bool view_policyd_reachable(view *v);
/* The original path of a file written as base: a file open read-only in /proc/<pid>/fd
 * with that name (when readable), else an absolute argument of the caller's command
 * line with that name; never under the view, never looked up. Writes it or "" to ret. */
void view_source_path(view *v, pid_t pid, const char *base, char *ret, size_t size);

/* view-fs.c */
typedef enum view_kind {
        VIEW_NONE,
        VIEW_AGE,   /* stored as <name>.age */
        VIEW_PLAIN, /* stored as <name> */
        VIEW_DIR,
} view_kind;
typedef struct view_entry {
        int dir_fd;                 /* the parent directory on the medium */
        char base[NAME_MAX + 1];    /* the name the user sees */
        char stored[NAME_MAX + 8];  /* the name on the medium ("" for VIEW_NONE) */
        view_kind kind;
        struct stat st;             /* of the stored file, when kind != VIEW_NONE */
} view_entry;
/* Checks a name the user gave: not empty, ".", "..", no '/', not reserved, fits with
 * ".age". Returns 0 or -EINVAL (-ENAMETOOLONG). */
int view_name_check(const char *base);
/* Opens the parent of path (a FUSE path, "/a/b") beneath the raw mount without
 * following any symlink, and looks the name up. Returns 0 (close e->dir_fd), -ENOENT,
 * -ENOTDIR, -EINVAL for a refused name, or -errno. path "/" is refused (-EINVAL). */
int view_lookup(view *v, const char *path, view_entry *e);
/* Opens a directory of the view (path "/" is the root) beneath the raw mount. */
int view_open_dir(view *v, const char *path);
/* The plaintext size of a stored .age file (cached by inode, size and times). */
int view_age_size(view *v, int dir_fd, const char *stored, const struct stat *st, uint64_t *ret);
/* Opens an age reader on fd with the organisation identities. */
int view_age_reader(view *v, int fd, mamori_age_reader **ret);
/* The same, then (for a file those do not open) with uid's held passphrase. Returns 0 with
 * the form that opened it in *ret_form, -EACCES (nothing held opens it: no identities and no
 * passphrase), -ENOKEY, -EBADMSG or -errno. */
int view_age_reader_for(view *v, int fd, uid_t uid, mamori_age_reader **ret, view_form *ret_form);
/* Removes the stored copy of base in the other form after base was stored as kind. */
void view_remove_other(int dir_fd, const char *base, view_kind kept);

/* view-node.c: a file open for writing. Where its content is (docs/design.md "Staging"): */
typedef enum view_content {
        VIEW_CONTENT_STAGE,  /* in the stage (a stream, if any, is a second copy) */
        VIEW_CONTENT_STREAM, /* only in the stream's temporary file on the medium (n->size bytes) */
        VIEW_CONTENT_STORED, /* committed from the stream: only in the stored file (n->size bytes) */
} view_content;
struct view_node {
        view_node *next;
        char *path;       /* FUSE path; NULL once unlinked or replaced */
        unsigned refs;
        int stage_fd;
        view_content content;
        uint64_t size;    /* the content's size unless it is in the stage */
        int error;        /* < 0: what was written is lost (medium full or failing, not decryptable): writes,
                           * reads and commits fail with it until the file is truncated to 0 */
        bool dirty;
        bool failed;      /* a commit failed and the writer was told: not tried again at release */
        bool encrypt;     /* the opener's writes are stored encrypted: a stream may be started */
        uid_t uid;
        pid_t pid;        /* the process that opened it (for source_path) */
        /* Once-only grants (R-PERM-3): the one the opener held (open_once), and the one a
         * commit of this file used up (once_used, by once_uid with once_modes): later commits
         * of the same file (dd's first close, fsync then close) are the same transfer. */
        bool open_once, once_used;
        uint8_t open_once_id[MAMORI_GRANT_ID_LEN], once_id[MAMORI_GRANT_ID_LEN];
        uid_t once_uid;
        uint8_t once_modes;
        /* Encryption on the fly while the file is written from its start in order:
         * ciphertext to a temporary file (sw_tmp in sw_dir, the directory it was opened in)
         * on the medium, so a copy's commit only finishes it. Without a stage copy
         * (VIEW_CONTENT_STREAM) when the organisation identities open it again. */
        mamori_age_writer *sw;
        struct view_feed *feed; /* hands the writes to sw on a thread of its own */
        int sw_fd, sw_dir;
        char sw_tmp[64];
        uint64_t sw_off;
};
/* Writes len bytes at off. Returns the count or -errno. */
int view_node_write(view *v, view_node *n, const void *buf, size_t len, uint64_t off);
/* Makes the stage hold the whole content (decrypting the stream's or the stored file).
 * Returns 0, or -errno (the content is lost: n->error). */
int view_node_stage(view *v, view_node *n);
/* The stage's attributes with the content's size. Returns 0 or -errno. */
int view_node_stat(view_node *n, struct stat *ret);
/* Cuts or extends the content to size. Returns 0 or -errno. */
int view_node_truncate(view *v, view_node *n, uint64_t size);
/* The file was unlinked or replaced while open: never stored; what was written stays
 * readable through the open handles (staged). */
void view_node_detach(view *v, view_node *n);
view_node *view_node_find(view *v, const char *path);
/* Opens (or shares) the node for path; loads the stored content unless truncate.
 * Returns 0 or -errno. */
int view_node_open(view *v, const char *path, const view_entry *e, bool truncate, const view_caller *c,
                   view_node **ret);
void view_node_unref(view *v, view_node *n);
/* Encrypts (or copies) the content to a temporary name on the medium (or finishes the
 * stream), records the transfer, then renames it into place. A writer without a lasting
 * write right uses an unused once-only grant, which policyd uses up with the record.
 * Returns 0, -EACCES (no write right now, or the once-only grant was used or refused: a
 * refusal record is made, temp removed), -ENOSPC (temp removed), -EIO (not recorded: temp
 * removed, R-EV-9), or -errno. */
int view_node_commit(view *v, view_node *n, const view_caller *c);
/* Renames nodes at from (or below it, for a directory) to to. */
void view_nodes_rename(view *v, const char *from, const char *to);

/* view-pass.c: passphrases for write-passphrase output, handed over a unix socket
 * (docs/protocol.md "Media view passphrase socket"). */
#define VIEW_PASS_MAX 1024
#define VIEW_PASS_TTL_S (8 * 3600) /* default: a held passphrase is forgotten 8 h after it was set */
/* The socket's answers (one line each); a closed set. */
typedef enum view_pass_status {
        VIEW_PASS_OK,        /* held for the caller */
        VIEW_PASS_FORGOTTEN, /* an empty one: the caller's is wiped */
        VIEW_PASS_NO_RIGHT,  /* the caller holds no write-passphrase right on this medium: nothing kept */
        VIEW_PASS_MALFORMED, /* not a request, over the cap, an embedded NUL or too slow: nothing changed */
        VIEW_PASS_FULL,      /* too many users hold one: nothing kept */
        VIEW_PASS_INTERNAL,  /* no memory, or the caller unknown: nothing kept */
        _VIEW_PASS_STATUS_MAX,
} view_pass_status;
const char *view_pass_status_to_string(view_pass_status s);
/* Listens on path (its directory made 0755 and checked root's, the socket 0666) and starts
 * the thread answering it; passphrases are held for ttl_s at most. Returns 0 or -errno (then
 * no passphrase is ever held: passphrase output is refused, fail closed). */
int view_pass_start(view *v, const char *path, unsigned ttl_s);
/* Removes the socket and wipes every passphrase held (at the view's end). */
void view_pass_stop(view *v);
/* True if uid holds a passphrase now (not expired). */
bool view_pass_held(view *v, uid_t uid);
/* Copies uid's passphrase into sodium_malloc memory (free with sodium_free). Returns 0, or
 * -ENOKEY (none held, or expired), -ENOMEM. */
int view_pass_get(view *v, uid_t uid, char **ret);
/* Wipes uid's passphrase, if any. */
void view_pass_forget(view *v, uid_t uid);
/* Wipes the passphrases of users who hold no write-passphrase right any more (after each
 * rights refresh: a grant that ended, a user taken off the medium). */
void view_pass_prune(view *v);

/* view-ops.c */
extern const struct fuse_operations view_ops;
