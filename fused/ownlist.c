/* fused/ownlist.c: a returning copy's own changes since the shared generation: the secondary names its kept dirty set by path and sends it (OWNLIST), the primary checks it as hostile input and adds it to its dirty set. */
#include "ownlist.h"
#include "dirty.h"
#include "recv.h"
#include "resync.h"
#include "rs_incr.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/*
 * Bounds of a list, both ends: entries and bytes of paths. Past them the secondary says
 * "unknown" (full resync); a primary receiving more refuses the rest (counted) and runs the
 * full resync. The primary merges a list on its ack reader (a few system calls per entry), so
 * the bound also bounds that pause: a returning primary's list holds what was in flight (at
 * most a ring of frames) and what it changed alone while its generation stayed the shared one. Whole files whose size the figures count by a stat: at most WHOLE_STAT_MAX.
 */
#define OWN_MAX 16384u
#define OWN_BYTES (4u << 20)
#define WHOLE_STAT_MAX 1024u

/* one tracked entry, copied out of the tracker (its lock is not held while we name it) */
struct own_ent {
	struct fused_dh h;
	uint32_t flags;
	uint64_t ext_bytes;
};

struct own_coll {
	struct own_ent *e;
	size_t n, cap;
	bool over;
};

static int collect(const struct fused_dentry *e, void *arg)
{
	struct own_coll *c = arg;

	if (c->n >= OWN_MAX) {
		c->over = true;
		return 1;
	}
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 256;
		struct own_ent *ne = realloc(c->e, nc * sizeof(*ne));

		if (!ne) {
			c->over = true;
			return 1;
		}
		c->e = ne;
		c->cap = nc;
	}
	c->e[c->n].h = e->h;
	c->e[c->n].flags = e->flags;
	c->e[c->n].ext_bytes = 0;
	for (uint32_t k = 0; k < e->n_ext; k++)
		c->e[c->n].ext_bytes += e->ext[k].end - e->ext[k].off;
	c->n++;
	return 0;
}

/* ---- secondary ---- */

static struct {
	pthread_mutex_t mu;
	struct fused_dirty *d;  /* the kept tracker (STATE/dirty), NULL if none */
	uint8_t *buf;           /* entries in wire form (kind u8 | len u16 | path) */
	size_t len;
	uint32_t n;
	bool unknown;
	uint64_t files, bytes;
} sec = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void sec_unknown(const char *why)
{
	sec.unknown = true;
	sec.files = sec.bytes = SK_GEN_UNKNOWN;
	sk_info("own changes since the shared generation: unknown (%s); a resync of this copy is a full one",
		why);
}

/* Name one kept entry and add it to the list; false: unknown. */
static bool sec_add(struct fused *f, const struct own_ent *e, unsigned *whole_stats)
{
	char path[SK_RMSG_PATH_MAX + 1];
	struct stat st;
	uint8_t kind;
	long w;
	int fd = fused_rs_open_dh(f, &e->h, &st), n;

	if (fd == -ESTALE || fd == -ENOENT)
		return true; /* removed since: the directory it was in is an entry of its own */
	if (fd < 0)
		return false;
	n = fused_fd_path(f, fd, path, sizeof(path));
	close(fd);
	if (n == -ENOENT)
		return true; /* unlinked since: as above */
	if (n < 0)
		return false;
	if (S_ISDIR(st.st_mode)) {
		kind = (e->flags & FUSED_DF_WALK) ? SK_OWN_WALK : SK_OWN_DIR;
	} else {
		kind = SK_OWN_FILE;
		sec.files++;
		if ((e->flags & FUSED_DF_WHOLE) && S_ISREG(st.st_mode) && (*whole_stats)++ < WHOLE_STAT_MAX)
			sec.bytes += (uint64_t)st.st_size;
		else
			sec.bytes += e->ext_bytes;
	}
	if (sec.n >= OWN_MAX || sec.len + 3 + (size_t)n > OWN_BYTES)
		return false;
	w = sk_rmsg_own_put(kind, path, (size_t)n, sec.buf + sec.len, OWN_BYTES - sec.len);
	if (w < 0)
		return false;
	sec.len += (size_t)w;
	sec.n++;
	return true;
}

void fused_own_open(struct fused *f, bool was_primary)
{
	struct fused_dirty_conf dc;
	struct own_coll c = { 0 };
	char p[PATH_MAX + 8];
	const char *why = NULL;
	unsigned whole_stats = 0;

	pthread_mutex_lock(&sec.mu);
	snprintf(p, sizeof(p), "%s/dirty", f->state_dir);
	if (access(p, F_OK) < 0) {
		/* a primary's copy without its tracking file: what it changed is not known */
		if (was_primary)
			sec_unknown("this copy was primary last and has no tracking file");
		goto out;
	}
	fused_dirty_conf_env(&dc);
	if (fused_dirty_open(f->state_dir, &dc, &sec.d, &why) < 0) {
		sec_unknown("out of memory");
		goto out;
	}
	if (why) {
		sec_unknown(why);
		goto out;
	}
	if (!(sec.buf = malloc(OWN_BYTES))) {
		sec_unknown("out of memory");
		goto out;
	}
	fused_dirty_foreach(sec.d, collect, &c);
	if (c.over) {
		sec_unknown("more changed objects than a list holds");
		goto out;
	}
	for (size_t i = 0; i < c.n; i++)
		if (!sec_add(f, &c.e[i], &whole_stats)) {
			sec_unknown("a changed object cannot be named, or the list is over its bounds");
			goto out;
		}
	if (sec.n)
		sk_info("own changes since the shared generation kept for the primary: %u paths, %llu files, "
			"%llu bytes", sec.n, (unsigned long long)sec.files, (unsigned long long)sec.bytes);
out:
	free(c.e);
	pthread_mutex_unlock(&sec.mu);
}

void fused_own_figures(uint64_t *files, uint64_t *bytes)
{
	pthread_mutex_lock(&sec.mu);
	*files = sec.files;
	*bytes = sec.bytes;
	pthread_mutex_unlock(&sec.mu);
}

int fused_own_send(struct fused *f, struct sk_chan *c, int sock)
{
	uint8_t hdr[SK_OWN_HDR];
	size_t at = 0;
	int rc = 0;

	pthread_mutex_lock(&sec.mu);
	do {
		size_t end = at;
		uint32_t k = 0;
		struct iovec iov[2];

		/* whole entries up to a frame's worth */
		while (!sec.unknown && end < sec.len) {
			size_t el = 3 + sk_get_u16(sec.buf + end + 1);

			if (end - at + el > SK_OWN_FRAME_MAX - SK_OWN_HDR)
				break;
			end += el;
			k++;
		}
		sk_rmsg_own_hdr((sec.unknown ? SK_OWN_F_UNKNOWN : 0) |
				(sec.unknown || end >= sec.len ? SK_OWN_F_LAST : 0), k, hdr);
		iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
		iov[1] = (struct iovec){ .iov_base = sec.buf ? sec.buf + at : hdr, .iov_len = end - at };
		if (fused_rx_send(c, sock, SK_RMSG_OWNLIST, 0, f->module_id, iov, 2) < 0)
			rc = -EPIPE;
		at = end;
	} while (rc == 0 && !sec.unknown && at < sec.len);
	pthread_mutex_unlock(&sec.mu);
	return rc;
}

void fused_own_done(struct fused *f)
{
	char p[PATH_MAX + 8];

	pthread_mutex_lock(&sec.mu);
	if (sec.d)
		fused_dirty_close(sec.d);
	sec.d = NULL;
	snprintf(p, sizeof(p), "%s/dirty", f->state_dir);
	if (unlink(p) == 0)
		sk_info("this copy's own changes are the primary's now: its tracking file is removed");
	free(sec.buf);
	sec.buf = NULL;
	sec.len = 0;
	sec.n = 0;
	sec.unknown = false;
	sec.files = sec.bytes = 0;
	pthread_mutex_unlock(&sec.mu);
}

void fused_own_close(void)
{
	pthread_mutex_lock(&sec.mu);
	if (sec.d)
		fused_dirty_close(sec.d);
	sec.d = NULL;
	free(sec.buf);
	sec.buf = NULL;
	pthread_mutex_unlock(&sec.mu);
}

/* ---- primary ---- */

static struct {
	pthread_mutex_t mu;
	uint64_t conn;          /* the connection the list belongs to */
	uint8_t *buf;           /* entries as received (checked) */
	size_t len;
	uint32_t n;
	bool complete, unknown;
	uint64_t refused;       /* entries past the bounds */
	uint64_t asked;         /* the connection whose START asked for the list */
	bool expect;            /* its GEN accepted the session: the list comes next */
} prim = { .mu = PTHREAD_MUTEX_INITIALIZER };

static bool own_merge(struct fused *f, uint8_t *buf, size_t len, uint32_t n);
/* prim.expect, readable without the lock: every ack passes fused_own_peer_frame */
static atomic_bool own_expect;

static void set_expect(bool v)
{
	prim.expect = v;
	atomic_store(&own_expect, v);
}

uint32_t fused_own_start(struct fused *f, uint64_t conn)
{
	(void)f;
	/* tracking lost: the resync is the full one, which needs no list */
	if (!fused_resync_incremental || !fused_dirty_g || fused_dirty_lost(fused_dirty_g))
		return 0;
	pthread_mutex_lock(&prim.mu);
	prim.asked = conn;
	prim.conn = conn;
	set_expect(false);
	prim.complete = prim.unknown = false;
	prim.len = 0;
	prim.n = 0;
	prim.refused = 0;
	pthread_mutex_unlock(&prim.mu);
	return SK_START_F_OWNLIST;
}

/* The list cannot be had: the incremental resync must not run on conn (lock held). */
static void own_fail(uint64_t conn, const char *why)
{
	if (prim.asked == conn && fused_dirty_g)
		fused_dirty_set_lost(fused_dirty_g, why);
	set_expect(false);
	prim.complete = true;
}

int fused_own_peer_frame(struct fused *f, uint64_t conn, uint8_t type, const uint8_t *p, size_t n)
{
	struct sk_gen_wire w;
	uint32_t fl, cnt;
	struct sk_rd r;
	uint8_t *buf = NULL;
	size_t len = 0;
	uint32_t k = 0;
	bool merge = false;
	int rc = 0;

	/* acks, and the secondary's "alive, busy" keepalives that its other thread may send between
	 * its GEN and its list, say nothing about the list: the acks' path takes no lock */
	if (type == SK_RMSG_ACK ||
	    (type != SK_RMSG_OWNLIST && type != SK_RMSG_GEN && !atomic_load(&own_expect)))
		return 0;
	pthread_mutex_lock(&prim.mu);
	if (type == SK_RMSG_OWNLIST && (prim.asked != conn || !prim.expect)) {
		rc = -EBADMSG; /* not asked for, before an accepting GEN, or after its last frame */
		goto out;
	}
	if (type != SK_RMSG_OWNLIST) {
		if (prim.asked == conn && prim.expect)
			/* an accepted session whose GEN is not followed by the list: an older skfused */
			own_fail(conn, "the peer sent no list of its own changes (an older skfused?)");
		else if (type == SK_RMSG_GEN && prim.asked == conn && !prim.complete &&
			 sk_gen_decode(p, n, &w) == 0 && w.verdict == SK_GEN_V_OK)
			set_expect(true); /* the list follows the GEN at once */
		goto out;
	}
	if (sk_rmsg_own_decode(p, n, &fl, &cnt, &r) < 0) {
		rc = -EBADMSG;
		goto out;
	}
	rc = 1;
	if (fl & SK_OWN_F_UNKNOWN)
		prim.unknown = true;
	if (!prim.buf && !(prim.buf = malloc(OWN_BYTES)))
		prim.unknown = true;
	if (prim.unknown || cnt > OWN_MAX - prim.n || r.left > OWN_BYTES - prim.len) {
		prim.refused += prim.unknown ? 0 : cnt;
		prim.unknown = true;
	} else {
		memcpy(prim.buf + prim.len, r.p, r.left);
		prim.len += r.left;
		prim.n += cnt;
	}
	if (!(fl & SK_OWN_F_LAST))
		goto out;
	if (prim.unknown) {
		if (prim.refused)
			sk_warn("resync: the peer's list of its own changes is over the bounds (%llu entries "
				"refused): full resync", (unsigned long long)prim.refused);
		else
			sk_info("resync: the peer cannot tell what it changed on its own since the shared "
				"generation: full resync");
		own_fail(conn, "the peer's own changes are not known");
		goto out;
	}
	set_expect(false);
	prim.complete = true;
	buf = prim.buf;
	len = prim.len;
	k = prim.n;
	prim.buf = NULL;
	merge = true;
out:
	pthread_mutex_unlock(&prim.mu);
	if (merge && !own_merge(f, buf, len, k))
		fused_dirty_set_lost(fused_dirty_g, "the peer's own changes cannot be tracked here");
	free(buf);
	return rc;
}

/* path[0..len) minus its last component (the root: len 0 stays 0). */
static size_t parent_len(const char *path, size_t len)
{
	while (len > 0 && path[len - 1] != '/')
		len--;
	return len ? len - 1 : 0;
}

/* Note the object at path (here) with flags; a directory's entries are flagged DIR. */
static int note_at(struct fused *f, int fd, const struct fused_dh *parent, uint32_t flags)
{
	struct fused_dnote n = { .flags = flags };
	int rc = fused_fd_dh(f, fd, &n.h);

	if (rc < 0)
		return rc;
	if (parent)
		n.parent = *parent;
	fused_dirty_note(fused_dirty_g, &n, 1, 0, 0);
	return 0;
}

/*
 * One entry of the peer's list, as the object at that path here:
 *  - a directory the peer changed names in is walked whole (compared by checksums, parents
 *    first): the peer may lack names we have (its own unlink, rename or rmdir in flight) whose
 *    data and subtrees nothing else here would send;
 *  - a regular file is sent whole;
 *  - a path that is not here has its nearest directory here listed (what the peer has there
 *    and we do not is removed; what we have there and it lacks comes from that directory's own
 *    entry in the list, which its namespace change made);
 *  - anything not of the kind the peer says, or not a regular file or directory: sent whole
 *    (walked, for a directory) and its directory's names listed.
 * Every path resolves beneath the root without following a symlink (fused_apply_open_path).
 * *up counts entries resolved to a directory above.
 */
static int own_note(struct fused *f, uint8_t kind, const char *path, size_t len, unsigned *up)
{
	char buf[SK_RMSG_PATH_MAX + 1];
	struct fused_dh pdh;
	struct stat st;
	bool moved = false, dir, odd;
	int fd, pfd, rc;

	memcpy(buf, path, len);
	buf[len] = '\0';
	for (;;) {
		rc = fused_apply_open_path(f->root_fd, buf, len, O_PATH | O_NOFOLLOW, &fd);
		if (rc == 0)
			break;
		if ((rc != -ENOENT && rc != -ENOTDIR && rc != -ELOOP) || len == 0)
			return rc;
		len = parent_len(buf, len);
		buf[len] = '\0';
		moved = true;
	}
	if (moved)
		(*up)++;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	dir = S_ISDIR(st.st_mode);
	if (moved && dir) {
		rc = note_at(f, fd, NULL, FUSED_DF_DIR | FUSED_DF_META | FUSED_DF_NS);
		close(fd);
		return rc;
	}
	odd = moved || (dir ? kind == SK_OWN_FILE : kind != SK_OWN_FILE || !S_ISREG(st.st_mode));
	if (dir && !odd) {
		rc = note_at(f, fd, NULL, FUSED_DF_DIR | FUSED_DF_META | FUSED_DF_WALK);
		close(fd);
		return rc;
	}
	/* the object's directory: its handle (a file's note carries it), its names listed if odd */
	len = parent_len(buf, len);
	buf[len] = '\0';
	rc = fused_apply_open_path(f->root_fd, buf, len, O_PATH | O_DIRECTORY, &pfd);
	if (rc == 0) {
		rc = fused_fd_dh(f, pfd, &pdh);
		if (rc == 0 && odd)
			rc = note_at(f, pfd, NULL, FUSED_DF_DIR | FUSED_DF_NS);
		close(pfd);
	}
	if (rc == 0)
		rc = note_at(f, fd, &pdh, dir ? FUSED_DF_DIR | FUSED_DF_META | FUSED_DF_WALK :
					    FUSED_DF_WHOLE | FUSED_DF_META);
	close(fd);
	return rc;
}

/* Add a complete, checked list to the dirty set (the ack reader, before the resync decides). */
static bool own_merge(struct fused *f, uint8_t *buf, size_t len, uint32_t n)
{
	unsigned files = 0, dirs = 0, up = 0;
	struct sk_rd r;
	uint8_t kind;
	const char *path, *lost;
	uint16_t plen;
	int rc = 0;

	sk_rd_init(&r, buf, len);
	while (rc == 0 && sk_rmsg_own_next(&r, &kind, &path, &plen) == 1) {
		rc = own_note(f, kind, plen ? path : "", plen, &up);
		if (kind == SK_OWN_FILE)
			files++;
		else
			dirs++;
	}
	/* tracking lost meanwhile, for its own reason (the bound, a failed write): that reason */
	if (rc == 0 && (lost = fused_dirty_lost_why(fused_dirty_g))) {
		sk_info("resync: the peer's own changes are not needed: dirty tracking is lost here "
			"(%s): full resync", lost);
		return false;
	}
	if (rc < 0) {
		sk_warn("resync: the peer's own changes cannot be tracked here (%s): full resync",
			strerror(-rc));
		return false;
	}
	if (n)
		sk_info("resync: the peer's own changes since the shared generation: %u paths (%u files, "
			"%u directories; %u not here, their nearest directory listed) added to the "
			"tracked set", n, files, dirs, up);
	return true;
}

void fused_own_primary_figures(struct fused *f, uint64_t *files, uint64_t *bytes)
{
	struct fused_dirty_stats s;
	struct own_coll c = { 0 };
	unsigned stats = 0;

	*files = *bytes = SK_GEN_UNKNOWN;
	if (!fused_dirty_g)
		return;
	fused_dirty_get_stats(fused_dirty_g, &s);
	if (s.lost)
		return;
	*files = s.files;
	*bytes = s.bytes;
	if (!s.whole)
		return;
	/* files sent whole count their size, not their extents */
	fused_dirty_foreach(fused_dirty_g, collect, &c);
	for (size_t i = 0; i < c.n && stats < WHOLE_STAT_MAX; i++) {
		struct stat st;
		int fd;

		if ((c.e[i].flags & (FUSED_DF_DIR | FUSED_DF_WHOLE)) != FUSED_DF_WHOLE)
			continue;
		stats++;
		fd = fused_rs_open_dh(f, &c.e[i].h, &st);
		if (fd < 0)
			continue;
		if (S_ISREG(st.st_mode))
			*bytes += (uint64_t)st.st_size - (c.e[i].ext_bytes < (uint64_t)st.st_size ?
							  c.e[i].ext_bytes : (uint64_t)st.st_size);
		close(fd);
	}
	free(c.e);
}
