/* cli/skctl.h: what skctl's command files share: options, the call to the agent, output helpers. */
#ifndef SKCTL_H
#define SKCTL_H

#include <stdbool.h>

#include "ctl.h"

struct skctl {
	const char *sock;       /* control socket of the agent */
	const char *root;       /* --root: prefix of the node's files (module commands) */
	const char *module;     /* -m */
	bool json;              /* --json */
	bool lq;                /* -lq: exit code only */
	bool force, yes;        /* prim --force [--yes] */
	unsigned lines;         /* -n */
	bool follow;            /* log -f */
	bool all;               /* -H: on every node through the agents */
	bool color;             /* stdout is a terminal */
};

struct skctl_cmd {
	const char *name;
	int (*fn)(struct skctl *o, enum sk_ctl_verb verb);
	enum sk_ctl_verb verb;
	const char *usage;
	const char *help;
};

/* Send a request; on failure print what went wrong and what to do next. 0 or 1 (exit code). */
int skctl_call(struct skctl *o, enum sk_ctl_verb verb, struct sk_ctl_reply *rep);
void skctl_fail(const char *what, const char *next);
const char *skctl_state_color(const struct skctl *o, enum sk_mod_state s);
const char *skctl_reset(const struct skctl *o);

int cmd_state(struct skctl *o, enum sk_ctl_verb verb);
int cmd_role(struct skctl *o, enum sk_ctl_verb verb);
int cmd_why(struct skctl *o, enum sk_ctl_verb verb);
int cmd_log(struct skctl *o, enum sk_ctl_verb verb);
/* skctl module ...: argv after "module" (cmd_module.c). */
int cmd_module(struct skctl *o, int argc, char **argv);
/* -H: the verb on every node, each answer prefixed with the node's name (cmd_all.c). */
int cmd_all(struct skctl *o, enum sk_ctl_verb verb);

#endif
