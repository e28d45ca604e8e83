# bench/image.sh (sourced by breakdown.sh, compare.sh, mtimecost.sh): the scratch image.
# bench_image IMG SIZE: IMG made a fresh journaled ext4 of SIZE (inode tables and journal written
# now, not during a measurement) and attached to a loop device with direct I/O, as the shared
# harness's SCRATCH=loop; prints the device. The caller mounts it and detaches it.
bench_image() {
	truncate -s "$2" "$1" && mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$1" &&
		losetup --find --show --direct-io=on "$1"
}
