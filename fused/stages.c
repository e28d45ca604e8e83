/* fused/stages.c: per-stage histograms of waited writes, fsyncs and creates (primary) and of the frames applied for them (secondary). */
#include "stages.h"

#include <json-c/json.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

bool fused_stages_on;
__thread uint64_t fused_stage_rx_ns;

/*
 * Log-linear buckets: 16 per power of two (6 % wide), exact below 16 ns, up to 2^39 ns.
 * Bucket i holds [lo(i), lo(i + 1)) ns.
 */
#define SUB_BITS 4
#define SUB (1u << SUB_BITS)
#define NB (SUB * 36)

struct hist {
	_Atomic uint64_t n, sum_ns;
	_Atomic uint64_t b[NB];
};

static struct hist prim[FUSED_STG_KINDS][FUSED_STG_P_N];
static struct hist sec[FUSED_STG_KINDS][FUSED_STG_S_N];
static _Atomic uint64_t misordered; /* a stage that came out negative (counted as 0) */

static const char *const kind_name[FUSED_STG_KINDS] = { "write", "fsync", "create" };
static const char *const prim_name[FUSED_STG_P_N] = { "seal", "send", "local", "peer",
						      "wait", "reply", "total" };
static const char *const sec_name[FUSED_STG_S_N] = { "queue", "apply", "ack", "total" };

/* before main: both roles' threads read it, never written after */
__attribute__((constructor)) static void stages_init(void)
{
	const char *v = getenv("SKFUSED_STAGES");

	fused_stages_on = v && strcmp(v, "1") == 0;
}

static unsigned bucket(uint64_t v)
{
	unsigned e, i;

	if (v < SUB)
		return (unsigned)v;
	e = (unsigned)(63 - __builtin_clzll(v)) - SUB_BITS;
	i = SUB * (e + 1) + (unsigned)((v >> e) & (SUB - 1));
	return i < NB ? i : NB - 1;
}

static uint64_t bucket_lo(unsigned i)
{
	if (i < SUB)
		return i;
	return (uint64_t)(SUB + i % SUB) << (i / SUB - 1);
}

static void add(struct hist *h, uint64_t v)
{
	atomic_fetch_add_explicit(&h->n, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, v, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->b[bucket(v)], 1, memory_order_relaxed);
}

/* b - a, or 0 (counted) when the stamps came in the wrong order */
static uint64_t span(uint64_t a, uint64_t b)
{
	if (b >= a)
		return b - a;
	atomic_fetch_add_explicit(&misordered, 1, memory_order_relaxed);
	return 0;
}

void fused_stage_primary(const struct fused_stamps *s)
{
	uint64_t now = fused_stage_now(), end;
	struct hist *h;

	if (!now || s->kind >= FUSED_STG_KINDS || !s->in || !s->sealed || !s->sent || !s->local ||
	    !s->ack)
		return; /* not replicated, or answered by a peer loss: no round trip to show */
	h = prim[s->kind];
	end = s->ack > s->local ? s->ack : s->local;
	add(&h[FUSED_STG_P_SEAL], span(s->in, s->sealed));
	add(&h[FUSED_STG_P_SEND], span(s->sealed, s->sent));
	add(&h[FUSED_STG_P_LOCAL], span(s->sent, s->local));
	add(&h[FUSED_STG_P_PEER], span(s->sealed, s->ack));
	add(&h[FUSED_STG_P_WAIT], span(s->sealed, end));
	add(&h[FUSED_STG_P_REPLY], span(end, now));
	add(&h[FUSED_STG_P_TOTAL], span(s->in, now));
}

/* the receiver's last applied frame, until the ack that covers it goes out */
static __thread struct {
	uint8_t kind;
	uint64_t rx, t0, t1;
} last = { .kind = FUSED_STG_NONE };

void fused_stage_applied(enum fused_stg_kind k, uint64_t t0)
{
	if (!t0 || !fused_stage_rx_ns)
		return;
	last.kind = (uint8_t)k;
	last.rx = fused_stage_rx_ns;
	last.t0 = t0;
	last.t1 = fused_stage_now();
}

void fused_stage_rx_acked(void)
{
	uint64_t now;
	struct hist *h;

	if (last.kind >= FUSED_STG_KINDS)
		return;
	now = fused_stage_now();
	if (now) {
		h = sec[last.kind];
		add(&h[FUSED_STG_S_QUEUE], span(last.rx, last.t0));
		add(&h[FUSED_STG_S_APPLY], span(last.t0, last.t1));
		add(&h[FUSED_STG_S_ACK], span(last.t1, now));
		add(&h[FUSED_STG_S_TOTAL], span(last.rx, now));
	}
	last.kind = FUSED_STG_NONE;
}

static uint64_t pct(const uint64_t *b, uint64_t n, unsigned per_mille)
{
	uint64_t want = (n * per_mille + 999) / 1000, c = 0;

	for (unsigned i = 0; i < NB && n; i++) {
		c += b[i];
		if (c >= want && c)
			return (bucket_lo(i) + (i + 1 < NB ? bucket_lo(i + 1) : bucket_lo(i))) / 2;
	}
	return 0;
}

static struct json_object *hist_json(struct hist *h)
{
	struct json_object *o = json_object_new_object(), *a = json_object_new_array();
	uint64_t b[NB]; /* 4.6 KB of the control thread's stack, a snapshot */
	uint64_t n = atomic_load_explicit(&h->n, memory_order_relaxed);

	for (unsigned i = 0; i < NB; i++) {
		b[i] = atomic_load_explicit(&h->b[i], memory_order_relaxed);
		if (b[i]) {
			struct json_object *p = json_object_new_array();

			json_object_array_add(p, json_object_new_int64((int64_t)bucket_lo(i)));
			json_object_array_add(p, json_object_new_int64((int64_t)b[i]));
			json_object_array_add(a, p);
		}
	}
	json_object_object_add(o, "n", json_object_new_int64((int64_t)n));
	json_object_object_add(o, "sum_ns", json_object_new_int64((int64_t)atomic_load_explicit(
							    &h->sum_ns, memory_order_relaxed)));
	json_object_object_add(o, "p50_ns", json_object_new_int64((int64_t)pct(b, n, 500)));
	json_object_object_add(o, "p99_ns", json_object_new_int64((int64_t)pct(b, n, 990)));
	json_object_object_add(o, "hist", a);
	return o;
}

struct json_object *fused_stages_json(bool primary)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "on", json_object_new_boolean(fused_stages_on));
	json_object_object_add(o, "misordered",
			       json_object_new_int64((int64_t)atomic_load(&misordered)));
	for (int k = 0; k < FUSED_STG_KINDS; k++) {
		struct json_object *ko = json_object_new_object();
		int n = primary ? FUSED_STG_P_N : FUSED_STG_S_N;

		for (int s = 0; s < n; s++)
			json_object_object_add(ko, primary ? prim_name[s] : sec_name[s],
					       hist_json(primary ? &prim[k][s] : &sec[k][s]));
		json_object_object_add(o, kind_name[k], ko);
	}
	return o;
}
