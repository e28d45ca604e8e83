/* fused/namescan.c: a bounded search of the tree for a name of an inode (inode_path.c's last resort). */
#include "namescan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replmsg.h"

/* Directories still to read, deepest pushed last; it grows as needed (the entry bound caps it). */
struct dstack {
	char **v;
	size_t n, cap;
};

static int push(struct dstack *s, const char *dir, size_t dl, const char *name, size_t nl)
{
	char *c = malloc(dl + nl + 2);

	if (!c)
		return -ENOMEM;
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		char **nv = realloc(s->v, nc * sizeof(*nv));

		if (!nv) {
			free(c);
			return -ENOMEM;
		}
		s->v = nv;
		s->cap = nc;
	}
	snprintf(c, dl + nl + 2, "%s%s%s", dir, dl ? "/" : "", name);
	s->v[s->n++] = c;
	return 0;
}

int fused_name_scan(int root_fd, const struct stat *want, char *buf, size_t cap, size_t max_entries)
{
	struct dstack s = { 0 };
	size_t seen = 0;
	int rc = push(&s, "", 0, "", 0);

	if (rc < 0)
		return rc;
	rc = -ESTALE;
	while (s.n && rc == -ESTALE && seen < max_entries) {
		char *dir = s.v[--s.n];
		int dfd = openat(root_fd, *dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
		size_t dl = strlen(dir);
		struct dirent *de;

		if (!d && dfd >= 0)
			close(dfd);
		while (d && rc == -ESTALE && seen < max_entries && (de = readdir(d))) {
			size_t nl = strlen(de->d_name);
			unsigned char type = de->d_type;
			struct stat st;

			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			seen++;
			if (type == DT_UNKNOWN) /* a filesystem that does not fill d_type */
				type = fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
					       S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
			if (de->d_ino == want->st_ino &&
			    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    st.st_ino == want->st_ino && st.st_dev == want->st_dev) {
				if (dl + 1 + nl >= cap || dl + 1 + nl > SK_RMSG_PATH_MAX) {
					rc = -ENAMETOOLONG;
				} else {
					snprintf(buf, cap, "%s%s%s", dir, dl ? "/" : "", de->d_name);
					rc = (int)strlen(buf);
				}
			} else if (type == DT_DIR && dl + 1 + nl <= SK_RMSG_PATH_MAX) {
				if (push(&s, dir, dl, de->d_name, nl) < 0)
					rc = -ENOMEM;
			}
		}
		if (d)
			closedir(d);
		free(dir);
	}
	while (s.n)
		free(s.v[--s.n]);
	free(s.v);
	return rc;
}
