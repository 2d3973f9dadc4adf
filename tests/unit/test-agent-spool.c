/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The agent's evidence spool (agent/spool.c): order, durability across reopen, the cap,
 * a torn tail, ownership and mode checks. */
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

#include "cleanup.h"
#include "spool.h"

typedef struct ctx {
        char dir[64], sub[80];
} ctx;

static int setup(void **state)
{
        ctx *c = calloc(1, sizeof *c);
        snprintf(c->dir, sizeof c->dir, "/tmp/test-agent-spool-XXXXXX");
        assert_non_null(mkdtemp(c->dir));
        snprintf(c->sub, sizeof c->sub, "%s/spool.d", c->dir);
        *state = c;
        return 0;
}

static int teardown(void **state)
{
        ctx *c = *state;
        char path[128];
        snprintf(path, sizeof path, "%s/spool", c->sub);
        unlink(path);
        rmdir(c->sub);
        rmdir(c->dir);
        free(c);
        return 0;
}

/* A frame: u32 length | body of n bytes of value v. */
static size_t frame(uint8_t *buf, size_t n, uint8_t v)
{
        buf[0] = n >> 24, buf[1] = n >> 16, buf[2] = n >> 8, buf[3] = n;
        memset(buf + 4, v, n);
        return 4 + n;
}

static void expect_next(agent_spool *s, size_t n, uint8_t v)
{
        uint8_t *f;
        size_t len;
        assert_int_equal(agent_spool_peek(s, &f, &len), 1);
        assert_int_equal(len, 4 + n);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(f[4 + i], v);
        free(f);
        assert_int_equal(agent_spool_pop(s), 0);
}

static void test_order_and_reopen(void **state)
{
        ctx *c = *state;
        agent_spool *s;
        uint8_t buf[256];
        assert_int_equal(agent_spool_open(c->sub, 1 << 20, &s), 0);
        for (int i = 1; i <= 5; i++)
                assert_int_equal(agent_spool_append(s, buf, frame(buf, 10 * i, i)), 0);
        assert_int_equal(agent_spool_depth(s), 5);
        expect_next(s, 10, 1);
        expect_next(s, 20, 2);
        agent_spool_free(s);
        /* what was delivered stays delivered; the rest comes back in order */
        assert_int_equal(agent_spool_open(c->sub, 1 << 20, &s), 0);
        assert_int_equal(agent_spool_depth(s), 3);
        expect_next(s, 30, 3);
        expect_next(s, 40, 4);
        expect_next(s, 50, 5);
        uint8_t *f;
        size_t len;
        assert_int_equal(agent_spool_peek(s, &f, &len), 0);
        assert_int_equal(agent_spool_pop(s), -ENODATA);
        agent_spool_free(s);
        /* empty again: just the header */
        char path[128];
        struct stat st;
        snprintf(path, sizeof path, "%s/spool", c->sub);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, AGENT_SPOOL_HEADER);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(stat(c->sub, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
}

static void test_cap(void **state)
{
        ctx *c = *state;
        agent_spool *s;
        uint8_t buf[1100];
        assert_int_equal(agent_spool_open(c->sub, 8192, &s), 0);
        int ok = 0;
        while (agent_spool_append(s, buf, frame(buf, 1000, 7)) == 0)
                ok++;
        assert_int_equal(ok, 8); /* 24 + 8 * 1004 <= 8192 < 24 + 9 * 1004 */
        assert_int_equal(agent_spool_append(s, buf, frame(buf, 1000, 7)), -ENOSPC);
        assert_int_equal(agent_spool_dropped(s), 2);
        agent_spool_free(s);
        assert_int_equal(agent_spool_open(c->sub, 8192, &s), 0);
        assert_int_equal(agent_spool_dropped(s), 2); /* the count survives a restart */
        assert_int_equal(agent_spool_clear_dropped(s), 0);
        assert_int_equal(agent_spool_dropped(s), 0);
        agent_spool_free(s);
}

static void test_bad_frames(void **state)
{
        ctx *c = *state;
        agent_spool *s;
        uint8_t buf[64];
        assert_int_equal(agent_spool_open(c->sub, 1 << 20, &s), 0);
        size_t n = frame(buf, 10, 1);
        assert_int_equal(agent_spool_append(s, buf, n - 1), -EINVAL); /* length does not match */
        assert_int_equal(agent_spool_append(s, buf, 4), -EINVAL);     /* empty body */
        assert_int_equal(agent_spool_append(s, buf, 2), -EINVAL);
        assert_int_equal(agent_spool_depth(s), 0);
        agent_spool_free(s);
}

static void test_torn_tail(void **state)
{
        ctx *c = *state;
        agent_spool *s;
        uint8_t buf[64];
        assert_int_equal(agent_spool_open(c->sub, 1 << 20, &s), 0);
        assert_int_equal(agent_spool_append(s, buf, frame(buf, 10, 1)), 0);
        agent_spool_free(s);
        /* a crash in the middle of the second append */
        char path[128];
        snprintf(path, sizeof path, "%s/spool", c->sub);
        int fd = open(path, O_WRONLY | O_APPEND);
        size_t n = frame(buf, 20, 2);
        assert_int_equal(write(fd, buf, n - 5), (ssize_t)(n - 5));
        close(fd);
        assert_int_equal(agent_spool_open(c->sub, 1 << 20, &s), 0);
        assert_int_equal(agent_spool_depth(s), 1);
        expect_next(s, 10, 1);
        assert_int_equal(agent_spool_append(s, buf, frame(buf, 30, 3)), 0);
        expect_next(s, 30, 3);
        agent_spool_free(s);
}

static void test_bad_header(void **state)
{
        ctx *c = *state;
        agent_spool *s;
        assert_int_equal(agent_spool_open(c->sub, 1 << 20, &s), 0);
        agent_spool_free(s);
        char path[128];
        snprintf(path, sizeof path, "%s/spool", c->sub);
        int fd = open(path, O_WRONLY);
        assert_int_equal(pwrite(fd, "X", 1, 0), 1); /* flip the magic */
        close(fd);
        assert_int_equal(agent_spool_open(c->sub, 1 << 20, &s), -EBADMSG);
}

static void test_permissions(void **state)
{
        ctx *c = *state;
        agent_spool *s;
        assert_int_equal(agent_spool_open(c->sub, 1 << 20, &s), 0);
        agent_spool_free(s);
        char path[128];
        snprintf(path, sizeof path, "%s/spool", c->sub);
        assert_int_equal(chmod(path, 0644), 0); /* readable by others: refused */
        assert_int_equal(agent_spool_open(c->sub, 1 << 20, &s), -EPERM);
        assert_int_equal(chmod(path, 0600), 0);
        assert_int_equal(chmod(c->sub, 0755), 0);
        assert_int_equal(agent_spool_open(c->sub, 1 << 20, &s), -EPERM);
        assert_int_equal(chmod(c->sub, 0700), 0);
        /* a symlink in place of the file is not followed */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(symlink("/etc/passwd", path), 0);
        assert_int_equal(agent_spool_open(c->sub, 1 << 20, &s), -ELOOP);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_order_and_reopen, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_frames, setup, teardown),
                cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_header, setup, teardown),
                cmocka_unit_test_setup_teardown(test_permissions, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
