/* agent/witness.c: split brain: ping witnesses, the lease client feeding skfused's fence, and skagentd --witness. */
#include "agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lease.h"
#include "log.h"
#include "util.h"

/*
 * Rules (docs/agent.md "Witnesses" says the same for operators):
 *  - A node whose peer is dead may be (or become) primary only if it reaches a witness: with ping
 *    witnesses, one of them answered an ICMP echo within the heartbeat timeout; with the lease
 *    witness, it holds the module's lease. Otherwise a primary stops serving (WAIT) and a
 *    secondary waits (WAIT) until the witness says yes or the peer is back.
 *  - The lease is asked for while the module is primary here (renewed every lease_ms / 4) or
 *    while this node wants to take over. Its end on our clock is the request's send time +
 *    the granted ms, never later than its end on the witness's clock.
 *  - skfused's fence gets max(lease end, peer end): peer end is the arrival on this host (the
 *    socket's receive stamp, not the moment the loop read it) of the peer's last state saying
 *    SECOND (not busy) + the heartbeat timeout. So with the witness down and the
 *    peer fine nothing changes. To keep that safe, a secondary takes over only timeout + margin
 *    after it last announced SECOND (the old primary may still extend its fence on it until
 *    then), and only while holding the lease.
 *  - Why the heartbeat timeout and not lease_ms: the peer's word is worth no more than the
 *    primary's own view of the peer, which ends at that timeout (it then counts the peer dead
 *    and keeps serving only on the lease). With lease_ms the secondary's wait started only when
 *    it detected the death, so a failover took timeout + lease_ms + margin; now it takes about
 *    max(lease_ms - renewal age, 2 x timeout) + margin.
 */

#define PING_ID 0x5357 /* ICMP echo id (xor the pid): our replies among other pingers' */
#define WANT_MS 1000   /* a takeover keeps asking for the lease this long after its last try */
/* A primary whose lease ended steps down this long after it: skfused's own fence answers the
 * operations in flight first (EROFS), before the agent kills it */
#define FENCE_FIRST_MS 150
/* a takeover asks again this long after the moment the witness named as the lease's end there
 * (its answer's valid_ms): the request then arrives after it */
#define RETRY_AFTER_MS 5

struct wmod {
	struct agent_mod *m;
	uint64_t held_until_ms; /* our lease ends (local clock), 0 = not held */
	uint64_t epoch;
	uint8_t holder;          /* last holder the witness named */
	uint8_t last_result;
	uint64_t nonce[4], nonce_ms[4]; /* recent requests: nonce and send time */
	unsigned nonce_i;
	uint64_t asked_ms;       /* last request sent */
	uint64_t want_ms;        /* a takeover asked for the lease at this time */
	uint64_t vouch_ms;       /* last time we announced SECOND, not busy */
	/* a takeover refused (held, grace): the lease frees at the witness at quiet_until_ms; no
	 * request before, then one at once (retry timer): the wait is the lease's, not rounded up
	 * to the tick. The timer also ends the wait on our last SECOND (agent_witness_allow). */
	uint64_t quiet_until_ms;
	uv_timer_t retry;
	bool retry_init;
	bool takeover;           /* the gate refused a takeover; re-evaluate on witness news */
	uint64_t force_until_ms; /* skctl prim --force: requests carry FORCE until then */
	bool released;
	/* skfused fence feed */
	uv_pipe_t *pipe;
	char fence_req[128];
	uv_write_t wr;
	uint64_t pushed_until;
};

static struct {
	struct agent *a;
	bool lease, ping;
	const struct sk_conf_node *wnode;
	struct sk_key lkey;
	uint32_t lease_ms, margin_ms;
	uint32_t vouch_len_ms; /* how long the peer's SECOND extends the fence: the heartbeat timeout */
	uv_udp_t sock[SK_CONF_MAX_NETWORKS];
	bool sock_open[SK_CONF_MAX_NETWORKS];
	uint64_t seq, last_reply_seq, nonce;
	uv_timer_t tick;
	uint64_t last_renew_ms;
	uint64_t lease_ok_ms; /* last reply of the witness */
	bool lease_warned;
	/* ping */
	int icmp_fd;
	uv_poll_t icmp_poll;
	uint16_t ping_seq;
	uint64_t ping_ok_ms[SK_CONF_MAX_PING];
	bool ping_reach;
	uint64_t refused; /* replies refused (MAC, replay, format, nonce) */
	unsigned n;
	struct wmod w[AGENT_MAX_MODS];
} W;

static struct wmod *wmod_of(struct agent_mod *m)
{
	for (unsigned i = 0; i < W.n; i++)
		if (W.w[i].m == m)
			return &W.w[i];
	return NULL;
}

static bool is_primary(struct agent_mod *m);

/* no request now: the witness said when the lease frees there, and the peer, dead, cannot release
 * it sooner (a live peer stepping down releases it: then the tick asks as before) */
static bool quiet(struct wmod *w, uint64_t now)
{
	return now < w->quiet_until_ms && !w->m->peer->alive && !is_primary(w->m);
}

static void kick_all(void)
{
	for (unsigned i = 0; i < W.n; i++)
		agent_mod_kick(W.w[i].m);
}

/* ---- ping witnesses ---- */

/* 1: a ping witness answered after the peer was declared dead (this side is not the cut off
 * one), 0: none yet but one may still come, -1: none within a heartbeat timeout */
static int ping_fresh(struct agent_mod *m, uint64_t now)
{
	uint64_t died = m->peer->alive ? 0 : m->peer->died_ms;

	for (unsigned i = 0; i < W.a->cluster.n_ping; i++)
		if (W.ping_ok_ms[i] > died && now - W.ping_ok_ms[i] <= W.a->hb_timeout_ms)
			return 1;
	return now - died < W.a->hb_timeout_ms ? 0 : -1;
}

static bool ping_reachable(uint64_t now)
{
	uint64_t win = W.a->hb_timeout_ms;

	for (unsigned i = 0; i < W.a->cluster.n_ping; i++)
		if (W.ping_ok_ms[i] && now - W.ping_ok_ms[i] <= win)
			return true;
	return false;
}

static void ping_update(uint64_t now)
{
	bool r = ping_reachable(now);

	if (r == W.ping_reach)
		return;
	W.ping_reach = r;
	if (r)
		sk_info("ping witness reachable again");
	else
		sk_warn("no ping witness answers (%u configured): if the peer is lost now, this node "
			"will not be primary", W.a->cluster.n_ping);
	kick_all();
}

static void on_icmp(uv_poll_t *h, int status, int events)
{
	uint8_t buf[1500];
	struct sockaddr_in from;
	uint64_t now = agent_now_ms();

	(void)h;
	(void)status;
	(void)events;
	/* bounded: at most 32 datagrams per wakeup, each checked for length, source and id */
	for (int i = 0; i < 32; i++) {
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(W.icmp_fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from,
				     &fl);
		struct icmphdr ih;
		size_t ihl;

		if (n < 0)
			break;
		if (n < 20 || (buf[0] >> 4) != 4)
			continue;
		ihl = (size_t)(buf[0] & 15) * 4;
		if (ihl < 20 || (size_t)n < ihl + sizeof(ih))
			continue;
		memcpy(&ih, buf + ihl, sizeof(ih));
		if (ih.type != ICMP_ECHOREPLY || ih.un.echo.id != htons((uint16_t)(getpid() ^ PING_ID)))
			continue;
		for (unsigned k = 0; k < W.a->cluster.n_ping; k++)
			if (!memcmp(&from.sin_addr, W.a->cluster.ping[k].ip, 4))
				W.ping_ok_ms[k] = now;
	}
	ping_update(now);
}

static void ping_send(void)
{
	struct icmphdr ih = { .type = ICMP_ECHO };

	ih.un.echo.id = htons((uint16_t)(getpid() ^ PING_ID));
	ih.un.echo.sequence = htons(++W.ping_seq);
	ih.checksum = sk_inet_csum(&ih, sizeof(ih));
	for (unsigned k = 0; k < W.a->cluster.n_ping; k++) {
		struct sockaddr_in to = { .sin_family = AF_INET };

		memcpy(&to.sin_addr, W.a->cluster.ping[k].ip, 4);
		/* a failed send (no route) is a missed answer, nothing more */
		(void)sendto(W.icmp_fd, &ih, sizeof(ih), MSG_DONTWAIT, (struct sockaddr *)&to, sizeof(to));
	}
}

/* ---- lease client ---- */

static bool is_primary(struct agent_mod *m)
{
	return sk_state_is_primary(m->state) ||
	       (m->plan.active && sk_state_is_primary(m->plan.to));
}

static bool held(struct wmod *w, uint64_t now)
{
	return w->held_until_ms > now;
}

static void lease_send(struct wmod *w, uint8_t op, uint64_t now)
{
	struct sk_lease_req q = { .node = W.a->self->id, .op = op, .module = w->m->conf.id };

	/* the witness keeps the last holder's word that its peer is behind (it went on alone),
	 * so that peer does not take over with an older copy when the holder dies */
	if (is_primary(w->m) && w->m->peer_out)
		q.flags |= SK_LEASE_F_PEER_OUT;
	if (now < w->force_until_ms)
		q.flags |= SK_LEASE_F_FORCE;
	uint8_t pl[SK_LEASE_REQ_LEN], buf[SK_PROTO_HDR_LEN + SK_LEASE_REQ_LEN + SK_PROTO_MAC_LEN];
	long pn, n;

	q.nonce = ++W.nonce;
	w->nonce_i = (w->nonce_i + 1) % 4;
	w->nonce[w->nonce_i] = q.nonce;
	w->nonce_ms[w->nonce_i] = now;
	w->asked_ms = now;
	pn = sk_lease_req_encode(&q, pl, sizeof(pl));
	if (pn < 0)
		return;
	/* the same request on every network: the witness answers the first, refuses the rest
	 * as replays only if they arrive out of order (harmless) */
	for (unsigned k = 0; k < W.a->cluster.n_networks; k++) {
		struct sockaddr_storage ss;
		uv_buf_t b;

		if (!W.sock_open[k])
			continue;
		n = sk_dgram_seal(&W.lkey, buf, sizeof(buf), SK_MSG_LEASE_REQ, w->m->conf.id, ++W.seq,
				  pl, (size_t)pn);
		if (n < 0)
			return;
		b = uv_buf_init((char *)buf, (unsigned)n);
		sk_conf_sockaddr(&W.wnode->addr[k], W.a->cluster.witness_port, &ss);
		uv_udp_try_send(&W.sock[k], &b, 1, (struct sockaddr *)&ss);
	}
}

static void reply_refused(const char *why)
{
	W.refused++;
	if (W.refused <= 5 || W.refused % 1000 == 0)
		sk_warn("lease reply refused: %s (%llu so far)", why, (unsigned long long)W.refused);
}

static void on_retry(uv_timer_t *t)
{
	struct wmod *w = t->data;
	uint64_t now = agent_now_ms();

	w->quiet_until_ms = 0;
	if (!held(w, now) && !is_primary(w->m) && w->want_ms && now - w->want_ms < WANT_MS)
		lease_send(w, SK_LEASE_ACQUIRE, now);
	agent_mod_kick(w->m);
}

static void on_reply(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
		     unsigned flags)
{
	unsigned net = (unsigned)(uintptr_t)h->data;
	struct sk_lease_reply r;
	struct sk_frame f;
	enum sk_reject why;
	struct wmod *w = NULL;
	uint64_t now = agent_now_ms(), sent = 0;

	if (nread <= 0 || !from)
		return;
	if ((flags & UV_UDP_PARTIAL) || from->sa_family != W.wnode->addr[net].family ||
	    (from->sa_family == AF_INET &&
	     memcmp(&((const struct sockaddr_in *)from)->sin_addr, W.wnode->addr[net].ip, 4)) ||
	    (from->sa_family == AF_INET6 &&
	     memcmp(&((const struct sockaddr_in6 *)from)->sin6_addr, W.wnode->addr[net].ip, 16)))
		return reply_refused("not from the witness's address");
	if (sk_dgram_open(&W.lkey, (const uint8_t *)buf->base, (size_t)nread, &W.last_reply_seq, &f,
			  &why) < 0)
		return reply_refused(sk_reject_str(why));
	if (f.type != SK_MSG_LEASE_REPLY || sk_lease_reply_decode(f.payload, f.len, &r) < 0 ||
	    r.witness != W.wnode->id || r.module != f.module)
		return reply_refused("malformed reply");
	for (unsigned i = 0; i < W.n && !w; i++)
		if (W.w[i].m->conf.id == r.module)
			w = &W.w[i];
	for (unsigned i = 0; w && i < 4; i++)
		if (w->nonce[i] == r.nonce)
			sent = w->nonce_ms[i];
	if (!w || !sent)
		return reply_refused("answers no request of ours");
	W.lease_ok_ms = now;
	if (W.lease_warned) {
		W.lease_warned = false;
		sk_info("lease witness %s answers again", W.wnode->name);
	}
	w->last_result = r.result;
	w->holder = r.holder;
	if (r.result == SK_LEASE_GRANTED && r.holder == W.a->self->id) {
		bool was = held(w, now);
		uint64_t until = sent + r.valid_ms;

		if (until > w->held_until_ms)
			w->held_until_ms = until;
		if (r.epoch != w->epoch || !was) {
			agent_mod_log(w->m, "lease of %s held until +%llu ms (epoch %llu)",
				      W.wnode->name, (unsigned long long)(w->held_until_ms - now),
				      (unsigned long long)r.epoch);
			w->epoch = r.epoch;
			agent_mod_kick(w->m);
		}
		return;
	}
	if (r.result == SK_LEASE_RELEASED)
		return;
	if ((r.result == SK_LEASE_HELD || r.result == SK_LEASE_GRACE) && !is_primary(w->m) &&
	    w->want_ms && now - w->want_ms < WANT_MS) {
		w->quiet_until_ms = now + r.valid_ms + RETRY_AFTER_MS;
		uv_timer_start(&w->retry, on_retry, r.valid_ms + RETRY_AFTER_MS, 0);
	}
	/* the witness does not count us as the holder now: whatever we thought, we hold nothing */
	if (w->held_until_ms) {
		agent_mod_log(w->m, "lease lost: witness says %s", r.result == SK_LEASE_HELD ?
			      "held by another node" : r.result == SK_LEASE_GRACE ? "starting (grace)" :
			      r.result == SK_LEASE_BEHIND ? "the last holder went on alone" :
			      "table full");
		w->held_until_ms = 0;
		agent_mod_kick(w->m);
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	static char slab[512];

	(void)h;
	(void)suggested;
	b->base = slab;
	b->len = sizeof(slab);
}

/* ---- the fence of skfused ---- */

static uint64_t fence_until(struct wmod *w, uint64_t now)
{
	struct agent_mod *m = w->m;
	const struct sk_amsg_mod *pm = agent_peer_mod(m->peer, m->conf.id);
	uint64_t d = held(w, now) ? w->held_until_ms : 0;

	/* from when the peer's word reached this host, not when this loop read it: after a stall
	 * the queued heartbeats still say SECOND although the peer may have taken over since */
	if (m->peer->alive && pm && pm->state == SK_ST_SECOND && !(pm->flags & SK_AMSG_F_BUSY) &&
	    m->peer->st_rx_ms + W.vouch_len_ms > d)
		d = m->peer->st_rx_ms + W.vouch_len_ms;
	return d;
}

static void on_pipe_closed(uv_handle_t *h)
{
	free(h);
}

static void pipe_done(struct wmod *w)
{
	if (w->pipe) {
		uv_close((uv_handle_t *)w->pipe, on_pipe_closed);
		w->pipe = NULL;
	}
}

static void on_fence_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct wmod *w = s->data;

	free(b->base);
	(void)n;
	pipe_done(w); /* one answer (or an error): done either way */
}

static void fence_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	(void)h;
	(void)s;
	b->base = malloc(1024);
	b->len = b->base ? 1024 : 0;
}

static void on_fence_written(uv_write_t *wr, int status)
{
	struct wmod *w = wr->data;

	if (!w->pipe)
		return;
	if (status < 0 || uv_read_start((uv_stream_t *)w->pipe, fence_alloc, on_fence_read) < 0)
		pipe_done(w);
}

static void on_fence_connect(uv_connect_t *c, int status)
{
	struct wmod *w = c->data;
	uv_buf_t b = uv_buf_init(w->fence_req, (unsigned)strlen(w->fence_req));

	free(c);
	if (!w->pipe)
		return;
	w->wr.data = w;
	if (status < 0 || uv_write(&w->wr, (uv_stream_t *)w->pipe, &b, 1, on_fence_written) < 0)
		pipe_done(w);
}

static void fence_push(struct wmod *w, uint64_t now)
{
	struct agent_mod *m = w->m;
	uint64_t d = fence_until(w, now);
	char name[64], val[32];
	uv_connect_t *c;

	/* the next skfused started inherits the deadline (fence.c reads it at start) */
	snprintf(name, sizeof(name), "SKFUSED_LEASE_UNTIL_MS_%u", m->conf.id);
	snprintf(val, sizeof(val), "%llu", (unsigned long long)d);
	setenv(name, val, 1);
	if (w->pipe || !m->fused.running || !m->fused.ready || m->fused.role != AGENT_ROLE_PRIMARY)
		return;
	snprintf(w->fence_req, sizeof(w->fence_req), "{\"cmd\":\"lease\",\"valid_ms\":%llu,"
		 "\"at_ms\":%llu}\n", (unsigned long long)(d > now ? (d - now > SK_LEASE_VALID_MAX ?
		 SK_LEASE_VALID_MAX : d - now) : 0), (unsigned long long)now);
	w->pipe = malloc(sizeof(*w->pipe));
	c = malloc(sizeof(*c));
	if (!w->pipe || !c) {
		free(w->pipe);
		free(c);
		w->pipe = NULL;
		return;
	}
	uv_pipe_init(W.a->loop, w->pipe, 0);
	w->pipe->data = w;
	c->data = w;
	uv_pipe_connect(c, w->pipe, m->fused_ctl, on_fence_connect);
	w->pushed_until = d;
}

/* ---- the loop's tick ---- */

static void on_tick(uv_timer_t *t)
{
	uint64_t now = agent_now_ms();
	bool renew = now - W.last_renew_ms >= W.lease_ms / 4;

	(void)t;
	if (W.ping) {
		ping_send();
		ping_update(now);
	}
	if (!W.lease)
		return;
	if (renew)
		W.last_renew_ms = now;
	if (W.lease_ok_ms && now - W.lease_ok_ms > W.lease_ms && !W.lease_warned) {
		W.lease_warned = true;
		sk_warn("lease witness %s silent for %llu ms: a primary keeps serving while its peer "
			"is SECOND, but if the peer is lost now no node will serve", W.wnode->name,
			(unsigned long long)(now - W.lease_ok_ms));
	}
	for (unsigned i = 0; i < W.n; i++) {
		struct wmod *w = &W.w[i];
		struct agent_mod *m = w->m;
		bool want = (is_primary(m) && !m->a->stopping) || (w->want_ms && now - w->want_ms < WANT_MS);

		if (m->state == SK_ST_SECOND && !m->plan.active)
			w->vouch_ms = now;
		if (w->takeover && m->peer->alive)
			w->takeover = false;
		if (want && (renew || now - w->asked_ms >= W.lease_ms / 4) && !quiet(w, now)) {
			w->released = false;
			lease_send(w, SK_LEASE_ACQUIRE, now);
		} else if (!want && !w->released && !is_primary(m) && w->held_until_ms) {
			/* we stepped down: let the other node have it without waiting for the end */
			w->released = true;
			w->held_until_ms = 0;
			lease_send(w, SK_LEASE_RELEASE, now);
		}
		if (w->held_until_ms && now >= w->held_until_ms + FENCE_FIRST_MS) {
			w->held_until_ms = 0;
			agent_mod_log(m, "lease of %s expired (not renewed in time)", W.wnode->name);
			agent_mod_kick(m);
		}
		fence_push(w, now);
		if (w->takeover)
			agent_mod_kick(m);
	}
}

/* ---- the gate module.c asks ---- */

bool agent_witness_allow(struct agent_mod *m, char *why, size_t cap)
{
	struct wmod *w = wmod_of(m);
	uint64_t now = agent_now_ms();
	bool prim = sk_state_is_primary(m->state);

	if (!W.ping && !W.lease)
		return true;
	if (!w)
		return snprintf(why, cap, "module unknown to the witness client"), false;
	if (m->state == SK_ST_SECOND && !m->plan.active)
		w->vouch_ms = now;
	if (W.ping) {
		/* the last answer before the peer went silent proves nothing (it may have been cut off
		 * at the same time as us): an answer after its death counts */
		int fresh = ping_fresh(m, now);

		if (fresh == 0 && prim) {
			w->takeover = true; /* re-evaluated at the next tick */
			return true;
		}
		if (fresh <= 0) {
			snprintf(why, cap, "%s lost and no ping witness answers (%s%s)%s",
				 m->peer->node->name, W.a->cluster.ping[0].text,
				 W.a->cluster.n_ping > 1 ? ", ..." : "", fresh == 0 ?
				 ": waiting for an answer" : ": this side may be the cut off one, "
				 "so it does not serve");
			w->takeover = true;
			return false;
		}
	}
	if (!W.lease) {
		w->takeover = false;
		return true;
	}
	if (!prim) {
		w->want_ms = now;
		w->takeover = true;
		if (now - w->asked_ms >= 100 && !quiet(w, now))
			lease_send(w, SK_LEASE_ACQUIRE, now);
	}
	if (prim ? !w->held_until_ms || now >= w->held_until_ms + FENCE_FIRST_MS : !held(w, now)) {
		char holder[96] = "";

		if (w->last_result == SK_LEASE_HELD) {
			const struct sk_conf_node *hn = sk_conf_node_by_id(&W.a->cluster, w->holder);

			snprintf(holder, sizeof(holder), " (held by %s)", hn ? hn->name : "?");
		} else if (w->last_result == SK_LEASE_GRACE) {
			snprintf(holder, sizeof(holder), " (witness starting)");
		} else if (w->last_result == SK_LEASE_BEHIND) {
			const struct sk_conf_node *hn = sk_conf_node_by_id(&W.a->cluster, w->holder);

			snprintf(why, cap, "%s lost; its last lease holder %s went on alone: this copy "
				 "lacks what it acknowledged since; skctl prim -m %s --force serves it "
				 "anyway (those writes are lost)", m->peer->node->name, hn ? hn->name : "?",
				 m->conf.name);
			return false;
		}
		snprintf(why, cap, "%s lost and the lease of witness %s is not ours%s: %s",
			 m->peer->node->name, W.wnode->name, holder,
			 prim ? "stopped serving before it can go to the other side" :
				"waiting for it");
		return false;
	}
	/* the old primary may extend its fence on our SECOND announcements for vouch_ms */
	if (!prim && w->vouch_ms && now < w->vouch_ms + W.vouch_len_ms + W.margin_ms) {
		if (w->retry_init) /* decide again at that moment, not at the next tick */
			uv_timer_start(&w->retry, on_retry, w->vouch_ms + W.vouch_len_ms + W.margin_ms -
				       now, 0);
		snprintf(why, cap, "%s lost; lease held, waiting %llu ms more: the old primary's "
			 "fence may still run on our last SECOND announcement", m->peer->node->name,
			 (unsigned long long)(w->vouch_ms + W.vouch_len_ms + W.margin_ms - now));
		return false;
	}
	w->takeover = false;
	return true;
}

void agent_witness_force(struct agent_mod *m)
{
	struct wmod *w = wmod_of(m);

	if (w && W.lease) {
		w->force_until_ms = agent_now_ms() + 10000;
		agent_mod_log(m, "operator forces this copy: lease requests carry FORCE for 10 s");
	}
}

bool agent_witness_lease_fence(struct agent_mod *m)
{
	return W.lease && wmod_of(m);
}

bool agent_witness_takeover(struct agent_mod *m)
{
	struct wmod *w = wmod_of(m);

	return w && w->takeover && !m->peer->alive;
}

int agent_witness_start(struct agent *a)
{
	W.a = a;
	W.icmp_fd = -1;
	W.ping = a->cluster.n_ping > 0;
	W.lease = a->cluster.lease_witness > 0;
	if (!W.ping && !W.lease)
		return 0;
	for (unsigned i = 0; i < a->n_mods && i < AGENT_MAX_MODS; i++) {
		if (a->mods[i]->conf.kind != SK_MOD_MIRROR || !a->mods[i]->peer)
			continue; /* farm modules have no primary to guard */
		W.w[W.n].m = a->mods[i];
		W.w[W.n].vouch_ms = agent_now_ms(); /* a restarted agent may have vouched before */
		if (W.lease) {
			uv_timer_init(a->loop, &W.w[W.n].retry);
			W.w[W.n].retry.data = &W.w[W.n];
			W.w[W.n].retry_init = true;
		}
		W.n++;
	}
	if (W.ping) {
		W.icmp_fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP);
		if (W.icmp_fd < 0) {
			sk_err("ping witness: raw ICMP socket: %s (the agent needs CAP_NET_RAW)",
			       strerror(errno));
			return -errno;
		}
		uv_poll_init(a->loop, &W.icmp_poll, W.icmp_fd);
		uv_poll_start(&W.icmp_poll, UV_READABLE, on_icmp);
		W.ping_reach = true; /* first judged after a timeout's worth of answers */
		for (unsigned k = 0; k < a->cluster.n_ping; k++)
			W.ping_ok_ms[k] = agent_now_ms();
		sk_info("ping witness: %u address(es), ICMP echo every %u ms, unreachable after %u ms "
			"without an answer", a->cluster.n_ping, a->hb_interval_ms, a->hb_timeout_ms);
	}
	if (W.lease) {
		W.wnode = &a->cluster.nodes[a->cluster.lease_witness - 1];
		W.lease_ms = a->cluster.lease_ms;
		W.margin_ms = sk_lease_margin_ms(W.lease_ms);
		W.vouch_len_ms = a->hb_timeout_ms;
		sk_proto_derive(&W.lkey, &a->master, "lease", NULL, 0);
		W.seq = agent_wall_ms() * 1000;
		W.nonce = agent_wall_ms() * 1000;
		for (unsigned k = 0; k < a->cluster.n_networks; k++) {
			struct sockaddr_storage ss;
			int rc;

			sk_conf_sockaddr(&a->self->addr[k], 0, &ss);
			uv_udp_init(a->loop, &W.sock[k]);
			W.sock[k].data = (void *)(uintptr_t)k;
			rc = uv_udp_bind(&W.sock[k], (struct sockaddr *)&ss, 0);
			if (rc < 0) {
				sk_err("lease client socket on %s: %s", a->cluster.networks[k],
				       uv_strerror(rc));
				return rc;
			}
			W.sock_open[k] = true;
			uv_udp_recv_start(&W.sock[k], on_alloc, on_reply);
		}
		for (unsigned i = 0; i < W.n; i++) {
			char name[64];

			if (W.w[i].m->conf.latency_budget_ms <= W.lease_ms + W.margin_ms)
				sk_warn("module %s: latency_budget_ms %u is not above the lease (%u ms + "
					"%u margin): cut off from its peer and the witness, this primary may "
					"acknowledge writes alone that the node taking over will not have",
					W.w[i].m->conf.name, W.w[i].m->conf.latency_budget_ms, W.lease_ms,
					W.margin_ms);

			snprintf(name, sizeof(name), "SKFUSED_LEASE_UNTIL_MS_%u", W.w[i].m->conf.id);
			setenv(name, "0", 1);
		}
		sk_info("lease witness %s (port %u): lease %u ms renewed every %u ms, margin %u ms",
			W.wnode->name, a->cluster.witness_port, W.lease_ms, W.lease_ms / 4, W.margin_ms);
	}
	uv_timer_init(a->loop, &W.tick);
	uv_timer_start(&W.tick, on_tick, 0, W.lease && a->hb_interval_ms > 100 ? 100 :
		       a->hb_interval_ms);
	return 0;
}

void agent_witness_stop(struct agent *a)
{
	(void)a;
	if (!W.a)
		return;
	agent_close((uv_handle_t *)&W.tick);
	for (unsigned k = 0; k < SK_CONF_MAX_NETWORKS; k++)
		if (W.sock_open[k])
			agent_close((uv_handle_t *)&W.sock[k]);
	for (unsigned i = 0; i < W.n; i++) {
		pipe_done(&W.w[i]);
		if (W.w[i].retry_init)
			agent_close((uv_handle_t *)&W.w[i].retry);
	}
	if (W.icmp_fd >= 0) {
		agent_close((uv_handle_t *)&W.icmp_poll);
		close(W.icmp_fd);
		W.icmp_fd = -1;
	}
}

/* ---- skagentd --witness: the lease witness itself ---- */

enum { WREJ_SHORT, WREJ_MAC, WREJ_REPLAY, WREJ_FORMAT, WREJ_SENDER, WREJ__COUNT };
static const char *const wrej_names[WREJ__COUNT] = { "short", "mac", "replay", "format", "sender" };

static struct {
	struct agent *a;
	struct sk_lease_table table;
	uv_udp_t sock[SK_CONF_MAX_NETWORKS];
	bool open[SK_CONF_MAX_NETWORKS];
	uint64_t last_seq[256]; /* per requesting node id */
	uint64_t seq;
	uint64_t rejected[WREJ__COUNT];
	uint64_t granted, refused_held;
	uint8_t last_holder[SK_LEASE_TABLE_MAX];
	uint32_t refusals[SK_LEASE_TABLE_MAX]; /* held/grace answers since the last grant */
	uv_signal_t sigterm, sigint;
} S;

static void srv_reject(unsigned why, unsigned net, const struct sockaddr *from)
{
	char ip[64] = "?";

	S.rejected[why]++;
	if (S.rejected[why] <= 5 || S.rejected[why] % 1000 == 0) {
		if (from && from->sa_family == AF_INET)
			uv_ip4_name((const struct sockaddr_in *)from, ip, sizeof(ip));
		else if (from && from->sa_family == AF_INET6)
			uv_ip6_name((const struct sockaddr_in6 *)from, ip, sizeof(ip));
		sk_warn("lease request refused on %s from %s: %s (%llu so far)",
			S.a->cluster.networks[net], ip, wrej_names[why],
			(unsigned long long)S.rejected[why]);
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

static void on_request(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
		       unsigned flags)
{
	unsigned net = (unsigned)(uintptr_t)h->data;
	const uint8_t *b = (const uint8_t *)buf->base;
	const struct sk_conf_node *n;
	struct sk_lease_req q;
	struct sk_lease_reply r = { 0 };
	struct sk_frame f;
	enum sk_reject why;
	uint64_t scratch = 0, now = agent_now_ms();
	uint8_t pl[SK_LEASE_REPLY_LEN], out[SK_PROTO_HDR_LEN + SK_LEASE_REPLY_LEN + SK_PROTO_MAC_LEN];
	long pn, on;

	if (nread <= 0 || !from)
		return;
	if ((flags & UV_UDP_PARTIAL) || (size_t)nread != SK_PROTO_HDR_LEN + SK_LEASE_REQ_LEN +
	    SK_PROTO_MAC_LEN)
		return srv_reject(WREJ_SHORT, net, from);
	/* the sender id picks the replay window before authentication; checked again after */
	n = sk_conf_node_by_id(&S.a->cluster, b[SK_PROTO_HDR_LEN + 1]);
	if (!n || n->witness || !addr_is(&n->addr[net], from)) {
		if (sk_dgram_open(&W.lkey, b, (size_t)nread, &scratch, &f, &why) < 0)
			return srv_reject(why == SK_REJ_MAC ? WREJ_MAC : WREJ_FORMAT, net, from);
		return srv_reject(WREJ_SENDER, net, from);
	}
	if (sk_dgram_open(&W.lkey, b, (size_t)nread, &S.last_seq[n->id], &f, &why) < 0)
		return srv_reject(why == SK_REJ_MAC ? WREJ_MAC : why == SK_REJ_REPLAY ? WREJ_REPLAY :
				  WREJ_FORMAT, net, from);
	if (f.type != SK_MSG_LEASE_REQ || f.flags || sk_lease_req_decode(f.payload, f.len, &q) < 0 ||
	    q.node != n->id || q.module != f.module)
		return srv_reject(WREJ_FORMAT, net, from);
	sk_lease_table_ask(&S.table, now, &q, &r);
	r.witness = S.a->self->id;
	r.nonce = q.nonce;
	if (r.result == SK_LEASE_GRANTED) {
		S.granted++;
		for (unsigned i = 0; i < S.table.n; i++) {
			if (S.table.e[i].module != q.module)
				continue;
			if (S.last_holder[i] != q.node) {
				S.last_holder[i] = q.node;
				sk_info("module id %u: lease granted to %s (epoch %llu, %u ms) after %u "
					"refusals since the last grant", q.module, n->name,
					(unsigned long long)r.epoch, r.valid_ms, S.refusals[i]);
			}
			S.refusals[i] = 0;
		}
	} else if (r.result == SK_LEASE_HELD || r.result == SK_LEASE_GRACE) {
		for (unsigned i = 0; i < S.table.n; i++)
			if (S.table.e[i].module == q.module)
				S.refusals[i]++;
	}
	if (r.result == SK_LEASE_HELD) {
		S.refused_held++;
		if (S.refused_held <= 5 || S.refused_held % 100 == 0)
			sk_info("module id %u: lease asked by %s, held by node id %u for %u ms more "
				"(%llu refusals so far)", q.module, n->name, r.holder, r.valid_ms,
				(unsigned long long)S.refused_held);
	} else if (r.result == SK_LEASE_RELEASED) {
		sk_info("module id %u: lease released by %s", q.module, n->name);
	}
	pn = sk_lease_reply_encode(&r, pl, sizeof(pl));
	if (pn < 0)
		return;
	on = sk_dgram_seal(&W.lkey, out, sizeof(out), SK_MSG_LEASE_REPLY, q.module, ++S.seq, pl,
			   (size_t)pn);
	if (on > 0) {
		uv_buf_t ob = uv_buf_init((char *)out, (unsigned)on);

		uv_udp_try_send(h, &ob, 1, from);
	}
}

static void srv_signal(uv_signal_t *s, int sig)
{
	sk_info("signal %d: witness exiting (granted %llu, refused: short %llu mac %llu replay %llu "
		"format %llu sender %llu)", sig, (unsigned long long)S.granted,
		(unsigned long long)S.rejected[WREJ_SHORT], (unsigned long long)S.rejected[WREJ_MAC],
		(unsigned long long)S.rejected[WREJ_REPLAY], (unsigned long long)S.rejected[WREJ_FORMAT],
		(unsigned long long)S.rejected[WREJ_SENDER]);
	uv_stop(s->loop);
}

int agent_witness_serve(struct agent *a)
{
	uint32_t margin = sk_lease_margin_ms(a->cluster.lease_ms);

	S.a = W.a = a;
	sk_proto_derive(&W.lkey, &a->master, "lease", NULL, 0);
	S.seq = agent_wall_ms() * 1000;
	sk_lease_table_init(&S.table, a->cluster.lease_ms, margin, agent_now_ms());
	for (unsigned k = 0; k < a->cluster.n_networks; k++) {
		struct sockaddr_storage ss;
		int rc;

		sk_conf_sockaddr(&a->self->addr[k], a->cluster.witness_port, &ss);
		uv_udp_init(a->loop, &S.sock[k]);
		S.sock[k].data = (void *)(uintptr_t)k;
		rc = uv_udp_bind(&S.sock[k], (struct sockaddr *)&ss, UV_UDP_REUSEADDR);
		if (rc < 0) {
			sk_err("witness socket on %s (%s port %u): %s", a->cluster.networks[k],
			       a->self->addr[k].text, a->cluster.witness_port, uv_strerror(rc));
			return rc;
		}
		S.open[k] = true;
		uv_udp_recv_start(&S.sock[k], on_alloc, on_request);
	}
	uv_signal_init(a->loop, &S.sigterm);
	uv_signal_init(a->loop, &S.sigint);
	uv_signal_start(&S.sigterm, srv_signal, SIGTERM);
	uv_signal_start(&S.sigint, srv_signal, SIGINT);
	sk_info("lease witness %s of cluster %s: port %u, lease %u ms, margin %u ms; nothing granted "
		"for the first %u ms (leases an earlier run granted end first)", a->self->name,
		a->cluster.name, a->cluster.witness_port, a->cluster.lease_ms, margin,
		a->cluster.lease_ms + margin);
	uv_run(a->loop, UV_RUN_DEFAULT);
	return 0;
}
