/* test/unit/test_dirty.c: fused/dirty.c — extent merging, bounds, persistence across a reopen (kill -9 and clean stop), acknowledgement rules, corrupt and hostile tracking files. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../fused/dirty.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/sk-dirty-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char p[128];

	snprintf(p, sizeof(p), "%s/dirty", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/dirty.tmp", dir);
	unlink(p);
	rmdir(dir);
}

TestSuite(dirty, .init = setup, .fini = teardown);

static struct fused_dirty_conf conf(size_t ents, unsigned exts)
{
	return (struct fused_dirty_conf){ .max_entries = ents, .max_extents = exts,
					  .max_log_bytes = 64u << 20 };
}

static struct fused_dirty *open_d(struct fused_dirty_conf c, const char **why)
{
	struct fused_dirty *d = NULL;
	const char *w = NULL;

	cr_assert_eq(fused_dirty_open(dir, &c, &d, &w), 0);
	if (why)
		*why = w;
	return d;
}

static struct fused_dh H(unsigned i)
{
	struct fused_dh h = { .type = 1, .len = 8 };

	memcpy(h.b, &i, sizeof(i));
	return h;
}

static void note(struct fused_dirty *d, unsigned file, uint32_t flags, uint64_t off, uint64_t len)
{
	struct fused_dnote n = { .h = H(file), .flags = flags, .off = off, .len = len };

	fused_dirty_note(d, &n, 1, 0, 0);
}

struct found {
	unsigned n;
	struct fused_dentry e[64];
	uint64_t ext[64][2][8];
};

static int collect(const struct fused_dentry *e, void *arg)
{
	struct found *f = arg;

	if (f->n < 64) {
		f->e[f->n] = *e;
		for (uint32_t i = 0; i < e->n_ext && i < 8; i++) {
			f->ext[f->n][0][i] = e->ext[i].off;
			f->ext[f->n][1][i] = e->ext[i].end;
		}
		f->e[f->n].ext = NULL;
		f->n++;
	}
	return 0;
}

static int find_file(struct found *f, unsigned file)
{
	struct fused_dh h = H(file);

	for (unsigned i = 0; i < f->n; i++)
		if (f->e[i].h.len == h.len && !memcmp(f->e[i].h.b, h.b, h.len))
			return (int)i;
	return -1;
}

/*
 * What a restart after kill -9 sees: the file as the old process left it. The old
 * handle is closed only after the new one has replayed (and replaced) the file, so
 * whatever it appends at close goes to the replaced copy.
 */
static struct fused_dirty *reopen_killed(struct fused_dirty *old, const char **why)
{
	struct fused_dirty *d = open_d(conf(100, 16), why);

	fused_dirty_close(old);
	return d;
}

/* a fresh open: no file means lost (a full resync), a clear makes it usable */
static struct fused_dirty *usable(struct fused_dirty_conf c)
{
	const char *why;
	struct fused_dirty *d = open_d(c, &why);

	cr_assert(fused_dirty_lost(d), "no tracking file must mean tracking lost");
	cr_assert_not_null(why);
	cr_assert_eq(fused_dirty_clear(d, 1, 77), 0);
	cr_assert(!fused_dirty_lost(d));
	fused_dirty_peer_lost(d, 1, 0); /* the peer leaves: tracking starts */
	cr_assert(fused_dirty_tracking(d));
	return d;
}

Test(dirty, extents_merge)
{
	struct fused_dirty *d = usable(conf(100, 16));
	struct found f = { 0 };
	int i;

	note(d, 1, 0, 100, 50);  /* [100,150) */
	note(d, 1, 0, 300, 10);  /* [300,310) */
	note(d, 1, 0, 150, 10);  /* adjacent: [100,160) */
	note(d, 1, 0, 0, 10);    /* [0,10) */
	note(d, 1, 0, 305, 100); /* overlaps: [300,405) */
	note(d, 1, 0, 5, 296);   /* bridges all: [0,405) */
	note(d, 1, FUSED_DF_META, 0, 0);
	fused_dirty_foreach(d, collect, &f);
	cr_assert_eq(f.n, 1);
	cr_assert_eq(f.e[0].n_ext, 1);
	cr_assert_eq(f.ext[0][0][0], 0);
	cr_assert_eq(f.ext[0][1][0], 405);
	cr_assert_eq(f.e[0].flags, FUSED_DF_META);
	note(d, 2, 0, 1000, 1);
	note(d, 2, 0, 10, 1);
	memset(&f, 0, sizeof(f));
	fused_dirty_foreach(d, collect, &f);
	i = find_file(&f, 2);
	cr_assert_geq(i, 0);
	cr_assert_eq(f.e[i].n_ext, 2);
	cr_assert_eq(f.ext[i][0][0], 10, "extents are sorted");
	cr_assert_eq(f.ext[i][0][1], 1000);
	fused_dirty_close(d);
}

Test(dirty, per_file_bound_goes_whole)
{
	struct fused_dirty *d = usable(conf(100, 4));
	struct fused_dirty_stats s;
	struct found f = { 0 };

	for (unsigned k = 0; k < 5; k++)
		note(d, 1, 0, k * 100, 10);
	fused_dirty_foreach(d, collect, &f);
	cr_assert_eq(f.n, 1);
	cr_assert(f.e[0].flags & FUSED_DF_WHOLE, "past 4 extents the file is sent whole");
	cr_assert_eq(f.e[0].n_ext, 0);
	fused_dirty_get_stats(d, &s);
	cr_assert_eq(s.files, 1);
	cr_assert_eq(s.whole, 1);
	fused_dirty_close(d);
}

Test(dirty, past_the_extents_bound_a_file_counts_in_zones)
{
	struct fused_dirty_conf c = conf(100, 4);
	struct fused_dirty *d;
	struct found f = { 0 }, g = { 0 };
	const char *why;
	int i;

	c.max_zone_runs = 8;
	d = usable(c);
	for (unsigned k = 0; k < 6; k++) /* 6 places 1 MiB apart: past 4 exact extents */
		note(d, 1, 0, ((uint64_t)k << 20) + 100, 10);
	note(d, 1, 0, (2u << 20) + 2000, 100); /* inside a zone already tracked */
	fused_dirty_foreach(d, collect, &f);
	i = find_file(&f, 1);
	cr_assert_geq(i, 0);
	cr_assert_not(f.e[i].flags & FUSED_DF_WHOLE, "a file past its extents bound is not sent whole");
	cr_assert_eq(f.e[i].n_ext, 6, "one 4 KiB zone per place written (got %u)", f.e[i].n_ext);
	for (unsigned k = 0; k < 6; k++) {
		cr_assert_eq(f.ext[i][0][k], (uint64_t)k << 20, "zone %u starts on its 4 KiB boundary", k);
		cr_assert_eq(f.ext[i][1][k], ((uint64_t)k << 20) + 4096, "zone %u is 4 KiB", k);
	}
	/* what a restart replays is the same set */
	fused_dirty_close(d);
	d = open_d(c, &why);
	cr_assert_null(why, "tracking survives a clean stop (%s)", why ? why : "");
	fused_dirty_foreach(d, collect, &g);
	i = find_file(&g, 1);
	cr_assert_geq(i, 0);
	cr_assert_eq(g.e[i].n_ext, 6);
	cr_assert_eq(g.ext[i][0][5], 5u << 20);
	cr_assert_eq(g.ext[i][1][5], (5u << 20) + 4096);
	fused_dirty_close(d);
}

Test(dirty, zones_double_past_their_bound_then_the_file_goes_whole)
{
	struct fused_dirty_conf c = conf(100, 2);
	struct fused_dirty_stats s;
	struct fused_dirty *d;
	struct found f = { 0 };
	int i;

	c.max_zone_runs = 4;
	d = usable(c);
	for (unsigned k = 0; k < 10; k++) /* 10 places 1 MiB apart: 1 MiB zones make them one run */
		note(d, 1, 0, (uint64_t)k << 20, 1);
	for (unsigned k = 0; k < 10; k++) /* 128 MiB apart: 64 MiB zones are still 10 runs */
		note(d, 2, 0, (uint64_t)k << 27, 1);
	fused_dirty_foreach(d, collect, &f);
	i = find_file(&f, 1);
	cr_assert_geq(i, 0);
	cr_assert_not(f.e[i].flags & FUSED_DF_WHOLE);
	cr_assert_eq(f.e[i].n_ext, 1, "1 MiB zones: one run (got %u)", f.e[i].n_ext);
	cr_assert_eq(f.ext[i][0][0], 0);
	cr_assert_eq(f.ext[i][1][0], 10u << 20);
	i = find_file(&f, 2);
	cr_assert_geq(i, 0);
	cr_assert(f.e[i].flags & FUSED_DF_WHOLE, "past 64 MiB zones the file is sent whole");
	cr_assert_eq(f.e[i].n_ext, 0);
	fused_dirty_get_stats(d, &s);
	cr_assert_eq(s.whole, 1);
	fused_dirty_close(d);
}

Test(dirty, total_bound_falls_back_to_directories_then_lost)
{
	struct fused_dirty *d = usable(conf(3, 8));
	struct fused_dirty_stats s;
	struct fused_dnote n = { .flags = 0, .off = 0, .len = 1 };

	for (unsigned k = 1; k <= 3; k++)
		note(d, k, 0, 0, 1);
	/* a fourth file: its directory takes the change */
	n.h = H(4);
	n.parent = H(1000);
	fused_dirty_note(d, &n, 1, 0, 0);
	fused_dirty_get_stats(d, &s);
	cr_assert_eq(s.files, 3);
	cr_assert_eq(s.dirs, 1, "the directory stands for the file past the bound");
	cr_assert(!s.lost);
	/* directories up to the bound again, then tracking is lost */
	for (unsigned k = 0; k < 3; k++) {
		n.h = H(10 + k);
		n.parent = H(2000 + k);
		fused_dirty_note(d, &n, 1, 0, 0);
	}
	cr_assert(fused_dirty_lost(d));
	fused_dirty_close(d);
}

Test(dirty, survives_kill_and_clean_stop)
{
	struct fused_dirty *d = usable(conf(100, 16));
	struct found f = { 0 };
	const char *why;
	int i;

	note(d, 1, 0, 4096, 4096);
	note(d, 2, FUSED_DF_DIR | FUSED_DF_NS, 0, 0);
	note(d, 3, FUSED_DF_META, 0, 0);
	/* as after kill -9: the records are in the file already (the old handle is closed after) */
	d = reopen_killed(d, &why);
	cr_assert_null(why, "replay refused: %s", why);
	cr_assert_eq(fused_dirty_base(d), 77);
	fused_dirty_foreach(d, collect, &f);
	cr_assert_eq(f.n, 3);
	i = find_file(&f, 1);
	cr_assert_geq(i, 0);
	cr_assert_eq(f.e[i].n_ext, 1);
	cr_assert_eq(f.ext[i][0][0], 4096);
	cr_assert_eq(f.ext[i][1][0], 8192);
	i = find_file(&f, 2);
	cr_assert_eq(f.e[i].flags, FUSED_DF_DIR | FUSED_DF_NS);
	fused_dirty_close(d);
	d = open_d(conf(100, 16), &why);
	cr_assert_null(why);
	memset(&f, 0, sizeof(f));
	fused_dirty_foreach(d, collect, &f);
	cr_assert_eq(f.n, 3, "compaction kept every entry");
	fused_dirty_close(d);
}

Test(dirty, in_sync_kill_is_lost_clean_stop_is_not)
{
	struct fused_dirty *d = usable(conf(100, 16));
	const char *why;

	cr_assert_eq(fused_dirty_clear(d, 2, 99), 0);
	cr_assert(!fused_dirty_tracking(d));
	/* killed while in sync: what was in flight is unknown */
	d = reopen_killed(d, &why);
	cr_assert(fused_dirty_lost(d));
	cr_assert_not_null(why);
	cr_assert_eq(fused_dirty_clear(d, 1, 5), 0);
	fused_dirty_close(d); /* clean stop in sync */
	d = open_d(conf(100, 16), &why);
	cr_assert(!fused_dirty_lost(d), "a clean stop in sync keeps tracking: %s", why ? why : "");
	cr_assert_eq(fused_dirty_base(d), 5);
	fused_dirty_close(d);
}

Test(dirty, unacked_in_flight_operations_join_on_peer_loss)
{
	struct fused_dirty *d = usable(conf(100, 16));
	struct fused_dnote n = { .h = H(7), .off = 0, .len = 10 };
	struct fused_dirty_stats s;

	cr_assert_eq(fused_dirty_clear(d, 2, 1), 0); /* in sync on connection 2 */
	fused_dirty_note(d, &n, 1, 3, 5);           /* sent as seq 5 of connection 3 */
	n.h = H(8);
	fused_dirty_note(d, &n, 1, 3, 6);           /* seq 6 */
	fused_dirty_get_stats(d, &s);
	cr_assert_eq(s.files, 0, "sent operations are not dirty while the peer is there");
	fused_dirty_peer_lost(d, 3, 5);             /* 5 acknowledged, 6 not */
	fused_dirty_get_stats(d, &s);
	cr_assert_eq(s.files, 1);
	/* a frame of a lost connection noted late goes straight into the set */
	n.h = H(9);
	fused_dirty_note(d, &n, 1, 3, 7);
	fused_dirty_get_stats(d, &s);
	cr_assert_eq(s.files, 2);
	fused_dirty_close(d);
}

Test(dirty, resync_take_resumes_after_kill)
{
	struct fused_dirty *d = usable(conf(100, 16));
	struct fused_dentry e;
	uint64_t t1, t2;
	struct fused_dirty_stats s;
	const char *why;

	note(d, 1, 0, 0, 100);
	note(d, 2, 0, 0, 100);
	note(d, 3, FUSED_DF_DIR | FUSED_DF_NS, 0, 0);
	cr_assert_eq(fused_dirty_take(d, true, 4, &e, &t1), 1);
	cr_assert(e.flags & FUSED_DF_DIR);
	fused_dentry_free(&e);
	fused_dirty_sent(d, t1, 4, 10);
	cr_assert_eq(fused_dirty_take(d, false, 4, &e, &t2), 1);
	fused_dentry_free(&e);
	fused_dirty_sent(d, t2, 4, 20);
	fused_dirty_acked(d, 4, 15); /* the directory is on the peer, the file not yet */
	/* a live write during the resync, sent as seq 25: counts only if not acknowledged */
	{
		struct fused_dnote n = { .h = H(5), .off = 0, .len = 1 };

		fused_dirty_note(d, &n, 1, 4, 25);
	}
	/* kill -9 of the primary now */
	d = reopen_killed(d, &why);
	cr_assert_null(why, "%s", why);
	fused_dirty_get_stats(d, &s);
	cr_assert_eq(s.dirs, 0, "the acknowledged directory is done");
	cr_assert_eq(s.files, 3, "two files still owed (one taken, unacknowledged) + the live write");
	fused_dirty_close(d);
}

Test(dirty, resync_take_requeued_on_peer_loss)
{
	struct fused_dirty *d = usable(conf(100, 16));
	struct fused_dentry e;
	struct fused_dirty_stats s;
	uint64_t t;

	note(d, 1, 0, 0, 100);
	cr_assert_eq(fused_dirty_take(d, false, 4, &e, &t), 1);
	cr_assert_eq(e.n_ext, 1);
	cr_assert_eq(e.ext[0].end, 100);
	fused_dentry_free(&e);
	fused_dirty_sent(d, t, 4, 3);
	fused_dirty_get_stats(d, &s);
	cr_assert_eq(s.files, 1, "owed until acknowledged");
	fused_dirty_peer_lost(d, 4, 2);
	cr_assert_eq(fused_dirty_take(d, false, 4, &e, &t), -ECONNRESET);
	cr_assert_eq(fused_dirty_take(d, false, 5, &e, &t), 1, "back in the set for the next resync");
	fused_dentry_free(&e);
	fused_dirty_close(d);
}

static void write_file(const void *p, size_t n, off_t off, bool trunc)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/dirty", dir);
	fd = open(path, O_WRONLY | O_CREAT | (trunc ? O_TRUNC : 0), 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, p, n, off), (ssize_t)n);
	close(fd);
}

Test(dirty, corrupt_file_means_lost_never_a_crash)
{
	struct fused_dirty *d = usable(conf(100, 16));
	const char *why;
	uint8_t junk[4096];

	note(d, 1, 0, 0, 100);
	note(d, 2, 0, 0, 100);
	/* flip one byte of the first record */
	write_file("\xff", 1, 32 + 50, false);
	d = reopen_killed(d, &why);
	cr_assert(fused_dirty_lost(d));
	cr_assert_not_null(why);
	cr_assert(strstr(why, "corrupt"), "says why: %s", why);
	fused_dirty_close(d);

	/* garbage of every kind: refused, never trusted */
	for (unsigned seed = 1; seed < 40; seed++) {
		srand(seed);
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)rand();
		if (seed % 2)
			memcpy(junk, "SKDIRTY1", 8);
		write_file(junk, (size_t)(seed * 97) % sizeof(junk), 0, true);
		d = open_d(conf(100, 16), &why);
		cr_assert(fused_dirty_lost(d), "seed %u accepted", seed);
		fused_dirty_close(d);
	}
}

Test(dirty, torn_last_record_is_dropped)
{
	struct fused_dirty *d = usable(conf(100, 16));
	struct fused_dirty_stats s;
	const char *why;
	struct stat st;
	char path[128];

	note(d, 1, 0, 0, 100);
	snprintf(path, sizeof(path), "%s/dirty", dir);
	cr_assert_eq(stat(path, &st), 0);
	write_file("partial", 7, st.st_size, false); /* a machine crash mid-append */
	d = reopen_killed(d, &why);
	cr_assert_null(why, "%s", why);
	fused_dirty_get_stats(d, &s);
	cr_assert_eq(s.files, 1);
	fused_dirty_close(d);
}

/* The activity log: a primary killed while in sync keeps what was in flight (issue 10). */
Test(dirty, in_sync_kill_keeps_the_activity_log)
{
	struct fused_dirty_conf c = conf(100000, 16);
	struct fused_dnote a = { .h = H(9), .off = 0, .len = 100 }, b = { .h = H(10), .off = 8, .len = 8 };
	struct found f = { 0 };
	const char *why;
	struct fused_dirty *d;

	c.al = true;
	d = open_d(c, &why);
	cr_assert_eq(fused_dirty_clear(d, 2, 99), 0); /* in sync on connection 2 */
	cr_assert(!fused_dirty_tracking(d));
	fused_dirty_prelog(d, &a, 1, 2, 1);           /* staged, logged before its frame (seq 1) */
	fused_dirty_note(d, &a, 1, 2, 1);             /* sent, answered */
	fused_dirty_prelog(d, &b, 1, 2, 2);           /* killed between its frame and its note */
	d = reopen_killed(d, &why);
	cr_assert_null(why, "an in-sync kill with the activity log keeps tracking: %s", why);
	cr_assert_eq(fused_dirty_base(d), 99);
	fused_dirty_foreach(d, collect, &f);
	cr_assert_eq(f.n, 2, "both operations may be in flight (nothing says they were acked)");
	cr_assert_geq(find_file(&f, 9), 0);
	cr_assert_geq(find_file(&f, 10), 0);

	/* acked up to seq 1 when the peer was lost, then killed: only seq 2's change is owed */
	cr_assert_eq(fused_dirty_clear(d, 3, 100), 0);
	fused_dirty_prelog(d, &a, 1, 3, 1);
	fused_dirty_note(d, &a, 1, 3, 1);
	b.flags = 0;
	fused_dirty_prelog(d, &b, 1, 3, 2);
	fused_dirty_note(d, &b, 1, 3, 2);
	fused_dirty_peer_lost(d, 3, 1);
	d = reopen_killed(d, &why);
	cr_assert_null(why);
	memset(&f, 0, sizeof(f));
	fused_dirty_foreach(d, collect, &f);
	cr_assert_eq(f.n, 1);
	cr_assert_geq(find_file(&f, 10), 0);

	/* a clean stop in sync: nothing in flight, the activity log is history */
	cr_assert_eq(fused_dirty_clear(d, 4, 101), 0);
	a.flags = 0;
	fused_dirty_prelog(d, &a, 1, 4, 1);
	fused_dirty_note(d, &a, 1, 4, 1);
	fused_dirty_close(d);
	d = open_d(c, &why);
	cr_assert_null(why);
	memset(&f, 0, sizeof(f));
	fused_dirty_foreach(d, collect, &f);
	cr_assert_eq(f.n, 0);
	fused_dirty_close(d);
}

/* The activity log starts afresh as it grows: a restart resends the recent part only. */
Test(dirty, activity_log_rotates)
{
	struct fused_dirty_conf c = conf(100000, 16);
	struct fused_dirty_stats s;
	const char *why;
	struct fused_dirty *d;

	c.al = true;
	d = open_d(c, &why);
	cr_assert_eq(fused_dirty_clear(d, 2, 7), 0);
	for (unsigned i = 0; i < 50000; i++) {
		struct fused_dnote n = { .h = H(i), .off = 0, .len = 1 };

		fused_dirty_prelog(d, &n, 1, 2, i + 1);
		fused_dirty_note(d, &n, 1, 2, i + 1);
	}
	fused_dirty_get_stats(d, &s);
	cr_assert_lt(s.log_bytes, 12u << 20, "the log was rotated (%llu bytes)",
		     (unsigned long long)s.log_bytes);
	{ /* as reopen_killed, with this bound */
		struct fused_dirty *old = d;

		d = open_d(c, &why);
		fused_dirty_close(old);
	}
	cr_assert_null(why, "%s", why);
	fused_dirty_get_stats(d, &s);
	cr_assert_gt(s.files, 0);
	cr_assert_lt(s.files, 50000, "a superset of the ring and the recent records, not everything");
	fused_dirty_close(d);
}

/*
 * The application's fsync flushes the log only for records written while tracking: in sync the
 * activity log needs none (the peer acknowledged every frame before the fsync; a kill -9 needs
 * only the write()). Each record needs one flush, not one per caller.
 */
Test(dirty, activity_log_needs_no_flush_tracking_does)
{
	struct fused_dirty_conf c = conf(100000, 16);
	struct fused_dnote a = { .h = H(5), .off = 0, .len = 100 };
	struct fused_dirty_stats s;
	struct fused_dirty *d;

	c.al = true;
	d = open_d(c, NULL);
	cr_assert_eq(fused_dirty_clear(d, 2, 99), 0); /* in sync on connection 2 */
	for (uint64_t q = 1; q <= 20; q++) {
		fused_dirty_prelog(d, &a, 1, 2, q);
		a.flags = 0;
		fused_dirty_note(d, &a, 1, 2, q);
		cr_assert_eq(fused_dirty_sync(d), 0);
	}
	fused_dirty_get_stats(d, &s);
	cr_assert_eq(s.flushes, 0, "in sync: %llu flushes of the log", (unsigned long long)s.flushes);

	fused_dirty_peer_lost(d, 2, 20); /* tracking */
	note(d, 6, 0, 0, 4096);
	cr_assert_eq(fused_dirty_sync(d), 0);
	cr_assert_eq(fused_dirty_sync(d), 0); /* nothing new: no second flush */
	fused_dirty_get_stats(d, &s);
	cr_assert_eq(s.flushes, 1, "tracking: one flush for the new record (%llu)",
		     (unsigned long long)s.flushes);
	fused_dirty_close(d);
}

struct syncer {
	struct fused_dirty *d;
	unsigned base;
	int bad;
};

static void *sync_loop(void *arg)
{
	struct syncer *x = arg;

	for (unsigned i = 0; i < 200; i++) {
		note(x->d, x->base + i, 0, 0, 512);
		if (fused_dirty_sync(x->d) < 0)
			x->bad++;
	}
	return NULL;
}

/* Several threads logging and syncing at once: every sync returns, the flushes are shared. */
Test(dirty, concurrent_syncs_share_flushes)
{
	struct fused_dirty *d = usable(conf(100000, 16));
	struct syncer x[4];
	pthread_t t[4];
	struct fused_dirty_stats s;

	for (unsigned i = 0; i < 4; i++) {
		x[i] = (struct syncer){ d, 1000 + i * 1000, 0 };
		cr_assert_eq(pthread_create(&t[i], NULL, sync_loop, &x[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(x[i].bad, 0);
	}
	fused_dirty_get_stats(d, &s);
	cr_assert_geq(s.flushes, 1);
	cr_assert_leq(s.flushes, 800);
	cr_assert_eq(s.files, 800);
	fused_dirty_close(d);
}

/* An activity log written before the machine restarted means tracking lost (a full resync). */
Test(dirty, activity_log_from_another_boot_is_lost)
{
	struct fused_dirty_conf c = conf(100000, 16), c2;
	struct fused_dnote a = { .h = H(9), .off = 0, .len = 100 };
	const char *why;
	struct fused_dirty *d, *old;

	c.al = true;
	c.boot_id = 111;
	d = open_d(c, &why);
	cr_assert_eq(fused_dirty_clear(d, 2, 99), 0);
	fused_dirty_prelog(d, &a, 1, 2, 1);
	old = d;
	d = open_d(c, &why); /* killed -9, same boot: kept */
	fused_dirty_close(old);
	cr_assert_null(why, "same boot: %s", why);
	cr_assert(!fused_dirty_lost(d));
	cr_assert_eq(fused_dirty_clear(d, 3, 100), 0);
	fused_dirty_prelog(d, &a, 1, 3, 1);
	c2 = c;
	c2.boot_id = 222;
	old = d;
	d = open_d(c2, &why); /* the machine crashed while in sync */
	fused_dirty_close(old);
	cr_assert_not_null(why, "an activity log of another boot must mean tracking lost");
	cr_assert(fused_dirty_lost(d));
	fused_dirty_close(d);

	/* alone (tracking) when the machine restarted: its records were flushed by the fsyncs */
	d = usable(c);
	note(d, 3, 0, 0, 10);
	cr_assert_eq(fused_dirty_sync(d), 0);
	old = d;
	d = open_d(c2, &why);
	fused_dirty_close(old);
	cr_assert_null(why, "tracking of another boot: %s", why);
	fused_dirty_close(d);
}

/* The conf from the environment is whole: a caller's stack garbage never becomes a boot id
 * (skfused's conf is a local: a stray boot id made every restart look like another boot). */
Test(dirty, conf_env_is_whole)
{
	struct fused_dirty_conf c;

	memset(&c, 0xa5, sizeof(c));
	fused_dirty_conf_env(&c);
	cr_assert_eq(c.boot_id, 0);
	cr_assert_eq(c.max_entries, 1000000);
}

/* The activity log goes with the incremental resync, the default: on unless it is turned off. */
Test(dirty, activity_log_default_follows_the_incremental_resync)
{
	struct fused_dirty_conf c;

	unsetenv("SKFUSED_DIRTY_AL");
	unsetenv("SKFUSED_RESYNC_INCREMENTAL");
	fused_dirty_conf_env(&c);
	cr_assert(c.al, "default: the incremental resync, with its activity log");
	setenv("SKFUSED_RESYNC_INCREMENTAL", "1", 1);
	fused_dirty_conf_env(&c);
	cr_assert(c.al, "the incremental resync asked for: with its activity log");
	setenv("SKFUSED_RESYNC_INCREMENTAL", "0", 1);
	fused_dirty_conf_env(&c);
	cr_assert(!c.al, "the full resync forced: no activity log");
	setenv("SKFUSED_DIRTY_AL", "1", 1);
	fused_dirty_conf_env(&c);
	cr_assert(c.al);
	unsetenv("SKFUSED_DIRTY_AL");
	unsetenv("SKFUSED_RESYNC_INCREMENTAL");
}

/* A secondary in sync taking over: no tracking file, and it tracks from the shared id. */
Test(dirty, fresh_base_only_without_a_file)
{
	struct fused_dirty_conf c = conf(100, 16);
	struct fused_dirty *d;
	const char *why;

	c.fresh_base = 0x77;
	d = open_d(c, &why);
	cr_assert_null(why, "a missing file with a fresh base is not lost: %s", why);
	cr_assert_not(fused_dirty_lost(d));
	cr_assert(fused_dirty_tracking(d));
	cr_assert_eq(fused_dirty_base(d), 0x77);
	note(d, 1, 0, 0, 100);
	d = reopen_killed(d, &why); /* the base is the log's now */
	cr_assert_not(fused_dirty_lost(d));
	cr_assert_eq(fused_dirty_base(d), 0x77);
	fused_dirty_close(d);

	/* a file that is there but not valid is never replaced by the fresh base */
	write_file("garbage, not a tracking file", 28, 0, true);
	d = open_d(c, &why);
	cr_assert(fused_dirty_lost(d));
	cr_assert_eq(fused_dirty_base(d), 0);
	fused_dirty_close(d);
}

/* ---- the secondary's own changes on the wire (SK_RMSG_OWNLIST, libsk/replmsg.h) ---- */
#include "replmsg.h"

static size_t own_frame(uint8_t *buf, uint32_t flags, uint32_t count, const char *const *paths,
			const uint8_t *kinds, unsigned n)
{
	size_t len = SK_OWN_HDR;

	sk_rmsg_own_hdr(flags, count, buf);
	for (unsigned i = 0; i < n; i++) {
		long w = sk_rmsg_own_put(kinds[i], paths[i], strlen(paths[i]), buf + len, 4096 - len);

		cr_assert_gt(w, 0, "put %s", paths[i]);
		len += (size_t)w;
	}
	return len;
}

Test(dirty, ownlist_round_trip_and_hostile_frames)
{
	static uint8_t buf[8192];
	const char *paths[] = { "a/b", "", "c" };
	const uint8_t kinds[] = { SK_OWN_FILE, SK_OWN_DIR, SK_OWN_WALK };
	uint32_t fl, cnt;
	struct sk_rd r;
	uint8_t kind;
	const char *p;
	uint16_t l;
	size_t n = own_frame(buf, SK_OWN_F_LAST, 3, paths, kinds, 3);

	cr_assert_eq(sk_rmsg_own_decode(buf, n, &fl, &cnt, &r), 0);
	cr_assert_eq(fl, SK_OWN_F_LAST);
	cr_assert_eq(cnt, 3);
	for (unsigned i = 0; i < 3; i++) {
		cr_assert_eq(sk_rmsg_own_next(&r, &kind, &p, &l), 1);
		cr_assert_eq(kind, kinds[i]);
		cr_assert_eq(l, strlen(paths[i]));
		cr_assert(!l || !memcmp(p, paths[i], l));
	}
	cr_assert_eq(sk_rmsg_own_next(&r, &kind, &p, &l), 0);

	/* what a sender may not put */
	cr_assert_lt(sk_rmsg_own_put(SK_OWN_FILE, "", 0, buf, sizeof(buf)), 0); /* a file at the root */
	cr_assert_lt(sk_rmsg_own_put(SK_OWN_FILE, "../x", 4, buf, sizeof(buf)), 0);
	cr_assert_lt(sk_rmsg_own_put(SK_OWN_FILE, "/etc", 4, buf, sizeof(buf)), 0);
	cr_assert_lt(sk_rmsg_own_put(9, "x", 1, buf, sizeof(buf)), 0);
	cr_assert_eq(sk_rmsg_own_put(SK_OWN_FILE, "xyz", 3, buf, 5), -ENOSPC);

	/* what a receiver refuses: wrong count, unknown flags, trailing bytes, bad kinds, bad
	 * paths, lengths past the frame or past PATH_MAX, short and oversized frames */
	n = own_frame(buf, 0, 2, paths, kinds, 3);
	cr_assert_eq(sk_rmsg_own_decode(buf, n, &fl, &cnt, &r), -EBADMSG);
	n = own_frame(buf, 0x80, 3, paths, kinds, 3);
	cr_assert_eq(sk_rmsg_own_decode(buf, n, &fl, &cnt, &r), -EBADMSG);
	n = own_frame(buf, 0, 3, paths, kinds, 3);
	buf[n] = 0;
	cr_assert_eq(sk_rmsg_own_decode(buf, n + 1, &fl, &cnt, &r), -EBADMSG);
	cr_assert_eq(sk_rmsg_own_decode(buf, 4, &fl, &cnt, &r), -EBADMSG);
	cr_assert_eq(sk_rmsg_own_decode(buf, SK_OWN_FRAME_MAX + 1, &fl, &cnt, &r), -EBADMSG);
	{
		/* hand-made entries: ".." component, a NUL, kind 0, a length past the frame */
		static const uint8_t bad[][12] = {
			{ SK_OWN_FILE, 0, 4, 'a', '/', '.', '.' },
			{ SK_OWN_FILE, 0, 3, 'a', 0, 'b' },
			{ 0, 0, 1, 'a' },
			{ SK_OWN_DIR, 0x10, 0, 'a' },
			{ SK_OWN_DIR, 0xff, 0xff, 'a' },
		};
		static const size_t blen[] = { 7, 6, 4, 4, 4 };

		for (unsigned i = 0; i < sizeof(blen) / sizeof(blen[0]); i++) {
			sk_rmsg_own_hdr(0, 1, buf);
			memcpy(buf + SK_OWN_HDR, bad[i], blen[i]);
			cr_assert_eq(sk_rmsg_own_decode(buf, SK_OWN_HDR + blen[i], &fl, &cnt, &r), -EBADMSG,
				     "bad entry %u accepted", i);
		}
	}
	/* random bytes never crash and are refused unless well formed */
	for (unsigned seed = 1; seed < 200; seed++) {
		size_t len = SK_OWN_HDR + (seed * 13) % 200;

		srand(seed);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rand();
		if (sk_rmsg_own_decode(buf, len, &fl, &cnt, &r) == 0)
			while (sk_rmsg_own_next(&r, &kind, &p, &l) == 1)
				cr_assert_leq(l, SK_RMSG_PATH_MAX);
	}
}
