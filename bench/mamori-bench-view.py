#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Writing through the media view vs writing directly to the same backing mount (issue 6),
side by side in one run, on the same file in tmpfs, with libsodium's raw
ChaCha20-Poly1305 as the ceiling. Target: the view at least half the speed of the
direct write.

Both writes are `dd bs=1M conv=fsync` of the same source into an ext4 image on a loop
device whose file is in tmpfs, so the disk is not what is measured. The direct write
is root's, into the raw mount; the view's is a staff user's through mamori-view, and
includes everything the user waits for: the encryption to the organisation key, the
temporary file fsynced on the medium, the transfer record made durable by a real
policyd, the rename (R-EV-9).

    bench/mamori-bench-view.py --build build-rel [--size-mib 1024] [--runs 3] [--dir /dev/shm]

Measured (2 shared cores, release builds, 1 GiB, median of 3; both figures of a line
from the same run; others' VMs running, load average in brackets):
  f0ebf70..0ed925e (stage + stream; dd's first close ended the stream, so every write
  was staged and the file encrypted again at fsync):   0.31 [2.5], 0.28 [5.3], 0.25 [6.5],
                                                       0.22 [7.3]
  stream only, no stage copy:                          0.38 [5.5]
  stream only + feed thread (this version):            0.48 [6.5], 0.42 [7.2], 0.28 [7.3]
Where the view's time goes (perf): per GiB about 0.9 s of CPU in the FUSE thread and
the feed (the copies from /dev/fuse, into the feed, into the writer's chunks, and the
write to the medium) and 1 s in the encryption workers; the direct write copies once.
The ratio drops fastest when the cores are taken by other work, since the view needs
three threads busy where the direct write needs one.
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--build', required=True, help='a build tree (release for figures)')
    ap.add_argument('--size-mib', type=int, default=1024)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--dir', default='/dev/shm', help='tmpfs for the source and the image')
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit('needs root (loop device, FUSE mount)')
    os.environ['MAMORI_BUILD_ROOT'] = os.path.abspath(args.build)
    sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'integration'))
    spec = importlib.util.spec_from_file_location('test_view', os.path.join(HERE, '..', 'tests', 'integration',
                                                                            'test-view.py'))
    tv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tv)  # the view's test set-up: medium, grants, keys, View
    from mamori_test import Policyd, as_user, ensure_users  # noqa: E402
    ensure_users()
    size = args.size_mib << 20
    tmp = tempfile.mkdtemp(prefix='mamori-bench-view-', dir=args.dir)
    os.chmod(tmp, 0o755)
    loop = mdir = name = v = None
    try:
        with Policyd(config='evidence: { journal = false; };\n') as pd:
            tv.setup_policy(pd, tmp)
            keys, _ = tv.org_keys(pd, tmp)
            src = os.path.join(tmp, 'source.bin')
            with open(src, 'wb') as f:
                for _ in range(args.size_mib):
                    f.write(os.urandom(1 << 20))
            os.chmod(src, 0o644)
            img = os.path.join(tmp, 'stick.img')
            with open(img, 'wb') as f:
                f.truncate(size * 2 + (256 << 20))  # the direct copy and the view's (staged) one
            subprocess.run(['mkfs.ext4', '-q', '-F', '-m', '0', img], check=True, capture_output=True)
            loop = subprocess.run(['losetup', '-f', '--show', img], capture_output=True, text=True,
                                  check=True).stdout.strip()
            mdir = os.path.join(tmp, 'raw')
            p = subprocess.run([tv.TOOL, 'mount', mdir, loop, 'rw'], capture_output=True, text=True, check=True)
            name = p.stdout.split()[0]
            raw = os.path.join(mdir, name)
            v = tv.View(pd, tmp, raw, keys)
            v.start()

            def dd(dst, user=None):
                t0 = time.perf_counter()
                subprocess.run(as_user(user) + ['dd', 'if=' + src, 'of=' + dst, 'bs=1M', 'conv=fsync',
                                                'status=none'], check=True)
                return time.perf_counter() - t0

            direct, view = [], []
            for _ in range(args.runs):  # alternating, so that load that comes and goes hits both
                direct.append(dd(os.path.join(raw, 'direct.bin')))
                os.unlink(os.path.join(raw, 'direct.bin'))
                view.append(dd(v.path('view.bin'), user=tv.STAFF))
                stored = os.path.join(raw, 'view.bin.age')
                if not os.path.exists(stored):
                    sys.exit('the view did not store view.bin.age')
                subprocess.run(as_user(tv.STAFF) + ['rm', v.path('view.bin')], check=True)
            raw_bench = subprocess.run([os.path.join(args.build, 'bench', 'mamori-bench-age'), '--size', '64',
                                        '--runs', '1', '--dir', tmp], capture_output=True, text=True)
            ceiling = [l for l in raw_bench.stdout.splitlines() if 'libsodium ChaCha20-Poly1305' in l]
    finally:
        if v:
            v.stop()
        if name:
            subprocess.run([tv.TOOL, 'release', mdir, name], capture_output=True)
        if loop:
            subprocess.run(['losetup', '-d', loop], capture_output=True)
        subprocess.run(['rm', '-rf', tmp])
    mib = size / (1 << 20)
    d, w = statistics.median(direct), statistics.median(view)
    print(f'file: {args.size_mib} MiB in tmpfs, ext4 on a loop device in tmpfs, dd bs=1M conv=fsync, '
          f'median of {args.runs} (load average {os.getloadavg()[0]:.1f})')
    print(f'  direct write to the raw mount (root)          {mib / d:8.1f} MiB/s  ({d:.2f} s)')
    print(f'  through mamori-view (staff, encrypted, recorded) {mib / w:8.1f} MiB/s  ({w:.2f} s)')
    print(f'  view / direct: {d / w:.2f}   (target >= 0.5)')
    for l in ceiling:
        print('  ceiling: ' + l.strip())


if __name__ == '__main__':
    main()
