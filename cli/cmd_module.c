/* cli/cmd_module.c: skctl module install, pack, remove, list: module archives into and out of the node's modules folder (libsk/modarch.c). */
#include "skctl.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "modarch.h"

#define USAGE                                                                                  \
	"usage: skctl module install FILE [--replace] | pack -m M [-o FILE] | remove -m M | list"

static void path_of(const struct skctl *o, char *buf, size_t len, const char *rel)
{
	snprintf(buf, len, "%s%s", o->root ? o->root : "", rel);
}

static int conf_fail(const struct sk_conf_err *err, const char *next)
{
	char b[800];

	skctl_fail(sk_conf_err_str(err, b, sizeof(b)), next);
	return 1;
}

/* The module's state as this node's agent sees it: 1 running here or the agent cannot say (said
 * why), 0 not running, unknown to the agent, or no agent on this node. */
static int running_here(struct skctl *o, const char *name)
{
	struct sk_ctl_req q = { .verb = SK_CTL_STATE };
	struct sk_ctl_reply rep;
	struct sk_ctl_mod m;
	json_object *mods;
	char err[256];
	int busy = 0, rc;

	snprintf(q.module, sizeof(q.module), "%s", name);
	rc = sk_ctl_call(o->sock, &q, &rep, 10000, err, sizeof(err));
	if (rc == -ENOENT || rc == -ECONNREFUSED)
		return 0; /* no agent here */
	if (rc < 0) { /* an agent that does not answer may be running it */
		skctl_fail(err, "ask again once skctl state answers (or stop skagentd first)");
		return 1;
	}
	if (!rep.ok) { /* it does not run that module */
		sk_ctl_reply_free(&rep);
		return 0;
	}
	if (json_object_object_get_ex(rep.data, "modules", &mods) &&
	    json_object_array_length(mods) > 0 &&
	    sk_ctl_mod_from_json(json_object_array_get_idx(mods, 0), &m, err, sizeof(err)) == 0 &&
	    m.state != SK_ST_STOP) {
		char what[160], next[160];

		snprintf(what, sizeof(what), "module %s is %s on this node", name,
			 sk_state_name(m.state));
		snprintf(next, sizeof(next), "stop it first: skctl stop -m %s", name);
		skctl_fail(what, next);
		busy = 1;
	}
	sk_ctl_reply_free(&rep);
	return busy;
}

static int do_install(struct skctl *o, const char *file, bool replace)
{
	char mods[1100], cpath[1100], name[SK_CONF_NAME_LEN];
	struct sk_cluster *c = calloc(1, sizeof(*c));
	struct sk_conf_err err = { 0 };
	bool have;
	int rc;

	if (!c)
		return 1;
	path_of(o, mods, sizeof(mods), "/var/lib/steadykit/modules");
	path_of(o, cpath, sizeof(cpath), "/etc/steadykit/cluster.json");
	rc = sk_conf_cluster_load(cpath, c, &err);
	have = rc == 0;
	if (rc == -ENOENT) {
		printf("note: no %s on this node: the module is checked without the cluster\n", cpath);
	} else if (rc < 0) {
		free(c);
		return conf_fail(&err, "fix the cluster configuration first (skagentd --check)");
	}
	rc = sk_modarch_install(file, mods, have ? c : NULL, replace, name, &err);
	if (have)
		sk_conf_cluster_free(c);
	free(c);
	if (rc < 0)
		return conf_fail(&err, rc == -EEXIST ? "add --replace to install this one over it" :
				       "nothing was installed; fix the archive and run this again");
	printf("installed module %s in %s/%s%s\n", name, mods, name,
	       replace ? " (replacing the one there, if any)" : "");
	printf("next: the agent loads it when it restarts in place: systemctl reload skagentd\n"
	       "      (running modules keep running); install it on every node of the module\n");
	return 0;
}

static int do_pack(struct skctl *o, const char *out)
{
	char dir[1100], def[64];
	struct sk_conf_err err;

	path_of(o, dir, sizeof(dir), "/var/lib/steadykit/modules/");
	if (strlen(dir) + strlen(o->module) + 1 >= sizeof(dir))
		return 2;
	strcat(dir, o->module);
	if (!out) {
		snprintf(def, sizeof(def), "%.31s.tar.gz", o->module);
		out = def;
	}
	if (sk_modarch_pack(dir, out, &err) < 0)
		return conf_fail(&err, "nothing was written");
	printf("packed module %s into %s\n", o->module, out);
	printf("next: on another node, skctl module install %s\n", out);
	return 0;
}

static int do_remove(struct skctl *o)
{
	char mods[1100];
	struct sk_conf_err err;

	if (running_here(o, o->module))
		return 1;
	path_of(o, mods, sizeof(mods), "/var/lib/steadykit/modules");
	if (sk_modarch_remove(mods, o->module, &err) < 0)
		return conf_fail(&err, "skctl module list shows what is installed");
	printf("removed module %s from %s\n", o->module, mods);
	printf("next: systemctl reload skagentd, so the agent forgets it; its state (%s%s/%s) is "
	       "kept\n", o->root ? o->root : "", "/var/lib/steadykit/state", o->module);
	return 0;
}

static int do_list(struct skctl *o)
{
	char mods[1100], path[1400];
	struct dirent **nl = NULL;
	int n;

	path_of(o, mods, sizeof(mods), "/var/lib/steadykit/modules");
	n = scandir(mods, &nl, NULL, alphasort);
	if (n < 0) {
		if (errno == ENOENT) {
			printf("no module installed (%s does not exist)\n", mods);
			return 0;
		}
		skctl_fail(strerror(errno), "run skctl as root");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		struct sk_module *m = calloc(1, sizeof(*m));
		struct sk_conf_err err;
		char eb[600];

		if (nl[i]->d_name[0] != '.' && m) {
			snprintf(path, sizeof(path), "%s/%s/userconfig.json", mods, nl[i]->d_name);
			if (sk_conf_module_load(path, m, &err) == 0) {
				printf("%-16s %-6s id %-4u nodes", m->name,
				       m->kind == SK_MOD_FARM ? "farm" : "mirror", m->id);
				for (unsigned k = 0; k < m->n_nodes; k++)
					printf("%s%s", k ? "," : " ", m->nodes[k].name);
				printf("\n");
				sk_conf_module_free(m);
			} else {
				printf("%-16s INVALID: %s\n", nl[i]->d_name,
				       sk_conf_err_str(&err, eb, sizeof(eb)));
			}
		}
		free(m);
		free(nl[i]);
	}
	free(nl);
	return 0;
}

int cmd_module(struct skctl *o, int argc, char **argv)
{
	const char *sub = argc > 0 ? argv[0] : NULL, *file = NULL, *out = NULL;
	bool replace = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--replace")) {
			replace = true;
		} else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "-o")) && i + 1 < argc) {
			if (argv[i][1] == 'm')
				o->module = argv[++i];
			else
				out = argv[++i];
		} else if (argv[i][0] != '-' && !file) {
			file = argv[i];
		} else {
			fprintf(stderr, "skctl: module: unexpected argument \"%s\"\n%s\n", argv[i], USAGE);
			return 2;
		}
	}
	if (o->module && (!o->module[0] || strlen(o->module) >= SK_CONF_NAME_LEN ||
			  strspn(o->module, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(o->module))) {
		fprintf(stderr, "skctl: module: -m takes a module name ([a-z0-9_-], 1..31)\n");
		return 2;
	}
	if (sub && !strcmp(sub, "install") && file && !o->module && !out)
		return do_install(o, file, replace);
	if (sub && !strcmp(sub, "pack") && o->module && !file && !replace)
		return do_pack(o, out);
	if (sub && !strcmp(sub, "remove") && o->module && !file && !out && !replace)
		return do_remove(o);
	if (sub && !strcmp(sub, "list") && !o->module && !file && !out && !replace)
		return do_list(o);
	fprintf(stderr, "skctl: module: %s\n%s\n", sub ? "wrong arguments" : "what to do?", USAGE);
	return 2;
}
