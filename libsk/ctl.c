/* libsk/ctl.c: control protocol encode/decode (json-c), line framing, peer check, blocking client. */
#include "ctl.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *const state_names[SK_ST__COUNT] = {
	[SK_ST_STOP] = "STOP",   [SK_ST_WAIT] = "WAIT",     [SK_ST_ALONE] = "ALONE",
	[SK_ST_PRIM] = "PRIM",   [SK_ST_SECOND] = "SECOND", [SK_ST_UP] = "UP",
};

static const char *const verb_names[SK_CTL__COUNT] = {
	[SK_CTL_STATE] = "state", [SK_CTL_START] = "start", [SK_CTL_STOP] = "stop",
	[SK_CTL_SWAP] = "swap",   [SK_CTL_PRIM] = "prim",   [SK_CTL_SECOND] = "second",
	[SK_CTL_WHY] = "why",     [SK_CTL_LOG] = "log",     [SK_CTL_RESTART] = "restart",
	[SK_CTL_STOPSTART] = "stopstart", [SK_CTL_FORCESTOP] = "forcestop",
};

static const char *const phase_names[SK_PH__COUNT] = {
	[SK_PH_DETECT] = "detect", [SK_PH_DECIDE] = "decide", [SK_PH_STOP] = "stop scripts",
	[SK_PH_VIP] = "VIP",       [SK_PH_FUSED] = "skfused", [SK_PH_START] = "start scripts",
};

const char *sk_state_name(enum sk_mod_state s)
{
	return (unsigned)s < SK_ST__COUNT ? state_names[s] : "?";
}

int sk_state_parse(const char *name)
{
	for (int i = 0; i < SK_ST__COUNT; i++)
		if (!strcmp(name, state_names[i]))
			return i;
	return -EINVAL;
}

int sk_state_exit_code(enum sk_mod_state s)
{
	return s == SK_ST_UP ? 2 : (int)s;
}

const char *sk_ctl_verb_name(enum sk_ctl_verb v)
{
	return (unsigned)v < SK_CTL__COUNT && verb_names[v] ? verb_names[v] : "?";
}

const char *sk_phase_name(enum sk_phase p)
{
	return (unsigned)p < SK_PH__COUNT ? phase_names[p] : "?";
}

static void seterr(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/* Module names follow userconfig.json's rule: [a-z0-9_-], 1..31. */
static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n >= SK_CTL_NAME_LEN)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return false;
	return true;
}

/* Parse a line into an object: bounded, exactly one JSON object, nothing after it. */
static int parse_obj(const char *buf, size_t len, size_t max, json_object **out, char *err,
		     size_t errlen)
{
	struct json_tokener *tok;
	json_object *o;
	size_t used;

	if (len && buf[len - 1] == '\n')
		len--;
	if (len >= max) {
		seterr(err, errlen, "line longer than %zu bytes", max - 1);
		return -EMSGSIZE;
	}
	if (memchr(buf, '\0', len)) {
		seterr(err, errlen, "NUL byte in the line");
		return -EINVAL;
	}
	tok = json_tokener_new_ex(16);
	if (!tok)
		return -ENOMEM;
	o = json_tokener_parse_ex(tok, buf, (int)len);
	used = (size_t)json_tokener_get_parse_end(tok);
	if (!o) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		seterr(err, errlen, "not JSON: %s", e == json_tokener_continue ?
			       "incomplete document" : json_tokener_error_desc(e));
		json_tokener_free(tok);
		return -EINVAL;
	}
	json_tokener_free(tok);
	for (; used < len; used++)
		if (buf[used] != ' ' && buf[used] != '\t' && buf[used] != '\r') {
			seterr(err, errlen, "trailing bytes after the JSON object");
			json_object_put(o);
			return -EINVAL;
		}
	if (!json_object_is_type(o, json_type_object)) {
		seterr(err, errlen, "not a JSON object");
		json_object_put(o);
		return -EINVAL;
	}
	*out = o;
	return 0;
}

static int check_version(json_object *o, char *err, size_t errlen)
{
	json_object *v;

	if (!json_object_object_get_ex(o, "v", &v) || !json_object_is_type(v, json_type_int)) {
		seterr(err, errlen, "\"v\" (protocol version, integer) is required");
		return -EINVAL;
	}
	if (json_object_get_int64(v) != SK_CTL_VERSION) {
		seterr(err, errlen, "protocol version %lld not supported (this side speaks %d)",
		       (long long)json_object_get_int64(v), SK_CTL_VERSION);
		return -EPROTO;
	}
	return 0;
}

long sk_ctl_req_encode(const struct sk_ctl_req *r, char *buf, size_t cap)
{
	json_object *o;
	const char *s;
	size_t n;

	if ((unsigned)r->verb >= SK_CTL__COUNT || !verb_names[r->verb] ||
	    (r->module[0] && !name_ok(r->module)) || r->lines > SK_CTL_MAX_LINES)
		return -EINVAL;
	o = json_object_new_object();
	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "v", json_object_new_int(SK_CTL_VERSION));
	json_object_object_add(o, "cmd", json_object_new_string(verb_names[r->verb]));
	if (r->module[0])
		json_object_object_add(o, "module", json_object_new_string(r->module));
	if (r->force)
		json_object_object_add(o, "force", json_object_new_boolean(1));
	if (r->lines)
		json_object_object_add(o, "lines", json_object_new_int((int)r->lines));
	if (r->all)
		json_object_object_add(o, "all", json_object_new_boolean(1));
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	n = strlen(s);
	if (n + 2 > cap || n + 1 > SK_CTL_MAX_REQ) {
		json_object_put(o);
		return -ENOSPC;
	}
	memcpy(buf, s, n);
	buf[n++] = '\n';
	buf[n] = '\0';
	json_object_put(o);
	return (long)n;
}

int sk_ctl_req_decode(const char *buf, size_t len, struct sk_ctl_req *r, char *err, size_t errlen)
{
	json_object *o, *v;
	struct sk_ctl_req q = { 0 };
	int rc;

	rc = parse_obj(buf, len, SK_CTL_MAX_REQ, &o, err, errlen);
	if (rc < 0)
		return rc;
	rc = check_version(o, err, errlen);
	if (rc < 0)
		goto out;
	rc = -EINVAL;
	json_object_object_foreach(o, key, val) {
		(void)val;
		if (strcmp(key, "v") && strcmp(key, "cmd") && strcmp(key, "module") &&
		    strcmp(key, "force") && strcmp(key, "lines") && strcmp(key, "all")) {
			seterr(err, errlen, "unknown key \"%.40s\"", key);
			goto out;
		}
	}
	if (!json_object_object_get_ex(o, "cmd", &v) || !json_object_is_type(v, json_type_string)) {
		seterr(err, errlen, "\"cmd\" (string) is required");
		goto out;
	}
	for (int i = 1; i < SK_CTL__COUNT; i++)
		if (!strcmp(json_object_get_string(v), verb_names[i]))
			q.verb = (enum sk_ctl_verb)i;
	if (!q.verb) {
		seterr(err, errlen, "unknown command \"%.40s\"", json_object_get_string(v));
		goto out;
	}
	if (json_object_object_get_ex(o, "module", &v)) {
		if (!json_object_is_type(v, json_type_string) || !name_ok(json_object_get_string(v))) {
			seterr(err, errlen, "\"module\" must be a module name ([a-z0-9_-], 1..31)");
			goto out;
		}
		snprintf(q.module, sizeof(q.module), "%s", json_object_get_string(v));
	}
	if (json_object_object_get_ex(o, "force", &v)) {
		if (!json_object_is_type(v, json_type_boolean)) {
			seterr(err, errlen, "\"force\" must be true or false");
			goto out;
		}
		q.force = json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(o, "all", &v)) {
		if (!json_object_is_type(v, json_type_boolean)) {
			seterr(err, errlen, "\"all\" must be true or false");
			goto out;
		}
		q.all = json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(o, "lines", &v)) {
		int64_t n = json_object_get_int64(v);

		if (!json_object_is_type(v, json_type_int) || n < 1 || n > SK_CTL_MAX_LINES) {
			seterr(err, errlen, "\"lines\" must be an integer 1..%d", SK_CTL_MAX_LINES);
			goto out;
		}
		q.lines = (uint32_t)n;
	}
	if (!q.module[0] && q.verb != SK_CTL_STATE && q.verb != SK_CTL_WHY) {
		seterr(err, errlen, "\"%s\" needs \"module\"", verb_names[q.verb]);
		goto out;
	}
	if (q.force && q.verb != SK_CTL_PRIM) {
		seterr(err, errlen, "\"force\" is only for \"prim\"");
		goto out;
	}
	*r = q;
	rc = 0;
out:
	json_object_put(o);
	return rc;
}

void sk_ctl_reply_fill(json_object *o, const struct sk_ctl_reply *r)
{
	json_object_object_add(o, "ok", json_object_new_boolean(r->ok));
	if (r->ok) {
		json_object_object_add(o, "data", r->data ? json_object_get(r->data) :
							    json_object_new_object());
	} else {
		json_object_object_add(o, "error", json_object_new_string(r->error));
		if (r->hint[0])
			json_object_object_add(o, "hint", json_object_new_string(r->hint));
	}
}

char *sk_ctl_reply_encode(const struct sk_ctl_reply *r, size_t *len)
{
	json_object *o = json_object_new_object();
	const char *s;
	char *out;
	size_t n;

	if (!o)
		return NULL;
	json_object_object_add(o, "v", json_object_new_int(SK_CTL_VERSION));
	sk_ctl_reply_fill(o, r);
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	n = strlen(s);
	if (n + 1 >= SK_CTL_MAX_REPLY) {
		/* never send a line the client would refuse: say so instead */
		json_object_put(o);
		struct sk_ctl_reply big = { .ok = false };
		snprintf(big.error, sizeof(big.error), "reply too large (%zu bytes)", n);
		snprintf(big.hint, sizeof(big.hint), "ask for fewer lines or one module (-m)");
		return sk_ctl_reply_encode(&big, len);
	}
	out = malloc(n + 2);
	if (out) {
		memcpy(out, s, n);
		out[n] = '\n';
		out[n + 1] = '\0';
		*len = n + 1;
	}
	json_object_put(o);
	return out;
}

/*
 * Text a reply carries is shown to an operator, and may come from another node (skctl -H) or
 * quote names a peer chose: a control character (an escape sequence that rewrites the
 * terminal, a newline that fakes a line of output) shows as '?'; tabs stay (sk_text_clean).
 */
static void copy_str(json_object *o, const char *key, char *dst, size_t cap)
{
	json_object *v;

	dst[0] = '\0';
	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)) {
		snprintf(dst, cap, "%s", json_object_get_string(v));
		sk_text_clean(dst, strlen(dst), "\t");
	}
}

/* Every string in o (keys too are only compared, never shown: left alone), as copy_str. */
static void display_strings(json_object *o)
{
	if (json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, key, val) {
			(void)key;
			display_strings(val);
		}
	} else if (json_object_is_type(o, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(o); i++)
			display_strings(json_object_array_get_idx(o, i));
	} else if (json_object_is_type(o, json_type_string)) {
		const char *s = json_object_get_string(o);
		int n = json_object_get_string_len(o);
		char *t;

		for (int i = 0; i < n; i++)
			if (!sk_text_char_ok((unsigned char)s[i], "\t"))
				goto fix;
		return;
fix: /* copied only when something is to change */
		if (!(t = malloc((size_t)n + 1))) {
			json_object_set_string(o, "?");
			return;
		}
		memcpy(t, s, (size_t)n);
		sk_text_clean(t, (size_t)n, "\t");
		t[n] = '\0';
		json_object_set_string_len(o, t, n);
		free(t);
	}
}

int sk_ctl_reply_decode(const char *buf, size_t len, struct sk_ctl_reply *r, char *err,
			size_t errlen)
{
	json_object *o, *v;
	int rc;

	memset(r, 0, sizeof(*r));
	rc = parse_obj(buf, len, SK_CTL_MAX_REPLY, &o, err, errlen);
	if (rc < 0)
		return rc;
	rc = check_version(o, err, errlen);
	if (rc < 0)
		goto out;
	rc = -EINVAL;
	if (!json_object_object_get_ex(o, "ok", &v) || !json_object_is_type(v, json_type_boolean)) {
		seterr(err, errlen, "reply without \"ok\"");
		goto out;
	}
	r->ok = json_object_get_boolean(v);
	if (r->ok) {
		if (json_object_object_get_ex(o, "data", &v)) {
			if (!json_object_is_type(v, json_type_object)) {
				seterr(err, errlen, "reply \"data\" is not an object");
				goto out;
			}
			r->data = json_object_get(v);
			display_strings(r->data);
		}
	} else {
		copy_str(o, "error", r->error, sizeof(r->error));
		copy_str(o, "hint", r->hint, sizeof(r->hint));
		if (!r->error[0])
			snprintf(r->error, sizeof(r->error), "refused without a reason");
	}
	rc = 0;
out:
	json_object_put(o);
	return rc;
}

void sk_ctl_reply_free(struct sk_ctl_reply *r)
{
	if (r && r->data) {
		json_object_put(r->data);
		r->data = NULL;
	}
}

/* ---- typed pieces ---- */

uint64_t sk_ctl_json_u64(json_object *o, const char *key, uint64_t def)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return def;
	return json_object_get_int64(v) < 0 ? def : (uint64_t)json_object_get_int64(v);
}

const char *sk_ctl_json_str(json_object *o, const char *key, const char *def)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return def;
	return json_object_get_string(v);
}

static bool jbool(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_boolean) &&
	       json_object_get_boolean(v);
}

static int get_state(json_object *o, const char *key, enum sk_mod_state *s, char *err,
		     size_t errlen)
{
	int v = sk_state_parse(sk_ctl_json_str(o, key, ""));

	if (v < 0) {
		seterr(err, errlen, "\"%s\" is not a module state", key);
		return -EINVAL;
	}
	*s = (enum sk_mod_state)v;
	return 0;
}

int sk_ctl_mod_to_json(const struct sk_ctl_mod *m, json_object **out)
{
	json_object *o = json_object_new_object();

	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "name", json_object_new_string(m->name));
	json_object_object_add(o, "state", json_object_new_string(sk_state_name(m->state)));
	json_object_object_add(o, "peer", json_object_new_string(m->peer));
	json_object_object_add(o, "peer_alive", json_object_new_boolean(m->peer_alive));
	json_object_object_add(o, "peer_state", json_object_new_string(sk_state_name(m->peer_state)));
	json_object_object_add(o, "vip", json_object_new_string(m->vip));
	json_object_object_add(o, "vip_held", json_object_new_boolean(m->vip_held));
	json_object_object_add(o, "uptodate", json_object_new_boolean(m->uptodate));
	json_object_object_add(o, "gen", json_object_new_int64((int64_t)m->gen));
	json_object_object_add(o, "fused", json_object_new_string(m->fused));
	json_object_object_add(o, "busy", json_object_new_string(m->busy));
	json_object_object_add(o, "reason", json_object_new_string(m->reason));
	json_object_object_add(o, "since_ms", json_object_new_int64((int64_t)m->since_ms));
	json_object_object_add(o, "data_id", json_object_new_string(m->data_id));
	json_object_object_add(o, "relation", json_object_new_string(m->relation));
	json_object_object_add(o, "data_words", json_object_new_string(m->data_words));
	json_object_object_add(o, "aside", json_object_new_string(m->aside));
	if (m->resyncing) {
		json_object *r = json_object_new_object();
		double pct = m->rs_total ? 100.0 * (double)m->rs_done / (double)m->rs_total : 0;

		json_object_object_add(r, "done_bytes", json_object_new_int64((int64_t)m->rs_done));
		json_object_object_add(r, "total_bytes", json_object_new_int64((int64_t)m->rs_total));
		json_object_object_add(r, "percent", json_object_new_double((double)(int)(pct * 10) / 10));
		json_object_object_add(r, "rate_bps", json_object_new_int64((int64_t)m->rs_rate));
		json_object_object_add(r, "eta_s", json_object_new_int64(m->rs_eta_s));
		json_object_object_add(o, "resync", r);
	}
	if (m->n_members) {
		json_object *arr = json_object_new_array();

		for (unsigned i = 0; i < m->n_members && i < SK_CTL_MAX_MEMBERS; i++) {
			json_object *e = json_object_new_object();

			json_object_object_add(e, "node", json_object_new_string(m->members[i].node));
			json_object_object_add(e, "alive", json_object_new_boolean(m->members[i].alive));
			json_object_object_add(e, "state", json_object_new_string(
				sk_state_name(m->members[i].state)));
			json_object_array_add(arr, e);
		}
		json_object_object_add(o, "members", arr);
	}
	*out = o;
	return 0;
}

int sk_ctl_mod_from_json(json_object *o, struct sk_ctl_mod *m, char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	if (!o || !json_object_is_type(o, json_type_object)) {
		seterr(err, errlen, "module entry is not an object");
		return -EINVAL;
	}
	copy_str(o, "name", m->name, sizeof(m->name));
	if (!m->name[0]) {
		seterr(err, errlen, "module entry without a name");
		return -EINVAL;
	}
	if (get_state(o, "state", &m->state, err, errlen) < 0 ||
	    get_state(o, "peer_state", &m->peer_state, err, errlen) < 0)
		return -EINVAL;
	copy_str(o, "peer", m->peer, sizeof(m->peer));
	copy_str(o, "vip", m->vip, sizeof(m->vip));
	copy_str(o, "fused", m->fused, sizeof(m->fused));
	copy_str(o, "busy", m->busy, sizeof(m->busy));
	copy_str(o, "reason", m->reason, sizeof(m->reason));
	m->peer_alive = jbool(o, "peer_alive");
	m->vip_held = jbool(o, "vip_held");
	m->uptodate = jbool(o, "uptodate");
	m->gen = sk_ctl_json_u64(o, "gen", 0);
	m->since_ms = sk_ctl_json_u64(o, "since_ms", 0);
	copy_str(o, "data_id", m->data_id, sizeof(m->data_id));
	copy_str(o, "relation", m->relation, sizeof(m->relation));
	copy_str(o, "data_words", m->data_words, sizeof(m->data_words));
	copy_str(o, "aside", m->aside, sizeof(m->aside));
	{
		json_object *r, *v;

		if (json_object_object_get_ex(o, "resync", &r) &&
		    json_object_is_type(r, json_type_object)) {
			m->resyncing = true;
			m->rs_done = sk_ctl_json_u64(r, "done_bytes", 0);
			m->rs_total = sk_ctl_json_u64(r, "total_bytes", 0);
			m->rs_rate = sk_ctl_json_u64(r, "rate_bps", 0);
			m->rs_eta_s = json_object_object_get_ex(r, "eta_s", &v) &&
					      json_object_is_type(v, json_type_int) ?
				      json_object_get_int64(v) : -1;
			if (m->rs_done > m->rs_total)
				m->rs_done = m->rs_total; /* never more than all */
		}
	}
	{
		json_object *arr;

		if (json_object_object_get_ex(o, "members", &arr)) {
			size_t n;

			if (!json_object_is_type(arr, json_type_array) ||
			    (n = json_object_array_length(arr)) > SK_CTL_MAX_MEMBERS) {
				seterr(err, errlen, "\"members\" is not an array of at most %d nodes",
				       SK_CTL_MAX_MEMBERS);
				return -EINVAL;
			}
			for (size_t i = 0; i < n; i++) {
				json_object *e = json_object_array_get_idx(arr, i);
				struct sk_ctl_member *mb = &m->members[i];

				if (!e || !json_object_is_type(e, json_type_object)) {
					seterr(err, errlen, "members[%zu] is not an object", i);
					return -EINVAL;
				}
				copy_str(e, "node", mb->node, sizeof(mb->node));
				if (!mb->node[0] || get_state(e, "state", &mb->state, err, errlen) < 0) {
					if (!mb->node[0])
						seterr(err, errlen, "members[%zu] without a node", i);
					return -EINVAL;
				}
				mb->alive = jbool(e, "alive");
				m->n_members = (unsigned)i + 1;
			}
		}
	}
	return 0;
}

int sk_ctl_trans_to_json(const struct sk_ctl_trans *t, json_object **out)
{
	json_object *o = json_object_new_object(), *p;

	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "at_ms", json_object_new_int64((int64_t)t->at_ms));
	json_object_object_add(o, "module", json_object_new_string(t->module));
	json_object_object_add(o, "from", json_object_new_string(sk_state_name(t->from)));
	json_object_object_add(o, "to", json_object_new_string(sk_state_name(t->to)));
	json_object_object_add(o, "cause", json_object_new_string(t->cause));
	json_object_object_add(o, "failed", json_object_new_boolean(t->failed));
	json_object_object_add(o, "total_ms", json_object_new_int64(t->total_ms));
	p = json_object_new_object();
	json_object_object_add(p, "detect", json_object_new_int64(t->phase_ms[SK_PH_DETECT]));
	json_object_object_add(p, "decide", json_object_new_int64(t->phase_ms[SK_PH_DECIDE]));
	json_object_object_add(p, "stop", json_object_new_int64(t->phase_ms[SK_PH_STOP]));
	json_object_object_add(p, "vip", json_object_new_int64(t->phase_ms[SK_PH_VIP]));
	json_object_object_add(p, "fused", json_object_new_int64(t->phase_ms[SK_PH_FUSED]));
	json_object_object_add(p, "start", json_object_new_int64(t->phase_ms[SK_PH_START]));
	json_object_object_add(o, "phase_ms", p);
	*out = o;
	return 0;
}

int sk_ctl_trans_from_json(json_object *o, struct sk_ctl_trans *t, char *err, size_t errlen)
{
	static const char *const keys[SK_PH__COUNT] = { "detect", "decide", "stop",
							"vip",    "fused",  "start" };
	json_object *p;

	memset(t, 0, sizeof(*t));
	if (!o || !json_object_is_type(o, json_type_object)) {
		seterr(err, errlen, "transition is not an object");
		return -EINVAL;
	}
	copy_str(o, "module", t->module, sizeof(t->module));
	copy_str(o, "cause", t->cause, sizeof(t->cause));
	if (!name_ok(t->module)) {
		seterr(err, errlen, "transition without a valid module name");
		return -EINVAL;
	}
	if (get_state(o, "from", &t->from, err, errlen) < 0 ||
	    get_state(o, "to", &t->to, err, errlen) < 0)
		return -EINVAL;
	t->failed = jbool(o, "failed");
	t->at_ms = sk_ctl_json_u64(o, "at_ms", 0);
	t->total_ms = (uint32_t)sk_ctl_json_u64(o, "total_ms", 0);
	if (json_object_object_get_ex(o, "phase_ms", &p) && json_object_is_type(p, json_type_object))
		for (int i = 0; i < SK_PH__COUNT; i++)
			t->phase_ms[i] = (uint32_t)sk_ctl_json_u64(p, keys[i], 0);
	return 0;
}

int sk_ctl_trans_words(const struct sk_ctl_trans *t, const char *node, char *buf, size_t len)
{
	static const enum sk_phase order[] = { SK_PH_DETECT, SK_PH_STOP, SK_PH_VIP,
					       SK_PH_FUSED,  SK_PH_START, SK_PH_DECIDE };
	size_t n;
	int first = 1;

	n = (size_t)snprintf(buf, len, "%s → %s %s%s in %u ms (", t->cause, node,
			     sk_state_name(t->to), t->failed ? " FAILED" : "", t->total_ms);
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]) && n < len; i++) {
		uint32_t v = t->phase_ms[order[i]];

		if (!v && order[i] != SK_PH_DETECT)
			continue;
		if (!v && t->phase_ms[SK_PH_DETECT] == 0)
			continue;
		n += (size_t)snprintf(buf + n, len - n, "%s%s %u", first ? "" : ", ",
				      sk_phase_name(order[i]), v);
		first = 0;
	}
	if (n < len)
		n += (size_t)snprintf(buf + n, len - n, first ? "no phase over 0 ms)" : ")");
	return n < len ? (int)n : (int)len - 1;
}

/* ---- transport ---- */

int sk_ctl_peer_allowed(int fd, gid_t group, uid_t *uid)
{
	struct ucred cr;
	socklen_t sl = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &sl) < 0)
		return -errno;
	if (uid)
		*uid = cr.uid;
	if (cr.uid == 0 || (group != (gid_t)-1 && cr.gid == group))
		return 0;
	return -EACCES;
}

int sk_ctl_lbuf_push(struct sk_ctl_lbuf *b, const char *p, size_t n)
{
	if (n > sizeof(b->buf) - b->n)
		return -EMSGSIZE;
	memcpy(b->buf + b->n, p, n);
	b->n += n;
	/* a full buffer without a newline can never become a valid line */
	if (b->n == sizeof(b->buf) && !memchr(b->buf, '\n', b->n))
		return -EMSGSIZE;
	return 0;
}

int sk_ctl_lbuf_line(struct sk_ctl_lbuf *b, char *out, size_t *len)
{
	char *nl = memchr(b->buf, '\n', b->n);
	size_t l;

	if (!nl)
		return 0;
	l = (size_t)(nl - b->buf);
	memcpy(out, b->buf, l);
	out[l] = '\0';
	*len = l;
	memmove(b->buf, nl + 1, b->n - l - 1);
	b->n -= l + 1;
	return 1;
}

static int64_t now_ms(void)
{
	return (int64_t)(sk_now_us() / 1000);
}

int sk_ctl_call(const char *sock, const struct sk_ctl_req *r, struct sk_ctl_reply *reply,
		int timeout_ms, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char req[SK_CTL_MAX_REQ + 1];
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int64_t deadline = now_ms() + timeout_ms;
	long len;
	int fd, rc;

	len = sk_ctl_req_encode(r, req, sizeof(req));
	if (len < 0) {
		seterr(err, errlen, "bad request");
		return (int)len;
	}
	if (strlen(sock) >= sizeof(sa.sun_path)) {
		seterr(err, errlen, "socket path too long: %s", sock);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		seterr(err, errlen, "cannot reach the agent at %s: %s", sock, strerror(-rc));
		goto out;
	}
	if (write(fd, req, (size_t)len) != len) {
		rc = -EIO;
		seterr(err, errlen, "cannot send the request to %s", sock);
		goto out;
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - now_ms();
		ssize_t got;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
			rc = -ETIMEDOUT;
			seterr(err, errlen, "no reply from the agent at %s within %d ms", sock,
			       timeout_ms);
			goto out;
		}
		if (n + 4096 > cap) {
			char *nb;

			if (cap >= SK_CTL_MAX_REPLY) {
				rc = -EMSGSIZE;
				seterr(err, errlen, "reply over %u bytes", SK_CTL_MAX_REPLY);
				goto out;
			}
			cap = cap ? cap * 2 : 16384;
			nb = realloc(buf, cap + 1);
			if (!nb) {
				rc = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			rc = got < 0 ? -errno : -ECONNRESET;
			seterr(err, errlen, "the agent closed the connection without a reply");
			goto out;
		}
		n += (size_t)got;
		if (memchr(buf + n - (size_t)got, '\n', (size_t)got))
			break;
	}
	rc = sk_ctl_reply_decode(buf, (size_t)((char *)memchr(buf, '\n', n) - buf), reply, err,
				 errlen);
out:
	free(buf);
	close(fd);
	return rc;
}
