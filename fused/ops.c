/* fused/ops.c: FUSE operations of the primary on attributes and names (lookup, setattr, mkdir, link, rename...) and the helpers file.c shares. */
#include "ops.h"
#include "resync.h"

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
#include "moves.h"

#define F() (fused_ctx)
#define ATTR_TIMEOUT 1.0

/* Per-thread scratch: paths of the operation being replicated. */
__thread char fused_tp1[PATH_MAX];
__thread char fused_tp2[PATH_MAX];
static __thread bool t_fs_unshared;
static __thread mode_t t_umask;
static __thread bool t_creds;

void fused_procpath(char *buf, size_t cap, int fd)
{
	snprintf(buf, cap, "/proc/self/fd/%d", fd);
}

int fused_ino_get(fuse_ino_t ino)
{
	return fused_inode_acquire(F(), ino);
}

void fused_ino_put(fuse_ino_t ino, int fd)
{
	fused_inode_release(F(), ino, fd);
}

/*
 * New inodes belong to the caller: fsuid/fsgid are per thread (raw syscalls;
 * glibc would broadcast), umask too once the thread has its own fs_struct.
 * Capabilities stay (SECBIT_NO_SETUID_FIXUP, set in main): the kernel has
 * already checked permissions (default_permissions).
 */
void fused_creds_set(fuse_req_t req)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);

	if (!t_fs_unshared) {
		if (unshare(CLONE_FS) == 0) {
			t_fs_unshared = true;
			/* the copy has the umask its creator last set (libfuse starts new
			 * workers from busy workers), not necessarily t_umask's 0: set it */
			t_umask = (mode_t)~0u;
		}
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

void fused_creds_reset(void)
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

void fused_op_times(struct sk_rmsg_op *op, const struct stat *st)
{
	ts_from(&op->atime, &st->st_atim);
	ts_from(&op->mtime, &st->st_mtim);
	op->valid |= SK_RV_ATIME | SK_RV_MTIME;
}

void fused_op_p1(struct sk_rmsg_op *op, int dirfd)
{
	struct stat st;

	if (fstat(dirfd, &st) == 0) {
		ts_from(&op->p1_mtime, &st.st_mtim);
		op->valid |= SK_RV_P1MTIME;
	}
}

void fused_op_p2(struct sk_rmsg_op *op, int dirfd)
{
	struct stat st;

	if (fstat(dirfd, &st) == 0) {
		ts_from(&op->p2_mtime, &st.st_mtim);
		op->valid |= SK_RV_P2MTIME;
	}
}

/* parent's path + "/" + name into buf; returns length or -errno. */
int fused_child_path(fuse_ino_t parent, const char *name, char *buf)
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

/*
 * After a local apply, when the inode cannot be named for the peer (its name
 * was removed while another link lives): the peer is outdated, a resync fixes it.
 */
void fused_unnameable(int rc)
{
	sk_warn("cannot name an inode for the peer (%s)", strerror(-rc));
	fused_peer_lost(F(), F()->conn_gen, "an operation could not be named for the peer");
}

bool fused_active(void)
{
	return atomic_load(&F()->connected);
}

/* ---- what an operation changed, for the dirty tracker (resync.h) ---- */

struct fused_dirty *fused_dirty_g;
#define DN_MAX 4
static __thread struct fused_dnote t_dn[DN_MAX];
static __thread unsigned t_dn_n;
static __thread bool t_dn_bad; /* a change that could not be named by handle */

static struct fused_dnote *dn_slot(void)
{
	if (!fused_dirty_g)
		return NULL;
	if (t_dn_n == DN_MAX) {
		t_dn_bad = true;
		return NULL;
	}
	memset(&t_dn[t_dn_n], 0, sizeof(t_dn[0]));
	return &t_dn[t_dn_n];
}

void fused_dn_ino(fuse_ino_t ino, uint32_t flags, uint64_t off, uint64_t len)
{
	struct fused_dnote *n = dn_slot();
	bool dir = false;

	if (!n)
		return;
	if (fused_inode_dh(F(), ino, &n->h, &n->parent, &dir) < 0) {
		t_dn_bad = true;
		return;
	}
	n->flags = flags | (dir ? FUSED_DF_DIR : 0);
	if (!dir) {
		n->off = off;
		n->len = len;
	}
	t_dn_n++;
}

void fused_dn_at(int dirfd, const char *name, uint32_t flags)
{
	struct fused_dnote *n = dn_slot();
	struct stat st;
	int fd;

	if (!n)
		return;
	fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || fused_fd_dh(F(), fd, &n->h) < 0) {
		if (fd >= 0)
			close(fd);
		t_dn_bad = true;
		return;
	}
	close(fd);
	/* a directory moved here is walked whole; anything else is sent whole */
	n->flags = flags | (S_ISDIR(st.st_mode) ? FUSED_DF_DIR | FUSED_DF_WALK : FUSED_DF_WHOLE);
	fused_fd_dh(F(), dirfd, &n->parent);
	t_dn_n++;
}

void fused_dn_dh(const struct fused_dh *h, uint32_t flags)
{
	struct fused_dnote *n = dn_slot();

	if (!n)
		return;
	if (!h->len) {
		t_dn_bad = true;
		return;
	}
	n->h = *h;
	n->flags = flags;
	t_dn_n++;
}

void fused_dn_begin(struct fused_dn_mark *m)
{
	m->gen = F()->conn_gen;
	m->seq = atomic_load(&F()->seq_sent);
	/* the activity log: what is staged so far is on disk before the first frame goes */
	if (fused_dirty_g && t_dn_n && fused_active())
		fused_dirty_prelog(fused_dirty_g, t_dn, t_dn_n, m->gen, m->seq + 1);
}

void fused_dn_end(const struct fused_dn_mark *m)
{
	uint64_t conn = 0, seq = 0;

	fused_gen_touch(F()); /* every modifying operation passes here before its reply */
	if (!fused_dirty_g)
		return;
	/* under stream_mu every frame is ours: a new sequence number means it went out */
	if (m && F()->conn_gen == m->gen && atomic_load(&F()->seq_sent) != m->seq) {
		conn = m->gen;
		seq = atomic_load(&F()->seq_sent);
	}
	if (t_dn_bad)
		fused_dirty_set_lost(fused_dirty_g, "a change could not be named by file handle");
	fused_dirty_note(fused_dirty_g, t_dn, t_dn_n, conn, seq);
	t_dn_n = 0;
	t_dn_bad = false;
}

/* Finish an operation applied under stream_mu: replicate, record, unlock, reply. */
void fused_commit(struct sk_rmsg_op *op, const void *data, size_t dlen, fuse_req_t req,
		   const struct fused_reply *r)
{
	struct fused_dn_mark m;
	int deferred = 0;

	fused_dn_begin(&m);
	if (fused_active())
		deferred = fused_repl_submit(F(), op, data, dlen, req, r);
	fused_dn_end(&m);
	pthread_mutex_unlock(&F()->stream_mu);
	if (!deferred)
		fused_reply_send(req, r);
}

void fused_local_reply(fuse_req_t req, const struct fused_reply *r)
{
	fused_dn_end(NULL);
	pthread_mutex_unlock(&F()->stream_mu);
	fused_reply_send(req, r);
}

/*
 * SKFUSED_MTIME=seen. By default a write's mtime is chosen here and set on both nodes (the
 * frame carries it, futimens sets it here), so that after any acknowledged write the two
 * copies' mtimes are equal to the ns. That futimens dirties the primary's inode, so each of
 * its fsyncs commits the journal, where a native write + fsync loop commits only when the
 * 4 ms clock has ticked (docs/skfused.md, "What one operation costs"). With "seen" a write
 * sets no time: the primary keeps the one its kernel gave, the peer the one of its own
 * write, and the inode owes the peer its times (inode.c, IN_TIMES) until a reply that shows
 * them to the application has given them first. A reply racing another's times frame sends
 * its own: times_seq is that frame's sequence number, UINT64_MAX while one is being made
 * (written under stream_mu; read without it first).
 */
bool fused_mtime_seen;
_Atomic uint64_t fused_times_frames;
static _Atomic uint64_t times_seq, times_gen; /* times_gen: the connection times_seq counts in */

__attribute__((constructor)) static void mtime_seen_init(void)
{
	const char *v = getenv("SKFUSED_MTIME");

	fused_mtime_seen = v && strcmp(v, "seen") == 0;
}

/* A times frame may be unacknowledged (one of an earlier connection went with its peer: the
 * frames a lost peer missed join the dirty tracking, and the resync sends those times). */
static bool times_racing(void)
{
	uint64_t s = atomic_load(&times_seq);

	return s > atomic_load(&F()->seq_acked) &&
	       (s == UINT64_MAX || atomic_load(&times_gen) == atomic_load(&F()->conn_gen));
}

bool fused_times_owed(fuse_ino_t ino, const struct stat *st)
{
	if (!fused_mtime_seen || !S_ISREG(st->st_mode))
		return false;
	return fused_inode_times_take(F(), ino, false) || times_racing();
}

uint64_t fused_times_hold(fuse_ino_t ino)
{
	uint64_t prev = atomic_load(&times_seq);

	atomic_store(&times_seq, UINT64_MAX); /* a reply racing this frame sends its own */
	fused_inode_times_take(F(), ino, true);
	return prev;
}

void fused_times_sent(void)
{
	atomic_fetch_add(&fused_times_frames, 1);
	atomic_store(&times_gen, atomic_load(&F()->conn_gen));
	atomic_store(&times_seq, atomic_load(&F()->seq_sent));
}

int fused_times_give(fuse_ino_t ino, int fd, struct stat *st, fuse_req_t req,
		     struct fused_reply *r)
{
	struct sk_rmsg_op op = { .type = SK_RMSG_SETATTR };
	bool racing = times_racing();
	char path[PATH_MAX];
	int n, deferred = 0;
	uint64_t prev;

	if (!fused_mtime_seen || !S_ISREG(st->st_mode) || !fused_active())
		return 0;
	if (!fused_inode_times_take(F(), ino, false) && !(req && racing))
		return 0;
	prev = fused_times_hold(ino);
	/* again, under the stream lock: a write since the caller's stat owed newer times */
	if (fstat(fd, st) < 0 || (n = fused_inode_path(F(), ino, path, sizeof(path))) < 0) {
		atomic_store(&times_seq, prev); /* gone, or unlinked: no name on the peer shows them */
		return 0;
	}
	if (r && r->kind == R_ATTR)
		r->attr = *st;
	else if (r)
		r->e.attr = *st;
	op.path1 = path;
	op.path1_len = (uint16_t)n;
	fused_op_times(&op, st);
	fused_dn_ino(ino, FUSED_DF_META, 0, 0);
	if (req) {
		struct fused_dn_mark m;

		fused_dn_begin(&m);
		deferred = fused_repl_submit(F(), &op, NULL, 0, req, r);
		fused_dn_end(&m);
	} else {
		/* the caller's own frame follows: its ack, which its reply waits for, covers this */
		fused_repl_submit(F(), &op, NULL, 0, NULL, &(struct fused_reply){ .kind = R_NONE });
	}
	fused_times_sent();
	return deferred;
}

/* What a failed operation staged may have half happened: recorded too (harmless if not). */
void fused_fail(fuse_req_t req, int rc)
{
	fused_dn_end(NULL);
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
	/* umask is applied by the backing fs with the caller's umask (fused_creds_set), which is
	 * what lets a default ACL override it, as on a local filesystem */
	if (conn->capable & FUSE_CAP_DONT_MASK)
		conn->want |= FUSE_CAP_DONT_MASK;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* a read() whose inode's mtime changed drops its cached pages: what keeps readers of a
	 * file written through a direct (write-only) handle coherent (file.c, wronly_direct).
	 * Not with SKFUSED_MTIME=seen, which has no direct handles: the GETATTR such a read()
	 * asks after each write would give the peer the file's times, a round trip per read */
	if ((conn->capable & FUSE_CAP_AUTO_INVAL_DATA) && !fused_mtime_seen)
		conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
	else
		conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	/* READDIRPLUS for every listing chunk, not only the first: a walk (find, ls -l, a backup)
	 * reads a whole directory before it stats, so the kernel's "auto" mode would look up all
	 * but the first chunk's names one request at a time */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want = (conn->want | FUSE_CAP_READDIRPLUS) & ~FUSE_CAP_READDIRPLUS_AUTO;
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
		return (void)fuse_reply_err(req, -rc);
	/* SKFUSED_MTIME=seen, times the peer may lack: not kept by the kernel (a timeout of 0 makes
	 * the stat that may follow ask GETATTR, which gives them first); a lookup on the way to an
	 * unlink or an open then does not wait for the peer */
	if (fused_times_owed(e.ino, &e.attr))
		e.attr_timeout = 0;
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
	int fd = fused_ino_get(ino), rc = 0;
	struct stat st;

	if (fd < 0)
		return (void)fuse_reply_err(req, -fd);
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		rc = -errno;
	if (rc == 0 && fused_times_owed(ino, &st)) {
		struct fused_reply r = { .kind = R_ATTR };

		pthread_mutex_lock(&F()->stream_mu);
		rc = fused_times_give(ino, fd, &st, req, &r);
		pthread_mutex_unlock(&F()->stream_mu);
		if (rc) {
			fused_ino_put(ino, fd);
			return;
		}
	}
	fused_ino_put(ino, fd);
	if (rc < 0)
		fuse_reply_err(req, -rc);
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
	int fd = fused_ino_get(ino), rc = 0;
	bool killed = false;
	struct stat st;

	if (fd < 0)
		return (void)fuse_reply_err(req, -fd);
	fused_procpath(pp, sizeof(pp), fd);
	pthread_mutex_lock(&F()->stream_mu);
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		goto fail;
	/* staged first: a change that fails half way is recorded too */
	if ((to_set & FUSE_SET_ATTR_SIZE) && S_ISREG(st.st_mode)) {
		uint64_t a = (uint64_t)st.st_size, b = (uint64_t)attr->st_size;

		/* what was cut off and what grows back must not keep the peer's old bytes */
		fused_dn_ino(ino, FUSED_DF_META, a < b ? a : b, a < b ? b - a : a - b);
	} else {
		fused_dn_ino(ino, FUSED_DF_META, 0, 0);
	}
	if (to_set & FUSE_SET_ATTR_MODE) {
		rc = fh ? fchmod(fh->fd, attr->st_mode) : chmod(pp, attr->st_mode);
		if (rc < 0)
			goto fail;
	}
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t u = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t g = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			goto fail;
		if (to_set & FUSE_SET_ATTR_UID)
			op.valid |= SK_RV_UID, op.uid = attr->st_uid;
		if (to_set & FUSE_SET_ATTR_GID)
			op.valid |= SK_RV_GID, op.gid = attr->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		rc = fh ? ftruncate(fh->fd, attr->st_size) : truncate(pp, attr->st_size);
		if (rc < 0)
			goto fail;
		op.valid |= SK_RV_SIZE;
		op.len = (uint64_t)attr->st_size;
		/* a truncate by a caller without CAP_FSETID clears the set-id bits (fuseio.c) */
		killed = fused_kill_suidgid(req, ino, fh ? fh->fd : fd) >= 0;
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
			goto fail;
	}
	if (fstatat(fd, "", &r.attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		goto fail;
	if (fused_active()) {
		int n = 0;

		if (fh && fh->id)
			op.fh = fh->id;
		else if ((n = fused_inode_path(F(), ino, fused_tp1, sizeof(fused_tp1))) < 0) {
			/* -ENOENT: unlinked and no handle: nobody on the peer sees it any more */
			if (n != -ENOENT)
				fused_unnameable(n);
			fused_ino_put(ino, fd);
			return fused_local_reply(req, &r);
		}
		op.path1 = fused_tp1;
		op.path1_len = op.fh ? 0 : (uint16_t)n;
		/* chown may clear set-id bits: send the resulting mode whenever owners or mode changed */
		if (!S_ISLNK(r.attr.st_mode) &&
		    (killed || (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))) {
			op.valid |= SK_RV_MODE;
			op.mode = r.attr.st_mode & 07777;
		}
		fused_op_times(&op, &r.attr);
	}
	fused_ino_put(ino, fd);
	fused_commit(&op, NULL, 0, req, &r);
	return;
fail:
	rc = -errno;
	fused_ino_put(ino, fd);
	fused_fail(req, rc);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	int fd = fused_ino_get(ino), e;
	ssize_t n;

	if (fd < 0)
		return (void)fuse_reply_err(req, -fd);
	n = readlinkat(fd, "", buf, sizeof(buf) - 1);
	e = errno;
	fused_ino_put(ino, fd);
	if (n < 0)
		return (void)fuse_reply_err(req, e);
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

/* ---- namespace ---- */

/* After a local create of parent/name: look it up and fill the replicated op's common fields. */
int fused_created(fuse_ino_t parent, const char *name, struct sk_rmsg_op *op,
		   struct fused_reply *r)
{
	int rc = fused_inode_lookup(F(), parent, name, &r->e), pfd;

	if (rc < 0)
		return rc;
	if (!fused_active())
		return 0;
	rc = fused_child_path(parent, name, fused_tp1);
	if (rc < 0) {
		fused_unnameable(rc);
		return 0;
	}
	op->path1 = fused_tp1;
	op->path1_len = (uint16_t)rc;
	op->uid = r->e.attr.st_uid;
	op->gid = r->e.attr.st_gid;
	op->valid |= SK_RV_UID | SK_RV_GID;
	if (op->type != SK_RMSG_SYMLINK)
		op->valid |= SK_RV_MODE;
	fused_op_times(op, &r->e.attr);
	if ((pfd = fused_ino_get(parent)) >= 0) {
		fused_op_p1(op, pfd);
		fused_ino_put(parent, pfd);
	}
	return 0;
}

static void mk_common(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      dev_t rdev, const char *link)
{
	struct sk_rmsg_op op = { 0 };
	struct fused_reply r = { .kind = R_ENTRY };
	int pfd = fused_ino_get(parent), rc;

	if (pfd < 0)
		return (void)fuse_reply_err(req, -pfd);
	fused_creds_set(req);
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
	fused_creds_reset();
	fused_ino_put(parent, pfd);
	if (rc == 0)
		rc = fused_created(parent, name, &op, &r);
	if (rc < 0)
		return fused_fail(req, rc);
	op.mode = op.type == SK_RMSG_MKDIR ? (r.e.attr.st_mode & 07777) : r.e.attr.st_mode;
	op.rdev = r.e.attr.st_rdev;
	fused_dn_ino(parent, FUSED_DF_NS, 0, 0);
	/* a new directory: its names (what is created in it is tracked by itself) */
	fused_dn_ino(r.e.ino, S_ISDIR(r.e.attr.st_mode) ? FUSED_DF_NS | FUSED_DF_META :
		     S_ISREG(r.e.attr.st_mode) ? FUSED_DF_META | FUSED_DF_WHOLE : FUSED_DF_META, 0, 0);
	fused_commit(&op, link, link ? strlen(link) : 0, req, &r);
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
	struct fused_dh odh, oparent;
	bool odir;
	int fd = fused_ino_get(ino), pfd = fused_ino_get(parent), rc, n1;
	char pp[64];

	if (fd < 0 || pfd < 0) {
		fused_ino_put(ino, fd);
		fused_ino_put(parent, pfd);
		return (void)fuse_reply_err(req, fd < 0 ? -fd : -pfd);
	}
	fused_procpath(pp, sizeof(pp), fd);
	pthread_mutex_lock(&F()->stream_mu);
	/* the directory of its name so far: listed with the new one, the group stays one inode */
	if (fused_inode_dh(F(), ino, &odh, &oparent, &odir) < 0)
		oparent.len = 0;
	/* the existing name first: the lookup below makes the inode hold the new one */
	n1 = fused_active() ? fused_inode_path(F(), ino, fused_tp1, sizeof(fused_tp1)) : 0;
	rc = linkat(AT_FDCWD, pp, pfd, name, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
	fused_ino_put(ino, fd);
	if (rc == 0)
		rc = fused_inode_lookup(F(), parent, name, &r.e);
	if (rc < 0) {
		fused_ino_put(parent, pfd);
		return fused_fail(req, rc);
	}
	if (fused_times_owed(ino, &r.e.attr)) { /* given ahead of the link, whose ack the reply waits for */
		int ifd = fused_ino_get(ino);

		if (ifd >= 0)
			fused_times_give(ino, ifd, &r.e.attr, NULL, &r);
		fused_ino_put(ino, ifd);
	}
	if (atomic_load(&F()->resyncing)) {
		/*
		 * Both directories are walked again. The new name's: it may land where the
		 * listing in progress has passed, and the peer then removes it as a stray when
		 * the listing ends. The old name's too: the peer knows the group only from a
		 * name listed with its links, and the old one may have been listed with one;
		 * walked together, the new name is made a link of it, not a file of its own.
		 */
		fused_rs_note_move(F(), -1, pfd);
		if (n1 > 0) {
			int ofd = fused_rs_deepest_dir(F(), fused_tp1);

			if (ofd >= 0) {
				fused_rs_note_move(F(), -1, ofd);
				close(ofd);
			}
		}
	}
	fused_dn_ino(parent, FUSED_DF_NS, 0, 0);
	fused_dn_ino(ino, FUSED_DF_WHOLE | FUSED_DF_META, 0, 0);
	fused_dn_dh(&oparent, FUSED_DF_DIR | FUSED_DF_NS);
	if (fused_active()) {
		if (n1 < 0 || (rc = fused_child_path(parent, name, fused_tp2)) < 0) {
			fused_ino_put(parent, pfd);
			fused_unnameable(n1 < 0 ? n1 : rc);
			return fused_commit(&op, NULL, 0, req, &r);
		}
		op.path1_len = (uint16_t)n1;
		op.path1 = fused_tp1;
		op.path2 = fused_tp2;
		op.path2_len = (uint16_t)rc;
		fused_op_p2(&op, pfd);
	}
	fused_ino_put(parent, pfd);
	fused_commit(&op, NULL, 0, req, &r);
}

static void rm_common(fuse_req_t req, fuse_ino_t parent, const char *name, bool dir)
{
	struct sk_rmsg_op op = { .type = dir ? SK_RMSG_RMDIR : SK_RMSG_UNLINK };
	struct fused_reply r = { .kind = R_ERR0 };
	int pfd = fused_ino_get(parent), rc = 0;

	if (pfd < 0)
		return (void)fuse_reply_err(req, -pfd);
	pthread_mutex_lock(&F()->stream_mu);
	if (fused_active() && (rc = fused_child_path(parent, name, fused_tp1)) < 0)
		goto fail;
	if (unlinkat(pfd, name, dir ? AT_REMOVEDIR : 0) < 0) {
		rc = -errno;
		goto fail;
	}
	fused_path_gen++;
	fused_dn_ino(parent, FUSED_DF_NS, 0, 0);
	op.path1 = fused_tp1;
	op.path1_len = (uint16_t)rc;
	fused_op_p1(&op, pfd);
	fused_ino_put(parent, pfd);
	fused_commit(&op, NULL, 0, req, &r);
	return;
fail:
	fused_ino_put(parent, pfd);
	fused_fail(req, rc);
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
	struct fused_dh mv_h;
	int pfd, npfd, n1 = 0, n2 = 0, rc = 0, mvl = -1;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return (void)fuse_reply_err(req, EINVAL);
	pfd = fused_ino_get(parent);
	npfd = fused_ino_get(newparent);
	if (pfd < 0 || npfd < 0) {
		rc = pfd < 0 ? pfd : npfd;
		pthread_mutex_lock(&F()->stream_mu);
		goto fail;
	}
	pthread_mutex_lock(&F()->stream_mu);
	if (fused_active()) {
		if ((rc = n1 = fused_child_path(parent, name, fused_tp1)) < 0)
			goto fail;
		if ((rc = n2 = fused_child_path(newparent, newname, fused_tp2)) < 0)
			goto fail;
	} else if (!(flags & RENAME_EXCHANGE) && fused_moves_want(F(), pfd, name, &mv_h)) {
		/* the peer's copy can move with the name when it returns (moves.c) */
		mvl = fused_child_path(parent, name, fused_tp1);
	}
	if (renameat2(pfd, name, npfd, newname, flags) < 0) {
		rc = -errno;
		goto fail;
	}
	if (mvl > 0)
		fused_moves_add(&mv_h, fused_tp1, (size_t)mvl);
	fused_path_gen++;
	/* a disconnected fd of the moved file finds its name where it went */
	fused_inode_moved(F(), newparent, npfd, newname);
	if (flags & RENAME_EXCHANGE)
		fused_inode_moved(F(), parent, pfd, name);
	if (atomic_load(&F()->resyncing)) {
		fused_rs_note_move(F(), pfd, npfd);
		if (flags & RENAME_EXCHANGE)
			fused_rs_note_move(F(), npfd, pfd);
	}
	/* both directories' names, and what moved: a directory walked whole, a file sent whole */
	fused_dn_ino(parent, FUSED_DF_NS, 0, 0);
	if (newparent != parent)
		fused_dn_ino(newparent, FUSED_DF_NS, 0, 0);
	fused_dn_at(npfd, newname, 0);
	if (flags & RENAME_EXCHANGE)
		fused_dn_at(pfd, name, 0);
	op.path1 = fused_tp1;
	op.path1_len = (uint16_t)n1;
	op.path2 = fused_tp2;
	op.path2_len = (uint16_t)n2;
	fused_op_p1(&op, pfd);
	fused_op_p2(&op, npfd);
	fused_ino_put(parent, pfd);
	fused_ino_put(newparent, npfd);
	fused_commit(&op, NULL, 0, req, &r);
	return;
fail:
	fused_ino_put(parent, pfd);
	fused_ino_put(newparent, npfd);
	fused_fail(req, rc);
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
	.open = fused_op_open,
	.create = fused_op_create,
	.read = fused_op_read,
	.write = fused_op_write,
	.release = fused_op_release,
	.fsync = fused_op_fsync,
	.fallocate = fused_op_fallocate,
	.copy_file_range = fused_op_copy_file_range,
	.lseek = fused_op_lseek,
	.opendir = fused_op_opendir,
	.readdir = fused_op_readdir,
	.readdirplus = fused_op_readdirplus,
	.releasedir = fused_op_releasedir,
	.fsyncdir = fused_op_fsyncdir,
	.statfs = fused_op_statfs,
	.setxattr = fused_op_setxattr,
	.getxattr = fused_op_getxattr,
	.listxattr = fused_op_listxattr,
	.removexattr = fused_op_removexattr,
};
