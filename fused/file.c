/* fused/file.c: FUSE operations on open files, directories and xattrs (primary): apply under the stream lock, replicate. */
#include "fault.h"
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
#include <time.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "log.h"
#include "moves.h"

#define F() (fused_ctx)
#define COPY_MAX (1u << 20)

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

/*
 * FUSE_HANDLE_KILLPRIV_V2 (fuseio.c): the kernel leaves clearing the set-id bits to us and
 * says per request whether the caller lacks CAP_FSETID. skfused writes with its own
 * capabilities, so the backing file system would keep them: cleared here, as the VFS does.
 */
static bool caller_in_group(fuse_req_t req, gid_t g)
{
	gid_t small[64], *list = small;
	int n = fuse_req_getgroups(req, 64, small), i;
	bool in = fuse_req_ctx(req)->gid == g;

	if (n > 64 && (list = calloc((size_t)n, sizeof(*list))) != NULL)
		n = fuse_req_getgroups(req, n, list);
	else if (n > 64)
		n = 64;
	for (i = 0; i < n && !in; i++)
		in = list[i] == g;
	if (list != small)
		free(list);
	return in;
}

/*
 * copy_file_range and fallocate requests carry no such flag, yet with FUSE_HANDLE_KILLPRIV_V2
 * the kernel leaves their set-id bits to us too: the caller's effective capabilities tell.
 * Anything unreadable counts as "lacks it" (the bits go, the safe side).
 */
static bool caller_lacks_fsetid(fuse_req_t req)
{
	char path[64], line[256];
	pid_t pid = fuse_req_ctx(req)->pid;
	bool lacks = true;
	FILE *fp;

	if (pid <= 0)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (!(fp = fopen(path, "re")))
		return true;
	while (fgets(line, sizeof(line), fp))
		if (!strncmp(line, "CapEff:", 7)) {
			lacks = !(strtoull(line + 7, NULL, 16) & (1ULL << 4 /* CAP_FSETID */));
			break;
		}
	fclose(fp);
	return lacks;
}

/* ask_proc: no flag in the request, look at the caller (only once the file has set-id bits) */
static int kill_common(fuse_req_t req, fuse_ino_t ino, int fd, bool ask_proc)
{
	struct stat st;
	char pp[64];
	mode_t m;

	if (!ask_proc && !fused_req_kill_suidgid())
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & (S_ISUID | S_ISGID)))
		return -1;
	if (ask_proc && !caller_lacks_fsetid(req))
		return -1;
	m = st.st_mode & 07777 & ~(mode_t)S_ISUID;
	/* as the VFS: S_ISGID goes when the group may execute, or when the caller (without
	 * CAP_FSETID, which the request's flag says) is not in the file's group */
	if ((m & S_ISGID) && ((m & S_IXGRP) || !caller_in_group(req, st.st_gid)))
		m &= ~(mode_t)S_ISGID;
	if (m == (st.st_mode & 07777))
		return -1;
	fused_procpath(pp, sizeof(pp), fd); /* fd may be O_PATH */
	if (chmod(pp, m) < 0) {
		sk_warn("cannot clear the set-id bits of a written file: %s", strerror(errno));
		return -1;
	}
	fused_dn_ino(ino, FUSED_DF_META, 0, 0);
	/* the kernel's cached mode still has the bits (it no longer clears them itself): drop its
	 * cached attributes only (offset < 0: no page cache work, nothing an operation holds) */
	fuse_lowlevel_notify_inval_inode(F()->se, ino, -1, 0);
	return (int)m;
}

int fused_kill_suidgid(fuse_req_t req, fuse_ino_t ino, int fd)
{
	return kill_common(req, ino, fd, false);
}

static int kill_unflagged(fuse_req_t req, fuse_ino_t ino, int fd)
{
	/* without V2 the kernel clears them itself (a SETATTR before the request) */
	return atomic_load(&fused_killpriv_v2) ? kill_common(req, ino, fd, true) : -1;
}

/* The mode fused_kill_suidgid set, to the peer by handle, ahead of the operation's own frame. */
static void kill_send(uint64_t fh_id, int mode)
{
	struct sk_rmsg_op op = { .type = SK_RMSG_SETATTR, .valid = SK_RV_MODE, .fh = fh_id };
	struct fused_reply none = { .kind = R_NONE };

	op.mode = (uint32_t)mode;
	if (mode >= 0 && fh_id && fused_active())
		fused_repl_submit(F(), &op, NULL, 0, NULL, &none);
}

/* fused_commit, with the cleared mode (kmode >= 0) sent first on handle fh_id */
static void commit_after_kill(uint64_t fh_id, int kmode, struct sk_rmsg_op *op, const void *data,
			      size_t dlen, fuse_req_t req, const struct fused_reply *r)
{
	struct fused_dn_mark m;
	int deferred = 0;

	if (kmode < 0)
		return fused_commit(op, data, dlen, req, r);
	fused_dn_begin(&m);
	if (fused_active()) {
		kill_send(fh_id, kmode);
		deferred = fused_repl_submit(F(), op, data, dlen, req, r);
	}
	fused_dn_end(&m);
	pthread_mutex_unlock(&F()->stream_mu);
	if (!deferred)
		fused_reply_send(req, r);
}

/*
 * A handle opened write-only (open or create) takes the kernel's direct write path
 * (FOPEN_DIRECT_IO): the application's bytes go from its buffer into the WRITE request,
 * with no copy into the mount's page cache and no second cached copy of data already
 * cached by the backing file system (the cached path allocates and fills a page per 4 KiB
 * written, which nobody reads through this handle). Such a handle can be neither read nor
 * mapped, so its caller sees nothing change. Readers through other handles: the kernel
 * drops the cached pages of the range before a direct write, and the write invalidates
 * the inode's mtime, which changes with every write here, so the next read() asks for the
 * attributes and drops any page cached meanwhile (auto_inval_data). A direct write by a
 * caller without CAP_FSETID comes flagged FUSE_WRITE_KILL_SUIDGID (fuseio.c) and the
 * kernel asks no security.capability before it. SKFUSED_WRONLY_DIRECT=0: the cached path,
 * as with SKFUSED_MTIME=seen (ops.c), which does without auto_inval_data.
 */
static bool wronly_direct = true;

__attribute__((constructor)) static void wronly_direct_init(void)
{
	const char *v = getenv("SKFUSED_WRONLY_DIRECT");

	wronly_direct = !(v && strcmp(v, "0") == 0);
}

/* A handle that may write: the kernel keeps its cached pages across opens; write-only: direct. */
static void writer_cache(struct fuse_file_info *fi)
{
	fi->keep_cache = 1;
	if (wronly_direct && !fused_mtime_seen && (fi->flags & O_ACCMODE) == O_WRONLY)
		fi->direct_io = 1;
}

void fused_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sk_rmsg_op op = { .type = SK_RMSG_OPEN };
	struct fused_reply r = { .kind = R_OPEN };
	bool repl = wants_write(fi->flags);
	struct stat ost;
	int kmode;
	struct fused_fh *fh;
	char pp[64];
	int fd, rc = 0, ifd = fused_ino_get(ino);

	if (ifd < 0)
		return (void)fuse_reply_err(req, -ifd);
	fused_procpath(pp, sizeof(pp), ifd);
	if (!repl) { /* reads never touch the network */
		fd = open(pp, open_flags(fi->flags));
		rc = fd < 0 ? errno : 0;
		fused_ino_put(ino, ifd);
		if (fd < 0)
			return (void)fuse_reply_err(req, rc);
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
	/* what O_TRUNC cuts, and its times: they change even when the file is empty already */
	if (fi->flags & O_TRUNC)
		fused_dn_ino(ino, FUSED_DF_META, 0,
			     fstat(ifd, &ost) == 0 && ost.st_size > 0 ? (uint64_t)ost.st_size : 0);
	fd = open(pp, open_flags(fi->flags));
	rc = fd < 0 ? -errno : 0;
	fused_ino_put(ino, ifd);
	if (fd < 0)
		return fused_fail(req, rc);
	fh = fh_new(fd, true);
	if (!fh) {
		close(fd);
		return fused_fail(req, -ENOMEM);
	}
	fh->prev = fh->next = NULL;
	fh_link(fh);
	fi->fh = (uintptr_t)fh;
	writer_cache(fi);
	r.fi = *fi;
	kmode = (fi->flags & O_TRUNC) ? fused_kill_suidgid(req, ino, fd) : -1;
	if (fused_active()) {
		struct stat st;

		op.fh = fh->id;
		rc = fused_fd_path(F(), fd, fused_tp1, sizeof(fused_tp1));
		if (rc == -ENOENT) {
			op.flags |= SK_RO_ORPHAN; /* open-unlinked: the peer drops its writes */
			rc = 0;
		} else if (rc < 0) {
			fused_unnameable(rc);
			rc = 0;
			op.flags |= SK_RO_ORPHAN;
		}
		op.path1 = fused_tp1;
		op.path1_len = (op.flags & SK_RO_ORPHAN) ? 0 : (uint16_t)rc;
		if ((fi->flags & O_TRUNC) && !(op.flags & SK_RO_ORPHAN)) {
			op.flags |= SK_RO_TRUNC;
			if (fstat(fd, &st) == 0)
				fused_op_times(&op, &st);
		}
		if (kmode >= 0) { /* the handle first, then its mode: the reply waits for both */
			struct fused_dn_mark m;
			int deferred;

			fused_dn_begin(&m);
			fused_repl_submit(F(), &op, NULL, 0, NULL, &(struct fused_reply){ .kind = R_NONE });
			op = (struct sk_rmsg_op){ .type = SK_RMSG_SETATTR, .valid = SK_RV_MODE, .fh = fh->id,
						  .mode = (uint32_t)kmode };
			deferred = fused_active() && fused_repl_submit(F(), &op, NULL, 0, req, &r);
			fused_dn_end(&m);
			pthread_mutex_unlock(&F()->stream_mu);
			if (!deferred)
				fused_reply_send(req, &r);
			return;
		}
	}
	fused_commit(&op, NULL, 0, req, &r);
}

/*
 * A new name is created on both nodes at once: the peer is told the request
 * (mode, umask, caller) before the local openat, both under the stream lock,
 * and applies it as the same caller, so the same kernel rules (umask, default
 * ACL, set-group-ID directory) give the same result. A name that exists takes
 * the plain path: apply here, then send the result.
 */
void fused_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct sk_rmsg_op op = { .type = SK_RMSG_CREATE };
	struct fused_reply r = { .kind = R_CREATE,
				 .st = { .in = fused_stage_now(), .kind = FUSED_STG_CREATE } };
	uint64_t seq = 0, gen = F()->conn_gen, capgen = fused_inode_cap_gen();
	int pfd = fused_ino_get(parent), fd, rc, n;
	struct fused_fh *fh = pfd >= 0 ? fh_new(-1, true) : NULL;
	bool ahead = false;
	struct stat pre;
	struct fused_dn_mark m;
	uint64_t trunc_from = 0;
	struct timespec dmt = { 0, UTIME_OMIT };
	bool existed, absent;

	if (!fh) {
		fused_ino_put(parent, pfd);
		return (void)fuse_reply_err(req, pfd < 0 ? -pfd : ENOMEM);
	}
	fi->fh = (uintptr_t)fh;
	writer_cache(fi);
	fused_creds_set(req);
	pthread_mutex_lock(&F()->stream_mu);
	fused_dn_ino(parent, FUSED_DF_NS, 0, 0); /* in the activity log before CREATE goes */
	fused_dn_begin(&m);
	/* an existing name truncated by O_TRUNC: what it held must not stay on the peer */
	existed = fstatat(pfd, name, &pre, AT_SYMLINK_NOFOLLOW) == 0;
	absent = !existed && errno == ENOENT; /* one stat for both questions */
	if ((fi->flags & O_TRUNC) && existed && S_ISREG(pre.st_mode))
		trunc_from = (uint64_t)pre.st_size;
	if (fused_active() && absent && (n = fused_child_path(parent, name, fused_tp1)) >= 0) {
		op.fh = fh->id;
		op.path1 = fused_tp1;
		op.path1_len = (uint16_t)n;
		op.mode = S_IFREG | (mode & 07777);
		op.uid = ctx->uid;
		op.gid = ctx->gid;
		op.len = ctx->umask;
		op.flags = SK_RO_ASCALLER | (fi->flags & O_EXCL ? SK_RO_EXCL : 0) |
			   (fi->flags & O_TRUNC ? SK_RO_TRUNC : 0);
		/* the directory's new mtime, chosen now and set by both after their create (as a
		 * write's mtime): one frame, not a second one with the time the create left here */
		clock_gettime(CLOCK_REALTIME, &dmt);
		op.p1_mtime = (struct sk_rmsg_ts){ dmt.tv_sec, (uint32_t)dmt.tv_nsec };
		op.valid |= SK_RV_P1MTIME;
		r.fi = *fi;
		fused_repl_submit_held(F(), &op, NULL, 0, req, &r, &seq);
		fused_repl_stamps(&r.st);
		ahead = true;
	}
	fd = openat(pfd, name, open_flags(fi->flags) | O_CREAT | O_NOFOLLOW | (fi->flags & O_EXCL),
		    mode & 07777);
	rc = fd < 0 ? -errno : 0;
	fused_creds_reset();
	if (rc == 0) {
		fh->fd = fd;
		fh_link(fh);
		rc = fused_inode_lookup(F(), parent, name, &r.e);
	}
	if (rc < 0) {
		if (seq) /* the peer created what we could not */
			fused_peer_lost(F(), gen, "local create failed after replication");
		fused_ino_put(parent, pfd);
		fused_dn_end(seq ? &m : NULL); /* the directory, staged first: it may have changed */
		pthread_mutex_unlock(&F()->stream_mu);
		r = (struct fused_reply){ .kind = R_ERR, .err = -rc };
		goto out_err;
	}
	r.fi = *fi;
	/* a file this create made has no security.capability: the kernel's query before its
	 * first write is answered without a getxattr (unless one was set meanwhile: capgen) */
	if (absent)
		fused_inode_set_nocap(F(), r.e.ino, capgen);
	/* SKFUSED_MTIME=seen: the peer made the file at its own time (the close sends ours) */
	if (fused_mtime_seen)
		fused_inode_times_owed(F(), r.e.ino);
	/* a new file is sent whole: the peer may hold an older file of that name (its holes too) */
	fused_dn_ino(r.e.ino, FUSED_DF_META | (existed ? 0 : FUSED_DF_WHOLE), 0, trunc_from);
	if (ahead) {
		/* the directory's mtime the peer was sent (the file's own comes with its close) */
		struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, dmt };

		if (utimensat(pfd, "", tv, AT_EMPTY_PATH) < 0 && seq)
			fused_peer_lost(F(), gen, "cannot set the directory mtime the peer was sent");
		fused_dn_end(&m);
		fused_ino_put(parent, pfd);
		pthread_mutex_unlock(&F()->stream_mu);
		r.st.local = fused_stage_now();
		if (seq)
			fused_repl_local_done(F(), seq, &r);
		else
			fused_reply_send(req, &r);
		return;
	}
	fused_ino_put(parent, pfd);
	if (fused_active()) {
		rc = fused_created(parent, name, &op, &r);
		if (rc < 0) {
			fused_dn_end(NULL);
			pthread_mutex_unlock(&F()->stream_mu);
			r = (struct fused_reply){ .kind = R_ERR, .err = -rc };
			goto out_err;
		}
		op.fh = fh->id;
		op.mode = r.e.attr.st_mode;
		op.flags = (fi->flags & O_EXCL ? SK_RO_EXCL : 0) | (fi->flags & O_TRUNC ? SK_RO_TRUNC : 0);
	}
	fused_commit(&op, NULL, 0, req, &r);
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

void fused_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
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
 * The local writer: a large write's pwrite (a 1 MiB page-cache copy) runs on
 * this thread while the FUSE thread MACs and sends the same buffer. One job at
 * a time: both run under the stream lock, which the FUSE thread holds until the
 * job is done, so the apply order is unchanged.
 */
#define LOCAL_BG_MIN (256u * 1024)

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_once_t once;
	bool ok;
	int state; /* 0 idle, 1 posted, 2 done */
	int fd;
	const char *buf;
	size_t len;
	off_t off;
	ssize_t res;
	int err;
} lw = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .once = PTHREAD_ONCE_INIT };

static void *local_main(void *arg)
{
	pthread_mutex_lock(&lw.mu);
	for (;;) {
		while (lw.state != 1)
			pthread_cond_wait(&lw.cv, &lw.mu);
		pthread_mutex_unlock(&lw.mu);
		lw.res = pwrite(lw.fd, lw.buf, lw.len, lw.off);
		lw.err = errno;
		pthread_mutex_lock(&lw.mu);
		lw.state = 2;
		pthread_cond_broadcast(&lw.cv);
	}
	return NULL;
}

static void local_start(void)
{
	pthread_attr_t at;
	pthread_t t;

	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	lw.ok = pthread_create(&t, &at, local_main, NULL) == 0;
	pthread_attr_destroy(&at);
}

/* stream_mu held. false: no writer thread, do it inline. */
static bool local_post(int fd, const char *buf, size_t len, off_t off)
{
	pthread_once(&lw.once, local_start);
	if (!lw.ok)
		return false;
	pthread_mutex_lock(&lw.mu);
	lw.fd = fd;
	lw.buf = buf;
	lw.len = len;
	lw.off = off;
	lw.state = 1;
	pthread_cond_broadcast(&lw.cv);
	pthread_mutex_unlock(&lw.mu);
	return true;
}

static ssize_t local_wait(void)
{
	ssize_t n;

	pthread_mutex_lock(&lw.mu);
	while (lw.state != 2)
		pthread_cond_wait(&lw.cv, &lw.mu);
	lw.state = 0;
	n = lw.res;
	errno = lw.err;
	pthread_mutex_unlock(&lw.mu);
	return n;
}

/*
 * The frame goes out before the local pwrite, both under the stream lock, so
 * the peer writes while we do; the reply waits for both. The mtime is chosen
 * here before either side writes, carried by the (last) frame and set by both
 * after their pwrite, so the peer's mtime is the one the application can see
 * from the moment the write is acknowledged (a clock read and one futimens per
 * side; the kernel's own would differ by the ns). atime stays behind (close/fsync).
 */
void fused_op_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fused_fh *fh = (struct fused_fh *)(uintptr_t)fi->fh;
	struct sk_rmsg_op op = { .type = SK_RMSG_WRITE };
	struct fused_reply r = { .kind = R_WRITE, .written = size,
				 .st = { .in = fused_stage_now(), .kind = FUSED_STG_WRITE } };
	uint64_t seq = 0, gen = F()->conn_gen;
	struct fused_dn_mark m;
	struct timespec mt = { 0, UTIME_OMIT };
	int deferred = 0, kmode;
	ssize_t n;

	pthread_mutex_lock(&F()->stream_mu);
	if (fi->flags & O_APPEND) {
		off = lseek(fh->fd, 0, SEEK_END);
		if (off < 0)
			return fused_fail(req, -errno);
	}
	/* the peer may have it all: the whole request counts, whatever is written here;
	 * staged before the frames go, so the activity log has it first (fused_dn_begin) */
	fused_dn_ino(ino, 0, (uint64_t)off, size);
	kmode = size ? fused_kill_suidgid(req, ino, fh->fd) : -1; /* the set-id bits go before the data */
	fused_dn_begin(&m);
	if (fused_active() && fh->id) {
		size_t done = 0;
		bool bg;

		kill_send(fh->id, kmode);
		bg = size >= LOCAL_BG_MIN && local_post(fh->fd, data, size, off);

		/*
		 * Pieces of fused_write_chunk bytes: the MAC of one piece, its transfer and
		 * the peer's verify + pwrite of the previous one overlap; the reply waits
		 * for the last piece's ack (acks are cumulative and in order). A large
		 * write's local pwrite runs meanwhile on the local writer thread.
		 */
		op.fh = fh->id;
		if (size > 0)
			clock_gettime(CLOCK_REALTIME, &mt);
		while (size - done > fused_write_chunk) {
			op.off = (uint64_t)off + done;
			op.data_len = (uint32_t)fused_write_chunk;
			fused_repl_submit_piece(F(), &op, data + done, fused_write_chunk);
			done += fused_write_chunk;
			/* tests: the peer lost between two pieces of one write (a torn write on
			 * the peer that nobody was told is replicated; dirty tracking has it) */
			if (fused_fault(FUSED_FAULT_WRITE_PIECE_LOST))
				fused_peer_lost(F(), gen, "fault point write_piece_lost");
		}
		op.off = (uint64_t)off + done;
		op.data_len = (uint32_t)(size - done);
		/*
		 * SKFUSED_MTIME=seen too: the peer sets our clock's time, not its own, so a time an
		 * application saw (given before it was shown) never goes back on the peer when the
		 * peer's clock is behind ours; here the kernel's own time stays (no futimens)
		 */
		if (size > 0) {
			op.mtime = (struct sk_rmsg_ts){ mt.tv_sec, (uint32_t)mt.tv_nsec };
			op.valid |= SK_RV_MTIME;
		}
		deferred = fused_repl_submit_held(F(), &op, data + done, size - done, req, &r, &seq);
		fused_repl_stamps(&r.st);
		n = bg ? local_wait() : pwrite(fh->fd, data, size, off);
		if (n > 0 && !fused_mtime_seen) {
			struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, mt };

			if (futimens(fh->fd, tv) < 0 && seq)
				fused_peer_lost(F(), gen, "cannot set the mtime the peer was sent");
		}
		r.st.local = fused_stage_now();
	} else {
		n = pwrite(fh->fd, data, size, off);
	}
	if (n < 0)
		r = (struct fused_reply){ .kind = R_ERR, .err = errno };
	else
		r.written = (size_t)n;
	if (seq && (size_t)n != size) /* the peer applied what we could not */
		fused_peer_lost(F(), gen, "local write failed after replication");
	if (fused_mtime_seen && n > 0) /* under the stream lock, as fused_times_give takes it */
		fused_inode_times_owed(F(), ino);
	fused_dn_end(&m);
	pthread_mutex_unlock(&F()->stream_mu);
	if (seq)
		fused_repl_local_done(F(), seq, &r);
	else if (!deferred)
		fused_reply_send(req, &r);
}

void fused_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fused_fh *fh = (struct fused_fh *)(uintptr_t)fi->fh;
	struct sk_rmsg_op op = { .type = SK_RMSG_RELEASE };

	if (fh->id) {
		struct stat st;

		pthread_mutex_lock(&F()->stream_mu);
		fh->prev->next = fh->next;
		fh->next->prev = fh->prev;
		op.fh = fh->id;
		if (fused_active() && fstat(fh->fd, &st) == 0)
			fused_op_times(&op, &st); /* writes left the peer's times behind */
		/* nobody waits for it, and it carries nothing the application was told is on
		 * both nodes: it goes with the next frame (docs/skfused.md, "acknowledged");
		 * SKFUSED_MTIME=seen: the times it carries are owed no more once it is acked */
		if (fused_active()) {
			bool times = fused_mtime_seen && (op.valid & SK_RV_MTIME) &&
				     fused_inode_times_take(F(), ino, false);

			if (times)
				fused_times_hold(ino);
			fused_repl_submit_lazy(F(), &op);
			if (times)
				fused_times_sent();
		}
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
	struct fused_reply r = { .kind = R_ERR0,
				 .st = { .in = fused_stage_now(), .kind = FUSED_STG_FSYNC } };
	int rc = 0, fd = fh ? fh->fd : dirfd;
	uint64_t seq = 0;

	pthread_mutex_lock(&F()->stream_mu);
	if (fused_active()) {
		if (fh && fh->id) {
			struct stat st;

			op.fh = fh->id;
			/* SKFUSED_MTIME=seen: no stat, which would give the next write a fine-grained
			 * time and so this inode a change that the next fsync commits */
			if (!fused_mtime_seen && fstat(fh->fd, &st) == 0)
				fused_op_times(&op, &st);
		} else {
			rc = fused_inode_path(F(), ino, fused_tp1, sizeof(fused_tp1));
			op.path1 = fused_tp1;
			op.path1_len = rc > 0 ? (uint16_t)rc : 0;
			if (rc < 0 && rc != -ENOENT)
				fused_unnameable(rc);
		}
		if (rc >= 0) {
			fused_repl_submit_held(F(), &op, NULL, 0, req, &r, &seq);
			fused_repl_stamps(&r.st);
		}
	}
	pthread_mutex_unlock(&F()->stream_mu);
	/* what tracks the change is as durable as the change */
	if (fused_dirty_g && fused_dirty_sync(fused_dirty_g) < 0)
		fused_dirty_set_lost(fused_dirty_g, "cannot sync the tracking file");
	rc = datasync ? fdatasync(fd) : fsync(fd);
	r.st.local = fused_stage_now();
	if (rc < 0)
		r = (struct fused_reply){ .kind = R_ERR, .err = errno };
	if (seq)
		fused_repl_local_done(F(), seq, &r);
	else
		fused_reply_send(req, &r);
}

void fused_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	sync_common(req, ino, datasync, (struct fused_fh *)(uintptr_t)fi->fh, -1);
}

void fused_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct fused_fh *fh = (struct fused_fh *)(uintptr_t)fi->fh;
	struct sk_rmsg_op op = { .type = SK_RMSG_FALLOCATE };
	struct fused_reply r = { .kind = R_ERR0 };
	struct stat st;
	int kmode;

	pthread_mutex_lock(&F()->stream_mu);
	if (fallocate(fh->fd, mode, off, len) < 0)
		return fused_fail(req, -errno);
	kmode = kill_unflagged(req, ino, fh->fd);
	if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE))
		fused_dn_ino(ino, FUSED_DF_META | FUSED_DF_WHOLE, 0, 0); /* everything after moved */
	else if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		fused_dn_ino(ino, FUSED_DF_META, (uint64_t)off, (uint64_t)len);
	else
		fused_dn_ino(ino, FUSED_DF_META, 0, 0); /* zeros: the size says it */
	if (fused_active()) {
		if (!fh->id) { /* applied here on a handle the peer does not know */
			fused_unnameable(-EBADF);
			return fused_local_reply(req, &r);
		}
		op.fh = fh->id;
		op.flags = (uint32_t)mode;
		op.off = (uint64_t)off;
		op.len = (uint64_t)len;
		if (fstat(fh->fd, &st) == 0)
			fused_op_times(&op, &st);
	}
	commit_after_kill(fh->id, kmode, &op, NULL, 0, req, &r);
}

/*
 * copy_file_range: at most COPY_MAX per call (callers loop on short counts);
 * the peer gets the copied bytes as a write, since the source may be open
 * read-only here and so unknown to the peer.
 */
static __thread char *t_copybuf;

void fused_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct fused_fh *in = (struct fused_fh *)(uintptr_t)fi_in->fh;
	struct fused_fh *out = (struct fused_fh *)(uintptr_t)fi_out->fh;
	struct sk_rmsg_op op = { .type = SK_RMSG_WRITE };
	struct fused_reply r = { .kind = R_WRITE };
	loff_t oi = off_in, oo = off_out;
	int kmode;
	ssize_t n;

	if (!t_copybuf && !(t_copybuf = malloc(COPY_MAX)))
		return (void)fuse_reply_err(req, ENOMEM);
	if (len > COPY_MAX)
		len = COPY_MAX;
	pthread_mutex_lock(&F()->stream_mu);
	n = copy_file_range(in->fd, &oi, out->fd, &oo, len, (unsigned)flags);
	if (n < 0)
		return fused_fail(req, -errno);
	r.written = (size_t)n;
	if (n > 0)
		fused_dn_ino(ino_out, FUSED_DF_META, (uint64_t)off_out, (uint64_t)n);
	kmode = n > 0 ? kill_unflagged(req, ino_out, out->fd) : -1;
	if (fused_active() && n > 0) {
		struct stat st;

		if (!out->id || pread(out->fd, t_copybuf, (size_t)n, off_out) != n) {
			fused_unnameable(-EIO); /* copied here, cannot tell the peer what */
			return fused_local_reply(req, &r);
		}
		op.fh = out->id;
		op.off = (uint64_t)off_out;
		op.data_len = (uint32_t)n;
		if (fstat(out->fd, &st) == 0)
			fused_op_times(&op, &st);
	}
	commit_after_kill(out->id, kmode, &op, t_copybuf, (size_t)n, req, &r);
}

void fused_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
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

void fused_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fused_dir *d = calloc(1, sizeof(*d));
	int fd, ifd = fused_ino_get(ino);

	if (!d || ifd < 0) {
		free(d);
		return (void)fuse_reply_err(req, ifd < 0 ? -ifd : ENOMEM);
	}
	fd = openat(ifd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	fused_ino_put(ino, ifd);
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

/*
 * One listing buffer. With plus (READDIRPLUS, which the kernel asks for when a listing is
 * followed by stats: ls -l, find, backups) each entry comes with its attributes and counts as a
 * lookup, which saves the kernel one LOOKUP request per name. An entry that does not fit is
 * forgotten again; one that cannot be looked up (gone since the listing) goes without
 * attributes, which the kernel then looks up itself if it needs them.
 */
static void dir_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi, bool plus)
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
		struct fuse_entry_param e = { 0 };
		const char *name;
		bool have;
		size_t n;

		if (!d->ent) {
			errno = 0;
			d->ent = readdir(d->dp);
			if (!d->ent)
				break;
		}
		name = d->ent->d_name;
		have = plus && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
		       fused_inode_lookup(F(), ino, name, &e) == 0;
		if (have && fused_times_owed(e.ino, &e.attr)) {
			/* SKFUSED_MTIME=seen: times the peer may not have are not shown here; the
			 * kernel's lookup or getattr of the name, when it comes, gives them first */
			fused_inode_forget(F(), e.ino, 1);
			have = false;
		}
		if (!have) {
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = d->ent->d_ino;
			e.attr.st_mode = (mode_t)d->ent->d_type << 12;
		}
		if (plus)
			n = fuse_add_direntry_plus(req, p, rem, name, &e, d->ent->d_off);
		else
			n = fuse_add_direntry(req, p, rem, name, &e.attr, d->ent->d_off);
		if (n > rem) {
			if (e.ino)
				fused_inode_forget(F(), e.ino, 1);
			break;
		}
		if (e.ino)
			atomic_fetch_add(&F()->readdirplus_entries, 1);
		p += n;
		rem -= n;
		d->off = d->ent->d_off;
		d->ent = NULL;
	}
	fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

void fused_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	dir_read(req, ino, size, off, fi, false);
}

void fused_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	dir_read(req, ino, size, off, fi, true);
}

void fused_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fused_dir *d = (struct fused_dir *)(uintptr_t)fi->fh;

	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

void fused_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fused_dir *d = (struct fused_dir *)(uintptr_t)fi->fh;

	sync_common(req, ino, datasync, NULL, dirfd(d->dp));
}

void fused_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	if (fstatvfs(F()->root_fd, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes ---- */

/*
 * setxattr and removexattr: apply locally under the stream lock, then replicate by path.
 * value is NULL for a removal.
 */
static void xattr_change(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			 size_t size, int flags)
{
	struct sk_rmsg_op op = { .type = value ? SK_RMSG_SETXATTR : SK_RMSG_REMOVEXATTR,
				 .flags = (uint32_t)flags };
	struct fused_reply r = { .kind = R_ERR0 };
	char pp[64];
	int rc, fd = fused_ino_get(ino);

	if (fd < 0)
		return (void)fuse_reply_err(req, -fd);
	if (value && !strcmp(name, FUSED_MOVES_XATTR)) { /* marks a secondary's folder of kept copies */
		fused_ino_put(ino, fd);
		return (void)fuse_reply_err(req, EPERM);
	}
	fused_procpath(pp, sizeof(pp), fd);
	pthread_mutex_lock(&F()->stream_mu);
	if (value && !strcmp(name, "security.capability"))
		fused_inode_cap_changed(F()); /* before: a concurrent "none" is not kept */
	rc = value ? setxattr(pp, name, value, size, flags) : removexattr(pp, name);
	rc = rc < 0 ? -errno : 0;
	if (value && !strcmp(name, "security.capability"))
		fused_inode_cap_changed(F()); /* and after: nor one read before it was set */
	fused_ino_put(ino, fd);
	if (rc < 0)
		return fused_fail(req, rc);
	fused_dn_ino(ino, FUSED_DF_META, 0, 0);
	if (fused_active()) {
		if ((rc = fused_inode_path(F(), ino, fused_tp1, sizeof(fused_tp1))) < 0) {
			if (rc != -ENOENT)
				fused_unnameable(rc);
			return fused_local_reply(req, &r);
		}
		op.path1 = fused_tp1;
		op.path1_len = (uint16_t)rc;
		op.name = name;
		op.name_len = (uint16_t)strlen(name);
		op.data_len = (uint32_t)size;
	}
	fused_commit(&op, value, size, req, &r);
}

void fused_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	if (strlen(name) > SK_RMSG_NAME_MAX || size > SK_RMSG_XATTR_VAL_MAX)
		return (void)fuse_reply_err(req, E2BIG);
	xattr_change(req, ino, name, value ? value : "", size, flags);
}

atomic_uint_fast64_t fused_cap_queries;

/* getxattr and listxattr share FUSE's size protocol: size 0 asks only for the length. */
static void reply_xattr_query(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	bool cap = name && !strcmp(name, "security.capability");
	uint64_t gen = cap ? fused_inode_cap_gen() : 0;
	char pp[64], *buf = NULL;
	int fd, e;
	ssize_t n;

	if (cap)
		atomic_fetch_add(&fused_cap_queries, 1);
	if (cap && fused_inode_nocap(F(), ino))
		return (void)fuse_reply_err(req, ENODATA); /* once per write: no syscall */
	if (size && !(buf = malloc(size)))
		return (void)fuse_reply_err(req, ENOMEM);
	if ((fd = fused_ino_get(ino)) < 0) {
		free(buf);
		return (void)fuse_reply_err(req, -fd);
	}
	fused_procpath(pp, sizeof(pp), fd);
	n = name ? getxattr(pp, name, buf, size) : listxattr(pp, buf, size);
	e = errno;
	fused_ino_put(ino, fd);
	if (cap && n < 0 && e == ENODATA)
		fused_inode_set_nocap(F(), ino, gen);
	if (n < 0)
		fuse_reply_err(req, e);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

void fused_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	reply_xattr_query(req, ino, name, size);
}

void fused_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	reply_xattr_query(req, ino, NULL, size);
}

void fused_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	if (strlen(name) > SK_RMSG_NAME_MAX)
		return (void)fuse_reply_err(req, ENODATA);
	xattr_change(req, ino, name, NULL, 0, 0);
}
