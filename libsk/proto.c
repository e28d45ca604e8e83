/* libsk/proto.c: frame encoding, authentication (Poly1305 / keyed BLAKE2b), replay refusal, the handshake. */
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

/* Key for the master-key derivation itself: fixed, so one secret gives one master on every node. */
static const char master_label[] = "SteadyKit master key v1";

static const char *const reject_names[SK_REJ__COUNT] = {
	[SK_REJ_NONE] = "accepted",
	[SK_REJ_MAGIC] = "bad magic (not a SteadyKit frame)",
	[SK_REJ_VERSION] = "unsupported protocol version",
	[SK_REJ_TYPE] = "unknown message type",
	[SK_REJ_LENGTH] = "payload length out of bounds",
	[SK_REJ_MAC] = "authentication failed",
	[SK_REJ_REPLAY] = "replayed or out-of-order sequence",
	[SK_REJ_PAYLOAD] = "malformed payload",
	[SK_REJ_HANDSHAKE] = "handshake refused",
};

const char *sk_reject_str(enum sk_reject why)
{
	if ((unsigned)why >= SK_REJ__COUNT)
		return "unknown reason";
	return reject_names[why];
}

/* ---- integers ---- */

void sk_put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

void sk_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void sk_put_u64(uint8_t *p, uint64_t v)
{
	sk_put_u32(p, (uint32_t)(v >> 32));
	sk_put_u32(p + 4, (uint32_t)v);
}

uint16_t sk_get_u16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

uint32_t sk_get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint64_t sk_get_u64(const uint8_t *p)
{
	return ((uint64_t)sk_get_u32(p) << 32) | sk_get_u32(p + 4);
}

static const uint8_t *rd_take(struct sk_rd *r, size_t n)
{
	const uint8_t *p;

	if (r->err || r->left < n) {
		r->err = 1;
		return NULL;
	}
	p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

uint8_t sk_rd_u8(struct sk_rd *r)
{
	const uint8_t *p = rd_take(r, 1);
	return p ? p[0] : 0;
}

uint16_t sk_rd_u16(struct sk_rd *r)
{
	const uint8_t *p = rd_take(r, 2);
	return p ? sk_get_u16(p) : 0;
}

uint32_t sk_rd_u32(struct sk_rd *r)
{
	const uint8_t *p = rd_take(r, 4);
	return p ? sk_get_u32(p) : 0;
}

uint64_t sk_rd_u64(struct sk_rd *r)
{
	const uint8_t *p = rd_take(r, 8);
	return p ? sk_get_u64(p) : 0;
}

const uint8_t *sk_rd_bytes(struct sk_rd *r, size_t n)
{
	return rd_take(r, n);
}

/* ---- keys and MACs ---- */

static int sodium_ready(void)
{
	/* sodium_init is idempotent and thread-safe; returns 1 when already initialised. */
	return sodium_init() < 0 ? -EIO : 0;
}

int sk_proto_master_key(struct sk_key *out, const void *secret, size_t len)
{
	if (len < SK_PROTO_SECRET_MIN)
		return -EINVAL;
	if (sodium_ready() < 0)
		return -EIO;
	crypto_generichash(out->b, sizeof(out->b), secret, len, (const uint8_t *)master_label,
			   sizeof(master_label) - 1);
	return 0;
}

void sk_proto_derive(struct sk_key *out, const struct sk_key *master, const char *label,
		     const void *ctx, size_t ctxlen)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, master->b, sizeof(master->b), sizeof(out->b));
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label) + 1);
	if (ctxlen)
		crypto_generichash_update(&st, ctx, ctxlen);
	crypto_generichash_final(&st, out->b, sizeof(out->b));
	sodium_memzero(&st, sizeof(st));
}

/* Keyed BLAKE2b-128: handshake frames and datagrams (small, and keys shared by several senders). */
static void mac_iov(uint8_t *mac, const struct sk_key *key, const uint8_t *hdr,
		    const struct iovec *iov, int iovcnt)
{
	crypto_generichash_state st;
	int i;

	crypto_generichash_init(&st, key->b, sizeof(key->b), SK_PROTO_MAC_LEN);
	crypto_generichash_update(&st, hdr, SK_PROTO_HDR_LEN);
	for (i = 0; i < iovcnt; i++)
		if (iov[i].iov_len)
			crypto_generichash_update(&st, iov[i].iov_base, iov[i].iov_len);
	crypto_generichash_final(&st, mac, SK_PROTO_MAC_LEN);
}

static int mac_ok(const struct sk_key *key, const uint8_t *hdr, const uint8_t *payload,
		  size_t len, const uint8_t *mac)
{
	uint8_t want[SK_PROTO_MAC_LEN];
	struct iovec iov = { .iov_base = (void *)payload, .iov_len = len };

	mac_iov(want, key, hdr, &iov, 1);
	return sodium_memcmp(want, mac, SK_PROTO_MAC_LEN) == 0;
}

/*
 * Channel frames: Poly1305 under a one-time key taken from the ChaCha20
 * keystream of the direction key with the frame's seq as nonce, the MAC half
 * of ChaCha20-Poly1305 (RFC 8439). Each (direction key, seq) pair is used once
 * because seq strictly increases and keys are per connection; it runs about
 * four times faster than BLAKE2b here, which matters on 1 MiB writes.
 */
static void frame_mac(uint8_t *mac, const struct sk_key *key, const uint8_t *hdr, uint64_t seq,
		      const struct iovec *iov, int iovcnt)
{
	uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = { 0 };
	uint8_t otk[crypto_onetimeauth_KEYBYTES];
	crypto_onetimeauth_state st;
	int i;

	sk_put_u64(nonce + sizeof(nonce) - 8, seq);
	crypto_stream_chacha20_ietf(otk, sizeof(otk), nonce, key->b);
	crypto_onetimeauth_init(&st, otk);
	crypto_onetimeauth_update(&st, hdr, SK_PROTO_HDR_LEN);
	for (i = 0; i < iovcnt; i++)
		if (iov[i].iov_len)
			crypto_onetimeauth_update(&st, iov[i].iov_base, iov[i].iov_len);
	crypto_onetimeauth_final(&st, mac);
	sodium_memzero(otk, sizeof(otk));
}

_Static_assert(crypto_onetimeauth_BYTES == SK_PROTO_MAC_LEN, "Poly1305 tag is the frame MAC");

static int frame_mac_ok(const struct sk_key *key, const uint8_t *hdr, uint64_t seq,
			const uint8_t *payload, size_t len, const uint8_t *mac)
{
	uint8_t want[SK_PROTO_MAC_LEN];
	struct iovec iov = { .iov_base = (void *)payload, .iov_len = len };

	frame_mac(want, key, hdr, seq, &iov, 1);
	return sodium_memcmp(want, mac, SK_PROTO_MAC_LEN) == 0;
}

/* ---- headers ---- */

void sk_proto_hdr_encode(uint8_t *hdr, uint8_t type, uint16_t flags, uint32_t module,
			 uint64_t seq, uint32_t len)
{
	sk_put_u32(hdr, SK_PROTO_MAGIC);
	hdr[4] = SK_PROTO_VERSION;
	hdr[5] = type;
	sk_put_u16(hdr + 6, flags);
	sk_put_u32(hdr + 8, module);
	sk_put_u64(hdr + 12, seq);
	sk_put_u32(hdr + 20, len);
}

static int type_known(uint8_t t)
{
	return (t >= SK_MSG_HELLO && t <= SK_MSG_CLOSE) ||
	       (t >= SK_MSG_REPL_FIRST && t <= SK_MSG_AGENT_LAST);
}

int sk_proto_hdr_decode(const uint8_t *hdr, struct sk_frame *f, enum sk_reject *why)
{
	*why = SK_REJ_NONE;
	if (sk_get_u32(hdr) != SK_PROTO_MAGIC)
		*why = SK_REJ_MAGIC;
	else if (hdr[4] != SK_PROTO_VERSION)
		*why = SK_REJ_VERSION;
	else if (!type_known(hdr[5]))
		*why = SK_REJ_TYPE;
	else if (sk_get_u32(hdr + 20) > SK_PROTO_MAX_PAYLOAD)
		*why = SK_REJ_LENGTH;
	if (*why != SK_REJ_NONE)
		return -EBADMSG;
	f->type = hdr[5];
	f->flags = sk_get_u16(hdr + 6);
	f->module = sk_get_u32(hdr + 8);
	f->seq = sk_get_u64(hdr + 12);
	f->len = sk_get_u32(hdr + 20);
	f->payload = NULL;
	return 0;
}

/* ---- stream channels ---- */

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t n = 0;
	int i;

	for (i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

int sk_chan_seal(struct sk_chan *c, uint8_t *hdr, uint8_t *mac, uint8_t type, uint16_t flags,
		 uint32_t module, const struct iovec *iov, int iovcnt)
{
	size_t len = iov_total(iov, iovcnt);

	if (len > SK_PROTO_MAX_PAYLOAD)
		return -EMSGSIZE;
	c->tx_seq++;
	sk_proto_hdr_encode(hdr, type, flags, module, c->tx_seq, (uint32_t)len);
	frame_mac(mac, &c->tx_key, hdr, c->tx_seq, iov, iovcnt);
	c->frames_out++;
	c->bytes_out += SK_PROTO_HDR_LEN + len + SK_PROTO_MAC_LEN;
	return 0;
}

/* Bound a payload and move it into place after the header of a one-buffer frame; returns the frame length. */
static long place_payload(uint8_t *buf, size_t cap, const void *payload, size_t len)
{
	size_t total = SK_PROTO_HDR_LEN + len + SK_PROTO_MAC_LEN;

	if (len > SK_PROTO_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (cap < total)
		return -ENOSPC;
	if (len)
		memmove(buf + SK_PROTO_HDR_LEN, payload, len);
	return (long)total;
}

long sk_chan_encode(struct sk_chan *c, uint8_t *buf, size_t cap, uint8_t type, uint16_t flags,
		    uint32_t module, const void *payload, size_t len)
{
	struct iovec iov = { .iov_base = buf + SK_PROTO_HDR_LEN, .iov_len = len };
	long total = place_payload(buf, cap, payload, len);
	int rc;

	if (total < 0)
		return total;
	rc = sk_chan_seal(c, buf, buf + SK_PROTO_HDR_LEN + len, type, flags, module, &iov, 1);
	return rc < 0 ? rc : total;
}

static int reject(struct sk_chan *c, enum sk_reject r, enum sk_reject *why)
{
	*why = r;
	if (c) {
		c->rejected[r]++;
		c->rejected[SK_REJ_NONE]++;
	}
	return -EBADMSG;
}

int sk_chan_verify(struct sk_chan *c, const uint8_t *hdr, const uint8_t *payload,
		   const uint8_t *mac, struct sk_frame *f, enum sk_reject *why)
{
	if (!frame_mac_ok(&c->rx_key, hdr, f->seq, payload, f->len, mac))
		return reject(c, SK_REJ_MAC, why);
	if (f->seq <= c->rx_seq)
		return reject(c, SK_REJ_REPLAY, why);
	if (f->type == SK_MSG_HELLO || f->type == SK_MSG_HELLO_ACK)
		return reject(c, SK_REJ_HANDSHAKE, why);
	c->rx_seq = f->seq;
	c->frames_in++;
	c->bytes_in += SK_PROTO_HDR_LEN + f->len + SK_PROTO_MAC_LEN;
	f->payload = payload;
	*why = SK_REJ_NONE;
	return 0;
}

long sk_chan_open(struct sk_chan *c, const uint8_t *buf, size_t n, struct sk_frame *f,
		  enum sk_reject *why)
{
	size_t total;
	int rc;

	*why = SK_REJ_NONE;
	if (n < SK_PROTO_HDR_LEN)
		return 0;
	if (sk_proto_hdr_decode(buf, f, why) < 0)
		return reject(c, *why, why);
	total = SK_PROTO_HDR_LEN + (size_t)f->len + SK_PROTO_MAC_LEN;
	if (n < total)
		return 0;
	rc = sk_chan_verify(c, buf, buf + SK_PROTO_HDR_LEN, buf + SK_PROTO_HDR_LEN + f->len, f, why);
	return rc < 0 ? rc : (long)total;
}

/* ---- handshake ---- */

static void session_keys(struct sk_hs *hs, struct sk_chan *c, int is_client)
{
	uint8_t ctx[4 + 2 * SK_PROTO_NONCE_LEN];
	struct sk_key c2s, s2c;

	sk_put_u32(ctx, hs->kind);
	memcpy(ctx + 4, hs->nonce_c, SK_PROTO_NONCE_LEN);
	memcpy(ctx + 4 + SK_PROTO_NONCE_LEN, hs->nonce_s, SK_PROTO_NONCE_LEN);
	sk_proto_derive(&c2s, &hs->master, "client to server", ctx, sizeof(ctx));
	sk_proto_derive(&s2c, &hs->master, "server to client", ctx, sizeof(ctx));
	memset(c, 0, sizeof(*c));
	c->tx_key = is_client ? c2s : s2c;
	c->rx_key = is_client ? s2c : c2s;
	sodium_memzero(&c2s, sizeof(c2s));
	sodium_memzero(&s2c, sizeof(s2c));
}

/* Seal a handshake frame: seq 0, MAC with the handshake key. */
static long hs_seal(const struct sk_hs *hs, uint8_t *out, uint8_t type, const uint8_t *payload,
		    size_t len)
{
	struct sk_key k;
	struct iovec iov = { .iov_base = out + SK_PROTO_HDR_LEN, .iov_len = len };

	sk_proto_derive(&k, &hs->master, "handshake", NULL, 0);
	memcpy(out + SK_PROTO_HDR_LEN, payload, len);
	sk_proto_hdr_encode(out, type, 0, hs->module, 0, (uint32_t)len);
	mac_iov(out + SK_PROTO_HDR_LEN + len, &k, out, &iov, 1);
	sodium_memzero(&k, sizeof(k));
	return (long)(SK_PROTO_HDR_LEN + len + SK_PROTO_MAC_LEN);
}

/* Check a handshake frame of exactly the expected type and payload length. */
static int hs_check(const struct sk_hs *hs, const uint8_t *in, size_t len, uint8_t type,
		    size_t plen, struct sk_frame *f, enum sk_reject *why)
{
	struct sk_key k;
	int ok;

	if (len < SK_PROTO_HDR_LEN) {
		*why = SK_REJ_LENGTH;
		return -EBADMSG;
	}
	if (sk_proto_hdr_decode(in, f, why) < 0)
		return -EBADMSG;
	if (f->type != type || f->seq != 0 || f->flags != 0) {
		*why = SK_REJ_HANDSHAKE;
		return -EBADMSG;
	}
	if (f->len != plen || len != SK_PROTO_HDR_LEN + plen + SK_PROTO_MAC_LEN) {
		*why = SK_REJ_LENGTH;
		return -EBADMSG;
	}
	sk_proto_derive(&k, &hs->master, "handshake", NULL, 0);
	ok = mac_ok(&k, in, in + SK_PROTO_HDR_LEN, plen, in + SK_PROTO_HDR_LEN + plen);
	sodium_memzero(&k, sizeof(k));
	if (!ok) {
		*why = SK_REJ_MAC;
		return -EBADMSG;
	}
	f->payload = in + SK_PROTO_HDR_LEN;
	return 0;
}

long sk_hs_client_hello(struct sk_hs *hs, const struct sk_key *master, uint32_t kind,
			uint32_t my_node, uint32_t module, uint8_t *out)
{
	uint8_t p[SK_HS_HELLO_PAYLOAD];

	if (sodium_ready() < 0)
		return -EIO;
	memset(hs, 0, sizeof(*hs));
	hs->master = *master;
	hs->kind = kind;
	hs->module = module;
	hs->my_node = my_node;
	randombytes_buf(hs->nonce_c, sizeof(hs->nonce_c));
	sk_put_u32(p, kind);
	sk_put_u32(p + 4, my_node);
	memcpy(p + 8, hs->nonce_c, SK_PROTO_NONCE_LEN);
	return hs_seal(hs, out, SK_MSG_HELLO, p, sizeof(p));
}

long sk_hs_server_reply(struct sk_hs *hs, const struct sk_key *master, uint32_t kind,
			uint32_t my_node, const uint8_t *in, size_t len, uint8_t *out,
			struct sk_chan *c, enum sk_reject *why)
{
	uint8_t p[SK_HS_ACK_PAYLOAD];
	struct sk_frame f;
	struct sk_rd r;

	if (sodium_ready() < 0)
		return -EIO;
	memset(hs, 0, sizeof(*hs));
	hs->master = *master;
	hs->my_node = my_node;
	if (hs_check(hs, in, len, SK_MSG_HELLO, SK_HS_HELLO_PAYLOAD, &f, why) < 0)
		return -EBADMSG;
	sk_rd_init(&r, f.payload, f.len);
	hs->kind = sk_rd_u32(&r);
	hs->peer_node = sk_rd_u32(&r);
	memcpy(hs->nonce_c, sk_rd_bytes(&r, SK_PROTO_NONCE_LEN), SK_PROTO_NONCE_LEN);
	if (hs->kind != kind) {
		*why = SK_REJ_HANDSHAKE;
		return -EBADMSG;
	}
	hs->module = f.module;
	randombytes_buf(hs->nonce_s, sizeof(hs->nonce_s));
	sk_put_u32(p, my_node);
	memcpy(p + 4, hs->nonce_s, SK_PROTO_NONCE_LEN);
	memcpy(p + 4 + SK_PROTO_NONCE_LEN, hs->nonce_c, SK_PROTO_NONCE_LEN);
	session_keys(hs, c, 0);
	*why = SK_REJ_NONE;
	return hs_seal(hs, out, SK_MSG_HELLO_ACK, p, sizeof(p));
}

int sk_hs_client_finish(struct sk_hs *hs, const uint8_t *in, size_t len, struct sk_chan *c,
			enum sk_reject *why)
{
	struct sk_frame f;
	struct sk_rd r;
	const uint8_t *echo;

	if (hs_check(hs, in, len, SK_MSG_HELLO_ACK, SK_HS_ACK_PAYLOAD, &f, why) < 0)
		return -EBADMSG;
	sk_rd_init(&r, f.payload, f.len);
	hs->peer_node = sk_rd_u32(&r);
	memcpy(hs->nonce_s, sk_rd_bytes(&r, SK_PROTO_NONCE_LEN), SK_PROTO_NONCE_LEN);
	echo = sk_rd_bytes(&r, SK_PROTO_NONCE_LEN);
	/* The echo proves this ACK answers our HELLO, not an older one. */
	if (f.module != hs->module || sodium_memcmp(echo, hs->nonce_c, SK_PROTO_NONCE_LEN) != 0) {
		*why = SK_REJ_HANDSHAKE;
		return -EBADMSG;
	}
	session_keys(hs, c, 1);
	*why = SK_REJ_NONE;
	return 0;
}

/* ---- blocking helpers ---- */

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/* Read exactly n bytes; deadline_ms < 0 means no deadline. */
static int read_full(int fd, uint8_t *buf, size_t n, long deadline_ms)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r;

		if (deadline_ms >= 0) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			long left = deadline_ms - now_ms();
			int pr;

			if (left <= 0)
				return -ETIMEDOUT;
			pr = poll(&pfd, 1, (int)left);
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr < 0)
				return -errno;
			if (pr == 0)
				return -ETIMEDOUT;
		}
		r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ECONNRESET;
		got += (size_t)r;
	}
	return 0;
}

/* Write every byte of an iovec array; the array is consumed in place. */
static int write_iov(int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
		ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);

		if (w < 0 && errno == ENOTSOCK)
			w = writev(fd, iov, iovcnt);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		while (iovcnt > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int write_full(int fd, const uint8_t *buf, size_t n)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = n };

	return write_iov(fd, &iov, 1);
}

int sk_chan_connect_fd(int fd, const struct sk_key *master, uint32_t kind, uint32_t my_node,
		       uint32_t module, struct sk_chan *c, uint32_t *peer_node, int timeout_ms)
{
	uint8_t buf[SK_HS_FRAME_LEN];
	long deadline = now_ms() + timeout_ms;
	enum sk_reject why;
	struct sk_hs hs;
	long n;
	int rc;

	n = sk_hs_client_hello(&hs, master, kind, my_node, module, buf);
	if (n < 0)
		return (int)n;
	rc = write_full(fd, buf, (size_t)n);
	if (rc == 0)
		rc = read_full(fd, buf, SK_HS_FRAME_LEN, deadline);
	if (rc == 0)
		rc = sk_hs_client_finish(&hs, buf, SK_HS_FRAME_LEN, c, &why);
	if (rc == 0 && peer_node)
		*peer_node = hs.peer_node;
	sodium_memzero(&hs, sizeof(hs));
	return rc;
}

int sk_chan_accept_fd(int fd, const struct sk_key *master, uint32_t kind, uint32_t my_node,
		      struct sk_chan *c, uint32_t *peer_node, uint32_t *module, int timeout_ms,
		      enum sk_reject *why)
{
	const size_t hello_len = SK_PROTO_HDR_LEN + SK_HS_HELLO_PAYLOAD + SK_PROTO_MAC_LEN;
	uint8_t in[SK_PROTO_HDR_LEN + SK_HS_HELLO_PAYLOAD + SK_PROTO_MAC_LEN];
	uint8_t out[SK_HS_FRAME_LEN];
	long deadline = now_ms() + timeout_ms;
	struct sk_hs hs;
	long n;
	int rc;

	*why = SK_REJ_NONE;
	rc = read_full(fd, in, hello_len, deadline);
	if (rc < 0)
		return rc;
	n = sk_hs_server_reply(&hs, master, kind, my_node, in, hello_len, out, c, why);
	if (n < 0) {
		sodium_memzero(&hs, sizeof(hs));
		return (int)n;
	}
	rc = write_full(fd, out, (size_t)n);
	if (rc == 0 && peer_node)
		*peer_node = hs.peer_node;
	if (rc == 0 && module)
		*module = hs.module;
	sodium_memzero(&hs, sizeof(hs));
	return rc;
}

#define SEND_MAX_IOV 64

int sk_chan_send_fd(struct sk_chan *c, int fd, uint8_t type, uint16_t flags, uint32_t module,
		    const struct iovec *iov, int iovcnt)
{
	struct iovec v[SEND_MAX_IOV + 2];
	uint8_t hdr[SK_PROTO_HDR_LEN], mac[SK_PROTO_MAC_LEN];
	int rc;

	if (iovcnt < 0 || iovcnt > SEND_MAX_IOV)
		return -EINVAL;
	rc = sk_chan_seal(c, hdr, mac, type, flags, module, iov, iovcnt);
	if (rc < 0)
		return rc;
	v[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	if (iovcnt)
		memcpy(v + 1, iov, sizeof(*iov) * (size_t)iovcnt);
	v[iovcnt + 1] = (struct iovec){ .iov_base = mac, .iov_len = sizeof(mac) };
	return write_iov(fd, v, iovcnt + 2);
}

int sk_chan_recv_fd(struct sk_chan *c, int fd, uint8_t *buf, size_t cap, struct sk_frame *f,
		    enum sk_reject *why)
{
	size_t rest;
	int rc;

	*why = SK_REJ_NONE;
	if (cap < SK_PROTO_HDR_LEN + SK_PROTO_MAC_LEN)
		return -ENOSPC;
	rc = read_full(fd, buf, SK_PROTO_HDR_LEN, -1);
	if (rc < 0)
		return rc;
	if (sk_proto_hdr_decode(buf, f, why) < 0)
		return reject(c, *why, why);
	rest = (size_t)f->len + SK_PROTO_MAC_LEN;
	if (rest > cap - SK_PROTO_HDR_LEN)
		return reject(c, SK_REJ_LENGTH, why);
	rc = read_full(fd, buf + SK_PROTO_HDR_LEN, rest, -1);
	if (rc < 0)
		return rc;
	return sk_chan_verify(c, buf, buf + SK_PROTO_HDR_LEN, buf + SK_PROTO_HDR_LEN + f->len, f,
			      why);
}

/* ---- datagrams ---- */

long sk_dgram_seal(const struct sk_key *dkey, uint8_t *buf, size_t cap, uint8_t type,
		   uint32_t module, uint64_t seq, const void *payload, size_t len)
{
	struct iovec iov = { .iov_base = buf + SK_PROTO_HDR_LEN, .iov_len = len };
	long total = place_payload(buf, cap, payload, len);

	if (total < 0)
		return total;
	sk_proto_hdr_encode(buf, type, 0, module, seq, (uint32_t)len);
	mac_iov(buf + SK_PROTO_HDR_LEN + len, dkey, buf, &iov, 1);
	return total;
}

int sk_dgram_open(const struct sk_key *dkey, const uint8_t *buf, size_t n, uint64_t *last_seq,
		  struct sk_frame *f, enum sk_reject *why)
{
	*why = SK_REJ_NONE;
	if (n < SK_PROTO_HDR_LEN + SK_PROTO_MAC_LEN) {
		*why = SK_REJ_LENGTH;
		return -EBADMSG;
	}
	if (sk_proto_hdr_decode(buf, f, why) < 0)
		return -EBADMSG;
	if (n != SK_PROTO_HDR_LEN + (size_t)f->len + SK_PROTO_MAC_LEN) {
		*why = SK_REJ_LENGTH;
		return -EBADMSG;
	}
	if (!mac_ok(dkey, buf, buf + SK_PROTO_HDR_LEN, f->len, buf + SK_PROTO_HDR_LEN + f->len)) {
		*why = SK_REJ_MAC;
		return -EBADMSG;
	}
	if (f->seq <= *last_seq) {
		*why = SK_REJ_REPLAY;
		return -EBADMSG;
	}
	*last_seq = f->seq;
	f->payload = buf + SK_PROTO_HDR_LEN;
	return 0;
}
