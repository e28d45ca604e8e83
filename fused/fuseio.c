/* fused/fuseio.c: the primary's /dev/fuse reads and replies (libfuse custom io), for FUSE_HANDLE_KILLPRIV_V2. */
#include "ops.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fault.h"
#include "log.h"

/*
 * Why: the kernel asks a FUSE filesystem for "security.capability" before every
 * write (a whole round trip: two wake-ups of the writer and of a worker) unless
 * the filesystem kills set-id bits and capabilities itself, which it says with
 * FUSE_HANDLE_KILLPRIV_V2 in its INIT reply (the kernel then sets SB_NOSEC and
 * asks once per inode). libfuse 3.14 neither offers that flag nor passes on the
 * kill flags of requests, so both are done here, on the raw bytes: the INIT
 * request tells whether the kernel offers it, the INIT reply gets the flag, and
 * the WRITE / SETATTR / OPEN / CREATE requests' kill flags are kept for the
 * thread that reads them, which is the thread that runs their operation (the
 * multi-threaded loop reads and processes a request in the same worker).
 * What skfused then owes (file.c, ops.c): clear S_ISUID, and S_ISGID when the
 * group may execute, on a write, truncate or O_TRUNC open whose request says so
 * (the caller lacks CAP_FSETID), and replicate the mode. The backing file
 * system drops security.capability on write, truncate and chown by itself, on
 * both nodes, and clears the set-id bits on chown (skfused's chown replicates the
 * resulting mode).
 */
static _Atomic uint64_t init_unique; /* the INIT request whose reply gets the flag; 0 none */
static bool want_v2 = true;
atomic_bool fused_killpriv_v2;
static __thread bool t_kill;
static __thread uint64_t t_read_unique; /* the READ request this worker is answering; 0 none */

/*
 * Requests read and not answered yet, for the agent's step-down (fused_fuse_requests): a kill
 * answers each of them with a connection error. Every request the kernel waits an answer for
 * is counted when read; every answer (io_writev with a request's unique, io_splice_send) once.
 */
static _Atomic uint64_t req_read, req_answered;
static struct fuse_session *io_se; /* set once the hook is in */

bool fused_req_kill_suidgid(void)
{
	return t_kill;
}

/* A little-endian-agnostic read of a u32 at off of the request's argument, if it is there. */
static bool arg_u32(const uint8_t *arg, size_t al, size_t off, uint32_t *v)
{
	if (al < off + sizeof(*v))
		return false;
	memcpy(v, arg + off, sizeof(*v));
	return true;
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);
	struct fuse_in_header h;
	const uint8_t *arg = (const uint8_t *)buf + sizeof(h);
	size_t al;
	uint32_t v = 0;
	int e = errno;

	(void)userdata;
	t_kill = false;
	t_read_unique = 0;
	if (n < (ssize_t)sizeof(h))
		return n;
	memcpy(&h, buf, sizeof(h));
	/* the kernel waits for no answer to these */
	if (h.opcode != FUSE_FORGET && h.opcode != FUSE_BATCH_FORGET && h.opcode != FUSE_INTERRUPT &&
	    h.opcode != FUSE_NOTIFY_REPLY)
		atomic_fetch_add(&req_read, 1);
	al = (size_t)n - sizeof(h);
	switch (h.opcode) {
	case FUSE_INIT:
		if (want_v2 && arg_u32(arg, al, offsetof(struct fuse_init_in, flags), &v) &&
		    (v & FUSE_HANDLE_KILLPRIV_V2))
			atomic_store(&init_unique, h.unique);
		break;
	case FUSE_READ: /* its spliced reply comes from this thread (fused_op_read) */
		t_read_unique = h.unique;
		break;
	case FUSE_WRITE:
		t_kill = arg_u32(arg, al, offsetof(struct fuse_write_in, write_flags), &v) &&
			 (v & FUSE_WRITE_KILL_SUIDGID);
		break;
	case FUSE_SETATTR:
		t_kill = arg_u32(arg, al, offsetof(struct fuse_setattr_in, valid), &v) &&
			 (v & FATTR_KILL_SUIDGID);
		break;
	case FUSE_OPEN:
		t_kill = arg_u32(arg, al, offsetof(struct fuse_open_in, open_flags), &v) &&
			 (v & FUSE_OPEN_KILL_SUIDGID);
		break;
	case FUSE_CREATE:
		t_kill = arg_u32(arg, al, offsetof(struct fuse_create_in, open_flags), &v) &&
			 (v & FUSE_OPEN_KILL_SUIDGID);
		break;
	default:
		break;
	}
	errno = e;
	return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	uint64_t u = atomic_load(&init_unique);

	(void)userdata;
	if (count >= 1 && iov[0].iov_len >= sizeof(struct fuse_out_header)) {
		struct fuse_out_header o;
		size_t off = offsetof(struct fuse_init_out, flags);
		uint32_t fl;

		memcpy(&o, iov[0].iov_base, sizeof(o));
		if (o.unique) /* 0: a notification, not an answer */
			atomic_fetch_add(&req_answered, 1);
		if (u && count >= 2 && o.unique == u && o.error == 0 && iov[1].iov_len >= off + sizeof(fl)) {
			memcpy(&fl, (uint8_t *)iov[1].iov_base + off, sizeof(fl));
			/* v1 would make the kernel expect kills on every write, without telling us when */
			fl = (fl & ~(uint32_t)FUSE_HANDLE_KILLPRIV) | FUSE_HANDLE_KILLPRIV_V2;
			memcpy((uint8_t *)iov[1].iov_base + off, &fl, sizeof(fl));
			atomic_store(&init_unique, 0);
			atomic_store(&fused_killpriv_v2, true);
		}
	}
	return writev(fd, iov, count);
}

/*
 * A spliced reply the kernel refuses must still be answered. libfuse frees the request when this
 * splice fails, without replying, so the application's read() would wait for ever: seen in CI
 * runs (TSan, mirror-equal, after minutes of nothing but reads of the mount), "fuse: splice from
 * pipe: Invalid argument", cause not found; then in 1 of 34 local TSan mirror-equal runs, a
 * 90775-byte reply (a read cut short by the end of the file) with the pipe empty after the
 * refusal. The second CI failure counted nothing: either the pipe held
 * less than a header (the kernel takes a reply's buffers before it checks the header's length
 * and error, and refuses a wrong one before it looks the request up), or the EIO answer under the
 * pipe's header failed. So the reply still in the pipe goes by write() when it is all there;
 * otherwise the request is answered with EIO, under the unique this worker read it with
 * (t_read_unique), or the pipe's if it has none. ENOENT needs neither:
 * the kernel no longer waits for that request (interrupted). When the kernel took the reply and
 * then failed it (it had found the request), it already answered EIO itself and our answer gets
 * ENOENT: harmless. Counted in the status (read_splice_*).
 */
_Atomic uint64_t fused_splice_copied, fused_splice_eio;

static ssize_t splice_refused(int fdin, int fdout, size_t len, int err)
{
	struct fuse_out_header oh = { 0 }, ph;
	bool ended;
	int avail = 0;
	uint8_t *b = NULL;
	ssize_t got = 0;

	if (ioctl(fdin, FIONREAD, &avail) < 0)
		avail = 0;
	if (avail > 0 && !(b = malloc((size_t)avail)))
		return -1; /* libfuse empties the pipe */
	while (got < avail) {
		ssize_t n = read(fdin, b + got, (size_t)(avail - got));

		if (n <= 0)
			break;
		got += n;
	}
	if (got > 0 && fused_fault(FUSED_FAULT_READ_SPLICE_SHORT))
		got--;
	if (got >= (ssize_t)sizeof(oh))
		memcpy(&oh, b, sizeof(oh));
	if ((size_t)got == len && oh.len == len && (!t_read_unique || oh.unique == t_read_unique) &&
	    write(fdout, b, len) == (ssize_t)len) {
		free(b);
		if (atomic_fetch_add(&fused_splice_copied, 1) == 0)
			sk_warn("the kernel refused a read's reply by splice (%s; %zu bytes, unique %llu): "
				"sent by write() (status read_splice_copied counts them)", strerror(err),
				len, (unsigned long long)oh.unique);
		return (ssize_t)len;
	}
	free(b);
	ph = oh;
	if (t_read_unique)
		oh.unique = t_read_unique;
	if (!oh.unique)
		return -1; /* which request it answers is unknown (never a READ of ours) */
	oh.len = sizeof(oh);
	oh.error = -EIO;
	ended = write(fdout, &oh, sizeof(oh)) != (ssize_t)sizeof(oh);
	if (ended && errno != ENOENT)
		return -1;
	if (atomic_fetch_add(&fused_splice_eio, 1) == 0)
		sk_warn("a read's reply refused by splice (%s) could not be sent (%zd of %zu bytes "
			"left in the pipe, its header: len %u error %d unique %llu; the request read: "
			"%llu): %s (status read_splice_eio counts them)",
			strerror(err), got, len, ph.len, ph.error, (unsigned long long)ph.unique,
			(unsigned long long)t_read_unique,
			ended ? "the kernel had ended the request itself" : "answered EIO");
	return (ssize_t)len;
}

/* Reads away what the pipe holds (a test's stand-in for the kernel taking it). */
static void drain(int fd)
{
	uint8_t b[4096];
	int avail = 0;

	for (int i = 0; i < 1024 && ioctl(fd, FIONREAD, &avail) == 0 && avail > 0; i++)
		if (read(fd, b, sizeof(b)) <= 0)
			break;
}

/*
 * Data replies (READ: fused_op_read's fuse_reply_data from the backing fd) go by splice, as
 * without a custom io: libfuse offers FUSE_CAP_SPLICE_WRITE only to a custom io that has this.
 * Without it every read reply was copied into a malloc'd buffer of its size (up to 1 MiB),
 * which each worker thread's arena then kept (about 2 MiB of RSS per worker after a cold read).
 * Never an INIT reply (io_writev), so nothing here needs patching.
 */
static ssize_t io_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
			      unsigned int flags, void *userdata)
{
	ssize_t n;

	(void)userdata;
	/* one call per spliced answer; when it fails libfuse drops the request unanswered */
	atomic_fetch_add(&req_answered, 1);
	if (fused_fault(FUSED_FAULT_READ_SPLICE)) {
		if (fused_fault(FUSED_FAULT_READ_SPLICE_EMPTY))
			drain(fdin); /* as the kernel does when it refuses a header it took */
		n = -1;
		errno = EINVAL;
	} else {
		n = splice(fdin, offin, fdout, offout, len, flags);
	}
	if (n >= 0 || errno == ENOENT || offin || offout)
		return n;
	return splice_refused(fdin, fdout, len, errno);
}

int fused_fuseio_attach(struct fuse_session *se)
{
	static const struct fuse_custom_io io = { .read = io_read, .writev = io_writev,
						  .splice_send = io_splice_send };
	const char *env = getenv("SKFUSED_KILLPRIV_V2");
	int rc;

	want_v2 = !(env && !strcmp(env, "0"));
	rc = fuse_session_custom_io(se, &io, fuse_session_fd(se));
	if (rc == 0)
		io_se = se;
	else
		sk_warn("cannot hook the FUSE device (%d): the kernel keeps asking for "
			"security.capability before every write", rc);
	return rc;
}

bool fused_fuse_requests(int64_t *open, bool *queued)
{
	struct pollfd p = { .fd = -1, .events = POLLIN };
	uint64_t answered;

	if (!io_se)
		return false;
	/* the queue before the counts: a request taken off it meanwhile is then counted read
	 * (but for the instant between the worker's read() and its count) */
	p.fd = fuse_session_fd(io_se);
	*queued = poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
	/* answered before read: an answer in between makes the figure too high, never too low */
	answered = atomic_load(&req_answered);
	*open = (int64_t)(atomic_load(&req_read) - answered);
	return true;
}
