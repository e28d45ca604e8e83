#!/usr/bin/env bash
# mirror_hostile: an authenticated but malicious primary (an insider holding the secret) sends
# well-sealed frames with hostile content: the secondary stays up, refuses and counts them,
# applies nothing it should not, and still serves the genuine primary afterwards (issue 9 A1, A4, A6);
# its read-only view keeps the administrator's mount flags (A5).
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init --client
EP=$MT_TOOLS/evilprimary
[ -x "$EP" ] || mt_bail "evilprimary not built at $EP"
TO=${SK_IP[2]}:$MT_PORT

# The administrator mounted the secondary's directory nosuid,nodev,noexec: the read-only view
# skfused puts on it keeps those flags (issue 9 A5).
mount --bind "$MT_DIR2" "$MT_DIR2" && mount -o remount,bind,nosuid,nodev,noexec "$MT_DIR2" ||
	mt_bail "administrator's mount on $MT_DIR2"
sk_track_mount "$MT_DIR2"
mt_start_secondary || mt_bail "secondary did not start"
opts=$(findmnt -n -o OPTIONS -M "$MT_DIR2" | tail -n 1)
for o in ro nosuid nodev noexec; do
	if [[ ",$opts," == *",$o,"* ]]; then
		sk_ok "secondary's read-only view is $o"
	else
		sk_not_ok "secondary's read-only view is $o (options $opts)"
	fi
done
mt_start_primary || mt_bail "primary did not start"
mkdir -p "$MT_DIR1/app" && for i in $(seq 20); do echo "before $i" >"$MT_DIR1/app/f$i"; done
ln -s f1 "$MT_DIR1/app/link"
mt_wait_synced 20 || mt_bail "not in sync before the attack"
mt_stop_primary # the insider takes the primary's place

snap() { (cd "$MT_DIR2/app" && find . -printf '%p %y %m %U:%G %s %n %l\n' | sort &&
	find . -type f -exec sha256sum {} + | sort); }
snap >"$SK_TMP/before.snap"
rej0=$(mt_st 2 rejected_frames)
sk_diag "secondary rejected_frames before: ${rej0:-?}"

# evil CASE [args]: one TAP line for the case, one for the secondary still running after it
evil() {
	local c=$1 out rc=0
	shift
	out=$(sk_client timeout 120 "$EP" --to "$TO" --secret "$MT_SECRET" --case "$c" "$@" 2>&1) || rc=$?
	if [ "$rc" = 0 ]; then sk_ok "hostile '$c' handled"; else sk_not_ok "hostile '$c' handled (exit $rc)"; fi
	sk_diag "$out"
	if sk_alive "$MT_PID2"; then
		sk_ok "secondary still running after '$c'"
	else
		sk_not_ok "secondary still running after '$c'"
		sk_diag "secondary log: $(tail -n 5 "$SK_TMP/fused2.$MT_N2.log")"
		mt_start_secondary || mt_bail "secondary cannot be restarted"
	fi
}

evil control
evil longlink
if [ ! -e "$MT_DIR2/evil-long" ] && [ ! -L "$MT_DIR2/evil-long" ]; then
	sk_ok "no symlink made from the 65535-byte target"
else
	sk_not_ok "no symlink made from the 65535-byte target"
fi
evil fifo --wait-ms 5000
if [ -p "$MT_DIR2/evil-fifo" ]; then sk_ok "MKNOD of a FIFO applied (allowed)"; else sk_not_ok "MKNOD of a FIFO applied (allowed)"; fi
evil chardev --wait-ms 5000
rss0=$(awk '/VmRSS/ {print $2}' "/proc/$MT_PID2/status" 2>/dev/null)
evil handles --count 100000 --wait-ms 10000
rss1=$(awk '/VmRSS/ {print $2}' "/proc/$MT_PID2/status" 2>/dev/null)
sk_diag "secondary VmRSS around 100000 handles: ${rss0:-?} kB -> ${rss1:-?} kB"
evil names --count 2500000 --wait-ms 60000
rss2=$(awk '/VmRSS/ {print $2}' "/proc/$MT_PID2/status" 2>/dev/null)
sk_diag "secondary VmRSS after 2.5 M names: ${rss2:-?} kB; files in evil-dir: $(ls "$MT_DIR2/evil-dir" 2>/dev/null | wc -l)"
evil batch --count 600 --wait-ms 3000
# A resync session that ends without RS_END leaves no hard-link table behind (each entry of it
# holds an O_PATH fd): the secondary's open fds come back to where they were.
nfd() { ls "/proc/$MT_PID2/fd" 2>/dev/null | wc -l; }
fd0=$(nfd)
evil links --count 1000
sk_wait_for 5 bash -c "[ \$(ls /proc/$MT_PID2/fd | wc -l) -le $((fd0 + 8)) ]"
fd1=$(nfd)
if [ "$fd1" -le $((fd0 + 8)) ]; then
	sk_ok "hard-link table released when the session ended ($fd0 -> $fd1 open fds)"
else
	sk_not_ok "hard-link table released when the session ended ($fd0 -> $fd1 open fds)"
fi

# RS_MOVE (fused/moves.c) from the insider: nothing moves through a symlink to outside the tree,
# nor a symlink or a FIFO, nor the folder of kept copies or what is in it (refused, counted); a
# directory moves with its tree; at most 4096 are kept aside (the rest refused and counted), and
# a session that ends without RS_END removes what was kept, directories with their trees, and
# the folder.
mkdir -p "$SK_TMP/outside" && echo victim >"$SK_TMP/outside/victim"
evil moves --outside "$SK_TMP/outside" --count 5000 --wait-ms 60000
if [ "$(cat "$SK_TMP/outside/victim" 2>/dev/null)" = victim ]; then sk_ok "RS_MOVE: nothing moved through a symlink"; else sk_not_ok "RS_MOVE: nothing moved through a symlink"; fi
if [ -p "$MT_DIR2/evil-fifo" ]; then sk_ok "RS_MOVE: the FIFO stayed"; else sk_not_ok "RS_MOVE: the FIFO stayed"; fi
# made f0..f4999 after the directory: 4095 were kept aside (then removed with the session), 905 refused stay
left=$(ls "$MT_DIR2/evil-mv" 2>/dev/null | grep -c '^f')
if [ "$left" = 905 ]; then sk_ok "RS_MOVE: 4096 kept at most (a directory, then 4095 files; 905 refused stay)"; else sk_not_ok "RS_MOVE: 4096 kept at most (a directory, then 4095 files; 905 refused stay; $left left)"; fi
if [ ! -e "$MT_DIR2/.steadykit-moves" ] && [ ! -e "$MT_DIR2/evil-mvd" ] && ! ls "$MT_DIR2/evil-mv" | grep -q '^[guvw]'; then
	sk_ok "RS_MOVE: the kept copies and their folder are gone with the session (no name made from them)"
else
	sk_not_ok "RS_MOVE: the kept copies and their folder are gone with the session (no name made from them)"
	ls -la "$MT_DIR2/.steadykit-moves" 2>&1 | head -n 5 >&2
fi
grep 'kept aside\|steadykit-moves' "$SK_TMP/fused2.$MT_N2.log" | head -n 3 | while read -r l; do sk_diag "$l"; done

# longlink 1, fifo 4, chardev 3 (open, create, resync data), handles 100000 - 65536, names 1,
# moves 2 (the folder, a kept copy) + 5000 - 4095
want=$((1 + 4 + 3 + 100000 - 65536 + 1 + 2 + 5000 - 4095))
rej1=$(mt_st 2 rejected_frames)
if [ -n "$rej0" ] && [ -n "$rej1" ] && [ $((rej1 - rej0)) -ge "$want" ]; then
	sk_ok "secondary counted what it refused ($((rej1 - rej0)) >= $want)"
else
	sk_not_ok "secondary counted what it refused (before ${rej0:-?}, after ${rej1:-?}, want +$want)"
fi
snap >"$SK_TMP/after.snap"
if cmp -s "$SK_TMP/before.snap" "$SK_TMP/after.snap"; then
	sk_ok "replicated data untouched by the hostile frames"
else
	sk_not_ok "replicated data untouched by the hostile frames"
	sk_diag "$(diff "$SK_TMP/before.snap" "$SK_TMP/after.snap" | head -n 10)"
fi
if [ -z "$(find "${SK_ROOT[2]}" -path "$MT_DIR2" -prune -o -name 'evil-*' -print 2>/dev/null)" ]; then
	sk_ok "nothing created outside the replicated directory"
else
	sk_not_ok "nothing created outside the replicated directory"
fi

# The genuine primary comes back and replicates again.
mt_start_primary || sk_diag "primary restart failed"
for i in $(seq 20); do echo "after $i" >>"$MT_DIR1/app/f$i"; done
mkdir "$MT_DIR1/app/after" && echo new >"$MT_DIR1/app/after/new"
if mt_wait_synced 60; then sk_ok "genuine primary in sync after the attack"; else sk_not_ok "genuine primary in sync after the attack"; fi
rc=0
out=$("$MT_PY" "$SK_SRC/test/tools/treecmp.py" --exclude evil-fifo --exclude evil-null \
	--exclude evil-dir --exclude evil-batch "$MT_BACK1/app" "$MT_DIR2/app" 2>&1) || rc=$?
if [ "$rc" = 0 ]; then sk_ok "app tree identical on both sides"; else sk_not_ok "app tree identical on both sides (treecmp exit $rc)"; fi
sk_diag "$(printf '%s\n' "$out" | tail -n 10)"
if sk_alive "$MT_PID2"; then sk_ok "secondary still running at the end"; else sk_not_ok "secondary still running at the end"; fi
mt_stop_primary
sk_done
