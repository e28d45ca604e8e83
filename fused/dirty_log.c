/* fused/dirty_log.c: the dirty tracker's log file: checked fixed-size records appended before replies, replay of a hostile file into the set, atomic compaction. */
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

/* ---- the log ---- */

void dirty_rec_fill(uint8_t *r, uint64_t salt, uint8_t type, const struct fused_dnote *n,
		     uint64_t a, uint64_t b, uint64_t c, uint64_t dd)
{
	uint64_t ck;

	memset(r, 0, REC_LEN);
	r[0] = type;
	if (n) {
		uint32_t fl = n->flags & FUSED_DF__ALL;

		r[1] = n->h.len;
		r[2] = n->parent.len;
		memcpy(r + 4, &fl, 4);
		memcpy(r + 8, &n->h.type, 4);
		memcpy(r + 12, &n->parent.type, 4);
		memcpy(r + 48, n->h.b, n->h.len);
		memcpy(r + 80, n->parent.b, n->parent.len);
	}
	memcpy(r + 16, &a, 8);
	memcpy(r + 24, &b, 8);
	memcpy(r + 32, &c, 8);
	memcpy(r + 40, &dd, 8);
	ck = dirty_fnv(r, REC_LEN - 8, salt);
	memcpy(r + REC_LEN - 8, &ck, 8);
}

/* Append records (lock held). A log that cannot be written means tracking is lost. */
void dirty_log_put(struct fused_dirty *d, const uint8_t *recs, size_t n)
{
	if (d->fd < 0 || d->lost)
		return;
	if (d->log_bytes + n * REC_LEN > d->c.max_log_bytes) {
		dirty_set_lost(d, "tracking file over its bound");
		return;
	}
	if (sk_write_all(d->fd, recs, n * REC_LEN) < 0) {
		dirty_set_lost(d, "cannot write the tracking file");
		return;
	}
	d->log_bytes += n * REC_LEN;
	/*
	 * In sync (the activity log) nothing needs a flush at the application's fsync: the peer
	 * acknowledged every frame before it, and a kill -9 needs only the write() (the page
	 * cache outlives the process). A machine crash is refused at replay (the boot differs).
	 */
	if (d->tracking)
		d->put_gen++;
}

void dirty_log_one(struct fused_dirty *d, uint8_t type, const struct fused_dnote *n, uint64_t a,
		    uint64_t b, uint64_t c, uint64_t dd)
{
	uint8_t r[REC_LEN];

	dirty_rec_fill(r, d->salt, type, n, a, b, c, dd);
	dirty_log_put(d, r, 1);
}

void dirty_log_note(struct fused_dirty *d, uint8_t type, const struct fused_dnote *n,
		     uint64_t c, uint64_t dd)
{
	dirty_log_one(d, type, n, n->off, n->len, c, dd);
}

/*
 * The entry's whole state as ADD records, in batches of up to 64: to fd (snapshot; *total
 * counts) or, if fd < 0, appended to the log (lock held).
 */
int dirty_ent_emit(struct fused_dirty *d, int fd, uint64_t *total, const struct fused_dh *h,
		    uint32_t flags, const struct ext *ext, uint32_t n_ext)
{
	struct fused_dnote n = { .h = *h, .flags = flags };
	uint8_t buf[64 * REC_LEN];
	size_t k = 0;
	int rc = 0;

	dirty_rec_fill(buf, d->salt, T_ADD, &n, 0, 0, 0, 0);
	k++;
	n.flags = flags & FUSED_DF_DIR;
	for (uint32_t i = 0; rc == 0 && i <= n_ext; i++) {
		if (k == 64 || (i == n_ext && k)) {
			if (fd >= 0) {
				rc = sk_write_all(fd, buf, k * REC_LEN);
				*total += k * REC_LEN;
			} else {
				dirty_log_put(d, buf, k);
			}
			k = 0;
		}
		if (i < n_ext)
			dirty_rec_fill(buf + k++ * REC_LEN, d->salt, T_ADD, &n, ext[i].off,
				 ext[i].end - ext[i].off, 0, 0);
	}
	return rc;
}

/* Write a fresh log holding the set (and a state), atomically replacing the old one (lock held). */
int dirty_snapshot(struct fused_dirty *d, int state, bool durable)
{
	uint8_t hdr[HDR_LEN], *buf = NULL;
	uint64_t ck, total = HDR_LEN;
	int fd, dfd, rc = 0;

	d->salt = dirty_rnd64();
	memcpy(hdr, MAGIC, 8);
	memcpy(hdr + 8, &d->base, 8);
	memcpy(hdr + 16, &d->salt, 8);
	ck = dirty_fnv(hdr, 24, 0);
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
			rc = dirty_ent_emit(d, fd, &total, &d->ents[i].h, d->ents[i].flags, d->ents[i].ext,
				      d->ents[i].n_ext);
	if (rc == 0 && !d->lost) {
		dirty_rec_fill(buf, d->salt, T_STATE, NULL, (uint64_t)state, d->boot, 0, 0);
		rc = sk_write_all(fd, buf, REC_LEN);
		total += REC_LEN;
	} else if (rc == 0) {
		dirty_rec_fill(buf, d->salt, T_LOST, NULL, 0, 0, 0, 0);
		rc = sk_write_all(fd, buf, REC_LEN);
		total += REC_LEN;
	}
	free(buf);
	if (rc == 0 && durable && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(d->tmp, d->path) < 0)
		rc = -errno;
	if (durable && (dfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
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
	if (durable)
		d->synced_gen = d->put_gen; /* what was tracked is in the fsync'd snapshot */
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

void *dirty_grow(void *p, size_t *cap, size_t need, size_t sz)
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
static bool rp_record(struct fused_dirty *d, struct replay *rp, const uint8_t *r, int *state,
		      uint64_t *boot)
{
	struct fused_dnote n = { 0 };
	uint64_t a, b, c, dd, ck;

	memcpy(&ck, r + REC_LEN - 8, 8);
	if (ck != dirty_fnv(r, REC_LEN - 8, d->salt) || r[3] != 0)
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
			dirty_apply(d, &n);
			return true;
		}
		if (!(rp->lives = dirty_grow(rp->lives, &rp->cap_lives, rp->n_lives + 1, sizeof(*rp->lives))))
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
		if (!(rp->drops = dirty_grow(rp->drops, &rp->cap_drops, rp->n_drops + 1, sizeof(*rp->drops))))
			return false;
		x = &rp->drops[rp->n_drops++];
		memset(x, 0, sizeof(*x));
		x->conn = c;
		x->ticket = dd;
		x->e.h = n.h;
		if ((e = dirty_find(d, &n.h, NULL)))
			dirty_ent_remove(d, e, &x->e);
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
		if (a < S_TRACKING || a > S_ALOG)
			return false;
		*state = (int)a;
		*boot = b;
		return true;
	case T_LOST:
		dirty_set_lost(d, "the tracking file says tracking was lost");
		return true;
	default:
		return false;
	}
}

const char *dirty_replay_file(struct fused_dirty *d)
{
	struct replay rp = { 0 };
	uint8_t hdr[HDR_LEN], *buf;
	const char *bad = NULL;
	uint64_t ck, off = HDR_LEN, boot = 0;
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
	if (ck != dirty_fnv(hdr, 24, 0)) {
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
			if (!rp_record(d, &rp, buf + i, &state, &boot)) {
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
		/* a clean stop in sync had nothing in flight: its activity log is history */
		for (size_t i = 0; i < rp.n_lives && state != S_CLOSED; i++)
			if (rp.lives[i].seq > rp_acked(&rp, rp.lives[i].conn))
				dirty_apply(d, &rp.lives[i].n);
		for (size_t i = 0; i < rp.n_drops; i++)
			if (!rp.drops[i].sent || rp.drops[i].seq > rp_acked(&rp, rp.drops[i].conn))
				dirty_dentry_merge(d, &rp.drops[i].e);
		if (state == S_SYNCED)
			bad = "skfused stopped without a clean stop while the peer was in sync "
			      "(what was in flight then was not recorded)";
		else if (state == S_ALOG && boot != d->boot)
			bad = "the activity log is from before the machine restarted (its last "
			      "records were not flushed: what was in flight is not known)";
		else if (!state)
			bad = "tracking file has no state record";
	}
	for (size_t i = 0; i < rp.n_drops; i++)
		fused_dentry_free(&rp.drops[i].e);
	free(rp.drops);
	free(rp.lives);
	return bad;
}

