/* libsk/util.h: the one monotonic clock and the one write-everything loop of the project. */
#ifndef SK_UTIL_H
#define SK_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* CLOCK_MONOTONIC in microseconds: for durations, deadlines and timestamps between nodes' own events. */
uint64_t sk_now_us(void);
/* The same clock in nanoseconds: the clock bpf_ktime_get_ns reads (XDP move times). */
uint64_t sk_now_ns(void);
/* The calling thread's CPU time (user + system) in microseconds; 0 if it cannot be read. */
uint64_t sk_thread_cpu_us(void);

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

/*
 * A numeric IPv4 or IPv6 address (no brackets; an IPv6 link-local may carry %IFNAME) and a
 * port into a socket address. 0, or -EINVAL if host is not a numeric address.
 */
struct sockaddr_storage;
int sk_sockaddr_from(const char *host, uint16_t port, struct sockaddr_storage *ss,
		     unsigned *len);

/*
 * "IPV4:PORT" or "[IPV6]:PORT" (port 1..65535) into host (without brackets, < cap) and port.
 * 0, or -EINVAL with nothing promised about host.
 */
int sk_hostport_split(const char *s, char *host, size_t cap, uint16_t *port);

/* The Internet checksum (RFC 1071) of n bytes, in network byte order (ICMP echo requests). */
uint16_t sk_inet_csum(const void *p, size_t n);

/*
 * Whether process pid's name (/proc/PID/comm, which the kernel cuts at 15 bytes) is name:
 * false if the process is gone or unreadable.
 */
bool sk_proc_comm_is(int pid, const char *name);

/*
 * Text someone else chose (a peer, a tree, a script), made fit to show in a log or on a
 * terminal: every control character (NUL and DEL too) but those in keep ("\t", "\t\n", "")
 * becomes '?' in s[0..n). No escape sequence gets through, no line starts where we did not
 * start one. sk_text_char_ok: whether c stays.
 */
bool sk_text_char_ok(unsigned char c, const char *keep);
void sk_text_clean(char *s, size_t n, const char *keep);

/* b bytes for people: "512 B", "3.2 GiB" (binary units up to TiB). */
void sk_human_bytes(uint64_t b, char *out, size_t cap);

#endif
