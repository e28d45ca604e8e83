#!/bin/bash
# Farm scenario: one VIP on 3 nodes balanced by the XDP filter; shares, exactly-once answers,
# a node killed (its share moves, other connections live on), a node joining (nothing breaks).
set -u
: "${SK_SRC:?}" "${SK_BUILD:?}"
source "$SK_SRC/test/cluster/lib.sh"

SKLB=$SK_BUILD/xdp/sklb
SRV=$SK_BUILD/test/farmtools/farmsrv
CLI=$SK_BUILD/test/farmtools/farmcli
VIP=10.99.0.200
VIP6=fd00:99::200
VMAC=02:5b:00:00:00:01
MODE=${SK_XDP_MODE:-auto}
for b in "$SKLB" "$SRV" "$CLI"; do
	[ -x "$b" ] || { echo "Bail out! $b not built"; exit 1; }
done

sk_cluster_init 3 --client || { echo "Bail out! cluster init failed"; exit 1; }

# Pins live on a bpffs of our own, reachable from every node (nsenter keeps the mount ns).
BPFFS=$SK_TMP/bpffs
mkdir -p "$BPFFS" && mount -t bpf bpf "$BPFFS" && sk_track_mount "$BPFFS" ||
	{ echo "Bail out! cannot mount bpffs"; exit 1; }
pin() { printf '%s/n%s/web\n' "$BPFFS" "$1"; }

sk_client ip -6 addr add fd00:99::100/64 dev eth0 nodad
for i in 1 2 3; do sk_in "$i" ip -6 addr add "fd00:99::$i/64" dev eth0 nodad; done
SRCS=
for i in $(seq 101 112); do
	sk_client ip addr add "10.99.0.$i/24" dev eth0
	SRCS+="${SRCS:+,}10.99.0.$i"
done

attach() {
	sk_in "$1" "$SKLB" attach --dev eth0 --pin "$(pin "$1")" --node $(($1 - 1)) --vmac "$VMAC" \
		--vip4 "$VIP" --vip6 "$VIP6" --seed 7 --install-vip --mode "$MODE"
}
# set_view "NODE=W,..." nodes...: the same membership view on each listed node, as agents would
# ($LEAVING: node ids leaving gracefully)
LEAVING=
set_view() {
	local v=$1 n rc=0
	shift
	for n in "$@"; do
		sk_in "$n" "$SKLB" set --pin "$(pin "$n")" --view "$v" ${LEAVING:+--leaving "$LEAVING"} \
			--announce-ms 500 || rc=1
	done
	return $rc
}
served() { local n; n=$(grep -c '^served' "$SK_TMP/srv$1.log" 2>/dev/null); echo "${n:-0}"; }
# within PCT% of the expected count?
near() { awk -v c="$1" -v e="$2" -v p="$3" 'BEGIN { d = c / e - 1; if (d < 0) d = -d; exit !(d <= p / 100) }'; }
burst() { # burst N OUT: N connections from the client, summary in OUT
	sk_client "$CLI" burst --vip "$VIP" --src "$SRCS" --n "$1" --conc 64 --timeout-ms 5000 >"$2" 2>&1
}
count_of() { awk -v n="$2" '$1 == "node" && $2 == n { print $3; f = 1 } END { if (!f) print 0 }' "$1"; }
hold_field() { # hold_field STATUS NODE FIELD
	awk -v n="$2" -v f="$3" '$1 == "node" && $2 == n { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' "$1"
}
hold_ready() { grep -q "ok=$2 broken=0 unknown=0" "$1"; }

# --- attach, servers --------------------------------------------------------
ok=1
for i in 1 2 3; do
	out=$(attach "$i" 2>&1) || { ok=0; sk_diag "node $i: $out"; }
	sk_diag "node $i: $out"
done
if [ "$MODE" != auto ] && [ "$(grep -c "mode=$MODE" <<<"$(for i in 1 2 3; do sk_in "$i" "$SKLB" show --pin "$(pin "$i")"; done)")" != 3 ]; then
	ok=0
	sk_diag "not every node runs in $MODE mode"
fi
[ $ok = 1 ] && sk_ok "sklb attach on 3 nodes (mode $MODE), VIP on lo" || sk_not_ok "sklb attach on 3 nodes"
set_view 0=1,1=1,2=2 1 2 3 && sk_ok "view 0=1,1=1,2=2 set on every node" || sk_not_ok "set view"
for i in 1 2 3; do
	sk_in "$i" "$SKLB" set --pin "$(pin "$i")" --rule session >/dev/null
	eval "SRV$i=\$(sk_spawn $i srv$i $SRV --name n$i --bind $VIP --bind6 $VIP6 --port 80)"
done
sk_wait_for 5 grep -q listening "$SK_TMP/srv3.log"

before=$(sk_in 1 "$SKLB" show --pin "$(pin 1)" | grep '^share')
err=$(sk_in 1 "$SKLB" set --pin "$(pin 1)" --rule session --view 0=1,1=1,2=x 2>&1)
rc=$?
after=$(sk_in 1 "$SKLB" show --pin "$(pin 1)" | grep '^share')
if [ $rc = 2 ] && [[ "$err" == *"--view must be"* ]] && [ "$before" = "$after" ]; then
	sk_ok "bad view refused with a clear error, table unchanged"
else
	sk_not_ok "bad view refused with a clear error, table unchanged"
	sk_diag "rc=$rc err=$err"
fi
err=$(sk_in 1 "$SKLB" set --pin "$(pin 1)" --rule client --view 0=1,1=1 --leaving 1 2>&1)
[ $? != 0 ] && [ "$before" = "$(sk_in 1 "$SKLB" show --pin "$(pin 1)" | grep '^share')" ] &&
	sk_in 1 "$SKLB" show --pin "$(pin 1)" | grep -q '^rule=session' &&
	sk_ok "node both weighted and leaving refused, rule untouched: $err" ||
	sk_not_ok "node both weighted and leaving refused, nothing changed"

# --- ARP and first traffic --------------------------------------------------
if sk_wait_for 5 sk_client ping -c 1 -W 1 "$VIP" &&
	sk_client ip neigh show "$VIP" | grep -qi "$VMAC"; then
	sk_ok "client resolves the VIP to the virtual MAC $VMAC and gets ping answers"
else
	sk_not_ok "client resolves the VIP to the virtual MAC"
	sk_diag "$(sk_client ip neigh show; sk_in 1 "$SKLB" show --pin "$(pin 1)" | grep stat)"
fi

if sk_wait_for 5 sk_client ping -6 -c 1 -W 1 "$VIP6" &&
	sk_client ip -6 neigh show "$VIP6" | grep -qi "$VMAC"; then
	sk_ok "client resolves the IPv6 VIP to the virtual MAC (neighbour advertisement from XDP) and gets ping6 answers"
else
	sk_not_ok "client resolves the IPv6 VIP to the virtual MAC"
	sk_diag "$(sk_client ip -6 neigh show; sk_in 1 "$SKLB" show --pin "$(pin 1)" | grep stat)"
fi
v6ok=0
for i in $(seq 1 30); do
	r=$(sk_client curl -s -m 3 -g "http://[$VIP6]/") && [[ "$r" =~ ^n[123]$ ]] && v6ok=$((v6ok + 1))
done
[ "$v6ok" = 30 ] && sk_ok "30 HTTP requests to the IPv6 VIP answered" || sk_not_ok "HTTP over the IPv6 VIP ($v6ok/30)"
pings=$(sk_client ping -c 20 -i 0.05 -W 1 "$VIP" 2>&1)
n=$(grep -c 'bytes from' <<<"$pings")
dup=$(grep -c DUP <<<"$pings")
[ "$n" -ge 19 ] && [ "$dup" = 0 ] && sk_ok "ICMP to the VIP answered by one node only ($n/20, no DUP)" ||
	sk_not_ok "ICMP to the VIP answered by one node only ($n/20, $dup DUP)"

# --- 3000 connections, weights 1,1,2 ----------------------------------------
s0=$(($(served 1) + $(served 2) + $(served 3)))
burst 3000 "$SK_TMP/burst1"
sk_diag "$(cat "$SK_TMP/burst1")"
if grep -q "total=3000 ok=3000 failed=0" "$SK_TMP/burst1"; then
	sk_ok "3000 connections from 12 client IPs: every one answered"
else
	sk_not_ok "3000 connections from 12 client IPs: every one answered"
fi
s=$(($(served 1) + $(served 2) + $(served 3) - s0))
[ "$s" = 3000 ] && sk_ok "servers answered exactly 3000 requests (no duplicate delivery)" ||
	sk_not_ok "servers answered exactly 3000 requests (got $s)"
c1=$(count_of "$SK_TMP/burst1" n1) c2=$(count_of "$SK_TMP/burst1" n2) c3=$(count_of "$SK_TMP/burst1" n3)
if near "$c1" 750 10 && near "$c2" 750 10 && near "$c3" 1500 10; then
	sk_ok "shares within 10% of weights 1,1,2: $c1 $c2 $c3"
else
	sk_not_ok "shares within 10% of weights 1,1,2: $c1 $c2 $c3"
fi

# --- long-lived connections, then node 3 dies ---------------------------------
H1=$(sk_spawn_client hold1 "$CLI" hold --vip "$VIP" --src "$SRCS" --n 90 --interval-ms 200 \
	--timeout-ms 4000 --seconds 100 --status "$SK_TMP/hold1")
if sk_wait_for 10 hold_ready "$SK_TMP/hold1" 90; then
	sk_ok "90 long-lived connections open: $(grep '^node' "$SK_TMP/hold1" | tr '\n' ' ')"
else
	sk_not_ok "90 long-lived connections open"
	sk_diag "$(cat "$SK_TMP/hold1")"
fi
sk_kill9 "$SRV3"
sk_link_down 3
set_view 0=1,1=1 1 2
sleep 1
burst 1000 "$SK_TMP/burst2"
sk_diag "$(cat "$SK_TMP/burst2")"
c1=$(count_of "$SK_TMP/burst2" n1) c2=$(count_of "$SK_TMP/burst2" n2) c3=$(count_of "$SK_TMP/burst2" n3)
if grep -q "total=1000 ok=1000 failed=0" "$SK_TMP/burst2" && [ "$c3" = 0 ] &&
	near "$c1" 500 10 && near "$c2" 500 10; then
	sk_ok "node 3 killed: its share moved, 1000 new connections answered by n1/n2: $c1 $c2"
else
	sk_not_ok "node 3 killed: its share moved ($c1 $c2 $c3)"
fi
sleep 1
sk_diag "$(cat "$SK_TMP/hold1")"
b1=$(hold_field "$SK_TMP/hold1" n1 broken) b2=$(hold_field "$SK_TMP/hold1" n2 broken)
o1=$(hold_field "$SK_TMP/hold1" n1 ok) o2=$(hold_field "$SK_TMP/hold1" n2 ok)
if [ "${b1:-x}" = 0 ] && [ "${b2:-x}" = 0 ] && [ "${o1:-0}" -gt 0 ] && [ "${o2:-0}" -gt 0 ]; then
	sk_ok "established connections on n1 ($o1) and n2 ($o2) unbroken by node 3's death"
else
	sk_not_ok "established connections on n1/n2 unbroken by node 3's death (broken $b1/$b2)"
fi

# --- node 3 joins back: a planned change, nothing may break -------------------
H2=$(sk_spawn_client hold2 "$CLI" hold --vip "$VIP" --src "$SRCS" --n 90 --interval-ms 200 \
	--timeout-ms 4000 --seconds 100 --status "$SK_TMP/hold2")
sk_wait_for 10 hold_ready "$SK_TMP/hold2" 90 ||
	sk_diag "hold2 not ready: $(head -3 "$SK_TMP/hold2")"
sk_in 3 "$SKLB" detach --pin "$(pin 3)"
sk_link_up 3
out=$(attach 3 2>&1) || sk_diag "re-attach: $out"
sk_in 3 "$SKLB" set --pin "$(pin 3)" --rule session >/dev/null
SRV3=$(sk_spawn 3 srv3b "$SRV" --name n3 --bind "$VIP" --bind6 "$VIP6" --port 80)
sk_wait_for 5 grep -q listening "$SK_TMP/srv3b.log"
# The joining node sets its view first (its first table hands it buckets "in motion"),
# then the others learn it; all within the announce time.
set_view 0=1,1=1,2=2 3 1 2 && sk_ok "node 3 re-attached and joined: view 0=1,1=1,2=2 everywhere" ||
	sk_not_ok "node 3 joins"
sleep 2
burst 1000 "$SK_TMP/burst3"
sk_diag "$(cat "$SK_TMP/burst3")"
c1=$(count_of "$SK_TMP/burst3" n1) c2=$(count_of "$SK_TMP/burst3" n2) c3=$(count_of "$SK_TMP/burst3" n3)
if grep -q "total=1000 ok=1000 failed=0" "$SK_TMP/burst3" &&
	near "$c1" 250 20 && near "$c2" 250 20 && near "$c3" 500 10; then
	sk_ok "after the join 1000 new connections answered, node 3 takes its share: $c1 $c2 $c3"
else
	sk_not_ok "after the join, node 3 takes its share ($c1 $c2 $c3)"
fi
sleep 2
sk_diag "$(cat "$SK_TMP/hold2")"
if grep -q "^conns=90 ok=90 broken=0" "$SK_TMP/hold2"; then
	sk_ok "join: all 90 connections opened before it are unbroken"
else
	sk_not_ok "join: connections opened before it are unbroken"
fi
b1=$(hold_field "$SK_TMP/hold1" n1 broken) b2=$(hold_field "$SK_TMP/hold1" n2 broken)
[ "${b1:-x}" = 0 ] && [ "${b2:-x}" = 0 ] && sk_ok "older n1/n2 connections still unbroken after the join" ||
	sk_not_ok "older n1/n2 connections unbroken after the join ($b1/$b2)"
# --- node 2 leaves gracefully: no new flows, but it keeps the ones it has ------
H3=$(sk_spawn_client hold3 "$CLI" hold --vip "$VIP" --src "$SRCS" --n 90 --interval-ms 200 \
	--timeout-ms 4000 --seconds 100 --status "$SK_TMP/hold3")
sk_wait_for 10 hold_ready "$SK_TMP/hold3" 90 ||
	sk_diag "hold3 not ready: $(head -4 "$SK_TMP/hold3")"
sk_diag "before the leave: $(grep '^node' "$SK_TMP/hold3" | tr '\n' ' ')"
LEAVING=1 set_view 0=1,2=2 1 2 3 && sk_ok "node 2 leaves gracefully: view 0=1,2=2 --leaving 1 everywhere" ||
	sk_not_ok "node 2 leaves gracefully"
sleep 2
burst 1000 "$SK_TMP/burst4"
sk_diag "$(cat "$SK_TMP/burst4")"
c1=$(count_of "$SK_TMP/burst4" n1) c2=$(count_of "$SK_TMP/burst4" n2) c3=$(count_of "$SK_TMP/burst4" n3)
if grep -q "total=1000 ok=1000 failed=0" "$SK_TMP/burst4" && [ "$c2" = 0 ] &&
	near "$c1" 333 15 && near "$c3" 667 10; then
	sk_ok "after the leave new connections go to n1/n3 only: $c1 $c3"
else
	sk_not_ok "after the leave new connections go to n1/n3 only ($c1 $c2 $c3)"
fi
sleep 2
sk_diag "$(cat "$SK_TMP/hold3")"
o2=$(hold_field "$SK_TMP/hold3" n2 ok)
if grep -q "^conns=90 ok=90 broken=0" "$SK_TMP/hold3" && [ "${o2:-0}" -gt 0 ]; then
	sk_ok "graceful leave: all 90 connections unbroken, the $o2 on the leaving node included"
else
	sk_not_ok "graceful leave: connections unbroken (n2 ok=$o2)"
fi

ms=$(for i in 1 2; do sk_in "$i" "$SKLB" show --pin "$(pin "$i")"; done | awk -F= '/^stat motion_sock=/ { s += $2 } END { print s + 0 }')
moving=$(sk_in 1 "$SKLB" show --pin "$(pin 1)" | sed -n 's/.*moving=\([0-9]*\).*/\1/p')
if [ "$ms" -gt 0 ] && [ "${moving:-0}" -gt 0 ]; then
	sk_ok "old owners kept moved flows by socket lookup ($ms packets, $moving buckets in motion)"
else
	sk_not_ok "old owners kept moved flows by socket lookup ($ms packets, moving=$moving)"
fi
show=$(sk_in 1 "$SKLB" show --pin "$(pin 1)" --buckets 3)
sk_diag "$show"
[ "$(grep -c '^bucket .* pkts=[1-9]' <<<"$show")" = 3 ] && sk_ok "sklb show lists per-bucket counters" ||
	sk_not_ok "sklb show lists per-bucket counters"

sk_term "$H1"
sk_term "$H2"
sk_term "$H3"
for i in 1 2 3; do
	sk_in "$i" "$SKLB" detach --pin "$(pin "$i")" || ok=0
done
if ! sk_in 1 ip link show eth0 | grep -q xdp && ! sk_in 1 ip addr show lo | grep -q "$VIP" &&
	! sk_in 1 ip addr show lo | grep -q "$VIP6"; then
	sk_ok "sklb detach removes the program and the VIP"
else
	sk_not_ok "sklb detach removes the program and the VIP"
fi
sk_done
