/* libsk/agentmsg.h: payloads of agent-to-agent messages (heartbeats and the TCP channel), encode/decode. */
#ifndef SK_AGENTMSG_H
#define SK_AGENTMSG_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* Message types on the agent channel (the heartbeat is SK_MSG_HEARTBEAT). */
#define SK_MSG_AGENT_STATE 80 /* same payload as a heartbeat */
#define SK_MSG_AGENT_CMD 81

#define SK_AMSG_VERSION 1
#define SK_AMSG_MAX_MODS 32

/* Per-module flags a node announces. */
#define SK_AMSG_F_UPTODATE 0x01  /* this copy may become primary by itself */
#define SK_AMSG_F_PEER_OUT 0x02  /* (primary) the peer's copy is behind ours (not in sync) */
#define SK_AMSG_F_IN_SYNC 0x04   /* (primary) the peer's copy is in sync, resync done */
#define SK_AMSG_F_NOPRIM 0x08    /* will not become primary unless told (start_prim failed, swap) */
#define SK_AMSG_F_BUSY 0x10      /* a transition is running */
#define SK_AMSG_F_FRESH 0x20     /* never held data for this module */
#define SK_AMSG_F_STARTED 0x40   /* the operator wants the module running here */
#define SK_AMSG_F_FIRST 0x80     /* mirror: this node is the first of the module's "nodes" */
#define SK_AMSG_F__ALL 0xff

/*
 * State payload, version 1 (big-endian), heartbeat and SK_MSG_AGENT_STATE:
 *   off size
 *     0    1  version (1)
 *     1    1  sender node id (1..255)
 *     2    1  network index the datagram was sent on (heartbeats; 0 on the channel)
 *     3    1  n_mods (0..SK_AMSG_MAX_MODS)
 *     4    8  incarnation: the sender's start time in us (changes on restart)
 *    12  16*n per module: u32 module id, u8 state (enum sk_mod_state), u8 flags,
 *                 u16 reserved (0), u64 data generation
 * The length must be exactly 12 + 16 * n_mods.
 */
#define SK_AMSG_STATE_HDR 12
#define SK_AMSG_STATE_MOD 16
#define SK_AMSG_STATE_MAX (SK_AMSG_STATE_HDR + SK_AMSG_STATE_MOD * SK_AMSG_MAX_MODS)

struct sk_amsg_mod {
	uint32_t id;
	uint8_t state;
	uint8_t flags;
	uint64_t gen;
};

struct sk_amsg_state {
	uint8_t node_id;
	uint8_t net;
	uint64_t incarnation;
	unsigned n_mods;
	struct sk_amsg_mod mods[SK_AMSG_MAX_MODS];
};

/* Returns the payload length or -ENOSPC / -EINVAL. */
long sk_amsg_state_encode(const struct sk_amsg_state *s, uint8_t *buf, size_t cap);
/* 0 or -EBADMSG (length, version, node id 0, state or flags out of range). */
int sk_amsg_state_decode(const uint8_t *p, size_t len, struct sk_amsg_state *s);

/*
 * Restart notice, a datagram of the heartbeat range sent by an agent that re-executes itself
 * (SIGHUP) or exits for `systemctl restart`, on every network to every node, sealed like a
 * heartbeat (same key, same sequence numbers):
 *   off size
 *     0    1  version (1)
 *     1    1  sender node id (1..255)
 *     2    1  network index it was sent on
 *     3    1  reserved (0)
 *     4    4  silent_ms: the sender will be silent at most this long (1..SK_AMSG_RESTART_MAX_MS)
 *     8    8  incarnation of the agent that is going away (its first heartbeat with another
 *             incarnation ends the wait)
 * Exactly SK_AMSG_RESTART_LEN bytes. An agent older than this message counts it as a
 * malformed heartbeat (refused, "format") and judges the node by its heartbeats as before.
 */
#define SK_MSG_AGENT_RESTARTING 65
#define SK_AMSG_RESTART_LEN 16
#define SK_AMSG_RESTART_MAX_MS 10000
struct sk_amsg_restart {
	uint8_t node_id;
	uint8_t net;
	uint32_t silent_ms;
	uint64_t incarnation;
};
long sk_amsg_restart_encode(const struct sk_amsg_restart *r, uint8_t *buf, size_t cap);
/* 0 or -EBADMSG (length, version, node id 0, reserved byte, silent_ms out of range). */
int sk_amsg_restart_decode(const uint8_t *p, size_t len, struct sk_amsg_restart *r);

/*
 * Command payload, version 1: u8 version, u8 cmd (enum sk_amsg_cmd), u16 reserved (0),
 * u32 module id. Exactly 8 bytes.
 */
enum sk_amsg_cmd {
	SK_AMSG_CMD_SWAP = 1, /* primary: hand the role to the sender */
	SK_AMSG_CMD__MAX = 1,
};
#define SK_AMSG_CMD_LEN 8

/*
 * skctl -H: a control request run on another node, and its answer (channel only).
 *   SK_MSG_AGENT_CTL     u32 request id, then one request line of libsk/ctl.h (no newline)
 *   SK_MSG_AGENT_CTLREP  u32 request id, then one reply line of libsk/ctl.h (no newline)
 * The text is 1..SK_AMSG_CTL_MAX bytes (the channel reads frames of at most 4 KiB) and is
 * parsed by sk_ctl_req_decode / sk_ctl_reply_decode like any control line.
 */
#define SK_MSG_AGENT_CTL 82
#define SK_MSG_AGENT_CTLREP 83
#define SK_AMSG_CTL_MAX 3900
long sk_amsg_ctl_encode(uint32_t id, const char *text, size_t n, uint8_t *buf, size_t cap);
/* 0 with *id, *text (inside p) and *n, or -EBADMSG. */
int sk_amsg_ctl_decode(const uint8_t *p, size_t len, uint32_t *id, const char **text, size_t *n);
long sk_amsg_cmd_encode(enum sk_amsg_cmd cmd, uint32_t module, uint8_t *buf, size_t cap);
int sk_amsg_cmd_decode(const uint8_t *p, size_t len, enum sk_amsg_cmd *cmd, uint32_t *module);

#endif
