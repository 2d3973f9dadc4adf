#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""mediactl encrypt|decrypt vs the reference age tool on the same file in tmpfs (R-OUT-1):
throughput of each and the ratio, side by side in one run. mediactl's figure includes
everything a user waits for: reading the organisation key, the evidence record
through a real policyd (durable before the output is renamed into place: R-EV-9),
the fsyncs. age writes and stops.

    bench/mamori-bench-crypt.py --build build-rel [--size-mib 1024] [--runs 3] [--dir /dev/shm]
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def timed(argv, runs, env=None, before=None):
    """Median and best wall time of argv over runs (before() runs untimed first)."""
    ts = []
    for _ in range(runs):
        if before:
            before()
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def rm(*paths):
    def f():
        for p in paths:
            if os.path.exists(p):
                os.unlink(p)
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--build', required=True, help='a release build tree')
    ap.add_argument('--size-mib', type=int, default=1024)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--dir', default='/dev/shm', help='tmpfs for the files')
    args = ap.parse_args()
    age = shutil.which('age')
    if not age:
        sys.exit('age is not installed (apt-get install age)')
    mediactl = os.path.join(args.build, 'mediactl', 'mediactl')
    policyd = os.path.join(args.build, 'policyd', 'mamori-policyd')
    with tempfile.TemporaryDirectory(prefix='mamori-bench-crypt-', dir=args.dir) as d:
        state, keys = os.path.join(d, 'state'), os.path.join(d, 'keys')
        os.mkdir(state)
        sock, cfg = os.path.join(d, 'pd.sock'), os.path.join(d, 'pd.conf')
        with open(cfg, 'w') as f:
            f.write('evidence: { journal = false; };\n')
        pd = subprocess.Popen([policyd, '--state-dir', state, '--socket', sock, '--config', cfg],
                              stderr=subprocess.DEVNULL)
        env = dict(os.environ, MAMORI_SOCKET=sock)
        try:
            for _ in range(400):
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(sock)
                    s.close()
                    break
                except OSError:
                    time.sleep(0.05)
            rcp = subprocess.run([mediactl, 'key', 'generate', '--keys-dir', keys], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()[0]
            ids = os.path.join(keys, 'identities')
            src = os.path.join(d, 'plain')
            with open(src, 'wb') as f:
                block = os.urandom(1 << 20)
                for _ in range(args.size_mib):
                    f.write(block)
            size = os.path.getsize(src)
            m_out, a_out = os.path.join(d, 'm.age'), os.path.join(d, 'a.age')
            print(f'== encrypt {size >> 20} MiB in {args.dir} to one X25519 recipient, median of {args.runs} '
                  f'({os.cpu_count()} CPUs)')
            m = timed([mediactl, 'encrypt', '--keys-dir', keys, '-o', m_out, src], args.runs, env, rm(m_out))
            a = timed([age, '-r', rcp, '-o', a_out, src], args.runs, None, rm(a_out))
            print(f'  mediactl encrypt: {size / m[0] / 1e6:7.0f} MB/s  ({m[0]:.2f} s, best {m[1]:.2f} s)')
            print(f'  age -r:           {size / a[0] / 1e6:7.0f} MB/s  ({a[0]:.2f} s, best {a[1]:.2f} s)')
            print(f'  ratio mediactl/age: {a[0] / m[0]:.2f}')
            md, ad = os.path.join(d, 'm.out'), os.path.join(d, 'a.out')
            print(f'== decrypt the same files (organisation identities), median of {args.runs}')
            m = timed([mediactl, 'decrypt', '--keys-dir', keys, '-o', md, m_out], args.runs, env, rm(md))
            a = timed([age, '-d', '-i', ids, '-o', ad, a_out], args.runs, None, rm(ad))
            print(f'  mediactl decrypt: {size / m[0] / 1e6:7.0f} MB/s  ({m[0]:.2f} s, best {m[1]:.2f} s)')
            print(f'  age -d -i:        {size / a[0] / 1e6:7.0f} MB/s  ({a[0]:.2f} s, best {a[1]:.2f} s)')
            print(f'  ratio mediactl/age: {a[0] / m[0]:.2f}')
            same = subprocess.run(['cmp', '-s', md, src]).returncode == 0
            print(f'  round trip identical: {"yes" if same else "NO"}')
        finally:
            pd.send_signal(signal.SIGTERM)
            pd.wait()


main()
