/* fused/ops.c: FUSE low-level operations of the primary: apply locally under the stream lock, then replicate. */
#include "fused.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "log.h"

#define F() (fused_ctx)
#define ATTR_TIMEOUT 1.0
#define COPY_MAX (1u << 20)

/* Per-thread scratch: paths of the operation being replicated. */
static __thread char tp1[PATH_MAX];
static __thread char tp2[PATH_MAX];
static __thread bool t_fs_unshared;
static __thread mode_t t_umask;
static __thread bool t_creds;

static void procpath(char *buf, size_t cap, int fd)
{
	snprintf(buf, cap, "/proc/self/fd/%d", fd);
}

static int ino_fd(fuse_ino_t ino)
{
	return fused_inode_fd(fused_inode_get(F(), ino));
}

/*
 * New inodes belong to the caller: fsuid/fsgid are per thread (raw syscalls;
 * glibc would broadcast), umask too once the thread has its own fs_struct.
 * Capabilities stay (SECBIT_NO_SETUID_FIXUP, set in main): the kernel has
 * already checked permissions (default_permissions).
 */
static void creds_set(fuse_req_t req)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);

	if (!t_fs_unshared) {
		if (unshare(CLONE_FS) == 0)
			t_fs_unshared = true;
	}
	if (t_fs_unshared && t_umask != c->umask) {
		umask(c->umask);
		t_umask = c->umask;
	}
	t_creds = c->uid || c->gid; /* root's are the thread's own */
	if (t_creds) {
		syscall(SYS_setfsgid, c->gid);
		syscall(SYS_setfsuid, c->uid);
	}
}

static void creds_reset(void)
{
	if (t_creds) {
		syscall(SYS_setfsuid, 0);
		syscall(SYS_setfsgid, 0);
	}
	t_creds = false;
}

static void ts_from(struct sk_rmsg_ts *t, const struct timespec *ts)
{
	t->sec = ts->tv_sec;
	t->nsec = (uint32_t)ts->tv_nsec;
}

static void op_times(struct sk_rmsg_op *op, const struct stat *st)
{
	ts_from(&op->atime, &st->st_atim);
	ts_from(&op->mtime, &st->st_mtim);
	op->valid |= SK_RV_ATIME | SK_RV_MTIME;
}

static void op_p1(struct sk_rmsg_op *op, int dirfd)
{
	struct stat st;

	if (fstat(dirfd, &st) == 0) {
		ts_from(&op->p1_mtime, &st.st_mtim);
		op->valid |= SK_RV_P1MTIME;
	}
}

static void op_p2(struct sk_rmsg_op *op, int dirfd)
{
	struct stat st;

	if (fstat(dirfd, &st) == 0) {
		ts_from(&op->p2_mtime, &st.st_mtim);
		op->valid |= SK_RV_P2MTIME;
	}
}

/* parent's path + "/" + name into buf; returns length or -errno. */
static int child_path(fuse_ino_t parent, const char *name, char *buf)
{
	int n = fused_inode_path(F(), parent, buf, PATH_MAX);
	size_t nl = strlen(name);

	if (n < 0)
		return n;
	if ((size_t)n + 1 + nl > SK_RMSG_PATH_MAX)
		return -ENAMETOOLONG;
	if (n > 0)
		buf[n++] = '/';
	memcpy(buf + n, name, nl + 1);
	return n + (int)nl;
}

static bool active(void)
{
	return atomic_load(&F()->connected);
}

/* Finish an operation applied under stream_mu: replicate, unlock, reply. */
static void commit(struct sk_rmsg_op *op, const void *data, size_t dlen, fuse_req_t req,
		   const struct fused_reply *r)
{
	int deferred = 0;

	if (active())
		deferred = fused_repl_submit(F(), op, data, dlen, req, r);
	pthread_mutex_unlock(&F()->stream_mu);
	if (!deferred)
		fused_reply_send(req, r);
}

static void fail(fuse_req_t req, int rc)
{
	pthread_mutex_unlock(&F()->stream_mu);
	fuse_reply_err(req, -rc);
}

/* ---- init, lookup, attributes ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* The kernel's writeback cache would ack writes before we replicate them. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_POSIX_ACL)
		conn->want |= FUSE_CAP_POSIX_ACL;
	/* umask is applied by the backing fs with the caller's umask (creds_set), which is
	 * what lets a default ACL override it, as on a local filesystem */
	if (conn->capable & FUSE_CAP_DONT_MASK)
		conn->want |= FUSE_CAP_DONT_MASK;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	conn->want &= ~FUSE_CAP_SPLICE_READ; /* .write takes the buffer we also send */
	conn->max_write = 1u << 20;
	conn->max_read = 1u << 20;
	conn->max_readahead = 1u << 20;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int rc = fused_inode_lookup(F(), parent, name, &e);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fused_inode_forget(F(), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *fl)
{
	for (size_t i = 0; i < count; i++)
		fused_inode_forget(F(), fl[i].ino, fl[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	if (fstatat(ino_fd(ino), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fused_fh *fh = fi ? (struct fused_fh *)(uintptr_t)fi->fh : NULL;
	struct sk_rmsg_op op = { .type = SK_RMSG_SETATTR };
	struct fused_reply r = { .kind = R_ATTR };
	char pp[64];
	int fd = ino_fd(ino), rc = 0;
	struct stat st;

	procpath(pp, sizeof(pp), fd);
	pthread_mutex_lock(&F()->stream_mu);
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return fail(req, -errno);
	if (to_set & FUSE_SET_ATTR_MODE) {
		rc = fh ? fchmod(fh->fd, attr->st_mode) : chmod(pp, attr->st_mode);
		if (rc < 0)
			return fail(req, -errno);
	}
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t u = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t g = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return fail(req, -errno);
		if (to_set & FUSE_SET_ATTR_UID)
			op.valid |= SK_RV_UID, op.uid = attr->st_uid;
		if (to_set & FUSE_SET_ATTR_GID)
			op.valid |= SK_RV_GID, op.gid = attr->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		rc = fh ? ftruncate(fh->fd, attr->st_size) : truncate(pp, attr->st_size);
		if (rc < 0)
			return fail(req, -errno);
		op.valid |= SK_RV_SIZE;
		op.len = (uint64_t)attr->st_size;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };

		if (to_set & FUSE_SET_ATTR_ATIME_NOW)
			tv[0].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_ATIME)
			tv[0] = attr->st_atim;
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			tv[1].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_MTIME)
			tv[1] = attr->st_mtim;
		rc = fh ? futimens(fh->fd, tv) : S_ISLNK(st.st_mode) ?
			  utimensat(fd, "", tv, AT_EMPTY_PATH) : utimensat(AT_FDCWD, pp, tv, 0);
		if (rc < 0)
			return fail(req, -errno);
	}
	if (fstatat(fd, "", &r.attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return fail(req, -errno);
	if (active()) {
		int n = 0;

		if (fh && fh->id)
			op.fh = fh->id;
		else if ((n = fused_inode_path(F(), ino, tp1, sizeof(tp1))) < 0)
			return fail(req, n); /* unlinked and no handle: nothing to name it by */
		op.path1 = tp1;
		op.path1_len = op.fh ? 0 : (uint16_t)n;
		/* chown may clear set-id bits: send the resulting mode whenever owners or mode changed */
		if (!S_ISLNK(r.attr.st_mode) &&
		    (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
			op.valid |= SK_RV_MODE;
			op.mode = r.attr.st_mode & 07777;
		}
		op_times(&op, &r.attr);
	}
	commit(&op, NULL, 0, req, &r);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n = readlinkat(ino_fd(ino), "", buf, sizeof(buf) - 1);

	if (n < 0)
		return (void)fuse_reply_err(req, errno);
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

/* ---- namespace ---- */

/* After a local create of parent/name: look it up and fill the replicated op's common fields. */
static int created(fuse_ino_t parent, const char *name, struct sk_rmsg_op *op,
		   struct fused_reply *r)
{
	int rc = fused_inode_lookup(F(), parent, name, &r->e);

	if (rc < 0)
		return rc;
	if (!active())
		return 0;
	rc = child_path(parent, name, tp1);
	if (rc < 0)
		return rc;
	op->path1 = tp1;
	op->path1_len = (uint16_t)rc;
	op->uid = r->e.attr.st_uid;
	op->gid = r->e.attr.st_gid;
	op->valid |= SK_RV_UID | SK_RV_GID;
	if (op->type != SK_RMSG_SYMLINK)
		op->valid |= SK_RV_MODE;
	op_times(op, &r->e.attr);
	op_p1(op, ino_fd(parent));
	return 0;
}

static void mk_common(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      dev_t rdev, const char *link)
{
	struct sk_rmsg_op op = { 0 };
	struct fused_reply r = { .kind = R_ENTRY };
	int pfd = ino_fd(parent), rc;

	creds_set(req);
	pthread_mutex_lock(&F()->stream_mu);
	if (link) {
		op.type = SK_RMSG_SYMLINK;
		rc = symlinkat(link, pfd, name);
	} else if (S_ISDIR(mode)) {
		op.type = SK_RMSG_MKDIR;
		rc = mkdirat(pfd, name, mode & 07777);
	} else {
		op.type = SK_RMSG_MKNOD;
		rc = mknodat(pfd, name, mode, rdev);
	}
	rc = rc < 0 ? -errno : 0;
	creds_reset();
	if (rc == 0)
		rc = created(parent, name, &op, &r);
	if (rc < 0)
		return fail(req, rc);
	op.mode = op.type == SK_RMSG_MKDIR ? (r.e.attr.st_mode & 07777) : r.e.attr.st_mode;
	op.rdev = r.e.attr.st_rdev;
	commit(&op, link, link ? strlen(link) : 0, req, &r);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	mk_common(req, parent, name, mode, rdev, NULL);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	mk_common(req, parent, name, S_IFDIR | mode, 0, NULL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	if (strlen(link) > SK_RMSG_PATH_MAX)
		return (void)fuse_reply_err(req, ENAMETOOLONG);
	mk_common(req, parent, name, S_IFLNK, 0, link);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	struct sk_rmsg_op op = { .type = SK_RMSG_LINK };
	struct fused_reply r = { .kind = R_ENTRY };
	char pp[64];
	int rc;

	procpath(pp, sizeof(pp), ino_fd(ino));
	pthread_mutex_lock(&F()->stream_mu);
	if (linkat(AT_FDCWD, pp, ino_fd(parent), name, AT_SYMLINK_FOLLOW) < 0)
		return fail(req, -errno);
	rc = fused_inode_lookup(F(), parent, name, &r.e);
	if (rc < 0)
		return fail(req, rc);
	if (active()) {
		if ((rc = fused_inode_path(F(), ino, tp1, sizeof(tp1))) < 0)
			return fail(req, rc);
		op.path1 = tp1;
		op.path1_len = (uint16_t)rc;
		/* the old name may be the new one's sibling: ask the kernel after the link */
		if ((rc = child_path(parent, name, tp2)) < 0)
			return fail(req, rc);
		op.path2 = tp2;
		op.path2_len = (uint16_t)rc;
		op_p2(&op, ino_fd(parent));
	}
	commit(&op, NULL, 0, req, &r);
}

static void rm_common(fuse_req_t req, fuse_ino_t parent, const char *name, bool dir)
{
	struct sk_rmsg_op op = { .type = dir ? SK_RMSG_RMDIR : SK_RMSG_UNLINK };
	struct fused_reply r = { .kind = R_ERR0 };
	int pfd = ino_fd(parent), rc = 0;

	pthread_mutex_lock(&F()->stream_mu);
	if (active() && (rc = child_path(parent, name, tp1)) < 0)
		return fail(req, rc);
	if (unlinkat(pfd, name, dir ? AT_REMOVEDIR : 0) < 0)
		return fail(req, -errno);
	fused_path_gen++;
	op.path1 = tp1;
	op.path1_len = (uint16_t)rc;
	op_p1(&op, pfd);
	commit(&op, NULL, 0, req, &r);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	rm_common(req, parent, name, false);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	rm_common(req, parent, name, true);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct sk_rmsg_op op = { .type = SK_RMSG_RENAME, .flags = flags };
	struct fused_reply r = { .kind = R_ERR0 };
	int pfd = ino_fd(parent), npfd = ino_fd(newparent), n1 = 0, n2 = 0;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return (void)fuse_reply_err(req, EINVAL);
	pthread_mutex_lock(&F()->stream_mu);
	if (active()) {
		if ((n1 = child_path(parent, name, tp1)) < 0)
			return fail(req, n1);
		if ((n2 = child_path(newparent, newname, tp2)) < 0)
			return fail(req, n2);
	}
	if (renameat2(pfd, name, npfd, newname, flags) < 0)
		return fail(req, -errno);
	fused_path_gen++;
	op.path1 = tp1;
	op.path1_len = (uint16_t)n1;
	op.path2 = tp2;
	op.path2_len = (uint16_t)n2;
	op_p1(&op, pfd);
	op_p2(&op, npfd);
	commit(&op, NULL, 0, req, &r);
}

/* ---- files ---- */

static struct fused_fh *fh_new(int fd, bool repl)
{
	struct fused_fh *fh = calloc(1, sizeof(*fh));

	if (!fh)
		return NULL;
	fh->fd = fd;
	if (repl)
		fh->id = atomic_fetch_add(&F()->fh_next, 1);
	return fh;
}

/* Under stream_mu: keep replicated handles listed so a reconnect can reopen them on the peer. */
static void fh_link(struct fused_fh *fh)
{
	struct fused_fh *head = &F()->fh_list;

	fh->next = head->next;
	fh->prev = head;
	head->next->prev = fh;
	head->next = fh;
}

static int open_flags(int flags)
{
	/* The backing fd can always read (copy_file_range reads back what it copied); appends
	 * and syncs are done by us, O_DIRECT would need aligned buffers we do not have. */
	flags &= ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW | O_APPEND | O_DIRECT | O_SYNC |
		   O_DSYNC);
	if ((flags & O_ACCMODE) != O_RDONLY)
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	return flags | O_CLOEXEC;
}

static bool wants_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sk_rmsg_op op = { .type = SK_RMSG_OPEN };
	struct fused_reply r = { .kind = R_OPEN };
	bool repl = wants_write(fi->flags);
	struct fused_fh *fh;
	char pp[64];
	int fd, rc = 0;

	procpath(pp, sizeof(pp), ino_fd(ino));
	if (!repl) { /* reads never touch the network */
		fd = open(pp, open_flags(fi->flags));
		if (fd < 0)
			return (void)fuse_reply_err(req, errno);
		fh = fh_new(fd, false);
		if (!fh) {
			close(fd);
			return (void)fuse_reply_err(req, ENOMEM);
		}
		fi->fh = (uintptr_t)fh;
		fi->keep_cache = 1;
		fi->noflush = 1;
		return (void)fuse_reply_open(req, fi);
	}
	pthread_mutex_lock(&F()->stream_mu);
	fd = open(pp, open_flags(fi->flags));
	if (fd < 0)
		return fail(req, -errno);
	fh = fh_new(fd, true);
	if (!fh) {
		close(fd);
		return fail(req, -ENOMEM);
	}
	fh->prev = fh->next = NULL;
	fh_link(fh);
	fi->fh = (uintptr_t)fh;
	fi->keep_cache = 1;
	r.fi = *fi;
	if (active()) {
		struct stat st;

		op.fh = fh->id;
		rc = fused_fd_path(F(), fd, tp1, sizeof(tp1));
		if (rc == -ENOENT) {
			op.flags |= SK_RO_ORPHAN;
			rc = 0;
		} else if (rc < 0) {
			rc = 0; /* unnameable: the peer drops writes to it; resync repairs */
			op.flags |= SK_RO_ORPHAN;
		}
		op.path1 = tp1;
		op.path1_len = (op.flags & SK_RO_ORPHAN) ? 0 : (uint16_t)rc;
		if ((fi->flags & O_TRUNC) && !(op.flags & SK_RO_ORPHAN)) {
			op.flags |= SK_RO_TRUNC;
			if (fstat(fd, &st) == 0)
				op_times(&op, &st);
		}
	}
	commit(&op, NULL, 0, req, &r);
}

/*
 * A new name is created on both nodes at once: the peer is told the request
 * (mode, umask, caller) before the local openat, both under the stream lock,
 * and applies it as the same caller, so the same kernel rules (umask, default
 * ACL, set-group-ID directory) give the same result. A name that exists takes
 * the plain path: apply here, then send the result.
 */
static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct sk_rmsg_op op = { .type = SK_RMSG_CREATE };
	struct fused_reply r = { .kind = R_CREATE };
	uint64_t seq = 0, gen = F()->conn_gen;
	int pfd = ino_fd(parent), fd, rc, n;
	struct fused_fh *fh = fh_new(-1, true);
	bool ahead = false;
	struct stat st;

	if (!fh)
		return (void)fuse_reply_err(req, ENOMEM);
	fi->fh = (uintptr_t)fh;
	fi->keep_cache = 1;
	creds_set(req);
	pthread_mutex_lock(&F()->stream_mu);
	if (active() && fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT &&
	    (n = child_path(parent, name, tp1)) >= 0) {
		op.fh = fh->id;
		op.path1 = tp1;
		op.path1_len = (uint16_t)n;
		op.mode = S_IFREG | (mode & 07777);
		op.uid = ctx->uid;
		op.gid = ctx->gid;
		op.len = ctx->umask;
		op.flags = SK_RO_ASCALLER | (fi->flags & O_EXCL ? SK_RO_EXCL : 0) |
			   (fi->flags & O_TRUNC ? SK_RO_TRUNC : 0);
		r.fi = *fi;
		fused_repl_submit_held(F(), &op, NULL, 0, req, &r, &seq);
		ahead = true;
	}
	fd = openat(pfd, name, open_flags(fi->flags) | O_CREAT | O_NOFOLLOW | (fi->flags & O_EXCL),
		    mode & 07777);
	rc = fd < 0 ? -errno : 0;
	creds_reset();
	if (rc == 0) {
		fh->fd = fd;
		fh_link(fh);
		rc = fused_inode_lookup(F(), parent, name, &r.e);
	}
	if (rc < 0) {
		if (seq) /* the peer created what we could not */
			fused_peer_lost(F(), gen, "local create failed after replication");
		pthread_mutex_unlock(&F()->stream_mu);
		r = (struct fused_reply){ .kind = R_ERR, .err = -rc };
		goto out_err;
	}
	r.fi = *fi;
	if (ahead) {
		/* the directory's mtime as it is here now (the file's own comes with its close) */
		struct sk_rmsg_op t = { .type = SK_RMSG_SETATTR, .valid = SK_RV_MTIME };
		struct fused_reply none = { .kind = R_NONE };

		if (fstat(pfd, &st) == 0 && (n = fused_inode_path(F(), parent, tp2, sizeof(tp2))) >= 0) {
			t.path1 = tp2;
			t.path1_len = (uint16_t)n;
			t.mtime = (struct sk_rmsg_ts){ st.st_mtim.tv_sec, (uint32_t)st.st_mtim.tv_nsec };
			fused_repl_submit(F(), &t, NULL, 0, NULL, &none);
		}
		pthread_mutex_unlock(&F()->stream_mu);
		if (seq)
			fused_repl_local_done(F(), seq, &r);
		else
			fused_reply_send(req, &r);
		return;
	}
	if (active()) {
		rc = created(parent, name, &op, &r);
		if (rc < 0) {
			pthread_mutex_unlock(&F()->stream_mu);
			r = (struct fused_reply){ .kind = R_ERR, .err = -rc };
			goto out_err;
		}
		op.fh = fh->id;
		op.mode = r.e.attr.st_mode;
		op.flags = (fi->flags & O_EXCL ? SK_RO_EXCL : 0) | (fi->flags & O_TRUNC ? SK_RO_TRUNC : 0);
	}
	commit(&op, NULL, 0, req, &r);
	return;
out_err:
	if (fh->fd >= 0) {
		pthread_mutex_lock(&F()->stream_mu);
		fh->prev->next = fh->next;
		fh->next->prev = fh->prev;
		pthread_mutex_unlock(&F()->stream_mu);
		close(fh->fd);
	}
	free(fh);
	if (seq)
		fused_repl_local_done(F(), seq, &r);
	else
		fused_reply_send(req, &r);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fused_fh *fh = (struct fused_fh *)(uintptr_t)fi->fh;
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);

	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = fh->fd;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

/*
 * The frame goes out before the local pwrite, both under the stream lock, so
 * the peer writes while we do; the reply waits for both. The file's times
 * reach the peer with its close or fsync.
 */
static void op_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fused_fh *fh = (struct fused_fh *)(uintptr_t)fi->fh;
	struct sk_rmsg_op op = { .type = SK_RMSG_WRITE };
	struct fused_reply r = { .kind = R_WRITE, .written = size };
	uint64_t seq = 0, gen = F()->conn_gen;
	int deferred = 0;
	ssize_t n;

	pthread_mutex_lock(&F()->stream_mu);
	if (fi->flags & O_APPEND) {
		off = lseek(fh->fd, 0, SEEK_END);
		if (off < 0)
			return fail(req, -errno);
	}
	if (active() && fh->id) {
		struct fused_reply none = { .kind = R_NONE };
		size_t done = 0;

		/*
		 * Pieces of fused_write_chunk bytes: the MAC of one piece, its transfer and
		 * the peer's verify + pwrite of the previous one overlap; the reply waits
		 * for the last piece's ack (acks are cumulative and in order).
		 */
		op.fh = fh->id;
		while (size - done > fused_write_chunk) {
			op.off = (uint64_t)off + done;
			op.data_len = (uint32_t)fused_write_chunk;
			fused_repl_submit(F(), &op, data + done, fused_write_chunk, NULL, &none);
			done += fused_write_chunk;
		}
		op.off = (uint64_t)off + done;
		op.data_len = (uint32_t)(size - done);
		deferred = fused_repl_submit_held(F(), &op, data + done, size - done, req, &r, &seq);
	}
	n = pwrite(fh->fd, data, size, off);
	if (n < 0)
		r = (struct fused_reply){ .kind = R_ERR, .err = errno };
	else
		r.written = (size_t)n;
	if (seq && (size_t)n != size) /* the peer applied what we could not */
		fused_peer_lost(F(), gen, "local write failed after replication");
	pthread_mutex_unlock(&F()->stream_mu);
	if (seq)
		fused_repl_local_done(F(), seq, &r);
	else if (!deferred)
		fused_reply_send(req, &r);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fused_fh *fh = (struct fused_fh *)(uintptr_t)fi->fh;
	struct sk_rmsg_op op = { .type = SK_RMSG_RELEASE };
	struct fused_reply none = { .kind = R_NONE };

	if (fh->id) {
		struct stat st;

		pthread_mutex_lock(&F()->stream_mu);
		fh->prev->next = fh->next;
		fh->next->prev = fh->prev;
		op.fh = fh->id;
		if (active() && fstat(fh->fd, &st) == 0)
			op_times(&op, &st); /* writes left the peer's times behind */
		if (active())
			fused_repl_submit(F(), &op, NULL, 0, NULL, &none);
		pthread_mutex_unlock(&F()->stream_mu);
	}
	close(fh->fd);
	free(fh);
	fuse_reply_err(req, 0);
}

/*
 * fsync: the peer is asked first, then the local flush runs; whichever of the
 * local result and the peer's ack comes last replies (no extra thread hop).
 */
static void sync_common(fuse_req_t req, fuse_ino_t ino, int datasync, struct fused_fh *fh,
			int dirfd)
{
	struct sk_rmsg_op op = { .type = SK_RMSG_FSYNC, .flags = datasync ? SK_RO_DATASYNC : 0 };
	struct fused_reply r = { .kind = R_ERR0 };
	int rc = 0, fd = fh ? fh->fd : dirfd;
	uint64_t seq = 0;

	pthread_mutex_lock(&F()->stream_mu);
	if (active()) {
		if (fh && fh->id) {
			struct stat st;

			op.fh = fh->id;
			if (fstat(fh->fd, &st) == 0)
				op_times(&op, &st);
		} else {
			rc = fused_inode_path(F(), ino, tp1, sizeof(tp1));
			op.path1 = tp1;
			op.path1_len = rc > 0 ? (uint16_t)rc : 0;
		}
		if (rc >= 0)
			fused_repl_submit_held(F(), &op, NULL, 0, req, &r, &seq);
	}
	pthread_mutex_unlock(&F()->stream_mu);
	rc = datasync ? fdatasync(fd) : fsync(fd);
	if (rc < 0)
		r = (struct fused_reply){ .kind = R_ERR, .err = errno };
	if (seq)
		fused_repl_local_done(F(), seq, &r);
	else
		fused_reply_send(req, &r);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	sync_common(req, ino, datasync, (struct fused_fh *)(uintptr_t)fi->fh, -1);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct fused_fh *fh = (struct fused_fh *)(uintptr_t)fi->fh;
	struct sk_rmsg_op op = { .type = SK_RMSG_FALLOCATE };
	struct fused_reply r = { .kind = R_ERR0 };
	struct stat st;

	pthread_mutex_lock(&F()->stream_mu);
	if (fallocate(fh->fd, mode, off, len) < 0)
		return fail(req, -errno);
	if (active()) {
		if (!fh->id)
			return fail(req, -EBADF);
		op.fh = fh->id;
		op.flags = (uint32_t)mode;
		op.off = (uint64_t)off;
		op.len = (uint64_t)len;
		if (fstat(fh->fd, &st) == 0)
			op_times(&op, &st);
	}
	commit(&op, NULL, 0, req, &r);
}

/*
 * copy_file_range: at most COPY_MAX per call (callers loop on short counts);
 * the peer gets the copied bytes as a write, since the source may be open
 * read-only here and so unknown to the peer.
 */
static __thread char *t_copybuf;

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct fused_fh *in = (struct fused_fh *)(uintptr_t)fi_in->fh;
	struct fused_fh *out = (struct fused_fh *)(uintptr_t)fi_out->fh;
	struct sk_rmsg_op op = { .type = SK_RMSG_WRITE };
	struct fused_reply r = { .kind = R_WRITE };
	loff_t oi = off_in, oo = off_out;
	ssize_t n;

	if (!t_copybuf && !(t_copybuf = malloc(COPY_MAX)))
		return (void)fuse_reply_err(req, ENOMEM);
	if (len > COPY_MAX)
		len = COPY_MAX;
	pthread_mutex_lock(&F()->stream_mu);
	n = copy_file_range(in->fd, &oi, out->fd, &oo, len, (unsigned)flags);
	if (n < 0)
		return fail(req, -errno);
	r.written = (size_t)n;
	if (active() && n > 0) {
		struct stat st;

		if (!out->id || pread(out->fd, t_copybuf, (size_t)n, off_out) != n)
			return fail(req, -EIO);
		op.fh = out->id;
		op.off = (uint64_t)off_out;
		op.data_len = (uint32_t)n;
		if (fstat(out->fd, &st) == 0)
			op_times(&op, &st);
	}
	commit(&op, t_copybuf, (size_t)n, req, &r);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct fused_fh *fh = (struct fused_fh *)(uintptr_t)fi->fh;
	off_t res = lseek(fh->fd, off, whence);

	if (res < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_lseek(req, res);
}

/* ---- directories ---- */

struct fused_dir {
	DIR *dp;
	off_t off;
	struct dirent *ent;
};

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fused_dir *d = calloc(1, sizeof(*d));
	int fd;

	if (!d)
		return (void)fuse_reply_err(req, ENOMEM);
	fd = openat(ino_fd(ino), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d->dp = fdopendir(fd))) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		free(d);
		return (void)fuse_reply_err(req, e);
	}
	fi->fh = (uintptr_t)d;
	fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fused_dir *d = (struct fused_dir *)(uintptr_t)fi->fh;
	char *buf = malloc(size), *p = buf;
	size_t rem = size;

	if (!buf)
		return (void)fuse_reply_err(req, ENOMEM);
	if (off != d->off) {
		seekdir(d->dp, off);
		d->ent = NULL;
		d->off = off;
	}
	for (;;) {
		struct stat st = { 0 };
		size_t n;

		if (!d->ent) {
			errno = 0;
			d->ent = readdir(d->dp);
			if (!d->ent)
				break;
		}
		st.st_ino = d->ent->d_ino;
		st.st_mode = (mode_t)d->ent->d_type << 12;
		n = fuse_add_direntry(req, p, rem, d->ent->d_name, &st, d->ent->d_off);
		if (n > rem)
			break;
		p += n;
		rem -= n;
		d->off = d->ent->d_off;
		d->ent = NULL;
	}
	fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fused_dir *d = (struct fused_dir *)(uintptr_t)fi->fh;

	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fused_dir *d = (struct fused_dir *)(uintptr_t)fi->fh;

	sync_common(req, ino, datasync, NULL, dirfd(d->dp));
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	if (fstatvfs(F()->root_fd, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes ---- */

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct sk_rmsg_op op = { .type = SK_RMSG_SETXATTR, .flags = (uint32_t)flags };
	struct fused_reply r = { .kind = R_ERR0 };
	char pp[64];
	int rc = 0;

	if (strlen(name) > SK_RMSG_NAME_MAX || size > SK_RMSG_XATTR_VAL_MAX)
		return (void)fuse_reply_err(req, E2BIG);
	procpath(pp, sizeof(pp), ino_fd(ino));
	pthread_mutex_lock(&F()->stream_mu);
	if (setxattr(pp, name, value, size, flags) < 0)
		return fail(req, -errno);
	if (active()) {
		if ((rc = fused_inode_path(F(), ino, tp1, sizeof(tp1))) < 0)
			return fail(req, rc);
		op.path1 = tp1;
		op.path1_len = (uint16_t)rc;
		op.name = name;
		op.name_len = (uint16_t)strlen(name);
		op.data_len = (uint32_t)size;
	}
	commit(&op, value, size, req, &r);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char pp[64], *buf = NULL;
	ssize_t n;

	procpath(pp, sizeof(pp), ino_fd(ino));
	if (size == 0) {
		n = getxattr(pp, name, NULL, 0);
		return (void)(n < 0 ? fuse_reply_err(req, errno) : fuse_reply_xattr(req, (size_t)n));
	}
	buf = malloc(size);
	if (!buf)
		return (void)fuse_reply_err(req, ENOMEM);
	n = getxattr(pp, name, buf, size);
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char pp[64], *buf = NULL;
	ssize_t n;

	procpath(pp, sizeof(pp), ino_fd(ino));
	if (size == 0) {
		n = listxattr(pp, NULL, 0);
		return (void)(n < 0 ? fuse_reply_err(req, errno) : fuse_reply_xattr(req, (size_t)n));
	}
	buf = malloc(size);
	if (!buf)
		return (void)fuse_reply_err(req, ENOMEM);
	n = listxattr(pp, buf, size);
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct sk_rmsg_op op = { .type = SK_RMSG_REMOVEXATTR };
	struct fused_reply r = { .kind = R_ERR0 };
	char pp[64];
	int rc;

	if (strlen(name) > SK_RMSG_NAME_MAX)
		return (void)fuse_reply_err(req, ENODATA);
	procpath(pp, sizeof(pp), ino_fd(ino));
	pthread_mutex_lock(&F()->stream_mu);
	if (removexattr(pp, name) < 0)
		return fail(req, -errno);
	if (active()) {
		if ((rc = fused_inode_path(F(), ino, tp1, sizeof(tp1))) < 0)
			return fail(req, rc);
		op.path1 = tp1;
		op.path1_len = (uint16_t)rc;
		op.name = name;
		op.name_len = (uint16_t)strlen(name);
	}
	commit(&op, NULL, 0, req, &r);
}

const struct fuse_lowlevel_ops fused_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.symlink = op_symlink,
	.link = op_link,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write = op_write,
	.release = op_release,
	.fsync = op_fsync,
	.fallocate = op_fallocate,
	.copy_file_range = op_copy_file_range,
	.lseek = op_lseek,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
};
