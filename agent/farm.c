/* agent/farm.c: a farm module's membership and health drive the XDP filter's bucket table (xdp/lb.h). */
#include "farm.h"

#include <errno.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define DEFAULT_WINDOW_MS 300000u
#define DEFAULT_UDP_TIMEOUT_MS 60000u
#define DEFAULT_ANNOUNCE_MS 1000u

struct agent_farm {
	const struct sk_cluster *cluster;
	const struct sk_module *mod;
	unsigned self_id;
	uint32_t announce_ms;
	char pin_dir[200];
	struct lb *lb;
	uint64_t alive, up;  /* bit = cluster node id */
	bool started;
	bool pushed;         /* last holds what the filter has */
	struct lb_view last;
	char err[320];
};

static int ferr(char *err, size_t elen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int ferr(char *err, size_t elen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && elen) {
		va_start(ap, fmt);
		vsnprintf(err, elen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

uint32_t agent_farm_seed(const struct sk_cluster *c, const struct sk_module *m)
{
	uint32_t h = 2166136261u; /* FNV-1a: the same bytes give the same seed on every node */
	const char *parts[] = {c->name, "/", m->name};

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		for (const char *p = parts[i]; *p; p++)
			h = (h ^ (uint8_t)*p) * 16777619u;
	for (int i = 0; i < 4; i++)
		h = (h ^ ((m->id >> (8 * i)) & 0xffu)) * 16777619u;
	return h;
}

int agent_farm_make_view(const struct sk_cluster *c, const struct sk_module *m, uint64_t alive,
			 uint64_t up, uint32_t announce_ms, struct lb_view *v)
{
	uint64_t members = 0;

	memset(v, 0, sizeof(*v));
	v->announce_ms = announce_ms;
	if (m->kind != SK_MOD_FARM)
		return -EINVAL;
	for (unsigned i = 0; i < m->n_nodes; i++) {
		const struct sk_conf_node *n = sk_conf_node_by_name(c, m->nodes[i].name);

		if (n && n->id >= SK_NODE_ID_MIN && n->id <= SK_NODE_ID_MAX)
			members |= 1ull << n->id;
	}
	alive &= members;
	up &= alive;
	if (!up)
		up = alive; /* every checker failing: answer from all rather than from none */
	for (unsigned i = 0; i < m->n_nodes; i++) {
		const struct sk_conf_node *n = sk_conf_node_by_name(c, m->nodes[i].name);

		if (n && (members & (1ull << n->id)) && (up & (1ull << n->id)))
			v->weight[n->id] = m->nodes[i].weight;
	}
	v->alive = alive;
	return 0;
}

void agent_farm_view(const struct agent_farm *f, struct lb_view *v)
{
	agent_farm_make_view(f->cluster, f->mod, f->alive, f->up, f->announce_ms, v);
}

struct lb *agent_farm_lb(struct agent_farm *f)
{
	return f->lb;
}

const char *agent_farm_err(const struct agent_farm *f)
{
	return f->err;
}

/* "n1=100 n2=leaving n3=dead": the view in the operator's words, for the log. */
static void describe(const struct agent_farm *f, const struct lb_view *v, char *out, size_t cap)
{
	size_t n = 0;

	out[0] = 0;
	for (unsigned i = 0; i < f->mod->n_nodes && n < cap; i++) {
		const struct sk_conf_node *cn = sk_conf_node_by_name(f->cluster, f->mod->nodes[i].name);
		int w;

		if (!cn)
			continue;
		if (v->weight[cn->id])
			w = snprintf(out + n, cap - n, "%s%s=%u", n ? " " : "", cn->name, v->weight[cn->id]);
		else
			w = snprintf(out + n, cap - n, "%s%s=%s", n ? " " : "", cn->name,
				     v->alive & (1ull << cn->id) ? "leaving" : "dead");
		if (w < 0)
			break;
		n += (size_t)w;
	}
}

static int push(struct agent_farm *f)
{
	struct lb_view v;
	struct lb_err le;
	char words[256];
	int rc;

	if (!f->started)
		return 0;
	agent_farm_view(f, &v);
	if (f->pushed && !memcmp(&v, &f->last, sizeof(v)))
		return 0;
	rc = lb_set_view(f->lb, &v, &le);
	describe(f, &v, words, sizeof(words));
	if (rc) {
		ferr(f->err, sizeof(f->err), rc, "set view (%s): %s", words, le.msg);
		sk_logm(SK_LOG_ERR, f->mod->name, "farm: %s", f->err);
		return rc;
	}
	f->last = v;
	f->pushed = true;
	sk_logf(SK_LOG_NOTICE, &(struct sk_log_fields){.module = f->mod->name, .state = "UP"},
		"farm view: %s", words);
	return 1;
}

int agent_farm_node(struct agent_farm *f, unsigned node_id, bool alive, bool up)
{
	uint64_t bit;

	if (node_id < SK_NODE_ID_MIN || node_id > SK_NODE_ID_MAX)
		return ferr(f->err, sizeof(f->err), -EINVAL, "node id %u is not in %u..%u", node_id,
			    SK_NODE_ID_MIN, SK_NODE_ID_MAX);
	bit = 1ull << node_id;
	if (node_id == f->self_id)
		alive = true;
	f->alive = alive ? f->alive | bit : f->alive & ~bit;
	f->up = alive && up ? f->up | bit : f->up & ~bit;
	return push(f);
}

int agent_farm_set(struct agent_farm *f, uint64_t alive, uint64_t up)
{
	uint64_t self = 1ull << f->self_id;

	alive |= self; /* this node is always alive */
	f->alive = alive;
	f->up = up & alive;
	return push(f);
}

void agent_farm_words(const struct agent_farm *f, char *out, size_t cap)
{
	struct lb_view v;

	agent_farm_view(f, &v);
	describe(f, &v, out, cap);
}

int agent_farm_lease(struct agent_farm *f, uint32_t ms)
{
	struct lb_err le;
	int rc = lb_set_lease(f->lb, ms ? sk_now_ns() + (uint64_t)ms * 1000000ull : 0, &le);

	if (rc)
		ferr(f->err, sizeof(f->err), rc, "set the lease: %s", le.msg);
	return rc;
}

int agent_farm_start(struct agent_farm *f)
{
	f->started = true;
	return push(f);
}

void agent_farm_member_cb(void *arg, struct agent *a, uint8_t node_id, bool alive)
{
	struct agent_farm *f = arg;

	(void)a;
	/* A node coming back takes flows only once the agent says its module is UP. */
	agent_farm_node(f, node_id, alive, alive && (f->up & (1ull << node_id)));
}

/* Does the running filter at pin_dir belong to this configuration? */
static bool same_attachment(struct lb *lb, const struct lb_attach_opts *ao)
{
	struct lb_status st;
	struct lb_err le;

	if (lb_get_status(lb, &st, &le))
		return false;
	return st.info.ifindex == if_nametoindex(ao->ifname) && st.info.node_id == ao->node_id &&
	       st.info.seed == ao->seed && !memcmp(st.info.vmac, ao->vmac, 6) &&
	       st.info.has_vip4 == (uint32_t)!!ao->has_vip4 &&
	       (!ao->has_vip4 || st.info.vip4 == ao->vip4.s_addr) &&
	       st.info.has_vip6 == (uint32_t)!!ao->has_vip6 &&
	       (!ao->has_vip6 || !memcmp(st.info.vip6, &ao->vip6, 16));
}

static int attach_or_reuse(struct agent_farm *f, const struct lb_attach_opts *ao, char *err,
			   size_t elen)
{
	const char *mod = f->mod->name;
	struct lb_attach_result res;
	struct lb_err le;
	int rc = lb_attach(ao, &res, &le);

	if (rc == -EEXIST) {
		/* An agent before us attached it: keep its table and its flows. */
		rc = lb_open(ao->pin_dir, &f->lb, &le);
		if (!rc && same_attachment(f->lb, ao)) {
			sk_logm(SK_LOG_INFO, mod, "farm: took over the filter running on %s",
				ao->ifname);
			return 0;
		}
		sk_logm(SK_LOG_WARN, mod, "farm: the filter at %s was attached with other settings; "
			"attaching again", ao->pin_dir);
		lb_close(f->lb);
		f->lb = NULL;
		if ((rc = lb_detach(ao->pin_dir, &le)) && rc != -ENOENT)
			return ferr(err, elen, rc, "detach the old filter: %s", le.msg);
		rc = lb_attach(ao, &res, &le);
	}
	if (rc)
		return ferr(err, elen, rc, "attach the farm filter on %s: %s", ao->ifname, le.msg);
	if (res.fell_back)
		sk_logm(SK_LOG_WARN, mod, "farm: native XDP refused on %s (%s); generic mode",
			ao->ifname, res.native_err);
	if (!res.dispatcher)
		sk_logm(SK_LOG_WARN, mod, "farm: %s: the kernel or driver refused libxdp's "
			"dispatcher; attached alone, no other XDP program can share the interface",
			ao->ifname);
	sk_logm(SK_LOG_INFO, mod, "farm: filter attached on %s (%s%s)", ao->ifname,
		res.mode == LB_XDP_NATIVE ? "native" : "generic",
		res.dispatcher ? ", in the libxdp dispatcher" : "");
	rc = lb_open(ao->pin_dir, &f->lb, &le);
	if (rc)
		return ferr(err, elen, rc, "open the farm filter: %s", le.msg);
	return 0;
}

bool agent_farm_pinned(const char *pin_dir)
{
	struct lb *lb = NULL;
	struct lb_err le;

	if (lb_open(pin_dir, &lb, &le))
		return false;
	lb_close(lb);
	return true;
}

int agent_farm_open(const struct agent_farm_opts *o, struct agent_farm **out, char *err, size_t elen)
{
	const struct sk_module *m = o->mod;
	const struct sk_conf_node *self;
	struct lb_attach_opts ao = {0};
	struct agent_farm *f;
	struct lb_err le;
	uint16_t ports[SK_CONF_MAX_VIP_PORTS];
	bool member = false;
	int rc;

	if (!m || m->kind != SK_MOD_FARM || !m->has_vip)
		return ferr(err, elen, -EINVAL, "not a farm module with a VIP");
	self = o->self ? sk_conf_node_by_name(o->cluster, o->self) : NULL;
	if (!self)
		return ferr(err, elen, -EINVAL, "node '%s' is not in the cluster", o->self ? o->self : "");
	for (unsigned i = 0; i < m->n_nodes; i++)
		member |= !strcmp(m->nodes[i].name, self->name);
	if (!member)
		return ferr(err, elen, -EINVAL, "node %s is not a node of farm %s", self->name, m->name);
	f = calloc(1, sizeof(*f));
	if (!f)
		return ferr(err, elen, -ENOMEM, "out of memory");
	f->cluster = o->cluster;
	f->mod = m;
	f->self_id = self->id;
	f->announce_ms = o->announce_ms ? o->announce_ms : DEFAULT_ANNOUNCE_MS;
	f->alive = f->up = 1ull << self->id;
	if (o->pin_dir)
		snprintf(f->pin_dir, sizeof(f->pin_dir), "%s", o->pin_dir);
	else
		snprintf(f->pin_dir, sizeof(f->pin_dir), "%s/%s", LB_PIN_ROOT, m->name);

	ao.ifname = m->vip.ifname;
	ao.pin_dir = f->pin_dir;
	ao.node_id = self->id;
	ao.seed = agent_farm_seed(o->cluster, m);
	if (m->vip.addr.family == AF_INET) {
		ao.has_vip4 = 1;
		memcpy(&ao.vip4, m->vip.addr.ip, 4);
	} else {
		ao.has_vip6 = 1;
		memcpy(&ao.vip6, m->vip.addr.ip, 16);
	}
	memcpy(ao.vmac, m->vip.mac, 6);
	ao.mode = o->mode;
	ao.install_vip = 1;
	rc = attach_or_reuse(f, &ao, err, elen);
	if (rc)
		goto bad;

	for (unsigned i = 0; i < m->vip.n_ports; i++)
		ports[i] = m->vip.ports[i];
	if ((rc = lb_set_rule(f->lb, m->vip.rule, &le)) ||
	    (rc = lb_set_ports(f->lb, ports, m->vip.n_ports,
			       !m->vip.n_ports ? SK_LB_PORTS_ALL
			       : m->vip.other_ports_drop ? SK_LB_PORTS_OTHERS_DROP
							 : SK_LB_PORTS_OTHERS_PASS, &le)) ||
	    (rc = lb_set_timing(f->lb, o->window_ms ? o->window_ms : DEFAULT_WINDOW_MS,
				o->udp_timeout_ms ? o->udp_timeout_ms : DEFAULT_UDP_TIMEOUT_MS, &le))) {
		ferr(err, elen, rc, "configure the farm filter: %s", le.msg);
		goto bad;
	}
	*out = f;
	return 0;
bad:
	agent_farm_close(f, false);
	return rc;
}

void agent_farm_close(struct agent_farm *f, bool detach)
{
	struct lb_err le;

	if (!f)
		return;
	lb_close(f->lb);
	if (detach && lb_detach(f->pin_dir, &le) && f->mod)
		sk_logm(SK_LOG_WARN, f->mod->name, "farm: detach: %s", le.msg);
	free(f);
}
