/* fused/track.c: persistent replication state (peer outdated, consistency, data generations, kept-aside folder), written crash-safely. */
#include "fused.h"
#include "fault.h"
#include "ownlist.h"
#include "resync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "log.h"

static int mkdirs(const char *path)
{
	char d[PATH_MAX];

	snprintf(d, sizeof(d), "%s", path);
	for (char *p = d + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(d, 0755) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	if (mkdir(d, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* What the state file said at load (ownlist.h): this copy's last role, and the generation a
 * primary started from when its copy was a secondary's that completed its resync. */
static bool loaded_primary;
static uint64_t takeover_base;

bool fused_state_was_primary(void)
{
	return loaded_primary;
}

uint64_t fused_state_takeover_base(void)
{
	return takeover_base;
}

static uint64_t wall_s(void)
{
	return (uint64_t)time(NULL);
}

static void parse_hist(struct sk_gen *g, const char *v)
{
	char tok[32];

	g->n_hist = 0;
	while (*v && *v != '\n' && g->n_hist < SK_GEN_HIST) {
		size_t n = strcspn(v, ",\n");
		uint64_t id;

		if (n < sizeof(tok)) {
			memcpy(tok, v, n);
			tok[n] = '\0';
			if (sk_gen_id_parse(tok, &id) == 0 && id)
				g->hist[g->n_hist++] = id;
		}
		v += n;
		if (*v == ',')
			v++;
	}
}

static void path_value(const char *line, const char *key, char *out, size_t cap)
{
	size_t k = strlen(key);

	if (!strncmp(line, key, k)) {
		snprintf(out, cap, "%s", line + k);
		out[strcspn(out, "\n")] = '\0';
	}
}

/*
 * What the state file on disk says of this copy's consistency (under state_mu once the daemon
 * runs): a session's start skips its save when the file already says "not consistent"
 * (fused_state_begin_resync). Not known: no file read or written yet.
 */
static bool disk_known, disk_consistent;
/* Saves attempted (status: gen.state_saves), and those of sessions' starts (gen.start_saves). */
static atomic_uint_fast64_t saves_n, start_saves_n;

/*
 * State file: "key=value" lines. A missing file means a first start: the peer
 * is not known to be in sync, this node's data is not known to be consistent
 * with any primary (both become true only after a full resync), and it holds
 * no generation (current 0: any copy that held data is newer).
 * A file of the single-counter days (generation=N) is migrated: N becomes the
 * current id and N-1.. its history, so two migrated copies compare as before.
 */
int fused_state_load(struct fused *f)
{
	char path[PATH_MAX + 16], line[PATH_MAX + 64], tok[32];
	FILE *fp;
	int rc = mkdirs(f->state_dir);
	bool have_gen = false, was_primary = false;
	unsigned long long old_gen = 0;

	if (rc < 0)
		return rc;
	f->peer_in_sync = false;
	f->consistent = false;
	memset(&f->gen, 0, sizeof(f->gen));
	f->peer_verdict = -1;
	snprintf(path, sizeof(path), "%s/state", f->state_dir);
	disk_known = false;
	fp = fopen(path, "re");
	if (!fp) {
		if (errno != ENOENT)
			return -errno;
		goto primary;
	}
	while (fgets(line, sizeof(line), fp)) {
		unsigned long long v;

		if (sscanf(line, "peer_in_sync=%llu", &v) == 1)
			f->peer_in_sync = v != 0;
		else if (sscanf(line, "consistent=%llu", &v) == 1)
			f->consistent = v != 0;
		else if (sscanf(line, "generation=%llu", &v) == 1)
			old_gen = v;
		else if (sscanf(line, "gen_current=%20[0-9a-f]", tok) == 1 &&
			 sk_gen_id_parse(tok, &f->gen.current) == 0)
			have_gen = true;
		else if (sscanf(line, "gen_shared=%20[0-9a-f]", tok) == 1)
			sk_gen_id_parse(tok, &f->gen.shared);
		else if (!strncmp(line, "gen_history=", 12))
			parse_hist(&f->gen, line + 12);
		else if (sscanf(line, "outdated_since=%llu", &v) == 1)
			f->outdated_since = v;
		else if (sscanf(line, "survivor=%llu", &v) == 1)
			f->survivor = v != 0;
		else if (sscanf(line, "ro_mounted=%llu", &v) == 1)
			f->ro_mounted = v != 0;
		else if (!strncmp(line, "role=primary", 12))
			was_primary = true;
		path_value(line, "aside=", f->aside, sizeof(f->aside));
		path_value(line, "aside_last=", f->aside_last, sizeof(f->aside_last));
	}
	fclose(fp);
	disk_known = true; /* what the file says, as read */
	disk_consistent = f->consistent;
	loaded_primary = was_primary;
	if (f->role == FUSED_SECONDARY)
		f->survivor = false; /* a choice made for this copy as primary ends when it serves no more */
	if (!have_gen && old_gen) {
		f->gen.current = old_gen;
		f->gen.n_hist = 0;
		for (unsigned long long g = old_gen - 1; g >= 1 && f->gen.n_hist < SK_GEN_HIST; g--)
			f->gen.hist[f->gen.n_hist++] = g;
		sk_info("state: migrated generation %llu to generation ids", old_gen);
	}
primary:
	/*
	 * A copy with no generation at all (a first start) gets one now. A copy that was not
	 * primary last (a secondary taking over) starts a new generation with its first change
	 * (fused_gen_touch), so the copy it leaves behind on the other node is its ancestor once
	 * they differ, and stays equal to it while it changes nothing (a takeover undone before
	 * any write is no split brain). A primary restarting stays in its generation: alone it
	 * already moved on (or will with its first change), in sync its peer holds the same.
	 */
	if (f->role == FUSED_PRIMARY && f->gen.current == 0) {
		char id[17];

		sk_gen_new_current(&f->gen, sk_gen_random_id());
		f->peer_in_sync = false;
		f->outdated_since = wall_s();
		sk_gen_id_str(f->gen.current, id);
		sk_info("primary: new data generation %s", id);
		return fused_state_save(f);
	}
	if (f->role == FUSED_PRIMARY && !was_primary) {
		/* a secondary's copy that completed its resync is the one of its current generation
		 * (but frames in flight): tracking starts from it (dirty.h fresh_base) */
		if (f->consistent && have_gen)
			takeover_base = f->gen.current;
		f->peer_in_sync = false;
		f->outdated_since = wall_s();
		atomic_store(&f->gen_pending, true);
		sk_info("primary: a new data generation starts with the first change");
		return fused_state_save(f);
	}
	if (f->role == FUSED_PRIMARY && !f->peer_in_sync && f->gen.current == f->gen.shared)
		atomic_store(&f->gen_pending, true); /* went alone before and changed nothing since */
	if (!have_gen && old_gen)
		return fused_state_save(f);
	return 0;
}

/* A new generation is in memory but not yet on disk (under state_mu). */
static bool gen_unsaved;

/* tmp + fsync + rename + fsync(dir): after a crash the file is the old or the new one. */
static int save_locked(struct fused *f)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 16], buf[3 * PATH_MAX + 512], ids[SK_GEN_HIST * 18 + 1];
	char cur[17], sh[17];
	size_t k = 0;
	int fd, dfd, n, rc = 0;

	ids[0] = '\0';
	for (unsigned i = 0; i < f->gen.n_hist && i < SK_GEN_HIST; i++) {
		char one[17];

		sk_gen_id_str(f->gen.hist[i], one);
		k += (size_t)snprintf(ids + k, sizeof(ids) - k, "%s%s", i ? "," : "", one);
	}
	sk_gen_id_str(f->gen.current, cur);
	sk_gen_id_str(f->gen.shared, sh);
	snprintf(path, sizeof(path), "%s/state", f->state_dir);
	snprintf(tmp, sizeof(tmp), "%s/state.tmp", f->state_dir);
	n = snprintf(buf, sizeof(buf),
		     "role=%s\npeer_in_sync=%d\nconsistent=%d\ngen_current=%s\ngen_shared=%s\n"
		     "gen_history=%s\noutdated_since=%llu\nsurvivor=%d\nro_mounted=%d\n"
		     "aside=%s\naside_last=%s\n",
		     f->role == FUSED_PRIMARY ? "primary" : "secondary", f->peer_in_sync,
		     f->consistent, cur, sh, ids, (unsigned long long)f->outdated_since,
		     f->survivor, f->ro_mounted, f->aside, f->aside_last);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/* A short write would have left errno stale: sk_write_all says what happened. */
	if (fused_fault(FUSED_FAULT_STATE_WRITE))
		rc = write(fd, buf, (size_t)n / 2) < 0 ? -errno : -ENOSPC; /* half, then disk full */
	else
		rc = sk_write_all(fd, buf, (size_t)n);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	dfd = open(f->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	atomic_fetch_add(&saves_n, 1);
	if (rc < 0) {
		sk_err("cannot save state in %s: %s", f->state_dir, strerror(-rc));
	} else {
		gen_unsaved = false;
		disk_known = true;
		disk_consistent = f->consistent;
	}
	return rc;
}

int fused_state_save(struct fused *f)
{
	int rc;

	pthread_mutex_lock(&f->state_mu);
	rc = save_locked(f);
	pthread_mutex_unlock(&f->state_mu);
	return rc;
}

int fused_state_begin_resync(struct fused *f)
{
	int rc = 0;

	pthread_mutex_lock(&f->state_mu);
	f->consistent = false;
	/*
	 * Once per resync, not once per session: a session that resumes an interrupted resync
	 * finds "not consistent" on disk already, and its start costs no fsync (at load, the
	 * four of a save could outlast the primary's latency budget before the START's ack).
	 */
	if (!disk_known || disk_consistent) {
		rc = save_locked(f);
		atomic_fetch_add(&start_saves_n, 1);
	}
	pthread_mutex_unlock(&f->state_mu);
	return rc;
}

void fused_state_set_in_sync(struct fused *f, bool v)
{
	pthread_mutex_lock(&f->state_mu);
	if (f->peer_in_sync != v) {
		f->peer_in_sync = v;
		if (!v) {
			/* our data moves on without the peer: its first change starts a new
			 * generation (fused_gen_touch), the one the peer holds is its ancestor */
			atomic_store(&f->gen_pending, true);
			f->outdated_since = wall_s();
		} else {
			atomic_store(&f->gen_pending, false);
			f->gen.shared = f->gen.current;
			f->outdated_since = 0;
			if (f->survivor)
				sk_info("the peer took this copy (the operator's survivor)");
			f->survivor = false;
		}
		save_locked(f);
	}
	pthread_mutex_unlock(&f->state_mu);
}

void fused_gen_touch(struct fused *f)
{
	if (!atomic_load(&f->gen_pending))
		return;
	pthread_mutex_lock(&f->state_mu);
	if (atomic_load(&f->gen_pending) && !f->peer_in_sync && f->role == FUSED_PRIMARY) {
		char id[17];

		if (!gen_unsaved)
			sk_gen_new_current(&f->gen, sk_gen_random_id());
		sk_gen_id_str(f->gen.current, id);
		if (save_locked(f) < 0) {
			/* Until it is on disk, a crash brings this copy back in the generation its
			 * peer holds too, and they would look equal: the next change tries again. */
			if (!gen_unsaved)
				sk_err("new data generation %s not saved; tried again with the next change", id);
			gen_unsaved = true;
			pthread_mutex_unlock(&f->state_mu);
			return;
		}
		gen_unsaved = false;
		sk_info("first change without the peer: new data generation %s", id);
	}
	atomic_store(&f->gen_pending, false);
	pthread_mutex_unlock(&f->state_mu);
}

int fused_state_set_survivor(struct fused *f)
{
	int rc = 0;

	pthread_mutex_lock(&f->state_mu);
	if (!f->survivor) {
		f->survivor = true;
		rc = save_locked(f);
	}
	pthread_mutex_unlock(&f->state_mu);
	if (rc == 0) {
		sk_warn("operator: this copy is the survivor; a diverged or newer peer takes it and "
			"keeps its own changes aside");
		atomic_store(&f->wake, true);
	}
	return rc;
}

/* ---- generations on connect ---- */

int fused_gen_on_start(struct fused *f, const struct sk_gen_wire *prim, bool survivor)
{
	enum sk_gen_rel rel;
	char mine[17], theirs[17], sh[17];
	int v;

	pthread_mutex_lock(&f->state_mu);
	if (!prim) {
		/* a primary older than generations: as before them, it is the reference */
		f->peer_gen_known = false;
		f->peer_verdict = SK_GEN_V_OK;
		f->peer_verdict_s = wall_s();
		pthread_mutex_unlock(&f->state_mu);
		sk_warn("the primary sends no data generation (older skfused): taking its copy");
		return SK_GEN_V_OK;
	}
	f->peer_gen = *prim;
	f->peer_gen_known = true;
	rel = sk_gen_classify(&f->gen, &prim->g);
	sk_gen_id_str(f->gen.current, mine);
	sk_gen_id_str(prim->g.current, theirs);
	sk_gen_id_str(f->gen.shared, sh);
	if (rel == SK_GEN_EQUAL || rel == SK_GEN_PEER_NEWER)
		v = SK_GEN_V_OK;
	else if (f->aside[0] || survivor)
		v = SK_GEN_V_FORCED; /* a forced resync, begun now or resumed */
	else
		v = rel == SK_GEN_DIVERGED ? SK_GEN_V_DIVERGED : SK_GEN_V_PRIMARY_OLDER;
	f->peer_verdict = v;
	f->peer_verdict_s = wall_s();
	pthread_mutex_unlock(&f->state_mu);
	if (v == SK_GEN_V_DIVERGED)
		sk_warn("refusing the primary: the copies diverged (split brain): ours %s, the "
			"primary's %s, last shared %s; nothing is resynced until an operator runs "
			"skctl prim --force on the node whose data survives", mine, theirs, sh);
	else if (v == SK_GEN_V_PRIMARY_OLDER)
		sk_warn("refusing the primary: its copy (%s) is older than ours (%s); only skctl prim "
			"--force on it makes it the reference", theirs, mine);
	else if (v == SK_GEN_V_FORCED && fused_aside_begin(f) < 0) {
		/* nowhere to keep our changes: refuse rather than lose them */
		pthread_mutex_lock(&f->state_mu);
		f->peer_verdict = SK_GEN_V_DIVERGED;
		pthread_mutex_unlock(&f->state_mu);
		return SK_GEN_V_DIVERGED;
	}
	else if (v == SK_GEN_V_FORCED)
		sk_warn("the primary is the operator's survivor (%s over ours %s): what the resync "
			"changes or removes here is kept first in %s", theirs, mine, f->aside);
	return v;
}

void fused_gen_adopt_peer(struct fused *f)
{
	pthread_mutex_lock(&f->state_mu);
	if (f->peer_gen_known) {
		f->gen = f->peer_gen.g;
		f->gen.shared = f->gen.current;
	}
	pthread_mutex_unlock(&f->state_mu);
	fused_aside_end(f);
	fused_state_save(f);
	fused_own_done(f); /* this copy is the primary's now: its own changes are history */
}

void fused_gen_on_answer(struct fused *f, const struct sk_gen_wire *w)
{
	pthread_mutex_lock(&f->state_mu);
	f->peer_gen = *w;
	f->peer_gen_known = true;
	f->peer_verdict = w->verdict;
	f->peer_verdict_s = wall_s();
	pthread_mutex_unlock(&f->state_mu);
	if (w->verdict == SK_GEN_V_DIVERGED || w->verdict == SK_GEN_V_PRIMARY_OLDER) {
		char mine[17], theirs[17];

		sk_gen_id_str(f->gen.current, mine);
		sk_gen_id_str(w->g.current, theirs);
		sk_warn("peer %s (ours %s, the peer's %s); skctl prim --force on the node whose data "
			"survives", sk_gen_verdict_str(w->verdict), mine, theirs);
	}
}

static json_object *gen_obj(const struct sk_gen *g)
{
	json_object *o = json_object_new_object(), *h = json_object_new_array();
	char s[17];

	sk_gen_id_str(g->current, s);
	json_object_object_add(o, "current", json_object_new_string(s));
	sk_gen_id_str(g->shared, s);
	json_object_object_add(o, "shared", json_object_new_string(s));
	for (unsigned i = 0; i < g->n_hist && i < SK_GEN_HIST; i++) {
		sk_gen_id_str(g->hist[i], s);
		json_object_array_add(h, json_object_new_string(s));
	}
	json_object_object_add(o, "history", h);
	return o;
}

json_object *fused_gen_json(struct fused *f)
{
	json_object *o;
	uint64_t files, bytes;

	/* what this copy changed since the shared generation (the primary's tracker, or the
	 * secondary's kept list); absent when not known. Before state_mu: it reads the tracker. */
	if (f->role == FUSED_PRIMARY)
		fused_own_primary_figures(f, &files, &bytes);
	else
		fused_own_figures(&files, &bytes);
	pthread_mutex_lock(&f->state_mu);
	o = gen_obj(&f->gen);
	json_object_object_add(o, "outdated_since", json_object_new_int64((int64_t)f->outdated_since));
	json_object_object_add(o, "survivor", json_object_new_boolean(f->survivor));
	if (f->peer_gen_known) {
		json_object *p = gen_obj(&f->peer_gen.g);

		if (f->peer_gen.changed_files != SK_GEN_UNKNOWN)
			json_object_object_add(p, "changed_files",
					       json_object_new_int64((int64_t)f->peer_gen.changed_files));
		if (f->peer_gen.changed_bytes != SK_GEN_UNKNOWN)
			json_object_object_add(p, "changed_bytes",
					       json_object_new_int64((int64_t)f->peer_gen.changed_bytes));
		json_object_object_add(o, "peer", p);
		/* how this copy relates to the peer's, in one word */
		json_object_object_add(o, "relation", json_object_new_string(
			sk_gen_rel_str(sk_gen_classify(&f->gen, &f->peer_gen.g))));
	}
	{
		if (files != SK_GEN_UNKNOWN)
			json_object_object_add(o, "changed_files", json_object_new_int64((int64_t)files));
		if (bytes != SK_GEN_UNKNOWN)
			json_object_object_add(o, "changed_bytes", json_object_new_int64((int64_t)bytes));
	}
	if (f->peer_verdict >= 0) {
		json_object_object_add(o, "verdict", json_object_new_string(
			f->peer_verdict == SK_GEN_V_OK ? "ok" :
			f->peer_verdict == SK_GEN_V_DIVERGED ? "diverged" :
			f->peer_verdict == SK_GEN_V_PRIMARY_OLDER ? "primary-older" : "forced"));
		json_object_object_add(o, "verdict_at", json_object_new_int64((int64_t)f->peer_verdict_s));
	}
	/* state file writes (each a write, two fsyncs and a rename), and those at a session's start */
	json_object_object_add(o, "state_saves", json_object_new_int64((int64_t)atomic_load(&saves_n)));
	json_object_object_add(o, "start_saves",
			       json_object_new_int64((int64_t)atomic_load(&start_saves_n)));
	if (f->aside[0])
		json_object_object_add(o, "aside", json_object_new_string(f->aside));
	if (f->aside_last[0])
		json_object_object_add(o, "aside_last", json_object_new_string(f->aside_last));
	pthread_mutex_unlock(&f->state_mu);
	return o;
}
