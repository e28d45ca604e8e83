/* farmsrv: tiny HTTP/1.1 server for farm scenarios; answers every request with its node name, keep-alive aware. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 16384
#define BUF_LEN 2048

struct conn {
	int fd;
	size_t len;
	char buf[BUF_LEN];
};

static struct conn *conns[MAX_CONNS];
static const char *name = "node";
static unsigned long served;

static void drop_conn(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	conns[c->fd] = NULL;
	free(c);
}

/* Serve every complete request in the buffer; returns -1 when the connection must close. */
static int serve(struct conn *c)
{
	char *end;

	while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
		size_t reqlen = (size_t)(end + 4 - c->buf);
		int close_after = memmem(c->buf, reqlen, "Connection: close", 17) != NULL;
		char resp[256];
		int n = snprintf(resp, sizeof(resp),
				 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: %s\r\n\r\n%s\n",
				 strlen(name) + 1, close_after ? "close" : "keep-alive", name);

		if (write(c->fd, resp, (size_t)n) != n)
			return -1;
		served++;
		printf("served %lu\n", served);
		memmove(c->buf, c->buf + reqlen, c->len - reqlen);
		c->len -= reqlen;
		if (close_after)
			return -1;
	}
	return c->len == BUF_LEN ? -1 : 0;
}

static int listen_on(int family, const char *addr, int port)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	int one = 1, fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;

		s->sin_family = AF_INET;
		s->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, addr, &s->sin_addr) != 1)
			return -1;
		sl = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

		s->sin6_family = AF_INET6;
		s->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, addr, &s->sin6_addr) != 1)
			return -1;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		sl = sizeof(*s);
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 4096)) {
		fprintf(stderr, "farmsrv: bind/listen %s:%d: %s\n", addr, port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	const char *addr4 = NULL, *addr6 = NULL;
	int port = 80, ep, lfd[2] = {-1, -1}, nl = 0;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--name"))
			name = argv[i + 1];
		else if (!strcmp(argv[i], "--bind"))
			addr4 = argv[i + 1];
		else if (!strcmp(argv[i], "--bind6"))
			addr6 = argv[i + 1];
		else if (!strcmp(argv[i], "--port"))
			port = atoi(argv[i + 1]);
		else {
			fprintf(stderr, "usage: farmsrv --name N --bind IPv4 [--bind6 IPv6] [--port P]\n");
			return 2;
		}
	}
	if ((!addr4 && !addr6) || port <= 0 || port > 65535 || strlen(name) > 64) {
		fprintf(stderr, "farmsrv: need --bind and/or --bind6, a port and a short name\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (addr4 && (lfd[nl++] = listen_on(AF_INET, addr4, port)) < 0)
		return 1;
	if (addr6 && (lfd[nl++] = listen_on(AF_INET6, addr6, port)) < 0)
		return 1;
	for (int i = 0; i < nl; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd[i]};

		epoll_ctl(ep, EPOLL_CTL_ADD, lfd[i], &ev);
	}
	printf("listening %s port %d\n", name, port);
	for (;;) {
		struct epoll_event evs[256];
		int n = epoll_wait(ep, evs, 256, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == lfd[0] || fd == lfd[1]) {
				int cfd;

				while ((cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct epoll_event ev = {.events = EPOLLIN, .data.fd = cfd};

					if (cfd >= MAX_CONNS || !(conns[cfd] = calloc(1, sizeof(struct conn)))) {
						close(cfd);
						continue;
					}
					conns[cfd]->fd = cfd;
					epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
				}
				continue;
			}
			struct conn *c = conns[fd];
			if (!c)
				continue;
			ssize_t r = read(fd, c->buf + c->len, BUF_LEN - c->len);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				drop_conn(ep, c);
				continue;
			}
			if (r > 0) {
				c->len += (size_t)r;
				if (serve(c) < 0)
					drop_conn(ep, c);
			}
		}
	}
}
