#!/usr/bin/env bash
# mirror_forge: forged, corrupted, truncated and replayed frames sent to the secondary are refused,
# counted (status rejected_frames) and change nothing; a genuine primary keeps replicating
# (issue 4 item 7, invariants 6 and 7). frameforge runs in the client namespace.
# Issue 9: a recorded HELLO replayed (A3) never displaces the live primary, a frame with a
# missing seq (A2) is refused, an encryption mismatch (A7) is refused with a clear error on both
# sides, and a pair started with --no-encrypt on both sides replicates (MAC only).
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init --client
FF=$MT_TOOLS/frameforge
TO=${SK_IP[2]}:$MT_PORT
PROBE=forge-probe-$$

mt_start_secondary || mt_bail "secondary did not start"

# Control: frames built by frameforge are well formed, so a refusal below is due to the forgery.
if out=$(sk_client "$FF" --to "$TO" --secret "$MT_SECRET" --case control --path "$PROBE" 2>&1); then
	sk_ok "control: genuine frames from frameforge are applied and acked"
else
	sk_not_ok "control: genuine frames from frameforge are applied and acked"
fi
sk_diag "$out"
if [ ! -e "$MT_DIR2/$PROBE" ]; then sk_ok "control: probe dir created and removed again"; else sk_not_ok "control: probe dir created and removed again"; fi

# sniff SECONDS OUT: every frame node 2's eth0 sees for SECONDS (raw AF_PACKET), appended to OUT;
# OUT.ready appears once it listens
sniff() {
	sk_in 2 timeout $(($1 + 5)) "$MT_PY" -c '
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
s.settimeout(0.2)
end = time.time() + float(sys.argv[1])
open(sys.argv[2] + ".ready", "w").close()
with open(sys.argv[2], "ab") as out:
    while time.time() < end:
        try:
            out.write(s.recv(65536))
        except socket.timeout:
            pass
' "$1" "$2"
}
# wire_test LABEL FILE MARKER yes|no: write 2000 lines of MARKER (~70 KB) into FILE on the primary
# while sniffing node 2; the marker must (yes) or must not (no) be readable on the wire. "no" also
# wants the file replicated and more bytes captured than the file holds, so it cannot pass because
# the sniffer missed the stream.
wire_test() {
	local cap=$SK_TMP/wire.$RANDOM spid n size
	sniff 6 "$cap" 2>"$cap.err" &
	spid=$!
	mt_wait_until 10 test -e "$cap.ready" || sk_diag "sniffer not ready: $(cat "$cap.err")"
	yes "$3" | head -n 2000 >"$2"
	mt_wait_synced 10 || sk_diag "not in sync after writing $2"
	wait "$spid"
	n=$(grep -c -a -F "$3" "$cap" 2>/dev/null)
	size=$(stat -c %s "$cap" 2>/dev/null || echo 0)
	if [ "$4" = no ] && [ "$size" -gt "$(stat -c %s "$2")" ] && [ "${n:-0}" = 0 ] &&
		cmp -s "$2" "$MT_DIR2/${2#"$MT_DIR1"/}"; then
		sk_ok "$1: file content replicated but not readable on the wire ($size bytes captured)"
	elif [ "$4" = yes ] && [ "${n:-0}" -gt 0 ]; then
		sk_ok "$1: the sniffer does see a MAC-only stream's content ($n hits)"
	else
		sk_not_ok "$1: content on the wire: ${n:-?} hits (want $( [ "$4" = yes ] && echo some || echo none)), capture $(stat -c %s "$cap" 2>/dev/null) bytes"
		sk_diag "$(cat "$cap.err" 2>/dev/null)"
	fi
}

mt_start_primary || mt_bail "primary did not start"
if mt_wait_until 10 mt_peer_is connected; then sk_ok "genuine primary connected"; else sk_not_ok "genuine primary connected"; fi
mkdir -p "$MT_DIR1/app" && for i in $(seq 20); do echo "before $i" >"$MT_DIR1/app/f$i"; done
mt_wait_synced 20 || sk_diag "not in sync before the attack"
if grep -qE "connected to peer node .*\(stream (aes-256-gcm|chacha20-poly1305)\)" "$SK_TMP/fused1.$MT_N1.log"; then
	sk_ok "the primary logs an encrypted stream by default"
else
	sk_not_ok "the primary logs an encrypted stream by default"
fi
wire_test "encrypted stream" "$MT_DIR1/app/secret-$$" "CONFIDENTIAL-PAYROLL-$$-$RANDOM" no

snap() { (cd "$MT_DIR2" && find . -printf '%p %y %m %U:%G %s %n %l\n' | sort && find . -type f -exec sha256sum {} + | sort); }

snap >"$SK_TMP/before.snap"
rej0=$(mt_st 2 rejected_frames)
sk_diag "secondary rejected_frames before: ${rej0:-?}"

# forge CASE: one TAP line; the secondary must close the connection.
forge() {
	local out
	if out=$(sk_client "$FF" --to "$TO" --secret "$MT_SECRET" --case "$1" --path "$PROBE" 2>&1); then
		sk_ok "forged frame '$1' refused"
	else
		sk_not_ok "forged frame '$1' refused"
	fi
	sk_diag "$out"
}
# connections the primary made so far (each one starts a resync)
conns1() { grep -c "connected to peer node" "$SK_TMP/fused1.$MT_N1.log" 2>/dev/null; }

# Phase 1, no secret: these must not even disturb the genuine primary's stream
# (seq_sent counts frames of the current connection and resets on reconnect). replay-hello
# replays the HELLO, FIN and first frame of a recorded genuine session, which anyone on the path has.
seq_before=$(mt_st 1 seq_sent)
conn_before=$(conns1)
for c in garbage wrongkey hs-truncated silent replay-hello replay-hello-silent; do
	forge "$c"
done
sleep 1.5 # the primary reconnects every second: give a dropped stream time to show
seq_after=$(mt_st 1 seq_sent)
if [ -n "$seq_before" ] && [ "$seq_before" = "$seq_after" ] && mt_peer_is connected; then
	sk_ok "unauthenticated connections leave the genuine primary's stream alone (seq_sent $seq_before)"
else
	sk_not_ok "unauthenticated connections leave the genuine primary's stream alone (seq_sent $seq_before -> $seq_after, peer $(mt_st 1 peer))"
fi
conn_after=$(conns1)
if [ -n "$conn_before" ] && [ "$conn_before" = "$conn_after" ] && [ "$(mt_st 2 peer)" = connected ]; then
	sk_ok "a replayed HELLO did not displace the live primary (no reconnect, no resync; secondary connected)"
else
	sk_not_ok "a replayed HELLO did not displace the live primary (primary connections $conn_before -> $conn_after, secondary peer $(mt_st 2 peer))"
fi
# Phase 2, with the secret (framing robustness): each is refused and counted. Each case's genuine
# session displaces the primary's; the primary is stopped meanwhile so its reconnects cannot in
# turn displace a case's session before its forged frame was read (and counted).
sk_sigstop "$MT_PID1"
for c in badversion badtype unknown-type oversized flip flipmac replay-seq replay-conn badpath abspath \
	wrongmodule truncated seq-gap mismatch; do
	forge "$c"
done
counted=16 # all but hs-truncated, silent, replay-hello-silent and truncated (EOF or timeout is not a refused frame)
if grep -q "encryption setting differs" "$SK_TMP/fused2.1.log"; then
	sk_ok "the secondary says why a MAC-only peer was refused"
else
	sk_not_ok "the secondary says why a MAC-only peer was refused"
fi

rej1=$(mt_st 2 rejected_frames)
if [ -n "$rej0" ] && [ -n "$rej1" ] && [ $((rej1 - rej0)) -ge "$counted" ]; then
	sk_ok "secondary counted the refused frames ($((rej1 - rej0)) >= $counted)"
else
	sk_not_ok "secondary counted the refused frames (before ${rej0:-?}, after ${rej1:-?}, want +$counted)"
fi
snap >"$SK_TMP/after.snap"
if cmp -s "$SK_TMP/before.snap" "$SK_TMP/after.snap"; then
	sk_ok "secondary tree unchanged by the forged frames"
else
	sk_not_ok "secondary tree unchanged by the forged frames"
	sk_diag "$(diff "$SK_TMP/before.snap" "$SK_TMP/after.snap" | head -n 10)"
fi
if [ ! -e "${SK_ROOT[2]}/$PROBE" ] && [ ! -e "/tmp/$PROBE" ]; then
	sk_ok "nothing created outside the replicated directory"
else
	sk_not_ok "nothing created outside the replicated directory"
fi
if sk_alive "$MT_PID2"; then sk_ok "secondary still running"; else sk_not_ok "secondary still running"; fi
sk_sigcont "$MT_PID1"

# The genuine primary still replicates (it may have had to reconnect).
for i in $(seq 20); do echo "after $i" >>"$MT_DIR1/app/f$i"; done
mkdir "$MT_DIR1/app/after"
if mt_wait_synced 30; then sk_ok "genuine primary in sync after the attack"; else sk_not_ok "genuine primary in sync after the attack"; fi
mt_treecmp_tap "primary backing vs secondary" none "$MT_BACK1" "$MT_DIR2" entries type mode owner size content

# Phase 3: while someone holds many silent connections to the port (no secret needed), a genuine
# primary that restarts must still get in.
fpid=$(sk_spawn_client forge-flood "$FF" --to "$TO" --secret "$MT_SECRET" --case flood --conns 64 --wait-ms 20000)
sleep 1
mt_stop_primary
mt_start_primary || sk_diag "primary restart failed"
if mt_wait_until 12 mt_peer_is connected; then
	sk_ok "a restarted primary connects despite 64 silent connections held open"
else
	sk_not_ok "a restarted primary connects despite 64 silent connections held open (peer $(mt_st 1 peer))"
	sk_diag "secondary log: $(tail -n 5 "$SK_TMP/fused2.1.log")"
fi
echo flood >"$MT_DIR1/app/during-flood"
if mt_wait_synced 10; then sk_ok "replicating during the flood"; else sk_not_ok "replicating during the flood"; fi
sk_alive "$fpid" && sk_term "$fpid"
sk_diag "$(cat "$SK_TMP/forge-flood.log" 2>/dev/null)"
mt_stop_primary

# Phase 4: "encrypt": false is a choice both nodes make. A MAC-only secondary refuses an encrypted
# primary, both saying why; then MAC-only on both sides replicates.
mt_instance plain 7412
TO=${SK_IP[2]}:$MT_PORT
mt_start_secondary --no-encrypt || mt_bail "MAC-only secondary did not start"
mt_start_primary || mt_bail "primary (encrypted) did not start"
if mt_wait_until 10 grep -q "encryption setting differs" "$SK_TMP/fused1.$MT_N1.log" &&
	grep -q "encryption setting differs" "$SK_TMP/fused2.$MT_N2.log" && ! mt_peer_is connected; then
	sk_ok "encrypted primary and MAC-only secondary refuse each other, both logs say why"
else
	sk_not_ok "encrypted primary and MAC-only secondary refuse each other, both logs say why (peer $(mt_st 1 peer))"
	sk_diag "$(tail -n 3 "$SK_TMP/fused1.$MT_N1.log")"
fi
mt_stop_primary
if out=$(sk_client "$FF" --to "$TO" --secret "$MT_SECRET" --case control --plain --path "$PROBE" 2>&1); then
	sk_ok "MAC-only frames from frameforge --plain are applied and acked by a --no-encrypt secondary"
else
	sk_not_ok "MAC-only frames from frameforge --plain are applied and acked by a --no-encrypt secondary"
fi
sk_diag "$out"
forge_plain() {
	if out=$(sk_client "$FF" --to "$TO" --secret "$MT_SECRET" --case "$1" --plain --path "$PROBE" 2>&1); then
		sk_ok "MAC-only: forged frame '$1' refused"
	else
		sk_not_ok "MAC-only: forged frame '$1' refused"
	fi
	sk_diag "$out"
}
for c in flip seq-gap replay-hello mismatch; do
	forge_plain "$c"
done
mt_start_primary --no-encrypt || mt_bail "MAC-only primary did not start"
mkdir -p "$MT_DIR1/app" && echo plain >"$MT_DIR1/app/plain"
if mt_wait_synced 20; then sk_ok "MAC-only primary and secondary replicate"; else sk_not_ok "MAC-only primary and secondary replicate"; fi
if grep -q "connected to peer node .*(stream mac-only)" "$SK_TMP/fused1.$MT_N1.log"; then
	sk_ok "the primary logs a MAC-only stream"
else
	sk_not_ok "the primary logs a MAC-only stream"
fi
wire_test "MAC-only stream" "$MT_DIR1/app/public-$$" "PUBLIC-ANNOUNCEMENT-$$-$RANDOM" yes
mt_treecmp_tap "MAC-only: primary backing vs secondary" none "$MT_BACK1" "$MT_DIR2" entries type mode size content
mt_stop_primary
sk_done
