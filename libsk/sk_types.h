/* libsk/sk_types.h: the one definition of each concept that config, wire, skfused, agent and XDP program share. */
#ifndef SK_TYPES_H
#define SK_TYPES_H

/*
 * Plain constants and enums only, no includes: lb.bpf.c (clang -target bpf)
 * includes this through xdp/lb_shared.h. test/unit/test_util.c asserts that
 * the other headers' limits are these.
 */

/*
 * Node ids (cluster.json "id"). A node's id is also its slot in the farm's
 * weight and owner tables and its bit in a 64-bit alive mask, so every node
 * computes the same bucket table from the same view with no mapping to agree on.
 */
#define SK_NODE_ID_MIN 1
#define SK_NODE_ID_MAX 63
#define SK_NODE_SLOTS 64        /* table entries indexed by id: 0..SK_NODE_ID_MAX */
#define SK_NODE_ID_NONE 0xffu   /* "no node" where an id is stored in a byte */
#define SK_MAX_NODES 32         /* nodes in one cluster */

/* Farm weights (userconfig "weight"). A view may also hold 0: "leaving, takes no new flows". */
#define SK_WEIGHT_MIN 1
#define SK_WEIGHT_MAX 1000
#define SK_WEIGHT_DEFAULT 100

/* Replication mode: configured per mirror module, carried by the stream's START frame. */
enum sk_repl_mode {
	SK_REPL_SYNC = 0,      /* the peer has written it before the application is answered */
	SK_REPL_SEMI_SYNC = 1, /* the peer has received it */
	SK_REPL_ASYNC = 2,     /* sent, not waited for */
};

/* Farm hash rule: configured per farm module, stored in the XDP lb_cfg map. */
enum sk_lb_rule {
	SK_LB_CLIENT = 0,  /* source address only: a client sticks to one node */
	SK_LB_SESSION = 1, /* 4-tuple for TCP/UDP, source address otherwise */
};

/* What happens to VIP packets on ports outside the balanced list (XDP lb_cfg map). */
enum sk_lb_ports {
	SK_LB_PORTS_ALL = 0,         /* no list: every port is balanced */
	SK_LB_PORTS_OTHERS_PASS = 1, /* unlisted ports go to every node */
	SK_LB_PORTS_OTHERS_DROP = 2, /* unlisted ports are dropped everywhere */
};

#endif
