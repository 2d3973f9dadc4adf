#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-or-later
# /init of the bench's initramfs (assembled by mamori_vm.py from busybox-static and
# a few of the host's kernel modules). It mounts the host's root, shared read-only
# over 9p, under a tmpfs overlay, lays the per-boot files from the "mamoricfg" share
# on top, and hands over to systemd. Nothing is installed into any image.
/bin/busybox mkdir -p /bin /sbin /proc /sys /dev /lower /rw /newroot /cfg
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "mamori-init: $*" >/dev/console
    echo "mamori-init: FAILED" >/dev/console
    poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "mamori-init: loading modules" >/dev/console
while read -r m; do
    [ -n "$m" ] || continue
    insmod "/mods/$m" || fail "insmod $m"
done </mods/order

mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 mamoriroot /lower ||
    fail "cannot mount the host root over 9p"
mount -t tmpfs -o mode=0755,size=75% mamori-rw /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
    fail "overlay"

# The host's own enabled units and local unit config do not belong in the guest
# (usbguard, databases, timers): start from the distribution's units only.
rm -rf /newroot/etc/systemd/system
mkdir -p /newroot/etc/systemd/system

mount -t 9p -o trans=virtio,version=9p2000.L,ro mamoricfg /cfg || fail "cannot mount mamoricfg"
if [ -d /cfg/root ]; then
    cp -a /cfg/root/. /newroot/ || fail "copying the per-boot files"
fi
if [ -f /cfg/trees ]; then
    # Host directories (e.g. a "meson install --destdir") laid over /.
    while read -r t; do
        [ -n "$t" ] || continue
        cp -a "/newroot$t/." /newroot/ || fail "copying tree $t"
    done </cfg/trees
fi
umount /cfg

mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
echo "mamori-init: switching to systemd" >/dev/console
exec switch_root /newroot /lib/systemd/systemd
