/* libsklb: load lb.bpf.c through its skeleton, pin its maps, attach with libxdp, and update the maps. */
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if_arp.h>
#include <net/if.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>

#include "lb.h"
#include "lb.skel.h"
#include "log.h"
#include "util.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

/* Map names as pinned under pin_dir (they are also the names in lb.bpf.c). */
enum { M_CFG, M_INFO, M_ACTIVE, M_TABLE, M_PORTS, M_FLOWS, M_STATS, M_BSTATS, M__COUNT };
static const char *const map_names[M__COUNT] = {
	"lb_cfg", "lb_info", "lb_active", "lb_table", "lb_ports", "lb_flows", "lb_stats", "lb_bucket_stats",
};
#define PROG_PIN "lb_xdp"

struct lb {
	int fd[M__COUNT];
	int dir_fd;              /* pin dir, flock()ed by writers: one table writer at a time */
	struct lb_bucket *table; /* mmap of lb_table, LB_TABLE_ENTRIES */
	char pin_dir[200];
};

/* libbpf and libxdp speak through libsk/log, tagged, so their lines reach journald with ours. */
static enum sk_log_level lib_level(int warn, int info, int lvl)
{
	return lvl == warn ? SK_LOG_WARN : lvl == info ? SK_LOG_INFO : SK_LOG_DEBUG;
}

static int print_libbpf(enum libbpf_print_level lvl, const char *fmt, va_list ap)
{
	sk_vlogf(lib_level(LIBBPF_WARN, LIBBPF_INFO, lvl), &(struct sk_log_fields){.module = "libbpf"},
		 fmt, ap);
	return 0;
}

static int print_libxdp(enum libxdp_print_level lvl, const char *fmt, va_list ap)
{
	sk_vlogf(lib_level(LIBXDP_WARN, LIBXDP_INFO, lvl), &(struct sk_log_fields){.module = "libxdp"},
		 fmt, ap);
	return 0;
}

static void route_logs_once(void)
{
	libbpf_set_print(print_libbpf);
	libxdp_set_print(print_libxdp);
}

static void route_logs(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, route_logs_once);
}

static int fail(struct lb_err *err, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return rc;
}

static int check_pin_dir(const char *dir, struct lb_err *err)
{
	if (!dir || dir[0] != '/')
		return fail(err, -EINVAL, "pin dir must be an absolute path");
	if (strlen(dir) >= 160)
		return fail(err, -ENAMETOOLONG, "pin dir '%s' is too long", dir);
	if (strstr(dir, "/../") || strstr(dir, "/./"))
		return fail(err, -EINVAL, "pin dir '%s' must be a plain path", dir);
	return 0;
}

static int mkdir_p(const char *dir)
{
	char tmp[200];

	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

/* The pin dir must be on bpffs; the default root is mounted if nobody did. */
static int ensure_bpffs(const char *dir, struct lb_err *err)
{
	struct statfs sfs;
	int rc;

	if (!strncmp(dir, "/sys/fs/bpf/", 12) &&
	    (statfs("/sys/fs/bpf", &sfs) || sfs.f_type != BPF_FS_MAGIC) &&
	    mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"))
		return fail(err, -errno, "mount bpffs on /sys/fs/bpf: %s", strerror(errno));
	rc = mkdir_p(dir);
	if (rc)
		return fail(err, rc, "mkdir %s: %s", dir, strerror(-rc));
	if (statfs(dir, &sfs) || sfs.f_type != BPF_FS_MAGIC)
		return fail(err, -ENOTSUP, "pin dir %s is not on a bpf filesystem", dir);
	return 0;
}

static int own_mac(const char *ifname, uint8_t mac[6], struct lb_err *err)
{
	struct ifreq ifr = {0};
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return fail(err, -errno, "socket: %s", strerror(errno));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(s, SIOCGIFHWADDR, &ifr)) {
		int e = errno;

		close(s);
		return fail(err, -e, "%s: cannot read MAC: %s", ifname, strerror(e));
	}
	close(s);
	if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER)
		return fail(err, -ENOTSUP, "%s is not an Ethernet interface", ifname);
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	return 0;
}

static int check_attach_opts(const struct lb_attach_opts *o, struct lb_err *err)
{
	static const uint8_t zero[6];

	if (!o->ifname || !*o->ifname || strlen(o->ifname) >= IFNAMSIZ)
		return fail(err, -EINVAL, "interface name missing or too long");
	if (!if_nametoindex(o->ifname))
		return fail(err, -ENODEV, "interface '%s' does not exist", o->ifname);
	if (o->node_id >= LB_MAX_NODES)
		return fail(err, -EINVAL, "node id %u is not below %u", o->node_id, LB_MAX_NODES);
	if (!o->has_vip4 && !o->has_vip6)
		return fail(err, -EINVAL, "no virtual IP given");
	if (!memcmp(o->vmac, zero, 6) || (o->vmac[0] & 1))
		return fail(err, -EINVAL, "virtual MAC must be a non-zero unicast address");
	if (o->mode > LB_XDP_GENERIC)
		return fail(err, -EINVAL, "unknown XDP mode %d", (int)o->mode);
	return check_pin_dir(o->pin_dir, err);
}

/* veth drops XDP_TX frames (our ARP/NA replies) in native mode unless its
 * peer runs XDP or GRO, which we cannot see from here: prefer generic there. */
static int is_veth(const char *ifname)
{
	struct ethtool_drvinfo di = {.cmd = ETHTOOL_GDRVINFO};
	struct ifreq ifr = {0};
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), veth = 0;

	if (s < 0)
		return 0;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_data = (void *)&di;
	if (!ioctl(s, SIOCETHTOOL, &ifr))
		veth = !strcmp(di.driver, "veth");
	close(s);
	return veth;
}

/*
 * libxdp keeps its dispatcher pins on a bpffs: /sys/fs/bpf, or LIBXDP_BPFFS.
 * Where /sys/fs/bpf is not one (test namespaces keep their pins elsewhere),
 * point libxdp at pin_dir's parent, which is on bpffs; attach and detach must
 * agree, so both call this. setenv only while nothing else runs: at attach.
 */
static void libxdp_bpffs(const char *pin_dir)
{
	struct statfs sfs;
	char parent[200], *slash;

	if (getenv(XDP_BPFFS_ENVVAR) || (!statfs("/sys/fs/bpf", &sfs) && sfs.f_type == BPF_FS_MAGIC))
		return;
	snprintf(parent, sizeof(parent), "%s", pin_dir);
	slash = strrchr(parent, '/');
	if (!slash || slash == parent)
		return;
	*slash = 0;
	if (!statfs(parent, &sfs) && sfs.f_type == BPF_FS_MAGIC)
		setenv(XDP_BPFFS_ENVVAR, parent, 0);
}

/* Is our program (prog_id) running inside a libxdp dispatcher on ifindex? */
static int in_dispatcher(int ifindex, uint32_t prog_id)
{
	struct xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(ifindex);
	int found = 0;

	if (libxdp_get_error(mp))
		return 0;
	if (!xdp_multiprog__is_legacy(mp))
		for (struct xdp_program *p = xdp_multiprog__next_prog(NULL, mp); p;
		     p = xdp_multiprog__next_prog(p, mp))
			found |= xdp_program__id(p) == prog_id;
	xdp_multiprog__close(mp);
	return found;
}

/*
 * libxdp loads the object itself: as an extension (freplace) of its
 * dispatcher where the kernel and driver allow it, so other XDP programs can
 * share the interface, else as a plain XDP program attached alone. A program
 * we had loaded ourselves could only ever be attached alone.
 */
static int attach_prog(struct lb_bpf *sk, int ifindex, const struct lb_attach_opts *o,
		       struct lb_attach_result *res, struct lb_err *err)
{
	struct xdp_program *xp = xdp_program__from_bpf_obj(sk->obj, "xdp");
	int rc;

	if (libxdp_get_error(xp))
		return fail(err, -EINVAL, "libxdp cannot use the program");
	res->mode = o->mode == LB_XDP_GENERIC ? LB_XDP_GENERIC : LB_XDP_NATIVE;
	if (o->mode == LB_XDP_AUTO && is_veth(o->ifname)) {
		rc = -EOPNOTSUPP;
		snprintf(res->native_err, sizeof(res->native_err),
			 "veth: XDP_TX needs XDP or GRO on the peer");
	} else {
		rc = xdp_program__attach(xp, ifindex,
					 res->mode == LB_XDP_NATIVE ? XDP_MODE_NATIVE : XDP_MODE_SKB, 0);
		if (rc)
			libxdp_strerror(rc, res->native_err, sizeof(res->native_err));
	}
	if (rc && o->mode == LB_XDP_AUTO) {
		res->fell_back = 1;
		res->mode = LB_XDP_GENERIC;
		rc = xdp_program__attach(xp, ifindex, XDP_MODE_SKB, 0);
	}
	xdp_program__close(xp);
	if (rc) {
		char buf[128];

		libxdp_strerror(rc, buf, sizeof(buf));
		return fail(err, rc < 0 ? rc : -EINVAL, "attach XDP to %s: %s", o->ifname, buf);
	}
	return 0;
}

static int detach_prog(uint32_t ifindex, uint32_t prog_id);

static int fresh_state(int table_fd, int cfg_fd, struct lb_err *err)
{
	struct lb_cfg cfg = {
		.rule = SK_LB_CLIENT,
		.port_policy = SK_LB_PORTS_ALL,
		.window_ns = 300ull * 1000000000ull,
		.udp_timeout_ns = 60ull * 1000000000ull,
	};
	uint32_t zero = 0;
	struct lb_bucket none = {.owner = LB_NODE_NONE, .prev = LB_NODE_NONE};
	size_t len = sizeof(struct lb_bucket) * LB_TABLE_ENTRIES;
	struct lb_bucket *t = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, table_fd, 0);

	if (t == MAP_FAILED)
		return fail(err, -errno, "mmap lb_table: %s", strerror(errno));
	/* Until the first view, nobody owns anything: VIP packets are dropped. */
	for (uint32_t i = 0; i < LB_TABLE_ENTRIES; i++)
		t[i] = none;
	munmap(t, len);
	if (bpf_map_update_elem(cfg_fd, &zero, &cfg, BPF_ANY))
		return fail(err, -errno, "init lb_cfg: %s", strerror(errno));
	return 0;
}

/*
 * New maps are created, initialised and pinned before libxdp loads the program,
 * which then finds them by their pins like maps an earlier attach left: the
 * program never meets a zero table (where every bucket would belong to slot 0).
 */
static int create_maps(struct lb_bpf *sk, const char *pin_dir, struct lb_err *err)
{
	int table_fd = -1, cfg_fd = -1, rc = 0;
	struct bpf_map *m;
	char path[256];

	bpf_object__for_each_map(m, sk->obj) {
		LIBBPF_OPTS(bpf_map_create_opts, mo, .map_flags = bpf_map__map_flags(m));
		int fd;

		if (bpf_map__is_internal(m))
			continue;
		fd = bpf_map_create(bpf_map__type(m), bpf_map__name(m), bpf_map__key_size(m),
				    bpf_map__value_size(m), bpf_map__max_entries(m), &mo);
		if (fd < 0) {
			rc = fail(err, -errno, "create map %s: %s", bpf_map__name(m), strerror(errno));
			break;
		}
		snprintf(path, sizeof(path), "%s/%s", pin_dir, bpf_map__name(m));
		if (bpf_obj_pin(fd, path)) {
			rc = fail(err, -errno, "pin map at %s: %s", path, strerror(errno));
			close(fd);
			break;
		}
		if (m == sk->maps.lb_table)
			table_fd = fd;
		else if (m == sk->maps.lb_cfg)
			cfg_fd = fd;
		else
			close(fd);
	}
	if (!rc && (table_fd < 0 || cfg_fd < 0))
		rc = fail(err, -ENOENT, "lb_table or lb_cfg missing from the BPF object");
	if (!rc)
		rc = fresh_state(table_fd, cfg_fd, err);
	if (table_fd >= 0)
		close(table_fd);
	if (cfg_fd >= 0)
		close(cfg_fd);
	return rc;
}

int lb_attach(const struct lb_attach_opts *o, struct lb_attach_result *res, struct lb_err *err)
{
	struct lb_bpf *sk = NULL;
	struct lb_info info = {0};
	struct bpf_map *m;
	char path[256];
	uint32_t zero = 0;
	int ifindex, rc;

	memset(res, 0, sizeof(*res));
	route_logs();
	rc = check_attach_opts(o, err);
	if (rc)
		return rc;
	ifindex = (int)if_nametoindex(o->ifname);
	info.ifindex = (uint32_t)ifindex;
	rc = own_mac(o->ifname, info.own_mac, err);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/%s", o->pin_dir, PROG_PIN);
	if (!access(path, F_OK))
		return fail(err, -EEXIST, "already attached (pin %s exists); detach first", path);
	rc = ensure_bpffs(o->pin_dir, err);
	if (rc)
		return rc;

	sk = lb_bpf__open();
	if (!sk)
		return fail(err, -errno ? -errno : -ENOMEM, "open BPF skeleton failed");
	sk->rodata->lb_node_id = (uint8_t)o->node_id;
	sk->rodata->lb_seed = o->seed;
	sk->rodata->lb_has_vip4 = (uint8_t)!!o->has_vip4;
	sk->rodata->lb_vip4 = o->has_vip4 ? o->vip4.s_addr : 0;
	sk->rodata->lb_has_vip6 = (uint8_t)!!o->has_vip6;
	if (o->has_vip6)
		memcpy((void *)sk->rodata->lb_vip6, &o->vip6, 16);
	memcpy((void *)sk->rodata->lb_vmac, o->vmac, 6);
	memcpy((void *)sk->rodata->lb_own_mac, info.own_mac, 6);

	snprintf(path, sizeof(path), "%s/lb_table", o->pin_dir);
	res->reused_maps = !access(path, F_OK);
	bpf_object__for_each_map(m, sk->obj) {
		if (bpf_map__is_internal(m))
			continue;
		snprintf(path, sizeof(path), "%s/%s", o->pin_dir, bpf_map__name(m));
		bpf_map__set_pin_path(m, path);
	}
	if (!res->reused_maps && (rc = create_maps(sk, o->pin_dir, err)))
		goto unpin;
	libxdp_bpffs(o->pin_dir);
	rc = attach_prog(sk, ifindex, o, res, err);
	if (rc) {
		if (rc == -EINVAL || rc == -EPERM || rc == -E2BIG)
			snprintf(err->msg + strlen(err->msg), sizeof(err->msg) - strlen(err->msg),
				 " (pinned maps of another version in %s?)", o->pin_dir);
		goto unpin;
	}
	struct bpf_prog_info pinfo = {0};
	uint32_t plen = sizeof(pinfo);
	if (!bpf_obj_get_info_by_fd(bpf_program__fd(sk->progs.lb_xdp), &pinfo, &plen))
		info.prog_id = pinfo.id;
	res->dispatcher = in_dispatcher(ifindex, info.prog_id);
	info.xdp_mode = res->mode;
	info.node_id = o->node_id;
	info.seed = o->seed;
	info.has_vip4 = !!o->has_vip4;
	info.vip4 = info.has_vip4 ? o->vip4.s_addr : 0;
	info.has_vip6 = !!o->has_vip6;
	if (o->has_vip6)
		memcpy(info.vip6, &o->vip6, 16);
	memcpy(info.vmac, o->vmac, 6);
	bpf_map_update_elem(bpf_map__fd(sk->maps.lb_info), &zero, &info, BPF_ANY);
	snprintf(path, sizeof(path), "%s/%s", o->pin_dir, PROG_PIN);
	if (bpf_program__pin(sk->progs.lb_xdp, path)) {
		rc = fail(err, -errno, "pin program at %s: %s", path, strerror(errno));
		goto detach;
	}
	if (o->install_vip) {
		rc = lb_vip_install(o->ifname, o, err);
		if (rc)
			goto detach;
		info.vip_on_lo = 1;
		bpf_map_update_elem(bpf_map__fd(sk->maps.lb_info), &zero, &info, BPF_ANY);
	}
	lb_bpf__destroy(sk); /* the attachment and the pins keep everything alive */
	return 0;

detach:
	detach_prog((uint32_t)ifindex, info.prog_id);
unpin:
	{
		struct lb_err e2;

		if (!res->reused_maps) {
			/* nothing of ours was there before: leave nothing behind */
			lb_bpf__destroy(sk);
			sk = NULL;
			lb_detach(o->pin_dir, &e2);
		}
	}
	lb_bpf__destroy(sk);
	return rc;
}

int lb_open(const char *pin_dir, struct lb **out, struct lb_err *err)
{
	struct lb *lb;
	char path[256];
	int rc;

	route_logs();
	rc = check_pin_dir(pin_dir, err);
	if (rc)
		return rc;
	lb = calloc(1, sizeof(*lb));
	if (!lb)
		return fail(err, -ENOMEM, "out of memory");
	for (int i = 0; i < M__COUNT; i++)
		lb->fd[i] = -1;
	lb->dir_fd = open(pin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	snprintf(lb->pin_dir, sizeof(lb->pin_dir), "%s", pin_dir);
	for (int i = 0; i < M__COUNT; i++) {
		snprintf(path, sizeof(path), "%s/%s", pin_dir, map_names[i]);
		lb->fd[i] = bpf_obj_get(path);
		if (lb->fd[i] < 0) {
			rc = fail(err, -errno, "open %s: %s (not attached?)", path, strerror(errno));
			goto bad;
		}
	}
	lb->table = mmap(NULL, sizeof(struct lb_bucket) * LB_TABLE_ENTRIES, PROT_READ | PROT_WRITE,
			 MAP_SHARED, lb->fd[M_TABLE], 0);
	if (lb->table == MAP_FAILED) {
		lb->table = NULL;
		rc = fail(err, -errno, "mmap lb_table: %s", strerror(errno));
		goto bad;
	}
	*out = lb;
	return 0;
bad:
	lb_close(lb);
	return rc;
}

void lb_close(struct lb *lb)
{
	if (!lb)
		return;
	if (lb->table)
		munmap(lb->table, sizeof(struct lb_bucket) * LB_TABLE_ENTRIES);
	for (int i = 0; i < M__COUNT; i++)
		if (lb->fd[i] >= 0)
			close(lb->fd[i]);
	if (lb->dir_fd >= 0)
		close(lb->dir_fd);
	free(lb);
}

static int detach_prog(uint32_t ifindex, uint32_t prog_id)
{
	struct xdp_multiprog *mp = xdp_multiprog__get_from_ifindex((int)ifindex);
	int rc = 0;

	if (libxdp_get_error(mp))
		return 0; /* nothing attached any more */
	if (xdp_multiprog__is_legacy(mp)) {
		struct xdp_program *p = xdp_multiprog__main_prog(mp);

		if (p && xdp_program__id(p) == prog_id)
			rc = xdp_multiprog__detach(mp);
	} else {
		for (struct xdp_program *p = xdp_multiprog__next_prog(NULL, mp); p;
		     p = xdp_multiprog__next_prog(p, mp)) {
			if (xdp_program__id(p) == prog_id) {
				rc = xdp_program__detach(p, (int)ifindex,
							 xdp_multiprog__attach_mode(mp), 0);
				break;
			}
		}
	}
	xdp_multiprog__close(mp);
	return rc;
}

int lb_detach(const char *pin_dir, struct lb_err *err)
{
	struct lb_info info = {0};
	char path[256];
	uint32_t zero = 0;
	int rc, fd, found = 0;

	route_logs();
	rc = check_pin_dir(pin_dir, err);
	if (rc)
		return rc;
	libxdp_bpffs(pin_dir);
	snprintf(path, sizeof(path), "%s/lb_info", pin_dir);
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		found = 1;
		if (!bpf_map_lookup_elem(fd, &zero, &info) && info.ifindex && info.prog_id) {
			rc = detach_prog(info.ifindex, info.prog_id);
			if (rc) {
				close(fd);
				return fail(err, rc, "detach XDP from ifindex %u: %s", info.ifindex,
					    strerror(-rc));
			}
			if (info.vip_on_lo)
				lb_vip_remove(&info, err);
		}
		close(fd);
	}
	for (int i = 0; i < M__COUNT; i++) {
		snprintf(path, sizeof(path), "%s/%s", pin_dir, map_names[i]);
		found |= !unlink(path);
	}
	snprintf(path, sizeof(path), "%s/%s", pin_dir, PROG_PIN);
	found |= !unlink(path);
	rmdir(pin_dir);
	if (!found)
		return fail(err, -ENOENT, "nothing attached at %s", pin_dir);
	return 0;
}

/* Writers of one instance (agent, sklb) serialise on the pin dir: two table
 * writers filling the same idle half would publish a mix. */
static void wr_lock(struct lb *lb)
{
	if (lb->dir_fd >= 0)
		flock(lb->dir_fd, LOCK_EX);
}

static void wr_unlock(struct lb *lb)
{
	if (lb->dir_fd >= 0)
		flock(lb->dir_fd, LOCK_UN);
}

static int cfg_update(struct lb *lb, void (*edit)(struct lb_cfg *, const void *), const void *arg,
		      struct lb_err *err)
{
	struct lb_cfg cfg;
	uint32_t zero = 0;

	int rc = 0;

	wr_lock(lb);
	if (bpf_map_lookup_elem(lb->fd[M_CFG], &zero, &cfg)) {
		rc = fail(err, -errno, "read lb_cfg: %s", strerror(errno));
	} else {
		edit(&cfg, arg);
		if (bpf_map_update_elem(lb->fd[M_CFG], &zero, &cfg, BPF_ANY))
			rc = fail(err, -errno, "write lb_cfg: %s", strerror(errno));
	}
	wr_unlock(lb);
	return rc;
}

static void edit_rule(struct lb_cfg *c, const void *arg)
{
	c->rule = *(const uint32_t *)arg;
}

int lb_set_rule(struct lb *lb, enum sk_lb_rule rule, struct lb_err *err)
{
	uint32_t r = rule;

	if (rule != SK_LB_CLIENT && rule != SK_LB_SESSION)
		return fail(err, -EINVAL, "unknown rule %d", (int)rule);
	return cfg_update(lb, edit_rule, &r, err);
}

static void edit_policy(struct lb_cfg *c, const void *arg)
{
	c->port_policy = *(const uint32_t *)arg;
}

int lb_set_ports(struct lb *lb, const uint16_t *ports, size_t n, enum sk_lb_ports policy,
		 struct lb_err *err)
{
	static uint64_t bits[LB_PORT_WORDS];
	uint32_t p = policy, all = SK_LB_PORTS_ALL;
	int rc;

	if (policy > SK_LB_PORTS_OTHERS_DROP)
		return fail(err, -EINVAL, "unknown port policy %d", (int)policy);
	if (policy != SK_LB_PORTS_ALL && !n)
		return fail(err, -EINVAL, "a port policy needs at least one port");
	if (n > 65536)
		return fail(err, -E2BIG, "too many ports");
	for (size_t i = 0; i < n; i++)
		if (!ports[i])
			return fail(err, -EINVAL, "port 0 is not a port");
	memset(bits, 0, sizeof(bits));
	for (size_t i = 0; i < n; i++)
		bits[ports[i] >> 6] |= 1ull << (ports[i] & 63);
	/* Balance everything while the bitmap is half written, then set the policy. */
	rc = cfg_update(lb, edit_policy, &all, err);
	if (rc)
		return rc;
	for (uint32_t w = 0; w < LB_PORT_WORDS; w++)
		if (bpf_map_update_elem(lb->fd[M_PORTS], &w, &bits[w], BPF_ANY))
			return fail(err, -errno, "write lb_ports: %s", strerror(errno));
	return cfg_update(lb, edit_policy, &p, err);
}

struct timing {
	uint32_t window_ms, udp_ms;
};

static void edit_timing(struct lb_cfg *c, const void *arg)
{
	const struct timing *t = arg;

	c->window_ns = (uint64_t)t->window_ms * 1000000ull;
	c->udp_timeout_ns = (uint64_t)t->udp_ms * 1000000ull;
}

int lb_set_timing(struct lb *lb, uint32_t window_ms, uint32_t udp_timeout_ms, struct lb_err *err)
{
	struct timing t = {window_ms, udp_timeout_ms};

	if (window_ms > 3600000)
		return fail(err, -EINVAL, "window %u ms is above one hour", window_ms);
	if (!udp_timeout_ms || udp_timeout_ms > 3600000)
		return fail(err, -EINVAL, "UDP timeout %u ms must be in 1..3600000", udp_timeout_ms);
	return cfg_update(lb, edit_timing, &t, err);
}

static void edit_lease(struct lb_cfg *c, const void *arg)
{
	c->lease_ns = *(const uint64_t *)arg;
}

int lb_set_lease(struct lb *lb, uint64_t until_ns, struct lb_err *err)
{
	return cfg_update(lb, edit_lease, &until_ns, err);
}

static int read_active(struct lb *lb, uint32_t *active, struct lb_err *err)
{
	uint32_t zero = 0;

	if (bpf_map_lookup_elem(lb->fd[M_ACTIVE], &zero, active))
		return fail(err, -errno, "read lb_active: %s", strerror(errno));
	return 0;
}

static int set_view_locked(struct lb *lb, const struct lb_view *v, struct lb_err *err);

int lb_set_view(struct lb *lb, const struct lb_view *v, struct lb_err *err)
{
	int rc = lb_view_check(v, err);

	if (rc)
		return rc;
	wr_lock(lb);
	rc = set_view_locked(lb, v, err);
	wr_unlock(lb);
	return rc;
}

static int set_view_locked(struct lb *lb, const struct lb_view *v, struct lb_err *err)
{
	struct lb_info info;
	struct lb_cfg cfg;
	uint32_t zero = 0, active, next_active;
	int rc;

	rc = lb_view_check(v, err);
	if (rc)
		return rc;
	if (bpf_map_lookup_elem(lb->fd[M_INFO], &zero, &info) ||
	    bpf_map_lookup_elem(lb->fd[M_CFG], &zero, &cfg))
		return fail(err, -errno, "read lb_info/lb_cfg: %s", strerror(errno));
	rc = read_active(lb, &active, err);
	if (rc)
		return rc;
	struct lb_bucket *cur = lb->table + ((active & 1) ? LB_BUCKETS : 0);
	struct lb_bucket *next = lb->table + ((active & 1) ? 0 : LB_BUCKETS);

	struct lb_bucket *boot = NULL;
	if (!(active >> 1)) {
		/* First view on this node: it is joining a farm that, as far as anyone
		 * knows, ran without it. Start from that table so the buckets it takes
		 * move "in motion" and connections of the others are left alone. */
		struct lb_view without = *v;
		uint64_t rest = 0;

		boot = malloc(sizeof(*boot) * LB_BUCKETS);
		if (!boot)
			return fail(err, -ENOMEM, "out of memory");
		if (info.node_id < LB_MAX_NODES)
			without.weight[info.node_id] = 0;
		for (unsigned i = 0; i < LB_MAX_NODES; i++)
			rest += without.weight[i];
		for (uint32_t b = 0; b < LB_BUCKETS; b++)
			boot[b] = (struct lb_bucket){
				.owner = rest ? lb_rendezvous(without.weight, info.seed, b) : LB_NODE_NONE,
				.prev = LB_NODE_NONE};
		cur = boot;
	}
	/* sk_now_ns is CLOCK_MONOTONIC, the clock bpf_ktime_get_ns reads. */
	lb_next_table(cur, v, info.seed, (active >> 1) + 1, sk_now_ns(), cfg.window_ns, next);
	free(boot);
	/* Flip: one aligned 4-byte value (generation << 1 | half); the syscall orders
	 * the table stores before it, so a packet sees the old or the new table whole. */
	next_active = (((active >> 1) + 1) << 1) | ((active & 1) ^ 1);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (bpf_map_update_elem(lb->fd[M_ACTIVE], &zero, &next_active, BPF_ANY))
		return fail(err, -errno, "write lb_active: %s", strerror(errno));
	return 0;
}

int lb_get_table(struct lb *lb, struct lb_bucket *out, struct lb_err *err)
{
	uint32_t active;
	int rc = read_active(lb, &active, err);

	if (rc)
		return rc;
	memcpy(out, lb->table + ((active & 1) ? LB_BUCKETS : 0), sizeof(*out) * LB_BUCKETS);
	return 0;
}

static int sum_percpu(int fd, uint32_t key, int ncpu, uint64_t *sum)
{
	uint64_t vals[ncpu];

	*sum = 0;
	if (bpf_map_lookup_elem(fd, &key, vals))
		return -errno;
	for (int c = 0; c < ncpu; c++)
		*sum += vals[c];
	return 0;
}

int lb_get_status(struct lb *lb, struct lb_status *st, struct lb_err *err)
{
	uint32_t zero = 0, active;
	int ncpu = libbpf_num_possible_cpus(), rc;
	uint64_t now = sk_now_ns();

	memset(st, 0, sizeof(*st));
	if (ncpu <= 0 || ncpu > 4096)
		return fail(err, -EINVAL, "cannot count CPUs");
	if (bpf_map_lookup_elem(lb->fd[M_INFO], &zero, &st->info) ||
	    bpf_map_lookup_elem(lb->fd[M_CFG], &zero, &st->cfg))
		return fail(err, -errno, "read lb_info/lb_cfg: %s", strerror(errno));
	rc = read_active(lb, &active, err);
	if (rc)
		return rc;
	st->generation = active >> 1;
	const struct lb_bucket *t = lb->table + ((active & 1) ? LB_BUCKETS : 0);
	for (uint32_t b = 0; b < LB_BUCKETS; b++) {
		if (t[b].owner < LB_MAX_NODES)
			st->owned[t[b].owner]++;
		if (t[b].prev != LB_NODE_NONE && t[b].prev != t[b].owner &&
		    now < t[b].move_ns + st->cfg.window_ns)
			st->moving++;
	}
	for (uint32_t i = 0; i < LB_ST__COUNT; i++)
		if ((rc = sum_percpu(lb->fd[M_STATS], i, ncpu, &st->stats[i])))
			return fail(err, rc, "read lb_stats: %s", strerror(-rc));
	for (uint32_t w = 0; w < LB_PORT_WORDS; w++) {
		uint64_t bits;

		if (!bpf_map_lookup_elem(lb->fd[M_PORTS], &w, &bits))
			st->nports += (uint32_t)__builtin_popcountll(bits);
	}
	st->own_bucket_pkts = st->stats[LB_ST_PASS];
	return 0;
}

int lb_get_bucket_pkts(struct lb *lb, uint64_t *out, struct lb_err *err)
{
	int ncpu = libbpf_num_possible_cpus(), rc;

	if (ncpu <= 0 || ncpu > 4096)
		return fail(err, -EINVAL, "cannot count CPUs");
	for (uint32_t b = 0; b < LB_BUCKETS; b++)
		if ((rc = sum_percpu(lb->fd[M_BSTATS], b, ncpu, &out[b])))
			return fail(err, rc, "read lb_bucket_stats: %s", strerror(-rc));
	return 0;
}
