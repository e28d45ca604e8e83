/* bench/crypto.c: what protecting the replication stream costs per frame (seal, open) in each mode, and the master-key KDF. */
/*
 * Usage: bench-crypto [seconds per case, default 0.5]
 * Not a test: a microbenchmark run by hand on a quiet host. For 4 KiB and
 * 1 MiB payloads it seals frames the way skfused does (sk_chan_seal over two
 * iovecs, the operation header and the data, as repl.c sends them; and over
 * one iovec), and opens them in place the way the secondary does
 * (sk_chan_open); it prints MB/s of payload for AES-256-GCM, ChaCha20-Poly1305
 * and MAC-only, and the time of one Argon2id master-key derivation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto.h"

#define OPHDR 128

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "bench-crypto: %s\n", what);
	exit(1);
}

/* payload MB/s of sealing; parts 1: the data alone, 2: operation header + data */
static double bench_seal(enum sk_aead mode, size_t len, int parts, double secs, uint8_t *data)
{
	static uint8_t op[OPHDR];
	uint8_t hdr[SK_PROTO_HDR_LEN], mac[SK_PROTO_MAC_LEN];
	struct sk_key k;
	struct sk_chan c;
	double t0 = now_s(), t;
	long n = 0;

	randombytes_buf(k.b, sizeof(k.b));
	if (sk_chan_init(&c, &k, &k, mode) < 0)
		die("sk_chan_init");
	do {
		for (int i = 0; i < 16; i++) {
			struct iovec iov[2] = { { op, OPHDR }, { data, len } };
			struct iovec *v = parts == 1 ? iov + 1 : iov;

			if (sk_chan_seal(&c, hdr, mac, SK_MSG_REPL_FIRST, 0, 1, v, parts) < 0)
				die("seal");
			n++;
		}
		t = now_s() - t0;
	} while (t < secs);
	return (double)n * (double)(len + (parts == 2 ? OPHDR : 0)) / t / 1e6;
}

/* payload MB/s of opening (the copy that restores the sealed frame each time is timed apart and taken off) */
static double bench_open(enum sk_aead mode, size_t len, double secs, uint8_t *data)
{
	size_t flen = SK_PROTO_HDR_LEN + len + SK_PROTO_MAC_LEN;
	uint8_t *sealed = malloc(flen), *work = malloc(flen);
	struct sk_key k;
	struct sk_chan tx, rx;
	struct sk_frame f;
	enum sk_reject why;
	double t0, t, tcopy;
	long n = 0, m = 0;

	if (!sealed || !work)
		die("malloc");
	randombytes_buf(k.b, sizeof(k.b));
	if (sk_chan_init(&tx, &k, &k, mode) < 0 || sk_chan_init(&rx, &k, &k, mode) < 0)
		die("sk_chan_init");
	if (sk_chan_encode(&tx, sealed, flen, SK_MSG_REPL_FIRST, 0, 1, data, len) != (long)flen)
		die("encode");
	t0 = now_s();
	do {
		for (int i = 0; i < 16; i++) {
			memcpy(work, sealed, flen);
			m++;
		}
		t = now_s() - t0;
	} while (t < secs / 4);
	tcopy = t / (double)m;
	t0 = now_s();
	do {
		for (int i = 0; i < 16; i++) {
			memcpy(work, sealed, flen);
			rx.rx_seq = 0;
			if (sk_chan_open(&rx, work, flen, &f, &why) != (long)flen)
				die("open refused its own frame");
			n++;
		}
		t = now_s() - t0;
	} while (t < secs);
	free(sealed);
	free(work);
	return (double)len / (t / (double)n - tcopy) / 1e6;
}

int main(int argc, char **argv)
{
	static const struct {
		enum sk_aead mode;
		const char *name;
	} modes[] = { { SK_AEAD_AES256GCM, "aes-256-gcm" },
		      { SK_AEAD_CHACHA20, "chacha20-poly1305" },
		      { SK_AEAD_NONE, "mac-only (poly1305)" } };
	static const size_t sizes[] = { 4096, 1 << 20 };
	double secs = argc > 1 ? atof(argv[1]) : 0.5;
	uint8_t *data = malloc(1 << 20);
	struct sk_key m;
	static const char secret[] = "bench secret: Zq3v9L0xR7mT2kP5";
	double t0;

	if (!data || secs <= 0)
		die("usage: bench-crypto [seconds per case]");
	if (sodium_init() < 0)
		die("sodium_init");
	randombytes_buf(data, 1 << 20);
	t0 = now_s();
	if (sk_proto_master_key(&m, secret, sizeof(secret) - 1) < 0)
		die("sk_proto_master_key");
	printf("master key (Argon2id): %.1f ms\n", (now_s() - t0) * 1e3);
	printf("AES-NI: %s\n\n", crypto_aead_aes256gcm_is_available() ? "yes" : "no");
	printf("%-20s %8s %12s %12s %12s %14s\n", "mode", "payload", "seal 1 iov", "seal 2 iov",
	       "open", "seal2+open");
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (modes[i].mode == SK_AEAD_AES256GCM && !crypto_aead_aes256gcm_is_available())
			continue;
		for (size_t j = 0; j < 2; j++) {
			double s1 = bench_seal(modes[i].mode, sizes[j], 1, secs, data);
			double s2 = bench_seal(modes[i].mode, sizes[j], 2, secs, data);
			double o = bench_open(modes[i].mode, sizes[j], secs, data);

			printf("%-20s %8s %9.0f MB/s %9.0f MB/s %9.0f MB/s %11.0f MB/s\n", modes[i].name,
			       sizes[j] == 4096 ? "4 KiB" : "1 MiB", s1, s2, o, 1.0 / (1.0 / s2 + 1.0 / o));
		}
	}
	free(data);
	return 0;
}
