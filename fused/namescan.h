/* fused/namescan.h: find a name of an inode by searching the tree, when neither the kernel nor the last known directory can name it. */
#pragma once

#include <stddef.h>
#include <sys/stat.h>

/*
 * Search the tree under root_fd, directory by directory, for a name of want (matched by
 * st_dev and st_ino), reading at most max_entries directory entries. Writes the path
 * relative to the root into buf. Returns its length; -ESTALE when no name was found within
 * the bound; -ENAMETOOLONG when the name found does not fit buf or a replication path;
 * -ENOMEM. Every directory met is searched (none is dropped for lack of room).
 */
int fused_name_scan(int root_fd, const struct stat *want, char *buf, size_t cap, size_t max_entries);
