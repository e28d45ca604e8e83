/* fused/rs_empty.c: the full resync's listings answered by the secondary: which listed files it holds empty, so they go whole without a checksum round trip. */
#include "fused.h"
#include "resync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/*
 * ---- The peer's answers to listings: which listed files it holds empty ----
 * In sync mode a listing frame that names regular files with data carries a request id (fh);
 * the peer answers it (RS_EMPTY) with a bit per entry that is an empty regular file there once
 * the frame is applied: such a file's data goes whole, without a checksum request (a round
 * trip per file before). The answer can only make this side send more than the checksums
 * would, never less, so a lying peer spoils only its own copy. The peer answers while it
 * applies the frame, before the ack that covers it: an ack past the frame with no answer
 * means none is coming (an older skfused), and this connection stops asking (checksums as
 * before). In the other modes the peer acks on receipt, so this is not asked there.
 * The slots are shared with the ack reader under rs_mu; the rest is the walker's.
 */
#define ANS_SLOTS 1024 /* listing frames asked and not taken by the walker yet */
static struct ans_slot {
	uint64_t req, bits;
	bool answered;
} ans[ANS_SLOTS];
static uint64_t ans_req;   /* walker: the last request id */
static bool ans_off;       /* walker: this connection is not asked */
static atomic_uint_fast64_t ans_seen, ans_refused;

int fused_rs_on_empty(struct fused *f, const uint8_t *p, size_t n)
{
	struct sk_rmsg_rs_empty a;
	struct ans_slot *s;

	if (sk_rmsg_rs_empty_decode(p, n, &a) < 0)
		return -EBADMSG;
	pthread_mutex_lock(&f->rs_mu);
	s = &ans[a.req % ANS_SLOTS];
	if (s->req == a.req && !s->answered) {
		s->bits = a.bits;
		s->answered = true;
		atomic_fetch_add(&ans_seen, 1);
		pthread_cond_broadcast(&f->rs_cv);
	} else {
		atomic_fetch_add(&ans_refused, 1); /* not asked, or answered twice: ignored */
	}
	pthread_mutex_unlock(&f->rs_mu);
	return 0;
}

void fused_rs_empty_reset(struct fused *f)
{
	pthread_mutex_lock(&f->rs_mu);
	memset(ans, 0, sizeof(ans));
	pthread_mutex_unlock(&f->rs_mu);
	/* SKFUSED_RS_EMPTY=0: never asked (an A/B of the answers alone) */
	ans_off = f->mode != SK_REPL_SYNC ||
		  (getenv("SKFUSED_RS_EMPTY") && !strcmp(getenv("SKFUSED_RS_EMPTY"), "0"));
	atomic_store(&ans_seen, 0);
	atomic_store(&ans_refused, 0);
	atomic_store(&fused_rs_stats.whole, 0);
	atomic_store(&fused_rs_stats.asked, 0);
}

void fused_rs_list_free(struct rs_list *l)
{
	fused_names_clear(&l->names);
	free(l->st);
	free(l->fr);
	memset(l, 0, sizeof(*l));
}

int fused_rs_list_add(struct rs_list *l, const char *name, uint8_t st)
{
	if (l->names.n >= l->st_cap) {
		size_t nc = l->st_cap ? 2 * l->st_cap : 256;
		uint8_t *nv = realloc(l->st, nc);

		if (!nv)
			return -ENOMEM;
		l->st = nv;
		l->st_cap = nc;
	}
	if (fused_names_add(&l->names, name, strlen(name)) < 0)
		return -ENOMEM;
	l->st[l->names.n - 1] = st;
	return 0;
}

void fused_rs_dir_frame(struct walker *w, struct rs_list *l, struct sk_rmsg_op *op, size_t used)
{
	struct fused *f = w->f;
	uint64_t req = 0;

	if (l && l->cur_want && !ans_off && !w->shallow && l->fr_n == l->fr_cap) {
		size_t nc = l->fr_cap ? 2 * l->fr_cap : 16;
		struct rs_asked *nv = reallocarray(l->fr, nc, sizeof(*nv));

		if (nv) {
			l->fr = nv;
			l->fr_cap = nc;
		}
	}
	if (l && l->cur_want && !ans_off && !w->shallow && l->fr_n < l->fr_cap) {
		struct ans_slot *s;

		req = ++ans_req;
		pthread_mutex_lock(&f->rs_mu);
		s = &ans[req % ANS_SLOTS];
		if (s->req)
			req = 0; /* every slot taken: this frame's files get checksums */
		else
			*s = (struct ans_slot){ .req = req };
		pthread_mutex_unlock(&f->rs_mu);
	}
	op->fh = req;
	fused_repl_submit(f, op, w->blob, used, NULL, NULL);
	op->fh = 0;
	if (req) /* every sender holds the stream lock: the last seq sent is this frame's */
		l->fr[l->fr_n++] = (struct rs_asked){ req, atomic_load(&f->seq_sent), l->cur_first,
						      l->cur_in };
	if (l) {
		l->cur_first = l->names.n;
		l->cur_in = 0;
		l->cur_want = false;
	}
}

void fused_rs_list_resolve(struct walker *w, struct rs_list *l, size_t i, bool wait)
{
	struct fused *f = w->f;

	while (l->fr_done < l->fr_n && l->fr[l->fr_done].first <= i) {
		struct rs_asked *a = &l->fr[l->fr_done];
		struct ans_slot *s = &ans[a->req % ANS_SLOTS];
		uint64_t bits = 0;
		bool got = false, acked = false;

		pthread_mutex_lock(&f->rs_mu);
		for (;;) {
			/* the acked seq first: the reader records an answer before the ack after it */
			acked = atomic_load(&f->seq_acked) >= a->seq;
			if (s->req == a->req && s->answered) {
				bits = s->bits;
				got = true;
				break;
			}
			if (acked || !wait || !fused_rs_live(w))
				break;
			fused_cond_wait_ms(&f->rs_cv, &f->rs_mu, 5);
		}
		if (!got && !acked && !wait) {
			pthread_mutex_unlock(&f->rs_mu);
			return; /* not decided yet */
		}
		l->fr_done++;
		if (s->req == a->req)
			s->req = 0;
		pthread_mutex_unlock(&f->rs_mu);
		if (!got) {
			if (fused_rs_live(w) && !atomic_load(&ans_seen) && !ans_off) {
				ans_off = true;
				sk_info("resync: the peer does not answer listings (an older skfused?): "
					"block checksums for every file");
			}
			continue;
		}
		bits &= a->in;
		while (bits) {
			int k = __builtin_ctzll(bits);
			size_t idx = a->first + (size_t)__builtin_popcountll(a->in & ((1ull << k) - 1));

			bits &= bits - 1;
			if (idx < l->names.n && (l->st[idx] & ST_REG))
				l->st[idx] |= ST_EMPTY;
		}
	}
}


uint64_t fused_rs_empty_answers(uint64_t *refused)
{
	*refused = atomic_load(&ans_refused);
	return atomic_load(&ans_seen);
}
