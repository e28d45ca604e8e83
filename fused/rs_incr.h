/* fused/rs_incr.h: what rs_incr.c (rounds, directories, the peer's reports) and rs_files.c (the tracked files: named, read ahead, sent) share; not for other files. */
#ifndef FUSED_RS_INCR_H
#define FUSED_RS_INCR_H

#include "resync.h"

#include <sys/stat.h>

#include "util.h"

#define FUSED_RS_ACK_EVERY 32 /* entries between acknowledgement records */

/*
 * The files this resync has sent (by handle; a 64-bit hash, open addressing). Every one of
 * them went after all the shallow listings (first round), so a file the peer says a listing
 * remade without its data (rs_apply.c report_remade) needs nothing more if it is here and has
 * one name (a file with several went to the name its handle opened as).
 */
struct fused_rs_sentset {
	uint64_t *v;
	size_t mask, n;
};
uint64_t fused_rs_dh_hash(const struct fused_dh *h);
bool fused_rs_sent_has(const struct fused_rs_sentset *s, uint64_t k);
/* Out of memory: the set stays as it is (a remade file not in it is sent again: no harm). */
void fused_rs_sent_add(struct fused_rs_sentset *s, uint64_t k);

struct fused_rs_pathmap; /* rs_files.c */

/*
 * Where an incremental resync's time goes, in microseconds (the resync thread only writes
 * them; logged with "resync done"): the usable probe's round trip, the listings, the
 * hard-link groups, naming files the kernel could not, taking and opening files (read-ahead
 * advice and hints included), the data's reads (stream lock and path included), sealing and
 * sending it, waiting for the window, metadata, the end's round trip, the state save.
 */
struct fused_rs_phases {
	uint64_t usable, dirs, links, name, prep, read, send, pace, meta, end, save;
	uint64_t cpu0; /* the resync thread's CPU time at the probe (sk_thread_cpu_us) */
	/*
	 * rs_files.c's reader threads (each field written by one only, read after they are joined):
	 * their CPU, the reads ahead (prep and name above are the first reader's then), what they
	 * held; and the sender's
	 * side: waits for the reader, bytes sent as read ahead, files read again (changed since).
	 */
	uint64_t cpu_ahead, cpu_read, ahead_read, ahead_files, ahead_pieces, ahead_bytes;
	uint64_t wait, ahead_sent, ahead_again;
};
extern struct fused_rs_phases fused_rs_ph;
/* *acc += now - t0; returns now */
static inline uint64_t fused_rs_ph_add(uint64_t *acc, uint64_t t0)
{
	uint64_t now = sk_now_us();

	*acc += now - t0;
	return now;
}

struct fused_rs_round {
	char **walked; /* directories walked whole in this round (their files went with them) */
	size_t n_walked;
	/* fused_path_gen before this round took its entries: their paths, and what the walks saw
	 * under them, hold only while no name moved or went away since (fused_rs_walked_locked) */
	uint64_t path_gen;
	uint64_t entries;
	int round; /* 0 first; later rounds follow the peer's FAILED reports */
	struct fused_rs_sentset sent;
	uint64_t remade, remade_sent;
	struct fused_rs_pathmap *pm; /* rs_files.c: files the kernel could not name, by inode */
	uint64_t unnamed, named_by_walk;
};

/* Inside a directory walked whole in this round: already sent. */
bool fused_rs_under(char **walked, size_t n, const char *path);
/*
 * The same, only while no name moved or went away since the round took its entries (stream_mu
 * held): the walks and the entries' paths saw one tree. A live rename meanwhile is replicated but
 * not tracked (its notes wait in the activity ring), so an entry moved out of a walked directory
 * before its walk got there would be skipped by its old path and never sent.
 */
bool fused_rs_walked_locked(const struct fused_rs_round *rd, const char *path);
/* An O_PATH fd of a tracked handle, only if it is in our tree's file system; -errno. */
int fused_rs_open_dh(struct fused *f, const struct fused_dh *h, struct stat *st);

/*
 * rs_files.c: the tracked non-directories of this round (data, then metadata), read ahead.
 * 0; -ECONNRESET lost; -EAGAIN a file still linked could not be named (the full resync follows).
 */
int fused_rs_files(struct walker *w, struct fused_rs_round *rd);
/* Frees what rs_files.c keeps for a round (the path map). */
void fused_rs_files_end(struct fused_rs_round *rd);

#endif
