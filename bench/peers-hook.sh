#!/usr/bin/env bash
# bench/peers-hook.sh: the SteadyKit target (skfused primary + secondary) of bench/compare.sh and of the shared harness.
#
# bench/compare.sh runs it as its `steadykit` target; the company's shared harness (peers.sh, not part of this
# repository) takes it as EXTRA_TARGETS="steadykit=bench/peers-hook.sh". Commands:
#   hook setup WORKDIR     secondary in netns $PB_NS_B, primary in $PB_NS_A mounted in the host
#                          mount namespace (nsenter --net, not ip netns exec, which would hide the
#                          mount); prints "peer=<secondary dir>" and, last, the mounted directory.
#                          Empty PB_NS_A/PB_NS_B: the current network namespace (two real hosts);
#                          SK_PEER_REMOTE=1: start no secondary, it runs on the host at $PB_IP_B.
#   hook secondary WORKDIR the secondary alone (in $PB_NS_B, or here), listening on $PB_IP_B:$SK_PORT;
#                          prints its directory (host B of a two-host run: bench/compare.sh peer)
#   hook cold DIR          nothing to drop: skfused keeps no data cache in user space
#   hook teardown WORKDIR  idempotent; stops only the PIDs recorded by setup (start time checked)
# Environment: SK_MODE=sync|semi-sync|async (default sync), SK_BUDGET_MS (default: skfused's),
#   SKFUSED=path to skfused (default $SK_BUILD/fused/skfused, SK_BUILD default <repo>/build),
#   SK_PORT (default 7420), SK_SECRET (a 0600 secret file; default: a fresh one in WORKDIR, which only
#   works when both daemons run here), SK_EXTRA_ARGS (more skfused options, both roles),
#   SK_BENCH_LOG (default /tmp/steadykit-bench.log): at teardown each daemon's peak RSS (VmHWM) and
#   its last log lines are appended there, since WORKDIR is removed.
set -u
cmd=${1:?setup|secondary|cold|teardown}
arg=${2:?WORKDIR or DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SK_BUILD=${SK_BUILD:-$here/../build}
SKFUSED=${SKFUSED:-$SK_BUILD/fused/skfused}
SK_MODE=${SK_MODE:-sync}
SK_PORT=${SK_PORT:-7420}
SK_BENCH_LOG=${SK_BENCH_LOG:-/tmp/steadykit-bench.log}

starttime() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; set -- $s; echo "${20}"; }
remember() { echo "$1 $(starttime "$1") $2" >>"$wd/pids"; }
same_proc() { [ -n "$2" ] && [ "$(starttime "$1")" = "$2" ]; }
log_has_ready() { grep -q ready "$1" 2>/dev/null; }
wait_for() {  # wait_for TENTHS cmd...
	local n=$1 i
	shift
	for ((i = 0; i < n; i++)); do "$@" && return 0; sleep 0.1; done
	return 1
}
status() { echo '{"cmd":"status"}' | timeout 3 nc -U -N "$1" 2>/dev/null | head -n1; }
connected() { [[ "$(status "$wd/ctl-prim.sock")" == *'"peer":"connected"'* ]]; }
fail() { echo "peers-hook: $*" >&2; exit 1; }

# start NAME NETNS args...: a daemon in NETNS's network namespace only (empty: this one), detached,
# output to WORKDIR/NAME.log
start() {
	local name=$1 ns=$2 inns=()
	shift 2
	[ -n "$ns" ] && inns=(nsenter --net="/run/netns/$ns" --)
	# shellcheck disable=SC2086
	setsid "${inns[@]}" "$SKFUSED" "$@" $SK_EXTRA_ARGS </dev/null >>"$wd/$name.log" 2>&1 &
	remember $! "$name"
}

# The shared harness gives a hook a WORKDIR on the root file system ($PB_ROOT/hooks) even with
# SCRATCH=loop, where every other target's data sits on the fresh journaled ext4 at $PB_ROOT/data:
# our two copies and state files go there too, or fsync would be compared across file systems
# (on this host the root ext4 has no journal and flushes about twice as fast). WORKDIR/realdir
# names the folder used, for teardown.
relocate() {
	wd=$1
	if [ -n "${PB_ROOT:-}" ] && mountpoint -q "$PB_ROOT/data" && [[ "$wd" != "$PB_ROOT/data/"* ]]; then
		wd=$PB_ROOT/data/steadykit-$(basename "$1")
		mkdir -p "$wd" && echo "$wd" >"$1/realdir" || fail "mkdir $wd"
	fi
}

prepare() {
	relocate "$1"
	[ -x "$SKFUSED" ] || fail "skfused not found at $SKFUSED (set SKFUSED or SK_BUILD)"
	[ -n "${PB_IP_B:-}" ] || fail "PB_IP_B (the secondary's address) must be set"
	mkdir -p "$wd/prim" "$wd/sec" "$wd/state-prim" "$wd/state-sec" || fail "mkdir in $wd"
	if [ -n "${SK_SECRET:-}" ]; then
		secret=$SK_SECRET
	else
		secret=$wd/secret
		(umask 077 && head -c 32 /dev/urandom | base64 >"$secret") || fail "secret"
	fi
}

start_secondary() {
	start sec "${PB_NS_B:-}" --role secondary --dir "$wd/sec" --listen "$PB_IP_B:$SK_PORT" \
		--secret "$secret" --state "$wd/state-sec" --ctl "$wd/ctl-sec.sock"
	wait_for 100 log_has_ready "$wd/sec.log" || fail "secondary not ready: $(tail -n 5 "$wd/sec.log")"
}

SK_EXTRA_ARGS=${SK_EXTRA_ARGS:-}
case $cmd in
secondary)
	prepare "$arg"
	start_secondary
	echo "$wd/sec"
	;;
setup)
	prepare "$arg"
	if [ "${SK_PEER_REMOTE:-0}" = 1 ]; then
		[ -n "${SK_SECRET:-}" ] || fail "SK_PEER_REMOTE=1 needs SK_SECRET, the secret file both hosts share"
	else
		[ -n "${PB_NS_A:-}" ] && [ -n "${PB_NS_B:-}" ] || fail "PB_NS_A and PB_NS_B must be set (or SK_PEER_REMOTE=1)"
		start_secondary
	fi
	extra=()
	[ -n "${SK_BUDGET_MS:-}" ] && extra+=(--budget-ms "$SK_BUDGET_MS")
	start prim "${PB_NS_A:-}" --role primary --dir "$wd/prim" --peer "$PB_IP_B:$SK_PORT" --mode "$SK_MODE" \
		--secret "$secret" --state "$wd/state-prim" --ctl "$wd/ctl-prim.sock" "${extra[@]}"
	wait_for 100 mountpoint -q "$wd/prim" || fail "primary did not mount: $(tail -n 5 "$wd/prim.log")"
	# A benchmark of a primary that is not replicating would be meaningless.
	wait_for 100 connected || fail "primary not connected to the secondary: $(status "$wd/ctl-prim.sock")"
	echo "mode=$SK_MODE skfused=$SKFUSED" >&2
	[ "${SK_PEER_REMOTE:-0}" = 1 ] && echo "peer=$PB_IP_B:$SK_PORT" || echo "peer=$wd/sec"
	echo "$wd/prim"
	;;
cold)
	:
	;;
teardown)
	wd=$arg
	[ -d "$wd" ] || exit 0
	[ -f "$arg/realdir" ] && wd=$(cat "$arg/realdir")
	[ -d "$wd" ] || exit 0
	if [ -f "$wd/pids" ]; then
		{
			echo "== $(date -u +%FT%TZ) teardown $wd mode=$SK_MODE"
			echo "primary status: $(status "$wd/ctl-prim.sock")"
			while read -r pid st name; do
				same_proc "$pid" "$st" || continue
				echo "$name pid $pid $(grep -E 'VmHWM|VmRSS' "/proc/$pid/status" | tr -s ' \t\n' ' ')"
			done <"$wd/pids"
		} >>"$SK_BENCH_LOG" 2>&1
	fi
	# Unmount first: the FUSE daemon then exits by itself.
	if mountpoint -q "$wd/prim"; then umount "$wd/prim" 2>/dev/null || umount -l "$wd/prim"; fi
	if [ -f "$wd/pids" ]; then
		while read -r pid st name; do
			same_proc "$pid" "$st" && kill -TERM "$pid" 2>/dev/null
		done <"$wd/pids"
		while read -r pid st name; do
			for _ in $(seq 50); do same_proc "$pid" "$st" || break; sleep 0.1; done
			same_proc "$pid" "$st" && kill -KILL "$pid" 2>/dev/null
		done <"$wd/pids"
		for f in prim sec; do
			[ -f "$wd/$f.log" ] && { echo "-- $f.log (last 5 lines)"; tail -n 5 "$wd/$f.log"; } >>"$SK_BENCH_LOG"
		done
		rm -f "$wd/pids"
	fi
	# The secondary's read-only bind mount, in case it was killed before removing it.
	for _ in 1 2; do mountpoint -q "$wd/sec" && umount "$wd/sec" 2>/dev/null; done
	mountpoint -q "$wd/sec" && umount -l "$wd/sec"
	;;
*)
	fail "unknown command $cmd"
	;;
esac
exit 0
