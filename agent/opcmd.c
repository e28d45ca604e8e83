/* agent/opcmd.c: the operator verbs beyond the role commands: restart (the application), stopstart, forcestop. */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define STOPSTART_MAX_MS (10u * 60 * 1000) /* a stop that takes longer is left to the operator */
#define STOPSTART_POLL_MS 100
#define MAX_KILLED 64

/* ---- stopstart: stop here, then start again once STOP is reached ---- */

struct pending {
	struct agent_mod *m;
	uint64_t deadline_ms;
};

static struct pending pend[AGENT_MAX_MODS];
static uv_timer_t pend_timer;

static void on_pend(uv_timer_t *t)
{
	bool left = false;

	(void)t;
	for (unsigned i = 0; i < AGENT_MAX_MODS; i++) {
		struct agent_mod *m = pend[i].m;
		char err[SK_CTL_TEXT_LEN], hint[SK_CTL_TEXT_LEN];

		if (!m)
			continue;
		if (m->a->stopping) {
			pend[i].m = NULL;
		} else if (m->state == SK_ST_STOP && !m->plan.active) {
			pend[i].m = NULL;
			agent_mod_log(m, "stopstart: stopped, starting again");
			agent_mod_cmd(m, SK_CTL_START, false, err, sizeof(err), hint, sizeof(hint));
		} else if (agent_now_ms() > pend[i].deadline_ms) {
			pend[i].m = NULL;
			agent_mod_log(m, "stopstart: not stopped after %u s: not starting it again; "
				      "skctl start -m %s once it is", STOPSTART_MAX_MS / 1000, m->conf.name);
		} else {
			left = true;
		}
	}
	if (!left)
		uv_timer_stop(&pend_timer);
}

/* An operator's start or stop in the meantime wins over a pending stopstart. */
void agent_opcmd_cancel(struct agent_mod *m)
{
	for (unsigned i = 0; i < AGENT_MAX_MODS; i++)
		if (pend[i].m == m)
			pend[i].m = NULL;
}

static int stopstart(struct agent_mod *m, char *err, size_t elen, char *hint, size_t hlen)
{
	struct pending *slot = NULL;
	int rc;

	agent_opcmd_cancel(m);
	for (unsigned i = 0; i < AGENT_MAX_MODS && !slot; i++)
		if (!pend[i].m)
			slot = &pend[i];
	if (!slot) {
		snprintf(err, elen, "too many stopstart requests at once");
		snprintf(hint, hlen, "retry in a moment");
		return -EAGAIN;
	}
	rc = agent_mod_cmd(m, SK_CTL_STOP, false, err, elen, hint, hlen);
	if (rc < 0)
		return rc;
	slot->m = m;
	slot->deadline_ms = agent_now_ms() + STOPSTART_MAX_MS;
	if (!pend_timer.loop) {
		uv_timer_init(m->a->loop, &pend_timer);
		uv_unref((uv_handle_t *)&pend_timer);
	}
	if (!uv_is_active((uv_handle_t *)&pend_timer))
		uv_timer_start(&pend_timer, on_pend, STOPSTART_POLL_MS, STOPSTART_POLL_MS);
	return 0;
}

/* ---- forcestop: what runs for the module is killed, then skfused, the VIP; no stop script ---- */

struct killed {
	int pid;
	char what[96];
};

static bool same_netns(int pid, const struct stat *self)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
	return stat(path, &st) == 0 && st.st_ino == self->st_ino && st.st_dev == self->st_dev;
}

int agent_proc_each(int (*fn)(int pid, void *arg), void *arg)
{
	struct stat self;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (stat("/proc/self/ns/net", &self) < 0 || !(d = opendir("/proc")))
		return 0;
	while (!rc && (de = readdir(d))) {
		int pid = atoi(de->d_name);

		if (pid > 0 && pid != getpid() && same_netns(pid, &self))
			rc = fn(pid, arg);
	}
	closedir(d);
	return rc;
}

static bool under(const char *link, const char *dir)
{
	char target[AGENT_PATH];
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	size_t dl = strlen(dir);

	if (n <= 0)
		return false;
	target[n] = '\0';
	return !strncmp(target, dir, dl) && (target[dl] == '\0' || target[dl] == '/');
}

/* Its cwd, root or one of its first 4096 descriptors is in the replicated directory. */
static bool uses_dir(int pid, const char *dir)
{
	char path[96];
	struct dirent *de;
	DIR *d;
	bool hit = false;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/cwd", pid);
	if (under(path, dir))
		return true;
	snprintf(path, sizeof(path), "/proc/%d/root", pid);
	if (under(path, dir))
		return true;
	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	d = opendir(path);
	if (!d)
		return false;
	while (!hit && n++ < 4096 && (de = readdir(d))) {
		char link[128];

		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "/proc/%d/fd/%.20s", pid, de->d_name);
		hit = under(link, dir);
	}
	closedir(d);
	return hit;
}

/* Started by this module's scripts on this node: they inherit SK_MODULE and SK_NODE. */
static bool started_by(int pid, const char *module, const char *node)
{
	static char env[65536];
	char path[64], want_m[64], want_n[96];
	size_t n = 0;
	ssize_t r;
	bool hm = false, hn = false;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/environ", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	while (n < sizeof(env) - 1 && (r = read(fd, env + n, sizeof(env) - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	env[n] = '\0';
	snprintf(want_m, sizeof(want_m), "SK_MODULE=%s", module);
	snprintf(want_n, sizeof(want_n), "SK_NODE=%s", node);
	for (size_t i = 0; i < n; i += strlen(env + i) + 1) {
		hm |= !strcmp(env + i, want_m);
		hn |= !strcmp(env + i, want_n);
	}
	return hm && hn;
}

/*
 * The module's processes, in this node's network namespace: those its scripts started (the
 * application: SK_MODULE/SK_NODE in their environment) and those using the replicated
 * directory; never the agent or skfused.
 */
struct kill_walk {
	struct agent_mod *m;
	struct killed *out;
	unsigned n, cap;
};

static int kill_one(int pid, void *arg)
{
	struct kill_walk *k = arg;
	struct agent_mod *m = k->m;
	const char *why = NULL;

	if (pid <= 1 || pid == m->fused.pid || sk_proc_comm_is(pid, "skfused"))
		return 0;
	if (started_by(pid, m->conf.name, m->a->self->name))
		why = "started by the module's scripts";
	else if (uses_dir(pid, m->dir))
		why = "using the replicated directory";
	if (why && kill(pid, SIGKILL) == 0) {
		k->out[k->n].pid = pid;
		snprintf(k->out[k->n].what, sizeof(k->out[k->n].what), "%s", why);
		k->n++;
	}
	return k->n >= k->cap; /* full: stop the walk */
}

static unsigned kill_module_procs(struct agent_mod *m, struct killed *out, unsigned cap)
{
	struct kill_walk k = { .m = m, .out = out, .cap = cap };

	if (cap)
		agent_proc_each(kill_one, &k);
	return k.n;
}

static int app_one(int pid, void *arg)
{
	struct agent_mod *m = arg;

	return pid > 1 && started_by(pid, m->conf.name, m->a->self->name) ? pid : 0;
}

int agent_opcmd_app_pid(struct agent_mod *m)
{
	return agent_proc_each(app_one, m);
}

unsigned agent_opcmd_kill_procs(struct agent_mod *m)
{
	struct killed k[MAX_KILLED];
	unsigned n = kill_module_procs(m, k, MAX_KILLED);

	for (unsigned i = 0; i < n; i++)
		sk_info("module %s: pid %d killed (%s)", m->conf.name, k[i].pid, k[i].what);
	return n;
}

static int forcestop(struct agent_mod *m, json_object **data)
{
	struct killed k[MAX_KILLED];
	json_object *arr = json_object_new_array(), *o;
	unsigned n;
	char line[600], cut[300] = "";
	size_t len = 0;

	*data = json_object_new_object();
	if (m->script.running) {
		o = json_object_new_object();
		json_object_object_add(o, "pid", json_object_new_int(m->script.pid));
		json_object_object_add(o, "what", json_object_new_string(
			sk_conf_script_name(m->script.which)));
		json_object_array_add(arr, o);
		agent_script_kill(m); /* its whole process group */
	}
	n = kill_module_procs(m, k, MAX_KILLED);
	for (unsigned i = 0; i < n; i++) {
		o = json_object_new_object();
		json_object_object_add(o, "pid", json_object_new_int(k[i].pid));
		json_object_object_add(o, "what", json_object_new_string(k[i].what));
		json_object_array_add(arr, o);
		if (len < sizeof(line))
			len += (size_t)snprintf(line + len, sizeof(line) - len, " %d (%s)", k[i].pid,
						k[i].what);
	}
	m->want_started = false;
	agent_state_save(m);
	agent_opcmd_cancel(m);
	if (m->fused.running) {
		o = json_object_new_object();
		json_object_object_add(o, "pid", json_object_new_int(m->fused.pid));
		json_object_object_add(o, "what", json_object_new_string("skfused"));
		json_object_array_add(arr, o);
	}
	agent_mod_log(m, "forcestop: killed%s; skfused killed, VIP removed, no stop script run",
		      len ? line : " no application process");
	if (m->plan.active) {
		/* a transition in progress (e.g. start_prim running): what its step waits for is
		 * killed, so the step ends at once; the plan ends there, failed, with none of its
		 * other steps and no recovery plan; forcestop's own plan follows (decide()) */
		snprintf(cut, sizeof(cut), "%s -> %s (%.100s) cut short at its step %s",
			 sk_state_name(m->plan.from), sk_state_name(m->plan.to), m->plan.cause,
			 agent_mod_step_name(m->plan.steps[m->plan.cur]));
		m->plan.abort = true;
		m->forcestop = true;
		if (m->fused.running)
			kill(m->fused.pid, SIGKILL);
	} else {
		agent_mod_forcestop_plan(m);
	}
	if (cut[0])
		json_object_object_add(*data, "interrupted", json_object_new_string(cut));
	json_object_object_add(*data, "killed", arr);
	json_object_object_add(*data, "then", json_object_new_string(
		"skfused killed (nothing more is acknowledged), VIP removed, state STOP; no stop "
		"script was run"));
	return 0;
}

int agent_opcmd(struct agent_mod *m, enum sk_ctl_verb verb, json_object **data, char *err,
		size_t elen, char *hint, size_t hlen)
{
	const char *name = m->conf.name;
	int rc;

	*data = NULL;
	hint[0] = '\0';
	switch (verb) {
	case SK_CTL_FORCESTOP:
		return forcestop(m, data);
	case SK_CTL_STOPSTART:
		if (m->state == SK_ST_STOP && !m->plan.active) {
			snprintf(err, elen, "module %s is stopped on this node", name);
			snprintf(hint, hlen, "skctl start -m %s", name);
			return -EINVAL;
		}
		return stopstart(m, err, elen, hint, hlen);
	case SK_CTL_RESTART:
		if (m->conf.kind == SK_MOD_MIRROR && !sk_state_is_primary(m->state) &&
		    !m->plan.active) {
			snprintf(err, elen, "module %s is %s here: the application runs on the primary",
				 name, sk_state_name(m->state));
			snprintf(hint, hlen, "run skctl restart -m %s on %s (skctl state -m %s)", name,
				 m->peer ? m->peer->node->name : "the primary", name);
			return -EINVAL;
		}
		rc = agent_mod_app_restart(m, "operator: restart (stop_prim, start_prim)");
		if (rc == -EBUSY) {
			snprintf(err, elen, "module %s is busy (%s -> %s: %s)", name,
				 sk_state_name(m->plan.from), sk_state_name(m->plan.to), m->plan.cause);
			snprintf(hint, hlen, "wait for it to finish (skctl state -m %s), then retry", name);
		} else if (rc < 0) {
			snprintf(err, elen, "module %s cannot restart its application here (%s)", name,
				 sk_state_name(m->state));
			snprintf(hint, hlen, "skctl state -m %s says where it runs", name);
		}
		return rc;
	default:
		snprintf(err, elen, "not an operator verb");
		return -EINVAL;
	}
}
