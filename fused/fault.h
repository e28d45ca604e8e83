/* fused/fault.h: named failure points for tests (SKFUSED_FAULT), so error paths that a healthy machine never takes run under test. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* One per place that can fail and must be handled; the names are what SKFUSED_FAULT lists. */
enum fused_fault_point {
	FUSED_FAULT_STATE_WRITE,   /* track.c: the state file's write comes out short (ENOSPC) */
	FUSED_FAULT_RS_NAMES,      /* rs_apply.c: recording a listed name runs out of memory */
	FUSED_FAULT_RS_TRACK,      /* resync.c: the resync tracker cannot be allocated */
	FUSED_FAULT_REPL_THREAD,   /* repl.c: a replication thread cannot be created */
	FUSED_FAULT_RS_NO_ANSWER,  /* rs_apply.c: a listing's answer is not sent (an older skfused) */
	FUSED_FAULT_RS_DIR_PAUSE,  /* resync.c: the walker waits 3 s between two parts of a listing */
	FUSED_FAULT_RS_SUMS_TWICE, /* rs_apply.c: a checksums answer is sent twice (a lying peer) */
	FUSED_FAULT_RS_SUMS_OFF,   /* rs_apply.c: a checksums answer names another offset (a lying peer) */
	FUSED_FAULT_RS_AHEAD_PAUSE, /* rs_files.c: the sender waits (10 s at most) until the file it read ahead changes */
	FUSED_FAULT_RS_AHEAD_LOST,  /* rs_files.c: the peer is dropped right after a file was read ahead */
	FUSED_FAULT_RS_AHEAD_SLOW,  /* rs_files.c: the sender waits until the reader has read its next file ahead */
	FUSED_FAULT_WRITE_PIECE_LOST, /* file.c: the peer is dropped after a write's first piece was sent */
	FUSED_FAULT_READ_SPLICE,   /* fuseio.c: the kernel refuses a spliced read reply (EINVAL) */
	FUSED_FAULT_READ_SPLICE_SHORT, /* fuseio.c: and the reply's last byte is gone from the pipe */
	FUSED_FAULT_READ_SPLICE_EMPTY, /* fuseio.c: with read_splice, the kernel took the whole reply */
	FUSED_FAULT_RS_INCR_GIVEUP, /* resync.c: the incremental resync gives up at once (as one that did not converge) */
	FUSED_FAULT_RS_FAIL_LOST,  /* resync.c: the peer is dropped right after the full resync took the peer's FAILED reports */
	FUSED_FAULT_FENCE_REPLY_SLOW, /* repl.c: an operation refused at the lease's end is answered 0.5 s late */
	FUSED_FAULT_CLOCK_BEHIND, /* apply.c: a write's time the secondary's kernel chose is 1 s earlier */
	FUSED_FAULT_N
};

/*
 * SKFUSED_FAULT="name[@N[+]][,name...]": the point fails on its N-th pass (1 when N is
 * left out), or on every pass from the N-th with "+". Parsed once at start; an unknown
 * name or a malformed spec is refused (-EINVAL; *bad and *bad_len give the faulty part).
 * Unset, no point ever fails and a pass costs one load of a flag. For tests; the names
 * are listed in docs/skfused.md.
 */
int fused_fault_init(const char *spec, const char **bad, size_t *bad_len);

bool fused_fault_slow(enum fused_fault_point p);

extern bool fused_fault_armed;

/* True when this pass of point p must fail. */
static inline bool fused_fault(enum fused_fault_point p)
{
	return __builtin_expect(fused_fault_armed, 0) && fused_fault_slow(p);
}
