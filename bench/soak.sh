#!/usr/bin/env bash
# bench/soak.sh: a mirror module under 1 % heartbeat loss, CPU and I/O stress, with no fault: no
# failover may happen and no acknowledged write may be lost.
#
#   SOAK_S=1800 bash bench/soak.sh [BUILD]         # as root; BUILD defaults to $SK_BUILD or ./build
#
# Two nodes + a client in namespaces (test/cluster/lib.sh), skagentd on each, the example mirror
# module (web server on the VIP). For SOAK_S seconds (default 1800):
#   - 1 % of every frame each node sends is dropped at the bridge (nft random drop, lib.sh's
#     sk_netem loss fallback: this kernel has no sch_netem; netem where it exists)
#   - CPU: CPU_LOOPS (default 1) busy loops per node, I/O: one writer per node rewriting a 32 MiB
#     file with fsync outside the replicated directory; each bounded by `timeout`, ended by PID
#   - ackwriter (test/tools) writes with fsync through the primary's mount, logging every
#     acknowledged record; a client reads http://VIP/hello.txt every 0.5 s (failures counted)
# Then the stress stops, the cluster settles (bounded) and the acknowledged records are verified
# on the primary and on the in-sync secondary.
# false_failovers: primary role changes during the soak (nothing was injected), counted from the
# agents' transition history (state/mirror/transitions.jsonl, what `skctl why` prints): the larger
# of "a node became PRIM/ALONE from another state" and "a node left PRIM/ALONE"; PRIM<->ALONE
# (peer lost and back, no role change) is reported as peer_lost. Agent RSS (VmRSS, VmHWM) at the end.
# Last line: soak_s=<n> false_failovers=<n> acked_lost=<n> (-1: the verification could not run).
# Raw data (timeline, ackwriter log, transitions, logs) in $RESULTS_DIR/<timestamp>/.
set -uo pipefail
src=${SK_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
build=${SK_BUILD:-${1:-$src/build}}
build=$(cd "$build" 2>/dev/null && pwd) || { echo "soak.sh: no build dir '$build'" >&2; exit 2; }
export SK_SRC=$src SK_BUILD=$build
SOAK_S=${SOAK_S:-1800}
CPU_LOOPS=${CPU_LOOPS:-1}
LOSS_PCT=${LOSS_PCT:-1}
RESTORE_S=${RESTORE_S:-120}
RESULTS_DIR=${RESULTS_DIR:-/var/tmp/sk-soak-results}
[[ "$SOAK_S" =~ ^[0-9]+$ ]] && [ "$SOAK_S" -ge 10 ] && [ "$SOAK_S" -le 604800 ] ||
	{ echo "soak.sh: SOAK_S must be 10..604800" >&2; exit 2; }
[[ "$CPU_LOOPS" =~ ^[0-9]+$ ]] && [ "$CPU_LOOPS" -le 16 ] || { echo "soak.sh: CPU_LOOPS 0..16" >&2; exit 2; }
[[ "$LOSS_PCT" =~ ^[0-9]+$ ]] && [ "$LOSS_PCT" -le 99 ] || { echo "soak.sh: LOSS_PCT 0..99" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "soak.sh: run as root (namespaces, FUSE)" >&2; exit 2; }
AGENTD=$build/agent/skagentd
SKCTL=$build/cli/skctl
AW=$build/test/tools/ackwriter
for f in "$AGENTD" "$SKCTL" "$build/fused/skfused" "$AW"; do
	[ -x "$f" ] || { echo "soak.sh: not built: $f (ninja -C $build)" >&2; exit 2; }
done
for c in python3 curl timeout; do command -v "$c" >/dev/null || { echo "soak.sh: needs $c" >&2; exit 2; }; done

RES=$RESULTS_DIR/$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$RES/logs" || exit 2
# shellcheck source=failcommon.sh
source "$src/bench/failcommon.sh"
AWO=(--threads 2 --files 4 --size 512)
declare -a STRESS_PIDS

fb_cluster || exit 1
{
	echo "# bench/soak.sh $(date -u +%FT%TZ), git $(git -C "$src" rev-parse --short HEAD 2>/dev/null)"
	echo "# kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# one mirror module, 2 nodes + client in netns; heartbeat: $(fb_hb_desc)"
	echo "# soak ${SOAK_S} s: loss ${LOSS_PCT} % on every node's link ($(sk_have_netem && echo netem || echo 'nft random drop at the bridge')), $CPU_LOOPS busy loop(s) + 1 fsync writer per node, ackwriter ${AWO[*]} --fsync through the primary's mount, client GET through the VIP every 0.5 s"
	echo "# raw values: $RES; namespaces ${SK_PFX}*, scratch $SK_TMP (removed at exit)"
} | tee "$RES/header.txt"

start_agent 1 && start_agent 2 || { echo "soak.sh: cannot start the agents" >&2; exit 1; }
sk_wait_for 60 primary || { echo "soak.sh: no primary after 60 s" >&2; exit 1; }
P=$(primary)
S=$((3 - P))
echo "written before the soak" >"${SK_ROOT[$P]}$DATA_REL/hello.txt"
sk_wait_for "$RESTORE_S" ready "$P" ||
	{ echo "soak.sh: cluster not ready (PRIM + SECOND in sync + VIP served) after $RESTORE_S s" >&2; exit 1; }
echo "# start: node$P PRIM, node$S SECOND in sync"

# ---- load ----
START_MS=$(date +%s%3N)
mkdir -p "${SK_ROOT[$P]}$DATA_REL/aw"
AW_PID=$(sk_spawn "$P" ackwriter timeout -s TERM $((SOAK_S + 60)) "$AW" write \
	--dir "${SK_ROOT[$P]}$DATA_REL/aw" --log "$RES/ackwriter.acks" "${AWO[@]}" --fsync \
	--pause-us 20000 --duration "$SOAK_S")
READER_PID=$(sk_spawn_client reader timeout $((SOAK_S + 30)) bash -c '
	for ((i = 0; i < $2; i++)); do
		if curl -fsS --max-time 1 -o /dev/null "http://$1/hello.txt" 2>/dev/null; then echo "$(date +%s) ok"
		else echo "$(date +%s) fail"; fi
		sleep 0.5
	done' reader "$VIP" $((SOAK_S * 2)))
for i in 1 2; do
	[ "$LOSS_PCT" -gt 0 ] && { sk_netem "$i" "loss ${LOSS_PCT}%" || echo "soak.sh: cannot set loss on node$i" >&2; }
	for ((c = 1; c <= CPU_LOOPS; c++)); do
		STRESS_PIDS+=("$(sk_spawn "$i" "cpu$i.$c" timeout $((SOAK_S + 30)) sh -c 'while :; do :; done')")
	done
	STRESS_PIDS+=("$(sk_spawn "$i" "io$i" timeout $((SOAK_S + 30)) sh -c '
		n=0
		while [ $n -lt 1000000 ]; do
			dd if=/dev/zero of="$1" bs=1M count=32 conv=notrunc,fsync status=none || exit 1
			n=$((n + 1))
		done' io "${SK_ROOT[$i]}/iostress")")
done

# ---- soak: sample both nodes' states every second (timeline.tsv: s code1 code2) ----
printf 's\tnode1\tnode2\n' >"$RES/timeline.tsv"
t0=$(date +%s)
for ((k = 0; k < SOAK_S * 2 + 10; k++)); do
	el=$(($(date +%s) - t0))
	[ "$el" -ge "$SOAK_S" ] && break
	printf '%d\t%s\t%s\n' "$el" "$(code 1)" "$(code 2)" >>"$RES/timeline.tsv"
	if [ $((k % 60)) = 59 ]; then
		echo "# ${el} s: states (0 STOP 1 WAIT 2 ALONE 3 PRIM 4 SECOND) $(tail -n 1 "$RES/timeline.tsv" | cut -f2-), client fails so far $(grep -c ' fail$' "$SK_TMP/reader.log")"
	fi
	sleep 1
done
SOAKED=$(($(date +%s) - t0))

# ---- stop the load, settle, verify ----
for pid in "${STRESS_PIDS[@]}"; do sk_term "$pid" 2>/dev/null; done
for i in 1 2; do sk_netem_clear "$i"; done
sk_term "$READER_PID" 2>/dev/null
# ackwriter ends by itself after SOAK_S; SIGTERM in case it lags, bounded wait for it to go
sk_term "$AW_PID" 2>/dev/null
for ((i = 0; i < 300; i++)); do sk_alive "$AW_PID" || break; sleep 0.1; done
sk_alive "$AW_PID" && { echo "# ackwriter still there 30 s after SIGTERM: SIGKILL"; sk_kill9 "$AW_PID"; }
AW_SUMMARY=$(grep -h 'records=' "$SK_TMP/ackwriter.log" | tail -n 1)
echo "# ackwriter: ${AW_SUMMARY:-no summary (see logs/ackwriter.log)}"
echo "# client through the VIP: $(grep -c ' ok$' "$SK_TMP/reader.log") ok, $(grep -c ' fail$' "$SK_TMP/reader.log") failed"

P2=
for ((i = 0; i < 5; i++)); do P2=$(primary) && break; sleep 1; done
INSYNC=0
if [ -n "$P2" ] && sk_wait_for "$RESTORE_S" ready "$P2"; then INSYNC=1; fi
ACKED_LOST=-1
lost_on() { # lost_on N: acknowledged records missing on node N's copy, or nothing if verify failed
	local out
	out=$("$AW" verify --dir "${SK_ROOT[$1]}$DATA_REL/aw" --log "$RES/ackwriter.acks" "${AWO[@]}" 2>&1)
	printf '%s\n' "$out" >"$RES/verify-node$1.txt"
	grep -q '^verify: ok' <<<"$out" || echo "# verify on node$1: $(grep -v ' ok$' <<<"$out" | head -n 5 | tr '\n' ';')" >&2
	awk '/^t=[0-9]+ K=/ { split($2, a, "="); split($3, b, "="); d = b[2] - a[2]; if (d > 0) s += d; n++ }
	     END { if (n) print s + 0 }' <<<"$out"
}
if [ -n "$P2" ]; then
	l=$(lost_on "$P2")
	[ -n "$l" ] && ACKED_LOST=$l
	if [ "$INSYNC" = 1 ]; then
		l=$(lost_on $((3 - P2)))
		[ -n "$l" ] && [ "$ACKED_LOST" -ge 0 ] && [ "$l" -gt "$ACKED_LOST" ] && ACKED_LOST=$l
	else
		echo "# node$((3 - P2)) not SECOND in sync after $RESTORE_S s: verified on the primary only"
	fi
else
	echo "# no primary after the soak: acknowledged records not verified"
fi

for i in 1 2; do
	cp "${SK_ROOT[$i]}/var/lib/steadykit/state/$MOD/transitions.jsonl" "$RES/transitions-n$i.jsonl" 2>/dev/null
	ctl "$i" why -m "$MOD" -n 64 >"$RES/why-node$i.txt" 2>&1
done
read -r FALSE PEERLOST < <(python3 - "$START_MS" "$RES/transitions-n1.jsonl" "$RES/transitions-n2.jsonl" <<-'PY'
	import json, sys
	start = int(sys.argv[1]); prim = {"PRIM", "ALONE"}
	became = left = lost = 0
	for f in sys.argv[2:]:
	    try:
	        lines = open(f).read().splitlines()
	    except OSError:
	        continue
	    for l in lines:
	        try:
	            t = json.loads(l)
	        except ValueError:
	            continue
	        if t.get("at_ms", 0) < start:
	            continue
	        a, b = t.get("from"), t.get("to")
	        if a not in prim and b in prim:
	            became += 1
	        elif a in prim and b not in prim:
	            left += 1
	        elif a == "PRIM" and b == "ALONE":
	            lost += 1
	print(max(became, left), lost)
	PY
)
echo "# transitions during the soak: false failovers ${FALSE:-?}, peer_lost (PRIM -> ALONE) ${PEERLOST:-?}; see why-node*.txt"
for i in 1 2; do
	st=/proc/${AGENT_PID[$i]}/status
	if sk_alive "${AGENT_PID[$i]}"; then
		echo "agent_rss node$i: $(awk '/^VmRSS/ { r = $2 } /^VmHWM/ { h = $2 } END { printf "VmRSS=%d KiB VmHWM=%d KiB", r, h }' "$st")"
	else
		echo "agent_rss node$i: agent not running"
	fi
done | tee "$RES/rss.txt"
echo "soak_s=$SOAKED false_failovers=${FALSE:--1} acked_lost=$ACKED_LOST" | tee "$RES/summary.txt"
