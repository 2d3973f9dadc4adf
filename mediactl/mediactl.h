/* SPDX-License-Identifier: GPL-2.0-or-later */
/* mediactl: one file per verb group; the table is in mediactl.c. Verbs return the
 * process exit code: 0 success, 1 the answer is "no" (refused, does not verify),
 * 2 usage, 3 could not ask (policyd unreachable, I/O). */
#pragma once

#include <stdio.h>

#include "wire.h"

enum { EXIT_NO = 1, EXIT_USAGE = 2, EXIT_UNAVAILABLE = 3 };

typedef enum output_format {
        FORMAT_TABLE,
        FORMAT_JSON,
        FORMAT_CSV,
        _FORMAT_MAX,
        _FORMAT_INVALID = -1,
} output_format;

/* Parses "table", "json" or "csv". Returns the format or _FORMAT_INVALID. */
output_format format_from_string(const char *s);

/* Connects to policyd at --socket / $MAMORI_SOCKET; prints why not. Returns fd or -1. */
int ctl_connect(const char *socket_arg);
/* Sends req, reads one reply, and prints a refusal or error. Returns the reply's status
 * (>= 0) with *ret set, or -1 when policyd could not be asked. */
int ctl_call(int fd, mamori_msg *req, mamori_msg **ret);
/* Maps a refusal status to an exit code. */
int ctl_exit_for(int status);

/* Output helpers that keep hostile strings (device names, user input) harmless:
 * control bytes are escaped for terminals, JSON is escaped, CSV cells are quoted and
 * cells that a spreadsheet would run as formulas are defused. */
void print_text_safe(FILE *f, const char *s);
void print_json_string(FILE *f, const char *s);
void print_csv_cell(FILE *f, const char *s);

int verb_log(int argc, char *argv[]);
int verb_verify(int argc, char *argv[]);
int verb_evidence(int argc, char *argv[]);
int verb_status(int argc, char *argv[]);
int verb_check_config(int argc, char *argv[]);
int verb_user(int argc, char *argv[]);   /* user.c */
int verb_media(int argc, char *argv[]);   /* media.c */
int verb_grant(int argc, char *argv[]);   /* grant.c */
int verb_manager(int argc, char *argv[]); /* manager.c */
/* media.c: helpers for the ledger and grant verbs. Prints "what: "value"" to stderr. */
void ctl_bad_value(const char *what, const char *value);
/* Parses a date or time; a bare YYYY-MM-DD as an end means the end of that day (UTC).
 * Prints why not. Returns 0 or -EINVAL. */
int ctl_parse_date(const char *s, bool end, int64_t *ret);
/* Sends req and calls each() for every MAMORI_MORE reply (and for a final OK reply that
 * carries a medium). Prints a refusal. Returns the final status, or -1 if policyd could
 * not be asked. */
int ctl_stream(int fd, mamori_msg *req, int (*each)(const mamori_msg *m, void *u), void *u);
/* manager.c: reads a manager key file (private, ours) and decrypts the secret key into sk
 * (MAMORI_GRANT_SK_LEN bytes, sodium_malloc'd by the caller). Prints why not. Returns 0,
 * -EBADE for a wrong passphrase, or another negative errno. */
int manager_load_key(const char *path, int pass_fd, uint8_t *sk);
/* manager.c: passphrases (key.c, crypt.c too). Reads one line from pass_fd (>= 0), or
 * from the terminal with echo off after printing prompt, into pass (CTL_PASS_MAX + 1
 * bytes, the caller's locked memory). Returns its length, or -errno with the reason
 * printed. */
#define CTL_PASS_MAX 1024
int ctl_read_passphrase(int pass_fd, const char *prompt, char *pass);
/* Parses a descriptor number 0..65535. Returns it or -EINVAL. */
int ctl_parse_fd(const char *s);

int verb_key(int argc, char *argv[]);     /* key.c */
int verb_token(int argc, char *argv[]);   /* token.c */
int verb_encrypt(int argc, char *argv[]); /* crypt.c */
int verb_decrypt(int argc, char *argv[]); /* crypt.c */
int verb_passphrase(int argc, char *argv[]); /* passphrase.c */
/* key.c: the organisation key directory: --keys-dir, else crypto.keys_dir of --config
 * FILE (default the installed policy file; a missing file means the defaults). Prints
 * why not. Returns a malloc'd path, or NULL. */
char *ctl_keys_dir(const char *keys_dir_arg, const char *config_arg);
/* key.c: prints why the organisation keys cannot be used (r from common/orgkeys.h). */
void ctl_orgkeys_error(const char *dir, int r);

