/* The farm VIP on every node: an address on lo (rtnetlink) that the kernel never announces by ARP. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lb.h"
#include "nl.h"

/* The VIP as a host-scope full-length address on lo; add and remove are idempotent (libsk/nl). */
static int vip_lo(bool add, int family, const void *ip, struct lb_err *err)
{
	struct sk_conf_addr a = {.family = family};
	uint8_t prefix = family == AF_INET ? 32 : 128;
	int rc;

	memcpy(a.ip, ip, family == AF_INET ? 4 : 16);
	rc = add ? sk_nl_addr_add_ex("lo", &a, prefix, SK_NL_SCOPE_HOST) : sk_nl_addr_del("lo", &a, prefix);
	if (rc)
		snprintf(err->msg, sizeof(err->msg), "%s VIP on lo: %s", add ? "add" : "remove",
			 strerror(-rc));
	return rc;
}

static int write_sysctl(const char *path, const char *val, struct lb_err *err)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return snprintf(err->msg, sizeof(err->msg), "open %s: %s", path, strerror(errno)), -errno;
	n = write(fd, val, strlen(val));
	close(fd);
	if (n != (ssize_t)strlen(val))
		return snprintf(err->msg, sizeof(err->msg), "write %s failed", path), -EIO;
	return 0;
}

int lb_vip_install(const char *ifname, const struct lb_attach_opts *o, struct lb_err *err)
{
	char path[128];
	int rc;

	/* arp_ignore=1: answer ARP only for addresses on the receiving interface;
	 * arp_announce=2: never use the VIP as ARP source. The XDP program answers
	 * for the VIP itself, with the virtual MAC. */
	for (int i = 0; i < 2; i++) {
		const char *dev = i ? ifname : "all";

		snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/arp_ignore", dev);
		if ((rc = write_sysctl(path, "1", err)))
			return rc;
		snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/arp_announce", dev);
		if ((rc = write_sysctl(path, "2", err)))
			return rc;
	}
	if (o->has_vip4 && (rc = vip_lo(true, AF_INET, &o->vip4, err)))
		return rc;
	if (o->has_vip6 && (rc = vip_lo(true, AF_INET6, &o->vip6, err)))
		return rc;
	return 0;
}

int lb_vip_remove(const struct lb_info *info, struct lb_err *err)
{
	int rc = 0, r;

	if (info->has_vip4 && (r = vip_lo(false, AF_INET, &info->vip4, err)))
		rc = r;
	if (info->has_vip6 && (r = vip_lo(false, AF_INET6, info->vip6, err)))
		rc = r;
	return rc;
}
