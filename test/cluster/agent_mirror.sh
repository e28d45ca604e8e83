#!/usr/bin/env bash
# test/cluster/agent_mirror.sh: two skagentd decide by themselves: one PRIM with the VIP and the app,
# failover on kill -9 / link down / SIGSTOP of the primary, acknowledged writes kept, refusals counted.
#
# Faults are real: kill -9 of every process of the primary's namespace (agent, skfused, the web
# server), the primary's cable pulled, SIGSTOP of the primary's agent and skfused. After each:
# exactly one primary, holding the VIP; every write ackwriter saw acknowledged (through the
# primary's mount) is on the new primary; the client is served through the VIP again, and the
# time from the fault to that first answer is printed as a diagnostic (target < 1 s).
# A swap whose secondary falls behind during the hand-over (dropped by the primary while its
# stop_prim runs) fails: the role stays with the newest copy, no acknowledged write is lost.
set -u
source "$SK_SRC/test/cluster/agent_common.sh"

at_init
AW=$AT_TOOLS/ackwriter
[ -x "$AW" ] || at_bail "ackwriter not built"
AWO=(--threads 2 --files 4 --size 4096)

at_start 1 || at_bail "agent 1"
at_start 2 || at_bail "agent 2"

one_primary() { # exactly one primary, it holds the VIP, the other does not
	local p=0 n=0 i
	for i in 1 2; do at_is_primary "$i" && { p=$i; n=$((n + 1)); }; done
	[ "$n" = 1 ] || return 1
	at_holds_vip "$p" || return 1
	for i in 1 2; do [ "$i" != "$p" ] && at_holds_vip "$i" && return 1; done
	return 0
}

show_state() {
	sk_diag "node1: $(at_ctl 1 state -m "$AT_MOD" 2>&1 | sed -n '4p;5,6p')"
	sk_diag "node2: $(at_ctl 2 state -m "$AT_MOD" 2>&1 | sed -n '4p;5,6p')"
}

not_primary() { ! at_is_primary "$1"; }
if sk_wait_for 30 at_fresh_roles; then
	sk_ok "fresh start: node1 (lowest id) PRIM, node2 SECOND, decided by the agents"
else
	sk_not_ok "fresh start: node1 (lowest id) PRIM, node2 SECOND, decided by the agents"
	show_state
	sk_diag "$(at_agent_log 1 | tail -20)"
	at_bail "no primary"
fi
sk_check "exactly one primary, holding the VIP" one_primary
echo "written on node1" >"$(at_data 1)/hello.txt"
sk_check "the client reads the replicated directory through the VIP (app started by start_prim)" \
	sk_wait_for 10 at_fetch hello.txt
sk_check "skctl state -lq exit codes: PRIM 3, SECOND 4" at_fresh_roles
sk_wait_for 15 at_in_sync 2 || sk_diag "node2 not in sync after 15 s"

ROUND=0
AW_PID=
# start_writer P [ARGS]: ackwriter through the primary's mount, in a fresh directory per round
start_writer() {
	ROUND=$((ROUND + 1))
	AW_DIR_REL=aw$ROUND
	mkdir -p "$(at_data "$1")/$AW_DIR_REL" || return 1
	"$AW" write --dir "$(at_data "$1")/$AW_DIR_REL" --log "$SK_TMP/aw$ROUND.log" "${AWO[@]}" \
		--duration 60 "${@:2}" >"$SK_TMP/aw$ROUND.out" 2>&1 &
	AW_PID=$!
	sk_wait_for 10 sh -c "[ \$(wc -l <'$SK_TMP/aw$ROUND.log' 2>/dev/null || echo 0) -gt 20 ]"
}

# stop_writer: SIGTERM, then SIGKILL; reaped only once it has really exited (a thread blocked
# on a frozen FUSE daemon keeps the process until that daemon resumes or dies), bounded
stop_writer() {
	local i st
	[ -n "$AW_PID" ] || return 0
	kill -TERM "$AW_PID" 2>/dev/null
	for ((i = 0; i < 200; i++)); do
		st=$(sk_pid_state "$AW_PID" 2>/dev/null) || break
		[ "$st" = Z ] && break
		[ "$i" = 30 ] && kill -KILL "$AW_PID" 2>/dev/null
		sleep 0.1
	done
	if st=$(sk_pid_state "$AW_PID" 2>/dev/null) && [ "$st" != Z ]; then
		sk_diag "ackwriter $AW_PID still there (state $st)"
		return 1
	fi
	wait "$AW_PID" 2>/dev/null
	AW_PID=
}

# after_fault NAME T0 SURVIVOR: the checks every fault ends with
after_fault() {
	local name=$1 t0=$2 s=$3 ms out
	if ms=$(at_wait_served "$t0" 20 hello.txt); then
		sk_ok "$name: the client is served through the VIP again"
		sk_diag "failover $name: fault -> first client response $ms ms (target < 1000)"
		echo "$ms $name" >>"$SK_TMP/failover_ms"
	else
		sk_not_ok "$name: the client is served through the VIP again"
		show_state
	fi
	if sk_wait_for 10 at_is_primary "$s"; then
		sk_ok "$name: node$s is primary"
	else
		sk_not_ok "$name: node$s is primary"
	fi
}

# verify_acked NAME SURVIVOR: the writer is stopped, then every acknowledged record must be there
verify_acked() {
	local name=$1 s=$2 out i
	stop_writer
	out=$("$AW" verify --dir "$(at_data "$s")/$AW_DIR_REL" --log "$SK_TMP/aw$ROUND.log" "${AWO[@]}" 2>&1)
	if [[ "$out" == *"verify: ok"* ]]; then
		sk_ok "$name: every acknowledged write ($(wc -l <"$SK_TMP/aw$ROUND.log") records) is on node$s"
	else
		sk_not_ok "$name: every acknowledged write is on node$s"
		sk_diag "$(printf '%s\n' "$out" | tail -n 10)"
		# what both agents and skfused said last (the logs go with SK_TMP otherwise)
		for i in 1 2; do sk_diag "node$i module.log: $(tail -n 40 "$(at_state_dir "$i")/module.log")"; done
	fi
	sk_diag "node$s why: $(at_ctl "$s" why -m "$AT_MOD" -n 1)"
}

# rejoin N: node N comes back as SECOND and in sync, ready for the next fault
rejoin() {
	if sk_wait_for 30 at_in_sync "$1"; then
		sk_ok "$2: node$1 back as SECOND, in sync"
	else
		sk_not_ok "$2: node$1 back as SECOND, in sync"
		show_state
	fi
	sk_check "$2: exactly one primary, holding the VIP" sk_wait_for 5 one_primary
}

# ---- fault 1: kill -9 of every process of the primary node ----
p=$(at_primary) || at_bail "no primary"
s=$((3 - p))
start_writer "$p" || sk_diag "writer slow to start"
pids=$(at_pids_of "$p")
t0=$(date +%s%N)
# shellcheck disable=SC2086
kill -KILL $pids 2>/dev/null
after_fault "kill -9 node$p" "$t0" "$s"
verify_acked "kill -9 node$p" "$s"
# node$p's interface keeps the VIP until its agent is back (nothing runs there to remove it);
# the announcements moved the clients: the survivor must hold it and be the only primary
survivor_ok() { at_is_primary "$s" && ! at_is_primary "$p" && at_holds_vip "$s"; }
sk_check "kill -9: node$s is the only primary and holds the VIP" survivor_ok
at_start "$p" || at_bail "restart agent $p"
rejoin "$p" "kill -9"
hello_ok() { at_fetch hello.txt | grep -q 'written on node1'; }
sk_check "kill -9: data written before the failover is served by node$s" hello_ok

# ---- fault 2: the primary's cable is pulled ----
p=$(at_primary) || at_bail "no primary"
s=$((3 - p))
start_writer "$p" || sk_diag "writer slow to start"
t0=$(date +%s%N)
sk_link_down "$p"
after_fault "link down node$p" "$t0" "$s"
verify_acked "link down node$p" "$s"
sk_check "link down: node$p stopped serving (not primary while cut off)" sk_wait_for 3 not_primary "$p"
alone_count() { grep -c "transition WAIT -> ALONE" "$(at_state_dir "$1")/module.log"; }
before_up=$(alone_count "$p")
sk_link_up "$p"
rejoin "$p" "link down"
# back on the wire, it must hear the peer before deciding anything alone (it once took the
# role at carrier-up, before the first heartbeat arrived: two primaries for a moment)
sk_check "link down: node$p, back on the wire, never took the role (peer primary)" \
	test "$(alone_count "$p")" = "$before_up"

# ---- fault 3: SIGSTOP of the primary's agent and skfused ----
p=$(at_primary) || at_bail "no primary"
s=$((3 - p))
start_writer "$p" || sk_diag "writer slow to start"
fpid=$(at_fused_pid "$p")
t0=$(date +%s%N)
kill -STOP "${AT_AGENT_PID[$p]}" "$fpid"
after_fault "SIGSTOP node$p" "$t0" "$s"
# the frozen node's agent wakes first: it must see the other primary and step down (fencing
# its skfused) before that skfused can acknowledge anything on its own
kill -KILL "$AW_PID" 2>/dev/null # its threads blocked in the frozen mount go once it is fenced
kill -CONT "${AT_AGENT_PID[$p]}"
sk_wait_for 10 not_primary "$p" || sk_diag "node$p still primary 10 s after SIGCONT"
kill -CONT "$fpid" 2>/dev/null
verify_acked "SIGSTOP node$p" "$s"
rejoin "$p" "SIGSTOP"

# ---- refusals: forged and replayed heartbeats, malformed control requests ----
before_mac=$(at_counter 2 heartbeats_refused_mac)
sk_client python3 - "${SK_IP[2]}" <<'PY'
import os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
hdr = struct.pack(">IBBHIQI", 0x534b4631, 2, 64, 0, 0, 1 << 60, 12)
body = bytes([1, 1, 0, 0]) + b"\0" * 8
for _ in range(5):
    s.sendto(hdr + body + os.urandom(16), (sys.argv[1], 7711))
PY
sleep 0.5
after_mac=$(at_counter 2 heartbeats_refused_mac)
if [ -n "$after_mac" ] && [ "$after_mac" -ge $((before_mac + 5)) ]; then
	sk_ok "forged heartbeats (bad MAC) refused and counted ($before_mac -> $after_mac)"
else
	sk_not_ok "forged heartbeats (bad MAC) refused and counted ($before_mac -> $after_mac)"
fi
# replay: capture a real heartbeat of node1 arriving at node2, send it again from node1's address
before_rp=$(at_counter 2 heartbeats_refused_replay)
cap=$SK_TMP/hb.bin
sk_in 2 timeout 20 python3 - "$cap" <<'PY'
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind(("eth0", 0x0800))
s.settimeout(15)
while True:
    pkt = s.recv(4096)
    ihl = (pkt[0] & 15) * 4
    if pkt[9] == 17 and pkt[12:16] == bytes([10, 99, 0, 1]) and int.from_bytes(pkt[ihl + 2:ihl + 4], "big") == 7711:
        open(sys.argv[1], "wb").write(pkt[ihl + 8:])
        break
PY
if [ -s "$cap" ]; then
	sk_in 1 python3 - "$cap" "${SK_IP[1]}" "${SK_IP[2]}" <<'PY'
import socket, sys
data = open(sys.argv[1], "rb").read()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], 0))
for _ in range(3):
    s.sendto(data, (sys.argv[3], 7711))
PY
	sleep 0.5
	after_rp=$(at_counter 2 heartbeats_refused_replay)
	if [ -n "$after_rp" ] && [ "$after_rp" -ge $((before_rp + 3)) ]; then
		sk_ok "replayed heartbeats refused and counted ($before_rp -> $after_rp)"
	else
		sk_not_ok "replayed heartbeats refused and counted ($before_rp -> $after_rp)"
	fi
else
	sk_not_ok "replayed heartbeats refused and counted (no heartbeat captured)"
fi
sk_check "after the forged and replayed heartbeats: still exactly one primary" one_primary
# 40 silent TCP connections to node1's agent port: at most 16 handshakes wait at a time, the
# rest are closed and counted; the real channel between the agents is not disturbed
before_ch=$(at_counter 1 channel_refused)
held=$SK_TMP/held
sk_client python3 - "${SK_IP[1]}" "$held" <<'PY' &
import socket, sys, time
conns = []
for _ in range(40):
    try:
        conns.append(socket.create_connection((sys.argv[1], 7710), timeout=2))
    except OSError:
        pass
open(sys.argv[2], "w").write(str(len(conns)))
time.sleep(4)
PY
holder=$!
sk_wait_for 20 test -s "$held"
# read while they are held and before their 2 s handshake timeout: only the limit refuses them
after_ch=$(at_counter 1 channel_refused)
wait "$holder"
if [ -n "$after_ch" ] && [ "$after_ch" -ge $((before_ch + 24)) ]; then
	sk_ok "silent connections to the agent port beyond 16 refused at once and counted ($before_ch -> $after_ch, $(cat "$held") connected)"
else
	sk_not_ok "silent connections to the agent port beyond 16 refused at once and counted ($before_ch -> $after_ch)"
fi
chan_up() { at_ctl 1 state --json | grep -q '"channel":true'; }
sk_check "the agents' own channel is still up" sk_wait_for 5 chan_up

ctl_probe() { # ctl_probe NODE BYTES...: one connection, print the replies
	python3 - "${SK_ROOT[$1]}/run/steadykit/agent.sock" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(3)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
out = b""
try:
    while not out.endswith(b"\n") or out.count(b"\n") < sys.argv[2].count("\\n"):
        d = s.recv(65536)
        if not d:
            break
        out += d
except socket.timeout:
    pass
sys.stdout.write(out.decode())
PY
}
before_ctl=$(at_counter 1 control_refused)
out=$(ctl_probe 1 'not json\n{"v":1,"cmd":"reboot"}\n{"v":9,"cmd":"state"}\n{"v":1,"cmd":"stop"}\n{"v":1,"cmd":"state","module":"../x"}\n')
n_err=$(grep -c '"ok":false' <<<"$out")
if [ "$n_err" = 5 ] && grep -q 'not JSON' <<<"$out" && grep -q 'unknown command' <<<"$out" &&
	grep -q 'version 9 not supported' <<<"$out" && grep -q 'needs \\"module\\"' <<<"$out"; then
	sk_ok "malformed control requests refused with an error each (not JSON, unknown verb, version, missing module, bad name)"
else
	sk_not_ok "malformed control requests refused with an error each"
	sk_diag "$out"
fi
big=$(head -c 6000 /dev/zero | tr '\0' 'a')
out=$(ctl_probe 1 "$big\n")
if grep -q 'longer than' <<<"$out"; then
	sk_ok "an oversized control request is refused"
else
	sk_not_ok "an oversized control request is refused"
	sk_diag "$(head -c 300 <<<"$out")"
fi
after_ctl=$(at_counter 1 control_refused)
sk_check "control refusals counted ($before_ctl -> $after_ctl)" test "$after_ctl" -ge $((before_ctl + 6))
sk_check "the agent still answers after the malformed requests" at_ctl 1 state -m "$AT_MOD"

# ---- one network silent, the other heard: reported, not failed ----
p=$(at_primary) || at_bail "no primary"
s=$((3 - p))
printf '%s\n' "add table inet atest" \
	"add chain inet atest in { type filter hook input priority 0; policy accept; }" \
	"add rule inet atest in ip6 saddr fd99::$p udp dport 7711 drop" | sk_in "$s" nft -f - ||
	sk_diag "nft failed"
sleep 1.5
backup_silent() {
	at_ctl "$s" state --json | python3 -c 'import json,sys; n=json.load(sys.stdin)["nodes"][0]["last_heard_ms"]; sys.exit(0 if n["backup"] > 1000 and 0 <= n["lan"] < 400 else 1)'
}
roles_kept() { at_code_is "$p" 3 && at_code_is "$s" 4; }
sk_check "backup network silent for 1.5 s, lan heard: skctl state shows it" backup_silent
sk_check "one network silent: no failover (node$p primary, node$s secondary)" roles_kept
if grep -q "silent on backup .*reported, not failed" "$SK_TMP/agent$s.${AT_N[$s]}.log"; then
	sk_ok "one network silent: reported in the log"
else
	sk_not_ok "one network silent: reported in the log"
fi
sk_in "$s" nft delete table inet atest

# ---- swap: the role moves to the secondary, no acknowledged write lost ----
p=$(at_primary) || at_bail "no primary"
s=$((3 - p))
start_writer "$p" || sk_diag "writer slow to start"
swapped() { at_is_primary "$s" && at_is_second "$p"; }
t0=$(date +%s%N)
if at_ctl "$p" swap -m "$AT_MOD" >/dev/null && sk_wait_for 30 swapped; then
	sk_ok "swap on node$p: node$s primary, node$p secondary"
	sk_diag "swap: $(( ($(date +%s%N) - t0) / 1000000 )) ms; node$s why: $(at_ctl "$s" why -m "$AT_MOD" -n 1)"
else
	sk_not_ok "swap on node$p: node$s primary, node$p secondary"
	show_state
fi
verify_acked "swap" "$s"
sk_check "swap: exactly one primary, holding the VIP" sk_wait_for 5 one_primary
sk_check "swap: the client is served by node$s" sk_wait_for 10 at_fetch hello.txt
sk_check "swap: node$p back in sync as SECOND" sk_wait_for 30 at_in_sync "$p"

# ---- skfused crashes on the secondary: the agent restarts it, the copy resyncs ----
p=$(at_primary) || at_bail "no primary"
s=$((3 - p))
old=$(at_fused_pid "$s")
kill -KILL "$old"
fused_back() { local n; n=$(at_fused_pid "$s") && [ "$n" != "$old" ] && at_in_sync "$s"; }
sk_check "skfused killed on node$s: restarted by the agent, back in sync" sk_wait_for 30 fused_back
sk_check "skfused crash: the roles did not change" roles_kept

# ---- a failing start_prim gives the role up once, no loop ----
# node$s fails its start_prim on purpose; a swap asks it to take over: it tries once, gives up,
# and node$p, which had handed the role over, takes it back
runs() { grep -c "running start_prim" "$(at_state_dir "$1")/module.log"; }
touch "$(at_state_dir "$s")/fail-start_prim"
before=$(runs "$s")
at_ctl "$p" swap -m "$AT_MOD" >/dev/null
back_to_p() { at_is_primary "$p" && ! at_is_primary "$s" && [ "$(runs "$s")" -gt "$before" ]; }
if sk_wait_for 40 back_to_p; then
	sk_ok "start_prim failing on node$s: it gave up, node$p took the role back"
else
	sk_not_ok "start_prim failing on node$s: it gave up, node$p took the role back"
	show_state
fi
sleep 3
n=$(( $(runs "$s") - before ))
if [ "$n" = 1 ] && at_is_primary "$p"; then
	sk_ok "the failing start_prim ran once (no loop), node$p still primary"
else
	sk_not_ok "the failing start_prim ran once (no loop), node$p still primary (ran $n times)"
fi
sk_diag "node$s why: $(at_ctl "$s" why -m "$AT_MOD" -n 2)"
rm -f "$(at_state_dir "$s")/fail-start_prim"
sk_check "after the failed start: node$s back in sync as SECOND" sk_wait_for 30 at_in_sync "$s"
sk_check "after the failed start: exactly one primary, holding the VIP" sk_wait_for 5 one_primary

# ---- an outdated node waits ----
# The secondary leaves cleanly (stop), the primary goes on alone and writes; then both agents go.
# The old secondary, started alone, was not last primary: it must WAIT (not serve stale data).
p=$(at_primary) || at_bail "no primary"
s=$((3 - p))
at_ctl "$s" stop -m "$AT_MOD" >/dev/null
sk_wait_for 15 at_code_is "$s" 0 || sk_diag "node$s did not stop"
echo "written while node$s was stopped" >"$(at_data "$p")/late.txt"
sk_term "${AT_AGENT_PID[$s]}"
sk_term "${AT_AGENT_PID[$p]}"
sk_wait_for 15 sh -c "! kill -0 ${AT_AGENT_PID[$s]} 2>/dev/null && ! kill -0 ${AT_AGENT_PID[$p]} 2>/dev/null" ||
	sk_diag "agents slow to exit"
# start the stopped node alone; its module was stopped by the operator, so start it too
at_start "$s" || at_bail "restart $s"
sk_wait_for 10 test -S "${SK_ROOT[$s]}/run/steadykit/agent.sock"
sleep 0.5
at_ctl "$s" start -m "$AT_MOD" >/dev/null
sleep 4 # past the start-up grace (3 s)
if at_code_is "$s" 1; then
	sk_ok "a node that was secondary last, started alone, WAITs"
else
	sk_not_ok "a node that was secondary last, started alone, WAITs (state code $(at_code "$s"))"
fi
reason=$(at_field "$s" reason)
if [[ "$reason" == *"skctl prim"* ]]; then
	sk_ok "skctl state says why it waits and what to do"
else
	sk_not_ok "skctl state says why it waits and what to do"
fi
sk_diag "node$s waits: $reason"
at_start "$p" || at_bail "restart $p"
if sk_wait_for 20 at_is_primary "$p" && sk_wait_for 20 at_is_second "$s"; then
	sk_ok "with both back, the node with the newest data (node$p) is primary again"
else
	sk_not_ok "with both back, the node with the newest data (node$p) is primary again"
	show_state
fi
sk_check "the data written while node$s was away is served" sk_wait_for 10 at_fetch late.txt

# ---- swap while the secondary falls behind: the role stays with the newest copy ----
# The primary's stop_prim is held (a test marker) while the writer goes on and the secondary's
# skfused is frozen: the primary drops it after its budget and acknowledges writes alone. When
# the hand-over goes on, skfused's last word (peer not in sync) must stop it: the stale copy
# never becomes primary, the role comes back here, every acknowledged write is kept.
p=$(at_primary) || at_bail "no primary"
s=$((3 - p))
sk_wait_for 30 at_in_sync "$s" || sk_diag "node$s not in sync before the lagging swap"
pbin=${SK_ROOT[$p]}/var/lib/steadykit/modules/$AT_MOD/bin
mv "$pbin/stop_prim" "$pbin/stop_prim.real"
cat >"$pbin/stop_prim" <<-'SH'
#!/bin/sh
# held while state/mirror/hang-stop_prim exists (at most 30 s)
echo $$ >"$SK_STATE_DIR/stop_prim.running"
i=0
while [ -e "$SK_STATE_DIR/hang-stop_prim" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
exec "$SK_MODULE_DIR/bin/stop_prim.real"
SH
chmod 0755 "$pbin/stop_prim"
pstate=$(at_state_dir "$p")
rm -f "$pstate/stop_prim.running"
touch "$pstate/hang-stop_prim"
took_role() { grep -cE "transition [A-Z]+ -> (ALONE|PRIM)" "$(at_state_dir "$1")/module.log"; }
took_before=$(took_role "$s")
start_writer "$p" --pause-us 1000 || sk_diag "writer slow to start"
fs=$(at_fused_pid "$s")
at_ctl "$p" swap -m "$AT_MOD" >/dev/null || sk_diag "swap on node$p refused"
sk_wait_for 20 test -e "$pstate/stop_prim.running" || sk_diag "stop_prim of node$p not started"
kill -STOP "$fs"
acked_grows() { [ "$(wc -l <"$SK_TMP/aw$ROUND.log")" -gt $(($1 + 200)) ]; }
n0=$(wc -l <"$SK_TMP/aw$ROUND.log")
# in sync mode nothing is acknowledged while the secondary is frozen, until the primary drops it
sk_check "lagging swap: node$p drops its frozen secondary and acknowledges writes alone" \
	sk_wait_for 30 acked_grows "$n0"
fused_exits() { grep -c "skfused (primary) exited" "$pstate/module.log"; }
ex0=$(fused_exits)
rm -f "$pstate/hang-stop_prim"
sk_wait_for 20 sh -c "[ \$(grep -c 'skfused (primary) exited' '$pstate/module.log') -gt $ex0 ]" ||
	sk_diag "node$p's skfused did not stop"
kill -CONT "$fs"
back_p() { at_is_primary "$p" && at_is_second "$s"; }
if sk_wait_for 40 back_p; then
	sk_ok "lagging swap: node$p keeps the role (node$s fell behind during the hand-over)"
else
	sk_not_ok "lagging swap: node$p keeps the role (node$s fell behind during the hand-over)"
	show_state
fi
sk_check "lagging swap: node$s, behind, never became primary" test "$(took_role "$s")" = "$took_before"
verify_acked "lagging swap" "$p"
sk_diag "node$p why: $(at_ctl "$p" why -m "$AT_MOD" -n 2)"
mv -f "$pbin/stop_prim.real" "$pbin/stop_prim"
sk_check "lagging swap: node$s back in sync as SECOND" sk_wait_for 30 at_in_sync "$s"
sk_check "lagging swap: exactly one primary, holding the VIP" sk_wait_for 5 one_primary

while read -r ms name; do sk_diag "failover_ms $name: $ms"; done <"$SK_TMP/failover_ms"
sk_done
