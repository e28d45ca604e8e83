#!/usr/bin/env bash
# test/cluster/agent_gen.sh: data generations through two skagentd: an outdated copy never becomes
# primary by itself, the outdated node returning first waits for the newest, a diverged pair
# (split brain) never resyncs by itself, and the operator's survivor keeps the loser's files aside.
#
# Faults are real: the replication port dropped by nft on node1 (node2 falls behind while both
# agents still talk), kill -9 of every process of a node's namespace, a partition of the two
# nodes on the bridge (both become primary and write), then the heal.
set -u
source "$SK_SRC/test/cluster/agent_common.sh"

at_init
REPL_PORT=7801 # repl_port_base 7800 + module id 1

show_state() {
	sk_diag "node1: $(at_ctl 1 state -m "$AT_MOD" 2>&1 | sed -n '4,9p')"
	sk_diag "node2: $(at_ctl 2 state -m "$AT_MOD" 2>&1 | sed -n '4,9p')"
}
kill_node() { # kill -9 every process of node N's namespace (all started by this run)
	local p
	for p in $(at_pids_of "$1"); do kill -9 "$p" 2>/dev/null; done
	sk_wait_for 5 bash -c "[ -z \"\$(ip netns pids ${SK_NS[$1]} 2>/dev/null)\" ]"
	umount -l "$(at_data "$1")" 2>/dev/null
	return 0
}
roles() { at_code_is "$1" 3 && at_code_is "$2" 4; } # PRIM on $1, SECOND on $2
# the fused status of node N through its control socket, one field (python path a.b)
fst() {
	local sock=${SK_ROOT[$1]}/run/steadykit/fused-$AT_MOD.sock
	echo '{"cmd":"status"}' | sk_in "$1" nc -U -N "$sock" 2>/dev/null |
		python3 -c 'import json,sys
d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d=d.get(k, "") if isinstance(d, dict) else ""
print(str(d).lower())' "$2" 2>/dev/null
}
data_line() { at_ctl "$1" state -m "$AT_MOD" 2>/dev/null | grep "$AT_MOD: data:"; }

at_start 1 || at_bail "agent 1"
at_start 2 || at_bail "agent 2"
if sk_wait_for 30 roles 1 2 && sk_wait_for 20 at_in_sync 2; then
	sk_ok "fresh start: node1 PRIM, node2 SECOND in sync"
else
	sk_not_ok "fresh start: node1 PRIM, node2 SECOND in sync"
	show_state
	at_bail "no pair"
fi
echo common >"$(at_data 1)/common.txt"
echo "to be deleted on node2 alone" >"$(at_data 1)/del.txt"
sk_wait_for 10 test -e "$(at_data 2)/del.txt" || sk_diag "replication of the first files is slow"

# ---- 1. node2 falls behind while both agents see each other --------------------------------
sk_in 1 nft -f - <<EOF || at_bail "nft"
table inet gen_t {
	chain out { type filter hook output priority 0; policy accept; tcp dport $REPL_PORT drop; }
}
EOF
echo "written while node2 is cut off" >"$(at_data 1)/behind.txt" # waits up to the 2 s budget
behind_words() { data_line 1 | grep -q "node2 is behind node1 .*(outdated since"; }
node2_outdated() { [ "$(at_field 2 uptodate)" = false ]; }
sk_check "the primary says in words that node2 is behind it, and since when" sk_wait_for 10 behind_words
sk_diag "$(data_line 1)"
by_words() { data_line 1 | grep -q "node2 is behind node1 by .*file"; }
sk_check "... and by how much, from the primary's dirty tracker (files written while alone)" \
	sk_wait_for 5 by_words
sk_check "node2's agent knows its copy is outdated (the primary says the peer is behind)" \
	sk_wait_for 10 node2_outdated
kill_node 1 # first: with the port open again, node1 would resync node2 at once
sk_in 1 nft delete table inet gen_t
waits_outdated() {
	at_code_is 2 1 && at_ctl 2 state -m "$AT_MOD" 2>/dev/null | grep -q "outdated"
}
if sk_wait_for 10 waits_outdated; then
	sk_ok "node1 dead: the outdated node2 waits (WAIT) and says its copy is outdated"
else
	sk_not_ok "node1 dead: the outdated node2 waits (WAIT) and says its copy is outdated"
	show_state
fi
out=$(at_ctl 2 prim -m "$AT_MOD" 2>&1) && rc=0 || rc=$?
if [ "$rc" != 0 ] && ! at_is_primary 2; then
	sk_ok "skctl prim (no --force) on the outdated node is refused"
else
	sk_not_ok "skctl prim (no --force) on the outdated node is refused (rc $rc: $out)"
fi
out=$(at_ctl 2 prim -m "$AT_MOD" --force </dev/null 2>&1) && rc=0 || rc=$?
if [ "$rc" != 0 ] && grep -q "NOT known to be up to date" <<<"$out" &&
	grep -q "Whatever only node1 has" <<<"$out" && ! at_is_primary 2; then
	sk_ok "prim --force says what would be lost and does nothing unconfirmed"
else
	sk_not_ok "prim --force says what would be lost and does nothing unconfirmed (rc $rc)"
	sk_diag "$out"
fi

# ---- 2. both down; the outdated one returns first and waits; then the newest returns ---------
kill_node 2
at_start 2 || at_bail "agent 2 again"
sleep 3.6 # past the startup grace (3 s): by itself it would have decided by now
if at_code_is 2 1 && ! at_is_primary 2; then
	sk_ok "both down, the outdated node2 returns first: it waits (WAIT) past the startup grace"
else
	sk_not_ok "both down, the outdated node2 returns first: it waits (WAIT) past the startup grace"
	show_state
fi
sk_diag "node2 says: $(at_ctl 2 state -m "$AT_MOD" 2>/dev/null | grep "$AT_MOD: " | head -2)"
at_start 1 || at_bail "agent 1 again"
if sk_wait_for 30 roles 1 2 && sk_wait_for 30 at_in_sync 2; then
	sk_ok "node1 (newest) returns: normal start, node1 PRIM, node2 SECOND in sync"
else
	sk_not_ok "node1 (newest) returns: normal start, node1 PRIM, node2 SECOND in sync"
	show_state
fi
sk_check "what node1 wrote while node2 was behind reached node2" \
	sk_wait_for 10 grep -q "written while node2" "$(at_data 2)/behind.txt"

# ---- 3. split brain: both primary, both write, heal ------------------------------------------
sk_partition 1 2
both_primary() { at_is_primary 1 && at_is_primary 2; }
sk_check "partition: both nodes become primary" sk_wait_for 15 both_primary
echo "node1 alone" >"$(at_data 1)/only1.txt"
echo "node1 version" >"$(at_data 1)/common.txt"
echo "node2 alone" >"$(at_data 2)/only2.txt"
echo "node2 version" >"$(at_data 2)/common.txt"
rm -f "$(at_data 2)/del.txt"
sync
sk_heal 1 2
one_prim() { [ "$(at_primary)" != "" ] && ! both_primary; }
sk_wait_for 20 one_prim || sk_diag "still two primaries after the heal"
P=$(at_primary)
S=$((3 - ${P:-1}))
sk_diag "after the heal: node$P primary, node$S steps down"
diverged_both() {
	[ "$(fst "$P" peer)" = diverged ] && [ "$(fst "$S" peer)" = diverged ] &&
		[ "$(at_field "$P" relation)" = diverged ] && [ "$(at_field "$S" relation)" = diverged ]
}
if sk_wait_for 20 diverged_both; then
	sk_ok "healed: both skfused and both agents say the copies diverged"
else
	sk_not_ok "healed: both skfused and both agents say the copies diverged"
	sk_diag "P=$P fused peer: $(fst "$P" peer) / S=$S: $(fst "$S" peer); relations $(at_field "$P" relation) $(at_field "$S" relation)"
	show_state
fi
sk_diag "$(data_line "$P")"
if data_line "$P" | grep -q "prim -m $AT_MOD --force" && data_line "$S" | grep -q "diverged"; then
	sk_ok "skctl state on both nodes says so and what to do (skctl prim --force)"
else
	sk_not_ok "skctl state on both nodes says so and what to do (skctl prim --force)"
fi
# how much each side changed since the shared generation, as each skfused counts it (its dirty
# tracker as primary, its kept list as secondary) and as START and the GEN answer carry it across:
# only<N>.txt (12 bytes, new) and common.txt (14 bytes written) on each side: 2 files, 26 bytes
sizes_known() {
	[ "$(fst "$P" gen.changed_files)" = 2 ] && [ "$(fst "$P" gen.changed_bytes)" = 26 ] &&
		[ "$(fst "$S" gen.changed_files)" = 2 ] && [ "$(fst "$S" gen.changed_bytes)" = 26 ] &&
		[ "$(fst "$P" gen.peer.changed_files)" = 2 ] && [ "$(fst "$P" gen.peer.changed_bytes)" = 26 ] &&
		[ "$(fst "$S" gen.peer.changed_files)" = 2 ] && [ "$(fst "$S" gen.peer.changed_bytes)" = 26 ]
}
if sk_wait_for 10 sizes_known; then
	sk_ok "split brain sizes: each side changed 2 files, 26 bytes, known on both nodes (START, GEN)"
else
	sk_not_ok "split brain sizes: each side changed 2 files, 26 bytes, known on both nodes (START, GEN)"
	sk_diag "node$P: $(fst "$P" gen) / node$S: $(fst "$S" gen)"
fi
sizes_words() { data_line "$P" | grep -q "changed since then: node$P 26 B in 2 files, node$S 26 B in 2 files; .*prim -m $AT_MOD --force"; }
sk_check "skctl state says how much each side changed since the shared generation" sk_wait_for 5 sizes_words
sleep 2 # time for a resync that must not happen
if [ -e "$(at_data "$S")/only$S.txt" ] && [ ! -e "$(at_data "$S")/only$P.txt" ] &&
	grep -q "node$S version" "$(at_data "$S")/common.txt"; then
	sk_ok "no automatic resync of a diverged pair: node$S keeps its own files"
else
	sk_not_ok "no automatic resync of a diverged pair: node$S keeps its own files"
fi

# ---- 4. the operator chooses the survivor -----------------------------------------------------
out=$(at_ctl "$S" prim -m "$AT_MOD" --force --yes 2>&1) && rc=0 || rc=$?
if [ "$rc" != 0 ] && grep -q "skctl second -m $AT_MOD on node$P first" <<<"$out"; then
	sk_ok "prim --force on the SECOND of a diverged pair is refused and says how (second on node$P first)"
else
	sk_not_ok "prim --force on the SECOND of a diverged pair is refused and says how (rc $rc)"
	sk_diag "$out"
fi
out=$(at_ctl "$P" prim -m "$AT_MOD" --force --yes 2>&1) || sk_diag "prim --force: $out"
sk_diag "prim --force --yes on node$P: $(tr '\n' ' ' <<<"$out")"
sk_check "prim --force on a diverged pair says the other side's changes are kept aside" \
	grep -q "kept aside" <<<"$out"
sk_check "... and how much each side changed (26 B in 2 files)" grep -q "changed since then: node$P 26 B in 2 files, node$S 26 B in 2 files" <<<"$out"
trees_equal() {
	diff -r "$(at_data "$P")" "$(at_data "$S")" >/dev/null 2>&1
}
if sk_wait_for 30 trees_equal && sk_wait_for 20 at_in_sync "$S"; then
	sk_ok "after the operator's choice: resync, node$S's tree equals the survivor's"
else
	sk_not_ok "after the operator's choice: resync, node$S's tree equals the survivor's"
	diff -r "$(at_data "$P")" "$(at_data "$S")" 2>&1 | head -5 | while read -r l; do sk_diag "$l"; done
	show_state
fi
ASIDE=$(ls -d "$(at_data "$S")".steadykit-aside/*/ 2>/dev/null | head -1)
ASIDE=${ASIDE%/}
if [ -n "$ASIDE" ] && grep -q "node$S alone" "$ASIDE/files/only$S.txt" 2>/dev/null &&
	grep -q "node$S version" "$ASIDE/files/common.txt" 2>/dev/null; then
	sk_ok "the loser's divergent files are kept in $(basename "$(dirname "$ASIDE")")/$(basename "$ASIDE")"
else
	sk_not_ok "the loser's divergent files are kept aside"
	sk_diag "aside: ${ASIDE:-none}: $(find "$(at_data "$S")".steadykit-aside 2>/dev/null | head -10 | tr '\n' ' ')"
fi
if grep -qP "^removed\tonly$S.txt$" "$ASIDE/list.txt" 2>/dev/null &&
	grep -qP "^changed\tcommon.txt$" "$ASIDE/list.txt" 2>/dev/null; then
	sk_ok "the kept-aside list names them (removed only$S.txt, changed common.txt)"
else
	sk_not_ok "the kept-aside list names them"
	sk_diag "list: $(cat "$ASIDE/list.txt" 2>/dev/null | tr '\n' ' ')"
fi
aside_told() { at_ctl "$S" state -m "$AT_MOD" 2>/dev/null | grep -q "kept aside by a forced resync: .*steadykit-aside/$(basename "$ASIDE")"; }
sk_check "skctl state on node$S says where the kept-aside folder is" sk_wait_for 5 aside_told
sk_done
