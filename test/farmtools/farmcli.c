/* farmcli: farm scenario client; a burst of short HTTP connections, or long-lived ones that must not break. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SRC 64
#define MAX_NODES 16
#define RESP_MAX 512

struct conn {
	int fd;
	int state;        /* 0 connecting, 1 waiting reply, 2 idle (hold), 3 done, 4 broken */
	int node;         /* index in node names, -1 unknown */
	uint64_t t0_ms;   /* connect or request start */
	size_t len;
	char resp[RESP_MAX];
	const char *why;
};

static struct in_addr srcs[MAX_SRC];
static int nsrc;
static struct sockaddr_in vip;
static char node_names[MAX_NODES][65];
static int nnodes;
static volatile sig_atomic_t stop;
static int print_map; /* burst --map 1: one "src ADDR NODE|none" line per connection */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int node_index(const char *nm)
{
	for (int i = 0; i < nnodes; i++)
		if (!strcmp(node_names[i], nm))
			return i;
	if (nnodes == MAX_NODES)
		return -1;
	snprintf(node_names[nnodes], sizeof(node_names[0]), "%s", nm);
	return nnodes++;
}

static int open_conn(struct conn *c, int ep, int k)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = srcs[k % nsrc]};
	struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};

	memset(c, 0, sizeof(*c));
	c->node = -1;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	if (bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    (connect(c->fd, (struct sockaddr *)&vip, sizeof(vip)) && errno != EINPROGRESS)) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	c->t0_ms = now_ms();
	epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	return 0;
}

static void finish(struct conn *c, int ep, int state, const char *why)
{
	if (c->fd >= 0) {
		epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->state = state;
	c->why = why;
}

static int send_req(struct conn *c, int keep)
{
	static const char req_close[] = "GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n";
	static const char req_keep[] = "GET / HTTP/1.1\r\nHost: vip\r\n\r\n";
	const char *r = keep ? req_keep : req_close;
	size_t n = keep ? sizeof(req_keep) - 1 : sizeof(req_close) - 1;

	c->len = 0;
	c->t0_ms = now_ms();
	c->state = 1;
	return write(c->fd, r, n) == (ssize_t)n ? 0 : -1;
}

/* One complete response in c->resp? 1 yes (node set), 0 need more, -1 garbage or extra bytes. */
static int parse_resp(struct conn *c, int *node)
{
	char *hdr_end = memmem(c->resp, c->len, "\r\n\r\n", 4), *cl, nm[65];
	size_t body, total;

	if (!hdr_end)
		return c->len == RESP_MAX ? -1 : 0;
	if (strncmp(c->resp, "HTTP/1.1 200 ", 13))
		return -1;
	cl = memmem(c->resp, (size_t)(hdr_end - c->resp), "Content-Length: ", 16);
	if (!cl)
		return -1;
	body = strtoul(cl + 16, NULL, 10);
	total = (size_t)(hdr_end + 4 - c->resp) + body;
	if (body < 2 || body > 64 || total > RESP_MAX)
		return -1;
	if (c->len < total)
		return 0;
	if (c->len > total)
		return -1; /* a second answer to one request */
	memcpy(nm, hdr_end + 4, body - 1);
	nm[body - 1] = 0;
	*node = node_index(nm);
	return *node >= 0 ? 1 : -1;
}

static int run_burst(int n, int conc, int timeout_ms)
{
	struct conn *cs = calloc((size_t)n, sizeof(*cs));
	int ep = epoll_create1(EPOLL_CLOEXEC), started = 0, active = 0, done = 0;

	if (!cs || ep < 0)
		return 1;
	int counts[MAX_NODES] = {0}, failed = 0, slow = 0;
	uint64_t deadline = now_ms() + 120000;

	while (done < n && now_ms() < deadline) {
		while (active < conc && started < n) {
			if (open_conn(&cs[started], ep, started)) {
				cs[started].state = 4;
				cs[started].why = "socket/bind/connect";
				done++;
			} else {
				active++;
			}
			started++;
		}
		struct epoll_event evs[256];
		int k = epoll_wait(ep, evs, 256, 50);

		for (int i = 0; i < k; i++) {
			struct conn *c = evs[i].data.ptr;
			int err = 0, node;
			socklen_t el = sizeof(err);

			if (c->state == 0) {
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
				if (err) {
					finish(c, ep, 4, "connect failed"), active--, done++;
					continue;
				}
				if (now_ms() - c->t0_ms > 900)
					slow++; /* a SYN was lost: would mean a drop on every node */
				struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				if (send_req(c, 0)) {
					finish(c, ep, 4, "send"), active--, done++;
				}
				continue;
			}
			ssize_t r = read(c->fd, c->resp + c->len, RESP_MAX - c->len);
			if (r > 0) {
				c->len += (size_t)r;
				continue; /* judge at EOF: extra bytes would be a second answer */
			}
			if (r < 0 && errno == EAGAIN)
				continue;
			int pr = r == 0 ? parse_resp(c, &node) : -1;
			if (pr == 1) {
				counts[node]++;
				c->node = node;
				finish(c, ep, 3, NULL);
			} else {
				finish(c, ep, 4, r == 0 ? "bad or partial answer" : "reset");
			}
			active--;
			done++;
		}
		uint64_t t = now_ms();
		for (int i = 0; i < started; i++)
			if ((cs[i].state == 0 || cs[i].state == 1) && cs[i].fd >= 0 &&
			    t > cs[i].t0_ms + (uint64_t)timeout_ms) {
				finish(&cs[i], ep, 4, "timeout");
				active--;
				done++;
			}
	}
	for (int i = 0; i < n; i++)
		if (cs[i].state != 3) {
			failed++;
			if (failed <= 5)
				fprintf(stderr, "farmcli: connection %d failed: %s\n", i,
					cs[i].why ? cs[i].why : "not finished");
		}
	for (int i = 0; i < nnodes; i++)
		printf("node %s %d\n", node_names[i], counts[i]);
	for (int i = 0; print_map && i < n; i++) {
		char a[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &srcs[i % nsrc], a, sizeof(a));
		printf("src %s %s\n", a, cs[i].state == 3 && cs[i].node >= 0 ? node_names[cs[i].node] : "none");
	}
	printf("total=%d ok=%d failed=%d slow=%d\n", n, n - failed, failed, slow);
	for (int i = 0; i < n; i++)
		if (cs[i].fd > 0)
			close(cs[i].fd);
	free(cs);
	close(ep);
	return failed ? 1 : 0;
}

static void on_sig(int s)
{
	(void)s;
	stop = 1;
}

static void write_status(const char *path, struct conn *cs, int n)
{
	char tmp[512];
	FILE *f;
	int ok[MAX_NODES] = {0}, br[MAX_NODES] = {0}, unknown = 0, nok = 0, nbr = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	for (int i = 0; i < n; i++) {
		int broken = cs[i].state == 4;

		nok += !broken;
		nbr += broken;
		if (cs[i].node < 0)
			unknown++;
		else if (broken)
			br[cs[i].node]++;
		else
			ok[cs[i].node]++;
	}
	fprintf(f, "conns=%d ok=%d broken=%d unknown=%d\n", n, nok, nbr, unknown);
	for (int i = 0; i < nnodes; i++)
		fprintf(f, "node %s ok=%d broken=%d\n", node_names[i], ok[i], br[i]);
	for (int i = 0; i < n; i++)
		if (cs[i].state == 4)
			fprintf(f, "broken %d node=%s why=%s\n", i, cs[i].node >= 0 ? node_names[cs[i].node] : "?",
				cs[i].why ? cs[i].why : "?");
	fclose(f);
	rename(tmp, path);
}

/* Long-lived connections: one request per connection every interval; an answer
 * missing for timeout_ms, a reset or an answer from another node breaks it. */
static int run_hold(int n, int interval_ms, int timeout_ms, int seconds, const char *status)
{
	struct conn *cs = calloc((size_t)n, sizeof(*cs));
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (!cs || ep < 0)
		return 1;
	uint64_t end = now_ms() + (uint64_t)seconds * 1000, next_tick = 0, next_status = 0;

	signal(SIGTERM, on_sig);
	signal(SIGINT, on_sig);
	for (int i = 0; i < n; i++)
		if (open_conn(&cs[i], ep, i))
			finish(&cs[i], ep, 4, "socket/bind/connect");
	while (!stop && now_ms() < end) {
		uint64_t t = now_ms();

		if (t >= next_tick) {
			next_tick = t + (uint64_t)interval_ms;
			for (int i = 0; i < n; i++)
				if (cs[i].state == 2 && send_req(&cs[i], 1))
					finish(&cs[i], ep, 4, "send failed");
		}
		t = now_ms(); /* after the sends: t0 must never be in the future */
		for (int i = 0; i < n; i++)
			if ((cs[i].state == 0 || cs[i].state == 1) && t > cs[i].t0_ms + (uint64_t)timeout_ms)
				finish(&cs[i], ep, 4, cs[i].state ? "no answer (timeout)" : "connect timeout");
		if (t >= next_status) {
			next_status = t + 100;
			write_status(status, cs, n);
		}
		struct epoll_event evs[256];
		int k = epoll_wait(ep, evs, 256, 20);

		for (int i = 0; i < k; i++) {
			struct conn *c = evs[i].data.ptr;
			int err = 0, node;
			socklen_t el = sizeof(err);

			if (c->fd < 0)
				continue;
			if (c->state == 0) {
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
				if (err) {
					finish(c, ep, 4, "connect failed");
					continue;
				}
				struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				if (send_req(c, 1))
					finish(c, ep, 4, "send failed");
				continue;
			}
			ssize_t r = read(c->fd, c->resp + c->len, RESP_MAX - c->len);
			if (r < 0 && errno == EAGAIN)
				continue;
			if (r <= 0) {
				finish(c, ep, 4, r == 0 ? "closed by peer" : "reset");
				continue;
			}
			c->len += (size_t)r;
			if (c->state != 1) {
				finish(c, ep, 4, "unrequested answer");
				continue;
			}
			int pr = parse_resp(c, &node);
			if (pr < 0) {
				finish(c, ep, 4, "bad answer");
			} else if (pr == 1) {
				if (c->node >= 0 && c->node != node)
					finish(c, ep, 4, "answered by another node");
				else {
					c->node = node;
					c->state = 2;
				}
			}
		}
	}
	write_status(status, cs, n);
	int broken = 0;
	for (int i = 0; i < n; i++)
		broken += cs[i].state == 4;
	printf("hold conns=%d broken=%d\n", n, broken);
	for (int i = 0; i < n; i++)
		if (cs[i].fd > 0)
			close(cs[i].fd);
	free(cs);
	close(ep);
	return 0;
}

static int parse_srcs(const char *s)
{
	char buf[4096], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", s);
	for (char *t = strtok_r(buf, ",", &save); t && nsrc < MAX_SRC; t = strtok_r(NULL, ",", &save))
		if (inet_pton(AF_INET, t, &srcs[nsrc++]) != 1)
			return -1;
	return nsrc ? 0 : -1;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "", *status = "/dev/null";
	int n = 100, conc = 64, timeout_ms = 5000, interval_ms = 200, seconds = 60, port = 80;
	const char *vip_s = NULL, *src_s = "0.0.0.0";

	for (int i = 2; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];

		if (!strcmp(k, "--vip")) vip_s = v;
		else if (!strcmp(k, "--port")) port = atoi(v);
		else if (!strcmp(k, "--src")) src_s = v;
		else if (!strcmp(k, "--n")) n = atoi(v);
		else if (!strcmp(k, "--conc")) conc = atoi(v);
		else if (!strcmp(k, "--timeout-ms")) timeout_ms = atoi(v);
		else if (!strcmp(k, "--interval-ms")) interval_ms = atoi(v);
		else if (!strcmp(k, "--seconds")) seconds = atoi(v);
		else if (!strcmp(k, "--status")) status = v;
		else if (!strcmp(k, "--map")) print_map = atoi(v);
		else {
			fprintf(stderr, "farmcli: unknown option %s\n", k);
			return 2;
		}
	}
	vip.sin_family = AF_INET;
	vip.sin_port = htons((uint16_t)port);
	if (!vip_s || inet_pton(AF_INET, vip_s, &vip.sin_addr) != 1 || parse_srcs(src_s) || n < 1 ||
	    n > 100000 || conc < 1 || timeout_ms < 100 || interval_ms < 10 || seconds < 1) {
		fprintf(stderr, "usage: farmcli burst|hold --vip A [--port P] [--src A,B..] [--n N] [--conc C]\n"
				"       [--timeout-ms T] [--interval-ms I --seconds S --status FILE] [--map 1]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "burst"))
		return run_burst(n, conc, timeout_ms);
	if (!strcmp(mode, "hold"))
		return run_hold(n, interval_ms, timeout_ms, seconds, status);
	fprintf(stderr, "farmcli: mode must be burst or hold\n");
	return 2;
}
