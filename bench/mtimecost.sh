#!/usr/bin/env bash
# bench/mtimecost.sh: what keeping a file's mtime equal to the ns on both nodes (skfused's default,
# SKFUSED_MTIME=write) costs a 4 KiB write+fsync loop on this kernel, against the kernel's own times;
# and whether a coarse-clock time, set only when it changes, would be the time the kernel gives
# (bench/mtimecost.c says what each line measures).
#
#   bash bench/mtimecost.sh            # OPS=1000 REPS=3 SK_BUILD=<repo>/build WORK=/var/tmp/...
#
# Runs sk-mtimecost REPS times on a fresh journaled ext4 image of 512 MiB in WORK (loop-mounted with
# direct I/O, as the shared harness's SCRATCH=loop), so that every fsync's journal commit counts.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=image.sh
source "$HERE/image.sh"
SK_BUILD=${SK_BUILD:-$HERE/../build}
OPS=${OPS:-1000}
REPS=${REPS:-3}
own_work=0
[ -n "${WORK:-}" ] || { WORK=/var/tmp/sk-mtimecost-$$; own_work=1; }
case $WORK in /tmp/?* | /var/tmp/?*) ;; *) echo "WORK must be under /tmp or /var/tmp" >&2; exit 2 ;; esac
tool=$SK_BUILD/bench/sk-mtimecost
[ -x "$tool" ] || { echo "no $tool: build first (meson setup build && ninja -C build)" >&2; exit 2; }
dev=
cleanup() {
	mountpoint -q "$WORK/mnt" && umount "$WORK/mnt"
	[ -n "$dev" ] && losetup -d "$dev"
	rm -f "$WORK/img"
	rmdir "$WORK/mnt" 2>/dev/null
	[ "$own_work" = 0 ] || rmdir "$WORK" 2>/dev/null
}
trap cleanup EXIT INT TERM
mkdir -p "$WORK/mnt" || exit 1
dev=$(bench_image "$WORK/img" 512M) && mount -o noatime "$dev" "$WORK/mnt" ||
	{ echo "cannot set up the loop image in $WORK" >&2; exit 1; }
echo "kernel $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= REPS; r++)); do
	echo "# run $r"
	"$tool" "$WORK/mnt" "$OPS" || exit 1
done
