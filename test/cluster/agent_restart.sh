#!/usr/bin/env bash
# test/cluster/agent_restart.sh: an agent restarted under a running module takes it over without
# stopping the application and without a failover.
#
#  A. kill -9 of node1's agent (the primary's), a new agent started at once: the application's
#     pid, skfused's pid and a client's open TCP connection through the VIP survive; node2 logs no
#     transition; skctl state says PRIM/SECOND again; skctl why on node1 says it took over.
#  B. SIGHUP to node2's agent (the secondary's): it executes itself again in place (same pid),
#     skfused untouched, node1 logs no transition, node2 SECOND again.
#  B2. SIGHUP to node1's agent whose binary was replaced by one slower to start than the heartbeat
#     timeout: the upgraded binary runs, the agent announced its restart, node2 holds its verdict
#     (no death, no transition), node1 PRIM again with the same skfused and application.
#  C. the taken-over skfused of node1 is killed: the new agent sees it die (pidfd, it is not
#     its child) and restarts it; the client is served again.
#  D. a failover still works: kill -9 of every process of node1 -> node2 primary, served.
#  E. what the unit does after a crash: kill -9 of node2's agent, then skagentd --fence kills its
#     skfused and its application; node1 takes over.
set -u
source "$SK_SRC/test/cluster/agent_common.sh"

at_init
# a peer is dead after 2000 ms of silence here (400 ms by default elsewhere; 4000 under
# AddressSanitizer): the new agent is heard again 150-250 ms after the kill on a quiet host, 1.07 s
# once at load 20, 2.1 s under ASan at load 16 (A lost the race with 1000 and 2000 ms); this
# scenario is about the takeover, not about the race with the detection of an unannounced
# restart (docs/agent.md says what a slower one does)
TIMEOUT_MS=2000
if nm "$AT_AGENTD" 2>/dev/null | grep -q ' __asan_init$'; then TIMEOUT_MS=4000; fi
SLOW_S=$((TIMEOUT_MS / 1000)).5 # B2's restart: longer than the timeout, shorter than 5 timeouts
for i in 1 2; do
	sed -i "s/\"timeout_ms\": 400/\"timeout_ms\": $TIMEOUT_MS/" "${SK_ROOT[$i]}/etc/steadykit/cluster.json" ||
		at_bail "cluster.json"
done
at_start_pair
echo "restart test" >"$(at_data 1)/hello.txt"
sk_check "the client is served through the VIP" sk_wait_for 10 at_fetch hello.txt
sk_wait_for 20 at_in_sync 2 || sk_diag "node2 not in sync after 20 s"

app_pid() {
	local p
	for p in $(at_pids_of "$1"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = python3 ] && { echo "$p"; return 0; }
	done
	return 1
}
# transitions node N has recorded (persisted, one JSON line each)
trans_count() { wc -l <"$(at_state_dir "$1")/transitions.jsonl" 2>/dev/null || echo 0; }
modlog() { cat "$(at_state_dir "$1")/module.log" 2>/dev/null; }

# a client connection held open through the VIP: connected now, request sent when $SK_TMP/go exists
cat >"$SK_TMP/holdconn.py" <<'EOF'
import os, socket, sys, time
vip, go, out = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.create_connection((vip, 80), timeout=5)
open(out + ".connected", "w").close()
for _ in range(1200):            # 60 s at most
    if os.path.exists(go):
        break
    time.sleep(0.05)
s.settimeout(5)
s.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
open(out, "wb").write(data)
EOF
sk_client python3 "$SK_TMP/holdconn.py" "$AT_VIP" "$SK_TMP/go" "$SK_TMP/conn.out" \
	>"$SK_TMP/holdconn.log" 2>&1 &
HOLD=$!
sk_wait_for 10 test -e "$SK_TMP/conn.out.connected" || sk_diag "client connection not open"

# ---- A: kill -9 of the primary's agent, a new one at once ----
app1=$(app_pid 1) || sk_diag "no application on node1"
fu1=$(at_fused_pid 1) || sk_diag "no skfused on node1"
fu2=$(at_fused_pid 2) || sk_diag "no skfused on node2"
t2=$(trans_count 2)
t1=$(trans_count 1)
old_agent=${AT_AGENT_PID[1]}
# the new agent runs from a copy of the binary, which B2 replaces (an upgrade)
mkdir -p "$SK_TMP/bin" && cp "$AT_AGENTD" "$SK_TMP/bin/skagentd" || at_bail "copy skagentd"
sk_kill9 "$old_agent"
t0=$(date +%s%N)
REAL_AGENTD=$AT_AGENTD
AT_AGENTD=$SK_TMP/bin/skagentd
export SK_FUSED=$SK_BUILD/fused/skfused # not next to the copy
at_start 1 || at_bail "agent 1 again"
unset SK_FUSED
AT_AGENTD=$REAL_AGENTD
back() { at_code_is 1 3 && at_code_is 2 4; }
if sk_wait_for 15 back; then
	sk_ok "A: new agent on node1: skctl state says PRIM, node2 SECOND"
	sk_diag "A: kill -9 -> PRIM again in $((($(date +%s%N) - t0) / 1000000)) ms"
else
	sk_not_ok "A: new agent on node1: skctl state says PRIM, node2 SECOND"
	sk_diag "$(at_agent_log 1 | tail -20)"
fi
sk_check "A: the application kept its pid ($app1)" test "$(app_pid 1)" = "$app1"
sk_check "A: node1's skfused kept its pid ($fu1)" test "$(at_fused_pid 1)" = "$fu1"
sk_check "A: node2's skfused kept its pid ($fu2)" test "$(at_fused_pid 2)" = "$fu2"
count_comm() { local p n=0; for p in $(at_pids_of "$1"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] && n=$((n + 1)); done; echo "$n"; }
sk_check "A: one skfused and one application on node1 (nothing started a second time)" \
	test "$(count_comm 1 skfused) $(count_comm 1 python3)" = "1 1"
sk_check "A: node1 recorded only the takeover (one entry, no STOP/WAIT/ALONE steps)" \
	test "$(trans_count 1)" = "$((t1 + 1))"
sk_check "A: node1's module log says it took skfused over" \
	sh -c "grep -q 'agent restarted: skfused primary (pid $fu1, peer connected) taken over as PRIM' '$(at_state_dir 1)/module.log'"
sk_check "A: skctl why on node1 says so" \
	sh -c "'$AT_SKCTL' --root '${SK_ROOT[1]}' why -m $AT_MOD | grep -q 'agent restarted: running skfused'"
sleep "$SLOW_S" # a late failover on node2 would show by now (dead after the timeout, plans start at once)
sk_check "A: node2 recorded no transition" test "$(trans_count 2)" = "$t2"
sk_diag "A: node2 saw: $(grep -E 'node1 (restarted|.*dead|silent)' "$SK_TMP/agent2.1.log" | tail -3)"
sk_diag "A: killed at $(date -u -d "@$((t0 / 1000000000)).$(printf %09d $((t0 % 1000000000)))" +%T.%N)"
sk_diag "A: new agent: $(head -12 "$SK_TMP/agent1.2.log")"
sk_check "A: node1 holds the VIP" at_holds_vip 1
sk_check "A: node1 is up to date, generation unchanged" test "$(at_field 1 uptodate)" = true
touch "$SK_TMP/go"
wait "$HOLD"
sk_check "A: the client's connection opened before the kill -9 is answered after it" \
	grep -q "restart test" "$SK_TMP/conn.out"
sk_check "A: a new client request is served" at_fetch hello.txt

# ---- B: SIGHUP to the secondary's agent: executes itself again in place ----
t1=$(trans_count 1)
t2=$(trans_count 2)
fu2=$(at_fused_pid 2)
a2=${AT_AGENT_PID[2]}
kill -HUP "$a2"
rehup() { grep -q "skfused secondary (pid $fu2, peer connected) taken over as SECOND" "$(at_state_dir 2)/module.log"; }
sk_check "B: after SIGHUP node2's agent took its skfused over" sk_wait_for 10 rehup
sk_check "B: node2's agent kept its pid" kill -0 "$a2"
sk_check "B: node2 SECOND, node1 PRIM" sk_wait_for 10 back
sk_check "B: node2's skfused kept its pid" test "$(at_fused_pid 2)" = "$fu2"
sk_check "B: one skfused on node2" test "$(count_comm 2 skfused)" = 1
sk_check "B: node2 recorded only the takeover" test "$(trans_count 2)" = "$((t2 + 1))"
sleep 1
sk_check "B: node1 recorded no transition" test "$(trans_count 1)" = "$t1"
sk_check "B: node1's application kept its pid" test "$(app_pid 1)" = "$app1"

# ---- B2: SIGHUP to the primary's agent, the restart slower than the heartbeat timeout ----
# The binary at the agent's path is replaced (an upgrade) by one that takes half a second more
# than the timeout to start: the agent announces its restart, node2 holds its verdict (up to 5
# timeouts) instead of counting node1 dead and taking over
cat >"$SK_TMP/bin/skagentd.new" <<EOF
#!/bin/sh
touch "$SK_TMP/upgraded.ran"
sleep $SLOW_S
exec "$REAL_AGENTD" "\$@"
EOF
chmod 0755 "$SK_TMP/bin/skagentd.new" && mv -f "$SK_TMP/bin/skagentd.new" "$SK_TMP/bin/skagentd"
t1=$(trans_count 1)
t2=$(trans_count 2)
a1=${AT_AGENT_PID[1]}
n_taken=$(grep -c "skfused primary (pid $fu1, peer connected) taken over as PRIM" "$(at_state_dir 1)/module.log")
dead2() { grep -c 'node node1 dead' "$SK_TMP/agent2.1.log"; }
n_dead=$(dead2)
kill -HUP "$a1"
retaken() { [ "$(grep -c "skfused primary (pid $fu1, peer connected) taken over as PRIM" "$(at_state_dir 1)/module.log")" -gt "$n_taken" ]; }
sk_check "B2: node1's agent, restarted from its upgraded binary, took its skfused over" sk_wait_for 20 retaken
sk_check "B2: the upgraded binary is what ran (not the old image)" test -e "$SK_TMP/upgraded.ran"
sk_check "B2: node1's agent kept its pid" kill -0 "$a1"
sk_check "B2: node2 heard that node1's agent restarts" \
	sh -c "grep -q 'node node1 restarts its agent' '$SK_TMP/agent2.1.log'"
sk_check "B2: node1 PRIM, node2 SECOND" sk_wait_for 10 back
sleep "$SLOW_S" # a late verdict on node2 would show by now
sk_check "B2: node2 did not count node1 dead during its $SLOW_S s restart (timeout $TIMEOUT_MS ms)" test "$(dead2)" = "$n_dead"
sk_check "B2: node2 recorded no transition" test "$(trans_count 2)" = "$t2"
sk_check "B2: node1 recorded only the takeover" test "$(trans_count 1)" = "$((t1 + 1))"
sk_check "B2: node1's application kept its pid" test "$(app_pid 1)" = "$app1"
sk_check "B2: node1's skfused kept its pid" test "$(at_fused_pid 1)" = "$fu1"
sk_diag "B2: node2 saw: $(grep -E 'node1 (restarts|restarted|.*dead)|restarted agent is heard' "$SK_TMP/agent2.1.log" | tail -3 | tr '\n' ' ')"
sk_check "B2: the client is served" at_fetch hello.txt

# ---- C: the taken-over skfused of node1 dies: the new agent sees it and restarts it ----
kill -KILL "$fu1"
new_fused() { local p; p=$(at_fused_pid 1) && [ "$p" != "$fu1" ]; }
sk_check "C: node1's agent restarts the skfused it took over when it dies" sk_wait_for 15 new_fused
sk_check "C: node1's log says the adopted skfused exited" \
	sh -c "grep -q 'skfused (primary) exited' '$(at_state_dir 1)/module.log'"
sk_check "C: the client is served again" sk_wait_for 15 at_fetch hello.txt

# ---- D: a failover still works after the takeover ----
sk_wait_for 30 at_in_sync 2 || sk_diag "node2 not in sync after 30 s"
# shellcheck disable=SC2046
kill -KILL $(at_pids_of 1) 2>/dev/null
took() { at_is_primary 2; }
sk_check "D: kill -9 of node1 -> node2 primary" sk_wait_for 15 took
sk_check "D: the client is served by node2" sk_wait_for 15 at_fetch hello.txt

# ---- E: skagentd --fence (the unit's ExecStopPost after a crash) ----
at_start 1 || at_bail "agent 1 after D"
sk_wait_for 30 at_in_sync 1 || sk_diag "node1 not back in sync after 30 s"
app2=$(app_pid 2) || sk_diag "no application on node2"
fu2=$(at_fused_pid 2) || sk_diag "no skfused on node2"
sk_kill9 "${AT_AGENT_PID[2]}"
out=$(sk_in 2 "$AT_AGENTD" --root "${SK_ROOT[2]}" --node node2 --fence 2>&1)
sk_check "E: --fence says what it killed" grep -q '^2 process(es) killed' <<<"$out"
gone() { ! kill -0 "$1" 2>/dev/null || [ "$(sk_pid_state "$1" 2>/dev/null)" = Z ]; }
sk_check "E: node2's skfused is killed" sk_wait_for 5 gone "$fu2"
sk_check "E: node2's application is killed" sk_wait_for 5 gone "$app2"
sk_check "E: node1 takes over and serves" sk_wait_for 20 at_fetch hello.txt
sk_done
