/* The farm VIP on every node: an address on lo (rtnetlink) that the kernel never announces by ARP. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lb.h"

static int nl_addr(int cmd, int family, const void *addr, struct lb_err *err)
{
	struct {
		struct nlmsghdr nh;
		struct ifaddrmsg ifa;
		char attrs[64];
	} req = {0};
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	char buf[512];
	int len = family == AF_INET ? 4 : 16, s, rc = 0;
	unsigned lo = if_nametoindex("lo");
	struct rtattr *rta;

	if (!lo)
		return snprintf(err->msg, sizeof(err->msg), "no lo interface"), -ENODEV;
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.ifa));
	req.nh.nlmsg_type = (unsigned short)cmd;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (cmd == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_EXCL : 0);
	req.nh.nlmsg_seq = 1;
	req.ifa.ifa_family = (unsigned char)family;
	req.ifa.ifa_prefixlen = (unsigned char)(len * 8);
	req.ifa.ifa_scope = RT_SCOPE_HOST;
	req.ifa.ifa_index = lo;
	/* No DAD for the v6 VIP: every node holds it by design. */
	req.ifa.ifa_flags = family == AF_INET6 ? IFA_F_NODAD : 0;
	rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.nh.nlmsg_len));
	rta->rta_type = IFA_LOCAL;
	rta->rta_len = (unsigned short)RTA_LENGTH(len);
	memcpy(RTA_DATA(rta), addr, (size_t)len);
	req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
	rta = (struct rtattr *)((char *)&req + req.nh.nlmsg_len);
	rta->rta_type = IFA_ADDRESS;
	rta->rta_len = (unsigned short)RTA_LENGTH(len);
	memcpy(RTA_DATA(rta), addr, (size_t)len);
	req.nh.nlmsg_len += RTA_ALIGN(rta->rta_len);

	s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (s < 0)
		return snprintf(err->msg, sizeof(err->msg), "netlink socket: %s", strerror(errno)), -errno;
	if (sendto(s, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
	} else {
		ssize_t n = recv(s, buf, sizeof(buf), 0);
		struct nlmsghdr *nh = (struct nlmsghdr *)buf;

		if (n < 0)
			rc = -errno;
		else if (n >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) && nh->nlmsg_type == NLMSG_ERROR)
			rc = ((struct nlmsgerr *)NLMSG_DATA(nh))->error;
	}
	close(s);
	if (rc == -EEXIST && cmd == RTM_NEWADDR)
		rc = 0; /* already there (an earlier attach) */
	if (rc)
		snprintf(err->msg, sizeof(err->msg), "%s VIP on lo: %s",
			 cmd == RTM_NEWADDR ? "add" : "remove", strerror(-rc));
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
	if (o->has_vip4 && (rc = nl_addr(RTM_NEWADDR, AF_INET, &o->vip4, err)))
		return rc;
	if (o->has_vip6 && (rc = nl_addr(RTM_NEWADDR, AF_INET6, &o->vip6, err)))
		return rc;
	return 0;
}

int lb_vip_remove(const struct lb_info *info, struct lb_err *err)
{
	int rc = 0, r;

	if (info->has_vip4 && (r = nl_addr(RTM_DELADDR, AF_INET, &info->vip4, err)) && r != -EADDRNOTAVAIL)
		rc = r;
	if (info->has_vip6 && (r = nl_addr(RTM_DELADDR, AF_INET6, info->vip6, err)) && r != -EADDRNOTAVAIL)
		rc = r;
	return rc;
}
