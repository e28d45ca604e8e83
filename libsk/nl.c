/* libsk/nl.c: rtnetlink through libmnl: address add/del/lookup, link index and carrier, link event socket. */
#include "nl.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef IFF_LOWER_UP
#define IFF_LOWER_UP 0x10000 /* linux/if.h; that header clashes with net/if.h */
#endif

/* Large enough for any dump datagram: the kernel sizes dump skbs to what we ask for. */
#define NL_BUF 32768
/* Bounds on one request: datagrams read, and how long the kernel may take to answer. */
#define NL_MAX_RECV 4096
#define NL_TIMEOUT_S 2

int sk_nl_link_index(const char *ifname)
{
	unsigned idx;

	if (!ifname || !*ifname || strlen(ifname) >= IFNAMSIZ)
		return -EINVAL;
	idx = if_nametoindex(ifname);
	if (!idx)
		return -ENODEV;
	return idx > (unsigned)INT32_MAX ? -ERANGE : (int)idx;
}

/*
 * Send one request (a dump when `dump`) and read until its ACK or NLMSG_DONE, passing
 * every reply message to cb. Returns 0, or -errno from the kernel's error
 * message or from the socket.
 */
static int nl_talk(struct nlmsghdr *nlh, bool dump, mnl_cb_t cb, void *data)
{
	struct timeval tv = {.tv_sec = NL_TIMEOUT_S};
	struct mnl_socket *nl;
	unsigned portid, seq;
	char *buf;
	int rc = 0;

	buf = malloc(NL_BUF);
	if (!buf)
		return -ENOMEM;
	nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!nl) {
		rc = -errno;
		goto out;
	}
	/* The timeout bounds a request the kernel would never answer. */
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv))) {
		rc = -errno;
		goto close;
	}
	portid = mnl_socket_get_portid(nl);
	seq = (unsigned)time(NULL) ^ (unsigned)getpid();
	nlh->nlmsg_seq = seq;
	/* Dump flags share bits with NLM_F_EXCL/REPLACE, so the caller says which it is. */
	nlh->nlmsg_flags |= dump ? NLM_F_DUMP : NLM_F_ACK;
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		rc = -errno;
		goto close;
	}
	for (int i = 0; i < NL_MAX_RECV; i++) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, NL_BUF);
		int r;

		if (n < 0) {
			rc = errno == EAGAIN ? -ETIMEDOUT : -errno;
			break;
		}
		r = mnl_cb_run(buf, (size_t)n, seq, portid, cb, data);
		if (r < 0) {
			rc = -errno;
			break;
		}
		if (r == MNL_CB_STOP)
			break;
		if (i == NL_MAX_RECV - 1)
			rc = -E2BIG;
	}
close:
	mnl_socket_close(nl);
out:
	free(buf);
	return rc;
}

static int addr_len(const struct sk_conf_addr *a)
{
	if (!a)
		return -EINVAL;
	if (a->family == AF_INET)
		return 4;
	if (a->family == AF_INET6)
		return 16;
	return -EAFNOSUPPORT;
}

static int addr_msg(uint16_t type, const char *ifname, const struct sk_conf_addr *a, uint8_t prefix,
		    uint8_t scope)
{
	char buf[256];
	struct nlmsghdr *nlh;
	struct ifaddrmsg *ifa;
	int idx = sk_nl_link_index(ifname), len = addr_len(a), rc;

	if (idx < 0)
		return idx;
	if (len < 0)
		return len;
	if (prefix > len * 8)
		return -EINVAL;
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | (type == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_EXCL : 0);
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)a->family;
	ifa->ifa_prefixlen = prefix;
	ifa->ifa_scope = scope;
	ifa->ifa_index = (unsigned)idx;
	/* See nl.h: the agent decides who holds the address, DAD would only delay it. */
	ifa->ifa_flags = a->family == AF_INET6 ? IFA_F_NODAD : 0;
	mnl_attr_put(nlh, IFA_LOCAL, (size_t)len, a->ip);
	mnl_attr_put(nlh, IFA_ADDRESS, (size_t)len, a->ip);
	rc = nl_talk(nlh, false, NULL, NULL);
	if (type == RTM_NEWADDR && rc == -EEXIST)
		rc = 0;
	if (type == RTM_DELADDR && rc == -EADDRNOTAVAIL)
		rc = 0;
	return rc;
}

int sk_nl_addr_add(const char *ifname, const struct sk_conf_addr *a, uint8_t prefix)
{
	return addr_msg(RTM_NEWADDR, ifname, a, prefix, RT_SCOPE_UNIVERSE);
}

int sk_nl_addr_add_ex(const char *ifname, const struct sk_conf_addr *a, uint8_t prefix,
		      enum sk_nl_scope scope)
{
	if (scope != SK_NL_SCOPE_GLOBAL && scope != SK_NL_SCOPE_HOST)
		return -EINVAL;
	return addr_msg(RTM_NEWADDR, ifname, a, prefix, (uint8_t)scope);
}

int sk_nl_addr_del(const char *ifname, const struct sk_conf_addr *a, uint8_t prefix)
{
	return addr_msg(RTM_DELADDR, ifname, a, prefix, RT_SCOPE_UNIVERSE);
}

struct has_ctx {
	const struct sk_conf_addr *a;
	int len;
	unsigned ifindex;
	int found;
};

static int has_attr_cb(const struct nlattr *attr, void *data)
{
	struct has_ctx *h = data;
	uint16_t t = mnl_attr_get_type(attr);

	/* IPv4 puts the address in IFA_LOCAL, IPv6 in IFA_ADDRESS (IFA_LOCAL only with a peer). */
	if ((t == IFA_LOCAL || t == IFA_ADDRESS) && mnl_attr_get_payload_len(attr) == h->len &&
	    !memcmp(mnl_attr_get_payload(attr), h->a->ip, (size_t)h->len))
		h->found = 1;
	return MNL_CB_OK;
}

static int has_cb(const struct nlmsghdr *nlh, void *data)
{
	struct has_ctx *h = data;
	const struct ifaddrmsg *ifa;

	if (nlh->nlmsg_type != RTM_NEWADDR || mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifa))
		return MNL_CB_OK;
	ifa = mnl_nlmsg_get_payload(nlh);
	if (ifa->ifa_index != h->ifindex || ifa->ifa_family != h->a->family)
		return MNL_CB_OK;
	mnl_attr_parse(nlh, sizeof(*ifa), has_attr_cb, h);
	return MNL_CB_OK;
}

int sk_nl_addr_has(const char *ifname, const struct sk_conf_addr *a)
{
	char buf[64];
	struct nlmsghdr *nlh;
	struct ifaddrmsg *ifa;
	struct has_ctx h = {.a = a};
	int idx = sk_nl_link_index(ifname), rc;

	if (idx < 0)
		return idx;
	if ((h.len = addr_len(a)) < 0)
		return h.len;
	h.ifindex = (unsigned)idx;
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)a->family;
	rc = nl_talk(nlh, true, has_cb, &h);
	return rc ? rc : h.found;
}

/* One RTM_NEWLINK/RTM_DELLINK message: name and carrier, for the watch and for queries. */
struct link_ctx {
	void (*cb)(void *arg, const char *ifname, bool carrier);
	void *arg;
	int calls;
	int carrier; /* sk_nl_link_carrier: last seen */
};

static int link_name_cb(const struct nlattr *attr, void *data)
{
	const char **name = data;

	if (mnl_attr_get_type(attr) == IFLA_IFNAME && !mnl_attr_validate(attr, MNL_TYPE_NUL_STRING))
		*name = mnl_attr_get_str(attr);
	return MNL_CB_OK;
}

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
	struct link_ctx *l = data;
	const struct ifinfomsg *ifi;
	const char *name = NULL;
	bool carrier;

	if ((nlh->nlmsg_type != RTM_NEWLINK && nlh->nlmsg_type != RTM_DELLINK) ||
	    mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifi))
		return MNL_CB_OK;
	ifi = mnl_nlmsg_get_payload(nlh);
	/* IFF_LOWER_UP is only reported while the link is administratively up. */
	carrier = nlh->nlmsg_type == RTM_NEWLINK && (ifi->ifi_flags & IFF_UP) &&
		  (ifi->ifi_flags & IFF_LOWER_UP);
	l->carrier = carrier;
	mnl_attr_parse(nlh, sizeof(*ifi), link_name_cb, &name);
	if (name && l->cb) {
		l->cb(l->arg, name, carrier);
		l->calls++;
	}
	return MNL_CB_OK;
}

int sk_nl_link_carrier(const char *ifname)
{
	char buf[64];
	struct nlmsghdr *nlh;
	struct ifinfomsg *ifi;
	struct link_ctx l = {.carrier = -1};
	int idx = sk_nl_link_index(ifname), rc;

	if (idx < 0)
		return idx;
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = idx;
	rc = nl_talk(nlh, false, link_cb, &l);
	if (rc)
		return rc;
	return l.carrier < 0 ? -ENODEV : l.carrier;
}

static int link_dump(struct link_ctx *l)
{
	char buf[64];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifi;

	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	return nl_talk(nlh, true, link_cb, l);
}

int sk_nl_link_watch_open(void)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK};
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

int sk_nl_link_watch_read(int fd, void (*cb)(void *arg, const char *ifname, bool carrier),
			  void *arg)
{
	struct link_ctx l = {.cb = cb, .arg = arg};
	char *buf;
	int rc = 0;

	if (fd < 0 || !cb)
		return -EINVAL;
	buf = malloc(NL_BUF);
	if (!buf)
		return -ENOMEM;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_nl from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, buf, NL_BUF, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		int left;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {
				/* Events were dropped: report every link as it is now. */
				rc = link_dump(&l);
				if (rc)
					break;
				continue;
			}
			if (errno != EAGAIN)
				rc = -errno;
			break;
		}
		/* Only the kernel (port 0) speaks for links. */
		if (fl != sizeof(from) || from.nl_pid != 0)
			continue;
		left = (int)n;
		for (const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left))
			link_cb(nlh, &l);
	}
	free(buf);
	return rc ? rc : l.calls;
}
