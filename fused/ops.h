/* fused/ops.h: what ops.c (attributes, namespace) and file.c (files, directories, xattrs) share. */
#ifndef FUSED_OPS_H
#define FUSED_OPS_H

#include "fused.h"

/* Per-thread scratch: paths of the operation being replicated. */
extern __thread char fused_tp1[PATH_MAX];
extern __thread char fused_tp2[PATH_MAX];

void fused_procpath(char *buf, size_t cap, int fd);
/* The inode's O_PATH fd (-errno), lent until fused_ino_put (fused.h, lock-order comment). */
int fused_ino_get(fuse_ino_t ino);
void fused_ino_put(fuse_ino_t ino, int fd);
/* New inodes belong to the caller (fsuid/fsgid/umask of this thread). */
void fused_creds_set(fuse_req_t req);
void fused_creds_reset(void);
void fused_op_times(struct sk_rmsg_op *op, const struct stat *st);
void fused_op_p1(struct sk_rmsg_op *op, int dirfd);
void fused_op_p2(struct sk_rmsg_op *op, int dirfd);
/* parent's path + "/" + name into buf; returns length or -errno. */
int fused_child_path(fuse_ino_t parent, const char *name, char *buf);
bool fused_active(void);
/* A local apply that cannot be named for the peer: mark it outdated (stream_mu held). */
void fused_unnameable(int rc);
/* Finish an operation applied under stream_mu: replicate, unlock, reply. */
void fused_commit(struct sk_rmsg_op *op, const void *data, size_t dlen, fuse_req_t req,
		  const struct fused_reply *r);
/* Unlock stream_mu and reply without replicating. */
void fused_local_reply(fuse_req_t req, const struct fused_reply *r);
/* Unlock stream_mu and reply an error (rc = -errno). */
void fused_fail(fuse_req_t req, int rc);

/* After a local create of parent/name: look it up and fill the replicated op's common fields. */
int fused_created(fuse_ino_t parent, const char *name, struct sk_rmsg_op *op,
		  struct fused_reply *r);

/*
 * inode.c: the kernel asks for security.capability before every write (to
 * decide whether the write must drop it); the answer "none" is kept per node
 * until a security.capability is set through the mount. The backing file
 * system drops a capability on write by itself in any case.
 */
uint64_t fused_inode_cap_gen(void);
bool fused_inode_nocap(struct fused *f, fuse_ino_t ino);
void fused_inode_set_nocap(struct fused *f, fuse_ino_t ino, uint64_t gen);
void fused_inode_cap_changed(struct fused *f);

/*
 * SKFUSED_MTIME=seen (ops.c, fused_times_give): a write sends no mtime and sets none on
 * either node; the inode owes the peer its times until a reply that shows them to the
 * application (GETATTR, LINK) has given them; a LOOKUP gives them with a timeout of 0,
 * a READDIRPLUS leaves them out. Owed: set it. Take: whether it is owed, cleared if clear.
 */
extern bool fused_mtime_seen;
void fused_inode_times_owed(struct fused *f, fuse_ino_t ino);
bool fused_inode_times_take(struct fused *f, fuse_ino_t ino, bool clear);
/*
 * stream_mu held. If the application is about to see the times of ino (fd: its fd; st: its
 * fstat, a regular file, stat'ed again here and in r's attributes) and the peer may not have
 * them, send them (a SETATTR of atime and mtime, by path). req != NULL: the frame replies r
 * once acknowledged and 1 is returned (the caller replies nothing); 0 otherwise (nothing
 * owed, alone, or req NULL: the caller's own frame, sent after this one, is what its reply
 * waits for). fused_times_frames counts the frames (status "times_frames").
 */
extern _Atomic uint64_t fused_times_frames;
/* fuseio.c: spliced read replies the kernel refused, sent by write() instead, or answered EIO */
extern _Atomic uint64_t fused_splice_copied, fused_splice_eio;
int fused_times_give(fuse_ino_t ino, int fd, struct stat *st, fuse_req_t req,
		     struct fused_reply *r);
/*
 * stream_mu held, around a frame of the file's current times that another path sends (a
 * RELEASE): hold before it (clears what ino owes; returns what to give back if nothing is
 * sent), sent after it.
 */
uint64_t fused_times_hold(fuse_ino_t ino);
void fused_times_sent(void);
/* Without the stream lock: whether fused_times_give may have something to send for ino. */
bool fused_times_owed(fuse_ino_t ino, const struct stat *st);

/*
 * fuseio.c: /dev/fuse through libfuse's custom io, to answer INIT with FUSE_HANDLE_KILLPRIV_V2
 * (SKFUSED_KILLPRIV_V2=0: not offered) and keep each request's "kill set-id bits" flag.
 */
extern atomic_bool fused_killpriv_v2; /* negotiated with the kernel */
extern atomic_uint_fast64_t fused_cap_queries; /* security.capability GETXATTRs (file.c) */
/* The request this thread runs (WRITE, SETATTR, OPEN, CREATE) asked to kill set-id bits. */
bool fused_req_kill_suidgid(void);
/*
 * file.c, stream_mu held: if the request asked for it, clear S_ISUID (and S_ISGID when the
 * group may execute or the caller is not in the file's group) of the regular file fd (any fd,
 * O_PATH too) here and stage its metadata as changed; returns the new mode (07777 bits) for
 * the caller to replicate, -1 if unchanged.
 */
int fused_kill_suidgid(fuse_req_t req, fuse_ino_t ino, int fd);

/* file.c */
void fused_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fused_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi);
void fused_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi);
void fused_op_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
		     struct fuse_file_info *fi);
void fused_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fused_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fused_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi);
void fused_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags);
void fused_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi);
void fused_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fused_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi);
void fused_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi);
void fused_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fused_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fused_op_statfs(fuse_req_t req, fuse_ino_t ino);
void fused_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags);
void fused_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fused_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fused_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

#endif
