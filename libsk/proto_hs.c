/* libsk/proto_hs.c: the three-message handshake and the blocking helpers that run it and move frames over a socket. */
#include "proto.h"
#include "proto_int.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- handshake ---- */

/* What this end asks for in its HELLO (or, on the server, could accept). */
static uint16_t hs_wishes(uint32_t kind)
{
	if (kind & SK_CHAN_F_PLAIN)
		return SK_HS_F_PLAIN;
	if (!(kind & SK_CHAN_F_CHACHA) && crypto_aead_aes256gcm_is_available())
		return SK_HS_F_AES;
	return 0;
}

static int hs_flags_valid(uint16_t fl)
{
	return !(fl & ~(SK_HS_F_PLAIN | SK_HS_F_AES)) &&
	       (fl & (SK_HS_F_PLAIN | SK_HS_F_AES)) != (SK_HS_F_PLAIN | SK_HS_F_AES);
}

/* Per-connection keys: the secret, the channel kind, the agreed mode and both nonces. */
static void hs_key(const struct sk_hs *hs, const char *label, struct sk_key *out)
{
	uint8_t ctx[4 + 2 + 2 * SK_PROTO_NONCE_LEN];

	sk_put_u32(ctx, hs->kind & SK_CHAN_KIND_MASK);
	sk_put_u16(ctx + 4, hs->agreed);
	memcpy(ctx + 6, hs->nonce_c, SK_PROTO_NONCE_LEN);
	memcpy(ctx + 6 + SK_PROTO_NONCE_LEN, hs->nonce_s, SK_PROTO_NONCE_LEN);
	sk_proto_derive(out, &hs->master, label, ctx, sizeof(ctx));
}

static int session_keys(const struct sk_hs *hs, struct sk_chan *c, int is_client)
{
	struct sk_key c2s, s2c;
	enum sk_aead aead = hs->agreed & SK_HS_F_PLAIN ? SK_AEAD_NONE :
			    hs->agreed & SK_HS_F_AES   ? SK_AEAD_AES256GCM :
							 SK_AEAD_CHACHA20;
	int rc;

	hs_key(hs, "client to server", &c2s);
	hs_key(hs, "server to client", &s2c);
	rc = sk_chan_init(c, is_client ? &c2s : &s2c, is_client ? &s2c : &c2s, aead);
	sodium_memzero(&c2s, sizeof(c2s));
	sodium_memzero(&s2c, sizeof(s2c));
	return rc;
}

/* transcript = H(transcript | frame): H(HELLO) after the HELLO, H(H(HELLO) | ACK) after the ACK */
static void hs_absorb(struct sk_hs *hs, const uint8_t *frame, size_t len, int first)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, sizeof(hs->transcript));
	if (!first)
		crypto_generichash_update(&st, hs->transcript, sizeof(hs->transcript));
	crypto_generichash_update(&st, frame, len);
	crypto_generichash_final(&st, hs->transcript, sizeof(hs->transcript));
}

/* Seal a handshake frame: seq 0, keyed BLAKE2b under key. */
static long hs_seal(const struct sk_hs *hs, const struct sk_key *key, uint8_t *out, uint8_t type,
		    uint16_t flags, const uint8_t *payload, size_t len)
{
	struct iovec iov = { .iov_base = out + SK_PROTO_HDR_LEN, .iov_len = len };

	memcpy(out + SK_PROTO_HDR_LEN, payload, len);
	sk_proto_hdr_encode(out, type, flags, hs->module, 0, (uint32_t)len);
	sk_proto_mac_iov(out + SK_PROTO_HDR_LEN + len, key, out, &iov, 1);
	return (long)(SK_PROTO_HDR_LEN + len + SK_PROTO_MAC_LEN);
}

/* Check a handshake frame of exactly the expected type and payload length, MACed under key. */
static int hs_check(const struct sk_key *key, const uint8_t *in, size_t len, uint8_t type,
		    size_t plen, struct sk_frame *f, enum sk_reject *why)
{
	if (len < SK_PROTO_HDR_LEN) {
		*why = SK_REJ_LENGTH;
		return -EBADMSG;
	}
	if (sk_proto_hdr_decode(in, f, why) < 0)
		return -EBADMSG;
	if (f->len != plen || len != SK_PROTO_HDR_LEN + plen + SK_PROTO_MAC_LEN) {
		*why = SK_REJ_LENGTH;
		return -EBADMSG;
	}
	if (!sk_proto_mac_ok(key, in, in + SK_PROTO_HDR_LEN, plen, in + SK_PROTO_HDR_LEN + plen)) {
		*why = SK_REJ_MAC;
		return -EBADMSG;
	}
	if (f->type != type || f->seq != 0 || !hs_flags_valid(f->flags)) {
		*why = SK_REJ_HANDSHAKE;
		return -EBADMSG;
	}
	f->payload = in + SK_PROTO_HDR_LEN;
	return 0;
}

static int hs_check_master(const struct sk_hs *hs, const uint8_t *in, size_t len, uint8_t type,
			   size_t plen, struct sk_frame *f, enum sk_reject *why)
{
	struct sk_key k;
	int rc;

	sk_proto_derive(&k, &hs->master, "handshake", NULL, 0);
	rc = hs_check(&k, in, len, type, plen, f, why);
	sodium_memzero(&k, sizeof(k));
	return rc;
}

static long hs_seal_master(const struct sk_hs *hs, uint8_t *out, uint8_t type, uint16_t flags,
			   const uint8_t *payload, size_t len)
{
	struct sk_key k;
	long n;

	sk_proto_derive(&k, &hs->master, "handshake", NULL, 0);
	n = hs_seal(hs, &k, out, type, flags, payload, len);
	sodium_memzero(&k, sizeof(k));
	return n;
}

long sk_hs_client_hello(struct sk_hs *hs, const struct sk_key *master, uint32_t kind,
			uint32_t my_node, uint32_t module, uint8_t *out)
{
	uint8_t p[SK_HS_HELLO_PAYLOAD];
	long n;

	if (sk_proto_sodium_ready() < 0)
		return -EIO;
	memset(hs, 0, sizeof(*hs));
	hs->master = *master;
	hs->kind = kind;
	hs->module = module;
	hs->my_node = my_node;
	randombytes_buf(hs->nonce_c, sizeof(hs->nonce_c));
	sk_put_u32(p, kind & SK_CHAN_KIND_MASK);
	sk_put_u32(p + 4, my_node);
	memcpy(p + 8, hs->nonce_c, SK_PROTO_NONCE_LEN);
	n = hs_seal_master(hs, out, SK_MSG_HELLO, hs_wishes(kind), p, sizeof(p));
	hs_absorb(hs, out, (size_t)n, 1);
	return n;
}

long sk_hs_server_reply(struct sk_hs *hs, const struct sk_key *master, uint32_t kind,
			uint32_t my_node, const uint8_t *in, size_t len, uint8_t *out,
			enum sk_reject *why)
{
	uint8_t p[SK_HS_ACK_PAYLOAD];
	uint16_t mine;
	struct sk_frame f;
	struct sk_rd r;
	long n;
	int mismatch;

	*why = SK_REJ_NONE;
	if (sk_proto_sodium_ready() < 0)
		return -EIO;
	mine = hs_wishes(kind); /* after sodium_init: it detects AES-NI */
	memset(hs, 0, sizeof(*hs));
	hs->master = *master;
	hs->my_node = my_node;
	hs->kind = kind;
	if (hs_check_master(hs, in, len, SK_MSG_HELLO, SK_HS_HELLO_PAYLOAD, &f, why) < 0)
		return -EBADMSG;
	sk_rd_init(&r, f.payload, f.len);
	if (sk_rd_u32(&r) != (kind & SK_CHAN_KIND_MASK)) {
		*why = SK_REJ_HANDSHAKE;
		return -EBADMSG;
	}
	hs->peer_node = sk_rd_u32(&r);
	memcpy(hs->nonce_c, sk_rd_bytes(&r, SK_PROTO_NONCE_LEN), SK_PROTO_NONCE_LEN);
	hs->module = f.module;
	mismatch = (f.flags & SK_HS_F_PLAIN) != (mine & SK_HS_F_PLAIN);
	/* AES-GCM only if both can; on a mismatch the ACK carries our setting so the client can say why */
	hs->agreed = mismatch ? (mine & SK_HS_F_PLAIN) : (uint16_t)(f.flags & mine);
	hs_absorb(hs, in, len, 1);
	randombytes_buf(hs->nonce_s, sizeof(hs->nonce_s));
	sk_put_u32(p, my_node);
	memcpy(p + 4, hs->nonce_s, SK_PROTO_NONCE_LEN);
	memcpy(p + 4 + SK_PROTO_NONCE_LEN, hs->nonce_c, SK_PROTO_NONCE_LEN);
	n = hs_seal_master(hs, out, SK_MSG_HELLO_ACK, hs->agreed, p, sizeof(p));
	hs_absorb(hs, out, (size_t)n, 0);
	if (mismatch) {
		*why = SK_REJ_ENCRYPT;
		return -EPROTO;
	}
	return n;
}

long sk_hs_client_finish(struct sk_hs *hs, const uint8_t *in, size_t len, uint8_t *out,
			 struct sk_chan *c, enum sk_reject *why)
{
	uint16_t mine = hs_wishes(hs->kind);
	struct sk_key fin;
	struct sk_frame f;
	struct sk_rd r;
	const uint8_t *echo;
	long n;

	*why = SK_REJ_NONE;
	if (hs_check_master(hs, in, len, SK_MSG_HELLO_ACK, SK_HS_ACK_PAYLOAD, &f, why) < 0)
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
	if ((f.flags & SK_HS_F_PLAIN) != (mine & SK_HS_F_PLAIN)) {
		*why = SK_REJ_ENCRYPT;
		return -EPROTO;
	}
	if ((f.flags & SK_HS_F_AES) && !(mine & SK_HS_F_AES)) {
		*why = SK_REJ_HANDSHAKE; /* a choice we did not offer */
		return -EBADMSG;
	}
	hs->agreed = f.flags;
	hs_absorb(hs, in, len, 0);
	if (session_keys(hs, c, 1) < 0) {
		*why = SK_REJ_HANDSHAKE;
		return -EBADMSG;
	}
	hs_key(hs, "client finished", &fin);
	n = hs_seal(hs, &fin, out, SK_MSG_HELLO_FIN, hs->agreed, hs->transcript,
		    sizeof(hs->transcript));
	sodium_memzero(&fin, sizeof(fin));
	return n;
}

int sk_hs_server_finish(struct sk_hs *hs, const uint8_t *in, size_t len, struct sk_chan *c,
			enum sk_reject *why)
{
	struct sk_key fin;
	struct sk_frame f;
	int rc;

	*why = SK_REJ_NONE;
	hs_key(hs, "client finished", &fin);
	rc = hs_check(&fin, in, len, SK_MSG_HELLO_FIN, SK_HS_FIN_PAYLOAD, &f, why);
	sodium_memzero(&fin, sizeof(fin));
	if (rc < 0)
		return rc;
	/* MAC and transcript both bind the FIN to this connection's nonces and frames */
	if (f.flags != hs->agreed || f.module != hs->module ||
	    sodium_memcmp(f.payload, hs->transcript, sizeof(hs->transcript)) != 0) {
		*why = SK_REJ_HANDSHAKE;
		return -EBADMSG;
	}
	if (session_keys(hs, c, 0) < 0) {
		*why = SK_REJ_HANDSHAKE;
		return -EBADMSG;
	}
	return 0;
}

/* ---- blocking helpers ---- */

static long now_ms(void)
{
	return (long)(sk_now_us() / 1000);
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

/* sendmsg(MSG_NOSIGNAL) on sockets: a peer that went away is -EPIPE, never SIGPIPE */
static int write_full(int fd, const uint8_t *buf, size_t n)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = n };

	return sk_writev_all(fd, &iov, 1);
}

int sk_chan_connect_fd(int fd, const struct sk_key *master, uint32_t kind, uint32_t my_node,
		       uint32_t module, struct sk_chan *c, uint32_t *peer_node, int timeout_ms)
{
	uint8_t buf[SK_HS_FRAME_LEN], fin[SK_HS_FRAME_LEN];
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
		rc = read_full(fd, buf, SK_HS_ACK_LEN, deadline);
	if (rc == 0) {
		n = sk_hs_client_finish(&hs, buf, SK_HS_ACK_LEN, fin, c, &why);
		rc = n < 0 ? (int)n : write_full(fd, fin, (size_t)n);
	}
	if (rc == 0 && peer_node)
		*peer_node = hs.peer_node;
	sodium_memzero(&hs, sizeof(hs));
	return rc;
}

int sk_chan_accept_fd(int fd, const struct sk_key *master, uint32_t kind, uint32_t my_node,
		      struct sk_chan *c, uint32_t *peer_node, uint32_t *module, int timeout_ms,
		      enum sk_reject *why)
{
	_Static_assert(SK_HS_HELLO_LEN >= SK_HS_FIN_LEN, "one input buffer for HELLO and FIN");
	uint8_t in[SK_HS_HELLO_LEN], out[SK_HS_FRAME_LEN];
	long deadline = now_ms() + timeout_ms;
	struct sk_hs hs;
	long n;
	int rc;

	*why = SK_REJ_NONE;
	memset(&hs, 0, sizeof(hs));
	rc = read_full(fd, in, SK_HS_HELLO_LEN, deadline);
	if (rc < 0)
		goto out;
	n = sk_hs_server_reply(&hs, master, kind, my_node, in, SK_HS_HELLO_LEN, out, why);
	if (n == -EPROTO) {
		/* tell the client our setting, so both logs say why */
		write_full(fd, out, SK_HS_ACK_LEN);
		rc = -EBADMSG;
		goto out;
	}
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	rc = write_full(fd, out, (size_t)n);
	/* the connection counts only once the client proved the key, within the same deadline */
	if (rc == 0)
		rc = read_full(fd, in, SK_HS_FIN_LEN, deadline);
	if (rc == 0)
		rc = sk_hs_server_finish(&hs, in, SK_HS_FIN_LEN, c, why);
	if (rc == 0 && peer_node)
		*peer_node = hs.peer_node;
	if (rc == 0 && module)
		*module = hs.module;
out:
	sodium_memzero(&hs, sizeof(hs));
	return rc;
}

const char *sk_chan_strerror(int rc)
{
	switch (rc) {
	case -EPROTO:
		return "the peer's encryption setting differs (\"encrypt\" / --no-encrypt must be the "
		       "same on both nodes)";
	case -EBADMSG:
		return "the peer failed authentication (another cluster secret, or not a SteadyKit "
		       "peer of this protocol version)";
	case -ETIMEDOUT:
		return "handshake timed out";
	default:
		return strerror(-rc);
	}
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
	if (iovcnt)
		memcpy(v + 1, iov, sizeof(*iov) * (size_t)iovcnt);
	rc = sk_chan_seal(c, hdr, mac, type, flags, module, v + 1, iovcnt);
	if (rc < 0)
		return rc;
	v[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	v[iovcnt + 1] = (struct iovec){ .iov_base = mac, .iov_len = sizeof(mac) };
	return sk_writev_all(fd, v, iovcnt + 2);
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
		return sk_chan_reject(c, *why, why);
	rest = (size_t)f->len + SK_PROTO_MAC_LEN;
	if (rest > cap - SK_PROTO_HDR_LEN)
		return sk_chan_reject(c, SK_REJ_LENGTH, why);
	rc = read_full(fd, buf + SK_PROTO_HDR_LEN, rest, -1);
	if (rc < 0)
		return rc;
	return sk_chan_verify(c, buf, buf + SK_PROTO_HDR_LEN, buf + SK_PROTO_HDR_LEN + f->len, f,
			      why);
}
