/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-agent: device control on the terminal. Listens to the kernel's uevents,
 * closes every USB controller (authorized_default=0), decides every device present
 * (coldplug) and only then tells systemd it is ready; afterwards decides each device
 * as it comes, mounts registered media, and acts when a decision's answer changes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "agent.h"
#include "cleanup.h"
#include "client.h"
#include "idle.h"
#include "grant.h"
#include "i18n.h"
#include "log.h"
#include "mamori-config.h"

#define RETRY_US (2 * 1000 * 1000) /* while policyd is away: retry this often */

DEFINE_TRIVIAL_CLEANUP_FUNC(struct udev_enumerate *, udev_enumerate_unref)

/* A medium let in only to be identified: read its filesystem's UUID and size without
 * mounting, ask policyd again with them, and mount only if that answer allows it. Two
 * sticks of one model and serial, one registered with its filesystem UUID: the other
 * shows another UUID and is refused without its filesystem ever being mounted. */
static void block_identify(agent *a, agent_dev *d, struct udev_device *blk)
{
        const char *node = udev_device_get_devnode(blk), *type;
        int r = node ? mount_probe(node, udev_device_get_devnum(blk), &type, d->block_uuid, &d->block_size) : -ENODEV;
        if (r == -ENOMEDIUM)
                return; /* a partition table: wait for the partition (the identify timer bounds the wait) */
        if (r < 0) {
                log_error_errno(r, "Cannot read the medium on port %s: %m", d->port);
                decide_refuse(a, d, "mark-unreadable"); /* cannot identify: refused (fail closed) */
                return;
        }
        d->block = udev_device_get_devnum(blk);
        /* An optical drive (SCSI peripheral type 5) follows the optical rule (R-REG-2). */
        const char *scsi_type = udev_device_get_sysattr_value(blk, "device/type");
        d->optical = scsi_type && streq(scsi_type, "5");
        decide_again(a, d);
        if (d->verdict == MAMORI_VERDICT_IDENTIFY) { /* the mark did not settle it: refused (fail closed) */
                decide_refuse(a, d, "mark-unreadable");
                return;
        }
        if (!agent_verdict_mounts(d->verdict) || !d->authorized)
                return;
        r = mount_block(a, d, blk);
        if (r < 0 && r != -ENOMEDIUM)
                log_error_errno(r, "Cannot mount the medium on port %s: %m", d->port);
}

/* A block device on an authorised, allowed USB medium: mount it, then check its mark. */
static void block_added(agent *a, struct udev_device *blk)
{
        struct udev_device *usb = udev_device_get_parent_with_subsystem_devtype(blk, "usb", "usb_device");
        agent_dev *d = usb ? agent_dev_find(a, udev_device_get_syspath(usb) ?: "") : NULL;
        if (!d || d->cls != AGENT_STORAGE || !d->authorized || d->mounted || d->verdict < 0)
                return;
        if (d->verdict == MAMORI_VERDICT_IDENTIFY) {
                block_identify(a, d, blk);
                return;
        }
        int r = mount_block(a, d, blk);
        if (r == -ENOMEDIUM)
                return; /* a partition table or an unknown filesystem: nothing mounted */
        if (r < 0) {
                log_error_errno(r, "Cannot mount the medium on port %s: %m", d->port);
                return;
        }
        decide_again(a, d); /* now with size and filesystem UUID: the registered mark */
}

static void block_removed(agent *a, struct udev_device *blk)
{
        dev_t n = udev_device_get_devnum(blk);
        for (size_t i = 0; i < AGENT_DEVICES_MAX; i++)
                if (a->devs[i].used && a->devs[i].mounted && a->devs[i].block == n)
                        (void)mount_release(a, &a->devs[i]);
}

static void dispatch(agent *a, struct udev_device *u)
{
        const char *action = udev_device_get_action(u) ?: "add", *sub = udev_device_get_subsystem(u) ?: "";
        bool add = streq(action, "add"), remove = streq(action, "remove");
        if (streq(sub, "usb") && add)
                usb_device_added(a, u);
        else if (streq(sub, "usb") && remove)
                usb_device_removed(a, u);
        else if (streq(sub, "block") && (add || streq(action, "change")))
                block_added(a, u);
        else if (streq(sub, "block") && remove)
                block_removed(a, u);
}

static int on_uevent(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        agent *a = userdata;
        struct udev_device *u;
        /* libudev's "kernel" monitor takes only messages the kernel sent (sender pid 0). */
        while ((u = udev_monitor_receive_device(a->monitor))) {
                dispatch(a, u);
                udev_device_unref(u);
        }
        return 0;
}

/* Decides everything already there: USB devices first, then their block devices. */
static int coldplug(agent *a, const char *subsystem)
{
        _cleanup_(udev_enumerate_unrefp) struct udev_enumerate *e = udev_enumerate_new(a->udev);
        if (!e)
                return -ENOMEM;
        udev_enumerate_add_match_subsystem(e, subsystem);
        int r = udev_enumerate_scan_devices(e);
        if (r < 0)
                return r;
        struct udev_list_entry *l;
        udev_list_entry_foreach(l, udev_enumerate_get_list_entry(e)) {
                struct udev_device *u = udev_device_new_from_syspath(a->udev, udev_list_entry_get_name(l));
                if (!u)
                        continue;
                if (streq(subsystem, "usb"))
                        usb_device_added(a, u);
                else
                        block_added(a, u);
                udev_device_unref(u);
        }
        return 0;
}

/* While policyd is away: deliver the spool, then decide the storage still waiting. */
static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        agent *a = userdata;
        (void)evidence_flush(a);
        if (!a->policyd_down)
                (void)watch_connect(a); /* failing: the next retry tries again */
        for (size_t i = 0; i < AGENT_DEVICES_MAX && !a->policyd_down; i++) {
                agent_dev *d = &a->devs[i];
                if (!d->used || d->cls != AGENT_STORAGE || d->verdict >= 0 || !streq(d->reason, "policyd-unreachable"))
                        continue;
                struct udev_device *u = udev_device_new_from_syspath(a->udev, d->syspath);
                if (u) {
                        usb_device_added(a, u);
                        udev_device_unref(u);
                }
        }
        (void)sd_event_source_set_time(s, usec + RETRY_US);
        return 0;
}

/* Mounts left by an agent that was killed: released before coldplug mounts again. */
static void release_stale(agent *a)
{
        _cleanup_close_ int fd = open(a->mount_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d)
                return;
        TAKE_FD(fd);
        for (struct dirent *e; (e = readdir(d));)
                if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && strspn(e->d_name, "0123456789-") == strlen(e->d_name))
                        (void)mount_raw_release(a->mount_dir, e->d_name);
        closedir(d);
}

/* On the way out: nothing stays mounted without the agent watching it (fail closed). */
static void release_all(agent *a)
{
        for (size_t i = 0; i < AGENT_DEVICES_MAX; i++)
                if (a->devs[i].used && a->devs[i].mounted)
                        (void)mount_release(a, &a->devs[i]);
}

/* SIGHUP ("systemctl reload"): ask policyd again about every storage device. policyd
 * reports its changes on the watch connection (watch.c); this is for everything else. */
static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        agent *a = userdata;
        log_info("Reload: deciding every storage device again.");
        agent_decide_storage_again(a);
        return 0;
}

static void usage(FILE *f)
{
        fputs("Usage: mamori-agent [--socket PATH] [--config PATH] [--spool-dir DIR] [--mount-dir DIR]\n"
              "                    [--status-dir DIR] [--spool-max BYTES]\n"
              "       mamori-agent --flush-spool [--socket PATH] [--spool-dir DIR]\n", f);
}

typedef struct opts {
        const char *socket, *config, *spool_dir;
        uint64_t spool_max;
        bool flush_only;
} opts;

static int parse_args(int argc, char *argv[], agent *a, opts *o)
{
        static const struct option lo[] = {
                {"socket", required_argument, NULL, 's'},     {"config", required_argument, NULL, 'c'},
                {"spool-dir", required_argument, NULL, 'S'},  {"mount-dir", required_argument, NULL, 'm'},
                {"status-dir", required_argument, NULL, 't'},
                {"spool-max", required_argument, NULL, 'M'},  {"flush-spool", no_argument, NULL, 'F'},
                {"help", no_argument, NULL, 'h'},             {},
        };
        int c;
        char *end;
        while ((c = getopt_long(argc, argv, "h", lo, NULL)) >= 0)
                switch (c) {
                case 's': o->socket = optarg; break;
                case 'c': o->config = optarg; break;
                case 'S': o->spool_dir = optarg; break;
                case 'm': a->mount_dir = optarg; break;
                case 't': a->status_dir = optarg; break;
                case 'F': o->flush_only = true; break;
                case 'M':
                        errno = 0;
                        o->spool_max = strtoull(optarg, &end, 10);
                        if (errno || *end || end == optarg || o->spool_max < 8192 || o->spool_max > (1ull << 32))
                                return -EINVAL;
                        break;
                case 'h': usage(stdout); exit(EXIT_SUCCESS);
                default: return -EINVAL;
                }
        return optind == argc ? 0 : -EINVAL;
}

static int setup(agent *a, opts *o)
{
        char *err = NULL;
        int r = mamori_config_load(o->config, &a->cfg, &err);
        if (r == -ENOENT)
                r = mamori_config_new_default(&a->cfg);
        if (r < 0)
                return log_error_errno(r, "Policy file: %s", err ? err : "cannot be read");
        r = agent_classes_parse(a->cfg->agent.allowed_classes, a->classes, AGENT_CLASSES_MAX);
        if (r < 0) /* the parser checked the form already: more classes than the agent holds */
                return log_error_errno(r, "agent.allowed_classes: more than %d classes", AGENT_CLASSES_MAX);
        a->n_classes = r;
        r = agent_spool_open(o->spool_dir, o->spool_max, &a->spool);
        if (r < 0)
                return log_error_errno(r, "Cannot open the spool in %s: %m", o->spool_dir);
        if (gethostname(a->host, sizeof a->host - 1) < 0)
                snprintf(a->host, sizeof a->host, "unknown");
        return 0;
}

static int run(agent *a)
{
        int r = sd_event_default(&a->event);
        if (r < 0)
                return r;
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        (void)sd_event_add_signal(a->event, NULL, SIGTERM, NULL, NULL);
        (void)sd_event_add_signal(a->event, NULL, SIGINT, NULL, NULL);
        (void)sd_event_add_signal(a->event, NULL, SIGHUP, on_reload, a);
        a->udev = udev_new();
        a->monitor = a->udev ? udev_monitor_new_from_netlink(a->udev, "kernel") : NULL;
        if (!a->monitor)
                return log_error_errno(ENOMEM, "Cannot listen to the kernel's uevents.");
        udev_monitor_filter_add_match_subsystem_devtype(a->monitor, "usb", "usb_device");
        udev_monitor_filter_add_match_subsystem_devtype(a->monitor, "block", NULL);
        udev_monitor_set_receive_buffer_size(a->monitor, 4 * 1024 * 1024);
        /* Listen first, then close the controllers, then coldplug: nothing falls between. */
        r = udev_monitor_enable_receiving(a->monitor);
        if (r < 0)
                return log_error_errno(r, "Cannot listen to the kernel's uevents: %m");
        r = sd_event_add_io(a->event, NULL, udev_monitor_get_fd(a->monitor), EPOLLIN, on_uevent, a);
        if (r < 0)
                return r;
        r = usb_default_deny(a);
        if (r < 0)
                return r;
        log_info("authorized_default=0 on %d USB controllers.", r);
        release_stale(a);
        (void)evidence_flush(a);
        /* Hear changes before deciding: one made during coldplug is then reported too. */
        r = watch_connect(a);
        if (r < 0) {
                log_warning_errno(r, "Cannot hear policyd's changes yet (%m); retrying.");
                a->watch_missed = true; /* connected later: decide everything again then */
        }
        if ((r = coldplug(a, "usb")) < 0 || (r = coldplug(a, "block")) < 0)
                return log_error_errno(r, "Coldplug failed: %m");
        r = sd_event_add_time_relative(a->event, &a->retry, CLOCK_MONOTONIC, RETRY_US, 100000, on_retry, a);
        if (r < 0)
                return r;
        (void)sd_event_source_set_enabled(a->retry, SD_EVENT_ON);
        /* The idle lock (idle.c). Without logind nothing can be locked: the agent goes on
         * with device control and says so in its status (idle=unavailable); fail open for
         * the idle lock alone, loudly, since refusing devices would not lock anything. */
        r = idle_start(a, &a->idle);
        if (r < 0)
                log_error_errno(r, "Idle lock unavailable, sessions are not locked: %m");
        a->ready = true;
        agent_write_status(a);
        (void)sd_notify(0, "READY=1\nSTATUS=Devices decided");
        r = sd_event_loop(a->event);
        idle_free(a->idle); /* locked sessions stay frozen until the next agent prompts */
        release_all(a);
        return r;
}

int main(int argc, char *argv[])
{
        mamori_log_open("mamori-agent", getenv("JOURNAL_STREAM") != NULL);
        /* Notices to users in the system's language (systemd passes its LANG), the
         * English under them (agent_refusal_message). */
        (void)setlocale(LC_MESSAGES, "");
        mamori_i18n_bind(MAMORI_LOCALEDIR);
        /* LC_CTYPE stays "C" (device strings are bytes, escaped byte by byte), so the C
         * library's own texts (%m) would be converted to ASCII ("????"): keep them UTF-8. */
        (void)bind_textdomain_codeset("libc", "UTF-8");
        (void)prctl(PR_SET_DUMPABLE, 0);
        static agent a = {.policyd_fd = -1, .watch_fd = -1, .mount_dir = "/run/mamori-agent/raw", .status_dir = "/run/mamori-agent"};
        opts o = {.config = MAMORI_CONFIG_PATH, .spool_dir = "/var/lib/mamori-agent",
                  .spool_max = AGENT_SPOOL_MAX_DEFAULT};
        if (parse_args(argc, argv, &a, &o) < 0) {
                usage(stderr);
                return 2;
        }
        a.socket_path = mamori_client_socket_path(o.socket);
        if (setup(&a, &o) < 0)
                return 1;
        if (o.flush_only) {
                a.ready = false;
                uint64_t left = evidence_flush(&a);
                printf("spool: %" PRIu64 " records waiting\n", left);
                return left ? 1 : 0;
        }
        int r = run(&a);
        (void)sd_notify(0, "STOPPING=1");
        if (r < 0)
                log_error_errno(r, "mamori-agent stops: %m");
        return r < 0 ? 1 : 0;
}
