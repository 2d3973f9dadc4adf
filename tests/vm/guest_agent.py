#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest side of the mamori VM bench: a tiny command server on a virtio-serial port.

Started inside the guest by mamori-bench-guest.service (written into the overlay by
mamori_vm.py). It speaks JSON lines with the host and never hands a string to a
shell: every argv element arrives base64-encoded and goes to execve() as bytes.

host -> guest   {"id": n, "op": "run", "argv": [b64...], "input": b64|null,
        "timeout": s|null, "env": {k: v}|null}
        {"id": n, "op": "write", "path": b64, "data": b64, "mode": int}
        {"id": n, "op": "read", "path": b64}
        {"id": n, "op": "ping"}
guest -> host   {"id": n, "rc": int, "stdout": b64, "stderr": b64}
        {"id": n, "ok": bool, "data": b64, "error": str}
        {"event": "hello", "boot_monotonic": s}
        {"event": "udev", "props": {...}}   (one per uevent, as udev finished it)
"""
import base64
import json
import os
import subprocess
import sys
import threading
import time

PORT_NAME = "org.mamori.bench"
out_lock = threading.Lock()
out_fd = -1


def b64(data):
    return base64.b64encode(data).decode("ascii")


def unb64(text):
    return base64.b64decode(text.encode("ascii"))


def send(msg):
    line = (json.dumps(msg, ensure_ascii=True) + "\n").encode("ascii")
    with out_lock:
        view = memoryview(line)
        while view:
            n = os.write(out_fd, view)
            view = view[n:]


def find_port():
    """Return the /dev node of our virtio-serial port, waiting for it to appear."""
    for _ in range(600):
        base = "/sys/class/virtio-ports"
        if os.path.isdir(base):
            for p in os.listdir(base):
                try:
                    with open(os.path.join(base, p, "name")) as f:
                        if f.read().strip() == PORT_NAME:
                            return "/dev/" + p
                except OSError:
                    pass
        time.sleep(0.1)
    sys.exit("guest_agent: virtio port %s never appeared" % PORT_NAME)


def op_run(req):
    argv = [unb64(a) for a in req["argv"]]
    data = unb64(req["input"]) if req.get("input") is not None else None
    env = dict(os.environ)
    for k, v in (req.get("env") or {}).items():
        env[k] = v
    try:
        p = subprocess.run(argv, input=data, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, env=env,
                 stdin=None if data is not None else subprocess.DEVNULL,
                 timeout=req.get("timeout"))
        return {"rc": p.returncode, "stdout": b64(p.stdout), "stderr": b64(p.stderr)}
    except subprocess.TimeoutExpired as e:
        return {"rc": -1, "timed_out": True, "stdout": b64(e.stdout or b""),
            "stderr": b64(e.stderr or b"")}
    except OSError as e:
        return {"rc": 127, "stdout": "", "stderr": b64(str(e).encode())}


def op_write(req):
    path = unb64(req["path"])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
          req.get("mode", 0o644))
    try:
        os.write(fd, unb64(req["data"]))
        os.fchmod(fd, req.get("mode", 0o644))
    finally:
        os.close(fd)
    return {"ok": True}


def op_read(req):
    with open(unb64(req["path"]), "rb") as f:
        return {"ok": True, "data": b64(f.read())}


OPS = {"run": op_run, "write": op_write, "read": op_read, "ping": lambda req: {"ok": True}}


def handle(req):
    try:
        res = OPS[req["op"]](req)
    except Exception as e:  # reported to the host, never fatal here
        res = {"ok": False, "rc": 126, "error": "%s: %s" % (type(e).__name__, e)}
    res["id"] = req["id"]
    send(res)


def udev_monitor():
    """Forward every udev event (after rules ran) to the host as it happens."""
    p = subprocess.Popen(["udevadm", "monitor", "--udev", "--property"],
              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    props = {}
    for raw in p.stdout:
        line = raw.decode("utf-8", "backslashreplace").rstrip("\n")
        if not line:
            if "ACTION" in props:
                send({"event": "udev", "props": props})
            props = {}
            continue
        if "=" in line and not line.startswith("UDEV "):
            k, _, v = line.partition("=")
            props[k] = v


def main():
    global out_fd
    path = find_port()
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    out_fd = fd
    threading.Thread(target=udev_monitor, daemon=True).start()
    time.sleep(0.3)  # let udevadm monitor subscribe before the host starts plugging
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    send({"event": "hello", "boot_monotonic": uptime})
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            time.sleep(0.05)  # host side not connected
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                req = json.loads(line)
                threading.Thread(target=handle, args=(req,), daemon=True).start()


if __name__ == "__main__":
    main()
