/* fused/apply.c: the secondary applies each operation beneath the root: confined paths, handles, as-the-primary results. */
#include "recv.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fault.h"
#include "log.h"
#include "moves.h"

static struct hent **hfind(struct rx *x, uint64_t id)
{
	struct hent **pp = &x->h[(id * 0x9e3779b97f4a7c15ull) >> 52];

	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

void fused_rx_hclear(struct rx *x)
{
	for (unsigned i = 0; i < HBUCKETS; i++)
		while (x->h[i]) {
			struct hent *e = x->h[i];

			x->h[i] = e->next;
			if (e->fd >= 0)
				close(e->fd);
			free(e);
		}
	x->nhandles = 0;
	fused_rs_session_end(); /* a resync's lists end with the session, however it ends */
	fused_moves_end(x->f);  /* so do the copies it kept aside */
}

/* Refused as hostile or impossible from a genuine primary: counted with the refused frames. */
static int refuse(struct fused *f, int err, const char *what, const char *p, size_t len)
{
	/* a hostile peer can ask for this 100 000 times: one line a second says it all */
	static uint64_t last_us, quiet;
	uint64_t now = sk_now_us();

	atomic_fetch_add(&f->rejected, 1);
	if (now - last_us < 1000000) {
		quiet++;
		return err;
	}
	sk_warn("refused: %s \"%.*s\" (and %llu more in the last second)", what,
		(int)(len > 200 ? 200 : len), p ? p : "", (unsigned long long)quiet);
	last_us = now;
	quiet = 0;
	return err;
}

static int hput(struct rx *x, uint64_t id, int fd)
{
	struct hent **pp = hfind(x, id), *e;

	if (*pp) { /* the primary reuses nothing; a duplicate means a reopen after reconnect */
		if ((*pp)->fd >= 0)
			close((*pp)->fd);
		(*pp)->fd = fd;
		return 0;
	}
	if (x->nhandles >= FUSED_RX_HANDLES_MAX) /* caller closes fd */
		return refuse(x->f, -EMFILE, "too many open handles", NULL, 0);
	e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->id = id;
	e->fd = fd;
	e->next = NULL;
	*pp = e;
	x->nhandles++;
	return 0;
}

/* fd of a handle; -EBADF if unknown; 0 with *fd = -1 for an orphan. */
static int hget(struct rx *x, uint64_t id, int *fd)
{
	struct hent *e = *hfind(x, id);

	if (!e)
		return -EBADF;
	*fd = e->fd;
	return 0;
}

/* ---- confined path resolution ---- */

/*
 * Every path from the peer resolves beneath the root with no symlink followed
 * at all (the primary names real directories, never symlinks) and no magic
 * link, so no frame can reach outside the tree.
 */
int fused_apply_open_path(int root_fd, const char *path, size_t len, int flags, int *out)
{
	struct open_how how = { .flags = (uint64_t)flags | O_CLOEXEC,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
					   RESOLVE_NO_MAGICLINKS };
	char buf[SK_RMSG_PATH_MAX + 1];
	long fd;

	if (len > SK_RMSG_PATH_MAX)
		return -ENAMETOOLONG;
	if (len == 0) {
		buf[0] = '.';
		len = 1;
	} else {
		memcpy(buf, path, len);
	}
	buf[len] = '\0';
	fd = syscall(SYS_openat2, root_fd, buf, &how, sizeof(how));
	if (fd < 0)
		return -errno;
	*out = (int)fd;
	return 0;
}

/*
 * Files opened for data are regular files only (directories too where asked, for
 * fsync): the name is resolved to an O_PATH fd and checked before anything is
 * opened, so a FIFO, socket or device node at a path is never opened at all (a
 * FIFO would block the receiver, a device would be read or written as root).
 * The reopen through /proc/self/fd names the checked inode, not the path again.
 */
static int reopen_checked(int opath, int flags, bool dir_ok, int *out)
{
	char pp[64];
	struct stat st;
	int fd;

	if (fstat(opath, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) && !(dir_ok && S_ISDIR(st.st_mode)))
		return -EPERM;
	snprintf(pp, sizeof(pp), "/proc/self/fd/%d", opath);
	fd = open(pp, flags | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*out = fd;
	return 0;
}

int fused_apply_open_file(int root_fd, const char *path, size_t len, int flags, bool dir_ok,
			  int *out)
{
	int op, rc = fused_apply_open_path(root_fd, path, len, O_PATH | O_NOFOLLOW, &op);

	if (rc < 0)
		return rc;
	rc = reopen_checked(op, flags, dir_ok, out);
	close(op);
	return rc;
}

int fused_apply_open_data(struct fused *f, const char *path, size_t len, int flags, bool dir_ok,
			  int *out)
{
	int rc = fused_apply_open_file(f->root_fd, path, len, flags, dir_ok, out);

	if (rc == -EPERM)
		return refuse(f, rc, "data open of a non-regular file", path, len);
	return rc;
}

/* Same beneath an open parent; flags may hold O_CREAT (a new file is regular by construction). */
static int open_data_at(struct fused *f, int pfd, const char *name, int flags, mode_t mode,
			int *out)
{
	int fd, op, rc;

	if (flags & O_CREAT) {
		fd = openat(pfd, name, flags | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode);
		if (fd >= 0) {
			*out = fd;
			return 0;
		}
		if (errno != EEXIST || (flags & O_EXCL))
			return -errno;
		flags &= ~O_CREAT;
	}
	op = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (op < 0)
		return -errno;
	rc = reopen_checked(op, flags, false, out);
	close(op);
	if (rc == -EPERM)
		return refuse(f, rc, "data open of a non-regular file", name, strlen(name));
	return rc;
}

/*
 * Parent directory of a non-root path and its last component. The last
 * parent stays open (creates come in bursts in one directory); anything that
 * can change what a path names (rename, rmdir, resync, a new session) drops
 * it. Release with parent_put.
 */
static struct {
	int fd;
	size_t len;
	char path[SK_RMSG_PATH_MAX + 1];
} pc = { .fd = -1 };

static void parent_drop(void)
{
	if (pc.fd >= 0)
		close(pc.fd);
	pc.fd = -1;
}

static void parent_put(int fd)
{
	if (fd != pc.fd)
		close(fd);
}

static int open_parent_how(struct fused *f, const char *path, size_t len, int *pfd, char *name,
			   bool cache)
{
	const char *slash = memrchr(path, '/', len);
	size_t dl = slash ? (size_t)(slash - path) : 0;
	size_t nl = len - (slash ? dl + 1 : 0);
	int fd, rc;

	if (nl == 0 || nl > SK_RMSG_NAME_MAX)
		return -EINVAL;
	memcpy(name, path + len - nl, nl);
	name[nl] = '\0';
	if (cache && pc.fd >= 0 && pc.len == dl && !memcmp(pc.path, path, dl)) {
		*pfd = pc.fd;
		return 0;
	}
	rc = fused_apply_open_path(f->root_fd, path, dl, O_RDONLY | O_DIRECTORY, &fd);
	if (rc < 0)
		return rc;
	if (cache) {
		parent_drop();
		pc.fd = fd;
		pc.len = dl;
		memcpy(pc.path, path, dl);
	}
	*pfd = fd;
	return 0;
}

static int open_parent(struct fused *f, const char *path, size_t len, int *pfd, char *name)
{
	return open_parent_how(f, path, len, pfd, name, true);
}

static void ts_to(struct timespec *t, const struct sk_rmsg_ts *s)
{
	t->tv_sec = s->sec;
	t->tv_nsec = s->nsec;
}

static int op_ts(const struct sk_rmsg_op *op, struct timespec tv[2])
{
	tv[0].tv_nsec = tv[1].tv_nsec = UTIME_OMIT;
	tv[0].tv_sec = tv[1].tv_sec = 0;
	if (op->valid & SK_RV_ATIME)
		ts_to(&tv[0], &op->atime);
	if (op->valid & SK_RV_MTIME)
		ts_to(&tv[1], &op->mtime);
	return (op->valid & (SK_RV_ATIME | SK_RV_MTIME)) != 0;
}

/* fault clock_behind: the mtime the kernel just gave fd, 1 s earlier */
static void clock_behind(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0) {
		struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, st.st_mtim };

		tv[1].tv_sec -= 1;
		(void)futimens(fd, tv);
	}
}

static int dir_mtime(int pfd, const struct sk_rmsg_ts *m)
{
	struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, { 0 } };

	ts_to(&tv[1], m);
	return futimens(pfd, tv);
}

/* ---- operations ---- */

/* chmod that never follows a symlink: go through an O_PATH fd of the entry itself. */
static int chmod_nofollow(int pfd, const char *name, mode_t mode)
{
	char pp[64];
	struct stat st;
	int fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		rc = -errno;
	else if (!S_ISLNK(st.st_mode)) {
		snprintf(pp, sizeof(pp), "/proc/self/fd/%d", fd);
		if (chmod(pp, mode) < 0)
			rc = -errno;
	}
	close(fd);
	return rc;
}

/* Owner, then mode (chown clears set-id bits), then times: the order the primary ended with. */
static int finish_new(int pfd, const char *name, const struct sk_rmsg_op *op, bool is_link)
{
	struct timespec tv[2];

	/* we create as root with umask 0: owner 0:0 and the exact mode are already there */
	if ((op->valid & (SK_RV_UID | SK_RV_GID)) && (op->uid || op->gid) &&
	    fchownat(pfd, name, (op->valid & SK_RV_UID) ? op->uid : (uid_t)-1,
		     (op->valid & SK_RV_GID) ? op->gid : (gid_t)-1, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!is_link && (op->valid & SK_RV_MODE) && (op->mode & 07000)) {
		int rc = chmod_nofollow(pfd, name, op->mode & 07777);

		if (rc < 0)
			return rc;
	}
	if (op_ts(op, tv) && utimensat(pfd, name, tv, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if ((op->valid & SK_RV_P1MTIME) && dir_mtime(pfd, &op->p1_mtime) < 0)
		return -errno;
	return 0;
}

static int apply_fd_attrs(int fd, const struct sk_rmsg_op *op)
{
	struct timespec tv[2];

	if ((op->valid & SK_RV_SIZE) && ftruncate(fd, (off_t)op->len) < 0)
		return -errno;
	if ((op->valid & (SK_RV_UID | SK_RV_GID)) &&
	    fchown(fd, (op->valid & SK_RV_UID) ? op->uid : (uid_t)-1,
		   (op->valid & SK_RV_GID) ? op->gid : (gid_t)-1) < 0)
		return -errno;
	if ((op->valid & SK_RV_MODE) && fchmod(fd, op->mode & 07777) < 0)
		return -errno;
	if (op_ts(op, tv) && futimens(fd, tv) < 0)
		return -errno;
	return 0;
}

static int apply_setattr_path(struct fused *f, const struct sk_rmsg_op *op)
{
	char name[SK_RMSG_NAME_MAX + 1];
	struct timespec tv[2];
	int pfd, rc = 0;

	/* a directory's times after a create in it: it is the parent we keep open */
	if (!(op->valid & ~(SK_RV_ATIME | SK_RV_MTIME)) && pc.fd >= 0 && op->path1_len &&
	    pc.len == op->path1_len && !memcmp(pc.path, op->path1, pc.len))
		return op_ts(op, tv) && futimens(pc.fd, tv) < 0 ? -errno : 0;

	if (op->path1_len == 0) { /* the root itself */
		int fd;

		rc = fused_apply_open_path(f->root_fd, "", 0, O_RDONLY | O_DIRECTORY, &fd);
		if (rc < 0)
			return rc;
		rc = apply_fd_attrs(fd, op);
		close(fd);
		return rc;
	}
	rc = open_parent(f, op->path1, op->path1_len, &pfd, name);
	if (rc < 0)
		return rc;
	if (op->valid & SK_RV_SIZE) {
		int fd;

		rc = open_data_at(f, pfd, name, O_WRONLY, 0, &fd);
		if (rc == 0) {
			if (ftruncate(fd, (off_t)op->len) < 0)
				rc = -errno;
			close(fd);
		}
	}
	if (rc == 0 && (op->valid & (SK_RV_UID | SK_RV_GID)) &&
	    fchownat(pfd, name, (op->valid & SK_RV_UID) ? op->uid : (uid_t)-1,
		     (op->valid & SK_RV_GID) ? op->gid : (gid_t)-1, AT_SYMLINK_NOFOLLOW) < 0)
		rc = -errno;
	if (rc == 0 && (op->valid & SK_RV_MODE))
		rc = chmod_nofollow(pfd, name, op->mode & 07777);
	if (rc == 0 && op_ts(op, tv) && utimensat(pfd, name, tv, AT_SYMLINK_NOFOLLOW) < 0)
		rc = -errno;
	parent_put(pfd);
	return rc;
}

static int xattr_target(struct fused *f, struct rx *x, const struct sk_rmsg_op *op, int *fd,
			bool *own)
{
	*own = false;
	if (op->fh) {
		int rc = hget(x, op->fh, fd);

		return rc < 0 ? rc : (*fd < 0 ? -ENOENT : 0);
	}
	*own = true;
	return fused_apply_open_path(f->root_fd, op->path1, op->path1_len, O_PATH | O_NOFOLLOW, fd);
}

static int apply_xattr(struct fused *f, struct rx *x, const struct sk_rmsg_op *op)
{
	char name[SK_RMSG_NAME_MAX + 1], pp[64];
	bool own;
	int fd, rc = xattr_target(f, x, op, &fd, &own);

	if (rc == -ENOENT && op->fh)
		return 0; /* orphan: nobody can see it any more */
	if (rc < 0)
		return rc;
	memcpy(name, op->name, op->name_len);
	name[op->name_len] = '\0';
	snprintf(pp, sizeof(pp), "/proc/self/fd/%d", fd);
	if (op->type == SK_RMSG_SETXATTR)
		rc = setxattr(pp, name, op->data, op->data_len, (int)op->flags);
	else
		rc = removexattr(pp, name);
	rc = rc < 0 ? -errno : 0;
	if (own)
		close(fd);
	return rc;
}

static int apply_two(struct fused *f, const struct sk_rmsg_op *op)
{
	char n1[SK_RMSG_NAME_MAX + 1], n2[SK_RMSG_NAME_MAX + 1];
	int p1, p2, rc;

	rc = open_parent_how(f, op->path1, op->path1_len, &p1, n1, false);
	if (rc < 0)
		return rc;
	rc = open_parent(f, op->path2, op->path2_len, &p2, n2);
	if (rc < 0) {
		close(p1);
		return rc;
	}
	if (op->type == SK_RMSG_LINK)
		rc = linkat(p1, n1, p2, n2, 0);
	else
		rc = renameat2(p1, n1, p2, n2, op->flags);
	rc = rc < 0 ? -errno : 0;
	if (rc == 0 && (op->valid & SK_RV_P1MTIME) && dir_mtime(p1, &op->p1_mtime) < 0)
		rc = -errno;
	if (rc == 0 && (op->valid & SK_RV_P2MTIME) && dir_mtime(p2, &op->p2_mtime) < 0)
		rc = -errno;
	close(p1);
	parent_put(p2);
	return rc;
}

static int apply_ns(struct fused *f, const struct sk_rmsg_op *op)
{
	char name[SK_RMSG_NAME_MAX + 1], target[SK_RMSG_PATH_MAX + 1];
	int pfd, rc;

	rc = open_parent(f, op->path1, op->path1_len, &pfd, name);
	if (rc < 0)
		return rc;
	switch (op->type) {
	case SK_RMSG_MKDIR:
		rc = mkdirat(pfd, name, op->mode & 07777);
		break;
	case SK_RMSG_MKNOD:
		rc = mknodat(pfd, name, op->mode, (dev_t)op->rdev);
		break;
	case SK_RMSG_SYMLINK:
		memcpy(target, op->data, op->data_len);
		target[op->data_len] = '\0';
		rc = symlinkat(target, pfd, name);
		break;
	case SK_RMSG_UNLINK:
		rc = unlinkat(pfd, name, 0);
		break;
	case SK_RMSG_RMDIR:
		rc = unlinkat(pfd, name, AT_REMOVEDIR);
		break;
	}
	rc = rc < 0 ? -errno : 0;
	if (rc == 0 && (op->type == SK_RMSG_MKDIR || op->type == SK_RMSG_MKNOD ||
			op->type == SK_RMSG_SYMLINK))
		rc = finish_new(pfd, name, op, op->type == SK_RMSG_SYMLINK);
	else if (rc == 0 && (op->valid & SK_RV_P1MTIME) && dir_mtime(pfd, &op->p1_mtime) < 0)
		rc = -errno;
	parent_put(pfd);
	return rc;
}

static int apply_create(struct fused *f, struct rx *x, const struct sk_rmsg_op *op)
{
	char name[SK_RMSG_NAME_MAX + 1];
	struct timespec tv[2];
	int pfd, fd, rc;
	int fl = O_RDWR | O_CREAT;

	rc = open_parent(f, op->path1, op->path1_len, &pfd, name);
	if (rc < 0)
		return rc;
	fl |= (op->flags & SK_RO_EXCL) ? O_EXCL : 0;
	fl |= (op->flags & SK_RO_TRUNC) ? O_TRUNC : 0;
	if (op->flags & SK_RO_ASCALLER) {
		/* the primary's request, done as its caller: same umask, ACL and sgid rules */
		bool as = op->uid || op->gid;

		umask((mode_t)op->len);
		if (as) {
			syscall(SYS_setfsgid, op->gid);
			syscall(SYS_setfsuid, op->uid);
		}
		rc = open_data_at(f, pfd, name, fl, op->mode & 07777, &fd);
		if (as) {
			syscall(SYS_setfsuid, 0);
			syscall(SYS_setfsgid, 0);
		}
		umask(0);
		if (rc == 0 && (rc = hput(x, op->fh, fd)) < 0)
			close(fd);
		/* the directory's mtime the primary chose before it created (file.c) */
		if (rc == 0 && (op->valid & SK_RV_P1MTIME) && dir_mtime(pfd, &op->p1_mtime) < 0)
			rc = -errno;
		parent_put(pfd);
		return rc;
	}
	rc = open_data_at(f, pfd, name, fl, op->mode & 07777, &fd);
	if (rc < 0) {
		parent_put(pfd);
		return rc;
	}
	rc = hput(x, op->fh, fd);
	if (rc < 0) {
		close(fd);
		parent_put(pfd);
		return rc;
	}
	/* owner first (chown clears set-id bits), then mode, then times */
	if ((op->uid || op->gid) && fchown(fd, op->uid, op->gid) < 0)
		rc = -errno;
	if (rc == 0 && (op->mode & 07000) && fchmod(fd, op->mode & 07777) < 0)
		rc = -errno;
	if (rc == 0 && op_ts(op, tv) && futimens(fd, tv) < 0)
		rc = -errno;
	if (rc == 0 && (op->valid & SK_RV_P1MTIME) && dir_mtime(pfd, &op->p1_mtime) < 0)
		rc = -errno;
	parent_put(pfd);
	return rc;
}

static int apply_open(struct fused *f, struct rx *x, const struct sk_rmsg_op *op)
{
	struct timespec tv[2];
	int fd = -1, rc;

	if (!(op->flags & SK_RO_ORPHAN)) {
		rc = fused_apply_open_data(f, op->path1, op->path1_len,
					   O_RDWR | ((op->flags & SK_RO_TRUNC) ? O_TRUNC : 0), false, &fd);
		/* Not there yet while resyncing: the walker reopens it once the file exists,
		 * and copies its content after that, so writes meanwhile may be dropped.
		 * A refused file type is an error in any case (the primary opens regular files). */
		if (rc < 0 && rc != -EPERM && !f->consistent)
			return hput(x, op->fh, -1);
		if (rc < 0)
			return rc;
		if (op_ts(op, tv) && futimens(fd, tv) < 0) {
			rc = -errno;
			close(fd);
			return rc;
		}
	}
	rc = hput(x, op->fh, fd);
	if (rc < 0 && fd >= 0)
		close(fd);
	return rc;
}

static int apply_fsync(struct fused *f, struct rx *x, const struct sk_rmsg_op *op)
{
	bool ds = op->flags & SK_RO_DATASYNC;
	int fd, rc;

	if (op->fh) {
		struct timespec tv[2];

		rc = hget(x, op->fh, &fd);
		if (rc < 0 || fd < 0)
			return rc;
		if (op_ts(op, tv) && futimens(fd, tv) < 0)
			return -errno;
		/* data and size durable here; times alone are not worth a second inode write
		 * on the disk the primary is flushing too (they are durable on the primary) */
		(void)ds;
		return fdatasync(fd) < 0 ? -errno : 0;
	}
	rc = fused_apply_open_data(f, op->path1, op->path1_len, O_RDONLY, true, &fd);
	if (rc < 0)
		return rc;
	rc = (ds ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

int fused_apply(struct rx *x, const struct sk_rmsg_op *op)
{
	struct fused *f = x->f;
	struct timespec tv[2];
	int fd = -1, fd2 = -1, rc;
	uint64_t t0;

	if (fused_rs_data_fd >= 0 && op->type != SK_RMSG_RS_DATA)
		fused_rs_data_close(); /* kept only across consecutive RS_DATA frames (rs_apply.c) */
	/* these change what paths name: the cached parent may be stale */
	if (op->type == SK_RMSG_RENAME || op->type == SK_RMSG_RMDIR || op->type == SK_RMSG_START ||
	    op->type == SK_RMSG_RS_DIR)
		parent_drop();
	switch (op->type) {
	case SK_RMSG_START:
		fused_rx_hclear(x);
		f->rs_errs = 0;
		f->mode = (enum sk_repl_mode)(op->flags & SK_START_MODE_MASK);
		/* a resync changes this copy only once "not consistent" is on disk: otherwise a
		 * crash in the middle would leave a torn copy that says it is whole. Dropping the
		 * connection refuses the session; the primary retries. */
		if (fused_state_begin_resync(f) < 0) {
			atomic_fetch_add(&f->rejected, 1);
			sk_err("cannot record that this copy is being resynchronised: session refused");
			return -EPIPE;
		}
		return 0;
	case SK_RMSG_OPEN:
		return apply_open(f, x, op);
	case SK_RMSG_CREATE:
		t0 = f->mode == SK_REPL_SYNC ? fused_stage_now() : 0;
		rc = apply_create(f, x, op);
		fused_stage_applied(FUSED_STG_CREATE, t0);
		return rc;
	case SK_RMSG_RELEASE: {
		struct hent **pp = hfind(x, op->fh), *e = *pp;

		if (!e)
			return -EBADF;
		*pp = e->next;
		x->nhandles--;
		rc = 0;
		if (e->fd >= 0 && op_ts(op, tv) && futimens(e->fd, tv) < 0)
			rc = -errno;
		if (e->fd >= 0)
			close(e->fd);
		free(e);
		return rc;
	}
	case SK_RMSG_WRITE:
		t0 = f->mode == SK_REPL_SYNC ? fused_stage_now() : 0; /* acked after the apply */
		if ((rc = hget(x, op->fh, &fd)) < 0 || fd < 0)
			return rc;
		rc = sk_pwrite_all(fd, op->data, op->data_len, op->off);
		if (rc == 0 && op_ts(op, tv) && futimens(fd, tv) < 0)
			rc = -errno;
		/* tests: this node's clock behind the primary's, where its kernel chose the time */
		if (rc == 0 && op->data_len && !(op->valid & SK_RV_MTIME) &&
		    fused_fault(FUSED_FAULT_CLOCK_BEHIND))
			clock_behind(fd);
		fused_stage_applied(FUSED_STG_WRITE, t0);
		return rc;
	case SK_RMSG_SETATTR:
		if (!op->fh)
			return apply_setattr_path(f, op);
		if ((rc = hget(x, op->fh, &fd)) < 0 || fd < 0)
			return rc;
		return apply_fd_attrs(fd, op);
	case SK_RMSG_FALLOCATE:
		if ((rc = hget(x, op->fh, &fd)) < 0 || fd < 0)
			return rc;
		if (fallocate(fd, (int)op->flags, (off_t)op->off, (off_t)op->len) < 0)
			return -errno;
		return op_ts(op, tv) && futimens(fd, tv) < 0 ? -errno : 0;
	case SK_RMSG_COPY: {
		loff_t oi = (loff_t)op->off, oo = (loff_t)op->off2;

		if ((rc = hget(x, op->fh, &fd)) < 0 || (rc = hget(x, op->fh2, &fd2)) < 0)
			return rc;
		if (fd < 0 || fd2 < 0)
			return 0;
		return copy_file_range(fd, &oi, fd2, &oo, op->len, 0) < 0 ? -errno : 0;
	}
	case SK_RMSG_MKDIR:
	case SK_RMSG_MKNOD:
	case SK_RMSG_SYMLINK:
	case SK_RMSG_UNLINK:
	case SK_RMSG_RMDIR:
		return apply_ns(f, op);
	case SK_RMSG_LINK:
		return apply_two(f, op);
	case SK_RMSG_RENAME:
		rc = apply_two(f, op);
		parent_drop();
		return rc;
	case SK_RMSG_SETXATTR:
	case SK_RMSG_REMOVEXATTR:
		return apply_xattr(f, x, op);
	case SK_RMSG_FSYNC:
		t0 = f->mode == SK_REPL_SYNC ? fused_stage_now() : 0;
		rc = apply_fsync(f, x, op);
		fused_stage_applied(FUSED_STG_FSYNC, t0);
		return rc;
	case SK_RMSG_RS_MOVE:
		return fused_moves_apply(f, op);
	case SK_RMSG_RS_SUMSREQ:
	case SK_RMSG_RS_END:
		/* acks (and the errors they carry) go out before the answer they precede */
		if ((x->applied > x->acked || x->err) && fused_rx_send_ack(x) < 0)
			return -EPIPE;
		return fused_rs_apply(f, op, x->sock, &x->chan);
	default:
		return fused_rs_apply(f, op, x->sock, &x->chan);
	}
}
