#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""mamori-agent on the host, without USB: the evidence spool against a real policyd
(records made while policyd is away arrive in order when it returns, nothing lost,
the spool file root-only) and the raw mount of a real loop-device filesystem
(nosuid,nodev,noexec, read-only unless asked, numbers-only mount point)."""
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from mamori_test import BUILD, Policyd, check, done  # noqa: E402

AGENT = os.path.join(BUILD, 'agent', 'mamori-agent')
TOOL = os.path.join(BUILD, 'agent', 'mamori-agent-testtool')


def agent_flush(pd, spool, status):
    return subprocess.run([AGENT, '--flush-spool', '--socket', pd.socket, '--spool-dir', spool,
                           '--status-dir', status, '--config', pd.config],
                          capture_output=True, text=True, timeout=120)


def status_of(status):
    with open(os.path.join(status, 'status')) as f:
        return dict(line.strip().split('=', 1) for line in f if '=' in line)


def spool_tests(pd, tmp):
    """R-EV-9: records made while policyd is away reach it in order, none lost."""
    spool, status = os.path.join(tmp, 'spool'), os.path.join(tmp, 'status')
    pd.stop()
    subprocess.run([TOOL, 'spool-append', spool, '40', 'agent.spooltest'], check=True)
    p = agent_flush(pd, spool, status)
    check(p.returncode == 1 and '40 records waiting' in p.stdout, 'policyd away: the 40 records stay spooled')
    st = status_of(status)
    check(st.get('spool') == '40' and st.get('policyd') == 'unreachable', f'status file shows the depth: {st}')
    mode = os.stat(os.path.join(spool, 'spool')).st_mode
    check(stat.S_IMODE(mode) == 0o600, 'spool file is 0600')
    check(stat.S_IMODE(os.stat(spool).st_mode) == 0o700, 'spool directory is 0700')
    # more records while it is still away: they queue behind the first ones
    subprocess.run([TOOL, 'spool-append', spool, '10', 'agent.spooltest2'], check=True)
    pd.start()
    p = agent_flush(pd, spool, status)
    check(p.returncode == 0 and '0 records waiting' in p.stdout, f'policyd back: all delivered ({p.stdout.strip()})')
    depth = subprocess.run([TOOL, 'spool-depth', spool], capture_output=True, text=True).stdout.strip()
    check(depth == '0', 'spool is empty afterwards')
    check(os.path.getsize(os.path.join(spool, 'spool')) == 24, 'spool file cut back to its header')
    q = pd.mediactl('log', '--type', 'agent', '--format', 'json', '--limit', '1000', user='mamori-t-auditor')
    recs = sorted(json.loads(q.stdout), key=lambda r: r['seq'])  # policyd's order of arrival
    got = [(r['type'], r['fields'].get('n')) for r in recs]
    want = [('agent.spooltest', str(i)) for i in range(1, 41)] + [('agent.spooltest2', str(i)) for i in range(1, 11)]
    check(got == want, f'50 records in policyd, in order, none lost or doubled (got {len(got)})')
    if got != want:
        print(q.stdout[:2000], q.stderr)


def losetup(img):
    return subprocess.run(['losetup', '-f', '--show', img], capture_output=True, text=True,
                          check=True).stdout.strip()


def mount_opts(path):
    with open('/proc/self/mountinfo') as f:
        for line in f:
            parts = line.split()
            if parts[4] == path:
                return set(parts[5].split(','))
    return None


def mount_tests(tmp):
    """R-ATK-1: the raw mount is nosuid,nodev,noexec; a program on it does not run."""
    img = os.path.join(tmp, 'stick.img')
    with open(img, 'wb') as f:
        f.truncate(16 << 20)
    subprocess.run(['mkfs.ext4', '-q', '-F', img], check=True)
    uuid = subprocess.run(['blkid', '-s', 'UUID', '-o', 'value', img], capture_output=True, text=True).stdout.strip()
    loop = losetup(img)
    mdir = os.path.join(tmp, 'raw')
    try:
        p = subprocess.run([TOOL, 'mount', mdir, loop, 'ro'], capture_output=True, text=True)
        st = os.stat(loop)
        name = f'{os.major(st.st_rdev)}-{os.minor(st.st_rdev)}'
        check(p.returncode == 0 and p.stdout.split()[:3] == [name, 'ext4', uuid],
              f'mounted at numbers-only name with the blkid UUID ({p.stdout.strip()} {p.stderr.strip()})')
        mp = os.path.join(mdir, name)
        opts = mount_opts(mp) or set()
        check({'ro', 'nosuid', 'nodev', 'noexec'} <= opts, f'read-only mount is ro,nosuid,nodev,noexec: {opts}')
        check(stat.S_IMODE(os.stat(mdir).st_mode) == 0o700, 'mount directory is root-only')
        try:
            open(os.path.join(mp, 'x'), 'w').close()
            check(False, 'writing to the read-only mount fails')
        except OSError as e:
            check(e.errno == errno.EROFS, f'writing to the read-only mount fails with EROFS ({e})')
        r = subprocess.run([TOOL, 'release', mdir, name])
        check(r.returncode == 0 and mount_opts(mp) is None and not os.path.exists(mp), 'released and removed')
        p = subprocess.run([TOOL, 'mount', mdir, loop, 'rw'], capture_output=True, text=True)
        opts = mount_opts(mp) or set()
        check(p.returncode == 0 and {'rw', 'nosuid', 'nodev', 'noexec'} <= opts, f'write right: rw but still nosuid,nodev,noexec: {opts}')
        with open(os.path.join(mp, 'tool.sh'), 'w') as f:
            f.write('#!/bin/sh\necho ran\n')
        os.chmod(os.path.join(mp, 'tool.sh'), 0o755)
        try:
            e = subprocess.run([os.path.join(mp, 'tool.sh')], capture_output=True, text=True)
            check(e.returncode != 0 and 'ran' not in e.stdout, 'a program on the medium does not run (noexec)')
        except PermissionError:
            check(True, 'a program on the medium does not run (noexec)')
    finally:
        subprocess.run([TOOL, 'release', mdir, name])
        subprocess.run(['losetup', '-d', loop])
    # not a block device, or a symlink to one: refused
    plain = os.path.join(tmp, 'plain')
    open(plain, 'w').close()
    p = subprocess.run([TOOL, 'mount', mdir, plain, 'ro'], capture_output=True, text=True)
    check(p.returncode != 0, 'a regular file is not mounted')
    link = os.path.join(tmp, 'link')
    os.symlink(loop, link)
    p = subprocess.run([TOOL, 'mount', mdir, link, 'ro'], capture_output=True, text=True)
    check(p.returncode != 0, 'a symlink as the device node is not followed')


def main():
    if os.geteuid() != 0:
        print('1..0 # SKIP needs root')
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix='mamori-agent-')
    try:
        with Policyd() as pd:
            spool_tests(pd, tmp)
        mount_tests(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    done()


main()
