#!/usr/bin/env bash
# test/cluster/agent_active.sh: active/active, two mirror modules on one pair of nodes, each node the
# default primary of one (the first of the module's "nodes"): both nodes serve at once.
#
#  A. Fresh start: "mirror" (nodes node1, node2) is PRIM on node1, "web2" (nodes node2, node1) is PRIM
#     on node2, each SECOND on the other node; each is served through its own VIP.
#     "w3", whose config lists node1 first on node1 and node2 first on node2 (both nodes claim to be its
#     default primary), gets one primary all the same: the lowest id, node1. It is then stopped.
#  B. kill -9 of every process of node1: "mirror" fails over to node2, "web2" goes on serving there;
#     both VIPs answer from node2, with the data written before.
#  C. node1's agent back: it is SECOND of both (node2's copies are the newest), in sync, and nothing
#     moves back by itself; both modules still served.
set -u
source "$SK_SRC/test/cluster/agent_common.sh"

at_init
W2=web2
W2_VIP=10.99.0.52
W2_DATA_REL=/srv/web2/data
for i in 1 2; do
	at_mirror_module "$i" "$W2" 2 '"node2", "node1"' "$W2_VIP" "$W2_DATA_REL" 1
	# w3: each node lists itself first; no application
	at_mirror_module "$i" w3 3 "\"node$i\", \"node$((3 - i))\"" 10.99.0.53 /srv/w3/data
done

# code N MODULE: skctl state -lq exit code (STOP 0 WAIT 1 ALONE 2 PRIM 3 SECOND 4)
code() { local rc=0; at_ctl "$1" state -m "$2" -lq 2>/dev/null || rc=$?; echo "$rc"; }
roles() { [ "$(code 1 "$1")" = "$2" ] && [ "$(code 2 "$1")" = "$3" ]; }
uptodate() {
	at_ctl "$1" state -m "$2" --json 2>/dev/null |
		python3 -c 'import json,sys; print(str(json.load(sys.stdin)["modules"][0]["uptodate"]).lower())' 2>/dev/null
}
in_sync() { [ "$(code "$1" "$2")" = 4 ] && [ "$(uptodate "$1" "$2")" = true ]; }
fetch2() { sk_client curl -fsS --max-time 0.5 "http://$W2_VIP/$1"; }
holds() { sk_in "$1" ip -o addr show dev eth0 2>/dev/null | grep -q " $2/"; }
show() {
	local n m
	for n in 1 2; do
		for m in "$AT_MOD" "$W2"; do
			sk_diag "node$n $m: $(at_ctl "$n" state -m "$m" 2>&1 | sed -n '4,6p' | tr '\n' ' ')"
		done
	done
}

# ---- A. fresh start ----
# node2 first: it hears node1 as soon as node1 starts, and must not take w3 then (node1's id is lower)
at_start 2 || at_bail "agent 2"
sleep 0.5
at_start 1 || at_bail "agent 1"
if sk_wait_for 30 roles "$AT_MOD" 3 4 && sk_wait_for 15 roles "$W2" 4 3; then
	sk_ok "fresh start: $AT_MOD PRIM on node1 (its first node), $W2 PRIM on node2 (its first node)"
else
	sk_not_ok "fresh start: $AT_MOD PRIM on node1 (its first node), $W2 PRIM on node2 (its first node)"
	show
	at_bail "no active/active pair"
fi
w3_one() { roles w3 3 4; }
if sk_wait_for 15 w3_one && sleep 2 && w3_one; then
	sk_ok "w3, whose two configs each list their own node first: one primary all the same (node1, the lowest id)"
else
	sk_not_ok "w3, whose two configs each list their own node first: one primary all the same (node1, the lowest id)"
	sk_diag "w3: node1 $(code 1 w3), node2 $(code 2 w3) (PRIM 3, SECOND 4)"
fi
for i in 1 2; do at_ctl "$i" stop -m w3 >/dev/null 2>&1; done
w3_stopped() { roles w3 0 0; }
sk_check "w3 stopped on both nodes" sk_wait_for 20 w3_stopped
sk_check "node2's agent says why it took $W2: the module's default primary" \
	grep -q "is the module's default primary" "${SK_ROOT[2]}/var/lib/steadykit/state/$W2/module.log"
vips_apart() { holds 1 "$AT_VIP" && holds 2 "$W2_VIP" && ! holds 2 "$AT_VIP" && ! holds 1 "$W2_VIP"; }
sk_check "each VIP on its own primary: $AT_VIP on node1, $W2_VIP on node2" vips_apart
echo "mirror data, written on node1" >"$(at_data 1)/a.txt"
echo "web2 data, written on node2" >"${SK_ROOT[2]}$W2_DATA_REL/b.txt"
sk_check "$AT_MOD is served by node1 through $AT_VIP" sk_wait_for 10 at_fetch a.txt
sk_check "$W2 is served by node2 through $W2_VIP" sk_wait_for 10 fetch2 b.txt
both_synced() { in_sync 2 "$AT_MOD" && in_sync 1 "$W2"; }
sk_check "both copies of each module in sync: $AT_MOD on node2, $W2 on node1" sk_wait_for 20 both_synced

# ---- B. kill -9 of node1 ----
pids=$(at_pids_of 1)
t0=$(date +%s%N)
# shellcheck disable=SC2086
kill -KILL $pids 2>/dev/null
if ms=$(at_wait_served "$t0" 20 a.txt); then
	sk_ok "kill -9 node1: $AT_MOD is served through $AT_VIP again"
	sk_diag "failover: fault -> first client response $ms ms (target < 1000)"
else
	sk_not_ok "kill -9 node1: $AT_MOD is served through $AT_VIP again"
	show
fi
prim2() { local c; c=$(code 2 "$1"); [ "$c" = 2 ] || [ "$c" = 3 ]; }
node2_both() { prim2 "$AT_MOD" && prim2 "$W2"; }
sk_check "kill -9 node1: node2 is primary of both modules" sk_wait_for 10 node2_both
a_ok() { at_fetch a.txt | grep -q 'written on node1'; }
b_ok() { fetch2 b.txt | grep -q 'written on node2'; }
sk_check "kill -9 node1: $AT_MOD's data written on node1 before is served by node2" a_ok
sk_check "kill -9 node1: $W2 went on serving from node2" b_ok

# ---- C. node1 back ----
at_start 1 || at_bail "restart agent 1"
if sk_wait_for 60 in_sync 1 "$AT_MOD" && sk_wait_for 30 in_sync 1 "$W2"; then
	sk_ok "node1 back: SECOND of both modules, in sync with node2"
else
	sk_not_ok "node1 back: SECOND of both modules, in sync with node2"
	show
fi
sk_check "node1 back: node2 keeps both roles (its copies are the newest; nothing moves back by itself)" \
	node2_both
both_served() { a_ok && b_ok; }
sk_check "node1 back: both modules served" sk_wait_for 5 both_served
echo "after the return" >"$(at_data 2)/c.txt"
sk_check "node1 back: a write on node2's $AT_MOD reaches node1's copy" \
	sk_wait_for 10 grep -q "after the return" "$(at_data 1)/c.txt"

for i in 1 2; do at_ctl "$i" stop -m "$W2" >/dev/null 2>&1; at_ctl "$i" stop -m "$AT_MOD" >/dev/null 2>&1; done
sk_done
