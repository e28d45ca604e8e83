/* agent/check.c: a module's checkers (process, tcp, ping, interface, script, module) on the loop; failures go to policy.c. */
#include "agent.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "nl.h"
#include "util.h"

/*
 * Rules (docs/agent.md "Checkers"):
 * - A module's checkers run only where the application runs: while the module is PRIM or ALONE
 *   on this node and no plan is in progress. Elsewhere, and at each change of state, the
 *   consecutive-failure counts restart from 0 (a restarting application is not a failure).
 * - Every interval_ms one probe; a probe that does not answer within timeout_ms fails.
 *   `failures` consecutive failures -> agent_policy_fail (once; the count restarts after it).
 * - process: the process whose name (/proc/PID/comm) is "process" and that lives in the agent's
 *   network namespace (so two nodes tested on one machine do not see each other's processes).
 *   Found once, it is watched through a pidfd: its death is a failure at once, not at the next
 *   tick; not found at a tick is a failure.
 * - tcp: a connect to host:port (libuv, nonblocking) that completes within timeout_ms.
 * - ping: one ICMP echo (raw socket, root) answered within timeout_ms (IPv4).
 * - interface: carrier on the interface (rtnetlink, libsk/nl.h) at each tick.
 * - script: bin/<path> (or an absolute path) exits 0 within timeout_ms; killed (SIGKILL) past
 *   it and always reaped.
 * - module: the other module, on this node, is PRIM, ALONE or UP.
 */

struct chk {
	struct agent_mod *m;
	const struct sk_conf_checker *ck;
	unsigned idx;
	uv_timer_t tick, timeout;
	uint32_t fails;
	bool busy; /* a probe is outstanding (tcp, ping, script) */
	enum sk_mod_state seen_state;
	bool seen_plan;
	/* process */
	int pid, pidfd;
	uv_poll_t *pidpoll; /* handles that close asynchronously are malloc()ed: a new probe
			       never reuses one whose close is still pending */
	/* tcp */
	uv_tcp_t *tcp;
	uv_connect_t conn;
	/* ping */
	int icmp_fd;
	uv_poll_t *icmp_poll;
	uint16_t ping_seq;
	/* script */
	uv_process_t *proc;
	char what[160];
};

static struct chk *chks[AGENT_MAX_MODS * SK_CONF_MAX_CHECKERS];
static unsigned n_chks;

static const char *type_name(enum sk_check_type t)
{
	switch (t) {
	case SK_CHECK_PROCESS: return "process";
	case SK_CHECK_TCP: return "tcp";
	case SK_CHECK_PING: return "ping";
	case SK_CHECK_INTERFACE: return "interface";
	case SK_CHECK_SCRIPT: return "script";
	case SK_CHECK_MODULE: return "module";
	}
	return "?";
}

static bool active(struct chk *c)
{
	/* farm modules: while UP, and while out of the farm because a checker failed (farmmod.c) */
	return (sk_state_is_primary(c->m->state) || agent_farmmod_checking(c->m)) &&
	       !c->m->plan.active && !c->m->a->stopping;
}

/* One probe's outcome. why: what failed, NULL on success. */
static void result(struct chk *c, const char *why)
{
	if (!active(c))
		return;
	if (!why) {
		if (c->fails)
			agent_mod_log(c->m, "checker %s: ok again after %u failure(s)", c->what, c->fails);
		c->fails = 0;
		agent_farmmod_check_ok(c->m, c->ck);
		return;
	}
	c->fails++;
	agent_mod_log(c->m, "checker %s: %s (failure %u of %u)", c->what, why, c->fails,
		      c->ck->failures);
	if (c->fails >= c->ck->failures) {
		c->fails = 0;
		agent_policy_fail(c->m, c->ck, c->what);
	}
}

/* ---- process ---- */

static void on_freed(uv_handle_t *h)
{
	free(h);
}

/* Stop watching and free the handle; the fd may be closed right after (epoll forgot it). */
static void poll_drop(uv_poll_t **h)
{
	if (*h) {
		uv_poll_stop(*h);
		uv_close((uv_handle_t *)*h, on_freed);
		*h = NULL;
	}
}

static void pid_forget(struct chk *c)
{
	poll_drop(&c->pidpoll);
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->pidfd = -1;
	c->pid = 0;
}

static void on_pid_dead(uv_poll_t *h, int status, int events)
{
	struct chk *c = h->data;
	char why[80];

	(void)status;
	(void)events;
	snprintf(why, sizeof(why), "process %d died", c->pid);
	pid_forget(c);
	result(c, why);
}

static int comm_one(int pid, void *name)
{
	return sk_proc_comm_is(pid, name) ? pid : 0;
}

static int find_pid(const char *name)
{
	return agent_proc_each(comm_one, (void *)name);
}

static void probe_process(struct chk *c)
{
	int pid;

	if (c->pidfd >= 0)
		return; /* watched: its death is reported at once */
	pid = find_pid(c->ck->arg);
	if (!pid) {
		result(c, "no such process in this node's namespace");
		return;
	}
	c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (c->pidfd < 0) {
		result(c, "process vanished");
		return;
	}
	c->pid = pid;
	c->pidpoll = malloc(sizeof(*c->pidpoll));
	if (!c->pidpoll || uv_poll_init(c->m->a->loop, c->pidpoll, c->pidfd) < 0) {
		free(c->pidpoll);
		c->pidpoll = NULL;
		close(c->pidfd);
		c->pidfd = -1;
		result(c, "cannot watch the process");
		return;
	}
	c->pidpoll->data = c;
	uv_poll_start(c->pidpoll, UV_READABLE, on_pid_dead);
	uv_unref((uv_handle_t *)c->pidpoll);
	result(c, NULL);
}

/* ---- tcp ---- */

static void tcp_end(struct chk *c, const char *why)
{
	uv_timer_stop(&c->timeout);
	if (c->tcp) {
		uv_close((uv_handle_t *)c->tcp, on_freed);
		c->tcp = NULL;
	}
	c->busy = false;
	result(c, why);
}

static void on_tcp_connect(uv_connect_t *req, int status)
{
	struct chk *c = req->data;
	char why[120];

	if (status == UV_ECANCELED)
		return; /* closed by the timeout, which reported already */
	snprintf(why, sizeof(why), "connect to %s port %u: %s", c->ck->host.text, c->ck->port,
		 uv_strerror(status));
	tcp_end(c, status == 0 ? NULL : why);
}

static void probe_tcp(struct chk *c)
{
	struct sockaddr_storage ss;
	int rc;

	if (sk_conf_sockaddr(&c->ck->host, c->ck->port, &ss) <= 0 || !(c->tcp = malloc(sizeof(*c->tcp)))) {
		result(c, "cannot build the address");
		return;
	}
	uv_tcp_init(c->m->a->loop, c->tcp);
	c->conn.data = c;
	rc = uv_tcp_connect(&c->conn, c->tcp, (struct sockaddr *)&ss, on_tcp_connect);
	if (rc < 0) {
		char why[120];

		snprintf(why, sizeof(why), "connect: %s", uv_strerror(rc));
		tcp_end(c, why);
		return;
	}
	c->busy = true;
}

/* ---- ping ---- */

static void ping_end(struct chk *c, const char *why)
{
	uv_timer_stop(&c->timeout);
	poll_drop(&c->icmp_poll);
	if (c->icmp_fd >= 0)
		close(c->icmp_fd);
	c->icmp_fd = -1;
	c->busy = false;
	result(c, why);
}

static void on_icmp(uv_poll_t *h, int status, int events)
{
	struct chk *c = h->data;
	uint8_t buf[1500];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	ssize_t n;

	(void)status;
	(void)events;
	/* bounded: at most 16 datagrams per wakeup, each checked for length, source, id and seq */
	for (int i = 0; i < 16; i++) {
		n = recvfrom(c->icmp_fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n < 0)
			return;
		if (n < 20 || (buf[0] >> 4) != 4)
			continue;
		size_t ihl = (size_t)(buf[0] & 15) * 4;
		struct icmphdr ih;

		if (ihl < 20 || (size_t)n < ihl + sizeof(ih))
			continue;
		memcpy(&ih, buf + ihl, sizeof(ih));
		if (ih.type == ICMP_ECHOREPLY && !memcmp(&from.sin_addr, c->ck->host.ip, 4) &&
		    ih.un.echo.id == htons((uint16_t)(getpid() ^ c->idx)) &&
		    ih.un.echo.sequence == htons(c->ping_seq)) {
			ping_end(c, NULL);
			return;
		}
	}
}

static void probe_ping(struct chk *c)
{
	struct sockaddr_in to = { .sin_family = AF_INET };
	struct icmphdr ih = { .type = ICMP_ECHO };
	char why[120];

	if (c->ck->host.family != AF_INET) {
		result(c, "ping checks IPv4 addresses only");
		return;
	}
	c->icmp_fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP);
	if (c->icmp_fd < 0) {
		snprintf(why, sizeof(why), "raw ICMP socket: %s", strerror(errno));
		result(c, why);
		return;
	}
	ih.un.echo.id = htons((uint16_t)(getpid() ^ c->idx));
	ih.un.echo.sequence = htons(++c->ping_seq);
	ih.checksum = sk_inet_csum(&ih, sizeof(ih));
	memcpy(&to.sin_addr, c->ck->host.ip, 4);
	if (sendto(c->icmp_fd, &ih, sizeof(ih), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
		snprintf(why, sizeof(why), "echo to %s: %s", c->ck->host.text, strerror(errno));
		c->busy = true;
		ping_end(c, why);
		return;
	}
	c->busy = true;
	c->icmp_poll = malloc(sizeof(*c->icmp_poll));
	if (!c->icmp_poll || uv_poll_init(c->m->a->loop, c->icmp_poll, c->icmp_fd) < 0) {
		free(c->icmp_poll);
		c->icmp_poll = NULL;
		ping_end(c, "cannot watch the ICMP socket");
		return;
	}
	c->icmp_poll->data = c;
	uv_poll_start(c->icmp_poll, UV_READABLE, on_icmp);
}

/* ---- script ---- */

static void on_script_exit(uv_process_t *p, int64_t status, int sig)
{
	struct chk *c = p->data;
	char why[120];

	uv_close((uv_handle_t *)p, on_freed); /* reaped by libuv before this callback */
	c->proc = NULL;
	c->busy = false;
	uv_timer_stop(&c->timeout);
	if (sig)
		snprintf(why, sizeof(why), "script killed by signal %d", sig);
	else
		snprintf(why, sizeof(why), "script exited with status %lld", (long long)status);
	result(c, status == 0 && !sig ? NULL : why);
}

static void probe_script(struct chk *c)
{
	char path[AGENT_PATH + SK_CONF_PATH_LEN + 8];
	char *args[2];
	uv_process_options_t o = { 0 };
	uv_stdio_container_t io[3] = { { .flags = UV_IGNORE }, { .flags = UV_IGNORE },
				       { .flags = UV_IGNORE } };
	int rc;

	if (c->ck->arg[0] == '/')
		snprintf(path, sizeof(path), "%s", c->ck->arg);
	else
		snprintf(path, sizeof(path), "%s/bin/%s", c->m->moddir, c->ck->arg);
	args[0] = path;
	args[1] = NULL;
	o.file = path;
	o.args = args;
	o.exit_cb = on_script_exit;
	o.stdio = io;
	o.stdio_count = 3;
	c->proc = calloc(1, sizeof(*c->proc));
	if (!c->proc) {
		result(c, "out of memory");
		return;
	}
	c->proc->data = c;
	rc = uv_spawn(c->m->a->loop, c->proc, &o);
	if (rc < 0) {
		char why[120];

		uv_close((uv_handle_t *)c->proc, on_freed);
		c->proc = NULL;
		snprintf(why, sizeof(why), "cannot run %.60s: %s", path, uv_strerror(rc));
		result(c, why);
		return;
	}
	c->busy = true;
}

/* ---- ticks ---- */

static void on_timeout(uv_timer_t *t)
{
	struct chk *c = t->data;
	char why[80];

	snprintf(why, sizeof(why), "no answer within %u ms", c->ck->timeout_ms);
	switch (c->ck->type) {
	case SK_CHECK_TCP:
		tcp_end(c, why);
		break;
	case SK_CHECK_PING:
		ping_end(c, why);
		break;
	case SK_CHECK_SCRIPT:
		if (c->proc)
			uv_process_kill(c->proc, SIGKILL); /* exit_cb reaps it and reports */
		snprintf(why, sizeof(why), "script still running after %u ms: killed",
			 c->ck->timeout_ms);
		agent_mod_log(c->m, "checker %s: %s", c->what, why);
		break;
	default:
		break;
	}
}

static void on_tick(uv_timer_t *t)
{
	struct chk *c = t->data;
	struct agent_mod *m = c->m;

	if (m->state != c->seen_state || m->plan.active != c->seen_plan) {
		c->seen_state = m->state;
		c->seen_plan = m->plan.active;
		c->fails = 0;
		if (c->ck->type == SK_CHECK_PROCESS)
			pid_forget(c); /* a restarted application has a new pid */
	}
	if (!active(c) || c->busy)
		return;
	switch (c->ck->type) {
	case SK_CHECK_PROCESS:
		probe_process(c);
		return;
	case SK_CHECK_INTERFACE: {
		int r = sk_nl_link_carrier(c->ck->arg);
		char why[120];

		snprintf(why, sizeof(why), "%.40s: %s", c->ck->arg,
			 r == 0 ? "no carrier" : r < 0 ? strerror(-r) : "");
		result(c, r == 1 ? NULL : why);
		return;
	}
	case SK_CHECK_MODULE: {
		for (unsigned i = 0; i < m->a->n_mods; i++) {
			struct agent_mod *o = m->a->mods[i];

			if (!strcmp(o->conf.name, c->ck->arg)) {
				char why[120];

				snprintf(why, sizeof(why), "module %s is %s", o->conf.name,
					 sk_state_name(o->state));
				result(c, sk_state_is_primary(o->state) || o->state == SK_ST_UP ?
						  NULL : why);
				return;
			}
		}
		result(c, "no such module on this node");
		return;
	}
	case SK_CHECK_TCP:
		probe_tcp(c);
		break;
	case SK_CHECK_PING:
		probe_ping(c);
		break;
	case SK_CHECK_SCRIPT:
		probe_script(c);
		break;
	}
	if (c->busy)
		uv_timer_start(&c->timeout, on_timeout, c->ck->timeout_ms, 0);
}

int agent_check_start(struct agent *a)
{
	for (unsigned i = 0; i < a->n_mods; i++) {
		struct agent_mod *m = a->mods[i];

		for (unsigned k = 0; k < m->conf.n_checkers; k++) {
			const struct sk_conf_checker *ck = &m->conf.checkers[k];
			struct chk *c = calloc(1, sizeof(*c));

			if (!c || n_chks >= sizeof(chks) / sizeof(chks[0])) {
				free(c);
				return -ENOMEM;
			}
			c->m = m;
			c->ck = ck;
			c->idx = k;
			c->pidfd = c->icmp_fd = -1;
			c->seen_state = m->state;
			switch (ck->type) {
			case SK_CHECK_TCP:
				snprintf(c->what, sizeof(c->what), "tcp %s:%u", ck->host.text, ck->port);
				break;
			case SK_CHECK_PING:
				snprintf(c->what, sizeof(c->what), "ping %s", ck->host.text);
				break;
			default:
				snprintf(c->what, sizeof(c->what), "%s %.100s", type_name(ck->type), ck->arg);
			}
			uv_timer_init(a->loop, &c->tick);
			uv_timer_init(a->loop, &c->timeout);
			c->tick.data = c->timeout.data = c;
			uv_timer_start(&c->tick, on_tick, ck->interval_ms, ck->interval_ms);
			uv_unref((uv_handle_t *)&c->tick);
			uv_unref((uv_handle_t *)&c->timeout);
			chks[n_chks++] = c;
			sk_info("module %s: checker %s every %u ms, timeout %u ms, %u failure(s) -> %s",
				m->conf.name, c->what, ck->interval_ms, ck->timeout_ms, ck->failures,
				ck->action == SK_ACT_FAILOVER ? "failover" :
				ck->action == SK_ACT_STOP ? "stop" :
				ck->action == SK_ACT_IGNORE ? "ignore (log only)" :
				ck->action == SK_ACT_STOPSTART ? "stopstart (the peer may take over)" :
				"restart (then failover)");
		}
	}
	return 0;
}

void agent_check_stop(struct agent *a)
{
	(void)a;
	for (unsigned i = 0; i < n_chks; i++) {
		struct chk *c = chks[i];

		uv_timer_stop(&c->tick);
		uv_timer_stop(&c->timeout);
		if (c->proc)
			uv_process_kill(c->proc, SIGKILL);
		pid_forget(c);
		poll_drop(&c->icmp_poll);
	}
}
