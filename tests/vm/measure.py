#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Boot-to-ready and plug-to-udev-event times of the bench, median of N boots.

    python3 tests/vm/measure.py [--runs 3]

boot-to-ready: QEMU started -> guest agent up and systemd's boot finished.
plug-to-udev: QMP device_add sent -> the host receives udev's event for the USB
device (and, second figure, for its block device), first and second plug of a boot
(the first one loads usb-storage and sd_mod)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mamori_vm import VM, make_image, median  # noqa: E402


def one_boot(i):
    vm = VM(name="measure-%d" % i)
    try:
        vm.boot()
        img = make_image(os.path.join(vm.workdir, "m.img"), "vfat", 32, label="M")
        row = {"agent": vm.boot_seconds, "ready": vm.ready_seconds}
        for n in ("first", "second"):
            st = vm.plug_stick(img, vendor="ACME", product="Measure", serial="M-%d" % i)
            row[n + "_usb"], _ = st.wait_usb_event()
            row[n + "_block"], _ = st.wait_block()
            st.pull()
            st.wait_usb_event("remove")
        return row
    except Exception:
        vm.save_logs()
        raise
    finally:
        vm.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for i in range(args.runs):
        r = one_boot(i)
        rows.append(r)
        print("run %d: boot-to-ready %.1f s (agent up %.1f s); plug-to-udev usb %.2f s, "
              "block %.2f s; second plug usb %.2f s, block %.2f s" % (
                  i + 1, r["ready"], r["agent"], r["first_usb"], r["first_block"],
                  r["second_usb"], r["second_block"]), flush=True)
    m = {k: median([r[k] for r in rows]) for k in rows[0]}
    print("median of %d: boot-to-ready %.1f s; plug-to-udev-event %.2f s (USB device), "
          "%.2f s (block device); warm plug %.2f s / %.2f s" % (
              len(rows), m["ready"], m["first_usb"], m["first_block"], m["second_usb"],
              m["second_block"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
