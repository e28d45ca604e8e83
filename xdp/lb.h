/* libsklb: load the farm filter, pin its maps and drive it (used by skagentd and sklb). */
#ifndef SK_LB_H
#define SK_LB_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "lb_shared.h"

#define LB_PIN_ROOT "/sys/fs/bpf/steadykit"

/* Error text for the operator: what was wrong and where. */
struct lb_err {
	char msg[256];
};

enum lb_xdp_mode {
	LB_XDP_AUTO = 0,    /* native, falling back to generic (reported in lb_attach_result) */
	LB_XDP_NATIVE = 1,
	LB_XDP_GENERIC = 2,
};

struct lb_attach_opts {
	const char *ifname;
	const char *pin_dir;      /* bpffs directory for this module, e.g. LB_PIN_ROOT "/web" */
	uint32_t node_id;         /* this node's slot in the farm (its node id), < LB_MAX_NODES */
	uint32_t seed;            /* hash seed, identical on every node of the farm */
	int has_vip4;
	struct in_addr vip4;
	int has_vip6;
	struct in6_addr vip6;
	uint8_t vmac[6];          /* farm's virtual MAC: unicast, used by no node as a source */
	enum lb_xdp_mode mode;
	int install_vip;          /* add the VIP on lo and keep the kernel from answering ARP for it */
};

struct lb_attach_result {
	enum lb_xdp_mode mode;    /* what was actually used */
	int fell_back;            /* native was refused and generic was used */
	int reused_maps;          /* pinned maps existed: table and flows kept */
	char native_err[128];     /* why native was refused, if it was */
	int dispatcher;           /* 1: in libxdp's multi-program dispatcher, other XDP programs
				   * can share the interface; 0: attached alone (kernel or driver
				   * refused the dispatcher: warn, see lb_attach) */
};

/* Membership view. weight[i] > 0: node i takes new flows in that proportion.
 * alive bit i: node i is up; a node leaving gracefully is alive with weight 0,
 * so its buckets move "in motion" and it keeps its connections; a node that is
 * not alive lost its flows anyway and its buckets move at once. */
struct lb_view {
	uint32_t weight[LB_MAX_NODES];
	uint64_t alive;
	uint32_t announce_ms;     /* UDP learning time before moved buckets change hands */
};

struct lb_status {
	struct lb_info info;
	struct lb_cfg cfg;
	uint32_t generation;
	uint32_t nports;
	uint32_t owned[LB_MAX_NODES];  /* buckets each node owns */
	uint32_t moving;               /* buckets still in their motion window */
	uint64_t stats[LB_ST__COUNT];  /* summed over CPUs */
	uint64_t own_bucket_pkts;      /* packets passed, summed over buckets */
};

struct lb;

/*
 * Load and attach through libxdp, which puts the program in its multi-program
 * dispatcher where the kernel and driver allow it and attaches it alone
 * otherwise (res->dispatcher says which; the caller warns). libxdp keeps its
 * dispatcher state on /sys/fs/bpf, or, where that is not bpffs, beside pin_dir
 * (LIBXDP_BPFFS is set to pin_dir's parent unless already set).
 */
int lb_attach(const struct lb_attach_opts *o, struct lb_attach_result *res, struct lb_err *err);
int lb_open(const char *pin_dir, struct lb **out, struct lb_err *err);
void lb_close(struct lb *lb);
int lb_detach(const char *pin_dir, struct lb_err *err);

int lb_set_rule(struct lb *lb, enum sk_lb_rule rule, struct lb_err *err);
int lb_set_ports(struct lb *lb, const uint16_t *ports, size_t n, enum sk_lb_ports policy,
		 struct lb_err *err);
int lb_set_timing(struct lb *lb, uint32_t window_ms, uint32_t udp_timeout_ms, struct lb_err *err);
int lb_set_view(struct lb *lb, const struct lb_view *v, struct lb_err *err);
/*
 * The agent's lease: until CLOCK_MONOTONIC until_ns this node passes its buckets; past it no
 * balanced VIP packet passes here (counted as lease_drop). The agent renews it every heartbeat
 * interval for its peers' dead timeout, so a node whose agent died stops answering for its
 * buckets about when the others take them. 0 = no lease (the default; sklb).
 */
int lb_set_lease(struct lb *lb, uint64_t until_ns, struct lb_err *err);
int lb_get_status(struct lb *lb, struct lb_status *st, struct lb_err *err);
/* Buckets of the live table, LB_BUCKETS entries (for tests and show). */
int lb_get_table(struct lb *lb, struct lb_bucket *out, struct lb_err *err);

/* Packets this node passed per bucket, summed over CPUs, LB_BUCKETS entries. */
int lb_get_bucket_pkts(struct lb *lb, uint64_t *out, struct lb_err *err);

/* Pure functions shared by the loader, tests and the benchmark (table.c). */
int lb_view_check(const struct lb_view *v, struct lb_err *err);
uint8_t lb_rendezvous(const uint32_t *weight, uint32_t seed, uint32_t bucket);
void lb_owner_table(const uint32_t *weight, uint32_t seed, uint8_t *owner);
/* Next table from the live one: moved buckets whose previous owner is alive go
 * in motion (previous owner keeps its flows for window_ns). Returns moved count. */
uint32_t lb_next_table(const struct lb_bucket *cur, const struct lb_view *v, uint32_t seed,
		       uint32_t generation, uint64_t now_ns, uint64_t window_ns,
		       struct lb_bucket *next);

/* VIP on lo plus arp_ignore/arp_announce on ifname (vip.c). */
int lb_vip_install(const char *ifname, const struct lb_attach_opts *o, struct lb_err *err);
int lb_vip_remove(const struct lb_info *info, struct lb_err *err);

#endif
