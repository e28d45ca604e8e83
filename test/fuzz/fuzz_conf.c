/* test/fuzz/fuzz_conf.c: libFuzzer target feeding every input to both config parsers (and the cross-check). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fixed cluster the parsed modules are checked against, with the nodes of examples/. */
static const char cluster_json[] =
	"{\"cluster\":\"demo\",\"secret_file\":\"/etc/steadykit/secret\",\"networks\":[\"lan\"],"
	"\"nodes\":[{\"name\":\"node1\",\"id\":1,\"addresses\":{\"lan\":\"10.99.0.1\"}},"
	"{\"name\":\"node2\",\"id\":2,\"addresses\":{\"lan\":\"10.99.0.2\"}},"
	"{\"name\":\"node3\",\"id\":3,\"addresses\":{\"lan\":\"10.99.0.3\"}}]}";

static struct sk_cluster *base;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sk_conf_err err;
	char msg[800];

	if (!base) {
		base = calloc(1, sizeof(*base));
		if (!base || sk_conf_cluster_parse(cluster_json, sizeof(cluster_json) - 1, "base", base, &err))
			abort();
	}
	struct sk_cluster *c = malloc(sizeof(*c));
	struct sk_module *m = malloc(sizeof(*m));
	if (!c || !m)
		abort();

	int r = sk_conf_cluster_parse((const char *)data, size, "fuzz", c, &err);
	sk_conf_err_str(&err, msg, sizeof(msg));
	if (r == 0) {
		/* A valid cluster must satisfy what the agent relies on without re-checking. */
		if (c->n_nodes < 1 || c->n_nodes > SK_CONF_MAX_NODES || c->n_networks < 1 ||
		    c->n_networks > SK_CONF_MAX_NETWORKS || c->hb_timeout_ms < 3 * c->hb_interval_ms)
			abort();
		for (unsigned i = 0; i < c->n_nodes; i++)
			if (c->nodes[i].id == 0 || sk_conf_node_by_id(c, c->nodes[i].id) != &c->nodes[i])
				abort();
		sk_conf_cluster_free(c);
	}

	r = sk_conf_module_parse((const char *)data, size, "fuzz", m, &err);
	sk_conf_err_str(&err, msg, sizeof(msg));
	if (r == 0) {
		if (m->kind == SK_MOD_MIRROR && (m->n_nodes != 2 || m->n_dirs < 1))
			abort();
		if (m->kind == SK_MOD_FARM && (m->n_nodes < 2 || !m->has_vip || m->n_dirs != 0))
			abort();
		for (unsigned i = 0; i < m->n_dirs; i++)
			if (m->dirs[i][0] != '/' || strstr(m->dirs[i], "/../") || strstr(m->dirs[i], "//"))
				abort();
		sk_conf_module_check(base, m, &err);
		sk_conf_err_str(&err, msg, sizeof(msg));
		sk_conf_module_free(m);
	}
	free(c);
	free(m);
	return 0;
}
