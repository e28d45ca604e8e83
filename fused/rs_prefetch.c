/* fused/rs_prefetch.c: an incremental resync's read-ahead hints: the primary names the files it will send next, the secondary looks them up and reads their partial pages on helper threads. */
#include "rs_prefetch.h"
#include "recv.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/*
 * Why. The secondary applies frames one after the other on its receiver. For each
 * file an incremental resync sends, that thread first looks the path up (after a
 * long outage or memory pressure: a directory block and an inode read from disk),
 * then writes an extent that rarely starts or ends on a page boundary, so the kernel
 * reads the partial pages before it can copy the data in. One synchronous disk read
 * after the other, at queue depth one, while the primary and the link wait.
 *
 * The primary knows which files come next (it reads them ahead, rs_files.c): for each
 * it sends a hint well before the data, an RS_DATA frame with no data (off and len the
 * extent), which an RS_DATA never was before (a secondary without this code opens the
 * file and writes nothing). The secondary queues the hint for HELPERS threads, which
 * resolve the path beneath the root (as the receiver does: no symlinks, no escape),
 * check that it is a regular file before opening it, and ask the disk for the pages
 * the write will only partly cover (POSIX_FADV_WILLNEED, asynchronous). When the data
 * frame comes, its lookup and its partial pages are in memory. A hint changes nothing
 * on disk, is never answered and never fails the session: a full queue drops it.
 */
#define HINT_EXTENTS 8 /* hints per file: its first extents (the rest are read when written) */
#define QLEN 256       /* hints queued on the secondary; more are dropped (counted) */
#define HELPERS 4      /* lookups in flight at once (each blocks in the kernel while cold) */
#define PAGE 4096u

/* SKFUSED_RS_HINTS=0: none sent (for an A/B of the hints alone; the default sends them) */
static bool hints_on(void)
{
	static int on = -1;

	if (on < 0) {
		const char *e = getenv("SKFUSED_RS_HINTS");

		on = !(e && !strcmp(e, "0"));
	}
	return on;
}

void fused_rs_hint(struct walker *w, int fd, const struct fused_dentry *e, const struct stat *st)
{
	struct fused *f = w->f;
	uint64_t size = (uint64_t)st->st_size;
	int pl;

	if (!S_ISREG(st->st_mode) || size == 0 || !hints_on())
		return;
	pthread_mutex_lock(&f->stream_mu);
	pl = atomic_load(&f->connected) && f->conn_gen == w->gen ?
		     fused_fd_path(f, fd, w->path, sizeof(w->path)) : -ENOTCONN;
	for (uint32_t i = 0; pl > 0 && i < HINT_EXTENTS; i++) {
		struct sk_rmsg_op h = { .type = SK_RMSG_RS_DATA, .path1 = w->path,
					.path1_len = (uint16_t)pl };

		if (e->flags & FUSED_DF_WHOLE) {
			if (i > 0)
				break;
			h.len = size;
		} else {
			if (i >= e->n_ext)
				break;
			if (e->ext[i].off >= size)
				continue;
			h.off = e->ext[i].off;
			h.len = (e->ext[i].end < size ? e->ext[i].end : size) - h.off;
		}
		/* an extent that covers whole pages only reads nothing: no hint, but one per file */
		if (i > 0 && !(h.off % PAGE) && (!((h.off + h.len) % PAGE) || h.off + h.len == size))
			continue;
		fused_repl_submit(f, &h, NULL, 0, NULL, NULL);
	}
	pthread_mutex_unlock(&f->stream_mu);
}

/* ---- secondary ---- */

struct hint {
	char path[SK_RMSG_PATH_MAX + 1];
	uint16_t len;
	uint64_t off, n;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct fused *f;
	struct hint *q; /* QLEN slots, allocated with the helpers */
	size_t head, n;
	bool started, failed;
	/* this session's counts (reported at the resync's end) */
	uint64_t hints, warmed, pages, refused, dropped;
} pf = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/* One hint, on a helper thread: the lookup, then the partial pages of [off, off + n). */
static void warm(struct fused *f, const struct hint *h)
{
	struct stat st;
	char pp[64];
	uint64_t size, pages = 0;
	int op, fd;

	if (fused_apply_open_path(f->root_fd, h->path, h->len, O_PATH | O_NOFOLLOW, &op) < 0)
		goto refused; /* not there (yet): the data frame reports it as it always did */
	/* only a regular file is ever opened: a FIFO would block, a device be read as root */
	if (fstat(op, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(op);
		goto refused;
	}
	snprintf(pp, sizeof(pp), "/proc/self/fd/%d", op);
	fd = open(pp, O_RDONLY | O_NONBLOCK | O_NOATIME | O_CLOEXEC);
	close(op);
	if (fd < 0)
		goto refused;
	/*
	 * The pages the write will cover only in part and that hold data here (below our
	 * size): those the kernel must read first. Only pages of the file as it is here,
	 * so a hostile off or len asks for nothing more; an overflowing end asks nothing.
	 */
	size = (uint64_t)st.st_size;
	if (h->n <= UINT64_MAX - h->off) {
		uint64_t end = h->off + h->n, p1 = h->off / PAGE, p2 = end / PAGE;
		bool a1 = h->off % PAGE && p1 * PAGE < size;

		if (a1)
			posix_fadvise(fd, (off_t)(p1 * PAGE), PAGE, POSIX_FADV_WILLNEED);
		if (end % PAGE && p2 * PAGE < size && !(a1 && p2 == p1)) {
			posix_fadvise(fd, (off_t)(p2 * PAGE), PAGE, POSIX_FADV_WILLNEED);
			pages++;
		}
		pages += a1;
	}
	close(fd);
	pthread_mutex_lock(&pf.mu);
	pf.warmed++;
	pf.pages += pages;
	pthread_mutex_unlock(&pf.mu);
	return;
refused:
	pthread_mutex_lock(&pf.mu);
	pf.refused++;
	pthread_mutex_unlock(&pf.mu);
}

static void *helper_main(void *arg)
{
	struct hint *h = malloc(sizeof(*h));

	(void)arg;
	pthread_mutex_lock(&pf.mu);
	for (;;) {
		while (!pf.n)
			pthread_cond_wait(&pf.cv, &pf.mu);
		if (!h) { /* no room to copy a hint: drop them */
			pf.dropped += pf.n;
			pf.n = 0;
			continue;
		}
		*h = pf.q[pf.head];
		pf.head = (pf.head + 1) % QLEN;
		pf.n--;
		pthread_mutex_unlock(&pf.mu);
		warm(pf.f, h);
		pthread_mutex_lock(&pf.mu);
	}
	return NULL;
}

/* Under pf.mu, once: the queue and the helpers (detached: they sleep until the process ends). */
static bool start_helpers(struct fused *f)
{
	pthread_attr_t at;
	int started = 0;

	if (pf.started)
		return !pf.failed;
	pf.started = true;
	pf.f = f;
	pf.q = calloc(QLEN, sizeof(*pf.q));
	if (pf.q && pthread_attr_init(&at) == 0) {
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&at, 256u << 10);
		for (int i = 0; i < HELPERS; i++) {
			pthread_t t;

			started += pthread_create(&t, &at, helper_main, NULL) == 0;
		}
		pthread_attr_destroy(&at);
	}
	if (!started) {
		sk_warn("resync prefetch: no helper thread (%s): hints are dropped",
			pf.q ? "cannot create" : "out of memory");
		pf.failed = true;
	}
	return !pf.failed;
}

int fused_rs_prefetch(struct fused *f, const struct sk_rmsg_op *op)
{
	pthread_mutex_lock(&pf.mu);
	pf.hints++;
	/* the path was checked by the decoder (relative, no "..", <= SK_RMSG_PATH_MAX) */
	if (!start_helpers(f) || pf.n == QLEN || op->path1_len > SK_RMSG_PATH_MAX) {
		pf.dropped++;
	} else {
		struct hint *h = &pf.q[(pf.head + pf.n) % QLEN];

		memcpy(h->path, op->path1, op->path1_len);
		h->path[op->path1_len] = '\0';
		h->len = op->path1_len;
		h->off = op->off;
		h->n = op->len;
		pf.n++;
		pthread_cond_signal(&pf.cv);
	}
	pthread_mutex_unlock(&pf.mu);
	return 0;
}

void fused_rs_prefetch_report(void)
{
	pthread_mutex_lock(&pf.mu);
	if (pf.hints)
		sk_info("resync prefetch: %llu hints, %llu files looked up ahead (%llu partial pages "
			"asked of the disk), %llu refused, %llu dropped",
			(unsigned long long)pf.hints, (unsigned long long)pf.warmed,
			(unsigned long long)pf.pages, (unsigned long long)pf.refused,
			(unsigned long long)pf.dropped);
	pf.hints = pf.warmed = pf.pages = pf.refused = pf.dropped = 0;
	pthread_mutex_unlock(&pf.mu);
}
