/* libsk/proto.h: the one wire format of SteadyKit, for every channel (replication, heartbeats, agent). */
#ifndef SK_PROTO_H
#define SK_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <sodium.h>

/*
 * Frame layout, version 2. Integers are big-endian.
 *
 *   off  size  field
 *     0     4  magic     0x534b4631 ("SKF1")
 *     4     1  version   2 (1 had no client proof, no encryption, gaps in seq)
 *     5     1  type      enum sk_msg_type; unknown types are refused
 *     6     2  flags     per type; bits not defined for the type must be 0
 *     8     4  module    module id (0 = not about a module)
 *    12     8  seq       channel: exactly the previous + 1, from 1; datagram: newer than the last
 *                        seen from that sender; 0 only in handshakes
 *    20     4  len       payload length, <= SK_PROTO_MAX_PAYLOAD
 *    24   len  payload   on an encrypted channel: the ciphertext (same length)
 *  24+len  16  tag       channel frames, per connection (agreed in the handshake):
 *                          AES-256-GCM or ChaCha20-Poly1305 (IETF) with the direction key,
 *                          nonce = 0^4 | seq, the 24-byte header as associated data;
 *                          or, with "encrypt": false on both nodes, MAC only: Poly1305 over
 *                          hdr|payload with the one-time key ChaCha20(direction key, 0^4 | seq);
 *                        handshake frames and datagrams: keyed BLAKE2b-128 over hdr|payload
 *
 * The header and tag are separate buffers so a payload (e.g. a 1 MiB write in
 * the FUSE request buffer) is never copied on a MAC-only channel: writev(hdr,
 * payload..., tag). An encrypted channel encrypts into a buffer of the sending
 * thread (see sk_chan_seal) and decrypts in place on receipt.
 *
 * Handshake (stream channels), three fixed-size frames, all seq 0:
 *   HELLO     client -> server  flags: client's wishes; kind, node, nonce_c   (handshake key)
 *   HELLO_ACK server -> client  flags: agreed mode;   node, nonce_s, nonce_c (handshake key)
 *   HELLO_FIN client -> server  flags: agreed mode;   H(HELLO|HELLO_ACK)     (finish key)
 * The handshake key comes from the cluster secret; the direction keys and the
 * finish key from the secret, the channel kind, the agreed mode and both nonces.
 * The ACK echoes nonce_c, so the client knows the server holds the key now; the
 * FIN is MACed with a key only a holder of the secret who saw this server's
 * fresh nonce_s can have, so the server knows the same of the client. A HELLO
 * recorded and replayed by anyone gets an ACK and nothing more: the connection
 * never counts (sk_chan_accept_fd returns only after a valid FIN, within its
 * timeout). Frames of one connection are refused on any other (other keys), a
 * frame is never reflected back (one key per direction), and within a
 * connection the seq must be exactly the previous + 1: a frame deleted on the
 * path is a missing seq, an error that closes the stream (never skipped).
 *
 * Datagrams (heartbeats) have no handshake: they are MACed with the datagram
 * key, not encrypted (they carry no user data), and carry the sender's node id
 * in their payload; the receiver keeps the last seq per sender and refuses
 * anything not newer. They cannot demand contiguity: UDP loses and reorders
 * packets by design and a heartbeat lost on the way is normal, not an attack;
 * what matters is that an old one is never accepted again, which "newer than
 * the last" guarantees. Senders start seq at the wall clock in microseconds so
 * a restart goes on upward.
 */

#define SK_PROTO_MAGIC 0x534b4631u
#define SK_PROTO_VERSION 2
#define SK_PROTO_HDR_LEN 24
#define SK_PROTO_MAC_LEN 16
#define SK_PROTO_NONCE_LEN 32
#define SK_PROTO_KEY_LEN 32
/* Largest payload: a 1 MiB write plus its operation header and a path. */
#define SK_PROTO_MAX_PAYLOAD ((1u << 20) + (1u << 16))
#define SK_PROTO_MAX_FRAME (SK_PROTO_HDR_LEN + SK_PROTO_MAX_PAYLOAD + SK_PROTO_MAC_LEN)
/* Shortest cluster secret accepted, in bytes. */
#define SK_PROTO_SECRET_MIN 16
/* What an operator is told to do about a refused secret. */
#define SK_PROTO_SECRET_ADVICE "generate one with `head -c 32 /dev/urandom | base64`"

/* Message types. Ranges belong to pieces; the header decoder accepts only known types. */
enum sk_msg_type {
	SK_MSG_HELLO = 1,
	SK_MSG_HELLO_ACK = 2,
	SK_MSG_CLOSE = 3,     /* orderly close, empty payload */
	SK_MSG_HELLO_FIN = 4, /* client's proof, third handshake frame */

	/* 16..63: replication (fused); payloads in libsk/replmsg.h */
	SK_MSG_REPL_FIRST = 16,
	SK_MSG_REPL_LAST = 63,

	/* 64..79: heartbeats */
	SK_MSG_HB_FIRST = 64,
	SK_MSG_HEARTBEAT = 64,
	SK_MSG_HB_LAST = 79,

	/* 80..127: agent to agent */
	SK_MSG_AGENT_FIRST = 80,
	SK_MSG_AGENT_LAST = 127,
};

/* Channel kinds named in HELLO, so a replication client cannot talk to an agent port. */
enum sk_chan_kind {
	SK_CHAN_REPL = 1,
	SK_CHAN_AGENT = 2,
	SK_CHAN_TEST = 3,
};
/*
 * Or-ed into the kind given to the handshake functions (never sent as part of it):
 * F_PLAIN: MAC only, no encryption ("encrypt": false); both ends must say the same,
 *          else the handshake is refused (SK_REJ_ENCRYPT on the server, -EPROTO on the client).
 * F_CHACHA: this end does not offer AES-256-GCM (tests and benchmarks; a CPU without
 *          AES instructions never offers it). The server picks AES-GCM only if both can.
 */
#define SK_CHAN_F_PLAIN 0x100u
#define SK_CHAN_F_CHACHA 0x200u
#define SK_CHAN_KIND_MASK 0xffu

/* Handshake frame flags (HELLO: wishes and abilities; ACK and FIN: what was agreed). */
#define SK_HS_F_PLAIN 0x1u /* MAC only */
#define SK_HS_F_AES 0x2u   /* HELLO: client can do AES-256-GCM; ACK/FIN: AES-256-GCM chosen */

/* Protection of a channel's frames. */
enum sk_aead {
	SK_AEAD_NONE = 0,      /* MAC only (Poly1305), payload in clear */
	SK_AEAD_AES256GCM = 1,
	SK_AEAD_CHACHA20 = 2,  /* ChaCha20-Poly1305, IETF variant */
};

/* Why a frame was refused; also the index of its counter. */
enum sk_reject {
	SK_REJ_NONE = 0,
	SK_REJ_MAGIC,       /* not a SteadyKit frame */
	SK_REJ_VERSION,     /* unsupported version */
	SK_REJ_TYPE,        /* unknown message type */
	SK_REJ_LENGTH,      /* payload length over the bound or wrong for the type */
	SK_REJ_MAC,         /* authentication failed (forged, corrupted, wrong key) */
	SK_REJ_REPLAY,      /* seq not newer than the last accepted */
	SK_REJ_PAYLOAD,     /* payload does not parse for its type */
	SK_REJ_HANDSHAKE,   /* handshake out of order, wrong channel kind or nonce */
	SK_REJ_GAP,         /* channel seq beyond the next one: a frame is missing */
	SK_REJ_ENCRYPT,     /* the peer's "encrypt" setting differs from ours */
	SK_REJ__COUNT
};

const char *sk_reject_str(enum sk_reject why);

struct sk_key {
	uint8_t b[SK_PROTO_KEY_LEN];
};


/*
 * One authenticated direction pair. The sending side (tx_*) and receiving side
 * (rx_*) may be driven by two different threads without a lock: each touches
 * only its own fields and its own counters. Plain data: copying it moves the
 * channel (nothing to free); but never seal on two copies of one channel: the
 * same (key, seq) would encrypt two frames, which gives both plaintexts away.
 */
struct sk_chan {
	struct sk_key tx_key;
	struct sk_key rx_key;
	uint8_t aead;    /* enum sk_aead */
	uint64_t tx_seq; /* last seq sent */
	uint64_t rx_seq; /* last seq accepted; the next must be rx_seq + 1 */
	uint64_t frames_out, bytes_out;
	uint64_t frames_in, bytes_in;
	uint64_t rejected[SK_REJ__COUNT];
};

/* A decoded frame. payload points into the caller's buffer. */
struct sk_frame {
	uint8_t type;
	uint16_t flags;
	uint32_t module;
	uint64_t seq;
	uint32_t len;
	const uint8_t *payload;
};

/* ---- keys ---- */

/*
 * Master key from the cluster secret: Argon2id (crypto_pwhash) with a fixed
 * salt, costing about 50-100 ms, so a secret read from a stolen backup cannot
 * be tried by brute force quickly. The derivation runs in a short-lived child
 * process (in process only if none can be made), so its 32 MiB never count in
 * the caller's peak memory. -EINVAL if sk_proto_secret_weak() refuses the
 * secret, -ENOMEM / -EIO if the derivation cannot run.
 */
int sk_proto_master_key(struct sk_key *out, const void *secret, size_t len);
/*
 * NULL if the secret is acceptable, else why not (shorter than
 * SK_PROTO_SECRET_MIN, one repeated byte, a repeating pattern or a run, too
 * few distinct bytes for its length). Trailing white space is not counted.
 * The caller adds SK_PROTO_SECRET_ADVICE.
 */
const char *sk_proto_secret_weak(const void *secret, size_t len);
/* Sub-key for `label` (and optional context bytes) under `master`. */
void sk_proto_derive(struct sk_key *out, const struct sk_key *master, const char *label,
		     const void *ctx, size_t ctxlen);

/* ---- headers ---- */

/* Encode a header into hdr[SK_PROTO_HDR_LEN]. */
void sk_proto_hdr_encode(uint8_t *hdr, uint8_t type, uint16_t flags, uint32_t module,
			 uint64_t seq, uint32_t len);
/*
 * Decode and bound-check a header (magic, version, type, len). Returns 0 or
 * -EBADMSG with *why set. Nothing is authenticated yet: use only f->len to
 * know how many bytes to read next.
 */
int sk_proto_hdr_decode(const uint8_t *hdr, struct sk_frame *f, enum sk_reject *why);

/* ---- stream channels ---- */

/*
 * Set up a channel from its two direction keys (the handshake does this; tests,
 * fuzzers and benchmarks use it directly). aead: enum sk_aead. 0, or -ENOTSUP
 * for AES-256-GCM on a CPU without it.
 */
int sk_chan_init(struct sk_chan *c, const struct sk_key *tx, const struct sk_key *rx,
		 enum sk_aead aead);
/* Name of a channel's protection, for logs: "aes-256-gcm", "chacha20-poly1305", "mac-only". */
const char *sk_chan_aead_str(const struct sk_chan *c);

/*
 * Seal a frame for writev: fills hdr and mac for the payload in iov (total
 * length <= SK_PROTO_MAX_PAYLOAD) and takes the next tx seq.
 * MAC only: iov is left alone, the payload is sent from where it is.
 * Encrypted: the ciphertext is written to a buffer owned by the calling thread
 * and each iov entry is pointed at its part of it (lengths unchanged), so the
 * caller writes hdr, iov[0..iovcnt), mac as before, but must do so before this
 * thread seals another frame. The caller's payload bytes are never modified.
 * Returns 0, -EMSGSIZE, -ENOMEM or -EOVERFLOW (seq exhausted); on failure the
 * frame is made unsendable (hdr and mac zeroed, every iov length 0, seq not
 * taken), so a caller that ignores the result sends nothing in clear.
 */
int sk_chan_seal(struct sk_chan *c, uint8_t *hdr, uint8_t *mac, uint8_t type, uint16_t flags,
		 uint32_t module, struct iovec *iov, int iovcnt);
/*
 * Seal into one buffer (hdr|payload|mac); payload may already sit at
 * buf + SK_PROTO_HDR_LEN. Returns the frame length or -EMSGSIZE / -ENOSPC / -EOVERFLOW.
 */
long sk_chan_encode(struct sk_chan *c, uint8_t *buf, size_t cap, uint8_t type, uint16_t flags,
		    uint32_t module, const void *payload, size_t len);
/*
 * Authenticate a frame whose header f was decoded by sk_proto_hdr_decode:
 * checks the tag over hdr|payload (decrypting the payload in place on an
 * encrypted channel) and that seq is exactly rx_seq + 1. On success sets
 * f->payload and returns 0; else -EBADMSG with *why set and the counter
 * bumped (the payload bytes are then undefined).
 */
int sk_chan_verify(struct sk_chan *c, const uint8_t *hdr, uint8_t *payload, const uint8_t *mac,
		   struct sk_frame *f, enum sk_reject *why);
/*
 * One-shot decode from a buffer holding n bytes (decrypted in place). Returns
 * the frame length consumed (> 0) with *f filled, 0 if more bytes are needed
 * (buf untouched), or -EBADMSG with *why set (counted). A stream that yields
 * -EBADMSG must be closed.
 */
long sk_chan_open(struct sk_chan *c, uint8_t *buf, size_t n, struct sk_frame *f,
		  enum sk_reject *why);

/* ---- handshake (transport-agnostic; frames have fixed sizes) ---- */

#define SK_HS_HELLO_PAYLOAD (4 + 4 + SK_PROTO_NONCE_LEN)                    /* kind, node, nonce */
#define SK_HS_ACK_PAYLOAD (4 + SK_PROTO_NONCE_LEN + SK_PROTO_NONCE_LEN)    /* node, nonce_s, nonce_c */
#define SK_HS_FIN_PAYLOAD 32                                               /* H(HELLO | ACK) */
#define SK_HS_HELLO_LEN (SK_PROTO_HDR_LEN + SK_HS_HELLO_PAYLOAD + SK_PROTO_MAC_LEN)
#define SK_HS_ACK_LEN (SK_PROTO_HDR_LEN + SK_HS_ACK_PAYLOAD + SK_PROTO_MAC_LEN)
#define SK_HS_FIN_LEN (SK_PROTO_HDR_LEN + SK_HS_FIN_PAYLOAD + SK_PROTO_MAC_LEN)
#define SK_HS_FRAME_LEN SK_HS_ACK_LEN /* the largest: room for any of the three */

struct sk_hs {
	struct sk_key master;
	uint8_t nonce_c[SK_PROTO_NONCE_LEN];
	uint8_t nonce_s[SK_PROTO_NONCE_LEN];
	uint8_t transcript[SK_HS_FIN_PAYLOAD]; /* H(HELLO | ACK), once both are known */
	uint32_t kind;      /* as passed in, with its SK_CHAN_F_* bits */
	uint32_t module;
	uint32_t my_node;
	uint32_t peer_node; /* filled when the peer's frame is accepted */
	uint16_t agreed;    /* SK_HS_F_* agreed (set by the server's ACK) */
};

/*
 * The three steps, each checking the frame it gets before writing the next:
 * client_hello:  writes HELLO into out (SK_HS_FRAME_LEN cap); its length.
 * server_reply:  checks a HELLO of `len` bytes for channel kind `kind` and writes
 *                HELLO_ACK into out; its length, or -EBADMSG (*why set), or -EPROTO
 *                if the encryption settings differ: out then holds an ACK telling
 *                the client the server's setting; send it and close.
 * client_finish: checks the HELLO_ACK, sets up *c and writes HELLO_FIN into out;
 *                its length, -EBADMSG (*why set) or -EPROTO (*why = SK_REJ_ENCRYPT).
 * server_finish: checks the HELLO_FIN and only then sets up *c; 0 or -EBADMSG.
 */
long sk_hs_client_hello(struct sk_hs *hs, const struct sk_key *master, uint32_t kind,
			uint32_t my_node, uint32_t module, uint8_t *out);
long sk_hs_server_reply(struct sk_hs *hs, const struct sk_key *master, uint32_t kind,
			uint32_t my_node, const uint8_t *in, size_t len, uint8_t *out,
			enum sk_reject *why);
long sk_hs_client_finish(struct sk_hs *hs, const uint8_t *in, size_t len, uint8_t *out,
			 struct sk_chan *c, enum sk_reject *why);
int sk_hs_server_finish(struct sk_hs *hs, const uint8_t *in, size_t len, struct sk_chan *c,
			enum sk_reject *why);

/* ---- blocking helpers over a connected socket (for threads that own a fd) ---- */

/*
 * Run the handshake on fd within timeout_ms (kind may carry SK_CHAN_F_*).
 * Client: 0, -ETIMEDOUT, -ECONNRESET, -EBADMSG (the peer failed authentication),
 * -EPROTO (the peer's encryption setting differs) or -errno.
 * Server: returns 0 only once the client proved it holds the key for this
 * connection (HELLO_FIN), all within timeout_ms; else as the client, with *why
 * set for -EBADMSG (SK_REJ_ENCRYPT when the encryption settings differ).
 */
int sk_chan_connect_fd(int fd, const struct sk_key *master, uint32_t kind, uint32_t my_node,
		       uint32_t module, struct sk_chan *c, uint32_t *peer_node, int timeout_ms);
int sk_chan_accept_fd(int fd, const struct sk_key *master, uint32_t kind, uint32_t my_node,
		      struct sk_chan *c, uint32_t *peer_node, uint32_t *module, int timeout_ms,
		      enum sk_reject *why);
/* Text for an error returned by the functions above (-EPROTO and -EBADMSG get ours). */
const char *sk_chan_strerror(int rc);
/* Send one frame (writev, full). 0 or -errno. */
int sk_chan_send_fd(struct sk_chan *c, int fd, uint8_t type, uint16_t flags, uint32_t module,
		    const struct iovec *iov, int iovcnt);
/*
 * Receive one frame into buf (cap >= SK_PROTO_MAX_FRAME is always enough).
 * 0 with *f set (payload inside buf), -ECONNRESET on EOF, -EBADMSG (*why set), or -errno.
 */
int sk_chan_recv_fd(struct sk_chan *c, int fd, uint8_t *buf, size_t cap, struct sk_frame *f,
		    enum sk_reject *why);

/* ---- datagrams ---- */

/* Seal a datagram with the datagram key (sk_proto_derive(master, "dgram")). Returns length. */
long sk_dgram_seal(const struct sk_key *dkey, uint8_t *buf, size_t cap, uint8_t type,
		   uint32_t module, uint64_t seq, const void *payload, size_t len);
/*
 * Open a datagram: full length must be exactly n. *last_seq is the last seq
 * accepted from this sender (caller keeps one per sender); updated on success.
 * Returns 0 or -EBADMSG (*why set).
 */
int sk_dgram_open(const struct sk_key *dkey, const uint8_t *buf, size_t n, uint64_t *last_seq,
		  struct sk_frame *f, enum sk_reject *why);

/* ---- payload field helpers (bounded readers for message decoders) ---- */

struct sk_rd {
	const uint8_t *p;
	size_t left;
	int err; /* sticky: set once a read runs past the end */
};

static inline void sk_rd_init(struct sk_rd *r, const void *p, size_t n)
{
	r->p = p;
	r->left = n;
	r->err = 0;
}
uint8_t sk_rd_u8(struct sk_rd *r);
uint16_t sk_rd_u16(struct sk_rd *r);
uint32_t sk_rd_u32(struct sk_rd *r);
uint64_t sk_rd_u64(struct sk_rd *r);
/* Returns a pointer to n bytes inside the buffer, or NULL (and err) if short. */
const uint8_t *sk_rd_bytes(struct sk_rd *r, size_t n);

void sk_put_u16(uint8_t *p, uint16_t v);
void sk_put_u32(uint8_t *p, uint32_t v);
void sk_put_u64(uint8_t *p, uint64_t v);
uint16_t sk_get_u16(const uint8_t *p);
uint32_t sk_get_u32(const uint8_t *p);
uint64_t sk_get_u64(const uint8_t *p);

#endif
