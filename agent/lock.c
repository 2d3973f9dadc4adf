/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-lock: the lock prompt of a text session locked for idleness (docs/design.md
 * "Idle lock"). Spawned by mamori-agent (never through a shell) once the session's
 * programs are frozen; runs as root in the agent's cgroup, so the session's user can
 * neither stop nor signal it. It takes the terminal (saving its settings), says the
 * session is locked and why, and authenticates the session's user through PAM service
 * "mamori-unlock" (the pam_mamori stack: lockout, second factor; every wrong password
 * counts, R-AUTH-1). An administrator (a member of the group given by --admin-group,
 * roles.admin_group) may unlock instead: an empty password is a failed attempt of the
 * user's, after which the prompt asks for an administrator's name (not echoed: it may be
 * a password typed in the wrong place) and authenticates that account through the same
 * stack (R-IDLE-1). It thaws nothing itself: it tells the agent on stdout ("failed
 * <reason>" per refused attempt, "unlocked-by <name>" for an administrator) and exits 0
 * once someone is authenticated, 3 when the terminal is gone; anything else leaves the
 * session frozen and the agent starts a new prompt. Texts go through gettext (po/ja.po)
 * in the agent's locale, the English under them when that is not English.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <locale.h>
#include <poll.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "i18n.h"
#include "idle-logic.h"
#include "mamori-config.h"

#define EXIT_UNLOCKED 0
#define EXIT_ERROR 1
#define EXIT_HANGUP 3
#define LINE_MAX_BYTES 512

typedef struct lock_ctx {
        int tty;
        bool hangup;
        bool empty_password;    /* the last password given was empty: an administrator's turn */
} lock_ctx;

static void say(int fd, const char *s)
{
        for (size_t off = 0, n = strlen(s); off < n;) {
                ssize_t k = write(fd, s + off, n - off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return;
                off += (size_t)k;
        }
}

/* Reads one line from the terminal into a malloc'd string (the caller, PAM, frees it).
 * Returns 0, or -EIO on hang-up or end of input (then ctx->hangup is set). */
static int read_line(lock_ctx *c, bool echo, char **ret)
{
        struct termios t;
        if (tcgetattr(c->tty, &t) == 0) {
                t.c_lflag = echo ? (t.c_lflag | ECHO) : (t.c_lflag & ~(tcflag_t)ECHO);
                /* TCSANOW, not TCSAFLUSH: what the user typed after the banner is the answer
                 * (only what was typed before the lock is dropped, once, in run()). */
                (void)tcsetattr(c->tty, TCSANOW, &t);
        }
        char *buf = malloc(LINE_MAX_BYTES);
        if (!buf)
                return -ENOMEM;
        size_t n = 0;
        for (unsigned eofs = 0;;) {
                char ch;
                ssize_t k = read(c->tty, &ch, 1);
                if (k < 0 && errno == EINTR)
                        continue;
                /* ^D at the start of a line reads as end of input on a terminal that is
                 * still there: ignored (it must not count as a hang-up, which ends the
                 * lock). A hung-up terminal reads 0 (or EIO) for ever and polls POLLHUP. */
                if (k == 0 && ++eofs < 64) {
                        struct pollfd p = {.fd = c->tty, .events = POLLIN};
                        if (poll(&p, 1, 0) >= 0 && !(p.revents & (POLLHUP | POLLERR | POLLNVAL)))
                                continue;
                }
                if (k <= 0) {
                        explicit_bzero(buf, LINE_MAX_BYTES);
                        free(buf);
                        c->hangup = true;
                        return -EIO;
                }
                if (ch == '\n' || ch == '\r')
                        break;
                if (n < LINE_MAX_BYTES - 1)
                        buf[n++] = ch;
        }
        buf[n] = '\0';
        if (!echo)
                say(c->tty, "\r\n");
        *ret = buf;
        return 0;
}

/* PAM's conversation, on the locked terminal only. */
static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *data)
{
        lock_ctx *c = data;
        if (n <= 0 || n > PAM_MAX_NUM_MSG)
                return PAM_CONV_ERR;
        struct pam_response *r = calloc((size_t)n, sizeof *r);
        if (!r)
                return PAM_BUF_ERR;
        for (int i = 0; i < n; i++) {
                const char *m = msg[i]->msg ?: "";
                switch (msg[i]->msg_style) {
                case PAM_PROMPT_ECHO_OFF:
                case PAM_PROMPT_ECHO_ON:
                        say(c->tty, m);
                        if (read_line(c, msg[i]->msg_style == PAM_PROMPT_ECHO_ON, &r[i].resp) < 0)
                                goto fail;
                        if (msg[i]->msg_style == PAM_PROMPT_ECHO_OFF)
                                c->empty_password = r[i].resp[0] == '\0';
                        break;
                case PAM_ERROR_MSG:
                case PAM_TEXT_INFO:
                        say(c->tty, m);
                        say(c->tty, "\r\n");
                        break;
                default:
                        goto fail;
                }
        }
        *resp = r;
        return PAM_SUCCESS;
fail:
        for (int i = 0; i < n; i++)
                if (r[i].resp) {
                        explicit_bzero(r[i].resp, strlen(r[i].resp));
                        free(r[i].resp);
                }
        free(r);
        return PAM_CONV_ERR;
}

/* One authentication of user through the pam_mamori stack. Returns PAM_SUCCESS or a PAM error. */
static int authenticate(lock_ctx *c, const char *user, const char *tty, const char *rhost)
{
        struct pam_conv pc = {conv, c};
        pam_handle_t *h = NULL;
        int r = pam_start("mamori-unlock", user, &pc, &h);
        if (r != PAM_SUCCESS)
                return r;
        (void)pam_set_item(h, PAM_TTY, tty + strlen("/dev/"));
        if (rhost && *rhost)
                (void)pam_set_item(h, PAM_RHOST, rhost);
        r = pam_authenticate(h, 0);
        if (r == PAM_SUCCESS)
                r = pam_acct_mgmt(h, 0); /* locked and banned accounts are refused here too */
        pam_end(h, r);
        return r;
}

/* Opens the session's own terminal: a validated path, a character device with the number
 * the path must have, owned by the session's user. Returns the fd or -errno. */
static int open_tty(const char *path, uid_t uid)
{
        char canon[IDLE_TTY_MAX];
        dev_t want;
        if (idle_tty_path(path, canon) < 0 || strcmp(canon, path) != 0 || idle_tty_devnum(path, &want) < 0)
                return -EINVAL;
        int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != want || st.st_uid != uid || !isatty(fd)) {
                close(fd);
                return -EPERM;
        }
        return fd;
}

/* One text in the terminal's language, and the English under it when that differs. */
static void say_text(int tty, const char *indent, const char *english, const char *end)
{
        const char *local = _(english);
        say(tty, indent);
        say(tty, local);
        say(tty, end);
        if (strcmp(local, english) != 0) {
                say(tty, indent);
                say(tty, english);
                say(tty, end);
        }
}

/* Why the session was locked (--reason, the agent's session.lock action). */
static const char *reason_text(const char *reason)
{
        if (reason && strcmp(reason, "token-removed") == 0)
                return N_("This session was locked because the authentication token was removed.");
        if (reason && strcmp(reason, "lock-no-locker") == 0)
                return N_("This session was locked after a period without input (no screen locker answered).");
        return N_("This session was locked after a period without input.");
}

static void banner(int tty, const char *user, const char *rhost, const char *reason, bool admin)
{
        say(tty, "\r\n\r\n  ******************************************************************\r\n");
        say_text(tty, "  ", reason_text(reason), "\r\n");
        say_text(tty, "  ", N_("Your programs are paused and resume once you unlock."), "\r\n");
        say(tty, "  ******************************************************************\r\n  ");
        say(tty, _("User:"));
        say(tty, " ");
        say(tty, user);
        if (rhost && *rhost) {
                say(tty, "   ");
                say(tty, _("From:"));
                say(tty, " ");
                say(tty, rhost);
        }
        say(tty, "\r\n");
        if (reason && strcmp(reason, "token-removed") == 0)
                say_text(tty, "  ", N_("Insert the token, then enter the password to unlock."), "\r\n");
        else
                say_text(tty, "  ", N_("Enter the password to unlock."), "\r\n");
        if (admin)
                say_text(tty, "  ",
                         N_("An administrator: press Enter at the password prompt, then give your user name."),
                         "\r\n");
        say(tty, "\r\n");
}

/* Whether name is a member of group (primary or supplementary). Cannot tell: no (deny). */
static bool in_group(const char *name, const char *group)
{
        struct group *g = getgrnam(group);
        struct passwd *pw = getpwnam(name);
        if (!g || !pw)
                return false;
        gid_t groups[256];
        int n = (int)(sizeof groups / sizeof groups[0]);
        if (getgrouplist(name, pw->pw_gid, groups, &n) < 0)
                return false; /* more than 256 groups: refused, not guessed */
        for (int i = 0; i < n; i++)
                if (groups[i] == g->gr_gid)
                        return true;
        return false;
}

/* After an empty password: an administrator's name (not echoed), checked, then their
 * own authentication. Returns 1 unlocked (name in admin), 0 not, -1 hang-up. */
static int admin_turn(lock_ctx *c, const char *tty_path, const char *rhost, const char *group, char *admin,
                      size_t size)
{
        say(c->tty, "  ");
        say(c->tty, _("Administrator's user name (Enter to go back): "));
        char *name = NULL;
        if (read_line(c, false, &name) < 0)
                return -1;
        int ret = 0;
        if (!name[0]) {
                /* back to the user's prompt */
        } else if (strlen(name) >= size || !in_group(name, group)) {
                /* Not said which: the text may be a password typed in the wrong place. */
                printf("failed not-an-administrator\n");
                fflush(stdout);
                say_text(c->tty, "  ", N_("That is not an administrator's account."), "\r\n");
        } else {
                int r = authenticate(c, name, tty_path, rhost);
                if (r == PAM_SUCCESS) {
                        snprintf(admin, size, "%s", name);
                        ret = 1;
                } else if (!c->hangup) {
                        printf("failed administrator %s: %s\n", name, pam_strerror(NULL, r));
                        fflush(stdout);
                        say_text(c->tty, "  ", N_("Authentication failed."), "\r\n");
                }
        }
        explicit_bzero(name, strlen(name));
        free(name);
        return c->hangup ? -1 : ret;
}

static int run(const char *tty_path, const char *user, uid_t uid, const char *rhost, const char *reason,
               const char *admin_group)
{
        int fd = open_tty(tty_path, uid);
        if (fd < 0) {
                fprintf(stderr, "mamori-lock: %s: not the session's terminal (%s)\n", tty_path, strerror(-fd));
                return EXIT_ERROR;
        }
        lock_ctx c = {.tty = fd};
        struct termios saved, t;
        bool have_saved = tcgetattr(fd, &saved) == 0;
        if (have_saved) {
                /* Canonical input, no signals from ^C/^Z (they would wait for the frozen
                 * programs and hit them at unlock), no echo while the password is typed. */
                t = saved;
                t.c_lflag |= ICANON;
                t.c_lflag &= ~(tcflag_t)(ISIG | ECHO);
                t.c_iflag |= ICRNL;
                t.c_oflag |= OPOST | ONLCR;
                (void)tcsetattr(fd, TCSAFLUSH, &t); /* and drop what was typed before the lock */
        }
        int rc = EXIT_HANGUP;
        for (unsigned attempt = 0; !c.hangup; attempt++) {
                banner(fd, user, rhost, reason, admin_group != NULL);
                c.empty_password = false;
                int r = authenticate(&c, user, tty_path, rhost);
                if (r == PAM_SUCCESS) {
                        say_text(fd, "  ", N_("Unlocked."), "\r\n");
                        say(fd, "\r\n");
                        rc = EXIT_UNLOCKED;
                        break;
                }
                if (c.hangup)
                        break;
                /* Every refusal is reported: the agent records session.unlock.failed. */
                printf("failed %s\n", pam_strerror(NULL, r));
                fflush(stdout);
                say_text(fd, "  ", N_("Authentication failed."), "\r\n");
                if (c.empty_password && admin_group) {
                        char admin[LOGIN_NAME_MAX + 1];
                        int a = admin_turn(&c, tty_path, rhost, admin_group, admin, sizeof admin);
                        if (a > 0) {
                                printf("unlocked-by %s\n", admin);
                                fflush(stdout);
                                say_text(fd, "  ", N_("Unlocked by an administrator."), "\r\n");
                                say(fd, "\r\n");
                                rc = EXIT_UNLOCKED;
                                break;
                        }
                }
                sleep(attempt < 3 ? 1 : 3);
        }
        if (have_saved)
                (void)tcsetattr(fd, TCSAFLUSH, &saved);
        close(fd);
        return rc;
}

int main(int argc, char *argv[])
{
        static const struct option lo[] = {
                {"tty", required_argument, NULL, 't'},   {"user", required_argument, NULL, 'u'},
                {"uid", required_argument, NULL, 'U'},   {"rhost", required_argument, NULL, 'r'},
                {"session", required_argument, NULL, 's'}, {"reason", required_argument, NULL, 'R'},
                {"admin-group", required_argument, NULL, 'a'}, {},
        };
        const char *tty = NULL, *user = NULL, *rhost = NULL, *reason = NULL, *admin_group = NULL;
        long uid = -1;
        int c;
        char *end;
        while ((c = getopt_long(argc, argv, "", lo, NULL)) >= 0)
                switch (c) {
                case 't': tty = optarg; break;
                case 'u': user = optarg; break;
                case 'r': rhost = optarg; break;
                case 's': break; /* for ps: which session this prompt belongs to */
                case 'R': reason = optarg; break;
                case 'a': admin_group = optarg; break;
                case 'U':
                        errno = 0;
                        uid = strtol(optarg, &end, 10);
                        if (errno || *end || end == optarg || uid < 0 || uid > INT_MAX)
                                return EXIT_ERROR;
                        break;
                default: return EXIT_ERROR;
                }
        if (!tty || !user || uid < 0 || optind != argc || getuid() != 0) {
                fprintf(stderr, "Usage (root, from mamori-agent): mamori-lock --tty /dev/pts/N --user NAME --uid UID "
                                "[--rhost HOST] [--session ID] [--reason ACTION] [--admin-group GROUP]\n");
                return EXIT_ERROR;
        }
        /* The user must be the one the uid names: the prompt never authenticates someone else. */
        struct passwd *pw = getpwnam(user);
        if (!pw || pw->pw_uid != (uid_t)uid) {
                fprintf(stderr, "mamori-lock: user and uid disagree\n");
                return EXIT_ERROR;
        }
        signal(SIGPIPE, SIG_IGN);
        /* The agent's locale (the system's), passed on by the agent: texts in the
         * terminal's language (R-IDLE-1's prompt is read by the terminal's staff). */
        (void)setlocale(LC_ALL, "");
        mamori_i18n_bind(MAMORI_LOCALEDIR);
        return run(tty, user, (uid_t)uid, rhost, reason, admin_group);
}
