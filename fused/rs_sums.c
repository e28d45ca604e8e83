/* fused/rs_sums.c: the full resync's checksum requests sent ahead, several in flight, for the files of a listing that the peer holds with data. */
#include "fused.h"
#include "resync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/*
 * A file the peer holds with data is compared by the checksums of its blocks, which cost a
 * round trip: one file after the other, that round trip was the pace (2242 files/s here). So
 * the walker asks for the first window of the next files of a directory before it needs them
 * (FUSED_RS_AHEAD at most, or SUMS_HASH_MAX bytes the peer has to read and hash before it acks
 * anything after them, so a live operation behind them still meets its budget), and reads its
 * own data only when it comes to the file, as before.
 *
 * Why sums asked earlier are still right: the peer hashes its copy at the request's place in
 * the stream; the walker reads its data later, under the stream lock, and sends every block
 * whose hash differs. Every live operation between the two was applied to both copies, and an
 * operation on a file's bytes sets some of them and keeps the others, so applying it again
 * changes nothing: where our block now equals the peer's block as it was, the peer's block
 * now equals ours too. Anything else is sent. This is the argument of the one request in
 * flight before (live writes came between its answer and the data as well); the gap is longer.
 *
 * The lookahead stops at a directory, so a subdirectory's walk starts with nothing in flight
 * and the requests of one directory at a time are outstanding.
 *
 * Answers are hostile: the ack reader (repl.c) hands over an answer no synchronous request
 * waits for; it is taken only if its id is one asked and not answered yet (the rest is counted
 * and ignored); one that is not what was asked (another offset, more blocks than the window)
 * drops the peer as rejected when the walker takes it. In sync mode the peer answers before
 * the ack that covers the request, so an ack past it without an answer means none is coming:
 * the file's window then goes whole (only more data, never less).
 */
#define SUMS_SLOTS 64                      /* requests in flight at most (ids mod this) */
#define SUMS_WIN_BLOCKS 64u                /* blocks of a window (resync.c's WINDOW) */
#define SUMS_HASH_MAX ((uint64_t)8 << 20)  /* bytes in flight the peer must hash */
#define SUMS_ID_BASE ((uint64_t)1 << 62)   /* apart from fused_repl_ask's ids */

static struct sums_slot {
	uint64_t req;  /* 0: free */
	uint64_t seq;  /* the request's frame in the stream */
	uint64_t hash; /* bytes the peer hashes for it */
	bool answered;
	uint64_t off, file_size;
	uint32_t count;
	int32_t err;
	uint8_t sums[SUMS_WIN_BLOCKS * SK_RMSG_SUM_LEN];
} slots[SUMS_SLOTS];
static uint64_t sums_req;        /* walker: the last id */
static size_t sums_inflight;     /* walker */
static uint64_t sums_hash;       /* walker: bytes in flight to hash */
static bool sums_off;            /* walker: SKFUSED_RS_SUMS_AHEAD=0 */
static atomic_uint_fast64_t sums_refused, sums_unanswered;

/* rs_mu held (repl.c's fused_repl_on_sums, after the synchronous request's match). */
void fused_rs_on_sums(struct fused *f, const struct sk_rmsg_sums *s)
{
	struct sums_slot *sl = &slots[s->req % SUMS_SLOTS];
	uint32_t keep;

	if (s->req < SUMS_ID_BASE || sl->req != s->req || sl->answered) {
		atomic_fetch_add(&sums_refused, 1); /* not asked, or answered twice: ignored */
		return;
	}
	keep = s->count < SUMS_WIN_BLOCKS ? s->count : SUMS_WIN_BLOCKS;
	memcpy(sl->sums, s->sums, (size_t)keep * SK_RMSG_SUM_LEN);
	sl->off = s->off;
	sl->file_size = s->file_size; /* 0: the peer's copy is empty, the file goes whole */
	sl->count = s->count; /* checked by the walker: more than asked drops the peer */
	sl->err = s->err;
	sl->answered = true;
	pthread_cond_broadcast(&f->rs_cv);
}

void fused_rs_sums_reset(struct fused *f)
{
	const char *e = getenv("SKFUSED_RS_SUMS_AHEAD");

	pthread_mutex_lock(&f->rs_mu);
	memset(slots, 0, sizeof(slots));
	pthread_mutex_unlock(&f->rs_mu);
	sums_inflight = 0;
	sums_hash = 0;
	sums_off = e && !strcmp(e, "0"); /* the A/B against one request at a time */
	atomic_store(&sums_refused, 0);
	atomic_store(&sums_unanswered, 0);
	atomic_store(&fused_rs_stats.asked_peak, 0);
}

uint64_t fused_rs_sums_refused(uint64_t *unanswered)
{
	*unanswered = atomic_load(&sums_unanswered);
	return atomic_load(&sums_refused);
}

/* One request of this directory given up (its answer, if it comes, is refused). */
static void drop(struct fused *f, struct rs_ahead_ent *e)
{
	struct sums_slot *sl = &slots[e->req % SUMS_SLOTS];

	pthread_mutex_lock(&f->rs_mu);
	if (sl->req == e->req) {
		sums_hash -= sl->hash;
		sl->req = 0;
	}
	pthread_mutex_unlock(&f->rs_mu);
	sums_inflight--;
	if (e->fd >= 0)
		close(e->fd);
	e->fd = -1;
}

void fused_rs_ahead_free(struct fused *f, struct rs_ahead *a)
{
	for (size_t k = a->head; k < a->tail; k++)
		drop(f, &a->q[k % FUSED_RS_AHEAD]);
	a->head = a->tail = 0;
}

/* Sends the request for the first window of fd (stream lock held); false if it cannot go. */
static bool ask(struct walker *w, struct rs_ahead *a, size_t idx, int fd, uint64_t size)
{
	struct fused *f = w->f;
	struct sk_rmsg_op q = { .type = SK_RMSG_RS_SUMSREQ, .len = SUMS_WIN_BLOCKS * SK_RMSG_BLOCK };
	struct sums_slot *sl;
	uint64_t req = SUMS_ID_BASE + ++sums_req, hash, seq = 0;
	int pl;

	hash = size < q.len ? size : q.len;
	sl = &slots[req % SUMS_SLOTS];
	pthread_mutex_lock(&f->rs_mu);
	if (sl->req) { /* every slot taken (a slow answer): the walker asks for itself */
		pthread_mutex_unlock(&f->rs_mu);
		return false;
	}
	*sl = (struct sums_slot){ .req = req, .hash = hash };
	pthread_mutex_unlock(&f->rs_mu);
	pthread_mutex_lock(&f->stream_mu);
	pl = atomic_load(&f->connected) ? fused_fd_path(f, fd, w->path, sizeof(w->path)) : -1;
	if (pl >= 0) {
		uint64_t before = atomic_load(&f->seq_sent);

		q.path1 = w->path;
		q.path1_len = (uint16_t)pl;
		q.fh = req;
		fused_repl_submit(f, &q, NULL, 0, NULL, NULL);
		/* every sender holds the stream lock: the last seq sent is this frame's */
		if (atomic_load(&f->seq_sent) != before)
			seq = atomic_load(&f->seq_sent);
	}
	pthread_mutex_unlock(&f->stream_mu);
	pthread_mutex_lock(&f->rs_mu);
	if (!seq) { /* not sent: the slot is free again */
		sl->req = 0;
		pthread_mutex_unlock(&f->rs_mu);
		return false;
	}
	sl->seq = seq;
	pthread_mutex_unlock(&f->rs_mu);
	sums_hash += hash;
	a->q[a->tail++ % FUSED_RS_AHEAD] = (struct rs_ahead_ent){ .idx = idx, .fd = fd, .req = req };
	if (++sums_inflight > atomic_load(&fused_rs_stats.asked_peak))
		atomic_store(&fused_rs_stats.asked_peak, sums_inflight);
	atomic_fetch_add(&fused_rs_stats.asked, 1);
	return true;
}

void fused_rs_ahead_fill(struct walker *w, struct rs_list *l, struct rs_ahead *a, int dfd, size_t i)
{
	if (sums_off || w->shallow)
		return;
	if (a->next < i)
		a->next = i;
	while (a->next < l->names.n && a->tail - a->head < FUSED_RS_AHEAD &&
	       sums_inflight < SUMS_SLOTS && sums_hash < SUMS_HASH_MAX && fused_rs_live(w)) {
		size_t j = a->next;
		struct stat st = { 0 };
		int fd;

		if (l->st[j] & ST_DIR)
			return; /* its walk starts with nothing in flight */
		if (!(l->st[j] & ST_REG)) {
			a->next++;
			continue;
		}
		fused_rs_list_resolve(w, l, j, true);
		if (l->st[j] & ST_EMPTY) { /* goes whole: nothing to ask */
			a->next++;
			continue;
		}
		fd = openat(dfd, l->names.v[j], O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0) {
			a->next++;
			continue;
		}
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
			close(fd);
			if (S_ISDIR(st.st_mode))
				return; /* replaced by a directory: the walker comes to it */
			a->next++; /* the walker opens it again when it comes to it */
			continue;
		}
		if (!ask(w, a, j, fd, (uint64_t)st.st_size)) {
			close(fd);
			return;
		}
		a->next++;
	}
}

int fused_rs_ahead_take(struct walker *w, struct rs_ahead *a, size_t i)
{
	struct rs_ahead_ent *e;
	int fd;

	while (a->head < a->tail && a->q[a->head % FUSED_RS_AHEAD].idx < i)
		drop(w->f, &a->q[a->head++ % FUSED_RS_AHEAD]); /* not taken: not expected */
	if (a->head == a->tail || a->q[a->head % FUSED_RS_AHEAD].idx != i)
		return -ENOENT;
	e = &a->q[a->head % FUSED_RS_AHEAD];
	fd = e->fd;
	e->fd = -1; /* the caller's now; the request stays until fused_rs_ahead_sums */
	return fd;
}

int fused_rs_ahead_sums(struct walker *w, struct rs_ahead *a, struct sk_rmsg_sums *s)
{
	struct fused *f = w->f;
	struct rs_ahead_ent *e = &a->q[a->head++ % FUSED_RS_AHEAD];
	struct sums_slot *sl = &slots[e->req % SUMS_SLOTS];
	bool got = false, acked = false, bad = false;

	pthread_mutex_lock(&f->rs_mu);
	for (;;) {
		/* the acked seq first: the reader records an answer before the ack after it */
		acked = f->mode == SK_REPL_SYNC && atomic_load(&f->seq_acked) >= sl->seq;
		if (sl->req == e->req && sl->answered) {
			got = true;
			break;
		}
		if (acked || !fused_rs_live(w))
			break;
		fused_cond_wait_ms(&f->rs_cv, &f->rs_mu, 50);
	}
	*s = (struct sk_rmsg_sums){ .req = e->req, .err = EIO };
	if (got) {
		bad = sl->off != 0 || sl->count > SUMS_WIN_BLOCKS;
		s->off = sl->off;
		s->file_size = sl->file_size;
		s->count = sl->count;
		s->err = sl->err;
		memcpy(w->sums, sl->sums, (size_t)(sl->count < SUMS_WIN_BLOCKS ? sl->count : SUMS_WIN_BLOCKS) *
						 SK_RMSG_SUM_LEN);
		s->sums = w->sums;
	}
	pthread_mutex_unlock(&f->rs_mu);
	drop(f, e);
	if (bad) {
		atomic_fetch_add(&f->rejected, 1);
		fused_peer_lost(f, w->gen, "checksums answer not as asked");
		return -EBADMSG;
	}
	if (!got) {
		if (!fused_rs_live(w))
			return -ECONNRESET;
		atomic_fetch_add(&sums_unanswered, 1); /* acked without: its window goes whole */
	}
	return 0;
}
