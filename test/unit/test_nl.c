/* test/unit/test_nl.c: libsk/nl and libsk/announce on a real veth pair inside a network namespace each test creates. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "announce.h"
#include "nl.h"

/* Names unique per run although each test has its own namespace. */
static char va[IFNAMSIZ], vb[IFNAMSIZ];

static void sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	cr_assert_eq(system(cmd), 0, "command failed: %s", cmd);
}

/* Every test runs in its own process (Criterion forks): leaving the host namespace
 * here means nothing a test does can reach a real interface. */
/* A veth end passes frames once linkwatch has marked it running and swapped its
 * "noop" qdisc (which drops everything) for the real one; until then a frame sent
 * on it vanishes. Wait for both, bounded to ~5 s. */
static void wait_ready(const char *ifname)
{
	char cmd[128];
	int ready = 0;

	snprintf(cmd, sizeof(cmd), "tc qdisc show dev %s | grep -q 'qdisc noop'", ifname);
	for (int i = 0; i < 50 && !ready; i++) {
		struct ifreq ifr = {0};
		int s = socket(AF_INET, SOCK_DGRAM, 0);

		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
		ready = s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_RUNNING) &&
			system(cmd) != 0;
		if (s >= 0)
			close(s);
		if (!ready)
			usleep(100000);
	}
	cr_assert(ready, "%s not running with its qdisc after 5 s", ifname);
}

static void netns_setup(void)
{
	cr_assert_eq(unshare(CLONE_NEWNET), 0, "unshare(CLONE_NEWNET): %s (needs root)", strerror(errno));
	snprintf(va, sizeof(va), "skna%d", (int)(getpid() % 100000));
	snprintf(vb, sizeof(vb), "sknb%d", (int)(getpid() % 100000));
	sh("ip link set lo up && ip link add %s type veth peer name %s", va, vb);
	/* No DAD/RS chatter on the pair: the captures look for our frames only. */
	sh("sysctl -qw net.ipv6.conf.%s.accept_dad=0 net.ipv6.conf.%s.accept_dad=0 "
	   "net.ipv6.conf.%s.router_solicitations=0 net.ipv6.conf.%s.router_solicitations=0",
	   va, vb, va, vb);
	sh("ip link set %s up && ip link set %s up", va, vb);
	wait_ready(va);
	wait_ready(vb);
}

static void netns_teardown(void)
{
	/* The namespace dies with the test process; delete the pair anyway. */
	if (va[0] && if_nametoindex(va)) {
		char cmd[64];

		snprintf(cmd, sizeof(cmd), "ip link del dev %s", va);
		(void)!system(cmd);
	}
}

TestSuite(nl, .init = netns_setup, .fini = netns_teardown, .timeout = 30);

static struct sk_conf_addr addr(const char *text)
{
	struct sk_conf_addr a = {0};

	a.family = strchr(text, ':') ? AF_INET6 : AF_INET;
	cr_assert_eq(inet_pton(a.family, text, a.ip), 1);
	snprintf(a.text, sizeof(a.text), "%s", text);
	return a;
}

/* Ground truth from getifaddrs(3), not from our own code. */
static int on_link(const char *ifname, const struct sk_conf_addr *a)
{
	struct ifaddrs *ifs, *i;
	int found = 0;

	cr_assert_eq(getifaddrs(&ifs), 0);
	for (i = ifs; i; i = i->ifa_next) {
		if (!i->ifa_addr || strcmp(i->ifa_name, ifname) || i->ifa_addr->sa_family != a->family)
			continue;
		if (a->family == AF_INET &&
		    !memcmp(&((struct sockaddr_in *)i->ifa_addr)->sin_addr, a->ip, 4))
			found = 1;
		if (a->family == AF_INET6 &&
		    !memcmp(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, a->ip, 16))
			found = 1;
	}
	freeifaddrs(ifs);
	return found;
}

static void add_del_twice(const char *text, uint8_t prefix)
{
	struct sk_conf_addr a = addr(text);

	cr_assert_eq(on_link(va, &a), 0);
	cr_assert_eq(sk_nl_addr_add(va, &a, prefix), 0);
	cr_assert_eq(on_link(va, &a), 1, "%s not on %s after add", text, va);
	cr_assert_eq(sk_nl_addr_add(va, &a, prefix), 0, "second add must be a success too");
	cr_assert_eq(on_link(va, &a), 1);
	cr_assert_eq(sk_nl_addr_has(va, &a), 1);
	cr_assert_eq(sk_nl_addr_has(vb, &a), 0);
	cr_assert_eq(sk_nl_addr_del(va, &a, prefix), 0);
	cr_assert_eq(on_link(va, &a), 0, "%s still on %s after del", text, va);
	cr_assert_eq(sk_nl_addr_del(va, &a, prefix), 0, "second del must be a success too");
	cr_assert_eq(sk_nl_addr_has(va, &a), 0);
}

Test(nl, addr_v4_idempotent) { add_del_twice("10.201.0.1", 24); }
Test(nl, addr_v4_host) { add_del_twice("10.201.0.2", 32); }
Test(nl, addr_v6_idempotent) { add_del_twice("fd00:201::1", 64); }

Test(nl, addr_v6_usable_at_once)
{
	struct sk_conf_addr a = addr("fd00:201::7");
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
	int s;

	/* Not tentative (no DAD): a service can bind the VIP right after the add. */
	cr_assert_eq(system("sysctl -qw net.ipv6.conf.all.accept_dad=1"), 0);
	cr_assert_eq(sk_nl_addr_add(va, &a, 64), 0);
	memcpy(&sa.sin6_addr, a.ip, 16);
	s = socket(AF_INET6, SOCK_STREAM, 0);
	cr_assert_geq(s, 0);
	cr_assert_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind: %s", strerror(errno));
	close(s);
}

Test(nl, scope_host_on_lo)
{
	struct sk_conf_addr a = addr("10.201.9.9");

	cr_assert_eq(sk_nl_addr_add_ex("lo", &a, 32, SK_NL_SCOPE_HOST), 0);
	cr_assert_eq(sk_nl_addr_add_ex("lo", &a, 32, SK_NL_SCOPE_HOST), 0);
	cr_assert_eq(on_link("lo", &a), 1);
	cr_assert_eq(sk_nl_addr_del("lo", &a, 32), 0);
	cr_assert_eq(on_link("lo", &a), 0);
	cr_assert_eq(sk_nl_addr_add_ex("lo", &a, 32, (enum sk_nl_scope)7), -EINVAL);
}

Test(nl, bad_input)
{
	struct sk_conf_addr a = addr("10.201.0.1"), b = {0};

	cr_assert_eq(sk_nl_addr_add("sknone0", &a, 24), -ENODEV);
	cr_assert_eq(sk_nl_addr_del("sknone0", &a, 24), -ENODEV);
	cr_assert_eq(sk_nl_addr_add("", &a, 24), -EINVAL);
	cr_assert_eq(sk_nl_addr_add("an-interface-name-too-long", &a, 24), -EINVAL);
	cr_assert_eq(sk_nl_addr_add(va, &a, 33), -EINVAL);
	cr_assert_eq(sk_nl_addr_add(va, &b, 24), -EAFNOSUPPORT);
	cr_assert_eq(sk_nl_addr_add(va, NULL, 24), -EINVAL);
	cr_assert_eq(on_link(va, &a), 0);
	cr_assert_gt(sk_nl_link_index(va), 0);
	cr_assert_eq(sk_nl_link_index("sknone0"), -ENODEV);
	cr_assert_eq(sk_announce("sknone0", &a), -ENODEV);
	cr_assert_eq(sk_announce(va, &b), -EAFNOSUPPORT);
}

struct seen {
	int a_down, b_down, a_up, calls;
};

static void on_link_ev(void *arg, const char *ifname, bool carrier)
{
	struct seen *s = arg;

	s->calls++;
	if (!strcmp(ifname, va))
		carrier ? s->a_up++ : s->a_down++;
	if (!strcmp(ifname, vb) && !carrier)
		s->b_down++;
}

/* Poll the watch socket until cond holds; bounded to ~3 s. */
static void pump(int fd, struct seen *s, int (*cond)(const struct seen *))
{
	for (int i = 0; i < 30 && !cond(s); i++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		if (poll(&p, 1, 100) > 0)
			cr_assert_geq(sk_nl_link_watch_read(fd, on_link_ev, s), 0);
	}
}

static int both_down(const struct seen *s) { return s->a_down && s->b_down; }
static int a_up(const struct seen *s) { return s->a_up > 0; }

Test(nl, carrier_events)
{
	struct seen s = {0};
	int fd = sk_nl_link_watch_open();

	cr_assert_geq(fd, 0);
	cr_assert_eq(sk_nl_link_watch_read(fd, on_link_ev, &s), 0, "nothing pending yet");
	/* veth carrier needs both ends up; wait until the pair is settled. */
	for (int i = 0; i < 30 && sk_nl_link_carrier(va) != 1; i++)
		usleep(100000);
	cr_assert_eq(sk_nl_link_carrier(va), 1);
	sh("ip link set %s down", va);
	pump(fd, &s, both_down);
	cr_assert(s.a_down, "no carrier-lost event for %s", va);
	cr_assert(s.b_down, "no carrier-lost event for the peer %s", vb);
	cr_assert_eq(sk_nl_link_carrier(vb), 0);
	sh("ip link set %s up", va);
	pump(fd, &s, a_up);
	cr_assert(s.a_up, "no carrier event when %s came back", va);
	close(fd);
	cr_assert_eq(sk_nl_link_watch_read(-1, on_link_ev, &s), -EINVAL);
}

static void mac_of(const char *ifname, uint8_t mac[6])
{
	struct ifreq ifr = {0};
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	cr_assert_eq(ioctl(s, SIOCGIFHWADDR, &ifr), 0);
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	close(s);
}

static int capture_open(const char *ifname, uint16_t proto)
{
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(proto),
		.sll_ifindex = (int)if_nametoindex(ifname),
	};
	int s = socket(AF_PACKET, SOCK_RAW, htons(proto));

	cr_assert_geq(s, 0);
	cr_assert_eq(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return s;
}

/* Next frame within ~2 s, or 0 bytes. */
static ssize_t capture(int s, uint8_t *buf, size_t len)
{
	struct pollfd p = {.fd = s, .events = POLLIN};

	if (poll(&p, 1, 2000) <= 0)
		return 0;
	return recv(s, buf, len, 0);
}

Test(nl, gratuitous_arp)
{
	struct sk_conf_addr a = addr("10.201.0.10");
	uint8_t mac[6], f[128], bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, zero[6] = {0};
	int s = capture_open(vb, ETH_P_ARP);
	ssize_t n;

	mac_of(va, mac);
	cr_assert_eq(sk_announce(va, &a), 0);
	n = capture(s, f, sizeof(f));
	cr_assert_geq(n, 14 + 28, "no ARP frame on the peer (got %zd bytes)", n);
	cr_assert_arr_eq(f, bcast, 6, "not to broadcast");
	cr_assert_arr_eq(f + 6, mac, 6, "not from %s's MAC", va);
	cr_assert_eq(f[12] << 8 | f[13], ETH_P_ARP);
	const uint8_t *arp = f + 14;
	cr_assert_eq(arp[0] << 8 | arp[1], 1, "hardware type");
	cr_assert_eq(arp[2] << 8 | arp[3], ETH_P_IP, "protocol type");
	cr_assert_eq(arp[4], 6);
	cr_assert_eq(arp[5], 4);
	cr_assert_eq(arp[6] << 8 | arp[7], 1, "op must be request");
	cr_assert_arr_eq(arp + 8, mac, 6, "sender MAC");
	cr_assert_arr_eq(arp + 14, a.ip, 4, "sender IP");
	cr_assert_arr_eq(arp + 18, zero, 6, "target MAC");
	cr_assert_arr_eq(arp + 24, a.ip, 4, "target IP");
	close(s);
}

static uint16_t icmp6_sum(const uint8_t *src, const uint8_t *dst, const uint8_t *p, size_t len)
{
	uint32_t sum = 0;

	for (int i = 0; i < 16; i += 2)
		sum += (uint32_t)(src[i] << 8 | src[i + 1]) + (uint32_t)(dst[i] << 8 | dst[i + 1]);
	sum += (uint32_t)len + IPPROTO_ICMPV6;
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

Test(nl, unsolicited_na)
{
	struct sk_conf_addr a = addr("fd00:201::10");
	uint8_t mac[6], f[256], all_nodes[16], mdst[6] = {0x33, 0x33, 0, 0, 0, 1};
	int s = capture_open(vb, ETH_P_IPV6), got = 0;

	inet_pton(AF_INET6, "ff02::1", all_nodes);
	mac_of(va, mac);
	/* The address need not be configured yet: the announcement goes out anyway. */
	cr_assert_eq(sk_announce(va, &a), 0);
	for (int i = 0; i < 20 && !got; i++) {
		ssize_t n = capture(s, f, sizeof(f));
		const uint8_t *ip = f + 14; /* by offset: the frame is not aligned for struct ip6_hdr */
		const uint8_t *icmp = f + 14 + 40;

		cr_assert_gt(n, 0, "no NA on the peer");
		if (n < 14 + 40 + 32 || ip[6] != IPPROTO_ICMPV6 || icmp[0] != ND_NEIGHBOR_ADVERT)
			continue; /* MLD reports and such */
		got = 1;
		cr_assert_arr_eq(f, mdst, 6, "not to the all-nodes multicast MAC");
		cr_assert_arr_eq(f + 6, mac, 6);
		cr_assert_eq(ip[7], 255, "hop limit %u", ip[7]);
		cr_assert_arr_eq(ip + 8, a.ip, 16, "source is not the announced address");
		cr_assert_arr_eq(ip + 24, all_nodes, 16);
		cr_assert_eq(ip[4] << 8 | ip[5], 32, "payload length");
		cr_assert_eq(icmp[1], 0, "code");
		cr_assert_eq(icmp6_sum(a.ip, all_nodes, icmp, 32), 0, "bad ICMPv6 checksum");
		cr_assert_eq(icmp[4] & 0x20, 0x20, "override flag");
		cr_assert_eq(icmp[4] & 0x40, 0, "solicited flag must be clear");
		cr_assert_eq(icmp[4] & 0x80, 0, "router flag must be clear");
		cr_assert_arr_eq(icmp + 8, a.ip, 16, "target");
		cr_assert_eq(icmp[24], ND_OPT_TARGET_LINKADDR);
		cr_assert_eq(icmp[25], 1);
		cr_assert_arr_eq(icmp + 26, mac, 6, "target link-layer address");
	}
	cr_assert(got, "no NA among the frames on the peer");
	close(s);
}
