/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-agent-testtool: the agent's spool and raw mount driven from the host tests
 * (tests/integration/test-agent-*.py) without USB. Not installed.
 *   spool-append DIR N TYPE     append N records "TYPE" with pairs n=1..N
 *   spool-depth DIR             print the number of records waiting
 *   mount DIR DEVNODE ro|rw     mount as the agent does; prints name, type, uuid, size
 *   release DIR NAME            unmount and remove the mount point
 *   view DIR NAME NO SOCKET KEYS   start mamori-view on DIR/NAME as the agent does, print
 *                               its mount point, stop it (as the agent does) at EOF on stdin
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "agent.h"
#include "cleanup.h"
#include "log.h"

static int spool_append(const char *dir, const char *count, const char *type)
{
        agent_spool *s;
        int r = agent_spool_open(dir, AGENT_SPOOL_MAX_DEFAULT, &s);
        if (r < 0)
                return log_error_errno(r, "spool: %m");
        long n = strtol(count, NULL, 10);
        for (long i = 1; i <= n && r >= 0; i++) {
                char num[24];
                snprintf(num, sizeof num, "%ld", i);
                const char *kv[] = {"n", num, NULL};
                _cleanup_free_ uint8_t *f = NULL;
                size_t len;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                r = evidence_frame(type, (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, kv, &f, &len);
                if (r >= 0)
                        r = agent_spool_append(s, f, len);
        }
        agent_spool_free(s);
        return r < 0 ? log_error_errno(r, "append: %m") : 0;
}

/* The agent's view_spawn/view_stop for a raw mount made by "mount". */
static int view(char *argv[])
{
        static agent a = {.policyd_fd = -1};
        static agent_dev d = {.used = true};
        a.mount_dir = argv[2];
        a.socket_path = argv[5];
        if (mamori_config_new_default(&a.cfg) < 0)
                return 1;
        free(a.cfg->crypto.keys_dir);
        a.cfg->crypto.keys_dir = strdup(argv[6]);
        unsigned maj, min;
        if (sscanf(argv[3], "%u-%u", &maj, &min) != 2)
                return 2;
        d.block = makedev(maj, min);
        snprintf(d.mount_name, sizeof d.mount_name, "%s", argv[3]);
        snprintf(d.no, sizeof d.no, "%s", argv[4]);
        snprintf(d.vendor, sizeof d.vendor, "0781");
        snprintf(d.product, sizeof d.product, "5567");
        snprintf(d.serial, sizeof d.serial, "SN-VIEW-1");
        snprintf(d.port, sizeof d.port, "1-1");
        if (view_spawn(&a, &d) < 0)
                return 1;
        printf("%s\n", d.view_mp);
        fflush(stdout);
        char buf[64];
        while (fread(buf, 1, sizeof buf, stdin) > 0)
                ;
        view_stop(&a, &d);
        return 0;
}

int main(int argc, char *argv[])
{
        mamori_log_open("mamori-agent-testtool", 0);
        if (argc == 5 && streq(argv[1], "spool-append"))
                return spool_append(argv[2], argv[3], argv[4]) < 0;
        if (argc == 3 && streq(argv[1], "spool-depth")) {
                agent_spool *s;
                if (agent_spool_open(argv[2], AGENT_SPOOL_MAX_DEFAULT, &s) < 0)
                        return 1;
                printf("%" PRIu64 "\n", agent_spool_depth(s));
                agent_spool_free(s);
                return 0;
        }
        if (argc == 5 && streq(argv[1], "mount")) {
                char name[32], uuid[AGENT_FS_UUID_MAX];
                const char *type;
                uint64_t size;
                int r = mount_raw(argv[2], argv[3], 0, streq(argv[4], "rw"), name, &type, uuid, &size);
                if (r < 0)
                        return log_error_errno(r, "mount: %m"), 1;
                printf("%s %s %s %" PRIu64 "\n", name, type, uuid[0] ? uuid : "-", size);
                return 0;
        }
        if (argc == 4 && streq(argv[1], "release"))
                return mount_raw_release(argv[2], argv[3]) < 0;
        if (argc == 7 && streq(argv[1], "view")) {
                agent_view_path = getenv("MAMORI_VIEW_BINARY") ?: agent_view_path;
                return view(argv);
        }
        fputs("usage: see the comment in agent/testtool.c\n", stderr);
        return 2;
}
