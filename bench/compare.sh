#!/usr/bin/env bash
# bench/compare.sh: SteadyKit side by side with native, libfuse passthrough_ll and GlusterFS replica 2 (fio, medians).
#
#   bash bench/compare.sh deps        apt-get install fio glusterfs-server glusterfs-client (once)
#   bash bench/compare.sh [run]       set up every target, measure, print the table, tear down
#   bash bench/compare.sh teardown    clean up after a run that was killed (reads $WORK/state)
#   bash bench/compare.sh peer        host B of a two-host run (see bench/README.md)
#
# Targets (TARGETS, in this order by default):
#   native      a directory on the file system under $WORK (or on the SCRATCH=loop image)
#   fuse-ll     libfuse's example passthrough_ll with its default options: what FUSE alone costs
#   gluster-r2  a GlusterFS replica-2 volume, one glusterd + brick per side, FUSE client on side A
#   steadykit   skfused primary on side A (FUSE mount), secondary on side B (bench/peers-hook.sh)
# On one machine side A and side B are two network namespaces this script creates, joined by a veth
# with no route out. On two hosts (PEER_IP set) side B is another machine running `compare.sh peer`.
#
# Workloads (fio, ioengine=psync, fallocate=none; raw JSON kept):
#   seqwrite    1 MiB writes, SEQ_SIZE in all, end_fsync                          -> MB/s
#   randwrite   4 KiB random overwrites of an RW_FILE_SIZE file, fsync after each write,
#               RW_OPS writes or RW_RUNTIME seconds -> IOPS, write() p50/p99 (clat), fsync() p50/p99
#   smallfiles  sk-mkfiles: NFILES files of FILE_SIZE bytes in a new directory, then syncfs -> files/s
#   seqread     the seqwrite file in 1 MiB reads after sync, drop_caches and the target's cold step
#   cpu         dd bs=1M conv=fsync of DD_SIZE, CPU time of the whole machine from /proc/stat
#               (on one machine that includes side B)                          -> CPU-seconds per GiB
#   rtt         sk-pingpong, TCP_NODELAY round trips A -> B on the same link (64 B and 4 KiB)
# REPS repetitions; within each, every workload runs on every target before the next workload, and the
# target order rotates from one repetition to the next. Cells: median and +-half-range (max-min)/2.
# Output: stdout and $RESULTS_DIR/<timestamp>/ (table.txt, results.tsv, env.txt, raw/, logs/).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=image.sh
source "$HERE/image.sh"
REPO=$(cd "$HERE/.." && pwd)
SK_BUILD=${SK_BUILD:-$REPO/build}
WORK=${WORK:-/tmp/sk-compare}
RESULTS_DIR=${RESULTS_DIR:-/var/tmp/sk-compare-results}
TARGETS=${TARGETS:-native fuse-ll gluster-r2 steadykit}
RATIO_BASES=${RATIO_BASES:-native fuse-ll}
REPS=${REPS:-5}
SEQ_SIZE=${SEQ_SIZE:-256M}
RW_OPS=${RW_OPS:-2000}
RW_RUNTIME=${RW_RUNTIME:-20}
RW_FILE_SIZE=${RW_FILE_SIZE:-16M}
NFILES=${NFILES:-2000}
FILE_SIZE=${FILE_SIZE:-4096}
DD_SIZE=${DD_SIZE:-$SEQ_SIZE}
RTT_COUNT=${RTT_COUNT:-5000}
RTT_PORT=${RTT_PORT:-7431}
SCRATCH=${SCRATCH:-root}            # root: data under $WORK; loop: a fresh journaled ext4 image on a loop device
SCRATCH_SIZE=${SCRATCH_SIZE:-8G}
SETTLE_S=${SETTLE_S:-300}           # SCRATCH=root: start this long after the previous run deleted its files
FUSE_LL_OPTS=${FUSE_LL_OPTS:-}
GLUSTER_VOL=${GLUSTER_VOL:-skcmp}
GLUSTER_VOL_OPTS=${GLUSTER_VOL_OPTS:-}   # "key value,key value"
KEEP_DATA=${KEEP_DATA:-0}
PEER_IP=${PEER_IP:-}                # two hosts: side B's address (on host A)
LOCAL_IP=${LOCAL_IP:-}              # two hosts: this host's address as the other host reaches it
PEER_MAX_S=${PEER_MAX_S:-14400}     # `peer` serves at most this long
PEER_WORK=${PEER_WORK:-$WORK}       # two hosts: WORK on host B (its gluster brick is under it)
export SK_BUILD

case $WORK in /tmp/?* | /var/tmp/?*) ;; *) echo "WORK must be a directory under /tmp or /var/tmp" >&2; exit 2 ;; esac
STATE=$WORK/state
DATA=$WORK/data
MNT=$WORK/mnt
TOOLS=$WORK/tools
MKFILES=$SK_BUILD/bench/sk-mkfiles
PINGPONG=$SK_BUILD/bench/sk-pingpong
HOOK=$HERE/peers-hook.sh
FIO_FIXED=(--ioengine=psync --fallocate=none --output-format=json)

declare -A DIR=()       # target -> directory the workloads run in
ORDER=()                # targets, column order
IN_A=() IN_B=()         # command prefixes that enter side A's / side B's network namespace
NS_A='' NS_B='' IP_A='' IP_B=''
RES=''
CLEANING=0

say() { echo "[compare $(date -u +%T)] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ processes we started
# state/pids: "PID STARTTIME LABEL"; a PID counts as ours only while its start time matches.
pstart() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; set -- $s; echo "${20}"; }
track() { echo "$1 $(pstart "$1") $2" >>"$STATE/pids"; }
alive() { [ -n "$2" ] && [ "$(pstart "$1" 2>/dev/null)" = "$2" ]; }
stop() {  # stop PID STARTTIME LABEL
	local i
	alive "$1" "$2" || return 0
	kill -TERM "$1" 2>/dev/null
	for i in $(seq 100); do alive "$1" "$2" || return 0; sleep 0.1; done
	say "$3 (pid $1) ignored TERM for 10 s: KILL"
	kill -KILL "$1" 2>/dev/null
}
# Gluster's bricks and self-heal daemon are forked by our glusterd and re-parented to init; what marks
# them as ours is the private mount namespace each glusterd starts in (state/mntns: "INODE LABEL").
mntns_pids() {  # one find, not a stat per process: this runs in a loop on a busy machine
	find /proc -mindepth 3 -maxdepth 3 -path '/proc/[0-9]*/ns/mnt' -lname "mnt:\[$1\]" 2>/dev/null |
		awk -F/ '{ print $3 }'
}
stop_mntns() {  # stop_mntns INODE LABEL
	local pids i p
	pids=$(mntns_pids "$1")
	[ -n "$pids" ] || return 0
	say "stopping what $2 left running: $(echo $pids)"
	for p in $pids; do kill -TERM "$p" 2>/dev/null; done
	for i in $(seq 100); do [ -z "$(mntns_pids "$1")" ] && return 0; sleep 0.1; done
	for p in $(mntns_pids "$1"); do kill -KILL "$p" 2>/dev/null; done
}
wait_until() {  # wait_until SECONDS cmd...: poll every 0.1 s
	local n=$(($1 * 10)) i
	shift
	for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done
	return 1
}
unmount() {
	local i
	mountpoint -q "$1" || return 0
	for i in 1 2 3 4 5; do umount "$1" 2>/dev/null && return 0; sleep 1; done
	say "$1 still busy: lazy unmount"
	umount -l "$1"
}

# ------------------------------------------------------------------ cleanup (every exit path)
cleanup() {
	[ "$CLEANING" = 1 ] && return 0
	CLEANING=1
	[ -d "$STATE" ] || return 0
	say "cleanup"
	local m pid st label ino ns
	[ -f "$STATE/env" ] && source "$STATE/env"
	if [ -f "$STATE/steadykit" ]; then
		PB_NS_A=$NS_A PB_NS_B=$NS_B PB_IP_B=$IP_B SK_BENCH_LOG=$(cat "$STATE/steadykit") \
			timeout 120 bash "$HOOK" teardown "$DATA/steadykit" >&2 || say "steadykit teardown failed"
	fi
	if [ -f "$STATE/mounts" ]; then
		while read -r m; do unmount "$m"; done < <(tac "$STATE/mounts")
	fi
	if [ -f "$STATE/gluster" ] && [ -S "$WORK/gluster/A/run/glusterd.socket" ]; then
		say "stopping the gluster volume"
		gl A volume stop "$GLUSTER_VOL" >/dev/null 2>&1
		gl A volume delete "$GLUSTER_VOL" >/dev/null 2>&1
		[ -n "$PEER_IP" ] && gl A peer detach "$IP_B" >/dev/null 2>&1
	fi
	if [ -f "$STATE/pids" ]; then
		say "stopping the processes this run started"
		while read -r pid st label; do stop "$pid" "$st" "$label"; done < <(tac "$STATE/pids")
	fi
	if [ -f "$STATE/mntns" ]; then
		while read -r ino label; do stop_mntns "$ino" "$label"; done <"$STATE/mntns"
	fi
	if [ -f "$STATE/netns" ]; then
		while read -r ns; do
			# Only our namespaces: anything still inside was started by this run.
			for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
			ip netns del "$ns" 2>/dev/null || say "could not delete netns $ns"
		done < <(tac "$STATE/netns")
	fi
	local on_loop=0
	if [ -f "$STATE/scratch" ]; then
		on_loop=1
		unmount "$DATA"
		while read -r m; do losetup -d "$m" 2>/dev/null; done <"$STATE/scratch"
		rm -f "$WORK/scratch.img"
	fi
	if [ -n "$RES" ] && [ -d "$WORK/gluster" ]; then  # glusterd's own logs die with its directory
		for m in "$WORK"/gluster/[AB]; do
			mkdir -p "$RES/logs/gluster-${m##*/}" && cp -r "$m/log/." "$m/glusterd.out" "$RES/logs/gluster-${m##*/}/" 2>/dev/null
		done
	fi
	if [ "$KEEP_DATA" != 1 ]; then
		if ! mountpoint -q "$DATA" && [ -d "$DATA" ]; then
			[ "$on_loop" = 0 ] && [ -n "$(ls -A "$DATA")" ] && date +%s >"$WORK/last-delete"
			rm -rf "${WORK:?}/data"
		fi
		rm -rf "${WORK:?}/mnt" "${WORK:?}/gluster"
	fi
	rm -rf "$STATE"
	[ "$(cat "$WORK/owner" 2>/dev/null)" = "$$ $(pstart $$)" ] && rm -f "$WORK/owner"
	say "cleanup done"
}

on_signals() {
	trap cleanup EXIT
	trap '[ "$CLEANING" = 1 ] || exit 130' INT
	trap '[ "$CLEANING" = 1 ] || exit 143' TERM
	trap '[ "$CLEANING" = 1 ] || exit 129' HUP
	trap 'trap "" PIPE; [ "$CLEANING" = 1 ] || exit 141' PIPE
}

# $WORK/owner names the run using $WORK (PID and start time). Not a lock held open: every daemon the
# run starts would inherit it and keep it held after the run itself was killed.
claim() {
	local opid ost
	exec 8>"$WORK/.lock"
	flock -w 10 8 || die "cannot lock $WORK/.lock"
	if [ -f "$WORK/owner" ] && read -r opid ost <"$WORK/owner" && alive "$opid" "$ost"; then
		die "another compare.sh (pid $opid) is using $WORK"
	fi
	echo "$$ $(pstart $$)" >"$WORK/owner"
	exec 8>&-
}

begin() {  # claim $WORK, clean a killed run's leftovers, new state
	mkdir -p "$WORK"
	claim
	if [ -d "$STATE" ]; then
		say "a previous run was killed: cleaning up after it first"
		cleanup
		CLEANING=0
	fi
	mkdir -p "$STATE" "$DATA" "$MNT" "$TOOLS"
	on_signals
}

# ------------------------------------------------------------------ sides A and B
sides_setup() {
	if [ -n "$PEER_IP" ]; then
		[ -n "$LOCAL_IP" ] || die "two hosts: set LOCAL_IP to this host's address (PEER_IP is host B's)"
		IP_A=$LOCAL_IP IP_B=$PEER_IP
		say "two hosts: side A is this host ($IP_A), side B is $IP_B (running: bash bench/compare.sh peer)"
	else
		NS_A=skcA$$ NS_B=skcB$$ IP_A=10.231.$(($$ % 250)).1 IP_B=10.231.$(($$ % 250)).2
		ip netns add "$NS_A" || die "ip netns add $NS_A"
		echo "$NS_A" >>"$STATE/netns"
		ip netns add "$NS_B" || die "ip netns add $NS_B"
		echo "$NS_B" >>"$STATE/netns"
		ip link add "${NS_A}v" netns "$NS_A" type veth peer name "${NS_B}v" netns "$NS_B" || die "veth"
		ip -n "$NS_A" addr add "$IP_A/24" dev "${NS_A}v" && ip -n "$NS_B" addr add "$IP_B/24" dev "${NS_B}v" || die "addresses"
		local ns
		for ns in "$NS_A" "$NS_B"; do
			ip -n "$ns" link set lo up && ip -n "$ns" link set "${ns}v" up || die "link up in $ns"
		done
		IN_A=(nsenter --net="/run/netns/$NS_A" --)
		IN_B=(nsenter --net="/run/netns/$NS_B" --)
		say "netns $NS_A ($IP_A) <-veth-> $NS_B ($IP_B)"
	fi
	printf 'NS_A=%q NS_B=%q IP_A=%q IP_B=%q PEER_IP=%q\n' "$NS_A" "$NS_B" "$IP_A" "$IP_B" "$PEER_IP" >"$STATE/env"
}

scratch_setup() {
	[ "$SCRATCH" = loop ] || return 0
	local img=$WORK/scratch.img dev
	dev=$(bench_image "$img" "$SCRATCH_SIZE") || die "making the scratch image $img"
	echo "$dev" >>"$STATE/scratch"
	mount -o noatime "$dev" "$DATA" || die "mounting $dev"
	say "scratch: fresh journaled ext4 of $SCRATCH_SIZE on $dev (direct I/O) at $DATA"
}

# ------------------------------------------------------------------ tools
tools_setup() {
	[ -x "$MKFILES" ] && [ -x "$PINGPONG" ] ||
		die "sk-mkfiles/sk-pingpong missing in $SK_BUILD/bench: run meson setup + ninja (or set SK_BUILD)"
	case " $TARGETS " in *" fuse-ll "*) ;; *) return 0 ;; esac
	local ex=/usr/share/doc/libfuse3-dev/examples
	[ -x "$TOOLS/passthrough_ll" ] && return 0
	[ -f "$ex/passthrough_ll.c" ] || die "$ex/passthrough_ll.c missing: apt-get install libfuse3-dev"
	# shellcheck disable=SC2046
	cc -O2 -I"$ex" -o "$TOOLS/passthrough_ll" "$ex/passthrough_ll.c" $(pkg-config --cflags --libs fuse3) ||
		die "building passthrough_ll"
}

# ------------------------------------------------------------------ targets
setup_native() { mkdir -p "$DATA/native" && DIR[native]=$DATA/native; }

setup_fuse_ll() {
	local mnt=$MNT/fuse-ll
	mkdir -p "$DATA/fuse-ll" "$mnt"
	echo "$mnt" >>"$STATE/mounts"
	# shellcheck disable=SC2086
	"$TOOLS/passthrough_ll" -f -o source="$DATA/fuse-ll" $FUSE_LL_OPTS "$mnt" >>"$RES/logs/fuse-ll.log" 2>&1 &
	track $! passthrough_ll
	wait_until 10 mountpoint -q "$mnt" || die "passthrough_ll did not mount (logs/fuse-ll.log)"
	DIR[fuse-ll]=$mnt
}

gl() {  # gl A|B gluster-cli-args...: the CLI of our glusterd on that side
	local side=$1
	shift
	timeout 120 gluster --mode=script --glusterd-sock="$WORK/gluster/$side/run/glusterd.socket" \
		--log-file="$WORK/gluster/cli.log" "$@"
}

# glusterd SIDE PREFIX...: a glusterd of our own, its state, logs and sockets bind-mounted from
# $WORK/gluster/SIDE in a private mount namespace (the machine's /var/lib/glusterd stays untouched).
glusterd_start() {
	local side=$1 d=$WORK/gluster/$1 pid
	shift
	mkdir -p "$d/lib" "$d/log" "$d/run" "$DATA/brick-$side" /run/gluster /var/log/glusterfs /var/lib/glusterd
	[ -d /var/lib/glusterd/groups ] && cp -r /var/lib/glusterd/groups "$d/lib/"
	cat >"$d/glusterd.vol" <<-EOF
		volume management
		    type mgmt/glusterd
		    option working-directory /var/lib/glusterd
		    option transport-type socket
		    option transport.socket.keepalive-time 10
		    option transport.socket.keepalive-interval 2
		    option transport.socket.read-fail-log off
		    option transport.socket.listen-port 24007
		    option glusterd-sockfile /run/gluster/glusterd.socket
		    option ping-timeout 0
		    option event-threads 1
		end-volume
	EOF
	"$@" unshare --mount --propagation private sh -c "mount --bind '$d/lib' /var/lib/glusterd &&
		mount --bind '$d/log' /var/log/glusterfs && mount --bind '$d/run' /run/gluster &&
		exec glusterd -N -f '$d/glusterd.vol' -p /run/gluster/glusterd.pid" >>"$d/glusterd.out" 2>&1 &
	pid=$!
	track "$pid" "glusterd-$side"
	wait_until 30 eval "[ -S '$d/run/glusterd.socket' ] && gl $side pool list >/dev/null 2>&1" ||
		die "glusterd $side did not start ($d/glusterd.out, $d/log/glusterd.log)"
	echo "$(stat -L -c %i "/proc/$pid/ns/mnt") glusterd-$side" >>"$STATE/mntns"
}

gluster_mount() {
	local mnt=$MNT/gluster-r2
	mkdir -p "$mnt"
	grep -qxF "$mnt" "$STATE/mounts" 2>/dev/null || echo "$mnt" >>"$STATE/mounts"
	"${IN_A[@]}" glusterfs -N --volfile-server="$IP_A" --volfile-id="$GLUSTER_VOL" \
		--log-file="$RES/logs/gluster-client.log" "$mnt" >>"$RES/logs/gluster-client.out" 2>&1 &
	track $! glusterfs-client
	echo "$! $(pstart $!)" >"$STATE/gluster-client"
	wait_until 30 mountpoint -q "$mnt" || die "gluster client did not mount (logs/gluster-client.log)"
	DIR[gluster-r2]=$mnt
}

gluster_cold() {  # a new client: nothing of the file stays cached in user space
	local pid st
	unmount "$MNT/gluster-r2"
	read -r pid st <"$STATE/gluster-client"
	wait_until 10 eval "! alive $pid $st" || stop "$pid" "$st" glusterfs-client
	gluster_mount
}

setup_gluster_r2() {
	local bA=$IP_A:$DATA/brick-A/b bB=$IP_B:$DATA/brick-B/b kv probe=.skcmp-probe
	[ -n "$PEER_IP" ] && bB=$IP_B:$PEER_WORK/data/brick-B/b
	touch "$STATE/gluster"
	glusterd_start A "${IN_A[@]}"
	[ -z "$PEER_IP" ] && glusterd_start B "${IN_B[@]}"
	gl A peer probe "$IP_B" >/dev/null || die "gluster peer probe $IP_B"
	wait_until 30 eval "gl A peer status 2>/dev/null | grep -q 'Peer in Cluster (Connected)'" || die "gluster peer $IP_B not connected"
	# force: the bricks may be on the root file system; script mode accepts replica 2's split-brain warning
	gl A volume create "$GLUSTER_VOL" replica 2 "$bA" "$bB" force >/dev/null || die "gluster volume create"
	if [ -n "$GLUSTER_VOL_OPTS" ]; then
		IFS=, read -ra kvs <<<"$GLUSTER_VOL_OPTS"
		for kv in "${kvs[@]}"; do
			# shellcheck disable=SC2086
			gl A volume set "$GLUSTER_VOL" $kv >/dev/null || die "gluster volume set $kv"
		done
	fi
	gl A volume start "$GLUSTER_VOL" >/dev/null || die "gluster volume start"
	wait_until 30 eval "[ \$(gl A volume status $GLUSTER_VOL detail 2>/dev/null | grep -cE '^Online +: Y') -ge 2 ]" ||
		die "gluster bricks not online"
	gl A volume info "$GLUSTER_VOL" >"$RES/logs/gluster-volume-info.txt" 2>&1
	gluster_mount
	# Replication must work before it is measured: one file through the mount lands on both bricks.
	echo probe >"${DIR[gluster-r2]}/$probe" || die "writing through the gluster mount"
	if [ -z "$PEER_IP" ]; then
		wait_until 10 eval "[ -s '$DATA/brick-A/b/$probe' ] && [ -s '$DATA/brick-B/b/$probe' ]" ||
			die "gluster: the probe file did not reach both bricks"
	fi
	rm -f "${DIR[gluster-r2]}/$probe"
}

setup_steadykit() {
	local out wd=$DATA/steadykit
	mkdir -p "$wd"
	echo "$RES/logs/steadykit.log" >"$STATE/steadykit"
	local remote=0
	[ -n "$PEER_IP" ] && remote=1
	out=$(PB_NS_A=$NS_A PB_NS_B=$NS_B PB_IP_B=$IP_B SK_PEER_REMOTE=$remote SK_BENCH_LOG="$RES/logs/steadykit.log" \
		timeout 120 bash "$HOOK" setup "$wd" 2>>"$RES/logs/steadykit.log") || die "steadykit setup failed (logs/steadykit.log)"
	DIR[steadykit]=$(tail -n 1 <<<"$out")
	mountpoint -q "${DIR[steadykit]}" || die "steadykit: ${DIR[steadykit]} is not a mount"
}

# ------------------------------------------------------------------ measurements
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RES/results.tsv"; }   # rep workload metric target value

fio_run() {  # fio_run REP WORKLOAD TARGET fio-args...
	local rep=$1 wl=$2 t=$3 js
	shift 3
	js=$RES/raw/$rep-$wl-$t.json
	if ! timeout 900 fio --name="$wl" "$@" "${FIO_FIXED[@]}" >"$js" 2>"$js.err"; then
		say "fio $wl on $t failed: $(tail -n 2 "$js.err")"
		return 1
	fi
	python3 - "$js" "$rep" "$wl" "$t" >>"$RES/results.tsv" <<-'EOF' || say "cannot read $js"
		import json, sys
		path, rep, wl, t = sys.argv[1:]
		text = open(path).read()
		job = json.loads(text[text.index("{"):])["jobs"][0]   # fio may print notes before the JSON
		if job.get("error"):
		    sys.exit("fio reported error %s" % job["error"])
		pct = lambda lat, p: lat["percentile"]["%.6f" % p] / 1000.0
		got = {}
		if wl in ("seqwrite", "seqread"):
		    side = job["write" if wl == "seqwrite" else "read"]
		    got["MBps"] = side["bw_bytes"] / 1e6
		else:
		    w, s = job["write"], job["sync"]["lat_ns"]
		    got["iops"] = w["iops"]
		    got["ops"] = w["total_ios"]
		    got["op_mean_us"] = 1e6 / w["iops"] if w["iops"] else float("nan")
		    got["write_p50_us"], got["write_p99_us"] = pct(w["clat_ns"], 50), pct(w["clat_ns"], 99)
		    got["fsync_p50_us"], got["fsync_p99_us"] = pct(s, 50), pct(s, 99)
		for k, v in got.items():
		    print("%s\t%s\t%s\t%s\t%.3f" % (rep, wl, k, t, v))
	EOF
}

cpu_busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }

measure() {  # measure WORKLOAD REP TARGET
	local wl=$1 rep=$2 t=$3 d=${DIR[$3]} out kv b0 b1 t0 t1 mib
	case $wl in
	seqwrite)
		rm -f "$d/seq.dat"
		sync
		fio_run "$rep" seqwrite "$t" --filename="$d/seq.dat" --rw=write --bs=1M --size="$SEQ_SIZE" --end_fsync=1
		;;
	randwrite)
		rm -f "$d/rand.dat"
		sync
		fio_run "$rep" randwrite "$t" --filename="$d/rand.dat" --rw=randwrite --bs=4k --size="$RW_FILE_SIZE" \
			--overwrite=1 --fsync=1 --number_ios="$RW_OPS" --runtime="$RW_RUNTIME" --randrepeat=1
		rm -f "$d/rand.dat"
		;;
	smallfiles)
		# A new directory each time and no deletes until teardown: on ext4 without a journal, inodes
		# freed in the last minutes make every create scan past them.
		mkdir "$d/small.$rep" && sync
		out=$(timeout 900 "$MKFILES" "$d/small.$rep" "$NFILES" "$FILE_SIZE" 2>&1)
		echo "$out" >"$RES/raw/$rep-smallfiles-$t.txt"
		for kv in $out; do
			case $kv in files_per_s=* | create_only_files_per_s=*) row "$rep" smallfiles "${kv%%=*}" "$t" "${kv#*=}" ;; esac
		done
		;;
	seqread)
		[ -f "$d/seq.dat" ] || { say "seqread on $t: no seq.dat (seqwrite failed)"; return 1; }
		sync
		echo 3 >/proc/sys/vm/drop_caches
		if [ "$t" = gluster-r2 ]; then
			gluster_cold
			d=${DIR[$t]}
		fi
		fio_run "$rep" seqread "$t" --filename="$d/seq.dat" --rw=read --bs=1M --size="$SEQ_SIZE"
		;;
	cpu)
		mib=$(to_mib "$DD_SIZE")
		rm -f "$d/cpu.dat"
		sync
		b0=$(cpu_busy_ticks) t0=$(date +%s.%N)
		timeout 900 dd if=/dev/zero of="$d/cpu.dat" bs=1M count="$mib" conv=fsync 2>"$RES/raw/$rep-cpu-$t.txt" ||
			{ say "dd on $t failed"; return 1; }
		b1=$(cpu_busy_ticks) t1=$(date +%s.%N)
		rm -f "$d/cpu.dat"
		row "$rep" cpu cpu_s_per_gib "$t" "$(awk -v b="$((b1 - b0))" -v hz="$(getconf CLK_TCK)" -v m="$mib" \
			'BEGIN { printf "%.3f", b / hz * 1024 / m }')"
		row "$rep" cpu MBps "$t" "$(awk -v s="$t0" -v e="$t1" -v m="$mib" 'BEGIN { printf "%.3f", m * 1.048576 / (e - s) }')"
		;;
	esac
}

to_mib() {  # 256M, 1G, 4096K -> MiB
	local v=${1%[KkMmGg]} u=${1: -1}
	case $u in [Gg]) echo $((v * 1024)) ;; [Kk]) echo $((v / 1024 > 0 ? v / 1024 : 1)) ;; *) echo "$v" ;; esac
}

rtt() {  # rtt REP LABEL [CPU_A CPU_B]: ping-pong A -> B, both sizes
	local rep=$1 label=$2 pa=() pb=() spid='' size out kv ok=1
	if [ -n "${3:-}" ]; then pa=(taskset -c "$3") pb=(taskset -c "$4"); fi
	if [ -z "$PEER_IP" ]; then
		"${IN_B[@]}" "${pb[@]}" "$PINGPONG" serve "$IP_B" "$RTT_PORT" 2 300 >>"$RES/logs/pingpong.log" 2>&1 &
		spid=$!
		track "$spid" pingpong-server
	fi
	for size in 64 4096; do
		out=$("${IN_A[@]}" "${pa[@]}" "$PINGPONG" ping "$IP_B" "$RTT_PORT" "$size" "$RTT_COUNT" 2>>"$RES/logs/pingpong.log") ||
			{ say "ping-pong to $IP_B failed"; ok=0; break; }
		echo "$label $out" >>"$RES/raw/rtt.txt"
		for kv in $out; do
			case $kv in p50_us=* | p99_us=* | mean_us=*) row "$rep" "rtt$size" "${kv%%=*}" "$label" "${kv#*=}" ;; esac
		done
	done
	if [ -n "$spid" ]; then  # it exits after its two connections; after a failure we stop it
		[ "$ok" = 1 ] || kill -TERM "$spid" 2>/dev/null
		wait "$spid" 2>/dev/null
	fi
	return 0
}

warm_up() {  # untimed: first allocations, first lookups, gluster's first connections
	local t d
	for t in "${ORDER[@]}"; do
		d=${DIR[$t]}
		timeout 300 fio --name=warm --filename="$d/warm.dat" --rw=write --bs=1M --size=16M --end_fsync=1 "${FIO_FIXED[@]}" >/dev/null 2>&1
		timeout 300 fio --name=warm --filename="$d/warm.dat" --rw=randwrite --bs=4k --size=16M --fsync=1 --number_ios=100 \
			"${FIO_FIXED[@]}" >/dev/null 2>&1
		mkdir -p "$d/warm" && timeout 300 "$MKFILES" "$d/warm" 100 4096 >/dev/null
	done
}

steadykit_rss() {  # peak RSS of the hook's daemons, before teardown
	local pid st name kb
	[ -f "$DATA/steadykit/pids" ] || return 0
	while read -r pid st name; do
		alive "$pid" "$st" || continue
		kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
		[ -n "$kb" ] && row 0 rss "${name}_hwm_mib" steadykit "$(awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }')"
	done <"$DATA/steadykit/pids"
}

report() {
	SEQ_SIZE=$SEQ_SIZE RW_OPS=$RW_OPS NFILES=$NFILES FILE_SIZE=$FILE_SIZE DD_SIZE=$DD_SIZE \
		python3 "$HERE/compare-report.py" "$RES/results.tsv" "$REPS" "$RATIO_BASES" "${ORDER[@]}"
}

# ------------------------------------------------------------------ commands
# ext4 without a journal skips inodes freed in the last minutes on every create, so a run right after
# the previous one's mass delete measures that, not the targets (5-30x slower creates for 2-4 minutes).
settle() {
	local age
	[ "$SCRATCH" = root ] && [ -f "$WORK/last-delete" ] || return 0
	age=$(($(date +%s) - $(cat "$WORK/last-delete")))
	[ "$age" -ge "$SETTLE_S" ] && return 0
	say "the previous run deleted its files ${age} s ago: waiting $((SETTLE_S - age)) s (SETTLE_S=0 or SCRATCH=loop to skip)"
	sleep $((SETTLE_S - age)) &  # waited for, not run in the foreground, so that a signal ends it at once
	track $! settle-timer
	wait $!
}

preflight() {
	[ "$(id -u)" = 0 ] || die "run as root (mounts, network namespaces, drop_caches)"
	[ -c /dev/fuse ] || die "/dev/fuse missing"
	local c
	for c in "$@"; do command -v "$c" >/dev/null || die "$c not found: bash bench/compare.sh deps"; done
}

write_env() {
	{
		echo "date: $(date -u -Is)"
		echo "host: $(uname -n) kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print $2 " kB" }' /proc/meminfo)"
		echo "data on: $(findmnt -no SOURCE,FSTYPE,OPTIONS -T "$DATA")"
		echo "fio: $(fio --version 2>/dev/null)"
		echo "glusterfs: $(glusterfs --version 2>/dev/null | head -n 1)"
		echo "fuse3: $(pkg-config --modversion fuse3 2>/dev/null)"
		echo "skfused: $SK_BUILD/fused/skfused, repository at $(git -C "$REPO" describe --always --dirty 2>/dev/null)"
		echo "sides: A=${NS_A:-this host} $IP_A, B=${NS_B:-remote} $IP_B"
		for v in TARGETS REPS SEQ_SIZE RW_OPS RW_RUNTIME RW_FILE_SIZE NFILES FILE_SIZE DD_SIZE RTT_COUNT SCRATCH \
			FUSE_LL_OPTS GLUSTER_VOL_OPTS SK_MODE SK_BUDGET_MS SK_EXTRA_ARGS; do
			echo "$v=${!v:-}"
		done
	} >"$RES/env.txt"
}

run() {
	local t wl rep i n
	preflight fio cc pkg-config ip nsenter unshare mountpoint timeout flock python3 dd taskset
	case " $TARGETS " in *" gluster-r2 "*) preflight glusterd gluster glusterfs ;; esac
	[ -z "$PEER_IP" ] || [ -n "${SK_SECRET:-}" ] || case " $TARGETS " in *" steadykit "*)
		die "two hosts: SK_SECRET must name the secret file both hosts share" ;; esac
	begin
	settle
	RES=$RESULTS_DIR/$(date -u +%Y%m%d-%H%M%S)
	mkdir -p "$RES/raw" "$RES/logs" && : >"$RES/results.tsv" || die "cannot write $RES"
	tools_setup
	scratch_setup
	sides_setup
	write_env
	if [ -z "$PEER_IP" ]; then  # pinned, before any target runs: a cross-CPU wake-up costs more than the wire
		rtt 0 same-cpu 0 0
		[ "$(nproc)" -ge 2 ] && rtt 0 cross-cpu 0 1
	fi
	for t in $TARGETS; do
		say "setting up $t"
		case $t in
		native) setup_native ;;
		fuse-ll) setup_fuse_ll ;;
		gluster-r2) setup_gluster_r2 ;;
		steadykit) setup_steadykit ;;
		*) die "unknown target $t (known: native fuse-ll gluster-r2 steadykit)" ;;
		esac
		ORDER+=("$t")
		say "  $t -> ${DIR[$t]}"
	done
	say "warm-up"
	warm_up
	n=${#ORDER[@]}
	for rep in $(seq "$REPS"); do
		rtt "$rep" unpinned
		for wl in seqwrite randwrite smallfiles seqread cpu; do
			for ((i = 0; i < n; i++)); do
				t=${ORDER[$(((i + rep - 1) % n))]}
				say "rep $rep/$REPS $wl on $t"
				measure "$wl" "$rep" "$t"
			done
		done
	done
	steadykit_rss
	report | tee "$RES/table.txt"
	say "results in $RES"
}

peer() {  # host B of a two-host run: secondary, glusterd and ping-pong server until interrupted
	preflight ip unshare mountpoint timeout flock
	[ -n "$LOCAL_IP" ] || die "peer: set LOCAL_IP to the address host A reaches this host at"
	[ -n "${SK_SECRET:-}" ] || die "peer: set SK_SECRET to the secret file both hosts share"
	begin
	RES=$WORK/peer-logs
	mkdir -p "$RES/logs"
	IP_B=$LOCAL_IP PEER_IP=$LOCAL_IP
	printf 'NS_A= NS_B= IP_A= IP_B=%q PEER_IP=\n' "$IP_B" >"$STATE/env"
	scratch_setup
	[ -x "$PINGPONG" ] || die "$PINGPONG missing: build the repository (or set SK_BUILD)"
	"$PINGPONG" serve "$LOCAL_IP" "$RTT_PORT" 1000000 "$PEER_MAX_S" >>"$RES/logs/pingpong.log" 2>&1 &
	track $! pingpong-server
	case " $TARGETS " in *" gluster-r2 "*)
		preflight glusterd gluster
		mkdir -p "$DATA/brick-B"
		glusterd_start B ;;
	esac
	case " $TARGETS " in *" steadykit "*)
		mkdir -p "$DATA/steadykit"
		echo "$RES/logs/steadykit.log" >"$STATE/steadykit"
		PB_NS_B='' PB_IP_B=$LOCAL_IP timeout 120 bash "$HOOK" secondary "$DATA/steadykit" >/dev/null \
			2>>"$RES/logs/steadykit.log" || die "skfused secondary did not start ($RES/logs/steadykit.log)" ;;
	esac
	say "host B ready at $LOCAL_IP (ping-pong port $RTT_PORT, glusterd 24007, skfused ${SK_PORT:-7420})."
	say "On host A: PEER_IP=$LOCAL_IP LOCAL_IP=<host A> SK_SECRET=<same secret> bash bench/compare.sh"
	say "Stop with Ctrl-C when host A is done (at most PEER_MAX_S=$PEER_MAX_S s)."
	sleep "$PEER_MAX_S" &
	track $! peer-timer
	wait $!
}

deps() {
	DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y fio glusterfs-server glusterfs-client fuse3 libfuse3-dev \
		gcc pkg-config iproute2 util-linux python3 e2fsprogs
}

case ${1:-run} in
run) run ;;
peer) peer ;;
deps) deps ;;
teardown)
	mkdir -p "$WORK"
	claim
	cleanup
	rm -f "$WORK/owner" ;;
*) echo "usage: bash bench/compare.sh [run|deps|teardown|peer]" >&2; exit 2 ;;
esac
