/* fused/resync.c: online full resync: the primary walks its tree, the secondary compares block checksums. */
#include "fused.h"

#include <errno.h>

int fused_resync_run(struct fused *f, uint64_t gen)
{
	return 0;
}

int fused_rs_apply(struct fused *f, const struct sk_rmsg_op *op, int sock, struct sk_chan *chan)
{
	return -EOPNOTSUPP;
}
