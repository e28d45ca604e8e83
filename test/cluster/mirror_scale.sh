#!/usr/bin/env bash
# mirror_scale: the primary serves a tree of SK_SCALE_FILES (default 1 000 000) files with its soft
# fd limit at 1024: every file stats through the mount, and skfused's RSS and open fds stay bounded.
# Issue 9 item 14. Before the fix skfused held one O_PATH fd per inode the kernel had looked up and
# the walk failed with EMFILE after about as many files as its fd limit.
# The tree lives on a loop-mounted ext4 image under $SK_TMP (no journal, enough inodes): building it
# is fast, and removing it at the end is one unlink of the image, not a million on the root fs.
# The peer is absent on purpose: this is about the primary's inode table, not about the first sync.
# Before that, a small phase with a peer and a 1-entry fd cache checks what file handles make hard:
# inodes reopened disconnected are still named right for the peer, and borrowed fds survive threads.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init

N=${SK_SCALE_FILES:-1000000}
PER_DIR=1000
RSS_MAX_KIB=$((64 * 1024))
FDS_MAX=5000
[[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 1000 ] || mt_bail "SK_SCALE_FILES must be a number >= 1000"
for c in mkfs.ext4 losetup find; do command -v "$c" >/dev/null || mt_bail "missing $c"; done
t_start=$SECONDS

# ---- first, with a peer and a 1-entry fd cache: inodes reopened by handle are named right ----
# A file the kernel still knows (an O_PATH fd on the mount holds it: no FUSE open, so skfused
# holds no fd of its own) whose backing dentry was dropped comes back from open_by_handle_at
# disconnected, and d_path names it "/". Operations on it through /proc/self/fd must still reach
# the same file on the peer, also after its directory was renamed, and for a hard link.
# drop_caches is machine-wide (clean dentries and inodes only; every test on the host survives it).
mt_instance conn $((MT_PORT + 1))
mt_start_secondary || mt_bail "secondary did not start"
SKFUSED_FD_CACHE=1 mt_start_primary || mt_bail "primary (1-entry fd cache) did not start"
mt_wait_until 10 mt_peer_is connected || sk_diag "peer not connected: $(mt_status 1)"
out=$(timeout 60 "$MT_PY" - "$MT_DIR1" <<'PY' 2>&1
import os, sys
m = sys.argv[1]
def drop():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2")
os.makedirs(m + "/a/b")
for n in ("a/b/f1", "a/f2", "a/other"):
    with open(m + "/" + n, "w") as f:
        f.write("before\n")
os.link(m + "/a/f2", m + "/a/hl")
held = {n: os.open(m + "/" + n, os.O_PATH) for n in ("a/b/f1", "a/hl")}
def via(n):
    return "/proc/self/fd/%d" % held[n]
os.stat(m + "/a/other")  # the 1-entry cache now holds another inode
drop()
os.chmod(via("a/b/f1"), 0o600)
os.setxattr(via("a/b/f1"), "user.k", b"disconnected")
w = os.open(via("a/hl"), os.O_WRONLY | os.O_APPEND)
os.write(w, b"written through a held hard link\n")
os.close(w)
os.rename(m + "/a/b", m + "/a/c")  # the directory moves while f1 is held
os.unlink(m + "/a/f2")              # the hard link keeps the other name only
os.stat(m + "/a/other")
drop()
os.chmod(via("a/b/f1"), 0o640)
w = os.open(via("a/b/f1"), os.O_WRONLY | os.O_TRUNC)
os.write(w, b"after the rename\n")
os.close(w)
os.chmod(via("a/hl"), 0o604)
print("done")
PY
)
if [ "$out" = done ]; then
	sk_ok "operations on held inodes after their dentries were dropped"
else
	sk_not_ok "operations on held inodes after their dentries were dropped"
	sk_diag "$out"
fi
# Six threads on 200 files through a 1-entry cache: borrowed fds are shared, never closed under a user.
mkdir -p "$MT_DIR1/s" && for i in $(seq 0 199); do echo "x$i" >"$MT_DIR1/s/f$i"; done
out=$(timeout 60 "$MT_PY" - "$MT_DIR1/s" <<'PY' 2>&1
import os, random, sys, threading, time
d, errs = sys.argv[1], []
def work(seed):
    r, end = random.Random(seed), time.time() + 10
    while time.time() < end:
        n, op = "%s/f%d" % (d, r.randrange(200)), r.randrange(6)
        try:
            if op == 0:
                os.stat(n)
            elif op == 1:
                os.chmod(n, 0o600 | r.randrange(0o100))
            elif op == 2:
                os.setxattr(n, "user.t", str(r.random()).encode())
            elif op == 3:
                with open(n) as f:
                    f.read()
            elif op == 4:
                fd = os.open(n, os.O_PATH)
                os.stat("/proc/self/fd/%d" % fd)
                os.close(fd)
            else:
                os.utime(n)
        except OSError as e:
            errs.append("%s: %s" % (n, e))
ts = [threading.Thread(target=work, args=(s,)) for s in range(6)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print("errors %d" % len(errs))
print("\n".join(errs[:5]))
PY
)
if [[ "$out" == "errors 0"* ]]; then
	sk_ok "six threads of stat/chmod/setxattr/read/utimens on 200 files, no error"
else
	sk_not_ok "six threads of stat/chmod/setxattr/read/utimens on 200 files, no error"
	sk_diag "$out"
fi
if mt_wait_synced 30; then
	sk_ok "the peer stayed in sync (every operation could be named)"
else
	sk_not_ok "the peer stayed in sync (every operation could be named)"
	sk_diag "$(grep -i 'cannot name\|outdated' "$SK_TMP"/fused1.*.log | tail -n 5)"
fi
sk_check "primary backing and secondary are identical" "$MT_PY" "$SK_SRC/test/tools/treecmp.py" \
	--props entries,type,mode,size,content,xattr,nlink,hardlinks "$MT_BACK1" "$MT_DIR2"
mt_stop_primary
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'"
mt_instance data "$((MT_PORT - 1))"

# ---- the backing tree, on its own filesystem, built before the mount ----
img=$SK_TMP/scale.img
truncate -s $((N / 1000 * 2 + 256))M "$img" || mt_bail "image file"
mkfs.ext4 -q -F -O ^has_journal -N $((N + N / 10 + 4096)) -E lazy_itable_init=1,nodiscard "$img" ||
	mt_bail "mkfs.ext4"
sk_track_mount "$MT_DIR1" # listed before the FUSE mount, so unmounted after it
mount -o loop,noinit_itable "$img" "$MT_DIR1" || mt_bail "loop mount of the image"
t0=$SECONDS
# two processes, one per core, each making every other directory
"$MT_PY" - "$MT_DIR1" "$N" "$PER_DIR" <<'PY' || mt_bail "building the tree"
import os, stat, sys
root, n, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ndirs = (n + per - 1) // per
def build(first):
    for d in range(first, ndirs, 2):
        dp = os.path.join(root, "d%04d" % d)
        os.mkdir(dp)
        for i in range(min(per, n - d * per)):
            os.mknod(os.path.join(dp, "f%d" % i), stat.S_IFREG | 0o644)
pid = os.fork()
if pid == 0:
    try:
        build(1)
    finally:
        os._exit(0)
build(0)
_, status = os.waitpid(pid, 0)
sys.exit(0 if status == 0 else 1)
PY
sk_diag "built $N files in $((N / PER_DIR)) directories in $((SECONDS - t0)) s"

# ---- the primary, started with the soft limit systemd gives services (1024) ----
hard=$(ulimit -Hn)
ulimit -Sn 1024
mt_start_primary || mt_bail "primary did not start"
ulimit -Sn "$hard"
soft=$(awk '/^Max open files/ { print $4 }' "/proc/$MT_PID1/limits")
if [ "$soft" = "$hard" ]; then
	sk_ok "skfused raised its soft fd limit to the hard one ($hard)"
else
	sk_not_ok "skfused raised its soft fd limit to the hard one ($hard; it has $soft)"
fi

# ---- every file stats through the mount (find's %s is an lstat per file) ----
# Two finds over the two halves of the directories, so that both cores work (skfused is multi-threaded).
t0=$SECONDS
walk() { # walk OUT DIR...: the number of files under the DIRs (relative to the mount) into OUT.n
	local out=$1
	shift
	: >"$out.err"
	if [ $# = 0 ]; then echo 0 >"$out.n"; return; fi # find without a path would walk "."
	(cd "$MT_DIR1" && timeout 480 find "$@" -type f -printf '%s\n' 2>"$out.err" | wc -l >"$out.n")
}
mapfile -t tops < <(cd "$MT_DIR1" && ls -1 2>"$SK_TMP/find.err")
half=$(((${#tops[@]} + 1) / 2))
walk "$SK_TMP/find1" "${tops[@]:0:half}" &
w1=$!
walk "$SK_TMP/find2" "${tops[@]:half}" &
w2=$!
wait "$w1" "$w2"
seen=$(($(cat "$SK_TMP/find1.n") + $(cat "$SK_TMP/find2.n")))
cat "$SK_TMP/find1.err" "$SK_TMP/find2.err" >>"$SK_TMP/find.err"
t_walk=$((SECONDS - t0))
nerr=$(wc -l <"$SK_TMP/find.err")
if [ "$seen" = "$N" ] && [ "$nerr" = 0 ]; then
	sk_ok "all $N files stat through the mount, no error (${t_walk} s)"
else
	sk_not_ok "all $N files stat through the mount, no error (saw $seen, $nerr errors, ${t_walk} s)"
	sk_diag "$(sort "$SK_TMP/find.err" | uniq -c | sort -rn | head -n 5)"
	sk_diag "$(grep -c 'Too many open files' "$SK_TMP/find.err") errors say 'Too many open files'"
fi

# ---- skfused still serves a create + write + read after that ----
: >"$SK_TMP/new.err"
if { echo "after the walk" >"$MT_DIR1/d0000/new"; } 2>"$SK_TMP/new.err" &&
	[ "$(cat "$MT_DIR1/d0000/new" 2>>"$SK_TMP/new.err")" = "after the walk" ]; then
	sk_ok "a create, write and read work on the mount after the walk"
else
	sk_not_ok "a create, write and read work on the mount after the walk"
	sk_diag "$(head -n 5 "$SK_TMP/new.err")"
fi

# ---- what it costs the daemon ----
rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$MT_PID1/status")
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$MT_PID1/status")
fds=$(ls "/proc/$MT_PID1/fd" | wc -l)
sk_diag "skfused after the walk: VmRSS $((rss / 1024)) MiB (peak $((hwm / 1024)) MiB), $fds open fds"
sk_diag "its largest mappings (Rss KiB, mapping):"
sk_diag "$(awk '/^[0-9a-f]+-[0-9a-f]+ / { m = $1 " " $6 } /^Rss:/ && $2 >= 1024 { print $2, m }' \
	"/proc/$MT_PID1/smaps" | sort -rn | head -n 8)"
if nm "$MT_FUSED" 2>/dev/null | grep -q ' __asan_init$'; then
	# AddressSanitizer's shadow memory and free quarantine are most of an instrumented daemon's RSS
	sk_ok "skfused RSS ${rss:-?} KiB <= $RSS_MAX_KIB KiB # SKIP AddressSanitizer build"
elif [ "${rss:-0}" -gt 0 ] && [ "$rss" -le "$RSS_MAX_KIB" ]; then
	sk_ok "skfused RSS ${rss} KiB <= $RSS_MAX_KIB KiB"
else
	sk_not_ok "skfused RSS ${rss:-?} KiB <= $RSS_MAX_KIB KiB"
fi
if [ "${fds:-0}" -gt 0 ] && [ "$fds" -le "$FDS_MAX" ]; then
	sk_ok "skfused holds $fds fds <= $FDS_MAX"
else
	sk_not_ok "skfused holds ${fds:-?} fds <= $FDS_MAX"
fi

# ---- the walk listed by READDIRPLUS, and gives back every lookup that made ----
# Each listed entry counts as a lookup of its inode; an entry that did not fit in a listing
# buffer is forgotten again. Once the kernel drops its dentries and inodes (drop_caches, as in
# the first phase), it forgets every inode it was given, and skfused's table empties.
rdp=$(mt_st 1 readdirplus_entries)
if [ "${rdp:-0}" -ge "$N" ]; then
	sk_ok "the walk listed every file with its attributes (READDIRPLUS entries: $rdp)"
else
	sk_not_ok "the walk listed every file with its attributes (READDIRPLUS entries: ${rdp:-none} < $N)"
fi
inodes_back() { # drop the kernel's unused dentries and inodes, then: at most 10 left in skfused
	sync
	echo 2 >/proc/sys/vm/drop_caches
	local n
	n=$(mt_st 1 inodes)
	[ -n "$n" ] && [ "$n" -le 10 ]
}
before=$(mt_st 1 inodes)
if sk_wait_for 30 inodes_back; then
	sk_ok "every lookup was given back: inodes $before -> $(mt_st 1 inodes) after the kernel dropped them"
else
	sk_not_ok "every lookup was given back: inodes $before -> $(mt_st 1 inodes) after the kernel dropped them (want <= 10)"
fi
sk_check "skfused is still running" sk_alive "$MT_PID1"

mt_stop_primary
sk_diag "scenario took $((SECONDS - t_start)) s for $N files"
sk_done
