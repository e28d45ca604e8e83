/* fused/aside.c: the secondary's kept-aside folder: in a resync forced over its diverged copy, what it changes or removes is kept first. */
#include "fused.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/*
 * Layout, beside the replicated directory DIR (outside the tree, same filesystem as a rule):
 *   DIR.steadykit-aside/<UTC date>/files/<relative path>   the file as it was here
 *   DIR.steadykit-aside/<UTC date>/list.txt                one line per kept path:
 *                                                          "changed\tPATH" or "removed\tPATH"
 * Only the receiver thread calls these (the resync is applied in order by it).
 */
static int files_fd = -1; /* DIR.steadykit-aside/<date>/files */
static FILE *list;
static unsigned long kept_n;
/* When the folder was made: a file changed since then was made or changed by this resync
 * (the secondary's tree is read-only to applications), not by the diverged copy. */
static struct timespec t0;

static bool since_t0(const struct stat *st)
{
	return st->st_ctim.tv_sec > t0.tv_sec ||
	       (st->st_ctim.tv_sec == t0.tv_sec && st->st_ctim.tv_nsec >= t0.tv_nsec);
}

static int mkdir_p(char *d, mode_t mode)
{
	for (char *p = d + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(d, mode) < 0 && errno != EEXIST) {
				*p = '/';
				return -errno;
			}
			*p = '/';
		}
	return mkdir(d, mode) < 0 && errno != EEXIST ? -errno : 0;
}

/* Parents of rel inside files_fd. */
static int mk_parents(const char *rel)
{
	char d[SK_RMSG_PATH_MAX + 1];
	char *s;

	snprintf(d, sizeof(d), "%s", rel);
	s = strrchr(d, '/');
	if (!s)
		return 0;
	*s = '\0';
	for (char *p = d; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdirat(files_fd, d, 0700) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	return mkdirat(files_fd, d, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

int fused_aside_begin(struct fused *f)
{
	char dir[PATH_MAX], sub[PATH_MAX + 32];
	int rc;

	if (!f->aside[0]) {
		char when[32];
		time_t t = time(NULL);
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H%M%SZ", &tm);
		if ((size_t)snprintf(dir, sizeof(dir), "%s.steadykit-aside/%s", f->root_path, when) >=
		    sizeof(dir))
			return -ENAMETOOLONG;
		pthread_mutex_lock(&f->state_mu);
		snprintf(f->aside, sizeof(f->aside), "%s", dir);
		pthread_mutex_unlock(&f->state_mu);
		rc = fused_state_save(f); /* a restart resumes keeping into the same folder */
		if (rc < 0)
			return rc;
	}
	if (files_fd >= 0)
		return 0;
	snprintf(sub, sizeof(sub), "%s/files", f->aside);
	rc = mkdir_p(sub, 0700);
	if (rc == 0) {
		struct stat st;

		files_fd = open(sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		rc = files_fd < 0 || fstat(files_fd, &st) < 0 ? -errno : 0;
		if (rc == 0)
			t0 = st.st_ctim;
	}
	if (rc == 0) {
		snprintf(sub, sizeof(sub), "%s/list.txt", f->aside);
		list = fopen(sub, "ae");
		rc = list ? 0 : -errno;
	}
	if (rc < 0) {
		sk_err("cannot make the kept-aside folder %s: %s", f->aside, strerror(-rc));
		if (files_fd >= 0)
			close(files_fd);
		files_fd = -1;
	}
	return rc;
}

static void note(const char *kind, const char *rel)
{
	kept_n++;
	if (list) {
		fprintf(list, "%s\t%s\n", kind, rel);
		fflush(list);
	}
}

static int copy_reg(int src, const char *rel, const struct stat *st)
{
	struct timespec tv[2] = { st->st_atim, st->st_mtim };
	int dst = openat(files_fd, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	off_t left = st->st_size;
	int rc = 0;

	if (dst < 0)
		return -errno;
	while (left > 0) {
		ssize_t n = copy_file_range(src, NULL, dst, NULL, (size_t)left, 0);

		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL)) {
			char buf[65536];

			n = read(src, buf, sizeof(buf));
			if (n > 0 && sk_write_all(dst, buf, (size_t)n) < 0)
				n = -1;
		}
		if (n <= 0) {
			rc = n < 0 ? -errno : 0;
			break;
		}
		left -= n;
	}
	if (fchown(dst, st->st_uid, st->st_gid) < 0 || fchmod(dst, st->st_mode & 07777) < 0 ||
	    futimens(dst, tv) < 0)
		rc = rc ? rc : -errno;
	if (rc == 0 && fsync(dst) < 0)
		rc = -errno;
	close(dst);
	return rc;
}

void fused_aside_copy(struct fused *f, const char *path, size_t len)
{
	char rel[SK_RMSG_PATH_MAX + 1];
	struct stat st;
	int fd, rc;

	if (!f->aside[0] || files_fd < 0 || len == 0 || len > SK_RMSG_PATH_MAX)
		return;
	memcpy(rel, path, len);
	rel[len] = '\0';
	if (fstatat(files_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return; /* kept already: the first version is the one this copy had */
	if (fused_apply_open_path(f->root_fd, path, len, O_PATH | O_NOFOLLOW, &fd) < 0)
		return; /* nothing here to keep */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || since_t0(&st)) {
		close(fd);
		return; /* directories and special files: their contents are kept one by one */
	}
	close(fd);
	rc = fused_apply_open_path(f->root_fd, path, len, O_RDONLY | O_NOFOLLOW, &fd);
	if (rc == 0) {
		rc = mk_parents(rel);
		if (rc == 0)
			rc = copy_reg(fd, rel, &st);
		close(fd);
	}
	if (rc < 0)
		sk_warn("cannot keep \"%s\" aside: %s (it is resynced anyway)", rel, strerror(-rc));
	else
		note("changed", rel);
}

int fused_aside_move(struct fused *f, int dfd, const char *name, const char *path, size_t len)
{
	char rel[SK_RMSG_PATH_MAX + 1];
	struct stat st;
	int rc;

	if (!f->aside[0] || files_fd < 0 || len > SK_RMSG_PATH_MAX)
		return -ENOENT;
	memcpy(rel, path, len);
	rel[len] = '\0';
	if (fstatat(files_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return -EEXIST; /* its earlier version is kept: remove this one */
	/* made by this resync: nothing of the diverged copy (a directory is moved whole:
	 * whatever it still holds was never walked, the primary has no such directory) */
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
	    since_t0(&st))
		return -EEXIST;
	rc = mk_parents(rel);
	if (rc == 0 && renameat(dfd, name, files_fd, rel) < 0)
		rc = -errno;
	if (rc < 0) {
		sk_warn("cannot move \"%s\" aside: %s (it is removed)", rel, strerror(-rc));
		return rc;
	}
	note("removed", rel);
	return 0;
}

void fused_aside_end(struct fused *f)
{
	pthread_mutex_lock(&f->state_mu);
	if (f->aside[0]) {
		sk_warn("forced resync complete: %lu paths of this copy kept in %s (list: "
			"%s/list.txt)", kept_n, f->aside, f->aside);
		snprintf(f->aside_last, sizeof(f->aside_last), "%s", f->aside);
		f->aside[0] = '\0';
	}
	pthread_mutex_unlock(&f->state_mu);
	if (list)
		fclose(list);
	list = NULL;
	if (files_fd >= 0)
		close(files_fd);
	files_fd = -1;
	kept_n = 0;
}

/* Path "dpath/name" into out; false if too long. */
bool fused_aside_join(const char *dpath, size_t dl, const char *name, char *out, size_t cap,
		      size_t *len)
{
	size_t nl = strlen(name), n = dl + (dl ? 1 : 0) + nl;

	if (n >= cap || n > SK_RMSG_PATH_MAX)
		return false;
	memcpy(out, dpath, dl);
	if (dl)
		out[dl] = '/';
	memcpy(out + dl + (dl ? 1 : 0), name, nl);
	out[n] = '\0';
	*len = n;
	return true;
}
