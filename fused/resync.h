/* fused/resync.h: what the primary's resync (resync.c full walk, rs_incr.c incremental) and its dirty-tracking glue (ops.c, file.c, inode.c, repl.c) share. */
#ifndef FUSED_RESYNC_H
#define FUSED_RESYNC_H

#include "dirty.h"
#include "fused.h"

/* The primary's tracker (main.c opens it before the mount); NULL on the secondary. */
extern struct fused_dirty *fused_dirty_g;
/* --resync-rate: resync data bytes per second, 0 unlimited. */
extern uint64_t fused_resync_rate;
extern bool fused_resync_incremental; /* resync what the tracker holds (default; SKFUSED_RESYNC_INCREMENTAL=0: full) */

/* ---- inode.c: file handles ---- */
/*
 * The handle of node ino as the inode table keeps it, the handle of the directory of its
 * last name (non-directories; empty if unknown) and whether it is a directory.
 * -ENOTSUP: no file handles here; -EXDEV: another file system inside the tree.
 */
int fused_inode_dh(struct fused *f, fuse_ino_t ino, struct fused_dh *out, struct fused_dh *parent,
		   bool *is_dir);
/* The handle of any fd on the backing tree (name_to_handle_at). */
int fused_fd_dh(struct fused *f, int fd, struct fused_dh *out);

/* ---- ops.c: an operation's changes, staged per thread, recorded before its reply ---- */
/* What node ino changed: flags FUSED_DF_*, and the extent [off, off + len) if len. */
void fused_dn_ino(fuse_ino_t ino, uint32_t flags, uint64_t off, uint64_t len);
/* Same for the object dirfd/name (after a rename or link). */
void fused_dn_at(int dirfd, const char *name, uint32_t flags);
/* Same for an explicit handle (a directory's). */
void fused_dn_dh(const struct fused_dh *h, uint32_t flags);
/* Around the replication of the operation (stream_mu held): was it sent, as which frame. */
struct fused_dn_mark {
	uint64_t gen, seq;
};
void fused_dn_begin(struct fused_dn_mark *m);
/* Records what was staged (m NULL: nothing was sent). Before the reply. */
void fused_dn_end(const struct fused_dn_mark *m);

/* ---- resync kinds and counters (status) ---- */
enum fused_rs_kind { FUSED_RS_NONE = 0, FUSED_RS_FULL = 1, FUSED_RS_INCR = 2 };
struct fused_rs_stats {
	atomic_int kind;            /* of the last resync started */
	atomic_uint_fast64_t sent;  /* data bytes sent by it (RS_DATA payloads) */
	atomic_uint_fast64_t read;  /* bytes it read from this node's disk */
	atomic_uint_fast64_t meta;  /* metadata frames it sent */
	atomic_uint_fast64_t dirs;  /* directory listings it sent */
	atomic_int resumed;         /* it started with entries a previous attempt had taken */
	atomic_uint_fast64_t whole; /* full: files sent whole, no checksum request (rs_empty.c) */
	atomic_uint_fast64_t asked; /* full: checksum requests */
	atomic_uint_fast64_t asked_peak; /* full: most checksum requests in flight at once (rs_sums.c) */
};
extern struct fused_rs_stats fused_rs_stats;
const char *fused_rs_kind_str(int kind);

/* ---- resync.c: the walker both kinds use ---- */
struct walker {
	struct fused *f;
	uint64_t gen;
	bool redo;         /* walking again what raced with live operations */
	bool shallow;      /* incremental: list a directory, do not visit its entries */
	uint8_t *buf;      /* CHUNK */
	uint8_t *blob;     /* frame payload scratch (dirents, xattrs) */
	uint8_t sums[SK_RMSG_SUMS_MAX * SK_RMSG_SUM_LEN];
	char path[PATH_MAX];
	uint64_t t0_us, paced_bytes; /* --resync-rate */
	struct fused_rs_links *links; /* incremental: multiply linked names listed (rs_links.c) */
};
#define FUSED_RS_CHUNK (256u << 10)
/* A file tracked whole from this size is compared with the peer's copy by block checksums (rs_files.c). */
#define FUSED_WHOLE_SUMS_MIN ((uint64_t)1 << 20)
bool fused_rs_live(struct walker *w);
bool fused_rs_pace(struct walker *w);
/* Sleep as --resync-rate asks after n more data bytes. */
void fused_rs_rate(struct walker *w, uint64_t n);
void fused_rs_progress_add(struct fused *f, uint64_t n);
/*
 * A file fused_fd_path could not name (pl < 0): -ENOENT when it is gone (its unlink is in the
 * stream) or its path is too long for the peer (which the full resync cannot send either),
 * -EAGAIN while it is still linked (a walk of the tree names it).
 */
int fused_rs_unnamed(int fd, int pl);
/* Under the stream lock: owner, mode, size, xattrs and times of dfd/name (name NULL: dfd). */
void fused_rs_send_meta(struct walker *w, int dfd, const char *name, const char *path, size_t plen);
/* A directory (dfd readable): listed, its entries reconciled, recursively unless w->shallow. */
void fused_rs_sync_dir(struct walker *w, int dfd, int depth);
/* A regular file by block checksums (its data only). 0, or -ENOENT gone / -EAGAIN unnamed (resync.c). */
int fused_rs_sync_file(struct walker *w, int fd);
/*
 * O_PATH fd of the deepest existing directory above path (the root at worst), or -errno;
 * resolved beneath the root with no symlink followed (fused_apply_open_path): a directory
 * reached only through a symlink is not one of path's.
 */
int fused_rs_deepest_dir(struct fused *f, const char *path);
/* The reports' paths one drain found going through a symlink: how many, and the first. */
struct fused_rs_cut {
	unsigned n;
	char first[SK_RMSG_PATH_MAX + 1];
};
/*
 * A path the peer could not use (its FAILED report), as tracked entries (at most 4 in out[*n]):
 * the object there sent whole, its deepest existing directory compared whole (rs_incr.c).
 * Resolved as fused_rs_deepest_dir; a path that went through a symlink (the peer's report
 * names something that is not in this tree by that path) is added to cut. stream_mu held.
 */
void fused_rs_fail_path(struct fused *f, const char *path, struct fused_dnote *out, unsigned *n,
			struct fused_rs_cut *cut);
/* A drain's paths cut short at a symlink: counted (rejected_frames) and logged once (resync.c). */
void fused_rs_fail_refused(struct fused *f, const struct fused_rs_cut *cut);
/*
 * The paths a FAILED report names, in out (0-2 of them): its two paths, or the path of the open
 * file it names by handle, written to fhpath (PATH_MAX bytes). stream_mu held (resync.c).
 */
int fused_rs_fail_names(struct fused *f, const struct fused_rs_fail *l, char *fhpath,
			const char *out[2]);

/*
 * The paths of what is tracked now (for "what would be lost" and the kept-aside list):
 * fn(path, flags, bytes, arg) for each tracked object that still exists in the tree, at
 * most max of them (a directory's path is the directory; bytes = its tracked extents).
 * Takes stream_mu per object: call without it. Returns how many were given to fn.
 */
size_t fused_dirty_paths(struct fused *f, size_t max,
			 void (*fn)(const char *path, uint32_t flags, uint64_t bytes, void *arg),
			 void *arg);

/* ---- rs_empty.c: the peer's answers to the full resync's listings (files it holds empty) ---- */
/* Per name of a listing. */
#define ST_REG 0x1
#define ST_EMPTY 0x2 /* the peer said it holds this file empty: its data goes whole */
#define ST_DIR 0x4   /* a directory when listed */

/* One directory's listing as the walker keeps it: its names to visit, and the frames asked. */
struct rs_list {
	struct fused_names names;
	uint8_t *st;           /* ST_* per name */
	size_t st_cap;
	struct rs_asked {
		uint64_t req, seq; /* the frame's request id and stream sequence */
		size_t first;      /* names index of its first entry in names */
		uint64_t in;       /* which of its entries are in names */
	} *fr;
	size_t fr_n, fr_cap, fr_done;
	/* the frame being built */
	size_t cur_first;
	uint64_t cur_in;
	bool cur_want; /* it names a regular file with data */
};

/* Ack reader (repl.c): the peer's answer to a listing (SK_RMSG_RS_EMPTY). 0, or -EBADMSG. */
int fused_rs_on_empty(struct fused *f, const uint8_t *p, size_t n);
/* At a resync's start: no answer pending, counters zero, asked only in sync mode. */
void fused_rs_empty_reset(struct fused *f);
/* Answers taken this resync; *refused: answers not asked for or repeated (ignored). */
uint64_t fused_rs_empty_answers(uint64_t *refused);
/* One more name of the listing with its ST_* (0, or -ENOMEM). */
int fused_rs_list_add(struct rs_list *l, const char *name, uint8_t st);
void fused_rs_list_free(struct rs_list *l);
/* Under the stream lock: one RS_DIR frame of w->blob (used bytes), asked for an answer if useful. */
void fused_rs_dir_frame(struct walker *w, struct rs_list *l, struct sk_rmsg_op *op, size_t used);
/*
 * The answers of the frames that listed names up to index i, in order: waits for each until
 * it came, the peer acked past its frame without one, or the connection ended. !wait: takes
 * only what is decided now (between the holds of a long listing, so its slots come free).
 */
void fused_rs_list_resolve(struct walker *w, struct rs_list *l, size_t i, bool wait);

/* ---- rs_sums.c: checksum requests of a listing's files sent ahead of the walker ---- */
#define FUSED_RS_AHEAD 32
struct rs_ahead {
	struct rs_ahead_ent {
		size_t idx;   /* names index */
		int fd;       /* the file asked for (-1 once taken) */
		uint64_t req; /* request id */
	} q[FUSED_RS_AHEAD];
	size_t head, tail; /* q[head % N .. tail % N): asked, in names order */
	size_t next;       /* names index the lookahead looks at next */
};
/* Ack reader (repl.c), rs_mu held: a SUMS answer no synchronous request waited for. */
void fused_rs_on_sums(struct fused *f, const struct sk_rmsg_sums *s);
/* At a full resync's start: nothing in flight, counters zero. */
void fused_rs_sums_reset(struct fused *f);
/* Answers refused (not asked, or repeated); *unanswered: acked without an answer. */
uint64_t fused_rs_sums_refused(uint64_t *unanswered);
/* Walker at names index i of l (dfd's listing): asks for the next regular files' first windows. */
void fused_rs_ahead_fill(struct walker *w, struct rs_list *l, struct rs_ahead *a, int dfd, size_t i);
/* The fd of names index i if it was asked for (then fused_rs_ahead_sums gives its answer), or -ENOENT. */
int fused_rs_ahead_take(struct walker *w, struct rs_ahead *a, size_t i);
/*
 * The answer of the file fused_rs_ahead_take gave (sums in w->sums): 0 (s->err set if there is
 * none: its window goes whole), -ECONNRESET, -EBADMSG (not what was asked: peer dropped).
 */
int fused_rs_ahead_sums(struct walker *w, struct rs_ahead *a, struct sk_rmsg_sums *s);
/* Every request still in flight of this directory given up, their fds closed. */
void fused_rs_ahead_free(struct fused *f, struct rs_ahead *a);

/* ---- rs_links.c: hard-link groups of an incremental resync, listed whole in one session ---- */
struct fused_rs_links *fused_rs_links_new(void);
void fused_rs_links_free(struct fused_rs_links *l);
/* send_dir, under the stream lock: entry dfd/name was listed (recorded if multiply linked). */
void fused_rs_links_seen(struct fused_rs_links *l, int dfd, const char *name, const struct stat *st);
/* Multiply linked names listed so far (a directory whose listing held one stays owed). */
uint64_t fused_rs_links_hits(const struct fused_rs_links *l);
/* The directories of the names not listed yet of every group met: 0, -EAGAIN full resync, -ECONNRESET. */
int fused_rs_links_complete(struct walker *w);

/* rs_incr.c: 0 the peer holds everything, -EAGAIN a full resync is needed, -ECONNRESET lost. */
int fused_rs_incr_run(struct walker *w);
/* Whether this connection may resync incrementally (asks the peer a round trip). */
bool fused_rs_incr_usable(struct walker *w);

#endif
