/* fused/dirty.c: the primary's persistent dirty set: merged extents and marks per file handle, an append-only checked log, replay and compaction. */
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

/*
 * Log file, host byte order (it never leaves this node).
 * Header, 32 bytes: "SKDIRTY1" | base u64 | salt u64 | check u64 (FNV-1a of bytes 0..23).
 * Record, 120 bytes: type u8 | hlen u8 | plen u8 | zero u8 | flags u32 | htype i32 | ptype i32 |
 *   a u64 | b u64 | c u64 | d u64 | h[32] | p[32] | check u64 (FNV-1a of bytes 0..111, keyed by salt).
 *   ADD   h (+ parent p), flags, extent [a, a+b)
 *   LIVE  as ADD, counted only if seq d of connection c was not acknowledged
 *   DROP  h was taken by a resync on connection c as ticket d (its state so far)
 *   SENT  ticket d of connection c went out as far as seq a
 *   ACK   connection c acknowledged up to seq d
 *   STATE a = TRACKING | SYNCED | CLOSED
 *   LOST  tracking is lost (a = reason code, informative)
 */
#define HDR_LEN 32
#define REC_LEN 120
#define MAGIC "SKDIRTY1"
enum { T_ADD = 1, T_LIVE, T_DROP, T_SENT, T_ACK, T_STATE, T_LOST };
enum { S_TRACKING = 1, S_SYNCED, S_CLOSED };

#define RING 4096    /* >= frames in flight (fused.h FUSED_RING) */
#define NOTE_MAX 4   /* changes per operation */
#define ACKS_MAX 64  /* connections remembered while replaying */
#define EXT_LIMIT (1ull << 62)

struct ext {
	uint64_t off, end;
};

struct ent {
	struct fused_dh h;
	uint32_t flags;
	uint32_t n_ext, cap_ext;
	struct ext *ext;
	uint32_t next; /* hash chain: index + 1, 0 ends */
	bool used;
};

struct rslot {
	uint64_t conn, seq;
	unsigned n;
	struct fused_dnote note[NOTE_MAX];
};

struct taken {
	uint64_t ticket, conn, seq; /* seq UINT64_MAX: not sent yet */
	struct fused_dentry e;
};

struct fused_dirty {
	pthread_mutex_t mu;
	struct fused_dirty_conf c;
	char path[4200], tmp[4200], dir[4096];
	int fd;
	uint64_t base, salt, nonce;
	uint64_t log_bytes, snap_bytes;
	bool unsynced;
	bool tracking, lost;
	const char *why;

	struct ent *ents;
	size_t n_ents, cap_ents, live;  /* live: used entries */
	size_t n_dirs_over;             /* entries past max_entries (per-directory marks) */
	uint32_t *hb;
	size_t hmask;
	uint32_t free_head;             /* index + 1 */
	size_t cursor;

	struct rslot *ring;
	uint64_t lost_gen;              /* connections up to this one are over */
	struct taken *tk;
	size_t n_tk, cap_tk;
	uint64_t next_ticket;
};

static uint64_t fnv(const void *p, size_t n, uint64_t seed)
{
	const uint8_t *b = p;
	uint64_t h = 14695981039346656037ull ^ seed;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

static uint64_t rnd64(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
		v = (uint64_t)time(NULL) * 6364136223846793005ull ^ (uint64_t)getpid();
	return v;
}

void fused_dirty_conf_env(struct fused_dirty_conf *c)
{
	const char *s;

	c->max_entries = 1000000;
	c->max_extents = 64;
	c->max_log_bytes = 1ull << 30;
	if ((s = getenv("SKFUSED_DIRTY_MAX")) && strtoull(s, NULL, 10) >= 1)
		c->max_entries = (size_t)strtoull(s, NULL, 10);
	if ((s = getenv("SKFUSED_DIRTY_EXTENTS")) && strtoul(s, NULL, 10) >= 1)
		c->max_extents = (unsigned)strtoul(s, NULL, 10);
}

/* ---- the set ---- */

static size_t hslot(const struct fused_dirty *d, const struct fused_dh *h)
{
	return (size_t)fnv(h->b, h->len, (uint64_t)(uint32_t)h->type) & d->hmask;
}

static bool dh_eq(const struct fused_dh *a, const struct fused_dh *b)
{
	return a->type == b->type && a->len == b->len && !memcmp(a->b, b->b, a->len);
}

static struct ent *find(struct fused_dirty *d, const struct fused_dh *h, uint32_t **link)
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
static void ent_remove(struct fused_dirty *d, struct ent *e, struct fused_dentry *out)
{
	uint32_t *pp;
	size_t i = (size_t)(e - d->ents);

	find(d, &e->h, &pp);
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

static void set_lost(struct fused_dirty *d, const char *why)
{
	if (!d->lost)
		sk_warn("dirty tracking lost (%s): the next resync compares the whole tree", why);
	d->lost = true;
	d->why = why;
}

/* Merge [off, end) into e's sorted extents; past the bound the file goes whole. */
static void ext_add(struct fused_dirty *d, struct ent *e, uint64_t off, uint64_t end)
{
	uint32_t i = 0, j;

	if (e->flags & FUSED_DF_WHOLE)
		return;
	while (i < e->n_ext && e->ext[i].end < off)
		i++;
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
	if (e->n_ext + 1 > d->c.max_extents) {
		free(e->ext);
		e->ext = NULL;
		e->n_ext = e->cap_ext = 0;
		e->flags |= FUSED_DF_WHOLE;
		return;
	}
	if (e->n_ext == e->cap_ext) {
		uint32_t nc = e->cap_ext ? e->cap_ext * 2 : 2;
		struct ext *ne = realloc(e->ext, nc * sizeof(*ne));

		if (!ne) {
			free(e->ext);
			e->ext = NULL;
			e->n_ext = e->cap_ext = 0;
			e->flags |= FUSED_DF_WHOLE;
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
static void apply(struct fused_dirty *d, const struct fused_dnote *n)
{
	struct ent *e;

	if (d->lost || !n->h.len)
		return;
	e = find(d, &n->h, NULL);
	if (!e) {
		bool dir = n->flags & FUSED_DF_DIR;

		if (d->live >= d->c.max_entries && !dir && n->parent.len) {
			struct fused_dnote p = { .h = n->parent, .flags = FUSED_DF_DIR | FUSED_DF_WALK };

			return apply(d, &p);
		}
		if (d->live >= 2 * d->c.max_entries) {
			set_lost(d, "more changed objects than the bound");
			return;
		}
		if (d->live >= d->c.max_entries)
			d->n_dirs_over++;
		if (!(e = ent_new(d, &n->h))) {
			set_lost(d, "out of memory");
			return;
		}
	}
	e->flags |= n->flags & FUSED_DF__ALL;
	if (n->len)
		ext_add(d, e, n->off, n->len > EXT_LIMIT - n->off ? EXT_LIMIT : n->off + n->len);
}

static void dentry_merge(struct fused_dirty *d, const struct fused_dentry *x)
{
	struct fused_dnote n = { .h = x->h, .flags = x->flags };

	apply(d, &n);
	for (uint32_t i = 0; i < x->n_ext; i++) {
		n.flags = x->flags & FUSED_DF_DIR;
		n.off = x->ext[i].off;
		n.len = x->ext[i].end - x->ext[i].off;
		apply(d, &n);
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

/* ---- the log ---- */

static void rec_fill(uint8_t *r, uint64_t salt, uint8_t type, const struct fused_dnote *n,
		     uint64_t a, uint64_t b, uint64_t c, uint64_t dd)
{
	uint64_t ck;

	memset(r, 0, REC_LEN);
	r[0] = type;
	if (n) {
		r[1] = n->h.len;
		r[2] = n->parent.len;
		memcpy(r + 4, &n->flags, 4);
		memcpy(r + 8, &n->h.type, 4);
		memcpy(r + 12, &n->parent.type, 4);
		memcpy(r + 48, n->h.b, n->h.len);
		memcpy(r + 80, n->parent.b, n->parent.len);
	}
	memcpy(r + 16, &a, 8);
	memcpy(r + 24, &b, 8);
	memcpy(r + 32, &c, 8);
	memcpy(r + 40, &dd, 8);
	ck = fnv(r, REC_LEN - 8, salt);
	memcpy(r + REC_LEN - 8, &ck, 8);
}

/* Append records (lock held). A log that cannot be written means tracking is lost. */
static void log_put(struct fused_dirty *d, const uint8_t *recs, size_t n)
{
	if (d->fd < 0 || d->lost)
		return;
	if (d->log_bytes + n * REC_LEN > d->c.max_log_bytes) {
		set_lost(d, "tracking file over its bound");
		return;
	}
	if (sk_write_all(d->fd, recs, n * REC_LEN) < 0) {
		set_lost(d, "cannot write the tracking file");
		return;
	}
	d->log_bytes += n * REC_LEN;
	d->unsynced = true;
}

static void log_one(struct fused_dirty *d, uint8_t type, const struct fused_dnote *n, uint64_t a,
		    uint64_t b, uint64_t c, uint64_t dd)
{
	uint8_t r[REC_LEN];

	rec_fill(r, d->salt, type, n, a, b, c, dd);
	log_put(d, r, 1);
}

static void log_note(struct fused_dirty *d, uint8_t type, const struct fused_dnote *n,
		     uint64_t c, uint64_t dd)
{
	log_one(d, type, n, n->off, n->len, c, dd);
}

/*
 * The entry's whole state as ADD records, in batches of up to 64: to fd (snapshot; *total
 * counts) or, if fd < 0, appended to the log (lock held).
 */
static int ent_emit(struct fused_dirty *d, int fd, uint64_t *total, const struct fused_dh *h,
		    uint32_t flags, const struct ext *ext, uint32_t n_ext)
{
	struct fused_dnote n = { .h = *h, .flags = flags };
	uint8_t buf[64 * REC_LEN];
	size_t k = 0;
	int rc = 0;

	rec_fill(buf, d->salt, T_ADD, &n, 0, 0, 0, 0);
	k++;
	n.flags = flags & FUSED_DF_DIR;
	for (uint32_t i = 0; rc == 0 && i <= n_ext; i++) {
		if (k == 64 || (i == n_ext && k)) {
			if (fd >= 0) {
				rc = sk_write_all(fd, buf, k * REC_LEN);
				*total += k * REC_LEN;
			} else {
				log_put(d, buf, k);
			}
			k = 0;
		}
		if (i < n_ext)
			rec_fill(buf + k++ * REC_LEN, d->salt, T_ADD, &n, ext[i].off,
				 ext[i].end - ext[i].off, 0, 0);
	}
	return rc;
}

/* Write a fresh log holding the set (and a state), atomically replacing the old one (lock held). */
static int snapshot(struct fused_dirty *d, int state)
{
	uint8_t hdr[HDR_LEN], *buf = NULL;
	uint64_t ck, total = HDR_LEN;
	int fd, dfd, rc = 0;

	d->salt = rnd64();
	memcpy(hdr, MAGIC, 8);
	memcpy(hdr + 8, &d->base, 8);
	memcpy(hdr + 16, &d->salt, 8);
	ck = fnv(hdr, 24, 0);
	memcpy(hdr + 24, &ck, 8);
	fd = open(d->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = sk_write_all(fd, hdr, HDR_LEN);
	buf = malloc(REC_LEN);
	if (!buf)
		rc = -ENOMEM;
	for (size_t i = 0; rc == 0 && !d->lost && i < d->n_ents; i++)
		if (d->ents[i].used)
			rc = ent_emit(d, fd, &total, &d->ents[i].h, d->ents[i].flags, d->ents[i].ext,
				      d->ents[i].n_ext);
	if (rc == 0 && !d->lost) {
		rec_fill(buf, d->salt, T_STATE, NULL, (uint64_t)state, 0, 0, 0);
		rc = sk_write_all(fd, buf, REC_LEN);
		total += REC_LEN;
	} else if (rc == 0) {
		rec_fill(buf, d->salt, T_LOST, NULL, 0, 0, 0, 0);
		rc = sk_write_all(fd, buf, REC_LEN);
		total += REC_LEN;
	}
	free(buf);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(d->tmp, d->path) < 0)
		rc = -errno;
	if ((dfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	if (rc < 0) {
		unlink(d->tmp);
		return rc;
	}
	if (d->fd >= 0)
		close(d->fd);
	d->fd = open(d->path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (d->fd < 0)
		return -errno;
	d->log_bytes = d->snap_bytes = total;
	d->unsynced = false;
	return 0;
}

/* ---- replay ---- */

struct rp_drop {
	uint64_t conn, ticket, seq;
	bool sent;
	struct fused_dentry e;
};

struct replay {
	struct { uint64_t conn, seq; } acks[ACKS_MAX];
	size_t n_acks;
	struct rp_drop *drops;
	size_t n_drops, cap_drops;
	struct { uint64_t conn, seq; struct fused_dnote n; } *lives;
	size_t n_lives, cap_lives;
};

static uint64_t rp_acked(const struct replay *rp, uint64_t conn)
{
	for (size_t i = 0; i < rp->n_acks; i++)
		if (rp->acks[i].conn == conn)
			return rp->acks[i].seq;
	return 0;
}

static void *grow(void *p, size_t *cap, size_t need, size_t sz)
{
	size_t nc;
	void *np;

	if (need <= *cap)
		return p;
	nc = *cap ? *cap * 2 : 64;
	np = realloc(p, nc * sz);
	if (np)
		*cap = nc;
	return np;
}

/* One checked record into the replay (lock held). false: refuse the file. */
static bool rp_record(struct fused_dirty *d, struct replay *rp, const uint8_t *r, int *state)
{
	struct fused_dnote n = { 0 };
	uint64_t a, b, c, dd, ck;

	memcpy(&ck, r + REC_LEN - 8, 8);
	if (ck != fnv(r, REC_LEN - 8, d->salt) || r[3] != 0)
		return false;
	memcpy(&a, r + 16, 8);
	memcpy(&b, r + 24, 8);
	memcpy(&c, r + 32, 8);
	memcpy(&dd, r + 40, 8);
	n.h.len = r[1];
	n.parent.len = r[2];
	memcpy(&n.flags, r + 4, 4);
	memcpy(&n.h.type, r + 8, 4);
	memcpy(&n.parent.type, r + 12, 4);
	if (n.h.len > FUSED_DH_MAX || n.parent.len > FUSED_DH_MAX || (n.flags & ~FUSED_DF__ALL))
		return false;
	memcpy(n.h.b, r + 48, n.h.len);
	memcpy(n.parent.b, r + 80, n.parent.len);
	n.off = a;
	n.len = b;
	switch (r[0]) {
	case T_ADD:
	case T_LIVE:
		if (!n.h.len || a > EXT_LIMIT || b > EXT_LIMIT)
			return false;
		if (r[0] == T_ADD) {
			apply(d, &n);
			return true;
		}
		if (!(rp->lives = grow(rp->lives, &rp->cap_lives, rp->n_lives + 1, sizeof(*rp->lives))))
			return false;
		rp->lives[rp->n_lives].conn = c;
		rp->lives[rp->n_lives].seq = dd;
		rp->lives[rp->n_lives++].n = n;
		return true;
	case T_DROP: {
		struct ent *e;
		struct rp_drop *x;

		if (!n.h.len)
			return false;
		if (!(rp->drops = grow(rp->drops, &rp->cap_drops, rp->n_drops + 1, sizeof(*rp->drops))))
			return false;
		x = &rp->drops[rp->n_drops++];
		memset(x, 0, sizeof(*x));
		x->conn = c;
		x->ticket = dd;
		x->e.h = n.h;
		if ((e = find(d, &n.h, NULL)))
			ent_remove(d, e, &x->e);
		return true;
	}
	case T_SENT:
		for (size_t i = rp->n_drops; i-- > 0;)
			if (rp->drops[i].conn == c && rp->drops[i].ticket == dd) {
				rp->drops[i].seq = a;
				rp->drops[i].sent = true;
				break;
			}
		return true;
	case T_ACK:
		for (size_t i = 0; i < rp->n_acks; i++)
			if (rp->acks[i].conn == c) {
				if (dd > rp->acks[i].seq)
					rp->acks[i].seq = dd;
				return true;
			}
		if (rp->n_acks < ACKS_MAX) /* more: those count as unacknowledged (safe) */
			rp->acks[rp->n_acks++] = (typeof(rp->acks[0])){ c, dd };
		return true;
	case T_STATE:
		if (a < S_TRACKING || a > S_CLOSED)
			return false;
		*state = (int)a;
		return true;
	case T_LOST:
		set_lost(d, "the tracking file says tracking was lost");
		return true;
	default:
		return false;
	}
}

static const char *replay_file(struct fused_dirty *d)
{
	struct replay rp = { 0 };
	uint8_t hdr[HDR_LEN], *buf;
	const char *bad = NULL;
	uint64_t ck, off = HDR_LEN;
	int fd = open(d->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), state = 0;
	struct stat st;

	if (fd < 0)
		return errno == ENOENT ? "no tracking file (first start, or it was removed)" :
					 "cannot open the tracking file";
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > d->c.max_log_bytes) {
		close(fd);
		return "tracking file is not a regular file of a sane size";
	}
	if (pread(fd, hdr, HDR_LEN, 0) != HDR_LEN || memcmp(hdr, MAGIC, 8) != 0) {
		close(fd);
		return "tracking file has no valid header";
	}
	memcpy(&ck, hdr + 24, 8);
	if (ck != fnv(hdr, 24, 0)) {
		close(fd);
		return "tracking file header checksum mismatch";
	}
	memcpy(&d->base, hdr + 8, 8);
	memcpy(&d->salt, hdr + 16, 8);
	buf = malloc(256 * REC_LEN);
	if (!buf) {
		close(fd);
		return "out of memory";
	}
	for (;;) {
		ssize_t n = pread(fd, buf, 256 * REC_LEN, (off_t)off);

		if (n < 0) {
			bad = "cannot read the tracking file";
			break;
		}
		/* a torn last record (a machine crash in the middle of a write) ends the log */
		for (ssize_t i = 0; i + REC_LEN <= n; i += REC_LEN)
			if (!rp_record(d, &rp, buf + i, &state)) {
				bad = "corrupt record in the tracking file";
				break;
			}
		if (bad || n < 256 * REC_LEN)
			break;
		off += (uint64_t)n;
	}
	free(buf);
	close(fd);
	if (!bad) {
		for (size_t i = 0; i < rp.n_lives; i++)
			if (rp.lives[i].seq > rp_acked(&rp, rp.lives[i].conn))
				apply(d, &rp.lives[i].n);
		for (size_t i = 0; i < rp.n_drops; i++)
			if (!rp.drops[i].sent || rp.drops[i].seq > rp_acked(&rp, rp.drops[i].conn))
				dentry_merge(d, &rp.drops[i].e);
		if (state == S_SYNCED)
			bad = "skfused stopped without a clean stop while the peer was in sync "
			      "(what was in flight then was not recorded)";
		else if (!state)
			bad = "tracking file has no state record";
	}
	for (size_t i = 0; i < rp.n_drops; i++)
		fused_dentry_free(&rp.drops[i].e);
	free(rp.drops);
	free(rp.lives);
	return bad;
}

/* ---- public ---- */

int fused_dirty_open(const char *state_dir, const struct fused_dirty_conf *c,
		     struct fused_dirty **out, const char **why)
{
	struct fused_dirty *d = calloc(1, sizeof(*d));
	const char *bad;

	*why = NULL;
	if (!d || !(d->ring = calloc(RING, sizeof(*d->ring)))) {
		free(d);
		return -ENOMEM;
	}
	pthread_mutex_init(&d->mu, NULL);
	d->c = *c;
	if (d->c.max_entries < 1)
		d->c.max_entries = 1;
	if (d->c.max_extents < 1)
		d->c.max_extents = 1;
	if (d->c.max_log_bytes < 1 << 20)
		d->c.max_log_bytes = 1 << 20;
	d->fd = -1;
	d->nonce = rnd64();
	snprintf(d->dir, sizeof(d->dir), "%s", state_dir);
	snprintf(d->path, sizeof(d->path), "%s/dirty", state_dir);
	snprintf(d->tmp, sizeof(d->tmp), "%s/dirty.tmp", state_dir);
	if (rehash(d) < 0) {
		fused_dirty_close(d);
		return -ENOMEM;
	}
	pthread_mutex_lock(&d->mu);
	bad = replay_file(d);
	if (bad) {
		set_lost(d, bad);
		/* nothing of it is trusted */
		for (size_t i = 0; i < d->n_ents; i++)
			if (d->ents[i].used)
				ent_remove(d, &d->ents[i], NULL);
		d->base = 0;
	}
	*why = d->lost ? d->why : NULL;
	d->tracking = true;
	if (snapshot(d, S_TRACKING) < 0)
		set_lost(d, "cannot write the tracking file");
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
		log_one(d, T_STATE, NULL, S_CLOSED, 0, 0, 0);
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

bool fused_dirty_tracking(struct fused_dirty *d)
{
	bool v;

	pthread_mutex_lock(&d->mu);
	v = d->tracking;
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
	if (!d->lost) {
		log_one(d, T_LOST, NULL, 0, 0, 0, 0);
		set_lost(d, why);
	}
	pthread_mutex_unlock(&d->mu);
}

void fused_dirty_note(struct fused_dirty *d, const struct fused_dnote *n, unsigned count,
		      uint64_t conn, uint64_t seq)
{
	if (!count)
		return;
	if (count > NOTE_MAX)
		count = NOTE_MAX;
	pthread_mutex_lock(&d->mu);
	if (conn && conn > d->lost_gen) {
		struct rslot *s = &d->ring[seq % RING];

		s->conn = conn;
		s->seq = seq;
		s->n = count;
		memcpy(s->note, n, count * sizeof(*n));
		if (d->tracking)
			for (unsigned i = 0; i < count; i++)
				log_note(d, T_LIVE, &n[i], d->nonce + conn, seq);
	} else if (d->tracking) {
		for (unsigned i = 0; i < count; i++) {
			apply(d, &n[i]);
			log_note(d, T_ADD, &n[i], 0, 0);
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
			dentry_merge(d, &t->e);
			ent_emit(d, -1, NULL, &t->e.h, t->e.flags, (const struct ext *)t->e.ext,
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
		log_one(d, T_STATE, NULL, S_TRACKING, 0, 0, 0);
	}
	for (unsigned i = 0; i < RING; i++) {
		struct rslot *s = &d->ring[i];

		if (s->conn == conn && s->seq > acked)
			for (unsigned k = 0; k < s->n; k++) {
				apply(d, &s->note[k]);
				log_note(d, T_ADD, &s->note[k], 0, 0);
			}
		if (s->conn == conn)
			s->conn = 0;
	}
	requeue(d, conn, acked);
	log_one(d, T_ACK, NULL, 0, 0, d->nonce + conn, acked);
	pthread_mutex_unlock(&d->mu);
}

void fused_dirty_acked(struct fused_dirty *d, uint64_t conn, uint64_t acked)
{
	size_t k = 0;

	pthread_mutex_lock(&d->mu);
	if (conn > d->lost_gen) {
		log_one(d, T_ACK, NULL, 0, 0, d->nonce + conn, acked);
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

int fused_dirty_sync(struct fused_dirty *d)
{
	int rc = 0;

	pthread_mutex_lock(&d->mu);
	if (d->unsynced && d->fd >= 0) {
		rc = fdatasync(d->fd) < 0 ? -errno : 0;
		d->unsynced = false;
	}
	pthread_mutex_unlock(&d->mu);
	return rc;
}

int fused_dirty_maybe_compact(struct fused_dirty *d)
{
	int rc = 0;

	pthread_mutex_lock(&d->mu);
	if (!d->lost && d->n_tk == 0 && d->log_bytes > (64u << 20) && d->log_bytes > 4 * d->snap_bytes) {
		rc = snapshot(d, S_TRACKING);
		if (rc < 0)
			set_lost(d, "cannot compact the tracking file");
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
		if (!(d->tk = grow(d->tk, &d->cap_tk, d->n_tk + 1, sizeof(*d->tk)))) {
			d->n_tk = d->cap_tk = 0;
			set_lost(d, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
		t = &d->tk[d->n_tk];
		ent_remove(d, x, &t->e);
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
		log_one(d, T_DROP, &(struct fused_dnote){ .h = t->e.h }, 0, 0, d->nonce + conn, t->ticket);
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
			log_one(d, T_SENT, NULL, seq, 0, d->nonce + conn, ticket);
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
			ent_remove(d, &d->ents[i], NULL);
	for (size_t i = 0; i < d->n_tk; i++)
		fused_dentry_free(&d->tk[i].e);
	d->n_tk = 0;
	d->n_dirs_over = 0;
	d->base = base;
	d->lost = false;
	d->why = NULL;
	d->tracking = false;
	rc = snapshot(d, S_SYNCED);
	if (rc < 0) {
		d->tracking = true;
		set_lost(d, "cannot write the tracking file");
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
