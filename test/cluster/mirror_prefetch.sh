#!/usr/bin/env bash
# mirror_prefetch: an incremental resync's read-ahead hints (issue 10 item 6, fused/rs_prefetch.c).
#   The secondary away, files changed in place and appended at offsets off page boundaries in 60
#   directories, every cache dropped; the secondary returns. The primary names each file it will
#   send well before its data (an RS_DATA without data); the secondary's helper threads look the
#   paths up and ask the disk for the partial pages the data will rewrite, so its receiver does not
#   read them one after the other. Checked: the trees are identical, and the secondary's count of
#   hints, files looked up and partial pages asked (none refused) covers every changed file.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init
export SKFUSED_RESYNC_INCREMENTAL=1 # the hints go with the incremental resync

mt_status() {
	local sock=$MT_CTL1
	[ "$1" = 2 ] && sock=$MT_CTL2
	echo '{"cmd":"status"}' | timeout 3 nc -N -U "$sock" 2>/dev/null | head -n1
}
peer_not() { local p; p=$(mt_st 1 peer); [ -n "$p" ] && [ "$p" != "$1" ]; }

mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary || mt_bail "primary did not start"
"$MT_PY" - "$MT_DIR1" <<'PY' || mt_bail "making the tree"
import os, sys
for i in range(60):
    d = os.path.join(sys.argv[1], "d%02d" % i)
    os.mkdir(d)
    for j in range(4):
        with open(os.path.join(d, "f%d" % j), "wb") as f:
            f.write(os.urandom(40000))
PY
if mt_wait_synced 60; then sk_ok "initial tree replicated"; else sk_not_ok "initial tree replicated"; fi

sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'"
mt_wait_until 30 peer_not connected || sk_diag "the primary still says connected 30 s after the secondary's stop"
# 120 files changed: f0 in place (both ends off a page boundary), f1 appended (from an odd size)
"$MT_PY" - "$MT_DIR1" <<'PY' || mt_bail "changes"
import os, sys
for i in range(60):
    d = os.path.join(sys.argv[1], "d%02d" % i)
    with open(os.path.join(d, "f0"), "r+b") as f:
        f.seek(5000 + i)
        f.write(os.urandom(7000))
    with open(os.path.join(d, "f1"), "ab") as f:
        f.write(os.urandom(3000))
PY
sync
for _ in 1 2 3; do echo 3 >/proc/sys/vm/drop_caches; sleep 0.3; done

mt_start_secondary || mt_bail "secondary restart"
if mt_wait_synced 60; then sk_ok "back in sync"; else sk_not_ok "back in sync"; fi
k=$(mt_st 1 resync.kind)
if [ "$k" = incremental ]; then
	sk_ok "resync kind incremental"
else
	sk_not_ok "resync kind incremental (got '$k')"
	sk_diag "$(grep -E 'resync|peer|tracking' "$SK_TMP/fused1.$MT_N1.log" | tail -n 15)"
fi
mt_same_trees "trees identical after the resync"

P2LOG=$SK_TMP/fused2.$MT_N2.log
line=$(grep 'resync prefetch:' "$P2LOG" | tail -n 1)
sk_diag "secondary: ${line:-no prefetch line}"
read -r hints warmed pages refused < <(sed -n 's/.*prefetch: \([0-9]*\) hints, \([0-9]*\) files looked up ahead (\([0-9]*\) partial pages.*, \([0-9]*\) refused.*/\1 \2 \3 \4/p' <<<"$line")
if [ "${hints:-0}" -ge 120 ] && [ "${warmed:-0}" -ge 120 ]; then
	sk_ok "every changed file hinted and looked up ahead ($hints hints, $warmed files)"
else
	sk_not_ok "every changed file hinted and looked up ahead (want >= 120: '${hints:-}' hints, '${warmed:-}' files)"
fi
# f0's extent starts and ends inside pages that hold data here; f1's append starts inside one
if [ "${pages:-0}" -ge 120 ]; then sk_ok "partial pages asked of the disk ahead ($pages)"; else sk_not_ok "partial pages asked of the disk ahead (want >= 120, got '${pages:-}')"; fi
if [ "${refused:-x}" = 0 ]; then sk_ok "no hint refused"; else sk_not_ok "no hint refused (got '${refused:-}')"; fi

mt_stop_primary
sk_done
