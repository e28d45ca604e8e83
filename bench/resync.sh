#!/usr/bin/env bash
# bench/resync.sh: what a failback costs (issue 10 item 6). A mirrored tree (NFILES files, SIZE_MB in all,
# each node on a fresh loop-mounted ext4 image), the secondary stopped, PCT % of the data modified (in-place
# extents, appends, truncates, new files, renames, deletes), the secondary restarted; then:
#   bytes sent over the wire vs bytes modified  (skfused's resync.sent_bytes, and the secondary's veth rx bytes)
#   bytes read from disk on each node vs bytes modified (/proc/<pid>/io read_bytes of both skfused, page cache
#       dropped before the resync)
#   resync throughput vs the raw TCP throughput of the same link, measured in the same run (python, plain TCP)
#   the machine's CPU-seconds per GiB of each of the two (both nodes and the link share this host's cores),
#       and the throughput/link that the resync's CPU-seconds per GiB allow here with every core busy
# Last line: resync sent/modified=<r> read/modified=<r> throughput/link=<r>   (targets 1.05, 1.5, 0.8)
#
# Run as root from the repository after `meson setup build && ninja -C build`:
#     SK_BUILD=$PWD/build bash bench/resync.sh                # SIZE_MB=1024 NFILES=2000 PCT=5
#     SIZE_MB=100 SK_BUILD=$PWD/build bash bench/resync.sh    # a quick check
# "modified" counts the bytes written (in place, appended, new files). RENAME_PCT (default 0.2 % of the
# files) are renamed: one of 1 MiB or more takes the secondary's copy with its name (fused/moves.c) and is
# compared, a smaller one is sent whole, adding its size to what is sent; truncates and deletes send no
# data. The breakdown is printed.
# A user's size: NDIRS directories (default 100), PRESEED=1 writes the tree into the primary's backing
# directory before the mirror starts (the first sync replicates it; through the mount 100 000s of small
# files take minutes), INCR=0 measures the full (checksum) resync of the same tree instead, ENCRYPT=0 runs
# both skfused with --no-encrypt (MAC only), to tell the AEAD's share of the time from the rest:
#     NFILES=200000 NDIRS=2000 SIZE_MB=800 PRESEED=1 SK_BUILD=$PWD/build bash bench/resync.sh
# The images' loop devices do direct I/O (LOOP_DIO=0: the buffered loop, two page caches per byte).
# DB_MB=N adds a database-like file of N MiB to the tree, and DB_WRITES (2000) random 8 KiB page writes
# into it to the modifications (more places than a file's extents bound: it is tracked whole).
set -u
SK_SRC=${SK_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
SK_BUILD=${SK_BUILD:-$SK_SRC/build}
export SK_SRC SK_BUILD
export SKFUSED_RESYNC_INCREMENTAL=${INCR:-1} # what this benchmark measures (the default)
SIZE_MB=${SIZE_MB:-1024}
NFILES=${NFILES:-2000}
NDIRS=${NDIRS:-100}
PRESEED=${PRESEED:-0}
FUSED_ARGS=()
[ "${ENCRYPT:-1}" = 1 ] || FUSED_ARGS=(--no-encrypt)
PCT=${PCT:-5}
DB_MB=${DB_MB:-0}
DB_WRITES=${DB_WRITES:-2000}
RENAME_PCT=${RENAME_PCT:-0.2}
LINK_MB=${LINK_MB:-512}
source "$SK_SRC/test/cluster/mirror_common.sh"
for c in mkfs.ext4 losetup; do command -v "$c" >/dev/null || mt_bail "missing $c"; done
mt_init

# each node's replicated directory on its own fresh ext4 image (no journal, as the root fs here)
# files take whole 4 KiB blocks: room for the data so rounded (+30 %), the inodes, the directories
per_b=$(( ((SIZE_MB << 20) / NFILES + 4095) / 4096 * 4096 ))
img_mb=$(( (NFILES * per_b >> 20) * 13 / 10 + (NFILES * 2 + 65536) * 256 / 1048576 + NDIRS / 64 + 256 + DB_MB * 11 / 10 ))
for n in 1 2; do
	d=${SK_ROOT[$n]}/data
	truncate -s "${img_mb}M" "$SK_TMP/img$n" || mt_bail "image file"
	# inodes for every file (the default, one per 16 KiB, is short for small files)
	mkfs.ext4 -q -F -O ^has_journal -N $((NFILES * 2 + 65536)) -E lazy_itable_init=1,nodiscard \
		"$SK_TMP/img$n" || mt_bail "mkfs.ext4"
	sk_track_mount "$d"
	mount -o loop,noinit_itable "$SK_TMP/img$n" "$d" || mt_bail "loop mount"
	# direct I/O to the image file, as a disk (and as peers.sh's SCRATCH=loop): without it each byte
	# read or written goes through two page caches, the loop's and the root filesystem's
	[ "${LOOP_DIO:-1}" = 0 ] || losetup --direct-io=on "$(findmnt -n -o SOURCE "$d")" ||
		mt_bail "direct I/O on the loop device of $d"
done

io_read() { awk '/^read_bytes/ {print $2}' "/proc/$1/io" 2>/dev/null || echo 0; }
rx() { sk_in 2 ip -s -j link show dev eth0 | "$MT_PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["bytes"])'; }
st() { mt_st 1 "$1"; }
say() { echo "# $*"; }

mk_tree() {
	"$MT_PY" - "$1" "$NFILES" "$SIZE_MB" "$NDIRS" <<'EOF'
import os, sys
root, n, size, nd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) << 20, int(sys.argv[4])
per = size // n
for i in range(n):
    d = os.path.join(root, "d%04d" % (i % nd))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d" % i), "wb") as f:
        left = per
        while left:
            c = min(left, 1 << 20)
            f.write(os.urandom(c))
            left -= c
EOF
}
t0=$SECONDS
if [ "$PRESEED" = 1 ]; then
	say "building the tree: $NFILES files in $NDIRS directories, $SIZE_MB MiB, in the primary's backing directory"
	mk_tree "${SK_ROOT[1]}/data" || mt_bail "tree"
fi
mt_start_secondary "${FUSED_ARGS[@]}" || mt_bail "secondary did not start"
mt_start_primary "${FUSED_ARGS[@]}" || mt_bail "primary did not start"
if [ "$PRESEED" != 1 ]; then
	mt_wait_until 20 mt_peer_is connected || mt_bail "peer not connected"
	say "building the tree: $NFILES files in $NDIRS directories, $SIZE_MB MiB, through the mount"
	mk_tree "$MT_DIR1" || mt_bail "tree"
fi
if [ "$DB_MB" -gt 0 ]; then
	say "a database-like file: db.bin, $DB_MB MiB, through the mount"
	dd if=/dev/urandom of="$MT_DIR1/db.bin" bs=1M count="$DB_MB" conv=fsync status=none || mt_bail "db.bin"
fi
mt_wait_synced 1800 || mt_bail "initial sync"
say "tree built and replicated in $((SECONDS - t0)) s; resync so far: $(mt_st 1 resync.kind)"

# ---- the secondary goes away; PCT % of the data changes ----
sk_term "$MT_PID2"
mt_wait_until 20 bash -c "! mountpoint -q '$MT_DIR2'"
mt_wait_until 20 bash -c "! echo '{\"cmd\":\"status\"}' | nc -U -N '$MT_CTL1' | grep -q '\"peer\":\"connected\"'"
MOD_OUT=$("$MT_PY" - "$MT_DIR1" "$NFILES" "$SIZE_MB" "$PCT" "$RENAME_PCT" "$NDIRS" "$DB_MB" "$DB_WRITES" <<'EOF'
import os, random, sys
root, n, size, pct, rpct = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) << 20, float(sys.argv[4]), float(sys.argv[5])
db_mb, db_writes = int(sys.argv[7]), int(sys.argv[8])
random.seed(42)
per = size // n
budget = int(size * pct / 100)
nd = int(sys.argv[6])
files = [os.path.join(root, "d%04d" % (i % nd), "f%06d" % i) for i in range(n)]
random.shuffle(files)
mod = {"inplace": 0, "append": 0, "new": 0, "truncated": 0, "renamed_bytes": 0, "deleted": 0}
ext = min(65536, max(1, per // 2)) # small files: half of one
# 45 % in-place extents of 64 KiB, 20 % appends, 35 % new files
while mod["inplace"] < budget * 45 // 100:
    f = random.choice(files[len(files) // 10:])
    with open(f, "r+b") as fh:
        fh.seek(random.randrange(0, max(1, per - ext)))
        fh.write(os.urandom(ext))
    mod["inplace"] += ext
while mod["append"] < budget * 20 // 100:
    f = random.choice(files[len(files) // 10:])
    with open(f, "ab") as fh:
        fh.write(os.urandom(ext))
    mod["append"] += ext
k = 0
while mod["new"] < budget * 35 // 100:
    d = os.path.join(root, "new")
    os.makedirs(d, exist_ok=True)
    c = min(per, budget * 35 // 100 - mod["new"])
    with open(os.path.join(d, "n%05d" % k), "wb") as fh:
        fh.write(os.urandom(c))
    mod["new"] += c
    k += 1
one = max(1, n // 100)
for f in files[:one]:                       # 1 %: truncated to half (no data to send)
    os.truncate(f, per // 2)
    mod["truncated"] += 1
for f in files[one:2 * one]:                # 1 %: deleted
    os.unlink(f)
    mod["deleted"] += 1
for f in files[2 * one:2 * one + max(1, int(n * rpct / 100))]:   # renamed (from 1 MiB: moved on the peer)
    mod["renamed_bytes"] += os.stat(f).st_size
    os.rename(f, f + ".renamed")
if db_mb:                                   # 8 KiB pages written at random places of db.bin
    mod["db"] = 0
    fd = os.open(os.path.join(root, "db.bin"), os.O_WRONLY)
    for _ in range(db_writes):
        os.pwrite(fd, os.urandom(8192), random.randrange(0, (db_mb << 20) // 8192) * 8192)
        mod["db"] += 8192
    os.close(fd)
print(mod["inplace"] + mod["append"] + mod["new"] + mod.get("db", 0), " ".join("%s=%d" % kv for kv in mod.items()))
EOF
) || mt_bail "modifications"
MOD=${MOD_OUT%% *}
say "modified: $MOD bytes ($MOD_OUT)"
say "tracked: $(mt_st 1 resync.dirty)"

# ---- the machine's CPU, sampled every 20 ms from here on: both nodes share this host's cores, so the
# raw link and the resync are also compared in CPU-seconds per GiB (printed at the end) ----
CPU_LOG=$SK_TMP/cpu.samples
"$MT_PY" -c '
import os, sys, time
out, stop = sys.argv[1], sys.argv[2]
end = time.monotonic() + 3600
with open(out, "w") as f:
    while time.monotonic() < end and os.path.isdir(os.path.dirname(stop)) and not os.path.exists(stop):
        with open("/proc/stat") as s:
            v = [int(x) for x in s.readline().split()[1:9]]
        # busy: user nice system irq softirq (idle, iowait and steal are not work done here)
        f.write("%.4f %d\n" % (time.time(), v[0] + v[1] + v[2] + v[5] + v[6]))
        f.flush()
        time.sleep(0.02)
' "$CPU_LOG" "$SK_TMP/cpu.stop" &
CPU_PID=$!

# ---- the raw link, same namespaces, same run ----
LPORT=$((MT_PORT + 1))
sk_in 2 "$MT_PY" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(30)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    n += len(b)
' "${SK_IP[2]}" "$LPORT" &
sinkpid=$!
sleep 0.5
LINK_BPS=$(sk_in 1 "$MT_PY" -c '
import socket, sys, time
n = int(sys.argv[3]) << 20; buf = b"\0" * (1 << 20)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
t = time.monotonic(); w = time.time(); sent = 0
while sent < n:
    s.sendall(buf); sent += len(buf)
s.shutdown(socket.SHUT_WR); s.recv(1); t = time.monotonic() - t
print(int(n / t), "%.4f %.4f" % (w, time.time()))
' "${SK_IP[2]}" "$LPORT" "$LINK_MB")
wait "$sinkpid" 2>/dev/null
read -r LINK_BPS LINK_T0 LINK_T1 <<<"$LINK_BPS"
say "raw TCP on the same veth: $((LINK_BPS >> 20)) MiB/s ($LINK_MB MiB)"

# ---- failback ----
sync
# DROP_CACHES=0 keeps the page cache (the modified data is then read from memory): with it, a run
# tells how much of the resync's time is the primary's cold reads
[ "${DROP_CACHES:-1}" = 0 ] || echo 3 >/proc/sys/vm/drop_caches
r1_0=$(io_read "$MT_PID1")
rx0=$(rx)
P1LOG=$SK_TMP/fused1.$MT_N1.log
l0=$(wc -l <"$P1LOG")
mt_start_secondary "${FUSED_ARGS[@]}" || mt_bail "secondary restart"
# wait for the primary's "resync done" without polling its status: each poll (nc, python) would take
# tens of ms of the two cores the resync runs on (a quarter of the machine's CPU in a perf profile);
# tail -f waits on inotify. The status check follows.
grep -q -m1 'resync done' < <(exec timeout 1800 tail -n +$((l0 + 1)) -f "$P1LOG")
kill "$!" 2>/dev/null
mt_wait_synced 1800 || mt_bail "resync did not finish"
rx1=$(rx)
r1_1=$(io_read "$MT_PID1")
r2=$(io_read "$MT_PID2")
secs=$(sed -n 's/.*resync done in \([0-9.]*\) s.*/\1/p' "$P1LOG" | tail -n 1)
kind=$(st resync.kind)
sent=$(st resync.sent_bytes)
wire=$((rx1 - rx0))
# where the time went: the primary's resync lines of this failback (walks, scans, rounds)
tail -n +$((l0 + 1)) "$P1LOG" | grep -E 'resync|walk|scan|lost|budget|dropp' | head -n 40 | sed 's/^/#   /'
say "$(grep 'resync done' "$P1LOG" | tail -n 1)"
# one attempt is the target: every (re)connection of the failback starts one
say "attempts: $(tail -n +$((l0 + 1)) "$P1LOG" | grep -c 'connected to peer')"
say "secondary: $(grep 'resync prefetch' "$SK_TMP/fused2.$MT_N2.log" | tail -n 1)"
say "secondary: $(grep 'resync applied' "$SK_TMP/fused2.$MT_N2.log" | tail -n 1)"
say "secondary: $(grep 'resync data:' "$SK_TMP/fused2.$MT_N2.log" | tail -n 1)"
# a figure of a resync that left the trees different means nothing: compared after the measurement
# (CHECK=0 skips it; it reads both trees)
if [ "${CHECK:-1}" = 1 ]; then
	say "trees after the resync: $("$MT_PY" "$SK_SRC/test/tools/treecmp.py" --summary --times none "$MT_BACK1" "$MT_DIR2" 2>&1 | grep -v "$(printf '\tok\t')" | head -n 20)"
fi
say "resync kind $kind in ${secs:-?} s: data sent $sent bytes, secondary's veth received $wire bytes"
say "read from disk: primary $((r1_1 - r1_0)) bytes, secondary $r2 bytes (its whole life)"
# the resync's window on the machine's clock: from the primary's connection to its "resync done"
rs_t0=$(tail -n +$((l0 + 1)) "$P1LOG" | grep -m1 'connected to peer' | awk '{print $1}')
rs_t1=$(tail -n +$((l0 + 1)) "$P1LOG" | grep 'resync done' | tail -n 1 | awk '{print $1}')
touch "$SK_TMP/cpu.stop"
wait "$CPU_PID" 2>/dev/null
"$MT_PY" - "$MOD" "$wire" "$sent" "$((r1_1 - r1_0))" "$r2" "${secs:-0}" "$LINK_BPS" "$LINK_MB" \
	"$LINK_T0" "$LINK_T1" "${rs_t0:-?}" "${rs_t1:-?}" "$CPU_LOG" <<'EOF'
import bisect, os, sys, time
mod, wire, sent, r1, r2, secs, link, link_mb, l0, l1 = (float(x) for x in sys.argv[1:11])
thr = wire / secs if secs > 0 else 0.0
print("# per node read/modified: primary %.3f secondary %.3f; skfused data sent/modified %.3f" %
      (r1 / mod, r2 / mod, sent / mod))
print("# resync throughput %.1f MiB/s on the wire vs link %.1f MiB/s" % (thr / 2**20, link / 2**20))
# CPU-seconds of the whole machine in a window, from the cumulative busy ticks (interpolated)
ts, busy = [], []
for line in open(sys.argv[13]):
    a, b = line.split()
    ts.append(float(a)); busy.append(int(b))
def at(t):
    i = bisect.bisect_left(ts, t)
    if i <= 0 or i >= len(ts):
        return None
    return busy[i - 1] + (busy[i] - busy[i - 1]) * (t - ts[i - 1]) / (ts[i] - ts[i - 1])
def cpu_s(t0, t1):
    a, b = at(t0), at(t1)
    return None if a is None or b is None else (b - a) / os.sysconf("SC_CLK_TCK")
def log_time(hms):   # HH:MM:SS.mmm of a log line, today, local time
    h, m, sec = hms.split(":")
    t = time.localtime(ts[-1] if ts else time.time())
    return time.mktime(t[:3] + (int(h), int(m), 0) + t[6:]) + float(sec)
ncpu = os.cpu_count()
try:
    r0, r1t = log_time(sys.argv[11]), log_time(sys.argv[12])
except ValueError:
    r0 = r1t = None
lc = cpu_s(l0, l1)
rc = cpu_s(r0, r1t) if r0 is not None else None
if lc and rc and l1 > l0 and r1t > r0 and wire > 0:
    lg, rg = lc / (link_mb / 1024), rc / (wire / 2**30)
    lcores, rcores = lc / (l1 - l0), rc / (r1t - r0)
    print("# machine CPU (%d cores, both nodes): raw link %.2f CPU-s/GiB with %.2f cores busy; resync %.2f CPU-s/GiB "
          "on the wire with %.2f cores busy" % (ncpu, lg, lcores, rg, rcores))
    print("# on these shared cores a resync using all %d at its CPU-s/GiB would reach throughput/link %.2f" %
          (ncpu, (ncpu / rg) / (lcores / lg)))
print("resync sent/modified=%.3f read/modified=%.3f throughput/link=%.3f" %
      (wire / mod, max(r1, r2) / mod, thr / link if link else 0.0))
EOF
# the data directory is the image's mount point: only the FUSE mount on it goes (mt_stop_primary
# waits for no mount at all there, and the script ended with status 1 after every run)
fuse_gone() { [[ "$(findmnt -n -o FSTYPE --target "$MT_DIR1" | tail -n 1)" != fuse* ]]; }
sk_term "$MT_PID1" && mt_wait_until 10 fuse_gone
