/* fused/ackring.h: the primary's ring of frames sent and not yet acknowledged, and which request waits for each. */
#ifndef FUSED_ACKRING_H
#define FUSED_ACKRING_H

#include "fused.h"

/*
 * Frames carry contiguous sequence numbers from 1 on each connection; the peer's
 * acks are cumulative ("applied up to N"). A slot (seq % cap) holds one frame from
 * its send until its ack; a frame sent before its local apply ends is "held" and
 * its request is answered by whichever of the ack and fused_ackring_local_done
 * comes last. Not thread-safe: the caller holds the lock that guards it (pend_mu).
 */
struct fused_ackring {
	struct fused_pending *slot;
	uint32_t cap;
	uint64_t sent;  /* last sequence number registered */
	uint64_t acked; /* last acknowledged (or retired at a peer loss) */
	uint64_t bytes; /* in flight */
	uint64_t cost;  /* in flight, frame cost units (resync pacing) */
	uint64_t stamp_ns; /* set by the caller of an ack: when it was read (stages.h), 0: none */
};

/* A reply now due: the request that waited and what to answer it. */
struct fused_ackring_due {
	fuse_req_t req;
	struct fused_reply r;
};

int fused_ackring_init(struct fused_ackring *a, uint32_t cap);
void fused_ackring_free(struct fused_ackring *a);
/* A new connection: nothing in flight, the next frame is 1. */
void fused_ackring_reset(struct fused_ackring *a);
/* Frame sent + 1 may be registered: the window has room and its slot is not held. */
bool fused_ackring_room(const struct fused_ackring *a);
/*
 * Register the next frame (sent + 1; fused_ackring_room must be true). req NULL: nobody
 * waits. held: the local apply still runs (r is then set by fused_ackring_local_done).
 * Returns its sequence number.
 */
uint64_t fused_ackring_push(struct fused_ackring *a, uint64_t now_us, uint32_t bytes, uint32_t cost,
			    uint8_t type, fuse_req_t req, const struct fused_reply *r, bool held);
/* The slot of an unacknowledged frame seq, NULL if seq is not in flight. */
const struct fused_pending *fused_ackring_get(const struct fused_ackring *a, uint64_t seq);

/* What one fused_ackring_ack call retired. */
struct fused_ackring_stat {
	uint64_t drained_cost; /* cost units of the frames retired */
};

/*
 * Retire every frame up to upto (cumulative). The replies now due (requests not held
 * by their local apply) go to due[], at most max; returns how many, and stops early
 * (acked < upto) when due[] is full: call again after sending them. hist (FUSED_HIST
 * buckets, may be NULL) counts the latency of frames a request waited for, from now_us.
 * An ack for a frame never sent (upto > sent) changes nothing: -EPROTO. An old ack
 * (upto <= acked) retires nothing: 0.
 */
long fused_ackring_ack(struct fused_ackring *a, uint64_t upto, uint64_t now_us,
		       struct fused_ackring_due *due, size_t max, uint64_t *hist,
		       struct fused_ackring_stat *st);
/*
 * The local apply of held frame seq ended with reply r. If its ack came first, *req is set
 * to the request to answer now (with r) and true is returned; otherwise the ack will.
 * false too for a seq not held (already answered, or a new connection reused the slot).
 */
bool fused_ackring_local_done(struct fused_ackring *a, uint64_t seq, const struct fused_reply *r,
			      fuse_req_t *req);
/*
 * Right after fused_ackring_local_done returned true: the reply to send, r with the ack's
 * stamp (stages.h) kept from the slot.
 */
const struct fused_reply *fused_ackring_reply(const struct fused_ackring *a, uint64_t seq);

#endif
