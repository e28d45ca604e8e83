/* fused/moves.h: a file renamed while the peer was away takes the peer's own copy with its name (RS_MOVE) instead of crossing the wire whole. */
#ifndef FUSED_MOVES_H
#define FUSED_MOVES_H

#include <stdbool.h>
#include <stddef.h>

#include "dirty.h"
#include "fused.h"

struct walker;

/* Renames remembered while the peer is away, and copies the secondary keeps aside, at most. */
#define FUSED_MOVES_MAX 4096u
/* The xattr that makes .steadykit-moves at a secondary's root SteadyKit's: reserved (EPERM). */
#define FUSED_MOVES_XATTR "trusted.steadykit.moves"

/* ---- primary ---- */
/*
 * Before a rename of pfd/name while the peer is away (stream lock held): is it a directory, or
 * a regular file with one name of FUSED_WHOLE_SUMS_MIN bytes or more, still at the name the
 * peer's copy has (fused_dirty_unmoved)? If so *h is its handle.
 */
bool fused_moves_want(struct fused *f, int pfd, const char *name, struct fused_dh *h);
/* After that rename succeeded: the file h was at from (len bytes) when both copies agreed. */
void fused_moves_add(const struct fused_dh *h, const char *from, size_t len);
/*
 * Incremental resync, before its first listing: one RS_MOVE per remembered file still linked
 * once (from, and the path it has now), paced as resync frames. The table is emptied: what a
 * later attempt would move may have changed on the peer since.
 */
void fused_moves_send(struct walker *w);
/* Forget them (a full resync, lost tracking). */
void fused_moves_drop(void);
/*
 * At start, the tracker open: a primary takes back the names STATE_DIR/moves kept for the
 * tracking's shared id and keeps the file from now on; a secondary removes it.
 */
void fused_moves_init(const char *state_dir, bool primary);

/* ---- secondary (the receiver thread only) ---- */
/* RS_MOVE: the file or directory at path1 goes to .steadykit-moves at the root, kept for path2. Always 0. */
int fused_moves_apply(struct fused *f, const struct sk_rmsg_op *op);
/* A listing makes the regular file (or directory: dir) dir/name (dpath, dl: the directory's path): true if a kept copy became it. */
bool fused_moves_claim(int dfd, const char *dpath, size_t dl, const char *name, bool dir);
/* A root listing (dl 0) meets name: true if it is the folder of kept copies (not a stray). */
bool fused_moves_stash_name(size_t dl, const char *name);
/* A root listing names name (the primary has it): if it is the folder's, give the folder up. */
void fused_moves_listed(size_t dl, const char *name);
/*
 * Session start or end, a resync complete, skfused's start in either role: what was kept and
 * not claimed is removed, and the folder (only if it is ours).
 */
void fused_moves_end(struct fused *f);

#endif
