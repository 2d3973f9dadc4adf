#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A stick already plugged when the terminal boots (issue 5): decided by mamori-agent
before any user can log in, never mounted, and its refusal recorded.

One boot, with an unregistered stick attached to the xHCI controller from power-on
(QEMU command line, not hot-plugged), and usbcore.authorized_default=0 on the kernel
command line (docs/design.md: without it, a stick that is still enumerating when the
agent starts can be authorised by the kernel for a moment, before its uevent reaches
the agent)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mamori_vm import check, make_image, run_scenarios  # noqa: E402
from test_agent import raw_mounts, records, wait_record  # noqa: E402

SERIAL = "BOOT-1"


def unit_time(vm, unit, prop):
    r = vm.run(["systemctl", "show", "--timestamp=unix", "-p", prop, "--value", unit], check=True)
    v = r.stdout.strip()
    check(v.startswith("@"), "%s %s: %r", unit, prop, v)
    return float(v[1:])


def boot_stick_decided_before_users(vm):
    """R-REG-1: when user logins are allowed (systemd-user-sessions starts, after the
    agent is ready), the stick present at boot is out: either the agent refused it in
    its coldplug before then, or it was never authorised at all (its controller
    registered after the agent set usbcore's authorized_default=0). It is never
    mounted, and its refusal is recorded."""
    # On a slow boot policyd may not answer the agent's first question in time: then the
    # stick stays blocked ("policyd-unreachable") and is decided when policyd answers.
    wait_record(vm, "agent.verdict", SERIAL, timeout=120, reason="unregistered")
    verdicts = [r for r in records(vm, "agent.verdict") if r["fields"].get("serial") == SERIAL]
    check(all(v["fields"]["verdict"] == "blocked" for v in verdicts), "verdicts %r", verdicts)
    r = vm.run(["sh", "-c", "grep -l '^%s$' /sys/bus/usb/devices/*/serial" % SERIAL])
    paths = r.stdout.split()
    check(len(paths) == 1, "the stick in sysfs: %r", paths)
    port = os.path.basename(os.path.dirname(paths[0]))
    check(vm.read(os.path.join(os.path.dirname(paths[0]), "authorized")) == b"0\n", "the stick is authorised")
    check(not raw_mounts(vm), "something is mounted: %r", raw_mounts(vm))
    check(not [m for m in records(vm, "agent.mount") if m["fields"].get("serial") == SERIAL], "the stick was mounted")
    ready = unit_time(vm, "mamori-agent.service", "ActiveEnterTimestamp")
    users = unit_time(vm, "systemd-user-sessions.service", "InactiveExitTimestamp")
    check(ready <= users, "user sessions started %.3f s before the agent was ready", ready - users)
    kernel = vm.run(["journalctl", "-k", "-b", "--no-pager", "-o", "cat"], check=True).stdout
    never_in = "usb %s: Device is not authorized for usage" % port in kernel
    first = verdicts[0]["time_us"] / 1e6
    print("# agent ready %.3f s before user sessions; stick %s; first refusal %.3f s %s user sessions"
          % (users - ready, "never authorised" if never_in else "authorised by the kernel before the agent ran",
             abs(first - users), "before" if first <= users else "after"), flush=True)
    if never_in:
        for sign in ("USB Mass Storage device detected", "Attached SCSI"):
            check(sign not in kernel, "the stick reached the storage driver: %r in the kernel log", sign)
    else:
        check(first <= users, "the stick, let in by the kernel, was refused %.3f s after user sessions started",
              first - users)

if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
    from mamori_test import ensure_users  # noqa: E402
    ensure_users()
    import tempfile
    img = make_image(os.path.join(tempfile.mkdtemp(prefix="mamori-boot-"), "boot.img"), "vfat", 16,
                     label="BOOT", files={"secret.txt": "x\n"})
    stick = ["-drive", "if=none,id=bootstick,format=raw,file=" + img,
             "-device", "usb-storage,bus=xhci.0,drive=bootstick,serial=" + SERIAL]
    # usbcore.authorized_default=0 on the kernel command line, as docs/design.md advises:
    # without it, a stick whose enumeration races the agent's start can be authorised by
    # the kernel for a moment (one run showed the refusal 0.47 s after user sessions began).
    sys.exit(run_scenarios([boot_stick_decided_before_users], install_build=True,
                           enable=["mamori-policyd.socket", "mamori-agent.service"], qemu_args=stick,
                           kernel_args=["usbcore.authorized_default=0"]))
