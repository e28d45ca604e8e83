/* cli/cmd_all.c: skctl -H: the verb ran on every node through the agents; each node's answer on lines prefixed with its name. */
#include "skctl.h"

#include <stdio.h>
#include <string.h>

static void print_state(const char *node, json_object *d)
{
	json_object *mods;
	size_t n = 0;

	if (json_object_object_get_ex(d, "modules", &mods) && json_object_is_type(mods, json_type_array))
		n = json_object_array_length(mods);
	for (size_t i = 0; i < n; i++) {
		struct sk_ctl_mod m;
		char err[128];

		if (sk_ctl_mod_from_json(json_object_array_get_idx(mods, i), &m, err, sizeof(err)) < 0) {
			printf("%s: unreadable module entry: %s\n", node, err);
			continue;
		}
		printf("%s: %-12s %-6s peer %s %s, gen %llu%s%s%s\n", node, m.name,
		       sk_state_name(m.state), m.peer, m.peer_alive ? sk_state_name(m.peer_state) :
		       "unreachable", (unsigned long long)m.gen, m.uptodate ? ", up to date" : ", outdated",
		       m.reason[0] ? "; " : "", m.reason);
	}
	if (!n)
		printf("%s: no module\n", node);
}

static void print_lines(const char *node, json_object *d, const char *key, const char *field)
{
	json_object *arr;

	if (!json_object_object_get_ex(d, key, &arr) || !json_object_is_type(arr, json_type_array) ||
	    !json_object_array_length(arr)) {
		printf("%s: nothing recorded\n", node);
		return;
	}
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *e = json_object_array_get_idx(arr, i);

		if (field)
			printf("%s: %s %s -> %s: %s\n", node, sk_ctl_json_str(e, "module", "?"),
			       sk_ctl_json_str(e, "from", "?"), sk_ctl_json_str(e, "to", "?"),
			       sk_ctl_json_str(e, field, ""));
		else
			printf("%s: %s\n", node, json_object_get_string(e));
	}
}

int cmd_all(struct skctl *o, enum sk_ctl_verb verb)
{
	struct sk_ctl_reply rep;
	json_object *nodes;
	int rc = 0;

	if (skctl_call(o, verb, &rep))
		return 1;
	if (o->json) {
		printf("%s\n", json_object_to_json_string_ext(rep.data, JSON_C_TO_STRING_PRETTY));
	} else if (json_object_object_get_ex(rep.data, "nodes", &nodes) &&
		   json_object_is_type(nodes, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(nodes); i++) {
			json_object *e = json_object_array_get_idx(nodes, i), *v, *d = NULL;
			const char *node = sk_ctl_json_str(e, "node", "?");

			if (!json_object_object_get_ex(e, "ok", &v) || !json_object_get_boolean(v)) {
				printf("%s: FAILED: %s\n", node, sk_ctl_json_str(e, "error", "?"));
				if (sk_ctl_json_str(e, "hint", "")[0])
					printf("%s:   next: %s\n", node, sk_ctl_json_str(e, "hint", ""));
				rc = 1;
				continue;
			}
			json_object_object_get_ex(e, "data", &d);
			switch (verb) {
			case SK_CTL_STATE: print_state(node, d); break;
			case SK_CTL_WHY: print_lines(node, d, "transitions", "words"); break;
			case SK_CTL_LOG: print_lines(node, d, "lines", NULL); break;
			default:
				printf("%s: %s accepted\n", node, sk_ctl_verb_name(verb));
				break;
			}
		}
	} else {
		skctl_fail("the agent's -H answer has no node list", "use an skctl of the same version");
		rc = 1;
	}
	sk_ctl_reply_free(&rep);
	return rc;
}
