#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""pam_mamori through real libpam (pam_wrapper + libpamtest, tests/pam/pam-driver.c)
against a real policyd (R-AUTH-1, R-AUTH-2, R-AUTH-3, R-AUTH-5, R-AUTH-6, R-AUTH-7,
R-EV-5, R-EV-6).

The stack is the one pam-auth-update writes from rules/pam-configs/ (applied here
to a scratch root), which must equal the documented rules/pam-mamori.stack; under
pam_wrapper pam_unix is replaced by pam_matrix (a password file, no /etc/shadow).
"""
import json
import os
import re
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'integration'))
from mamori_test import BUILD, SOURCE, Policyd, check, done, as_user  # noqa: E402

DRIVER = os.path.join(BUILD, 'tests', 'pam', 'mamori-pam-driver')
MODULE = os.environ.get('MAMORI_PAM_MODULE') or os.path.join(BUILD, 'pam_module', 'pam_mamori.so')
WRAPPER_LIB = '/usr/lib/x86_64-linux-gnu/libpam_wrapper.so'
MATRIX = '/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so'
STAFF, STAFF2, ADMIN, AUDITOR = 'mamori-t-staff', 'mamori-t-staff2', 'mamori-t-admin', 'mamori-t-auditor'
GOOD = {STAFF: 'Right#pass1', STAFF2: 'Right#pass2', 'root': 'Root#pass0', 'nosuch-user-x': 'none#1A'}
T_ALL = ['auth', 'acct', 'open', 'close']

BASE_CONFIG = '''auth: {
  deny = 5; fail_interval = 900; unlock_time = 900;
  admin_deny = 3; admin_unlock_time = 900;
  mfa_users = [ "%s" ];
  totp_algorithm = "%s"; totp_digits = %d; totp_window = 1;
  unreachable = "%s";
};
'''


def config(alg='sha1', digits=6, unreachable='mfa-closed', unlock=None):
    c = BASE_CONFIG % (STAFF2, alg, digits, unreachable)
    if unlock:
        c = c.replace('unlock_time = 900', f'unlock_time = {unlock}')
    return c


def build_stack(tmp):
    """Applies the shipped profiles to a scratch root with pam-auth-update; returns
    {type: [lines]} of the generated common-* files."""
    root = os.path.join(tmp, 'root')
    for d in ('etc/pam.d', 'usr/share/pam-configs', 'var/lib/pam'):
        os.makedirs(os.path.join(root, d))
    for p in ('unix', 'pwquality'):
        shutil.copy(f'/usr/share/pam-configs/{p}', os.path.join(root, 'usr/share/pam-configs'))
    prof = os.path.join(SOURCE, 'rules', 'pam-configs')
    for p in os.listdir(prof):
        shutil.copy(os.path.join(prof, p), os.path.join(root, 'usr/share/pam-configs'))
    subprocess.run(['pam-auth-update', '--root', root, '--package', '--force'], check=True)
    stack = {}
    for t in ('auth', 'account', 'session', 'password'):
        with open(os.path.join(root, 'etc/pam.d', 'common-' + t)) as f:
            stack[t] = [ln.rstrip() for ln in f if ln.strip() and not ln.startswith('#')]
    return stack


def documented_stack():
    with open(os.path.join(SOURCE, 'rules', 'pam-mamori.stack')) as f:
        lines = [ln.rstrip() for ln in f if ln.strip() and not ln.startswith('#')]
    return {t: [ln for ln in lines if ln.split()[0] == t] for t in ('auth', 'account', 'session', 'password')}


def wrapper_dir(tmp, stack, pd, passdb):
    """The pam_wrapper service directory: service mamori-test @including the stack."""
    d = os.path.join(tmp, 'pam.d')
    os.makedirs(d, exist_ok=True)
    extra = f'socket={pd.socket} config={pd.config}'
    for t, lines in stack.items():
        out = []
        for ln in lines:
            ln = re.sub(r'pam_unix\.so.*$', f'{MATRIX} passdb={passdb}', ln)
            ln = re.sub(r'pam_mamori\.so(.*)$', lambda m: f'{MODULE}{m.group(1).rstrip()} {extra}', ln)
            out.append(ln)
        with open(os.path.join(d, 'common-' + t), 'w') as f:
            f.write('\n'.join(out) + '\n')
    # pam_wrapper redirects service files but not @include: the common-* files are inlined.
    for svc in ('mamori-test', 'sshd', 'login'):
        with open(os.path.join(d, svc), 'w') as f:
            for t in ('auth', 'account', 'session', 'password'):
                with open(os.path.join(d, 'common-' + t)) as c:
                    # pam_matrix's account check takes the user's first line: one file per service.
                    f.write(c.read().replace(f'passdb={passdb}', f'passdb={passdb}.{svc}'))
    os.chmod(tmp, 0o755)
    return d


class Pam:
    def __init__(self, pd, svcdir):
        self.pd, self.svcdir = pd, svcdir

    def env(self, lang='ja'):
        e = self.pd.env()
        # The terminals' users read Japanese: the messages come from po/ja.po (gettext) with
        # the English under them. LANGUAGE is honoured with a C.UTF-8 locale (not plain C).
        e.update(LC_ALL='C.UTF-8', LANGUAGE=lang)
        e.update(PAM_WRAPPER='1', UID_WRAPPER_DISABLE_DEEPBIND='1',  # pam_wrapper's switch; ASan refuses RTLD_DEEPBIND
                 PAM_WRAPPER_SERVICE_DIR=self.svcdir, LD_PRELOAD=WRAPPER_LIB,
                 ASAN_OPTIONS='verify_asan_link_order=0:detect_leaks=0:abort_on_error=1')
        return e

    def run(self, user, *ops, password=None, code=None, tty='pts/1', rhost='192.0.2.7', service='mamori-test',
            as_=None, parallel=0, lang='ja'):
        argv = [DRIVER, '-s', service, '-u', user]
        if password is not None:
            argv += ['-p', password]
        if code is not None:
            argv += ['-c', code]
        if tty:
            argv += ['-t', tty]
        if rhost:
            argv += ['-r', rhost]
        if parallel:
            argv += ['-n', str(parallel)]
        p = subprocess.run(as_user(as_) + argv + list(ops), env=self.env(lang), capture_output=True, text=True,
                           timeout=300)
        out = p.stdout
        res = dict(re.findall(r'^result (\S+) (\S+)$', out, re.M))
        return res, out, p

    def raw(self, type_, user, as_=None):
        p = subprocess.run(as_user(as_) + [DRIVER, 'raw', str(type_), user], env=self.pd.env(),
                           capture_output=True, text=True)
        return p.stdout.strip()


def status(pd, user):
    p = pd.mediactl('user', 'status', user, '--format', 'json', user=ADMIN)
    try:
        return json.loads(p.stdout)
    except ValueError:
        return {'error': p.stdout + p.stderr}


def evidence(pd, type_prefix, user=None):
    args = ['log', '--type', type_prefix, '--format', 'json']
    if user:
        args += ['--user', user]
    p = pd.mediactl(*args, user=AUDITOR)
    try:
        return json.loads(p.stdout or '[]')
    except ValueError:
        return []


def oathtool(secret, alg, digits, offset=None):
    argv = ['oathtool', '--totp=' + alg, '-b', '--digits', str(digits)]
    if offset:
        argv += ['-N', offset]
    return subprocess.run(argv + [secret], capture_output=True, text=True, check=True).stdout.strip()


def enroll(pd, user):
    p = pd.mediactl('user', 'totp-enroll', user, user=ADMIN)
    m = re.search(r'otpauth://\S+secret=([A-Z2-7]+)', p.stdout)
    return m.group(1) if m else None


def test_stack(tmp):
    stack = build_stack(tmp)
    check(stack == documented_stack(), 'pam-auth-update with the shipped profiles writes the documented stack')
    return stack


def test_lockout(pam, pd):
    # R-AUTH-1: N wrong passwords lock; the right one is refused while locked.
    for i in range(5):
        res, out, _ = pam.run(STAFF, 'auth', password='wrong')
        check(res.get('auth') == 'PAM_AUTH_ERR', f'R-AUTH-1 wrong password {i + 1} refused')
    check('locked' in out and 'ロック' in out, 'R-AUTH-1 the fifth failure tells the user (ja+en) it locked')
    res, out, _ = pam.run(STAFF, 'auth', password=GOOD[STAFF])
    check(res.get('auth') == 'PAM_AUTH_ERR' and 'locked until' in out and 'ロックされています' in out,
          'R-AUTH-1 right password refused while locked, told until when')
    check(out.index('ロックされています') < out.index('locked until'),
          'R-AUTH-1 the Japanese message (po/ja.po, gettext) comes first, the English under it')
    res, out_en, _ = pam.run(STAFF, 'auth', password=GOOD[STAFF], lang='en')
    check('locked until' in out_en and 'ロック' not in out_en,
          'R-AUTH-1 in an English locale only the English message (the text is translated, not fixed)')
    st = status(pd, STAFF)
    check(st.get('locked') is True and st.get('failures') == 5, 'R-AUTH-1 mediactl user status shows the lock')
    # The same answer for a name that does not exist (no user enumeration).
    for i in range(5):
        pam.run('nosuch-user-x', 'auth', password='wrong')
    res, out2, _ = pam.run('nosuch-user-x', 'auth', password='x')
    check(res.get('auth') == 'PAM_AUTH_ERR' and 'locked until' in out2,
          'R-AUTH-1 an unknown user name locks the same way (existence not revealed)')
    # Unlock by an administrator.
    p = pd.mediactl('user', 'unlock', STAFF, user=STAFF)
    check(p.returncode != 0, 'R-AUTH-1 staff cannot unlock (not even themselves)')
    p = pd.mediactl('user', 'unlock', STAFF, user=ADMIN)
    check(p.returncode == 0, 'R-AUTH-1 mediactl user unlock as admin')
    res, _, _ = pam.run(STAFF, 'auth', password=GOOD[STAFF])
    check(res.get('auth') == 'PAM_SUCCESS', 'R-AUTH-1 right password accepted after unlock')
    check(len(evidence(pd, 'auth.unlock', STAFF)) >= 1, 'R-EV-6 the unlock is evidence')
    check(len(evidence(pd, 'auth.lock', STAFF)) >= 1, 'R-EV-5 the lock is evidence')


def test_sources(pam, pd):
    # R-AUTH-1: failures are counted per user and per source; status shows both.
    pd.mediactl('user', 'unlock', STAFF, user=ADMIN, check=True)
    for _ in range(2):
        pam.run(STAFF, 'auth', password='wrong', rhost='198.51.100.20')
    pam.run(STAFF, 'auth', password='wrong', rhost=None, tty='tty3')
    st = status(pd, STAFF)
    src = dict((s['source'], s['failures']) for s in st.get('sources', []))
    check(st.get('failures') == 3 and src.get('198.51.100.20') == 2 and src.get('tty3') == 1,
          f'R-AUTH-1 mediactl user status shows the failures per source ({st})')
    p = pd.mediactl('user', 'status', STAFF, user=ADMIN)
    check(re.search(r'^\s+2\s+last \S+\s+198\.51\.100\.20$', p.stdout, re.M) is not None,
          f'R-AUTH-1 ...also in the table form ({p.stdout!r})')
    pd.mediactl('user', 'unlock', STAFF, user=ADMIN, check=True)


def test_restart_and_period(pam, pd):
    # R-AUTH-1: the count survives a policyd restart.
    for _ in range(2):
        pam.run(STAFF, 'auth', password='wrong')
    pd.restart()
    check(status(pd, STAFF).get('failures') == 2, 'R-AUTH-1 failure count survives a policyd restart')
    for _ in range(3):
        pam.run(STAFF, 'auth', password='wrong')
    res, _, _ = pam.run(STAFF, 'auth', password=GOOD[STAFF])
    check(res.get('auth') == 'PAM_AUTH_ERR', 'R-AUTH-1 2 failures before and 3 after a restart lock')


def test_period(pam, pd):
    # R-AUTH-1: the lock lifts by itself after unlock_time (3 s in this config).
    for _ in range(5):
        pam.run(STAFF, 'auth', password='wrong')
    res, _, _ = pam.run(STAFF, 'auth', password=GOOD[STAFF])
    check(res.get('auth') == 'PAM_AUTH_ERR', 'R-AUTH-1 locked (short period)')
    time.sleep(3.5)
    res, _, _ = pam.run(STAFF, 'auth', password=GOOD[STAFF])
    check(res.get('auth') == 'PAM_SUCCESS', 'R-AUTH-1 the lock lifts after the period')


def test_race(pam, pd):
    # R-AUTH-1, linux-pam PR #1016: 50 concurrent wrong attempts, deny=5.
    pd.mediactl('user', 'unlock', STAFF, user=ADMIN, check=True)
    before = len(evidence(pd, 'auth.fail', STAFF))
    res, out, _ = pam.run(STAFF, 'auth', password='wrong', parallel=50)
    counts = dict((k, int(v)) for k, v in re.findall(r'^count (\S+) (\d+)$', out, re.M))
    check(counts.get('PAM_AUTH_ERR') == 50, f'R-AUTH-1 50 concurrent wrong attempts all refused ({counts})')
    tried = len(evidence(pd, 'auth.fail', STAFF)) - before
    check(tried == 5, f'R-AUTH-1 exactly 5 of 50 concurrent attempts reached the password check ({tried})')
    refused = len([r for r in evidence(pd, 'auth.refused', STAFF)])
    check(refused >= 45, f'R-AUTH-1 the other 45 were refused as locked ({refused})')
    st = status(pd, STAFF)
    check(st.get('locked') is True and st.get('failures') == 5, 'R-AUTH-1 locked with count 5 after the race')
    pd.mediactl('user', 'unlock', STAFF, user=ADMIN, check=True)


def test_unprivileged(pam, pd):
    # R-AUTH-6: a screen locker runs as the user.
    res, _, _ = pam.run(STAFF, 'auth', password=GOOD[STAFF], as_=STAFF)
    check(res.get('auth') == 'PAM_SUCCESS', 'R-AUTH-6 an unprivileged process authenticates its own user')
    res, _, _ = pam.run(STAFF2, 'auth', password=GOOD[STAFF2], as_=STAFF)
    check(res.get('auth') != 'PAM_SUCCESS', 'R-AUTH-6 ...but not another user')
    for t, what in ((102, 'read'), (96, 'count against'), (97, 'count against'), (103, 'reset')):
        check(pam.raw(t, STAFF2, as_=STAFF).startswith('status denied'),
              f"R-AUTH-6 staff cannot {what} another user's counter (type {t})")
    check(pam.raw(103, STAFF, as_=STAFF).startswith('status denied'), 'R-AUTH-6 staff cannot reset their own counter')
    check(pam.raw(106, STAFF, as_=STAFF).startswith('status denied'), 'R-AUTH-6 staff cannot enroll or see a TOTP secret')
    db = os.path.join(pd.state_dir, 'evidence.db')
    r = subprocess.run(as_user(STAFF) + ['cat', db], capture_output=True)
    check(r.returncode != 0 and os.path.exists(db), "R-AUTH-6 policyd's database (TOTP secrets) is unreadable to staff")
    # A locker's success gives back its own reservation only: it cannot reset the count.
    for _ in range(2):
        pam.run(STAFF, 'auth', password='wrong', as_=STAFF)
    pam.run(STAFF, 'auth', password=GOOD[STAFF], as_=STAFF)
    check(status(pd, STAFF).get('failures') == 2, 'R-AUTH-6 a non-root success does not reset the failure count')
    pam.run(STAFF, 'auth', password=GOOD[STAFF])
    check(status(pd, STAFF).get('failures') == 0, 'R-AUTH-1 a root (login/sshd) success resets it')


def test_ban_account_session(pam, pd):
    # R-AUTH-2: a ban refuses login at once, also without authentication (ssh keys).
    check(pd.mediactl('user', 'ban', STAFF, '--reason', 'test', user=ADMIN).returncode == 0, 'R-AUTH-2 ban')
    res, out, _ = pam.run(STAFF, 'auth', password=GOOD[STAFF])
    check(res.get('auth') == 'PAM_AUTH_ERR' and 'prohibited' in out and '禁止' in out,
          'R-AUTH-2 a banned user is refused with the right password, told so (ja+en)')
    res, _, _ = pam.run(STAFF, 'acct')
    check(res.get('acct') == 'PAM_PERM_DENIED', 'R-AUTH-2 account face refuses a banned user without auth')
    check(len(evidence(pd, 'auth.ban', STAFF)) == 1, 'R-AUTH-2 the ban is evidence')
    pd.mediactl('user', 'unban', STAFF, user=ADMIN, check=True)
    # Account face refuses a locked user even when authentication was skipped.
    for _ in range(5):
        pam.run(STAFF, 'auth', password='wrong')
    res, _, _ = pam.run(STAFF, 'acct')
    check(res.get('acct') == 'PAM_PERM_DENIED', 'R-AUTH-1 account face refuses a locked user (ssh keys)')
    pd.mediactl('user', 'unlock', STAFF, user=ADMIN, check=True)
    # R-EV-5 login and logout evidence with every field; R-AUTH-7 the previous login.
    res, _, _ = pam.run(STAFF, *T_ALL, password=GOOD[STAFF], tty='pts/7', rhost='198.51.100.9', service='sshd')
    check(all(res.get(o) == 'PAM_SUCCESS' for o in T_ALL), f'R-EV-5 auth, account, open, close succeed ({res})')
    res, out, _ = pam.run(STAFF, 'acct')
    check('Last login' in out and '前回のログイン' in out and '198.51.100.9' in out and 'pts/7' in out,
          'R-AUTH-7 the account face shows the previous login')
    for kind in ('session.open', 'session.close'):
        recs = [r for r in evidence(pd, kind, STAFF) if r['fields'].get('rhost') == '198.51.100.9']
        f = recs[-1]['fields'] if recs else {}
        ok = (f.get('user') == STAFF and f.get('service') == 'sshd' and f.get('tty') == 'pts/7'
              and re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', f.get('time', '')) is not None)
        check(ok, f'R-EV-5 {kind} evidence has time (to the second), user, service, tty, remote host: {f}')


def test_totp(pam, pd, tmp):
    # R-AUTH-3: codes from oathtool, every algorithm and length.
    for alg, digits in (('sha1', 6), ('sha1', 8), ('sha256', 6), ('sha256', 8), ('sha512', 6), ('sha512', 8)):
        pd.stop()
        with open(pd.config, 'w') as f:
            f.write(config(alg, digits))
        pd.start()
        pd.mediactl('user', 'unlock', STAFF2, user=ADMIN)
        secret = enroll(pd, STAFF2)
        check(secret is not None, f'R-AUTH-3 totp-enroll prints an otpauth URI ({alg}/{digits})')
        if not secret:
            continue
        code = oathtool(secret, alg, digits)
        res, out, _ = pam.run(STAFF2, 'auth', password=GOOD[STAFF2], code=code)
        check(res.get('auth') == 'PAM_SUCCESS' and '確認コード' in out,
              f'R-AUTH-3 oathtool {alg} {digits}-digit code accepted')
    # Replay, outside the window, wrong: refused, and each counts.
    base = status(pd, STAFF2).get('failures')
    res, _, _ = pam.run(STAFF2, 'auth', password=GOOD[STAFF2], code=code)
    check(res.get('auth') == 'PAM_AUTH_ERR', 'R-AUTH-3 a replayed code is refused')
    old = oathtool(secret, 'sha512', 8, offset='now - 5 minutes')
    res, _, _ = pam.run(STAFF2, 'auth', password=GOOD[STAFF2], code=old)
    check(res.get('auth') == 'PAM_AUTH_ERR', 'R-AUTH-3 a code outside the window is refused')
    wrong = '%08d' % ((int(oathtool(secret, 'sha512', 8)) + 1) % 10**8)
    res, out, _ = pam.run(STAFF2, 'auth', password=GOOD[STAFF2], code=wrong)
    check(res.get('auth') == 'PAM_AUTH_ERR' and '確認コードが正しくありません' in out and 'not correct' in out,
          'R-AUTH-3 a wrong code is refused, and the user told so (ja, en)')
    check(status(pd, STAFF2).get('failures') == base + 3, 'R-AUTH-3 the three refused codes count toward the lockout')
    results = [r['fields'].get('result') for r in evidence(pd, 'auth.totp', STAFF2)]
    check({'accepted', 'replayed', 'wrong'} <= set(results), f'R-EV-5 MFA results are evidence ({set(results)})')
    res, _, _ = pam.run(STAFF2, 'auth', password='wrong', code='000000')
    check(res.get('auth') == 'PAM_AUTH_ERR', 'R-AUTH-3 a wrong password never reaches the code')
    # A user without the second factor in the policy is not asked.
    res, out, _ = pam.run(STAFF, 'auth', password=GOOD[STAFF])
    check(res.get('auth') == 'PAM_SUCCESS' and '確認コード' not in out, 'R-AUTH-3 others are not asked')


def test_unreachable(pam, pd):
    pd.stop()
    res, _, _ = pam.run(STAFF, 'auth', 'acct', password=GOOD[STAFF])
    check(res.get('auth') == 'PAM_SUCCESS' and res.get('acct') == 'PAM_SUCCESS',
          'unreachable, mfa-closed: a user without MFA is left to the password')
    res, _, _ = pam.run(STAFF, 'auth', password='wrong')
    check(res.get('auth') == 'PAM_AUTH_ERR', 'unreachable: a wrong password is still refused')
    res, out, _ = pam.run(STAFF2, 'auth', password=GOOD[STAFF2], code='123456')
    check(res.get('auth') != 'PAM_SUCCESS' and 'cannot be reached' in out,
          'unreachable, mfa-closed: a user who needs MFA is refused (fail closed)')
    with open(pd.config, 'w') as f:
        f.write(config(unreachable='closed'))
    res, _, _ = pam.run(STAFF, 'auth', password=GOOD[STAFF])
    check(res.get('auth') != 'PAM_SUCCESS', 'unreachable, closed: everybody is refused')
    res, _, _ = pam.run('root', 'auth', 'acct', 'open', password=GOOD['root'], tty='tty1', rhost=None, service='login')
    check(all(res.get(o) == 'PAM_SUCCESS' for o in ('auth', 'acct', 'open')),
          'unreachable, closed: root on the local console gets in (the documented way in)')
    res, _, _ = pam.run('root', 'auth', password=GOOD['root'], tty='pts/0', rhost='192.0.2.1', service='sshd')
    check(res.get('auth') != 'PAM_SUCCESS', 'unreachable, closed: root over ssh does not')
    pd.start()


def token_conn(pd):
    """A connection to policyd as root (the agent's role) that reports USB devices."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(pd.socket)
    return s


def presence(s, serial, present, vendor='1050', product='0407', port='1-3'):
    """token-presence (65) on s; returns (status, {tag: bytes})."""
    body = struct.pack('>HH', 65, 0)
    for tag, v in ((144, vendor.encode()), (145, product.encode()), (146, serial.encode()), (152, port.encode()),
                   (172, bytes([present]))):
        body += struct.pack('>HI', tag, len(v)) + v
    s.sendall(struct.pack('>I', len(body)) + body)
    (n,) = struct.unpack('>I', s.recv(4, socket.MSG_WAITALL))
    rep = s.recv(n, socket.MSG_WAITALL)
    _, st = struct.unpack('>HH', rep[:4])
    fields, off = {}, 4
    while off < len(rep):
        tag, ln = struct.unpack('>HI', rep[off:off + 6])
        fields[tag] = rep[off + 6:off + 6 + ln]
        off += 6 + ln
    return st, fields


def test_token(pam, pd):
    """R-AUTH-4: a user the policy ties to a token logs in only while a token registered
    to them is plugged in (as the agent reports it), through real libpam."""
    pd.stop()
    with open(pd.config, 'w') as f:
        f.write(config().replace('unreachable =', 'token_users = [ "%s" ];\n  unreachable =' % STAFF))
    pd.start()
    p = pd.mediactl('token', 'register', '--no', 'TK-1', '--user', STAFF, '--vendor', '1050', '--product', '0407',
                    '--serial', 'YK-0001', user=ADMIN)
    check(p.returncode == 0, f'R-AUTH-4 an administrator registers a token ({p.stderr.strip()})')
    p = pd.mediactl('token', 'register', '--no', 'TK-2', '--user', STAFF, '--vendor', '1050', '--product', '0407',
                    '--serial', 'YK-0002', user=STAFF)
    check(p.returncode != 0, 'R-AUTH-4 staff cannot register a token')
    before = status(pd, STAFF).get('failures')
    res, out, _ = pam.run(STAFF, 'auth', 'acct', password=GOOD[STAFF])
    check(res.get('auth') == 'PAM_AUTH_ERR' and '認証トークンが挿入されていません' in out and 'not plugged in' in out,
          'R-AUTH-4 without the token the right password is refused, and the user told why (ja, en)')
    check(status(pd, STAFF).get('failures') == before, 'R-AUTH-4 a refusal for the missing token is not a failure')
    agent = token_conn(pd)
    st, f = presence(agent, 'NOT-A-TOKEN', 1)
    check(st == 4, f'R-AUTH-4 a device that is not a token: not-found ({st})')
    st, f = presence(agent, 'YK-0001', 1)
    check(st == 0 and f.get(4) == STAFF.encode() and f.get(172) == b'\x01',
          'R-AUTH-4 the token plugged in: policyd names its user')
    res, _, _ = pam.run(STAFF, 'auth', 'acct', password=GOOD[STAFF])
    check(res.get('auth') == 'PAM_SUCCESS' and res.get('acct') == 'PAM_SUCCESS',
          'R-AUTH-4 with the token plugged in the login succeeds')
    p = pd.mediactl('token', 'list', '--format', 'json', user=ADMIN)
    lst = json.loads(p.stdout or '[]')
    check(len(lst) == 1 and lst[0]['plugged_in'] is True and lst[0]['user'] == STAFF, f'R-AUTH-4 token list {lst}')
    ins = evidence(pd, 'token.insert')
    check(len(ins) == 1 and ins[0]['fields'].get('user') == STAFF and ins[0]['fields'].get('serial') == 'YK-0001'
          and ins[0]['fields'].get('port') == '1-3', 'R-EV-5 the insertion is evidence with user, token, port')
    st, f = presence(agent, 'YK-0001', 0)
    check(st == 0 and f.get(4) == STAFF.encode() and f.get(172) == b'\x00',
          'R-AUTH-4 pulled out: policyd names whose token it was (the agent locks their sessions)')
    check(len(evidence(pd, 'token.remove')) == 1, 'R-EV-5 the removal is evidence')
    res, _, _ = pam.run(STAFF, 'acct')
    check(res.get('acct') == 'PAM_PERM_DENIED', 'R-AUTH-4 the account face refuses without the token (ssh keys)')
    presence(agent, 'YK-0001', 1)
    agent.close()  # the agent's connection gone: what it reported is forgotten (fail closed)
    time.sleep(0.3)
    res, _, _ = pam.run(STAFF, 'auth', password=GOOD[STAFF])
    check(res.get('auth') == 'PAM_AUTH_ERR', 'R-AUTH-4 the reporting connection closed: the token no longer counts')
    staff_agent = subprocess.run(as_user(STAFF) + [sys.executable, os.path.abspath(__file__), '--presence', pd.socket],
                                 capture_output=True, text=True)
    check(staff_agent.stdout.strip() == '3', f'R-AUTH-4 a user cannot claim a token is present ({staff_agent.stdout})')
    p = pd.mediactl('token', 'retire', 'TK-1', user=ADMIN)
    check(p.returncode == 0, 'R-AUTH-4 a token is retired')
    agent = token_conn(pd)
    st, _ = presence(agent, 'YK-0001', 1)
    check(st == 4, 'R-AUTH-4 a retired token is no token')
    agent.close()
    pd.stop()
    with open(pd.config, 'w') as f:
        f.write(config())
    pd.start()


def fail_evidence(pd, type_):
    """Makes every insert of a type_ record fail in policyd's database (a trigger that
    aborts the statement), or, with None, removes that again. The failure is real:
    policyd's own INSERT of the record fails as on a full or broken disk."""
    db = sqlite3.connect(os.path.join(pd.state_dir, 'evidence.db'), timeout=30)
    if type_:
        db.execute(f"CREATE TRIGGER mamori_test_fail BEFORE INSERT ON records WHEN NEW.type = '{type_}'"
                   " BEGIN SELECT RAISE(ABORT, 'injected'); END")
    else:
        db.execute('DROP TRIGGER IF EXISTS mamori_test_fail')
    db.commit()
    db.close()


def test_evidence_failure(pam, pd):
    # R-EV-6: a state change and its evidence record commit together or not at all.
    pd.mediactl('user', 'unlock', STAFF, user=ADMIN, check=True)
    for _ in range(5):
        pam.run(STAFF, 'auth', password='wrong')
    check(status(pd, STAFF).get('locked') is True, 'R-EV-6 (set-up) locked')
    fail_evidence(pd, 'auth.unlock')
    try:
        p = pd.mediactl('user', 'unlock', STAFF, user=ADMIN)
        check(p.returncode != 0, 'R-EV-6 an unlock whose auth.unlock record cannot be stored is refused')
        st = status(pd, STAFF)
        check(st.get('locked') is True and st.get('failures') == 5,
              f'R-EV-6 ...and the account stays locked: no unlock without its record ({st})')
    finally:
        fail_evidence(pd, None)
    pd.mediactl('user', 'unlock', STAFF, user=ADMIN, check=True)
    fail_evidence(pd, 'auth.fail')
    try:
        res, _, _ = pam.run(STAFF, 'auth', password='wrong')
        check(res.get('auth') == 'PAM_AUTH_ERR', 'R-EV-6 a wrong password is refused when its record cannot be stored')
        check(status(pd, STAFF).get('failures') == 0, 'R-EV-6 ...and no failure is counted without its record')
    finally:
        fail_evidence(pd, None)
    res, _, _ = pam.run(STAFF, 'auth', password='wrong')
    check(status(pd, STAFF).get('failures') == 1 and len(evidence(pd, 'auth.fail', STAFF)) >= 1,
          'R-EV-6 with the store healthy again the failure and its record are kept')
    pd.mediactl('user', 'unlock', STAFF, user=ADMIN, check=True)


def preauth_raw(sock, user):
    """One auth-preauth (96) on an open connection (wire format: docs/protocol.md
    section 2); returns the reply's status."""
    name = user.encode()
    body = struct.pack('>HH', 96, 0) + struct.pack('>HI', 4, len(name)) + name
    sock.sendall(struct.pack('>I', len(body)) + body)
    head = b''
    while len(head) < 4:
        head += sock.recv(4 - len(head))
    n = struct.unpack('>I', head)[0]
    reply = b''
    while len(reply) < n:
        reply += sock.recv(n - len(reply))
    return struct.unpack('>H', reply[2:4])[0]


def test_abandoned_flood(pam, pd):
    # R-AUTH-1: attempts abandoned after preauth (4096 outstanding, the table's size)
    # do not make anyone else's attempt count: the oldest is settled as a failure of
    # its own user when the table is full.
    names = [f'mamori-flood-{i}' for i in range(4097)]
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(pd.socket)
        statuses = [preauth_raw(s, n) for n in names]
    check(all(st == 0 for st in statuses), 'R-AUTH-1 4097 reservations for 4097 names all answered ok')
    first = status(pd, names[0])
    check(first.get('failures') == 1, f'R-AUTH-1 the oldest abandoned attempt counts for its own user ({first})')
    recs = [r for r in evidence(pd, 'auth.fail', names[0]) if r['fields'].get('factor') == 'abandoned']
    check(len(recs) == 1, 'R-EV-5 ...with an auth.fail record, factor "abandoned"')
    check(status(pd, names[1]).get('failures') == 0, 'R-AUTH-1 the others still only reserved')
    res, _, _ = pam.run(STAFF, 'auth', password=GOOD[STAFF])
    check(res.get('auth') == 'PAM_SUCCESS' and status(pd, STAFF).get('failures') == 0,
          'R-AUTH-1 a full table does not count against another user')
    pd.restart()  # forgets the flood's reservations


def test_password(pam, pd):
    # R-AUTH-5: libpwquality (what pam_pwquality calls) with the shipped settings file.
    # pam_pwhistory keeps its history by /etc/shadow, so its check is not run here.
    shipped = os.path.join(SOURCE, 'rules', 'pwquality-mamori.conf')
    for pw, ok in (('Ab1!', False), ('abcdefgh1', False), ('abcdefg!x', False), ('12345678!', False),
                   ('Good#Pass9', True), ('xk7!pqzw', True)):
        check(pwquality_ok(shipped, pw) == ok,
              f'R-AUTH-5 pwquality with the shipped settings {"accepts" if ok else "refuses"} {pw!r}')


def pwquality_ok(conf, pw):
    """Checks a password with libpwquality's own checker and the shipped file."""
    code = ('import ctypes,sys\n'
            'l=ctypes.CDLL("libpwquality.so.1")\n'
            'l.pwquality_default_settings.restype=ctypes.c_void_p\n'
            's=l.pwquality_default_settings()\n'
            'r=l.pwquality_read_config(ctypes.c_void_p(s), sys.argv[1].encode(), None)\n'
            'if r: sys.exit(3)\n'
            'l.pwquality_check.argtypes=[ctypes.c_void_p,ctypes.c_char_p,ctypes.c_char_p,ctypes.c_char_p,ctypes.c_void_p]\n'
            'q=l.pwquality_check(ctypes.c_void_p(s), sys.argv[2].encode(), None, None, None)\n'
            'sys.exit(0 if q>=0 else 1)\n')
    rc = subprocess.run(['python3', '-c', code, conf, pw]).returncode
    if rc not in (0, 1):  # the settings file did not load: nothing was checked
        raise RuntimeError(f'libpwquality could not read {conf} ({rc})')
    return rc == 0


def main():
    tmp = tempfile.mkdtemp(prefix='mamori-pam-')
    os.chmod(tmp, 0o755)
    try:
        stack = test_stack(tmp)
        with Policyd(config=config(unlock=3)) as pd:
            passdb = os.path.join(tmp, 'passdb')
            for svc in ('mamori-test', 'sshd', 'login'):
                with open(f'{passdb}.{svc}', 'w') as f:
                    f.write(''.join(f'{u}:{p}:{svc}\n' for u, p in GOOD.items()))
                os.chmod(f'{passdb}.{svc}', 0o644)
            pam = Pam(pd, wrapper_dir(tmp, stack, pd, passdb))
            test_period(pam, pd)
            pd.stop()
            with open(pd.config, 'w') as f:
                f.write(config())
            pd.start()
            test_lockout(pam, pd)
            test_restart_and_period(pam, pd)
            test_sources(pam, pd)
            pd.mediactl('user', 'unlock', STAFF, user=ADMIN, check=True)
            test_race(pam, pd)
            test_unprivileged(pam, pd)
            test_ban_account_session(pam, pd)
            test_totp(pam, pd, tmp)
            test_evidence_failure(pam, pd)
            test_abandoned_flood(pam, pd)
            test_unreachable(pam, pd)
            test_token(pam, pd)
            test_password(pam, pd)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    done()


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--presence':  # as a user: try to claim a token
        c = socket.socket(socket.AF_UNIX)
        c.connect(sys.argv[2])
        print(presence(c, 'YK-0001', 1)[0])
    else:
        main()
