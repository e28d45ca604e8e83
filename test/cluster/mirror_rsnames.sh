#!/usr/bin/env bash
# mirror_rsnames: the incremental resync names what it sends (issue 10 items 3 and 6).
#   A. files the kernel cannot name: the secondary away, files changed in 80 directories, then the
#      kernel's dentries and inodes dropped (as memory pressure or a long outage does). A tracked
#      file's handle then opens disconnected and d_path gives no path; one walk of the tree names
#      them all, and every change reaches the secondary. Before the walk, files in directories past
#      the 63rd of a level were never found and their changes silently dropped.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init
export SKFUSED_RESYNC_INCREMENTAL=1 # this scenario is about the incremental resync

# The status: -N ends the request at once (skfused answers and closes), -q1 would wait 1 s each time.
mt_status() {
	local sock=$MT_CTL1
	[ "$1" = 2 ] && sock=$MT_CTL2
	echo '{"cmd":"status"}' | timeout 3 nc -N -U "$sock" 2>/dev/null | head -n1
}
peer_not() { local p; p=$(mt_st 1 peer); [ -n "$p" ] && [ "$p" != "$1" ]; }
P1LOG() { echo "$SK_TMP/fused1.$MT_N1.log"; }

secondary_away() {
	sk_term "$MT_PID2"
	mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'"
	mt_wait_until 10 peer_not connected
}

# back LABEL: the secondary returns; in sync, incremental, trees identical (every treecmp property)
back() {
	local k
	mt_start_secondary || mt_bail "secondary restart"
	if mt_wait_synced 60; then sk_ok "$1: back in sync"; else sk_not_ok "$1: back in sync"; fi
	k=$(mt_st 1 resync.kind)
	if [ "$k" = incremental ]; then sk_ok "$1: resync kind incremental"; else sk_not_ok "$1: resync kind incremental (got '$k')"; fi
	sk_diag "$(grep 'resync done' "$(P1LOG)" | tail -n 1)"
	mt_same_trees "$1: trees identical"
}

mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary || mt_bail "primary did not start"
D=$MT_DIR1
"$MT_PY" - "$D" <<'PY' || mt_bail "making the tree"
import os, sys
for i in range(80):
    d = os.path.join(sys.argv[1], "d%02d" % i)
    os.mkdir(d)
    for j in range(3):
        with open(os.path.join(d, "f%d" % j), "wb") as f:
            f.write(os.urandom(65536))
PY
if mt_wait_synced 60; then sk_ok "initial tree replicated"; else sk_not_ok "initial tree replicated"; fi

# ---- A: changes in every directory, then the kernel forgets the names ----
secondary_away
"$MT_PY" - "$D" <<'PY' || mt_bail "changes"
import os, sys
for i in range(80):
    d = os.path.join(sys.argv[1], "d%02d" % i)
    with open(os.path.join(d, "f0"), "r+b") as f:   # in place
        f.seek(10000)
        f.write(os.urandom(5000))
    with open(os.path.join(d, "f1"), "ab") as f:    # appended
        f.write(os.urandom(3000))
PY
# FUSE forgets what the kernel drops, skfused closes its handles, a second pass drops the backing ones
sync
for _ in 1 2 3; do echo 2 >/proc/sys/vm/drop_caches; sleep 0.3; done
back "A (dentries dropped)"
line=$(grep 'resync done' "$(P1LOG)" | tail -n 1)
unnamed=$(sed -n 's/.* of \([0-9]*\) files the kernel could not name.*/\1/p' <<<"$line")
if [ "${unnamed:-0}" -gt 0 ]; then
	sk_ok "A: the kernel could not name $unnamed tracked files: named by a walk"
else
	sk_not_ok "A: the kernel could not name some tracked files (the case this phase is about; got '${unnamed:-}')"
fi

mt_stop_primary
sk_done
