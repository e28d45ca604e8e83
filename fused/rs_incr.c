/* fused/rs_incr.c: incremental online resync: only what the dirty tracker recorded (directories listed parents first, extents sent as data, metadata), in the live stream. */
#include "rs_incr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "moves.h"

/*
 * Why this is safe while applications write: as in the full resync (resync.c),
 * every frame is built under the stream lock from the data as it is at that point
 * of the stream, so the peer applies it in its place among the live operations
 * and an older copy never overtakes a newer write. Objects are found by file
 * handle, so a rename meanwhile only changes the path the frame carries.
 *
 * Why it is complete: the tracker recorded every change made while the peer was
 * not in sync, before the change was answered; an entry leaves the tracker only
 * once the frames that carried it are acknowledged (fused_dirty_sent/acked), so a
 * lost connection or a killed primary puts it back. Directories go first, parents
 * before children, so the files and directories they create exist when their
 * data and metadata come.
 */
#define DIRS_MAX (1u << 20) /* directories per round; more wait for the next round */
#define ROUNDS_MAX 20
/* a name that is not in any tree: the checksum request for it is a mere round trip */
static const char probe_path[] = ".skfused-probe.does-not-exist";

bool fused_rs_incr_usable(struct walker *w)
{
	struct fused *f = w->f;
	struct sk_rmsg_op q = { .type = SK_RMSG_RS_SUMSREQ, .len = SK_RMSG_BLOCK };
	uint64_t base = fused_dirty_base(fused_dirty_g), peer = 0;
	struct sk_rmsg_sums s;
	char a[17], b[17];
	uint64_t t0 = sk_now_us();
	bool ok;

	memset(&fused_rs_ph, 0, sizeof(fused_rs_ph));
	fused_rs_ph.cpu0 = sk_thread_cpu_us();
	if (fused_dirty_lost(fused_dirty_g) || !base) {
		sk_info("resync: no usable dirty tracking (lost, or never in sync): full resync");
		return false;
	}
	/* the peer's GEN answer to START (its generations) comes before this reply */
	q.path1 = probe_path;
	q.path1_len = (uint16_t)strlen(probe_path);
	if (fused_repl_ask(f, w->gen, &q, -1, &s, w->sums, NULL) < 0)
		return false;
	fused_rs_ph_add(&fused_rs_ph.usable, t0);
	pthread_mutex_lock(&f->state_mu);
	ok = f->peer_verdict == SK_GEN_V_OK && f->peer_gen_known && f->peer_gen.g.current == base;
	if (f->peer_gen_known)
		peer = f->peer_gen.g.current;
	pthread_mutex_unlock(&f->state_mu);
	sk_gen_id_str(base, a);
	sk_gen_id_str(peer, b);
	if (!ok)
		sk_info("resync: the peer's copy (generation %s) is not the one tracking started from "
			"(%s): full resync", b, a);
	return ok;
}

int fused_rs_open_dh(struct fused *f, const struct fused_dh *h, struct stat *st)
{
	struct stat rst;
	union {
		struct file_handle fh;
		uint8_t b[sizeof(struct file_handle) + FUSED_DH_MAX];
	} u;
	int fd;

	u.fh.handle_bytes = h->len;
	u.fh.handle_type = h->type;
	memcpy(u.fh.f_handle, h->b, h->len);
	fd = open_by_handle_at(f->root_fd, &u.fh, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno; /* ESTALE: deleted since; its directory's listing removed it */
	if (fstat(fd, st) < 0 || fstat(f->root_fd, &rst) < 0 || st->st_dev != rst.st_dev) {
		close(fd);
		return -EXDEV;
	}
	return fd;
}

static uint64_t seq_now(struct fused *f)
{
	return atomic_load(&f->seq_sent);
}

struct idir {
	struct fused_dentry e;
	uint64_t ticket;
	int fd;
	int depth;
	char *path;
};

static int by_depth(const void *a, const void *b)
{
	const struct idir *x = a, *y = b;

	return x->depth - y->depth;
}

bool fused_rs_under(char **walked, size_t n, const char *path)
{
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(walked[i]);

		if (l == 0 || (!strncmp(path, walked[i], l) && (path[l] == '/' || path[l] == '\0')))
			return true;
	}
	return false;
}

bool fused_rs_walked_locked(const struct fused_rs_round *rd, const char *path)
{
	return rd->n_walked && fused_path_gen == rd->path_gen &&
	       fused_rs_under(rd->walked, rd->n_walked, path);
}

uint64_t fused_rs_dh_hash(const struct fused_dh *h)
{
	uint64_t x = 14695981039346656037ull ^ (uint64_t)(uint32_t)h->type;

	for (unsigned i = 0; i < h->len; i++) {
		x ^= h->b[i];
		x *= 1099511628211ull;
	}
	return x ? x : 1;
}

bool fused_rs_sent_has(const struct fused_rs_sentset *s, uint64_t k)
{
	for (size_t i = k & s->mask; s->v && s->v[i]; i = (i + 1) & s->mask)
		if (s->v[i] == k)
			return true;
	return false;
}

void fused_rs_sent_add(struct fused_rs_sentset *s, uint64_t k)
{
	if (fused_rs_sent_has(s, k))
		return;
	if ((s->n + 1) * 2 > s->mask + 1 || !s->v) {
		size_t nm = s->v ? s->mask * 2 + 1 : 4095;
		uint64_t *nv = calloc(nm + 1, sizeof(*nv));

		if (!nv)
			return;
		for (size_t i = 0; s->v && i <= s->mask; i++)
			if (s->v[i]) {
				size_t j = s->v[i] & nm;

				while (nv[j])
					j = (j + 1) & nm;
				nv[j] = s->v[i];
			}
		free(s->v);
		s->v = nv;
		s->mask = nm;
	}
	for (size_t i = k & s->mask;; i = (i + 1) & s->mask)
		if (!s->v[i]) {
			s->v[i] = k;
			s->n++;
			return;
		}
}


/* The tracked directories of this round, parents first. 0, or -ECONNRESET. */
static int do_dirs(struct walker *w, struct fused_rs_round *rd)
{
	struct fused *f = w->f;
	struct idir *v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	pthread_mutex_lock(&f->stream_mu);
	rd->path_gen = fused_path_gen;
	pthread_mutex_unlock(&f->stream_mu);
	for (;;) {
		struct idir x = { .fd = -1 };
		struct stat st;
		char p[PATH_MAX];
		int r, pl = -1;

		if (n == DIRS_MAX)
			break;
		r = fused_dirty_take(fused_dirty_g, true, w->gen, &x.e, &x.ticket);
		if (r < 0) {
			rc = -ECONNRESET;
			break;
		}
		if (r == 0)
			break;
		x.fd = fused_rs_open_dh(f, &x.e.h, &st);
		if (x.fd >= 0 && S_ISDIR(st.st_mode)) {
			pthread_mutex_lock(&f->stream_mu);
			pl = fused_fd_path(f, x.fd, p, sizeof(p));
			pthread_mutex_unlock(&f->stream_mu);
		}
		if (pl < 0 || !(x.path = strdup(p))) { /* gone, or not ours: nothing to send */
			if (x.fd >= 0)
				close(x.fd);
			fused_dirty_sent(fused_dirty_g, x.ticket, w->gen, seq_now(f));
			fused_dentry_free(&x.e);
			continue;
		}
		for (const char *c = x.path; *c; c++)
			x.depth += *c == '/';
		x.depth += x.path[0] != '\0';
		if (n == cap) {
			struct idir *nv = realloc(v, (cap ? cap * 2 : 64) * sizeof(*v));

			if (!nv) { /* back into the tracker with the next peer loss; a full resync now */
				close(x.fd);
				free(x.path);
				fused_dentry_free(&x.e);
				rc = -EAGAIN;
				break;
			}
			v = nv;
			cap = cap ? cap * 2 : 64;
		}
		v[n++] = x;
	}
	if (n)
		qsort(v, n, sizeof(*v), by_depth);
	for (size_t i = 0; i < n; i++) {
		struct idir *x = &v[i];
		int dfd;

		bool walked;

		if (rc == 0 && !fused_rs_live(w))
			rc = -ECONNRESET;
		pthread_mutex_lock(&f->stream_mu);
		walked = fused_rs_walked_locked(rd, x->path);
		pthread_mutex_unlock(&f->stream_mu);
		sk_debug("resync: round %d dir entry \"%s\" flags 0x%x%s", rd->round, x->path, x->e.flags,
			 walked ? " (under a walked one)" : "");
		uint64_t hits = fused_rs_links_hits(w->links);

		if (rc == 0 && !walked &&
		    (dfd = openat(x->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
			if (x->e.flags & (FUSED_DF_WALK | FUSED_DF_NS)) {
				/*
				 * new or moved: all of it; else its names only, in the first
				 * round. A later round lists a directory again because live
				 * operations met it half reconciled: a name the peer then makes
				 * anew would wait for data no tracked entry sends, so its files
				 * are compared (checksums) as in the full resync.
				 */
				w->shallow = !(x->e.flags & FUSED_DF_WALK) && rd->round == 0;
				fused_rs_sync_dir(w, dfd, 0);
				w->shallow = false;
				if ((x->e.flags & FUSED_DF_WALK) && rd->walked) {
					rd->walked[rd->n_walked++] = x->path;
					x->path = NULL;
				}
			} else if (fused_rs_pace(w)) { /* its metadata only */
				char p[PATH_MAX];
				int pl;

				pthread_mutex_lock(&f->stream_mu);
				if (atomic_load(&f->connected) &&
				    (pl = fused_fd_path(f, x->fd, p, sizeof(p))) >= 0)
					fused_rs_send_meta(w, x->fd, NULL, p, (size_t)pl);
				pthread_mutex_unlock(&f->stream_mu);
			}
			close(dfd);
		}
		/*
		 * an entry taken but not sent stays owed: the peer loss puts it back. So does one
		 * whose listing held names of hard-link groups: the peer knows a group only from
		 * the names listed in one session, and a session cut short lists them again.
		 */
		if (rc == 0 && fused_rs_live(w) && fused_rs_links_hits(w->links) == hits)
			fused_dirty_sent(fused_dirty_g, x->ticket, w->gen, seq_now(f));
		if (++rd->entries % FUSED_RS_ACK_EVERY == 0)
			fused_dirty_acked(fused_dirty_g, w->gen, atomic_load(&f->seq_acked));
		close(x->fd);
		free(x->path);
		fused_dentry_free(&x->e);
	}
	free(v);
	return rc;
}

void fused_rs_fail_path(struct fused *f, const char *path, struct fused_dnote *out, unsigned *n,
			struct fused_rs_cut *cut)
{
	int fd, rc;

	/* the peer's path: beneath the root, no symlink followed (the last name may be one) */
	rc = fused_apply_open_path(f->root_fd, path, strlen(path), O_PATH | O_NOFOLLOW, &fd);
	if (rc < 0)
		fd = -1;
	if (fd >= 0 && *n < 4) {
		struct stat st;

		if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode) && fused_fd_dh(f, fd, &out[*n].h) == 0) {
			out[*n].flags = FUSED_DF_WHOLE | FUSED_DF_META;
			++*n;
		}
	}
	if (fd >= 0)
		close(fd);
	fd = fused_rs_deepest_dir(f, path);
	/* compared whole, as the full resync walks such a directory again: what the failed
	 * operation would have brought there may have moved on since (the path names it no more) */
	if (fd >= 0 && *n < 4 && fused_fd_dh(f, fd, &out[*n].h) == 0) {
		out[*n].flags = FUSED_DF_DIR | FUSED_DF_WALK;
		++*n;
	}
	if (fd >= 0)
		close(fd);
	if ((rc == -ELOOP || rc == -EXDEV) && !cut->n++)
		snprintf(cut->first, sizeof(cut->first), "%s", path);
}

/*
 * A regular file a shallow listing remade empty on the peer (its report: path1 == path2):
 * unless this resync sent it already (after every shallow listing), it is compared and sent
 * by path, as the full resync visits a file, so the name the peer remade gets the data even
 * when the file has other names. Anything else at that path now: as a failed operation.
 */
static void send_remade(struct walker *w, struct fused_rs_round *rd, const char *path,
			struct fused_rs_cut *cut)
{
	struct fused *f = w->f;
	struct fused_dnote n[4];
	struct fused_dh h;
	struct stat st;
	char p[PATH_MAX];
	unsigned c = 0;
	int fd = -1, pl;

	rd->remade++;
	/* the peer's path, beneath the root; opened only once seen to be a file (a FIFO or device
	 * there now is a name replaced since, not a refusal to count) */
	if (fused_apply_open_file(f->root_fd, path, strlen(path), O_RDONLY, false, &fd) < 0)
		fd = -1;
	if (fd >= 0 && fstat(fd, &st) < 0) {
		close(fd);
		fd = -1;
	}
	if (fd < 0) { /* moved or replaced since: its directory is compared whole */
		memset(n, 0, sizeof(n));
		pthread_mutex_lock(&f->stream_mu);
		fused_rs_fail_path(f, path, n, &c, cut);
		pthread_mutex_unlock(&f->stream_mu);
		fused_dirty_note(fused_dirty_g, n, c, 0, 0);
		return;
	}
	/* a file with several names went to one of them, maybe not the one remade */
	if (st.st_nlink == 1 && fused_fd_dh(f, fd, &h) == 0 && fused_rs_sent_has(&rd->sent, fused_rs_dh_hash(&h))) {
		close(fd);
		return;
	}
	rd->remade_sent++;
	sk_debug("resync: \"%s\" was remade on the peer without its data: sent by path", path);
	fused_rs_sync_file(w, fd);
	if (fused_rs_pace(w)) {
		pthread_mutex_lock(&f->stream_mu);
		if (atomic_load(&f->connected) && (pl = fused_fd_path(f, fd, p, sizeof(p))) >= 0)
			fused_rs_send_meta(w, fd, NULL, p, (size_t)pl);
		pthread_mutex_unlock(&f->stream_mu);
	}
	close(fd);
}

/*
 * The peer's reports of live operations that met parts not sent yet (FAILED, queued
 * by the ack reader) become tracked entries again: what they missed is sent by the
 * next round; files a shallow listing remade are sent now (send_remade). Returns how
 * many reports there were; -1 if some were lost (too many).
 */
static int drain_failures(struct walker *w, struct fused_rs_round *rd)
{
	struct fused *f = w->f;
	struct fused_rs_fail *l;
	struct fused_rs_cut cut = { 0 };
	bool full;
	int k = 0;

	pthread_mutex_lock(&f->rs_mu);
	l = f->rs_fail;
	full = f->rs_fail_full;
	f->rs_fail = NULL;
	f->rs_fail_full = false;
	f->rs_fail_n = 0;
	pthread_mutex_unlock(&f->rs_mu);
	while (l) {
		struct fused_rs_fail *nx = l->next;
		struct fused_dnote n[4];
		char p[PATH_MAX];
		const char *pp[2];
		unsigned c = 0;
		int np;

		if (!l->fh && l->p1[0] && !strcmp(l->p1, l->p2)) {
			if (fused_rs_live(w))
				send_remade(w, rd, l->p1, &cut);
			free(l);
			l = nx;
			k++;
			continue;
		}
		memset(n, 0, sizeof(n));
		pthread_mutex_lock(&f->stream_mu);
		np = fused_rs_fail_names(f, l, p, pp);
		for (int i = 0; i < np; i++)
			fused_rs_fail_path(f, pp[i], n, &c, &cut);
		pthread_mutex_unlock(&f->stream_mu);
		fused_dirty_note(fused_dirty_g, n, c, 0, 0);
		free(l);
		l = nx;
		k++;
	}
	fused_rs_fail_refused(f, &cut);
	return full ? -1 : k;
}

struct fused_rs_phases fused_rs_ph;

static void log_phases(void)
{
	const struct fused_rs_phases *p = &fused_rs_ph;

	sk_info("resync phases (ms): thread CPU %.1f; probe %.1f, listings %.1f, link groups %.1f, files taken and "
		"opened %.1f (named by a walk %.1f), data read %.1f, sealed and sent %.1f, window "
		"%.1f, metadata %.1f, end %.1f, state saved %.1f",
		(sk_thread_cpu_us() - p->cpu0) / 1e3, p->usable / 1e3, p->dirs / 1e3, p->links / 1e3, p->prep / 1e3, p->name / 1e3,
		p->read / 1e3, p->send / 1e3, p->pace / 1e3, p->meta / 1e3, p->end / 1e3,
		p->save / 1e3);
	if (!p->cpu_ahead && !p->cpu_read && !p->wait)
		return; /* no reader thread (SKFUSED_RS_READER=0) */
	sk_info("resync read ahead (ms): readers' CPU %.1f, files %llu, pieces %llu, bytes %llu, read %.1f; "
		"sender waited %.1f, bytes sent as read ahead %llu, files read again (changed since) %llu",
		(p->cpu_ahead + p->cpu_read) / 1e3, (unsigned long long)p->ahead_files, (unsigned long long)p->ahead_pieces,
		(unsigned long long)p->ahead_bytes, p->ahead_read / 1e3, p->wait / 1e3,
		(unsigned long long)p->ahead_sent, (unsigned long long)p->ahead_again);
}

int fused_rs_incr_run(struct walker *w)
{
	struct fused *f = w->f;
	struct fused_dirty_stats ds;
	struct fused_rs_round rd = { 0 };
	struct sk_rmsg_op end = { .type = SK_RMSG_RS_END };
	struct sk_rmsg_sums s;
	uint64_t t0 = sk_now_us(), t1, cur = 0;
	int rc = 0, round;

	fused_dirty_get_stats(fused_dirty_g, &ds);
	atomic_store(&f->rs_total_bytes, ds.bytes);
	sk_info("resync (incremental): %llu directories, %llu files (%llu whole), %llu bytes tracked",
		(unsigned long long)ds.dirs, (unsigned long long)ds.files,
		(unsigned long long)ds.whole, (unsigned long long)ds.bytes);
	rd.walked = calloc(DIRS_MAX, sizeof(char *));
	if (!(w->links = fused_rs_links_new())) {
		free(rd.walked);
		return -EAGAIN; /* the full resync follows */
	}
	fused_moves_send(w); /* before any listing: the peer's copies of renamed files move first */
	/*
	 * Live operations that met parts not sent yet are reported by the peer (FAILED)
	 * and make it refuse the end (EAGAIN): what they missed is tracked again and the
	 * next round sends it. A few rounds, then the full resync.
	 */
	for (round = 0; round < ROUNDS_MAX && rc == 0; round++) {
		uint64_t before = rd.entries;
		int nf;

		uint64_t t = sk_now_us();

		rd.round = round;
		rc = do_dirs(w, &rd);
		t = fused_rs_ph_add(&fused_rs_ph.dirs, t);
		if (rc == 0) /* every name of the hard-link groups listed, in this session */
			rc = fused_rs_links_complete(w);
		t = fused_rs_ph_add(&fused_rs_ph.links, t);
		if (rc == 0)
			rc = fused_rs_files(w, &rd);
		if (rc < 0)
			break;
		for (size_t i = 0; i < rd.n_walked; i++) /* a later round walks afresh */
			free(rd.walked[i]);
		fused_rs_files_end(&rd); /* and names afresh */
		rd.n_walked = 0;
		nf = drain_failures(w, &rd);
		if (nf < 0) {
			rc = -EAGAIN;
			break;
		}
		if (nf > 0 || rd.entries != before)
			continue;
		pthread_mutex_lock(&f->state_mu);
		end.len = cur = f->gen.current;
		pthread_mutex_unlock(&f->state_mu);
		t = sk_now_us();
		rc = fused_repl_ask(f, w->gen, &end, -1, &s, w->sums, NULL);
		fused_rs_ph_add(&fused_rs_ph.end, t);
		if (rc < 0)
			break;
		if (s.err == 0)
			break;
		if (s.err != EAGAIN) {
			rc = -EAGAIN;
			break;
		}
		/* its FAILED reports came before this answer: drained by the next round */
		rd.entries++;
	}
	free(rd.walked);
	free(rd.sent.v);
	fused_rs_files_end(&rd);
	fused_rs_links_free(w->links);
	w->links = NULL;
	if (rc == 0 && round == ROUNDS_MAX)
		rc = -EAGAIN;
	/* a full pass after this one starts with nothing counted as reconciled */
	pthread_mutex_lock(&f->stream_mu);
	fused_rs_reset(f);
	pthread_mutex_unlock(&f->stream_mu);
	if (rc < 0)
		return rc == -EAGAIN ? -EAGAIN : -ECONNRESET;
	t1 = sk_now_us();
	fused_dirty_acked(fused_dirty_g, w->gen, atomic_load(&f->seq_acked));
	fused_dirty_clear(fused_dirty_g, w->gen, cur);
	fused_state_set_in_sync(f, true);
	fused_rs_ph_add(&fused_rs_ph.save, t1);
	atomic_store(&f->rs_done_bytes, atomic_load(&f->rs_total_bytes));
	f->rs_state = 2;
	sk_info("resync done in %.3f s (incremental, %d rounds, %llu entries, %llu bytes sent, "
		"%llu read, %llu listings, %llu metadata, %llu of %llu files the peer remade sent "
		"again, %llu of %llu files the kernel could not name named by a walk)",
		(double)(sk_now_us() - t0) / 1e6, round + 1,
		(unsigned long long)rd.entries, (unsigned long long)atomic_load(&fused_rs_stats.sent),
		(unsigned long long)atomic_load(&fused_rs_stats.read),
		(unsigned long long)atomic_load(&fused_rs_stats.dirs),
		(unsigned long long)atomic_load(&fused_rs_stats.meta),
		(unsigned long long)rd.remade_sent, (unsigned long long)rd.remade,
		(unsigned long long)rd.named_by_walk, (unsigned long long)rd.unnamed);
	log_phases();
	return 0;
}

/* ---- the tracked set by path (resync.h) ---- */

struct pcopy {
	struct fused_dh *h;
	uint32_t *flags;
	uint64_t *bytes;
	size_t n, max;
};

static int pcopy_one(const struct fused_dentry *e, void *arg)
{
	struct pcopy *c = arg;
	uint64_t b = 0;

	if (c->n == c->max)
		return 1;
	for (uint32_t i = 0; i < e->n_ext; i++)
		b += e->ext[i].end - e->ext[i].off;
	c->h[c->n] = e->h;
	c->flags[c->n] = e->flags;
	c->bytes[c->n++] = b;
	return 0;
}

size_t fused_dirty_paths(struct fused *f, size_t max,
			 void (*fn)(const char *path, uint32_t flags, uint64_t bytes, void *arg),
			 void *arg)
{
	struct pcopy c = { .max = max };
	size_t given = 0;
	char p[PATH_MAX];

	if (!fused_dirty_g || !max)
		return 0;
	c.h = calloc(max, sizeof(*c.h));
	c.flags = calloc(max, sizeof(*c.flags));
	c.bytes = calloc(max, sizeof(*c.bytes));
	/* copied first: paths need the stream lock, which ranks above the tracker's */
	if (c.h && c.flags && c.bytes)
		fused_dirty_foreach(fused_dirty_g, pcopy_one, &c);
	for (size_t i = 0; i < c.n; i++) {
		struct stat st;
		int fd = fused_rs_open_dh(f, &c.h[i], &st), pl = -1;

		if (fd < 0)
			continue; /* deleted since: its directory is tracked */
		pthread_mutex_lock(&f->stream_mu);
		pl = fused_fd_path(f, fd, p, sizeof(p));
		pthread_mutex_unlock(&f->stream_mu);
		close(fd);
		if (pl >= 0) {
			fn(p, c.flags[i], c.bytes[i], arg);
			given++;
		}
	}
	free(c.h);
	free(c.flags);
	free(c.bytes);
	return given;
}

/* ---- shared state of both kinds (resync.h) ---- */

struct fused_rs_stats fused_rs_stats;
uint64_t fused_resync_rate;
/*
 * The default: a resync is incremental when the tracker is usable for the peer's copy
 * (fused_rs_incr_usable), the full one otherwise (new node, tracking lost, another copy, a
 * forced resync). SKFUSED_RESYNC_INCREMENTAL=0 (any value but 1, main.c) forces the full one.
 * Made the default once before (e503ad0) and turned back (90f1f3a) over an agent swap that lost
 * acknowledged writes: that was the agent's hand-over (c0487ea), whatever the resync kind.
 */
bool fused_resync_incremental = true;

const char *fused_rs_kind_str(int kind)
{
	return kind == FUSED_RS_INCR ? "incremental" : kind == FUSED_RS_FULL ? "full" : "none";
}
