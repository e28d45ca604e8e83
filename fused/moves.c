/* fused/moves.c: a file renamed while the peer was away takes the peer's own copy with its name (RS_MOVE) instead of crossing the wire whole. */
#include "moves.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "log.h"
#include "rs_incr.h"
#include "util.h"

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
 * sent. A directory moves the same way, whatever its size: its copy becomes the new name when
 * a listing makes that directory, and the primary walks it whole (a moved directory is tracked
 * so, resync.c): every file in it is compared by block checksums instead of sent.
 *
 * Why it cannot make the copies differ: a move is only a base. The name it takes away (from)
 * is in a directory the rename marked (its listing, or a walk above it, makes again what
 * the primary has there); the name it gives (to) is made by a listing only where the primary
 * has a regular file, which is tracked whole (renamed, or made since) and compared, or a
 * directory, which is walked whole (moved since) and so made what the primary has. A wrong
 * base (a directory above from moved too: the peer's from is another file, or none) costs
 * bytes, never a difference. What is not claimed is removed when the session ends.
 *
 * Bounds: FUSED_MOVES_MAX files and directories remembered (more are sent whole), kept on
 * disk too (below: a primary killed or restarted while alone still has them); the secondary
 * keeps at most as many, refusing (counted) the rest. The kept copies are visible in the
 * secondary's read-only view while a resync runs, under .steadykit-moves (0700).
 */

/* ---- primary ---- */

struct hint {
	struct fused_dh h;
	char *from;
};

static pthread_mutex_t hints_mu = PTHREAD_MUTEX_INITIALIZER; /* a leaf */
static struct hint *hints;
static size_t hints_n;

/*
 * On disk: STATE_DIR/moves holds the table as records appended when a name is remembered (one
 * write() each, no flush: as the tracking file, a kill -9 keeps what the page cache holds; a
 * machine crash loses the tracking itself). Each record names the tracking's shared id
 * (fused_dirty_base) it was remembered under; a start takes back only those of the id the
 * tracking file resumed with, so a name is never used in another away period than its own
 * (where its directory is not marked). The file is emptied whenever the table is. Read back
 * as hostile: bounded, and a record that does not check ends the reading.
 * Record: "SKMV" | path length u16 | handle length u8 | 0 u8 | handle type i32 |
 *   handle [FUSED_DH_MAX] | 0 u32 | id u64 | path | check u64 (FNV-1a of all before it).
 */
#define MV_FILE "moves"
#define MV_HDR (16 + FUSED_DH_MAX + 8)
#define MV_REC_MAX (MV_HDR + PATH_MAX + 8)
#define MV_SEED 0x6d6f7665u
static int hints_fd = -1; /* the primary's; -1: not kept (a secondary, or no usable file) */

static size_t rec_fill(uint8_t *r, const struct fused_dh *h, uint64_t id, const char *from,
		       size_t len)
{
	uint16_t pl = (uint16_t)len;
	uint64_t ck;

	memset(r, 0, MV_HDR);
	memcpy(r, "SKMV", 4);
	memcpy(r + 4, &pl, 2);
	r[6] = h->len;
	memcpy(r + 8, &h->type, 4);
	memcpy(r + 12, h->b, h->len);
	memcpy(r + 16 + FUSED_DH_MAX, &id, 8);
	memcpy(r + MV_HDR, from, len);
	ck = dirty_fnv(r, MV_HDR + len, MV_SEED);
	memcpy(r + MV_HDR + len, &ck, 8);
	return MV_HDR + len + 8;
}

/* One record at b (n bytes left): its length, 0 if it does not check. */
static size_t rec_parse(const uint8_t *b, size_t n, struct fused_dh *h, uint64_t *id,
			const char **from, size_t *len)
{
	uint16_t pl;
	uint64_t ck;
	uint32_t z;

	if (n < MV_HDR + 8 || memcmp(b, "SKMV", 4))
		return 0;
	memcpy(&pl, b + 4, 2);
	memcpy(&z, b + 12 + FUSED_DH_MAX, 4);
	if (!pl || pl >= PATH_MAX || n < MV_HDR + (size_t)pl + 8 || !b[6] || b[6] > FUSED_DH_MAX ||
	    b[7] || z || memchr(b + MV_HDR, 0, pl))
		return 0;
	memcpy(&ck, b + MV_HDR + pl, 8);
	if (ck != dirty_fnv(b, MV_HDR + pl, MV_SEED))
		return 0;
	memset(h, 0, sizeof(*h));
	h->len = b[6];
	memcpy(&h->type, b + 8, 4);
	memcpy(h->b, b + 12, h->len);
	memcpy(id, b + 16 + FUSED_DH_MAX, 8);
	*from = (const char *)b + MV_HDR;
	*len = pl;
	return MV_HDR + (size_t)pl + 8;
}

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
	ok = fstat(fd, &st) == 0 &&
	     (S_ISDIR(st.st_mode) || (S_ISREG(st.st_mode) && st.st_nlink == 1 &&
				      (uint64_t)st.st_size >= FUSED_WHOLE_SUMS_MIN)) &&
	     fused_fd_dh(f, fd, h) == 0 && fused_dirty_unmoved(fused_dirty_g, h);
	close(fd);
	return ok;
}

/* hints_mu held */
static bool add_locked(const struct fused_dh *h, const char *from, size_t len)
{
	char *s;

	if (hints_n >= FUSED_MOVES_MAX || !(hints || (hints = calloc(FUSED_MOVES_MAX, sizeof(*hints)))) ||
	    !(s = strndup(from, len)))
		return false;
	hints[hints_n].h = *h;
	hints[hints_n++].from = s;
	return true;
}

void fused_moves_add(const struct fused_dh *h, const char *from, size_t len)
{
	uint64_t id = fused_dirty_base(fused_dirty_g);
	uint8_t r[MV_REC_MAX];
	size_t n = len < PATH_MAX ? rec_fill(r, h, id, from, len) : 0;

	pthread_mutex_lock(&hints_mu);
	/* not on disk (a short write): only a restart in this away period misses it */
	if (add_locked(h, from, len) && hints_fd >= 0 && n)
		(void)!sk_write_all(hints_fd, r, n);
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
	if (hints_fd >= 0 && n)
		(void)!ftruncate(hints_fd, 0);
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
		if ((S_ISDIR(st.st_mode) || (S_ISREG(st.st_mode) && st.st_nlink == 1)) &&
		    atomic_load(&f->connected))
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

void fused_moves_init(const char *state_dir, bool primary)
{
	char p[4200];
	uint8_t *buf = NULL;
	size_t got = 0, kept = 0, other = 0, off = 0;
	uint64_t id = fused_dirty_g && !fused_dirty_lost(fused_dirty_g) ?
			      fused_dirty_base(fused_dirty_g) : 0;
	struct stat st;
	int fd;

	if (snprintf(p, sizeof(p), "%s/" MV_FILE, state_dir) >= (int)sizeof(p))
		return;
	if (!primary) { /* the names only ever serve this node as a primary alone */
		unlink(p);
		return;
	}
	fd = open(p, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		sk_warn("%s: not a regular file or cannot be opened: renamed files are remembered in "
			"memory only", p);
		if (fd >= 0)
			close(fd);
		return;
	}
	/* at most a full table's worth is read: a larger file is not one we wrote */
	if (id && st.st_size > 0 && (uint64_t)st.st_size <= (uint64_t)FUSED_MOVES_MAX * MV_REC_MAX &&
	    (buf = malloc((size_t)st.st_size)))
		for (ssize_t r = 1; r > 0 && got < (size_t)st.st_size; got += r > 0 ? (size_t)r : 0)
			r = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
	pthread_mutex_lock(&hints_mu);
	while (off < got) {
		struct fused_dh h;
		const char *from;
		size_t len, n;
		uint64_t rid;

		if (!(n = rec_parse(buf + off, got - off, &h, &rid, &from, &len)))
			break;
		off += n;
		if (rid != id)
			other++;
		else if (add_locked(&h, from, len))
			kept++;
	}
	/* the file holds what the table holds, nothing else */
	if (ftruncate(fd, 0) == 0)
		for (size_t i = 0; i < hints_n; i++) {
			uint8_t r[MV_REC_MAX];

			(void)!sk_write_all(fd, r, rec_fill(r, &hints[i].h, id, hints[i].from,
							   strlen(hints[i].from)));
		}
	hints_fd = fd;
	pthread_mutex_unlock(&hints_mu);
	free(buf);
	if (kept || other || off < got)
		sk_info("%zu renamed files remembered from before this start (%s; %zu of another "
			"tracking period ignored%s)", kept, p, other,
			off < got ? "; the rest does not check: ignored" : "");
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
	bool used, dir;
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

/* Our entries in the stash fd (a directory we own): removed, directories with their trees. How many. */
static unsigned empty_stash(int fd)
{
	unsigned removed = 0;
	struct dirent *de;
	DIR *d = fdopendir(dup(fd));

	while (d && (de = readdir(d)))
		if (numeric(de->d_name) && fused_rs_remove_tree(fd, de->d_name) == 0)
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
	/* the folder itself, or what is in it, is ours: never from the wire */
	if (op->path1_len >= sizeof(STASH) - 1 && !memcmp(op->path1, STASH, sizeof(STASH) - 1) &&
	    (op->path1_len == sizeof(STASH) - 1 || op->path1[sizeof(STASH) - 1] == '/')) {
		atomic_fetch_add(&f->rejected, 1);
		sk_debug("resync: a move of \"%.*s\" refused", (int)op->path1_len, op->path1);
		return 0;
	}
	if (fused_rs_open_parent(f, op->path1, op->path1_len, &pfd, name) < 0)
		return 0; /* not here: the file comes whole */
	rc = fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW);
	if (rc < 0 || !(S_ISDIR(st.st_mode) || (S_ISREG(st.st_mode) && st.st_nlink == 1)) ||
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
	kept[kept_n].dir = S_ISDIR(st.st_mode);
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

bool fused_moves_claim(int dfd, const char *dpath, size_t dl, const char *name, bool dir)
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
	if (!x || x->used || x->dir != dir)
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
