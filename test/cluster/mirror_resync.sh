#!/usr/bin/env bash
# mirror_resync: a secondary that was away while the tree changed in every way is brought back to an
# identical tree by the online resync, which sends only what differs (issue 4 item 4), and the
# primary remembers across its own restart that the peer is outdated (state is persistent).
set -u
source "$SK_SRC/test/cluster/mirror_common.sh"
mt_init

mt_start_secondary || mt_bail "secondary did not start"
mt_start_primary || mt_bail "primary did not start"
mt_wait_until 10 mt_peer_is connected || sk_diag "peer not connected: $(mt_status 1)"

D=$MT_DIR1
# A tree with a bit of everything.
dd if=/dev/urandom of="$D/big" bs=1M count=64 status=none
mkdir -p "$D/dir/sub" "$D/keep" "$D/old"
for i in $(seq 200); do echo "small file $i" >"$D/keep/f$i"; done
for i in $(seq 20); do echo "old $i" >"$D/old/o$i"; done
ln "$D/keep/f1" "$D/dir/hl1"
ln -s ../keep/f2 "$D/dir/sl"
setfattr -n user.color -v blue "$D/keep/f3"
setfacl -m u:1234:rw "$D/keep/f4"
echo trunc-me-please >"$D/trunc"
echo "was a file" >"$D/becomes_dir"
if mt_wait_synced 30; then sk_ok "initial tree replicated"; else sk_not_ok "initial tree replicated"; fi

# The secondary goes away; the tree changes in every way while the primary is alone.
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'"
mt_wait_until 5 bash -c "[ \"\$(echo '{\"cmd\":\"status\"}' | nc -U -N '$MT_CTL1' | grep -o '\"peer\":\"[a-z]*\"')\" != '\"peer\":\"connected\"' ]"
printf 'CHANGED-BLOCK' | dd of="$D/big" bs=1 seek=$((32 << 20)) conv=notrunc status=none
echo appended >>"$D/keep/f5"
truncate -s 4 "$D/trunc"
rm -f "$D"/keep/f1{0..5}{0..9}
rm -rf "$D/old"
mv "$D/dir/sub" "$D/dir/sub-renamed"
ln "$D/keep/f6" "$D/keep/f6-link"
setfattr -n user.color -v red "$D/keep/f3"
setfattr -n user.new -v 1 "$D/keep/f7"
setfacl -m u:4321:r "$D/keep/f4"
chmod 0600 "$D/keep/f8"
chown 1234:1234 "$D/keep/f9"
rm "$D/becomes_dir" && mkdir "$D/becomes_dir" && echo inside >"$D/becomes_dir/x"
ln -sfn ../keep/f3 "$D/dir/sl"
touch -d '2001-02-03 04:05:06.123456789' "$D/keep/f2"
for i in $(seq 30); do echo "new $i" >"$D/dir/new$i"; done
sk_diag "primary status while alone: $(mt_status 1)"

# The primary itself restarts while the peer is away: it must still know the peer is outdated,
# and its persisted facts (in sync or not, generations) must be the ones it had before, not a fresh start's.
st_file=${SK_ROOT[1]}/var/lib/steadykit/state-$MT_TAG/state
st_facts() { grep -v -e '^role=' -e '^ro_mounted=' "$st_file" 2>/dev/null | sort; }
facts_before=$(st_facts)
mt_stop_primary
mt_start_primary || mt_bail "primary restart failed"
if [ -n "$facts_before" ] && [ "$(st_facts)" = "$facts_before" ]; then
	sk_ok "the primary's persisted state survives its restart unchanged"
else
	sk_not_ok "the primary's persisted state survives its restart unchanged"
	sk_diag "before: $facts_before"
	sk_diag "after:  $(st_facts)"
fi
sk_diag "primary state after its restart: $(tr '\n' ' ' <"${SK_ROOT[1]}/var/lib/steadykit/state-$MT_TAG/state" 2>/dev/null)"
if [ "$(mt_st 1 peer)" = outdated ] && [ "$(mt_st 1 peer_in_sync)" = false ]; then
	sk_ok "the restarted primary still marks the absent peer outdated"
else
	sk_not_ok "the restarted primary still marks the absent peer outdated (peer $(mt_st 1 peer), peer_in_sync $(mt_st 1 peer_in_sync))"
fi

rx() { sk_in 2 ip -s -j link show dev eth0 | "$MT_PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["bytes"])'; }
rx0=$(rx)
mt_start_secondary || mt_bail "secondary restart failed"
if mt_wait_synced 60; then sk_ok "resync finished: peer connected and in sync"; else sk_not_ok "resync finished: peer connected and in sync"; fi
rx1=$(rx)
moved=$(( (rx1 - rx0) / 1024 ))
# 64 MiB big file + ~1 MiB of small files exist; only one 64 KiB block of big changed.
if [ "$moved" -lt 8192 ]; then
	sk_ok "resync moved ${moved} KiB to the secondary (< 8 MiB: only differing blocks, not the 64 MiB file)"
else
	sk_not_ok "resync moved ${moved} KiB to the secondary (< 8 MiB: only differing blocks, not the 64 MiB file)"
fi
echo "keep/f2" >"$SK_TMP/times.list"
mt_treecmp_tap "after resync: primary backing vs secondary" "$SK_TMP/times.list" "$MT_BACK1" "$MT_DIR2"

# A directory an administrator mounted in the secondary's tree, where the primary has no such
# name: the resync removes the strays around it but never enters it (as rm --one-file-system);
# it says so, counts it, and still ends. A plain stray directory beside it is removed.
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'"
not_connected() { ! mt_peer_is connected; }
mt_wait_until 10 not_connected || sk_diag "the primary still says connected"
mkdir -p "$MT_DIR2/mnt" "$MT_DIR2/stray/deep" && echo x >"$MT_DIR2/stray/deep/f" || mt_bail "strays"
sk_track_mount "$MT_DIR2/mnt"
# a bind mount of a directory of the same file system: its device number is the tree's own
mkdir -p "$SK_TMP/bound" && echo precious >"$SK_TMP/bound/keep-me"
mount --bind "$SK_TMP/bound" "$MT_DIR2/mnt" || mt_bail "bind mount in the secondary's tree"
echo new >"$D/after-mount" # the root's names change: the resync lists it
mt_start_secondary || mt_bail "secondary restart (mount in its tree) failed"
if mt_wait_synced 60; then sk_ok "mount in the secondary's tree: the resync still ends"; else sk_not_ok "mount in the secondary's tree: the resync still ends"; fi
left=$(mt_st 2 resync_mounts_left)
sk_check "... the mount left in place is counted (resync_mounts_left $left)" test "${left:-0}" -ge 1
sk_check "... and said in the secondary's log" grep -q 'is not removed: a file system is mounted there' "$SK_TMP/fused2.$MT_N2.log"
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'"
sk_check "... what the mount holds is untouched" grep -qx precious "$SK_TMP/bound/keep-me"
sk_check "... the plain stray directory beside it is removed" test ! -e "$MT_DIR2/stray"
umount "$MT_DIR2/mnt" && rmdir "$MT_DIR2/mnt"
mt_stop_primary
sk_done
