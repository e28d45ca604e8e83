/* libsk/conf.c: the schema of cluster.json and userconfig.json: validated into typed structs (see conf.h). */
#include "conf.h"
#include "conf_json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- cluster.json ---- */

static const char *const k_cluster[] = {"cluster", "secret_file", "networks", "nodes", "ports",
					"heartbeat", "witness", "http", NULL};
static const char *const k_node[] = {"name", "id", "addresses", "role", NULL};
static const char *const w_role[] = {"node", "witness", NULL};
static const char *const k_ports[] = {"agent", "heartbeat", "replication_base", NULL};
static const char *const k_hb[] = {"interval_ms", "timeout_ms", NULL};
static const char *const k_witness[] = {"ping", "lease_ms", "port", NULL};
static const char *const k_http[] = {"listen", NULL};

int sk_conf_parse_listen(const char *s, struct sk_conf_addr *a, uint16_t *port, char *why,
			 size_t wlen)
{
	char host[SK_CONF_ADDR_TEXT + 2], *end;
	const char *colon;
	unsigned long pn;
	size_t hl;
	bool bracketed = s[0] == '[';

	if (!why)
		why = host, wlen = 0;
	if (bracketed) {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return snprintf(why, wlen, "'[IPv6]:PORT' expected"), -EINVAL;
		hl = (size_t)(rb - s - 1);
		colon = rb + 1;
		s++;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return snprintf(why, wlen, "'IP:PORT' expected (no port)"), -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(host))
		return snprintf(why, wlen, "'IP:PORT' expected (bad address length)"), -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	memset(a, 0, sizeof(*a));
	if (!bracketed && inet_pton(AF_INET, host, a->ip) == 1)
		a->family = AF_INET;
	else if (bracketed && inet_pton(AF_INET6, host, a->ip) == 1)
		a->family = AF_INET6;
	else
		return snprintf(why, wlen, "not an IPv4 address or a bracketed IPv6 address"), -EINVAL;
	{
		static const uint8_t zero[16];

		if (!memcmp(a->ip, zero, a->family == AF_INET ? 4 : 16))
			return snprintf(why, wlen, "a wildcard address listens everywhere; give "
					"the one address the listener is for"), -EINVAL;
	}
	if (colon[1] < '0' || colon[1] > '9')
		return snprintf(why, wlen, "port must be a number 1..65535"), -EINVAL;
	errno = 0;
	pn = strtoul(colon + 1, &end, 10);
	if (errno || *end || pn < 1 || pn > 65535)
		return snprintf(why, wlen, "port must be a number 1..65535"), -EINVAL;
	*port = (uint16_t)pn;
	inet_ntop(a->family, a->ip, a->text, sizeof(a->text));
	return 0;
}

static int parse_node(struct sk_cj *p, json_object *v, struct sk_cluster *c, size_t i)
{
	struct sk_conf_node *n = &c->nodes[i];
	json_object *addrs, *x;
	int64_t id;
	int r;
	if ((r = sk_cj_want(p, v, json_type_object, "an object")) || (r = sk_cj_check_keys(p, v, k_node)) ||
	    (r = sk_cj_member_str(p, v, "name", true, SK_CJ_HOST, SK_CONF_NODE_NAME_LEN - 1, n->name)))
		return r;
	for (size_t j = 0; j < i; j++)
		if (!strcmp(c->nodes[j].name, n->name)) {
			size_t o = sk_cj_push_key(p, "name");
			r = sk_cj_fail(p, "duplicate node name '%s' (also nodes[%zu])", n->name, j);
			sk_cj_pop(p, o);
			return r;
		}
	if ((r = sk_cj_get(p, v, "id", true, &x)))
		return r;
	size_t o = sk_cj_push_key(p, "id");
	if ((r = sk_cj_to_int(p, x, SK_NODE_ID_MIN, SK_NODE_ID_MAX, &id)))
		return r;
	n->id = (uint8_t)id;
	for (size_t j = 0; j < i; j++)
		if (c->nodes[j].id == n->id)
			return sk_cj_fail(p, "duplicate node id %u (also nodes[%zu])", n->id, j);
	sk_cj_pop(p, o);
	{
		int role = 0;

		if ((r = sk_cj_member_enum(p, v, "role", false, w_role, 0, &role)))
			return r;
		n->witness = role == 1;
	}
	if ((r = sk_cj_member_obj(p, v, "addresses", true, NULL, &addrs)))
		return r;
	o = sk_cj_push_key(p, "addresses");
	json_object_object_foreach(addrs, k, av) {
		(void)av;
		if (sk_conf_network_index(c, k) < 0) {
			char list[128] = "";
			for (unsigned w = 0; w < c->n_networks; w++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
					 w ? ", " : "", c->networks[w]);
			sk_cj_push_key(p, k);
			char ck[64];
			sk_cj_clean(ck, sizeof(ck), k);
			return sk_cj_fail(p, "unknown network '%s' (networks are: %s)", ck, list);
		}
	}
	for (unsigned w = 0; w < c->n_networks; w++) {
		if ((r = sk_cj_get(p, addrs, c->networks[w], false, &x)))
			return r;
		if (!x)
			return sk_cj_fail(p, "missing the address on network '%s'", c->networks[w]);
		size_t o2 = sk_cj_push_key(p, c->networks[w]);
		if ((r = sk_cj_to_addr(p, x, &n->addr[w])))
			return r;
		for (size_t j = 0; j < i; j++)
			if (!memcmp(c->nodes[j].addr[w].ip, n->addr[w].ip, 16) &&
			    c->nodes[j].addr[w].family == n->addr[w].family)
				return sk_cj_fail(p, "duplicate address %s (also nodes[%zu])", n->addr[w].text, j);
		sk_cj_pop(p, o2);
	}
	sk_cj_pop(p, o);
	return 0;
}

static int parse_cluster(struct sk_cj *p, json_object *root, void *out)
{
	struct sk_cluster *c = out;
	json_object *arr, *o_ports, *o_hb, *o_w, *x;
	size_t n;
	int r;
	uint32_t u;
	if ((r = sk_cj_check_keys(p, root, k_cluster)) ||
	    (r = sk_cj_member_str(p, root, "cluster", true, SK_CJ_NAME, SK_CONF_NAME_LEN - 1, c->name)))
		return r;
	if ((r = sk_cj_get(p, root, "secret_file", true, &x)))
		return r;
	size_t o = sk_cj_push_key(p, "secret_file");
	if ((r = sk_cj_to_abs_path(p, x, false, c->secret_file)))
		return r;
	sk_cj_pop(p, o);

	if ((r = sk_cj_member_array(p, root, "networks", true, 1, SK_CONF_MAX_NETWORKS, &arr, &n)))
		return r;
	for (size_t i = 0; i < n; i++) {
		o = sk_cj_push_key(p, "networks");
		sk_cj_push_idx(p, i);
		if ((r = sk_cj_to_str(p, json_object_array_get_idx(arr, i), SK_CJ_NAME, SK_CONF_NET_NAME_LEN - 1,
				c->networks[i])))
			return r;
		if (sk_conf_network_index(c, c->networks[i]) >= 0)
			return sk_cj_fail(p, "duplicate network '%s'", c->networks[i]);
		c->n_networks = (unsigned)i + 1;
		sk_cj_pop(p, o);
	}

	if ((r = sk_cj_member_array(p, root, "nodes", true, 1, SK_CONF_MAX_NODES, &arr, &n)))
		return r;
	for (size_t i = 0; i < n; i++) {
		o = sk_cj_push_key(p, "nodes");
		sk_cj_push_idx(p, i);
		if ((r = parse_node(p, json_object_array_get_idx(arr, i), c, i)))
			return r;
		c->n_nodes = (unsigned)i + 1;
		sk_cj_pop(p, o);
	}

	if ((r = sk_cj_member_obj(p, root, "ports", false, k_ports, &o_ports)))
		return r;
	o = sk_cj_push_key(p, "ports");
	if ((r = sk_cj_opt_u32(p, o_ports, "agent", 1, 65535, 7710, &u)))
		return r;
	c->agent_port = (uint16_t)u;
	if ((r = sk_cj_opt_u32(p, o_ports, "heartbeat", 1, 65535, 7711, &u)))
		return r;
	c->hb_port = (uint16_t)u;
	if ((r = sk_cj_opt_u32(p, o_ports, "replication_base", 1024, 65000, 7800, &u)))
		return r;
	c->repl_port_base = (uint16_t)u;
	if (c->agent_port == c->hb_port) {
		sk_cj_push_key(p, "heartbeat");
		return sk_cj_fail(p, "port %u is also the agent port", c->hb_port);
	}
	sk_cj_pop(p, o);

	if ((r = sk_cj_member_obj(p, root, "heartbeat", false, k_hb, &o_hb)))
		return r;
	o = sk_cj_push_key(p, "heartbeat");
	if ((r = sk_cj_opt_u32(p, o_hb, "interval_ms", 20, 10000, 100, &c->hb_interval_ms)) ||
	    (r = sk_cj_opt_u32(p, o_hb, "timeout_ms", 60, 120000, 400, &c->hb_timeout_ms)))
		return r;
	if (c->hb_timeout_ms < 3 * c->hb_interval_ms) {
		sk_cj_push_key(p, "timeout_ms");
		return sk_cj_fail(p, "%u ms is less than 3 heartbeat intervals (%u ms)", c->hb_timeout_ms,
			    3 * c->hb_interval_ms);
	}
	sk_cj_pop(p, o);

	for (unsigned i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].witness) {
			if (c->lease_witness) {
				o = sk_cj_push_key(p, "nodes");
				sk_cj_push_idx(p, i);
				sk_cj_push_key(p, "role");
				return sk_cj_fail(p, "a second lease witness (also node '%s'); one "
						  "witness node per cluster", c->nodes[c->lease_witness - 1].name);
			}
			c->lease_witness = i + 1;
		}
	c->lease_ms = 1000;
	c->witness_port = 7712;
	if ((r = sk_cj_member_obj(p, root, "witness", false, k_witness, &o_w)))
		return r;
	if (o_w) {
		o = sk_cj_push_key(p, "witness");
		if ((r = sk_cj_member_array(p, o_w, "ping", false, 1, SK_CONF_MAX_PING, &arr, &n)))
			return r;
		for (size_t i = 0; arr && i < n; i++) {
			size_t o2 = sk_cj_push_key(p, "ping");

			sk_cj_push_idx(p, i);
			if ((r = sk_cj_to_addr(p, json_object_array_get_idx(arr, i), &c->ping[i])))
				return r;
			if (c->ping[i].family != AF_INET)
				return sk_cj_fail(p, "the ping witness is reached by ICMP echo over IPv4: "
						  "give an IPv4 address");
			c->n_ping = (unsigned)i + 1;
			sk_cj_pop(p, o2);
		}
		if ((r = sk_cj_opt_u32(p, o_w, "lease_ms", 500, 60000, 1000, &c->lease_ms)) ||
		    (r = sk_cj_opt_u32(p, o_w, "port", 1, 65535, 7712, &u)))
			return r;
		c->witness_port = (uint16_t)u;
		if (c->lease_ms < 2 * c->hb_interval_ms) {
			sk_cj_push_key(p, "lease_ms");
			return sk_cj_fail(p, "%u ms is shorter than 2 heartbeat intervals (%u ms)",
					  c->lease_ms, 2 * c->hb_interval_ms);
		}
		if (!c->n_ping && !c->lease_witness)
			return sk_cj_fail(p, "names no witness: give \"ping\": [addresses] or a node "
					  "with \"role\": \"witness\"");
		if (c->lease_witness && (c->witness_port == c->agent_port || c->witness_port == c->hb_port)) {
			sk_cj_push_key(p, "port");
			return sk_cj_fail(p, "port %u is also the agent or heartbeat port", c->witness_port);
		}
		sk_cj_pop(p, o);
	}
	c->has_witness = c->n_ping || c->lease_witness;

	if ((r = sk_cj_member_obj(p, root, "http", false, k_http, &o_w)))
		return r;
	if (o_w) {
		char lis[SK_CONF_ADDR_TEXT + 10], why[120];

		o = sk_cj_push_key(p, "http");
		if ((r = sk_cj_member_str(p, o_w, "listen", true, SK_CJ_PRINT, sizeof(lis) - 1, lis)))
			return r;
		if (sk_conf_parse_listen(lis, &c->http_addr, &c->http_port, why, sizeof(why)) < 0) {
			sk_cj_push_key(p, "listen");
			return sk_cj_fail(p, "%s", why);
		}
		c->has_http = true;
		sk_cj_pop(p, o);
	}
	return 0;
}

/*
 * Parse one document with fn into a zeroed scratch copy of `size` bytes, and
 * copy it to *out only if it is valid: a refused document leaves *out as it was.
 */
static int parse_doc(const char *buf, size_t len, const char *name, void *out, size_t size,
		     int (*fn)(struct sk_cj *, json_object *, void *), struct sk_conf_err *err)
{
	struct sk_cj p = {.err = err};
	json_object *root = NULL;
	void *scratch;
	int r;
	sk_cj_set_file(err, name);
	if ((r = sk_cj_parse_json(buf, len, err, &root)))
		return r;
	if (!(scratch = calloc(1, size))) {
		json_object_put(root);
		return -ENOMEM;
	}
	r = fn(&p, root, scratch);
	if (!r)
		memcpy(out, scratch, size);
	free(scratch);
	json_object_put(root);
	return r;
}

int sk_conf_cluster_parse(const char *buf, size_t len, const char *name, struct sk_cluster *out,
			  struct sk_conf_err *err)
{
	return parse_doc(buf, len, name, out, sizeof(*out), parse_cluster, err);
}

void sk_conf_cluster_free(struct sk_cluster *c)
{
	/* Everything is inline today; kept so callers need not change if that does. */
	if (c)
		memset(c, 0, sizeof(*c));
}

/* ---- userconfig.json ---- */

static const char *const k_module[] = {"name", "id", "kind", "nodes", "vip", "replication",
				       "checkers", "failover", "scripts", NULL};
static const char *const k_mnode[] = {"name", "weight", NULL};
static const char *const k_vip_mirror[] = {"addr", "prefix", "interface", NULL};
static const char *const k_vip_farm[] = {"addr", "prefix", "interface", "mac", "rule",
					 "ports", "other_ports", NULL};
static const char *const k_repl[] = {"dirs", "mode", "latency_budget_ms", "async_queue_mb", "encrypt", NULL};
static const char *const k_failover[] = {"restart_max", "window_s", NULL};
static const char *const k_script[] = {"timeout_s", NULL};
static const char *const w_kind[] = {"", "mirror", "farm", NULL};
static const char *const w_mode[] = {"sync", "semi-sync", "async", NULL};
static const char *const w_rule[] = {"client", "session", NULL};
static const char *const w_other[] = {"pass", "drop", NULL};
static const char *const w_action[] = {"restart", "failover", "stop", "ignore", "stopstart", NULL};
static const char *const w_check[] = {"", "process", "tcp", "ping", "interface", "script",
				      "module", NULL};
static const char *const w_script[] = {"prestart", "start_prim", "stop_prim", "start_both",
				       "stop_both", "prestop", "poststop", NULL};
/* Allowed keys per checker type (index = enum sk_check_type). */
static const char *const k_check[][10] = {
	[SK_CHECK_PROCESS] = {"type", "interval_ms", "timeout_ms", "failures", "action", "process"},
	[SK_CHECK_TCP] = {"type", "interval_ms", "timeout_ms", "failures", "action", "host", "port"},
	[SK_CHECK_PING] = {"type", "interval_ms", "timeout_ms", "failures", "action", "host"},
	[SK_CHECK_INTERFACE] = {"type", "interval_ms", "timeout_ms", "failures", "action", "interface"},
	[SK_CHECK_SCRIPT] = {"type", "interval_ms", "timeout_ms", "failures", "action", "path"},
	[SK_CHECK_MODULE] = {"type", "interval_ms", "timeout_ms", "failures", "action", "module"},
};

const char *sk_conf_script_name(enum sk_script s)
{
	return (unsigned)s < SK_SCRIPT__COUNT ? w_script[s] : "?";
}

const char *sk_conf_check_type_name(enum sk_check_type t)
{
	return t >= SK_CHECK_PROCESS && t <= SK_CHECK_MODULE ? w_check[t] : "?";
}

static int parse_mnode(struct sk_cj *p, json_object *v, struct sk_module *m, size_t i)
{
	struct sk_conf_mod_node *n = &m->nodes[i];
	int r;
	uint32_t w;
	if (json_object_is_type(v, json_type_string)) {
		if ((r = sk_cj_to_str(p, v, SK_CJ_HOST, SK_CONF_NODE_NAME_LEN - 1, n->name)))
			return r;
		n->weight = m->kind == SK_MOD_FARM ? SK_WEIGHT_DEFAULT : 0;
	} else {
		if ((r = sk_cj_want(p, v, json_type_object, "a node name or an object")) ||
		    (r = sk_cj_check_keys(p, v, k_mnode)) ||
		    (r = sk_cj_member_str(p, v, "name", true, SK_CJ_HOST, SK_CONF_NODE_NAME_LEN - 1, n->name)))
			return r;
		json_object *x;
		if (m->kind != SK_MOD_FARM && json_object_object_get_ex(v, "weight", &x)) {
			sk_cj_push_key(p, "weight");
			return sk_cj_fail(p, "'weight' is only for farm modules");
		}
		if ((r = sk_cj_opt_u32(p, v, "weight", SK_WEIGHT_MIN, SK_WEIGHT_MAX,
					 m->kind == SK_MOD_FARM ? SK_WEIGHT_DEFAULT : 0, &w)))
			return r;
		n->weight = (uint16_t)w;
	}
	for (size_t j = 0; j < i; j++)
		if (!strcmp(m->nodes[j].name, n->name))
			return sk_cj_fail(p, "duplicate node '%s' (also nodes[%zu])", n->name, j);
	return 0;
}

static int parse_mac(struct sk_cj *p, json_object *v, uint8_t mac[6])
{
	char s[18];
	unsigned b[6];
	int r, end = 0;
	if ((r = sk_cj_to_str(p, v, SK_CJ_PRINT, 17, s)))
		return r;
	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%n", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &end) != 6 ||
	    end != 17 || strspn(s, "0123456789abcdefABCDEF:") != 17)
		return sk_cj_fail(p, "'%s' is not a MAC address like 02:00:00:00:00:01", s);
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	if (mac[0] & 1)
		return sk_cj_fail(p, "%s is a multicast MAC; the virtual MAC must be unicast", s);
	if (!(mac[0] & 2))
		return sk_cj_fail(p, "%s is not locally administered (set bit 0x02 of the first byte, e.g. 02:...)", s);
	return 0;
}

static int parse_vip(struct sk_cj *p, json_object *vo, struct sk_module *m)
{
	struct sk_conf_vip *vip = &m->vip;
	json_object *arr;
	size_t n;
	uint32_t u;
	int r, e;
	if ((r = sk_cj_check_keys(p, vo, m->kind == SK_MOD_FARM ? k_vip_farm : k_vip_mirror)) ||
	    (r = sk_cj_member_addr(p, vo, "addr", true, &vip->addr)))
		return r;
	json_object *x;
	if ((r = sk_cj_get(p, vo, "prefix", true, &x)) ||
	    (r = sk_cj_opt_u32(p, vo, "prefix", 0, vip->addr.family == AF_INET ? 32 : 128, 0, &u)))
		return r;
	vip->prefix = (uint8_t)u;
	if ((r = sk_cj_member_str(p, vo, "interface", true, SK_CJ_PRINT, SK_CONF_IFNAME_LEN - 1, vip->ifname)))
		return r;
	if (strpbrk(vip->ifname, "/ :") || !strcmp(vip->ifname, ".") || !strcmp(vip->ifname, "..")) {
		sk_cj_push_key(p, "interface");
		return sk_cj_fail(p, "'%s' is not a valid interface name", vip->ifname);
	}
	m->has_vip = true;
	if (m->kind != SK_MOD_FARM)
		return 0;
	if ((r = sk_cj_get(p, vo, "mac", true, &x)))
		return r;
	size_t o = sk_cj_push_key(p, "mac");
	if ((r = parse_mac(p, x, vip->mac)))
		return r;
	sk_cj_pop(p, o);
	if ((r = sk_cj_member_enum(p, vo, "rule", false, w_rule, SK_LB_CLIENT, &e)))
		return r;
	vip->rule = (enum sk_lb_rule)e;
	if ((r = sk_cj_member_enum(p, vo, "other_ports", false, w_other, 0, &e)))
		return r;
	vip->other_ports_drop = e == 1;
	if ((r = sk_cj_member_array(p, vo, "ports", true, 1, SK_CONF_MAX_VIP_PORTS, &arr, &n)))
		return r;
	for (size_t i = 0; i < n; i++) {
		int64_t port;
		o = sk_cj_push_key(p, "ports");
		sk_cj_push_idx(p, i);
		if ((r = sk_cj_to_int(p, json_object_array_get_idx(arr, i), 1, 65535, &port)))
			return r;
		for (size_t j = 0; j < i; j++)
			if (vip->ports[j] == port)
				return sk_cj_fail(p, "duplicate port %u (also ports[%zu])", (unsigned)port, j);
		vip->ports[i] = (uint16_t)port;
		vip->n_ports = (unsigned)i + 1;
		sk_cj_pop(p, o);
	}
	return 0;
}

/* Is a inside b (or equal)? Both normalised absolute paths. */
static bool path_within(const char *a, const char *b)
{
	size_t lb = strlen(b);
	return !strncmp(a, b, lb) && (a[lb] == 0 || a[lb] == '/');
}

static int parse_repl(struct sk_cj *p, json_object *ro, struct sk_module *m)
{
	json_object *arr;
	size_t n;
	int r, e;
	if ((r = sk_cj_member_array(p, ro, "dirs", true, 1, SK_CONF_MAX_DIRS, &arr, &n)))
		return r;
	for (size_t i = 0; i < n; i++) {
		size_t o = sk_cj_push_key(p, "dirs");
		sk_cj_push_idx(p, i);
		if ((r = sk_cj_to_abs_path(p, json_object_array_get_idx(arr, i), false, m->dirs[i])))
			return r;
		for (size_t j = 0; j < i; j++)
			if (path_within(m->dirs[i], m->dirs[j]) || path_within(m->dirs[j], m->dirs[i]))
				return sk_cj_fail(p, "'%s' overlaps dirs[%zu] '%s'", m->dirs[i], j, m->dirs[j]);
		m->n_dirs = (unsigned)i + 1;
		sk_cj_pop(p, o);
	}
	if ((r = sk_cj_member_enum(p, ro, "mode", false, w_mode, SK_REPL_SYNC, &e)))
		return r;
	m->repl_mode = (enum sk_repl_mode)e;
	if ((r = sk_cj_opt_u32(p, ro, "latency_budget_ms", 10, 60000, 300, &m->latency_budget_ms)) ||
	    (r = sk_cj_opt_u32(p, ro, "async_queue_mb", 1, 65536, 64, &m->async_queue_mb)))
		return r;
	json_object *v;
	if ((r = sk_cj_get(p, ro, "encrypt", false, &v)) || !v)
		return r;
	size_t o = sk_cj_push_key(p, "encrypt");
	if ((r = sk_cj_want(p, v, json_type_boolean, "true or false")))
		return r;
	m->encrypt = json_object_get_boolean(v);
	sk_cj_pop(p, o);
	return 0;
}

static int parse_checker(struct sk_cj *p, json_object *v, struct sk_module *m, struct sk_conf_checker *ck)
{
	json_object *x;
	int r, e;
	if ((r = sk_cj_want(p, v, json_type_object, "an object")) ||
	    (r = sk_cj_member_enum(p, v, "type", true, w_check + 1, 0, &e)))
		return r;
	ck->type = (enum sk_check_type)(e + 1);
	if ((r = sk_cj_check_keys(p, v, k_check[ck->type])) ||
	    (r = sk_cj_opt_u32(p, v, "interval_ms", 100, 3600000, 5000, &ck->interval_ms)) ||
	    (r = sk_cj_opt_u32(p, v, "timeout_ms", 10, ck->interval_ms, ck->interval_ms < 2000 ? ck->interval_ms : 2000,
			 &ck->timeout_ms)) ||
	    (r = sk_cj_opt_u32(p, v, "failures", 1, 100, 3, &ck->failures)) ||
	    (r = sk_cj_member_enum(p, v, "action", false, w_action, SK_ACT_RESTART, &e)))
		return r;
	ck->action = (enum sk_check_action)e;
	switch (ck->type) {
	case SK_CHECK_PROCESS:
		return sk_cj_member_str(p, v, "process", true, SK_CJ_PRINT, 255, ck->arg);
	case SK_CHECK_TCP: {
		uint32_t port;
		if ((r = sk_cj_member_addr(p, v, "host", true, &ck->host)) || (r = sk_cj_get(p, v, "port", true, &x)) ||
		    (r = sk_cj_opt_u32(p, v, "port", 1, 65535, 0, &port)))
			return r;
		ck->port = (uint16_t)port;
		return 0;
	}
	case SK_CHECK_PING:
		return sk_cj_member_addr(p, v, "host", true, &ck->host);
	case SK_CHECK_INTERFACE:
		return sk_cj_member_str(p, v, "interface", true, SK_CJ_PRINT, SK_CONF_IFNAME_LEN - 1, ck->arg);
	case SK_CHECK_SCRIPT:
		if ((r = sk_cj_member_str(p, v, "path", true, SK_CJ_PRINT, SK_CONF_PATH_LEN - 1, ck->arg)))
			return r;
		/* A relative script lives in the module's bin/ and must stay there. */
		if (ck->arg[0] != '/' && (!strcmp(ck->arg, "..") || !strncmp(ck->arg, "../", 3) ||
					  strstr(ck->arg, "/../") || (strlen(ck->arg) >= 3 &&
					  !strcmp(ck->arg + strlen(ck->arg) - 3, "/..")))) {
			sk_cj_push_key(p, "path");
			return sk_cj_fail(p, "a relative script path must not contain '..'");
		}
		return 0;
	case SK_CHECK_MODULE:
		if ((r = sk_cj_member_str(p, v, "module", true, SK_CJ_NAME, SK_CONF_NAME_LEN - 1, ck->arg)))
			return r;
		if (!strcmp(ck->arg, m->name)) {
			sk_cj_push_key(p, "module");
			return sk_cj_fail(p, "a module cannot depend on itself");
		}
		return 0;
	}
	return 0;
}

static int parse_module(struct sk_cj *p, json_object *root, void *out)
{
	struct sk_module *m = out;
	json_object *arr, *x;
	size_t n;
	int r, e;
	if ((r = sk_cj_check_keys(p, root, k_module)) ||
	    (r = sk_cj_member_str(p, root, "name", true, SK_CJ_NAME, SK_CONF_NAME_LEN - 1, m->name)))
		return r;
	if ((r = sk_cj_get(p, root, "id", true, &x)) || (r = sk_cj_opt_u32(p, root, "id", 1, 65535, 0, &m->id)))
		return r;
	if ((r = sk_cj_member_enum(p, root, "kind", true, w_kind + 1, 0, &e)))
		return r;
	m->kind = (enum sk_mod_kind)(e + 1);
	bool farm = m->kind == SK_MOD_FARM;

	if ((r = sk_cj_member_array(p, root, "nodes", true, farm ? 2 : 1, SK_CONF_MAX_NODES, &arr, &n)))
		return r;
	if (!farm && n != 2) {
		sk_cj_push_key(p, "nodes");
		return sk_cj_fail(p, "a mirror module has exactly 2 nodes, got %zu", n);
	}
	for (size_t i = 0; i < n; i++) {
		size_t o = sk_cj_push_key(p, "nodes");
		sk_cj_push_idx(p, i);
		if ((r = parse_mnode(p, json_object_array_get_idx(arr, i), m, i)))
			return r;
		m->n_nodes = (unsigned)i + 1;
		sk_cj_pop(p, o);
	}

	if ((r = sk_cj_member_obj(p, root, "vip", farm, NULL, &x)))
		return r;
	if (x) {
		size_t o = sk_cj_push_key(p, "vip");
		if ((r = parse_vip(p, x, m)))
			return r;
		sk_cj_pop(p, o);
	}

	if (farm && json_object_object_get_ex(root, "replication", &x)) {
		sk_cj_push_key(p, "replication");
		return sk_cj_fail(p, "replication is only for mirror modules");
	}
	m->repl_mode = SK_REPL_SYNC;
	m->latency_budget_ms = 300;
	m->async_queue_mb = 64;
	m->encrypt = true;
	if ((r = sk_cj_member_obj(p, root, "replication", !farm, k_repl, &x)))
		return r;
	if (x) {
		size_t o = sk_cj_push_key(p, "replication");
		if ((r = parse_repl(p, x, m)))
			return r;
		sk_cj_pop(p, o);
	}

	if ((r = sk_cj_member_array(p, root, "checkers", false, 0, SK_CONF_MAX_CHECKERS, &arr, &n)))
		return r;
	for (size_t i = 0; i < n; i++) {
		size_t o = sk_cj_push_key(p, "checkers");
		sk_cj_push_idx(p, i);
		if ((r = parse_checker(p, json_object_array_get_idx(arr, i), m, &m->checkers[i])))
			return r;
		m->n_checkers = (unsigned)i + 1;
		sk_cj_pop(p, o);
	}

	if ((r = sk_cj_member_obj(p, root, "failover", false, k_failover, &x)))
		return r;
	size_t o = sk_cj_push_key(p, "failover");
	if ((r = sk_cj_opt_u32(p, x, "restart_max", 0, 100, 3, &m->restart_max)) ||
	    (r = sk_cj_opt_u32(p, x, "window_s", 1, 86400, 600, &m->restart_window_s)))
		return r;
	sk_cj_pop(p, o);

	if ((r = sk_cj_member_obj(p, root, "scripts", false, w_script, &x)))
		return r;
	for (int s = 0; x && s < SK_SCRIPT__COUNT; s++) {
		json_object *so;
		o = sk_cj_push_key(p, "scripts");
		if ((r = sk_cj_member_obj(p, x, w_script[s], false, k_script, &so)))
			return r;
		if (so) {
			size_t o2 = sk_cj_push_key(p, w_script[s]);
			if ((r = sk_cj_opt_u32(p, so, "timeout_s", 1, 3600, 60, &m->scripts[s].timeout_s)))
				return r;
			m->scripts[s].enabled = true;
			sk_cj_pop(p, o2);
		}
		sk_cj_pop(p, o);
	}
	return 0;
}

int sk_conf_module_parse(const char *buf, size_t len, const char *name, struct sk_module *out,
			 struct sk_conf_err *err)
{
	return parse_doc(buf, len, name, out, sizeof(*out), parse_module, err);
}

void sk_conf_module_free(struct sk_module *m)
{
	if (m)
		memset(m, 0, sizeof(*m));
}

/* ---- cross-checks and lookups ---- */

const struct sk_conf_node *sk_conf_node_by_name(const struct sk_cluster *c, const char *name)
{
	for (unsigned i = 0; i < c->n_nodes; i++)
		if (!strcmp(c->nodes[i].name, name))
			return &c->nodes[i];
	return NULL;
}

const struct sk_conf_node *sk_conf_node_by_id(const struct sk_cluster *c, unsigned id)
{
	for (unsigned i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].id == id)
			return &c->nodes[i];
	return NULL;
}

int sk_conf_network_index(const struct sk_cluster *c, const char *name)
{
	for (unsigned i = 0; i < c->n_networks; i++)
		if (!strcmp(c->networks[i], name))
			return (int)i;
	return -ENOENT;
}

socklen_t sk_conf_sockaddr(const struct sk_conf_addr *a, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		memcpy(&s6->sin6_addr, a->ip, 16);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	memcpy(&s4->sin_addr, a->ip, 4);
	return sizeof(*s4);
}

int sk_conf_module_check(const struct sk_cluster *c, const struct sk_module *m,
			 struct sk_conf_err *err)
{
	struct sk_cj p = {.err = err};
	err->path[0] = err->msg[0] = 0;
	for (unsigned i = 0; i < m->n_nodes; i++) {
		const struct sk_conf_node *cn = sk_conf_node_by_name(c, m->nodes[i].name);

		if (cn && cn->witness) {
			sk_cj_push_key(&p, "nodes");
			sk_cj_push_idx(&p, i);
			return sk_cj_fail(&p, "node '%s' is the cluster's lease witness: it runs no module",
					  cn->name);
		}
		if (cn)
			continue;
		char list[128] = "";
		for (unsigned j = 0; j < c->n_nodes && strlen(list) < sizeof(list) - 1; j++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", j ? ", " : "",
				 c->nodes[j].name);
		sk_cj_push_key(&p, "nodes");
		sk_cj_push_idx(&p, i);
		return sk_cj_fail(&p, "node '%s' is not in cluster '%s' (nodes are: %s)", m->nodes[i].name,
			    c->name, list);
	}
	unsigned port = (unsigned)c->repl_port_base + m->id;
	if (m->kind == SK_MOD_MIRROR &&
	    (port > 65535 || port == c->agent_port || port == c->hb_port)) {
		sk_cj_push_key(&p, "id");
		return sk_cj_fail(&p, "replication port %u (replication_base %u + id) is %s", port,
			    c->repl_port_base, port > 65535 ? "over 65535" : "the agent or heartbeat port");
	}
	if (m->has_vip) {
		for (unsigned i = 0; i < c->n_nodes; i++)
			for (unsigned w = 0; w < c->n_networks; w++)
				if (c->nodes[i].addr[w].family == m->vip.addr.family &&
				    !memcmp(c->nodes[i].addr[w].ip, m->vip.addr.ip, 16)) {
					sk_cj_push_key(&p, "vip");
					sk_cj_push_key(&p, "addr");
					return sk_cj_fail(&p, "%s is node '%s''s own address on '%s'",
						    m->vip.addr.text, c->nodes[i].name, c->networks[w]);
				}
	}
	return 0;
}

/* ---- files ---- */

int sk_conf_cluster_load(const char *path, struct sk_cluster *out, struct sk_conf_err *err)
{
	char *buf;
	size_t len;
	sk_cj_set_file(err, path);
	int r = sk_cj_read_file(path, &buf, &len, err);
	if (r)
		return r;
	r = sk_conf_cluster_parse(buf, len, path, out, err);
	free(buf);
	return r;
}

int sk_conf_module_load(const char *path, struct sk_module *out, struct sk_conf_err *err)
{
	char *buf;
	size_t len;
	sk_cj_set_file(err, path);
	int r = sk_cj_read_file(path, &buf, &len, err);
	if (r)
		return r;
	r = sk_conf_module_parse(buf, len, path, out, err);
	free(buf);
	return r;
}

int sk_conf_load_secret(const char *path, struct sk_key *master, struct sk_conf_err *err)
{
	struct sk_cj p = {.err = err};
	uint8_t buf[SK_CONF_SECRET_MAX + 1];
	struct stat st;
	int r;
	sk_cj_set_file(err, path);
	/* O_NOFOLLOW: the mode and owner checked must be the secret's own, not a link's target's. */
	int fd = sk_cj_open_regular(&p, path, O_NOFOLLOW, &st);
	if (fd < 0)
		return fd;
	if ((st.st_mode & 07777) != 0600) {
		r = sk_cj_fail(&p, "mode is %04o, must be 0600 (chmod 600 %s)", st.st_mode & 07777, path);
		r = -EPERM;
		goto out;
	}
	if (st.st_uid != geteuid()) {
		sk_cj_fail(&p, "owned by uid %u, must be owned by uid %u", st.st_uid, geteuid());
		r = -EPERM;
		goto out;
	}
	long n = sk_cj_read_bounded(&p, fd, buf, sizeof(buf));
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	if (n < SK_PROTO_SECRET_MIN || n > SK_CONF_SECRET_MAX) {
		r = sk_cj_fail(&p, "secret is %ld bytes, must be %u..%u", n, SK_PROTO_SECRET_MIN,
			 SK_CONF_SECRET_MAX);
		goto out;
	}
	const char *weak = sk_proto_secret_weak(buf, (size_t)n);
	if (weak) {
		r = sk_cj_fail(&p, "weak secret (%s); %s", weak, SK_PROTO_SECRET_ADVICE);
		goto out;
	}
	r = sk_proto_master_key(master, buf, (size_t)n);
	if (r)
		sk_cj_fail(&p, "cannot derive the master key: %s", strerror(-r));
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return r;
}
