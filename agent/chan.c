/* agent/chan.c: one authenticated TCP channel per peer (handshake, sealed frames) for states and commands. */
#include "agent.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define HS_TIMEOUT_MS 2000
#define REDIAL_MS 500
/* Agent frames are small: a frame that does not fit is refused and the channel closed. */
#define CHAN_BUF 4096
/* Connections still in their handshake: strangers cannot hold more than this many at once. */
#define MAX_PENDING 16

static unsigned n_pending;

struct agent_chan {
	struct agent *a;
	struct agent_peer *p; /* known at once for a client, after the handshake for a server */
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t conn;
	int open_handles;
	bool client, established, closing;
	bool got_hello; /* server: HELLO answered, waiting for the client's FIN */
	bool pending;   /* counted in n_pending */
	struct sk_hs hs;
	struct sk_chan c;
	size_t n;
	uint8_t buf[CHAN_BUF];
};

struct wreq {
	uv_write_t req;
	uint8_t data[];
};

static void on_closed(uv_handle_t *h)
{
	struct agent_chan *ch = h->data;

	if (--ch->open_handles == 0)
		free(ch);
}

static void chan_free(struct agent_chan *ch, const char *why)
{
	if (ch->closing)
		return;
	ch->closing = true;
	if (ch->pending) {
		ch->pending = false;
		n_pending--;
	}
	if (ch->p && ch->p->chan == ch) {
		ch->p->chan = NULL;
		if (ch->established)
			sk_info("channel to %s closed: %s", ch->p->node->name, why);
	}
	uv_close((uv_handle_t *)&ch->tcp, on_closed);
	uv_close((uv_handle_t *)&ch->timer, on_closed);
}

void agent_chan_close(struct agent_peer *p)
{
	if (p->chan)
		chan_free(p->chan, "peer declared dead");
}

static void on_written(uv_write_t *req, int status)
{
	(void)status;
	free(req->data);
}

static int send_raw(struct agent_chan *ch, const uint8_t *p, size_t n)
{
	struct wreq *w = malloc(sizeof(*w) + n);
	uv_buf_t b;
	int rc;

	if (!w)
		return -ENOMEM;
	memcpy(w->data, p, n);
	w->req.data = w;
	b = uv_buf_init((char *)w->data, (unsigned)n);
	rc = uv_write(&w->req, (uv_stream_t *)&ch->tcp, &b, 1, on_written);
	if (rc < 0)
		free(w);
	return rc;
}

static int send_frame(struct agent_chan *ch, uint8_t type, uint32_t mod, const uint8_t *pl, size_t n)
{
	uint8_t buf[SK_PROTO_HDR_LEN + SK_AMSG_STATE_MAX + SK_PROTO_MAC_LEN];
	long len;

	if (!ch || !ch->established || ch->closing)
		return -ENOTCONN;
	len = sk_chan_encode(&ch->c, buf, sizeof(buf), type, 0, mod, pl, n);
	if (len < 0)
		return (int)len;
	return send_raw(ch, buf, (size_t)len);
}

void agent_chan_send_state(struct agent *a, struct agent_peer *p)
{
	struct sk_amsg_state s;
	uint8_t pl[SK_AMSG_STATE_MAX];
	long n;

	if (!p->chan || !p->chan->established)
		return;
	agent_state_fill(a, &s);
	n = sk_amsg_state_encode(&s, pl, sizeof(pl));
	if (n > 0)
		send_frame(p->chan, SK_MSG_AGENT_STATE, 0, pl, (size_t)n);
}

int agent_chan_send_cmd(struct agent *a, struct agent_peer *p, enum sk_amsg_cmd cmd, uint32_t mod)
{
	uint8_t pl[SK_AMSG_CMD_LEN];
	long n = sk_amsg_cmd_encode(cmd, mod, pl, sizeof(pl));

	(void)a;
	if (n < 0)
		return (int)n;
	return send_frame(p->chan, SK_MSG_AGENT_CMD, mod, pl, (size_t)n);
}

/* skctl -H: a control request for the peer, or our answer to one (agent/ctl.c). */
int agent_chan_send_ctl(struct agent *a, struct agent_peer *p, bool answer, uint32_t id,
			const char *text, size_t n)
{
	uint8_t pl[4 + SK_AMSG_CTL_MAX], buf[SK_PROTO_HDR_LEN + sizeof(pl) + SK_PROTO_MAC_LEN];
	long pn, len;

	(void)a;
	if (!p->chan || !p->chan->established || p->chan->closing)
		return -ENOTCONN;
	pn = sk_amsg_ctl_encode(id, text, n, pl, sizeof(pl));
	if (pn < 0)
		return (int)pn;
	len = sk_chan_encode(&p->chan->c, buf, sizeof(buf), answer ? SK_MSG_AGENT_CTLREP :
			     SK_MSG_AGENT_CTL, 0, 0, pl, (size_t)pn);
	if (len < 0)
		return (int)len;
	return send_raw(p->chan, buf, (size_t)len);
}

static void established(struct agent_chan *ch)
{
	struct agent *a = ch->a;

	ch->established = true;
	if (ch->pending) {
		ch->pending = false;
		n_pending--;
	}
	uv_timer_stop(&ch->timer);
	if (ch->p->chan && ch->p->chan != ch)
		chan_free(ch->p->chan, "replaced by a new channel");
	ch->p->chan = ch;
	sk_info("channel to %s up (%s)", ch->p->node->name, ch->client ? "dialled" : "accepted");
	agent_chan_send_state(a, ch->p);
}

static void on_frame(struct agent_chan *ch, const struct sk_frame *f)
{
	struct agent *a = ch->a;

	if (f->type == SK_MSG_AGENT_STATE) {
		struct sk_amsg_state s;

		if (sk_amsg_state_decode(f->payload, f->len, &s) < 0 || s.node_id != ch->p->node->id) {
			a->chan_rejected++;
			chan_free(ch, "malformed state message");
			return;
		}
		/* liveness comes from heartbeats only; the channel just brings states sooner */
		if (ch->p->alive)
			agent_peer_state_in(a, ch->p, &s, agent_rx_bound_ms(a, agent_now_ms()));
	} else if (f->type == SK_MSG_AGENT_CTL || f->type == SK_MSG_AGENT_CTLREP) {
		uint32_t id;
		const char *text;
		size_t n;

		if (sk_amsg_ctl_decode(f->payload, f->len, &id, &text, &n) < 0) {
			a->chan_rejected++;
			chan_free(ch, "malformed control message");
			return;
		}
		agent_ctl_remote(a, ch->p, f->type == SK_MSG_AGENT_CTLREP, id, text, n);
	} else if (f->type == SK_MSG_AGENT_CMD) {
		enum sk_amsg_cmd cmd;
		uint32_t mod;

		if (sk_amsg_cmd_decode(f->payload, f->len, &cmd, &mod) < 0) {
			a->chan_rejected++;
			chan_free(ch, "malformed command");
			return;
		}
		for (unsigned i = 0; i < a->n_mods; i++)
			if (a->mods[i]->conf.id == mod && a->mods[i]->peer == ch->p &&
			    cmd == SK_AMSG_CMD_SWAP)
				agent_mod_swap_from_peer(a->mods[i]);
	} else if (f->type == SK_MSG_CLOSE) {
		chan_free(ch, "closed by the peer");
	} else {
		a->chan_rejected++;
		chan_free(ch, "unexpected message type");
	}
}

static void consume(struct agent_chan *ch)
{
	struct agent *a = ch->a;
	enum sk_reject why;

	while (!ch->closing) {
		if (!ch->established) {
			size_t need = ch->client ? SK_HS_ACK_LEN :
				      ch->got_hello ? SK_HS_FIN_LEN : SK_HS_HELLO_LEN;
			uint8_t out[SK_HS_FRAME_LEN];
			long r;

			if (ch->n < need)
				return;
			if (ch->client) {
				r = sk_hs_client_finish(&ch->hs, ch->buf, need, out, &ch->c, &why);
				if (r > 0 && send_raw(ch, out, (size_t)r) < 0) {
					chan_free(ch, "write failed");
					return;
				}
			} else if (!ch->got_hello) {
				r = sk_hs_server_reply(&ch->hs, &a->master, SK_CHAN_AGENT, a->self->id,
						       ch->buf, need, out, &why);
				if (r > 0) {
					struct agent_peer *p = agent_peer_by_id(a, ch->hs.peer_node);

					if (!p) {
						a->chan_rejected++;
						chan_free(ch, "unknown node");
						return;
					}
					ch->p = p;
					if (send_raw(ch, out, (size_t)r) < 0) {
						chan_free(ch, "write failed");
						return;
					}
				}
			} else {
				r = sk_hs_server_finish(&ch->hs, ch->buf, need, &ch->c, &why);
			}
			if (r < 0) {
				a->chan_rejected++;
				sk_warn("agent channel handshake refused: %s", sk_reject_str(why));
				chan_free(ch, "handshake refused");
				return;
			}
			memmove(ch->buf, ch->buf + need, ch->n - need);
			ch->n -= need;
			if (!ch->client && !ch->got_hello) {
				ch->got_hello = true;
				continue;
			}
			established(ch);
			continue;
		}
		{
			struct sk_frame f;
			long r = sk_chan_open(&ch->c, ch->buf, ch->n, &f, &why);

			if (r == 0) {
				if (ch->n == sizeof(ch->buf)) {
					a->chan_rejected++;
					chan_free(ch, "frame larger than any agent message");
				}
				return;
			}
			if (r < 0) {
				a->chan_rejected++;
				sk_warn("agent channel from %s: frame refused (%s)", ch->p->node->name,
					sk_reject_str(why));
				chan_free(ch, "bad frame");
				return;
			}
			on_frame(ch, &f);
			if (ch->closing)
				return;
			memmove(ch->buf, ch->buf + r, ch->n - (size_t)r);
			ch->n -= (size_t)r;
		}
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct agent_chan *ch = h->data;

	(void)suggested;
	b->base = (char *)ch->buf + ch->n;
	b->len = sizeof(ch->buf) - ch->n;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct agent_chan *ch = s->data;

	(void)b;
	if (n < 0) {
		chan_free(ch, n == UV_EOF ? "end of stream" : uv_strerror((int)n));
		return;
	}
	ch->n += (size_t)n;
	consume(ch);
}

static void on_hs_timeout(uv_timer_t *t)
{
	struct agent_chan *ch = t->data;

	ch->a->chan_rejected++;
	chan_free(ch, "handshake timeout");
}

static struct agent_chan *chan_new(struct agent *a)
{
	struct agent_chan *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return NULL;
	ch->a = a;
	uv_tcp_init(a->loop, &ch->tcp);
	uv_timer_init(a->loop, &ch->timer);
	ch->tcp.data = ch->timer.data = ch;
	ch->open_handles = 2;
	ch->pending = true;
	n_pending++;
	uv_timer_start(&ch->timer, on_hs_timeout, HS_TIMEOUT_MS, 0);
	return ch;
}

static void on_connect(uv_connect_t *req, int status)
{
	struct agent_chan *ch = req->data;
	uint8_t hello[SK_HS_FRAME_LEN];
	long n;

	if (ch->closing)
		return;
	if (status < 0) {
		chan_free(ch, uv_strerror(status));
		return;
	}
	n = sk_hs_client_hello(&ch->hs, &ch->a->master, SK_CHAN_AGENT, ch->a->self->id, 0, hello);
	if (n < 0 || send_raw(ch, hello, (size_t)n) < 0 ||
	    uv_read_start((uv_stream_t *)&ch->tcp, on_alloc, on_read) < 0)
		chan_free(ch, "cannot send the handshake");
}

static void on_redial(uv_timer_t *t)
{
	struct agent_peer *p = t->data;
	struct agent *a = t->loop->data;
	struct agent_chan *ch;
	struct sockaddr_storage ss;

	/* the lower id dials, so there is one channel per pair; only a live peer is dialled */
	if (p->chan || !p->alive || a->stopping)
		return;
	ch = chan_new(a);
	if (!ch)
		return;
	ch->client = true;
	ch->p = p;
	p->chan = ch;
	ch->conn.data = ch;
	sk_conf_sockaddr(&p->node->addr[0], a->cluster.agent_port, &ss);
	if (uv_tcp_connect(&ch->conn, &ch->tcp, (struct sockaddr *)&ss, on_connect) < 0)
		chan_free(ch, "connect failed");
}

static void on_accept(uv_stream_t *srv, int status)
{
	struct agent *a = srv->data;
	struct agent_chan *ch;

	if (status < 0)
		return;
	ch = chan_new(a);
	if (!ch)
		return;
	if (uv_accept(srv, (uv_stream_t *)&ch->tcp) < 0) {
		chan_free(ch, "accept failed");
		return;
	}
	if (n_pending > MAX_PENDING) {
		a->chan_rejected++;
		chan_free(ch, "too many handshakes in progress");
		return;
	}
	if (uv_read_start((uv_stream_t *)&ch->tcp, on_alloc, on_read) < 0)
		chan_free(ch, "accept failed");
}

int agent_chan_start(struct agent *a)
{
	struct sockaddr_storage ss;
	int rc;

	uv_tcp_init(a->loop, &a->listener);
	a->listener.data = a;
	sk_conf_sockaddr(&a->self->addr[0], a->cluster.agent_port, &ss);
	rc = uv_tcp_bind(&a->listener, (struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&a->listener, 8, on_accept);
	if (rc < 0) {
		sk_err("agent channel: cannot listen on %s port %u: %s", a->self->addr[0].text,
		       a->cluster.agent_port, uv_strerror(rc));
		return rc;
	}
	a->listening = true;
	for (unsigned i = 0; i < a->n_peers; i++) {
		struct agent_peer *p = &a->peers[i];

		uv_timer_init(a->loop, &p->redial);
		p->redial.data = p;
		if (p->node->id > a->self->id)
			uv_timer_start(&p->redial, on_redial, REDIAL_MS / 5, REDIAL_MS);
	}
	return 0;
}

void agent_chan_stop(struct agent *a)
{
	for (unsigned i = 0; i < a->n_peers; i++) {
		agent_chan_close(&a->peers[i]);
		agent_close((uv_handle_t *)&a->peers[i].redial);
	}
	if (a->listening)
		agent_close((uv_handle_t *)&a->listener);
}
