/* fused/stages.h: where the time of a waited write or fsync goes, stage by stage, on both nodes (status "stages"). */
#ifndef FUSED_STAGES_H
#define FUSED_STAGES_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/*
 * Off unless SKFUSED_STAGES=1 in the environment at start: then a few CLOCK_MONOTONIC reads per
 * write, fsync or create request (primary) and per WRITE, FSYNC or CREATE frame (secondary), added to
 * per-stage histograms with relaxed atomics. Off, every stamp is 0 and nothing is added.
 */
enum fused_stg_kind {
	FUSED_STG_WRITE,
	FUSED_STG_FSYNC,
	FUSED_STG_CREATE, /* a new name (the create frame; its data comes as writes) */
	FUSED_STG_KINDS,
	FUSED_STG_NONE = 0xff
};

/*
 * Primary, per request (ns). The peer may ack a frame before its sender's socket write has
 * returned (on a veth the write itself runs the receiving side's TCP), so the round trip is
 * counted from "sealed", and the write is a stage of its own beside it, like the local apply:
 * seal + wait + reply = total, and peer, send + local <= wait.
 */
enum {
	FUSED_STG_P_SEAL,  /* request in -> frame sealed and registered (stream lock, encode, AEAD) */
	FUSED_STG_P_SEND,  /* sealed -> its socket write returned */
	FUSED_STG_P_LOCAL, /* write returned -> local apply done (pwrite + futimens; fdatasync; openat...) */
	FUSED_STG_P_PEER,  /* sealed -> the ack thread read the peer's ack */
	FUSED_STG_P_WAIT,  /* sealed -> the later of the ack read and the local apply's end */
	FUSED_STG_P_REPLY, /* that -> the FUSE reply written */
	FUSED_STG_P_TOTAL, /* request in -> reply written */
	FUSED_STG_P_N
};
/* Secondary, per WRITE/FSYNC/CREATE frame acknowledged by the ack that followed it (sync mode): */
enum {
	FUSED_STG_S_QUEUE, /* the read that completed it -> its apply begins (AEAD open, decode, frames before it) */
	FUSED_STG_S_APPLY, /* apply (pwrite + futimens; fdatasync; openat + the directory's mtime) */
	FUSED_STG_S_ACK,   /* apply done -> the ack's socket write returned */
	FUSED_STG_S_TOTAL, /* read -> ack written */
	FUSED_STG_S_N
};

/* A waited request's stamps (ns, CLOCK_MONOTONIC; 0: not taken). Carried in struct fused_reply. */
struct fused_stamps {
	uint64_t in, sealed, sent, local, ack;
	uint8_t kind; /* enum fused_stg_kind */
};

extern bool fused_stages_on;

static inline uint64_t fused_stage_now(void)
{
	struct timespec ts;

	if (!fused_stages_on)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Primary: the request's reply was just written; adds its stages if every stamp was taken. */
void fused_stage_primary(const struct fused_stamps *s);

/* Both roles: the stream reader's last read that returned data (this thread). */
extern __thread uint64_t fused_stage_rx_ns;
/* Secondary, receiver thread: a WRITE/FSYNC/CREATE frame's apply began at t0 and just ended. */
void fused_stage_applied(enum fused_stg_kind k, uint64_t t0);
/* Secondary, receiver thread: an ack just went out; the last applied frame's stages are added. */
void fused_stage_rx_acked(void);

struct json_object;
/* The status object: {"on":bool,"misordered":N,"write":{STAGE:{...}},"fsync":{...},"create":{...}}. */
struct json_object *fused_stages_json(bool primary);

#endif
