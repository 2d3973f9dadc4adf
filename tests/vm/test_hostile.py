#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile device strings travel intact from QMP to the guest and break nothing (issue 3).

What the guest must see is computed here independently of the guest: the kernel shows
QEMU's descriptor bytes (usb_string_as_seen), and udev's ID_* values follow systemd's
documented rules (usb_id drops a serial with bytes outside 0x20..0x7f or a comma;
whitespace runs become one '_', characters outside [0-9A-Za-z#+-.:=@_] become '_';
*_ENC values hex-escape them)."""
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mamori_vm import (check, make_image, run_scenarios,  # noqa: E402
                       usb_string_as_seen)

PWNED = "/tmp/mamori-pwned"
ALLOWED = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ#+-.:=@_")
WS = " \t\n\v\f\r"


def _pad126(s):
    b = s.encode()
    assert len(b) <= 126
    return s + "X" * (126 - len(b))


SERIALS = {
    "126 characters of shell and path syntax": _pad126(
        "A \"dq\" 'sq' $(touch %s) `touch %s-bt` ../../etc/passwd ;|&<>*?\\ %%s%%n {} ~ #"
        % (PWNED, PWNED)),
    "spaces": "  lead and  trailing   spaces ",
    "command substitution": "$(touch %s-2)" % PWNED,
    "dot-dot path": "../../../../tmp/mamori-escape",
    "non-ASCII": "Ünïcödé-日本語-é-ÿ",
    "comma": "serial,with,commas",
}


def udev_replace(s):
    """systemd's udev_replace_whitespace() then udev_replace_chars(s, NULL)."""
    s = s.strip(WS)
    s = re.sub("[%s]+" % re.escape(WS), "_", s)
    out, i = [], 0
    while i < len(s):
        if s[i] in ALLOWED:
            out.append(s[i])
        elif s.startswith("\\x", i):
            out.append("\\x")
            i += 1
        else:
            out.append("_")
        i += 1
    return "".join(out)


def udev_serial_short(seen):
    """ID_SERIAL_SHORT usb_id makes from the kernel's serial, or None if it drops it."""
    if any(c < 0x20 or c > 0x7f or c == ord(",") for c in seen.encode()):
        return None
    return udev_replace(seen)


def udev_enc(raw):
    """udev's encode_devnode_name() for ASCII input (ID_VENDOR_ENC, ID_MODEL_ENC)."""
    return "".join(c if c in ALLOWED else "\\x%02x" % ord(c) for c in raw)


def nothing_ran(vm):
    r = vm.sh("ls -d %s* 2>/dev/null; ls -d /tmp/mamori-escape* 2>/dev/null; true" % PWNED)
    check(r.stdout == "", "a device string was executed or used as a path in the guest: %r",
          r.stdout)
    host = [p for p in os.listdir("/tmp") if p.startswith(("mamori-pwned", "mamori-escape"))]
    check(not host, "a device string was executed on the host: %r", host)


def hostile_serials_reach_the_guest_intact(vm):
    img = make_image(os.path.join(vm.workdir, "h.img"), "vfat", 16, label="H")
    sticks = []
    for i, (what, serial) in enumerate(SERIALS.items()):
        copy = os.path.join(vm.workdir, "h%d.img" % i)
        with open(img, "rb") as a, open(copy, "wb") as b:
            b.write(a.read())
        sticks.append((what, serial, vm.plug_stick(copy, vendor="ACME", product="Hostile",
                                                   serial=serial)))
    claims = {}
    for what, serial, st in sticks:
        _, blk = st.wait_block()
        seen = usb_string_as_seen(serial)
        check(seen.encode("latin-1").decode() == serial, "mapping is not one-to-one")
        kernel = vm.read("/sys" + st.devpath + "/serial")
        check(kernel == seen.encode() + b"\n", "%s: kernel has %r, sent %r", what, kernel, serial)
        want = udev_serial_short(seen)
        for where, props in (("usb", vm.udev_info("/sys" + st.devpath)),
                             ("block", vm.udev_info(blk["DEVNAME"]))):
            check(props.get("ID_SERIAL_SHORT") == want, "%s: udev %s ID_SERIAL_SHORT %r, "
                  "expected %r", what, where, props.get("ID_SERIAL_SHORT"), want)
        check(blk.get("ID_SERIAL") == "ACME_Hostile" + ("_" + want if want else "") + "-0:0",
              "%s: ID_SERIAL %r", what, blk.get("ID_SERIAL"))
        r = vm.run(["lsblk", "--json", "--nodeps", "-o", "NAME,SERIAL", blk["DEVNAME"]],
                   check=True)
        lserial = json.loads(r.stdout)["blockdevices"][0]["serial"]
        # lsblk falls back to udev's ID_SERIAL when ID_SERIAL_SHORT is missing.
        lwant = want if want else blk.get("ID_SERIAL")
        check(lserial == lwant, "%s: lsblk serial %r, expected %r", what, lserial, lwant)
        links = [ln for ln in blk["DEVLINKS"].split() if ln.startswith("/dev/disk/by-id/usb-")]
        check(len(links) == 1, "%s: by-id links %r", what, links)
        claims.setdefault(links[0], set()).add(blk["DEVNAME"])
        st.devname = blk["DEVNAME"]
    # Sticks whose serial udev dropped share one by-id name (last one wins): something
    # for the agent to know, never to rely on. Every other name is the stick's own.
    for link, devs in claims.items():
        r = vm.run(["readlink", "-f", link])
        check(r.stdout.strip() in devs, "%s -> %r, claimed by %r", link, r.stdout, devs)
    shared = [devs for devs in claims.values() if len(devs) > 1]
    check(len(shared) == 1 and len(shared[0]) == 2, "expected exactly the non-ASCII and the "
          "comma serial to share a by-id name: %r", claims)
    nothing_ran(vm)
    for _, _, st in sticks:
        st.pull()
    for what, _, st in sticks:
        vm.wait_udev({"ACTION": "remove", "SUBSYSTEM": "block", "DEVNAME": st.devname},
                     since=st.event_index)
    check(vm.run(["lsblk", "--json"]).rc == 0, "lsblk broke after the hostile sticks")


def hostile_vendor_and_product(vm):
    vendor, product = "$(id)'\"", "../ ;\"`x` y$(a)"
    img = make_image(os.path.join(vm.workdir, "vp.img"), "ext4", 16, label="VP")
    st = vm.plug_stick(img, vendor=vendor, product=product, serial="VP-1")
    _, blk = st.wait_block()
    scsi = "/sys/class/block/%s/device/" % os.path.basename(blk["DEVNAME"])
    raw_v = vendor.ljust(8)
    raw_p = product.ljust(16)
    check(vm.read(scsi + "vendor") == raw_v.encode() + b"\n", "kernel vendor %r",
          vm.read(scsi + "vendor"))
    check(vm.read(scsi + "model") == raw_p.encode() + b"\n", "kernel model %r",
          vm.read(scsi + "model"))
    props = vm.udev_info(blk["DEVNAME"])
    check(props.get("ID_VENDOR") == udev_replace(raw_v), "ID_VENDOR %r", props.get("ID_VENDOR"))
    check(props.get("ID_MODEL") == udev_replace(raw_p), "ID_MODEL %r", props.get("ID_MODEL"))
    check(props.get("ID_VENDOR_ENC") == udev_enc(raw_v), "ID_VENDOR_ENC %r",
          props.get("ID_VENDOR_ENC"))
    check(props.get("ID_MODEL_ENC") == udev_enc(raw_p), "ID_MODEL_ENC %r",
          props.get("ID_MODEL_ENC"))
    decoded = re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)),
                     props["ID_MODEL_ENC"])
    check(decoded == raw_p, "ID_MODEL_ENC does not decode to the model: %r", decoded)
    nothing_ran(vm)
    st.pull()
    vm.wait_udev({"ACTION": "remove", "SUBSYSTEM": "block", "DEVNAME": blk["DEVNAME"]},
                 since=st.event_index)


def the_bench_still_works(vm):
    """After all that: limits are enforced before QEMU, logs save, a plain stick works."""
    try:
        vm.plug_stick(os.path.join(vm.workdir, "h.img"), serial="Z" * 127)
        raise AssertionError("a 127-byte serial was accepted (QEMU's descriptor holds 126)")
    except ValueError:
        pass
    with tempfile.TemporaryDirectory() as d:
        vm.save_logs(d)
        with open(os.path.join(d, "udev-events.json")) as f:
            events = json.load(f)
        check(any(SERIALS["non-ASCII"] in json.dumps(e, ensure_ascii=False) or
                  usb_string_as_seen(SERIALS["non-ASCII"]) in json.dumps(e, ensure_ascii=False)
                  or "ACME_Hostile-0:0" in json.dumps(e) for e in events),
              "the saved udev events lost the hostile sticks")
    st = vm.plug_stick(os.path.join(vm.workdir, "h.img"), serial="PLAIN-1")
    _, blk = st.wait_block()
    check(vm.udev_info(blk["DEVNAME"]).get("ID_SERIAL_SHORT") == "PLAIN-1", "plain stick")
    st.pull()


if __name__ == "__main__":
    sys.exit(run_scenarios([hostile_serials_reach_the_guest_intact, hostile_vendor_and_product,
                            the_bench_still_works]))
