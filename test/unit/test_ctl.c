/* test/unit/test_ctl.c: the control protocol: requests and replies round-trip, malformed lines are refused with a reason. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl.h"

static int dec(const char *line, struct sk_ctl_req *r, char *err)
{
	return sk_ctl_req_decode(line, strlen(line), r, err, 256);
}

Test(ctl_req, roundtrip_every_verb)
{
	for (int v = 1; v < SK_CTL__COUNT; v++) {
		struct sk_ctl_req q = { .verb = (enum sk_ctl_verb)v, .lines = 7 }, r;
		char buf[SK_CTL_MAX_REQ + 1], err[256];
		long n;

		strcpy(q.module, "web-1");
		q.force = v == SK_CTL_PRIM;
		n = sk_ctl_req_encode(&q, buf, sizeof(buf));
		cr_assert_gt(n, 0);
		cr_assert_eq(buf[n - 1], '\n', "one request per line");
		cr_assert_eq(sk_ctl_req_decode(buf, (size_t)n, &r, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(r.verb, q.verb);
		cr_assert_str_eq(r.module, "web-1");
		cr_assert_eq(r.force, q.force);
		cr_assert_eq(r.lines, 7);
	}
}

Test(ctl_req, state_without_module)
{
	struct sk_ctl_req r;
	char err[256];

	cr_assert_eq(dec("{\"v\":1,\"cmd\":\"state\"}", &r, err), 0, "%s", err);
	cr_assert_eq(r.verb, SK_CTL_STATE);
	cr_assert_str_eq(r.module, "");
}

struct bad {
	const char *line;
	int rc;
	const char *says;
};

Test(ctl_req, malformed_refused_with_reason)
{
	static const struct bad cases[] = {
		{ "not json", -EINVAL, "not JSON" },
		{ "", -EINVAL, "not JSON" },
		{ "[1,2]", -EINVAL, "not a JSON object" },
		{ "{\"v\":1,\"cmd\":\"state\"} trailing", -EINVAL, "trailing" },
		{ "{\"cmd\":\"state\"}", -EINVAL, "\"v\"" },
		{ "{\"v\":\"1\",\"cmd\":\"state\"}", -EINVAL, "\"v\"" },
		{ "{\"v\":2,\"cmd\":\"state\"}", -EPROTO, "version 2 not supported" },
		{ "{\"v\":1}", -EINVAL, "\"cmd\"" },
		{ "{\"v\":1,\"cmd\":5}", -EINVAL, "\"cmd\"" },
		{ "{\"v\":1,\"cmd\":\"reboot\"}", -EINVAL, "unknown command" },
		{ "{\"v\":1,\"cmd\":\"state\",\"x\":1}", -EINVAL, "unknown key" },
		{ "{\"v\":1,\"cmd\":\"stop\"}", -EINVAL, "needs \"module\"" },
		{ "{\"v\":1,\"cmd\":\"stop\",\"module\":\"../etc\"}", -EINVAL, "module name" },
		{ "{\"v\":1,\"cmd\":\"stop\",\"module\":\"UPPER\"}", -EINVAL, "module name" },
		{ "{\"v\":1,\"cmd\":\"stop\",\"module\":\"\"}", -EINVAL, "module name" },
		{ "{\"v\":1,\"cmd\":\"stop\",\"module\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", -EINVAL,
		  "module name" },
		{ "{\"v\":1,\"cmd\":\"stop\",\"module\":7}", -EINVAL, "module name" },
		{ "{\"v\":1,\"cmd\":\"stop\",\"module\":\"m\",\"force\":true}", -EINVAL, "only for \"prim\"" },
		{ "{\"v\":1,\"cmd\":\"prim\",\"module\":\"m\",\"force\":1}", -EINVAL, "true or false" },
		{ "{\"v\":1,\"cmd\":\"log\",\"module\":\"m\",\"lines\":0}", -EINVAL, "\"lines\"" },
		{ "{\"v\":1,\"cmd\":\"log\",\"module\":\"m\",\"lines\":100000}", -EINVAL, "\"lines\"" },
		{ "{\"v\":1,\"cmd\":\"log\",\"module\":\"m\",\"lines\":\"9\"}", -EINVAL, "\"lines\"" },
		{ "{\"v\":1,\"cmd\":\"state\"", -EINVAL, "incomplete" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sk_ctl_req r;
		char err[256] = "";
		int rc = dec(cases[i].line, &r, err);

		cr_assert_eq(rc, cases[i].rc, "%s: rc %d", cases[i].line, rc);
		cr_assert(strstr(err, cases[i].says), "%s: error \"%s\" lacks \"%s\"", cases[i].line,
			  err, cases[i].says);
	}
}

Test(ctl_req, nul_and_oversize_refused)
{
	char line[SK_CTL_MAX_REQ + 10], err[256];
	struct sk_ctl_req r;

	memcpy(line, "{\"v\":1,\"cmd\":\"state\"}\0x", 24);
	cr_assert_eq(sk_ctl_req_decode(line, 24, &r, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "NUL"));
	memset(line, ' ', sizeof(line));
	memcpy(line, "{\"v\":1,\"cmd\":\"state\"}", 21);
	cr_assert_eq(sk_ctl_req_decode(line, sizeof(line), &r, err, sizeof(err)), -EMSGSIZE);
	/* exactly at the bound (with its newline) still fits */
	line[SK_CTL_MAX_REQ - 1] = '\n';
	cr_assert_eq(sk_ctl_req_decode(line, SK_CTL_MAX_REQ, &r, err, sizeof(err)), 0, "%s", err);
}

Test(ctl_req, encode_refuses_bad_input)
{
	struct sk_ctl_req q = { .verb = SK_CTL_STATE };
	char buf[16];

	strcpy(q.module, "Bad Name");
	cr_assert_eq(sk_ctl_req_encode(&q, buf, sizeof(buf)), -EINVAL);
	q.module[0] = '\0';
	cr_assert_eq(sk_ctl_req_encode(&q, buf, sizeof(buf)), -ENOSPC, "buffer too small");
	q.verb = (enum sk_ctl_verb)99;
	cr_assert_eq(sk_ctl_req_encode(&q, buf, sizeof(buf)), -EINVAL);
}

Test(ctl_reply, ok_and_error_roundtrip)
{
	struct sk_ctl_reply r = { .ok = true }, d;
	char err[256];
	size_t len;
	char *s;

	r.data = json_object_new_object();
	json_object_object_add(r.data, "x", json_object_new_int(42));
	s = sk_ctl_reply_encode(&r, &len);
	cr_assert_not_null(s);
	cr_assert_eq(s[len - 1], '\n');
	cr_assert_eq(sk_ctl_reply_decode(s, len, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert(d.ok);
	cr_assert_eq(sk_ctl_json_u64(d.data, "x", 0), 42);
	sk_ctl_reply_free(&d);
	sk_ctl_reply_free(&r);
	free(s);

	struct sk_ctl_reply e = { .ok = false };
	strcpy(e.error, "module busy");
	strcpy(e.hint, "wait, then retry");
	s = sk_ctl_reply_encode(&e, &len);
	cr_assert_eq(sk_ctl_reply_decode(s, len, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert(!d.ok);
	cr_assert_str_eq(d.error, "module busy");
	cr_assert_str_eq(d.hint, "wait, then retry");
	free(s);
}

/* Text from another node (skctl -H) reaches the operator's terminal: no control characters. */
Test(ctl_reply, control_characters_shown_as_question_marks)
{
	static const char bad_err[] = "{\"v\":1,\"ok\":false,\"error\":\"busy\\u001b[2J\\nnode2: ok\","
				      "\"hint\":\"a\\u0000b\"}";
	static const char bad_data[] =
		"{\"v\":1,\"ok\":true,\"data\":{\"modules\":[{\"name\":\"web\",\"state\":\"PRIM\",\"peer_state\":\"SECOND\","
		"\"reason\":\"x\\u001b]0;pwned\\u0007y\\tz\\u007f\"}],\"lines\":[\"a\\rb\",\"c\\u0000d\"]}}";
	struct sk_ctl_reply d;
	struct sk_ctl_mod m;
	json_object *v;
	char err[256];

	cr_assert_eq(sk_ctl_reply_decode(bad_err, sizeof(bad_err) - 1, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(d.error, "busy?[2J?node2: ok");
	cr_assert_str_eq(d.hint, "a"); /* a NUL ends the text */
	cr_assert_eq(sk_ctl_reply_decode(bad_data, sizeof(bad_data) - 1, &d, err, sizeof(err)), 0, "%s", err);
	cr_assert(json_object_object_get_ex(d.data, "modules", &v));
	cr_assert_eq(sk_ctl_mod_from_json(json_object_array_get_idx(v, 0), &m, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(m.reason, "x?]0;pwned?y\tz?");
	cr_assert(json_object_object_get_ex(d.data, "lines", &v));
	cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 0)), "a?b");
	cr_assert_eq(json_object_get_string_len(json_object_array_get_idx(v, 1)), 3);
	cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(v, 1)), "c?d");
	sk_ctl_reply_free(&d);
}

Test(ctl_reply, malformed_refused)
{
	struct sk_ctl_reply d;
	char err[256];

	cr_assert_eq(sk_ctl_reply_decode("{\"v\":1}", 7, &d, err, sizeof(err)), -EINVAL);
	cr_assert_eq(sk_ctl_reply_decode("{\"v\":1,\"ok\":true,\"data\":3}", 26, &d, err, sizeof(err)),
		     -EINVAL);
	cr_assert_eq(sk_ctl_reply_decode("{\"v\":3,\"ok\":true}", 17, &d, err, sizeof(err)), -EPROTO);
	/* an error reply without text still says something */
	cr_assert_eq(sk_ctl_reply_decode("{\"v\":1,\"ok\":false}", 18, &d, err, sizeof(err)), 0);
	cr_assert_neq(d.error[0], '\0');
}

Test(ctl_types, module_and_transition_roundtrip)
{
	struct sk_ctl_mod m = { .state = SK_ST_SECOND, .peer_state = SK_ST_PRIM, .peer_alive = true,
				.uptodate = true, .gen = 7, .since_ms = 123 }, m2;
	struct sk_ctl_trans t = { .at_ms = 5, .from = SK_ST_SECOND, .to = SK_ST_ALONE,
				  .total_ms = 655 }, t2;
	json_object *o;
	char err[128], words[400];

	strcpy(m.name, "mirror");
	strcpy(m.peer, "node1");
	strcpy(m.reason, "because");
	cr_assert_eq(sk_ctl_mod_to_json(&m, &o), 0);
	cr_assert_eq(sk_ctl_mod_from_json(o, &m2, err, sizeof(err)), 0, "%s", err);
	json_object_put(o);
	cr_assert_eq(memcmp(&m, &m2, sizeof(m)), 0);

	strcpy(t.module, "mirror");
	strcpy(t.cause, "node1 silent on lan for 412 ms");
	t.phase_ms[SK_PH_DETECT] = 412;
	t.phase_ms[SK_PH_FUSED] = 48;
	t.phase_ms[SK_PH_VIP] = 3;
	t.phase_ms[SK_PH_START] = 190;
	cr_assert_eq(sk_ctl_trans_to_json(&t, &o), 0);
	cr_assert_eq(sk_ctl_trans_from_json(o, &t2, err, sizeof(err)), 0, "%s", err);
	json_object_put(o);
	cr_assert_eq(memcmp(&t, &t2, sizeof(t)), 0);
	sk_ctl_trans_words(&t, "node2", words, sizeof(words));
	cr_assert_str_eq(words, "node1 silent on lan for 412 ms → node2 ALONE in 655 ms "
				"(detect 412, VIP 3, skfused 48, start scripts 190)");
}

Test(ctl_types, farm_members_roundtrip_and_bounds)
{
	struct sk_ctl_mod m = { .state = SK_ST_UP, .n_members = 2 }, m2;
	json_object *o;
	char err[128], big[4096];
	size_t n = 0;

	strcpy(m.name, "web");
	strcpy(m.members[0].node, "node2");
	m.members[0].alive = true;
	m.members[0].state = SK_ST_UP;
	strcpy(m.members[1].node, "node3");
	m.members[1].state = SK_ST_STOP;
	cr_assert_eq(sk_ctl_mod_to_json(&m, &o), 0);
	cr_assert_eq(sk_ctl_mod_from_json(o, &m2, err, sizeof(err)), 0, "%s", err);
	json_object_put(o);
	cr_assert_eq(memcmp(&m, &m2, sizeof(m)), 0);
	/* a mirror has none, and says none */
	m.n_members = 0;
	cr_assert_eq(sk_ctl_mod_to_json(&m, &o), 0);
	cr_assert(!json_object_object_get_ex(o, "members", NULL));
	json_object_put(o);
	/* hostile: more entries than a cluster has nodes, a non-array, an entry without a node or
	 * with a state that is none */
	n += (size_t)snprintf(big + n, sizeof(big) - n, "{\"name\":\"w\",\"state\":\"UP\","
			      "\"peer_state\":\"UP\",\"members\":[");
	for (int i = 0; i <= SK_CTL_MAX_MEMBERS; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%s{\"node\":\"n%d\",\"state\":\"UP\"}",
				      i ? "," : "", i);
	snprintf(big + n, sizeof(big) - n, "]}");
	const char *bad[] = {
		big,
		"{\"name\":\"w\",\"state\":\"UP\",\"peer_state\":\"UP\",\"members\":{}}",
		"{\"name\":\"w\",\"state\":\"UP\",\"peer_state\":\"UP\",\"members\":[{\"state\":\"UP\"}]}",
		"{\"name\":\"w\",\"state\":\"UP\",\"peer_state\":\"UP\",\"members\":[{\"node\":\"a\",\"state\":\"X\"}]}",
		"{\"name\":\"w\",\"state\":\"UP\",\"peer_state\":\"UP\",\"members\":[7]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o = json_tokener_parse(bad[i]);
		cr_assert_not_null(o, "case %zu", i);
		cr_assert_eq(sk_ctl_mod_from_json(o, &m2, err, sizeof(err)), -EINVAL, "case %zu", i);
		json_object_put(o);
	}
}

Test(ctl_types, bad_state_refused)
{
	json_object *o = json_tokener_parse("{\"name\":\"m\",\"state\":\"BOSS\",\"peer_state\":\"STOP\"}");
	struct sk_ctl_mod m;
	char err[128];

	cr_assert_eq(sk_ctl_mod_from_json(o, &m, err, sizeof(err)), -EINVAL);
	json_object_put(o);
}

Test(ctl_state, names_and_exit_codes)
{
	cr_assert_eq(sk_state_exit_code(SK_ST_STOP), 0);
	cr_assert_eq(sk_state_exit_code(SK_ST_WAIT), 1);
	cr_assert_eq(sk_state_exit_code(SK_ST_ALONE), 2);
	cr_assert_eq(sk_state_exit_code(SK_ST_UP), 2);
	cr_assert_eq(sk_state_exit_code(SK_ST_PRIM), 3);
	cr_assert_eq(sk_state_exit_code(SK_ST_SECOND), 4);
	for (int s = 0; s < SK_ST__COUNT; s++)
		cr_assert_eq(sk_state_parse(sk_state_name((enum sk_mod_state)s)), s);
	cr_assert_eq(sk_state_parse("prim"), -EINVAL);
}

Test(ctl_lbuf, lines_and_bound)
{
	struct sk_ctl_lbuf b = { 0 };
	char line[SK_CTL_MAX_REQ];
	size_t len;

	cr_assert_eq(sk_ctl_lbuf_push(&b, "ab\ncd", 5), 0);
	cr_assert_eq(sk_ctl_lbuf_line(&b, line, &len), 1);
	cr_assert_str_eq(line, "ab");
	cr_assert_eq(sk_ctl_lbuf_line(&b, line, &len), 0, "cd is not complete");
	cr_assert_eq(sk_ctl_lbuf_push(&b, "e\n", 2), 0);
	cr_assert_eq(sk_ctl_lbuf_line(&b, line, &len), 1);
	cr_assert_str_eq(line, "cde");

	/* a line that cannot fit is refused, never truncated into a different request */
	char big[SK_CTL_MAX_REQ];
	memset(big, 'x', sizeof(big));
	cr_assert_eq(sk_ctl_lbuf_push(&b, big, sizeof(big)), -EMSGSIZE);
	struct sk_ctl_lbuf c = { 0 };
	cr_assert_eq(sk_ctl_lbuf_push(&c, big, sizeof(big) - 1), 0);
	cr_assert_eq(sk_ctl_lbuf_push(&c, "y", 1), -EMSGSIZE);
}

Test(ctl_peer, root_or_group)
{
	int sv[2];
	uid_t uid = 99;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	if (getuid() == 0) {
		cr_assert_eq(sk_ctl_peer_allowed(sv[0], (gid_t)-1, &uid), 0);
		cr_assert_eq(uid, 0);
	} else {
		cr_assert_eq(sk_ctl_peer_allowed(sv[0], (gid_t)-1, &uid), -EACCES);
		cr_assert_eq(sk_ctl_peer_allowed(sv[0], getgid(), &uid), 0);
	}
	close(sv[0]);
	close(sv[1]);
}

/* ---- libsk/agentmsg: the agent-to-agent payloads (bytes from the network) ---- */
#include "agentmsg.h"

Test(agentmsg, state_roundtrip)
{
	struct sk_amsg_state s = { .node_id = 2, .net = 1, .incarnation = 123456789, .n_mods = 2 }, d;
	uint8_t buf[SK_AMSG_STATE_MAX];
	long n;

	s.mods[0] = (struct sk_amsg_mod){ .id = 1, .state = SK_ST_PRIM, .flags = SK_AMSG_F_IN_SYNC, .gen = 9 };
	s.mods[1] = (struct sk_amsg_mod){ .id = 70000, .state = SK_ST_WAIT, .flags = SK_AMSG_F__ALL, .gen = 1 };
	n = sk_amsg_state_encode(&s, buf, sizeof(buf));
	cr_assert_eq(n, SK_AMSG_STATE_HDR + 2 * SK_AMSG_STATE_MOD);
	cr_assert_eq(sk_amsg_state_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(d.node_id, 2);
	cr_assert_eq(d.net, 1);
	cr_assert_eq(d.incarnation, 123456789);
	cr_assert_eq(d.n_mods, 2);
	cr_assert_eq(memcmp(d.mods, s.mods, 2 * sizeof(s.mods[0])), 0);
}

Test(agentmsg, state_hostile_bytes_refused)
{
	struct sk_amsg_state s = { .node_id = 1, .n_mods = 1 }, d;
	uint8_t buf[SK_AMSG_STATE_MAX + 16], bad[sizeof(buf)];
	long n;

	s.mods[0] = (struct sk_amsg_mod){ .id = 1, .state = SK_ST_SECOND, .gen = 3 };
	n = sk_amsg_state_encode(&s, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	/* every length but the right one */
	for (long l = 0; l < (long)sizeof(buf); l++)
		if (l != n)
			cr_assert_eq(sk_amsg_state_decode(buf, (size_t)l, &d), -EBADMSG, "length %ld", l);
	/* each field out of range */
	struct { size_t off; uint8_t v; } cases[] = {
		{ 0, 2 },                         /* version */
		{ 1, 0 },                         /* node id 0 */
		{ 3, 2 },                         /* n_mods says 2, one present */
		{ 3, SK_AMSG_MAX_MODS + 1 },      /* n_mods over the bound */
		{ 12 + 4, SK_ST__COUNT },         /* unknown state */
		{ 12 + 6, 1 },                    /* reserved not 0 */
		{ 12 + 3, 0 },                    /* module id 0 (with bytes 0..2 already 0) */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(bad, buf, (size_t)n);
		bad[cases[i].off] = cases[i].v;
		cr_assert_eq(sk_amsg_state_decode(bad, (size_t)n, &d), -EBADMSG, "case %zu", i);
	}
	/* encode refuses what decode would */
	s.node_id = 0;
	cr_assert_eq(sk_amsg_state_encode(&s, buf, sizeof(buf)), -EINVAL);
	s.node_id = 1;
	s.n_mods = SK_AMSG_MAX_MODS + 1;
	cr_assert_eq(sk_amsg_state_encode(&s, buf, sizeof(buf)), -EINVAL);
	s.n_mods = 1;
	cr_assert_eq(sk_amsg_state_encode(&s, buf, 10), -ENOSPC);
}

Test(agentmsg, cmd_roundtrip_and_refusals)
{
	uint8_t buf[SK_AMSG_CMD_LEN], bad[SK_AMSG_CMD_LEN];
	enum sk_amsg_cmd cmd;
	uint32_t mod;

	cr_assert_eq(sk_amsg_cmd_encode(SK_AMSG_CMD_SWAP, 5, buf, sizeof(buf)), SK_AMSG_CMD_LEN);
	cr_assert_eq(sk_amsg_cmd_decode(buf, sizeof(buf), &cmd, &mod), 0);
	cr_assert_eq(cmd, SK_AMSG_CMD_SWAP);
	cr_assert_eq(mod, 5);
	cr_assert_eq(sk_amsg_cmd_decode(buf, sizeof(buf) - 1, &cmd, &mod), -EBADMSG);
	for (size_t off = 0; off < 4; off++) {
		memcpy(bad, buf, sizeof(buf));
		bad[off] ^= 0x40;
		cr_assert_eq(sk_amsg_cmd_decode(bad, sizeof(bad), &cmd, &mod), -EBADMSG, "byte %zu", off);
	}
	memcpy(bad, buf, sizeof(buf));
	memset(bad + 4, 0, 4);
	cr_assert_eq(sk_amsg_cmd_decode(bad, sizeof(bad), &cmd, &mod), -EBADMSG, "module 0");
	cr_assert_eq(sk_amsg_cmd_encode((enum sk_amsg_cmd)7, 5, buf, sizeof(buf)), -EINVAL);
}

Test(ctl_req, operator_verbs)
{
	static const struct { const char *name; enum sk_ctl_verb v; } verbs[] = {
		{ "restart", SK_CTL_RESTART }, { "stopstart", SK_CTL_STOPSTART },
		{ "forcestop", SK_CTL_FORCESTOP },
	};
	struct sk_ctl_req r;
	char line[128], err[256];

	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		snprintf(line, sizeof(line), "{\"v\":1,\"cmd\":\"%s\",\"module\":\"web\"}", verbs[i].name);
		cr_assert_eq(dec(line, &r, err), 0, "%s", err);
		cr_assert_eq(r.verb, verbs[i].v);
		cr_assert_str_eq(sk_ctl_verb_name(verbs[i].v), verbs[i].name);
		/* they act on one module: refused without it, and "force" is prim's only */
		snprintf(line, sizeof(line), "{\"v\":1,\"cmd\":\"%s\"}", verbs[i].name);
		cr_assert_eq(dec(line, &r, err), -EINVAL);
		cr_assert(strstr(err, "needs \"module\""), "%s", err);
		snprintf(line, sizeof(line), "{\"v\":1,\"cmd\":\"%s\",\"module\":\"web\",\"force\":true}",
			 verbs[i].name);
		cr_assert_eq(dec(line, &r, err), -EINVAL);
		cr_assert(strstr(err, "only for \"prim\""), "%s", err);
	}
}

Test(ctl_req, all_nodes)
{
	struct sk_ctl_req q = { .verb = SK_CTL_STATE, .all = true }, r;
	char buf[SK_CTL_MAX_REQ + 1], err[256];
	long n = sk_ctl_req_encode(&q, buf, sizeof(buf));

	cr_assert_gt(n, 0);
	cr_assert(strstr(buf, "\"all\":true"), "%s", buf);
	cr_assert_eq(sk_ctl_req_decode(buf, (size_t)n, &r, err, sizeof(err)), 0, "%s", err);
	cr_assert(r.all);
	cr_assert_eq(dec("{\"v\":1,\"cmd\":\"state\",\"all\":1}", &r, err), -EINVAL);
	cr_assert(strstr(err, "\"all\" must be true or false"), "%s", err);
}

Test(amsg_ctl, bounds)
{
	uint8_t buf[4 + SK_AMSG_CTL_MAX + 8];
	char big[SK_AMSG_CTL_MAX + 2];
	const char *text;
	uint32_t id;
	size_t n;
	long len = sk_amsg_ctl_encode(7, "{\"v\":1}", 7, buf, sizeof(buf));

	cr_assert_eq(len, 11);
	cr_assert_eq(sk_amsg_ctl_decode(buf, (size_t)len, &id, &text, &n), 0);
	cr_assert_eq(id, 7);
	cr_assert_eq(n, 7);
	cr_assert_eq(memcmp(text, "{\"v\":1}", 7), 0);
	/* empty, NUL inside, over the channel's bound: refused */
	cr_assert_eq(sk_amsg_ctl_decode(buf, 4, &id, &text, &n), -EBADMSG);
	buf[6] = '\0';
	cr_assert_eq(sk_amsg_ctl_decode(buf, (size_t)len, &id, &text, &n), -EBADMSG);
	memset(big, 'x', sizeof(big));
	cr_assert_eq(sk_amsg_ctl_encode(1, big, SK_AMSG_CTL_MAX + 1, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(sk_amsg_ctl_decode(buf, 4 + SK_AMSG_CTL_MAX + 1, &id, &text, &n), -EBADMSG);
	cr_assert_eq(sk_amsg_ctl_encode(1, "x", 1, buf, 4), -ENOSPC);
}

/* the restart notice (libsk/agentmsg.h): round trip, and every malformed form refused */
Test(amsg_restart, roundtrip_and_bounds)
{
	struct sk_amsg_restart r = { .node_id = 3, .net = 1, .silent_ms = 2000,
				     .incarnation = 0x0102030405060708ull }, d;
	uint8_t buf[SK_AMSG_RESTART_LEN + 4], bad[SK_AMSG_RESTART_LEN];
	long n = sk_amsg_restart_encode(&r, buf, sizeof(buf));

	cr_assert_eq(n, SK_AMSG_RESTART_LEN);
	cr_assert_eq(sk_amsg_restart_decode(buf, (size_t)n, &d), 0);
	cr_assert_eq(d.node_id, 3);
	cr_assert_eq(d.net, 1);
	cr_assert_eq(d.silent_ms, 2000);
	cr_assert_eq(d.incarnation, 0x0102030405060708ull);
	/* every length but the exact one */
	for (size_t l = 0; l < sizeof(buf); l++)
		if (l != SK_AMSG_RESTART_LEN)
			cr_assert_eq(sk_amsg_restart_decode(buf, l, &d), -EBADMSG, "length %zu", l);
	/* version, node id 0, reserved byte, silent_ms 0 and past the bound */
	for (int i = 0; i < 5; i++) {
		memcpy(bad, buf, sizeof(bad));
		switch (i) {
		case 0: bad[0] = 2; break;
		case 1: bad[1] = 0; break;
		case 2: bad[3] = 1; break;
		case 3: memset(bad + 4, 0, 4); break;
		case 4: sk_put_u32(bad + 4, SK_AMSG_RESTART_MAX_MS + 1); break;
		}
		cr_assert_eq(sk_amsg_restart_decode(bad, sizeof(bad), &d), -EBADMSG, "case %d", i);
	}
	sk_put_u32(bad + 4, SK_AMSG_RESTART_MAX_MS);
	cr_assert_eq(sk_amsg_restart_decode(bad, sizeof(bad), &d), 0);
	/* encoder: refuses what the decoder would */
	r.silent_ms = 0;
	cr_assert_eq(sk_amsg_restart_encode(&r, buf, sizeof(buf)), -EINVAL);
	r.silent_ms = SK_AMSG_RESTART_MAX_MS + 1;
	cr_assert_eq(sk_amsg_restart_encode(&r, buf, sizeof(buf)), -EINVAL);
	r.silent_ms = 1;
	r.node_id = 0;
	cr_assert_eq(sk_amsg_restart_encode(&r, buf, sizeof(buf)), -EINVAL);
	r.node_id = 1;
	cr_assert_eq(sk_amsg_restart_encode(&r, buf, SK_AMSG_RESTART_LEN - 1), -ENOSPC);
}
