/* libsk/util.h: the one monotonic clock and the one write-everything loop of the project. */
#ifndef SK_UTIL_H
#define SK_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* CLOCK_MONOTONIC in microseconds: for durations, deadlines and timestamps between nodes' own events. */
uint64_t sk_now_us(void);
/* The same clock in nanoseconds: the clock bpf_ktime_get_ns reads (XDP move times). */
uint64_t sk_now_ns(void);

/*
 * Write all n bytes to fd; EINTR is retried. 0, or -errno (-EAGAIN on a
 * nonblocking fd that filled up: some bytes may have gone). Any fd type.
 */
int sk_write_all(int fd, const void *buf, size_t n);

/*
 * Write the whole iovec array (n entries; the array is consumed: entries are
 * advanced in place). Sockets get sendmsg(MSG_NOSIGNAL), so a closed peer is
 * -EPIPE and never SIGPIPE; other fds get writev. EINTR retried. 0 or -errno.
 * At most IOV_MAX entries.
 */
int sk_writev_all(int fd, struct iovec *iov, int n);

/* pwrite all n bytes at off; EINTR retried; 0 or -errno (-EIO if a write makes no progress). */
int sk_pwrite_all(int fd, const void *buf, size_t n, uint64_t off);

#endif
