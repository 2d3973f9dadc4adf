/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mamori-agent's internal interface: the state shared by main.c (event loop), usb.c
 * (sysfs authorisation), decide.c (identity and policyd's verdict), mount.c (the raw
 * mount), evidence.c (records and the spool) and notify.c (telling the user).
 */
#pragma once

#include <libudev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "logic.h"
#include "spool.h"
#include "wire.h"

#define AGENT_DEVICES_MAX 256

typedef struct agent_dev {
        bool used;
        char syspath[256];      /* kernel-made path of the USB device */
        char port[65];          /* kernel port name, validated: "1-1.2" */
        char vendor[5], product[5];
        char serial[AGENT_RECORDED_MAX]; /* escaped (agent_escape) */
        bool serial_ok;         /* fits what policyd accepts */
        bool optical;           /* its block device is an optical drive (known once let in) */
        agent_class_verdict cls;
        int verdict;            /* mamori_verdict, or -1 not decided (blocked) */
        char reason[64], no[64];
        int64_t next_change;    /* µs, INT64_MAX none */
        bool may_write;         /* some entry carries a write mode */
        bool authorized;
        dev_t block;            /* the mounted block device, 0 none */
        char block_uuid[AGENT_FS_UUID_MAX];
        uint64_t block_size;
        bool mounted, mounted_rw;
        char mount_name[32];
        sd_event_source *timer;
        struct agent *agent;
        pid_t view_pid;         /* mamori-view serving the mount, 0 none */
        char view_mp[256];      /* its mount point */
} agent_dev;

typedef struct agent {
        sd_event *event;
        struct udev *udev;
        struct udev_monitor *monitor;
        mamori_config *cfg;
        const char *socket_path, *mount_dir, *status_dir;
        char host[256];
        uint8_t classes[AGENT_CLASSES_MAX];
        size_t n_classes;
        agent_spool *spool;
        int policyd_fd;         /* -1 when not connected */
        sd_event_source *watch; /* watch.c: policyd's change reports; NULL when not connected */
        int watch_fd;           /* -1 when not connected */
        mamori_reader watch_rd;
        bool watch_missed;      /* a watch connection was lost: decide again on the next */
        bool ready, policyd_down, quiet;
        sd_event_source *retry;
        struct idle_watch *idle; /* idle.c; NULL when exempt or unavailable */
        agent_dev devs[AGENT_DEVICES_MAX];
} agent;

/* usb.c */
/* Sets authorized_default=0 on every USB controller. Returns the count or -errno. */
int usb_default_deny(agent *a);
/* Writes "1" or "0" to the device's authorized attribute (openat on its syspath).
 * Returns 0 or -errno. */
int usb_set_authorized(const char *syspath, bool on);
/* Reads the device's interfaces from its raw descriptors. Returns the count or -errno. */
int usb_read_ifaces(const char *syspath, agent_iface *ret, size_t max);
/* Handles a usb_device add (or coldplug): classify, decide, authorise or not. */
void usb_device_added(agent *a, struct udev_device *d);
void usb_device_removed(agent *a, struct udev_device *d);
agent_dev *agent_dev_find(agent *a, const char *syspath);

/* decide.c */
/* Asks policyd about dev (with the block device's size and UUID once known). Returns
 * 0 with dev->verdict etc. set, or -errno when policyd could not answer (then the
 * caller keeps the device blocked: fail closed). */
int decide_device(agent *a, agent_dev *dev);
/* Blocks dev now, for reason: records the verdict, unmounts, deauthorises, tells the user. */
void decide_refuse(agent *a, agent_dev *dev, const char *reason);
/* (Re)arms the device's timer for its next_change (for an identify verdict: the time
 * it has to show its filesystem). */
void decide_arm_timer(agent *a, agent_dev *dev);
/* Re-decides dev now and acts on a changed answer (unmount, deauthorise, remount). */
void decide_again(agent *a, agent_dev *dev);
/* Connects to policyd if needed. Returns the fd or -errno. */
int policyd_fd(agent *a);
void policyd_drop(agent *a);

/* watch.c */
/* Opens the watch connection if it is not open: policyd reports changes of the ledger,
 * grants and keys on it, and the agent decides every storage device again. After a
 * lost connection, reconnecting decides again too. Returns 0 or -errno (retried). */
int watch_connect(agent *a);
void watch_close(agent *a);
/* Tells policyd on the watch connection that dev came (present) or went, for tokens
 * (R-AUTH-4); policyd's answer comes back on it. Not connected: nothing (all devices
 * are reported on connecting). */
void watch_presence(agent *a, const agent_dev *dev, bool present);
/* Asks policyd again about every storage device and acts on changed answers; the
 * media views ask again for their rights. */
void agent_decide_storage_again(agent *a);

/* mount.c */
/* Mounts the block device under mount_dir/<major>-<minor>, nosuid,nodev,noexec, rw only
 * if dev->may_write. Returns 0, -ENOMEDIUM if no known filesystem, or -errno. */
int mount_block(agent *a, agent_dev *dev, struct udev_device *blk);
/* Unmounts dev's filesystem (lazily if busy). Returns 0 or -errno. */
int mount_release(agent *a, agent_dev *dev);
/* Remounts read-only or read-write by dev->may_write. Returns 0 or -errno. */
int mount_update(agent *a, agent_dev *dev);
/* The same, by name: for tests and the host-side helper. */
int mount_raw(const char *dir, const char *devnode, dev_t want, bool rw, char ret_name[static 32],
              const char **ret_type, char ret_uuid[static AGENT_FS_UUID_MAX], uint64_t *ret_size);
int mount_raw_release(const char *dir, const char *name);
/* Reads the filesystem type, UUID and size of the block device without mounting it
 * (identifying a medium whose registration carries a mark). Returns 0, -ENOMEDIUM,
 * -ENODEV (not the device want names) or -errno. */
int mount_probe(const char *devnode, dev_t want, const char **ret_type, char ret_uuid[static AGENT_FS_UUID_MAX],
                uint64_t *ret_size);

/* view-spawn.c: the FUSE media view (agent/view.h) */
#define AGENT_VIEW_DIR "/media/mamori"
extern const char *agent_view_path; /* MAMORI_VIEW_PATH; the test tool runs the build tree's */
/* Starts mamori-view for dev's raw mount. Returns 0 or -errno (then nothing is served:
 * the medium stays reachable to root only). */
int view_spawn(agent *a, agent_dev *dev);
/* Stops dev's view (SIGTERM, wait, SIGKILL) and detaches its mount. */
void view_stop(agent *a, agent_dev *dev);
/* Forwards the agent's reload (SIGHUP): the view asks policyd again. */
void view_reload(agent_dev *dev);

/* evidence.c */
/* Records an "agent.<what>" event with the device's identity and port, then NULL-ended
 * key, value pairs. Delivered now, or spooled in order. Returns 0, or -errno when it
 * could not even be spooled (then the caller keeps storage blocked: R-EV-9). */
int evidence_device(agent *a, const char *what, const agent_dev *dev, ...) __attribute__((sentinel));
/* Records an event of the given type with NULL-ended key, value pairs and device_host
 * (idle.c: session.lock etc.). Delivered or spooled like evidence_device. Returns 0 or -errno. */
int evidence_event(agent *a, const char *type, ...) __attribute__((sentinel));
/* Builds one EVIDENCE_SUBMIT frame. Returns 0 and a malloc'd frame, or -errno. */
int evidence_frame(const char *type, int64_t time_us, const char *const *kv, uint8_t **ret, size_t *ret_len);
/* Sends spooled records in order while policyd takes them. Returns the number left. */
uint64_t evidence_flush(agent *a);
/* Writes /run/mamori-agent/status (state, spool depth) for mediactl status. */
void agent_write_status(agent *a);

/* notify.c */
/* Tells the user at the console why a device was refused (Japanese and English). */
void notify_refused(agent *a, const agent_dev *dev);
