#!/usr/bin/env bash
# mirror_perms: a non-root user gets the same outcomes on the mirror as on a plain directory.
# Issue 4 items 1 and 7: uid 65534 (nobody) with supplementary group 1234 runs the same
# operations on the primary's mount and on a plain directory with the same fixture; every
# outcome (OK / EACCES / EPERM / ...) and resulting owner:group and mode must match, and files
# the user created are owned by that user on both nodes.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init

mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary || mt_bail "primary did not start"
mt_wait_until 10 mt_peer_is connected || sk_diag "peer not connected: $(mt_status 1)"

plain=$SK_TMP/plain
mkdir -p "$plain"
"$MT_PY" "$SK_TMP/tools/fsops.py" perms-setup "$MT_DIR1" || mt_bail "fixture on the mount"
"$MT_PY" "$SK_TMP/tools/fsops.py" perms-setup "$plain" || mt_bail "fixture on the plain dir"

as_user() { timeout 60 setpriv --reuid 65534 --regid 65534 --groups 1234 "$MT_PY" "$SK_TMP/tools/fsops.py" perms "$1"; }
as_user "$MT_DIR1" >"$SK_TMP/perms.mirror" 2>"$SK_TMP/perms.mirror.err"
as_user "$plain" >"$SK_TMP/perms.plain" 2>"$SK_TMP/perms.plain.err"
[ -s "$SK_TMP/perms.mirror.err" ] && sk_diag "stderr on mirror: $(head -n 5 "$SK_TMP/perms.mirror.err")"

n_plain=$(wc -l <"$SK_TMP/perms.plain")
n_mirror=$(wc -l <"$SK_TMP/perms.mirror")
if [ "$n_plain" -gt 40 ] && [ "$n_plain" = "$n_mirror" ]; then
	sk_ok "the user ran all $n_plain operations on both"
else
	sk_not_ok "the user ran all operations on both (plain $n_plain, mirror $n_mirror)"
fi
# One TAP line per operation: outcome and resulting owner/mode identical.
while IFS=$'\t' read -r op res desc; do
	m=$(awk -F'\t' -v o="$op" '$1 == o { print $2 "\t" $3; exit }' "$SK_TMP/perms.mirror")
	if [ "$m" = "$res"$'\t'"$desc" ]; then
		sk_ok "as nobody: $op -> $res $desc"
	else
		sk_not_ok "as nobody: $op -> plain: $res $desc, mirror: ${m:-<missing>}"
	fi
done <"$SK_TMP/perms.plain"

if mt_wait_synced 20; then sk_ok "peer in sync after the workload"; else sk_not_ok "peer in sync after the workload"; fi
mt_treecmp_tap "primary backing vs secondary" none "$MT_BACK1" "$MT_DIR2"

# Ownership by the caller, on both nodes (created, mkdir'd, symlinked, mkfifo'd by uid 65534).
for p in sgid/f:65534:1234 sgid/d:65534:1234 pub/nd2:65534:65534 pub/sl:65534:65534 grp/x:65534:65534 nob/n1:65534:1234; do
	rel=${p%%:*}
	want=${p#*:}
	a=$(stat -c %u:%g "$MT_BACK1/$rel" 2>&1)
	b=$(stat -c %u:%g "$MT_DIR2/$rel" 2>&1)
	if [ "$a" = "$want" ] && [ "$b" = "$want" ]; then
		sk_ok "$rel owned by $want on primary and secondary"
	else
		sk_not_ok "$rel owned by $want on primary ($a) and secondary ($b)"
	fi
done

mt_stop_primary
sk_done
