/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The policy file, /etc/mamori/mamori.conf (libconfig syntax), read by every
 * component through this one parser. Parsing is strict: an unknown key, a value
 * of the wrong type or out of range is an error naming file, line and key, and
 * nothing of a bad file is used. Keys left out keep the built-in defaults, so an
 * empty file is valid and means "all defaults".
 *
 * Adding a key: a field here plus one row in the table in config.c.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Largest policy file accepted, in bytes (libconfig counts lines in 16 bits). */
#define MAMORI_CONFIG_MAX_SIZE (60 * 1024)

typedef struct mamori_config {
        char *path;                     /* file it was read from, or NULL for built-in defaults */
        struct {
                char *admin_group;      /* default "mamori-admin"   (operations manager) */
                char *manager_group;    /* default "mamori-manager" (media-use manager)  */
                char *auditor_group;    /* default "mamori-auditor" (manager's superior)  */
                char *agent_user;       /* default "root": may submit evidence besides root */
        } roles;
        struct {                        /* policyd/media.c decisions (R-IN-1, R-OUT-2, R-REG-2/8, R-EXC-1) */
                char *input_rule;             /* "registered" (default): a medium's listed users may
                                               * read it; "grant": reading needs a grant */
                bool encrypted_output_needs_grant; /* default true (R-OUT-2) */
                bool optical_read;            /* default false: read unregistered optical discs */
                bool optical_write;           /* default false: ...and write them, encrypted */
                char **exempt_hosts;          /* media control off (R-EXC-1); default [] */
                char **audit_only_hosts;      /* decide and record, never block; default [] */
                char **allowed_ports;         /* USB port paths; [] = every port (R-REG-8) */
        } media;
        struct {
                uint32_t checkpoint_records;  /* default 1000, 1..1000000: sign a checkpoint every N records */
                uint32_t checkpoint_seconds;  /* default 10, 1..86400: ...or every T seconds */
                uint32_t epoch_seconds;       /* default 86400, 60..31622400: new epoch key this often */
                uint32_t retention_media_days;      /* default 1827, min 1827 (5 y, R-EV-1/R-EV-11), max 36525 */
                uint32_t retention_login_days;      /* default 1827, min 1827 (R-EV-5), max 36525 */
                uint32_t retention_permission_days; /* default 366, min 366 (1 y, R-EV-3), max 36525 */
                uint32_t retention_admin_days;      /* default 1827, min 366, max 36525 */
                bool journal;                 /* default true: copy records to the journal */
        } evidence;
        struct {                        /* pam_mamori and policyd/auth.c (R-AUTH-1..3) */
                uint32_t deny;                /* default 5, 1..100: failures that lock */
                uint32_t fail_interval;       /* default 900 s: failures counted within this */
                uint32_t unlock_time;         /* default 900 s: lock length */
                uint32_t admin_deny;          /* default 3: the administrators' profile */
                uint32_t admin_unlock_time;   /* default 3600 s */
                char **admin_groups;          /* besides roles.admin_group and root; default [] */
                char **mfa_users;             /* second factor required for these users */
                char **mfa_groups;            /* ... and members of these groups */
                char **mfa_services;          /* ... on these PAM services; [] = every service */
                char **token_users;           /* R-AUTH-4: login needs the user's registered token */
                char **token_groups;          /* ... for these users and members of these groups */
                char *totp_algorithm;         /* "sha1" (default), "sha256", "sha512" */
                uint32_t totp_digits;         /* default 6; 6 or 8 */
                uint32_t totp_window;         /* default 1, 0..10 steps either side */
                char *unreachable;            /* "mfa-closed" (default) or "closed" */
        } auth;
        struct {                        /* mamori-agent/idle.c: the idle lock (R-IDLE-1, R-IDLE-2) */
                uint32_t timeout;             /* default 900 s, 5..86400: idle time that locks */
                char *remote_action;          /* "lock" (default) or "terminate": remote text sessions */
                bool exempt;                  /* default false: this host is exempt (R-IDLE-2) */
                char *exempt_approver;        /* who approved the exemption; required with exempt */
                char *exempt_reason;          /* why; required with exempt */
        } idle;
        struct {                        /* mamori-agent: device control (R-REG-1, R-ATK-1) */
                char *allowed_classes;        /* default "03 09" (HID, hubs): USB interface classes
                                               * authorised locally, without policyd */
        } agent;
        struct {                        /* common/orgkeys.c: the organisation's age keys (R-OUT-1, R-CRY-2/3) */
                char *keys_dir;               /* default "/etc/mamori/keys": identities + recipient */
        } crypto;
} mamori_config;

/* Built-in defaults. Returns 0 or -ENOMEM. */
int mamori_config_new_default(mamori_config **ret);
/* Parses path strictly. Returns 0, -ENOENT when the file is missing (ret_error set too),
 * -EINVAL on any problem with *ret_error = "FILE:LINE: KEY: what is wrong" (malloc'd),
 * -ENOMEM. Other I/O errors return their -errno with *ret_error = "FILE: reason".
 * ret_error may be NULL. On failure *ret is untouched. */
int mamori_config_load(const char *path, mamori_config **ret, char **ret_error);
void mamori_config_free(mamori_config *c);   /* accepts NULL */
