#!/usr/bin/env bash
# mirror_links: hard links made while a resync lists a large directory stay one inode on the peer.
# Issue 9 item 2 ("the hard-link split" of mirror-equal): a link() made while the resync walker
# was between two parts of a directory's listing, at a place the listing had passed, was removed
# on the secondary as a stray when the listing ended; the walk of that directory again then made
# the name a new file of its own (its group's other name had been listed with one link, before
# the link existed), so primary and secondary ended with two names on one inode against two inodes.
# Here: 2000 files at the root (listed with one link each), a directory of 20 000 names the resync
# lists in parts, and links into that directory made while the listing is applied. Every pair
# must end as one inode on both sides.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init

N_BIG=${MT_LINKS_BIG:-20000}
N_SRC=2000

# The primary's tree exists before the mount; the secondary starts empty: a full resync lists all.
"$MT_PY" - "$MT_DIR1" "$N_SRC" "$N_BIG" <<'PY' || mt_bail "making the tree"
import os, sys
d, ns, nb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(ns):
    with open(os.path.join(d, "src_%d" % i), "wb") as f:
        f.write(b"source %d\n" % i)
os.mkdir(os.path.join(d, "big"))
for i in range(nb):
    os.close(os.open(os.path.join(d, "big", "e_%06d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
PY

mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary || mt_bail "primary did not start"

# While the secondary applies the directory's listing (the primary's walker is at most its pacing
# window ahead), links into it through the mount, each from a source of its own (a source whose
# group was listed with two links is known to the secondary, which then links the new name right):
# a link lands at a place the listing has passed about half the time.
"$MT_PY" - "$MT_DIR1" "$MT_DIR2" "$N_SRC" "$N_BIG" >"$SK_TMP/links.out" 2>&1 <<'PY'
import os, sys, threading, time
d, sec, ns, nb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def count():
    try:
        return len(os.listdir(os.path.join(sec, "big")))
    except OSError:
        return 0
end = time.time() + 60
while count() < 1 and time.time() < end:
    time.sleep(0.02)
first = count()
nxt, lock, made, stop = [0], threading.Lock(), [], [False]
def mk():
    while not stop[0]:
        with lock:
            k = nxt[0]
            nxt[0] += 1
        if k >= ns:
            return
        os.link(os.path.join(d, "src_%d" % k), os.path.join(d, "big", "h_%d" % k))
        made.append(k)
ts = [threading.Thread(target=mk) for _ in range(8)]
for t in ts:
    t.start()
while time.time() < end and count() < nb and nxt[0] < ns:
    time.sleep(0.02)
stop[0] = True
for t in ts:
    t.join()
print(first, count(), len(made))
with open(os.path.join(d, "made.list"), "w") as f:
    f.write("\n".join(str(k) for k in made) + "\n")
PY
lrc=$?
read -r first last made <"$SK_TMP/links.out"
if [ "$lrc" = 0 ] && [ "${made:-0}" -gt 0 ]; then
	sk_ok "$made links made while the secondary applied the listing (it held $first, then $last of $N_BIG names)"
else
	sk_not_ok "links made while the secondary applied the listing (rc $lrc)"
	sk_diag "$(cat "$SK_TMP/links.out")"
fi

if mt_wait_synced 90; then
	sk_ok "resync ended, the peer in sync"
else
	sk_not_ok "resync ended, the peer in sync"
	sk_diag "primary log:" "$(grep -v ' debug: ' "$SK_TMP/fused1.$MT_N1.log" | tail -n 10)"
fi

split=$("$MT_PY" - "$MT_BACK1" "$MT_DIR2" <<'PY'
import os, sys
p, s = sys.argv[1], sys.argv[2]
bad = []
made = [int(x) for x in open(os.path.join(p, "made.list")).read().split()]
for i in made:
    a, b = "src_%d" % i, "big/h_%d" % i
    pa, pb = os.lstat(os.path.join(p, a)), os.lstat(os.path.join(p, b))
    sa, sb = os.lstat(os.path.join(s, a)), os.lstat(os.path.join(s, b))
    if (pa.st_ino == pb.st_ino) != (sa.st_ino == sb.st_ino) or pa.st_nlink != sa.st_nlink:
        bad.append("%s %s: primary %s nlink %d, secondary %s nlink %d/%d" % (
            a, b, "one inode" if pa.st_ino == pb.st_ino else "two inodes", pa.st_nlink,
            "one inode" if sa.st_ino == sb.st_ino else "two inodes", sa.st_nlink, sb.st_nlink))
print(len(bad), len(made))
for x in bad[:5]:
    print(x)
PY
)
read -r nsplit nmade <<<"$(head -n1 <<<"$split")"
if [ "$nsplit" = 0 ] && [ "${nmade:-0}" -gt 0 ]; then
	sk_ok "all $nmade link pairs are one inode on the secondary as on the primary"
else
	sk_not_ok "all ${nmade:-?} link pairs are one inode on the secondary as on the primary ($nsplit split)"
	sk_diag "$(tail -n +2 <<<"$split")"
fi
mt_treecmp_tap "primary backing vs secondary" none "$MT_BACK1" "$MT_DIR2" entries type size content nlink hardlinks
sk_done
