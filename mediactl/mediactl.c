/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mediactl: administrators register media and manage users with it; media-use
 * managers grant permissions and review the logs; auditors verify them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "client.h"
#include "cleanup.h"
#include "mamori-config.h"
#include "mediactl.h"

typedef struct verb {
        const char *name;
        int (*fn)(int argc, char *argv[]);
        const char *help;
} verb;

static const verb verbs[] = {
        {"log", verb_log, "review evidence records (filters, table/json/csv)"},
        {"verify", verb_verify, "verify the evidence chain, live or an offline copy"},
        {"evidence", verb_evidence, "anchor | rotate | purge"},
        {"status", verb_status, "policyd's state and your roles"},
        {"check-config", verb_check_config, "check a policy file before installing it"},
        {"user", verb_user, "logins: status|unlock|ban|unban|totp-enroll USER"},
        {"media", verb_media, "the media ledger: register|list|show|change|retire|inventory|decide"},
        {"grant", verb_grant, "media permissions: create|list|revoke|export|import|consume"},
        {"manager", verb_manager, "media-use manager keys: keygen|trust|untrust|list"},
        {"token", verb_token, "authentication tokens: register|retire|list (R-AUTH-4)"},
        {"key", verb_key, "the organisation's age keys: generate|rotate|show (root)"},
        {"encrypt", verb_encrypt, "encrypt a file (age) to the organisation or a passphrase"},
        {"decrypt", verb_decrypt, "decrypt an age file (organisation keys: root; or a passphrase)"},
        {"passphrase", verb_passphrase, "hand the media view your passphrase for passphrase-mode output"},
};

static void usage(FILE *f)
{
        fprintf(f, "Usage: mediactl VERB [OPTIONS]\n\nVerbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %-14s %s\n", verbs[i].name, verbs[i].help);
        fprintf(f, "\nThe socket is --socket PATH, else $MAMORI_SOCKET, else %s.\n"
                   "Exit codes: 0 done, 1 refused or not intact, 2 usage, 3 policyd unreachable.\n",
                MAMORI_SOCKET_PATH);
}

output_format format_from_string(const char *s)
{
        static const char *const names[_FORMAT_MAX] = {"table", "json", "csv"};
        for (int i = 0; i < _FORMAT_MAX; i++)
                if (streq(s, names[i]))
                        return i;
        return _FORMAT_INVALID;
}

int ctl_connect(const char *socket_arg)
{
        const char *path = mamori_client_socket_path(socket_arg);
        int fd = mamori_client_connect(path);
        if (fd < 0) {
                errno = -fd;
                fprintf(stderr, "mediactl: cannot reach policyd at %s: %m\n", path);
                return -1;
        }
        return fd;
}

int ctl_call(int fd, mamori_msg *req, mamori_msg **ret)
{
        mamori_msg *m;
        int r = mamori_client_call(fd, req, &m);
        if (r < 0) {
                errno = -r;
                fprintf(stderr, "mediactl: policyd did not answer: %m\n");
                return -1;
        }
        if (m->status != MAMORI_OK && m->status != MAMORI_MORE) {
                const char *text = NULL;
                (void)mamori_msg_get_str(m, MAMORI_F_TEXT, MAMORI_STR_MAX, &text);
                fprintf(stderr, "mediactl: %s: ", mamori_status_to_string(m->status));
                print_text_safe(stderr, text ? text : "refused");
                fputc('\n', stderr);
        }
        *ret = m;
        return m->status;
}

int ctl_exit_for(int status)
{
        switch (status) {
        case MAMORI_OK:
        case MAMORI_MORE:
                return 0;
        case MAMORI_E_STORAGE:
        case MAMORI_E_INTERNAL:
                return EXIT_UNAVAILABLE;
        case MAMORI_E_MALFORMED:
                return EXIT_USAGE;
        default:
                return EXIT_NO;
        }
}

void print_text_safe(FILE *f, const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p < 0x20 || *p == 0x7f || *p == '\\')
                        fprintf(f, "\\x%02x", *p);
                else
                        fputc(*p, f);
        }
}

void print_json_string(FILE *f, const char *s)
{
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p < 0x20 || *p == 0x7f)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        }
        fputc('"', f);
}

void print_csv_cell(FILE *f, const char *s)
{
        fputc('"', f);
        /* A cell starting with = + - @ or a tab would run as a formula in a spreadsheet. */
        if (strchr("=+-@\t\r", s[0]) && s[0])
                fputc('\'', f);
        for (const char *p = s; *p; p++) {
                if (*p == '"')
                        fputc('"', f);
                fputc(*p, f);
        }
        fputc('"', f);
}

int main(int argc, char *argv[])
{
        if (argc < 2) {
                usage(stderr);
                return EXIT_USAGE;
        }
        if (streq(argv[1], "--help") || streq(argv[1], "-h") || streq(argv[1], "help")) {
                usage(stdout);
                return 0;
        }
        if (sodium_init() < 0)
                return EXIT_UNAVAILABLE;
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[1], verbs[i].name))
                        return verbs[i].fn(argc - 1, argv + 1);
        fprintf(stderr, "mediactl: unknown verb \"");
        print_text_safe(stderr, argv[1]);
        fprintf(stderr, "\"\n");
        usage(stderr);
        return EXIT_USAGE;
}
