/* test/unit/test_proto.c: the wire format — round trips, every rejection path, replay and bounds. */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto.h"

static const char secret[] = "correct horse battery staple, 32b";

static struct sk_key master(void)
{
	struct sk_key k;

	cr_assert_eq(sk_proto_master_key(&k, secret, sizeof(secret) - 1), 0);
	return k;
}

/* A connected pair of channels built through the real handshake. */
static void pair(struct sk_chan *cli, struct sk_chan *srv)
{
	struct sk_key m = master();
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN];
	struct sk_hs hc, hsrv;
	enum sk_reject why;
	long n, a;

	n = sk_hs_client_hello(&hc, &m, SK_CHAN_TEST, 1, 7, hello);
	cr_assert_gt(n, 0);
	a = sk_hs_server_reply(&hsrv, &m, SK_CHAN_TEST, 2, hello, (size_t)n, ack, srv, &why);
	cr_assert_gt(a, 0, "server refused hello: %s", sk_reject_str(why));
	cr_assert_eq(hsrv.peer_node, 1);
	cr_assert_eq(hsrv.module, 7);
	cr_assert_eq(sk_hs_client_finish(&hc, ack, (size_t)a, cli, &why), 0);
	cr_assert_eq(hc.peer_node, 2);
}

static long frame(struct sk_chan *c, uint8_t *buf, size_t cap, uint8_t type, const char *text)
{
	return sk_chan_encode(c, buf, cap, type, 0, 7, text, strlen(text));
}

Test(proto, master_key_needs_long_secret)
{
	struct sk_key k;

	cr_assert_eq(sk_proto_master_key(&k, "short", 5), -EINVAL);
	cr_assert_eq(sk_proto_master_key(&k, secret, SK_PROTO_SECRET_MIN - 1), -EINVAL);
	cr_assert_eq(sk_proto_master_key(&k, secret, SK_PROTO_SECRET_MIN), 0);
}

Test(proto, master_key_is_deterministic_and_secret_dependent)
{
	struct sk_key a, b, c;

	sk_proto_master_key(&a, secret, sizeof(secret) - 1);
	sk_proto_master_key(&b, secret, sizeof(secret) - 1);
	sk_proto_master_key(&c, "another secret of enough length", 31);
	cr_assert_arr_eq(a.b, b.b, sizeof(a.b));
	cr_assert(memcmp(a.b, c.b, sizeof(a.b)) != 0);
}

Test(proto, round_trip_both_directions)
{
	struct sk_chan cli, srv;
	uint8_t buf[256];
	struct sk_frame f;
	enum sk_reject why;
	long n, m;

	pair(&cli, &srv);
	n = frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "hello replica");
	cr_assert_eq(n, SK_PROTO_HDR_LEN + 13 + SK_PROTO_MAC_LEN);
	m = sk_chan_open(&srv, buf, (size_t)n, &f, &why);
	cr_assert_eq(m, n, "refused: %s", sk_reject_str(why));
	cr_assert_eq(f.type, SK_MSG_REPL_FIRST);
	cr_assert_eq(f.module, 7);
	cr_assert_eq(f.seq, 1);
	cr_assert_eq(f.len, 13);
	cr_assert_arr_eq(f.payload, "hello replica", 13);

	n = frame(&srv, buf, sizeof(buf), SK_MSG_REPL_FIRST + 1, "ack");
	cr_assert_eq(sk_chan_open(&cli, buf, (size_t)n, &f, &why), n);
	cr_assert_eq(f.seq, 1);
	cr_assert_eq(cli.frames_in, 1);
	cr_assert_eq(srv.frames_in, 1);
}

Test(proto, empty_payload)
{
	struct sk_chan cli, srv;
	uint8_t buf[64];
	struct sk_frame f;
	enum sk_reject why;
	long n;

	pair(&cli, &srv);
	n = sk_chan_encode(&cli, buf, sizeof(buf), SK_MSG_CLOSE, 0, 0, NULL, 0);
	cr_assert_eq(n, SK_PROTO_HDR_LEN + SK_PROTO_MAC_LEN);
	cr_assert_eq(sk_chan_open(&srv, buf, (size_t)n, &f, &why), n);
	cr_assert_eq(f.len, 0);
}

Test(proto, seal_iov_matches_encode)
{
	struct sk_chan cli, srv;
	uint8_t hdr[SK_PROTO_HDR_LEN], mac[SK_PROTO_MAC_LEN], buf[128];
	struct iovec iov[3] = { { "abc", 3 }, { "", 0 }, { "defgh", 5 } };
	struct sk_frame f;
	enum sk_reject why;

	pair(&cli, &srv);
	cr_assert_eq(sk_chan_seal(&cli, hdr, mac, SK_MSG_AGENT_FIRST, 3, 9, iov, 3), 0);
	memcpy(buf, hdr, sizeof(hdr));
	memcpy(buf + SK_PROTO_HDR_LEN, "abcdefgh", 8);
	memcpy(buf + SK_PROTO_HDR_LEN + 8, mac, sizeof(mac));
	cr_assert_eq(sk_chan_open(&srv, buf, SK_PROTO_HDR_LEN + 8 + SK_PROTO_MAC_LEN, &f, &why),
		     SK_PROTO_HDR_LEN + 8 + SK_PROTO_MAC_LEN);
	cr_assert_eq(f.flags, 3);
	cr_assert_eq(f.module, 9);
	cr_assert_arr_eq(f.payload, "abcdefgh", 8);
}

Test(proto, partial_frame_needs_more)
{
	struct sk_chan cli, srv;
	uint8_t buf[128];
	struct sk_frame f;
	enum sk_reject why;
	long n;
	size_t i;

	pair(&cli, &srv);
	n = frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "0123456789");
	for (i = 0; i < (size_t)n; i++)
		cr_assert_eq(sk_chan_open(&srv, buf, i, &f, &why), 0, "prefix %zu", i);
	cr_assert_eq(srv.rx_seq, 0);
	cr_assert_eq(sk_chan_open(&srv, buf, (size_t)n, &f, &why), n);
}

static void expect_reject(struct sk_chan *srv, uint8_t *buf, size_t n, enum sk_reject want)
{
	struct sk_frame f;
	enum sk_reject why;
	uint64_t before = srv->rejected[want], seq = srv->rx_seq;

	cr_assert_eq(sk_chan_open(srv, buf, n, &f, &why), -EBADMSG);
	cr_assert_eq(why, want, "got '%s', wanted '%s'", sk_reject_str(why), sk_reject_str(want));
	cr_assert_eq(srv->rejected[want], before + 1, "rejection not counted");
	cr_assert_eq(srv->rx_seq, seq, "a refused frame moved the sequence");
}

Test(proto, reject_bad_magic)
{
	struct sk_chan cli, srv;
	uint8_t buf[128];
	long n;

	pair(&cli, &srv);
	n = frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "x");
	buf[0] ^= 0xff;
	expect_reject(&srv, buf, (size_t)n, SK_REJ_MAGIC);
}

Test(proto, reject_bad_version)
{
	struct sk_chan cli, srv;
	uint8_t buf[128];
	long n;

	pair(&cli, &srv);
	n = frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "x");
	buf[4] = 2;
	expect_reject(&srv, buf, (size_t)n, SK_REJ_VERSION);
}

Test(proto, reject_unknown_types)
{
	static const uint8_t bad[] = { 0, 4, 15, 128, 200, 255 };
	struct sk_chan cli, srv;
	uint8_t buf[128];
	size_t i;

	pair(&cli, &srv);
	for (i = 0; i < sizeof(bad); i++) {
		long n = frame(&cli, buf, sizeof(buf), bad[i], "x");
		expect_reject(&srv, buf, (size_t)n, SK_REJ_TYPE);
	}
}

Test(proto, reject_oversized_length_before_reading_it)
{
	struct sk_chan cli, srv;
	uint8_t buf[128];

	pair(&cli, &srv);
	frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "x");
	sk_put_u32(buf + 20, SK_PROTO_MAX_PAYLOAD + 1);
	/* Only the header is there: the length alone must be enough to refuse. */
	expect_reject(&srv, buf, SK_PROTO_HDR_LEN, SK_REJ_LENGTH);
	sk_put_u32(buf + 20, 0xffffffffu);
	expect_reject(&srv, buf, SK_PROTO_HDR_LEN, SK_REJ_LENGTH);
}

Test(proto, encode_refuses_oversized_payload)
{
	struct sk_chan cli, srv;
	static uint8_t big[SK_PROTO_MAX_FRAME + 64];
	uint8_t hdr[SK_PROTO_HDR_LEN], mac[SK_PROTO_MAC_LEN];
	struct iovec iov = { big, SK_PROTO_MAX_PAYLOAD + 1 };

	pair(&cli, &srv);
	cr_assert_eq(sk_chan_seal(&cli, hdr, mac, SK_MSG_REPL_FIRST, 0, 0, &iov, 1), -EMSGSIZE);
	cr_assert_eq(sk_chan_encode(&cli, big, sizeof(big), SK_MSG_REPL_FIRST, 0, 0, big,
				    SK_PROTO_MAX_PAYLOAD + 1), -EMSGSIZE);
	cr_assert_eq(sk_chan_encode(&cli, big, 10, SK_MSG_REPL_FIRST, 0, 0, "abc", 3), -ENOSPC);
	cr_assert_eq(cli.tx_seq, 0, "refused frames must not consume a sequence number");
}

Test(proto, max_payload_round_trip)
{
	struct sk_chan cli, srv;
	static uint8_t buf[SK_PROTO_MAX_FRAME], payload[SK_PROTO_MAX_PAYLOAD];
	struct sk_frame f;
	enum sk_reject why;
	long n;

	pair(&cli, &srv);
	memset(payload, 0xa5, sizeof(payload));
	n = sk_chan_encode(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, 0, 1, payload, sizeof(payload));
	cr_assert_eq(n, SK_PROTO_MAX_FRAME);
	cr_assert_eq(sk_chan_open(&srv, buf, (size_t)n, &f, &why), n);
	cr_assert_eq(f.len, SK_PROTO_MAX_PAYLOAD);
}

Test(proto, reject_every_single_bit_flip)
{
	struct sk_chan cli, srv;
	uint8_t buf[128], orig[128];
	struct sk_frame f;
	enum sk_reject why;
	long n;
	size_t bit;

	pair(&cli, &srv);
	n = frame(&cli, orig, sizeof(orig), SK_MSG_REPL_FIRST, "payload!");
	for (bit = 0; bit < (size_t)n * 8; bit++) {
		memcpy(buf, orig, (size_t)n);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		/* Length bits may make the frame look incomplete (0) or too long; never accepted. */
		cr_assert_leq(sk_chan_open(&srv, buf, (size_t)n, &f, &why), 0, "bit %zu accepted", bit);
	}
	cr_assert_eq(srv.rx_seq, 0);
	cr_assert_eq(sk_chan_open(&srv, orig, (size_t)n, &f, &why), n);
}

Test(proto, reject_forged_with_wrong_secret)
{
	struct sk_chan cli, srv, evil_cli, evil_srv;
	struct sk_key other;
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN], buf[128];
	struct sk_hs h1, h2;
	enum sk_reject why;
	long n;

	pair(&cli, &srv);
	sk_proto_master_key(&other, "a different secret entirely!!", 29);
	/* A whole handshake under the wrong secret yields keys the real server does not have. */
	n = sk_hs_client_hello(&h1, &other, SK_CHAN_TEST, 1, 7, hello);
	n = sk_hs_server_reply(&h2, &other, SK_CHAN_TEST, 2, hello, (size_t)n, ack, &evil_srv, &why);
	cr_assert_eq(sk_hs_client_finish(&h1, ack, (size_t)n, &evil_cli, &why), 0);
	evil_cli.tx_seq = 100;
	n = frame(&evil_cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "forged");
	expect_reject(&srv, buf, (size_t)n, SK_REJ_MAC);
}

Test(proto, reject_replay_and_reorder)
{
	struct sk_chan cli, srv;
	uint8_t f1[64], f2[64];
	struct sk_frame f;
	enum sk_reject why;
	long n1, n2;

	pair(&cli, &srv);
	n1 = frame(&cli, f1, sizeof(f1), SK_MSG_REPL_FIRST, "one");
	n2 = frame(&cli, f2, sizeof(f2), SK_MSG_REPL_FIRST, "two");
	cr_assert_eq(sk_chan_open(&srv, f2, (size_t)n2, &f, &why), n2);
	expect_reject(&srv, f1, (size_t)n1, SK_REJ_REPLAY); /* older */
	expect_reject(&srv, f2, (size_t)n2, SK_REJ_REPLAY); /* same again */
}

Test(proto, reject_frame_from_another_connection)
{
	struct sk_chan a_cli, a_srv, b_cli, b_srv;
	uint8_t buf[64];
	long n;

	pair(&a_cli, &a_srv);
	pair(&b_cli, &b_srv);
	n = frame(&a_cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "mine");
	expect_reject(&b_srv, buf, (size_t)n, SK_REJ_MAC);
}

Test(proto, reject_reflection_to_sender)
{
	struct sk_chan cli, srv;
	uint8_t buf[64];
	long n;

	pair(&cli, &srv);
	n = frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "echo");
	/* Sent by the client, fed back to the client: directions have different keys. */
	expect_reject(&cli, buf, (size_t)n, SK_REJ_MAC);
}

Test(proto, reject_handshake_frames_after_handshake)
{
	struct sk_chan cli, srv;
	uint8_t buf[128];
	long n;

	pair(&cli, &srv);
	n = sk_chan_encode(&cli, buf, sizeof(buf), SK_MSG_HELLO, 0, 0, "x", 1);
	expect_reject(&srv, buf, (size_t)n, SK_REJ_HANDSHAKE);
}

Test(proto, handshake_refuses_wrong_kind)
{
	struct sk_key m = master();
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN];
	struct sk_hs hc, hs;
	struct sk_chan srv;
	enum sk_reject why;
	long n;

	n = sk_hs_client_hello(&hc, &m, SK_CHAN_REPL, 1, 7, hello);
	cr_assert_eq(sk_hs_server_reply(&hs, &m, SK_CHAN_AGENT, 2, hello, (size_t)n, ack, &srv, &why),
		     -EBADMSG);
	cr_assert_eq(why, SK_REJ_HANDSHAKE);
}

Test(proto, handshake_refuses_wrong_secret_and_truncation)
{
	struct sk_key m = master(), other;
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN];
	struct sk_hs hc, hs;
	struct sk_chan srv;
	enum sk_reject why;
	long n;

	sk_proto_master_key(&other, "a different secret entirely!!", 29);
	n = sk_hs_client_hello(&hc, &other, SK_CHAN_TEST, 1, 7, hello);
	cr_assert_eq(sk_hs_server_reply(&hs, &m, SK_CHAN_TEST, 2, hello, (size_t)n, ack, &srv, &why),
		     -EBADMSG);
	cr_assert_eq(why, SK_REJ_MAC);
	n = sk_hs_client_hello(&hc, &m, SK_CHAN_TEST, 1, 7, hello);
	cr_assert_eq(sk_hs_server_reply(&hs, &m, SK_CHAN_TEST, 2, hello, (size_t)n - 1, ack, &srv,
					&why), -EBADMSG);
	cr_assert_eq(why, SK_REJ_LENGTH);
	cr_assert_eq(sk_hs_server_reply(&hs, &m, SK_CHAN_TEST, 2, hello, 3, ack, &srv, &why),
		     -EBADMSG);
}

Test(proto, handshake_refuses_stale_ack)
{
	struct sk_key m = master();
	uint8_t h1[SK_HS_FRAME_LEN], h2[SK_HS_FRAME_LEN], a1[SK_HS_FRAME_LEN], a2[SK_HS_FRAME_LEN];
	struct sk_hs c1, c2, s1, s2;
	struct sk_chan cc, sc;
	enum sk_reject why;
	long n1, n2, m1;

	n1 = sk_hs_client_hello(&c1, &m, SK_CHAN_TEST, 1, 7, h1);
	m1 = sk_hs_server_reply(&s1, &m, SK_CHAN_TEST, 2, h1, (size_t)n1, a1, &sc, &why);
	/* A second connection attempt must not accept the ACK recorded from the first. */
	n2 = sk_hs_client_hello(&c2, &m, SK_CHAN_TEST, 1, 7, h2);
	cr_assert_eq(sk_hs_client_finish(&c2, a1, (size_t)m1, &cc, &why), -EBADMSG);
	cr_assert_eq(why, SK_REJ_HANDSHAKE);
	cr_assert_gt(sk_hs_server_reply(&s2, &m, SK_CHAN_TEST, 2, h2, (size_t)n2, a2, &sc, &why), 0);
	/* A HELLO is not an ACK, even with a valid MAC. */
	cr_assert_eq(sk_hs_client_finish(&c2, h2, (size_t)n2, &cc, &why), -EBADMSG);
}

Test(proto, replayed_hello_gives_attacker_nothing)
{
	struct sk_chan cli, srv1, srv2;
	struct sk_key m = master();
	uint8_t hello[SK_HS_FRAME_LEN], a1[SK_HS_FRAME_LEN], a2[SK_HS_FRAME_LEN], buf[64];
	struct sk_hs hc, s1, s2;
	enum sk_reject why;
	long n, m1, fl;

	n = sk_hs_client_hello(&hc, &m, SK_CHAN_TEST, 1, 7, hello);
	m1 = sk_hs_server_reply(&s1, &m, SK_CHAN_TEST, 2, hello, (size_t)n, a1, &srv1, &why);
	cr_assert_eq(sk_hs_client_finish(&hc, a1, (size_t)m1, &cli, &why), 0);
	fl = frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "data");
	/* The recorded HELLO replayed gets a new server nonce: old frames do not verify. */
	cr_assert_gt(sk_hs_server_reply(&s2, &m, SK_CHAN_TEST, 2, hello, (size_t)n, a2, &srv2, &why), 0);
	expect_reject(&srv2, buf, (size_t)fl, SK_REJ_MAC);
}

Test(proto, fd_helpers_over_socketpair)
{
	struct sk_key m = master();
	struct sk_chan cli, srv;
	static uint8_t buf[SK_PROTO_MAX_FRAME];
	struct iovec iov[2] = { { "zero-", 5 }, { "copy", 4 } };
	uint32_t peer = 0, module = 0;
	struct sk_frame f;
	enum sk_reject why;
	int sv[2];
	pid_t pid;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		if (sk_chan_connect_fd(sv[1], &m, SK_CHAN_TEST, 5, 3, &cli, &peer, 2000) != 0)
			_exit(1);
		if (sk_chan_send_fd(&cli, sv[1], SK_MSG_REPL_FIRST, 0, 3, iov, 2) != 0)
			_exit(2);
		_exit(peer == 6 ? 0 : 3);
	}
	close(sv[1]);
	cr_assert_eq(sk_chan_accept_fd(sv[0], &m, SK_CHAN_TEST, 6, &srv, &peer, &module, 2000, &why), 0);
	cr_assert_eq(peer, 5);
	cr_assert_eq(module, 3);
	cr_assert_eq(sk_chan_recv_fd(&srv, sv[0], buf, sizeof(buf), &f, &why), 0);
	cr_assert_eq(f.len, 9);
	cr_assert_arr_eq(f.payload, "zero-copy", 9);
	cr_assert_eq(sk_chan_recv_fd(&srv, sv[0], buf, sizeof(buf), &f, &why), -ECONNRESET);
	close(sv[0]);
	int st;
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client side failed: %d", st);
}

Test(proto, accept_times_out_on_silent_peer)
{
	struct sk_key m = master();
	struct sk_chan srv;
	enum sk_reject why;
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(sk_chan_accept_fd(sv[0], &m, SK_CHAN_TEST, 6, &srv, NULL, NULL, 100, &why),
		     -ETIMEDOUT);
	close(sv[0]);
	close(sv[1]);
}

Test(proto, datagram_round_trip_replay_and_forgery)
{
	struct sk_key m = master(), d, other;
	uint8_t buf[128], copy[128];
	struct sk_frame f;
	enum sk_reject why;
	uint64_t last = 0;
	long n;

	sk_proto_derive(&d, &m, "dgram", NULL, 0);
	n = sk_dgram_seal(&d, buf, sizeof(buf), SK_MSG_HEARTBEAT, 0, 1000, "hb", 2);
	memcpy(copy, buf, (size_t)n);
	cr_assert_eq(sk_dgram_open(&d, buf, (size_t)n, &last, &f, &why), 0);
	cr_assert_eq(last, 1000);
	cr_assert_arr_eq(f.payload, "hb", 2);
	cr_assert_eq(sk_dgram_open(&d, copy, (size_t)n, &last, &f, &why), -EBADMSG);
	cr_assert_eq(why, SK_REJ_REPLAY);
	cr_assert_eq(sk_dgram_open(&d, buf, (size_t)n - 1, &last, &f, &why), -EBADMSG);
	cr_assert_eq(why, SK_REJ_LENGTH);
	sk_proto_derive(&other, &m, "another label", NULL, 0);
	n = sk_dgram_seal(&other, buf, sizeof(buf), SK_MSG_HEARTBEAT, 0, 2000, "hb", 2);
	cr_assert_eq(sk_dgram_open(&d, buf, (size_t)n, &last, &f, &why), -EBADMSG);
	cr_assert_eq(why, SK_REJ_MAC);
	cr_assert_eq(last, 1000);
}

Test(proto, bounded_reader_is_sticky)
{
	const uint8_t data[5] = { 0, 0, 0, 42, 9 };
	struct sk_rd r;

	sk_rd_init(&r, data, sizeof(data));
	cr_assert_eq(sk_rd_u32(&r), 42);
	cr_assert_eq(sk_rd_u16(&r), 0); /* only one byte left */
	cr_assert(r.err);
	cr_assert_eq(sk_rd_u8(&r), 0, "reads after an error must not resume");
	cr_assert_null(sk_rd_bytes(&r, 0));
}

Test(proto, reject_reasons_have_text)
{
	int i;

	for (i = 0; i < SK_REJ__COUNT; i++)
		cr_assert(strlen(sk_reject_str((enum sk_reject)i)) > 3);
	cr_assert_str_eq(sk_reject_str((enum sk_reject)99), "unknown reason");
}
