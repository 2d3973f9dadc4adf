# SPDX-License-Identifier: GPL-2.0-or-later
"""mamori's whole-system test bench: Debian's kernel and the host's own userland in QEMU.

The guest boots Debian's kernel (linux-image-amd64) under TCG with an initramfs made
here from busybox-static and a few of the host's modules. /init mounts the host's
root read-only over 9p under a tmpfs overlay and starts systemd as PID 1, so udev,
logind and the kernel's USB stack are the real ones and the build tree is visible in
the guest at the same path as on the host. Nothing is installed into an image.

Test scripts drive the guest from the host: USB sticks, optical discs and keyboards
are plugged and pulled through QMP on a qemu-xhci controller, and commands run in
the guest through a virtio-serial channel served by guest_agent.py. See README.md.
Python 3 standard library only.
"""
import atexit
import base64
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm_images import (BUILD_ROOT, HERE, SOURCE_ROOT, BenchError, build_initramfs,  # noqa: E402,F401
                       find_kernel, make_image, make_iso, meson_install, need,
                       usb_string_as_seen)

PORT_NAME = "org.mamori.bench"
USB_PORTS = 8           # xHCI ports "1".."8", each both a USB 2 and a USB 3 port
GUEST_PYTHON = "/usr/bin/python3"


def log(msg):
    """Progress line for the test log (TAP comment, so harnesses ignore it)."""
    print("# " + msg.replace("\n", "\n# "), flush=True)


# ----------------------------------------------------------------------------------
# QMP and the guest channel

class QMP:
    """Minimal synchronous QMP client; events are kept in self.events."""

    def __init__(self, path, timeout=30):
        self.sock = _connect(path, timeout)
        self.file = self.sock.makefile("rwb", buffering=0)
        self.events = []
        self.lock = threading.Lock()
        self.next_id = 0
        greeting = self._read()
        if "QMP" not in greeting:
            raise BenchError("bad QMP greeting: %r" % greeting)
        self.cmd("qmp_capabilities")

    def _read(self, timeout=None):
        self.sock.settimeout(timeout)
        line = self.file.readline()
        if not line:
            raise BenchError("QMP connection closed (QEMU exited?)")
        return json.loads(line)

    def cmd(self, name, **args):
        """Execute a QMP command; return its "return" or raise BenchError."""
        with self.lock:
            self.next_id += 1
            msg = {"execute": name, "id": self.next_id}
            if args:
                msg["arguments"] = args
            self.file.write(json.dumps(msg).encode() + b"\n")
            while True:
                r = self._read(60)
                if "event" in r:
                    self.events.append(r)
                elif r.get("id") == self.next_id:
                    if "error" in r:
                        raise BenchError("QMP %s: %s" % (name, r["error"].get("desc")))
                    return r.get("return")

    def wait_event(self, name, match=None, timeout=30):
        """Wait for (and consume) an event named name whose data includes match."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for i, e in enumerate(self.events):
                    d = e.get("data", {})
                    if e["event"] == name and all(d.get(k) == v for k, v in (match or {}).items()):
                        return self.events.pop(i)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError("timed out waiting for QMP event %s %s" % (name, match))
                try:
                    self.events.append(self._read(left))
                except socket.timeout:
                    pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _connect(path, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise BenchError("cannot connect to %s" % path)
            time.sleep(0.05)


class Result:
    """Outcome of VM.run(): rc, stdout/stderr as text (UTF-8, undecodable bytes as
    surrogate escapes) and the raw bytes in out/err."""

    def __init__(self, argv, rc, out, err, timed_out=False):
        self.argv, self.rc, self.out, self.err, self.timed_out = argv, rc, out, err, timed_out
        self.stdout = out.decode("utf-8", "surrogateescape")
        self.stderr = err.decode("utf-8", "surrogateescape")

    def __iter__(self):
        return iter((self.rc, self.stdout, self.stderr))

    def __repr__(self):
        return "Result(rc=%r, stdout=%r, stderr=%r)" % (self.rc, self.stdout[-2000:],
                                                         self.stderr[-2000:])


class Channel:
    """Host end of the virtio-serial command channel to guest_agent.py."""

    def __init__(self, path):
        self.sock = _connect(path, 30)
        self.wlock = threading.Lock()
        self.cond = threading.Condition()
        self.pending = {}
        self.next_id = 0
        self.hello = None
        self.udev_events = []   # (host monotonic time, props)
        self.closed = False
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def _reader(self):
        f = self.sock.makefile("rb")
        for line in f:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            now = time.monotonic()
            with self.cond:
                if msg.get("event") == "udev":
                    self.udev_events.append((now, msg["props"]))
                elif msg.get("event") == "hello":
                    self.hello = (now, msg)
                elif "id" in msg:
                    self.pending[msg["id"]] = msg
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait(self, pred, timeout):
        """Wait on the channel's condition until pred() is true; False on timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return pred()
                self.cond.wait(min(left, 0.5))  # also re-check pred (QEMU may have died)
            return True

    def request(self, msg, timeout):
        with self.cond:
            self.next_id += 1
            rid = msg["id"] = self.next_id
        data = (json.dumps(msg) + "\n").encode()
        with self.wlock:
            self.sock.sendall(data)
        if not self.wait(lambda: rid in self.pending, timeout):
            raise BenchError("guest did not answer %s within %ss%s" % (
                msg["op"], timeout, " (channel closed)" if self.closed else ""))
        with self.cond:
            return self.pending.pop(rid)


def _b64(data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return base64.b64encode(data).decode("ascii")


# ----------------------------------------------------------------------------------
# Devices and the VM

class Device:
    """A USB device plugged by the bench."""

    def __init__(self, vm, kind, qid, port, **info):
        self.vm, self.kind, self.id, self.port = vm, kind, qid, port
        self.serial = info.get("serial")
        self.vendor = info.get("vendor")
        self.product = info.get("product")
        self.image = info.get("image")
        self.node = info.get("node")
        self.plugged_at = None
        self.event_index = 0
        self.devpath = None

    @property
    def id_path_part(self):
        """The part of udev's ID_PATH that names this device's port ("-usb-0:3:")."""
        return "-usb-0:%s:" % self.port

    def wait_usb_event(self, action="add", timeout=60):
        """Wait for udev's event for the USB device itself; return (seconds since the
        plug or pull, props). Sets self.devpath (e.g. /devices/.../usb2/2-3): QEMU
        attaches a device that can do SuperSpeed to the USB 3 root hub, others to the
        USB 2 one, so the bus number is not known before."""
        pat = re.compile(r"/usb\d+/\d+-%s$" % re.escape(self.port))
        t, p = self.vm.wait_udev(lambda p: p.get("ACTION") == action and
                                 p.get("SUBSYSTEM") == "usb" and
                                 p.get("DEVTYPE") == "usb_device" and
                                 pat.search(p.get("DEVPATH", "")),
                                 since=self.event_index, timeout=timeout, origin=self.plugged_at)
        self.devpath = p["DEVPATH"]
        return t, p

    def wait_block(self, timeout=60):
        """Wait for udev's add event of this stick's whole-disk block device; return
        (seconds since plug, props). props["DEVNAME"] is e.g. /dev/sda."""
        t, p = self.vm.wait_udev(lambda p: p.get("ACTION") == "add" and
                                 p.get("SUBSYSTEM") == "block" and
                                 p.get("DEVTYPE") == "disk" and
                                 self.id_path_part in p.get("ID_PATH", ""),
                                 since=self.event_index, timeout=timeout, origin=self.plugged_at)
        m = re.match(r"(.*/usb\d+/\d+-%s)/" % re.escape(self.port), p["DEVPATH"])
        if m:
            self.devpath = m.group(1)
        return t, p

    def pull(self, timeout=30):
        self.vm.pull(self, timeout)


# no_timer_check: on a busy host TCG can miss the kernel's IO-APIC timer check, which
# then panics ("IO-APIC + timer doesn't work!"); seen here under load.
DEFAULT_CMDLINE = [
    "console=ttyS0,115200", "panic=-1", "mitigations=off", "random.trust_cpu=on",
    "no_timer_check",
    "systemd.firstboot=off", "systemd.show_status=auto", "loglevel=5",
    "systemd.unit=multi-user.target",
]


class VM:
    """One guest. See README.md for the API; typical use:

        with VM(name="t") as vm:          # boots, waits until systemd is up
            stick = vm.plug_stick(img, vendor="ACME", serial="S1")
            vm.wait_for(lambda: vm.run(["test", "-b", "/dev/sda"]).rc == 0)
            vm.pull(stick)
    """

    def __init__(self, name="vm", memory=2048, smp=2, files=None, units=None, enable=None,
                 trees=None, mask=None, kernel_args=(), logdir=None, install_build=False,
                 qemu_args=()):
        self.name = name
        self.memory, self.smp = memory, smp
        self.files = dict(files or {})
        self.units = list(units or [])
        self.enable = list(enable or [])
        self.trees = list(trees or [])
        self.mask = list(mask or [])
        self.kernel_args = list(kernel_args)
        self.logdir = logdir or os.path.join(os.environ.get("MAMORI_BUILD_ROOT") or BUILD_ROOT,
                                             "tests", "vm", "logs", name)
        self.workdir = tempfile.mkdtemp(prefix="mamori-vm-%s-" % re.sub(r"\W", "", name)[:20])
        self.install_build = install_build
        self.qemu_args = list(qemu_args)
        self.proc = None
        self.qmp = None
        self.chan = None
        self.devices = {}
        self.counter = 0
        self.boot_seconds = None     # QEMU start -> guest agent's hello
        self.ready_seconds = None    # QEMU start -> systemd reports the boot finished
        self.system_state = None

    # -- boot ---------------------------------------------------------------------

    def _write_config(self):
        """The per-boot tree that init.sh copies over the guest's / before systemd."""
        cfg = os.path.join(self.workdir, "cfg")
        root = os.path.join(cfg, "root")
        sysd = os.path.join(root, "etc", "systemd", "system")
        os.makedirs(sysd)
        files = {
            "/etc/hostname": "mamori-vm\n",
            "/etc/machine-id": uuid.uuid4().hex + "\n",
            "/etc/systemd/system/mamori-bench-guest.service": GUEST_UNIT.format(
                python=GUEST_PYTHON, agent=os.path.join(HERE, "guest_agent.py")),
        }
        files.update(self.files)
        for path, data in files.items():
            dst = os.path.join(root, path.lstrip("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            mode = 0o644
            if isinstance(data, tuple):
                data, mode = data
            with open(dst, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            os.chmod(dst, mode)
        enable = ["mamori-bench-guest.service"] + self.enable
        for unit in self.units:
            if isinstance(unit, tuple):
                name, text = unit
                with open(os.path.join(sysd, name), "w") as f:
                    f.write(text)
            else:
                name = os.path.basename(unit)
                shutil.copy(unit, os.path.join(sysd, name))
            enable.append(name)
        if self.install_build:
            self.trees.insert(0, meson_install(destdir=os.path.join(self.workdir, "install")))
        for unit in enable:
            src = os.path.join(sysd, unit)
            for target in _wanted_by(src) or ["multi-user.target"]:
                wants = os.path.join(sysd, target + ".wants")
                os.makedirs(wants, exist_ok=True)
                link = os.path.join(wants, unit)
                if not os.path.lexists(link):
                    os.symlink(("../" + unit) if os.path.exists(src)
                               else "/lib/systemd/system/" + unit, link)
        for unit in self.mask:
            os.symlink("/dev/null", os.path.join(sysd, unit))
        with open(os.path.join(cfg, "trees"), "w") as f:
            for t in self.trees:
                f.write(os.path.abspath(t) + "\n")
        # The guest gets a fresh /tmp; a source or build tree that lives under the host's
        # /tmp (a CI clone, say) is bound back in at the same path, read-only.
        with open(os.path.join(cfg, "binds"), "w") as f:
            for d in sorted({os.path.realpath(SOURCE_ROOT), os.path.realpath(BUILD_ROOT)}):
                if d == "/tmp" or d.startswith("/tmp/"):
                    f.write(d + "\n")
        return cfg

    def _qemu_argv(self, kernel, initrd, cfg):
        w = self.workdir
        return [
            need("qemu-system-x86_64"), "-nodefaults", "-no-user-config", "-display", "none",
            "-accel", "tcg,thread=multi", "-machine", "pc", "-cpu", "max",
            "-smp", str(self.smp), "-m", str(self.memory), "-no-reboot",
            "-kernel", kernel, "-initrd", initrd,
            "-append", " ".join(DEFAULT_CMDLINE + self.kernel_args),
            "-chardev", "file,id=con,path=%s" % os.path.join(w, "console.log"),
            "-serial", "chardev:con",
            "-qmp", "unix:%s,server=on,wait=off" % os.path.join(w, "qmp.sock"),
            "-virtfs", "local,path=/,mount_tag=mamoriroot,security_model=none,readonly=on,"
                       "multidevs=remap",
            "-virtfs", "local,path=%s,mount_tag=mamoricfg,security_model=none,readonly=on"
                       % cfg,
            "-device", "virtio-serial-pci,id=vser",
            "-chardev", "socket,id=bench,path=%s,server=on,wait=off"
                        % os.path.join(w, "bench.sock"),
            "-device", "virtserialport,chardev=bench,name=" + PORT_NAME,
            "-device", "virtio-rng-pci",
            "-device", "qemu-xhci,id=xhci,p2=%d,p3=%d" % (USB_PORTS, USB_PORTS),
        ] + self.qemu_args

    def boot(self, timeout=600):
        """Start QEMU and return once the guest agent answers and systemd's boot is
        finished (is-system-running: running or degraded). Raises BenchError."""
        kernel, kver = find_kernel()
        initrd = os.path.join(self.workdir, "initramfs.cpio")
        build_initramfs(initrd, kver)
        cfg = self._write_config()
        argv = self._qemu_argv(kernel, initrd, cfg)
        t0 = time.monotonic()
        self.qemu_log = open(os.path.join(self.workdir, "qemu.log"), "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.qemu_log,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        _live_vms.add(self)
        self.t0 = t0
        try:
            self.qmp = QMP(os.path.join(self.workdir, "qmp.sock"))
            self.chan = Channel(os.path.join(self.workdir, "bench.sock"))
        except BenchError as e:
            raise BenchError("%s; QEMU said: %s" % (e, self.qemu_output()))
        left = lambda: max(1, timeout - (time.monotonic() - t0))
        if not self.chan.wait(lambda: self.chan.hello is not None or self.proc.poll() is not None,
                              left()) or self.chan.hello is None:
            raise BenchError("guest agent never said hello (kernel %s); see console.log:\n%s"
                             % (kver, self.console_tail()))
        self.boot_seconds = self.chan.hello[0] - t0
        # The guest's uptime at hello dates the kernel's start on the host's clock.
        self.kernel_start_seconds = self.boot_seconds - self.chan.hello[1]["boot_monotonic"]
        r = self.run(["systemctl", "is-system-running", "--wait"], timeout=left())
        self.system_state = r.stdout.strip()
        if self.system_state not in ("running", "degraded"):
            raise BenchError("systemd did not finish booting: %r" % r)
        self.ready_seconds = time.monotonic() - t0
        log("%s: kernel %s started %.1f s after QEMU, agent up after %.1f s, "
            "boot-to-ready %.1f s (systemd: %s)" % (self.name, kver, self.kernel_start_seconds,
                                                    self.boot_seconds, self.ready_seconds,
                                                    self.system_state))
        return self

    def __enter__(self):
        try:
            return self.boot()
        except BaseException:
            self.save_logs()
            self.kill()
            raise

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or os.environ.get("MAMORI_VM_KEEP_LOGS"):
            self.save_logs()
        self.kill()
        return False

    # -- commands -----------------------------------------------------------------

    def run(self, argv, input=None, timeout=120, env=None, check=False):
        """Run argv (a list; elements str or bytes, passed to execve as they are) in the
        guest as root; a str is run by /bin/sh -c (only for trusted text). Returns a
        Result (rc, stdout, stderr; iterable as a tuple). check=True raises on rc != 0."""
        if isinstance(argv, (str, bytes)):
            argv = ["/bin/sh", "-c", argv]
        msg = {"op": "run", "argv": [_b64(a) for a in argv], "timeout": timeout,
               "input": None if input is None else _b64(input), "env": env}
        r = self.chan.request(msg, timeout + 30)
        if "error" in r:
            raise BenchError("guest agent: %s" % r["error"])
        res = Result(argv, r["rc"], base64.b64decode(r["stdout"]), base64.b64decode(r["stderr"]),
                     r.get("timed_out", False))
        if check and res.rc != 0:
            raise BenchError("guest command failed: %r -> %r" % (argv, res))
        return res

    def sh(self, script, **kw):
        """run(["/bin/sh", "-c", script]): for fixed, trusted shell text only."""
        return self.run(["/bin/sh", "-c", script], **kw)

    def wait_for(self, fn, timeout=30, interval=0.2, what=None):
        """Call fn() until it returns a true value; return that value. Raises BenchError
        naming what (or fn) after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if v:
                return v
            if time.monotonic() > deadline:
                raise BenchError("timed out after %ss waiting for %s" % (
                    timeout, what or getattr(fn, "__name__", "condition")))
            time.sleep(interval)

    def copy_in(self, src, dest, mode=0o644):
        """Copy a host file (path) or bytes/str into the guest at dest."""
        if isinstance(src, str) and os.path.exists(src):
            with open(src, "rb") as f:
                src = f.read()
        r = self.chan.request({"op": "write", "path": _b64(dest), "data": _b64(src),
                               "mode": mode}, 120)
        if not r.get("ok"):
            raise BenchError("copy_in %s: %s" % (dest, r.get("error")))

    def copy_out(self, src, dest=None):
        """Return the bytes of guest file src; also write them to host path dest if given."""
        r = self.chan.request({"op": "read", "path": _b64(src)}, 120)
        if not r.get("ok"):
            raise BenchError("copy_out %s: %s" % (src, r.get("error")))
        data = base64.b64decode(r["data"])
        if dest:
            with open(dest, "wb") as f:
                f.write(data)
        return data

    def udev_info(self, name):
        """udev's properties of a device (a /dev node or a /sys path) as a dict;
        empty if udev does not know it."""
        opt = "--path=" if name.startswith("/sys") or name.startswith("/devices") else "--name="
        r = self.run(["udevadm", "info", "--query=property", opt + name], timeout=60)
        if r.rc != 0:
            return {}
        return dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)

    def read(self, path):
        """Bytes of a guest file (e.g. a sysfs attribute), or None if it cannot be read."""
        r = self.chan.request({"op": "read", "path": _b64(path)}, 60)
        return base64.b64decode(r["data"]) if r.get("ok") else None

    def exists(self, path):
        return self.run(["test", "-e", path]).rc == 0

    # -- udev events --------------------------------------------------------------

    @property
    def udev_events(self):
        """All udev events seen so far, as (host monotonic time, properties dict)."""
        with self.chan.cond:
            return list(self.chan.udev_events)

    def wait_udev(self, match, since=0, timeout=60, origin=None):
        """Wait for a udev event (index >= since) for which match(props) is true, or whose
        properties include every item of dict match. Returns (seconds since origin, or
        the host time if origin is None, props)."""
        pred = match if callable(match) else (
            lambda p: all(p.get(k) == v for k, v in match.items()))
        found = []

        def scan():
            for t, p in self.chan.udev_events[since:]:
                if pred(p):
                    found.append((t, p))
                    return True
            return False
        if not self.chan.wait(scan, timeout):
            raise BenchError("no matching udev event within %ss" % timeout)
        t, p = found[0]
        return (t - origin if origin is not None else t), p

    # -- USB devices --------------------------------------------------------------

    def _port(self, port):
        used = {d.port for d in self.devices.values()}
        if port is None:
            free = [str(p) for p in range(1, USB_PORTS + 1) if str(p) not in used]
            if not free:
                raise BenchError("all %d USB ports are in use" % USB_PORTS)
            return free[0]
        port = str(port)
        if port in used:
            raise BenchError("USB port %s is in use" % port)
        return port

    def _new_id(self, kind):
        self.counter += 1
        return "%s%d" % (kind, self.counter)

    def plug_stick(self, image, vendor=None, product=None, serial=None, port=None,
                   readonly=False, cdrom=False):
        """Hot-plug a USB mass-storage device backed by image into the xHCI controller.
        vendor (<= 8 chars) and product (<= 16) are the SCSI INQUIRY strings, which is
        where Linux and udev take a stick's ID_VENDOR/ID_MODEL from; serial is the USB
        iSerialNumber (<= 126 bytes of UTF-8, QEMU's limit). cdrom=True makes it an
        optical drive with the image as its disc. Returns a Device."""
        if vendor is not None and len(vendor.encode()) > 8:
            raise ValueError("SCSI vendor is at most 8 bytes")
        if product is not None and len(product.encode()) > 16:
            raise ValueError("SCSI product is at most 16 bytes")
        if serial is not None and len(serial.encode()) > 126:
            raise ValueError("QEMU's USB strings hold at most 126 bytes")
        qid = self._new_id("cd" if cdrom else "stick")
        port = self._port(port)
        node = "n" + qid
        dev = Device(self, "cdrom" if cdrom else "stick", qid, port, serial=serial, vendor=vendor,
                     product=product, image=os.path.abspath(image), node=node)
        self.qmp.cmd("blockdev-add", **{"driver": "raw", "node-name": node,
                                        "read-only": bool(readonly or cdrom),
                                        "file": {"driver": "file", "filename": dev.image}})
        dev.event_index = len(self.chan.udev_events)
        dev.plugged_at = time.monotonic()
        bot = {"driver": "usb-bot", "id": qid, "bus": "xhci.0", "port": port}
        if serial is not None:
            bot["serial"] = serial
        try:
            self.qmp.cmd("device_add", **bot)
            lun = {"driver": "scsi-cd" if cdrom else "scsi-hd", "id": qid + "-lun0",
                   "bus": qid + ".0", "drive": node, "removable": True}
            if cdrom:
                del lun["removable"]
            if vendor is not None:
                lun["vendor"] = vendor
            if product is not None:
                lun["product"] = product
            self.qmp.cmd("device_add", **lun)
            self.qmp.cmd("qom-set", path="/machine/peripheral/" + qid, property="attached",
                         value=True)
        except BenchError:
            try:
                self.qmp.cmd("device_del", id=qid)
                self.qmp.wait_event("DEVICE_DELETED", {"device": qid})
            except BenchError:
                pass
            self.qmp.cmd("blockdev-del", **{"node-name": node})
            raise
        self.devices[qid] = dev
        return dev

    def plug_disc(self, iso, **kw):
        """plug_stick(iso, cdrom=True): a USB optical drive with the disc inserted."""
        return self.plug_stick(iso, cdrom=True, **kw)

    def plug_keyboard(self, port=None):
        """Hot-plug a USB HID keyboard (QEMU usb-kbd). Returns a Device."""
        qid = self._new_id("kbd")
        port = self._port(port)
        dev = Device(self, "keyboard", qid, port)
        dev.event_index = len(self.chan.udev_events)
        dev.plugged_at = time.monotonic()
        self.qmp.cmd("device_add", driver="usb-kbd", id=qid, bus="xhci.0", port=port)
        self.devices[qid] = dev
        return dev

    def send_keys(self, keys):
        """Press and release QEMU key names together (e.g. ["shift", "a"]). QEMU sends
        them to the most recently plugged keyboard."""
        self.qmp.cmd("send-key", keys=[{"type": "qcode", "data": k} for k in keys])

    def pull(self, dev, timeout=30):
        """Unplug a device (Device or its id) as a user pulling it out would."""
        dev = self.devices.get(dev) if isinstance(dev, str) else dev
        dev.event_index = len(self.chan.udev_events)
        dev.plugged_at = time.monotonic()
        self.qmp.cmd("device_del", id=dev.id)
        self.qmp.wait_event("DEVICE_DELETED", {"device": dev.id}, timeout)
        if dev.node:
            self.qmp.cmd("blockdev-del", **{"node-name": dev.node})
        del self.devices[dev.id]

    # -- logs and power -----------------------------------------------------------

    def qemu_output(self):
        try:
            with open(os.path.join(self.workdir, "qemu.log"), "rb") as f:
                return f.read().decode("utf-8", "replace").strip() or "(nothing)"
        except OSError:
            return "(no output)"

    def console_tail(self, n=40):
        try:
            with open(os.path.join(self.workdir, "console.log"), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no console log)"

    def save_logs(self, dest=None):
        """Save console log, QEMU's output, the guest journal and the udev events seen."""
        dest = dest or self.logdir
        os.makedirs(dest, exist_ok=True)
        for f in ("console.log", "qemu.log"):
            p = os.path.join(self.workdir, f)
            if os.path.exists(p):
                shutil.copy(p, dest)
        if self.chan and not self.chan.closed and self.proc and self.proc.poll() is None:
            try:
                r = self.run(["journalctl", "-b", "--no-pager", "-o", "short-monotonic"],
                             timeout=60)
                with open(os.path.join(dest, "journal.txt"), "wb") as f:
                    f.write(r.out + r.err)
            except BenchError as e:
                with open(os.path.join(dest, "journal.txt"), "w") as f:
                    f.write("could not read the journal: %s\n" % e)
        if self.chan:
            with open(os.path.join(dest, "udev-events.json"), "w") as f:
                json.dump([{"t": round(t - self.t0, 3), "props": p}
                           for t, p in self.chan.udev_events], f, indent=1)
        log("logs of %s saved in %s" % (self.name, dest))
        return dest

    def poweroff(self, timeout=90):
        """Shut the guest down cleanly (systemctl poweroff) and wait for QEMU to exit."""
        if self.proc and self.proc.poll() is None:
            self.run(["systemctl", "--no-block", "poweroff"], timeout=30)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise BenchError("guest did not power off within %ss" % timeout)
        self.kill()

    def kill(self):
        """Stop QEMU at once (no guest shutdown) and remove the work directory."""
        if self.proc and self.proc.poll() is None:
            try:
                self.qmp.cmd("quit")
            except (BenchError, OSError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _live_vms.discard(self)
        if self.qmp:
            self.qmp.close()
        if self.chan:
            try:
                self.chan.sock.close()
            except OSError:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)


_live_vms = set()


def _die_with_parent():
    """In QEMU's child process: get SIGKILL when the test process dies, however it dies."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


@atexit.register
def _kill_live_vms():
    for vm in list(_live_vms):
        vm.kill()


GUEST_UNIT = """\
# SPDX-License-Identifier: GPL-2.0-or-later
# Written by tests/vm/mamori_vm.py into the guest's overlay.
[Unit]
Description=mamori VM bench command channel
DefaultDependencies=no
After=systemd-udevd.service
Wants=systemd-udevd.service

[Service]
ExecStart={python} -u {agent}
Restart=always
RestartSec=1

[Install]
WantedBy=sysinit.target
"""


def _wanted_by(unit_path):
    """WantedBy= targets from a unit file's [Install] section (empty if none)."""
    try:
        with open(unit_path) as f:
            text = f.read()
    except OSError:
        return []
    out, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Install]" and line.startswith(("WantedBy=", "RequiredBy=")):
            out += line.split("=", 1)[1].split()
    return out


# ----------------------------------------------------------------------------------
# Scenario harness (TAP, for meson's protocol: 'tap')

def run_scenarios(scenarios, name=None, **vm_kw):
    """Boot one VM, run each scenario(vm) in turn on it, print TAP. Scenarios must
    leave no device plugged (checked). On any failure the console log, QEMU's output,
    the journal and the udev events go to build/tests/vm/logs/<name>/. Returns the
    process exit status (0 only if every scenario passed)."""
    name = name or os.path.splitext(os.path.basename(sys.argv[0]))[0]
    only = os.environ.get("MAMORI_VM_ONLY")  # "a,b": run only these scenarios (while developing)
    if only:
        scenarios = [s for s in scenarios if s.__name__ in only.split(",")]
    print("1..%d" % len(scenarios), flush=True)
    vm = VM(name=name, **vm_kw)
    shutil.rmtree(vm.logdir, ignore_errors=True)  # logs present = the last run failed
    failed = 0
    try:
        vm.boot()
    except Exception as e:
        for i, s in enumerate(scenarios, 1):
            print("not ok %d - %s # boot failed: %s" % (i, s.__name__, str(e).splitlines()[0]))
        log(traceback.format_exc())
        vm.save_logs()
        vm.kill()
        return 1
    try:
        for i, s in enumerate(scenarios, 1):
            t = time.monotonic()
            try:
                s(vm)
                left = list(vm.devices)
                if left:
                    raise BenchError("scenario left devices plugged: %s" % left)
                print("ok %d - %s (%.1f s)" % (i, s.__name__, time.monotonic() - t), flush=True)
            except Exception:
                failed += 1
                log(traceback.format_exc())
                print("not ok %d - %s" % (i, s.__name__), flush=True)
                for d in list(vm.devices.values()):
                    try:
                        vm.pull(d)
                    except Exception:
                        pass
        if failed or os.environ.get("MAMORI_VM_KEEP_LOGS"):
            vm.save_logs()
    finally:
        vm.kill()
    return 1 if failed else 0


def check(cond, msg, *args):
    """assert that survives python -O and says what was expected."""
    if not cond:
        raise AssertionError(msg % args if args else msg)


def median(xs):
    return statistics.median(xs)
