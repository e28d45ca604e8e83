#!/usr/bin/env bash
# test/cluster/agent_http.sh: skagentd's HTTP listener: /ready 200 on the PRIM (and ALONE) and 503 on the SECOND
# (and after a swap the other way round), /metrics is Prometheus text, /state is JSON, anything but
# GET of those paths is refused, and the listener answers on its configured address only.
#
# node1 takes its address from cluster.json ("http": {"listen": "10.99.0.1:9100"}), node2 from
# `skagentd --http 10.99.0.2:9100`; the client asks from its own namespace.
set -u
source "$SK_SRC/test/cluster/agent_common.sh"

PORT=9100
at_init
# node1: the listener in cluster.json (its own copy of the file in this test)
python3 - "${SK_ROOT[1]}/etc/steadykit/cluster.json" "${SK_IP[1]}:$PORT" <<-'EOF' || at_bail "config"
	import json, sys
	p = sys.argv[1]
	d = json.load(open(p))
	d["http"] = {"listen": sys.argv[2]}
	json.dump(d, open(p, "w"), indent=2)
EOF
AT_N[1]=1
AT_AGENT_PID[1]=$(sk_spawn 1 agent1.1 "$AT_AGENTD" --root "${SK_ROOT[1]}" --node node1) || at_bail "agent 1"
AT_N[2]=1
AT_AGENT_PID[2]=$(sk_spawn 2 agent2.1 "$AT_AGENTD" --root "${SK_ROOT[2]}" --node node2 \
	--http "${SK_IP[2]}:$PORT") || at_bail "agent 2"

fresh_roles() { at_code_is 1 3 && at_code_is 2 4; }
if ! sk_wait_for 30 fresh_roles; then
	sk_diag "$(at_agent_log 1 | tail -20)"
	at_bail "no PRIM/SECOND pair"
fi
sk_ok "fresh start: node1 PRIM, node2 SECOND"

# code N PATH [curl args]: the HTTP status node N's listener gives the client
code() {
	local n=$1 path=$2
	shift 2
	sk_client curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" \
		"http://${SK_IP[$n]}:$PORT$path" 2>/dev/null
}
code_is() {
	local n=$1 p=$2 want=$3
	shift 3
	[ "$(code "$n" "$p" "$@")" = "$want" ]
}

sk_check "node1 (PRIM) /ready answers 200" sk_wait_for 3 code_is 1 /ready 200
sk_check "node2 (SECOND) /ready answers 503" sk_wait_for 3 code_is 2 /ready 503
sk_check "node1 /ready?m=mirror answers 200" code_is 1 '/ready?m=mirror' 200
sk_check "node2 /ready?m=mirror answers 503" code_is 2 '/ready?m=mirror' 503
sk_check "/ready?m=nosuch answers 404" code_is 1 '/ready?m=nosuch' 404

# /metrics: every line a comment or `name{labels} value`; the state gauges are there
metrics_ok() {
	sk_client curl -fsS --max-time 2 "http://${SK_IP[$1]}:$PORT/metrics" >"$SK_TMP/metrics$1" 2>&1 ||
		return 1
	python3 - "$SK_TMP/metrics$1" "$2" <<-'EOF'
	import re, sys
	line_re = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? '
	                     r'(-?[0-9.eE+-]+|NaN|[+-]Inf)$')
	n = 0
	for ln in open(sys.argv[1]).read().splitlines():
	    if ln.startswith("#"):
	        continue
	    if not line_re.match(ln):
	        print("bad line: %r" % ln)
	        sys.exit(1)
	    n += 1
	text = open(sys.argv[1]).read()
	want = sys.argv[2]
	if want not in text.splitlines():
	    print("missing: " + want)
	    sys.exit(1)
	if n < 20:
	    print("only %d samples" % n)
	    sys.exit(1)
	EOF
}
sk_check "node1 /metrics is Prometheus text, module state PRIM" \
	metrics_ok 1 'steadykit_module_state{module="mirror",node="node1",state="PRIM"} 1'
sk_check "node2 /metrics is Prometheus text, module state SECOND" \
	metrics_ok 2 'steadykit_module_state{module="mirror",node="node2",state="SECOND"} 1'
sk_check "node2 /metrics shows the peer's state (node1 PRIM)" \
	grep -qx 'steadykit_module_state{module="mirror",node="node1",state="PRIM"} 1' "$SK_TMP/metrics2"
sk_check "node1 /metrics has heartbeat link gauges per network" \
	grep -qx 'steadykit_heartbeat_link_up{peer="node2",network="backup"} 1' "$SK_TMP/metrics1"
sk_check "node1 /metrics has skfused's in-flight bytes" \
	sk_wait_for 5 sh -c "curl_out=\$(ip netns exec $SK_CLIENT_NS curl -fsS --max-time 2 http://${SK_IP[1]}:$PORT/metrics) && printf '%s\n' \"\$curl_out\" | grep -q '^steadykit_replication_inflight_bytes{module=\"mirror\"} '"
sk_check "node1 /metrics counts its start as primary in failovers_total" \
	sh -c "grep -E '^steadykit_failovers_total\{module=\"mirror\",cause=\"[a-z_]+\"\} [1-9]' '$SK_TMP/metrics1'"

state_ok() {
	sk_client curl -fsS --max-time 2 "http://${SK_IP[$1]}:$PORT/state" |
		python3 -c 'import json,sys; d=json.load(sys.stdin); m=d["modules"][0]
assert d["node"]==sys.argv[1], d["node"]; assert m["name"]=="mirror"; assert m["state"]==sys.argv[2], m["state"]' \
			"node$1" "$2"
}
sk_check "node1 /state is JSON: node1, mirror PRIM" state_ok 1 PRIM
sk_check "node2 /state is JSON: node2, mirror SECOND" state_ok 2 SECOND

sk_check "POST /ready is refused (405)" code_is 1 /ready 405 -X POST --data x
sk_check "PUT /state is refused (405)" code_is 1 /state 405 -X PUT --data x
sk_check "an unknown path is refused (404)" code_is 1 /etc/passwd 404
sk_check "/ with a query is refused (404)" code_is 1 '/?x=1' 404
long=$(printf 'a%.0s' $(seq 1 400))
sk_check "a 400-byte URL is refused (414)" code_is 1 "/$long" 414
refused_counted() {
	sk_client curl -fsS --max-time 2 "http://${SK_IP[1]}:$PORT/metrics" |
		grep -Eq '^steadykit_refused_total\{what="http"\} ([5-9]|[1-9][0-9]+)$'
}
# /metrics is a snapshot taken every SNAP_MS (agent/http.c): the last refusal shows in the next one
sk_check "refused HTTP requests are counted in /metrics" sk_wait_for 5 refused_counted

# only the configured address: not on the VIP node1 holds, not on its IPv6 or loopback
not_on() { ! sk_client curl -s -o /dev/null --max-time 2 "$1" 2>/dev/null; }
sk_check "node1's listener is not reachable on the VIP ($AT_VIP)" not_on "http://$AT_VIP:$PORT/ready"
sk_check "node1's listener is not reachable on 127.0.0.1 inside its namespace" \
	sh -c "! ip netns exec ${SK_NS[1]} curl -s -o /dev/null --max-time 2 http://127.0.0.1:$PORT/ready"
sk_check "node1's listener is not reachable on its IPv6 address" \
	sh -c "! ip netns exec ${SK_NS[1]} curl -s -o /dev/null --max-time 2 'http://[fd99::1]:$PORT/ready'"
sk_check "node1 listens on ${SK_IP[1]}:$PORT and nowhere else" \
	sh -c "[ \"\$(ip netns exec ${SK_NS[1]} ss -Hltn 'sport = :$PORT' | awk '{print \$4}')\" = '${SK_IP[1]}:$PORT' ]"

# a swap moves /ready: node2 200, node1 503
in_sync() { at_code_is 2 4 && [ "$(at_field 2 uptodate)" = true ]; }
sk_wait_for 20 in_sync || sk_diag "node2 not in sync after 20 s"
at_ctl 1 swap -m "$AT_MOD" >"$SK_TMP/swap.out" 2>&1 || sk_diag "swap: $(cat "$SK_TMP/swap.out")"
swapped() { at_code_is 2 3 && at_code_is 1 4; }
sk_check "swap: node2 PRIM, node1 SECOND" sk_wait_for 30 swapped
sk_check "after the swap node2 /ready answers 200" sk_wait_for 3 code_is 2 /ready 200
sk_check "after the swap node1 /ready answers 503" sk_wait_for 3 code_is 1 /ready 503
handover_counted() {
	sk_client curl -fsS --max-time 2 "http://${SK_IP[2]}:$PORT/metrics" |
		grep -Eq '^steadykit_failovers_total\{module="mirror",cause="handover"\} [1-9]'
}
# (waited for: it failed once at load 16, with /ready already 200; cause not found)
sk_check "node2 counts the swap in failovers_total{cause=\"handover\"}" sk_wait_for 5 handover_counted

# a stopped agent stops its listener (the HTTP thread joins at exit)
sk_term "${AT_AGENT_PID[2]}"
gone() { ! sk_alive "${AT_AGENT_PID[2]}"; }
sk_check "node2's agent exits on SIGTERM with its HTTP thread" sk_wait_for 30 gone
sk_check "node2's listener is closed after exit" not_on "http://${SK_IP[2]}:$PORT/ready"
alone() { at_code_is 1 2; }
sk_check "node2 gone: node1 takes the module over, ALONE" sk_wait_for 30 alone
sk_check "node1 ALONE (serving without a peer) /ready answers 200" sk_wait_for 3 code_is 1 /ready 200
sk_check "node2's agent log has no sanitizer report (ASan/UBSan/LSan builds)" \
	sh -c "! grep -q 'Sanitizer\|runtime error' '$SK_TMP/agent2.1.log'"
sk_done
