/* agent/modinit.c: a module's setup and teardown: paths under --root, its state and history, timers. */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "nl.h"

static void on_tick(uv_timer_t *t)
{
	struct agent_mod *m = t->data;

	agent_fused_poll(m);
	agent_mod_kick(m);
}

static int mkdirs(const char *path, mode_t mode)
{
	char d[AGENT_PATH];

	snprintf(d, sizeof(d), "%s", path);
	for (char *p = d + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(d, 0755) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	if (mkdir(d, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int agent_mod_init(struct agent *a, struct agent_mod *m)
{
	char rel[AGENT_PATH];
	int rc, carrier;

	m->a = a;
	m->logfd = -1;
	for (unsigned i = 0; i < m->conf.n_nodes; i++)
		if (strcmp(m->conf.nodes[i].name, a->self->name))
			m->peer = agent_peer_by_name(a, m->conf.nodes[i].name);
	if (!m->peer) {
		sk_err("module %s: no peer node", m->conf.name);
		return -EINVAL;
	}
	agent_path(a, m->dir, sizeof(m->dir), m->conf.dirs[0]);
	snprintf(rel, sizeof(rel), "/var/lib/steadykit/modules/%s", m->conf.name);
	agent_path(a, m->moddir, sizeof(m->moddir), rel);
	snprintf(rel, sizeof(rel), "/var/lib/steadykit/state/%s", m->conf.name);
	agent_path(a, m->statedir, sizeof(m->statedir), rel);
	snprintf(rel, sizeof(rel), "/run/steadykit/fused-%s.sock", m->conf.name);
	agent_path(a, m->fused_ctl, sizeof(m->fused_ctl), rel);
	snprintf(m->logpath, sizeof(m->logpath), "%.1000s/module.log", m->statedir);
	m->repl_port = (uint16_t)(a->cluster.repl_port_base + m->conf.id);
	if ((rc = mkdirs(m->statedir, 0700)) < 0 || (rc = mkdirs(m->dir, 0755)) < 0) {
		sk_err("module %s: cannot create %s or %s: %s", m->conf.name, m->statedir, m->dir,
		       strerror(-rc));
		return rc;
	}
	rc = agent_state_load(m);
	if (rc < 0) {
		sk_err("module %s: cannot read its state in %s: %s", m->conf.name, m->statedir,
		       strerror(-rc));
		return rc;
	}
	agent_hist_load(m);
	m->state = SK_ST_STOP;
	m->since_ms = agent_wall_ms();
	m->carrier = true;
	if (m->conf.has_vip) {
		carrier = sk_nl_link_carrier(m->conf.vip.ifname);
		if (carrier < 0)
			sk_warn("module %s: VIP interface %s: %s", m->conf.name, m->conf.vip.ifname,
				strerror(-carrier));
		m->carrier = carrier != 0;
	}
	uv_timer_init(a->loop, &m->announce);
	uv_timer_init(a->loop, &m->tick);
	uv_timer_init(a->loop, &m->kick);
	m->announce.data = m->tick.data = m->kick.data = m;
	uv_timer_init(a->loop, &m->fused.timer);
	m->fused.timer.data = m;
	uv_timer_init(a->loop, &m->fused.fence_timer);
	m->fused.fence_timer.data = m;
	uv_timer_init(a->loop, &m->script.timer);
	m->script.timer.data = m;
	agent_mod_log(m, "loaded: generation %llu, last role %s%s%s, %s", (unsigned long long)m->gen,
		      m->last_role == AGENT_ROLE_PRIMARY ? "primary" :
		      m->last_role == AGENT_ROLE_SECONDARY ? "secondary" : "none",
		      m->fresh ? " (fresh)" : "", m->in_sync ? ", in sync" : "",
		      m->want_started ? "starting" : "stopped by the operator");
	uv_timer_start(&m->tick, on_tick, 250, 250);
	agent_mod_kick(m);
	return 0;
}

void agent_mod_close(struct agent_mod *m)
{
	agent_close((uv_handle_t *)&m->announce);
	agent_close((uv_handle_t *)&m->tick);
	agent_close((uv_handle_t *)&m->kick);
	agent_close((uv_handle_t *)&m->fused.timer);
	agent_close((uv_handle_t *)&m->fused.fence_timer);
	agent_close((uv_handle_t *)&m->script.timer);
	if (m->logfd >= 0) {
		close(m->logfd);
		m->logfd = -1;
	}
}

