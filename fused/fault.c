/* fused/fault.c: SKFUSED_FAULT parsing and pass counting for the named failure points of fault.h. */
#include "fault.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool fused_fault_armed;

static const char *const names[FUSED_FAULT_N] = {
	[FUSED_FAULT_STATE_WRITE] = "state_write",
	[FUSED_FAULT_RS_NAMES] = "rs_names",
	[FUSED_FAULT_RS_TRACK] = "rs_track",
	[FUSED_FAULT_REPL_THREAD] = "repl_thread",
	[FUSED_FAULT_RS_NO_ANSWER] = "rs_no_answer",
	[FUSED_FAULT_RS_DIR_PAUSE] = "rs_dir_pause",
	[FUSED_FAULT_RS_SUMS_TWICE] = "rs_sums_twice",
	[FUSED_FAULT_RS_SUMS_OFF] = "rs_sums_off",
	[FUSED_FAULT_RS_AHEAD_PAUSE] = "rs_ahead_pause",
	[FUSED_FAULT_RS_AHEAD_LOST] = "rs_ahead_lost",
	[FUSED_FAULT_RS_AHEAD_SLOW] = "rs_ahead_slow",
	[FUSED_FAULT_WRITE_PIECE_LOST] = "write_piece_lost",
	[FUSED_FAULT_READ_SPLICE] = "read_splice",
	[FUSED_FAULT_READ_SPLICE_SHORT] = "read_splice_short",
	[FUSED_FAULT_READ_SPLICE_EMPTY] = "read_splice_empty",
	[FUSED_FAULT_RS_INCR_GIVEUP] = "rs_incr_giveup",
	[FUSED_FAULT_RS_FAIL_LOST] = "rs_fail_lost",
	[FUSED_FAULT_FENCE_REPLY_SLOW] = "fence_reply_slow",
	[FUSED_FAULT_CLOCK_BEHIND] = "clock_behind",
};

static struct {
	uint64_t at;     /* the pass that fails (1-based); 0: the point is not armed */
	bool onward;     /* and every pass after it */
	atomic_uint_fast64_t passes;
} pts[FUSED_FAULT_N];

static int parse_one(const char *s, size_t len)
{
	size_t nl = len;
	const char *at = memchr(s, '@', len);
	uint64_t n = 1;
	bool onward = false;

	if (at) {
		char num[24], *end;
		size_t dl = len - (size_t)(at - s) - 1;

		nl = (size_t)(at - s);
		if (dl && at[dl] == '+') {
			onward = true;
			dl--;
		}
		if (dl == 0 || dl >= sizeof(num))
			return -EINVAL;
		memcpy(num, at + 1, dl);
		num[dl] = '\0';
		errno = 0;
		n = strtoull(num, &end, 10);
		if (num[0] < '0' || num[0] > '9' || errno || *end || n == 0)
			return -EINVAL;
	}
	for (int i = 0; i < FUSED_FAULT_N; i++)
		if (strlen(names[i]) == nl && !memcmp(names[i], s, nl)) {
			pts[i].at = n;
			pts[i].onward = onward;
			return 0;
		}
	return -EINVAL;
}

int fused_fault_init(const char *spec, const char **bad, size_t *bad_len)
{
	const char *s = spec;

	if (!spec || !*spec)
		return 0;
	while (*s) {
		const char *c = strchr(s, ',');
		size_t len = c ? (size_t)(c - s) : strlen(s);

		if (parse_one(s, len) < 0) {
			memset(pts, 0, sizeof(pts));
			*bad = s;
			*bad_len = len;
			return -EINVAL;
		}
		s += len + (c ? 1 : 0);
	}
	fused_fault_armed = true;
	return 0;
}

bool fused_fault_slow(enum fused_fault_point p)
{
	uint64_t k;

	if ((unsigned)p >= FUSED_FAULT_N || !pts[p].at)
		return false;
	k = atomic_fetch_add(&pts[p].passes, 1) + 1;
	return k == pts[p].at || (pts[p].onward && k > pts[p].at);
}
