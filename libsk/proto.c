/* libsk/proto.c: frame encoding, encryption/authentication (AES-GCM, ChaCha20-Poly1305, Poly1305, keyed BLAKE2b), seq checks, the handshake. */
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Salt of the master-key derivation: fixed, so one secret gives one master on every node. */
static const char master_label[] = "SteadyKit master key v2";
/*
 * Argon2id cost: about 80 ms and 32 MiB here. It runs at every daemon start;
 * the secret is meant to be a random key, so the KDF only has to make a
 * guessable secret expensive to guess, not to stretch a password for years.
 */
#define KDF_OPSLIMIT 2
#define KDF_MEMLIMIT (32u << 20)

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
	[SK_REJ_GAP] = "sequence gap (a frame is missing)",
	[SK_REJ_ENCRYPT] = ("encryption setting differs from the peer's (\"encrypt\" / "
			    "--no-encrypt must be the same on both nodes)"),
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

/* log2(x) in 1/1024 bits, for x >= 1 (no libm in libsk). */
static uint64_t log2_fx(uint64_t x)
{
	unsigned ip = 63u - (unsigned)__builtin_clzll(x);
	uint64_t r = (uint64_t)ip << 10, y, bit;

	/* y = x / 2^ip in [1, 2), fixed point with 30 fraction bits; square and halve per bit */
	y = ip >= 30 ? x >> (ip - 30) : x << (30 - ip);
	for (bit = 1u << 9; bit; bit >>= 1) {
		y = (y * y) >> 30;
		if (y >= (2ull << 30)) {
			y >>= 1;
			r += bit;
		}
	}
	return r;
}

const char *sk_proto_secret_weak(const void *secret, size_t len)
{
	const uint8_t *b = secret;
	uint32_t cnt[256] = { 0 };
	uint64_t bits;
	size_t i, p, steps = 0;
	unsigned distinct = 0;
	size_t n = len;
	int text = 1;

	/* a text secret (base64, hex, typed) is judged without its line ending; a binary key as it is */
	while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r'))
		n--;
	for (i = 0; i < n; i++)
		if (b[i] < 0x20 || b[i] >= 0x7f)
			text = 0;
	if (text)
		len = n;
	if (len < SK_PROTO_SECRET_MIN)
		return "shorter than 16 bytes";
	for (i = 0; i < len; i++)
		distinct += cnt[b[i]]++ == 0;
	if (distinct == 1)
		return "every byte is the same";
	/* a short pattern repeated ("abcabc...", "passwordpassword") */
	for (p = 1; p <= len / 2; p++) {
		for (i = p; i < len && b[i] == b[i - p]; i++)
			;
		if (i == len)
			return "a short pattern repeated";
	}
	/* runs: "abcdef...", "0123..." */
	for (i = 2; i < len; i++)
		steps += (uint8_t)(b[i] - b[i - 1]) == (uint8_t)(b[i - 1] - b[i - 2]);
	if (steps * 2 >= len)
		return "mostly runs of consecutive bytes";
	/* empirical entropy of the bytes: len * log2(len) - sum(n * log2(n)) */
	bits = (uint64_t)len * log2_fx(len);
	for (i = 0; i < 256; i++)
		if (cnt[i])
			bits -= (uint64_t)cnt[i] * log2_fx(cnt[i]);
	if (bits < (48u << 10))
		return "too few different bytes for its length (low entropy)";
	return NULL;
}

int sk_proto_master_key(struct sk_key *out, const void *secret, size_t len)
{
	uint8_t salt[crypto_pwhash_SALTBYTES];
	struct sk_key k;

	if (sk_proto_secret_weak(secret, len))
		return -EINVAL;
	if (sodium_ready() < 0)
		return -EIO;
	crypto_generichash(salt, sizeof(salt), (const uint8_t *)master_label,
			   sizeof(master_label) - 1, NULL, 0);
	if (crypto_pwhash(k.b, sizeof(k.b), secret, len, salt, KDF_OPSLIMIT, KDF_MEMLIMIT,
			  crypto_pwhash_ALG_ARGON2ID13) != 0)
		return -ENOMEM; /* the only way it fails with fixed, valid limits */
	*out = k;
	sodium_memzero(&k, sizeof(k));
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
 * MAC-only channel frames ("encrypt": false): Poly1305 under a one-time key
 * taken from the ChaCha20 keystream of the direction key with the frame's seq
 * as nonce, the MAC half of ChaCha20-Poly1305 (RFC 8439). Each (direction key,
 * seq) pair is used once because seq strictly increases and keys are per
 * connection (and differ from an encrypted connection's: the mode is part of
 * their derivation); it runs about four times faster than BLAKE2b here.
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

/*
 * Encrypted channels: AEAD with the direction key, nonce 0^4 | seq, the header
 * as associated data. (direction key, seq) is never used twice: keys are per
 * connection (both nonces) and seq strictly increases.
 */
_Static_assert(crypto_aead_aes256gcm_NPUBBYTES == 12 &&
		       crypto_aead_chacha20poly1305_ietf_NPUBBYTES == 12,
	       "96-bit AEAD nonces");
_Static_assert(crypto_aead_aes256gcm_ABYTES == SK_PROTO_MAC_LEN &&
		       crypto_aead_chacha20poly1305_ietf_ABYTES == SK_PROTO_MAC_LEN,
	       "AEAD tag is the frame MAC");

static void aead_nonce(uint8_t n[12], uint64_t seq)
{
	memset(n, 0, 4);
	sk_put_u64(n + 4, seq);
}

/* dst may be src (in place). */
static void aead_seal(const struct sk_chan *c, uint8_t *dst, const uint8_t *src, size_t len,
		      const uint8_t *hdr, uint8_t *tag, uint64_t seq)
{
	uint8_t n[12];

	aead_nonce(n, seq);
	if (c->aead == SK_AEAD_AES256GCM)
		crypto_aead_aes256gcm_encrypt_detached_afternm(dst, tag, NULL, src, len, hdr,
							      SK_PROTO_HDR_LEN, NULL, n, &c->tx_aes);
	else
		crypto_aead_chacha20poly1305_ietf_encrypt_detached(dst, tag, NULL, src, len, hdr,
								   SK_PROTO_HDR_LEN, NULL, n,
								   c->tx_key.b);
}

/* In place; 0 if authentic. */
static int aead_open(const struct sk_chan *c, uint8_t *p, size_t len, const uint8_t *hdr,
		     const uint8_t *tag, uint64_t seq)
{
	uint8_t n[12];

	aead_nonce(n, seq);
	if (c->aead == SK_AEAD_AES256GCM)
		return crypto_aead_aes256gcm_decrypt_detached_afternm(p, NULL, p, len, tag, hdr,
								      SK_PROTO_HDR_LEN, n, &c->rx_aes);
	return crypto_aead_chacha20poly1305_ietf_decrypt_detached(p, NULL, p, len, tag, hdr,
								  SK_PROTO_HDR_LEN, n, c->rx_key.b);
}

/*
 * The ciphertext of an encrypted frame goes to a buffer of the sealing thread:
 * the caller's payload (a FUSE request buffer that another thread may be
 * writing to disk at the same time) is never touched, and no buffer has to be
 * owned by struct sk_chan, which callers copy freely. It grows in 64 KiB steps
 * to the largest frame this thread sealed and is freed when the thread exits.
 */
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static int tl_key_ok;
static __thread uint8_t *tl_buf;
static __thread size_t tl_cap;

static void tl_init(void)
{
	tl_key_ok = pthread_key_create(&tl_key, free) == 0;
}

static uint8_t *seal_buf(size_t need)
{
	uint8_t *p;
	size_t cap;

	if (need <= tl_cap && tl_buf)
		return tl_buf;
	pthread_once(&tl_once, tl_init);
	cap = (need + 65535) & ~(size_t)65535;
	p = malloc(cap);
	if (!p)
		return NULL;
	free(tl_buf);
	tl_buf = p;
	tl_cap = cap;
	if (tl_key_ok)
		pthread_setspecific(tl_key, p);
	return p;
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
	return (t >= SK_MSG_HELLO && t <= SK_MSG_HELLO_FIN) ||
	       (t >= SK_MSG_REPL_FIRST && t <= SK_MSG_AGENT_LAST);
}

static int type_handshake(uint8_t t)
{
	return t == SK_MSG_HELLO || t == SK_MSG_HELLO_ACK || t == SK_MSG_HELLO_FIN;
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

int sk_chan_init(struct sk_chan *c, const struct sk_key *tx, const struct sk_key *rx,
		 enum sk_aead aead)
{
	if (sodium_ready() < 0)
		return -EIO;
	if (aead != SK_AEAD_NONE && aead != SK_AEAD_AES256GCM && aead != SK_AEAD_CHACHA20)
		return -EINVAL;
	if (aead == SK_AEAD_AES256GCM && !crypto_aead_aes256gcm_is_available())
		return -ENOTSUP;
	memset(c, 0, sizeof(*c));
	c->tx_key = *tx;
	c->rx_key = *rx;
	c->aead = (uint8_t)aead;
	if (aead == SK_AEAD_AES256GCM) {
		crypto_aead_aes256gcm_beforenm(&c->tx_aes, tx->b);
		crypto_aead_aes256gcm_beforenm(&c->rx_aes, rx->b);
	}
	return 0;
}

const char *sk_chan_aead_str(const struct sk_chan *c)
{
	switch (c->aead) {
	case SK_AEAD_AES256GCM: return "aes-256-gcm";
	case SK_AEAD_CHACHA20: return "chacha20-poly1305";
	default: return "mac-only";
	}
}

static size_t iov_total(const struct iovec *iov, int iovcnt)
{
	size_t n = 0;
	int i;

	for (i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

int sk_chan_seal(struct sk_chan *c, uint8_t *hdr, uint8_t *mac, uint8_t type, uint16_t flags,
		 uint32_t module, struct iovec *iov, int iovcnt)
{
	size_t len = iov_total(iov, iovcnt), off = 0;
	uint8_t *ct = NULL;
	int i, rc = 0, used = 0, last = 0;
	uint64_t seq;

	if (len > SK_PROTO_MAX_PAYLOAD)
		rc = -EMSGSIZE;
	else if (c->tx_seq == UINT64_MAX)
		rc = -EOVERFLOW;
	else if (c->aead != SK_AEAD_NONE && !(ct = seal_buf(len ? len : 1)))
		rc = -ENOMEM;
	if (rc < 0) {
		memset(hdr, 0, SK_PROTO_HDR_LEN);
		memset(mac, 0, SK_PROTO_MAC_LEN);
		for (i = 0; i < iovcnt; i++)
			iov[i].iov_len = 0;
		return rc;
	}
	seq = ++c->tx_seq;
	sk_proto_hdr_encode(hdr, type, flags, module, seq, (uint32_t)len);
	if (c->aead == SK_AEAD_NONE) {
		frame_mac(mac, &c->tx_key, hdr, seq, iov, iovcnt);
	} else {
		for (i = 0; i < iovcnt; i++)
			if (iov[i].iov_len) {
				used++;
				last = i;
			}
		if (used == 1) {
			/* one part (a 1 MiB write sent alone): encrypt straight from it */
			aead_seal(c, ct, iov[last].iov_base, len, hdr, mac, seq);
		} else {
			/* AEAD wants one message: gather, then encrypt in place (cache-hot) */
			for (i = 0; i < iovcnt; i++) {
				if (iov[i].iov_len)
					memcpy(ct + off, iov[i].iov_base, iov[i].iov_len);
				off += iov[i].iov_len;
			}
			aead_seal(c, ct, ct, len, hdr, mac, seq);
		}
		for (i = 0, off = 0; i < iovcnt; i++) {
			iov[i].iov_base = ct + off;
			off += iov[i].iov_len;
		}
	}
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
	if (len && payload != buf + SK_PROTO_HDR_LEN)
		memmove(buf + SK_PROTO_HDR_LEN, payload, len);
	return (long)total;
}

long sk_chan_encode(struct sk_chan *c, uint8_t *buf, size_t cap, uint8_t type, uint16_t flags,
		    uint32_t module, const void *payload, size_t len)
{
	struct iovec iov = { .iov_base = buf + SK_PROTO_HDR_LEN, .iov_len = len };
	uint8_t *p = buf + SK_PROTO_HDR_LEN;
	long total = place_payload(buf, cap, payload, len);
	uint64_t seq;

	if (total < 0)
		return total;
	if (c->tx_seq == UINT64_MAX)
		return -EOVERFLOW;
	seq = ++c->tx_seq;
	sk_proto_hdr_encode(buf, type, flags, module, seq, (uint32_t)len);
	if (c->aead == SK_AEAD_NONE)
		frame_mac(p + len, &c->tx_key, buf, seq, &iov, 1);
	else
		aead_seal(c, p, p, len, buf, p + len, seq); /* one buffer: in place, no copy */
	c->frames_out++;
	c->bytes_out += (uint64_t)total;
	return total;
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

int sk_chan_verify(struct sk_chan *c, const uint8_t *hdr, uint8_t *payload, const uint8_t *mac,
		   struct sk_frame *f, enum sk_reject *why)
{
	int ok;

	if (c->aead == SK_AEAD_NONE)
		ok = frame_mac_ok(&c->rx_key, hdr, f->seq, payload, f->len, mac);
	else
		ok = aead_open(c, payload, f->len, hdr, mac, f->seq) == 0;
	/* authentic first, so a gap is told apart from a forgery */
	if (!ok)
		return reject(c, SK_REJ_MAC, why);
	if (f->seq <= c->rx_seq)
		return reject(c, SK_REJ_REPLAY, why);
	/* exactly the next one: a frame cut out of the stream must not be acked by the next */
	if (f->seq != c->rx_seq + 1)
		return reject(c, SK_REJ_GAP, why);
	if (type_handshake(f->type))
		return reject(c, SK_REJ_HANDSHAKE, why);
	c->rx_seq = f->seq;
	c->frames_in++;
	c->bytes_in += SK_PROTO_HDR_LEN + f->len + SK_PROTO_MAC_LEN;
	f->payload = payload;
	*why = SK_REJ_NONE;
	return 0;
}

long sk_chan_open(struct sk_chan *c, uint8_t *buf, size_t n, struct sk_frame *f,
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
	mac_iov(out + SK_PROTO_HDR_LEN + len, key, out, &iov, 1);
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
	if (!mac_ok(key, in, in + SK_PROTO_HDR_LEN, plen, in + SK_PROTO_HDR_LEN + plen)) {
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

	if (sodium_ready() < 0)
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
	uint16_t mine = hs_wishes(kind);
	struct sk_frame f;
	struct sk_rd r;
	long n;
	int mismatch;

	*why = SK_REJ_NONE;
	if (sodium_ready() < 0)
		return -EIO;
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
	/* newer than the last, not contiguous: see the header (datagrams are lost and reordered) */
	if (f->seq <= *last_seq) {
		*why = SK_REJ_REPLAY;
		return -EBADMSG;
	}
	if (type_handshake(f->type)) {
		*why = SK_REJ_HANDSHAKE;
		return -EBADMSG;
	}
	*last_seq = f->seq;
	f->payload = buf + SK_PROTO_HDR_LEN;
	return 0;
}
