#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Runs in the VM guest for bench/mamori-bench-agent.py: listens to the kernel's uevents
(the same netlink group both mamori-agent and usbguard-daemon read) and appends one line
per USB event to the file given: CLOCK_MONOTONIC ns, action, devtype, devpath."""
import socket
import sys
import time

s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 15)  # NETLINK_KOBJECT_UEVENT
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind((0, 1))
with open(sys.argv[1], "a", buffering=1) as out:
    while True:
        data = s.recv(65536)
        t = time.monotonic_ns()
        f = dict(x.split("=", 1) for x in data.decode(errors="replace").split("\0")[1:] if "=" in x)
        if f.get("SUBSYSTEM") == "usb":
            out.write("%d %s %s %s\n" % (t, f.get("ACTION"), f.get("DEVTYPE"), f.get("DEVPATH")))
