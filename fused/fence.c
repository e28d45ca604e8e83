/* fused/fence.c: the lease fence: once the agent gave a lease, modifying operations past its end get EROFS. */
#include "fence.h"
#include "fused.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lease.h"
#include "log.h"

/*
 * Why here and not in the agent: the agent may be SIGSTOPped, starved or dead while the lease
 * witness grants the lease to the other node. skfused checks the deadline itself, against its
 * own monotonic clock, at the start of every operation that changes the tree, so a writable
 * primary cannot outlive its lease whatever happens to the agent.
 *
 * Not armed (deadline 0) until the first "lease" command or SKFUSED_LEASE_UNTIL_MS_<module id>
 * in the environment at start (the agent's deadline on the monotonic clock, so a primary
 * started by an agent that then stops is fenced too): without a lease witness skfused behaves as it always did. Once armed it
 * stays armed; a later command moves the deadline (forward or back; 0 fences at once).
 *
 * The hook is a copy of fused_ops whose modifying entries check first, then call the real
 * operation: no operation body changes, and a new modifying operation added to fused_ops
 * must be added to the list below (reads, lookups, release and fsync stay open).
 */

static _Atomic uint64_t fence_until_us; /* 0: not armed */
static atomic_uint_fast64_t fence_refused;
static struct fuse_lowlevel_ops wrapped;

static uint64_t now_us(void)
{
	return sk_now_us();
}

bool fused_fence_armed(void)
{
	return atomic_load(&fence_until_us) != 0;
}

/* 0, or -EROFS (counted, logged once per refusal burst) past the lease. */
int fused_fence_check(void)
{
	uint64_t until = atomic_load(&fence_until_us);
	static _Atomic uint64_t logged_for;

	if (!until || now_us() < until)
		return 0;
	if (atomic_fetch_add(&fence_refused, 1) == 0 || atomic_exchange(&logged_for, until) != until)
		sk_warn("lease expired %llu ms ago: writes refused (EROFS) until the agent renews it",
			(unsigned long long)((now_us() - until) / 1000));
	return -EROFS;
}

/*
 * Operations already waiting for the peer's ack when the lease ends would only be answered when
 * the peer acks or the latency budget runs out; so at the deadline the watcher drops the peer
 * (as a lost peer: pending operations are answered at once, and fused_reply_send turns them
 * into EROFS). The peer's copy is marked outdated: it misses what was applied here and never
 * acknowledged.
 */
static void *watcher(void *arg)
{
	struct fused *f = arg;

	while (!atomic_load(&f->stop)) {
		uint64_t until = atomic_load(&fence_until_us);

		if (until && now_us() >= until && atomic_load(&f->connected))
			fused_peer_lost(f, atomic_load(&f->conn_gen), "lease ended: fenced");
		usleep(10000);
	}
	return NULL;
}

static void watcher_start(void)
{
	static atomic_bool started;
	pthread_t t;

	if (!fused_ctx || fused_ctx->role != FUSED_PRIMARY || atomic_exchange(&started, true))
		return;
	if (pthread_create(&t, NULL, watcher, fused_ctx) == 0)
		pthread_detach(t);
	else
		sk_warn("lease fence: no watcher thread: operations waiting for the peer when the "
			"lease ends are refused only at the latency budget");
}

void fused_fence_set(uint32_t valid_ms, bool has_at, uint64_t at_ms)
{
	uint64_t now = now_us(), from = now;

	/* measured from when the sender computed it, never later than now */
	if (has_at && at_ms * 1000 < now)
		from = at_ms * 1000;
	atomic_store(&fence_until_us, (from + (uint64_t)valid_ms * 1000) | 1); /* never 0 once armed */
	watcher_start();
}

/* Milliseconds left (negative: expired), for the status; 0 if not armed. */
int64_t fused_fence_left_ms(void)
{
	uint64_t until = atomic_load(&fence_until_us);

	if (!until)
		return 0;
	return ((int64_t)until - (int64_t)now_us()) / 1000;
}

uint64_t fused_fence_refused(void)
{
	return atomic_load(&fence_refused);
}

#define GUARD(req)                                                                    \
	do {                                                                          \
		int rc_ = fused_fence_check();                                        \
		if (rc_ < 0)                                                          \
			return (void)fuse_reply_err(req, -rc_);                       \
	} while (0)

static void f_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		      struct fuse_file_info *fi)
{
	GUARD(req);
	fused_ops.setattr(req, ino, attr, to_set, fi);
}

static void f_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	GUARD(req);
	fused_ops.mknod(req, parent, name, mode, rdev);
}

static void f_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	GUARD(req);
	fused_ops.mkdir(req, parent, name, mode);
}

static void f_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	GUARD(req);
	fused_ops.symlink(req, link, parent, name);
}

static void f_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	GUARD(req);
	fused_ops.link(req, ino, parent, name);
}

static void f_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	GUARD(req);
	fused_ops.unlink(req, parent, name);
}

static void f_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	GUARD(req);
	fused_ops.rmdir(req, parent, name);
}

static void f_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		     const char *newname, unsigned int flags)
{
	GUARD(req);
	fused_ops.rename(req, parent, name, newparent, newname, flags);
}

static void f_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* as a read-only mount: opening for writing (or truncating) is refused, reading is not */
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		GUARD(req);
	fused_ops.open(req, ino, fi);
}

static void f_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     struct fuse_file_info *fi)
{
	GUARD(req);
	fused_ops.create(req, parent, name, mode, fi);
}

static void f_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	GUARD(req);
	fused_ops.write(req, ino, buf, size, off, fi);
}

static void f_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			struct fuse_file_info *fi)
{
	GUARD(req);
	fused_ops.fallocate(req, ino, mode, off, len, fi);
}

static void f_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			      struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			      struct fuse_file_info *fi_out, size_t len, int flags)
{
	GUARD(req);
	fused_ops.copy_file_range(req, ino_in, off_in, fi_in, ino_out, off_out, fi_out, len, flags);
}

static void f_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		       size_t size, int flags)
{
	GUARD(req);
	fused_ops.setxattr(req, ino, name, value, size, flags);
}

static void f_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	GUARD(req);
	fused_ops.removexattr(req, ino, name);
}

const struct fuse_lowlevel_ops *fused_fence_ops(uint32_t module_id)
{
	char name[64];
	const char *env;

	/* the agent keeps SKFUSED_LEASE_UNTIL_MS_<module> (its monotonic deadline, absolute) in
	 * its environment, so a primary it starts is fenced from the first request even if the
	 * agent stops before its first lease command */
	snprintf(name, sizeof(name), "SKFUSED_LEASE_UNTIL_MS_%u", module_id);
	env = getenv(name);
	wrapped = fused_ops;
	/* only operations fused_ops implements are wrapped (a NULL entry stays ENOSYS) */
	if (fused_ops.setattr) wrapped.setattr = f_setattr;
	if (fused_ops.mknod) wrapped.mknod = f_mknod;
	if (fused_ops.mkdir) wrapped.mkdir = f_mkdir;
	if (fused_ops.symlink) wrapped.symlink = f_symlink;
	if (fused_ops.link) wrapped.link = f_link;
	if (fused_ops.unlink) wrapped.unlink = f_unlink;
	if (fused_ops.rmdir) wrapped.rmdir = f_rmdir;
	if (fused_ops.rename) wrapped.rename = f_rename;
	if (fused_ops.open) wrapped.open = f_open;
	if (fused_ops.create) wrapped.create = f_create;
	if (fused_ops.write) wrapped.write = f_write;
	if (fused_ops.fallocate) wrapped.fallocate = f_fallocate;
	if (fused_ops.copy_file_range) wrapped.copy_file_range = f_copy_file_range;
	if (fused_ops.setxattr) wrapped.setxattr = f_setxattr;
	if (fused_ops.removexattr) wrapped.removexattr = f_removexattr;
	if (env && env[0]) {
		char *end;
		unsigned long long until = strtoull(env, &end, 10);
		uint64_t now_ms = now_us() / 1000;

		if (*end || env[0] == '-') {
			sk_warn("%s=%.24s is not a number: the fence is armed at 0 (writes refused "
				"until the agent gives a lease)", name, env);
			until = 0;
		}
		fused_fence_set(until > now_ms ? (uint32_t)(until - now_ms > SK_LEASE_VALID_MAX ?
					SK_LEASE_VALID_MAX : until - now_ms) : 0, false, 0);
		sk_info("lease fence armed: writes allowed for %lld ms unless the agent renews",
			(long long)fused_fence_left_ms());
	}
	return &wrapped;
}
