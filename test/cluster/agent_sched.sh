#!/usr/bin/env bash
# test/cluster/agent_sched.sh: a node starved of CPU must not look dead, so skagentd's loop runs
# SCHED_RR (priority 10 by default) with SCHED_RESET_ON_FORK: what it starts (skfused, the scripts,
# the application) and its other threads run as ordinary processes; --rt-priority 0 makes the agent
# an ordinary process too; a bad value is refused. (A real-time busy loop on every CPU is no test of
# it: it also starves ksoftirqd, so heartbeats stop in the kernel whatever the agent's priority;
# bench/soak.sh under load is where the behaviour is measured.)
set -uo pipefail
source "$SK_SRC/test/cluster/agent_common.sh"

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

# B: --rt-priority 0: an ordinary process, with a warning; a bad value is refused, nothing started
sk_term "${AT_AGENT_PID[2]}"
agent2_gone() { ! sk_alive "${AT_AGENT_PID[2]}"; }
sk_wait_for 20 agent2_gone || at_bail "agent 2 does not stop"
AT_N[2]=$((AT_N[2] + 1))
AT_AGENT_PID[2]=$(sk_spawn 2 "agent2.${AT_N[2]}" "$AT_AGENTD" --root "${SK_ROOT[2]}" --node node2 --rt-priority 0) ||
	at_bail "agent 2 with --rt-priority 0"
sk_check "an agent with --rt-priority 0 runs SCHED_OTHER" sk_wait_for 5 bash -c '[ "$(sed "s/^.*) //" /proc/$1/stat | cut -d" " -f39)" = 0 ]' _ "${AT_AGENT_PID[2]}"
sk_check "... and says why it should not" sk_wait_for 5 grep -q 'rt-priority 0: the agent runs as an ordinary process' "$SK_TMP/agent2.${AT_N[2]}.log"
sk_check "node2 SECOND again" sk_wait_for 30 at_is_second 2
for bad in 100 -1 x 10x ''; do
	rc=0
	out=$("$AT_AGENTD" --root "${SK_ROOT[2]}" --node node2 --rt-priority "$bad" --check 2>&1) || rc=$?
	sk_check "--rt-priority '$bad' refused (exit 2, says the range)" test "$rc" = 2 -a -n "$(grep -F 'from 0 to 99' <<<"$out")"
done
sk_done
