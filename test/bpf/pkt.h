/* Frame builders and program instances shared by the BPF_PROG_TEST_RUN tests and the xdp benchmark. */
#ifndef SK_TEST_PKT_H
#define SK_TEST_PKT_H

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "lb.h"
#include "lb.skel.h"

static const uint8_t T_VMAC[6] = {0x02, 0x5b, 0x00, 0x00, 0x00, 0x01};
static const uint8_t T_OWN[6] = {0x02, 0xaa, 0x00, 0x00, 0x00, 0x07};
static const uint8_t T_CLI[6] = {0x02, 0xcc, 0x00, 0x00, 0x00, 0x09};
#define T_SEED 0x5eed

/* One loaded copy of the program as node `node` sees it (maps are private to it). */
struct inst {
	struct lb_bpf *sk;
	struct lb_bucket *tbl;
	int prog;
};

static inline int inst_open(struct inst *in, uint8_t node, const char *vip4, const char *vip6)
{
	struct lb_cfg cfg = {.rule = SK_LB_SESSION, .window_ns = 60ull * 1000000000ull,
			     .udp_timeout_ns = 60ull * 1000000000ull};
	uint32_t zero = 0;

	memset(in, 0, sizeof(*in));
	in->sk = lb_bpf__open();
	if (!in->sk)
		return -1;
	in->sk->rodata->lb_node_id = node;
	in->sk->rodata->lb_seed = T_SEED;
	if (vip4) {
		in->sk->rodata->lb_has_vip4 = 1;
		inet_pton(AF_INET, vip4, (void *)&in->sk->rodata->lb_vip4);
	}
	if (vip6) {
		in->sk->rodata->lb_has_vip6 = 1;
		inet_pton(AF_INET6, vip6, (void *)in->sk->rodata->lb_vip6);
	}
	memcpy((void *)in->sk->rodata->lb_vmac, T_VMAC, 6);
	memcpy((void *)in->sk->rodata->lb_own_mac, T_OWN, 6);
	if (lb_bpf__load(in->sk)) {
		lb_bpf__destroy(in->sk);
		in->sk = NULL;
		return -1;
	}
	in->prog = bpf_program__fd(in->sk->progs.lb_xdp);
	in->tbl = mmap(NULL, sizeof(struct lb_bucket) * LB_TABLE_ENTRIES, PROT_READ | PROT_WRITE,
		       MAP_SHARED, bpf_map__fd(in->sk->maps.lb_table), 0);
	if (in->tbl == MAP_FAILED)
		return -1;
	return bpf_map_update_elem(bpf_map__fd(in->sk->maps.lb_cfg), &zero, &cfg, BPF_ANY);
}

static inline void inst_close(struct inst *in)
{
	if (in->tbl && in->tbl != MAP_FAILED)
		munmap(in->tbl, sizeof(struct lb_bucket) * LB_TABLE_ENTRIES);
	lb_bpf__destroy(in->sk);
}

static inline void inst_cfg(struct inst *in, uint32_t rule, uint32_t policy)
{
	struct lb_cfg cfg;
	uint32_t zero = 0;

	bpf_map_lookup_elem(bpf_map__fd(in->sk->maps.lb_cfg), &zero, &cfg);
	cfg.rule = rule;
	cfg.port_policy = policy;
	bpf_map_update_elem(bpf_map__fd(in->sk->maps.lb_cfg), &zero, &cfg, BPF_ANY);
}

/* Live half 0 := owners from weights (or every bucket to `all` when weights is NULL). */
static inline void inst_table(struct inst *in, const uint32_t *weights, uint8_t all)
{
	static uint8_t owner[LB_BUCKETS];
	uint32_t zero = 0;

	if (weights)
		lb_owner_table(weights, T_SEED, owner);
	for (uint32_t b = 0; b < LB_BUCKETS; b++) {
		in->tbl[b] = (struct lb_bucket){.owner = weights ? owner[b] : all, .prev = LB_NODE_NONE};
	}
	bpf_map_update_elem(bpf_map__fd(in->sk->maps.lb_active), &zero, &zero, BPF_ANY);
}

/* Run one frame; returns the XDP action, out/outlen get the frame after the program. */
static inline int run(struct inst *in, const void *pkt, uint32_t len, void *out, uint32_t *outlen)
{
	static uint8_t scratch[2048];
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt, .data_size_in = len,
		    .data_out = out ? out : scratch, .data_size_out = 2048, .repeat = 1);
	int rc = bpf_prog_test_run_opts(in->prog, &o);

	if (rc)
		return -1000 + rc;
	if (outlen)
		*outlen = o.data_size_out;
	return (int)o.retval;
}

/* ---- frame builders: return the frame length ---- */

struct fb {
	uint8_t b[256];
	uint32_t n;
};

static inline void fb_put(struct fb *f, const void *p, uint32_t n)
{
	memcpy(f->b + f->n, p, n);
	f->n += n;
}

static inline void fb_u16(struct fb *f, uint16_t v)
{
	v = htons(v);
	fb_put(f, &v, 2);
}

static inline void fb_eth(struct fb *f, const uint8_t *dst, int vlans, uint16_t type)
{
	f->n = 0;
	fb_put(f, dst, 6);
	fb_put(f, T_CLI, 6);
	for (int i = 0; i < vlans; i++) {
		fb_u16(f, i == 0 && vlans == 2 ? 0x88a8 : 0x8100);
		fb_u16(f, (uint16_t)(100 + i));
	}
	fb_u16(f, type);
}

static inline void fb_ip4(struct fb *f, const char *src, const char *dst, uint8_t proto,
			  uint16_t frag, uint16_t l4len)
{
	uint8_t h[20] = {0x45, 0};
	uint16_t tot = htons((uint16_t)(20 + l4len)), fo = htons(frag);

	memcpy(h + 2, &tot, 2);
	memcpy(h + 6, &fo, 2);
	h[8] = 64;
	h[9] = proto;
	inet_pton(AF_INET, src, h + 12);
	inet_pton(AF_INET, dst, h + 16);
	fb_put(f, h, 20);
}

static inline void fb_ip6(struct fb *f, const char *src, const char *dst, uint8_t nh, uint16_t plen,
			  uint8_t hop)
{
	uint8_t h[40] = {0x60, 0};
	uint16_t pl = htons(plen);

	memcpy(h + 4, &pl, 2);
	h[6] = nh;
	h[7] = hop;
	inet_pton(AF_INET6, src, h + 8);
	inet_pton(AF_INET6, dst, h + 24);
	fb_put(f, h, 40);
}

static inline void fb_tcp(struct fb *f, uint16_t sport, uint16_t dport, uint8_t flags)
{
	uint8_t h[20] = {0};
	uint16_t s = htons(sport), d = htons(dport);

	memcpy(h, &s, 2);
	memcpy(h + 2, &d, 2);
	h[12] = 5 << 4;
	h[13] = flags;
	fb_put(f, h, 20);
}

static inline void fb_udp(struct fb *f, uint16_t sport, uint16_t dport)
{
	uint8_t h[8] = {0};
	uint16_t s = htons(sport), d = htons(dport), l = htons(16);

	memcpy(h, &s, 2);
	memcpy(h + 2, &d, 2);
	memcpy(h + 4, &l, 2);
	fb_put(f, h, 8);
	fb_put(f, "payload!", 8);
}

/* IPv4 TCP frame to dst from src:sport, no VLAN. */
static inline uint32_t tcp4(struct fb *f, const char *src, const char *dst, uint16_t sport,
			    uint16_t dport, uint8_t flags)
{
	fb_eth(f, T_VMAC, 0, 0x0800);
	fb_ip4(f, src, dst, 6, 0, 20);
	fb_tcp(f, sport, dport, flags);
	return f->n;
}

#endif
