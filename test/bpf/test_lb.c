/* BPF_PROG_TEST_RUN tests of the farm filter: every packet kind, action and rewritten bytes (TAP). */
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pkt.h"

#define VIP4 "10.99.0.200"
#define VIP6 "fd00::200"
#define CLI4 "10.99.0.100"
#define CLI6 "fd00::100"

static int n_test, n_fail;

static void ok(int cond, const char *fmt, ...)
{
	va_list ap;

	printf("%s %d - ", cond ? "ok" : "not ok", ++n_test);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		n_fail++;
	fflush(stdout);
}

static uint8_t out[2048];
static uint32_t outlen;
static struct inst node[3]; /* node[i] runs as node id i */
static const uint32_t W112[LB_MAX_NODES] = {1, 1, 2};

/* Frame must be unchanged except the destination MAC, now our own. */
static int passed_rewritten(const struct fb *f)
{
	return outlen == f->n && !memcmp(out, T_OWN, 6) && !memcmp(out + 6, f->b + 6, f->n - 6);
}

static int unchanged(const struct fb *f)
{
	return outlen == f->n && !memcmp(out, f->b, f->n);
}

/* Which of the three nodes pass the frame; -1 none, -2 several. */
static int who_passes(const struct fb *f)
{
	int who = -1;

	for (int i = 0; i < 3; i++) {
		int act = run(&node[i], f->b, f->n, out, &outlen);

		if (act == XDP_PASS) {
			if (!passed_rewritten(f))
				return -3;
			who = who == -1 ? i : -2;
		} else if (act != XDP_DROP) {
			return -4;
		}
	}
	return who;
}

static void all_tables(const uint32_t *w)
{
	for (int i = 0; i < 3; i++)
		inst_table(&node[i], w, 0);
}

static void all_cfg(uint32_t rule, uint32_t policy)
{
	for (int i = 0; i < 3; i++)
		inst_cfg(&node[i], rule, policy);
}

static void test_arp(void)
{
	struct fb f;
	uint8_t bc[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	uint8_t arp[28] = {0, 1, 8, 0, 6, 4, 0, 1};

	for (int vl = 0; vl <= 1; vl++) {
		uint32_t l2 = 14 + 4 * vl;

		memcpy(arp + 8, T_CLI, 6);
		inet_pton(AF_INET, CLI4, arp + 14);
		memset(arp + 18, 0, 6);
		inet_pton(AF_INET, VIP4, arp + 24);
		fb_eth(&f, bc, vl, 0x0806);
		fb_put(&f, arp, 28);
		int act = run(&node[1], f.b, f.n, out, &outlen);
		uint8_t vip[4], cli[4];

		inet_pton(AF_INET, VIP4, vip);
		inet_pton(AF_INET, CLI4, cli);
		ok(act == XDP_TX && outlen == f.n, "arp request for VIP%s: XDP_TX", vl ? " (VLAN)" : "");
		ok(!memcmp(out, T_CLI, 6) && !memcmp(out + 6, T_OWN, 6) &&
			   !memcmp(out + 12, f.b + 12, l2 - 12),
		   "arp reply%s: eth dst=requester, src=own MAC (never the virtual one), tags kept",
		   vl ? " (VLAN)" : "");
		const uint8_t *a = out + l2;
		ok(a[6] == 0 && a[7] == 2 && !memcmp(a + 8, T_VMAC, 6) && !memcmp(a + 14, vip, 4) &&
			   !memcmp(a + 18, T_CLI, 6) && !memcmp(a + 24, cli, 4) && !memcmp(a, f.b + l2, 6),
		   "arp reply%s: op=2 sha=virtual MAC spa=VIP tha/tpa=requester", vl ? " (VLAN)" : "");
	}
	/* request for another address, a reply for the VIP, and a truncated ARP */
	inet_pton(AF_INET, "10.99.0.1", arp + 24);
	fb_eth(&f, bc, 0, 0x0806);
	fb_put(&f, arp, 28);
	ok(run(&node[1], f.b, f.n, out, &outlen) == XDP_PASS && unchanged(&f),
	   "arp request for another IP: XDP_PASS untouched");
	inet_pton(AF_INET, VIP4, arp + 24);
	arp[7] = 2;
	fb_eth(&f, bc, 0, 0x0806);
	fb_put(&f, arp, 28);
	ok(run(&node[1], f.b, f.n, out, &outlen) == XDP_PASS && unchanged(&f),
	   "arp reply about the VIP: XDP_PASS untouched");
	arp[7] = 1;
	fb_eth(&f, bc, 0, 0x0806);
	fb_put(&f, arp, 20);
	ok(run(&node[1], f.b, f.n, out, &outlen) == XDP_PASS && unchanged(&f),
	   "truncated arp request (20 of 28 bytes): XDP_PASS untouched");
}

static uint16_t csum16(const uint8_t *p, size_t n, uint32_t sum)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static void test_ns(void)
{
	struct fb f;
	uint8_t mc[6] = {0x33, 0x33, 0xff, 0x00, 0x02, 0x00};
	uint8_t ns[32] = {135, 0, 0, 0, 0, 0, 0, 0};
	uint8_t vip[16], cli[16];

	inet_pton(AF_INET6, VIP6, vip);
	inet_pton(AF_INET6, CLI6, cli);
	for (int opt = 1; opt >= 0; opt--) {
		uint32_t icmplen = opt ? 32 : 24;

		memcpy(ns + 8, vip, 16);
		ns[24] = 1;
		ns[25] = 1;
		memcpy(ns + 26, T_CLI, 6);
		fb_eth(&f, mc, 0, 0x86dd);
		fb_ip6(&f, CLI6, "ff02::1:ff00:200", 58, (uint16_t)icmplen, 255);
		fb_put(&f, ns, icmplen);
		int act = run(&node[1], f.b, f.n, out, &outlen);
		const uint8_t *ip = out + 14, *ic = out + 54;

		ok(act == XDP_TX && outlen == 14 + 40 + 32, "neighbour solicitation for VIP%s: XDP_TX, %u bytes",
		   opt ? "" : " (no source option, frame grown)", outlen);
		ok(!memcmp(out, T_CLI, 6) && !memcmp(out + 6, T_OWN, 6) && ip[6] == 58 && ip[7] == 255 &&
			   ip[4] == 0 && ip[5] == 32 && !memcmp(ip + 8, vip, 16) && !memcmp(ip + 24, cli, 16),
		   "NA headers: eth to requester from own MAC, VIP -> requester, hop limit 255");
		uint8_t pseudo[40];
		memcpy(pseudo, ip + 8, 32);
		memset(pseudo + 32, 0, 8);
		pseudo[35] = 32;
		pseudo[39] = 58;
		uint16_t s = csum16(pseudo, 40, 0);
		s = csum16(ic, 32, s);
		ok(ic[0] == 136 && ic[4] == 0x60 && !memcmp(ic + 8, vip, 16) && ic[24] == 2 && ic[25] == 1 &&
			   !memcmp(ic + 26, T_VMAC, 6) && s == 0xffff,
		   "NA body: solicited+override, target VIP, option = virtual MAC, checksum valid");
	}
	inet_pton(AF_INET6, "fd00::1", ns + 8);
	fb_eth(&f, mc, 0, 0x86dd);
	fb_ip6(&f, CLI6, "ff02::1:ff00:1", 58, 32, 255);
	fb_put(&f, ns, 32);
	ok(run(&node[1], f.b, f.n, out, &outlen) == XDP_PASS && unchanged(&f),
	   "neighbour solicitation for another address: XDP_PASS untouched");
	memcpy(ns + 8, vip, 16);
	fb_eth(&f, mc, 0, 0x86dd);
	fb_ip6(&f, "::", "ff02::1:ff00:200", 58, 24, 255);
	fb_put(&f, ns, 24);
	ok(run(&node[1], f.b, f.n, out, &outlen) == XDP_PASS && unchanged(&f),
	   "DAD probe for the VIP: XDP_PASS untouched (not answered)");
}

/* Every frame of a list passes on exactly one node, rewritten, and both halves agree with weights. */
static void test_balance(void)
{
	struct fb f;
	int counts[3] = {0}, bad = 0, n = 0;

	all_tables(W112);
	all_cfg(SK_LB_SESSION, SK_LB_PORTS_ALL);
	for (int i = 0; i < 600; i++) {
		char src[32];

		snprintf(src, sizeof(src), "10.99.%d.%d", 1 + i % 7, 1 + i % 250);
		tcp4(&f, src, VIP4, (uint16_t)(1024 + i * 37), 80, 0x02);
		int w = who_passes(&f);
		if (w < 0)
			bad++;
		else
			counts[w]++;
		n++;
	}
	ok(!bad, "600 IPv4 TCP SYNs to the VIP: each passed by exactly one node, dst MAC rewritten (%d bad)", bad);
	ok(counts[0] > 90 && counts[1] > 90 && counts[2] > 220,
	   "shares follow weights 1,1,2: %d %d %d", counts[0], counts[1], counts[2]);

	/* the same 4-tuple always lands on the same node; TCP flags do not matter */
	tcp4(&f, CLI4, VIP4, 40000, 80, 0x02);
	int w1 = who_passes(&f);
	tcp4(&f, CLI4, VIP4, 40000, 80, 0x10);
	ok(w1 >= 0 && who_passes(&f) == w1, "SYN and ACK of one flow go to the same node (%d)", w1);

	/* UDP, ICMP, IPv6 TCP/UDP, IPv6 with a hop-by-hop header, VLAN and QinQ */
	bad = 0;
	for (int i = 0; i < 50; i++) {
		char src6[64];

		fb_eth(&f, T_VMAC, 0, 0x0800);
		fb_ip4(&f, CLI4, VIP4, 17, 0, 16);
		fb_udp(&f, (uint16_t)(2000 + i), 53);
		bad += who_passes(&f) < 0;

		fb_eth(&f, T_VMAC, 0, 0x0800);
		fb_ip4(&f, CLI4, VIP4, 1, 0, 8);
		fb_put(&f, "\x08\x00\x00\x00\x00\x01\x00\x01", 8);
		bad += who_passes(&f) < 0;

		snprintf(src6, sizeof(src6), "fd00::1:%x", i + 1);
		fb_eth(&f, T_VMAC, 0, 0x86dd);
		fb_ip6(&f, src6, VIP6, 6, 20, 64);
		fb_tcp(&f, (uint16_t)(3000 + i), 443, 0x02);
		bad += who_passes(&f) < 0;

		fb_eth(&f, T_VMAC, 0, 0x86dd);
		fb_ip6(&f, src6, VIP6, 17, 16, 64);
		fb_udp(&f, (uint16_t)(3000 + i), 443);
		bad += who_passes(&f) < 0;

		fb_eth(&f, T_VMAC, 0, 0x86dd);
		fb_ip6(&f, src6, VIP6, 0, 28, 64);
		fb_put(&f, "\x06\x00\x01\x04\x00\x00\x00\x00", 8); /* hop-by-hop, PadN, then TCP */
		fb_tcp(&f, (uint16_t)(3000 + i), 443, 0x02);
		int a = who_passes(&f);
		fb_eth(&f, T_VMAC, 0, 0x86dd);
		fb_ip6(&f, src6, VIP6, 6, 20, 64);
		fb_tcp(&f, (uint16_t)(3000 + i), 443, 0x02);
		bad += a < 0 || a != who_passes(&f); /* ports found behind the extension header */

		for (int vl = 1; vl <= 2; vl++) {
			fb_eth(&f, T_VMAC, vl, 0x0800);
			fb_ip4(&f, CLI4, VIP4, 6, 0, 20);
			fb_tcp(&f, (uint16_t)(5000 + i), 80, 0x02);
			a = who_passes(&f);
			tcp4(&f, CLI4, VIP4, (uint16_t)(5000 + i), 80, 0x02);
			bad += a < 0 || a != who_passes(&f);
		}
	}
	ok(!bad, "UDP, ICMP, IPv6 TCP/UDP, IPv6 hop-by-hop, VLAN and QinQ: exactly one node each, "
		 "tags and extension headers do not change the node (%d bad)", bad);

	/* ICMP errors quoting our packets reach the node of the quoted flow (PMTU discovery) */
	bad = 0;
	for (int i = 0; i < 50; i++) {
		char cli[32], cli6[64];
		uint16_t cport = (uint16_t)(20000 + i * 7);
		uint8_t tcp8[8] = {0, 80, (uint8_t)(cport >> 8), (uint8_t)cport, 0, 0, 0, 1};

		snprintf(cli, sizeof(cli), "10.96.%d.%d", i % 5, 1 + i);
		tcp4(&f, cli, VIP4, cport, 80, 0x10);
		int fwd = who_passes(&f);
		fb_eth(&f, T_VMAC, 0, 0x0800);
		fb_ip4(&f, "10.97.0.1", VIP4, 1, 0, 8 + 20 + 8);
		fb_put(&f, "\x03\x04\x00\x00\x00\x00\x05\xdc", 8); /* fragmentation needed */
		fb_ip4(&f, VIP4, cli, 6, 0, 20);
		fb_put(&f, tcp8, 8);
		int err4 = who_passes(&f);

		snprintf(cli6, sizeof(cli6), "fd00::3:%x", i + 1);
		tcp8[1] = 443 & 255;
		tcp8[0] = 443 >> 8;
		fb_eth(&f, T_VMAC, 0, 0x86dd);
		fb_ip6(&f, cli6, VIP6, 6, 20, 64);
		fb_tcp(&f, cport, 443, 0x10);
		int fwd6 = who_passes(&f);
		fb_eth(&f, T_VMAC, 0, 0x86dd);
		fb_ip6(&f, "fd00::1", VIP6, 58, 8 + 40 + 8, 64);
		fb_put(&f, "\x02\x00\x00\x00\x00\x00\x05\x00", 8); /* packet too big */
		fb_ip6(&f, VIP6, cli6, 6, 20, 64);
		fb_put(&f, tcp8, 8);
		int err6 = who_passes(&f);
		bad += fwd < 0 || err4 != fwd || fwd6 < 0 || err6 != fwd6;
	}
	ok(!bad, "ICMP/ICMPv6 errors quoting a VIP flow go to that flow's node (%d bad of 50)", bad);

	/* fragments: first and later fragments of a datagram hash by source, like ICMP */
	bad = 0;
	for (int i = 0; i < 40; i++) {
		char src[32];

		snprintf(src, sizeof(src), "10.98.0.%d", i + 1);
		fb_eth(&f, T_VMAC, 0, 0x0800);
		fb_ip4(&f, src, VIP4, 17, 0x2000, 16); /* MF, offset 0 */
		fb_udp(&f, (uint16_t)(7000 + i), 53);
		int a = who_passes(&f);
		fb_eth(&f, T_VMAC, 0, 0x0800);
		fb_ip4(&f, src, VIP4, 17, 185, 16); /* offset 1480, last */
		fb_put(&f, "0123456789abcdef", 16);
		int b = who_passes(&f);
		char src6[64];
		snprintf(src6, sizeof(src6), "fd00::2:%x", i + 1);
		fb_eth(&f, T_VMAC, 0, 0x86dd);
		fb_ip6(&f, src6, VIP6, 44, 24, 64);
		fb_put(&f, "\x11\x00\x00\x01\x00\x00\x00\x2a", 8); /* fragment hdr, offset 0, M */
		fb_udp(&f, (uint16_t)(7000 + i), 53);
		int c = who_passes(&f);
		fb_eth(&f, T_VMAC, 0, 0x86dd);
		fb_ip6(&f, src6, VIP6, 44, 24, 64);
		fb_put(&f, "\x11\x00\x05\xc8\x00\x00\x00\x2a", 8); /* offset 185*8, last */
		fb_put(&f, "0123456789abcdef", 16);
		int d = who_passes(&f);
		bad += a < 0 || a != b || c < 0 || c != d;
	}
	ok(!bad, "IPv4 and IPv6 fragments: first and later fragments on the same single node (%d bad)", bad);
	(void)n;
}

static void test_other_and_malformed(void)
{
	struct fb f;

	all_tables(NULL); /* every bucket to node 0: node 1 would drop VIP traffic */
	tcp4(&f, CLI4, "10.99.0.1", 1234, 80, 0x02);
	memcpy(f.b, T_OWN, 6);
	ok(run(&node[1], f.b, f.n, out, &outlen) == XDP_PASS && unchanged(&f),
	   "IPv4 TCP to another address: XDP_PASS untouched");
	fb_eth(&f, T_VMAC, 0, 0x86dd);
	fb_ip6(&f, CLI6, "fd00::1", 6, 20, 64);
	fb_tcp(&f, 1, 2, 0x02);
	ok(run(&node[1], f.b, f.n, out, &outlen) == XDP_PASS && unchanged(&f),
	   "IPv6 TCP to another address: XDP_PASS untouched");
	fb_eth(&f, T_VMAC, 0, 0x88cc);
	fb_put(&f, "lldp-frame-body-0123456789", 26);
	ok(run(&node[1], f.b, f.n, out, &outlen) == XDP_PASS && unchanged(&f),
	   "non-IP frame (LLDP): XDP_PASS untouched");

	tcp4(&f, CLI4, VIP4, 1234, 80, 0x02);
	ok(run(&node[1], f.b, f.n, out, &outlen) == XDP_DROP, "VIP packet of a bucket owned by node 0: dropped on node 1");
	ok(run(&node[0], f.b, f.n, out, &outlen) == XDP_PASS && passed_rewritten(&f),
	   "... and passed on node 0 with dst MAC = own MAC, all other bytes identical");

	/* truncations: every cut of a VIP TCP frame is handled without reading past the end */
	int bad = 0;
	for (uint32_t cut = 14; cut < f.n; cut++) {
		int a0 = run(&node[0], f.b, cut, out, &outlen);
		int a1 = run(&node[1], f.b, cut, out, &outlen);

		if (cut < 34) /* IPv4 header incomplete: cannot be ours, left to the stack untouched */
			bad += a0 != XDP_PASS || a1 != XDP_PASS || outlen != cut || memcmp(out, f.b, cut);
		else /* ports missing: balanced by source address, still exactly one node */
			bad += a0 != XDP_PASS || a1 != XDP_DROP;
	}
	ok(!bad, "IPv4 TCP frame cut at every length 14..%u: untouched pass or single-node pass, no fault (%d bad)",
	   f.n - 1, bad);
	fb_eth(&f, T_VMAC, 0, 0x86dd);
	fb_ip6(&f, CLI6, VIP6, 6, 20, 64);
	fb_tcp(&f, 1, 2, 0x02);
	bad = 0;
	for (uint32_t cut = 14; cut < 54; cut++)
		bad += run(&node[1], f.b, cut, out, &outlen) != XDP_PASS || outlen != cut;
	ok(!bad, "IPv6 frame cut inside the IPv6 header: XDP_PASS untouched (%d bad)", bad);
	fb_eth(&f, T_VMAC, 2, 0x0800);
	bad = run(&node[1], f.b, 16, out, &outlen) != XDP_PASS;
	ok(!bad, "frame cut inside a VLAN tag: XDP_PASS");
	fb_eth(&f, T_VMAC, 0, 0x0800);
	fb_ip4(&f, CLI4, VIP4, 6, 0, 20);
	fb_tcp(&f, 1, 80, 0x02);
	f.b[14] = 0x43; /* IHL 3: invalid */
	ok(run(&node[0], f.b, f.n, out, &outlen) == XDP_DROP, "IPv4 to the VIP with IHL < 5: dropped");
	f.b[14] = 0x4f; /* IHL 15: options claim 60 bytes, frame has 40 */
	ok(run(&node[0], f.b, f.n, out, &outlen) == XDP_PASS && run(&node[1], f.b, f.n, out, &outlen) == XDP_DROP,
	   "IPv4 with IHL beyond the frame: balanced by source, no read past the end");
}

static void test_ports(void)
{
	struct fb f;
	uint32_t word = 80 >> 6;
	uint64_t bits = 1ull << (80 & 63);

	all_tables(W112);
	for (int i = 0; i < 3; i++)
		bpf_map_update_elem(bpf_map__fd(node[i].sk->maps.lb_ports), &word, &bits, BPF_ANY);
	all_cfg(SK_LB_SESSION, SK_LB_PORTS_OTHERS_DROP);
	tcp4(&f, CLI4, VIP4, 4321, 22, 0x02);
	ok(who_passes(&f) == -1, "port filter, others=drop: VIP port 22 dropped on every node");
	tcp4(&f, CLI4, VIP4, 4321, 80, 0x02);
	ok(who_passes(&f) >= 0, "port filter: listed port 80 balanced to exactly one node");
	all_cfg(SK_LB_SESSION, SK_LB_PORTS_OTHERS_PASS);
	tcp4(&f, CLI4, VIP4, 4321, 22, 0x02);
	int all = 1;
	for (int i = 0; i < 3; i++)
		all &= run(&node[i], f.b, f.n, out, &outlen) == XDP_PASS && passed_rewritten(&f);
	ok(all, "port filter, others=pass: VIP port 22 passed (rewritten) on every node");
	all_cfg(SK_LB_CLIENT, SK_LB_PORTS_ALL);
	int w = -5, same = 1;
	for (int p = 0; p < 30; p++) {
		tcp4(&f, CLI4, VIP4, (uint16_t)(10000 + p * 11), 80, 0x02);
		int x = who_passes(&f);
		if (w == -5)
			w = x;
		same &= x == w && x >= 0;
	}
	ok(same, "client rule: 30 connections of one client all on node %d", w);
	all_cfg(SK_LB_SESSION, SK_LB_PORTS_ALL);
}

static uint64_t stat_sum(struct inst *in, uint32_t idx)
{
	uint64_t v[512] = {0}, s = 0;
	int n = libbpf_num_possible_cpus();

	bpf_map_lookup_elem(bpf_map__fd(in->sk->maps.lb_stats), &idx, v);
	for (int i = 0; i < n && i < 512; i++)
		s += v[i];
	return s;
}

static void test_swap_and_stats(void)
{
	struct fb f;
	uint32_t zero = 0, one = 1 | (7 << 1);

	all_tables(NULL);
	for (uint32_t b = 0; b < LB_BUCKETS; b++)
		node[1].tbl[LB_BUCKETS + b] = (struct lb_bucket){.owner = 1, .prev = LB_NODE_NONE};
	tcp4(&f, CLI4, VIP4, 999, 80, 0x02);
	uint64_t p0 = stat_sum(&node[1], LB_ST_PASS), d0 = stat_sum(&node[1], LB_ST_DROP);
	int a = run(&node[1], f.b, f.n, out, &outlen);
	bpf_map_update_elem(bpf_map__fd(node[1].sk->maps.lb_active), &zero, &one, BPF_ANY);
	int b = run(&node[1], f.b, f.n, out, &outlen);
	ok(a == XDP_DROP && b == XDP_PASS, "table swap: flipping lb_active switches the whole table at once");
	ok(stat_sum(&node[1], LB_ST_PASS) == p0 + 1 && stat_sum(&node[1], LB_ST_DROP) == d0 + 1,
	   "per-CPU counters count the pass and the drop");
	bpf_map_update_elem(bpf_map__fd(node[1].sk->maps.lb_active), &zero, &zero, BPF_ANY);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void set_motion(struct inst *in, uint8_t owner, uint8_t prev, uint64_t move_ns)
{
	for (uint32_t b = 0; b < LB_BUCKETS; b++)
		in->tbl[b] = (struct lb_bucket){.owner = owner, .prev = prev, .move_ns = move_ns};
}

static void set_lease(struct inst *in, uint64_t lease_ns)
{
	struct lb_cfg cfg;
	uint32_t zero = 0;

	bpf_map_lookup_elem(bpf_map__fd(in->sk->maps.lb_cfg), &zero, &cfg);
	cfg.lease_ns = lease_ns;
	bpf_map_update_elem(bpf_map__fd(in->sk->maps.lb_cfg), &zero, &cfg, BPF_ANY);
}

/* The agent's lease: an expired one passes nothing balanced (the agent died), ARP still answered. */
static void test_lease(void)
{
	struct fb f, arp;
	int a, b, c, d;

	all_cfg(SK_LB_SESSION, SK_LB_PORTS_ALL);
	for (uint32_t b2 = 0; b2 < LB_TABLE_ENTRIES; b2++)
		node[1].tbl[b2] = (struct lb_bucket){.owner = 1, .prev = LB_NODE_NONE};
	uint8_t bc[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	uint8_t req[28] = {0, 1, 8, 0, 6, 4, 0, 1};

	memcpy(req + 8, T_CLI, 6);
	inet_pton(AF_INET, CLI4, req + 14);
	inet_pton(AF_INET, VIP4, req + 24);
	fb_eth(&arp, bc, 0, 0x0806);
	fb_put(&arp, req, 28);
	tcp4(&f, CLI4, VIP4, 4242, 80, 0x02);
	set_lease(&node[1], mono_ns() + 60ull * 1000000000ull);
	a = run(&node[1], f.b, f.n, out, &outlen);
	uint64_t l0 = stat_sum(&node[1], LB_ST_LEASE_DROP);
	set_lease(&node[1], mono_ns() - 1);
	b = run(&node[1], f.b, f.n, out, &outlen);
	c = run(&node[1], arp.b, arp.n, out, &outlen);
	set_lease(&node[1], 0);
	d = run(&node[1], f.b, f.n, out, &outlen);
	ok(a == XDP_PASS && b == XDP_DROP && d == XDP_PASS,
	   "lease: a live lease passes the node's buckets, an expired one drops them, 0 means no lease");
	ok(stat_sum(&node[1], LB_ST_LEASE_DROP) == l0 + 1, "lease: the drop is counted as lease_drop");
	ok(c == XDP_TX, "lease: ARP for the VIP is still answered with an expired lease");
}

/* Buckets in motion, with a real TCP connection on loopback for the socket lookup. */
static void test_motion(void)
{
	struct inst m[2];
	struct fb f;
	int ls, cs, as;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);

	if (inst_open(&m[0], 0, "127.0.0.1", NULL) || inst_open(&m[1], 1, "127.0.0.1", NULL)) {
		ok(0, "load instances with VIP 127.0.0.1");
		return;
	}
	ls = socket(AF_INET, SOCK_STREAM, 0);
	bind(ls, (struct sockaddr *)&sa, sizeof(sa));
	listen(ls, 4);
	getsockname(ls, (struct sockaddr *)&sa, &sl);
	uint16_t sport = ntohs(sa.sin_port);
	cs = socket(AF_INET, SOCK_STREAM, 0);
	connect(cs, (struct sockaddr *)&sa, sizeof(sa));
	as = accept(ls, NULL, NULL);
	struct sockaddr_in ca;
	sl = sizeof(ca);
	getsockname(cs, (struct sockaddr *)&ca, &sl);
	uint16_t cport = ntohs(ca.sin_port);

	/* node 1 had the bucket, node 0 takes it: both in the motion window */
	uint64_t now = mono_ns();
	set_motion(&m[0], 0, 1, now - 1000);
	set_motion(&m[1], 0, 1, now - 1000);
	tcp4(&f, "127.0.0.1", "127.0.0.1", cport, sport, 0x10);
	int a1 = run(&m[1], f.b, f.n, out, &outlen);
	ok(a1 == XDP_PASS && passed_rewritten(&f), "moving bucket: ACK of an established flow passes where a socket has it");
	tcp4(&f, "127.0.0.1", "127.0.0.1", (uint16_t)(cport ^ 0x5555), sport, 0x10);
	ok(run(&m[0], f.b, f.n, out, &outlen) == XDP_DROP && run(&m[1], f.b, f.n, out, &outlen) == XDP_DROP,
	   "moving bucket: ACK with no socket anywhere is dropped by old and new owner (no RST to a stranger)");
	tcp4(&f, "127.0.0.1", "127.0.0.1", (uint16_t)(cport ^ 0x5555), sport, 0x02);
	ok(run(&m[0], f.b, f.n, out, &outlen) == XDP_PASS && run(&m[1], f.b, f.n, out, &outlen) == XDP_DROP,
	   "moving bucket: SYN goes to the new owner only");
	set_motion(&m[1], 0, 1, now - 120ull * 1000000000ull);
	tcp4(&f, "127.0.0.1", "127.0.0.1", cport, sport, 0x10);
	ok(run(&m[1], f.b, f.n, out, &outlen) == XDP_DROP, "after the motion window the old owner lets go");

	/* Announced move (before move_ns): the old owner still takes new flows, but an
	 * established flow stays with its socket, also on the next owner (a node taking back
	 * buckets it was still draining: its own connections must not go to the interim owner). */
	set_motion(&m[0], 0, 1, now + 3600ull * 1000000000ull);
	set_motion(&m[1], 0, 1, now + 3600ull * 1000000000ull);
	tcp4(&f, "127.0.0.1", "127.0.0.1", cport, sport, 0x10);
	ok(run(&m[0], f.b, f.n, out, &outlen) == XDP_PASS,
	   "announced move: the next owner keeps an established flow it has a socket for");
	tcp4(&f, "127.0.0.1", "127.0.0.1", (uint16_t)(cport ^ 0x5555), sport, 0x02);
	ok(run(&m[0], f.b, f.n, out, &outlen) == XDP_DROP && run(&m[1], f.b, f.n, out, &outlen) == XDP_PASS,
	   "announced move: a SYN still goes to the old owner");
	tcp4(&f, "127.0.0.1", "127.0.0.1", (uint16_t)(cport ^ 0x5555), sport, 0x10);
	ok(run(&m[0], f.b, f.n, out, &outlen) == XDP_DROP && run(&m[1], f.b, f.n, out, &outlen) == XDP_DROP,
	   "announced move: an ACK no socket has is dropped by both (no RST to a stranger)");

	/* UDP: announce phase teaches the new owner the old flows, then each keeps its own */
	set_motion(&m[0], 0, 1, now + 3600ull * 1000000000ull);
	set_motion(&m[1], 0, 1, now + 3600ull * 1000000000ull);
	fb_eth(&f, T_VMAC, 0, 0x0800);
	fb_ip4(&f, "127.0.0.1", "127.0.0.1", 17, 0, 16);
	fb_udp(&f, 5353, 53);
	struct fb g = f;
	int an0 = run(&m[0], f.b, f.n, out, &outlen), an1 = run(&m[1], f.b, f.n, out, &outlen);
	ok(an0 == XDP_DROP && an1 == XDP_PASS && stat_sum(&m[0], LB_ST_UDP_LEARN) == 1,
	   "UDP, move announced: old owner still serves, new owner learns the flow");
	set_motion(&m[0], 0, 1, now - 1000);
	set_motion(&m[1], 0, 1, now - 1000);
	int o0 = run(&m[0], g.b, g.n, out, &outlen), o1 = run(&m[1], g.b, g.n, out, &outlen);
	ok(o0 == XDP_DROP && o1 == XDP_PASS, "UDP, moved: the old flow stays on the old owner");
	fb_eth(&f, T_VMAC, 0, 0x0800);
	fb_ip4(&f, "127.0.0.1", "127.0.0.1", 17, 0, 16);
	fb_udp(&f, 6363, 53);
	o0 = run(&m[0], f.b, f.n, out, &outlen);
	o1 = run(&m[1], f.b, f.n, out, &outlen);
	ok(o0 == XDP_PASS && o1 == XDP_DROP, "UDP, moved: a new flow goes to the new owner");
	close(as);
	close(cs);
	close(ls);
	inst_close(&m[0]);
	inst_close(&m[1]);
}

/* Pure ownership properties of weighted rendezvous hashing (table.c). */
static void test_rendezvous(void)
{
	static uint8_t a[LB_BUCKETS], b[LB_BUCKETS];
	uint32_t w[LB_MAX_NODES] = {1, 1, 2};
	int cnt[3] = {0}, moved_other = 0, moved = 0;

	lb_owner_table(w, T_SEED, a);
	for (uint32_t i = 0; i < LB_BUCKETS; i++)
		cnt[a[i]]++;
	double d0 = cnt[0] / (LB_BUCKETS / 4.0) - 1, d2 = cnt[2] / (LB_BUCKETS / 2.0) - 1;
	ok(d0 < 0.03 && d0 > -0.03 && d2 < 0.03 && d2 > -0.03, "weights 1,1,2: buckets %d %d %d (within 3%%)",
	   cnt[0], cnt[1], cnt[2]);
	w[2] = 0;
	lb_owner_table(w, T_SEED, b);
	for (uint32_t i = 0; i < LB_BUCKETS; i++) {
		moved += a[i] != b[i];
		moved_other += a[i] != b[i] && a[i] != 2;
	}
	ok(!moved_other && moved == cnt[2], "node 2 leaves: only its %d buckets move", cnt[2]);
	w[2] = 2;
	w[3] = 1;
	lb_owner_table(w, T_SEED, b);
	moved_other = 0;
	for (uint32_t i = 0; i < LB_BUCKETS; i++)
		moved_other += a[i] != b[i] && b[i] != 3;
	ok(!moved_other, "node 3 joins: buckets only move to node 3");

	struct lb_view v = {.weight = {1, 1, 2}, .alive = 7};
	static struct lb_bucket cur[LB_BUCKETS], next[LB_BUCKETS];
	for (uint32_t i = 0; i < LB_BUCKETS; i++)
		cur[i] = (struct lb_bucket){.owner = a[i], .prev = LB_NODE_NONE};
	v.weight[3] = 1;
	v.alive = 15;
	uint32_t mv = lb_next_table(cur, &v, T_SEED, 5, 1000, 10, next);
	int good = 1;
	for (uint32_t i = 0; i < LB_BUCKETS; i++)
		if (next[i].owner != cur[i].owner)
			good &= next[i].prev == cur[i].owner && next[i].epoch == 5 && next[i].owner == 3;
		else
			good &= next[i].prev == LB_NODE_NONE;
	ok(good && mv > 0, "join: %u moved buckets carry previous owner and epoch", mv);
	v.weight[2] = 0;
	v.alive = 11; /* node 2 died */
	lb_next_table(cur, &v, T_SEED, 6, 1000, 10, next);
	good = 1;
	for (uint32_t i = 0; i < LB_BUCKETS; i++)
		if (cur[i].owner == 2)
			good &= next[i].prev == LB_NODE_NONE && next[i].owner != 2;
	ok(good, "failure: a dead node's buckets move at once, no motion window");
	struct lb_err err;
	struct lb_view bad = {.weight = {1}, .alive = 0};
	ok(lb_view_check(&bad, &err) == -EINVAL, "view with weight on a node not alive refused: %s", err.msg);
}

int main(void)
{
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	for (int i = 0; i < 3; i++) {
		if (inst_open(&node[i], (uint8_t)i, VIP4, VIP6)) {
			printf("Bail out! cannot load lb.bpf.o as node %d (%s)\n", i, strerror(errno));
			return 1;
		}
	}
	ok(1, "program loads and verifies with VIPv4+v6 for nodes 0..2");
	test_arp();
	test_ns();
	test_balance();
	test_other_and_malformed();
	test_ports();
	test_swap_and_stats();
	test_motion();
	test_lease();
	test_rendezvous();
	for (int i = 0; i < 3; i++)
		inst_close(&node[i]);
	printf("1..%d\n", n_test);
	return n_fail ? 1 : 0;
}
