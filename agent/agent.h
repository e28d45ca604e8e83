/* agent/agent.h: skagentd's one context struct, its pieces, and the membership interface for the farm code. */
#ifndef AGENT_H
#define AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "agentmsg.h"
#include "conf.h"
#include "ctl.h"
#include "proto.h"

#define AGENT_MAX_MODS SK_AMSG_MAX_MODS
#define AGENT_MAX_SUBS 8
#define AGENT_HIST 64          /* transitions kept per module (memory and file) */
#define AGENT_PATH 1100

struct agent;
struct agent_mod;

/* ---- membership (member.c) --------------------------------------------------------- */

enum agent_rej {          /* heartbeats refused, by reason (counters) */
	AGENT_REJ_SHORT = 0,  /* not even a header */
	AGENT_REJ_MAC,        /* authentication failed */
	AGENT_REJ_REPLAY,     /* seq not newer than the last one from that sender on that network */
	AGENT_REJ_FORMAT,     /* header/payload does not parse */
	AGENT_REJ_SENDER,     /* unknown node id, our own id, or not from that node's address */
	AGENT_REJ__COUNT
};

struct agent_peer {
	const struct sk_conf_node *node;
	bool alive;
	bool ever_seen;
	uint64_t last_ms[SK_CONF_MAX_NETWORKS]; /* monotonic ms of the last valid heartbeat, 0 = never */
	bool net_ok[SK_CONF_MAX_NETWORKS];
	uint64_t last_seq[SK_CONF_MAX_NETWORKS];
	uint64_t incarnation;
	bool have_state;
	struct sk_amsg_state st; /* last state announced by the peer */
	uint64_t st_ms;          /* when it was read */
	/* when the kernel received it (heartbeats: the socket's receive stamp), never later than
	 * st_ms: a state read after a stall of this loop counts from then (agent/witness.c) */
	uint64_t st_rx_ms;
	/* when it was declared dead: which networks and how long they had been silent */
	uint64_t died_ms;
	uint64_t died_last_seen_ms;
	char died_words[160];
	/* its agent said it restarts (SK_MSG_AGENT_RESTARTING): not judged dead before hold_until_ms,
	 * unless heard again from a new incarnation first; one wait per incarnation */
	uint64_t hold_until_ms;
	uint64_t hold_incarnation;
	struct agent_chan *chan; /* the authenticated TCP channel, NULL if down */
	uv_timer_t redial;
	uint64_t hb_in;
};

/*
 * Membership view for other pieces (the farm code in agent/farm.c): cb is called from the
 * loop each time a node is declared alive or dead (never for this node, which is always
 * alive). agent_member_alive answers at any time. Up to AGENT_MAX_SUBS subscribers.
 */
typedef void (*agent_member_cb)(void *arg, struct agent *a, uint8_t node_id, bool alive);
int agent_member_subscribe(struct agent *a, agent_member_cb cb, void *arg);
bool agent_member_alive(const struct agent *a, uint8_t node_id);

int agent_member_start(struct agent *a);
void agent_member_stop(struct agent *a);
/* Send our state now on every network (after a change, so the peer learns at once). */
void agent_member_announce(struct agent *a);
/* This agent restarts (re-exec, systemctl restart): tell every peer it will be silent at most
 * agent_restart_hold_ms(a) (the peers hold their verdict that long). */
void agent_member_restarting(struct agent *a);
uint32_t agent_restart_hold_ms(const struct agent *a);
/* Just before this agent re-executes or exits for a restart: the notice above, and each farm
 * module's filter lease extended to the same wait (adopt.c). */
void agent_restarting(struct agent *a);
struct agent_peer *agent_peer_by_name(struct agent *a, const char *name);
struct agent_peer *agent_peer_by_id(struct agent *a, unsigned id);
/* The peer's last announced state for module id, NULL if unknown or the peer is dead. */
const struct sk_amsg_mod *agent_peer_mod(const struct agent_peer *p, uint32_t mod_id);
/* Fill the state payload this node announces. */
void agent_state_fill(struct agent *a, struct sk_amsg_state *s);
/* Called by member.c and chan.c when a peer's state arrives; rx_ms: when it reached this host. */
void agent_peer_state_in(struct agent *a, struct agent_peer *p, const struct sk_amsg_state *s,
			 uint64_t rx_ms);
/* When data read now from the channel reached this host, at the earliest: now, or the last turn
 * of the loop before a stall (what a stalled loop reads was queued during the stall). */
uint64_t agent_rx_bound_ms(const struct agent *a, uint64_t now);

/* ---- channel (chan.c) ---------------------------------------------------------------- */

int agent_chan_start(struct agent *a);
void agent_chan_stop(struct agent *a);
void agent_chan_send_state(struct agent *a, struct agent_peer *p);
int agent_chan_send_cmd(struct agent *a, struct agent_peer *p, enum sk_amsg_cmd cmd, uint32_t mod);
void agent_chan_close(struct agent_peer *p);
/* skctl -H over the channel: a request (answer false) or the answer to request id. */
int agent_chan_send_ctl(struct agent *a, struct agent_peer *p, bool answer, uint32_t id,
			const char *text, size_t n);

/* ---- children: skfused (fused.c) and scripts (script.c) ---------------------------- */

/* A child process and the pipe of its stdout+stderr, read a line at a time (child.c). */
struct agent_child {
	uv_process_t proc;
	uv_pipe_t out;
	struct agent_mod *m;
	const char *tag; /* in the module log: "skfused", the script's name */
	/* each complete line; NULL: logged with tag */
	void (*line)(struct agent_child *c, const char *s, size_t n);
	bool tail_at_eof; /* log an unterminated last line at EOF */
	int open;         /* handles not closed yet: freed at 0 */
	size_t n;
	char buf[1024];
};
/* A zeroed child of size bytes (a struct that begins with struct agent_child) with its output
 * pipe: io[0..2] filled (stdin ignored), *wfd the write end. NULL and *err = -errno. */
struct agent_child *agent_child_new(struct agent_mod *m, size_t size, const char *tag,
				    uv_stdio_container_t io[3], int *wfd, int *err);
/* Not spawned after all: close the pipe (frees the child). The caller closes wfd. */
void agent_child_drop(struct agent_child *c);
/* uv_spawn, then close wfd; on failure both handles are closed (frees) and -errno returned. */
int agent_child_spawn(struct agent_child *c, uv_process_options_t *o, int wfd);
void agent_child_read(struct agent_child *c);       /* start reading its output */
void agent_child_flush(struct agent_child *c);      /* log a partial line held */
void agent_child_close_out(struct agent_child *c);  /* stop reading (its children may hold it) */
void agent_child_close_proc(struct agent_child *c); /* from the exit callback */

enum agent_role { AGENT_ROLE_NONE = 0, AGENT_ROLE_PRIMARY = 1, AGENT_ROLE_SECONDARY = 2 };

struct agent_fused {
	struct agent_child *run; /* the live child's handles (fused.c), NULL if none */
	int pid;
	uv_timer_t timer; /* ready timeout, stop timeout, restart backoff */
	bool running, ready, stopping;
	enum agent_role role;
	uint32_t restarts;
	uint64_t started_ms;
	/* status poll of the primary's control socket */
	uv_pipe_t ctl;
	bool ctl_busy;
	size_t ctl_n;
	char ctl_buf[8192];
	bool peer_connected, peer_in_sync;
	/* from skfused's status (fused.c): data generations, resync progress */
	bool survivor_pending;   /* prim --force: tell the primary skfused its copy survives */
	char peer_word[16];      /* skfused's "peer": connected, outdated, diverged, ... */
	char relation[16];       /* this copy to the peer's: equal newer older diverged, "" unknown */
	char data_id[17], shared_id[17];
	char aside[256];         /* kept-aside folder (running or last) */
	uint64_t outdated_since; /* s, wall clock; 0 */
	uint64_t peer_files, peer_bytes; /* the peer's changes since the shared id, UINT64_MAX unknown */
	uint64_t own_files, own_bytes;   /* primary: what its dirty tracker holds for the peer, same */
	bool rs_running;
	uint64_t rs_done, rs_total, rs_rate;
	int64_t rs_eta;
	/* skfused's lease fence, from its status: armed, ms left (< 0: refusing writes) */
	bool lease_armed;
	int64_t lease_left_ms;
	/* FUSE requests skfused read and has not answered (-1: not said), and whether more wait
	 * in the kernel: a kill answers them with a connection error */
	int64_t fuse_open;
	bool fuse_queued;
	/* stepping down after the lease ended: skfused is killed once it says it fenced itself */
	uv_timer_t fence_timer;
	bool fence_wait;
	uint64_t fence_wait_ms;
	unsigned fence_idle_n; /* statuses in a row saying fenced, no request left */
};
/* STEP_FENCE after the lease ended: kill skfused primary once its status says its own fence
 * fell (writes refused, the peer dropped) and every request it read is answered (EROFS), on
 * two statuses in a row, at most AGENT_FENCE_CONFIRM_MS later; agent_mod_step_done follows
 * its exit. */
#define AGENT_FENCE_CONFIRM_MS 2000
void agent_fused_fence_wait(struct agent_mod *m);
/* The skfused part of `skctl state` (fused.c). */
void agent_fused_fill_ctl(struct agent_mod *m, struct sk_ctl_mod *o);
/* skctl prim --force: this node's copy survives a diverged or newer peer (told to skfused). */
void agent_fused_survivor(struct agent_mod *m);

struct agent_script {
	uv_timer_t timer;
	bool running, timed_out;
	int pid;
	enum sk_script which;
	uint64_t started_ms;
};

int agent_fused_start(struct agent_mod *m, enum agent_role role);
void agent_fused_stop(struct agent_mod *m, bool kill9);
void agent_fused_poll(struct agent_mod *m);
/* skfused exited (our child, or an adopted one seen through its pidfd): stop, fail or restart. */
void agent_fused_exited(struct agent_mod *m, int64_t status, int sig);
/* Once at start: does skfused take --key-fd? (then starts skip the key derivation) */
bool agent_fused_probe(void);
int agent_script_run(struct agent_mod *m, enum sk_script which);
void agent_script_kill(struct agent_mod *m);

/* ---- agent restart (adopt.c): take over running modules, cached key, re-exec ---------- */

/* At module init: a live skfused of this module (found through its control socket) is taken
 * over with its role instead of starting from STOP. 1 taken over, 0 none, -errno. */
int agent_adopt(struct agent_mod *m);
/* The cluster master key: from ROOT/run/steadykit/agent.key when it was derived from this very
 * secret file (same inode, size, mtime, ctime), else derived (slow) and cached. */
int agent_key_load(struct agent *a, struct sk_conf_err *err);
/* SIGHUP: execute this binary again in place (same pid, same arguments) once no plan runs;
 * the new image takes the running modules over. */
void agent_reexec_init(char **argv);
void agent_reexec(struct agent *a);
/* skagentd --fence (the unit's ExecStopPost after a crash): SIGKILL every module's skfused
 * (found through its control socket) and the processes its scripts started. Count killed. */
int agent_fence_all(struct agent *a);
/* At SIGTERM: does systemd stop us as part of `systemctl restart` (the modules stay running)? */
bool agent_systemd_restarting(void);

/* ---- VIP (vip.c) ----------------------------------------------------------------------- */

int agent_vip_add(struct agent_mod *m);
int agent_vip_del(struct agent_mod *m);
bool agent_vip_held(struct agent_mod *m);

/* ---- modules (module.c) ------------------------------------------------------------------ */

/* Steps of a plan, run one after the other. */
enum agent_step {
	STEP_FENCE,        /* SIGKILL a primary skfused: no write acknowledged from here on */
	STEP_PRESTART,
	STEP_START_BOTH,
	STEP_STOP_PRIM,
	STEP_START_PRIM,
	STEP_STOP_BOTH,
	STEP_PRESTOP,
	STEP_POSTSTOP,
	STEP_VIP_ADD,
	STEP_VIP_DEL,
	STEP_FUSED_STOP,
	STEP_FUSED_PRIMARY,
	STEP_FUSED_SECONDARY,
	STEP_MARK_PRIMARY, /* persist: role primary, new generation */
	STEP_MARK_SECOND,  /* persist: role secondary, not in sync yet */
	STEP_MARK_HANDED,  /* persist: role secondary, in sync (we were the primary, handing over) */
	/* farm modules (farmmod.c) */
	STEP_FARM_ATTACH,  /* XDP filter + VIP on lo, the view pushed with this node not taking flows */
	STEP_FARM_UP,      /* this node takes new flows */
	STEP_FARM_LEAVE,   /* this node takes no new flows; its established ones drain */
	STEP_FARM_DETACH,  /* filter and VIP removed */
};

#define AGENT_MAX_STEPS 16

struct agent_plan {
	bool active;
	enum sk_mod_state from, to;
	char cause[SK_CTL_TEXT_LEN];
	int steps[AGENT_MAX_STEPS];
	int n, cur;
	uint64_t event_ms;   /* the triggering event (peer's last sign of life for a death) */
	uint64_t detect_ms;  /* when it was detected */
	uint64_t step_ms;    /* start of the current step */
	uint32_t phase_ms[SK_PH__COUNT];
	bool failed;
	bool waiting; /* the current step awaits agent_mod_step_done */
	bool abort;   /* forcestop: the plan ends with its current step, failed, no recovery plan */
	bool fence_confirm; /* STEP_FENCE waits for skfused's own fence (the lease ended) */
	char fail[SK_CTL_TEXT_LEN];
};

struct agent_mod {
	struct agent *a;
	struct sk_module conf;
	struct agent_peer *peer; /* the other node of the mirror */
	char dir[AGENT_PATH];      /* --root + replication.dirs[0] */
	char moddir[AGENT_PATH];   /* var/lib/steadykit/modules/NAME */
	char statedir[AGENT_PATH]; /* var/lib/steadykit/state/NAME */
	char fused_ctl[AGENT_PATH];
	char logpath[AGENT_PATH];
	uint16_t repl_port;

	enum sk_mod_state state;
	char reason[SK_CTL_TEXT_LEN];
	uint64_t since_ms; /* wall */
	uint64_t start_ms; /* monotonic: when the module left STOP (startup grace) */

	/* persisted in statedir/agent.state */
	bool want_started;
	enum agent_role last_role;
	uint64_t gen;
	bool peer_out; /* (primary) the peer's copy is behind ours */
	bool in_sync;  /* (secondary) our copy was in sync with the primary, gen copied */
	bool fresh;    /* no state file: never held data */

	bool noprim;     /* do not become primary by ourselves (start_prim failed, swap, second) */
	bool fence_confirm_next; /* the next plan's STEP_FENCE waits for skfused's fence */
	bool forcestop;  /* the next stop is forcestop's plan (no stop script) */
	bool noprim_failed; /* ... because our own start failed (else: we handed the role over) */
	bool carrier;    /* VIP interface has carrier */
	bool vip_on;

	struct agent_plan plan;
	struct agent_fused fused;
	struct agent_script script;
	uv_timer_t announce;
	int announce_i;
	uv_timer_t tick;   /* status polls, startup grace */
	uv_timer_t kick;   /* decide() from the loop, never from inside a callback chain */
	uint64_t retry_ms; /* no new plan before this (monotonic) after a failed step */
	char after_reason[SK_CTL_TEXT_LEN]; /* reason shown once the running plan ends */
	bool warned_dual;

	struct sk_ctl_trans hist[AGENT_HIST];
	unsigned hist_n, hist_head;
	int logfd;
	struct agent_farmmod *farm; /* farm modules only (farmmod.c), NULL otherwise */
};

int agent_mod_init(struct agent *a, struct agent_mod *m);
void agent_mod_close(struct agent_mod *m);
/* Something changed (peer, child, carrier, command): re-evaluate when idle. */
void agent_mod_kick(struct agent_mod *m);
/* A step finished (async steps call this). rc < 0 = failed. */
void agent_mod_step_done(struct agent_mod *m, int rc, const char *why);
void agent_mod_peer_dead(struct agent_mod *m);
void agent_mod_carrier(struct agent_mod *m, bool up);
void agent_mod_fill_ctl(struct agent_mod *m, struct sk_ctl_mod *out);
bool agent_mod_first(const struct agent_mod *m);
uint8_t agent_mod_flags(struct agent_mod *m);
bool agent_mod_uptodate(struct agent_mod *m);
/* Operator verbs; 0 or -errno with err/hint (what to do next). */
int agent_mod_cmd(struct agent_mod *m, enum sk_ctl_verb verb, bool force, char *err, size_t elen,
		  char *hint, size_t hlen);
void agent_mod_swap_from_peer(struct agent_mod *m);
/* Checker policy (policy.c): restart the application here (stop_prim + start_prim), or hand the
 * role to an in-sync secondary. -EBUSY (a plan runs), -EINVAL (not primary), -EAGAIN (no peer). */
int agent_mod_app_restart(struct agent_mod *m, const char *cause);
int agent_mod_app_failover(struct agent_mod *m, const char *cause);
void agent_mod_stop_all(struct agent *a);
/* Start a plan (module.c's runner): steps run in order, then the state becomes `to`. */
/* forcestop's plan to STOP, no stop script: skfused fenced, VIP removed, skfused stopped (a
 * farm: leave, filter and VIP removed); nothing if the module is stopped already */
void agent_mod_forcestop_plan(struct agent_mod *m);
const char *agent_mod_step_name(int step); /* "start_prim", "skfused primary", ... */
void agent_mod_plan(struct agent_mod *m, enum sk_mod_state to, const char *cause, const int *steps,
		    int n);

/* ---- farm modules (farmmod.c): UP on every node, the XDP filter fed by membership ---- */

struct agent_farmmod;
/* module.c's decide() for a farm module: 0 handled, 1 go on with the generic part. */
int agent_farmmod_decide(struct agent_mod *m);
/* Agent restarted under a running farm module (its filter attached with these settings and
 * its application running): UP again with nothing restarted. 1 taken over, 0 not. */
int agent_farmmod_adopt(struct agent_mod *m);
/* A STEP_FARM_* step, synchronous: 0 or -errno with *why set. */
int agent_farmmod_step(struct agent_mod *m, int step, const char **why);
/* Checker policy for a farm: leave gracefully (and restart the application). */
int agent_farmmod_app_restart(struct agent_mod *m, const char *cause);
int agent_farmmod_app_failover(struct agent_mod *m, const char *cause);
/* This agent restarts: the filter's lease runs ms (the peers hold their verdict that long). */
void agent_farmmod_restarting(struct agent_mod *m, uint32_t ms);
/* Checkers run while UP and while out of the farm because of a checker. */
bool agent_farmmod_checking(const struct agent_mod *m);
/* A checker reached its failure count / passed a probe (rejoin once none is failing). */
void agent_farmmod_check_failed(struct agent_mod *m, const struct sk_conf_checker *ck);
void agent_farmmod_check_ok(struct agent_mod *m, const struct sk_conf_checker *ck);
/* `skctl state` of a farm module: VIP held = on lo with the filter attached, no data to be
 * outdated, the filter's view in words ("node1=100 node2=leaving node3=dead"). */
void agent_farmmod_fill_ctl(struct agent_mod *m, struct sk_ctl_mod *o);

/* Module log (statedir/module.log, rotated) and transitions (history.c). */
void agent_mod_log(struct agent_mod *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void agent_mod_log_raw(struct agent_mod *m, const char *src, const char *line, size_t len);
int agent_hist_load(struct agent_mod *m);
void agent_hist_add(struct agent_mod *m, const struct sk_ctl_trans *t);
int agent_state_load(struct agent_mod *m);
int agent_state_save(struct agent_mod *m);
/* skfused's state file as it last wrote it (its stop writes it too). */
struct agent_fused_file {
	bool primary;      /* role=primary */
	bool consistent;   /* consistent=1: no resync half done */
	bool peer_in_sync; /* peer_in_sync=1: a primary's peer held everything */
};
/* 0, or -errno if unreadable. */
int agent_fused_file(struct agent_mod *m, struct agent_fused_file *s);

/* ---- operator verbs restart, stopstart, forcestop (opcmd.c) ------------------------------ */

/* 0 (*data: what was done, may be NULL) or -errno with err/hint (what to do next). */
int agent_opcmd(struct agent_mod *m, enum sk_ctl_verb verb, struct json_object **data, char *err,
		size_t elen, char *hint, size_t hlen);
/* SIGKILL the module's processes on this node (started by its scripts, or using its directory). */
unsigned agent_opcmd_kill_procs(struct agent_mod *m);
/* A process of this node's network namespace started by the module's scripts here (SK_MODULE
 * and SK_NODE in its environment): its pid, or 0. */
int agent_opcmd_app_pid(struct agent_mod *m);
/*
 * The processes of this node's network namespace, the agent excepted: fn(pid, arg) for each
 * until it returns non-zero, which is returned (0: walked them all, or /proc unreadable).
 */
int agent_proc_each(int (*fn)(int pid, void *arg), void *arg);
/* An operator start/stop cancels a pending stopstart. */
void agent_opcmd_cancel(struct agent_mod *m);

/* ---- control socket (ctl.c) -------------------------------------------------------------- */

int agent_ctl_start(struct agent *a);
/* A control request from a peer's agent (skctl -H there), or a peer's answer to ours. */
void agent_ctl_remote(struct agent *a, struct agent_peer *p, bool answer, uint32_t id,
		      const char *text, size_t n);
void agent_ctl_stop(struct agent *a);
/* The state document of `skctl state --json` and /state (only: one module's name, "" for all). */
struct json_object;
struct json_object *agent_state_json(struct agent *a, const char *only);

/* ---- HTTP listener (http.c): /ready /metrics /state from a snapshot the loop refreshes ---- */

int agent_http_start(struct agent *a, const struct sk_conf_addr *addr, uint16_t port);
void agent_http_stop(struct agent *a);
/* Refresh the snapshot now (also done every 200 ms); no-op without a listener. */
void agent_http_touch(struct agent *a);
/* module.c's record(): count the transition and refresh the snapshot. */
void agent_http_transition(struct agent_mod *m, const struct sk_ctl_trans *t);

/* ---- checkers (check.c) and their policy (policy.c) ---- */

int agent_check_start(struct agent *a);
void agent_check_stop(struct agent *a);
/* A checker of m reached its failure count: act per ck->action and the module's restart budget. */
void agent_policy_fail(struct agent_mod *m, const struct sk_conf_checker *ck, const char *what);

/* ---- witnesses (witness.c): ping witnesses, the lease client, skagentd --witness ---- */

int agent_witness_start(struct agent *a); /* after the modules; no-op without a witness */
void agent_witness_stop(struct agent *a);
/* May m be (or become) primary with its peer dead? false: why says what is missing. */
bool agent_witness_allow(struct agent_mod *m, char *why, size_t cap);
/* skctl prim --force: the lease is asked for even if the last holder went on alone. */
void agent_witness_force(struct agent_mod *m);
/* The gate refused a takeover of m that still stands (peer dead): decide() retries it. */
bool agent_witness_takeover(struct agent_mod *m);
/* m's skfused runs with the lease fence (a lease witness guards m). */
bool agent_witness_lease_fence(struct agent_mod *m);
/* skagentd --witness: serve lease requests until SIGTERM. */
int agent_witness_serve(struct agent *a);

/* ---- the daemon -------------------------------------------------------------------------- */

struct agent_sub {
	agent_member_cb cb;
	void *arg;
};

struct agent {
	uv_loop_t *loop;
	char root[AGENT_PATH];     /* "" or the --root prefix */
	char sock_path[AGENT_PATH];
	char cluster_path[AGENT_PATH];
	gid_t ctl_group;           /* (gid_t)-1: root only */
	struct sk_cluster cluster;
	const struct sk_conf_node *self;
	struct sk_key master, dkey;
	char secret_path[AGENT_PATH];
	uint64_t incarnation;
	uint32_t hb_interval_ms, hb_timeout_ms;
	uint64_t startup_grace_ms;

	unsigned n_peers;
	struct agent_peer peers[SK_CONF_MAX_NODES];
	unsigned n_mods;
	struct agent_mod *mods[AGENT_MAX_MODS];

	/* membership */
	uv_udp_t hb_sock[SK_CONF_MAX_NETWORKS];
	bool hb_open[SK_CONF_MAX_NETWORKS];
	uint64_t hb_seq[SK_CONF_MAX_NETWORKS];
	uv_timer_t hb_timer;
	uv_timer_t check_timer;
	uint64_t last_check_ms;
	uint64_t hb_rejected[AGENT_REJ__COUNT];
	uint64_t hb_ok;
	uv_poll_t link_poll;
	int link_fd;
	unsigned n_subs;
	struct agent_sub subs[AGENT_MAX_SUBS];

	/* channel */
	uv_tcp_t listener;
	bool listening;
	uint64_t chan_rejected;

	/* control */
	uv_pipe_t ctl;
	bool ctl_open;
	uint64_t ctl_rejected;
	uint64_t ctl_requests;

	uv_signal_t sigterm, sigint;
	uv_timer_t watchdog;       /* systemd WATCHDOG=1 pings, when the unit asks for them */
	bool stopping;
	unsigned stop_wait; /* modules still stopping at shutdown */
};

/* Monotonic and wall clocks in ms. */
uint64_t agent_now_ms(void);
uint64_t agent_wall_ms(void);
/* root + path ("/etc/..." -> "ROOT/etc/..."). */
void agent_path(const struct agent *a, char *out, size_t cap, const char *path);
/* Close a handle if it was initialised (for handles living inside structs). */
void agent_close(uv_handle_t *h);

#endif
