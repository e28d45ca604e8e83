/* fused/fused.h: the one context struct of skfused and the interfaces between its files. */
#ifndef FUSED_H
#define FUSED_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "proto.h"
#include "gen.h"
#include "replmsg.h"
#include "stages.h"
#include "util.h"

enum fused_role { FUSED_PRIMARY = 1, FUSED_SECONDARY = 2 };

/* What the ack thread sends to FUSE once an operation is replicated. */
enum fused_reply_kind { R_NONE = 0, R_ERR0, R_WRITE, R_ENTRY, R_CREATE, R_ATTR, R_OPEN, R_ERR };
struct fused_reply {
	uint8_t kind;
	int err; /* R_ERR: positive errno */
	size_t written;
	struct fuse_entry_param e;
	struct fuse_file_info fi;
	struct stat attr;
	struct fused_stamps st; /* a waited write/fsync's stage times (stages.h), 0 when off */
};

/* One frame sent and not yet acknowledged; slot seq % ring_size. */
struct fused_pending {
	uint64_t seq;
	uint64_t t_us;
	uint32_t bytes;
	uint32_t cost;  /* rough work on the peer, in small-metadata-op units (resync pacing) */
	uint8_t type;   /* message type, for the diagnostics of a late peer */
	fuse_req_t req; /* NULL: nobody waits (already replied, or not a FUSE op) */
	bool held;  /* the local apply still runs: its thread replies (fused_repl_local_done) */
	bool acked; /* acknowledged while held */
	struct fused_reply r;
};

/* An open file of the primary; fi->fh points to it. */
struct fused_fh {
	int fd;
	uint64_t id;          /* replicated handle id, 0 if not replicated (read-only open) */
	struct fused_fh *prev, *next; /* list of replicated handles, under stream_mu */
	uint64_t reopen_gen;  /* connection on which the resync reopened it on the peer */
};

struct fused_inode;
struct fused_ackring;

/* A growable list of names: one directory's entries during a resync (both sides). */
struct fused_names {
	char **v;
	size_t n, cap;
};
int fused_names_add(struct fused_names *l, const char *s, size_t len);
void fused_names_clear(struct fused_names *l); /* frees every name and empties the list */

/* A peer's report that an operation met an unreconciled part (resync). */
struct fused_rs_fail {
	struct fused_rs_fail *next;
	uint64_t fh;
	char p1[SK_RMSG_PATH_MAX + 1];
	char p2[SK_RMSG_PATH_MAX + 1];
};

#define FUSED_HIST 32
#define FUSED_RING 4096
/*
 * ACK frame flag (secondary -> primary): "alive, busy" keepalive. Its ack's applied is what
 * was already acked, err_seq how long the operation being applied has run (us), err 0.
 */
#define FUSED_ACK_F_BUSY 0x1
/*
 * Frame flag (primary -> secondary) of a WRITE frame that is not a write's last piece: its
 * write goes on in the next frame, which the primary sends at once and the request waits for.
 * The secondary acks such a frame with the next one (acks are cumulative) instead of on its own,
 * or after ACK_EVERY_US (recv.c) when nothing follows. An older secondary ignores the flag.
 */
#define FUSED_FRAME_F_MORE 0x2

/*
 * Lock order: stream_mu -> peer_mu -> pend_mu; ino_mu is a leaf.
 * stream_mu orders local applies with sequence numbers (and resync chunks);
 * pend_mu guards the pending ring and is all the ack thread takes.
 * ino_mu guards the inode table, its fd cache and the nodes' parent links
 * (inode.c); nothing that can wait on FUSE or on another lock runs under it.
 * Inode fds are borrowed: fused_inode_acquire pins the fd cache entry (or opens
 * one), fused_inode_release unpins it; a pinned entry is never evicted or
 * closed, and one whose node is forgotten meanwhile is closed by the last
 * release. An fd is used only between the two, never kept in a struct (dup it).
 * Inode paths (fused_inode_path) are computed and used under stream_mu.
 */
struct fused {
	/* configuration */
	enum fused_role role;
	const char *dir;
	char peer_host[64];
	uint16_t peer_port;
	char listen_host[64];
	uint16_t listen_port;
	const char *secret_path;
	int key_fd;                 /* --key-fd: derived master key from this fd, -1 if --secret */
	struct sk_key master;
	enum sk_repl_mode mode;
	uint32_t budget_ms;
	bool no_encrypt;            /* --no-encrypt: MAC-only stream; both nodes must say the same */
	char state_dir[PATH_MAX];
	char ctl_path[PATH_MAX];
	uint32_t module_id;
	uint32_t node_id;
	bool debug;

	int root_fd;                /* backing directory, opened before any mount */
	char root_path[PATH_MAX];   /* as /proc/self/fd shows it, for relative paths */
	size_t root_len;
	atomic_bool stop;
	int stop_fd;                /* eventfd, readable from the stop on (fused_stop): polls wake at once */

	/* persistent state (track.c) */
	pthread_mutex_t state_mu;
	atomic_bool peer_in_sync;   /* primary: the secondary holds everything we applied */
	bool consistent;            /* secondary: no resync half done */
	struct sk_gen gen;          /* data generations of this copy (libsk/gen.h) */
	uint64_t outdated_since;    /* primary: wall clock (s) the peer fell behind, 0 in sync */
	atomic_bool gen_pending;    /* primary: the next change starts a new generation (fused_gen_touch) */
	bool survivor;              /* primary: the operator chose this copy (until the peer is in sync) */
	char aside[PATH_MAX];       /* secondary: folder of the forced resync keeping our changes */
	char aside_last[PATH_MAX];  /* the last such folder (status) */
	/* the peer's generations as last exchanged (START / GEN), under state_mu */
	struct sk_gen_wire peer_gen;
	bool peer_gen_known;
	int peer_verdict;           /* last enum sk_gen_verdict from/to the peer, -1 none */
	uint64_t peer_verdict_s;    /* wall clock of that verdict */
	atomic_bool wake;           /* primary: reconnect now (survivor chosen) */

	/* primary: FUSE */
	struct fuse_session *se;
	pthread_mutex_t ino_mu;
	struct fused_inode *ino_root;

	/* primary: stream to the peer */
	pthread_mutex_t stream_mu;
	struct sk_chan chan;
	int sock;                   /* -1 when alone */
	_Atomic uint64_t conn_gen;  /* written under stream_mu; read lock-free to tag requests */
	atomic_bool connected;
	struct fused_fh fh_list;    /* replicated open handles, circular */
	atomic_uint_fast64_t fh_next;

	pthread_mutex_t peer_mu;
	pthread_mutex_t pend_mu;
	pthread_cond_t pend_cv;
	struct fused_ackring *ack;  /* frames in flight (ackring.h), under pend_mu */
	_Atomic uint64_t seq_sent;  /* last seq registered (this connection) */
	_Atomic uint64_t seq_acked; /* the status and the budget thread read these two lock-free */
	_Atomic uint64_t inflight_bytes;
	uint64_t hist[FUSED_HIST];  /* latency of acks of operations an application waits for */
	_Atomic uint64_t last_ack_us; /* when seq_acked last advanced (or the connection began) */
	uint64_t inflight_cost;     /* sum of the pending frames' cost */
	uint32_t rs_win;            /* resync pacing: cost the walker may keep in flight */
	atomic_uint_fast64_t rejected;
	atomic_uint_fast64_t readdirplus_entries; /* entries listed with their attributes */

	/* resync (primary walker / secondary apply) */
	atomic_bool resyncing;
	atomic_uint_fast64_t rs_done_bytes, rs_total_bytes;
	atomic_int rs_state;        /* 0 idle, 1 running, 2 done */
	pthread_mutex_t rs_mu;
	pthread_cond_t rs_cv;
	struct fused_rs_track *rs_track; /* reconciled dirs + dirs to redo (under stream_mu) */
	struct fused_rs_fail *rs_fail;   /* peer's FAILED reports (under rs_mu) */
	unsigned rs_fail_n;
	bool rs_fail_full;
	uint8_t *rs_sums;           /* reply mailbox */
	struct sk_rmsg_sums rs_reply;
	uint64_t rs_req_waiting;
	bool rs_reply_ready;

	/* secondary */
	atomic_bool peer_up;
	atomic_uint_fast64_t applied_seq;
	uint64_t rs_errs;           /* ops that met unreconciled parts since the last RS_END */
	bool ro_mounted;
};

extern struct fused *fused_ctx;

/* inode.c (primary) */
/*
 * An O_PATH fd of the inode (-errno: -ESTALE if it is gone from the disk), lent
 * until fused_inode_release(f, ino, fd), which every acquire is paired with, in
 * the same thread (see the lock-order comment for the rule).
 */
int fused_inode_acquire(struct fused *f, fuse_ino_t ino);
void fused_inode_release(struct fused *f, fuse_ino_t ino, int fd); /* fd < 0: nothing */
int fused_inode_lookup(struct fused *f, fuse_ino_t parent, const char *name,
		       struct fuse_entry_param *e);
/* After a rename (stream_mu held): the non-directory now at newparent/newname keeps that name. */
void fused_inode_moved(struct fused *f, fuse_ino_t newparent, int npfd, const char *newname);
void fused_inode_forget(struct fused *f, fuse_ino_t ino, uint64_t n);
uint32_t fused_inode_count(struct fused *f); /* inodes the kernel (or a borrower) holds */
int fused_inode_init(struct fused *f);
extern uint64_t fused_path_gen;
/* Relative path of an inode (under stream_mu); "" for root. -ENOENT if unlinked. */
int fused_inode_path(struct fused *f, fuse_ino_t ino, char *buf, size_t cap);
int fused_fd_path(struct fused *f, int fd, char *buf, size_t cap);

/* ops.c */
extern const struct fuse_lowlevel_ops fused_ops;
/* fuseio.c: after fuse_session_mount, before the loop: FUSE_HANDLE_KILLPRIV_V2 (ops.h). */
int fused_fuseio_attach(struct fuse_session *se);
/* fuseio.c: FUSE requests read and not answered yet, and whether the kernel holds more for us
 * (readable /dev/fuse); false when the device is not hooked (nothing counted). */
bool fused_fuse_requests(int64_t *open, bool *queued);

/* repl.c (primary) */
int fused_repl_start(struct fused *f);
void fused_repl_stop(struct fused *f);
/* main.c: set stop and wake every poll on f->stop_fd (async-signal-safe). */
void fused_stop(struct fused *f);
/* main.c: wait up to ms for the stop; true once stopping. */
bool fused_stop_wait(struct fused *f, int ms);
/*
 * Called with stream_mu held after a successful local apply. Sends op (+data)
 * and, if req is not NULL and the mode waits, takes over replying: returns 1.
 * Returns 0 if the caller must reply itself (alone, async).
 */
int fused_repl_submit(struct fused *f, const struct sk_rmsg_op *op, const void *data,
		      size_t data_len, fuse_req_t req, const struct fused_reply *r);
/*
 * Writes go out before the local pwrite so both copies are written at once:
 * the slot is held until fused_repl_local_done (called after the stream lock is
 * released) says how the local apply went; whichever of that and the ack comes
 * last replies. *seq is 0 when nothing was sent.
 */
int fused_repl_submit_held(struct fused *f, const struct sk_rmsg_op *op, const void *data,
			   size_t data_len, fuse_req_t req, const struct fused_reply *r,
			   uint64_t *seq);
void fused_repl_local_done(struct fused *f, uint64_t seq, const struct fused_reply *r);
/* The stage stamps of this thread's last frame (sealed, sent; stages.h), 0 when off. */
void fused_repl_stamps(struct fused_stamps *st);
/*
 * stream_mu held: a frame nobody waits for and that the application was not told is on
 * both nodes (RELEASE), sent with the next frame or within 2 ms (repl.c, the cork).
 */
void fused_repl_submit_lazy(struct fused *f, const struct sk_rmsg_op *op);
/* stream_mu held: send the corked frames now. */
void fused_repl_flush(struct fused *f);
extern _Atomic uint64_t fused_stream_writes, fused_frames_corked; /* status: socket writes, frames corked */
extern _Atomic uint64_t fused_ack_kicks, fused_ack_spin_hits; /* status: ack thread woken by a sender, acks its poll caught */
/*
 * stream_mu held: a WRITE frame that is not its write's last piece (flagged FUSED_FRAME_F_MORE
 * when SKFUSED_WRITE_MORE=1), sent at once; nobody waits for it.
 */
void fused_repl_submit_piece(struct fused *f, const struct sk_rmsg_op *op, const void *data,
			     size_t data_len);
/* status: WRITE frames sent as a non-last piece (primary); acks left to a later frame (secondary) */
extern _Atomic uint64_t fused_write_pieces, fused_rx_acks_deferred;
void fused_reply_send(fuse_req_t req, const struct fused_reply *r);

/* Buffered frame reader over a stream socket (both roles). */
struct fused_rbuf {
	uint8_t *buf;
	size_t cap, start, end;
};
/* Under mu: wait for cv at most ms milliseconds (< 1000). */
void fused_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms);
int fused_rbuf_init(struct fused_rbuf *b);
void fused_rbuf_free(struct fused_rbuf *b);
/* > 0 frame ready in *fr (payload valid until the next fill), 0 need more, -EBADMSG (counted). */
long fused_rbuf_next(struct sk_chan *c, struct fused_rbuf *b, struct sk_frame *fr,
		     enum sk_reject *why);
/* Read more bytes (blocking). 0, -ECONNRESET on EOF, -errno. */
int fused_rbuf_fill(int fd, struct fused_rbuf *b);
/* Non-blocking reads for up to spin_us: 1 got bytes, 0 nothing came, <0 error/EOF. */
int fused_rbuf_spin(int fd, struct fused_rbuf *b, unsigned spin_us);
extern size_t fused_write_chunk; /* bytes per WRITE frame (SKFUSED_WRITE_CHUNK) */
extern unsigned fused_spin_us; /* FUSED_SPIN_US env, default below */
#define FUSED_SPIN_US fused_spin_us
void fused_peer_lost(struct fused *f, uint64_t gen, const char *why);
/*
 * Resync request answered by a SUMS frame (RS_SUMSREQ, RS_END): sets op->fh to a
 * request id, op->path1 from path_fd (if >= 0) under the stream lock, waits.
 */
int fused_repl_ask(struct fused *f, uint64_t gen, struct sk_rmsg_op *op, int path_fd,
		   struct sk_rmsg_sums *out, uint8_t *sums_buf, bool (*ready)(struct fused *));
void fused_repl_on_sums(struct fused *f, const struct sk_rmsg_sums *s);
/*
 * Resync pacing (call without stream_mu): waits until the frames in flight would drain
 * within a small part of the budget, so live operations queued behind resync frames stay
 * far below it. 0, or -ECONNRESET if the connection gen ended.
 */
int fused_repl_rs_pace(struct fused *f, uint64_t gen);
/* The same, with fewer than max_frames frames in flight (at most the resync's usual share). */
int fused_repl_rs_pace_frames(struct fused *f, uint64_t gen, uint64_t max_frames);

/* recv.c (secondary) */
int fused_recv_run(struct fused *f);
int fused_apply_open_path(int root_fd, const char *path, size_t len, int flags, int *out);
/* apply.c: path resolved as fused_apply_open_path and opened with flags only if it is a regular
 * file (or a directory, dir_ok), else -EPERM: fused_apply_open_data without the refusal count. */
int fused_apply_open_file(int root_fd, const char *path, size_t len, int flags, bool dir_ok,
			  int *out);
/* rs_apply.c: path's directory (O_PATH, resolved as fused_apply_open_path) and its last name (name: SK_RMSG_NAME_MAX + 1). */
int fused_rs_open_parent(struct fused *f, const char *path, size_t len, int *pfd, char *name);
/* rs_apply.c: dfd/name removed, a directory with everything under it (no link followed, 512 levels at most, never into a mount: -EXDEV). */
int fused_rs_remove_tree(int dfd, const char *name);
/* rs_apply.c: mounts found where a resync removed a tree, left in place (never entered). */
uint64_t fused_rs_mounts_left(void);

/* track.c: persistent state + resync */
int fused_state_load(struct fused *f);
int fused_state_save(struct fused *f);
void fused_state_set_in_sync(struct fused *f, bool v);
/*
 * Secondary, on START: this copy is not consistent until the resync ends, on disk before the
 * resync changes anything (saved only when the state file does not say so already). 0, -errno.
 */
int fused_state_begin_resync(struct fused *f);
/*
 * Called by every modifying operation before its reply (fused_dn_end): the first change made
 * while the peer is not in sync starts a new data generation (saved before the reply), so a
 * primary that changes nothing alone leaves its copy equal to the peer's, as it is.
 */
void fused_gen_touch(struct fused *f);
/* Primary: the operator chose this copy as the survivor (persisted until the peer is in sync). */
int fused_state_set_survivor(struct fused *f);
/*
 * Secondary, on START: compare the primary's generations (NULL: a primary without them) with
 * ours; returns the verdict (enum sk_gen_verdict) and begins keeping changes aside when forced.
 */
int fused_gen_on_start(struct fused *f, const struct sk_gen_wire *prim, bool survivor);
/* Secondary, at the end of a complete resync: take the primary's generations, end the aside. */
void fused_gen_adopt_peer(struct fused *f);
/* Primary: the secondary's answer to START. */
void fused_gen_on_answer(struct fused *f, const struct sk_gen_wire *w);
/* The status's "gen" object (ctl.c). */
struct json_object;
struct json_object *fused_gen_json(struct fused *f);

/* aside.c (secondary): a forced resync keeps what it changes or removes here first. */
int fused_aside_begin(struct fused *f);
/* Before the resync changes path (regular file: copied once; others: noted). */
void fused_aside_copy(struct fused *f, const char *path, size_t len);
/* Instead of removing dfd/name (relative path `path`): moved aside whole. 0 moved, <0 not. */
int fused_aside_move(struct fused *f, int dfd, const char *name, const char *path, size_t len);
void fused_aside_end(struct fused *f);
/* "dpath/name" (dpath "" is the root) into out; false if too long. */
bool fused_aside_join(const char *dpath, size_t dl, const char *name, char *out, size_t cap,
		      size_t *len);
int fused_resync_run(struct fused *f, uint64_t gen);
/* Session start (stream_mu held): forget what the last resync reconciled. */
int fused_rs_init(struct fused *f);
void fused_rs_reset(struct fused *f);
/*
 * A live rename/link during a resync (stream_mu held): if the source's
 * directory was not reconciled yet, what it moved may be stale on the peer, so
 * the destination directory is walked again. src_dir_fd < 0: source unknown.
 */
void fused_rs_note_move(struct fused *f, int src_dir_fd, int dst_dir_fd);
/* Secondary: apply an RS_* frame (SUMS answers go out on sock). -EBADMSG: refuse the stream. */
int fused_rs_apply(struct fused *f, const struct sk_rmsg_op *op, int sock, struct sk_chan *chan);
/* Secondary, receiver thread: the last RS_DATA target kept open (rs_apply.c), -1 none; any other
 * frame closes it first (fused_apply), since it may change what that path names. */
extern int fused_rs_data_fd;
void fused_rs_data_close(void);

/* ctl.c */
int fused_ctl_start(struct fused *f);
void fused_ctl_stop(struct fused *f);

#endif
