/* agent/fused.c: supervise skfused for a module: spawn in a role, wait for "ready", stop, restart with backoff, poll status. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define READY_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 5000

/* skfused next to skagentd (installed), in the build tree, or $SK_FUSED. */
static void fused_path(char *out, size_t cap)
{
	char self[512];
	ssize_t n;
	const char *env = getenv("SK_FUSED");

	if (env && env[0]) {
		snprintf(out, cap, "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		char *slash;

		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(out, cap, "%.511s/skfused", self);
			if (access(out, X_OK) == 0)
				return;
			snprintf(out, cap, "%.511s/../fused/skfused", self);
			if (access(out, X_OK) == 0)
				return;
		}
	}
	snprintf(out, cap, "skfused");
}

/*
 * Does this skfused take --key-fd (the master key over an inherited fd, so a start costs no
 * key derivation)? Asked once, from its --help, bounded: 4 KiB of output, 2 s.
 */
static bool fused_has_key_fd(const char *bin)
{
	static int known = -1;
	char out[4096];
	size_t n = 0;
	int pfd[2], status;
	pid_t pid;

	if (known >= 0)
		return known;
	known = 0;
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return false;
	pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		execl(bin, bin, "--help", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	if (pid > 0) {
		uint64_t deadline = agent_now_ms() + 2000;
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };

		while (n < sizeof(out) - 1 && agent_now_ms() < deadline &&
		       poll(&p, 1, (int)(deadline - agent_now_ms())) > 0) {
			ssize_t r = read(pfd[0], out + n, sizeof(out) - 1 - n);

			if (r <= 0)
				break;
			n += (size_t)r;
		}
		kill(pid, SIGKILL); /* it has exited already; if not, it is ours to stop */
		waitpid(pid, &status, 0);
	}
	close(pfd[0]);
	out[n] = '\0';
	known = strstr(out, "--key-fd") != NULL;
	return known;
}

bool agent_fused_probe(void)
{
	char bin[PATH_MAX];

	fused_path(bin, sizeof(bin));
	return fused_has_key_fd(bin);
}

static void on_line(struct agent_mod *m, const char *line, size_t n)
{
	struct agent_fused *fu = &m->fused;

	agent_mod_log_raw(m, "skfused", line, n);
	if (!fu->ready && memmem(line, n, "ready", 5)) {
		fu->ready = true;
		fu->restarts = 0;
		uv_timer_stop(&fu->timer);
		sk_info("module %s: skfused %s ready in %llu ms", m->conf.name,
			fu->role == AGENT_ROLE_PRIMARY ? "primary" : "secondary",
			(unsigned long long)(agent_now_ms() - fu->started_ms));
		agent_mod_step_done(m, 0, NULL);
	}
}

/* a dead child's late lines are logged but no longer count as "ready" */
static void on_child_line(struct agent_child *c, const char *line, size_t n)
{
	if (c->m->fused.run == c)
		on_line(c->m, line, n);
	else
		agent_mod_log_raw(c->m, "skfused", line, n);
}

static void on_backoff(uv_timer_t *t);

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
	struct agent_child *r = p->data;

	agent_child_close_proc(r);
	/* skfused has no children: its end of the pipe is closed; read what is left, then EOF */
	agent_fused_exited(r->m, status, sig);
}

/* The child we spawned, or one taken over after an agent restart (agent/adopt.c), exited. */
void agent_fused_exited(struct agent_mod *m, int64_t status, int sig)
{
	struct agent_fused *fu = &m->fused;
	bool was_ready = fu->ready, stopping = fu->stopping;

	fu->running = false;
	fu->ready = false;
	fu->run = NULL;
	fu->pid = 0;
	uv_timer_stop(&fu->timer);
	fu->fence_wait = false;
	uv_timer_stop(&fu->fence_timer);
	agent_mod_log(m, "skfused (%s) exited: status %lld signal %d", fu->role ==
		      AGENT_ROLE_PRIMARY ? "primary" : "secondary", (long long)status, sig);
	if (stopping) {
		fu->stopping = false;
		fu->role = AGENT_ROLE_NONE;
		agent_mod_step_done(m, 0, NULL);
		return;
	}
	if (!was_ready) {
		/* a start step is waiting for it */
		char why[96];

		snprintf(why, sizeof(why), "skfused exited before ready (status %lld, signal %d)",
			 (long long)status, sig);
		fu->role = AGENT_ROLE_NONE;
		agent_mod_step_done(m, -EIO, why);
		return;
	}
	/* a crash while serving: restart in the same role, with backoff */
	{
		uint64_t ms = (uint64_t)BACKOFF_MIN_MS << (fu->restarts < 5 ? fu->restarts : 5);

		if (ms > BACKOFF_MAX_MS)
			ms = BACKOFF_MAX_MS;
		fu->restarts++;
		sk_warn("module %s: skfused %s crashed (status %lld, signal %d): restart %u in %llu ms",
			m->conf.name, fu->role == AGENT_ROLE_PRIMARY ? "primary" : "secondary",
			(long long)status, sig, fu->restarts, (unsigned long long)ms);
		uv_timer_start(&fu->timer, on_backoff, ms, 0);
	}
}

static void on_ready_timeout(uv_timer_t *t)
{
	struct agent_mod *m = t->data;

	sk_err("module %s: skfused not ready after %d ms: killing it", m->conf.name,
	       READY_TIMEOUT_MS);
	if (m->fused.running)
		kill(m->fused.pid, SIGKILL);
}

static void on_stop_timeout(uv_timer_t *t)
{
	struct agent_mod *m = t->data;

	sk_warn("module %s: skfused did not exit %d ms after SIGTERM: SIGKILL", m->conf.name,
		STOP_TIMEOUT_MS);
	if (m->fused.running)
		kill(m->fused.pid, SIGKILL);
}

/* A FUSE mount whose daemon died answers ENOTCONN: detach it so a new skfused can open DIR. */
static void clear_dead_mount(struct agent_mod *m)
{
	struct stat st;

	if (stat(m->dir, &st) < 0 && errno == ENOTCONN) {
		if (umount2(m->dir, MNT_DETACH) == 0)
			agent_mod_log(m, "detached the dead FUSE mount on %s", m->dir);
		else
			agent_mod_log(m, "cannot detach the dead mount on %s: %s", m->dir,
				      strerror(errno));
	}
}

static int spawn(struct agent_mod *m)
{
	struct agent *a = m->a;
	struct agent_fused *fu = &m->fused;
	static const char *const modes[] = { "sync", "semi-sync", "async" };
	char bin[PATH_MAX], state[AGENT_PATH + 8], addr[80], modid[16], nodeid[8], budget[16];
	const char *args[24];
	struct agent_child *r;
	int n = 0, rc, wfd;
	uv_process_options_t o = { 0 };
	uv_stdio_container_t io[4];
	int kfd[2];
	bool key_fd;
	const struct sk_conf_addr *self = &a->self->addr[0], *peer = &m->peer->node->addr[0];

	fused_path(bin, sizeof(bin));
	snprintf(state, sizeof(state), "%s/fused", m->statedir);
	snprintf(modid, sizeof(modid), "%u", m->conf.id);
	snprintf(nodeid, sizeof(nodeid), "%u", a->self->id);
	snprintf(budget, sizeof(budget), "%u", m->conf.latency_budget_ms);
	if (fu->role == AGENT_ROLE_PRIMARY)
		snprintf(addr, sizeof(addr), peer->family == AF_INET6 ? "[%s]:%u" : "%s:%u",
			 peer->text, m->repl_port);
	else
		snprintf(addr, sizeof(addr), self->family == AF_INET6 ? "[%s]:%u" : "%s:%u",
			 self->text, m->repl_port);
	args[n++] = bin;
	args[n++] = "--role";
	args[n++] = fu->role == AGENT_ROLE_PRIMARY ? "primary" : "secondary";
	args[n++] = "--dir";
	args[n++] = m->dir;
	args[n++] = fu->role == AGENT_ROLE_PRIMARY ? "--peer" : "--listen";
	args[n++] = addr;
	key_fd = fused_has_key_fd(bin);
	if (key_fd) {
		/* the key we derived at start, over a pipe that becomes the child's fd 3 */
		args[n++] = "--key-fd";
		args[n++] = "3";
	} else {
		args[n++] = "--secret";
		args[n++] = a->secret_path;
	}
	if (fu->role == AGENT_ROLE_PRIMARY) {
		args[n++] = "--mode";
		args[n++] = modes[m->conf.repl_mode];
		args[n++] = "--budget-ms";
		args[n++] = budget;
	}
	if (!m->conf.encrypt)
		args[n++] = "--no-encrypt"; /* "encrypt": false in userconfig.json; both nodes say so */
	args[n++] = "--state";
	args[n++] = state;
	args[n++] = "--ctl";
	args[n++] = m->fused_ctl;
	args[n++] = "--module-id";
	args[n++] = modid;
	args[n++] = "--node-id";
	args[n++] = nodeid;
	args[n] = NULL;

	clear_dead_mount(m);
	r = agent_child_new(m, sizeof(*r), "skfused", io, &wfd, &rc);
	if (!r)
		return rc;
	r->line = on_child_line;
	kfd[0] = kfd[1] = -1;
	if (key_fd) {
		/* 32 bytes fit in any pipe buffer: written and closed before the child reads */
		if (pipe2(kfd, O_CLOEXEC) < 0 ||
		    write(kfd[1], a->master.b, sizeof(a->master.b)) != (ssize_t)sizeof(a->master.b)) {
			rc = errno ? -errno : -EIO;
			if (kfd[0] >= 0) {
				close(kfd[0]);
				close(kfd[1]);
			}
			close(wfd);
			agent_child_drop(r);
			return rc;
		}
		close(kfd[1]);
		io[3].flags = UV_INHERIT_FD;
		io[3].data.fd = kfd[0];
	}
	o.file = bin;
	o.args = (char **)args;
	o.stdio = io;
	o.stdio_count = key_fd ? 4 : 3;
	o.exit_cb = on_exit_cb;
	rc = agent_child_spawn(r, &o, wfd);
	if (kfd[0] >= 0)
		close(kfd[0]);
	if (rc < 0) {
		agent_mod_log(m, "cannot start %s: %s", bin, uv_strerror(rc));
		return rc;
	}
	fu->run = r;
	fu->pid = r->proc.pid;
	fu->running = true;
	fu->ready = false;
	fu->started_ms = agent_now_ms();
	agent_mod_log(m, "skfused %s started (pid %d): %s %s", args[2], fu->pid, args[5], addr);
	agent_child_read(r);
	uv_timer_start(&fu->timer, on_ready_timeout, READY_TIMEOUT_MS, 0);
	return 0;
}

static void on_backoff(uv_timer_t *t)
{
	struct agent_mod *m = t->data;
	struct agent_fused *fu = &m->fused;

	if (fu->running || fu->role == AGENT_ROLE_NONE || m->plan.active)
		return;
	if (spawn(m) < 0)
		uv_timer_start(&fu->timer, on_backoff, BACKOFF_MAX_MS, 0);
}

/* 1: already running in that role and ready; 0: started, agent_mod_step_done follows; -errno. */
int agent_fused_start(struct agent_mod *m, enum agent_role role)
{
	struct agent_fused *fu = &m->fused;

	if (!fu->timer.loop) {
		uv_timer_init(m->a->loop, &fu->timer);
		fu->timer.data = m;
	}
	if (fu->running && fu->role == role && fu->ready)
		return 1;
	if (fu->running)
		return -EBUSY;
	uv_timer_stop(&fu->timer);
	fu->role = role;
	return spawn(m);
}

/* 1: nothing to stop; 0: stopping, agent_mod_step_done follows. */
void agent_fused_stop(struct agent_mod *m, bool kill9)
{
	struct agent_fused *fu = &m->fused;

	if (fu->timer.loop)
		uv_timer_stop(&fu->timer);
	if (!fu->running) {
		fu->role = AGENT_ROLE_NONE;
		agent_mod_step_done(m, 1, NULL);
		return;
	}
	fu->stopping = true;
	kill(fu->pid, kill9 ? SIGKILL : SIGTERM);
	if (!kill9)
		uv_timer_start(&fu->timer, on_stop_timeout, STOP_TIMEOUT_MS, 0);
}

/* ---- status poll of a primary (peer connected? in sync?) ---- */

struct poll_req {
	uv_connect_t conn;
	uv_write_t wr;
	struct agent_mod *m;
};

static void on_ctl_closed(uv_handle_t *h)
{
	struct agent_mod *m = h->data;

	m->fused.ctl_busy = false;
}

static void ctl_done(struct agent_mod *m)
{
	if (!uv_is_closing((uv_handle_t *)&m->fused.ctl))
		uv_close((uv_handle_t *)&m->fused.ctl, on_ctl_closed);
}

static void ctl_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	struct agent_mod *m = h->data;

	(void)s;
	b->base = m->fused.ctl_buf + m->fused.ctl_n;
	b->len = sizeof(m->fused.ctl_buf) - 1 - m->fused.ctl_n;
}

static void copy_js(json_object *o, const char *key, char *dst, size_t cap)
{
	json_object *v;

	dst[0] = '\0';
	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		snprintf(dst, cap, "%s", json_object_get_string(v));
}

static uint64_t u64_js(json_object *o, const char *key, uint64_t def)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) < 0)
		return def;
	return (uint64_t)json_object_get_int64(v);
}

/* skfused's status: its generations, its view of the peer's, the resync's progress. */
static void read_gen(struct agent_fused *fu, json_object *o)
{
	json_object *g = NULL, *p = NULL, *r = NULL, *v;
	char st[16];

	copy_js(o, "peer", fu->peer_word, sizeof(fu->peer_word));
	json_object_object_get_ex(o, "gen", &g);
	copy_js(g, "current", fu->data_id, sizeof(fu->data_id));
	copy_js(g, "shared", fu->shared_id, sizeof(fu->shared_id));
	copy_js(g, "relation", fu->relation, sizeof(fu->relation));
	copy_js(g, "aside", fu->aside, sizeof(fu->aside));
	if (!fu->aside[0])
		copy_js(g, "aside_last", fu->aside, sizeof(fu->aside));
	fu->outdated_since = u64_js(g, "outdated_since", 0);
	if (g && json_object_object_get_ex(g, "peer", &p)) {
		fu->peer_files = u64_js(p, "changed_files", UINT64_MAX);
		fu->peer_bytes = u64_js(p, "changed_bytes", UINT64_MAX);
	} else {
		fu->peer_files = fu->peer_bytes = UINT64_MAX;
	}
	json_object_object_get_ex(o, "resync", &r);
	fu->own_files = fu->own_bytes = UINT64_MAX;
	if (r && json_object_object_get_ex(r, "dirty", &v) && json_object_is_type(v, json_type_object)) {
		char ts[16];

		/* the primary's tracker: what changed here since the peer was last in sync */
		copy_js(v, "state", ts, sizeof(ts));
		if (!strcmp(ts, "tracking") || !strcmp(ts, "idle")) {
			fu->own_files = u64_js(v, "files", UINT64_MAX);
			fu->own_bytes = u64_js(v, "bytes", UINT64_MAX);
		}
	}
	/* skfused's own figure since the shared generation (files sent whole counted at their
	 * size; a secondary's kept changes too), when it gives one */
	if (u64_js(g, "changed_files", UINT64_MAX) != UINT64_MAX) {
		fu->own_files = u64_js(g, "changed_files", UINT64_MAX);
		fu->own_bytes = u64_js(g, "changed_bytes", UINT64_MAX);
	}
	fu->lease_armed = o && json_object_object_get_ex(o, "lease_left_ms", &v) &&
			  json_object_is_type(v, json_type_int);
	fu->lease_left_ms = fu->lease_armed ? json_object_get_int64(v) : 0;
	fu->fuse_open = o && json_object_object_get_ex(o, "fuse_requests_open", &v) &&
				json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
	fu->fuse_queued = o && json_object_object_get_ex(o, "fuse_requests_queued", &v) &&
			  json_object_get_boolean(v);
	copy_js(r, "state", st, sizeof(st));
	fu->rs_running = !strcmp(st, "running");
	fu->rs_done = u64_js(r, "done_bytes", 0);
	fu->rs_total = u64_js(r, "total_bytes", 0);
	fu->rs_rate = u64_js(r, "rate_bps", 0);
	fu->rs_eta = r && json_object_object_get_ex(r, "eta_s", &v) &&
			     json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
	if (fu->rs_done > fu->rs_total)
		fu->rs_done = fu->rs_total;
}

/*
 * Stepping down after the lease ended. skfused's own fence refuses writes at the deadline and
 * its watcher drops the peer, which answers the operations waiting for an ack with EROFS; a
 * kill before that (the watcher is a 10 ms poll, late under load) answers them with a
 * connection error instead. So the kill waits for skfused's status to say so: lease time left
 * below 0, the peer no longer connected, and no FUSE request read and unanswered or waiting in
 * the kernel (the peer is marked gone before the answers go out, and a request queued while
 * skfused was stopped is read after; both seen in CI). Two statuses in a row (20 ms apart) must
 * say so: a request being taken off the queue is counted an instant after. At most
 * AGENT_FENCE_CONFIRM_MS (a stopped or wedged skfused refuses nothing after its deadline
 * anyway: its fence is its own clock). An skfused that does not count its requests (its
 * device not hooked, fuseio.c) is judged on the first two facts.
 */
static void fence_kill(struct agent_mod *m, const char *how)
{
	struct agent_fused *fu = &m->fused;

	fu->fence_wait = false;
	uv_timer_stop(&fu->fence_timer);
	agent_mod_log(m, "%s after %llu ms: killing skfused primary", how,
		      (unsigned long long)(agent_now_ms() - fu->fence_wait_ms));
	agent_fused_stop(m, true);
}

static void fence_check(struct agent_mod *m)
{
	struct agent_fused *fu = &m->fused;

	if (!fu->fence_wait || !fu->running)
		return;
	if (!fu->lease_armed)
		fence_kill(m, "skfused has no lease fence");
	else if (fu->lease_left_ms >= 0 || !strcmp(fu->peer_word, "connected") ||
		 !strcmp(fu->peer_word, "resyncing") || fu->fuse_open > 0 || fu->fuse_queued)
		fu->fence_idle_n = 0;
	else if (++fu->fence_idle_n >= 2)
		fence_kill(m, "skfused fenced itself (writes refused, peer dropped, every request "
			      "answered)");
}

static void on_fence_timer(uv_timer_t *t)
{
	struct agent_mod *m = t->data;
	struct agent_fused *fu = &m->fused;

	if (!fu->fence_wait || !fu->running) /* agent_fused_exited ends the wait */
		return;
	if (agent_now_ms() - fu->fence_wait_ms >= AGENT_FENCE_CONFIRM_MS) {
		char how[96];

		snprintf(how, sizeof(how), "skfused did not confirm its fence (last status: %lld "
			 "requests open%s)", (long long)fu->fuse_open, fu->fuse_queued ? ", more queued" : "");
		fence_kill(m, how);
	}
	else
		agent_fused_poll(m); /* no-op while a status request is out */
}

void agent_fused_fence_wait(struct agent_mod *m)
{
	struct agent_fused *fu = &m->fused;

	fu->stopping = true; /* its exit, whatever the cause, ends the step */
	fu->fence_wait = true;
	fu->fence_wait_ms = agent_now_ms();
	fu->fence_idle_n = 0;
	uv_timer_start(&fu->fence_timer, on_fence_timer, 0, 20);
}

static void ctl_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct agent_mod *m = st->data;
	struct agent_fused *fu = &m->fused;
	json_object *o, *v;
	char *nl;

	(void)b;
	if (n < 0) {
		ctl_done(m);
		return;
	}
	fu->ctl_n += (size_t)n;
	fu->ctl_buf[fu->ctl_n] = '\0';
	nl = memchr(fu->ctl_buf, '\n', fu->ctl_n);
	if (!nl) {
		if (fu->ctl_n >= sizeof(fu->ctl_buf) - 1)
			ctl_done(m);
		return;
	}
	*nl = '\0';
	o = json_tokener_parse(fu->ctl_buf);
	if (o) {
		bool conn = json_object_object_get_ex(o, "peer", &v) &&
			    !strcmp(json_object_get_string(v), "connected");
		bool sync = json_object_object_get_ex(o, "peer_in_sync", &v) &&
			    json_object_get_boolean(v);

		read_gen(fu, o);
		fence_check(m);
		/* the role facts come from the primary only (a secondary's "connected" is not
		 * "in sync") */
		if (fu->role == AGENT_ROLE_PRIMARY &&
		    (conn != fu->peer_connected || (conn && sync) != fu->peer_in_sync)) {
			fu->peer_connected = conn;
			fu->peer_in_sync = conn && sync;
			agent_mod_kick(m);
		}
		json_object_put(o);
	}
	ctl_done(m);
}

static void on_ctl_written(uv_write_t *w, int status)
{
	struct poll_req *r = w->data;

	if (status < 0)
		ctl_done(r->m);
	else
		uv_read_start((uv_stream_t *)&r->m->fused.ctl, ctl_alloc, ctl_read);
	free(r);
}

static void on_ctl_connect(uv_connect_t *c, int status)
{
	static char req[] = "{\"cmd\":\"status\"}\n", surv[] = "{\"cmd\":\"survivor\"}\n";
	struct poll_req *r = c->data;
	struct agent_fused *fu = &r->m->fused;
	/* a pending survivor choice goes instead of one status request (it answers the status) */
	bool s = fu->survivor_pending && fu->role == AGENT_ROLE_PRIMARY;
	uv_buf_t b = s ? uv_buf_init(surv, sizeof(surv) - 1) : uv_buf_init(req, sizeof(req) - 1);

	if (s && status >= 0) {
		fu->survivor_pending = false;
		agent_mod_log(r->m, "told skfused: this copy is the survivor (prim --force)");
	}

	if (status < 0 || uv_write(&r->wr, (uv_stream_t *)&r->m->fused.ctl, &b, 1,
				   on_ctl_written) < 0) {
		ctl_done(r->m);
		free(r);
	}
}

void agent_fused_poll(struct agent_mod *m)
{
	struct agent_fused *fu = &m->fused;
	struct poll_req *r;

	if (fu->ctl_busy || !fu->running || !fu->ready || fu->role == AGENT_ROLE_NONE)
		return;
	r = calloc(1, sizeof(*r));
	if (!r)
		return;
	r->m = m;
	r->conn.data = r;
	r->wr.data = r;
	fu->ctl_busy = true;
	fu->ctl_n = 0;
	uv_pipe_init(m->a->loop, &fu->ctl, 0);
	fu->ctl.data = m;
	uv_pipe_connect(&r->conn, &fu->ctl, m->fused_ctl, on_ctl_connect);
}

int agent_fused_file(struct agent_mod *m, struct agent_fused_file *s)
{
	char path[AGENT_PATH + 16], line[128];
	FILE *fp;

	*s = (struct agent_fused_file){ 0 };
	snprintf(path, sizeof(path), "%s/fused/state", m->statedir);
	fp = fopen(path, "re");
	if (!fp)
		return -errno;
	for (int i = 0; i < 64 && fgets(line, sizeof(line), fp); i++) {
		unsigned v;

		if (!strncmp(line, "role=primary\n", 13))
			s->primary = true;
		else if (sscanf(line, "consistent=%u", &v) == 1)
			s->consistent = v != 0;
		else if (sscanf(line, "peer_in_sync=%u", &v) == 1)
			s->peer_in_sync = v != 0;
	}
	fclose(fp);
	return 0;
}

void agent_fused_survivor(struct agent_mod *m)
{
	m->fused.survivor_pending = true;
	agent_fused_poll(m); /* at once if skfused serves; else once it is ready */
}

/* " by 3.2 GiB, 120 files" (or " by 1 file" when no extent is counted) when skfused knows, else "". */
static void by_how_much(uint64_t files, uint64_t bytes, char *out, size_t cap)
{
	char b[32];

	out[0] = '\0';
	if ((bytes == UINT64_MAX || bytes == 0) && (files == UINT64_MAX || files == 0))
		return;
	sk_human_bytes(bytes == UINT64_MAX ? 0 : bytes, b, sizeof(b));
	if (files == UINT64_MAX || files == 0)
		snprintf(out, cap, " by %s", b);
	else if (bytes == UINT64_MAX || bytes == 0)
		snprintf(out, cap, " by %llu file%s", (unsigned long long)files, files == 1 ? "" : "s");
	else
		snprintf(out, cap, " by %s, %llu file%s", b, (unsigned long long)files,
			 files == 1 ? "" : "s");
}

/* "3.1 MiB in 12 files" (or one of the two; "" when neither is known) */
static void changed_words(uint64_t files, uint64_t bytes, char *out, size_t cap)
{
	char b[32];

	out[0] = '\0';
	sk_human_bytes(bytes == UINT64_MAX ? 0 : bytes, b, sizeof(b));
	if (files != UINT64_MAX && bytes != UINT64_MAX)
		snprintf(out, cap, "%s in %llu file%s", b, (unsigned long long)files, files == 1 ? "" : "s");
	else if (files != UINT64_MAX)
		snprintf(out, cap, "%llu file%s", (unsigned long long)files, files == 1 ? "" : "s");
	else if (bytes != UINT64_MAX)
		snprintf(out, cap, "%s", b);
}

/* A sentence into a bounded field: cut at its end (these are words for people). */
static size_t words(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static size_t words(char *dst, size_t cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(dst, cap, fmt, ap);
	va_end(ap);
	return n < 0 ? 0 : (size_t)n;
}

void agent_fused_fill_ctl(struct agent_mod *m, struct sk_ctl_mod *o)
{
	struct agent_fused *fu = &m->fused;
	const char *self = m->a->self->name, *peer = m->peer->node->name;
	char when[32] = "", by[64];
	size_t k;

	snprintf(o->data_id, sizeof(o->data_id), "%s", fu->data_id);
	snprintf(o->aside, sizeof(o->aside), "%s", fu->aside);
	if (!fu->running || !fu->ready)
		return; /* the agent's own words (reason, uptodate) say it */
	snprintf(o->relation, sizeof(o->relation), "%s", fu->relation);
	if (fu->outdated_since) {
		time_t t = (time_t)fu->outdated_since;
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	}
	if (!strcmp(fu->peer_word, "diverged")) {
		/* short enough for SK_CTL_TEXT_LEN with both sizes: they come before the advice */
		char a[72], b[72];

		k = (size_t)words(o->data_words, sizeof(o->data_words),
				  "%s and %s diverged after generation %s (split brain)", self, peer,
				  fu->shared_id[0] ? fu->shared_id : "?");
		changed_words(fu->own_files, fu->own_bytes, a, sizeof(a));
		changed_words(fu->peer_files, fu->peer_bytes, b, sizeof(b));
		if ((a[0] || b[0]) && k < sizeof(o->data_words))
			k += words(o->data_words + k, sizeof(o->data_words) - k,
				   "; changed since then: %s %s, %s %s", self, a[0] ? a : "?", peer,
				   b[0] ? b : "?");
		if (k < sizeof(o->data_words))
			words(o->data_words + k, sizeof(o->data_words) - k,
			      "; nothing resyncs until you choose: skctl prim -m %s --force where the "
			      "data stays", m->conf.name);
		snprintf(o->relation, sizeof(o->relation), "diverged");
	} else if (!strcmp(fu->peer_word, "newer")) {
		words(o->data_words, sizeof(o->data_words), "%s holds newer data than %s: it refuses "
			 "to be resynced from here (skctl prim -m %s --force here overwrites it)", peer,
			 self, m->conf.name);
		snprintf(o->relation, sizeof(o->relation), "older");
	} else if (!strcmp(fu->peer_word, "older")) {
		words(o->data_words, sizeof(o->data_words), "%s (primary) holds older data than %s: "
			 "refused, this copy is kept", peer, self);
		snprintf(o->relation, sizeof(o->relation), "newer");
	} else if (fu->role == AGENT_ROLE_PRIMARY && fu->peer_in_sync) {
		words(o->data_words, sizeof(o->data_words), "%s is in sync with %s", peer, self);
	} else if (fu->role == AGENT_ROLE_PRIMARY) {
		by_how_much(fu->own_files, fu->own_bytes, by, sizeof(by));
		words(o->data_words, sizeof(o->data_words), "%s is behind %s%s%s%s%s", peer, self, by,
			 when[0] ? " (outdated since " : "", when, when[0] ? ")" : "");
		if (fu->rs_running)
			words(o->data_words + strlen(o->data_words),
				 sizeof(o->data_words) - strlen(o->data_words), ": resync running");
	} else if (!strcmp(fu->peer_word, "connected") && fu->relation[0]) {
		words(o->data_words, sizeof(o->data_words), "%s %s", self,
			 !strcmp(fu->relation, "equal") ? "holds the primary's generation" :
			 "is being resynced from the primary");
	}
	if (fu->rs_running && fu->role == AGENT_ROLE_PRIMARY) {
		o->resyncing = true;
		o->rs_done = fu->rs_done;
		o->rs_total = fu->rs_total;
		o->rs_rate = fu->rs_rate;
		o->rs_eta_s = fu->rs_eta;
	}
}
