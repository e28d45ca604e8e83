#!/usr/bin/env python3
"""bench/compare-report.py: the table of bench/compare.sh from its results.tsv (medians, half-ranges, ratios, floors).

usage: compare-report.py RESULTS.tsv REPS "BASE1 BASE2" TARGET...
results.tsv has one line per measurement: rep <TAB> workload <TAB> metric <TAB> target <TAB> value.
Workload sizes for the labels come from the environment (SEQ_SIZE RW_OPS NFILES FILE_SIZE DD_SIZE).
"""
import collections
import os
import statistics
import sys

tsv, reps, bases = sys.argv[1], sys.argv[2], sys.argv[3].split()
targets = sys.argv[4:]
env = os.environ.get

values = collections.defaultdict(list)
with open(tsv) as f:
    for line in f:
        fields = line.rstrip("\n").split("\t")
        if len(fields) != 5:
            continue
        rep, workload, metric, target, value = fields
        try:
            values[(workload, metric, target)].append(float(value))
        except ValueError:
            pass


def median(key):
    v = values.get(key)
    return statistics.median(v) if v else None


def half_range(key):
    """(max - min) / 2 as a percentage of the median: how far the repetitions disagree."""
    v = values.get(key)
    m = median(key)
    if not v or len(v) < 2 or not m:
        return ""
    return " ±%.0f%%" % (50.0 * (max(v) - min(v)) / abs(m))


def num(v):
    if v is None:
        return "-"
    a = abs(v)
    return "%.0f" % v if a >= 100 else "%.1f" % v if a >= 10 else "%.2f" % v


ROWS = [
    ("seqwrite", "MBps", "seq write 1 MiB x%s, end_fsync" % env("SEQ_SIZE", "?"), "MB/s"),
    ("randwrite", "iops", "4 KiB write+fsync (%s ops)" % env("RW_OPS", "?"), "IOPS"),
    ("randwrite", "op_mean_us", "  mean op = 1/IOPS", "us"),
    ("randwrite", "write_p50_us", "  write() p50", "us"),
    ("randwrite", "write_p99_us", "  write() p99", "us"),
    ("randwrite", "fsync_p50_us", "  fsync() p50", "us"),
    ("randwrite", "fsync_p99_us", "  fsync() p99", "us"),
    ("smallfiles", "files_per_s", "create %s x %s B + syncfs" % (env("NFILES", "?"), env("FILE_SIZE", "?")), "files/s"),
    ("smallfiles", "create_only_files_per_s", "  open/write/close only", "files/s"),
    ("seqread", "MBps", "seq read 1 MiB, cold cache", "MB/s"),
    ("cpu", "MBps", "dd bs=1M x%s conv=fsync" % env("DD_SIZE", "?"), "MB/s"),
    ("cpu", "cpu_s_per_gib", "  machine CPU per GiB written", "CPU-s"),
]
W0, W = 44, 20


def table(title, cell):
    print(title)
    print(" " * W0 + "".join("%-*s" % (W, t) for t in targets))
    for workload, metric, label, unit in ROWS:
        print("%-*s%-8s" % (W0 - 8, label, unit) + "".join("%-*s" % (W, cell(workload, metric, t)) for t in targets))
    print()


spread_note = ", median ±half-range" if int(reps) > 1 else ""
table("SteadyKit comparison (REPS=%s%s)" % (reps, spread_note),
      lambda w, m, t: num(median((w, m, t))) + half_range((w, m, t)))


def ratio(base):
    def cell(w, m, t):
        v, b = median((w, m, t)), median((w, m, base))
        return "%.2fx" % (v / b) if v is not None and b else "-"
    return cell


for base in bases:
    if base in targets:
        table("ratio of medians, target / %s (MB/s, IOPS, files/s: higher is better; us, CPU-s: lower is better)"
              % base, ratio(base))

print("network floor: TCP_NODELAY ping-pong from side A to side B on the link the targets use")
for label, what in (("same-cpu", "both ends pinned to one CPU, before any target ran"),
                    ("cross-cpu", "pinned to two CPUs, before any target ran"),
                    ("unpinned", "once per repetition, all targets mounted")):
    for size, name in (("64", "64 B "), ("4096", "4 KiB")):
        p50, p99, mean = (median(("rtt" + size, k, label)) for k in ("p50_us", "p99_us", "mean_us"))
        if p50 is not None:
            print("   %-9s %s RTT p50 %s us, p99 %s us, mean %s us  (%s)" % (label, name, num(p50), num(p99),
                                                                          num(mean), what))
native_op = median(("randwrite", "op_mean_us", "native"))
rtt4k = median(("rtt4096", "p50_us", "unpinned"))
if native_op and rtt4k is not None:
    floor = native_op + rtt4k
    print("sync-replication floor for 4 KiB write+fsync: native op %s us + unpinned 4 KiB RTT p50 %s us = %s us"
          " (%s IOPS)" % (num(native_op), num(rtt4k), num(floor), num(1e6 / floor)))
    for t in targets:
        iops = median(("randwrite", "iops", t))
        if t not in ("native", "fuse-ll") and iops:
            print("   %s reaches %.0f%% of it (%s IOPS)" % (t, 100.0 * iops * floor / 1e6, num(iops)))
rss = [(m[: -len("_hwm_mib")], median((w, m, t))) for (w, m, t) in sorted(values) if w == "rss"]
if rss:
    print("steadykit peak RSS (VmHWM before teardown): " + ", ".join("%s %s MiB" % (n, num(v)) for n, v in rss))
