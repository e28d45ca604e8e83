/* fused/fence.h: the lease fence of the primary (fence.c): EROFS for modifying operations past the agent's lease. */
#ifndef FUSED_FENCE_H
#define FUSED_FENCE_H

#include <stdbool.h>
#include <stdint.h>

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

/* fused_ops with the modifying operations guarded; reads SKFUSED_LEASE_UNTIL_MS_<module_id>. */
const struct fuse_lowlevel_ops *fused_fence_ops(uint32_t module_id);
/* {"cmd":"lease"}: writes allowed until at_ms (or now, without it) + valid_ms, monotonic clock. */
void fused_fence_set(uint32_t valid_ms, bool has_at, uint64_t at_ms);
bool fused_fence_armed(void);
int fused_fence_check(void);       /* 0 or -EROFS (counted) */
int64_t fused_fence_left_ms(void); /* < 0 once expired; 0 if not armed */
uint64_t fused_fence_refused(void);

#endif
