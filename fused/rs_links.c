/* fused/rs_links.c: the incremental resync's hard-link groups: every name of a multiply linked file it lists is listed in the same session, so the secondary holds one inode for the group. */
#include "resync.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/*
 * Why: the secondary knows which of its inodes stands for a primary inode with several names
 * only from the names listed in the current resync session (rs_apply.c links[]). The full
 * resync lists every directory in one session; the incremental one lists only the directories
 * that changed. A name of a group met there whose other names are in directories not listed
 * (a name renamed or linked into a listed directory, or the rest listed by an earlier,
 * interrupted session) was made a separate inode, and a later write through one name reached
 * only that name on the secondary.
 *
 * So: every multiply linked non-directory a listing announces is recorded here (send_dir in
 * resync.c, under the stream lock) with the names seen; a group with fewer names seen than its
 * links has its other names found by a scan of the tree (directory entries only, no stat per
 * file) and their directories listed in the same session. Directories whose listing held such
 * names stay owed until the resync ends (rs_incr.c), so a session cut short lists them again.
 * Bounded: past the bounds the incremental resync gives way to the full one.
 */
#define GROUPS_MAX (1u << 20)      /* multiply linked files recorded per session */
#define NAMES_MAX (1u << 22)       /* their names */
#define SCAN_ENTRIES_MAX (1u << 26) /* directory entries read by one scan */
#define EXTRA_DIRS_MAX 65536       /* directories a scan adds */
#define SCANS_MAX 4                /* per completion: names linked meanwhile are found again */
#define MAX_DEPTH 512

struct lname {
	dev_t ddev;
	ino_t dino;
	uint64_t nh; /* hash of the name */
};

struct lgroup {
	dev_t dev;
	ino_t ino;      /* 0: free slot */
	uint32_t nlink; /* as last seen, or as the last scan counted */
	uint32_t n, cap;
	uint32_t found; /* names the scan in progress met */
	struct lname *v;
};

struct fused_rs_links {
	struct lgroup *g;
	size_t mask, n, names;
	uint64_t hits;
	bool over; /* a bound was passed: not sure any more, the full resync follows */
};

struct fused_rs_links *fused_rs_links_new(void)
{
	struct fused_rs_links *l = calloc(1, sizeof(*l));

	if (l && !(l->g = calloc(1024, sizeof(*l->g)))) {
		free(l);
		return NULL;
	}
	if (l)
		l->mask = 1023;
	return l;
}

void fused_rs_links_free(struct fused_rs_links *l)
{
	if (!l)
		return;
	for (size_t i = 0; i <= l->mask; i++)
		free(l->g[i].v);
	free(l->g);
	free(l);
}

uint64_t fused_rs_links_hits(const struct fused_rs_links *l)
{
	return l ? l->hits : 0;
}

static size_t slot(const struct fused_rs_links *l, dev_t dev, ino_t ino)
{
	return (size_t)(((uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev) >> 20) & l->mask;
}

static struct lgroup *find(struct fused_rs_links *l, dev_t dev, ino_t ino)
{
	for (size_t i = slot(l, dev, ino);; i = (i + 1) & l->mask) {
		if (!l->g[i].ino)
			return NULL;
		if (l->g[i].ino == ino && l->g[i].dev == dev)
			return &l->g[i];
	}
}

static int grow(struct fused_rs_links *l)
{
	size_t nm = l->mask * 2 + 1;
	struct lgroup *ng = calloc(nm + 1, sizeof(*ng));

	if (!ng)
		return -ENOMEM;
	for (size_t i = 0; i <= l->mask; i++) {
		size_t j;

		if (!l->g[i].ino)
			continue;
		j = (size_t)(((uint64_t)l->g[i].ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)l->g[i].dev) >>
			     20) & nm;
		while (ng[j].ino)
			j = (j + 1) & nm;
		ng[j] = l->g[i];
	}
	free(l->g);
	l->g = ng;
	l->mask = nm;
	return 0;
}

static struct lgroup *get(struct fused_rs_links *l, dev_t dev, ino_t ino)
{
	struct lgroup *g = find(l, dev, ino);
	size_t i;

	if (g)
		return g;
	if (l->n >= GROUPS_MAX || ((l->n + 1) * 2 > l->mask + 1 && grow(l) < 0)) {
		l->over = true;
		return NULL;
	}
	for (i = slot(l, dev, ino); l->g[i].ino; i = (i + 1) & l->mask)
		;
	l->g[i] = (struct lgroup){ .dev = dev, .ino = ino };
	l->n++;
	return &l->g[i];
}

static uint64_t name_hash(const char *s)
{
	uint64_t h = 14695981039346656037ull;

	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 1099511628211ull;
	}
	return h;
}

static bool has_name(const struct lgroup *g, dev_t ddev, ino_t dino, uint64_t nh)
{
	for (uint32_t i = 0; i < g->n; i++)
		if (g->v[i].nh == nh && g->v[i].dino == dino && g->v[i].ddev == ddev)
			return true;
	return false;
}

void fused_rs_links_seen(struct fused_rs_links *l, int dfd, const char *name, const struct stat *st)
{
	struct stat ds;
	struct lgroup *g;
	uint64_t nh = name_hash(name);

	if (!l || S_ISDIR(st->st_mode) || st->st_nlink < 2)
		return;
	l->hits++;
	if (l->over)
		return;
	if (fstat(dfd, &ds) < 0 || !(g = get(l, st->st_dev, st->st_ino))) {
		l->over = true;
		return;
	}
	g->nlink = (uint32_t)st->st_nlink;
	if (has_name(g, ds.st_dev, ds.st_ino, nh))
		return;
	if (g->n == g->cap) {
		uint32_t nc = g->cap ? g->cap * 2 : 2;
		struct lname *nv = l->names < NAMES_MAX ? realloc(g->v, nc * sizeof(*nv)) : NULL;

		if (!nv) {
			l->over = true;
			return;
		}
		g->v = nv;
		g->cap = nc;
	}
	g->v[g->n++] = (struct lname){ ds.st_dev, ds.st_ino, nh };
	l->names++;
}

/* The directories holding names of incomplete groups that this session has not listed. */
struct scan {
	struct fused_rs_links *l;
	dev_t dev;
	uint64_t entries;
	int *dirs; /* O_PATH fds */
	struct { dev_t dev; ino_t ino; } *ids;
	size_t n;
};

static bool scan_add_dir(struct scan *s, int dfd, const struct stat *ds)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->ids[i].ino == ds->st_ino && s->ids[i].dev == ds->st_dev)
			return true;
	if (s->n == EXTRA_DIRS_MAX)
		return false;
	s->dirs[s->n] = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
	if (s->dirs[s->n] < 0)
		return false;
	s->ids[s->n].dev = ds->st_dev;
	s->ids[s->n++].ino = ds->st_ino;
	return true;
}

/* One directory (dfd readable) and below. false: a bound was passed. */
static bool scan_dir(struct scan *s, int dfd, int depth)
{
	struct stat ds;
	struct dirent *de;
	DIR *d;
	int cfd;
	bool ok = true;

	if (depth > MAX_DEPTH)
		return false;
	if (fstat(dfd, &ds) < 0 || ds.st_dev != s->dev)
		return true; /* another file system inside the tree: not ours to list */
	cfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cfd < 0 || !(d = fdopendir(cfd))) {
		if (cfd >= 0)
			close(cfd);
		return true; /* gone meanwhile */
	}
	while (ok && (de = readdir(d))) {
		unsigned char t = de->d_type;
		struct lgroup *g;

		if (++s->entries > SCAN_ENTRIES_MAX) {
			ok = false;
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (t == DT_UNKNOWN) {
			struct stat st;

			if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			t = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
		}
		if (t == DT_DIR) {
			int sub = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub >= 0) {
				ok = scan_dir(s, sub, depth + 1);
				close(sub);
			}
			continue;
		}
		g = find(s->l, s->dev, (ino_t)de->d_ino);
		if (!g || g->n >= g->nlink)
			continue;
		g->found++;
		if (!has_name(g, ds.st_dev, ds.st_ino, name_hash(de->d_name)))
			ok = scan_add_dir(s, dfd, &ds);
	}
	closedir(d);
	return ok;
}

static size_t incomplete(const struct fused_rs_links *l)
{
	size_t k = 0;

	for (size_t i = 0; i <= l->mask; i++)
		if (l->g[i].ino && l->g[i].n < l->g[i].nlink)
			k++;
	return k;
}

int fused_rs_links_complete(struct walker *w)
{
	struct fused_rs_links *l = w->links;
	struct fused *f = w->f;
	struct stat rs;
	int rc = 0;

	if (!l)
		return 0;
	for (int pass = 0; pass < SCANS_MAX; pass++) {
		struct scan s = { .l = l };
		size_t want;
		int rfd;

		if (l->over)
			break;
		if (!(want = incomplete(l)))
			return 0;
		if (fstat(f->root_fd, &rs) < 0)
			return -EAGAIN;
		s.dev = rs.st_dev;
		s.dirs = calloc(EXTRA_DIRS_MAX, sizeof(*s.dirs));
		s.ids = calloc(EXTRA_DIRS_MAX, sizeof(*s.ids));
		rfd = openat(f->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		for (size_t i = 0; i <= l->mask; i++)
			l->g[i].found = 0;
		if (!s.dirs || !s.ids || rfd < 0 || !scan_dir(&s, rfd, 0))
			l->over = true;
		if (rfd >= 0)
			close(rfd);
		/* the names the tree holds now: a name removed since it was counted is not owed */
		for (size_t i = 0; !l->over && i <= l->mask; i++)
			if (l->g[i].ino && l->g[i].n < l->g[i].nlink)
				l->g[i].nlink = l->g[i].found > l->g[i].n ? l->g[i].found : l->g[i].n;
		sk_info("resync: %zu hard-link groups with names not listed yet: %zu directories to list "
			"(%llu entries scanned)", want, s.n, (unsigned long long)s.entries);
		for (size_t i = 0; i < s.n; i++) {
			int dfd = openat(s.dirs[i], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

			if (!l->over && rc == 0 && !fused_rs_live(w))
				rc = -ECONNRESET;
			if (dfd >= 0 && rc == 0 && !l->over) {
				w->shallow = true; /* a name remade without data is reported and sent */
				fused_rs_sync_dir(w, dfd, 0);
				w->shallow = false;
			}
			if (dfd >= 0)
				close(dfd);
			close(s.dirs[i]);
		}
		free(s.dirs);
		free(s.ids);
		if (rc < 0)
			return rc;
	}
	if (l->over || incomplete(l)) {
		sk_info("resync: hard-link groups past what the incremental resync can follow "
			"(%zu groups, %zu names): the full resync follows", l->n, l->names);
		return -EAGAIN;
	}
	return 0;
}
