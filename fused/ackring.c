/* fused/ackring.c: the primary's ring of frames in flight: register, cumulative acks, who is answered when. */
#include "ackring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int fused_ackring_init(struct fused_ackring *a, uint32_t cap)
{
	memset(a, 0, sizeof(*a));
	if (!cap)
		return -EINVAL;
	a->slot = calloc(cap, sizeof(*a->slot));
	if (!a->slot)
		return -ENOMEM;
	a->cap = cap;
	return 0;
}

void fused_ackring_free(struct fused_ackring *a)
{
	free(a->slot);
	a->slot = NULL;
	a->cap = 0;
}

void fused_ackring_reset(struct fused_ackring *a)
{
	/*
	 * A slot still held by a local apply of the last connection keeps its sequence number:
	 * that apply's fused_ackring_local_done still finds it (it was retired by the loss, so
	 * it is answered then), and the slot is not reused before (fused_ackring_room).
	 */
	for (uint32_t i = 0; i < a->cap; i++)
		if (!a->slot[i].held)
			a->slot[i].seq = 0;
	a->sent = a->acked = 0;
	a->bytes = a->cost = 0;
}

bool fused_ackring_room(const struct fused_ackring *a)
{
	return a->sent + 1 - a->acked <= a->cap && !a->slot[(a->sent + 1) % a->cap].held;
}

uint64_t fused_ackring_push(struct fused_ackring *a, uint64_t now_us, uint32_t bytes, uint32_t cost,
			    uint8_t type, fuse_req_t req, const struct fused_reply *r, bool held)
{
	uint64_t seq = a->sent + 1;
	struct fused_pending *p = &a->slot[seq % a->cap];

	p->seq = seq;
	p->t_us = now_us;
	p->bytes = bytes;
	p->cost = cost;
	p->type = type;
	p->req = req;
	p->held = req && held;
	p->acked = false;
	if (req && r)
		p->r = *r;
	a->sent = seq;
	a->bytes += bytes;
	a->cost += cost;
	return seq;
}

const struct fused_pending *fused_ackring_get(const struct fused_ackring *a, uint64_t seq)
{
	const struct fused_pending *p;

	if (seq <= a->acked || seq > a->sent)
		return NULL;
	p = &a->slot[seq % a->cap];
	return p->seq == seq ? p : NULL;
}

static void hist_add(uint64_t *hist, uint64_t us)
{
	int i = 0;

	while (us > 1 && i < FUSED_HIST - 1) {
		us >>= 1;
		i++;
	}
	hist[i]++;
}

long fused_ackring_ack(struct fused_ackring *a, uint64_t upto, uint64_t now_us,
		       struct fused_ackring_due *due, size_t max, uint64_t *hist,
		       struct fused_ackring_stat *st)
{
	size_t n = 0;

	if (upto > a->sent)
		return -EPROTO;
	while (a->acked < upto && n < max) {
		uint64_t s = a->acked + 1;
		struct fused_pending *p = &a->slot[s % a->cap];

		if (p->seq == s) {
			if (hist && p->req) /* what an application waited for */
				hist_add(hist, now_us - p->t_us);
			if (a->stamp_ns && p->req && p->r.st.in)
				p->r.st.ack = a->stamp_ns;
			a->bytes -= p->bytes;
			a->cost -= p->cost;
			if (st)
				st->drained_cost += p->cost;
			if (p->held) {
				p->acked = true; /* its local apply still runs: that thread answers */
			} else if (p->req) {
				due[n].req = p->req;
				due[n].r = p->r;
				n++;
				p->req = NULL;
			}
		}
		a->acked = s;
	}
	return (long)n;
}

bool fused_ackring_local_done(struct fused_ackring *a, uint64_t seq, const struct fused_reply *r,
			      fuse_req_t *req)
{
	struct fused_pending *p = &a->slot[seq % a->cap];
	uint64_t ack_ns = p->r.st.ack;

	*req = NULL;
	if (!seq || p->seq != seq || !p->held)
		return false;
	p->r = *r;
	if (!p->r.st.ack)
		p->r.st.ack = ack_ns; /* stamped by the ack, if it came first */
	p->held = false;
	if (!p->acked)
		return false; /* the ack answers it */
	*req = p->req;
	p->req = NULL;
	return *req != NULL;
}

const struct fused_reply *fused_ackring_reply(const struct fused_ackring *a, uint64_t seq)
{
	return &a->slot[seq % a->cap].r;
}
