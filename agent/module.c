/* agent/module.c: the mirror module state machine: who is primary, the plans that change roles, their timing. */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "nl.h"

/*
 * Rules (docs/agent.md says the same for operators):
 *  - At most one primary (ALONE or PRIM). Two primaries that meet (after a partition or a
 *    freeze) are resolved at once: the one with the older data steps down (fenced first).
 *  - A copy may become primary by itself only if it is "up to date": it was primary last,
 *    or it was secondary and the primary last said it was in sync (resync finished).
 *    A fresh node (no state yet) counts as up to date only against another fresh node.
 *  - Between two candidates the higher data generation wins, then the one that knows its
 *    peer is behind, then the module's default primary (the first of its "nodes"), then the
 *    LOWEST node id (two fresh nodes: the first listed is primary).
 *  - Each node becoming primary takes generation max(own, peer's) + 1; a secondary copies
 *    the primary's generation once in sync.
 *  - A node that lost carrier on its VIP interface never is or becomes primary.
 */

static const char *const step_names[] = {
	[STEP_FENCE] = "fence skfused",     [STEP_PRESTART] = "prestart",
	[STEP_START_BOTH] = "start_both",   [STEP_STOP_PRIM] = "stop_prim",
	[STEP_START_PRIM] = "start_prim",   [STEP_STOP_BOTH] = "stop_both",
	[STEP_PRESTOP] = "prestop",         [STEP_POSTSTOP] = "poststop",
	[STEP_VIP_ADD] = "VIP add",         [STEP_VIP_DEL] = "VIP del",
	[STEP_FUSED_STOP] = "skfused stop", [STEP_FUSED_PRIMARY] = "skfused primary",
	[STEP_FUSED_SECONDARY] = "skfused secondary", [STEP_MARK_PRIMARY] = "mark primary",
	[STEP_MARK_SECOND] = "mark secondary", [STEP_MARK_HANDED] = "mark secondary (handed over)",
	[STEP_FARM_ATTACH] = "farm filter attach", [STEP_FARM_UP] = "farm join",
	[STEP_FARM_LEAVE] = "farm leave", [STEP_FARM_DETACH] = "farm filter detach",
};

const char *agent_mod_step_name(int step)
{
	return step >= 0 && step < (int)(sizeof(step_names) / sizeof(step_names[0])) &&
	       step_names[step] ? step_names[step] : "?";
}

static enum sk_phase step_phase(int s)
{
	switch (s) {
	case STEP_STOP_PRIM: case STEP_STOP_BOTH: case STEP_PRESTOP: case STEP_POSTSTOP:
		return SK_PH_STOP;
	case STEP_PRESTART: case STEP_START_BOTH: case STEP_START_PRIM:
		return SK_PH_START;
	case STEP_VIP_ADD: case STEP_VIP_DEL:
	case STEP_FARM_ATTACH: case STEP_FARM_UP: case STEP_FARM_LEAVE: case STEP_FARM_DETACH:
		return SK_PH_VIP;
	case STEP_FENCE: case STEP_FUSED_STOP: case STEP_FUSED_PRIMARY: case STEP_FUSED_SECONDARY:
		return SK_PH_FUSED;
	default:
		return SK_PH_DECIDE;
	}
}

static void decide(struct agent_mod *m);
static void run_step(struct agent_mod *m);

static void on_kick(uv_timer_t *t)
{
	decide(t->data);
}

void agent_mod_kick(struct agent_mod *m)
{
	if (m->kick.loop && !uv_is_active((uv_handle_t *)&m->kick))
		uv_timer_start(&m->kick, on_kick, 0, 0);
}

bool agent_mod_uptodate(struct agent_mod *m)
{
	if (m->fresh)
		return false;
	if (m->last_role == AGENT_ROLE_PRIMARY)
		return true;
	return m->last_role == AGENT_ROLE_SECONDARY && m->in_sync;
}

/* This node is the first of the module's "nodes": its default primary. */
bool agent_mod_first(const struct agent_mod *m)
{
	return m->conf.n_nodes > 0 && !strcmp(m->conf.nodes[0].name, m->a->self->name);
}

uint8_t agent_mod_flags(struct agent_mod *m)
{
	uint8_t f = 0;

	if (agent_mod_uptodate(m))
		f |= SK_AMSG_F_UPTODATE;
	if (sk_state_is_primary(m->state) && m->fused.peer_in_sync)
		f |= SK_AMSG_F_IN_SYNC;
	/* also when not primary: a stopped former primary still knows its peer is behind */
	if (m->peer_out)
		f |= SK_AMSG_F_PEER_OUT;
	if (m->noprim)
		f |= SK_AMSG_F_NOPRIM;
	if (m->plan.active)
		f |= SK_AMSG_F_BUSY;
	if (m->fresh)
		f |= SK_AMSG_F_FRESH;
	if (m->want_started && !m->a->stopping)
		f |= SK_AMSG_F_STARTED;
	if (agent_mod_first(m))
		f |= SK_AMSG_F_FIRST;
	return f;
}

static void record(struct agent_mod *m, enum sk_mod_state from, enum sk_mod_state to,
		   const char *cause, bool failed, const uint32_t *phase, uint32_t total)
{
	struct sk_ctl_trans t = { 0 };
	char words[600];

	t.at_ms = agent_wall_ms();
	snprintf(t.module, sizeof(t.module), "%s", m->conf.name);
	t.from = from;
	t.to = to;
	snprintf(t.cause, sizeof(t.cause), "%s", cause);
	t.failed = failed;
	t.total_ms = total;
	if (phase)
		memcpy(t.phase_ms, phase, sizeof(t.phase_ms));
	agent_hist_add(m, &t);
	sk_ctl_trans_words(&t, m->a->self->name, words, sizeof(words));
	agent_mod_log(m, "transition %s -> %s: %s", sk_state_name(from), sk_state_name(to), words);
	agent_http_transition(m, &t); /* /ready and /metrics see it at once (agent/http.c) */
}

static void set_state(struct agent_mod *m, enum sk_mod_state s, const char *reason)
{
	bool changed = m->state != s;

	snprintf(m->reason, sizeof(m->reason), "%s", reason ? reason : "");
	if (!changed)
		return;
	m->state = s;
	m->since_ms = agent_wall_ms();
	agent_member_announce(m->a);
	agent_http_touch(m->a); /* /ready answers the new state at once (agent/http.c) */
}

/* A small change that needs no plan (ALONE <-> PRIM, SECOND -> WAIT): kept in the history too. */
static void quick(struct agent_mod *m, enum sk_mod_state s, const char *cause, const char *reason)
{
	enum sk_mod_state from = m->state;

	if (from == s) {
		snprintf(m->reason, sizeof(m->reason), "%s", reason ? reason : "");
		return;
	}
	set_state(m, s, reason);
	record(m, from, s, cause, false, NULL, 0);
}

static void plan(struct agent_mod *m, enum sk_mod_state to, const char *cause, uint64_t event_ms,
		 uint64_t detect_ms, const int *steps, int n)
{
	struct agent_plan *p = &m->plan;
	uint64_t now = agent_now_ms();

	memset(p, 0, sizeof(*p));
	p->active = true;
	p->from = m->state;
	p->to = to;
	snprintf(p->cause, sizeof(p->cause), "%s", cause);
	p->event_ms = event_ms ? event_ms : now;
	p->detect_ms = detect_ms ? detect_ms : now;
	if (p->detect_ms > p->event_ms)
		p->phase_ms[SK_PH_DETECT] = (uint32_t)(p->detect_ms - p->event_ms);
	p->phase_ms[SK_PH_DECIDE] = now > p->detect_ms ? (uint32_t)(now - p->detect_ms) : 0;
	for (int i = 0; i < n && i < AGENT_MAX_STEPS; i++)
		p->steps[p->n++] = steps[i];
	p->fence_confirm = m->fence_confirm_next;
	m->fence_confirm_next = false;
	agent_mod_log(m, "%s -> %s: %s", sk_state_name(m->state), sk_state_name(to), cause);
	agent_member_announce(m->a); /* BUSY: the peer waits for the outcome */
	run_step(m);
}

static void all_stopped_check(struct agent *a)
{
	if (!a->stopping)
		return;
	for (unsigned i = 0; i < a->n_mods; i++)
		if (a->mods[i]->state != SK_ST_STOP || a->mods[i]->plan.active)
			return;
	sk_info("every module stopped: closing");
	agent_ctl_stop(a);
	agent_chan_stop(a);
	agent_member_stop(a);
	for (unsigned i = 0; i < a->n_mods; i++)
		agent_mod_close(a->mods[i]);
	agent_close((uv_handle_t *)&a->sigterm);
	agent_close((uv_handle_t *)&a->sigint);
	uv_stop(a->loop);
}

static void plan_end(struct agent_mod *m)
{
	struct agent_plan *p = &m->plan;
	enum sk_mod_state to = p->to;
	uint64_t now = agent_now_ms();
	const struct sk_amsg_mod *pm = agent_peer_mod(m->peer, m->conf.id);
	char reason[SK_CTL_TEXT_LEN] = "";

	if (sk_state_is_primary(to))
		to = pm && pm->state == SK_ST_SECOND ? SK_ST_PRIM : SK_ST_ALONE;
	if (m->after_reason[0]) {
		snprintf(reason, sizeof(reason), "%s", m->after_reason);
		m->after_reason[0] = '\0';
	}
	p->active = false;
	record(m, p->from, to, p->cause, p->failed, p->phase_ms, (uint32_t)(now - p->event_ms));
	set_state(m, to, reason);
	agent_member_announce(m->a);
	agent_mod_kick(m);
	all_stopped_check(m->a);
}

static void fail_plan(struct agent_mod *m, int step, const char *why);

void agent_mod_step_done(struct agent_mod *m, int rc, const char *why)
{
	struct agent_plan *p = &m->plan;
	int step;

	if (!p->active || !p->waiting)
		return;
	p->waiting = false;
	step = p->steps[p->cur];
	p->phase_ms[step_phase(step)] += (uint32_t)(agent_now_ms() - p->step_ms);
	if (p->abort) {
		/* forcestop killed what this step ran: the plan ends here, failed, and neither its
		 * other steps nor a recovery plan (fail_plan's stop_prim) run; decide() then runs
		 * forcestop's own plan */
		char cause[SK_CTL_TEXT_LEN];

		snprintf(cause, sizeof(cause), "%.150s: cut short at %s by forcestop", p->cause,
			 step_names[step]);
		agent_mod_log(m, "%s", cause);
		p->active = false;
		/* as a failed start: this node does not take the role by itself again, and a
		 * peer that handed the role over takes it back (rule 8) */
		if (sk_state_is_primary(p->to))
			m->noprim = m->noprim_failed = true;
		record(m, p->from, p->to, cause, true, p->phase_ms,
		       (uint32_t)(agent_now_ms() - p->event_ms));
		agent_mod_kick(m);
		return;
	}
	if (rc < 0) {
		char buf[SK_CTL_TEXT_LEN];

		snprintf(buf, sizeof(buf), "%s failed: %s", step_names[step],
			 why ? why : strerror(-rc));
		switch (step) {
		case STEP_STOP_PRIM: case STEP_STOP_BOTH: case STEP_PRESTOP: case STEP_POSTSTOP:
		case STEP_VIP_DEL:
			/* stopping goes on: a failed stop script must not keep the role */
			agent_mod_log(m, "%s (going on)", buf);
			break;
		default:
			fail_plan(m, step, buf);
			return;
		}
	}
	p->cur++;
	run_step(m);
}

/* the operator's "second": hands the role over even to a peer that is behind */
static const char cause_second[] = "operator: second";

/* skfused's state file as its primary left it: its peer was in sync when it stopped (its stop
 * lets what is in flight be acknowledged first, fused/repl.c) */
static bool fused_left_in_sync(struct agent_mod *m)
{
	struct agent_fused_file s;

	return agent_fused_file(m, &s) == 0 && s.primary && s.peer_in_sync;
}

/* Start an async-capable step: the callee reports through agent_mod_step_done. */
static void begin(struct agent_mod *m)
{
	m->plan.waiting = true;
	m->plan.step_ms = agent_now_ms();
}

static void run_step(struct agent_mod *m)
{
	struct agent_plan *p = &m->plan;
	int step, rc;

	if (p->cur >= p->n) {
		plan_end(m);
		return;
	}
	step = p->steps[p->cur];
	begin(m);
	switch (step) {
	case STEP_FENCE:
		if (m->fused.running && m->fused.role == AGENT_ROLE_PRIMARY && p->fence_confirm)
			agent_fused_fence_wait(m);
		else if (m->fused.running && m->fused.role == AGENT_ROLE_PRIMARY)
			agent_fused_stop(m, true);
		else
			agent_mod_step_done(m, 0, NULL);
		return;
	case STEP_PRESTART: case STEP_START_BOTH: case STEP_STOP_PRIM: case STEP_START_PRIM:
	case STEP_STOP_BOTH: case STEP_PRESTOP: case STEP_POSTSTOP: {
		static const enum sk_script which[] = {
			[STEP_PRESTART] = SK_SCRIPT_PRESTART,   [STEP_START_BOTH] = SK_SCRIPT_START_BOTH,
			[STEP_STOP_PRIM] = SK_SCRIPT_STOP_PRIM, [STEP_START_PRIM] = SK_SCRIPT_START_PRIM,
			[STEP_STOP_BOTH] = SK_SCRIPT_STOP_BOTH, [STEP_PRESTOP] = SK_SCRIPT_PRESTOP,
			[STEP_POSTSTOP] = SK_SCRIPT_POSTSTOP,
		};
		rc = agent_script_run(m, which[step]);
		if (rc != 0)
			agent_mod_step_done(m, rc > 0 ? 0 : rc, NULL);
		return;
	}
	case STEP_VIP_ADD:
		agent_mod_step_done(m, m->carrier ? agent_vip_add(m) : -ENETDOWN,
				    m->carrier ? NULL : "no carrier on the VIP interface");
		return;
	case STEP_VIP_DEL:
		agent_mod_step_done(m, agent_vip_del(m), NULL);
		return;
	case STEP_FUSED_STOP:
		agent_fused_stop(m, false);
		return;
	case STEP_FUSED_PRIMARY: case STEP_FUSED_SECONDARY:
		rc = agent_fused_start(m, step == STEP_FUSED_PRIMARY ? AGENT_ROLE_PRIMARY :
								       AGENT_ROLE_SECONDARY);
		if (rc != 0)
			agent_mod_step_done(m, rc > 0 ? 0 : rc, NULL);
		return;
	case STEP_MARK_PRIMARY: {
		const struct sk_amsg_mod *pm = agent_peer_mod(m->peer, m->conf.id);
		uint64_t g = m->gen;

		if (pm && pm->gen > g)
			g = pm->gen;
		m->gen = g + 1;
		m->last_role = AGENT_ROLE_PRIMARY;
		m->peer_out = true; /* until skfused says the peer is in sync */
		m->in_sync = false;
		m->fused.peer_in_sync = false;
		agent_mod_step_done(m, agent_state_save(m), "cannot persist the new generation");
		return;
	}
	case STEP_MARK_HANDED:
		/* skfused's last word, written by its stop: a peer that fell behind while the role
		 * was being handed over (dropped, its resync not done) lacks acknowledged writes and
		 * must not take it. A swap (or a checker's failover) fails: this node, the newest
		 * copy, takes the role back. The operator's "second" goes on (a diverged pair is
		 * handed over so that the other side can be forced, docs/skctl.md). */
		if (!fused_left_in_sync(m) && strcmp(m->plan.cause, cause_second)) {
			m->noprim = false;
			m->peer_out = true;
			agent_mod_step_done(m, agent_state_save(m) < 0 ? -EIO : -ESTALE,
					    "the peer's copy fell behind during the hand-over (skfused "
					    "stopped with it not in sync): keeping the role");
			return;
		}
		/* fall through */
	case STEP_MARK_SECOND:
		m->last_role = AGENT_ROLE_SECONDARY;
		/* a primary handing over cleanly holds the newest copy: it stays a candidate (if the
		 * taker fails, this node takes the role back); the new primary's first "not in sync"
		 * clears it while its resync runs */
		m->in_sync = step == STEP_MARK_HANDED;
		m->peer_out = false;
		agent_mod_step_done(m, agent_state_save(m), "cannot persist the role");
		return;
	case STEP_FARM_ATTACH: case STEP_FARM_UP: case STEP_FARM_LEAVE: case STEP_FARM_DETACH: {
		const char *why = NULL;

		rc = agent_farmmod_step(m, step, &why);
		agent_mod_step_done(m, rc, why);
		return;
	}
	}
	agent_mod_step_done(m, -EINVAL, "unknown step");
}

/* ---- plans ---- */

static const int to_primary[] = { STEP_FUSED_STOP, STEP_MARK_PRIMARY, STEP_FUSED_PRIMARY,
				  STEP_VIP_ADD, STEP_START_PRIM };
static const int to_second_from_prim[] = { STEP_FENCE, STEP_STOP_PRIM, STEP_VIP_DEL,
					   STEP_FUSED_STOP, STEP_MARK_SECOND, STEP_FUSED_SECONDARY };
/* swap and second: the application stops first and skfused unmounts cleanly (no fence) */
static const int hand_over[] = { STEP_STOP_PRIM, STEP_VIP_DEL, STEP_FUSED_STOP, STEP_MARK_HANDED,
				 STEP_FUSED_SECONDARY };
static const int to_second[] = { STEP_MARK_SECOND, STEP_FUSED_SECONDARY };
static const int isolate[] = { STEP_FENCE, STEP_STOP_PRIM, STEP_VIP_DEL, STEP_FUSED_STOP };
static const int boot[] = { STEP_VIP_DEL, STEP_PRESTART, STEP_START_BOTH };
static const int stop_prim[] = { STEP_PRESTOP, STEP_STOP_PRIM, STEP_VIP_DEL, STEP_FUSED_STOP,
				 STEP_STOP_BOTH, STEP_POSTSTOP };
static const int stop_other[] = { STEP_PRESTOP, STEP_VIP_DEL, STEP_FUSED_STOP, STEP_STOP_BOTH,
				  STEP_POSTSTOP };
static const int after_failed_prim[] = { STEP_STOP_PRIM, STEP_VIP_DEL, STEP_FUSED_STOP };
#define N(x) ((int)(sizeof(x) / sizeof((x)[0])))

static void fail_plan(struct agent_mod *m, int step, const char *why)
{
	struct agent_plan *p = &m->plan;
	uint64_t now = agent_now_ms();
	enum sk_mod_state from = p->from;

	agent_mod_log(m, "%s", why);
	p->active = false;
	record(m, from, p->to, why, true, p->phase_ms, (uint32_t)(now - p->event_ms));
	m->retry_ms = now + 3000;
	if (step == STEP_PRESTART || step == STEP_START_BOTH) {
		snprintf(m->after_reason, sizeof(m->after_reason), "%.180s; fix it, then skctl start -m %s",
			 why, m->conf.name);
		m->want_started = false;
		plan(m, SK_ST_STOP, why, 0, 0, stop_other, N(stop_other));
		return;
	}
	if (p->to == SK_ST_ALONE || p->to == SK_ST_PRIM) {
		/* fail over once: this node will not take the role again by itself */
		m->noprim = true;
		m->noprim_failed = true;
		snprintf(m->after_reason, sizeof(m->after_reason), "%.150s; the peer may take over; "
			 "skctl prim -m %s once fixed", why, m->conf.name);
		plan(m, SK_ST_WAIT, why, 0, 0, after_failed_prim, N(after_failed_prim));
		return;
	}
	set_state(m, SK_ST_WAIT, why);
	agent_mod_kick(m);
}

/*
 * -1: the peer ranks higher, 1: we do (see the rules at the top). The default primary is
 * the one each node says it is (SK_AMSG_F_FIRST), so two nodes whose configs list the nodes
 * in different orders still agree: both or neither claiming it falls to the lowest id.
 */
static int rank(struct agent_mod *m, const struct sk_amsg_mod *pm)
{
	bool first = agent_mod_first(m);

	if (m->gen != pm->gen)
		return m->gen > pm->gen ? 1 : -1;
	if (m->peer_out != !!(pm->flags & SK_AMSG_F_PEER_OUT))
		return m->peer_out ? 1 : -1;
	if (first != !!(pm->flags & SK_AMSG_F_FIRST))
		return first ? 1 : -1;
	return m->a->self->id < m->peer->node->id ? 1 : -1;
}

static bool both_fresh(struct agent_mod *m, const struct sk_amsg_mod *pm)
{
	return m->fresh && pm && (pm->flags & SK_AMSG_F_FRESH);
}

static bool me_candidate(struct agent_mod *m, const struct sk_amsg_mod *pm)
{
	return !m->noprim && m->carrier && (agent_mod_uptodate(m) || both_fresh(m, pm));
}

static bool peer_candidate(struct agent_mod *m, const struct sk_amsg_mod *pm)
{
	return pm && !(pm->flags & SK_AMSG_F_NOPRIM) && (pm->flags & SK_AMSG_F_STARTED) &&
	       ((pm->flags & SK_AMSG_F_UPTODATE) || both_fresh(m, pm));
}

static const char *why_not(struct agent_mod *m)
{
	if (!m->carrier)
		return "no carrier on the VIP interface";
	if (m->noprim)
		return "told not to become primary by itself (failed start, swap or second)";
	if (m->fresh)
		return "this node has never held the data";
	if (m->last_role == AGENT_ROLE_SECONDARY && !m->in_sync)
		return "this copy is outdated (its resync did not finish)";
	return "this node was secondary last and the peer may have newer data";
}

/* Keep the persisted sync facts true; true if something changed. */
static void track_sync(struct agent_mod *m, const struct sk_amsg_mod *pm)
{
	if (sk_state_is_primary(m->state) && !m->plan.active) {
		bool out = !m->fused.peer_in_sync;

		if (out != m->peer_out) {
			m->peer_out = out;
			agent_state_save(m);
			agent_mod_log(m, "peer copy %s", out ? "behind ours (not in sync)" : "in sync");
		}
	}
	if (m->state == SK_ST_SECOND && !m->plan.active && pm && sk_state_is_primary(pm->state)) {
		struct agent_fused_file ff;

		if ((pm->flags & SK_AMSG_F_IN_SYNC) && agent_fused_file(m, &ff) == 0 && ff.consistent) {
			if (!m->in_sync || m->gen != pm->gen) {
				m->in_sync = true;
				m->gen = pm->gen;
				agent_state_save(m);
				agent_mod_log(m, "copy in sync with %s (generation %llu)",
					      m->peer->node->name, (unsigned long long)m->gen);
				agent_member_announce(m->a);
			}
		} else if ((pm->flags & SK_AMSG_F_PEER_OUT) && m->in_sync) {
			m->in_sync = false;
			agent_state_save(m);
			agent_mod_log(m, "copy no longer in sync with %s", m->peer->node->name);
			agent_member_announce(m->a);
		}
	}
}

static void go_primary(struct agent_mod *m, const char *cause, uint64_t event, uint64_t detect)
{
	plan(m, SK_ST_ALONE, cause, event, detect, to_primary, N(to_primary));
}

static void decide(struct agent_mod *m)
{
	struct agent *a = m->a;
	struct agent_peer *p = m->peer;
	const struct sk_amsg_mod *pm = agent_peer_mod(p, m->conf.id);
	bool want = m->want_started && !a->stopping;
	uint64_t now = agent_now_ms();
	char cause[SK_CTL_TEXT_LEN], reason[SK_CTL_TEXT_LEN];

	if (m->conf.kind == SK_MOD_FARM && agent_farmmod_decide(m) == 0)
		return; /* farm modules: agent/farmmod.c */
	if (m->plan.active)
		return;
	track_sync(m, pm);
	if (!want && m->forcestop) {
		agent_mod_forcestop_plan(m);
		return;
	}
	if (!want) {
		if (m->state != SK_ST_STOP)
			plan(m, SK_ST_STOP, a->stopping ? "agent stopping" : "operator: stop", 0, 0,
			     sk_state_is_primary(m->state) ? stop_prim : stop_other,
			     sk_state_is_primary(m->state) ? N(stop_prim) : N(stop_other));
		else
			all_stopped_check(a);
		return;
	}
	if (now < m->retry_ms) {
		uv_timer_start(&m->kick, on_kick, m->retry_ms - now, 0);
		return;
	}
	if (m->state == SK_ST_STOP) {
		m->start_ms = now;
		plan(m, SK_ST_WAIT, "module started", 0, 0, boot, N(boot));
		return;
	}
	/* the peer became primary by itself: a swap or a failed start is over */
	if (m->noprim && pm && sk_state_is_primary(pm->state) && !(pm->flags & SK_AMSG_F_BUSY))
		m->noprim = m->noprim_failed = false;
	/* we handed the role over but the peer gave it up too (its start failed): take it back.
	 * A node whose own start failed never does, so two failing nodes stop, never loop. */
	if (m->noprim && !m->noprim_failed && pm && !sk_state_is_primary(pm->state) &&
	    (pm->flags & SK_AMSG_F_NOPRIM) && !(pm->flags & SK_AMSG_F_BUSY)) {
		agent_mod_log(m, "%s gave the role up too: taking it back", p->node->name);
		m->noprim = false;
	}

	if (sk_state_is_primary(m->state)) {
		if (!m->carrier) {
			snprintf(m->after_reason, sizeof(m->after_reason), "no carrier on %s",
				 m->conf.vip.ifname);
			plan(m, SK_ST_WAIT, "no carrier on the VIP interface: this node is cut off, "
			     "it stops serving at once", 0, 0, isolate, N(isolate));
			return;
		}
		if (pm && sk_state_is_primary(pm->state)) {
			if (rank(m, pm) < 0) {
				snprintf(cause, sizeof(cause), "two primaries: %s holds newer data "
					 "(generation %llu, ours %llu)", p->node->name,
					 (unsigned long long)pm->gen, (unsigned long long)m->gen);
				plan(m, SK_ST_SECOND, cause, 0, 0, to_second_from_prim,
				     N(to_second_from_prim));
			} else if (!m->warned_dual) {
				m->warned_dual = true;
				agent_mod_log(m, "two primaries: %s must step down (we hold newer data)",
					      p->node->name);
			}
			return;
		}
		m->warned_dual = false;
		/* taken over after an agent restart, the peer not heard yet: skfused still
		 * replicates to it, so it is there (agent/adopt.c) */
		if (!pm && m->state == SK_ST_PRIM && !p->ever_seen && m->fused.peer_connected &&
		    now - m->start_ms < a->startup_grace_ms)
			return;
		/* split brain guard (agent/witness.c): with the peer dead, serve only with a witness */
		if (!p->alive && !agent_witness_allow(m, reason, sizeof(reason))) {
			snprintf(m->after_reason, sizeof(m->after_reason), "%s", reason);
			/* the lease ended: skfused's own fence answers what is in flight (EROFS)
			 * before it is killed (agent_fused_fence_wait) */
			m->fence_confirm_next = agent_witness_lease_fence(m);
			plan(m, SK_ST_WAIT, reason, 0, 0, isolate, N(isolate));
			return;
		}
		if (pm && pm->state == SK_ST_SECOND) {
			snprintf(cause, sizeof(cause), "%s secondary", p->node->name);
			quick(m, SK_ST_PRIM, cause, "");
		} else if (m->state == SK_ST_PRIM) {
			if (!pm && !p->alive)
				snprintf(cause, sizeof(cause), "%s", p->died_words[0] ? p->died_words :
					 "peer lost");
			else
				snprintf(cause, sizeof(cause), "%s %s", p->node->name,
					 pm ? sk_state_name(pm->state) : "without this module");
			m->peer_out = true;
			agent_state_save(m);
			quick(m, SK_ST_ALONE, cause, "");
		}
		return;
	}

	/* SECOND or WAIT from here */
	if (pm && sk_state_is_primary(pm->state)) {
		if (m->state == SK_ST_WAIT)
			plan(m, SK_ST_SECOND, "peer is primary", 0, 0, to_second, N(to_second));
		return;
	}
	if (pm && (pm->flags & SK_AMSG_F_BUSY))
		return; /* the peer is changing role: wait for the outcome */
	if (!m->carrier) {
		snprintf(reason, sizeof(reason), "no carrier on %s: cannot serve", m->conf.vip.ifname);
		quick(m, SK_ST_WAIT, reason, reason);
		return;
	}
	if (pm) {
		/* the peer is alive without a primary role (WAIT, SECOND, STOP) */
		bool mine = me_candidate(m, pm), theirs = peer_candidate(m, pm);

		if (mine && (!theirs || rank(m, pm) > 0)) {
			if (pm->state == SK_ST_STOP || !(pm->flags & SK_AMSG_F_STARTED))
				snprintf(cause, sizeof(cause), "%s stopped", p->node->name);
			else if (pm->flags & SK_AMSG_F_NOPRIM)
				snprintf(cause, sizeof(cause), "%s hands the role over (swap, second or "
					 "a failed start)", p->node->name);
			else if (both_fresh(m, pm) && agent_mod_first(m) && !(pm->flags & SK_AMSG_F_FIRST))
				snprintf(cause, sizeof(cause), "both copies fresh: %s is the module's "
					 "default primary (the first of its nodes)", a->self->name);
			else if (both_fresh(m, pm))
				snprintf(cause, sizeof(cause), "both copies fresh: the lowest node id "
					 "(%s) is primary", a->self->name);
			else
				snprintf(cause, sizeof(cause), "%s %s, this copy is the newest "
					 "(generation %llu vs %llu)", p->node->name,
					 sk_state_name(pm->state), (unsigned long long)m->gen,
					 (unsigned long long)pm->gen);
			go_primary(m, cause, 0, 0);
			return;
		}
		if (theirs) {
			snprintf(reason, sizeof(reason), "%s holds the newest data: waiting for it to "
				 "become primary", p->node->name);
			if (m->state == SK_ST_SECOND)
				snprintf(m->reason, sizeof(m->reason), "%s", reason);
			else
				quick(m, SK_ST_WAIT, reason, reason);
			return;
		}
		snprintf(reason, sizeof(reason), "no copy may become primary by itself (here: %s); "
			 "on the node whose data you want: skctl prim -m %s --force", why_not(m),
			 m->conf.name);
		quick(m, SK_ST_WAIT, "no candidate for primary", reason);
		return;
	}

	/* the peer is dead or has not been seen */
	if (m->state == SK_ST_SECOND && !p->ever_seen && now - m->start_ms < a->startup_grace_ms) {
		/* a secondary taken over after an agent restart: not a failover before the peer
		 * had the startup grace to be heard (agent/adopt.c) */
		snprintf(m->reason, sizeof(m->reason), "agent restarted: waiting up to %llu s for %s "
			 "to be heard", (unsigned long long)(a->startup_grace_ms / 1000), p->node->name);
		uv_timer_start(&m->kick, on_kick, m->start_ms + a->startup_grace_ms - now, 0);
		return;
	}
	if (m->state == SK_ST_SECOND || agent_witness_takeover(m)) {
		if (me_candidate(m, NULL)) {
			snprintf(cause, sizeof(cause), "%s", p->died_words[0] ? p->died_words :
				 "peer lost");
			/* split brain guard (agent/witness.c): a witness must say yes */
			if (!agent_witness_allow(m, reason, sizeof(reason))) {
				quick(m, SK_ST_WAIT, cause, reason);
				return;
			}
			go_primary(m, cause, p->alive ? 0 : p->died_last_seen_ms,
				   p->alive ? 0 : p->died_ms);
			return;
		}
		snprintf(reason, sizeof(reason), "%s lost and %s; skctl prim -m %s --force to serve "
			 "this copy anyway", p->node->name, why_not(m), m->conf.name);
		quick(m, SK_ST_WAIT, p->died_words[0] ? p->died_words : "peer lost", reason);
		return;
	}
	if (now - m->start_ms < a->startup_grace_ms) {
		snprintf(m->reason, sizeof(m->reason), "waiting up to %llu s for %s to be heard",
			 (unsigned long long)(a->startup_grace_ms / 1000), p->node->name);
		uv_timer_start(&m->kick, on_kick, m->start_ms + a->startup_grace_ms - now, 0);
		return;
	}
	if (me_candidate(m, NULL) && m->last_role == AGENT_ROLE_PRIMARY) {
		snprintf(cause, sizeof(cause), "%s absent; this node was primary last (newest data)",
			 p->node->name);
		if (!agent_witness_allow(m, reason, sizeof(reason))) {
			snprintf(m->reason, sizeof(m->reason), "%s", reason);
			return; /* agent/witness.c kicks us when the witness answers */
		}
		go_primary(m, cause, 0, 0);
		return;
	}
	snprintf(reason, sizeof(reason), "%.24s absent and %s; once sure %.24s is down: skctl prim -m %s%s",
		 p->node->name, why_not(m), p->node->name, m->conf.name,
		 agent_mod_uptodate(m) ? "" : " --force");
	snprintf(m->reason, sizeof(m->reason), "%s", reason);
}

/* ---- events ---- */

void agent_mod_peer_dead(struct agent_mod *m)
{
	/* decide at once, not on the next tick: this is the failover path */
	decide(m);
}

void agent_mod_carrier(struct agent_mod *m, bool up)
{
	m->carrier = up;
	/* back on the wire: give the peer a grace to be heard before deciding anything alone */
	if (up)
		m->start_ms = agent_now_ms();
	agent_mod_log(m, "carrier %s on %s", up ? "back" : "lost", m->conf.vip.ifname);
	decide(m);
}

void agent_mod_swap_from_peer(struct agent_mod *m)
{
	char err[128], hint[128];

	agent_mod_log(m, "%s asks for a swap", m->peer->node->name);
	agent_mod_cmd(m, SK_CTL_SWAP, false, err, sizeof(err), hint, sizeof(hint));
}

int agent_mod_cmd(struct agent_mod *m, enum sk_ctl_verb verb, bool force, char *err, size_t elen,
		  char *hint, size_t hlen)
{
	const struct sk_amsg_mod *pm = agent_peer_mod(m->peer, m->conf.id);
	const char *name = m->conf.name;

	hint[0] = '\0';
	switch (verb) {
	case SK_CTL_START:
		m->want_started = true;
		m->noprim = m->noprim_failed = false;
		m->retry_ms = 0;
		agent_state_save(m);
		agent_mod_kick(m);
		return 0;
	case SK_CTL_STOP:
		m->want_started = false;
		agent_state_save(m);
		agent_mod_kick(m);
		return 0;
	default:
		break;
	}
	if (m->conf.kind == SK_MOD_FARM) {
		snprintf(err, elen, "module %s is a farm module: every node serves, none is primary",
			 name);
		snprintf(hint, hlen, "skctl stop -m %s / skctl start -m %s on the node to take out or "
			 "put back", name, name);
		return -EINVAL;
	}
	if (m->plan.active) {
		snprintf(err, elen, "module %s is busy (%s -> %s: %s)", name,
			 sk_state_name(m->plan.from), sk_state_name(m->plan.to), m->plan.cause);
		snprintf(hint, hlen, "wait for it to finish (skctl state -m %s), then retry", name);
		return -EBUSY;
	}
	if (m->state == SK_ST_STOP) {
		snprintf(err, elen, "module %s is stopped on this node", name);
		snprintf(hint, hlen, "skctl start -m %s first", name);
		return -EINVAL;
	}
	switch (verb) {
	case SK_CTL_SWAP:
		if (sk_state_is_primary(m->state)) {
			if (!pm || pm->state != SK_ST_SECOND || !(pm->flags & SK_AMSG_F_UPTODATE) ||
			    !m->fused.peer_in_sync) {
				snprintf(err, elen, "no secondary in sync to hand the role to");
				snprintf(hint, hlen, "wait until %s is SECOND and in sync "
					 "(skctl state -m %s)", m->peer->node->name, name);
				return -EAGAIN;
			}
			m->noprim = true;
			m->noprim_failed = false;
			plan(m, SK_ST_SECOND, "swap: handing the primary role to the peer", 0, 0,
			     hand_over, N(hand_over));
			return 0;
		}
		if (m->state == SK_ST_SECOND && pm && sk_state_is_primary(pm->state)) {
			if (!agent_mod_uptodate(m)) {
				snprintf(err, elen, "this copy is not in sync yet");
				snprintf(hint, hlen, "wait for the resync to finish, then retry");
				return -EAGAIN;
			}
			if (agent_chan_send_cmd(m->a, m->peer, SK_AMSG_CMD_SWAP, m->conf.id) < 0) {
				snprintf(err, elen, "no channel to %s", m->peer->node->name);
				snprintf(hint, hlen, "run the swap on %s", m->peer->node->name);
				return -ENOTCONN;
			}
			return 0;
		}
		snprintf(err, elen, "swap needs a PRIM and a SECOND (here %s)", sk_state_name(m->state));
		snprintf(hint, hlen, "skctl state -m %s shows both nodes", name);
		return -EINVAL;
	case SK_CTL_PRIM:
		/* --force over a peer that is not in sync: this copy survives, a diverged or newer
		 * peer takes it and keeps its own changes aside (agent/fused.c, fused/aside.c) */
		if (sk_state_is_primary(m->state)) {
			if (force && !m->fused.peer_in_sync)
				agent_fused_survivor(m);
			return 0;
		}
		if (pm && sk_state_is_primary(pm->state)) {
			snprintf(err, elen, "%s is primary", m->peer->node->name);
			if (force && !strcmp(m->fused.peer_word, "diverged"))
				/* a diverged pair cannot swap (nothing is in sync): hand over first */
				snprintf(hint, hlen, "to keep this copy: skctl second -m %s on %s first, then "
					 "skctl prim -m %s --force here", name, m->peer->node->name, name);
			else
				snprintf(hint, hlen, "skctl swap -m %s moves the role here", name);
			return -EEXIST;
		}
		if (!m->carrier) {
			snprintf(err, elen, "no carrier on %s", m->conf.vip.ifname);
			snprintf(hint, hlen, "fix the link first");
			return -ENETDOWN;
		}
		if (!force && !agent_mod_uptodate(m)) {
			snprintf(err, elen, "%s", why_not(m));
			snprintf(hint, hlen, "skctl prim -m %s --force makes this copy the reference: "
				 "changes only the other node has are lost", name);
			return -ESTALE;
		}
		m->noprim = m->noprim_failed = false;
		m->retry_ms = 0;
		m->fused.survivor_pending = force; /* sent once skfused serves as primary */
		if (force)
			agent_witness_force(m); /* agent/witness.c: the lease even after a lone holder */
		go_primary(m, force ? "operator: prim --force" : "operator: prim", 0, 0);
		return 0;
	case SK_CTL_SECOND:
		if (m->state == SK_ST_SECOND)
			return 0;
		m->noprim = true;
		m->noprim_failed = false;
		if (sk_state_is_primary(m->state))
			plan(m, SK_ST_SECOND, cause_second, 0, 0, hand_over, N(hand_over));
		else
			plan(m, SK_ST_SECOND, "operator: second", 0, 0, to_second, N(to_second));
		return 0;
	default:
		snprintf(err, elen, "not a module command");
		return -EINVAL;
	}
}

void agent_mod_fill_ctl(struct agent_mod *m, struct sk_ctl_mod *o)
{
	const struct sk_amsg_mod *pm = agent_peer_mod(m->peer, m->conf.id);

	memset(o, 0, sizeof(*o));
	snprintf(o->name, sizeof(o->name), "%s", m->conf.name);
	o->state = m->state;
	snprintf(o->peer, sizeof(o->peer), "%s", m->peer->node->name);
	o->peer_alive = m->peer->alive;
	o->peer_state = pm ? (enum sk_mod_state)pm->state : SK_ST_STOP;
	if (m->conf.has_vip)
		snprintf(o->vip, sizeof(o->vip), "%s/%u on %s", m->conf.vip.addr.text,
			 m->conf.vip.prefix, m->conf.vip.ifname);
	o->vip_held = agent_vip_held(m);
	o->uptodate = agent_mod_uptodate(m);
	o->gen = m->gen;
	snprintf(o->fused, sizeof(o->fused), "%s", !m->fused.running ? "none" :
		 !m->fused.ready ? "starting" :
		 m->fused.role == AGENT_ROLE_PRIMARY ? "primary" : "secondary");
	if (m->plan.active)
		snprintf(o->busy, sizeof(o->busy), "%s", step_names[m->plan.steps[m->plan.cur]]);
	snprintf(o->reason, sizeof(o->reason), "%s", m->reason);
	o->since_ms = m->since_ms;
	agent_fused_fill_ctl(m, o); /* generations and resync progress (agent/fused.c) */
	if (m->conf.kind == SK_MOD_FARM)
		agent_farmmod_fill_ctl(m, o); /* the filter's view instead (agent/farmmod.c) */
}

void agent_mod_plan(struct agent_mod *m, enum sk_mod_state to, const char *cause, const int *steps,
		    int n)
{
	plan(m, to, cause, 0, 0, steps, n);
}

void agent_mod_forcestop_plan(struct agent_mod *m)
{
	static const int mirror_steps[] = { STEP_FENCE, STEP_VIP_DEL, STEP_FUSED_STOP };
	static const int farm_steps[] = { STEP_FARM_LEAVE, STEP_FARM_DETACH };

	m->forcestop = false;
	if (m->state == SK_ST_STOP) {
		all_stopped_check(m->a);
		return;
	}
	if (m->conf.kind == SK_MOD_FARM)
		plan(m, SK_ST_STOP, "operator: forcestop", 0, 0, farm_steps, N(farm_steps));
	else
		plan(m, SK_ST_STOP, "operator: forcestop", 0, 0, mirror_steps, N(mirror_steps));
}

/* ---- shutdown ---- */

void agent_mod_stop_all(struct agent *a)
{
	a->stopping = true;
	if (!a->n_mods) {
		all_stopped_check(a);
		return;
	}
	for (unsigned i = 0; i < a->n_mods; i++)
		agent_mod_kick(a->mods[i]);
}

/*
 * Checker policy entry points (agent/policy.c). Restart: stop_prim then start_prim on this node,
 * the role kept (a failing start_prim fails the module over once, as at any start). Failover:
 * hand the role to an in-sync secondary as a swap does; this node stays a candidate.
 */
static const int app_restart[] = { STEP_STOP_PRIM, STEP_START_PRIM };

int agent_mod_app_restart(struct agent_mod *m, const char *cause)
{
	if (m->conf.kind == SK_MOD_FARM)
		return agent_farmmod_app_restart(m, cause);
	if (m->plan.active)
		return -EBUSY;
	if (!sk_state_is_primary(m->state))
		return -EINVAL;
	plan(m, m->state, cause, 0, 0, app_restart, N(app_restart));
	return 0;
}

int agent_mod_app_failover(struct agent_mod *m, const char *cause)
{
	const struct sk_amsg_mod *pm = agent_peer_mod(m->peer, m->conf.id);

	if (m->conf.kind == SK_MOD_FARM)
		return agent_farmmod_app_failover(m, cause);
	if (m->plan.active)
		return -EBUSY;
	if (!sk_state_is_primary(m->state))
		return -EINVAL;
	if (!pm || pm->state != SK_ST_SECOND || !(pm->flags & SK_AMSG_F_UPTODATE))
		return -EAGAIN;
	m->noprim = true;
	m->noprim_failed = false;
	plan(m, SK_ST_SECOND, cause, 0, 0, hand_over, N(hand_over));
	return 0;
}
