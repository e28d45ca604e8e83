/* fused/recv.c: the secondary's connection: authenticate newcomers, read frames in batches, apply them in order, ack. */
#include "recv.h"
#include "ownlist.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

#define BATCH_MAX 256
/*
 * In sync mode a batch is acked when it is applied; one that takes longer
 * (resync listings, fsyncs) is acked every ACK_EVERY_US as well, so the
 * primary sees progress long before its latency budget runs out.
 */
#define ACK_EVERY_US 10000
/*
 * "Alive, busy": when one operation keeps the receiver past KEEPALIVE_US without an ack
 * (a create or an fsync stuck behind the kernel's writeback, a starved CPU), another thread
 * tells the primary, so its budget can tell a busy peer from a dead one (repl.c). A stopped
 * process or a cut link sends nothing, and the primary drops it as before.
 */
#define KEEPALIVE_US 20000
static _Atomic uint64_t rx_ack_us;  /* when the last ack went out */
/* acks left to a later frame: the batch ended on a write's piece with more to come (fused.h) */
_Atomic uint64_t fused_rx_acks_deferred;
static _Atomic uint64_t rx_busy_us; /* receiver: when its current operation began; 0 idle */
/*
 * Where a session's time goes on this side (the receiver thread only), logged when a resync
 * completes: applying each kind of frame, reading and opening frames, acks; the rest of the
 * time since START the receiver waited for the primary. Counted only while this copy is being
 * resynchronised (from START to the end that makes it consistent): in sync, frames pay no
 * clock read for it.
 */
enum { RXK_START, RXK_DIR, RXK_DATA, RXK_META, RXK_RS, RXK_LIVE, RXK_N };
static struct {
	uint64_t t0, cpu0, us[RXK_N], n[RXK_N], data_bytes, read_us, ack_us;
} rxs;

static int rx_kind(uint8_t type)
{
	switch (type) {
	case SK_RMSG_START:
		return RXK_START;
	case SK_RMSG_RS_DIR:
		return RXK_DIR;
	case SK_RMSG_RS_DATA:
		return RXK_DATA;
	case SK_RMSG_RS_META:
		return RXK_META;
	default:
		return type >= SK_RMSG_RS_DIR ? RXK_RS : RXK_LIVE;
	}
}

static void rx_report(void)
{
	uint64_t all = sk_now_us() - rxs.t0, busy = rxs.read_us + rxs.ack_us;

	for (int k = 0; k < RXK_N; k++)
		busy += rxs.us[k];
	sk_info("resync applied in %.3f s since START (ms): receiver CPU %.1f; start %.1f, listings %.1f (%llu), data "
		"%.1f (%llu frames, %llu bytes), metadata %.1f (%llu), other resync %.1f (%llu), live "
		"%.1f (%llu), frames read and opened %.1f, acks %.1f, waiting for the primary %.1f",
		all / 1e6, (sk_thread_cpu_us() - rxs.cpu0) / 1e3, rxs.us[RXK_START] / 1e3, rxs.us[RXK_DIR] / 1e3,
		(unsigned long long)rxs.n[RXK_DIR], rxs.us[RXK_DATA] / 1e3,
		(unsigned long long)rxs.n[RXK_DATA], (unsigned long long)rxs.data_bytes,
		rxs.us[RXK_META] / 1e3, (unsigned long long)rxs.n[RXK_META], rxs.us[RXK_RS] / 1e3,
		(unsigned long long)rxs.n[RXK_RS], rxs.us[RXK_LIVE] / 1e3,
		(unsigned long long)rxs.n[RXK_LIVE], rxs.read_us / 1e3, rxs.ack_us / 1e3,
		all > busy ? (all - busy) / 1e3 : 0.0);
}

/*
 * Every frame this node sends goes under tx_mu: the receiver's acks and answers, and the
 * keepalive thread's. tx_live says x->sock and x->chan belong to a live session.
 */
static pthread_mutex_t tx_mu = PTHREAD_MUTEX_INITIALIZER;
static bool tx_live;

int fused_rx_send(struct sk_chan *c, int sock, uint8_t type, uint16_t flags, uint32_t module,
		  const struct iovec *iov, int n)
{
	int rc;

	pthread_mutex_lock(&tx_mu);
	rc = sk_chan_send_fd(c, sock, type, flags, module, iov, n);
	pthread_mutex_unlock(&tx_mu);
	return rc;
}

int fused_rx_send_ack(struct rx *x)
{
	struct sk_rmsg_ack a = { .applied = x->applied, .err_seq = x->err_seq, .err = x->err };
	uint8_t buf[SK_RMSG_ACK_LEN];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	int rc;

	sk_rmsg_ack_encode(&a, buf);
	pthread_mutex_lock(&tx_mu);
	atomic_store(&rx_ack_us, sk_now_us());
	x->acked = x->applied;
	x->err = 0; /* each failure is reported once */
	x->err_seq = 0;
	rc = sk_chan_send_fd(&x->chan, x->sock, SK_RMSG_ACK, 0, x->f->module_id, &iov, 1);
	pthread_mutex_unlock(&tx_mu);
	fused_stage_rx_acked(); /* the last applied frame's stage times (stages.h) */
	return rc;
}

/*
 * The keepalive: an ACK flagged FUSED_ACK_F_BUSY, applied = what was already acked (it
 * acknowledges nothing new: an operation's ack must carry its error), err_seq = how long the
 * current operation has run (us), err 0. Older primaries see an ack that advances nothing.
 */
static void *keepalive_main(void *arg)
{
	struct rx *x = arg;

	while (!atomic_load(&x->f->stop)) {
		uint64_t now, busy;

		usleep(KEEPALIVE_US / 2);
		now = sk_now_us();
		busy = atomic_load(&rx_busy_us);
		if (!busy || now < busy + KEEPALIVE_US || now < atomic_load(&rx_ack_us) + KEEPALIVE_US)
			continue;
		pthread_mutex_lock(&tx_mu);
		if (tx_live) {
			struct sk_rmsg_ack a = { .applied = x->acked, .err_seq = now - busy };
			uint8_t buf[SK_RMSG_ACK_LEN];
			struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };

			sk_rmsg_ack_encode(&a, buf);
			atomic_store(&rx_ack_us, now);
			/* a failed send is the receiver's to notice */
			sk_chan_send_fd(&x->chan, x->sock, SK_RMSG_ACK, FUSED_ACK_F_BUSY, x->f->module_id,
					&iov, 1);
			atomic_fetch_add(&x->keepalives, 1);
		}
		pthread_mutex_unlock(&tx_mu);
	}
	return NULL;
}

/* ---- connection ---- */

static int listen_on(struct fused *f)
{
	struct sockaddr_storage sa;
	unsigned salen;
	int fd, one = 1;

	if (sk_sockaddr_from(f->listen_host, f->listen_port, &sa, &salen) < 0)
		return -EINVAL;
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, salen) < 0 || listen(fd, 4) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	return fd;
}

/*
 * While a resync runs, an operation can meet a name that is not there yet, is
 * in the way, or is still of another type: walking its directory again
 * repairs that. Running out of space, I/O errors, a read-only tree do not.
 */
static bool benign(int e)
{
	return e != ENOSPC && e != EDQUOT && e != EIO && e != EROFS && e != ENOMEM &&
	       e != EMFILE && e != ENFILE && e != EFBIG && e != EPIPE;
}

static int report_failed(struct rx *x, const struct sk_rmsg_op *op)
{
	struct sk_rmsg_op r = { .type = SK_RMSG_FAILED };
	uint8_t buf[SK_RMSG_OP_HDR + 2 * (SK_RMSG_PATH_MAX + 1)];
	struct iovec iov;
	long n;

	if (op->path1_len || !op->fh) { /* a path (even the root's) says the most */
		r.path1 = op->path1;
		r.path1_len = op->path1_len;
		if (op->type == SK_RMSG_LINK || op->type == SK_RMSG_RENAME) {
			r.path2 = op->path2;
			r.path2_len = op->path2_len;
		}
	} else {
		r.fh = op->fh;
	}
	n = sk_rmsg_op_encode(&r, buf, sizeof(buf));
	if (n < 0)
		return 0;
	iov = (struct iovec){ .iov_base = buf, .iov_len = (size_t)n };
	return fused_rx_send(&x->chan, x->sock, SK_RMSG_FAILED, 0, x->f->module_id, &iov, 1);
}

/*
 * START: how our copy relates to the primary's decides whether this session may resync us
 * (only from a newer copy, or from the operator's survivor). The answer goes out first; a
 * refused session is closed before anything of it is applied.
 */
static int start_gen(struct rx *x, const struct sk_rmsg_op *op)
{
	struct fused *f = x->f;
	struct sk_gen_wire pw, me = { .changed_files = SK_GEN_UNKNOWN,
				      .changed_bytes = SK_GEN_UNKNOWN };
	uint8_t buf[SK_GEN_WIRE_LEN];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	bool has = op->data_len == SK_GEN_WIRE_LEN;
	int v;

	if (has && sk_gen_decode(op->data, op->data_len, &pw) < 0) {
		sk_warn("START refused: malformed generation set");
		return -EBADMSG;
	}
	v = fused_gen_on_start(f, has ? &pw : NULL, op->flags & SK_START_F_SURVIVOR);
	if (!has)
		return 0; /* an older primary would not understand the answer */
	pthread_mutex_lock(&f->state_mu);
	me.g = f->gen;
	pthread_mutex_unlock(&f->state_mu);
	/* what this copy changed on its own since the shared generation (split brain: the
	 * operator sees both sides' sizes) */
	fused_own_figures(&me.changed_files, &me.changed_bytes);
	me.verdict = (uint8_t)v;
	sk_gen_encode(&me, buf);
	if (fused_rx_send(&x->chan, x->sock, SK_RMSG_GEN, 0, f->module_id, &iov, 1) < 0)
		return -EPIPE;
	/* accepted: the primary's incremental resync covers our own changes too (ownlist.h);
	 * they reach it before the answer to anything it sends after START */
	if (v == SK_GEN_V_OK && (op->flags & SK_START_F_OWNLIST) &&
	    fused_own_send(f, &x->chan, x->sock) < 0)
		return -EPIPE;
	return v == SK_GEN_V_OK || v == SK_GEN_V_FORCED ? 0 : -EPIPE;
}

/*
 * A batch that ends on a write's piece with more to come (FUSED_FRAME_F_MORE) is acked with
 * the next piece, which the primary sends at once and waits for; the receiver acks it anyway
 * after ACK_EVERY_US without a frame (serve). A failure to report is never held back.
 */
static bool ack_later(const struct rx *x, const struct sk_frame *last)
{
	return (last->flags & FUSED_FRAME_F_MORE) && last->type == SK_RMSG_WRITE && !x->err;
}

/*
 * Apply one batch of verified frames; acks as the mode asks. <0: drop the connection;
 * 1: the last ack was left to a later frame (ack_later).
 */
static int run_batch(struct rx *x, struct sk_frame *fr, int n)
{
	struct fused *f = x->f;
	int i;

	if (f->mode != SK_REPL_SYNC) { /* ack on receipt, except what an fsync must cover */
		uint64_t upto = x->applied;

		for (i = 0; i < n && fr[i].type != SK_RMSG_FSYNC; i++)
			upto = fr[i].seq;
		if (upto > x->acked && !(i > 0 && ack_later(x, &fr[i - 1]))) {
			uint64_t keep = x->applied;

			x->applied = upto;
			if (fused_rx_send_ack(x) < 0)
				return -EPIPE;
			x->applied = keep;
		}
	}
	for (i = 0; i < n; i++) {
		struct sk_rmsg_op op;
		const char *why = NULL;
		int rc, k;
		bool timed; /* a resync session's frame (the only ones rx_report tells of) */

		atomic_store(&rx_busy_us, sk_now_us()); /* this operation begins */

		if (fr[i].module != f->module_id ||
		    sk_rmsg_op_decode(fr[i].type, fr[i].payload, fr[i].len, &op, &why) < 0) {
			atomic_fetch_add(&f->rejected, 1);
			sk_warn("frame #%llu refused: %s", (unsigned long long)fr[i].seq,
				why ? why : "wrong module");
			return -EBADMSG;
		}
		if (op.type == SK_RMSG_START) {
			memset(&rxs, 0, sizeof(rxs));
			rxs.t0 = atomic_load(&rx_busy_us);
			rxs.cpu0 = sk_thread_cpu_us();
			if ((rc = start_gen(x, &op)) < 0)
				return rc;
		}
		timed = !f->consistent || op.type == SK_RMSG_START;
		rc = fused_apply(x, &op);
		if (timed) {
			k = rx_kind(op.type);
			rxs.us[k] += sk_now_us() - atomic_load(&rx_busy_us);
			rxs.n[k]++;
			if (k == RXK_DATA)
				rxs.data_bytes += op.data_len;
		}
		if (op.type == SK_RMSG_RS_END && rc == 0 && f->consistent)
			rx_report();
		if (rc == -EBADMSG) {
			atomic_fetch_add(&f->rejected, 1);
			return rc;
		}
		if (rc == -EPIPE)
			return rc;
		if (rc < 0 && !f->consistent && benign(-rc)) {
			/* met a part the resync has not reconciled yet: the primary walks
			 * its parents again, and this pass does not end before that */
			f->rs_errs++;
			sk_debug("op #%llu (type %u) met an unreconciled part: %s",
				 (unsigned long long)fr[i].seq, op.type, strerror(-rc));
			if (report_failed(x, &op) < 0)
				return -EPIPE;
		} else if (rc < 0 && !x->err) {
			/* anything else (no space, I/O error, read-only) is a real divergence */
			sk_warn("op #%llu (type %u, \"%.*s\", fh %llu, valid 0x%x) failed here: %s",
				(unsigned long long)fr[i].seq, op.type, (int)op.path1_len,
				op.path1_len ? op.path1 : "", (unsigned long long)op.fh, op.valid,
				strerror(-rc));
			x->err = -rc;
			x->err_seq = fr[i].seq;
		}
		x->applied = fr[i].seq;
		atomic_store(&f->applied_seq, x->applied);
		if (f->mode == SK_REPL_SYNC && i + 1 < n &&
		    sk_now_us() - atomic_load(&rx_ack_us) >= ACK_EVERY_US &&
		    fused_rx_send_ack(x) < 0)
			return -EPIPE;
	}
	atomic_store(&rx_busy_us, 0);
	if (x->applied > x->acked && ack_later(x, &fr[n - 1])) {
		atomic_fetch_add(&fused_rx_acks_deferred, 1);
		return 1;
	}
	if (x->applied > x->acked) {
		uint64_t t = f->consistent ? 0 : sk_now_us();

		if (fused_rx_send_ack(x) < 0)
			return -EPIPE;
		if (t)
			rxs.ack_us += sk_now_us() - t;
	}
	return 0;
}

/*
 * Newcomers authenticate on their own threads; only a connection that passed
 * the handshake for our module reaches the receiver (through this mailbox),
 * so a stranger's connect can neither drop nor delay the primary's stream.
 */
/*
 * Handshakes run at once, each bounded by HS_TIMEOUT_MS: a stranger holding connections open
 * delays a genuine primary by at most about one timeout per HS_MAX of them.
 */
#define HS_MAX 32
#define HS_TIMEOUT_MS 1000
static struct {
	pthread_mutex_t mu;
	int efd;         /* eventfd: the receiver polls it */
	int fd;          /* authenticated, not yet taken; -1 */
	struct sk_chan chan;
	uint32_t peer_node;
	int handshakes;  /* running handshake threads */
} mb = { .mu = PTHREAD_MUTEX_INITIALIZER, .efd = -1, .fd = -1 };

struct hs_arg {
	struct fused *f;
	int fd;
};

static void *hs_main(void *arg)
{
	struct hs_arg *h = arg;
	struct fused *f = h->f;
	struct sk_chan ch;
	uint32_t peer_node = 0, module = 0;
	enum sk_reject why;
	int one = 1, buf = 8 << 20, rc;
	uint64_t v = 1;

	setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(h->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	setsockopt(h->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	memset(&ch, 0, sizeof(ch));
	rc = sk_chan_accept_fd(h->fd, &f->master, SK_CHAN_REPL | (f->no_encrypt ? SK_CHAN_F_PLAIN : 0),
			       f->node_id, &ch, &peer_node, &module,
			       HS_TIMEOUT_MS, &why);
	if (rc == 0 && module != f->module_id) {
		rc = -EBADMSG;
		why = SK_REJ_HANDSHAKE;
	}
	if (rc < 0) {
		if (rc == -EBADMSG)
			atomic_fetch_add(&f->rejected, 1);
		sk_warn("replication handshake refused: %s",
			rc == -EBADMSG ? sk_reject_str(why) : strerror(-rc));
		close(h->fd);
	} else {
		pthread_mutex_lock(&mb.mu);
		if (mb.fd >= 0)
			close(mb.fd); /* an older newcomer nobody took: the latest wins */
		mb.fd = h->fd;
		mb.chan = ch;
		mb.peer_node = peer_node;
		pthread_mutex_unlock(&mb.mu);
		if (write(mb.efd, &v, sizeof(v)) < 0)
			sk_warn("eventfd: %s", strerror(errno));
	}
	pthread_mutex_lock(&mb.mu);
	mb.handshakes--;
	pthread_mutex_unlock(&mb.mu);
	free(h);
	return NULL;
}

static int acc_lfd = -1;

static void *accept_main(void *arg)
{
	struct fused *f = arg;
	int lfd = acc_lfd;

	while (!atomic_load(&f->stop)) {
		struct pollfd p[2] = { { .fd = lfd, .events = POLLIN },
				       { .fd = f->stop_fd, .events = POLLIN } };
		struct hs_arg *h;
		pthread_attr_t at;
		pthread_t t;
		bool busy;
		int c;

		/* the stop wakes it (stop_fd); the timeout is only a safety net */
		if (poll(p, 2, 1000) <= 0 || !(p[0].revents & POLLIN))
			continue;
		c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		pthread_mutex_lock(&mb.mu);
		busy = mb.handshakes >= HS_MAX;
		if (!busy)
			mb.handshakes++;
		pthread_mutex_unlock(&mb.mu);
		h = busy ? NULL : malloc(sizeof(*h));
		if (!h) {
			if (!busy) {
				pthread_mutex_lock(&mb.mu);
				mb.handshakes--;
				pthread_mutex_unlock(&mb.mu);
			}
			close(c); /* too many half-open strangers: refuse, the primary retries */
			continue;
		}
		h->f = f;
		h->fd = c;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &at, hs_main, h) != 0) {
			close(c);
			free(h);
			pthread_mutex_lock(&mb.mu);
			mb.handshakes--;
			pthread_mutex_unlock(&mb.mu);
		}
		pthread_attr_destroy(&at);
	}
	return NULL;
}

/* Take an authenticated newcomer, if any. */
static int mb_take(struct rx *x, uint32_t *peer_node)
{
	uint64_t v;
	int fd;

	if (read(mb.efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -1;
	pthread_mutex_lock(&mb.mu);
	fd = mb.fd;
	if (fd >= 0) {
		x->chan = mb.chan;
		*peer_node = mb.peer_node;
		mb.fd = -1;
	}
	pthread_mutex_unlock(&mb.mu);
	return fd;
}

static bool mb_ready(void)
{
	bool r;

	pthread_mutex_lock(&mb.mu);
	r = mb.fd >= 0;
	pthread_mutex_unlock(&mb.mu);
	return r;
}

/* Serve one connection; returns when it ends or an authenticated newcomer replaces it. */
static void serve(struct rx *x)
{
	struct fused *f = x->f;
	struct sk_frame fr[BATCH_MAX];
	struct fused_rbuf rb;
	enum sk_reject why;
	bool full = false, later = false; /* later: an ack left to the next frame (run_batch) */

	if (fused_rbuf_init(&rb) < 0)
		return;
	for (;;) {
		struct pollfd p[3] = { { .fd = x->sock, .events = POLLIN },
				       { .fd = mb.efd, .events = POLLIN },
				       { .fd = f->stop_fd, .events = POLLIN } };
		int n = 0, rc;
		long got = 0;

		if (full) {
			/* the last batch stopped at BATCH_MAX: complete frames may still be
			 * buffered, and a blocking read would hold them (and their acks) until
			 * the primary sends more, which it may not before its budget expires */
			full = false;
		} else if (rb.start == rb.end) {
			rc = fused_rbuf_spin(x->sock, &rb, FUSED_SPIN_US);
			if (rc < 0)
				break;
			if (rc == 0) {
				rc = poll(p, 3, later ? ACK_EVERY_US / 1000 : 1000);
				if (atomic_load(&f->stop))
					break;
				if (rc == 0 && later) { /* nothing followed the piece: ack it now */
					later = false;
					if (x->applied > x->acked && fused_rx_send_ack(x) < 0)
						break;
					continue;
				}
				if (rc > 0 && (p[1].revents & POLLIN)) {
					uint64_t v;

					if (mb_ready())
						break; /* the primary reconnected (it restarted) */
					if (read(mb.efd, &v, sizeof(v)) < 0)
						v = 0;
				}
				if (rc <= 0 || !(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				if (fused_rbuf_fill(x->sock, &rb) < 0)
					break;
			}
		} else {
			/* part of a frame is buffered: the rest is on its way, but a deferred ack
			 * does not wait for it longer than ACK_EVERY_US */
			struct pollfd q = { .fd = x->sock, .events = POLLIN };

			if (later && poll(&q, 1, ACK_EVERY_US / 1000) == 0) {
				later = false;
				if (x->applied > x->acked && fused_rx_send_ack(x) < 0)
					break;
			}
			if (fused_rbuf_fill(x->sock, &rb) < 0)
				break;
		}
		uint64_t t = f->consistent ? 0 : sk_now_us(); /* in a resync session: timed */

		while (n < BATCH_MAX && (got = fused_rbuf_next(&x->chan, &rb, &fr[n], &why)) > 0)
			n++;
		if (t)
			rxs.read_us += sk_now_us() - t;
		if (n) {
			int br = run_batch(x, fr, n);

			if (br < 0)
				break;
			later = br == 1;
		}
		full = n == BATCH_MAX;
		if (got < 0) {
			atomic_fetch_add(&f->rejected, 1);
			sk_warn("frame refused: %s; closing the connection", sk_reject_str(why));
			break;
		}
	}
	fused_rbuf_free(&rb);
}

int fused_recv_run(struct fused *f)
{
	struct rx *x = calloc(1, sizeof(*x));
	pthread_t acc, ka;
	int lfd;

	if (!x)
		return -ENOMEM;
	x->f = f;
	mb.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	lfd = listen_on(f);
	if (lfd < 0 || mb.efd < 0) {
		sk_err("cannot listen on %s:%u: %s", f->listen_host, f->listen_port,
		       strerror(lfd < 0 ? -lfd : errno));
		free(x);
		return lfd < 0 ? lfd : -EIO;
	}
	acc_lfd = lfd;
	if (pthread_create(&acc, NULL, accept_main, f) != 0) {
		close(lfd);
		free(x);
		return -EAGAIN;
	}
	if (pthread_create(&ka, NULL, keepalive_main, x) != 0) {
		fused_stop(f);
		pthread_join(acc, NULL);
		close(lfd);
		free(x);
		return -EAGAIN;
	}
	sk_info("ready: secondary listening on %s:%u, %s read-only", f->listen_host, f->listen_port,
		f->dir);
	while (!atomic_load(&f->stop)) {
		struct pollfd p[2] = { { .fd = mb.efd, .events = POLLIN },
				       { .fd = f->stop_fd, .events = POLLIN } };
		uint32_t peer_node = 0;
		int cfd;

		if (!mb_ready() && (poll(p, 2, 1000) <= 0 || !(p[0].revents & POLLIN)))
			continue;
		cfd = mb_take(x, &peer_node);
		if (cfd < 0)
			continue;
		sk_info("primary node %u connected", peer_node);
		pthread_mutex_lock(&tx_mu);
		x->sock = cfd;
		x->applied = x->acked = x->err_seq = 0;
		x->err = 0;
		atomic_store(&x->keepalives, 0);
		tx_live = true;
		pthread_mutex_unlock(&tx_mu);
		atomic_store(&f->peer_up, true);
		serve(x);
		atomic_store(&f->peer_up, false);
		pthread_mutex_lock(&tx_mu);
		tx_live = false;
		atomic_store(&rx_busy_us, 0);
		pthread_mutex_unlock(&tx_mu);
		fused_rx_hclear(x);
		close(x->sock);
		sk_info("primary connection closed after op #%llu (%llu busy keepalives sent)",
			(unsigned long long)x->applied, (unsigned long long)atomic_load(&x->keepalives));
	}
	pthread_join(acc, NULL);
	pthread_join(ka, NULL);
	close(lfd);
	fused_rx_hclear(x);
	free(x);
	return 0;
}
