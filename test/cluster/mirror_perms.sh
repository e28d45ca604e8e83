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
export SKFUSED_STAGES=1 # both nodes time their creates (the creates phase checks them)

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

# Creates: mixed flags, modes and umasks, as root and as nobody, give on the mount what they give on a
# plain directory, and the same trees on both nodes (modes, owners, sizes, ns mtimes of the files and
# of the directory); the kernel asks for each new file's security.capability once at most, and
# skfused answers from memory (status cap_queries).
cat >"$SK_TMP/tools/creates.py" <<'PY'
import os, sys
d, who = sys.argv[1], sys.argv[2]
out, asks = [], 0
def mk(name, flags, mode, umask, writes=1):
    global asks
    if os.path.exists(os.path.join(d, name)) and flags & os.O_TRUNC and not flags & os.O_EXCL:
        asks += 1 # an open, not a create: the kernel asks before the truncate too
    old = os.umask(umask)
    try:
        fd = os.open(os.path.join(d, name), flags, mode)
    except OSError as e:
        out.append(f"{name}\terrno {e.errno}")
        return
    finally:
        os.umask(old)
    if writes:
        asks += 1 # before the first write of the inode, never again (FUSE_HANDLE_KILLPRIV_V2)
    for i in range(writes):
        os.write(fd, bytes([65 + i]) * (4096 - 100 * i))
    os.close(fd)
    st = os.lstat(os.path.join(d, name))
    out.append(f"{name}\t{st.st_mode:o} {st.st_size} {st.st_uid}:{st.st_gid}")
W, C, X, T = os.O_WRONLY, os.O_CREAT, os.O_EXCL, os.O_TRUNC
if who == "root":
    modes, umasks = [0o644, 0o600, 0o666, 0o755, 0o6755, 0o2775], [0o22, 0o77, 0o2, 0]
    for i in range(60):
        mk(f"n{i:02d}", W | C | X, modes[i % 6], umasks[i % 4])
    mk("n00", W | C | X, 0o644, 0o22)                  # EEXIST
    mk("n01", W | C | T, 0o644, 0o22)                  # truncates an existing file, shorter data
    mk("rw", os.O_RDWR | C | X, 0o640, 0o22)
    mk("empty", W | C | T, 0o644, 0o22, writes=0)
    mk("app", W | C | os.O_APPEND, 0o644, 0o22, writes=3)
else:
    mk("pub/sid", W | C | X, 0o6777, 0)                # a write by its owner clears both set-id bits
    mk("pub/mine", W | C | X, 0o640, 0o27, writes=2)
print("\n".join(out))
print(f"asks\t{asks}")
PY
chmod 0755 "$SK_TMP/tools/creates.py"
creates_run() { # DIR: the workload as root, then as nobody in DIR/pub
	mkdir -p "$1/pub" && chmod 0777 "$1/pub" &&
		"$MT_PY" "$SK_TMP/tools/creates.py" "$1" root &&
		timeout 30 setpriv --reuid 65534 --regid 65534 --clear-groups "$MT_PY" "$SK_TMP/tools/creates.py" "$1" nobody
}
cq0=$(mt_st 1 cap_queries)
cs0=$(mt_st 1 stages.create.total.n)
creates_run "$MT_DIR1/creates" >"$SK_TMP/creates.mirror" 2>&1
cq1=$(mt_st 1 cap_queries)
cs1=$(mt_st 1 stages.create.total.n)
creates_run "$SK_TMP/plain-creates" >"$SK_TMP/creates.plain" 2>&1
if [ "$(wc -l <"$SK_TMP/creates.plain")" -ge 66 ] && cmp -s "$SK_TMP/creates.plain" "$SK_TMP/creates.mirror"; then
	sk_ok "creates: outcomes, modes, sizes and owners on the mount as on a plain directory"
else
	sk_not_ok "creates: outcomes, modes, sizes and owners on the mount as on a plain directory"
	sk_diag "$(diff "$SK_TMP/creates.plain" "$SK_TMP/creates.mirror" | head -n 10)"
fi
asks=$(awk -F'\t' '$1 == "asks" { s += $2 } END { print s + 0 }' "$SK_TMP/creates.mirror")
if [ -n "$cq0" ] && [ -n "$cq1" ] && [ $((cq1 - cq0)) -le "$asks" ]; then
	sk_ok "creates: at most one security.capability query per file written ($((cq1 - cq0)), at most $asks)"
else
	sk_not_ok "creates: at most one security.capability query per file written ($cq0 -> $cq1, at most $asks)"
fi
if mt_wait_synced 20; then sk_ok "creates: peer in sync"; else sk_not_ok "creates: peer in sync"; fi
mt_treecmp_tap "creates: primary backing vs secondary" none "$MT_BACK1/creates" "$MT_DIR2/creates"
# each new name was timed on both nodes (SKFUSED_STAGES=1), its stamps in order
cs2=$(mt_st 2 stages.create.total.n)
mo=$(( $(mt_st 1 stages.misordered) + $(mt_st 2 stages.misordered) ))
if [ $((cs1 - cs0)) -ge 60 ] && [ "${cs2:-0}" -ge 60 ] && [ "$mo" = 0 ]; then
	sk_ok "creates: stage times of $((cs1 - cs0)) creates on the primary, $cs2 on the secondary, none misordered"
else
	sk_not_ok "creates: stage times counted on both nodes (primary $cs0 -> $cs1, secondary $cs2, misordered $mo)"
fi

mt_stop_primary
sk_done
