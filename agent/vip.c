/* agent/vip.c: the mirror's virtual IP: added by rtnetlink on the primary and announced at 0, 0.5, 1, 2, 5 s; removed elsewhere. */
#include "agent.h"

#include <errno.h>
#include <string.h>

#include "announce.h"
#include "log.h"
#include "nl.h"

/* Switches drop or rate-limit a single announcement: repeat on this schedule (ms after the add). */
static const uint64_t announce_at_ms[] = { 0, 500, 1000, 2000, 5000 };
#define N_ANNOUNCE (sizeof(announce_at_ms) / sizeof(announce_at_ms[0]))

static void announce_once(struct agent_mod *m)
{
	int rc = sk_announce(m->conf.vip.ifname, &m->conf.vip.addr);

	if (rc < 0 && m->announce_i == 0)
		sk_warn("module %s: cannot announce %s on %s: %s", m->conf.name,
			m->conf.vip.addr.text, m->conf.vip.ifname, strerror(-rc));
}

static void on_announce(uv_timer_t *t)
{
	struct agent_mod *m = t->data;

	if (!m->vip_on)
		return;
	announce_once(m);
	if (++m->announce_i < (int)N_ANNOUNCE)
		uv_timer_start(&m->announce, on_announce,
			       announce_at_ms[m->announce_i] - announce_at_ms[m->announce_i - 1], 0);
}

int agent_vip_add(struct agent_mod *m)
{
	int rc;

	if (!m->conf.has_vip)
		return 0;
	rc = sk_nl_addr_add(m->conf.vip.ifname, &m->conf.vip.addr, m->conf.vip.prefix);
	if (rc < 0 && rc != -EEXIST) {
		agent_mod_log(m, "cannot add the VIP %s/%u on %s: %s", m->conf.vip.addr.text,
			      m->conf.vip.prefix, m->conf.vip.ifname, strerror(-rc));
		return rc;
	}
	m->vip_on = true;
	m->announce_i = 0;
	announce_once(m);
	m->announce_i = 1;
	uv_timer_start(&m->announce, on_announce, announce_at_ms[1], 0);
	agent_mod_log(m, "VIP %s/%u added on %s and announced", m->conf.vip.addr.text,
		      m->conf.vip.prefix, m->conf.vip.ifname);
	return 0;
}

int agent_vip_del(struct agent_mod *m)
{
	int rc;

	if (!m->conf.has_vip)
		return 0;
	uv_timer_stop(&m->announce);
	m->vip_on = false;
	rc = sk_nl_addr_del(m->conf.vip.ifname, &m->conf.vip.addr, m->conf.vip.prefix);
	if (rc < 0 && rc != -EADDRNOTAVAIL && rc != -ENODEV) {
		agent_mod_log(m, "cannot remove the VIP %s from %s: %s", m->conf.vip.addr.text,
			      m->conf.vip.ifname, strerror(-rc));
		return rc;
	}
	return 0;
}

bool agent_vip_held(struct agent_mod *m)
{
	return m->conf.has_vip && sk_nl_addr_has(m->conf.vip.ifname, &m->conf.vip.addr) > 0;
}
