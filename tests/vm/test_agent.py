#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""mamori-agent in a real kernel with real udev (issue 5): keyboards in by local rule,
unregistered sticks never authorised, registered ones mounted read-only, nosuid,nodev,
noexec, hostile serials recorded exactly, and evidence spooled while policyd is away.

One boot: the build is installed in the guest, policyd's socket and the agent enabled."""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mamori_vm import check, make_image, make_iso, run_scenarios, usb_string_as_seen  # noqa: E402

BUILD = os.environ.get("MAMORI_BUILD_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..", "build")
MEDIACTL = os.path.join(os.path.abspath(BUILD), "mediactl", "mediactl")
RAW = "/run/mamori-agent/raw"
QEMU_STICK = ("46f4", "0001")  # QEMU usb-storage's idVendor/idProduct


def as_user(vm, user):
    r = vm.run(["id", "-g", user], check=True)
    return ["setpriv", "--reuid=" + user, "--regid=" + r.stdout.strip(), "--init-groups"]


def mediactl(vm, user, *args, check_rc=False):
    return vm.run(as_user(vm, user) + [MEDIACTL] + list(args), check=check_rc)


def records(vm, type_):
    r = mediactl(vm, "mamori-t-auditor", "log", "--type", type_, "--format", "json", "--limit", "100000")
    return sorted(json.loads(r.stdout or "[]"), key=lambda x: x["seq"]) if r.rc == 0 else []


def wait_record(vm, type_, serial, timeout=60, **fields):
    def find():
        for rec in records(vm, type_):
            f = rec["fields"]
            if (serial is None or f.get("serial") == serial) and all(f.get(k) == v for k, v in fields.items()):
                return rec
        return None
    return vm.wait_for(find, timeout=timeout, interval=0.5, what="%s for serial %r" % (type_, serial))


def sysattr(vm, devpath, attr):
    b = vm.read("/sys" + devpath + "/" + attr)
    return b.decode().strip() if b is not None else None


def raw_mounts(vm):
    out = []
    for line in vm.read("/proc/self/mountinfo").decode().splitlines():
        p = line.split()
        if p[4].startswith(RAW + "/"):
            out.append((p[4], set(p[5].split(","))))
    return out


def pull_and_wait(vm, dev, serial):
    dev.pull()
    wait_record(vm, "agent.removal", serial)


def controllers_closed(vm):
    r = vm.run(["sh", "-c", "cat /sys/bus/usb/devices/usb*/authorized_default"], check=True)
    vals = r.stdout.split()
    check(vals and all(v == "0" for v in vals), "authorized_default %r", vals)


def keyboard_in_by_local_rule(vm):
    kb = vm.plug_keyboard()
    kb.wait_usb_event()
    vm.wait_for(lambda: sysattr(vm, kb.devpath, "authorized") == "1", timeout=30, what="keyboard authorised")
    vm.wait_for(lambda: sysattr(vm, kb.devpath + "/" + os.path.basename(kb.devpath) + ":1.0", "bInterfaceClass") == "03",
                timeout=30, what="the HID interface bound")
    rec = wait_record(vm, "agent.verdict", None, reason="local-class", port=os.path.basename(kb.devpath))
    check(rec["fields"]["verdict"] == "allowed", "keyboard verdict %r", rec["fields"])
    kb.pull()


def unregistered_never_in(vm):
    """R-REG-1: an unregistered stick is never authorised or mounted, and the user is told."""
    img = make_image(os.path.join(vm.workdir, "u.img"), "vfat", 16, label="U", files={"a.txt": "x\n"})
    st = vm.plug_stick(img, vendor="ACME", product="Unreg", serial="UNREG-1")
    st.wait_usb_event()
    rec = wait_record(vm, "agent.verdict", "UNREG-1")
    f = rec["fields"]
    check(f["verdict"] == "blocked" and f["reason"] == "unregistered", "verdict %r", f)
    check((f["vendor"], f["product"]) == QEMU_STICK, "identity %r", f)
    check(f["port"] == os.path.basename(st.devpath), "port %r vs %s", f["port"], st.devpath)
    time.sleep(2)  # give a wrongly authorised stick time to show a disk
    check(sysattr(vm, st.devpath, "authorized") == "0", "stick authorised")
    r = vm.run(["sh", "-c", "ls /sys%s | grep -c ':1.0' || true" % st.devpath])
    check(r.stdout.strip() == "0", "an interface exists on the blocked stick: %r", r.stdout)
    check(not raw_mounts(vm), "something is mounted: %r", raw_mounts(vm))
    j = vm.run(["journalctl", "-b", "-u", "mamori-agent", "--no-pager", "-o", "cat"]).stdout
    check('Refused USB 46f4:0001 serial "UNREG-1"' in j, "no refusal in the journal")
    pull_and_wait(vm, st, "UNREG-1")


def registered_mounted_read_only(vm):
    """R-ATK-1: a registered stick is mounted nosuid,nodev,noexec, read-only without a grant."""
    mediactl(vm, "mamori-t-admin", "media", "register", "--no", "AG-001", "--type", "USBメモリ",
             "--purpose", "test", "--manager", "mamori-t-manager", "--start", "2026-01-01",
             "--end", "2099-12-31", "--vendor", QEMU_STICK[0], "--product", QEMU_STICK[1],
             "--serial", "REG-1", "--users", "mamori-t-staff", check_rc=True)
    img = make_image(os.path.join(vm.workdir, "r.img"), "vfat", 16, label="R", files={"hello.txt": "hello\n"})
    st = vm.plug_stick(img, vendor="ACME", product="Reg", serial="REG-1")
    st.wait_usb_event()
    rec = wait_record(vm, "agent.verdict", "REG-1")
    check(rec["fields"]["verdict"] == "allowed" and rec["fields"]["media"] == "AG-001", "verdict %r", rec["fields"])
    m = wait_record(vm, "agent.mount", "REG-1", timeout=90)
    check(m["fields"]["mode"] == "ro" and m["fields"]["fs_type"] == "vfat", "mount record %r", m["fields"])
    mounts = raw_mounts(vm)
    check(len(mounts) == 1, "mounts %r", mounts)
    path, opts = mounts[0]
    check({"ro", "nosuid", "nodev", "noexec"} <= opts, "options %r", opts)
    check(os.path.basename(path) == m["fields"]["mount_name"], "mount name %r", path)
    check(vm.read(path + "/hello.txt") == b"hello\n", "file content")
    r = vm.run(["stat", "-c", "%a %U", RAW])
    check(r.stdout.strip() == "700 root", "raw dir %r", r.stdout)
    r = vm.run(["touch", path + "/new"])
    check(r.rc != 0, "wrote to a read-only mount")
    pull_and_wait(vm, st, "REG-1")
    check(not raw_mounts(vm), "still mounted after the pull: %r", raw_mounts(vm))
    wait_record(vm, "agent.unmount", "REG-1")


def restart_keeps_decision(vm):
    """The agent restarted with sticks inside decides them again the same way (coldplug)."""
    img = make_image(os.path.join(vm.workdir, "k.img"), "vfat", 16, label="K", files={"k.txt": "k\n"})
    reg = vm.plug_stick(img, vendor="ACME", product="Reg", serial="REG-1")
    reg.wait_usb_event()
    img2 = make_image(os.path.join(vm.workdir, "k2.img"), "vfat", 16, label="K2")
    unreg = vm.plug_stick(img2, vendor="ACME", product="Unreg", serial="UNREG-2")
    unreg.wait_usb_event()
    wait_record(vm, "agent.verdict", "UNREG-2")
    vm.wait_for(lambda: raw_mounts(vm), timeout=90, what="REG-1 mounted")
    n = len([r for r in records(vm, "agent.mount") if r["fields"]["serial"] == "REG-1"])
    vm.run(["systemctl", "restart", "mamori-agent.service"], check=True, timeout=120)
    vm.wait_for(lambda: len([r for r in records(vm, "agent.mount") if r["fields"]["serial"] == "REG-1"]) > n,
                timeout=90, what="REG-1 mounted again after the restart")
    mounts = raw_mounts(vm)
    check(len(mounts) == 1 and {"ro", "nosuid", "nodev", "noexec"} <= mounts[0][1], "mounts %r", mounts)
    check(vm.read(mounts[0][0] + "/k.txt") == b"k\n", "content after restart")
    check(sysattr(vm, unreg.devpath, "authorized") == "0", "the unregistered stick got in after the restart")
    v = [r for r in records(vm, "agent.verdict") if r["fields"]["serial"] == "UNREG-2"]
    check(len(v) >= 2 and v[-1]["fields"]["verdict"] == "blocked", "UNREG-2 decided again: %r", v[-1:])
    pull_and_wait(vm, reg, "REG-1")
    pull_and_wait(vm, unreg, "UNREG-2")
    check(not raw_mounts(vm), "left mounted")


def coldplug_decides_present_devices(vm):
    """Sticks already there when the agent starts (as at boot) are decided before it
    reports ready: systemctl start (Type=notify) returns only after that."""
    vm.run(["systemctl", "stop", "mamori-agent.service"], check=True)
    try:
        vm.run(["sh", "-c", "for c in /sys/bus/usb/devices/usb*/authorized_default; do echo 1 > $c; done"],
               check=True)
        img = make_image(os.path.join(vm.workdir, "c1.img"), "vfat", 16, label="C1", files={"c.txt": "c\n"})
        reg = vm.plug_stick(img, vendor="ACME", product="Reg", serial="REG-1")
        img2 = make_image(os.path.join(vm.workdir, "c2.img"), "vfat", 16, label="C2")
        unreg = vm.plug_stick(img2, vendor="ACME", product="Unreg", serial="UNREG-3")
        reg.wait_block()
        unreg.wait_block()  # no agent: the kernel let both in
        check(sysattr(vm, unreg.devpath, "authorized") == "1", "precondition: authorised without the agent")
    finally:
        vm.run(["systemctl", "start", "mamori-agent.service"], check=True, timeout=120)
    # No waiting from here on: all of this must hold when the agent says it is ready.
    check(sysattr(vm, unreg.devpath, "authorized") == "0", "unregistered stick still authorised at ready")
    vals = vm.run(["sh", "-c", "cat /sys/bus/usb/devices/usb*/authorized_default"]).stdout.split()
    check(vals and all(v == "0" for v in vals), "authorized_default %r", vals)
    mounts = raw_mounts(vm)
    check(len(mounts) == 1 and {"ro", "nosuid", "nodev", "noexec"} <= mounts[0][1], "mounts at ready %r", mounts)
    check(vm.read(mounts[0][0] + "/c.txt") == b"c\n", "content")
    pull_and_wait(vm, reg, "REG-1")
    pull_and_wait(vm, unreg, "UNREG-3")


PASS = b"correct horse battery staple\n"


def write_grant_then_expiry(vm):
    """A write grant makes the raw mount writable at once (policyd reports the change; no
    reload); when it expires while mounted, the agent's timer takes the write right away
    within a second."""
    vm.run(["install", "-d", "-m", "0700", "-o", "mamori-t-manager", "/tmp/mgr"], check=True)
    r = vm.run(as_user(vm, "mamori-t-manager") + [MEDIACTL, "manager", "keygen", "--key", "/tmp/mgr/k",
                                                  "--passphrase-fd", "0"], input=PASS, check=True)
    pub = r.stdout.strip()
    vm.run([MEDIACTL, "manager", "trust", pub, "--name", "mamori-t-manager"], check=True)
    img = make_image(os.path.join(vm.workdir, "w.img"), "vfat", 16, label="W")
    st = vm.plug_stick(img, vendor="ACME", product="Reg", serial="REG-1")
    st.wait_usb_event()
    vm.wait_for(lambda: raw_mounts(vm), timeout=90, what="REG-1 mounted")
    path, opts = raw_mounts(vm)[0]
    check("ro" in opts, "mounted %r before any grant", opts)
    until = int(vm.run(["date", "+%s"], check=True).stdout) + 25
    until_s = vm.run(["date", "-u", "-d", "@%d" % until, "+%Y-%m-%dT%H:%M:%S"], check=True).stdout.strip()
    r = vm.run(as_user(vm, "mamori-t-manager") + [MEDIACTL, "grant", "create", "--key", "/tmp/mgr/k",
                                                  "--passphrase-fd", "0", "--media", "AG-001", "--user",
                                                  "mamori-t-staff", "--any-host", "--from", "now", "--until",
                                                  until_s, "--mode", "write-plain"], input=PASS)
    check(r.rc == 0, "grant create: %r %r", r.stdout, r.stderr)
    vm.wait_for(lambda: raw_mounts(vm) and "rw" in raw_mounts(vm)[0][1], timeout=30, what="remounted rw")
    path, opts = raw_mounts(vm)[0]
    check({"rw", "nosuid", "nodev", "noexec"} <= opts, "options with the grant %r", opts)
    vm.run(["sh", "-c", "echo granted > %s/w.txt" % path], check=True)
    check(vm.read(path + "/w.txt") == b"granted\n", "written through the raw mount")
    rec = wait_record(vm, "agent.remount", "REG-1", timeout=60, mode="ro")
    late = rec["time_us"] / 1e6 - until
    check(-0.05 <= late <= 1.0, "the write right went %.3f s after the grant's end", late)
    opts = raw_mounts(vm)[0][1] if raw_mounts(vm) else set()
    check("ro" in opts, "after expiry %r", opts)
    pull_and_wait(vm, st, "REG-1")


def revocation_and_retirement_act_at_once(vm):
    """R-PERM-2, R-REG-6: revoking a grant takes the write right away, and retiring the
    medium unmounts and deauthorises it, within a second of the change being recorded,
    without a reload or replug (policyd reports changes on the agent's watch connection)."""
    mediactl(vm, "mamori-t-admin", "media", "register", "--no", "AG-RV", "--type", "USBメモリ",
             "--purpose", "test", "--manager", "mamori-t-manager", "--start", "2026-01-01",
             "--end", "2099-12-31", "--vendor", QEMU_STICK[0], "--product", QEMU_STICK[1],
             "--serial", "RV-1", "--users", "mamori-t-staff", check_rc=True)
    img = make_image(os.path.join(vm.workdir, "rv.img"), "vfat", 16, label="RV")
    st = vm.plug_stick(img, vendor="ACME", product="Rv", serial="RV-1")
    st.wait_usb_event()
    vm.wait_for(lambda: raw_mounts(vm), timeout=90, what="RV-1 mounted")
    r = vm.run(as_user(vm, "mamori-t-manager") + [MEDIACTL, "grant", "create", "--key", "/tmp/mgr/k",
                                                  "--passphrase-fd", "0", "--media", "AG-RV", "--user",
                                                  "mamori-t-staff", "--any-host", "--from", "now", "--until",
                                                  "2099-01-01", "--mode", "write-encrypted"], input=PASS)
    check(r.rc == 0, "grant create: %r %r", r.stdout, r.stderr)
    gid = r.stdout.strip().splitlines()[-1]
    wait_record(vm, "agent.remount", "RV-1", timeout=30, mode="rw")
    r = vm.run(as_user(vm, "mamori-t-manager") + [MEDIACTL, "grant", "revoke", gid, "--key", "/tmp/mgr/k",
                                                  "--passphrase-fd", "0"], input=PASS)
    check(r.rc == 0, "grant revoke: %r %r", r.stdout, r.stderr)
    rev = [x for x in records(vm, "grant.revoke") if x["fields"].get("grant_id") == gid]
    check(len(rev) == 1, "revocation records %r", rev)
    ro = wait_record(vm, "agent.remount", "RV-1", timeout=30, mode="ro")
    late = (ro["time_us"] - rev[0]["time_us"]) / 1e6
    print("# write right taken %.3f s after the revocation was recorded" % late, flush=True)
    check(0 <= late <= 1.0, "the write right went %.3f s after the revocation", late)
    mediactl(vm, "mamori-t-admin", "media", "retire", "AG-RV", check_rc=True)
    ret = [x for x in records(vm, "media.retire") if x["fields"].get("media") == "AG-RV"]
    check(len(ret) == 1, "retirement records %r", ret)
    un = wait_record(vm, "agent.unmount", "RV-1", timeout=30)
    late = (un["time_us"] - ret[0]["time_us"]) / 1e6
    print("# unmounted %.3f s after the retirement was recorded" % late, flush=True)
    check(0 <= late <= 1.0, "unmounted %.3f s after the retirement", late)
    vm.wait_for(lambda: sysattr(vm, st.devpath, "authorized") == "0", timeout=5, what="deauthorised")
    check(not raw_mounts(vm), "still mounted: %r", raw_mounts(vm))
    pull_and_wait(vm, st, "RV-1")


def registration_end_unmounts(vm):
    """A registration that ends while the stick is mounted: unmounted and deauthorised
    within a second of the end (R-REG-6), by the agent's timer alone."""
    end = int(vm.run(["date", "+%s"], check=True).stdout) + 20
    end_s = vm.run(["date", "-u", "-d", "@%d" % end, "+%Y-%m-%dT%H:%M:%S"], check=True).stdout.strip()
    mediactl(vm, "mamori-t-admin", "media", "register", "--no", "AG-EXP", "--type", "USBメモリ",
             "--purpose", "test", "--manager", "mamori-t-manager", "--start", "2026-01-01",
             "--end", end_s, "--vendor", QEMU_STICK[0], "--product", QEMU_STICK[1],
             "--serial", "EXP-1", "--users", "mamori-t-staff", check_rc=True)
    img = make_image(os.path.join(vm.workdir, "e.img"), "vfat", 16, label="E")
    st = vm.plug_stick(img, vendor="ACME", product="Exp", serial="EXP-1")
    st.wait_usb_event()
    vm.wait_for(lambda: raw_mounts(vm), timeout=60, what="EXP-1 mounted")
    check(time.time() < end, "mounted only after the end; the host is too slow for this scenario")
    rec = wait_record(vm, "agent.unmount", "EXP-1", timeout=60)
    late = rec["time_us"] / 1e6 - end
    check(-0.05 <= late <= 1.0, "unmounted %.3f s after the registration's end", late)
    check(not raw_mounts(vm), "still mounted: %r", raw_mounts(vm))
    vm.wait_for(lambda: sysattr(vm, st.devpath, "authorized") == "0", timeout=5, what="deauthorised")
    v = wait_record(vm, "agent.verdict", "EXP-1", reason="registration-expired")
    check(v["fields"]["verdict"] == "blocked", "verdict %r", v["fields"])
    pull_and_wait(vm, st, "EXP-1")


def fs_uuid(img):
    r = subprocess.run(["blkid", "-o", "value", "-s", "UUID", img], capture_output=True, text=True, check=True)
    return r.stdout.strip()


def twins_only_registered_in(vm):
    """R-REG-1: two sticks of one model and serial, one registered by its filesystem UUID.
    The registered one is identified, then mounted; the other is let in only to read its
    filesystem UUID, never mounted, and deauthorised."""
    a = make_image(os.path.join(vm.workdir, "twin-a.img"), "vfat", 16, label="TA", files={"a.txt": "a\n"})
    b = make_image(os.path.join(vm.workdir, "twin-b.img"), "vfat", 16, label="TB", files={"b.txt": "b\n"})
    if fs_uuid(a) == fs_uuid(b):  # mkfs.vfat takes the volume id from the clock: make them differ
        with open(b, "r+b") as f:  # FAT16 (16 MiB): volume id at 0x27
            f.seek(0x27)
            f.write(bytes([0x5A, 0x5A, 0x5A, 0x5A]))
    ua, ub = fs_uuid(a), fs_uuid(b)
    check(ua and ub and ua != ub, "image UUIDs %r %r", ua, ub)
    mediactl(vm, "mamori-t-admin", "media", "register", "--no", "TW-001", "--type", "USBメモリ",
             "--purpose", "test", "--manager", "mamori-t-manager", "--start", "2026-01-01",
             "--end", "2099-12-31", "--vendor", QEMU_STICK[0], "--product", QEMU_STICK[1],
             "--serial", "TWIN", "--fs-uuid", ua, "--users", "mamori-t-staff", check_rc=True)
    sa = vm.plug_stick(a, vendor="ACME", product="Twin", serial="TWIN")
    sa.wait_usb_event()
    pa = os.path.basename(sa.devpath)
    rec = wait_record(vm, "agent.verdict", "TWIN", port=pa, verdict="identify")
    check(rec["fields"]["reason"] == "identify", "first verdict %r", rec["fields"])
    m = wait_record(vm, "agent.mount", "TWIN", timeout=90)
    check(m["fields"]["port"] == pa and m["fields"]["fs_uuid"].lower() == ua.lower(), "mount %r", m["fields"])
    sb = vm.plug_stick(b, vendor="ACME", product="Twin", serial="TWIN")
    sb.wait_usb_event()
    pb = os.path.basename(sb.devpath)
    rec = wait_record(vm, "agent.verdict", "TWIN", timeout=90, port=pb, verdict="blocked")
    check(rec["fields"]["reason"] == "unregistered", "the twin's verdict %r", rec["fields"])
    dec = [r["fields"] for r in records(vm, "media.decision") if r["fields"].get("serial") == "TWIN"]
    check(any(f["verdict"] == "blocked" and f["fs_uuid"].lower() == ub.lower() for f in dec),
          "no decision on the twin's own UUID: %r", dec)
    check(sysattr(vm, sb.devpath, "authorized") == "0", "the twin is still authorised")
    mounts = raw_mounts(vm)
    check(len(mounts) == 1, "mounts %r", mounts)
    check(vm.read(mounts[0][0] + "/a.txt") == b"a\n", "the registered stick is not the one mounted")
    check(len([r for r in records(vm, "agent.mount") if r["fields"].get("serial") == "TWIN"]) == 1,
          "the twin was mounted at some point")
    check(sysattr(vm, sa.devpath, "authorized") == "1", "the registered stick lost its authorisation")
    sb.pull()
    wait_record(vm, "agent.removal", "TWIN", port=pb)
    sa.pull()
    wait_record(vm, "agent.removal", "TWIN", port=pa)
    wait_record(vm, "agent.unmount", "TWIN", port=pa)


# A keyboard that is also a disk, made with the kernel's own USB gadget stack in the
# guest (dummy_hcd + configfs: a HID function and a mass-storage function in one
# configuration), because QEMU has no such device. The agent sees it on a controller
# that appears after it started (closed on its own uevent) and reads both interfaces
# from the raw descriptors before authorisation.
BADUSB_SETUP = r"""
set -e
modprobe dummy_hcd
modprobe libcomposite
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
truncate -s 8M /tmp/badusb.img
mkfs.vfat -n BAD /tmp/badusb.img >/dev/null
G=/sys/kernel/config/usb_gadget/badusb
mkdir $G
echo 0x1d6b > $G/idVendor
echo 0x0104 > $G/idProduct
mkdir $G/strings/0x409
echo BADUSB-1 > $G/strings/0x409/serialnumber
echo ACME > $G/strings/0x409/manufacturer
echo KbdDisk > $G/strings/0x409/product
mkdir $G/functions/hid.usb0
echo 1 > $G/functions/hid.usb0/protocol
echo 1 > $G/functions/hid.usb0/subclass
echo 8 > $G/functions/hid.usb0/report_length
printf '\005\001\011\006\241\001\005\007\031\340\051\347\025\000\045\001\165\001\225\010\201\002\300' > $G/functions/hid.usb0/report_desc
mkdir $G/functions/mass_storage.usb0
echo /tmp/badusb.img > $G/functions/mass_storage.usb0/lun.0/file
mkdir $G/configs/c.1
ln -s $G/functions/hid.usb0 $G/configs/c.1/
ln -s $G/functions/mass_storage.usb0 $G/configs/c.1/
ls /sys/class/udc | head -n 1 > $G/UDC
"""

BADUSB_TEARDOWN = r"""
G=/sys/kernel/config/usb_gadget/badusb
echo > $G/UDC
rm -f $G/configs/c.1/hid.usb0 $G/configs/c.1/mass_storage.usb0
rmdir $G/configs/c.1 $G/functions/hid.usb0 $G/functions/mass_storage.usb0 $G/strings/0x409 $G
"""


def badusb_composite_refused(vm):
    """R-ATK-1: a device that is a keyboard and a disk at once (BadUSB) is refused whole:
    never authorised, no interface bound, nothing mounted, and the refusal recorded."""
    r = vm.run(BADUSB_SETUP)
    check(r.rc == 0, "gadget setup failed: %r", r.stderr)
    try:
        rec = wait_record(vm, "agent.verdict", "BADUSB-1", timeout=60)
        f = rec["fields"]
        check(f["verdict"] == "blocked" and f["reason"] == "badusb", "verdict %r", f)
        check((f["vendor"], f["product"]) == ("1d6b", "0104"), "identity %r", f)
        con = wait_record(vm, "agent.connect", "BADUSB-1")
        check(con["fields"].get("class") == "badusb", "class %r", con["fields"])
        r = vm.run(["sh", "-c", "grep -l '^BADUSB-1$' /sys/bus/usb/devices/*/serial"])
        paths = r.stdout.split()
        check(len(paths) == 1, "the gadget's device in sysfs: %r", paths)
        dev = os.path.dirname(paths[0])
        time.sleep(2)  # a wrongly authorised device would now show interfaces and a disk
        check(vm.read(dev + "/authorized") == b"0\n", "the composite device is authorised")
        r = vm.run(["sh", "-c", "ls -d %s/*:1.* 2>/dev/null | wc -l" % dev])
        check(r.stdout.strip() == "0", "interfaces exist on the refused device: %r", r.stdout)
        check(not raw_mounts(vm), "something is mounted: %r", raw_mounts(vm))
    finally:
        vm.run(BADUSB_TEARDOWN)
    wait_record(vm, "agent.removal", "BADUSB-1", timeout=30)


def config_path():
    with open(os.path.join(os.path.abspath(BUILD), "mamori-config.h")) as f:
        return re.search(r'MAMORI_CONFIG_PATH "([^"]+)"', f.read()).group(1)


def set_optical_read(vm, on):
    path = config_path()
    text = vm.read(path).decode()
    old, new = ("optical_read = false;", "optical_read = true;") if on else ("optical_read = true;", "optical_read = false;")
    check(old in text, "%s has no %r", path, old)
    vm.run(["sh", "-c", 'cat > "$0"', path], input=text.replace(old, new).encode(), check=True)
    vm.run(["systemctl", "restart", "mamori-policyd.service"], check=True)


def optical_rule(vm):
    """R-REG-2: unregistered optical discs follow the optical rule. With optical_read off
    a drive stays out; with it on, an unregistered USB storage device is let in only to
    see whether it is an optical drive (no mount): a disc is then mounted read-only, a
    stick is refused and never mounted."""
    iso = os.path.join(vm.workdir, "disc.iso")
    make_iso(iso, label="DISC", files={"readme.txt": "disc\n"})
    cd = vm.plug_disc(iso, vendor="ACME", product="Drive", serial="OPT-1")
    cd.wait_usb_event()
    rec = wait_record(vm, "agent.verdict", "OPT-1")
    check(rec["fields"]["verdict"] == "blocked" and rec["fields"]["reason"] == "unregistered",
          "with optical_read off: %r", rec["fields"])
    pull_and_wait(vm, cd, "OPT-1")
    set_optical_read(vm, True)
    try:
        cd = vm.plug_disc(iso, vendor="ACME", product="Drive", serial="OPT-2")
        cd.wait_usb_event()
        wait_record(vm, "agent.verdict", "OPT-2", verdict="identify")
        m = wait_record(vm, "agent.mount", "OPT-2", timeout=90)
        check(m["fields"]["fs_type"] == "iso9660" and m["fields"]["mode"] == "ro", "disc mount %r", m["fields"])
        dec = [r["fields"] for r in records(vm, "media.decision") if r["fields"].get("serial") == "OPT-2"]
        check(any(d["kind"] == "optical" and d["verdict"] == "allowed" for d in dec), "decisions %r", dec)
        check(all(d["kind"] == "optical" for d in dec if d["verdict"] != "identify"),
              "asked as storage after it was seen to be optical (the agent or the view): %r", dec)
        mounts = raw_mounts(vm)
        check(len(mounts) == 1 and "ro" in mounts[0][1], "mounts %r", mounts)
        check(vm.read(mounts[0][0] + "/readme.txt") == b"disc\n", "the disc's file")
        img = make_image(os.path.join(vm.workdir, "notopt.img"), "vfat", 16, label="NO")
        st = vm.plug_stick(img, vendor="ACME", product="Stick", serial="NOTOPT-1")
        st.wait_usb_event()
        wait_record(vm, "agent.verdict", "NOTOPT-1", verdict="identify")
        rec = wait_record(vm, "agent.verdict", "NOTOPT-1", timeout=90, verdict="blocked")
        check(rec["fields"]["reason"] == "unregistered", "the stick's verdict %r", rec["fields"])
        vm.wait_for(lambda: sysattr(vm, st.devpath, "authorized") == "0", timeout=10, what="stick deauthorised")
        check(not [r for r in records(vm, "agent.mount") if r["fields"].get("serial") == "NOTOPT-1"],
              "the stick was mounted")
        check(len(raw_mounts(vm)) == 1, "mounts %r", raw_mounts(vm))
        pull_and_wait(vm, st, "NOTOPT-1")
        pull_and_wait(vm, cd, "OPT-2")
    finally:
        set_optical_read(vm, False)


def hostile_serial_recorded_exactly(vm):
    serial = "$(touch /tmp/pwned)'\"../../x;`id`|日本"
    img = make_image(os.path.join(vm.workdir, "h.img"), "vfat", 16, label="H")
    st = vm.plug_stick(img, vendor="ACME", product="Hostile", serial=serial)
    st.wait_usb_event()
    seen = usb_string_as_seen(serial)
    rec = wait_record(vm, "agent.verdict", seen)
    check(rec["fields"]["verdict"] == "blocked", "verdict %r", rec["fields"])
    check(not vm.exists("/tmp/pwned"), "the serial ran in a shell")
    check(not raw_mounts(vm), "mounted")
    check(sysattr(vm, st.devpath, "authorized") == "0", "authorised")
    pull_and_wait(vm, st, seen)


def policyd_away(vm):
    """R-EV-9: with policyd away storage stays blocked, the keyboard works, and the
    records are spooled and delivered in order when it returns."""
    vm.run(["systemctl", "stop", "mamori-policyd.socket", "mamori-policyd.service"], check=True)
    try:
        kb = vm.plug_keyboard()
        kb.wait_usb_event()
        vm.wait_for(lambda: sysattr(vm, kb.devpath, "authorized") == "1", timeout=30,
                    what="keyboard authorised without policyd")
        img = make_image(os.path.join(vm.workdir, "p.img"), "vfat", 16, label="P")
        st = vm.plug_stick(img, vendor="ACME", product="Reg", serial="REG-1")  # registered, yet
        st.wait_usb_event()
        vm.wait_for(lambda: b"spool=" in (vm.read("/run/mamori-agent/status") or b"") and
                    b"spool=0" not in vm.read("/run/mamori-agent/status"), timeout=30, what="records spooled")
        time.sleep(2)
        check(sysattr(vm, st.devpath, "authorized") == "0", "storage authorised without policyd")
        check(not raw_mounts(vm), "mounted without policyd")
        st.pull()
        kb.pull()
        vm.wait_for(lambda: b"spool=" in (vm.read("/run/mamori-agent/status") or b""), timeout=10)
        status = vm.read("/run/mamori-agent/status").decode()
        depth = int(status.split("spool=")[1].split()[0])
        check(depth >= 4, "spool depth %d: %r", depth, status)
        r = vm.run([MEDIACTL, "status"])
        m = re.search(r"agent: ready, policyd unreachable, spool (\d+) records", r.stdout)
        check(m and int(m.group(1)) >= 4, "mediactl status: %r", r.stdout)
    finally:
        vm.run(["systemctl", "start", "mamori-policyd.socket"], check=True)
    vm.wait_for(lambda: b"spool=0" in (vm.read("/run/mamori-agent/status") or b""), timeout=30,
                what="the spool delivered")
    recs = [r for r in records(vm, "agent") if r["fields"].get("serial") == "REG-1"]
    # the last four REG-1 records: connect, verdict (unreachable), removal... in the order they happened
    tail = [(r["type"], r["fields"].get("reason", "")) for r in recs[-3:]]
    check(tail == [("agent.connect", ""), ("agent.verdict", "policyd-unreachable"), ("agent.removal", "")],
          "spooled records in order: %r", tail)
    times = [r["time_us"] for r in recs[-3:]]
    check(times == sorted(times), "event times kept: %r", times)


if __name__ == "__main__":
    # The role users and groups the guest's policyd resolves at start: made on the host
    # before boot (the guest's root is the host's), as the integration tests make them.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
    from mamori_test import ensure_users  # noqa: E402
    ensure_users()
    sys.exit(run_scenarios([controllers_closed, keyboard_in_by_local_rule, unregistered_never_in,
                            registered_mounted_read_only, restart_keeps_decision,
                            coldplug_decides_present_devices, write_grant_then_expiry,
                            revocation_and_retirement_act_at_once,
                            registration_end_unmounts, twins_only_registered_in, badusb_composite_refused,
                            optical_rule,
                            hostile_serial_recorded_exactly,
                            policyd_away],
                           install_build=True, enable=["mamori-policyd.socket", "mamori-agent.service"]))
