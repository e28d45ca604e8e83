/* fused/dirty.h: persistent dirty tracking of the primary: what changed while the peer was not in sync (extents, metadata, namespace), bounded, crash-safe. */
#ifndef FUSED_DIRTY_H
#define FUSED_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * What is tracked. Objects are named by their file handle (name_to_handle_at on
 * the backing filesystem), never by path: a path changes with every rename, a
 * handle does not, and a deleted object's handle no longer opens (ESTALE), so
 * nothing stale is ever sent.
 *
 *  - a file: the exact byte ranges written, truncated, fallocated or copied into
 *    (merged extents), FUSED_DF_META (mode, owner, times, xattrs, size), and
 *    FUSED_DF_WHOLE (all of it: past the zones' bound, a rename or a hard link; from 1 MiB
 *    compared by block checksums with the peer's file at its path, rs_files.c, which for a
 *    renamed file can be the peer's copy moved there, moves.c);
 *  - a directory: FUSED_DF_NS (a name in it was created, removed, renamed, linked),
 *    FUSED_DF_WALK (new, moved, or standing in for files past the bound: its whole
 *    subtree is compared by block checksums), FUSED_DF_META.
 *
 * Persistence: STATE_DIR/dirty, a 32-byte header then fixed 120-byte records
 * appended with write() before the operation is answered (so a kill -9 of skfused
 * loses nothing), fdatasync'd when the application syncs if records written while
 * tracking are not on disk yet (fused_dirty_sync; the activity log needs no flush). Each
 * record carries a checksum keyed by the file's salt. At open the file is replayed,
 * checked and rewritten compacted (temporary file, fsync, rename). A missing,
 * truncated-in-the-middle, corrupt, foreign or oversized file, or one left by a
 * process killed while the peer was in sync (operations in flight then were not
 * recorded), means "tracking lost": the next resync is the full checksum one.
 *
 * Operations sent to a connected peer are kept in memory until acknowledged (a
 * ring by sequence number): when the peer is lost, the unacknowledged ones join
 * the dirty set. While the peer is in sync they are also logged as "live" records
 * (the activity log, fused_dirty_prelog), the log starting afresh (a snapshot with
 * the ring's notes) every AL_ROTATE bytes: a kill -9 of a connected primary keeps
 * its tracking (state ALOG), the in-flight part being a superset. An ALOG state
 * written before the machine last booted means tracking lost: a machine crash may
 * have kept data pages and dropped the log's. During a resync they are also logged as "live" records that count
 * only if their sequence number was not acknowledged (ACK records), and entries
 * the resync has sent are logged as "dropped once acknowledged": a primary killed
 * during a resync resumes from what is still unacknowledged.
 *
 * Bounds (fused_dirty_conf): per file at most max_extents exact extents; past them the file's
 * extents are rounded out to 4 KiB zones (max_zone_runs runs of zones at most, the zones
 * doubling when they would be more, up to 64 MiB), then WHOLE: a database file written in
 * thousands of places while the peer is away costs its changed zones, not the file;
 * at most max_entries entries: past it, a file's change marks its directory WALK
 * instead (per-directory marks, up to max_entries more); past that, or a log over
 * max_log_bytes, tracking is lost.
 *
 * Locking: one internal mutex, a leaf (taken under stream_mu, peer_mu or nothing).
 */

#define FUSED_DH_MAX 32 /* handle bytes kept; a larger handle means tracking is lost */

struct fused_dh {
	int32_t type;
	uint8_t len; /* 0: none */
	uint8_t b[FUSED_DH_MAX];
};

#define FUSED_DF_META 0x01u
#define FUSED_DF_NS 0x02u
#define FUSED_DF_WALK 0x04u
#define FUSED_DF_WHOLE 0x08u
#define FUSED_DF_DIR 0x10u
#define FUSED_DF__ALL 0x1fu
#define FUSED_DF_PRE 0x80u /* internal: already in the activity log (fused_dirty_prelog) */

/* One change: flags for h, and the extent [off, off + len) if len > 0. */
struct fused_dnote {
	struct fused_dh h;
	struct fused_dh parent; /* a file's directory (for the per-directory fallback); may be empty */
	uint32_t flags;
	uint64_t off, len;
	uint64_t seq_pre; /* internal: the sequence number it was prelogged with */
};

struct fused_dirty_conf {
	size_t max_entries;      /* default 1 000 000 (SKFUSED_DIRTY_MAX) */
	unsigned max_extents;    /* per file, default 64 (SKFUSED_DIRTY_EXTENTS) */
	unsigned max_zone_runs;  /* per file past max_extents, default 16384 (SKFUSED_DIRTY_ZONE_RUNS); 0: WHOLE */
	uint64_t max_log_bytes;  /* default 1 GiB */
	bool al;                 /* activity log while in sync: SKFUSED_DIRTY_AL=1/0, else as SKFUSED_RESYNC_INCREMENTAL (on unless 0) */
	uint64_t boot_id;        /* 0: this machine's (/proc/sys/kernel/random/boot_id); tests set others */
	/*
	 * No tracking file at all: start tracking from this shared id instead of "lost" (0: lost).
	 * A secondary that completed its resync and takes over holds exactly the copy of that id
	 * but what was in flight, which the old primary's own list (SK_RMSG_OWNLIST) covers.
	 */
	uint64_t fresh_base;
};

struct fused_dirty;

/* One tracked object as the resync (or a caller listing the set) sees it. */
struct fused_dentry {
	struct fused_dh h;
	uint32_t flags;
	uint32_t n_ext;
	struct { uint64_t off, end; } *ext; /* sorted, disjoint, not adjacent */
};

/*
 * Open (create) STATE_DIR/dirty, replay and compact it. Always gives a tracker
 * unless memory runs out; *why (static text) says why tracking is lost, or NULL.
 * The tracker starts tracking (the peer is not connected yet).
 */
int fused_dirty_open(const char *state_dir, const struct fused_dirty_conf *c,
		     struct fused_dirty **out, const char **why);
/* Conf from the environment (SKFUSED_DIRTY_MAX, SKFUSED_DIRTY_EXTENTS), defaults otherwise. */
void fused_dirty_conf_env(struct fused_dirty_conf *c);
/* Clean stop: records that nothing is in flight when the peer is in sync; frees. */
void fused_dirty_close(struct fused_dirty *d);

bool fused_dirty_lost(struct fused_dirty *d);
/* Why tracking was lost (a constant string), NULL while it is not. */
const char *fused_dirty_lost_why(struct fused_dirty *d);
bool fused_dirty_tracking(struct fused_dirty *d);
/*
 * While tracking: the object h is not tracked whole (it was not made, renamed or linked since
 * the shared id, nor written past the zones' bound), so the name it has now is the one the
 * peer's copy has, unless a directory above it moved (fused/moves.c).
 */
bool fused_dirty_unmoved(struct fused_dirty *d, const struct fused_dh *h);
/* The resync id both copies held when last in sync (0: none). */
uint64_t fused_dirty_base(struct fused_dirty *d);
/* FNV-1a from seed: the check of this node's own state files' records (not a MAC). */
uint64_t dirty_fnv(const void *p, size_t n, uint64_t seed);
/* Mark tracking lost (logged once with why): the next resync is the full one. */
void fused_dirty_set_lost(struct fused_dirty *d, const char *why);

/*
 * An operation's changes, after it was applied and (maybe) sent, before it is
 * answered. conn/seq: the connection and sequence number of its last frame if it
 * was sent (conn 0: not sent). Sent: kept in the ring (and logged as live while
 * tracking); not sent: added to the set while tracking.
 */
void fused_dirty_note(struct fused_dirty *d, const struct fused_dnote *n, unsigned count,
		      uint64_t conn, uint64_t seq);
/*
 * The data generation of the file h, for the resync's read ahead (rs_files.c): a counter per
 * slot of hashed file handles, bumped by fused_dirty_note for every non-directory an operation
 * changed (operations note under the stream lock, after their local apply), plus one counter
 * for all, bumped when a change could not be noted (tracking lost). Read under the stream lock
 * before a read outside it and again before its data is sent: equal means no operation
 * changed the file in between (a collision only makes it read again).
 */
uint64_t fused_dirty_data_gen(struct fused_dirty *d, const struct fused_dh *h);
/*
 * Activity log (as DRBD's): while the peer is in sync, an operation's changes staged before
 * its first frame (seq_first) goes out are appended as LIVE records first, one write(); the
 * rest follow at fused_dirty_note. Marks the notes logged (they are not logged again). A
 * primary killed while in sync finds them at its restart (every one whose frames were not
 * acknowledged, or all since the last rotation of the log) and resyncs incrementally.
 */
void fused_dirty_prelog(struct fused_dirty *d, struct fused_dnote *n, unsigned count,
			uint64_t conn, uint64_t seq_first);
/* The peer of connection conn is gone; frames up to acked were acknowledged. Tracking starts. */
void fused_dirty_peer_lost(struct fused_dirty *d, uint64_t conn, uint64_t acked);
/* Frames up to acked of conn are acknowledged (logged; confirms what the resync sent). */
void fused_dirty_acked(struct fused_dirty *d, uint64_t conn, uint64_t acked);
/*
 * The application asked for durability: fdatasync the log if records written while tracking
 * are not on disk yet (the activity log, in sync, needs none). The flush runs outside the
 * tracker's lock; concurrent callers share it.
 */
int fused_dirty_sync(struct fused_dirty *d);
/* Rewrite the log from the set if it grew well past it (call only while no peer is connected). */
int fused_dirty_maybe_compact(struct fused_dirty *d);

/*
 * Resync: take the next entry (directories first if dirs, else files) out of the
 * set; it stays owed until fused_dirty_sent() gives the sequence number of its last
 * frame and that is acknowledged. 1 taken (*e owns its extents: fused_dentry_free),
 * 0 none left, -ECONNRESET if conn was lost meanwhile.
 */
int fused_dirty_take(struct fused_dirty *d, bool dirs, uint64_t conn, struct fused_dentry *e,
		     uint64_t *ticket);
void fused_dirty_sent(struct fused_dirty *d, uint64_t ticket, uint64_t conn, uint64_t seq);
void fused_dentry_free(struct fused_dentry *e);
/*
 * The peer acknowledged the end of a resync on conn (everything sent before it
 * is there): the set is emptied, the log restarts with base as the shared id,
 * tracking stops (the ring still catches what is in flight).
 */
int fused_dirty_clear(struct fused_dirty *d, uint64_t conn, uint64_t base);

/* ---- for the generation/split-brain code and the status ---- */

struct fused_dirty_stats {
	uint64_t files;      /* non-directories tracked */
	uint64_t dirs;       /* directories tracked */
	uint64_t bytes;      /* sum of tracked extents (a WHOLE file counts whole_bytes_unknown) */
	uint64_t whole;      /* files to be sent whole (their size is not known here) */
	uint64_t log_bytes;  /* size of the log file */
	uint64_t flushes;    /* fdatasyncs of the log fused_dirty_sync made */
	bool lost;
};
/* How much changed since the shared resync id (fused_dirty_base). */
void fused_dirty_get_stats(struct fused_dirty *d, struct fused_dirty_stats *s);
/*
 * Call fn for each tracked entry (under the tracker's lock: fn must not call back
 * into the tracker). Paths: open the handle with open_by_handle_at on the backing
 * root and ask fused_fd_path (fused.h); ESTALE means it was deleted since.
 * Stops early when fn returns non-zero; returns that value or 0.
 */
int fused_dirty_foreach(struct fused_dirty *d, int (*fn)(const struct fused_dentry *e, void *arg),
			void *arg);

#endif
