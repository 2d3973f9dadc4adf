#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Manager keys and signed grants through the real mediactl and policyd, as the real
role users: trust, create, list, revoke, export/import, once-only use, the decision
rules grants add, forged and altered grants, and roles (R-PERM-1..3, R-OUT-1..3,
R-IN-1, R-EV-3, R-EV-6)."""
import base64
import json
import os
import pwd
import socket
import stat
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from mamori_test import Policyd, check, done  # noqa: E402

ADMIN, MANAGER, AUDITOR = 'mamori-t-admin', 'mamori-t-manager', 'mamori-t-auditor'
STAFF, STAFF2 = 'mamori-t-staff', 'mamori-t-staff2'
PASS = 'correct horse battery staple\n'
BEGIN, END = '-----BEGIN MAMORI GRANT-----', '-----END MAMORI GRANT-----'


def private_dir(pd, name, owner):
    d = os.path.join(pd.tmp, name)
    os.mkdir(d, 0o700)
    pw = pwd.getpwnam(owner)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def keygen(pd, path, user=MANAGER):
    p = pd.mediactl('manager', 'keygen', '--key', path, '--passphrase-fd', '0', user=user, input=PASS)
    return p.returncode, p.stdout.strip(), p.stderr


def grant(pd, key, *args, user=MANAGER, passphrase=PASS):
    p = pd.mediactl('grant', 'create', '--key', key, '--passphrase-fd', '0', *args, user=user, input=passphrase)
    return p.returncode, p.stdout.strip(), p.stderr


def decide(pd, user, mode, serial='SN-M1', host='pc-01'):
    p = pd.mediactl('media', 'decide', '--vendor', '0781', '--product', '5567', '--serial', serial,
                    '--port', '1-1', '--host', host, '--user', user, '--mode', mode, '--format', 'json')
    try:
        return json.loads(p.stdout)
    except ValueError:
        return {'stderr': p.stderr}


def records(pd, rtype):
    p = pd.mediactl('log', '--type', rtype, '--format', 'json', user=AUDITOR)
    recs = json.loads(p.stdout) if p.stdout.strip() else []
    return [r for r in recs if r['type'] == rtype]


def grants(pd, user=AUDITOR):
    p = pd.mediactl('grant', 'list', '--format', 'json', user=user)
    return {g['id']: g for g in json.loads(p.stdout)} if p.returncode == 0 else None


def setup_ledger(pd):
    for no, serial, users in (('M-1', 'SN-M1', f'{STAFF},{STAFF2}'), ('M-2', 'SN-M2', STAFF)):
        pd.mediactl('media', 'register', '--no', no, '--type', 'USBメモリ', '--purpose', '資料搬送',
                    '--manager', MANAGER, '--start', '2026-01-01', '--end', '2099-12-31', '--vendor', '0781',
                    '--product', '5567', '--serial', serial, '--users', users, user=ADMIN, check=True)


def read_armor(path):
    with open(path) as f:
        lines = f.read().strip().split('\n')
    return base64.b64decode(''.join(lines[1:-1]))


def write_armor(path, blob):
    b = base64.b64encode(blob).decode()
    with open(path, 'w') as f:
        f.write(BEGIN + '\n' + ''.join(b[i:i + 64] + '\n' for i in range(0, len(b), 64)) + END + '\n')
    os.chmod(path, 0o644)


def test_keys_and_trust(pd, keys):
    key = os.path.join(keys, 'manager.key')
    rc, pub, _ = keygen(pd, key)
    st = os.stat(key)
    check(rc == 0 and len(pub) == 44, 'R-PERM-2: a manager makes a signing key')
    check(stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == pwd.getpwnam(MANAGER).pw_uid,
          'R-PERM-2: the secret key file is 0600 and the manager\'s')
    p = pd.run(['cat', key], user=STAFF)
    check(p.returncode != 0, 'R-PERM-2: nobody else can read the secret key')
    with open(key, 'rb') as f:
        blob = f.read()
    check(blob.startswith(b'MMGRKEY1') and PASS.strip().encode() not in blob,
          'the key file is encrypted (no passphrase, no plain secret header)')
    rc, _, err = keygen(pd, key)
    check(rc != 0 and 'cannot create' in err, 'keygen never overwrites a key file (O_EXCL)')
    rc, _, err = grant(pd, key, '--media', 'M-1', '--user', STAFF, '--any-host', '--until', '+1h',
                       '--mode', 'read', passphrase='wrong passphrase\n')
    check(rc == 1 and 'wrong passphrase' in err, 'a wrong passphrase does not unlock the key')
    rc, _, err = grant(pd, key, '--media', 'M-1', '--user', STAFF, '--any-host', '--until', '+1h', '--mode', 'read')
    check(rc == 1 and 'not a trusted manager key' in err, 'R-PERM-2: a key root has not trusted makes no grant')
    for user in (ADMIN, MANAGER, AUDITOR):
        p = pd.mediactl('manager', 'trust', pub, '--name', MANAGER, user=user)
        check(p.returncode == 1 and 'denied' in p.stderr, f'R-PERM-2: {user} cannot trust a manager key')
    p = pd.mediactl('manager', 'trust', pub, '--name', MANAGER)
    check(p.returncode == 0, 'R-PERM-2: root trusts the manager\'s key')
    recs = records(pd, 'manager.trust')
    check(len(recs) == 1 and recs[0]['fields'].get('pubkey') == pub and recs[0]['fields'].get('manager') == MANAGER,
          'R-EV-6: the trust change is an evidence record naming key and manager')
    p = pd.mediactl('manager', 'list', user=AUDITOR)
    check(p.returncode == 0 and pub in p.stdout and 'trusted' in p.stdout, 'manager list shows the trusted key')
    return key, pub


def test_grant_rules(pd, key):
    g = lambda *a: grant(pd, key, *a)  # noqa: E731
    rc, gid, err = g('--media', 'M-1', '--user', STAFF, '--host', 'pc-01', '--from', 'now', '--until', '+1h',
                     '--mode', 'write-encrypted')
    check(rc == 0 and len(gid) == 32, f'R-PERM-1: a manager grants encrypted output for a period, host, user {err}')
    d = decide(pd, STAFF, 'write-encrypted')
    check(d.get('permit') is True, 'R-OUT-2: the grant permits encrypted output')
    ent = [e for e in d.get('rights', []) if e.get('grant') == gid]
    check(len(ent) == 1 and ent[0]['modes'] == 'write-encrypted' and ent[0]['subject'] == STAFF,
          'decision: the grant appears as (user, mode, expiry)')
    check(d.get('next_change', '') == ent[0].get('until') if ent else False,
          'decision: the answer next changes when the grant ends')
    check(decide(pd, STAFF, 'write-plain').get('permit') is False,
          'R-OUT-3: encrypted granted, plaintext asked: refused')
    check(decide(pd, STAFF, 'write-passphrase').get('permit') is False,
          'R-OUT-3: encrypted granted, passphrase asked: refused')
    check(decide(pd, STAFF2, 'write-encrypted').get('permit') is False, 'R-PERM-1: a grant for another user')
    check(decide(pd, STAFF, 'write-encrypted', host='pc-02').get('permit') is False,
          'R-PERM-1: a grant for another host')
    recs = [r for r in records(pd, 'grant.create') if r['fields'].get('grant_id') == gid]
    f = recs[0]['fields'] if recs else {}
    check(f.get('grantor') == MANAGER and f.get('from') and f.get('until') and f.get('user') == STAFF
          and f.get('modes') == 'write-encrypted' and f.get('target_host') == 'pc-01',
          'R-EV-3: the grant is evidence with its period and grantor')

    rc, later, _ = g('--media', 'M-1', '--user', STAFF2, '--any-host', '--from', '+1d', '--until', '+2d',
                     '--mode', 'write-plain')
    d = decide(pd, STAFF2, 'write-plain')
    ent_ids = [e.get('grant') for e in d.get('rights', [])]
    check(rc == 0 and d.get('permit') is False and later not in ent_ids, 'R-PERM-1: a grant not yet valid')
    rc, short, _ = g('--media', 'M-1', '--user', STAFF2, '--any-host', '--until', '+3m', '--mode', 'write-passphrase')
    d = decide(pd, STAFF2, 'write-passphrase')
    check(rc == 0 and d.get('permit') is True, 'R-PERM-3: a time-boxed grant permits now')
    rc, gone, _ = g('--media', 'M-1', '--user', STAFF2, '--any-host', '--from', '-1h', '--until', 'now',
                    '--mode', 'read')
    check(rc == 1, 'a grant that has already ended is refused on submission')

    soon = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(time.time() + 5))
    rc, brief, _ = g('--media', 'M-2', '--user', STAFF, '--any-host', '--until', soon, '--mode', 'write-plain')
    d1 = decide(pd, STAFF, 'write-plain', serial='SN-M2')
    time.sleep(6)
    d2 = decide(pd, STAFF, 'write-plain', serial='SN-M2')
    check(rc == 0 and d1.get('permit') is True and d2.get('permit') is False,
          'R-PERM-3: an expired grant permits nothing (it expires by itself)')
    rc, widen, _ = g('--media', 'M-2', '--user', STAFF2, '--any-host', '--until', '+1h', '--mode', 'read')
    check(rc == 0 and decide(pd, STAFF2, 'read', serial='SN-M2').get('permit') is False,
          'R-REG-7: a grant for a user not on the medium\'s list does not apply')
    rc, allm, _ = g('--all', '--group', 'mamori-t-staff', '--any-host', '--until', '+1h', '--mode', 'write-encrypted')
    check(rc == 0 and decide(pd, STAFF, 'write-encrypted', serial='SN-M2').get('permit') is False,
          'R-REG-7: a group grant applies only where that group is listed')

    # Revoked (R-PERM-2: revocations are signed too and permanent).
    rc, rev, _ = g('--media', 'M-1', '--user', STAFF2, '--any-host', '--until', '+1h', '--mode', 'write-encrypted',
                   '--out', os.path.join(os.path.dirname(key), 'rev.grant'))
    before = decide(pd, STAFF2, 'write-encrypted').get('permit')
    p = pd.mediactl('grant', 'revoke', rev, '--key', key, '--passphrase-fd', '0', user=MANAGER, input=PASS)
    after = decide(pd, STAFF2, 'write-encrypted').get('permit')
    check(rc == 0 and before is True and p.returncode == 0 and after is False, 'R-PERM-2: a revoked grant permits nothing')
    gl = grants(pd)
    check(gl is not None and gl[rev]['state'] == 'revoked' and gl[short]['state'] == 'active'
          and gl[brief]['state'] == 'expired', 'grant list shows revoked, active and expired grants')
    recs = [r for r in records(pd, 'grant.revoke') if r['fields'].get('grant_id') == rev]
    check(len(recs) == 1 and recs[0]['fields'].get('revoked_by') == MANAGER and recs[0]['fields'].get('until'),
          'R-EV-3: the revocation is evidence with the period and who revoked')
    p = pd.mediactl('grant', 'import', os.path.join(os.path.dirname(key), 'rev.grant'), user=MANAGER)
    check(p.returncode == 1 and 'revoked' in p.stderr, 'a grant replayed after its revocation is refused')

    # Once-only (R-PERM-3): the agent reports the use; a second use is refused.
    rc, once, _ = g('--media', 'M-1', '--user', STAFF, '--any-host', '--until', '+1h', '--mode', 'write-plain',
                    '--once')
    d = decide(pd, STAFF, 'write-plain')
    ent = [e for e in d.get('rights', []) if e.get('grant') == once]
    check(rc == 0 and d.get('permit') is True and ent and ent[0]['once'] is True,
          'R-PERM-3: a once-only grant is offered, marked once')
    p1 = pd.mediactl('grant', 'consume', once, '--user', STAFF)
    p2 = pd.mediactl('grant', 'consume', once, '--user', STAFF)
    check(p1.returncode == 0 and p2.returncode == 1 and 'already used' in p2.stderr,
          'R-PERM-3: a once-only grant used twice: the second use is refused')
    check(decide(pd, STAFF, 'write-plain').get('permit') is False, 'R-PERM-3: a used once-only grant permits nothing')
    check(len(records(pd, 'grant.use')) == 1 and len(records(pd, 'grant.use.refused')) == 1,
          'R-PERM-3: the use and the refused second use are evidence')
    p = pd.mediactl('grant', 'consume', once, user=STAFF)
    check(p.returncode == 1 and 'denied' in p.stderr, 'only the agent reports a use')
    return gid


# evidence-submit with GRANT_ID, spoken directly (the view's way of recording an output
# under a once-only grant, docs/protocol.md 6): the grant's use and the record are one.
SUBMIT, T_TYPE, T_COMPONENT, T_PAIR, T_GRANT_ID = 16, 64, 67, 68, 161
S_OK, S_MALFORMED, S_NOT_FOUND, S_EXISTS, S_INVALID = 0, 2, 4, 5, 6


def submit_frame(file, grant_id, pairs=(), grant_len=16):
    def field(tag, v):
        return struct.pack('>HI', tag, len(v)) + v

    def pair(k, v):
        return field(T_PAIR, bytes([len(k)]) + k.encode() + v.encode())
    body = struct.pack('>HH', SUBMIT, 0) + field(T_TYPE, b'media.output') + field(T_COMPONENT, b'agent')
    body += pair('file', file) + pair('via', 'view') + b''.join(pair(k, v) for k, v in pairs)
    if grant_id is not None:
        body += field(T_GRANT_ID, bytes.fromhex(grant_id)[:grant_len])
    return struct.pack('>I', len(body)) + body


def reply_status(sock):
    """The status of the next reply, or None when policyd closed the connection."""
    data = b''
    while len(data) < 4 or len(data) < 4 + struct.unpack('>I', data[:4])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    return struct.unpack('>H', data[6:8])[0]


def connect(pd):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(pd.socket)
    s.settimeout(30)
    return s


def file_outputs(pd, file):
    return [r['fields'] for r in records(pd, 'media.output') if r['fields'].get('file') == file]


def test_use_with_record(pd, g):
    """R-PERM-3, R-EV-9: the agent's transfer record carries the once-only grant it used;
    policyd uses the grant and stores the record in one savepoint, or neither."""
    rc, once, _ = g('--media', 'M-1', '--user', STAFF, '--any-host', '--until', '+1h', '--mode',
                    'write-encrypted', '--once')
    # two agents' records under one grant, both sent before either reads its reply
    refused_before = len(records(pd, 'grant.use.refused'))
    a, b = connect(pd), connect(pd)
    a.sendall(submit_frame('race-a.txt', once))
    b.sendall(submit_frame('race-b.txt', once))
    st = sorted([reply_status(a), reply_status(b)])
    recs = file_outputs(pd, 'race-a.txt') + file_outputs(pd, 'race-b.txt')
    check(rc == 0 and st == [S_OK, S_EXISTS] and len(recs) == 1 and recs[0].get('grant_id') == once,
          f'R-PERM-3: two records under one once-only grant at once: one stored with grant_id, one refused ({st})')
    check(grants(pd)[once]['state'] == 'used' and len(records(pd, 'grant.use.refused')) == refused_before,
          'R-PERM-3: the grant is used; the refusal stored nothing (the agent records its own)')
    # a record too large to store: the grant's use is rolled back with it
    rc, once2, _ = g('--media', 'M-1', '--user', STAFF, '--any-host', '--until', '+1h', '--mode',
                     'write-encrypted', '--once')
    big = [(f'pad{i}', 'x' * 4096) for i in range(15)]
    s = connect(pd)
    s.sendall(submit_frame('big.txt', once2, big))
    st = reply_status(s)
    check(st == S_INVALID and grants(pd)[once2]['state'] == 'active' and not file_outputs(pd, 'big.txt'),
          f'R-EV-9: a record that cannot be stored leaves the once-only grant unused ({st})')
    s.sendall(submit_frame('after-big.txt', once2))
    check(reply_status(s) == S_OK and grants(pd)[once2]['state'] == 'used' and len(file_outputs(pd, 'after-big.txt')) == 1,
          'R-PERM-3: the same grant then stores the next record')
    # unknown, not once-only, malformed
    s.sendall(submit_frame('unknown.txt', '00' * 16))
    check(reply_status(s) == S_NOT_FOUND and not file_outputs(pd, 'unknown.txt'),
          'an unknown grant id: not-found, nothing stored (fail closed)')
    rc, lasting, _ = g('--media', 'M-1', '--user', STAFF, '--any-host', '--until', '+1h', '--mode', 'write-encrypted')
    s.sendall(submit_frame('lasting.txt', lasting))
    check(reply_status(s) == S_INVALID and not file_outputs(pd, 'lasting.txt'),
          'a grant that is not once-only is not used: invalid, nothing stored')
    s.sendall(submit_frame('short.txt', once2, grant_len=15))
    check(reply_status(s) == S_MALFORMED and reply_status(s) is None, 'a GRANT_ID of 15 bytes is malformed (strict)')
    rc, once3, _ = g('--media', 'M-1', '--user', STAFF, '--any-host', '--until', '+1h', '--mode',
                     'write-encrypted', '--once')
    s = connect(pd)
    s.sendall(submit_frame('dup.txt', once3, [('grant_id', once3)]))
    check(reply_status(s) == S_MALFORMED and grants(pd)[once3]['state'] == 'active' and not file_outputs(pd, 'dup.txt'),
          'a record that names the grant itself beside GRANT_ID is malformed; the grant stays unused')


def test_forgery(pd, key, keys, gid):
    path = os.path.join(keys, 'g.grant')
    p = pd.mediactl('grant', 'export', gid, path, user=AUDITOR)
    check(p.returncode != 0, 'export writes only where the caller may write (auditor: not the manager\'s dir)')
    out = os.path.join(pd.tmp, 'export.grant')
    p = pd.mediactl('grant', 'export', gid, out)
    blob = read_armor(out) if p.returncode == 0 else b''
    check(p.returncode == 0 and len(blob) > 100, 'grant export writes the signed grant in armor')
    # One changed byte in each field (R-CRY-4): magic, id, key, created, from, until,
    # modes, flags, kind, subject, media, host, signature.
    slen = int.from_bytes(blob[80:82], 'big')
    fields = {'magic': 0, 'id': 5, 'manager key (wrong key)': 21, 'created': 60, 'from': 68, 'until': 76,
              'modes': 77, 'flags': 78, 'kind': 79, 'subject': 82, 'media': 82 + slen + 2,
              'host': len(blob) - 64 - 1, 'signature': len(blob) - 1}
    for name, off in fields.items():
        bad = bytearray(blob)
        bad[off] ^= 0x01
        f = os.path.join(pd.tmp, 'bad.grant')
        write_armor(f, bytes(bad))
        p = pd.mediactl('grant', 'import', f, user=MANAGER)
        check(p.returncode == 1 and ('signature does not verify' in p.stderr or 'does not decode' in p.stderr),
              f'R-CRY-4: one changed byte in the {name} is refused with a clear message')
        os.unlink(f)
    # Untrusted key: a valid grant signed by a second, untrusted key.
    key2 = os.path.join(keys, 'other.key')
    keygen(pd, key2)
    rc, _, err = grant(pd, key2, '--media', 'M-1', '--user', STAFF, '--any-host', '--until', '+1h', '--mode', 'read')
    check(rc == 1 and 'not a trusted manager key' in err, 'R-PERM-2: a grant by an untrusted key is refused')
    n = len(records(pd, 'grant.create.refused'))
    check(n >= len(fields) + 2, f'every refused grant is evidence ({n})')
    p = pd.mediactl('grant', 'import', out, user=MANAGER)
    check(p.returncode == 1 and 'already' in p.stderr, 'the same grant cannot be submitted twice')
    return out


def test_roles(pd, key, keys):
    # An admin who is not a trusted manager cannot grant; nor can root (R-PERM-2).
    adm = private_dir(pd, 'admin-keys', ADMIN)
    rc, apub, _ = keygen(pd, os.path.join(adm, 'a.key'), user=ADMIN)
    rc, _, err = grant(pd, os.path.join(adm, 'a.key'), '--media', 'M-1', '--user', STAFF, '--any-host',
                       '--until', '+1h', '--mode', 'write-plain', user=ADMIN)
    check(rc == 1 and 'denied' in err, 'R-PERM-2: an admin cannot create a grant')
    rootkey = os.path.join(pd.tmp, 'root.key')
    keygen(pd, rootkey, user='root')
    rc, _, err = grant(pd, rootkey, '--media', 'M-1', '--user', STAFF, '--any-host', '--until', '+1h',
                       '--mode', 'write-plain', user='root')
    check(rc == 1 and 'denied' in err, 'R-PERM-2: root cannot create a grant without a trusted manager key')
    rc, _, err = grant(pd, key, '--media', 'M-1', '--user', STAFF, '--any-host', '--until', '+1h',
                       '--mode', 'write-plain', user=AUDITOR)
    check(rc != 0, 'Roles: an auditor cannot create a grant')
    p = pd.mediactl('grant', 'list', user=STAFF)
    check(p.returncode == 1 and 'denied' in p.stderr, 'Roles: staff cannot list grants')
    check(grants(pd, user=AUDITOR) is not None and grants(pd, user=ADMIN) is not None,
          'Roles: auditors and admins can read the grants (R-EV-4)')
    denied = [r for r in records(pd, 'access.denied') if r['fields'].get('request') == 'grant-submit']
    check(len(denied) >= 2, 'Roles: each refused grant submission is evidence')
    p = pd.mediactl('manager', 'untrust', apub)
    check(p.returncode == 1, 'untrust of a key that was never trusted says so')


def test_carry(key, pub, exported):
    # Another terminal: the same trusted key, the same ledger entry; the grant travels.
    with Policyd() as pd2:
        setup_ledger(pd2)
        p = pd2.mediactl('grant', 'import', exported, user=MANAGER)
        check(p.returncode == 1 and 'not a trusted' in p.stderr, 'import: a terminal that does not trust the key refuses')
        pd2.mediactl('manager', 'trust', pub, '--name', MANAGER, check=True)
        p = pd2.mediactl('grant', 'import', exported, user=MANAGER)
        check(p.returncode == 0, 'grant import: the signed grant is accepted on another terminal')
        check(decide(pd2, STAFF, 'write-encrypted').get('permit') is True, 'import: the grant applies there')
        p = pd2.mediactl('manager', 'untrust', pub)
        check(p.returncode == 0 and decide(pd2, STAFF, 'write-encrypted').get('permit') is False,
              'R-PERM-2: grants by a key no longer trusted permit nothing')
        check(len(records(pd2, 'manager.untrust')) == 1, 'R-EV-6: the untrust is evidence')


def main():
    with Policyd() as pd:
        setup_ledger(pd)
        keys = private_dir(pd, 'keys', MANAGER)
        key, pub = test_keys_and_trust(pd, keys)
        gid = test_grant_rules(pd, key)
        test_use_with_record(pd, lambda *a: grant(pd, key, *a))
        exported = test_forgery(pd, key, keys, gid)
        test_roles(pd, key, keys)
        test_carry(key, pub, exported)
    done()


if __name__ == '__main__':
    main()
