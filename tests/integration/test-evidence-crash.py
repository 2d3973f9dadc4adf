# SPDX-License-Identifier: GPL-2.0-or-later
"""policyd killed with SIGKILL while a client streams records (R-EV-9, R-EV-7): after
the restart every record the client saw acknowledged is in the store with its
content, and the chain verifies. Two rounds, so the chain also survives a restart
after a crash."""
import json
import os
import subprocess
import threading
import time

from mamori_test import BENCH_INGEST, Policyd, check, done


def stream_and_kill(pd, kill_after):
    """Streams records; SIGKILLs policyd once kill_after acks arrived. Returns {n: seq}."""
    proc = subprocess.Popen([BENCH_INGEST, '--socket', pd.socket, '--records', '10000000',
                             '--print-acks', '--window', '256'],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    acked = {}
    for line in proc.stdout:
        _, n, seq = line.split()
        acked[int(n)] = int(seq)
        if len(acked) == kill_after:
            pd.kill()
            break
    # Acks already in the pipe were sent before the kill: they count too.
    for line in proc.stdout:
        _, n, seq = line.split()
        acked[int(n)] = int(seq)
    proc.wait()
    return acked


def main():
    with Policyd('evidence: { checkpoint_records = 1000; };\n') as pd:
        anchor = os.path.join(pd.tmp, 'anchor.pub')
        with open(anchor, 'w') as f:
            f.write(pd.mediactl('evidence', 'anchor', check=True).stdout)
        total = {}
        for rnd in (1, 2):
            acked = stream_and_kill(pd, 15000)
            check(len(acked) >= 15000, f'round {rnd}: {len(acked)} records acknowledged before the kill')
            pd.start()
            p = pd.mediactl('log', '--type', 'media.output', '--format', 'json', user='mamori-t-auditor')
            check(p.returncode == 0, f'round {rnd}: the log reads after restart ({p.stderr.strip()})')
            stored = {r['seq']: r for r in json.loads(p.stdout)}
            # The client's counter restarts each round: key by seq, compare the content.
            lost = [(n, s) for n, s in acked.items() if s not in stored or stored[s]['fields']['n'] != str(n)]
            check(not lost, f'round {rnd}: every acknowledged record is stored with its content '
                            f'(lost: {lost[:5]})')
            total.update({s: n for n, s in acked.items()})
            v = pd.mediactl('verify', '--anchor', anchor, user='mamori-t-auditor')
            check(v.returncode == 0, f'round {rnd}: the chain verifies after the crash: {v.stdout.strip()}')
        check(len(total) >= 30000, f'{len(total)} distinct acknowledged records over both rounds')
    done()


main()
