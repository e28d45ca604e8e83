/* libsk/gen.h: data generations of a mirror copy (as DRBD's UUIDs): the set, its wire form, and how two copies relate. */
#ifndef SK_GEN_H
#define SK_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Each node keeps, per module:
 *  - current: a random 64-bit id made when this copy starts to change without its peer
 *    (a primary that loses its peer, or the first data of a fresh primary); 0 = no data
 *    (a fresh or half-resynced copy that never completed a resync);
 *  - shared: the current id both copies held when they were last in sync (0: unknown);
 *  - history: the last SK_GEN_HIST currents this copy held before `current`, newest first.
 * A secondary that completes a resync takes the primary's current and history.
 */
#define SK_GEN_HIST 4

struct sk_gen {
	uint64_t current;
	uint64_t shared;
	uint64_t hist[SK_GEN_HIST];
	uint8_t n_hist; /* 0..SK_GEN_HIST */
};

enum sk_gen_rel {
	SK_GEN_EQUAL = 0,      /* same current: nothing beyond what is tracked */
	SK_GEN_LOCAL_NEWER,    /* the peer's current is an ancestor of ours: resync us -> peer */
	SK_GEN_PEER_NEWER,     /* ours is an ancestor of the peer's: resync peer -> us */
	SK_GEN_DIVERGED,       /* both moved on from a common (or unknown) point: split brain */
	SK_GEN__MAX = SK_GEN_DIVERGED,
};

/* How `local` relates to `peer`. A current of 0 (no data) is the ancestor of any copy. */
enum sk_gen_rel sk_gen_classify(const struct sk_gen *local, const struct sk_gen *peer);
/* "equal", "newer", "older", "diverged" (as seen from local). */
const char *sk_gen_rel_str(enum sk_gen_rel r);
/* This copy moves on alone: push current to the history, take `fresh_id` (non-zero). */
void sk_gen_new_current(struct sk_gen *g, uint64_t fresh_id);
/* A random non-zero id (libsodium's CSPRNG); sodium_init() must have run. */
uint64_t sk_gen_random_id(void);

/*
 * Wire form, version 1 (big-endian), carried by the START frame (primary's set) and the
 * GEN answer (secondary's set):
 *   0 version u8 (1) | 1 n_hist u8 (<= 4) | 2 verdict u8 (GEN answer; 0 in START) | 3 zero u8
 *   4 zero u32 | 8 current u64 | 16 shared u64 | 24 hist[4] u64 (unused slots 0)
 *  56 changed_files u64 | 64 changed_bytes u64   (since `shared`; UINT64_MAX = unknown)
 * Exactly SK_GEN_WIRE_LEN bytes.
 */
#define SK_GEN_WIRE_LEN 72
#define SK_GEN_UNKNOWN UINT64_MAX

/* The secondary's answer to START. */
enum sk_gen_verdict {
	SK_GEN_V_OK = 0,             /* session accepted, resync follows */
	SK_GEN_V_DIVERGED = 1,       /* refused: split brain, an operator must choose a survivor */
	SK_GEN_V_PRIMARY_OLDER = 2,  /* refused: this copy is newer than the primary's */
	SK_GEN_V_FORCED = 3,         /* accepted because the primary is the forced survivor:
				      * what this copy changed alone is kept aside */
	SK_GEN_V__MAX = SK_GEN_V_FORCED,
};
const char *sk_gen_verdict_str(enum sk_gen_verdict v);

struct sk_gen_wire {
	struct sk_gen g;
	uint8_t verdict;
	uint64_t changed_files, changed_bytes;
};

void sk_gen_encode(const struct sk_gen_wire *w, uint8_t out[SK_GEN_WIRE_LEN]);
/* 0 or -EBADMSG (length, version, n_hist, verdict, reserved bytes, history slots). */
int sk_gen_decode(const uint8_t *p, size_t len, struct sk_gen_wire *w);

/* "a3f09c1d22e0b7c4" (16 hex digits) into buf[17]; 0 is "0". */
void sk_gen_id_str(uint64_t id, char buf[17]);
/* Parse what sk_gen_id_str wrote: 0 or -EINVAL. */
int sk_gen_id_parse(const char *s, uint64_t *id);

#endif
