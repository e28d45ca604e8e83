/* test/unit/test_conf.c: libsk/conf: the examples load, and every kind of bad input gets its path and message. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"

static struct sk_conf_err err;

/* Fixture paths come from SK_SRC (set by meson's test_env). */
static const char *src(const char *rel)
{
	static char buf[4][1024];
	static int i;
	const char *root = getenv("SK_SRC");
	cr_assert(root, "SK_SRC must point at the source tree");
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", root, rel);
	return buf[i];
}

/* Test JSON is written with single quotes for readability; turn them into double quotes. */
static char *q(const char *s)
{
	char *d = strdup(s);
	for (char *p = d; *p; p++)
		if (*p == '\'')
			*p = '"';
	return d;
}

static bool untouched(const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i] != 0xab)
			return false;
	return true;
}

static void check_err(int r, const char *path, const char *msg)
{
	cr_assert_lt(r, 0, "expected a refusal (path %s)", path);
	cr_assert_str_eq(err.path, path, "path: got '%s' (msg '%s'), want '%s'", err.path, err.msg, path);
	cr_assert(strstr(err.msg, msg), "msg '%s' lacks '%s'", err.msg, msg);
}

static void cluster_err(const char *json, const char *path, const char *msg)
{
	struct sk_cluster *c = malloc(sizeof(*c));
	memset(c, 0xab, sizeof(*c));
	char *j = q(json);
	int r = sk_conf_cluster_parse(j, strlen(j), "t.json", c, &err);
	check_err(r, path, msg);
	cr_assert_str_eq(err.file, "t.json");
	cr_assert(untouched(c, sizeof(*c)), "refused parse wrote into the output");
	free(j);
	free(c);
}

static void module_err(const char *json, const char *path, const char *msg)
{
	struct sk_module *m = malloc(sizeof(*m));
	memset(m, 0xab, sizeof(*m));
	char *j = q(json);
	int r = sk_conf_module_parse(j, strlen(j), "t.json", m, &err);
	check_err(r, path, msg);
	cr_assert(untouched(m, sizeof(*m)), "refused parse wrote into the output");
	free(j);
	free(m);
}

#define CL_HEAD "'cluster':'c','secret_file':'/s','networks':['lan'],"
#define CL_NODES "'nodes':[{'name':'a','id':1,'addresses':{'lan':'192.0.2.1'}},{'name':'b','id':2,'addresses':{'lan':'192.0.2.2'}}]"
#define MIRROR(extra) "{'name':'m','id':1,'kind':'mirror','nodes':['a','b'],'replication':{'dirs':['/srv/m']}" extra "}"
#define MIRROR_REPL(x) "{'name':'m','id':1,'kind':'mirror','nodes':['a','b'],'replication':{" x "}}"
#define FARM_VIP "'vip':{'addr':'192.0.2.9','prefix':24,'interface':'eth0','mac':'02:00:00:00:00:09','ports':[80]}"
#define FARM(extra) "{'name':'f','id':2,'kind':'farm','nodes':['a','b']," FARM_VIP extra "}"

/* ---- valid documents ---- */

Test(conf_ok, example_cluster)
{
	struct sk_cluster c;
	cr_assert_eq(sk_conf_cluster_load(src("examples/cluster.json"), &c, &err), 0, "%s", err.msg);
	cr_assert_str_eq(c.name, "demo");
	cr_assert_eq(c.n_networks, 2);
	cr_assert_eq(c.n_nodes, 3);
	cr_assert_str_eq(c.nodes[2].name, "node3");
	cr_assert_eq(c.nodes[2].id, 3);
	cr_assert_eq(c.nodes[1].addr[0].family, AF_INET);
	cr_assert_str_eq(c.nodes[1].addr[0].text, "10.99.0.2");
	cr_assert_eq(c.nodes[1].addr[1].family, AF_INET6);
	cr_assert_str_eq(c.nodes[1].addr[1].text, "fd99::2");
	cr_assert(c.has_witness);
	cr_assert_eq(c.witness_port, 7712);
	cr_assert_eq(c.n_ping, 1);
	cr_assert_str_eq(c.ping[0].text, "10.99.0.254");
	cr_assert_eq(c.lease_ms, 1000);
	cr_assert_eq(c.lease_witness, 0);
	cr_assert_eq(sk_conf_node_by_id(&c, 2), &c.nodes[1]);
	cr_assert_eq(sk_conf_node_by_name(&c, "node3"), &c.nodes[2]);
	cr_assert_null(sk_conf_node_by_name(&c, "node4"));
	cr_assert_eq(sk_conf_network_index(&c, "backup"), 1);
	struct sockaddr_storage ss;
	cr_assert_eq(sk_conf_sockaddr(&c.nodes[0].addr[1], 7711, &ss), sizeof(struct sockaddr_in6));
	sk_conf_cluster_free(&c);
	sk_conf_cluster_free(NULL);
}

Test(conf_ok, cluster_defaults)
{
	struct sk_cluster c;
	cr_assert_eq(sk_conf_cluster_load(src("test/unit/data/conf/cluster_min.json"), &c, &err), 0,
		     "%s", err.msg);
	cr_assert_eq(c.agent_port, 7710);
	cr_assert_eq(c.hb_port, 7711);
	cr_assert_eq(c.repl_port_base, 7800);
	cr_assert_eq(c.hb_interval_ms, 100);
	cr_assert_eq(c.hb_timeout_ms, 400);
	cr_assert(!c.has_witness);
	cr_assert_str_eq(c.nodes[1].addr[0].text, "2001:db8::2");
}

Test(conf_ok, example_mirror)
{
	struct sk_module m;
	struct sk_cluster c;
	cr_assert_eq(sk_conf_module_load(src("examples/mirror/userconfig.json"), &m, &err), 0, "%s", err.msg);
	cr_assert_str_eq(m.name, "mirror");
	cr_assert_eq(m.kind, SK_MOD_MIRROR);
	cr_assert_eq(m.n_nodes, 2);
	cr_assert_str_eq(m.nodes[0].name, "node1");
	cr_assert(m.has_vip);
	cr_assert_eq(m.vip.prefix, 24);
	cr_assert_str_eq(m.vip.ifname, "eth0");
	cr_assert_eq(m.n_dirs, 1);
	cr_assert_str_eq(m.dirs[0], "/srv/mirror/data");
	cr_assert_eq(m.repl_mode, SK_REPL_SYNC);
	cr_assert_eq(m.latency_budget_ms, 300);
	cr_assert(m.encrypt);
	cr_assert_eq(m.n_checkers, 5);
	cr_assert_eq(m.checkers[1].type, SK_CHECK_TCP);
	cr_assert_eq(m.checkers[1].port, 8080);
	cr_assert_eq(m.checkers[1].timeout_ms, 1000);
	cr_assert_eq(m.checkers[3].failures, 5);
	cr_assert_eq(m.checkers[3].action, SK_ACT_FAILOVER);
	cr_assert_eq(m.checkers[0].interval_ms, 5000);
	cr_assert_eq(m.restart_max, 3);
	cr_assert(m.scripts[SK_SCRIPT_START_PRIM].enabled);
	cr_assert_eq(m.scripts[SK_SCRIPT_START_PRIM].timeout_s, 120);
	cr_assert(m.scripts[SK_SCRIPT_POSTSTOP].enabled);
	cr_assert_eq(m.scripts[SK_SCRIPT_POSTSTOP].timeout_s, 60);
	cr_assert(!m.scripts[SK_SCRIPT_START_BOTH].enabled);
	cr_assert_eq(sk_conf_cluster_load(src("examples/cluster.json"), &c, &err), 0);
	cr_assert_eq(sk_conf_module_check(&c, &m, &err), 0, "%s", err.msg);
	sk_conf_module_free(&m);
	sk_conf_module_free(NULL);
}

Test(conf_ok, example_farm)
{
	struct sk_module m;
	struct sk_cluster c;
	cr_assert_eq(sk_conf_module_load(src("examples/farm/userconfig.json"), &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.kind, SK_MOD_FARM);
	cr_assert_eq(m.n_nodes, 3);
	cr_assert_eq(m.nodes[2].weight, 200);
	cr_assert_eq(m.vip.mac[0], 0x02);
	cr_assert_eq(m.vip.mac[5], 0x02);
	cr_assert_eq(m.vip.rule, SK_LB_CLIENT);
	cr_assert_eq(m.vip.n_ports, 2);
	cr_assert_eq(m.vip.ports[1], 443);
	cr_assert(!m.vip.other_ports_drop);
	cr_assert_eq(m.n_dirs, 0);
	cr_assert_eq(m.checkers[1].type, SK_CHECK_MODULE);
	cr_assert_str_eq(m.checkers[1].arg, "mirror");
	cr_assert_eq(sk_conf_cluster_load(src("examples/cluster.json"), &c, &err), 0);
	cr_assert_eq(sk_conf_module_check(&c, &m, &err), 0, "%s", err.msg);
}

Test(conf_ok, farm_defaults_and_ipv6)
{
	char *j = q("{'name':'f','id':2,'kind':'farm','nodes':['a',{'name':'b'}],'vip':{'addr':'2001:db8::9',"
		    "'prefix':64,'interface':'eth0','mac':'06:00:00:00:00:09','rule':'session','ports':[80],"
		    "'other_ports':'drop'}}");
	struct sk_module m;
	cr_assert_eq(sk_conf_module_parse(j, strlen(j), "t", &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.nodes[0].weight, 100);
	cr_assert_eq(m.nodes[1].weight, 100);
	cr_assert_eq(m.vip.addr.family, AF_INET6);
	cr_assert_eq(m.vip.prefix, 64);
	cr_assert_eq(m.vip.rule, SK_LB_SESSION);
	cr_assert(m.vip.other_ports_drop);
	free(j);
}

Test(conf_ok, dirs_normalised)
{
	char *j = q(MIRROR_REPL("'dirs':['//srv//a/','/srv/ab'],'mode':'semi-sync'"));
	struct sk_module m;
	cr_assert_eq(sk_conf_module_parse(j, strlen(j), "t", &m, &err), 0, "%s", err.msg);
	cr_assert_str_eq(m.dirs[0], "/srv/a");
	cr_assert_str_eq(m.dirs[1], "/srv/ab");
	cr_assert_eq(m.repl_mode, SK_REPL_SEMI_SYNC);
	cr_assert(m.encrypt, "encryption is on unless turned off");
	free(j);
}

Test(conf_ok, encrypt_false_only_explicitly)
{
	char *j = q(MIRROR_REPL("'dirs':['/srv/a'],'encrypt':false"));
	struct sk_module m;
	cr_assert_eq(sk_conf_module_parse(j, strlen(j), "t", &m, &err), 0, "%s", err.msg);
	cr_assert(!m.encrypt);
	free(j);
}
Test(conf_module, encrypt_not_bool) { module_err(MIRROR_REPL("'dirs':['/srv/a'],'encrypt':'no'"), "replication.encrypt", "expected true or false, got string"); }

/* ---- JSON and file level ---- */

Test(conf_json, invalid_json_has_line_and_column)
{
	struct sk_cluster c;
	int r = sk_conf_cluster_load(src("test/unit/data/conf/cluster_bad_json.json"), &c, &err);
	check_err(r, "", "invalid JSON at line 3, column");
	cr_assert(strstr(err.file, "cluster_bad_json.json"));
}

Test(conf_json, truncated) { cluster_err("{'cluster':'c'", "", "unexpected end of input"); }
Test(conf_json, empty) { cluster_err("", "", "unexpected end of input"); }
Test(conf_json, trailing) { cluster_err("{} x", "", "line 1, column 4"); }
Test(conf_json, not_object) { cluster_err("['a']", "", "expected a JSON object at the top level"); }
Test(conf_json, comments_refused) { cluster_err("{/* hi */}", "", "invalid JSON"); }

Test(conf_json, duplicate_key) { module_err(MIRROR(",\n'kind':'farm'"), "kind", "duplicate key 'kind' (again at line 2, column 1)"); }

Test(conf_json, duplicate_nested_key)
{
	cluster_err("{" CL_HEAD "'nodes':[{'name':'a','id':1,'addresses':{'lan':'192.0.2.1'}},"
		    "{'name':'b','id':2,'addresses':{'lan':'192.0.2.2','lan':'192.0.2.3'}}]}",
		    "nodes[1].addresses.lan", "duplicate key 'lan'");
}

Test(conf_json, same_key_in_sibling_objects_ok)
{
	char *j = q("{" CL_HEAD CL_NODES "}");
	struct sk_cluster c;
	cr_assert_eq(sk_conf_cluster_parse(j, strlen(j), "t", &c, &err), 0, "%s", err.msg);
	free(j);
}

Test(conf_json, nul_byte)
{
	struct sk_cluster c;
	cr_assert_lt(sk_conf_cluster_parse("{ \0 }", 5, "t", &c, &err), 0);
	cr_assert(strstr(err.msg, "NUL byte"), "%s", err.msg);
}

Test(conf_json, too_large)
{
	size_t n = SK_CONF_MAX_FILE + 1;
	char *b = malloc(n);
	memset(b, ' ', n);
	b[0] = '{';
	b[n - 1] = '}';
	struct sk_module m;
	cr_assert_eq(sk_conf_module_parse(b, n, "t", &m, &err), -EFBIG);
	cr_assert(strstr(err.msg, "file too large"), "%s", err.msg);
	free(b);
}

Test(conf_json, too_deep)
{
	char b[200];
	memset(b, '[', 100);
	memset(b + 100, ']', 100);
	struct sk_cluster c;
	cr_assert_lt(sk_conf_cluster_parse(b, sizeof(b), "t", &c, &err), 0);
	cr_assert(strstr(err.msg, "invalid JSON"), "%s", err.msg);
}

Test(conf_file, missing_file)
{
	struct sk_cluster c;
	cr_assert_eq(sk_conf_cluster_load("/nonexistent/cluster.json", &c, &err), -ENOENT);
	cr_assert(strstr(err.msg, "cannot open"));
	cr_assert_str_eq(err.file, "/nonexistent/cluster.json");
}

Test(conf_file, directory_refused)
{
	struct sk_module m;
	cr_assert_lt(sk_conf_module_load(src("examples"), &m, &err), 0);
	cr_assert(strstr(err.msg, "not a regular file"), "%s", err.msg);
}

Test(conf_file, formatter)
{
	char buf[600];
	cluster_err("{" CL_HEAD CL_NODES ",'vipp':1}", "vipp", "unknown key");
	cr_assert_str_eq(sk_conf_err_str(&err, buf, sizeof(buf)), "t.json: vipp: unknown key 'vipp'");
	cluster_err("{}", "", "missing");
	cr_assert_str_eq(sk_conf_err_str(&err, buf, sizeof(buf)), "t.json: missing required key 'cluster'");
}

/* ---- cluster.json content ---- */

Test(conf_cluster, unknown_key_suggests)
{
	struct sk_cluster c;
	check_err(sk_conf_cluster_load(src("test/unit/data/conf/cluster_typo.json"), &c, &err), "hearbeat",
		  "unknown key 'hearbeat' (did you mean 'heartbeat'?)");
}

Test(conf_cluster, missing_key) { cluster_err("{" CL_HEAD "'x':1}", "x", "unknown key 'x'"); }
Test(conf_cluster, missing_nodes) { cluster_err("{'cluster':'c','secret_file':'/s','networks':['lan']}", "", "missing required key 'nodes'"); }
Test(conf_cluster, bad_name) { cluster_err("{'cluster':'Cx'}", "cluster", "character 1 is not allowed"); }
Test(conf_cluster, wrong_type) { cluster_err("{" CL_HEAD "'nodes':[{'name':'a','id':'1'}]}", "nodes[0].id", "expected an integer, got string"); }
Test(conf_cluster, float_refused) { cluster_err("{" CL_HEAD "'nodes':[{'name':'a','id':1.5}]}", "nodes[0].id", "expected an integer, got double"); }
Test(conf_cluster, id_range) { cluster_err("{" CL_HEAD "'nodes':[{'name':'a','id':64}]}", "nodes[0].id", "64 is out of range 1..63"); }
Test(conf_cluster, id_zero) { cluster_err("{" CL_HEAD "'nodes':[{'name':'a','id':0}]}", "nodes[0].id", "out of range"); }
Test(conf_cluster, secret_relative) { cluster_err("{'cluster':'c','secret_file':'etc/s'}", "secret_file", "must be an absolute path"); }
Test(conf_cluster, no_networks) { cluster_err("{'cluster':'c','secret_file':'/s','networks':[]}", "networks", "has 0 entries, must have 1..4"); }
Test(conf_cluster, dup_network) { cluster_err("{'cluster':'c','secret_file':'/s','networks':['lan','lan']}", "networks[1]", "duplicate network 'lan'"); }

Test(conf_cluster, dup_id)
{
	cluster_err("{" CL_HEAD "'nodes':[{'name':'a','id':1,'addresses':{'lan':'192.0.2.1'}},"
		    "{'name':'b','id':1,'addresses':{'lan':'192.0.2.2'}}]}", "nodes[1].id", "duplicate node id 1 (also nodes[0])");
}

Test(conf_cluster, dup_name)
{
	cluster_err("{" CL_HEAD "'nodes':[{'name':'a','id':1,'addresses':{'lan':'192.0.2.1'}},"
		    "{'name':'a','id':2,'addresses':{'lan':'192.0.2.2'}}]}", "nodes[1].name", "duplicate node name 'a'");
}

Test(conf_cluster, dup_addr)
{
	cluster_err("{" CL_HEAD "'nodes':[{'name':'a','id':1,'addresses':{'lan':'192.0.2.1'}},"
		    "{'name':'b','id':2,'addresses':{'lan':'192.0.2.1'}}]}", "nodes[1].addresses.lan", "duplicate address 192.0.2.1");
}

Test(conf_cluster, bad_addr)
{
	cluster_err("{" CL_HEAD "'nodes':[{'name':'a','id':1,'addresses':{'lan':'192.0.2.300'}}]}",
		    "nodes[0].addresses.lan", "'192.0.2.300' is not an IPv4 or IPv6 address");
}

Test(conf_cluster, missing_addr)
{
	cluster_err("{'cluster':'c','secret_file':'/s','networks':['lan','backup'],'nodes':[{'name':'a','id':1,"
		    "'addresses':{'lan':'192.0.2.1'}}]}", "nodes[0].addresses", "missing the address on network 'backup'");
}

Test(conf_cluster, unknown_network)
{
	cluster_err("{" CL_HEAD "'nodes':[{'name':'a','id':1,'addresses':{'lan':'192.0.2.1','wan':'192.0.2.7'}}]}",
		    "nodes[0].addresses.wan", "unknown network 'wan' (networks are: lan)");
}

Test(conf_cluster, hb_timeout_short) { cluster_err("{" CL_HEAD CL_NODES ",'heartbeat':{'interval_ms':500}}", "heartbeat.timeout_ms", "less than 3 heartbeat intervals"); }
Test(conf_cluster, hb_interval_range) { cluster_err("{" CL_HEAD CL_NODES ",'heartbeat':{'interval_ms':5}}", "heartbeat.interval_ms", "5 is out of range 20..10000"); }
Test(conf_cluster, port_range) { cluster_err("{" CL_HEAD CL_NODES ",'ports':{'agent':70000}}", "ports.agent", "out of range 1..65535"); }
Test(conf_cluster, port_clash) { cluster_err("{" CL_HEAD CL_NODES ",'ports':{'agent':9000,'heartbeat':9000}}", "ports.heartbeat", "also the agent port"); }
Test(conf_cluster, ports_typo) { cluster_err("{" CL_HEAD CL_NODES ",'ports':{'agnet':9000}}", "ports.agnet", "did you mean 'agent'"); }
#define CL_WNODES "'nodes':[{'name':'a','id':1,'addresses':{'lan':'192.0.2.1'}},{'name':'b','id':2,'addresses':{'lan':'192.0.2.2'}}," \
	"{'name':'w','id':3,'role':'witness','addresses':{'lan':'192.0.2.3'}}]"
Test(conf_cluster, witness_ping_addr) { cluster_err("{" CL_HEAD CL_NODES ",'witness':{'ping':['host.example']}}", "witness.ping[0]", "not an IPv4 or IPv6"); }
Test(conf_cluster, witness_ping_v6) { cluster_err("{" CL_HEAD CL_NODES ",'witness':{'ping':['2001:db8::1']}}", "witness.ping[0]", "give an IPv4 address"); }
Test(conf_cluster, witness_ping_many) { cluster_err("{" CL_HEAD CL_NODES ",'witness':{'ping':['192.0.2.5','192.0.2.6','192.0.2.7','192.0.2.8','192.0.2.9']}}", "witness.ping", "must have 1..4"); }
Test(conf_cluster, witness_none) { cluster_err("{" CL_HEAD CL_NODES ",'witness':{}}", "witness", "names no witness"); }
Test(conf_cluster, witness_old_key) { cluster_err("{" CL_HEAD CL_NODES ",'witness':{'address':'192.0.2.5'}}", "witness.address", "unknown key"); }
Test(conf_cluster, witness_lease_range) { cluster_err("{" CL_HEAD CL_WNODES ",'witness':{'lease_ms':100}}", "witness.lease_ms", "out of range 500..60000"); }
Test(conf_cluster, witness_lease_vs_hb) { cluster_err("{" CL_HEAD CL_WNODES ",'heartbeat':{'interval_ms':1000,'timeout_ms':3000},'witness':{'lease_ms':1500}}", "witness.lease_ms", "shorter than 2 heartbeat intervals"); }
Test(conf_cluster, witness_port_clash) { cluster_err("{" CL_HEAD CL_WNODES ",'witness':{'port':7711}}", "witness.port", "also the agent or heartbeat port"); }
Test(conf_cluster, witness_role_bad) { cluster_err("{" CL_HEAD "'nodes':[{'name':'a','id':1,'role':'judge','addresses':{'lan':'192.0.2.1'}}]}", "nodes[0].role", "'judge' is not one of 'node', 'witness'"); }
Test(conf_cluster, witness_two)
{
	cluster_err("{" CL_HEAD "'nodes':[{'name':'a','id':1,'role':'witness','addresses':{'lan':'192.0.2.1'}},"
		    "{'name':'b','id':2,'role':'witness','addresses':{'lan':'192.0.2.2'}}]}",
		    "nodes[1].role", "a second lease witness (also node 'a')");
}
Test(conf_ok, witness_node)
{
	struct sk_cluster c;
	const char *j = "{'cluster':'c','secret_file':'/s','networks':['lan']," CL_WNODES ",'witness':{'ping':['192.0.2.254'],'lease_ms':3000}}";
	char buf[1024];
	size_t n = strlen(j);
	for (size_t i = 0; i <= n; i++)
		buf[i] = j[i] == '\'' ? '"' : j[i];
	cr_assert_eq(sk_conf_cluster_parse(buf, n, "c.json", &c, &err), 0, "%s: %s", err.path, err.msg);
	cr_assert(c.has_witness);
	cr_assert_eq(c.lease_witness, 3);
	cr_assert(c.nodes[2].witness);
	cr_assert(!c.nodes[0].witness);
	cr_assert_eq(c.lease_ms, 3000);
	cr_assert_eq(c.witness_port, 7712);
	cr_assert_eq(c.n_ping, 1);
	/* a witness node without a "witness" object: defaults */
	j = "{'cluster':'c','secret_file':'/s','networks':['lan']," CL_WNODES "}";
	n = strlen(j);
	for (size_t i = 0; i <= n; i++)
		buf[i] = j[i] == '\'' ? '"' : j[i];
	cr_assert_eq(sk_conf_cluster_parse(buf, n, "c.json", &c, &err), 0, "%s: %s", err.path, err.msg);
	cr_assert(c.has_witness);
	cr_assert_eq(c.lease_ms, 1000);
	cr_assert_eq(c.n_ping, 0);
	/* a module may not run on the witness */
	struct sk_module m;
	j = "{'name':'m','id':1,'kind':'mirror','nodes':['a','w'],'replication':{'dirs':['/srv/m']}}";
	n = strlen(j);
	for (size_t i = 0; i <= n; i++)
		buf[i] = j[i] == '\'' ? '"' : j[i];
	cr_assert_eq(sk_conf_module_parse(buf, n, "u.json", &m, &err), 0, "%s", err.msg);
	cr_assert_eq(sk_conf_module_check(&c, &m, &err), -EINVAL);
	cr_assert_str_eq(err.path, "nodes[1]");
	cr_assert(strstr(err.msg, "lease witness"), "%s", err.msg);
}
Test(conf_cluster, http_missing) { cluster_err("{" CL_HEAD CL_NODES ",'http':{}}", "http", "missing required key 'listen'"); }
Test(conf_cluster, http_no_port) { cluster_err("{" CL_HEAD CL_NODES ",'http':{'listen':'192.0.2.1'}}", "http.listen", "no port"); }
Test(conf_cluster, http_port_range) { cluster_err("{" CL_HEAD CL_NODES ",'http':{'listen':'192.0.2.1:70000'}}", "http.listen", "1..65535"); }
Test(conf_cluster, http_port_junk) { cluster_err("{" CL_HEAD CL_NODES ",'http':{'listen':'192.0.2.1:80x'}}", "http.listen", "1..65535"); }
Test(conf_cluster, http_wildcard) { cluster_err("{" CL_HEAD CL_NODES ",'http':{'listen':'0.0.0.0:9100'}}", "http.listen", "wildcard"); }
Test(conf_cluster, http_wildcard6) { cluster_err("{" CL_HEAD CL_NODES ",'http':{'listen':'[::]:9100'}}", "http.listen", "wildcard"); }
Test(conf_cluster, http_name) { cluster_err("{" CL_HEAD CL_NODES ",'http':{'listen':'localhost:9100'}}", "http.listen", "not an IPv4"); }
Test(conf_cluster, http_v6_unbracketed) { cluster_err("{" CL_HEAD CL_NODES ",'http':{'listen':'::1:9100'}}", "http.listen", "bracketed"); }
Test(conf_cluster, http_v6_no_port) { cluster_err("{" CL_HEAD CL_NODES ",'http':{'listen':'[2001:db8::1]'}}", "http.listen", "[IPv6]:PORT"); }
Test(conf_cluster, http_empty_host) { cluster_err("{" CL_HEAD CL_NODES ",'http':{'listen':':9100'}}", "http.listen", "bad address length"); }
Test(conf_cluster, http_v4_bracketed) { cluster_err("{" CL_HEAD CL_NODES ",'http':{'listen':'[192.0.2.1]:80'}}", "http.listen", "not an IPv4"); }
Test(conf_cluster, http_typo) { cluster_err("{" CL_HEAD CL_NODES ",'http':{'listne':'192.0.2.1:1'}}", "http.listne", "did you mean 'listen'"); }

Test(conf_ok, http_listen)
{
	struct sk_cluster c;
	char *j = q("{" CL_HEAD CL_NODES ",'http':{'listen':'192.0.2.1:9100'}}");
	cr_assert_eq(sk_conf_cluster_parse(j, strlen(j), "t", &c, &err), 0, "%s", err.msg);
	cr_assert(c.has_http);
	cr_assert_eq(c.http_addr.family, AF_INET);
	cr_assert_str_eq(c.http_addr.text, "192.0.2.1");
	cr_assert_eq(c.http_port, 9100);
	free(j);
	j = q("{" CL_HEAD CL_NODES ",'http':{'listen':'[2001:db8::1]:80'}}");
	cr_assert_eq(sk_conf_cluster_parse(j, strlen(j), "t", &c, &err), 0, "%s", err.msg);
	cr_assert_eq(c.http_addr.family, AF_INET6);
	cr_assert_str_eq(c.http_addr.text, "2001:db8::1");
	cr_assert_eq(c.http_port, 80);
	free(j);
	j = q("{" CL_HEAD CL_NODES "}");
	cr_assert_eq(sk_conf_cluster_parse(j, strlen(j), "t", &c, &err), 0, "%s", err.msg);
	cr_assert(!c.has_http);
	free(j);
}

/* ---- userconfig.json content ---- */

Test(conf_module, unknown_key_suggests) { module_err(MIRROR(",'vipp':{}"), "vipp", "unknown key 'vipp' (did you mean 'vip'?)"); }
Test(conf_module, name_too_long) { module_err("{'name':'abcdefghijklmnopqrstuvwxyz012345'}", "name", "too long (32 chars, at most 31)"); }
Test(conf_module, name_charset) { module_err("{'name':'we/b'}", "name", "character 3 is not allowed"); }
Test(conf_module, id_missing) { module_err("{'name':'m'}", "", "missing required key 'id'"); }
Test(conf_module, id_range) { module_err("{'name':'m','id':65536}", "id", "out of range 1..65535"); }
Test(conf_module, kind_bad) { module_err("{'name':'m','id':1,'kind':'mirrors'}", "kind", "'mirrors' is not one of 'mirror', 'farm'"); }
Test(conf_module, mirror_three_nodes) { module_err("{'name':'m','id':1,'kind':'mirror','nodes':['a','b','c']}", "nodes", "exactly 2 nodes, got 3"); }
Test(conf_module, farm_one_node) { module_err("{'name':'m','id':1,'kind':'farm','nodes':['a']}", "nodes", "has 1 entries, must have 2..32"); }
Test(conf_module, dup_node) { module_err("{'name':'m','id':1,'kind':'mirror','nodes':['a','a']}", "nodes[1]", "duplicate node 'a'"); }
Test(conf_module, node_type) { module_err("{'name':'m','id':1,'kind':'mirror','nodes':['a',2]}", "nodes[1]", "expected a node name or an object, got int"); }
Test(conf_module, mirror_weight) { module_err("{'name':'m','id':1,'kind':'mirror','nodes':['a',{'name':'b','weight':5}]}", "nodes[1].weight", "only for farm modules"); }
Test(conf_module, farm_weight_range) { module_err("{'name':'m','id':1,'kind':'farm','nodes':['a',{'name':'b','weight':0}]}", "nodes[1].weight", "0 is out of range 1..1000"); }
Test(conf_module, farm_needs_vip) { module_err("{'name':'m','id':1,'kind':'farm','nodes':['a','b']}", "", "missing required key 'vip'"); }
Test(conf_module, mirror_needs_repl) { module_err("{'name':'m','id':1,'kind':'mirror','nodes':['a','b']}", "", "missing required key 'replication'"); }
Test(conf_module, farm_no_repl) { module_err(FARM(",'replication':{}"), "replication", "only for mirror modules"); }
Test(conf_module, vip_addr) { module_err(MIRROR(",'vip':{'addr':'10.1.2','prefix':8,'interface':'eth0'}"), "vip.addr", "not an IPv4 or IPv6 address"); }
Test(conf_module, vip_prefix4) { module_err(MIRROR(",'vip':{'addr':'10.1.2.3','prefix':33,'interface':'eth0'}"), "vip.prefix", "33 is out of range 0..32"); }
Test(conf_module, vip_prefix_missing) { module_err(MIRROR(",'vip':{'addr':'10.1.2.3','interface':'eth0'}"), "vip", "missing required key 'prefix'"); }
Test(conf_module, vip_ifname) { module_err(MIRROR(",'vip':{'addr':'10.1.2.3','prefix':8,'interface':'eth0123456789abcd'}"), "vip.interface", "too long"); }
Test(conf_module, vip_mac_on_mirror) { module_err(MIRROR(",'vip':{'addr':'10.1.2.3','prefix':8,'interface':'eth0','mac':'02:00:00:00:00:01'}"), "vip.mac", "unknown key 'mac'"); }

#define FARM_VIP_WITH(x) "{'name':'f','id':2,'kind':'farm','nodes':['a','b'],'vip':{'addr':'192.0.2.9','prefix':24,'interface':'eth0'" x "}}"
Test(conf_module, mac_missing) { module_err(FARM_VIP_WITH(",'ports':[80]"), "vip", "missing required key 'mac'"); }
Test(conf_module, mac_malformed) { module_err(FARM_VIP_WITH(",'mac':'02:00:00:00:00'"), "vip.mac", "is not a MAC address"); }
Test(conf_module, mac_multicast) { module_err(FARM_VIP_WITH(",'mac':'03:00:00:00:00:01'"), "vip.mac", "multicast"); }
Test(conf_module, mac_global) { module_err(FARM_VIP_WITH(",'mac':'00:16:3e:00:00:01'"), "vip.mac", "not locally administered"); }
Test(conf_module, rule_bad) { module_err(FARM_VIP_WITH(",'mac':'02:00:00:00:00:01','rule':'ip'"), "vip.rule", "'ip' is not one of 'client', 'session'"); }
Test(conf_module, other_ports_bad) { module_err(FARM_VIP_WITH(",'mac':'02:00:00:00:00:01','other_ports':'reject'"), "vip.other_ports", "not one of 'pass', 'drop'"); }
Test(conf_module, ports_missing) { module_err(FARM_VIP_WITH(",'mac':'02:00:00:00:00:01'"), "vip", "missing required key 'ports'"); }
Test(conf_module, ports_dup) { module_err(FARM_VIP_WITH(",'mac':'02:00:00:00:00:01','ports':[80,443,80]"), "vip.ports[2]", "duplicate port 80 (also ports[0])"); }
Test(conf_module, ports_range) { module_err(FARM_VIP_WITH(",'mac':'02:00:00:00:00:01','ports':[0]"), "vip.ports[0]", "0 is out of range 1..65535"); }

Test(conf_module, dirs_missing) { module_err(MIRROR_REPL("'mode':'sync'"), "replication", "missing required key 'dirs'"); }
Test(conf_module, dirs_relative) { module_err(MIRROR_REPL("'dirs':['srv/m']"), "replication.dirs[0]", "must be an absolute path"); }
Test(conf_module, dirs_dotdot) { module_err(MIRROR_REPL("'dirs':['/srv/m/../etc']"), "replication.dirs[0]", "must not contain '.' or '..'"); }
Test(conf_module, dirs_root) { module_err(MIRROR_REPL("'dirs':['/']"), "replication.dirs[0]", "must not be '/'"); }
Test(conf_module, dirs_overlap) { module_err(MIRROR_REPL("'dirs':['/srv/a','/srv/b','/srv/a/x']"), "replication.dirs[2]", "'/srv/a/x' overlaps dirs[0] '/srv/a'"); }
Test(conf_module, dirs_same) { module_err(MIRROR_REPL("'dirs':['/srv/a','/srv/a/']"), "replication.dirs[1]", "overlaps dirs[0]"); }
Test(conf_module, mode_bad) { module_err(MIRROR_REPL("'dirs':['/srv/a'],'mode':'semisync'"), "replication.mode", "'semisync' is not one of 'sync', 'semi-sync', 'async'"); }
Test(conf_module, budget_range) { module_err(MIRROR_REPL("'dirs':['/srv/a'],'latency_budget_ms':0"), "replication.latency_budget_ms", "0 is out of range 10..60000"); }
Test(conf_module, repl_typo) { module_err(MIRROR_REPL("'dirs':['/srv/a'],'latency_budget':10"), "replication.latency_budget", "did you mean 'latency_budget_ms'"); }

#define MIRROR_CHECK(x) MIRROR(",'checkers':[{'type':'ping','host':'192.0.2.1'}," x "]")
Test(conf_module, checker_type) { module_err(MIRROR_CHECK("{'type':'http'}"), "checkers[1].type", "'http' is not one of 'process', 'tcp'"); }
Test(conf_module, checker_no_type) { module_err(MIRROR_CHECK("{'host':'192.0.2.1'}"), "checkers[1]", "missing required key 'type'"); }
Test(conf_module, checker_field_of_other_type) { module_err(MIRROR_CHECK("{'type':'ping','host':'192.0.2.1','port':80}"), "checkers[1].port", "unknown key 'port'"); }
Test(conf_module, checker_tcp_port) { module_err(MIRROR_CHECK("{'type':'tcp','host':'192.0.2.1'}"), "checkers[1]", "missing required key 'port'"); }
Test(conf_module, checker_timeout) { module_err(MIRROR_CHECK("{'type':'ping','host':'192.0.2.1','interval_ms':1000,'timeout_ms':2000}"), "checkers[1].timeout_ms", "2000 is out of range 10..1000"); }
Test(conf_module, checker_action) { module_err(MIRROR_CHECK("{'type':'interface','interface':'eth0','action':'reboot'}"), "checkers[1].action", "not one of 'restart', 'failover', 'stop'"); }
Test(conf_module, checker_action_ignore)
{
	struct sk_module m;
	char *j = q(MIRROR_CHECK("{'type':'interface','interface':'eth1','action':'ignore'}"));
	cr_assert_eq(sk_conf_module_parse(j, strlen(j), "t", &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.checkers[1].action, SK_ACT_IGNORE);
	cr_assert_eq(m.checkers[0].action, SK_ACT_RESTART);
	sk_conf_module_free(&m);
	free(j);
}
Test(conf_module, checker_action_stopstart)
{
	struct sk_module m;
	char *j = q(MIRROR_CHECK("{'type':'interface','interface':'eth1','action':'stopstart'}"));
	cr_assert_eq(sk_conf_module_parse(j, strlen(j), "t", &m, &err), 0, "%s", err.msg);
	cr_assert_eq(m.checkers[1].action, SK_ACT_STOPSTART);
	sk_conf_module_free(&m);
	free(j);
}
Test(conf_module, checker_self) { module_err(MIRROR_CHECK("{'type':'module','module':'m'}"), "checkers[1].module", "cannot depend on itself"); }
Test(conf_module, checker_script_escape) { module_err(MIRROR_CHECK("{'type':'script','path':'../../bin/sh'}"), "checkers[1].path", "must not contain '..'"); }
Test(conf_module, checker_not_object) { module_err(MIRROR_CHECK("'ping'"), "checkers[1]", "expected an object, got string"); }
Test(conf_module, failover_range) { module_err(MIRROR(",'failover':{'restart_max':3,'window_s':0}"), "failover.window_s", "0 is out of range 1..86400"); }
Test(conf_module, script_unknown) { module_err(MIRROR(",'scripts':{'start_primm':{}}"), "scripts.start_primm", "did you mean 'start_prim'"); }
Test(conf_module, script_timeout) { module_err(MIRROR(",'scripts':{'stop_prim':{'timeout_s':0}}"), "scripts.stop_prim.timeout_s", "0 is out of range 1..3600"); }
Test(conf_module, script_type) { module_err(MIRROR(",'scripts':{'stop_prim':60}"), "scripts.stop_prim", "expected an object, got int"); }

/* ---- module against cluster ---- */

Test(conf_check, node_not_in_cluster)
{
	struct sk_cluster c;
	struct sk_module m;
	cr_assert_eq(sk_conf_cluster_load(src("examples/cluster.json"), &c, &err), 0);
	cr_assert_eq(sk_conf_module_load(src("test/unit/data/conf/module_bad_node.json"), &m, &err), 0, "%s", err.msg);
	check_err(sk_conf_module_check(&c, &m, &err), "nodes[1]", "node 'node9' is not in cluster 'demo'");
}

Test(conf_check, vip_is_node_address)
{
	struct sk_cluster c;
	struct sk_module m;
	char *j = q(MIRROR(",'vip':{'addr':'192.0.2.1','prefix':24,'interface':'eth0'}"));
	cr_assert_eq(sk_conf_cluster_load(src("test/unit/data/conf/cluster_min.json"), &c, &err), 0);
	cr_assert_eq(sk_conf_module_parse(j, strlen(j), "t", &m, &err), 0, "%s", err.msg);
	check_err(sk_conf_module_check(&c, &m, &err), "vip.addr", "is node 'a''s own address");
	free(j);
}

Test(conf_check, repl_port_overflow)
{
	struct sk_cluster c;
	struct sk_module m;
	cr_assert_eq(sk_conf_cluster_load(src("test/unit/data/conf/cluster_min.json"), &c, &err), 0);
	cr_assert_eq(sk_conf_module_load(src("test/unit/data/conf/module_min_mirror.json"), &m, &err), 0);
	cr_assert_eq(sk_conf_module_check(&c, &m, &err), 0, "%s", err.msg);
	m.id = 65000;
	check_err(sk_conf_module_check(&c, &m, &err), "id", "over 65535");
}

/* ---- secret file ---- */

static char tmpdir[64];

static void mk_tmp(void)
{
	strcpy(tmpdir, "/tmp/sk-conf-test-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmp(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

/* Not weak (sk_proto_secret_weak): what `head -c 48 /dev/urandom | base64` could print. */
static const char secret_bytes[] = "q8Vd3LrT0mXk+ZbN7yHc2WfJ5sGa9PeUo4Ri1Ql6Ct/EwKxYnBvMjIhgFzA0DuSO";

static const char *secret(const char *name, mode_t mode, size_t len)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0);
	for (size_t i = 0; i < len; i++)
		cr_assert_eq(write(fd, &secret_bytes[i % 64], 1), 1);
	close(fd);
	cr_assert_eq(chmod(path, mode), 0);
	return path;
}

TestSuite(conf_secret, .init = mk_tmp, .fini = rm_tmp);

Test(conf_secret, mode_0600_accepted)
{
	struct sk_key k, want;
	memset(&k, 0, sizeof(k));
	cr_assert_eq(sk_conf_load_secret(secret("s", 0600, 32), &k, &err), 0, "%s", err.msg);
	cr_assert_eq(sk_proto_master_key(&want, secret_bytes, 32), 0);
	cr_assert_arr_eq(k.b, want.b, sizeof(k.b));
}

static void secret_refused(const char *path, const char *msg)
{
	struct sk_key k;
	memset(&k, 0xab, sizeof(k));
	int r = sk_conf_load_secret(path, &k, &err);
	cr_assert_lt(r, 0, "%s accepted", path);
	cr_assert(strstr(err.msg, msg), "msg '%s' lacks '%s'", err.msg, msg);
	cr_assert(untouched(&k, sizeof(k)), "refused secret changed the key");
}

Test(conf_secret, mode_0644_refused) { secret_refused(secret("s", 0644, 32), "mode is 0644, must be 0600"); }
Test(conf_secret, mode_0640_refused) { secret_refused(secret("s", 0640, 32), "mode is 0640"); }
Test(conf_secret, mode_0400_refused) { secret_refused(secret("s", 0400, 32), "mode is 0400"); }
Test(conf_secret, too_short) { secret_refused(secret("s", 0600, 15), "secret is 15 bytes, must be 16..4096"); }
Test(conf_secret, too_long) { secret_refused(secret("s", 0600, 4097), "must be 16..4096"); }
Test(conf_secret, missing) { secret_refused("/nonexistent/secret", "cannot open"); }
Test(conf_secret, directory) { secret_refused(tmpdir, "not a regular file"); }

Test(conf_secret, weak_refused_with_advice)
{
	const char *path = secret("s", 0600, 0);
	int fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert_eq(write(fd, "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", 32), 32);
	close(fd);
	secret_refused(path, "weak secret (every byte is the same); generate one with `head -c 32 /dev/urandom | base64`");
}

Test(conf_secret, symlink_refused)
{
	char link[160];
	const char *target = secret("s", 0600, 32);
	snprintf(link, sizeof(link), "%s/link", tmpdir);
	cr_assert_eq(symlink(target, link), 0);
	secret_refused(link, "symbolic link");
}

Test(conf_secret, other_owner_refused)
{
	const char *path = secret("s", 0600, 32);
	if (geteuid() != 0)
		cr_skip_test("needs root to chown");
	cr_assert_eq(chown(path, 4242, 4242), 0);
	secret_refused(path, "owned by uid 4242");
}
