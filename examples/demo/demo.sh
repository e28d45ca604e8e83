#!/usr/bin/env bash
# examples/demo/demo.sh: a live two-node mirror in network namespaces — replicated directory,
# virtual IP, an application behind it, and a failover — built from this checkout.
#
#   bash examples/demo/demo.sh            # installs packages, builds, runs, waits for Enter, cleans up
#   SK_DEMO_WAIT=0 bash examples/demo/demo.sh   # do not wait at the end
#
# The agent (skagentd) that will take these decisions by itself is the next piece;
# until it lands this script plays its part, step by step, with the real daemons.
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
SKFUSED=$src/build/fused/skfused

export SK_SRC=$src SK_BUILD=$src/build
# shellcheck source=../../test/cluster/lib.sh
source test/cluster/lib.sh
say "Two nodes and a client in network namespaces, on one bridge"
sk_cluster_init 2 --client || exit 1
echo "   node1 ${SK_NS[1]} ${SK_IP[1]}   node2 ${SK_NS[2]} ${SK_IP[2]}   client $SK_CLIENT_NS $SK_CLIENT_IP"

VIP=10.99.0.50
PORT=7400
secret=$SK_TMP/secret
head -c 32 /dev/urandom >"$secret"
chmod 600 "$secret"
for i in 1 2; do mkdir -p "${SK_ROOT[$i]}/data"; done
D1=${SK_ROOT[1]}/data
D2=${SK_ROOT[2]}/data

fused() {  # fused NODE ROLE ARGS...: start skfused on a node
	local n=$1 role=$2
	shift 2
	sk_spawn "$n" "skfused-n$n-$role" "$SKFUSED" --role "$role" --dir "${SK_ROOT[$n]}/data" \
		--secret "$secret" --state "${SK_ROOT[$n]}/var/lib/steadykit/state" \
		--ctl "${SK_ROOT[$n]}/run/steadykit/fused.sock" --node-id "$n" "$@"
}
status() { echo '{"cmd":"status"}' | nc -U -q1 "${SK_ROOT[$1]}/run/steadykit/fused.sock" 2>/dev/null; }
peer_is() { status "$1" | grep -q "\"peer\": *\"$2\""; }
app() {  # the "application": a web server publishing the mirrored directory on the VIP
	sk_spawn "$1" "app-n$1" python3 -m http.server 80 --bind "$VIP" --directory "${SK_ROOT[$1]}/data"
}

say "node2: skfused secondary (its copy is read-only to applications)"
_pid=$(fused 2 secondary --listen "${SK_IP[2]}:$PORT") || exit 1
sk_wait_for 10 test -S "${SK_ROOT[2]}/run/steadykit/fused.sock" || { echo "secondary did not start"; exit 1; }
say "node1: skfused primary, mounted over $D1"
_pid=$(fused 1 primary --peer "${SK_IP[2]}:$PORT") || exit 1
sk_track_mount "$D1"
sk_wait_for 10 peer_is 1 connected || { echo "primary did not connect"; cat "$SK_TMP"/skfused-n1-primary.log; exit 1; }
run status 1

say "node1 takes the virtual IP $VIP and starts the application"
sk_in 1 ip addr add "$VIP/24" dev eth0
_pid=$(app 1) || exit 1
sk_wait_for 10 sk_client curl -fsS -o /dev/null "http://$VIP/" || { echo "application did not come up"; exit 1; }

say "The application writes into the mirrored directory on node1"
echo "written on node1 at $(date +%T)" >"$D1/hello.txt"
mkdir -p "$D1/orders"
for i in $(seq 1 20); do echo "order $i" >"$D1/orders/$i.txt"; done
run sk_client curl -fsS "http://$VIP/hello.txt"
say "node2 already has every byte (write() returned only after node2 wrote it)"
run cat "$D2/hello.txt"
run ls "$D2/orders"
run sh -c "echo tamper > '$D2/hello.txt'"

say "FAILURE: node1 dies (kill -9 of its daemons, its link goes down)"
t0=$(date +%s%N)
for p in $(awk '$3 ~ /-n1-|app-n1/ {print $1}' "$SK_TMP/.sk/pids"); do sk_kill9 "$p" 2>/dev/null; done
sk_link_down 1
umount -l "$D1" 2>/dev/null

say "node2 becomes primary: its skfused restarts as primary (alone), takes the VIP, starts the application"
for p in $(awk '$3 ~ /-n2-secondary/ {print $1}' "$SK_TMP/.sk/pids"); do sk_term "$p"; done
sk_wait_for 5 sh -c "! mountpoint -q '$D2'"
_pid=$(fused 2 primary --peer "${SK_IP[1]}:$PORT") || exit 1
sk_track_mount "$D2"
sk_wait_for 10 mountpoint -q "$D2"
sk_in 2 ip addr add "$VIP/24" dev eth0
sk_in 2 arping -c 1 -U -I eth0 "$VIP" >/dev/null 2>&1 || true
_pid=$(app 2) || exit 1
sk_wait_for 10 sk_client curl -fsS -o /dev/null "http://$VIP/hello.txt"
t1=$(date +%s%N)
echo "   the client reaches the application again after $(( (t1 - t0) / 1000000 )) ms"
run sk_client curl -fsS "http://$VIP/hello.txt"
run sk_client curl -fsS "http://$VIP/orders/20.txt"
echo "written on node2 after the failover" >"$D2/after.txt"
run status 2

if [ "${SK_DEMO_WAIT:-1}" = 1 ] && [ -t 0 ]; then
	say "The cluster is live: node1 ${SK_NS[1]}, node2 ${SK_NS[2]}, client $SK_CLIENT_NS (nsenter --net=/run/netns/NAME)"
	read -r -p "   press Enter to tear it down " _
fi
say "Cleaning up"
