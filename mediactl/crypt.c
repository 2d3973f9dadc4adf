/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mediactl encrypt|decrypt: age v1 files (common/age.h) to the organisation's
 * recipient or a passphrase, and back (R-OUT-1, R-CRY-1). Every file is an
 * evidence record (media.output for encrypt, media.input for decrypt; R-EV-1,
 * R-EV-2) that policyd writes for the calling user (EVIDENCE_TRANSFER: policyd takes
 * the user from the socket, not from us).
 *
 * R-EV-9, fail closed: the output is written to a temporary file beside it and
 * renamed into place only after policyd has acknowledged the record as durable. If
 * the record cannot be stored, the temporary file is removed and nothing unrecorded
 * remains. The output never replaces an existing file unless --force.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "age.h"
#include "cleanup.h"
#include "mediactl.h"
#include "orgkeys.h"

#define PASS_MIN 8 /* encryption only; decryption takes what the file was made with */

static void sodium_freep(void *p)
{
        sodium_free(*(void **)p);
}

typedef struct crypt_opts {
        bool decrypt, passphrase, force;
        int pass_fd;
        const char *in, *out, *keys_dir, *config, *sock;
} crypt_opts;

/* The output being written: a temporary file in the target's directory. */
typedef struct output {
        int dfd, fd;
        char tmp[NAME_MAX + 1];
        char *dir, *base; /* of the final path */
} output;

static void output_discard(output *o)
{
        if (o->fd >= 0) {
                close(o->fd);
                o->fd = -1;
        }
        if (o->tmp[0] && o->dfd >= 0)
                (void)unlinkat(o->dfd, o->tmp, 0);
        o->tmp[0] = 0;
        if (o->dfd >= 0)
                close(o->dfd);
        o->dfd = -1;
        free(o->dir);
        free(o->base);
        o->dir = o->base = NULL;
}

/* Prints "mediactl: what "path": reason". */
static void path_error(const char *what, const char *path, int r)
{
        fprintf(stderr, "mediactl: %s \"", what);
        print_text_safe(stderr, path);
        fprintf(stderr, "\": %s\n", strerror(-r));
}

/* Opens the output's directory and a fresh temporary file in it (0600, O_EXCL). Refuses
 * an existing output unless force (checked again, atomically, at the rename). Returns 0
 * or an exit code with the reason printed. */
static int output_open(output *o, const char *path, bool force)
{
        _cleanup_free_ char *d = strdup(path), *b = strdup(path);
        struct stat st;

        if (!d || !b)
                return EXIT_UNAVAILABLE;
        o->dir = strdup(dirname(d));
        o->base = strdup(basename(b));
        if (!o->dir || !o->base)
                return EXIT_UNAVAILABLE;
        /* checked before anything is recorded: a name the rename would refuse */
        if (!*o->base || streq(o->base, ".") || streq(o->base, "..") || streq(o->base, "/") ||
            strlen(o->base) > NAME_MAX) {
                ctl_bad_value("not an output file name", path);
                return EXIT_USAGE;
        }
        o->dfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (o->dfd < 0) {
                path_error("cannot open the output directory", o->dir, -errno);
                return EXIT_NO;
        }
        if (!force && fstatat(o->dfd, o->base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                fprintf(stderr, "mediactl: \"");
                print_text_safe(stderr, path);
                fprintf(stderr, "\" exists: not replaced (--force replaces it)\n");
                return EXIT_NO;
        }
        for (int i = 0; i < 16; i++) {
                uint32_t rnd = randombytes_random();
                snprintf(o->tmp, sizeof o->tmp, ".mediactl-%08" PRIx32 ".tmp", rnd);
                o->fd = openat(o->dfd, o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (o->fd >= 0 || errno != EEXIST)
                        break;
        }
        if (o->fd < 0) {
                o->tmp[0] = 0;
                path_error("cannot create a file in", o->dir, -errno);
                return EXIT_NO;
        }
        return 0;
}

/* Puts the finished temporary file in place: mode, fsync, rename (RENAME_NOREPLACE
 * unless force), fsync of the directory. Returns 0 or an exit code, reason printed. */
static int output_commit(output *o, bool force, mode_t mode)
{
        int r = 0;

        if (fchmod(o->fd, mode) < 0 || fsync(o->fd) < 0)
                r = -errno;
        else if (force ? renameat(o->dfd, o->tmp, o->dfd, o->base) < 0
                       : renameat2(o->dfd, o->tmp, o->dfd, o->base, RENAME_NOREPLACE) < 0)
                r = -errno;
        if (r < 0) {
                path_error(r == -EEXIST ? "appeared meanwhile, not replaced:" : "cannot write", o->base, r);
                return EXIT_NO;
        }
        o->tmp[0] = 0; /* in place: output_discard must not remove it */
        (void)fsync(o->dfd);
        return 0;
}

/* Sends the transfer record and waits for "ok" (durable). Returns 0 or an exit code. */
static int record_transfer(int fd, const crypt_opts *c, const char *source_path, const char *stored,
                           uint64_t size)
{
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL, *rep = NULL;
        _cleanup_free_ char *in = strdup(c->in);
        char sz[24];
        int st;

        if (!in || mamori_msg_new(MAMORI_MSG_EVIDENCE_TRANSFER, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        snprintf(sz, sizeof sz, "%" PRIu64, size);
        mamori_msg_put_pair(req, MAMORI_F_EV_PAIR, "file", basename(in));
        mamori_msg_put_pair(req, MAMORI_F_EV_PAIR, "size", sz);
        mamori_msg_put_pair(req, MAMORI_F_EV_PAIR, "direction", c->decrypt ? "input" : "output");
        mamori_msg_put_pair(req, MAMORI_F_EV_PAIR, "form", c->passphrase ? "age-passphrase" : "age-org");
        mamori_msg_put_pair(req, MAMORI_F_EV_PAIR, "source_path", source_path);
        mamori_msg_put_pair(req, MAMORI_F_EV_PAIR, "stored_name", stored);
        mamori_msg_put_pair(req, MAMORI_F_EV_PAIR, "medium", "");
        st = ctl_call(fd, req, &rep);
        if (st == MAMORI_OK)
                return 0;
        return st < 0 ? EXIT_UNAVAILABLE : ctl_exit_for(st);
}

/* Reads the passphrase into pass (locked memory): twice from a terminal when
 * encrypting, once from --passphrase-fd. Returns 0 or an exit code, reason printed. */
static int get_passphrase(const crypt_opts *c, char *pass)
{
        _cleanup_(sodium_freep) char *again = NULL;
        int n = ctl_read_passphrase(c->pass_fd, "Passphrase: ", pass);

        if (n < 0)
                return EXIT_USAGE;
        if (n == 0 || (!c->decrypt && n < PASS_MIN)) {
                fprintf(stderr, "mediactl: the passphrase must have at least %d characters\n",
                        c->decrypt ? 1 : PASS_MIN);
                return EXIT_USAGE;
        }
        if (c->decrypt || c->pass_fd >= 0)
                return 0;
        again = sodium_malloc(CTL_PASS_MAX + 1);
        if (!again)
                return EXIT_UNAVAILABLE;
        if (ctl_read_passphrase(-1, "Again: ", again) < 0 || !streq(pass, again)) {
                fprintf(stderr, "mediactl: the passphrases differ\n");
                return EXIT_USAGE;
        }
        return 0;
}

/* Says why the age layer failed. */
static void age_error(const crypt_opts *c, int r)
{
        if (r == -ENOKEY)
                fprintf(stderr, "mediactl: %s opens this file\n",
                        c->passphrase ? "the passphrase does not" : "none of the organisation's identities");
        else if (r == -EBADMSG)
                fprintf(stderr, "mediactl: not an age file, or it was altered or truncated\n");
        else if (r == -E2BIG)
                fprintf(stderr, "mediactl: the file's passphrase work factor is above the limit\n");
        else
                fprintf(stderr, "mediactl: %s failed: %s\n", c->decrypt ? "decryption" : "encryption",
                        strerror(-r));
}

/* Runs the age layer from in_fd to out_fd with the keys c asks for. Returns 0 or -errno
 * (an exit code was already decided and printed: *ret_exit). */
static int run_age(const crypt_opts *c, int in_fd, int out_fd, const char *dir, int *ret_exit)
{
        _cleanup_(sodium_freep) char *pass = NULL;
        mamori_age_identity **ids = NULL;
        mamori_age_recipient rcp;
        size_t n = 0;
        int r;

        *ret_exit = EXIT_NO;
        if (c->passphrase) {
                pass = sodium_malloc(CTL_PASS_MAX + 1);
                if (!pass)
                        return -ENOMEM;
                r = get_passphrase(c, pass);
                if (r != 0) {
                        *ret_exit = r;
                        return -EINVAL;
                }
        } else {
                r = c->decrypt ? mamori_orgkeys_identities(dir, &ids, &n) : mamori_orgkeys_recipient(dir, &rcp);
                if (r < 0) {
                        ctl_orgkeys_error(dir, r);
                        return r;
                }
        }
        if (c->decrypt) {
                mamori_age_decrypt_opts d = {.identities = ids, .n_identities = n, .passphrase = pass};
                r = mamori_age_decrypt_fd(in_fd, out_fd, &d);
        } else {
                mamori_age_encrypt_opts e = {.passphrase = pass};
                if (!pass) {
                        e.recipients = &rcp;
                        e.n_recipients = 1;
                }
                r = mamori_age_encrypt_fd(in_fd, out_fd, &e);
        }
        mamori_age_identities_free(ids, n);
        if (r < 0)
                age_error(c, r);
        return r;
}

/* The whole operation once the options are known. */
static int crypt_run(const crypt_opts *c)
{
        _cleanup_free_ char *dir = NULL, *source = NULL, *out_path = NULL;
        _cleanup_close_ int in_fd = -1, fd = -1;
        output o = {.dfd = -1, .fd = -1};
        struct stat st;
        uint64_t size;
        off_t pos;
        int r, ex;

        if (c->decrypt && !c->passphrase && geteuid() != 0) {
                fprintf(stderr, "mediactl: decrypting with the organisation's keys needs root (the identities"
                                " are root's only); a passphrase file opens with --passphrase\n");
                return EXIT_NO;
        }
        if (!c->passphrase && !(dir = ctl_keys_dir(c->keys_dir, c->config)))
                return EXIT_UNAVAILABLE;
        if (c->out)
                out_path = strdup(c->out);
        else if (!c->decrypt) {
                if (asprintf(&out_path, "%s.age", c->in) < 0)
                        out_path = NULL;
        } else {
                size_t l = strlen(c->in);
                if (l <= 4 || !streq(c->in + l - 4, ".age")) {
                        ctl_bad_value("the input does not end in .age: name the output with -o", c->in);
                        return EXIT_USAGE;
                }
                out_path = strndup(c->in, l - 4);
        }
        if (!out_path)
                return EXIT_UNAVAILABLE;

        in_fd = open(c->in, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (in_fd < 0 || fstat(in_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                path_error("cannot read", c->in, in_fd < 0 ? -errno : -EINVAL);
                return EXIT_NO;
        }
        source = realpath(c->in, NULL);
        if (!source) {
                path_error("cannot resolve", c->in, -errno);
                return EXIT_NO;
        }
        /* Ask policyd first: nothing is worth encrypting that cannot be recorded. */
        fd = ctl_connect(c->sock);
        if (fd < 0) {
                fprintf(stderr, "mediactl: nothing written: the %s must be recorded as evidence first\n",
                        c->decrypt ? "decryption" : "encryption");
                return EXIT_UNAVAILABLE;
        }
        r = output_open(&o, out_path, c->force);
        if (r != 0)
                goto out;
        r = run_age(c, in_fd, o.fd, dir, &ex);
        if (r < 0) {
                r = ex;
                goto out;
        }
        /* plaintext bytes: what encryption read, or what decryption wrote */
        pos = lseek(c->decrypt ? o.fd : in_fd, 0, SEEK_CUR);
        size = pos >= 0 ? (uint64_t)pos : (uint64_t)st.st_size;
        r = record_transfer(fd, c, source, o.base, size);
        if (r != 0) {
                fprintf(stderr, "mediactl: the evidence record could not be stored: no output was left"
                                " (R-EV-9)\n");
                goto out;
        }
        r = output_commit(&o, c->force, c->decrypt ? 0600 : 0644);
        if (r == 0)
                fprintf(stderr, "mediactl: wrote %s\n", out_path);
out:
        output_discard(&o);
        return r;
}

static void crypt_usage(FILE *f, bool decrypt)
{
        if (decrypt)
                fprintf(f, "Usage: mediactl decrypt [-o OUT] [--force] [--passphrase | --passphrase-fd N] FILE.age\n"
                           "Decrypts an age file with the organisation's identities (root only) or a\n"
                           "passphrase. The output (default FILE) must not exist unless --force.\n");
        else
                fprintf(f, "Usage: mediactl encrypt [-o OUT] [--force] [--passphrase | --passphrase-fd N] FILE\n"
                           "Encrypts FILE to the organisation's recipient, or to a passphrase asked twice\n"
                           "on the terminal. The output (default FILE.age) must not exist unless --force.\n");
        fprintf(f, "Other options: --keys-dir DIR, --config FILE, --socket PATH. Every file is\n"
                   "recorded as evidence; without the record there is no output.\n");
}

static int crypt_verb(int argc, char *argv[], bool decrypt)
{
        static const struct option opts[] = {
                {"output", required_argument, NULL, 'o'},   {"force", no_argument, NULL, 'f'},
                {"passphrase", no_argument, NULL, 'p'},     {"passphrase-fd", required_argument, NULL, 'F'},
                {"keys-dir", required_argument, NULL, 'k'}, {"config", required_argument, NULL, 'c'},
                {"socket", required_argument, NULL, 'X'},   {"help", no_argument, NULL, 'h'},
                {},
        };
        crypt_opts c = {.decrypt = decrypt, .pass_fd = -1};
        int o;

        optind = 1;
        while ((o = getopt_long(argc, argv, "o:fph", opts, NULL)) >= 0) {
                switch (o) {
                case 'o':
                        c.out = optarg;
                        break;
                case 'f':
                        c.force = true;
                        break;
                case 'p':
                        c.passphrase = true;
                        break;
                case 'F':
                        c.passphrase = true;
                        c.pass_fd = ctl_parse_fd(optarg);
                        if (c.pass_fd < 0) {
                                ctl_bad_value("--passphrase-fd takes a descriptor number", optarg);
                                return EXIT_USAGE;
                        }
                        break;
                case 'k':
                        c.keys_dir = optarg;
                        break;
                case 'c':
                        c.config = optarg;
                        break;
                case 'X':
                        c.sock = optarg;
                        break;
                default:
                        crypt_usage(o == 'h' ? stdout : stderr, decrypt);
                        return o == 'h' ? 0 : EXIT_USAGE;
                }
        }
        if (optind != argc - 1) {
                crypt_usage(stderr, decrypt);
                return EXIT_USAGE;
        }
        c.in = argv[optind];
        return crypt_run(&c);
}

int verb_encrypt(int argc, char *argv[])
{
        return crypt_verb(argc, argv, false);
}

int verb_decrypt(int argc, char *argv[])
{
        return crypt_verb(argc, argv, true);
}
