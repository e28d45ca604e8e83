/* Farm filter: XDP program answering ARP/NS for the VIP and keeping only this node's share of VIP traffic. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lb_shared.h"

/* Identity of this node, fixed at load (rodata: the verifier prunes dead paths). */
const volatile __u32 lb_vip4 = 0;       /* network order */
const volatile __u32 lb_vip6[4] = {0};  /* network order */
const volatile __u8 lb_has_vip4 = 0;
const volatile __u8 lb_has_vip6 = 0;
const volatile __u8 lb_vmac[6] = {0};
const volatile __u8 lb_own_mac[6] = {0};
const volatile __u8 lb_node_id = 0;
const volatile __u32 lb_seed = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_cfg);
} lb_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_info);
} lb_info SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} lb_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_TABLE_ENTRIES);
	__uint(map_flags, BPF_F_MMAPABLE); /* user space writes the idle half in place */
	__type(key, __u32);
	__type(value, struct lb_bucket);
} lb_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_PORT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} lb_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_FLOWS_MAX);
	__type(key, struct lb_flow_key);
	__type(value, struct lb_flow);
} lb_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_ST__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} lb_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} lb_bucket_stats SEC(".maps");

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define TCP_LISTEN_ 10
#define IPPROTO_ICMPV6_ 58
#define UDP_REFRESH_NS 1000000000ull

struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};

/* Ethernet/IPv4 ARP body (RFC 826); packed because spa/tpa are unaligned. */
struct arp_eth {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__be32 spa;
	__u8 tha[6];
	__be32 tpa;
} __attribute__((packed));

/* What the balancing decision needs from a VIP packet. */
struct pkt {
	__u32 src[4];
	__u32 dst[4];
	__u16 sport;   /* network order */
	__u16 dport;   /* network order */
	__u8 family;   /* 4 or 6 */
	__u8 proto;
	__u8 has_ports;/* TCP/UDP header present and not a fragment */
	__u8 tcp_flags;/* byte 13 of the TCP header */
	__u8 icmp_err; /* ICMP error about one of our flows, keyed by that flow */
};

#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&lb_stats, &idx);

	if (c)
		*c += 1;
}

static __always_inline __u32 rol32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/* murmur3 mixing: cheap, and good enough that 2^16 buckets fill evenly. */
static __always_inline __u32 mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rol32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rol32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 fmix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 pkt_hash(const struct pkt *p, __u32 rule)
{
	__u32 h = lb_seed;

	h = mix(h, p->src[0]);
	if (p->family == 6) {
		h = mix(h, p->src[1]);
		h = mix(h, p->src[2]);
		h = mix(h, p->src[3]);
	}
	if (rule == SK_LB_SESSION && p->has_ports)
		h = mix(h, ((__u32)p->sport << 16) | p->dport);
	return fmix(h);
}

static __always_inline void copy_mac(__u8 *dst, const volatile __u8 *src)
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
	dst[4] = src[4];
	dst[5] = src[5];
}

static __always_inline void copy_mac_pkt(__u8 *dst, const __u8 *src)
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
	dst[4] = src[4];
	dst[5] = src[5];
}

static __always_inline int handle_arp(struct ethhdr *eth, void *l3, void *end)
{
	struct arp_eth *a = l3;
	__u8 req_mac[6];
	__be32 req_ip;

	if ((void *)(a + 1) > end) {
		count(LB_ST_MALFORMED);
		return XDP_PASS;
	}
	if (!lb_has_vip4 || a->htype != bpf_htons(1) || a->ptype != bpf_htons(ETH_P_IP) ||
	    a->hlen != 6 || a->plen != 4 || a->op != bpf_htons(1) || a->tpa != lb_vip4) {
		count(LB_ST_OTHER);
		return XDP_PASS;
	}
	copy_mac_pkt(req_mac, a->sha);
	req_ip = a->spa;
	a->op = bpf_htons(2);
	copy_mac_pkt(a->tha, req_mac);
	a->tpa = req_ip;
	copy_mac(a->sha, lb_vmac);
	a->spa = lb_vip4;
	/* Ethernet source is our own MAC, never the virtual one: a switch that
	 * learnt the virtual MAC on one port would stop flooding VIP frames. */
	copy_mac_pkt(eth->h_dest, eth->h_source);
	copy_mac(eth->h_source, lb_own_mac);
	count(LB_ST_ARP_REPLY);
	return XDP_TX;
}

static __always_inline __u16 csum_fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* Answer a neighbour solicitation for the VIP with a neighbour advertisement
 * (solicited, override) carrying the virtual MAC. l3off is bounded by the caller. */
static __always_inline int handle_ns(struct xdp_md *ctx, __u32 l3off)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	__u8 *icmp;
	__u8 req_mac[6];
	__u32 sum = 0;
	int delta, i;

	if (l3off > 22)
		return XDP_PASS;
	/* The reply is exactly 32 bytes of ICMPv6: NA (24) + target link-layer option (8). */
	delta = (int)(l3off + sizeof(struct ipv6hdr) + 32) - (int)(end - data);
	if (delta && bpf_xdp_adjust_tail(ctx, delta))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	ip6 = data + l3off;
	icmp = (__u8 *)(ip6 + 1);
	if ((void *)(eth + 1) > end || (void *)(ip6 + 1) > end || (void *)(icmp + 32) > end)
		return XDP_DROP;

	copy_mac_pkt(req_mac, eth->h_source);
	copy_mac_pkt(eth->h_dest, req_mac);
	copy_mac(eth->h_source, lb_own_mac);

	ip6->payload_len = bpf_htons(32);
	ip6->nexthdr = IPPROTO_ICMPV6_;
	ip6->hop_limit = 255;
	ip6->daddr = ip6->saddr;
	ip6->saddr.in6_u.u6_addr32[0] = lb_vip6[0];
	ip6->saddr.in6_u.u6_addr32[1] = lb_vip6[1];
	ip6->saddr.in6_u.u6_addr32[2] = lb_vip6[2];
	ip6->saddr.in6_u.u6_addr32[3] = lb_vip6[3];

	icmp[0] = 136; /* neighbour advertisement */
	icmp[1] = 0;
	icmp[2] = 0;
	icmp[3] = 0;
	icmp[4] = 0x60; /* solicited | override */
	icmp[5] = 0;
	icmp[6] = 0;
	icmp[7] = 0;
	/* target (bytes 8..23) is already the VIP */
	icmp[24] = 2; /* target link-layer address */
	icmp[25] = 1;
	copy_mac(icmp + 26, lb_vmac);

	/* pseudo-header: addresses, upper-layer length, next header */
	__u16 *w = (__u16 *)&ip6->saddr;
#pragma unroll
	for (i = 0; i < 16; i++)
		sum += w[i];
	sum += bpf_htons(32) + bpf_htons(IPPROTO_ICMPV6_);
	w = (__u16 *)icmp;
#pragma unroll
	for (i = 0; i < 16; i++)
		sum += w[i];
	*(__u16 *)(icmp + 2) = csum_fold(sum);
	count(LB_ST_NS_REPLY);
	return XDP_TX;
}

/* Is this TCP flow held by a socket of this node (or a valid syncookie ACK)? */
static __always_inline int tcp_is_local(struct xdp_md *ctx, const struct pkt *p, void *l3, void *th,
					int may_cookie)
{
	void *end = (void *)(long)ctx->data_end;
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__u32 tlen;
	int local = 0;

	if (p->family == 4) {
		t.ipv4.saddr = p->src[0];
		t.ipv4.daddr = p->dst[0];
		t.ipv4.sport = p->sport;
		t.ipv4.dport = p->dport;
		tlen = sizeof(t.ipv4);
	} else {
		__builtin_memcpy(t.ipv6.saddr, p->src, 16);
		__builtin_memcpy(t.ipv6.daddr, p->dst, 16);
		t.ipv6.sport = p->sport;
		t.ipv6.dport = p->dport;
		tlen = sizeof(t.ipv6);
	}
	sk = bpf_skc_lookup_tcp(ctx, &t, tlen, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	if (sk->state != TCP_LISTEN_) {
		local = 1; /* established, request or time-wait socket: the flow is here */
	} else if (may_cookie && th + sizeof(struct tcphdr) <= end) {
		if (p->family == 4 && l3 + sizeof(struct iphdr) <= end)
			local = bpf_tcp_check_syncookie(sk, l3, sizeof(struct iphdr), th,
							sizeof(struct tcphdr)) == 0;
		else if (p->family == 6 && l3 + sizeof(struct ipv6hdr) <= end)
			local = bpf_tcp_check_syncookie(sk, l3, sizeof(struct ipv6hdr), th,
							sizeof(struct tcphdr)) == 0;
	}
	bpf_sk_release(sk);
	return local;
}

static __always_inline void flow_key(struct lb_flow_key *k, const struct pkt *p)
{
	__builtin_memcpy(k->saddr, p->src, 16);
	__builtin_memcpy(k->daddr, p->dst, 16);
	k->sport = p->sport;
	k->dport = p->dport;
	k->family = p->family;
}

/* Record (or refresh, at most once a second) a UDP flow as ours or another node's. */
static __always_inline void flow_note(const struct lb_flow_key *k, struct lb_flow *f, __u64 now,
				      __u32 mine)
{
	struct lb_flow v = { .seen_ns = now, .mine = mine };

	if (f && f->mine == mine && now - f->seen_ns < UDP_REFRESH_NS)
		return;
	bpf_map_update_elem(&lb_flows, k, &v, BPF_ANY);
}

/* The balancing decision for a packet addressed to the VIP. */
static __always_inline int balance(struct xdp_md *ctx, struct ethhdr *eth, struct pkt *p, void *l3,
				   void *l4)
{
	__u32 zero = 0, idx, bucket, *active;
	struct lb_cfg *cfg;
	struct lb_bucket *b;
	struct lb_flow_key fk = {};
	struct lb_flow *f = NULL;
	__u64 now = 0;
	int mine;
	__u8 me = lb_node_id;

	cfg = bpf_map_lookup_elem(&lb_cfg, &zero);
	active = bpf_map_lookup_elem(&lb_active, &zero);
	if (!cfg || !active)
		return XDP_DROP;

	if (cfg->port_policy != SK_LB_PORTS_ALL && p->has_ports) {
		__u32 port = bpf_ntohs(p->dport), word = port >> 6;
		__u64 *bits = bpf_map_lookup_elem(&lb_ports, &word);

		if (!bits || !(*bits & (1ull << (port & 63)))) {
			if (cfg->port_policy == SK_LB_PORTS_OTHERS_DROP) {
				count(LB_ST_PORT_DROP);
				return XDP_DROP;
			}
			copy_mac(eth->h_dest, lb_own_mac);
			count(LB_ST_PORT_PASS);
			return XDP_PASS;
		}
	}

	/* fail closed when the agent is gone: the others took this node's buckets */
	if (cfg->lease_ns && bpf_ktime_get_ns() > cfg->lease_ns) {
		count(LB_ST_LEASE_DROP);
		return XDP_DROP;
	}

	bucket = pkt_hash(p, cfg->rule) & (LB_BUCKETS - 1);
	idx = bucket + ((*active & 1) ? LB_BUCKETS : 0);
	b = bpf_map_lookup_elem(&lb_table, &idx);
	if (!b)
		return XDP_DROP;

	int is_udp = p->proto == IPPROTO_UDP && p->has_ports;
	int note = is_udp && !p->icmp_err; /* errors never create or refresh a flow */

	if (is_udp) {
		flow_key(&fk, p);
		f = bpf_map_lookup_elem(&lb_flows, &fk);
		now = bpf_ktime_get_ns();
		if (f && now - f->seen_ns > cfg->udp_timeout_ns)
			f = NULL;
	}

	mine = b->owner == me;
	if (b->prev != LB_NODE_NONE && b->prev != b->owner) {
		if (!now)
			now = bpf_ktime_get_ns();
		int announced = now < b->move_ns;

		if (announced) {
			/* Announced move: the previous owner still takes new flows;
			 * the next owner learns the UDP flows that are not its own. */
			mine = b->prev == me;
			if (note && b->owner == me) {
				if (!f || !f->mine) {
					flow_note(&fk, f, now, 0);
					count(LB_ST_UDP_LEARN);
				}
			}
		}
		if ((announced || now - b->move_ns < cfg->window_ns) &&
		    p->proto == IPPROTO_TCP && p->has_ports) {
			/* Established TCP flows stay where their socket is, in both phases: the
			 * next owner may still hold flows of its own in this bucket (it is
			 * taking back buckets it was draining when it left). */
			__u8 fl = p->tcp_flags;
			__u8 takes_new = announced ? b->prev : b->owner;

			if ((fl & (TCPF_SYN | TCPF_ACK)) == TCPF_SYN)
				mine = takes_new == me;
			else if (b->owner == me || b->prev == me)
				mine = tcp_is_local(ctx, p, l3, l4,
						    takes_new == me && (fl & TCPF_ACK) &&
							    !(fl & (TCPF_SYN | TCPF_RST)));
			else
				mine = 0;
			count(mine ? LB_ST_MOTION_SOCK : LB_ST_MOTION_DROP);
		} else if (!announced && now - b->move_ns < cfg->window_ns && is_udp && f) {
			mine = f->mine;
		}
	}

	if (!mine) {
		count(LB_ST_DROP);
		return XDP_DROP;
	}
	if (note)
		flow_note(&fk, f, now, 1);
	copy_mac(eth->h_dest, lb_own_mac);
	__u64 *bc = bpf_map_lookup_elem(&lb_bucket_stats, &bucket);
	if (bc)
		*bc += 1;
	count(LB_ST_PASS);
	return XDP_PASS;
}

static __always_inline int is_vip6(const struct in6_addr *a)
{
	return a->in6_u.u6_addr32[0] == lb_vip6[0] && a->in6_u.u6_addr32[1] == lb_vip6[1] &&
	       a->in6_u.u6_addr32[2] == lb_vip6[2] && a->in6_u.u6_addr32[3] == lb_vip6[3];
}

/* An ICMP error (unreachable, fragmentation needed, time exceeded, parameter problem)
 * quotes a packet we sent from the VIP: key it by that flow, seen from the client, so it
 * reaches the node that has the connection (path MTU discovery keeps working). */
static __always_inline void icmp4_error(struct pkt *p, void *l4, void *end)
{
	__u8 *ic = l4;
	struct iphdr *in = (struct iphdr *)(ic + 8);
	__u16 *ports = (__u16 *)(in + 1);

	if ((void *)(ports + 2) > end || (ic[0] != 3 && ic[0] != 11 && ic[0] != 12))
		return;
	if (in->version != 4 || in->ihl != 5 || in->saddr != lb_vip4 ||
	    (in->frag_off & bpf_htons(0x1fff)))
		return;
	p->src[0] = in->daddr;
	p->icmp_err = 1;
	if (in->protocol == IPPROTO_TCP || in->protocol == IPPROTO_UDP) {
		p->proto = in->protocol;
		p->sport = ports[1];
		p->dport = ports[0];
		p->has_ports = 1;
	}
}

static __always_inline void icmp6_error(struct pkt *p, void *l4, void *end)
{
	__u8 *ic = l4;
	struct ipv6hdr *in = (struct ipv6hdr *)(ic + 8);
	__u16 *ports = (__u16 *)(in + 1);

	if ((void *)(ports + 2) > end || ic[0] < 1 || ic[0] > 4 || !is_vip6(&in->saddr))
		return;
	__builtin_memcpy(p->src, &in->daddr, 16);
	p->icmp_err = 1;
	if (in->nexthdr == IPPROTO_TCP || in->nexthdr == IPPROTO_UDP) {
		p->proto = in->nexthdr;
		p->sport = ports[1];
		p->dport = ports[0];
		p->has_ports = 1;
	}
}

static __always_inline int handle_ip4(struct xdp_md *ctx, struct ethhdr *eth, void *l3, void *end)
{
	struct iphdr *iph = l3;
	struct pkt p = {};
	void *l4;
	__u32 ihl;

	if ((void *)(iph + 1) > end) {
		count(LB_ST_MALFORMED);
		return XDP_PASS;
	}
	if (!lb_has_vip4 || iph->daddr != lb_vip4) {
		count(LB_ST_OTHER);
		return XDP_PASS;
	}
	ihl = iph->ihl;
	if (iph->version != 4 || ihl < 5) {
		count(LB_ST_MALFORMED);
		return XDP_DROP; /* addressed to the VIP but not IPv4: no stack wants it */
	}
	l4 = l3 + ihl * 4;
	p.family = 4;
	p.proto = iph->protocol;
	p.src[0] = iph->saddr;
	p.dst[0] = iph->daddr;
	/* Fragments (first ones too, so a datagram stays whole) hash by source only. */
	if (!(iph->frag_off & bpf_htons(0x3fff)) &&
	    (p.proto == IPPROTO_TCP || p.proto == IPPROTO_UDP)) {
		if (p.proto == IPPROTO_TCP) {
			struct tcphdr *th = l4;

			if ((void *)(th + 1) <= end) {
				p.sport = th->source;
				p.dport = th->dest;
				p.tcp_flags = ((__u8 *)th)[13];
				p.has_ports = 1;
			}
		} else {
			struct udphdr *uh = l4;

			if ((void *)(uh + 1) <= end) {
				p.sport = uh->source;
				p.dport = uh->dest;
				p.has_ports = 1;
			}
		}
	} else if (!(iph->frag_off & bpf_htons(0x3fff)) && p.proto == IPPROTO_ICMP) {
		icmp4_error(&p, l4, end);
	}
	return balance(ctx, eth, &p, l3, l4);
}


static __always_inline int handle_ip6(struct xdp_md *ctx, struct ethhdr *eth, __u32 l3off)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6;
	struct pkt p = {};
	__u8 nh;
	__u32 off;
	int frag = 0, i;

	if (l3off > 22)
		return XDP_PASS;
	ip6 = data + l3off;
	if ((void *)(ip6 + 1) > end) {
		count(LB_ST_MALFORMED);
		return XDP_PASS;
	}
	if (!lb_has_vip6) {
		count(LB_ST_OTHER);
		return XDP_PASS;
	}
	nh = ip6->nexthdr;
	off = l3off + sizeof(*ip6);

	/* Neighbour solicitation for the VIP (to its solicited-node group or to the VIP). */
	if (nh == IPPROTO_ICMPV6_) {
		__u8 *icmp = data + off;
		struct in6_addr *target = (struct in6_addr *)(icmp + 8);

		if ((void *)(target + 1) <= end && icmp[0] == 135 && icmp[1] == 0 &&
		    ip6->hop_limit == 255 && is_vip6(target)) {
			if (!(ip6->saddr.in6_u.u6_addr32[0] | ip6->saddr.in6_u.u6_addr32[1] |
			      ip6->saddr.in6_u.u6_addr32[2] | ip6->saddr.in6_u.u6_addr32[3])) {
				count(LB_ST_OTHER); /* DAD probe: someone else claims the VIP */
				return XDP_PASS;
			}
			return handle_ns(ctx, l3off);
		}
	}
	if (!is_vip6(&ip6->daddr)) {
		count(LB_ST_OTHER);
		return XDP_PASS;
	}
	__builtin_memcpy(p.src, &ip6->saddr, 16);
	__builtin_memcpy(p.dst, &ip6->daddr, 16);
	p.family = 6;

	/* Walk at most 4 extension headers; a fragment header ends the port search. */
#pragma unroll
	for (i = 0; i < 4; i++) {
		__u8 *h = data + (off & 0x3ff);

		if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING && nh != IPPROTO_DSTOPTS &&
		    nh != IPPROTO_FRAGMENT && nh != IPPROTO_AH)
			break;
		if ((void *)(h + 8) > end) {
			count(LB_ST_MALFORMED);
			nh = IPPROTO_NONE;
			break;
		}
		if (nh == IPPROTO_FRAGMENT) {
			frag = 1;
			nh = h[0];
			break;
		}
		if (nh == IPPROTO_AH)
			off += ((__u32)h[1] + 2) * 4;
		else
			off += ((__u32)h[1] + 1) * 8;
		nh = h[0];
	}
	p.proto = nh;
	off &= 0x3ff;
	void *l4 = data + off;
	if (!frag && nh == IPPROTO_ICMPV6_)
		icmp6_error(&p, l4, end);
	if (!frag && (nh == IPPROTO_TCP || nh == IPPROTO_UDP)) {
		if (nh == IPPROTO_TCP) {
			struct tcphdr *th = l4;

			if ((void *)(th + 1) <= end) {
				p.sport = th->source;
				p.dport = th->dest;
				p.tcp_flags = ((__u8 *)th)[13];
				p.has_ports = 1;
			}
		} else {
			struct udphdr *uh = l4;

			if ((void *)(uh + 1) <= end) {
				p.sport = uh->source;
				p.dport = uh->dest;
				p.has_ports = 1;
			}
		}
	}
	return balance(ctx, eth, &p, ip6, l4);
}

SEC("xdp")
int lb_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__u16 proto;
	int i;

	if ((void *)(eth + 1) > end) {
		count(LB_ST_MALFORMED);
		return XDP_PASS;
	}
	proto = eth->h_proto;
#pragma unroll
	for (i = 0; i < 2; i++) {
		struct vlan_hdr_ *vh = data + off;

		if (proto != bpf_htons(ETH_P_8021Q_) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		if ((void *)(vh + 1) > end) {
			count(LB_ST_MALFORMED);
			return XDP_PASS;
		}
		proto = vh->proto;
		off += sizeof(*vh);
	}
	if (proto == bpf_htons(ETH_P_ARP))
		return handle_arp(eth, data + off, end);
	if (proto == bpf_htons(ETH_P_IP))
		return handle_ip4(ctx, eth, data + off, end);
	if (proto == bpf_htons(ETH_P_IPV6))
		return handle_ip6(ctx, eth, off);
	count(LB_ST_OTHER);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
