/* libsk/gen.c: data generations: classification of two copies, new ids, the bounded wire form. */
#include "gen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "proto.h"

static bool in_hist(const struct sk_gen *g, uint64_t id)
{
	for (unsigned i = 0; i < g->n_hist && i < SK_GEN_HIST; i++)
		if (g->hist[i] == id)
			return true;
	return false;
}

enum sk_gen_rel sk_gen_classify(const struct sk_gen *local, const struct sk_gen *peer)
{
	if (local->current == peer->current)
		return SK_GEN_EQUAL;
	if (peer->current == 0)
		return SK_GEN_LOCAL_NEWER;
	if (local->current == 0)
		return SK_GEN_PEER_NEWER;
	if (in_hist(local, peer->current))
		return SK_GEN_LOCAL_NEWER;
	if (in_hist(peer, local->current))
		return SK_GEN_PEER_NEWER;
	/* neither descends from the other: they share an ancestor (split brain) or nothing at
	 * all (unrelated data); either way only an operator may pick the survivor */
	return SK_GEN_DIVERGED;
}

const char *sk_gen_rel_str(enum sk_gen_rel r)
{
	switch (r) {
	case SK_GEN_EQUAL: return "equal";
	case SK_GEN_LOCAL_NEWER: return "newer";
	case SK_GEN_PEER_NEWER: return "older";
	case SK_GEN_DIVERGED: return "diverged";
	}
	return "?";
}

const char *sk_gen_verdict_str(enum sk_gen_verdict v)
{
	switch (v) {
	case SK_GEN_V_OK: return "accepted";
	case SK_GEN_V_DIVERGED: return "refused: the copies diverged (split brain)";
	case SK_GEN_V_PRIMARY_OLDER: return "refused: the primary's copy is older than the secondary's";
	case SK_GEN_V_FORCED: return "accepted: the primary is the operator's survivor";
	}
	return "?";
}

void sk_gen_new_current(struct sk_gen *g, uint64_t fresh_id)
{
	if (g->current) {
		memmove(g->hist + 1, g->hist, (SK_GEN_HIST - 1) * sizeof(g->hist[0]));
		g->hist[0] = g->current;
		if (g->n_hist < SK_GEN_HIST)
			g->n_hist++;
	}
	g->current = fresh_id;
}

uint64_t sk_gen_random_id(void)
{
	uint64_t id;

	if (sodium_init() < 0)
		abort(); /* no randomness: never hand out a guessable generation */
	do
		randombytes_buf(&id, sizeof(id));
	while (id == 0 || id == SK_GEN_UNKNOWN);
	return id;
}

void sk_gen_encode(const struct sk_gen_wire *w, uint8_t out[SK_GEN_WIRE_LEN])
{
	unsigned n = w->g.n_hist > SK_GEN_HIST ? SK_GEN_HIST : w->g.n_hist;

	memset(out, 0, SK_GEN_WIRE_LEN);
	out[0] = 1;
	out[1] = (uint8_t)n;
	out[2] = w->verdict;
	sk_put_u64(out + 8, w->g.current);
	sk_put_u64(out + 16, w->g.shared);
	for (unsigned i = 0; i < n; i++)
		sk_put_u64(out + 24 + 8 * i, w->g.hist[i]);
	sk_put_u64(out + 56, w->changed_files);
	sk_put_u64(out + 64, w->changed_bytes);
}

int sk_gen_decode(const uint8_t *p, size_t len, struct sk_gen_wire *w)
{
	memset(w, 0, sizeof(*w));
	if (len != SK_GEN_WIRE_LEN || p[0] != 1 || p[1] > SK_GEN_HIST || p[2] > SK_GEN_V__MAX ||
	    p[3] || sk_get_u32(p + 4))
		return -EBADMSG;
	w->g.n_hist = p[1];
	w->verdict = p[2];
	w->g.current = sk_get_u64(p + 8);
	w->g.shared = sk_get_u64(p + 16);
	for (unsigned i = 0; i < SK_GEN_HIST; i++) {
		uint64_t h = sk_get_u64(p + 24 + 8 * i);

		/* canonical: used slots hold an id, unused ones are zero */
		if ((i < w->g.n_hist) != (h != 0))
			return -EBADMSG;
		w->g.hist[i] = h;
	}
	w->changed_files = sk_get_u64(p + 56);
	w->changed_bytes = sk_get_u64(p + 64);
	return 0;
}

void sk_gen_id_str(uint64_t id, char buf[17])
{
	snprintf(buf, 17, "%llx", (unsigned long long)id);
}

int sk_gen_id_parse(const char *s, uint64_t *id)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || strlen(s) > 16)
		return -EINVAL;
	for (const char *c = s; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return -EINVAL;
	v = strtoull(s, &end, 16);
	if (*end)
		return -EINVAL;
	*id = v;
	return 0;
}
