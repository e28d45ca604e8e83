/* cli/skctl.c: skctl, the operator's command line: global options, the command table, the call to the agent. */
#include "skctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct skctl_cmd cmds[] = {
	{ "state", cmd_state, SK_CTL_STATE, "state [-m M] [--json] | state -m M -lq",
	  "module states on this node (-lq: exit code STOP 0, WAIT 1, ALONE/UP 2, PRIM 3, SECOND 4)" },
	{ "start", cmd_role, SK_CTL_START, "start -m M", "start the module on this node" },
	{ "stop", cmd_role, SK_CTL_STOP, "stop -m M", "stop the module on this node (the peer takes over)" },
	{ "swap", cmd_role, SK_CTL_SWAP, "swap -m M", "move the primary role to the other node" },
	{ "prim", cmd_role, SK_CTL_PRIM, "prim -m M [--force [--yes]]",
	  "make this node primary (--force: even with an outdated copy; says what is lost)" },
	{ "second", cmd_role, SK_CTL_SECOND, "second -m M", "make this node secondary" },
	{ "why", cmd_why, SK_CTL_WHY, "why [-m M] [-n N]",
	  "the last transitions: cause, outcome and the time of each phase" },
	{ "log", cmd_log, SK_CTL_LOG, "log -m M [-n N] [-f]",
	  "the module's log on this node (-f: follow it until Ctrl-C)" },
	{ "restart", cmd_role, SK_CTL_RESTART, "restart -m M",
	  "restart the application on the primary (stop_prim, start_prim), the role kept" },
	{ "stopstart", cmd_role, SK_CTL_STOPSTART, "stopstart -m M",
	  "stop the module on this node, then start it again (the peer may take over)" },
	{ "forcestop", cmd_role, SK_CTL_FORCESTOP, "forcestop -m M",
	  "stop at once: kill the module's processes and skfused, no stop script" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: skctl [--root DIR | --sock PATH] COMMAND [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-32s %s\n", cmds[i].usage, cmds[i].help);
	fprintf(f, "  %-32s %s\n", "module install FILE [--replace]",
		"install a module archive (tar or zip) on this node");
	fprintf(f, "  %-32s %s\n", "module pack -m M [-o FILE]",
		"pack the installed module M into an archive (M.tar.gz)");
	fprintf(f, "  %-32s %s\n", "module remove -m M", "remove a module this node does not run");
	fprintf(f, "  %-32s %s\n", "module list", "the modules installed on this node");
	fprintf(f, "\n  -H            run the command on every node through the agents; each answer\n"
		   "                prefixed with its node's name (exit 1 if a node fails or does not answer)\n"
		   "  --root DIR    reach the agent started with --root DIR, and its files (tests)\n"
		   "  --sock PATH   control socket (default /run/steadykit/agent.sock)\n");
}

void skctl_fail(const char *what, const char *next)
{
	fprintf(stderr, "skctl: %s\n", what);
	if (next && next[0])
		fprintf(stderr, "  next: %s\n", next);
}

const char *skctl_state_color(const struct skctl *o, enum sk_mod_state s)
{
	if (!o->color)
		return "";
	switch (s) {
	case SK_ST_PRIM: case SK_ST_ALONE: case SK_ST_UP: return "\033[32m";
	case SK_ST_SECOND: return "\033[36m";
	case SK_ST_WAIT: return "\033[33m";
	default: return "\033[31m";
	}
}

const char *skctl_reset(const struct skctl *o)
{
	return o->color ? "\033[0m" : "";
}

int skctl_call(struct skctl *o, enum sk_ctl_verb verb, struct sk_ctl_reply *rep)
{
	struct sk_ctl_req q = { .verb = verb, .force = o->force, .lines = o->lines, .all = o->all };
	char err[512];
	int rc;

	if (o->module)
		snprintf(q.module, sizeof(q.module), "%s", o->module);
	rc = sk_ctl_call(o->sock, &q, rep, 10000, err, sizeof(err));
	if (rc < 0) {
		char next[512];

		if (rc == -EACCES || rc == -EPERM)
			snprintf(next, sizeof(next), "run skctl as root");
		else if (rc == -ENOENT || rc == -ECONNREFUSED)
			snprintf(next, sizeof(next), "is skagentd running? (systemctl status skagentd; "
				 "for a test node give --root DIR or --sock PATH)");
		else
			snprintf(next, sizeof(next), "check skagentd's log (journalctl -u skagentd)");
		skctl_fail(err, next);
		return 1;
	}
	if (!rep->ok) {
		skctl_fail(rep->error, rep->hint);
		sk_ctl_reply_free(rep);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static char sockbuf[1100];
	struct skctl o = { .sock = "/run/steadykit/agent.sock" };
	const struct skctl_cmd *cmd = NULL;
	int i;

	o.color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--root") || !strcmp(a, "--sock") || !strcmp(a, "-m") ||
		    !strcmp(a, "-n")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "skctl: %s needs a value\n", a);
				return 2;
			}
			if (!strcmp(a, "--root")) {
				o.root = argv[++i];
				snprintf(sockbuf, sizeof(sockbuf), "%s/run/steadykit/agent.sock", o.root);
				o.sock = sockbuf;
			} else if (!strcmp(a, "--sock")) {
				o.sock = argv[++i];
			} else if (!strcmp(a, "-m")) {
				o.module = argv[++i];
			} else {
				char *end;
				long n = strtol(argv[++i], &end, 10);

				if (*end || n < 1 || n > SK_CTL_MAX_LINES) {
					fprintf(stderr, "skctl: -n takes 1..%d\n", SK_CTL_MAX_LINES);
					return 2;
				}
				o.lines = (unsigned)n;
			}
		} else if (!strcmp(a, "--json")) {
			o.json = true;
		} else if (!strcmp(a, "-lq") || !strcmp(a, "-ql")) {
			o.lq = true;
		} else if (!strcmp(a, "--force")) {
			o.force = true;
		} else if (!strcmp(a, "-H")) {
			o.all = true;
		} else if (!strcmp(a, "-f") || !strcmp(a, "--follow")) {
			o.follow = true;
		} else if (!strcmp(a, "--yes") || !strcmp(a, "-y")) {
			o.yes = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "help")) {
			usage(stdout);
			return 0;
		} else if (a[0] == '-') {
			fprintf(stderr, "skctl: unknown option %s\n", a);
			usage(stderr);
			return 2;
		} else if (!cmd && !strcmp(a, "module")) {
			/* local files, not the agent: its own arguments (cmd_module.c) */
			if (o.module || o.all || o.json || o.lq || o.force || o.follow || o.lines) {
				fprintf(stderr, "skctl: give module's options after it (%s)\n",
					"skctl module install FILE [--replace] | pack -m M [-o FILE] | "
					"remove -m M | list");
				return 2;
			}
			return cmd_module(&o, argc - i - 1, argv + i + 1);
		} else if (!cmd) {
			for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++)
				if (!strcmp(a, cmds[k].name))
					cmd = &cmds[k];
			if (!cmd) {
				fprintf(stderr, "skctl: unknown command \"%s\"\n", a);
				usage(stderr);
				return 2;
			}
		} else {
			fprintf(stderr, "skctl: unexpected argument \"%s\"\n", a);
			return 2;
		}
	}
	if (!cmd) {
		usage(stderr);
		return 2;
	}
	if (o.force && cmd->verb != SK_CTL_PRIM) {
		fprintf(stderr, "skctl: --force is only for prim\n");
		return 2;
	}
	if (o.follow && cmd->verb != SK_CTL_LOG) {
		fprintf(stderr, "skctl: -f is for \"log -m MODULE\"\n");
		return 2;
	}
	if (o.lq && (cmd->verb != SK_CTL_STATE || !o.module)) {
		fprintf(stderr, "skctl: -lq is for \"state -m MODULE\"\n");
		return 2;
	}
	if (!o.module && cmd->verb != SK_CTL_STATE && cmd->verb != SK_CTL_WHY) {
		fprintf(stderr, "skctl: %s needs -m MODULE (usage: skctl %s)\n", cmd->name, cmd->usage);
		return 2;
	}
	if (o.all && (o.follow || o.lq || o.force)) {
		fprintf(stderr, "skctl: -H does not go with -f, -lq or --force (run those on the node)\n");
		return 2;
	}
	return o.all ? cmd_all(&o, cmd->verb) : cmd->fn(&o, cmd->verb);
}
