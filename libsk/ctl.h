/* libsk/ctl.h: the local control protocol (JSON lines over a Unix socket) spoken by skagentd and skctl. */
#ifndef SK_CTL_H
#define SK_CTL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Version 1. One request per line, one reply per line, UTF-8 JSON objects.
 *
 *   request  {"v":1,"cmd":"state"|"start"|"stop"|"swap"|"prim"|"second"|"why"|"log"|
 *             "restart"|"stopstart"|"forcestop",
 *             "module":"NAME" (optional for state/why, required otherwise),
 *             "force":true (prim only), "lines":N (log/why, 1..SK_CTL_MAX_LINES),
 *             "all":true (run on every node through the agents: data {"nodes":[{"node":NAME,
 *             "ok":..., "data"|"error","hint"}...]})}
 *   reply    {"v":1,"ok":true,"data":{...}}  or  {"v":1,"ok":false,"error":"what","hint":"what to do"}
 *
 * A request line is at most SK_CTL_MAX_REQ bytes including its newline; unknown keys,
 * unknown verbs, a wrong version or a wrong type are refused with a reason. Replies are
 * bounded by SK_CTL_MAX_REPLY. The socket answers only root or members of a configured
 * group (SO_PEERCRED, sk_ctl_peer_allowed).
 */
#define SK_CTL_VERSION 1
#define SK_CTL_MAX_REQ 4096
#define SK_CTL_MAX_REPLY (1u << 20)
#define SK_CTL_MAX_LINES 1000
#define SK_CTL_NAME_LEN 32
#define SK_CTL_TEXT_LEN 256

/* Module states, as SafeKit operators know them. The values are `skctl state -lq` exit codes,
 * except UP which exits 2 like ALONE (see sk_state_exit_code). */
enum sk_mod_state {
	SK_ST_STOP = 0,
	SK_ST_WAIT = 1,
	SK_ST_ALONE = 2,
	SK_ST_PRIM = 3,
	SK_ST_SECOND = 4,
	SK_ST_UP = 5,
	SK_ST__COUNT
};
const char *sk_state_name(enum sk_mod_state s);
/* -EINVAL for an unknown name. */
int sk_state_parse(const char *name);
int sk_state_exit_code(enum sk_mod_state s);
/* ALONE and PRIM serve the application and hold the VIP. */
static inline bool sk_state_is_primary(enum sk_mod_state s)
{
	return s == SK_ST_ALONE || s == SK_ST_PRIM;
}

enum sk_ctl_verb {
	SK_CTL_STATE = 1,
	SK_CTL_START,
	SK_CTL_STOP,
	SK_CTL_SWAP,
	SK_CTL_PRIM,
	SK_CTL_SECOND,
	SK_CTL_WHY,
	SK_CTL_LOG,
	SK_CTL_RESTART,   /* the application only: stop_prim then start_prim, the role kept */
	SK_CTL_STOPSTART, /* stop the module here, then start it again (the peer may take over) */
	SK_CTL_FORCESTOP, /* stop at once: kill the module's processes, no stop script */
	SK_CTL__COUNT
};
const char *sk_ctl_verb_name(enum sk_ctl_verb v);

struct sk_ctl_req {
	enum sk_ctl_verb verb;
	char module[SK_CTL_NAME_LEN]; /* "" = all (state, why) */
	bool force;                   /* prim: even if this copy is outdated */
	uint32_t lines;               /* why, log: how many; 0 = default */
	bool all;                     /* skctl -H: run it on every node through the agents */
};

/* Encode as one line (JSON + '\n', NUL-terminated). Returns its length, -ENOSPC or -EINVAL. */
long sk_ctl_req_encode(const struct sk_ctl_req *r, char *buf, size_t cap);
/*
 * Decode one request line (with or without its '\n'). 0, or -EMSGSIZE (too long),
 * -EPROTO (other version), -EINVAL (anything else); err says what, in words.
 */
int sk_ctl_req_decode(const char *buf, size_t len, struct sk_ctl_req *r, char *err, size_t errlen);

struct sk_ctl_reply {
	bool ok;
	char error[SK_CTL_TEXT_LEN]; /* !ok: what went wrong */
	char hint[SK_CTL_TEXT_LEN];  /* !ok: what to do next ("" if nothing useful) */
	json_object *data;           /* ok: owned by the reply (NULL = {}) */
};

/* Add a reply's fields to o: "ok", then "data" or "error" and "hint" (when not empty). Takes a
 * new ref of data. The line below and the per-node entries of a fanned-out reply (skctl -H). */
void sk_ctl_reply_fill(json_object *o, const struct sk_ctl_reply *r);
/* Encode (malloc'd "JSON\n", NUL-terminated, *len without the NUL). Does not take data's ref. */
char *sk_ctl_reply_encode(const struct sk_ctl_reply *r, size_t *len);
/* Decode a reply line; 0 or -EINVAL/-EMSGSIZE/-EPROTO with err. Free with sk_ctl_reply_free. */
int sk_ctl_reply_decode(const char *buf, size_t len, struct sk_ctl_reply *r, char *err,
			size_t errlen);
void sk_ctl_reply_free(struct sk_ctl_reply *r);

/* ---- typed pieces of "data" ---- */

/* Phases of a transition, each timed. */
enum sk_phase {
	SK_PH_DETECT = 0, /* last sign of life of the peer -> declared dead */
	SK_PH_DECIDE,     /* event -> first action */
	SK_PH_STOP,       /* stop scripts (stop_prim, ...) */
	SK_PH_VIP,        /* address added/removed + first announcement */
	SK_PH_FUSED,      /* skfused stopped/started in the new role until ready */
	SK_PH_START,      /* start scripts (start_prim, ...) */
	SK_PH__COUNT
};
const char *sk_phase_name(enum sk_phase p);

/* Another node of a farm module, as this node sees it. */
struct sk_ctl_member {
	char node[64];                 /* as sk_ctl_mod.peer */
	bool alive;                    /* heard (heartbeats) */
	enum sk_mod_state state;       /* its announced state for the module; meaningful when alive */
};
#define SK_CTL_MAX_MEMBERS 32          /* a cluster's nodes (SK_MAX_NODES) */

/* One module on one node, as `skctl state` shows it. */
struct sk_ctl_mod {
	char name[SK_CTL_NAME_LEN];
	enum sk_mod_state state;
	char peer[64];                 /* "" if none (a farm: its first other node; see members) */
	bool peer_alive;
	enum sk_mod_state peer_state;  /* meaningful when peer_alive */
	bool vip_held;
	char vip[96];                  /* "10.0.0.50/24 on eth0" or "" */
	bool uptodate;                 /* this copy may become primary by itself */
	uint64_t gen;                  /* data generation */
	char fused[16];                /* skfused: "none", "primary", "secondary", "starting" */
	char busy[32];                 /* step in progress ("" = idle) */
	char reason[SK_CTL_TEXT_LEN];  /* why this state (WAIT: what to do) */
	uint64_t since_ms;             /* wall clock of the last state change */
	/* data generations (skfused's view, docs/skctl.md) */
	char data_id[17];              /* this copy's current generation id, hex ("" unknown) */
	char relation[16];             /* to the peer's copy: equal newer older diverged ("" unknown) */
	char data_words[SK_CTL_TEXT_LEN]; /* the relation in a sentence, with sizes where known */
	char aside[256];               /* kept-aside folder of the last forced resync here ("" none) */
	/* resync progress (running: total > 0 or state SECOND/ALONE with a resync) */
	bool resyncing;
	uint64_t rs_done, rs_total, rs_rate; /* bytes, bytes, bytes/s (smoothed) */
	int64_t rs_eta_s;              /* -1 unknown */
	/* a farm module: every other node of the farm ("members" in JSON); 0 for a mirror */
	unsigned n_members;
	struct sk_ctl_member members[SK_CTL_MAX_MEMBERS];
};
int sk_ctl_mod_to_json(const struct sk_ctl_mod *m, json_object **out);
int sk_ctl_mod_from_json(json_object *o, struct sk_ctl_mod *m, char *err, size_t errlen);

/* One transition, kept by the agent (persisted as one JSON line each) and shown by `why`. */
struct sk_ctl_trans {
	uint64_t at_ms; /* wall clock, ms since the epoch, when the transition ended */
	char module[SK_CTL_NAME_LEN];
	enum sk_mod_state from, to;
	char cause[SK_CTL_TEXT_LEN];
	bool failed;                     /* the transition did not reach `to` as planned */
	uint32_t total_ms;               /* event -> done */
	uint32_t phase_ms[SK_PH__COUNT];
};
int sk_ctl_trans_to_json(const struct sk_ctl_trans *t, json_object **out);
int sk_ctl_trans_from_json(json_object *o, struct sk_ctl_trans *t, char *err, size_t errlen);
/* "node1 silent on lan for 412 ms → node2 PRIM in 655 ms (detect 412, skfused 48, ...)" */
int sk_ctl_trans_words(const struct sk_ctl_trans *t, const char *node, char *buf, size_t len);

/* Bounded field readers for replies (no error context; missing -> default). */
uint64_t sk_ctl_json_u64(json_object *o, const char *key, uint64_t def);
const char *sk_ctl_json_str(json_object *o, const char *key, const char *def);

/* ---- transport ---- */

/*
 * SO_PEERCRED: allow uid 0, or a peer whose (primary) gid is `group` ((gid_t)-1 = none; the
 * kernel reports only the primary gid). 0 or -EACCES (*uid set if non-NULL).
 */
int sk_ctl_peer_allowed(int fd, gid_t group, uid_t *uid);

/* Accumulates bytes of a stream and hands out complete lines, bounded by SK_CTL_MAX_REQ. */
struct sk_ctl_lbuf {
	size_t n;
	char buf[SK_CTL_MAX_REQ];
};
/*
 * Append; then call sk_ctl_lbuf_line until it returns 0. Returns 0 or -EMSGSIZE when
 * a line longer than SK_CTL_MAX_REQ arrives (the stream should be answered and closed).
 */
int sk_ctl_lbuf_push(struct sk_ctl_lbuf *b, const char *p, size_t n);
/* Copy the next complete line (NUL-terminated, no '\n') into out[SK_CTL_MAX_REQ]. 1, or 0 if none. */
int sk_ctl_lbuf_line(struct sk_ctl_lbuf *b, char *out, size_t *len);

/*
 * Blocking client: connect to sock, send r, read one reply within timeout_ms.
 * 0 with *reply filled (ok or not), or -errno with err saying what happened.
 */
int sk_ctl_call(const char *sock, const struct sk_ctl_req *r, struct sk_ctl_reply *reply,
		int timeout_ms, char *err, size_t errlen);

#endif
