/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-age-tool: a test-only CLI over common/age.h, so the interop tests can
 * drive our library against the reference `age` from a shell.
 *   keygen                         identity file (like age-keygen) on stdout
 *   recipient < identity-file      the age1... recipient of each identity
 *   encrypt (-r age1...)... | -P passfile [-w log2n] [-t threads]   stdin -> stdout
 *   decrypt -i identity-file | -P passfile [-t threads] [--reader]   stdin -> stdout
 * Passphrases come from a file, never argv.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "age.h"
#include "cleanup.h"

typedef struct tool_args {
        mamori_age_recipient *recipients;
        size_t n_recipients;
        char *identity_file;
        char *passphrase; /* sodium_malloc */
        unsigned log2n, threads;
        int use_reader;
} tool_args;

/* Reads a whole small file into sodium memory, dropping one trailing newline. */
static int read_secret_file(const char *path, char **ret)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        char *buf;
        ssize_t n;

        if (fd < 0)
                return -errno;
        buf = sodium_malloc(65536);
        if (!buf)
                return -ENOMEM;
        n = read(fd, buf, 65535);
        if (n < 0) {
                sodium_free(buf);
                return -errno;
        }
        buf[n] = 0;
        if (n > 0 && buf[n - 1] == '\n')
                buf[n - 1] = 0;
        *ret = buf;
        return 0;
}

/* Parses options shared by encrypt and decrypt. */
static int parse_args(int argc, char **argv, tool_args *a)
{
        static const struct option opts[] = {
                { "reader", no_argument, NULL, 'R' },
                {},
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "r:i:P:w:t:", opts, NULL)) >= 0) {
                switch (c) {
                case 'r': {
                        mamori_age_recipient *n = reallocarray(a->recipients, a->n_recipients + 1,
                                                               sizeof(*n));
                        if (!n)
                                return -ENOMEM;
                        a->recipients = n;
                        r = mamori_age_recipient_parse(optarg, &a->recipients[a->n_recipients++]);
                        if (r < 0)
                                return r;
                        break;
                }
                case 'i':
                        a->identity_file = optarg;
                        break;
                case 'P':
                        r = read_secret_file(optarg, &a->passphrase);
                        if (r < 0)
                                return r;
                        break;
                case 'w':
                        a->log2n = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 't':
                        a->threads = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'R':
                        a->use_reader = 1;
                        break;
                default:
                        return -EINVAL;
                }
        }
        return 0;
}

/* Decrypts stdin with the pull reader, for testing it against the fd path. */
static int decrypt_with_reader(const mamori_age_decrypt_opts *o)
{
        mamori_age_reader *rd = NULL;
        _cleanup_free_ uint8_t *buf = malloc(100000);
        ssize_t n;
        int r;

        if (!buf)
                return -ENOMEM;
        r = mamori_age_reader_new(STDIN_FILENO, o, &rd);
        if (r < 0)
                return r;
        /* An odd read size so chunk boundaries fall inside reads. */
        while ((n = mamori_age_reader_read(rd, buf, 77777)) > 0)
                if (fwrite(buf, 1, n, stdout) != (size_t) n) {
                        n = -EIO;
                        break;
                }
        mamori_age_reader_free(rd);
        return n < 0 ? (int) n : 0;
}

/* keygen: prints an identity file. */
static int cmd_keygen(void)
{
        mamori_age_identity *id = NULL;
        mamori_age_recipient rc;
        _cleanup_free_ char *pub = NULL;
        char *sec = NULL;
        int r;

        r = mamori_age_identity_generate(&id);
        if (r >= 0)
                r = mamori_age_identity_to_recipient(id, &rc);
        if (r >= 0)
                r = mamori_age_recipient_format(&rc, &pub);
        if (r >= 0)
                r = mamori_age_identity_format(id, &sec);
        if (r >= 0)
                printf("# public key: %s\n%s\n", pub, sec);
        sodium_free(sec);
        mamori_age_identity_free(id);
        return r;
}

/* Loads the identity file named by -i. */
static int load_identities(const char *path, mamori_age_identity ***ret, size_t *ret_n)
{
        char *text = NULL;
        int r;

        r = read_secret_file(path, &text);
        if (r < 0)
                return r;
        r = mamori_age_identities_parse_text(text, ret, ret_n);
        sodium_free(text);
        return r;
}

int main(int argc, char **argv)
{
        tool_args a = {};
        mamori_age_identity **ids = NULL;
        size_t n_ids = 0;
        int r;

        if (argc < 2 || sodium_init() < 0) {
                fprintf(stderr, "usage: mamori-age-tool keygen|recipient|encrypt|decrypt ...\n");
                return 2;
        }
        const char *verb = argv[1];
        r = parse_args(argc - 1, argv + 1, &a);
        if (r >= 0 && streq(verb, "keygen"))
                r = cmd_keygen();
        else if (r >= 0 && streq(verb, "recipient")) {
                r = load_identities("/dev/stdin", &ids, &n_ids);
                for (size_t i = 0; r >= 0 && i < n_ids; i++) {
                        mamori_age_recipient rc;
                        _cleanup_free_ char *s = NULL;
                        r = mamori_age_identity_to_recipient(ids[i], &rc);
                        if (r >= 0)
                                r = mamori_age_recipient_format(&rc, &s);
                        if (r >= 0)
                                printf("%s\n", s);
                }
        } else if (r >= 0 && streq(verb, "encrypt")) {
                mamori_age_encrypt_opts o = {
                        .recipients = a.recipients, .n_recipients = a.n_recipients,
                        .passphrase = a.passphrase, .scrypt_log2n = a.log2n, .threads = a.threads,
                };
                r = mamori_age_encrypt_fd(STDIN_FILENO, STDOUT_FILENO, &o);
        } else if (r >= 0 && streq(verb, "decrypt")) {
                if (a.identity_file)
                        r = load_identities(a.identity_file, &ids, &n_ids);
                mamori_age_decrypt_opts o = {
                        .identities = ids, .n_identities = n_ids, .passphrase = a.passphrase,
                        .threads = a.threads,
                };
                if (r >= 0)
                        r = a.use_reader ? decrypt_with_reader(&o)
                                         : mamori_age_decrypt_fd(STDIN_FILENO, STDOUT_FILENO, &o);
        } else if (r >= 0)
                r = -EINVAL;
        fflush(stdout);
        mamori_age_identities_free(ids, n_ids);
        sodium_free(a.passphrase);
        free(a.recipients);
        if (r < 0) {
                fprintf(stderr, "mamori-age-tool %s: %s\n", verb, strerror(-r));
                return 1;
        }
        return 0;
}
