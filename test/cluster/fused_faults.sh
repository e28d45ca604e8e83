#!/usr/bin/env bash
# test/cluster/fused_faults.sh: skfused's error paths that a healthy machine never takes, run
# through its named failure points (SKFUSED_FAULT, fused/fault.h; issue 9 item 12):
#   - a malformed SKFUSED_FAULT is refused before anything starts;
#   - a start that fails half-way (a replication thread not created, the resync tracker not
#     allocated) exits with an error and unmounts, without joining a thread that never ran;
#   - a state file whose write comes out short is never renamed over the good one;
#   - a secondary that runs out of memory recording a listed name removes no file there, and
#     the next resync still converges;
#   - a secondary that cannot record "resync in progress" in its state refuses the session;
#   - a primary that cannot save the new data generation of its first change alone tries again
#     with the next change, so a crash does not bring it back in the generation its peer holds;
#   - a stop while a write waits for its ack lets it be acknowledged first (the peer stays in sync);
#   - a read reply the kernel refuses by splice is sent by write(), or answered EIO when it cannot
#     be: the reader never waits for ever.
# shellcheck disable=SC2317
set -uo pipefail
source "$SK_SRC/test/cluster/mirror_common.sh"

mt_init

# prim_fg FAULTSPEC: a primary in the foreground in node 1's netns, bounded; prints its log and exit=N
prim_fg() {
	sk_in 1 env SKFUSED_FAULT="$1" timeout 15 "$MT_FUSED" --role primary --dir "$MT_DIR1" \
		--peer "${SK_IP[2]}:$MT_PORT" --secret "$MT_SECRET" --module-id 1 \
		--state "${SK_ROOT[1]}/var/lib/steadykit/state-$MT_TAG" --ctl "$MT_CTL1" 2>&1
	echo "exit=$?"
}

sk_track_mount "$MT_DIR1"

# --- A. the spec itself -----------------------------------------------------------------------
for spec in nosuch rs_names@0 rs_names@x "state_write@1,bogus@2" "rs_track@-1" "repl_thread@"; do
	out=$(prim_fg "$spec")
	sk_check "SKFUSED_FAULT=$spec refused before anything starts (exit 1, names it)" \
		bash -c '[[ "$1" == *"SKFUSED_FAULT: \""* && "$1" == *exit=1 && "$1" != *ready* ]]' _ "$out"
done
sk_check "nothing was mounted by the refused starts" bash -c '! mountpoint -q "$1"' _ "$MT_DIR1"

# --- B. half-failed starts ----------------------------------------------------------------------
# repl_thread@1: the connection thread; @2: the budget thread, with the connection thread running
for spec in repl_thread@1 repl_thread@2 rs_track; do
	out=$(prim_fg "$spec")
	sk_check "$spec: start refused with an error, exit 1 (no crash, no hang)" \
		bash -c '[[ "$1" == *"cannot start"* && "$1" == *exit=1 ]]' _ "$out"
	sk_check "$spec: and unmounted" bash -c '! mountpoint -q "$1"' _ "$MT_DIR1"
	[[ "$out" == *exit=1 ]] || sk_diag "$(tail -n 15 <<<"$out")"
done

# --- C. a short write of the state file -----------------------------------------------------------
STATE=${SK_ROOT[1]}/var/lib/steadykit/state-$MT_TAG/state
# a normal run first leaves a complete state file (saved at stop)
mt_start_primary || mt_bail "primary"
mt_stop_primary || mt_bail "primary did not stop"
sk_check "a normal run saved the state file" test -s "$STATE"
cp "$STATE" "$SK_TMP/state.good"
keys=$(grep -c '=' "$STATE")
# every save of this run writes half the file, then fails as a full disk would
SKFUSED_FAULT=state_write@1+ mt_start_primary || mt_bail "primary (state_write)"
mt_stop_primary || mt_bail "primary did not stop"
sk_check "skfused said it could not save its state" grep -q "cannot save state" "$SK_TMP/fused1.$MT_N1.log"
sk_check "the state file is the last complete one, never a half-written one" \
	cmp -s "$STATE" "$SK_TMP/state.good"
sk_check "it still has all its $keys keys" test "$(grep -c '=' "$STATE")" = "$keys"
mt_start_primary || mt_bail "primary after the failed saves"
sk_check "a later start reads it" grep -q "ready: primary" "$SK_TMP/fused1.$MT_N1.log"
mt_stop_primary || mt_bail "primary did not stop"

# --- D. out of memory while the secondary records a listing's names -------------------------------
# Both sides already hold the same 60 files; the first resync's listing of d fails on its 10th
# name. That listing must remove nothing (each file keeps its inode on the secondary) and a later
# resync must converge.
mt_instance names $((MT_PORT + 1))
mkdir -p "$MT_DIR1/d"
for i in $(seq 1 60); do echo "file $i" >"$MT_DIR1/d/f$i"; done
cp -a "$MT_DIR1/d" "$MT_DIR2/d"
before=$(cd "$MT_DIR2/d" && stat -c '%n %i' -- * | sort)
SKFUSED_FAULT=rs_names@10 mt_start_secondary || mt_bail "secondary (rs_names)"
mt_start_primary || mt_bail "primary"
sk_check "in sync after the failed listing" mt_wait_synced 60
sk_check "the secondary met the failure point" grep -q "more names than can be recorded" "$SK_TMP/fused2.$MT_N2.log"
after=$(cd "$MT_DIR2/d" && stat -c '%n %i' -- * | sort)
sk_check "no file of the listed directory was removed and made again (same inodes)" test "$before" = "$after"
[ "$before" = "$after" ] || sk_diag "$(diff <(echo "$before") <(echo "$after") | head -n 10)"
mt_same_trees
mt_stop_primary
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'" || sk_diag "secondary did not unmount"

# --- E. a secondary that cannot record "resync in progress" refuses the resync ---------------------
# Otherwise a crash in the middle of it would leave a torn copy whose state says it is whole.
mt_instance torn $((MT_PORT + 2))
echo "written before the secondary came" >"$MT_DIR1/new"
SKFUSED_FAULT=state_write@1+ mt_start_secondary || mt_bail "secondary (state_write)"
mt_start_primary || mt_bail "primary"
sk_check "the secondary refuses the session" \
	mt_wait_until 20 grep -q "cannot record that this copy is being resynchronised" "$SK_TMP/fused2.$MT_N2.log"
sleep 1
sk_check "and nothing of the resync reached its copy" test ! -e "$MT_DIR2/new"
sk_check "the primary does not count it in sync" bash -c '[ "$1" != true ]' _ "$(mt_st 1 peer_in_sync)"
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'" || sk_diag "secondary did not unmount"
mt_start_secondary || mt_bail "secondary"
sk_check "once it can record its state, the resync goes through" mt_wait_synced 60
sk_check "and the file is there" grep -q "before the secondary came" "$MT_DIR2/new"
mt_stop_primary
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'" || sk_diag "secondary did not unmount"

# --- F. a primary that cannot save the new generation of its first change alone tries again ------
# The primary's 4th state save is the first change's after the peer is gone (1: first start,
# 2: in sync, 3: peer lost). If the new generation never reached the disk, a crash would bring
# this copy back in the generation the peer holds too: both would look equal, nothing resynced.
mt_instance gen $((MT_PORT + 3))
STATE=${SK_ROOT[1]}/var/lib/steadykit/state-$MT_TAG/state
mt_start_secondary || mt_bail "secondary"
SKFUSED_FAULT=state_write@4 mt_start_primary || mt_bail "primary (state_write@4)"
mt_wait_synced 30 || mt_bail "not in sync"
g0=$(sed -n 's/^gen_current=//p' "$STATE")
sk_kill9 "$MT_PID2"
mt_wait_until 10 bash -c '[ "$(mt_st 1 peer)" != connected ]' || sk_diag "primary still says connected"
echo a >"$MT_DIR1/a"
sk_check "the first change's save failed" \
	mt_wait_until 5 grep -q "not saved; tried again with the next change" "$SK_TMP/fused1.$MT_N1.log"
echo b >"$MT_DIR1/b"
sk_kill9 "$MT_PID1"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR1' || umount -l '$MT_DIR1'"
g1=$(sed -n 's/^gen_current=//p' "$STATE")
sk_check "after a crash the state holds the new generation ($g0 -> $g1), saved by the next change" \
	bash -c '[ -n "$1" ] && [ -n "$2" ] && [ "$1" != "$2" ]' _ "$g0" "$g1"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR1'" || umount -l "$MT_DIR1"

# --- G. a stop while a write waits for its ack ------------------------------------------------------
# The secondary is held 100 ms (SIGSTOP) while the application's write+fsync waits for its ack, and
# the primary is told to stop meanwhile: the stop lets the frames in flight be acknowledged first
# (within the budget), so the write succeeds and the peer is not left outdated by the stop.
mt_instance drain $((MT_PORT + 4))
STATE=${SK_ROOT[1]}/var/lib/steadykit/state-$MT_TAG/state
mt_start_secondary || mt_bail "secondary"
mt_start_primary || mt_bail "primary"
mt_wait_synced 30 || mt_bail "not in sync"
# the writer opens the file, says so, waits for "go", then writes (no fsync, no close checked:
# the daemon serves nothing new once told to stop)
"$MT_PY" -c 'import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
open(sys.argv[2], "w").close()
for _ in range(500):
    if os.path.exists(sys.argv[3]):
        break
    time.sleep(0.01)
n = os.write(fd, b"x" * 4096)
sys.exit(0 if n == 4096 else 1)' "$MT_DIR1/inflight" "$SK_TMP/opened" "$SK_TMP/go" 2>"$SK_TMP/inflight.err" &
wpid=$!
mt_wait_until 10 test -e "$SK_TMP/opened" || sk_diag "the writer did not open its file"
# plain kill (both PIDs are this test's, started by sk_spawn): the whole hold must stay well
# inside the 240 ms the budget allows an unanswered frame
sk_alive "$MT_PID1" && sk_alive "$MT_PID2" || mt_bail "daemons gone"
kill -STOP "$MT_PID2"
touch "$SK_TMP/go"
sleep 0.03 # the write is on its way and waits for its ack
kill -TERM "$MT_PID1"
sleep 0.03
kill -CONT "$MT_PID2"
wait "$wpid"
wrc=$?
[ "$wrc" = 0 ] || sk_diag "writer: $(cat "$SK_TMP/inflight.err")"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR1'" || sk_diag "primary did not unmount"
sk_check "the write in flight at the stop succeeded" test "$wrc" = 0
sk_check "the stop was clean: no peer loss at shutdown" bash -c '! grep -q "shutting down" "$1"' _ "$SK_TMP/fused1.$MT_N1.log"
mt_wait_until 10 bash -c '! kill -0 "$1" 2>/dev/null' _ "$MT_PID1" || sk_diag "primary still running"
sk_check "the peer is still counted in sync after the stop" grep -qx "peer_in_sync=1" "$STATE"
[ "$(sed -n 's/^peer_in_sync=//p' "$STATE")" = 1 ] || sk_diag "state: $(tr '\n' ' ' <"$STATE")"
sk_check "and the write is on the secondary" test "$(stat -c %s "$MT_DIR2/inflight" 2>/dev/null)" = 4096

# --- H. a read reply the kernel refuses by splice ----------------------------------------------------
# libfuse frees a request whose spliced reply fails, without answering it: the reader would wait for
# ever. read_splice: every reply's splice fails (EINVAL); read_splice_short: and a byte of the reply is
# missing, so only an error can answer it.
mt_instance splice $((MT_PORT + 5))
mt_start_secondary || mt_bail "secondary"
SKFUSED_FAULT=read_splice@1+ mt_start_primary || mt_bail "primary (read_splice)"
mt_wait_synced 30 || mt_bail "not in sync"
head -c $((4 << 20)) /dev/urandom >"$MT_DIR1/r"
sync
dd if="$MT_DIR1/r" iflag=nocache count=0 status=none # the mount's cached pages go: reads reach skfused
sum=$(timeout 20 md5sum <"$MT_DIR1/r" | cut -d' ' -f1)
sk_check "every refused read reply sent by write(): the file reads back whole" \
	test "$sum" = "$(md5sum <"$MT_BACK1/r" | cut -d' ' -f1)"
sk_check "the refused replies are counted (read_splice_copied > 0)" \
	test "$(mt_st 1 read_splice_copied)" -gt 0
mt_stop_primary || mt_bail "primary did not stop"
# refused_eio POINT WHAT: the first reply's splice refused, and POINT makes it unsendable; the request
# is answered EIO. That may be the kernel's read-ahead, which the page's own read then asks again.
refused_eio() {
	local sum
	SKFUSED_FAULT=read_splice@1,$1@1 mt_start_primary || mt_bail "primary ($1)"
	dd if="$MT_DIR1/r" iflag=nocache count=0 status=none
	sum=$(timeout 20 md5sum <"$MT_DIR1/r" 2>"$SK_TMP/$1.err" | cut -d' ' -f1)
	sk_check "$2 is answered EIO: the read ends (the file's data, or EIO), no hang" \
		bash -c '[ "$1" = "$2" ] || grep -q "Input/output error" "$3"' _ "$sum" \
		"$(md5sum <"$MT_BACK1/r" | cut -d' ' -f1)" "$SK_TMP/$1.err"
	sk_check "$1: and counted (read_splice_eio 1)" test "$(mt_st 1 read_splice_eio)" = 1
	sum=$(timeout 20 md5sum <"$MT_DIR1/r" | cut -d' ' -f1)
	sk_check "$1: the next read of it succeeds" test "$sum" = "$(md5sum <"$MT_BACK1/r" | cut -d' ' -f1)"
	mt_stop_primary || mt_bail "primary did not stop ($1)"
}
refused_eio read_splice_short "a reply a byte short in the pipe"
# read_splice_empty: the kernel took the whole reply from the pipe, then refused its header (a CI
# failure could have been this): no header is left to say which request it was, so the one this
# worker read is answered
refused_eio read_splice_empty "a reply gone from the pipe"
sk_done
