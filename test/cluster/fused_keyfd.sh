#!/usr/bin/env bash
# test/cluster/fused_keyfd.sh: skfused --key-fd (the derived master key from an inherited fd, as the
# agent passes it so a restart costs no key derivation): a pair with one side on --key-fd replicates;
# a key of the wrong length, a wrong key and an ambiguous command line are refused with what is wrong.
# shellcheck disable=SC2317
set -uo pipefail
source "$SK_SRC/test/cluster/mirror_common.sh"

mt_init
KEY=$SK_TMP/key
(umask 077 && "$MT_TOOLS/derivekey" "$MT_SECRET" >"$KEY") || mt_bail "derivekey"
sk_check "the derived key is 32 bytes" test "$(stat -c %s "$KEY")" = 32

# run skfused with fd 3 open on FILE (foreground, bounded): prints its exit status and stderr
fused_fd3() {
	local file=$1
	shift
	timeout 10 "$MT_FUSED" "$@" 3<"$file" 2>&1
	echo "exit=$?"
}

out=$(fused_fd3 "$KEY" --role secondary --dir "$MT_DIR2" --listen 127.0.0.1:1 --secret "$MT_SECRET" --key-fd 3)
sk_check "--secret and --key-fd together: usage error naming both" \
	bash -c '[[ "$1" == *"one of --secret or --key-fd"* && "$1" == *exit=2 ]]' _ "$out"
head -c 31 "$KEY" >"$SK_TMP/short"
out=$(fused_fd3 "$SK_TMP/short" --role secondary --dir "$MT_DIR2" --listen 127.0.0.1:1 --key-fd 3)
sk_check "a 31-byte key is refused (exit 1, says 32 bytes)" \
	bash -c '[[ "$1" == *"exactly 32 bytes"* && "$1" == *exit=1 ]]' _ "$out"
{ cat "$KEY"; printf x; } >"$SK_TMP/long"
out=$(fused_fd3 "$SK_TMP/long" --role secondary --dir "$MT_DIR2" --listen 127.0.0.1:1 --key-fd 3)
sk_check "a 33-byte key is refused" bash -c '[[ "$1" == *"exactly 32 bytes"* && "$1" == *exit=1 ]]' _ "$out"
sk_check "nothing was mounted by the refused starts" bash -c '! mountpoint -q "$1"' _ "$MT_DIR2"

# the secondary takes the key from fd 3, the primary derives it from the secret: they must agree
export KEYFILE=$KEY
sk_track_mount "$MT_DIR2"
MT_PID2=$(sk_spawn 2 fused2.keyfd bash -c 'exec "$0" "$@" 3<"$KEYFILE"' "$MT_FUSED" \
	--role secondary --dir "$MT_DIR2" --listen "${SK_IP[2]}:$MT_PORT" --key-fd 3 --module-id 1 \
	--state "${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG" --ctl "$MT_CTL2") || mt_bail "spawn"
sk_check "secondary on --key-fd is ready" mt_wait_until 10 mt_log_has_ready fused2.keyfd
mt_start_primary || mt_bail "primary"
sk_check "primary (--secret) and secondary (--key-fd) connect" mt_wait_until 20 mt_synced
echo "replicated through a key from an fd" >"$MT_DIR1/f"
sk_check "a write reaches the secondary" mt_wait_until 5 grep -q "key from an fd" "$MT_DIR2/f"

# a wrong key on the secondary (right length): the primary is refused, the file does not travel
sk_term "$MT_PID2"
mt_wait_until 10 bash -c "! mountpoint -q '$MT_DIR2'" || sk_diag "secondary did not unmount"
head -c 32 /dev/urandom >"$SK_TMP/wrongkey"
export KEYFILE=$SK_TMP/wrongkey
MT_PID2=$(sk_spawn 2 fused2.wrong bash -c 'exec "$0" "$@" 3<"$KEYFILE"' "$MT_FUSED" \
	--role secondary --dir "$MT_DIR2" --listen "${SK_IP[2]}:$MT_PORT" --key-fd 3 --module-id 1 \
	--state "${SK_ROOT[2]}/var/lib/steadykit/state-$MT_TAG" --ctl "$MT_CTL2") || mt_bail "spawn"
sk_check "secondary with a wrong key is ready" mt_wait_until 10 mt_log_has_ready fused2.wrong
echo "must not travel" >"$MT_DIR1/g"
sleep 3
sk_check "with a wrong key the primary never connects" bash -c '[ "$1" != connected ]' _ "$(mt_st 1 peer)"
sk_check "and nothing reaches the secondary" test ! -e "$MT_DIR2/g"
mt_stop_primary
sk_done
