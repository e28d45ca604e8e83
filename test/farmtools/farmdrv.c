/* farmdrv: drives agent/farm.c as the agent would (membership and health in, bucket table out), for farm_agent.sh. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "farm.h"
#include "log.h"
#include "util.h"

static int usage(const char *why)
{
	if (why)
		fprintf(stderr, "farmdrv: %s\n", why);
	fprintf(stderr, "usage: farmdrv --cluster FILE --module FILE --node NAME --pin DIR\n"
			"               [--alive ID,ID... --up ID,ID...] [--window-ms MS] [--announce-ms MS]\n"
			"               [--detach]\n");
	return 2;
}

/* "1,3" -> bits 1 and 3; ids outside 1..63 refused. */
static int parse_ids(const char *s, uint64_t *mask)
{
	char buf[256], *save = NULL;

	*mask = 0;
	if (strlen(s) >= sizeof(buf))
		return -E2BIG;
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long v = strtoul(t, &end, 10);

		if (*end || v < SK_NODE_ID_MIN || v > SK_NODE_ID_MAX)
			return -EINVAL;
		*mask |= 1ull << v;
	}
	return 0;
}

/* Buckets per owner, and buckets in motion per previous owner, from the live table. */
static int show(struct agent_farm *f)
{
	static struct lb_bucket t[LB_BUCKETS];
	uint32_t owned[LB_MAX_NODES] = {0}, from[LB_MAX_NODES] = {0};
	struct lb_status st;
	struct lb_err le;
	uint64_t now = sk_now_ns();

	if (lb_get_status(agent_farm_lb(f), &st, &le) || lb_get_table(agent_farm_lb(f), t, &le)) {
		fprintf(stderr, "farmdrv: status: %s\n", le.msg);
		return 1;
	}
	for (uint32_t b = 0; b < LB_BUCKETS; b++) {
		if (t[b].owner < LB_MAX_NODES)
			owned[t[b].owner]++;
		/* in motion as the loader counts it, per previous owner */
		if (t[b].prev < LB_MAX_NODES && t[b].prev != t[b].owner &&
		    now < t[b].move_ns + st.cfg.window_ns)
			from[t[b].prev]++;
	}
	printf("generation=%u moving=%u", st.generation, st.moving);
	for (unsigned i = 0; i < LB_MAX_NODES; i++)
		if (owned[i])
			printf(" owned%u=%u", i, owned[i]);
	for (unsigned i = 0; i < LB_MAX_NODES; i++)
		if (from[i])
			printf(" from%u=%u", i, from[i]);
	printf("\n");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"cluster", required_argument, NULL, 'c'}, {"module", required_argument, NULL, 'm'},
		{"node", required_argument, NULL, 'n'},    {"pin", required_argument, NULL, 'p'},
		{"alive", required_argument, NULL, 'a'},   {"up", required_argument, NULL, 'u'},
		{"window-ms", required_argument, NULL, 'w'}, {"announce-ms", required_argument, NULL, 'A'},
		{"detach", no_argument, NULL, 'd'},        {0},
	};
	static struct sk_cluster cl;
	static struct sk_module mod;
	struct agent_farm_opts o = {.cluster = &cl, .mod = &mod};
	const char *cpath = NULL, *mpath = NULL;
	struct sk_conf_err ce = {0};
	struct agent_farm *f;
	uint64_t alive = 0, up = 0;
	bool have_view = false, detach = false;
	char err[320], eb[800];
	int c, rc;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cpath = optarg; break;
		case 'm': mpath = optarg; break;
		case 'n': o.self = optarg; break;
		case 'p': o.pin_dir = optarg; break;
		case 'a':
			if (parse_ids(optarg, &alive))
				return usage("--alive: node ids 1..63, comma separated");
			have_view = true;
			break;
		case 'u':
			if (parse_ids(optarg, &up))
				return usage("--up: node ids 1..63, comma separated");
			break;
		case 'w': o.window_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'A': o.announce_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'd': detach = true; break;
		default: return usage(NULL);
		}
	}
	if (!cpath || !mpath || !o.self || !o.pin_dir)
		return usage("--cluster, --module, --node and --pin are required");
	sk_log_init("farmdrv", SK_LOG_INFO);
	if (sk_conf_cluster_load(cpath, &cl, &ce) || sk_conf_module_load(mpath, &mod, &ce)) {
		fprintf(stderr, "farmdrv: %s\n", sk_conf_err_str(&ce, eb, sizeof(eb)));
		return 1;
	}
	rc = agent_farm_open(&o, &f, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "farmdrv: %s\n", err);
		return 1;
	}
	if (detach) {
		agent_farm_close(f, true);
		printf("detached\n");
		return 0;
	}
	if (have_view) {
		for (unsigned i = 0; i < mod.n_nodes; i++) {
			const struct sk_conf_node *n = sk_conf_node_by_name(&cl, mod.nodes[i].name);

			if (n && agent_farm_node(f, n->id, alive & (1ull << n->id), up & (1ull << n->id)) < 0)
				break;
		}
		rc = agent_farm_start(f);
		if (rc < 0) {
			fprintf(stderr, "farmdrv: %s\n", agent_farm_err(f));
			agent_farm_close(f, false);
			return 1;
		}
		printf("view %s\n", rc ? "pushed" : "unchanged");
	}
	rc = show(f);
	agent_farm_close(f, false);
	return rc;
}
