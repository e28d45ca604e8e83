/* Farm filter: maps, values and constants shared by lb.bpf.c and its user-space loader. */
#ifndef SK_LB_SHARED_H
#define SK_LB_SHARED_H

#include <linux/types.h>

#include "sk_types.h"

/* 2^16 buckets as GitHub GLB: the table error stays well under 1 % of a share. */
#define LB_BUCKETS_LOG2 16
#define LB_BUCKETS (1u << LB_BUCKETS_LOG2)
/* Weight and owner tables are indexed by node id (sk_types.h). */
#define LB_MAX_NODES SK_NODE_SLOTS
#define LB_NODE_NONE SK_NODE_ID_NONE

/* Hash rule and unlisted-port policy: enum sk_lb_rule and enum sk_lb_ports (sk_types.h). */

/* One bucket, 16 bytes. owner is who takes new flows; while a bucket is in
 * motion (prev != LB_NODE_NONE and now < move_ns + window), the previous owner
 * keeps the flows it has. Before move_ns the move is only announced: prev
 * still owns everything and the next owner learns the UDP flows it must not take. */
struct lb_bucket {
	__u8 owner;
	__u8 prev;
	__u16 pad;
	__u32 epoch;   /* table generation in which this bucket last moved */
	__u64 move_ns; /* CLOCK_MONOTONIC time of the move */
};

/* Array "lb_cfg", one entry: the settings user space may change at any time. */
struct lb_cfg {
	__u32 rule;          /* enum sk_lb_rule */
	__u32 port_policy;   /* enum sk_lb_ports */
	__u64 window_ns;     /* how long a moved bucket keeps its previous owner's flows */
	__u64 udp_timeout_ns;/* a UDP flow idle longer than this is forgotten */
	__u64 lease_ns;      /* CLOCK_MONOTONIC time until which the agent vouches for this node;
			      * past it no balanced VIP packet passes here (the agent died: the
			      * others take this node's buckets, its stack must not answer them
			      * with resets). 0: no lease (sklb, tests) */
};

/* "lb_table" holds two tables of LB_BUCKETS entries; "lb_active" (one __u32)
 * says which half is live. User space fills the idle half then flips the
 * index with one aligned 4-byte write, so no packet ever sees half a table. */
#define LB_TABLE_ENTRIES (2 * LB_BUCKETS)

/* "lb_ports": bitmap of balanced destination ports, 1024 x 64 bits. */
#define LB_PORT_WORDS 1024

/* UDP flow map key (LRU hash "lb_flows"); addresses as in the packet. */
struct lb_flow_key {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;
	__u16 dport;
	__u8 family; /* 4 or 6 */
	__u8 pad[3];
};

struct lb_flow {
	__u64 seen_ns;
	__u32 mine;   /* 1: this node serves it; 0: learned as another node's */
	__u32 pad;
};
#define LB_FLOWS_MAX 65536

/* Per-CPU counters, array "lb_stats". */
enum lb_stat {
	LB_ST_PASS = 0,       /* VIP packets passed to this node's stack */
	LB_ST_DROP,           /* VIP packets left to another node */
	LB_ST_ARP_REPLY,      /* ARP requests for the VIP answered */
	LB_ST_NS_REPLY,       /* IPv6 neighbour solicitations answered */
	LB_ST_OTHER,          /* non-VIP frames passed untouched */
	LB_ST_MALFORMED,      /* frames too short or invalid to classify */
	LB_ST_PORT_PASS,      /* VIP packets on unlisted ports passed to all */
	LB_ST_PORT_DROP,      /* VIP packets on unlisted ports dropped */
	LB_ST_MOTION_SOCK,    /* moving bucket: passed because a local socket has the flow */
	LB_ST_MOTION_DROP,    /* moving bucket: dropped, the flow is not ours */
	LB_ST_UDP_LEARN,      /* moving bucket: UDP flow learned as another node's */
	LB_ST_LEASE_DROP,     /* dropped: the agent's lease expired (agent dead or stalled) */
	LB_ST__COUNT,
};

/* Array "lb_info", one entry: who this instance is, written once at attach
 * (the same values are in the program's rodata; this copy is for `show`). */
struct lb_info {
	__u32 ifindex;
	__u32 xdp_mode;   /* 1 native, 2 generic (skb) */
	__u32 node_id;
	__u32 seed;
	__u32 vip4;       /* network order; 0 if none */
	__u32 vip6[4];    /* network order; all zero if none */
	__u8 vmac[6];
	__u8 own_mac[6];
	__u32 has_vip4;
	__u32 has_vip6;
	__u32 prog_id;
	__u32 vip_on_lo;  /* the loader added the VIP on lo and removes it at detach */
};

#define LB_STAT_NAMES                                                            \
	"pass", "drop", "arp_reply", "ns_reply", "other", "malformed",          \
	"port_pass", "port_drop", "motion_sock", "motion_drop", "udp_learn",     \
	"lease_drop"

#endif
