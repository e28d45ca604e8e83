/* test/fuzz/fuzz_ctl.c: libFuzzer target for what one agent takes from another (heartbeat, restart, command and control payloads) and the control request and reply parsers. */
/*
 * Properties checked (abort() on violation, so libFuzzer reports a crash):
 *  - the agent message decoders never read past their input (exactly sized heap copies, so
 *    ASan sees one byte too far), and what they accept re-encodes to the same bytes; a
 *    control payload's text lies inside the input and is 1..SK_AMSG_CTL_MAX bytes;
 *  - a control request line that decodes re-encodes to one that decodes to the same request,
 *    with a verb in range and a module name of [a-z0-9_-];
 *  - a reply that decodes shows no control character (but tab) in its error, its hint or any
 *    string of its data; every module entry of its data that decodes has its strings ended
 *    inside their buffers, free of control characters, at most SK_CTL_MAX_MEMBERS members,
 *    done <= total, and survives to_json -> from_json unchanged; the same for a transition.
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agentmsg.h"
#include "ctl.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A display string: ended inside its buffer, no control character but tab. */
static void check_text(const char *s, size_t cap)
{
	size_t n = strnlen(s, cap);

	CHECK(n < cap);
	for (size_t i = 0; i < n; i++)
		CHECK((unsigned char)s[i] >= 0x20 ? s[i] != 0x7f : s[i] == '\t');
}

static void check_json_strings(json_object *o, int depth)
{
	CHECK(depth < 64);
	if (json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, k, v) {
			(void)k;
			check_json_strings(v, depth + 1);
		}
	} else if (json_object_is_type(o, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(o); i++)
			check_json_strings(json_object_array_get_idx(o, i), depth + 1);
	} else if (json_object_is_type(o, json_type_string)) {
		const char *s = json_object_get_string(o);
		int n = json_object_get_string_len(o);

		for (int i = 0; i < n; i++)
			CHECK((unsigned char)s[i] >= 0x20 ? s[i] != 0x7f : s[i] == '\t');
	}
}

static void check_mod(const struct sk_ctl_mod *m)
{
	check_text(m->name, sizeof(m->name));
	check_text(m->peer, sizeof(m->peer));
	check_text(m->vip, sizeof(m->vip));
	check_text(m->fused, sizeof(m->fused));
	check_text(m->busy, sizeof(m->busy));
	check_text(m->reason, sizeof(m->reason));
	check_text(m->data_id, sizeof(m->data_id));
	check_text(m->relation, sizeof(m->relation));
	check_text(m->data_words, sizeof(m->data_words));
	check_text(m->aside, sizeof(m->aside));
	CHECK(m->state < SK_ST__COUNT && m->peer_state < SK_ST__COUNT);
	CHECK(m->rs_done <= m->rs_total);
	CHECK(m->n_members <= SK_CTL_MAX_MEMBERS);
	for (unsigned i = 0; i < m->n_members; i++) {
		check_text(m->members[i].node, sizeof(m->members[i].node));
		CHECK(m->members[i].state < SK_ST__COUNT);
	}
}

/* to_json -> from_json gives the same entry (compared as its JSON text). */
static void mod_roundtrip(const struct sk_ctl_mod *m)
{
	static struct sk_ctl_mod m2;
	json_object *a = NULL, *b = NULL;
	char err[160];

	if (sk_ctl_mod_to_json(m, &a) < 0)
		return;
	CHECK(sk_ctl_mod_from_json(a, &m2, err, sizeof(err)) == 0);
	CHECK(sk_ctl_mod_to_json(&m2, &b) == 0);
	CHECK(!strcmp(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN),
		      json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN)));
	json_object_put(a);
	json_object_put(b);
}

static void trans_check(json_object *o)
{
	struct sk_ctl_trans t, t2;
	json_object *a = NULL;
	char err[160];

	if (sk_ctl_trans_from_json(o, &t, err, sizeof(err)) < 0)
		return;
	check_text(t.module, sizeof(t.module));
	check_text(t.cause, sizeof(t.cause));
	CHECK(t.from < SK_ST__COUNT && t.to < SK_ST__COUNT);
	if (sk_ctl_trans_to_json(&t, &a) < 0)
		return;
	CHECK(sk_ctl_trans_from_json(a, &t2, err, sizeof(err)) == 0);
	CHECK(!strcmp(t.module, t2.module) && !strcmp(t.cause, t2.cause) && t.from == t2.from &&
	      t.to == t2.to && t.at_ms == t2.at_ms && t.total_ms == t2.total_ms &&
	      t.failed == t2.failed && !memcmp(t.phase_ms, t2.phase_ms, sizeof(t.phase_ms)));
	json_object_put(a);
}

static void agent_payloads(const uint8_t *p, size_t size)
{
	uint8_t out[SK_AMSG_STATE_MAX + SK_AMSG_CTL_MAX + 16];
	struct sk_amsg_state st;
	struct sk_amsg_restart rs;
	enum sk_amsg_cmd cmd;
	const char *text;
	uint32_t module, id;
	size_t n;
	long l;

	if (sk_amsg_state_decode(p, size, &st) == 0) {
		CHECK(st.n_mods <= SK_AMSG_MAX_MODS && st.node_id != 0);
		l = sk_amsg_state_encode(&st, out, sizeof(out));
		CHECK(l == (long)size && !memcmp(out, p, size));
	}
	if (sk_amsg_restart_decode(p, size, &rs) == 0) {
		CHECK(rs.silent_ms >= 1 && rs.silent_ms <= SK_AMSG_RESTART_MAX_MS);
		l = sk_amsg_restart_encode(&rs, out, sizeof(out));
		CHECK(l == (long)size && !memcmp(out, p, size));
	}
	if (sk_amsg_cmd_decode(p, size, &cmd, &module) == 0) {
		CHECK(cmd >= 1 && cmd <= SK_AMSG_CMD__MAX);
		l = sk_amsg_cmd_encode(cmd, module, out, sizeof(out));
		CHECK(l == (long)size && !memcmp(out, p, size));
	}
	if (sk_amsg_ctl_decode(p, size, &id, &text, &n) == 0) {
		CHECK(n >= 1 && n <= SK_AMSG_CTL_MAX && inside(text, n, p, size));
		l = sk_amsg_ctl_encode(id, text, n, out, sizeof(out));
		CHECK(l == (long)size && !memcmp(out, p, size));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *p = dup_exact(data, size);
	static char line[8192];
	struct sk_ctl_req q, q2;
	struct sk_ctl_reply r;
	char err[160];
	json_object *o;

	agent_payloads(p, size);
	if (sk_ctl_req_decode((const char *)p, size, &q, err, sizeof(err)) == 0) {
		long l;

		CHECK(q.verb > 0 && q.verb < SK_CTL__COUNT);
		CHECK(strnlen(q.module, sizeof(q.module)) < sizeof(q.module));
		for (const char *c = q.module; *c; c++)
			CHECK((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-');
		l = sk_ctl_req_encode(&q, line, sizeof(line));
		CHECK(l > 0);
		CHECK(sk_ctl_req_decode(line, (size_t)l, &q2, err, sizeof(err)) == 0);
		CHECK(q2.verb == q.verb && !strcmp(q2.module, q.module) && q2.force == q.force &&
		      q2.lines == q.lines && q2.all == q.all);
	}
	if (sk_ctl_reply_decode((const char *)p, size, &r, err, sizeof(err)) == 0) {
		json_object *mods;

		check_text(r.error, sizeof(r.error));
		check_text(r.hint, sizeof(r.hint));
		if (r.data) {
			check_json_strings(r.data, 0);
			if (json_object_object_get_ex(r.data, "modules", &mods) &&
			    json_object_is_type(mods, json_type_array))
				for (size_t i = 0; i < json_object_array_length(mods) && i < 64; i++) {
					static struct sk_ctl_mod m;

					if (sk_ctl_mod_from_json(json_object_array_get_idx(mods, i), &m,
								 err, sizeof(err)) == 0) {
						check_mod(&m);
						mod_roundtrip(&m);
					}
				}
		}
		sk_ctl_reply_free(&r);
	}
	/* a transition line of the agent's history file, and any object as one */
	if (size < sizeof(line)) {
		memcpy(line, p, size);
		line[size] = '\0';
		if ((o = json_tokener_parse(line))) {
			trans_check(o);
			json_object_put(o);
		}
	}
	free(p);
	return 0;
}
