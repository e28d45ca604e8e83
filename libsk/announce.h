/* libsk/announce.h: tell the link that an address moved here (gratuitous ARP, unsolicited neighbour advertisement). */
#ifndef SK_ANNOUNCE_H
#define SK_ANNOUNCE_H

#include "conf.h"

/*
 * Send ONE announcement of a on ifname, from ifname's own MAC:
 *  - IPv4: a gratuitous ARP request (sender = target = a, target MAC zero,
 *    Ethernet broadcast), over AF_PACKET;
 *  - IPv6: an unsolicited neighbour advertisement to ff02::1 (ICMPv6 raw
 *    socket, hop limit 255, Override flag set, Solicited clear, target
 *    link-layer address option), sent from a itself.
 * Switches drop or rate-limit single announcements: the caller repeats it
 * on its own timer (the agent: 0, 0.5, 1, 2 and 5 s).
 * The address need not be on the interface yet. Needs CAP_NET_RAW.
 * Returns 0 or -errno (-ENODEV unknown interface, -ENOTSUP not Ethernet,
 * -EAFNOSUPPORT bad family). Does not log.
 */
int sk_announce(const char *ifname, const struct sk_conf_addr *a);

#endif
