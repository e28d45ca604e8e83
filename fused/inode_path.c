/* fused/inode_path.c: the primary's paths for the peer: where an inode of the table is, named from our root (kernel d_path checked against the tree, the last directory it was named in, a walk up "..", a bounded search). */
#include "fused.h"
#include "inode_int.h"
#include "namescan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Paths of recently named nodes (creates come in bursts in one directory); under stream_mu. */
#define PCACHE 32
static struct pc_ent {
	uint32_t i;
	uint64_t ino, gen;
	size_t cap;
	char *p;
} pcache[PCACHE];

static bool names(struct fused *f, const char *rel, const struct stat *want)
{
	struct stat st;

	return fstatat(f->root_fd, *rel ? rel : ".", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       st.st_ino == want->st_ino && st.st_dev == want->st_dev;
}

/*
 * Where the kernel says fd is (d_path through /proc; right after renames),
 * accepted only if that path leads to the inode from our root: a disconnected
 * fd, or a name removed while another link lives, gives a path that does not.
 * -ESTALE then. Under stream_mu no rename can race.
 */
int fused_ipath_kernel(struct fused *f, int fd, const struct stat *st, char *buf, size_t cap)
{
	static const char del[] = " (deleted)";
	const size_t dl = sizeof(del) - 1, rl = f->root_len == 1 ? 0 : f->root_len;
	char proc[32], tmp[PATH_MAX + 16];
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, tmp, sizeof(tmp) - 1);
	if (n < 0)
		return -errno;
	tmp[n] = '\0';
	for (int pass = 0; pass < 2; pass++) {
		const char *rel;
		size_t len;

		if (pass == 1) { /* unlinked name, or a name that really ends so (tried first) */
			if ((size_t)n < dl || strcmp(tmp + n - dl, del) != 0)
				break;
			tmp[n - (ssize_t)dl] = '\0';
		}
		if (strncmp(tmp, f->root_path, rl) != 0 || (tmp[rl] != '\0' && tmp[rl] != '/'))
			continue;
		rel = tmp[rl] ? tmp + rl + 1 : tmp + rl;
		len = strlen(rel);
		if (len >= cap || len > SK_RMSG_PATH_MAX)
			return -ENAMETOOLONG;
		if (names(f, rel, st)) {
			memcpy(buf, rel, len + 1);
			return (int)len;
		}
	}
	return -ESTALE;
}

/* The name of want in the directory dfd (an O_PATH fd is fine): 0, or -ENOENT. */
int fused_ipath_name_in_dir(int dfd, const struct stat *want, char *name)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = -ENOENT;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	struct stat st;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -ENOENT;
	}
	while ((de = readdir(d)))
		if (de->d_ino == want->st_ino &&
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_ino == want->st_ino && st.st_dev == want->st_dev) {
			snprintf(name, NAME_MAX + 1, "%s", de->d_name);
			rc = 0;
			break;
		}
	closedir(d);
	return rc;
}
/*
 * Another name of a multiply linked inode whose name we held was removed:
 * search the tree (bounded; rare: it takes a hard link, an unlink of the name
 * we hold, then an operation through a name the kernel has cached).
 */
#define SCAN_MAX_ENTRIES 200000

static int other_name(struct fused *f, const struct stat *want, char *buf, size_t cap)
{
	return fused_name_scan(f->root_fd, want, buf, cap, SCAN_MAX_ENTRIES);
}

/*
 * The path of directory fd from the root by walking "..": the kernel's d_path
 * of a directory whose absolute path passes PATH_MAX is ENAMETOOLONG although
 * its path below our root may still fit. Each name is found by inode in its
 * parent, so the result leads to the directory; names are written right to
 * left at the end of buf, then moved to its start.
 */
static int dir_path_up(struct fused *f, int fd, const struct stat *st, char *buf, size_t cap)
{
	size_t lim = cap - 1 < SK_RMSG_PATH_MAX ? cap - 1 : SK_RMSG_PATH_MAX, at = lim;
	struct stat cur = *st, par, root;
	int cfd = fd, rc = 0;

	if (cap == 0)
		return -ENAMETOOLONG;
	if (fstat(f->root_fd, &root) < 0)
		return -errno;
	buf[lim] = '\0';
	for (int depth = 0; rc == 0; depth++) {
		char name[NAME_MAX + 1];
		size_t nl;
		int pfd;

		if (cur.st_ino == root.st_ino && cur.st_dev == root.st_dev)
			break;
		if (depth > (int)SK_RMSG_PATH_MAX / 2) {
			rc = -ENAMETOOLONG;
			break;
		}
		pfd = openat(cfd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (pfd < 0 || fstat(pfd, &par) < 0 ||
		    (par.st_ino == cur.st_ino && par.st_dev == cur.st_dev)) {
			rc = pfd < 0 ? -errno : -ESTALE; /* above the file system's root: not ours */
		} else if (fused_ipath_name_in_dir(pfd, &cur, name) < 0) {
			rc = -ESTALE;
		} else if ((nl = strlen(name)) + (at < lim) > at) {
			rc = -ENAMETOOLONG;
		} else {
			if (at < lim)
				buf[--at] = '/';
			at -= nl;
			memcpy(buf + at, name, nl);
			cur = par;
		}
		if (cfd != fd)
			close(cfd);
		cfd = pfd;
		if (rc < 0) {
			if (pfd >= 0)
				close(pfd);
			cfd = fd;
		}
	}
	if (cfd != fd)
		close(cfd);
	if (rc < 0)
		return rc;
	memmove(buf, buf + at, lim - at + 1);
	return (int)(lim - at);
}

/* The path of any fd on the backing tree: -ENOENT if unlinked. */
int fused_fd_path(struct fused *f, int fd, char *buf, size_t cap)
{
	struct stat st;
	int n;

	if (fstat(fd, &st) < 0)
		return -errno;
	n = fused_ipath_kernel(f, fd, &st, buf, cap);
	if (n == -ENAMETOOLONG && S_ISDIR(st.st_mode))
		return dir_path_up(f, fd, &st, buf, cap);
	if (n != -ESTALE && n != -ENAMETOOLONG)
		return n;
	if (st.st_nlink == 0)
		return -ENOENT;
	return other_name(f, &st, buf, cap); /* a file deeper than PATH_MAX: found by a bounded scan */
}

/* Path of node i's non-directory want from the directory of its last known name. */
static int parent_path(struct fused *f, uint32_t i, const struct stat *want, char *buf, size_t cap)
{
	char name[NAME_MAX + 1];
	uint32_t p;
	int n, pfd;

	if (!(p = fused_inode_hold_parent(f, i)))
		return -ESTALE;
	n = fused_inode_path(f, p, buf, cap);
	if (n >= 0) {
		pfd = fused_inode_acquire(f, p);
		if (pfd < 0 || fused_ipath_name_in_dir(pfd, want, name) < 0)
			n = -ESTALE;
		else if ((size_t)n + 1 + strlen(name) >= cap ||
			 (size_t)n + 1 + strlen(name) > SK_RMSG_PATH_MAX)
			n = -ENAMETOOLONG;
		else
			n += sprintf(buf + n, "%s%s", n ? "/" : "", name);
		fused_inode_release(f, p, pfd);
	}
	fused_inode_drop_parent(f, p);
	return n;
}

int fused_inode_path(struct fused *f, fuse_ino_t ino, char *buf, size_t cap)
{
	uint32_t i = (uint32_t)ino;
	uint64_t bino = fused_inode_backing_ino(ino);
	struct pc_ent *pc = &pcache[i % PCACHE];
	struct stat st;
	int n, fd;

	if (i == FUSE_ROOT_ID) {
		buf[0] = '\0';
		return 0;
	}
	if (pc->p && pc->i == i && pc->ino == bino && pc->gen == fused_path_gen) {
		n = (int)strlen(pc->p);
		if ((size_t)n >= cap)
			return -ENAMETOOLONG;
		memcpy(buf, pc->p, (size_t)n + 1);
		return n;
	}
	fd = fused_inode_acquire(f, ino);
	if (fd < 0)
		return fd == -ESTALE ? -ENOENT : fd; /* gone from the disk: nobody on the peer sees it */
	if (fstat(fd, &st) < 0)
		n = -errno;
	else if ((n = fused_ipath_kernel(f, fd, &st, buf, cap)) != -ESTALE && n != -ENAMETOOLONG)
		;
	else if (n == -ENAMETOOLONG && S_ISDIR(st.st_mode))
		n = dir_path_up(f, fd, &st, buf, cap); /* absolute path past PATH_MAX */
	else if (st.st_nlink == 0)
		n = -ENOENT;
	else if (S_ISDIR(st.st_mode) || (n = parent_path(f, i, &st, buf, cap)) == -ESTALE)
		n = other_name(f, &st, buf, cap);
	fused_inode_release(f, ino, fd);
	if (n >= 0) {
		if (pc->cap < (size_t)n + 1) {
			char *p = realloc(pc->p, (size_t)n + 1);

			if (!p)
				return n;
			pc->p = p;
			pc->cap = (size_t)n + 1;
		}
		memcpy(pc->p, buf, (size_t)n + 1);
		pc->i = i;
		pc->ino = bino;
		pc->gen = fused_path_gen;
	}
	return n;
}

