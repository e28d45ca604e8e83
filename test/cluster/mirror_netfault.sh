#!/usr/bin/env bash
# mirror_netfault: network faults between primary and secondary never stall the application past
# the latency budget, and the pair converges once the network is back (issue 4 item 4).
# Phase 1: a partition (the bridge drops every frame between the nodes; TCP sees nothing) while
# ackwriter writes with fsync; heal; resync; every acked record on the secondary, trees identical.
# Phase 2: one-way loss (the secondary's acks are dropped, the primary's frames get through).
# Phase 3: the link slows down past the budget (netem delay 400 ms, budget 300 ms), if sch_netem exists.
# Phase 4: a partition during a seeded namespace history: the resync races live renames/unlinks/rmdirs.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init
BUDGET_MS=300
LIMIT_US=1500000

mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary --budget-ms "$BUDGET_MS" || mt_bail "primary did not start"
if mt_wait_until 10 mt_peer_is connected; then sk_ok "peer connected"; else sk_not_ok "peer connected"; fi

# the application writes all along, so a lost peer is 'outdated' ('absent' would mean it still holds everything)
peer_gone() { [ "$(mt_st 1 peer)" = outdated ]; }

# phase NAME FAULT-CMD HEAL-CMD
phase() {
	local name=$1 fault=$2 heal=$3 aw awrc res max out
	local AWO=(--log "$SK_TMP/ack-$name.log" --threads 2 --files 8 --size 4096 --journal)
	mkdir -p "$MT_DIR1/$name"
	"$MT_TOOLS/ackwriter" write --dir "$MT_DIR1/$name" "${AWO[@]}" --fsync --duration 90 --pause-us 2000 \
		--slow-ms $((LIMIT_US / 1000)) >"$SK_TMP/aw-$name.out" 2>"$SK_TMP/aw-$name.err" &
	aw=$!
	sleep 2
	eval "$fault" || sk_diag "$name: fault command failed: $fault"
	if mt_wait_until 5 peer_gone; then
		sk_ok "$name: primary gives up on the peer ($(mt_st 1 peer))"
	else
		sk_not_ok "$name: primary gives up on the peer (peer $(mt_st 1 peer))"
	fi
	sleep 4
	eval "$heal" || sk_diag "$name: heal command failed: $heal"
	local synced=0 t_heal=$SECONDS heal_at
	heal_at=$(date +%T.%3N)
	mt_wait_until 20 mt_synced && synced=1
	sk_diag "$name: healed at $heal_at, in sync $((SECONDS - t_heal)) s later"
	if [ "$synced" = 1 ] && kill -0 "$aw" 2>/dev/null; then
		sk_ok "$name: back in sync after healing, while the application kept writing"
	else
		sk_not_ok "$name: back in sync after healing, while the application kept writing (in sync: $synced)"
		sk_diag "primary: $(mt_status 1)"
		sk_diag "$(tail -n 5 "$SK_TMP/fused1.1.log")"
	fi
	# the writer runs until the check above is made (90 s is only its bound), so a slower resync
	# cannot outlast it; SIGTERM stops it cleanly with its usual summary
	kill -TERM "$aw" 2>/dev/null
	wait "$aw"
	awrc=$?
	res=$(cat "$SK_TMP/aw-$name.out")
	max=$(sed -n 's/.*max_op_us=\([0-9]*\).*/\1/p' <<<"$res")
	if [ "$awrc" = 0 ] && [ -n "$max" ] && [ "$max" -lt "$LIMIT_US" ]; then
		sk_ok "$name: no failed call, slowest write+fsync ${max} us < ${LIMIT_US} us"
	else
		sk_not_ok "$name: no failed call (rc=$awrc), slowest write+fsync ${max:-?} us < ${LIMIT_US} us"
		sk_diag "writer: $res $(head -n 5 "$SK_TMP/aw-$name.err")"
	fi
	if mt_wait_synced 20; then sk_ok "$name: peer in sync at the end"; else sk_not_ok "$name: peer in sync at the end"; fi
	out=$("$MT_TOOLS/ackwriter" verify --dir "$MT_DIR2/$name" "${AWO[@]}" 2>&1)
	if [[ "$out" == *"verify: ok"* ]]; then
		sk_ok "$name: every acknowledged record is on the secondary"
	else
		sk_not_ok "$name: every acknowledged record is on the secondary"
		sk_diag "$out"
	fi
}

phase partition "sk_partition 1 2" "sk_heal 1 2"
# One-way loss: frames from the secondary (acks) are dropped, the primary's frames still arrive,
# so the secondary applies what the primary will never see acknowledged.
oneway_on() {
	nsenter --net="/run/netns/$SK_BR_NS" nft -f - <<-EOF
		add chain bridge sk mt_oneway { type filter hook forward priority 0; policy accept; }
		add rule bridge sk mt_oneway iifname "v2" oifname "v1" drop
	EOF
}
oneway_off() { nsenter --net="/run/netns/$SK_BR_NS" nft delete chain bridge sk mt_oneway; }
phase oneway oneway_on oneway_off
if sk_have_netem; then
	phase slowlink "sk_netem 1 'delay 400ms'" "sk_netem_clear 1"
else
	sk_skip "slowlink" "kernel has no sch_netem"
fi
# Phase 4: the resync after a partition runs while the namespace churns (renames of directories,
# creates, unlinks, rmdirs, xattrs): at the end the secondary is exactly the final state.
nslog=$SK_TMP/ns.log
seed=$RANDOM
mkdir -p "$MT_DIR1/ns"
"$MT_PY" "$SK_SRC/test/tools/nsreplay.py" run "$MT_DIR1/ns" "$nslog" --seed "$seed" --ops 8000 2>"$SK_TMP/ns.err" &
nr=$!
mt_wait_until 10 bash -c "[ \$(wc -l <'$nslog') -ge 500 ]"
sk_partition 1 2
sleep 3
sk_heal 1 2
t0=$SECONDS
while kill -0 "$nr" 2>/dev/null && [ $((SECONDS - t0)) -lt 60 ]; do sleep 0.2; done
kill "$nr" 2>/dev/null
wait "$nr"
nrc=$?
if [ "$nrc" = 0 ]; then sk_ok "namespace churn: all 8000 ops succeeded"; else sk_not_ok "namespace churn: all 8000 ops succeeded (rc=$nrc)"; sk_diag "$(tail -n 2 "$SK_TMP/ns.err")"; fi
if mt_wait_synced 30; then sk_ok "namespace churn: in sync after the resync"; else sk_not_ok "namespace churn: in sync after the resync"; fi
out=$("$MT_PY" "$SK_SRC/test/tools/nsreplay.py" check "$MT_DIR2/ns" "$nslog" --seed "$seed" 2>&1)
if [[ "$out" == *"-> ok"* ]]; then
	sk_ok "namespace churn (seed $seed): secondary is exactly the final state"
else
	sk_not_ok "namespace churn (seed $seed): secondary is exactly the final state"
fi
sk_diag "$out"

mt_treecmp_tap "primary backing vs secondary" none "$MT_BACK1" "$MT_DIR2" entries type mode owner size content mtime
mt_stop_primary
sk_done
