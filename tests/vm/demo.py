#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Step-by-step demo of what a user of a mamori terminal sees, in the QEMU bench.

    python3 tests/vm/demo.py [--build-dir DIR]

Boots the guest (Debian's kernel, the host's userland, systemd as PID 1), plugs a
USB stick, shows what the kernel, udev and the block layer made of it and what
happened to it, then pulls it. Until mamori-agent lands nothing blocks the stick;
later issues add their steps (blocked, mounted through the FUSE view, evidence) to
STEPS below."""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mamori_vm  # noqa: E402
from mamori_vm import VM, make_image  # noqa: E402

STICK = {"vendor": "ACME", "product": "Secure Stick", "serial": "MAMORI-DEMO-0001"}
state = {}
step_no = [0]


def say(title):
    step_no[0] += 1
    print("\n\033[1m[%d] %s\033[0m" % (step_no[0], title) if sys.stdout.isatty()
          else "\n[%d] %s" % (step_no[0], title), flush=True)


def note(text):
    for line in text.rstrip("\n").splitlines():
        print("    " + line, flush=True)


def show(vm, argv, filt=None):
    """Run argv in the guest and print it like a terminal would."""
    note("$ " + " ".join(argv))
    r = vm.run(argv)
    out = r.stdout + r.stderr
    if filt:
        out = "\n".join(l for l in out.splitlines() if filt(l))
    note(out or "(no output)")
    return r


def step_boot(vm):
    say("Boot: Debian's kernel under QEMU (TCG), the host's root read-only over 9p "
        "with a tmpfs overlay, systemd as PID 1")
    vm.boot()
    note("ready after %.1f s (systemd says: %s)" % (vm.ready_seconds, vm.system_state))
    show(vm, ["uname", "-sr"])
    show(vm, ["systemctl", "is-active", "systemd-udevd", "systemd-logind"])


def step_before(vm):
    say("Before: the terminal's block devices (no stick yet)")
    show(vm, ["lsblk", "-o", "NAME,SIZE,TYPE,TRAN,VENDOR,MODEL,SERIAL,FSTYPE,LABEL"])


def step_plug(vm):
    say("A user plugs a USB stick: vendor %(vendor)r, product %(product)r, serial %(serial)r "
        "(vfat, holding REPORT.TXT)" % STICK)
    img = make_image(os.path.join(vm.workdir, "demo.img"), "vfat", 64, label="DEMO",
                     files={"REPORT.TXT": "Case 2024-117: statement draft\n"})
    stick = vm.plug_stick(img, port=1, **STICK)
    t_usb, _ = stick.wait_usb_event()
    t_blk, props = stick.wait_block()
    state["stick"], state["dev"] = stick, props["DEVNAME"]
    note("udev saw the USB device %.1f s after the plug, and created %s %.1f s after it"
         % (t_usb, props["DEVNAME"], t_blk))


def step_identify(vm):
    say("What the kernel, udev and the block layer call it")
    dev, stick = state["dev"], state["stick"]
    note("kernel (sysfs %s): serial=%r" % (stick.devpath,
         vm.read("/sys" + stick.devpath + "/serial").decode().strip()))
    show(vm, ["lsblk", "-o", "NAME,SIZE,TYPE,TRAN,VENDOR,MODEL,SERIAL,FSTYPE,LABEL", dev])
    show(vm, ["udevadm", "info", "--query=property", "--name=" + dev],
         filt=lambda l: l.split("=")[0] in ("DEVNAME", "ID_BUS", "ID_VENDOR", "ID_MODEL",
                                            "ID_SERIAL_SHORT", "ID_PATH", "ID_FS_TYPE",
                                            "ID_FS_LABEL", "ID_FS_UUID"))


def step_what_happened(vm):
    say("What happened to it")
    stick, dev = state["stick"], state["dev"]
    auth = vm.read("/sys" + stick.devpath + "/authorized").decode().strip()
    note("USB authorisation: authorized=%s (%s)" % (
        auth, "the kernel let it bind: nothing blocks sticks yet" if auth == "1"
        else "the kernel keeps it unbound"))
    r = vm.run(["findmnt", "-rn", "-S", dev + "1"])
    r2 = vm.run(["findmnt", "-rn", "-S", dev])
    mounted = (r.stdout + r2.stdout).strip()
    note("mounted: " + (mounted or "no (nothing mounts removable media yet)"))
    note("evidence: none recorded yet (mamori-agent and mamori-policyd are not in the "
         "demo yet); the journal's view of the plug:")
    show(vm, ["journalctl", "-b", "--no-pager", "-o", "cat", "-k", "--grep",
              "usb %s|%s" % (os.path.basename(stick.devpath), os.path.basename(dev))])


def step_pull(vm):
    say("The user pulls the stick")
    stick, dev = state["stick"], state["dev"]
    vm.pull(stick)
    t, _ = vm.wait_udev({"ACTION": "remove", "SUBSYSTEM": "block", "DEVNAME": dev},
                        since=stick.event_index, origin=stick.plugged_at)
    note("udev removed %s %.1f s after the pull" % (dev, t))
    show(vm, ["lsblk", "-o", "NAME,SIZE,TYPE,TRAN,VENDOR,MODEL,SERIAL"])


def step_off(vm):
    say("Power off")
    t = time.monotonic()
    vm.poweroff()
    note("the guest shut down cleanly in %.1f s" % (time.monotonic() - t))


STEPS = [step_boot, step_before, step_plug, step_identify, step_what_happened, step_pull,
         step_off]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", help="meson build dir (for logs; default build-vm)")
    args = ap.parse_args()
    if args.build_dir:
        os.environ["MAMORI_BUILD_ROOT"] = mamori_vm.BUILD_ROOT = os.path.abspath(args.build_dir)
    mamori_vm.log = lambda msg: None  # the demo says things its own way
    vm = VM(name="demo")
    try:
        for step in STEPS:
            step(vm)
    except Exception as e:
        print("\ndemo failed: %s" % e, file=sys.stderr)
        vm.save_logs()
        print("logs: %s" % vm.logdir, file=sys.stderr)
        return 1
    finally:
        vm.kill()
    print("\nDone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
