/* evilsecondary: an authenticated but malicious secondary (an insider with the secret) that a primary skfused dials. */
/*
 * Why: issue 9 — the primary reads what its peer says about its own tree too: the FAILED
 * reports of a resync name paths the primary then resolves, opens and walks. An insider who
 * takes the secondary's place can name any path. Each session is accepted with the cluster
 * secret and played as a secondary that has nothing: every frame acked, every checksum
 * request answered "no such file", the first RS_END answered "again" and the next "done".
 * Right after its GEN answer (and an empty list of its own changes, when asked for) the
 * session sends one FAILED report per --report.
 *
 *   evilsecondary --listen IP:PORT --secret FILE --report P1[,P2] [--report ...]
 *                 [--sessions incr,full,...] [--wait-ms MS] [--log FILE]
 *
 * --report P1,P2 names a rename or link (P1 == P2: a file the secondary says it remade
 * empty, which the primary sends by path). --sessions says, per session in order, how the
 * GEN answer relates to the primary: "incr" the copy its dirty tracking started from (the
 * primary's `shared` generation, so its resync is incremental), "full" a copy it does not
 * know (a full resync). --log FILE gets one line per operation received: type, path1, path2.
 * Prints a line per session; exits 0 when every session got as far as a completed RS_END,
 * 1 when one did not (the primary cut it, or --wait-ms passed without a frame), 2 on setup
 * errors. Paths are sent as given: this tool is the attacker, the primary must refuse them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "conf.h"
#include "gen.h"
#include "proto.h"
#include "replmsg.h"
#include "util.h"

#define MAX_REPORTS 64
#define MAX_SESSIONS 8

static struct {
	char p1[SK_RMSG_PATH_MAX + 1], p2[SK_RMSG_PATH_MAX + 1];
} reports[MAX_REPORTS];
static int n_reports;
static bool incr[MAX_SESSIONS];
static int n_sessions;
static int wait_ms = 20000;
static struct sk_key master;
static FILE *oplog;

__attribute__((noreturn)) static void die(const char *msg)
{
	fprintf(stderr, "evilsecondary: %s\n", msg);
	exit(2);
}

static int send_iov(struct sk_chan *c, int fd, uint8_t type, struct iovec *iov, int n)
{
	return sk_chan_send_fd(c, fd, type, 0, 1, iov, n);
}

static int send_ack(struct sk_chan *c, int fd, uint64_t seq)
{
	struct sk_rmsg_ack a = { .applied = seq };
	uint8_t b[SK_RMSG_ACK_LEN];
	struct iovec iov = { b, sizeof(b) };

	sk_rmsg_ack_encode(&a, b);
	return send_iov(c, fd, SK_RMSG_ACK, &iov, 1);
}

static int send_sums(struct sk_chan *c, int fd, uint64_t req, uint64_t off, int err)
{
	struct sk_rmsg_sums s = { .req = req, .off = off, .err = err };
	uint8_t b[SK_RMSG_SUMS_HDR];
	struct iovec iov = { b, sizeof(b) };

	sk_rmsg_sums_encode_hdr(&s, b);
	return send_iov(c, fd, SK_RMSG_SUMS, &iov, 1);
}

/* The answer to START: accepted, with a copy the primary tracked from (incr) or does not know. */
static int answer_start(struct sk_chan *c, int fd, const struct sk_rmsg_op *op, bool as_incr)
{
	struct sk_gen_wire pw, me = { .changed_files = 0, .changed_bytes = 0,
				      .verdict = SK_GEN_V_OK };
	uint8_t b[SK_GEN_WIRE_LEN], oh[SK_OWN_HDR];
	struct iovec iov = { b, sizeof(b) }, own[2] = { { oh, sizeof(oh) }, { oh, 0 } };

	if (op->data_len != SK_GEN_WIRE_LEN || sk_gen_decode(op->data, op->data_len, &pw) < 0)
		return -1;
	me.g.current = as_incr ? (pw.g.shared ? pw.g.shared : pw.g.current) : 0x5eedf00dULL;
	me.g.shared = me.g.current;
	sk_gen_encode(&me, b);
	if (send_iov(c, fd, SK_RMSG_GEN, &iov, 1) < 0)
		return -1;
	if (!(op->flags & SK_START_F_OWNLIST))
		return 0;
	sk_rmsg_own_hdr(SK_OWN_F_LAST, 0, oh); /* nothing of its own */
	return send_iov(c, fd, SK_RMSG_OWNLIST, own, 2);
}

static int send_reports(struct sk_chan *c, int fd)
{
	for (int i = 0; i < n_reports; i++) {
		struct sk_rmsg_op r = { .type = SK_RMSG_FAILED, .path1 = reports[i].p1,
					.path1_len = (uint16_t)strlen(reports[i].p1),
					.path2 = reports[i].p2,
					.path2_len = (uint16_t)strlen(reports[i].p2) };
		uint8_t b[SK_RMSG_OP_HDR + 2 * (SK_RMSG_PATH_MAX + 1)];
		long n = sk_rmsg_op_encode(&r, b, sizeof(b));
		struct iovec iov;

		if (n < 0)
			return -1;
		iov = (struct iovec){ b, (size_t)n };
		if (send_iov(c, fd, SK_RMSG_FAILED, &iov, 1) < 0)
			return -1;
	}
	return 0;
}

/* One session on an accepted connection: 0 once an RS_END was answered "done", -1 if not. */
static int session(int fd, int k)
{
	static uint8_t buf[SK_PROTO_MAX_FRAME];
	struct sk_chan c;
	uint32_t peer_node = 0, module = 0;
	enum sk_reject why = 0;
	unsigned long frames = 0, ends = 0;
	int rc = sk_chan_accept_fd(fd, &master, SK_CHAN_REPL, 2, &c, &peer_node, &module, wait_ms,
				   &why);

	if (rc < 0) {
		printf("session %d: handshake failed: %s\n", k, sk_chan_strerror(rc));
		return -1;
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		struct sk_rmsg_op op;
		const char *bad = NULL;
		struct sk_frame f;

		if (poll(&p, 1, wait_ms) <= 0) {
			printf("session %d: no frame for %d ms after %lu frames\n", k, wait_ms, frames);
			return -1;
		}
		if ((rc = sk_chan_recv_fd(&c, fd, buf, sizeof(buf), &f, &why)) < 0) {
			printf("session %d: the primary ended it after %lu frames (%s)\n", k, frames,
			       strerror(-rc));
			return -1;
		}
		frames++;
		if (sk_rmsg_op_decode(f.type, f.payload, f.len, &op, &bad) < 0) {
			printf("session %d: frame type %u not understood: %s\n", k, f.type, bad);
			return -1;
		}
		if (oplog)
			fprintf(oplog, "%u %.*s %.*s\n", f.type, (int)op.path1_len, op.path1,
				(int)op.path2_len, op.path2);
		if (f.type == SK_RMSG_START) {
			if (answer_start(&c, fd, &op, incr[k - 1]) < 0 || send_reports(&c, fd) < 0) {
				printf("session %d: could not answer START\n", k);
				return -1;
			}
			continue;
		}
		/* the answer to a request comes before the ack that covers it, as the secondary's */
		if (f.type == SK_RMSG_RS_SUMSREQ)
			rc = send_sums(&c, fd, op.fh, op.off, ENOENT);
		else if (f.type == SK_RMSG_RS_END)
			rc = send_sums(&c, fd, op.fh, 0, ends++ ? 0 : EAGAIN);
		if (rc < 0 || send_ack(&c, fd, f.seq) < 0) {
			printf("session %d: the primary went away after %lu frames\n", k, frames);
			return -1;
		}
		if (f.type == SK_RMSG_RS_END && ends > 1) {
			printf("session %d (%s): %lu frames, %d reports sent, resync ended\n", k,
			       incr[k - 1] ? "incr" : "full", frames, n_reports);
			return 0;
		}
	}
}

static void parse_sessions(const char *s)
{
	char tmp[256], *save = NULL;

	snprintf(tmp, sizeof(tmp), "%s", s);
	n_sessions = 0;
	for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n_sessions == MAX_SESSIONS || (strcmp(t, "incr") && strcmp(t, "full")))
			die("--sessions: a list of at most 8 of incr, full");
		incr[n_sessions++] = !strcmp(t, "incr");
	}
}

static void add_report(const char *s)
{
	const char *comma = strchr(s, ',');
	size_t l1 = comma ? (size_t)(comma - s) : strlen(s), l2 = comma ? strlen(comma + 1) : 0;

	if (n_reports == MAX_REPORTS || l1 > SK_RMSG_PATH_MAX || l2 > SK_RMSG_PATH_MAX)
		die("--report: at most 64 of P1[,P2], each path at most 4096 bytes");
	memcpy(reports[n_reports].p1, s, l1);
	if (comma)
		memcpy(reports[n_reports].p2, comma + 1, l2);
	n_reports++;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "listen", required_argument, NULL, 'l' }, { "secret", required_argument, NULL, 's' },
		{ "report", required_argument, NULL, 'r' }, { "sessions", required_argument, NULL, 'n' },
		{ "wait-ms", required_argument, NULL, 'w' }, { "log", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 }
	};
	static const char usage[] = "usage: evilsecondary --listen IP:PORT --secret FILE "
				    "--report P1[,P2] ... [--sessions incr,full] [--wait-ms MS] [--log FILE]";
	const char *listen_at = NULL, *secret = NULL, *colon;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct sk_conf_err cerr;
	char host[64], ebuf[256];
	int o, lfd, one = 1, bad = 0;

	parse_sessions("incr,full");
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'l': listen_at = optarg; break;
		case 's': secret = optarg; break;
		case 'r': add_report(optarg); break;
		case 'n': parse_sessions(optarg); break;
		case 'w': wait_ms = atoi(optarg); break;
		case 'o':
			if (!(oplog = fopen(optarg, "w")))
				die("--log: cannot write there");
			setvbuf(oplog, NULL, _IOLBF, 0);
			break;
		default: die(usage);
		}
	}
	if (!listen_at || !secret || !(colon = strrchr(listen_at, ':')) ||
	    (size_t)(colon - listen_at) >= sizeof(host) || wait_ms <= 0)
		die(usage);
	memcpy(host, listen_at, (size_t)(colon - listen_at));
	host[colon - listen_at] = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		die("--listen: not an IPv4 address");
	memset(&cerr, 0, sizeof(cerr));
	if (sk_conf_load_secret(secret, &master, &cerr) < 0) {
		fprintf(stderr, "evilsecondary: secret: %s\n", sk_conf_err_str(&cerr, ebuf, sizeof(ebuf)));
		return 2;
	}
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4) < 0)
		die("cannot listen there");
	printf("listening\n");
	fflush(stdout);
	for (int k = 1; k <= n_sessions; k++) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		uint64_t t0 = sk_now_us();
		int fd;

		if (poll(&p, 1, wait_ms) <= 0 || (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
			printf("session %d: the primary did not dial within %d ms\n", k, wait_ms);
			return 1;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (session(fd, k) < 0)
			bad = 1;
		else
			printf("session %d took %llu ms\n", k,
			       (unsigned long long)(sk_now_us() - t0) / 1000);
		fflush(stdout);
		close(fd);
	}
	close(lfd);
	return bad;
}
