#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""USB sticks, discs and keyboards in a real kernel, udev and block layer (issue 3).

One boot, several scenarios: each plugs what it needs and pulls it again."""
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mamori_vm import check, log, make_image, make_iso, run_scenarios  # noqa: E402


def lsblk(vm, dev):
    r = vm.run(["lsblk", "--json", "--nodeps", "-o",
                "NAME,SERIAL,VENDOR,MODEL,FSTYPE,LABEL,RM,TRAN", dev], check=True)
    return json.loads(r.stdout)["blockdevices"][0]


def agree_on_serial(vm, dev, devname, serial, vendor, product):
    """The kernel (sysfs), udev and the block layer all name the same device."""
    sysfs = vm.read("/sys" + dev.devpath + "/serial")
    check(sysfs == serial.encode() + b"\n", "kernel's serial %r != %r", sysfs, serial)
    usb = vm.udev_info("/sys" + dev.devpath)
    blk = vm.udev_info(devname)
    for what, props in (("usb device", usb), ("block device", blk)):
        check(props.get("ID_SERIAL_SHORT") == serial, "udev %s: ID_SERIAL_SHORT %r != %r",
              what, props.get("ID_SERIAL_SHORT"), serial)
    check(blk.get("ID_VENDOR") == vendor and blk.get("ID_MODEL") == product.replace(" ", "_"),
          "udev block vendor/model %r/%r", blk.get("ID_VENDOR"), blk.get("ID_MODEL"))
    check(blk.get("ID_BUS") == "usb", "ID_BUS %r", blk.get("ID_BUS"))
    info = lsblk(vm, devname)
    check(info["serial"] == serial and info["tran"] == "usb" and info["rm"] is True,
          "lsblk says %r", info)
    check(info["vendor"].strip() == vendor and info["model"].strip() == product,
          "lsblk vendor/model %r", info)
    link = "/dev/disk/by-id/usb-%s_%s_%s-0:0" % (vendor, product.replace(" ", "_"), serial)
    r = vm.run(["readlink", "-f", link])
    check(r.stdout.strip() == devname, "%s -> %r, not %s", link, r.stdout, devname)
    # The block device really is under this USB device in the kernel's tree.
    r = vm.run(["readlink", "-f", "/sys/class/block/" + os.path.basename(devname)])
    check(r.stdout.strip().startswith("/sys" + dev.devpath + "/"), "sysfs %r not under %s",
          r.stdout, dev.devpath)


def gone(vm, dev, devname):
    """After a pull: udev said remove, and neither the node nor the USB device is left."""
    vm.wait_udev({"ACTION": "remove", "SUBSYSTEM": "block", "DEVNAME": devname},
                 since=dev.event_index, timeout=60)
    vm.wait_udev(lambda p: p.get("ACTION") == "remove" and p.get("DEVPATH") == dev.devpath,
                 since=dev.event_index, timeout=60)
    vm.wait_for(lambda: not vm.exists(devname) and not vm.exists("/sys" + dev.devpath),
                timeout=30, what="%s and %s to disappear" % (devname, dev.devpath))
    r = vm.run(["lsblk", "--json", "--nodeps", "-o", "NAME,TRAN"], check=True)
    names = [d["name"] for d in json.loads(r.stdout)["blockdevices"]]
    check(os.path.basename(devname) not in names, "lsblk still lists %s: %r", devname, names)


def plug_one_stick_and_pull_it(vm):
    img = make_image(os.path.join(vm.workdir, "one.img"), "vfat", 32, label="ONE")
    serial = "MAMORI-0001-ABCDEF"
    stick = vm.plug_stick(img, vendor="ACME", product="Secure Stick", serial=serial, port=3)
    t_usb, _ = stick.wait_usb_event()
    t_blk, props = stick.wait_block()
    log("plug to udev event of the USB device %.2f s, of its block device %.2f s" % (t_usb, t_blk))
    devname = props["DEVNAME"]
    agree_on_serial(vm, stick, devname, serial, "ACME", "Secure Stick")
    check(stick.devpath.endswith("-3"), "plugged into port 3, kernel says %s", stick.devpath)
    stick.pull()
    gone(vm, stick, devname)


def each_filesystem_is_real(vm):
    """vfat (with an MBR), exfat, ext4 sticks and an iso9660 disc, read by the guest."""
    media = {
        "vfat": make_image(os.path.join(vm.workdir, "v.img"), "vfat", 40, label="VFAT",
                           files={"hello.txt": "from vfat\n"}, table="mbr"),
        "exfat": make_image(os.path.join(vm.workdir, "x.img"), "exfat", 40, label="EXFAT",
                            files={"hello.txt": "from exfat\n"}),
        "ext4": make_image(os.path.join(vm.workdir, "e.img"), "ext4", 40, label="EXT4",
                           files={"hello.txt": "from ext4\n"}),
        "iso9660": make_iso(os.path.join(vm.workdir, "d.iso"), "DISC",
                            files={"hello.txt": "from iso9660\n"}),
    }
    devs = {}
    for i, (fs, img) in enumerate(media.items()):
        if fs == "iso9660":
            devs[fs] = vm.plug_disc(img, vendor="ACME", product="DVD", serial="CD%d" % i)
        else:
            devs[fs] = vm.plug_stick(img, vendor="ACME", product=fs, serial="FS%d" % i)
    for fs, dev in devs.items():
        _, props = dev.wait_block()
        node = props["DEVNAME"]
        if fs == "vfat":
            node = vm.wait_for(lambda: vm.exists(props["DEVNAME"] + "1") and
                               props["DEVNAME"] + "1", what="partition 1 of the vfat stick")
        check(fs != "iso9660" or node.startswith("/dev/sr"), "disc is %s, not /dev/sr*", node)
        r = vm.run(["blkid", "-p", "-o", "value", "-s", "TYPE", node], check=True)
        check(r.stdout.strip() == fs, "blkid says %r on %s, expected %s", r.stdout, node, fs)
        mnt = "/mnt/" + fs
        vm.run(["mkdir", "-p", mnt], check=True)
        vm.run(["mount", "-o", "ro", node, mnt], check=True)
        data = vm.read(mnt + "/hello.txt")
        vm.run(["umount", mnt], check=True)
        check(data == ("from %s\n" % fs).encode(), "%s: hello.txt is %r", fs, data)
        dev.devname = props["DEVNAME"]
    for dev in devs.values():
        dev.pull()
    for dev in devs.values():
        gone(vm, dev, dev.devname)


def two_sticks_and_a_keyboard_at_once(vm):
    a = make_image(os.path.join(vm.workdir, "a.img"), "vfat", 32, label="A")
    b = make_image(os.path.join(vm.workdir, "b.img"), "ext4", 32, label="B")
    s1 = vm.plug_stick(a, vendor="ACME", product="Stick A", serial="SERIAL-A-1")
    s2 = vm.plug_stick(b, vendor="Other", product="Stick B", serial="SERIAL-B-2")
    kbd = vm.plug_keyboard()
    names = {}
    for s, ser, ven, prod in ((s1, "SERIAL-A-1", "ACME", "Stick A"),
                              (s2, "SERIAL-B-2", "Other", "Stick B")):
        s.wait_usb_event()
        _, props = s.wait_block()
        names[s.id] = props["DEVNAME"]
        agree_on_serial(vm, s, props["DEVNAME"], ser, ven, prod)
    check(len(set(names.values())) == 2, "two sticks, block devices %r", names)
    kbd.wait_usb_event()
    _, ev = vm.wait_udev(lambda p: p.get("ACTION") == "add" and p.get("SUBSYSTEM") == "input"
                         and p.get("ID_INPUT_KEYBOARD") == "1" and
                         kbd.id_path_part in p.get("ID_PATH", "") and
                         p.get("DEVNAME", "").startswith("/dev/input/event"),
                         since=kbd.event_index, timeout=60)
    check(vm.read("/sys" + kbd.devpath + "/product") == b"QEMU USB Keyboard\n",
          "keyboard product %r", vm.read("/sys" + kbd.devpath + "/product"))
    # Keys typed on the host reach the guest's input device.
    ev_node = ev["DEVNAME"]
    # evdev hands out whole 24-byte events only: read two (key down, its SYN).
    reader = vm.sh("timeout 20 dd if=%s of=/tmp/kbd.out bs=24 count=2 status=none "
                   ">/tmp/kbd.err 2>&1 &" % ev_node)
    check(reader.rc == 0, "could not start reader %r", reader)
    time.sleep(1)  # let od open the device before the key goes by
    vm.send_keys(["a"])
    data = vm.wait_for(lambda: len(vm.read("/tmp/kbd.out") or b"") >= 48 and
                       vm.read("/tmp/kbd.out"), timeout=25, what="key events on " + ev_node)
    ev_types = {int.from_bytes(data[i + 16:i + 18], "little") for i in (0, 24)}
    check(1 in ev_types or 4 in ev_types, "no EV_KEY/EV_MSC among %r", data.hex())
    for d in (s1, s2, kbd):
        d.pull()
    for s in (s1, s2):
        gone(vm, s, names[s.id])
    kbd.wait_usb_event("remove")
    check(not vm.exists(ev_node), "%s still there after the keyboard was pulled", ev_node)


def channel_carries_bytes_status_and_files(vm):
    """run(), copy_in() and copy_out() pass every byte through and report exit status."""
    blob = bytes(range(256)) * 64
    vm.copy_in(blob, "/root/blob", mode=0o640)
    check(vm.copy_out("/root/blob") == blob, "copy_in/copy_out changed the bytes")
    r = vm.run(["sha256sum", "/root/blob"], check=True)
    check(r.stdout.split()[0] == hashlib.sha256(blob).hexdigest(), "guest hash %r", r.stdout)
    check(vm.run(["stat", "-c", "%a", "/root/blob"]).stdout.strip() == "640", "copy_in mode")
    arg = b"\xff\xfe $(touch /tmp/x) `id` ' \" ; ../\n\x01"
    r = vm.run([b"/usr/bin/printf", b"%s", arg])
    check(r.rc == 0 and r.out == arg, "argv bytes came back as %r", r.out)
    r = vm.run(["cat"], input=blob)
    check(r.out == blob, "stdin did not reach the command intact")
    r = vm.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
    check((r.rc, r.stdout, r.stderr) == (7, "out\n", "err\n"), "status/streams %r", r)
    r = vm.run(["sleep", "30"], timeout=2)
    check(r.timed_out and r.rc != 0, "a command past its timeout was not stopped: %r", r)
    check(vm.run(["/nonexistent/binary"]).rc == 127, "missing binary is not rc 127")
    check(not vm.exists("/tmp/x"), "an argument was run by a shell")


PROBE_UNIT = """\
[Unit]
Description=bench probe: a unit handed to VM(units=...)
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'cat /etc/mamori-bench/hello > /run/mamori-bench-probe'
[Install]
WantedBy=multi-user.target
"""


def build_tree_and_units_are_in_the_guest(vm):
    """VM(install_build=True, units=..., files=...): what later scenarios start from."""
    tree = vm.trees[0]
    n = 0
    for root, _, names in os.walk(tree):
        for name in names:
            host = os.path.join(root, name)
            guest = "/" + os.path.relpath(host, tree)
            if os.path.islink(host):
                continue
            with open(host, "rb") as f:
                want = f.read()
            check(vm.read(guest) == want, "%s in the guest differs from the build's", guest)
            n += 1
    check(n > 0, "meson install put nothing in %s", tree)
    r = vm.run(["stat", "-c", "%a", "/etc/mamori-bench/hello"])
    check(r.stdout.strip() == "600", "files= mode: %r", r.stdout)
    check(vm.run(["systemctl", "is-active", "mamori-bench-probe.service"]).stdout.strip() ==
          "active", "probe unit not active")
    check(vm.read("/run/mamori-bench-probe") == b"hello from the host\n", "probe output %r",
          vm.read("/run/mamori-bench-probe"))
    # The host's own enabled units (usbguard, databases) are not started in the guest.
    r = vm.run(["systemctl", "list-units", "--no-legend", "--plain", "usbguard*", "postgres*"])
    check(r.stdout.strip() == "", "host units leaked into the guest: %r", r.stdout)


if __name__ == "__main__":
    sys.exit(run_scenarios([build_tree_and_units_are_in_the_guest,
                            channel_carries_bytes_status_and_files, plug_one_stick_and_pull_it,
                            two_sticks_and_a_keyboard_at_once, each_filesystem_is_real],
                           install_build=True,
                           units=[("mamori-bench-probe.service", PROBE_UNIT)],
                           files={"/etc/mamori-bench/hello": ("hello from the host\n", 0o600)}))
