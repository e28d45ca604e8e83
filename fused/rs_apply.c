/* fused/rs_apply.c: the secondary's side of the resync: reconcile directories, checksum blocks, write blocks, set metadata. */
#include "fault.h"
#include "recv.h"
#include "rs_prefetch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "log.h"
#include "moves.h"

#define MAX_DEPTH 512

static struct fused_names rs_seen;     /* names announced for the directory being reconciled */
/*
 * A directory's listing is bounded (a peer could announce names forever): past these, the
 * names not recorded could not be told from strays, so nothing is deleted and the directory
 * is reported as an error. Memory per name is about its length + 1 + 24 bytes.
 */
#define RS_NAMES_MAX (1u << 21)
#define RS_NAME_BYTES_MAX (64u << 20)
static size_t rs_seen_bytes;
static bool rs_seen_lost; /* a name of this listing could not be recorded */
static bool rs_shallow;   /* this listing is an incremental resync's (SK_RO_SHALLOW) */

static void rs_seen_reset(void)
{
	fused_names_clear(&rs_seen);
	rs_seen_bytes = 0;
	rs_seen_lost = false;
}

int fused_rs_open_parent(struct fused *f, const char *path, size_t len, int *pfd, char *name)
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

static _Atomic uint64_t rs_mounts_left; /* mounts rm_tree found and left */

uint64_t fused_rs_mounts_left(void)
{
	return atomic_load(&rs_mounts_left);
}

/*
 * dfd/name and all it holds removed (pdev: dfd's device), never crossing into a mount: the root
 * of one (another disk, or a bind mount an administrator put in the secondary's tree; statx
 * says so, or its device is not its parent's) stays, with what holds it, counted: -EXDEV. The
 * primary's tree cannot hold it, and a removal must not empty it.
 */
static int rm_tree(int dfd, const char *name, dev_t pdev, int depth)
{
	struct statx x;
	struct stat ost;
	dev_t dev;
	int cfd, rc = 0;
	DIR *d;
	struct dirent *de;

	if (statx(dfd, name, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_INO, &x) < 0)
		return -errno;
	if (!S_ISDIR(x.stx_mode))
		return unlinkat(dfd, name, 0) < 0 ? -errno : 0;
	dev = makedev(x.stx_dev_major, x.stx_dev_minor);
	if (((x.stx_attributes_mask & x.stx_attributes) & STATX_ATTR_MOUNT_ROOT) || dev != pdev) {
		if (atomic_fetch_add(&rs_mounts_left, 1) < 8)
			sk_warn("resync: \"%s\" is not removed: a file system is mounted there (the "
				"primary has no such name; unmount it to let the copies become equal)", name);
		return -EXDEV;
	}
	if (depth > MAX_DEPTH)
		return -ELOOP;
	cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	/* the directory checked, not one mounted there meanwhile */
	if (cfd >= 0 && (fstat(cfd, &ost) < 0 || ost.st_dev != dev || ost.st_ino != x.stx_ino)) {
		close(cfd);
		return -EXDEV;
	}
	if (cfd < 0 || !(d = fdopendir(cfd))) {
		if (cfd >= 0)
			close(cfd);
		return -errno;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    rm_tree(dirfd(d), de->d_name, dev, depth + 1) == -EXDEV)
			rc = -EXDEV; /* what holds a mount stays too */
	closedir(d);
	if (rc < 0)
		return rc;
	return unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

static int rm_rf(int dfd, const char *name)
{
	struct stat p;

	return fstat(dfd, &p) < 0 ? -errno : rm_tree(dfd, name, p.st_dev, 0);
}

int fused_rs_remove_tree(int dfd, const char *name)
{
	return rm_rf(dfd, name);
}

int fused_names_add(struct fused_names *l, const char *s, size_t len)
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

void fused_names_clear(struct fused_names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Hard links while reconciling: for each multiply linked primary inode, an
 * O_PATH fd of the inode that stands for it here (renames cannot stale it),
 * and for each of our inodes with several names, the primary inode it stands
 * for, so that a name sharing our inode with the wrong group gets its own.
 */
#define LINKS_MAX 8192
#define CLAIMS (1u << 16)

static struct {
	uint64_t pino;
	int fd;
} links[LINKS_MAX];
static size_t links_n;

static struct claim {
	dev_t dev;
	ino_t ino;
	uint64_t pino;
	bool used;
} claims[CLAIMS];
static size_t claims_n;

static int link_fd(uint64_t pino)
{
	for (size_t i = 0; i < links_n; i++)
		if (links[i].pino == pino)
			return links[i].fd;
	return -1;
}

static int link_drop(uint64_t pino)
{
	for (size_t i = 0; i < links_n; i++)
		if (links[i].pino == pino) {
			close(links[i].fd);
			links[i] = links[--links_n];
			break;
		}
	return -1;
}

static void link_set(uint64_t pino, int dfd, const char *name)
{
	int fd;

	if (links_n == LINKS_MAX)
		return;
	fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0)
		links[links_n++] = (typeof(links[0])){ pino, fd };
}

/* false if our inode already stands for another primary inode */
static bool claim(dev_t dev, ino_t ino, uint64_t pino)
{
	size_t i = (size_t)(((uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev) >> 48) &
		   (CLAIMS - 1);

	for (; claims[i].used; i = (i + 1) & (CLAIMS - 1))
		if (claims[i].ino == ino && claims[i].dev == dev)
			return claims[i].pino == pino;
	if (claims_n >= CLAIMS / 2)
		return true; /* too many to remember */
	claims[i] = (struct claim){ dev, ino, pino, true };
	claims_n++;
	return true;
}

static void links_clear(void)
{
	for (size_t i = 0; i < links_n; i++)
		close(links[i].fd);
	links_n = 0;
	if (claims_n)
		memset(claims, 0, sizeof(claims));
	claims_n = 0;
}

/*
 * Make dir/name what the primary announced (type, target, device, hard link). 1: a regular
 * file that was here was remade (its inode also stood for another primary inode), or a name of
 * a hard-link group met for the first time this session was made empty: in an incremental
 * resync nothing may bring its data unless the primary is told (rs_dir). 0 otherwise.
 */
static int reconcile(struct fused *f, int dfd, const char *dpath, size_t dl,
		     const struct sk_rmsg_dirent *e, const char *name)
{
	char target[SK_RMSG_PATH_MAX + 1];
	struct stat st, fst;
	int lfd = -1;
	bool ex = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
	bool ok = ex && (st.st_mode & S_IFMT) == (e->mode & S_IFMT);
	bool ex_before = ok, remade = false;
	int rc = 0, fl;

	if (ok && S_ISLNK(st.st_mode)) {
		ssize_t tl = readlinkat(dfd, name, target, sizeof(target));

		ok = tl == e->target_len && !memcmp(target, e->target, (size_t)tl);
	}
	if (ok && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)))
		ok = st.st_rdev == e->rdev;
	if (ok && !S_ISDIR(st.st_mode) && st.st_nlink > 1 && !claim(st.st_dev, st.st_ino, e->ino))
		ok = false; /* our inode also has names of another primary inode */
	if (!S_ISDIR(e->mode) && e->nlink > 1) { /* any non-directory can be hard-linked */
		lfd = link_fd(e->ino);
		/*
		 * inode numbers are reused: a group recorded under another type is gone. So is one
		 * whose every name here went (a live rename into a part of a listing already passed,
		 * then removed as a stray): a nameless inode cannot be linked again, so the next
		 * name of the group stands for it, or the group ends split in files of their own.
		 */
		if (lfd >= 0 && (fstat(lfd, &fst) < 0 || (fst.st_mode & S_IFMT) != (e->mode & S_IFMT) ||
				 fst.st_nlink == 0))
			lfd = link_drop(e->ino);
		if (lfd >= 0 && ok)
			ok = fstat(lfd, &fst) == 0 && fst.st_ino == st.st_ino &&
			     fst.st_dev == st.st_dev;
		else if (lfd < 0 && ok)
			link_set(e->ino, dfd, name);
	}
	if (ok)
		return 0;
	sk_debug("resync: \"%.*s%s%s\" %s (ino %llu, nlink %u)", (int)dl, dpath, dl ? "/" : "", name,
		 !ex ? "created" : "replaced", (unsigned long long)e->ino, e->nlink);
	if (ex && f->aside[0]) { /* a forced resync keeps what it replaces (fused/aside.c) */
		char rel[SK_RMSG_PATH_MAX + 1];
		size_t rl;

		if (fused_aside_join(dpath, dl, name, rel, sizeof(rel), &rl) &&
		    fused_aside_move(f, dfd, name, rel, rl) == 0)
			ex = false;
	}
	if (ex && (rc = rm_rf(dfd, name)) < 0)
		return rc;
	/*
	 * A name that was a file of its own here now shares the group's inode: what it held may
	 * be newer than the group's data (sent to it by an earlier session), so in a shallow
	 * listing it is reported (1) and the primary compares the file again.
	 */
	if (lfd >= 0 && linkat(lfd, "", dfd, name, AT_EMPTY_PATH) == 0)
		return ex_before && S_ISREG(e->mode) ? 1 : 0;
	if (lfd >= 0) /* it could not be linked (its last name went meanwhile): this one stands for it */
		lfd = link_drop(e->ino);
	remade = S_ISREG(e->mode) && (ex_before || e->nlink > 1);
	switch (e->mode & S_IFMT) {
	case S_IFREG:
		/* a file renamed on the primary: this node's copy under its old name (moves.c) */
		if (!ex && e->nlink <= 1 && fused_moves_claim(dfd, dpath, dl, name, false))
			return 1; /* compared by the primary: reported as remade */
		fl = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fl < 0)
			return -errno;
		close(fl);
		break;
	case S_IFDIR:
		/* a directory renamed on the primary: this node's copy under its old name (moves.c);
		 * the primary walks it whole (a moved directory is tracked so), comparing its files */
		if (!ex && fused_moves_claim(dfd, dpath, dl, name, true))
			return 0;
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
	if (rc < 0)
		return -errno;
	if (!S_ISDIR(e->mode) && e->nlink > 1 && lfd < 0)
		link_set(e->ino, dfd, name); /* the first name of its group here */
	return remade ? 1 : 0;
}

/* ---- entries sent whole (RS_DIR with SK_RO_DMETA, SK_RD_COMPLETE) ---- */

static int rs_meta(struct fused *f, const struct sk_rmsg_op *op);

/* What a file created in the directory being reconciled gets by itself (probed once per frame). */
struct rs_parent {
	bool known;
	bool plain; /* no default ACL: a new file gets exactly the mode asked for */
	gid_t gid;  /* its group: the directory's if set-group-ID, else ours */
};

static int rs_entry_next(struct sk_rd *r, bool meta, struct sk_rmsg_dirent *e,
			 struct sk_rmsg_dmeta *m)
{
	m->flags = 0;
	return meta ? sk_rmsg_dirent_meta_next(r, e, m) : sk_rmsg_dirent_next(r, e);
}

/*
 * An empty file with one link and no xattrs, announced whole. A new name is made in
 * one go: create with the mode (umask is 0 here), owner if it is not what creation
 * gave, times (3 calls instead of a dozen). A name already there goes through
 * reconcile and then gets exactly what an RS_META would have set.
 */
static int rs_complete(struct fused *f, struct rs_parent *pp, int dfd, const char *dpath,
		       size_t dl, const struct sk_rmsg_dirent *e, const struct sk_rmsg_dmeta *m,
		       const char *name)
{
	struct timespec tv[2] = { { .tv_sec = m->atime.sec, .tv_nsec = m->atime.nsec },
				  { .tv_sec = m->mtime.sec, .tv_nsec = m->mtime.nsec } };
	struct sk_rmsg_op op = { .type = SK_RMSG_RS_META, .flags = SK_RO_XATTRS };
	char path[SK_RMSG_PATH_MAX + 1];
	mode_t mode = e->mode & 07777;
	size_t nl = strlen(name);
	int fd, rc = 0;

	if (!pp->known) {
		struct stat ds = { 0 };

		pp->known = true;
		pp->plain = fstat(dfd, &ds) == 0 &&
			    fgetxattr(dfd, "system.posix_acl_default", NULL, 0) < 0 &&
			    (errno == ENODATA || errno == ENOTSUP);
		pp->gid = (ds.st_mode & S_ISGID) ? ds.st_gid : getegid();
	}
	if (pp->plain) {
		fd = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd >= 0) {
			bool own = e->uid != geteuid() || e->gid != pp->gid;

			/* owner first: a chown clears set-id bits, the mode puts them back */
			if (own && fchown(fd, e->uid, e->gid) < 0)
				rc = -errno;
			if (rc == 0 && own && (mode & 06000) && fchmod(fd, mode) < 0)
				rc = -errno;
			if (rc == 0 && futimens(fd, tv) < 0)
				rc = -errno;
			close(fd);
			return rc;
		}
		if (errno != EEXIST)
			return -errno;
	}
	rc = reconcile(f, dfd, dpath, dl, e, name);
	if (rc < 0)
		return rc; /* 1: an empty file, whole with what follows */
	if (dl + (dl ? 1 : 0) + nl > SK_RMSG_PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(path, dpath, dl);
	if (dl)
		path[dl] = '/';
	memcpy(path + dl + (dl ? 1 : 0), name, nl);
	op.path1 = path;
	op.path1_len = (uint16_t)(dl + (dl ? 1 : 0) + nl);
	op.valid = SK_RV_UID | SK_RV_GID | SK_RV_MODE | SK_RV_SIZE | SK_RV_ATIME | SK_RV_MTIME;
	op.uid = e->uid;
	op.gid = e->gid;
	op.mode = mode;
	op.len = 0;
	op.atime = m->atime;
	op.mtime = m->mtime;
	return rs_meta(f, &op); /* no data: the exact xattr set is the empty one */
}

/*
 * A shallow listing (SK_RO_SHALLOW) remade the regular file dpath/name without its data: tell
 * the primary (FAILED, path1 == path2), which sends it whole; until then no RS_END is the end.
 */
static int report_remade(struct fused *f, int sock, struct sk_chan *chan, const char *dpath,
			 size_t dl, const char *name)
{
	struct sk_rmsg_op r = { .type = SK_RMSG_FAILED };
	uint8_t buf[SK_RMSG_OP_HDR + 2 * (SK_RMSG_PATH_MAX + 1)];
	char path[SK_RMSG_PATH_MAX + 1];
	size_t nl = strlen(name);
	struct iovec iov;
	long n;

	f->rs_errs++; /* the next RS_END is refused: the primary drains this report first */
	if (dl + (dl ? 1 : 0) + nl > SK_RMSG_PATH_MAX)
		return 0;
	memcpy(path, dpath, dl);
	if (dl)
		path[dl] = '/';
	memcpy(path + dl + (dl ? 1 : 0), name, nl);
	r.path1 = r.path2 = path;
	r.path1_len = r.path2_len = (uint16_t)(dl + (dl ? 1 : 0) + nl);
	n = sk_rmsg_op_encode(&r, buf, sizeof(buf));
	if (n < 0)
		return 0;
	sk_debug("resync: \"%.*s\" remade without its data: asked for it", (int)r.path1_len, path);
	iov = (struct iovec){ .iov_base = buf, .iov_len = (size_t)n };
	return fused_rx_send(chan, sock, SK_RMSG_FAILED, 0, f->module_id, &iov, 1) < 0 ? -EPIPE : 0;
}

/*
 * The answer to a listing frame that carried a request id (fh): which of its first 64 entries
 * are regular files of size 0 here now, so the primary sends their data whole without asking
 * for checksums. Sent before the frame is acknowledged (the receiver acks after applying).
 */
static int answer_empty(struct fused *f, int sock, struct sk_chan *chan, uint64_t req,
			uint32_t count, uint64_t bits)
{
	struct sk_rmsg_rs_empty a = { .req = req, .bits = bits };
	uint8_t buf[SK_RMSG_RS_EMPTY_LEN];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };

	a.count = count < SK_RMSG_RS_EMPTY_ENTRIES ? count : SK_RMSG_RS_EMPTY_ENTRIES;
	sk_rmsg_rs_empty_encode(&a, buf);
	return fused_rx_send(chan, sock, SK_RMSG_RS_EMPTY, 0, f->module_id, &iov, 1) < 0 ? -EPIPE : 0;
}

static bool empty_here(int dfd, const char *name)
{
	struct stat st;

	return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
	       st.st_size == 0;
}

static int rs_dir(struct fused *f, const struct sk_rmsg_op *op, int sock, struct sk_chan *chan)
{
	char name[SK_RMSG_NAME_MAX + 1], dpath[SK_RMSG_PATH_MAX + 1];
	struct sk_rmsg_dirent e;
	struct sk_rmsg_dmeta m;
	struct rs_parent pp = { 0 };
	struct sk_rd r;
	uint64_t empty = 0;
	uint32_t k = 0;
	int dfd, rc, n, err = 0;
	/* SKFUSED_FAULT=rs_no_answer: the request id is ignored, as an older skfused does */
	uint64_t ask = op->fh && !fused_fault(FUSED_FAULT_RS_NO_ANSWER) ? op->fh : 0;

	if (op->flags & SK_RO_FIRST) {
		rs_seen_reset();
		rs_shallow = op->flags & SK_RO_SHALLOW; /* for every frame of this listing */
	}
	rc = fused_apply_open_path(f->root_fd, op->path1, op->path1_len, O_RDONLY | O_DIRECTORY, &dfd);
	if (rc < 0) /* answered all the same: nothing here is known empty */
		return ask && answer_empty(f, sock, chan, ask, 0, 0) < 0 ? -EPIPE : rc;
	memcpy(dpath, op->path1, op->path1_len);
	dpath[op->path1_len] = '\0';
	sk_rd_init(&r, op->data, op->data_len);
	while ((n = rs_entry_next(&r, op->flags & SK_RO_DMETA, &e, &m)) == 1) {
		uint32_t idx = k++;

		memcpy(name, e.name, e.name_len);
		name[e.name_len] = '\0';
		if (rs_seen.n >= RS_NAMES_MAX || rs_seen_bytes >= RS_NAME_BYTES_MAX ||
		    fused_fault(FUSED_FAULT_RS_NAMES) || fused_names_add(&rs_seen, name, e.name_len) < 0) {
			if (!rs_seen_lost) {
				atomic_fetch_add(&f->rejected, 1);
				sk_warn("resync of \"%s\": more names than can be recorded (%zu); "
					"no stray is removed there", dpath, rs_seen.n);
			}
			rs_seen_lost = true;
			if (!err)
				err = -ENOMEM; /* a real divergence, not one a walk repairs */
			continue; /* nor created: the listing is refused */
		}
		rs_seen_bytes += e.name_len + 1u + 24u;
		fused_moves_listed(op->path1_len, name);
		rc = (m.flags & SK_RD_COMPLETE) ?
			     rs_complete(f, &pp, dfd, dpath, op->path1_len, &e, &m, name) :
			     reconcile(f, dfd, dpath, op->path1_len, &e, name);
		if (rc == 1 && !(m.flags & SK_RD_COMPLETE)) {
			rc = rs_shallow ? report_remade(f, sock, chan, dpath, op->path1_len, name) : 0;
			if (rc == -EPIPE) {
				close(dfd);
				return rc;
			}
		}
		if (rc < 0 && !err)
			err = rc;
		if (ask && rc >= 0 && idx < SK_RMSG_RS_EMPTY_ENTRIES && S_ISREG(e.mode) &&
		    !(m.flags & SK_RD_COMPLETE) && empty_here(dfd, name))
			empty |= 1ull << idx;
	}
	if (n < 0) {
		close(dfd);
		return -EBADMSG;
	}
	if (ask && answer_empty(f, sock, chan, ask, k, empty) < 0) {
		close(dfd);
		return -EPIPE;
	}
	if ((op->flags & SK_RO_LAST) && rs_seen_lost) {
		rs_seen_reset();
		if (!err)
			err = -ENOMEM;
	} else if (op->flags & SK_RO_LAST) {
		DIR *d = fdopendir(dup(dfd));
		struct dirent *de;

		if (rs_seen.n)
			qsort(rs_seen.v, rs_seen.n, sizeof(char *), cmp_str);
		while (d && (de = readdir(d))) {
			const char *key = de->d_name;

			if (!strcmp(key, ".") || !strcmp(key, ".."))
				continue;
			char rel[SK_RMSG_PATH_MAX + 1];
			size_t rl;

			if (rs_seen.n && bsearch(&key, rs_seen.v, rs_seen.n, sizeof(char *), cmp_str))
				continue;
			if (fused_moves_stash_name(op->path1_len, key)) /* kept copies (moves.c) */
				continue;
			/* a forced resync keeps what it removes (fused/aside.c) */
			if (f->aside[0] && fused_aside_join(dpath, op->path1_len, de->d_name, rel,
							    sizeof(rel), &rl) &&
			    fused_aside_move(f, dfd, de->d_name, rel, rl) == 0)
				continue;
			/* a mount left in place is said (rm_rf) and is not a failed listing: the
			 * resync ends; the copies differ by it until it is unmounted */
			if ((rc = rm_rf(dfd, de->d_name)) < 0 && rc != -EXDEV && !err)
				err = rc;
		}
		if (d)
			closedir(d);
		rs_seen_reset();
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

	rc = fused_apply_open_data(f, op->path1, op->path1_len, O_RDONLY, false, &fd);
	if (rc < 0) {
		s.err = rc == -EPERM ? EINVAL : -rc;
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
	if (fused_fault(FUSED_FAULT_RS_SUMS_OFF)) /* a lying peer, for tests: not what was asked */
		s.off += SK_RMSG_BLOCK;
	sk_rmsg_sums_encode_hdr(&s, hdr);
	iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	iov[1] = (struct iovec){ .iov_base = sums, .iov_len = (size_t)s.count * SK_RMSG_SUM_LEN };
	if (fused_fault(FUSED_FAULT_RS_SUMS_TWICE) &&
	    fused_rx_send(chan, sock, SK_RMSG_SUMS, 0, f->module_id, iov, 2) < 0)
		return -EPIPE;
	return fused_rx_send(chan, sock, SK_RMSG_SUMS, 0, f->module_id, iov, 2) < 0 ? -EPIPE : 0;
}

/*
 * The last RS_DATA frame's target stays open for the next frame of the same path, so a file's
 * data frames (256 KiB each) cost one path lookup and open, not one each. Kept only across
 * consecutive RS_DATA frames (read-ahead hints included, which change nothing): fused_apply
 * closes it before any other frame (one that could rename, unlink or remake what the path
 * names), as do an error, another path and the session's end. On reuse it is checked again
 * as the open checks it: a regular file, still linked (else opened by its path again).
 */
int fused_rs_data_fd = -1;
static char rs_dpath[SK_RMSG_PATH_MAX + 1];
static size_t rs_dlen;
static uint64_t rs_dframes, rs_dopens; /* this resync: data frames written, opens they needed */

void fused_rs_data_close(void)
{
	if (fused_rs_data_fd >= 0)
		close(fused_rs_data_fd);
	fused_rs_data_fd = -1;
}

static int rs_data(struct fused *f, const struct sk_rmsg_op *op)
{
	struct stat st;
	int fd = fused_rs_data_fd, rc;

	if (op->data_len == 0) /* no data: a read-ahead hint (rs_prefetch.c), never a write */
		return fused_rs_prefetch(f, op);
	fused_aside_copy(f, op->path1, op->path1_len); /* forced resync only (fused/aside.c) */
	if (fd >= 0 && (rs_dlen != op->path1_len || memcmp(rs_dpath, op->path1, rs_dlen) ||
			fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink == 0)) {
		fused_rs_data_close();
		fd = -1;
	}
	if (fd < 0) {
		rc = fused_apply_open_data(f, op->path1, op->path1_len, O_WRONLY, false, &fd);
		if (rc < 0)
			return rc;
		/* opened: the path fits (fused_apply_open_path refuses longer ones) */
		fused_rs_data_fd = fd;
		rs_dlen = op->path1_len;
		memcpy(rs_dpath, op->path1, rs_dlen);
		rs_dopens++;
	}
	rs_dframes++;
	/* sk_pwrite_all: a pwrite that writes nothing is an error, not another turn of the loop. */
	rc = sk_pwrite_all(fd, op->data, op->data_len, op->off);
	if (rc < 0)
		fused_rs_data_close();
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
		rc = fused_rs_open_parent(f, op->path1, op->path1_len, &pfd, name);
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
	/* a forced resync keeps a file whose size, owner, mode or mtime it is about to change */
	if (f->aside[0] && S_ISREG(st.st_mode) &&
	    (((op->valid & SK_RV_SIZE) && (uint64_t)st.st_size != op->len) ||
	     ((op->valid & SK_RV_MODE) && (st.st_mode & 07777) != (op->mode & 07777)) ||
	     ((op->valid & SK_RV_UID) && st.st_uid != op->uid) ||
	     ((op->valid & SK_RV_GID) && st.st_gid != op->gid) ||
	     ((op->valid & SK_RV_MTIME) && (st.st_mtim.tv_sec != op->mtime.sec ||
					    (uint32_t)st.st_mtim.tv_nsec != op->mtime.nsec))))
		fused_aside_copy(f, op->path1, op->path1_len);
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

void fused_rs_session_end(void)
{
	fused_rs_data_close();
	rs_seen_reset();
	links_clear();
}

int fused_rs_apply(struct fused *f, const struct sk_rmsg_op *op, int sock, struct sk_chan *chan)
{
	switch (op->type) {
	case SK_RMSG_RS_DIR:
		return rs_dir(f, op, sock, chan);
	case SK_RMSG_RS_SUMSREQ:
		return rs_sums(f, op, sock, chan);
	case SK_RMSG_RS_DATA:
		return rs_data(f, op);
	case SK_RMSG_RS_META:
		return rs_meta(f, op);
	case SK_RMSG_RS_END: {
		uint8_t hdr[SK_RMSG_SUMS_HDR];
		/* operations that met unreconciled parts since the last RS_END were reported
		 * (FAILED) and are walked again first: only an RS_END after none is the end */
		struct sk_rmsg_sums s = { .req = op->fh, .err = f->rs_errs ? EAGAIN : 0 };
		struct iovec iov = { .iov_base = hdr, .iov_len = sizeof(hdr) };

		if (!s.err) {
			fused_moves_end(f);
			f->consistent = true;
			fused_gen_adopt_peer(f); /* the primary's generations; saves the state */
			sk_info("resync complete: this copy is consistent (generation %llx)",
				(unsigned long long)op->len);
			sk_info("resync data: %llu frames written, %llu opens of their files (the rest "
				"through the file's open fd)", (unsigned long long)rs_dframes,
				(unsigned long long)rs_dopens);
			rs_dframes = rs_dopens = 0;
			fused_rs_prefetch_report();
		}
		f->rs_errs = 0;
		links_clear();
		sk_rmsg_sums_encode_hdr(&s, hdr);
		return fused_rx_send(chan, sock, SK_RMSG_SUMS, 0, f->module_id, &iov, 1) < 0 ?
			       -EPIPE : 0;
	}
	default:
		return -EBADMSG;
	}
}
