/* fused/main.c: skfused entry point: options, secret, state, the primary's FUSE mount or the secondary's read-only bind. */
#include "fault.h"
#include "fence.h"
#include "fused.h"
#include "ownlist.h"
#include "resync.h"

#include <errno.h>
#include <sodium.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/securebits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "moves.h"

struct fused *fused_ctx;
unsigned fused_spin_us = 40;
size_t fused_write_chunk = 256 * 1024;

/* Say what was wrong (why), then how to call us; nothing has been touched yet. */
static void usage(const char *why)
{
	if (why)
		fprintf(stderr, "skfused: %s\n", why);
	fprintf(stderr,
		"usage: skfused --role primary --dir DIR --peer IP:PORT --secret FILE\n"
		"               [--mode sync|semi-sync|async] [--budget-ms 300] [--resync-rate MB/s]\n"
		"       skfused --role secondary --dir DIR --listen IP:PORT --secret FILE\n"
		"  --key-fd N instead of --secret: read the derived master key (32 bytes) from fd N\n"
		"             (the agent derives it once; a start then costs no key derivation)\n"
		"  common: [--state DIR] [--ctl SOCKPATH] [--module-id N] [--node-id N]\n"
		"          [--no-encrypt (MAC only; the peer must say the same)]\n"
		"          [--foreground] [--log-level info|debug]\n");
	exit(why ? 2 : 0);
}

/* IPV4:PORT or [IPV6]:PORT, numeric (no name lookups in a daemon that must start at once) */
static int parse_hostport(const char *s, char *host, size_t cap, uint16_t *port)
{
	struct sockaddr_storage ss;
	unsigned len;

	if (sk_hostport_split(s, host, cap, port) < 0)
		return -EINVAL;
	return sk_sockaddr_from(host, *port, &ss, &len);
}

static long num(const char *s, long lo, long hi, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (!*s || *end || v < lo || v > hi) {
		fprintf(stderr, "skfused: %s must be %ld..%ld\n", what, lo, hi);
		exit(2);
	}
	return v;
}

/*
 * The master key from an inherited pipe or file (the agent's): exactly the key, then EOF.
 * Closed after reading so no child of ours inherits it.
 */
static int read_key_fd(int fd, struct sk_key *out)
{
	uint8_t buf[sizeof(out->b) + 1];
	size_t got = 0;
	ssize_t n;
	int rc = 0;

	while (got < sizeof(buf)) {
		n = read(fd, buf + got, sizeof(buf) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (rc == 0 && got != sizeof(out->b))
		rc = -EBADMSG;
	if (rc == 0)
		memcpy(out->b, buf, sizeof(out->b));
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

static void parse(struct fused *f, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "role", required_argument, NULL, 'r' },   { "dir", required_argument, NULL, 'd' },
		{ "peer", required_argument, NULL, 'p' },   { "listen", required_argument, NULL, 'l' },
		{ "secret", required_argument, NULL, 's' }, { "mode", required_argument, NULL, 'm' },
		{ "key-fd", required_argument, NULL, 'K' },
		{ "budget-ms", required_argument, NULL, 'b' },
		{ "resync-rate", required_argument, NULL, 'R' },
		{ "no-encrypt", no_argument, NULL, 'E' },
		{ "state", required_argument, NULL, 'S' },  { "ctl", required_argument, NULL, 'c' },
		{ "module-id", required_argument, NULL, 'M' },
		{ "node-id", required_argument, NULL, 'N' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 }
	};
	const char *peer = NULL, *listen = NULL, *state = NULL, *ctl = NULL;
	int c, key_fd = -1;

	f->mode = SK_REPL_SYNC;
	f->budget_ms = 300;
	f->module_id = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (!strcmp(optarg, "primary"))
				f->role = FUSED_PRIMARY;
			else if (!strcmp(optarg, "secondary"))
				f->role = FUSED_SECONDARY;
			else
				usage("--role must be primary or secondary");
			break;
		case 'd': f->dir = optarg; break;
		case 'p': peer = optarg; break;
		case 'l': listen = optarg; break;
		case 's': f->secret_path = optarg; break;
		case 'K': key_fd = (int)num(optarg, 3, 1023, "--key-fd"); break;
		case 'm':
			if (!strcmp(optarg, "sync"))
				f->mode = SK_REPL_SYNC;
			else if (!strcmp(optarg, "semi-sync"))
				f->mode = SK_REPL_SEMI_SYNC;
			else if (!strcmp(optarg, "async"))
				f->mode = SK_REPL_ASYNC;
			else
				usage("--mode must be sync, semi-sync or async");
			break;
		case 'b': f->budget_ms = (uint32_t)num(optarg, 10, 60000, "--budget-ms"); break;
		case 'E': f->no_encrypt = true; break;
		case 'R': fused_resync_rate = (uint64_t)num(optarg, 1, 100000, "--resync-rate (MB/s)") << 20; break;
		case 'S': state = optarg; break;
		case 'c': ctl = optarg; break;
		case 'M': f->module_id = (uint32_t)num(optarg, 1, 65535, "--module-id"); break;
		case 'N': f->node_id = (uint32_t)num(optarg, SK_NODE_ID_MIN, SK_NODE_ID_MAX, "--node-id"); break;
		case 'f': break; /* always in the foreground: the agent supervises us */
		case 'L':
			if (!strcmp(optarg, "debug"))
				f->debug = true;
			else if (strcmp(optarg, "info"))
				usage("--log-level must be info or debug");
			break;
		case 'h': usage(NULL); break;
		default: usage("unknown option");
		}
	}
	if (optind != argc)
		usage("unexpected argument");
	if (!f->role || !f->dir || (!f->secret_path) == (key_fd < 0))
		usage("--role, --dir and one of --secret or --key-fd are required");
	f->key_fd = key_fd;
	if (f->role == FUSED_PRIMARY && (!peer || listen))
		usage("a primary takes --peer IP:PORT and no --listen");
	if (f->role == FUSED_PRIMARY &&
	    parse_hostport(peer, f->peer_host, sizeof(f->peer_host), &f->peer_port) < 0)
		usage("--peer must be IPV4:PORT or [IPV6]:PORT (numeric, port 1..65535)");
	if (f->role == FUSED_SECONDARY && (!listen || peer))
		usage("a secondary takes --listen IP:PORT and no --peer");
	if (f->role == FUSED_SECONDARY &&
	    parse_hostport(listen, f->listen_host, sizeof(f->listen_host), &f->listen_port) < 0)
		usage("--listen must be IPV4:PORT or [IPV6]:PORT (numeric, port 1..65535)");
	if (!f->node_id)
		f->node_id = f->role == FUSED_PRIMARY ? 1 : 2;
	if (state)
		snprintf(f->state_dir, sizeof(f->state_dir), "%s", state);
	else
		snprintf(f->state_dir, sizeof(f->state_dir), "/var/lib/steadykit/state/fused-%u",
			 f->module_id);
	if (ctl)
		snprintf(f->ctl_path, sizeof(f->ctl_path), "%s", ctl);
	else
		snprintf(f->ctl_path, sizeof(f->ctl_path), "/run/steadykit/fused-%u.sock",
			 f->module_id);
}

void fused_stop(struct fused *f)
{
	uint64_t one = 1;

	atomic_store(&f->stop, true);
	/* never read: it stays readable, so every later poll returns at once too */
	if (f->stop_fd >= 0 && write(f->stop_fd, &one, sizeof(one)) < 0)
		return;
}

bool fused_stop_wait(struct fused *f, int ms)
{
	struct pollfd p = { .fd = f->stop_fd, .events = POLLIN };

	if (!atomic_load(&f->stop) && f->stop_fd >= 0)
		poll(&p, 1, ms);
	else if (!atomic_load(&f->stop))
		usleep((useconds_t)ms * 1000);
	return atomic_load(&f->stop);
}

static void on_signal(int sig)
{
	(void)sig;
	if (fused_ctx)
		fused_stop(fused_ctx);
}

static bool is_mountpoint(const char *dir)
{
	char up[PATH_MAX + 4];
	struct statx a, b;

	snprintf(up, sizeof(up), "%s/..", dir);
	if (statx(AT_FDCWD, dir, 0, STATX_MNT_ID, &a) < 0 ||
	    statx(AT_FDCWD, up, 0, STATX_MNT_ID, &b) < 0)
		return false;
	return a.stx_mnt_id != b.stx_mnt_id;
}

/*
 * What a killed skfused leaves on DIR: a dead FUSE mount (primary) or our
 * read-only bind (secondary, recorded in the state file). Both would hide the
 * real directory from the fd we are about to open, so they go first.
 */
static int stale_mounts(struct fused *f)
{
	struct statfs sf;
	struct statvfs sv;

	if (statfs(f->dir, &sf) < 0 && errno == ENOTCONN) {
		sk_warn("%s: removing the dead FUSE mount of a previous instance", f->dir);
		if (umount2(f->dir, MNT_DETACH) < 0) {
			sk_err("umount %s: %s", f->dir, strerror(errno));
			return -errno;
		}
	} else if (statfs(f->dir, &sf) == 0 && sf.f_type == 0x65735546 /* FUSE_SUPER_MAGIC */) {
		sk_err("%s is already a live FUSE mount: another skfused?", f->dir);
		return -EBUSY;
	}
	for (int i = 0; i < 4 && f->ro_mounted; i++) {
		if (!is_mountpoint(f->dir) || statvfs(f->dir, &sv) < 0 || !(sv.f_flag & ST_RDONLY))
			break;
		sk_warn("%s: removing the read-only mount a previous instance left", f->dir);
		if (umount2(f->dir, MNT_DETACH) < 0)
			return -errno;
	}
	f->ro_mounted = false;
	return 0;
}

static int run_primary(struct fused *f)
{
	char *argv[] = { "skfused", "-o",
			 "default_permissions,allow_other,fsname=skfused,subtype=skfused,"
			 "max_read=1048576",
			 NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	struct fuse_loop_config *lc;
	int rc;

	rc = fused_inode_init(f);
	if (rc < 0)
		return rc;
	{
		/* what changes while the peer is not in sync (dirty.h); a copy that was a
		 * secondary in sync tracks from the generation it shares with the old primary */
		struct fused_dirty_conf dc;
		const char *why = NULL;

		fused_dirty_conf_env(&dc);
		dc.fresh_base = fused_state_takeover_base();
		rc = fused_dirty_open(f->state_dir, &dc, &fused_dirty_g, &why);
		if (rc < 0)
			return rc;
		if (why)
			sk_info("dirty tracking starts empty (%s): the next resync is a full one", why);
		else if (dc.fresh_base && fused_dirty_base(fused_dirty_g) == dc.fresh_base) {
			char id[17];

			sk_gen_id_str(dc.fresh_base, id);
			sk_info("taking over from a secondary's copy in sync: tracking starts from "
				"generation %s", id);
		}
		fused_moves_init(f->state_dir, true); /* renamed files remembered while alone (moves.c) */
	}
	f->se = fuse_session_new(&args, fused_fence_ops(f->module_id), sizeof(fused_ops), f); /* fence.c */
	fuse_opt_free_args(&args); /* the session keeps nothing of them; parsing may have allocated */
	if (!f->se)
		return -EIO;
	if (fuse_set_signal_handlers(f->se) != 0)
		return -EIO;
	if (fuse_session_mount(f->se, f->dir) != 0) {
		fuse_remove_signal_handlers(f->se);
		fuse_session_destroy(f->se);
		return -EIO;
	}
	fused_fuseio_attach(f->se); /* ops.h: FUSE_HANDLE_KILLPRIV_V2; without it, as before */
	rc = fused_repl_start(f);
	if (rc == 0)
		rc = fused_ctl_start(f);
	if (rc < 0) {
		sk_err("cannot start: %s", strerror(-rc));
	} else {
		sk_info("ready: primary serving %s (mode %s, budget %u ms, peer %s:%u)", f->dir,
			f->mode == SK_REPL_SYNC ? "sync" : f->mode == SK_REPL_SEMI_SYNC ? "semi-sync" : "async",
			f->budget_ms, f->peer_host, f->peer_port);
		lc = fuse_loop_cfg_create();
		/* no thread waits for an ack (the ack reader replies), so few are needed;
		 * each holds a 1 MiB request buffer, which bounds our RSS */
		fuse_loop_cfg_set_max_threads(lc, 16);
		fuse_loop_cfg_set_idle_threads(lc, 8);
		fuse_loop_cfg_set_clone_fd(lc, 0);
		rc = fuse_session_loop_mt(f->se, lc);
		fuse_loop_cfg_destroy(lc);
		rc = rc < 0 ? rc : 0;
	}
	sk_info("stopping: unmounting %s", f->dir);
	fused_repl_stop(f);
	fused_ctl_stop(f);
	fuse_session_unmount(f->se);
	fuse_remove_signal_handlers(f->se);
	fuse_session_destroy(f->se);
	fused_state_save(f);
	fused_dirty_close(fused_dirty_g);
	fused_dirty_g = NULL;
	return rc;
}

static int run_secondary(struct fused *f)
{
	struct sigaction sa = { .sa_handler = on_signal };
	unsigned long keep = 0;
	struct statvfs sv;
	int rc;

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* what this copy changed as primary (frames in flight, changes alone) is kept until a
	 * resync completes, and named for the primary (ownlist.h) */
	fused_own_open(f, fused_state_was_primary());
	fused_moves_init(f->state_dir, false); /* what it remembered as a primary serves no more */
	/* Applications see the tree read-only; we write through root_fd, opened on the rw mount. */
	if (mount(f->dir, f->dir, NULL, MS_BIND, NULL) < 0) {
		rc = -errno;
		sk_err("bind mount of %s: %s", f->dir, strerror(errno));
		return rc;
	}
	/* a bind remount sets the per-mount flags to exactly what it is given: keep the ones the
	 * administrator put on the directory's mount (nosuid, nodev, noexec, atime policy) */
	if (statvfs(f->dir, &sv) == 0)
		keep = ((sv.f_flag & ST_NOSUID) ? MS_NOSUID : 0) | ((sv.f_flag & ST_NODEV) ? MS_NODEV : 0) |
		       ((sv.f_flag & ST_NOEXEC) ? MS_NOEXEC : 0) |
		       ((sv.f_flag & ST_NOATIME) ? MS_NOATIME : 0) |
		       ((sv.f_flag & ST_NODIRATIME) ? MS_NODIRATIME : 0) |
		       ((sv.f_flag & ST_RELATIME) ? MS_RELATIME : 0);
	if (mount(NULL, f->dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, NULL) < 0) {
		rc = -errno;
		sk_err("read-only remount of %s: %s", f->dir, strerror(errno));
		umount2(f->dir, MNT_DETACH);
		return rc;
	}
	f->ro_mounted = true;
	fused_state_save(f); /* a restart after a crash knows the ro mount on DIR is ours */
	rc = fused_ctl_start(f);
	if (rc == 0)
		rc = fused_recv_run(f);
	fused_ctl_stop(f);
	sk_info("stopping: removing the read-only mount on %s", f->dir);
	if (umount2(f->dir, 0) < 0 && umount2(f->dir, MNT_DETACH) < 0)
		sk_warn("umount %s: %s", f->dir, strerror(errno));
	else
		f->ro_mounted = false;
	fused_state_save(f);
	fused_own_close();
	return rc;
}

int main(int argc, char **argv)
{
	static struct fused ctx;
	struct fused *f = &ctx;
	struct sk_conf_err cerr;
	char ebuf[800];
	ssize_t n;
	int rc;

	parse(f, argc, argv);
	if (getenv("SKFUSED_RESYNC_INCREMENTAL"))
		fused_resync_incremental = strcmp(getenv("SKFUSED_RESYNC_INCREMENTAL"), "1") == 0;
	if (getenv("SKFUSED_SPIN_US"))
		fused_spin_us = (unsigned)strtoul(getenv("SKFUSED_SPIN_US"), NULL, 10);
	if (getenv("SKFUSED_WRITE_CHUNK"))
		fused_write_chunk = strtoul(getenv("SKFUSED_WRITE_CHUNK"), NULL, 10);
	if (fused_write_chunk < 4096 || fused_write_chunk > SK_RMSG_DATA_MAX)
		fused_write_chunk = 256 * 1024;
	sk_log_init("skfused", f->debug ? SK_LOG_DEBUG : SK_LOG_INFO);
	{
		const char *bad = NULL;
		size_t bad_len = 0;

		if (fused_fault_init(getenv("SKFUSED_FAULT"), &bad, &bad_len) < 0) {
			sk_err("SKFUSED_FAULT: \"%.*s\" is not name[@N[+]] with a known name "
			       "(state_write, rs_names, rs_track, repl_thread)", (int)bad_len, bad);
			return 1;
		}
		if (fused_fault_armed)
			sk_warn("SKFUSED_FAULT=%s: failure points armed (for tests only)",
				getenv("SKFUSED_FAULT"));
	}
	fused_ctx = f;
	pthread_mutex_init(&f->stream_mu, NULL);
	pthread_mutex_init(&f->peer_mu, NULL);
	pthread_mutex_init(&f->pend_mu, NULL);
	pthread_mutex_init(&f->ino_mu, NULL);
	pthread_mutex_init(&f->state_mu, NULL);
	pthread_mutex_init(&f->rs_mu, NULL);
	pthread_cond_init(&f->pend_cv, NULL);
	pthread_cond_init(&f->rs_cv, NULL);
	f->sock = -1;
	f->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (f->stop_fd < 0) {
		sk_err("eventfd: %s", strerror(errno));
		return 1;
	}

	memset(&cerr, 0, sizeof(cerr));
	if (f->key_fd >= 0) {
		rc = read_key_fd(f->key_fd, &f->master);
		if (rc < 0) {
			sk_err("--key-fd %d: %s", f->key_fd, rc == -EBADMSG ?
			       "expected exactly 32 bytes of key, then end of file" : strerror(-rc));
			return 1;
		}
	} else {
		rc = sk_conf_load_secret(f->secret_path, &f->master, &cerr);
		if (rc < 0) {
			sk_err("secret: %s", sk_conf_err_str(&cerr, ebuf, sizeof(ebuf)));
			return 1;
		}
	}
	/* Creating as the caller must not cost our capabilities (see ops.c creds_set). */
	if (prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP) < 0) {
		sk_err("prctl(SECBIT_NO_SETUID_FIXUP): %s", strerror(errno));
		return 1;
	}
	umask(0);
	{
		/* an fd per open file, per cached inode (a quarter of the limit, inode.c), per
		 * hard-link group in a resync: a service's soft limit of 1024 is too few */
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
				sk_warn("cannot raise the fd limit to %lu: %s", (unsigned long)rl.rlim_max,
					strerror(errno));
		}
	}
	rc = fused_state_load(f);
	if (rc < 0) {
		sk_err("state %s: %s", f->state_dir, strerror(-rc));
		return 1;
	}
	rc = stale_mounts(f);
	if (rc < 0)
		return 1;
	f->root_fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (f->root_fd < 0) {
		sk_err("cannot open %s: %s", f->dir, strerror(errno));
		return 1;
	}
	snprintf(ebuf, sizeof(ebuf), "/proc/self/fd/%d", f->root_fd);
	n = readlink(ebuf, f->root_path, sizeof(f->root_path) - 1);
	if (n <= 0) {
		sk_err("cannot resolve %s", f->dir);
		return 1;
	}
	f->root_path[n] = '\0';
	f->root_len = (size_t)n;
	fused_moves_end(f); /* renamed files' copies a resync of this copy left (moves.c) */

	rc = f->role == FUSED_PRIMARY ? run_primary(f) : run_secondary(f);
	if (rc < 0) {
		sk_err("exiting: %s", strerror(-rc));
		return 1;
	}
	sk_info("stopped");
	return 0;
}
