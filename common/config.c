/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The policy-file parser. libconfig does the syntax; this file walks every
 * setting it produced and checks it against one table of known keys, so that a
 * typo or a value of the wrong type is an error naming file, line and key rather
 * than a silently ignored line (DESIGN.md "Configuration").
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"

typedef enum ConfigType {
        CFG_UINT32,
        CFG_BOOL,
        CFG_STRING,     /* char *, never NULL once loaded */
        CFG_STRV,       /* char **, NULL-terminated, never NULL once loaded */
        _CFG_TYPE_MAX,
        _CFG_TYPE_INVALID = -1,
} ConfigType;

typedef struct ConfigKey {
        const char *key;                /* full dotted path, e.g. "evidence.journal" */
        ConfigType type;
        size_t offset;                  /* of the field in mamori_config */
        uint32_t min, max;              /* uint32: value range; string, strv item: length range */
        uint32_t def;                   /* uint32, bool: default */
        const char *def_str;            /* string: default; strv defaults to the empty list */
        bool (*valid)(const char *s);   /* string, strv item: allowed characters, or NULL */
        const char *valid_what;         /* what valid() accepts, for error messages */
} ConfigKey;

/* media.input_rule (R-IN-1). */
static bool valid_input_rule(const char *s)
{
        return streq(s, "registered") || streq(s, "grant");
}

/* Host names in media.*_hosts. */
static bool valid_host(const char *s)
{
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      *s == '-' || *s == '.' || *s == '_'))
                        return false;
        return true;
}

/* USB port paths as the kernel names them: "1-1", "2-1.4.3". */
static bool valid_port(const char *s)
{
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || *s == '-' || *s == '.'))
                        return false;
        return true;
}

/* Most items a string list may have. */
#define CFG_STRV_MAX_ITEMS 1024U

/* User and group names: [A-Za-z_][A-Za-z0-9_-]*, what useradd/groupadd accept portably. */
static bool valid_name(const char *s)
{
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
                return false;
        for (s++; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
                        return false;
        return true;
}

#define NAME_WHAT "a user or group name ([A-Za-z_][A-Za-z0-9_-]*)"

static bool valid_totp_algorithm(const char *s)
{
        return streq(s, "sha1") || streq(s, "sha256") || streq(s, "sha512");
}

static bool valid_unreachable(const char *s)
{
        return streq(s, "mfa-closed") || streq(s, "closed");
}

static bool valid_remote_action(const char *s)
{
        return streq(s, "lock") || streq(s, "terminate");
}

/* agent.allowed_classes: two-digit hex USB classes separated by single spaces; never 08
 * (mass storage is always decided by policyd) or 00 (class given per interface). */
static bool valid_classes(const char *s)
{
        for (const char *p = s;; p += 3) {
                if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]))
                        return false;
                if (p[0] == '0' && (p[1] == '8' || p[1] == '0'))
                        return false;
                if (p[2] == '\0')
                        return true;
                if (p[2] != ' ')
                        return false;
        }
}

/* Free text for evidence (approver, reason): printable, no control characters; UTF-8 allowed. */
static bool valid_text(const char *s)
{
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

/* An absolute path without control characters or "." / ".." components. */
static bool valid_abs_path(const char *s)
{
        if (s[0] != '/')
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;
        for (const char *p = s; (p = strchr(p, '/')); p++) {
                size_t n = strcspn(p + 1, "/");
                if ((n == 1 && p[1] == '.') || (n == 2 && p[1] == '.' && p[2] == '.'))
                        return false;
        }
        return true;
}

/* The key is the field's path in mamori_config, so a row cannot name the wrong field. */
#define KEY_UINT32(field, lo, hi, d)                                                               \
        { #field, CFG_UINT32, offsetof(mamori_config, field), lo, hi, d, NULL, NULL, NULL }
#define KEY_BOOL(field, d) { #field, CFG_BOOL, offsetof(mamori_config, field), 0, 1, d, NULL, NULL, NULL }
#define KEY_NAME(field, d)                                                                         \
        { #field, CFG_STRING, offsetof(mamori_config, field), 1, 32, 0, d, valid_name, NAME_WHAT }
#define KEY_STRV(field, minlen, maxlen, v, what)                                                   \
        { #field, CFG_STRV, offsetof(mamori_config, field), minlen, maxlen, 0, NULL, v, what }

/* Every key of the policy file. rules/mamori.conf documents each one. */
static const ConfigKey config_table[] = {
        /* REQUIREMENTS.md "Roles"; R-PERM-2: the permitting authority is not the admin. */
        KEY_NAME(roles.admin_group, "mamori-admin"),
        KEY_NAME(roles.manager_group, "mamori-manager"),
        KEY_NAME(roles.auditor_group, "mamori-auditor"),
        KEY_NAME(roles.agent_user, "root"),
        /* R-IN-1: input from registered media, or only with a grant; R-OUT-2: encrypted
         * output with or without a grant; R-REG-2: optical exception; R-EXC-1; R-REG-8. */
        { "media.input_rule", CFG_STRING, offsetof(mamori_config, media.input_rule), 1, 16, 0,
          "registered", valid_input_rule, "registered or grant" },
        KEY_BOOL(media.encrypted_output_needs_grant, true),
        KEY_BOOL(media.optical_read, false),
        KEY_BOOL(media.optical_write, false),
        KEY_STRV(media.exempt_hosts, 1, 253, valid_host, "a host name ([A-Za-z0-9._-])"),
        KEY_STRV(media.audit_only_hosts, 1, 253, valid_host, "a host name ([A-Za-z0-9._-])"),
        KEY_STRV(media.allowed_ports, 1, 64, valid_port, "a USB port path such as 1-1.2"),
        /* R-EV-7, R-CRY-4: signed checkpoints make tampering detectable; R-CRY-2: key rotation. */
        KEY_UINT32(evidence.checkpoint_records, 1, 1000000, 1000),
        KEY_UINT32(evidence.checkpoint_seconds, 1, 86400, 10),
        KEY_UINT32(evidence.epoch_seconds, 60, 31622400, 86400),
        /* R-EV-11: retention is a setting, but never below the periods the texts demand:
         * media use 5 y (R-EV-1), login 5 y (R-EV-5), permissions 1 y (R-EV-3). */
        KEY_UINT32(evidence.retention_media_days, 1827, 36525, 1827),
        KEY_UINT32(evidence.retention_login_days, 1827, 36525, 1827),
        KEY_UINT32(evidence.retention_permission_days, 366, 36525, 366),
        KEY_UINT32(evidence.retention_admin_days, 366, 36525, 1827),
        KEY_BOOL(evidence.journal, true),
        /* R-AUTH-1: lockout, with a stricter profile for administrators. */
        KEY_UINT32(auth.deny, 1, 100, 5),
        KEY_UINT32(auth.fail_interval, 1, 604800, 900),
        KEY_UINT32(auth.unlock_time, 1, 604800, 900),
        KEY_UINT32(auth.admin_deny, 1, 100, 3),
        KEY_UINT32(auth.admin_unlock_time, 1, 604800, 3600),
        KEY_STRV(auth.admin_groups, 1, 32, valid_name, NAME_WHAT),
        /* R-AUTH-3: who needs the second factor, on which services. */
        KEY_STRV(auth.mfa_users, 1, 32, valid_name, NAME_WHAT),
        KEY_STRV(auth.mfa_groups, 1, 32, valid_name, NAME_WHAT),
        KEY_STRV(auth.mfa_services, 1, 64, valid_name, NAME_WHAT),
        /* R-AUTH-4: who may log in only with their registered token plugged in. */
        KEY_STRV(auth.token_users, 1, 32, valid_name, NAME_WHAT),
        KEY_STRV(auth.token_groups, 1, 32, valid_name, NAME_WHAT),
        { "auth.totp_algorithm", CFG_STRING, offsetof(mamori_config, auth.totp_algorithm), 1, 6, 0,
          "sha1", valid_totp_algorithm, "sha1, sha256 or sha512" },
        KEY_UINT32(auth.totp_digits, 6, 8, 6),
        KEY_UINT32(auth.totp_window, 0, 10, 1),
        /* What pam_mamori does when policyd cannot be reached (pam_mamori(8)). */
        { "auth.unreachable", CFG_STRING, offsetof(mamori_config, auth.unreachable), 1, 16, 0,
          "mfa-closed", valid_unreachable, "mfa-closed or closed" },
        /* R-IDLE-1: the idle lock, a root-owned setting; R-IDLE-2: a host's exemption
         * names its approver and reason (checked after parsing: check_idle()). */
        KEY_UINT32(idle.timeout, 5, 86400, 900),
        { "idle.remote_action", CFG_STRING, offsetof(mamori_config, idle.remote_action), 1, 16, 0,
          "lock", valid_remote_action, "lock or terminate" },
        KEY_BOOL(idle.exempt, false),
        { "idle.exempt_approver", CFG_STRING, offsetof(mamori_config, idle.exempt_approver), 0, 128, 0,
          "", valid_text, "text without control characters" },
        { "idle.exempt_reason", CFG_STRING, offsetof(mamori_config, idle.exempt_reason), 0, 512, 0,
          "", valid_text, "text without control characters" },
        /* R-ATK-1: only these device classes pass without policyd, so a dead policyd never
         * takes the keyboard; storage never does (agent/logic.c: storage + HID is BadUSB). */
        { "agent.allowed_classes", CFG_STRING, offsetof(mamori_config, agent.allowed_classes), 2, 95, 0,
          "03 09", valid_classes,
          "two-digit hex USB classes separated by spaces, such as \"03 09\"; not 00 or 08 (storage)" },
        /* R-OUT-1, R-CRY-2, R-CRY-3: where the organisation's age keys live (common/orgkeys.h). */
        { "crypto.keys_dir", CFG_STRING, offsetof(mamori_config, crypto.keys_dir), 2, 255, 0,
          "/etc/mamori/keys", valid_abs_path, "an absolute path without . or .. components" },
};

typedef struct ParseContext {
        const char *path;
        char *error;            /* "FILE:LINE: KEY: what", malloc'd */
} ParseContext;

/* Records "path:line: key: message" as the error; returns -EINVAL, or -ENOMEM. */
static int config_fail(ParseContext *ctx, const config_setting_t *s, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int config_fail(ParseContext *ctx, const config_setting_t *s, const char *key, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        free(ctx->error);
        ctx->error = NULL;
        if (asprintf(&ctx->error, "%s:%u: %s: %s", ctx->path,
                     s ? (unsigned) config_setting_source_line(s) : 0U, key, msg) < 0) {
                ctx->error = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

/* Names what a setting holds, for "expected X, got Y" messages. */
static const char *setting_what(const config_setting_t *s)
{
        switch (config_setting_type(s)) {
        case CONFIG_TYPE_GROUP:
                return "a group";
        case CONFIG_TYPE_INT:
                return "an integer";
        case CONFIG_TYPE_INT64:
                return "a 64-bit integer";
        case CONFIG_TYPE_FLOAT:
                return "a floating-point number";
        case CONFIG_TYPE_STRING:
                return "a string";
        case CONFIG_TYPE_BOOL:
                return "a boolean";
        case CONFIG_TYPE_ARRAY:
                return "an array";
        case CONFIG_TYPE_LIST:
                return "a list";
        default:
                return "an unknown value";
        }
}

/* Reads an integer setting into *ret; rejects floats, strings and 64-bit values out of range. */
static int parse_uint32(ParseContext *ctx, const ConfigKey *k, const config_setting_t *s, void *field)
{
        long long v;

        switch (config_setting_type(s)) {
        case CONFIG_TYPE_INT:
                v = config_setting_get_int(s);
                break;
        case CONFIG_TYPE_INT64:
                v = config_setting_get_int64(s);
                break;
        default:
                return config_fail(ctx, s, k->key, "expected an integer in %u..%u, got %s", k->min, k->max,
                            setting_what(s));
        }
        if (v < (long long) k->min || v > (long long) k->max)
                return config_fail(ctx, s, k->key, "%lld is out of range, allowed %u..%u", v, k->min, k->max);
        if (config_setting_type(s) == CONFIG_TYPE_INT64)
                return config_fail(ctx, s, k->key, "64-bit integer (L suffix) not allowed, write %lld", v);
        *(uint32_t *) field = (uint32_t) v;
        return 0;
}

/* Reads a boolean setting: only true or false, not 0 or 1. */
static int parse_bool(ParseContext *ctx, const ConfigKey *k, const config_setting_t *s, void *field)
{
        if (config_setting_type(s) != CONFIG_TYPE_BOOL)
                return config_fail(ctx, s, k->key, "expected true or false, got %s", setting_what(s));
        *(bool *) field = config_setting_get_bool(s);
        return 0;
}

/* Checks one string against the key's length bounds and charset; returns 0 or -EINVAL. */
static int check_string(ParseContext *ctx, const ConfigKey *k, const char *key,
                        const config_setting_t *s, const char *v)
{
        size_t n = strlen(v);

        if (n < k->min)
                return config_fail(ctx, s, key, "empty, expected %s", k->valid_what ?: "a string");
        if (n > k->max)
                return config_fail(ctx, s, key, "longer than %u characters", k->max);
        /* The value is not echoed: it may hold control characters. */
        if (k->valid && !k->valid(v))
                return config_fail(ctx, s, key, "invalid characters, expected %s", k->valid_what);
        return 0;
}

/* Reads a string setting, replacing the default. */
static int parse_string(ParseContext *ctx, const ConfigKey *k, const config_setting_t *s, void *field)
{
        const char *v;
        char *copy;
        int r;

        if (config_setting_type(s) != CONFIG_TYPE_STRING)
                return config_fail(ctx, s, k->key, "expected a string, got %s", setting_what(s));
        v = config_setting_get_string(s);
        r = check_string(ctx, k, k->key, s, v);
        if (r < 0)
                return r;
        copy = strdup(v);
        if (!copy)
                return -ENOMEM;
        free(*(char **) field);
        *(char **) field = copy;
        return 0;
}

/* Frees a NULL-terminated string list; accepts NULL. */
static void strv_free(char **l)
{
        if (!l)
                return;
        for (char **i = l; *i; i++)
                free(*i);
        free(l);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);

/* Reads a list or array of strings, [ "a", "b" ] or ( "a", "b" ), replacing the default. */
static int parse_strv(ParseContext *ctx, const ConfigKey *k, const config_setting_t *s, void *field)
{
        _cleanup_(strv_freep) char **l = NULL;
        int n;

        if (config_setting_type(s) != CONFIG_TYPE_LIST && config_setting_type(s) != CONFIG_TYPE_ARRAY)
                return config_fail(ctx, s, k->key, "expected a list of strings [ \"...\", ... ], got %s",
                            setting_what(s));
        n = config_setting_length(s);
        if ((unsigned) n > CFG_STRV_MAX_ITEMS)
                return config_fail(ctx, s, k->key, "more than %u items", CFG_STRV_MAX_ITEMS);
        l = calloc((size_t) n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (int i = 0; i < n; i++) {
                const config_setting_t *e = config_setting_get_elem(s, (unsigned) i);
                /* Array and list items may carry no line of their own; use the key's. */
                const config_setting_t *where = config_setting_source_line(e) ? e : s;
                _cleanup_free_ char *item = NULL;
                int r;

                if (asprintf(&item, "%s[%d]", k->key, i) < 0)
                        return -ENOMEM;
                if (config_setting_type(e) != CONFIG_TYPE_STRING)
                        return config_fail(ctx, where, item, "expected a string, got %s", setting_what(e));
                r = check_string(ctx, k, item, where, config_setting_get_string(e));
                if (r < 0)
                        return r;
                l[i] = strdup(config_setting_get_string(e));
                if (!l[i])
                        return -ENOMEM;
        }
        strv_free(*(char ***) field);
        *(char ***) field = TAKE_PTR(l);
        return 0;
}

static int (*const config_parsers[_CFG_TYPE_MAX])(ParseContext *, const ConfigKey *,
                                                  const config_setting_t *, void *) = {
        [CFG_UINT32] = parse_uint32,
        [CFG_BOOL] = parse_bool,
        [CFG_STRING] = parse_string,
        [CFG_STRV] = parse_strv,
};

/* Finds the table row for a full key, or NULL. */
static const ConfigKey *config_key_find(const char *key)
{
        for (size_t i = 0; i < ELEMENTSOF(config_table); i++)
                if (streq(config_table[i].key, key))
                        return config_table + i;
        return NULL;
}

/* Whether key names a section, i.e. some table key starts with "key.". */
static bool config_is_section(const char *key)
{
        size_t n = strlen(key);

        for (size_t i = 0; i < ELEMENTSOF(config_table); i++)
                if (strncmp(config_table[i].key, key, n) == 0 && config_table[i].key[n] == '.')
                        return true;
        return false;
}

static int apply_group(ParseContext *ctx, const config_setting_t *group, const char *prefix,
                       mamori_config *c);

/* Checks one setting against the table and stores it, recursing into known sections. */
static int apply_setting(ParseContext *ctx, const config_setting_t *s, const char *key,
                         mamori_config *c)
{
        const ConfigKey *k = config_key_find(key);
        bool section = config_is_section(key);

        if (config_setting_type(s) == CONFIG_TYPE_GROUP) {
                if (section)
                        return apply_group(ctx, s, key, c);
                if (k)
                        return config_fail(ctx, s, key, "expected a value, got a group");
                return config_fail(ctx, s, key, "unknown section");
        }
        if (!k) {
                if (section)
                        return config_fail(ctx, s, key, "is a section, expected a group { ... }, got %s",
                                    setting_what(s));
                return config_fail(ctx, s, key, "unknown key");
        }
        return config_parsers[k->type](ctx, k, s, (uint8_t *) c + k->offset);
}

/* Applies every setting of a group; prefix is the group's full key, NULL for the root. */
static int apply_group(ParseContext *ctx, const config_setting_t *group, const char *prefix,
                       mamori_config *c)
{
        int n = config_setting_length(group);

        for (int i = 0; i < n; i++) {
                const config_setting_t *s = config_setting_get_elem(group, (unsigned) i);
                _cleanup_free_ char *key = NULL;
                int r;

                if (prefix)
                        r = asprintf(&key, "%s.%s", prefix, config_setting_name(s));
                else
                        r = asprintf(&key, "%s", config_setting_name(s));
                if (r < 0)
                        return -ENOMEM;
                r = apply_setting(ctx, s, key, c);
                if (r < 0)
                        return r;
        }
        return 0;
}

void mamori_config_free(mamori_config *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < ELEMENTSOF(config_table); i++) {
                void *field = (uint8_t *) c + config_table[i].offset;

                if (config_table[i].type == CFG_STRING)
                        free(*(char **) field);
                else if (config_table[i].type == CFG_STRV)
                        strv_free(*(char ***) field);
        }
        free(c->path);
        free(c);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(mamori_config *, mamori_config_free);

int mamori_config_new_default(mamori_config **ret)
{
        _cleanup_(mamori_config_freep) mamori_config *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(config_table); i++) {
                const ConfigKey *k = config_table + i;
                void *field = (uint8_t *) c + k->offset;

                switch (k->type) {
                case CFG_UINT32:
                        *(uint32_t *) field = k->def;
                        break;
                case CFG_BOOL:
                        *(bool *) field = k->def;
                        break;
                case CFG_STRING:
                        *(char **) field = strdup(k->def_str);
                        if (!*(char **) field)
                                return -ENOMEM;
                        break;
                case CFG_STRV:
                        *(char ***) field = calloc(1, sizeof(char *));
                        if (!*(char ***) field)
                                return -ENOMEM;
                        break;
                default:
                        return -EINVAL;
                }
        }
        *ret = TAKE_PTR(c);
        return 0;
}

/* Sets *ret_error to "path: message" (line 0) or "path:line: message"; returns r, or -ENOMEM. */
static int fail_file(char **ret_error, const char *path, unsigned line, int r, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
static int fail_file(char **ret_error, const char *path, unsigned line, int r, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        char *e;
        va_list ap;
        int k;

        if (!ret_error)
                return r;
        va_start(ap, fmt);
        k = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        if (line > 0)
                k = asprintf(&e, "%s:%u: %s", path, line, msg);
        else
                k = asprintf(&e, "%s: %s", path, msg);
        if (k < 0)
                return -ENOMEM;
        *ret_error = e;
        return r;
}

/* Reads the whole file (a regular file, at most MAMORI_CONFIG_MAX_SIZE bytes) NUL-terminated;
 * returns its length, or -errno with *ret_error set. */
static ssize_t read_policy_file(const char *path, char **ret, char **ret_error)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t n = 0;
        struct stat st;

        /* O_NONBLOCK so that a FIFO in its place cannot hang us before fstat says no. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return fail_file(ret_error, path, 0, -errno, "%s", strerror(errno));
        if (fstat(fd, &st) < 0)
                return fail_file(ret_error, path, 0, -errno, "%s", strerror(errno));
        if (!S_ISREG(st.st_mode))
                return fail_file(ret_error, path, 0, -EINVAL, "not a regular file");
        buf = malloc(MAMORI_CONFIG_MAX_SIZE + 2);
        if (!buf)
                return -ENOMEM;
        /* Read one byte more than allowed, to see that the file is too large. */
        while (n <= MAMORI_CONFIG_MAX_SIZE) {
                ssize_t k = read(fd, buf + n, MAMORI_CONFIG_MAX_SIZE + 1 - n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return fail_file(ret_error, path, 0, -errno, "%s", strerror(errno));
                if (k == 0)
                        break;
                n += (size_t) k;
        }
        if (n > MAMORI_CONFIG_MAX_SIZE)
                return fail_file(ret_error, path, 0, -EINVAL, "larger than %d bytes",
                                 MAMORI_CONFIG_MAX_SIZE);
        buf[n] = '\0';
        *ret = TAKE_PTR(buf);
        return (ssize_t) n;
}

/* Rejects what libconfig would take but must not: NUL bytes (libconfig reads a C string and
 * would silently stop there) and @include (the policy is this one root-owned file, and
 * an include could pull in any readable file). Returns 0 or -EINVAL with *ret_error set. */
static int check_policy_text(const char *path, const char *buf, size_t n, char **ret_error)
{
        unsigned line = 1;
        bool line_start = true;

        for (size_t i = 0; i < n; i++) {
                if (buf[i] == '\0')
                        return fail_file(ret_error, path, line, -EINVAL, "NUL byte in file");
                if (line_start && strncmp(buf + i, "@include", STRLEN("@include")) == 0)
                        return fail_file(ret_error, path, line, -EINVAL,
                                         "@include is not allowed in the policy file");
                if (buf[i] == '\n') {
                        line++;
                        line_start = true;
                } else if (buf[i] != ' ' && buf[i] != '\t')
                        line_start = false;
        }
        return 0;
}

/* Most group nesting the literal check tracks for key names; the table is far shallower. */
#define LEX_MAX_DEPTH 8

typedef struct LexState {
        const char *path;
        const char *p, *end;
        unsigned line;
        const char *name[LEX_MAX_DEPTH + 1];    /* last setting name at each depth */
        size_t name_len[LEX_MAX_DEPTH + 1];
        unsigned depth;
} LexState;

/* Skips a comment or string at lex->p, counting lines; returns whether there was one. */
static bool lex_skip_comment_or_string(LexState *lex)
{
        const char *p = lex->p;

        if (*p == '#' || (*p == '/' && p + 1 < lex->end && p[1] == '/')) {
                while (p < lex->end && *p != '\n')
                        p++;
        } else if (*p == '/' && p + 1 < lex->end && p[1] == '*') {
                for (p += 2; p < lex->end && !(*p == '*' && p + 1 < lex->end && p[1] == '/'); p++)
                        lex->line += *p == '\n';
                p = p < lex->end ? p + 2 : p;
        } else if (*p == '"') {
                for (p++; p < lex->end && *p != '"'; p++) {
                        if (*p == '\\' && p + 1 < lex->end)
                                p++;
                        lex->line += *p == '\n';
                }
                p = p < lex->end ? p + 1 : p;
        } else
                return false;
        lex->p = p;
        return true;
}

/* Writes the full key of the setting the lexer is in ("evidence.epoch_seconds") to buf. */
static void lex_key(const LexState *lex, char *buf, size_t size)
{
        size_t n = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i <= lex->depth && i <= LEX_MAX_DEPTH; i++) {
                if (!lex->name[i])
                        continue;
                n += (size_t) snprintf(buf + n, size - n, "%s%.*s", n ? "." : "",
                                       (int) lex->name_len[i], lex->name[i]);
                if (n >= size)
                        return;
        }
}

/* Checks one number token at lex->p; returns 0 or -EINVAL with *ret_error set. */
static int lex_number(LexState *lex, char **ret_error)
{
        const char *start = lex->p, *p = lex->p;
        bool hex, is_float = false;
        char tok[64], key[256];
        const ConfigKey *k;
        long long v;
        size_t n;

        if (*p == '-' || *p == '+')
                p++;
        hex = p + 1 < lex->end && p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
        for (; p < lex->end; p++) {
                if (*p == '.' || (!hex && (*p == 'e' || *p == 'E')))
                        is_float = true;
                else if ((*p == '-' || *p == '+') && (p[-1] == 'e' || p[-1] == 'E') && !hex)
                        continue;
                else if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                           (*p >= 'A' && *p <= 'Z')))
                        break;
        }
        lex->p = p;
        n = (size_t) (p - start);
        /* Floats are refused later by type; an L suffix makes libconfig read 64 bits. */
        if (is_float || p[-1] == 'L' || n >= sizeof tok)
                return 0;
        memcpy(tok, start, n);
        tok[n] = '\0';
        errno = 0;
        if (hex) {
                char *e;
                unsigned long long u = strtoull(tok + (*tok == '-' || *tok == '+'), &e, 16);

                v = errno || u > INT32_MAX ? LLONG_MAX : (long long) u;
        } else
                v = strtoll(tok, NULL, 10);
        if (errno == 0 && v >= INT32_MIN && v <= INT32_MAX)
                return 0;
        lex_key(lex, key, sizeof key);
        k = config_key_find(key);
        if (k && k->type == CFG_UINT32)
                return fail_file(ret_error, lex->path, lex->line, -EINVAL,
                                 "%s: %s is out of range, allowed %u..%u", key, tok, k->min, k->max);
        return fail_file(ret_error, lex->path, lex->line, -EINVAL,
                         "%s: integer %s does not fit in 32 bits", key[0] ? key : "(top)", tok);
}

/* libconfig 1.5 reads an integer literal with atoi(), so 5000000000 silently becomes
 * 705032704 and a retention of 4294969123 days becomes 1827. Find every integer literal
 * that does not fit in 32 bits before libconfig sees it. Syntax is libconfig's business:
 * this only tracks strings, comments, names and braces. Returns 0 or -EINVAL. */
static int check_integer_literals(const char *path, const char *buf, size_t n, char **ret_error)
{
        LexState lex = { .path = path, .p = buf, .end = buf + n, .line = 1 };
        int r;

        while (lex.p < lex.end) {
                char ch = *lex.p;

                if (lex_skip_comment_or_string(&lex))
                        continue;
                if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '*') {
                        const char *start = lex.p;

                        while (lex.p < lex.end && ((*lex.p >= 'A' && *lex.p <= 'Z') ||
                                                   (*lex.p >= 'a' && *lex.p <= 'z') ||
                                                   (*lex.p >= '0' && *lex.p <= '9') ||
                                                   *lex.p == '_' || *lex.p == '-' || *lex.p == '*'))
                                lex.p++;
                        if (lex.depth <= LEX_MAX_DEPTH) {
                                lex.name[lex.depth] = start;
                                lex.name_len[lex.depth] = (size_t) (lex.p - start);
                        }
                        continue;
                }
                if ((ch >= '0' && ch <= '9') || ch == '-' || ch == '+' || ch == '.') {
                        r = lex_number(&lex, ret_error);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (ch == '{' || ch == '(' || ch == '[') {
                        lex.depth++;
                        if (lex.depth <= LEX_MAX_DEPTH)
                                lex.name[lex.depth] = NULL;
                } else if ((ch == '}' || ch == ')' || ch == ']') && lex.depth > 0) {
                        if (lex.depth <= LEX_MAX_DEPTH)
                                lex.name[lex.depth] = NULL;
                        lex.depth--;
                } else if (ch == '\n')
                        lex.line++;
                lex.p++;
        }
        return 0;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(config_t *, config_destroy);

/* R-IDLE-2: an exemption without an approver and a reason is no exemption: the file is
 * refused (fail closed: the agent then does not start on it). Returns 0 or -EINVAL. */
static int check_idle(const char *path, const config_t *cf, const mamori_config *c, char **ret_error)
{
        const config_setting_t *s = config_lookup(cf, "idle.exempt");

        if (!c->idle.exempt)
                return 0;
        if (c->idle.exempt_approver[0] == '\0' || c->idle.exempt_reason[0] == '\0')
                return fail_file(ret_error, path, s ? (unsigned) config_setting_source_line(s) : 0, -EINVAL,
                                 "idle.exempt: true needs idle.exempt_approver and idle.exempt_reason");
        return 0;
}

int mamori_config_load(const char *path, mamori_config **ret, char **ret_error)
{
        config_t cf_storage;
        _cleanup_(config_destroyp) config_t *cf = NULL;
        _cleanup_(mamori_config_freep) mamori_config *c = NULL;
        _cleanup_free_ char *buf = NULL;
        ParseContext ctx = { .path = path };
        ssize_t n;
        int r;

        if (!path || !ret)
                return -EINVAL;
        n = read_policy_file(path, &buf, ret_error);
        if (n < 0)
                return (int) n;
        r = check_policy_text(path, buf, (size_t) n, ret_error);
        if (r < 0)
                return r;
        r = check_integer_literals(path, buf, (size_t) n, ret_error);
        if (r < 0)
                return r;
        r = mamori_config_new_default(&c);
        if (r < 0)
                return r;
        c->path = strdup(path);
        if (!c->path)
                return -ENOMEM;

        config_init(&cf_storage);
        cf = &cf_storage;
        if (config_read_string(cf, buf) != CONFIG_TRUE) {
                if (config_error_type(cf) != CONFIG_ERR_PARSE)
                        return -ENOMEM;
                return fail_file(ret_error, path, (unsigned) config_error_line(cf), -EINVAL, "%s",
                                 config_error_text(cf) ?: "syntax error");
        }
        r = apply_group(&ctx, config_root_setting(cf), NULL, c);
        if (r < 0) {
                if (ctx.error && ret_error)
                        *ret_error = TAKE_PTR(ctx.error);
                free(ctx.error);
                return r;
        }
        r = check_idle(path, cf, c, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}
