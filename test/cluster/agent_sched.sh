#!/usr/bin/env bash
# test/cluster/agent_sched.sh: a node starved of CPU is not a dead node. skagentd's loop runs
# SCHED_RR (priority 10 by default) with SCHED_RESET_ON_FORK, so what it starts (skfused, the
# scripts, the application) runs as ordinary processes; then a real-time CPU hog (SCHED_FIFO 5,
# one per CPU, 2 s) starves every ordinary process of the machine, and the agents, above it, keep
# their heartbeats: no node is declared dead and the roles do not move. An agent run with
# --rt-priority 0 is starved with the rest, and its peer takes over.
set -uo pipefail
source "$SK_SRC/test/cluster/agent_common.sh"

command -v chrt >/dev/null && command -v taskset >/dev/null || at_bail "chrt/taskset missing (util-linux)"
at_init

# policy PID: "SCHED_RR 10", "SCHED_OTHER 0", ... from /proc/PID/stat (fields 40, 41)
policy() {
	local f
	f=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	# after the comm: field 3 is the state, so policy (41) and rt_priority (40) are 39th and 38th here
	set -- $f
	case "${39}" in
	0) echo "SCHED_OTHER ${38}" ;;
	1) echo "SCHED_FIFO ${38}" ;;
	2) echo "SCHED_RR ${38}" ;;
	*) echo "policy ${39} ${38}" ;;
	esac
}

dead_lines() { grep -c 'dead: ' "$SK_TMP/agent$1.${AT_N[$1]}.log" 2>/dev/null || true; }

# hog S: one SCHED_FIFO 5 busy loop per CPU for S seconds (each ends by itself: an ordinary
# `timeout` would be starved too); waits for them
hog() {
	local s=$1 c pids=()
	for ((c = 0; c < $(nproc); c++)); do
		taskset -c "$c" chrt -f 5 bash -c 'e=$((SECONDS + $1)); while [ $SECONDS -lt $e ]; do :; done' _ "$s" &
		pids+=($!)
	done
	wait "${pids[@]}"
}

# A: the policies
at_start_pair
a1=$(policy "${AT_AGENT_PID[1]}")
sk_check "agent runs SCHED_RR 10 by default ($a1)" test "$a1" = "SCHED_RR 10"
fp=$(at_fused_pid 1)
sk_check "skfused, started by the agent, runs SCHED_OTHER ($(policy "$fp"))" test "$(policy "$fp")" = "SCHED_OTHER 0"
other=0 total=0
for p in $(at_pids_of 1); do
	[ "$p" = "${AT_AGENT_PID[1]}" ] && continue
	total=$((total + 1))
	case "$(policy "$p")" in SCHED_OTHER*) ;; *) other=$((other + 1)); sk_diag "pid $p ($(cat /proc/$p/comm 2>/dev/null)): $(policy "$p")" ;; esac
done
sk_check "every other process of node1 ($total: skfused, scripts, application) is SCHED_OTHER" test "$other" = 0
nrt=0
for t in /proc/"${AT_AGENT_PID[1]}"/task/*; do
	t=${t##*/}
	[ "$t" = "${AT_AGENT_PID[1]}" ] && continue
	case "$(policy "${AT_AGENT_PID[1]}/task/$t")" in SCHED_OTHER*) ;; *) nrt=$((nrt + 1)) ;; esac
done
sk_check "the agent's other threads are SCHED_OTHER" test "$nrt" = 0

# B: every ordinary process starved for 2 s: the roles stay
echo "served" >"$(at_data 1)/hello.txt" || at_bail "write through the mount"
sk_check "the client is served through the VIP before" sk_wait_for 20 at_fetch hello.txt
d1=$(dead_lines 1) d2=$(dead_lines 2)
hog 2
sleep 1
sk_check "no node declared dead during the hog (node1 $d1 -> $(dead_lines 1), node2 $d2 -> $(dead_lines 2))" \
	test "$(dead_lines 1)" = "$d1" -a "$(dead_lines 2)" = "$d2"
sk_check "node1 still PRIM" at_code_is 1 3
sk_check "node2 still SECOND" at_code_is 2 4
sk_check "the client is served through the VIP after" sk_wait_for 20 at_fetch hello.txt

# C: node2's agent as an ordinary process is starved with the rest: node1 takes it for dead
sk_term "${AT_AGENT_PID[2]}"
agent2_gone() { ! sk_alive "${AT_AGENT_PID[2]}"; }
sk_wait_for 20 agent2_gone || at_bail "agent 2 does not stop"
AT_N[2]=$((AT_N[2] + 1))
AT_AGENT_PID[2]=$(sk_spawn 2 "agent2.${AT_N[2]}" "$AT_AGENTD" --root "${SK_ROOT[2]}" --node node2 --rt-priority 0) ||
	at_bail "agent 2 with --rt-priority 0"
sk_check "an agent with --rt-priority 0 runs SCHED_OTHER" sk_wait_for 5 bash -c '[ "$(sed "s/^.*) //" /proc/$1/stat | cut -d" " -f39)" = 0 ]' _ "${AT_AGENT_PID[2]}"
sk_check "node2 SECOND again" sk_wait_for 30 at_is_second 2
d1=$(dead_lines 1)
hog 2
sk_check "node1 declared the starved node2 dead ($d1 -> $(dead_lines 1))" sk_wait_for 5 bash -c '[ "$(grep -c "dead: " "$1")" -gt "$2" ]' _ "$SK_TMP/agent1.${AT_N[1]}.log" "$d1"
sk_check "node1 is still the primary" sk_wait_for 10 at_is_primary 1
sk_done
