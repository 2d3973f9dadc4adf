/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The idle lock (R-IDLE-1, R-IDLE-2; docs/design.md "Idle lock"). The agent follows
 * logind's sessions on the system bus and locks every session of class "user" that has
 * had no input for idle.timeout seconds:
 *   - text sessions (console, SSH): input is seen as reads of the session's terminal
 *     (inotify IN_ACCESS on the tty, exact to the event; logind's IdleSinceHint, the
 *     tty's atime, is kept by the kernel only to 8 s). Locking freezes the session's
 *     programs in a cgroup v2 child of its scope and starts mamori-lock (agent/lock.c)
 *     on the terminal; remote sessions may be terminated instead (idle.remote_action);
 *   - graphical sessions: idle is logind's IdleHint/IdleSinceHint (set by the desktop);
 *     locking asks logind (LockSession) and checks LockedHint; without a locker the
 *     agent freezes the whole session and prompts on a free VT it switches to.
 * logind's idle inhibitors are not consulted: the agent does not use IdleAction.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/vt.h>
#include <systemd/sd-bus.h>

#include "agent.h"
#include "cleanup.h"
#include "idle-logic.h"
#include "idle.h"
#include "log.h"

#ifndef MAMORI_LOCK_HELPER
#define MAMORI_LOCK_HELPER "/usr/local/libexec/mamori-lock"
#endif
#define CGROUP_ROOT "/sys/fs/cgroup"
#define SESSIONS_MAX 64
#define TICK_US (500 * 1000)            /* the check runs twice a second */
/* graphical: LockedHint must come within this. 3 s, so that even the fallback locks
 * within R-IDLE-1's 5 s of the timeout (xss-lock + i3lock set it in well under 1 s). */
#define LOCKER_WAIT_US 2500000     /* a locker answered in under 0.7 s in vm-graphical */
#define VT_WAIT_US (1000 * 1000)        /* a display server releasing its VT for the prompt */
#define VT_STATE_MAX 15                 /* VT_GETSTATE's v_state has one bit per VT 1..15 */
#define VT_RESERVED 6                   /* logind's ReserveVT default: always a getty there */
#define RESPAWN_US (2 * 1000000)        /* a prompt that died is started again after this */
#define MOVE_ROUNDS 50                  /* processes forking while they are moved */
#define MOVE_PAUSE_NS (10 * 1000000)    /* between rounds after the fifth: an exiting process
                                         * stays listed (the kernel skips it when moving) */
#define SCOPE_WAIT_US (30 * 1000000)    /* a new session's scope may come this late */

#define LOGIN1 "org.freedesktop.login1"
#define LOGIN1_PATH "/org/freedesktop/login1"
#define LOGIN1_MANAGER "org.freedesktop.login1.Manager"
#define LOGIN1_SESSION "org.freedesktop.login1.Session"

typedef enum sess_state {
        SESS_OPEN,      /* watched, not locked */
        SESS_ASKED,     /* graphical: LockSession sent, waiting for LockedHint */
        SESS_LOCKER,    /* graphical: the desktop's locker holds it (LockedHint) */
        SESS_FROZEN,    /* the agent's lock: frozen, mamori-lock prompting */
        _SESS_STATE_MAX,
} sess_state;

typedef struct sess {
        bool used, graphical, remote, ignored;
        bool scoped;                    /* the leader was seen in the session's scope */
        char id[IDLE_ID_MAX], user[64], type[16], tty[IDLE_TTY_MAX], rhost[128], scope[128];
        char path[128];                 /* the session's D-Bus object path */
        uid_t uid;
        pid_t leader;
        int wd;                         /* inotify watch on the tty, -1 none */
        int64_t last_input;             /* µs CLOCK_REALTIME, 0 unknown */
        sess_state state;
        int64_t since;                  /* when the state was entered (µs, monotonic) */
        pid_t helper;                   /* mamori-lock, 0 none */
        sd_event_source *child, *out;
        char line[128];
        size_t line_len;
        const char *lock_how;           /* the session.lock action, for the prompt's text */
        char unlocked_by[64];           /* an administrator who unlocked it (mamori-lock) */
        /* graphical sessions: the VT the agent's prompt takes while they are frozen */
        uint32_t vtnr;                  /* logind's VTNr: the display server's own VT, 0 none */
        int vt_fd;                      /* the prompt's VT, held open while locked; -1 none */
        unsigned vt, vt_prev;           /* its number, and the VT that was in front before */
        uid_t vt_uid;                   /* the VT's owner and mode before the agent lent it */
        gid_t vt_gid;
        mode_t vt_mode;
        int64_t unlock_rt;              /* the last unlock (µs CLOCK_REALTIME): idle from here */
        struct idle_watch *w;
} sess;

struct idle_watch {
        agent *a;
        sd_bus *bus;
        int ino;
        sd_event_source *ino_src, *timer;
        sess s[SESSIONS_MAX];
};

static int64_t now_rt(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_mono(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static unsigned idle_seconds(const sess *s)
{
        int64_t d = s->last_input > 0 ? now_rt() - s->last_input : 0;
        return d > 0 ? (unsigned)(d / 1000000) : 0;
}

/* One evidence record about a session (R-EV-5: who, which terminal, when, how). */
static void record(sess *s, const char *type, const char *k1, const char *v1)
{
        char idle[16];
        snprintf(idle, sizeof idle, "%u", idle_seconds(s));
        (void)evidence_event(s->w->a, type, "user", s->user, "session", s->id, "tty", s->tty[0] ? s->tty : "-",
                             "remote_host", s->rhost[0] ? s->rhost : "-", "idle_seconds", idle, "session_type",
                             s->type, k1 ? k1 : "how", v1 ? v1 : "-", NULL);
}

/* An unlock by an administrator: how, and who (R-EV-5). */
static void record_by(sess *s, const char *how, const char *by)
{
        char idle[16];
        snprintf(idle, sizeof idle, "%u", idle_seconds(s));
        (void)evidence_event(s->w->a, "session.unlock", "user", s->user, "session", s->id, "tty",
                             s->tty[0] ? s->tty : "-", "remote_host", s->rhost[0] ? s->rhost : "-", "idle_seconds",
                             idle, "session_type", s->type, "how", how, "by", by, NULL);
}

/* --- logind properties ---------------------------------------------------------------- */

static int prop_str(idle_watch *w, const sess *s, const char *name, char *buf, size_t size)
{
        _cleanup_free_ char *v = NULL;
        int r = sd_bus_get_property_string(w->bus, LOGIN1, s->path, LOGIN1_SESSION, name, NULL, &v);
        if (r < 0)
                return r;
        snprintf(buf, size, "%s", v);
        return 0;
}

static int prop_trivial(idle_watch *w, const sess *s, const char *name, char type, void *ret)
{
        return sd_bus_get_property_trivial(w->bus, LOGIN1, s->path, LOGIN1_SESSION, name, NULL, type, ret);
}

/* --- processes and cgroups ------------------------------------------------------------ */

/* ppid and controlling-terminal number from /proc/PID/stat (readable without ptrace rights). */
static int proc_stat(pid_t pid, pid_t *ret_ppid, unsigned long *ret_tty)
{
        char p[64], buf[1024];
        snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
        _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n <= 0)
                return -EIO;
        buf[n] = '\0';
        const char *e = strrchr(buf, ')'); /* comm may hold anything, even ") " */
        int ppid, pgrp, session, tty;
        char state;
        if (!e || sscanf(e + 1, " %c %d %d %d %d", &state, &ppid, &pgrp, &session, &tty) != 5)
                return -EINVAL;
        *ret_ppid = ppid;
        *ret_tty = (unsigned long)(unsigned)tty;
        return 0;
}

/* Processes the lock leaves running: the session's leader (sshd's privileged monitor,
 * login) and the leader's own children without a terminal (sshd's per-session process,
 * which carries the pty to the client: frozen, no prompt would reach an SSH user). A
 * user's program cannot be the leader's child: only the leader forks those. */
static bool keep_running(const sess *s, pid_t pid)
{
        pid_t ppid;
        unsigned long tty;
        if (pid == s->leader)
                return true;
        /* Graphical: the leader (the display manager's session worker) only. Its children
         * without a terminal are the user's session (Xsession, the desktop): frozen. */
        if (s->graphical)
                return false;
        return proc_stat(pid, &ppid, &tty) == 0 && ppid == s->leader && tty == 0;
}

/* Reads a cgroup.procs file (dirfd-relative) into pids. Returns the count or -errno. */
static int read_procs(int dfd, pid_t *pids, size_t max)
{
        int fd = openat(dfd, "cgroup.procs", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        FILE *f = fdopen(fd, "re");
        if (!f) {
                close(fd);
                return -ENOMEM;
        }
        size_t n = 0;
        int v;
        while (n < max && fscanf(f, "%d", &v) == 1)
                pids[n++] = v;
        fclose(f);
        return (int)n;
}

static int write_at(int dfd, const char *file, const char *s)
{
        _cleanup_close_ int fd = openat(dfd, file, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -errno;
}

static int open_scope(const sess *s)
{
        char p[256];
        snprintf(p, sizeof p, "%s/%s", CGROUP_ROOT, s->scope);
        int fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* Moves every process of from_fd's cgroup to to_fd's, except those keep_running() names
 * (when keep is set), until none is left: processes forking meanwhile are caught by the
 * next round. Returns the number moved or -errno. */
static int move_all(const sess *s, int from_fd, int to_fd, bool keep)
{
        pid_t pids[1024];
        int moved = 0;
        for (int round = 0; round < MOVE_ROUNDS; round++) {
                int n = read_procs(from_fd, pids, ELEMENTSOF(pids)), this_round = 0;
                if (n < 0)
                        return n;
                for (int i = 0; i < n; i++) {
                        if (keep && keep_running(s, pids[i]))
                                continue;
                        char v[16];
                        snprintf(v, sizeof v, "%d", (int)pids[i]);
                        int r = write_at(to_fd, "cgroup.procs", v);
                        if (r < 0 && r != -ESRCH)
                                return r;
                        this_round++;
                }
                moved += this_round;
                if (this_round == 0)
                        return moved;
                if (round >= 5) /* still some: let exiting ones finish (seen under load) */
                        (void)nanosleep(&(struct timespec){.tv_nsec = MOVE_PAUSE_NS}, NULL);
        }
        return -EBUSY;
}

/* Freezes the session: its lock child frozen first, so each process stops as it arrives.
 * Returns 0 or -errno (the caller then terminates the session: fail closed). */
static int freeze(sess *s)
{
        _cleanup_close_ int sfd = open_scope(s);
        if (sfd < 0)
                return sfd;
        if (mkdirat(sfd, IDLE_LOCK_CGROUP, 0755) < 0 && errno != EEXIST)
                return -errno;
        _cleanup_close_ int lfd = openat(sfd, IDLE_LOCK_CGROUP, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (lfd < 0)
                return -errno;
        int r = write_at(lfd, "cgroup.freeze", "1");
        if (r < 0)
                return r;
        r = move_all(s, sfd, lfd, true);
        return r < 0 ? r : 0;
}

static void display_back(sess *s);

/* Thaws (cgroup.freeze=0: that is the unlock), then moves the processes back into the
 * scope and removes the lock child. A process that will not move (the kernel refused, or
 * it is exiting) stays in the thawed child, running; the next lock reuses the child.
 * Returns 0, or -errno when the freeze could not be lifted. */
static int thaw(sess *s)
{
        _cleanup_close_ int sfd = open_scope(s);
        if (sfd < 0)
                return sfd;
        _cleanup_close_ int lfd = openat(sfd, IDLE_LOCK_CGROUP, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (lfd < 0)
                return errno == ENOENT ? 0 : -errno;
        int r = write_at(lfd, "cgroup.freeze", "0");
        if (r < 0)
                return r;
        r = move_all(s, lfd, sfd, false);
        if (r < 0)
                log_warning_errno(r, "Session %s: thawed, but not every process went back to the scope: %m", s->id);
        else
                (void)unlinkat(sfd, IDLE_LOCK_CGROUP, AT_REMOVEDIR);
        s->unlock_rt = now_rt();
        display_back(s);
        return 0;
}

/* Whether an earlier agent left this session frozen (it then stays locked). */
static bool is_frozen(const sess *s)
{
        _cleanup_close_ int sfd = open_scope(s);
        if (sfd < 0)
                return false;
        _cleanup_close_ int fd = openat(sfd, IDLE_LOCK_CGROUP "/cgroup.freeze", O_RDONLY | O_CLOEXEC);
        char c = 0;
        return fd >= 0 && read(fd, &c, 1) == 1 && c == '1';
}

/* --- the prompt's VT (graphical sessions) --------------------------------------------- */

/* A frozen display server shows its last picture and takes no input, and its own VT is in
 * graphics mode: text written there is never seen. So the prompt of a frozen graphical
 * session goes on a VT of its own, brought to the front. */

static int vt_state(struct vt_stat *ret)
{
        _cleanup_close_ int fd = open("/dev/tty0", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return ioctl(fd, VT_GETSTATE, ret) < 0 ? -errno : 0;
}

/* The first VT a prompt may take: above logind's automatic gettys (NAutoVTs, a switch to
 * one of those starts a getty that would fight the prompt for the keyboard) and its
 * reserved VT. */
static unsigned vt_first(idle_watch *w)
{
        uint32_t n = VT_RESERVED;
        if (sd_bus_get_property_trivial(w->bus, LOGIN1, LOGIN1_PATH, LOGIN1_MANAGER, "NAutoVTs", NULL, 'u', &n) < 0 ||
            n < VT_RESERVED)
                n = VT_RESERVED;
        return n + 1;
}

static void vt_wait_active(unsigned vt)
{
        struct vt_stat st;
        for (int64_t end = now_mono() + VT_WAIT_US; now_mono() < end;) {
                if (vt_state(&st) < 0 || st.v_active == vt)
                        return;
                (void)nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
        }
        log_warning("VT %u did not come to the front within %d ms; the prompt waits on it.", vt, VT_WAIT_US / 1000);
}

/* Lends a free VT to the session's prompt: held open by the agent (so nobody else takes
 * it), owned by the session's user for the time of the lock (mamori-lock opens only a
 * terminal its user owns), switched to. Returns 0 or -errno (-EBUSY: no free VT). */
static int vt_take(sess *s)
{
        struct vt_stat st;
        int r = vt_state(&st);
        if (r < 0)
                return r;
        unsigned n = 0;
        for (unsigned i = vt_first(s->w); i <= VT_STATE_MAX && !n; i++)
                if (i != s->vtnr && !(st.v_state & (1u << i)))
                        n = i;
        if (!n)
                return -EBUSY;
        char path[IDLE_TTY_MAX];
        dev_t want;
        snprintf(path, sizeof path, "/dev/tty%u", n);
        if (idle_tty_devnum(path, &want) < 0)
                return -EINVAL;
        _cleanup_close_ int fd = open(path, O_RDWR | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat fs;
        if (fstat(fd, &fs) < 0 || !S_ISCHR(fs.st_mode) || fs.st_rdev != want)
                return -EPERM;
        /* chmod before chown: the agent has CAP_CHOWN, not CAP_FOWNER. */
        if (fchmod(fd, 0600) < 0 || fchown(fd, s->uid, (gid_t)-1) < 0)
                return -errno;
        s->vt_uid = fs.st_uid;
        s->vt_gid = fs.st_gid;
        s->vt_mode = fs.st_mode & 07777;
        s->vt_prev = st.v_active;
        s->vt = n;
        snprintf(s->tty, sizeof s->tty, "%s", path);
        s->vt_fd = TAKE_FD(fd);
        /* Asynchronous: a display server that handles its own VT switching (VT_PROCESS)
         * must still run to release its VT, so this comes before the freeze. */
        if (ioctl(s->vt_fd, VT_ACTIVATE, (int)n) < 0)
                log_warning_errno(errno, "Session %s: cannot switch to VT %u, the prompt waits there: %m", s->id, n);
        else
                vt_wait_active(n);
        return 0;
}

/* Gives the VT back (owner, mode) and brings the session's display to the front again. */
static void vt_release(sess *s)
{
        if (s->vt_fd < 0)
                return;
        if (fchown(s->vt_fd, s->vt_uid, s->vt_gid) < 0 || fchmod(s->vt_fd, s->vt_mode) < 0)
                log_warning_errno(errno, "Session %s: cannot give %s back to its owner: %m", s->id, s->tty);
        struct vt_stat st;
        unsigned back = s->vtnr ? s->vtnr : s->vt_prev;
        if (back && vt_state(&st) >= 0 && st.v_active == s->vt && ioctl(s->vt_fd, VT_ACTIVATE, (int)back) < 0)
                log_warning_errno(errno, "Session %s: cannot switch back to VT %u: %m", s->id, back);
        close(s->vt_fd);
        s->vt_fd = -1;
        s->vt = 0; /* s->tty keeps the VT's name for the session.unlock record */
}

/* While locked, the prompt stays in front of the session's own (frozen) display: a user
 * switching to it could not switch back (the frozen server owns the keyboard there).
 * Other VTs (another user's session) are left alone. */
static void vt_keep_front(sess *s)
{
        struct vt_stat st;
        if (s->vt_fd >= 0 && s->vtnr && vt_state(&st) >= 0 && st.v_active == s->vtnr)
                (void)ioctl(s->vt_fd, VT_ACTIVATE, (int)s->vt);
}

/* logind's LockedHint, so that the desktop and loginctl see the agent's lock too. */
static void set_locked_hint(sess *s, bool locked)
{
        int r = sd_bus_call_method(s->w->bus, LOGIN1, s->path, LOGIN1_SESSION, "SetLockedHint", NULL, NULL, "b",
                                   (int)locked);
        if (r < 0)
                log_warning_errno(r, "Session %s: cannot set LockedHint, ignoring: %m", s->id);
}

/* After the thaw of a graphical session: its display in front again, the VT given back. */
static void display_back(sess *s)
{
        if (!s->graphical)
                return;
        vt_release(s);
        set_locked_hint(s, false);
}

/* --- the lock prompt ------------------------------------------------------------------ */

static void set_state(sess *s, sess_state st)
{
        s->state = st;
        s->since = now_mono();
        agent_write_status(s->w->a);
}

static void helper_gone(sess *s)
{
        s->child = sd_event_source_disable_unref(s->child);
        s->out = sd_event_source_disable_unref(s->out);
        s->helper = 0;
        s->line_len = 0;
}

/* The agent's locale variables for mamori-lock (the system's: texts in the terminal's
 * language), each only if it looks like a locale name; the rest is C.UTF-8. */
static void locale_env(char bufs[][96], char **envp, size_t *n)
{
        static const char *const names[] = {"LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES"};
        bool lang = false;
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                const char *v = getenv(names[i]);
                if (!v || !*v || strlen(v) > 64 || strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                             "0123456789_.@:-") != strlen(v))
                        continue;
                snprintf(bufs[i], 96, "%s=%s", names[i], v);
                envp[(*n)++] = bufs[i];
                lang |= i == 0;
        }
        if (!lang)
                envp[(*n)++] = (char *)"LANG=C.UTF-8";
}

static void unlocked(sess *s, const char *how)
{
        int r = thaw(s);
        if (r < 0) {
                /* Fail closed: still frozen; the next tick starts a new prompt. */
                log_error_errno(r, "Session %s: cannot thaw after unlock: %m", s->id);
                return;
        }
        s->last_input = now_rt();
        set_state(s, SESS_OPEN);
        log_info("Session %s (%s): unlocked (%s).", s->id, s->user, how);
        record(s, "session.unlock", "how", how);
}

/* Whether the prompt's "terminal gone" is true: a pty whose other side closed refuses to
 * open (EIO). ^D typed at the prompt also ends its input, and must not unlock: the
 * terminal then still opens, and the session stays locked with a new prompt (fail
 * closed). A graphical session's VT never hangs up for its user: never an unlock. */
static bool hung_up(const sess *s)
{
        if (s->graphical || !s->tty[0])
                return false;
        int fd = open(s->tty, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
                close(fd);
                log_warning("Session %s: the prompt saw the end of input but %s is still there; it stays locked.",
                            s->id, s->tty);
                return false;
        }
        return true;
}

static int on_helper_exit(sd_event_source *src, const siginfo_t *si, void *userdata)
{
        sess *s = userdata;
        helper_gone(s);
        if (si->si_code == CLD_EXITED && si->si_status == 0)
                {
                if (s->unlocked_by[0]) {
                        /* unlocked() records the plain case; an administrator is named */
                        int r = thaw(s);
                        if (r < 0) {
                                log_error_errno(r, "Session %s: cannot thaw after unlock: %m", s->id);
                                return 0; /* fail closed: still frozen, a new prompt follows */
                        }
                        s->last_input = now_rt();
                        set_state(s, SESS_OPEN);
                        log_info("Session %s (%s): unlocked by administrator %s.", s->id, s->user, s->unlocked_by);
                        record_by(s, "administrator", s->unlocked_by);
                        s->unlocked_by[0] = '\0';
                } else
                        unlocked(s, "password");
        }
        else if (si->si_code == CLD_EXITED && si->si_status == 3 && hung_up(s))
                /* The terminal is gone (SSH connection closed): the programs get the hang-up
                 * they would have got without the lock; nobody can type into them any more. */
                unlocked(s, "hangup");
        else
                log_warning("Session %s: the lock prompt ended (code %d status %d); starting another.", s->id,
                            si->si_code, si->si_status);
        return 0;
}

/* mamori-lock reports "failed <reason>" per refused attempt. */
static int on_helper_out(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
        sess *s = userdata;
        ssize_t n = read(fd, s->line + s->line_len, sizeof s->line - 1 - s->line_len);
        if (n <= 0) {
                s->out = sd_event_source_disable_unref(s->out);
                return 0;
        }
        s->line_len += (size_t)n;
        s->line[s->line_len] = '\0';
        char *nl;
        while ((nl = strchr(s->line, '\n'))) {
                *nl = '\0';
                if (strncmp(s->line, "failed", 6) == 0) {
                        const char *why = s->line[6] == ' ' ? s->line + 7 : "";
                        log_notice("Session %s (%s): unlock refused (%s).", s->id, s->user, why);
                        record(s, "session.unlock.failed", "reason", why);
                } else if (strncmp(s->line, "unlocked-by ", 12) == 0)
                        snprintf(s->unlocked_by, sizeof s->unlocked_by, "%s", s->line + 12);
                size_t rest = s->line_len - (size_t)(nl + 1 - s->line);
                memmove(s->line, nl + 1, rest + 1);
                s->line_len = rest;
        }
        if (s->line_len == sizeof s->line - 1)
                s->line_len = 0; /* an overlong line: dropped */
        return 0;
}

/* Starts mamori-lock on the session's terminal (execve, no shell). Returns 0 or -errno. */
static int spawn_prompt(sess *s)
{
        if (s->graphical && s->vt_fd < 0) {
                int r = vt_take(s);
                if (r < 0)
                        return r;
        }
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        char uid[16];
        snprintf(uid, sizeof uid, "%u", (unsigned)s->uid);
        const char *argv[] = {MAMORI_LOCK_HELPER, "--tty", s->tty, "--user", s->user, "--uid", uid,
                              "--session", s->id, "--reason", s->lock_how ? s->lock_how : "lock", "--admin-group",
                              s->w->a->cfg->roles.admin_group, s->rhost[0] ? "--rhost" : NULL, s->rhost, NULL};
        char bufs[4][96], *envp[7] = {(char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
        size_t nenv = 1;
        locale_env(bufs, envp, &nenv);
        envp[nenv] = NULL;
        s->unlocked_by[0] = '\0';
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(p[0]);
                close(p[1]);
                return r;
        }
        if (pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (nul < 0 || dup2(nul, 0) < 0 || dup2(p[1], 1) < 0)
                        _exit(127);
                execve(argv[0], (char *const *)argv, envp);
                _exit(127);
        }
        close(p[1]);
        s->helper = pid;
        int r = sd_event_add_child(s->w->a->event, &s->child, pid, WEXITED, on_helper_exit, s);
        if (r < 0) {
                close(p[0]);
                kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
                s->helper = 0;
                return r;
        }
        r = sd_event_add_io(s->w->a->event, &s->out, p[0], EPOLLIN, on_helper_out, s);
        if (r < 0)
                close(p[0]);
        else
                (void)sd_event_source_set_io_fd_own(s->out, 1);
        return 0;
}

/* --- locking -------------------------------------------------------------------------- */

static void terminate(sess *s, const char *why)
{
        int r = sd_bus_call_method(s->w->bus, LOGIN1, LOGIN1_PATH, LOGIN1_MANAGER, "TerminateSession", NULL, NULL,
                                   "s", s->id);
        if (r < 0)
                log_error_errno(r, "Session %s: TerminateSession failed: %m", s->id);
        record(s, "session.lock", "action", why);
        s->ignored = true; /* ending; SessionRemoved follows */
}

/* Whether the session's leader is in its scope yet: logind starts the scope after the
 * user's manager, seconds after the session on a busy machine. Returns 0 or -errno. */
static int leader_in_scope(const sess *s)
{
        char p[64], buf[512];
        snprintf(p, sizeof p, "/proc/%d/cgroup", (int)s->leader);
        _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n <= 0)
                return -EIO;
        buf[n] = '\0';
        int r = idle_cgroup_where(buf, s->scope);
        return r < 0 ? r : 0;
}

/* The agent's own lock: freeze and prompt. A session that cannot be frozen is terminated
 * (fail closed: an idle session is never left open); one whose scope is not there yet is
 * tried again on the next tick, for at most SCOPE_WAIT_US past its deadline. */
static void lock_frozen(sess *s, const char *how)
{
        int r = s->tty[0] || s->graphical ? leader_in_scope(s) : -ENOTTY;
        if (r == -ESRCH && now_rt() - idle_deadline(s->last_input, s->w->a->cfg->idle.timeout) < SCOPE_WAIT_US) {
                log_debug("Session %s: its scope is not there yet; locking on the next check.", s->id);
                return;
        }
        if (r >= 0 && s->graphical && s->vt_fd < 0) {
                /* The VT first, while the display server still runs and can let it go. No
                 * free VT does not stop the lock (denies): frozen, the prompt is retried. */
                int k = vt_take(s);
                if (k < 0)
                        log_warning_errno(k, "Session %s: no VT for the lock prompt yet, locking anyway: %m", s->id);
        }
        if (r >= 0)
                r = freeze(s);
        if (r < 0) {
                /* Cannot freeze (no cgroup v2, scope gone): terminated, never left open. */
                log_error_errno(r, "Session %s (%s): cannot freeze, terminating it instead: %m", s->id, s->user);
                if (s->graphical)
                        vt_release(s);
                terminate(s, "terminate-freeze-failed");
                return;
        }
        if (s->graphical)
                set_locked_hint(s, true);
        set_state(s, SESS_FROZEN);
        s->lock_how = how;
        log_info("Session %s (%s, %s): locked after %u s idle.", s->id, s->user, s->tty, idle_seconds(s));
        record(s, "session.lock", "action", how);
        r = spawn_prompt(s);
        if (r < 0)
                log_error_errno(r, "Session %s: cannot start the lock prompt, retrying: %m", s->id);
}

static void lock_session(idle_watch *w, sess *s)
{
        if (s->graphical) {
                int r = sd_bus_call_method(w->bus, LOGIN1, LOGIN1_PATH, LOGIN1_MANAGER, "LockSession", NULL, NULL,
                                           "s", s->id);
                if (r < 0)
                        log_warning_errno(r, "Session %s: LockSession failed: %m", s->id);
                set_state(s, SESS_ASKED);
                return;
        }
        if (s->remote && streq(w->a->cfg->idle.remote_action, "terminate")) {
                log_info("Session %s (%s from %s): idle, terminated (idle.remote_action).", s->id, s->user, s->rhost);
                terminate(s, "terminate");
                return;
        }
        lock_frozen(s, "lock");
}

/* --- sessions ------------------------------------------------------------------------- */

/* The SSH case: logind has no TTY, so take the controlling terminal of the session's
 * login shell (a child of the leader or of the leader's child). Returns 0 or -errno. */
static int find_tty(sess *s)
{
        _cleanup_close_ int sfd = open_scope(s);
        if (sfd < 0)
                return sfd;
        pid_t pids[256];
        int n = read_procs(sfd, pids, ELEMENTSOF(pids));
        for (int i = 0; i < n; i++) {
                pid_t ppid, gp;
                unsigned long tty, t2;
                if (proc_stat(pids[i], &ppid, &tty) < 0 || tty == 0)
                        continue;
                if (ppid != s->leader && !(proc_stat(ppid, &gp, &t2) == 0 && gp == s->leader && t2 == 0))
                        continue;
                if (idle_tty_from_nr(tty, s->tty) == 0)
                        return 0;
        }
        return -ENOTTY;
}

/* Watches the terminal's reads: each is input (IN_ACCESS comes only with bytes read). */
static void watch_tty(idle_watch *w, sess *s)
{
        struct stat st;
        dev_t want;
        if (idle_tty_devnum(s->tty, &want) < 0 || stat(s->tty, &st) < 0 || st.st_rdev != want) {
                s->tty[0] = '\0';
                return;
        }
        s->last_input = idle_latest(s->last_input, (int64_t)st.st_atim.tv_sec * 1000000 + st.st_atim.tv_nsec / 1000);
        s->wd = inotify_add_watch(w->ino, s->tty, IN_ACCESS);
        if (s->wd < 0)
                log_warning_errno(errno, "Session %s: cannot watch %s, using its atime: %m", s->id, s->tty);
}

static sess *find_session(idle_watch *w, const char *id)
{
        for (size_t i = 0; i < SESSIONS_MAX; i++)
                if (w->s[i].used && streq(w->s[i].id, id))
                        return &w->s[i];
        return NULL;
}

/* Reads a session's properties and starts watching it. Returns 0 or -errno. */
static int add_session(idle_watch *w, const char *id, const char *path)
{
        if (!idle_session_id_valid(id) || find_session(w, id) || strlen(path) >= sizeof w->s[0].path)
                return 0;
        sess *s = NULL;
        for (size_t i = 0; i < SESSIONS_MAX && !s; i++)
                if (!w->s[i].used)
                        s = &w->s[i];
        if (!s)
                return log_error_errno(-ENOSPC, "Session %s: too many sessions, not watched.", id);
        *s = (sess){.used = true, .wd = -1, .vt_fd = -1, .w = w};
        snprintf(s->id, sizeof s->id, "%s", id);
        snprintf(s->path, sizeof s->path, "%s", path);
        char klass[16] = "", tty[64] = "";
        int remote = 0, r;
        uint32_t leader = 0;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        if ((r = prop_str(w, s, "Class", klass, sizeof klass)) < 0 || (r = prop_str(w, s, "Type", s->type, sizeof s->type)) < 0 ||
            (r = prop_str(w, s, "TTY", tty, sizeof tty)) < 0 || (r = prop_str(w, s, "Name", s->user, sizeof s->user)) < 0 ||
            (r = prop_str(w, s, "RemoteHost", s->rhost, sizeof s->rhost)) < 0 ||
            (r = prop_trivial(w, s, "Remote", 'b', &remote)) < 0 || (r = prop_trivial(w, s, "Leader", 'u', &leader)) < 0 ||
            (r = sd_bus_get_property(w->bus, LOGIN1, path, LOGIN1_SESSION, "User", NULL, &m, "(uo)")) < 0 ||
            (r = sd_bus_message_read(m, "(uo)", &s->uid, NULL)) < 0) {
                s->used = false;
                return log_warning_errno(r, "Session %s: cannot read its properties, not watched: %m", id);
        }
        uint64_t created = 0; /* a new terminal's atime is older than its session */
        if (prop_trivial(w, s, "Timestamp", 't', &created) >= 0)
                s->last_input = (int64_t)created;
        s->remote = remote;
        s->leader = (pid_t)leader;
        s->graphical = streq(s->type, "x11") || streq(s->type, "wayland") || streq(s->type, "mir");
        if (s->graphical) {
                /* Its TTY (if logind has one) is not where input is seen or typed: idle is
                 * IdleHint, the prompt gets a VT of its own (vt_take). */
                tty[0] = '\0';
                (void)prop_trivial(w, s, "VTNr", 'u', &s->vtnr);
        }
        if (!streq(klass, "user") || idle_scope_path(s->uid, s->id, s->scope, sizeof s->scope) < 0) {
                s->ignored = true; /* greeters, lock screens, background sessions: not a user's terminal */
                return 0;
        }
        if (tty[0] && idle_tty_path(tty, s->tty) < 0)
                s->tty[0] = '\0';
        if (!s->tty[0] && !s->graphical)
                (void)find_tty(s); /* again on each tick until the shell is there */
        if (s->tty[0])
                watch_tty(w, s);
        if (!s->last_input)
                s->last_input = now_rt();
        set_state(s, SESS_OPEN);
        log_info("Session %s: user %s, type %s, tty %s%s%s: watched.", s->id, s->user, s->type, s->tty[0] ? s->tty : "-",
                 s->remote ? ", from " : "", s->remote ? s->rhost : "");
        if (is_frozen(s)) {
                /* Left frozen by an earlier agent: it stays locked (fail closed); a
                 * graphical one gets a VT for its prompt anew. */
                set_state(s, SESS_FROZEN);
                (void)spawn_prompt(s);
        }
        return 0;
}

static void remove_session(idle_watch *w, sess *s)
{
        if (s->helper > 0)
                kill(s->helper, SIGTERM);
        helper_gone(s);
        vt_release(s);
        if (s->wd >= 0) {
                bool shared = false;
                for (size_t i = 0; i < SESSIONS_MAX; i++)
                        shared |= &w->s[i] != s && w->s[i].used && w->s[i].wd == s->wd;
                if (!shared)
                        (void)inotify_rm_watch(w->ino, s->wd);
        }
        s->used = false;
        agent_write_status(w->a);
}

static int on_session_new(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
        const char *id, *path;
        if (sd_bus_message_read(m, "so", &id, &path) >= 0)
                (void)add_session(userdata, id, path);
        return 0;
}

static int on_session_removed(sd_bus_message *m, void *userdata, sd_bus_error *e)
{
        idle_watch *w = userdata;
        const char *id, *path;
        sess *s;
        if (sd_bus_message_read(m, "so", &id, &path) >= 0 && (s = find_session(w, id))) {
                if (s->state == SESS_FROZEN)
                        log_notice("Session %s ended while locked.", s->id);
                remove_session(w, s);
        }
        return 0;
}

static int on_inotify(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
        idle_watch *w = userdata;
        _Alignas(struct inotify_event) char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        int64_t now = now_rt();
        for (ssize_t off = 0; off < n;) {
                const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
                for (size_t i = 0; i < SESSIONS_MAX; i++)
                        if (w->s[i].used && w->s[i].wd == ev->wd && (ev->mask & IN_ACCESS))
                                w->s[i].last_input = now;
                off += (ssize_t)(sizeof *ev + ev->len);
        }
        return 0;
}

/* Graphical sessions: idle as the desktop reports it to logind, and the locker's answer. */
static void check_graphical(idle_watch *w, sess *s)
{
        int hint = 0, locked = 0;
        uint64_t since = 0;
        /* Idle since the desktop says, but never before the last unlock: a desktop frozen
         * by the agent's lock could not clear IdleHint, and a locker's unlock is input. */
        if (prop_trivial(w, s, "IdleHint", 'b', &hint) >= 0 && prop_trivial(w, s, "IdleSinceHint", 't', &since) >= 0)
                s->last_input = hint && since > 0 ? idle_latest((int64_t)since, s->unlock_rt) : now_rt();
        if (s->state == SESS_FROZEN)
                vt_keep_front(s);
        (void)prop_trivial(w, s, "LockedHint", 'b', &locked);
        if (s->state == SESS_ASKED && locked) {
                set_state(s, SESS_LOCKER);
                record(s, "session.lock", "action", "locker");
        } else if (s->state == SESS_ASKED && now_mono() - s->since > LOCKER_WAIT_US) {
                /* No locker answered: the agent's own lock, never an open session. */
                log_warning("Session %s: no screen locker set LockedHint within %.1f s; the agent locks it.", s->id,
                            LOCKER_WAIT_US / 1e6);
                lock_frozen(s, "lock-no-locker");
        } else if (s->state == SESS_LOCKER && !locked) {
                set_state(s, SESS_OPEN);
                s->unlock_rt = s->last_input = now_rt();
                record(s, "session.unlock", "how", "locker");
        }
}

static int on_tick(sd_event_source *src, uint64_t usec, void *userdata)
{
        idle_watch *w = userdata;
        uint32_t timeout = w->a->cfg->idle.timeout;
        for (size_t i = 0; i < SESSIONS_MAX; i++) {
                sess *s = &w->s[i];
                if (!s->used || s->ignored)
                        continue;
                /* Until logind has put the leader in the session's scope, pam_open_session
                 * has not returned: no shell yet, nothing typed, so no idle time either. */
                if (!s->graphical && !s->scoped && s->state == SESS_OPEN) {
                        if (leader_in_scope(s) == -ESRCH) {
                                s->last_input = now_rt();
                                continue;
                        }
                        s->scoped = true;
                }
                if (s->graphical)
                        check_graphical(w, s);
                else if (!s->tty[0] && find_tty(s) == 0)
                        watch_tty(w, s);
                if (s->state == SESS_FROZEN && s->helper == 0 && now_mono() - s->since > RESPAWN_US) {
                        s->since = now_mono();
                        (void)spawn_prompt(s);
                }
                /* No terminal and not graphical: nothing to type into (ssh host command,
                 * scp), so nothing to lock. Sessions with a terminal whose input cannot be
                 * seen keep last_input from their start: they lock at the timeout. */
                if (s->state == SESS_OPEN && (s->tty[0] || s->graphical) && !w->a->cfg->idle.exempt &&
                    now_rt() >= idle_deadline(s->last_input, timeout))
                        lock_session(w, s);
        }
        (void)sd_event_source_set_time(src, usec + TICK_US);
        return 0;
}

static int list_sessions(idle_watch *w)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(w->bus, LOGIN1, LOGIN1_PATH, LOGIN1_MANAGER, "ListSessions", NULL, &reply, NULL);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(susso)");
        if (r < 0)
                return r;
        const char *id, *user, *seat, *path;
        uint32_t uid;
        while ((r = sd_bus_message_read(reply, "(susso)", &id, &uid, &user, &seat, &path)) > 0)
                (void)add_session(w, id, path);
        return r;
}

int idle_start(agent *a, idle_watch **ret)
{
        const mamori_config *c = a->cfg;
        if (c->idle.exempt) {
                /* R-IDLE-2: an exempt host, recorded with its approver and reason at every start. */
                log_notice("Idle lock: this host is exempt (approved by %s: %s).", c->idle.exempt_approver,
                           c->idle.exempt_reason);
                (void)evidence_event(a, "idle.exempt", "approver", c->idle.exempt_approver, "reason",
                                     c->idle.exempt_reason, NULL);
                /* Sessions are still watched: the exemption is from the idle lock only, a
                 * pulled authentication token still locks (R-AUTH-4). */
        }
        idle_watch *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->a = a;
        w->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGCHLD); /* sd_event_add_child() needs it blocked */
        sigprocmask(SIG_BLOCK, &ss, NULL);
        int r = w->ino < 0 ? -errno : sd_bus_open_system(&w->bus);
        if (r >= 0)
                r = sd_bus_attach_event(w->bus, a->event, 0);
        if (r >= 0)
                r = sd_bus_match_signal(w->bus, NULL, LOGIN1, LOGIN1_PATH, LOGIN1_MANAGER, "SessionNew", on_session_new, w);
        if (r >= 0)
                r = sd_bus_match_signal(w->bus, NULL, LOGIN1, LOGIN1_PATH, LOGIN1_MANAGER, "SessionRemoved",
                                        on_session_removed, w);
        if (r >= 0)
                r = sd_event_add_io(a->event, &w->ino_src, w->ino, EPOLLIN, on_inotify, w);
        if (r >= 0)
                r = list_sessions(w);
        if (r >= 0)
                r = sd_event_add_time_relative(a->event, &w->timer, CLOCK_MONOTONIC, TICK_US, 100000, on_tick, w);
        if (r >= 0)
                r = sd_event_source_set_enabled(w->timer, SD_EVENT_ON);
        if (r < 0) {
                idle_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

void idle_free(idle_watch *w)
{
        if (!w)
                return;
        for (size_t i = 0; i < SESSIONS_MAX; i++)
                if (w->s[i].used)
                        helper_gone(&w->s[i]); /* prompts die with the agent's cgroup; sessions stay frozen */
        sd_event_source_disable_unref(w->timer);
        sd_event_source_disable_unref(w->ino_src);
        if (w->ino >= 0)
                close(w->ino);
        sd_bus_flush_close_unref(w->bus);
        free(w);
}

int idle_lock_user(agent *a, const char *user, const char *why)
{
        idle_watch *w = a->idle;
        if (!w) /* no session watch (no logind): nothing can be locked */
                return -ENOTCONN;
        int n = 0;
        for (size_t i = 0; i < SESSIONS_MAX; i++) {
                sess *s = &w->s[i];
                if (!s->used || s->ignored || s->state != SESS_OPEN || !streq(s->user, user))
                        continue;
                log_info("Session %s (%s): locking now (%s).", s->id, s->user, why);
                if (s->graphical || (s->remote && streq(w->a->cfg->idle.remote_action, "terminate")))
                        lock_session(w, s);
                else
                        lock_frozen(s, why); /* recorded as session.lock with action=why */
                n++;
        }
        return n;
}

void idle_write_status(const agent *a, int fd)
{
        const idle_watch *w = a->idle;
        unsigned watched = 0, locked = 0;
        for (size_t i = 0; w && i < SESSIONS_MAX; i++)
                if (w->s[i].used && !w->s[i].ignored) {
                        watched++;
                        locked += w->s[i].state == SESS_FROZEN || w->s[i].state == SESS_LOCKER;
                }
        dprintf(fd, "idle=%s\nidle_timeout=%" PRIu32 "\nidle_exempt=%s\nidle_sessions=%u\nidle_locked=%u\n",
                a->cfg->idle.exempt ? "exempt" : w ? "watching" : "unavailable", a->cfg->idle.timeout,
                a->cfg->idle.exempt ? "yes" : "no", watched, locked);
        if (a->cfg->idle.exempt) /* R-IDLE-2: shown by mediactl status (no control characters: config.c) */
                dprintf(fd, "idle_exempt_approver=%s\nidle_exempt_reason=%s\n", a->cfg->idle.exempt_approver,
                        a->cfg->idle.exempt_reason);
}
