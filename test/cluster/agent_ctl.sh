#!/usr/bin/env bash
# test/cluster/agent_ctl.sh: skctl restart, stopstart, forcestop, log -f; malformed requests refused;
# a module that depends on another (checker "module", action "stopstart") follows it.
#
# Two mirror modules on node1 and node2: "mirror" (VIP .50) and "dep" (VIP .51), dep with a
# checker {"type":"module","module":"mirror","action":"stopstart"}: dep must run where mirror is
# primary.
#  A. malformed control requests are refused with a reason and counted.
#  B. skctl restart -m mirror on the primary: a new application process, the role kept, the peer
#     records nothing; skctl log -m mirror -f (started before) shows the restart as it happens;
#     restart on the secondary is refused with what to do next.
#  C. skctl stopstart -m mirror on node1: node2 takes mirror over, node1 comes back SECOND; dep's
#     checker on node1 fails (mirror not primary here) -> dep stopstart -> dep primary on node2.
#  D. skctl swap -m mirror back to node1: dep follows it back to node1.
#  E. skctl forcestop -m mirror on node1: mirror's application and skfused are killed at once, no
#     stop script runs, node1 STOP, node2 takes mirror; dep's application (another module) lives.
#  E2. forcestop during a transition: node1 back as SECOND, swap to node1 whose start_prim hangs;
#     forcestop on node1 kills it at once, the transition ends there (failed, in skctl why), no stop
#     script runs (not even the stop_prim a failed start_prim gets), node1 STOP, node2 takes back.
#  F. skctl -H state: every node's answer prefixed with its name; a node whose agent is SIGSTOPped
#     is reported with what to do, exit 1.
set -u
source "$SK_SRC/test/cluster/agent_common.sh"

at_init
DEP=dep
DEP_VIP=10.99.0.51
DEP_DATA_REL=/srv/dep/data
for i in 1 2; do
	root=${SK_ROOT[$i]}
	at_mirror_module "$i" "$DEP" 2 '"node1", "node2"' "$DEP_VIP" "$DEP_DATA_REL" 1 \
		'"checkers": [ { "type": "module", "module": "'"$AT_MOD"'", "interval_ms": 200,
	                  "timeout_ms": 100, "failures": 2, "action": "stopstart" } ]'
	# mirror's stop_prim leaves a mark, so forcestop can be seen not to run it
	printf '#!/bin/sh\necho ran >>"%s/stop_prim.ran.$SK_NODE"\nexec "$SK_MODULE_DIR/bin/stop_prim.example"\n' \
		"$SK_TMP" >"$root/var/lib/steadykit/modules/$AT_MOD/bin/stop_prim.mark"
	mv "$root/var/lib/steadykit/modules/$AT_MOD/bin/stop_prim" \
		"$root/var/lib/steadykit/modules/$AT_MOD/bin/stop_prim.example"
	mv "$root/var/lib/steadykit/modules/$AT_MOD/bin/stop_prim.mark" \
		"$root/var/lib/steadykit/modules/$AT_MOD/bin/stop_prim"
	chmod 0755 "$root/var/lib/steadykit/modules/$AT_MOD/bin/stop_prim"
done

at_start 1 || at_bail "agent 1"
at_start 2 || at_bail "agent 2"
code() { local rc=0; at_ctl "$1" state -m "$2" -lq 2>/dev/null || rc=$?; echo "$rc"; }
roles() { [ "$(code 1 "$1")" = "$2" ] && [ "$(code 2 "$1")" = "$3" ]; }
if ! sk_wait_for 30 roles "$AT_MOD" 3 4 || ! sk_wait_for 15 roles "$DEP" 3 4; then
	sk_diag "$(at_agent_log 1 | tail -20)"
	at_bail "no PRIM/SECOND pairs"
fi
sk_ok "fresh start: mirror and dep PRIM on node1, SECOND on node2"
echo "mirror data" >"$(at_data 1)/hello.txt"
sk_check "mirror is served through its VIP" sk_wait_for 10 at_fetch hello.txt
sk_check "node1's agent announces dep's checker and its stopstart action" \
	grep -q 'module dep: checker module mirror every 200 ms, timeout 100 ms, 2 failure(s) -> stopstart' \
	"$SK_TMP/agent1.1.log"
field() { # N MODULE FIELD
	at_ctl "$1" state -m "$2" --json 2>/dev/null |
		python3 -c 'import json,sys; print(str(json.load(sys.stdin)["modules"][0][sys.argv[1]]).lower())' "$3" 2>/dev/null
}
in_sync() { [ "$(code "$1" "$2")" = 4 ] && [ "$(field "$1" "$2" uptodate)" = true ]; }
trans_count() { wc -l <"${SK_ROOT[$1]}/var/lib/steadykit/state/$2/transitions.jsonl" 2>/dev/null || echo 0; }
# the application of module M on node N: python3 with M's state dir in its environment
app_of() {
	local p
	for p in $(at_pids_of "$1"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = python3 ] || continue
		tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "SK_MODULE=$2" && { echo "$p"; return 0; }
	done
	return 1
}

sk_diag "at ${SECONDS}s"
# ---- bash completion: verbs, options, module names from the agent ----
sk_check "completion: verbs" test "$(sk_complete_words skctl st | tr '\n' ' ')" = "state start stop stopstart "
sk_check "completion: module names from the agent" \
	test "$(sk_complete_words skctl --root "${SK_ROOT[1]}" restart -m "" | sort | tr '\n' ' ')" = "dep mirror "
sk_check "completion: log options" grep -qx -- -f <<<"$(sk_complete_words skctl log -m mirror -)"
# skctl module remove asks the agent first: a module it runs (not STOP) stays installed
sk_wait_for 20 sh -c "! '$AT_SKCTL' --root '${SK_ROOT[1]}' state -m $AT_MOD -lq"
out=$("$AT_SKCTL" --root "${SK_ROOT[1]}" module remove -m "$AT_MOD" 2>&1)
rc=$?
if [ "$rc" = 1 ] && grep -q "stop it first: skctl stop -m $AT_MOD" <<<"$out" &&
	[ -f "${SK_ROOT[1]}/var/lib/steadykit/modules/$AT_MOD/userconfig.json" ]; then
	sk_ok "module remove of a running module is refused, the module stays"
else
	sk_not_ok "module remove of a running module is refused, the module stays (exit $rc)"
	sk_diag "$out"
fi

sk_diag "at ${SECONDS}s"
# ---- A: malformed requests ----
raw() { # N LINE...: each line on its own connection to node N's control socket, one reply each
	python3 - "${SK_ROOT[$1]}/run/steadykit/agent.sock" "${@:2}" <<-'EOF'
	import socket, sys
	for line in sys.argv[2:]:
	    s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(sys.argv[1])
	    s.sendall(line.encode() + b"\n"); print(s.recv(65536).decode().strip()); s.close()
	EOF
}
before=$(at_counter 1 control_refused)
replies=$(raw 1 '{"v":1,"cmd":"restart"}' '{"v":1,"cmd":"forcestop","module":"mirror","force":true}' \
	'{"v":1,"cmd":"stopstart","module":"../etc"}' '{"v":1,"cmd":"reboot","module":"mirror"}')
r1=$(sed -n 1p <<<"$replies")
r2=$(sed -n 2p <<<"$replies")
r3=$(sed -n 3p <<<"$replies")
r4=$(sed -n 4p <<<"$replies")
sk_check "A: restart without a module is refused" grep -q '"restart\\" needs \\"module\\"' <<<"$r1"
sk_check "A: forcestop with force is refused" grep -q 'force\\" is only for \\"prim' <<<"$r2"
sk_check "A: a bad module name is refused" grep -q 'must be a module name' <<<"$r3"
sk_check "A: an unknown verb is refused" grep -q 'unknown command' <<<"$r4"
sk_check "A: the refusals are counted (control_refused +4)" \
	test "$(at_counter 1 control_refused)" = "$((before + 4))"
sk_check "A: mirror still PRIM on node1 after them" test "$(code 1 "$AT_MOD")" = 3

sk_diag "at ${SECONDS}s"
# ---- B: restart (the application only) and log -f ----
"$AT_SKCTL" --root "${SK_ROOT[1]}" log -m "$AT_MOD" -n 1 -f >"$SK_TMP/follow.out" 2>"$SK_TMP/follow.err" &
FOLLOW=$!
app=$(app_of 1 "$AT_MOD") || sk_diag "no mirror application on node1"
t2=$(trans_count 2 "$AT_MOD")
out=$(at_ctl 1 restart -m "$AT_MOD" 2>&1)
sk_check "B: skctl restart is accepted and says what it does" grep -q 'restarting the application here' <<<"$out"
new_app() { local p; p=$(app_of 1 "$AT_MOD") && [ "$p" != "$app" ]; }
sk_check "B: a new application process on node1" sk_wait_for 20 new_app
sk_check "B: served again through the VIP" sk_wait_for 10 at_fetch hello.txt
sk_check "B: mirror still PRIM on node1, SECOND on node2" roles "$AT_MOD" 3 4
sk_check "B: node2 recorded no transition" test "$(trans_count 2 "$AT_MOD")" = "$t2"
followed() { grep -q 'operator: restart' "$SK_TMP/follow.out" && grep -q 'start_prim done' "$SK_TMP/follow.out"; }
sk_check "B: skctl log -f showed the restart as it happened" sk_wait_for 10 followed
# a script's output with an escape sequence reaches the operator's terminal as text
printf 'script says \033[2J\033]0;pwned\007 done\n' >>"${SK_ROOT[1]}/var/lib/steadykit/state/$AT_MOD/module.log"
escaped() { grep -q 'script says ?\[2J?\]0;pwned? done' "$SK_TMP/follow.out"; }
sk_check "B: skctl log -f shows control characters as ?" sk_wait_for 5 escaped
sk_check "B: ... and passes no escape byte" sh -c "! grep -q \"\$(printf '\033')\" '$SK_TMP/follow.out'"
kill "$FOLLOW" 2>/dev/null
wait "$FOLLOW" 2>/dev/null
rc=0
out=$(at_ctl 2 restart -m "$AT_MOD" 2>&1) || rc=$?
sk_check "B: restart on the secondary is refused (exit 1)" test "$rc" = 1
sk_check "B: ... and says to run it on node1" grep -q 'next: run skctl restart -m mirror on node1' <<<"$out"

sk_diag "at ${SECONDS}s"
# ---- C: stopstart: the peer takes over, dep follows mirror ----
sk_wait_for 20 in_sync 2 "$AT_MOD" || sk_diag "mirror on node2 not in sync"
sk_wait_for 20 in_sync 2 "$DEP" || sk_diag "dep on node2 not in sync"
out=$(at_ctl 1 stopstart -m "$AT_MOD" 2>&1)
sk_check "C: skctl stopstart is accepted" grep -q 'then starting again' <<<"$out"
sk_check "C: mirror: node2 PRIM, node1 SECOND again" sk_wait_for 30 roles "$AT_MOD" 4 3
sk_check "C: node1's log says stopstart started it again" \
	sh -c "grep -q 'stopstart: stopped, starting again' '${SK_ROOT[1]}/var/lib/steadykit/state/$AT_MOD/module.log'"
sk_check "C: dep followed mirror: node2 PRIM, node1 SECOND" sk_wait_for 30 roles "$DEP" 4 3
sk_check "C: node1's dep log names the module checker and its stopstart" \
	sh -c "grep -q 'checker module mirror: stopstart' '${SK_ROOT[1]}/var/lib/steadykit/state/$DEP/module.log'"

sk_diag "at ${SECONDS}s"
# ---- D: mirror back to node1: dep comes back with it ----
sk_wait_for 30 in_sync 1 "$AT_MOD" || sk_diag "mirror on node1 not in sync"
sk_wait_for 30 in_sync 1 "$DEP" || sk_diag "dep on node1 not in sync"
at_ctl 1 swap -m "$AT_MOD" >/dev/null 2>&1 || sk_diag "swap refused: $(at_ctl 1 swap -m "$AT_MOD" 2>&1)"
sk_check "D: mirror swapped back: node1 PRIM" sk_wait_for 30 roles "$AT_MOD" 3 4
sk_check "D: dep came back with it: node1 PRIM" sk_wait_for 30 roles "$DEP" 3 4
sk_check "D: mirror served through its VIP" sk_wait_for 15 at_fetch hello.txt

sk_diag "at ${SECONDS}s"
# ---- E: forcestop ----
sk_wait_for 30 in_sync 2 "$AT_MOD" || sk_diag "mirror on node2 not in sync"
app=$(app_of 1 "$AT_MOD") || sk_diag "no mirror application on node1"
dapp=$(app_of 1 "$DEP") || sk_diag "no dep application on node1"
fu=$(for p in $(at_pids_of 1); do [ "$(cat /proc/$p/comm 2>/dev/null)" = skfused ] &&
	grep -q "fused-$AT_MOD.sock" "/proc/$p/cmdline" && echo "$p"; done)
rm -f "$SK_TMP/stop_prim.ran.node1"
out=$(at_ctl 1 forcestop -m "$AT_MOD" 2>&1)
# before dep's checker sees mirror gone from node1 (2 x 200 ms) and moves dep away
sk_check "E: dep's application on node1 was not killed by mirror's forcestop" kill -0 "$dapp"
sk_check "E: forcestop says it killed the application" grep -q "killed pid $app: started by the module's scripts" <<<"$out"
sk_check "E: forcestop says no stop script ran" grep -q 'no stop script was run' <<<"$out"
gone() { ! kill -0 "$1" 2>/dev/null || [ "$(sk_pid_state "$1" 2>/dev/null)" = Z ]; }
sk_check "E: mirror's application is gone at once" sk_wait_for 2 gone "$app"
sk_check "E: forcestop named skfused too" grep -q "killed pid $fu: skfused" <<<"$out"
sk_check "E: mirror's skfused is gone" sk_wait_for 5 gone "$fu"
code_is() { [ "$(code "$1" "$2")" = "$3" ]; }
primary_on() { local c; c=$(code "$1" "$2"); [ "$c" = 2 ] || [ "$c" = 3 ]; }
sk_check "E: node1 STOP" sk_wait_for 10 code_is 1 "$AT_MOD" 0
sk_check "E: no stop script ran on node1" test ! -e "$SK_TMP/stop_prim.ran.node1"
sk_check "E: node2 takes mirror over" sk_wait_for 20 primary_on 2 "$AT_MOD"
sk_diag "at ${SECONDS}s"

# ---- E2: forcestop in the middle of a transition (node1's start_prim hanging after a swap) ----
sd1=$(at_state_dir 1)
touch "$sd1/hang-start_prim"
rm -f "$sd1/hang-start_prim.pid"
at_ctl 1 start -m "$AT_MOD" >/dev/null 2>&1
sk_wait_for 30 in_sync 1 "$AT_MOD" || sk_diag "mirror on node1 not in sync"
at_ctl 2 swap -m "$AT_MOD" >/dev/null 2>&1
busy_prim() { [ -s "$sd1/hang-start_prim.pid" ] && at_ctl 1 state -m "$AT_MOD" | grep -q 'busy: start_prim'; }
sk_check "E2: after a swap node1 is running start_prim (hanging)" sk_wait_for 30 busy_prim
hang=$(cat "$sd1/hang-start_prim.pid" 2>/dev/null)
rm -f "$SK_TMP/stop_prim.ran.node1"
out=$(at_ctl 1 forcestop -m "$AT_MOD" 2>&1)
sk_check "E2: forcestop says which transition it cut short" \
	grep -q 'interrupted: .* cut short at its step start_prim' <<<"$out"
sk_check "E2: the hanging start_prim is killed at once" sk_wait_for 2 gone "$hang"
sk_check "E2: node1 STOP" sk_wait_for 10 code_is 1 "$AT_MOD" 0
sk_check "E2: no stop script ran on node1 (no stop_prim for the failed start)" \
	test ! -e "$SK_TMP/stop_prim.ran.node1"
sk_check "E2: skctl why records the transition cut short, failed" \
	sh -c "'$AT_SKCTL' --root '${SK_ROOT[1]}' why -m $AT_MOD | grep -q 'cut short at start_prim by forcestop'"
sk_check "E2: node2, which handed the role over, takes it back" sk_wait_for 20 primary_on 2 "$AT_MOD"
rm -f "$sd1/hang-start_prim"
sk_diag "at ${SECONDS}s"

# ---- F: -H: the verb on every node through the agents ----
rc=0
out=$(at_ctl 1 -H state -m "$AT_MOD" 2>&1) || rc=$?
sk_check "F: skctl -H state answers for node1 and node2 (exit 0)" \
	bash -c '[ "$1" = 0 ] && grep -q "^node1: mirror *STOP" <<<"$2" && grep -q "^node2: mirror *\(ALONE\|PRIM\)" <<<"$2"' _ "$rc" "$out"
sk_diag "$out"
sk_sigstop "${AT_AGENT_PID[2]}"
rc=0
out=$(at_ctl 1 -H state -m "$AT_MOD" 2>&1) || rc=$?
sk_check "F: a node whose agent does not answer is reported, exit 1" \
	bash -c '[ "$1" = 1 ] && grep -q "^node1: mirror" <<<"$2" && grep -q "^node2: FAILED: \(no answer from node2 within 5000 ms\|node2 not reachable\)" <<<"$2" && grep -q "^node2:   next: " <<<"$2"' _ "$rc" "$out"
sk_diag "$out"
sk_sigcont "${AT_AGENT_PID[2]}"
sk_diag "at ${SECONDS}s"
sk_done
