/* libsk/nl.h: rtnetlink (libmnl) for the VIP code of the agent and of the farm: addresses, links, carrier events. */
#ifndef SK_NL_H
#define SK_NL_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"

/*
 * All calls return 0 (or a count) on success and -errno on failure; none logs.
 * They act on the caller's network namespace. Each address call opens, uses and
 * closes its own netlink socket, so they are safe from any thread.
 */

/* Index of ifname (> 0), or -ENODEV / -EINVAL. */
int sk_nl_link_index(const char *ifname);

/*
 * Add a/prefix on ifname with scope "global" (IPv6 without duplicate address
 * detection: the agent decides who holds a VIP, and DAD would leave it unusable
 * ("tentative") for a second after a failover).
 * Idempotent: an address that is already there with that prefix returns 0 too,
 * so the caller never special-cases -EEXIST.
 * -EINVAL for a bad family or prefix, -ENODEV for an unknown interface.
 */
int sk_nl_addr_add(const char *ifname, const struct sk_conf_addr *a, uint8_t prefix);

/*
 * Remove a/prefix from ifname (the prefix must be the one it was added with).
 * Idempotent: an address that is not there returns 0, so the caller never
 * special-cases -EADDRNOTAVAIL. -ENODEV for an unknown interface.
 */
int sk_nl_addr_del(const char *ifname, const struct sk_conf_addr *a, uint8_t prefix);

/* Address scopes for sk_nl_addr_add_ex (values of the kernel's RT_SCOPE_*). */
enum sk_nl_scope { SK_NL_SCOPE_GLOBAL = 0, SK_NL_SCOPE_HOST = 254 };

/* sk_nl_addr_add with a chosen scope (the farm VIP lives on lo with scope host); same idempotence. */
int sk_nl_addr_add_ex(const char *ifname, const struct sk_conf_addr *a, uint8_t prefix,
		      enum sk_nl_scope scope);

/* Is a (any prefix) on ifname? 1 yes, 0 no, -errno. */
int sk_nl_addr_has(const char *ifname, const struct sk_conf_addr *a);

/* Carrier of ifname now: 1 up and carrier (IFF_LOWER_UP), 0 not, -errno. */
int sk_nl_link_carrier(const char *ifname);

/*
 * Link events: a nonblocking, close-on-exec netlink socket subscribed to
 * RTMGRP_LINK, for uv_poll or epoll. Close it with close(2).
 */
int sk_nl_link_watch_open(void);

/*
 * Read what is pending on a watch socket (bounded: at most 64 datagrams per
 * call; call again while the fd stays readable) and call cb once per link
 * message: carrier is true when the link is up and has carrier (IFF_LOWER_UP),
 * false when it lost it or was deleted. cb is called for every message about a
 * link, not only for changes: compare with what you knew.
 * If the kernel dropped events (socket overrun), the state of every link is
 * read again and reported through cb, so nothing is missed.
 * Returns the number of cb calls (0 when nothing was pending) or -errno.
 */
int sk_nl_link_watch_read(int fd, void (*cb)(void *arg, const char *ifname, bool carrier),
			  void *arg);

#endif
