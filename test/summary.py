#!/usr/bin/env python3
"""test/summary.py: count test cases from meson's testlog.json (TAP subtests counted one by one).

Prints 'N passed, N failed[, N skipped]' and writes the three numbers to --out if given.
"""
import json
import re
import sys

TAP = re.compile(r'^(not )?ok\b(.*)$')


def count(path):
    passed = failed = skipped = 0
    failures = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            t = json.loads(line)
            result = t.get('result', '')
            p = fl = s = 0
            for out in (t.get('stdout') or '').splitlines():
                m = TAP.match(out.strip())
                if not m:
                    continue
                directive = m.group(2).upper()
                if m.group(1):
                    if '# TODO' in directive:
                        p += 1
                    else:
                        fl += 1
                        failures.append('%s: %s' % (t['name'], out.strip()))
                elif '# SKIP' in directive:
                    s += 1
                else:
                    p += 1
            if p + fl + s == 0:
                # Not a TAP test (or it died before printing): the exit status is the verdict.
                if result in ('OK', 'EXPECTEDFAIL'):
                    p = 1
                elif result == 'SKIP':
                    s = 1
                else:
                    fl = 1
                    failures.append('%s: %s' % (t['name'], result))
            elif result not in ('OK', 'EXPECTEDFAIL', 'SKIP') and fl == 0:
                # Printed only passing cases, then crashed, timed out or lost its plan.
                fl += 1
                failures.append('%s: %s after %d passing cases' % (t['name'], result, p))
            passed += p
            failed += fl
            skipped += s
    return passed, failed, skipped, failures


def main():
    args = sys.argv[1:]
    out = None
    if len(args) >= 2 and args[0] == '--out':
        out = args[1]
        args = args[2:]
    if len(args) != 1:
        print('usage: summary.py [--out FILE] testlog.json', file=sys.stderr)
        return 2
    passed, failed, skipped, failures = count(args[0])
    for f in failures:
        print('FAILED ' + f)
    if out:
        with open(out, 'w') as f:
            f.write('%d %d %d\n' % (passed, failed, skipped))
    line = '%d passed, %d failed' % (passed, failed)
    if skipped:
        line += ', %d skipped' % skipped
    print(line)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
