/* Farm filter benchmark: ns per packet via BPF_PROG_TEST_RUN repeat, and share spread over synthetic flows. */
#include <stdlib.h>
#include <time.h>

#include "pkt.h"

#define VIP4 "10.99.0.200"

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Median over `runs` test runs of `repeat` iterations each; -1 if the action is not `want`. */
static long ns_per_pkt(struct inst *in, const struct fb *f, uint32_t want, uint32_t repeat, int runs)
{
	uint32_t d[16];
	uint8_t out[256];

	for (int r = 0; r < runs && r < 16; r++) {
		LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = f->b, .data_size_in = f->n, .data_out = out,
			    .data_size_out = sizeof(out), .repeat = repeat);
		if (bpf_prog_test_run_opts(in->prog, &o) || o.retval != want)
			return -1;
		d[r] = o.duration;
	}
	qsort(d, (size_t)runs, sizeof(d[0]), cmp_u32);
	return d[runs / 2];
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next32(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

int main(int argc, char **argv)
{
	uint32_t repeat = argc > 1 ? (uint32_t)atoi(argv[1]) : 1000000;
	uint32_t flows = argc > 2 ? (uint32_t)atoi(argv[2]) : 100000;
	static const uint32_t w[LB_MAX_NODES] = {1, 1, 2};
	struct inst node[3];
	struct fb f;
	long t_pass, t_drop, t_other;

	for (int i = 0; i < 3; i++)
		if (inst_open(&node[i], (uint8_t)i, VIP4, NULL)) {
			fprintf(stderr, "lbbench: cannot load lb.bpf.o: %s\n", strerror(errno));
			return 1;
		}
	/* steady state, session rule: the common case, one hash and one table read */
	inst_table(&node[1], NULL, 1);
	tcp4(&f, "10.99.0.100", VIP4, 40000, 80, 0x10);
	t_pass = ns_per_pkt(&node[1], &f, XDP_PASS, repeat, 5);
	inst_table(&node[1], NULL, 0);
	t_drop = ns_per_pkt(&node[1], &f, XDP_DROP, repeat, 5);
	tcp4(&f, "10.99.0.100", "10.99.0.1", 40000, 80, 0x10);
	t_other = ns_per_pkt(&node[1], &f, XDP_PASS, repeat, 5);
	if (t_pass < 0 || t_drop < 0 || t_other < 0) {
		fprintf(stderr, "lbbench: unexpected action or test run failure\n");
		return 1;
	}
	printf("vip_pass_ns=%ld vip_drop_ns=%ld non_vip_ns=%ld (median of 5 x %u)\n", t_pass, t_drop,
	       t_other, repeat);

	/* for the record, not in the headline: UDP (flow map) and a bucket in motion (socket lookup) */
	inst_table(&node[1], NULL, 1);
	fb_eth(&f, T_VMAC, 0, 0x0800);
	fb_ip4(&f, "10.99.0.100", VIP4, 17, 0, 16);
	fb_udp(&f, 40000, 53);
	long t_udp = ns_per_pkt(&node[1], &f, XDP_PASS, repeat, 5);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	for (uint32_t b = 0; b < LB_BUCKETS; b++)
		node[1].tbl[b] = (struct lb_bucket){.owner = 0, .prev = 1, .move_ns = now - 1000};
	tcp4(&f, "10.99.0.100", VIP4, 40000, 80, 0x10);
	long t_motion = ns_per_pkt(&node[1], &f, XDP_DROP, repeat / 4 + 1, 5);
	printf("udp_pass_ns=%ld tcp_moving_bucket_ns=%ld (socket lookup, no socket found)\n", t_udp, t_motion);

	/* spread: random client addresses and ports, every flow through all three nodes */
	for (int i = 0; i < 3; i++)
		inst_table(&node[i], w, 0);
	uint32_t cnt[3] = {0}, bad = 0;
	for (uint32_t k = 0; k < flows; k++) {
		char src[32];
		uint32_t a = next32();
		int who = -1;

		snprintf(src, sizeof(src), "10.%u.%u.%u", (a >> 16) & 255, (a >> 8) & 255, a & 255);
		tcp4(&f, src, VIP4, (uint16_t)(1024 + next32() % 64000), 80, 0x02);
		for (int i = 0; i < 3; i++)
			if (run(&node[i], f.b, f.n, NULL, NULL) == XDP_PASS)
				who = who == -1 ? i : -2;
		if (who < 0)
			bad++;
		else
			cnt[who]++;
	}
	double maxdev = 0;
	for (int i = 0; i < 3; i++) {
		double expect = (double)flows * w[i] / 4.0, dev = 100.0 * ((double)cnt[i] / expect - 1.0);

		printf("node %d weight %u flows %u expected %.0f deviation %+.2f%%\n", i, w[i], cnt[i], expect, dev);
		if (dev < 0)
			dev = -dev;
		if (dev > maxdev)
			maxdev = dev;
	}
	printf("flows=%u not_exactly_once=%u\n", flows, bad);
	for (int i = 0; i < 3; i++)
		inst_close(&node[i]);
	long mx = t_pass > t_drop ? t_pass : t_drop;
	mx = mx > t_other ? mx : t_other;
	printf("xdp_ns_per_pkt=%ld share_spread=%.2f\n", mx, bad ? 100.0 : maxdev);
	return bad ? 1 : 0;
}
