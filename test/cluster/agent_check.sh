#!/usr/bin/env bash
# test/cluster/agent_check.sh: checkers and their policy, on real processes and links.
#
# node1's module has a tcp checker on the application (VIP:80, restart, 2 failures) with a budget
# of 2 local restarts; node2's has a process checker ("python3", restart) and an interface
# checker on a second interface eth1 (failover). Each node reads its own userconfig.json copy.
#  A. kill -9 of node1's web server, three times: restart 1, restart 2, then failover to node2.
#  B. kill -9 of node2's web server: the process checker (pidfd) restarts it in place.
#  C. eth1 of node2 loses its carrier: failover back to node1.
#  D. node1's ping checker (ICMP echo to 10.77.0.1 on node1's loopback) gets no answer once
#     node1's namespace ignores echo requests (net.ipv4.icmp_echo_ignore_all): failover to node2.
#  E. node2's script checker (bin/check_app) starts failing: failover to node1.
set -u
source "$SK_SRC/test/cluster/agent_common.sh"

at_init
UC=var/lib/steadykit/modules/$AT_MOD/userconfig.json
set_checkers() { # N JSON-list
	python3 - "${SK_ROOT[$1]}/$UC" "$2" <<-'EOF'
	import json, sys
	p = sys.argv[1]
	d = json.load(open(p))
	d["checkers"] = json.loads(sys.argv[2])
	d["failover"] = {"restart_max": 2, "window_s": 600}
	json.dump(d, open(p, "w"), indent=2)
	EOF
}
set_checkers 1 '[{"type": "tcp", "host": "'"$AT_VIP"'", "port": 80, "interval_ms": 300,
  "timeout_ms": 250, "failures": 2, "action": "restart"},
 {"type": "ping", "host": "10.77.0.1", "interval_ms": 300, "timeout_ms": 250, "failures": 2,
  "action": "failover"}]' || at_bail "config 1"
set_checkers 2 '[{"type": "process", "process": "python3", "interval_ms": 300, "timeout_ms": 250,
  "failures": 1, "action": "restart"},
 {"type": "interface", "interface": "eth1", "interval_ms": 200, "timeout_ms": 100, "failures": 1,
  "action": "failover"},
 {"type": "script", "path": "check_app", "interval_ms": 500, "timeout_ms": 400, "failures": 2,
  "action": "failover"}]' || at_bail "config 2"
# node2's script checker fails while the marker exists
printf '#!/bin/sh\n[ ! -e "%s" ]\n' "$SK_TMP/fail-check2" \
	>"${SK_ROOT[2]}/var/lib/steadykit/modules/$AT_MOD/bin/check_app" &&
	chmod 0755 "${SK_ROOT[2]}/var/lib/steadykit/modules/$AT_MOD/bin/check_app" || at_bail "script"
# node1's ping target: an address on its own loopback
sk_in 1 ip link set lo up
sk_in 1 ip addr add 10.77.0.1/32 dev lo || at_bail "ping target"
# node2's second interface: a veth pair inside its namespace (eth1p down = eth1 without carrier)
sk_in 2 ip link add eth1 type veth peer name eth1p || at_bail "veth"
sk_in 2 ip link set eth1 up && sk_in 2 ip link set eth1p up || at_bail "veth up"

at_start_pair
echo "checked" >"$(at_data 1)/hello.txt"
sk_check "the client is served through the VIP" sk_wait_for 10 at_fetch hello.txt
sk_check "node1's agent announces its tcp checker" sh -c "grep -q 'checker tcp $AT_VIP:80 every 300 ms' '$SK_TMP/agent1.1.log'"
sk_wait_for 20 at_in_sync 2 || sk_diag "node2 not in sync after 20 s"

# app_pid N: the web server of node N (python3 in its namespace)
app_pid() {
	local p
	for p in $(at_pids_of "$1"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = python3 ] && { echo "$p"; return 0; }
	done
	return 1
}
modlog() { cat "$(at_state_dir "$1")/module.log" 2>/dev/null; }
restarts() { modlog "$1" | grep -c "checker .*: local restart" ; }
new_app() { local p; p=$(app_pid "$1") && [ "$p" != "$2" ]; }

# ---- A: tcp checker, two local restarts then failover ----
for r in 1 2; do
	old=$(app_pid 1) || { sk_not_ok "A$r: node1's web server found"; continue; }
	kill -KILL "$old"
	if sk_wait_for 20 new_app 1 "$old" && sk_wait_for 10 at_fetch hello.txt; then
		sk_ok "A$r: kill -9 of node1's web server -> restarted by the tcp checker, served again"
	else
		sk_not_ok "A$r: kill -9 of node1's web server -> restarted by the tcp checker, served again"
		sk_diag "$(modlog 1 | tail -15)"
	fi
	sk_check "A$r: node1 is still PRIM" sk_wait_for 5 at_code_is 1 3
	sk_check "A$r: node1's log counts local restart $r of 2" \
		sh -c "grep -q 'checker tcp $AT_VIP:80: local restart $r of 2' '$(at_state_dir 1)/module.log'"
done
sk_wait_for 20 at_in_sync 2 || sk_diag "node2 not in sync after 20 s"
old=$(app_pid 1) && kill -KILL "$old"
swapped() { at_code_is 2 3 && at_code_is 1 4; }
if sk_wait_for 30 swapped; then
	sk_ok "A3: third kill -9 -> restart budget spent, failover: node2 PRIM, node1 SECOND"
else
	sk_not_ok "A3: third kill -9 -> restart budget spent, failover: node2 PRIM, node1 SECOND"
	sk_diag "$(modlog 1 | tail -15)"
fi
sk_check "A3: the client is served by node2 through the VIP" sk_wait_for 15 at_fetch hello.txt
sk_check "A3: skctl why on node1 says the checker failed over" \
	sh -c "'$AT_SKCTL' --root '${SK_ROOT[1]}' why -m $AT_MOD | grep -q 'local restart(s) in 600 s already, failover'"
restart_set() { # the distinct "local restart N of 2" of node1's log, on one line
	grep -o 'checker tcp [^ ]*: local restart [0-9]* of 2' "$(at_state_dir 1)/module.log" |
		sed 's/.*restart \([0-9]*\) of.*/\1/' | sort -u | tr '\n' ' '
}
sk_check "A3: exactly 2 local restarts on node1 (restart 1, restart 2, no third)" \
	test "$(restart_set)" = "1 2 "

# ---- B: process checker on node2 (pidfd), restart in place ----
sk_wait_for 20 at_in_sync 1 || sk_diag "node1 not in sync after 20 s"
old=$(app_pid 2) || sk_diag "no web server on node2"
sleep 0.7 # let the checker find and watch it (interval 300 ms)
t0=$(date +%s%N)
kill -KILL "$old"
if sk_wait_for 20 new_app 2 "$old" && sk_wait_for 10 at_fetch hello.txt; then
	sk_ok "B: kill -9 of node2's web server -> restarted by the process checker, served again"
	sk_diag "B: kill -> new web server serving in $((($(date +%s%N) - t0) / 1000000)) ms"
else
	sk_not_ok "B: kill -9 of node2's web server -> restarted by the process checker, served again"
	sk_diag "$(modlog 2 | tail -15)"
fi
sk_check "B: node2's log says the watched process died (pidfd)" \
	sh -c "grep -q 'checker process python3: process $old died' '$(at_state_dir 2)/module.log'"
sk_check "B: node2 is still PRIM" at_code_is 2 3

# ---- C: interface checker on node2: eth1 loses carrier -> failover to node1 ----
sk_wait_for 20 at_in_sync 1 || sk_diag "node1 not in sync after 20 s"
sk_in 2 ip link set eth1p down
back() { at_code_is 1 3 && at_code_is 2 4; }
if sk_wait_for 30 back; then
	sk_ok "C: eth1 of node2 without carrier -> failover: node1 PRIM, node2 SECOND"
else
	sk_not_ok "C: eth1 of node2 without carrier -> failover: node1 PRIM, node2 SECOND"
	sk_diag "$(modlog 2 | tail -15)"
	sk_diag "$(modlog 1 | tail -10)"
fi
sk_check "C: node2's log names the interface checker" \
	sh -c "grep -q 'checker interface eth1: eth1: no carrier' '$(at_state_dir 2)/module.log'"
sk_check "C: the client is served by node1 through the VIP" sk_wait_for 15 at_fetch hello.txt
sk_in 2 ip link set eth1p up

# ---- D: ping checker on node1: its target disappears -> failover to node2 ----
sk_wait_for 20 at_in_sync 2 || sk_diag "node2 not in sync after 20 s"
sleep 1 # node2's interface checker sees the carrier back before node2 may become primary again
sk_in 1 sysctl -qw net.ipv4.icmp_echo_ignore_all=1 || sk_diag "sysctl failed"
if sk_wait_for 30 swapped; then
	sk_ok "D: ping unanswered -> failover: node2 PRIM, node1 SECOND"
else
	sk_not_ok "D: ping unanswered -> failover: node2 PRIM, node1 SECOND"
	sk_diag "$(modlog 1 | tail -15)"
fi
sk_check "D: node1's log names the ping checker" \
	sh -c "grep -q 'checker ping 10.77.0.1: no answer within 250 ms' '$(at_state_dir 1)/module.log'"
sk_check "D: the client is served by node2 through the VIP" sk_wait_for 15 at_fetch hello.txt
sk_in 1 sysctl -qw net.ipv4.icmp_echo_ignore_all=0

# ---- E: script checker on node2 starts failing -> failover to node1 ----
sk_wait_for 20 at_in_sync 1 || sk_diag "node1 not in sync after 20 s"
touch "$SK_TMP/fail-check2"
if sk_wait_for 30 back; then
	sk_ok "E: bin/check_app fails -> failover: node1 PRIM, node2 SECOND"
else
	sk_not_ok "E: bin/check_app fails -> failover: node1 PRIM, node2 SECOND"
	sk_diag "$(modlog 2 | tail -15)"
fi
sk_check "E: node2's log names the script checker" \
	sh -c "grep -q 'checker script check_app: script exited with status 1' '$(at_state_dir 2)/module.log'"
sk_check "E: the client is served by node1 through the VIP" sk_wait_for 15 at_fetch hello.txt
sk_done
