/* agent/adopt.c: an agent restarted under running modules takes them over: skfused found by its socket, cached key, re-exec on SIGHUP. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#ifdef SK_HAVE_JOURNAL
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#endif

#define STATUS_TIMEOUT_MS 1000
#define STATUS_MAX 65536 /* above the 8 KiB of the status poll (fused.c): room for it to grow */
#define REEXEC_WAIT_MS 100
#define REEXEC_TRIES 600 /* 60 s for running plans to end */

/*
 * Why this works: skfused and the application do not depend on the agent while they run.
 * skfused's control socket (run/steadykit/fused-NAME.sock) names the live daemon (SO_PEERCRED
 * gives its pid) and its status gives its role and whether its peer is connected; the agent's
 * own facts (generation, last role, in sync) are in state/NAME/agent.state. The application is
 * not the agent's child either (start_prim detaches it): the checkers find it again.
 */

/* ---- the skfused of a module, asked through its control socket ---- */

struct fused_seen {
	int pid;
	enum agent_role role;
	bool peer_connected, peer_in_sync;
};

static int read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
	uint64_t deadline = agent_now_ms() + (uint64_t)timeout_ms;
	size_t n = 0;

	while (n < cap - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = agent_now_ms();
		ssize_t r;

		if (now >= deadline || poll(&p, 1, (int)(deadline - now)) <= 0)
			return -ETIMEDOUT;
		r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -ECONNRESET;
		n += (size_t)r;
		buf[n] = '\0';
		if (memchr(buf, '\n', n))
			return (int)n;
	}
	return -EMSGSIZE;
}

/* Connect to skfused's socket: pid of the daemon behind it (SO_PEERCRED), then its status. */
static int fused_ask(const char *sock, struct fused_seen *s)
{
	static const char req[] = "{\"cmd\":\"status\"}\n";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ucred cr;
	socklen_t sl = sizeof(cr);
	char *buf = NULL;
	json_object *o = NULL, *v;
	int fd, rc;

	memset(s, 0, sizeof(*s));
	if (strlen(sock) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		goto out;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &sl) < 0 || cr.pid <= 0) {
		rc = -EPROTO;
		goto out;
	}
	s->pid = cr.pid;
	if (write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1) {
		rc = -EIO;
		goto out;
	}
	buf = malloc(STATUS_MAX);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = read_line(fd, buf, STATUS_MAX, STATUS_TIMEOUT_MS);
	if (rc < 0)
		goto out;
	*strchr(buf, '\n') = '\0';
	o = json_tokener_parse(buf);
	rc = -EBADMSG;
	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "role", &v) || !json_object_is_type(v, json_type_string))
		goto out;
	if (!strcmp(json_object_get_string(v), "primary"))
		s->role = AGENT_ROLE_PRIMARY;
	else if (!strcmp(json_object_get_string(v), "secondary"))
		s->role = AGENT_ROLE_SECONDARY;
	else
		goto out;
	s->peer_connected = json_object_object_get_ex(o, "peer", &v) &&
			    json_object_is_type(v, json_type_string) &&
			    !strcmp(json_object_get_string(v), "connected");
	s->peer_in_sync = s->peer_connected && json_object_object_get_ex(o, "peer_in_sync", &v) &&
			  json_object_get_boolean(v);
	rc = 0;
out:
	if (o)
		json_object_put(o);
	free(buf);
	close(fd);
	return rc;
}

/* ---- watching an adopted skfused: a pidfd (it is not our child after a kill -9) ---- */

struct watch {
	struct agent_mod *m;
	int pid, pidfd;
	uv_poll_t *poll;
};

static struct watch watches[AGENT_MAX_MODS];

static void on_freed(uv_handle_t *h)
{
	free(h);
}

static void on_adopted_exit(uv_poll_t *h, int status, int events)
{
	struct watch *w = h->data;
	struct agent_mod *m = w->m;
	siginfo_t si = { 0 };
	int64_t code = -1;
	int sig = 0;

	(void)status;
	(void)events;
	/* our child after a re-exec in place (reap it), anybody's after a kill -9 (ECHILD) */
	if (syscall(SYS_waitid, P_PIDFD, w->pidfd, &si, WEXITED | WNOHANG, NULL) == 0 &&
	    si.si_pid) {
		if (si.si_code == CLD_EXITED)
			code = si.si_status;
		else
			sig = si.si_status;
	}
	uv_poll_stop(w->poll);
	uv_close((uv_handle_t *)w->poll, on_freed);
	close(w->pidfd);
	w->poll = NULL;
	w->pidfd = -1;
	w->m = NULL;
	/* a newer skfused (respawned since) is not the one that died */
	if (m->fused.running && m->fused.run == NULL && m->fused.pid == w->pid)
		agent_fused_exited(m, code, sig);
}

static int watch_pid(struct agent_mod *m, int pid)
{
	struct watch *w = NULL;
	int pidfd;

	for (unsigned i = 0; i < AGENT_MAX_MODS && !w; i++)
		if (!watches[i].m)
			w = &watches[i];
	if (!w)
		return -ENOSPC;
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return -errno;
	w->poll = malloc(sizeof(*w->poll));
	if (!w->poll || uv_poll_init(m->a->loop, w->poll, pidfd) < 0) {
		free(w->poll);
		w->poll = NULL;
		close(pidfd);
		return -ENOMEM;
	}
	fcntl(pidfd, F_SETFD, FD_CLOEXEC);
	w->m = m;
	w->pid = pid;
	w->pidfd = pidfd;
	w->poll->data = w;
	uv_poll_start(w->poll, UV_READABLE, on_adopted_exit);
	uv_unref((uv_handle_t *)w->poll);
	return 0;
}

int agent_adopt(struct agent_mod *m)
{
	struct agent_fused *fu = &m->fused;
	struct fused_seen s;
	struct sk_ctl_trans t = { 0 };
	int rc;

	if (m->conf.kind == SK_MOD_FARM)
		return agent_farmmod_adopt(m);
	rc = fused_ask(m->fused_ctl, &s);
	if (rc == -ENOENT || rc == -ECONNREFUSED)
		return 0; /* no skfused (a stale socket of a dead one answers ECONNREFUSED) */
	if (rc < 0) {
		if (s.pid > 0 && sk_proc_comm_is(s.pid, "skfused")) {
			/* alive but not answering: it cannot be supervised, and a primary must not go
			 * on acknowledging writes nobody decides about */
			agent_mod_log(m, "skfused (pid %d) does not answer its status (%s): killed; "
				      "the module starts afresh", s.pid, strerror(-rc));
			kill(s.pid, SIGKILL);
		}
		return 0;
	}
	if (!sk_proc_comm_is(s.pid, "skfused")) {
		agent_mod_log(m, "%s is served by pid %d, which is not skfused: not taken over",
			      m->fused_ctl, s.pid);
		return 0;
	}
	rc = watch_pid(m, s.pid);
	if (rc < 0) {
		agent_mod_log(m, "cannot watch skfused (pid %d): %s: killed; the module starts afresh",
			      s.pid, strerror(-rc));
		kill(s.pid, SIGKILL);
		return 0;
	}
	fu->pid = s.pid;
	fu->run = NULL;
	fu->running = fu->ready = true;
	fu->stopping = false;
	fu->role = s.role;
	fu->started_ms = agent_now_ms();
	fu->peer_connected = s.peer_connected;
	fu->peer_in_sync = s.peer_in_sync;
	m->start_ms = agent_now_ms(); /* the peer gets the startup grace to be heard again */
	if (s.role == AGENT_ROLE_PRIMARY) {
		m->state = s.peer_connected ? SK_ST_PRIM : SK_ST_ALONE;
		/* the address stayed on the interface; announce it again all the same */
		if (m->conf.has_vip && m->carrier)
			agent_vip_add(m);
	} else {
		m->state = SK_ST_SECOND;
	}
	m->since_ms = agent_wall_ms();
	snprintf(m->reason, sizeof(m->reason), "taken over after an agent restart");
	agent_mod_log(m, "agent restarted: skfused %s (pid %d, peer %s) taken over as %s, "
		      "nothing restarted", s.role == AGENT_ROLE_PRIMARY ? "primary" : "secondary",
		      s.pid, s.peer_connected ? "connected" : "absent", sk_state_name(m->state));
	t.at_ms = agent_wall_ms();
	snprintf(t.module, sizeof(t.module), "%s", m->conf.name);
	t.from = t.to = m->state;
	snprintf(t.cause, sizeof(t.cause), "agent restarted: running skfused (pid %d) and "
		 "application taken over, nothing restarted", s.pid);
	agent_hist_add(m, &t);
	return 1;
}

/* ---- the master key, cached in /run (tmpfs, root only) ---- */

struct key_cache {
	char magic[8];
	uint64_t dev, ino, size, mtime_ns, ctime_ns;
	struct sk_key key;
};

static void key_id(const struct stat *st, struct key_cache *c)
{
	memcpy(c->magic, "SKKEY01", 8);
	c->dev = st->st_dev;
	c->ino = st->st_ino;
	c->size = (uint64_t)st->st_size;
	c->mtime_ns = (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
	c->ctime_ns = (uint64_t)st->st_ctim.tv_sec * 1000000000u + (uint64_t)st->st_ctim.tv_nsec;
}

int agent_key_load(struct agent *a, struct sk_conf_err *err)
{
	char path[AGENT_PATH], tmp[AGENT_PATH + 8];
	struct key_cache want = { 0 }, have = { 0 };
	struct stat st, cst;
	int fd, rc;

	agent_path(a, path, sizeof(path), "/run/steadykit/agent.key");
	/* the same checks as sk_conf_load_secret makes: a cached key never bypasses them */
	if (lstat(a->secret_path, &st) == 0 && S_ISREG(st.st_mode) &&
	    (st.st_mode & 07777) == 0600 && st.st_uid == geteuid()) {
		key_id(&st, &want);
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0) {
			bool ok = fstat(fd, &cst) == 0 && S_ISREG(cst.st_mode) &&
				  (cst.st_mode & 077) == 0 && cst.st_uid == geteuid() &&
				  cst.st_size == (off_t)sizeof(have) &&
				  read(fd, &have, sizeof(have)) == (ssize_t)sizeof(have) &&
				  !memcmp(&have, &want, offsetof(struct key_cache, key));

			close(fd);
			if (ok) {
				a->master = have.key;
				explicit_bzero(&have, sizeof(have));
				return 0;
			}
			explicit_bzero(&have, sizeof(have));
		}
	}
	rc = sk_conf_load_secret(a->secret_path, &a->master, err);
	if (rc < 0 || !want.magic[0])
		return rc;
	{
		char dir[AGENT_PATH];

		agent_path(a, dir, sizeof(dir), "/run/steadykit");
		mkdir(dir, 0700);
	}
	/* best effort: without the cache a restart only takes longer */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return 0;
	want.key = a->master;
	if (write(fd, &want, sizeof(want)) != (ssize_t)sizeof(want) || fsync(fd) < 0 ||
	    rename(tmp, path) < 0)
		unlink(tmp);
	close(fd);
	explicit_bzero(&want, sizeof(want));
	return 0;
}

/* ---- SIGHUP: run this binary again in place, modules left running ---- */

static char **saved_argv;
static char exe_path[PATH_MAX];
static uv_timer_t reexec_timer;
static unsigned reexec_tries;

void agent_reexec_init(char **argv)
{
	ssize_t n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);

	saved_argv = argv;
	/* the binary's path, not /proc/self/exe: after an upgrade that replaced the file, the
	 * restart must run the new one (/proc/self/exe names the old, deleted inode) */
	exe_path[n > 0 && !strstr(exe_path, " (deleted)") ? n : 0] = '\0';
}

void agent_restarting(struct agent *a)
{
	uint32_t ms = agent_restart_hold_ms(a);

	agent_member_restarting(a);
	for (unsigned i = 0; i < a->n_mods; i++)
		if (a->mods[i]->conf.kind == SK_MOD_FARM)
			agent_farmmod_restarting(a->mods[i], ms);
	sk_info("restart announced to the peers: silent for at most %u ms", ms);
}

static bool busy(struct agent *a)
{
	for (unsigned i = 0; i < a->n_mods; i++)
		if (a->mods[i]->plan.active || a->mods[i]->script.running)
			return true;
	return false;
}

static void on_reexec(uv_timer_t *t)
{
	agent_reexec(t->data);
}

void agent_reexec(struct agent *a)
{
	if (a->stopping)
		return;
	if (busy(a)) {
		if (!reexec_timer.loop) {
			uv_timer_init(a->loop, &reexec_timer);
			reexec_timer.data = a;
		}
		if (reexec_tries++ == 0)
			sk_info("SIGHUP: restarting in place once the running transitions end");
		if (reexec_tries > REEXEC_TRIES) {
			sk_err("SIGHUP: transitions still running after %d s: not restarting",
			       REEXEC_TRIES * REEXEC_WAIT_MS / 1000);
			reexec_tries = 0;
			return;
		}
		uv_timer_start(&reexec_timer, on_reexec, REEXEC_WAIT_MS, 0);
		return;
	}
	reexec_tries = 0;
	for (unsigned i = 0; i < a->n_mods; i++)
		agent_mod_log(a->mods[i], "agent restarting in place (SIGHUP): the module keeps "
			      "running and is taken over by the new agent");
	sk_info("SIGHUP: executing %s again in place; the modules keep running", saved_argv[0]);
#ifdef SK_HAVE_JOURNAL
	sd_notify(0, "RELOADING=1");
#endif
	/* every socket and file of ours is close-on-exec; skfused children stay our children.
	 * The HTTP thread and the checkers' probes end first (a probe script would be a child
	 * the new image does not know) */
	agent_http_stop(a);
	agent_check_stop(a);
	agent_restarting(a);
	if (exe_path[0])
		execv(exe_path, saved_argv);
	sk_warn("SIGHUP: cannot execute %s (%s): executing the running image again", exe_path,
		strerror(errno));
	execv("/proc/self/exe", saved_argv);
	sk_err("SIGHUP: cannot execute /proc/self/exe: %s; going on as before", strerror(errno));
#ifdef SK_HAVE_JOURNAL
	sd_notify(0, "READY=1");
#endif
}

/* ---- SIGTERM under systemd: a stop, or the stop half of a restart? ---- */

bool agent_systemd_restarting(void)
{
	bool res = false;
#ifdef SK_HAVE_JOURNAL
	sd_bus *bus = NULL;
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *r = NULL;
	const char *path = NULL;
	char *unit = NULL, *type = NULL;
	uint32_t id = 0, main_pid = 0;

	if (!getenv("INVOCATION_ID") || sd_bus_open_system(&bus) < 0)
		return false; /* not started by systemd */
	sd_bus_set_method_call_timeout(bus, 2000000); /* 2 s, never the default 25 s */
	if (sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
			       "org.freedesktop.systemd1.Manager", "GetUnitByPID", &e, &r, "u",
			       (uint32_t)getpid()) < 0 ||
	    sd_bus_message_read(r, "o", &path) < 0 || !(unit = strdup(path)))
		goto out;
	sd_bus_message_unref(r);
	r = NULL;
	/* only as the unit's main process: an agent started by hand from a shell inside some
	 * other service's cgroup (a CI runner) must not read that service's job */
	if (sd_bus_get_property_trivial(bus, "org.freedesktop.systemd1", unit,
					"org.freedesktop.systemd1.Service", "MainPID", &e, 'u',
					&main_pid) < 0 || main_pid != (uint32_t)getpid())
		goto out;
	if (sd_bus_get_property(bus, "org.freedesktop.systemd1", unit, "org.freedesktop.systemd1.Unit",
				"Job", &e, &r, "(uo)") < 0 ||
	    sd_bus_message_read(r, "(uo)", &id, &path) < 0 || id == 0)
		goto out;
	if (sd_bus_get_property_string(bus, "org.freedesktop.systemd1", path,
				       "org.freedesktop.systemd1.Job", "JobType", &e, &type) < 0)
		goto out;
	res = !strcmp(type, "restart") || !strcmp(type, "try-restart");
out:
	if (e.message)
		sk_warn("asking systemd whether this is a restart: %s", e.message);
	sd_bus_error_free(&e);
	sd_bus_message_unref(r);
	free(unit);
	free(type);
	sd_bus_unref(bus);
#endif
	return res;
}

/* ---- skagentd --fence ---- */

int agent_fence_all(struct agent *a)
{
	int killed = 0;

	for (unsigned i = 0; i < a->n_mods; i++) {
		char rel[AGENT_PATH], sock[AGENT_PATH];
		struct fused_seen s;

		snprintf(rel, sizeof(rel), "/run/steadykit/fused-%s.sock", a->mods[i]->conf.name);
		agent_path(a, sock, sizeof(sock), rel);
		fused_ask(sock, &s);
		if (s.pid > 0 && sk_proc_comm_is(s.pid, "skfused") && kill(s.pid, SIGKILL) == 0) {
			sk_info("module %s: skfused (pid %d) killed", a->mods[i]->conf.name, s.pid);
			killed++;
		}
		/* and the application its scripts started (as skctl forcestop) */
		a->mods[i]->a = a;
		agent_path(a, a->mods[i]->dir, sizeof(a->mods[i]->dir), a->mods[i]->conf.dirs[0]);
		killed += (int)agent_opcmd_kill_procs(a->mods[i]);
	}
	return killed;
}
