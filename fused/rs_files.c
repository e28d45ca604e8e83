/* fused/rs_files.c: the tracked files of an incremental resync: named from our root (one walk names those the kernel cannot), read ahead, sent as data then metadata. */
#include "rs_incr.h"
#include "inode_int.h"
#include "rs_prefetch.h"
#include "fault.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/*
 * Read ahead. The tracked extents of the next files are asked of the disk
 * (POSIX_FADV_WILLNEED) before the current file is sent: one pread after the
 * other keeps one request in flight, and scattered 64 KiB reads at depth one
 * run far below the link (here ~210 MB/s against ~1.6 GB/s at depth 16).
 * At most AHEAD_FILES files and AHEAD_BYTES bytes are ahead of the sender.
 */
#define AHEAD_FILES 64
#define AHEAD_BYTES (32u << 20)

/*
 * Names. A tracked file is found by its handle; once the kernel has dropped its
 * dentries (memory pressure, a long outage: the overlay's inode table lets go of
 * what the kernel forgets), open_by_handle_at gives a disconnected dentry that
 * d_path cannot name. fused_fd_path's fallback searches the tree for each such
 * file (bounded). Here one walk of the tree per round names every tracked file
 * by inode number; a file still linked that no walk names makes this resync give
 * up for the full one, never counts as sent.
 */
#define WALK_ENTRIES_MAX (64u << 20) /* names one walk reads at most */
#define WALKS_MAX 3                  /* per round: files renamed meanwhile ask for another */

struct pm_ent {
	uint64_t ino; /* 0: empty slot */
	char *path;
};

struct fused_rs_pathmap {
	struct pm_ent *v;
	size_t mask, n, found;
	int walks;
};

static size_t pm_slot(const struct fused_rs_pathmap *m, uint64_t ino)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 17) & m->mask;
}

static struct pm_ent *pm_find(struct fused_rs_pathmap *m, uint64_t ino)
{
	for (size_t i = m->v ? pm_slot(m, ino) : 0; m->v && m->v[i].ino; i = (i + 1) & m->mask)
		if (m->v[i].ino == ino)
			return &m->v[i];
	return NULL;
}

/* Out of memory: not wanted (the file stays unnamed: the full resync follows). */
static void pm_want(struct fused_rs_pathmap *m, uint64_t ino)
{
	size_t i;

	if (!ino || pm_find(m, ino))
		return;
	if (!m->v || (m->n + 1) * 2 > m->mask + 1) {
		size_t nm = m->v ? m->mask * 2 + 1 : 1023;
		struct pm_ent *nv = calloc(nm + 1, sizeof(*nv)), *ov = m->v;
		size_t om = m->mask;

		if (!nv)
			return;
		m->v = nv;
		m->mask = nm;
		for (size_t k = 0; ov && k <= om; k++)
			if (ov[k].ino) {
				for (i = pm_slot(m, ov[k].ino); nv[i].ino; i = (i + 1) & nm)
					;
				nv[i] = ov[k];
			}
		free(ov);
	}
	for (i = pm_slot(m, ino); m->v[i].ino; i = (i + 1) & m->mask)
		;
	m->v[i].ino = ino;
	m->n++;
}

static void pm_clear(struct fused_rs_pathmap *m)
{
	for (size_t i = 0; m->v && i <= m->mask; i++)
		free(m->v[i].path);
	free(m->v);
	m->v = NULL;
	m->mask = m->n = m->found = 0;
}

struct hlist {
	struct fused_dh *h;
	size_t n, cap;
};

/* Under the tracker's lock: the handles of tracked non-directories (taken ones included). */
static int hl_add(const struct fused_dentry *e, void *arg)
{
	struct hlist *l = arg;

	if (e->flags & FUSED_DF_DIR)
		return 0;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 256;
		struct fused_dh *nh = realloc(l->h, nc * sizeof(*nh));

		if (!nh)
			return 1;
		l->h = nh;
		l->cap = nc;
	}
	l->h[l->n++] = e->h;
	return 0;
}

static int push(char ***stk, size_t *sp, size_t *cap, char *p)
{
	if (*sp == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		char **ns = realloc(*stk, nc * sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		*stk = ns;
		*cap = nc;
	}
	(*stk)[(*sp)++] = p;
	return 0;
}

/* One walk of the tree: a path for every wanted inode met (the first of its names). */
static void pm_walk(struct fused *f, struct fused_rs_pathmap *m, dev_t dev)
{
	char **stk = NULL, *root = strdup("");
	size_t sp = 0, cap = 0, seen = 0;

	if (!root || push(&stk, &sp, &cap, root) < 0)
		free(root);
	while (sp && m->found < m->n && seen < WALK_ENTRIES_MAX) {
		char *dir = stk[--sp];
		size_t dl = strlen(dir);
		int dfd = openat(f->root_fd, dl ? dir : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		struct dirent *de;

		if (!d && dfd >= 0)
			close(dfd);
		while (d && m->found < m->n && seen++ < WALK_ENTRIES_MAX && (de = readdir(d))) {
			size_t nl = strlen(de->d_name);
			unsigned char t = de->d_type;
			struct pm_ent *x = NULL;
			struct stat st;
			char *p;

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
			    dl + 1 + nl > SK_RMSG_PATH_MAX) /* the peer takes no longer path */
				continue;
			if (t == DT_UNKNOWN)
				t = fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
						    S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
			if (t != DT_DIR && (!(x = pm_find(m, de->d_ino)) || x->path))
				continue;
			if (!(p = malloc(dl + nl + 2)))
				continue;
			snprintf(p, dl + nl + 2, "%s%s%s", dir, dl ? "/" : "", de->d_name);
			if (t == DT_DIR) {
				if (push(&stk, &sp, &cap, p) < 0)
					free(p); /* not walked: what is below stays unnamed */
			} else if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				   st.st_ino == x->ino && st.st_dev == dev && !S_ISDIR(st.st_mode)) {
				x->path = p;
				m->found++;
			} else {
				free(p);
			}
		}
		if (d)
			closedir(d);
		free(dir);
	}
	while (sp)
		free(stk[--sp]);
	free(stk);
}

/* A walk for every tracked non-directory still linked (taken ones included). */
static void pm_build(struct walker *w, struct fused_rs_round *rd, dev_t dev)
{
	struct fused *f = w->f;
	struct fused_rs_pathmap *m = rd->pm;
	struct hlist l = { 0 };
	uint64_t t0 = sk_now_us();

	pm_clear(m);
	m->walks++;
	fused_dirty_foreach(fused_dirty_g, hl_add, &l);
	for (size_t i = 0; i < l.n; i++) {
		struct stat st;
		int fd = fused_rs_open_dh(f, &l.h[i], &st);

		if (fd < 0)
			continue;
		if (!S_ISDIR(st.st_mode) && st.st_nlink)
			pm_want(m, (uint64_t)st.st_ino);
		close(fd);
	}
	free(l.h);
	pm_walk(f, m, dev);
	fused_rs_ph_add(&fused_rs_ph.name, t0);
	sk_info("resync: tracked files the kernel could not name: one walk of the tree (%d this round) "
		"named %zu of %zu tracked files in %.3f s", m->walks, m->found, m->n,
		(double)(sk_now_us() - t0) / 1e6);
}

/*
 * The O_PATH fd *fd (opened by handle, *st its stat) named from our root: 0 (*fd replaced
 * by one opened by its path if the kernel could not name it), -ENOENT unlinked (its unlink
 * is in the stream), -EAGAIN still linked and not found.
 */
static int name_fd(struct walker *w, struct fused_rs_round *rd, int *fd, struct stat *st)
{
	struct fused *f = w->f;
	char p[PATH_MAX];
	int pl;

	pthread_mutex_lock(&f->stream_mu);
	pl = fused_ipath_kernel(f, *fd, st, p, sizeof(p));
	pthread_mutex_unlock(&f->stream_mu);
	if (pl != -ESTALE)
		return 0; /* named, or a path too long for d_path, which fused_fd_path handles itself */
	rd->unnamed++;
	for (int k = 0;; k++) {
		struct pm_ent *x;

		if (fstat(*fd, st) < 0)
			return -errno;
		if (st->st_nlink == 0)
			return -ENOENT;
		x = rd->pm ? pm_find(rd->pm, (uint64_t)st->st_ino) : NULL;
		if (x && x->path) {
			int nfd = openat(f->root_fd, x->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			struct stat ns;

			if (nfd >= 0 && fstat(nfd, &ns) == 0 && ns.st_ino == st->st_ino &&
			    ns.st_dev == st->st_dev) {
				close(*fd);
				*fd = nfd;
				*st = ns;
				rd->named_by_walk++;
				return 0;
			}
			if (nfd >= 0)
				close(nfd);
		}
		if (k == 1 || !fused_rs_live(w))
			break;
		if (!rd->pm && !(rd->pm = calloc(1, sizeof(*rd->pm))))
			break;
		if (rd->pm->walks >= WALKS_MAX)
			break;
		pm_build(w, rd, st->st_dev);
	}
	return -EAGAIN;
}

void fused_rs_files_end(struct fused_rs_round *rd)
{
	if (rd->pm)
		pm_clear(rd->pm);
	free(rd->pm);
	rd->pm = NULL;
}

/* A piece of a file read ahead: what one RS_DATA frame carries, at boff in the file's buffer. */
struct piece {
	uint64_t off;
	uint32_t len, boff;
};

/* A tracked non-directory between its take and its send. */
struct qent {
	struct fused_dentry e;
	uint64_t ticket;
	int fd;         /* O_PATH, named from our root; -1: gone, or nothing to send */
	int dfd;        /* readable, when it has data to send; else -1 */
	struct stat st;
	uint64_t ahead; /* bytes asked of the disk ahead of it */
	/* read ahead by the reader thread: the first pieces of its data, in send order */
	uint8_t *rb;
	size_t rb_len;  /* allocated (what counts against READ_BYTES) */
	struct piece *pc;
	uint32_t n_pc, next_pc;
	uint64_t dgen;  /* fused_dirty_data_gen of the file, under the stream lock, before the reads */
};

static void q_close(struct qent *x)
{
	if (x->dfd >= 0)
		close(x->dfd);
	if (x->fd >= 0)
		close(x->fd);
	x->fd = x->dfd = -1;
	free(x->rb);
	free(x->pc);
	x->rb = NULL;
	x->pc = NULL;
	x->rb_len = 0;
	x->n_pc = x->next_pc = 0;
	fused_dentry_free(&x->e);
}

/*
 * Under the stream lock, the sender at off of x: the piece read ahead for it if the file has
 * not changed since it was read (NULL: read it now, under this lock). A changed file's pieces
 * are all dropped: the rest of it is read under the lock, as without a reader.
 */
static const struct piece *piece_at(struct qent *x, uint64_t off)
{
	const struct piece *pc;

	while (x->next_pc < x->n_pc && x->pc[x->next_pc].off < off)
		x->next_pc++;
	if (x->next_pc >= x->n_pc || x->pc[x->next_pc].off != off)
		return NULL;
	if (fused_dirty_data_gen(fused_dirty_g, &x->e.h) != x->dgen) {
		x->next_pc = x->n_pc;
		fused_rs_ph.ahead_again++;
		return NULL;
	}
	pc = &x->pc[x->next_pc++];
	fused_rs_ph.ahead_sent += pc->len;
	return pc;
}

/*
 * One extent [off, end) of x as RS_DATA frames. 0 sent (or the peer lost: the
 * caller looks), -ENOENT the file is gone (its unlink is in the stream), -EAGAIN it is still
 * linked but has no path here.
 */
static int send_range(struct walker *w, struct qent *x, uint64_t off, uint64_t end)
{
	struct fused *f = w->f;
	int fd = x->dfd;

	while (off < end && fused_rs_live(w)) {
		size_t want = end - off < FUSED_RS_CHUNK ? (size_t)(end - off) : FUSED_RS_CHUNK;
		struct sk_rmsg_op d = { .type = SK_RMSG_RS_DATA, .off = off };
		const struct piece *pc;
		const uint8_t *data = w->buf;
		uint64_t t = sk_now_us();
		ssize_t n;
		int pl;

		if (!fused_rs_pace(w))
			break;
		t = fused_rs_ph_add(&fused_rs_ph.pace, t);
		pthread_mutex_lock(&f->stream_mu);
		if (!atomic_load(&f->connected)) {
			pthread_mutex_unlock(&f->stream_mu);
			return 0;
		}
		pl = fused_fd_path(f, fd, w->path, sizeof(w->path));
		if (pl < 0) {
			pthread_mutex_unlock(&f->stream_mu);
			return fused_rs_unnamed(fd, pl);
		}
		/* read ahead and unchanged since: what a pread under this lock would give */
		if ((pc = piece_at(x, off)) && pc->len <= want) {
			data = x->rb + pc->boff;
			n = (ssize_t)pc->len;
		} else {
			n = pread(fd, w->buf, want, (off_t)off);
		}
		t = fused_rs_ph_add(&fused_rs_ph.read, t);
		if (n <= 0) { /* shorter now: the size goes with the metadata */
			pthread_mutex_unlock(&f->stream_mu);
			return 0;
		}
		d.path1 = w->path;
		d.path1_len = (uint16_t)pl;
		fused_repl_submit(f, &d, data, (size_t)n, NULL, NULL);
		pthread_mutex_unlock(&f->stream_mu);
		t = fused_rs_ph_add(&fused_rs_ph.send, t);
		atomic_fetch_add(&fused_rs_stats.read, (uint64_t)n);
		atomic_fetch_add(&fused_rs_stats.sent, (uint64_t)n);
		fused_rs_progress_add(f, (uint64_t)n);
		fused_rs_rate(w, (uint64_t)n);
		fused_rs_ph_add(&fused_rs_ph.pace, t);
		off += (uint64_t)n;
	}
	return 0;
}

/*
 * Under the stream lock: the metadata of a tracked non-directory whose path is in
 * w->path. A symlink or device is named through its directory (its own fd would
 * follow it for the xattrs), a file through its fd.
 */
static void send_meta_of(struct walker *w, int fd, const struct stat *st, size_t pl)
{
	char p[PATH_MAX], *slash;
	int pfd;

	memcpy(p, w->path, pl + 1);
	if (S_ISREG(st->st_mode))
		return fused_rs_send_meta(w, fd, NULL, p, pl);
	slash = strrchr(w->path, '/');
	if (slash)
		*slash = '\0';
	pfd = openat(w->f->root_fd, slash ? w->path : ".", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (pfd >= 0) {
		fused_rs_send_meta(w, pfd, slash ? slash + 1 : w->path, p, pl);
		close(pfd);
	}
}

/* The i-th range of x's tracked data, clipped to size: false past the last. */
static bool extent_at(const struct qent *x, uint32_t i, uint64_t size, uint64_t *off, uint64_t *end)
{
	if (x->e.flags & FUSED_DF_WHOLE) {
		*off = 0;
		*end = size;
		return i == 0;
	}
	if (i >= x->e.n_ext)
		return false;
	*off = x->e.ext[i].off;
	*end = x->e.ext[i].end < size ? x->e.ext[i].end : size;
	return true;
}

/* Named, opened, its extents asked of the disk (at most budget bytes). 0, or -EAGAIN. */
static int prepare(struct walker *w, struct fused_rs_round *rd, struct qent *x, uint64_t budget)
{
	struct fused *f = w->f;
	int r;

	x->dfd = -1;
	x->ahead = 0;
	x->fd = fused_rs_open_dh(f, &x->e.h, &x->st);
	if (x->fd < 0)
		return 0; /* ESTALE: deleted since; its directory's listing removed it */
	r = name_fd(w, rd, &x->fd, &x->st);
	if (r == 0 && rd->n_walked) {
		int pl;

		bool walked;

		pthread_mutex_lock(&f->stream_mu);
		pl = fused_fd_path(f, x->fd, w->path, sizeof(w->path));
		walked = pl >= 0 && fused_rs_walked_locked(rd, w->path);
		pthread_mutex_unlock(&f->stream_mu);
		if (pl < 0 || walked)
			r = -ENOENT; /* sent with its directory (or gone) */
	}
	if (r < 0) {
		close(x->fd);
		x->fd = -1;
		return r == -EAGAIN ? r : 0;
	}
	if (S_ISREG(x->st.st_mode) && (x->e.n_ext || (x->e.flags & FUSED_DF_WHOLE))) {
		char pp[64];

		snprintf(pp, sizeof(pp), "/proc/self/fd/%d", x->fd);
		x->dfd = open(pp, O_RDONLY | O_CLOEXEC);
		if (x->dfd >= 0 && fstat(x->dfd, &x->st) < 0) {
			close(x->dfd);
			x->dfd = -1;
		}
	}
	for (uint32_t i = 0; x->dfd >= 0 && x->ahead < budget; i++) {
		uint64_t off, end;

		if (!extent_at(x, i, (uint64_t)x->st.st_size, &off, &end))
			break;
		if (off >= end)
			continue;
		if (end - off > budget - x->ahead)
			end = off + (budget - x->ahead);
		posix_fadvise(x->dfd, (off_t)off, (off_t)(end - off), POSIX_FADV_WILLNEED);
		x->ahead += end - off;
	}
	return 0;
}

/*
 * A file tracked whole (renamed, linked, its bytes moved, past its zones' bound) may still be
 * mostly what the peer holds at its path: a file saved by writing a copy and renaming it over
 * the old one (editors, rsync without --inplace), or a renamed file whose peer copy moved
 * with its name (fused/moves.c). From FUSED_WHOLE_SUMS_MIN bytes it is compared by
 * block checksums as the full resync compares (resync.c, one request per 4 MiB window, only
 * differing 64 KiB blocks sent; a peer without that path, or with it empty, gets the rest
 * whole); a smaller one is sent whole, as a round trip would cost more than its data.
 */
static bool sums_first(const struct qent *x)
{
	return (x->e.flags & FUSED_DF_WHOLE) && (uint64_t)x->st.st_size >= FUSED_WHOLE_SUMS_MIN;
}

/* Data, then metadata, of one prepared entry. 0 (the caller checks the peer), or -EAGAIN. */
static int send_one(struct walker *w, struct fused_rs_round *rd, struct qent *x)
{
	struct fused *f = w->f;
	uint64_t t;
	int r = 0, pl;

	if (x->fd >= 0 && x->dfd >= 0) {
		if (x->e.flags & FUSED_DF_WHOLE) {
			atomic_fetch_add(&f->rs_total_bytes, (uint64_t)x->st.st_size);
			r = sums_first(x) ? fused_rs_sync_file(w, x->dfd) :
					    send_range(w, x, 0, (uint64_t)x->st.st_size);
		}
		for (uint32_t i = 0; r == 0 && !(x->e.flags & FUSED_DF_WHOLE) && i < x->e.n_ext; i++) {
			uint64_t end = x->e.ext[i].end < (uint64_t)x->st.st_size ? x->e.ext[i].end :
										     (uint64_t)x->st.st_size;

			if (x->e.ext[i].off < end)
				r = send_range(w, x, x->e.ext[i].off, end);
		}
	}
	sk_debug("resync: round %d file entry flags 0x%x, %u extents, fd %d, rc %d", rd->round,
		 x->e.flags, x->e.n_ext, x->fd, r);
	if (r == -EAGAIN)
		return r;
	if (x->fd < 0 || r < 0)
		return 0; /* gone: its unlink is in the stream */
	if (S_ISREG(x->st.st_mode) && x->st.st_nlink == 1) /* one name: that one */
		fused_rs_sent_add(&rd->sent, fused_rs_dh_hash(&x->e.h));
	/* metadata last (size, owner, mode, xattrs, times): the data above moved mtime */
	t = sk_now_us();
	if (!fused_rs_pace(w))
		return 0;
	t = fused_rs_ph_add(&fused_rs_ph.pace, t);
	pthread_mutex_lock(&f->stream_mu);
	if (atomic_load(&f->connected)) {
		pl = fused_fd_path(f, x->fd, w->path, sizeof(w->path));
		if (pl >= 0)
			send_meta_of(w, x->fd, &x->st, (size_t)pl);
		else if (fused_rs_unnamed(x->fd, pl) == -EAGAIN)
			r = -EAGAIN;
	}
	pthread_mutex_unlock(&f->stream_mu);
	fused_rs_ph_add(&fused_rs_ph.meta, t);
	return r;
}

/*
 * The pipeline. Reader threads (prep_main, read_main below) take the next tracked files, open
 * and name them, ask their extents of the disk, hint the peer, and read the first READ_BYTES of
 * their data into buffers, while the resync thread (the sender) seals and sends the file
 * before: the per-file work overlaps. Files are sent in the order they were taken, as
 * before. Data read ahead goes only if the file's data generation (fused_dirty_data_gen),
 * read under the stream lock before the read, is the same under the stream lock that sends
 * it: every operation that changes a file applies it locally and notes it in one hold of that
 * lock, so equal means none did in between, and the frame carries what a read under that lock
 * would (the file as it is at the frame's place in the stream; a live write is never
 * overwritten by older resync data). Otherwise the rest of that file is read under the lock,
 * as without a reader. Memory: READ_BYTES of buffers at most, the file being sent included.
 * The reader is joined before fused_rs_files returns, on every path.
 */
#define READ_BYTES (16u << 20)
#define ADVISED_BEFORE_READ 16 /* files asked of the disk and not read yet, before the reader reads */

struct pipe {
	struct walker rw, rw2; /* the readers' copies of the walker (their own path buffers) */
	struct fused_rs_round *rd;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* files taken, in order: [head, tail) queued (slot % AHEAD_FILES); the reader reads them
	 * ahead from rdn on; a slot being read is busy (the sender waits for that read) */
	struct qent q[AHEAD_FILES];
	bool busy[AHEAD_FILES];
	uint64_t head, tail, rdn;
	uint64_t advised, held; /* bytes asked of the disk, bytes of buffers, by files not sent yet */
	bool done, stop;        /* done: the reader took its last file (rc says why) */
	int rc;                 /* 0 no more; -ECONNRESET lost; -EAGAIN a file has no name */
	bool threaded;
	pthread_t th, th2;
};

/*
 * SKFUSED_RS_READER: 0 (the default) the resync thread does every step itself; 1 one helper
 * thread takes, opens, names, asks of the disk and hints the next files, and the resync thread
 * reads each file under the stream lock into its one buffer and sends it; 2 a second helper also
 * reads the files' data ahead into buffers (read_main). On the 2-core test host, quiet, 0 was
 * the fastest in every interleaved run (6 of 6 against 2, 3 of 3 against 1, bench/README.md):
 * sealing from buffers read earlier (cold in the CPU's caches) and busy helper threads cost
 * more than the work they take off the resync thread when the cores are shared.
 */
static int reader_mode(void)
{
	static int mode = -1;

	if (mode < 0) {
		const char *e = getenv("SKFUSED_RS_READER");

		mode = e && e[0] >= '0' && e[0] <= '2' && !e[1] ? e[0] - '0' : 0;
	}
	return mode;
}

/* The first pieces of x's tracked data, at most budget bytes, into x->rb (reader). */
static void read_ahead(struct walker *w, struct qent *x, uint64_t budget)
{
	struct fused *f = w->f;
	uint64_t size = (uint64_t)x->st.st_size, want = 0, t = sk_now_us();
	size_t used = 0;
	uint32_t cap, np = 0;

	if (sums_first(x))
		return; /* read as it is compared, window by window */
	for (uint32_t i = 0; want < budget; i++) {
		uint64_t off, end;

		if (!extent_at(x, i, size, &off, &end))
			break;
		if (off < end)
			want += end - off;
	}
	if (want > budget)
		want = budget;
	if (!want)
		return;
	cap = (uint32_t)(want / FUSED_RS_CHUNK) + x->e.n_ext + 2;
	x->rb = malloc(want);
	x->pc = calloc(cap, sizeof(*x->pc));
	if (!x->rb || !x->pc) {
		free(x->rb);
		free(x->pc);
		x->rb = NULL;
		x->pc = NULL;
		return;
	}
	x->rb_len = want;
	/* before the reads, under the lock every change is applied and noted in */
	pthread_mutex_lock(&f->stream_mu);
	x->dgen = fused_dirty_data_gen(fused_dirty_g, &x->e.h);
	pthread_mutex_unlock(&f->stream_mu);
	for (uint32_t i = 0; used < want && np < cap; i++) {
		uint64_t off, end;

		if (!extent_at(x, i, size, &off, &end))
			break;
		/* the sender's steps: a piece is one frame */
		while (off < end && used < want && np < cap) {
			size_t c = end - off < FUSED_RS_CHUNK ? (size_t)(end - off) : FUSED_RS_CHUNK;
			ssize_t n;

			if (c > want - used)
				c = want - used;
			n = pread(x->dfd, x->rb + used, c, (off_t)off);
			if (n <= 0)
				goto out; /* shorter now: the sender reads the rest under the lock */
			x->pc[np++] = (struct piece){ .off = off, .len = (uint32_t)n, .boff = (uint32_t)used };
			used += (size_t)n;
			off += (uint64_t)n;
			if ((size_t)n < c)
				goto out;
		}
	}
out:
	x->n_pc = np;
	fused_rs_ph.ahead_files += np > 0;
	fused_rs_ph.ahead_pieces += np;
	fused_rs_ph.ahead_bytes += used;
	fused_rs_ph_add(&fused_rs_ph.ahead_read, t);
	if (np && fused_fault(FUSED_FAULT_RS_AHEAD_LOST)) {
		sk_warn("fault rs_ahead_lost: the peer is dropped after a file was read ahead");
		fused_peer_lost(f, w->gen, "fault point rs_ahead_lost");
	}
}

/*
 * Take one more file and make it ready: named, opened, asked of the disk (advise bytes at
 * most), hinted to the peer. 1 ready in *x; 0 none left; -ECONNRESET lost; -EAGAIN a file
 * still linked has no name.
 */
static int produce(struct pipe *p, struct qent *x, uint64_t advise)
{
	struct walker *w = &p->rw;
	uint64_t t = sk_now_us();
	int r;

	memset(x, 0, sizeof(*x));
	x->fd = x->dfd = -1;
	if (!fused_rs_live(w))
		return -ECONNRESET;
	r = fused_dirty_take(fused_dirty_g, false, w->gen, &x->e, &x->ticket);
	if (r <= 0)
		return r < 0 ? -ECONNRESET : 0;
	r = prepare(w, p->rd, x, advise);
	if (r < 0) {
		q_close(x); /* taken, not sent: owed still */
		return r;
	}
	if (x->dfd >= 0) /* the peer looks it up while earlier files are sent */
		fused_rs_hint(w, x->fd, &x->e, &x->st);
	fused_rs_ph_add(&fused_rs_ph.prep, t);
	return 1;
}

/* p->mu held */
static void q_push(struct pipe *p, const struct qent *x)
{
	p->q[p->tail++ % AHEAD_FILES] = *x;
	p->advised += x->ahead;
}

/*
 * The readers, two threads: one takes files and asks them of the disk as far ahead as the bounds
 * allow (64 files, 32 MiB), the other reads them in order behind that (16 files behind, so the
 * disk has many reads in flight: a read right after its file's advice would wait for that file's
 * I/O alone), so cold opens (an inode read each) and cold data reads overlap too. A file the
 * sender comes to before it was read is read by the sender under the stream lock, as without
 * the readers.
 */
static bool can_prep(const struct pipe *p)
{
	return !p->done && p->tail - p->head < AHEAD_FILES && p->advised < AHEAD_BYTES;
}

static void *prep_main(void *arg)
{
	struct pipe *p = arg;
	uint64_t cpu0 = sk_thread_cpu_us();

	pthread_mutex_lock(&p->mu);
	for (;;) {
		uint64_t advise;
		struct qent x;
		int r;

		while (!p->stop && !p->done && !can_prep(p))
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop || p->done)
			break;
		advise = AHEAD_BYTES - p->advised;
		pthread_mutex_unlock(&p->mu);
		r = produce(p, &x, advise);
		pthread_mutex_lock(&p->mu);
		if (r > 0 && !p->stop) {
			q_push(p, &x);
		} else if (r > 0) {
			pthread_mutex_unlock(&p->mu);
			q_close(&x); /* stopped meanwhile: taken, not sent, owed still */
			pthread_mutex_lock(&p->mu);
		} else {
			p->done = true;
			p->rc = r;
		}
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	fused_rs_ph.cpu_ahead += sk_thread_cpu_us() - cpu0;
	return NULL;
}

static void *read_main(void *arg)
{
	struct pipe *p = arg;
	uint64_t cpu0 = sk_thread_cpu_us();

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct qent *x;
		uint64_t i, budget;

		for (;;) {
			if (p->rdn < p->head)
				p->rdn = p->head;
			i = p->rdn;
			if (p->stop || (p->done && i >= p->tail))
				goto out;
			/* far enough behind the advice, or no more advice coming for now */
			if (i < p->tail && p->held < READ_BYTES &&
			    (p->tail - i >= ADVISED_BEFORE_READ || !can_prep(p)))
				break;
			pthread_cond_wait(&p->cv, &p->mu);
		}
		x = &p->q[i % AHEAD_FILES];
		budget = READ_BYTES - p->held;
		p->busy[i % AHEAD_FILES] = true;
		pthread_mutex_unlock(&p->mu);
		if (x->dfd >= 0)
			read_ahead(&p->rw2, x, budget);
		pthread_mutex_lock(&p->mu);
		p->busy[i % AHEAD_FILES] = false;
		p->held += x->rb_len;
		p->rdn = i + 1;
		pthread_cond_broadcast(&p->cv);
	}
out:
	pthread_mutex_unlock(&p->mu);
	fused_rs_ph.cpu_read += sk_thread_cpu_us() - cpu0;
	return NULL;
}

/* Without a reader: the next files named, opened and asked of the disk, by the sender. */
static void fill_inline(struct pipe *p)
{
	while (!p->done && p->tail - p->head < AHEAD_FILES && p->advised < AHEAD_BYTES) {
		struct qent x;
		int r = produce(p, &x, AHEAD_BYTES - p->advised);

		if (r <= 0) {
			p->done = true;
			p->rc = r;
			break;
		}
		q_push(p, &x);
	}
}

/* While the sender is paused (fault rs_ahead_pause): until x's data changes, 10 s at most. */
static void pause_until_changed(struct walker *w, struct qent *x)
{
	struct fused *f = w->f;

	sk_warn("fault rs_ahead_pause: the sender waits until the file it read ahead changes");
	for (int k = 0; k < 100 && fused_rs_live(w); k++) {
		bool changed;

		pthread_mutex_lock(&f->stream_mu);
		changed = fused_dirty_data_gen(fused_dirty_g, &x->e.h) != x->dgen;
		pthread_mutex_unlock(&f->stream_mu);
		if (changed)
			break;
		usleep(100000);
	}
}

int fused_rs_files(struct walker *w, struct fused_rs_round *rd)
{
	struct fused *f = w->f;
	struct pipe *p = calloc(1, sizeof(*p));
	uint64_t ticket;
	int rc = 0;

	if (!p)
		return -EAGAIN;
	p->rw = p->rw2 = *w;
	p->rd = rd;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (reader_mode() >= 1 && pthread_create(&p->th, NULL, prep_main, p) == 0) {
		p->threaded = true;
		pthread_setname_np(p->th, "sk-rs-reader");
		if (reader_mode() >= 2 && pthread_create(&p->th2, NULL, read_main, p) == 0)
			pthread_setname_np(p->th2, "sk-rs-reader");
		else
			p->th2 = p->th; /* no reads ahead: the sender reads, as without readers */
	}
	for (;;) {
		struct qent x;
		uint64_t t = sk_now_us();
		/* a sender slower than the reader (fault rs_ahead_slow): every file is read ahead */
		bool slow = p->threaded && !pthread_equal(p->th2, p->th) &&
			    fused_fault(FUSED_FAULT_RS_AHEAD_SLOW);

		pthread_mutex_lock(&p->mu);
		if (!p->threaded)
			fill_inline(p);
		while (p->threaded && p->rc == 0 &&
		       (p->head == p->tail ? !p->done
					   : p->busy[p->head % AHEAD_FILES] || (slow && p->rdn <= p->head)))
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->rc < 0 || p->head == p->tail) { /* an error stops at once, as without a reader */
			rc = p->rc;
			pthread_mutex_unlock(&p->mu);
			break;
		}
		x = p->q[p->head++ % AHEAD_FILES];
		pthread_cond_broadcast(&p->cv); /* a slot free for the reader */
		pthread_mutex_unlock(&p->mu);
		if (p->threaded)
			fused_rs_ph_add(&fused_rs_ph.wait, t);
		if (x.n_pc && fused_fault(FUSED_FAULT_RS_AHEAD_PAUSE))
			pause_until_changed(w, &x);
		rc = send_one(w, rd, &x);
		ticket = x.ticket;
		pthread_mutex_lock(&p->mu); /* its budgets back once it is sent */
		p->advised -= x.ahead;
		p->held -= x.rb_len;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		q_close(&x);
		if (rc < 0)
			break;
		if (!fused_rs_live(w)) {
			rc = -ECONNRESET;
			break;
		}
		fused_dirty_sent(fused_dirty_g, ticket, w->gen, atomic_load(&f->seq_sent));
		if (++rd->entries % FUSED_RS_ACK_EVERY == 0)
			fused_dirty_acked(fused_dirty_g, w->gen, atomic_load(&f->seq_acked));
	}
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	if (p->threaded)
		pthread_join(p->th, NULL);
	if (p->threaded && !pthread_equal(p->th2, p->th))
		pthread_join(p->th2, NULL);
	/* taken, not sent: owed still (the peer loss, or the full resync's end, settles them) */
	for (; p->head < p->tail; p->head++)
		q_close(&p->q[p->head % AHEAD_FILES]);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
	if (rc == -EAGAIN)
		sk_info("resync: a tracked file still linked has no path here: the full resync follows");
	return rc;
}
