/* frameforge: sends forged, corrupted, truncated and replayed replication frames to a secondary skfused. */
/*
 * Why: invariant 6/7 — a frame that fails authentication or parsing is dropped,
 * counted and never applied. Each case opens its own TCP connection, does
 * whatever the attacker can (with or without the cluster secret), and then
 * watches whether the secondary closes the connection. Payloads are encoded by
 * hand from the layout in libsk/replmsg.h (not with its encoder), so the tool
 * does not share the code it attacks; the "control" case proves that frames
 * built this way are otherwise well formed (they are applied and acked).
 *
 *   frameforge --to IP:PORT --secret FILE --case NAME [--module N] [--node N]
 *              [--path P] [--wait-ms MS] [--gen N] [--conns N] [--plain]
 *
 * --plain: this side is MAC-only ("encrypt": false), as a secondary started with --no-encrypt wants.
 *
 * Cases (all but control must end with the secondary closing the connection):
 *   control       valid handshake, START, MKDIR P, RMDIR P: both must be acked without error
 *   garbage       random bytes, no handshake
 *   wrongkey      handshake sealed with a different secret
 *   hs-truncated  half a HELLO, then EOF
 *   silent        connect and send nothing (must be dropped by the handshake timeout)
 *   flood         keep --conns N silent connections open for --wait-ms (reopening any the secondary
 *                 closes): a load generator, always exits 0; the test checks that a genuine
 *                 primary can still (re)connect meanwhile
 *   badversion    after the handshake, a header with the next protocol version
 *   badtype       after the handshake, a sealed frame of type 200 (no such type)
 *   unknown-type  after the handshake, a sealed frame of type 62 (replication range, undefined)
 *   oversized     after the handshake, a header announcing SK_PROTO_MAX_PAYLOAD + 1 bytes
 *   flip          START, then MKDIR P with one payload bit flipped after sealing
 *   flipmac       START, then MKDIR P with one MAC bit flipped
 *   truncated     START, then the first half of MKDIR P, then EOF
 *   replay-seq    START, then the same START bytes again (seq not newer)
 *   replay-conn   MKDIR P sealed on connection 1 (never sent there), sent on connection 2
 *   seq-gap       START, then MKDIR P sealed with seq 3 (seq 2 "deleted on the path")
 *   replay-hello  the HELLO, FIN and START of a recorded genuine session replayed on a new
 *                 connection (what anyone on the path can do without the secret); the
 *                 secondary answers the HELLO but must refuse the stale FIN and close
 *   replay-hello-silent  the recorded HELLO, then nothing: closed within the handshake bound
 *   mismatch      handshake with the opposite encryption setting of --plain: must fail with
 *                 "encryption setting differs" (-EPROTO) on this side too
 *   badpath       START, then MKDIR "../<P>" properly sealed (path escapes the root)
 *   abspath       START, then MKDIR "/tmp/<P>" properly sealed
 *   wrongmodule   handshake and START for module id N+1
 * Prints one line per case; exit 0 if the secondary behaved as expected, 1 if not, 2 on usage/setup errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "proto.h"

/* Replication message numbers and layout from libsk/replmsg.h (v1), restated on purpose. */
enum { M_START = 16, M_ACK = 17, M_MKDIR = 27, M_RMDIR = 32 };
#define OP_HDR 128

static const char *to_addr, *secret_path, *case_name, *probe = "forge-probe";
static uint32_t module_id = 1, node_id = 99;
static int wait_ms = 3000;
static int conns = 32;
static uint32_t plain; /* SK_CHAN_F_PLAIN with --plain */
static uint64_t gen;
static struct sockaddr_in peer;
static struct sk_key master;

static void die(const char *msg)
{
	fprintf(stderr, "frameforge: %s\n", msg);
	exit(2);
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static int tcp_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0)
		die("socket");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&peer, sizeof(peer)) < 0) {
		fprintf(stderr, "frameforge: connect %s: %s\n", to_addr, strerror(errno));
		exit(2);
	}
	return fd;
}

static int send_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Wait until the peer closes (EOF or reset). Anything it sends meanwhile is read and
 * discarded. Returns the ms it took, or -1 if the connection was still open at the deadline.
 */
static long wait_closed(int fd)
{
	long t0 = now_ms(), deadline = t0 + wait_ms;
	uint8_t buf[4096];
	for (;;) {
		long left = deadline - now_ms();
		if (left <= 0)
			return -1;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = poll(&pfd, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return -1;
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
			return now_ms() - t0;
	}
}

/* An operation payload: the 128-byte fixed part and path1 (replmsg.h layout v1). */
static size_t op_encode(uint8_t *out, uint64_t fh, uint32_t mode, uint32_t flags, const char *path1)
{
	size_t plen = path1 ? strlen(path1) : 0;
	memset(out, 0, OP_HDR);
	sk_put_u64(out + 0, fh);
	sk_put_u32(out + 48, mode);
	sk_put_u32(out + 52, 0);  /* uid root */
	sk_put_u32(out + 56, 0);  /* gid root */
	sk_put_u32(out + 60, flags);
	sk_put_u16(out + 116, (uint16_t)plen);
	if (plen)
		memcpy(out + OP_HDR, path1, plen);
	return OP_HDR + plen;
}

/* Seal one frame into buf; returns its length. */
static size_t seal(struct sk_chan *c, uint8_t *buf, size_t cap, uint8_t type, uint32_t module,
		   const uint8_t *payload, size_t len)
{
	long n = sk_chan_encode(c, buf, cap, type, 0, module, payload, len);
	if (n < 0)
		die("sk_chan_encode failed");
	return (size_t)n;
}

static int handshake(int fd, const struct sk_key *key, uint32_t module, struct sk_chan *c)
{
	uint32_t peer_node = 0;
	memset(c, 0, sizeof(*c));
	return sk_chan_connect_fd(fd, key, SK_CHAN_REPL | plain, node_id, module, c, &peer_node, wait_ms);
}

/* Connect, handshake and send START; dies if the secondary does not accept a genuine session. */
static int session(struct sk_chan *c, uint32_t module)
{
	uint8_t p[OP_HDR], f[OP_HDR + 64];
	int fd = tcp_connect();
	int rc = handshake(fd, &master, module, c);
	if (rc < 0) {
		printf("case %s: genuine handshake failed: %s\n", case_name, sk_chan_strerror(rc));
		exit(1);
	}
	size_t n = op_encode(p, gen, 0, 0 /* sync */, NULL);
	size_t fl = seal(c, f, sizeof(f), M_START, module, p, n);
	if (send_all(fd, f, fl) < 0) {
		printf("case %s: START not accepted (connection closed)\n", case_name);
		exit(1);
	}
	return fd;
}

/* Wait for an ACK frame whose applied >= seq; returns its err (0 ok), or -1 on close/timeout/bad frame. */
static int wait_ack(int fd, struct sk_chan *c, uint64_t seq)
{
	static uint8_t buf[SK_PROTO_MAX_FRAME];
	long deadline = now_ms() + wait_ms;
	while (now_ms() < deadline) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, (int)(deadline - now_ms())) <= 0)
			return -1;
		struct sk_frame f;
		enum sk_reject why;
		int rc = sk_chan_recv_fd(c, fd, buf, sizeof(buf), &f, &why);
		if (rc < 0) {
			printf("case %s: reading ack: %s (%s)\n", case_name, strerror(-rc), sk_reject_str(why));
			return -1;
		}
		if (f.type != M_ACK || f.len < 20)
			continue;
		uint64_t applied = sk_get_u64(f.payload);
		uint64_t err_seq = sk_get_u64(f.payload + 8);
		int32_t err = (int32_t)sk_get_u32(f.payload + 16);
		if (err && err_seq <= seq)
			return err;
		if (applied >= seq)
			return 0;
	}
	return -1;
}

static int expect_closed(int fd, const char *what)
{
	long ms = wait_closed(fd);
	close(fd);
	if (ms < 0) {
		printf("case %s: %s -> connection still open after %d ms (NOT refused)\n", case_name, what,
		       wait_ms);
		return 1;
	}
	printf("case %s: %s -> refused, connection closed after %ld ms\n", case_name, what, ms);
	return 0;
}

/*
 * What an on-path recorder holds after watching one genuine connection: its
 * HELLO, FIN and first frame. Made here against an in-process server with the
 * secret (the bytes are the same as a recording's); the attacker then replays
 * them on a connection of its own, never using the key again.
 */
static int replay_hello(int with_fin)
{
	static uint8_t start[OP_HDR + 64 + SK_PROTO_HDR_LEN + SK_PROTO_MAC_LEN];
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN], fin[SK_HS_FRAME_LEN], p[OP_HDR];
	struct sk_hs hc, hs;
	struct sk_chan cc;
	enum sk_reject why;
	long hl, al, finl;
	size_t sl;
	int fd;

	hl = sk_hs_client_hello(&hc, &master, SK_CHAN_REPL | plain, node_id, module_id, hello);
	al = sk_hs_server_reply(&hs, &master, SK_CHAN_REPL | plain, 2, hello, (size_t)hl, ack, &why);
	finl = al > 0 ? sk_hs_client_finish(&hc, ack, (size_t)al, fin, &cc, &why) : -1;
	if (finl < 0)
		die("cannot make the recorded session");
	sl = seal(&cc, start, sizeof(start), M_START, module_id, p, op_encode(p, gen, 0, 0, NULL));

	fd = tcp_connect();
	if (send_all(fd, hello, (size_t)hl) < 0)
		return expect_closed(fd, "recorded HELLO");
	/* the secondary answers any HELLO with a valid MAC; that alone must give nothing */
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t got = poll(&pfd, 1, wait_ms) == 1 ? recv(fd, ack, sizeof(ack), MSG_WAITALL) : -1;
	printf("case %s: recorded HELLO answered with %zd bytes\n", case_name, got);
	if (!with_fin)
		return expect_closed(fd, "recorded HELLO, then silence (must end within the handshake bound)");
	send_all(fd, fin, (size_t)finl);
	send_all(fd, start, sl);
	return expect_closed(fd, "recorded HELLO, FIN and START replayed");
}

static int run_case(void)
{
	static uint8_t f[SK_PROTO_MAX_FRAME];
	uint8_t p[OP_HDR + 4096];
	char path[512];
	struct sk_chan c;
	size_t n, fl;
	int fd;

	if (!strcmp(case_name, "control")) {
		fd = session(&c, module_id);
		n = op_encode(p, 0, 0755, 0, probe);
		fl = seal(&c, f, sizeof(f), M_MKDIR, module_id, p, n);
		uint64_t s1 = c.tx_seq;
		if (send_all(fd, f, fl) < 0 || wait_ack(fd, &c, s1) != 0) {
			printf("case control: MKDIR %s not acked\n", probe);
			return 1;
		}
		n = op_encode(p, 0, 0, 0, probe);
		fl = seal(&c, f, sizeof(f), M_RMDIR, module_id, p, n);
		uint64_t s2 = c.tx_seq;
		if (send_all(fd, f, fl) < 0 || wait_ack(fd, &c, s2) != 0) {
			printf("case control: RMDIR %s not acked\n", probe);
			return 1;
		}
		close(fd);
		printf("case control: genuine MKDIR+RMDIR %s acked (seq %llu, %llu)\n", probe,
		       (unsigned long long)s1, (unsigned long long)s2);
		return 0;
	}
	if (!strcmp(case_name, "garbage")) {
		fd = tcp_connect();
		srand((unsigned)time(NULL));
		for (int i = 0; i < 256; i++)
			f[i] = (uint8_t)rand();
		send_all(fd, f, 256);
		return expect_closed(fd, "256 random bytes");
	}
	if (!strcmp(case_name, "wrongkey")) {
		struct sk_key bad;
		const char other[] = "this is not the cluster secret at all";
		sk_proto_master_key(&bad, other, sizeof(other) - 1);
		fd = tcp_connect();
		int rc = handshake(fd, &bad, module_id, &c);
		if (rc == 0) {
			printf("case wrongkey: handshake with a wrong key SUCCEEDED\n");
			close(fd);
			return 1;
		}
		printf("case wrongkey: handshake refused (%s)\n", sk_chan_strerror(rc));
		return expect_closed(fd, "HELLO under a wrong key");
	}
	if (!strcmp(case_name, "silent")) {
		fd = tcp_connect();
		return expect_closed(fd, "connected, sent nothing");
	}
	if (!strcmp(case_name, "flood")) {
		int fds[1024];
		long end = now_ms() + wait_ms, reopened = 0;
		for (int i = 0; i < conns; i++)
			fds[i] = tcp_connect();
		while (now_ms() < end) {
			struct pollfd pf[1024];
			for (int i = 0; i < conns; i++)
				pf[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
			if (poll(pf, (nfds_t)conns, 10) <= 0)
				continue;
			for (int i = 0; i < conns; i++) {
				if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				close(fds[i]); /* closed by the secondary (or it sent something): take the slot again */
				fds[i] = tcp_connect();
				reopened++;
			}
		}
		for (int i = 0; i < conns; i++)
			close(fds[i]);
		printf("case flood: held %d silent connections for %d ms, reopened %ld\n", conns, wait_ms, reopened);
		return 0;
	}
	if (!strcmp(case_name, "hs-truncated")) {
		struct sk_hs hs;
		long hl = sk_hs_client_hello(&hs, &master, SK_CHAN_REPL, node_id, module_id, f);
		fd = tcp_connect();
		send_all(fd, f, (size_t)hl / 2);
		shutdown(fd, SHUT_WR);
		return expect_closed(fd, "half a HELLO then EOF");
	}
	if (!strcmp(case_name, "wrongmodule")) {
		fd = tcp_connect();
		if (handshake(fd, &master, module_id + 1, &c) < 0)
			return expect_closed(fd, "handshake for another module refused");
		n = op_encode(p, gen, 0, 0, NULL);
		fl = seal(&c, f, sizeof(f), M_START, module_id + 1, p, n);
		send_all(fd, f, fl);
		n = op_encode(p, 0, 0755, 0, probe);
		fl = seal(&c, f, sizeof(f), M_MKDIR, module_id + 1, p, n);
		send_all(fd, f, fl);
		return expect_closed(fd, "session for another module id");
	}
	if (!strcmp(case_name, "replay-hello") || !strcmp(case_name, "replay-hello-silent"))
		return replay_hello(!strcmp(case_name, "replay-hello"));
	if (!strcmp(case_name, "mismatch")) {
		fd = tcp_connect();
		int rc = sk_chan_connect_fd(fd, &master, SK_CHAN_REPL | (plain ^ SK_CHAN_F_PLAIN), node_id,
					    module_id, &c, NULL, wait_ms);
		if (rc != -EPROTO) {
			printf("case mismatch: handshake %s, want the encryption mismatch refused (-EPROTO)\n",
			       rc == 0 ? "SUCCEEDED" : sk_chan_strerror(rc));
			close(fd);
			return 1;
		}
		printf("case mismatch: %s\n", sk_chan_strerror(rc));
		return expect_closed(fd, plain ? "encrypted HELLO to a MAC-only secondary"
					       : "MAC-only HELLO to an encrypted secondary");
	}
	if (!strcmp(case_name, "replay-conn")) {
		struct sk_chan c1;
		int fd1 = session(&c1, module_id);
		n = op_encode(p, 0, 0755, 0, probe);
		fl = seal(&c1, f, sizeof(f), M_MKDIR, module_id, p, n); /* sealed for connection 1 */
		close(fd1);
		fd = session(&c, module_id);
		/* Connection 2 is at the same seq, so only the keys differ. */
		send_all(fd, f, fl);
		return expect_closed(fd, "MKDIR sealed for another connection");
	}

	/* The rest start with a genuine session. */
	fd = session(&c, module_id);
	if (!strcmp(case_name, "badversion") || !strcmp(case_name, "oversized")) {
		n = op_encode(p, 0, 0755, 0, probe);
		fl = seal(&c, f, sizeof(f), M_MKDIR, module_id, p, n);
		if (case_name[0] == 'b')
			f[4] = SK_PROTO_VERSION + 1;
		else
			sk_put_u32(f + 20, SK_PROTO_MAX_PAYLOAD + 1);
		send_all(fd, f, fl);
		return expect_closed(fd, case_name[0] == 'b' ? "header of the next version" : "length over the bound");
	}
	if (!strcmp(case_name, "badtype") || !strcmp(case_name, "unknown-type")) {
		n = op_encode(p, 0, 0755, 0, probe);
		fl = seal(&c, f, sizeof(f), case_name[0] == 'b' ? 200 : 62, module_id, p, n);
		send_all(fd, f, fl);
		return expect_closed(fd, case_name[0] == 'b' ? "sealed frame of type 200" : "sealed frame of type 62");
	}
	if (!strcmp(case_name, "flip") || !strcmp(case_name, "flipmac")) {
		n = op_encode(p, 0, 0755, 0, probe);
		fl = seal(&c, f, sizeof(f), M_MKDIR, module_id, p, n);
		if (case_name[4] == 'm')
			f[fl - 3] ^= 0x10;
		else
			f[SK_PROTO_HDR_LEN + OP_HDR] ^= 0x01; /* first byte of the path */
		send_all(fd, f, fl);
		return expect_closed(fd, case_name[4] == 'm' ? "MKDIR with a MAC bit flipped"
							     : "MKDIR with a payload bit flipped");
	}
	if (!strcmp(case_name, "truncated")) {
		n = op_encode(p, 0, 0755, 0, probe);
		fl = seal(&c, f, sizeof(f), M_MKDIR, module_id, p, n);
		send_all(fd, f, fl / 2);
		shutdown(fd, SHUT_WR);
		return expect_closed(fd, "first half of a MKDIR frame then EOF");
	}
	if (!strcmp(case_name, "seq-gap")) {
		n = op_encode(p, 0, 0755, 0, probe);
		c.tx_seq++; /* seq 2 never sent */
		fl = seal(&c, f, sizeof(f), M_MKDIR, module_id, p, n);
		send_all(fd, f, fl);
		/* an ack covering it means it was applied, even if the connection closes later */
		if (wait_ack(fd, &c, c.tx_seq) == 0) {
			printf("case seq-gap: MKDIR with seq 3 after seq 1 was APPLIED and acked\n");
			close(fd);
			return 1;
		}
		return expect_closed(fd, "MKDIR with seq 3 after seq 1 (a frame missing)");
	}
	if (!strcmp(case_name, "replay-seq")) {
		/* START again, byte for byte: valid MAC, stale seq. */
		n = op_encode(p, gen, 0, 0, NULL);
		c.tx_seq--;
		fl = seal(&c, f, sizeof(f), M_START, module_id, p, n);
		send_all(fd, f, fl);
		return expect_closed(fd, "the START frame replayed");
	}
	if (!strcmp(case_name, "badpath") || !strcmp(case_name, "abspath")) {
		snprintf(path, sizeof(path), case_name[0] == 'b' ? "../%s" : "/tmp/%s", probe);
		n = op_encode(p, 0, 0755, 0, path);
		fl = seal(&c, f, sizeof(f), M_MKDIR, module_id, p, n);
		send_all(fd, f, fl);
		return expect_closed(fd, case_name[0] == 'b' ? "MKDIR ../ (escapes the root)" : "MKDIR absolute path");
	}
	close(fd);
	die("unknown case");
	return 2;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "to", 1, 0, 't' },   { "secret", 1, 0, 's' },  { "case", 1, 0, 'c' },
		{ "module", 1, 0, 'm' }, { "node", 1, 0, 'n' }, { "path", 1, 0, 'p' },
		{ "wait-ms", 1, 0, 'w' }, { "gen", 1, 0, 'g' },  { "conns", 1, 0, 'C' },
		{ "plain", 0, 0, 'P' },
		{ 0, 0, 0, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 't': to_addr = optarg; break;
		case 's': secret_path = optarg; break;
		case 'c': case_name = optarg; break;
		case 'm': module_id = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'n': node_id = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'p': probe = optarg; break;
		case 'w': wait_ms = atoi(optarg); break;
		case 'g': gen = strtoull(optarg, NULL, 0); break;
		case 'P': plain = SK_CHAN_F_PLAIN; break;
		case 'C':
			conns = atoi(optarg);
			if (conns < 1 || conns > 1024)
				die("--conns 1..1024");
			break;
		default: die("usage: frameforge --to IP:PORT --secret FILE --case NAME [--module N] [--path P]");
		}
	}
	if (!to_addr || !secret_path || !case_name)
		die("usage: frameforge --to IP:PORT --secret FILE --case NAME [--module N] [--path P]");

	char host[64];
	const char *colon = strrchr(to_addr, ':');
	if (!colon || (size_t)(colon - to_addr) >= sizeof(host))
		die("--to wants IP:PORT");
	memcpy(host, to_addr, (size_t)(colon - to_addr));
	host[colon - to_addr] = 0;
	peer.sin_family = AF_INET;
	peer.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &peer.sin_addr) != 1)
		die("--to wants an IPv4 address");

	/* The same loader as the daemons, so the same file means the same key. */
	struct sk_conf_err err;
	memset(&err, 0, sizeof(err));
	if (sk_conf_load_secret(secret_path, &master, &err) < 0) {
		fprintf(stderr, "frameforge: secret %s: %s\n", secret_path, err.msg);
		exit(2);
	}
	return run_case();
}
