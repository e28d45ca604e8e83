/* fused/rs_prefetch.h: an incremental resync's read-ahead hints: the primary names the files (and extents) it will send next, the secondary warms them on helper threads. */
#ifndef FUSED_RS_PREFETCH_H
#define FUSED_RS_PREFETCH_H

#include "resync.h"

#include <sys/stat.h>

/*
 * Primary, from the incremental resync's read-ahead (rs_files.c), without the stream lock:
 * a hint frame (RS_DATA with SK_RO_HINT, no data) for each of the first extents of the
 * prepared file fd (st its stat; whole: the file as a whole), well before its data goes.
 */
void fused_rs_hint(struct walker *w, int fd, const struct fused_dentry *e, const struct stat *st);

/*
 * Secondary, from the receiver (rs_apply.c): queue the hint for a helper thread, which
 * looks the path up beneath the root and asks the disk for the partial pages its data
 * frame will rewrite. Never blocks, never fails the session: a full queue drops it.
 */
int fused_rs_prefetch(struct fused *f, const struct sk_rmsg_op *op);
/* Secondary, at a resync's end: log and reset this session's hint counters. */
void fused_rs_prefetch_report(void);

#endif
