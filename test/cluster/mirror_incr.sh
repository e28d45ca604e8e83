#!/usr/bin/env bash
# mirror_incr: failback costs what changed (issue 10 items 2, 3, 7). While the secondary is away the
# primary tracks what changes (fused/dirty.c); when it returns only that is sent (resync kind
# "incremental", no checksum pass), the trees end identical, and:
#   A. in-place extents, appends, truncates, new files, renames, deletes, chmod, xattrs and a
#      moved directory: bytes sent close to bytes modified, the 32 MiB file untouched on the wire;
#   B. the primary killed -9 while ALONE and restarted: tracking survives, nothing acked is lost,
#      the renamed files' names K kept on disk (another away period) are not taken back;
#   C. a resync interrupted by kill -9 of the secondary resumes with what is still owed;
#   D. past the tracking bound (SKFUSED_DIRTY_MAX) files fall back to directory marks: converges;
#   E. a corrupt tracking file means a full resync (said in the log), which converges;
#   F. a name whose inode on the secondary also stood for another file (hard links x/y, y replaced
#      while alone) is remade by the listing: its data is asked for and sent, never left empty;
#   G. the primary killed -9 while CONNECTED, under writes, and restarted: its activity log (what
#      was in flight) keeps tracking, the resync is incremental, nothing acknowledged is lost;
#   H. the opt-out: a primary started with SKFUSED_RESYNC_INCREMENTAL=0 runs the full resync
#      although its tracking is usable, and sends only the blocks that differ;
#   I. a 16 MiB file written in more places than its extents bound counts in 4 KiB zones: only
#      its changed zones are read and sent;
#   J. a 4 MiB file saved by a copy renamed over it is tracked whole and compared by block checksums
#      with the peer's copy: only its changed block is sent.
#   K. files renamed while alone (a log rotated, a file moved into another directory and appended
#      to, two files swapped through a third name), then the primary killed -9 and restarted: the
#      secondary's own copies move with their names (RS_MOVE, the names kept on disk) and are
#      compared: what changed is sent, not the 16 MiB; then 150 random
#      renames (over other files, into other and moved directories, chains), appends and removes
#      of 16 such files: the trees still end identical (MT_INCR_SEED reproduces a run); an
#      application's own .steadykit-moves at the root, there before or made while alone, is left
#      alone (renamed files then come whole), and the xattr marking SteadyKit's is refused.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init

ST1=${SK_ROOT[1]}/var/lib/steadykit/state-$MT_TAG

# The status: -N ends the request at once (skfused answers and closes), -q1 would wait 1 s each time.
mt_status() {
	local sock=$MT_CTL1
	[ "$1" = 2 ] && sock=$MT_CTL2
	echo '{"cmd":"status"}' | timeout 3 nc -N -U "$sock" 2>/dev/null | head -n1
}
# an answer other than $1 (no answer, e.g. a status request timing out under load, is not one)
peer_not() { local p; p=$(mt_st 1 peer); [ -n "$p" ] && [ "$p" != "$1" ]; }

# Nine skfused starts: each takes the key derived once (--key-fd, as the agent does) instead of
# running Argon2id again. Otherwise as mt_start_primary / mt_start_secondary (mirror_common.sh).
KEYFILE=$SK_TMP/master.key
(umask 077 && "$MT_TOOLS/derivekey" "$MT_SECRET" >"$KEYFILE") || mt_bail "derivekey"
export KEYFILE
# this scenario is about the incremental resync, the default: the runner's environment does not choose
# for it (H turns it off explicitly)
unset SKFUSED_RESYNC_INCREMENTAL
mt_start_secondary() {
	local name=fused2.$((++MT_N2))
	sk_track_mount "$MT_DIR2"
	MT_PID2=$(sk_spawn 2 "$name" bash -c 'exec "$0" "$@" 3<"$KEYFILE"' "$MT_FUSED" \
		--role secondary --dir "$MT_DIR2" --listen "${SK_IP[2]}:$MT_PORT" --key-fd 3 --module-id 1 \
		--state "${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG" --ctl "$MT_CTL2" "$@") || return 1
	mt_wait_until 10 mt_log_has_ready "$name" ||
		{ sk_diag "secondary not ready; log:" "$(tail -n 20 "$SK_TMP/$name.log")"; return 1; }
}
mt_start_primary() {
	local name=fused1.$((++MT_N1)) fd
	if [ -z "${MT_BACK1:-}" ]; then
		exec {fd}<"$MT_DIR1" || return 1
		MT_BACK1=/proc/$BASHPID/fd/$fd/.
	fi
	sk_track_mount "$MT_DIR1"
	MT_PID1=$(sk_spawn 1 "$name" bash -c 'exec "$0" "$@" 3<"$KEYFILE"' "$MT_FUSED" \
		--role primary --dir "$MT_DIR1" --peer "${SK_IP[2]}:$MT_PORT" --key-fd 3 --module-id 1 \
		--state "${SK_ROOT[1]}/var/lib/steadykit/state-$MT_TAG" --ctl "$MT_CTL1" "$@") || return 1
	if ! mt_wait_until 10 mt_log_has_ready "$name" || ! mountpoint -q "$MT_DIR1"; then
		sk_diag "primary not ready/mounted; log:" "$(tail -n 20 "$SK_TMP/$name.log")"
		return 1
	fi
}
P1LOG() { echo "$SK_TMP/fused1.$MT_N1.log"; }

rx() { sk_in 2 ip -s -j link show dev eth0 | "$MT_PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["bytes"])'; }
kind() { mt_st 1 resync.kind; }
sent() { mt_st 1 resync.sent_bytes; }
rd() { mt_st 1 resync.read_bytes; }

# secondary_away: stop it (SIGTERM) and wait until the primary noticed
secondary_away() {
	sk_term "$MT_PID2"
	mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'"
	mt_wait_until 10 peer_not connected
}

# synced: in sync, waited for as a state and not for a fixed time. While the primary's resync moves
# (its done_bytes grow: G's and C's are paced at 2 MB/s) or it connects again after losing the
# peer (at a loaded host a session's START can outlast the latency budget; the retries back off
# 2, 4, 8, 16 s) it is given time; 40 s without either, or 120 s in all, is a failure.
progress() { echo "$(mt_st 1 resync.done_bytes) $(grep -c 'connected to peer' "$(P1LOG)")"; }
synced() {
	local last=$SECONDS end=$((SECONDS + 120)) mark cur
	mark=$(progress)
	while [ $SECONDS -lt $end ]; do
		mt_synced && return 0
		cur=$(progress)
		if [ "$cur" != "$mark" ]; then
			mark=$cur
			last=$SECONDS
		fi
		[ $((SECONDS - last)) -ge 40 ] && break
		sleep 0.3
	done
	sk_diag "not in sync after $((SECONDS - end + 120)) s (no progress for $((SECONDS - last)) s); primary status: $(mt_status 1)"
	return 1
}

# compare LABEL: primary's backing tree against the secondary's (every treecmp property)
compare() { mt_same_trees "$1: trees identical"; }

# dirty_is LABEL EXPR: the tracked set (the status's resync.dirty, as d) satisfies the python EXPR
dirty_is() {
	if "$MT_PY" -c 'import json,sys; d=json.loads(sys.argv[1])["resync"]["dirty"]; sys.exit(0 if eval(sys.argv[2]) else 1)' \
		"$(mt_status 1)" "$2"; then
		sk_ok "$1"
	else
		sk_not_ok "$1"; sk_diag "$(mt_st 1 resync.dirty)"
	fi
}

# back_incr LABEL: the secondary returns and is in sync again by an incremental resync
back_incr() {
	mt_start_secondary || mt_bail "secondary restart failed"
	if synced; then sk_ok "$1: back in sync"; else sk_not_ok "$1: back in sync"; fi
	expect_kind incremental "$1"
}

expect_kind() {
	sk_diag "$(grep 'resync done\|resync (incr' "$(P1LOG)" | tail -n 2 | tr '\n' ' ')"
	local k
	k=$(kind)
	if [ "$k" = "$1" ]; then sk_ok "$2: resync kind $1"; else sk_not_ok "$2: resync kind $1 (got '$k')"; sk_diag "$(mt_status 1)"; fi
}

mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary --resync-rate 2 || mt_bail "primary did not start"  # C interrupts a paced resync
D=$MT_DIR1
dd if=/dev/urandom of="$D/big" bs=1M count=16 status=none
mkdir -p "$D/keep" "$D/old/deep" "$D/mv/inner" "$D/other"
for i in $(seq 40); do head -c 1024 /dev/urandom >"$D/keep/f$i"; done
mkdir "$D/quiet" && : >"$D/quiet/empty" && touch -d '2015-03-08 06:34:53' "$D/quiet/empty"
for i in $(seq 10); do echo "old $i" >"$D/old/deep/o$i"; done
for i in $(seq 20); do head -c 1024 /dev/urandom >"$D/mv/inner/m$i"; done
head -c 1048576 /dev/urandom >"$D/trunc"
head -c 100000 /dev/urandom >"$D/app"
mkdir "$D/hl"
for i in $(seq 12); do head -c 4096 /dev/urandom >"$D/hl/x$i" && ln "$D/hl/x$i" "$D/hl/y$i"; done
if synced; then sk_ok "initial tree replicated"; else sk_not_ok "initial tree replicated"; fi
# the first resync of this primary (a peer loss while the tree was written, as under ASan at load
# 24, makes the later ones incremental, rightly: the status says the last one's kind)
first=$(grep -m1 'resync done' "$(P1LOG)")
if [[ "$first" == *"(full,"* ]]; then
	sk_ok "first sync (nothing tracked yet): resync kind full"
else
	sk_not_ok "first sync (nothing tracked yet): resync kind full (first: '$first')"
fi
# no tracking yet: the peer's own list is not asked for, and no log line blames a full disk
if grep -q "cannot be tracked here (No space left" "$(P1LOG)"; then
	sk_not_ok "first sync: no misleading 'No space left' line"; sk_diag "$(grep 'own changes' "$(P1LOG)")"
else
	sk_ok "first sync: no misleading 'No space left' line"
fi

# ---- A: the secondary away while the tree changes in every way ----
sk_diag "t=${SECONDS}s"
secondary_away
head -c 102400 /dev/urandom | dd of="$D/big" bs=102400 seek=10 conv=notrunc status=none  # 100 KiB in place
head -c 51200 /dev/urandom >>"$D/app"                                              # 50 KiB appended
truncate -s 10240 "$D/trunc"                                                       # cut, no data
for i in $(seq 10); do head -c 10240 /dev/urandom >"$D/keep/new$i"; done           # 100 KiB new
mv "$D/keep/f1" "$D/keep/f1-renamed"                                               # 1 KiB, sent whole
rm -f "$D"/keep/f2{0..9}
rm -rf "$D/old"
chmod 0600 "$D/keep/f3"
chown 1234:1234 "$D/keep/f4"
setfattr -n user.color -v red "$D/keep/f5"
touch -d '2001-02-03 04:05:06.123456789' "$D/keep/f6"
# opened O_TRUNC, empty already, in a directory whose names do not change (no listing carries it):
# only its times change (mirror-equal saw that change lost)
"$MT_PY" -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC))' "$D/quiet/empty"
mv "$D/mv" "$D/other/mv"                                                           # 20 KiB walked
# deleted and made again with a hole where the old file had data: the peer's old bytes must go
rm "$D/keep/f10" && "$MT_PY" -c 'import sys; f = open(sys.argv[1], "wb"); f.seek(4096); f.write(b"x")' "$D/keep/f10"
MOD=$((102400 + 51200 + 102400 + 1024 + 20480 + 4097))
sk_diag "tracked while alone: $(mt_st 1 resync.dirty)"
rx0=$(rx)
mt_start_secondary || mt_bail "secondary restart failed"
if synced; then sk_ok "A: back in sync"; else sk_not_ok "A: back in sync"; fi
rx1=$(rx)
expect_kind incremental "A"
s=$(sent); r=$(rd); wire=$((rx1 - rx0))
sk_diag "A: modified $MOD bytes, resync sent $s read $r, secondary's link received $wire bytes"
if [ -n "$s" ] && [ "$s" -ge $((MOD * 9 / 10)) ] && [ "$s" -le $((MOD * 11 / 10 + 8192)) ]; then
	sk_ok "A: resync data sent ($s) within 10 % of the bytes modified ($MOD)"
else
	sk_not_ok "A: resync data sent (${s:-?}) within 10 % of the bytes modified ($MOD)"
fi
if [ -n "$r" ] && [ "$r" -le $((MOD * 3 / 2)) ]; then sk_ok "A: read from disk ($r) <= 1.5 x modified"; else sk_not_ok "A: read from disk (${r:-?}) <= 1.5 x modified"; fi
if [ "$wire" -lt $((4 << 20)) ]; then sk_ok "A: $wire bytes on the wire (the 16 MiB file was not resent)"; else sk_not_ok "A: $wire bytes on the wire (< 4 MiB)"; fi
# the returning secondary's copy was consistent on disk: its START saved "not consistent" once,
# however many sessions it took (a START that outlasts the budget at load is retried)
ss=$(mt_st 2 gen.start_saves)
if [ "$ss" = 1 ]; then sk_ok "A: the secondary saved its state once at START"; else sk_not_ok "A: the secondary saved its state once at START (start_saves '${ss:-?}')"; sk_diag "$(mt_status 2)"; fi
compare "A: after the incremental resync"

# ---- I: a file written in more places than its extents bound (64) counts in 4 KiB zones: its changed
# zones go on the wire and are read, not the file ----
sk_diag "t=${SECONDS}s"
secondary_away
"$MT_PY" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for i in range(70):   # 224 KiB apart: 70 extents, 70 zones
    os.pwrite(fd, os.urandom(4096), i * 229376)
os.close(fd)' "$D/big"
dirty_is "I: the 16 MiB file past its extents bound is tracked in zones (70 x 4 KiB), not whole" \
	'd["whole_files"] == 0 and d["bytes"] == 70 * 4096'
back_incr I
s=$(sent); r=$(rd)
if [ -n "$s" ] && [ "$s" -le $((70 * 4096)) ] && [ -n "$r" ] && [ "$r" -le $((70 * 4096)) ]; then
	sk_ok "I: sent $s and read $r bytes (the 70 changed zones, not the file)"
else
	sk_not_ok "I: sent ${s:-?} and read ${r:-?} bytes (<= the 70 changed 4 KiB zones each)"
fi
compare "I: after the file written in 70 places"

# ---- J: a file saved by replacing it (a copy written, then renamed over it, as editors and rsync do)
# is tracked whole; from 1 MiB it is compared with the peer's copy at that path by block checksums:
# only the changed 64 KiB block goes, not the 4 MiB ----
sk_diag "t=${SECONDS}s"
head -c $((4 << 20)) /dev/urandom >"$D/keep/saved"
synced || sk_diag "J: not in sync before the secondary goes"
secondary_away
cp "$D/keep/saved" "$D/keep/.saved.tmp"
head -c 4096 /dev/urandom | dd of="$D/keep/.saved.tmp" bs=4096 seek=300 conv=notrunc status=none
mv "$D/keep/.saved.tmp" "$D/keep/saved"
dirty_is "J: the 4 MiB file saved by a rename over it is tracked whole" 'd["whole_files"] == 1'
back_incr J
s=$(sent)
if [ -n "$s" ] && [ "$s" -le 65536 ]; then
	sk_ok "J: sent $s bytes (the changed block: the peer's copy was compared, not replaced)"
else
	sk_not_ok "J: sent ${s:-?} bytes (<= the one changed 64 KiB block, not the 4 MiB)"
fi
compare "J: after the file saved by a rename"

# ---- K: renamed while alone: the secondary's copies move with their names ----
sk_diag "t=${SECONDS}s"
mkdir "$D/arch"
for n in app.log a b c; do head -c $((4 << 20)) /dev/urandom >"$D/keep/$n"; done
mkdir -p "$D/dmv/sub" # a directory of 60 files (2 MiB) moved whole
for i in $(seq 40); do head -c 32768 /dev/urandom >"$D/dmv/g$i"; done
for i in $(seq 20); do head -c 40960 /dev/urandom >"$D/dmv/sub/h$i"; done
synced || sk_diag "K: not in sync before the secondary goes"
secondary_away
mv "$D/dmv" "$D/arch/dmv2" && echo "added" >"$D/arch/dmv2/sub/new"
mv "$D/keep/app.log" "$D/keep/app.log.1" && echo "a new log" >"$D/keep/app.log"  # rotated
mv "$D/keep/a" "$D/arch/a.old" && head -c 1000 /dev/urandom >>"$D/arch/a.old"      # moved, appended
mv "$D/keep/b" "$D/keep/t" && mv "$D/keep/c" "$D/keep/b" && mv "$D/keep/t" "$D/keep/c" # swapped
dirty_is "K: the four renamed files are tracked whole" 'd["whole_files"] >= 4'
# the primary killed -9 and restarted while alone: the names it remembered are on disk
sk_kill9 "$MT_PID1"
umount -l "$MT_DIR1" 2>/dev/null
cp "$ST1/moves" "$SK_TMP/moves.K" # B puts it back in another away period
printf 'SKMV torn' >>"$ST1/moves" # a record cut short (hostile input: bounded, refused)
mt_start_primary --resync-rate 2 || mt_bail "K: primary restart after kill -9 failed"
if grep -q ' 5 renamed files remembered from before this start (.*; 0 of another tracking period ignored; the rest does not check: ignored' "$(P1LOG)"; then
	sk_ok "K: the restarted primary took back the 5 names it remembered, and refused a torn record"
else
	sk_not_ok "K: the restarted primary took back the 5 names it remembered, and refused a torn record"; sk_diag "$(grep -i 'renamed\|dirty' "$(P1LOG)")"
fi
back_incr K
if [ -f "$ST1/moves" ] && [ ! -s "$ST1/moves" ]; then sk_ok "K: the names on disk are emptied once sent"; else sk_not_ok "K: the names on disk are emptied once sent ($(stat -c %s "$ST1/moves" 2>&1))"; fi
s=$(sent)
moved=$(grep -o '[0-9]* of [0-9]* files renamed while the peer was away' "$(P1LOG)" | tail -n 1)
sk_diag "K: $moved take the peer's copy; $s bytes sent"
if [ -n "$s" ] && [ "$s" -le $((4 * 65536)) ]; then
	sk_ok "K: sent $s bytes (the secondary's copies moved with their names; 16 MiB in files and a 2 MiB directory renamed)"
else
	sk_not_ok "K: sent ${s:-?} bytes (<= 4 x 64 KiB: the renamed files' copies reused, not sent whole)"
fi
if [ ! -e "$MT_DIR2/.steadykit-moves" ]; then sk_ok "K: the secondary's kept copies folder is gone"; else sk_not_ok "K: the secondary's kept copies folder is gone"; ls -la "$MT_DIR2/.steadykit-moves" >&2; fi
compare "K: after the renames"
SEED=${MT_INCR_SEED:-$$}
mkdir -p "$D/mvr/d1" "$D/mvr/d2" "$D/mvr/d3"
for i in $(seq 16); do head -c $(((1 << 20) + i * 4096)) /dev/urandom >"$D/mvr/d$((i % 3 + 1))/f$i"; done
synced || sk_diag "K: not in sync before the secondary goes (random renames)"
secondary_away
left=$("$MT_PY" -c '
import os, random, sys
root, rnd = sys.argv[1], random.Random(int(sys.argv[2]))
def files():
    return [os.path.join(dp, n) for dp, _, ns in os.walk(root) for n in ns]
def dirs():
    return [dp for dp, _, _ in os.walk(root)]
for k in range(150):
    fs, ds, r = files(), dirs(), rnd.random()
    if not fs:
        break
    f = rnd.choice(fs)
    if r < 0.45:    # renamed, into any directory
        os.rename(f, os.path.join(rnd.choice(ds), "r%d" % k))
    elif r < 0.50:  # renamed over another file
        os.rename(f, rnd.choice(fs))
    elif r < 0.58:  # a directory moved (to the top, under a new name)
        d = rnd.choice(ds)
        if d != root:
            os.rename(d, os.path.join(root, "m%d" % k))
    elif r < 0.85:  # appended or written in place
        with open(f, "r+b") as fh:
            fh.seek(rnd.choice([0, rnd.randrange(1 << 20), os.path.getsize(f)]))
            fh.write(os.urandom(rnd.randrange(1, 9000)))
    elif r < 0.87:  # removed
        os.unlink(f)
    else:           # a new file where an old one was
        os.rename(f, f + ".old")
        with open(f, "wb") as fh:
            fh.write(os.urandom(rnd.randrange(1 << 18)))
print(len(files()), "files left")
' "$D/mvr" "$SEED") || sk_not_ok "K: the random renames ran (seed $SEED)"
back_incr "K (seed $SEED)"
sk_diag "K: $left; $(grep -o '[0-9]* of [0-9]* files renamed while the peer was away' "$(P1LOG)" | tail -n 1) take the peer's copy; $(sent) bytes sent"
compare "K: after 150 random renames and writes (seed $SEED)"
# the application's own .steadykit-moves at the root (without SteadyKit's xattr) is left alone, and
# a renamed file then comes whole; the xattr that marks SteadyKit's folder is refused to applications
if setfattr -n trusted.steadykit.moves -v 1 "$D/keep" 2>/dev/null; then sk_not_ok "K: the reserved xattr refused"; else sk_ok "K: the reserved xattr refused"; fi
mkdir "$D/.steadykit-moves" && echo app >"$D/.steadykit-moves/0"
head -c $((2 << 20)) /dev/urandom >"$D/keep/rot"
synced || sk_diag "K: not in sync before the secondary goes (the application's folder)"
secondary_away
mv "$D/keep/rot" "$D/keep/rot.1"
back_incr "K (the application's .steadykit-moves)"
s=$(sent)
if [ -n "$s" ] && [ "$s" -ge $((2 << 20)) ] && [ "$(cat "$MT_DIR2/.steadykit-moves/0" 2>/dev/null)" = app ] &&
	grep -q "a directory of the application has that name" "$SK_TMP/fused2.$MT_N2.log"; then
	sk_ok "K: the application's .steadykit-moves left alone (the renamed file sent whole: $s bytes)"
else
	sk_not_ok "K: the application's .steadykit-moves left alone (sent ${s:-?}, its file: $(cat "$MT_DIR2/.steadykit-moves/0" 2>&1))"
fi
compare "K: with the application's .steadykit-moves"
rm -r "$D/.steadykit-moves"
# made while the secondary is away: the secondary makes its own folder for the RS_MOVE, then the
# root listing names the application's: the secondary gives its folder up to it
synced || sk_diag "K: not in sync before the secondary goes (the application's new folder)"
secondary_away
mkdir "$D/.steadykit-moves" && echo app2 >"$D/.steadykit-moves/1"
mv "$D/keep/rot.1" "$D/keep/rot.2"
back_incr "K (the application's .steadykit-moves made while away)"
if [ "$(cat "$MT_DIR2/.steadykit-moves/1" 2>/dev/null)" = app2 ] &&
	grep -q "no longer kept there" "$SK_TMP/fused2.$MT_N2.log"; then
	sk_ok "K: the secondary gave its folder up to the application's (sent $(sent) bytes)"
else
	sk_not_ok "K: the secondary gave its folder up to the application's"; sk_diag "$(grep -i 'moves\|kept' "$SK_TMP/fused2.$MT_N2.log" | tail -n 3)"
fi
compare "K: with the application's .steadykit-moves made while away"
rm -r "$D/.steadykit-moves"

# ---- F: hard links split while alone ----
# x$i and y$i were one inode on both sides; y$i is replaced by a new file while alone. The
# listing of hl meets, on the secondary, one inode for two primary inodes: whichever name comes
# second in the directory order is remade (rs_apply.c reconcile). When that is x$i (not tracked:
# unchanged) its data must be asked for (SK_RO_SHALLOW report); 12 pairs: some come in that order.
sk_diag "t=${SECONDS}s"
secondary_away
for i in $(seq 12); do
	rm "$D/hl/y$i" && head -c 4096 /dev/urandom >"$D/hl/t$i" && mv "$D/hl/t$i" "$D/hl/y$i"
done
mt_start_secondary || mt_bail "secondary restart failed"
if synced; then sk_ok "F: back in sync"; else sk_not_ok "F: back in sync"; fi
expect_kind incremental "F"
s=$(sent)
sk_diag "F: $(grep -o 'of [0-9]* files the peer remade sent again' "$(P1LOG)" | tail -n 1), $s bytes sent"
if [ -n "$s" ] && [ "$s" -le $((24 * 4096 + 8192)) ]; then sk_ok "F: sent $s bytes (<= each file once)"; else sk_not_ok "F: sent ${s:-?} bytes (<= each file once)"; fi
compare "F: after the split hard links"

# ---- G: kill -9 of the connected primary under writes; it restarts as primary ----
sk_diag "t=${SECONDS}s"
AWO=(--log "$SK_TMP/aw.log" --threads 2 --files 8 --size 4096 --journal)
mkdir -p "$D/aw"
"$MT_TOOLS/ackwriter" write --dir "$D/aw" "${AWO[@]}" --duration 30 >"$SK_TMP/aw.out" 2>&1 &
aw=$!
mt_wait_until 20 bash -c "[ \$(wc -l <'$SK_TMP/aw.log' 2>/dev/null || echo 0) -ge 400 ]"
connected=$(mt_st 1 peer)
sk_kill9 "$MT_PID1"
for _ in $(seq 50); do kill -0 "$aw" 2>/dev/null || break; sleep 0.1; done
kill "$aw" 2>/dev/null
wait "$aw" 2>/dev/null
umount -l "$MT_DIR1" 2>/dev/null
sk_diag "G: killed while the peer was $connected, $(wc -l <"$SK_TMP/aw.log") records acked"
mt_start_primary --resync-rate 2 || mt_bail "primary restart after kill -9 failed" # as before: C needs a paced resync
if grep -q "dirty tracking lost\|tracking starts empty" "$(P1LOG)"; then
	sk_not_ok "G: tracking survived the kill -9 of the connected primary"; sk_diag "$(grep -i dirty "$(P1LOG)")"
else
	sk_ok "G: tracking survived the kill -9 of the connected primary ($(grep -o 'resumed.*' "$(P1LOG)"))"
fi
if synced; then sk_ok "G: back in sync"; else sk_not_ok "G: back in sync"; fi
expect_kind incremental "G"
out=$("$MT_TOOLS/ackwriter" verify --dir "$MT_DIR2/aw" "${AWO[@]}" 2>&1)
if [[ "$out" == *"verify: ok"* ]]; then sk_ok "G: every acknowledged record is on the secondary"; else sk_not_ok "G: every acknowledged record is on the secondary"; sk_diag "$out"; fi
compare "G: after the kill -9 of the connected primary"

# ---- C: a resync interrupted by kill -9 of the secondary resumes ----
sk_diag "t=${SECONDS}s"
secondary_away
mkdir "$D/bulk"
for i in $(seq 6); do head -c 2097152 /dev/urandom >"$D/bulk/b$i"; done            # 12 MiB, at 2 MiB/s
TOTAL=$((6 * 2097152))
# the counter still holds the previous resync's bytes (G's, several MiB) until this one starts:
# wait for this resync to have reset it before reading it
s0=$(sent)
mt_start_secondary || mt_bail "secondary restart failed"
sent_ge() { local v; v=$(sent); [ -n "$v" ] && [ "$v" -ge "$1" ]; }
this_resync() { local v; v=$(sent); [ "$(mt_st 1 peer)" = resyncing ] && [ -n "$v" ] && [ "$v" != "$s0" ]; }
mt_wait_until 20 this_resync || sk_diag "C: the new resync not seen (sent still ${s0:-?})"
mt_wait_until 20 sent_ge $((3 << 20))
# killed at once, the count read after (it keeps this resync's figure until the next one starts):
# reading it first cost a status round trip, seconds at load 30, and the kill came after the end
sk_kill9 "$MT_PID2"
s1=$(sent)
umount -l "$MT_DIR2" 2>/dev/null
sk_diag "C: secondary killed after $s1 bytes of $TOTAL"
mt_wait_until 10 peer_not resyncing
owed=$(mt_st 1 resync.dirty.files)
ST2=${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG/state
if grep -qx 'consistent=0' "$ST2"; then sk_ok "C: the killed secondary's state says not consistent"; else sk_not_ok "C: the killed secondary's state says not consistent"; sk_diag "$(cat "$ST2")"; fi
mt_start_secondary || mt_bail "secondary restart failed"
if synced; then sk_ok "C: back in sync after the interrupted resync"; else sk_not_ok "C: back in sync after the interrupted resync"; fi
# it said so on disk already: the resumed session's START wrote no state (no fsync before its ack)
ss=$(mt_st 2 gen.start_saves)
if [ "$ss" = 0 ]; then sk_ok "C: the resumed session's START saved no state"; else sk_not_ok "C: the resumed session's START saved no state (start_saves '${ss:-?}')"; sk_diag "$(mt_status 2)"; fi
expect_kind incremental "C"
s2=$(sent)
sk_diag "C: second attempt sent $s2 bytes ($owed files still owed after the kill)"
# files are owed until acknowledged: at least one whole 2 MiB file is not sent again
if [ -n "$s1" ] && [ -n "$s2" ] && [ "$s1" -ge $((3 << 20)) ] && [ "$s1" -lt "$TOTAL" ] &&
	[ "$s2" -gt 0 ] && [ "$s2" -le $((TOTAL - (2 << 20))) ] && [ "${owed:-9}" -lt 6 ]; then
	sk_ok "C: the second attempt resumed (sent $s2 <= $TOTAL - 2 MiB, $owed of 6 files owed)"
else
	sk_not_ok "C: the second attempt resumed (first ${s1:-?}, second ${s2:-?}, total $TOTAL)"
fi
compare "C: after the resumed resync"

# ---- B (+ D): the primary killed -9 while alone, restarted with a tiny tracking bound ----
sk_diag "t=${SECONDS}s"
secondary_away
for i in $(seq 5); do head -c 65536 /dev/urandom >"$D/keep/acked$i"; done
head -c 65536 /dev/urandom | dd of="$D/big" bs=65536 seek=100 conv=notrunc status=none
mkdir "$D/newdir" && echo inside >"$D/newdir/x"
sums_before=$(cd "$MT_BACK1" && md5sum keep/acked* big newdir/x)
sk_kill9 "$MT_PID1"
umount -l "$MT_DIR1" 2>/dev/null
cp "$SK_TMP/moves.K" "$ST1/moves" # K's names, remembered in another away period
# D: past SKFUSED_DIRTY_MAX objects a file's change marks its directory (compared whole)
export SKFUSED_DIRTY_MAX=6
mt_start_primary --resync-rate 2 || mt_bail "primary restart after kill -9 failed"
unset SKFUSED_DIRTY_MAX
if grep -q ' 0 renamed files remembered from before this start (.*; 5 of another tracking period ignored)' "$(P1LOG)"; then
	sk_ok "B: names remembered in another away period are not taken back"
else
	sk_not_ok "B: names remembered in another away period are not taken back"; sk_diag "$(grep -i 'renamed' "$(P1LOG)")"
fi
if grep -q "dirty tracking lost\|tracking starts empty" "$(P1LOG)"; then
	sk_not_ok "B: tracking survived the kill -9"; sk_diag "$(grep -i dirty "$(P1LOG)")"
else
	sk_ok "B: tracking survived the kill -9"
fi
mkdir "$D/many"
for i in $(seq 30); do echo "many $i" >"$D/many/n$i"; done
echo changed >>"$D/keep/f7"
dj=$(mt_status 1)
sk_diag "D: tracked with a bound of 6: $(mt_st 1 resync.dirty)"
if "$MT_PY" -c 'import json,sys; d=json.loads(sys.argv[1])["resync"]["dirty"]; sys.exit(0 if d["state"]=="tracking" and d["files"]<=6 and d["files"]+d["dirs"]<=12 else 1)' "$dj"; then
	sk_ok "D: the bound holds (directory marks stand for the rest)"
else
	sk_not_ok "D: the bound holds (directory marks stand for the rest)"
fi
# an application keeps writing, through the return, to a file it created while alone: its
# writes meet a file the peer does not have yet until the resync lists it (reported, sent again)
"$MT_PY" -c '
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
end = time.monotonic() + float(sys.argv[2])
i = 0
while time.monotonic() < end:
    os.write(fd, (b"%08d" % i) * 512); i += 1; time.sleep(0.02)
os.close(fd)' "$D/many/live.log" 4 &
app=$!
sleep 0.5
mt_start_secondary || mt_bail "secondary restart failed"
wait "$app"
if synced; then sk_ok "B: back in sync"; else sk_not_ok "B: back in sync"; fi
expect_kind incremental "B"
sums_after=$(cd "$MT_DIR2" && md5sum keep/acked* big newdir/x 2>&1)
if [ "$sums_before" = "$sums_after" ]; then sk_ok "B: every write acknowledged before the kill is on the secondary"; else sk_not_ok "B: every write acknowledged before the kill is on the secondary"; sk_diag "$sums_after"; fi
compare "B: after kill -9 of the lone primary and the overflowed tracking"

# ---- E: a corrupt tracking file means the full resync ----
sk_diag "t=${SECONDS}s"
secondary_away
mt_stop_primary
printf 'garbage!' | dd of="$ST1/dirty" bs=1 seek=100 conv=notrunc status=none
mt_start_primary || mt_bail "primary restart with a corrupt tracking file failed"
if grep -q "dirty tracking lost (corrupt record" "$(P1LOG)"; then sk_ok "E: corrupt tracking file refused with a clear log line"; else sk_not_ok "E: corrupt tracking file refused with a clear log line"; sk_diag "$(grep -i dirty "$(P1LOG)")"; fi
echo after-corruption >"$D/keep/f8"
mt_start_secondary || mt_bail "secondary restart failed"
if synced; then sk_ok "E: back in sync"; else sk_not_ok "E: back in sync"; fi
expect_kind full "E"
compare "E: after the full resync"

# ---- H: SKFUSED_RESYNC_INCREMENTAL=0 forces the full resync, usable tracking or not ----
sk_diag "t=${SECONDS}s"
secondary_away
echo "changed while alone" >"$D/keep/f9"
mt_stop_primary
export SKFUSED_RESYNC_INCREMENTAL=0
mt_start_primary || mt_bail "primary restart with SKFUSED_RESYNC_INCREMENTAL=0 failed"
unset SKFUSED_RESYNC_INCREMENTAL
if grep -q "dirty tracking resumed" "$(P1LOG)"; then sk_ok "H: tracking usable after the restart"; else sk_not_ok "H: tracking usable after the restart"; sk_diag "$(grep -i dirty "$(P1LOG)")"; fi
mt_start_secondary || mt_bail "secondary restart failed"
if synced; then sk_ok "H: back in sync"; else sk_not_ok "H: back in sync"; fi
expect_kind full "H (SKFUSED_RESYNC_INCREMENTAL=0)"
# the full resync compares every file by block checksums (most asked ahead, rs_sums.c): only
# what differs goes, although the tree holds tens of MiB
s=$(sent); total=$(du -sb --apparent-size "$MT_BACK1" | cut -f1)
if [ -n "$s" ] && [ "$s" -le $((1 << 20)) ]; then
	sk_ok "H: the full resync sent $s bytes of a tree of $total (only the blocks that differ)"
else
	sk_not_ok "H: the full resync sent ${s:-?} bytes of a tree of $total (<= 1 MiB: only the blocks that differ)"
fi
compare "H: after the full resync asked for"

# ---- L: a full resync's FAILED reports survive a cut into the next, incremental, resync ----
# The full resync (here the incremental one gives up at once, as one that did not converge) walks
# L/B, then pauses in L/C's listing (600 names, three parts). Meanwhile L/B/y is renamed into
# L/D/e, made while the secondary was away: L/D is there (the listing of L made it) but not L/D/e
# (L/D is not listed yet), so the secondary cannot rename it and reports the operation FAILED; the
# rename itself is acknowledged, so the tracking does not keep it. The session is cut right after
# the resync took that report (rs_fail_lost), before the walk of L/B it asks for. The next resync
# is incremental: unless the report went into the tracking, nothing tells it that L/B/y must go
# on the secondary.
sk_diag "t=${SECONDS}s"
roles=$("$MT_PY" - "$SK_TMP/order" <<'PY'
import os, sys
# three names in readdir order B, C, D, the last made after the others, as below (the order on
# this file system: the names' hash order, or the order they were made in)
for k in range(300):
    d = "%s/%d" % (sys.argv[1], k)
    os.makedirs(d)
    names = ["b%d" % k, "c%d" % k, "d%d" % k]
    for n in names:
        os.mkdir(os.path.join(d, n))
    if os.listdir(d) == names:
        print(*names)
        break
PY
)
read -r L_B L_C L_D <<<"$roles"
[ -n "${L_D:-}" ] || mt_bail "L: no three names in readdir order found"
mkdir -p "$D/L/$L_B" "$D/L/$L_C" && echo "y, renamed during the full resync" >"$D/L/$L_B/y"
"$MT_PY" -c 'import os, sys
for i in range(600):
    os.close(os.open(os.path.join(sys.argv[1], "e_%04d" % i), os.O_CREAT | os.O_WRONLY, 0o644))' "$D/L/$L_C"
if synced; then sk_ok "L: L/$L_B and L/$L_C replicated"; else sk_not_ok "L: L/$L_B and L/$L_C replicated"; fi
secondary_away
mkdir -p "$D/L/$L_D/e"
[ "$(ls -f "$MT_BACK1/L" | grep -v '^\.' | tr '\n' ' ')" = "$L_B $L_C $L_D " ] ||
	mt_bail "L: the primary lists L in another order: $(ls -f "$MT_BACK1/L" | tr '\n' ' ')"
mt_stop_primary
SKFUSED_FAULT=rs_incr_giveup@1,rs_dir_pause@1,rs_fail_lost@1 mt_start_primary ||
	mt_bail "L: primary restart with fault points failed"
mt_start_secondary || mt_bail "L: secondary restart failed"
if mt_wait_until 30 grep -q "paused 3 s between two parts of the listing of .*L/$L_C" "$(P1LOG)"; then
	mv "$D/L/$L_B/y" "$D/L/$L_D/e/y"
	sk_ok "L: L/$L_B/y renamed into L/$L_D/e while the full resync paused in L/$L_C"
else
	sk_not_ok "L: the full resync paused in L/$L_C"; sk_diag "$(grep -i 'resync' "$(P1LOG)" | tail -n 5)"
fi
if mt_wait_until 30 grep -q "fault point rs_fail_lost" "$(P1LOG)"; then
	sk_ok "L: the session cut right after the secondary's FAILED report was taken"
else
	sk_not_ok "L: the session cut right after the secondary's FAILED report was taken"
fi
if synced; then sk_ok "L: back in sync"; else sk_not_ok "L: back in sync"; fi
expect_kind incremental "L (after the cut)"
if [ ! -e "$MT_DIR2/L/$L_B/y" ] && [ -f "$MT_DIR2/L/$L_D/e/y" ]; then
	sk_ok "L: y is in L/$L_D/e on the secondary, and no more in L/$L_B"
else
	sk_not_ok "L: y is in L/$L_D/e on the secondary, and no more in L/$L_B"
	sk_diag "$(ls -la "$MT_DIR2/L/$L_B" "$MT_DIR2/L/$L_D/e" 2>&1 | tr '\n' ' ')"
fi
compare "L: after the cut full resync and the incremental one"
mt_stop_primary
sk_done
