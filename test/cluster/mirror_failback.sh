#!/usr/bin/env bash
# mirror_failback: failover then failback costs what changed (issue 10 items 1, 3). Node1 (A) is
# primary in sync with node2 (B); under writes A's link dies and A is killed -9 with frames in
# flight (applied on A, never on B); B is restarted as primary the way the agent does (skfused
# --role primary on its copy) and the application writes there; A returns as secondary. B tracked
# from the generation both held (its copy was a secondary's in sync) and A keeps what it changed
# that B never got (its activity log) and sends it by path, so the resync is "incremental", and:
#   - every write acknowledged on A is on B, then on A again, with B's later writes;
#   - what A applied and never got acknowledged (a create, an unlink, write records) is replaced
#     by B's version; the two trees end identical; A's kept list is dropped once resynced.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init

# Every start takes the key derived once (--key-fd, as the agent does).
KEYFILE=$SK_TMP/master.key
(umask 077 && "$MT_TOOLS/derivekey" "$MT_SECRET" >"$KEYFILE") || mt_bail "derivekey"
export KEYFILE
unset SKFUSED_RESYNC_INCREMENTAL # this scenario is about the incremental resync, the default
mt_status() {
	local sock=$MT_CTL1
	[ "$1" = 2 ] && sock=$MT_CTL2
	echo '{"cmd":"status"}' | timeout 3 nc -N -U "$sock" 2>/dev/null | head -n1
}
ST1=${SK_ROOT[1]}/var/lib/steadykit/state-$MT_TAG
ST2=${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG
DIRS=("" "$MT_DIR1" "$MT_DIR2")
CTLS=("" "$MT_CTL1" "$MT_CTL2")
STS=("" "$ST1" "$ST2")
N=0
LOG=()

# fused NODE ROLE [args]: skfused on node NODE's directory; the peer is the other node
fused() {
	local n=$1 role=$2 name=fused$1.$((++N)) addr pid
	shift 2
	if [ "$role" = primary ]; then addr=(--peer "${SK_IP[$((3 - n))]}:$MT_PORT"); else addr=(--listen "${SK_IP[$n]}:$MT_PORT"); fi
	sk_track_mount "${DIRS[$n]}"
	pid=$(sk_spawn "$n" "$name" bash -c 'exec "$0" "$@" 3<"$KEYFILE"' "$MT_FUSED" --role "$role" \
		--dir "${DIRS[$n]}" "${addr[@]}" --key-fd 3 --module-id 1 --state "${STS[$n]}" --ctl "${CTLS[$n]}" "$@") || return 1
	LOG[$n]=$SK_TMP/$name.log
	PID[$n]=$pid
	mt_wait_until 10 mt_log_has_ready "$name" ||
		{ sk_diag "node$n $role not ready: $(tail -n 20 "${LOG[$n]}")"; return 1; }
	[ "$role" = secondary ] || mountpoint -q "${DIRS[$n]}"
}
PID=()
# node N (primary) connected, its peer in sync, nothing in flight
synced() {
	mt_status "$1" | "$MT_PY" -c '
import json, sys
s = json.loads(sys.stdin.read())
sys.exit(0 if s.get("peer") == "connected" and s.get("peer_in_sync") is True and s.get("inflight_ops", 1) == 0 else 1)' 2>/dev/null
}
verify() { # verify LABEL DIR LOG [ackwriter options]: every acked record there, a prefix state
	local label=$1 dir=$2 log=$3 out
	shift 3
	out=$("$MT_TOOLS/ackwriter" verify --dir "$dir" --log "$log" "$@" 2>&1)
	if [[ "$out" == *"verify: ok"* ]]; then sk_ok "$label"; else sk_not_ok "$label"; sk_diag "$out"; fi
}
same() { # same LABEL A B
	local out rc=0
	out=$("$MT_PY" "$SK_SRC/test/tools/treecmp.py" --summary --times none "$2" "$3" 2>&1) || rc=$?
	if [ "$rc" = 0 ]; then sk_ok "$1"; else sk_not_ok "$1 (treecmp exit $rc)"; sk_diag "$(grep -v "	ok	" <<<"$out" | head -n 20)"; fi
}

# ---- A primary, B secondary, in sync ---------------------------------------------------------
exec {fd1}<"$MT_DIR1" || mt_bail "fd on node1's dir"
BACK1=/proc/$BASHPID/fd/$fd1/.
fused 2 secondary || mt_bail "node2 secondary"
# a long budget: the writes in flight when the link dies wait (applied on A only) until the kill
fused 1 primary --budget-ms 60000 || mt_bail "node1 primary"
D=$MT_DIR1
mkdir -p "$D/keep" "$D/aw"
for i in $(seq 12); do head -c 4096 /dev/urandom >"$D/keep/f$i"; done
echo "removed on A alone, never acknowledged" >"$D/gone.txt"
if mt_wait_until 30 synced 1; then sk_ok "node1 primary, node2 in sync"; else sk_not_ok "node1 primary, node2 in sync"; sk_diag "$(mt_status 1)"; fi

# ---- A dies with frames in flight ------------------------------------------------------------
AWO=(--threads 2 --files 8 --size 4096 --journal)
L1=$SK_TMP/ack-a.log
"$MT_TOOLS/ackwriter" write --dir "$D/aw" --log "$L1" "${AWO[@]}" --duration 30 >"$SK_TMP/aw-a.out" 2>&1 &
AW=$!
mt_wait_until 20 bash -c "[ \$(wc -l <'$L1' 2>/dev/null || echo 0) -ge 400 ]" || sk_diag "writer slow: $(wc -l <"$L1") records"
sk_link_down 1
touch "$D/keep/inflight-new" 2>/dev/null & # another directory: the VFS locks each one
T1=$!
rm -f "$D/gone.txt" 2>/dev/null &
T2=$!
infl() { [ "$(mt_st 1 inflight_ops)" -ge 4 ] 2>/dev/null; } # a write per writer thread, the create, the unlink
if mt_wait_until 10 infl; then sk_ok "link down: operations applied on node1 wait for node2 ($(mt_st 1 inflight_ops) in flight)"; else sk_not_ok "link down: operations in flight on node1"; sk_diag "$(mt_status 1)"; fi
sk_kill9 "${PID[1]}" || mt_bail "kill -9"
for _ in $(seq 100); do kill -0 "$AW" 2>/dev/null || break; sleep 0.1; done
kill "$AW" 2>/dev/null
wait "$AW" "$T1" "$T2" 2>/dev/null
umount -l "$MT_DIR1" 2>/dev/null
# node1's cable stays out until it returns: its kernel would still deliver what the dead
# process left in its socket to node2's old receiver (so node2 takes over while node1 is away)
sk_diag "node1's writer: $(cat "$SK_TMP/aw-a.out" | tail -n 1); $(wc -l <"$L1") records acknowledged"
if [ -e "$BACK1/keep/inflight-new" ] && [ ! -e "$BACK1/gone.txt" ] && [ ! -e "$MT_DIR2/keep/inflight-new" ] && [ -e "$MT_DIR2/gone.txt" ]; then
	sk_ok "node1's copy holds changes node2 never got (a create, an unlink in flight)"
else
	sk_not_ok "node1's copy holds changes node2 never got (a create, an unlink in flight)"
	sk_diag "node1: $(ls "$BACK1" "$BACK1/keep" | tr '\n' ' '); node2: $(ls "$MT_DIR2" "$MT_DIR2/keep" | tr '\n' ' ')"
fi
verify "every write acknowledged on node1 is on node2" "$MT_DIR2/aw" "$L1" "${AWO[@]}"

# ---- B takes over (restarted as primary), writes alone ---------------------------------------
sk_term "${PID[2]}"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'" || sk_diag "node2's read-only mount stays"
exec {fd2}<"$MT_DIR2" || mt_bail "fd on node2's dir"
BACK2=/proc/$BASHPID/fd/$fd2/.
fused 2 primary || mt_bail "node2 primary"
if grep -q "tracking starts from generation" "${LOG[2]}"; then
	sk_ok "node2, primary from a secondary's copy in sync, tracks from the shared generation"
else
	sk_not_ok "node2, primary from a secondary's copy in sync, tracks from the shared generation"
	sk_diag "$(grep -i "dirty\|track" "${LOG[2]}" | head -n 5)"
fi
B=$MT_DIR2
mkdir "$B/b"
L2=$SK_TMP/ack-b.log
BWO=(--threads 2 --files 4 --size 4096 --journal)
"$MT_TOOLS/ackwriter" write --dir "$B/b" --log "$L2" "${BWO[@]}" --records 100 >"$SK_TMP/aw-b.out" 2>&1 ||
	sk_diag "node2's writer: $(cat "$SK_TMP/aw-b.out")"
echo "appended on node2" >>"$B/keep/f3"
rm "$B/keep/f4"
mv "$B/keep/f5" "$B/keep/f5-moved"
head -c 20000 /dev/urandom | dd of="$B/keep/f6" bs=20000 seek=1 conv=notrunc status=none

# ---- A returns as secondary --------------------------------------------------------------------
sk_link_up 1
fused 1 secondary || mt_bail "node1 secondary"
if grep -q "own changes since the shared generation kept for the primary" "${LOG[1]}"; then
	sk_ok "node1, back as secondary, keeps what it changed that node2 never got"
else
	sk_not_ok "node1, back as secondary, keeps what it changed that node2 never got"
	sk_diag "$(grep -i "own\|dirty\|track" "${LOG[1]}" | head -n 5)"
fi
if mt_wait_until 30 synced 2; then
	sk_ok "node2 primary, node1 resynced and in sync"
else
	sk_not_ok "node2 primary, node1 resynced and in sync"
	sk_diag "$(mt_status 2)"
	sk_diag "node2: $(tail -n 25 "${LOG[2]}")"
	sk_diag "node1: $(tail -n 10 "${LOG[1]}")"
fi
sk_diag "$(grep "resync done\|resync (incr\|resync: \|own changes" "${LOG[2]}" | tail -n 4 | tr '\n' ' ')"
k=$(mt_st 2 resync.kind)
if [ "$k" = incremental ]; then sk_ok "failback resync kind incremental"; else sk_not_ok "failback resync kind incremental (got '$k')"; fi
if grep -q "the peer's own changes since the shared generation: .* added to the tracked set" "${LOG[2]}"; then
	sk_ok "node2 added node1's own changes to its tracked set"
else
	sk_not_ok "node2 added node1's own changes to its tracked set"
fi
same "trees identical (node2's backing tree, node1's copy)" "$BACK2" "$MT_DIR1"
verify "every write acknowledged on node1 is on node1 again" "$MT_DIR1/aw" "$L1" "${AWO[@]}"
verify "every write acknowledged on node2 is on node1" "$MT_DIR1/b" "$L2" "${BWO[@]}"
if [ ! -e "$MT_DIR1/keep/inflight-new" ] && [ -e "$MT_DIR1/gone.txt" ] && [ -e "$MT_DIR1/keep/f5-moved" ] && [ ! -e "$MT_DIR1/keep/f4" ]; then
	sk_ok "node1's unacknowledged create and unlink are undone; node2's changes are there"
else
	sk_not_ok "node1's unacknowledged create and unlink are undone; node2's changes are there"
	sk_diag "node1: $(ls "$MT_DIR1" "$MT_DIR1/keep" | tr '\n' ' ')"
fi
if [ ! -e "$ST1/dirty" ]; then sk_ok "node1's kept list is dropped once resynced"; else sk_not_ok "node1's kept list is dropped once resynced"; fi

sk_term "${PID[2]}"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'"
sk_term "${PID[1]}"
sk_done
