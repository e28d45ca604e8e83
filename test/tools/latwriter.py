#!/usr/bin/env python3
# test/tools/latwriter.py: the application of the mirror scenarios and benchmarks: a 4 KiB pwrite +
# fsync through the mount every 2 ms, each timed, until the stop file exists or its own deadline
# (bounded whatever happens to the script that started it).
#   latwriter.py FILE STOPFILE LIMIT_S [LATLOG] [--base BYTES] [--blocks N]
# FILE must exist. Writes at BASE + (k % N) * 4096 (defaults 65536, 4096). LATLOG gets
# "<realtime ns> <us>" per operation. Prints "writer: K ops, E errors" (each error on stderr);
# exit status 1 if any write or fsync failed.
import argparse, os, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("path")
ap.add_argument("stop")
ap.add_argument("limit", type=float)
ap.add_argument("latlog", nargs="?")
ap.add_argument("--base", type=int, default=65536)
ap.add_argument("--blocks", type=int, default=4096)
a = ap.parse_args()

fd = os.open(a.path, os.O_WRONLY)
buf = os.urandom(4096)
end = time.monotonic() + a.limit
k = errors = 0
lf = open(a.latlog, "w") if a.latlog else None
while time.monotonic() < end and not os.path.exists(a.stop):
    t = time.time_ns()
    t0 = time.monotonic_ns()
    try:
        os.pwrite(fd, buf, a.base + (k % a.blocks) * 4096)
        os.fsync(fd)
    except OSError as e:
        errors += 1
        print("write error: %s" % e, file=sys.stderr)
    if lf:
        lf.write("%d %d\n" % (t, (time.monotonic_ns() - t0) // 1000))
    k += 1
    time.sleep(0.002)
if lf:
    lf.close()
os.close(fd)
print("writer: %d ops, %d errors" % (k, errors))
sys.exit(1 if errors else 0)
