/* agent/policy.c: what a failed checker does to its module: restart here within a budget, fail over, or stop. */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "log.h"

/*
 * Restart budget per module: failover.restart_max local restarts within failover.window_s; the
 * next failure inside the window fails the module over instead. Kept in memory only (an agent
 * restart gives a fresh budget, as the operator's intervention would).
 */
#define MAX_KEPT 100 /* conf bounds restart_max to 0..100 */

struct budget {
	const struct agent_mod *m;
	uint64_t at_ms[MAX_KEPT]; /* monotonic times of the restarts, oldest first */
	unsigned n;
};

static struct budget budgets[AGENT_MAX_MODS];

static struct budget *budget_of(struct agent_mod *m)
{
	for (unsigned i = 0; i < AGENT_MAX_MODS; i++)
		if (budgets[i].m == m)
			return &budgets[i];
	for (unsigned i = 0; i < AGENT_MAX_MODS; i++)
		if (!budgets[i].m) {
			budgets[i].m = m;
			return &budgets[i];
		}
	return NULL;
}

/* Restarts still inside the window (older ones are dropped). */
static unsigned in_window(struct budget *b, uint64_t now, uint64_t window_ms)
{
	unsigned k = 0;

	for (unsigned i = 0; i < b->n; i++)
		if (now - b->at_ms[i] < window_ms)
			b->at_ms[k++] = b->at_ms[i];
	b->n = k;
	return k;
}

static void failover(struct agent_mod *m, const char *cause)
{
	int rc = agent_mod_app_failover(m, cause);

	if (rc == -EAGAIN) {
		/* nobody to take it: keep serving as well as we can (restart in place) */
		agent_mod_log(m, "%s; no secondary in sync to fail over to: restarting here instead",
			      cause);
		rc = agent_mod_app_restart(m, cause);
	}
	if (rc < 0 && rc != -EBUSY)
		agent_mod_log(m, "%s: cannot act (%s)", cause, strerror(-rc));
}

void agent_policy_fail(struct agent_mod *m, const struct sk_conf_checker *ck, const char *what)
{
	char cause[SK_CTL_TEXT_LEN];
	struct budget *b = budget_of(m);
	uint64_t now = agent_now_ms();
	unsigned used;

	agent_farmmod_check_failed(m, ck); /* a farm node rejoins once its failed checkers pass */
	switch (ck->action) {
	case SK_ACT_STOP: {
		char err[128], hint[128];

		snprintf(cause, sizeof(cause), "checker %.200s: stopping the module", what);
		agent_mod_log(m, "%s", cause);
		agent_mod_cmd(m, SK_CTL_STOP, false, err, sizeof(err), hint, sizeof(hint));
		return;
	}
	case SK_ACT_IGNORE:
		agent_mod_log(m, "checker %s: failing; its action is \"ignore\": nothing done", what);
		return;
	case SK_ACT_STOPSTART: {
		/* as skctl stopstart: an in-sync peer takes over while this node stops and starts */
		char err[SK_CTL_TEXT_LEN], hint[SK_CTL_TEXT_LEN];
		json_object *data = NULL;

		agent_mod_log(m, "checker %.200s: stopstart (stop the module here, start it again)",
			      what);
		if (agent_opcmd(m, SK_CTL_STOPSTART, &data, err, sizeof(err), hint, sizeof(hint)) < 0)
			agent_mod_log(m, "checker %.200s: stopstart refused: %s", what, err);
		if (data)
			json_object_put(data);
		return;
	}
	case SK_ACT_FAILOVER:
		snprintf(cause, sizeof(cause), "checker %.200s: failover", what);
		failover(m, cause);
		return;
	case SK_ACT_RESTART:
	default:
		break;
	}
	if (!b) {
		snprintf(cause, sizeof(cause), "checker %.200s: failover", what);
		failover(m, cause);
		return;
	}
	used = in_window(b, now, (uint64_t)m->conf.restart_window_s * 1000);
	if (used >= m->conf.restart_max) {
		snprintf(cause, sizeof(cause), "checker %.160s: %u local restart(s) in %u s already, "
			 "failover", what, used, m->conf.restart_window_s);
		failover(m, cause);
		return;
	}
	snprintf(cause, sizeof(cause), "checker %.160s: local restart %u of %u", what, used + 1,
		 m->conf.restart_max);
	if (agent_mod_app_restart(m, cause) == 0 && b->n < MAX_KEPT)
		b->at_ms[b->n++] = now;
}
