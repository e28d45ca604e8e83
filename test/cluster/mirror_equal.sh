#!/usr/bin/env bash
# mirror_equal: after a concurrent namespace/metadata stress through the mount (4 processes with
# umasks 0, 022, 077 and 002, 10000 ops each by default), every file has the mode its creator
# asked for (mode & ~umask, as on a local filesystem) and both replicas are equal in every
# property treecmp knows (issue 9 B9). During the first stress the secondary is stopped (SIGSTOP)
# MT_EQUAL_FAULTS times (default 3) for 0.8 s: each stop past the latency budget is a peer loss, and
# the resync that follows runs under that churn (issue 10: the incremental resync once left files
# empty on the secondary, and split hard-link groups across sessions). MT_EQUAL_OPS /
# MT_EQUAL_PROCS / MT_EQUAL_SEED override; SKFUSED_RESYNC_INCREMENTAL=0 runs it with the full resync.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init
OPS=${MT_EQUAL_OPS:-10000}
PROCS=${MT_EQUAL_PROCS:-4}
SEED=${MT_EQUAL_SEED:-$$}
FAULTS=${MT_EQUAL_FAULTS:-3}

# The comparison itself can fail: each property, changed on one side of a small tree, is found
# (treecmp exit 1), a path listed for --times but missing is a difference, not skipped, and an
# unknown property name is an error (issue 9 B15).
tc() { "$MT_PY" "$SK_SRC/test/tools/treecmp.py" "$@" >/dev/null 2>&1; echo $?; }
# tcp PROP A B: treecmp's summary verdict for PROP, and its exit status
tcp() { local o r=0; o=$("$MT_PY" "$SK_SRC/test/tools/treecmp.py" --summary "$2" "$3" 2>/dev/null) || r=$?
	echo "$(printf '%s\n' "$o" | awk -F'\t' -v p="$1" '$1 == p {print $2}')/$r"; }
mkt() { mkdir -p "$1/d" && echo abc >"$1/f" && ln "$1/f" "$1/d/h" && ln -s f "$1/l" &&
	setfattr -n user.k -v v "$1/f" && touch -h -d @1000000000 "$1/f" "$1/l" "$1/d/h" "$1/d" "$1"; }
T=$SK_TMP/tc
bad=""
for case in mode owner size content nlink xattr mtime symlink; do
	rm -rf "$T" && mkt "$T/a" && mkt "$T/b" || mt_bail "treecmp fixture"
	case $case in
	mode) chmod 0600 "$T/b/f" ;;
	owner) chown 1234:1234 "$T/b/f" ;;
	size) echo abcd >"$T/b/f" ;;
	content) echo abd >"$T/b/f" ;;
	nlink) rm "$T/b/d/h" && cp -p "$T/b/f" "$T/b/d/h" ;;
	xattr) setfattr -n user.k -v w "$T/b/f" ;;
	mtime) touch -h -d @1000000001 "$T/b/l" ;;
	symlink) rm "$T/b/l" && ln -s g "$T/b/l" ;;
	esac
	touch -h -d @1000000000 "$T/b/f" "$T/b/l" "$T/b/d/h" 2>/dev/null
	[ "$case" = mtime ] && touch -h -d @1000000001 "$T/b/l"
	touch -d @1000000000 "$T/a/d" "$T/b/d" "$T/a" "$T/b"
	[ "$(tcp "$case" "$T/a" "$T/b")" = FAIL/1 ] || bad="$bad $case"
done
rm -rf "$T" && mkt "$T/a" && mkt "$T/b" && echo missing >"$T/times"
[ "$(tc "$T/a" "$T/b")" = 0 ] || bad="$bad identical-trees"
[ "$(tc --times "$T/times" "$T/a" "$T/b")" = 1 ] || bad="$bad times-missing-path"
[ "$(tc --props mode,nosuchprop "$T/a" "$T/b")" = 2 ] || bad="$bad unknown-prop"
[ "$(tc "$T/a" "$T/nonexistent")" = 2 ] || bad="$bad missing-side"
if [ -z "$bad" ]; then sk_ok "treecmp finds each kind of difference"; else sk_not_ok "treecmp finds each kind of difference (missed:$bad)"; fi

mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary || mt_bail "primary did not start"
mt_wait_until 10 mt_peer_is connected || mt_bail "primary not connected"

mkdir -p "$MT_DIR1/stress" "$MT_DIR1/storm" || mt_bail "mkdir in the mount"
rc=0
timeout 400 "$MT_PY" "$SK_SRC/test/tools/mdstress.py" "$MT_DIR1/stress" --procs "$PROCS" \
	--ops "$OPS" --seed "$SEED" --umasks 0,022,077,002 >"$SK_TMP/mdstress.out" 2>&1 &
md=$!
# peer losses in the middle of the churn: 3 s in, then every 4 s while the stress runs
for ((i = 0; i < FAULTS; i++)); do
	sleep "$([ "$i" = 0 ] && echo 3 || echo 4)"
	kill -0 "$md" 2>/dev/null || break
	sk_sigstop "$MT_PID2" && sleep 0.8 && sk_sigcont "$MT_PID2"
done
wait "$md" || rc=$?
out=$(cat "$SK_TMP/mdstress.out")
sk_diag "seed $SEED: $(printf '%s\n' "$out" | grep -v '^mode-mismatch' | grep -v '^unexpected' | tail -n 6)"
if [ "$rc" = 0 ]; then
	sk_ok "stress: every created file and directory has mode & ~umask of its creator"
else
	sk_not_ok "stress: every created file and directory has mode & ~umask of its creator (exit $rc)"
	sk_diag "$(printf '%s\n' "$out" | grep '^mode-mismatch' | head -n 10)"
fi
# Bursts of creates from 16 processes (umask 0 and 022 alternating): the FUSE worker pool grows
# past its idle limit and shrinks between bursts, so threads start from threads that served
# another umask (how fsstress's umask-0 files came out 0644, issue 9 B9).
rc=0
out2=$(timeout 300 "$MT_PY" "$SK_SRC/test/tools/mdstress.py" "$MT_DIR1/storm" --procs 16 --ops 400 \
	--creates --burst 8 --seed "$SEED" --umasks 0,022 2>&1) || rc=$?
sk_diag "$(printf '%s\n' "$out2" | tail -n 1)"
if [ "$rc" = 0 ]; then
	sk_ok "create bursts: every new file and directory has mode & ~umask of its creator"
else
	sk_not_ok "create bursts: every new file and directory has mode & ~umask of its creator (exit $rc)"
	sk_diag "$(printf '%s\n' "$out2" | grep '^mode-mismatch' | head -n 10)"
fi
out="$out
$out2"
n_unexp=$(printf '%s\n' "$out" | grep -c '^unexpected')
if [ "$n_unexp" = 0 ]; then
	sk_ok "stress: no operation failed with an unexpected error"
else
	sk_not_ok "stress: no operation failed with an unexpected error ($n_unexp)"
	sk_diag "$(printf '%s\n' "$out" | grep '^unexpected' | head -n 10)"
fi
if mt_wait_synced 120; then
	sk_ok "secondary in sync after the stress"
else
	sk_not_ok "secondary in sync after the stress"
	sk_diag "primary log:" "$(grep -v ' debug: ' "$SK_TMP/fused1.$MT_N1.log" | tail -n 15)"
	sk_diag "secondary log:" "$(grep -v ' debug: ' "$SK_TMP/fused2.$MT_N2.log" | tail -n 15)"
fi
if sk_alive "$MT_PID2" && sk_alive "$MT_PID1"; then sk_ok "both skfused still running"; else sk_not_ok "both skfused still running"; fi
P1LOG=$SK_TMP/fused1.$MT_N1.log
n_lost=$(grep -c 'peer lost' "$P1LOG")
# which resyncs repaired them (incremental by default, which may hand over to the full one; full
# with SKFUSED_RESYNC_INCREMENTAL=0): the comparison below holds either way
n_incr=$(grep -c 'resync (incremental)' "$P1LOG")
n_done=$(grep -c 'resync done' "$P1LOG")
sk_diag "$n_lost peer losses under the stress; $n_done resyncs done, $n_incr incremental ones started:" \
	"$(grep -o 'resync done .*' "$P1LOG" | tail -n 3)"
if [ "$FAULTS" = 0 ] || { [ "$n_lost" -ge 1 ] && [ "$n_done" -ge 2 ]; }; then
	sk_ok "the stops caused peer losses ($n_lost), each repaired by a resync ($n_done done)"
else
	sk_not_ok "the stops caused peer losses ($n_lost), each repaired by a resync ($n_done done)"
fi
# by default the resyncs after a peer loss are incremental (the first sync, with nothing tracked
# yet, is full); SKFUSED_RESYNC_INCREMENTAL=0 (any value but 1) forces the full one
if [ "$FAULTS" = 0 ] || [ "${SKFUSED_RESYNC_INCREMENTAL:-1}" != 1 ] || [ "$n_incr" -ge 1 ]; then
	sk_ok "incremental resyncs after the peer losses ($n_incr started)"
else
	sk_not_ok "incremental resyncs after the peer losses ($n_incr started)"
fi
mt_treecmp_tap "primary backing vs secondary" none "$MT_BACK1" "$MT_DIR2" \
	entries type mode owner size content rdev symlink xattr acl mtime
# Link counts and hard-link groups. A hard-link group of the primary arriving on the secondary as
# separate files with equal contents was seen about once in 20 runs; its cause was a rename of a
# multiply linked file into a part of a full resync's listing already passed (the secondary's table
# of the group kept an inode left with no name; mirror-links phase C fails without the fix). After
# the fix, 20 runs in a row of this scenario were equal, so any link difference fails here.
links=$("$MT_PY" "$SK_SRC/test/tools/treecmp.py" --props nlink,hardlinks --times none --max 100000 \
	"$MT_BACK1" "$MT_DIR2" 2>&1)
if [ $? = 0 ]; then
	sk_ok "primary backing vs secondary: link counts and hard-link groups identical"
else
	sk_not_ok "primary backing vs secondary: link counts and hard-link groups identical"
	sk_diag "$(printf '%s\n' "$links" | head -n 20)"
fi
mt_treecmp_tap "mount vs primary backing" none "$MT_DIR1" "$MT_BACK1" \
	entries type mode owner size content nlink hardlinks symlink xattr mtime
mt_stop_primary
sk_done
