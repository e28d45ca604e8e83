/* agent/member.c: membership: authenticated UDP heartbeats on every network, silence detection, carrier events. */
#include "agent.h"

#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "nl.h"

static const char *const rej_names[AGENT_REJ__COUNT] = {
	[AGENT_REJ_SHORT] = "short", [AGENT_REJ_MAC] = "mac", [AGENT_REJ_REPLAY] = "replay",
	[AGENT_REJ_FORMAT] = "format", [AGENT_REJ_SENDER] = "sender",
};

const char *agent_rej_name(enum agent_rej r);
const char *agent_rej_name(enum agent_rej r)
{
	return (unsigned)r < AGENT_REJ__COUNT ? rej_names[r] : "?";
}

struct agent_peer *agent_peer_by_name(struct agent *a, const char *name)
{
	for (unsigned i = 0; i < a->n_peers; i++)
		if (!strcmp(a->peers[i].node->name, name))
			return &a->peers[i];
	return NULL;
}

struct agent_peer *agent_peer_by_id(struct agent *a, unsigned id)
{
	for (unsigned i = 0; i < a->n_peers; i++)
		if (a->peers[i].node->id == id)
			return &a->peers[i];
	return NULL;
}

const struct sk_amsg_mod *agent_peer_mod(const struct agent_peer *p, uint32_t mod_id)
{
	if (!p || !p->alive || !p->have_state)
		return NULL;
	for (unsigned i = 0; i < p->st.n_mods; i++)
		if (p->st.mods[i].id == mod_id)
			return &p->st.mods[i];
	return NULL;
}

int agent_member_subscribe(struct agent *a, agent_member_cb cb, void *arg)
{
	if (a->n_subs >= AGENT_MAX_SUBS)
		return -ENOSPC;
	a->subs[a->n_subs].cb = cb;
	a->subs[a->n_subs].arg = arg;
	a->n_subs++;
	return 0;
}

bool agent_member_alive(const struct agent *a, uint8_t node_id)
{
	if (node_id == a->self->id)
		return true;
	for (unsigned i = 0; i < a->n_peers; i++)
		if (a->peers[i].node->id == node_id)
			return a->peers[i].alive;
	return false;
}

static void notify(struct agent *a, struct agent_peer *p)
{
	for (unsigned i = 0; i < a->n_subs; i++)
		a->subs[i].cb(a->subs[i].arg, a, p->node->id, p->alive);
}

void agent_state_fill(struct agent *a, struct sk_amsg_state *s)
{
	memset(s, 0, sizeof(*s));
	s->node_id = a->self->id;
	s->incarnation = a->incarnation;
	s->n_mods = a->n_mods;
	for (unsigned i = 0; i < a->n_mods; i++) {
		s->mods[i].id = a->mods[i]->conf.id;
		s->mods[i].state = (uint8_t)a->mods[i]->state;
		s->mods[i].flags = agent_mod_flags(a->mods[i]);
		s->mods[i].gen = a->mods[i]->gen;
	}
}

static void send_hb(struct agent *a, unsigned net)
{
	struct sk_amsg_state s;
	uint8_t pl[SK_AMSG_STATE_MAX], buf[SK_PROTO_HDR_LEN + SK_AMSG_STATE_MAX + SK_PROTO_MAC_LEN];
	long pn, n;

	if (!a->hb_open[net])
		return;
	agent_state_fill(a, &s);
	s.net = (uint8_t)net;
	pn = sk_amsg_state_encode(&s, pl, sizeof(pl));
	if (pn < 0)
		return;
	n = sk_dgram_seal(&a->dkey, buf, sizeof(buf), SK_MSG_HEARTBEAT, 0, ++a->hb_seq[net], pl,
			  (size_t)pn);
	if (n < 0)
		return;
	for (unsigned i = 0; i < a->n_peers; i++) {
		struct sockaddr_storage ss;
		uv_buf_t b = uv_buf_init((char *)buf, (unsigned)n);

		sk_conf_sockaddr(&a->peers[i].node->addr[net], a->cluster.hb_port, &ss);
		/* a full socket buffer or an unreachable network loses one heartbeat: that is
		 * what heartbeats are for, so no retry */
		uv_udp_try_send(&a->hb_sock[net], &b, 1, (struct sockaddr *)&ss);
	}
}

/*
 * How long a restarting agent asks its peers to wait: 5 heartbeat timeouts (2 s with the default
 * 400 ms), at least 1 s. A re-exec took 0.2-1 s at load 7-30 (ASan: +0.5 s); the cost is that a
 * node dying during its agent's restart is declared dead this late instead of one timeout.
 */
uint32_t agent_restart_hold_ms(const struct agent *a)
{
	uint64_t ms = 5ull * a->hb_timeout_ms;

	return ms < 1000 ? 1000 : ms > SK_AMSG_RESTART_MAX_MS ? SK_AMSG_RESTART_MAX_MS : (uint32_t)ms;
}

void agent_member_restarting(struct agent *a)
{
	/* twice on each network: one lost datagram would make the restart a death again */
	for (unsigned k = 0; k < 2 * a->cluster.n_networks; k++) {
		unsigned net = k % a->cluster.n_networks;
		struct sk_amsg_restart r = { .node_id = a->self->id, .net = (uint8_t)net,
					     .silent_ms = agent_restart_hold_ms(a),
					     .incarnation = a->incarnation };
		uint8_t pl[SK_AMSG_RESTART_LEN];
		uint8_t buf[SK_PROTO_HDR_LEN + SK_AMSG_RESTART_LEN + SK_PROTO_MAC_LEN];
		long pn, n;

		if (!a->hb_open[net])
			continue;
		pn = sk_amsg_restart_encode(&r, pl, sizeof(pl));
		if (pn < 0)
			continue;
		n = sk_dgram_seal(&a->dkey, buf, sizeof(buf), SK_MSG_AGENT_RESTARTING, 0,
				  ++a->hb_seq[net], pl, (size_t)pn);
		for (unsigned i = 0; n > 0 && i < a->n_peers; i++) {
			struct sockaddr_storage ss;
			uv_buf_t b = uv_buf_init((char *)buf, (unsigned)n);

			sk_conf_sockaddr(&a->peers[i].node->addr[net], a->cluster.hb_port, &ss);
			/* best effort, as heartbeats: a lost notice is a restart judged by
			 * heartbeats alone, as before */
			uv_udp_try_send(&a->hb_sock[net], &b, 1, (struct sockaddr *)&ss);
		}
	}
}

void agent_member_announce(struct agent *a)
{
	for (unsigned k = 0; k < a->cluster.n_networks; k++)
		send_hb(a, k);
	for (unsigned i = 0; i < a->n_peers; i++)
		agent_chan_send_state(a, &a->peers[i]);
}

static void on_hb_timer(uv_timer_t *t)
{
	struct agent *a = t->data;

	for (unsigned k = 0; k < a->cluster.n_networks; k++)
		send_hb(a, k);
}

static void reject(struct agent *a, enum agent_rej why, unsigned net, const struct sockaddr *from)
{
	char ip[64] = "?";

	a->hb_rejected[why]++;
	/* log the first few of each kind, then every 1000th: a flood must not flood the log */
	if (a->hb_rejected[why] <= 5 || a->hb_rejected[why] % 1000 == 0) {
		if (from && from->sa_family == AF_INET)
			uv_ip4_name((const struct sockaddr_in *)from, ip, sizeof(ip));
		else if (from && from->sa_family == AF_INET6)
			uv_ip6_name((const struct sockaddr_in6 *)from, ip, sizeof(ip));
		sk_warn("heartbeat refused on %s from %s: %s (%llu so far)", a->cluster.networks[net],
			ip, rej_names[why], (unsigned long long)a->hb_rejected[why]);
	}
}

static bool addr_is(const struct sk_conf_addr *ad, const struct sockaddr *sa)
{
	if (sa->sa_family != ad->family)
		return false;
	if (ad->family == AF_INET)
		return !memcmp(&((const struct sockaddr_in *)sa)->sin_addr, ad->ip, 4);
	return !memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr, ad->ip, 16);
}

void agent_peer_state_in(struct agent *a, struct agent_peer *p, const struct sk_amsg_state *s,
			 uint64_t rx_ms)
{
	bool changed = !p->have_state || p->st.n_mods != s->n_mods ||
		       memcmp(p->st.mods, s->mods, sizeof(s->mods[0]) * s->n_mods);

	if (p->have_state && p->incarnation && s->incarnation != p->incarnation)
		sk_info("node %s restarted (new incarnation)", p->node->name);
	p->incarnation = s->incarnation;
	p->st = *s;
	p->have_state = true;
	p->st_ms = agent_now_ms();
	p->st_rx_ms = rx_ms < p->st_ms ? rx_ms : p->st_ms;
	if (!changed)
		return;
	for (unsigned i = 0; i < a->n_mods; i++)
		if (a->mods[i]->peer == p || a->mods[i]->conf.kind == SK_MOD_FARM)
			agent_mod_kick(a->mods[i]); /* a farm module hears every node */
}

static void peer_alive(struct agent *a, struct agent_peer *p, unsigned net)
{
	if (!p->alive) {
		p->alive = true;
		p->ever_seen = true;
		sk_info("node %s alive (heard on %s)", p->node->name, a->cluster.networks[net]);
		notify(a, p);
	}
	if (!p->net_ok[net]) {
		p->net_ok[net] = true;
		if (a->cluster.n_networks > 1)
			sk_info("node %s heard on %s again", p->node->name, a->cluster.networks[net]);
	}
}

uint64_t agent_rx_bound_ms(const struct agent *a, uint64_t now)
{
	if (a->last_check_ms && now - a->last_check_ms > a->hb_timeout_ms / 2)
		return a->last_check_ms;
	return now;
}

/*
 * When the kernel received the datagram just read (monotonic ms). A heartbeat read after this
 * loop was frozen or starved was received long ago: the peer's word in it (SECOND, which lets
 * the primary's fence run on) dates from then, not from now; meanwhile the peer may have
 * declared us dead and taken over. libuv reads one datagram per recvmsg and calls back before
 * the next, so SIOCGSTAMP names this datagram's stamp (enabled at open, agent_member_start).
 * The stamp is on the realtime clock: its age is what counts. Without a stamp: the last turn
 * of the loop before a stall (agent_rx_bound_ms).
 */
static uint64_t hb_rx_ms(struct agent *a, uv_udp_t *h, uint64_t now)
{
	struct timeval tv;
	struct timespec rt;
	uv_os_fd_t fd;
	int64_t age_ms;

	static bool warned;

	if (uv_fileno((const uv_handle_t *)h, &fd) < 0 || ioctl(fd, SIOCGSTAMP, &tv) < 0) {
		if (!warned) {
			warned = true;
			sk_warn("no receive stamps on heartbeats (%s): a state read after a stall "
				"counts from the loop's last turn", strerror(errno));
		}
		return agent_rx_bound_ms(a, now);
	}
	clock_gettime(CLOCK_REALTIME, &rt);
	age_ms = ((int64_t)rt.tv_sec - (int64_t)tv.tv_sec) * 1000 +
		 ((int64_t)rt.tv_nsec / 1000000 - (int64_t)tv.tv_usec / 1000);
	if (age_ms <= 0) /* the realtime clock stepped back: no better bound than the loop's */
		return agent_rx_bound_ms(a, now);
	return (uint64_t)age_ms >= now ? 0 : now - (uint64_t)age_ms;
}

/* A peer's agent restarts: hold the verdict on it (bounded by our own view of a restart). */
static void restart_in(struct agent *a, struct agent_peer *p, unsigned net,
		       const struct sk_frame *f, const struct sockaddr *from)
{
	struct sk_amsg_restart r;
	uint32_t ms, cap = agent_restart_hold_ms(a);
	uint64_t now = agent_now_ms();

	if (f->module != 0 || f->flags != 0 || sk_amsg_restart_decode(f->payload, f->len, &r) < 0 ||
	    r.node_id != p->node->id || r.net != net || r.incarnation != p->incarnation ||
	    !p->alive) {
		/* only the agent we know, alive, may announce its own restart */
		reject(a, AGENT_REJ_FORMAT, net, from);
		return;
	}
	/* one wait per incarnation (the second copy, or a key holder repeating notices, would
	 * otherwise keep a node that stopped answering alive for ever) */
	if (r.incarnation == p->hold_incarnation)
		return;
	ms = r.silent_ms < cap ? r.silent_ms : cap;
	p->hold_until_ms = now + ms;
	p->hold_incarnation = r.incarnation;
	sk_info("node %s restarts its agent: not judged dead for up to %u ms (its skfused and "
		"filter keep serving meanwhile)", p->node->name, ms);
}

static void on_hb_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
		       unsigned flags)
{
	struct agent *a = h->loop->data;
	unsigned net = (unsigned)(uintptr_t)h->data;
	const uint8_t *b = (const uint8_t *)buf->base;
	struct agent_peer *p;
	struct sk_amsg_state s;
	struct sk_frame f;
	enum sk_reject why;
	uint64_t scratch = 0;

	if (nread <= 0 || !from)
		return;
	if (flags & UV_UDP_PARTIAL) {
		reject(a, AGENT_REJ_FORMAT, net, from);
		return;
	}
	if ((size_t)nread < SK_PROTO_HDR_LEN + SK_AMSG_STATE_HDR + SK_PROTO_MAC_LEN) {
		reject(a, AGENT_REJ_SHORT, net, from);
		return;
	}
	/* the sender id is read before authentication only to pick its replay window;
	 * it is checked again against the authenticated payload below */
	p = agent_peer_by_id(a, b[SK_PROTO_HDR_LEN + 1]);
	if (!p || !addr_is(&p->node->addr[net], from)) {
		if (sk_dgram_open(&a->dkey, b, (size_t)nread, &scratch, &f, &why) < 0)
			reject(a, why == SK_REJ_MAC ? AGENT_REJ_MAC : AGENT_REJ_FORMAT, net, from);
		else
			reject(a, AGENT_REJ_SENDER, net, from);
		return;
	}
	if (sk_dgram_open(&a->dkey, b, (size_t)nread, &p->last_seq[net], &f, &why) < 0) {
		reject(a, why == SK_REJ_MAC ? AGENT_REJ_MAC :
			  why == SK_REJ_REPLAY ? AGENT_REJ_REPLAY : AGENT_REJ_FORMAT, net, from);
		return;
	}
	if (f.type == SK_MSG_AGENT_RESTARTING) {
		restart_in(a, p, net, &f, from);
		return;
	}
	if (f.type != SK_MSG_HEARTBEAT || f.module != 0 || f.flags != 0 ||
	    sk_amsg_state_decode(f.payload, f.len, &s) < 0 || s.net != net ||
	    s.node_id != p->node->id) {
		reject(a, AGENT_REJ_FORMAT, net, from);
		return;
	}
	a->hb_ok++;
	p->hb_in++;
	if (p->hold_until_ms && s.incarnation != p->hold_incarnation) {
		p->hold_until_ms = 0; /* its new agent speaks: judged by heartbeats again */
		sk_info("node %s: its restarted agent is heard", p->node->name);
	}
	p->last_ms[net] = agent_now_ms();
	peer_alive(a, p, net);
	agent_peer_state_in(a, p, &s, hb_rx_ms(a, h, p->last_ms[net]));
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char slab[2048];

	(void)h;
	(void)suggested;
	buf->base = slab;
	buf->len = sizeof(slab);
}

/* "lan" or "lan and backup" for the networks set in mask */
static void nets_words(struct agent *a, unsigned mask, char *out, size_t cap)
{
	size_t n = 0;
	unsigned cnt = 0, total = (unsigned)__builtin_popcount(mask);

	out[0] = '\0';
	for (unsigned k = 0; k < a->cluster.n_networks && n < cap; k++) {
		if (!(mask & (1u << k)))
			continue;
		cnt++;
		n += (size_t)snprintf(out + n, cap - n, "%s%s",
				      cnt == 1 ? "" : cnt == total ? " and " : ", ",
				      a->cluster.networks[k]);
	}
}

static void on_check(uv_timer_t *t)
{
	struct agent *a = t->data;
	uint64_t now = agent_now_ms();
	bool stalled = a->last_check_ms && now - a->last_check_ms > a->hb_timeout_ms / 2;

	if (stalled)
		sk_warn("the agent's loop was stalled for %llu ms (frozen, or starved): peers are not "
			"judged on that gap", (unsigned long long)(now - a->last_check_ms));
	a->last_check_ms = now;
	for (unsigned i = 0; i < a->n_peers; i++) {
		struct agent_peer *p = &a->peers[i];
		unsigned ok = 0, lost = 0;
		uint64_t newest = 0;

		if (!p->alive)
			continue;
		if (p->hold_until_ms) {
			if (now < p->hold_until_ms)
				continue; /* its agent restarts (restart_in) */
			sk_warn("node %s: its agent announced a restart and was not heard within the "
				"wait", p->node->name);
			p->hold_until_ms = 0;
		}
		for (unsigned k = 0; k < a->cluster.n_networks; k++) {
			/* our own silence is not the peer's: restart its clock after a stall */
			if (stalled && p->last_ms[k])
				p->last_ms[k] = now;
			if (p->last_ms[k] > newest)
				newest = p->last_ms[k];
			if (p->last_ms[k] && now - p->last_ms[k] <= a->hb_timeout_ms) {
				ok |= 1u << k;
			} else {
				lost |= 1u << k;
			}
		}
		if (ok) {
			/* reported, not failed: the networks still heard keep the node alive */
			for (unsigned k = 0; k < a->cluster.n_networks; k++)
				if ((lost & (1u << k)) && p->net_ok[k]) {
					p->net_ok[k] = false;
					sk_warn("node %s silent on %s for %llu ms but heard on other "
						"networks: reported, not failed", p->node->name,
						a->cluster.networks[k],
						(unsigned long long)(now - p->last_ms[k]));
				}
			continue;
		}
		p->alive = false;
		for (unsigned k = 0; k < a->cluster.n_networks; k++)
			p->net_ok[k] = false;
		p->died_ms = now;
		p->died_last_seen_ms = newest;
		{
			char nets[96];

			nets_words(a, lost, nets, sizeof(nets));
			snprintf(p->died_words, sizeof(p->died_words), "%s silent on %s for %llu ms",
				 p->node->name, nets, (unsigned long long)(now - newest));
		}
		sk_warn("node %s dead: %s", p->node->name, p->died_words);
		agent_chan_close(p);
		notify(a, p);
		for (unsigned m = 0; m < a->n_mods; m++)
			if (a->mods[m]->peer == p)
				agent_mod_peer_dead(a->mods[m]);
	}
}

static void on_link_cb(void *arg, const char *ifname, bool carrier)
{
	struct agent *a = arg;

	for (unsigned i = 0; i < a->n_mods; i++) {
		struct agent_mod *m = a->mods[i];

		if (m->conf.has_vip && !strcmp(m->conf.vip.ifname, ifname) && m->carrier != carrier)
			agent_mod_carrier(m, carrier);
	}
}

static void on_link(uv_poll_t *h, int status, int events)
{
	struct agent *a = h->data;

	(void)events;
	if (status < 0)
		return;
	/* bounded per call by the library; the poll fires again while data is pending */
	sk_nl_link_watch_read(a->link_fd, on_link_cb, a);
}

int agent_member_start(struct agent *a)
{
	int rc;

	a->loop->data = a;
	for (unsigned k = 0; k < a->cluster.n_networks; k++) {
		struct sockaddr_storage ss;

		sk_conf_sockaddr(&a->self->addr[k], a->cluster.hb_port, &ss);
		uv_udp_init(a->loop, &a->hb_sock[k]);
		a->hb_sock[k].data = (void *)(uintptr_t)k;
		rc = uv_udp_bind(&a->hb_sock[k], (struct sockaddr *)&ss, UV_UDP_REUSEADDR);
		if (rc < 0) {
			sk_err("heartbeat socket on %s (%s port %u): %s", a->cluster.networks[k],
			       a->self->addr[k].text, a->cluster.hb_port, uv_strerror(rc));
			return rc;
		}
		a->hb_open[k] = true;
		{
			/* the first SIOCGSTAMP turns the socket's receive stamps on (it answers ENOENT:
			 * nothing received yet); hb_rx_ms reads them */
			struct timeval tv;
			uv_os_fd_t fd;

			if (uv_fileno((const uv_handle_t *)&a->hb_sock[k], &fd) == 0)
				(void)ioctl(fd, SIOCGSTAMP, &tv);
		}
		/* seq starts at the wall clock in us so a restarted agent goes on upward */
		a->hb_seq[k] = agent_wall_ms() * 1000;
		uv_udp_recv_start(&a->hb_sock[k], on_alloc, on_hb_recv);
	}
	uv_timer_init(a->loop, &a->hb_timer);
	uv_timer_init(a->loop, &a->check_timer);
	a->hb_timer.data = a->check_timer.data = a;
	uv_timer_start(&a->hb_timer, on_hb_timer, 0, a->hb_interval_ms);
	/* checking 4 times per interval keeps detection within timeout + interval/4 */
	uv_timer_start(&a->check_timer, on_check, a->hb_interval_ms / 4 ?: 1,
		       a->hb_interval_ms / 4 ?: 1);

	a->link_fd = sk_nl_link_watch_open();
	if (a->link_fd < 0) {
		sk_warn("no netlink link events (%s): carrier loss is seen by heartbeats only",
			strerror(-a->link_fd));
	} else {
		uv_poll_init(a->loop, &a->link_poll, a->link_fd);
		a->link_poll.data = a;
		uv_poll_start(&a->link_poll, UV_READABLE, on_link);
	}
	return 0;
}

void agent_member_stop(struct agent *a)
{
	for (unsigned k = 0; k < a->cluster.n_networks; k++)
		if (a->hb_open[k])
			agent_close((uv_handle_t *)&a->hb_sock[k]);
	agent_close((uv_handle_t *)&a->hb_timer);
	agent_close((uv_handle_t *)&a->check_timer);
	if (a->link_fd >= 0) {
		agent_close((uv_handle_t *)&a->link_poll);
		close(a->link_fd);
		a->link_fd = -1;
	}
}
