/* sk-pingpong: the network floor of bench/compare.sh, a TCP_NODELAY request/echo round trip between two hosts. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PP_MAX_MSG (1 << 20)

static char msg[PP_MAX_MSG];

static double mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Moves exactly len bytes in one direction; a short transfer is an error (the peer went away). */
static int xfer(int fd, char *buf, size_t len, int sending)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = sending ? send(fd, buf + done, len - done, MSG_NOSIGNAL) : recv(fd, buf + done, len - done, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		done += (size_t)n;
	}
	return 0;
}

static int resolve(const char *host, const char *port, int passive, struct addrinfo **res)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	int rc;

	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	rc = getaddrinfo(host, port, &hints, res);
	if (rc) {
		fprintf(stderr, "sk-pingpong: %s port %s: %s\n", host, port, gai_strerror(rc));
		return -EINVAL;
	}
	return 0;
}

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Echo server: serves maxconn connections one after the other, then exits. */
static int serve(const char *host, const char *port, long maxconn)
{
	struct addrinfo *ai;
	int lfd, one = 1;

	if (resolve(host, port, 1, &ai))
		return 2;
	lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(lfd, 8) < 0) {
		fprintf(stderr, "sk-pingpong: listen on %s port %s: %s\n", host, port, strerror(errno));
		return 1;
	}
	freeaddrinfo(ai);
	printf("listening\n");
	fflush(stdout);
	for (long k = 0; k < maxconn; k++) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		ssize_t n;

		if (c < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "sk-pingpong: accept: %s\n", strerror(errno));
			return 1;
		}
		nodelay(c);
		while ((n = recv(c, msg, sizeof(msg), 0)) > 0)
			if (xfer(c, msg, (size_t)n, 1))
				break;
		close(c);
	}
	close(lfd);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Client: count timed round trips of size bytes after count/10 untimed ones (connection warm-up). */
static int ping(const char *host, const char *port, long size, long count)
{
	struct addrinfo *ai = NULL;
	long warm = count / 10 + 1;
	double *rtt, sum = 0;
	int fd = -1;

	/* The server may still be starting: retry for up to 10 s. */
	for (int attempt = 0; attempt < 200 && fd < 0; attempt++) {
		if (resolve(host, port, 0, &ai))
			return 2;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			close(fd);
			fd = -1;
			usleep(50000);
		}
		freeaddrinfo(ai);
	}
	if (fd < 0) {
		fprintf(stderr, "sk-pingpong: cannot connect to %s port %s\n", host, port);
		return 1;
	}
	nodelay(fd);
	rtt = calloc((size_t)count, sizeof(*rtt));
	if (!rtt)
		return 1;
	memset(msg, 0xa5, (size_t)size);
	for (long i = -warm; i < count; i++) {
		double t0 = mono_us();
		int err = xfer(fd, msg, (size_t)size, 1);

		if (!err)
			err = xfer(fd, msg, (size_t)size, 0);
		if (err) {
			fprintf(stderr, "sk-pingpong: round trip %ld: %s\n", i, strerror(-err));
			return 1;
		}
		if (i >= 0) {
			rtt[i] = mono_us() - t0;
			sum += rtt[i];
		}
	}
	close(fd);
	qsort(rtt, (size_t)count, sizeof(*rtt), cmp_double);
	printf("size=%ld n=%ld p50_us=%.2f p99_us=%.2f mean_us=%.2f min_us=%.2f\n", size, count, rtt[count / 2],
	       rtt[(count * 99) / 100], sum / (double)count, rtt[0]);
	free(rtt);
	return 0;
}

int main(int argc, char **argv)
{
	long a, b, secs;

	if (argc == 6 && !strcmp(argv[1], "serve") && !parse_long(argv[4], 1, 1000000, &a) &&
	    !parse_long(argv[5], 1, 86400, &secs)) {
		alarm((unsigned)secs); /* never outlive the run that started it */
		return serve(argv[2], argv[3], a);
	}
	if (argc == 6 && !strcmp(argv[1], "ping") && !parse_long(argv[4], 1, PP_MAX_MSG, &a) &&
	    !parse_long(argv[5], 1, 10000000, &b)) {
		alarm(600);
		return ping(argv[2], argv[3], a, b);
	}
	fprintf(stderr, "usage: sk-pingpong serve ADDR PORT MAXCONN MAXSECONDS\n"
			"       sk-pingpong ping  ADDR PORT SIZE COUNT\n");
	return 2;
}
