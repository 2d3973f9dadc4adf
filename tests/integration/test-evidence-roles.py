# SPDX-License-Identifier: GPL-2.0-or-later
"""Who may ask what (R-EV-7, R-PERM-2, the Roles table): a peer without the role is
refused for every request type, and each refusal is evidence; reviewers can read
but not write evidence; a malformed or oversized message drops only that peer."""
import json
import socket
import struct

from mamori_test import TEST_CLIENT, Policyd, check, done

# Requests any local user may send (policyd then checks that a user asks only about
# their own account: a screen locker authenticates its own user). Everything else
# needs a role.
# evidence-transfer: a user records their own mediactl encrypt/decrypt (policyd names the
# user from the socket; R-EV-1).
OPEN_TO_ALL = {'ping', 'status', 'auth-preauth', 'auth-fail', 'auth-success', 'auth-account',
               'user-status', 'evidence-transfer'}


def ping(sock):
    """A ping on an existing connection; True if policyd answered ok."""
    sock.sendall(struct.pack('>IHH', 4, 1, 0))
    hdr = sock.recv(4)
    if len(hdr) < 4:
        return False
    (n,) = struct.unpack('>I', hdr)
    body = b''
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            return False
        body += chunk
    return struct.unpack('>H', body[2:4])[0] == 0


def main():
    with Policyd() as pd:
        types = [l.split() for l in pd.run([TEST_CLIENT, 'types'], check=True).stdout.splitlines()]
        check(len(types) >= 8, f'{len(types)} request types defined')
        denied = 0
        for num, name in types:
            p = pd.run([TEST_CLIENT, 'raw', num], user='mamori-t-staff')
            got = p.stdout.strip()
            if name in OPEN_TO_ALL:
                check(got != 'denied', f'{name} is open to every user (got {got})')
            else:
                check(got == 'denied', f'{name} is refused to a user without the role (got {got})')
                denied += 1

        # Each refusal is itself evidence, naming the peer and the request.
        p = pd.mediactl('log', '--type', 'access.denied', '--format', 'json', user='mamori-t-auditor')
        recs = json.loads(p.stdout) if p.returncode == 0 else []
        import pwd
        staff_uid = str(pwd.getpwnam('mamori-t-staff').pw_uid)
        mine = [r for r in recs if r['fields'].get('peer_uid') == staff_uid]
        check(len(mine) == denied, f'{len(mine)} access.denied records for {denied} refusals')

        # Staff cannot read the evidence; reviewers can read but not write it.
        p = pd.mediactl('log', user='mamori-t-staff')
        check(p.returncode == 1 and 'denied' in p.stderr, 'staff cannot read the evidence log')
        p = pd.mediactl('verify', user='mamori-t-staff')
        check(p.returncode == 1, 'staff cannot export the evidence for verification')
        for reviewer in ('mamori-t-auditor', 'mamori-t-manager'):
            check(pd.mediactl('log', user=reviewer).returncode == 0, f'{reviewer} can read the log')
            p = pd.run([TEST_CLIENT, 'raw', '16'], user=reviewer)
            check(p.stdout.strip() == 'denied', f'{reviewer} cannot submit evidence')
        p = pd.mediactl('evidence', 'rotate', user='mamori-t-admin')
        check(p.returncode == 1, 'an operations manager cannot rotate the evidence keys (root only)')

        # Bad messages drop only their own peer.
        keep = socket.socket(socket.AF_UNIX)
        keep.connect(pd.socket)
        check(ping(keep), 'a second client is served before')
        for bad in ('malformed', 'oversize', 'bad-submit'):
            user = 'root' if bad == 'bad-submit' else 'mamori-t-staff'
            p = pd.run([TEST_CLIENT, bad], user=user)
            check(p.stdout.strip() == 'dropped', f'a {bad} message drops its peer (got {p.stdout.strip()})')
        check(ping(keep), 'the other client is still served after')
        check(pd.proc.poll() is None, 'policyd is still running')
        keep.close()
    done()


main()
