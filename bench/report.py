#!/usr/bin/env python3
"""One markdown table from a peer_bench.sh results TSV (used by bench/run.sh).

    bench/report.py RESULTS.tsv [SIZE_MIB]

RESULTS.tsv is what ../shared/bench/peer_bench.sh appends to (RESULTS=...),
header: size_mib tool op wall_s sync_s cpu_s max_rss_mib inner_s
MiB_per_s_wall stored_bytes stored_files verify. Rows of other volume sizes
are skipped when SIZE_MIB is given. Give it a TSV of one run only (run.sh
writes a fresh one per run): with a tool repeated, its first row per op is
the one ratios refer to.

Per tool and op (full, incr, restore): wall s, inner s (cinder: the driver
call alone; ember: its JSON "seconds"; "=" when equal to wall), CPU s
(user+sys), max RSS MiB, repository size after the op in MiB, restore sha256
check; then Ember's ratios to that row's tool for the same op (ember / peer:
below 1 means Ember used less) for wall, CPU and RSS; on incr rows the
incremental's stored delta (repo after incr minus repo after full) and
Ember's delta ratio.
"""
import csv
import sys

MIB = 1048576.0
OPS = ('full', 'incr', 'restore')
COLUMNS = ['size_mib', 'tool', 'op', 'wall_s', 'sync_s', 'cpu_s', 'max_rss_mib',
           'inner_s', 'MiB_per_s_wall', 'stored_bytes', 'stored_files', 'verify']


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def ratio(a, b):
    if a is None or b is None:
        return 'n/a'
    if b == 0:
        return '0/0' if a == 0 else 'inf'
    return '%.2f' % (a / b)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    with open(sys.argv[1], newline='') as f:
        rd = csv.DictReader(f, delimiter='\t')
        missing = [c for c in COLUMNS if c not in (rd.fieldnames or [])]
        if missing:
            sys.exit('%s: not a peer_bench.sh TSV (missing %s)' % (sys.argv[1], ', '.join(missing)))
        rows = [r for r in rd if len(sys.argv) < 3 or r['size_mib'] == sys.argv[2]]
    if not rows:
        sys.exit('%s: no rows' % sys.argv[1])

    first = {}    # (tool, op) -> first row
    tools = []    # in run order
    for r in rows:
        first.setdefault((r['tool'], r['op']), r)
        if r['tool'] not in tools:
            tools.append(r['tool'])

    def delta(tool):  # stored bytes added by the incremental
        f, i = first.get((tool, 'full')), first.get((tool, 'incr'))
        if not f or not i:
            return None
        return num(i['stored_bytes']) - num(f['stored_bytes'])

    has_ember = 'ember' in tools
    e_delta = delta('ember') if has_ember else None

    hdr = ['tool', 'op', 'wall s', 'inner s', 'CPU s', 'max RSS MiB',
           'repo after op, MiB', 'restore sha256']
    if has_ember:
        hdr += ['ember/tool wall', 'ember/tool CPU', 'ember/tool RSS']
    hdr += ['incr delta MiB']
    if has_ember:
        hdr += ['ember/tool delta']
    right = [False, False] + [True] * 5 + [False] + [True] * (len(hdr) - 8)

    out = []
    for r in rows:
        tool, op = r['tool'], r['op']
        inner = '=' if r['inner_s'] == r['wall_s'] else (
            '%.2f' % num(r['inner_s']) if num(r['inner_s']) is not None else r['inner_s'])
        line = [tool, op, r['wall_s'], inner, r['cpu_s'], r['max_rss_mib'],
                '%.0f' % (num(r['stored_bytes']) / MIB),
                r['verify'] if r['verify'] != '-' else '']
        if has_ember:
            e = first.get(('ember', op))
            if tool == 'ember' or e is None:
                line += ['—'] * 3 if tool == 'ember' else ['n/a'] * 3
            else:
                line += [ratio(num(e[k]), num(r[k])) for k in ('wall_s', 'cpu_s', 'max_rss_mib')]
        if op == 'incr':
            d = delta(tool)
            line.append('%.1f' % (d / MIB) if d is not None else 'n/a')
            if has_ember:
                line.append('—' if tool == 'ember' else ratio(e_delta, d))
        else:
            line += [''] * (2 if has_ember else 1)
        out.append(line)

    print('| ' + ' | '.join(hdr) + ' |')
    print('|' + '|'.join('---:' if a else '---' for a in right) + '|')
    for line in out:
        print('| ' + ' | '.join(line) + ' |')

    print()
    size = rows[0]['size_mib']
    notes = ['Volume %s MiB; one row per timed command of `peer_bench.sh`.' % size,
             '"repo after op" is the repository\'s apparent size after the step; '
             '"incr delta" = repo after incr minus repo after full.']
    if has_ember:
        notes.append('Ratios are ember / tool for the same op (below 1: Ember used less '
                     'wall time, CPU, memory or stored bytes).')
    bad = [r['tool'] for r in rows if r['op'] == 'restore' and r['verify'] != 'OK']
    incomplete = [t for t in tools if any((t, op) not in first for op in OPS)]
    if bad:
        notes.append('**Restore did not match:** %s.' % ', '.join(bad))
    if incomplete:
        notes.append('**Incomplete (a step failed):** %s.' % ', '.join(incomplete))
    print(' '.join(notes))


if __name__ == '__main__':
    main()
