/* fused/resync.c: online full resync: the primary walks its tree in the live stream, the secondary compares block checksums. */
#include "fault.h"
#include "fused.h"
#include "resync.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "log.h"
#include "moves.h"

/*
 * Bytes per checksum request: the peer reads and hashes them before it acks anything
 * after, so a window stays far below the latency budget (4 MiB: ~10 ms here).
 */
#define WINDOW ((uint64_t)64 * SK_RMSG_BLOCK)
#define CHUNK FUSED_RS_CHUNK /* read + compare per lock hold; as live writes: one pwrite on the peer stays short */
#define MAX_DEPTH 512
#define MAX_PASSES 3
#define MAX_ROUNDS 200
/* entries per RS_DIR frame: the peer creates them all before it acks, so a frame stays short */
#define DIR_FRAME_ENTRIES 64
/*
 * Entries listed per stream-lock hold on the first walk of a directory: a live
 * operation waits behind at most this many creates on the peer, however large
 * the directory. Between holds the directory may change; if it did (its ctime
 * moved), it is walked again in one hold in a catch-up round.
 */
#define DIR_PART_ENTRIES 256

/*
 * Why this is safe while applications write: every resync frame is built
 * and queued under the stream lock, from the primary's data as it is at that
 * point of the stream, so the secondary applies it exactly where it belongs
 * among the live operations; a live write to a block is never overtaken by an
 * older copy of that block.
 */
/*
 * What this resync has reconciled, and what live operations moved into it
 * from parts not reconciled yet (those directories are walked again before
 * the peer may be called in sync). All under stream_mu.
 */
#define TRACK_SET (1u << 16)  /* reconciled directories remembered (open addressing) */
#define TRACK_REDO 4096       /* directories to walk again; more means a whole new pass */

struct devino {
	dev_t dev;
	ino_t ino;
};

struct fused_rs_track {
	struct devino set[TRACK_SET];
	size_t set_n;
	bool set_full;
	int redo[TRACK_REDO];     /* O_PATH fds */
	struct devino redo_id[TRACK_REDO];
	size_t redo_n;
	bool redo_full;
};

static size_t di_slot(dev_t dev, ino_t ino)
{
	return (size_t)(((uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev) >> 48) &
	       (TRACK_SET - 1);
}

static bool synced(struct fused_rs_track *t, dev_t dev, ino_t ino)
{
	for (size_t i = di_slot(dev, ino), k = 0; k < TRACK_SET; i = (i + 1) & (TRACK_SET - 1), k++) {
		if (!t->set[i].ino && !t->set[i].dev)
			return false;
		if (t->set[i].ino == ino && t->set[i].dev == dev)
			return true;
	}
	return false;
}

static void mark_synced(struct fused_rs_track *t, dev_t dev, ino_t ino)
{
	size_t i;

	if (synced(t, dev, ino))
		return;
	if (t->set_n >= TRACK_SET / 2) { /* too many to remember: every move counts as stale */
		t->set_full = true;
		return;
	}
	for (i = di_slot(dev, ino); t->set[i].ino || t->set[i].dev; i = (i + 1) & (TRACK_SET - 1))
		;
	t->set[i] = (struct devino){ dev, ino };
	t->set_n++;
}

static void redo_clear(struct fused_rs_track *t)
{
	for (size_t i = 0; i < t->redo_n; i++)
		close(t->redo[i]);
	t->redo_n = 0;
	t->redo_full = false;
}

/* Once at start: a tracker that could not be had at a resync's start would let the resync
 * end as if nothing were left to walk again. */
int fused_rs_init(struct fused *f)
{
	if (fused_fault(FUSED_FAULT_RS_TRACK) || !(f->rs_track = calloc(1, sizeof(*f->rs_track))))
		return -ENOMEM;
	return 0;
}

void fused_rs_reset(struct fused *f)
{
	redo_clear(f->rs_track);
	memset(f->rs_track, 0, sizeof(*f->rs_track));
}

void fused_rs_note_move(struct fused *f, int src_dir_fd, int dst_dir_fd)
{
	struct fused_rs_track *t = f->rs_track;
	struct stat ss, ds;

	if (!t || fstat(dst_dir_fd, &ds) < 0)
		return;
	if (src_dir_fd >= 0 && !t->set_full && fstat(src_dir_fd, &ss) == 0 &&
	    synced(t, ss.st_dev, ss.st_ino))
		return; /* moved within reconciled parts: the peer did the same */
	for (size_t i = 0; i < t->redo_n; i++)
		if (t->redo_id[i].ino == ds.st_ino && t->redo_id[i].dev == ds.st_dev)
			return;
	if (t->redo_n == TRACK_REDO) {
		t->redo_full = true;
		return;
	}
	t->redo[t->redo_n] = fcntl(dst_dir_fd, F_DUPFD_CLOEXEC, 0);
	if (t->redo[t->redo_n] < 0) {
		t->redo_full = true;
		return;
	}
	t->redo_id[t->redo_n++] = (struct devino){ ds.st_dev, ds.st_ino };
}

int fused_rs_deepest_dir(struct fused *f, const char *path)
{
	char d[PATH_MAX];
	int fd, rc;

	snprintf(d, sizeof(d), "%s", path);
	for (;;) {
		char *sl = strrchr(d, '/');

		if (sl)
			*sl = '\0';
		else
			d[0] = '\0';
		/* beneath the root, no symlink followed: the path may be the peer's */
		rc = fused_apply_open_path(f->root_fd, d, strlen(d), O_PATH | O_DIRECTORY, &fd);
		if (rc == 0)
			return fd;
		if (!d[0])
			return rc;
	}
}

void fused_rs_fail_refused(struct fused *f, const struct fused_rs_cut *cut)
{
	if (!cut->n)
		return;
	atomic_fetch_add(&f->rejected, cut->n);
	sk_warn("resync: %u path%s the peer reported went through a symlink (first \"%.200s\"): "
		"resolved only up to it", cut->n, cut->n == 1 ? "" : "s", cut->first);
}

/* Deepest existing directory on this side holding a path the peer could not use. */
static void redo_path(struct fused *f, const char *path)
{
	int fd = fused_rs_deepest_dir(f, path);

	if (fd >= 0) {
		fused_rs_note_move(f, -1, fd);
		close(fd);
	}
}

int fused_rs_fail_names(struct fused *f, const struct fused_rs_fail *l, char *fhpath,
			const char *out[2])
{
	int n = 0;

	if (l->fh) {
		for (struct fused_fh *h = f->fh_list.next; h != &f->fh_list; h = h->next)
			if (h->id == l->fh) {
				if (fused_fd_path(f, h->fd, fhpath, PATH_MAX) >= 0)
					out[n++] = fhpath;
				break;
			}
		return n;
	}
	out[n++] = l->p1;
	if (l->p2[0])
		out[n++] = l->p2;
	return n;
}

/*
 * The peer's reports of operations that met unreconciled parts (FAILED frames,
 * queued by the ack reader) become directories to walk again, and tracked entries
 * too: the operation itself was acknowledged, so the tracking does not have it, and
 * if this session is cut before those walks the next resync (incremental, when the
 * tracking is usable) must still know what it left behind. stream_mu held; how many
 * reports there were.
 */
static int drain_failures(struct fused *f)
{
	struct fused_rs_fail *l;
	struct fused_rs_cut cut = { 0 };
	int k = 0;

	pthread_mutex_lock(&f->rs_mu);
	l = f->rs_fail;
	f->rs_fail = NULL;
	if (f->rs_fail_full && f->rs_track)
		f->rs_track->redo_full = true;
	f->rs_fail_full = false;
	f->rs_fail_n = 0;
	pthread_mutex_unlock(&f->rs_mu);
	while (l) {
		struct fused_rs_fail *n = l->next;
		struct fused_dnote dn[4] = { 0 };
		unsigned c = 0;
		char p[PATH_MAX];
		const char *pp[2];
		int np = fused_rs_fail_names(f, l, p, pp);

		for (int i = 0; i < np; i++) {
			redo_path(f, pp[i]);
			fused_rs_fail_path(f, pp[i], dn, &c, &cut);
		}
		if (fused_dirty_g)
			fused_dirty_note(fused_dirty_g, dn, c, 0, 0);
		free(l);
		l = n;
		k++;
	}
	fused_rs_fail_refused(f, &cut);
	return k;
}

/* RS_END may go only when nothing waits to be walked again (checked under stream_mu). */
static bool nothing_to_redo(struct fused *f)
{
	return !f->rs_track || (!f->rs_track->redo_n && !f->rs_track->redo_full);
}


static void ts_from(struct sk_rmsg_ts *t, const struct timespec *ts)
{
	t->sec = ts->tv_sec;
	t->nsec = (uint32_t)ts->tv_nsec;
}

bool fused_rs_live(struct walker *w)
{
	return atomic_load(&w->f->connected) && w->f->conn_gen == w->gen &&
	       !atomic_load(&w->f->stop);
}

/* Before each stream-lock hold of the walker: no more in flight than the peer drains quickly. */
bool fused_rs_pace(struct walker *w)
{
	return fused_repl_rs_pace(w->f, w->gen) == 0;
}

void fused_rs_rate(struct walker *w, uint64_t n)
{
	uint64_t due, now;

	if (!fused_resync_rate)
		return;
	w->paced_bytes += n;
	due = w->t0_us + w->paced_bytes * 1000000 / fused_resync_rate;
	now = sk_now_us();
	/* in steps, so a lost peer is noticed within 0.1 s */
	while (now < due && fused_rs_live(w)) {
		usleep((useconds_t)(due - now > 100000 ? 100000 : due - now));
		now = sk_now_us();
	}
}

/*
 * Progress as the status shows it: done never passes total. A file that grew
 * after its directory was listed adds its growth to the total first (the status
 * reader loads done, then total; only this thread writes either).
 */
void fused_rs_progress_add(struct fused *f, uint64_t n)
{
	uint64_t d = atomic_load(&f->rs_done_bytes) + n;

	if (d > atomic_load(&f->rs_total_bytes))
		atomic_store(&f->rs_total_bytes, d);
	atomic_store(&f->rs_done_bytes, d);
}

int fused_rs_unnamed(int fd, int pl)
{
	struct stat st;

	return pl == -ENAMETOOLONG || fstat(fd, &st) < 0 || st.st_nlink == 0 ? -ENOENT : -EAGAIN;
}

/* Under the stream lock: the xattr list of an entry (via its parent fd and name). */
static size_t xattr_blob(int dfd, const char *name, uint8_t *out, size_t cap)
{
	char pp[PATH_MAX + 64], names[65536], val[SK_RMSG_XATTR_VAL_MAX];
	size_t used = 0;
	ssize_t nl;

	if (name)
		snprintf(pp, sizeof(pp), "/proc/self/fd/%d/%s", dfd, name);
	else
		snprintf(pp, sizeof(pp), "/proc/self/fd/%d", dfd);
	/* an fd's own magic link must be followed; a name under it must not */
	nl = name ? llistxattr(pp, names, sizeof(names)) : listxattr(pp, names, sizeof(names));
	for (ssize_t i = 0; nl > 0 && i < nl; i += (ssize_t)strlen(names + i) + 1) {
		ssize_t vl = name ? lgetxattr(pp, names + i, val, sizeof(val)) :
				    getxattr(pp, names + i, val, sizeof(val));
		long put;

		if (vl < 0)
			continue;
		put = sk_rmsg_xattr_put(names + i, strlen(names + i), val, (size_t)vl, out + used,
					cap - used);
		if (put < 0)
			break;
		used += (size_t)put;
	}
	return used;
}

/* Under the stream lock: owner, mode, size, xattrs and times of one entry. */
void fused_rs_send_meta(struct walker *w, int dfd, const char *name, const char *path, size_t plen)
{
	struct sk_rmsg_op op = { .type = SK_RMSG_RS_META, .flags = SK_RO_XATTRS };
	struct stat st;
	size_t bl;

	if (fstatat(dfd, name ? name : "", &st, AT_SYMLINK_NOFOLLOW | (name ? 0 : AT_EMPTY_PATH)) < 0)
		return;
	bl = xattr_blob(dfd, name, w->blob, SK_RMSG_DATA_MAX);
	op.path1 = path;
	op.path1_len = (uint16_t)plen;
	op.uid = st.st_uid;
	op.gid = st.st_gid;
	op.valid = SK_RV_UID | SK_RV_GID | SK_RV_ATIME | SK_RV_MTIME;
	if (!S_ISLNK(st.st_mode)) {
		op.valid |= SK_RV_MODE;
		op.mode = st.st_mode & 07777;
	}
	if (S_ISREG(st.st_mode)) {
		op.valid |= SK_RV_SIZE;
		op.len = (uint64_t)st.st_size;
	}
	ts_from(&op.atime, &st.st_atim);
	ts_from(&op.mtime, &st.st_mtim);
	fused_repl_submit(w->f, &op, w->blob, bl, NULL, NULL);
	atomic_fetch_add(&fused_rs_stats.meta, 1);
}

static int join(char *out, const char *dir, size_t dl, const char *name)
{
	size_t nl = strlen(name);

	if (dl + 1 + nl > SK_RMSG_PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(out, dir, dl);
	if (dl)
		out[dl++] = '/';
	memcpy(out + dl, name, nl + 1);
	return (int)(dl + nl);
}

/*
 * Frames in flight while files go whole. The window (repl.c) counts an RS_META as one small
 * operation, but a file's data and metadata cost the peer a dozen system calls, and with no
 * round trip per file the window fills with them: 228 such frames once took an ASan secondary
 * at load 15 over 500 ms, and an application's write behind them met the budget. At most this
 * many, whatever the window says.
 */
#define WHOLE_INFLIGHT 64

/* Before a file sent whole: the window's pacing, and at most WHOLE_INFLIGHT frames in flight. */
static bool whole_pace(struct walker *w)
{
	return fused_repl_rs_pace_frames(w->f, w->gen, WHOLE_INFLIGHT + 1) == 0;
}

/*
 * A file the peer holds empty, small enough for one read: data and metadata in one stream-lock
 * hold, where the file is now (1). 0: not done here (larger now, or the read failed): the
 * caller sends it the usual way.
 */
static int send_small_whole(struct walker *w, int fd)
{
	struct fused *f = w->f;
	ssize_t n = -1;
	int pl, done = 0;

	if (!whole_pace(w))
		return 1;
	pthread_mutex_lock(&f->stream_mu);
	pl = fused_fd_path(f, fd, w->path, sizeof(w->path));
	if (pl < 0 || !atomic_load(&f->connected)) {
		pthread_mutex_unlock(&f->stream_mu);
		return 1; /* unlinked meanwhile (its unlink is in the stream), or the peer is gone */
	}
	n = pread(fd, w->buf, CHUNK, 0);
	if (n >= 0 && (size_t)n < CHUNK) {
		struct sk_rmsg_op d = { .type = SK_RMSG_RS_DATA, .path1 = w->path,
					.path1_len = (uint16_t)pl };

		atomic_fetch_add(&fused_rs_stats.read, (uint64_t)n);
		if (n > 0) {
			fused_repl_submit(f, &d, w->buf, (size_t)n, NULL, NULL);
			atomic_fetch_add(&fused_rs_stats.sent, (uint64_t)n);
		}
		fused_rs_send_meta(w, fd, NULL, w->path, (size_t)pl);
		atomic_fetch_add(&fused_rs_stats.whole, 1);
		done = 1;
	}
	pthread_mutex_unlock(&f->stream_mu);
	if (done) {
		fused_rs_progress_add(f, (uint64_t)n);
		fused_rs_rate(w, (uint64_t)n);
	}
	return done;
}

static int sync_file(struct walker *w, int fd, bool whole, struct rs_ahead *ahead, bool *meta);

/* Content of one regular file: checksum windows from the peer, differing blocks back. */
int fused_rs_sync_file(struct walker *w, int fd)
{
	return sync_file(w, fd, false, NULL, NULL);
}

/*
 * whole: the peer holds it empty (its answer to the listing): every block differs, no request.
 * ahead: the first window's checksums were asked ahead (rs_sums.c): its answer, not a request.
 * meta: the hold that reads the file's end also sends its metadata (one hold less per small
 * file); *meta says whether the last data sent went before it (else the caller sends it).
 * A peer with no file at that path (ENOENT), or an empty one, is sent the rest whole, with no
 * more requests; a block it has no sum for is sent without hashing it.
 * 0, or as rs_files.c's send_range when the file has no path: -ENOENT gone (or a path too long
 * for the peer), -EAGAIN still linked.
 */
static int sync_file(struct walker *w, int fd, bool whole, struct rs_ahead *ahead, bool *meta)
{
	struct fused *f = w->f;
	uint64_t off = 0;

	if (whole)
		atomic_fetch_add(&fused_rs_stats.whole, 1);
	while (fused_rs_live(w)) {
		struct sk_rmsg_op q = { .type = SK_RMSG_RS_SUMSREQ, .off = off, .len = WINDOW };
		struct sk_rmsg_sums s = { 0 };
		struct stat st;
		int rc;

		if (fstat(fd, &st) < 0 || (uint64_t)st.st_size <= off)
			break;
		if (ahead && off == 0) {
			if (fused_rs_ahead_sums(w, ahead, &s) < 0)
				return 0;
		} else if (!whole) {
			atomic_fetch_add(&fused_rs_stats.asked, 1);
			rc = fused_repl_ask(f, w->gen, &q, fd, &s, w->sums, NULL);
			if (rc < 0)
				return 0;
		}
		/* nothing there to compare with (no file, or an empty one): only our data can make
		 * it, and a live write meanwhile is on both copies already (sent again: harmless) */
		if (!whole && (s.err == ENOENT || (!s.err && s.file_size == 0)))
			whole = true;
		for (uint64_t c = off; c < off + WINDOW && fused_rs_pace(w); c += CHUNK) {
			uint64_t sent = 0;
			ssize_t n;
			int pl;

			pthread_mutex_lock(&f->stream_mu);
			pl = fused_fd_path(f, fd, w->path, sizeof(w->path));
			n = pl < 0 || !atomic_load(&f->connected) ? -1 : pread(fd, w->buf, CHUNK, (off_t)c);
			if (n <= 0) {
				pthread_mutex_unlock(&f->stream_mu);
				if (pl < 0)
					return fused_rs_unnamed(fd, pl);
				break;
			}
			atomic_fetch_add(&fused_rs_stats.read, (uint64_t)n);
			for (size_t b = 0; b < (size_t)n;) {
				size_t run = 0;

				/* a run of differing blocks goes as one frame */
				while (b + run < (size_t)n) {
					uint64_t bi = (c + b + run - off) / SK_RMSG_BLOCK;
					size_t bl = (size_t)n - (b + run) < SK_RMSG_BLOCK ?
							    (size_t)n - (b + run) : SK_RMSG_BLOCK;
					uint8_t h[SK_RMSG_SUM_LEN];

					if (whole) { /* no sums: every block differs */
						run = (size_t)n - b;
						break;
					}
					/* a block the peer has no sum for differs, unhashed */
					if (!s.err && bi < s.count) {
						crypto_generichash(h, sizeof(h), w->buf + b + run, bl, NULL, 0);
						if (memcmp(h, s.sums + bi * SK_RMSG_SUM_LEN, sizeof(h)) == 0)
							break;
					}
					run += bl;
				}
				if (run) {
					struct sk_rmsg_op d = { .type = SK_RMSG_RS_DATA, .off = c + b };

					d.path1 = w->path;
					d.path1_len = (uint16_t)pl;
					fused_repl_submit(f, &d, w->buf + b, run, NULL, NULL);
					atomic_fetch_add(&fused_rs_stats.sent, run);
					sent += run;
					b += run;
				} else {
					b += SK_RMSG_BLOCK;
				}
			}
			if (meta)
				*meta = false;
			if (meta && (size_t)n < CHUNK) { /* the end as read now: data, then times */
				fused_rs_send_meta(w, fd, NULL, w->path, (size_t)pl);
				*meta = true;
			}
			pthread_mutex_unlock(&f->stream_mu);
			fused_rs_progress_add(f, (uint64_t)n);
			fused_rs_rate(w, sent);
			if ((size_t)n < CHUNK)
				break;
		}
		off += WINDOW;
	}
	return 0;
}

/* An entry with no xattrs at all (a file system without xattrs has none). */
static bool no_xattrs(int dfd, const char *name)
{
	char pp[PATH_MAX + 64];
	ssize_t n;

	snprintf(pp, sizeof(pp), "/proc/self/fd/%d/%s", dfd, name);
	n = llistxattr(pp, NULL, 0);
	return n == 0 || (n < 0 && errno == ENOTSUP);
}

/*
 * Under the stream lock: announce the entries of a directory, with their
 * metadata, and reopen handles that live in it. An empty file with one link
 * and no xattrs is whole with its entry (SK_RD_COMPLETE): it is not visited
 * again, so a tree of small empty files costs a few frames per directory, not
 * a frame per file. Everything else is returned in l to be visited (with what the peer
 * answers about it, see rs_empty.c).
 * One part: up to max entries from d; *flags carries SK_RO_FIRST to the first
 * frame. Returns 1 if entries remain, 0 once the listing ended (SK_RO_LAST sent).
 */
static int send_dir(struct walker *w, DIR *d, int dfd, const char *dpath, size_t dl,
		    struct rs_list *l, uint32_t *flags, size_t max)
{
	struct fused *f = w->f;
	struct sk_rmsg_op op = { .type = SK_RMSG_RS_DIR, .flags = *flags };
	char target[SK_RMSG_PATH_MAX + 1], cp[PATH_MAX];
	struct fused_fh *h;
	struct dirent *de = NULL;
	size_t used = 0, ents = 0, part = 0;

	op.path1 = dpath;
	op.path1_len = (uint16_t)dl;
	while (part < max && (de = readdir(d))) {
		struct sk_rmsg_dirent e = { 0 };
		struct sk_rmsg_dmeta m = { 0 };
		struct stat st;
		long put;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (w->links && st.st_nlink > 1 && !S_ISDIR(st.st_mode))
			fused_rs_links_seen(w->links, dfd, de->d_name, &st); /* rs_links.c */
		e.name = de->d_name;
		e.name_len = (uint16_t)strlen(de->d_name);
		e.mode = st.st_mode;
		e.uid = st.st_uid;
		e.gid = st.st_gid;
		e.rdev = st.st_rdev;
		e.ino = st.st_ino;
		e.nlink = (uint32_t)st.st_nlink;
		if (S_ISLNK(st.st_mode)) {
			ssize_t tl = readlinkat(dfd, de->d_name, target, sizeof(target) - 1);

			if (tl <= 0)
				continue;
			e.target = target;
			e.target_len = (uint16_t)tl;
		}
		if (S_ISREG(st.st_mode))
			atomic_fetch_add(&f->rs_total_bytes, (uint64_t)st.st_size);
		ts_from(&m.atime, &st.st_atim);
		ts_from(&m.mtime, &st.st_mtim);
		if (S_ISREG(st.st_mode) && st.st_size == 0 && st.st_nlink == 1 &&
		    no_xattrs(dfd, de->d_name))
			m.flags = SK_RD_COMPLETE;
		put = ents == DIR_FRAME_ENTRIES ? -ENOSPC :
			sk_rmsg_dirent_meta_put(&e, &m, w->blob + used, SK_RMSG_DATA_MAX - used);
		if (put == -ENOSPC) {
			fused_rs_dir_frame(w, l, &op, used);
			op.flags = SK_RO_DMETA;
			used = 0;
			ents = 0;
			put = sk_rmsg_dirent_meta_put(&e, &m, w->blob, SK_RMSG_DATA_MAX);
		}
		if (put < 0)
			continue;
		used += (size_t)put;
		ents++;
		part++;
		if (m.flags & SK_RD_COMPLETE)
			continue; /* whole on the peer with its entry */
		if (fused_rs_list_add(l, de->d_name, S_ISREG(st.st_mode) ? ST_REG :
						     S_ISDIR(st.st_mode) ? ST_DIR : 0) < 0)
			break;
		l->cur_in |= 1ull << (ents - 1); /* its place in this frame (ents <= 64) */
		if (S_ISREG(st.st_mode) && st.st_size > 0)
			l->cur_want = true;
	}
	if (part == max) { /* more to come in the next hold (or an empty last frame then) */
		if (used)
			fused_rs_dir_frame(w, l, &op, used);
		*flags = used ? SK_RO_DMETA : op.flags;
		return 1;
	}
	op.flags |= SK_RO_LAST;
	fused_rs_dir_frame(w, l, &op, used);

	/* handles opened on files the peer did not have yet: reopen now that they exist */
	for (h = f->fh_list.next; h != &f->fh_list; h = h->next) {
		struct sk_rmsg_op o = { .type = SK_RMSG_OPEN, .fh = h->id };
		int n;
		char *slash;

		if (h->reopen_gen == w->gen && !w->redo)
			continue; /* a redo reopens all: the peer may have dropped one meanwhile */
		n = fused_fd_path(f, h->fd, cp, sizeof(cp));
		if (n < 0)
			continue;
		slash = strrchr(cp, '/');
		if ((slash ? (size_t)(slash - cp) : 0) != dl || strncmp(cp, dpath, dl) != 0)
			continue;
		o.path1 = cp;
		o.path1_len = (uint16_t)n;
		fused_repl_submit(f, &o, NULL, 0, NULL, NULL);
		h->reopen_gen = w->gen;
	}
	return 0;
}

static bool ts_same(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

void fused_rs_sync_dir(struct walker *w, int dfd, int depth)
{
	struct fused *f = w->f;
	struct rs_list l = { 0 };
	struct rs_ahead ahead = { 0 };
	char dpath[PATH_MAX], cpath[PATH_MAX];
	uint32_t flags = SK_RO_FIRST | SK_RO_DMETA | (w->shallow ? SK_RO_SHALLOW : 0);
	struct stat s0 = { 0 }, s1;
	size_t from = 0;
	bool parted = false;
	int dl, rc = 1, lfd;
	DIR *d;

	if (depth > MAX_DEPTH)
		return;
	lfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = lfd >= 0 ? fdopendir(lfd) : NULL;
	if (!d) {
		if (lfd >= 0)
			close(lfd);
		return;
	}
	while (rc == 1) {
		if (!fused_rs_pace(w)) {
			rc = -1;
			break;
		}
		pthread_mutex_lock(&f->stream_mu);
		dl = fused_fd_path(f, dfd, dpath, sizeof(dpath));
		if (dl < 0 || !atomic_load(&f->connected)) {
			pthread_mutex_unlock(&f->stream_mu);
			rc = -1;
			break;
		}
		if (flags & SK_RO_FIRST)
			fstat(dfd, &s0);
		/* a catch-up walk lists in one hold, so a busy directory still converges */
		rc = send_dir(w, d, dfd, dpath, (size_t)dl, &l, &flags,
			      w->redo || w->shallow ? SIZE_MAX : DIR_PART_ENTRIES);
		if (rc == 0)
			atomic_fetch_add(&fused_rs_stats.dirs, 1);
		/* non-directories other than files get their metadata with the namespace */
		for (size_t i = from; i < l.names.n; i++) {
			struct stat st;
			int cl;

			if (fstatat(dfd, l.names.v[i], &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
				continue;
			if ((cl = join(cpath, dpath, (size_t)dl, l.names.v[i])) >= 0)
				fused_rs_send_meta(w, dfd, l.names.v[i], cpath, (size_t)cl);
		}
		from = l.names.n;
		fused_rs_list_resolve(w, &l, SIZE_MAX, false); /* frees the slots of what was answered */
		if (rc == 1)
			parted = true;
		else if (parted && (fstat(dfd, &s1) < 0 || !ts_same(&s0.st_ctim, &s1.st_ctim) ||
				    !ts_same(&s0.st_mtim, &s1.st_mtim)))
			fused_rs_note_move(f, -1, dfd); /* changed between the parts: list it again */
		pthread_mutex_unlock(&f->stream_mu);
		/* SKFUSED_FAULT=rs_dir_pause: a test's live operations land between two parts */
		if (rc == 1 && fused_fault(FUSED_FAULT_RS_DIR_PAUSE)) {
			sk_info("resync: paused 3 s between two parts of the listing of \"%.*s\"", dl,
				dpath);
			for (int k = 0; k < 30 && fused_rs_live(w); k++)
				usleep(100000);
		}
	}
	closedir(d);
	if (rc < 0) {
		fused_rs_list_free(&l);
		return;
	}
	/* incremental: what changed inside has entries of its own */
	for (size_t i = 0; i < l.names.n && !w->shallow && fused_rs_live(w); i++) {
		struct stat st;
		int cfd;
		bool pre;

		/* a FIFO, socket or device was listed with its metadata: never opened (a device
		 * opened by root can act, a FIFO open can wake a writer) */
		if (!(l.st[i] & (ST_REG | ST_DIR)))
			continue;
		fused_rs_ahead_fill(w, &l, &ahead, dfd, i); /* the next files' checksums asked */
		cfd = fused_rs_ahead_take(w, &ahead, i);
		pre = cfd >= 0;
		if (!pre)
			cfd = openat(dfd, l.names.v[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (cfd < 0)
			continue;
		if (fstat(cfd, &st) == 0 && S_ISDIR(st.st_mode)) {
			fused_rs_sync_dir(w, cfd, depth + 1);
		} else if (S_ISREG(st.st_mode)) {
			fused_rs_list_resolve(w, &l, i, true);
			if (!pre && (l.st[i] & ST_EMPTY) && send_small_whole(w, cfd)) {
				close(cfd);
				continue; /* data and metadata sent */
			}
			bool meta = false;

			sync_file(w, cfd, !pre && (l.st[i] & ST_EMPTY), pre ? &ahead : NULL, &meta);
			if (meta) {
				close(cfd);
				continue; /* its metadata went with its last data */
			}
			fused_rs_pace(w);
			pthread_mutex_lock(&f->stream_mu);
			if (atomic_load(&f->connected) &&
			    (rc = fused_fd_path(f, cfd, cpath, sizeof(cpath))) >= 0)
				fused_rs_send_meta(w, cfd, NULL, cpath, (size_t)rc); /* where the file is now */
			pthread_mutex_unlock(&f->stream_mu);
		}
		close(cfd);
	}
	fused_rs_ahead_free(f, &ahead);
	/* the directory's own metadata last: its entries are in place, so its mtime stays */
	fused_rs_pace(w);
	pthread_mutex_lock(&f->stream_mu);
	if (atomic_load(&f->connected) && (dl = fused_fd_path(f, dfd, dpath, sizeof(dpath))) >= 0) {
		struct stat st;

		fused_rs_send_meta(w, dfd, NULL, dpath, (size_t)dl);
		if (f->rs_track && fstat(dfd, &st) == 0)
			mark_synced(f->rs_track, st.st_dev, st.st_ino); /* with its whole subtree */
	}
	pthread_mutex_unlock(&f->stream_mu);
	fused_rs_list_free(&l);
}

int fused_resync_run(struct fused *f, uint64_t gen)
{
	struct walker *w = calloc(1, sizeof(*w));
	uint64_t t0 = sk_now_us();
	int pass, rc = -ECONNRESET;

	if (!w || !(w->buf = malloc(CHUNK)) || !(w->blob = malloc(SK_RMSG_DATA_MAX))) {
		rc = -ENOMEM;
		goto out;
	}
	w->f = f;
	w->gen = gen;
	w->t0_us = t0;
	atomic_store(&fused_rs_stats.sent, 0);
	atomic_store(&fused_rs_stats.read, 0);
	atomic_store(&fused_rs_stats.meta, 0);
	atomic_store(&fused_rs_stats.dirs, 0);
	atomic_store(&fused_rs_stats.resumed, 0);
	fused_rs_empty_reset(f);
	fused_rs_sums_reset(f);
	atomic_store(&f->rs_done_bytes, 0); /* done first: never above the total */
	atomic_store(&f->rs_total_bytes, 0);
	/* what changed while the peer was away, if the tracker knows it for this peer's copy */
	/* by default; SKFUSED_RESYNC_INCREMENTAL=0 turns it off: see rs_incr.c */
	if (fused_dirty_g && fused_resync_incremental && fused_rs_incr_usable(w)) {
		atomic_store(&fused_rs_stats.kind, FUSED_RS_INCR);
		rc = fused_fault(FUSED_FAULT_RS_INCR_GIVEUP) ? -EAGAIN : fused_rs_incr_run(w);
		if (rc != -EAGAIN)
			goto out;
		sk_info("incremental resync did not converge: the full resync follows");
		atomic_store(&f->rs_done_bytes, 0);
		atomic_store(&f->rs_total_bytes, 0);
	}
	atomic_store(&fused_rs_stats.kind, FUSED_RS_FULL);
	fused_moves_drop(); /* the full resync compares every file where it is */
	for (pass = 1; pass <= MAX_PASSES && fused_rs_live(w); pass++) {
		struct sk_rmsg_op end = { .type = SK_RMSG_RS_END, .len = f->gen.current };
		struct sk_rmsg_sums s;
		int rfd = openat(f->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), round;

		if (rfd < 0)
			break;
		fused_rs_sync_dir(w, rfd, 0);
		close(rfd);
		/* walk again what live renames/links brought in from unreconciled parts,
		 * and wherever the peer reported an operation that met such a part */
		w->redo = true;
		for (round = 0; round < MAX_ROUNDS && fused_rs_live(w); round++) {
			int fds[64], nf;
			size_t n = 0;
			bool full;

			pthread_mutex_lock(&f->stream_mu);
			nf = drain_failures(f);
			pthread_mutex_unlock(&f->stream_mu);
			/* tests: the session cut before the walks those reports ask for */
			if (nf > 0 && fused_fault(FUSED_FAULT_RS_FAIL_LOST))
				fused_peer_lost(f, gen, "fault point rs_fail_lost");
			rc = fused_repl_ask(f, gen, &end, -1, &s, w->sums, nothing_to_redo);
			if (rc == 0 && s.err == EAGAIN) {
				rc = -EAGAIN; /* its FAILED reports came first: drained next round */
				continue;
			}
			if (rc != -EAGAIN)
				break;
			pthread_mutex_lock(&f->stream_mu);
			full = f->rs_track->redo_full;
			while (!full && n < 64 && f->rs_track->redo_n)
				fds[n++] = f->rs_track->redo[--f->rs_track->redo_n];
			pthread_mutex_unlock(&f->stream_mu);
			if (full)
				break; /* too much moved: a whole new pass */
			for (size_t i = 0; i < n; i++) {
				int dfd = openat(fds[i], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

				if (dfd >= 0) {
					fused_rs_sync_dir(w, dfd, 0);
					close(dfd);
				}
				close(fds[i]);
			}
		}
		w->redo = false;
		if (rc == -EAGAIN) {
			pthread_mutex_lock(&f->stream_mu);
			fused_rs_reset(f);
			pthread_mutex_unlock(&f->stream_mu);
			sk_info("resync pass %d: too much moved meanwhile; another pass", pass);
			continue;
		}
		if (rc < 0)
			break;
		if (s.err == 0) {
			uint64_t cmp = atomic_load(&f->rs_done_bytes), cur, refused;
			uint64_t answers = fused_rs_empty_answers(&refused), unans;
			uint64_t srefused = fused_rs_sums_refused(&unans);

			/* the peer took our generation: tracking starts over from it */
			pthread_mutex_lock(&f->state_mu);
			cur = f->gen.current;
			pthread_mutex_unlock(&f->state_mu);
			if (fused_dirty_g)
				fused_dirty_clear(fused_dirty_g, gen, cur);
			fused_state_set_in_sync(f, true);
			/* files that shrank or went away meanwhile were listed, not read: 100 % now */
			atomic_store(&f->rs_done_bytes, atomic_load(&f->rs_total_bytes));
			f->rs_state = 2;
			sk_info("resync done in %.1f s (full, pass %d, %d catch-up rounds, %llu bytes "
				"compared, %llu sent, %llu files sent whole without a checksum request, "
				"%llu checksum requests, at most %llu in flight (%llu answers refused, "
				"%llu unanswered), %llu listing answers, %llu refused)",
				(double)(sk_now_us() - t0) / 1e6, pass, round, (unsigned long long)cmp,
				(unsigned long long)atomic_load(&fused_rs_stats.sent),
				(unsigned long long)atomic_load(&fused_rs_stats.whole),
				(unsigned long long)atomic_load(&fused_rs_stats.asked),
				(unsigned long long)atomic_load(&fused_rs_stats.asked_peak),
				(unsigned long long)srefused, (unsigned long long)unans,
				(unsigned long long)answers, (unsigned long long)refused);
			rc = 0;
			break;
		}
		sk_info("resync pass %d: the peer refused the end (%s); another pass", pass,
			strerror(s.err));
		rc = -EAGAIN;
	}
	if (rc == -EAGAIN)
		fused_peer_lost(f, gen, "resync did not converge");
out:
	atomic_store(&f->resyncing, false);
	if (rc < 0 && f->rs_state == 1)
		f->rs_state = 0;
	if (w) {
		free(w->buf);
		free(w->blob);
	}
	free(w);
	return rc;
}
