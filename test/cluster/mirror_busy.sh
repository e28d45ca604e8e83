#!/usr/bin/env bash
# mirror_busy: a secondary that is alive but stuck in one operation during a resync (its file system
# frozen with fsfreeze: its receiver waits in the kernel) says so with "alive, busy" keepalives, and the
# primary's budget does not count that as a sick peer while the stall stays under twice the drop limit:
# a 300 ms stall (past the 240 ms limit of a 300 ms budget) costs no peer loss and the resync ends in
# the same attempt. A stall that goes on (2 s) is still dropped, within twice the limit plus a margin
# (issue 10 item 3). Each side's tree is on its own ext4 loop image in RAM (fsfreeze needs its own fs).
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
for c in mkfs.ext4 losetup fsfreeze; do command -v "$c" >/dev/null || { echo "1..0 # SKIP missing $c"; exit 0; }; done
mt_init
BUDGET_MS=300

shm=$SK_TMP/shm
mkdir -p "$shm" && sk_track_mount "$shm" && mount -t tmpfs -o size=400m,mode=0755 tmpfs "$shm" || mt_bail "tmpfs"
loopfs() { # loopfs TAG -> prints the mount point
	local img=$shm/$1.img mnt=$SK_TMP/$1.mnt
	mkdir -p "$mnt" && truncate -s 160M "$img" &&
		mkfs.ext4 -q -F -O ^has_journal -E lazy_itable_init=0,nodiscard "$img" >/dev/null 2>&1 || return 1
	sk_track_mount "$mnt"
	mount -o loop "$img" "$mnt" || return 1
	echo "$mnt"
}
m1=$(loopfs p) && m2=$(loopfs s) || { echo "1..0 # SKIP no loop devices"; exit 0; }
MT_DIR1=$m1/data
MT_DIR2=$m2/data
thaw() { fsfreeze -u "$m2" 2>/dev/null; true; } # an error when not frozen: ignored
# thawed before lib.sh's cleanup unmounts (a frozen file system would hang it), whatever the exit
trap 'rc_=$?; thaw; (exit $rc_); sk__on_exit' EXIT
mkdir -p "$MT_DIR1" "$MT_DIR2" || mt_bail "mkdir"

# A tree with data, so that a resync at --resync-rate 8 lasts a few seconds.
"$MT_PY" - "$MT_DIR1" <<'EOF' || mt_bail "tree"
import os, sys
root = sys.argv[1]
for d in range(3):
    os.mkdir(os.path.join(root, "d%d" % d))
    for i in range(1000):
        os.close(os.open(os.path.join(root, "d%d" % d, "f%04d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
for i in range(8):
    with open(os.path.join(root, "blob%d" % i), "wb") as f:
        f.write(os.urandom(4 << 20))
with open(os.path.join(root, "app.log"), "wb") as f:
    f.write(os.urandom(65536))
EOF

mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary --budget-ms "$BUDGET_MS" --resync-rate 8 || mt_bail "primary did not start"
P1LOG=$SK_TMP/fused1.1.log

# the application: 4 KiB pwrite + fsync every 2 ms through the mount, until the stop file (bounded)
"$MT_PY" "$SK_SRC/test/tools/latwriter.py" "$MT_DIR1/app.log" "$SK_TMP/writer.stop" 90 --base 0 --blocks 16 \
	>"$SK_TMP/writer.out" 2>&1 &
wpid=$!

resync_running() { [ "$(mt_st 1 resync.state)" = running ] && [ "$(mt_st 1 resync.done_bytes)" -gt 1000000 ]; }
# freeze SECONDS: the secondary's file system frozen that long (fsfreeze returns once it is frozen)
# (synced first: fsfreeze writes back what is dirty while writers already wait, which adds to the stall)
freeze() {
	local t0 t1
	sync -f "$m2"
	t0=$(date +%s%N)
	fsfreeze -f "$m2" || return 1
	t1=$(date +%s%N)
	sleep "$1"
	thaw
	FROZEN_MS=$((($(date +%s%N) - t0) / 1000000))
	sk_diag "secondary's file system frozen for $FROZEN_MS ms (fsfreeze -f took $(((t1 - t0) / 1000000)) ms)"
}
lost() { grep -c 'peer lost' "$P1LOG"; }

# ---- a 300 ms stall during the resync: no peer loss ----
if mt_wait_until 20 resync_running; then sk_ok "resync running with data"; else sk_not_ok "resync running with data"; fi
l0=$(lost)
FROZEN_MS=0
freeze 0.3 || sk_diag "fsfreeze failed"
if mt_wait_synced 40; then sk_ok "resync done after a 300 ms stall of the secondary"; else sk_not_ok "resync done after a 300 ms stall of the secondary"; fi
starts=$(grep -c 'resynchronising' "$P1LOG")
# a loaded host stretches the freeze (fsfreeze's own writeback, a late wakeup): past about twice the
# 240 ms limit the drop is right, and this case says nothing
if [ "$FROZEN_MS" -gt 440 ]; then
	sk_skip "the stall cost no peer loss: one resync attempt" "the freeze lasted $FROZEN_MS ms (host too loaded)"
elif [ "$(lost)" = "$l0" ] && [ "$starts" = 1 ]; then
	sk_ok "the stall cost no peer loss: one resync attempt"
else
	sk_not_ok "the stall cost no peer loss: one resync attempt ($starts starts, $(($(lost) - l0)) losses)"
	sk_diag "$(grep -E 'peer lost|oldest frame' "$P1LOG" | head -n 6)"
fi
ka=$(sed -n 's/.*peer busy: \([0-9]*\) busy keepalives.*/\1/p' "$P1LOG" | tail -n 1)
if [ "${ka:-0}" -gt 0 ]; then sk_ok "the primary heard busy keepalives ($ka)"; else sk_not_ok "the primary heard busy keepalives (${ka:-none})"; fi

# ---- a stall that goes on (2 s) during a resync: dropped within twice the limit, plus a margin ----
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'" || sk_diag "secondary's mount still there"
# a new copy without the data: the full resync again, sending 32 MiB at 8 MiB/s
rm -rf "${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG" "$MT_DIR2"/blob*
mt_start_secondary || mt_bail "secondary restart failed"
mt_wait_until 20 resync_running || sk_diag "second resync not seen running"
l0=$(lost)
o0=$(grep -c 'oldest frame' "$P1LOG")
freeze 2 &
fpid=$!
mt_wait_until 10 bash -c "[ \$(grep -c 'peer lost' '$P1LOG') -gt $l0 ]"
wait "$fpid"
if [ "$(lost)" -gt "$l0" ]; then
	sk_ok "a 2 s stall of the secondary is dropped"
else
	sk_not_ok "a 2 s stall of the secondary is dropped"
	sk_diag "primary: $(tail -n 12 "$P1LOG")"
	sk_diag "secondary: $(tail -n 8 "$SK_TMP/fused2.$MT_N2.log")"
	sk_diag "primary status: $(mt_status 1)"
fi
# the first drop (a reconnection while still frozen is dropped too: its receiver cannot take it yet)
line=$(grep -E 'oldest frame' "$P1LOG" | sed -n "$((o0 + 1))p")
sk_diag "$line"
drop_ms=$(sed -n 's/.*last ack \([0-9]*\) ms ago.*/\1/p' <<<"$line")
if [ -n "$drop_ms" ] && [ "$drop_ms" -le $((2 * BUDGET_MS * 8 / 10 + 250)) ]; then
	sk_ok "dropped $drop_ms ms after its last ack (limit: twice 240 ms plus 250 ms)"
else
	sk_not_ok "dropped ${drop_ms:-?} ms after its last ack (limit: twice 240 ms plus 250 ms)"
fi
if mt_wait_synced 60; then sk_ok "back in sync after the thaw"; else sk_not_ok "back in sync after the thaw"; fi
touch "$SK_TMP/writer.stop"
wrc=0
wait "$wpid" || wrc=$?
sk_diag "$(cat "$SK_TMP/writer.out")"
if [ "$wrc" = 0 ]; then sk_ok "the application's writes all succeeded"; else sk_not_ok "the application's writes all succeeded"; fi
mt_wait_synced 20 || true
mt_same_trees
mt_stop_primary
sk_done
