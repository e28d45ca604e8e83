/* libsk/conf.h: cluster.json and module userconfig.json, parsed and validated into typed structs. */
#ifndef SK_CONF_H
#define SK_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>

#include "proto.h"
#include "sk_types.h"

/*
 * Both documents are strict JSON objects (no comments, no trailing commas),
 * at most SK_CONF_MAX_FILE bytes. Unknown keys are refused, so a typo never
 * silently falls back to a default. Examples: examples/cluster.json,
 * examples/mirror/userconfig.json, examples/farm/userconfig.json.
 *
 * cluster.json (/etc/steadykit/cluster.json)
 *   "cluster"      string, required   [a-z0-9_-], 1..31 chars
 *   "secret_file"  string, required   absolute path; mode 0600, owned by the agent's euid;
 *                                      a random key, not a password: make one with
 *                                      `head -c 32 /dev/urandom | base64` (weak ones are refused)
 *   "networks"     [string], required heartbeat networks, 1..4, names [a-z0-9_-] 1..15
 *   "nodes"        [object], required 1..SK_CONF_MAX_NODES
 *       "name"       string, required  [A-Za-z0-9._-] 1..63, unique
 *       "id"         int, required     1..63 (sk_types.h), unique; also the node's farm slot
 *       "addresses"  object, required  one IPv4 or IPv6 literal per network, every network,
 *                                      unique per network: {"lan": "10.0.0.1", "backup": "fd00::1"}
 *   "ports"        object, optional   "agent" (7710), "heartbeat" (7711),
 *                                      "replication_base" (7800; module id N listens on base+N)
 *   "heartbeat"    object, optional   "interval_ms" 20..10000 (200),
 *                                      "timeout_ms" 3*interval..120000 (1000)
 *       "role"       string, optional  "node" (default) | "witness": the lease witness
 *                                      (`skagentd --witness`), at most one; no module may name it
 *   "witness"      object, optional   split-brain guards (docs/agent.md "Witnesses"):
 *                                      "ping" [IPv4 literal] 1..SK_CONF_MAX_PING: ping witnesses;
 *                                      "lease_ms" 500..60000 (1000), at least 2 heartbeat
 *                                      intervals: lease of the witness node;
 *                                      "port" (7712): UDP port the witness node listens on.
 *                                      The object must name a witness ("ping" or a witness node).
 *   "http"         object, optional   the agent's HTTP listener (/ready /metrics /state):
 *                                      "listen" "IPv4:PORT" or "[IPv6]:PORT" (required), a
 *                                      literal address (never a wildcard), port 1..65535
 *
 * userconfig.json (inside a module archive)
 *   "name"         string, required   [a-z0-9_-], 1..31
 *   "id"           int, required      1..65535, unique in the cluster (frames carry it)
 *   "kind"         string, required   "mirror" | "farm"
 *   "nodes"        [string | object], required; names from cluster.json, unique.
 *                                      mirror: exactly 2, the first is the default primary.
 *                                      farm: 2..SK_CONF_MAX_NODES, objects may carry
 *                                      "weight" 1..1000 (100): {"name": "n1", "weight": 200}
 *   "vip"          object, required for farm, optional for mirror
 *       "addr"       IP literal, required
 *       "prefix"     int, required     0..32 (IPv4), 0..128 (IPv6)
 *       "interface"  string, required  1..15 chars (IFNAMSIZ)
 *     farm only:
 *       "mac"        "02:xx:xx:xx:xx:xx", required; locally administered unicast
 *       "rule"       "client" (affinity on client IP, default) | "session" (4-tuple)
 *       "ports"      [int 1..65535], required, unique, 1..64 entries: balanced ports
 *       "other_ports" "pass" (default) | "drop": VIP traffic to other ports
 *   "replication"  object, required for mirror, refused for farm
 *       "dirs"              [string], required, 1..16 absolute paths, no "." or "..",
 *                           none inside another
 *       "mode"              "sync" (default) | "semi-sync" | "async"
 *       "latency_budget_ms" 10..60000 (300): longest a write waits for the peer
 *       "async_queue_mb"    1..65536 (64): only meaningful for "async"
 *       "encrypt"           true (default) | false: false sends file data, names and
 *                           owners in clear (authenticated only); must match on both nodes
 *   "checkers"     [object], optional, up to SK_CONF_MAX_CHECKERS; each has
 *       "type"        "process" | "tcp" | "ping" | "interface" | "script" | "module"
 *       "interval_ms" 100..3600000 (5000), "timeout_ms" 10..interval (2000),
 *       "failures"    1..100 (3): consecutive failures before acting,
 *       "action"      "restart" (default) | "failover" | "stop" | "ignore" (log only)
 *     and per type: process: "process" (name to watch, required);
 *       tcp: "host" (IP literal, required), "port" (required);
 *       ping: "host" (IP literal, required); interface: "interface" (required);
 *       script: "path" (required; relative to the module's bin/ or absolute);
 *       module: "module" (another module's name, required)
 *   "failover"     object, optional   "restart_max" 0..100 (3) local restarts within
 *                                      "window_s" 1..86400 (600), then fail over
 *   "scripts"      object, optional   keys prestart, start_prim, stop_prim, start_both,
 *                                      stop_both, prestop, poststop; each {"timeout_s": 1..3600
 *                                      (default 60)}. A script listed here is run from
 *                                      the module's bin/<key>; unlisted ones are not run.
 */

#define SK_CONF_MAX_FILE (1u << 20)
#define SK_CONF_MAX_NODES SK_MAX_NODES
#define SK_CONF_MAX_NETWORKS 4
#define SK_CONF_MAX_DIRS 16
#define SK_CONF_MAX_CHECKERS 32
#define SK_CONF_MAX_VIP_PORTS 64
#define SK_CONF_MAX_PING 4
#define SK_CONF_NAME_LEN 32     /* module, cluster names: 31 chars + NUL */
#define SK_CONF_NODE_NAME_LEN 64
#define SK_CONF_NET_NAME_LEN 16
#define SK_CONF_IFNAME_LEN 16
#define SK_CONF_PATH_LEN 1024
#define SK_CONF_ADDR_TEXT 46    /* INET6_ADDRSTRLEN */

/* What went wrong and where; printed as "FILE: PATH: MSG". */
struct sk_conf_err {
	char file[256];
	char path[160];
	char msg[256];
};

/* An IP literal as configured. family is AF_INET or AF_INET6; ip holds 4 or 16 bytes. */
struct sk_conf_addr {
	int family;
	uint8_t ip[16];
	char text[SK_CONF_ADDR_TEXT];
};

struct sk_conf_node {
	char name[SK_CONF_NODE_NAME_LEN];
	uint8_t id;
	bool witness;                                   /* "role": "witness" */
	struct sk_conf_addr addr[SK_CONF_MAX_NETWORKS]; /* index = network index */
};

struct sk_cluster {
	char name[SK_CONF_NAME_LEN];
	char secret_file[SK_CONF_PATH_LEN];
	unsigned n_networks;
	char networks[SK_CONF_MAX_NETWORKS][SK_CONF_NET_NAME_LEN];
	unsigned n_nodes;
	struct sk_conf_node nodes[SK_CONF_MAX_NODES];
	uint16_t agent_port;
	uint16_t hb_port;
	uint16_t repl_port_base;
	uint32_t hb_interval_ms;
	uint32_t hb_timeout_ms;
	bool has_witness;             /* a ping witness or a lease witness node */
	unsigned n_ping;              /* "witness": {"ping": [...]} */
	struct sk_conf_addr ping[SK_CONF_MAX_PING];
	unsigned lease_witness;       /* index + 1 in nodes[] of the "role": "witness" node, 0 = none */
	uint32_t lease_ms;            /* lease length the witness grants (1000) */
	uint16_t witness_port;        /* the witness node's UDP port (7712) */
	bool has_http;                /* "http": {"listen": "IP:PORT"}; absent = no listener */
	struct sk_conf_addr http_addr;
	uint16_t http_port;
};

enum sk_mod_kind { SK_MOD_MIRROR = 1, SK_MOD_FARM = 2 };
enum sk_check_type {
	SK_CHECK_PROCESS = 1,
	SK_CHECK_TCP,
	SK_CHECK_PING,
	SK_CHECK_INTERFACE,
	SK_CHECK_SCRIPT,
	SK_CHECK_MODULE,
};
enum sk_check_action { SK_ACT_RESTART = 0, SK_ACT_FAILOVER = 1, SK_ACT_STOP = 2, SK_ACT_IGNORE = 3,
		       SK_ACT_STOPSTART = 4 /* stop the module here, start it again (peer may take over) */ };
enum sk_script {
	SK_SCRIPT_PRESTART = 0,
	SK_SCRIPT_START_PRIM,
	SK_SCRIPT_STOP_PRIM,
	SK_SCRIPT_START_BOTH,
	SK_SCRIPT_STOP_BOTH,
	SK_SCRIPT_PRESTOP,
	SK_SCRIPT_POSTSTOP,
	SK_SCRIPT__COUNT
};

struct sk_conf_mod_node {
	char name[SK_CONF_NODE_NAME_LEN];
	uint16_t weight; /* farm: SK_WEIGHT_MIN..SK_WEIGHT_MAX; mirror: 0 */
};

struct sk_conf_vip {
	struct sk_conf_addr addr;
	uint8_t prefix;
	char ifname[SK_CONF_IFNAME_LEN];
	/* farm only */
	uint8_t mac[6];
	enum sk_lb_rule rule;
	unsigned n_ports;
	uint16_t ports[SK_CONF_MAX_VIP_PORTS];
	bool other_ports_drop;
};

struct sk_conf_checker {
	enum sk_check_type type;
	uint32_t interval_ms;
	uint32_t timeout_ms;
	uint32_t failures;
	enum sk_check_action action;
	/* process: name; interface: ifname; script: path; module: module name */
	char arg[SK_CONF_PATH_LEN];
	struct sk_conf_addr host; /* tcp, ping */
	uint16_t port;            /* tcp */
};

struct sk_conf_script {
	bool enabled;
	uint32_t timeout_s;
};

struct sk_module {
	char name[SK_CONF_NAME_LEN];
	uint32_t id;
	enum sk_mod_kind kind;
	unsigned n_nodes;
	struct sk_conf_mod_node nodes[SK_CONF_MAX_NODES];
	bool has_vip;
	struct sk_conf_vip vip;
	/* mirror only */
	unsigned n_dirs;
	char dirs[SK_CONF_MAX_DIRS][SK_CONF_PATH_LEN];
	enum sk_repl_mode repl_mode;
	uint32_t latency_budget_ms;
	uint32_t async_queue_mb;
	bool encrypt;                /* replication stream encrypted (default); false: MAC only */
	unsigned n_checkers;
	struct sk_conf_checker checkers[SK_CONF_MAX_CHECKERS];
	uint32_t restart_max;
	uint32_t restart_window_s;
	struct sk_conf_script scripts[SK_SCRIPT__COUNT];
};

/*
 * Loaders return 0 with *out filled, or -errno with *err filled (-EINVAL for
 * content, -EFBIG, -ENOENT, ... for the file). On error *out is not touched.
 * `name` is what errors call the document (usually its path).
 */
/*
 * "IPv4:PORT" or "[IPv6]:PORT" (a literal, not 0.0.0.0 or ::) -> *a, *port.
 * 0 or -EINVAL with a message in why (may be NULL).
 */
int sk_conf_parse_listen(const char *s, struct sk_conf_addr *a, uint16_t *port, char *why,
			 size_t wlen);
int sk_conf_cluster_load(const char *path, struct sk_cluster *out, struct sk_conf_err *err);
int sk_conf_cluster_parse(const char *buf, size_t len, const char *name, struct sk_cluster *out,
			  struct sk_conf_err *err);
void sk_conf_cluster_free(struct sk_cluster *c);

int sk_conf_module_load(const char *path, struct sk_module *out, struct sk_conf_err *err);
int sk_conf_module_parse(const char *buf, size_t len, const char *name, struct sk_module *out,
			 struct sk_conf_err *err);
void sk_conf_module_free(struct sk_module *m);

/*
 * A module against its cluster: nodes exist, replication port in range, the
 * VIP family has a heartbeat network of the same family... err->file is left
 * as the caller set it (e.g. the module's file name); path names the key.
 */
int sk_conf_module_check(const struct sk_cluster *c, const struct sk_module *m,
			 struct sk_conf_err *err);

/*
 * Read the cluster secret and derive the master key. Refuses anything but a
 * regular file (no symlink) of mode exactly 0600 owned by the euid, 16..4096 bytes,
 * and weak secrets (sk_proto_secret_weak), saying how to generate a good one.
 */
#define SK_CONF_SECRET_MAX 4096
int sk_conf_load_secret(const char *path, struct sk_key *master, struct sk_conf_err *err);

/* "FILE: PATH: MSG" (or "FILE: MSG" without a path) into buf; returns buf. */
const char *sk_conf_err_str(const struct sk_conf_err *err, char *buf, size_t len);

/* Lookups; NULL if absent. */
const struct sk_conf_node *sk_conf_node_by_name(const struct sk_cluster *c, const char *name);
const struct sk_conf_node *sk_conf_node_by_id(const struct sk_cluster *c, unsigned id);
/* Index of a network by name, or -ENOENT. */
int sk_conf_network_index(const struct sk_cluster *c, const char *name);
/* Fill a sockaddr for addr:port; returns its length. */
socklen_t sk_conf_sockaddr(const struct sk_conf_addr *a, uint16_t port,
			   struct sockaddr_storage *ss);

const char *sk_conf_script_name(enum sk_script s);
const char *sk_conf_check_type_name(enum sk_check_type t);

#endif
