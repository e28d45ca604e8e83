/* agent/farmmod.c: a farm module run by skagentd: UP on every node, the XDP filter fed by membership and the nodes' states. */
#include "agent.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "farm.h"
#include "log.h"
#include "nl.h"

/*
 * Rules (docs/agent.md "Farm modules" says the same for operators):
 *  - Every node of the farm runs the module; its state is UP where it takes new flows.
 *    States: STOP, WAIT (starting, or out of the farm because a checker failed), UP.
 *  - The filter (agent/farm.c, xdp/) is attached once the other nodes were heard or the
 *    startup grace passed: a node that knew only itself would take every bucket while the
 *    others still serve theirs.
 *  - The view pushed to the filter: a node is alive while its heartbeats come (membership),
 *    and takes new flows while it announces UP for this module. A dead node's buckets move at
 *    once; a node that is alive but not UP (starting, leaving, checker failed, stopping) keeps
 *    its established flows for the motion window while new ones go to the others.
 *  - A node leaves with a plan of its own ([farm leave] -> WAIT) before anything else (stop
 *    scripts, restart), so the others hear "not UP" at once and agree on the table.
 *  - A failed checker: "failover" leaves gracefully and keeps the application running (its
 *    connections drain); "restart" leaves, then runs stop_both and start_both (within the
 *    module's restart budget, then as failover). The node rejoins once every checker that
 *    failed passed a probe again. "stop" stops the module here; "ignore" logs.
 *  - Stop: leave, prestop, stop_both, poststop, then the filter and the VIP are removed (a
 *    stopped node must not pass the VIP's packets to its stack). An agent killed without a
 *    stop leaves them running; the next agent takes the filter over (table and flows kept).
 */

struct agent_farmmod {
	struct agent_farm *farm; /* NULL while not attached */
	bool subscribed;
	bool self_up;       /* this node takes new flows */
	bool left;          /* out of the farm because a checker failed */
	bool restart;       /* ... and the application is to be restarted (stop_both, start_both) */
	uint64_t failing;   /* checkers (bit = index) that failed and have not passed since */
	uv_timer_t lease;   /* renews the filter's lease every heartbeat interval */
	bool lease_failing;
	bool adopted;       /* taken over after an agent restart: the view is pushed once heard */
	uint64_t alive_ms[SK_NODE_SLOTS]; /* when each node was last declared alive */
	char pin_dir[AGENT_PATH];
	char err[400];
};

static const int farm_boot[] = { STEP_PRESTART };
static const int farm_start[] = { STEP_FARM_ATTACH, STEP_START_BOTH, STEP_FARM_UP };
static const int farm_leave[] = { STEP_FARM_LEAVE };
static const int farm_join[] = { STEP_FARM_UP };
static const int farm_restart[] = { STEP_STOP_BOTH, STEP_START_BOTH };
static const int farm_stop[] = { STEP_FARM_LEAVE, STEP_PRESTOP, STEP_STOP_BOTH, STEP_POSTSTOP,
				 STEP_FARM_DETACH };
#define N(x) ((int)(sizeof(x) / sizeof((x)[0])))

static void on_member(void *arg, struct agent *a, uint8_t node_id, bool alive);

static struct agent_farmmod *fm_of(struct agent_mod *m)
{
	struct agent_farmmod *fm = m->farm;

	if (fm || m->conf.kind != SK_MOD_FARM)
		return fm;
	fm = calloc(1, sizeof(*fm));
	if (!fm)
		return NULL;
	m->farm = fm;
	{
		char rel[128];

		/* bpffs under --root like every other path: nodes tested on one machine keep their
		 * own pins (the test mounts a bpffs at ROOT/sys/fs/bpf) */
		snprintf(rel, sizeof(rel), "%s/%s", LB_PIN_ROOT, m->conf.name);
		agent_path(m->a, fm->pin_dir, sizeof(fm->pin_dir), rel);
	}
	if (agent_member_subscribe(m->a, on_member, m) == 0)
		fm->subscribed = true;
	else
		sk_logm(SK_LOG_WARN, m->conf.name, "farm: no membership subscription left: deaths "
			"are seen at the next tick (250 ms)");
	return fm;
}

/* Bit masks by node id: alive (heard) and UP (announced UP for this module), this node included. */
static void masks(struct agent_mod *m, uint64_t *alive, uint64_t *up)
{
	struct agent *a = m->a;
	struct agent_farmmod *fm = m->farm;

	*alive = 1ull << a->self->id;
	*up = fm && fm->self_up ? 1ull << a->self->id : 0;
	for (unsigned i = 0; i < m->conf.n_nodes; i++) {
		struct agent_peer *p = agent_peer_by_name(a, m->conf.nodes[i].name);
		const struct sk_amsg_mod *pm;

		if (!p || !p->alive)
			continue;
		*alive |= 1ull << p->node->id;
		pm = agent_peer_mod(p, m->conf.id);
		/* a node back from the dead still shows the state it had before it died until its
		 * first heartbeat lands: only a state heard since it came back counts */
		if (pm && pm->state == SK_ST_UP && (!fm || p->st_ms >= fm->alive_ms[p->node->id]))
			*up |= 1ull << p->node->id;
	}
}

/* Push what the agent knows now; logs each new table in the module log. */
static int refresh(struct agent_mod *m, const char *why)
{
	struct agent_farmmod *fm = m->farm;
	uint64_t alive, up;
	char words[256];
	int rc;

	if (!fm || !fm->farm)
		return 0;
	masks(m, &alive, &up);
	rc = agent_farm_set(fm->farm, alive, up);
	if (rc < 0) {
		agent_mod_log(m, "farm: %s", agent_farm_err(fm->farm));
		return rc;
	}
	if (rc > 0) {
		agent_farm_words(fm->farm, words, sizeof(words));
		agent_mod_log(m, "farm view (%s): %s", why, words);
	}
	return rc;
}

static void on_member(void *arg, struct agent *a, uint8_t node_id, bool alive)
{
	struct agent_mod *m = arg;
	struct agent_peer *p = agent_peer_by_id(a, node_id);
	char why[160];

	if (alive && m->farm && node_id < SK_NODE_SLOTS)
		m->farm->alive_ms[node_id] = agent_now_ms();
	/* the failover path: the dead node's buckets move now, not at the next decision */
	if (!alive && p && p->died_words[0])
		snprintf(why, sizeof(why), "%.150s", p->died_words); /* "node3 silent on lan for 412 ms" */
	else
		snprintf(why, sizeof(why), "%.60s %s", p ? p->node->name : "a node",
			 alive ? "alive" : "dead");
	refresh(m, why);
	agent_mod_kick(m);
}

static void on_lease(uv_timer_t *t)
{
	struct agent_mod *m = t->data;
	struct agent_farmmod *fm = m->farm;

	int rc;

	if (!fm || !fm->farm)
		return;
	rc = agent_farm_lease(fm->farm, m->a->hb_timeout_ms);
	/* said once per episode: this runs every heartbeat interval */
	if (rc < 0 && !fm->lease_failing)
		agent_mod_log(m, "farm: %s (the filter drops this node's buckets once the lease "
			      "ends)", agent_farm_err(fm->farm));
	else if (rc == 0 && fm->lease_failing)
		agent_mod_log(m, "farm: lease renewed again");
	fm->lease_failing = rc < 0;
}

void agent_farmmod_restarting(struct agent_mod *m, uint32_t ms)
{
	struct agent_farmmod *fm = m->farm;

	/* this node's buckets stay this node's while the peers wait for its new agent: the filter
	 * goes on passing them as long (a node that dies meanwhile loses them with the wait) */
	if (fm && fm->farm && fm->lease.loop && uv_is_active((uv_handle_t *)&fm->lease) &&
	    agent_farm_lease(fm->farm, ms) == 0)
		agent_mod_log(m, "farm: lease extended to %u ms for the agent's restart", ms);
}

static void detach_now(struct agent_mod *m)
{
	struct agent_farmmod *fm = m->farm;

	if (!fm || !fm->farm)
		return;
	uv_timer_stop(&fm->lease);
	agent_farm_close(fm->farm, true);
	fm->farm = NULL;
	fm->self_up = false;
	agent_mod_log(m, "farm: filter detached and VIP removed");
}

/* Attach the filter (or take over the one an earlier agent left); pushes nothing yet. */
static int filter_open(struct agent_mod *m, struct agent_farmmod *fm, const char **why)
{
	struct agent_farm_opts o = { 0 };
	uint64_t alive, up;
	int rc;

	o.cluster = &m->a->cluster;
	o.mod = &m->conf;
	o.self = m->a->self->name;
	o.pin_dir = fm->pin_dir;
	o.mode = LB_XDP_AUTO;
	rc = agent_farm_open(&o, &fm->farm, fm->err, sizeof(fm->err));
	if (rc < 0) {
		fm->farm = NULL;
		*why = fm->err;
		return rc;
	}
	agent_mod_log(m, "farm: filter on %s, VIP %s on lo, virtual MAC answers ARP",
		      m->conf.vip.ifname, m->conf.vip.addr.text);
	/* the first table: the others as known now (not started: sets, pushes nothing) */
	masks(m, &alive, &up);
	agent_farm_set(fm->farm, alive, up);
	return 0;
}

/* Push the view from now on, and vouch for this node in the filter (its lease). */
static int filter_start(struct agent_mod *m, struct agent_farmmod *fm, const char **why)
{
	int rc = agent_farm_start(fm->farm);

	if (rc < 0) {
		snprintf(fm->err, sizeof(fm->err), "%s", agent_farm_err(fm->farm));
		*why = fm->err;
		return rc;
	}
	refresh(m, "attached");
	/* from now on the filter passes this node's buckets only while this agent lives:
	 * the lease lasts the peers' dead timeout, renewed every heartbeat interval */
	if (!fm->lease.loop) {
		uv_timer_init(m->a->loop, &fm->lease);
		fm->lease.data = m;
		uv_unref((uv_handle_t *)&fm->lease);
	}
	on_lease(&fm->lease);
	uv_timer_start(&fm->lease, on_lease, m->a->hb_interval_ms, m->a->hb_interval_ms);
	return 0;
}

int agent_farmmod_adopt(struct agent_mod *m)
{
	struct agent_farmmod *fm;
	struct sk_ctl_trans t = { 0 };
	const char *why = NULL;
	int app;

	if (m->conf.kind != SK_MOD_FARM || !m->want_started || !(fm = fm_of(m)) ||
	    !agent_farm_pinned(fm->pin_dir))
		return 0;
	/* after a kill -9 of the whole node the filter outlives the application: start afresh */
	app = agent_opcmd_app_pid(m);
	if (!app) {
		agent_mod_log(m, "agent restarted: the farm filter is still attached but no process "
			      "of the module runs: starting it again");
		return 0;
	}
	if (filter_open(m, fm, &why) < 0) {
		agent_mod_log(m, "agent restarted: cannot take the farm filter over (%s): starting "
			      "the module again", why);
		return 0;
	}
	/* The table the earlier agent pushed stays in the filter until every node is heard (or
	 * the startup grace passed): a view knowing only this node would take every bucket.
	 * Its lease runs on; if it ended, this node passes nothing until then (no resets). */
	fm->adopted = true;
	fm->self_up = true;
	m->state = SK_ST_UP;
	m->start_ms = agent_now_ms();
	m->since_ms = agent_wall_ms();
	snprintf(m->reason, sizeof(m->reason), "taken over after an agent restart");
	agent_mod_log(m, "agent restarted: farm filter and application (pid %d) taken over as UP, "
		      "nothing restarted", app);
	t.at_ms = agent_wall_ms();
	snprintf(t.module, sizeof(t.module), "%s", m->conf.name);
	t.from = t.to = m->state;
	snprintf(t.cause, sizeof(t.cause), "agent restarted: farm filter and application (pid %d) "
		 "taken over, nothing restarted", app);
	agent_hist_add(m, &t);
	return 1;
}

int agent_farmmod_step(struct agent_mod *m, int step, const char **why)
{
	struct agent_farmmod *fm = fm_of(m);
	int rc;

	*why = NULL;
	if (!fm) {
		*why = "out of memory";
		return -ENOMEM;
	}
	switch (step) {
	case STEP_FARM_ATTACH:
		if (fm->farm)
			return 0;
		fm->self_up = false;
		if ((rc = filter_open(m, fm, why)) < 0)
			return rc;
		/* this node takes nothing yet (unless nobody is UP: then every alive node answers,
		 * farm.c) */
		return filter_start(m, fm, why);
	case STEP_FARM_UP:
		fm->self_up = true;
		fm->left = fm->restart = false;
		fm->failing = 0;
		return refresh(m, "this node joins") < 0 ? (*why = "cannot push the view", -EIO) : 0;
	case STEP_FARM_LEAVE:
		fm->self_up = false;
		refresh(m, "this node leaves");
		return 0; /* a leave that cannot be pushed must not keep the node in */
	case STEP_FARM_DETACH:
		detach_now(m);
		return 0;
	}
	*why = "not a farm step";
	return -EINVAL;
}

static bool all_heard(struct agent_mod *m, char *missing, size_t cap)
{
	size_t n = 0;

	missing[0] = '\0';
	for (unsigned i = 0; i < m->conf.n_nodes; i++) {
		struct agent_peer *p = agent_peer_by_name(m->a, m->conf.nodes[i].name);

		if (p && !(p->alive && p->have_state) && n < cap)
			n += (size_t)snprintf(missing + n, cap - n, "%s%s", n ? ", " : "", p->node->name);
	}
	return missing[0] == '\0';
}

int agent_farmmod_decide(struct agent_mod *m)
{
	struct agent *a = m->a;
	struct agent_farmmod *fm = fm_of(m);
	bool want = m->want_started && !a->stopping;
	uint64_t now = agent_now_ms();
	char cause[SK_CTL_TEXT_LEN], missing[200];

	if (!fm)
		return 0;
	refresh(m, "membership");
	if (m->plan.active)
		return 0;
	if (m->state == SK_ST_STOP) {
		/* a failed start ends in STOP through module.c's own stop plan: take the filter off */
		detach_now(m);
		fm->left = fm->restart = false;
		fm->failing = 0;
	}
	if (!want && m->forcestop) {
		agent_mod_forcestop_plan(m); /* no stop script (agent/opcmd.c) */
		return 0;
	}
	if (!want) {
		if (m->state == SK_ST_STOP)
			return 1; /* module.c: everything stopped? then the agent may exit */
		snprintf(cause, sizeof(cause), "%s", a->stopping ? "agent stopping" : "operator: stop");
		if (fm->self_up)
			agent_mod_plan(m, SK_ST_WAIT, cause, farm_leave, N(farm_leave));
		else
			agent_mod_plan(m, SK_ST_STOP, cause, farm_stop, N(farm_stop));
		return 0;
	}
	if (fm->adopted && fm->farm && m->state == SK_ST_UP) {
		const char *why = NULL;

		/* Until every node is heard, the table the earlier agent pushed stays: a view pushed
		 * before (this loop may first run late on a loaded host) would count the others
		 * dead and take their buckets, and this node's kernel would reset their flows */
		if (!all_heard(m, missing, sizeof(missing)) && now - m->start_ms < a->startup_grace_ms)
			return 0;
		fm->adopted = false;
		if (filter_start(m, fm, &why) < 0)
			agent_mod_log(m, "farm: %s", why);
	}
	if (now < m->retry_ms)
		return 0; /* the module's tick asks again */
	switch (m->state) {
	case SK_ST_STOP:
		m->start_ms = now;
		agent_mod_plan(m, SK_ST_WAIT, "module started", farm_boot, N(farm_boot));
		return 0;
	case SK_ST_UP:
		if (fm->left) /* a checker failed: out first, the others hear it at once */
			agent_mod_plan(m, SK_ST_WAIT, m->after_reason[0] ? m->after_reason :
				       "checker failed", farm_leave, N(farm_leave));
		return 0;
	case SK_ST_WAIT:
		break;
	default:
		return 0;
	}
	if (!fm->farm) {
		if (!all_heard(m, missing, sizeof(missing)) && now - m->start_ms < a->startup_grace_ms) {
			snprintf(m->reason, sizeof(m->reason), "waiting up to %llu s to hear %.150s",
				 (unsigned long long)(a->startup_grace_ms / 1000), missing);
			return 0;
		}
		if (missing[0])
			snprintf(cause, sizeof(cause), "module started; not heard: %.150s", missing);
		else
			snprintf(cause, sizeof(cause), "module started; every node heard");
		m->reason[0] = '\0';
		agent_mod_plan(m, SK_ST_UP, cause, farm_start, N(farm_start));
		return 0;
	}
	if (fm->restart) {
		fm->restart = false;
		agent_mod_plan(m, SK_ST_WAIT, "checker failed: restarting the application (out of "
			       "the farm)", farm_restart, N(farm_restart));
		return 0;
	}
	if (fm->left && fm->failing) {
		snprintf(m->reason, sizeof(m->reason), "out of the farm: a checker fails (its "
			 "connections drain); back in once it passes");
		return 0;
	}
	/* WAIT with the filter attached: a checker passes again, or a restart finished */
	agent_mod_plan(m, SK_ST_UP, fm->left ? "checkers pass again: rejoining the farm" :
		       "rejoining the farm", farm_join, N(farm_join));
	return 0;
}

static int leave(struct agent_mod *m, const char *cause, bool restart)
{
	struct agent_farmmod *fm = fm_of(m);

	if (!fm)
		return -ENOMEM;
	if (m->plan.active)
		return -EBUSY;
	if (m->state != SK_ST_UP && !(m->state == SK_ST_WAIT && fm->left))
		return -EINVAL;
	agent_mod_log(m, "%s: %s", cause, restart ? "leaving the farm, then restarting the "
		      "application" : "leaving the farm (the application keeps its connections)");
	fm->left = true;
	fm->restart = restart;
	snprintf(m->after_reason, sizeof(m->after_reason), "%s", cause);
	agent_mod_kick(m);
	return 0;
}

int agent_farmmod_app_restart(struct agent_mod *m, const char *cause)
{
	return leave(m, cause, true);
}

int agent_farmmod_app_failover(struct agent_mod *m, const char *cause)
{
	return leave(m, cause, false);
}

bool agent_farmmod_checking(const struct agent_mod *m)
{
	return m->conf.kind == SK_MOD_FARM &&
	       (m->state == SK_ST_UP || (m->state == SK_ST_WAIT && m->farm && m->farm->left));
}

static uint64_t ck_bit(const struct agent_mod *m, const struct sk_conf_checker *ck)
{
	ptrdiff_t i = ck - m->conf.checkers;

	return i >= 0 && i < 64 ? 1ull << i : 0;
}

void agent_farmmod_fill_ctl(struct agent_mod *m, struct sk_ctl_mod *o)
{
	struct agent_farmmod *fm = m->farm;
	char words[256];

	o->uptodate = true; /* a farm has no replicated data */
	/* every other node of the farm, not only the first (o->peer) */
	o->n_members = 0;
	for (unsigned i = 0; i < m->conf.n_nodes && o->n_members < SK_CTL_MAX_MEMBERS; i++) {
		struct agent_peer *p = agent_peer_by_name(m->a, m->conf.nodes[i].name);
		const struct sk_amsg_mod *pm;
		struct sk_ctl_member *mb;

		if (!p)
			continue; /* this node */
		mb = &o->members[o->n_members++];
		pm = agent_peer_mod(p, m->conf.id);
		snprintf(mb->node, sizeof(mb->node), "%s", p->node->name);
		mb->alive = p->alive;
		mb->state = p->alive && pm ? (enum sk_mod_state)pm->state : SK_ST_STOP;
	}
	o->vip_held = fm && fm->farm && sk_nl_addr_has("lo", &m->conf.vip.addr) > 0;
	if (fm && fm->farm) {
		agent_farm_words(fm->farm, words, sizeof(words));
		snprintf(o->data_words, sizeof(o->data_words), "farm view: %.200s", words);
	} else {
		snprintf(o->data_words, sizeof(o->data_words), "farm filter not attached here");
	}
}

void agent_farmmod_check_failed(struct agent_mod *m, const struct sk_conf_checker *ck)
{
	if (m->conf.kind == SK_MOD_FARM && fm_of(m))
		m->farm->failing |= ck_bit(m, ck);
}

void agent_farmmod_check_ok(struct agent_mod *m, const struct sk_conf_checker *ck)
{
	struct agent_farmmod *fm = m->farm;

	if (m->conf.kind != SK_MOD_FARM || !fm || !(fm->failing & ck_bit(m, ck)))
		return;
	fm->failing &= ~ck_bit(m, ck);
	if (!fm->failing && fm->left)
		agent_mod_kick(m);
}
