#!/usr/bin/env bash
# mirror_evilsec: an authenticated but malicious secondary (an insider holding the secret) takes
# the secondary's place and, in an incremental and then a full resync, reports FAILED operations
# on paths that go through a symlink of the primary's tree to a directory outside it, and a file
# "remade empty" that is a FIFO. The primary resolves those paths beneath its root without
# following any symlink: it opens nothing outside the tree and no FIFO (inotify on them says so),
# sends nothing from there, counts the reports it cut short (rejected_frames), and resyncs the
# genuine secondary afterwards (issue 9: every byte from the network is hostile, even after its
# MAC checks).
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init
ES=$MT_TOOLS/evilsecondary
[ -x "$ES" ] || mt_bail "evilsecondary not built at $ES"
OUT=$SK_TMP/outside
mkdir -p "$OUT/sub" && echo "outside secret" >"$OUT/secret" && echo x >"$OUT/sub/x" || mt_bail "outside dir"

mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary || mt_bail "primary did not start"
mkdir -p "$MT_DIR1/app" && for i in $(seq 10); do echo "file $i" >"$MT_DIR1/app/f$i"; done
ln -s "$OUT" "$MT_DIR1/app/out" && mkfifo "$MT_DIR1/app/fifo" || mt_bail "tree"
mt_wait_synced 30 || mt_bail "not in sync before the attack"
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'" || mt_bail "secondary did not stop"
mt_wait_until 10 bash -c "[ \"\$(mt_st 1 peer)\" != connected ]" || mt_bail "primary did not see the secondary go"
echo "changed while alone" >>"$MT_DIR1/app/f1" # a tracked change: the next resync can be incremental
rej0=$(mt_st 1 rejected_frames)

# inotify on what the reports name (outside the tree, and the FIFO in the primary's backing tree):
# an open there is the primary following a peer's path. O_PATH opens raise no event.
cat >"$SK_TMP/watch.py" <<'EOF'
import ctypes, os, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
stop, names = sys.argv[1], {}
for p in sys.argv[2:]:
    wd = libc.inotify_add_watch(fd, p.encode(), 0x01 | 0x20)  # IN_ACCESS | IN_OPEN
    if wd < 0:
        sys.exit("cannot watch " + p)
    names[wd] = p
print("watching", flush=True)
end = time.monotonic() + 180
while time.monotonic() < end and not os.path.exists(stop):
    time.sleep(0.05)
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        continue
    off = 0
    while off < len(data):
        wd, mask, _, ln = struct.unpack_from("iIII", data, off)
        print("event", hex(mask), names.get(wd, "?"), data[off + 16:off + 16 + ln].rstrip(b"\0").decode(), flush=True)
        off += 16 + ln
EOF
WPID=$(sk_spawn 1 watch "$MT_PY" "$SK_TMP/watch.py" "$SK_TMP/watch.stop" "$OUT" "$OUT/sub" \
	"$OUT/secret" "$OUT/sub/x" "$MT_BACK1/app/fifo")
mt_wait_until 10 grep -q watching "$SK_TMP/watch.log" || mt_bail "inotify watch: $(cat "$SK_TMP/watch.log")"

rc=0
out=$(sk_in 2 timeout 120 "$ES" --listen "${SK_IP[2]}:$MT_PORT" --secret "$MT_SECRET" \
	--sessions incr,full --log "$SK_TMP/evil-ops" --wait-ms 30000 \
	--report app/out/sub/x --report app/out/secret,app/out/secret \
	--report app/fifo,app/fifo --report app/out/sub/y,app/g 2>&1) || rc=$?
sk_diag "$out"
if [ "$rc" = 0 ]; then
	sk_ok "the primary ran an incremental and a full resync with the hostile secondary to their end"
else
	sk_not_ok "the primary ran an incremental and a full resync with the hostile secondary to their end (exit $rc)"
fi
kinds=$(grep -o 'resync done in [0-9.]* s ([a-z]*' "$SK_TMP/fused1.$MT_N1.log" | tail -n 2 | sed 's/.*(//' | tr '\n' ' ')
if [ "$kinds" = "incremental full " ]; then
	sk_ok "one incremental and one full resync ran"
else
	sk_not_ok "one incremental and one full resync ran (the primary's last two: ${kinds:-none})"
fi
touch "$SK_TMP/watch.stop"
mt_wait_until 5 bash -c "! kill -0 $WPID 2>/dev/null"
ev=$(grep '^event' "$SK_TMP/watch.log")
if [ -z "$ev" ]; then
	sk_ok "nothing outside the tree and no FIFO opened for the peer's reports"
else
	sk_not_ok "nothing outside the tree and no FIFO opened for the peer's reports"
	sk_diag "$(printf '%s\n' "$ev" | sort | uniq -c | head -n 10)"
fi
if [ -s "$SK_TMP/evil-ops" ] && ! grep -q ' app/out/' "$SK_TMP/evil-ops"; then
	sk_ok "nothing sent from beyond the symlink ($(wc -l <"$SK_TMP/evil-ops") operations received)"
else
	sk_not_ok "nothing sent from beyond the symlink"
	sk_diag "$(grep ' app/out/' "$SK_TMP/evil-ops" | head -n 5)"
fi
# Reports resolved through the symlink, each path counted where it was cut short. Incremental
# resync: app/out/sub/x, app/out/secret (remade: one lookup) and app/out/sub/y of the rename: 3.
# Full resync: app/out/sub/x, app/out/secret twice (as a rename's two names), app/out/sub/y: 4.
rej1=$(mt_st 1 rejected_frames)
if [ -n "$rej0" ] && [ -n "$rej1" ] && [ $((rej1 - rej0)) -ge 7 ]; then
	sk_ok "primary counted the reports that named a path through a symlink ($((rej1 - rej0)) >= 7)"
else
	sk_not_ok "primary counted the reports that named a path through a symlink (before ${rej0:-?}, after ${rej1:-?}, want +7)"
fi
line=$(grep -m1 'through a symlink' "$SK_TMP/fused1.$MT_N1.log")
if [ -n "$line" ]; then sk_ok "primary's log names them"; else sk_not_ok "primary's log names them"; fi
sk_diag "$line"
if sk_alive "$MT_PID1" && mountpoint -q "$MT_DIR1"; then
	sk_ok "primary still serving"
else
	sk_not_ok "primary still serving"
fi
if [ "$(cat "$OUT/secret")" = "outside secret" ] && [ "$(ls "$OUT" | tr '\n' ' ')" = "secret sub " ]; then
	sk_ok "the directory outside the tree is untouched"
else
	sk_not_ok "the directory outside the tree is untouched"
fi

# The genuine secondary returns: resynced, both trees equal.
mt_start_secondary || mt_bail "secondary did not restart"
echo "after the attack" >"$MT_DIR1/app/after"
if mt_wait_synced 60; then sk_ok "genuine secondary in sync after the attack"; else sk_not_ok "genuine secondary in sync after the attack"; fi
mt_same_trees
mt_stop_primary
sk_done
