# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers for integration tests: a real mamori-policyd in a temporary directory,
real users and groups for the roles, and the real mediactl run as those users.

    with Policyd() as pd:
        pd.mediactl('log', user='mamori-t-auditor')
"""
import grp
import os
import pty
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get('MAMORI_BUILD_ROOT') or os.path.join(
    os.path.dirname(__file__), '..', '..', 'build')
SOURCE = os.environ.get('MAMORI_SOURCE_ROOT') or os.path.join(os.path.dirname(__file__), '..', '..')
POLICYD = os.path.join(BUILD, 'policyd', 'mamori-policyd')
MEDIACTL = os.path.join(BUILD, 'mediactl', 'mediactl')
BENCH_INGEST = os.path.join(BUILD, 'bench', 'mamori-bench-ingest')
TEST_CLIENT = os.path.join(BUILD, 'tests', 'mamori-test-client')
TAMPER = os.path.join(BUILD, 'tests', 'mamori-test-tamper')

# Test users, one per role (R-PERM-2: the roles are separate).
ROLE_GROUPS = ('mamori-admin', 'mamori-manager', 'mamori-auditor')
USERS = {
    'mamori-t-staff': (),
    'mamori-t-staff2': (),
    'mamori-t-admin': ('mamori-admin',),
    'mamori-t-manager': ('mamori-manager',),
    'mamori-t-auditor': ('mamori-auditor',),
}

FAILURES = []


def ensure_users():
    """Creates the role groups and test users if they are missing (needs root)."""
    for g in ROLE_GROUPS:
        try:
            grp.getgrnam(g)
        except KeyError:
            subprocess.run(['groupadd', '--system', g], check=True)
    for u, groups in USERS.items():
        try:
            pwd.getpwnam(u)
        except KeyError:
            subprocess.run(['useradd', '--system', '--no-create-home', '--shell', '/usr/sbin/nologin',
                            u], check=True)
        if groups:
            subprocess.run(['usermod', '-a', '-G', ','.join(groups), u], check=True)


def as_user(user):
    """argv prefix that runs a command as user with exactly its groups."""
    if user is None or user == 'root':
        return []
    return ['setpriv', f'--reuid={user}', f'--regid={pwd.getpwnam(user).pw_gid}', '--init-groups']


class Policyd:
    """A mamori-policyd on a private socket and state directory."""

    def __init__(self, config='', state_dir=None, keep=False):
        self.tmp = tempfile.mkdtemp(prefix='mamori-test-')
        os.chmod(self.tmp, 0o755)  # other users must reach the socket
        self.state_dir = state_dir or os.path.join(self.tmp, 'state')
        os.makedirs(self.state_dir, exist_ok=True)
        self.socket = os.path.join(self.tmp, 'policyd.sock')
        self.config = os.path.join(self.tmp, 'mamori.conf')
        with open(self.config, 'w') as f:
            f.write(config)
        self.keep = keep
        self.proc = None
        self.log = os.path.join(self.tmp, 'policyd.log')

    def __enter__(self):
        ensure_users()
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is not None:
            with open(self.log) as f:
                sys.stderr.write('--- policyd log ---\n' + f.read())
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def env(self):
        e = dict(os.environ)
        e['MAMORI_SOCKET'] = self.socket
        return e

    def start(self):
        logf = open(self.log, 'a')
        self.proc = subprocess.Popen([POLICYD, '--state-dir', self.state_dir, '--socket', self.socket,
                                      '--config', self.config], stdout=logf, stderr=logf)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f'policyd exited with {self.proc.returncode}; see {self.log}:\n'
                                   + open(self.log).read())
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.socket)
                s.close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError('policyd did not come up')

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def kill(self):
        """SIGKILL: no chance to flush or seal."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def run(self, argv, user=None, input=None, check=False):
        """Runs argv as user; returns CompletedProcess with text output."""
        p = subprocess.run(as_user(user) + list(argv), env=self.env(), input=input,
                           capture_output=True, text=True, timeout=600)
        if check and p.returncode != 0:
            raise AssertionError(f'{argv} as {user} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}')
        return p

    def mediactl(self, *args, user=None, input=None, check=False):
        return self.run([MEDIACTL] + list(args), user=user, input=input, check=check)


def copy_db(src, dst):
    """Copies an SQLite database as SQLite sees it (WAL included)."""
    import sqlite3
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(b)
    a.close()
    b.close()


PASSED = []


def check(cond, what):
    """Records an expectation without stopping the test (TAP-like 'ok'/'not ok' lines)."""
    if cond:
        PASSED.append(what)
        print(f'ok - {what}')
    else:
        FAILURES.append(what)
        print(f'not ok - {what}')
    return cond


def done():
    """Ends a test script with the plain closing line and the exit code."""
    print(f'{len(PASSED)} passed, {len(FAILURES)} failed')
    sys.exit(1 if FAILURES else 0)


def stop_process(proc, timeout=20):
    """SIGTERM, then SIGKILL after timeout seconds; nothing if proc is None or has ended."""
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_pty(argv, answers, env=None, timeout=120):
    """Runs argv on a new pseudo-terminal (its controlling tty), typing the next answer
    each time the output since the last one ends in a prompt (": "). Returns (rc, output)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(argv[0], argv, env or os.environ)
        finally:
            os._exit(127)
    out, since, left = b'', b'', list(answers)
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
            since += data
        if left and since.rstrip(b' ').endswith(b':'):
            os.write(fd, (left.pop(0) + '\n').encode())
            since = b''
    if time.time() >= deadline:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors='replace')
