/* test/unit/test_farm.c: agent/farm.c's view: weights by cluster id, dead nodes out, unhealthy nodes leaving, the all-failing fallback, the shared seed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "conf.h"
#include "farm.h"

static struct sk_cluster cl;
static struct sk_module mod;

static void setup(void)
{
	const char *cj = "{\"cluster\":\"c\",\"secret_file\":\"/s\",\"networks\":[\"lan\"],\"nodes\":["
			 "{\"name\":\"n1\",\"id\":5,\"addresses\":{\"lan\":\"192.0.2.1\"}},"
			 "{\"name\":\"n2\",\"id\":9,\"addresses\":{\"lan\":\"192.0.2.2\"}},"
			 "{\"name\":\"n3\",\"id\":63,\"addresses\":{\"lan\":\"192.0.2.3\"}},"
			 "{\"name\":\"other\",\"id\":1,\"addresses\":{\"lan\":\"192.0.2.4\"}}]}";
	const char *mj = "{\"name\":\"web\",\"id\":7,\"kind\":\"farm\",\"nodes\":[\"n1\","
			 "{\"name\":\"n2\",\"weight\":300},{\"name\":\"n3\",\"weight\":1000}],"
			 "\"vip\":{\"addr\":\"192.0.2.100\",\"prefix\":24,\"interface\":\"eth0\","
			 "\"mac\":\"02:00:00:00:00:07\",\"ports\":[80]}}";
	struct sk_conf_err err = {0};

	cr_assert_eq(sk_conf_cluster_parse(cj, strlen(cj), "c", &cl, &err), 0, "%s", err.msg);
	cr_assert_eq(sk_conf_module_parse(mj, strlen(mj), "m", &mod, &err), 0, "%s", err.msg);
}

TestSuite(farm, .init = setup);

#define B(id) (1ull << (id))

Test(farm, all_up_weights_by_cluster_id)
{
	struct lb_view v;
	struct lb_err le;

	cr_assert_eq(agent_farm_make_view(&cl, &mod, B(5) | B(9) | B(63) | B(1), B(5) | B(9) | B(63) | B(1),
					  1000, &v), 0);
	cr_assert_eq(v.weight[5], SK_WEIGHT_DEFAULT);
	cr_assert_eq(v.weight[9], 300);
	cr_assert_eq(v.weight[63], 1000);
	cr_assert_eq(v.weight[1], 0, "a node outside the farm takes nothing");
	cr_assert_eq(v.alive, B(5) | B(9) | B(63), "only the farm's nodes are in the view");
	cr_assert_eq(v.announce_ms, 1000);
	cr_assert_eq(lb_view_check(&v, &le), 0, "%s", le.msg);
}

Test(farm, dead_node_is_out_unhealthy_node_leaves)
{
	struct lb_view v;
	struct lb_err le;

	/* n2 dead, n3 alive with a failing checker */
	cr_assert_eq(agent_farm_make_view(&cl, &mod, B(5) | B(63), B(5), 0, &v), 0);
	cr_assert_eq(v.weight[5], SK_WEIGHT_DEFAULT);
	cr_assert_eq(v.weight[9], 0);
	cr_assert_eq(v.weight[63], 0);
	cr_assert_eq(v.alive & B(9), 0, "dead: not alive, so its buckets move at once");
	cr_assert_neq(v.alive & B(63), 0, "leaving: alive with weight 0, so it keeps its flows");
	cr_assert_eq(lb_view_check(&v, &le), 0, "%s", le.msg);
	/* "up" without "alive" does not count */
	cr_assert_eq(agent_farm_make_view(&cl, &mod, B(5), B(5) | B(9), 0, &v), 0);
	cr_assert_eq(v.weight[9], 0);
}

Test(farm, every_checker_failing_still_answers)
{
	struct lb_view v;

	cr_assert_eq(agent_farm_make_view(&cl, &mod, B(5) | B(9), 0, 0, &v), 0);
	cr_assert_eq(v.weight[5], SK_WEIGHT_DEFAULT);
	cr_assert_eq(v.weight[9], 300);
	cr_assert_eq(v.weight[63], 0);
}

Test(farm, seed_and_kind)
{
	struct sk_module m2 = mod;
	struct lb_view v;

	cr_assert_eq(agent_farm_seed(&cl, &mod), agent_farm_seed(&cl, &mod));
	snprintf(m2.name, sizeof(m2.name), "web2");
	cr_assert_neq(agent_farm_seed(&cl, &mod), agent_farm_seed(&cl, &m2),
		      "two farms on one cluster hash differently");
	m2.kind = SK_MOD_MIRROR;
	cr_assert_eq(agent_farm_make_view(&cl, &m2, B(5), B(5), 0, &v), -EINVAL);
}

Test(farm, open_refuses_bad_input)
{
	struct agent_farm *f;
	struct sk_module mirror = mod;
	char err[320];
	struct agent_farm_opts o = {.cluster = &cl, .mod = &mod, .self = "other", .pin_dir = "/nonexistent/x"};

	cr_assert_eq(agent_farm_open(&o, &f, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not a node of farm web"), "%s", err);
	o.self = "nobody";
	cr_assert_eq(agent_farm_open(&o, &f, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "not in the cluster"), "%s", err);
	mirror.kind = SK_MOD_MIRROR;
	o.mod = &mirror;
	o.self = "n1";
	cr_assert_eq(agent_farm_open(&o, &f, err, sizeof(err)), -EINVAL);
}
