#!/usr/bin/env bash
# mirror_prefetch: an incremental resync's read-ahead hints (issue 10 item 6, fused/rs_prefetch.c).
#   The secondary away, files changed in place and appended at offsets off page boundaries in 60
#   directories, every cache dropped; the secondary returns. The primary names each file it will
#   send well before its data (an RS_DATA without data); the secondary's helper threads look the
#   paths up and ask the disk for the partial pages the data will rewrite, so its receiver does not
#   read them one after the other. Checked: the trees are identical, and the secondary's count of
#   hints, files looked up and partial pages asked (none refused) covers every changed file.
# The primary's data reader (fused/rs_files.c, SKFUSED_RS_READER=2, not the default) reads the
# files' data ahead while the resync thread sends: the sender pauses on its first file read ahead (fault rs_ahead_pause) until the
# application has written into it, so the buffered data is older than a live write; the trees
# must end identical (that file read again under the stream lock, counted); the secondary writes
# a new 1 MiB file's four data frames through one open (fused/rs_apply.c). Phase 2: the peer
# dropped right after a file was read ahead (fault rs_ahead_lost): no reader thread is left, the
# next session converges incrementally, and sends data read ahead. The sender waits for the
# reader on every file (fault rs_ahead_slow, as behind a slow link), so how many files are read
# ahead, and where phase 2's drop lands, do not depend on how the threads are scheduled.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init
export SKFUSED_RESYNC_INCREMENTAL=1 # the hints go with the incremental resync
export SKFUSED_RS_READER=2           # the files' data read ahead too (the default only opens them ahead)

mt_status() {
	local sock=$MT_CTL1
	[ "$1" = 2 ] && sock=$MT_CTL2
	echo '{"cmd":"status"}' | timeout 3 nc -N -U "$sock" 2>/dev/null | head -n1
}
peer_not() { local p; p=$(mt_st 1 peer); [ -n "$p" ] && [ "$p" != "$1" ]; }
# the secondary stopped, its mount gone, and the primary no longer connected to it
stop_secondary() {
	sk_term "$MT_PID2"
	mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'"
	mt_wait_until 30 peer_not connected || sk_diag "the primary still says connected 30 s after the secondary's stop"
}

mt_start_secondary || mt_bail "secondary did not start"
# every changed file is read ahead (rs_ahead_slow): 120 in phase 1; the 150th is the 30th of phase 2
SKFUSED_FAULT=rs_ahead_pause@1,rs_ahead_lost@150,rs_ahead_slow@1+ mt_start_primary || mt_bail "primary did not start"
P1LOG=$SK_TMP/fused1.$MT_N1.log
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

stop_secondary
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
with open(os.path.join(sys.argv[1], "d00", "big"), "wb") as f:  # 4 data frames of 256 KiB
    f.write(os.urandom(1 << 20))
PY
sync
for _ in 1 2 3; do echo 3 >/proc/sys/vm/drop_caches; sleep 0.3; done

mt_start_secondary || mt_bail "secondary restart"
# the sender waits on a file read ahead: write into every changed file, inside its tracked extent
if mt_wait_until 30 grep -q 'fault rs_ahead_pause' "$P1LOG"; then
	sk_ok "the sender paused on a file read ahead"
	"$MT_PY" - "$MT_DIR1" <<'PY' || sk_diag "the writes during the pause failed"
import os, sys
for i in range(60):
    d = os.path.join(sys.argv[1], "d%02d" % i)
    for name, off in (("f0", 6000 + i), ("f1", 41000)):
        with open(os.path.join(d, name), "r+b") as f:
            f.seek(off)
            f.write(os.urandom(512))
PY
else
	sk_not_ok "the sender paused on a file read ahead"
fi
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

# the secondary keeps a file open across its consecutive data frames: d00/big's 4 frames, 1 open
line=$(grep "resync data:" "$SK_TMP/fused2.$MT_N2.log" | tail -n 1)
sk_diag "secondary: ${line:-no data line}"
read -r frames opens < <(sed -n 's/.*resync data: \([0-9]*\) frames written, \([0-9]*\) opens.*/\1 \2/p' <<<"$line")
if [ -n "${frames:-}" ] && [ $((frames - opens)) -ge 3 ]; then
	sk_ok "data frames of one file written through one open ($frames frames, $opens opens)"
else
	sk_not_ok "data frames of one file written through one open (got '${frames:-}' frames, '${opens:-}' opens)"
fi

line=$(grep 'resync read ahead' "$P1LOG" | tail -n 1)
sk_diag "primary: ${line:-no read-ahead line}"
again=$(sed -n 's/.*files read again (changed since) \([0-9]*\).*/\1/p' <<<"$line")
if [ "${again:-0}" -ge 1 ]; then
	sk_ok "a file written after it was read ahead was read again ($again)"
else
	sk_not_ok "a file written after it was read ahead was read again (got '${again:-}')"
fi

# phase 2: the peer dropped right after a file was read ahead
stop_secondary
"$MT_PY" - "$MT_DIR1" <<'PY' || mt_bail "changes (phase 2)"
import os, sys
for i in range(60):
    d = os.path.join(sys.argv[1], "d%02d" % i)
    with open(os.path.join(d, "f2"), "r+b") as f:
        f.seek(100 + i)
        f.write(os.urandom(9000))
    with open(os.path.join(d, "f3"), "ab") as f:
        f.write(os.urandom(5000))
PY
mt_start_secondary || mt_bail "secondary restart (phase 2)"
if mt_wait_synced 60; then sk_ok "phase 2: back in sync"; else sk_not_ok "phase 2: back in sync"; fi
if grep -q 'fault rs_ahead_lost' "$P1LOG"; then
	sk_ok "phase 2: the peer was dropped after a file was read ahead"
else
	sk_not_ok "phase 2: the peer was dropped after a file was read ahead"
fi
k=$(mt_st 1 resync.kind)
if [ "$k" = incremental ]; then sk_ok "phase 2: the next session incremental"; else sk_not_ok "phase 2: the next session incremental (got '$k')"; fi
mt_same_trees "phase 2: trees identical"
if [ "$(cat "/proc/$MT_PID1/comm" 2>/dev/null)" = skfused ]; then
	left=$(cat /proc/"$MT_PID1"/task/*/comm 2>/dev/null | grep -c sk-rs-reader)
	if [ "$left" = 0 ]; then sk_ok "phase 2: no reader thread left"; else sk_not_ok "phase 2: no reader thread left ($left)"; fi
else
	sk_not_ok "phase 2: the primary's process found (pid $MT_PID1)"
fi
line=$(grep 'resync read ahead' "$P1LOG" | tail -n 1)
sk_diag "primary: ${line:-no read-ahead line}"
sent=$(sed -n 's/.*bytes sent as read ahead \([0-9]*\).*/\1/p' <<<"$line")
if [ "${sent:-0}" -gt 0 ]; then sk_ok "phase 2: data sent as read ahead ($sent bytes)"; else sk_not_ok "phase 2: data sent as read ahead (got '${sent:-}')"; fi
mt_stop_primary
sk_done
