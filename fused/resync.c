/* fused/resync.c: online full resync: the primary walks its tree in the live stream, the secondary compares block checksums. */
#include "fused.h"

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

#define WINDOW ((uint64_t)SK_RMSG_SUMS_MAX * SK_RMSG_BLOCK) /* 16 MiB per checksum request */
#define CHUNK (1u << 20)                                  /* read + compare per lock hold */
#define MAX_DEPTH 512
#define MAX_PASSES 3

/*
 * Why this is safe while applications write: every resync frame is built
 * and queued under the stream lock, from the primary's data as it is at that
 * point of the stream, so the secondary applies it exactly where it belongs
 * among the live operations; a live write to a block is never overtaken by an
 * older copy of that block.
 */
struct walker {
	struct fused *f;
	uint64_t gen;
	uint8_t *buf;      /* CHUNK */
	uint8_t *blob;     /* frame payload scratch (dirents, xattrs) */
	uint8_t sums[SK_RMSG_SUMS_MAX * SK_RMSG_SUM_LEN];
	char path[PATH_MAX];
};

static void ts_from(struct sk_rmsg_ts *t, const struct timespec *ts)
{
	t->sec = ts->tv_sec;
	t->nsec = (uint32_t)ts->tv_nsec;
}

static bool live(struct walker *w)
{
	return atomic_load(&w->f->connected) && w->f->conn_gen == w->gen &&
	       !atomic_load(&w->f->stop);
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
static void send_meta(struct walker *w, int dfd, const char *name, const char *path, size_t plen)
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

/* Content of one regular file: checksum windows from the peer, differing blocks back. */
static void sync_file(struct walker *w, int fd)
{
	struct fused *f = w->f;
	uint64_t off = 0;

	while (live(w)) {
		struct sk_rmsg_op q = { .type = SK_RMSG_RS_SUMSREQ, .off = off, .len = WINDOW };
		struct sk_rmsg_sums s;
		struct stat st;
		int rc;

		if (fstat(fd, &st) < 0 || (uint64_t)st.st_size <= off)
			break;
		rc = fused_repl_ask(f, w->gen, &q, fd, &s, w->sums);
		if (rc < 0)
			return;
		for (uint64_t c = off; c < off + WINDOW && live(w); c += CHUNK) {
			ssize_t n;
			int pl;

			pthread_mutex_lock(&f->stream_mu);
			pl = fused_fd_path(f, fd, w->path, sizeof(w->path));
			n = pl < 0 || !atomic_load(&f->connected) ? -1 : pread(fd, w->buf, CHUNK, (off_t)c);
			if (n <= 0) {
				pthread_mutex_unlock(&f->stream_mu);
				if (pl < 0)
					return; /* unlinked meanwhile: its unlink is in the stream */
				break;
			}
			for (size_t b = 0; b < (size_t)n;) {
				size_t run = 0;

				/* a run of differing blocks goes as one frame */
				while (b + run < (size_t)n) {
					uint64_t bi = (c + b + run - off) / SK_RMSG_BLOCK;
					size_t bl = (size_t)n - (b + run) < SK_RMSG_BLOCK ?
							    (size_t)n - (b + run) : SK_RMSG_BLOCK;
					uint8_t h[SK_RMSG_SUM_LEN];

					crypto_generichash(h, sizeof(h), w->buf + b + run, bl, NULL, 0);
					if (!s.err && bi < s.count &&
					    memcmp(h, s.sums + bi * SK_RMSG_SUM_LEN, sizeof(h)) == 0)
						break;
					run += bl;
				}
				if (run) {
					struct sk_rmsg_op d = { .type = SK_RMSG_RS_DATA, .off = c + b };

					d.path1 = w->path;
					d.path1_len = (uint16_t)pl;
					fused_repl_submit(f, &d, w->buf + b, run, NULL, NULL);
					b += run;
				} else {
					b += SK_RMSG_BLOCK;
				}
			}
			pthread_mutex_unlock(&f->stream_mu);
			atomic_fetch_add(&f->rs_done_bytes, (uint64_t)n);
			if ((size_t)n < CHUNK)
				break;
		}
		off += WINDOW;
	}
}

struct name_list {
	char **v;
	size_t n, cap;
};

static void names_free(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/* Under the stream lock: announce the entries of a directory, reopen handles that live in it. */
static int send_dir(struct walker *w, int dfd, const char *dpath, size_t dl, struct name_list *out)
{
	struct fused *f = w->f;
	struct sk_rmsg_op op = { .type = SK_RMSG_RS_DIR, .flags = SK_RO_FIRST };
	char target[SK_RMSG_PATH_MAX + 1], cp[PATH_MAX];
	struct fused_fh *h;
	struct dirent *de;
	size_t used = 0;
	int lfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;

	if (!d) {
		if (lfd >= 0)
			close(lfd);
		return -errno;
	}
	op.path1 = dpath;
	op.path1_len = (uint16_t)dl;
	while ((de = readdir(d))) {
		struct sk_rmsg_dirent e = { 0 };
		struct stat st;
		long put;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
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
		put = sk_rmsg_dirent_put(&e, w->blob + used, SK_RMSG_DATA_MAX - used);
		if (put == -ENOSPC) {
			fused_repl_submit(f, &op, w->blob, used, NULL, NULL);
			op.flags = 0;
			used = 0;
			put = sk_rmsg_dirent_put(&e, w->blob, SK_RMSG_DATA_MAX);
		}
		if (put < 0)
			continue;
		used += (size_t)put;
		if (out->n == out->cap) {
			size_t nc = out->cap ? out->cap * 2 : 64;
			char **nv = realloc(out->v, nc * sizeof(*nv));

			if (!nv)
				break;
			out->v = nv;
			out->cap = nc;
		}
		if (!(out->v[out->n] = strdup(de->d_name)))
			break;
		out->n++;
	}
	closedir(d);
	op.flags |= SK_RO_LAST;
	fused_repl_submit(f, &op, w->blob, used, NULL, NULL);

	/* handles opened on files the peer did not have yet: reopen now that they exist */
	for (h = f->fh_list.next; h != &f->fh_list; h = h->next) {
		struct sk_rmsg_op o = { .type = SK_RMSG_OPEN, .fh = h->id };
		int n;
		char *slash;

		if (h->reopen_gen == w->gen)
			continue;
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

static void sync_dir(struct walker *w, int dfd, int depth)
{
	struct fused *f = w->f;
	struct name_list names = { 0 };
	char dpath[PATH_MAX], cpath[PATH_MAX];
	int dl, rc;

	if (depth > MAX_DEPTH || !live(w))
		return;
	pthread_mutex_lock(&f->stream_mu);
	dl = fused_fd_path(f, dfd, dpath, sizeof(dpath));
	rc = dl < 0 || !atomic_load(&f->connected) ? -1 : send_dir(w, dfd, dpath, (size_t)dl, &names);
	if (rc == 0) {
		/* non-directories other than files get their metadata with the namespace */
		for (size_t i = 0; i < names.n; i++) {
			struct stat st;
			int cl;

			if (fstatat(dfd, names.v[i], &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
				continue;
			if ((cl = join(cpath, dpath, (size_t)dl, names.v[i])) >= 0)
				send_meta(w, dfd, names.v[i], cpath, (size_t)cl);
		}
	}
	pthread_mutex_unlock(&f->stream_mu);
	if (rc < 0) {
		names_free(&names);
		return;
	}
	for (size_t i = 0; i < names.n && live(w); i++) {
		int cfd = openat(dfd, names.v[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		struct stat st;

		if (cfd < 0)
			continue;
		if (fstat(cfd, &st) == 0 && S_ISDIR(st.st_mode)) {
			sync_dir(w, cfd, depth + 1);
		} else if (S_ISREG(st.st_mode)) {
			sync_file(w, cfd);
			pthread_mutex_lock(&f->stream_mu);
			if (atomic_load(&f->connected) &&
			    (rc = fused_fd_path(f, cfd, cpath, sizeof(cpath))) >= 0)
				send_meta(w, cfd, NULL, cpath, (size_t)rc); /* where the file is now */
			pthread_mutex_unlock(&f->stream_mu);
		}
		close(cfd);
	}
	/* the directory's own metadata last: its entries are in place, so its mtime stays */
	pthread_mutex_lock(&f->stream_mu);
	if (atomic_load(&f->connected) && (dl = fused_fd_path(f, dfd, dpath, sizeof(dpath))) >= 0)
		send_meta(w, dfd, NULL, dpath, (size_t)dl);
	pthread_mutex_unlock(&f->stream_mu);
	names_free(&names);
}

/* ==== secondary side ==== */

static struct name_list rs_seen;     /* names announced for the directory being reconciled */
static struct name_list rs_links;    /* "ino\0path" for multiply linked files this pass */

static int open_parent(struct fused *f, const char *path, size_t len, int *pfd, char *name)
{
	const char *slash = memrchr(path, '/', len);
	size_t dl = slash ? (size_t)(slash - path) : 0;
	size_t nl = len - (slash ? dl + 1 : 0);

	if (nl == 0 || nl > SK_RMSG_NAME_MAX)
		return -EINVAL;
	memcpy(name, path + len - nl, nl);
	name[nl] = '\0';
	return fused_apply_open_path(f->root_fd, path, dl, O_PATH | O_DIRECTORY, pfd);
}

static int rm_rf(int dfd, const char *name, int depth)
{
	struct stat st;
	int cfd;
	DIR *d;
	struct dirent *de;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) < 0 ? -errno : 0;
	if (depth > MAX_DEPTH)
		return -ELOOP;
	cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (cfd < 0 || !(d = fdopendir(cfd))) {
		if (cfd >= 0)
			close(cfd);
		return -errno;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rm_rf(dirfd(d), de->d_name, depth + 1);
	closedir(d);
	return unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

static int names_add(struct name_list *l, const char *s, size_t len)
{
	char *c;

	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 256;
		char **nv = realloc(l->v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	if (!(c = malloc(len + 1)))
		return -ENOMEM;
	memcpy(c, s, len);
	c[len] = '\0';
	l->v[l->n++] = c;
	return 0;
}

static void names_clear(struct name_list *l)
{
	names_free(l);
	memset(l, 0, sizeof(*l));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Path (relative) of the first name seen this pass for a primary inode, or NULL. */
static const char *link_find(uint64_t ino)
{
	char key[24];
	size_t kl = (size_t)snprintf(key, sizeof(key), "%llu", (unsigned long long)ino) + 1;

	for (size_t i = 0; i < rs_links.n; i++)
		if (!memcmp(rs_links.v[i], key, kl))
			return rs_links.v[i] + kl;
	return NULL;
}

static void link_add(uint64_t ino, const char *path)
{
	char buf[PATH_MAX + 32];
	int n = snprintf(buf, sizeof(buf), "%llu%c%s", (unsigned long long)ino, 0, path);

	if (n > 0 && (size_t)n < sizeof(buf))
		names_add(&rs_links, buf, (size_t)n);
}

/* Make dir/name what the primary announced (type, target, device, hard link). */
static int reconcile(struct fused *f, int dfd, const char *dpath, size_t dl,
		     const struct sk_rmsg_dirent *e, const char *name)
{
	char target[SK_RMSG_PATH_MAX + 1], full[PATH_MAX], lname[SK_RMSG_NAME_MAX + 1];
	const char *first = NULL;
	struct stat st, fst;
	bool ex = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
	bool ok = ex && (st.st_mode & S_IFMT) == (e->mode & S_IFMT);
	int rc = 0, fl;

	if (join(full, dpath, dl, name) < 0)
		return -ENAMETOOLONG;
	if (ok && S_ISLNK(st.st_mode)) {
		ssize_t tl = readlinkat(dfd, name, target, sizeof(target));

		ok = tl == e->target_len && !memcmp(target, e->target, (size_t)tl);
	}
	if (ok && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)))
		ok = st.st_rdev == e->rdev;
	if (S_ISREG(e->mode) && e->nlink > 1) {
		first = link_find(e->ino);
		if (!first) {
			link_add(e->ino, full);
		} else if (ok) {
			ok = fstatat(f->root_fd, first, &fst, AT_SYMLINK_NOFOLLOW) == 0 &&
			     fst.st_ino == st.st_ino && fst.st_dev == st.st_dev;
		}
	}
	if (ok)
		return 0;
	if (ex && (rc = rm_rf(dfd, name, 0)) < 0)
		return rc;
	switch (e->mode & S_IFMT) {
	case S_IFREG:
		if (first) {
			int pfd;

			rc = open_parent(f, first, strlen(first), &pfd, lname);
			if (rc == 0) {
				rc = linkat(pfd, lname, dfd, name, 0) < 0 ? -errno : 0;
				close(pfd);
			}
			if (rc == 0)
				return 0;
		}
		fl = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fl < 0)
			return -errno;
		close(fl);
		break;
	case S_IFDIR:
		rc = mkdirat(dfd, name, 0700);
		break;
	case S_IFLNK:
		memcpy(target, e->target, e->target_len);
		target[e->target_len] = '\0';
		rc = symlinkat(target, dfd, name);
		break;
	default:
		rc = mknodat(dfd, name, e->mode, (dev_t)e->rdev);
		break;
	}
	return rc < 0 ? -errno : 0;
}

static int rs_dir(struct fused *f, const struct sk_rmsg_op *op)
{
	char name[SK_RMSG_NAME_MAX + 1], dpath[SK_RMSG_PATH_MAX + 1];
	struct sk_rmsg_dirent e;
	struct sk_rd r;
	int dfd, rc, n, err = 0;

	if (op->flags & SK_RO_FIRST)
		names_clear(&rs_seen);
	rc = fused_apply_open_path(f->root_fd, op->path1, op->path1_len, O_RDONLY | O_DIRECTORY, &dfd);
	if (rc < 0)
		return rc;
	memcpy(dpath, op->path1, op->path1_len);
	dpath[op->path1_len] = '\0';
	sk_rd_init(&r, op->data, op->data_len);
	while ((n = sk_rmsg_dirent_next(&r, &e)) == 1) {
		memcpy(name, e.name, e.name_len);
		name[e.name_len] = '\0';
		names_add(&rs_seen, name, e.name_len);
		rc = reconcile(f, dfd, dpath, op->path1_len, &e, name);
		if (rc < 0 && !err)
			err = rc;
	}
	if (n < 0) {
		close(dfd);
		return -EBADMSG;
	}
	if (op->flags & SK_RO_LAST) {
		DIR *d = fdopendir(dup(dfd));
		struct dirent *de;

		qsort(rs_seen.v, rs_seen.n, sizeof(char *), cmp_str);
		while (d && (de = readdir(d))) {
			const char *key = de->d_name;

			if (!strcmp(key, ".") || !strcmp(key, ".."))
				continue;
			if (!bsearch(&key, rs_seen.v, rs_seen.n, sizeof(char *), cmp_str) &&
			    (rc = rm_rf(dfd, de->d_name, 0)) < 0 && !err)
				err = rc;
		}
		if (d)
			closedir(d);
		names_clear(&rs_seen);
	}
	close(dfd);
	return err;
}

static int rs_sums(struct fused *f, const struct sk_rmsg_op *op, int sock, struct sk_chan *chan)
{
	static uint8_t blk[SK_RMSG_BLOCK];
	uint8_t hdr[SK_RMSG_SUMS_HDR], sums[SK_RMSG_SUMS_MAX * SK_RMSG_SUM_LEN];
	struct sk_rmsg_sums s = { .req = op->fh, .off = op->off };
	struct iovec iov[2];
	struct stat st;
	int fd, rc;

	rc = fused_apply_open_path(f->root_fd, op->path1, op->path1_len, O_RDONLY | O_NONBLOCK, &fd);
	if (rc < 0) {
		s.err = -rc;
	} else {
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			s.err = EINVAL;
		} else {
			s.file_size = (uint64_t)st.st_size;
			while (s.count < SK_RMSG_SUMS_MAX &&
			       (uint64_t)s.count * SK_RMSG_BLOCK < op->len) {
				ssize_t n = pread(fd, blk, SK_RMSG_BLOCK,
						  (off_t)(op->off + (uint64_t)s.count * SK_RMSG_BLOCK));

				if (n <= 0)
					break;
				crypto_generichash(sums + s.count * SK_RMSG_SUM_LEN, SK_RMSG_SUM_LEN,
						   blk, (size_t)n, NULL, 0);
				s.count++;
			}
		}
		close(fd);
	}
	sk_rmsg_sums_encode_hdr(&s, hdr);
	iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	iov[1] = (struct iovec){ .iov_base = sums, .iov_len = (size_t)s.count * SK_RMSG_SUM_LEN };
	return sk_chan_send_fd(chan, sock, SK_RMSG_SUMS, 0, f->module_id, iov, 2) < 0 ? -EPIPE : 0;
}

static int rs_data(struct fused *f, const struct sk_rmsg_op *op)
{
	const uint8_t *p = op->data;
	size_t left = op->data_len;
	uint64_t off = op->off;
	int fd, rc;

	rc = fused_apply_open_path(f->root_fd, op->path1, op->path1_len, O_WRONLY, &fd);
	if (rc < 0)
		return rc;
	while (left && rc == 0) {
		ssize_t w = pwrite(fd, p, left, (off_t)off);

		if (w < 0 && errno != EINTR)
			rc = -errno;
		if (w > 0) {
			p += w;
			left -= (size_t)w;
			off += (uint64_t)w;
		}
	}
	close(fd);
	return rc;
}

/* xattrs to exactly the announced set, through a path that follows only our own magic link. */
static int rs_xattrs(const char *pp, const struct sk_rmsg_op *op)
{
	char names[65536], nm[SK_RMSG_NAME_MAX + 1];
	const uint8_t *val;
	const char *name;
	uint32_t vl;
	uint8_t nl;
	struct sk_rd r;
	ssize_t have = listxattr(pp, names, sizeof(names));
	int n, rc = 0;

	for (ssize_t i = 0; have > 0 && i < have; i += (ssize_t)strlen(names + i) + 1) {
		bool keep = false;

		sk_rd_init(&r, op->data, op->data_len);
		while (!keep && sk_rmsg_xattr_next(&r, &name, &nl, &val, &vl) == 1)
			keep = strlen(names + i) == nl && !memcmp(names + i, name, nl);
		if (!keep && removexattr(pp, names + i) < 0 && !rc)
			rc = -errno;
	}
	sk_rd_init(&r, op->data, op->data_len);
	while ((n = sk_rmsg_xattr_next(&r, &name, &nl, &val, &vl)) == 1) {
		memcpy(nm, name, nl);
		nm[nl] = '\0';
		if (setxattr(pp, nm, val, vl, 0) < 0 && !rc)
			rc = -errno;
	}
	return n < 0 ? -EBADMSG : rc;
}

static int rs_meta(struct fused *f, const struct sk_rmsg_op *op)
{
	char name[SK_RMSG_NAME_MAX + 1], pp[64];
	struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };
	struct stat st;
	int pfd = -1, fd, rc;

	if (op->path1_len == 0) {
		rc = fused_apply_open_path(f->root_fd, "", 0, O_PATH | O_DIRECTORY, &fd);
		name[0] = '\0';
	} else {
		rc = open_parent(f, op->path1, op->path1_len, &pfd, name);
		if (rc < 0)
			return rc;
		fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		rc = fd < 0 ? -errno : 0;
	}
	if (rc < 0)
		goto out;
	snprintf(pp, sizeof(pp), "/proc/self/fd/%d", fd);
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out_fd;
	}
	if ((op->valid & SK_RV_SIZE) && S_ISREG(st.st_mode) && (uint64_t)st.st_size != op->len &&
	    truncate(pp, (off_t)op->len) < 0)
		rc = -errno;
	if (op->flags & SK_RO_XATTRS) {
		int x = rs_xattrs(pp, op);

		if (x == -EBADMSG) {
			rc = x;
			goto out_fd;
		}
		if (x < 0 && !rc && !S_ISLNK(st.st_mode))
			rc = x;
	}
	if (fchownat(fd, "", (op->valid & SK_RV_UID) ? op->uid : (uid_t)-1,
		     (op->valid & SK_RV_GID) ? op->gid : (gid_t)-1,
		     AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 && !rc)
		rc = -errno;
	if ((op->valid & SK_RV_MODE) && !S_ISLNK(st.st_mode) && chmod(pp, op->mode) < 0 && !rc)
		rc = -errno;
	if (op->valid & SK_RV_ATIME)
		tv[0] = (struct timespec){ .tv_sec = op->atime.sec, .tv_nsec = op->atime.nsec };
	if (op->valid & SK_RV_MTIME)
		tv[1] = (struct timespec){ .tv_sec = op->mtime.sec, .tv_nsec = op->mtime.nsec };
	if (pfd >= 0 ? utimensat(pfd, name, tv, AT_SYMLINK_NOFOLLOW) < 0 :
		       utimensat(AT_FDCWD, pp, tv, 0) < 0)
		rc = rc ? rc : -errno;
out_fd:
	close(fd);
out:
	if (pfd >= 0)
		close(pfd);
	return rc;
}

int fused_rs_apply(struct fused *f, const struct sk_rmsg_op *op, int sock, struct sk_chan *chan)
{
	switch (op->type) {
	case SK_RMSG_RS_DIR:
		return rs_dir(f, op);
	case SK_RMSG_RS_SUMSREQ:
		return rs_sums(f, op, sock, chan);
	case SK_RMSG_RS_DATA:
		return rs_data(f, op);
	case SK_RMSG_RS_META:
		return rs_meta(f, op);
	case SK_RMSG_RS_END: {
		uint8_t hdr[SK_RMSG_SUMS_HDR];
		struct sk_rmsg_sums s = { .req = op->fh, .err = f->rs_errs ? EAGAIN : 0 };
		struct iovec iov = { .iov_base = hdr, .iov_len = sizeof(hdr) };

		if (!s.err) {
			f->consistent = true;
			f->generation = op->len;
			fused_state_save(f);
			sk_info("resync complete: this copy is consistent (generation %llu)",
				(unsigned long long)op->len);
		}
		f->rs_errs = 0;
		names_clear(&rs_links);
		sk_rmsg_sums_encode_hdr(&s, hdr);
		return sk_chan_send_fd(chan, sock, SK_RMSG_SUMS, 0, f->module_id, &iov, 1) < 0 ?
			       -EPIPE : 0;
	}
	default:
		return -EBADMSG;
	}
}

int fused_resync_run(struct fused *f, uint64_t gen)
{
	struct walker *w = calloc(1, sizeof(*w));
	uint64_t t0 = fused_now_us();
	int pass, rc = -ECONNRESET;

	if (!w || !(w->buf = malloc(CHUNK)) || !(w->blob = malloc(SK_RMSG_DATA_MAX))) {
		rc = -ENOMEM;
		goto out;
	}
	w->f = f;
	w->gen = gen;
	atomic_store(&f->rs_done_bytes, 0);
	atomic_store(&f->rs_total_bytes, 0);
	for (pass = 1; pass <= MAX_PASSES && live(w); pass++) {
		struct sk_rmsg_op end = { .type = SK_RMSG_RS_END, .len = f->generation };
		struct sk_rmsg_sums s;
		int rfd = openat(f->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (rfd < 0)
			break;
		sync_dir(w, rfd, 0);
		close(rfd);
		rc = fused_repl_ask(f, gen, &end, -1, &s, w->sums);
		if (rc < 0)
			break;
		if (s.err == 0) {
			fused_state_set_in_sync(f, true);
			f->rs_state = 2;
			sk_info("resync done in %.1f s (pass %d, %llu bytes compared)",
				(double)(fused_now_us() - t0) / 1e6, pass,
				(unsigned long long)atomic_load(&f->rs_done_bytes));
			rc = 0;
			break;
		}
		sk_info("resync pass %d raced with live operations; another pass", pass);
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
