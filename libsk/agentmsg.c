/* libsk/agentmsg.c: encode/decode of agent-to-agent payloads (bounded; every byte checked). */
#include "agentmsg.h"

#include <errno.h>
#include <string.h>

#include "ctl.h"

long sk_amsg_state_encode(const struct sk_amsg_state *s, uint8_t *buf, size_t cap)
{
	size_t len = SK_AMSG_STATE_HDR + SK_AMSG_STATE_MOD * (size_t)s->n_mods;

	if (s->n_mods > SK_AMSG_MAX_MODS || !s->node_id)
		return -EINVAL;
	if (len > cap)
		return -ENOSPC;
	buf[0] = SK_AMSG_VERSION;
	buf[1] = s->node_id;
	buf[2] = s->net;
	buf[3] = (uint8_t)s->n_mods;
	sk_put_u64(buf + 4, s->incarnation);
	for (unsigned i = 0; i < s->n_mods; i++) {
		uint8_t *p = buf + SK_AMSG_STATE_HDR + SK_AMSG_STATE_MOD * i;

		sk_put_u32(p, s->mods[i].id);
		p[4] = s->mods[i].state;
		p[5] = s->mods[i].flags;
		sk_put_u16(p + 6, 0);
		sk_put_u64(p + 8, s->mods[i].gen);
	}
	return (long)len;
}

int sk_amsg_state_decode(const uint8_t *p, size_t len, struct sk_amsg_state *s)
{
	struct sk_rd r;
	unsigned n;

	if (len < SK_AMSG_STATE_HDR || len > SK_AMSG_STATE_MAX)
		return -EBADMSG;
	n = p[3];
	if (p[0] != SK_AMSG_VERSION || p[1] == 0 || n > SK_AMSG_MAX_MODS ||
	    len != SK_AMSG_STATE_HDR + SK_AMSG_STATE_MOD * (size_t)n)
		return -EBADMSG;
	sk_rd_init(&r, p, len);
	sk_rd_u8(&r);
	s->node_id = sk_rd_u8(&r);
	s->net = sk_rd_u8(&r);
	s->n_mods = sk_rd_u8(&r);
	s->incarnation = sk_rd_u64(&r);
	for (unsigned i = 0; i < n; i++) {
		struct sk_amsg_mod *m = &s->mods[i];

		m->id = sk_rd_u32(&r);
		m->state = sk_rd_u8(&r);
		m->flags = sk_rd_u8(&r);
		if (sk_rd_u16(&r) != 0 || m->state >= SK_ST__COUNT || (m->flags & ~SK_AMSG_F__ALL) ||
		    m->id == 0)
			return -EBADMSG;
		m->gen = sk_rd_u64(&r);
	}
	return r.err ? -EBADMSG : 0;
}

long sk_amsg_cmd_encode(enum sk_amsg_cmd cmd, uint32_t module, uint8_t *buf, size_t cap)
{
	if (cap < SK_AMSG_CMD_LEN)
		return -ENOSPC;
	if (cmd < 1 || cmd > SK_AMSG_CMD__MAX || !module)
		return -EINVAL;
	buf[0] = SK_AMSG_VERSION;
	buf[1] = (uint8_t)cmd;
	sk_put_u16(buf + 2, 0);
	sk_put_u32(buf + 4, module);
	return SK_AMSG_CMD_LEN;
}

int sk_amsg_cmd_decode(const uint8_t *p, size_t len, enum sk_amsg_cmd *cmd, uint32_t *module)
{
	if (len != SK_AMSG_CMD_LEN || p[0] != SK_AMSG_VERSION || p[1] < 1 ||
	    p[1] > SK_AMSG_CMD__MAX || sk_get_u16(p + 2) != 0 || sk_get_u32(p + 4) == 0)
		return -EBADMSG;
	*cmd = (enum sk_amsg_cmd)p[1];
	*module = sk_get_u32(p + 4);
	return 0;
}

long sk_amsg_ctl_encode(uint32_t id, const char *text, size_t n, uint8_t *buf, size_t cap)
{
	if (n < 1 || n > SK_AMSG_CTL_MAX)
		return -EINVAL;
	if (cap < 4 + n)
		return -ENOSPC;
	sk_put_u32(buf, id);
	memcpy(buf + 4, text, n);
	return (long)(4 + n);
}

int sk_amsg_ctl_decode(const uint8_t *p, size_t len, uint32_t *id, const char **text, size_t *n)
{
	if (len < 5 || len > 4 + SK_AMSG_CTL_MAX || memchr(p + 4, '\0', len - 4))
		return -EBADMSG;
	*id = sk_get_u32(p);
	*text = (const char *)p + 4;
	*n = len - 4;
	return 0;
}

long sk_amsg_restart_encode(const struct sk_amsg_restart *r, uint8_t *buf, size_t cap)
{
	if (cap < SK_AMSG_RESTART_LEN)
		return -ENOSPC;
	if (!r->node_id || !r->silent_ms || r->silent_ms > SK_AMSG_RESTART_MAX_MS)
		return -EINVAL;
	buf[0] = SK_AMSG_VERSION;
	buf[1] = r->node_id;
	buf[2] = r->net;
	buf[3] = 0;
	sk_put_u32(buf + 4, r->silent_ms);
	sk_put_u64(buf + 8, r->incarnation);
	return SK_AMSG_RESTART_LEN;
}

int sk_amsg_restart_decode(const uint8_t *p, size_t len, struct sk_amsg_restart *r)
{
	uint32_t ms;

	if (len != SK_AMSG_RESTART_LEN || p[0] != SK_AMSG_VERSION || p[1] == 0 || p[3] != 0)
		return -EBADMSG;
	ms = sk_get_u32(p + 4);
	if (ms == 0 || ms > SK_AMSG_RESTART_MAX_MS)
		return -EBADMSG;
	r->node_id = p[1];
	r->net = p[2];
	r->silent_ms = ms;
	r->incarnation = sk_get_u64(p + 8);
	return 0;
}
