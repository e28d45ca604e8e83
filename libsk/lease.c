/* libsk/lease.c: lease witness datagram payloads (bounded decoders), the grant table, skfused's lease command. */
#include "lease.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

long sk_lease_req_encode(const struct sk_lease_req *q, uint8_t *buf, size_t cap)
{
	if (cap < SK_LEASE_REQ_LEN)
		return -ENOSPC;
	if (!q->node || !q->module || !q->nonce || (q->flags & ~SK_LEASE_F__ALL) ||
	    (q->op != SK_LEASE_ACQUIRE && q->op != SK_LEASE_RELEASE))
		return -EINVAL;
	buf[0] = SK_LEASE_VERSION;
	buf[1] = q->node;
	buf[2] = q->op;
	buf[3] = q->flags;
	sk_put_u32(buf + 4, q->module);
	sk_put_u64(buf + 8, q->nonce);
	return SK_LEASE_REQ_LEN;
}

int sk_lease_req_decode(const uint8_t *p, size_t len, struct sk_lease_req *q)
{
	if (len != SK_LEASE_REQ_LEN || p[0] != SK_LEASE_VERSION || p[1] == 0 ||
	    (p[3] & ~SK_LEASE_F__ALL) ||
	    (p[2] != SK_LEASE_ACQUIRE && p[2] != SK_LEASE_RELEASE))
		return -EBADMSG;
	q->node = p[1];
	q->op = p[2];
	q->flags = p[3];
	q->module = sk_get_u32(p + 4);
	q->nonce = sk_get_u64(p + 8);
	return q->module && q->nonce ? 0 : -EBADMSG;
}

long sk_lease_reply_encode(const struct sk_lease_reply *r, uint8_t *buf, size_t cap)
{
	if (cap < SK_LEASE_REPLY_LEN)
		return -ENOSPC;
	if (!r->witness || !r->module || !r->nonce || r->result < SK_LEASE_GRANTED ||
	    r->result > SK_LEASE_BEHIND || r->valid_ms > SK_LEASE_VALID_MAX)
		return -EINVAL;
	buf[0] = SK_LEASE_VERSION;
	buf[1] = r->witness;
	buf[2] = r->result;
	buf[3] = r->holder;
	sk_put_u32(buf + 4, r->module);
	sk_put_u64(buf + 8, r->nonce);
	sk_put_u32(buf + 16, r->valid_ms);
	sk_put_u64(buf + 20, r->epoch);
	return SK_LEASE_REPLY_LEN;
}

int sk_lease_reply_decode(const uint8_t *p, size_t len, struct sk_lease_reply *r)
{
	if (len != SK_LEASE_REPLY_LEN || p[0] != SK_LEASE_VERSION || p[1] == 0 ||
	    p[2] < SK_LEASE_GRANTED || p[2] > SK_LEASE_BEHIND)
		return -EBADMSG;
	r->witness = p[1];
	r->result = p[2];
	r->holder = p[3];
	r->module = sk_get_u32(p + 4);
	r->nonce = sk_get_u64(p + 8);
	r->valid_ms = sk_get_u32(p + 16);
	r->epoch = sk_get_u64(p + 20);
	if (!r->module || !r->nonce || r->valid_ms > SK_LEASE_VALID_MAX)
		return -EBADMSG;
	/* a grant names its holder; it must be the one asking (checked by the caller) */
	if (r->result == SK_LEASE_GRANTED && !r->holder)
		return -EBADMSG;
	return 0;
}

/* ---- grant table ---- */

void sk_lease_table_init(struct sk_lease_table *t, uint32_t lease_ms, uint32_t margin_ms,
			 uint64_t now_ms)
{
	memset(t, 0, sizeof(*t));
	t->lease_ms = lease_ms;
	t->margin_ms = margin_ms;
	t->grace_until_ms = now_ms + lease_ms + margin_ms;
}

static uint32_t ms_until(uint64_t when, uint64_t now)
{
	uint64_t d = when > now ? when - now : 0;

	return d > SK_LEASE_VALID_MAX ? SK_LEASE_VALID_MAX : (uint32_t)d;
}

void sk_lease_table_ask(struct sk_lease_table *t, uint64_t now_ms, const struct sk_lease_req *q,
			struct sk_lease_reply *r)
{
	struct sk_lease_entry *e = NULL;

	r->module = q->module;
	r->holder = 0;
	r->epoch = 0;
	r->valid_ms = 0;
	for (unsigned i = 0; i < t->n; i++)
		if (t->e[i].module == q->module)
			e = &t->e[i];
	if (q->op == SK_LEASE_RELEASE) {
		if (e && e->holder == q->node) {
			if (e->until_ms > now_ms)
				e->until_ms = now_ms;
			e->peer_out = q->flags & SK_LEASE_F_PEER_OUT;
		}
		r->result = SK_LEASE_RELEASED;
		if (e) {
			r->holder = e->holder;
			r->epoch = e->epoch;
		}
		return;
	}
	if (now_ms < t->grace_until_ms) {
		r->result = SK_LEASE_GRACE;
		r->valid_ms = ms_until(t->grace_until_ms, now_ms);
		if (e) {
			r->holder = e->holder;
			r->epoch = e->epoch;
		}
		return;
	}
	if (!e) {
		if (t->n >= SK_LEASE_TABLE_MAX) {
			r->result = SK_LEASE_FULL;
			return;
		}
		e = &t->e[t->n++];
		memset(e, 0, sizeof(*e));
		e->module = q->module;
	}
	if (e->holder && e->holder != q->node && now_ms < e->until_ms + t->margin_ms) {
		r->result = SK_LEASE_HELD;
		r->holder = e->holder;
		r->epoch = e->epoch;
		r->valid_ms = ms_until(e->until_ms + t->margin_ms, now_ms);
		return;
	}
	if (e->holder && e->holder != q->node && e->peer_out && !(q->flags & SK_LEASE_F_FORCE)) {
		r->result = SK_LEASE_BEHIND;
		r->holder = e->holder;
		r->epoch = e->epoch;
		return;
	}
	if (e->holder != q->node) {
		e->holder = q->node;
		e->epoch++;
	}
	e->until_ms = now_ms + t->lease_ms;
	e->peer_out = q->flags & SK_LEASE_F_PEER_OUT;
	r->result = SK_LEASE_GRANTED;
	r->holder = e->holder;
	r->epoch = e->epoch;
	r->valid_ms = t->lease_ms;
}

/* ---- skfused's lease command ---- */

int sk_lease_ctl_from_json(struct json_object *o, struct sk_lease_ctl *out, char *err,
			   size_t errlen)
{
	struct json_object *v;
	int keys = 2;
	int64_t n;

	memset(out, 0, sizeof(*out));
	if (!json_object_object_get_ex(o, "valid_ms", &v) || !json_object_is_type(v, json_type_int)) {
		snprintf(err, errlen, "lease needs \"valid_ms\": an integer 0..%u", SK_LEASE_VALID_MAX);
		return -EINVAL;
	}
	errno = 0;
	n = json_object_get_int64(v);
	if (errno || n < 0 || n > SK_LEASE_VALID_MAX) {
		snprintf(err, errlen, "lease: \"valid_ms\" must be 0..%u", SK_LEASE_VALID_MAX);
		return -EINVAL;
	}
	out->valid_ms = (uint32_t)n;
	if (json_object_object_get_ex(o, "at_ms", &v)) {
		keys++;
		errno = 0;
		n = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
		if (errno || n < 0) {
			snprintf(err, errlen, "lease: \"at_ms\" must be a non-negative integer "
				 "(the sender's monotonic clock in ms)");
			return -EINVAL;
		}
		out->has_at = true;
		out->at_ms = (uint64_t)n;
	}
	if (json_object_object_length(o) != keys) {
		snprintf(err, errlen, "lease takes only \"valid_ms\" and \"at_ms\"");
		return -EINVAL;
	}
	return 0;
}

int sk_lease_ctl_parse(const char *line, size_t len, struct sk_lease_ctl *out, char *err,
		       size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *o = NULL, *v;
	int rc = -ENOENT;

	memset(out, 0, sizeof(*out));
	if (len > 4096)
		return -ENOENT; /* the other parser says what is wrong with it */
	tok = json_tokener_new_ex(4);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, line, (int)len);
	if (o && json_tokener_get_error(tok) == json_tokener_success &&
	    json_tokener_get_parse_end(tok) == len && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, "cmd", &v) && json_object_is_type(v, json_type_string) &&
	    !strcmp(json_object_get_string(v), "lease"))
		rc = sk_lease_ctl_from_json(o, out, err, errlen);
	json_object_put(o);
	json_tokener_free(tok);
	return rc;
}
