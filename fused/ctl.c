/* fused/ctl.c: local control socket (root only): one JSON request per line -> one JSON reply per line. */
#include "fused.h"
#include "ops.h"
#include "resync.h"

#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fence.h"
#include "lease.h"
#include "log.h"

static pthread_t ctl_thread;
static int ctl_fd = -1;
static bool ctl_running;

static const char *peer_state(struct fused *f)
{
	if (f->role == FUSED_SECONDARY)
		return atomic_load(&f->peer_up) ? "connected" : "absent";
	/* the peer's last answer first: a refused peer is asked again every few seconds */
	if (f->peer_verdict == SK_GEN_V_DIVERGED)
		return "diverged"; /* the peer refused us: split brain */
	if (f->peer_verdict == SK_GEN_V_PRIMARY_OLDER)
		return "newer"; /* the peer refused us: it holds newer data */
	if (atomic_load(&f->connected))
		return atomic_load(&f->resyncing) ? "resyncing" : "connected";
	return f->peer_in_sync ? "absent" : "outdated";
}

static const char *peer_state_secondary(struct fused *f)
{
	if (f->peer_verdict == SK_GEN_V_DIVERGED)
		return "diverged";
	if (f->peer_verdict == SK_GEN_V_PRIMARY_OLDER)
		return "older";
	return atomic_load(&f->peer_up) ? "connected" : "absent";
}

/*
 * Resync progress. The rate counts from the first byte that moved (the listing before it
 * is not transfer time): the average since then for the first RATE_AVG_US, then an
 * exponential average over about RATE_TAU_US of samples (taken when the status is asked,
 * every 250 ms by the agent), so the ETA follows a steady rate closely and a pause does not
 * swing it at once. done never passes total.
 */
#define RATE_TAU_US 5000000.0
#define RATE_AVG_US 10000000
static struct {
	bool on, moving;
	uint64_t t_us, done;          /* last sample */
	uint64_t t0_us, done0;        /* when bytes started to move */
	double rate;                  /* bytes/s */
} prog;

static void progress(struct fused *f, json_object *r)
{
	uint64_t done = atomic_load(&f->rs_done_bytes), total = atomic_load(&f->rs_total_bytes);
	uint64_t now = sk_now_us();
	int64_t eta = -1;

	if (done > total)
		done = total;
	if (f->rs_state != 1) {
		prog.on = false;
	} else if (!prog.on || done < prog.done) {
		prog = (typeof(prog)){ .on = true, .t_us = now, .done = done }; /* a new pass */
	} else if (!prog.moving && done > prog.done) {
		prog.moving = true; /* counted from the last sample that saw nothing move yet */
		prog.t0_us = prog.t_us;
		prog.done0 = prog.done;
	} else if (!prog.moving) {
		prog.t_us = now;
	}
	if (prog.on && prog.moving && now - prog.t_us >= 200000) {
		double dt = (double)(now - prog.t_us), inst = (double)(done - prog.done) * 1e6 / dt;

		if (now - prog.t0_us < RATE_AVG_US || prog.rate <= 0)
			prog.rate = (double)(done - prog.done0) * 1e6 / (double)(now - prog.t0_us);
		else
			prog.rate += dt / (dt + RATE_TAU_US) * (inst - prog.rate);
		prog.t_us = now;
		prog.done = done;
	}
	if (prog.on && prog.rate > 0)
		eta = (int64_t)((double)(total - done) / prog.rate + 0.5);
	json_object_object_add(r, "done_bytes", json_object_new_int64((int64_t)done));
	json_object_object_add(r, "total_bytes", json_object_new_int64((int64_t)total));
	json_object_object_add(r, "rate_bps", json_object_new_int64(prog.on ? (int64_t)prog.rate : 0));
	json_object_object_add(r, "eta_s", json_object_new_int64(eta));
}

/* The primary's resync: which kind ran, what it sent and read; what is tracked now. */
static void rs_fields(json_object *r)
{
	struct fused_dirty_stats ds;
	json_object *t;

	json_object_object_add(r, "kind", json_object_new_string(
		fused_rs_kind_str(atomic_load(&fused_rs_stats.kind))));
	json_object_object_add(r, "sent_bytes",
			       json_object_new_int64((int64_t)atomic_load(&fused_rs_stats.sent)));
	json_object_object_add(r, "read_bytes",
			       json_object_new_int64((int64_t)atomic_load(&fused_rs_stats.read)));
	json_object_object_add(r, "listings",
			       json_object_new_int64((int64_t)atomic_load(&fused_rs_stats.dirs)));
	if (!fused_dirty_g)
		return;
	fused_dirty_get_stats(fused_dirty_g, &ds);
	t = json_object_new_object();
	json_object_object_add(t, "state", json_object_new_string(
		ds.lost ? "lost" : fused_dirty_tracking(fused_dirty_g) ? "tracking" : "idle"));
	json_object_object_add(t, "files", json_object_new_int64((int64_t)ds.files));
	json_object_object_add(t, "dirs", json_object_new_int64((int64_t)ds.dirs));
	json_object_object_add(t, "bytes", json_object_new_int64((int64_t)ds.bytes));
	json_object_object_add(t, "whole_files", json_object_new_int64((int64_t)ds.whole));
	json_object_object_add(t, "log_bytes", json_object_new_int64((int64_t)ds.log_bytes));
	json_object_object_add(r, "dirty", t);
}

static uint64_t pct(const uint64_t *h, uint64_t total, double q)
{
	uint64_t want = (uint64_t)((double)total * q), acc = 0;

	if (!total)
		return 0;
	for (int i = 0; i < FUSED_HIST; i++) {
		acc += h[i];
		if (acc > want || acc == total)
			return (uint64_t)1 << i; /* bucket's lower bound, in us */
	}
	return 0;
}

static struct json_object *status(struct fused *f)
{
	static const char *const modes[] = { "sync", "semi-sync", "async" };
	static const char *const rs[] = { "idle", "running", "done" };
	struct json_object *o = json_object_new_object(), *r, *l, *h;
	uint64_t hist[FUSED_HIST], sent, acked, bytes, total = 0;
	int64_t open;
	bool queued;
	const char *peer;

	pthread_mutex_lock(&f->pend_mu);
	memcpy(hist, f->hist, sizeof(hist));
	sent = f->seq_sent;
	acked = f->seq_acked;
	bytes = f->inflight_bytes;
	pthread_mutex_unlock(&f->pend_mu);
	if (f->role == FUSED_SECONDARY)
		sent = acked = atomic_load(&f->applied_seq);
	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "role", json_object_new_string(
		f->role == FUSED_PRIMARY ? "primary" : "secondary"));
	/* the peer's verdict is written under state_mu by the ack reader (track.c) or the receiver */
	pthread_mutex_lock(&f->state_mu);
	peer = f->role == FUSED_SECONDARY ? peer_state_secondary(f) : peer_state(f);
	pthread_mutex_unlock(&f->state_mu);
	json_object_object_add(o, "peer", json_object_new_string(peer));
	json_object_object_add(o, "mode", json_object_new_string(modes[f->mode]));
	json_object_object_add(o, "seq_sent", json_object_new_int64((int64_t)sent));
	json_object_object_add(o, "seq_acked", json_object_new_int64((int64_t)acked));
	json_object_object_add(o, "inflight_ops", json_object_new_int64((int64_t)(sent - acked)));
	json_object_object_add(o, "inflight_bytes", json_object_new_int64((int64_t)bytes));
	if (f->role == FUSED_PRIMARY) { /* fuseio.c: what the kernel asks before a write */
		json_object_object_add(o, "killpriv_v2",
				       json_object_new_boolean(atomic_load(&fused_killpriv_v2)));
		json_object_object_add(o, "cap_queries",
				       json_object_new_int64((int64_t)atomic_load(&fused_cap_queries)));
		/* repl.c: the stream's socket writes, and frames that went with a later one */
		json_object_object_add(o, "stream_writes",
				       json_object_new_int64((int64_t)atomic_load(&fused_stream_writes)));
		json_object_object_add(o, "frames_corked",
				       json_object_new_int64((int64_t)atomic_load(&fused_frames_corked)));
		/* repl.c: the ack thread woken by a sender, and the answers its poll caught */
		json_object_object_add(o, "ack_kicks",
				       json_object_new_int64((int64_t)atomic_load(&fused_ack_kicks)));
		json_object_object_add(o, "ack_spin_hits",
				       json_object_new_int64((int64_t)atomic_load(&fused_ack_spin_hits)));
		/* repl.c: WRITE frames sent as a piece of a larger write, not its last */
		json_object_object_add(o, "write_pieces",
				       json_object_new_int64((int64_t)atomic_load(&fused_write_pieces)));
		/* ops.c: SKFUSED_MTIME, and the frames that gave the peer times before a reply */
		json_object_object_add(o, "mtime", json_object_new_string(fused_mtime_seen ? "seen" : "write"));
		json_object_object_add(o, "times_frames",
				       json_object_new_int64((int64_t)atomic_load(&fused_times_frames)));
		/* fuseio.c: read replies the kernel refused by splice: sent by write(), or EIO */
		json_object_object_add(o, "read_splice_copied",
				       json_object_new_int64((int64_t)atomic_load(&fused_splice_copied)));
		json_object_object_add(o, "read_splice_eio",
				       json_object_new_int64((int64_t)atomic_load(&fused_splice_eio)));
		/* fuseio.c: what a kill now would answer with a connection error (the agent's
		 * step-down waits for none, agent/fused.c) */
		if (fused_fuse_requests(&open, &queued)) {
			json_object_object_add(o, "fuse_requests_open", json_object_new_int64(open));
			json_object_object_add(o, "fuse_requests_queued", json_object_new_boolean(queued));
		}
	} else { /* recv.c: acks left to the next piece of a write */
		json_object_object_add(o, "acks_deferred",
				       json_object_new_int64((int64_t)atomic_load(&fused_rx_acks_deferred)));
	}
	/* stages.c: where a waited write's or fsync's time went (SKFUSED_STAGES=1) */
	json_object_object_add(o, "stages", fused_stages_json(f->role == FUSED_PRIMARY));
	r = json_object_new_object();
	json_object_object_add(r, "state", json_object_new_string(rs[f->rs_state]));
	progress(f, r);
	if (f->role == FUSED_PRIMARY)
		rs_fields(r); /* fused/rs_incr.c, dirty.h */
	json_object_object_add(o, "resync", r);
	json_object_object_add(o, "gen", fused_gen_json(f));
	l = json_object_new_object();
	h = json_object_new_array();
	for (int i = 0; i < FUSED_HIST; i++) {
		json_object_array_add(h, json_object_new_int64((int64_t)hist[i]));
		total += hist[i];
	}
	json_object_object_add(l, "p50", json_object_new_int64((int64_t)pct(hist, total, 0.5)));
	json_object_object_add(l, "p99", json_object_new_int64((int64_t)pct(hist, total, 0.99)));
	json_object_object_add(l, "hist", h);
	json_object_object_add(o, "latency_us", l);
	json_object_object_add(o, "rejected_frames",
			       json_object_new_int64((int64_t)atomic_load(&f->rejected)));
	json_object_object_add(o, "peer_in_sync", json_object_new_boolean(f->peer_in_sync));
	json_object_object_add(o, "readdirplus_entries",
			       json_object_new_int64((int64_t)atomic_load(&f->readdirplus_entries)));
	json_object_object_add(o, "inodes", json_object_new_int64(fused_inode_count(f)));
	if (fused_fence_armed()) { /* the lease fence (fence.c): ms left (< 0: writes refused) */
		json_object_object_add(o, "lease_left_ms", json_object_new_int64(fused_fence_left_ms()));
		json_object_object_add(o, "lease_refused",
				       json_object_new_int64((int64_t)fused_fence_refused()));
	}
	if (f->role == FUSED_SECONDARY) {
		json_object_object_add(o, "applied_seq",
				       json_object_new_int64((int64_t)atomic_load(&f->applied_seq)));
		json_object_object_add(o, "consistent", json_object_new_boolean(f->consistent));
		/* rs_apply.c: file systems mounted in the tree where the primary has no name */
		json_object_object_add(o, "resync_mounts_left",
				       json_object_new_int64((int64_t)fused_rs_mounts_left()));
	}
	return o;
}

static struct json_object *error(const char *msg)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(msg));
	return o;
}

static void answer(struct fused *f, int fd, const char *line, size_t len)
{
	struct sk_rctl_req req;
	struct json_object *o;
	char err[160];
	const char *s;

	if (sk_rctl_parse(line, len, &req, err, sizeof(err)) < 0) {
		o = error(err);
	} else if (req.cmd == SK_RCTL_LEASE) { /* the agent's lease: fence.c */
		fused_fence_set(req.lease.valid_ms, req.lease.has_at, req.lease.at_ms);
		o = status(f);
	} else if (req.cmd == SK_RCTL_STATUS)
		o = status(f);
	else if (req.cmd == SK_RCTL_SURVIVOR && f->role != FUSED_PRIMARY)
		o = error("survivor: only a primary's copy can be chosen");
	else if (req.cmd == SK_RCTL_SURVIVOR)
		o = fused_state_set_survivor(f) < 0 ? error("cannot persist the choice") : status(f);
	else if ((req.role == SK_RCTL_PRIMARY) == (f->role == FUSED_PRIMARY))
		o = status(f);
	else
		o = error("role switch needs a restart with --role (the agent restarts skfused)");
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (write(fd, s, strlen(s)) < 0 || write(fd, "\n", 1) < 0)
		sk_debug("control client went away");
	json_object_put(o);
}

static void client(struct fused *f, int fd)
{
	char buf[SK_RCTL_LINE_MAX + 2];
	size_t have = 0;

	for (;;) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
				       { .fd = f->stop_fd, .events = POLLIN } }; /* the stop wakes it */
		char *nl;
		ssize_t n;

		if (poll(p, 2, 2000) <= 0 || atomic_load(&f->stop))
			return;
		n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0) {
			if (have) /* last request without a newline */
				answer(f, fd, buf, have);
			return;
		}
		have += (size_t)n;
		while ((nl = memchr(buf, '\n', have))) {
			size_t len = (size_t)(nl - buf);

			answer(f, fd, buf, len);
			memmove(buf, nl + 1, have - len - 1);
			have -= len + 1;
		}
		if (have >= sizeof(buf) - 1) {
			answer(f, fd, buf, have); /* too long: refused with a reason */
			return;
		}
	}
}

static void *ctl_main(void *arg)
{
	struct fused *f = arg;

	while (!atomic_load(&f->stop)) {
		struct pollfd p[2] = { { .fd = ctl_fd, .events = POLLIN },
				       { .fd = f->stop_fd, .events = POLLIN } }; /* the stop wakes it */
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		int c;

		if (poll(p, 2, 1000) <= 0 || !(p[0].revents & POLLIN))
			continue;
		c = accept4(ctl_fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 || cr.uid != 0) {
			close(c);
			continue;
		}
		client(f, c);
		close(c);
	}
	return NULL;
}

static void mkparent(const char *path)
{
	char d[PATH_MAX];
	char *s;

	snprintf(d, sizeof(d), "%s", path);
	s = strrchr(d, '/');
	if (!s || s == d)
		return;
	*s = '\0';
	for (char *p = d + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(d, 0755);
			*p = '/';
		}
	mkdir(d, 0755);
}

int fused_ctl_start(struct fused *f)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;

	if (strlen(f->ctl_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, f->ctl_path);
	mkparent(f->ctl_path);
	if (lstat(f->ctl_path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(f->ctl_path);
	ctl_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl_fd < 0)
		return -errno;
	if (bind(ctl_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(f->ctl_path, 0600) < 0 ||
	    listen(ctl_fd, 8) < 0) {
		int rc = -errno;

		sk_err("control socket %s: %s", f->ctl_path, strerror(errno));
		close(ctl_fd);
		ctl_fd = -1;
		return rc;
	}
	if (pthread_create(&ctl_thread, NULL, ctl_main, f) != 0)
		return -EAGAIN;
	ctl_running = true;
	return 0;
}

void fused_ctl_stop(struct fused *f)
{
	fused_stop(f);
	if (ctl_running)
		pthread_join(ctl_thread, NULL);
	ctl_running = false;
	if (ctl_fd >= 0) {
		close(ctl_fd);
		unlink(f->ctl_path);
		ctl_fd = -1;
	}
}
