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

/*
 * Open handles the secondary keeps for one session: each is an OPEN/CREATE of the primary
 * not yet RELEASEd, so this is the number of replicated files open at once on the primary.
 * Past it, OPEN/CREATE are refused (counted; the primary sees a divergence and resyncs).
 */
#define FUSED_RX_HANDLES_MAX 65536

struct rx {
	struct fused *f;
	int sock;
	struct sk_chan chan;
	struct hent *h[HBUCKETS];
	size_t nhandles;
	uint64_t applied, acked;
	uint64_t err_seq;
	int err;
	_Atomic uint64_t keepalives; /* "alive, busy" frames sent this session */
};

/* Apply one decoded operation beneath the root. 0, -errno (reported), -EBADMSG / -EPIPE (drop). */
int fused_apply(struct rx *x, const struct sk_rmsg_op *op);
/* Ends a session's state: every handle, and the resync's name and hard-link lists. */
void fused_rx_hclear(struct rx *x);
/*
 * Open a file for data beneath the root: regular files only (and directories if dir_ok),
 * checked on an O_PATH fd before anything is opened; -EPERM (counted) for anything else.
 */
int fused_apply_open_data(struct fused *f, const char *path, size_t len, int flags, bool dir_ok,
			  int *out);
/* rs_apply.c: forget the resync's name list and hard-link tables (session end). */
void fused_rs_session_end(void);
/* recv.c: cumulative ack of x->applied (and the first failure since the last ack). */
int fused_rx_send_ack(struct rx *x);
/* recv.c: send one frame to the primary; every sender of the secondary goes through here. */
int fused_rx_send(struct sk_chan *c, int sock, uint8_t type, uint16_t flags, uint32_t module,
		  const struct iovec *iov, int n);

#endif
