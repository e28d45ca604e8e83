#!/usr/bin/env bash
# examples/demo/demo.sh: a live two-node mirror in network namespaces, run by the agents themselves —
# replicated directory, virtual IP, an application behind it, and a failover nobody scripted; then a
# three-node farm sharing one virtual IP, one node killed, its share of the clients moving.
#
#   bash examples/demo/demo.sh            # installs packages, builds, runs, waits for Enter, cleans up
#   SK_DEMO_WAIT=0 bash examples/demo/demo.sh   # do not wait at the end
#
# This script only sets the stage (configuration, starting one skagentd per node) and then
# breaks things. Every decision — which node is primary, taking the VIP, starting the web
# server, the failover — is taken by skagentd; skctl shows what they decided and why.
set -uo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$src"
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it creates namespaces and FUSE mounts)" >&2; exit 2; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '   $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/     /'; }

say "Installing what is missing and building"
bash test/deps.sh || exit 1
[ -d build ] || meson setup build >/dev/null || exit 1
ninja -C build >/dev/null || { ninja -C build; exit 1; }
AGENTD=$src/build/agent/skagentd
SKCTL=$src/build/cli/skctl

export SK_SRC=$src SK_BUILD=$src/build
# shellcheck source=../../test/cluster/lib.sh
source test/cluster/lib.sh
say "Two nodes and a client in network namespaces, on one bridge"
sk_cluster_init 3 --client || exit 1 # node3 joins for the farm part
echo "   node1 ${SK_NS[1]} ${SK_IP[1]}   node2 ${SK_NS[2]} ${SK_IP[2]}   client $SK_CLIENT_NS $SK_CLIENT_IP"

VIP=10.99.0.50
DATA=/srv/mirror/data
say "The same configuration on both nodes and on the witness (each node's files live under its own --root)"
(umask 077 && head -c 32 /dev/urandom | base64 >"$SK_TMP/secret")
# the module, written once and shipped as a module archive (skctl module install on each node)
mkdir -p "$SK_TMP/mirror/bin"
cat >"$SK_TMP/mirror/userconfig.json" <<EOF
{
  "name": "mirror",
  "id": 1,
  "kind": "mirror",
  "nodes": ["node1", "node2"],
  "vip": { "addr": "$VIP", "prefix": 24, "interface": "eth0" },
  "replication": { "dirs": ["$DATA"], "mode": "sync", "latency_budget_ms": 4000 },
  "scripts": { "start_prim": { "timeout_s": 30 }, "stop_prim": { "timeout_s": 30 } }
}
EOF
cp examples/mirror/bin/start_prim examples/mirror/bin/stop_prim "$SK_TMP/mirror/bin/"
tar czf "$SK_TMP/mirror.tar.gz" -C "$SK_TMP" mirror
for i in 1 2 3; do
	r=${SK_ROOT[$i]}
	mkdir -p "$r/etc/steadykit" "$r$DATA"
	install -m 0600 "$SK_TMP/secret" "$r/etc/steadykit/secret"
	cat >"$r/etc/steadykit/cluster.json" <<-EOF
	{
	  "cluster": "demo",
	  "secret_file": "/etc/steadykit/secret",
	  "networks": ["lan"],
	  "nodes": [
	    { "name": "node1", "id": 1, "addresses": { "lan": "${SK_IP[1]}" } },
	    { "name": "node2", "id": 2, "addresses": { "lan": "${SK_IP[2]}" } },
	    { "name": "node3", "id": 3, "role": "witness", "addresses": { "lan": "${SK_IP[3]}" } }
	  ],
	  "heartbeat": { "interval_ms": 100, "timeout_ms": 400 },
	  "witness": { "lease_ms": 1000 }
	}
	EOF
	[ "$i" = 3 ] && continue # the witness runs no module
	out=$("$SKCTL" --root "$r" module install "$SK_TMP/mirror.tar.gz" 2>&1) ||
		{ echo "$out"; exit 1; }
	echo "   node$i: $(sed -n 1p <<<"$out" | sed "s|$r||")"
	sk_track_mount "$r$DATA"
done
echo "   cluster.json: two nodes, heartbeats every 100 ms, a node is dead after 400 ms of silence;"
echo "   node3 is the lease witness: a primary whose peer is gone serves only while it holds node3's"
echo "   1 s lease, and its skfused refuses writes (EROFS) by itself once the lease has run out"
echo "   module 'mirror': replicate $DATA, VIP $VIP; bin/start_prim starts a web server on the VIP"
D1=${SK_ROOT[1]}$DATA
D2=${SK_ROOT[2]}$DATA
ctl() { local n=$1; shift; "$SKCTL" --root "${SK_ROOT[$n]}" "$@"; }
code() { local rc=0; ctl "$1" state -m mirror -lq 2>/dev/null || rc=$?; echo "$rc"; }
primary_is() { [ "$(code "$1")" = 3 ] || [ "$(code "$1")" = 2 ]; }
both_up() { { [ "$(code 1)" = 3 ] && [ "$(code 2)" = 4 ]; } || { [ "$(code 2)" = 3 ] && [ "$(code 1)" = 4 ]; }; }

say "Starting the lease witness on node3, then one skagentd per node; they find each other and choose the primary"
_pid=$(sk_spawn 3 "skagentd-witness" "$AGENTD" --root "${SK_ROOT[3]}" --node node3 --witness) || exit 1
for i in 1 2; do
	_pid=$(sk_spawn "$i" "skagentd-n$i" "$AGENTD" --root "${SK_ROOT[$i]}" --node "node$i") || exit 1
done
sk_wait_for 30 both_up || { echo "the agents did not settle"; tail -20 "$SK_TMP"/skagentd-n1.log; exit 1; }
run ctl 1 state
run ctl 2 state -m mirror
P=1; primary_is 1 || P=2
S=$((3 - P))
DP=${SK_ROOT[$P]}$DATA
DS=${SK_ROOT[$S]}$DATA

in_sync() { ctl "$S" state -m mirror --json | grep -q '"uptodate":true'; }
sk_wait_for 20 in_sync || echo "   (node$S is not in sync yet: it would refuse to take over with an outdated copy)"

say "The application writes into the mirrored directory on node$P"
echo "written on node$P at $(date +%T)" >"$DP/hello.txt"
mkdir -p "$DP/orders"
for i in $(seq 1 20); do echo "order $i" >"$DP/orders/$i.txt"; done
sk_wait_for 10 sk_client curl -fsS -o /dev/null "http://$VIP/hello.txt"
run sk_client curl -fsS "http://$VIP/hello.txt"
say "node$S already has every byte (write() returned only after node$S wrote it)"
run cat "$DS/hello.txt"
run ls "$DS/orders"
run sh -c "echo tamper > '$DS/hello.txt'"

say "FAILURE: node$P dies (kill -9 of every process in its namespace: agent, skfused, web server)"
t0=$(date +%s%N)
# shellcheck disable=SC2046
kill -KILL $(ip netns pids "${SK_NS[$P]}") 2>/dev/null
echo "   nothing else is done by this script: node$S's agent notices the silence and takes over"
echo "   once node3 grants it the lease (node$P's lease must have run out first, + 200 ms: about 1-1.2 s after the kill)"
sk_wait_for 20 sk_client curl -fsS --max-time 0.5 -o /dev/null "http://$VIP/hello.txt"
t1=$(date +%s%N)
echo "   the client reaches the application again after $(( (t1 - t0) / 1000000 )) ms"
run sk_client curl -fsS "http://$VIP/hello.txt"
run sk_client curl -fsS "http://$VIP/orders/20.txt"
run ctl "$S" state -m mirror
say "Why? The survivor's own account, phase by phase"
run ctl "$S" why -m mirror
echo "written on node$S after the failover" >"$DS/after.txt"
run sk_client curl -fsS "http://$VIP/after.txt"

say "node$P comes back: its agent sees node$S primary with newer data and rejoins as SECOND"
_pid=$(sk_spawn "$P" "skagentd-n$P-again" "$AGENTD" --root "${SK_ROOT[$P]}" --node "node$P") || exit 1
sk_wait_for 30 both_up || echo "   (node$P did not rejoin in 30 s; see $SK_TMP/skagentd-n$P-again.log)"
sk_wait_for 15 test -f "$DP/after.txt"
run ctl "$P" state -m mirror
run cat "$DP/after.txt"

say "FARM: three nodes serve one VIP together; an XDP filter on each spreads the clients"
# Its own small cluster (own --root under each node, own ports) beside the mirror's; module farm
# from examples/farm: weights 100/100/200, examples/farm/bin/start_both = a web server answering
# with its node's name. The agents attach the filter, put the VIP on lo, and agree on the table.
FVIP=10.99.0.60
FCLI=$src/build/test/farmtools/farmcli
declare -a FROOT FAG
for i in 1 2 3; do
	FROOT[$i]=${SK_ROOT[$i]}/farm
	r=${FROOT[$i]}
	mkdir -p "$r/etc/steadykit" "$r/var/lib/steadykit/modules/farm/bin" "$r/run/steadykit" "$r/sys/fs/bpf"
	mount -t bpf bpf "$r/sys/fs/bpf" && sk_track_mount "$r/sys/fs/bpf"
	install -m 0600 "$SK_TMP/secret" "$r/etc/steadykit/secret"
	cat >"$r/etc/steadykit/cluster.json" <<-EOF
	{ "cluster": "demofarm", "secret_file": "/etc/steadykit/secret", "networks": ["lan"],
	  "ports": { "agent": 7720, "heartbeat": 7721 },
	  "nodes": [ { "name": "node1", "id": 1, "addresses": { "lan": "${SK_IP[1]}" } },
	             { "name": "node2", "id": 2, "addresses": { "lan": "${SK_IP[2]}" } },
	             { "name": "node3", "id": 3, "addresses": { "lan": "${SK_IP[3]}" } } ],
	  "heartbeat": { "interval_ms": 100, "timeout_ms": 400 } }
	EOF
	# the example without its dependency on a mirror module (node3 has none here)
	python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); m["checkers"] = [c for c in m["checkers"] if c["type"] != "module"]; json.dump(m, open(sys.argv[2], "w"), indent=2)' \
		examples/farm/userconfig.json "$r/var/lib/steadykit/modules/farm/userconfig.json"
	cp examples/farm/bin/start_both examples/farm/bin/stop_both "$r/var/lib/steadykit/modules/farm/bin/"
done
SRCS=
for i in $(seq 101 164); do sk_client ip addr add "10.99.0.$i/24" dev eth0; SRCS+="${SRCS:+,}10.99.0.$i"; done
echo "   module 'farm' on node1, node2, node3 (weights 100, 100, 200), VIP $FVIP; the client has 64 addresses"
fctl() { local n=$1; shift; "$SKCTL" --root "${FROOT[$n]}" "$@"; }
fcode() { local rc=0; fctl "$1" state -m farm -lq 2>/dev/null || rc=$?; echo "$rc"; }
farm_up() { [ "$(fcode 1)" = 2 ] && [ "$(fcode 2)" = 2 ] && [ "$(fcode 3)" = 2 ]; }
# spread: one connection from each of the 64 client addresses; who answered
burst() { sk_client "$FCLI" burst --vip "$FVIP" --src "$SRCS" --n 64 --conc 64 --timeout-ms "$1" --map 1 2>/dev/null; }
spread() { burst 2000 | awk '$1 == "src" { n[$3]++ } END { for (k in n) print k ": " n[k] }' | sort | paste -sd ' '; }
# every address answered (farmcli exits 0), none by node3
all_back() { local out; out=$(burst 500) && ! grep -q '^src .* node3$' <<<"$out"; }
for i in 1 2 3; do
	FAG[$i]=$(sk_spawn "$i" "farm-agent-n$i" "$AGENTD" --root "${FROOT[$i]}" --node "node$i") || exit 1
done
sk_wait_for 30 farm_up || { echo "the farm did not come up"; tail -20 "$SK_TMP"/farm-agent-n1.log; exit 1; }
run fctl 1 state -m farm
sleep 2 # the last node to join takes its buckets after a 1 s announce
echo "   64 client addresses, one connection each, through $FVIP (who answered):"
echo "     $(spread)"

say "FAILURE: node3's farm agent and web server die (kill -9); node1 and node2 are told by nobody"
t0=$(date +%s%N)
kill -KILL "${FAG[3]}" "$(cat "${FROOT[3]}/var/lib/steadykit/state/farm/app.pid" 2>/dev/null)" 2>/dev/null
sk_wait_for 20 all_back
echo "   every client address served again after $(( ($(date +%s%N) - t0) / 1000000 )) ms:"
echo "     $(spread)"
echo "   node1's view (its module log):"
grep 'farm view' "${FROOT[1]}/var/lib/steadykit/state/farm/module.log" | tail -1 | sed 's/^/     /'

if [ "${SK_DEMO_WAIT:-1}" = 1 ] && [ -t 0 ]; then
	say "The cluster is live: node1 ${SK_NS[1]}, node2 ${SK_NS[2]}, client $SK_CLIENT_NS (nsenter --net=/run/netns/NAME)"
	echo "   try: $SKCTL --root ${SK_ROOT[1]} state    |   $SKCTL --root ${SK_ROOT[$S]} swap -m mirror"
	read -r -p "   press Enter to tear it down " _
fi
say "Cleaning up"
