/* Bucket ownership: weighted rendezvous hashing and the in-motion bookkeeping of a view change. */
#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "lb.h"

int lb_view_check(const struct lb_view *v, struct lb_err *err)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < LB_MAX_NODES; i++) {
		if (v->weight[i] > SK_WEIGHT_MAX) {
			snprintf(err->msg, sizeof(err->msg), "node %u: weight %u is above %u", i,
				 v->weight[i], SK_WEIGHT_MAX);
			return -EINVAL;
		}
		if (v->weight[i] && !(v->alive & (1ull << i))) {
			snprintf(err->msg, sizeof(err->msg),
				 "node %u: has weight %u but is not alive", i, v->weight[i]);
			return -EINVAL;
		}
		total += v->weight[i];
	}
	if (!total) {
		snprintf(err->msg, sizeof(err->msg), "view has no node with a weight above 0");
		return -EINVAL;
	}
	if (v->announce_ms > 60000) {
		snprintf(err->msg, sizeof(err->msg), "announce %u ms is above 60000", v->announce_ms);
		return -EINVAL;
	}
	return 0;
}

/* splitmix64: a full-avalanche 64-bit mix, so (seed, node, bucket) scores are independent. */
static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Weighted rendezvous: score = w / -ln(U), U uniform in (0,1) from the hash.
 * The highest score wins; removing a node only moves the buckets it won. */
uint8_t lb_rendezvous(const uint32_t *weight, uint32_t seed, uint32_t bucket)
{
	double best = -1.0;
	uint8_t owner = LB_NODE_NONE;

	for (unsigned i = 0; i < LB_MAX_NODES; i++) {
		if (!weight[i])
			continue;
		uint64_t h = mix64(((uint64_t)seed << 32 | bucket) ^ mix64(i + 1));
		double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* 2^53 */
		double score = (double)weight[i] / -log(u);

		if (score > best) {
			best = score;
			owner = (uint8_t)i;
		}
	}
	return owner;
}

void lb_owner_table(const uint32_t *weight, uint32_t seed, uint8_t *owner)
{
	for (uint32_t b = 0; b < LB_BUCKETS; b++)
		owner[b] = lb_rendezvous(weight, seed, b);
}

static int alive(const struct lb_view *v, uint8_t node)
{
	return node < LB_MAX_NODES && (v->alive & (1ull << node));
}

uint32_t lb_next_table(const struct lb_bucket *cur, const struct lb_view *v, uint32_t seed,
		       uint32_t generation, uint64_t now_ns, uint64_t window_ns,
		       struct lb_bucket *next)
{
	uint64_t move_ns = now_ns + (uint64_t)v->announce_ms * 1000000ull;
	uint32_t moved = 0;

	for (uint32_t b = 0; b < LB_BUCKETS; b++) {
		const struct lb_bucket *c = &cur[b];
		struct lb_bucket *n = &next[b];
		uint8_t owner = lb_rendezvous(v->weight, seed, b);
		int in_motion = c->prev != LB_NODE_NONE && c->prev != c->owner &&
				now_ns < c->move_ns + window_ns;

		*n = *c;
		if (owner == c->owner) {
			/* Unchanged; a motion still running ends only if its previous owner died. */
			if (in_motion && !alive(v, c->prev))
				n->prev = LB_NODE_NONE;
			continue;
		}
		moved++;
		n->owner = owner;
		n->epoch = generation;
		if (c->owner != LB_NODE_NONE && alive(v, c->owner)) {
			n->prev = c->owner; /* planned: the old owner keeps its flows */
			n->move_ns = move_ns;
		} else if (in_motion && alive(v, c->prev) && c->prev != owner) {
			n->prev = c->prev;  /* the interim owner died; the one before still drains */
		} else {
			n->prev = LB_NODE_NONE;
			n->move_ns = 0;
		}
	}
	return moved;
}
