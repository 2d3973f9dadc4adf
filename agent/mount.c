/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The raw mount: the registered medium's filesystem at <mount_dir>/<major>-<minor>
 * (root-only, 0700), always nosuid,nodev,noexec (R-ATK-1), read-only unless a right
 * allows writing. The path is made of numbers only; no device string is ever a path.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/fs.h>

#include "agent.h"
#include "cleanup.h"
#include "log.h"

#define FLAGS (MS_NOSUID | MS_NODEV | MS_NOEXEC)

/* Opens (creating 0700) a root-only directory, checking it on the descriptor. */
static int open_private_dir(int at, const char *name)
{
        if (mkdirat(at, name, 0700) < 0 && errno != EEXIST)
                return -errno;
        int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 077)) {
                close(fd);
                return -EPERM;
        }
        return fd;
}

static const char *fs_options(const char *type)
{
        /* vfat has no owners: make every file root's, nothing for others */
        return streq(type, "vfat") ? "uid=0,gid=0,umask=077,shortname=mixed" : NULL;
}

/* Opens the block device the kernel named (O_NOFOLLOW, checked on the descriptor) and
 * reads its size and filesystem. Returns the descriptor, -ENODEV for another device,
 * -ENOMEDIUM for no known filesystem, or -errno. */
static int open_probed(const char *devnode, dev_t want, const char **ret_type,
                       char ret_uuid[static AGENT_FS_UUID_MAX], uint64_t *ret_size, dev_t *ret_rdev)
{
        _cleanup_close_ int bfd = open(devnode, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (bfd < 0)
                return -errno;
        struct stat st;
        if (fstat(bfd, &st) < 0)
                return -errno;
        if (!S_ISBLK(st.st_mode) || (want && st.st_rdev != want))
                return -ENODEV; /* not the device the kernel told us about: refuse */
        if (ioctl(bfd, BLKGETSIZE64, ret_size) < 0)
                return -errno;
        static uint8_t buf[AGENT_PROBE_SIZE];
        ssize_t n = pread(bfd, buf, sizeof buf, 0);
        if (n < 0)
                return -errno;
        if (agent_fs_probe(buf, n, ret_type, ret_uuid) <= 0)
                return -ENOMEDIUM;
        *ret_rdev = st.st_rdev;
        return TAKE_FD(bfd);
}

int mount_probe(const char *devnode, dev_t want, const char **ret_type, char ret_uuid[static AGENT_FS_UUID_MAX],
                uint64_t *ret_size)
{
        dev_t rdev;
        int fd = open_probed(devnode, want, ret_type, ret_uuid, ret_size, &rdev);
        if (fd < 0)
                return fd;
        close(fd);
        return 0;
}

int mount_raw(const char *dir, const char *devnode, dev_t want, bool rw, char ret_name[static 32],
              const char **ret_type, char ret_uuid[static AGENT_FS_UUID_MAX], uint64_t *ret_size)
{
        const char *type;
        char uuid[AGENT_FS_UUID_MAX];
        uint64_t size = 0;
        dev_t rdev;
        _cleanup_close_ int bfd = open_probed(devnode, want, &type, uuid, &size, &rdev);
        if (bfd < 0)
                return bfd;
        char name[32];
        agent_mount_name(major(rdev), minor(rdev), name);
        _cleanup_close_ int top = open_private_dir(AT_FDCWD, dir);
        if (top < 0)
                return top;
        _cleanup_close_ int mp = open_private_dir(top, name);
        if (mp < 0)
                return mp;
        /* Mount on the checked directories through /proc/self/fd: no path is resolved twice. */
        char src[64], dst[64];
        snprintf(src, sizeof src, "/proc/self/fd/%d", bfd);
        snprintf(dst, sizeof dst, "/proc/self/fd/%d", mp);
        unsigned long flags = FLAGS | (rw ? 0 : MS_RDONLY);
        if (mount(src, dst, type, flags, fs_options(type)) < 0)
                return -errno;
        memcpy(ret_name, name, sizeof name);
        *ret_type = type;
        memcpy(ret_uuid, uuid, AGENT_FS_UUID_MAX);
        *ret_size = size;
        return 0;
}

int mount_raw_release(const char *dir, const char *name)
{
        _cleanup_close_ int top = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (top < 0)
                return -errno;
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, name); /* dir is ours, name is numbers */
        if (umount2(path, UMOUNT_NOFOLLOW) < 0) {
                if (errno != EBUSY || umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
                        return -errno; /* busy: detached, gone from the tree at once */
        }
        if (unlinkat(top, name, AT_REMOVEDIR) < 0 && errno != ENOENT && errno != EBUSY)
                return -errno;
        return 0;
}

int mount_block(agent *a, agent_dev *dev, struct udev_device *blk)
{
        const char *node = udev_device_get_devnode(blk);
        if (!node)
                return -ENODEV;
        const char *type;
        int r = mount_raw(a->mount_dir, node, udev_device_get_devnum(blk), dev->may_write, dev->mount_name,
                          &type, dev->block_uuid, &dev->block_size);
        if (r < 0)
                return r;
        dev->mounted = true;
        dev->mounted_rw = dev->may_write;
        dev->block = udev_device_get_devnum(blk);
        (void)evidence_device(a, "mount", dev, "fs_type", type, "fs_uuid", dev->block_uuid, "mount_name",
                              dev->mount_name, "mode", dev->may_write ? "rw" : "ro", NULL);
        (void)view_spawn(a, dev); /* no view: users reach nothing, root only (fail closed) */
        return 0;
}

int mount_release(agent *a, agent_dev *dev)
{
        view_stop(a, dev); /* the view first: it holds the raw mount open */
        int r = mount_raw_release(a->mount_dir, dev->mount_name);
        if (r < 0)
                log_error_errno(r, "Cannot unmount %s/%s: %m", a->mount_dir, dev->mount_name);
        else
                dev->mounted = false;
        (void)evidence_device(a, "unmount", dev, "mount_name", dev->mount_name, "result", r < 0 ? "failed" : "ok",
                              NULL);
        return r;
}

int mount_update(agent *a, agent_dev *dev)
{
        char path[256];
        snprintf(path, sizeof path, "%s/%s", a->mount_dir, dev->mount_name);
        unsigned long flags = MS_REMOUNT | FLAGS | (dev->may_write ? 0 : MS_RDONLY);
        if (mount(NULL, path, NULL, flags, NULL) < 0) {
                int r = -errno;
                log_error_errno(r, "Cannot remount %s: %m; unmounting instead.", path);
                return mount_release(a, dev); /* could not take the write right away: fail closed */
        }
        dev->mounted_rw = dev->may_write;
        (void)evidence_device(a, "remount", dev, "mode", dev->may_write ? "rw" : "ro", NULL);
        return 0;
}
