#!/usr/bin/env bash
# mirror_perms: a non-root user gets the same outcomes on the mirror as on a plain directory.
# Issue 4 items 1 and 7: uid 65534 (nobody), once with supplementary group 1234 and once with no
# supplementary groups, runs the same operations on the primary's mount and on a plain directory
# with the same fixture; every
# outcome (OK / EACCES / EPERM / ...) and resulting owner:group and mode must match, and files
# the user created are owned by that user on both nodes.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init

mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary || mt_bail "primary did not start"
mt_wait_until 10 mt_peer_is connected || sk_diag "peer not connected: $(mt_status 1)"

# as_user DIR SETPRIV-GROUP-ARGS...: the perms workload as uid/gid 65534
as_user() {
	local d=$1
	shift
	timeout 60 setpriv --reuid 65534 --regid 65534 "$@" "$MT_PY" "$SK_TMP/tools/fsops.py" perms "$d"
}

# run_as LABEL GROUP-ARGS...: same fixture and workload on the mirror and on a plain directory
run_as() {
	local label=$1 plain=$SK_TMP/plain-$1 mir=$MT_DIR1/$1 op res desc m n_plain n_mirror
	shift
	mkdir -p "$plain" "$mir"
	"$MT_PY" "$SK_TMP/tools/fsops.py" perms-setup "$mir" || mt_bail "fixture on the mount"
	"$MT_PY" "$SK_TMP/tools/fsops.py" perms-setup "$plain" || mt_bail "fixture on the plain dir"
	as_user "$mir" "$@" >"$SK_TMP/perms-$label.mirror" 2>"$SK_TMP/perms-$label.mirror.err"
	as_user "$plain" "$@" >"$SK_TMP/perms-$label.plain" 2>"$SK_TMP/perms-$label.plain.err"
	[ -s "$SK_TMP/perms-$label.mirror.err" ] && sk_diag "stderr on mirror: $(head -n 5 "$SK_TMP/perms-$label.mirror.err")"
	n_plain=$(wc -l <"$SK_TMP/perms-$label.plain")
	n_mirror=$(wc -l <"$SK_TMP/perms-$label.mirror")
	if [ "$n_plain" -gt 40 ] && [ "$n_plain" = "$n_mirror" ]; then
		sk_ok "$label: the user ran all $n_plain operations on both"
	else
		sk_not_ok "$label: the user ran all operations on both (plain $n_plain, mirror $n_mirror)"
	fi
	# One TAP line per operation: outcome and resulting owner/mode identical.
	while IFS=$'\t' read -r op res desc; do
		m=$(awk -F'\t' -v o="$op" '$1 == o { print $2 "\t" $3; exit }' "$SK_TMP/perms-$label.mirror")
		if [ "$m" = "$res"$'\t'"$desc" ]; then
			sk_ok "$label: as nobody: $op -> $res $desc"
		else
			sk_not_ok "$label: as nobody: $op -> plain: $res $desc, mirror: ${m:-<missing>}"
		fi
	done <"$SK_TMP/perms-$label.plain"
}

run_as groups --groups 1234       # supplementary group 1234 must count (grp/ is 0770 root:1234)
run_as nogroups --clear-groups    # and root's groups must not leak into the user's calls

if mt_wait_synced 20; then sk_ok "peer in sync after the workload"; else sk_not_ok "peer in sync after the workload"; fi
mt_treecmp_tap "primary backing vs secondary" none "$MT_BACK1" "$MT_DIR2"

# Ownership by the caller, on both nodes (created, mkdir'd, symlinked, mkfifo'd by uid 65534).
for p in sgid/f:65534:1234 sgid/d:65534:1234 pub/nd2:65534:65534 pub/sl:65534:65534 grp/x:65534:65534 nob/n1:65534:1234; do
	rel=${p%%:*}
	want=${p#*:}
	a=$(stat -c %u:%g "$MT_BACK1/groups/$rel" 2>&1)
	b=$(stat -c %u:%g "$MT_DIR2/groups/$rel" 2>&1)
	if [ "$a" = "$want" ] && [ "$b" = "$want" ]; then
		sk_ok "$rel owned by $want on primary and secondary"
	else
		sk_not_ok "$rel owned by $want on primary ($a) and secondary ($b)"
	fi
done

mt_stop_primary
sk_done
