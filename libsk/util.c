/* libsk/util.c: the monotonic clock, the write-all loops, numeric socket addresses. */
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t sk_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t sk_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t sk_thread_cpu_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000;
}

int sk_write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int sk_writev_all(int fd, struct iovec *iov, int n)
{
	int sock = 1;

	if (n < 0 || (n && !iov))
		return -EINVAL;
	/* Empty leading entries would make a zero-byte write look like no progress. */
	while (n > 0 && !iov->iov_len) {
		iov++;
		n--;
	}
	while (n > 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sock ? sendmsg(fd, &mh, MSG_NOSIGNAL) : writev(fd, iov, n > IOV_MAX ? IOV_MAX : n);

		if (w < 0 && errno == ENOTSOCK && sock) {
			sock = 0;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

int sk_pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

int sk_sockaddr_from(const char *host, uint16_t port, struct sockaddr_storage *ss, unsigned *len)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	char h[INET6_ADDRSTRLEN + IF_NAMESIZE + 1];
	char *pct;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		*len = sizeof(*v4);
		return 0;
	}
	if (strlen(host) >= sizeof(h))
		return -EINVAL;
	strcpy(h, host);
	pct = strchr(h, '%');
	if (pct)
		*pct++ = '\0';
	if (inet_pton(AF_INET6, h, &v6->sin6_addr) != 1)
		return -EINVAL;
	if (pct && !(v6->sin6_scope_id = if_nametoindex(pct)))
		return -EINVAL;
	v6->sin6_family = AF_INET6;
	v6->sin6_port = htons(port);
	*len = sizeof(*v6);
	return 0;
}

int sk_hostport_split(const char *s, char *host, size_t cap, uint16_t *port)
{
	const char *c, *h = s, *he;
	char *end;
	long p;

	if (*s == '[') {
		h = s + 1;
		he = strchr(h, ']');
		if (!he || he[1] != ':')
			return -EINVAL;
		c = he + 1;
	} else {
		c = strrchr(s, ':');
		if (!c || memchr(s, ':', (size_t)(c - s))) /* a bare IPv6 address needs brackets */
			return -EINVAL;
		he = c;
	}
	if (he == h || (size_t)(he - h) >= cap)
		return -EINVAL;
	errno = 0;
	p = strtol(c + 1, &end, 10);
	if (c[1] == '\0' || *end || errno || p < 1 || p > 65535)
		return -EINVAL;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';
	*port = (uint16_t)p;
	return 0;
}

uint16_t sk_inet_csum(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t s = 0;

	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (n & 1)
		s += (uint32_t)b[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return htons((uint16_t)~s);
}

bool sk_proc_comm_is(int pid, const char *name)
{
	char path[64], comm[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, comm, sizeof(comm) - 1);
	close(fd);
	if (n <= 0)
		return false;
	comm[n] = '\0';
	comm[strcspn(comm, "\n")] = '\0';
	return !strncmp(comm, name, 15) && strlen(name) >= strlen(comm);
}

void sk_human_bytes(uint64_t b, char *out, size_t cap)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

bool sk_text_char_ok(unsigned char c, const char *keep)
{
	return (c >= 0x20 && c != 0x7f) || (c && strchr(keep, c));
}

void sk_text_clean(char *s, size_t n, const char *keep)
{
	for (size_t i = 0; i < n; i++)
		if (!sk_text_char_ok((unsigned char)s[i], keep))
			s[i] = '?';
}
