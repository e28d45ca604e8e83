#!/usr/bin/env bash
# bench/firstsync.sh: the first synchronisation of a large existing tree (issue 10 item 3). NFILES files of
# FILE_SIZE bytes (0: empty) in NFILES/1000 directories are created on the primary's side BEFORE the mirror starts (each node
# on a fresh loop-mounted ext4 image, no journal); then the secondary (empty) and the primary start while
# an application does 4 KiB pwrite + fsync through the mount every 2 ms. Measured: how many attempts the
# first sync took (a peer loss starts a new one from the beginning), files per second from the primary's
# start to "in sync", and the application's write+fsync p99 while the sync ran.
# Last line: firstsync files=<n> attempts=<n> files_per_s=<n> app_p99_ms=<n>   (targets: 1 attempt,
# >= 20000 files/s, p99 below the 300 ms budget)
#
# Run as root from the repository after `meson setup build && ninja -C build`:
#     SK_BUILD=$PWD/build bash bench/firstsync.sh                  # NFILES=1000000, a few minutes
#     NFILES=100000 SK_BUILD=$PWD/build bash bench/firstsync.sh    # a quick check
# Knobs: NFILES (multiple of 1000), FILE_SIZE (bytes of random data per file, 0..1048576; default 0: empty
# files), BUDGET_MS (300), TIMEOUT_S (900: give up), IMG_TMPFS=1 (images in RAM
# instead of on the disk under $SK_TMP), JOURNAL=1 (ext4 with a journal), SK_EXTRA_ARGS (added to both
# skfused command lines).
set -u
SK_SRC=${SK_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
SK_BUILD=${SK_BUILD:-$SK_SRC/build}
export SK_SRC SK_BUILD
NFILES=${NFILES:-1000000}
BUDGET_MS=${BUDGET_MS:-300}
TIMEOUT_S=${TIMEOUT_S:-900}
FILE_SIZE=${FILE_SIZE:-0}
source "$SK_SRC/test/cluster/mirror_common.sh"
[[ "$NFILES" =~ ^[0-9]+$ ]] && [ "$NFILES" -ge 1000 ] || mt_bail "NFILES must be a number >= 1000"
for c in mkfs.ext4 losetup; do command -v "$c" >/dev/null || mt_bail "missing $c"; done
[[ "$FILE_SIZE" =~ ^[0-9]+$ ]] && [ "$FILE_SIZE" -le 1048576 ] || mt_bail "FILE_SIZE must be a number <= 1048576"
NDIRS=$((NFILES / 1000))
# MiB the files' data takes on ext4 (4 KiB blocks), added to each image
DATA_MB=$(((NFILES * ((FILE_SIZE + 4095) / 4096) * 4 + 1023) / 1024))
say() { echo "# $*"; }
mt_init

IMGDIR=$SK_TMP
if [ "${IMG_TMPFS:-0}" = 1 ]; then
	IMGDIR=$SK_TMP/shm
	mkdir -p "$IMGDIR" && sk_track_mount "$IMGDIR" &&
		mount -t tmpfs -o size=$((2 * (512 + NFILES / 1000 + DATA_MB) + NFILES / 250))m,mode=0755 tmpfs "$IMGDIR" ||
		mt_bail "tmpfs"
fi
JOPT=(-O ^has_journal -E lazy_itable_init=0,nodiscard)
[ "${JOURNAL:-0}" = 1 ] && JOPT=(-E lazy_itable_init=0,lazy_journal_init=0,nodiscard)
for n in 1 2; do
	d=${SK_ROOT[$n]}/data
	truncate -s $((512 + NFILES / 1000 + DATA_MB))M "$IMGDIR/img$n" || mt_bail "image file"
	mkfs.ext4 -q -F -N $((NFILES + NFILES / 10 + 20000)) "${JOPT[@]}" "$IMGDIR/img$n" >/dev/null 2>&1 ||
		mt_bail "mkfs.ext4"
	sk_track_mount "$d"
	mount -o loop "$IMGDIR/img$n" "$d" || mt_bail "loop mount"
done

say "creating $NFILES files of $FILE_SIZE bytes in $NDIRS directories (before the mirror starts)"
t0=$SECONDS
"$MT_PY" - "$MT_DIR1" "$NDIRS" "$FILE_SIZE" <<'EOF' || mt_bail "tree"
import os, sys
root, ndirs, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(ndirs):
    dp = os.path.join(root, "d%04d" % d)
    os.mkdir(dp)
    for i in range(1000):
        fd = os.open(os.path.join(dp, "f%04d" % i), os.O_CREAT | os.O_WRONLY, 0o644)
        if size:
            os.write(fd, os.urandom(size))
        os.close(fd)
with open(os.path.join(root, "app.log"), "wb") as fp:
    fp.write(os.urandom(65536))
EOF
sync
say "tree created in $((SECONDS - t0)) s; load $(cut -d' ' -f1-3 /proc/loadavg)"

# shellcheck disable=SC2086
mt_start_secondary ${SK_EXTRA_ARGS:-} || mt_bail "secondary did not start"
t_start=$(date +%s%N)
# shellcheck disable=SC2086
mt_start_primary --budget-ms "$BUDGET_MS" ${SK_EXTRA_ARGS:-} || mt_bail "primary did not start"
P1LOG=$SK_TMP/fused1.1.log

# the application: 4 KiB pwrite + fsync every 2 ms through the mount, each timed (bounded on its own)
WLOG=$SK_TMP/writer.lat
"$MT_PY" "$SK_SRC/test/tools/latwriter.py" "$MT_DIR1/app.log" "$SK_TMP/writer.stop" $((TIMEOUT_S + 30)) "$WLOG" \
	>"$SK_TMP/writer.out" 2>&1 &
wpid=$!

done_at=0
while [ $((($(date +%s%N) - t_start) / 1000000000)) -lt "$TIMEOUT_S" ]; do
	if [ "$(mt_st 1 peer)" = connected ] && [ "$(mt_st 1 resync.state)" = done ]; then
		done_at=$(date +%s%N)
		break
	fi
	sleep 0.2
done
touch "$SK_TMP/writer.stop"
wait "$wpid" 2>/dev/null
say "$(cat "$SK_TMP/writer.out")"
attempts=$(grep -c 'resynchronising' "$P1LOG")
say "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -E 'peer lost|oldest frame|resync done' "$P1LOG" | head -n 20 | sed 's/^/# /'
if [ "$done_at" = 0 ]; then
	say "NOT in sync after $TIMEOUT_S s"
	secs=0
else
	secs=$(awk -v a="$t_start" -v b="$done_at" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
	say "in sync ${secs} s after the primary's start"
fi
p99=$("$MT_PY" - "$WLOG" "$t_start" "$done_at" <<'EOF'
import sys
path, t0, t1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
v = sorted(us for t, us in (map(int, l.split()) for l in open(path)) if t >= t0 and (t1 == 0 or t < t1))
print("%d" % (v[min(len(v) - 1, int(len(v) * 0.99))] // 1000) if v else "-1")
print("# app write+fsync during the sync: n=%d p50=%d us max=%d us" %
      (len(v), v[len(v) // 2] if v else -1, v[-1] if v else -1), file=sys.stderr)
EOF
)
rate=$(awk -v n="$NFILES" -v s="$secs" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }')
mt_stop_primary
echo "firstsync files=$NFILES file_size=$FILE_SIZE attempts=$attempts files_per_s=$rate app_p99_ms=$p99"
