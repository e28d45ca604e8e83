#!/usr/bin/env bash
# mirror_ops: every application operation on the primary's mount is replicated; the trees end identical.
# Issue 4 items 1, 2, 7: after a mixed workload (create/O_TRUNC/O_APPEND/O_EXCL, writes, truncate,
# fallocate + punch hole, copy_file_range, mkdir, mknod fifo/devices, symlinks, hard links, unlink
# incl. open-unlinked, rmdir, rename incl. NOREPLACE/EXCHANGE, chmod, chown, utimens ns, xattrs,
# ACLs, fsync) the primary's backing tree and the secondary's tree match in every property.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init

# the stage times of waited writes and fsyncs (stages.c), checked near the end
export SKFUSED_STAGES=1
# a large write's pieces before the last flagged, acked with the last (repl.c; off by default),
# so every large write of this test takes that path; checked in the large-writes phase
export SKFUSED_WRITE_MORE=1
mt_start_secondary || mt_bail "secondary did not start"
# the cork (repl.c) holds a RELEASE at most this long when nothing follows it: long enough that
# the back-to-back creates below go with their next frame even under load, far under the budget
export SKFUSED_CORK_US=20000
mt_start_primary || mt_bail "primary did not start"
if mt_wait_until 10 mt_peer_is connected; then
	sk_ok "primary connected to the secondary"
else
	sk_not_ok "primary connected to the secondary"
	sk_diag "status: $(mt_status 1)"
fi
sk_check "mount is skfused (fuse)" bash -c "grep -q ' $MT_DIR1 fuse' /proc/self/mounts"

# The workload, through the primary's mount; one TAP line per operation group.
times=$SK_TMP/times.list
out=$(timeout 60 "$MT_PY" "$SK_SRC/test/tools/fsops.py" mixed "$MT_DIR1" --times-out "$times" 2>&1)
rc=$?
while IFS=$'\t' read -r op st detail; do
	[ -n "$op" ] || continue
	if [ "$st" = ok ]; then
		sk_ok "op $op works on the mount${detail:+ ($detail)}"
	elif [ "$st" = FAIL ]; then
		sk_not_ok "op $op works on the mount"
		sk_diag "$detail"
	else
		sk_diag "$op $st $detail"
	fi
done <<<"$out"
[ "$rc" -le 1 ] || { sk_not_ok "workload ran to the end (rc=$rc)"; sk_diag "$(tail -n 5 <<<"$out")"; }

if mt_wait_synced 30; then
	sk_ok "primary reports the peer in sync, nothing in flight"
else
	sk_not_ok "primary reports the peer in sync, nothing in flight"
fi

# Backing vs secondary first: nothing has read the files since the utimens calls.
mt_treecmp_tap "primary backing vs secondary" "$times" "$MT_BACK1" "$MT_DIR2"
n=$("$MT_PY" "$SK_SRC/test/tools/treecmp.py" --times all "$MT_BACK1" "$MT_DIR2" 2>/dev/null | grep -c '^# times:')
sk_diag "info: $n mtime/atime differences over all paths (only the utimens'd paths must match)"

# The application's database opens on the secondary (read-only, as a failover would find it).
rows=$("$MT_PY" -c '
import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?immutable=1", uri=True)
ok = db.execute("PRAGMA integrity_check").fetchone()[0]
print(ok, db.execute("SELECT count(*) FROM t").fetchone()[0])' "$MT_DIR2/app.db" 2>&1)
if [ "$rows" = "ok 858" ]; then
	sk_ok "SQLite database on the secondary: integrity ok, all 858 rows"
else
	sk_not_ok "SQLite database on the secondary: integrity ok, all 858 rows (got: $rows)"
fi

# B11: every acknowledged write() leaves the secondary's mtime equal to the primary's, to the ns,
# with the file still open (no close, no fsync): a failover then shows the times the application saw.
mtimes=$("$MT_PY" - "$MT_DIR1" "$MT_BACK1" "$MT_DIR2" <<'PY'
import os, sys, time
mnt, back, sec = sys.argv[1:4]
bad, n = [], 0
fd = os.open(os.path.join(mnt, "mtime-live"), os.O_CREAT | os.O_WRONLY, 0o644)
fa = os.open(os.path.join(mnt, "mtime-append"), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
for i in range(40):
    # small, large (several frames) and appended writes; pauses so the clocks move on
    os.pwrite(fd, b"x" * (4096 if i % 4 else 1536 * 1024), (i % 7) * 4096)
    os.write(fa, b"line %d\n" % i)
    for name in ("mtime-live", "mtime-append"):
        p, s = os.stat(os.path.join(back, name)), os.stat(os.path.join(sec, name))
        n += 1
        if p.st_mtime_ns != s.st_mtime_ns or p.st_size != s.st_size:
            bad.append("%s write %d: primary %d/%d secondary %d/%d" % (name, i, p.st_mtime_ns, p.st_size, s.st_mtime_ns, s.st_size))
    time.sleep(0.002)
m = os.fstat(fd).st_mtime_ns
print(n, len(bad), m == os.stat(os.path.join(back, "mtime-live")).st_mtime_ns)
for b in bad[:3]:
    print(b)
os.close(fd)
os.close(fa)
PY
)
if [ "$(head -n1 <<<"$mtimes")" = "80 0 True" ]; then
	sk_ok "after every acknowledged write (file still open) the secondary's mtime equals the primary's, in ns"
else
	sk_not_ok "after every acknowledged write (file still open) the secondary's mtime equals the primary's, in ns"
	sk_diag "$mtimes"
fi

# A create carries the directory's new mtime (chosen before either side creates, set by both):
# once create() returns, the secondary's directory mtime is the primary's, to the ns.
dmt=$("$MT_PY" - "$MT_DIR1" "$MT_BACK1" "$MT_DIR2" <<'PY'
import os, sys
mnt, back, sec = sys.argv[1:4]
os.mkdir(os.path.join(mnt, "dmtime"))
bad, fds = [], []
for i in range(30):
    fds.append(os.open(os.path.join(mnt, "dmtime", "f%d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
    p, s = os.stat(os.path.join(back, "dmtime")), os.stat(os.path.join(sec, "dmtime"))
    if p.st_mtime_ns != s.st_mtime_ns:
        bad.append("create %d: primary %d secondary %d" % (i, p.st_mtime_ns, s.st_mtime_ns))
for fd in fds:
    os.close(fd)
print(len(bad), *bad[:3])
PY
)
if [ "$dmt" = 0 ]; then
	sk_ok "after each of 30 creates (files still open) the secondary's directory mtime equals the primary's, in ns"
else
	sk_not_ok "after each of 30 creates (files still open) the secondary's directory mtime equals the primary's, in ns"
	sk_diag "$dmt"
fi

# skfused answers the kernel's security.capability query before each write from a per-inode
# "none" it remembers: a capability set through the mount must be seen at once, here and on the
# secondary, and a write must leave both sides with the same answer.
caps=$("$MT_PY" - "$MT_DIR1" "$MT_BACK1" "$MT_DIR2" <<'PY'
import os, struct, sys
mnt, back, sec = sys.argv[1:4]
p = os.path.join(mnt, "capfile")
fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o755)
os.write(fd, b"x" * 100)           # the kernel asked; "none" is remembered
os.write(fd, b"y" * 100)
blob = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)   # v2, effective, cap_net_bind_service
os.setxattr(p, "security.capability", blob)
def get(path):
    try:
        return os.getxattr(path, "security.capability")
    except OSError as e:
        return "errno %d" % e.errno
r = [get(p) == blob, get(os.path.join(back, "capfile")) == blob, get(os.path.join(sec, "capfile")) == blob]
os.write(fd, b"z" * 100)           # a write drops it (backing fs), on both sides alike
os.close(fd)
r.append(get(p) == get(os.path.join(sec, "capfile")) == get(os.path.join(back, "capfile")))
print(" ".join(str(x) for x in r), get(p), get(os.path.join(sec, "capfile")))
PY
)
if [ "$(cut -d' ' -f1-4 <<<"$caps")" = "True True True True" ]; then
	sk_ok "security.capability set after writes is seen on the mount and the secondary; a write leaves both sides alike"
else
	sk_not_ok "security.capability set after writes is seen on the mount and the secondary; a write leaves both sides alike"
	sk_diag "$caps"
fi

# FUSE_HANDLE_KILLPRIV_V2: the kernel asks for security.capability once per file, not before
# every write (a FUSE round trip each), and skfused clears the set-id bits itself where the VFS
# would: a write, truncate, O_TRUNC open, copy_file_range or fallocate by a caller without
# CAP_FSETID; S_ISGID when the group may execute or the caller is not in the file's group; never
# for root. Each outcome is compared with a plain directory's, and the secondary must end with
# the same modes.
if [ "$(mt_st 1 killpriv_v2)" = True ] || [ "$(mt_st 1 killpriv_v2)" = true ]; then
	sk_ok "FUSE_HANDLE_KILLPRIV_V2 negotiated with the kernel"
else
	sk_not_ok "FUSE_HANDLE_KILLPRIV_V2 negotiated with the kernel (status: $(mt_st 1 killpriv_v2))"
fi
q0=$(mt_st 1 cap_queries)
"$MT_PY" -c '
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644)
for i in range(200):
    os.pwrite(fd, b"k" * 4096, i * 4096)
os.close(fd)' "$MT_DIR1/kp-writes"
q1=$(mt_st 1 cap_queries)
if [ -n "$q0" ] && [ -n "$q1" ] && [ $((q1 - q0)) -le 2 ]; then
	sk_ok "200 writes to one file: $((q1 - q0)) security.capability queries from the kernel (at most 2)"
else
	sk_not_ok "200 writes to one file: at most 2 security.capability queries from the kernel ($q0 -> $q1)"
fi
kp_plain=$SK_TMP/kp-plain
mkdir -p "$kp_plain" "$MT_DIR1/kp"
chmod 0777 "$kp_plain" "$MT_DIR1/kp"
for d in "$kp_plain" "$MT_DIR1/kp"; do
	for spec in w_ug:6777 w_g_nox:2766 w_u:4766 t_ug:6777 t_u:4777 o_ug:6777 o_g:2767 r_ug:6777 r_t:6777 c_ug:6777 f_ug:6777; do
		printf 'fixture\n' >"$d/${spec%%:*}"
		chmod "${spec#*:}" "$d/${spec%%:*}"
	done
done
kp_run() {  # kp_run DIR: as nobody (no capabilities) then as root, one "name mode" line per file
	setpriv --reuid 65534 --regid 65534 --clear-groups "$MT_PY" -c '
import os, sys
d = sys.argv[1]
def w(n):
    fd = os.open(os.path.join(d, n), os.O_WRONLY)
    os.pwrite(fd, b"w", 2)
    os.close(fd)
for n in ("w_ug", "w_g_nox", "w_u"):
    w(n)
for n in ("t_ug", "t_u"):
    os.truncate(os.path.join(d, n), 3)
for n in ("o_ug", "o_g"):
    os.close(os.open(os.path.join(d, n), os.O_WRONLY | os.O_TRUNC))
src = os.open(os.path.join(d, "w_u"), os.O_RDONLY)
fd = os.open(os.path.join(d, "c_ug"), os.O_WRONLY)
os.copy_file_range(src, fd, 4, 0, 1)
os.close(fd)
os.close(src)
fd = os.open(os.path.join(d, "f_ug"), os.O_WRONLY)
os.posix_fallocate(fd, 0, 8192)
os.close(fd)' "$1"
	"$MT_PY" -c '
import os, sys
d = sys.argv[1]
fd = os.open(os.path.join(d, "r_ug"), os.O_WRONLY)
os.pwrite(fd, b"r", 1)
os.close(fd)
os.truncate(os.path.join(d, "r_t"), 2)' "$1"
}
kp_modes() { (cd "$1" && for n in w_ug w_g_nox w_u t_ug t_u o_ug o_g r_ug r_t c_ug f_ug; do stat -c "%n %a" "$n"; done | tr '\n' ' '); }
kp_run "$kp_plain"
kp_run "$MT_DIR1/kp"
want=$(kp_modes "$kp_plain")
got=$(kp_modes "$MT_DIR1/kp")
if [ "$got" = "$want" ] && [[ "$want" == "w_ug 777 w_g_nox 766 w_u 766 t_ug 777 t_u 777 o_ug 777 o_g 767 r_ug 6777 "* ]]; then
	sk_ok "set-id bits after writes, truncates, O_TRUNC opens, copies, fallocates by nobody and by root: as on a plain directory ($got)"
else
	sk_not_ok "set-id bits after writes, truncates, O_TRUNC opens, copies, fallocates by nobody and by root: as on a plain directory"
	sk_diag "plain: $want"
	sk_diag "mount: $got"
fi
mt_wait_synced 20 >/dev/null
sec=$(kp_modes "$MT_DIR2/kp")
if [ "$sec" = "$want" ]; then
	sk_ok "the secondary has the same modes after them"
else
	sk_not_ok "the secondary has the same modes after them"
	sk_diag "secondary: $sec"
fi

# The mount shows the backing tree as it is (st_* from the backing fs), with no view of its own.
mt_treecmp_tap "mount vs primary backing" none "$MT_DIR1" "$MT_BACK1" entries type mode owner size content nlink hardlinks symlink xattr acl mtime
ino_diff=$("$MT_PY" - "$MT_DIR1" "$MT_BACK1" <<'PY'
import os, stat, sys
# by directory fds, so paths longer than PATH_MAX (the workload makes a 4095-byte one) compare too
def walk(fa, fb):
    bad = 0
    for n in os.listdir(fb):
        sa, sb = os.lstat(n, dir_fd=fa), os.lstat(n, dir_fd=fb)
        bad += sa.st_ino != sb.st_ino
        if stat.S_ISDIR(sb.st_mode):
            ca = os.open(n, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fa)
            cb = os.open(n, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fb)
            bad += walk(ca, cb)
            os.close(ca)
            os.close(cb)
    return bad
print(walk(os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY), os.open(sys.argv[2], os.O_RDONLY | os.O_DIRECTORY)))
PY
)
if [ "$ino_diff" = 0 ]; then
	sk_ok "inode numbers on the mount are the backing filesystem's"
else
	sk_not_ok "inode numbers on the mount are the backing filesystem's ($ino_diff differ)"
fi

# A close (RELEASE) carries nothing the application was told is on both nodes, and nobody waits
# for it: it goes out with the next frame (one socket write, one ack for both), or alone when
# nothing follows within SKFUSED_CORK_US. 20 small-file creates (open, write 4 KiB, close):
# 60 frames in about 40 writes; then, with nothing after the last close, its RELEASE still
# reaches the secondary (a new file's atime there is its own create's until the RELEASE sets the
# primary's) and the peer stays in sync.
mt_wait_synced 10 >/dev/null 2>&1
plog=$SK_TMP/fused1.$MT_N1.log
lost0=$(grep -c "peer lost" "$plog")
seq0=$(mt_st 1 seq_sent); w0=$(mt_st 1 stream_writes); k0=$(mt_st 1 ack_kicks)
"$MT_PY" - "$MT_DIR1" <<'PY'
import os, sys
d = os.path.join(sys.argv[1], "cork")
os.mkdir(d)
for i in range(20):
    fd = os.open(os.path.join(d, "f%d" % i), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"c" * 4096)
    os.close(fd)
PY
seq1=$(mt_st 1 seq_sent); w1=$(mt_st 1 stream_writes); k1=$(mt_st 1 ack_kicks)
fr=$((seq1 - seq0 - 1)); wr=$((w1 - w0))   # - 1: the mkdir
if [ "$fr" = 60 ] && [ "$wr" -le 50 ]; then
	sk_ok "20 creates: 60 frames in $wr socket writes (each close went with the next frame)"
else
	sk_not_ok "20 creates: 60 frames in at most 50 socket writes (frames $fr, writes $wr)"
fi
# A request that waits for an ack wakes the primary's ack thread when it sends its frame (repl.c
# ack_kick), so that wake-up overlaps the round trip instead of following the ack. Each of the 40
# waited frames (CREATE, WRITE) goes out while the ack thread sleeps (the previous ack was handled,
# the close's frame is corked): counted, not timed; a kick is only skipped when the thread was not
# asleep yet, so at least a quarter.
if [ -n "$k0" ] && [ -n "$k1" ] && [ $((k1 - k0)) -ge 10 ] && [ $((k1 - k0)) -le 41 ]; then
	sk_ok "20 creates: the ack thread woken by the sender $((k1 - k0)) times of 40 waited frames"
else
	sk_not_ok "20 creates: the ack thread woken by the sender 10..40 times (ack_kicks $k0 -> $k1)"
fi
# (a corked frame never sent would make the budget drop the peer: then a resync, then in sync)
if mt_wait_until 10 mt_synced && [ "$(grep -c "peer lost" "$plog")" = "$lost0" ]; then
	sk_ok "the last close, with nothing after it, is acknowledged (peer in sync, nothing in flight, no peer loss)"
else
	sk_not_ok "the last close, with nothing after it, is acknowledged without a peer loss: $(grep "peer lost" "$plog" | tail -n 2) $(mt_status 1)"
fi
a1=$(stat -c %x "$MT_BACK1/cork/f19"); a2=$(stat -c %x "$MT_DIR2/cork/f19")
if [ "$a1" = "$a2" ] && [ "$(mt_st 1 peer)" = connected ]; then
	sk_ok "that close's times reached the secondary (atime $a1), peer still connected"
else
	sk_not_ok "that close's times reached the secondary (atime primary $a1, secondary $a2, peer $(mt_st 1 peer))"
fi

# Read replies go to the kernel by splice (fuseio.c io_splice_send): without it, libfuse read
# each one into a malloc'd buffer of its size and wrote it to /dev/fuse (a copy per read, and
# every worker thread's arena kept ~2 MiB). Counted, not timed: the bytes skfused itself reads
# and writes (/proc/PID/io rchar + wchar; splice counts in neither) while 4 x 4 MiB are read
# cold through the mount stay far below the 16 MiB read (the copy made them 32 MiB).
mkdir -p "$MT_DIR1/rss"
for i in 1 2 3 4; do head -c 4M /dev/zero > "$MT_DIR1/rss/r$i"; done
mt_wait_synced 10 >/dev/null 2>&1
sync; echo 3 > /proc/sys/vm/drop_caches
io0=$(awk '/^(rchar|wchar)/{s+=$2} END{print s}' "/proc/$MT_PID1/io")
rss0=$(awk '/^VmRSS/{print $2}' "/proc/$MT_PID1/status")
rpids=()
for i in 1 2 3 4; do dd if="$MT_DIR1/rss/r$i" of=/dev/null bs=1M status=none & rpids+=($!); done
wait "${rpids[@]}"
io1=$(awk '/^(rchar|wchar)/{s+=$2} END{print s}' "/proc/$MT_PID1/io")
rss1=$(awk '/^VmRSS/{print $2}' "/proc/$MT_PID1/status")
if [ -n "$io0" ] && [ -n "$io1" ] && [ $((io1 - io0)) -lt $((4 << 20)) ]; then
	sk_ok "16 MiB read cold: replies spliced, skfused copied $((io1 - io0)) bytes (RSS $rss0 -> $rss1 kB)"
else
	sk_not_ok "16 MiB read cold: replies spliced, skfused copied < 4 MiB ($io0 -> $io1, RSS $rss0 -> $rss1 kB)"
fi
rm -rf "$MT_DIR1/rss"

# Reads and lookups are served locally: a read-only pass sends nothing to the peer.
seq0=$(mt_st 1 seq_sent)
# (each runs whatever the others answer; -execdir: the workload made a path longer than PATH_MAX from here)
(cd "$MT_DIR1" && { find . -ls >/dev/null; find . -type f -execdir cat {} + >/dev/null
	getfattr -R -d . >/dev/null 2>&1; getfacl -R . >/dev/null 2>&1; stat -f . >/dev/null
	ls -lR >/dev/null; readlink sl_file >/dev/null; })
seq1=$(mt_st 1 seq_sent)
if [ -n "$seq0" ] && [ "$seq0" = "$seq1" ]; then
	sk_ok "reads, lookups, getxattr, statfs send nothing to the peer (seq_sent $seq0)"
else
	sk_not_ok "reads, lookups, getxattr, statfs send nothing to the peer (seq_sent $seq0 -> $seq1)"
fi

# Where a waited write's and fsync's time goes (status "stages", SKFUSED_STAGES=1): 50 x (4 KiB
# pwrite + fdatasync). Checked by order, not by duration: every stage was counted for each of them
# on both nodes; on the primary seal + wait + reply <= total and send + local, peer <= wait (sums);
# on the secondary queue + apply + ack <= total; no stamp came before the one it follows
# (misordered 0), and the secondary's read-to-applied of each frame fits in the primary's
# sealed-to-ack-read of it (a clock both namespaces share).
mt_wait_synced 10 >/dev/null 2>&1
mt_status 1 >"$SK_TMP/stg-p0"; mt_status 2 >"$SK_TMP/stg-s0"
"$MT_PY" - "$MT_DIR1" <<'PY'
import os, sys
fd = os.open(os.path.join(sys.argv[1], "stages.dat"), os.O_CREAT | os.O_RDWR, 0o644)
for i in range(50):
    os.pwrite(fd, b"s" * 4096, (i % 8) * 4096)
    os.fdatasync(fd)
os.close(fd)
PY
mt_status 1 >"$SK_TMP/stg-p1"; mt_status 2 >"$SK_TMP/stg-s1"
stg=$("$MT_PY" - "$SK_TMP" <<'PY'
import json, sys
d = sys.argv[1]
ld = lambda n: json.load(open(d + "/" + n))["stages"]
p0, p1, s0, s1 = ld("stg-p0"), ld("stg-p1"), ld("stg-s0"), ld("stg-s1")
bad = []
def dl(a, b, k, s, f):
    return b[k][s][f] - a[k][s][f]
for k in ("write", "fsync"):
    P = {s: (dl(p0, p1, k, s, "n"), dl(p0, p1, k, s, "sum_ns")) for s in p1[k]}
    S = {s: (dl(s0, s1, k, s, "n"), dl(s0, s1, k, s, "sum_ns")) for s in s1[k]}
    for s, (n, t) in list(P.items()) + list(S.items()):
        if n < 50 or t <= 0:
            bad.append("%s %s n %d sum %d" % (k, s, n, t))
    if P["seal"][1] + P["wait"][1] + P["reply"][1] > P["total"][1]:
        bad.append("%s: seal+wait+reply > total" % k)
    if P["send"][1] + P["local"][1] > P["wait"][1] or P["peer"][1] > P["wait"][1]:
        bad.append("%s: send+local or peer > wait" % k)
    if S["queue"][1] + S["apply"][1] + S["ack"][1] > S["total"][1]:
        bad.append("%s: secondary queue+apply+ack > total" % k)
    # the ack's socket write may return after the primary read the ack (a veth runs the
    # receiving side inline, and the writer can be preempted then): only read-to-applied is
    # inside sealed-to-ack-read whatever the load
    if S["total"][0] == P["peer"][0] and S["queue"][1] + S["apply"][1] > P["peer"][1]:
        bad.append("%s: secondary queue+apply > primary peer" % k)
    print("%s p50 us: %s | %s" % (k, " ".join("%s %.0f" % (s, p1[k][s]["p50_ns"] / 1e3) for s in p1[k]),
                                 " ".join("%s %.0f" % (s, s1[k][s]["p50_ns"] / 1e3) for s in s1[k])))
for w, a in (("primary", p1), ("secondary", s1)):
    if not a["on"] or a["misordered"]:
        bad.append("%s on %s misordered %d" % (w, a["on"], a["misordered"]))
print("BAD: " + "; ".join(bad) if bad else "OK")
PY
)
if [ "$(tail -n 1 <<<"$stg")" = OK ]; then
	sk_ok "stage times of 50 writes + fdatasyncs: every stage counted, stages within the whole, in order"
	sk_diag "$(head -n 2 <<<"$stg")"
else
	sk_not_ok "stage times of 50 writes + fdatasyncs: $(tr '\n' ' ' <<<"$stg")"
fi

# Large writes go as pieces of SKFUSED_WRITE_CHUNK (256 KiB) bytes, each sent as soon as it is
# sealed, so the secondary writes piece k while the primary seals piece k+1; the reply waits for
# the last piece's ack and the local pwrite. The pieces before the last are flagged (more to come)
# and the secondary acks them with the last one. Unaligned sizes and offsets (1 MiB + 4097 at
# 4095, 3 MiB, 700 KiB + 13 crossing a MiB), with the file still open: after each write() the
# secondary's bytes and mtime equal the primary's; pieces counted on the primary (a 3 MiB write
# alone is at least 9), acks left to a later piece counted on the secondary (over the whole run).
mt_wait_synced 10 >/dev/null 2>&1
t_big=$SECONDS
wp0=$(mt_st 1 write_pieces)
big=$("$MT_PY" - "$MT_DIR1" "$MT_BACK1" "$MT_DIR2" <<'PY'
import os, sys
mnt, back, sec = sys.argv[1:4]
bad, n = [], 0
fd = os.open(os.path.join(mnt, "big.dat"), os.O_CREAT | os.O_RDWR, 0o644)
for off, size in ((4095, (1 << 20) + 4097), (0, 3 << 20), ((1 << 20) - 7, 700 * 1024 + 13),
                  (5 << 20, 2 << 20), (123457, 1 << 20)):
    data = os.urandom(size)
    if os.pwrite(fd, data, off) != size:
        bad.append("short write at %d" % off)
    n += 1
    p, s = os.stat(os.path.join(back, "big.dat")), os.stat(os.path.join(sec, "big.dat"))
    with open(os.path.join(sec, "big.dat"), "rb") as f:
        f.seek(off)
        got = f.read(size)
    if got != data or p.st_mtime_ns != s.st_mtime_ns or p.st_size != s.st_size:
        bad.append("write %d at %d: bytes %s, mtime %d/%d, size %d/%d" % (size, off, got == data,
                   p.st_mtime_ns, s.st_mtime_ns, p.st_size, s.st_size))
os.close(fd)
print(n, len(bad))
for b in bad[:3]:
    print(b)
PY
)
wp1=$(mt_st 1 write_pieces); ad=$(mt_st 2 acks_deferred)
if [ "$(head -n1 <<<"$big")" = "5 0" ] && cmp -s "$MT_BACK1/big.dat" "$MT_DIR2/big.dat"; then
	sk_ok "5 large unaligned writes: after each, the secondary's bytes and mtime are the primary's; files identical"
else
	sk_not_ok "5 large unaligned writes: after each, the secondary's bytes and mtime are the primary's; files identical"
	sk_diag "$big"
fi
if [ -n "$wp0" ] && [ -n "$wp1" ] && [ $((wp1 - wp0)) -ge 9 ] && [ "${ad:-0}" -ge 1 ]; then
	sk_ok "large writes sent as pieces ($((wp1 - wp0)) non-last pieces), $ad acks left to the next piece"
else
	sk_not_ok "large writes sent as pieces (write_pieces $wp0 -> $wp1, at least 9) and acks left to the next piece ($ad, at least 1)"
fi

# A handle opened write-only writes directly (FOPEN_DIRECT_IO, file.c): no page of the mount's
# cache is filled by it (mincore counts the resident pages of the mount's file; the cached path
# leaves all 2048 of 8 MiB written), and a reader that cached the old bytes, by read() and by a
# shared mapping, sees the new ones after the write.
wo=$("$MT_PY" - "$MT_DIR1" "$MT_DIR2" <<'PY'
import mmap, os, sys
mnt, sec = sys.argv[1:3]
bad = []
fd = os.open(os.path.join(mnt, "wo.dat"), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
data = os.urandom(8 << 20)
for off in range(0, len(data), 1 << 20):
    os.write(fd, data[off:off + (1 << 20)])
os.close(fd)
r = os.open(os.path.join(mnt, "wo.dat"), os.O_RDONLY)
m = mmap.mmap(r, 1 << 20, mmap.MAP_SHARED, mmap.PROT_READ)
if os.pread(r, 1 << 20, 0) != data[:1 << 20] or m[:] != data[:1 << 20]:
    bad.append("old bytes not read back")
new = os.urandom(1 << 20)
w = os.open(os.path.join(mnt, "wo.dat"), os.O_WRONLY)
os.pwrite(w, new, 0)
os.close(w)
if os.pread(r, 1 << 20, 0) != new:
    bad.append("read() after the write-only handle's write returned stale bytes")
if m[:] != new:
    bad.append("the shared mapping after the write-only handle's write shows stale bytes")
m.close()
os.close(r)
with open(os.path.join(sec, "wo.dat"), "rb") as f:
    if f.read(1 << 20) != new:
        bad.append("secondary differs")
print(len(bad))
for b in bad:
    print(b)
PY
)
if [ "$wo" = 0 ]; then
	sk_ok "a reader's cached bytes and shared mapping see a write through a write-only handle; secondary equal"
else
	sk_not_ok "a reader's cached bytes and shared mapping see a write through a write-only handle; secondary equal"
	sk_diag "$wo"
fi
res=$("$MT_PY" - "$MT_DIR1/wo2.dat" <<'PY'
import ctypes, os, sys
# mincore through ctypes: fincore and Python's mmap stat the file first, and the attributes that
# stat fetches (a new mtime) make the kernel drop the inode's cached pages (auto_inval_data)
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
n = 8 << 20
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
for _ in range(8):
    os.write(fd, os.urandom(1 << 20))
os.close(fd)
fd = os.open(sys.argv[1], os.O_RDONLY)
a = libc.mmap(None, n, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
vec = ctypes.create_string_buffer(n // 4096)
rc = libc.mincore(a, n, vec) if a not in (None, ctypes.c_void_p(-1).value) else -1
if rc == 0:
    libc.munmap(a, n)
os.close(fd)
print(sum(b & 1 for b in vec.raw) if rc == 0 else "mincore failed: %d" % ctypes.get_errno())
PY
)
if [ "$res" = 0 ] && cmp -s "$MT_BACK1/wo2.dat" "$MT_DIR2/wo2.dat"; then
	sk_ok "8 MiB written through a write-only handle left no page in the mount's cache; secondary equal"
else
	sk_not_ok "8 MiB written through a write-only handle left no page in the mount's cache (resident: $res of 2048); secondary equal"
fi

# Every FUSE request read was answered once idle: the agent kills a fenced primary only when its
# status says so (agent/fused.c), so a count that drifts would make each step-down wait 2 s.
fuse_idle() { [ "$(mt_st 1 fuse_requests_open)" = 0 ] && [ "$(mt_st 1 fuse_requests_queued)" = false ]; }
sk_check "idle primary, after every kind of operation: no FUSE request left unanswered (fuse_requests_open $(mt_st 1 fuse_requests_open))" \
	sk_wait_for 5 fuse_idle

# The peer lost between two pieces of one write (fault point write_piece_lost: after the first
# piece of the next large write): the secondary holds a torn write nobody was told is
# replicated; the application's write() succeeds on the primary alone; the next session's resync
# makes the copies identical again.
mt_stop_primary || sk_diag "primary did not stop"
SKFUSED_FAULT=write_piece_lost mt_start_primary || mt_bail "primary (write_piece_lost)"
mt_wait_connected && mt_wait_synced 20 >/dev/null 2>&1
plog=$SK_TMP/fused1.$MT_N1.log
torn=$("$MT_PY" - "$MT_DIR1" <<'PY'
import os, sys
fd = os.open(os.path.join(sys.argv[1], "big.dat"), os.O_RDWR)
data = os.urandom(3 << 20)
print(os.pwrite(fd, data, 8191))
os.close(fd)
PY
)
if [ "$torn" = $((3 << 20)) ] && grep -q "peer lost (fault point write_piece_lost)" "$plog"; then
	sk_ok "peer lost between two pieces of a 3 MiB write: the write() succeeded alone"
else
	sk_not_ok "peer lost between two pieces of a 3 MiB write: the write() succeeded alone (wrote $torn; $(grep 'peer lost' "$plog" | tail -n 1))"
fi
if mt_wait_synced 30 && cmp -s "$MT_BACK1/big.dat" "$MT_DIR2/big.dat"; then
	sk_ok "the next session converges: the torn write is repaired (files identical)"
else
	sk_not_ok "the next session converges: the torn write is repaired (files identical)"
	sk_diag "$(cmp "$MT_BACK1/big.dat" "$MT_DIR2/big.dat" 2>&1 | head -n 2)"
fi
mt_same_trees "after the torn write's resync: primary backing tree and secondary identical"
sk_diag "info: the large-writes phases took $((SECONDS - t_big)) s"

# SKFUSED_MTIME=seen (ops.c): a write sets no mtime on the primary (its kernel's stays) and carries
# the primary's clock reading for the secondary; the primary gives the peer a file's times before a
# reply shows them to the application. Each write below is applied by a secondary held by SIGSTOP
# for 10 ms, so no time of the secondary's own could pass for the primary's. After each write, a stat through the mount returns what
# the secondary already holds; a listing (READDIRPLUS) of files written since their last stat
# shows no times the peer lacks (a stat of each entry right after it returns the secondary's);
# closed, the trees are equal.
mt_stop_primary || sk_diag "primary did not stop"
SKFUSED_MTIME=seen mt_start_primary || mt_bail "primary (SKFUSED_MTIME=seen)"
mt_wait_connected && mt_wait_synced 20 >/dev/null 2>&1
tf0=$(mt_st 1 times_frames)
seen=$("$MT_PY" - "$MT_DIR1" "$MT_DIR2" "$MT_PID2" <<'PY'
import os, signal, sys, threading, time
mnt, sec, spid = sys.argv[1], sys.argv[2], int(sys.argv[3])
bad, n = [], 0

def held(f):  # f() while the secondary is stopped for 10 ms
    os.kill(spid, signal.SIGSTOP)
    t = threading.Thread(target=f)
    t.start()
    time.sleep(0.01)
    os.kill(spid, signal.SIGCONT)
    t.join(10)

def check(what, name):
    global n
    p = os.stat(os.path.join(mnt, "seen", name))
    s = os.stat(os.path.join(sec, "seen", name))
    n += 1
    if (p.st_mtime_ns, p.st_size) != (s.st_mtime_ns, s.st_size):
        bad.append("%s: stat %d/%d, secondary %d/%d" % (what, p.st_mtime_ns, p.st_size, s.st_mtime_ns, s.st_size))

os.makedirs(os.path.join(mnt, "seen"), exist_ok=True)
fd = os.open(os.path.join(mnt, "seen", "one.dat"), os.O_CREAT | os.O_RDWR, 0o644)
for i in range(20):
    held(lambda: os.pwrite(fd, os.urandom(4096), i * 4096))
    if i % 2:
        os.fsync(fd)
    check("write %d" % i, "one.dat")
fds = [os.open(os.path.join(mnt, "seen", "f%02d" % k), os.O_CREAT | os.O_RDWR, 0o644) for k in range(10)]
for rnd in range(2):
    for f in fds:
        held(lambda: os.pwrite(f, os.urandom(100), rnd))
    for e in os.scandir(os.path.join(mnt, "seen")):
        if e.name.startswith("f"):
            p = e.stat(follow_symlinks=False)
            s = os.stat(os.path.join(sec, "seen", e.name))
            n += 1
            if p.st_mtime_ns != s.st_mtime_ns:
                bad.append("listed %s: %d, secondary %d" % (e.name, p.st_mtime_ns, s.st_mtime_ns))
for f in fds + [fd]:
    os.close(f)
print(n, len(bad))
for b in bad[:4]:
    print(b)
PY
)
tf1=$(mt_st 1 times_frames)
if [ "$(head -n1 <<<"$seen")" = "40 0" ]; then
	sk_ok "SKFUSED_MTIME=seen: every mtime a stat or a listing showed was the secondary's already (40 checks, its own writes 10 ms late)"
else
	sk_not_ok "SKFUSED_MTIME=seen: every mtime a stat or a listing showed was the secondary's already (40 checks, its own writes 10 ms late)"
	sk_diag "$seen"
fi
if [ "$(mt_st 1 mtime)" = seen ] && [ -n "$tf0" ] && [ -n "$tf1" ] && [ $((tf1 - tf0)) -ge 20 ]; then
	sk_ok "SKFUSED_MTIME=seen: the times went in frames of their own ($((tf1 - tf0)))"
else
	sk_not_ok "SKFUSED_MTIME=seen: the times went in frames of their own (mtime $(mt_st 1 mtime), times_frames $tf0 -> $tf1, at least 20)"
fi
# reads after writes do not ask the file's attributes (no auto_inval_data in this mode), so they
# do not wait for the peer: 20 write + read pairs on one handle send no times frame
"$MT_PY" - "$MT_DIR1" <<'PY'
import os, sys
fd = os.open(os.path.join(sys.argv[1], "seen", "rw.dat"), os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(fd, b"a" * 8192, 0)
for i in range(20):
    os.pwrite(fd, os.urandom(4096), 0)
    os.pread(fd, 4096, 4096)
os.close(fd)
PY
tf2=$(mt_st 1 times_frames)
if [ -n "$tf2" ] && [ $((tf2 - tf1)) -le 2 ]; then
	sk_ok "SKFUSED_MTIME=seen: 20 reads after writes sent $((tf2 - tf1)) times frames (at most 2: the close's)"
else
	sk_not_ok "SKFUSED_MTIME=seen: 20 reads after writes sent $tf1 -> $tf2 times frames (at most 2: the close's)"
fi
mt_wait_synced 10 >/dev/null 2>&1
mt_same_trees "SKFUSED_MTIME=seen, files closed: primary backing tree and secondary identical"

# SKFUSED_MTIME=seen with the secondary's clock behind the primary's (two hosts a second apart;
# fault clock_behind: a write's time the secondary's kernel chose is 1 s earlier). A time the
# application saw must not go back on the secondary: after a stat showed M, a write, and no stat
# since, a failover would show the secondary's mtime, which must not be earlier than M. A write
# carries the primary's clock for the secondary to set.
mt_stop_primary || sk_diag "primary did not stop"
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'" || sk_diag "secondary did not unmount"
SKFUSED_FAULT=clock_behind@1+ mt_start_secondary || mt_bail "secondary (clock_behind)"
SKFUSED_MTIME=seen mt_start_primary || mt_bail "primary (SKFUSED_MTIME=seen, clock behind)"
mt_wait_connected && mt_wait_synced 20 >/dev/null 2>&1
back=$("$MT_PY" - "$MT_DIR1" "$MT_DIR2" <<'PY'
import os, sys, time
mnt, sec = sys.argv[1], sys.argv[2]
fd = os.open(os.path.join(mnt, "seen", "skew.dat"), os.O_CREAT | os.O_RDWR, 0o644)
bad = []
for i in range(10):
    os.pwrite(fd, os.urandom(4096), 0)
    seen = os.fstat(fd).st_mtime_ns  # shown to the application: on the secondary first
    time.sleep(0.002)
    os.pwrite(fd, os.urandom(4096), 4096)
    s = os.stat(os.path.join(sec, "seen", "skew.dat")).st_mtime_ns
    if s < seen:
        bad.append("write %d: the secondary's mtime %d is %d us before the %d a stat showed" % (i, s, (seen - s) // 1000, seen))
os.close(fd)
print(len(bad))
for b in bad[:3]:
    print(b)
PY
)
if [ "$(head -n1 <<<"$back")" = 0 ]; then
	sk_ok "SKFUSED_MTIME=seen, the secondary's clock 1 s behind: no mtime a stat showed went back on the secondary (10 writes)"
else
	sk_not_ok "SKFUSED_MTIME=seen, the secondary's clock 1 s behind: no mtime a stat showed went back on the secondary (10 writes)"
	sk_diag "$back"
fi
mt_wait_synced 10 >/dev/null 2>&1
mt_same_trees "SKFUSED_MTIME=seen, clock behind, files closed: primary backing tree and secondary identical"

# The secondary's tree is not writable by applications.
if touch "$MT_DIR2/should-fail" 2>/dev/null; then
	sk_not_ok "secondary directory refuses writes"
	rm -f "$MT_DIR2/should-fail"
else
	sk_ok "secondary directory refuses writes"
fi

mt_stop_primary
sk_done
