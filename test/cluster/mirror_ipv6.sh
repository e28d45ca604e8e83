#!/usr/bin/env bash
# test/cluster/mirror_ipv6.sh: a mirror whose nodes reach each other over IPv6 only (the config
# accepts IPv6 addresses, so skfused must listen and connect on them): replication, a reconnect
# after the secondary restarts, and command lines with addresses skfused must refuse.
set -uo pipefail
source "$SK_SRC/test/cluster/mirror_common.sh"

mt_init
for i in 1 2; do
	sk_in "$i" ip -6 addr add "fd98::$i/64" dev eth0 nodad || mt_bail "IPv6 address on node $i"
done
sk_check "node 1 reaches node 2 over IPv6" mt_wait_until 10 sk_in 1 ping -6 -c1 -W1 fd98::2

# refused before anything is touched: a bare IPv6 address (no brackets), a name, a bad port
for bad in "fd98::2:$MT_PORT" "node2:$MT_PORT" "[fd98::2]:0" "[fd98::2]"; do
	out=$(timeout 10 "$MT_FUSED" --role primary --dir "$MT_DIR1" --peer "$bad" --secret "$MT_SECRET" 2>&1)
	rc=$?
	sk_check "--peer '$bad' refused with a usage error" \
		bash -c '[ "$1" = 2 ] && [[ "$2" == *"--peer must be"* ]]' _ "$rc" "$out"
done
sk_check "nothing mounted by the refused starts" bash -c '! mountpoint -q "$1"' _ "$MT_DIR1"

sk_track_mount "$MT_DIR2"
MT_PID2=$(sk_spawn 2 fused2.v6 "$MT_FUSED" --role secondary --dir "$MT_DIR2" \
	--listen "[fd98::2]:$MT_PORT" --secret "$MT_SECRET" --module-id 1 \
	--state "${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG" --ctl "$MT_CTL2") || mt_bail "spawn secondary"
sk_check "secondary listening on [fd98::2]" mt_wait_until 10 mt_log_has_ready fused2.v6
sk_check "the listening socket is IPv6" bash -c 'grep -q "\[fd98::2\]:$1"' _ "$MT_PORT" \
	<<<"$(sk_in 2 ss -Htln)"
exec {bfd}<"$MT_DIR1" || mt_bail "backing fd"
MT_BACK1=/proc/$BASHPID/fd/$bfd/.
sk_track_mount "$MT_DIR1"
MT_PID1=$(sk_spawn 1 fused1.v6 "$MT_FUSED" --role primary --dir "$MT_DIR1" \
	--peer "[fd98::2]:$MT_PORT" --secret "$MT_SECRET" --module-id 1 \
	--state "${SK_ROOT[1]}/var/lib/steadykit/state-$MT_TAG" --ctl "$MT_CTL1") || mt_bail "spawn primary"
sk_check "primary mounted" mt_wait_until 10 mt_log_has_ready fused1.v6
sk_check "primary connected to [fd98::2] and in sync" mt_wait_until 20 mt_synced
echo "over IPv6" >"$MT_DIR1/v6"
sk_check "a write reaches the secondary over IPv6" grep -q "over IPv6" "$MT_DIR2/v6"

sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'" || sk_diag "secondary did not unmount"
echo "while the secondary was away" >"$MT_DIR1/v6b"
MT_PID2=$(sk_spawn 2 fused2.v6b "$MT_FUSED" --role secondary --dir "$MT_DIR2" \
	--listen "[fd98::2]:$MT_PORT" --secret "$MT_SECRET" --module-id 1 \
	--state "${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG" --ctl "$MT_CTL2") || mt_bail "respawn secondary"
sk_check "the primary reconnects over IPv6 and resyncs" mt_wait_until 30 mt_synced
sk_check "what was written while it was away is there" grep -q "was away" "$MT_DIR2/v6b"
mt_stop_primary
sk_done
