/* libsk/announce.c: one gratuitous ARP (AF_PACKET) or unsolicited neighbour advertisement (ICMPv6 raw). */
#include "announce.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int own_mac(int s, const char *ifname, uint8_t mac[6])
{
	struct ifreq ifr = {0};

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(s, SIOCGIFHWADDR, &ifr))
		return -errno;
	if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER)
		return -ENOTSUP;
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	return 0;
}

/* RFC 5227 announcement: an ARP request whose sender and target are both the address. */
static int garp(unsigned ifindex, const char *ifname, const uint8_t ip[4])
{
	struct sockaddr_ll to = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(ETH_P_ARP),
		.sll_ifindex = (int)ifindex,
		.sll_halen = 6,
		.sll_addr = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	};
	/* arphdr (8) + sha (6) + spa (4) + tha (6) + tpa (4) */
	uint8_t pkt[28] = {0};
	struct arphdr ah = {
		.ar_hrd = htons(ARPHRD_ETHER),
		.ar_pro = htons(ETH_P_IP),
		.ar_hln = 6,
		.ar_pln = 4,
		.ar_op = htons(ARPOP_REQUEST),
	};
	uint8_t mac[6];
	/* Protocol 0: this socket sends only, it never queues received frames. */
	int s = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc;

	if (s < 0)
		return -errno;
	rc = own_mac(s, ifname, mac);
	if (rc)
		goto out;
	memcpy(pkt, &ah, sizeof(ah));
	memcpy(pkt + 8, mac, 6);
	memcpy(pkt + 14, ip, 4);
	memcpy(pkt + 24, ip, 4);
	ssize_t n = sendto(s, pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to));

	if (n != (ssize_t)sizeof(pkt))
		rc = n < 0 ? -errno : -EIO;
out:
	close(s);
	return rc;
}

/* RFC 4861 7.2.6: unsolicited NA to all-nodes, Override set so neighbours replace the old MAC. */
static int unsol_na(unsigned ifindex, const char *ifname, const uint8_t ip[16])
{
	struct sockaddr_in6 to = {
		.sin6_family = AF_INET6,
		.sin6_scope_id = ifindex,
	};
	struct {
		struct nd_neighbor_advert na;
		struct nd_opt_hdr opt;
		uint8_t mac[6];
	} __attribute__((packed)) pkt = {0};
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
	} cm = {0};
	struct iovec iov = {.iov_base = &pkt, .iov_len = sizeof(pkt)};
	struct msghdr msg = {
		.msg_name = &to,
		.msg_namelen = sizeof(to),
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cm.buf,
		.msg_controllen = sizeof(cm.buf),
	};
	struct in6_pktinfo pi = {.ipi6_ifindex = ifindex};
	struct icmp6_filter filt;
	struct cmsghdr *c;
	int hops = 255, one = 1, ifx = (int)ifindex;
	int s = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6), rc;

	if (s < 0)
		return -errno;
	rc = own_mac(s, ifname, pkt.mac);
	if (rc)
		goto out;
	/* Send only: block every incoming ICMPv6 type so nothing queues on this socket.
	 * Hop limit 255 is what receivers check an NA came from the link itself.
	 * FREEBIND: the source is the announced address, which may still be on its way. */
	ICMP6_FILTER_SETBLOCKALL(&filt);
	if (setsockopt(s, IPPROTO_ICMPV6, ICMP6_FILTER, &filt, sizeof(filt)) ||
	    setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) ||
	    setsockopt(s, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof(hops)) ||
	    setsockopt(s, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifx, sizeof(ifx)) ||
	    setsockopt(s, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one))) {
		rc = -errno;
		goto out;
	}
	inet_pton(AF_INET6, "ff02::1", &to.sin6_addr);
	pkt.na.nd_na_type = ND_NEIGHBOR_ADVERT;
	pkt.na.nd_na_code = 0;
	pkt.na.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE;
	memcpy(&pkt.na.nd_na_target, ip, 16);
	pkt.opt.nd_opt_type = ND_OPT_TARGET_LINKADDR;
	pkt.opt.nd_opt_len = 1; /* units of 8 bytes: type, len, 6-byte MAC */
	memcpy(&pi.ipi6_addr, ip, 16);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = IPPROTO_IPV6;
	c->cmsg_type = IPV6_PKTINFO;
	c->cmsg_len = CMSG_LEN(sizeof(pi));
	memcpy(CMSG_DATA(c), &pi, sizeof(pi));
	/* The kernel fills the ICMPv6 checksum on raw ICMPv6 sockets. */
	ssize_t n = sendmsg(s, &msg, 0);

	if (n != (ssize_t)sizeof(pkt))
		rc = n < 0 ? -errno : -EIO;
out:
	close(s);
	return rc;
}

int sk_announce(const char *ifname, const struct sk_conf_addr *a)
{
	unsigned idx;

	if (!ifname || !*ifname || strlen(ifname) >= IFNAMSIZ || !a)
		return -EINVAL;
	idx = if_nametoindex(ifname);
	if (!idx)
		return -ENODEV;
	if (a->family == AF_INET)
		return garp(idx, ifname, a->ip);
	if (a->family == AF_INET6)
		return unsol_na(idx, ifname, a->ip);
	return -EAFNOSUPPORT;
}
