/* agent/ctl.c: the control socket: peer check, one request per line (libsk/ctl), verbs -> module commands. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define MAX_CLIENTS 16
#define IDLE_MS 10000

const char *agent_rej_name(enum agent_rej r);

struct fanout;

struct client {
	struct agent *a;
	uv_pipe_t pipe;
	uv_timer_t idle;
	int open;
	bool closing;
	struct fanout *fan; /* skctl -H in progress for this client */
	struct sk_ctl_lbuf lb;
	char line[SK_CTL_MAX_REQ];
};

static unsigned n_clients;

static void on_closed(uv_handle_t *h)
{
	struct client *c = h->data;

	if (--c->open == 0) {
		free(c);
		n_clients--;
	}
}

static void fan_forget(struct fanout *f);

static void client_close(struct client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->fan)
		fan_forget(c->fan); /* the fan-out answers nobody now */
	uv_close((uv_handle_t *)&c->pipe, on_closed);
	uv_close((uv_handle_t *)&c->idle, on_closed);
}

struct wreq {
	uv_write_t w;
	struct client *c;
	bool close_after;
	char *buf;
};

static void on_written(uv_write_t *w, int status)
{
	struct wreq *r = w->data;

	if (status < 0 || r->close_after)
		client_close(r->c);
	free(r->buf);
	free(r);
}

static void reply(struct client *c, const struct sk_ctl_reply *rep, bool close_after)
{
	struct wreq *r = calloc(1, sizeof(*r));
	size_t len = 0;
	uv_buf_t b;

	if (!r)
		goto fail;
	r->buf = sk_ctl_reply_encode(rep, &len);
	if (!r->buf)
		goto fail;
	r->c = c;
	r->close_after = close_after;
	r->w.data = r;
	b = uv_buf_init(r->buf, (unsigned)len);
	if (uv_write(&r->w, (uv_stream_t *)&c->pipe, &b, 1, on_written) == 0)
		return;
fail:
	if (r)
		free(r->buf);
	free(r);
	client_close(c);
}

static void reply_err(struct client *c, bool close_after, const char *hint, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void reply_err(struct client *c, bool close_after, const char *hint, const char *fmt, ...)
{
	struct sk_ctl_reply r = { .ok = false };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r.error, sizeof(r.error), fmt, ap);
	va_end(ap);
	snprintf(r.hint, sizeof(r.hint), "%s", hint ? hint : "");
	reply(c, &r, close_after);
}

static struct agent_mod *find_mod(struct agent *a, const char *name)
{
	for (unsigned i = 0; i < a->n_mods; i++)
		if (!strcmp(a->mods[i]->conf.name, name))
			return a->mods[i];
	return NULL;
}

json_object *agent_state_json(struct agent *a, const char *only)
{
	json_object *d = json_object_new_object(), *mods = json_object_new_array();
	json_object *nodes = json_object_new_array(), *cnt = json_object_new_object();
	uint64_t now = agent_now_ms();

	json_object_object_add(d, "cluster", json_object_new_string(a->cluster.name));
	json_object_object_add(d, "node", json_object_new_string(a->self->name));
	for (unsigned i = 0; i < a->n_mods; i++) {
		struct sk_ctl_mod cm;
		json_object *o;

		if (only[0] && strcmp(a->mods[i]->conf.name, only))
			continue;
		agent_mod_fill_ctl(a->mods[i], &cm);
		if (sk_ctl_mod_to_json(&cm, &o) == 0)
			json_object_array_add(mods, o);
	}
	json_object_object_add(d, "modules", mods);
	for (unsigned i = 0; i < a->n_peers; i++) {
		struct agent_peer *p = &a->peers[i];
		json_object *o = json_object_new_object(), *nets = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(p->node->name));
		json_object_object_add(o, "id", json_object_new_int(p->node->id));
		json_object_object_add(o, "alive", json_object_new_boolean(p->alive));
		json_object_object_add(o, "channel", json_object_new_boolean(p->chan != NULL));
		for (unsigned k = 0; k < a->cluster.n_networks; k++)
			json_object_object_add(nets, a->cluster.networks[k],
					       json_object_new_int64(p->last_ms[k] ?
						       (int64_t)(now - p->last_ms[k]) : -1));
		json_object_object_add(o, "last_heard_ms", nets);
		json_object_array_add(nodes, o);
	}
	json_object_object_add(d, "nodes", nodes);
	json_object_object_add(cnt, "heartbeats_ok", json_object_new_int64((int64_t)a->hb_ok));
	for (int r = 0; r < AGENT_REJ__COUNT; r++) {
		char key[48];

		snprintf(key, sizeof(key), "heartbeats_refused_%s", agent_rej_name(r));
		json_object_object_add(cnt, key, json_object_new_int64((int64_t)a->hb_rejected[r]));
	}
	json_object_object_add(cnt, "channel_refused", json_object_new_int64((int64_t)a->chan_rejected));
	json_object_object_add(cnt, "control_refused", json_object_new_int64((int64_t)a->ctl_rejected));
	json_object_object_add(d, "counters", cnt);
	return d;
}

static json_object *why_data(struct agent *a, const char *only, unsigned lines)
{
	json_object *d = json_object_new_object(), *arr = json_object_new_array();

	json_object_object_add(d, "node", json_object_new_string(a->self->name));
	for (unsigned i = 0; i < a->n_mods; i++) {
		struct agent_mod *m = a->mods[i];
		unsigned from = m->hist_n > lines ? m->hist_n - lines : 0;

		if (only[0] && strcmp(m->conf.name, only))
			continue;
		for (unsigned k = from; k < m->hist_n; k++) {
			const struct sk_ctl_trans *t = &m->hist[(m->hist_head + k) % AGENT_HIST];
			char words[600];
			json_object *o;

			if (sk_ctl_trans_to_json(t, &o) < 0)
				continue;
			sk_ctl_trans_words(t, a->self->name, words, sizeof(words));
			json_object_object_add(o, "words", json_object_new_string(words));
			json_object_array_add(arr, o);
		}
	}
	json_object_object_add(d, "transitions", arr);
	return d;
}

/* The last `lines` lines of the module log (read from its last 256 KiB). */
static json_object *log_data(struct agent_mod *m, unsigned lines)
{
	json_object *d = json_object_new_object(), *arr = json_object_new_array();
	size_t cap = 256 * 1024;
	char *buf = malloc(cap + 1);
	int fd = open(m->logpath, O_RDONLY | O_CLOEXEC);
	ssize_t n = 0;

	if (buf && fd >= 0) {
		off_t size = lseek(fd, 0, SEEK_END);
		off_t off = size > (off_t)cap ? size - (off_t)cap : 0;

		n = pread(fd, buf, cap, off);
	}
	if (fd >= 0)
		close(fd);
	if (buf && n > 0) {
		char *end = buf + n, *p = end;
		unsigned cnt = 0;

		*end = '\0';
		if (p > buf && p[-1] == '\n')
			p--;
		while (p > buf && cnt < lines) {
			p--;
			if (*p == '\n')
				cnt++;
		}
		if (*p == '\n')
			p++;
		for (char *s = p, *nl; s < end && (nl = strchr(s, '\n')); s = nl + 1) {
			*nl = '\0';
			json_object_array_add(arr, json_object_new_string(s));
		}
	}
	free(buf);
	json_object_object_add(d, "module", json_object_new_string(m->conf.name));
	json_object_object_add(d, "path", json_object_new_string(m->logpath));
	json_object_object_add(d, "lines", arr);
	return d;
}

static void set_err(struct sk_ctl_reply *r, const char *hint, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(struct sk_ctl_reply *r, const char *hint, const char *fmt, ...)
{
	va_list ap;

	r->ok = false;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
	snprintf(r->hint, sizeof(r->hint), "%s", hint ? hint : "");
}

/* Run one decoded request on this node: r gets ok + data, or error + hint. */
static void run_req(struct agent *a, const struct sk_ctl_req *qq, struct sk_ctl_reply *r)
{
	struct sk_ctl_req q = *qq;
	struct agent_mod *m = NULL;
	char err[SK_CTL_TEXT_LEN], hint[SK_CTL_TEXT_LEN];
	int rc;

	memset(r, 0, sizeof(*r));
	r->ok = true;
	if (q.module[0] && !(m = find_mod(a, q.module))) {
		char names[256] = "";
		size_t n = 0;

		for (unsigned i = 0; i < a->n_mods && n < sizeof(names); i++)
			n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", i ? ", " : "",
					      a->mods[i]->conf.name);
		snprintf(hint, sizeof(hint), "modules on %s: %s", a->self->name,
			 a->n_mods ? names : "none installed");
		set_err(r, hint, "no module \"%s\" on %s", q.module, a->self->name);
		return;
	}
	switch (q.verb) {
	case SK_CTL_STATE:
		r->data = agent_state_json(a, q.module);
		break;
	case SK_CTL_WHY:
		r->data = why_data(a, q.module, q.lines ? q.lines : 10);
		break;
	case SK_CTL_LOG:
		r->data = log_data(m, q.lines ? q.lines : 50);
		break;
	case SK_CTL_RESTART:
	case SK_CTL_STOPSTART:
	case SK_CTL_FORCESTOP:
		rc = agent_opcmd(m, q.verb, &r->data, err, sizeof(err), hint, sizeof(hint));
		if (rc < 0) {
			set_err(r, hint, "%s", err);
			return;
		}
		agent_mod_log(m, "operator: %s", sk_ctl_verb_name(q.verb));
		if (!r->data)
			r->data = json_object_new_object();
		json_object_object_add(r->data, "accepted", json_object_new_string(sk_ctl_verb_name(q.verb)));
		break;
	default:
		if (q.verb == SK_CTL_START || q.verb == SK_CTL_STOP)
			agent_opcmd_cancel(m); /* the operator's word wins over a pending stopstart */
		rc = agent_mod_cmd(m, q.verb, q.force, err, sizeof(err), hint, sizeof(hint));
		if (rc < 0) {
			set_err(r, hint, "%s", err);
			return;
		}
		agent_mod_log(m, "operator: %s%s", sk_ctl_verb_name(q.verb), q.force ? " --force" : "");
		r->data = json_object_new_object();
		json_object_object_add(r->data, "accepted", json_object_new_string(sk_ctl_verb_name(q.verb)));
		break;
	}
}

/* ---- skctl -H: the request runs here and on every peer (channel), answers gathered ---- */

#define FAN_TIMEOUT_MS 5000

struct fanout {
	struct client *c; /* NULL once the client went away (fan_forget): nobody to answer */
	struct agent *a;
	uint32_t id;
	unsigned waiting;
	bool want[SK_CONF_MAX_NODES]; /* peers[i] still owes its answer */
	json_object *nodes;
	uv_timer_t timer;
};

static void fan_forget(struct fanout *f)
{
	f->c = NULL;
}

static uint32_t fan_ids;
static struct fanout *fans[MAX_CLIENTS];

static void fan_add(struct fanout *f, const char *node, const struct sk_ctl_reply *r)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "node", json_object_new_string(node));
	sk_ctl_reply_fill(o, r); /* as a reply line, with the node's name first */
	json_object_array_add(f->nodes, o);
}

static void fan_freed(uv_handle_t *h)
{
	struct fanout *f = h->data;

	json_object_put(f->nodes);
	free(f);
}

static void fan_finish(struct fanout *f)
{
	for (unsigned i = 0; i < MAX_CLIENTS; i++)
		if (fans[i] == f)
			fans[i] = NULL;
	if (f->c) {
		struct sk_ctl_reply r = { .ok = true, .data = json_object_new_object() };

		f->c->fan = NULL;
		json_object_object_add(r.data, "nodes", json_object_get(f->nodes));
		reply(f->c, &r, false);
		sk_ctl_reply_free(&r);
	}
	uv_close((uv_handle_t *)&f->timer, fan_freed);
}

static void on_fan_timeout(uv_timer_t *t)
{
	struct fanout *f = t->data;

	for (unsigned i = 0; i < f->a->n_peers; i++)
		if (f->want[i]) {
			struct sk_ctl_reply r = { 0 };
			char hint[SK_CTL_TEXT_LEN];

			snprintf(hint, sizeof(hint), "check %s's agent (skctl state there, or "
				 "journalctl -u skagentd on it)", f->a->peers[i].node->name);
			set_err(&r, hint, "no answer from %s within %d ms",
				f->a->peers[i].node->name, FAN_TIMEOUT_MS);
			fan_add(f, f->a->peers[i].node->name, &r);
		}
	fan_finish(f);
}

static void fan_start(struct client *c, const struct sk_ctl_req *q)
{
	struct agent *a = c->a;
	struct sk_ctl_req one = *q;
	struct sk_ctl_reply r;
	struct fanout *f = calloc(1, sizeof(*f));
	char line[SK_CTL_MAX_REQ + 1];
	long n;
	unsigned slot = MAX_CLIENTS;

	for (unsigned i = 0; i < MAX_CLIENTS && slot == MAX_CLIENTS; i++)
		if (!fans[i])
			slot = i;
	if (!f || slot == MAX_CLIENTS) {
		free(f);
		reply_err(c, false, "retry in a moment", "too many -H requests at once");
		return;
	}
	one.all = false;
	n = sk_ctl_req_encode(&one, line, sizeof(line));
	f->c = c;
	f->a = a;
	f->id = ++fan_ids;
	f->nodes = json_object_new_array();
	uv_timer_init(a->loop, &f->timer);
	f->timer.data = f;
	fans[slot] = f;
	c->fan = f;
	run_req(a, &one, &r); /* this node first */
	fan_add(f, a->self->name, &r);
	sk_ctl_reply_free(&r);
	for (unsigned i = 0; i < a->n_peers; i++) {
		struct agent_peer *p = &a->peers[i];

		if (n > 1 && agent_chan_send_ctl(a, p, false, f->id, line, (size_t)n - 1) == 0) {
			f->want[i] = true;
			f->waiting++;
		} else {
			char hint[SK_CTL_TEXT_LEN];

			memset(&r, 0, sizeof(r));
			snprintf(hint, sizeof(hint), "is %s's agent running? (skctl state here shows "
				 "the channel to it)", p->node->name);
			set_err(&r, hint, "%s not reachable: no agent channel to it", p->node->name);
			fan_add(f, p->node->name, &r);
		}
	}
	if (!f->waiting)
		fan_finish(f);
	else
		uv_timer_start(&f->timer, on_fan_timeout, FAN_TIMEOUT_MS, 0);
}

void agent_ctl_remote(struct agent *a, struct agent_peer *p, bool answer, uint32_t id,
		      const char *text, size_t n)
{
	char err[SK_CTL_TEXT_LEN];

	if (!answer) {
		/* a peer's operator ran skctl -H: run it here (never fanned out again) */
		struct sk_ctl_req q;
		struct sk_ctl_reply r = { 0 };
		char *out;
		size_t len = 0;

		if (sk_ctl_req_decode(text, n, &q, err, sizeof(err)) < 0 || q.all) {
			a->ctl_rejected++;
			set_err(&r, "use an skctl of the same version on every node", "bad request "
				"from %s: %s", p->node->name, q.all ? "nested -H" : err);
		} else {
			sk_info("control request from %s's operator (skctl -H): %s%s%s",
				p->node->name, sk_ctl_verb_name(q.verb), q.module[0] ? " -m " : "",
				q.module);
			run_req(a, &q, &r);
		}
		out = sk_ctl_reply_encode(&r, &len);
		if (out && len - 1 > SK_AMSG_CTL_MAX) {
			struct sk_ctl_reply big = { 0 };
			char hint[SK_CTL_TEXT_LEN];

			free(out);
			snprintf(hint, sizeof(hint), "run it on %s itself, or ask for less (-m, -n)",
				 a->self->name);
			set_err(&big, hint, "the answer (%zu bytes) is larger than the agent channel "
				"carries (%d)", len - 1, SK_AMSG_CTL_MAX);
			out = sk_ctl_reply_encode(&big, &len);
		}
		if (out)
			agent_chan_send_ctl(a, p, true, id, out, len - 1);
		free(out);
		sk_ctl_reply_free(&r);
		return;
	}
	for (unsigned k = 0; k < MAX_CLIENTS; k++) {
		struct fanout *f = fans[k];
		unsigned i = (unsigned)(p - a->peers);
		struct sk_ctl_reply r;

		if (!f || f->id != id || i >= a->n_peers || !f->want[i])
			continue;
		if (sk_ctl_reply_decode(text, n, &r, err, sizeof(err)) < 0) {
			a->chan_rejected++;
			memset(&r, 0, sizeof(r));
			set_err(&r, "use the same version of SteadyKit on every node",
				"unreadable answer from %s: %s", p->node->name, err);
		}
		fan_add(f, p->node->name, &r);
		sk_ctl_reply_free(&r);
		f->want[i] = false;
		if (--f->waiting == 0) {
			uv_timer_stop(&f->timer);
			fan_finish(f);
		}
		return;
	}
	/* late (after the timeout) or unknown: dropped */
}

static void handle(struct client *c, const char *line, size_t len)
{
	struct agent *a = c->a;
	struct sk_ctl_req q;
	struct sk_ctl_reply r;
	char err[SK_CTL_TEXT_LEN];
	int rc;

	a->ctl_requests++;
	rc = sk_ctl_req_decode(line, len, &q, err, sizeof(err));
	if (rc < 0) {
		a->ctl_rejected++;
		reply_err(c, false, rc == -EPROTO ? "use an skctl of the same version as skagentd" :
			  "see docs/skctl.md for the request format", "bad request: %s", err);
		return;
	}
	if (q.all) {
		if (c->fan) {
			reply_err(c, false, "wait for its answer", "a -H request is running on this "
				  "connection");
			return;
		}
		fan_start(c, &q);
		return;
	}
	run_req(a, &q, &r);
	if (r.ok)
		reply(c, &r, false);
	else
		reply_err(c, false, r.hint, "%s", r.error);
	sk_ctl_reply_free(&r);
}

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	struct client *c = h->data;
	static char tmp[SK_CTL_MAX_REQ];

	(void)s;
	(void)c;
	b->base = tmp;
	b->len = sizeof(tmp);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct client *c = st->data;
	size_t len;

	if (n < 0) {
		client_close(c);
		return;
	}
	if (c->closing)
		return;
	uv_timer_again(&c->idle);
	if (sk_ctl_lbuf_push(&c->lb, b->base, (size_t)n) < 0) {
		c->a->ctl_rejected++;
		uv_read_stop(st);
		reply_err(c, true, "one JSON request per line", "request longer than %d bytes",
			  SK_CTL_MAX_REQ);
		return;
	}
	while (!c->closing && sk_ctl_lbuf_line(&c->lb, c->line, &len) == 1)
		handle(c, c->line, len);
}

static void on_idle(uv_timer_t *t)
{
	client_close(t->data);
}

static void on_conn(uv_stream_t *srv, int status)
{
	struct agent *a = srv->data;
	struct client *c;
	uv_os_fd_t fd;
	uid_t uid = 0;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->a = a;
	uv_pipe_init(a->loop, &c->pipe, 0);
	uv_timer_init(a->loop, &c->idle);
	c->pipe.data = c->idle.data = c;
	c->open = 2;
	n_clients++;
	if (uv_accept(srv, (uv_stream_t *)&c->pipe) < 0) {
		client_close(c);
		return;
	}
	if (n_clients > MAX_CLIENTS) {
		a->ctl_rejected++;
		reply_err(c, true, "retry in a moment", "too many control connections");
		return;
	}
	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 ||
	    sk_ctl_peer_allowed(fd, a->ctl_group, &uid) < 0) {
		a->ctl_rejected++;
		sk_warn("control socket: uid %u refused", (unsigned)uid);
		reply_err(c, true, "run skctl as root (or as a member of the agent's --group)",
			  "permission denied for uid %u", (unsigned)uid);
		return;
	}
	uv_timer_start(&c->idle, on_idle, IDLE_MS, IDLE_MS);
	uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

int agent_ctl_start(struct agent *a)
{
	char dir[AGENT_PATH];
	char *slash;
	int rc;

	snprintf(dir, sizeof(dir), "%s", a->sock_path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755);
	}
	/* a stale socket of a dead agent; a live agent still answers on it */
	{
		struct sk_ctl_req q = { .verb = SK_CTL_STATE };
		struct sk_ctl_reply r;
		char err[128];

		if (sk_ctl_call(a->sock_path, &q, &r, 500, err, sizeof(err)) == 0) {
			sk_ctl_reply_free(&r);
			sk_err("another agent answers on %s: not starting a second one", a->sock_path);
			return -EADDRINUSE;
		}
		unlink(a->sock_path);
	}
	uv_pipe_init(a->loop, &a->ctl, 0);
	a->ctl.data = a;
	rc = uv_pipe_bind(&a->ctl, a->sock_path);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&a->ctl, 16, on_conn);
	if (rc < 0) {
		sk_err("control socket %s: %s", a->sock_path, uv_strerror(rc));
		return rc;
	}
	chmod(a->sock_path, a->ctl_group == (gid_t)-1 ? 0600 : 0660);
	if (a->ctl_group != (gid_t)-1 && chown(a->sock_path, (uid_t)-1, a->ctl_group) < 0)
		sk_warn("control socket: cannot give it to the group: %s", strerror(errno));
	a->ctl_open = true;
	return 0;
}

void agent_ctl_stop(struct agent *a)
{
	if (a->ctl_open) {
		agent_close((uv_handle_t *)&a->ctl);
		unlink(a->sock_path);
		a->ctl_open = false;
	}
}
