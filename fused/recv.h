/* fused/recv.h: the secondary's receiving state, shared by recv.c (connection, acks) and apply.c (operations). */
#ifndef FUSED_RECV_H
#define FUSED_RECV_H

#include "fused.h"

#define HBUCKETS 4096

/* Open handles the primary told us about: its handle id -> our fd (-1: orphan, drop data). */
struct hent {
	uint64_t id;
	int fd;
	struct hent *next;
};

struct rx {
	struct fused *f;
	int sock;
	struct sk_chan chan;
	struct hent *h[HBUCKETS];
	uint64_t applied, acked;
	uint64_t err_seq;
	int err;
};

/* Apply one decoded operation beneath the root. 0, -errno (reported), -EBADMSG / -EPIPE (drop). */
int fused_apply(struct rx *x, const struct sk_rmsg_op *op);
void fused_rx_hclear(struct rx *x);
/* recv.c: cumulative ack of x->applied (and the first failure since the last ack). */
int fused_rx_send_ack(struct rx *x);

#endif
