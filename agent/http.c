/* agent/http.c: skagentd's HTTP listener (libmicrohttpd): /ready for load balancers, /metrics (Prometheus), /state JSON. */
#include "agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/*
 * Threading: libmicrohttpd answers from its own thread (MHD_USE_INTERNAL_POLLING_THREAD), while
 * every agent structure belongs to the single-threaded libuv loop. The HTTP thread never reads
 * them. The loop renders a snapshot (the /state and /metrics bodies and each module's state) and
 * swaps it in under `mu`: at every recorded transition (agent_http_touch, called by module.c)
 * and every SNAP_MS otherwise (peer liveness, skfused figures). The HTTP thread copies what it
 * needs under `mu` and answers from the copy. So an answer is at most SNAP_MS old, never torn,
 * and a slow or hostile HTTP client cannot stall the loop (it holds the lock for one memcpy).
 */
#define SNAP_MS 200
#define MAX_CONN 32       /* simultaneous connections; more are refused by MHD */
#define MAX_PER_IP 8
#define CONN_TIMEOUT_S 5  /* idle/slow client cut after this */
#define CONN_MEM (16 * 1024) /* per-connection memory: bounds request line and headers */
#define MAX_URL 256       /* longer URLs get 414 */

struct snap_mod {
	char name[SK_CTL_NAME_LEN];
	enum sk_mod_state state;
};

struct snap {
	char *state;   /* /state body */
	size_t state_len;
	char *metrics; /* /metrics body */
	size_t metrics_len;
	unsigned n_mods;
	struct snap_mod mods[AGENT_MAX_MODS];
};

/* Counters: the persisted history kept at start (bounded), then every transition recorded. */
struct mod_count {
	uint64_t to[SK_ST__COUNT];
	uint64_t failovers[8];
};

enum { FC_PEER_SILENT, FC_PEER_STOPPED, FC_HANDOVER, FC_CHECKER, FC_STARTUP, FC_OPERATOR, FC_OTHER,
       FC__COUNT };
static const char *const fc_name[FC__COUNT] = { "peer_silent", "peer_stopped", "handover",
						 "checker",     "startup",      "operator",
						 "other" };

static struct {
	struct agent *a;
	struct MHD_Daemon *d;
	pthread_mutex_t mu;
	struct snap cur;
	uv_timer_t timer;
	bool on;
	struct mod_count cnt[AGENT_MAX_MODS];
	uint64_t refused; /* requests answered 404/405/414 (read by the loop: atomics not needed
			     for a statistic, but keep it exact) */
} H = { .mu = PTHREAD_MUTEX_INITIALIZER };

const char *agent_rej_name(enum agent_rej r);

/* ---- growing text buffer ---- */

struct tb {
	char *p;
	size_t n, cap;
	bool oom;
};

static void tb_add(struct tb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_add(struct tb *b, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->oom = true;
			return;
		}
		if (b->p && (size_t)k < b->cap - b->n) {
			b->n += (size_t)k;
			return;
		}
		size_t ncap = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
		char *np = realloc(b->p, ncap);

		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

/* Label values: escape \ " and newline as the text format wants. */
static const char *esc(const char *s, char *out, size_t cap)
{
	size_t o = 0;

	for (; *s && o + 3 < cap; s++) {
		if (*s == '\\' || *s == '"') {
			out[o++] = '\\';
			out[o++] = *s;
		} else if (*s == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else if ((unsigned char)*s >= 0x20) {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
	return out;
}

/* A transition's cause in one word, for the failovers counter's label. */
static int cause_class(const char *c)
{
	if (strstr(c, "checker"))
		return FC_CHECKER;
	if (strstr(c, "silent") || strstr(c, "dead") || strstr(c, "absent"))
		return FC_PEER_SILENT;
	if (strstr(c, "hands the role over") || strstr(c, "swap"))
		return FC_HANDOVER;
	if (strstr(c, "stopped"))
		return FC_PEER_STOPPED;
	if (strstr(c, "fresh") || strstr(c, "newest"))
		return FC_STARTUP;
	if (strstr(c, "operator") || strstr(c, "skctl") || strstr(c, "force"))
		return FC_OPERATOR;
	return FC_OTHER;
}

static void count_one(struct mod_count *c, const struct sk_ctl_trans *t)
{
	if ((unsigned)t->to < SK_ST__COUNT)
		c->to[t->to]++;
	/* a failover: this node took the application (became PRIM/ALONE from elsewhere) */
	if (!t->failed && sk_state_is_primary(t->to) && !sk_state_is_primary(t->from))
		c->failovers[cause_class(t->cause)]++;
}

void agent_http_transition(struct agent_mod *m, const struct sk_ctl_trans *t)
{
	struct agent *a = m->a;

	if (!H.on || a != H.a)
		return;
	for (unsigned i = 0; i < a->n_mods; i++)
		if (a->mods[i] == m)
			count_one(&H.cnt[i], t);
	agent_http_touch(a);
}

/* skfused's last status line, as fused.c read it (only meaningful when the poll is idle). */
static json_object *fused_status(struct agent_mod *m)
{
	struct agent_fused *fu = &m->fused;

	if (!fu->running || fu->ctl_busy || fu->ctl_n == 0 || fu->ctl_n >= sizeof(fu->ctl_buf))
		return NULL;
	if (!memchr(fu->ctl_buf, '\0', fu->ctl_n + 1))
		return NULL;
	return json_tokener_parse(fu->ctl_buf);
}

static int64_t jget(json_object *o, const char *k, int64_t def)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, k, &v))
		return def;
	if (json_object_is_type(v, json_type_boolean))
		return json_object_get_boolean(v);
	if (!json_object_is_type(v, json_type_int))
		return def;
	return json_object_get_int64(v);
}

static void render_metrics(struct agent *a, struct tb *b)
{
	char e1[128], e2[128], e3[128];
	uint64_t now = agent_now_ms();
	const char *node = esc(a->self->name, e1, sizeof(e1));

	tb_add(b, "# HELP steadykit_module_state Module state per node (1 for the current state).\n"
		  "# TYPE steadykit_module_state gauge\n");
	for (unsigned i = 0; i < a->n_mods; i++) {
		struct sk_ctl_mod cm;

		agent_mod_fill_ctl(a->mods[i], &cm);
		esc(cm.name, e2, sizeof(e2));
		for (int s = 0; s < SK_ST__COUNT; s++)
			tb_add(b, "steadykit_module_state{module=\"%s\",node=\"%s\",state=\"%s\"} %d\n",
			       e2, node, sk_state_name(s), cm.state == (enum sk_mod_state)s);
		if (cm.peer[0] && cm.peer_alive)
			for (int s = 0; s < SK_ST__COUNT; s++)
				tb_add(b, "steadykit_module_state{module=\"%s\",node=\"%s\",state=\"%s\"} %d\n",
				       e2, esc(cm.peer, e3, sizeof(e3)), sk_state_name(s),
				       cm.peer_state == (enum sk_mod_state)s);
	}
	tb_add(b, "# HELP steadykit_module_vip_held 1 when this node holds the module's virtual IP.\n"
		  "# TYPE steadykit_module_vip_held gauge\n");
	for (unsigned i = 0; i < a->n_mods; i++)
		tb_add(b, "steadykit_module_vip_held{module=\"%s\"} %d\n",
		       esc(a->mods[i]->conf.name, e2, sizeof(e2)), a->mods[i]->vip_on);
	tb_add(b, "# HELP steadykit_module_uptodate 1 when this copy may become primary by itself.\n"
		  "# TYPE steadykit_module_uptodate gauge\n");
	for (unsigned i = 0; i < a->n_mods; i++)
		tb_add(b, "steadykit_module_uptodate{module=\"%s\"} %d\n",
		       esc(a->mods[i]->conf.name, e2, sizeof(e2)), agent_mod_uptodate(a->mods[i]));

	tb_add(b, "# HELP steadykit_transitions_total Transitions recorded, by state reached.\n"
		  "# TYPE steadykit_transitions_total counter\n");
	for (unsigned i = 0; i < a->n_mods; i++)
		for (int s = 0; s < SK_ST__COUNT; s++)
			tb_add(b, "steadykit_transitions_total{module=\"%s\",to=\"%s\"} %llu\n",
			       esc(a->mods[i]->conf.name, e2, sizeof(e2)), sk_state_name(s),
			       (unsigned long long)H.cnt[i].to[s]);
	tb_add(b, "# HELP steadykit_failovers_total Times this node took a module over, by cause.\n"
		  "# TYPE steadykit_failovers_total counter\n");
	for (unsigned i = 0; i < a->n_mods; i++)
		for (int c = 0; c < FC__COUNT; c++)
			tb_add(b, "steadykit_failovers_total{module=\"%s\",cause=\"%s\"} %llu\n",
			       esc(a->mods[i]->conf.name, e2, sizeof(e2)), fc_name[c],
			       (unsigned long long)H.cnt[i].failovers[c]);

	tb_add(b, "# HELP steadykit_last_transition_phase_seconds Duration of each phase of the "
		  "module's last transition.\n# TYPE steadykit_last_transition_phase_seconds gauge\n");
	for (unsigned i = 0; i < a->n_mods; i++) {
		struct agent_mod *m = a->mods[i];
		const struct sk_ctl_trans *t;

		if (!m->hist_n)
			continue;
		t = &m->hist[(m->hist_head + m->hist_n - 1) % AGENT_HIST];
		esc(m->conf.name, e2, sizeof(e2));
		for (int p = 0; p < SK_PH__COUNT; p++)
			tb_add(b, "steadykit_last_transition_phase_seconds{module=\"%s\",phase=\"%s\"} "
				  "%.3f\n", e2, sk_phase_name(p), t->phase_ms[p] / 1000.0);
		tb_add(b, "steadykit_last_transition_phase_seconds{module=\"%s\",phase=\"total\"} "
			  "%.3f\n", e2, t->total_ms / 1000.0);
	}

	tb_add(b, "# HELP steadykit_peer_alive 1 when the peer node is alive (heartbeats).\n"
		  "# TYPE steadykit_peer_alive gauge\n");
	for (unsigned i = 0; i < a->n_peers; i++)
		tb_add(b, "steadykit_peer_alive{peer=\"%s\"} %d\n",
		       esc(a->peers[i].node->name, e2, sizeof(e2)), a->peers[i].alive);
	tb_add(b, "# HELP steadykit_heartbeat_link_up 1 when heartbeats from the peer arrive on "
		  "that network.\n# TYPE steadykit_heartbeat_link_up gauge\n");
	for (unsigned i = 0; i < a->n_peers; i++)
		for (unsigned k = 0; k < a->cluster.n_networks; k++)
			tb_add(b, "steadykit_heartbeat_link_up{peer=\"%s\",network=\"%s\"} %d\n",
			       esc(a->peers[i].node->name, e2, sizeof(e2)),
			       esc(a->cluster.networks[k], e3, sizeof(e3)), a->peers[i].net_ok[k]);
	tb_add(b, "# HELP steadykit_heartbeat_silence_seconds Time since the last valid heartbeat "
		  "from the peer on that network (absent: never heard).\n"
		  "# TYPE steadykit_heartbeat_silence_seconds gauge\n");
	for (unsigned i = 0; i < a->n_peers; i++)
		for (unsigned k = 0; k < a->cluster.n_networks; k++)
			if (a->peers[i].last_ms[k])
				tb_add(b, "steadykit_heartbeat_silence_seconds{peer=\"%s\",network=\"%s\"} "
					  "%.3f\n", esc(a->peers[i].node->name, e2, sizeof(e2)),
				       esc(a->cluster.networks[k], e3, sizeof(e3)),
				       (now - a->peers[i].last_ms[k]) / 1000.0);
	tb_add(b, "# HELP steadykit_heartbeats_received_total Valid heartbeats received from the peer.\n"
		  "# TYPE steadykit_heartbeats_received_total counter\n");
	for (unsigned i = 0; i < a->n_peers; i++)
		tb_add(b, "steadykit_heartbeats_received_total{peer=\"%s\"} %llu\n",
		       esc(a->peers[i].node->name, e2, sizeof(e2)),
		       (unsigned long long)a->peers[i].hb_in);
	tb_add(b, "# HELP steadykit_heartbeats_refused_total Heartbeats dropped, by reason.\n"
		  "# TYPE steadykit_heartbeats_refused_total counter\n");
	for (int r = 0; r < AGENT_REJ__COUNT; r++)
		tb_add(b, "steadykit_heartbeats_refused_total{reason=\"%s\"} %llu\n", agent_rej_name(r),
		       (unsigned long long)a->hb_rejected[r]);
	tb_add(b, "# HELP steadykit_refused_total Channel connections and control requests refused.\n"
		  "# TYPE steadykit_refused_total counter\n"
		  "steadykit_refused_total{what=\"channel\"} %llu\n"
		  "steadykit_refused_total{what=\"control\"} %llu\n"
		  "steadykit_refused_total{what=\"http\"} %llu\n",
	       (unsigned long long)a->chan_rejected, (unsigned long long)a->ctl_rejected,
	       (unsigned long long)__atomic_load_n(&H.refused, __ATOMIC_RELAXED));

	/* replication, from skfused's status (the agent polls its control socket) */
	static const struct {
		const char *metric, *key, *help, *type;
		double scale;
	} fm[] = {
		{ "steadykit_replication_inflight_ops", "inflight_ops",
		  "Operations sent to the peer and not yet acknowledged.", "gauge", 1 },
		{ "steadykit_replication_inflight_bytes", "inflight_bytes",
		  "Bytes sent to the peer and not yet acknowledged.", "gauge", 1 },
		{ "steadykit_replication_seq_sent", "seq_sent", "Last operation sequence sent (primary) "
		  "or applied (secondary).", "gauge", 1 },
		{ "steadykit_replication_seq_acked", "seq_acked", "Last operation sequence acknowledged "
		  "by the peer.", "gauge", 1 },
		{ "steadykit_replication_rejected_frames_total", "rejected_frames",
		  "Replication frames refused (authentication, order, format).", "counter", 1 },
	};
	json_object *st[AGENT_MAX_MODS] = { 0 };

	for (unsigned i = 0; i < a->n_mods; i++)
		st[i] = fused_status(a->mods[i]);
	for (size_t f = 0; f < sizeof(fm) / sizeof(fm[0]); f++) {
		tb_add(b, "# HELP %s %s\n# TYPE %s %s\n", fm[f].metric, fm[f].help, fm[f].metric,
		       fm[f].type);
		for (unsigned i = 0; i < a->n_mods; i++)
			if (st[i])
				tb_add(b, "%s{module=\"%s\"} %lld\n", fm[f].metric,
				       esc(a->mods[i]->conf.name, e2, sizeof(e2)),
				       (long long)jget(st[i], fm[f].key, 0));
	}
	tb_add(b, "# HELP steadykit_replication_latency_seconds Peer acknowledgement latency "
		  "quantiles (histogram bucket lower bounds).\n"
		  "# TYPE steadykit_replication_latency_seconds gauge\n");
	for (unsigned i = 0; i < a->n_mods; i++) {
		json_object *l;

		if (!st[i] || !json_object_object_get_ex(st[i], "latency_us", &l))
			continue;
		esc(a->mods[i]->conf.name, e2, sizeof(e2));
		tb_add(b, "steadykit_replication_latency_seconds{module=\"%s\",quantile=\"0.5\"} %.6f\n"
			  "steadykit_replication_latency_seconds{module=\"%s\",quantile=\"0.99\"} %.6f\n",
		       e2, jget(l, "p50", 0) / 1e6, e2, jget(l, "p99", 0) / 1e6);
	}
	tb_add(b, "# HELP steadykit_replication_peer_in_sync 1 when skfused says the peer's copy is "
		  "in sync.\n# TYPE steadykit_replication_peer_in_sync gauge\n");
	for (unsigned i = 0; i < a->n_mods; i++)
		if (st[i])
			tb_add(b, "steadykit_replication_peer_in_sync{module=\"%s\"} %lld\n",
			       esc(a->mods[i]->conf.name, e2, sizeof(e2)),
			       (long long)jget(st[i], "peer_in_sync", 0));
	tb_add(b, "# HELP steadykit_resync_bytes Resynchronisation progress (done and total bytes).\n"
		  "# TYPE steadykit_resync_bytes gauge\n");
	for (unsigned i = 0; i < a->n_mods; i++) {
		json_object *r;

		if (!st[i] || !json_object_object_get_ex(st[i], "resync", &r))
			continue;
		esc(a->mods[i]->conf.name, e2, sizeof(e2));
		tb_add(b, "steadykit_resync_bytes{module=\"%s\",kind=\"done\"} %lld\n"
			  "steadykit_resync_bytes{module=\"%s\",kind=\"total\"} %lld\n",
		       e2, (long long)jget(r, "done_bytes", 0), e2, (long long)jget(r, "total_bytes", 0));
	}
	/* rate (smoothed by skfused) and its ETA; -1: not known yet */
	tb_add(b, "# HELP steadykit_resync_rate_bytes_per_second Resynchronisation rate.\n"
		  "# TYPE steadykit_resync_rate_bytes_per_second gauge\n"
		  "# HELP steadykit_resync_eta_seconds Time the resynchronisation still needs (-1 unknown).\n"
		  "# TYPE steadykit_resync_eta_seconds gauge\n");
	for (unsigned i = 0; i < a->n_mods; i++) {
		json_object *r;

		if (!st[i] || !json_object_object_get_ex(st[i], "resync", &r))
			continue;
		esc(a->mods[i]->conf.name, e2, sizeof(e2));
		tb_add(b, "steadykit_resync_rate_bytes_per_second{module=\"%s\"} %lld\n"
			  "steadykit_resync_eta_seconds{module=\"%s\"} %lld\n",
		       e2, (long long)jget(r, "rate_bps", 0), e2, (long long)jget(r, "eta_s", -1));
	}
	for (unsigned i = 0; i < a->n_mods; i++)
		if (st[i])
			json_object_put(st[i]);
}

/* /state is what `skctl state --json` shows (agent/ctl.c builds it for both) */
static char *render_state(struct agent *a, size_t *len)
{
	json_object *d = agent_state_json(a, "");
	const char *s;
	char *out;

	s = json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN);
	*len = strlen(s) + 1;
	out = malloc(*len);
	if (out) {
		memcpy(out, s, *len - 1);
		out[*len - 1] = '\n';
	}
	json_object_put(d);
	return out;
}

void agent_http_touch(struct agent *a)
{
	struct snap n = { 0 }, old;
	struct tb mb = { 0 };

	if (!H.on || a != H.a)
		return;
	render_metrics(a, &mb);
	n.state = render_state(a, &n.state_len);
	if (mb.oom || !n.state) {
		free(mb.p);
		free(n.state);
		return; /* keep the previous snapshot */
	}
	n.metrics = mb.p;
	n.metrics_len = mb.n;
	n.n_mods = a->n_mods;
	for (unsigned i = 0; i < a->n_mods; i++) {
		snprintf(n.mods[i].name, sizeof(n.mods[i].name), "%s", a->mods[i]->conf.name);
		n.mods[i].state = a->mods[i]->state;
	}
	pthread_mutex_lock(&H.mu);
	old = H.cur;
	H.cur = n;
	pthread_mutex_unlock(&H.mu);
	free(old.state);
	free(old.metrics);
}

static void on_timer(uv_timer_t *t)
{
	agent_http_touch(t->data);
}

/* ---- the HTTP thread: reads only H.cur, under H.mu ---- */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned code, const char *ctype,
				 char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (!body) {
		body = strdup("out of memory\n");
		if (!body)
			return MHD_NO;
		len = strlen(body);
		code = MHD_HTTP_SERVICE_UNAVAILABLE;
		ctype = "text/plain; charset=utf-8";
	}
	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", ctype);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, "Allow", "GET");
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_msg(struct MHD_Connection *c, unsigned code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static enum MHD_Result send_msg(struct MHD_Connection *c, unsigned code, const char *fmt, ...)
{
	char buf[512], *b;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	b = strdup(buf);
	return send_text(c, code, "text/plain; charset=utf-8", b, b ? strlen(b) : 0);
}

static char *dup_body(const char *p, size_t n)
{
	char *b = p ? malloc(n ? n : 1) : NULL;

	if (b && n)
		memcpy(b, p, n);
	return b;
}

static enum MHD_Result answer_ready(struct MHD_Connection *c)
{
	const char *only = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "m");
	char buf[64 + AGENT_MAX_MODS * (SK_CTL_NAME_LEN + 12)];
	size_t o = 0;
	unsigned found = 0, ready = 0;

	pthread_mutex_lock(&H.mu);
	for (unsigned i = 0; i < H.cur.n_mods; i++) {
		const struct snap_mod *m = &H.cur.mods[i];

		if (only && strcmp(only, m->name))
			continue;
		found++;
		/* ALONE serves too (a primary whose peer is gone): a load balancer must keep it */
		if (sk_state_is_primary(m->state) || m->state == SK_ST_UP)
			ready++;
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s %s\n", m->name,
				      sk_state_name(m->state));
		if (o >= sizeof(buf))
			o = sizeof(buf) - 1;
	}
	pthread_mutex_unlock(&H.mu);
	buf[o] = '\0';
	if (only && !found) {
		__atomic_add_fetch(&H.refused, 1, __ATOMIC_RELAXED);
		return send_msg(c, MHD_HTTP_NOT_FOUND, "no module named by ?m= on this node\n");
	}
	if (!found)
		return send_msg(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no module on this node\n");
	return send_msg(c, ready == found ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "%s", buf);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	char *b;
	size_t n;

	(void)cls;
	(void)version;
	(void)upload;
	(void)con_cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET)) {
		/* refuse at once, body or not: nothing here takes input */
		*upload_size = 0;
		__atomic_add_fetch(&H.refused, 1, __ATOMIC_RELAXED);
		return send_msg(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
	}
	if (strlen(url) > MAX_URL) {
		__atomic_add_fetch(&H.refused, 1, __ATOMIC_RELAXED);
		return send_msg(c, MHD_HTTP_URI_TOO_LONG, "URL too long\n");
	}
	if (!strcmp(url, "/ready"))
		return answer_ready(c);
	if (!strcmp(url, "/metrics")) {
		pthread_mutex_lock(&H.mu);
		n = H.cur.metrics_len;
		b = dup_body(H.cur.metrics, n);
		pthread_mutex_unlock(&H.mu);
		return send_text(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b, n);
	}
	if (!strcmp(url, "/state")) {
		pthread_mutex_lock(&H.mu);
		n = H.cur.state_len;
		b = dup_body(H.cur.state, n);
		pthread_mutex_unlock(&H.mu);
		return send_text(c, MHD_HTTP_OK, "application/json", b, n);
	}
	__atomic_add_fetch(&H.refused, 1, __ATOMIC_RELAXED);
	return send_msg(c, MHD_HTTP_NOT_FOUND, "not found: /ready[?m=MODULE], /metrics, /state\n");
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[300];

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	sk_warn("http: %s", buf);
}

int agent_http_start(struct agent *a, const struct sk_conf_addr *addr, uint16_t port)
{
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;

	if (sk_conf_sockaddr(addr, port, &ss) <= 0)
		return -EINVAL;
	if (addr->family == AF_INET6)
		flags |= MHD_USE_IPv6;
	H.a = a;
	H.on = true;
	for (unsigned i = 0; i < a->n_mods; i++)
		for (unsigned k = 0; k < a->mods[i]->hist_n; k++)
			count_one(&H.cnt[i], &a->mods[i]->hist[(a->mods[i]->hist_head + k) % AGENT_HIST]);
	agent_http_touch(a); /* a first snapshot before the first request can arrive */
	H.d = MHD_start_daemon(flags, port, NULL, NULL, on_request, NULL,
			       MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
			       MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONN,
			       MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)MAX_PER_IP,
			       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
			       MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEM,
			       MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
			       MHD_OPTION_END);
	if (!H.d) {
		sk_err("http: cannot listen on %s port %u (address not on this node, or port in "
		       "use); fix \"http\".\"listen\" in cluster.json or --http", addr->text, port);
		H.on = false;
		return -EADDRNOTAVAIL;
	}
	uv_timer_init(a->loop, &H.timer);
	H.timer.data = a;
	uv_timer_start(&H.timer, on_timer, SNAP_MS, SNAP_MS);
	uv_unref((uv_handle_t *)&H.timer); /* never keeps the loop alive at shutdown */
	sk_info("http: listening on %s%s%s:%u (/ready /metrics /state)",
		addr->family == AF_INET6 ? "[" : "", addr->text, addr->family == AF_INET6 ? "]" : "",
		port);
	return 0;
}

void agent_http_stop(struct agent *a)
{
	(void)a;
	if (!H.on)
		return;
	H.on = false;
	if (H.d)
		MHD_stop_daemon(H.d); /* joins the HTTP thread */
	H.d = NULL;
	agent_close((uv_handle_t *)&H.timer);
	pthread_mutex_lock(&H.mu);
	free(H.cur.state);
	free(H.cur.metrics);
	memset(&H.cur, 0, sizeof(H.cur));
	pthread_mutex_unlock(&H.mu);
}
