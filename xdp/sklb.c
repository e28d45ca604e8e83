/* sklb: operator tool for the farm filter (attach, set, show, detach) on top of libsklb. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>
#include <xdp/libxdp.h>

#include "lb.h"

static const char *const stat_names[LB_ST__COUNT] = {LB_STAT_NAMES};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sklb attach --dev IF --pin DIR --node N --vmac MAC (--vip4 A | --vip6 A)...\n"
		"                   [--seed S] [--mode auto|native|generic] [--install-vip]\n"
		"       sklb set --pin DIR [--rule client|session] [--ports all | --ports P,P... --others pass|drop]\n"
		"                [--view N=W,N=W... [--leaving N,N...] [--announce-ms MS]]\n"
		"                [--window-ms MS --udp-timeout-ms MS]\n"
		"       sklb show --pin DIR [--buckets N]\n"
		"       sklb detach --pin DIR\n");
}

static int bad(const char *what, const char *val)
{
	fprintf(stderr, "sklb: %s: '%s'\n", what, val ? val : "");
	return 2;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max || s[0] == '-')
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (!s || sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 255)
			return -EINVAL;
		mac[i] = (uint8_t)v[i];
	}
	return 0;
}

enum { O_DEV = 1, O_PIN, O_NODE, O_VMAC, O_VIP4, O_VIP6, O_SEED, O_MODE, O_INSTALL, O_RULE, O_PORTS,
       O_OTHERS, O_VIEW, O_LEAVING, O_ANNOUNCE, O_WINDOW, O_UDPTO, O_BUCKETS };

static const struct option opts[] = {
	{"dev", 1, 0, O_DEV},         {"pin", 1, 0, O_PIN},
	{"node", 1, 0, O_NODE},       {"vmac", 1, 0, O_VMAC},
	{"vip4", 1, 0, O_VIP4},       {"vip6", 1, 0, O_VIP6},
	{"seed", 1, 0, O_SEED},       {"mode", 1, 0, O_MODE},
	{"install-vip", 0, 0, O_INSTALL}, {"rule", 1, 0, O_RULE},
	{"ports", 1, 0, O_PORTS},     {"others", 1, 0, O_OTHERS},
	{"view", 1, 0, O_VIEW},       {"leaving", 1, 0, O_LEAVING},
	{"announce-ms", 1, 0, O_ANNOUNCE}, {"window-ms", 1, 0, O_WINDOW},
	{"udp-timeout-ms", 1, 0, O_UDPTO}, {"buckets", 1, 0, O_BUCKETS},
	{0, 0, 0, 0},
};

/* Everything a command line can ask for, parsed and validated before anything changes. */
struct args {
	struct lb_attach_opts at;
	const char *pin;
	int have_node, have_rule, have_ports, have_view, have_window, have_udpto;
	enum sk_lb_rule rule;
	uint16_t ports[1024];
	size_t nports;
	int others; /* -1 unset */
	struct lb_view view;
	uint32_t window_ms, udpto_ms;
	uint32_t top_buckets; /* show: busiest buckets to list */
};

static int parse_ports(struct args *a, const char *s)
{
	char buf[8192], *save = NULL;

	a->have_ports = 1;
	if (!strcmp(s, "all")) {
		a->nports = 0;
		return 0;
	}
	if (strlen(s) >= sizeof(buf))
		return -E2BIG;
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		uint32_t p;

		if (parse_u32(t, 65535, &p) || !p || a->nports >= 1024)
			return -EINVAL;
		a->ports[a->nports++] = (uint16_t)p;
	}
	return a->nports ? 0 : -EINVAL;
}

static int parse_view(struct args *a, const char *s)
{
	char buf[2048], *save = NULL;

	if (strlen(s) >= sizeof(buf))
		return -E2BIG;
	snprintf(buf, sizeof(buf), "%s", s);
	a->have_view = 1;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(t, '=');
		uint32_t n, w;

		if (!eq)
			return -EINVAL;
		*eq = 0;
		if (parse_u32(t, LB_MAX_NODES - 1, &n) || parse_u32(eq + 1, SK_WEIGHT_MAX, &w))
			return -EINVAL;
		if (a->view.alive & (1ull << n))
			return -EINVAL; /* listed twice */
		a->view.weight[n] = w;
		a->view.alive |= 1ull << n;
	}
	return 0;
}

static int parse_leaving(struct args *a, const char *s)
{
	char buf[1024], *save = NULL;

	if (strlen(s) >= sizeof(buf))
		return -E2BIG;
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		uint32_t n;

		if (parse_u32(t, LB_MAX_NODES - 1, &n) || a->view.weight[n])
			return -EINVAL;
		a->view.alive |= 1ull << n; /* up, draining its flows, no new ones */
	}
	return 0;
}

static int parse(int argc, char **argv, struct args *a)
{
	int c;
	uint32_t u;

	memset(a, 0, sizeof(*a));
	a->others = -1;
	a->view.announce_ms = 1000;
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_DEV: a->at.ifname = optarg; break;
		case O_PIN: a->pin = a->at.pin_dir = optarg; break;
		case O_NODE:
			if (parse_u32(optarg, LB_MAX_NODES - 1, &a->at.node_id))
				return bad("--node must be 0..63", optarg);
			a->have_node = 1;
			break;
		case O_VMAC:
			if (parse_mac(optarg, a->at.vmac))
				return bad("--vmac must look like 02:00:00:00:00:01", optarg);
			break;
		case O_VIP4:
			if (inet_pton(AF_INET, optarg, &a->at.vip4) != 1)
				return bad("--vip4 is not an IPv4 address", optarg);
			a->at.has_vip4 = 1;
			break;
		case O_VIP6:
			if (inet_pton(AF_INET6, optarg, &a->at.vip6) != 1)
				return bad("--vip6 is not an IPv6 address", optarg);
			a->at.has_vip6 = 1;
			break;
		case O_SEED:
			if (parse_u32(optarg, UINT32_MAX, &a->at.seed))
				return bad("--seed must be a 32-bit number", optarg);
			break;
		case O_MODE:
			if (!strcmp(optarg, "auto")) a->at.mode = LB_XDP_AUTO;
			else if (!strcmp(optarg, "native")) a->at.mode = LB_XDP_NATIVE;
			else if (!strcmp(optarg, "generic")) a->at.mode = LB_XDP_GENERIC;
			else return bad("--mode must be auto, native or generic", optarg);
			break;
		case O_INSTALL: a->at.install_vip = 1; break;
		case O_RULE:
			if (!strcmp(optarg, "client")) a->rule = SK_LB_CLIENT;
			else if (!strcmp(optarg, "session")) a->rule = SK_LB_SESSION;
			else return bad("--rule must be client or session", optarg);
			a->have_rule = 1;
			break;
		case O_PORTS:
			if (parse_ports(a, optarg))
				return bad("--ports must be 'all' or up to 1024 ports 1..65535 separated by commas", optarg);
			break;
		case O_OTHERS:
			if (!strcmp(optarg, "pass")) a->others = SK_LB_PORTS_OTHERS_PASS;
			else if (!strcmp(optarg, "drop")) a->others = SK_LB_PORTS_OTHERS_DROP;
			else return bad("--others must be pass or drop", optarg);
			break;
		case O_VIEW:
			if (parse_view(a, optarg))
				return bad("--view must be NODE=WEIGHT,... (node 0..63 once each, weight 0..1000)", optarg);
			break;
		case O_LEAVING:
			if (parse_leaving(a, optarg))
				return bad("--leaving must list nodes 0..63 that have no weight in --view", optarg);
			break;
		case O_ANNOUNCE:
			if (parse_u32(optarg, 60000, &a->view.announce_ms))
				return bad("--announce-ms must be 0..60000", optarg);
			break;
		case O_WINDOW:
			if (parse_u32(optarg, 3600000, &u))
				return bad("--window-ms must be 0..3600000", optarg);
			a->window_ms = u;
			a->have_window = 1;
			break;
		case O_UDPTO:
			if (parse_u32(optarg, 3600000, &u) || !u)
				return bad("--udp-timeout-ms must be 1..3600000", optarg);
			a->udpto_ms = u;
			a->have_udpto = 1;
			break;
		case O_BUCKETS:
			if (parse_u32(optarg, 1000, &a->top_buckets))
				return bad("--buckets must be 0..1000", optarg);
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc)
		return bad("unexpected argument", argv[optind]);
	if (!a->pin)
		return bad("--pin is required", "");
	if (a->have_ports && a->nports && a->others < 0)
		return bad("--ports with a list needs --others pass|drop", "");
	if (a->others >= 0 && (!a->have_ports || !a->nports))
		return bad("--others needs --ports with a list", "");
	if (a->have_window != a->have_udpto)
		return bad("--window-ms and --udp-timeout-ms go together", "");
	return 0;
}

static int cmd_attach(struct args *a)
{
	struct lb_attach_result res;
	struct lb_err err = {{0}};
	int rc;

	if (!a->at.ifname || !a->have_node)
		return bad("attach needs --dev and --node", "");
	rc = lb_attach(&a->at, &res, &err);
	if (rc) {
		fprintf(stderr, "sklb: attach: %s\n", err.msg);
		return 1;
	}
	if (res.fell_back)
		fprintf(stderr, "sklb: warning: native XDP refused on %s (%s), using generic mode\n",
			a->at.ifname, res.native_err);
	if (!res.dispatcher)
		fprintf(stderr, "sklb: warning: %s: the kernel or driver refused libxdp's dispatcher; "
			"attached alone, so no other XDP program can share the interface\n",
			a->at.ifname);
	printf("attached %s mode=%s maps=%s\n", a->at.ifname,
	       res.mode == LB_XDP_NATIVE ? "native" : "generic", res.reused_maps ? "reused" : "new");
	return 0;
}

static int cmd_set(struct args *a)
{
	struct lb_err err = {{0}};
	struct lb *lb;
	int rc = 0;

	if (!a->have_rule && !a->have_ports && !a->have_view && !a->have_window)
		return bad("set needs at least one of --rule --ports --view --window-ms", "");
	if (a->have_view && lb_view_check(&a->view, &err)) {
		fprintf(stderr, "sklb: set: %s\n", err.msg);
		return 2;
	}
	if (lb_open(a->pin, &lb, &err)) {
		fprintf(stderr, "sklb: set: %s\n", err.msg);
		return 1;
	}
	if (a->have_rule)
		rc = lb_set_rule(lb, a->rule, &err);
	if (!rc && a->have_ports)
		rc = lb_set_ports(lb, a->ports, a->nports,
				  a->nports ? (enum sk_lb_ports)a->others : SK_LB_PORTS_ALL, &err);
	if (!rc && a->have_window)
		rc = lb_set_timing(lb, a->window_ms, a->udpto_ms, &err);
	if (!rc && a->have_view)
		rc = lb_set_view(lb, &a->view, &err);
	lb_close(lb);
	if (rc) {
		fprintf(stderr, "sklb: set: %s\n", err.msg);
		return 1;
	}
	return 0;
}

/* The busiest buckets this node passed, with their place in the table. */
static int show_buckets(struct args *a)
{
	static uint64_t pkts[LB_BUCKETS];
	static struct lb_bucket tbl[LB_BUCKETS];
	struct lb_err err = {{0}};
	struct lb *lb;
	int rc;

	if (lb_open(a->pin, &lb, &err)) {
		fprintf(stderr, "sklb: show: %s\n", err.msg);
		return 1;
	}
	rc = lb_get_bucket_pkts(lb, pkts, &err);
	if (!rc)
		rc = lb_get_table(lb, tbl, &err);
	lb_close(lb);
	if (rc) {
		fprintf(stderr, "sklb: show: %s\n", err.msg);
		return 1;
	}
	for (uint32_t n = 0; n < a->top_buckets; n++) {
		uint32_t best = 0;

		for (uint32_t b = 1; b < LB_BUCKETS; b++)
			if (pkts[b] > pkts[best])
				best = b;
		if (!pkts[best])
			break;
		printf("bucket %u owner=%u prev=%d epoch=%u pkts=%" PRIu64 "\n", best, tbl[best].owner,
		       tbl[best].prev == LB_NODE_NONE ? -1 : tbl[best].prev, tbl[best].epoch, pkts[best]);
		pkts[best] = 0;
	}
	return 0;
}

static int cmd_show(struct args *a)
{
	struct lb_err err = {{0}};
	struct lb_status st;
	struct lb *lb;
	char v4[INET_ADDRSTRLEN] = "-", v6[INET6_ADDRSTRLEN] = "-";
	int rc;

	if (lb_open(a->pin, &lb, &err)) {
		fprintf(stderr, "sklb: show: %s\n", err.msg);
		return 1;
	}
	rc = lb_get_status(lb, &st, &err);
	lb_close(lb);
	if (rc) {
		fprintf(stderr, "sklb: show: %s\n", err.msg);
		return 1;
	}
	if (st.info.has_vip4)
		inet_ntop(AF_INET, &st.info.vip4, v4, sizeof(v4));
	if (st.info.has_vip6)
		inet_ntop(AF_INET6, st.info.vip6, v6, sizeof(v6));
	const uint8_t *m = st.info.vmac;
	printf("ifindex=%u mode=%s node=%u vip4=%s vip6=%s vmac=%02x:%02x:%02x:%02x:%02x:%02x\n",
	       st.info.ifindex, st.info.xdp_mode == LB_XDP_NATIVE ? "native" : "generic",
	       st.info.node_id, v4, v6, m[0], m[1], m[2], m[3], m[4], m[5]);
	printf("rule=%s ports=%s", st.cfg.rule == SK_LB_SESSION ? "session" : "client",
	       st.cfg.port_policy == SK_LB_PORTS_ALL ? "all" : "list");
	if (st.cfg.port_policy != SK_LB_PORTS_ALL)
		printf(" nports=%u others=%s", st.nports,
		       st.cfg.port_policy == SK_LB_PORTS_OTHERS_PASS ? "pass" : "drop");
	printf(" window_ms=%" PRIu64 " udp_timeout_ms=%" PRIu64 "\n",
	       (uint64_t)st.cfg.window_ns / 1000000, (uint64_t)st.cfg.udp_timeout_ns / 1000000);
	printf("generation=%u moving=%u\n", st.generation, st.moving);
	for (unsigned i = 0; i < LB_MAX_NODES; i++)
		if (st.owned[i])
			printf("share node=%u buckets=%u pct=%.2f\n", i, st.owned[i],
			       100.0 * st.owned[i] / LB_BUCKETS);
	for (unsigned i = 0; i < LB_ST__COUNT; i++)
		printf("stat %s=%" PRIu64 "\n", stat_names[i], st.stats[i]);
	return a->top_buckets ? show_buckets(a) : 0;
}

static int cmd_detach(struct args *a)
{
	struct lb_err err = {{0}};

	if (lb_detach(a->pin, &err)) {
		fprintf(stderr, "sklb: detach: %s\n", err.msg);
		return 1;
	}
	return 0;
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* libxdp's dispatcher probe fails noisily before its legacy fallback;
	 * our own errors are reported with context, so libbpf talks only on request. */
	if (!getenv("SKLB_VERBOSE"))
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static int quiet_xdp(enum libxdp_print_level level, const char *fmt, va_list ap)
{
	if (level != LIBXDP_WARN || !getenv("SKLB_VERBOSE"))
		return 0; /* fallbacks are reported by sklb itself */
	return vfprintf(stderr, fmt, ap);
}

static const struct {
	const char *name;
	int (*fn)(struct args *);
} cmds[] = {
	{"attach", cmd_attach}, {"set", cmd_set}, {"show", cmd_show}, {"detach", cmd_detach},
};

int main(int argc, char **argv)
{
	struct args a;
	int rc;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	libbpf_set_print(quiet);
	libxdp_set_print(quiet_xdp);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[1], cmds[i].name))
			continue;
		rc = parse(argc, argv, &a);
		if (rc)
			return rc;
		return cmds[i].fn(&a);
	}
	fprintf(stderr, "sklb: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
