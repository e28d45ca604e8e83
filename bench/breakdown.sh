#!/usr/bin/env bash
# bench/breakdown.sh: where the time of a 4 KiB write and of a write+fsync goes in skfused, and CPU per GiB per node.
#
#   bash bench/breakdown.sh
#
# Starts skfused's two roles with SKFUSED_STAGES=1 (docs/skfused.md, status "stages") in two network
# namespaces joined by a veth (bench/peers-hook.sh), measures the 4 KiB round trip on that link
# (sk-pingpong), then:
#   - OPS pwrite()s of 4 KiB at random offsets of a 16 MiB file through the mount, then OPS of them
#     each followed by fdatasync(): the application's p50 and, from the two statuses' histograms
#     (after minus before), each stage's p50 and mean on the primary and on the secondary;
#   - dd bs=1M conv=fsync of DD_MIB MiB into a plain directory (native) and through the mount:
#     CPU-seconds per GiB of dd itself (user+system, its kernel time included), of the primary
#     skfused and of the secondary skfused (/proc/PID/stat), and of the whole machine (/proc/stat).
#     "primary node" = dd + the primary skfused: what one node spends where the peer has its own CPUs.
# Environment: SKFUSED_STAGES=0 (only the application's p50s: what the stamps cost, for an A/B),
# SK_BUILD (default <repo>/build), OPS (2000), DD_MIB (256; 0 skips), WORK (a fresh
# directory under /tmp or /var/tmp, default /var/tmp/sk-breakdown-PID; the data lives there).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SK_BUILD=${SK_BUILD:-$HERE/../build}
OPS=${OPS:-2000}
DD_MIB=${DD_MIB:-256}
own_work=0
[ -n "${WORK:-}" ] || { WORK=/var/tmp/sk-breakdown-$$; own_work=1; }
case $WORK in /tmp/?* | /var/tmp/?*) ;; *) echo "WORK must be under /tmp or /var/tmp" >&2; exit 2 ;; esac
NS_A=skbdA$$ NS_B=skbdB$$ IP_A=10.213.$(($$ % 250)).1 IP_B=10.213.$(($$ % 250)).2
export SK_BUILD SKFUSED_STAGES=${SKFUSED_STAGES:-1} PB_NS_A=$NS_A PB_NS_B=$NS_B PB_IP_B=$IP_B SK_BENCH_LOG=$WORK/bench.log

cleanup() {
	bash "$HERE/peers-hook.sh" teardown "$WORK/sk" >/dev/null 2>&1
	ip netns del "$NS_A" 2>/dev/null
	ip netns del "$NS_B" 2>/dev/null
	rm -rf "$WORK/native" "$WORK/sk"
	[ "$own_work" = 0 ] || rm -rf "$WORK"  # a directory of its own: the daemons' log tails go with it
}
trap cleanup EXIT INT TERM
mkdir -p "$WORK/sk" "$WORK/native" || exit 1
ip netns add "$NS_A" && ip netns add "$NS_B" &&
	ip link add "${NS_A}v" netns "$NS_A" type veth peer name "${NS_B}v" netns "$NS_B" &&
	ip -n "$NS_A" addr add "$IP_A/24" dev "${NS_A}v" && ip -n "$NS_B" addr add "$IP_B/24" dev "${NS_B}v" &&
	for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up && ip -n "$ns" link set "${ns}v" up || exit 1; done ||
	{ echo "cannot set up the namespaces" >&2; exit 1; }

pp=$SK_BUILD/bench/sk-pingpong
nsenter --net="/run/netns/$NS_B" -- "$pp" serve "$IP_B" 7432 1 60 >/dev/null 2>&1 &
spid=$!
sleep 0.3
rtt=$(nsenter --net="/run/netns/$NS_A" -- "$pp" ping "$IP_B" 7432 4096 5000 2>/dev/null | sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p')
wait "$spid" 2>/dev/null
[ -n "$rtt" ] || { echo "sk-pingpong failed" >&2; exit 1; }

out=$(bash "$HERE/peers-hook.sh" setup "$WORK/sk") || { echo "skfused setup failed" >&2; exit 1; }
mnt=$(tail -n 1 <<<"$out")
pid_p=$(awk '$3 == "prim" { print $1 }' "$WORK/sk/pids")
pid_s=$(awk '$3 == "sec" { print $1 }' "$WORK/sk/pids")
echo "load $(cut -d' ' -f1-3 /proc/loadavg); skfused $SK_BUILD/fused/skfused; 4 KiB RTT p50 $rtt us"
python3 "$HERE/breakdown.py" "$mnt" "$WORK/native" "$WORK/sk/ctl-prim.sock" "$WORK/sk/ctl-sec.sock" \
	"$pid_p" "$pid_s" "$OPS" "$DD_MIB" "$rtt"
rc=$?
echo "load $(cut -d' ' -f1-3 /proc/loadavg) at the end"
exit $rc
