/* fused/inode.c: the primary's inode table: backing inodes by file handle, a bounded cache of their O_PATH fds, their paths for the peer. */
#include "fused.h"
#include "inode_int.h"
#include "resync.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"

/*
 * One node per backing inode the kernel knows. The FUSE node id is the node's
 * index in a slab (the root is 1); (dev, ino) finds an existing node, so hard
 * links share one and the kernel sees the backing inode numbers.
 *
 * A node holds no fd: it keeps its inode's file handle (name_to_handle_at) and
 * reopens it with open_by_handle_at when an fd is needed, through a bounded LRU
 * cache of O_PATH fds (virtiofsd's file-handle mode). A tree of any size then
 * costs 42 bytes per inode the kernel knows and a fixed number of fds. Where the
 * backing filesystem gives no handles (or we may not open by handle), a node
 * holds an O_PATH fd for its whole life (IN_FD), and the fd limit bounds the tree.
 *
 * Paths for the peer come from the kernel (d_path of the fd), checked against
 * the tree. An fd reopened by handle for a non-directory whose dentry left the
 * dcache is disconnected (d_path says "/"), so every non-directory also keeps
 * the directory of the last name we used for it (lookup, create, link, rename),
 * where its name is searched; a last resort searches the whole tree.
 */
struct fused_inode {
	uint64_t ino;
	uint32_t next;    /* hash chain, or free list (node index; 0 ends both) */
	uint32_t parent;  /* non-directory: the directory of its last name (holds a ref) */
	uint32_t nlookup; /* the kernel's count, unless IN_STICKY */
	uint32_t nref;    /* children whose parent this is, and short-lived holds */
	uint32_t cslot;   /* fd cache entry + 1, 0 if none */
	uint8_t htype;    /* file handle type (types above 255 are not kept: IN_FD) */
	uint8_t hlen;     /* handle bytes: inline up to HINLINE, else h holds a pointer */
	uint8_t devi;     /* index in devs[] */
	uint8_t flags;
	uint8_t h[8];     /* the handle (ext4's is 8 bytes), a pointer to it, or IN_FD's fd */
};
_Static_assert(sizeof(struct fused_inode) == 40, "a node is 40 bytes: a million of them take 38 MiB");

#define HINLINE 8
#define IN_USED 1
#define IN_DIR 2
#define IN_HASHED 4
#define IN_STICKY 8 /* never forgotten: the root, or a count that would overflow */
#define IN_FD 16
#define IN_NOCAP 32 /* has no security.capability (ops.h fused_inode_nocap) */
#define IN_TIMES 64 /* SKFUSED_MTIME=seen: written since the peer last got its times (ops.h) */

/* Bumped (under stream_mu) by every unlink, rmdir and rename: cached paths may be stale. */
uint64_t fused_path_gen = 1;

/* The slab: chunks are never freed, so a node's address is stable and readable without a lock. */
#define CHUNK_SHIFT 16
#define CHUNK_N (1u << CHUNK_SHIFT)
#define CHUNKS_MAX 4096
static struct fused_inode *chunks[CHUNKS_MAX];
static uint32_t n_alloc = 2; /* 0 is "none", 1 the root */
static uint32_t n_live;      /* nodes in use but the root (ino_mu): the status's "inodes" */
static uint32_t free_head;

static inline struct fused_inode *node(uint32_t i)
{
	return &chunks[i >> CHUNK_SHIFT][i & (CHUNK_N - 1)];
}

/* The slab and the hash table come straight from mmap: zeroed, touched only as they fill, and
 * a table outgrown goes back to the kernel (from malloc, RSS for 1M nodes varied by 12 MiB). */
static void *pages(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* (devi, ino) -> node, chained through next; at most 2 per bucket on average. Under ino_mu. */
static uint32_t *hb;
static uint32_t hmask, hcount;

/* One entry per backing filesystem met in the tree; its mount fd reopens its handles. */
#define DEVS_MAX 255
static struct {
	dev_t dev;
	int mount_id;
	int mfd;
	bool nofh; /* gives no handles: its nodes hold an fd each */
} devs[DEVS_MAX];
static unsigned ndev;
static bool fh_off; /* open_by_handle_at does not work for us at all */

/*
 * The fd cache: entries 0..cap-1, an LRU list through prev/next with entry cap
 * as its head, free entries on a list through next. pins > 0: borrowed by a
 * thread (fused_inode_acquire), never closed or reused until released; node 0
 * with pins: its node was freed while borrowed, the last release closes it.
 */
struct fdc_ent {
	int fd;
	uint32_t node;
	uint32_t pins;
	uint32_t prev, next;
};
static struct fdc_ent *fdc;
static uint32_t fdc_cap, fdc_free;
#define FDC_END UINT32_MAX
#define FDC_MAX 4096


/* ---- fd cache (ino_mu held) ---- */

static void lru_unlink(uint32_t e)
{
	fdc[fdc[e].prev].next = fdc[e].next;
	fdc[fdc[e].next].prev = fdc[e].prev;
}

static void lru_front(uint32_t e)
{
	fdc[e].prev = fdc_cap;
	fdc[e].next = fdc[fdc_cap].next;
	fdc[fdc[fdc_cap].next].prev = e;
	fdc[fdc_cap].next = e;
}

static void fdc_drop(uint32_t e)
{
	lru_unlink(e);
	close(fdc[e].fd);
	fdc[e].fd = -1;
	fdc[e].node = 0;
	fdc[e].next = fdc_free;
	fdc_free = e;
}

/* A free entry, evicting the least recently used unborrowed one if needed; FDC_END if all are borrowed. */
static uint32_t fdc_take(void)
{
	uint32_t e = fdc_free;

	if (e != FDC_END) {
		fdc_free = fdc[e].next;
		return e;
	}
	for (e = fdc[fdc_cap].prev; e != fdc_cap; e = fdc[e].prev) {
		if (fdc[e].pins)
			continue;
		if (fdc[e].node)
			node(fdc[e].node)->cslot = 0;
		lru_unlink(e);
		close(fdc[e].fd);
		return e;
	}
	return FDC_END;
}

/*
 * Cache fd as node i's (pinned or not). Returns the fd the caller must close
 * after all: the new one if a borrowed entry already serves i or nothing is free.
 */
static int fdc_put(uint32_t i, int fd, bool pin)
{
	struct fused_inode *in = node(i);
	uint32_t e;

	if (in->cslot) {
		e = in->cslot - 1;
		if (fdc[e].pins || pin)
			return fd;
		/* unborrowed: hold the name just used (of several, the old one may be gone) */
		close(fdc[e].fd);
		fdc[e].fd = fd;
		lru_unlink(e);
		lru_front(e);
		return -1;
	}
	e = fdc_take();
	if (e == FDC_END)
		return pin ? -1 : fd; /* pinned: the caller's release closes it */
	fdc[e].fd = fd;
	fdc[e].node = i;
	fdc[e].pins = pin;
	lru_front(e);
	in->cslot = e + 1;
	return -1;
}

/* ---- nodes (ino_mu held) ---- */

static uint32_t hslot(uint32_t devi, uint64_t ino)
{
	uint64_t h = (ino ^ ((uint64_t)devi << 56)) * 0x9e3779b97f4a7c15ull;

	return (uint32_t)(h >> 32) & hmask;
}

static uint32_t hash_find(uint32_t devi, uint64_t ino)
{
	uint32_t i;

	for (i = hb[hslot(devi, ino)]; i; i = node(i)->next)
		if (node(i)->ino == ino && node(i)->devi == devi)
			return i;
	return 0;
}

static void hash_remove(uint32_t i)
{
	struct fused_inode *in = node(i);
	uint32_t *pp = &hb[hslot(in->devi, in->ino)];

	while (*pp && *pp != i)
		pp = &node(*pp)->next;
	if (*pp)
		*pp = in->next;
	in->next = 0;
	in->flags &= (uint8_t)~IN_HASHED;
	hcount--;
}

static void hash_insert(uint32_t i)
{
	struct fused_inode *in = node(i);
	uint32_t *nb, nmask, j, k;

	if (hcount >= 2 * (hmask + 1) && hmask < (1u << 29) && (nb = pages(((size_t)hmask + 1) * 8))) {
		nmask = hmask * 2 + 1;
		for (j = 0; j <= hmask; j++) {
			while ((k = hb[j])) {
				struct fused_inode *x = node(k);
				uint64_t h = (x->ino ^ ((uint64_t)x->devi << 56)) * 0x9e3779b97f4a7c15ull;
				uint32_t s = (uint32_t)(h >> 32) & nmask;

				hb[j] = x->next;
				x->next = nb[s];
				nb[s] = k;
			}
		}
		munmap(hb, ((size_t)hmask + 1) * 4);
		hb = nb;
		hmask = nmask;
	}
	j = hslot(in->devi, in->ino);
	in->next = hb[j];
	hb[j] = i;
	in->flags |= IN_HASHED;
	hcount++;
}

static uint32_t node_alloc(void)
{
	uint32_t i = free_head;

	if (i) {
		free_head = node(i)->next;
	} else {
		if (n_alloc >> CHUNK_SHIFT >= CHUNKS_MAX)
			return 0;
		if (!chunks[n_alloc >> CHUNK_SHIFT] &&
		    !(chunks[n_alloc >> CHUNK_SHIFT] = pages(CHUNK_N * sizeof(struct fused_inode))))
			return 0;
		i = n_alloc++;
	}
	memset(node(i), 0, sizeof(struct fused_inode));
	node(i)->flags = IN_USED;
	n_live++;
	return i;
}

static int node_fd(const struct fused_inode *in)
{
	int fd;

	memcpy(&fd, in->h, sizeof(fd));
	return fd;
}

static const uint8_t *hbytes(const struct fused_inode *in)
{
	const uint8_t *p;

	if (in->hlen <= HINLINE)
		return in->h;
	memcpy(&p, in->h, sizeof(p));
	return p;
}

static void node_unref(uint32_t i);

static void node_free(uint32_t i)
{
	struct fused_inode *in = node(i);
	uint32_t p = in->parent;

	if (in->flags & IN_HASHED)
		hash_remove(i);
	if (in->cslot) {
		uint32_t e = in->cslot - 1;

		if (fdc[e].pins)
			fdc[e].node = 0; /* borrowed: the last release closes it */
		else
			fdc_drop(e);
		in->cslot = 0;
	}
	if (in->flags & IN_FD)
		close(node_fd(in));
	if (in->hlen > HINLINE)
		free((void *)hbytes(in));
	in->flags = 0;
	in->parent = 0;
	in->next = free_head;
	n_live--;
	free_head = i;
	if (p)
		node_unref(p);
}

static void node_maybe_free(uint32_t i)
{
	struct fused_inode *in = node(i);

	if (i != FUSE_ROOT_ID && !(in->flags & IN_STICKY) && in->nlookup == 0 && in->nref == 0)
		node_free(i);
}

static void node_unref(uint32_t i)
{
	node(i)->nref--;
	node_maybe_free(i);
}

/* A non-directory's name was just used in directory p. */
static void set_parent(uint32_t i, uint32_t p)
{
	struct fused_inode *in = node(i);
	uint32_t old = in->parent;

	if ((in->flags & IN_DIR) || old == p)
		return;
	node(p)->nref++;
	in->parent = p;
	if (old)
		node_unref(old);
}

static void bump(struct fused_inode *in)
{
	if (in->flags & IN_STICKY)
		return;
	if (in->nlookup == UINT32_MAX)
		in->flags |= IN_STICKY; /* never freed rather than freed while known */
	else
		in->nlookup++;
}

/* devs[] index of a filesystem (adding it: fd is on it), -1 if the table is full. */
static int dev_index(dev_t dev, int fd, int mount_id, int herr)
{
	unsigned d;

	for (d = 0; d < ndev; d++)
		if (devs[d].dev == dev)
			return (int)d;
	if (ndev == DEVS_MAX)
		return -1;
	devs[d].dev = dev;
	devs[d].mount_id = mount_id;
	devs[d].nofh = fh_off || mount_id < 0;
	devs[d].mfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (devs[d].mfd < 0)
		return -1;
	if (devs[d].nofh && !fh_off)
		sk_warn("backing filesystem on device %u:%u gives no file handles (%s): one fd per "
			"inode there, so its files in use are bounded by the fd limit",
			major(dev), minor(dev), strerror(herr));
	ndev++;
	return (int)d;
}

union fused_fhbuf {
	struct file_handle fh;
	uint8_t b[sizeof(struct file_handle) + MAX_HANDLE_SZ];
};

/*
 * Enter the inode fd (just opened by name in directory parent) into the table;
 * takes the fd. Returns the node index or -errno.
 */
static long node_enter(uint32_t parent, int fd, const struct stat *st, const struct file_handle *fh,
		       int mount_id, int herr)
{
	int d = dev_index(st->st_dev, fd, fh ? mount_id : -1, herr), cfd = -1;
	struct fused_inode *in;
	uint32_t i;

	if (d < 0) {
		close(fd);
		return -EMFILE;
	}
	if (fh && (devs[d].nofh || devs[d].mount_id != mount_id || (unsigned)fh->handle_type > 255))
		fh = NULL; /* another mount of that filesystem: its handles would reopen on the first */
	i = hash_find((uint32_t)d, st->st_ino);
	if (i) {
		in = node(i);
		if (in->flags & IN_FD) {
			/* several names: hold the one just used, the old one may be gone (dup2 is
			 * atomic for threads using the fd; both name the same inode) */
			if (st->st_nlink > 1)
				dup2(fd, node_fd(in));
			close(fd);
			goto found;
		}
		if (fh && in->hlen == fh->handle_bytes && in->htype == fh->handle_type &&
		    memcmp(hbytes(in), fh->f_handle, in->hlen) == 0) {
			cfd = fdc_put(i, fd, false);
			goto found;
		}
		/* the number names another inode now (the node's was deleted while the
		 * kernel still knows it): the kernel gets a new node for the new inode */
		hash_remove(i);
	}
	i = node_alloc();
	if (!i) {
		close(fd);
		return -ENOMEM;
	}
	in = node(i);
	in->ino = st->st_ino;
	in->devi = (uint8_t)d;
	if (S_ISDIR(st->st_mode))
		in->flags |= IN_DIR;
	if (fh && fh->handle_bytes > HINLINE) {
		uint8_t *p = malloc(fh->handle_bytes);

		if (p) {
			memcpy(p, fh->f_handle, fh->handle_bytes);
			memcpy(in->h, &p, sizeof(p));
		} else {
			fh = NULL;
		}
	} else if (fh) {
		memcpy(in->h, fh->f_handle, fh->handle_bytes);
	}
	if (fh) {
		in->hlen = (uint8_t)fh->handle_bytes;
		in->htype = (uint8_t)fh->handle_type;
		cfd = fdc_put(i, fd, false);
	} else {
		in->flags |= IN_FD;
		memcpy(in->h, &fd, sizeof(fd));
	}
	hash_insert(i);
found:
	if (cfd >= 0)
		close(cfd);
	bump(in);
	set_parent(i, parent);
	return i;
}

/* ---- public: table ---- */

int fused_inode_init(struct fused *f)
{
	union fused_fhbuf hb0;
	struct fused_inode *r;
	struct rlimit rl = { 0, 0 };
	struct stat st;
	int fd, mid = -1;
	uint32_t e;

	chunks[0] = pages(CHUNK_N * sizeof(struct fused_inode));
	hmask = 4095;
	hb = pages((hmask + 1) * sizeof(*hb));
	/* a quarter of the fd limit (open files, sockets and the resync need the rest) */
	fdc_cap = FDC_MAX;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 4 < fdc_cap)
		fdc_cap = (uint32_t)(rl.rlim_cur / 4);
	/* tests: 1 makes nearly every use reopen by handle, 0 forces one fd per inode */
	if (getenv("SKFUSED_FD_CACHE")) {
		fdc_cap = (uint32_t)strtoul(getenv("SKFUSED_FD_CACHE"), NULL, 10);
		fh_off = fdc_cap == 0;
	}
	if (fdc_cap < 1 || fdc_cap > (1u << 20))
		fdc_cap = 16;
	fdc = calloc((size_t)fdc_cap + 1, sizeof(*fdc));
	if (!chunks[0] || !hb || !fdc)
		return -ENOMEM;
	fdc[fdc_cap].prev = fdc[fdc_cap].next = fdc_cap;
	fdc_free = FDC_END;
	for (e = fdc_cap; e-- > 0;) {
		fdc[e].fd = -1;
		fdc[e].next = fdc_free;
		fdc_free = e;
	}

	fd = openat(f->root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	hb0.fh.handle_bytes = MAX_HANDLE_SZ;
	if (fh_off) {
		sk_warn("SKFUSED_FD_CACHE=0: one fd per inode, so the files in use are bounded by the "
			"fd limit (%lu)", (unsigned long)rl.rlim_cur);
	} else if (name_to_handle_at(fd, "", &hb0.fh, &mid, AT_EMPTY_PATH) < 0) {
		fh_off = true;
		sk_warn("backing directory gives no file handles (%s): one fd per inode, so the files in "
			"use are bounded by the fd limit (%lu)", strerror(errno), (unsigned long)rl.rlim_cur);
	} else {
		int t = open_by_handle_at(f->root_fd, &hb0.fh, O_PATH | O_CLOEXEC);

		if (t < 0) {
			fh_off = true;
			sk_warn("cannot open by file handle (%s): one fd per inode, so the files in use are "
				"bounded by the fd limit (%lu)", strerror(errno), (unsigned long)rl.rlim_cur);
		} else {
			close(t);
			sk_info("inodes by file handle, up to %u cached fds", fdc_cap);
		}
	}
	devs[0].dev = st.st_dev;
	devs[0].mount_id = mid;
	devs[0].mfd = f->root_fd;
	devs[0].nofh = fh_off;
	ndev = 1;
	r = node(FUSE_ROOT_ID);
	r->ino = st.st_ino;
	r->flags = IN_USED | IN_DIR | IN_FD | IN_STICKY;
	memcpy(r->h, &fd, sizeof(fd));
	r->nlookup = 2;
	f->ino_root = r;
	return 0;
}

/* Reopen a node's inode by handle; a non-directory is given a name if it came back without one. */
static int reopen(struct fused *f, const union fused_fhbuf *h, int mfd, uint32_t parent)
{
	char name[NAME_MAX + 1], path[PATH_MAX];
	struct stat st, st2;
	int fd, pfd, nfd = -1;

	fd = open_by_handle_at(mfd, (struct file_handle *)&h->fh, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ESTALE ? -ESTALE : -errno;
	if (!parent || fstat(fd, &st) < 0 || st.st_nlink == 0 ||
	    fused_ipath_kernel(f, fd, &st, path, sizeof(path)) >= 0)
		return fd; /* a directory, unlinked, or it already has its name */
	pfd = fused_inode_acquire(f, parent);
	if (pfd >= 0 && fused_ipath_name_in_dir(pfd, &st, name) == 0)
		nfd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	fused_inode_release(f, parent, pfd);
	if (nfd >= 0 && fstat(nfd, &st2) == 0 && st2.st_ino == st.st_ino && st2.st_dev == st.st_dev) {
		close(fd);
		return nfd;
	}
	if (nfd >= 0)
		close(nfd);
	return fd; /* disconnected: fused_inode_path searches the tree */
}

int fused_inode_acquire(struct fused *f, fuse_ino_t ino)
{
	uint32_t i = (uint32_t)ino, parent = 0, e;
	struct fused_inode *in = node(i);
	union fused_fhbuf h;
	int fd, mfd, cfd = -1;

	pthread_mutex_lock(&f->ino_mu);
	if (in->flags & IN_FD) {
		fd = node_fd(in);
		pthread_mutex_unlock(&f->ino_mu);
		return fd;
	}
	if (in->cslot) {
		e = in->cslot - 1;
		fdc[e].pins++;
		lru_unlink(e);
		lru_front(e);
		fd = fdc[e].fd;
		pthread_mutex_unlock(&f->ino_mu);
		return fd;
	}
	h.fh.handle_bytes = in->hlen;
	h.fh.handle_type = in->htype;
	memcpy(h.fh.f_handle, hbytes(in), in->hlen);
	mfd = devs[in->devi].mfd;
	if (!(in->flags & IN_DIR) && (parent = in->parent))
		node(parent)->nref++; /* held while we search it */
	pthread_mutex_unlock(&f->ino_mu);

	fd = reopen(f, &h, mfd, parent);

	pthread_mutex_lock(&f->ino_mu);
	if (parent)
		node_unref(parent);
	if (fd >= 0) {
		if (in->cslot) { /* another thread reopened it meanwhile */
			e = in->cslot - 1;
			fdc[e].pins++;
			cfd = fd;
			fd = fdc[e].fd;
		} else {
			cfd = fdc_put(i, fd, true);
		}
	}
	pthread_mutex_unlock(&f->ino_mu);
	if (cfd >= 0)
		close(cfd);
	return fd;
}

void fused_inode_release(struct fused *f, fuse_ino_t ino, int fd)
{
	struct fused_inode *in = node((uint32_t)ino);
	uint32_t e;

	if (fd < 0)
		return;
	pthread_mutex_lock(&f->ino_mu);
	if ((in->flags & IN_FD) && node_fd(in) == fd) {
		pthread_mutex_unlock(&f->ino_mu);
		return;
	}
	if (in->cslot && fdc[in->cslot - 1].fd == fd && fdc[in->cslot - 1].pins) {
		fdc[in->cslot - 1].pins--;
		pthread_mutex_unlock(&f->ino_mu);
		return;
	}
	/* rare: the node was freed while we held its fd, or the fd was never cached */
	for (e = 0; e < fdc_cap; e++) {
		if (fdc[e].fd != fd || !fdc[e].pins)
			continue;
		if (--fdc[e].pins == 0 && !fdc[e].node)
			fdc_drop(e);
		pthread_mutex_unlock(&f->ino_mu);
		return;
	}
	pthread_mutex_unlock(&f->ino_mu);
	close(fd);
}

int fused_inode_lookup(struct fused *f, fuse_ino_t parent, const char *name,
		       struct fuse_entry_param *e)
{
	union fused_fhbuf h;
	int pfd, fd, mid = -1, herr = 0;
	bool hok;
	long rc;

	memset(e, 0, sizeof(*e));
	pfd = fused_inode_acquire(f, parent);
	if (pfd < 0)
		return pfd;
	fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	rc = fd < 0 ? -errno : 0;
	fused_inode_release(f, parent, pfd);
	if (rc < 0)
		return (int)rc;
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		rc = -errno;
		close(fd);
		return (int)rc;
	}
	if (e->attr.st_dev == devs[0].dev && e->attr.st_ino == f->ino_root->ino) {
		close(fd);
		e->ino = FUSE_ROOT_ID;
		goto done;
	}
	h.fh.handle_bytes = MAX_HANDLE_SZ;
	hok = !fh_off && name_to_handle_at(fd, "", &h.fh, &mid, AT_EMPTY_PATH) == 0;
	if (!hok)
		herr = errno;
	pthread_mutex_lock(&f->ino_mu);
	rc = node_enter((uint32_t)parent, fd, &e->attr, hok ? &h.fh : NULL, mid, herr);
	pthread_mutex_unlock(&f->ino_mu);
	if (rc < 0)
		return (int)rc;
	e->ino = (fuse_ino_t)rc;
done:
	/* Everything changes through this mount, so the kernel may cache; 1 s bounds any surprise. */
	e->attr_timeout = 1.0;
	e->entry_timeout = 1.0;
	return 0;
}

void fused_inode_forget(struct fused *f, fuse_ino_t ino, uint64_t n)
{
	struct fused_inode *in = node((uint32_t)ino);

	if (ino == FUSE_ROOT_ID)
		return;
	pthread_mutex_lock(&f->ino_mu);
	if (!(in->flags & IN_STICKY)) {
		in->nlookup -= n < in->nlookup ? (uint32_t)n : in->nlookup;
		node_maybe_free((uint32_t)ino);
	}
	pthread_mutex_unlock(&f->ino_mu);
}

uint32_t fused_inode_count(struct fused *f)
{
	uint32_t n;

	pthread_mutex_lock(&f->ino_mu);
	n = n_live;
	pthread_mutex_unlock(&f->ino_mu);
	return n;
}

void fused_inode_moved(struct fused *f, fuse_ino_t newparent, int npfd, const char *newname)
{
	struct stat st;
	unsigned d;
	uint32_t i;

	if (fstatat(npfd, newname, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
		return;
	pthread_mutex_lock(&f->ino_mu);
	for (d = 0; d < ndev; d++)
		if (devs[d].dev == st.st_dev)
			break;
	if (d < ndev && (i = hash_find(d, st.st_ino)))
		set_parent(i, (uint32_t)newparent);
	pthread_mutex_unlock(&f->ino_mu);
}

/* ---- what inode_path.c needs of a node (inode_int.h) ---- */

uint64_t fused_inode_backing_ino(fuse_ino_t ino)
{
	return node((uint32_t)ino)->ino;
}

uint32_t fused_inode_hold_parent(struct fused *f, fuse_ino_t ino)
{
	uint32_t p;

	pthread_mutex_lock(&f->ino_mu);
	if ((p = node((uint32_t)ino)->parent))
		node(p)->nref++;
	pthread_mutex_unlock(&f->ino_mu);
	return p;
}

void fused_inode_drop_parent(struct fused *f, uint32_t p)
{
	pthread_mutex_lock(&f->ino_mu);
	node_unref(p);
	pthread_mutex_unlock(&f->ino_mu);
}

/* ---- "no security.capability" (ops.h) ---- */

/* Bumped by every change of a security.capability through the mount. */
static _Atomic uint64_t cap_gen = 1;

uint64_t fused_inode_cap_gen(void)
{
	return atomic_load(&cap_gen);
}

bool fused_inode_nocap(struct fused *f, fuse_ino_t ino)
{
	bool r;

	pthread_mutex_lock(&f->ino_mu);
	r = (node((uint32_t)ino)->flags & (IN_USED | IN_NOCAP)) == (IN_USED | IN_NOCAP);
	pthread_mutex_unlock(&f->ino_mu);
	return r;
}

void fused_inode_set_nocap(struct fused *f, fuse_ino_t ino, uint64_t gen)
{
	pthread_mutex_lock(&f->ino_mu);
	if ((node((uint32_t)ino)->flags & IN_USED) && gen == atomic_load(&cap_gen))
		node((uint32_t)ino)->flags |= IN_NOCAP;
	pthread_mutex_unlock(&f->ino_mu);
}

void fused_inode_cap_changed(struct fused *f)
{
	/* rare (setcap): forget every node's answer rather than find this one's other names */
	pthread_mutex_lock(&f->ino_mu);
	atomic_fetch_add(&cap_gen, 1);
	for (uint32_t i = 2; i < n_alloc; i++)
		node(i)->flags &= (uint8_t)~IN_NOCAP;
	pthread_mutex_unlock(&f->ino_mu);
}

/* ---- times owed to the peer, SKFUSED_MTIME=seen (ops.h) ---- */

void fused_inode_times_owed(struct fused *f, fuse_ino_t ino)
{
	pthread_mutex_lock(&f->ino_mu);
	if (node((uint32_t)ino)->flags & IN_USED)
		node((uint32_t)ino)->flags |= IN_TIMES;
	pthread_mutex_unlock(&f->ino_mu);
}

bool fused_inode_times_take(struct fused *f, fuse_ino_t ino, bool clear)
{
	struct fused_inode *n = node((uint32_t)ino);
	bool r;

	pthread_mutex_lock(&f->ino_mu);
	r = (n->flags & (IN_USED | IN_TIMES)) == (IN_USED | IN_TIMES);
	if (r && clear)
		n->flags &= (uint8_t)~IN_TIMES;
	pthread_mutex_unlock(&f->ino_mu);
	return r;
}

/* ---- file handles for the dirty tracker (dirty.h) ---- */

static struct fused_dh root_dh;

static int dh_from_fd(int fd, int want_mount, struct fused_dh *out)
{
	union fused_fhbuf h;
	int mid = -1;

	h.fh.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(fd, "", &h.fh, &mid, AT_EMPTY_PATH) < 0)
		return -errno;
	/* only what opens again through the root's mount is of use to the resync */
	if (mid != want_mount || h.fh.handle_bytes > FUSED_DH_MAX || h.fh.handle_bytes == 0)
		return -EXDEV;
	out->type = h.fh.handle_type;
	out->len = (uint8_t)h.fh.handle_bytes;
	memcpy(out->b, h.fh.f_handle, h.fh.handle_bytes);
	return 0;
}

int fused_fd_dh(struct fused *f, int fd, struct fused_dh *out)
{
	(void)f;
	memset(out, 0, sizeof(*out));
	if (fh_off || devs[0].mount_id < 0)
		return -ENOTSUP;
	return dh_from_fd(fd, devs[0].mount_id, out);
}

/* The node's handle as kept (no system call); 0, -ENOTSUP (no handles), -EXDEV (other fs). */
static int node_dh(uint32_t i, struct fused_dh *out)
{
	struct fused_inode *in = node(i);

	memset(out, 0, sizeof(*out));
	if (i == FUSE_ROOT_ID) {
		*out = root_dh;
		return root_dh.len ? 0 : -ENOTSUP;
	}
	if (!(in->flags & IN_USED) || (in->flags & IN_FD))
		return -ENOTSUP;
	if (in->devi != 0)
		return -EXDEV;
	if (in->hlen > FUSED_DH_MAX || !in->hlen)
		return -EXDEV;
	out->type = in->htype;
	out->len = in->hlen;
	memcpy(out->b, hbytes(in), in->hlen);
	return 0;
}

int fused_inode_dh(struct fused *f, fuse_ino_t ino, struct fused_dh *out, struct fused_dh *parent,
		   bool *is_dir)
{
	uint32_t i = (uint32_t)ino;
	int rc;

	if (!root_dh.len && !fh_off && devs[0].mount_id >= 0) {
		struct fused_dh r;

		if (dh_from_fd(f->root_fd, devs[0].mount_id, &r) == 0) {
			pthread_mutex_lock(&f->ino_mu);
			root_dh = r;
			pthread_mutex_unlock(&f->ino_mu);
		}
	}
	pthread_mutex_lock(&f->ino_mu);
	rc = node_dh(i, out);
	*is_dir = i == FUSE_ROOT_ID || (node(i)->flags & IN_DIR);
	if (parent) {
		memset(parent, 0, sizeof(*parent));
		if (rc == 0 && !*is_dir && node(i)->parent)
			node_dh(node(i)->parent, parent);
	}
	pthread_mutex_unlock(&f->ino_mu);
	return rc;
}
