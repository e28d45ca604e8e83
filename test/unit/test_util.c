/* test/unit/test_util.c: libsk/util: the clock moves with real time; the write-all loops deliver every byte through partial writes, signals and closed peers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "util.h"

#define BIG (4u << 20)

Test(util, clock)
{
	uint64_t a = sk_now_us(), an = sk_now_ns(), b, bn;

	cr_assert_gt(a, 0);
	usleep(20000);
	b = sk_now_us();
	bn = sk_now_ns();
	cr_assert_geq(b - a, 20000, "slept 20 ms, clock moved %llu us", (unsigned long long)(b - a));
	cr_assert_lt(b - a, 5000000);
	/* Same clock, two units. */
	cr_assert_geq(bn / 1000 + 1, b);
	cr_assert_lt(bn / 1000 - b, 1000000);
	cr_assert_geq(bn - an, 20000000ull);
}

static uint8_t *pattern(size_t n)
{
	uint8_t *p = malloc(n);

	cr_assert(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 131 + (i >> 12));
	return p;
}

struct reader {
	int fd;
	size_t want, got;
	uint8_t *buf;
	int slow;
};

static void *read_all(void *arg)
{
	struct reader *r = arg;
	sigset_t s;

	/* The writer takes the signals, so its EINTR handling is what is exercised. */
	sigemptyset(&s);
	sigaddset(&s, SIGALRM);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	while (r->got < r->want) {
		ssize_t n = read(r->fd, r->buf + r->got, r->slow ? 4096 : r->want - r->got);

		if (n <= 0)
			break;
		r->got += (size_t)n;
		if (r->slow)
			usleep(50);
	}
	return NULL;
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { alarms++; }

Test(util, write_all_pipe_with_signals, .timeout = 30)
{
	struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART: writes see EINTR */
	struct itimerval it = {.it_interval = {0, 500}, .it_value = {0, 500}};
	uint8_t *src = pattern(BIG);
	struct reader r = {.want = BIG, .buf = calloc(1, BIG), .slow = 1};
	pthread_t th;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	r.fd = p[0];
	cr_assert_eq(sigaction(SIGALRM, &sa, NULL), 0);
	cr_assert_eq(pthread_create(&th, NULL, read_all, &r), 0);
	cr_assert_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
	cr_assert_eq(sk_write_all(p[1], src, BIG), 0);
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	pthread_join(th, NULL);
	cr_assert_eq(r.got, BIG);
	cr_assert_arr_eq(r.buf, src, BIG);
	cr_assert_gt(alarms, 0, "no signal arrived during the write");
	close(p[0]);
	close(p[1]);
	free(src);
	free(r.buf);
}

Test(util, writev_all_socket_partial, .timeout = 30)
{
	uint8_t *src = pattern(BIG);
	struct reader r = {.want = BIG, .buf = calloc(1, BIG)};
	struct iovec iov[64];
	size_t off = 0;
	int sv[2], small = 4096, n = 0;
	pthread_t th;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	/* A small buffer forces many partial sendmsg calls across iovec boundaries. */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	/* Uneven pieces, with empty entries first, in the middle and last. */
	iov[n++] = (struct iovec){src, 0};
	for (size_t len = 1; off < BIG && n < 62; len = len * 3 + 7) {
		if (len > BIG - off || n == 61)
			len = BIG - off;
		iov[n++] = (struct iovec){src + off, len};
		off += len;
		if (n == 10)
			iov[n++] = (struct iovec){src, 0};
	}
	iov[n++] = (struct iovec){src, 0};
	cr_assert_eq(off, BIG);
	r.fd = sv[1];
	cr_assert_eq(pthread_create(&th, NULL, read_all, &r), 0);
	cr_assert_eq(sk_writev_all(sv[0], iov, n), 0);
	pthread_join(th, NULL);
	cr_assert_eq(r.got, BIG);
	cr_assert_arr_eq(r.buf, src, BIG);
	close(sv[0]);
	close(sv[1]);
	free(src);
	free(r.buf);
}

Test(util, writev_all_closed_peer_is_epipe)
{
	uint8_t b[100] = {0};
	struct iovec iov = {b, sizeof(b)};
	int sv[2];

	/* Default SIGPIPE disposition: a plain writev here would kill the test. */
	signal(SIGPIPE, SIG_DFL);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	cr_assert_eq(sk_writev_all(sv[0], &iov, 1), -EPIPE);
	close(sv[0]);
}

Test(util, writev_all_file_and_pwrite)
{
	char path[] = "/tmp/sk_util_XXXXXX";
	uint8_t a[3000], b[5000], back[8000];
	struct iovec iov[2] = {{a, sizeof(a)}, {b, sizeof(b)}};
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	unlink(path);
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	cr_assert_eq(sk_writev_all(fd, iov, 2), 0, "a regular file is not a socket: writev path");
	cr_assert_eq(pread(fd, back, sizeof(back), 0), (ssize_t)sizeof(back));
	cr_assert_arr_eq(back, a, sizeof(a));
	cr_assert_arr_eq(back + sizeof(a), b, sizeof(b));
	cr_assert_eq(sk_pwrite_all(fd, a, 10, 5000), 0);
	cr_assert_eq(pread(fd, back, 12, 4999), 12);
	cr_assert_eq(back[0], 'b');
	cr_assert_eq(back[1], 'a');
	cr_assert_eq(back[10], 'a');
	cr_assert_eq(back[11], 'b');
	cr_assert_eq(sk_write_all(-1, a, 1), -EBADF);
	cr_assert_eq(sk_writev_all(fd, NULL, 1), -EINVAL);
	cr_assert_eq(sk_writev_all(fd, iov, 0), 0);
	close(fd);
}

Test(util, hostport_split)
{
	char h[64];
	uint16_t port = 0;

	cr_assert_eq(sk_hostport_split("10.0.0.2:7801", h, sizeof(h), &port), 0);
	cr_assert_str_eq(h, "10.0.0.2");
	cr_assert_eq(port, 7801);
	cr_assert_eq(sk_hostport_split("[fd99::2]:7801", h, sizeof(h), &port), 0);
	cr_assert_str_eq(h, "fd99::2");
	cr_assert_eq(port, 7801);
	cr_assert_eq(sk_hostport_split("[fe80::1%lo]:1", h, sizeof(h), &port), 0);
	cr_assert_str_eq(h, "fe80::1%lo");
	/* refused: a bare IPv6 address (which colon is the port's?), no port, port out of range,
	 * unclosed bracket, empty host, a host longer than the buffer */
	cr_assert_eq(sk_hostport_split("fd99::2:7801", h, sizeof(h), &port), -EINVAL);
	cr_assert_eq(sk_hostport_split("10.0.0.2", h, sizeof(h), &port), -EINVAL);
	cr_assert_eq(sk_hostport_split("10.0.0.2:", h, sizeof(h), &port), -EINVAL);
	cr_assert_eq(sk_hostport_split("10.0.0.2:0", h, sizeof(h), &port), -EINVAL);
	cr_assert_eq(sk_hostport_split("10.0.0.2:65536", h, sizeof(h), &port), -EINVAL);
	cr_assert_eq(sk_hostport_split("10.0.0.2:80x", h, sizeof(h), &port), -EINVAL);
	cr_assert_eq(sk_hostport_split("[fd99::2:7801", h, sizeof(h), &port), -EINVAL);
	cr_assert_eq(sk_hostport_split("[fd99::2]7801", h, sizeof(h), &port), -EINVAL);
	cr_assert_eq(sk_hostport_split(":80", h, sizeof(h), &port), -EINVAL);
	cr_assert_eq(sk_hostport_split("[]:80", h, sizeof(h), &port), -EINVAL);
	cr_assert_eq(sk_hostport_split("1.2.3.4:80", h, 7, &port), -EINVAL);
}

Test(util, sockaddr_from)
{
	struct sockaddr_storage ss;
	unsigned len = 0;

	cr_assert_eq(sk_sockaddr_from("10.0.0.2", 7801, &ss, &len), 0);
	cr_assert_eq(ss.ss_family, AF_INET);
	cr_assert_eq(len, sizeof(struct sockaddr_in));
	cr_assert_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 7801);
	cr_assert_eq(sk_sockaddr_from("fd99::2", 9, &ss, &len), 0);
	cr_assert_eq(ss.ss_family, AF_INET6);
	cr_assert_eq(len, sizeof(struct sockaddr_in6));
	cr_assert_eq(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 9);
	cr_assert_eq(sk_sockaddr_from("fe80::1%lo", 9, &ss, &len), 0);
	cr_assert_eq(((struct sockaddr_in6 *)&ss)->sin6_scope_id, if_nametoindex("lo"));
	cr_assert_eq(sk_sockaddr_from("fe80::1%no-such-if", 9, &ss, &len), -EINVAL);
	cr_assert_eq(sk_sockaddr_from("node2.example", 9, &ss, &len), -EINVAL, "numeric only");
	cr_assert_eq(sk_sockaddr_from("10.0.0.256", 9, &ss, &len), -EINVAL);
}

Test(util, inet_csum_of_an_echo_request)
{
	/* type 8, code 0, checksum 0, id 0x1234, seq 1: RFC 1071 sum 0xe5ca (network order) */
	uint8_t ih[8] = { 8, 0, 0, 0, 0x12, 0x34, 0, 1 };
	uint16_t c = sk_inet_csum(ih, sizeof(ih));

	cr_assert_eq(ntohs(c), 0xe5ca);
	memcpy(ih + 2, &c, 2);
	cr_assert_eq(sk_inet_csum(ih, sizeof(ih)), 0, "a packet with its checksum sums to 0");
	cr_assert_eq(ntohs(sk_inet_csum((uint8_t[]){ 0x01 }, 1)), 0xfeff, "odd length: padded");
}

Test(util, proc_comm_is_the_kernel_name)
{
	char name[32] = "";
	FILE *fp = fopen("/proc/self/comm", "re");

	cr_assert(fp && fgets(name, sizeof(name), fp));
	fclose(fp);
	name[strcspn(name, "\n")] = '\0';
	cr_assert(sk_proc_comm_is(getpid(), name));
	cr_assert(!sk_proc_comm_is(getpid(), "certainly-not-us"));
	cr_assert(!sk_proc_comm_is(-1, name), "no such process");
}

Test(util, human_bytes)
{
	char b[32];

	sk_human_bytes(512, b, sizeof(b));
	cr_assert_str_eq(b, "512 B");
	sk_human_bytes(3435973837ull, b, sizeof(b));
	cr_assert_str_eq(b, "3.2 GiB");
	sk_human_bytes(1024, b, sizeof(b));
	cr_assert_str_eq(b, "1.0 KiB");
}

Test(util, text_clean_keeps_only_what_is_asked)
{
	char s[] = "a\tb\nc\x1b[2J\x7f\r";
	char z[] = { 'x', '\0', 'y' };

	sk_text_clean(s, sizeof(s) - 1, "\t\n");
	cr_assert_str_eq(s, "a\tb\nc?[2J??");
	sk_text_clean(s, sizeof(s) - 1, "");
	cr_assert_str_eq(s, "a?b?c?[2J??");
	sk_text_clean(z, sizeof(z), "\t"); /* a NUL is never kept */
	cr_assert(!memcmp(z, "x?y", 3));
	cr_assert(sk_text_char_ok('\t', "\t") && !sk_text_char_ok('\t', "") && sk_text_char_ok(0xc3, ""));
}
