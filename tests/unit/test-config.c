/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The policy-file parser (common/config.c). Every bad value must be an error that
 * names file, line and key, and must leave *ret untouched (DESIGN.md "Configuration").
 *
 * The parser's source is included, not just linked, so that the table itself and
 * the string-list type (no key uses it yet) can be tested directly. The public API
 * is exercised exactly as callers use it.
 */
#include <errno.h>
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

#include "../../common/config.c"

static char tmpdir[] = "/tmp/test-config-XXXXXX";
static char conf_path[sizeof tmpdir + 32];

/* Sentinel for "*ret untouched". */
static mamori_config sentinel;

static int setup(void **state)
{
        strcpy(tmpdir, "/tmp/test-config-XXXXXX");
        if (!mkdtemp(tmpdir))
                return -1;
        snprintf(conf_path, sizeof conf_path, "%s/mamori.conf", tmpdir);
        return 0;
}

static int teardown(void **state)
{
        unlink(conf_path);
        rmdir(tmpdir);
        return 0;
}

/* Writes n bytes of text to conf_path. */
static void write_conf_n(const char *text, size_t n)
{
        FILE *f = fopen(conf_path, "we");

        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
}

static void write_conf(const char *text)
{
        write_conf_n(text, strlen(text));
}

/* Loads text, which must succeed; returns the config. */
static mamori_config *load_ok(const char *text)
{
        mamori_config *c = NULL;
        char *error = NULL;
        int r;

        write_conf(text);
        r = mamori_config_load(conf_path, &c, &error);
        if (r < 0)
                fail_msg("load failed (%d): %s\n--- text:\n%s", r, error ?: "(no message)", text);
        assert_null(error);
        assert_non_null(c);
        return c;
}

/* Loads what is in conf_path, which must fail with -EINVAL, leave *ret untouched and give
 * an error starting "FILE:LINE: KEY: " and containing what. */
static void assert_fails_file(unsigned line, const char *key, const char *what)
{
        mamori_config *c = &sentinel;
        char *error = NULL;
        char prefix[512];
        int r;

        r = mamori_config_load(conf_path, &c, &error);
        assert_int_equal(r, -EINVAL);
        assert_ptr_equal(c, &sentinel);
        assert_non_null(error);
        if (key)
                snprintf(prefix, sizeof prefix, "%s:%u: %s: ", conf_path, line, key);
        else
                snprintf(prefix, sizeof prefix, "%s:%u: ", conf_path, line);
        if (strncmp(error, prefix, strlen(prefix)) != 0 || !strstr(error, what))
                fail_msg("error \"%s\" does not start \"%s\" and contain \"%s\"", error, prefix, what);
        free(error);
}

static void assert_fails(const char *text, unsigned line, const char *key, const char *what)
{
        write_conf(text);
        assert_fails_file(line, key, what);
}

/* The defaults documented in config.h, restated independently of the table. */
static void assert_defaults(const mamori_config *c)
{
        assert_string_equal(c->roles.admin_group, "mamori-admin");
        assert_string_equal(c->roles.manager_group, "mamori-manager");
        assert_string_equal(c->roles.auditor_group, "mamori-auditor");
        assert_string_equal(c->roles.agent_user, "root");
        assert_int_equal(c->evidence.checkpoint_records, 1000);
        assert_int_equal(c->evidence.checkpoint_seconds, 10);
        assert_int_equal(c->evidence.epoch_seconds, 86400);
        /* R-EV-11 defaults: media use 5 y, login 5 y, permission 1 y. */
        assert_int_equal(c->evidence.retention_media_days, 1827);
        assert_int_equal(c->evidence.retention_login_days, 1827);
        assert_int_equal(c->evidence.retention_permission_days, 366);
        assert_int_equal(c->evidence.retention_admin_days, 1827);
        assert_string_equal(c->crypto.keys_dir, "/etc/mamori/keys");
        assert_true(c->evidence.journal);
}

static void test_defaults(void **state)
{
        mamori_config *c = NULL;

        assert_int_equal(mamori_config_new_default(&c), 0);
        assert_null(c->path);
        assert_defaults(c);
        mamori_config_free(c);
        mamori_config_free(NULL);
}

static void test_empty_file_is_defaults(void **state)
{
        mamori_config *c = load_ok("");

        assert_string_equal(c->path, conf_path);
        assert_defaults(c);
        mamori_config_free(c);

        c = load_ok("# only a comment\n\nroles: { };\nevidence: { };\n");
        assert_defaults(c);
        mamori_config_free(c);
}

/* The shipped rules/mamori.conf sets every key, each to exactly its default. */
static void test_shipped_file_is_defaults(void **state)
{
        const char *root = getenv("MAMORI_SOURCE_ROOT");
        char path[4096];
        mamori_config *c = NULL;
        char *error = NULL;
        config_t cf;

        snprintf(path, sizeof path, "%s/rules/mamori.conf", root ?: "../..");
        assert_int_equal(mamori_config_load(path, &c, &error), 0);
        assert_null(error);
        assert_string_equal(c->path, path);
        assert_defaults(c);
        mamori_config_free(c);

        /* "Listing every key": each table row is present in the file. */
        config_init(&cf);
        assert_int_equal(config_read_file(&cf, path), CONFIG_TRUE);
        for (size_t i = 0; i < ELEMENTSOF(config_table); i++)
                if (!config_lookup(&cf, config_table[i].key))
                        fail_msg("%s: key %s is not listed", path, config_table[i].key);
        config_destroy(&cf);
}

static void test_values_are_applied(void **state)
{
        mamori_config *c = load_ok("roles: {\n"
                                   "  admin_group = \"site_admins\";\n"
                                   "  manager_group = \"Media-Managers\";\n"
                                   "  auditor_group = \"a\";\n"
                                   "  agent_user = \"mamori-agent\";\n"
                                   "};\n"
                                   "evidence = {\n"
                                   "  checkpoint_records = 1;\n"
                                   "  checkpoint_seconds = 86400;\n"
                                   "  epoch_seconds = 0x3C;\n" /* libconfig's hex: 60 */
                                   "  retention_media_days = 36525;\n"
                                   "  retention_login_days = 2000;\n"
                                   "  retention_permission_days = 400;\n"
                                   "  retention_admin_days = 366;\n"
                                   "  journal = false;\n"
                                   "};\n");

        assert_string_equal(c->roles.admin_group, "site_admins");
        assert_string_equal(c->roles.manager_group, "Media-Managers");
        assert_string_equal(c->roles.auditor_group, "a");
        assert_string_equal(c->roles.agent_user, "mamori-agent");
        assert_int_equal(c->evidence.checkpoint_records, 1);
        assert_int_equal(c->evidence.checkpoint_seconds, 86400);
        assert_int_equal(c->evidence.epoch_seconds, 60);
        assert_int_equal(c->evidence.retention_media_days, 36525);
        assert_int_equal(c->evidence.retention_login_days, 2000);
        assert_int_equal(c->evidence.retention_permission_days, 400);
        assert_int_equal(c->evidence.retention_admin_days, 366);
        assert_false(c->evidence.journal);
        mamori_config_free(c);
}

static void test_unknown_key(void **state)
{
        assert_fails("bogus = 1;\n", 1, "bogus", "unknown key");
        assert_fails("# comment\n\nevidence: {\n  journal = true;\n  jornal = true;\n};\n", 5,
                     "evidence.jornal", "unknown key");
        assert_fails("roles: {\n  admin_group = \"x\";\n};\nremovable: {\n  optical = true;\n};\n", 4,
                     "removable", "unknown section"); /* "media" became a real section */
        /* A known key name in the wrong section is unknown there. */
        assert_fails("roles: { journal = true; };\n", 1, "roles.journal", "unknown key");
        assert_fails("journal = true;\n", 1, "journal", "unknown key");
        /* Keys are case-sensitive. */
        assert_fails("Evidence: { journal = true; };\n", 1, "Evidence", "unknown section");
}

static void test_group_and_scalar_confused(void **state)
{
        assert_fails("evidence = 5;\n", 1, "evidence", "expected a group");
        assert_fails("roles = \"mamori-admin\";\n", 1, "roles", "expected a group");
        assert_fails("roles = ( \"a\" );\n", 1, "roles", "expected a group");
        assert_fails("evidence: {\n  journal: { on = true; };\n};\n", 2, "evidence.journal",
                     "expected a value, got a group");
}

static void test_wrong_type_uint32(void **state)
{
        assert_fails("evidence: {\n checkpoint_records = \"1000\";\n};\n", 2,
                     "evidence.checkpoint_records", "expected an integer in 1..1000000, got a string");
        assert_fails("evidence: { checkpoint_seconds = true; };\n", 1, "evidence.checkpoint_seconds",
                     "got a boolean");
        /* Floats are refused even when whole. */
        assert_fails("evidence: { epoch_seconds = 86400.0; };\n", 1, "evidence.epoch_seconds",
                     "got a floating-point number");
        assert_fails("evidence: { epoch_seconds = 1e5; };\n", 1, "evidence.epoch_seconds",
                     "got a floating-point number");
        /* 64-bit integers: in range still refused, out of range says the range. */
        assert_fails("evidence: { epoch_seconds = 86400L; };\n", 1, "evidence.epoch_seconds",
                     "64-bit integer");
        assert_fails("evidence: { epoch_seconds = 5000000000; };\n", 1, "evidence.epoch_seconds",
                     "5000000000 is out of range, allowed 60..31622400");
}

static void test_wrong_type_bool(void **state)
{
        assert_fails("evidence: { journal = 1; };\n", 1, "evidence.journal",
                     "expected true or false, got an integer");
        assert_fails("evidence: { journal = \"yes\"; };\n", 1, "evidence.journal", "got a string");
        assert_fails("evidence: { journal = 1.0; };\n", 1, "evidence.journal",
                     "got a floating-point number");
}

static void test_wrong_type_string(void **state)
{
        assert_fails("roles: { admin_group = 1000; };\n", 1, "roles.admin_group",
                     "expected a string, got an integer");
        assert_fails("roles: { agent_user = false; };\n", 1, "roles.agent_user", "got a boolean");
        assert_fails("\nroles: {\n  manager_group = 1.5;\n};\n", 3, "roles.manager_group",
                     "got a floating-point number");
}

static void test_list_where_scalar_expected(void **state)
{
        assert_fails("evidence: { checkpoint_records = [ 1, 2 ]; };\n", 1,
                     "evidence.checkpoint_records", "got an array");
        assert_fails("evidence: { journal = ( true ); };\n", 1, "evidence.journal", "got a list");
        assert_fails("roles: { admin_group = [ \"a\", \"b\" ]; };\n", 1, "roles.admin_group",
                     "got an array");
}

/* The ranges from config.h, restated here so that the table is checked against them. */
static const struct {
        const char *section, *name;
        uint32_t min, max;
} uint_ranges[] = {
        { "evidence", "checkpoint_records", 1, 1000000 },
        { "evidence", "checkpoint_seconds", 1, 86400 },
        { "evidence", "epoch_seconds", 60, 31622400 },
        /* R-EV-11: nothing is kept shorter than the texts demand: 5 y for media use
         * (R-EV-1) and login (R-EV-5), 1 y for permissions (R-EV-3). */
        { "evidence", "retention_media_days", 1827, 36525 },
        { "evidence", "retention_login_days", 1827, 36525 },
        { "evidence", "retention_permission_days", 366, 36525 },
        { "evidence", "retention_admin_days", 366, 36525 },
        /* R-AUTH-1 lockout, R-AUTH-3 TOTP (pam_mamori). */
        { "auth", "deny", 1, 100 },
        { "auth", "fail_interval", 1, 604800 },
        { "auth", "unlock_time", 1, 604800 },
        { "auth", "admin_deny", 1, 100 },
        { "auth", "admin_unlock_time", 1, 604800 },
        { "auth", "totp_digits", 6, 8 },
        { "auth", "totp_window", 0, 10 },
        /* R-IDLE-1: the idle lock's timeout. */
        { "idle", "timeout", 5, 86400 },
};

/* Each bound is accepted, one below and one above are refused naming the range (R-EV-11). */
static void test_uint32_ranges(void **state)
{
        char text[256], key[128], what[128];
        size_t n_uint = 0;

        for (size_t i = 0; i < ELEMENTSOF(config_table); i++)
                n_uint += config_table[i].type == CFG_UINT32;
        assert_int_equal(n_uint, ELEMENTSOF(uint_ranges));

        for (size_t i = 0; i < ELEMENTSOF(uint_ranges); i++) {
                uint32_t bounds[2] = { uint_ranges[i].min, uint_ranges[i].max };
                long long bad[2] = { (long long) uint_ranges[i].min - 1,
                                     (long long) uint_ranges[i].max + 1 };

                snprintf(key, sizeof key, "%s.%s", uint_ranges[i].section, uint_ranges[i].name);
                for (int j = 0; j < 2; j++) {
                        mamori_config *c;
                        const ConfigKey *k = config_key_find(key);

                        snprintf(text, sizeof text, "%s:\n{\n  %s = %u;\n};\n",
                                 uint_ranges[i].section, uint_ranges[i].name, bounds[j]);
                        c = load_ok(text);
                        assert_non_null(k);
                        assert_int_equal(*(uint32_t *) ((uint8_t *) c + k->offset), bounds[j]);
                        mamori_config_free(c);

                        snprintf(text, sizeof text, "%s:\n{\n  %s = %lld;\n};\n",
                                 uint_ranges[i].section, uint_ranges[i].name, bad[j]);
                        snprintf(what, sizeof what, "%lld is out of range, allowed %u..%u", bad[j],
                                 uint_ranges[i].min, uint_ranges[i].max);
                        assert_fails(text, 3, key, what);
                }
        }
}

/* libconfig 1.5 reads integers with atoi(): 4294969123 would silently become 1827, a valid
 * retention (R-EV-11), and 5000000000 would become 705032704. Both must be refused. */
static void test_integer_wraparound_refused(void **state)
{
        assert_fails("evidence: {\n  retention_media_days = 4294969123;\n};\n", 2,
                     "evidence.retention_media_days", "4294969123 is out of range, allowed 1827..36525");
        assert_fails("evidence: { checkpoint_records = 0x100000001; };\n", 1,
                     "evidence.checkpoint_records", "out of range, allowed 1..1000000");
        assert_fails("evidence: { checkpoint_records = 99999999999999999999999; };\n", 1,
                     "evidence.checkpoint_records", "out of range, allowed 1..1000000");
        assert_fails("# \"quoted\" 5000000000\n/* 5000000000\n */ evidence: {\n"
                     "  journal = true; epoch_seconds =\n -5000000000;\n};\n",
                     5, "evidence.epoch_seconds", "-5000000000 is out of range");
        /* Not for a known key: still refused, with the key. */
        assert_fails("media: { limit = 5000000000; };\n", 1, "media.limit", "does not fit in 32 bits");
        /* Digits inside names and strings are not numbers. */
        mamori_config_free(load_ok("# x9999999999\nroles: { admin_group = \"a9999999999\"; };\n"));
}

static void test_negative_number(void **state)
{
        assert_fails("evidence: { checkpoint_seconds = -1; };\n", 1, "evidence.checkpoint_seconds",
                     "-1 is out of range, allowed 1..86400");
        /* A negative retention must not wrap around to a huge one (R-EV-11). */
        assert_fails("evidence: { retention_media_days = -4294967295; };\n", 1,
                     "evidence.retention_media_days", "out of range, allowed 1827..36525");
}

static void test_string_length_and_charset(void **state)
{
        /* 32 characters is the limit... */
        mamori_config *c = load_ok("roles: { admin_group = \"abcdefghijklmnopqrstuvwxyz_-0123\"; };\n");
        assert_string_equal(c->roles.admin_group, "abcdefghijklmnopqrstuvwxyz_-0123");
        mamori_config_free(c);
        /* ...33 is too long. */
        assert_fails("roles: { admin_group = \"abcdefghijklmnopqrstuvwxyz_-01234\"; };\n", 1,
                     "roles.admin_group", "longer than 32 characters");
        assert_fails("roles: { manager_group = \"\"; };\n", 1, "roles.manager_group", "empty");
        assert_fails("roles: { auditor_group = \"mamori auditor\"; };\n", 1, "roles.auditor_group",
                     "invalid characters");
        assert_fails("roles: { auditor_group = \"-mamori\"; };\n", 1, "roles.auditor_group",
                     "invalid characters");
        assert_fails("roles: { auditor_group = \"0day\"; };\n", 1, "roles.auditor_group",
                     "invalid characters");
        assert_fails("roles: { admin_group = \"wheel:x\"; };\n", 1, "roles.admin_group",
                     "invalid characters");
        assert_fails("roles: { admin_group = \"adm\\n\"; };\n", 1, "roles.admin_group",
                     "invalid characters");
        assert_fails("roles: { agent_user = \"r\\xc3\\xa9\"; };\n", 1, "roles.agent_user",
                     "invalid characters");
        assert_fails("roles: { agent_user = \"../root\"; };\n", 1, "roles.agent_user",
                     "invalid characters");
}

static void test_syntax_error(void **state)
{
        assert_fails("evidence: {\n  journal = ;\n};\n", 2, NULL, "syntax error");
        /* libconfig notices the unterminated string at the end of the file. */
        assert_fails("roles: {\n  admin_group = \"unterminated;\n};\n", 4, NULL, "");
        assert_fails("evidence: { journal = true; }\nroles { }\n", 2, NULL, "syntax error");
        /* A duplicate key is a libconfig error, not "last one wins". */
        assert_fails("evidence: {\n  journal = true;\n  journal = false;\n};\n", 3, NULL,
                     "duplicate");
}

static void test_include_nul_and_size(void **state)
{
        static const char with_nul[] = "evidence: { journal = true; };\n\0bogus = 1;\n";
        char *big;

        /* @include could pull any readable file into the policy. */
        assert_fails("evidence: { journal = true; };\n  @include \"/etc/passwd\"\n", 2, NULL,
                     "@include is not allowed");
        /* Everything after a NUL would be silently dropped by libconfig. */
        write_conf_n(with_nul, sizeof with_nul - 1);
        assert_fails_file(2, NULL, "NUL byte");

        big = malloc(MAMORI_CONFIG_MAX_SIZE + 2);
        assert_non_null(big);
        memset(big, '\n', MAMORI_CONFIG_MAX_SIZE + 1);
        big[MAMORI_CONFIG_MAX_SIZE + 1] = '\0';
        write_conf(big);
        {
                mamori_config *c = &sentinel;
                char *error = NULL;

                assert_int_equal(mamori_config_load(conf_path, &c, &error), -EINVAL);
                assert_ptr_equal(c, &sentinel);
                assert_non_null(strstr(error, "larger than"));
                free(error);
        }
        /* At the limit exactly it is accepted (all blank lines: defaults). */
        big[MAMORI_CONFIG_MAX_SIZE] = '\0';
        write_conf(big);
        mamori_config_free(load_ok(big));
        free(big);
}

static void test_missing_file_and_directory(void **state)
{
        mamori_config *c = &sentinel;
        char *error = NULL;
        char path[sizeof tmpdir + 32];

        snprintf(path, sizeof path, "%s/absent.conf", tmpdir);
        assert_int_equal(mamori_config_load(path, &c, &error), -ENOENT);
        assert_ptr_equal(c, &sentinel);
        assert_non_null(error);
        assert_true(strncmp(error, path, strlen(path)) == 0);
        free(error);
        /* ret_error may be NULL. */
        assert_int_equal(mamori_config_load(path, &c, NULL), -ENOENT);

        error = NULL;
        assert_int_equal(mamori_config_load(tmpdir, &c, &error), -EINVAL);
        assert_ptr_equal(c, &sentinel);
        assert_non_null(strstr(error, "not a regular file"));
        free(error);
}

/* The table: unique keys, each in a section, defaults within their own bounds. */
static void test_table_consistent(void **state)
{
        mamori_config *c = NULL;

        assert_int_equal(mamori_config_new_default(&c), 0);
        for (size_t i = 0; i < ELEMENTSOF(config_table); i++) {
                const ConfigKey *k = config_table + i;

                assert_non_null(strchr(k->key, '.'));
                assert_ptr_equal(config_key_find(k->key), k);
                assert_false(config_is_section(k->key));
                assert_true(k->type >= 0 && k->type < _CFG_TYPE_MAX);
                if (k->type == CFG_UINT32)
                        assert_true(k->min <= k->def && k->def <= k->max);
                if (k->type == CFG_STRING) {
                        assert_true(strlen(k->def_str) >= k->min && strlen(k->def_str) <= k->max);
                        assert_true(!k->valid || k->valid(k->def_str));
                }
        }
        mamori_config_free(c);
}

/* R-IDLE-1: the idle lock's settings (root-owned file); R-IDLE-2: an exemption needs its
 * approver and reason, else the whole file is refused. */
static void test_idle_settings_r_idle_1_r_idle_2(void **state)
{
        mamori_config *c = load_ok("");

        assert_int_equal(c->idle.timeout, 900);
        assert_string_equal(c->idle.remote_action, "lock");
        assert_false(c->idle.exempt);
        assert_string_equal(c->idle.exempt_approver, "");
        assert_string_equal(c->idle.exempt_reason, "");
        mamori_config_free(c);

        c = load_ok("idle: { timeout = 10; remote_action = \"terminate\"; exempt = true;\n"
                    "  exempt_approver = \"情報セキュリティ責任者 Sato\"; exempt_reason = \"kiosk display\"; };\n");
        assert_int_equal(c->idle.timeout, 10);
        assert_string_equal(c->idle.remote_action, "terminate");
        assert_true(c->idle.exempt);
        assert_string_equal(c->idle.exempt_approver, "情報セキュリティ責任者 Sato");
        assert_string_equal(c->idle.exempt_reason, "kiosk display");
        mamori_config_free(c);

        assert_fails("idle: {\n timeout = 4; };\n", 2, "idle.timeout", "out of range, allowed 5..86400");
        assert_fails("idle: {\n timeout = 86401; };\n", 2, "idle.timeout", "out of range");
        assert_fails("idle: {\n remote_action = \"kill\"; };\n", 2, "idle.remote_action", "lock or terminate");
        assert_fails("idle: {\n exempt = true; };\n", 2, "idle.exempt", "needs idle.exempt_approver");
        assert_fails("idle: { exempt_approver = \"a\";\n exempt = true; };\n", 2, "idle.exempt",
                     "idle.exempt_reason");
        assert_fails("idle: { exempt_reason = \"r\";\n exempt = true; exempt_approver = \"\"; };\n", 2,
                     "idle.exempt", "needs");
        assert_fails("idle: {\n exempt_reason = \"a\\tb\"; };\n", 2, "idle.exempt_reason", "control characters");
        assert_fails("idle: {\n idle_action = \"lock\"; };\n", 2, "idle.idle_action", "unknown key");

        /* Approver and reason without the exemption are harmless (no exemption). */
        c = load_ok("idle: { exempt_approver = \"a\"; exempt_reason = \"b\"; };\n");
        assert_false(c->idle.exempt);
        mamori_config_free(c);
}

/* R-CRY-3: the organisation keys' directory is a setting; only a plain absolute path. */
static void test_crypto_keys_dir_r_cry_3(void **state)
{
        mamori_config *c = load_ok("crypto: { keys_dir = \"/srv/mamori/鍵\"; };\n");
        assert_string_equal(c->crypto.keys_dir, "/srv/mamori/鍵");
        mamori_config_free(c);

        assert_fails("crypto: {\n keys_dir = \"keys\"; };\n", 2, "crypto.keys_dir", "absolute path");
        assert_fails("crypto: {\n keys_dir = \"/etc/../tmp\"; };\n", 2, "crypto.keys_dir", "absolute path");
        assert_fails("crypto: {\n keys_dir = \"/etc/./k\"; };\n", 2, "crypto.keys_dir", "absolute path");
        assert_fails("crypto: {\n keys_dir = \"/etc/k\\n\"; };\n", 2, "crypto.keys_dir", "absolute path");
        assert_fails("crypto: {\n keys_dir = \"\"; };\n", 2, "crypto.keys_dir", "");
        assert_fails("crypto: {\n keys_dir = 1; };\n", 2, "crypto.keys_dir", "");
        assert_fails("crypto: {\n key_dir = \"/k\"; };\n", 2, "crypto.key_dir", "unknown key");
        /* ".." inside a name is a name, not a component */
        c = load_ok("crypto: { keys_dir = \"/etc/mamori/..keys\"; };\n");
        assert_string_equal(c->crypto.keys_dir, "/etc/mamori/..keys");
        mamori_config_free(c);
}

/* R-ATK-1: the classes the agent lets in without policyd; never storage. */
static void test_agent_allowed_classes_r_atk_1(void **state)
{
        mamori_config *c = load_ok("");
        assert_string_equal(c->agent.allowed_classes, "03 09");
        mamori_config_free(c);
        c = load_ok("agent: { allowed_classes = \"03 09 0e E0\"; };\n");
        assert_string_equal(c->agent.allowed_classes, "03 09 0e E0");
        mamori_config_free(c);
        assert_fails("agent: {\n allowed_classes = \"03 08\"; };\n", 2, "agent.allowed_classes", "storage");
        assert_fails("agent: {\n allowed_classes = \"00\"; };\n", 2, "agent.allowed_classes", "not 00");
        assert_fails("agent: {\n allowed_classes = \"3 9\"; };\n", 2, "agent.allowed_classes", "two-digit");
        assert_fails("agent: {\n allowed_classes = \"03  09\"; };\n", 2, "agent.allowed_classes", "");
        assert_fails("agent: {\n allowed_classes = \"03,09\"; };\n", 2, "agent.allowed_classes", "");
        assert_fails("agent: {\n allowed_classes = \"03 \"; };\n", 2, "agent.allowed_classes", "");
        assert_fails("agent: {\n allowed_classes = \"\"; };\n", 2, "agent.allowed_classes", "");
        assert_fails("agent: {\n allowed_classes = [\"03\"]; };\n", 2, "agent.allowed_classes", "");
}

/* Parses text with libconfig and runs parse_strv on its setting "l" against key k. */
static int strv_parse(const ConfigKey *k, const char *text, char ***field, char **ret_error)
{
        ParseContext ctx = { .path = "t.conf" };
        config_t cf;
        int r;

        config_init(&cf);
        assert_int_equal(config_read_string(&cf, text), CONFIG_TRUE);
        r = parse_strv(&ctx, k, config_lookup(&cf, "l"), field);
        config_destroy(&cf);
        *ret_error = ctx.error;
        return r;
}

/* The string-list type, for sections to come: arrays or lists of valid strings. */
static void test_strv_type(void **state)
{
        static const ConfigKey k = { "l", CFG_STRV, 0, 1, 8, 0, NULL, valid_name, NAME_WHAT };
        char **l = calloc(1, sizeof(char *));
        char *error = NULL;

        assert_int_equal(strv_parse(&k, "l = [ \"a\", \"b_c\" ];", &l, &error), 0);
        assert_null(error);
        assert_string_equal(l[0], "a");
        assert_string_equal(l[1], "b_c");
        assert_null(l[2]);
        assert_int_equal(strv_parse(&k, "l = ( \"x\" );", &l, &error), 0);
        assert_string_equal(l[0], "x");
        assert_null(l[1]);
        assert_int_equal(strv_parse(&k, "l = [ ];", &l, &error), 0);
        assert_null(l[0]);

        assert_int_equal(strv_parse(&k, "l = \"a\";", &l, &error), -EINVAL);
        assert_string_equal(error, "t.conf:1: l: expected a list of strings [ \"...\", ... ], got a string");
        free(error);
        assert_int_equal(strv_parse(&k, "l = ( \"a\",\n 5 );", &l, &error), -EINVAL);
        assert_non_null(strstr(error, "l[1]: expected a string, got an integer"));
        free(error);
        assert_int_equal(strv_parse(&k, "l = [ \"ok\", \"toolong_x\" ];", &l, &error), -EINVAL);
        assert_string_equal(error, "t.conf:1: l[1]: longer than 8 characters");
        free(error);
        assert_int_equal(strv_parse(&k, "l = [ \"a b\" ];", &l, &error), -EINVAL);
        assert_non_null(strstr(error, "l[0]: invalid characters"));
        free(error);
        /* A failed parse keeps the previous value. */
        assert_null(l[0]);
        strv_free(l);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
                cmocka_unit_test_setup_teardown(test_empty_file_is_defaults, setup, teardown),
                cmocka_unit_test_setup_teardown(test_shipped_file_is_defaults, setup, teardown),
                cmocka_unit_test_setup_teardown(test_values_are_applied, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_group_and_scalar_confused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_type_uint32, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_type_bool, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_type_string, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list_where_scalar_expected, setup, teardown),
                cmocka_unit_test_setup_teardown(test_uint32_ranges, setup, teardown),
                cmocka_unit_test_setup_teardown(test_integer_wraparound_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_negative_number, setup, teardown),
                cmocka_unit_test_setup_teardown(test_string_length_and_charset, setup, teardown),
                cmocka_unit_test_setup_teardown(test_syntax_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_include_nul_and_size, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_file_and_directory, setup, teardown),
                cmocka_unit_test_setup_teardown(test_table_consistent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_strv_type, setup, teardown),
                cmocka_unit_test_setup_teardown(test_idle_settings_r_idle_1_r_idle_2, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crypto_keys_dir_r_cry_3, setup, teardown),
                cmocka_unit_test_setup_teardown(test_agent_allowed_classes_r_atk_1, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
