/* fused/dirty.c: the primary's persistent dirty set: merged extents and marks per file handle, the ring of unacknowledged operations, what the resync takes and gives back (the log file itself: dirty_log.c). */
#include "dirty_int.h"
#include "dirty.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

uint64_t dirty_fnv(const void *p, size_t n, uint64_t seed)
{
	const uint8_t *b = p;
	uint64_t h = 14695981039346656037ull ^ seed;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

uint64_t dirty_rnd64(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
		v = (uint64_t)time(NULL) * 6364136223846793005ull ^ (uint64_t)getpid();
	return v;
}

/* This machine's boot, as a 64-bit hash of its boot id (never 0; 1 if it cannot be read). */
static uint64_t dirty_boot_id(void)
{
	char b[64];
	ssize_t n = -1;
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	uint64_t h;

	if (fd >= 0) {
		n = read(fd, b, sizeof(b));
		close(fd);
	}
	if (n <= 0)
		return 1;
	h = dirty_fnv(b, (size_t)n, 0x5eed);
	return h > 1 ? h : 2;
}

void fused_dirty_conf_env(struct fused_dirty_conf *c)
{
	const char *s;

	*c = (struct fused_dirty_conf){ 0 }; /* boot_id 0: this machine's */
	c->max_entries = 1000000;
	c->max_extents = 64;
	c->max_zone_runs = 16384;
	c->max_log_bytes = 1ull << 30;
	/* the activity log serves the incremental resync (the default): on with it, unless said otherwise */
	s = getenv("SKFUSED_RESYNC_INCREMENTAL");
	c->al = !s || !strcmp(s, "1");
	if ((s = getenv("SKFUSED_DIRTY_AL")))
		c->al = !strcmp(s, "1");
	if ((s = getenv("SKFUSED_DIRTY_MAX")) && strtoull(s, NULL, 10) >= 1)
		c->max_entries = (size_t)strtoull(s, NULL, 10);
	if ((s = getenv("SKFUSED_DIRTY_EXTENTS")) && strtoul(s, NULL, 10) >= 1)
		c->max_extents = (unsigned)strtoul(s, NULL, 10);
	if ((s = getenv("SKFUSED_DIRTY_ZONE_RUNS")))
		c->max_zone_runs = (unsigned)strtoul(s, NULL, 10);
}

/* ---- the set ---- */

static size_t hslot(const struct fused_dirty *d, const struct fused_dh *h)
{
	return (size_t)dirty_fnv(h->b, h->len, (uint64_t)(uint32_t)h->type) & d->hmask;
}

static bool dh_eq(const struct fused_dh *a, const struct fused_dh *b)
{
	return a->type == b->type && a->len == b->len && !memcmp(a->b, b->b, a->len);
}

struct ent *dirty_find(struct fused_dirty *d, const struct fused_dh *h, uint32_t **link)
{
	uint32_t *pp = &d->hb[hslot(d, h)];

	while (*pp && !dh_eq(&d->ents[*pp - 1].h, h))
		pp = &d->ents[*pp - 1].next;
	if (link)
		*link = pp;
	return *pp ? &d->ents[*pp - 1] : NULL;
}

static int rehash(struct fused_dirty *d)
{
	size_t nm = d->hmask ? d->hmask * 2 + 1 : 1023;
	uint32_t *nb = calloc(nm + 1, sizeof(*nb));

	if (!nb)
		return -ENOMEM;
	free(d->hb);
	d->hb = nb;
	d->hmask = nm;
	for (size_t i = 0; i < d->n_ents; i++) {
		struct ent *e = &d->ents[i];
		size_t s;

		if (!e->used)
			continue;
		s = hslot(d, &e->h);
		e->next = d->hb[s];
		d->hb[s] = (uint32_t)i + 1;
	}
	return 0;
}

static struct ent *ent_new(struct fused_dirty *d, const struct fused_dh *h)
{
	struct ent *e;
	size_t i, s;

	if (d->live + 1 > d->hmask && rehash(d) < 0)
		return NULL;
	if (d->free_head) {
		i = d->free_head - 1;
		d->free_head = d->ents[i].next;
	} else {
		if (d->n_ents == d->cap_ents) {
			size_t nc = d->cap_ents ? d->cap_ents * 2 : 1024;
			struct ent *ne = realloc(d->ents, nc * sizeof(*ne));

			if (!ne)
				return NULL;
			d->ents = ne;
			d->cap_ents = nc;
		}
		i = d->n_ents++;
	}
	e = &d->ents[i];
	memset(e, 0, sizeof(*e));
	e->h = *h;
	e->used = true;
	s = hslot(d, h);
	e->next = d->hb[s];
	d->hb[s] = (uint32_t)i + 1;
	d->live++;
	return e;
}

/* Unhash and free e's slot; its extents are handed to the caller (or freed if out is NULL). */
void dirty_ent_remove(struct fused_dirty *d, struct ent *e, struct fused_dentry *out)
{
	uint32_t *pp;
	size_t i = (size_t)(e - d->ents);

	dirty_find(d, &e->h, &pp);
	*pp = e->next;
	if (out) {
		out->h = e->h;
		out->flags = e->flags;
		out->n_ext = e->n_ext;
		out->ext = (void *)e->ext;
	} else {
		free(e->ext);
	}
	memset(e, 0, sizeof(*e));
	e->next = d->free_head;
	d->free_head = (uint32_t)i + 1;
	d->live--;
}

void dirty_set_lost(struct fused_dirty *d, const char *why)
{
	atomic_fetch_add(&d->dgen_all, 1); /* a change may go unnoted: every read ahead is stale */
	if (!d->lost)
		sk_warn("dirty tracking lost (%s): the next resync compares the whole tree", why);
	d->lost = true;
	d->why = why;
}

static void go_whole(struct ent *e)
{
	free(e->ext);
	e->ext = NULL;
	e->n_ext = e->cap_ext = 0;
	e->flags |= FUSED_DF_WHOLE;
}

/*
 * Zones of the next size: every extent rounded out to them, neighbours that then touch merged
 * (a superset of what was tracked: more may be sent, never less). false past the largest.
 */
static bool zone_up(struct ent *e)
{
	uint8_t zs = e->zshift ? e->zshift + 1 : ZONE_SHIFT_MIN;
	uint64_t z = (uint64_t)1 << zs;
	uint32_t k = 0;

	if (zs > ZONE_SHIFT_MAX)
		return false;
	for (uint32_t i = 0; i < e->n_ext; i++) {
		uint64_t off = e->ext[i].off & ~(z - 1), end = (e->ext[i].end + z - 1) & ~(z - 1);

		if (k && e->ext[k - 1].end >= off)
			e->ext[k - 1].end = end;
		else
			e->ext[k++] = (struct ext){ off, end };
	}
	e->n_ext = k;
	e->zshift = zs;
	return true;
}

/*
 * Merge [off, end) into e's sorted extents. Past max_extents the file counts in zones
 * (zone_up), past max_zone_runs of those in larger zones, past the largest it goes whole.
 */
static void ext_add(struct fused_dirty *d, struct ent *e, uint64_t off, uint64_t end)
{
	uint32_t i, j, lo = 0, hi;

	if (e->flags & FUSED_DF_WHOLE)
		return;
	if (e->zshift) {
		uint64_t z = (uint64_t)1 << e->zshift;

		off &= ~(z - 1);
		end = (end + z - 1) & ~(z - 1); /* end <= EXT_LIMIT: no overflow */
	}
	/* the first extent that ends at or after off (they are sorted and disjoint) */
	hi = e->n_ext;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (e->ext[mid].end < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	i = lo;
	j = i;
	while (j < e->n_ext && e->ext[j].off <= end) {
		if (e->ext[j].off < off)
			off = e->ext[j].off;
		if (e->ext[j].end > end)
			end = e->ext[j].end;
		j++;
	}
	if (j > i) { /* [i, j) collapse into one */
		e->ext[i] = (struct ext){ off, end };
		memmove(&e->ext[i + 1], &e->ext[j], (e->n_ext - j) * sizeof(struct ext));
		e->n_ext -= j - i - 1;
		return;
	}
	if (e->n_ext + 1 > (e->zshift ? d->c.max_zone_runs : d->c.max_extents)) {
		if (!d->c.max_zone_runs || !zone_up(e)) {
			go_whole(e);
			return;
		}
		ext_add(d, e, off, end); /* again at the new size: one level per zone size at most */
		return;
	}
	if (e->n_ext == e->cap_ext) {
		uint32_t nc = e->cap_ext ? e->cap_ext * 2 : 2;
		struct ext *ne = realloc(e->ext, nc * sizeof(*ne));

		if (!ne) {
			go_whole(e);
			return;
		}
		e->ext = ne;
		e->cap_ext = nc;
	}
	memmove(&e->ext[i + 1], &e->ext[i], (e->n_ext - i) * sizeof(struct ext));
	e->ext[i] = (struct ext){ off, end };
	e->n_ext++;
}

/* Into the set (lock held). Past the bounds: the directory instead, then tracking lost. */
void dirty_apply(struct fused_dirty *d, const struct fused_dnote *n)
{
	struct ent *e;

	if (d->lost || !n->h.len)
		return;
	e = dirty_find(d, &n->h, NULL);
	if (!e) {
		bool dir = n->flags & FUSED_DF_DIR;

		if (d->live >= d->c.max_entries && !dir && n->parent.len) {
			struct fused_dnote p = { .h = n->parent, .flags = FUSED_DF_DIR | FUSED_DF_WALK };

			return dirty_apply(d, &p);
		}
		if (d->live >= 2 * d->c.max_entries) {
			dirty_set_lost(d, "more changed objects than the bound");
			return;
		}
		if (d->live >= d->c.max_entries)
			d->n_dirs_over++;
		if (!(e = ent_new(d, &n->h))) {
			dirty_set_lost(d, "out of memory");
			return;
		}
	}
	e->flags |= n->flags & FUSED_DF__ALL;
	if (n->len)
		ext_add(d, e, n->off, n->len > EXT_LIMIT - n->off ? EXT_LIMIT : n->off + n->len);
}

void dirty_dentry_merge(struct fused_dirty *d, const struct fused_dentry *x)
{
	struct fused_dnote n = { .h = x->h, .flags = x->flags };

	dirty_apply(d, &n);
	for (uint32_t i = 0; i < x->n_ext; i++) {
		n.flags = x->flags & FUSED_DF_DIR;
		n.off = x->ext[i].off;
		n.len = x->ext[i].end - x->ext[i].off;
		dirty_apply(d, &n);
	}
}

void fused_dentry_free(struct fused_dentry *e)
{
	if (e) {
		free(e->ext);
		e->ext = NULL;
		e->n_ext = 0;
	}
}

/* ---- public ---- */

int fused_dirty_open(const char *state_dir, const struct fused_dirty_conf *c,
		     struct fused_dirty **out, const char **why)
{
	struct fused_dirty *d = calloc(1, sizeof(*d));
	const char *bad;
	bool missing;

	*why = NULL;
	if (!d || !(d->ring = calloc(RING, sizeof(*d->ring)))) {
		free(d);
		return -ENOMEM;
	}
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->flushed, NULL);
	d->c = *c;
	d->boot = c->boot_id ? c->boot_id : dirty_boot_id();
	if (d->c.max_entries < 1)
		d->c.max_entries = 1;
	if (d->c.max_extents < 1)
		d->c.max_extents = 1;
	if (d->c.max_log_bytes < 1 << 20)
		d->c.max_log_bytes = 1 << 20;
	d->fd = -1;
	d->nonce = dirty_rnd64();
	snprintf(d->dir, sizeof(d->dir), "%s", state_dir);
	snprintf(d->path, sizeof(d->path), "%s/dirty", state_dir);
	snprintf(d->tmp, sizeof(d->tmp), "%s/dirty.tmp", state_dir);
	if (rehash(d) < 0) {
		fused_dirty_close(d);
		return -ENOMEM;
	}
	pthread_mutex_lock(&d->mu);
	missing = access(d->path, F_OK) < 0 && errno == ENOENT;
	bad = dirty_replay_file(d);
	if (bad && missing && d->c.fresh_base) {
		/* a secondary in sync taking over: its copy is the shared one, nothing tracked yet */
		d->base = d->c.fresh_base;
		bad = NULL;
	}
	if (bad) {
		dirty_set_lost(d, bad);
		/* nothing of it is trusted */
		for (size_t i = 0; i < d->n_ents; i++)
			if (d->ents[i].used)
				dirty_ent_remove(d, &d->ents[i], NULL);
		d->base = 0;
	}
	*why = d->lost ? d->why : NULL;
	if (!d->lost && d->live)
		sk_info("dirty tracking resumed from the tracking file: %zu objects to resync", d->live);
	d->tracking = true;
	if (dirty_snapshot(d, S_TRACKING, true) < 0)
		dirty_set_lost(d, "cannot write the tracking file");
	*why = d->lost ? d->why : NULL;
	pthread_mutex_unlock(&d->mu);
	*out = d;
	return 0;
}

void fused_dirty_close(struct fused_dirty *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	if (!d->tracking && !d->lost)
		dirty_log_one(d, T_STATE, NULL, S_CLOSED, d->boot, 0, 0);
	if (d->fd >= 0) {
		fdatasync(d->fd);
		close(d->fd);
	}
	for (size_t i = 0; i < d->n_ents; i++)
		free(d->ents[i].used ? d->ents[i].ext : NULL);
	for (size_t i = 0; i < d->n_tk; i++)
		fused_dentry_free(&d->tk[i].e);
	free(d->tk);
	free(d->ents);
	free(d->hb);
	free(d->ring);
	pthread_mutex_unlock(&d->mu);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->flushed);
	free(d);
}

bool fused_dirty_lost(struct fused_dirty *d)
{
	bool v;

	pthread_mutex_lock(&d->mu);
	v = d->lost;
	pthread_mutex_unlock(&d->mu);
	return v;
}

const char *fused_dirty_lost_why(struct fused_dirty *d)
{
	const char *v;

	pthread_mutex_lock(&d->mu);
	v = d->lost ? (d->why ? d->why : "unknown") : NULL;
	pthread_mutex_unlock(&d->mu);
	return v;
}

bool fused_dirty_tracking(struct fused_dirty *d)
{
	bool v;

	pthread_mutex_lock(&d->mu);
	v = d->tracking;
	pthread_mutex_unlock(&d->mu);
	return v;
}

bool fused_dirty_unmoved(struct fused_dirty *d, const struct fused_dh *h)
{
	struct ent *e;
	bool v;

	pthread_mutex_lock(&d->mu);
	v = d->tracking && !d->lost;
	/* a directory: not moved or walked (names changed in it leave it where it was) */
	if (v && (e = dirty_find(d, h, NULL)))
		v = !(e->flags & ((e->flags & FUSED_DF_DIR) ? FUSED_DF_WALK : FUSED_DF_WHOLE | FUSED_DF_DIR));
	pthread_mutex_unlock(&d->mu);
	return v;
}

uint64_t fused_dirty_base(struct fused_dirty *d)
{
	uint64_t v;

	pthread_mutex_lock(&d->mu);
	v = d->base;
	pthread_mutex_unlock(&d->mu);
	return v;
}

void fused_dirty_set_lost(struct fused_dirty *d, const char *why)
{
	pthread_mutex_lock(&d->mu);
	atomic_fetch_add(&d->dgen_all, 1);
	if (!d->lost) {
		dirty_log_one(d, T_LOST, NULL, 0, 0, 0, 0);
		dirty_set_lost(d, why);
	}
	pthread_mutex_unlock(&d->mu);
}

/* LIVE records for the notes not logged yet, one write (lock held). */
static void log_live(struct fused_dirty *d, const struct fused_dnote *n, unsigned count,
		     uint64_t conn, uint64_t seq)
{
	uint8_t r[NOTE_MAX * REC_LEN];
	size_t k = 0;

	for (unsigned i = 0; i < count && i < NOTE_MAX; i++)
		if (!(n[i].flags & FUSED_DF_PRE))
			dirty_rec_fill(r + k++ * REC_LEN, d->salt, T_LIVE, &n[i], n[i].off, n[i].len,
				       d->nonce + conn, seq);
	if (k)
		dirty_log_put(d, r, k);
}

/*
 * The activity log starts afresh (lock held, peer in sync): a snapshot (ALOG) holding the
 * ring's notes of connection conn as LIVE records. What they held is a superset of what is
 * in flight (the ring does not know the acks), so a restart resends a little more.
 */
static void al_rotate(struct fused_dirty *d, uint64_t conn)
{
	/* SYNCED until the ring is in (replayed alone it means lost): a log cut short by a
	 * machine crash never passes for a complete one */
	if (dirty_snapshot(d, S_SYNCED, false) < 0) {
		dirty_set_lost(d, "cannot write the tracking file");
		return;
	}
	for (unsigned i = 0; i < RING; i++) {
		struct rslot *s = &d->ring[i];
		struct fused_dnote c[NOTE_MAX];

		if (s->conn != conn || !s->n)
			continue;
		memcpy(c, s->note, s->n * sizeof(*c));
		for (unsigned k = 0; k < s->n; k++)
			c[k].flags &= ~FUSED_DF_PRE;
		log_live(d, c, s->n, conn, s->seq);
	}
	dirty_log_one(d, T_STATE, NULL, S_ALOG, d->boot, 0, 0);
}

void fused_dirty_prelog(struct fused_dirty *d, struct fused_dnote *n, unsigned count,
			uint64_t conn, uint64_t seq_first)
{
	if (!count || !conn)
		return;
	pthread_mutex_lock(&d->mu);
	if (conn > d->lost_gen && (d->tracking || d->c.al) && !d->lost) {
		log_live(d, n, count, conn, seq_first);
		for (unsigned i = 0; i < count; i++) {
			n[i].flags |= FUSED_DF_PRE;
			n[i].seq_pre = seq_first;
		}
	}
	pthread_mutex_unlock(&d->mu);
}

static size_t dgen_slot(const struct fused_dh *h)
{
	return (size_t)(dirty_fnv(h->b, h->len, (uint64_t)(uint32_t)h->type) >> 7) & (DIRTY_DGEN_SLOTS - 1);
}

uint64_t fused_dirty_data_gen(struct fused_dirty *d, const struct fused_dh *h)
{
	return atomic_load(&d->dgen[dgen_slot(h)]) + atomic_load(&d->dgen_all);
}

void fused_dirty_note(struct fused_dirty *d, const struct fused_dnote *n, unsigned count,
		      uint64_t conn, uint64_t seq)
{
	if (!count)
		return;
	if (count > NOTE_MAX)
		count = NOTE_MAX;
	pthread_mutex_lock(&d->mu);
	for (unsigned i = 0; i < count; i++)
		if (!(n[i].flags & FUSED_DF_DIR))
			atomic_fetch_add(&d->dgen[dgen_slot(&n[i].h)], 1);
	if (conn && conn > d->lost_gen) {
		struct rslot *s = &d->ring[seq % RING];

		s->conn = conn;
		s->seq = seq;
		s->n = count;
		memcpy(s->note, n, count * sizeof(*n));
		if (d->tracking || d->c.al) {
			log_live(d, n, count, conn, seq);
			/* an operation of several frames: its last one is what counts */
			for (unsigned i = 0; i < count; i++)
				if ((n[i].flags & FUSED_DF_PRE) && n[i].seq_pre != seq)
					dirty_log_note(d, T_LIVE, &n[i], d->nonce + conn, seq);
		}
		if (!d->tracking && d->c.al && !d->lost && d->log_bytes > d->snap_bytes + AL_ROTATE)
			al_rotate(d, conn);
	} else if (d->tracking) {
		for (unsigned i = 0; i < count; i++) {
			dirty_apply(d, &n[i]);
			dirty_log_note(d, T_ADD, &n[i], 0, 0);
		}
	}
	pthread_mutex_unlock(&d->mu);
}

/* Everything taken on conn and not known acknowledged goes back into the set (lock held). */
static void requeue(struct fused_dirty *d, uint64_t conn, uint64_t acked)
{
	size_t k = 0;

	for (size_t i = 0; i < d->n_tk; i++) {
		struct taken *t = &d->tk[i];

		if (t->conn != conn) {
			d->tk[k++] = *t;
			continue;
		}
		if (t->seq == UINT64_MAX || t->seq > acked) {
			dirty_dentry_merge(d, &t->e);
			dirty_ent_emit(d, -1, NULL, &t->e.h, t->e.flags, (const struct ext *)t->e.ext,
				 t->e.n_ext);
		}
		fused_dentry_free(&t->e);
	}
	d->n_tk = k;
}

void fused_dirty_peer_lost(struct fused_dirty *d, uint64_t conn, uint64_t acked)
{
	pthread_mutex_lock(&d->mu);
	if (conn > d->lost_gen)
		d->lost_gen = conn;
	if (!d->tracking) {
		d->tracking = true;
		dirty_log_one(d, T_STATE, NULL, S_TRACKING, d->boot, 0, 0);
	}
	for (unsigned i = 0; i < RING; i++) {
		struct rslot *s = &d->ring[i];

		if (s->conn == conn && s->seq > acked)
			for (unsigned k = 0; k < s->n; k++) {
				dirty_apply(d, &s->note[k]);
				dirty_log_note(d, T_ADD, &s->note[k], 0, 0);
			}
		if (s->conn == conn)
			s->conn = 0;
	}
	requeue(d, conn, acked);
	dirty_log_one(d, T_ACK, NULL, 0, 0, d->nonce + conn, acked);
	pthread_mutex_unlock(&d->mu);
}

void fused_dirty_acked(struct fused_dirty *d, uint64_t conn, uint64_t acked)
{
	size_t k = 0;

	pthread_mutex_lock(&d->mu);
	if (conn > d->lost_gen) {
		dirty_log_one(d, T_ACK, NULL, 0, 0, d->nonce + conn, acked);
		for (size_t i = 0; i < d->n_tk; i++) {
			struct taken *t = &d->tk[i];

			if (t->conn == conn && t->seq != UINT64_MAX && t->seq <= acked)
				fused_dentry_free(&t->e);
			else
				d->tk[k++] = *t;
		}
		d->n_tk = k;
	}
	pthread_mutex_unlock(&d->mu);
}

/*
 * Group commit, the flush outside the lock (operations keep logging meanwhile): a caller whose
 * records a running flush may not cover waits for it, then flushes what is left if no one has.
 */
int fused_dirty_sync(struct fused_dirty *d)
{
	uint64_t want;
	int rc = 0, fd;

	pthread_mutex_lock(&d->mu);
	want = d->put_gen;
	while (d->flushing && d->synced_gen < want)
		pthread_cond_wait(&d->flushed, &d->mu);
	if (d->synced_gen >= want || d->fd < 0) {
		pthread_mutex_unlock(&d->mu);
		return 0;
	}
	want = d->put_gen; /* records written up to here are in the file: the flush covers them */
	fd = fcntl(d->fd, F_DUPFD_CLOEXEC, 0); /* a snapshot may replace d->fd meanwhile */
	if (fd < 0) {
		rc = -errno;
		pthread_mutex_unlock(&d->mu);
		return rc;
	}
	d->flushing = true;
	d->flushes++;
	pthread_mutex_unlock(&d->mu);
	rc = fdatasync(fd) < 0 ? -errno : 0;
	close(fd);
	pthread_mutex_lock(&d->mu);
	d->flushing = false;
	if (rc == 0 && want > d->synced_gen)
		d->synced_gen = want;
	pthread_cond_broadcast(&d->flushed);
	pthread_mutex_unlock(&d->mu);
	return rc;
}

int fused_dirty_maybe_compact(struct fused_dirty *d)
{
	int rc = 0;

	pthread_mutex_lock(&d->mu);
	if (!d->lost && d->n_tk == 0 && d->log_bytes > (64u << 20) && d->log_bytes > 4 * d->snap_bytes) {
		rc = dirty_snapshot(d, S_TRACKING, true);
		if (rc < 0)
			dirty_set_lost(d, "cannot compact the tracking file");
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}

int fused_dirty_take(struct fused_dirty *d, bool dirs, uint64_t conn, struct fused_dentry *e,
		     uint64_t *ticket)
{
	int rc = 0;

	memset(e, 0, sizeof(*e));
	pthread_mutex_lock(&d->mu);
	if (conn <= d->lost_gen) {
		rc = -ECONNRESET;
		goto out;
	}
	for (size_t k = 0; k < d->n_ents; k++) {
		size_t i = (d->cursor + k) % d->n_ents;
		struct ent *x = &d->ents[i];
		struct taken *t;

		if (!x->used || !(x->flags & FUSED_DF_DIR) != !dirs)
			continue;
		if (!(d->tk = dirty_grow(d->tk, &d->cap_tk, d->n_tk + 1, sizeof(*d->tk)))) {
			d->n_tk = d->cap_tk = 0;
			dirty_set_lost(d, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
		t = &d->tk[d->n_tk];
		dirty_ent_remove(d, x, &t->e);
		t->conn = conn;
		t->seq = UINT64_MAX;
		t->ticket = ++d->next_ticket;
		*e = t->e;
		e->ext = NULL;
		if (t->e.n_ext) {
			e->ext = malloc(t->e.n_ext * sizeof(*e->ext));
			if (!e->ext) { /* the caller sends it whole */
				e->n_ext = 0;
				e->flags |= FUSED_DF_WHOLE;
			} else {
				memcpy(e->ext, t->e.ext, t->e.n_ext * sizeof(*e->ext));
			}
		}
		d->n_tk++;
		dirty_log_one(d, T_DROP, &(struct fused_dnote){ .h = t->e.h }, 0, 0, d->nonce + conn, t->ticket);
		*ticket = t->ticket;
		d->cursor = i;
		rc = 1;
		break;
	}
out:
	pthread_mutex_unlock(&d->mu);
	return rc;
}

void fused_dirty_sent(struct fused_dirty *d, uint64_t ticket, uint64_t conn, uint64_t seq)
{
	pthread_mutex_lock(&d->mu);
	for (size_t i = 0; i < d->n_tk; i++)
		if (d->tk[i].ticket == ticket && d->tk[i].conn == conn) {
			d->tk[i].seq = seq;
			dirty_log_one(d, T_SENT, NULL, seq, 0, d->nonce + conn, ticket);
			break;
		}
	pthread_mutex_unlock(&d->mu);
}

int fused_dirty_clear(struct fused_dirty *d, uint64_t conn, uint64_t base)
{
	int rc = 0;

	pthread_mutex_lock(&d->mu);
	if (conn <= d->lost_gen) {
		rc = -ECONNRESET;
		goto out;
	}
	for (size_t i = 0; i < d->n_ents; i++)
		if (d->ents[i].used)
			dirty_ent_remove(d, &d->ents[i], NULL);
	for (size_t i = 0; i < d->n_tk; i++)
		fused_dentry_free(&d->tk[i].e);
	d->n_tk = 0;
	d->n_dirs_over = 0;
	d->base = base;
	d->lost = false;
	d->why = NULL;
	d->tracking = false;
	rc = dirty_snapshot(d, d->c.al ? S_ALOG : S_SYNCED, true);
	if (rc < 0) {
		d->tracking = true;
		dirty_set_lost(d, "cannot write the tracking file");
	}
out:
	pthread_mutex_unlock(&d->mu);
	return rc;
}

void fused_dirty_get_stats(struct fused_dirty *d, struct fused_dirty_stats *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_lock(&d->mu);
	for (int pass = 0; pass < 2; pass++) {
		size_t n = pass ? d->n_tk : d->n_ents;

		for (size_t i = 0; i < n; i++) {
			const struct fused_dh *h;
			uint32_t fl, ne;
			const struct ext *x;

			if (pass) {
				h = &d->tk[i].e.h;
				fl = d->tk[i].e.flags;
				ne = d->tk[i].e.n_ext;
				x = (const struct ext *)d->tk[i].e.ext;
			} else {
				if (!d->ents[i].used)
					continue;
				h = &d->ents[i].h;
				fl = d->ents[i].flags;
				ne = d->ents[i].n_ext;
				x = d->ents[i].ext;
			}
			(void)h;
			if (fl & FUSED_DF_DIR) {
				s->dirs++;
				continue;
			}
			s->files++;
			if (fl & FUSED_DF_WHOLE)
				s->whole++;
			for (uint32_t k = 0; k < ne; k++)
				s->bytes += x[k].end - x[k].off;
		}
	}
	s->log_bytes = d->log_bytes;
	s->flushes = d->flushes;
	s->lost = d->lost;
	pthread_mutex_unlock(&d->mu);
}

int fused_dirty_foreach(struct fused_dirty *d, int (*fn)(const struct fused_dentry *e, void *arg),
			void *arg)
{
	int rc = 0;

	pthread_mutex_lock(&d->mu);
	for (size_t i = 0; i < d->n_ents && !rc; i++) {
		struct ent *e = &d->ents[i];
		struct fused_dentry x;

		if (!e->used)
			continue;
		x.h = e->h;
		x.flags = e->flags;
		x.n_ext = e->n_ext;
		x.ext = (void *)e->ext;
		rc = fn(&x, arg);
	}
	for (size_t i = 0; i < d->n_tk && !rc; i++)
		rc = fn(&d->tk[i].e, arg);
	pthread_mutex_unlock(&d->mu);
	return rc;
}
