/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mediactl key generate|rotate|show: the organisation's age keys (common/orgkeys.h,
 * docs/keys.md; R-OUT-1, R-CRY-2, R-CRY-3). Root only: the identities are root's.
 * Each generation and rotation is an evidence record (key.generate, key.rotate).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "mamori-config.h"
#include "mediactl.h"
#include "orgkeys.h"

char *ctl_keys_dir(const char *keys_dir_arg, const char *config_arg)
{
        const char *path = config_arg ? config_arg : MAMORI_CONFIG_PATH;
        mamori_config *c = NULL;
        _cleanup_free_ char *error = NULL;
        char *dir;
        int r;

        if (keys_dir_arg)
                return strdup(keys_dir_arg);
        r = mamori_config_load(path, &c, &error);
        if (r == -ENOENT && !config_arg)
                r = mamori_config_new_default(&c); /* no policy file installed: the defaults */
        if (r < 0) {
                fprintf(stderr, "mediactl: cannot read the policy file: ");
                print_text_safe(stderr, error ? error : strerror(-r));
                fputc('\n', stderr);
                return NULL;
        }
        dir = strdup(c->crypto.keys_dir);
        mamori_config_free(c);
        return dir;
}

void ctl_orgkeys_error(const char *dir, int r)
{
        fprintf(stderr, "mediactl: the organisation keys in \"");
        print_text_safe(stderr, dir);
        if (r == -ENOENT)
                fprintf(stderr, "\" do not exist yet: root makes them with \"mediactl key generate\"\n");
        else if (r == -EPERM)
                fprintf(stderr, "\" are refused: the directory and files must be root's, not writable by"
                                " others, identities mode 0600 and no symlinks (docs/keys.md)\n");
        else if (r == -EINVAL)
                fprintf(stderr, "\" are malformed\n");
        else
                fprintf(stderr, "\" cannot be read: %s\n", strerror(-r));
}

/* Submits key.generate / key.rotate on fd (root may submit evidence). Returns the reply
 * status (printed if a refusal) or -1 if policyd could not be asked. */
static int record_key(int fd, const char *type, const char *dir, const char *recipient, size_t n_ids)
{
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL, *rep = NULL;
        char n[24];

        if (mamori_msg_new(MAMORI_MSG_EVIDENCE_SUBMIT, 0, &req) < 0)
                return -1;
        snprintf(n, sizeof n, "%zu", n_ids);
        mamori_msg_put_str(req, MAMORI_F_EV_TYPE, type);
        mamori_msg_put_str(req, MAMORI_F_EV_COMPONENT, "mediactl");
        mamori_msg_put_pair(req, MAMORI_F_EV_PAIR, "recipient", recipient);
        mamori_msg_put_pair(req, MAMORI_F_EV_PAIR, "keys_dir", dir);
        mamori_msg_put_pair(req, MAMORI_F_EV_PAIR, "identities", n);
        return ctl_call(fd, req, &rep);
}

static void print_backup_instructions(const char *dir)
{
        printf("\nBack the identities up now (R-CRY-3, docs/keys.md): whoever holds a copy can read\n"
               "every file encrypted to this organisation, and without one nothing can be read\n"
               "again if this host is lost. For example, to an escrow passphrase kept offline:\n\n"
               "    age -p -o identities.escrow.age %s/identities\n\n"
               "Store identities.escrow.age and the passphrase apart, each as safely as the key\n"
               "itself (locked, with a record of who holds them). Repeat after every rotation.\n",
               dir);
}

/* generate or rotate. The record decision: the key is made first and kept even when
 * policyd then cannot record it (removing it again could lose the only key to files
 * encrypted in between by the agent); mediactl says so and exits 3 so the operator
 * records it by hand. To keep that rare, policyd must be reachable before anything
 * is generated (fail closed on the way in). */
static int generate(const char *dir, bool rotate, const char *sock)
{
        _cleanup_free_ char *rcp = NULL;
        _cleanup_close_ int fd = -1;
        mamori_age_identity **ids = NULL;
        size_t n = 0;
        int r, st;

        fd = ctl_connect(sock);
        if (fd < 0) {
                fprintf(stderr, "mediactl: no key was %s: policyd must record it\n",
                        rotate ? "rotated" : "generated");
                return EXIT_UNAVAILABLE;
        }
        /* The directory world-searchable, so users can encrypt to the recipient; the
         * identities file itself stays 0600. */
        if (!rotate && mkdir(dir, 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "mediactl: cannot create \"");
                print_text_safe(stderr, dir);
                fprintf(stderr, "\": %m\n");
                return EXIT_UNAVAILABLE;
        }
        r = mamori_orgkeys_generate(dir, rotate, &rcp);
        if (r == -EEXIST) {
                fprintf(stderr, "mediactl: organisation keys exist already: \"mediactl key rotate\" makes a new one\n");
                return EXIT_NO;
        }
        if (r < 0) {
                ctl_orgkeys_error(dir, r);
                return r == -ENOENT || r == -EPERM || r == -EINVAL ? EXIT_NO : EXIT_UNAVAILABLE;
        }
        r = mamori_orgkeys_identities(dir, &ids, &n);
        if (r >= 0)
                mamori_age_identities_free(ids, n);
        printf("%s\n", rcp);
        st = record_key(fd, rotate ? "key.rotate" : "key.generate", dir, rcp, n);
        if (st != MAMORI_OK) {
                fprintf(stderr, "mediactl: the key was %s, but policyd did not record it: record the %s of"
                                " %s by hand and check policyd\n",
                        rotate ? "rotated" : "generated", rotate ? "rotation" : "generation", rcp);
                return EXIT_UNAVAILABLE;
        }
        if (rotate)
                printf("Rotated: new files are encrypted to this recipient; the %zu identities, old ones"
                       " included, still open older files.\n",
                       n);
        print_backup_instructions(dir);
        return 0;
}

static int show(const char *dir)
{
        mamori_age_recipient rcp;
        mamori_age_identity **ids = NULL;
        _cleanup_free_ char *s = NULL;
        size_t n = 0;
        int r;

        r = mamori_orgkeys_recipient(dir, &rcp);
        if (r >= 0)
                r = mamori_orgkeys_identities(dir, &ids, &n);
        if (r < 0) {
                ctl_orgkeys_error(dir, r);
                return r == -ENOENT || r == -EPERM || r == -EINVAL ? EXIT_NO : EXIT_UNAVAILABLE;
        }
        mamori_age_identities_free(ids, n);
        if (mamori_age_recipient_format(&rcp, &s) < 0)
                return EXIT_UNAVAILABLE;
        printf("recipient:  %s\nidentities: %zu\nkeys_dir:   ", s, n);
        print_text_safe(stdout, dir);
        putchar('\n');
        return 0;
}

static void key_usage(FILE *f)
{
        fprintf(f, "Usage: mediactl key generate|rotate|show [--keys-dir DIR] [--config FILE] [--socket PATH]\n"
                   "The organisation's age keys (root only; docs/keys.md):\n"
                   "  generate  make the first key; prints the recipient and how to back it up\n"
                   "  rotate    add a new key: new files use it, old files still open\n"
                   "  show      the current recipient and the number of identities\n");
}

int verb_key(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"keys-dir", required_argument, NULL, 'k'}, {"config", required_argument, NULL, 'c'},
                {"socket", required_argument, NULL, 'X'},   {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *keys_arg = NULL, *config_arg = NULL, *sock = NULL, *sub;
        _cleanup_free_ char *dir = NULL;
        int o;

        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                key_usage(argc < 2 ? stderr : stdout);
                return argc < 2 ? EXIT_USAGE : 0;
        }
        sub = argv[1];
        optind = 1;
        while ((o = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) >= 0) {
                if (o == 'k')
                        keys_arg = optarg;
                else if (o == 'c')
                        config_arg = optarg;
                else if (o == 'X')
                        sock = optarg;
                else {
                        key_usage(o == 'h' ? stdout : stderr);
                        return o == 'h' ? 0 : EXIT_USAGE;
                }
        }
        if (optind != argc - 1 || !(streq(sub, "generate") || streq(sub, "rotate") || streq(sub, "show"))) {
                key_usage(stderr);
                return EXIT_USAGE;
        }
        if (geteuid() != 0) {
                fprintf(stderr, "mediactl: only root manages the organisation's keys (mediactl key %s)\n",
                        sub);
                return EXIT_NO;
        }
        dir = ctl_keys_dir(keys_arg, config_arg);
        if (!dir)
                return EXIT_UNAVAILABLE;
        if (streq(sub, "show"))
                return show(dir);
        return generate(dir, streq(sub, "rotate"), sock);
}
