# Shared steps of the agent scenario tests (sourced by agent_*.sh, not a test itself).
# shellcheck shell=bash
#
# Two nodes from lib.sh, each with its own --root: etc/steadykit/{cluster.json,secret},
# var/lib/steadykit/modules/mirror/{userconfig.json,bin/} (the example scripts: a web server on
# the VIP publishing the replicated directory), and a skagentd started by at_start N.
# Heartbeats every 100 ms on two networks, "lan" (IPv4, lib.sh's 10.99.0.N) and "backup" (IPv6
# fd99::N on the same eth0), a peer is dead after 400 ms of silence on both.

: "${SK_SRC:?SK_SRC must point at the source tree}"
: "${SK_BUILD:?SK_BUILD must point at the build tree}"
source "$SK_SRC/test/cluster/lib.sh"

AT_AGENTD=$SK_BUILD/agent/skagentd
AT_SKCTL=$SK_BUILD/cli/skctl
AT_TOOLS=$SK_BUILD/test/tools
AT_VIP=10.99.0.50
AT_MOD=mirror
AT_DATA_REL=/srv/mirror/data
declare -a AT_AGENT_PID AT_N

at_bail() {
	echo "Bail out! $*"
	exit 1
}

# at_init: cluster + client, configuration on both nodes
at_init() {
	local i root
	for f in "$AT_AGENTD" "$AT_SKCTL" "$SK_BUILD/fused/skfused"; do
		[ -x "$f" ] || at_bail "not built: $f"
	done
	command -v python3 >/dev/null || at_bail "python3 missing"
	command -v curl >/dev/null || at_bail "curl missing"
	sk_cluster_init 2 --client || at_bail "sk_cluster_init failed"
	(umask 077 && head -c 32 /dev/urandom | base64 >"$SK_TMP/secret") || at_bail "secret"
	for i in 1 2; do
		root=${SK_ROOT[$i]}
		mkdir -p "$root/etc/steadykit" "$root/var/lib/steadykit/modules/$AT_MOD/bin" \
			"$root$AT_DATA_REL" || at_bail "mkdir"
		install -m 0600 "$SK_TMP/secret" "$root/etc/steadykit/secret" || at_bail "secret copy"
		sk_in "$i" ip -6 addr add "fd99::$i/64" dev eth0 nodad || at_bail "IPv6 address"
		cat >"$root/etc/steadykit/cluster.json" <<-EOF
		{
		  "cluster": "test",
		  "secret_file": "/etc/steadykit/secret",
		  "networks": ["lan", "backup"],
		  "nodes": [
		    { "name": "node1", "id": 1, "addresses": { "lan": "${SK_IP[1]}", "backup": "fd99::1" } },
		    { "name": "node2", "id": 2, "addresses": { "lan": "${SK_IP[2]}", "backup": "fd99::2" } }
		  ],
		  "heartbeat": { "interval_ms": 100, "timeout_ms": 400 }
		}
		EOF
		cat >"$root/var/lib/steadykit/modules/$AT_MOD/userconfig.json" <<-EOF
		{
		  "name": "$AT_MOD",
		  "id": 1,
		  "kind": "mirror",
		  "nodes": ["node1", "node2"],
		  "vip": { "addr": "$AT_VIP", "prefix": 24, "interface": "eth0" },
		  "replication": { "dirs": ["$AT_DATA_REL"], "mode": "sync", "latency_budget_ms": 2000 },
		  "scripts": { "start_prim": { "timeout_s": 20 }, "stop_prim": { "timeout_s": 20 } }
		}
		EOF
		cp "$SK_SRC/examples/mirror/bin/stop_prim" "$root/var/lib/steadykit/modules/$AT_MOD/bin/" &&
			cp "$SK_SRC/examples/mirror/bin/start_prim" \
				"$root/var/lib/steadykit/modules/$AT_MOD/bin/start_prim.example" || at_bail "scripts"
		# the example's start_prim, failing on purpose while state/mirror/fail-start_prim exists
		cat >"$root/var/lib/steadykit/modules/$AT_MOD/bin/start_prim" <<-'EOF'
		#!/bin/sh
		if [ -e "$SK_STATE_DIR/fail-start_prim" ]; then
			echo "start_prim fails on purpose (test marker $SK_STATE_DIR/fail-start_prim)"
			exit 1
		fi
		# hangs while state/mirror/hang-start_prim exists (a transition caught in the middle)
		if [ -e "$SK_STATE_DIR/hang-start_prim" ]; then
			echo "start_prim hangs on purpose (pid $$)"
			echo $$ >"$SK_STATE_DIR/hang-start_prim.pid"
			sleep 60
		fi
		exec "$SK_MODULE_DIR/bin/start_prim.example"
		EOF
		chmod 0755 "$root/var/lib/steadykit/modules/$AT_MOD/bin/start_prim" || at_bail "scripts"
		sk_track_mount "$root$AT_DATA_REL"
		AT_N[$i]=0
	done
}

# at_mirror_module N NAME ID NODES VIP DATA_REL [SCRIPTS [EXTRA]]: one more mirror module on node N,
# NODES its "nodes" (JSON strings, e.g. '"node2", "node1"'), its data in DATA_REL; SCRIPTS 1 gives it
# the example's start_prim and stop_prim; EXTRA: more members of its userconfig.json
at_mirror_module() {
	local root=${SK_ROOT[$1]} md=${SK_ROOT[$1]}/var/lib/steadykit/modules/$2 scripts=
	mkdir -p "$md/bin" "$root$6" || at_bail "mkdir $2"
	[ "${7:-0}" = 1 ] && scripts=',
	  "scripts": { "start_prim": { "timeout_s": 20 }, "stop_prim": { "timeout_s": 20 } }'
	cat >"$md/userconfig.json" <<-EOF
	{
	  "name": "$2",
	  "id": $3,
	  "kind": "mirror",
	  "nodes": [$4],
	  "vip": { "addr": "$5", "prefix": 24, "interface": "eth0" },
	  "replication": { "dirs": ["$6"], "mode": "sync", "latency_budget_ms": 2000 }$scripts${8:+,
	  $8}
	}
	EOF
	if [ "${7:-0}" = 1 ]; then
		cp "$SK_SRC/examples/mirror/bin/start_prim" "$SK_SRC/examples/mirror/bin/stop_prim" "$md/bin/" ||
			at_bail "$2 scripts"
	fi
	sk_track_mount "$root$6"
}

at_data() { printf '%s%s\n' "${SK_ROOT[$1]}" "$AT_DATA_REL"; }
at_state_dir() { printf '%s/var/lib/steadykit/state/%s\n' "${SK_ROOT[$1]}" "$AT_MOD"; }

# at_start N: start node N's agent
at_start() {
	local n=$1 name
	AT_N[$n]=$((AT_N[$n] + 1))
	name=agent$n.${AT_N[$n]}
	AT_AGENT_PID[$n]=$(sk_spawn "$n" "$name" "$AT_AGENTD" --root "${SK_ROOT[$n]}" --node "node$n") ||
		return 1
}

at_agent_log() { cat "$SK_TMP/agent$1.${AT_N[$1]}.log"; }

at_ctl() {
	local n=$1
	shift
	"$AT_SKCTL" --root "${SK_ROOT[$n]}" "$@"
}

# at_code N: skctl state -m mirror -lq exit code of node N (STOP 0 WAIT 1 ALONE 2 PRIM 3 SECOND 4)
at_code() {
	local rc=0
	at_ctl "$1" state -m "$AT_MOD" -lq 2>/dev/null || rc=$?
	echo "$rc"
}

at_is_primary() { local c; c=$(at_code "$1"); [ "$c" = 2 ] || [ "$c" = 3 ]; }
at_is_second() { [ "$(at_code "$1")" = 4 ]; }
at_code_is() { [ "$(at_code "$1")" = "$2" ]; }

# the JSON field of module mirror in node N's state
at_field() {
	at_ctl "$1" state -m "$AT_MOD" --json 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); m=d["modules"][0]; print(str(m[sys.argv[1]]).lower())' "$2" 2>/dev/null
}

# at_in_sync N: node N is SECOND with an up-to-date copy
at_in_sync() { at_code_is "$1" 4 && [ "$(at_field "$1" uptodate)" = true ]; }

at_fresh_roles() { at_code_is 1 3 && at_code_is 2 4; }
# at_start_pair: agents 1 and 2 started; bails unless node1 becomes PRIM and node2 SECOND in 30 s
at_start_pair() {
	at_start 1 || at_bail "agent 1"
	at_start 2 || at_bail "agent 2"
	if ! sk_wait_for 30 at_fresh_roles; then
		sk_diag "$(at_agent_log 1 | tail -20)"
		at_bail "no PRIM/SECOND pair"
	fi
	sk_ok "fresh start: node1 PRIM, node2 SECOND"
}

at_counter() {
	at_ctl "$1" state --json 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"][sys.argv[1]])' "$2" 2>/dev/null
}

at_holds_vip() { sk_in "$1" ip -o addr show dev eth0 2>/dev/null | grep -q " $AT_VIP/"; }

# the primary's node number (one of 1, 2), or nothing
at_primary() {
	local i
	for i in 1 2; do at_is_primary "$i" && { echo "$i"; return 0; }; done
	return 1
}

at_fetch() { sk_client curl -fsS --max-time 0.5 "http://$AT_VIP/$1"; }

# at_pids_of N: every process in node N's namespace (all started by this run)
at_pids_of() { ip netns pids "${SK_NS[$1]}" 2>/dev/null; }

# at_fused_pid N: skfused of node N (a child of its agent)
at_fused_pid() {
	local p
	for p in $(at_pids_of "$1"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = skfused ] && { echo "$p"; return 0; }
	done
	return 1
}

# at_wait_served T0_NS MAX_S URL_PATH: poll the client every 50 ms; prints the ms from T0 (the
# fault) to the first successful answer; 1 on timeout
at_wait_served() {
	local t0=$1 max_ms=$(($2 * 1000)) now i
	shift
	for ((i = 0; i < 2000; i++)); do
		if at_fetch "$2" >/dev/null 2>&1; then
			now=$(date +%s%N)
			echo $(((now - t0) / 1000000))
			return 0
		fi
		now=$(date +%s%N)
		[ $(((now - t0) / 1000000)) -ge "$max_ms" ] && return 1
		sleep 0.05
	done
	return 1
}
