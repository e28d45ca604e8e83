#!/usr/bin/env bash
# test/cluster/agent_witness.sh: split brain guards: the lease witness (skagentd --witness) and the ping witness.
#
# Nodes 1 and 2 (module id 1) and nodes 6 and 7 (module id 2) run mirror modules with node 3 as
# their lease witness; nodes 4 and 5 run one in a second cluster whose ping witness is node 3's
# address. The pairs run side by side so their waits overlap. Faults are nftables
# drops on the bridge (sk_partition), SIGSTOP of an agent or of the witness. Timings use the
# one monotonic clock of the machine (python's CLOCK_MONOTONIC, as the daemons' own).
#
# Lease pair: fresh start (node1 PRIM holding the lease, node2 SECOND); forged and replayed
# lease requests refused and counted by the witness; the witness stopped while both nodes are
# fine: nothing changes (writes still acknowledged), a warning; node1<->node2 cut while both
# reach the witness: no failover; node6's agent SIGSTOPped and node6 cut from node7: node6's
# skfused refuses writes (EROFS) by itself before node7 can write, node7 takes over; node1 (PRIM)
# cut from node2 and the witness: EROFS on node1 before node2 becomes writable, exactly one
# writer at any time, every acknowledged write on node2; then node2 (PRIM) cut off the same way
# with its skfused SIGSTOPped across the lease's end: the write pending in it still gets EROFS
# (the agent kills skfused only once its status says it fenced itself and answered every
# request it read; its answer is made 0.5 s late by a fault point).
# Ping pair: node5 (SECOND) cut from node4 and the ping witness does not become PRIM while node4
# (reaching the witness) keeps serving; node4 then cut from the witness too stops serving.
set -u
source "$SK_SRC/test/cluster/agent_common.sh"

LEASE_MS=1000 # the default of cluster.json witness.lease_ms
PORT_W=7712
VIP_A=10.99.0.50
VIP_B=10.99.0.51
VIP_C=10.99.0.52
T_START=$(date +%s)

for f in "$AT_AGENTD" "$AT_SKCTL" "$SK_BUILD/fused/skfused"; do
	[ -x "$f" ] || at_bail "not built: $f"
done
command -v python3 >/dev/null || at_bail "python3 missing"
sk_cluster_init 7 --client || at_bail "sk_cluster_init failed"
(umask 077 && head -c 32 /dev/urandom | base64 >"$SK_TMP/secret") || at_bail "secret"

# conf N CLUSTER NODES_JSON WITNESS_JSON VIP MODULE_NODES MODULE_ID
conf() {
	local n=$1 root=${SK_ROOT[$1]} mod
	mod=$root/var/lib/steadykit/modules/$AT_MOD
	mkdir -p "$root/etc/steadykit" "$mod/bin" "$root$AT_DATA_REL" || at_bail "mkdir"
	install -m 0600 "$SK_TMP/secret" "$root/etc/steadykit/secret" || at_bail "secret copy"
	cat >"$root/etc/steadykit/cluster.json" <<-EOF
	{
	  "cluster": "$2",
	  "secret_file": "/etc/steadykit/secret",
	  "networks": ["lan"],
	  "nodes": [ $3 ],
	  "heartbeat": { "interval_ms": 100, "timeout_ms": 400 },
	  "witness": $4
	}
	EOF
	AT_N[$n]=0
	[ "$n" = 3 ] && return 0
	# latency budget 2 x lease: a primary cut off from everything never acknowledges a write
	# alone before its fence falls (docs/agent.md "Witnesses")
	cat >"$mod/userconfig.json" <<-EOF
	{
	  "name": "$AT_MOD", "id": $7, "kind": "mirror", "nodes": [$6],
	  "vip": { "addr": "$5", "prefix": 24, "interface": "eth0" },
	  "replication": { "dirs": ["$AT_DATA_REL"], "mode": "sync", "latency_budget_ms": $((2 * LEASE_MS)) }
	}
	EOF
	# no application scripts: what is tested is who may write, through the mount itself
	sk_track_mount "$root$AT_DATA_REL"
}
node() { printf '{ "name": "node%s", "id": %s, %s"addresses": { "lan": "%s" } }' "$1" "$1" "${2:-}" "${SK_IP[$1]}"; }
NODES_A="$(node 1), $(node 2), $(node 3 '"role": "witness", '), $(node 6), $(node 7)"
# no lease_ms: the default (LEASE_MS above) is what is tested
WIT_A="{ \"port\": $PORT_W }"
for i in 1 2 3; do conf "$i" lease "$NODES_A" "$WIT_A" "$VIP_A" '"node1", "node2"' 1; done
for i in 6 7; do conf "$i" lease "$NODES_A" "$WIT_A" "$VIP_C" '"node6", "node7"' 2; done
NODES_B="$(node 4), $(node 5)"
for i in 4 5; do
	conf "$i" ping "$NODES_B" "{ \"ping\": [\"${SK_IP[3]}\"] }" "$VIP_B" '"node4", "node5"' 1
done

W_PID=$(sk_spawn 3 witness "$AT_AGENTD" --root "${SK_ROOT[3]}" --node node3 --witness) || at_bail "witness"
# node2's skfused answers the first operation it refuses at the lease's end 0.5 s late, as a
# thread preempted before it answers (fused/fault.h): the frozen-skfused fault at the end
for i in 1 4 5 6 7; do at_start "$i" || at_bail "agent $i"; done
SKFUSED_FAULT=fence_reply_slow at_start 2 || at_bail "agent 2"

# a writer: one record per write() on an fd opened before the fault; "ok I T0 T1" when the
# write returned (acknowledged), "err I ERRNO T0 T1" when it failed; until the stop file exists
cat >"$SK_TMP/writer.py" <<'PY'
import errno, os, sys, time
d, log, stop = sys.argv[1:4]
fd = os.open(os.path.join(d, "w.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
out = open(log, "w", buffering=1)
i = 0
end = time.monotonic() + 60
while not os.path.exists(stop) and time.monotonic() < end:
    i += 1
    t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
    try:
        os.write(fd, b"rec %d\n" % i)
        out.write("ok %d %.6f %.6f\n" % (i, t0, time.clock_gettime(time.CLOCK_MONOTONIC)))
    except OSError as e:
        out.write("err %d %d %.6f %.6f\n" % (i, e.errno, t0, time.clock_gettime(time.CLOCK_MONOTONIC)))
        time.sleep(0.02)
    time.sleep(0.01)
PY
# a prober: tries to create a file every 20 ms; prints the monotonic time the first success began
cat >"$SK_TMP/prober.py" <<'PY'
import os, sys, time
d, out, stop = sys.argv[1:4]
end = time.monotonic() + 60
while not os.path.exists(stop) and time.monotonic() < end:
    t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
    try:
        fd = os.open(os.path.join(d, "probe"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, b"x")
        os.close(fd)
        open(out, "w").write("%.6f\n" % t0)
        break
    except OSError:
        time.sleep(0.02)
PY
mono() { python3 -c 'import time; print("%.6f" % time.clock_gettime(time.CLOCK_MONOTONIC))'; }
show() { local i; for i in "$@"; do sk_diag "node$i: $(at_ctl "$i" state -m "$AT_MOD" 2>&1 | sed -n '4,6p')"; done; }
roles() { at_code_is "$1" 3 && at_code_is "$2" 4; }
mlog() { cat "$(at_state_dir "$1")/module.log" 2>/dev/null; }
wlog() { cat "$SK_TMP/witness.log"; }
can_write() { (echo "$2" >"$(at_data "$1")/$3") 2>/dev/null; }

if sk_wait_for 30 roles 1 2; then
	sk_ok "lease pair: node1 PRIM, node2 SECOND"
else
	sk_not_ok "lease pair: node1 PRIM, node2 SECOND"
	show 1 2
	at_bail "no primary"
fi
sk_check "node1 holds the lease of the witness (granted after the witness's start grace)" \
	sk_wait_for 10 sh -c "grep -q 'lease of node3 held' '$(at_state_dir 1)/module.log'"
if sk_wait_for 20 roles 6 7; then
	sk_ok "second lease pair: node6 PRIM, node7 SECOND"
else
	sk_not_ok "second lease pair: node6 PRIM, node7 SECOND"
	show 6 7
fi
sk_check "the witness logged the grant to node1" sk_wait_for 5 sh -c "grep -q 'lease granted to node1' '$SK_TMP/witness.log'"
sk_check "node1's mount takes writes" sk_wait_for 10 can_write 1 hello w0.txt
sk_wait_for 20 at_in_sync 2 || sk_diag "node2 not in sync after 20 s"

# ---- ping pair ----
if sk_wait_for 20 roles 4 5; then
	sk_ok "ping pair: node4 PRIM, node5 SECOND"
else
	sk_not_ok "ping pair: node4 PRIM, node5 SECOND"
	show 4 5
fi
sk_wait_for 15 at_in_sync 5 || sk_diag "node5 not in sync"
took() { grep -c "transition .* -> \(ALONE\|PRIM\)" "$(at_state_dir "$1")/module.log"; }
sk_diag "t+$(($(date +%s) - T_START)) s"
# ---- forged and replayed lease requests ----
sk_client python3 - "${SK_IP[3]}" "$PORT_W" <<'PY'
import os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
hdr = struct.pack(">IBBHIQI", 0x534b4631, 2, 96, 0, 1, 1 << 62, 16)
body = bytes([1, 1, 1, 0]) + struct.pack(">IQ", 1, 7)
for _ in range(5):
    s.sendto(hdr + body + os.urandom(16), (sys.argv[1], int(sys.argv[2])))
PY
cap=$SK_TMP/lease.bin
sk_in 3 timeout 10 python3 - "$cap" "${SK_IP[1]}" "$PORT_W" <<'PY'
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind(("eth0", 0x0800))
s.settimeout(8)
src = socket.inet_aton(sys.argv[2])
while True:
    pkt = s.recv(4096)
    ihl = (pkt[0] & 15) * 4
    if pkt[9] == 17 and pkt[12:16] == src and int.from_bytes(pkt[ihl + 2:ihl + 4], "big") == int(sys.argv[3]):
        open(sys.argv[1], "wb").write(pkt[ihl + 8:])
        break
PY
if [ -s "$cap" ]; then
	sk_in 1 python3 - "$cap" "${SK_IP[1]}" "${SK_IP[3]}" "$PORT_W" <<'PY'
import socket, sys
data = open(sys.argv[1], "rb").read()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], 0))
for _ in range(3):
    s.sendto(data, (sys.argv[3], int(sys.argv[4])))
PY
fi
sleep 0.3
sk_check "forged lease requests (bad MAC) refused and counted by the witness" \
	sh -c "grep -q 'refused on lan from $SK_CLIENT_IP: mac (5 so far)' '$SK_TMP/witness.log'"
sk_check "replayed lease requests (node1's, resent from its address) refused and counted" \
	sh -c "grep -q 'refused on lan from ${SK_IP[1]}: replay (3 so far)' '$SK_TMP/witness.log'"
sk_check "after them node1 is still PRIM" roles 1 2

sk_diag "t+$(($(date +%s) - T_START)) s"
# ---- the witness down, both nodes fine: no change, a warning ----
held_n() { grep -c 'lease of node3 held' "$(at_state_dir 1)/module.log"; }
n_held=$(held_n)
sk_sigstop "$W_PID"
# meanwhile the ping pair: node5 (SECOND) cut from node4 and from the ping witness
n5_took=$(took 5)
# the witness first: cut from node4 first, node5 could declare it dead and hear the witness
# before the second cut lands (one nft command takes 0.5 s under load)
sk_partition 5 3
sk_partition 5 4
T_PING=$(date +%s)
sleep $(((LEASE_MS * 3 / 2 + 999) / 1000))
sk_check "witness stopped for 1.5 leases: node1 still PRIM, node2 still SECOND" roles 1 2
sk_check "witness stopped: node1's mount still takes writes (its fence runs on its SECOND peer)" \
	can_write 1 during-witness-down w1.txt
sk_check "witness stopped: node1's agent warns" sh -c "grep -q 'lease witness node3 silent' '$SK_TMP/agent1.1.log'"
sk_sigcont "$W_PID"
# node1 takes the lease again (the cut below must find it the holder)
sk_check "witness back: node1 holds the lease again" sk_wait_for 5 sh -c "[ \$(grep -c 'lease of node3 held' '$(at_state_dir 1)/module.log') -gt $n_held ]"

# the ping pair, cut while the witness was stopped: node5 cut for 3 s by now
sk_check "ping: node5, cut from node4 and the ping witness, never became primary" test "$(took 5)" = "$n5_took"
sk_check "ping: node5 waits and says why (no ping witness answers)" \
	sh -c "'$AT_SKCTL' --root '${SK_ROOT[5]}' state -m $AT_MOD | grep -q 'no ping witness'"
sk_check "ping: node4, reaching the witness, serves (ALONE)" at_code_is 4 2
sk_partition 4 3
sk_check "ping: node4 cut from the witness too stops serving (WAIT)" sk_wait_for 5 at_code_is 4 1
sk_check "ping: skctl why on node4 says so" \
	sh -c "'$AT_SKCTL' --root '${SK_ROOT[4]}' why -m $AT_MOD | grep -q 'no ping witness'"
sk_diag "t+$(($(date +%s) - T_START)) s"
# ---- node1 <-> node2 cut, both reach the witness: no failover ----
n2_took=$(took 2)
sk_partition 1 2
T_CUT=$(date +%s)
# (checked after pair 6/7's fault below, which runs meanwhile)

# run_fault NAME OLD NEW STOP_AGENT PARTITIONS...: writer on OLD, prober on NEW, then the fault
run_fault() {
	local name=$1 old=$2 new=$3 stopagent=$4 t0 first_erofs last_ok first_new acked missing
	shift 4
	rm -f "$SK_TMP/stop" "$SK_TMP/new.t"
	python3 "$SK_TMP/writer.py" "$(at_data "$old")" "$SK_TMP/w-$name.log" "$SK_TMP/stop" &
	local wpid=$!
	python3 "$SK_TMP/prober.py" "$(at_data "$new")" "$SK_TMP/new.t" "$SK_TMP/stop" &
	local ppid=$!
	sk_wait_for 5 sh -c "grep -c '^ok' '$SK_TMP/w-$name.log' | grep -qv '^[0-9]$'" ||
		sk_diag "$name: writer slow"
	sk_diag "$name: writer running at t+$(($(date +%s) - T_START)) s"
	t0=$(mono)
	# the peer's heartbeats saying SECOND pile up in the stopped agent's socket before the cut
	# (the peer counts it dead only after 400 ms): read after SIGCONT, they must not extend
	# the fence again (checked below)
	[ "$stopagent" = 1 ] && sk_sigstop "${AT_AGENT_PID[$old]}" && sleep 0.2
	while [ $# -gt 0 ]; do sk_partition "$old" "$1"; shift; done
	sk_wait_for 20 test -s "$SK_TMP/new.t" || sk_diag "$name: node$new never writable"
	sk_wait_for 5 grep -q '^err' "$SK_TMP/w-$name.log"
	touch "$SK_TMP/stop"
	wait "$ppid" 2>/dev/null
	# a writer blocked on a frozen mount ends once the mount answers: bounded wait
	for ((k = 0; k < 100; k++)); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$wpid" 2>/dev/null
	wait "$wpid" 2>/dev/null
	sk_diag "$name: writer stopped at t+$(($(date +%s) - T_START)) s"
	first_new=$(cat "$SK_TMP/new.t" 2>/dev/null)
	first_erofs=$(awk '$1 == "err" && $3 == 30 { print $5; exit }' "$SK_TMP/w-$name.log")
	last_ok=$(awk '$1 == "ok" { t = $4 } END { print t }' "$SK_TMP/w-$name.log")
	sk_diag "$name: node$old's write errors (count errno): $(awk '$1 == "err" { print $3 }' "$SK_TMP/w-$name.log" | sort | uniq -c | tr '\n' ' ')"
	sk_diag "$name: t0 $t0, node$old first EROFS $first_erofs, last ack $last_ok, node$new first write $first_new"
	if [ -n "$first_new" ] && [ -n "$first_erofs" ] &&
		python3 -c "import sys; sys.exit(not float('$first_erofs') < float('$first_new'))"; then
		sk_ok "$name: node$old refused writes with EROFS ($(python3 -c "print(int((float('$first_erofs') - float('$t0')) * 1000))") ms after the fault) before node$new took one ($(python3 -c "print(int((float('$first_new') - float('$t0')) * 1000))") ms)"
	else
		sk_not_ok "$name: node$old refused writes with EROFS before node$new took one"
		show "$old" "$new"
	fi
	if [ -n "$first_new" ] && [ -n "$last_ok" ] &&
		python3 -c "import sys; sys.exit(not float('$last_ok') < float('$first_new'))"; then
		sk_ok "$name: one writer at a time (node$old's last acknowledged write ended before node$new's first began)"
	else
		sk_not_ok "$name: one writer at a time"
	fi
	acked=$(grep -c '^ok' "$SK_TMP/w-$name.log")
	missing=$(awk '$1 == "ok" { print "rec " $2 }' "$SK_TMP/w-$name.log" |
		grep -vxF -f "$(at_data "$new")/w.log" | wc -l)
	if [ "$acked" -gt 0 ] && [ "$missing" = 0 ]; then
		sk_ok "$name: every acknowledged write ($acked) is on node$new"
	else
		sk_not_ok "$name: every acknowledged write ($acked) is on node$new ($missing missing)"
	fi
	sk_check "$name: node$new is primary" sk_wait_for 10 at_is_primary "$new"
	# the taker asks again when the witness said the lease frees, not every 100 ms meanwhile
	local k
	k=$(sed -n "s/.*lease granted to node$new (.*) after \([0-9]*\) refusals since the last grant.*/\1/p" "$SK_TMP/witness.log" | tail -1)
	sk_check "$name: node$new asked the witness again when the lease freed there, not on a tick ($k refusals before the grant, at most 3)" \
		test -n "$k" -a "${k:-99}" -le 3
}

sk_diag "t+$(($(date +%s) - T_START)) s"
# ---- node6's agent SIGSTOPped and node6 cut from node7: skfused fences itself ----
sk_wait_for 15 at_in_sync 7 || sk_diag "node7 not in sync"
run_fault "agent SIGSTOP" 6 7 1 7
# node7 writes now; node6's agent, stopped for seconds, has node7's old heartbeats queued, the
# newest saying SECOND. Resumed, it must not take them for a fresh vouch and lift skfused's
# fence: a writer on node6 gets no acknowledged write after SIGCONT
rm -f "$SK_TMP/stop"
# (the fence refuses opening for writing too: each write opens the file afresh)
python3 - "$(at_data 6)/w.log" "$SK_TMP/w-cont.log" "$SK_TMP/stop" <<'PY' &
import os, sys, time
path, log, stop = sys.argv[1:4]
out = open(log, "w", buffering=1)
end = time.monotonic() + 20
while not os.path.exists(stop) and time.monotonic() < end:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"after SIGCONT\n")
            out.write("ok\n")
        finally:
            os.close(fd)
    except OSError as e:
        out.write("err %d\n" % e.errno)
    time.sleep(0.02)
PY
wcont=$!
sk_wait_for 5 grep -q '^err' "$SK_TMP/w-cont.log"
sk_sigcont "${AT_AGENT_PID[6]}"
sleep 1 # the lifted fence would show within 100 ms (the next tick) and last 400 ms
touch "$SK_TMP/stop"
for ((k = 0; k < 50; k++)); do kill -0 "$wcont" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$wcont" 2>/dev/null
wait "$wcont" 2>/dev/null
sk_diag "agent SIGCONT: node6's writes after it (count result errno): $(sort "$SK_TMP/w-cont.log" | uniq -c | tr '\n' ' ')"
if [ "$(grep -c '^err 30$' "$SK_TMP/w-cont.log")" -gt 10 ] && ! grep -q '^ok' "$SK_TMP/w-cont.log"; then
	sk_ok "agent SIGCONT: node6 acknowledged no write (the queued SECOND heartbeats did not lift its fence)"
else
	sk_not_ok "agent SIGCONT: node6 acknowledged no write (the queued SECOND heartbeats did not lift its fence)"
fi
not_prim() { ! at_is_primary "$1"; }
sk_check "agent SIGCONT: node6 stops serving (its lease is gone)" sk_wait_for 10 not_prim 6
sk_diag "t+$(($(date +%s) - T_START)) s"
# node7 went on alone (ALONE, node6 still cut off and behind); now node7 dies for good: node6's
# older copy must not take over by itself, whatever the witness's clock says
n6_took=$(took 6)
# shellcheck disable=SC2046
kill -KILL $(at_pids_of 7) 2>/dev/null
T_KILL7=$(date +%s)
sk_check "agent SIGSTOP: node6's skfused logged its refusals" \
	sh -c "grep -q 'writes refused (EROFS)' '$(at_state_dir 6)/module.log'"

sk_wait_for 5 sh -c "[ \$((\$(date +%s) - $T_CUT)) -ge 4 ]"
sk_check "node1/node2 cut, both reach the witness: node2 never became primary in $(($(date +%s) - T_CUT)) s (lease $LEASE_MS ms)" \
	test "$(took 2)" = "$n2_took"
sk_check "... node1 kept the lease and serves (ALONE)" at_code_is 1 2
sk_check "... skctl on node2 says why it waits (the lease is node1's)" \
	sh -c "'$AT_SKCTL' --root '${SK_ROOT[2]}' state -m $AT_MOD | grep -q 'held by node1'"
sk_heal 1 2 # node2 resyncs while pair 6/7 is tested
sk_diag "t+$(($(date +%s) - T_START)) s"
# ---- node1 (PRIM) cut from node2 and from the witness ----
sk_check "healed: node2 back as SECOND, in sync" sk_wait_for 20 at_in_sync 2
# the witness first: cut from node2 first, node1 could declare node2 dead and tell the witness
# its peer is behind (it went ALONE) before the second cut lands (0.5 s under load); the witness
# then rightly refuses node2 (docs/agent.md "Witnesses")
run_fault "partition" 1 2 0 3 2
sk_check "partition: node1 stopped serving (WAIT)" sk_wait_for 5 at_code_is 1 1
sk_check "partition: skctl why on node1 names the lease" \
	sh -c "'$AT_SKCTL' --root '${SK_ROOT[1]}' why -m $AT_MOD | grep -q lease"
sk_diag "node2 why: $(at_ctl 2 why -m "$AT_MOD" -n 1)"
# node1 comes back as SECOND (resync) while pair 6/7 is tested below; used by the last fault
sk_heal 1 3
sk_heal 1 2

# ---- node7 (alone, holding the lease) killed: node6 (behind) waits; the operator can force ----
sk_wait_for 5 sh -c "[ \$((\$(date +%s) - $T_KILL7)) -ge 4 ]"
sk_check "lone holder node7 killed: node6 (older copy) did not take over in $(($(date +%s) - T_KILL7)) s" \
	test "$(took 6)" = "$n6_took"
sk_check "... node6 says the last holder went on alone and what to do" \
	sh -c "'$AT_SKCTL' --root '${SK_ROOT[6]}' state -m $AT_MOD | grep -q 'went on alone'"
at_ctl 6 prim -m "$AT_MOD" --force --yes >/dev/null 2>&1 || at_ctl 6 prim -m "$AT_MOD" --force </dev/null >/dev/null 2>&1
sk_check "skctl prim --force on node6: it takes the lease (FORCE) and serves" sk_wait_for 15 at_is_primary 6

# ---- node2 (PRIM) cut off again, its skfused frozen across the lease's end ----
# The agent steps down once the lease ended; skfused, SIGSTOPped meanwhile, has not answered the
# write waiting in it. Killed then, the write would fail with a connection error: the agent must
# wait (bounded) for skfused's status to say it fenced itself, so the write gets EROFS.
sk_diag "t+$(($(date +%s) - T_START)) s"
if sk_wait_for 30 at_in_sync 1 && at_is_primary 2; then
	rm -f "$SK_TMP/stop" "$SK_TMP/new.t"
	python3 "$SK_TMP/writer.py" "$(at_data 2)" "$SK_TMP/w-frozen.log" "$SK_TMP/stop" &
	wpid=$!
	python3 "$SK_TMP/prober.py" "$(at_data 1)" "$SK_TMP/new.t" "$SK_TMP/stop" &
	ppid=$!
	if ! sk_wait_for 10 grep -q '^ok' "$SK_TMP/w-frozen.log"; then
		sk_diag "frozen: no write acknowledged on node2 in 10 s: $(at_ctl 2 state -m "$AT_MOD" 2>&1 | sed -n 4,5p)"
		sk_diag "frozen: $(tail -5 "$(at_state_dir 2)/module.log")"
	fi
	fpid=$(at_fused_pid 2)
	n_wait=$(grep -c ' -> WAIT: ' "$(at_state_dir 2)/module.log")
	sk_partition 2 3
	sk_partition 2 1
	sleep 0.05 # a write issued after the cut waits in skfused (writes are 10 ms apart)
	kill -STOP "$fpid"
	# resumed once the agent is stepping down (the lease ended) and well within its bound (2 s)
	sk_wait_for 10 sh -c "[ \$(grep -c ' -> WAIT: ' '$(at_state_dir 2)/module.log') -gt $n_wait ]" ||
		sk_diag "frozen: node2's agent did not step down"
	sleep 0.3
	kill -CONT "$fpid"
	sk_wait_for 20 test -s "$SK_TMP/new.t" || sk_diag "frozen: node1 never writable"
	sk_wait_for 5 grep -q '^err' "$SK_TMP/w-frozen.log"
	touch "$SK_TMP/stop"
	wait "$ppid" 2>/dev/null
	for ((k = 0; k < 100; k++)); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$wpid" 2>/dev/null
	wait "$wpid" 2>/dev/null
	first_err=$(awk '$1 == "err" { print $3; exit }' "$SK_TMP/w-frozen.log")
	last_ok=$(awk '$1 == "ok" { t = $4 } END { print t }' "$SK_TMP/w-frozen.log")
	first_new=$(cat "$SK_TMP/new.t" 2>/dev/null)
	sk_diag "frozen: node2's write errors (count errno): $(awk '$1 == "err" { print $3 }' "$SK_TMP/w-frozen.log" | sort | uniq -c | tr '\n' ' ')"
	sk_diag "frozen: $(grep -E 'skfused (fenced itself|did not confirm|has no lease)' "$(at_state_dir 2)/module.log" | tail -1)"
	sk_check "frozen skfused: node2's pending write was answered EROFS, not a connection error (first error: errno ${first_err:-none})" \
		test "$first_err" = 30
	sk_check "frozen skfused: node2's agent killed it once it said it fenced itself" \
		sh -c "grep -q 'skfused fenced itself' '$(at_state_dir 2)/module.log'"
	if [ -n "$first_new" ] && [ -n "$last_ok" ] &&
		python3 -c "import sys; sys.exit(not float('$last_ok') < float('$first_new'))"; then
		sk_ok "frozen: one writer at a time (node2's last acknowledged write ended before node1's first began)"
	else
		sk_not_ok "frozen: one writer at a time"
	fi
	missing=$(awk '$1 == "ok" { print "rec " $2 }' "$SK_TMP/w-frozen.log" | grep -vxF -f "$(at_data 1)/w.log" | wc -l)
	sk_check "frozen: every acknowledged write of node2 is on node1 ($missing missing)" test "$missing" = 0
else
	sk_not_ok "node1 back in sync as SECOND under node2 for the frozen-skfused fault"
	show 1 2
fi
sk_diag "duration $(($(date +%s) - T_START)) s"
sk_done
