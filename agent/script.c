/* agent/script.c: run a module script (bin/NAME) as a child with a timeout, its output into the module log. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* One run (agent/child.c holds the handles and the output), with the script it runs. */
struct run {
	struct agent_child c; /* first: freed as the child */
	enum sk_script which;
};

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
	struct run *r = p->data;
	struct agent_mod *m = r->c.m;
	struct agent_script *sc = &m->script;
	const char *name = sk_conf_script_name(sc->which);
	uint64_t ms = agent_now_ms() - sc->started_ms;
	char why[160];

	sc->running = false;
	uv_timer_stop(&sc->timer);
	agent_child_close_proc(&r->c);
	/* the script's children (a daemon it started) may keep the pipe open: stop reading,
	 * their output is theirs to redirect */
	agent_child_flush(&r->c);
	agent_child_close_out(&r->c);
	if (sc->timed_out) {
		snprintf(why, sizeof(why), "%s killed after its timeout (%u s)", name,
			 m->conf.scripts[sc->which].timeout_s);
		agent_mod_log(m, "%s", why);
		agent_mod_step_done(m, -ETIMEDOUT, why);
	} else if (status != 0 || sig != 0) {
		if (sig)
			snprintf(why, sizeof(why), "%s killed by signal %d after %llu ms", name, sig,
				 (unsigned long long)ms);
		else
			snprintf(why, sizeof(why), "%s exited with status %lld after %llu ms", name,
				 (long long)status, (unsigned long long)ms);
		agent_mod_log(m, "%s", why);
		agent_mod_step_done(m, -EIO, why);
	} else {
		agent_mod_log(m, "%s done in %llu ms", name, (unsigned long long)ms);
		agent_mod_step_done(m, 0, NULL);
	}
}

static void on_timeout(uv_timer_t *t)
{
	struct agent_mod *m = t->data;
	struct agent_script *sc = &m->script;

	if (!sc->running)
		return;
	sc->timed_out = true;
	/* the script is the leader of its own process group: take everything it started */
	kill(-sc->pid, SIGKILL);
	kill(sc->pid, SIGKILL);
}

/* 1: not configured (nothing to do); 0: started, agent_mod_step_done follows; -errno. */
int agent_script_run(struct agent_mod *m, enum sk_script which)
{
	struct agent *a = m->a;
	struct agent_script *sc = &m->script;
	const struct sk_conf_vip *v = &m->conf.vip;
	uv_process_options_t o = { 0 };
	uv_stdio_container_t io[3];
	struct run *r;
	char path[AGENT_PATH + 64], e[10][AGENT_PATH + 64];
	char *env[12], *args[2];
	struct stat st;
	int rc, ne = 0, wfd;

	if (!m->conf.scripts[which].enabled)
		return 1;
	if (sc->running)
		return -EBUSY;
	snprintf(path, sizeof(path), "%s/bin/%s", m->moddir, sk_conf_script_name(which));
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111)) {
		agent_mod_log(m, "%s is listed in userconfig.json but %s is not an executable file",
			      sk_conf_script_name(which), path);
		return -ENOENT;
	}
	if (!sc->timer.loop) {
		uv_timer_init(a->loop, &sc->timer);
		sc->timer.data = m;
	}
	snprintf(e[ne], sizeof(e[0]), "SK_MODULE=%s", m->conf.name), ne++;
	snprintf(e[ne], sizeof(e[0]), "SK_ROLE=%s", m->plan.active ? sk_state_name(m->plan.to) :
		 sk_state_name(m->state)), ne++;
	snprintf(e[ne], sizeof(e[0]), "SK_VIP=%s", m->conf.has_vip ? v->addr.text : ""), ne++;
	snprintf(e[ne], sizeof(e[0]), "SK_PEER=%s", m->peer->node->name), ne++;
	snprintf(e[ne], sizeof(e[0]), "SK_REASON=%s", m->plan.active ? m->plan.cause : ""), ne++;
	snprintf(e[ne], sizeof(e[0]), "SK_NODE=%s", a->self->name), ne++;
	snprintf(e[ne], sizeof(e[0]), "SK_ROOT=%s", a->root), ne++;
	snprintf(e[ne], sizeof(e[0]), "SK_MODULE_DIR=%s", m->moddir), ne++;
	snprintf(e[ne], sizeof(e[0]), "SK_STATE_DIR=%s", m->statedir), ne++;
	snprintf(e[ne], sizeof(e[0]), "SK_DIR=%s", m->dir), ne++;
	for (int i = 0; i < ne; i++)
		env[i] = e[i];
	env[ne++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	env[ne] = NULL;
	args[0] = path;
	args[1] = NULL;

	r = (struct run *)agent_child_new(m, sizeof(*r), sk_conf_script_name(which), io, &wfd, &rc);
	if (!r)
		return rc;
	r->which = which;
	r->c.tail_at_eof = true;
	o.file = path;
	o.args = args;
	o.env = env;
	o.cwd = m->moddir;
	o.stdio = io;
	o.stdio_count = 3;
	o.exit_cb = on_exit_cb;
	/* own session and process group: a timeout kills the whole group */
	o.flags = UV_PROCESS_DETACHED;
	rc = agent_child_spawn(&r->c, &o, wfd);
	if (rc < 0) {
		agent_mod_log(m, "cannot run %s: %s", path, uv_strerror(rc));
		return rc;
	}
	sc->pid = r->c.proc.pid;
	sc->which = which;
	sc->running = true;
	sc->timed_out = false;
	sc->started_ms = agent_now_ms();
	agent_mod_log(m, "running %s (pid %d, timeout %u s)", sk_conf_script_name(which), sc->pid,
		      m->conf.scripts[which].timeout_s);
	agent_child_read(&r->c);
	uv_timer_start(&sc->timer, on_timeout, (uint64_t)m->conf.scripts[which].timeout_s * 1000, 0);
	return 0;
}

void agent_script_kill(struct agent_mod *m)
{
	if (m->script.running)
		on_timeout(&m->script.timer);
}
