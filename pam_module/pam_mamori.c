/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pam_mamori: login hardening through policyd (R-AUTH-1..3, R-AUTH-7, R-EV-5).
 *
 * The module holds no state and writes no files: every decision comes from
 * policyd over its socket, asked as the calling process's uid, so a screen locker
 * running as the user can authenticate its own user while the counters and the
 * TOTP secret stay out of the user's reach. Faces:
 *
 *   auth     preauth  | authfail | authsucc   (around pam_unix, pam_faillock's shape)
 *   account  banned/locked even without authentication; previous login
 *   session  login and logout evidence; registers the session for the idle watch
 *   password records the change; composition and history are pam_pwquality's and
 *            pam_pwhistory's job
 *
 * Options: preauth, authfail, authsucc, socket=PATH, config=PATH, debug.
 * When policyd cannot be reached see unreachable() and pam_mamori(8).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "auth-policy.h"
#include "client.h"
#include "config.h"
#include "i18n.h"
#include "mamori-config.h"
#include "wire.h"

#define TIMEOUT_S 10
#define TOKEN_KEY "pam_mamori_attempt"
#define SESSION_KEY "pam_mamori_session"
#define TOTP_KEY "pam_mamori_totp" /* preauth said: the second factor is needed and enrolled */

/* The catalogs: the installed ones; the test build of this module (tests/pam) binds
 * the build tree's po/ instead. */
#ifndef MAMORI_PAM_LOCALEDIR
#define MAMORI_PAM_LOCALEDIR MAMORI_LOCALEDIR
#endif

/* What the user reads (gettext, po/ja.po; the terminals' users read Japanese). */
#define MSG_LOCKED N_("The account is locked until %s.")
#define MSG_BANNED N_("Login for this account is prohibited.")
#define MSG_CODE_PROMPT N_("Verification code: ")
#define MSG_CODE_WRONG N_("The verification code is not correct.")
#define MSG_NOT_ENROLLED N_("No second factor is enrolled; contact your administrator.")
#define MSG_UNREACHABLE N_("The authentication service cannot be reached.")
#define MSG_NO_TOKEN N_("Your authentication token is not plugged in.")

typedef enum mode { MODE_NONE, MODE_PREAUTH, MODE_AUTHFAIL, MODE_AUTHSUCC } mode;

typedef struct opts {
        mode mode;
        const char *socket;
        const char *config;
        bool debug;
} opts;

typedef struct login {
        const char *user, *service, *rhost, *tty;
} login;

/* Says fmt in the program's language (gettext) and, when that is not English, in
 * English on the next line too: the terminals' users read Japanese, an administrator
 * helping them may not. style is PAM_ERROR_MSG or PAM_TEXT_INFO. */
/* The translation of a format: a function of its own, so that the compiler checks the
 * arguments against the English format (format_arg) and sees no null format. */
__attribute__((format_arg(1), returns_nonnull)) static const char *translated(const char *fmt)
{
        const char *t = _(fmt);
        return t ? t : fmt;
}

__attribute__((format(printf, 3, 4))) static void say(pam_handle_t *ph, int style, const char *fmt, ...)
{
        char local[512], en[512], both[1040];
        va_list ap, ap2;
        va_start(ap, fmt);
        va_copy(ap2, ap);
        vsnprintf(local, sizeof local, translated(fmt), ap);
        vsnprintf(en, sizeof en, fmt, ap2);
        va_end(ap2);
        va_end(ap);
        if (strcmp(local, en) == 0)
                (void)pam_prompt(ph, style, NULL, "%s", en);
        else {
                snprintf(both, sizeof both, "%s\n%s", local, en);
                (void)pam_prompt(ph, style, NULL, "%s", both);
        }
}

static void parse_opts(pam_handle_t *ph, int argc, const char **argv, opts *o)
{
        mamori_i18n_bind(MAMORI_PAM_LOCALEDIR); /* every face comes through here */
        *o = (opts){.config = MAMORI_CONFIG_PATH};
        for (int i = 0; i < argc; i++) {
                if (strcmp(argv[i], "preauth") == 0)
                        o->mode = MODE_PREAUTH;
                else if (strcmp(argv[i], "authfail") == 0)
                        o->mode = MODE_AUTHFAIL;
                else if (strcmp(argv[i], "authsucc") == 0)
                        o->mode = MODE_AUTHSUCC;
                else if (strncmp(argv[i], "socket=", 7) == 0)
                        o->socket = argv[i] + 7;
                else if (strncmp(argv[i], "config=", 7) == 0)
                        o->config = argv[i] + 7;
                else if (strcmp(argv[i], "debug") == 0)
                        o->debug = true;
                else
                        pam_syslog(ph, LOG_ERR, "unknown option \"%s\", ignoring.", argv[i]);
        }
}

/* Fills in the login's items; returns PAM_SUCCESS or the error of pam_get_user. */
static int get_login(pam_handle_t *ph, login *l)
{
        const void *v;
        int r = pam_get_user(ph, &l->user, NULL);
        if (r != PAM_SUCCESS || !l->user || !*l->user)
                return r != PAM_SUCCESS ? r : PAM_USER_UNKNOWN;
        l->service = pam_get_item(ph, PAM_SERVICE, &v) == PAM_SUCCESS && v ? v : "";
        l->rhost = pam_get_item(ph, PAM_RHOST, &v) == PAM_SUCCESS && v ? v : "";
        l->tty = pam_get_item(ph, PAM_TTY, &v) == PAM_SUCCESS && v ? v : "";
        return PAM_SUCCESS;
}

/* Connects with a timeout, so a hung policyd cannot hang the login. Returns fd or -errno. */
static int connect_policyd(const opts *o)
{
        int fd = mamori_client_connect(mamori_client_socket_path(o->socket));
        if (fd < 0)
                return fd;
        struct timeval tv = {.tv_sec = TIMEOUT_S};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        return fd;
}

/* Asks policyd one question about the login. Returns 0 and the reply, or -errno
 * when policyd could not be asked. extra may add fields. */
static int ask(const opts *o, uint16_t type, const login *l, uint64_t token, const char *code, mamori_msg **ret)
{
        mamori_msg *m;
        int r = mamori_msg_new(type, 0, &m);
        if (r < 0)
                return r;
        mamori_msg_put_str(m, MAMORI_F_USER, l->user);
        mamori_msg_put_str(m, MAMORI_F_AUTH_SERVICE, l->service);
        mamori_msg_put_str(m, MAMORI_F_AUTH_RHOST, l->rhost);
        mamori_msg_put_str(m, MAMORI_F_AUTH_TTY, l->tty);
        if (token)
                mamori_msg_put_u64(m, MAMORI_F_AUTH_SESSION, token);
        if (code)
                mamori_msg_put_str(m, MAMORI_F_AUTH_CODE, code);
        if (type == MAMORI_MSG_SESSION_OPEN)
                mamori_msg_put_u32(m, MAMORI_F_AUTH_PID, (uint32_t)getpid());
        int fd = connect_policyd(o);
        r = fd;
        if (fd >= 0) {
                r = mamori_client_call(fd, m, ret);
                close(fd);
        }
        if (code) /* the frame held the code: wipe it */
                explicit_bzero(m->buf, m->alloc);
        mamori_msg_free(m);
        return r;
}

/* True for root on a local console: no remote host, tty ttyN, /dev/ttyN or console. */
static bool root_on_console(const login *l)
{
        const char *t = l->tty;
        if (strcmp(l->user, "root") != 0 || *l->rhost)
                return false;
        if (strncmp(t, "/dev/", 5) == 0)
                t += 5;
        if (strcmp(t, "console") == 0)
                return true;
        return strncmp(t, "tty", 3) == 0 && t[3] && strspn(t + 3, "0123456789") == strlen(t + 3);
}

/* What a face does when policyd cannot be asked (or could not store the state).
 * Root on a local console is let through to the password (PAM_IGNORE, fail open
 * on purpose: a broken daemon must never lock a terminal out for good). With
 * auth.unreachable = "closed" everybody else is refused (fail closed); with
 * "mfa-closed" (the default) users who need the second factor are refused (fail
 * closed) and the others are left to the password (fail open: the lockout is not
 * enforced while policyd is down). A policy file that cannot be read counts as
 * "closed". */
static int unreachable(pam_handle_t *ph, const opts *o, const login *l, int why)
{
        if (root_on_console(l)) {
                pam_syslog(ph, LOG_WARNING, "policyd unreachable (%s): root on the local console let through",
                           strerror(-why));
                return PAM_IGNORE;
        }
        mamori_config *cfg = NULL;
        int r = mamori_config_load(o->config, &cfg, NULL);
        if (r == -ENOENT)
                r = mamori_config_new_default(&cfg);
        bool closed = r < 0 || strcmp(cfg->auth.unreachable, "closed") == 0 ||
                      mamori_auth_needs_mfa(cfg, l->user, l->service) ||
                      mamori_auth_needs_token(cfg, l->user); /* nobody can say the token is there */
        mamori_config_free(cfg);
        pam_syslog(ph, LOG_ERR, "policyd unreachable (%s): %s for user \"%s\"", strerror(-why),
                   closed ? "refused" : "password alone decides", l->user);
        if (!closed)
                return PAM_IGNORE;
        say(ph, PAM_ERROR_MSG, MSG_UNREACHABLE);
        return PAM_AUTHINFO_UNAVAIL;
}

/* Tells the user the account is locked (until when) or banned. */
static void say_locked(pam_handle_t *ph, const mamori_msg *m)
{
        uint8_t banned = 0;
        int64_t until = 0;
        (void)mamori_msg_get_u8(m, MAMORI_F_AUTH_BANNED, &banned);
        (void)mamori_msg_get_i64(m, MAMORI_F_AUTH_UNTIL, &until);
        if (banned) {
                say(ph, PAM_ERROR_MSG, MSG_BANNED);
                return;
        }
        char when[64] = "?";
        time_t t = (time_t)(until / 1000000);
        struct tm tm;
        if (localtime_r(&t, &tm))
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        say(ph, PAM_ERROR_MSG, MSG_LOCKED, when);
}

/* A refusal that is neither a lock nor a ban: says so if it is the missing token. */
static void say_denied(pam_handle_t *ph, const mamori_msg *m)
{
        uint8_t absent = 0;
        if (mamori_msg_get_u8(m, MAMORI_F_AUTH_TOKEN_ABSENT, &absent) == 0 && absent)
                say(ph, PAM_ERROR_MSG, MSG_NO_TOKEN);
}

static void free_data(pam_handle_t *ph, void *data, int status)
{
        free(data);
}

/* Keeps a value for a later call in the same PAM transaction (the handle, not a global). */
static void keep_u64(pam_handle_t *ph, const char *key, uint64_t v)
{
        uint64_t *p = malloc(sizeof *p);
        if (!p)
                return;
        *p = v;
        if (pam_set_data(ph, key, p, free_data) != PAM_SUCCESS)
                free(p);
}

static uint64_t kept_u64(pam_handle_t *ph, const char *key)
{
        const void *p = NULL;
        if (pam_get_data(ph, key, &p) != PAM_SUCCESS || !p)
                return 0;
        return *(const uint64_t *)p;
}

/* preauth: refuse a locked or banned account before the password is asked;
 * reserve one attempt (it counts as a failure until a success gives it back). */
static int do_preauth(pam_handle_t *ph, const opts *o, const login *l)
{
        mamori_msg *m = NULL;
        int ret, r = ask(o, MAMORI_MSG_AUTH_PREAUTH, l, 0, NULL, &m);
        uint64_t token = 0;
        if (r < 0) {
                ret = unreachable(ph, o, l, r);
                goto out;
        }
        switch (m->status) {
        case MAMORI_OK:
                if (mamori_msg_get_u64(m, MAMORI_F_AUTH_SESSION, &token) == 0)
                        keep_u64(ph, TOKEN_KEY, token);
                uint8_t need = 0, enrolled = 0;
                (void)mamori_msg_get_u8(m, MAMORI_F_AUTH_NEED_TOTP, &need);
                (void)mamori_msg_get_u8(m, MAMORI_F_AUTH_TOTP, &enrolled);
                if (need && enrolled)
                        keep_u64(ph, TOTP_KEY, 1);
                ret = PAM_SUCCESS;
                break;
        case MAMORI_E_LOCKED:
                say_locked(ph, m);
                ret = PAM_AUTH_ERR; /* fail closed: locked */
                break;
        case MAMORI_E_DENIED: /* not our own account as a non-root caller, or no token (R-AUTH-4) */
                say_denied(ph, m);
                ret = PAM_AUTH_ERR;
                break;
        default: /* storage failure: as if unreachable */
                ret = unreachable(ph, o, l, -EIO);
                break;
        }
out:
        mamori_msg_free(m);
        return ret;
}

/* authfail: the password was wrong. Always fails; says so if it locked the account. */
static int do_authfail(pam_handle_t *ph, const opts *o, const login *l)
{
        mamori_msg *m = NULL;
        int r = ask(o, MAMORI_MSG_AUTH_FAIL, l, kept_u64(ph, TOKEN_KEY), NULL, &m);
        if (r < 0)
                pam_syslog(ph, LOG_ERR, "cannot count the failure of \"%s\": %s", l->user, strerror(-r));
        else if (m->status == MAMORI_E_LOCKED)
                say_locked(ph, m);
        mamori_msg_free(m);
        return PAM_AUTH_ERR; /* after a failed password this face never lets anyone in */
}

/* Asks for the TOTP code and has policyd check it. */
static int second_factor(pam_handle_t *ph, const opts *o, const login *l, uint64_t token)
{
        char *code = NULL;
        mamori_msg *m = NULL;
        int ret, r = pam_prompt(ph, PAM_PROMPT_ECHO_OFF, &code, "%s", _(MSG_CODE_PROMPT));
        if (r != PAM_SUCCESS || !code) {
                ret = PAM_AUTH_ERR; /* fail closed: no code, no login */
                goto out;
        }
        r = ask(o, MAMORI_MSG_AUTH_SUCCESS, l, token, code, &m);
        if (r < 0) {
                ret = unreachable(ph, o, l, r);
                goto out;
        }
        switch (m->status) {
        case MAMORI_OK:
                ret = PAM_SUCCESS;
                break;
        case MAMORI_E_LOCKED:
                say_locked(ph, m);
                ret = PAM_AUTH_ERR;
                break;
        case MAMORI_E_INVALID:
                say(ph, PAM_ERROR_MSG, MSG_CODE_WRONG);
                ret = PAM_AUTH_ERR;
                break;
        default:
                ret = m->status == MAMORI_E_STORAGE ? unreachable(ph, o, l, -EIO) : PAM_AUTH_ERR;
                break;
        }
out:
        if (code) {
                explicit_bzero(code, strlen(code));
                free(code);
        }
        mamori_msg_free(m);
        return ret;
}

/* authsucc: the password was right. Still refused while locked; then the second
 * factor where the policy wants it. */
static int do_authsucc(pam_handle_t *ph, const opts *o, const login *l)
{
        uint64_t token = kept_u64(ph, TOKEN_KEY);
        mamori_msg *m = NULL;
        int ret, r;
        if (!token) { /* a stack without preauth: reserve the attempt now */
                r = do_preauth(ph, o, l);
                if (r != PAM_SUCCESS)
                        return r;
                token = kept_u64(ph, TOKEN_KEY);
        }
        /* The code goes with the success when preauth said it is needed; policyd
         * checks the lock and the policy again either way. */
        if (kept_u64(ph, TOTP_KEY))
                return second_factor(ph, o, l, token);
        r = ask(o, MAMORI_MSG_AUTH_SUCCESS, l, token, NULL, &m);
        if (r < 0) {
                ret = unreachable(ph, o, l, r);
                goto out;
        }
        uint8_t need = 0, enrolled = 0;
        switch (m->status) {
        case MAMORI_OK:
                (void)mamori_msg_get_u8(m, MAMORI_F_AUTH_NEED_TOTP, &need);
                (void)mamori_msg_get_u8(m, MAMORI_F_AUTH_TOTP, &enrolled);
                if (need && !enrolled) {
                        say(ph, PAM_ERROR_MSG, MSG_NOT_ENROLLED);
                        ret = PAM_AUTH_ERR; /* fail closed: the policy wants a factor they lack */
                } else
                        ret = need ? second_factor(ph, o, l, token) : PAM_SUCCESS;
                break;
        case MAMORI_E_LOCKED:
                say_locked(ph, m);
                ret = PAM_AUTH_ERR;
                break;
        case MAMORI_E_DENIED:
                ret = PAM_AUTH_ERR;
                break;
        default:
                ret = unreachable(ph, o, l, -EIO);
                break;
        }
out:
        mamori_msg_free(m);
        return ret;
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *ph, int flags, int argc, const char **argv)
{
        opts o;
        login l;
        int ret;
        parse_opts(ph, argc, argv, &o);
        ret = get_login(ph, &l);
        if (ret != PAM_SUCCESS)
                goto out; /* fail closed: no user, no login */
        switch (o.mode) {
        case MODE_PREAUTH:
                ret = do_preauth(ph, &o, &l);
                break;
        case MODE_AUTHFAIL:
                ret = do_authfail(ph, &o, &l);
                break;
        case MODE_AUTHSUCC:
                ret = do_authsucc(ph, &o, &l);
                break;
        default:
                pam_syslog(ph, LOG_ERR, "auth needs one of preauth, authfail, authsucc");
                ret = PAM_SERVICE_ERR; /* fail closed: a misconfigured stack */
                break;
        }
out:
        if (o.debug)
                pam_syslog(ph, LOG_DEBUG, "auth: %s", pam_strerror(ph, ret));
        return ret;
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *ph, int flags, int argc, const char **argv)
{
        return PAM_SUCCESS;
}

/* Shows the previous login (R-AUTH-7). */
static void say_last_login(pam_handle_t *ph, const mamori_msg *m)
{
        int64_t t;
        const char *host = "", *tty = "";
        if (mamori_msg_get_i64(m, MAMORI_F_AUTH_LAST_TIME, &t) < 0)
                return;
        (void)mamori_msg_get_str(m, MAMORI_F_AUTH_LAST_HOST, 256, &host);
        (void)mamori_msg_get_str(m, MAMORI_F_AUTH_LAST_TTY, 256, &tty);
        char when[64] = "?";
        time_t s = (time_t)(t / 1000000);
        struct tm tm;
        if (localtime_r(&s, &tm))
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        if (*host && *tty)
                say(ph, PAM_TEXT_INFO, N_("Last login: %s from %s on %s"), when, host, tty);
        else if (*host)
                say(ph, PAM_TEXT_INFO, N_("Last login: %s from %s"), when, host);
        else if (*tty)
                say(ph, PAM_TEXT_INFO, N_("Last login: %s on %s"), when, tty);
        else
                say(ph, PAM_TEXT_INFO, N_("Last login: %s"), when);
}

PAM_EXTERN int pam_sm_acct_mgmt(pam_handle_t *ph, int flags, int argc, const char **argv)
{
        opts o;
        login l;
        mamori_msg *m = NULL;
        int ret, r;
        parse_opts(ph, argc, argv, &o);
        ret = get_login(ph, &l);
        if (ret != PAM_SUCCESS)
                goto out; /* fail closed */
        r = ask(&o, MAMORI_MSG_AUTH_ACCOUNT, &l, 0, NULL, &m);
        if (r < 0) {
                ret = unreachable(ph, &o, &l, r);
                goto out;
        }
        switch (m->status) {
        case MAMORI_OK:
                if (!(flags & PAM_SILENT))
                        say_last_login(ph, m);
                ret = PAM_SUCCESS;
                break;
        case MAMORI_E_LOCKED: /* banned or locked: refused even after ssh keys */
                say_locked(ph, m);
                ret = PAM_PERM_DENIED;
                break;
        case MAMORI_E_DENIED:
                say_denied(ph, m);
                ret = PAM_PERM_DENIED;
                break;
        default:
                ret = unreachable(ph, &o, &l, -EIO);
                break;
        }
out:
        mamori_msg_free(m);
        return ret;
}

PAM_EXTERN int pam_sm_open_session(pam_handle_t *ph, int flags, int argc, const char **argv)
{
        opts o;
        login l;
        mamori_msg *m = NULL;
        int ret, r;
        parse_opts(ph, argc, argv, &o);
        ret = get_login(ph, &l);
        if (ret != PAM_SUCCESS) {
                ret = PAM_SESSION_ERR; /* fail closed */
                goto out;
        }
        r = ask(&o, MAMORI_MSG_SESSION_OPEN, &l, 0, NULL, &m);
        if (r >= 0 && m->status == MAMORI_OK) {
                uint64_t id;
                if (mamori_msg_get_u64(m, MAMORI_F_AUTH_SESSION, &id) == 0)
                        keep_u64(ph, SESSION_KEY, id);
                ret = PAM_SUCCESS;
                goto out;
        }
        /* Login evidence could not be recorded: as when unreachable (fail closed for
         * MFA users or with "closed"; root on the console and the rest pass). */
        ret = unreachable(ph, &o, &l, r < 0 ? r : -EIO);
        if (ret == PAM_AUTHINFO_UNAVAIL)
                ret = PAM_SESSION_ERR;
out:
        mamori_msg_free(m);
        return ret;
}

PAM_EXTERN int pam_sm_close_session(pam_handle_t *ph, int flags, int argc, const char **argv)
{
        opts o;
        login l;
        mamori_msg *m = NULL;
        int r;
        parse_opts(ph, argc, argv, &o);
        if (get_login(ph, &l) != PAM_SUCCESS)
                goto out;
        r = ask(&o, MAMORI_MSG_SESSION_CLOSE, &l, kept_u64(ph, SESSION_KEY), NULL, &m);
        if (r < 0 || m->status != MAMORI_OK)
                pam_syslog(ph, LOG_ERR, "logout of \"%s\" not recorded: %s", l.user,
                           r < 0 ? strerror(-r) : mamori_status_to_string(m->status));
out:
        mamori_msg_free(m);
        return PAM_SUCCESS; /* fail open on purpose: a logout cannot be refused */
}

PAM_EXTERN int pam_sm_chauthtok(pam_handle_t *ph, int flags, int argc, const char **argv)
{
        opts o;
        login l;
        mamori_msg *m = NULL;
        int r;
        parse_opts(ph, argc, argv, &o);
        if (!(flags & PAM_UPDATE_AUTHTOK) || get_login(ph, &l) != PAM_SUCCESS)
                goto out;
        r = ask(&o, MAMORI_MSG_AUTH_PASSWD, &l, 0, NULL, &m);
        if (r < 0 || m->status != MAMORI_OK)
                pam_syslog(ph, LOG_ERR, "password change of \"%s\" not recorded: %s", l.user,
                           r < 0 ? strerror(-r) : mamori_status_to_string(m->status));
out:
        mamori_msg_free(m);
        /* Fail open on purpose: pam_pwquality, pam_pwhistory and pam_unix decide the
         * change; this face only records it. */
        return PAM_IGNORE;
}
