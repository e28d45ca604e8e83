#!/bin/bash
# Farm module driven through agent/farm.c (as skagentd will): config in, membership and health in,
# bucket table out. A failing checker leaves gracefully, a dead node's buckets move at once, a node
# that returns takes its share back over the filter it left running; nobody's connections break.
set -u
: "${SK_SRC:?}" "${SK_BUILD:?}"
source "$SK_SRC/test/cluster/lib.sh"

DRV=$SK_BUILD/test/farmtools/farmdrv
SRV=$SK_BUILD/test/farmtools/farmsrv
CLI=$SK_BUILD/test/farmtools/farmcli
VIP=10.99.0.201
VMAC=02:5b:00:00:00:02
for b in "$DRV" "$SRV" "$CLI"; do
	[ -x "$b" ] || { echo "Bail out! $b not built"; exit 1; }
done

sk_cluster_init 3 --client || { echo "Bail out! cluster init failed"; exit 1; }

BPFFS=$SK_TMP/bpffs
mkdir -p "$BPFFS" && mount -t bpf bpf "$BPFFS" && sk_track_mount "$BPFFS" ||
	{ echo "Bail out! cannot mount bpffs"; exit 1; }
pin() { printf '%s/n%s/web\n' "$BPFFS" "$1"; }

# The documents an operator would install; cluster ids are the farm slots.
CL=$SK_TMP/cluster.json MOD=$SK_TMP/web.json
cat >"$CL" <<EOF
{ "cluster": "farmtest", "secret_file": "/nonexistent/secret", "networks": ["lan"],
  "nodes": [ { "name": "n1", "id": 1, "addresses": { "lan": "10.99.0.1" } },
             { "name": "n2", "id": 2, "addresses": { "lan": "10.99.0.2" } },
             { "name": "n3", "id": 3, "addresses": { "lan": "10.99.0.3" } } ] }
EOF
cat >"$MOD" <<EOF
{ "name": "web", "id": 2, "kind": "farm",
  "nodes": [ "n1", { "name": "n2", "weight": 100 }, { "name": "n3", "weight": 200 } ],
  "vip": { "addr": "$VIP", "prefix": 32, "interface": "eth0", "mac": "$VMAC",
           "rule": "session", "ports": [80] } }
EOF

SRCS=
for i in $(seq 101 112); do
	sk_client ip addr add "10.99.0.$i/24" dev eth0
	SRCS+="${SRCS:+,}10.99.0.$i"
done

# drv NODE args...: what the agent of NODE does on a membership or health change
drv() {
	local n=$1
	shift
	sk_in "$n" "$DRV" --cluster "$CL" --module "$MOD" --node "n$n" --pin "$(pin "$n")" \
		--window-ms 60000 --announce-ms 300 "$@"
}
# view ALIVE UP NODES...: the same knowledge on each listed node
view() {
	local a=$1 u=$2 n rc=0 out
	shift 2
	for n in "$@"; do
		out=$(drv "$n" --alive "$a" --up "$u" 2>&1) || rc=1
		printf '%s\n' "$out" >"$SK_TMP/view.n$n"
		sk_diag "n$n: $(tr '\n' ' ' <<<"$out")"
	done
	return $rc
}
field() { sed -n "s/.* $2=\([0-9]*\).*/\1/p" "$SK_TMP/view.n$1" | tail -1; }
served() { local n; n=$(grep -c '^served' "$SK_TMP/srv$1.log" 2>/dev/null); echo "${n:-0}"; }
near() { awk -v c="$1" -v e="$2" -v p="$3" 'BEGIN { d = c / e - 1; if (d < 0) d = -d; exit !(d <= p / 100) }'; }
burst() {
	sk_client "$CLI" burst --vip "$VIP" --src "$SRCS" --n "$1" --conc 64 --timeout-ms 5000 >"$2" 2>&1
}
count_of() { awk -v n="$2" '$1 == "node" && $2 == n { print $3; f = 1 } END { if (!f) print 0 }' "$1"; }
hold_field() {
	awk -v n="$2" -v f="$3" '$1 == "node" && $2 == n { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' "$1"
}
hold_ready() { grep -q "ok=$2 broken=0 unknown=0" "$1"; }
hold() { sk_spawn_client "$1" "$CLI" hold --vip "$VIP" --src "$SRCS" --n 90 --interval-ms 200 \
	--timeout-ms 4000 --seconds 100 --status "$SK_TMP/$1"; }

# --- the module comes up on three nodes -------------------------------------------------
if view 1,2,3 1,2,3 1 2 3; then
	sk_ok "farm.c attached the filter from the module's config on 3 nodes and pushed the view"
else
	sk_not_ok "farm.c attach and first view on 3 nodes"
fi
if grep -q 'in the libxdp dispatcher\|refused libxdp.s dispatcher' "$SK_TMP/view.n1" &&
	sk_in 1 ip link show eth0 | grep -q xdp && sk_in 1 ip addr show lo | grep -q "$VIP"; then
	sk_ok "filter on eth0, VIP on lo, and the log says whether libxdp's dispatcher took it"
else
	sk_not_ok "filter on eth0, VIP on lo, dispatcher reported"
fi
o1=$(field 1 owned1) o3=$(field 1 owned3)
[ -n "$o1" ] && [ -n "$o3" ] && near "$o3" $((2 * o1)) 10 &&
	sk_ok "slots are cluster ids and weights come from the module: owned1=$o1 owned3=$o3" ||
	sk_not_ok "slots by cluster id, weights from the module (owned1=$o1 owned3=$o3)"
for i in 1 2 3; do
	eval "SRV$i=\$(sk_spawn $i srv$i $SRV --name n$i --bind $VIP --port 80)"
done
sk_wait_for 5 grep -q listening "$SK_TMP/srv3.log"
sk_wait_for 5 sk_client ping -c 1 -W 1 "$VIP" ||
	sk_diag "VIP does not answer ping: $(sk_client ip neigh show)"

s0=$(($(served 1) + $(served 2) + $(served 3)))
burst 1200 "$SK_TMP/burst1"
sk_diag "$(cat "$SK_TMP/burst1")"
c1=$(count_of "$SK_TMP/burst1" n1) c2=$(count_of "$SK_TMP/burst1" n2) c3=$(count_of "$SK_TMP/burst1" n3)
s=$(($(served 1) + $(served 2) + $(served 3) - s0))
if grep -q "total=1200 ok=1200 failed=0" "$SK_TMP/burst1" && [ "$s" = 1200 ] &&
	near "$c1" 300 15 && near "$c2" 300 15 && near "$c3" 600 10; then
	sk_ok "1200 connections answered once each, shares follow weights 100,100,200: $c1 $c2 $c3"
else
	sk_not_ok "1200 connections, shares by weight ($c1 $c2 $c3, served $s)"
fi

# --- node 3's checker fails: it leaves gracefully ---------------------------------------------
H1=$(hold hold1)
sk_wait_for 10 hold_ready "$SK_TMP/hold1" 90 || sk_diag "hold1: $(head -4 "$SK_TMP/hold1")"
view 1,2,3 1,2 1 2 3
f3=$(field 1 from3)
[ "$(field 1 owned3)" = "" ] && [ "${f3:-0}" -gt 0 ] &&
	sk_ok "checker failure: node 3 owns nothing, its $f3 buckets are in motion (it keeps its flows)" ||
	sk_not_ok "checker failure: node 3's buckets in motion (owned3=$(field 1 owned3) from3=$f3)"
sleep 1
burst 1000 "$SK_TMP/burst2"
c1=$(count_of "$SK_TMP/burst2" n1) c2=$(count_of "$SK_TMP/burst2" n2) c3=$(count_of "$SK_TMP/burst2" n3)
grep -q "total=1000 ok=1000 failed=0" "$SK_TMP/burst2" && [ "$c3" = 0 ] &&
	sk_ok "no new connection reaches the unhealthy node: $c1 $c2 $c3" ||
	sk_not_ok "no new connection reaches the unhealthy node ($c1 $c2 $c3)"
sleep 1
o3=$(hold_field "$SK_TMP/hold1" n3 ok)
if grep -q "^conns=90 ok=90 broken=0" "$SK_TMP/hold1" && [ "${o3:-0}" -gt 0 ]; then
	sk_ok "graceful leave: 90 connections unbroken, the $o3 on node 3 included"
else
	sk_not_ok "graceful leave: connections unbroken (n3 ok=$o3)"
	sk_diag "$(cat "$SK_TMP/hold1")"
fi

# --- node 3 healthy again: takes its share back -----------------------------------------------
view 1,2,3 1,2,3 1 2 3
sleep 1
burst 1000 "$SK_TMP/burst3"
c1=$(count_of "$SK_TMP/burst3" n1) c2=$(count_of "$SK_TMP/burst3" n2) c3=$(count_of "$SK_TMP/burst3" n3)
grep -q "total=1000 ok=1000 failed=0" "$SK_TMP/burst3" && near "$c3" 500 15 &&
	sk_ok "node 3 healthy again takes its share back: $c1 $c2 $c3" ||
	sk_not_ok "node 3 takes its share back ($c1 $c2 $c3)"
sleep 1
grep -q "^conns=90 ok=90 broken=0" "$SK_TMP/hold1" &&
	sk_ok "its return broke none of the 90 connections" ||
	sk_not_ok "its return broke connections: $(head -1 "$SK_TMP/hold1")"

# --- node 2 dies: its buckets move at once -------------------------------------------------------
H2=$(hold hold2)
sk_wait_for 10 hold_ready "$SK_TMP/hold2" 90 || sk_diag "hold2: $(head -4 "$SK_TMP/hold2")"
sk_kill9 "$SRV2"
sk_link_down 2
view 1,3 1,3 1 3
[ "$(field 1 owned2)" = "" ] && [ "$(field 1 from2)" = "" ] && [ "$(field 3 from2)" = "" ] &&
	sk_ok "death: node 2 owns nothing and none of its buckets is in motion (moved at once)" ||
	sk_not_ok "death: node 2's buckets moved at once (owned2=$(field 1 owned2) from2=$(field 1 from2))"
burst 1000 "$SK_TMP/burst4"
c1=$(count_of "$SK_TMP/burst4" n1) c2=$(count_of "$SK_TMP/burst4" n2) c3=$(count_of "$SK_TMP/burst4" n3)
grep -q "total=1000 ok=1000 failed=0" "$SK_TMP/burst4" && [ "$c2" = 0 ] &&
	sk_ok "right after the death 1000 new connections answered by n1/n3: $c1 $c3" ||
	sk_not_ok "after the death, new connections answered by n1/n3 ($c1 $c2 $c3)"
sleep 1
b1=$(hold_field "$SK_TMP/hold2" n1 broken) b3=$(hold_field "$SK_TMP/hold2" n3 broken)
[ "${b1:-x}" = 0 ] && [ "${b3:-x}" = 0 ] &&
	sk_ok "connections on the survivors unbroken by the death" ||
	sk_not_ok "connections on the survivors unbroken by the death ($b1/$b3)"

# --- node 2 returns: its agent takes over the filter it left, then everyone learns -------------
H3=$(hold hold3)
sk_wait_for 10 hold_ready "$SK_TMP/hold3" 90 || sk_diag "hold3: $(head -4 "$SK_TMP/hold3")"
sk_link_up 2
SRV2=$(sk_spawn 2 srv2b "$SRV" --name n2 --bind "$VIP" --port 80)
sk_wait_for 5 grep -q listening "$SK_TMP/srv2b.log"
view 1,2,3 1,2,3 2 1 3
grep -q 'took over the filter' "$SK_TMP/view.n2" &&
	sk_ok "the returning node took over its running filter (table and flows kept)" ||
	sk_not_ok "the returning node took over its running filter"
sleep 1
burst 1000 "$SK_TMP/burst5"
c1=$(count_of "$SK_TMP/burst5" n1) c2=$(count_of "$SK_TMP/burst5" n2) c3=$(count_of "$SK_TMP/burst5" n3)
grep -q "total=1000 ok=1000 failed=0" "$SK_TMP/burst5" && near "$c2" 250 25 &&
	sk_ok "node 2 back: 1000 connections answered, it has its share again: $c1 $c2 $c3" ||
	sk_not_ok "node 2 back with its share ($c1 $c2 $c3)"
sleep 1
grep -q "^conns=90 ok=90 broken=0" "$SK_TMP/hold3" &&
	sk_ok "the return broke none of the 90 connections opened while it was away" ||
	sk_not_ok "the return broke connections: $(head -1 "$SK_TMP/hold3")"

sk_term "$H1"
sk_term "$H2"
sk_term "$H3"
ok=1
for i in 1 2 3; do
	drv "$i" --detach >/dev/null 2>&1 || ok=0
done
if [ $ok = 1 ] && ! sk_in 1 ip link show eth0 | grep -q xdp && ! sk_in 1 ip addr show lo | grep -q "$VIP"; then
	sk_ok "module stop: farm.c detaches the filter and removes the VIP"
else
	sk_not_ok "module stop: filter and VIP removed"
fi
sk_done
