#!/usr/bin/env bash
# mirror_firstsync: the first synchronisation of a tree that existed before the mirror started
# (30 dirs x 1000 empty files + data files, symlinks, a hard link, xattrs) to an empty secondary
# completes in ONE attempt while an application writes through the mount; its writes stay under
# the latency budget and the resync progress never passes its total (issue 10 item 3, issue 9 B15).
# SK_FIRSTSYNC_FILES=N (default 30000) sets the number of empty files (N/1000 dirs of 1000).
# The tree also holds SK_FIRSTSYNC_DATA (default 3000) files of 4 KiB of data (N/1000 dirs of
# 1000): the secondary's answers to the listings say it holds them empty, so their data goes
# whole without a checksum request each (the resync's log line counts both); phase 2 gives the
# secondary old copies of some of them, which still get their checksums compared, several
# requests in flight at once; phase 3 a secondary that never answers listings (an older skfused).
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
export SKFUSED_RS_EMPTY=1 # the listings' answers (docs/skfused.md, Resync)
NFILES=${SK_FIRSTSYNC_FILES:-30000}
NDATA=${SK_FIRSTSYNC_DATA:-3000}
[[ "$NFILES" =~ ^[0-9]+$ ]] && [ "$NFILES" -ge 1000 ] || mt_bail "SK_FIRSTSYNC_FILES must be >= 1000"
[[ "$NDATA" =~ ^[0-9]+$ ]] && [ "$NDATA" -ge 1000 ] || mt_bail "SK_FIRSTSYNC_DATA must be >= 1000"
NDIRS=$((NFILES / 1000))
BUDGET_MS=${SK_FIRSTSYNC_BUDGET_MS:-300}
SYNC_LIMIT_S=$((60 + NFILES / 5000)) # one attempt at the required 20 000 files/s takes N/20000 s
mt_init

# Each side gets its own fresh ext4 (loop image): mass creates on a well-used root fs are slow and
# its mass delete at cleanup would slow everyone else down. The images and the state files live
# in RAM (tmpfs) unless SK_FIRSTSYNC_DISK=1: this test is about the stream's pacing, and on a
# shared host the fsyncs of other jobs would otherwise decide its latency figures. No journal
# (as this host's root fs) unless SK_FIRSTSYNC_JOURNAL=1: with one, the secondary's mass creates
# wait for the journal's kernel threads, which a loaded 2-core host starves for > 240 ms. Plain
# directories if loop devices are not available.
IMGDIR=$SK_TMP
if [ "${SK_FIRSTSYNC_DISK:-0}" != 1 ]; then
	for d in "$SK_TMP/shm" "${SK_ROOT[1]}/var/lib/steadykit" "${SK_ROOT[2]}/var/lib/steadykit"; do
		mkdir -p "$d" && sk_track_mount "$d" && mount -t tmpfs -o size=$((64 + NFILES / 250 + NDATA / 100))m,mode=0755 tmpfs "$d" ||
			mt_bail "tmpfs on $d"
	done
	IMGDIR=$SK_TMP/shm
fi
JOPT=(-O ^has_journal -E lazy_itable_init=0,nodiscard)
[ "${SK_FIRSTSYNC_JOURNAL:-0}" = 1 ] && JOPT=(-E lazy_itable_init=0,lazy_journal_init=0,nodiscard)
loopfs() { # loopfs TAG -> prints the mount point
	local img=$IMGDIR/$1.img mnt=$SK_TMP/$1.mnt
	mkdir -p "$mnt" || return 1
	truncate -s $((512 + NFILES / 1000 + NDATA / 200))M "$img" || return 1
	mkfs.ext4 -q -F -N $((NFILES + NDATA + NFILES / 10 + 20000)) "${JOPT[@]}" "$img" >/dev/null 2>&1 || return 1
	sk_track_mount "$mnt"
	mount -o loop "$img" "$mnt" || return 1
	echo "$mnt"
}
if m1=$(loopfs p) && m2=$(loopfs s); then
	MT_DIR1=$m1/data
	MT_DIR2=$m2/data
	mkdir -p "$MT_DIR1" "$MT_DIR2" || mt_bail "mkdir on the loop file systems"
	sk_diag "trees on fresh ext4 (${JOPT[*]}) loop images in $([ "$IMGDIR" = "$SK_TMP" ] && echo "files on disk" || echo tmpfs)"
else
	sk_diag "no loop image (mkfs.ext4/loop unavailable): trees in plain directories"
fi
D=$MT_DIR1

# The tree, BEFORE the mirror starts.
t0=$(date +%s.%N)
"$MT_PY" - "$D" "$NDIRS" "$((NDATA / 1000))" <<'EOF' || mt_bail "creating the tree"
import os, sys
root, ndirs, ncdirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(ndirs):
    dp = os.path.join(root, "d%03d" % d)
    os.mkdir(dp)
    for i in range(1000):
        os.close(os.open(os.path.join(dp, "f%04d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
for d in range(ncdirs):
    dp = os.path.join(root, "c%03d" % d)
    os.mkdir(dp)
    for i in range(1000):
        fd = os.open(os.path.join(dp, "f%04d" % i), os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, os.urandom(4096))
        os.close(fd)
data = os.path.join(root, "data")
os.mkdir(data)
for i, size in enumerate((1, 4096, 65537, 1 << 20, 3 << 20)):
    with open(os.path.join(data, "blob%d" % i), "wb") as fp:
        fp.write(os.urandom(size))
os.symlink("../data/blob1", os.path.join(root, "d000", "link-to-blob"))
os.symlink("dangling-target", os.path.join(data, "dangling"))
os.link(os.path.join(data, "blob2"), os.path.join(root, "d001", "hardlink-to-blob2"))
os.setxattr(os.path.join(data, "blob0"), "user.color", b"blue")
os.setxattr(os.path.join(root, "d002", "f0007"), "user.empty-but-tagged", b"x" * 300)
os.setxattr(os.path.join(root, "d002"), "user.dir-tag", b"dir")
os.chown(os.path.join(root, "d003", "f0003"), 1234, 4321)
os.chmod(os.path.join(root, "d003", "f0004"), 0o600)
os.utime(os.path.join(root, "d003", "f0005"), ns=(981173106123456789, 981173106123456789))
# the application's file sits among a thousand empty ones: it grows while the resync walks there
with open(os.path.join(root, "d%03d" % (ndirs // 2), "app.log"), "wb") as fp:
    fp.write(os.urandom(65536))
EOF
sk_diag "tree of $NFILES empty files in $NDIRS dirs and $NDATA files of 4 KiB created in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary --budget-ms "$BUDGET_MS" || mt_bail "primary did not start"
P1LOG=$SK_TMP/fused1.1.log

# The application: 4 KiB pwrite + fsync through the mount, one every 2 ms, each timed; it stops
# at the stop file or after its own deadline (bounded whatever happens to this script).
WLOG=$SK_TMP/writer.lat
"$MT_PY" "$SK_SRC/test/tools/latwriter.py" "$D/d$(printf %03d $((NDIRS / 2)))/app.log" \
	"$SK_TMP/writer.stop" $((SYNC_LIMIT_S + 60)) "$WLOG" >"$SK_TMP/writer.out" 2>&1 &
wpid=$!

# CPU seconds a process used so far (user + system), to tell the cost per file from the host's load
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu1=$(cpu_s "$MT_PID1") cpu2=$(cpu_s "$MT_PID2")

# Watch the resync: progress never above its total, until done (or the limit).
t_start=$(date +%s%N)
over=0 worst=""
done_at=0
resync_json() {
	mt_status 1 | "$MT_PY" -c '
import json, sys
try:
    s = json.loads(sys.stdin.read())
    r = s["resync"]
    print(s["peer"], r["state"], r["done_bytes"], r["total_bytes"])
except Exception:
    print("? ? 0 0")'
}
while [ $((($(date +%s%N) - t_start) / 1000000000)) -lt "$SYNC_LIMIT_S" ]; do
	read -r peer state dbytes tbytes <<<"$(resync_json)"
	if [ "$dbytes" -gt "$tbytes" ]; then
		over=$((over + 1))
		worst="done_bytes $dbytes of total_bytes $tbytes (state $state)"
	fi
	if [ "$peer" = connected ] && [ "$state" = done ]; then
		done_at=$(date +%s%N)
		break
	fi
	sleep 0.1
done
if [ "$done_at" -gt 0 ]; then
	secs=$(awk -v a="$t_start" -v b="$done_at" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
	rate=$(awk -v n="$NFILES" -v s="$secs" 'BEGIN { printf "%d", n / (s > 0 ? s : 0.01) }')
	sk_ok "first sync of $NFILES files done within ${SYNC_LIMIT_S} s: ${secs} s, ${rate} files/s"
	sk_diag "CPU used meanwhile: primary $(awk -v a="$cpu1" -v b="$(cpu_s "$MT_PID1")" 'BEGIN { print b - a }') s," \
		"secondary $(awk -v a="$cpu2" -v b="$(cpu_s "$MT_PID2")" 'BEGIN { print b - a }') s; load: $(cut -d' ' -f1-3 /proc/loadavg)"
else
	sk_not_ok "first sync of $NFILES files done within ${SYNC_LIMIT_S} s"
	sk_diag "primary status: $(mt_status 1)"
fi
sleep 2 # the application keeps writing after the resync, through live replication
touch "$SK_TMP/writer.stop"
wrc=0
wait "$wpid" || wrc=$?
sk_diag "$(cat "$SK_TMP/writer.out")"
if [ "$wrc" = 0 ]; then sk_ok "the application's writes all succeeded"; else sk_not_ok "the application's writes all succeeded (rc=$wrc)"; fi

# One attempt: one resync start, no peer loss, resync done, peer connected.
starts=$(grep -c 'resynchronising' "$P1LOG")
lost=$(grep -c 'peer lost' "$P1LOG")
if [ "$starts" = 1 ] && [ "$lost" = 0 ]; then
	sk_ok "one attempt: exactly one resync start, no peer loss"
else
	sk_not_ok "one attempt: exactly one resync start, no peer loss ($starts starts, $lost losses)"
	sk_diag "$(grep -E 'resynchronising|peer lost|resync|oldest frame' "$P1LOG" | head -n 16)"
fi
rs_s=$(sed -n 's/.*resync done in \([0-9.]*\) s.*/\1/p' "$P1LOG" | head -n 1)
sk_diag "$(grep 'resync done' "$P1LOG" | head -n 1); $(awk -v n="$NFILES" -v s="${rs_s:-0}" 'BEGIN { if (s > 0) printf "%d files/s from the connection to the end", n / s }')"
# The files with data went whole on the secondary's word that it held them empty: no checksum
# request for them (before, one round trip each; the log line did not count them).
whole=$(sed -n 's/.*resync done in .* \([0-9]*\) files sent whole without a checksum request.*/\1/p' "$P1LOG" | head -n 1)
asked=$(sed -n 's/.*resync done in .*, \([0-9]*\) checksum requests.*/\1/p' "$P1LOG" | head -n 1)
if [ "${whole:-0}" -ge "$NDATA" ] && [ "${asked:-1}" -lt "$NDATA" ]; then
	sk_ok "first sync: $whole files sent whole without a checksum request, $asked checksum requests"
else
	sk_not_ok "first sync: >= $NDATA files sent whole without a checksum request (whole=${whole:-?}, checksum requests=${asked:-?})"
fi
read -r peer state dbytes tbytes <<<"$(resync_json)"
if [ "$peer" = connected ] && [ "$state" = done ]; then
	sk_ok "status: peer connected, resync done"
else
	sk_not_ok "status: peer connected, resync done (peer $peer, resync $state)"
fi
if [ "$over" = 0 ] && [ "$dbytes" -le "$tbytes" ]; then
	sk_ok "resync progress never passed its total (end: $dbytes of $tbytes bytes)"
else
	sk_not_ok "resync progress never passed its total (seen $over times: $worst; end: $dbytes of $tbytes)"
fi

# The application's latency while the resync ran (ops that started before it was done).
lat=$("$MT_PY" - "$WLOG" "$t_start" "${done_at:-0}" <<'EOF'
import sys
path, t0, t1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
during, after = [], []
for line in open(path):
    t, us = map(int, line.split())
    (during if t1 == 0 or t < t1 else after).append(us)
def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] if v else -1
print(len(during), q(during, 0.5), q(during, 0.99), max(during, default=-1), len(after), q(after, 0.5), q(after, 0.99))
EOF
)
read -r n_d p50 p99 max_d n_a p50_a p99_a <<<"$lat"
sk_diag "app 4 KiB write+fsync during the resync: n=$n_d p50=${p50} us p99=${p99} us max=${max_d} us; after: n=$n_a p50=${p50_a} us p99=${p99_a} us"
if [ "${n_d:-0}" -ge 20 ] && [ "$p99" -lt $((BUDGET_MS * 1000)) ]; then
	sk_ok "application write+fsync p99 during the resync ${p99} us < budget ${BUDGET_MS} ms (n=$n_d)"
else
	sk_not_ok "application write+fsync p99 during the resync ${p99:-?} us < budget ${BUDGET_MS} ms (n=${n_d:-0})"
fi
sk_diag "primary latency histogram: $(mt_st 1 latency_us)"

# Same trees (the application stopped; wait for the stream to drain first).
mt_wait_synced 30 || sk_diag "not in sync before the comparison"
mt_same_trees

# Phase 2: the secondary comes back with stale versions of names the primary sends whole in its
# listings (empty files): wrong mode, owner, times, xattr, content; a directory, a symlink and a
# missing name where the primary has an empty file; a stray. Files changed by hand while the
# secondary's skfused was stopped are invisible to the primary's tracking (an incremental resync
# would send only what the primary changed), so the operator removes the secondary's state, as
# docs/skfused.md says: its copy counts as new and the full resync must repair them all.
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'" || sk_diag "secondary's read-only mount still there"
S=$MT_DIR2/d004
chmod 0600 "$S/f0001" && chown 55:66 "$S/f0002" && touch -d '2000-01-01 00:00:00' "$S/f0003" &&
	setfattr -n user.stale -v 1 "$S/f0004" && rm "$S/f0005" && mkdir "$S/f0005" && touch "$S/f0005/inner" &&
	echo stale >"$S/f0006" && rm "$S/f0007" && ln -s nowhere "$S/f0007" && rm "$S/f0008" && touch "$S/stray" ||
	sk_diag "could not prepare the stale secondary"
# files with data: old content in one block, truncated to empty, cut short, gone
C=$MT_DIR2/c000
printf 'old' | dd of="$C/f0001" bs=1 seek=100 conv=notrunc status=none && : >"$C/f0002" &&
	truncate -s 1000 "$C/f0003" && rm "$C/f0004" || sk_diag "could not prepare the stale data files"
rm -rf "${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG"
mt_start_secondary || mt_bail "secondary restart failed"
if mt_wait_synced 60; then sk_ok "stale secondary: resync done"; else sk_not_ok "stale secondary: resync done"; fi
mt_same_trees "stale secondary repaired: trees identical"
# the files the secondary holds with data still get their checksums compared
line=$(grep 'resync done' "$P1LOG" | tail -n 1)
asked=$(printf '%s' "$line" | sed -n 's/.*, \([0-9]*\) checksum requests.*/\1/p')
if [ "${asked:-0}" -ge "$((NDATA - 2))" ]; then
	sk_ok "stale secondary: its files with data compared by checksums ($asked requests)"
else
	sk_not_ok "stale secondary: its files with data compared by checksums (${asked:-?} requests)"
	sk_diag "$line"
fi
# ... several at a time: the walker asks for the next files' checksums before it needs them
# (fused/rs_sums.c); with one request at a time (the code before) this is 1
peak=$(printf '%s' "$line" | sed -n 's/.*, at most \([0-9]*\) in flight (\([0-9]*\) answers refused.*/\1 \2/p')
read -r peak srefused <<<"${peak:-0 ?}"
if [ "${peak:-0}" -gt 1 ] && [ "$srefused" = 0 ]; then
	sk_ok "stale secondary: checksum requests in flight at most $peak (> 1), no answer refused"
else
	sk_not_ok "stale secondary: checksum requests in flight at most ${peak:-?} (> 1), answers refused ${srefused:-?} (0)"
	sk_diag "$line"
fi

# Phase 3: a secondary that never answers the listings (an older skfused; SKFUSED_FAULT=rs_no_answer
# on it): the primary notices (an ack past a listing with no answer), compares every file with data
# by checksums, does not stall, and the trees end identical. Some of its copies are empty, which
# an answer would have let go whole.
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'" || sk_diag "secondary's read-only mount still there"
C=$MT_DIR2/c000
: >"$C/f0010" && : >"$C/f0011" && printf 'x' | dd of="$C/f0012" bs=1 seek=4000 conv=notrunc status=none ||
	sk_diag "could not prepare the secondary's copies"
rm -rf "${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG"
# It also lies about checksums: every answer comes twice (the repeats are refused and counted), and
# its 100th names another offset than asked (the primary drops it as rejected, then resyncs again).
# Meanwhile the application rewrites blocks of files whose checksums the walker may have asked
# ahead: the resync's data must never overwrite them (the trees are compared after).
rej0=$(mt_st 1 rejected_frames)
(
	for k in $(seq 1 400); do
		[ -e "$SK_TMP/rw.stop" ] && break
		head -c 4096 /dev/urandom | dd of="$D/c00$((k % 3))/f$(printf %04d $(((k * 37) % 1000)))" bs=4096 \
			seek=0 conv=notrunc status=none 2>/dev/null
		sleep 0.02
	done
) &
rwpid=$!
SKFUSED_FAULT=rs_no_answer@1+,rs_sums_twice@1+,rs_sums_off@100 mt_start_secondary ||
	mt_bail "secondary restart (no listing answers) failed"
if mt_wait_synced 60; then sk_ok "silent secondary: resync done"; else sk_not_ok "silent secondary: resync done"; fi
touch "$SK_TMP/rw.stop"
wait "$rwpid"
mt_wait_synced 30 || sk_diag "silent secondary: not in sync after the rewrites"
rej1=$(mt_st 1 rejected_frames)
if grep -q 'checksums answer not as asked' "$P1LOG" && [ "${rej1:-0}" -gt "${rej0:-0}" ]; then
	sk_ok "lying secondary: an answer not as asked dropped it as rejected (rejected_frames $rej0 -> $rej1)"
else
	sk_not_ok "lying secondary: an answer not as asked dropped it as rejected (rejected_frames ${rej0:-?} -> ${rej1:-?})"
fi
mt_same_trees "silent secondary: trees identical"
line=$(grep 'resync done' "$P1LOG" | tail -n 1)
read -r asked answers <<<"$(printf '%s' "$line" | sed -n 's/.*, \([0-9]*\) checksum requests, .*, \([0-9]*\) listing answers.*/\1 \2/p')"
srefused=$(printf '%s' "$line" | sed -n 's/.* in flight (\([0-9]*\) answers refused.*/\1/p')
if [ "${srefused:-0}" -ge "$NDATA" ]; then
	sk_ok "lying secondary: its repeated checksum answers refused ($srefused)"
else
	sk_not_ok "lying secondary: its repeated checksum answers refused (${srefused:-?} < $NDATA)"
fi
if [ "${answers:-?}" = 0 ] && [ "${asked:-0}" -ge "$NDATA" ] &&
	[ "$(grep -c 'does not answer listings' "$P1LOG")" -ge 1 ]; then
	sk_ok "silent secondary: no listing answer, the primary fell back to checksums ($asked requests)"
else
	sk_not_ok "silent secondary: no listing answer (${answers:-?}), checksums for its files (${asked:-?} requests >= $NDATA)"
	sk_diag "$line"
fi
mt_stop_primary
sk_done
