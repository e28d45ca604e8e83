/* libsk/proto.c: frame encoding, encryption/authentication (AES-GCM, ChaCha20-Poly1305, Poly1305, keyed BLAKE2b), seq checks, keys, datagrams. */
#include "proto.h"
#include "proto_int.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

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

int sk_proto_sodium_ready(void)
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

static int kdf(struct sk_key *k, const void *secret, size_t len)
{
	uint8_t salt[crypto_pwhash_SALTBYTES];

	crypto_generichash(salt, sizeof(salt), (const uint8_t *)master_label,
			   sizeof(master_label) - 1, NULL, 0);
	if (crypto_pwhash(k->b, sizeof(k->b), secret, len, salt, KDF_OPSLIMIT, KDF_MEMLIMIT,
			  crypto_pwhash_ALG_ARGON2ID13) != 0)
		return -ENOMEM; /* the only way it fails with fixed, valid limits */
	return 0;
}

/*
 * Argon2id in a child process: its KDF_MEMLIMIT bytes are touched there, so the
 * daemons' peak resident size (what an operator reads as their footprint) stays
 * theirs. 1 if no child could be made (the caller derives in process).
 */
static int kdf_in_child(struct sk_key *k, const void *secret, size_t len)
{
	int p[2], st;
	size_t got = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return 1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return 1;
	}
	if (pid == 0) {
		struct sk_key ck;
		int ok;

		close(p[0]);
		ok = kdf(&ck, secret, len) == 0 && write(p[1], ck.b, sizeof(ck.b)) == sizeof(ck.b);
		sodium_memzero(&ck, sizeof(ck));
		_exit(ok ? 0 : 1);
	}
	close(p[1]);
	while (got < sizeof(k->b)) {
		ssize_t n = read(p[0], k->b + got, sizeof(k->b) - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return got == sizeof(k->b) ? 0 : -ENOMEM;
}

int sk_proto_master_key(struct sk_key *out, const void *secret, size_t len)
{
	struct sk_key k;
	int rc;

	if (sk_proto_secret_weak(secret, len))
		return -EINVAL;
	if (sk_proto_sodium_ready() < 0)
		return -EIO;
	rc = kdf_in_child(&k, secret, len);
	if (rc == 1)
		rc = kdf(&k, secret, len);
	if (rc == 0)
		*out = k;
	sodium_memzero(&k, sizeof(k));
	return rc;
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
void sk_proto_mac_iov(uint8_t *mac, const struct sk_key *key, const uint8_t *hdr,
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

int sk_proto_mac_ok(const struct sk_key *key, const uint8_t *hdr, const uint8_t *payload,
		  size_t len, const uint8_t *mac)
{
	uint8_t want[SK_PROTO_MAC_LEN];
	struct iovec iov = { .iov_base = (void *)payload, .iov_len = len };

	sk_proto_mac_iov(want, key, hdr, &iov, 1);
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

/*
 * The AEAD itself is OpenSSL's (libcrypto): the same AES-256-GCM and
 * ChaCha20-Poly1305 as libsodium's, byte for byte (unit-proto opens our
 * frames with libsodium), at several times the speed on this class of CPU
 * (VAES/VPCLMULQDQ paths; bench/crypto.c measures both). A cipher context
 * holds state while it runs and struct sk_chan is copied freely with no
 * destructor, so each thread keeps one context per use (seal, open), set up
 * for the last key it saw.
 *
 * The ciphertext of an encrypted frame goes to a buffer of the sealing thread
 * too: the caller's payload (a FUSE request buffer that another thread may be
 * writing to disk at the same time) is never touched, and no buffer has to be
 * owned by struct sk_chan. It grows in 64 KiB steps to the largest frame this
 * thread sealed. All of it is freed when the thread exits.
 */
enum { AEAD_SEAL, AEAD_OPEN };

struct chan_tls {
	uint8_t *buf; /* the ciphertext buffer */
	size_t cap;
	EVP_CIPHER_CTX *ctx[2];
	uint8_t alg[2]; /* enum sk_aead that ctx[i] is keyed for; 0: none yet */
	uint8_t key[2][SK_PROTO_KEY_LEN];
};

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_key_ok;
static __thread struct chan_tls *tls;

static void tls_free(void *p)
{
	struct chan_tls *t = p;

	free(t->buf);
	EVP_CIPHER_CTX_free(t->ctx[AEAD_SEAL]);
	EVP_CIPHER_CTX_free(t->ctx[AEAD_OPEN]);
	sodium_memzero(t, sizeof(*t));
	free(t);
}

static void tls_init(void)
{
	tls_key_ok = pthread_key_create(&tls_key, tls_free) == 0;
}

/* This thread's state, made on first use (freed at its exit); NULL if out of memory. */
static struct chan_tls *thread_state(void)
{
	struct chan_tls *t = tls;

	if (t)
		return t;
	pthread_once(&tls_once, tls_init);
	if (!tls_key_ok || !(t = calloc(1, sizeof(*t))))
		return NULL;
	if (pthread_setspecific(tls_key, t) != 0) {
		free(t);
		return NULL;
	}
	return tls = t;
}

/* This thread's context for `use`, keyed with `key` for `alg`; NULL if out of memory. */
static EVP_CIPHER_CTX *aead_ctx(int use, uint8_t alg, const struct sk_key *key)
{
	struct chan_tls *t = thread_state();
	const EVP_CIPHER *ci;
	int ok;

	if (!t)
		return NULL;
	if (!t->ctx[use] && !(t->ctx[use] = EVP_CIPHER_CTX_new()))
		return NULL;
	if (t->alg[use] == alg && memcmp(t->key[use], key->b, sizeof(key->b)) == 0)
		return t->ctx[use];
	ci = alg == SK_AEAD_AES256GCM ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
	t->alg[use] = 0;
	ok = use == AEAD_SEAL ? EVP_EncryptInit_ex(t->ctx[use], ci, NULL, key->b, NULL)
			      : EVP_DecryptInit_ex(t->ctx[use], ci, NULL, key->b, NULL);
	if (ok != 1)
		return NULL;
	memcpy(t->key[use], key->b, sizeof(key->b));
	t->alg[use] = alg;
	return t->ctx[use];
}

/* The sealing context of c for this thread (before a seq is taken, so a failure costs none). */
static EVP_CIPHER_CTX *aead_seal_ctx(const struct sk_chan *c)
{
	return aead_ctx(AEAD_SEAL, c->aead, &c->tx_key);
}

/* dst may be src (in place). 0, or -EIO if OpenSSL refused (nothing usable in dst). */
static int aead_seal(EVP_CIPHER_CTX *x, uint8_t *dst, const uint8_t *src, size_t len,
		     const uint8_t *hdr, uint8_t *tag, uint64_t seq)
{
	uint8_t n[12];
	int outl = 0, fl = 0;

	aead_nonce(n, seq);
	if (len > INT_MAX || EVP_EncryptInit_ex(x, NULL, NULL, NULL, n) != 1 ||
	    EVP_EncryptUpdate(x, NULL, &outl, hdr, SK_PROTO_HDR_LEN) != 1 ||
	    (len && EVP_EncryptUpdate(x, dst, &outl, src, (int)len) != 1) ||
	    EVP_EncryptFinal_ex(x, dst + (len ? (size_t)outl : 0), &fl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, SK_PROTO_MAC_LEN, tag) != 1)
		return -EIO;
	return 0;
}

/* In place; 0 if authentic. A forgery leaves p zeroed, never half-decrypted. */
static int aead_open(const struct sk_chan *c, uint8_t *p, size_t len, const uint8_t *hdr,
		     const uint8_t *tag, uint64_t seq)
{
	EVP_CIPHER_CTX *x = aead_ctx(AEAD_OPEN, c->aead, &c->rx_key);
	uint8_t n[12];
	int outl = 0, fl = 0;

	aead_nonce(n, seq);
	if (!x || len > INT_MAX || EVP_DecryptInit_ex(x, NULL, NULL, NULL, n) != 1 ||
	    EVP_DecryptUpdate(x, NULL, &outl, hdr, SK_PROTO_HDR_LEN) != 1 ||
	    (len && EVP_DecryptUpdate(x, p, &outl, p, (int)len) != 1) ||
	    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, SK_PROTO_MAC_LEN, (void *)tag) != 1 ||
	    EVP_DecryptFinal_ex(x, p + (len ? (size_t)outl : 0), &fl) != 1) {
		sodium_memzero(p, len);
		return -1;
	}
	return 0;
}

/* This thread's ciphertext buffer, at least need bytes; NULL if out of memory. */
static uint8_t *seal_buf(size_t need)
{
	struct chan_tls *t = thread_state();
	uint8_t *p;
	size_t cap;

	if (!t)
		return NULL;
	if (need <= t->cap && t->buf)
		return t->buf;
	cap = (need + 65535) & ~(size_t)65535;
	p = malloc(cap);
	if (!p)
		return NULL;
	free(t->buf);
	t->buf = p;
	t->cap = cap;
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

int sk_proto_type_handshake(uint8_t t)
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
	if (sk_proto_sodium_ready() < 0)
		return -EIO;
	if (aead != SK_AEAD_NONE && aead != SK_AEAD_AES256GCM && aead != SK_AEAD_CHACHA20)
		return -EINVAL;
	if (aead == SK_AEAD_AES256GCM && !crypto_aead_aes256gcm_is_available())
		return -ENOTSUP;
	memset(c, 0, sizeof(*c));
	c->tx_key = *tx;
	c->rx_key = *rx;
	c->aead = (uint8_t)aead;
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
	EVP_CIPHER_CTX *x = NULL;
	uint8_t *ct = NULL;
	int i, rc = 0, used = 0, last = 0;
	uint64_t seq;

	if (len > SK_PROTO_MAX_PAYLOAD)
		rc = -EMSGSIZE;
	else if (c->tx_seq == UINT64_MAX)
		rc = -EOVERFLOW;
	else if (c->aead != SK_AEAD_NONE &&
		 (!(ct = seal_buf(len ? len : 1)) || !(x = aead_seal_ctx(c))))
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
			rc = aead_seal(x, ct, iov[last].iov_base, len, hdr, mac, seq);
		} else {
			/* AEAD wants one message: gather, then encrypt in place (cache-hot) */
			for (i = 0; i < iovcnt; i++) {
				if (iov[i].iov_len)
					memcpy(ct + off, iov[i].iov_base, iov[i].iov_len);
				off += iov[i].iov_len;
			}
			rc = aead_seal(x, ct, ct, len, hdr, mac, seq);
		}
		if (rc < 0) {
			c->tx_seq--; /* nothing went out under it */
			memset(hdr, 0, SK_PROTO_HDR_LEN);
			memset(mac, 0, SK_PROTO_MAC_LEN);
			for (i = 0; i < iovcnt; i++)
				iov[i].iov_len = 0;
			return rc;
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
	EVP_CIPHER_CTX *x = NULL;
	uint64_t seq;

	if (total < 0)
		return total;
	if (c->tx_seq == UINT64_MAX)
		return -EOVERFLOW;
	if (c->aead != SK_AEAD_NONE && !(x = aead_seal_ctx(c)))
		return -ENOMEM;
	seq = ++c->tx_seq;
	sk_proto_hdr_encode(buf, type, flags, module, seq, (uint32_t)len);
	if (c->aead == SK_AEAD_NONE) {
		frame_mac(p + len, &c->tx_key, buf, seq, &iov, 1);
	} else if (aead_seal(x, p, p, len, buf, p + len, seq) < 0) { /* one buffer: in place */
		c->tx_seq--;
		return -EIO;
	}
	c->frames_out++;
	c->bytes_out += (uint64_t)total;
	return total;
}

int sk_chan_reject(struct sk_chan *c, enum sk_reject r, enum sk_reject *why)
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
		return sk_chan_reject(c, SK_REJ_MAC, why);
	if (f->seq <= c->rx_seq)
		return sk_chan_reject(c, SK_REJ_REPLAY, why);
	/* exactly the next one: a frame cut out of the stream must not be acked by the next */
	if (f->seq != c->rx_seq + 1)
		return sk_chan_reject(c, SK_REJ_GAP, why);
	if (sk_proto_type_handshake(f->type))
		return sk_chan_reject(c, SK_REJ_HANDSHAKE, why);
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
		return sk_chan_reject(c, *why, why);
	total = SK_PROTO_HDR_LEN + (size_t)f->len + SK_PROTO_MAC_LEN;
	if (n < total)
		return 0;
	rc = sk_chan_verify(c, buf, buf + SK_PROTO_HDR_LEN, buf + SK_PROTO_HDR_LEN + f->len, f, why);
	return rc < 0 ? rc : (long)total;
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
	sk_proto_mac_iov(buf + SK_PROTO_HDR_LEN + len, dkey, buf, &iov, 1);
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
	if (!sk_proto_mac_ok(dkey, buf, buf + SK_PROTO_HDR_LEN, f->len,
			     buf + SK_PROTO_HDR_LEN + f->len)) {
		*why = SK_REJ_MAC;
		return -EBADMSG;
	}
	/* newer than the last, not contiguous: see the header (datagrams are lost and reordered) */
	if (f->seq <= *last_seq) {
		*why = SK_REJ_REPLAY;
		return -EBADMSG;
	}
	if (sk_proto_type_handshake(f->type)) {
		*why = SK_REJ_HANDSHAKE;
		return -EBADMSG;
	}
	*last_seq = f->seq;
	f->payload = buf + SK_PROTO_HDR_LEN;
	return 0;
}
