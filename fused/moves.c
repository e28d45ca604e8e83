/* fused/moves.c: a file renamed while the peer was away takes the peer's own copy with its name (RS_MOVE) instead of crossing the wire whole. */
#include "moves.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "log.h"
#include "rs_incr.h"

/*
 * The dirty tracker names objects by file handle, so a file renamed while the peer is away is
 * tracked whole: its name on the peer is not the one it has now. A rotated log (app.log to
 * app.log.1), a file moved into an archive folder, two files swapped through a third name:
 * before, each crossed the wire whole although the peer held every byte of it.
 *
 * The primary remembers, for a regular file of FUSED_WHOLE_SUMS_MIN bytes or more renamed
 * while it was still at the name the peer's copy has, that name (from). An incremental resync
 * starts with one RS_MOVE per such file: from, and the path it has now (to). The secondary
 * moves its file at from into .steadykit-moves at the root of its tree (a rename cannot cross
 * a mount: beside the tree would fail where the tree is a mount point) under a number, and
 * remembers to. All the moves come before any listing, so a chain or a swap (b to t, c to b,
 * t to c) finds every copy where it was. When a listing then makes to as a new regular file,
 * the kept copy becomes it (rs_apply.c reconcile) and is reported as remade; the primary
 * compares it by block checksums as any file tracked whole (rs_files.c): only what differs is
 * sent.
 *
 * Why it cannot make the copies differ: a move is only a base. The name it takes away (from)
 * is in a directory the rename marked (its listing, or a walk above it, makes again what
 * the primary has there); the name it gives (to) is made by a listing only where the primary
 * has a regular file, which is tracked whole (renamed, or made since) and compared. A wrong
 * base (a directory above from moved too: the peer's from is another file, or none) costs
 * bytes, never a difference. What is not claimed is removed when the session ends.
 *
 * Bounds: FUSED_MOVES_MAX files remembered (more are sent whole), in memory only (a primary
 * restarted while alone sends them whole); the secondary keeps at most as many, refusing
 * (counted) the rest. The kept copies are visible in the secondary's read-only view while a
 * resync runs, under .steadykit-moves (0700).
 */

/* ---- primary ---- */

struct hint {
	struct fused_dh h;
	char *from;
};

static pthread_mutex_t hints_mu = PTHREAD_MUTEX_INITIALIZER; /* a leaf */
static struct hint *hints;
static size_t hints_n;

bool fused_moves_want(struct fused *f, int pfd, const char *name, struct fused_dh *h)
{
	struct stat st;
	bool ok;
	int fd;

	if (!fused_dirty_g || !fused_dirty_tracking(fused_dirty_g))
		return false;
	pthread_mutex_lock(&hints_mu);
	ok = hints_n < FUSED_MOVES_MAX;
	pthread_mutex_unlock(&hints_mu);
	if (!ok || (fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return false;
	ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
	     (uint64_t)st.st_size >= FUSED_WHOLE_SUMS_MIN && fused_fd_dh(f, fd, h) == 0 &&
	     fused_dirty_unmoved(fused_dirty_g, h);
	close(fd);
	return ok;
}

void fused_moves_add(const struct fused_dh *h, const char *from, size_t len)
{
	char *s;

	pthread_mutex_lock(&hints_mu);
	if (hints_n < FUSED_MOVES_MAX && (hints || (hints = calloc(FUSED_MOVES_MAX, sizeof(*hints)))) &&
	    (s = strndup(from, len))) {
		hints[hints_n].h = *h;
		hints[hints_n++].from = s;
	}
	pthread_mutex_unlock(&hints_mu);
}

static size_t take_all(struct hint **out)
{
	size_t n;

	pthread_mutex_lock(&hints_mu);
	*out = hints;
	n = hints_n;
	hints = NULL;
	hints_n = 0;
	pthread_mutex_unlock(&hints_mu);
	return n;
}

static void free_all(struct hint *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].from);
	free(v);
}

void fused_moves_drop(void)
{
	struct hint *v;
	size_t n = take_all(&v);

	free_all(v, n);
}

void fused_moves_send(struct walker *w)
{
	struct fused *f = w->f;
	struct hint *v;
	size_t n = take_all(&v), sent = 0;
	char p[PATH_MAX];

	for (size_t i = 0; i < n && fused_rs_pace(w); i++) {
		struct sk_rmsg_op op = { .type = SK_RMSG_RS_MOVE };
		struct stat st;
		int fd = fused_rs_open_dh(f, &v[i].h, &st), pl = -1;

		if (fd < 0) /* deleted since */
			continue;
		pthread_mutex_lock(&f->stream_mu);
		if (S_ISREG(st.st_mode) && st.st_nlink == 1 && atomic_load(&f->connected))
			pl = fused_fd_path(f, fd, p, sizeof(p));
		if (pl > 0 && strcmp(p, v[i].from)) {
			op.path1 = v[i].from;
			op.path1_len = (uint16_t)strlen(v[i].from);
			op.path2 = p;
			op.path2_len = (uint16_t)pl;
			if (fused_repl_submit(f, &op, NULL, 0, NULL, NULL) >= 0)
				sent++;
		}
		pthread_mutex_unlock(&f->stream_mu);
		close(fd);
	}
	if (n)
		sk_info("resync: %zu of %zu files renamed while the peer was away take the peer's copy "
			"with their name (the rest were deleted, linked again or named no more)",
			sent, n);
	free_all(v, n);
}

/* ---- secondary ---- */

/*
 * Where the secondary keeps the copies: STASH at the root of its tree, so a rename never crosses
 * a mount (the replicated directory is often a mount point itself). It is ours only with the
 * xattr OWNER (trusted.*: only a privileged process sets it, and the primary refuses it to
 * applications, file.c): anything else of that name is the application's, and then moves
 * are off. A root listing skips it as a stray while it is ours; one that names it (the primary
 * has that name) makes us give it up first. Entries are decimal numbers; only those are removed.
 */
#define STASH ".steadykit-moves"
#define OWNER FUSED_MOVES_XATTR

struct kept {
	char *to;
	unsigned key;
	bool used;
};

static struct kept *kept;
static size_t kept_n;
static bool kept_sorted;
static int stash_fd = -1;
static bool stash_off; /* refused for this session (not ours, or no xattrs here) */
static unsigned stash_next, kept_used;

static bool owned(int fd)
{
	char v[4];

	return fgetxattr(fd, OWNER, v, sizeof(v)) == 1 && v[0] == '1';
}

static bool numeric(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Our entries in the stash fd (a directory we own): removed. How many. */
static unsigned empty_stash(int fd)
{
	unsigned removed = 0;
	struct dirent *de;
	DIR *d = fdopendir(dup(fd));

	while (d && (de = readdir(d)))
		if (numeric(de->d_name) && unlinkat(fd, de->d_name, 0) == 0)
			removed++;
	if (d)
		closedir(d);
	return removed;
}

/* The root's times, kept around our mkdir and rmdir there: the primary's are the ones it has. */
static void root_times(struct fused *f, struct timespec t[2])
{
	struct stat st;

	t[0].tv_nsec = t[1].tv_nsec = UTIME_OMIT;
	if (fstat(f->root_fd, &st) == 0) {
		t[0] = st.st_atim;
		t[1] = st.st_mtim;
	}
}

/* rmdir of the folder (empty), the root's times kept. */
static int stash_rmdir(struct fused *f)
{
	struct timespec t[2];

	root_times(f, t);
	if (unlinkat(f->root_fd, STASH, AT_REMOVEDIR) < 0)
		return -errno;
	futimens(f->root_fd, t);
	return 0;
}

static int stash_open(struct fused *f)
{
	struct timespec t[2];
	bool made;
	int rc = 0;

	if (stash_fd >= 0)
		return 0;
	root_times(f, t);
	made = mkdirat(f->root_fd, STASH, 0700) == 0;
	if (!made && errno != EEXIST)
		return -errno;
	if (made)
		futimens(f->root_fd, t);
	stash_fd = openat(f->root_fd, STASH, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (stash_fd < 0)
		return -errno;
	if (made && fsetxattr(stash_fd, OWNER, "1", 1, XATTR_CREATE) < 0)
		rc = -errno;
	else if (!made && !owned(stash_fd))
		rc = -EEXIST; /* the application's directory */
	if (rc < 0) {
		if (made)
			stash_rmdir(f);
		close(stash_fd);
		stash_fd = -1;
	}
	return rc;
}

int fused_moves_apply(struct fused *f, const struct sk_rmsg_op *op)
{
	char name[SK_RMSG_NAME_MAX + 1], key[16];
	struct stat st;
	int pfd, rc;

	if (stash_off || f->aside[0]) /* a forced resync keeps what it replaces instead (aside.c) */
		return 0;
	if (kept_n >= FUSED_MOVES_MAX) {
		atomic_fetch_add(&f->rejected, 1);
		sk_debug("resync: more than %u moves: \"%.*s\" not kept", FUSED_MOVES_MAX,
			 (int)op->path1_len, op->path1);
		return 0;
	}
	if (fused_rs_open_parent(f, op->path1, op->path1_len, &pfd, name) < 0)
		return 0; /* not here: the file comes whole */
	rc = fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW);
	if (rc < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    (!kept && !(kept = calloc(FUSED_MOVES_MAX, sizeof(*kept)))))
		goto out;
	if ((rc = stash_open(f)) < 0) {
		stash_off = true;
		sk_warn("resync: cannot keep renamed files' copies in %s/%s (%s): they are sent whole",
			f->root_path, STASH,
			rc == -EEXIST ? "a directory of the application has that name" : strerror(-rc));
		goto out;
	}
	snprintf(key, sizeof(key), "%u", stash_next);
	if (!(kept[kept_n].to = strndup(op->path2, op->path2_len)))
		goto out;
	/* EXDEV: another file system mounted inside the tree; that file comes whole */
	if (renameat2(pfd, name, stash_fd, key, RENAME_NOREPLACE) < 0) {
		free(kept[kept_n].to);
		goto out;
	}
	kept[kept_n].key = stash_next++;
	kept[kept_n++].used = false;
	kept_sorted = false;
out:
	close(pfd);
	return 0;
}

static int by_to(const void *a, const void *b)
{
	return strcmp(((const struct kept *)a)->to, ((const struct kept *)b)->to);
}

bool fused_moves_claim(int dfd, const char *dpath, size_t dl, const char *name)
{
	char p[SK_RMSG_PATH_MAX + 1], key[16];
	struct kept k = { .to = p }, *x;
	size_t nl = strlen(name);

	if (!kept_n || stash_fd < 0 || dl + 1 + nl > SK_RMSG_PATH_MAX)
		return false;
	if (!kept_sorted) {
		qsort(kept, kept_n, sizeof(*kept), by_to);
		kept_sorted = true;
	}
	memcpy(p, dpath, dl);
	p[dl] = '/';
	memcpy(p + dl + (dl ? 1 : 0), name, nl + 1);
	x = bsearch(&k, kept, kept_n, sizeof(*kept), by_to);
	if (!x || x->used)
		return false;
	snprintf(key, sizeof(key), "%u", x->key);
	if (renameat2(stash_fd, key, dfd, name, RENAME_NOREPLACE) < 0)
		return false;
	x->used = true;
	kept_used++;
	sk_debug("resync: \"%s\" is the copy this node had under another name", p);
	return true;
}

bool fused_moves_stash_name(size_t dl, const char *name)
{
	return dl == 0 && stash_fd >= 0 && !strcmp(name, STASH);
}

static void forget(void)
{
	for (size_t i = 0; i < kept_n; i++)
		free(kept[i].to);
	free(kept);
	kept = NULL;
	kept_n = 0;
	kept_used = 0;
}

void fused_moves_listed(size_t dl, const char *name)
{
	if (dl || strcmp(name, STASH) || stash_fd < 0)
		return;
	/* the primary has a directory of that name: it is the application's from now on */
	empty_stash(stash_fd);
	fremovexattr(stash_fd, OWNER);
	close(stash_fd);
	stash_fd = -1;
	stash_off = true;
	forget();
	sk_warn("resync: the primary's tree has %s at its root: renamed files' copies are no longer "
		"kept there this session", STASH);
}

void fused_moves_end(struct fused *f)
{
	unsigned removed;
	int rc;
	int fd = stash_fd;

	if (kept_n)
		sk_info("resync: %zu renamed files' copies kept aside, %u took their new name",
			kept_n, kept_used);
	forget();
	stash_off = false;
	stash_fd = -1;
	/* also what a node stopped in the middle of a session left */
	if (fd < 0 && (fd = openat(f->root_fd, STASH, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
							  O_CLOEXEC)) < 0)
		return;
	if (!owned(fd)) {
		close(fd);
		return;
	}
	removed = empty_stash(fd);
	close(fd);
	if ((rc = stash_rmdir(f)) < 0) {
		sk_warn("resync: cannot remove %s/%s: %s", f->root_path, STASH, strerror(-rc));
		return;
	}
	if (removed)
		sk_debug("resync: %u copies not claimed removed", removed);
}
