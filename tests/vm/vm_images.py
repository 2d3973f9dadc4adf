# SPDX-License-Identifier: GPL-2.0-or-later
"""Kernel, initramfs and media images for the VM bench (see mamori_vm.py, README.md).

Python 3 standard library only."""
import os
import re
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("MAMORI_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
BUILD_ROOT = os.environ.get("MAMORI_BUILD_ROOT") or os.path.join(SOURCE_ROOT, "build-vm")
INITRD_MODULES = ["9p", "9pnet_virtio", "virtio_pci", "overlay", "virtio_console"]


class BenchError(Exception):
    """Something the bench needs is missing or broke. Tests fail on it, never skip."""


def need(tool):
    """Return the path of a host tool, or raise BenchError naming it."""
    path = shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not path:
        raise BenchError("%s not found: run tools/deps vm (tools/test does)" % tool)
    return path


# ----------------------------------------------------------------------------------
# Kernel and initramfs

def find_kernel():
    """Return (vmlinuz, version) of the newest installed kernel with its modules."""
    override = os.environ.get("MAMORI_VM_KERNEL")
    found = []
    for name in os.listdir("/boot") if os.path.isdir("/boot") else []:
        if not name.startswith("vmlinuz-"):
            continue
        ver = name[len("vmlinuz-"):]
        if os.path.isdir(os.path.join("/lib/modules", ver, "kernel")):
            found.append(ver)
    if override:
        return override, os.path.basename(override)[len("vmlinuz-"):]
    if not found:
        raise BenchError("no /boot/vmlinuz-* with /lib/modules: install linux-image-amd64 "
                         "(tools/deps vm)")

    def key(v):
        return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", v)]
    ver = max(found, key=key)
    return os.path.join("/boot", "vmlinuz-" + ver), ver


def module_order(kver, wanted):
    """Return the module files (relative to /lib/modules/kver) to load, deps first."""
    base = os.path.join("/lib/modules", kver)
    deps, byname = {}, {}
    with open(os.path.join(base, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[path] = rest.split()
            mod = os.path.basename(path).split(".ko")[0].replace("-", "_")
            byname[mod] = path
    builtin = set()
    try:
        with open(os.path.join(base, "modules.builtin")) as f:
            builtin = {os.path.basename(l.strip()).split(".ko")[0].replace("-", "_") for l in f}
    except OSError:
        pass
    order, seen = [], set()

    def visit(path):
        if path in seen:
            return
        seen.add(path)
        for d in deps.get(path, []):
            visit(d)
        order.append(path)
    for m in wanted:
        if m in builtin:
            continue
        if m not in byname:
            raise BenchError("kernel %s has no module %s" % (kver, m))
        visit(byname[m])
    return order


def _cpio_entry(out, name, mode, data=b"", rdev=(0, 0), ino=[1000]):
    ino[0] += 1
    name_b = name.encode() + b"\0"
    fields = [ino[0], mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0]
    hdr = b"070701" + b"".join(b"%08X" % v for v in fields)
    out.write(hdr + name_b)
    out.write(b"\0" * ((4 - (len(hdr) + len(name_b)) % 4) % 4))
    out.write(data)
    out.write(b"\0" * ((4 - len(data) % 4) % 4))


def _elf_has_interp(path):
    """True if the ELF64 file at path is dynamically linked (has a PT_INTERP header)."""
    with open(path, "rb") as f:
        data = f.read()
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    for i in range(phnum):
        off = phoff + i * phentsize
        if int.from_bytes(data[off:off + 4], "little") == 3:
            return True
    return False


def build_initramfs(path, kver):
    """Write a newc cpio: /init (init.sh), static busybox, the 9p/overlay modules."""
    busybox = "/bin/busybox"
    if not os.path.exists(busybox) or _elf_has_interp(busybox):
        raise BenchError("/bin/busybox missing or not static: install busybox-static")
    mods = module_order(kver, INITRD_MODULES)
    with open(path, "wb") as out:
        for d in ["bin", "dev", "mods"]:
            _cpio_entry(out, d, 0o040755)
        _cpio_entry(out, "dev/console", 0o020600, rdev=(5, 1))
        with open(os.path.join(HERE, "init.sh"), "rb") as f:
            _cpio_entry(out, "init", 0o100755, f.read())
        with open(busybox, "rb") as f:
            _cpio_entry(out, "bin/busybox", 0o100755, f.read())
        names = []
        for rel in mods:
            with open(os.path.join("/lib/modules", kver, rel), "rb") as f:
                data = f.read()
            if rel.endswith(".xz"):
                import lzma
                data = lzma.decompress(data)
            elif not rel.endswith(".ko"):
                raise BenchError("cannot unpack module %s" % rel)
            name = os.path.basename(rel).split(".ko")[0] + ".ko"
            names.append(name)
            _cpio_entry(out, "mods/" + name, 0o100644, data)
        _cpio_entry(out, "mods/order", 0o100644, ("\n".join(names) + "\n").encode())
        _cpio_entry(out, "TRAILER!!!", 0)


# ----------------------------------------------------------------------------------
# Media images

def _populate_vfat(img, files):
    """Copy files into a FAT image with mtools (no mount, no root)."""
    tmp = tempfile.mkdtemp(prefix="mamori-img-")
    try:
        _write_tree(tmp, files)
        for name in sorted(os.listdir(tmp)):
            subprocess.run([need("mcopy"), "-s", "-i", img, os.path.join(tmp, name), "::"],
                           check=True)
    finally:
        shutil.rmtree(tmp)


def _populate_exfat(img, files):
    """Copy files into an exFAT image through exfat-fuse on a loop device (root; the
    host kernel need not know exFAT, and exfat-fuse as root wants a block device)."""
    loop = subprocess.run(["losetup", "-f", "--show", img], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()
    mnt = tempfile.mkdtemp(prefix="mamori-img-")
    try:
        subprocess.run([need("mount.exfat-fuse"), loop, mnt], check=True,
                       stdout=subprocess.DEVNULL)
        try:
            _write_tree(mnt, files)
        finally:
            subprocess.run(["umount", mnt], check=True)
    finally:
        os.rmdir(mnt)
        subprocess.run(["losetup", "-d", loop], check=True)


def _write_tree(root, files):
    for rel, data in files.items():
        dst = os.path.join(root, rel.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)


def _mbr_wrap(fs_img, out, ptype):
    """Put fs_img into a disk image with an MBR holding one partition at 1 MiB."""
    size = os.path.getsize(fs_img)
    sectors = (size + 511) // 512
    mbr = bytearray(512)
    mbr[440:444] = os.urandom(4)
    entry = bytes([0x00, 0xFE, 0xFF, 0xFF, ptype, 0xFE, 0xFF, 0xFF])
    entry += (2048).to_bytes(4, "little") + sectors.to_bytes(4, "little")
    mbr[446:462] = entry
    mbr[510:512] = b"\x55\xaa"
    with open(out, "wb") as o, open(fs_img, "rb") as i:
        o.write(mbr)
        o.write(b"\0" * (2048 * 512 - 512))
        shutil.copyfileobj(i, o, 1 << 20)
        o.truncate(2048 * 512 + sectors * 512)


def make_image(path, fstype="vfat", size_mb=64, label="MAMORI", files=None, table=None):
    """Create a stick image: fstype vfat|exfat|ext4|none, optional files {rel: data},
    table None (whole-disk filesystem, like many sticks) or "mbr" (one partition).
    Files go in with mkfs.ext4 -d, mtools (vfat) and exfat-fuse (exfat)."""
    files = files or {}
    target = path + ".fs" if table else path
    with open(target, "wb") as f:
        f.truncate(size_mb << 20)
    if fstype == "vfat":
        subprocess.run([need("mkfs.vfat"), "-n", label, target], check=True,
                       stdout=subprocess.DEVNULL)
    elif fstype == "exfat":
        subprocess.run([need("mkfs.exfat"), "-L", label, target], check=True,
                       stdout=subprocess.DEVNULL)
    elif fstype == "ext4":
        cmd = [need("mkfs.ext4"), "-q", "-F", "-L", label]
        tmp = None
        if files:
            tmp = tempfile.mkdtemp(prefix="mamori-img-")
            _write_tree(tmp, files)
            cmd += ["-d", tmp]
        subprocess.run(cmd + [target], check=True)
        if tmp:
            shutil.rmtree(tmp)
        files = {}
    elif fstype != "none":
        raise ValueError("unknown fstype %r" % fstype)
    if files and fstype == "vfat":
        _populate_vfat(target, files)
    elif files and fstype == "exfat":
        _populate_exfat(target, files)
    if table == "mbr":
        _mbr_wrap(target, path, {"vfat": 0x0C, "exfat": 0x07}.get(fstype, 0x83))
        os.unlink(target)
    elif table:
        raise ValueError("unknown partition table %r" % table)
    return path


def make_iso(path, label="MAMORI_CD", files=None):
    """Create an iso9660 (Rock Ridge + Joliet) optical disc image with xorriso."""
    tmp = tempfile.mkdtemp(prefix="mamori-iso-")
    try:
        _write_tree(tmp, files or {"README.TXT": "mamori test disc\n"})
        subprocess.run([need("xorriso"), "-as", "mkisofs", "-quiet", "-V", label, "-J", "-R",
                        "-o", path, tmp], check=True, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(tmp)
    return path


def meson_install(build_root=None, destdir=None):
    """"meson install" the build tree into destdir (default: a new temporary directory)
    and return destdir, for VM(trees=[...]). VM(install_build=True) does this itself."""
    destdir = destdir or tempfile.mkdtemp(prefix="mamori-install-")
    build_root = build_root or os.environ.get("MAMORI_BUILD_ROOT") or BUILD_ROOT
    subprocess.run([need("meson"), "install", "-C", build_root, "--no-rebuild",
                    "--quiet", "--destdir", destdir], check=True, stdout=subprocess.DEVNULL)
    return destdir


def usb_string_as_seen(s):
    """What the guest kernel shows for a USB string descriptor QEMU was given as s.
    QEMU puts each byte of the UTF-8 property into one UTF-16 code unit (hw/usb/desc.c),
    so the kernel, which converts UTF-16 to UTF-8, shows the bytes read as Latin-1.
    ASCII is unchanged; the mapping is one-to-one, so nothing is lost."""
    return s.encode("utf-8").decode("latin-1")
