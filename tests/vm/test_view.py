#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The media view in a real kernel (issue 6): a registered vfat stick plugged, the agent
mounts it and starts mamori-view at /media/mamori/<management number>, a user with a
write-encrypted grant copies a file through it, the stick is pulled, and its image,
inspected on the host, holds only ciphertext that `age -d` opens with the organisation
identity (R-OUT-1), with one media.output record carrying every field (R-EV-1, R-EV-2);
and a stick pulled mid-copy, a stick filled up mid-copy and policyd stopped mid-copy
each leave an error to the writer, no plaintext and no partial file on the medium, and
the evidence of what went before intact (R-EV-9)."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mamori_vm import check, make_image, run_scenarios  # noqa: E402

BUILD = os.environ.get("MAMORI_BUILD_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..", "build")
MEDIACTL = os.path.join(os.path.abspath(BUILD), "mediactl", "mediactl")
QEMU_STICK = ("46f4", "0001")
PASS = "correct horse battery staple\n"
VIEW = "/media/mamori/VW-001"
FIELDS = ("user", "uid", "host", "file", "size", "direction", "form", "via", "source_path", "stored_name",
          "medium", "vendor", "product", "serial", "port")
KEYS = tempfile.mkdtemp(prefix="mamori-vm-keys-")
IDS = os.path.join(KEYS, "identities")


def as_user(vm, user):
    r = vm.run(["id", "-g", user], check=True)
    return ["setpriv", "--reuid=" + user, "--regid=" + r.stdout.strip(), "--init-groups"]


def mediactl(vm, user, *args, input=None):
    return vm.run(as_user(vm, user) + [MEDIACTL] + list(args), input=input)


def records(vm, type_):
    r = mediactl(vm, "mamori-t-auditor", "log", "--type", type_, "--format", "json", "--limit", "100000")
    return json.loads(r.stdout or "[]") if r.rc == 0 else []


def fuse_mounted(vm, path):
    for line in vm.read("/proc/self/mountinfo").decode().splitlines():
        p = line.split()
        if p[4] == path:
            return p[p.index("-") + 1], set(p[5].split(","))
    return None


def plug_view(vm, name, label):
    img = make_image(os.path.join(vm.workdir, name), "vfat", 16, label=label)
    st = vm.plug_stick(img, vendor="ACME", product="View", serial="VIEW-1")
    st.wait_usb_event()
    vm.wait_for(lambda: fuse_mounted(vm, VIEW), timeout=120, what="the view mounted")
    return img, st


def outputs(vm, name):
    """How many media.output records name the file."""
    return len([x for x in records(vm, "media.output") if x["fields"].get("file") == name])


def start_writer(vm, name, mark):
    """The staff user writes 4 MB of mark to VIEW/name in the background and waits (file
    open, data written) until finish_writer."""
    script = ("import os,sys,time\n"
              "f=open(sys.argv[1],'wb')\n"
              "f.write(sys.argv[2].encode() * 400000); f.flush()\n"
              "open('/tmp/staff/%s.flag','w').close()\n"
              "while not os.path.exists('/tmp/staff/%s.go'): time.sleep(0.1)\n"
              "try:\n    f.write(b'end'); f.close(); print('closed')\n"
              "except OSError as e:\n    print('error', e.errno)\n") % (name, name)
    vm.run(["install", "-d", "-m", "0777", "/tmp/staff"], check=True)
    vm.run(["sh", "-c", "%s python3 -c \"$0\" \"$1\" \"$2\" > /tmp/staff/%s.out 2>&1 &"
            % (" ".join(as_user(vm, "mamori-t-staff")), name), script, VIEW + "/" + name, mark.decode()],
           check=True)
    vm.wait_for(lambda: vm.run(["test", "-e", "/tmp/staff/%s.flag" % name]).rc == 0, timeout=60,
                what="the writer started")


def finish_writer(vm, name):
    """Lets the writer close its file; returns what it printed ("closed", "error N")."""
    vm.run(["touch", "/tmp/staff/%s.go" % name], check=True)
    out = "/tmp/staff/%s.out" % name
    vm.wait_for(lambda: (vm.read(out) or b"").strip(), timeout=60, what="the writer's result")
    return vm.read(out).decode().strip()


def copy_through_view_then_pull(vm):
    vm.run(["install", "-d", "-m", "0700", "-o", "mamori-t-manager", "/tmp/mgr"], check=True)
    r = mediactl(vm, "mamori-t-manager", "manager", "keygen", "--key", "/tmp/mgr/k", "--passphrase-fd", "0",
                 input=PASS)
    vm.run([MEDIACTL, "manager", "trust", r.stdout.strip(), "--name", "mamori-t-manager"], check=True)
    r = mediactl(vm, "mamori-t-admin", "media", "register", "--no", "VW-001", "--type", "USBメモリ", "--purpose",
                 "test", "--manager", "mamori-t-manager", "--start", "2026-01-01", "--end", "2099-12-31",
                 "--vendor", QEMU_STICK[0], "--product", QEMU_STICK[1], "--serial", "VIEW-1", "--users",
                 "mamori-t-staff")
    check(r.rc == 0, "register: %r", r.stderr)
    r = mediactl(vm, "mamori-t-manager", "grant", "create", "--key", "/tmp/mgr/k", "--passphrase-fd", "0",
                 "--media", "VW-001", "--user", "mamori-t-staff", "--any-host", "--until", "+2h", "--mode",
                 "write-encrypted", input=PASS)
    check(r.rc == 0, "grant: %r", r.stderr)
    img = make_image(os.path.join(vm.workdir, "v.img"), "vfat", 16, label="V")
    st = vm.plug_stick(img, vendor="ACME", product="View", serial="VIEW-1")
    st.wait_usb_event()
    vm.wait_for(lambda: fuse_mounted(vm, VIEW), timeout=120, what="the view mounted")
    fstype, opts = fuse_mounted(vm, VIEW)
    check(fstype == "fuse.mamori" and {"nosuid", "nodev", "noexec"} <= opts, "view %r %r", fstype, opts)
    data = "secret report\n" * 5000
    vm.run(["install", "-d", "-m", "0755", "-o", "mamori-t-staff", "/tmp/staff"], check=True)
    vm.run(as_user(vm, "mamori-t-staff") + ["sh", "-c", "cat > /tmp/staff/report.txt"], input=data, check=True)
    r = vm.run(as_user(vm, "mamori-t-staff") + ["cp", "/tmp/staff/report.txt", VIEW + "/report.txt"])
    check(r.rc == 0, "cp through the view: %r", r.stderr)
    r = vm.run(as_user(vm, "mamori-t-staff") + ["cat", VIEW + "/report.txt"])
    check(r.stdout == data, "read back through the view")
    r = vm.run(as_user(vm, "mamori-t-auditor") + ["ls", VIEW])
    check(r.rc != 0, "a user not on the medium lists nothing: %r", r.stdout)
    recs = [x["fields"] for x in records(vm, "media.output") if x["fields"].get("file") == "report.txt"]
    check(len(recs) == 1, "one media.output record: %r", recs)
    f = recs[0]
    check(all(k in f for k in FIELDS) and f["form"] == "age-org" and f["medium"] == "VW-001"
          and f["size"] == str(len(data)) and f["source_path"] == "/tmp/staff/report.txt"
          and f["stored_name"] == "report.txt.age" and f["user"] == "mamori-t-staff", "record %r", f)
    vm.run(["sync"])
    st.pull()
    vm.wait_for(lambda: not fuse_mounted(vm, VIEW), timeout=60, what="the view gone after the pull")
    # the image on the host: only ciphertext, which the organisation identity opens
    names = subprocess.run(["mdir", "-b", "-i", img, "::"], capture_output=True, text=True).stdout.split()
    names = [os.path.basename(n) for n in names]
    check(names == ["report.txt.age"], "files on the image: %r", names)
    out = os.path.join(vm.workdir, "report.age")
    subprocess.run(["mcopy", "-n", "-i", img, "::report.txt.age", out], check=True)
    with open(out, "rb") as fh:
        check(data.encode() not in fh.read(), "the plaintext is not on the image")
    r = subprocess.run(["age", "-d", "-i", IDS, out], capture_output=True)
    check(r.returncode == 0 and r.stdout == data.encode(), "age -d -i identities opens it: %r", r.stderr)


def pulled_mid_copy(vm):
    """The stick pulled while a file is being written through the view: the writer gets
    an error, the view goes, and the image holds no plaintext (the file was staged on
    the terminal, never on the medium, and nothing was recorded as transferred)."""
    img, st = plug_view(vm, "p.img", "P")
    start_writer(vm, "big.bin", b"PLAINMARK-")
    st.pull()
    vm.wait_for(lambda: not fuse_mounted(vm, VIEW), timeout=60, what="the view gone after the pull")
    out = finish_writer(vm, "big.bin")
    check(out.startswith("error"), "the writer got an error: %r", out)
    with open(img, "rb") as fh:
        check(b"PLAINMARK-" not in fh.read(), "no plaintext on the pulled stick's image")
    names = subprocess.run(["mdir", "-b", "-i", img, "::"], capture_output=True, text=True).stdout.split()
    check(not names, "nothing on the image: %r", names)
    check(outputs(vm, "big.bin") == 0, "no transfer recorded for the file that never reached the stick")


def copy_in(vm, name, data):
    """A file the staff user copies onto the view with cp. Returns cp's result."""
    vm.run(["install", "-d", "-m", "0755", "-o", "mamori-t-staff", "/tmp/staff"], check=True)
    vm.run(as_user(vm, "mamori-t-staff") + ["sh", "-c", "cat > /tmp/staff/" + name], input=data, check=True)
    return vm.run(as_user(vm, "mamori-t-staff") + ["cp", "/tmp/staff/" + name, VIEW + "/" + name])


def image_after_pull(vm, st, img):
    """Pulls the stick; returns (names on the image, the image's bytes)."""
    vm.run(["sync"])
    st.pull()
    vm.wait_for(lambda: not fuse_mounted(vm, VIEW), timeout=60, what="the view gone after the pull")
    names = subprocess.run(["mdir", "-b", "-i", img, "::"], capture_output=True, text=True).stdout.split()
    with open(img, "rb") as fh:
        return sorted(os.path.basename(n) for n in names), fh.read()


def verify_chain(vm):
    r = mediactl(vm, "mamori-t-auditor", "verify")
    check(r.rc == 0, "mediactl verify: the evidence chain is intact: %r %r", r.stdout, r.stderr)


def nothing_left(vm, st, img, failed, kept, mark):
    """After a failed copy (R-EV-9): no record of the failed file, the one before it still
    recorded, the chain intact; the stick pulled, its image holds only the kept file
    (encrypted) and no plaintext of the failed one."""
    check(outputs(vm, failed) == 0 and outputs(vm, kept) == 1,
          "records: %s %d (want 0), %s %d (want 1)", failed, outputs(vm, failed), kept, outputs(vm, kept))
    verify_chain(vm)
    names, raw = image_after_pull(vm, st, img)
    check(names == [kept + ".age"], "files on the image: %r", names)
    check(mark not in raw, "no plaintext of %s on the image", failed)


def full_mid_copy(vm):
    """R-EV-9 on a real stick filled up mid-copy: a 16 MiB vfat stick holds one small
    file; a 24 MiB file copied after it fails with ENOSPC, leaves no plaintext and no
    partial or temporary file; the first file and its record stay, the chain verifies."""
    img, st = plug_view(vm, "f.img", "F")
    r = copy_in(vm, "keep.txt", "kept\n" * 1000)
    check(r.rc == 0, "the small file: %r", r.stderr)
    # 24 MiB made in the guest (not sent over the command channel)
    vm.run(as_user(vm, "mamori-t-staff") + ["sh", "-c", "yes FULLMARK- | head -c 25165824 > /tmp/staff/huge.txt"],
           check=True)
    r = vm.run(as_user(vm, "mamori-t-staff") + ["cp", "/tmp/staff/huge.txt", VIEW + "/huge.txt"])
    check(r.rc != 0 and "No space left" in r.stderr, "the writer gets ENOSPC: rc %d %r", r.rc, r.stderr)
    nothing_left(vm, st, img, "huge.txt", "keep.txt", b"FULLMARK-")


def policyd_stopped_mid_copy(vm):
    """R-EV-9 with policyd stopped while a file is being written through the view: the
    close fails with EIO, nothing of it stays on the stick; policyd back, the records
    stored before are all there and the chain verifies."""
    img, st = plug_view(vm, "s.img", "S")
    r = copy_in(vm, "before.txt", "before\n" * 1000)
    check(r.rc == 0, "the file before: %r", r.stderr)
    start_writer(vm, "late.bin", b"STOPMARK-")
    vm.run(["systemctl", "stop", "mamori-policyd.socket", "mamori-policyd.service"], check=True)
    out = finish_writer(vm, "late.bin")
    check(out == "error 5", "policyd stopped: the close fails with EIO: %r", out)
    vm.run(["systemctl", "start", "mamori-policyd.socket"], check=True)
    nothing_left(vm, st, img, "late.bin", "before.txt", b"STOPMARK-")


def org_keys():
    subprocess.run(["age-keygen", "-o", IDS], check=True, capture_output=True)
    with open(IDS) as f:
        ids = f.read()
    pub = subprocess.run(["age-keygen", "-y", IDS], check=True, capture_output=True, text=True).stdout
    return {"/etc/mamori/keys/identities": (ids, 0o600), "/etc/mamori/keys/recipient": (pub, 0o644)}


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
    from mamori_test import ensure_users  # noqa: E402
    ensure_users()
    sys.exit(run_scenarios([copy_through_view_then_pull, pulled_mid_copy, full_mid_copy, policyd_stopped_mid_copy],
                           files=org_keys(), install_build=True,
                           enable=["mamori-policyd.socket", "mamori-agent.service"]))
