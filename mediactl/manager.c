/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mediactl manager keygen|trust|untrust|list: a media-use manager's Ed25519 signing key
 * (R-PERM-2) and root's list of trusted manager keys (each change is evidence).
 *
 * Key file (mode 0600, created with O_EXCL|O_NOFOLLOW):
 *   "MMGRKEY1" | u64 opslimit | u64 memlimit | salt[16] | nonce[24] | secretbox(sk[64])
 * The box key is Argon2id(passphrase, salt, opslimit, memlimit). The passphrase comes
 * from the terminal without echo, or from --passphrase-fd; never argv or environment.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cleanup.h"
#include "grant.h"
#include "mediactl.h"

#define KEY_MAGIC "MMGRKEY1"
#define SALT_LEN crypto_pwhash_SALTBYTES
#define NONCE_LEN crypto_secretbox_NONCEBYTES
#define KEY_FILE_LEN (8 + 8 + 8 + SALT_LEN + NONCE_LEN + crypto_secretbox_MACBYTES + MAMORI_GRANT_SK_LEN)
#define PASS_MAX CTL_PASS_MAX
#define PASS_MIN 8

static void sodium_freep(void *p)
{
        sodium_free(*(void **)p);
}

/* Reads one line from fd (without the newline) into pass (PASS_MAX + 1 bytes). */
static int read_line(int fd, char *pass)
{
        size_t n = 0;
        for (;;) {
                char ch;
                ssize_t k = read(fd, &ch, 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0 || ch == '\n')
                        break;
                if (n == PASS_MAX)
                        return -E2BIG;
                pass[n++] = ch;
        }
        pass[n] = 0;
        return (int)n;
}

int ctl_read_passphrase(int pass_fd, const char *prompt, char *pass)
{
        if (pass_fd >= 0) {
                int r = read_line(pass_fd, pass);
                if (r < 0)
                        fprintf(stderr, "mediactl: cannot read the passphrase from fd %d\n", pass_fd);
                return r;
        }
        _cleanup_close_ int tty = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (tty < 0) {
                fprintf(stderr, "mediactl: no terminal for the passphrase: use --passphrase-fd N\n");
                return -ENOTTY;
        }
        struct termios old, raw;
        if (tcgetattr(tty, &old) < 0)
                return -errno;
        raw = old;
        raw.c_lflag &= ~(ECHO | ECHONL);
        raw.c_lflag |= ICANON;
        /* echo off before the prompt: an answer typed as soon as the prompt shows must
         * not be flushed away by TCSAFLUSH */
        tcsetattr(tty, TCSAFLUSH, &raw);
        (void)!write(tty, prompt, strlen(prompt));
        int r = read_line(tty, pass);
        tcsetattr(tty, TCSAFLUSH, &old);
        (void)!write(tty, "\n", 1);
        return r;
}

int ctl_parse_fd(const char *s)
{
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || *end || !*s || v < 0 || v > 65535)
                return -EINVAL;
        return (int)v;
}

/* Derives the box key. Returns 0 or -ENOMEM (Argon2 could not get its memory). */
static int derive(const char *pass, const uint8_t *salt, uint64_t ops, uint64_t mem, uint8_t *key)
{
        if (crypto_pwhash(key, crypto_secretbox_KEYBYTES, pass, strlen(pass), salt, ops, mem,
                          crypto_pwhash_ALG_ARGON2ID13) != 0)
                return -ENOMEM;
        return 0;
}

static void put_u64(uint8_t *p, uint64_t v)
{
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t)v;
}

static uint64_t get_u64(const uint8_t *p)
{
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

int manager_load_key(const char *path, int pass_fd, uint8_t *sk)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0) {
                fprintf(stderr, "mediactl: cannot open the manager key \"");
                print_text_safe(stderr, path);
                fprintf(stderr, "\": %m\n");
                return -errno;
        }
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077)) {
                fprintf(stderr, "mediactl: refusing the manager key: it must be a regular file of yours,"
                                " readable by nobody else (mode 0600)\n");
                return -EPERM;
        }
        uint8_t buf[KEY_FILE_LEN + 1];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n != KEY_FILE_LEN || memcmp(buf, KEY_MAGIC, 8) != 0) {
                fprintf(stderr, "mediactl: not a mamori manager key file\n");
                return -EBADMSG;
        }
        uint64_t ops = get_u64(buf + 8), mem = get_u64(buf + 16);
        if (ops < crypto_pwhash_OPSLIMIT_INTERACTIVE || ops > crypto_pwhash_OPSLIMIT_SENSITIVE ||
            mem < crypto_pwhash_MEMLIMIT_INTERACTIVE || mem > crypto_pwhash_MEMLIMIT_SENSITIVE) {
                fprintf(stderr, "mediactl: the key file's parameters are out of range\n");
                return -EBADMSG;
        }
        _cleanup_(sodium_freep) char *pass = sodium_malloc(PASS_MAX + 1);
        _cleanup_(sodium_freep) uint8_t *key = sodium_malloc(crypto_secretbox_KEYBYTES);
        if (!pass || !key)
                return -ENOMEM;
        int r = ctl_read_passphrase(pass_fd, "Manager key passphrase: ", pass);
        if (r < 0)
                return r;
        const uint8_t *salt = buf + 24, *nonce = salt + SALT_LEN, *box = nonce + NONCE_LEN;
        r = derive(pass, salt, ops, mem, key);
        sodium_memzero(pass, PASS_MAX + 1);
        if (r < 0)
                return r;
        if (crypto_secretbox_open_easy(sk, box, crypto_secretbox_MACBYTES + MAMORI_GRANT_SK_LEN, nonce, key) != 0) {
                fprintf(stderr, "mediactl: wrong passphrase, or the key file was altered\n");
                return -EBADE;
        }
        return 0;
}

static int keygen(int argc, char *argv[])
{
        static const struct option opts[] = {
                {"key", required_argument, NULL, 'k'},
                {"passphrase-fd", required_argument, NULL, 'F'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        const char *path = NULL;
        int pass_fd = -1, o;
        optind = 1;
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                if (o == 'k')
                        path = optarg;
                else if (o == 'F' && (pass_fd = ctl_parse_fd(optarg)) >= 0)
                        continue;
                else {
                        fprintf(o == 'h' ? stdout : stderr,
                                "Usage: mediactl manager keygen --key FILE [--passphrase-fd N]\n"
                                "Makes a media-use manager's signing key, protected by a passphrase.\n"
                                "Prints the public key for root to trust (mediactl manager trust).\n");
                        return o == 'h' ? 0 : EXIT_USAGE;
                }
        }
        if (!path) {
                fprintf(stderr, "mediactl: --key FILE is required\n");
                return EXIT_USAGE;
        }
        _cleanup_(sodium_freep) char *pass = sodium_malloc(PASS_MAX + 1);
        _cleanup_(sodium_freep) char *again = sodium_malloc(PASS_MAX + 1);
        _cleanup_(sodium_freep) uint8_t *sk = sodium_malloc(MAMORI_GRANT_SK_LEN);
        _cleanup_(sodium_freep) uint8_t *key = sodium_malloc(crypto_secretbox_KEYBYTES);
        if (!pass || !again || !sk || !key)
                return EXIT_UNAVAILABLE;
        int n = ctl_read_passphrase(pass_fd, "New passphrase: ", pass);
        if (n < 0)
                return EXIT_USAGE;
        if (pass_fd < 0 && (ctl_read_passphrase(-1, "Again: ", again) < 0 || !streq(pass, again))) {
                fprintf(stderr, "mediactl: the passphrases differ\n");
                return EXIT_USAGE;
        }
        if (n < PASS_MIN) {
                fprintf(stderr, "mediactl: the passphrase must have at least %d characters\n", PASS_MIN);
                return EXIT_USAGE;
        }
        uint8_t buf[KEY_FILE_LEN], pk[MAMORI_GRANT_PK_LEN];
        memcpy(buf, KEY_MAGIC, 8);
        put_u64(buf + 8, crypto_pwhash_OPSLIMIT_INTERACTIVE);
        put_u64(buf + 16, crypto_pwhash_MEMLIMIT_INTERACTIVE);
        uint8_t *salt = buf + 24, *nonce = salt + SALT_LEN, *box = nonce + NONCE_LEN;
        randombytes_buf(salt, SALT_LEN);
        randombytes_buf(nonce, NONCE_LEN);
        crypto_sign_keypair(pk, sk);
        if (derive(pass, salt, crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE, key) < 0)
                return EXIT_UNAVAILABLE;
        crypto_secretbox_easy(box, sk, MAMORI_GRANT_SK_LEN, nonce, key);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
                fprintf(stderr, "mediactl: cannot create \"");
                print_text_safe(stderr, path);
                fprintf(stderr, "\": %m\n");
                return EXIT_NO;
        }
        if (fchmod(fd, 0600) < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fsync(fd) < 0) {
                fprintf(stderr, "mediactl: cannot write the key: %m\n");
                (void)unlink(path);
                return EXIT_UNAVAILABLE;
        }
        char b64[48];
        printf("%s\n", mamori_pubkey_format(pk, b64));
        return 0;
}

/* trust PUBKEY --name NAME, untrust PUBKEY: root only, each an evidence record. */
static int trust(int argc, char *argv[], bool on)
{
        static const struct option opts[] = {
                {"name", required_argument, NULL, 'n'}, {"socket", required_argument, NULL, 'X'}, {},
        };
        if (argc < 2 || argv[1][0] == '-') {
                fprintf(stderr, on ? "Usage: mediactl manager trust PUBKEY --name NAME\n"
                                   : "Usage: mediactl manager untrust PUBKEY\n");
                return EXIT_USAGE;
        }
        uint8_t pk[MAMORI_GRANT_PK_LEN];
        if (mamori_pubkey_parse(argv[1], pk) < 0) {
                ctl_bad_value("not a manager public key (44 characters of base64)", argv[1]);
                return EXIT_USAGE;
        }
        const char *name = NULL, *sock = NULL;
        int o;
        optind = 1;
        while ((o = getopt_long(argc - 1, argv + 1, "", opts, NULL)) >= 0) {
                if (o == 'n')
                        name = optarg;
                else if (o == 'X')
                        sock = optarg;
                else
                        return EXIT_USAGE;
        }
        if (on && (!name || !mamori_name_valid(name))) {
                ctl_bad_value("--name is the manager's user name", name ? name : "");
                return EXIT_USAGE;
        }
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL;
        if (mamori_msg_new(on ? MAMORI_MSG_MANAGER_TRUST : MAMORI_MSG_MANAGER_UNTRUST, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        mamori_msg_put_bytes(req, MAMORI_F_MGR_PUBKEY, pk, sizeof pk);
        if (name)
                mamori_msg_put_str(req, MAMORI_F_MGR_NAME, name);
        _cleanup_close_ int fd = ctl_connect(sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        _cleanup_(mamori_msg_freep) mamori_msg *rep = NULL;
        int st = ctl_call(fd, req, &rep);
        if (st < 0)
                return EXIT_UNAVAILABLE;
        if (st == MAMORI_OK)
                printf(on ? "trusted\n" : "no longer trusted\n");
        return ctl_exit_for(st);
}

static int print_manager(const mamori_msg *m, void *u)
{
        const uint8_t *pk;
        const char *name = "", *state = "";
        char b64[48];
        if (mamori_msg_get_bytes(m, MAMORI_F_MGR_PUBKEY, MAMORI_GRANT_PK_LEN, &pk) < 0)
                return 0;
        (void)mamori_msg_get_str(m, MAMORI_F_MGR_NAME, 64, &name);
        (void)mamori_msg_get_str(m, MAMORI_F_GRANT_STATE, 16, &state);
        printf("%s %-10s ", mamori_pubkey_format(pk, b64), state);
        print_text_safe(stdout, name);
        putchar('\n');
        return 0;
}

static int list(int argc, char *argv[])
{
        const char *sock = argc >= 3 && streq(argv[1], "--socket") ? argv[2] : NULL;
        _cleanup_(mamori_msg_freep) mamori_msg *req = NULL;
        if (mamori_msg_new(MAMORI_MSG_MANAGER_LIST, 0, &req) < 0)
                return EXIT_UNAVAILABLE;
        _cleanup_close_ int fd = ctl_connect(sock);
        if (fd < 0)
                return EXIT_UNAVAILABLE;
        int st = ctl_stream(fd, req, print_manager, NULL);
        return st < 0 ? EXIT_UNAVAILABLE : ctl_exit_for(st);
}

int verb_manager(int argc, char *argv[])
{
        if (argc < 2) {
                fprintf(stderr, "Usage: mediactl manager keygen|trust|untrust|list ...\n");
                return EXIT_USAGE;
        }
        const char *sub = argv[1];
        if (streq(sub, "keygen"))
                return keygen(argc - 1, argv + 1);
        if (streq(sub, "trust"))
                return trust(argc - 1, argv + 1, true);
        if (streq(sub, "untrust"))
                return trust(argc - 1, argv + 1, false);
        if (streq(sub, "list"))
                return list(argc - 1, argv + 1);
        ctl_bad_value("unknown manager verb", sub);
        return EXIT_USAGE;
}
