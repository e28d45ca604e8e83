#!/usr/bin/env bash
# bench/failfarm.sh: farm failover: kill -9 of one of three farm nodes -> every one of 64 sources served again.
#
#   RUNS=10 bash bench/failfarm.sh [OUT_MS_FILE]    # as root; SK_SRC/SK_BUILD as failover.sh sets them
#
# Three nodes (lib.sh namespaces) run skagentd with one farm module (rule "client", equal weights,
# start_both starting test/farmtools/farmsrv on the VIP); the client has 64 source addresses. Per
# run, node k (k = 1, 2, 3, 1, ...) loses every process of its namespace (kill -9: agent and web
# server); the figure is the time from the kill to the first moment a connection from every one of
# the 64 sources is answered (one connection per source, 150 ms each, all at once; repeated until
# all answer, none by the dead node). The node's agent is then started again and the run waits,
# bounded, until the three are UP and every source is served by its original node again.
# Prints one line per run and "farm: n=.. p50=.. p95=.. ..."; the run times (ms) are appended to
# OUT_MS_FILE when given (bench/failover.sh adds them to its overall figure). A run not served
# within MAX_S (default 30) counts as MAX_S.
set -uo pipefail
src=${SK_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
build=${SK_BUILD:-$src/build}
export SK_SRC=$src SK_BUILD=$build
RUNS=${RUNS:-10}
MAX_S=${MAX_S:-30}
OUT=${1:-}
HB_INTERVAL_MS=${HB_INTERVAL_MS:-}
HB_TIMEOUT_MS=${HB_TIMEOUT_MS:-}
[[ "$RUNS" =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] && [ "$RUNS" -le 1000 ] ||
	{ echo "failfarm.sh: RUNS must be 1..1000" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "failfarm.sh: run as root (namespaces, XDP)" >&2; exit 2; }
AGENTD=$build/agent/skagentd
SKCTL=$build/cli/skctl
SRV=$build/test/farmtools/farmsrv
CLI=$build/test/farmtools/farmcli
for f in "$AGENTD" "$SKCTL" "$SRV" "$CLI"; do
	[ -x "$f" ] || { echo "failfarm.sh: not built: $f (ninja -C $build)" >&2; exit 2; }
done
# shellcheck source=../test/cluster/lib.sh
source "$src/test/cluster/lib.sh"
VIP=10.99.0.60
MOD=farm
declare -a NRUN

sk_cluster_init 3 --client || { echo "failfarm.sh: cluster init failed" >&2; exit 1; }
(umask 077 && head -c 32 /dev/urandom | base64 >"$SK_TMP/secret") || exit 1
hb=
[ -n "$HB_INTERVAL_MS$HB_TIMEOUT_MS" ] &&
	hb=", \"heartbeat\": { \"interval_ms\": ${HB_INTERVAL_MS:-200}, \"timeout_ms\": ${HB_TIMEOUT_MS:-800} }"
for i in 1 2 3; do
	r=${SK_ROOT[$i]}
	md=$r/var/lib/steadykit/modules/$MOD
	mkdir -p "$md/bin" "$r/sys/fs/bpf" || exit 1
	mount -t bpf bpf "$r/sys/fs/bpf" && sk_track_mount "$r/sys/fs/bpf" || exit 1
	install -m 0600 "$SK_TMP/secret" "$r/etc/steadykit/secret" || exit 1
	cat >"$r/etc/steadykit/cluster.json" <<-EOF
	{ "cluster": "benchfarm", "secret_file": "/etc/steadykit/secret", "networks": ["lan"],
	  "nodes": [ { "name": "node1", "id": 1, "addresses": { "lan": "${SK_IP[1]}" } },
	             { "name": "node2", "id": 2, "addresses": { "lan": "${SK_IP[2]}" } },
	             { "name": "node3", "id": 3, "addresses": { "lan": "${SK_IP[3]}" } } ]$hb }
	EOF
	cat >"$md/userconfig.json" <<-EOF
	{ "name": "$MOD", "id": 2, "kind": "farm", "nodes": [ "node1", "node2", "node3" ],
	  "vip": { "addr": "$VIP", "prefix": 32, "interface": "eth0", "mac": "02:53:4b:00:00:02",
	           "rule": "client", "ports": [80] },
	  "scripts": { "start_both": { "timeout_s": 10 }, "stop_both": { "timeout_s": 10 } } }
	EOF
	cat >"$md/bin/start_both" <<-EOF
	#!/bin/sh
	: >"\$SK_STATE_DIR/farmsrv.log"
	"$SRV" --name "\$SK_NODE" --bind "\$SK_VIP" --port 80 >>"\$SK_STATE_DIR/farmsrv.log" 2>&1 </dev/null &
	echo \$! >"\$SK_STATE_DIR/farmsrv.pid"
	for i in \$(seq 50); do grep -q listening "\$SK_STATE_DIR/farmsrv.log" && exit 0; sleep 0.1; done
	exit 1
	EOF
	printf '#!/bin/sh\n[ -f "$SK_STATE_DIR/farmsrv.pid" ] && kill "$(cat "$SK_STATE_DIR/farmsrv.pid")" 2>/dev/null\nexit 0\n' \
		>"$md/bin/stop_both"
	chmod 0755 "$md/bin/start_both" "$md/bin/stop_both" || exit 1
	NRUN[$i]=0
done
SRCS=
for i in $(seq 101 164); do
	sk_client ip addr add "10.99.0.$i/24" dev eth0 || exit 1
	SRCS+="${SRCS:+,}10.99.0.$i"
done

start_agent() {
	NRUN[$1]=$((NRUN[$1] + 1))
	local pid # in a command substitution: its kill -9 is not reported as this shell's job
	pid=$(sk_spawn "$1" "agent$1.${NRUN[$1]}" "$AGENTD" --root "${SK_ROOT[$1]}" --node "node$1") &&
		[ -n "$pid" ]
}
code() { local rc=0; timeout 10 "$SKCTL" --root "${SK_ROOT[$1]}" state -m "$MOD" -lq >/dev/null 2>&1 || rc=$?; echo "$rc"; }
all_up() { [ "$(code 1)" = 2 ] && [ "$(code 2)" = 2 ] && [ "$(code 3)" = 2 ]; }
# srcmap: "source node" per source, one connection from each, all at once
srcmap() {
	sk_client "$CLI" burst --vip "$VIP" --src "$SRCS" --n 64 --conc 64 --timeout-ms "$1" --map 1 \
		2>/dev/null | awk '$1 == "src" { print $2, $3 }' | sort
}
# served_without NODE: every source answered, none by NODE
served_without() { local m; m=$(srcmap 150); [ "$(grep -c ' node[123]$' <<<"$m")" = 64 ] && ! grep -q " $1\$" <<<"$m"; }
pct() {
	python3 - "$1" <<-'PY'
	import math, sys
	v = sorted(int(x) for x in open(sys.argv[1]).read().split())
	if not v:
	    print("n=0"); sys.exit(0)
	r = lambda q: v[max(0, math.ceil(q * len(v)) - 1)]
	print("n=%d p50=%d p95=%d min=%d max=%d" % (len(v), r(0.5), r(0.95), v[0], v[-1]))
	PY
}

echo "# farm: 3 nodes, one farm module (rule client, weights 100/100/100), 64 client sources; load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in 1 2 3; do start_agent "$i" || exit 1; done
sk_wait_for 60 all_up || { echo "failfarm.sh: the farm did not come UP in 60 s" >&2; exit 1; }
# the last node to join takes its buckets after the 1 s announce phase: the reference spread is
# the one two maps taken 1.2 s apart agree on
MAP0=$(srcmap 2000)
for ((i = 0; i < 20; i++)); do
	sleep 1.2
	m=$(srcmap 2000)
	[ "$m" = "$MAP0" ] && ! grep -q ' none$' <<<"$m" && break
	MAP0=$m
done
echo "# spread: $(awk '{ print $2 }' <<<"$MAP0" | sort | uniq -c | tr '\n' ' ')"
ALL=$SK_TMP/farm.ms
: >"$ALL"
failed=0 timeouts=0
for ((run = 1; run <= RUNS; run++)); do
	k=$(( (run - 1) % 3 + 1 ))
	t0=$(date +%s%N)
	# shellcheck disable=SC2046
	kill -KILL $(ip netns pids "${SK_NS[$k]}") 2>/dev/null
	ms=
	while [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt $((MAX_S * 1000)) ]; do
		if served_without "node$k"; then
			ms=$(( ($(date +%s%N) - t0) / 1000000 ))
			break
		fi
		sleep 0.02
	done
	st=ok
	[ -n "$ms" ] || { ms=$((MAX_S * 1000)); st=timeout; timeouts=$((timeouts + 1)); }
	echo "$ms" >>"$ALL"
	printf 'farm     run %2d: node%d killed  %6d ms  %s\n' "$run" "$k" "$ms" "$st"
	# restore: the node's agent again, UP everywhere, every source back on its original node
	start_agent "$k" || { failed=1; break; }
	back() { all_up && [ "$(srcmap 1000)" = "$MAP0" ]; }
	sk_wait_for 60 back || { echo "failfarm.sh: node$k did not take its sources back in 60 s" >&2; failed=1; break; }
done
echo "farm: $(pct "$ALL") timeouts=$timeouts"
[ -n "$OUT" ] && cat "$ALL" >>"$OUT"
exit "$failed"
