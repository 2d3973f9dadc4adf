#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A terminal session driven from a test (runs in the guest, as root): runs argv on a new
pty (login -f USER, or ssh -tt USER@127.0.0.1), appends everything the session prints to
PREFIX.out, and types into it whatever is written to the FIFO PREFIX.in. Each time it
types, it writes the time (CLOCK_REALTIME, µs) to PREFIX.lastin, so the test can measure
the idle lock's delay from the last input. Exits when the session's program exits.

    pty_session.py PREFIX -- argv...
"""
import os
import pty
import select
import sys
import time


def main():
    prefix, argv = sys.argv[1], sys.argv[3:]
    fifo = prefix + ".in"
    os.mkfifo(fifo, 0o600)
    pid, master = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    inp = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    out = os.open(prefix + ".out", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    while True:
        r, _, _ = select.select([master, inp], [], [], 1.0)
        if master in r:
            try:
                data = os.read(master, 4096)
            except OSError:
                data = b""
            if not data:
                break
            os.write(out, data)
        if inp in r:
            data = os.read(inp, 4096)
            if data:
                os.write(master, data)
                t = time.clock_gettime_ns(time.CLOCK_REALTIME) // 1000
                with open(prefix + ".lastin.tmp", "w") as f:
                    f.write("%d\n" % t)
                os.rename(prefix + ".lastin.tmp", prefix + ".lastin")
    os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
