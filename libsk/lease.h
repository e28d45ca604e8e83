/* libsk/lease.h: the lease witness: its datagrams (encode/decode), its grant table, skfused's "lease" command. */
#ifndef SK_LEASE_H
#define SK_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/*
 * A node asks the witness (`skagentd --witness`) for the lease of a module; the witness grants
 * it to at most one node at a time, for lease_ms of its own clock. Datagrams are sealed with
 * sk_dgram_seal under the key sk_proto_derive(master, "lease") (not the heartbeat key, so no
 * heartbeat can pass for a lease message) and carry the module id in the header. Replays are
 * refused by the datagram seq (newer than the last one from that sender) and, for replies, by
 * the nonce the request carried.
 */
#define SK_MSG_LEASE_REQ 96
#define SK_MSG_LEASE_REPLY 97

#define SK_LEASE_VERSION 1

enum sk_lease_op { SK_LEASE_ACQUIRE = 1, SK_LEASE_RELEASE = 2 };
enum sk_lease_result {
	SK_LEASE_GRANTED = 1, /* held by the requester for valid_ms from the witness's receipt */
	SK_LEASE_HELD = 2,    /* held by another node; free in valid_ms */
	SK_LEASE_GRACE = 3,   /* the witness just started: it grants nothing new for valid_ms */
	SK_LEASE_FULL = 4,    /* the witness's table is full */
	SK_LEASE_RELEASED = 5,
	SK_LEASE_BEHIND = 6,  /* the last holder went on alone: the requester's copy is older */
};

/* Request flags (byte 3). */
#define SK_LEASE_F_PEER_OUT 0x01 /* holder: my peer's copy is behind mine (I went on alone) */
#define SK_LEASE_F_FORCE 0x02    /* the operator forces this node (skctl prim --force) */
#define SK_LEASE_F__ALL 0x03

/*
 * Request, version 1, exactly 16 bytes (big-endian):
 *   0 u8 version | 1 u8 node id (requester, 1..255) | 2 u8 op (enum sk_lease_op) | 3 u8 flags
 *   4 u32 module id (!= 0) | 8 u64 nonce (!= 0, echoed in the reply)
 */
#define SK_LEASE_REQ_LEN 16
struct sk_lease_req {
	uint8_t node;
	uint8_t op;
	uint8_t flags; /* SK_LEASE_F_* */
	uint32_t module;
	uint64_t nonce;
};

/*
 * Reply, version 1, exactly 28 bytes:
 *   0 u8 version | 1 u8 witness node id | 2 u8 result (enum sk_lease_result) | 3 u8 holder id
 *   (0 none) | 4 u32 module id | 8 u64 nonce (the request's) | 16 u32 valid_ms (<= 600000)
 *   | 20 u64 epoch (bumped each time the lease changes hands)
 */
#define SK_LEASE_REPLY_LEN 28
#define SK_LEASE_VALID_MAX 600000u
struct sk_lease_reply {
	uint8_t witness;
	uint8_t result;
	uint8_t holder;
	uint32_t module;
	uint64_t nonce;
	uint32_t valid_ms;
	uint64_t epoch;
};

/* Return the payload length or -EINVAL / -ENOSPC; decoders 0 or -EBADMSG. */
long sk_lease_req_encode(const struct sk_lease_req *q, uint8_t *buf, size_t cap);
int sk_lease_req_decode(const uint8_t *p, size_t len, struct sk_lease_req *q);
long sk_lease_reply_encode(const struct sk_lease_reply *r, uint8_t *buf, size_t cap);
int sk_lease_reply_decode(const uint8_t *p, size_t len, struct sk_lease_reply *r);

/*
 * The witness's grant table (pure: the caller gives the clock). Rules:
 *  - during the grace after the witness starts (lease + margin: whatever an earlier run of the
 *    witness granted has expired by then) nothing is granted, renewals included;
 *  - the holder renews: its lease runs lease_ms from now;
 *  - another node gets the lease only once the holder's lease ended margin_ms ago (on this
 *    clock); the epoch is bumped at each change of holder;
 *  - RELEASE by the holder ends its lease at once (the next node still waits margin_ms);
 *  - the holder says in each request whether its peer's copy is behind (it went on alone); while
 *    the last holder said so, another node gets the lease only with FORCE (SK_LEASE_BEHIND):
 *    its copy lacks what the holder acknowledged alone.
 */
#define SK_LEASE_TABLE_MAX 256
/* The witness's margin for a lease of lease_ms: lease_ms / 8, at least 200 ms. */
static inline uint32_t sk_lease_margin_ms(uint32_t lease_ms)
{
	return lease_ms / 8 < 200 ? 200 : lease_ms / 8;
}
struct sk_lease_entry {
	uint32_t module;
	uint8_t holder;
	uint64_t until_ms; /* holder's lease ends */
	uint64_t epoch;
	bool peer_out;     /* the holder's last word: its peer's copy is behind */
};
struct sk_lease_table {
	uint32_t lease_ms, margin_ms;
	uint64_t grace_until_ms;
	unsigned n;
	struct sk_lease_entry e[SK_LEASE_TABLE_MAX];
};
void sk_lease_table_init(struct sk_lease_table *t, uint32_t lease_ms, uint32_t margin_ms,
			 uint64_t now_ms);
/* Answer a (decoded, authenticated) request at now_ms: fills r (except witness and nonce). */
void sk_lease_table_ask(struct sk_lease_table *t, uint64_t now_ms, const struct sk_lease_req *q,
			struct sk_lease_reply *r);

/*
 * skfused's control command (one JSON line): {"cmd":"lease","valid_ms":N[,"at_ms":T]}.
 * Writes are allowed for N ms from T (the sender's CLOCK_MONOTONIC in ms when it computed N;
 * without it, from the receipt), so a sender delayed between computing and sending cannot
 * stretch the lease. N 0..SK_LEASE_VALID_MAX; 0 fences at once.
 * Returns 0, -ENOENT if the line is not a lease command (let the other parser answer), or
 * -EINVAL with err saying what is wrong.
 */
struct sk_lease_ctl {
	uint32_t valid_ms;
	bool has_at;
	uint64_t at_ms;
};
int sk_lease_ctl_parse(const char *line, size_t len, struct sk_lease_ctl *out, char *err,
		       size_t errlen);
/* The same, from a parsed request object whose "cmd" is "lease" (sk_rctl_parse): 0 or -EINVAL. */
struct json_object;
int sk_lease_ctl_from_json(struct json_object *o, struct sk_lease_ctl *out, char *err,
			   size_t errlen);

#endif
