# SPDX-License-Identifier: GPL-2.0-or-later
"""What a reviewer reads (R-EV-4, R-EV-10, R-EV-1): mediactl log filters by time, user,
type and medium, prints table, JSON and CSV, refuses dates that do not exist, and
keeps hostile strings from devices harmless in every format."""
import csv
import io
import json

from mamori_test import TEST_CLIENT, Policyd, check, done

DAY = 86400 * 1000000
T0 = 1767225600 * 1000000  # 2026-01-01T00:00:00Z
HOSTILE = 'x\x1b[31mRED\x07"\',;$(rm -rf /)../../etc/passwd 報告書'


def main():
    with Policyd() as pd:
        def submit(type_, t, **fields):
            p = pd.run([TEST_CLIENT, 'submit', type_, str(t)] + [f'{k}={v}' for k, v in fields.items()],
                       check=True)
            return p.stdout.split()[0]

        for i in range(30):
            submit('media.output', T0 + i * DAY, user='staff01' if i % 2 else 'staff02',
                   media=f'M-{i % 3}', file=f'f{i}.txt', size=str(100 + i), direction='output')
        submit('media.input', T0 + 40 * DAY, user='staff01', media='M-0', file='in.txt')
        submit('grant.create', T0 + 41 * DAY, user='staff01', media='M-0', grantor='manager01')
        st = submit('device.blocked', T0 + 42 * DAY, user=HOSTILE, serial=HOSTILE, file='=HYPERLINK("x")')
        check(st == 'ok', 'a record with hostile device strings is stored')

        def log(*args):
            p = pd.mediactl('log', *args, user='mamori-t-auditor')
            return p

        j = json.loads(log('--since', '2026-01-10', '--until', '2026-01-20', '--format', 'json').stdout)
        check(len(j) == 10 and all(T0 + 9 * DAY <= r['time_us'] < T0 + 19 * DAY for r in j),
              f'--since/--until select a time range ({len(j)} records)')
        j = json.loads(log('--user', 'staff01', '--type', 'media.output', '--format', 'json').stdout)
        check(len(j) == 15 and all(r['fields']['user'] == 'staff01' for r in j), '--user and --type combine')
        j = json.loads(log('--type', 'media', '--format', 'json').stdout)
        check(len(j) == 31, f'--type media matches its subtypes ({len(j)})')
        j = json.loads(log('--media', 'M-0', '--format', 'json').stdout)
        check(len(j) == 12, f'--media selects one medium ({len(j)})')
        j = json.loads(log('--limit', '5', '--format', 'json').stdout)
        check([r['seq'] for r in j] == [1, 2, 3, 4, 5], '--limit gives the first records in time order')
        check(all(k in j[0] for k in ('time', 'clock_synced', 'uid', 'host', 'machine_id', 'fields')),
              'JSON records carry time, clock state, uid, host and machine id (R-EV-1, R-EV-8)')

        j = json.loads(log('--type', 'device.blocked', '--format', 'json').stdout)
        check(j and j[0]['fields']['serial'] == HOSTILE, 'JSON keeps the hostile string exactly')
        t = log('--type', 'device.blocked').stdout
        check('\x1b' not in t and '\x07' not in t and '\\x1b' in t, 'the table escapes terminal control bytes')
        c = log('--type', 'device.blocked', '--format', 'csv').stdout
        rows = list(csv.reader(io.StringIO(c)))
        check(len(rows) == 2 and HOSTILE in rows[1][8], 'CSV quotes the hostile string as one cell')
        check(all(cell[:1] not in ('=', '+', '-', '@') for cell in rows[1]),
              'no CSV cell starts as a spreadsheet formula')
        c2 = log('--type', 'grant', '--format', 'csv').stdout
        check(list(csv.reader(io.StringIO(c2)))[0][0] == 'seq', 'CSV has a header row')

        for bad in ('2026-02-30', '2025-02-29', '2026-13-01', 'yesterday', '2026-01-01T25:00'):
            p = log('--since', bad)
            check(p.returncode == 2 and 'not a date' in p.stderr, f'--since {bad!r} is refused with a clear error')
        p = log('--type', 'Bad Type')
        check(p.returncode == 2, 'a malformed --type is refused')
        p = log('--format', 'xml')
        check(p.returncode == 2, 'an unknown --format is refused')
        p = log('--limit', '-1')
        check(p.returncode == 2, 'a negative --limit is refused')
    done()


main()
