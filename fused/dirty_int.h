/* fused/dirty_int.h: what dirty.c (the set, the API) and dirty_log.c (the log file: records, replay, compaction) share; not for other files. */
#ifndef FUSED_DIRTY_INT_H
#define FUSED_DIRTY_INT_H

#include "dirty.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Log file, host byte order (it never leaves this node).
 * Header, 32 bytes: "SKDIRTY1" | base u64 | salt u64 | check u64 (FNV-1a of bytes 0..23).
 * Record, 120 bytes: type u8 | hlen u8 | plen u8 | zero u8 | flags u32 | htype i32 | ptype i32 |
 *   a u64 | b u64 | c u64 | d u64 | h[32] | p[32] | check u64 (FNV-1a of bytes 0..111, keyed by salt).
 *   ADD   h (+ parent p), flags, extent [a, a+b)
 *   LIVE  as ADD, counted only if seq d of connection c was not acknowledged
 *   DROP  h was taken by a resync on connection c as ticket d (its state so far)
 *   SENT  ticket d of connection c went out as far as seq a
 *   ACK   connection c acknowledged up to seq d
 *   STATE a = TRACKING | SYNCED | CLOSED | ALOG (in sync, LIVE records are the activity log),
 *         b = the machine's boot (a hash of /proc/sys/kernel/random/boot_id)
 *   LOST  tracking is lost (a = reason code, informative)
 */
#define HDR_LEN 32
#define REC_LEN 120
#define MAGIC "SKDIRTY1"
enum { T_ADD = 1, T_LIVE, T_DROP, T_SENT, T_ACK, T_STATE, T_LOST };
enum { S_TRACKING = 1, S_SYNCED, S_CLOSED, S_ALOG };
#define AL_ROTATE (4u << 20) /* activity log bytes before it starts afresh */

#define RING 4096    /* >= frames in flight (fused.h FUSED_RING) */
#define NOTE_MAX 4   /* changes per operation */
#define ACKS_MAX 64  /* connections remembered while replaying */
#define EXT_LIMIT (1ull << 62)

struct ext {
	uint64_t off, end;
};

#define ZONE_SHIFT_MIN 12 /* 4 KiB, a page: the first zones of a file past its exact extents */
#define ZONE_SHIFT_MAX 26 /* 64 MiB: zones larger than this are the whole file */
struct ent {
	struct fused_dh h;
	uint32_t flags;
	uint32_t n_ext, cap_ext;
	struct ext *ext;
	uint32_t next; /* hash chain: index + 1, 0 ends */
	bool used;
	uint8_t zshift; /* 0: exact extents; else each extent is rounded out to 1 << zshift */
};

struct rslot {
	uint64_t conn, seq;
	unsigned n;
	struct fused_dnote note[NOTE_MAX];
};

struct taken {
	uint64_t ticket, conn, seq; /* seq UINT64_MAX: not sent yet */
	struct fused_dentry e;
};

#include <stdatomic.h>

#define DIRTY_DGEN_SLOTS 1024 /* power of two */

struct fused_dirty {
	pthread_mutex_t mu;
	struct fused_dirty_conf c;
	char path[4200], tmp[4200], dir[4096];
	int fd;
	uint64_t base, salt, nonce;
	uint64_t log_bytes, snap_bytes;
	uint64_t boot;                  /* this machine's boot (STATE records carry it) */
	/*
	 * Records that must be on disk when the application's fsync returns: those written while
	 * tracking. put_gen counts them, synced_gen is what a finished fdatasync covered; one
	 * flush runs at a time, outside mu (flushing), the others wait for it (flushed).
	 */
	uint64_t put_gen, synced_gen, flushes;
	bool flushing;
	pthread_cond_t flushed;
	bool tracking, lost;
	const char *why;

	struct ent *ents;
	size_t n_ents, cap_ents, live;  /* live: used entries */
	size_t n_dirs_over;             /* entries past max_entries (per-directory marks) */
	uint32_t *hb;
	size_t hmask;
	uint32_t free_head;             /* index + 1 */
	size_t cursor;

	struct rslot *ring;
	uint64_t lost_gen;              /* connections up to this one are over */
	struct taken *tk;
	size_t n_tk, cap_tk;
	uint64_t next_ticket;
	/* fused_dirty_data_gen: bumped under mu, read lock-free */
	_Atomic uint64_t dgen[DIRTY_DGEN_SLOTS];
	_Atomic uint64_t dgen_all;
};

uint64_t dirty_rnd64(void);
void *dirty_grow(void *p, size_t *cap, size_t need, size_t sz);

/* dirty.c: the set (lock held) */
struct ent *dirty_find(struct fused_dirty *d, const struct fused_dh *h, uint32_t **link);
void dirty_ent_remove(struct fused_dirty *d, struct ent *e, struct fused_dentry *out);
void dirty_set_lost(struct fused_dirty *d, const char *why);
void dirty_apply(struct fused_dirty *d, const struct fused_dnote *n);
void dirty_dentry_merge(struct fused_dirty *d, const struct fused_dentry *x);

/* dirty_log.c: the log (lock held) */
void dirty_rec_fill(uint8_t *r, uint64_t salt, uint8_t type, const struct fused_dnote *n,
		    uint64_t a, uint64_t b, uint64_t c, uint64_t dd);
void dirty_log_put(struct fused_dirty *d, const uint8_t *recs, size_t n);
void dirty_log_one(struct fused_dirty *d, uint8_t type, const struct fused_dnote *n, uint64_t a,
		   uint64_t b, uint64_t c, uint64_t dd);
void dirty_log_note(struct fused_dirty *d, uint8_t type, const struct fused_dnote *n, uint64_t c,
		    uint64_t dd);
int dirty_ent_emit(struct fused_dirty *d, int fd, uint64_t *total, const struct fused_dh *h,
		   uint32_t flags, const struct ext *ext, uint32_t n_ext);
/*
 * Write a fresh log holding the set and a state record, replacing the old one atomically.
 * durable: fsync it (and the directory) first. Without (the activity log's restarts, under
 * the stream lock): a machine crash may leave no valid log, which means tracking lost and a
 * full resync, never a wrong incremental one.
 */
int dirty_snapshot(struct fused_dirty *d, int state, bool durable);
/* Replay STATE/dirty into the set: NULL, or why it is refused (tracking lost). */
const char *dirty_replay_file(struct fused_dirty *d);

#endif
