#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Decision latency of mamori-agent against USBGuard, in the same VM, on the same sticks.

Measured: from the kernel's uevent announcing a USB stick ("add", devtype usb_device) to
the kernel's uevent of its first interface, which the kernel emits inside the write of
"1" to the device's authorized attribute: i.e. uevent to "authorised" written to sysfs.
Both timestamps are taken by one guest process on the kernel's netlink group
(bench/agent-uevent-probe.py), so neither daemon measures itself. Only allowed sticks
can be timed this way (a refusal writes nothing the kernel reports). The probe stamps
each event when it reads it; if it is scheduled late, both events get close stamps, so
the minimum can be too low (the same bias for both daemons). Use a release build for
both daemons' sake (USBGuard is Debian's optimised build):

    meson setup build-agent-rel --buildtype=release -Dvm_tests=false && ninja -C build-agent-rel
    MAMORI_BUILD_ROOT=$PWD/build-agent-rel python3 bench/mamori-bench-agent.py --plugs 30

Rule sets: mamori: the stick registered in policyd's ledger, HID and hubs by local rule.
USBGuard: "allow with-interface one-of { 03:*:* 09:*:* }", "allow id 46f4:0001 serial
"BENCH-1" with-interface equals { 08:*:* }", implicit block; InsertedDevicePolicy=apply-policy.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "vm"))
from mamori_vm import VM, make_image  # noqa: E402

BUILD = os.path.abspath(os.environ.get("MAMORI_BUILD_ROOT") or os.path.join(HERE, "..", "build"))
MEDIACTL = os.path.join(BUILD, "mediactl", "mediactl")
USBGUARD_CONF = """RuleFile=/tmp/ug/rules.conf
ImplicitPolicyTarget=block
PresentDevicePolicy=apply-policy
PresentControllerPolicy=keep
InsertedDevicePolicy=apply-policy
AuthorizedDefault=none
RestoreControllerDeviceState=false
DeviceManagerBackend=uevent
IPCAllowedUsers=root
AuditBackend=FileAudit
AuditFilePath=/tmp/ug/audit.log
"""
USBGUARD_RULES = """allow with-interface one-of { 03:*:* 09:*:* }
allow id 46f4:0001 serial "BENCH-1" with-interface equals { 08:*:* }
"""


def probe_events(vm):
    ev = []
    for line in (vm.read("/tmp/probe.log") or b"").decode().splitlines():
        t, action, devtype, devpath = line.split(" ", 3)
        ev.append((int(t), action, devtype, devpath))
    return ev


def one_plug(vm, img, timeout=60):
    """Plugs, waits for the interface (authorised), pulls. Returns seconds or None."""
    start = len(probe_events(vm))
    st = vm.plug_stick(img, vendor="ACME", product="Bench", serial="BENCH-1")
    st.wait_usb_event()
    dp = st.devpath
    deadline = time.monotonic() + timeout
    lat = None
    while time.monotonic() < deadline:
        ev = probe_events(vm)[start:]
        add = [t for t, a, d, p in ev if a == "add" and d == "usb_device" and p == dp]
        itf = [t for t, a, d, p in ev if a == "add" and d == "usb_interface" and p.startswith(dp + "/")]
        if add and itf:
            lat = (itf[0] - add[0]) / 1e9
            break
        time.sleep(0.2)
    st.pull()
    vm.wait_for(lambda: not vm.exists("/sys" + dp), timeout=30, what="stick gone")
    time.sleep(0.5)
    return lat


def series(vm, img, n, what):
    out = []
    for i in range(n):
        lat = one_plug(vm, img)
        if lat is None:
            print("# %s plug %d: not authorised within 60 s" % (what, i + 1), flush=True)
        else:
            out.append(lat)
    return out


def pct(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plugs", type=int, default=20)
    args = ap.parse_args()
    with VM(name="bench-agent", install_build=True, enable=["mamori-policyd.socket", "mamori-agent.service"]) as vm:
        uid = vm.run(["id", "-g", "mamori-t-admin"], check=True).stdout.strip()
        vm.run(["setpriv", "--reuid=mamori-t-admin", "--regid=" + uid, "--init-groups", MEDIACTL, "media",
                "register", "--no", "B-1", "--type", "USB", "--purpose", "bench", "--manager", "mamori-t-manager",
                "--start", "2026-01-01", "--end", "2099-12-31", "--vendor", "46f4", "--product", "0001",
                "--serial", "BENCH-1", "--users", "mamori-t-staff"], check=True)
        vm.copy_in(os.path.join(HERE, "agent-uevent-probe.py"), "/tmp/probe.py", mode=0o755)
        vm.run(["systemd-run", "--unit=bench-probe", "python3", "/tmp/probe.py", "/tmp/probe.log"], check=True)
        time.sleep(2)
        img = make_image(os.path.join(vm.workdir, "b.img"), "vfat", 16, label="B")
        one_plug(vm, img)  # loads usb-storage and sd_mod: not counted
        mamori = series(vm, img, args.plugs, "mamori")
        vm.run(["systemctl", "stop", "mamori-agent.service"], check=True)
        vm.run(["mkdir", "-p", "/tmp/ug"], check=True)
        vm.copy_in(USBGUARD_CONF.encode(), "/tmp/ug/usbguard-daemon.conf", mode=0o600)
        vm.copy_in(USBGUARD_RULES.encode(), "/tmp/ug/rules.conf", mode=0o600)
        vm.run(["systemd-run", "--unit=bench-usbguard", "/usr/sbin/usbguard-daemon", "-P", "-k", "-c",
                "/tmp/ug/usbguard-daemon.conf"], check=True)
        time.sleep(5)
        one_plug(vm, img)
        usbguard = series(vm, img, args.plugs, "usbguard")
        vm.run(["systemctl", "stop", "bench-usbguard"])
        load = vm.read("/proc/loadavg").decode().strip()
    print("uevent -> authorized written (first interface uevent), allowed stick, %d plugs each, TCG guest" % args.plugs)
    print("guest load average at the end: %s; host: %s" % (load, open("/proc/loadavg").read().strip()))
    for name, xs in (("mamori-agent", mamori), ("usbguard", usbguard)):
        if xs:
            print("%-13s n=%-3d median %.1f ms  p99 %.1f ms  min %.1f  max %.1f" % (
                name, len(xs), statistics.median(xs) * 1e3, pct(xs, 99) * 1e3, min(xs) * 1e3, max(xs) * 1e3))
        else:
            print("%-13s no authorised plug measured" % name)
    if mamori and usbguard:
        print("ratio mamori/usbguard: median %.2f, p99 %.2f" % (
            statistics.median(mamori) / statistics.median(usbguard), pct(mamori, 99) / pct(usbguard, 99)))


if __name__ == "__main__":
    main()
