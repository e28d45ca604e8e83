# Network-namespace cluster harness for scenario tests: nodes, client, faults, TAP, cleanup.
# shellcheck shell=bash
#
#   source "$SK_SRC/test/cluster/lib.sh"
#   sk_cluster_init 3 --client
#
# Topology: a bridge "br0" in its own namespace ${pfx}br; node i is namespace ${pfx}n<i>
# whose eth0 (MAC 02:99:00:00:00:<i>, 10.99.0.<i>/24) is a veth to port "v<i>" of br0;
# the client is ${pfx}c, 10.99.0.100/24, port "vc". Nothing is created in the root
# namespace, so the host has no route to 10.99.0.0/24 and nodes have no default route.
#
# Commands run with `nsenter --net`, not `ip netns exec`: only the network namespace
# changes, so mounts made by a daemon (FUSE) are visible to the test and to cleanup.
# Consequence: /sys/class/net shows the host's interfaces; use netlink (ip, tc) instead.
#
# Faults: sk_partition/sk_heal are nftables rules on the bridge (per port pair, so VIPs
# and broadcasts are cut too); sk_link_down pulls the cable (bridge port down, eth0 keeps
# its addresses; --eth0 downs eth0 itself); sk_netem uses tc netem on eth0 when the
# kernel has sch_netem (sk_have_netem), otherwise only "loss P%" works (nft) and other
# specs return 2 so a test can sk_skip. Extras: sk_skip, sk_pid_state, sk_alive.
#
# Spawned PIDs and tracked mounts are kept in files under $SK_TMP/.sk, because
# `pid=$(sk_spawn ...)` runs in a subshell whose variables are lost.
#
# Every function starts with `local -; set +eu`: callers may use set -eu, but the harness
# handles its own expected failures (deleting what is not there, probing) and reports
# real ones by return status.

SK_NET=10.99.0
SK_N=0
SK_NS=()
SK_IP=()
SK_ROOT=()
SK_CLIENT_NS=
SK_CLIENT_IP=
SK_TMP=
SK_PFX=
SK_BR_NS=
SK__NSLIST=()
SK__OWNER=
SK__CLEANED=0
SK__TAP_N=0
SK__TAP_FAIL=0
SK__NETEM=

sk_diag() {
	local -; set +eu
	local line
	while IFS= read -r line; do
		printf '# %s\n' "$line"
	done <<<"$*"
}

sk__err() {
	local -; set +eu
	sk_diag "sk: $*" >&2
}

# --- TAP -------------------------------------------------------------------

# A description holding several lines (a file's head pasted in) is one TAP line, the first, and
# diagnostics: a bare second line is not TAP and makes meson report the test as broken.
sk__tap() {
	local desc=$2
	printf '%s %d - %s\n' "$1" "$SK__TAP_N" "${desc%%$'\n'*}"
	[ "$desc" = "${desc#*$'\n'}" ] || sk_diag "${desc#*$'\n'}"
}

sk_ok() {
	local -; set +eu
	SK__TAP_N=$((SK__TAP_N + 1))
	sk__tap ok "$1"
}

sk_not_ok() {
	local -; set +eu
	SK__TAP_N=$((SK__TAP_N + 1))
	SK__TAP_FAIL=$((SK__TAP_FAIL + 1))
	sk__tap 'not ok' "$1"
}

sk_skip() {
	local -; set +eu
	SK__TAP_N=$((SK__TAP_N + 1))
	printf 'ok %d - %s # SKIP %s\n' "$SK__TAP_N" "$1" "${2:-}"
}

# sk_check "desc" cmd...: a failing command's output (last 20 lines) becomes diagnostics.
sk_check() {
	local -; set +eu
	local desc=$1 out rc=0
	shift
	out=$("$@" 2>&1) || rc=$?
	if [ "$rc" -eq 0 ]; then
		sk_ok "$desc"
		return 0
	fi
	sk_not_ok "$desc"
	sk_diag "command failed (rc=$rc): $*"
	[ -n "$out" ] && sk_diag "$(printf '%s\n' "$out" | tail -n 20)"
	return 1
}

sk_done() {
	local -; set +eu
	printf '1..%d\n' "$SK__TAP_N"
	[ "$SK__TAP_FAIL" -eq 0 ] || exit 1
	exit 0
}

# sk_wait_for SECONDS cmd...: poll every 0.1 s; 0 once cmd succeeds, 1 on timeout.
sk_wait_for() {
	local -; set +eu
	local secs=$1 i max deadline
	shift
	# Bounded twice: by the clock (a slow command must not stretch the wait) and by count.
	max=$(awk -v s="$secs" 'BEGIN { n = int(s * 10); if (n < 1) n = 1; print n }')
	deadline=$(( $(date +%s%N) + max * 100000000 ))
	for ((i = 0; i <= max; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		[ "$(date +%s%N)" -ge "$deadline" ] && return 1
		sleep 0.1
	done
	return 1
}

# --- namespaces and commands ----------------------------------------------

# sk__ns N|c -> namespace name of node N or the client
sk__ns() {
	local -; set +eu
	if [ "$1" = c ]; then
		[ -n "$SK_CLIENT_NS" ] || { sk__err "no client namespace (init with --client)"; return 1; }
		printf '%s\n' "$SK_CLIENT_NS"
		return 0
	fi
	if [[ ! "$1" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt "$SK_N" ]; then
		sk__err "no node '$1' (have 1..$SK_N)"
		return 1
	fi
	printf '%s\n' "${SK_NS[$1]}"
}

# bridge port (in $SK_BR_NS) of node N or the client
sk__port() {
	local -; set +eu
	sk__ns "$1" >/dev/null || return 1
	printf 'v%s\n' "$1"
}

sk__nsexec() {
	local -; set +eu
	local ns=$1
	shift
	nsenter --net="/run/netns/$ns" -- "$@"
}

sk_in() {
	local -; set +eu
	local ns
	ns=$(sk__ns "$1") || return 1
	shift
	sk__nsexec "$ns" "$@"
}

sk_client() {
	local -; set +eu
	sk_in c "$@"
}

# fields of /proc/PID/stat after the comm field; $1 = state, $20 = starttime
sk__stat() {
	local -; set +eu
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	printf '%s\n' "${s##*) }"
}

sk__starttime() {
	local -; set +eu
	local f
	f=$(sk__stat "$1") || return 1
	set -- $f
	printf '%s\n' "${20}"
}

# sk_pid_state PID: prints the /proc state letter (R S D T t Z ...), fails if gone
sk_pid_state() {
	local -; set +eu
	local f
	f=$(sk__stat "$1") || return 1
	printf '%s\n' "${f%% *}"
}

sk__spawn_ns() {
	local -; set +eu
	local ns=$1 name=$2 pid i cmd
	shift 2
	cmd=("$@")
	if [ -z "$SK_TMP" ] || [ ! -d "$SK_TMP/.sk" ]; then
		sk__err "sk_spawn before sk_cluster_init"
		return 1
	fi
	[[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || { sk__err "bad spawn name '$name'"; return 1; }
	# The child records its own PID and starttime before exec, so even a command that
	# exits at once is recorded; the PID stays the command's through subshell -> nsenter
	# -> cmd. No setsid on purpose: staying in the test's process group lets a runner's
	# killpg (meson timeout, Ctrl-C) reach daemons even if our cleanup is cut short.
	(
		read -r st </proc/$BASHPID/stat
		st=${st##*) }
		set -- $st
		printf '%s %s %s\n' "$BASHPID" "${20}" "$name" >>"$SK_TMP/.sk/pids"
		exec nsenter --net="/run/netns/$ns" -- "${cmd[@]}" </dev/null >>"$SK_TMP/$name.log" 2>&1
	) &
	pid=$!
	for ((i = 0; i < 50; i++)); do
		grep -q "^$pid " "$SK_TMP/.sk/pids" && break
		sleep 0.02
	done
	printf '%s\n' "$pid"
}

# pid=$(sk_spawn N name cmd...): background in node N, output to $SK_TMP/name.log
sk_spawn() {
	local -; set +eu
	local ns
	ns=$(sk__ns "$1") || return 1
	shift
	sk__spawn_ns "$ns" "$@"
}

sk_spawn_client() {
	local -; set +eu
	sk_spawn c "$@"
}

# 0 if PID was spawned by this run and is still the same process (PID reuse check)
sk__verify() {
	local -; set +eu
	local pid=$1 rec st
	[[ "$pid" =~ ^[0-9]+$ ]] || { sk__err "bad pid '$pid'"; return 1; }
	[ -n "$SK_TMP" ] && [ -f "$SK_TMP/.sk/pids" ] || { sk__err "no spawned pids"; return 1; }
	rec=$(awk -v p="$pid" '$1 == p { s = $2 } END { if (s != "") print s }' "$SK_TMP/.sk/pids")
	[ -n "$rec" ] || { sk__err "pid $pid was not started by sk_spawn"; return 1; }
	st=$(sk__starttime "$pid") || { sk__err "pid $pid is gone"; return 1; }
	[ "$st" = "$rec" ] || { sk__err "pid $pid was reused by another process"; return 1; }
	[ "$(sk_pid_state "$pid")" != Z ] || { sk__err "pid $pid has exited (zombie)"; return 1; }
}

sk__signal() {
	local -; set +eu
	sk__verify "$2" || return 1
	kill "-$1" "$2"
}

sk_kill9() { sk__signal KILL "$1"; }
sk_sigstop() { sk__signal STOP "$1"; }
sk_sigcont() { sk__signal CONT "$1"; }
sk_term() { sk__signal TERM "$1"; }

# sk_alive PID: spawned by us, still there and not a zombie
sk_alive() {
	local -; set +eu
	local s
	sk__verify "$1" 2>/dev/null || return 1
	s=$(sk_pid_state "$1") || return 1
	[ "$s" != Z ] && [ "$s" != X ]
}

# --- faults ---------------------------------------------------------------

# sk_link_down N [--eth0]: default pulls the cable (bridge-side port down: eth0 keeps its
# addresses and routes, sees NO-CARRIER); --eth0 sets the node's own eth0 down instead.
sk_link_down() {
	local -; set +eu
	local port
	port=$(sk__port "$1") || return 1
	if [ "${2:-}" = --eth0 ]; then
		sk_in "$1" ip link set eth0 down
	else
		ip -n "$SK_BR_NS" link set "$port" down
	fi
}

sk_link_up() {
	local -; set +eu
	local port
	port=$(sk__port "$1") || return 1
	sk_in "$1" ip link set eth0 up && ip -n "$SK_BR_NS" link set "$port" up
}

# 0 if the kernel has sch_netem (this is probed once, in the bridge namespace's lo)
sk_have_netem() {
	local -; set +eu
	if [ -z "$SK__NETEM" ]; then
		if tc -n "$SK_BR_NS" qdisc add dev lo root netem delay 1ms 2>/dev/null; then
			tc -n "$SK_BR_NS" qdisc del dev lo root 2>/dev/null
			SK__NETEM=1
		else
			SK__NETEM=0
		fi
	fi
	[ "$SK__NETEM" = 1 ]
}

# sk_netem N "delay 50ms loss 5%": netem on node N's eth0 egress (replaces earlier settings).
# Without sch_netem only "loss P%" works (nft random drop of frames from node N at the
# bridge); anything else returns 2 so a test can skip.
sk_netem() {
	local -; set +eu
	local n=$1 spec=$2 ns port pct
	ns=$(sk__ns "$n") || return 1
	port=$(sk__port "$n") || return 1
	if sk_have_netem; then
		tc -n "$ns" qdisc replace dev eth0 root netem $spec
		return
	fi
	if [[ "$spec" =~ ^[[:space:]]*loss[[:space:]]+([0-9]+)%[[:space:]]*$ ]]; then
		pct=$((10#${BASH_REMATCH[1]}))
		if [ "$pct" -ge 100 ]; then
			sk__nft_chain "loss_$n" "iifname \"$port\" drop"
		else
			sk__nft_chain "loss_$n" "iifname \"$port\" numgen random mod 100 < $pct drop"
		fi
		return
	fi
	sk__err "kernel has no sch_netem; cannot apply '$spec' (only 'loss P%')"
	return 2
}

sk_netem_clear() {
	local -; set +eu
	local ns
	ns=$(sk__ns "$1") || return 1
	tc -n "$ns" qdisc del dev eth0 root 2>/dev/null
	sk__nft_del_chain "loss_$1"
	return 0
}

# (re)create base chain NAME on the bridge forward hook with the given rules
sk__nft_chain() {
	local -; set +eu
	local name=$1 r script
	shift
	sk__nft_del_chain "$name"
	script="add chain bridge sk $name { type filter hook forward priority 0; policy accept; }"
	for r in "$@"; do
		script+=$'\n'"add rule bridge sk $name $r"
	done
	sk__nsexec "$SK_BR_NS" nft -f - <<<"$script"
}

sk__nft_del_chain() {
	local -; set +eu
	sk__nsexec "$SK_BR_NS" nft delete chain bridge sk "$1" 2>/dev/null
	return 0
}

# sk_partition A B: the bridge drops every frame between A and B (both ways, broadcasts
# too, whatever addresses they carry, VIPs included); other pairs keep talking.
sk_partition() {
	local -; set +eu
	local pa pb a b
	pa=$(sk__port "$1") || return 1
	pb=$(sk__port "$2") || return 1
	if [[ "$1" > "$2" ]]; then a=$2 b=$1; else a=$1 b=$2; fi
	sk__nft_chain "part_${a}_$b" \
		"iifname \"$pa\" oifname \"$pb\" drop" \
		"iifname \"$pb\" oifname \"$pa\" drop"
}

sk_heal() {
	local -; set +eu
	local a b
	sk__port "$1" >/dev/null || return 1
	sk__port "$2" >/dev/null || return 1
	if [[ "$1" > "$2" ]]; then a=$2 b=$1; else a=$1 b=$2; fi
	sk__nft_del_chain "part_${a}_$b"
}

# sk_complete_words WORD...: the words skctl's bash completion offers for the command line WORD...
# (the last word is the one completed), one a line; skctl from $SK_BUILD, the script from $SK_SRC.
sk_complete_words() {
	(
		PATH=$SK_BUILD/cli:$PATH
		complete() { :; }
		# shellcheck disable=SC1091
		source "$SK_SRC/cli/skctl.bash-completion"
		COMP_WORDS=("$@")
		COMP_CWORD=$(($# - 1))
		_skctl
		printf '%s\n' "${COMPREPLY[@]}"
	)
}

sk_track_mount() {
	local -; set +eu
	[ -n "$SK_TMP" ] && [ -d "$SK_TMP/.sk" ] || { sk__err "sk_track_mount before init"; return 1; }
	printf '%s\n' "$(realpath -m -- "$1")" >>"$SK_TMP/.sk/mounts"
}

# --- setup ----------------------------------------------------------------

sk__on_exit() {
	local rc=$? # first: anything before it would overwrite the exit status
	local -; set +eu
	[ "$BASHPID" = "$SK__OWNER" ] || return "$rc"
	sk_cleanup
	exit "$rc"
}

sk__on_signal() {
	local -; set +eu
	[ "$BASHPID" = "$SK__OWNER" ] || exit "$1"
	exit "$1" # the EXIT trap cleans up
}

sk__addns() {
	local -; set +eu
	ip netns add "$1" || return 1
	SK__NSLIST+=("$1")
	ip -n "$1" link set lo up
}

# add host end HOST_IDX (node number or c) with address ADDR and MAC MAC
sk__addhost() {
	local -; set +eu
	local idx=$1 ns=$2 addr=$3 mac=$4
	sk__addns "$ns" || return 1
	ip -n "$SK_BR_NS" link add "v$idx" type veth peer name eth0 netns "$ns" address "$mac" || return 1
	ip -n "$SK_BR_NS" link set "v$idx" master br0 up || return 1
	ip -n "$ns" addr add "$addr/24" dev eth0 || return 1
	ip -n "$ns" link set eth0 up
}

# sk_cluster_init N [--client]
sk_cluster_init() {
	local -; set +eu
	local n=$1 client=0 i r suffix=
	[ "${2:-}" = --client ] && client=1
	[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 99 ] ||
		{ sk__err "sk_cluster_init: node count 1..99"; return 1; }
	[ "$(id -u)" = 0 ] || { sk__err "needs root"; return 1; }
	for c in ip tc nft nsenter ping; do
		command -v "$c" >/dev/null || { sk__err "missing command: $c"; return 1; }
	done
	[ -z "$SK__OWNER" ] || { sk__err "sk_cluster_init called twice"; return 1; }

	# digits then exactly three letters: no run's prefix is a prefix of another's
	for i in 1 2 3; do
		r=$((RANDOM % 26))
		suffix+=$(printf "\\$(printf '%03o' $((97 + r)))")
	done
	SK_PFX="sk$$$suffix"
	[ $((${#SK_PFX} + 3)) -le 15 ] || { sk__err "prefix too long: $SK_PFX"; return 1; }

	SK__OWNER=$BASHPID
	trap sk__on_exit EXIT
	trap 'sk__on_signal 130' INT
	trap 'sk__on_signal 143' TERM

	SK_TMP=$(mktemp -d "/tmp/$SK_PFX.XXXXXX") || return 1
	mkdir -p "$SK_TMP/.sk" && : >"$SK_TMP/.sk/pids" && : >"$SK_TMP/.sk/mounts" || return 1
	SK_N=$n
	SK_BR_NS=${SK_PFX}br
	sk__addns "$SK_BR_NS" || return 1
	ip -n "$SK_BR_NS" link add br0 type bridge stp_state 0 forward_delay 0 || return 1
	ip -n "$SK_BR_NS" link set br0 up || return 1
	sk__nsexec "$SK_BR_NS" nft add table bridge sk || return 1

	for ((i = 1; i <= n; i++)); do
		SK_NS[i]=${SK_PFX}n$i
		SK_IP[i]=$SK_NET.$i
		SK_ROOT[i]=$SK_TMP/n$i
		mkdir -p "${SK_ROOT[i]}/etc/steadykit" "${SK_ROOT[i]}/var/lib/steadykit" \
			"${SK_ROOT[i]}/run/steadykit" || return 1
		sk__addhost "$i" "${SK_NS[i]}" "${SK_IP[i]}" "$(printf '02:99:00:00:00:%02x' "$i")" ||
			{ sk__err "creating node $i failed"; return 1; }
	done
	if [ "$client" = 1 ]; then
		SK_CLIENT_NS=${SK_PFX}c
		SK_CLIENT_IP=$SK_NET.100
		sk__addhost c "$SK_CLIENT_NS" "$SK_CLIENT_IP" 02:99:00:00:00:64 ||
			{ sk__err "creating client failed"; return 1; }
	fi
	return 0
}

# --- cleanup --------------------------------------------------------------

sk__pids_alive() {
	local -; set +eu
	local pid st name cur
	[ -n "$SK_TMP" ] && [ -f "$SK_TMP/.sk/pids" ] || return 0
	while read -r pid st name; do
		cur=$(sk__starttime "$pid") || continue
		[ "$cur" = "$st" ] || continue
		[ "$(sk_pid_state "$pid")" = Z ] && continue
		printf '%s\n' "$pid"
	done <"$SK_TMP/.sk/pids"
}

sk__ns_pids() {
	local -; set +eu
	local ns
	for ns in "${SK__NSLIST[@]}"; do
		ip netns pids "$ns" 2>/dev/null
	done
}

# 0 if DIR is a mount point (mountinfo escapes blanks as \040; test dirs have none)
sk__mounted() {
	local -; set +eu
	awk -v d="$1" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo
}

# sk_cleanup: stop our processes, unmount, delete namespaces, remove SK_TMP. Idempotent.
sk_cleanup() {
	local -; set +eu
	local pids pid i m ns
	[ "$SK__CLEANED" = 1 ] && return 0
	SK__CLEANED=1
	trap '' INT TERM

	pids=$(sk__pids_alive)
	if [ -n "$pids" ]; then
		for pid in $pids; do kill -CONT "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null; done
		for ((i = 0; i < 30; i++)); do
			[ -z "$(sk__pids_alive)" ] && break
			sleep 0.1
		done
		for pid in $(sk__pids_alive); do kill -KILL "$pid" 2>/dev/null; done
	fi
	# anything left inside our namespaces was started by this run (sk_in, children)
	for ((i = 0; i < 20; i++)); do
		pids=$(sk__ns_pids)
		[ -z "$pids" ] && break
		for pid in $pids; do kill -KILL "$pid" 2>/dev/null; done
		sleep 0.1
	done

	if [ -n "$SK_TMP" ] && [ -f "$SK_TMP/.sk/mounts" ]; then
		# mountinfo, not stat: a stat on a hung FUSE mount would block; -c for the same reason
		tac "$SK_TMP/.sk/mounts" | while IFS= read -r m; do
			sk__mounted "$m" || continue
			umount -c "$m" 2>/dev/null || umount -c -l "$m" 2>/dev/null ||
				sk__err "cannot unmount $m"
		done
	fi
	# safety net: nothing may stay mounted under SK_TMP before it is removed
	if [ -n "$SK_TMP" ]; then
		awk -v t="$SK_TMP/" 'index($5 "/", t) == 1 { print $5 }' /proc/self/mountinfo |
			sort -r | while IFS= read -r m; do umount -c -l "$m" 2>/dev/null; done
	fi

	for ((i = ${#SK__NSLIST[@]} - 1; i >= 0; i--)); do
		ns=${SK__NSLIST[i]}
		ip netns del "$ns" 2>/dev/null
	done
	SK__NSLIST=()
	# a namespace whose creation failed halfway may exist without being listed
	if [ -n "$SK_PFX" ]; then
		for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
			[[ "$ns" =~ ^${SK_PFX}(br|c|n[0-9]+)$ ]] && ip netns del "$ns" 2>/dev/null
		done
	fi

	if [ -n "$SK_TMP" ] && [ -d "$SK_TMP" ]; then
		if [ "${SK_KEEP:-0}" = 1 ]; then
			sk_diag "SK_KEEP=1: kept $SK_TMP" >&2
		else
			rm -rf --one-file-system -- "$SK_TMP"
		fi
	fi
	return 0
}
