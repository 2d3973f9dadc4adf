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

# Copy directory $1 into $2 like "cp -a $1/. $2/", but where $2 has a symlink to a
# directory (merged /usr: /lib -> usr/lib) copy into its target instead of failing.
merge() {
    local e n d t
    for e in "$1"/* "$1"/.[!.]*; do
        [ -e "$e" ] || [ -L "$e" ] || continue
        n=${e##*/}
        d="$2/$n"
        if [ -d "$e" ] && [ ! -L "$e" ] && [ -L "$d" ]; then
            t=$(readlink "$d")
            case "$t" in
            /*) t="/newroot$t" ;;
            *) t="$2/$t" ;;
            esac
            merge "$e" "$t" || return 1
        elif [ -d "$e" ] && [ ! -L "$e" ] && [ -d "$d" ]; then
            merge "$e" "$d" || return 1
        else
            cp -a "$e" "$2/" || return 1
        fi
    done
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "mamori-init: loading modules" >/dev/console
while read -r m; do
    [ -n "$m" ] || continue
    insmod "/mods/$m" || fail "insmod $m"
done </mods/order

mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144${MAMORI_9P_CACHE:+,cache=$MAMORI_9P_CACHE} mamoriroot /lower ||
    fail "cannot mount the host root over 9p"
mount -t tmpfs -o mode=0755,size=75% mamori-rw /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
    fail "overlay"

# The host may be a container: its marker files would make systemd think the guest
# is one too (and then ignore the kernel command line and skip units).
rm -f /newroot/.dockerenv /newroot/run/.containerenv

# The host's own enabled units and local unit config do not belong in the guest
# (usbguard, databases, timers): start from the distribution's units only.
rm -rf /newroot/etc/systemd/system
mkdir -p /newroot/etc/systemd/system

mount -t 9p -o trans=virtio,version=9p2000.L,ro mamoricfg /cfg || fail "cannot mount mamoricfg"
if [ -d /cfg/root ]; then
    merge /cfg/root /newroot || fail "copying the per-boot files"
fi
if [ -f /cfg/trees ]; then
    # Host directories (e.g. a "meson install --destdir") laid over /.
    while read -r t; do
        [ -n "$t" ] || continue
        merge "/newroot$t" /newroot || fail "copying tree $t"
    done </cfg/trees
fi
[ -f /cfg/binds ] && cp /cfg/binds /binds
umount /cfg

# A fresh /tmp: Debian's tmpfiles.d empties /tmp at boot ("D /tmp"), which on the
# overlay would mean whiting out the host's /tmp file by file.
mount -t tmpfs -o mode=1777,nosuid,nodev mamori-tmp /newroot/tmp || fail "tmpfs on /tmp"
# ...but a source or build tree under the host's /tmp is bound back in, read-only.
if [ -f /binds ]; then
    while read -r d; do
        [ -n "$d" ] || continue
        mkdir -p "/newroot$d" && mount --bind "/lower$d" "/newroot$d" || fail "binding $d"
    done </binds
fi

mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
echo "mamori-init: switching to systemd" >/dev/console
exec switch_root /newroot /lib/systemd/systemd
