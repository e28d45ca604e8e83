/* test/unit/test_proto.c: the wire format — round trips in every mode, every rejection path, seq, handshake proofs, bounds. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

static const char secret[] = "correct horse battery staple, 32b";

/*
 * Channel and handshake tests need a master key, not Argon2id (~80 ms, far more
 * under a sanitizer on a loaded host, and Criterion runs every test in a fresh
 * process): they use fixed keys; the master_key_* tests derive for real.
 */
static struct sk_key master(void)
{
	struct sk_key k;

	memset(k.b, 0x4d, sizeof(k.b));
	return k;
}

static void other_master(struct sk_key *k)
{
	memset(k->b, 0x6f, sizeof(k->b));
}

/* The three modes a channel can be in, as handshake kind flags. */
static const uint32_t modes[] = { 0 /* AES-GCM where available */, SK_CHAN_F_CHACHA, SK_CHAN_F_PLAIN };
static const char *const mode_names[] = { "default", "chacha", "plain" };

/* A connected pair of channels built through the real three-message handshake. */
static void pair_mode(struct sk_chan *cli, struct sk_chan *srv, uint32_t flags)
{
	struct sk_key m = master();
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN], fin[SK_HS_FRAME_LEN];
	struct sk_hs hc, hsrv;
	enum sk_reject why;
	long n, a, f;

	n = sk_hs_client_hello(&hc, &m, SK_CHAN_TEST | flags, 1, 7, hello);
	cr_assert_eq(n, SK_HS_HELLO_LEN);
	a = sk_hs_server_reply(&hsrv, &m, SK_CHAN_TEST | flags, 2, hello, (size_t)n, ack, &why);
	cr_assert_eq(a, SK_HS_ACK_LEN, "server refused hello: %s", sk_reject_str(why));
	cr_assert_eq(hsrv.peer_node, 1);
	cr_assert_eq(hsrv.module, 7);
	f = sk_hs_client_finish(&hc, ack, (size_t)a, fin, cli, &why);
	cr_assert_eq(f, SK_HS_FIN_LEN, "client refused ack: %s", sk_reject_str(why));
	cr_assert_eq(hc.peer_node, 2);
	cr_assert_eq(sk_hs_server_finish(&hsrv, fin, (size_t)f, srv, &why), 0, "fin refused: %s",
		     sk_reject_str(why));
	cr_assert_eq(cli->aead, srv->aead);
}

static void pair(struct sk_chan *cli, struct sk_chan *srv)
{
	pair_mode(cli, srv, 0);
}

static long frame(struct sk_chan *c, uint8_t *buf, size_t cap, uint8_t type, const char *text)
{
	return sk_chan_encode(c, buf, cap, type, 0, 7, text, strlen(text));
}

static void expect_reject(struct sk_chan *srv, uint8_t *buf, size_t n, enum sk_reject want)
{
	struct sk_frame f;
	enum sk_reject why;
	uint64_t before = srv->rejected[want];

	cr_assert_eq(sk_chan_open(srv, buf, n, &f, &why), -EBADMSG);
	cr_assert_eq(why, want, "rejected as '%s', want '%s'", sk_reject_str(why), sk_reject_str(want));
	cr_assert_eq(srv->rejected[want], before + 1, "not counted");
}

/* ---- keys and secrets ---- */

Test(proto, master_key_needs_long_secret)
{
	struct sk_key k;

	cr_assert_eq(sk_proto_master_key(&k, "short", 5), -EINVAL);
	cr_assert_eq(sk_proto_master_key(&k, secret, SK_PROTO_SECRET_MIN - 1), -EINVAL);
	cr_assert_eq(sk_proto_master_key(&k, "k7#Qz!9wLp2@xV4m", SK_PROTO_SECRET_MIN), 0);
}

Test(proto, master_key_is_deterministic_and_secret_dependent)
{
	struct sk_key a, b, c;

	cr_assert_eq(sk_proto_master_key(&a, secret, sizeof(secret) - 1), 0);
	cr_assert_eq(sk_proto_master_key(&b, secret, sizeof(secret) - 1), 0);
	cr_assert_eq(sk_proto_master_key(&c, "a different secret entirely!!", 29), 0);
	cr_assert_arr_eq(a.b, b.b, sizeof(a.b));
	cr_assert(memcmp(a.b, c.b, sizeof(a.b)) != 0);
}

Test(proto, master_key_is_argon2id_with_fixed_salt)
{
	uint8_t salt[crypto_pwhash_SALTBYTES], want[32];
	static const char label[] = "SteadyKit master key v2";
	struct sk_key k;
	struct timespec t0, t1;
	long ms;

	cr_assert_eq(sk_proto_master_key(&k, secret, sizeof(secret) - 1), 0);

	/* A known construction, so another implementation can derive the same key. */
	crypto_generichash(salt, sizeof(salt), (const uint8_t *)label, sizeof(label) - 1, NULL, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(crypto_pwhash(want, sizeof(want), secret, sizeof(secret) - 1, salt, 2, 32u << 20,
				   crypto_pwhash_ALG_ARGON2ID13), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_arr_eq(k.b, want, sizeof(want));
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_log_info("Argon2id derivation took %ld ms", ms);
	cr_assert_gt(ms, 5, "the KDF is not slow at all (%ld ms)", ms);
}

/* Peak resident size of this process, in KiB (VmHWM). */
static long vm_hwm_kib(void)
{
	char line[128];
	long v = -1;
	FILE *fp = fopen("/proc/self/status", "re");

	while (fp && fgets(line, sizeof(line), fp))
		if (sscanf(line, "VmHWM: %ld kB", &v) == 1)
			break;
	if (fp)
		fclose(fp);
	return v;
}

Test(proto, master_key_memory_is_not_the_callers)
{
	struct sk_key k;
	long before, after;

	before = vm_hwm_kib();
	cr_assert_eq(sk_proto_master_key(&k, secret, sizeof(secret) - 1), 0);
	after = vm_hwm_kib();
	cr_assert(before > 0 && after > 0);
	/* Argon2id touches 32 MiB: that must happen in the child, not here */
	cr_assert_lt(after - before, 8 << 10, "peak RSS grew by %ld KiB during the derivation",
		     after - before);
}

Test(proto, weak_secrets_refused_strong_accepted)
{
	static const char *const weak[] = {
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",     /* one byte */
		"abcabcabcabcabcabcabcabcabcabcabcabc", /* pattern */
		"passwordpassword",                     /* pattern */
		"abcdefghijklmnopqrstuvwxyz012345",     /* runs */
		"0123456789abcdefghij",                 /* runs */
		"aabbaabbabababbbaaabbbabababaabba",    /* two symbols, no period */
		"112233112233123123321321",             /* three symbols */
		"short\n",                              /* short once trailing space is ignored */
	};
	static const char *const strong[] = {
		"correct horse battery staple, 32b",
		"k7#Qz!9wLp2@xV4m",
		"dGhpcyBpcyBhIHJhbmRvbSBrZXkgb2YgMzIgYnl0ZXMh\n", /* base64 of 32 bytes, with newline */
	};
	struct sk_key k;
	uint8_t rnd[32];

	for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++) {
		cr_assert_not_null(sk_proto_secret_weak(weak[i], strlen(weak[i])), "'%s' accepted", weak[i]);
		cr_assert_eq(sk_proto_master_key(&k, weak[i], strlen(weak[i])), -EINVAL);
	}
	for (size_t i = 0; i < sizeof(strong) / sizeof(strong[0]); i++)
		cr_assert_null(sk_proto_secret_weak(strong[i], strlen(strong[i])), "'%s' refused: %s",
			       strong[i], sk_proto_secret_weak(strong[i], strlen(strong[i])));
	/* what the advice says to use is always accepted */
	for (int i = 0; i < 1000; i++) {
		randombytes_buf(rnd, sizeof(rnd));
		cr_assert_null(sk_proto_secret_weak(rnd, sizeof(rnd)), "random key refused");
		randombytes_buf(rnd, 16);
		cr_assert_null(sk_proto_secret_weak(rnd, 16), "random 16-byte key refused");
	}
	cr_assert(strstr(SK_PROTO_SECRET_ADVICE, "head -c 32 /dev/urandom | base64"));
}

/* ---- channels in every mode ---- */

Test(proto, round_trip_both_directions_every_mode)
{
	for (int md = 0; md < 3; md++) {
		struct sk_chan cli, srv;
		uint8_t buf[256];
		struct sk_frame f;
		enum sk_reject why;
		long n, m;

		pair_mode(&cli, &srv, modes[md]);
		n = frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "hello replica");
		cr_assert_eq(n, SK_PROTO_HDR_LEN + 13 + SK_PROTO_MAC_LEN);
		cr_assert_eq(memmem(buf, (size_t)n, "hello replica", 13) == NULL, md != 2,
			     "%s: payload in clear is %s", mode_names[md], md == 2 ? "expected" : "a leak");
		m = sk_chan_open(&srv, buf, (size_t)n, &f, &why);
		cr_assert_eq(m, n, "%s refused: %s", mode_names[md], sk_reject_str(why));
		cr_assert_eq(f.type, SK_MSG_REPL_FIRST);
		cr_assert_eq(f.module, 7);
		cr_assert_eq(f.seq, 1);
		cr_assert_eq(f.len, 13);
		cr_assert_arr_eq(f.payload, "hello replica", 13);

		n = frame(&srv, buf, sizeof(buf), SK_MSG_REPL_FIRST + 1, "ack");
		cr_assert_eq(sk_chan_open(&cli, buf, (size_t)n, &f, &why), n);
		cr_assert_arr_eq(f.payload, "ack", 3);
	}
}

Test(proto, modes_negotiated)
{
	struct sk_chan cli, srv;

	pair_mode(&cli, &srv, SK_CHAN_F_PLAIN);
	cr_assert_eq(cli.aead, SK_AEAD_NONE);
	cr_assert_str_eq(sk_chan_aead_str(&cli), "mac-only");
	pair_mode(&cli, &srv, SK_CHAN_F_CHACHA);
	cr_assert_eq(cli.aead, SK_AEAD_CHACHA20);
	pair_mode(&cli, &srv, 0);
	cr_assert_eq(cli.aead, crypto_aead_aes256gcm_is_available() ? SK_AEAD_AES256GCM : SK_AEAD_CHACHA20);
}

Test(proto, chacha_when_only_one_side_offers_aes)
{
	struct sk_key m = master();
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN], fin[SK_HS_FRAME_LEN];
	struct sk_hs hc, hs;
	struct sk_chan cli, srv;
	enum sk_reject why;
	long n;

	n = sk_hs_client_hello(&hc, &m, SK_CHAN_TEST | SK_CHAN_F_CHACHA, 1, 7, hello);
	n = sk_hs_server_reply(&hs, &m, SK_CHAN_TEST, 2, hello, (size_t)n, ack, &why);
	n = sk_hs_client_finish(&hc, ack, (size_t)n, fin, &cli, &why);
	cr_assert_gt(n, 0);
	cr_assert_eq(sk_hs_server_finish(&hs, fin, (size_t)n, &srv, &why), 0);
	cr_assert_eq(srv.aead, SK_AEAD_CHACHA20);
	cr_assert_eq(cli.aead, SK_AEAD_CHACHA20);
}

Test(proto, empty_payload)
{
	for (int md = 0; md < 3; md++) {
		struct sk_chan cli, srv;
		uint8_t buf[64];
		struct sk_frame f;
		enum sk_reject why;
		long n;

		pair_mode(&cli, &srv, modes[md]);
		n = sk_chan_encode(&cli, buf, sizeof(buf), SK_MSG_CLOSE, 0, 0, NULL, 0);
		cr_assert_eq(n, SK_PROTO_HDR_LEN + SK_PROTO_MAC_LEN);
		cr_assert_eq(sk_chan_open(&srv, buf, (size_t)n, &f, &why), n);
		cr_assert_eq(f.type, SK_MSG_CLOSE);
	}
}

/*
 * The channel's AEAD is OpenSSL's; its frames are libsodium's AES-256-GCM and
 * ChaCha20-Poly1305 byte for byte (nonce 0^4 | seq, the header as associated
 * data, detached tag), so nodes of either build talk to each other: libsodium
 * opens what we seal, we open what libsodium seals, and a forgery is refused
 * with the payload zeroed rather than left decrypted.
 */
Test(proto, aead_frames_are_libsodiums)
{
	const enum sk_aead algs[] = { SK_AEAD_AES256GCM, SK_AEAD_CHACHA20 };
	struct sk_key k1, k2;

	memset(k1.b, 0x31, sizeof(k1.b));
	memset(k2.b, 0x32, sizeof(k2.b));
	for (size_t a = 0; a < sizeof(algs) / sizeof(algs[0]); a++) {
		int aes = algs[a] == SK_AEAD_AES256GCM;
		size_t lens[] = { 0, 1, 4096, 70000 };

		if (aes && !crypto_aead_aes256gcm_is_available())
			continue;
		for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
			size_t len = lens[li], total = SK_PROTO_HDR_LEN + len + SK_PROTO_MAC_LEN;
			uint8_t *buf = malloc(total), *pt = malloc(len + 1), *out = malloc(len + 1);
			uint8_t nonce[12] = { 0 };
			struct sk_chan tx, rx;
			struct sk_frame f;
			enum sk_reject why;
			int rc;

			cr_assert(buf && pt && out);
			for (size_t i = 0; i < len; i++)
				pt[i] = (uint8_t)(i * 7 + a);
			cr_assert_eq(sk_chan_init(&tx, &k1, &k2, algs[a]), 0);
			cr_assert_eq(sk_chan_init(&rx, &k2, &k1, algs[a]), 0);

			/* ours sealed, libsodium opens */
			cr_assert_eq(sk_chan_encode(&tx, buf, total, SK_MSG_CLOSE, 0, 3, pt, len), (long)total);
			memcpy(nonce + 4, buf + 12, 8); /* the header's seq, as the nonce carries it */
			rc = aes ? crypto_aead_aes256gcm_decrypt_detached(out, NULL, buf + SK_PROTO_HDR_LEN, len,
									  buf + SK_PROTO_HDR_LEN + len, buf,
									  SK_PROTO_HDR_LEN, nonce, k1.b)
				 : crypto_aead_chacha20poly1305_ietf_decrypt_detached(
					   out, NULL, buf + SK_PROTO_HDR_LEN, len, buf + SK_PROTO_HDR_LEN + len, buf,
					   SK_PROTO_HDR_LEN, nonce, k1.b);
			cr_assert_eq(rc, 0, "libsodium refused our %s frame of %zu bytes", sk_chan_aead_str(&tx), len);
			cr_assert(len == 0 || memcmp(out, pt, len) == 0);

			/* libsodium sealed with the key rx receives on (seq 1: rx is fresh), ours opens */
			sk_proto_hdr_encode(buf, SK_MSG_CLOSE, 0, 3, 1, (uint32_t)len);
			memcpy(nonce + 4, buf + 12, 8);
			if (aes)
				crypto_aead_aes256gcm_encrypt_detached(buf + SK_PROTO_HDR_LEN, buf + SK_PROTO_HDR_LEN + len,
								       NULL, pt, len, buf, SK_PROTO_HDR_LEN, NULL, nonce,
								       k1.b);
			else
				crypto_aead_chacha20poly1305_ietf_encrypt_detached(
					buf + SK_PROTO_HDR_LEN, buf + SK_PROTO_HDR_LEN + len, NULL, pt, len, buf,
					SK_PROTO_HDR_LEN, NULL, nonce, k1.b);
			if (len) {
				uint8_t *copy = malloc(total);

				/* a forgery first: refused, nothing decrypted left behind, rx_seq unmoved */
				cr_assert(copy);
				memcpy(copy, buf, total);
				copy[SK_PROTO_HDR_LEN + len / 2] ^= 0x40;
				cr_assert_lt(sk_chan_open(&rx, copy, total, &f, &why), 0);
				cr_assert_eq(why, SK_REJ_MAC);
				for (size_t i = 0; i < len; i++)
					cr_assert_eq(copy[SK_PROTO_HDR_LEN + i], 0, "forged payload left at byte %zu", i);
				free(copy);
			}
			cr_assert_eq(sk_chan_open(&rx, buf, total, &f, &why), (long)total, "%s", sk_reject_str(why));
			cr_assert_eq(f.len, len);
			cr_assert(len == 0 || memcmp(f.payload, pt, len) == 0);
			free(buf);
			free(pt);
			free(out);
		}
	}
}

/*
 * sk_chan_seal (the zero-copy path): MAC-only leaves the iovecs alone; encrypted
 * points them at the ciphertext and leaves the caller's bytes alone; both give
 * the same frame as the one-buffer encoder from the same state.
 */
Test(proto, seal_iov_every_mode)
{
	for (int md = 0; md < 3; md++) {
		struct sk_chan cli, srv, cli2;
		char a[] = "hdr-", b[] = "", c[] = "payload";
		struct iovec iov[3] = { { a, 4 }, { b, 0 }, { c, 7 } };
		uint8_t hdr[SK_PROTO_HDR_LEN], mac[SK_PROTO_MAC_LEN], buf[128], one[128];
		struct sk_frame f;
		enum sk_reject why;
		size_t off = 0;

		pair_mode(&cli, &srv, modes[md]);
		cli2 = cli;
		cr_assert_eq(sk_chan_seal(&cli, hdr, mac, SK_MSG_AGENT_FIRST, 3, 9, iov, 3), 0);
		cr_assert_str_eq(a, "hdr-");
		cr_assert_str_eq(c, "payload", "caller's payload modified");
		cr_assert_eq(iov[0].iov_len + iov[1].iov_len + iov[2].iov_len, 11);
		cr_assert_eq(iov[0].iov_base == a, md == 2, "%s: iov redirected? ", mode_names[md]);
		memcpy(buf, hdr, sizeof(hdr));
		off = sizeof(hdr);
		for (int i = 0; i < 3; i++) {
			memcpy(buf + off, iov[i].iov_base, iov[i].iov_len);
			off += iov[i].iov_len;
		}
		memcpy(buf + off, mac, sizeof(mac));
		off += sizeof(mac);
		cr_assert_eq(sk_chan_encode(&cli2, one, sizeof(one), SK_MSG_AGENT_FIRST, 3, 9,
					    "hdr-payload", 11), (long)off);
		cr_assert_arr_eq(one, buf, off, "%s: seal and encode differ", mode_names[md]);
		cr_assert_eq(sk_chan_open(&srv, buf, off, &f, &why), (long)off, "%s: %s", mode_names[md],
			     sk_reject_str(why));
		cr_assert_eq(f.flags, 3);
		cr_assert_eq(f.module, 9);
		cr_assert_arr_eq(f.payload, "hdr-payload", 11);
	}
}

Test(proto, seal_large_payload_one_and_two_parts)
{
	static uint8_t data[1 << 20], buf[SK_PROTO_MAX_FRAME];
	uint8_t opk[100], hdr[SK_PROTO_HDR_LEN], mac[SK_PROTO_MAC_LEN];

	randombytes_buf(data, sizeof(data));
	memset(opk, 0x5a, sizeof(opk));
	for (int md = 0; md < 3; md++)
		for (int parts = 1; parts <= 2; parts++) {
			struct sk_chan cli, srv;
			struct iovec iov[2] = { { opk, sizeof(opk) }, { data, sizeof(data) } };
			struct iovec *v = parts == 1 ? iov + 1 : iov;
			struct sk_frame f;
			enum sk_reject why;
			size_t off = SK_PROTO_HDR_LEN, len = parts == 1 ? sizeof(data) : sizeof(data) + sizeof(opk);

			pair_mode(&cli, &srv, modes[md]);
			cr_assert_eq(sk_chan_seal(&cli, hdr, mac, SK_MSG_REPL_FIRST, 0, 1, v, parts), 0);
			memcpy(buf, hdr, sizeof(hdr));
			for (int i = 0; i < parts; i++) {
				memcpy(buf + off, v[i].iov_base, v[i].iov_len);
				off += v[i].iov_len;
			}
			memcpy(buf + off, mac, sizeof(mac));
			cr_assert_eq(sk_chan_open(&srv, buf, off + sizeof(mac), &f, &why),
				     (long)(off + sizeof(mac)), "%s/%d: %s", mode_names[md], parts,
				     sk_reject_str(why));
			cr_assert_eq(f.len, len);
			if (parts == 2)
				cr_assert_arr_eq(f.payload, opk, sizeof(opk));
			cr_assert(memcmp(f.payload + len - sizeof(data), data, sizeof(data)) == 0,
				  "%s/%d: payload differs", mode_names[md], parts);
		}
}

/* The ciphertext buffer is per thread: threads sealing at once on their own channels never mix. */
static void *seal_worker(void *arg)
{
	struct sk_chan *pair = arg; /* [0] sender, [1] receiver */
	static const size_t sizes[] = { 1, 100, 4096, 70000, 300000 };
	uint8_t *data = malloc(300000), *buf = malloc(SK_PROTO_HDR_LEN + 300100 + SK_PROTO_MAC_LEN);
	uint8_t op[100], hdr[SK_PROTO_HDR_LEN], mac[SK_PROTO_MAC_LEN];
	long bad = 0;

	for (int i = 0; i < 100 && data && buf; i++) {
		size_t len = sizes[i % 5], off = SK_PROTO_HDR_LEN;
		struct iovec iov[2] = { { op, sizeof(op) }, { data, len } };
		struct sk_frame f;
		enum sk_reject why;

		memset(op, i, sizeof(op));
		memset(data, i + 1, len);
		if (sk_chan_seal(&pair[0], hdr, mac, SK_MSG_REPL_FIRST, 0, 1, iov, 2) < 0) {
			bad++;
			continue;
		}
		sched_yield(); /* let the other threads seal in between */
		memcpy(buf, hdr, sizeof(hdr));
		for (int k = 0; k < 2; k++) {
			memcpy(buf + off, iov[k].iov_base, iov[k].iov_len);
			off += iov[k].iov_len;
		}
		memcpy(buf + off, mac, sizeof(mac));
		if (sk_chan_open(&pair[1], buf, off + sizeof(mac), &f, &why) <= 0 ||
		    f.payload[0] != (uint8_t)i || f.payload[f.len - 1] != (uint8_t)(i + 1))
			bad++;
	}
	free(data);
	free(buf);
	return (void *)bad;
}

Test(proto, seal_from_many_threads)
{
	struct sk_chan pairs[4][2];
	pthread_t t[4];

	for (int i = 0; i < 4; i++) {
		pair_mode(&pairs[i][0], &pairs[i][1], i % 2 ? SK_CHAN_F_CHACHA : 0);
		cr_assert_eq(pthread_create(&t[i], NULL, seal_worker, pairs[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		void *bad;

		cr_assert_eq(pthread_join(t[i], &bad), 0);
		cr_assert_eq((long)bad, 0, "thread %d: %ld frames corrupted", i, (long)bad);
	}
}

Test(proto, seal_failure_sends_nothing)
{
	static uint8_t big[SK_PROTO_MAX_PAYLOAD + 1];
	uint8_t hdr[SK_PROTO_HDR_LEN], mac[SK_PROTO_MAC_LEN], zero[SK_PROTO_HDR_LEN] = { 0 };
	struct sk_chan cli, srv;
	struct iovec iov = { big, sizeof(big) };

	pair(&cli, &srv);
	memset(hdr, 1, sizeof(hdr));
	cr_assert_eq(sk_chan_seal(&cli, hdr, mac, SK_MSG_REPL_FIRST, 0, 0, &iov, 1), -EMSGSIZE);
	cr_assert_eq(iov.iov_len, 0, "a failed seal left its payload sendable");
	cr_assert_arr_eq(hdr, zero, sizeof(zero));
	cr_assert_eq(cli.tx_seq, 0, "a failed seal took a seq");
	cr_assert_eq(sk_chan_encode(&cli, big, sizeof(big), SK_MSG_REPL_FIRST, 0, 0, big,
				    sizeof(big)), -EMSGSIZE);
	cr_assert_eq(sk_chan_encode(&cli, big, 10, SK_MSG_REPL_FIRST, 0, 0, "abc", 3), -ENOSPC);
	cli.tx_seq = UINT64_MAX;
	iov.iov_len = 3;
	cr_assert_eq(sk_chan_seal(&cli, hdr, mac, SK_MSG_REPL_FIRST, 0, 0, &iov, 1), -EOVERFLOW);
}

Test(proto, incomplete_frame_needs_more)
{
	struct sk_chan cli, srv;
	uint8_t buf[128], copy[128];
	struct sk_frame f;
	enum sk_reject why;
	long n;
	size_t i;

	pair(&cli, &srv);
	n = frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "partial");
	memcpy(copy, buf, (size_t)n);
	for (i = 0; i < (size_t)n; i++) {
		cr_assert_eq(sk_chan_open(&srv, buf, i, &f, &why), 0, "prefix %zu", i);
		cr_assert_arr_eq(buf, copy, (size_t)n, "a prefix was modified");
	}
	cr_assert_eq(sk_chan_open(&srv, buf, (size_t)n, &f, &why), n);
}

Test(proto, reject_bad_header_fields)
{
	struct sk_chan cli, srv;
	uint8_t buf[128];
	long n;

	pair(&cli, &srv);
	n = frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "x");
	buf[0] ^= 0xff;
	expect_reject(&srv, buf, (size_t)n, SK_REJ_MAGIC);
	n = frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "x");
	buf[4] = SK_PROTO_VERSION + 1;
	expect_reject(&srv, buf, (size_t)n, SK_REJ_VERSION);
	buf[4] = 1; /* version 1 peers (no client proof, no encryption) are refused */
	expect_reject(&srv, buf, (size_t)n, SK_REJ_VERSION);
	n = frame(&cli, buf, sizeof(buf), 200, "x");
	expect_reject(&srv, buf, (size_t)n, SK_REJ_TYPE);
	n = frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "x");
	sk_put_u32(buf + 20, SK_PROTO_MAX_PAYLOAD + 1);
	expect_reject(&srv, buf, (size_t)n, SK_REJ_LENGTH);
}

Test(proto, every_bit_flip_refused_every_mode)
{
	for (int md = 0; md < 3; md++) {
		struct sk_chan cli, srv;
		uint8_t buf[128], orig[128];
		struct sk_frame f;
		enum sk_reject why;
		long n;
		size_t bit;

		pair_mode(&cli, &srv, modes[md]);
		n = frame(&cli, orig, sizeof(orig), SK_MSG_REPL_FIRST, "payload!");
		for (bit = 0; bit < (size_t)n * 8; bit++) {
			memcpy(buf, orig, (size_t)n);
			buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			/* Length bits may make the frame look incomplete (0) or too long; never accepted. */
			cr_assert_leq(sk_chan_open(&srv, buf, (size_t)n, &f, &why), 0, "%s: bit %zu accepted",
				      mode_names[md], bit);
		}
		cr_assert_eq(srv.rx_seq, 0);
		cr_assert_eq(sk_chan_open(&srv, orig, (size_t)n, &f, &why), n);
	}
}

Test(proto, reject_forged_with_wrong_secret)
{
	struct sk_chan cli, srv, evil_cli, evil_srv;
	struct sk_key other;
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN], fin[SK_HS_FRAME_LEN], buf[128];
	struct sk_hs h1, h2;
	enum sk_reject why;
	long n;

	pair(&cli, &srv);
	other_master(&other);
	/* A whole handshake under the wrong secret yields keys the real server does not have. */
	n = sk_hs_client_hello(&h1, &other, SK_CHAN_TEST, 1, 7, hello);
	n = sk_hs_server_reply(&h2, &other, SK_CHAN_TEST, 2, hello, (size_t)n, ack, &why);
	n = sk_hs_client_finish(&h1, ack, (size_t)n, fin, &evil_cli, &why);
	cr_assert_eq(sk_hs_server_finish(&h2, fin, (size_t)n, &evil_srv, &why), 0);
	n = frame(&evil_cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "forged");
	expect_reject(&srv, buf, (size_t)n, SK_REJ_MAC);
}

Test(proto, reject_replay_and_reorder)
{
	struct sk_chan cli, srv;
	uint8_t f1[64], f2[64], f1c[64];
	struct sk_frame f;
	enum sk_reject why;
	long n1, n2;

	pair(&cli, &srv);
	n1 = frame(&cli, f1, sizeof(f1), SK_MSG_REPL_FIRST, "one");
	n2 = frame(&cli, f2, sizeof(f2), SK_MSG_REPL_FIRST, "two");
	memcpy(f1c, f1, (size_t)n1);
	cr_assert_eq(sk_chan_open(&srv, f1, (size_t)n1, &f, &why), n1);
	expect_reject(&srv, f1c, (size_t)n1, SK_REJ_REPLAY); /* same again */
	cr_assert_eq(sk_chan_open(&srv, f2, (size_t)n2, &f, &why), n2);
}

/* Issue 9 A2: a frame cut out of the stream is a missing seq, never acked by the next one. */
Test(proto, reject_seq_gap_every_mode)
{
	for (int md = 0; md < 3; md++) {
		struct sk_chan cli, srv;
		uint8_t f1[64], f2[64], f3[64];
		struct sk_frame f;
		enum sk_reject why;
		long n1, n2, n3;

		pair_mode(&cli, &srv, modes[md]);
		n1 = frame(&cli, f1, sizeof(f1), SK_MSG_REPL_FIRST, "one");
		n2 = frame(&cli, f2, sizeof(f2), SK_MSG_REPL_FIRST, "two");     /* deleted on the path */
		n3 = frame(&cli, f3, sizeof(f3), SK_MSG_REPL_FIRST, "three");
		cr_assert_eq(sk_chan_open(&srv, f1, (size_t)n1, &f, &why), n1);
		expect_reject(&srv, f3, (size_t)n3, SK_REJ_GAP);
		cr_assert_eq(srv.rx_seq, 1, "%s: the gap moved rx_seq", mode_names[md]);
		cr_assert_eq(srv.frames_in, 1);
		cr_assert_eq(sk_chan_open(&srv, f2, (size_t)n2, &f, &why), n2);
	}
}

Test(proto, first_frame_must_be_seq_1)
{
	struct sk_chan cli, srv;
	uint8_t buf[64];
	long n;

	pair(&cli, &srv);
	cli.tx_seq = 1; /* frame 1 never sent */
	n = frame(&cli, buf, sizeof(buf), SK_MSG_REPL_FIRST, "two");
	expect_reject(&srv, buf, (size_t)n, SK_REJ_GAP);
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
	static const uint8_t types[] = { SK_MSG_HELLO, SK_MSG_HELLO_ACK, SK_MSG_HELLO_FIN };

	for (int i = 0; i < 3; i++) {
		struct sk_chan cli, srv;
		uint8_t buf[128];
		long n;

		pair(&cli, &srv);
		n = sk_chan_encode(&cli, buf, sizeof(buf), types[i], 0, 0, "x", 1);
		expect_reject(&srv, buf, (size_t)n, SK_REJ_HANDSHAKE);
	}
}

/* ---- handshake ---- */

Test(proto, handshake_refuses_wrong_kind)
{
	struct sk_key m = master();
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN];
	struct sk_hs hc, hs;
	enum sk_reject why;
	long n;

	n = sk_hs_client_hello(&hc, &m, SK_CHAN_REPL, 1, 7, hello);
	cr_assert_eq(sk_hs_server_reply(&hs, &m, SK_CHAN_AGENT, 2, hello, (size_t)n, ack, &why),
		     -EBADMSG);
	cr_assert_eq(why, SK_REJ_HANDSHAKE);
}

Test(proto, handshake_refuses_wrong_secret_and_truncation)
{
	struct sk_key m = master(), other;
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN];
	struct sk_hs hc, hs;
	enum sk_reject why;
	long n;

	other_master(&other);
	n = sk_hs_client_hello(&hc, &other, SK_CHAN_TEST, 1, 7, hello);
	cr_assert_eq(sk_hs_server_reply(&hs, &m, SK_CHAN_TEST, 2, hello, (size_t)n, ack, &why), -EBADMSG);
	cr_assert_eq(why, SK_REJ_MAC);
	n = sk_hs_client_hello(&hc, &m, SK_CHAN_TEST, 1, 7, hello);
	cr_assert_eq(sk_hs_server_reply(&hs, &m, SK_CHAN_TEST, 2, hello, (size_t)n - 1, ack, &why),
		     -EBADMSG);
	cr_assert_eq(why, SK_REJ_LENGTH);
	cr_assert_eq(sk_hs_server_reply(&hs, &m, SK_CHAN_TEST, 2, hello, 3, ack, &why), -EBADMSG);
}

Test(proto, handshake_refuses_stale_ack)
{
	struct sk_key m = master();
	uint8_t h1[SK_HS_FRAME_LEN], h2[SK_HS_FRAME_LEN], a1[SK_HS_FRAME_LEN], a2[SK_HS_FRAME_LEN];
	uint8_t fin[SK_HS_FRAME_LEN];
	struct sk_hs c1, c2, s1, s2;
	struct sk_chan cc;
	enum sk_reject why;
	long n1, n2, m1;

	n1 = sk_hs_client_hello(&c1, &m, SK_CHAN_TEST, 1, 7, h1);
	m1 = sk_hs_server_reply(&s1, &m, SK_CHAN_TEST, 2, h1, (size_t)n1, a1, &why);
	/* A second connection attempt must not accept the ACK recorded from the first. */
	n2 = sk_hs_client_hello(&c2, &m, SK_CHAN_TEST, 1, 7, h2);
	cr_assert_eq(sk_hs_client_finish(&c2, a1, (size_t)m1, fin, &cc, &why), -EBADMSG);
	cr_assert_eq(why, SK_REJ_HANDSHAKE);
	cr_assert_gt(sk_hs_server_reply(&s2, &m, SK_CHAN_TEST, 2, h2, (size_t)n2, a2, &why), 0);
	/* A HELLO is not an ACK, even with a valid MAC. */
	cr_assert_eq(sk_hs_client_finish(&c2, h2, (size_t)n2, fin, &cc, &why), -EBADMSG);
}

/*
 * Issue 9 A3: a HELLO recorded from a genuine session and replayed by someone
 * without the key gets an ACK, but with the recorded FIN (or anything else it
 * can send) the connection never completes and no channel is set up.
 */
Test(proto, replayed_hello_and_fin_never_complete)
{
	struct sk_key m = master();
	uint8_t hello[SK_HS_FRAME_LEN], a1[SK_HS_FRAME_LEN], a2[SK_HS_FRAME_LEN];
	uint8_t fin[SK_HS_FRAME_LEN], junk[SK_HS_FRAME_LEN];
	struct sk_chan cli, srv1, srv2, untouched;
	struct sk_hs hc, s1, s2;
	enum sk_reject why;
	long n, m1, fl;

	n = sk_hs_client_hello(&hc, &m, SK_CHAN_TEST, 1, 7, hello);
	m1 = sk_hs_server_reply(&s1, &m, SK_CHAN_TEST, 2, hello, (size_t)n, a1, &why);
	fl = sk_hs_client_finish(&hc, a1, (size_t)m1, fin, &cli, &why);
	cr_assert_eq(sk_hs_server_finish(&s1, fin, (size_t)fl, &srv1, &why), 0);
	/* the recording: hello, fin */
	cr_assert_eq(sk_hs_server_reply(&s2, &m, SK_CHAN_TEST, 2, hello, (size_t)n, a2, &why), SK_HS_ACK_LEN);
	memset(&srv2, 0xee, sizeof(srv2));
	untouched = srv2;
	cr_assert_eq(sk_hs_server_finish(&s2, fin, (size_t)fl, &srv2, &why), -EBADMSG);
	cr_assert_eq(why, SK_REJ_MAC);
	memcpy(junk, fin, (size_t)fl);
	junk[SK_PROTO_HDR_LEN] ^= 1;
	cr_assert_eq(sk_hs_server_finish(&s2, junk, (size_t)fl, &srv2, &why), -EBADMSG);
	cr_assert_eq(sk_hs_server_finish(&s2, a2, SK_HS_ACK_LEN, &srv2, &why), -EBADMSG);
	cr_assert_eq(sk_hs_server_finish(&s2, fin, (size_t)fl - 1, &srv2, &why), -EBADMSG);
	cr_assert_arr_eq(&srv2, &untouched, sizeof(srv2), "a refused FIN set up the channel");
}

/* A FIN that is authentic for the keys but not for this transcript (another module) is refused. */
Test(proto, fin_bound_to_transcript)
{
	struct sk_key m = master();
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN], fin[SK_HS_FRAME_LEN];
	struct sk_hs hc, hs;
	struct sk_chan cli, srv;
	enum sk_reject why;
	long n;

	n = sk_hs_client_hello(&hc, &m, SK_CHAN_TEST, 1, 7, hello);
	n = sk_hs_server_reply(&hs, &m, SK_CHAN_TEST, 2, hello, (size_t)n, ack, &why);
	n = sk_hs_client_finish(&hc, ack, (size_t)n, fin, &cli, &why);
	hs.transcript[0] ^= 1;
	cr_assert_eq(sk_hs_server_finish(&hs, fin, (size_t)n, &srv, &why), -EBADMSG);
	cr_assert_eq(why, SK_REJ_HANDSHAKE);
}

/* Flipping the mode in a HELLO (a downgrade to MAC-only, say) breaks its MAC. */
Test(proto, handshake_flags_authenticated)
{
	struct sk_key m = master();
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN];
	struct sk_hs hc, hs;
	enum sk_reject why;
	long n;

	n = sk_hs_client_hello(&hc, &m, SK_CHAN_TEST, 1, 7, hello);
	hello[7] ^= SK_HS_F_PLAIN;
	cr_assert_eq(sk_hs_server_reply(&hs, &m, SK_CHAN_TEST | SK_CHAN_F_PLAIN, 2, hello, (size_t)n,
					ack, &why), -EBADMSG);
	cr_assert_eq(why, SK_REJ_MAC);
}

/* Issue 9 A7: "encrypt" must be the same on both ends; both sides say so. */
Test(proto, encryption_mismatch_refused_both_ways)
{
	struct sk_key m = master();
	uint32_t cf[2] = { SK_CHAN_F_PLAIN, 0 }, sf[2] = { 0, SK_CHAN_F_PLAIN };

	for (int i = 0; i < 2; i++) {
		uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN], fin[SK_HS_FRAME_LEN];
		struct sk_hs hc, hs;
		struct sk_chan cli;
		enum sk_reject why;
		long n;

		n = sk_hs_client_hello(&hc, &m, SK_CHAN_TEST | cf[i], 1, 7, hello);
		cr_assert_eq(sk_hs_server_reply(&hs, &m, SK_CHAN_TEST | sf[i], 2, hello, (size_t)n, ack,
						&why), -EPROTO);
		cr_assert_eq(why, SK_REJ_ENCRYPT);
		cr_assert_eq(sk_hs_client_finish(&hc, ack, SK_HS_ACK_LEN, fin, &cli, &why), -EPROTO);
		cr_assert_eq(why, SK_REJ_ENCRYPT);
		cr_assert(strstr(sk_reject_str(why), "encrypt"));
	}
	cr_assert(strstr(sk_chan_strerror(-EPROTO), "encrypt"));
}

/* ---- blocking helpers ---- */

static void fd_round_trip(uint32_t flags)
{
	struct sk_key m = master();
	struct sk_chan cli, srv;
	static uint8_t buf[SK_PROTO_MAX_FRAME];
	struct iovec iov[2] = { { "zero-", 5 }, { "copy", 4 } };
	uint32_t peer = 0, module = 0;
	struct sk_frame f;
	enum sk_reject why;
	int sv[2], st;
	pid_t pid;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		if (sk_chan_connect_fd(sv[1], &m, SK_CHAN_TEST | flags, 5, 3, &cli, &peer, 2000) != 0)
			_exit(1);
		if (sk_chan_send_fd(&cli, sv[1], SK_MSG_REPL_FIRST, 0, 3, iov, 2) != 0)
			_exit(2);
		if (sk_chan_recv_fd(&cli, sv[1], buf, sizeof(buf), &f, &why) != 0 || f.len != 2)
			_exit(4);
		_exit(peer == 6 ? 0 : 3);
	}
	close(sv[1]);
	cr_assert_eq(sk_chan_accept_fd(sv[0], &m, SK_CHAN_TEST | flags, 6, &srv, &peer, &module, 2000,
				       &why), 0, "accept: %s", sk_reject_str(why));
	cr_assert_eq(peer, 5);
	cr_assert_eq(module, 3);
	cr_assert_eq(sk_chan_recv_fd(&srv, sv[0], buf, sizeof(buf), &f, &why), 0);
	cr_assert_eq(f.len, 9);
	cr_assert_arr_eq(f.payload, "zero-copy", 9);
	cr_assert_eq(sk_chan_send_fd(&srv, sv[0], SK_MSG_REPL_FIRST + 1, 0, 3,
				     &(struct iovec){ "ok", 2 }, 1), 0);
	cr_assert_eq(sk_chan_recv_fd(&srv, sv[0], buf, sizeof(buf), &f, &why), -ECONNRESET);
	close(sv[0]);
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client side failed: %d", st);
}

Test(proto, fd_helpers_over_socketpair_every_mode)
{
	for (int md = 0; md < 3; md++)
		fd_round_trip(modes[md]);
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

/*
 * Issue 9 A3: a peer that sends a valid (e.g. replayed) HELLO and then nothing
 * never gets a connection that counts: accept fails within its bound.
 */
Test(proto, accept_needs_client_proof_within_timeout)
{
	struct sk_key m = master();
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN];
	struct sk_chan srv;
	struct sk_hs hc;
	enum sk_reject why;
	struct timespec t0, t1;
	long n, ms;
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	n = sk_hs_client_hello(&hc, &m, SK_CHAN_TEST, 1, 7, hello);
	cr_assert_eq(write(sv[1], hello, (size_t)n), n);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(sk_chan_accept_fd(sv[0], &m, SK_CHAN_TEST, 6, &srv, NULL, NULL, 200, &why),
		     -ETIMEDOUT, "a connection without the client's proof was accepted");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_assert_lt(ms, 1000, "bounded by the timeout (%ld ms)", ms);
	cr_assert_eq(read(sv[1], ack, sizeof(ack)), SK_HS_ACK_LEN, "the ACK was sent");
	close(sv[0]);
	close(sv[1]);
}

Test(proto, accept_refuses_encryption_mismatch)
{
	struct sk_key m = master();
	struct sk_chan cli, srv;
	enum sk_reject why;
	int sv[2], st;
	pid_t pid;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		_exit(sk_chan_connect_fd(sv[1], &m, SK_CHAN_TEST | SK_CHAN_F_PLAIN, 5, 3, &cli, NULL,
					 2000) == -EPROTO ? 0 : 1);
	}
	close(sv[1]);
	cr_assert_eq(sk_chan_accept_fd(sv[0], &m, SK_CHAN_TEST, 6, &srv, NULL, NULL, 2000, &why),
		     -EBADMSG);
	cr_assert_eq(why, SK_REJ_ENCRYPT);
	close(sv[0]);
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client did not report -EPROTO");
}

/* ---- datagrams ---- */

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
	/* datagrams may skip (UDP loses packets): newer is enough */
	n = sk_dgram_seal(&d, buf, sizeof(buf), SK_MSG_HEARTBEAT, 0, 5000, "hb", 2);
	cr_assert_eq(sk_dgram_open(&d, buf, (size_t)n, &last, &f, &why), 0);
}

/* ---- readers and names ---- */

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
