#!/usr/bin/env bash
# bench/failover.sh: time from a fault of the primary to the first client answer through the VIP.
#
#   RUNS=10 bash bench/failover.sh [BUILD]        # as root; BUILD defaults to $SK_BUILD or ./build
#
# One mirror module on two nodes (network namespaces from test/cluster/lib.sh), decided by the
# agents alone: skagentd on each node, the example module (examples/mirror/bin/start_prim: a web
# server on the VIP publishing the replicated directory). ONE cluster is reused for every run:
# after each fault the cluster is restored (the faulted node's agent restarted, cable plugged
# back or processes continued) and the benchmark waits, bounded, until that node is SECOND and in
# sync again; the next fault hits the new primary, so the role alternates between the nodes.
#
# Faults, RUNS each (default 10):
#   kill9    kill -9 of every process of the primary's namespace (agent, skfused, web server)
#   linkdown the primary's cable pulled (its bridge port down)
#   sigstop  SIGSTOP of every process of the primary's namespace (resumed after the measure:
#            the agent first, which must step down, then the rest)
# Figure per run: bench/failpoll.py in the client namespace takes a monotonic timestamp, injects
# the fault, then polls http://VIP/hello.txt (connect+answer within POLL_TIMEOUT_MS, default
# 200) until the first HTTP 200, which can only come from the survivor. A run not served within
# MAX_S (default 30) counts as MAX_S in the percentiles and is reported as a timeout.
#   farm     one farm module on three other nodes (bench/failfarm.sh, its own namespaces): kill -9
#            of every process of one node; the time until a connection from every one of 64 client
#            source addresses is answered again (by the survivors)
#
# WITNESS=1: node3 runs the lease witness (skagentd --witness; LEASE_MS sets witness.lease_ms,
# else the default), so every takeover waits for the witness's lease as docs/agent.md says.
# Heartbeat timing: the product's defaults (cluster.json without "heartbeat") unless
# HB_INTERVAL_MS / HB_TIMEOUT_MS are set. Output: a header, one line per run, p50/p95 per fault,
# the survivor's median phases (skctl why: detect, decide, stop, vip, skfused, start scripts),
# last line `failover_ms p50=<n> p95=<n>` over every measured run. Raw values, each run's
# `skctl why` and the agents' logs go to $RESULTS_DIR/<timestamp>/ (default /var/tmp/sk-failover-results).
set -uo pipefail
src=${SK_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
build=${SK_BUILD:-${1:-$src/build}}
build=$(cd "$build" 2>/dev/null && pwd) || { echo "failover.sh: no build dir '$build'" >&2; exit 2; }
export SK_SRC=$src SK_BUILD=$build
RUNS=${RUNS:-10}
MAX_S=${MAX_S:-30}
POLL_TIMEOUT_MS=${POLL_TIMEOUT_MS:-200}
RESTORE_S=${RESTORE_S:-90}
FAULTS=${FAULTS:-kill9 linkdown sigstop farm}
RESULTS_DIR=${RESULTS_DIR:-/var/tmp/sk-failover-results}
[[ "$RUNS" =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] && [ "$RUNS" -le 1000 ] ||
	{ echo "failover.sh: RUNS must be 1..1000" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "failover.sh: run as root (namespaces, FUSE)" >&2; exit 2; }
AGENTD=$build/agent/skagentd
SKCTL=$build/cli/skctl
POLL=$src/bench/failpoll.py
for f in "$AGENTD" "$SKCTL" "$build/fused/skfused"; do
	[ -x "$f" ] || { echo "failover.sh: not built: $f (ninja -C $build)" >&2; exit 2; }
done
for c in python3 curl; do command -v "$c" >/dev/null || { echo "failover.sh: needs $c" >&2; exit 2; }; done

RES=$RESULTS_DIR/$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$RES/why" "$RES/logs" || exit 2
RAW=$RES/runs.tsv
printf 'fault\trun\tfaulted\tsurvivor\tms\tstatus\n' >"$RAW"
printf 'fault\trun\tdetect\tdecide\tstop\tvip\tskfused\tstart\ttotal\n' >"$RES/phases.tsv"

# shellcheck source=failcommon.sh
source "$src/bench/failcommon.sh"

pct() { # pct FILE: "n=.. p50=.. p95=.. min=.. max=.." of the integers in FILE (nearest rank)
	python3 - "$1" <<-'PY'
	import math, sys
	v = sorted(int(x) for x in open(sys.argv[1]).read().split())
	if not v:
	    print("n=0"); sys.exit(0)
	r = lambda q: v[max(0, math.ceil(q * len(v)) - 1)]
	print("n=%d p50=%d p95=%d min=%d max=%d" % (len(v), r(0.5), r(0.95), v[0], v[-1]))
	PY
}

# phases N FAULT RUN: the phases (ms) of node N's last takeover (SECOND/WAIT -> ALONE/PRIM), from
# its transition history (what skctl why prints), as one phases.tsv line
phases() {
	python3 - "${SK_ROOT[$1]}/var/lib/steadykit/state/$MOD/transitions.jsonl" "$2" "$3" <<-'PY'
	import json, sys
	last = None
	try:
	    for l in open(sys.argv[1]):
	        t = json.loads(l)
	        if t.get("to") in ("ALONE", "PRIM") and t.get("from") not in ("ALONE", "PRIM"):
	            last = t
	except (OSError, ValueError):
	    pass
	if last:
	    p = last.get("phase_ms", {})
	    print("\t".join([sys.argv[2], sys.argv[3]] + [str(p.get(k, 0)) for k in
	          ("detect", "decide", "stop", "vip", "fused", "start")] + [str(last.get("total_ms", 0))]))
	PY
}
phase_medians() { # phase_medians FAULT: "detect=.. decide=.. ..." over the runs of FAULT
	python3 - "$RES/phases.tsv" "$1" <<-'PY'
	import statistics, sys
	names = ("detect", "decide", "stop", "vip", "skfused", "start", "total")
	rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
	rows = [[int(x) for x in r[2:]] for r in rows if r and r[0] == sys.argv[2]]
	print(" ".join("%s=%d" % (n, statistics.median(c)) for n, c in zip(names, zip(*rows))) if rows else "none")
	PY
}

# ---- the cluster ----
fb_cluster || exit 1

{
	echo "# bench/failover.sh $(date -u +%FT%TZ), git $(git -C "$src" rev-parse --short HEAD 2>/dev/null)"
	echo "# kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# one mirror module, 2 nodes + client in netns, ONE cluster reused for every run (restored between runs)"
	echo "# heartbeat: $(fb_hb_desc)"
	echo "# witness: $(fb_witness_desc)"
	echo "# runs per fault: $RUNS; faults: $FAULTS; client: GET http://$VIP/hello.txt, ${POLL_TIMEOUT_MS} ms per attempt, give up after $MAX_S s"
	echo "# raw values: $RES; namespaces ${SK_PFX}*, scratch $SK_TMP (removed at exit)"
} | tee "$RES/header.txt"

fb_witness || { echo "failover.sh: cannot start the witness" >&2; exit 1; }
start_agent 1 && start_agent 2 || { echo "failover.sh: cannot start the agents" >&2; exit 1; }
sk_wait_for 60 primary || { echo "failover.sh: no primary after 60 s" >&2; exit 1; }
P=$(primary)
echo "written before any fault" >"${SK_ROOT[$P]}$DATA_REL/hello.txt"
if ! sk_wait_for "$RESTORE_S" ready "$P"; then
	echo "failover.sh: cluster not ready (PRIM + SECOND in sync + VIP served) after $RESTORE_S s" >&2
	exit 1
fi

FAILED=0
: >"$RES/all.ms"
for fault in $FAULTS; do
	[ "$fault" = farm ] && continue # below, on its own three nodes
	: >"$RES/$fault.ms"
	timeouts=0
	for ((run = 1; run <= RUNS; run++)); do
		if ! sk_wait_for "$RESTORE_S" settled; then
			echo "failover.sh: cluster not ready before $fault run $run (one PRIM serving, the other SECOND in sync)" >&2
			FAILED=1
			break 2
		fi
		if ready 1; then P=1; else P=2; fi
		S=$((3 - P))
		args=(--host "$VIP" --path /hello.txt --timeout-ms "$POLL_TIMEOUT_MS" --max-s "$MAX_S")
		case $fault in
		kill9) args+=(--signal-ns "${SK_NS[$P]}" --signal KILL) ;;
		sigstop) args+=(--signal-ns "${SK_NS[$P]}" --signal STOP --pids-out "$SK_TMP/stopped") ;;
		linkdown) args+=(--cmd "ip -n $SK_BR_NS link set v$P down") ;;
		*) echo "failover.sh: unknown fault $fault" >&2; exit 2 ;;
		esac
		out=$(sk_client python3 "$POLL" "${args[@]}" 2>&1)
		if [[ "$out" =~ ^ms=([0-9]+) ]]; then
			ms=${BASH_REMATCH[1]} st=ok
		else
			ms=$((MAX_S * 1000)) st=timeout
			timeouts=$((timeouts + 1))
		fi
		echo "$ms" >>"$RES/$fault.ms"
		echo "$ms" >>"$RES/all.ms"
		sk_wait_for 10 is_primary "$S" || st="$st,survivor-not-primary"
		sk_wait_for 3 holds_vip "$S" || st="$st,survivor-no-vip"
		printf '%s\t%d\tnode%d\tnode%d\t%d\t%s\n' "$fault" "$run" "$P" "$S" "$ms" "$st" >>"$RAW"
		printf '%-8s run %2d: node%d -> node%d  %6d ms  %s\n' "$fault" "$run" "$P" "$S" "$ms" "$st"
		ctl "$S" why -m "$MOD" -n 1 >"$RES/why/$fault-$run.txt" 2>&1
		phases "$S" "$fault" "$run" >>"$RES/phases.tsv"

		# restore: node P back as SECOND (waited for at the top of the next run)
		case $fault in
		kill9)
			start_agent "$P" || { echo "failover.sh: cannot restart agent $P" >&2; FAILED=1; break 2; }
			;;
		linkdown)
			sk_link_up "$P"
			;;
		sigstop)
			# the agent first: it must see the other primary and step down (fencing its
			# skfused) before anything else of the old primary runs again
			kill -CONT "${AGENT_PID[$P]}" 2>/dev/null
			sk_wait_for 15 not_primary "$P" || echo "# node$P still primary 15 s after SIGCONT"
			while read -r pid; do
				[ "$pid" = "${AGENT_PID[$P]}" ] || kill -CONT "$pid" 2>/dev/null
			done <"$SK_TMP/stopped"
			;;
		esac
	done
	echo "$fault: $(pct "$RES/$fault.ms") timeouts=$timeouts" | tee -a "$RES/summary.txt"
	echo "$fault: survivor's phases, median ms: $(phase_medians "$fault")" | tee -a "$RES/summary.txt"
done

if [[ " $FAULTS " == *" farm "* ]] && [ "$FAILED" = 0 ]; then
	# its own cluster (three nodes) in a child: lib.sh sets up one cluster per process
	: >"$RES/farm.ms"
	RUNS=$RUNS MAX_S=$MAX_S HB_INTERVAL_MS=${HB_INTERVAL_MS:-} HB_TIMEOUT_MS=${HB_TIMEOUT_MS:-} \
		bash "$src/bench/failfarm.sh" "$RES/farm.ms" 2>&1 | tee "$RES/farm.txt" |
		grep -v 'failfarm.sh: line [0-9]*: .* Killed'
	[ "${PIPESTATUS[0]}" = 0 ] || FAILED=1
	grep '^farm:' "$RES/farm.txt" >>"$RES/summary.txt"
	cat "$RES/farm.ms" >>"$RES/all.ms"
fi
[ "$FAILED" = 0 ] || echo "# incomplete: the cluster could not be restored; figures cover the runs done" |
	tee -a "$RES/summary.txt"
all=$(pct "$RES/all.ms")
p50=$(sed -n 's/.*p50=\([0-9]*\).*/\1/p' <<<"$all")
p95=$(sed -n 's/.*p95=\([0-9]*\).*/\1/p' <<<"$all")
echo "failover_ms p50=${p50:-none} p95=${p95:-none}" | tee -a "$RES/summary.txt"
exit "$FAILED"
