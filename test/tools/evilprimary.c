/* evilprimary: an authenticated but malicious primary (an insider with the secret) attacking a secondary skfused. */
/*
 * Why: issue 9 A1/A4/A6 — the MAC proves who sent a frame, not that its content is
 * sane. Each case opens its own connection, does the handshake with the cluster
 * secret, sends well-authenticated frames whose content is hostile, and reports how
 * the secondary answered. Payloads are encoded by hand from the layout in
 * libsk/replmsg.h (v1), not with its encoder (which refuses to build them).
 *
 *   evilprimary --to IP:PORT --secret FILE --case NAME [--module N] [--wait-ms MS] [--count N]
 *
 * Cases (exit 0 when the secondary behaved as required, 1 when not, 2 on setup errors):
 *   control     MKDIR evil-ctl, RMDIR evil-ctl: acked without error (frames are well formed)
 *   longlink    RS_DIR of the root (first part only) with a symlink whose target is 65535 bytes:
 *               the secondary must refuse the frame (close the connection), not overflow a buffer
 *   fifo        MKNOD evil-fifo (FIFO, allowed), then OPEN, SETATTR size 0, RS_DATA and a CREATE
 *               on it: each answered with an error within --wait-ms (never a hang)
 *   chardev     MKNOD evil-null = char 1:3 (allowed), then OPEN + WRITE and CREATE on it: refused
 *   handles     --count (default 100000) orphan OPENs never released: the secondary stays up and
 *               refuses past its handle bound (an ack carries an error)
 *   names       MKDIR evil-dir, then RS_DIR evil-dir announcing --count (default 2500000) names
 *               (the same name again and again) and the last part: refused with an error
 *   batch       MKDIR evil-batch, then --count (default 600) SETATTR frames written at once and
 *               nothing after: all must be acked within --wait-ms (no stall between batches)
 *   links       MKDIR evil-links, RS_DIR of it announcing --count (default 1000) files, each the
 *               first name of a hard-link group (nlink 2), then the connection ends without RS_END:
 *               exits 0 once they are applied (the test then checks the secondary's open fds)
 *   moves       RS_MOVE through a symlink to --outside DIR, of a symlink, a FIFO and a directory;
 *               then --count (default 5000) files made and moved, the session ended without
 *               RS_END: exits 0 once all are acked (the test checks what moved and what is left)
 * "Refused" means: an ACK whose error covers the op, a FAILED report for it (during a resync
 * the secondary reports instead), or the connection closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "proto.h"

/* Message numbers and layout from libsk/replmsg.h (v1), restated on purpose. */
enum {
	M_ACK = 17, M_FAILED = 19, M_OPEN = 20, M_CREATE = 21, M_WRITE = 23, M_SETATTR = 24,
	M_MKDIR = 27, M_MKNOD = 28, M_SYMLINK = 29, M_RMDIR = 32, M_RS_DIR = 40, M_RS_DATA = 42,
	M_RELEASE = 22, M_RS_MOVE = 48
};
#define OP_HDR 128
#define RV_SIZE 0x08u
#define RV_MTIME 0x20u
#define RO_TRUNC 0x1u
#define RO_EXCL 0x2u
#define RO_ORPHAN 0x4u
#define RO_FIRST 0x1u
#define RO_LAST 0x2u
#define DATA_MAX (1u << 20)

static const char *to_addr, *secret_path, *case_name, *outside;
static uint32_t module_id = 1, node_id = 98;
static int wait_ms = 5000;
static long count = -1;
static struct sockaddr_in peer;
static struct sk_key master;

/* One connection: the channel, the last seq sent and what the secondary answered so far. */
struct conn {
	int fd;
	struct sk_chan c;
	uint64_t acked;     /* highest applied seen in an ACK */
	uint64_t err_seq;   /* first op an ACK reported as failed (0: none) */
	int err;
	uint64_t failed_n;  /* FAILED reports received */
	bool closed;
};

struct op {
	uint64_t fh, off, len, rdev;
	uint32_t mode, flags, valid;
	const char *path, *path2;
	const void *data;
	uint32_t data_len;
};

__attribute__((noreturn)) static void die(const char *msg)
{
	fprintf(stderr, "evilprimary: %s\n", msg);
	exit(2);
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static void conn_open(struct conn *k)
{
	uint32_t peer_node = 0;
	int one = 1, rc;

	memset(k, 0, sizeof(*k));
	k->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (k->fd < 0)
		die("socket");
	setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(k->fd, (struct sockaddr *)&peer, sizeof(peer)) < 0) {
		fprintf(stderr, "evilprimary: connect %s: %s\n", to_addr, strerror(errno));
		exit(2);
	}
	rc = sk_chan_connect_fd(k->fd, &master, SK_CHAN_REPL, node_id, module_id, &k->c, &peer_node,
				wait_ms);
	if (rc < 0) {
		printf("case %s: handshake with the secret failed: %s\n", case_name, strerror(-rc));
		exit(1);
	}
}

/* The 128-byte fixed part, path1 and path2 (no name); data goes as its own iovec. */
static size_t op_hdr(uint8_t *out, const struct op *o)
{
	size_t pl = o->path ? strlen(o->path) : 0, pl2 = o->path2 ? strlen(o->path2) : 0;

	memset(out, 0, OP_HDR);
	sk_put_u64(out + 0, o->fh);
	sk_put_u64(out + 16, o->off);
	sk_put_u64(out + 32, o->len);
	sk_put_u64(out + 40, o->rdev);
	sk_put_u32(out + 48, o->mode);
	sk_put_u32(out + 60, o->flags);
	sk_put_u32(out + 64, o->valid);
	sk_put_u16(out + 116, (uint16_t)pl);
	sk_put_u16(out + 118, (uint16_t)pl2);
	sk_put_u32(out + 124, o->data_len);
	memcpy(out + OP_HDR, o->path ? o->path : "", pl);
	memcpy(out + OP_HDR + pl, o->path2 ? o->path2 : "", pl2);
	return OP_HDR + pl + pl2;
}

/* Send one op; returns its seq, 0 if the connection is gone. */
static uint64_t send_op(struct conn *k, uint8_t type, const struct op *o)
{
	uint8_t h[OP_HDR + 4096];
	struct iovec iov[2] = { { h, op_hdr(h, o) }, { (void *)o->data, o->data_len } };

	if (k->closed || sk_chan_send_fd(&k->c, k->fd, type, 0, module_id, iov, o->data_len ? 2 : 1) < 0) {
		k->closed = true;
		return 0;
	}
	return k->c.tx_seq;
}

/* Read what the secondary sends for up to ms; stops early once `until` is true. */
static void pump(struct conn *k, int ms, bool (*until)(struct conn *, uint64_t), uint64_t arg)
{
	static uint8_t buf[SK_PROTO_MAX_FRAME];
	long deadline = now_ms() + ms;

	while (!k->closed && !(until && until(k, arg))) {
		struct pollfd p = { .fd = k->fd, .events = POLLIN };
		long left = deadline - now_ms();
		enum sk_reject why;
		struct sk_frame f;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return;
		if (sk_chan_recv_fd(&k->c, k->fd, buf, sizeof(buf), &f, &why) < 0) {
			k->closed = true;
			return;
		}
		if (f.type == M_ACK && f.len >= 20) {
			uint64_t applied = sk_get_u64(f.payload), es = sk_get_u64(f.payload + 8);
			int32_t e = (int32_t)sk_get_u32(f.payload + 16);

			if (applied > k->acked)
				k->acked = applied;
			if (e && !k->err_seq) {
				k->err_seq = es;
				k->err = e;
			}
		} else if (f.type == M_FAILED) {
			k->failed_n++;
		}
	}
}

static bool acked_upto(struct conn *k, uint64_t seq)
{
	return k->acked >= seq;
}

static bool answered(struct conn *k, uint64_t seq)
{
	return k->acked >= seq || (k->err_seq && k->err_seq <= seq);
}

/*
 * Send one op and wait for its fate: 0 applied without error, 1 refused (ack error,
 * FAILED report, or connection closed), -1 no answer within --wait-ms (a hang).
 */
static int fate(struct conn *k, uint8_t type, const struct op *o, const char *what)
{
	uint64_t f0 = k->failed_n, seq;
	int r;

	k->err_seq = 0;
	k->err = 0;
	seq = send_op(k, type, o);
	if (seq)
		pump(k, wait_ms, answered, seq);
	if (k->closed)
		r = 1;
	else if (!answered(k, seq))
		r = -1;
	else
		r = (k->err_seq == seq || k->failed_n > f0) ? 1 : 0;
	printf("case %s: %s -> %s%s%s\n", case_name, what,
	       r < 0 ? "NO ANSWER (hang)" : r ? "refused" : "applied",
	       k->err_seq == seq && k->err ? ": " : "", k->err_seq == seq && k->err ? strerror(k->err) : "");
	return r;
}

static int expect(int got, int want, const char *what)
{
	if (got == want)
		return 0;
	printf("case %s: FAIL: %s (wanted %s)\n", case_name, what, want ? "refused" : "applied");
	return 1;
}

static int case_control(void)
{
	struct conn k;
	struct op o = { .mode = 0755, .path = "evil-ctl" };
	int bad = 0;

	conn_open(&k);
	bad |= expect(fate(&k, M_MKDIR, &o, "MKDIR evil-ctl"), 0, "mkdir");
	o.mode = 0;
	bad |= expect(fate(&k, M_RMDIR, &o, "RMDIR evil-ctl"), 0, "rmdir");
	close(k.fd);
	return bad;
}

/* One RS_DIR entry (replmsg.h v1) with a target of tlen bytes. */
static size_t dirent_raw2(uint8_t *b, const char *name, uint32_t mode, uint16_t tlen,
			  uint64_t ino, uint32_t nlink)
{
	size_t nl = strlen(name);

	sk_put_u16(b, (uint16_t)nl);
	memcpy(b + 2, name, nl);
	b += 2 + nl;
	memset(b, 0, 34);
	sk_put_u32(b, mode);
	sk_put_u64(b + 20, ino);
	sk_put_u32(b + 28, nlink);
	sk_put_u16(b + 32, tlen);
	memset(b + 34, 'A', tlen);
	return 2 + nl + 34 + tlen;
}

static size_t dirent_raw(uint8_t *b, const char *name, uint32_t mode, uint16_t tlen)
{
	return dirent_raw2(b, name, mode, tlen, 0, 1);
}

static int case_longlink(void)
{
	static uint8_t d[2 + 16 + 34 + 65535];
	struct conn k;
	struct op o = { .flags = RO_FIRST, .path = "", .data = d };
	int r;

	o.data_len = (uint32_t)dirent_raw(d, "evil-long", S_IFLNK | 0777, 65535);
	conn_open(&k);
	r = fate(&k, M_RS_DIR, &o, "RS_DIR / with a 65535-byte symlink target");
	close(k.fd);
	return expect(r, 1, "long symlink target");
}

static int case_fifo(void)
{
	static const uint8_t data[] = "into the pipe";
	struct conn k;
	struct op o = { .mode = S_IFIFO | 0666, .path = "evil-fifo" };
	int bad = 0;

	conn_open(&k);
	bad |= expect(fate(&k, M_MKNOD, &o, "MKNOD evil-fifo"), 0, "mknod of a fifo is allowed");
	/* write-only opens first, while nobody holds the FIFO open: that is when one blocks */
	o = (struct op){ .path = "evil-fifo", .valid = RV_SIZE };
	bad |= expect(fate(&k, M_SETATTR, &o, "SETATTR evil-fifo size 0"), 1, "truncate of a fifo");
	o = (struct op){ .path = "evil-fifo", .data = data, .data_len = sizeof(data) };
	bad |= expect(fate(&k, M_RS_DATA, &o, "RS_DATA evil-fifo"), 1, "resync data into a fifo");
	o = (struct op){ .fh = 7001, .path = "evil-fifo" };
	bad |= expect(fate(&k, M_OPEN, &o, "OPEN evil-fifo"), 1, "open of a fifo");
	o = (struct op){ .fh = 7002, .path = "evil-fifo", .mode = S_IFREG | 0644 };
	bad |= expect(fate(&k, M_CREATE, &o, "CREATE evil-fifo (exists)"), 1, "create over a fifo");
	close(k.fd);
	return bad;
}

static int case_chardev(void)
{
	static const uint8_t data[] = "into the device";
	struct conn k;
	struct op o = { .mode = S_IFCHR | 0666, .rdev = makedev(1, 3), .path = "evil-null" };
	int bad = 0;

	conn_open(&k);
	bad |= expect(fate(&k, M_MKNOD, &o, "MKNOD evil-null c 1:3"), 0, "mknod of a device");
	o = (struct op){ .fh = 7101, .path = "evil-null" };
	bad |= expect(fate(&k, M_OPEN, &o, "OPEN evil-null"), 1, "open of a char device");
	o = (struct op){ .fh = 7101, .data = data, .data_len = sizeof(data) };
	fate(&k, M_WRITE, &o, "WRITE to that handle");
	o = (struct op){ .fh = 7102, .path = "evil-null", .mode = S_IFREG | 0644, .flags = RO_TRUNC };
	bad |= expect(fate(&k, M_CREATE, &o, "CREATE evil-null (exists)"), 1, "create over a device");
	o = (struct op){ .path = "evil-null", .data = data, .data_len = sizeof(data) };
	bad |= expect(fate(&k, M_RS_DATA, &o, "RS_DATA evil-null"), 1, "resync data into a device");
	close(k.fd);
	return bad;
}

static int case_handles(void)
{
	long n = count > 0 ? count : 100000, i;
	uint64_t last = 0;
	struct conn k;
	struct op o = { .flags = RO_ORPHAN };

	conn_open(&k);
	k.err_seq = 0;
	for (i = 0; i < n && !k.closed; i++) {
		o.fh = 0x10000000ull + (uint64_t)i;
		last = send_op(&k, M_OPEN, &o);
		if ((i & 1023) == 0)
			pump(&k, 0, NULL, 0); /* drain acks so neither side blocks */
	}
	pump(&k, wait_ms * 4, acked_upto, last); /* all of them applied or refused */
	printf("case handles: %ld orphan OPENs sent, acked up to %llu, first error at #%llu: %s%s\n", n,
	       (unsigned long long)k.acked, (unsigned long long)k.err_seq,
	       k.err ? strerror(k.err) : "none", k.closed ? " (connection closed)" : "");
	close(k.fd);
	if (!k.err_seq && !k.closed) {
		printf("case handles: FAIL: every handle was kept\n");
		return 1;
	}
	return 0;
}

static int case_names(void)
{
	static uint8_t d[DATA_MAX];
	long n = count > 0 ? count : 2500000, sent = 0;
	size_t used = 0, one;
	struct conn k;
	struct op o = { .mode = 0755, .path = "evil-dir" };
	uint64_t last = 0, first, f0;
	int r;

	conn_open(&k);
	if (fate(&k, M_MKDIR, &o, "MKDIR evil-dir") != 0)
		return 1;
	first = k.c.tx_seq + 1;
	one = dirent_raw(d, "x", S_IFREG | 0644, 0);
	o = (struct op){ .path = "evil-dir", .flags = RO_FIRST, .data = d };
	k.err_seq = 0;
	f0 = k.failed_n;
	/* the refusal may come with any part (an ack reports the first failure of its batch) */
	while (!k.closed) {
		for (used = 0; used + one <= DATA_MAX && sent < n; sent++)
			used += dirent_raw(d + used, "x", S_IFREG | 0644, 0);
		o.data_len = (uint32_t)used;
		if (sent >= n)
			o.flags |= RO_LAST;
		last = send_op(&k, M_RS_DIR, &o);
		if (o.flags & RO_LAST)
			break;
		o.flags = 0;
		pump(&k, 0, NULL, 0);
	}
	if (last)
		pump(&k, wait_ms, acked_upto, last);
	r = k.closed || k.err_seq || k.failed_n > f0 ? 1 : !last || k.acked < last ? -1 : 0;
	printf("case names: RS_DIR evil-dir, %ld names in %llu parts -> %s%s%s\n", n,
	       (unsigned long long)(last ? last - first + 1 : 0),
	       r < 0 ? "NO ANSWER (hang)" : r ? "refused" : "applied", k.err ? ": " : "",
	       k.err ? strerror(k.err) : "");
	close(k.fd);
	return expect(r, 1, "a listing of millions of names");
}

static int case_batch(void)
{
	long n = count > 0 ? count : 600, i;
	static uint8_t frames[4096 * 320];
	size_t used = 0;
	struct conn k;
	struct op o = { .mode = 0755, .path = "evil-batch" };
	uint8_t h[OP_HDR + 64];
	long t0;

	if (n > 4096)
		n = 4096;
	conn_open(&k);
	if (fate(&k, M_MKDIR, &o, "MKDIR evil-batch") != 0)
		return 1;
	o = (struct op){ .path = "evil-batch", .valid = RV_MTIME };
	for (i = 0; i < n; i++) {
		size_t hl = op_hdr(h, &o);
		long fl = sk_chan_encode(&k.c, frames + used, sizeof(frames) - used, M_SETATTR, 0,
					 module_id, h, hl);

		if (fl < 0)
			die("frames buffer too small");
		used += (size_t)fl;
	}
	/* all at once, then silence: the secondary must not wait for more bytes */
	t0 = now_ms();
	for (size_t off = 0; off < used;) {
		ssize_t w = send(k.fd, frames + off, used - off, MSG_NOSIGNAL);

		if (w <= 0)
			die("send");
		off += (size_t)w;
	}
	pump(&k, wait_ms, acked_upto, k.c.tx_seq);
	printf("case batch: %ld frames at once: acked up to %llu of %llu after %ld ms\n", n,
	       (unsigned long long)k.acked, (unsigned long long)k.c.tx_seq, now_ms() - t0);
	close(k.fd);
	if (k.acked < k.c.tx_seq) {
		printf("case batch: FAIL: buffered frames left unapplied\n");
		return 1;
	}
	return 0;
}

static int case_links(void)
{
	static uint8_t d[DATA_MAX];
	long n = count > 0 ? count : 1000, i;
	struct conn k;
	struct op o = { .mode = 0755, .path = "evil-links" };
	size_t used = 0;
	char name[32];
	int r;

	conn_open(&k);
	if (fate(&k, M_MKDIR, &o, "MKDIR evil-links") != 0)
		return 1;
	for (i = 0; i < n && used + 64 < sizeof(d); i++) {
		snprintf(name, sizeof(name), "l%ld", i);
		used += dirent_raw2(d + used, name, S_IFREG | 0644, 0, 0x7000000 + (uint64_t)i, 2);
	}
	o = (struct op){ .path = "evil-links", .flags = RO_FIRST | RO_LAST, .data = d,
			 .data_len = (uint32_t)used };
	r = fate(&k, M_RS_DIR, &o, "RS_DIR evil-links: first names of hard-link groups");
	close(k.fd); /* no RS_END: the session just ends */
	printf("case links: %ld entries announced, connection closed without RS_END\n", i);
	return r < 0;
}

/*
 * RS_MOVE frames (fused/moves.c) that must move nothing: through a symlink to a directory
 * outside the tree, a symlink, a FIFO, a directory; then --count (default 5000) regular files of
 * its own made and moved: the secondary keeps at most 4096 aside, refuses (counts) the rest, and
 * removes what it kept when the session ends without RS_END (the test checks what is left).
 */
static int case_moves(void)
{
	long n = count > 0 ? count : 5000, i;
	char a[64], b[64];
	struct conn k;
	struct op o;
	uint64_t seq = 0;
	int bad = 0;

	if (!outside)
		die("--case moves needs --outside DIR");
	conn_open(&k);
	o = (struct op){ .path = "evil-out", .data = outside, .data_len = (uint32_t)strlen(outside) };
	bad |= expect(fate(&k, M_SYMLINK, &o, "SYMLINK evil-out -> the outside directory"), 0, "symlink");
	o = (struct op){ .mode = 0755, .path = "evil-mv" };
	bad |= expect(fate(&k, M_MKDIR, &o, "MKDIR evil-mv"), 0, "mkdir");
	o = (struct op){ .path = "evil-out/victim", .path2 = "evil-mv/x" };
	fate(&k, M_RS_MOVE, &o, "RS_MOVE evil-out/victim (through a symlink)");
	o = (struct op){ .path = "app/link", .path2 = "evil-mv/y" };
	fate(&k, M_RS_MOVE, &o, "RS_MOVE app/link (a symlink)");
	o = (struct op){ .path = "evil-fifo", .path2 = "evil-mv/z" };
	fate(&k, M_RS_MOVE, &o, "RS_MOVE evil-fifo (a FIFO)");
	/* a directory moves (kept for evil-mv/w, never claimed: removed with the session) */
	o = (struct op){ .mode = 0755, .path = "evil-mvd" };
	bad |= expect(fate(&k, M_MKDIR, &o, "MKDIR evil-mvd"), 0, "mkdir");
	o = (struct op){ .mode = 0755, .path = "evil-mvd/sub" };
	bad |= expect(fate(&k, M_MKDIR, &o, "MKDIR evil-mvd/sub"), 0, "mkdir");
	o = (struct op){ .path = "evil-mvd", .path2 = "evil-mv/w" };
	fate(&k, M_RS_MOVE, &o, "RS_MOVE evil-mvd (a directory)");
	/* the folder of kept copies, and what is in it, never move from the wire (refused) */
	o = (struct op){ .path = ".steadykit-moves", .path2 = "evil-mv/v" };
	fate(&k, M_RS_MOVE, &o, "RS_MOVE .steadykit-moves (the folder itself)");
	o = (struct op){ .path = ".steadykit-moves/0", .path2 = "evil-mv/u" };
	fate(&k, M_RS_MOVE, &o, "RS_MOVE .steadykit-moves/0 (a kept copy)");
	for (i = 0; i < n && !k.closed; i++) {
		snprintf(a, sizeof(a), "evil-mv/f%ld", i);
		o = (struct op){ .fh = 90000 + (uint64_t)i, .path = a, .mode = S_IFREG | 0644,
				 .flags = RO_EXCL };
		send_op(&k, M_CREATE, &o);
		o = (struct op){ .fh = 90000 + (uint64_t)i };
		seq = send_op(&k, M_RELEASE, &o);
		if (i % 256 == 255)
			pump(&k, 0, NULL, 0);
	}
	for (i = 0; i < n && !k.closed; i++) {
		snprintf(a, sizeof(a), "evil-mv/f%ld", i);
		snprintf(b, sizeof(b), "evil-mv/g%ld", i);
		o = (struct op){ .path = a, .path2 = b };
		seq = send_op(&k, M_RS_MOVE, &o);
		if (i % 256 == 255)
			pump(&k, 0, NULL, 0);
	}
	if (seq)
		pump(&k, wait_ms, acked_upto, seq);
	printf("case moves: %ld files made and moved, acked up to %llu of %llu%s\n", n,
	       (unsigned long long)k.acked, (unsigned long long)seq, k.err_seq ? " (an error)" : "");
	bad |= k.closed || k.acked < seq;
	close(k.fd); /* no RS_END: the session just ends */
	return bad;
}

static const struct {
	const char *name;
	int (*run)(void);
} cases[] = {
	{ "control", case_control }, { "longlink", case_longlink }, { "fifo", case_fifo },
	{ "chardev", case_chardev }, { "handles", case_handles },   { "names", case_names },
	{ "batch", case_batch },     { "links", case_links },   { "moves", case_moves },
};

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "to", required_argument, NULL, 't' },     { "secret", required_argument, NULL, 's' },
		{ "case", required_argument, NULL, 'c' },   { "module", required_argument, NULL, 'm' },
		{ "wait-ms", required_argument, NULL, 'w' }, { "count", required_argument, NULL, 'n' },
		{ "outside", required_argument, NULL, 'o' }, { NULL, 0, NULL, 0 }
	};
	struct sk_conf_err cerr;
	char host[64], ebuf[256];
	const char *colon = NULL;
	int o;

	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 't': to_addr = optarg; break;
		case 's': secret_path = optarg; break;
		case 'c': case_name = optarg; break;
		case 'm': module_id = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'w': wait_ms = atoi(optarg); break;
		case 'n': count = atol(optarg); break;
		case 'o': outside = optarg; break;
		default: die("usage: evilprimary --to IP:PORT --secret FILE --case NAME [--module N] [--wait-ms MS] [--count N]");
		}
	}
	if (!to_addr || !secret_path || !case_name || !(colon = strrchr(to_addr, ':')) ||
	    (size_t)(colon - to_addr) >= sizeof(host))
		die("usage: evilprimary --to IP:PORT --secret FILE --case NAME [--module N] [--wait-ms MS] [--count N]");
	memcpy(host, to_addr, (size_t)(colon - to_addr));
	host[colon - to_addr] = '\0';
	peer.sin_family = AF_INET;
	peer.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &peer.sin_addr) != 1)
		die("--to: not an IPv4 address");
	memset(&cerr, 0, sizeof(cerr));
	if (sk_conf_load_secret(secret_path, &master, &cerr) < 0) {
		fprintf(stderr, "evilprimary: secret: %s\n", sk_conf_err_str(&cerr, ebuf, sizeof(ebuf)));
		return 2;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (!strcmp(cases[i].name, case_name))
			return cases[i].run() ? 1 : 0;
	die("unknown --case");
	return 2;
}
