/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The organisation's key directory (common/orgkeys.h): generation in age-keygen format,
 * rotation keeps every old identity and moves the recipient (R-CRY-2), loading refuses
 * files someone else could have swapped or read (R-CRY-3), -EEXIST/-ENOENT. Runs as
 * root (the files must be root's); skipped otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "orgkeys.h"

typedef struct fixture {
        char dir[64];  /* the mkdtemp parent */
        char keys[96]; /* dir/keys: not created yet */
} fixture;

static int setup(void **state)
{
        fixture *f = calloc(1, sizeof *f);
        strcpy(f->dir, "/tmp/test-orgkeys.XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->keys, sizeof f->keys, "%s/keys", f->dir);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static char *slurp(const char *dir, const char *name)
{
        char path[160], *buf = calloc(1, 65536);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *fp = fopen(path, "re");
        assert_non_null(fp);
        size_t n = fread(buf, 1, 65535, fp);
        buf[n] = 0;
        fclose(fp);
        return buf;
}

static mode_t mode_of(const char *dir, const char *name)
{
        char path[160];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        assert_int_equal(lstat(path, &st), 0);
        return st.st_mode & 07777;
}

static void test_generate(void **state)
{
        fixture *f = *state;
        char *rcp = NULL, *text, *line;
        mamori_age_recipient r, r2;
        mamori_age_identity **ids = NULL;
        size_t n = 0;

        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r), -ENOENT);
        assert_int_equal(mamori_orgkeys_identities(f->keys, &ids, &n), -ENOENT);
        assert_int_equal(mamori_orgkeys_generate(f->keys, true, NULL), -ENOENT);
        assert_int_equal(mamori_orgkeys_generate(f->keys, false, &rcp), 0);
        assert_non_null(rcp);
        assert_memory_equal(rcp, "age1", 4);
        assert_int_equal(mode_of(f->keys, "."), 0700);
        assert_int_equal(mode_of(f->keys, "identities"), 0600);
        assert_int_equal(mode_of(f->keys, "recipient"), 0644);

        /* recipient: one line; identities: age-keygen's three lines */
        text = slurp(f->keys, "recipient");
        assert_int_equal(strlen(text), strlen(rcp) + 1);
        assert_memory_equal(text, rcp, strlen(rcp));
        free(text);
        text = slurp(f->keys, "identities");
        assert_memory_equal(text, "# created: 20", 13);
        line = strstr(text, "# public key: ");
        assert_non_null(line);
        assert_memory_equal(line + 14, rcp, strlen(rcp));
        assert_non_null(strstr(text, "\nAGE-SECRET-KEY-1"));
        free(text);

        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r), 0);
        assert_int_equal(mamori_age_recipient_parse(rcp, &r2), 0);
        assert_memory_equal(r.public_key, r2.public_key, 32);
        assert_int_equal(mamori_orgkeys_identities(f->keys, &ids, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(mamori_age_identity_to_recipient(ids[0], &r2), 0);
        assert_memory_equal(r.public_key, r2.public_key, 32);
        mamori_age_identities_free(ids, n);

        /* a second generate is refused and changes nothing */
        assert_int_equal(mamori_orgkeys_generate(f->keys, false, NULL), -EEXIST);
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r2), 0);
        assert_memory_equal(r.public_key, r2.public_key, 32);
        free(rcp);
}

/* Rotation: old identity kept first, new recipient, a file encrypted to the old key
 * still opens with the loaded identities (R-CRY-2). */
static void test_rotate(void **state)
{
        fixture *f = *state;
        char *rcp1 = NULL, *rcp2 = NULL, *before, *after;
        mamori_age_recipient r1, r2, got;
        mamori_age_identity **ids = NULL;
        size_t n = 0;

        assert_int_equal(mamori_orgkeys_generate(f->keys, false, &rcp1), 0);
        before = slurp(f->keys, "identities");
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r1), 0);
        assert_int_equal(mamori_orgkeys_generate(f->keys, true, &rcp2), 0);
        assert_string_not_equal(rcp1, rcp2);
        after = slurp(f->keys, "identities");
        assert_memory_equal(after, before, strlen(before)); /* appended, old text intact */
        assert_true(strlen(after) > strlen(before));
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &got), 0);
        assert_int_equal(mamori_age_recipient_parse(rcp2, &r2), 0);
        assert_memory_equal(got.public_key, r2.public_key, 32);
        assert_int_equal(mode_of(f->keys, "identities"), 0600);
        assert_int_equal(mode_of(f->keys, "recipient"), 0644);

        assert_int_equal(mamori_orgkeys_identities(f->keys, &ids, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(mamori_age_identity_to_recipient(ids[0], &got), 0);
        assert_memory_equal(got.public_key, r1.public_key, 32);
        assert_int_equal(mamori_age_identity_to_recipient(ids[1], &got), 0);
        assert_memory_equal(got.public_key, r2.public_key, 32);

        /* a file to the old recipient decrypts with the rotated set */
        int p[2], q[2];
        char out[16] = {0};
        assert_int_equal(pipe(p), 0);
        assert_int_equal(pipe(q), 0);
        assert_int_equal(write(p[1], "old data", 8), 8);
        close(p[1]);
        FILE *tmp = tmpfile();
        assert_non_null(tmp);
        mamori_age_encrypt_opts eo = {.recipients = &r1, .n_recipients = 1, .threads = 1};
        assert_int_equal(mamori_age_encrypt_fd(p[0], fileno(tmp), &eo), 0);
        close(p[0]);
        assert_int_equal(lseek(fileno(tmp), 0, SEEK_SET), 0);
        mamori_age_decrypt_opts dopt = {.identities = ids, .n_identities = n, .threads = 1};
        assert_int_equal(mamori_age_decrypt_fd(fileno(tmp), q[1], &dopt), 0);
        close(q[1]);
        assert_int_equal(read(q[0], out, sizeof out), 8);
        assert_string_equal(out, "old data");
        close(q[0]);
        fclose(tmp);
        mamori_age_identities_free(ids, n);

        /* no temporary file is left behind */
        char path[160];
        snprintf(path, sizeof path, "%s/.identities.tmp", f->keys);
        assert_int_equal(access(path, F_OK), -1);
        snprintf(path, sizeof path, "%s/.recipient.tmp", f->keys);
        assert_int_equal(access(path, F_OK), -1);
        free(before);
        free(after);
        free(rcp1);
        free(rcp2);
}

static void chmod_at(const char *dir, const char *name, mode_t m)
{
        char path[160];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        assert_int_equal(chmod(path, m), 0);
}

/* Modes someone else could exploit are refused (-EPERM), fail closed. */
static void test_refused_modes(void **state)
{
        fixture *f = *state;
        mamori_age_recipient r;
        mamori_age_identity **ids = NULL;
        size_t n = 0;

        assert_int_equal(mamori_orgkeys_generate(f->keys, false, NULL), 0);
        chmod_at(f->keys, "identities", 0640); /* group may read the secret */
        assert_int_equal(mamori_orgkeys_identities(f->keys, &ids, &n), -EPERM);
        assert_int_equal(mamori_orgkeys_generate(f->keys, true, NULL), -EPERM);
        chmod_at(f->keys, "identities", 0604);
        assert_int_equal(mamori_orgkeys_identities(f->keys, &ids, &n), -EPERM);
        chmod_at(f->keys, "identities", 0400);
        assert_int_equal(mamori_orgkeys_identities(f->keys, &ids, &n), 0);
        mamori_age_identities_free(ids, n);

        chmod_at(f->keys, "recipient", 0666); /* anyone may swap the recipient */
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r), -EPERM);
        chmod_at(f->keys, "recipient", 0664);
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r), -EPERM);
        chmod_at(f->keys, "recipient", 0644);
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r), 0);

        chmod_at(f->keys, ".", 0777); /* the directory itself writable by others */
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r), -EPERM);
        assert_int_equal(mamori_orgkeys_identities(f->keys, &ids, &n), -EPERM);
        chmod_at(f->keys, ".", 0755);
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r), 0);
}

static void test_refused_owner(void **state)
{
        fixture *f = *state;
        char path[160];
        mamori_age_recipient r;
        mamori_age_identity **ids = NULL;
        size_t n = 0;

        assert_int_equal(mamori_orgkeys_generate(f->keys, false, NULL), 0);
        snprintf(path, sizeof path, "%s/recipient", f->keys);
        assert_int_equal(chown(path, 65534, 0), 0);
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r), -EPERM);
        assert_int_equal(chown(path, 0, 0), 0);
        snprintf(path, sizeof path, "%s/identities", f->keys);
        assert_int_equal(chown(path, 65534, 0), 0);
        assert_int_equal(mamori_orgkeys_identities(f->keys, &ids, &n), -EPERM);
        assert_int_equal(chown(path, 0, 0), 0);
        assert_int_equal(chown(f->keys, 65534, 0), 0);
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r), -EPERM);
        assert_int_equal(chown(f->keys, 0, 0), 0);
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r), 0);
}

/* Symlinks are refused for the files and the directory, even pointing at good keys. */
static void test_refused_symlink(void **state)
{
        fixture *f = *state;
        char other[96], link[160], path[160];
        mamori_age_recipient r;
        mamori_age_identity **ids = NULL;
        size_t n = 0;

        snprintf(other, sizeof other, "%s/other", f->dir);
        assert_int_equal(mamori_orgkeys_generate(other, false, NULL), 0);
        assert_int_equal(mkdir(f->keys, 0700), 0);
        for (int i = 0; i < 2; i++) {
                const char *name = i ? "identities" : "recipient";
                snprintf(path, sizeof path, "%s/%s", other, name);
                snprintf(link, sizeof link, "%s/%s", f->keys, name);
                assert_int_equal(symlink(path, link), 0);
        }
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r), -EPERM);
        assert_int_equal(mamori_orgkeys_identities(f->keys, &ids, &n), -EPERM);
        assert_int_equal(mamori_orgkeys_generate(f->keys, false, NULL), -EEXIST);
        assert_int_equal(mamori_orgkeys_generate(f->keys, true, NULL), -EPERM);

        snprintf(link, sizeof link, "%s/linked", f->dir);
        assert_int_equal(symlink(other, link), 0);
        assert_int_equal(mamori_orgkeys_recipient(link, &r), -EPERM);
        assert_int_equal(mamori_orgkeys_recipient(other, &r), 0);
}

static void test_malformed(void **state)
{
        fixture *f = *state;
        char path[160];
        mamori_age_recipient r;
        mamori_age_identity **ids = NULL;
        size_t n = 0;
        FILE *fp;

        assert_int_equal(mamori_orgkeys_generate(f->keys, false, NULL), 0);
        snprintf(path, sizeof path, "%s/recipient", f->keys);
        fp = fopen(path, "we");
        fputs("age1notarecipient\n", fp);
        fclose(fp);
        assert_int_equal(mamori_orgkeys_recipient(f->keys, &r), -EINVAL);
        snprintf(path, sizeof path, "%s/identities", f->keys);
        fp = fopen(path, "we");
        fputs("# nothing here\n", fp);
        fclose(fp);
        assert_int_equal(mamori_orgkeys_identities(f->keys, &ids, &n), -EINVAL);
        /* rotation does not extend a file it cannot read back */
        assert_int_equal(mamori_orgkeys_generate(f->keys, true, NULL), -EINVAL);
        char *text = slurp(f->keys, "identities");
        assert_string_equal(text, "# nothing here\n");
        free(text);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_generate, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rotate, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refused_modes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refused_owner, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refused_symlink, setup, teardown),
                cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        };
        if (geteuid() != 0) {
                fprintf(stderr, "test-orgkeys: needs root (the key files must be root's)\n");
                return 77;
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
