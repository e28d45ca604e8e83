#!/bin/bash
# test/cluster/agent_farm.sh: skagentd runs a farm module on three nodes sharing a VIP, nothing else decides.
#
# Each node: skagentd with --root (its own bpffs at ROOT/sys/fs/bpf), module "web" (kind farm, rule
# client, weights 100/100/100), start_both starting farmsrv (answers with the node's name) on the VIP,
# a process checker on farmsrv with action "failover". The client has 64 source addresses.
#  A. all three UP (skctl -lq exit 2), filter on eth0, VIP on lo; 64 sources served, split over 3.
#  B. kill -9 of every process of node3: within a second the 64 sources are served by node1/node2,
#     only node3's sources moved, the survivors' long connections unbroken.
#  C. node3's agent again: it takes exactly its sources back, long connections unbroken.
#  D. node2's script checker starts failing (a marker file), farmsrv still running: node2 leaves
#     (WAIT), its sources move, every long connection survives, node2's own included (they drain).
#  E. the checker passes again: node2 rejoins with its sources, no long connection broken.
#  F. node3's checker has action "restart" (its own copy of userconfig.json): its farmsrv killed ->
#     it leaves, stop_both + start_both restart farmsrv, the checker passes, node3 is back UP;
#     the others' long connections unbroken.
#  G0. SIGHUP to node1's agent (re-exec in place): the module is taken over as UP, start_both not
#     run again (same farmsrv), no source moved, no long connection broken; node2 and node3
#     heard its restart notice (they hold their verdict instead of taking its buckets).
#  G. skctl stop on node1: filter and VIP gone from node1, the others serve everything.
set -u
: "${SK_SRC:?}" "${SK_BUILD:?}"
source "$SK_SRC/test/cluster/lib.sh"

AGENTD=$SK_BUILD/agent/skagentd
SKCTL=$SK_BUILD/cli/skctl
SRV=$SK_BUILD/test/farmtools/farmsrv
CLI=$SK_BUILD/test/farmtools/farmcli
VIP=10.99.0.201
VMAC=02:5b:00:00:00:07
MOD=web
for b in "$AGENTD" "$SKCTL" "$SRV" "$CLI"; do
	[ -x "$b" ] || { echo "Bail out! $b not built"; exit 1; }
done
bail() { echo "Bail out! $*"; exit 1; }
# Heartbeats every 100 ms, a node dead after 400 ms of silence; an AddressSanitizer build on a loaded
# host stalls its loop past 400 ms now and then (a false death moves buckets at once and breaks
# connections), so there the timeout is 1000 ms and the bound on the death's move 4 s.
HB_TIMEOUT_MS=400 MOVE_MAX_MS=1500
if nm "$AGENTD" 2>/dev/null | grep -q ' __asan_init$'; then HB_TIMEOUT_MS=1000 MOVE_MAX_MS=4000; fi

sk_cluster_init 3 --client || bail "cluster init failed"
(umask 077 && head -c 32 /dev/urandom | base64 >"$SK_TMP/secret") || bail "secret"
declare -a AG NRUN
for i in 1 2 3; do
	root=${SK_ROOT[$i]}
	mdir=$root/var/lib/steadykit/modules/$MOD
	mkdir -p "$mdir/bin" "$root/sys/fs/bpf" || bail "mkdir"
	mount -t bpf bpf "$root/sys/fs/bpf" && sk_track_mount "$root/sys/fs/bpf" || bail "bpffs"
	install -m 0600 "$SK_TMP/secret" "$root/etc/steadykit/secret" || bail "secret copy"
	cat >"$root/etc/steadykit/cluster.json" <<-EOF
	{ "cluster": "farmtest", "secret_file": "/etc/steadykit/secret", "networks": ["lan"],
	  "nodes": [ { "name": "node1", "id": 1, "addresses": { "lan": "${SK_IP[1]}" } },
	             { "name": "node2", "id": 2, "addresses": { "lan": "${SK_IP[2]}" } },
	             { "name": "node3", "id": 3, "addresses": { "lan": "${SK_IP[3]}" } } ],
	  "heartbeat": { "interval_ms": 100, "timeout_ms": $HB_TIMEOUT_MS } }
	EOF
	cat >"$mdir/userconfig.json" <<-EOF
	{ "name": "$MOD", "id": 7, "kind": "farm",
	  "nodes": [ "node1", "node2", "node3" ],
	  "vip": { "addr": "$VIP", "prefix": 32, "interface": "eth0", "mac": "$VMAC",
	           "rule": "client", "ports": [80] },
	  "checkers": [ { "type": "process", "process": "farmsrv", "interval_ms": 200,
	                  "timeout_ms": 100, "failures": 1, "action": "failover" },
	                { "type": "script", "path": "check_app", "interval_ms": 500,
	                  "timeout_ms": 450, "failures": 2, "action": "failover" } ],
	  "scripts": { "start_both": { "timeout_s": 10 }, "stop_both": { "timeout_s": 10 } } }
	EOF
	cat >"$mdir/bin/start_both" <<-EOF
	#!/bin/sh
	# the application: a web server on the VIP answering with this node's name
	: >"\$SK_STATE_DIR/farmsrv.log"
	"$SRV" --name "\$SK_NODE" --bind "\$SK_VIP" --port 80 >>"\$SK_STATE_DIR/farmsrv.log" 2>&1 </dev/null &
	echo \$! >"\$SK_STATE_DIR/farmsrv.pid"
	for i in \$(seq 50); do grep -q listening "\$SK_STATE_DIR/farmsrv.log" && exit 0; sleep 0.1; done
	echo "farmsrv did not start"; exit 1
	EOF
	cat >"$mdir/bin/stop_both" <<-'EOF'
	#!/bin/sh
	[ -f "$SK_STATE_DIR/farmsrv.pid" ] && kill "$(cat "$SK_STATE_DIR/farmsrv.pid")" 2>/dev/null
	rm -f "$SK_STATE_DIR/farmsrv.pid"
	exit 0
	EOF
	# the script checker fails while the test's marker for this node exists
	printf '#!/bin/sh\n[ ! -e "%s" ]\n' "$SK_TMP/fail-check$i" >"$mdir/bin/check_app"
	chmod 0755 "$mdir/bin/start_both" "$mdir/bin/stop_both" "$mdir/bin/check_app" || bail "scripts"
	NRUN[$i]=0
done
# node3 restarts its application when a checker fails (each node reads its own copy)
sed -i 's/"action": "failover"/"action": "restart"/' "${SK_ROOT[3]}/var/lib/steadykit/modules/$MOD/userconfig.json"

SRCS=
for i in $(seq 101 164); do
	sk_client ip addr add "10.99.0.$i/24" dev eth0 || bail "client address"
	SRCS+="${SRCS:+,}10.99.0.$i"
done

start_agent() {
	NRUN[$1]=$((NRUN[$1] + 1))
	AG[$1]=$(sk_spawn "$1" "agent$1.${NRUN[$1]}" "$AGENTD" --root "${SK_ROOT[$1]}" --node "node$1")
}
alog() { cat "$SK_TMP/agent$1.${NRUN[$1]}.log" 2>/dev/null; }
modlog() { cat "${SK_ROOT[$1]}/var/lib/steadykit/state/$MOD/module.log" 2>/dev/null; }
code() { local rc=0; "$SKCTL" --root "${SK_ROOT[$1]}" state -m "$MOD" -lq >/dev/null 2>&1 || rc=$?; echo "$rc"; }
code_is() { [ "$(code "$1")" = "$2" ]; }
all_up() { code_is 1 2 && code_is 2 2 && code_is 3 2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# burst FILE: one connection from each of the 64 sources; "node NAME COUNT" lines and a total
burst() { sk_client "$CLI" burst --vip "$VIP" --src "$SRCS" --n 64 --conc 64 --timeout-ms "${2:-1000}" >"$1" 2>&1; }
count_of() { awk -v n="$2" '$1 == "node" && $2 == n { print $3; f = 1 } END { if (!f) print 0 }' "$1"; }
all_served() { burst "$1" 500 && grep -q "total=64 ok=64 failed=0" "$1"; }
# srcmap FILE: "source node" for every source (one connection from each, node "none" if it failed)
srcmap() {
	sk_client "$CLI" burst --vip "$VIP" --src "$SRCS" --n 64 --conc 64 --timeout-ms 2000 --map 1 \
		2>/dev/null | awk '$1 == "src" { print $2, $3 }' | sort >"$1"
}
# moved A B: sources whose node differs between two maps
moved() { join "$1" "$2" | awk '$2 != $3' | wc -l; }
# same_except A B NODE: every source not on NODE in A is on the same node in B
same_except() { join "$1" "$2" | awk -v n="$3" '$2 != n && $2 != $3 { bad++ } END { exit bad > 0 }'; }
hold() { sk_spawn_client "$1" "$CLI" hold --vip "$VIP" --src "$SRCS" --n 64 --interval-ms 200 \
	--timeout-ms 4000 --seconds 90 --status "$SK_TMP/$1"; }
hold_field() {
	awk -v n="$2" -v f="$3" '$1 == "node" && $2 == n { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' "$1"
}
hold_ready() { grep -q "ok=64 broken=0 unknown=0" "$1"; }
xdp_on() { sk_in "$1" ip link show eth0 | grep -q xdp; }
vip_on_lo() { sk_in "$1" ip addr show lo | grep -q "$VIP/"; }

# --- A: three agents bring the farm up -----------------------------------------------------
t0=$(now_ms)
for i in 1 2 3; do start_agent "$i" || bail "agent $i"; done
if sk_wait_for 20 all_up; then
	sk_ok "three agents: module $MOD UP on every node (skctl state -lq exit 2) in $(($(now_ms) - t0)) ms"
else
	sk_not_ok "module UP on every node (codes $(code 1) $(code 2) $(code 3))"
	for i in 1 2 3; do sk_diag "node$i: $(alog "$i" | tail -8)"; done
	bail "no farm"
fi
ok=1
for i in 1 2 3; do xdp_on "$i" && vip_on_lo "$i" || ok=0; done
[ $ok = 1 ] && ! sk_in 1 ip addr show eth0 | grep -q "$VIP/" &&
	sk_ok "filter attached on eth0 and VIP on lo on every node (not on eth0: the virtual MAC answers ARP)" ||
	sk_not_ok "filter on eth0 and VIP on lo everywhere"
alog 1 | grep -q "dispatcher" && sk_ok "the agent says how the filter is attached (libxdp dispatcher or alone)" ||
	sk_not_ok "attachment mode logged"
# the last node to join takes its buckets after the 1 s announce phase: the reference map is the
# one two maps taken 1.2 s apart agree on
srcmap "$SK_TMP/map0"
for ((k = 0; k < 15; k++)); do
	sleep 1.2
	srcmap "$SK_TMP/map0b"
	cmp -s "$SK_TMP/map0" "$SK_TMP/map0b" && ! grep -q ' none$' "$SK_TMP/map0b" && break
	mv "$SK_TMP/map0b" "$SK_TMP/map0"
done
c1=$(grep -c ' node1$' "$SK_TMP/map0") c2=$(grep -c ' node2$' "$SK_TMP/map0") c3=$(grep -c ' node3$' "$SK_TMP/map0")
if [ $((c1 + c2 + c3)) = 64 ] && [ "$c1" -ge 5 ] && [ "$c2" -ge 5 ] && [ "$c3" -ge 5 ]; then
	sk_ok "64 sources served through the VIP, split over the three nodes: $c1 $c2 $c3"
else
	sk_not_ok "64 sources served and split ($c1 $c2 $c3)"
	sk_diag "$(grep -v ' node[123]$' "$SK_TMP/map0" | head -5)"
fi

# --- B: node3 dies ---------------------------------------------------------------------------
H1=$(hold hold1)
sk_wait_for 10 hold_ready "$SK_TMP/hold1" || sk_diag "hold1: $(head -4 "$SK_TMP/hold1")"
pids=$(ip netns pids "${SK_NS[3]}")
t0=$(now_ms)
kill -KILL $pids
dt=
for ((k = 0; k < 100; k++)); do
	if all_served "$SK_TMP/b1" && [ "$(count_of "$SK_TMP/b1" node3)" = 0 ]; then
		dt=$(($(now_ms) - t0))
		break
	fi
	sleep 0.05
done
if [ -n "$dt" ] && [ "$dt" -le "$MOVE_MAX_MS" ]; then
	sk_ok "kill -9 of every process of node3: all 64 sources served by node1/node2 after $dt ms (dead after $HB_TIMEOUT_MS ms of silence)"
else
	sk_not_ok "after the kill of node3, 64 sources served by the survivors within $MOVE_MAX_MS ms (${dt:-never} ms)"
	sk_diag "$(cat "$SK_TMP/b1")"
fi
srcmap "$SK_TMP/map1"
if same_except "$SK_TMP/map0" "$SK_TMP/map1" node3 && ! grep -q 'node3\|none' "$SK_TMP/map1"; then
	sk_ok "only node3's $c3 sources moved ($(moved "$SK_TMP/map0" "$SK_TMP/map1") changed)"
else
	sk_not_ok "only node3's sources moved ($(moved "$SK_TMP/map0" "$SK_TMP/map1") changed)"
fi
sleep 1
b1=$(hold_field "$SK_TMP/hold1" node1 broken) b2=$(hold_field "$SK_TMP/hold1" node2 broken)
[ "${b1:-x}" = 0 ] && [ "${b2:-x}" = 0 ] &&
	sk_ok "the survivors' long connections unbroken by the death" ||
	sk_not_ok "survivors' long connections unbroken ($b1/$b2): $(head -3 "$SK_TMP/hold1")"
modlog 1 | grep -q "farm view (node3 .*silent" && sk_ok "node1's module log: the view changed when node3 fell silent" ||
	sk_not_ok "node1 logged the view change at node3's death"
st=$("$SKCTL" --root "${SK_ROOT[1]}" state -m "$MOD" 2>&1)
grep -q "farm view: node1=100 node2=100 node3=dead" <<<"$st" && grep -q "$VIP/32 on eth0 (held)" <<<"$st" &&
	! grep -q outdated <<<"$st" && sk_ok "skctl state on node1: VIP held, the view in words (node3=dead)" ||
	sk_not_ok "skctl state shows the farm's view: $st"
# every other node of the farm in the PEER column, each with its state (down = not heard)
grep -Eq "^$MOD +UP .* node2,node3 +UP,down " <<<"$st" &&
	sk_ok "skctl state on node1: PEER lists node2,node3, PEER STATE UP,down" ||
	sk_not_ok "skctl state lists every member: $(sed -n 3,4p <<<"$st")"
"$SKCTL" --root "${SK_ROOT[1]}" state -m "$MOD" --json | python3 -c '
import json, sys
m = json.load(sys.stdin)["modules"][0]["members"]
sys.exit(0 if [(e["node"], e["alive"], e["state"]) for e in m] == [("node2", True, "UP"), ("node3", False, "STOP")] else 1)' &&
	sk_ok "skctl state --json: members node2 (alive, UP) and node3 (not alive)" ||
	sk_not_ok "skctl state --json members: $("$SKCTL" --root "${SK_ROOT[1]}" state -m "$MOD" --json | grep -A12 members | tr -d '\n ')"

# --- C: node3 returns ---------------------------------------------------------------------------
H2=$(hold hold2)
sk_wait_for 10 hold_ready "$SK_TMP/hold2" || sk_diag "hold2: $(head -4 "$SK_TMP/hold2")"
start_agent 3 || bail "agent 3 again"
if sk_wait_for 20 all_up; then
	sk_ok "node3's agent again: UP everywhere"
else
	sk_not_ok "node3 back UP ($(code 3)): $(alog 3 | tail -5)"
fi
modlog 3 | grep -q "no process of the module runs: starting it again" &&
	sk_ok "the new agent saw the application dead with its agent: start_both again, no takeover" ||
	sk_not_ok "after a kill -9 of the whole node the module is started again: $(modlog 3 | grep 'agent restarted' | tail -2)"
alog 3 | grep -q "took over the filter" && sk_ok "the new agent took over the filter its predecessor left" ||
	sk_not_ok "filter taken over: $(alog 3 | grep farm | tail -3)"
sleep 1.5 # the move is announced for 1 s before it happens
srcmap "$SK_TMP/map2"
[ "$(moved "$SK_TMP/map0" "$SK_TMP/map2")" = 0 ] &&
	sk_ok "node3 took exactly its $c3 sources back" ||
	sk_not_ok "node3 back with its sources ($(moved "$SK_TMP/map0" "$SK_TMP/map2") differ from the start)"
sleep 1
b1=$(hold_field "$SK_TMP/hold2" node1 broken) b2=$(hold_field "$SK_TMP/hold2" node2 broken)
[ "${b1:-x}" = 0 ] && [ "${b2:-x}" = 0 ] && grep -q "^conns=64 ok=64 broken=0" "$SK_TMP/hold2" &&
	sk_ok "its return broke none of the 64 long connections" ||
	sk_not_ok "return broke connections: $(head -3 "$SK_TMP/hold2")"

# --- D: node2's checker fails while its application runs: it leaves gracefully ------------------
H3=$(hold hold3)
sk_wait_for 10 hold_ready "$SK_TMP/hold3" || sk_diag "hold3: $(head -4 "$SK_TMP/hold3")"
touch "$SK_TMP/fail-check2"
if sk_wait_for 10 code_is 2 1; then
	sk_ok "node2's script checker fails: node2 leaves the farm (WAIT, skctl -lq exit 1)"
else
	sk_not_ok "node2 leaves on its checker ($(code 2)): $(modlog 2 | tail -5)"
fi
sleep 1.5
srcmap "$SK_TMP/map3"
if same_except "$SK_TMP/map0" "$SK_TMP/map3" node2 && ! grep -q 'node2\|none' "$SK_TMP/map3"; then
	sk_ok "its sources went to node1/node3, the others' stayed"
else
	sk_not_ok "node2's sources moved, only them ($(moved "$SK_TMP/map0" "$SK_TMP/map3") changed)"
	sk_diag "$(grep 'node2\|none' "$SK_TMP/map3" | head -3)"
fi
o2=$(hold_field "$SK_TMP/hold3" node2 ok)
grep -q "^conns=64 ok=64 broken=0" "$SK_TMP/hold3" && [ "${o2:-0}" -gt 0 ] &&
	sk_ok "graceful leave: all 64 long connections unbroken, node2's $o2 included (they drain)" ||
	sk_not_ok "graceful leave kept every connection (node2 ok=$o2): $(head -3 "$SK_TMP/hold3")"

# --- E: node2's checker passes again: it rejoins ---------------------------------------------------
rm -f "$SK_TMP/fail-check2"
if sk_wait_for 10 code_is 2 2; then
	sk_ok "node2's checker passes again: node2 UP again"
else
	sk_not_ok "node2 rejoins ($(code 2)): $(modlog 2 | tail -5)"
fi
sleep 1.5
srcmap "$SK_TMP/map4"
[ "$(moved "$SK_TMP/map0" "$SK_TMP/map4")" = 0 ] && sk_ok "node2 has its sources back" ||
	sk_not_ok "node2's sources back ($(moved "$SK_TMP/map0" "$SK_TMP/map4") differ)"
sleep 1
grep -q "^conns=64 ok=64 broken=0" "$SK_TMP/hold3" &&
	sk_ok "node2's return broke none of the 64 long connections (its own included)" ||
	sk_not_ok "node2's return broke connections: $(head -3 "$SK_TMP/hold3")"

# --- F: node3's application dies, its checker restarts it out of the farm --------------------------
H4=$(hold hold4)
sk_wait_for 10 hold_ready "$SK_TMP/hold4" || sk_diag "hold4: $(head -4 "$SK_TMP/hold4")"
pidf=${SK_ROOT[3]}/var/lib/steadykit/state/$MOD/farmsrv.pid
old=$(cat "$pidf")
kill -KILL "$old"
restarted() { local p; p=$(cat "$pidf" 2>/dev/null) && [ "$p" != "$old" ] && code_is 3 2; }
if sk_wait_for 15 restarted && modlog 3 | grep -q "leaving the farm, then restarting the application"; then
	sk_ok "node3's checker (action restart): it left, stop_both/start_both restarted farmsrv, UP again"
else
	sk_not_ok "node3 restarts its application out of the farm ($(code 3)): $(modlog 3 | tail -4)"
fi
sleep 1.5
srcmap "$SK_TMP/map5"
[ "$(moved "$SK_TMP/map0" "$SK_TMP/map5")" = 0 ] && sk_ok "node3 serves its sources again" ||
	sk_not_ok "node3's sources back after its restart ($(moved "$SK_TMP/map0" "$SK_TMP/map5") differ)"
b1=$(hold_field "$SK_TMP/hold4" node1 broken) b2=$(hold_field "$SK_TMP/hold4" node2 broken)
[ "${b1:-x}" = 0 ] && [ "${b2:-x}" = 0 ] &&
	sk_ok "node1/node2's long connections unbroken by node3's restart" ||
	sk_not_ok "node1/node2's connections unbroken by node3's restart ($b1/$b2)"

# --- G0: node1's agent re-executed (SIGHUP) under the running module: taken over, nothing rerun ---
H5=$(hold hold5)
sk_wait_for 10 hold_ready "$SK_TMP/hold5" || sk_diag "hold5: $(head -4 "$SK_TMP/hold5")"
pidf1=${SK_ROOT[1]}/var/lib/steadykit/state/$MOD/farmsrv.pid
app1=$(cat "$pidf1")
n_taken=$(modlog 1 | grep -c "taken over as UP")
deaths1() { cat "$SK_TMP"/agent2.*.log "$SK_TMP"/agent3.*.log 2>/dev/null | grep -c "node node1 dead"; }
d0=$(deaths1)
kill -HUP "${AG[1]}"
taken() { [ "$(modlog 1 | grep -c "taken over as UP")" -gt "$n_taken" ] && code_is 1 2; }
if sk_wait_for 15 taken; then
	sk_ok "SIGHUP: node1's agent re-executed, the farm module taken over as UP"
else
	sk_not_ok "SIGHUP: farm module taken over ($(code 1)): $(modlog 1 | tail -4)"
fi
[ "$(cat "$pidf1" 2>/dev/null)" = "$app1" ] && kill -0 "$app1" 2>/dev/null &&
	sk_ok "... start_both not run again: the same farmsrv (pid $app1) serves" ||
	sk_not_ok "... the application was started again (pid $app1 -> $(cat "$pidf1" 2>/dev/null))"
sleep 1
srcmap "$SK_TMP/map6"
[ "$(moved "$SK_TMP/map0" "$SK_TMP/map6")" = 0 ] && sk_ok "... every source on the node it was on" ||
	sk_not_ok "... sources moved by the re-exec ($(moved "$SK_TMP/map0" "$SK_TMP/map6") differ)"
# the agent announced its restart: the others hold their verdict (5 timeouts) instead of taking
# node1's buckets when the re-exec is slower than the timeout
heard_restart() { grep -q "node node1 restarts its agent" "$SK_TMP"/agent2.*.log && grep -q "node node1 restarts its agent" "$SK_TMP"/agent3.*.log; }
sk_check "... node2 and node3 heard node1's agent announce its restart" heard_restart
# a re-exec slower than that wait is still a death for the others (docs/agent.md): they take
# node1's buckets and its connections break; theirs must not, either way
if [ "$(deaths1)" = "$d0" ]; then
	grep -q "^conns=64 ok=64 broken=0" "$SK_TMP/hold5" &&
		sk_ok "... none of the 64 long connections broken" ||
		sk_not_ok "... the re-exec broke connections: $(head -3 "$SK_TMP/hold5")"
else
	sk_diag "the re-exec took longer than the others' wait (5 x ${HB_TIMEOUT_MS} ms) here: node1 was declared dead"
	b2=$(hold_field "$SK_TMP/hold5" node2 broken) b3=$(hold_field "$SK_TMP/hold5" node3 broken)
	[ "${b2:-x}" = 0 ] && [ "${b3:-x}" = 0 ] &&
		sk_ok "... node2/node3's long connections unbroken (node1 was declared dead meanwhile)" ||
		sk_not_ok "... the re-exec broke the others' connections: $(head -3 "$SK_TMP/hold5")"
fi

# --- G: operator stop on node1 ------------------------------------------------------------------
"$SKCTL" --root "${SK_ROOT[1]}" stop -m "$MOD" >/dev/null 2>&1
sk_wait_for 10 code_is 1 0
if code_is 1 0 && ! xdp_on 1 && ! vip_on_lo 1; then
	sk_ok "skctl stop on node1: STOP, filter detached and VIP removed"
else
	sk_not_ok "stop on node1 ($(code 1)): filter $(xdp_on 1 && echo on), VIP $(vip_on_lo 1 && echo on)"
fi
sleep 1.5
burst "$SK_TMP/b5" 2000
grep -q "total=64 ok=64 failed=0" "$SK_TMP/b5" && [ "$(count_of "$SK_TMP/b5" node1)" = 0 ] &&
	sk_ok "node2/node3 serve all 64 sources" || sk_not_ok "the others serve all: $(tail -4 "$SK_TMP/b5")"
sk_term "$H1"; sk_term "$H2"; sk_term "$H3"; sk_term "$H4"; sk_term "$H5"
sk_done
