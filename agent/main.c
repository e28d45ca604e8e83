/* agent/main.c: skagentd entry point: options, configuration (refused with file, path and rule), the loop. */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#ifdef SK_HAVE_JOURNAL
#include <systemd/sd-daemon.h>
#endif

/* under a sanitizer the agent does not lock its memory (the shadow mappings are huge) */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define AGENT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define AGENT_SANITIZED 1
#endif
#endif

uint64_t agent_now_ms(void)
{
	return sk_now_us() / 1000;
}

uint64_t agent_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void agent_path(const struct agent *a, char *out, size_t cap, const char *path)
{
	snprintf(out, cap, "%s%s", a->root, path);
}

void agent_close(uv_handle_t *h)
{
	if (h->loop && !uv_is_closing(h))
		uv_close(h, NULL);
}

static void usage(const char *why)
{
	if (why)
		fprintf(stderr, "skagentd: %s\n", why);
	fprintf(stderr,
		"usage: skagentd [--root DIR] [--node NAME] [--sock PATH] [--group NAME]\n"
		"                [--log-level error|warn|info|debug] [--check] [--http IP:PORT] [--fence]\n"
		"                [--rt-priority N]\n"
		"  --root DIR   prefix of every path (etc/steadykit/cluster.json,\n"
		"               var/lib/steadykit/modules/NAME/, var/lib/steadykit/state/NAME/,\n"
		"               run/steadykit/agent.sock); several nodes on one machine in tests\n"
		"  --node NAME  this node's name in cluster.json (default: the node owning a local address)\n"
		"  --group NAME members of this group may use the control socket too (default root only)\n"
		"  --check      validate the configuration and exit (0 valid, 1 invalid)\n"
		"  --http IP:PORT  serve /ready /metrics /state on that one address (\"[v6]:port\");\n"
		"               overrides cluster.json \"http\".\"listen\"\n"
		"  --witness    run as the cluster's lease witness (the node with \"role\": \"witness\")\n"
		"  --fence      SIGKILL the skfused of every module (after a crash of the agent) and exit\n"
		"  --rt-priority N  SCHED_RR priority of the agent's loop (1-99, default 10; 0: run as\n"
		"               an ordinary process, and a starved agent can look dead to its peers)\n"
		"SIGTERM stops every module, then exits; SIGHUP restarts the agent in place (same pid),\n"
		"the modules left running and taken over.\n");
	exit(why ? 2 : 0);
}

/*
 * The loop thread sends and judges the heartbeats: an agent starved of CPU for longer than the
 * heartbeat timeout (a loaded machine, a runaway process) falls silent and its peer takes over
 * from a healthy node. So, as Corosync does, it runs SCHED_RR, above every ordinary process and
 * below the kernel's interrupt threads (50), with SCHED_RESET_ON_FORK: skfused, the scripts,
 * the checkers and every thread created from now on (libmicrohttpd's, libuv's pool) start as
 * ordinary processes. Its pages stay in memory once touched (MCL_ONFAULT: no cost for the
 * address space it never uses). Failures are warnings: the agent works without either.
 */
static void run_realtime(int prio)
{
	struct sched_param sp = { .sched_priority = prio };

	if (!prio) {
		sk_warn("--rt-priority 0: the agent runs as an ordinary process; on a loaded machine "
			"it can be starved past the heartbeat timeout and its peer then takes over");
		return;
	}
	if (sched_setscheduler(0, SCHED_RR | SCHED_RESET_ON_FORK, &sp) < 0)
		sk_warn("cannot run SCHED_RR (priority %d): %s; a starved agent can look dead to "
			"its peers", prio, strerror(errno));
#ifndef AGENT_SANITIZED
	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0)
		sk_warn("cannot lock the agent's memory: %s", strerror(errno));
#endif
}

/* The cluster node one of whose addresses is configured on a local interface. */
static const struct sk_conf_node *find_self(const struct sk_cluster *c)
{
	struct ifaddrs *ifa, *i;
	const struct sk_conf_node *found = NULL;

	if (getifaddrs(&ifa) < 0)
		return NULL;
	for (i = ifa; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		for (unsigned n = 0; n < c->n_nodes && !found; n++)
			for (unsigned k = 0; k < c->n_networks && !found; k++) {
				const struct sk_conf_addr *ad = &c->nodes[n].addr[k];

				if (ad->family != i->ifa_addr->sa_family)
					continue;
				if (ad->family == AF_INET &&
				    !memcmp(&((struct sockaddr_in *)i->ifa_addr)->sin_addr, ad->ip, 4))
					found = &c->nodes[n];
				if (ad->family == AF_INET6 &&
				    !memcmp(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, ad->ip, 16))
					found = &c->nodes[n];
			}
	}
	freeifaddrs(ifa);
	return found;
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Every installed module that names this node; any invalid one refuses the start. */
static int load_modules(struct agent *a)
{
	char dirpath[AGENT_PATH], path[AGENT_PATH + 300], ebuf[800];
	char *names[256];
	unsigned nn = 0;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	agent_path(a, dirpath, sizeof(dirpath), "/var/lib/steadykit/modules");
	d = opendir(dirpath);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		sk_err("cannot read %s: %s", dirpath, strerror(errno));
		return -errno;
	}
	while ((de = readdir(d)) && nn < 256) {
		if (de->d_name[0] == '.')
			continue;
		names[nn++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, nn, sizeof(names[0]), cmp_str);
	for (unsigned i = 0; i < nn; i++) {
		struct sk_conf_err err = { 0 };
		struct sk_module *mc = calloc(1, sizeof(*mc));
		bool mine = false;

		snprintf(path, sizeof(path), "%s/%s/userconfig.json", dirpath, names[i]);
		if (!mc)
			rc = -ENOMEM;
		else if ((rc = sk_conf_module_load(path, mc, &err)) < 0 ||
			 (rc = sk_conf_module_check(&a->cluster, mc, &err)) < 0) {
			if (!err.file[0])
				snprintf(err.file, sizeof(err.file), "%.255s", path);
			sk_err("invalid module: %s", sk_conf_err_str(&err, ebuf, sizeof(ebuf)));
		} else if (strcmp(mc->name, names[i])) {
			sk_err("invalid module: %s: name: \"%s\" is installed in folder \"%s\"; the "
			       "folder must be named after the module", path, mc->name, names[i]);
			rc = -EINVAL;
		} else if (mc->kind == SK_MOD_MIRROR && mc->n_dirs != 1) {
			sk_err("invalid module: %s: replication.dirs: this agent replicates exactly one "
			       "directory per module (got %u); split it into several modules", path,
			       mc->n_dirs);
			rc = -EINVAL;
		} else {
			for (unsigned k = 0; k < mc->n_nodes; k++)
				mine |= !strcmp(mc->nodes[k].name, a->self->name);
		}
		if (rc == 0 && mine) {
			struct agent_mod *m = calloc(1, sizeof(*m));

			if (!m || a->n_mods >= AGENT_MAX_MODS) {
				sk_err("too many modules (max %d)", AGENT_MAX_MODS);
				rc = -E2BIG;
				free(m);
			} else {
				m->conf = *mc;
				a->mods[a->n_mods++] = m;
			}
		}
		if (mc)
			sk_conf_module_free(mc);
		free(mc);
		free(names[i]);
		names[i] = NULL;
		if (rc < 0) {
			for (unsigned k = i + 1; k < nn; k++)
				free(names[k]);
			return rc;
		}
	}
	/* module ids travel in frames: two modules with one id would mix their states */
	for (unsigned i = 0; i < a->n_mods; i++)
		for (unsigned k = i + 1; k < a->n_mods; k++)
			if (a->mods[i]->conf.id == a->mods[k]->conf.id) {
				sk_err("invalid modules: %s and %s both have id %u; ids must be unique",
				       a->mods[i]->conf.name, a->mods[k]->conf.name, a->mods[i]->conf.id);
				return -EINVAL;
			}
	return 0;
}

/*
 * systemd (Type=notify): READY=1 once the sockets are bound and the modules set up, WATCHDOG=1
 * from the loop at half the unit's WatchdogSec (a stuck loop stops it and systemd restarts us),
 * STOPPING=1 at the first signal. Without NOTIFY_SOCKET every call is a no-op.
 */
static void notify(const char *what)
{
#ifdef SK_HAVE_JOURNAL
	sd_notify(0, what);
#else
	(void)what;
#endif
}

static void on_watchdog(uv_timer_t *t)
{
	(void)t;
	notify("WATCHDOG=1");
}

static void watchdog_start(struct agent *a)
{
#ifdef SK_HAVE_JOURNAL
	uint64_t usec = 0;

	if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000) {
		uv_timer_init(a->loop, &a->watchdog);
		uv_timer_start(&a->watchdog, on_watchdog, 0, usec / 2000);
		uv_unref((uv_handle_t *)&a->watchdog); /* never what keeps the loop alive */
		sk_info("systemd watchdog: a ping every %llu ms", (unsigned long long)(usec / 2000));
	}
#else
	(void)a;
#endif
}

static void on_signal(uv_signal_t *s, int sig)
{
	struct agent *a = s->data;

	if (a->stopping) {
		sk_warn("second signal %d: exiting now", sig);
		exit(1);
	}
	if (sig == SIGTERM && agent_systemd_restarting()) {
		/* systemctl restart: the next agent takes the running modules over (agent/adopt.c);
		 * the unit's KillMode=process leaves them alone */
		sk_info("signal %d: systemd restarts the agent: exiting, the modules keep running", sig);
		agent_restarting(a);
		notify("STOPPING=1");
		exit(0);
	}
	sk_info("signal %d: stopping every module, then exiting", sig);
	notify("STOPPING=1");
	a->stopping = true;
	agent_mod_stop_all(a);
}

/* SIGHUP (systemctl reload skagentd): a new agent in place, the modules keep running. */
static void on_hup(uv_signal_t *s, int sig)
{
	(void)sig;
	agent_reexec(s->data);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },  { "node", required_argument, NULL, 'n' },
		{ "sock", required_argument, NULL, 's' },  { "group", required_argument, NULL, 'g' },
		{ "log-level", required_argument, NULL, 'l' }, { "check", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },        { "http", required_argument, NULL, 'H' },
		{ "witness", no_argument, NULL, 'W' },
		{ "fence", no_argument, NULL, 'F' },
		{ "rt-priority", required_argument, NULL, 'P' },
		{ 0 },
	};
	static struct agent ag;
	struct agent *a = &ag;
	const char *node = NULL, *sock = NULL;
	enum sk_log_level lvl = SK_LOG_INFO;
	struct sk_conf_err err = { 0 };
	char ebuf[800];
	bool witness = false; /* --witness: this node is the lease witness (agent/witness.c) */
	bool check = false, have_http = false, fence = false;
	static uv_signal_t sighup;
	struct sk_conf_addr http_addr = { 0 };
	uint16_t http_port = 0;
	int c, rc, rt_prio = 10;

	a->ctl_group = (gid_t)-1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (optarg[0] != '/' || strlen(optarg) > 512)
				usage("--root must be an absolute path (at most 512 bytes)");
			snprintf(a->root, sizeof(a->root), "%s", optarg);
			while (strlen(a->root) > 1 && a->root[strlen(a->root) - 1] == '/')
				a->root[strlen(a->root) - 1] = '\0';
			if (!strcmp(a->root, "/"))
				a->root[0] = '\0';
			break;
		case 'n': node = optarg; break;
		case 's': sock = optarg; break;
		case 'g': {
			struct group *g = getgrnam(optarg);

			if (!g)
				usage("--group: no such group");
			a->ctl_group = g->gr_gid;
			break;
		}
		case 'l':
			if (!strcmp(optarg, "error")) lvl = SK_LOG_ERR;
			else if (!strcmp(optarg, "warn")) lvl = SK_LOG_WARN;
			else if (!strcmp(optarg, "info")) lvl = SK_LOG_INFO;
			else if (!strcmp(optarg, "debug")) lvl = SK_LOG_DEBUG;
			else usage("--log-level is error, warn, info or debug");
			break;
		case 'c': check = true; break;
		case 'W': witness = true; break;
		case 'F': fence = true; break;
		case 'P': {
			char *end;
			long v;

			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || v < 0 || v > 99)
				usage("--rt-priority must be a number from 0 to 99");
			rt_prio = (int)v;
			break;
		}
		case 'H': {
			char why[120], msg[160];

			if (sk_conf_parse_listen(optarg, &http_addr, &http_port, why, sizeof(why)) < 0) {
				snprintf(msg, sizeof(msg), "--http: %s", why);
				usage(msg);
			}
			have_http = true;
			break;
		}
		case 'h': usage(NULL); break;
		default: usage("unknown option");
		}
	}
	if (optind != argc)
		usage("unexpected argument");
	sk_log_init("skagentd", lvl);
	signal(SIGPIPE, SIG_IGN);

	agent_path(a, a->cluster_path, sizeof(a->cluster_path), "/etc/steadykit/cluster.json");
	rc = sk_conf_cluster_load(a->cluster_path, &a->cluster, &err);
	if (rc < 0) {
		if (!err.file[0])
			snprintf(err.file, sizeof(err.file), "%.255s", a->cluster_path);
		sk_err("invalid cluster configuration: %s", sk_conf_err_str(&err, ebuf, sizeof(ebuf)));
		return 1;
	}
	a->self = node ? sk_conf_node_by_name(&a->cluster, node) : find_self(&a->cluster);
	if (!a->self) {
		if (node)
			sk_err("%s: nodes: no node named \"%s\"", a->cluster_path, node);
		else
			sk_err("%s: nodes: none of the nodes' addresses is on this machine; "
			       "give --node NAME", a->cluster_path);
		return 1;
	}
	agent_path(a, a->secret_path, sizeof(a->secret_path), a->cluster.secret_file);
	rc = agent_key_load(a, &err); /* cached in run/steadykit: a restart derives nothing */
	if (rc < 0) {
		sk_err("invalid secret: %s", sk_conf_err_str(&err, ebuf, sizeof(ebuf)));
		return 1;
	}
	sk_proto_derive(&a->dkey, &a->master, "dgram", NULL, 0);
	if (witness != a->self->witness) {
		sk_err(witness ? "%s: nodes: --witness: node %s is not the lease witness (give it "
		       "\"role\": \"witness\")" : "%s: nodes: node %s is the lease witness: run "
		       "skagentd --witness there", a->cluster_path, a->self->name);
		return 1;
	}
	if (witness) {
		sk_log_set_node(a->self->name);
		sk_log_set_sink(SK_LOG_AUTO);
		if (check) {
			printf("configuration valid: cluster %s, lease witness %s\n", a->cluster.name,
			       a->self->name);
			return 0;
		}
		run_realtime(rt_prio); /* it answers lease requests in time, whatever the load */
		a->loop = uv_default_loop();
		notify("READY=1");
		return agent_witness_serve(a) < 0 ? 1 : 0;
	}
	if (load_modules(a) < 0)
		return 1;
	if (fence) {
		/* ExecStopPost of the unit after a crash: no skfused may go on acknowledging writes
		 * that no agent decides about (the peer takes over) */
		printf("%d process(es) killed: skfused and what the modules' scripts started\n",
		       agent_fence_all(a));
		return 0;
	}
	if (check) {
		printf("configuration valid: cluster %s, node %s, %u module(s)\n", a->cluster.name,
		       a->self->name, a->n_mods);
		return 0;
	}
	if (sock)
		snprintf(a->sock_path, sizeof(a->sock_path), "%s", sock);
	else
		agent_path(a, a->sock_path, sizeof(a->sock_path), "/run/steadykit/agent.sock");

	a->hb_interval_ms = a->cluster.hb_interval_ms;
	a->hb_timeout_ms = a->cluster.hb_timeout_ms;
	/* long enough for a peer started a little later to be seen before deciding alone */
	a->startup_grace_ms = a->hb_timeout_ms * 5 > 3000 ? a->hb_timeout_ms * 5 : 3000;
	a->incarnation = agent_wall_ms() * 1000;
	a->loop = uv_default_loop();
	for (unsigned i = 0; i < a->cluster.n_nodes; i++)
		if (&a->cluster.nodes[i] != a->self && !a->cluster.nodes[i].witness)
			a->peers[a->n_peers++].node = &a->cluster.nodes[i];

	sk_log_set_node(a->self->name);
	sk_log_set_sink(SK_LOG_AUTO); /* journald when started by systemd, else stderr */
	sk_info("node %s (id %u) of cluster %s: %u module(s), heartbeat every %u ms, peer dead "
		"after %u ms of silence", a->self->name, a->self->id, a->cluster.name, a->n_mods,
		a->hb_interval_ms, a->hb_timeout_ms);
	if (!a->cluster.has_witness)
		sk_warn("no witness configured: a network partition between the nodes can make "
			"two primaries (each side takes over); configure \"witness\" to prevent it");

	run_realtime(rt_prio);
	if (agent_member_start(a) < 0 || agent_chan_start(a) < 0 || agent_ctl_start(a) < 0)
		return 1;
	if (!have_http && a->cluster.has_http) {
		http_addr = a->cluster.http_addr;
		http_port = a->cluster.http_port;
		have_http = true;
	}
	for (unsigned i = 0; i < a->n_mods; i++) {
		if (agent_mod_init(a, a->mods[i]) < 0)
			return 1;
		agent_adopt(a->mods[i]); /* a module still running from before (agent/adopt.c) */
	}
	/* heard at once after a restart (the peer's clock of our silence runs), before the probe
	 * below, which forks skfused --help (40 ms here, 800 ms under AddressSanitizer) */
	agent_member_announce(a);
	if (a->n_mods)
		sk_info("skfused %s", agent_fused_probe() ? "takes the key over a pipe (--key-fd): "
			"no key derivation per start" : "derives the key at each start (no --key-fd)");
	uv_signal_init(a->loop, &a->sigterm);
	uv_signal_init(a->loop, &a->sigint);
	a->sigterm.data = a->sigint.data = a;
	uv_signal_start(&a->sigterm, on_signal, SIGTERM);
	uv_signal_start(&a->sigint, on_signal, SIGINT);
	agent_reexec_init(argv);
	uv_signal_init(a->loop, &sighup);
	sighup.data = a;
	uv_signal_start(&sighup, on_hup, SIGHUP);
	uv_unref((uv_handle_t *)&sighup);
	sk_info("ready: control socket %s", a->sock_path);
	/* after the modules: the first snapshot already lists them */
	if (have_http && agent_http_start(a, &http_addr, http_port) < 0)
		return 1;
	if (agent_check_start(a) < 0 || agent_witness_start(a) < 0)
		return 1;
	watchdog_start(a);
	notify("READY=1");
	uv_run(a->loop, UV_RUN_DEFAULT);
	agent_check_stop(a);
	agent_witness_stop(a);
	agent_http_stop(a);
	sk_info("exit");
	return 0;
}
