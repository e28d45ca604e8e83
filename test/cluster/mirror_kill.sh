#!/usr/bin/env bash
# mirror_kill: kill -9 of the primary skfused mid-workload loses no acknowledged write, and the
# secondary's tree is a state the primary passed through (issue 4 item 7, invariants 1 and 2).
# ackwriter (4 threads, 32 files each, 4 KiB records, a journal per thread) logs a record only after
# its write() returned; after the kill, on the secondary: each thread's files equal the state right
# after some record K (byte for byte, no torn or missing record) and K >= the last acked record.
# Run in sync mode and in semi-sync mode (the peer acks on receipt: a killed primary does not stop
# the secondary from applying what it received, so the same must hold), and in async mode, which
# promises order only: the secondary must still be a prefix state, acked records may be missing.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init

# one_mode MODE PORT
one_mode() {
	local m=$1 aw before killed_at final out line
	mt_instance "data-$m" "$2"
	mt_start_secondary || { sk_not_ok "$m: secondary started"; return; }
	mt_start_primary --mode "$m" || { sk_not_ok "$m: primary started"; return; }
	# connected past the session's start (in sync: the empty tree's first sync is done) before the writes
	if mt_wait_connected && mt_wait_until 20 mt_synced; then sk_ok "$m: peer connected"; else sk_not_ok "$m: peer connected"; fi

	local log=$SK_TMP/ack-$m.log
	local AWO=(--log "$log" --threads 4 --files 32 --size 4096 --journal)
	"$MT_TOOLS/ackwriter" write --dir "$MT_DIR1" "${AWO[@]}" --duration 40 >"$SK_TMP/aw-$m.out" 2>"$SK_TMP/aw-$m.err" &
	aw=$!
	acked() { wc -l <"$log" 2>/dev/null || echo 0; }
	# Let it write for a while, and make sure writes are flowing when the kill lands.
	mt_wait_until 20 bash -c "[ \$(wc -l <'$log') -ge 3000 ]"
	before=$(acked)
	sleep 0.5
	if [ "$(acked)" -gt "$before" ] && [ "$before" -gt 0 ]; then
		sk_ok "$m: workload running when the primary is killed ($before records acked)"
	else
		sk_not_ok "$m: workload running when the primary is killed ($before acked, then $(acked))"
	fi
	sk_diag "$m: primary status before the kill: $(mt_status 1)"

	sk_kill9 "$MT_PID1" || mt_bail "kill -9 failed"
	killed_at=$(acked)
	# The writer sees the mount die (ENOTCONN); give it a bounded time, then stop it.
	for _ in $(seq 100); do kill -0 "$aw" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$aw" 2>/dev/null; then
		kill "$aw"
		sk_not_ok "$m: writer got an error once the primary daemon died"
	else
		sk_ok "$m: writer got an error once the primary daemon died"
	fi
	wait "$aw" 2>/dev/null
	sk_diag "$m: writer: $(cat "$SK_TMP/aw-$m.out") $(tail -n 2 "$SK_TMP/aw-$m.err")"
	final=$(acked)
	sk_diag "$m: acked records: $killed_at at the kill, $final in total"
	umount -l "$MT_DIR1" 2>/dev/null
	if ! mountpoint -q "$MT_DIR1"; then sk_ok "$m: dead FUSE mount lazily unmounted"; else sk_not_ok "$m: dead FUSE mount lazily unmounted"; fi

	# The secondary may still be applying what it received; it does not need the primary for that.
	sleep 1
	local vx=() what="a prefix state holding every acked record"
	[ "$m" = async ] && vx=(--prefix-only) what="a prefix state (async: acked records may be missing)"
	out=$("$MT_TOOLS/ackwriter" verify --dir "$MT_DIR2" "${AWO[@]}" "${vx[@]}" 2>&1)
	while read -r line; do
		if [[ "$line" =~ ^t=([0-9]+)\ K= ]]; then
			if [[ "$line" == *" ok" ]]; then
				sk_ok "$m: secondary, writer thread ${BASH_REMATCH[1]}: $what ($line)"
			else
				sk_not_ok "$m: secondary, writer thread ${BASH_REMATCH[1]}: $what ($line)"
			fi
		elif [[ "$line" != verify:* ]]; then
			sk_diag "$line"
		fi
	done <<<"$out"
	if [[ "$out" == *"order across threads: ok"* ]]; then
		sk_ok "$m: secondary holds no record without every record acked before it was written (one ordered stream)"
	else
		sk_not_ok "$m: secondary holds no record without every record acked before it was written (one ordered stream)"
		sk_diag "$(grep '^order' <<<"$out" | head -n 5)"
	fi

	# The primary's own backing tree is also a prefix state.
	out=$("$MT_TOOLS/ackwriter" verify --dir "$MT_DIR1" "${AWO[@]}" 2>&1)
	if [[ "$out" == *"verify: ok"* ]]; then
		sk_ok "$m: primary backing: prefix state with every acked record"
	else
		sk_not_ok "$m: primary backing: prefix state with every acked record"
		sk_diag "$out"
	fi

	# A restarted primary reconnects and the two trees converge (resync of what was in flight).
	mt_start_primary --mode "$m" || sk_diag "$m: primary restart failed"
	if mt_wait_synced 30; then sk_ok "$m: restarted primary back in sync"; else sk_not_ok "$m: restarted primary back in sync"; fi
	mt_treecmp_tap "$m: after restart: primary backing vs secondary" none "$MT_BACK1" "$MT_DIR2" entries size content mtime
	mt_stop_primary
	[ -n "$MT_PID2" ] && sk_alive "$MT_PID2" && sk_term "$MT_PID2"
	mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'"
}

# ns_mode MODE PORT: the same kill during a seeded single-threaded history of namespace and
# metadata operations (create, rename incl. replace, unlink, mkdir, rmdir, dir rename, symlink,
# setxattr, chmod, truncate, writes); the secondary must equal the state after some op k >= acked.
ns_mode() {
	local m=$1 nr pid out
	mt_instance "ns-$m" "$2"
	mt_start_secondary || { sk_not_ok "$m ns: secondary started"; return; }
	mt_start_primary --mode "$m" || { sk_not_ok "$m ns: primary started"; return; }
	mt_wait_until 10 mt_peer_is connected || sk_diag "$m ns: peer not connected"
	local log=$SK_TMP/ns-$m.log seed=$RANDOM
	"$MT_PY" "$SK_SRC/test/tools/nsreplay.py" run "$MT_DIR1" "$log" --seed "$seed" --ops 200000 \
		2>"$SK_TMP/ns-$m.err" &
	nr=$!
	mt_wait_until 20 bash -c "[ \$(wc -l <'$log') -ge 1500 ]"
	sk_kill9 "$MT_PID1" || mt_bail "kill -9 failed"
	for _ in $(seq 100); do kill -0 "$nr" 2>/dev/null || break; sleep 0.1; done
	kill "$nr" 2>/dev/null
	wait "$nr" 2>/dev/null
	umount -l "$MT_DIR1" 2>/dev/null
	sleep 1
	out=$("$MT_PY" "$SK_SRC/test/tools/nsreplay.py" check "$MT_DIR2" "$log" --seed "$seed" 2>&1)
	if [[ "$out" == *"-> ok"* ]]; then
		sk_ok "$m: namespace history (seed $seed): secondary is the state after an op >= the last acked"
	else
		sk_not_ok "$m: namespace history (seed $seed): secondary is the state after an op >= the last acked"
	fi
	sk_diag "$out"
	sk_diag "$(tail -n 1 "$SK_TMP/ns-$m.err")"
	[ -n "$MT_PID2" ] && sk_alive "$MT_PID2" && sk_term "$MT_PID2"
	mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'"
}

one_mode sync 7421
one_mode semi-sync 7422
one_mode async 7423
ns_mode sync 7424
ns_mode semi-sync 7425
sk_done
