/* libsk/proto.h: the one wire format of SteadyKit, for every channel (replication, heartbeats, agent). */
#ifndef SK_PROTO_H
#define SK_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * Frame layout, version 1. Integers are big-endian.
 *
 *   off  size  field
 *     0     4  magic     0x534b4631 ("SKF1")
 *     4     1  version   1
 *     5     1  type      enum sk_msg_type; unknown types are refused
 *     6     2  flags     per type; bits not defined for the type must be 0
 *     8     4  module    module id (0 = not about a module)
 *    12     8  seq       per direction, strictly increasing from 1 (0 only in handshakes)
 *    20     4  len       payload length, <= SK_PROTO_MAX_PAYLOAD
 *    24   len  payload
 *  24+len  16  mac       over bytes [0, 24+len): on a channel, Poly1305 with the one-time key
 *                        ChaCha20(direction key, nonce = 0^4 | seq) (as in RFC 8439);
 *                        handshake frames and datagrams: keyed BLAKE2b-128
 *
 * The header and MAC are separate buffers so a payload (e.g. a 1 MiB write in
 * the FUSE request buffer) goes out with writev(hdr, payload..., mac), never copied.
 *
 * Stream channels start with a handshake. The client sends HELLO (seq 0,
 * its random 32-byte nonce), the server answers HELLO_ACK (seq 0, its nonce and
 * the client's echoed), both MACed with a key derived from the cluster secret.
 * Each direction then gets its own key, derived from the secret and both nonces,
 * so a frame recorded on one connection is refused on any other, a frame is
 * never reflected back, and seq refuses replays within the connection.
 *
 * Datagrams (heartbeats) have no handshake: they are MACed with the datagram
 * key and carry the sender's node id in their payload; the receiver keeps the
 * last seq per sender and refuses anything not newer.
 * Senders start seq at the wall clock in microseconds so a restart goes on upward.
 */

#define SK_PROTO_MAGIC 0x534b4631u
#define SK_PROTO_VERSION 1
#define SK_PROTO_HDR_LEN 24
#define SK_PROTO_MAC_LEN 16
#define SK_PROTO_NONCE_LEN 32
#define SK_PROTO_KEY_LEN 32
/* Largest payload: a 1 MiB write plus its operation header and a path. */
#define SK_PROTO_MAX_PAYLOAD ((1u << 20) + (1u << 16))
#define SK_PROTO_MAX_FRAME (SK_PROTO_HDR_LEN + SK_PROTO_MAX_PAYLOAD + SK_PROTO_MAC_LEN)
/* Shortest cluster secret accepted, in bytes. */
#define SK_PROTO_SECRET_MIN 16

/* Message types. Ranges belong to pieces; the header decoder accepts only known types. */
enum sk_msg_type {
	SK_MSG_HELLO = 1,
	SK_MSG_HELLO_ACK = 2,
	SK_MSG_CLOSE = 3,     /* orderly close, empty payload */

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
	SK_REJ__COUNT
};

const char *sk_reject_str(enum sk_reject why);

struct sk_key {
	uint8_t b[SK_PROTO_KEY_LEN];
};


/*
 * One authenticated direction pair. The sending side (tx_*) and receiving side
 * (rx_*) may be driven by two different threads without a lock: each touches
 * only its own fields and its own counters.
 */
struct sk_chan {
	struct sk_key tx_key;
	struct sk_key rx_key;
	uint64_t tx_seq; /* last seq sent */
	uint64_t rx_seq; /* last seq accepted */
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

/* Master key from the cluster secret (>= SK_PROTO_SECRET_MIN bytes). -EINVAL if too short. */
int sk_proto_master_key(struct sk_key *out, const void *secret, size_t len);
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
 * Seal a frame for writev: fills hdr and mac for the payload in iov (total
 * length <= SK_PROTO_MAX_PAYLOAD). Takes the next tx seq. 0 or -EMSGSIZE.
 */
int sk_chan_seal(struct sk_chan *c, uint8_t *hdr, uint8_t *mac, uint8_t type, uint16_t flags,
		 uint32_t module, const struct iovec *iov, int iovcnt);
/* Seal into one buffer (hdr|payload|mac). Returns the frame length or -EMSGSIZE / -ENOSPC. */
long sk_chan_encode(struct sk_chan *c, uint8_t *buf, size_t cap, uint8_t type, uint16_t flags,
		    uint32_t module, const void *payload, size_t len);
/*
 * Authenticate a frame whose header f was decoded by sk_proto_hdr_decode:
 * checks the MAC over hdr|payload and that seq is newer. On success sets
 * f->payload and returns 0; else -EBADMSG with *why set and the counter bumped.
 */
int sk_chan_verify(struct sk_chan *c, const uint8_t *hdr, const uint8_t *payload,
		   const uint8_t *mac, struct sk_frame *f, enum sk_reject *why);
/*
 * One-shot decode from a buffer holding n bytes. Returns the frame length
 * consumed (> 0) with *f filled, 0 if more bytes are needed, or -EBADMSG with
 * *why set (counted). A stream that yields -EBADMSG must be closed.
 */
long sk_chan_open(struct sk_chan *c, const uint8_t *buf, size_t n, struct sk_frame *f,
		  enum sk_reject *why);

/* ---- handshake (transport-agnostic; frames have fixed size SK_HS_FRAME_LEN) ---- */

#define SK_HS_HELLO_PAYLOAD (4 + 4 + SK_PROTO_NONCE_LEN)                    /* kind, node, nonce */
#define SK_HS_ACK_PAYLOAD (4 + SK_PROTO_NONCE_LEN + SK_PROTO_NONCE_LEN)    /* node, nonce_s, nonce_c */
#define SK_HS_FRAME_LEN (SK_PROTO_HDR_LEN + SK_HS_ACK_PAYLOAD + SK_PROTO_MAC_LEN)

struct sk_hs {
	struct sk_key master;
	uint8_t nonce_c[SK_PROTO_NONCE_LEN];
	uint8_t nonce_s[SK_PROTO_NONCE_LEN];
	uint32_t kind;
	uint32_t module;
	uint32_t my_node;
	uint32_t peer_node; /* filled when the peer's frame is accepted */
};

/*
 * Client: write the HELLO frame into out (SK_HS_FRAME_LEN bytes cap); returns its length.
 * Server: check a HELLO of `len` bytes for channel kind `kind`, write HELLO_ACK into out,
 *         set up *c; returns the ACK length or -EBADMSG (*why set).
 * Client: check the HELLO_ACK and set up *c; 0 or -EBADMSG (*why set).
 */
long sk_hs_client_hello(struct sk_hs *hs, const struct sk_key *master, uint32_t kind,
			uint32_t my_node, uint32_t module, uint8_t *out);
long sk_hs_server_reply(struct sk_hs *hs, const struct sk_key *master, uint32_t kind,
			uint32_t my_node, const uint8_t *in, size_t len, uint8_t *out,
			struct sk_chan *c, enum sk_reject *why);
int sk_hs_client_finish(struct sk_hs *hs, const uint8_t *in, size_t len, struct sk_chan *c,
			enum sk_reject *why);

/* ---- blocking helpers over a connected socket (for threads that own a fd) ---- */

/* Run the handshake on fd within timeout_ms. 0, -ETIMEDOUT, -ECONNRESET, -EBADMSG or -errno. */
int sk_chan_connect_fd(int fd, const struct sk_key *master, uint32_t kind, uint32_t my_node,
		       uint32_t module, struct sk_chan *c, uint32_t *peer_node, int timeout_ms);
int sk_chan_accept_fd(int fd, const struct sk_key *master, uint32_t kind, uint32_t my_node,
		      struct sk_chan *c, uint32_t *peer_node, uint32_t *module, int timeout_ms,
		      enum sk_reject *why);
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
