#!/usr/bin/env bash
# mirror_diskfull: the secondary's disk fills up (ENOSPC on apply) while the primary still has room.
# The application must not see errors that its local filesystem would not give, the primary must
# never report the peer as in sync while the peer lacks data, and once the secondary has room again
# the pair converges to identical trees (invariants 1 and 3: an incomplete copy is never "in sync").
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init

# The secondary's directory lives on a small tmpfs of its own (mounted one level up, so it can be
# grown later without touching skfused's read-only bind mount of the directory itself).
small=${SK_ROOT[2]}/small
mkdir -p "$small" && mount -t tmpfs -o size=24m skdiskfull "$small" || mt_bail "tmpfs for the secondary"
sk_track_mount "$small"
MT_DIR2=$small/data
mkdir -p "$MT_DIR2"
mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary || mt_bail "primary did not start"
if mt_wait_until 10 mt_peer_is connected; then sk_ok "peer connected"; else sk_not_ok "peer connected"; fi

dd if=/dev/urandom of="$MT_DIR1/fits" bs=1M count=8 status=none conv=fsync
if mt_wait_synced 10; then sk_ok "8 MiB replicated, in sync"; else sk_not_ok "8 MiB replicated, in sync"; fi

# 32 MiB more does not fit on the secondary's 24 MiB.
rc=0
dd if=/dev/urandom of="$MT_DIR1/toobig" bs=1M count=32 status=none conv=fsync || rc=$?
if [ "$rc" = 0 ]; then
	sk_ok "the application's write succeeds (the primary has room)"
else
	sk_not_ok "the application's write succeeds (the primary has room) (dd rc=$rc)"
fi
for i in $(seq 20); do echo "small $i" >"$MT_DIR1/small$i" || sk_diag "small$i failed"; done

# Never "connected and in sync" while the secondary lacks data.
lies=0
for _ in $(seq 20); do
	mt_synced && lies=$((lies + 1))
	sleep 0.1
done
st=$(mt_status 1)
if [ "$lies" = 0 ]; then
	sk_ok "primary does not report the full peer as in sync (peer $(mt_st 1 peer))"
else
	sk_not_ok "primary does not report the full peer as in sync ($lies of 20 polls said in sync)"
	sk_diag "status: $st"
	sk_diag "secondary: $(df -h "$MT_DIR2" | tail -n 1); toobig there: $(stat -c %s "$MT_DIR2/toobig" 2>&1)"
fi
sk_diag "primary log: $(grep -iE 'warn|err' "$SK_TMP/fused1.1.log" | tail -n 3)"
sk_diag "secondary log: $(grep -iE 'warn|err' "$SK_TMP/fused2.1.log" | tail -n 3)"

# Give the secondary room again (same tmpfs superblock, bigger), then the pair must converge.
mount -o remount,size=128m "$small" || sk_diag "remount of the tmpfs failed"
sk_diag "secondary fs now: $(df -h "$MT_DIR2" | tail -n 1)"
if mt_wait_synced 30; then sk_ok "in sync again once the secondary has room"; else sk_not_ok "in sync again once the secondary has room"; fi
mt_treecmp_tap "primary backing vs secondary" none "$MT_BACK1" "$MT_DIR2" entries size content
mt_stop_primary
sk_done
