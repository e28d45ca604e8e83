#!/bin/bash
# Self-test of the cluster harness (lib.sh): topology, isolation, faults, signals, cleanup (TAP).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

reach() { # reach A B: node/client A pings B's address once
	local dst
	if [ "$2" = c ]; then dst=$SK_CLIENT_IP; else dst=${SK_IP[$2]}; fi
	sk_in "$1" ping -n -q -c 1 -W 1 "$dst"
}
unreach() { ! reach "$@"; }
reach_both() { reach "$1" "$2" && reach "$1" "$3"; }
not() { ! "$@"; }

# rtt_ms A B: integer RTT of one ping, empty on loss
rtt_ms() {
	sk_in "$1" ping -n -c 1 -W 2 "${SK_IP[$2]}" 2>/dev/null |
		sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | cut -d. -f1
}
rtt_above() { local r; r=$(rtt_ms "$1" "$2"); [ -n "$r" ] && [ "$r" -ge "$3" ]; }
rtt_below() { local r; r=$(rtt_ms "$1" "$2"); [ -n "$r" ] && [ "$r" -lt "$3" ]; }

# leftovers PFX TMP PID...: prints whatever of a run still exists (namespaces, dir, processes)
leftovers() {
	local pfx=$1 tmp=$2 p
	shift 2
	ip netns list | awk '{ print $1 }' | grep -E "^${pfx}(br|c|n[0-9]+)$" | sed 's/^/netns /'
	[ -n "$tmp" ] && [ -e "$tmp" ] && echo "dir $tmp"
	[ -n "$tmp" ] && grep -s " $tmp" /proc/self/mountinfo | sed 's/^/mount /'
	for p in "$@"; do
		# a zombie is dead; this VM's init does not reap orphans
		[ -e "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && echo "process $p"
	done
	return 0
}
nothing_left() { local l; l=$(leftovers "$@"); [ -z "$l" ] || { echo "$l"; return 1; }; }

# --- sub-test: a script that fails right after init leaves nothing behind -------------
child_out=$(bash -c '
	source "$1"
	sk_cluster_init 2 || exit 9
	echo "PFX=$SK_PFX TMP=$SK_TMP"
	echo "PIDS $(sk_spawn 1 sleeper sleep 1000) $(sk_in 2 sh -c "sleep 1000 >/dev/null 2>&1 & echo \$!")"
	exit 3' child "$here/lib.sh" 2>&1)
child_rc=$?
child_pfx=$(sed -n 's/^PFX=\([^ ]*\) .*/\1/p' <<<"$child_out")
child_tmp=$(sed -n 's/.* TMP=\(.*\)$/\1/p' <<<"$child_out")
child_pids=$(sed -n 's/^PIDS //p' <<<"$child_out")
if [ "$child_rc" = 3 ]; then sk_ok "failing child keeps its exit status 3"
else sk_not_ok "failing child keeps its exit status 3"; sk_diag "rc=$child_rc: $child_out"; fi
if [ -n "$child_pfx" ] && [ -n "$child_tmp" ]; then
	sk_check "failing child left nothing behind" nothing_left "$child_pfx" "$child_tmp" $child_pids
else
	sk_not_ok "failing child left nothing behind"; sk_diag "child said: $child_out"
fi

sk_check "failing child reported the PIDs it started" test "$(wc -w <<<"$child_pids")" = 2

# --- sub-test: SIGTERM to a test cleans up too (stopped daemon included) -----------------
term_out=$(bash -c '
	source "$1"
	sk_cluster_init 2 || exit 9
	echo "PFX=$SK_PFX TMP=$SK_TMP"
	p=$(sk_spawn 2 sleeper sleep 1000) && sk_sigstop "$p"
	echo "PIDS $p"
	kill -TERM $$
	sleep 5
	exit 0' child "$here/lib.sh" 2>&1)
term_rc=$?
term_pfx=$(sed -n 's/^PFX=\([^ ]*\) .*/\1/p' <<<"$term_out")
term_tmp=$(sed -n 's/.* TMP=\(.*\)$/\1/p' <<<"$term_out")
term_pids=$(sed -n 's/^PIDS //p' <<<"$term_out")
sk_check "SIGTERM: exit status 143" test "$term_rc" = 143
sk_check "SIGTERM: nothing left behind" nothing_left "${term_pfx:-unset}" "$term_tmp" $term_pids

# --- sub-test: the API works for a caller running with set -euo pipefail --------------------
strict_out=$(bash -c '
	set -euo pipefail
	source "$1"
	sk_cluster_init 2 --client
	p=$(sk_spawn 1 sleeper sleep 1000)
	sk_partition 1 2; sk_heal 1 2; sk_heal 1 2
	sk_netem_clear 1; sk_link_down 2; sk_link_up 2
	sk_wait_for 5 sk_in 2 ping -c 1 -W 1 "${SK_IP[1]}"
	sk_sigstop "$p"; sk_sigcont "$p"; sk_term "$p"
	sk_cleanup; sk_cleanup
	echo strict-done' child "$here/lib.sh" 2>&1)
strict_rc=$?
if [ "$strict_rc" = 0 ] && [[ "$strict_out" == *strict-done* ]]; then sk_ok "API works under set -euo pipefail"
else sk_not_ok "API works under set -euo pipefail"; sk_diag "rc=$strict_rc: $strict_out"; fi

# --- sub-test: SK_KEEP=1 keeps SK_TMP but still removes namespaces and processes --------
keep_out=$(SK_KEEP=1 bash -c '
	source "$1"
	sk_cluster_init 1 || exit 9
	echo "PFX=$SK_PFX TMP=$SK_TMP"
	echo "PIDS $(sk_spawn 1 sleeper sleep 1000)"
	exit 0' child "$here/lib.sh" 2>/dev/null)
keep_pfx=$(sed -n 's/^PFX=\([^ ]*\) .*/\1/p' <<<"$keep_out")
keep_tmp=$(sed -n 's/.* TMP=\(.*\)$/\1/p' <<<"$keep_out")
keep_pids=$(sed -n 's/^PIDS //p' <<<"$keep_out")
kept() { [ -n "$keep_tmp" ] && [ -f "$keep_tmp/sleeper.log" ] && ! nothing_left "$keep_pfx" "$keep_tmp" $keep_pids >/dev/null; }
sk_check "SK_KEEP=1 keeps SK_TMP (and the leftover check notices it)" kept
sk_check "SK_KEEP=1 still removes namespaces and processes" nothing_left "$keep_pfx" "" $keep_pids
case $keep_tmp in /tmp/sk*) rm -rf --one-file-system -- "$keep_tmp" ;; esac

# --- main topology ----------------------------------------------------------
if ! sk_cluster_init 3 --client; then
	sk_not_ok "sk_cluster_init 3 --client"
	sk_done
fi
sk_ok "sk_cluster_init 3 --client (prefix $SK_PFX)"

sk_check "names fit IFNAMSIZ/netns limits" test "${#SK_NS[3]}" -le 15 -a "${#SK_CLIENT_NS}" -le 15
sk_check "node roots exist" test -d "${SK_ROOT[2]}/etc/steadykit" -a -d "${SK_ROOT[2]}/var/lib/steadykit" \
	-a -d "${SK_ROOT[2]}/run/steadykit"
sk_check "node 2 has ${SK_IP[2]}/24 on eth0" sh -c "ip -n ${SK_NS[2]} -o -4 addr show dev eth0 | grep -q ' ${SK_IP[2]}/24 '"

fails=""
for a in 1 2 3 c; do
	for b in 1 2 3 c; do
		[ "$a" = "$b" ] && continue
		reach "$a" "$b" >/dev/null 2>&1 || fails+=" $a->$b"
	done
done
if [ -z "$fails" ]; then sk_ok "every node and the client reach each other"
else sk_not_ok "every node and the client reach each other"; sk_diag "unreachable:$fails"; fi

# isolation, without sending anything outside: routes and addresses only
sk_check "host has no address in $SK_NET.0/24" sh -c "[ -z \"\$(ip -o -4 addr show to $SK_NET.0/24)\" ]"
sk_check "host has no route to $SK_NET.0/24" sh -c "[ -z \"\$(ip -4 route show to match $SK_NET.1 | grep -v '^default')\" ]"
sk_check "host has no interface of the run" sh -c "! ip -o link show | grep -q ' 02:99:00:00:00:0[1-3] '"
sk_check "node 1 has no default route" sh -c "[ -z \"\$(ip -n ${SK_NS[1]} route show default)\" ]"
sk_check "node 1 has no route outside the test net" sh -c "! ip -n ${SK_NS[1]} route get 192.0.2.1 >/dev/null 2>&1"

# --- partition ----------------------------------------------------------------------
sk_check "sk_partition 1 2" sk_partition 1 2
sk_check "partition: 1 cannot reach 2" unreach 1 2
sk_check "partition: 2 cannot reach 1" unreach 2 1
sk_check "partition: 1 reaches 3" reach 1 3
sk_check "partition: 2 reaches 3" reach 2 3
sk_check "partition: client reaches 1 and 2" reach_both c 1 2
sk_check "sk_heal 1 2" sk_heal 1 2
sk_check "healed: 1 reaches 2" sk_wait_for 3 reach 1 2
sk_check "healed: 2 reaches 1" reach 2 1

# --- link down/up --------------------------------------------------------------------
sk_check "sk_link_down 3" sk_link_down 3
sk_check "link down: 1 cannot reach 3" unreach 1 3
sk_check "link down: 1 still reaches 2" reach 1 2
sk_check "sk_link_up 3" sk_link_up 3
sk_check "link up: 1 reaches 3 again" sk_wait_for 5 reach 1 3
sk_check "sk_link_down 3 --eth0" sk_link_down 3 --eth0
sk_check "eth0 down: 3 cannot reach 1" unreach 3 1
sk_check "sk_link_up 3 (eth0)" sk_link_up 3
sk_check "eth0 up: 3 reaches 1 again" sk_wait_for 5 reach 3 1

# --- netem ------------------------------------------------------------------------------
if sk_have_netem; then
	sk_check "sk_netem 2 'delay 100ms'" sk_netem 2 "delay 100ms"
	sk_check "delay: RTT 1->2 at least 100 ms" rtt_above 1 2 100
	sk_check "sk_netem_clear 2" sk_netem_clear 2
	sk_check "cleared: RTT 1->2 below 50 ms" sk_wait_for 3 rtt_below 1 2 50
else
	sk_diag "kernel has no sch_netem: delay is not available on this machine"
	sk_skip "netem delay raises RTT above 100 ms" "kernel has no sch_netem"
	if sk_netem 2 "delay 100ms" 2>/dev/null; then rc=0; else rc=$?; fi
	sk_check "without sch_netem a delay request returns 2" test "$rc" = 2
fi
sk_check "sk_netem 2 'loss 100%'" sk_netem 2 "loss 100%"
sk_check "loss 100%: 1 cannot reach 2" unreach 1 2
sk_check "sk_netem_clear 2 (loss)" sk_netem_clear 2
sk_check "loss cleared: 1 reaches 2" sk_wait_for 3 reach 1 2

# --- processes ---------------------------------------------------------------------------
pid=$(sk_spawn 1 sleeper sleep 1000)
sk_check "sk_spawn prints the PID of the command itself" sh -c "[ \"\$(cat /proc/$pid/comm)\" = sleep ]"
sk_check "spawned process is in node 1's netns" \
	sh -c "[ \"\$(readlink /proc/$pid/ns/net)\" = \"\$(ip netns exec ${SK_NS[1]} readlink /proc/self/ns/net)\" ]"
sk_check "spawned process is in the host mount namespace" \
	sh -c "[ \"\$(readlink /proc/$pid/ns/mnt)\" = \"\$(readlink /proc/self/ns/mnt)\" ]"
sk_check "sk_sigstop" sk_sigstop "$pid"
sk_check "stopped: state T" sk_wait_for 3 sh -c "[ \"\$(cut -d')' -f2 /proc/$pid/stat | cut -d' ' -f2)\" = T ]"
sk_check "sk_sigcont" sk_sigcont "$pid"
sk_check "continued: state S" sk_wait_for 3 sh -c "[ \"\$(cut -d')' -f2 /proc/$pid/stat | cut -d' ' -f2)\" = S ]"
sk_check "sk_kill9" sk_kill9 "$pid"
sk_check "killed: gone or zombie" sk_wait_for 3 sh -c "! [ -e /proc/$pid ] || [ \"\$(cut -d')' -f2 /proc/$pid/stat | cut -d' ' -f2)\" = Z ]"
sk_check "signals refuse a dead recorded PID" not sk_kill9 "$pid"
sk_check "signals refuse a PID not spawned by the harness" not sk_term "$$"

# processes and mounts that cleanup must remove
pid2=$(sk_spawn 2 stopped sleep 1000) && sk_sigstop "$pid2"
pid3=$(sk_in 3 sh -c 'sleep 1000 >/dev/null 2>&1 & echo $!')
mnt=$SK_TMP/mnt
mkdir -p "$mnt" && mount -t tmpfs sktest "$mnt" && sk_track_mount "$mnt"
sk_check "a tmpfs is mounted and tracked" mountpoint -q "$mnt"
spawn_log() { sk_spawn 1 hello echo hi-there >/dev/null && sk_wait_for 3 grep -q hi-there "$SK_TMP/hello.log"; }
sk_check "output of a spawned command goes to \$SK_TMP/name.log" spawn_log

pfx=$SK_PFX tmp=$SK_TMP
sk_cleanup
sk_check "after sk_cleanup nothing is left (netns, processes, dir)" nothing_left "$pfx" "$tmp" "$pid2" "$pid3"
sk_check "stopped spawned process was killed" sh -c "! [ -e /proc/$pid2 ] || grep -q '^State:.*Z' /proc/$pid2/status"
sk_check "tracked mount is gone" sh -c "! grep -q ' $mnt ' /proc/self/mountinfo"
sk_check "sk_cleanup is idempotent" sk_cleanup

sk_done
