#!/usr/bin/env bash
# examples/demo/demo.sh: a live two-node mirror in network namespaces, run by the agents themselves —
# replicated directory, virtual IP, an application behind it, and a failover nobody scripted.
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
sk_cluster_init 2 --client || exit 1
echo "   node1 ${SK_NS[1]} ${SK_IP[1]}   node2 ${SK_NS[2]} ${SK_IP[2]}   client $SK_CLIENT_NS $SK_CLIENT_IP"

VIP=10.99.0.50
DATA=/srv/mirror/data
say "The same configuration on both nodes (each node's files live under its own --root)"
(umask 077 && head -c 32 /dev/urandom | base64 >"$SK_TMP/secret")
for i in 1 2; do
	r=${SK_ROOT[$i]}
	mkdir -p "$r/etc/steadykit" "$r/var/lib/steadykit/modules/mirror/bin" "$r$DATA"
	install -m 0600 "$SK_TMP/secret" "$r/etc/steadykit/secret"
	cat >"$r/etc/steadykit/cluster.json" <<-EOF
	{
	  "cluster": "demo",
	  "secret_file": "/etc/steadykit/secret",
	  "networks": ["lan"],
	  "nodes": [
	    { "name": "node1", "id": 1, "addresses": { "lan": "${SK_IP[1]}" } },
	    { "name": "node2", "id": 2, "addresses": { "lan": "${SK_IP[2]}" } }
	  ],
	  "heartbeat": { "interval_ms": 100, "timeout_ms": 400 }
	}
	EOF
	cat >"$r/var/lib/steadykit/modules/mirror/userconfig.json" <<-EOF
	{
	  "name": "mirror",
	  "id": 1,
	  "kind": "mirror",
	  "nodes": ["node1", "node2"],
	  "vip": { "addr": "$VIP", "prefix": 24, "interface": "eth0" },
	  "replication": { "dirs": ["$DATA"], "mode": "sync" },
	  "scripts": { "start_prim": { "timeout_s": 30 }, "stop_prim": { "timeout_s": 30 } }
	}
	EOF
	cp examples/mirror/bin/start_prim examples/mirror/bin/stop_prim "$r/var/lib/steadykit/modules/mirror/bin/"
	sk_track_mount "$r$DATA"
done
echo "   cluster.json: two nodes, heartbeats every 100 ms, a node is dead after 400 ms of silence"
echo "   module 'mirror': replicate $DATA, VIP $VIP; bin/start_prim starts a web server on the VIP"
D1=${SK_ROOT[1]}$DATA
D2=${SK_ROOT[2]}$DATA
ctl() { local n=$1; shift; "$SKCTL" --root "${SK_ROOT[$n]}" "$@"; }
code() { local rc=0; ctl "$1" state -m mirror -lq 2>/dev/null || rc=$?; echo "$rc"; }
primary_is() { [ "$(code "$1")" = 3 ] || [ "$(code "$1")" = 2 ]; }
both_up() { { [ "$(code 1)" = 3 ] && [ "$(code 2)" = 4 ]; } || { [ "$(code 2)" = 3 ] && [ "$(code 1)" = 4 ]; }; }

say "Starting one skagentd per node; they find each other and choose the primary"
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

if [ "${SK_DEMO_WAIT:-1}" = 1 ] && [ -t 0 ]; then
	say "The cluster is live: node1 ${SK_NS[1]}, node2 ${SK_NS[2]}, client $SK_CLIENT_NS (nsenter --net=/run/netns/NAME)"
	echo "   try: $SKCTL --root ${SK_ROOT[1]} state    |   $SKCTL --root ${SK_ROOT[$S]} swap -m mirror"
	read -r -p "   press Enter to tear it down " _
fi
say "Cleaning up"
