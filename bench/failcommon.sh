# bench/failcommon.sh: shared by failover.sh and soak.sh (sourced): a two-node mirror cluster
# driven by skagentd in lib.sh namespaces, and the questions the benchmarks ask it.
# shellcheck shell=bash
# Needs: src, build, AGENTD, SKCTL and RES (results dir, with logs/) set by the caller.
# shellcheck source=../test/cluster/lib.sh
source "$src/test/cluster/lib.sh"
VIP=10.99.0.50
MOD=mirror
DATA_REL=/srv/mirror/data
declare -a AGENT_PID NSTART

fb_save_logs() {
	[ -n "${SK_TMP:-}" ] && [ -d "$SK_TMP" ] || return 0
	cp "$SK_TMP"/*.log "$RES/logs/" 2>/dev/null
	local i
	for i in 1 2; do
		cp "${SK_ROOT[$i]}/var/lib/steadykit/state/$MOD/module.log" "$RES/logs/module-n$i.log" 2>/dev/null
		cp "${SK_ROOT[$i]}/var/lib/steadykit/state/$MOD/transitions.jsonl" \
			"$RES/logs/transitions-n$i.jsonl" 2>/dev/null
	done
	return 0
}
# A signal can run the trap inside a $(...) subshell. lib.sh's handler then exits that subshell
# normally, and bash, whose child did not die of the signal, drops the SIGINT it got too: a Ctrl-C
# ended the soak loop and printed a summary. Dying of the signal makes the main shell act on it.
fb_on_signal() {
	[ "$BASHPID" = "$SK__OWNER" ] && exit "$2"
	trap - "$1"
	kill -s "$1" "$BASHPID"
	exit "$2"
}
fb_exit() {
	local rc=$?
	fb_save_logs
	(exit "$rc")
	sk__on_exit
}

# --foreground: a plain timeout moves itself to its own process group, so a Ctrl-C would not reach
# it, it would exit normally, and bash (waiting for it) would then ignore the SIGINT it got too.
ctl() { local n=$1; shift; timeout --foreground 10 "$SKCTL" --root "${SK_ROOT[$n]}" "$@"; }
code() { local rc=0; ctl "$1" state -m "$MOD" -lq 2>/dev/null || rc=$?; echo "$rc"; }
is_primary() { local c; c=$(code "$1"); [ "$c" = 2 ] || [ "$c" = 3 ]; }
not_primary() { ! is_primary "$1"; }
uptodate() {
	ctl "$1" state -m "$MOD" --json 2>/dev/null |
		python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["modules"][0]["uptodate"] else 1)' 2>/dev/null
}
# grep reads everything: with pipefail, grep -q could stop first and fail the pipe with ip's SIGPIPE
holds_vip() { sk_in "$1" ip -o addr show dev eth0 2>/dev/null | grep " $VIP/" >/dev/null; }
served() { sk_client curl -fsS --max-time 0.5 -o /dev/null "http://$VIP/hello.txt"; }
# ready P: P PRIM holding the VIP, the other SECOND and up to date, the client served
ready() {
	local p=$1 s=$((3 - $1))
	[ "$(code "$p")" = 3 ] && [ "$(code "$s")" = 4 ] && uptodate "$s" && holds_vip "$p" && served
}
primary() { local i; for i in 1 2; do is_primary "$i" && { echo "$i"; return 0; }; done; return 1; }
# settled: either node ready as the primary (after a fault the old primary may still say PRIM while
# it steps down, so the primary is only known once the cluster has settled)
settled() { ready 1 || ready 2; }

start_agent() {
	local n=$1
	NSTART[$n]=$((${NSTART[$n]:-0} + 1))
	AGENT_PID[$n]=$(sk_spawn "$n" "agent$n.${NSTART[$n]}" "$AGENTD" --root "${SK_ROOT[$n]}" \
		--node "node$n") || return 1
}

# fb_cluster: two nodes + client, the example mirror module on both (its start_prim serves the
# replicated directory over HTTP on the VIP); heartbeat timing from HB_INTERVAL_MS/HB_TIMEOUT_MS
# or the product's defaults. WITNESS=1: node3 runs `skagentd --witness` (the lease witness, with
# the product's default lease unless LEASE_MS is set) and the module's latency budget is above
# lease + margin, as docs/agent.md asks. Saves the logs to $RES/logs at exit, then lib.sh cleans up.
fb_cluster() {
	local i r wnode= wit= budget=
	if [ "${WITNESS:-0}" = 1 ]; then
		sk_cluster_init 3 --client || { echo "sk_cluster_init failed" >&2; return 1; }
		wnode=",
		    { \"name\": \"node3\", \"id\": 3, \"role\": \"witness\", \"addresses\": { \"lan\": \"${SK_IP[3]}\" } }"
		wit=", \"witness\": { ${LEASE_MS:+\"lease_ms\": $LEASE_MS} }"
		budget=", \"latency_budget_ms\": $((3 * ${LEASE_MS:-1000}))"
	else
		sk_cluster_init 2 --client || { echo "sk_cluster_init failed" >&2; return 1; }
	fi
	trap fb_exit EXIT
	trap 'fb_on_signal INT 130' INT
	trap 'fb_on_signal TERM 143' TERM
	(umask 077 && head -c 32 /dev/urandom | base64 >"$SK_TMP/secret") || return 1
	HB=
	if [ -n "${HB_INTERVAL_MS:-}" ] || [ -n "${HB_TIMEOUT_MS:-}" ]; then
		HB=", \"heartbeat\": { \"interval_ms\": ${HB_INTERVAL_MS:-200}, \"timeout_ms\": ${HB_TIMEOUT_MS:-1000} }"
	fi
	for i in 1 2 ${wnode:+3}; do
		r=${SK_ROOT[$i]}
		mkdir -p "$r/etc/steadykit" "$r/var/lib/steadykit/modules/$MOD/bin" "$r$DATA_REL" || return 1
		install -m 0600 "$SK_TMP/secret" "$r/etc/steadykit/secret" || return 1
		cat >"$r/etc/steadykit/cluster.json" <<-EOF
		{
		  "cluster": "failbench",
		  "secret_file": "/etc/steadykit/secret",
		  "networks": ["lan"],
		  "nodes": [
		    { "name": "node1", "id": 1, "addresses": { "lan": "${SK_IP[1]}" } },
		    { "name": "node2", "id": 2, "addresses": { "lan": "${SK_IP[2]}" } }$wnode
		  ]$HB$wit
		}
		EOF
		[ "$i" = 3 ] && continue # the witness runs no module
		cat >"$r/var/lib/steadykit/modules/$MOD/userconfig.json" <<-EOF
		{
		  "name": "$MOD", "id": 1, "kind": "mirror", "nodes": ["node1", "node2"],
		  "vip": { "addr": "$VIP", "prefix": 24, "interface": "eth0" },
		  "replication": { "dirs": ["$DATA_REL"], "mode": "sync"$budget },
		  "scripts": { "start_prim": { "timeout_s": 30 }, "stop_prim": { "timeout_s": 30 } }
		}
		EOF
		cp "$src/examples/mirror/bin/start_prim" "$src/examples/mirror/bin/stop_prim" \
			"$r/var/lib/steadykit/modules/$MOD/bin/" || return 1
		sk_track_mount "$r$DATA_REL"
	done
}

# fb_witness: start node3's lease witness (WITNESS=1), before the nodes' agents
fb_witness() {
	[ "${WITNESS:-0}" = 1 ] || return 0
	WITNESS_PID=$(sk_spawn 3 witness "$AGENTD" --root "${SK_ROOT[3]}" --node node3 --witness)
}
fb_witness_desc() {
	[ "${WITNESS:-0}" = 1 ] && echo "lease witness on node3, lease ${LEASE_MS:-1000 (default)} ms" ||
		echo "none"
}

fb_hb_desc() {
	if [ -n "$HB" ]; then
		echo "interval ${HB_INTERVAL_MS:-200} ms, timeout ${HB_TIMEOUT_MS:-1000} ms"
	else
		echo "product defaults (no heartbeat section in cluster.json)"
	fi
}
