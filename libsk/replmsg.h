/* libsk/replmsg.h: payloads of the replication stream (frame types 16..63), encode and bounded decode. */
#ifndef SK_REPLMSG_H
#define SK_REPLMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lease.h"
#include "proto.h"
#include "sk_types.h"

/*
 * The primary sends one frame per operation, in the order it applied them
 * (the frame seq is the operation's sequence number). The secondary answers
 * with cumulative ACKs and, for resync, with SUMS.
 *
 * Paths are relative to the replicated root: no leading '/', no empty, "." or
 * ".." component, no NUL, at most SK_RMSG_PATH_MAX bytes. "" means the root
 * itself and is accepted only where the type allows it.
 */
enum sk_rmsg_type {
	SK_RMSG_START = 16,    /* P->S: session start: flags = mode | SK_START_F_SURVIVOR,
				* data = the primary's generations (libsk/gen.h, SK_GEN_WIRE_LEN
				* bytes; empty from a primary older than generations)          */
	SK_RMSG_ACK = 17,      /* S->P: struct sk_rmsg_ack                                   */
	SK_RMSG_SUMS = 18,     /* S->P: struct sk_rmsg_sums                                  */
	SK_RMSG_FAILED = 19,   /* S->P: during a resync, an op met an unreconciled part:
				* fh (its handle) or path1 [+ path2]: walk their parents again */

	SK_RMSG_OPEN = 20,     /* fh, path1 (absent with SK_RO_ORPHAN), flags SK_RO_TRUNC    */
	SK_RMSG_CREATE,        /* fh, path1, mode (S_IFREG), uid, gid, flags SK_RO_EXCL|TRUNC;
				* with SK_RO_ASCALLER: done as uid/gid under umask len       */
	SK_RMSG_RELEASE,       /* fh, times of the file (a write carries only its mtime)      */
	SK_RMSG_WRITE,         /* fh, off, data, mtime (the one both sides set after the write) */
	SK_RMSG_SETATTR,       /* fh or path1, valid: MODE UID GID SIZE ATIME MTIME          */
	SK_RMSG_FALLOCATE,     /* fh, flags = fallocate mode, off, len                       */
	SK_RMSG_COPY,          /* fh (in), off, fh2 (out), off2, len                         */
	SK_RMSG_MKDIR,         /* path1, mode, uid, gid                                      */
	SK_RMSG_MKNOD,         /* path1, mode (file type + bits), rdev, uid, gid             */
	SK_RMSG_SYMLINK,       /* path1, data = target, uid, gid                             */
	SK_RMSG_LINK,          /* path1 = existing, path2 = new name                         */
	SK_RMSG_UNLINK,        /* path1                                                      */
	SK_RMSG_RMDIR,         /* path1                                                      */
	SK_RMSG_RENAME,        /* path1 -> path2, flags = RENAME_NOREPLACE | RENAME_EXCHANGE */
	SK_RMSG_SETXATTR,      /* fh or path1, name, data = value, flags = XATTR_*           */
	SK_RMSG_REMOVEXATTR,   /* fh or path1, name                                          */
	SK_RMSG_FSYNC,         /* fh (+ times) or path1, flags SK_RO_DATASYNC                 */

	SK_RMSG_RS_DIR = 40,   /* path1 = directory, data = dirents, flags SK_RO_FIRST|LAST  */
	SK_RMSG_RS_SUMSREQ,    /* path1, fh = request id, off, len (<= SK_RMSG_SUMS_MAX blocks) */
	SK_RMSG_RS_DATA,       /* path1, off, data                                           */
	SK_RMSG_RS_META,       /* path1, valid, data = xattr list (exact set) if SK_RO_XATTRS */
	SK_RMSG_RS_END,        /* fh = request id, len = generation: answered by SUMS (err EAGAIN: redo) */
	SK_RMSG_GEN,           /* S->P: answer to START: the secondary's generations and its
				* verdict (libsk/gen.h sk_gen_decode; refused: the secondary
				* closes the connection after it)                           */
	SK_RMSG_OWNLIST,       /* S->P: after a GEN that accepted the session, when START asked
				* (SK_START_F_OWNLIST): what this copy changed on its own since
				* the shared generation, by path (sk_rmsg_own_*)              */
	SK_RMSG_RS_EMPTY,      /* S->P: answer to an RS_DIR frame that carried a request id (fh):
				* which of its entries are empty regular files here (sk_rmsg_rs_empty) */
	SK_RMSG_RS_MOVE,       /* P->S: incremental resync, before its first listing: the regular
				* file that was at path1 when both copies last agreed is now at
				* path2. The secondary keeps its copy aside, to stand as path2
				* when a listing makes that name (fused/moves.c)               */
	SK_RMSG__MAX
};

/* Bits of sk_rmsg_op.flags (meaning depends on type). */
#define SK_RO_TRUNC 0x1u
#define SK_RO_EXCL 0x2u
#define SK_RO_ORPHAN 0x4u   /* OPEN of a file that is already unlinked on the primary */
#define SK_RO_ASCALLER 0x8u /* CREATE: create as uid/gid with umask = len (request, not result) */
#define SK_RO_DATASYNC 0x1u
#define SK_RO_FIRST 0x1u
#define SK_RO_LAST 0x2u
#define SK_RO_XATTRS 0x1u

/* Bits of sk_rmsg_op.valid: which optional fields are meaningful. */
#define SK_RV_MODE 0x01u
#define SK_RV_UID 0x02u
#define SK_RV_GID 0x04u
#define SK_RV_SIZE 0x08u   /* len is the new size */
#define SK_RV_ATIME 0x10u
#define SK_RV_MTIME 0x20u
#define SK_RV_P1MTIME 0x40u /* p1_mtime: mtime of path1's parent after the op */
#define SK_RV_P2MTIME 0x80u /* p2_mtime: mtime of path2's parent after the op */
#define SK_RV__ALL 0xffu

/* START flags: the mode the stream runs in, enum sk_repl_mode (sk_types.h), in the low bits. */
#define SK_START_MODE_MASK 0x3u
/* The operator chose this primary's copy as the survivor (skctl prim --force): a secondary
 * whose copy diverged or is newer accepts the session and keeps its own changes aside. */
#define SK_START_F_SURVIVOR 0x100u
/* The primary takes the secondary's list of its own changes (SK_RMSG_OWNLIST) after the GEN answer. */
#define SK_START_F_OWNLIST 0x200u

#define SK_RMSG_PATH_MAX 4095
#define SK_RMSG_NAME_MAX 255
#define SK_RMSG_XATTR_VAL_MAX 65536
#define SK_RMSG_DATA_MAX (1u << 20)
#define SK_RMSG_BLOCK 65536u          /* resync checksum block */
#define SK_RMSG_SUM_LEN 16            /* BLAKE2b-128 per block */
#define SK_RMSG_SUMS_MAX 256u         /* blocks per SUMS reply (16 MiB) */
#define SK_RMSG_OP_HDR 128

struct sk_rmsg_ts {
	int64_t sec;
	uint32_t nsec; /* < 1e9 */
};

/*
 * One operation. Payload layout, version 1 (big-endian):
 *   0 fh u64 | 8 fh2 u64 | 16 off u64 | 24 off2 u64 | 32 len u64 | 40 rdev u64
 *  48 mode u32 | 52 uid u32 | 56 gid u32 | 60 flags u32 | 64 valid u32
 *  68 atime (i64 sec, u32 nsec) | 80 mtime | 92 p1_mtime | 104 p2_mtime
 * 116 path1_len u16 | 118 path2_len u16 | 120 name_len u16 | 122 zero u16 | 124 data_len u32
 * 128 path1 | path2 | name | data           (no terminators)
 * Decoded pointers point into the frame; path1/path2/name are NOT NUL-terminated.
 */
struct sk_rmsg_op {
	uint8_t type;
	uint64_t fh, fh2, off, off2, len, rdev;
	uint32_t mode, uid, gid, flags, valid;
	struct sk_rmsg_ts atime, mtime, p1_mtime, p2_mtime;
	const char *path1, *path2, *name;
	uint16_t path1_len, path2_len, name_len;
	const uint8_t *data;
	uint32_t data_len;
};

/*
 * Encode the fixed part and the strings of op into hdr (cap >= SK_RMSG_OP_HDR +
 * path1_len + path2_len + name_len); op->data is NOT copied: the caller sends
 * it as the next iovec. Returns the number of bytes written or -EINVAL /
 * -ENOSPC / -EMSGSIZE. The result always passes sk_rmsg_op_decode.
 */
long sk_rmsg_op_encode(const struct sk_rmsg_op *op, uint8_t *hdr, size_t cap);
/*
 * Decode and validate the payload of a frame of `type` (20..63, START).
 * Returns 0, or -EBADMSG with a static reason in *why_text.
 */
int sk_rmsg_op_decode(uint8_t type, const uint8_t *p, size_t n, struct sk_rmsg_op *op,
		      const char **why_text);

/* True if p[0..len) is an acceptable relative path ("" only if root_ok). */
bool sk_rmsg_path_ok(const char *p, size_t len, bool root_ok);
/* True if p[0..len) is one acceptable path component. */
bool sk_rmsg_name_ok(const char *p, size_t len);

/* ACK, layout v1: applied u64 | err_seq u64 | err i32 (positive errno, 0 if none). 20 bytes. */
struct sk_rmsg_ack {
	uint64_t applied;
	uint64_t err_seq;
	int32_t err;
};
#define SK_RMSG_ACK_LEN 20
void sk_rmsg_ack_encode(const struct sk_rmsg_ack *a, uint8_t *out);
int sk_rmsg_ack_decode(const uint8_t *p, size_t n, struct sk_rmsg_ack *a);

/*
 * SUMS, layout v1: req u64 | off u64 | file_size u64 | err i32 | count u32 | count*16 sums.
 * off is a multiple of SK_RMSG_BLOCK; count <= SK_RMSG_SUMS_MAX. err != 0: no sums (count 0).
 */
struct sk_rmsg_sums {
	uint64_t req;
	uint64_t off;
	uint64_t file_size;
	int32_t err;
	uint32_t count;
	const uint8_t *sums;
};
#define SK_RMSG_SUMS_HDR 32
/* Writes the header into out[SK_RMSG_SUMS_HDR]; the caller appends count*16 bytes. */
void sk_rmsg_sums_encode_hdr(const struct sk_rmsg_sums *s, uint8_t *out);
int sk_rmsg_sums_decode(const uint8_t *p, size_t n, struct sk_rmsg_sums *s);

/*
 * Directory entries of RS_DIR, each: name_len u16 | name | mode u32 | uid u32 | gid u32 |
 * rdev u64 | ino u64 | nlink u32 | target_len u16 | target (symlinks only).
 */
struct sk_rmsg_dirent {
	const char *name;
	uint16_t name_len;
	uint32_t mode, uid, gid, nlink;
	uint64_t rdev, ino;
	const char *target;
	uint16_t target_len;
};
/* Appends one entry to out (cap bytes left); returns bytes written or -ENOSPC / -EINVAL. */
long sk_rmsg_dirent_put(const struct sk_rmsg_dirent *e, uint8_t *out, size_t cap);
/* Next entry from r: 1 with *e set, 0 at the clean end, -EBADMSG on a bad entry. */
int sk_rmsg_dirent_next(struct sk_rd *r, struct sk_rmsg_dirent *e);

/*
 * ---- RS_DIR with SK_RO_DMETA (added for the first-sync scale fix) ----
 * Each entry is a dirent as above followed by: flags u32 | atime (i64 sec, u32 nsec) |
 * mtime (i64 sec, u32 nsec); 28 bytes. SK_RD_COMPLETE (regular files only): the file is
 * empty, has one link and no xattrs, so this entry alone makes it whole on the peer (owner
 * and mode from the dirent, times from here) and no RS_META follows for it. Without the
 * flag the times are informative and the entry is handled as a plain dirent.
 */
#define SK_RO_DMETA 0x4u     /* RS_DIR flag: entries carry struct sk_rmsg_dmeta */
/*
 * RS_DIR flag, on a listing's first frame (added for the incremental resync): the primary
 * lists only this directory's names and sends data only for what its dirty tracker holds.
 * The secondary answers FAILED (path1 == path2 == the name) for each regular file the
 * listing made it remake without data the tracker may not hold (a name whose inode also
 * stood for another, a hard link of a group it has not met): the primary sends it whole.
 */
#define SK_RO_SHALLOW 0x8u
#define SK_RD_COMPLETE 0x1u
#define SK_RMSG_DMETA_LEN 28
struct sk_rmsg_dmeta {
	uint32_t flags;
	struct sk_rmsg_ts atime, mtime;
};
/* Appends one entry with its metadata; bytes written or -ENOSPC / -EINVAL. */
long sk_rmsg_dirent_meta_put(const struct sk_rmsg_dirent *e, const struct sk_rmsg_dmeta *m,
			     uint8_t *out, size_t cap);
/* Next entry with its metadata: 1, 0 at the clean end, -EBADMSG on a bad entry. */
int sk_rmsg_dirent_meta_next(struct sk_rd *r, struct sk_rmsg_dirent *e, struct sk_rmsg_dmeta *m);

/*
 * ---- RS_EMPTY (added for the first sync of trees of small files) ----
 * An RS_DIR frame with fh != 0 (a request id; older secondaries ignore it) asks the secondary to
 * answer, once it applied the frame and before it acknowledges it, with
 *   0 req u64 (the frame's fh) | 8 count u32 (entries of the frame, at most 64 counted) |
 *   12 bits u64 (bit i: entry i of the frame is a regular file of size 0 here)
 * 20 bytes. Bits at or past count are refused. The primary then sends such a file's data whole
 * without asking for its block checksums.
 */
#define SK_RMSG_RS_EMPTY_LEN 20
#define SK_RMSG_RS_EMPTY_ENTRIES 64
struct sk_rmsg_rs_empty {
	uint64_t req;
	uint32_t count;
	uint64_t bits;
};
void sk_rmsg_rs_empty_encode(const struct sk_rmsg_rs_empty *a, uint8_t out[SK_RMSG_RS_EMPTY_LEN]);
/* 0, or -EBADMSG (length, request id 0, count above 64, a bit at or past count). */
int sk_rmsg_rs_empty_decode(const uint8_t *p, size_t n, struct sk_rmsg_rs_empty *a);

/* xattr list of RS_META, each: name_len u8 | name | value_len u32 | value. */
long sk_rmsg_xattr_put(const char *name, size_t name_len, const void *val, size_t val_len,
		       uint8_t *out, size_t cap);
int sk_rmsg_xattr_next(struct sk_rd *r, const char **name, uint8_t *name_len,
		       const uint8_t **val, uint32_t *val_len);

/*
 * OWNLIST payload, version 1 (big-endian): what the secondary's copy changed on its own since
 * the generation it shares with the primary (frames in flight when it stopped being primary,
 * changes made while it was alone), so an incremental resync covers them too.
 *   0 flags u32 (SK_OWN_F_*) | 4 count u32 | 8 count entries, each:
 *   kind u8 (SK_OWN_FILE, SK_OWN_DIR: its names changed, SK_OWN_WALK: its subtree is unknown) |
 *   path_len u16 | path (the rules of paths; "" (the root) for directories only)
 * Nothing may follow the last entry. SK_OWN_F_LAST: the list ends with this frame.
 * SK_OWN_F_UNKNOWN: this copy cannot say what it changed (tracking lost, past its bounds): the
 * primary runs the full resync.
 */
#define SK_OWN_FILE 1
#define SK_OWN_DIR 2
#define SK_OWN_WALK 3
#define SK_OWN_F_LAST 0x1u
#define SK_OWN_F_UNKNOWN 0x2u
#define SK_OWN_HDR 8
#define SK_OWN_FRAME_MAX (256u << 10) /* payload bytes per OWNLIST frame */
/* Header into out[SK_OWN_HDR]. */
void sk_rmsg_own_hdr(uint32_t flags, uint32_t count, uint8_t *out);
/* Appends one entry; bytes written, -ENOSPC (cap), -EINVAL (kind or path). */
long sk_rmsg_own_put(uint8_t kind, const char *path, size_t len, uint8_t *out, size_t cap);
/*
 * Checks a whole payload (header, every entry, nothing after the last) and reads its header:
 * 0, or -EBADMSG. Then sk_rmsg_own_next gives the entries: 1, 0 at the end.
 */
int sk_rmsg_own_decode(const uint8_t *p, size_t n, uint32_t *flags, uint32_t *count, struct sk_rd *r);
int sk_rmsg_own_next(struct sk_rd *r, uint8_t *kind, const char **path, uint16_t *len);

/* Control socket request (one JSON line, at most SK_RCTL_LINE_MAX bytes). */
#define SK_RCTL_LINE_MAX 4096
/* SURVIVOR (primary): the operator chose this copy over a diverged or newer peer (skctl prim --force).
 * LEASE: the agent's lease deadline for the fence (lease.h: {"cmd":"lease","valid_ms":N[,"at_ms":T]}). */
enum sk_rctl_cmd { SK_RCTL_STATUS = 1, SK_RCTL_ROLE = 2, SK_RCTL_SURVIVOR = 3, SK_RCTL_LEASE = 4 };
enum sk_rctl_role { SK_RCTL_PRIMARY = 1, SK_RCTL_SECONDARY = 2 };
struct sk_rctl_req {
	enum sk_rctl_cmd cmd;
	enum sk_rctl_role role;   /* ROLE */
	struct sk_lease_ctl lease; /* LEASE */
};
/* Parse one request line (without the newline). 0, or -EINVAL with err[] saying what is wrong. */
int sk_rctl_parse(const char *line, size_t len, struct sk_rctl_req *req, char *err, size_t errlen);

#endif
