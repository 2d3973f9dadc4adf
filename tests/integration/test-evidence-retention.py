# SPDX-License-Identifier: GPL-2.0-or-later
"""Retention (R-EV-11, R-EV-1, R-EV-3): only whole epochs whose every record is past
its period are purged, media and login records after 5 years and permission records
after 1 year; the rest of the chain still verifies, and a purge record accounts for
the gap, so removing records by hand is still caught."""
import json
import os
import shutil
import sqlite3
import subprocess

from mamori_test import copy_db, BENCH_INGEST, Policyd, check, done


def main():
    with Policyd() as pd:
        anchor = os.path.join(pd.tmp, 'anchor.pub')
        with open(anchor, 'w') as f:
            f.write(pd.mediactl('evidence', 'anchor', check=True).stdout)

        def ingest(n, days, type_):
            subprocess.run([BENCH_INGEST, '--socket', pd.socket, '--records', str(n), '--days-ago', str(days),
                            '--type', type_], check=True, capture_output=True)
            pd.mediactl('evidence', 'rotate', check=True)

        ingest(300, 6 * 366, 'media.output')   # epoch 0: media, 6 years old: expired
        ingest(100, 2 * 366, 'grant.create')   # epoch 1: permissions, 2 years old: expired
        ingest(100, 2 * 366, 'media.output')   # epoch 2: media, 2 years old: kept
        ingest(50, 0, 'media.output')          # epoch 3: now
        p = pd.mediactl('evidence', 'purge', check=True)
        check(p.stdout.strip() == '400 records purged', f'the two expired epochs are purged: {p.stdout.strip()}')
        p = pd.mediactl('evidence', 'purge', check=True)
        check(p.stdout.strip() == '0 records purged', 'an epoch holding a record within its period is kept')

        v = pd.mediactl('verify', '--anchor', anchor, user='mamori-t-auditor')
        check(v.returncode == 0 and '151 records intact' in v.stdout,
              f'the rest verifies from the purge seal: {v.stdout.strip()}')
        recs = json.loads(pd.mediactl('log', '--type', 'evidence.purge', '--format', 'json',
                                      user='mamori-t-auditor').stdout)
        check(len(recs) == 1 and recs[0]['fields']['last_seq'] == '400'
              and recs[0]['fields']['records'] == '400', 'a purge record names what went')
        pd.restart()
        v = pd.mediactl('verify', '--anchor', anchor, user='mamori-t-auditor')
        check(v.returncode == 0, 'the purged store verifies after a restart')
        pd.stop()

        # Removing more records from the front by hand is not a purge: caught.
        copy = os.path.join(pd.tmp, 'copy.db')
        copy_db(os.path.join(pd.state_dir, 'evidence.db'), copy)
        con = sqlite3.connect(copy)
        con.execute('DELETE FROM records WHERE seq <= 410')
        con.commit()
        con.close()
        p = pd.mediactl('verify', '--db', copy, '--anchor', anchor)
        check(p.returncode == 1 and 'missing at seq 401' in p.stdout, f'hand-deleted records are caught: {p.stdout.strip()}')
    done()


main()
