/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Starting and stopping mamori-view, the FUSE media view (agent/view.h), for a mounted
 * medium: started after the raw mount, stopped (SIGTERM, wait, then SIGKILL) before
 * the raw filesystem is unmounted, sent SIGHUP when the agent reloads. Arguments are
 * explicit; the mount point is /media/mamori/<management number, sanitised> or
 * /media/mamori/<major>-<minor>, never a device string.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "cleanup.h"
#include "log.h"
#include "mamori-config.h"

#define VIEW_STOP_WAIT_MS 5000

const char *agent_view_path = MAMORI_VIEW_PATH;

static bool is_mountpoint(const char *path)
{
        struct stat a, b;
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s/..", path);
        return stat(path, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

/* The child: a clean signal state, no inherited descriptors, explicit arguments. */
static _Noreturn void exec_view(char *const argv[])
{
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGHUP); /* kept pending until the view's rights thread takes it */
        sigprocmask(SIG_SETMASK, &ss, NULL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null >= 0)
                dup2(null, STDIN_FILENO);
        closefrom(STDERR_FILENO + 1);
        const char *js = getenv("JOURNAL_STREAM");
        char envjs[128];
        snprintf(envjs, sizeof envjs, "JOURNAL_STREAM=%s", js ? js : "");
        char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", js ? envjs : NULL, NULL};
        execve(agent_view_path, argv, envp);
        _exit(127);
}

int view_spawn(agent *a, agent_dev *dev)
{
        if (dev->view_pid > 0)
                return 0;
        char fallback[AGENT_VIEW_NAME_MAX], name[AGENT_VIEW_NAME_MAX], size[24];
        agent_mount_name(major(dev->block), minor(dev->block), fallback);
        agent_view_dirname(dev->no, fallback, name);
        snprintf(dev->view_mp, sizeof dev->view_mp, "%s/%s", AGENT_VIEW_DIR, name);
        if (is_mountpoint(dev->view_mp)) /* two numbers sanitised alike: the numbers-only name */
                snprintf(dev->view_mp, sizeof dev->view_mp, "%s/%s", AGENT_VIEW_DIR, fallback);
        /* a view left by an agent that was killed (its FUSE mount dead): detached first */
        (void)umount2(dev->view_mp, MNT_DETACH | UMOUNT_NOFOLLOW);
        char raw[256];
        snprintf(raw, sizeof raw, "%s/%s", a->mount_dir, dev->mount_name);
        snprintf(size, sizeof size, "%llu", (unsigned long long)dev->block_size);
        const char *keys = a->cfg && a->cfg->crypto.keys_dir ? a->cfg->crypto.keys_dir : "/etc/mamori/keys";
        /* where `mediactl passphrase` finds this view: named like its mount point
         * (docs/protocol.md "Media view passphrase socket") */
        char pass_sock[PATH_MAX];
        snprintf(pass_sock, sizeof pass_sock, "%s/view/%s.sock", a->status_dir ? a->status_dir : "/run/mamori-agent",
                 strrchr(dev->view_mp, '/') + 1);
        char *const argv[] = {
                "mamori-view", "--raw", raw, "--mountpoint", dev->view_mp, "--socket", (char *)a->socket_path,
                "--keys-dir", (char *)keys, "--medium", dev->no[0] ? dev->no : fallback, "--vendor", dev->vendor,
                "--product", dev->product, "--serial", dev->serial, "--port", dev->port, "--size", size,
                "--fs-uuid", dev->block_uuid, "--kind", dev->optical ? "optical" : "storage",
                "--pass-socket", pass_sock, NULL,
        };
        pid_t pid = fork();
        if (pid < 0)
                return log_error_errno(errno, "Cannot start the media view for port %s: %m", dev->port);
        if (pid == 0)
                exec_view(argv);
        dev->view_pid = pid;
        log_info("Media view for port %s on %s (pid %d).", dev->port, dev->view_mp, (int)pid);
        return 0;
}

/* Waits up to ms for pid. Returns true once it is reaped. */
static bool wait_for(pid_t pid, int ms)
{
        for (int i = 0; i < ms / 10; i++) {
                pid_t r = waitpid(pid, NULL, WNOHANG);
                if (r == pid || (r < 0 && errno == ECHILD))
                        return true;
                nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        }
        return false;
}

void view_stop(agent *a, agent_dev *dev)
{
        if (dev->view_pid <= 0)
                return;
        (void)kill(dev->view_pid, SIGTERM);
        if (!wait_for(dev->view_pid, VIEW_STOP_WAIT_MS)) {
                log_warning("The media view on %s did not stop; killing it.", dev->view_mp);
                (void)kill(dev->view_pid, SIGKILL);
                (void)waitpid(dev->view_pid, NULL, 0);
        }
        dev->view_pid = 0;
        /* a view that died leaves its FUSE mount: gone from the tree at once */
        if (umount2(dev->view_mp, MNT_DETACH | UMOUNT_NOFOLLOW) == 0 || errno != EINVAL)
                log_debug("Detached the view mount %s.", dev->view_mp);
        (void)rmdir(dev->view_mp);
}

void view_reload(agent_dev *dev)
{
        if (dev->view_pid > 0)
                (void)kill(dev->view_pid, SIGHUP);
}
