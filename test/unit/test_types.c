/* test/unit/test_types.c: config, wire and XDP limits are sk_types.h's (build fails if a header diverges), and the parser and the farm loader enforce the same ranges. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "lb.h"
#include "replmsg.h"
#include "sk_types.h"

/* Node ids index the farm's tables and a 64-bit alive mask. */
_Static_assert(LB_MAX_NODES == SK_NODE_SLOTS, "XDP node tables have one slot per node id");
_Static_assert(SK_NODE_ID_MAX < LB_MAX_NODES, "every node id has a slot in the farm tables");
_Static_assert(SK_NODE_SLOTS <= 64, "node ids are bits of a 64-bit alive mask (lb_view.alive)");
_Static_assert(SK_NODE_ID_MAX < LB_NODE_NONE && LB_NODE_NONE == SK_NODE_ID_NONE,
	       "'no node' is not a node id");
_Static_assert(SK_NODE_ID_MAX <= UINT8_MAX, "ids are stored in a byte (sk_conf_node.id, lb_bucket.owner)");
_Static_assert(sizeof(((struct sk_conf_node *)0)->id) == 1, "sk_conf_node.id is a byte");
_Static_assert(sizeof(((struct lb_bucket *)0)->owner) == 1, "lb_bucket.owner is a byte");
/* Cluster size. */
_Static_assert(SK_CONF_MAX_NODES == SK_MAX_NODES, "conf's node limit is sk_types'");
_Static_assert(SK_MAX_NODES <= SK_NODE_ID_MAX - SK_NODE_ID_MIN + 1, "enough ids for a full cluster");
/* Weights. */
_Static_assert(SK_WEIGHT_MIN >= 1 && SK_WEIGHT_MIN <= SK_WEIGHT_DEFAULT &&
	       SK_WEIGHT_DEFAULT <= SK_WEIGHT_MAX, "weight range holds its default");
_Static_assert(SK_WEIGHT_MAX <= UINT16_MAX, "sk_conf_mod_node.weight is 16 bits");
_Static_assert((uint64_t)SK_WEIGHT_MAX * SK_NODE_SLOTS < UINT32_MAX, "a view's weight sum fits 32 bits");
/* Enums that travel: config value == wire value == map value. */
_Static_assert(SK_REPL_SYNC == 0 && SK_REPL_SEMI_SYNC == 1 && SK_REPL_ASYNC == 2,
	       "START frames carry the mode as these numbers");
_Static_assert(SK_LB_CLIENT == 0 && SK_LB_SESSION == 1, "lb_cfg.rule values in pinned maps");
_Static_assert(SK_LB_PORTS_ALL == 0 && SK_LB_PORTS_OTHERS_PASS == 1 && SK_LB_PORTS_OTHERS_DROP == 2,
	       "lb_cfg.port_policy values in pinned maps");

static char *cluster_with_id(unsigned id)
{
	static char buf[512];

	snprintf(buf, sizeof(buf),
		 "{\"cluster\":\"c\",\"secret_file\":\"/s\",\"networks\":[\"lan\"],\"nodes\":["
		 "{\"name\":\"a\",\"id\":%u,\"addresses\":{\"lan\":\"192.0.2.1\"}}]}", id);
	return buf;
}

Test(types, conf_node_id_range)
{
	struct sk_cluster *c = calloc(1, sizeof(*c));
	struct sk_conf_err err = {0};
	char *j;

	cr_assert(c);
	j = cluster_with_id(SK_NODE_ID_MAX);
	cr_assert_eq(sk_conf_cluster_parse(j, strlen(j), "t", c, &err), 0, "%s", err.msg);
	cr_assert_eq(c->nodes[0].id, SK_NODE_ID_MAX);
	sk_conf_cluster_free(c);
	j = cluster_with_id(SK_NODE_ID_MAX + 1);
	cr_assert_eq(sk_conf_cluster_parse(j, strlen(j), "t", c, &err), -EINVAL);
	cr_assert(strstr(err.msg, "out of range"), "%s", err.msg);
	j = cluster_with_id(SK_NODE_ID_MIN - 1);
	cr_assert_eq(sk_conf_cluster_parse(j, strlen(j), "t", c, &err), -EINVAL);
	free(c);
}

static int farm_with_weight(unsigned w, struct sk_module *m, struct sk_conf_err *err)
{
	char buf[512];

	snprintf(buf, sizeof(buf),
		 "{\"name\":\"f\",\"id\":2,\"kind\":\"farm\",\"nodes\":[\"a\",{\"name\":\"b\",\"weight\":%u}],"
		 "\"vip\":{\"addr\":\"192.0.2.9\",\"prefix\":24,\"interface\":\"eth0\","
		 "\"mac\":\"02:00:00:00:00:09\",\"ports\":[80]}}", w);
	return sk_conf_module_parse(buf, strlen(buf), "t", m, err);
}

Test(types, conf_and_loader_weight_range)
{
	struct sk_module *m = calloc(1, sizeof(*m));
	struct sk_conf_err err = {0};
	struct lb_view v = {.alive = 1ull << SK_NODE_ID_MAX};
	struct lb_err le;

	cr_assert(m);
	cr_assert_eq(farm_with_weight(SK_WEIGHT_MAX, m, &err), 0, "%s", err.msg);
	cr_assert_eq(m->nodes[0].weight, SK_WEIGHT_DEFAULT);
	cr_assert_eq(m->nodes[1].weight, SK_WEIGHT_MAX);
	sk_conf_module_free(m);
	cr_assert_eq(farm_with_weight(SK_WEIGHT_MAX + 1, m, &err), -EINVAL);
	cr_assert_eq(farm_with_weight(SK_WEIGHT_MIN - 1, m, &err), -EINVAL);
	free(m);
	/* Whatever the config accepts, the farm loader accepts, on the highest node id. */
	v.weight[SK_NODE_ID_MAX] = SK_WEIGHT_MAX;
	cr_assert_eq(lb_view_check(&v, &le), 0, "%s", le.msg);
	v.weight[SK_NODE_ID_MAX] = SK_WEIGHT_MAX + 1;
	cr_assert_eq(lb_view_check(&v, &le), -EINVAL);
}
