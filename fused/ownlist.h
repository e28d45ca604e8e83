/* fused/ownlist.h: a returning copy's own changes since the shared generation (failover then failback): kept by the secondary, sent by path, merged into the primary's dirty set. */
#ifndef FUSED_OWNLIST_H
#define FUSED_OWNLIST_H

#include "fused.h"

/*
 * Node A primary, in sync with B at generation G; A dies (kill -9, link lost) with frames in
 * flight; B takes over (a new primary from a secondary's consistent copy tracks from G: dirty.h
 * fresh_base); A returns as secondary. Their copies differ by what B changed since G (B's dirty
 * set) and by what A changed that B never got: A's activity log (frames in flight) and what A
 * changed alone. A keeps that set (STATE/dirty, replayed as hostile input) until a resync
 * completes, and sends it by path after its GEN answer (SK_RMSG_OWNLIST); B adds it to its set
 * (files whole, directories' names listed) and the incremental resync covers the union.
 */

/* track.c: what the state file said when it was loaded. */
bool fused_state_was_primary(void);
/* A primary started from a copy that was a secondary in sync (resync completed): its
 * generation (the one it shares with the old primary); 0 otherwise. */
uint64_t fused_state_takeover_base(void);

/* ---- secondary ---- */
/*
 * At start, before the read-only mount: open STATE/dirty if it is there (what this copy
 * changed as primary, or alone) and name every entry by path from the root (bounded: past
 * OWN_MAX entries or OWN_BYTES bytes, or an entry that cannot be named, the list says
 * "unknown" and the primary runs the full resync). A missing file after a life as primary
 * (was_primary: fused_state_was_primary) means unknown too; after a life as secondary, nothing
 * of its own.
 */
void fused_own_open(struct fused *f, bool was_primary);
/* Files and bytes this copy changed on its own since the shared generation (GEN answer). */
void fused_own_figures(uint64_t *files, uint64_t *bytes);
/* Send the list (OWNLIST frames) on this session: 0 or -EPIPE. */
int fused_own_send(struct fused *f, struct sk_chan *c, int sock);
/* A resync completed: this copy is the primary's; the list and STATE/dirty are dropped. */
void fused_own_done(struct fused *f);
/* Stop: the file stays for the next start. */
void fused_own_close(void);

/* ---- primary ---- */
/* session_begin (stream_mu held): START's flag asking for the peer's list when the resync may
 * be incremental (SK_START_F_OWNLIST), 0 otherwise. */
uint32_t fused_own_start(struct fused *f, uint64_t conn);
/*
 * The ack reader, for every frame of connection conn before it handles it: the GEN that accepts
 * the session is followed at once by the peer's list (OWNLIST frames: 1, consumed; checked as
 * hostile input, -EBADMSG drops the connection), which its last frame adds to the dirty set
 * before anything after it (the resync's first answer) is read; acks (keepalives among them)
 * may come between. No list where one was due, a
 * list saying "unknown", past its bounds (refused, counted in the log) or naming what cannot be
 * tracked here: the tracker is marked lost, so this resync is the full one. 0: not ours.
 */
int fused_own_peer_frame(struct fused *f, uint64_t conn, uint8_t type, const uint8_t *p, size_t n);
/* This primary's changes since the shared generation (START): from its dirty tracker. */
void fused_own_primary_figures(struct fused *f, uint64_t *files, uint64_t *bytes);

#endif
