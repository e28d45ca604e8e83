/* cli/cmd_role.c: skctl start, stop, swap, prim, second (prim --force says what it would lose and asks). */
#include "skctl.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Tell what forcing this copy costs, from the agent's own view; false if the operator declines. */
static bool confirm_force(struct skctl *o)
{
	struct sk_ctl_reply rep;
	json_object *mods;
	struct sk_ctl_mod m = { 0 };
	char err[128], answer[16];
	bool have = false, force = o->force;
	int rc;

	/* the state request carries no "force" (the agent refuses it there): prim --force always
	 * failed here with 'bad request' before it could say anything */
	o->force = false;
	rc = skctl_call(o, SK_CTL_STATE, &rep);
	o->force = force;
	if (rc)
		return false;
	if (json_object_object_get_ex(rep.data, "modules", &mods) &&
	    json_object_array_length(mods) > 0)
		have = sk_ctl_mod_from_json(json_object_array_get_idx(mods, 0), &m, err,
					    sizeof(err)) == 0;
	sk_ctl_reply_free(&rep);
	if (!have) {
		skctl_fail("the agent did not describe the module", "check skctl state");
		return false;
	}
	printf("prim --force on %s: this node's copy becomes the reference (generation %llu).\n",
	       m.name, (unsigned long long)m.gen);
	if (m.uptodate)
		printf("  This copy is up to date: nothing known is lost.\n");
	else
		printf("  This copy is NOT known to be up to date (%s).\n"
		       "  Whatever only %s has (writes after this copy was last in sync) will be\n"
		       "  overwritten when %s resyncs from this node.\n",
		       m.reason[0] ? m.reason : "outdated", m.peer, m.peer);
	if (!strcmp(m.relation, "diverged") || !strcmp(m.relation, "older"))
		printf("  %s's copy %s: %s will take this one. What only %s changed is not destroyed:\n"
		       "  before the resync overwrites or removes them, its files are kept aside in\n"
		       "  <its data dir>.steadykit-aside/<UTC date>/ (files/ and list.txt).\n",
		       m.peer, !strcmp(m.relation, "diverged") ? "diverged from this one (split brain)" :
		       "is newer than this one", m.peer, m.peer);
	/* the agent's sentence carries how much each side changed since the shared generation */
	if ((!strcmp(m.relation, "diverged") || !strcmp(m.relation, "older")) && m.data_words[0])
		printf("  %s\n", m.data_words);
	if (m.peer_alive && sk_state_is_primary(m.peer_state))
		printf("  %s is %s now: it will step down.\n", m.peer, sk_state_name(m.peer_state));
	if (o->yes)
		return true;
	if (!isatty(STDIN_FILENO)) {
		skctl_fail("not confirmed (stdin is not a terminal)", "add --yes to confirm");
		return false;
	}
	printf("Type yes to go on: ");
	fflush(stdout);
	if (!fgets(answer, sizeof(answer), stdin) || strcmp(answer, "yes\n")) {
		printf("nothing done\n");
		return false;
	}
	return true;
}

/* forcestop says what it killed and what it did not run. */
static void forcestop_said(struct skctl *o, json_object *data)
{
	json_object *arr;
	size_t n = 0;

	printf("%s: forced stop on this node\n", o->module);
	if (json_object_object_get_ex(data, "killed", &arr) &&
	    json_object_is_type(arr, json_type_array))
		n = json_object_array_length(arr);
	for (size_t i = 0; i < n; i++) {
		json_object *k = json_object_array_get_idx(arr, i);

		printf("  killed pid %llu: %s\n", (unsigned long long)sk_ctl_json_u64(k, "pid", 0),
		       sk_ctl_json_str(k, "what", "?"));
	}
	if (!n)
		printf("  no process of the module was running\n");
	if (json_object_object_get_ex(data, "interrupted", NULL))
		printf("  interrupted: %s\n", sk_ctl_json_str(data, "interrupted", ""));
	printf("  then: %s\n", sk_ctl_json_str(data, "then", ""));
}

int cmd_role(struct skctl *o, enum sk_ctl_verb verb)
{
	struct sk_ctl_reply rep;

	if (verb == SK_CTL_PRIM && o->force && !confirm_force(o))
		return 1;
	if (skctl_call(o, verb, &rep))
		return 1;
	switch (verb) {
	case SK_CTL_START: printf("%s: starting (skctl state -m %s to follow)\n", o->module, o->module); break;
	case SK_CTL_STOP: printf("%s: stopping on this node\n", o->module); break;
	case SK_CTL_SWAP: printf("%s: swap started (skctl why -m %s when done)\n", o->module, o->module); break;
	case SK_CTL_PRIM: printf("%s: becoming primary here\n", o->module); break;
	case SK_CTL_SECOND: printf("%s: becoming secondary here\n", o->module); break;
	case SK_CTL_RESTART: printf("%s: restarting the application here (stop_prim, start_prim; "
				    "skctl why -m %s when done)\n", o->module, o->module); break;
	case SK_CTL_STOPSTART: printf("%s: stopping on this node, then starting again (the peer may "
				      "take over meanwhile)\n", o->module); break;
	case SK_CTL_FORCESTOP: forcestop_said(o, rep.data); break;
	default: break;
	}
	sk_ctl_reply_free(&rep);
	return 0;
}
