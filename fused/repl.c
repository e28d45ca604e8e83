/* fused/repl.c: the primary's ordered stream to the peer: send, acks (ring in ackring.c), budget, reconnect. */
#include "ackring.h"
#include "fault.h"
#include "fence.h"
#include "ownlist.h"
#include "fused.h"
#include "resync.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define REPLY_BATCH 64
#define SOCK_BUF (8 << 20)

/*
 * Resync pacing. A live operation queued behind resync frames waits until the
 * peer has applied them all, so the walker keeps in flight only what the peer
 * drains in about budget/RS_TARGET_DIV: the window (cost) follows the delay
 * of the frames the peer acknowledges, shrinking in proportion above the
 * target (at most once per window's worth of frames) and growing below half
 * of it. Bytes are bounded too, so the socket buffers never become the queue.
 * The window never exceeds what the peer drained within the target at the rate
 * measured while it had work: when the peer slows down (its journal, its disk),
 * the window follows at once, not one delayed ack at a time.
 */
#define RS_TARGET_DIV 8
#define RS_WIN_INIT 256             /* cost units, see frame_cost */
#define RS_WIN_MIN 32
#define RS_WIN_MAX 8192
#define RS_FRAMES_MAX (FUSED_RING / 2) /* the other half of the ring stays for live operations */
#define RS_BYTES_MAX (4u << 20)

/*
 * What a frame costs the peer, in units of one small metadata operation: a
 * listing creates up to one entry per ~64 bytes of it, data is written at
 * tens of times the speed of a create. Rough on purpose: the delay feedback
 * corrects the window; the units only keep a window of listings from meaning
 * a thousand times the work of a window of single updates.
 */
static uint32_t frame_cost(uint8_t type, size_t dlen)
{
	if (type == SK_RMSG_RS_DIR)
		return 1 + (uint32_t)(dlen / 64);
	if (type == SK_RMSG_RS_DATA || type == SK_RMSG_WRITE)
		return 1 + (uint32_t)(dlen / 32768);
	return 1;
}

static pthread_t conn_thread, budget_thread;

/*
 * The cork: frames nobody waits for and that carry nothing the application was told is
 * on both nodes (a RELEASE: the handle's end and the times left behind by reads), sealed,
 * numbered and registered in the ring like any frame, but written to the socket with the
 * next frame (one send, one batch for the peer, one ack for both) or by the budget thread
 * cork_max_us after the first of them. Everything the application waits for (any frame
 * with a request) goes out at once, after the cork: the order on the wire is the order
 * of the sequence numbers. Guarded by stream_mu (every send holds it); cork_at_us is read
 * by the budget thread without it. SKFUSED_CORK=0 sends every frame at once (an A/B).
 */
#define CORK_BYTES 4096
static uint64_t cork_max_us = 2000; /* SKFUSED_CORK_US, at most an eighth of the budget */
_Atomic uint64_t fused_stream_writes, fused_frames_corked;
static struct {
	uint8_t buf[CORK_BYTES];
	size_t len;
	uint64_t gen;  /* the connection the frames were sealed for */
	uint64_t last; /* the newest corked frame's seq */
} cork;
static _Atomic uint64_t cork_at_us; /* when the oldest corked frame was sealed, 0: none */
static bool cork_on = true;

/*
 * The peer's last "alive, busy" keepalive (recv.c): when it came, and how long the operation
 * it was applying had run then. Reset with each connection.
 */
static _Atomic uint64_t ka_at_us, ka_busy_us, ka_count;

/*
 * The ack thread sleeps in poll while nothing is buffered. A sender whose request waits for
 * an ack wakes it at once through kick_fd (when it sleeps), so that wake-up overlaps the
 * network's round trip and the peer's apply, and the thread is already polling the socket
 * (for up to ack_spin_us) when the ack comes: otherwise the ack itself wakes it, one
 * cross-CPU wake-up more between the peer's ack and the reply (tens of us on a VM).
 * SKFUSED_ACK_SPIN_US=0: no kick, the stream readers' FUSED_SPIN_US poll as before.
 */
static int kick_fd = -1;
static _Atomic bool ack_sleeping;
static _Atomic uint64_t seq_wire; /* the newest frame written to the socket (corked ones are not) */
static unsigned ack_spin_us = 150;
_Atomic uint64_t fused_ack_kicks, fused_ack_spin_hits;

static void ack_kick(void)
{
	uint64_t one = 1;

	if (kick_fd >= 0 && atomic_exchange(&ack_sleeping, false) &&
	    write(kick_fd, &one, sizeof(one)) == sizeof(one))
		atomic_fetch_add(&fused_ack_kicks, 1);
}

/* ---- buffered reader / full writer ---- */

int fused_rbuf_init(struct fused_rbuf *b)
{
	b->cap = 2 * (size_t)SK_PROTO_MAX_FRAME;
	b->start = b->end = 0;
	b->buf = malloc(b->cap);
	return b->buf ? 0 : -ENOMEM;
}

void fused_rbuf_free(struct fused_rbuf *b)
{
	free(b->buf);
	b->buf = NULL;
}

long fused_rbuf_next(struct sk_chan *c, struct fused_rbuf *b, struct sk_frame *fr,
		     enum sk_reject *why)
{
	long n = sk_chan_open(c, b->buf + b->start, b->end - b->start, fr, why);

	if (n > 0)
		b->start += (size_t)n;
	return n;
}

static int rbuf_read(int fd, struct fused_rbuf *b, int flags)
{
	ssize_t n;

	if (b->start == b->end) {
		b->start = b->end = 0;
	} else if (b->cap - b->end < SK_PROTO_MAX_FRAME) {
		/* keep room for a whole frame after the partial one */
		memmove(b->buf, b->buf + b->start, b->end - b->start);
		b->end -= b->start;
		b->start = 0;
	}
	do
		n = recv(fd, b->buf + b->end, b->cap - b->end, flags);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ECONNRESET;
	b->end += (size_t)n;
	if (fused_stages_on)
		fused_stage_rx_ns = fused_stage_now(); /* what this read completes was received now */
	return 0;
}

int fused_rbuf_fill(int fd, struct fused_rbuf *b)
{
	return rbuf_read(fd, b, 0);
}

/*
 * A sleeping reader costs a cross-CPU wakeup (tens of us in a VM) per
 * message; a reader that expects an answer soon polls briefly first.
 */
int fused_rbuf_spin(int fd, struct fused_rbuf *b, unsigned spin_us)
{
	uint64_t end = sk_now_us() + spin_us;

	if (!spin_us)
		return 0;
	do {
		int rc = rbuf_read(fd, b, MSG_DONTWAIT);

		if (rc == 0)
			return 1;
		if (rc != -EAGAIN)
			return rc;
		sched_yield();
	} while (sk_now_us() < end);
	return 0;
}

/* ---- replies ---- */

void fused_reply_send(fuse_req_t req, const struct fused_reply *r)
{
	if (!req)
		return;
	/* fence.c: the lease ended while this operation waited (for the peer, or the budget
	 * before going on alone): it is not acknowledged */
	if (r->kind != R_ERR && fused_fence_check() < 0) {
		if (fused_fault(FUSED_FAULT_FENCE_REPLY_SLOW))
			usleep(500000); /* as a thread preempted before it answers */
		fuse_reply_err(req, EROFS);
		return;
	}
	switch (r->kind) {
	case R_ERR0:
		fuse_reply_err(req, 0);
		break;
	case R_WRITE:
		fuse_reply_write(req, r->written);
		break;
	case R_ENTRY:
		fuse_reply_entry(req, &r->e);
		break;
	case R_CREATE:
		fuse_reply_create(req, &r->e, &r->fi);
		break;
	case R_ATTR:
		fuse_reply_attr(req, &r->attr, 1.0);
		break;
	case R_OPEN:
		fuse_reply_open(req, &r->fi);
		break;
	case R_ERR:
		fuse_reply_err(req, r->err);
		break;
	default:
		break;
	}
	if (r->st.in)
		fused_stage_primary(&r->st);
}

/* Under mu: wait for cv at most ms milliseconds (< 1000). */
void fused_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += ms * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(cv, mu, &ts);
}

/* Under pend_mu: wait for an ack (or any pend_cv signal) at most ms milliseconds. */
static void pend_wait_ms(struct fused *f, long ms)
{
	fused_cond_wait_ms(&f->pend_cv, &f->pend_mu, ms);
}

/* Under pend_mu: the counters the status, the budget and the tracker read, from the ring. */
static void ring_sync(struct fused *f)
{
	atomic_store(&f->seq_sent, f->ack->sent);
	atomic_store(&f->seq_acked, f->ack->acked);
	atomic_store(&f->inflight_bytes, f->ack->bytes);
	f->inflight_cost = f->ack->cost;
}

/* Under pend_mu: answer n due requests outside the lock (it is dropped and taken again). */
static __thread struct fused_ackring_due t_due[REPLY_BATCH];

static void due_flush(struct fused *f, long n)
{
	pthread_cond_broadcast(&f->pend_cv);
	pthread_mutex_unlock(&f->pend_mu);
	for (long i = 0; i < n; i++)
		fused_reply_send(t_due[i].req, &t_due[i].r);
	pthread_mutex_lock(&f->pend_mu);
}
static uint64_t rs_dec_seq; /* the window shrinks again only for frames sent after this one */
static uint64_t rs_busy_us, rs_busy_cost; /* drained while frames were in flight, this period */
static uint64_t rs_rate;                  /* cost units per second the peer drains (EWMA) */
static bool rs_busy;                      /* frames were in flight after the previous ack */

/* Under pend_mu, on an ack that drained `cost` units: the peer's rate, and the window's cap. */
static void rs_drain(struct fused *f, uint64_t now, uint64_t cost)
{
	uint64_t target = (uint64_t)f->budget_ms * 1000 / RS_TARGET_DIV, cap;

	if (rs_busy) {
		rs_busy_us += now - f->last_ack_us;
		rs_busy_cost += cost;
	}
	rs_busy = f->inflight_cost > 0;
	if (rs_busy_us >= 20000) {
		uint64_t r = rs_busy_cost * 1000000 / rs_busy_us;

		rs_rate = rs_rate ? (rs_rate * 3 + r) / 4 : r;
		rs_busy_us = rs_busy_cost = 0;
	}
	if (!rs_rate)
		return;
	/* twice the target: the rate is measured over whole ack cycles, delays included */
	cap = rs_rate * 2 * target / 1000000;
	if (f->rs_win > cap)
		f->rs_win = (uint32_t)(cap < RS_WIN_MIN ? RS_WIN_MIN : cap);
}

/* Under pend_mu: the newest acknowledged frame waited lat_us; adapt the resync window. */
static void rs_adapt(struct fused *f, uint64_t seq, uint64_t lat_us)
{
	uint64_t target = (uint64_t)f->budget_ms * 1000 / RS_TARGET_DIV, w = f->rs_win;

	if (lat_us > target) {
		if (seq <= rs_dec_seq)
			return; /* sent before the last decrease: its delay is already answered */
		w = w * target / lat_us;
		rs_dec_seq = f->seq_sent;
	} else if (lat_us < target / 2) {
		w += w / 8 + 1;
	}
	f->rs_win = (uint32_t)(w < RS_WIN_MIN ? RS_WIN_MIN : w > RS_WIN_MAX ? RS_WIN_MAX : w);
}

/*
 * Retire the frames up to `upto` (under pend_mu; upto <= what was sent), answering
 * the requests now due in batches outside the lock. Returns with pend_mu held.
 */
static void retire(struct fused *f, uint64_t upto, bool count_latency)
{
	struct fused_ackring_stat st = { 0 };
	const struct fused_pending *p = fused_ackring_get(f->ack, upto);
	uint64_t now = sk_now_us(), lat = 0;
	bool ack = count_latency && upto > f->ack->acked; /* from the peer: it makes progress */
	long n;

	if (ack && p)
		lat = now - p->t_us;
	for (;;) {
		/* the ack thread's read of this ack, for the stage times (stages.h) */
		f->ack->stamp_ns = count_latency ? fused_stage_rx_ns : 0;
		n = fused_ackring_ack(f->ack, upto, now, t_due, REPLY_BATCH,
				      count_latency ? f->hist : NULL, &st);
		ring_sync(f);
		if (n < 0 || f->ack->acked >= upto)
			break;
		due_flush(f, n); /* t_due is full: answer, then go on */
	}
	if (ack) {
		if (lat)
			rs_adapt(f, upto, lat);
		rs_drain(f, now, st.drained_cost); /* the lock may have been dropped: count, not difference */
		f->last_ack_us = now;
	}
	if (n > 0)
		due_flush(f, n);
	else
		pthread_cond_broadcast(&f->pend_cv);
}

/* ---- peer loss ---- */

void fused_peer_lost(struct fused *f, uint64_t gen, const char *why)
{
	pthread_mutex_lock(&f->peer_mu);
	if (gen != f->conn_gen || !atomic_load(&f->connected)) {
		pthread_mutex_unlock(&f->peer_mu);
		return;
	}
	/* Persist first: anything acknowledged from now on exists on this node only. */
	fused_state_set_in_sync(f, false);
	/* what was sent and not acknowledged may not be there: tracked from now on, like the rest */
	if (fused_dirty_g)
		fused_dirty_peer_lost(fused_dirty_g, gen, atomic_load(&f->seq_acked));
	pthread_mutex_lock(&f->pend_mu);
	atomic_store(&f->connected, false);
	if (f->sock >= 0)
		shutdown(f->sock, SHUT_RDWR);
	retire(f, f->seq_sent, false);
	pthread_mutex_unlock(&f->pend_mu);
	pthread_mutex_unlock(&f->peer_mu);
	pthread_mutex_lock(&f->rs_mu);
	pthread_cond_broadcast(&f->rs_cv);
	pthread_mutex_unlock(&f->rs_mu);
	sk_warn("peer lost (%s): peer marked outdated, continuing ALONE", why);
}

/* ---- sending ---- */

/*
 * stream_mu held: the corked frames go first, in one write with extra (a frame's iovecs,
 * NULL: the cork alone). Frames sealed for a connection that is gone are dropped: the
 * loss retired them, and dirty tracking has what they changed.
 */
static int cork_write(struct fused *f, struct iovec *extra, int n)
{
	struct iovec iov[5];
	int k = 0, rc;

	if (cork.len && cork.gen == f->conn_gen && atomic_load(&f->connected) && f->sock >= 0)
		iov[k++] = (struct iovec){ .iov_base = cork.buf, .iov_len = cork.len };
	if (k)
		atomic_store(&seq_wire, cork.last);
	cork.len = 0;
	atomic_store(&cork_at_us, 0);
	for (int i = 0; i < n && k < 5; i++)
		iov[k++] = extra[i];
	if (!k)
		return 0;
	rc = sk_writev_all(f->sock, iov, k);
	atomic_fetch_add(&fused_stream_writes, 1);
	if (rc < 0)
		fused_peer_lost(f, f->conn_gen, "send failed"); /* retires them */
	return rc;
}

/* stream_mu held: send what the cork holds now. */
void fused_repl_flush(struct fused *f)
{
	if (cork.len)
		cork_write(f, NULL, 0);
}

/* this thread's last frame: sealed and registered, and written to the socket (stages.h) */
static __thread uint64_t t_sealed_ns, t_sent_ns;

void fused_repl_stamps(struct fused_stamps *st)
{
	st->sealed = t_sealed_ns;
	st->sent = t_sent_ns;
}

static int send_frame(struct fused *f, const struct sk_rmsg_op *op, const void *data,
		      size_t dlen, fuse_req_t req, const struct fused_reply *r,
		      uint64_t *seq_out, bool lazy, uint16_t fflags)
{
	uint8_t hb[SK_RMSG_OP_HDR + 2 * (SK_RMSG_PATH_MAX + 1) + SK_RMSG_NAME_MAX + 1];
	uint8_t fh[SK_PROTO_HDR_LEN], mac[SK_PROTO_MAC_LEN];
	struct iovec iov[4];
	struct sk_rmsg_op o = *op;
	uint64_t gen = f->conn_gen, seq, deadline;
	long hl;
	int waits;

	t_sealed_ns = t_sent_ns = 0;
	o.data = data;
	o.data_len = (uint32_t)dlen;
	hl = sk_rmsg_op_encode(&o, hb, sizeof(hb));
	if (hl < 0) {
		sk_err("cannot encode op type %u: %s", op->type, strerror((int)-hl));
		fused_peer_lost(f, gen, "unencodable operation");
		return 0;
	}
	iov[1] = (struct iovec){ .iov_base = hb, .iov_len = (size_t)hl };
	iov[2] = (struct iovec){ .iov_base = (void *)data, .iov_len = dlen };
	lazy = lazy && cork_on && !req && f->mode != SK_REPL_ASYNC;
	if (cork.len && (cork.gen != gen || /* sealed for a connection that is gone: dropped */
			 (lazy && cork.len + sizeof(fh) + (size_t)hl + dlen + sizeof(mac) > CORK_BYTES)))
		cork_write(f, NULL, 0);

	pthread_mutex_lock(&f->pend_mu);
	deadline = sk_now_us() + (uint64_t)f->budget_ms * 1000;
	while (atomic_load(&f->connected) && !fused_ackring_room(f->ack)) {
		if (sk_now_us() >= deadline)
			break;
		pend_wait_ms(f, 10);
	}
	if (!atomic_load(&f->connected)) {
		pthread_mutex_unlock(&f->pend_mu);
		return 0;
	}
	if (!fused_ackring_room(f->ack)) {
		pthread_mutex_unlock(&f->pend_mu);
		fused_peer_lost(f, gen, "in-flight window full past the budget");
		return 0;
	}
	if (sk_chan_seal(&f->chan, fh, mac, op->type, fflags, f->module_id, iov + 1, 2) < 0 ||
	    f->chan.tx_seq != f->ack->sent + 1) { /* the ring numbers frames as the channel does */
		pthread_mutex_unlock(&f->pend_mu);
		fused_peer_lost(f, gen, "cannot seal a frame");
		return 0;
	}
	waits = req && f->mode != SK_REPL_ASYNC;
	seq = fused_ackring_push(f->ack, sk_now_us(), (uint32_t)(dlen + (size_t)hl),
				 frame_cost(op->type, dlen), op->type, waits ? req : NULL, r,
				 waits && seq_out);
	if (seq_out)
		*seq_out = waits ? seq : 0;
	ring_sync(f);
	pthread_mutex_unlock(&f->pend_mu);
	t_sealed_ns = fused_stage_now();
	t_sent_ns = 0;

	iov[0] = (struct iovec){ .iov_base = fh, .iov_len = sizeof(fh) };
	iov[3] = (struct iovec){ .iov_base = mac, .iov_len = sizeof(mac) };
	if (lazy && cork.len + sizeof(fh) + (size_t)hl + dlen + sizeof(mac) <= CORK_BYTES) {
		uint8_t *d = cork.buf + cork.len;

		for (int i = 0; i < 4; i++) {
			if (!iov[i].iov_len)
				continue; /* no payload: its base may be NULL */
			memcpy(d, iov[i].iov_base, iov[i].iov_len);
			d += iov[i].iov_len;
		}
		if (!cork.len) {
			cork.gen = gen;
			atomic_store(&cork_at_us, sk_now_us());
		}
		cork.len = (size_t)(d - cork.buf);
		cork.last = seq;
		atomic_fetch_add(&fused_frames_corked, 1);
		return 0;
	}
	cork_write(f, iov, 4); /* the cork and this frame in one write; a loss retires our slot too */
	t_sent_ns = fused_stage_now();
	atomic_store(&seq_wire, seq);
	/* after the write: the frame is on its way while the ack thread wakes (an fsync's ack
	 * waits for two disk flushes: milliseconds, not worth polling for) */
	if (waits && op->type != SK_RMSG_FSYNC)
		ack_kick();
	return waits;
}

int fused_repl_submit(struct fused *f, const struct sk_rmsg_op *op, const void *data,
		      size_t data_len, fuse_req_t req, const struct fused_reply *r)
{
	if (!atomic_load(&f->connected))
		return 0;
	return send_frame(f, op, data, data_len, req, r, NULL, false, 0);
}

/*
 * A large write goes as pieces of fused_write_chunk bytes (file.c), each sent as soon as it is
 * sealed, so the peer opens and writes piece k while this thread seals piece k+1. Only the last
 * piece is waited for; the others say so (FUSED_FRAME_F_MORE), and the peer acks them with the
 * last one instead of each on its own: per 1 MiB write, one ack (a send there, a wake-up and a
 * frame to open here) instead of up to four. Off unless SKFUSED_WRITE_MORE=1: interleaved A/Bs
 * on a loaded 2-core host showed fewer switches of the primary's threads but no throughput or
 * CPU win beyond the spread (docs/skfused.md), so the default is the per-batch ack as before.
 */
_Atomic uint64_t fused_write_pieces;
static bool write_more;

void fused_repl_submit_piece(struct fused *f, const struct sk_rmsg_op *op, const void *data,
			     size_t data_len)
{
	if (!atomic_load(&f->connected))
		return;
	send_frame(f, op, data, data_len, NULL, NULL, NULL, false, write_more ? FUSED_FRAME_F_MORE : 0);
	atomic_fetch_add(&fused_write_pieces, 1);
}

void fused_repl_submit_lazy(struct fused *f, const struct sk_rmsg_op *op)
{
	if (atomic_load(&f->connected))
		send_frame(f, op, NULL, 0, NULL, NULL, NULL, true, 0);
}

int fused_repl_submit_held(struct fused *f, const struct sk_rmsg_op *op, const void *data,
			   size_t data_len, fuse_req_t req, const struct fused_reply *r,
			   uint64_t *seq)
{
	*seq = 0;
	if (!atomic_load(&f->connected))
		return 0;
	return send_frame(f, op, data, data_len, req, r, seq, false, 0);
}

void fused_repl_local_done(struct fused *f, uint64_t seq, const struct fused_reply *r)
{
	fuse_req_t req = NULL;
	struct fused_reply rr;
	bool now;

	pthread_mutex_lock(&f->pend_mu);
	now = fused_ackring_local_done(f->ack, seq, r, &req); /* the ack came first: reply now */
	if (now && r->st.in)
		rr = *fused_ackring_reply(f->ack, seq); /* with the ack's stamp */
	pthread_cond_broadcast(&f->pend_cv); /* the slot may be free again */
	pthread_mutex_unlock(&f->pend_mu);
	if (now)
		fused_reply_send(req, r->st.in ? &rr : r);
}

/* ---- resync requests answered by a SUMS frame ---- */

int fused_repl_ask(struct fused *f, uint64_t gen, struct sk_rmsg_op *op, int path_fd,
		   struct sk_rmsg_sums *out, uint8_t *sums_buf, bool (*ready)(struct fused *))
{
	static uint64_t req_id;
	char path[PATH_MAX];
	int rc = 0;

	pthread_mutex_lock(&f->stream_mu);
	if (!atomic_load(&f->connected) || f->conn_gen != gen) {
		pthread_mutex_unlock(&f->stream_mu);
		return -ECONNRESET;
	}
	if (ready && !ready(f)) {
		pthread_mutex_unlock(&f->stream_mu);
		return -EAGAIN;
	}
	if (path_fd >= 0) {
		int n = fused_fd_path(f, path_fd, path, sizeof(path));

		if (n < 0) {
			pthread_mutex_unlock(&f->stream_mu);
			return n;
		}
		op->path1 = path;
		op->path1_len = (uint16_t)n;
	}
	op->fh = ++req_id;
	pthread_mutex_lock(&f->rs_mu);
	f->rs_req_waiting = op->fh;
	f->rs_reply_ready = false;
	f->rs_sums = sums_buf;
	pthread_mutex_unlock(&f->rs_mu);
	send_frame(f, op, NULL, 0, NULL, NULL, NULL, false, 0);
	pthread_mutex_unlock(&f->stream_mu);

	pthread_mutex_lock(&f->rs_mu);
	while (!f->rs_reply_ready && atomic_load(&f->connected) && f->conn_gen == gen &&
	       !atomic_load(&f->stop))
		pthread_cond_wait(&f->rs_cv, &f->rs_mu);
	if (f->rs_reply_ready)
		*out = f->rs_reply;
	else
		rc = -ECONNRESET;
	f->rs_req_waiting = 0;
	pthread_mutex_unlock(&f->rs_mu);
	return rc;
}

int fused_repl_rs_pace(struct fused *f, uint64_t gen)
{
	return fused_repl_rs_pace_frames(f, gen, RS_FRAMES_MAX);
}

int fused_repl_rs_pace_frames(struct fused *f, uint64_t gen, uint64_t max_frames)
{
	bool ok;

	if (max_frames > RS_FRAMES_MAX)
		max_frames = RS_FRAMES_MAX;
	pthread_mutex_lock(&f->pend_mu);
	while (atomic_load(&f->connected) && f->conn_gen == gen && !atomic_load(&f->stop) &&
	       (f->inflight_cost >= f->rs_win || f->seq_sent - f->seq_acked >= max_frames ||
		f->inflight_bytes >= RS_BYTES_MAX)) {
		pend_wait_ms(f, 10);
	}
	ok = atomic_load(&f->connected) && f->conn_gen == gen && !atomic_load(&f->stop);
	pthread_mutex_unlock(&f->pend_mu);
	return ok ? 0 : -ECONNRESET;
}

void fused_repl_on_sums(struct fused *f, const struct sk_rmsg_sums *s)
{
	pthread_mutex_lock(&f->rs_mu);
	if (s->req == f->rs_req_waiting && !f->rs_reply_ready) {
		f->rs_reply = *s;
		memcpy(f->rs_sums, s->sums, (size_t)s->count * SK_RMSG_SUM_LEN);
		f->rs_reply.sums = f->rs_sums;
		f->rs_reply_ready = true;
		pthread_cond_broadcast(&f->rs_cv);
	} else {
		fused_rs_on_sums(f, s); /* a request sent ahead (rs_sums.c), or refused there */
	}
	pthread_mutex_unlock(&f->rs_mu);
}

/* ---- connection ---- */

static int dial(struct fused *f)
{
	struct sockaddr_storage sa;
	unsigned salen;
	struct pollfd pfd[2];
	int fd, one = 1, buf = SOCK_BUF, err = 0;
	socklen_t el = sizeof(err);

	if (sk_sockaddr_from(f->peer_host, f->peer_port, &sa, &salen) < 0)
		return -EINVAL;
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, salen) < 0 && errno != EINPROGRESS) {
		err = errno;
		goto fail;
	}
	pfd[0] = (struct pollfd){ .fd = fd, .events = POLLOUT };
	pfd[1] = (struct pollfd){ .fd = f->stop_fd, .events = POLLIN };
	if (poll(pfd, 2, 1000) < 1 || !(pfd[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
		err = atomic_load(&f->stop) ? ECANCELED : ETIMEDOUT;
		goto fail;
	}
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
	if (err)
		goto fail;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
fail:
	close(fd);
	return -err;
}

/* Under stream_mu: first frames of a connection (mode, then the handles apps hold open). */
static void session_begin(struct fused *f)
{
	struct sk_rmsg_op op = { .type = SK_RMSG_START, .flags = f->mode };
	struct sk_gen_wire w = { .changed_files = SK_GEN_UNKNOWN, .changed_bytes = SK_GEN_UNKNOWN };
	uint8_t gb[SK_GEN_WIRE_LEN];
	char path[PATH_MAX];
	struct fused_fh *h;

	/* our generations: the secondary answers (GEN) whether it may take this copy */
	pthread_mutex_lock(&f->state_mu);
	w.g = f->gen;
	if (f->survivor)
		op.flags |= SK_START_F_SURVIVOR;
	pthread_mutex_unlock(&f->state_mu);
	/* what we changed since the shared generation, and the peer's own changes asked for
	 * (ownlist.h: an incremental resync covers both) */
	fused_own_primary_figures(f, &w.changed_files, &w.changed_bytes);
	op.flags |= fused_own_start(f, f->conn_gen);
	sk_gen_encode(&w, gb);
	atomic_store(&f->resyncing, true);
	f->rs_state = 1;
	fused_rs_reset(f);
	send_frame(f, &op, gb, sizeof(gb), NULL, NULL, NULL, false, 0);
	for (h = f->fh_list.next; h != &f->fh_list && atomic_load(&f->connected); h = h->next) {
		struct sk_rmsg_op o = { .type = SK_RMSG_OPEN, .fh = h->id };
		int n = fused_fd_path(f, h->fd, path, sizeof(path));

		if (n < 0) {
			o.flags = SK_RO_ORPHAN;
		} else {
			o.path1 = path;
			o.path1_len = (uint16_t)n;
		}
		send_frame(f, &o, NULL, 0, NULL, NULL, NULL, false, 0);
	}
}

static void *resync_main(void *arg)
{
	struct fused *f = arg;

	fused_resync_run(f, f->conn_gen);
	return NULL;
}

/* Nothing buffered: sleep until the peer sends (0) or a sender kicks (1: the caller polls). */
static int ack_wait(int fd, struct fused_rbuf *rb)
{
	struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = kick_fd, .events = POLLIN } };
	uint64_t v;
	int rc;

	if (kick_fd < 0)
		return fused_rbuf_fill(fd, rb);
	/* a frame sent between our last look and this store is not kicked for: its ack wakes
	 * us, as without the kick */
	atomic_store(&ack_sleeping, true);
	do
		rc = poll(p, 2, -1);
	while (rc < 0 && errno == EINTR);
	atomic_store(&ack_sleeping, false);
	if (rc < 0)
		return -errno;
	if ((p[1].revents & POLLIN) && read(kick_fd, &v, sizeof(v)) < 0)
		v = 0; /* EAGAIN: another look took it; nothing to do */
	if (!p[0].revents)
		return (p[1].revents & POLLIN) ? 1 : 0;
	rc = rbuf_read(fd, rb, MSG_DONTWAIT); /* a shut-down socket: its error */
	return rc == -EAGAIN ? 0 : rc;
}

/* Read acks and checksum replies until the connection ends. */
static void ack_loop(struct fused *f, int fd, uint64_t gen)
{
	struct fused_rbuf rb;
	struct sk_frame fr;
	enum sk_reject why;
	const char *lost = "connection closed";
	bool kicked = false; /* woken by a sender: its answer comes within a round trip */

	if (fused_rbuf_init(&rb) < 0)
		return fused_peer_lost(f, gen, "out of memory");
	for (;;) {
		long n = fused_rbuf_next(&f->chan, &rb, &fr, &why);
		int own;

		if (n < 0) {
			atomic_fetch_add(&f->rejected, 1);
			sk_warn("frame from peer refused: %s", sk_reject_str(why));
			lost = "bad frame from peer";
			break;
		}
		if (n == 0) {
			int rc = 0;

			/* an answer is due (a corked frame's is not): poll for it first, longer
			 * when a sender just woke us for it */
			if (atomic_load(&seq_wire) > f->seq_acked) {
				rc = fused_rbuf_spin(fd, &rb, kicked ? ack_spin_us : FUSED_SPIN_US);
				if (rc > 0 && kicked)
					atomic_fetch_add(&fused_ack_spin_hits, 1);
			}
			kicked = false;
			if (rc == 0 && (rc = ack_wait(fd, &rb)) > 0) {
				kicked = true;
				rc = 0;
			} else if (rc > 0) {
				rc = 0;
			}

			if (rc < 0)
				break;
			continue;
		}
		/* the peer's list of its own changes, after its GEN (ownlist.h) */
		own = fused_own_peer_frame(f, gen, fr.type, fr.payload, fr.len);
		if (own < 0) {
			atomic_fetch_add(&f->rejected, 1);
			lost = "bad list of the peer's own changes";
			break;
		}
		if (own > 0)
			continue;
		if (fr.type == SK_RMSG_ACK) {
			struct sk_rmsg_ack a;

			if (sk_rmsg_ack_decode(fr.payload, fr.len, &a) < 0 ||
			    a.applied > f->seq_sent || (fr.flags & ~FUSED_ACK_F_BUSY) ||
			    ((fr.flags & FUSED_ACK_F_BUSY) && a.err)) {
				atomic_fetch_add(&f->rejected, 1);
				lost = "bad ack from peer";
				break;
			}
			if (fr.flags & FUSED_ACK_F_BUSY) { /* alive, busy: acknowledges nothing */
				uint64_t k = atomic_fetch_add(&ka_count, 1) + 1;

				atomic_store(&ka_busy_us, a.err_seq);
				atomic_store(&ka_at_us, sk_now_us());
				if (k == 1 || k % 100 == 0) /* seen, not every 20 ms */
					sk_info("peer busy: %llu busy keepalives on this connection (the last "
						"%llu ms into one operation)", (unsigned long long)k,
						(unsigned long long)a.err_seq / 1000);
				continue;
			}
			if (a.err) { /* the peer reports only real divergence (see recv.c benign) */
				sk_warn("peer failed to apply op #%llu: %s",
					(unsigned long long)a.err_seq, strerror(a.err));
				lost = "peer could not apply an operation";
				break;
			}
			pthread_mutex_lock(&f->pend_mu);
			if (a.applied > f->seq_acked)
				retire(f, a.applied, true);
			pthread_mutex_unlock(&f->pend_mu);
		} else if (fr.type == SK_RMSG_FAILED) {
			struct sk_rmsg_op op;
			struct fused_rs_fail *e;
			const char *why;

			if (sk_rmsg_op_decode(fr.type, fr.payload, fr.len, &op, &why) < 0) {
				atomic_fetch_add(&f->rejected, 1);
				lost = "bad report from peer";
				break;
			}
			/* queued for the resync walker: this thread never takes stream_mu */
			pthread_mutex_lock(&f->rs_mu);
			if (f->rs_fail_n >= 1024 || !(e = calloc(1, sizeof(*e)))) {
				f->rs_fail_full = true;
			} else {
				e->fh = op.fh;
				memcpy(e->p1, op.path1, op.path1_len);
				memcpy(e->p2, op.path2, op.path2_len);
				e->next = f->rs_fail;
				f->rs_fail = e;
				f->rs_fail_n++;
			}
			pthread_mutex_unlock(&f->rs_mu);
		} else if (fr.type == SK_RMSG_SUMS) {
			struct sk_rmsg_sums s;

			if (sk_rmsg_sums_decode(fr.payload, fr.len, &s) < 0) {
				atomic_fetch_add(&f->rejected, 1);
				lost = "bad checksums from peer";
				break;
			}
			fused_repl_on_sums(f, &s);
		} else if (fr.type == SK_RMSG_RS_EMPTY) { /* a listing's answer (rs_empty.c) */
			if (fused_rs_on_empty(f, fr.payload, fr.len) < 0) {
				atomic_fetch_add(&f->rejected, 1);
				lost = "bad listing answer from peer";
				break;
			}
		} else if (fr.type == SK_RMSG_GEN) {
			struct sk_gen_wire w;

			if (sk_gen_decode(fr.payload, fr.len, &w) < 0) {
				atomic_fetch_add(&f->rejected, 1);
				lost = "bad generation answer from peer";
				break;
			}
			fused_gen_on_answer(f, &w);
			if (w.verdict == SK_GEN_V_DIVERGED) {
				lost = "peer refused the session: the copies diverged (split brain)";
				break;
			}
			if (w.verdict == SK_GEN_V_PRIMARY_OLDER) {
				lost = "peer refused the session: its copy is newer than ours";
				break;
			}
		} else {
			atomic_fetch_add(&f->rejected, 1);
			lost = "unexpected frame type from peer";
			break;
		}
	}
	fused_rbuf_free(&rb);
	fused_peer_lost(f, gen, lost);
}

static void *conn_main(void *arg)
{
	struct fused *f = arg;
	unsigned backoff_s = 1;
	bool said = false;

	while (!atomic_load(&f->stop)) {
		struct sk_chan ch;
		uint32_t peer_node = 0;
		pthread_t rs;
		uint64_t gen;
		int fd = dial(f), rc;

		if (fd >= 0) {
			rc = sk_chan_connect_fd(fd, &f->master,
						SK_CHAN_REPL | (f->no_encrypt ? SK_CHAN_F_PLAIN : 0),
						f->node_id, f->module_id, &ch, &peer_node, 2000);
			if (rc < 0) {
				sk_warn("handshake with %s:%u failed: %s", f->peer_host, f->peer_port,
					sk_chan_strerror(rc));
				close(fd);
				fd = rc;
			}
		}
		if (fd < 0) {
			if (!said)
				sk_info("peer %s:%u not reachable (%s); serving ALONE, retrying",
					f->peer_host, f->peer_port, strerror(-fd));
			said = true;
			if (fused_dirty_g) /* alone: nothing in flight, the log may be rewritten */
				fused_dirty_maybe_compact(fused_dirty_g);
			/* the connect itself waits up to 1 s: retry soon, a healed link is used at once */
			fused_stop_wait(f, 300);
			continue;
		}
		said = false;
		pthread_mutex_lock(&f->stream_mu);
		pthread_mutex_lock(&f->peer_mu);
		pthread_mutex_lock(&f->pend_mu);
		f->chan = ch;
		f->sock = fd;
		gen = ++f->conn_gen;
		f->seq_sent = f->seq_acked = 0;
		atomic_store(&seq_wire, 0);
		f->inflight_bytes = 0;
		f->inflight_cost = 0;
		f->last_ack_us = sk_now_us();
		f->rs_win = RS_WIN_INIT;
		rs_dec_seq = 0;
		rs_busy_us = rs_busy_cost = rs_rate = 0;
		rs_busy = false;
		atomic_store(&ka_at_us, 0);
		atomic_store(&ka_busy_us, 0);
		atomic_store(&ka_count, 0);
		fused_ackring_reset(f->ack);
		atomic_store(&f->connected, true);
		pthread_mutex_unlock(&f->pend_mu);
		pthread_mutex_unlock(&f->peer_mu);
		session_begin(f);
		pthread_mutex_unlock(&f->stream_mu);
		sk_info("connected to peer node %u at %s:%u (stream %s); resynchronising", peer_node,
			f->peer_host, f->peer_port, sk_chan_aead_str(&ch));

		rc = pthread_create(&rs, NULL, resync_main, f);
		ack_loop(f, fd, gen);
		if (rc == 0)
			pthread_join(rs, NULL);
		pthread_mutex_lock(&f->stream_mu);
		f->sock = -1;
		pthread_mutex_unlock(&f->stream_mu);
		close(fd);
		/* a peer that cannot finish a resync (disk full, ...) is retried less and less often;
		 * one that refused us is asked again every 5 s, at once when the operator chose */
		backoff_s = f->rs_state == 2 ? 1 : (backoff_s * 2 > 30 ? 30 : backoff_s * 2);
		if (f->peer_verdict == SK_GEN_V_DIVERGED || f->peer_verdict == SK_GEN_V_PRIMARY_OLDER)
			backoff_s = 5;
		else if (backoff_s > 1)
			sk_info("resync not completed; next attempt in %u s", backoff_s);
		/* the stop wakes this at once; the operator's choice (wake) within 0.1 s */
		for (unsigned i = 0; i < backoff_s * 10 && !atomic_exchange(&f->wake, false) &&
				     !fused_stop_wait(f, 100); i++)
			;
	}
	return NULL;
}

/*
 * Drops a peer that keeps an application waiting longer than the budget, or
 * that stopped acknowledging altogether. Frames nobody waits for (resync,
 * already answered) may be older than the budget while acks keep coming: they
 * queue behind each other, and the pacing above keeps that queue short.
 * A peer whose receiver is stuck in one operation (the kernel's writeback, a
 * starved CPU) says so with "alive, busy" keepalives: that is not silence, as
 * long as the operation has not run for more than twice the limit. So the peer
 * is dropped for silence a limit after its last ack or keepalive, as before a
 * limit after its last ack. During a resync, an application's request may wait
 * up to twice the limit while the peer is not silent in that sense:
 * the resync's work on a healthy peer is not what the budget is for. A stopped
 * process or a cut link sends nothing and is dropped within the limit as before.
 */
static void *budget_main(void *arg)
{
	struct fused *f = arg;
	uint64_t step_us = (uint64_t)f->budget_ms * 1000 / 20;
	uint64_t limit_us;

	if (step_us > 5000)
		step_us = 5000;
	/* act early enough that detection, the state fsync and the replies fit in the budget */
	limit_us = (uint64_t)f->budget_ms * 800;
	while (!atomic_load(&f->stop)) {
		uint64_t gen = 0, now, age = 0, quiet = 0, ops = 0, cost = 0, late_age = 0;
		uint64_t ka_at, ka_busy;
		unsigned t_old = 0, t_late = 0;
		bool late = false, stalled = false, busy, alive;

		usleep((useconds_t)step_us);
		now = sk_now_us();
		/* corked frames with nothing after them: out now (a busy stream_mu sends them itself) */
		if (atomic_load(&cork_at_us) && now >= atomic_load(&cork_at_us) + cork_max_us &&
		    pthread_mutex_trylock(&f->stream_mu) == 0) {
			fused_repl_flush(f);
			pthread_mutex_unlock(&f->stream_mu);
		}
		ka_at = atomic_load(&ka_at_us);
		ka_busy = atomic_load(&ka_busy_us);
		pthread_mutex_lock(&f->pend_mu);
		/* busy: a keepalive came lately, for an operation that has not run too long */
		busy = ka_at > f->last_ack_us && now <= ka_at + limit_us &&
		       ka_busy + (now - ka_at) <= 2 * limit_us;
		alive = busy || now <= f->last_ack_us + limit_us;
		if (atomic_load(&f->connected) && f->seq_acked < f->seq_sent) {
			uint64_t s = f->seq_acked + 1;
			const struct fused_pending *p = fused_ackring_get(f->ack, s);

			if (p && now > p->t_us + limit_us) {
				age = now - p->t_us;
				t_old = p->type;
				quiet = now - f->last_ack_us;
				ops = f->seq_sent - f->seq_acked;
				cost = f->inflight_cost;
				/* no ack for a whole budget: stuck, whatever waits */
				stalled = now > f->last_ack_us + limit_us && !busy;
				/* frames go out in time order: only the prefix over the limit
				 * can hold an application's request that is over it */
				for (; !stalled && !late && s <= f->seq_sent; s++) {
					p = fused_ackring_get(f->ack, s);
					if (!p || now <= p->t_us + limit_us)
						break;
					if (p->req && atomic_load(&f->resyncing) && alive &&
					    now <= p->t_us + 2 * limit_us)
						continue; /* a busy resync on a live peer: not yet */
					late = p->req != NULL;
					t_late = p->type;
					late_age = now - p->t_us;
				}
			}
			gen = f->conn_gen;
		}
		pthread_mutex_unlock(&f->pend_mu);
		if (stalled || late)
			sk_warn("oldest frame (type %u) %llu ms old, last ack %llu ms ago, %llu frames "
				"(cost %llu) in flight; late: %s (type %u, %llu ms); last busy keepalive "
				"%lld ms ago (%llu ms into an operation)", t_old,
				(unsigned long long)age / 1000, (unsigned long long)quiet / 1000,
				(unsigned long long)ops, (unsigned long long)cost,
				late ? "an application's request" : "every frame", late ? t_late : t_old,
				(unsigned long long)late_age / 1000,
				ka_at ? (long long)(now - ka_at) / 1000 : -1LL,
				(unsigned long long)ka_busy / 1000);
		if (stalled)
			fused_peer_lost(f, gen, "peer stopped acknowledging within the latency budget");
		else if (late)
			fused_peer_lost(f, gen, "peer exceeded the latency budget");
	}
	return NULL;
}

/* A start that fails half-way leaves only what fused_repl_stop can undo: it joins
 * the threads that did start, never one that did not. */
static bool conn_started, budget_started;

static int thread_start(pthread_t *t, void *(*fn)(void *), struct fused *f)
{
	if (fused_fault(FUSED_FAULT_REPL_THREAD))
		return -EAGAIN;
	return -pthread_create(t, NULL, fn, f);
}

int fused_repl_start(struct fused *f)
{
	int rc;

	f->sock = -1;
	f->fh_list.next = f->fh_list.prev = &f->fh_list;
	atomic_store(&f->fh_next, 1);
	if (getenv("SKFUSED_WRITE_MORE"))
		write_more = strcmp(getenv("SKFUSED_WRITE_MORE"), "1") == 0;
	if (getenv("SKFUSED_CORK"))
		cork_on = strcmp(getenv("SKFUSED_CORK"), "0") != 0;
	if (getenv("SKFUSED_ACK_SPIN_US"))
		ack_spin_us = (unsigned)strtoul(getenv("SKFUSED_ACK_SPIN_US"), NULL, 10);
	if (ack_spin_us > 10000)
		ack_spin_us = 10000; /* a CPU burnt per waited frame at most */
	if (ack_spin_us && kick_fd < 0)
		kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); /* none: the ack wakes the thread */
	if (getenv("SKFUSED_CORK_US"))
		cork_max_us = strtoull(getenv("SKFUSED_CORK_US"), NULL, 10);
	if (cork_max_us > (uint64_t)f->budget_ms * 1000 / 8)
		cork_max_us = (uint64_t)f->budget_ms * 1000 / 8;
	f->ack = calloc(1, sizeof(*f->ack));
	if (!f->ack || fused_ackring_init(f->ack, FUSED_RING) < 0)
		return -ENOMEM;
	rc = fused_rs_init(f);
	if (rc < 0)
		return rc;
	rc = thread_start(&conn_thread, conn_main, f);
	if (rc < 0)
		return rc;
	conn_started = true;
	rc = thread_start(&budget_thread, budget_main, f);
	if (rc < 0)
		return rc;
	budget_started = true;
	return 0;
}

void fused_repl_stop(struct fused *f)
{
	uint64_t deadline = sk_now_us() + (uint64_t)f->budget_ms * 1000;
	bool clean;

	/* The FUSE loop has ended: no frame is added now. Those still in flight (a RELEASE of
	 * the application just stopped, say) get their acks first, within the budget, so a
	 * peer that has everything is not left outdated by a stop that came 30 us early. */
	/* corked frames go now (if a resync holds the stream, the budget thread sends them) */
	if (pthread_mutex_trylock(&f->stream_mu) == 0) {
		fused_repl_flush(f);
		pthread_mutex_unlock(&f->stream_mu);
	}
	pthread_mutex_lock(&f->pend_mu);
	while (atomic_load(&f->connected) && f->seq_acked != f->seq_sent && sk_now_us() < deadline) {
		pend_wait_ms(f, 5);
	}
	pthread_mutex_unlock(&f->pend_mu);
	fused_stop(f);
	/* Everything acknowledged: the peer stays in sync across our restart. */
	pthread_mutex_lock(&f->peer_mu);
	pthread_mutex_lock(&f->pend_mu);
	clean = atomic_load(&f->connected) && f->seq_acked == f->seq_sent &&
		!atomic_load(&f->resyncing);
	if (clean) {
		atomic_store(&f->connected, false);
		shutdown(f->sock, SHUT_RDWR);
	}
	pthread_mutex_unlock(&f->pend_mu);
	pthread_mutex_unlock(&f->peer_mu);
	if (!clean)
		fused_peer_lost(f, f->conn_gen, "shutting down");
	if (conn_started)
		pthread_join(conn_thread, NULL);
	if (budget_started)
		pthread_join(budget_thread, NULL);
	conn_started = budget_started = false;
	if (kick_fd >= 0)
		close(kick_fd);
	kick_fd = -1;
}
