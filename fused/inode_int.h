/* fused/inode_int.h: what inode.c and inode_path.c (the primary's inode table and its paths for the peer) share. */
#ifndef FUSED_INODE_INT_H
#define FUSED_INODE_INT_H

#include "fused.h"

#include <sys/stat.h>

/* inode.c: the backing inode number of a node (readable without a lock: the slab is stable). */
uint64_t fused_inode_backing_ino(fuse_ino_t ino);
/* inode.c: the directory of a non-directory's last name, held until fused_inode_drop_parent; 0 if none. */
uint32_t fused_inode_hold_parent(struct fused *f, fuse_ino_t ino);
void fused_inode_drop_parent(struct fused *f, uint32_t p);

/* inode_path.c: where the kernel says fd is, if that path leads to the inode from our root
 * (-ESTALE if not); the name of want in directory dfd (0, or -ENOENT). */
int fused_ipath_kernel(struct fused *f, int fd, const struct stat *st, char *buf, size_t cap);
int fused_ipath_name_in_dir(int dfd, const struct stat *want, char *name);

#endif
