#!/usr/bin/env bash
# test/cluster/agent_notify.sh: skagentd speaks systemd's notify protocol (its unit is Type=notify
# with WatchdogSec): READY=1 once it serves, WATCHDOG=1 at half the watchdog interval from its
# loop, none while the loop is stopped, STOPPING=1 at SIGTERM. A datagram socket stands in for systemd.
set -uo pipefail
source "$SK_SRC/test/cluster/agent_common.sh"

at_init
SOCK=$SK_TMP/notify.sock
LOG=$SK_TMP/notify.log
# the listener: one line per datagram, "<monotonic ms> <message>", for at most 60 s
LPID=$(sk_spawn 1 notify-listener python3 -c '
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(0.5)
end = time.monotonic() + 60
with open(sys.argv[2], "a", buffering=1) as out:
    while time.monotonic() < end:
        try:
            m = s.recv(4096).decode(errors="replace").replace("\n", " ")
        except socket.timeout:
            continue
        out.write("%d %s\n" % (time.monotonic() * 1000, m))
' "$SOCK" "$LOG") || at_bail "listener"
sk_wait_for 5 test -S "$SOCK" || at_bail "listener socket"

export NOTIFY_SOCKET=$SOCK WATCHDOG_USEC=400000
at_start 1 || at_bail "agent 1"
unset NOTIFY_SOCKET WATCHDOG_USEC
sk_check "READY=1 once the agent serves" sk_wait_for 10 grep -q 'READY=1' "$LOG"
sk_check "the control socket answers when READY=1 was sent" at_ctl 1 state
sleep 1.5
n=$(grep -c 'WATCHDOG=1' "$LOG")
sk_check "WATCHDOG=1 every ~200 ms for WatchdogSec=400ms ($n in 1.5 s)" test "$n" -ge 5

# a stopped loop sends nothing: systemd's watchdog would then restart the agent
sk_sigstop "${AT_AGENT_PID[1]}"
before=$(grep -c 'WATCHDOG=1' "$LOG")
sleep 1
after=$(grep -c 'WATCHDOG=1' "$LOG")
sk_sigcont "${AT_AGENT_PID[1]}"
sk_check "no WATCHDOG=1 while the agent is stopped ($before -> $after)" test "$after" -le "$((before + 1))"
sk_check "pings resume after SIGCONT" sk_wait_for 3 bash -c '[ "$(grep -c WATCHDOG=1 "$1")" -gt "$2" ]' _ "$LOG" "$after"

sk_term "${AT_AGENT_PID[1]}"
sk_check "STOPPING=1 at SIGTERM" sk_wait_for 10 grep -q 'STOPPING=1' "$LOG"
agent_gone() { ! sk_alive "${AT_AGENT_PID[1]}"; }
sk_check "the agent exits" sk_wait_for 20 agent_gone
sk_term "$LPID"
sk_done
