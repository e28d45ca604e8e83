# Shared steps of the mirror scenario tests (sourced by mirror_*.sh, not a test itself).
# shellcheck shell=bash
#
# Two nodes from lib.sh: node 1 runs the primary skfused (FUSE mount on $MT_DIR1, in the host
# mount namespace because lib.sh uses nsenter --net), node 2 the secondary ($MT_DIR2, which
# skfused bind-mounts read-only on itself). The test keeps an fd open on $MT_DIR1 from before
# the mount, so $MT_BACK1 (/proc/<test pid>/fd/N/.) reaches the primary's backing tree under the overlay.
# Contract followed: docs/skfused.md.

: "${SK_SRC:?SK_SRC must point at the source tree}"
: "${SK_BUILD:?SK_BUILD must point at the build tree}"
source "$SK_SRC/test/cluster/lib.sh"

MT_FUSED=$SK_BUILD/fused/skfused
MT_TOOLS=$SK_BUILD/test/tools
MT_PY=/usr/bin/python3
[ -x "$MT_PY" ] || MT_PY=$(command -v python3)
MT_PORT=7411
MT_PID1=
MT_PID2=

mt_bail() {
	echo "Bail out! $*"
	exit 1
}

# mt_init [--client]: two nodes (+ client), a secret, the tools copied where any uid can run them
mt_init() {
	[ -x "$MT_FUSED" ] || mt_bail "skfused not built at $MT_FUSED"
	[ -x "$MT_TOOLS/ackwriter" ] || mt_bail "test tools not built at $MT_TOOLS"
	sk_cluster_init 2 "$@" || mt_bail "sk_cluster_init failed"
	chmod 0711 "$SK_TMP" "${SK_ROOT[1]}" "${SK_ROOT[2]}"
	MT_SECRET=$SK_TMP/secret
	(umask 077 && head -c 32 /dev/urandom | base64 >"$MT_SECRET") || mt_bail "secret"
	mkdir -p "$SK_TMP/tools" && cp "$SK_SRC"/test/tools/*.py "$MT_TOOLS/ackwriter" "$SK_TMP/tools/" &&
		chmod 0755 "$SK_TMP/tools" "$SK_TMP"/tools/* || mt_bail "copying tools"
	mt_instance data "$MT_PORT"
}

# mt_instance TAG PORT: use a fresh pair of directories, control sockets, state dirs and port,
# so one test can run several primary/secondary pairs one after the other
mt_instance() {
	MT_TAG=$1
	MT_PORT=$2
	MT_DIR1=${SK_ROOT[1]}/$1
	MT_DIR2=${SK_ROOT[2]}/$1
	mkdir -p "$MT_DIR1" "$MT_DIR2" || mt_bail "mkdir data dirs"
	MT_CTL1=${SK_ROOT[1]}/run/steadykit/fused-$1.sock
	MT_CTL2=${SK_ROOT[2]}/run/steadykit/fused-$1.sock
	MT_BACK1=
	MT_PID1=
	MT_PID2=
}

mt_log_has_ready() { grep -q ready "$SK_TMP/$1.log" 2>/dev/null; }

# mt_start_secondary [extra skfused args]
mt_start_secondary() {
	local name=fused2.$((++MT_N2))
	sk_track_mount "$MT_DIR2"
	MT_PID2=$(sk_spawn 2 "$name" "$MT_FUSED" --role secondary --dir "$MT_DIR2" \
		--listen "${SK_IP[2]}:$MT_PORT" --secret "$MT_SECRET" --module-id 1 \
		--state "${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG" --ctl "$MT_CTL2" "$@") || return 1
	if ! mt_wait_until 10 mt_log_has_ready "$name"; then
		sk_diag "secondary not ready; log:" "$(tail -n 20 "$SK_TMP/$name.log")"
		return 1
	fi
}

# mt_start_primary [extra skfused args]; opens fd 7 on the backing dir first (once)
mt_start_primary() {
	local name=fused1.$((++MT_N1))
	if [ -z "${MT_BACK1:-}" ]; then
		local fd
		exec {fd}<"$MT_DIR1" || return 1
		MT_BACK1=/proc/$BASHPID/fd/$fd/.
	fi
	sk_track_mount "$MT_DIR1"
	MT_PID1=$(sk_spawn 1 "$name" "$MT_FUSED" --role primary --dir "$MT_DIR1" \
		--peer "${SK_IP[2]}:$MT_PORT" --secret "$MT_SECRET" --module-id 1 \
		--state "${SK_ROOT[1]}/var/lib/steadykit/state-$MT_TAG" --ctl "$MT_CTL1" "$@") || return 1
	if ! mt_wait_until 10 mt_log_has_ready "$name" || ! mountpoint -q "$MT_DIR1"; then
		sk_diag "primary not ready/mounted; log:" "$(tail -n 20 "$SK_TMP/$name.log")"
		return 1
	fi
}
MT_N1=0
MT_N2=0

# mt_status N: the status JSON of node N's skfused
mt_status() {
	local sock=$MT_CTL1
	[ "$1" = 2 ] && sock=$MT_CTL2
	echo '{"cmd":"status"}' | timeout 3 nc -U -N "$sock" 2>/dev/null | head -n1
}

# mt_st N KEY[.SUB]: one field of the status (true/false as printed by json), empty if absent
mt_st() {
	mt_status "$1" | "$MT_PY" -c '
import json, sys
try:
    v = json.loads(sys.stdin.read())
    for k in sys.argv[1].split("."):
        v = v[k]
except Exception:
    sys.exit(1)
print(json.dumps(v) if isinstance(v, bool) else v)' "$2"
}

mt_peer_is() { [ "$(mt_st 1 peer)" = "$1" ]; }

# mt_wait_connected: the primary (fused1.$MT_N1) connected to its peer, waited for as a state while
# it keeps trying. At a loaded host a new session's START can outlast the budget: the peer is
# dropped and the next attempt comes 2, 4, 8 s later. Each attempt is progress; 20 s without one,
# or 60 s in all, is a failure.
mt_wait_connected() {
	local n last=$SECONDS end=$((SECONDS + 60)) tries=0
	while [ $SECONDS -lt $end ]; do
		mt_peer_is connected && return 0
		n=$(grep -c 'connected to peer' "$SK_TMP/fused1.$MT_N1.log" 2>/dev/null)
		if [ "${n:-0}" != "$tries" ]; then
			tries=${n:-0}
			last=$SECONDS
		fi
		[ $((SECONDS - last)) -ge 20 ] && break
		sleep 0.2
	done
	return 1
}

# primary says the peer is connected, in sync, nothing in flight
mt_synced() {
	local s
	s=$(mt_status 1) || return 1
	"$MT_PY" -c '
import json, sys
s = json.loads(sys.argv[1])
ok = s.get("peer") == "connected" and s.get("peer_in_sync") is True and s.get("inflight_ops", 1) == 0
sys.exit(0 if ok else 1)' "$s" 2>/dev/null
}

# mt_wait_until SECONDS cmd...: like sk_wait_for, but bounded by the wall clock too (each try
# of cmd may itself take a while, e.g. a control socket that answers slowly)
mt_wait_until() {
	local end=$((SECONDS + $1))
	shift
	while [ "$SECONDS" -lt "$end" ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}

# mt_wait_synced SECONDS
mt_wait_synced() {
	mt_wait_until "$1" mt_synced && return 0
	sk_diag "not in sync after $1 s; primary status: $(mt_status 1)"
	return 1
}

# mt_treecmp_tap LABEL TIMESFILE|none|all A B [props...]: one TAP line per property (all of
# treecmp's when none are named). Every named property gets its line: a name treecmp does not
# know, a property it did not report, a crash, or differences with no property failing are
# "not ok" too, never silently skipped. Returns treecmp's status (0 identical).
mt_treecmp_tap() {
	local label=$1 times=$2 a=$3 b=$4 out rc=0 prop st n first seen=" " fails=0 props
	shift 4
	props=$(IFS=,; echo "$*")
	out=$("$MT_PY" "$SK_SRC/test/tools/treecmp.py" --summary --times "$times" ${props:+--props "$props"} \
		"$a" "$b" 2>&1) || rc=$?
	if [ "$rc" -ge 2 ]; then
		sk_not_ok "$label: treecmp ran"
		sk_diag "$out"
		return "$rc"
	fi
	while IFS=$'\t' read -r prop st n first; do
		case "$prop" in '#'*|'') continue ;; esac
		seen="$seen$prop "
		if [ "$st" = ok ]; then
			sk_ok "$label: $prop identical"
		else
			fails=$((fails + 1))
			sk_not_ok "$label: $prop identical ($n differences)"
			sk_diag "$(printf '%s\n' "$out" | grep "^# $prop:" | head -n 10)"
		fi
	done <<<"$out"
	for prop in "$@"; do
		[[ "$seen" == *" $prop "* ]] || sk_not_ok "$label: $prop identical (not reported by treecmp)"
	done
	if [ "$seen" = " " ] || { [ "$rc" != 0 ] && [ "$fails" = 0 ]; }; then
		sk_not_ok "$label: treecmp result (exit $rc) matches its report"
		sk_diag "$out"
	fi
	return "$rc"
}

# mt_same_trees [LABEL]: one TAP line, the primary's backing tree and the secondary's identical in
# every treecmp property but times (the first 20 differences shown when not)
mt_same_trees() {
	local label=${1:-primary backing tree and secondary identical} rc=0 out
	out=$("$MT_PY" "$SK_SRC/test/tools/treecmp.py" --summary --times none "$MT_BACK1" "$MT_DIR2" 2>&1) || rc=$?
	if [ "$rc" = 0 ]; then
		sk_ok "$label"
	else
		sk_not_ok "$label (treecmp exit $rc)"
		sk_diag "$(printf '%s\n' "$out" | grep -v "	ok	" | head -n 20)"
	fi
}

# mt_stop_primary: SIGTERM and wait for the unmount
mt_stop_primary() {
	[ -n "$MT_PID1" ] && sk_alive "$MT_PID1" && sk_term "$MT_PID1"
	mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR1'"
}
