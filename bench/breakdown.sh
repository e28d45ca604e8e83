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
#   - OPS creates of 4 KiB files in a new directory (open O_CREAT|O_EXCL, write, close): the open's and
#     the write's stage p50s;
# Environment: SKFUSED_STAGES=0 (only the application's p50s: what the stamps cost, for an A/B),
# SK_BUILD (default <repo>/build), OPS (2000), DD_MIB (256; 0 skips), WORK (a fresh
# directory under /tmp or /var/tmp, default /var/tmp/sk-breakdown-PID; the data lives there),
# SYNC (fdatasync, or fsync as the shared harness's fio does), SCRATCH (unset: the data in WORK;
# loop: on a fresh journaled ext4 image of 2 GiB in WORK, loop-mounted with direct I/O as the shared
# harness's SCRATCH=loop, both copies and both state directories on it; loop2: the secondary's copy
# on a second such image, to tell the data path from two copies sharing one disk and one journal).
# With SCRATCH, the write+sync table also gives the journal commits per sync of each image.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=image.sh
source "$HERE/image.sh"
SK_BUILD=${SK_BUILD:-$HERE/../build}
OPS=${OPS:-2000}
DD_MIB=${DD_MIB:-256}
own_work=0
[ -n "${WORK:-}" ] || { WORK=/var/tmp/sk-breakdown-$$; own_work=1; }
case $WORK in /tmp/?* | /var/tmp/?*) ;; *) echo "WORK must be under /tmp or /var/tmp" >&2; exit 2 ;; esac
NS_A=skbdA$$ NS_B=skbdB$$ IP_A=10.213.$(($$ % 250)).1 IP_B=10.213.$(($$ % 250)).2
export SK_BUILD SKFUSED_STAGES=${SKFUSED_STAGES:-1} PB_NS_A=$NS_A PB_NS_B=$NS_B PB_IP_B=$IP_B SK_BENCH_LOG=$WORK/bench.log

SCRATCH=${SCRATCH:-}
loops=() mnts=()
cleanup() {
	bash "$HERE/peers-hook.sh" teardown "$WORK/sk" >/dev/null 2>&1
	ip netns del "$NS_A" 2>/dev/null
	ip netns del "$NS_B" 2>/dev/null
	for ((i = ${#mnts[@]} - 1; i >= 0; i--)); do
		mountpoint -q "${mnts[$i]}" && { umount "${mnts[$i]}" 2>/dev/null || umount -l "${mnts[$i]}"; }
	done
	for l in "${loops[@]}"; do losetup -d "$l"; done
	rm -f "$WORK"/img?
	rm -rf "$WORK/native" "$WORK/sk" "$WORK/data"
	[ "$own_work" = 0 ] || rm -rf "$WORK"  # a directory of its own: the daemons' log tails go with it
}
trap cleanup EXIT INT TERM
mkdir -p "$WORK/sk" "$WORK/native" || exit 1
# scratch IMG DIR: a fresh journaled ext4 at DIR (the shared harness's SCRATCH=loop); its jbd2 name into jbd
scratch() {
	local dev
	dev=$(bench_image "$1" 2G) || return 1
	loops+=("$dev")
	mkdir -p "$2" && mount -o noatime "$dev" "$2" || return 1
	mnts+=("$2")
	jbd+=("$(basename "$dev")-8")
}
jbd=() # the images' jbd2 names: /proc/fs/jbd2/NAME/info
case $SCRATCH in
'') ;;
loop | loop2)
	# peers-hook.sh puts both copies and state directories in $PB_ROOT/data when it is a mount point
	export PB_ROOT=$WORK
	scratch "$WORK/img1" "$WORK/data" || { echo "cannot set up the loop image" >&2; exit 1; }
	mkdir -p "$WORK/data/native" && rm -rf "$WORK/native" && ln -s "$WORK/data/native" "$WORK/native"
	if [ "$SCRATCH" = loop2 ]; then # where the hook will put the secondary's copy
		scratch "$WORK/img2" "$WORK/data/steadykit-sk/sec" ||
			{ echo "cannot set up the second loop image" >&2; exit 1; }
	fi
	;;
*) echo "SCRATCH must be loop or loop2" >&2; exit 2 ;;
esac
export SK_JBD2="${jbd[*]}" SYNC=${SYNC:-fdatasync}
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
rd=$WORK/sk
[ -f "$WORK/sk/realdir" ] && rd=$(cat "$WORK/sk/realdir")
pid_p=$(awk '$3 == "prim" { print $1 }' "$rd/pids")
pid_s=$(awk '$3 == "sec" { print $1 }' "$rd/pids")
echo "load $(cut -d' ' -f1-3 /proc/loadavg); skfused $SK_BUILD/fused/skfused; 4 KiB RTT p50 $rtt us"
[ -n "$SCRATCH" ] && echo "data on fresh journaled ext4 loop images (SCRATCH=$SCRATCH: ${jbd[*]}); sync call: $SYNC"
python3 "$HERE/breakdown.py" "$mnt" "$WORK/native" "$rd/ctl-prim.sock" "$rd/ctl-sec.sock" \
	"$pid_p" "$pid_s" "$OPS" "$DD_MIB" "$rtt"
rc=$?
echo "load $(cut -d' ' -f1-3 /proc/loadavg) at the end"
exit $rc
