#!/usr/bin/env bash
# test/cluster/mirror_eta.sh: resync progress in skfused's status: done never passes total, the rate
# is measured, and the ETA given once 10 % is done is within 25 % of the time the resync really
# took from there (a 96 MiB first sync paced by --resync-rate so there is time to measure).
# Both nodes start from state files of the single-counter days (generation=N): they migrate.
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init
if ! "$MT_FUSED" --help 2>&1 | grep -q -- --resync-rate; then
	sk_skip "skfused has no --resync-rate here: nothing slows the resync enough to measure"
	sk_done
	exit 0
fi
RATE_MB=8
# one directory: its listing gives the whole total before the first data byte moves
for i in $(seq -w 1 24); do
	head -c $((4 << 20)) /dev/urandom >"$MT_DIR1/f$i" || mt_bail "tree"
done
# state files of the single-counter days: the primary at generation 6, the secondary behind at 5
for n in 1 2; do
	mkdir -p "${SK_ROOT[$n]}/var/lib/steadykit/state-$MT_TAG" && chmod 700 "${SK_ROOT[$n]}/var/lib/steadykit/state-$MT_TAG"
done
printf 'role=primary\npeer_in_sync=0\nconsistent=0\ngeneration=6\nro_mounted=0\n' \
	>"${SK_ROOT[1]}/var/lib/steadykit/state-$MT_TAG/state"
printf 'role=secondary\npeer_in_sync=0\nconsistent=1\ngeneration=5\nro_mounted=0\n' \
	>"${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG/state"
mt_start_secondary || mt_bail "secondary did not start"
if [ "$(mt_st 2 gen.current)" = 5 ] && [ "$(mt_st 2 gen.history)" = "['4', '3', '2', '1']" ]; then
	sk_ok "an old state file (generation=5) loads: current 5, history 4..1"
else
	sk_not_ok "an old state file (generation=5) loads: current 5, history 4..1 ($(mt_st 2 gen.current) $(mt_st 2 gen.history))"
fi
mt_start_primary --resync-rate "$RATE_MB" || mt_bail "primary did not start"

# samples every 0.25 s (straight from the control socket): seconds, done, total, rate, eta, state
SAMPLES=$SK_TMP/eta.samples
end_t=$("$MT_PY" - "$MT_CTL1" "$SAMPLES" <<'EOF'
import json, socket, sys, time
t0 = time.time()
out = open(sys.argv[2], "w")
while time.time() - t0 < 60:
    try:
        c = socket.socket(socket.AF_UNIX); c.settimeout(2); c.connect(sys.argv[1])
        c.sendall(b'{"cmd":"status"}\n'); buf = b""
        while not buf.endswith(b"\n"):
            d = c.recv(65536)
            if not d: break
            buf += d
        c.close(); s = json.loads(buf); r = s["resync"]
    except Exception:
        time.sleep(0.25); continue
    st = "synced" if s.get("peer_in_sync") else r["state"]
    t = time.time() - t0
    out.write("%.2f %d %d %d %d %s\n" % (t, r["done_bytes"], r["total_bytes"], r.get("rate_bps", -1),
              r.get("eta_s", -1), st)); out.flush()
    if st in ("synced", "done"):
        print("%.2f" % t); break
    time.sleep(0.25)
EOF
)
[ -n "$end_t" ] || { sk_not_ok "resync completed within 60 s"; sk_diag "$(tail -3 "$SAMPLES")"; sk_done; exit 1; }
sk_ok "resync of 96 MiB at $RATE_MB MB/s completed after ${end_t} s"

verdict=$("$MT_PY" - "$SAMPLES" "$end_t" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
end = float(sys.argv[2])
over = [r for r in rows if int(r[1]) > int(r[2])]
checked = bad = 0
worst = 0.0
for t, done, total, rate, eta, st in rows:
    t, done, total, eta = float(t), int(done), int(total), int(eta)
    if st != "running" or total <= 0 or done < total * 0.10 or done > total * 0.75:
        continue
    real = end - t
    if real < 2:
        continue  # the status poll's own granularity would dominate
    checked += 1
    err = abs(eta - real) / real
    worst = max(worst, err)
    if eta < 0 or err > 0.25:
        bad += 1
        print("# at %.1fs (%.0f%%): ETA %ds, real %.1fs" % (t, 100.0 * done / total, eta, real))
rates = [int(r[3]) for r in rows if r[5] == "running" and int(r[3]) > 0]
print("over=%d checked=%d bad=%d worst=%.0f%% rate_last=%d" % (len(over), checked, bad, worst * 100,
      rates[-1] if rates else 0))
EOF
)
sk_diag "$verdict"
sk_diag "samples (s done total rate eta state): $(awk '{printf "%s/%d%%/%s ", $1, $3 ? 100*$2/$3 : 0, $5}' "$SAMPLES")"
summary=$(tail -n1 <<<"$verdict")
get() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" <<<"$summary"; }
if [ "$(get over)" = 0 ]; then sk_ok "done never passed total"; else sk_not_ok "done never passed total"; fi
if [ "$(get checked)" -ge 3 ] && [ "$(get bad)" = 0 ]; then
	sk_ok "every ETA between 10 % and 75 % done is within 25 % of the real remaining time ($(get checked) samples)"
else
	sk_not_ok "every ETA between 10 % and 75 % done is within 25 % of the real remaining time"
	sk_diag "$(head -c 2000 "$SAMPLES")"
fi
rate=$(get rate_last)
if [ "${rate:-0}" -gt $((RATE_MB * 1048576 / 2)) ] && [ "${rate:-0}" -lt $((RATE_MB * 1048576 * 2)) ]; then
	sk_ok "the rate shown ($rate B/s) is the pace asked ($RATE_MB MB/s) within a factor of 2"
else
	sk_not_ok "the rate shown (${rate:-none} B/s) is the pace asked ($RATE_MB MB/s) within a factor of 2"
fi
sec_adopted() { [ "$(mt_st 2 gen.current)" = 6 ] && grep -q '^gen_current=6$' "${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG/state"; }
if [ "$(mt_st 1 gen.current)" = 6 ] && mt_wait_until 5 sec_adopted; then
	sk_ok "migrated primary (6) was newer than the migrated secondary (5): resynced, which took generation 6"
else
	sk_not_ok "migrated primary (6) newer than the secondary (5): resynced, secondary takes 6 (now $(mt_st 1 gen.current) / $(mt_st 2 gen.current))"
fi
if diff -r "$MT_DIR1" "$MT_DIR2" >/dev/null; then sk_ok "trees equal after the paced resync"; else sk_not_ok "trees equal after the paced resync"; fi
sk_done
