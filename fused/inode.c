/* fused/inode.c: the primary's inode table (backing O_PATH fds, refcounted by FUSE lookup/forget). */
#include "fused.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/*
 * The FUSE node id is the address of the struct (as libfuse's passthrough_ll
 * does); the backing (dev, ino) pair finds an existing entry so hard links
 * share one node and the kernel sees the backing inode numbers.
 */
struct fused_inode {
	int fd; /* O_PATH | O_NOFOLLOW on the backing tree */
	dev_t dev;
	ino_t ino;
	uint64_t nlookup;
	struct fused_inode *next;
	char *path;        /* cached relative path, valid while path_gen == fused_path_gen */
	uint64_t path_gen;
};

/* Bumped (under stream_mu) by every unlink, rmdir and rename: cached paths may be stale. */
uint64_t fused_path_gen = 1;

#define INO_BUCKETS (1u << 16)
static struct fused_inode **ino_tab;
static struct fused_inode ino_root;

static unsigned ino_hash(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;

	return (unsigned)(h >> 48) & (INO_BUCKETS - 1);
}

int fused_inode_init(struct fused *f)
{
	struct stat st;

	ino_tab = calloc(INO_BUCKETS, sizeof(*ino_tab));
	if (!ino_tab)
		return -ENOMEM;
	ino_root.fd = openat(f->root_fd, ".", O_PATH | O_DIRECTORY);
	if (ino_root.fd < 0 || fstat(ino_root.fd, &st) < 0)
		return -errno;
	ino_root.dev = st.st_dev;
	ino_root.ino = st.st_ino;
	ino_root.nlookup = 2;
	f->ino_root = &ino_root;
	return 0;
}

struct fused_inode *fused_inode_get(struct fused *f, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return f->ino_root;
	return (struct fused_inode *)(uintptr_t)ino;
}

int fused_inode_fd(struct fused_inode *in)
{
	return in->fd;
}

int fused_inode_lookup(struct fused *f, fuse_ino_t parent, const char *name,
		       struct fuse_entry_param *e)
{
	struct fused_inode *p = fused_inode_get(f, parent), *in;
	unsigned h;
	int fd;

	memset(e, 0, sizeof(*e));
	fd = openat(p->fd, name, O_PATH | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	if (e->attr.st_dev == ino_root.dev && e->attr.st_ino == ino_root.ino) {
		close(fd);
		e->ino = FUSE_ROOT_ID;
		goto done;
	}
	h = ino_hash(e->attr.st_dev, e->attr.st_ino);
	pthread_mutex_lock(&f->ino_mu);
	for (in = ino_tab[h]; in; in = in->next)
		if (in->ino == e->attr.st_ino && in->dev == e->attr.st_dev)
			break;
	if (in) {
		in->nlookup++;
		/* several names: hold the one just used, the old one may be gone (dup2 is
		 * atomic for threads using in->fd; both name the same inode) */
		if (e->attr.st_nlink > 1)
			dup2(fd, in->fd);
		pthread_mutex_unlock(&f->ino_mu);
		close(fd);
	} else {
		in = calloc(1, sizeof(*in));
		if (!in) {
			pthread_mutex_unlock(&f->ino_mu);
			close(fd);
			return -ENOMEM;
		}
		in->fd = fd;
		in->dev = e->attr.st_dev;
		in->ino = e->attr.st_ino;
		in->nlookup = 1;
		in->next = ino_tab[h];
		ino_tab[h] = in;
		pthread_mutex_unlock(&f->ino_mu);
	}
	e->ino = (fuse_ino_t)(uintptr_t)in;
done:
	/* Everything changes through this mount, so the kernel may cache; 1 s bounds any surprise. */
	e->attr_timeout = 1.0;
	e->entry_timeout = 1.0;
	return 0;
}

void fused_inode_forget(struct fused *f, fuse_ino_t ino, uint64_t n)
{
	struct fused_inode *in = fused_inode_get(f, ino), **pp;

	if (in == &ino_root)
		return;
	pthread_mutex_lock(&f->ino_mu);
	if (n > in->nlookup)
		n = in->nlookup;
	in->nlookup -= n;
	if (in->nlookup == 0) {
		for (pp = &ino_tab[ino_hash(in->dev, in->ino)]; *pp; pp = &(*pp)->next)
			if (*pp == in) {
				*pp = in->next;
				break;
			}
		pthread_mutex_unlock(&f->ino_mu);
		close(in->fd);
		free(in->path);
		free(in);
		return;
	}
	pthread_mutex_unlock(&f->ino_mu);
}

/*
 * Another name of a multiply linked inode whose name we held was removed:
 * search the tree (bounded; rare: it takes a hard link, an unlink of the name
 * we hold, then an operation through a name the kernel has cached).
 */
#define SCAN_MAX_ENTRIES 200000

static int other_name(struct fused *f, const struct stat *want, char *buf, size_t cap)
{
	char **stack = calloc(64, sizeof(char *));
	size_t sp = 0, seen = 0;
	int rc = -ESTALE;

	if (!stack)
		return -ENOMEM;
	stack[sp++] = strdup("");
	while (sp && rc == -ESTALE && seen < SCAN_MAX_ENTRIES) {
		char *dir = stack[--sp];
		int dfd = dir ? openat(f->root_fd, *dir ? dir : ".", O_RDONLY | O_DIRECTORY |
						  O_NOFOLLOW | O_CLOEXEC) : -1;
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		struct dirent *de;

		if (!d && dfd >= 0)
			close(dfd);
		while (d && (de = readdir(d)) && rc == -ESTALE && seen++ < SCAN_MAX_ENTRIES) {
			size_t dl = strlen(dir), nl = strlen(de->d_name);
			struct stat st;

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (de->d_type == DT_DIR) {
				char *c = malloc(dl + nl + 2);

				if (c && sp < 64) {
					sprintf(c, "%s%s%s", dir, dl ? "/" : "", de->d_name);
					stack[sp++] = c;
				} else {
					free(c);
				}
			} else if (de->d_ino == want->st_ino &&
				   fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				   st.st_ino == want->st_ino && st.st_dev == want->st_dev) {
				if (dl + 1 + nl >= cap || dl + 1 + nl > SK_RMSG_PATH_MAX) {
					rc = -ENAMETOOLONG;
				} else {
					sprintf(buf, "%s%s%s", dir, dl ? "/" : "", de->d_name);
					rc = (int)strlen(buf);
				}
			}
		}
		if (d)
			closedir(d);
		free(dir);
	}
	while (sp)
		free(stack[--sp]);
	free(stack);
	return rc;
}

/*
 * The kernel knows where a backing inode is now (d_path through /proc), which
 * is right even after renames; called under stream_mu, so no rename can race.
 */
int fused_fd_path(struct fused *f, int fd, char *buf, size_t cap)
{
	char proc[64], tmp[PATH_MAX + 16];
	ssize_t n;
	size_t rl = f->root_len;
	static const char del[] = " (deleted)";

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, tmp, sizeof(tmp) - 1);
	if (n < 0)
		return -errno;
	tmp[n] = '\0';
	if (rl == 1) /* the root is "/" itself */
		rl = 0;
	if ((size_t)n >= sizeof(del) - 1 && strcmp(tmp + n - (sizeof(del) - 1), del) == 0) {
		struct stat st, st2;

		if (fstat(fd, &st) < 0 || st.st_nlink == 0)
			return -ENOENT;
		/* the name we hold was removed but another link lives (or the name really
		 * ends so): only a path that still leads to this inode will do */
		if ((size_t)n <= rl + 1 ||
		    fstatat(f->root_fd, tmp + rl + 1, &st2, AT_SYMLINK_NOFOLLOW) < 0 ||
		    st2.st_ino != st.st_ino || st2.st_dev != st.st_dev)
			return other_name(f, &st, buf, cap);
	}
	if (strncmp(tmp, f->root_path, rl) != 0)
		return -EXDEV;
	if (tmp[rl] == '\0') {
		buf[0] = '\0';
		return 0;
	}
	if (tmp[rl] != '/')
		return -EXDEV;
	if ((size_t)n - rl - 1 >= cap || (size_t)n - rl - 1 > SK_RMSG_PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(buf, tmp + rl + 1, (size_t)n - rl);
	return (int)((size_t)n - rl - 1);
}

int fused_inode_path(struct fused *f, fuse_ino_t ino, char *buf, size_t cap)
{
	struct fused_inode *in = fused_inode_get(f, ino);
	int n;

	if (in == &ino_root) {
		buf[0] = '\0';
		return 0;
	}
	/* creates come in bursts in one directory: keep its path until a rename/unlink */
	if (in->path && in->path_gen == fused_path_gen) {
		n = (int)strlen(in->path);
		if ((size_t)n >= cap)
			return -ENAMETOOLONG;
		memcpy(buf, in->path, (size_t)n + 1);
		return n;
	}
	n = fused_fd_path(f, in->fd, buf, cap);
	if (n > 0) {
		struct stat a, b;

		/* several names: hold the one found (our fd's own name may be the removed one) */
		if (fstat(in->fd, &b) == 0 && b.st_nlink > 1) {
			int nfd = openat(f->root_fd, buf, O_PATH | O_NOFOLLOW | O_CLOEXEC);

			if (nfd >= 0 && fstat(nfd, &a) == 0 && a.st_ino == b.st_ino &&
			    a.st_dev == b.st_dev)
				dup2(nfd, in->fd);
			if (nfd >= 0)
				close(nfd);
		}
	}
	if (n >= 0) {
		char *c = strdup(buf);

		if (c) {
			free(in->path);
			in->path = c;
			in->path_gen = fused_path_gen;
		}
	}
	return n;
}
