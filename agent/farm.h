/* agent/farm.h: one farm module on this node: who is alive and healthy -> the XDP filter's bucket table (xdp/lb.h). */
#ifndef AGENT_FARM_H
#define AGENT_FARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "lb.h"

struct agent; /* agent.h: only for the membership callback's signature */
struct agent_farm;

struct agent_farm_opts {
	const struct sk_cluster *cluster;
	const struct sk_module *mod; /* kind farm, with its VIP; must outlive the farm */
	const char *self;            /* this node's name in cluster.json */
	const char *pin_dir;         /* NULL: LB_PIN_ROOT "/<module>" */
	enum lb_xdp_mode mode;       /* LB_XDP_AUTO: native, generic where native is refused */
	uint32_t window_ms;          /* a moved bucket's previous owner keeps its flows; 0: 300000 */
	uint32_t udp_timeout_ms;     /* 0: 60000 */
	uint32_t announce_ms;        /* UDP flows learnt before a planned move; 0: 1000 */
};

/*
 * Attach the filter on the VIP's interface (VIP on lo, virtual MAC answered by
 * XDP) or take over the attachment a previous agent left (its table and flows
 * are kept), and set rule, ports and timing from the module. No view is pushed
 * yet: a node that knows only itself would take every bucket while the others
 * still serve theirs. Logs what it did (dispatcher or alone, native or generic).
 * 0 or -errno with err filled.
 */
int agent_farm_open(const struct agent_farm_opts *o, struct agent_farm **out, char *err, size_t elen);

/* Is a filter pinned at pin_dir (left by an earlier agent)? Opens nothing for long. */
bool agent_farm_pinned(const char *pin_dir);

/*
 * What the agent knows of a node of the farm (by cluster id):
 *   alive && up   takes new flows in proportion to its weight;
 *   alive && !up  leaves gracefully: no new flows, keeps its own for the window
 *                 (a failed checker, a module being stopped);
 *   !alive        dead: its buckets move at once.
 * This node is always alive. A node that comes back counts as !up until the
 * agent says its module is UP again. Once started, every change pushes a new
 * table at once. Returns 1 if the table changed, 0 if not, -errno (err filled).
 */
int agent_farm_node(struct agent_farm *f, unsigned node_id, bool alive, bool up);

/*
 * Set every node at once (bit masks by cluster node id, this node always alive): one push,
 * never an intermediate table when several nodes changed together. Same returns.
 */
int agent_farm_set(struct agent_farm *f, uint64_t alive, uint64_t up);
/* The view as the operator reads it: "n1=100 n2=leaving n3=dead". */
void agent_farm_words(const struct agent_farm *f, char *out, size_t cap);

/*
 * The agent vouches for this node for ms more (renewed every heartbeat interval for the
 * peers' dead timeout): past it the filter passes none of this node's buckets, so a node
 * whose agent died stops answering about when the others take its buckets. 0 = no lease.
 */
int agent_farm_lease(struct agent_farm *f, uint32_t ms);

/* Push the view from now on (after the startup grace, when peers are known). Same returns. */
int agent_farm_start(struct agent_farm *f);

/* For agent_member_subscribe(a, agent_farm_member_cb, farm): alive changes only. */
void agent_farm_member_cb(void *arg, struct agent *a, uint8_t node_id, bool alive);

/* The view the farm pushes now (also before start). */
void agent_farm_view(const struct agent_farm *f, struct lb_view *v);
struct lb *agent_farm_lb(struct agent_farm *f);
const char *agent_farm_err(const struct agent_farm *f);

/*
 * The pure part: weights by node id from the module and the cluster, alive
 * and up as bit masks by node id. When no alive node is up, every alive node
 * takes flows by its weight: a farm whose checkers all fail still answers
 * rather than going dark. -EINVAL if the module is not a farm.
 */
int agent_farm_make_view(const struct sk_cluster *c, const struct sk_module *m, uint64_t alive,
			 uint64_t up, uint32_t announce_ms, struct lb_view *v);
/* The hash seed every node of the farm derives alike (cluster and module names, module id). */
uint32_t agent_farm_seed(const struct sk_cluster *c, const struct sk_module *m);

/* Close; detach: remove the filter and the VIP too (module stopped), else leave them running. */
void agent_farm_close(struct agent_farm *f, bool detach);

#endif
