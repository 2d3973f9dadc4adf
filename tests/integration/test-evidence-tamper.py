# SPDX-License-Identifier: GPL-2.0-or-later
"""Tamper tests against a real store of over 10,000 records (R-EV-7, R-CRY-4): each
kind of tampering is caught by `mediactl verify` and the record is named; an
untouched store verifies, offline and live."""
import os
import re
import shutil
import sqlite3
import subprocess

from mamori_test import copy_db, BENCH_INGEST, TAMPER, Policyd, check, done

CONFIG = 'evidence: { checkpoint_records = 500; };\n'


def verify_copy(pd, tmp, name, *tamper):
    """Copies the store, applies one tampering, and verifies the copy offline."""
    db = os.path.join(tmp, name + '.db')
    copy_db(os.path.join(pd.state_dir, 'evidence.db'), db)
    if tamper:
        subprocess.run([TAMPER, tamper[0], db] + [str(a) for a in tamper[1:]], check=True)
    return pd.mediactl('verify', '--db', db, '--anchor', os.path.join(tmp, 'anchor.pub'))


def first_checkpoint_from(db, seq):
    """The seq of the first checkpoint at or after seq: it seals the record there."""
    con = sqlite3.connect(db)
    (s,) = con.execute('SELECT min(seq) FROM checkpoints WHERE seq >= ?', (seq,)).fetchone()
    con.close()
    return s


def expect_fault(p, kind, seq, what):
    out = p.stdout + p.stderr
    m = re.search(r'NOT INTACT: (\S+) at seq (\d+)', out)
    check(p.returncode == 1 and m and m.group(1) == kind and int(m.group(2)) == seq,
          f'{what}: exit 1, "{kind}" at seq {seq} (got rc={p.returncode}: {out.strip()})')


def main():
    with Policyd(CONFIG) as pd:
        tmp = pd.tmp
        ingest = lambda n: subprocess.run([BENCH_INGEST, '--socket', pd.socket, '--records', str(n)],
                                          check=True, capture_output=True)
        a = pd.mediactl('evidence', 'anchor', user='mamori-t-auditor', check=True)
        with open(os.path.join(tmp, 'anchor.pub'), 'w') as f:
            f.write(a.stdout)
        # Three epochs: the later ones' keys are what a later intruder would hold.
        ingest(4000)
        pd.mediactl('evidence', 'rotate', check=True)
        ingest(3000)
        pd.mediactl('evidence', 'rotate', check=True)
        ingest(3500)
        live = pd.mediactl('verify', '--anchor', os.path.join(tmp, 'anchor.pub'), user='mamori-t-auditor')
        check(live.returncode == 0 and '10500 records intact' in live.stdout,
              f'live store verifies as auditor: {live.stdout.strip()} {live.stderr.strip()}')
        pd.stop()  # seals the tail

        p = verify_copy(pd, tmp, 'clean')
        check(p.returncode == 0 and '10500 records intact' in p.stdout and '3 epochs' in p.stdout,
              f'untouched copy verifies with its count: {p.stdout.strip()}')
        expect_fault(verify_copy(pd, tmp, 'byte', 'alter-byte', 1234, 100), 'altered', 1234,
                     'one byte changed in a field of record 1234')
        p = verify_copy(pd, tmp, 'valbyte', 'alter-byte', 1500, -3)
        expect_fault(p, 'altered', 1500, 'one byte changed inside the last field value of record 1500')
        check('hash does not follow' in p.stdout, 'a well-formed alteration is caught by the hash, not the decoder')
        expect_fault(verify_copy(pd, tmp, 'seqbyte', 'alter-byte', 2345, 6), 'altered', 2345,
                     'one byte changed in the seq of record 2345, to a higher seq')
        expect_fault(verify_copy(pd, tmp, 'del', 'delete', 5000), 'missing', 5000,
                     'record 5000 deleted')
        expect_fault(verify_copy(pd, tmp, 'swap', 'swap', 2000, 2001), 'reordered', 2000,
                     'records 2000 and 2001 swapped')
        expect_fault(verify_copy(pd, tmp, 'ins', 'insert', 3000), 'inserted', 3001,
                     'a forged, hash-consistent record inserted after 3000')
        expect_fault(verify_copy(pd, tmp, 'trunc', 'truncate', 9000), 'truncated', 9000,
                     'tail from 9000 truncated past a checkpoint')
        expect_fault(verify_copy(pd, tmp, 'seqlow', 'alter-byte', 2345, 11), 'altered', 2345,
                     'one byte changed in the seq of record 2345, to a lower seq')
        key = os.path.join(pd.state_dir, 'epoch.key')  # epoch 2's key: all an intruder gets now
        cp = first_checkpoint_from(os.path.join(tmp, 'clean.db'), 100)
        p = verify_copy(pd, tmp, 'resign', 'resign', key, 100)
        expect_fault(p, 'bad-signature', cp, 'record 100 rewritten, chain rehashed, re-signed with epoch 2 key')
        check(f'records 1..{cp}' in p.stdout, f'the re-signed checkpoint names the records it seals: {p.stdout.strip()}')
        expect_fault(verify_copy(pd, tmp, 'resign-own', 'resign', key, 100, 'own'), 'bad-signature', cp,
                     'same, with the checkpoint claiming epoch 2')
        wrong = os.path.join(tmp, 'wrong.pub')
        with open(wrong, 'w') as f:
            f.write('mamori-anchor-v1 ' + '11' * 32 + '\n')
        p = pd.mediactl('verify', '--db', os.path.join(tmp, 'clean.db'), '--anchor', wrong)
        check(p.returncode == 1 and 'bad-epoch' in p.stdout, 'a store checked against another anchor fails')
    done()


main()
