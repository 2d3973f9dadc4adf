#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The media ledger through the real mediactl and policyd, as the real role users:
register, list, show, change, retire, inventory, identity matching, the decision rules
that come from the ledger and the policy file, roles, and bad input (R-REG-1..8, R-IN-1,
R-OUT-4, R-EXC-1, R-EV-6)."""
import json
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))
from mamori_test import Policyd, check, done  # noqa: E402

ADMIN, MANAGER, AUDITOR = 'mamori-t-admin', 'mamori-t-manager', 'mamori-t-auditor'
STAFF, STAFF2 = 'mamori-t-staff', 'mamori-t-staff2'

# Wire constants (common/wire.h) for the raw requests that bypass mediactl's own checks.
MSG_MEDIA_REGISTER, MSG_MEDIA_LIST = 48, 51
F = {'no': 128, 'type': 129, 'purpose': 130, 'manager': 131, 'start': 132, 'end': 133,
     'remarks': 134, 'user': 135, 'vendor': 144, 'product': 145, 'serial': 146, 'text': 1}
STATUS = ['ok', 'more', 'malformed', 'denied', 'not-found', 'exists', 'invalid', 'storage-failure']


def raw_main(argv):
    """--raw TYPE key=value...: sends one request and prints "status: text" (run as a user)."""
    mtype = int(argv[0])
    body = struct.pack('>HH', mtype, 0)
    for kv in argv[1:]:
        k, v = kv.split('=', 1)
        if k in ('start', 'end'):
            data = struct.pack('>q', int(v))
        else:
            data = v.encode('utf-8', 'surrogateescape')
        body += struct.pack('>HI', F[k], len(data)) + data
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ['MAMORI_SOCKET'])
    s.sendall(struct.pack('>I', len(body)) + body)
    hdr = s.recv(4, socket.MSG_WAITALL)
    (n,) = struct.unpack('>I', hdr)
    rep = s.recv(n, socket.MSG_WAITALL)
    _, status = struct.unpack('>HH', rep[:4])
    off, text = 4, ''
    while off < len(rep):
        tag, ln = struct.unpack('>HI', rep[off:off + 6])
        if tag == 1:
            text = rep[off + 6:off + 6 + ln].decode()
        off += 6 + ln
    print(f'{STATUS[status] if status < len(STATUS) else status}: {text}')


def raw(pd, user, mtype, **fields):
    args = [sys.executable, os.path.abspath(__file__), '--raw', str(mtype)]
    args += [f'{k}={v}' for k, v in fields.items()]
    return pd.run(args, user=user).stdout.strip()


def watch_connect(pd):
    """A MEDIA_WATCH connection as root (the agent's role); returns the socket."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(pd.socket)
    s.sendall(struct.pack('>IHH', 4, 60, 0))
    hdr = s.recv(4, socket.MSG_WAITALL)
    (n,) = struct.unpack('>I', hdr)
    rep = s.recv(n, socket.MSG_WAITALL)
    check(struct.unpack('>HH', rep[:4]) == (60, 0), 'watch: policyd accepts the agent watching')
    return s


def watch_heard(s, timeout=1.0):
    """The message types that arrived on the watch connection within timeout."""
    s.settimeout(timeout)
    got = []
    try:
        while True:
            hdr = s.recv(4, socket.MSG_WAITALL)
            if len(hdr) < 4:
                break
            (n,) = struct.unpack('>I', hdr)
            got.append(struct.unpack('>H', s.recv(n, socket.MSG_WAITALL)[:2])[0])
            s.settimeout(0.2)
    except socket.timeout:
        pass
    return got


def test_watch(pd):
    """Issue 5: policyd reports every committed change of the ledger to the agent's watch
    connection (MEDIA_CHANGED, 61), so revocations and retirements act at once; a refused
    change, a read or a decision reports nothing (a decision must not wake the agent into
    deciding again in a loop)."""
    s = watch_connect(pd)
    p = register(pd, 'W-1', serial='WATCH-1', extra=['--users', STAFF])
    check(p.returncode == 0 and watch_heard(s) == [61], 'watch: a registration is reported once')
    p = register(pd, 'W-1', serial='WATCH-1')
    check(p.returncode != 0 and watch_heard(s) == [], 'watch: a refused registration is not reported')
    decide(pd, serial='WATCH-1')
    pd.mediactl('media', 'list', user=ADMIN)
    check(watch_heard(s) == [], 'watch: decisions and reads are not reported')
    p = pd.mediactl('media', 'retire', 'W-1', user=ADMIN)
    check(p.returncode == 0 and watch_heard(s) == [61], 'watch: a retirement is reported')
    check(raw(pd, STAFF, 60) .startswith('denied'), 'watch: a user without the agent role may not watch')
    check(raw(pd, 'root', 61).startswith('denied'), 'watch: nobody may send the notification itself')
    s.close()


REG = ['--type', 'USBメモリ', '--purpose', '捜査資料の搬送', '--manager', 'mamori-t-manager',
       '--start', '2026-01-01', '--end', '2099-12-31']


def register(pd, no, vendor='0781', product='5567', serial='SN0001', extra=(), user=ADMIN):
    return pd.mediactl('media', 'register', '--no', no, *REG, '--vendor', vendor, '--product', product,
                       '--serial', serial, *extra, user=user)


def decide(pd, serial='SN0001', host='pc-01', port='1-1', extra=()):
    p = pd.mediactl('media', 'decide', '--vendor', '0781', '--product', '5567', '--serial', serial,
                    '--port', port, '--host', host, '--format', 'json', *extra)
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        return p.returncode, {'stdout': p.stdout, 'stderr': p.stderr}


def records(pd, rtype):
    p = pd.mediactl('log', '--type', rtype, '--format', 'json', user=AUDITOR)
    recs = json.loads(p.stdout) if p.stdout.strip() else []
    return [r for r in recs if r['type'] == rtype]  # --type also matches subtypes (x.refused)


def media_json(pd):
    return json.loads(pd.mediactl('media', 'list', '--format', 'json', user=AUDITOR).stdout)


def test_register_and_read(pd):
    # R-REG-4: every ledger field; Japanese text is normal; R-REG-7: users listed in advance.
    p = register(pd, '総務-001', extra=['--remarks', '月次点検済み', '--users', f'{STAFF},@mamori-admin'])
    check(p.returncode == 0, 'R-REG-4: admin registers a medium with a Japanese management number')
    p = pd.mediactl('media', 'show', '総務-001', '--format', 'json', user=AUDITOR)
    m = json.loads(p.stdout) if p.returncode == 0 else {}
    check(m.get('no') == '総務-001' and m.get('type') == 'USBメモリ' and m.get('purpose') == '捜査資料の搬送'
          and m.get('manager') == MANAGER and m.get('start') == '2026-01-01' and m.get('end') == '2099-12-31'
          and m.get('remarks') == '月次点検済み' and m.get('state') == 'active',
          'R-REG-4: show returns every ledger field as registered')
    check(sorted(m.get('users', [])) == sorted([STAFF, '@mamori-admin']), 'R-REG-7: the users are kept')
    p = pd.mediactl('media', 'list', '--format', 'csv', user=MANAGER)
    check(p.returncode == 0 and '"総務-001"' in p.stdout and p.stdout.startswith('no,'),
          'list --format csv, as a manager')
    p = pd.mediactl('media', 'list', user=ADMIN)
    check(p.returncode == 0 and '総務-001' in p.stdout and 'USBメモリ' in p.stdout, 'list table, as the admin')
    recs = records(pd, 'media.register')
    check(len(recs) == 1 and recs[0]['fields'].get('media') == '総務-001'
          and recs[0]['fields'].get('purpose') == '捜査資料の搬送', 'R-EV-6: the registration is an evidence record')
    p = register(pd, '総務-001', serial='OTHER')
    check(p.returncode == 1 and 'already' in p.stderr, 'R-REG-4: management numbers are unique')


def test_roles(pd):
    before = len(records(pd, 'access.denied'))
    p = register(pd, 'S-1', serial='ROLE1', user=STAFF)
    check(p.returncode == 1 and 'denied' in p.stderr, 'Roles: staff cannot register a medium')
    p = register(pd, 'S-2', serial='ROLE2', user=MANAGER)
    check(p.returncode == 1 and 'denied' in p.stderr, 'Roles: a manager cannot register (change the ledger)')
    p = pd.mediactl('media', 'change', '総務-001', '--purpose', 'x', user=MANAGER)
    check(p.returncode == 1 and 'denied' in p.stderr, 'Roles: a manager cannot change the ledger')
    p = pd.mediactl('media', 'retire', '総務-001', user=MANAGER)
    check(p.returncode == 1 and 'denied' in p.stderr, 'Roles: a manager cannot retire a medium')
    for verb in (['register'] + ['--no', 'A-9'] + REG + ['--vendor', '0781', '--product', '5567', '--serial', 'Z'],
                 ['change', '総務-001', '--purpose', 'x'], ['retire', '総務-001']):
        p = pd.mediactl('media', *verb, user=AUDITOR)
        check(p.returncode == 1 and 'denied' in p.stderr, f'Roles: an auditor cannot media {verb[0]}')
    p = pd.mediactl('media', 'list', user=AUDITOR)
    check(p.returncode == 0 and '総務-001' in p.stdout, 'Roles: an auditor can read the ledger')
    p = pd.mediactl('media', 'list', user=STAFF)
    check(p.returncode == 1, 'Roles: staff cannot read the ledger')
    p = pd.mediactl('media', 'decide', '--vendor', '0781', '--product', '5567', '--serial', 'SN0001',
                    '--port', '1-1', '--host', 'h', user=ADMIN)
    check(p.returncode == 1 and 'denied' in p.stderr, 'Roles: only the agent asks for decisions')
    after = records(pd, 'access.denied')
    check(len(after) - before == 9, f'Roles: each refusal is evidence ({len(after) - before} access.denied of 9)')
    check(media_json(pd)[0]['purpose'] == '捜査資料の搬送', 'Roles: nothing was changed by the refused requests')


def test_bad_input(pd):
    n_before = len(media_json(pd))
    ev_before = len(records(pd, 'media.register'))
    refused_before = len(records(pd, 'media.register.refused'))
    p = register(pd, 'A 001', serial='BAD1')
    check(p.returncode == 2 and 'management number' in p.stderr, 'bad input: a management number with a space')
    p = register(pd, '総務\u3000001', serial='BAD2')
    check(p.returncode == 2, 'bad input: a management number with an ideographic space')
    p = register(pd, 'X' * 33, serial='BAD3')
    check(p.returncode == 2, 'bad input: a management number over 32 characters')
    # The server checks too (a client that skips mediactl's checks).
    common = dict(type='t', purpose='p', manager='m', start=1767225600000000, end=4102444800000000,
                  vendor='0781', product='5567')
    out = raw(pd, ADMIN, MSG_MEDIA_REGISTER, no='A 001', serial='BAD4', **common)
    check(out.startswith('invalid:') and 'management number' in out, f'bad input: policyd refuses a space too ({out})')
    out = raw(pd, ADMIN, MSG_MEDIA_REGISTER, no='総務\u3000001', serial='BAD5', **common)
    check(out.startswith('invalid:'), f'bad input: policyd refuses an ideographic space ({out})')
    out = raw(pd, ADMIN, MSG_MEDIA_REGISTER, no='L-1', serial='BAD6', **dict(common, purpose='長' * 200))
    check(out.startswith('invalid:') and 'longer than' in out, f'bad input: an over-long purpose ({out})')
    out = raw(pd, ADMIN, MSG_MEDIA_REGISTER, no='L-2', serial='BAD7', **dict(common, remarks='x' * 3000))
    check(out.startswith('invalid:') and 'remarks' in out, f'bad input: over-long remarks ({out})')
    out = raw(pd, ADMIN, MSG_MEDIA_REGISTER, no='L-3', serial='BAD8', **dict(common, end=1767225600000000 - 1))
    check(out.startswith('invalid:') and 'end' in out, f'bad input: policyd refuses an end before the start ({out})')
    out = raw(pd, ADMIN, MSG_MEDIA_REGISTER, no='L-4', serial='BAD9', **dict(common, vendor='USB!'))
    check(out.startswith('invalid:') and 'hex' in out, f'bad input: a vendor that is not 4 hex digits ({out})')
    p = pd.mediactl('media', 'register', '--no', 'D-1', '--type', 't', '--purpose', 'p', '--manager', 'm',
                    '--start', '2026-02-30', '--end', '2027-01-01', '--vendor', '0781', '--product', '5567',
                    '--serial', 'D1', user=ADMIN)
    check(p.returncode == 2 and 'no such date' in p.stderr, 'bad input: 2026-02-30 does not exist')
    p = pd.mediactl('media', 'register', '--no', 'D-2', '--type', 't', '--purpose', 'p', '--manager', 'm',
                    '--start', '2027-01-01', '--end', '2026-01-01', '--vendor', '0781', '--product', '5567',
                    '--serial', 'D2', user=ADMIN)
    check(p.returncode == 2 and 'before' in p.stderr, 'bad input: --end before --start')
    p = pd.mediactl('media', 'register', '--no', 'D-3', '--type', 't', user=ADMIN)
    check(p.returncode == 1 and 'required' in p.stderr, 'bad input: missing fields are named')
    check(len(media_json(pd)) == n_before and len(records(pd, 'media.register')) == ev_before,
          'bad input: nothing half-written (no row, no registration record)')
    n = len(records(pd, 'media.register.refused')) - refused_before
    check(n == 7, f'bad input: each refusal by policyd is evidence ({n} of 7)')


def test_identity(pd):
    # Two identical sticks (same vendor, product, serial): never confused (docs/design.md).
    p = register(pd, 'TWIN-1', serial='DUP', extra=['--fs-uuid', '1111-AAAA'])
    check(p.returncode == 0, 'identity: first of two identical sticks, marked by filesystem UUID')
    p = register(pd, 'TWIN-2', serial='DUP')
    check(p.returncode == 1 and 'mark' in p.stderr, 'identity: the twin without a mark is refused')
    p = register(pd, 'TWIN-2', serial='DUP', extra=['--size', '16008609792'])
    check(p.returncode == 1 and 'one kind' in p.stderr, 'identity: the twin must use the same kind of mark')
    p = register(pd, 'TWIN-2', serial='DUP', extra=['--fs-uuid', '1111-AAAA'])
    check(p.returncode == 1 and 'same identity' in p.stderr, 'identity: the twin with the same mark is refused')
    p = register(pd, 'TWIN-2', serial='DUP', extra=['--fs-uuid', '2222-BBBB', '--users', STAFF])
    check(p.returncode == 0, 'identity: the twin with its own filesystem UUID is registered')
    _, d1 = decide(pd, serial='DUP', extra=['--fs-uuid', '1111-aaaa'])
    _, d2 = decide(pd, serial='DUP', extra=['--fs-uuid', '2222-BBBB'])
    _, d3 = decide(pd, serial='DUP')
    check(d1.get('media') == 'TWIN-1' and d2.get('media') == 'TWIN-2', 'identity: each twin is told apart')
    check(d3.get('verdict') == 'identify' and d3.get('reason') == 'identify' and not d3.get('rights'),
          'identity: a twin without its mark visible is to be identified first, with no rights (R-REG-1)')
    _, d4 = decide(pd, serial='DUP', extra=['--fs-uuid', '3333-CCCC'])
    check(d4.get('verdict') == 'blocked' and d4.get('reason') == 'unregistered',
          'identity: a third stick of that serial, another filesystem UUID, is refused (R-REG-1)')
    p = register(pd, 'NOSER', serial='')
    check(p.returncode == 1 and 'no serial' in p.stderr, 'identity: a device without a serial needs a mark')
    p = register(pd, 'NOSER', serial='', extra=['--token', 'tok-7f3a9c'])
    _, d = decide(pd, serial='', extra=['--token', 'tok-7f3a9c'])
    check(p.returncode == 0 and d.get('media') == 'NOSER', 'identity: a registration token marks a serial-less stick')


def test_decisions(pd):
    rc, d = decide(pd, serial='NEVER-SEEN')
    check(rc == 1 and d.get('verdict') == 'blocked' and d.get('reason') == 'unregistered',
          'R-REG-1: an unregistered medium is blocked')
    rc, d = decide(pd, extra=['--user', STAFF, '--mode', 'read'])
    check(rc == 0 and d.get('verdict') == 'allowed' and d.get('permit') is True,
          'R-IN-1 (registered): a listed user may read a registered medium')
    check(d.get('next_change', '').startswith('2100-01-01'), 'decision: next change is the end of use')
    rc, d = decide(pd, extra=['--user', STAFF2, '--mode', 'read'])
    check(rc == 1 and d.get('verdict') == 'allowed' and d.get('permit') is False,
          'R-REG-7: a user not in the medium\'s list may not read it')
    rc, d = decide(pd, extra=['--user', ADMIN, '--mode', 'read'])
    check(rc == 0 and d.get('permit') is True, 'R-REG-7: a member of a listed @group may read it')
    rc, d = decide(pd, extra=['--user', STAFF, '--mode', 'write-encrypted'])
    check(rc == 1 and d.get('permit') is False, 'R-OUT-2: no encrypted output without a grant (default)')
    # Expired registration and not yet in use (R-REG-6).
    p = pd.mediactl('media', 'register', '--no', 'OLD-1', '--type', 't', '--purpose', 'p', '--manager', 'm',
                    '--start', '2020-01-01', '--end', '2020-12-31', '--vendor', '0781', '--product', '5567',
                    '--serial', 'OLD', '--users', STAFF, user=ADMIN)
    rc, d = decide(pd, serial='OLD')
    check(p.returncode == 0 and d.get('verdict') == 'blocked' and d.get('reason') == 'registration-expired',
          'R-REG-6: a medium past its end of use is refused')
    pd.mediactl('media', 'register', '--no', 'NEW-1', '--type', 't', '--purpose', 'p', '--manager', 'm',
                '--start', '2098-01-01', '--end', '2099-01-01', '--vendor', '0781', '--product', '5567',
                '--serial', 'NEW', user=ADMIN)
    rc, d = decide(pd, serial='NEW')
    check(d.get('reason') == 'not-yet-in-use' and d.get('next_change', '').startswith('2098-01-01'),
          'R-REG-6: a medium before its start of use is refused until then')
    # Retired (R-REG-6).
    register(pd, 'RET-1', serial='RET', extra=['--users', STAFF])
    p = pd.mediactl('media', 'retire', 'RET-1', '--remarks', '破損のため廃止', user=ADMIN)
    rc, d = decide(pd, serial='RET', extra=['--user', STAFF, '--mode', 'read'])
    check(p.returncode == 0 and d.get('verdict') == 'blocked' and d.get('reason') == 'retired',
          'R-REG-6: a retired medium is refused like an unregistered one')
    p = pd.mediactl('media', 'change', 'RET-1', '--purpose', 'x', user=ADMIN)
    check(p.returncode == 1, 'R-REG-6: a retired medium cannot be changed')
    check(len(records(pd, 'media.retire')) == 1, 'R-EV-6: the retirement is evidence')
    n = len(records(pd, 'media.decision'))
    check(n >= 10, f'R-EV-3/6: every decision is an evidence record ({n})')


def test_change_and_inventory(pd):
    p = pd.mediactl('media', 'change', '総務-001', '--purpose', '証拠品の搬送', '--users', f'{STAFF},{STAFF2}',
                    user=ADMIN)
    m = json.loads(pd.mediactl('media', 'show', '総務-001', '--format', 'json', user=ADMIN).stdout)
    check(p.returncode == 0 and m['purpose'] == '証拠品の搬送' and sorted(m['users']) == [STAFF, STAFF2],
          'R-REG-4: change updates the ledger')
    recs = records(pd, 'media.change')
    check(len(recs) == 1 and recs[0]['fields'].get('purpose') == '証拠品の搬送', 'R-EV-6: the change is evidence')
    p = pd.mediactl('media', 'change', '総務-001', '--end', '2025-01-01', user=ADMIN)
    m2 = json.loads(pd.mediactl('media', 'show', '総務-001', '--format', 'json', user=ADMIN).stdout)
    check(p.returncode == 1 and m2['end'] == '2099-12-31', 'change: an end before the start is refused, nothing written')
    register(pd, 'IDLE-1', serial='IDLE')
    decide(pd, host='pc-honbu-07', port='2-1.4')
    p = pd.mediactl('media', 'inventory', '--format', 'json', user=AUDITOR)
    inv = {m['no']: m for m in json.loads(p.stdout)}
    check(inv['総務-001']['seen_host'] == 'pc-honbu-07' and inv['総務-001']['seen_port'] == '2-1.4'
          and inv['総務-001']['check'] == 'ok', 'R-REG-5: inventory shows when and where a medium was last seen')
    check(inv['IDLE-1']['check'] == 'never' and inv['RET-1']['check'] == '-',
          'R-REG-5: a medium never seen is flagged; a retired one is not checked')
    p = pd.mediactl('media', 'inventory', user=AUDITOR)
    check(p.returncode == 0 and 'pc-honbu-07' in p.stdout, 'R-REG-5: inventory table')


def test_device(pd):
    # --device reads the identity through udev; what is not a USB medium is refused.
    p = register(pd, 'DEV-1', extra=['--device', '/dev/null'])
    check(p.returncode == 2 and 'not a block device' in p.stderr, '--device: a character device is refused')
    img = os.path.join(pd.tmp, 'disk.img')
    with open(img, 'wb') as f:
        f.truncate(1 << 20)
    lo = pd.run(['losetup', '--find', '--show', img])
    if lo.returncode != 0:
        print('# SKIP --device with a loop device: losetup failed')
        return
    dev = lo.stdout.strip()
    try:
        p = pd.mediactl('media', 'register', '--no', 'DEV-2', *REG, '--device', dev, user=ADMIN)
        check(p.returncode == 1 and 'not a USB storage device' in p.stderr,
              '--device: a block device without a USB parent (a loop device) is refused')
    finally:
        pd.run(['losetup', '--detach', dev])


def test_policy_file(pd):
    # R-IN-1, R-REG-8: the media settings are checked like every other key.
    for text, key in (('media: { input_rule = "sometimes"; };\n', 'media.input_rule'),
                      ('media: { allowed_ports = ["1-1; rm"]; };\n', 'media.allowed_ports[0]'),
                      ('media: { optical_read = 1; };\n', 'media.optical_read'),
                      ('media: { exempt_host = []; };\n', 'media.exempt_host')):
        path = os.path.join(pd.tmp, 'bad.conf')
        with open(path, 'w') as f:
            f.write(text)
        p = pd.mediactl('check-config', path)
        check(p.returncode != 0 and key in p.stderr + p.stdout, f'policy file: a bad {key} is refused, naming it')
    path = os.path.join(pd.tmp, 'good.conf')
    with open(path, 'w') as f:
        f.write('media: { input_rule = "grant"; allowed_ports = ["1-1", "2-1.4"]; audit_only_hosts = ["pc-1"]; };\n')
    check(pd.mediactl('check-config', path).returncode == 0, 'policy file: a valid media section passes')


def test_policy():
    conf = ('media: { optical_read = true; exempt_hosts = ["pc-exempt"]; audit_only_hosts = ["pc-audit"];'
            ' allowed_ports = ["1-1", "1-2"]; };\n')
    with Policyd(config=conf) as pd:
        register(pd, 'P-1', extra=['--users', STAFF])
        rc, d = decide(pd, serial='CD-ROM-1', extra=['--kind', 'optical', '--user', STAFF2, '--mode', 'read'])
        check(rc == 0 and d.get('verdict') == 'allowed' and d.get('permit') is True,
              'R-REG-2: with the optical exception on, an unregistered disc is readable')
        rc, d = decide(pd, serial='CD-ROM-1', extra=['--kind', 'optical', '--user', STAFF2,
                                                     '--mode', 'write-encrypted'])
        check(rc == 1 and d.get('permit') is False, 'R-REG-2/R-OUT-4: ...but not writable unless optical_write')
        rc, d = decide(pd, serial='STICK-X')
        check(d.get('verdict') == 'identify' and not d.get('rights'),
              'R-REG-2: with the exception on, unregistered USB storage is first looked at (identify, no rights)')
        rc, d = decide(pd, serial='STICK-X', extra=['--size', '16008609792'])
        check(d.get('reason') == 'unregistered', 'R-REG-2: the exception is for optical discs only')
        rc, d = decide(pd, port='3-1')
        check(rc == 1 and d.get('reason') == 'port-disabled', 'R-REG-8: a medium on a disabled USB port is refused')
        rc, d = decide(pd, port='1-2', extra=['--user', STAFF, '--mode', 'read'])
        check(rc == 0 and d.get('permit') is True, 'R-REG-8: ...and used on an allowed port')
        rc, d = decide(pd, serial='STICK-X', host='pc-audit', extra=['--user', STAFF2, '--mode', 'write-plain',
                                                                     '--size', '16008609792'])
        check(rc == 0 and d.get('verdict') == 'audit-only' and d.get('permit') is True,
              'R-EXC-1: an audit-only host decides, records, and does not block')
        rc, d = decide(pd, serial='STICK-X', host='pc-exempt')
        check(rc == 0 and d.get('verdict') == 'exempt', 'R-EXC-1: an exempt host has media control off')
        recs = records(pd, 'media.decision')
        audit = [r for r in recs if r['fields'].get('verdict') == 'audit-only']
        check(len(audit) == 1 and audit[0]['fields'].get('enforced_reason') == 'unregistered',
              'R-EXC-1: the audit-only decision records what enforcement would have done')
    with Policyd(config='media: { input_rule = "grant"; encrypted_output_needs_grant = false; };\n') as pd:
        register(pd, 'G-1', extra=['--users', STAFF])
        rc, d = decide(pd, extra=['--user', STAFF, '--mode', 'read'])
        check(rc == 1 and d.get('permit') is False, 'R-IN-1 (grant): a listed user may not read without a grant')
        rc, d = decide(pd, extra=['--user', STAFF, '--mode', 'write-encrypted'])
        check(rc == 0 and d.get('permit') is True,
              'R-OUT-2: encrypted output without a grant when the policy allows it')
        rc, d = decide(pd, extra=['--user', STAFF, '--mode', 'write-plain'])
        check(rc == 1 and d.get('permit') is False, 'R-OUT-3: plaintext output still needs its own grant')
    with Policyd(config='') as pd:
        rc, d = decide(pd, serial='CD-ROM-1', extra=['--kind', 'optical'])
        check(rc == 1 and d.get('reason') == 'unregistered', 'R-REG-2: with the exception off (default) a disc is refused')


def main():
    with Policyd() as pd:
        test_register_and_read(pd)
        test_roles(pd)
        test_bad_input(pd)
        test_identity(pd)
        test_decisions(pd)
        test_change_and_inventory(pd)
        test_policy_file(pd)
        test_device(pd)
        test_watch(pd)
    test_policy()
    done()


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--raw':
        raw_main(sys.argv[2:])
    else:
        main()
