/* test/fuzz/fuzz_proto.c: libFuzzer target for the frame decoders (stream, handshake, datagram), asserting their properties. */
/*
 * Properties checked (abort() on violation, so libFuzzer reports a crash):
 *  - raw bytes from the network are never accepted by a channel, a handshake step
 *    or the datagram opener without the key, and no decoder reads past its input
 *    (every input is an exactly sized heap copy, so ASan sees one byte too far);
 *  - a header that decodes re-encodes to the same 24 bytes;
 *  - a frame sealed in any mode (AES-GCM, ChaCha20-Poly1305, MAC only) opens to
 *    the same type, flags, module, seq and payload, iff its seq is the next one;
 *  - the same frame with any byte changed never opens;
 *  - a handshake completes with equal keys on both ends, and a changed byte in
 *    any of its three frames makes it fail;
 *  - the bounded reader never returns bytes past its input.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sk_key master_key, dgram_key;
static int ready, have_aes;


/* Raw bytes from the network. */
static void fuzz_raw(const uint8_t *data, size_t size)
{
	uint8_t out[SK_HS_FRAME_LEN];
	struct sk_chan c;
	struct sk_key k;
	struct sk_frame f;
	struct sk_hs hs, hc;
	enum sk_reject why;
	uint64_t last = 0;
	uint8_t *buf = dup_exact(data, size), *hdr;
	enum sk_aead mode;
	long n;

	/* a channel whose keys nobody has: nothing authentic can arrive */
	randombytes_buf(k.b, sizeof(k.b));
	mode = (enum sk_aead)(size % 3);
	if (mode == SK_AEAD_AES256GCM && !have_aes)
		mode = SK_AEAD_CHACHA20;
	CHECK(sk_chan_init(&c, &k, &k, mode) == 0);
	n = sk_chan_open(&c, buf, size, &f, &why);
	CHECK(n <= 0);
	if (n < 0)
		CHECK(why != SK_REJ_NONE && c.rejected[why] == 1 && c.rx_seq == 0);
	free(buf);

	/* header round trip */
	if (size >= SK_PROTO_HDR_LEN) {
		uint8_t re[SK_PROTO_HDR_LEN];

		hdr = dup_exact(data, SK_PROTO_HDR_LEN);
		if (sk_proto_hdr_decode(hdr, &f, &why) == 0) {
			sk_proto_hdr_encode(re, f.type, f.flags, f.module, f.seq, f.len);
			CHECK(memcmp(re, hdr, SK_PROTO_HDR_LEN) == 0);
			CHECK(f.len <= SK_PROTO_MAX_PAYLOAD);
		} else {
			CHECK(why != SK_REJ_NONE);
		}
		free(hdr);
	}

	/* handshake steps: a HELLO with a valid MAC cannot be made without the key */
	buf = dup_exact(data, size);
	CHECK(sk_hs_server_reply(&hs, &master_key, SK_CHAN_REPL, 1, buf, size, out, &why) < 0);
	sk_hs_client_hello(&hc, &master_key, SK_CHAN_REPL, 1, 0, out);
	CHECK(sk_hs_client_finish(&hc, buf, size, out, &c, &why) < 0);
	CHECK(sk_dgram_open(&dgram_key, buf, size, &last, &f, &why) < 0);
	free(buf);
}

/* Authentic frames with fuzzed header fields, payload and mode; then one byte changed. */
static void fuzz_sealed(const uint8_t *data, size_t size)
{
	static uint8_t buf[SK_PROTO_HDR_LEN + 4096 + SK_PROTO_MAC_LEN];
	static uint8_t copy[sizeof(buf)];
	struct sk_key kt;
	struct sk_chan tx, rx, rx0;
	struct sk_frame f;
	enum sk_reject why;
	enum sk_aead mode;
	size_t len, pos;
	uint8_t type, x;
	uint16_t flags;
	long n, m;

	if (size < 8)
		return;
	mode = (enum sk_aead)(data[0] % 3);
	if (mode == SK_AEAD_AES256GCM && !have_aes)
		mode = SK_AEAD_CHACHA20;
	type = data[1];
	flags = (uint16_t)(data[2] << 8 | data[3]);
	pos = (size_t)data[4] << 8 | data[5];
	x = data[6];
	sk_proto_derive(&kt, &master_key, "fuzz", &data[0], 1);
	CHECK(sk_chan_init(&tx, &kt, &kt, mode) == 0);
	CHECK(sk_chan_init(&rx, &kt, &kt, mode) == 0);
	tx.tx_seq = data[7] & 3;   /* the frame gets seq 1..4 */
	rx.rx_seq = (data[7] >> 2) & 3; /* the receiver expects 1..4 */
	len = size - 8 > 4096 ? 4096 : size - 8;
	n = sk_chan_encode(&tx, buf, sizeof(buf), type, flags, 77, data + 8, len);
	CHECK(n == (long)(SK_PROTO_HDR_LEN + len + SK_PROTO_MAC_LEN));
	CHECK(mode == SK_AEAD_NONE || len < 8 || memcmp(buf + SK_PROTO_HDR_LEN, data + 8, len) != 0);
	memcpy(copy, buf, (size_t)n);
	rx0 = rx;

	m = sk_chan_open(&rx, buf, (size_t)n, &f, &why);
	if (m > 0) {
		CHECK(m == n);
		CHECK(tx.tx_seq == rx0.rx_seq + 1);
		CHECK(f.type == type && f.flags == flags && f.module == 77 && f.seq == tx.tx_seq);
		CHECK(f.len == len && (len == 0 || memcmp(f.payload, data + 8, len) == 0));
		CHECK(rx.rx_seq == f.seq);
	} else {
		/* refused: unknown or handshake type, or not the next seq */
		CHECK(m < 0);
		CHECK(rx.rx_seq == rx0.rx_seq);
		CHECK(tx.tx_seq != rx0.rx_seq + 1 || why == SK_REJ_TYPE || why == SK_REJ_HANDSHAKE);
	}

	/* any single byte changed: never accepted */
	if (x == 0)
		x = 1;
	pos %= (size_t)n;
	copy[pos] ^= x;
	rx = rx0;
	m = sk_chan_open(&rx, copy, (size_t)n, &f, &why);
	CHECK(m <= 0);
	CHECK(rx.rx_seq == rx0.rx_seq);
}

/* A whole handshake in fuzzed modes; then the same with one byte of one frame changed. */
static void fuzz_handshake(const uint8_t *data, size_t size)
{
	static const uint32_t fl[4] = { 0, SK_CHAN_F_CHACHA, SK_CHAN_F_PLAIN, SK_CHAN_F_PLAIN | SK_CHAN_F_CHACHA };
	uint8_t hello[SK_HS_FRAME_LEN], ack[SK_HS_FRAME_LEN], fin[SK_HS_FRAME_LEN];
	struct sk_hs hc, hs;
	struct sk_chan cc, sc;
	enum sk_reject why;
	uint32_t cf, sf;
	int which, pos, ok = 1;
	uint8_t x;
	long n, a, fn;

	if (size < 5)
		return;
	cf = fl[data[0] & 3];
	sf = fl[(data[0] >> 2) & 3];
	which = data[1] % 4; /* 3: no change */
	pos = data[2];
	x = data[3] ? data[3] : 1;

	n = sk_hs_client_hello(&hc, &master_key, SK_CHAN_REPL | cf, data[4], 5, hello);
	CHECK(n == SK_HS_HELLO_LEN);
	if (which == 0)
		hello[pos % n] ^= x;
	a = sk_hs_server_reply(&hs, &master_key, SK_CHAN_REPL | sf, 9, hello, (size_t)n, ack, &why);
	if (which == 0) {
		CHECK(a < 0);
		return;
	}
	if ((cf & SK_CHAN_F_PLAIN) != (sf & SK_CHAN_F_PLAIN)) {
		CHECK(a == -EPROTO && why == SK_REJ_ENCRYPT);
		ok = 0;
	} else {
		CHECK(a == SK_HS_ACK_LEN);
	}
	if (which == 1)
		ack[pos % SK_HS_ACK_LEN] ^= x;
	fn = sk_hs_client_finish(&hc, ack, SK_HS_ACK_LEN, fin, &cc, &why);
	if (which == 1 || !ok) {
		CHECK(fn < 0);
		return;
	}
	CHECK(fn == SK_HS_FIN_LEN);
	if (which == 2)
		fin[pos % fn] ^= x;
	if (which == 2) {
		CHECK(sk_hs_server_finish(&hs, fin, (size_t)fn, &sc, &why) < 0);
		return;
	}
	CHECK(sk_hs_server_finish(&hs, fin, (size_t)fn, &sc, &why) == 0);
	CHECK(hs.peer_node == data[4] && hc.peer_node == 9 && hs.module == 5);
	CHECK(memcmp(cc.tx_key.b, sc.rx_key.b, sizeof(cc.tx_key.b)) == 0);
	CHECK(memcmp(cc.rx_key.b, sc.tx_key.b, sizeof(cc.rx_key.b)) == 0);
	CHECK(memcmp(cc.tx_key.b, cc.rx_key.b, sizeof(cc.tx_key.b)) != 0);
	CHECK(cc.aead == sc.aead);
	CHECK((cc.aead == SK_AEAD_NONE) == !!(cf & SK_CHAN_F_PLAIN));
}

/* The bounded reader: a script of reads over an exact copy of the rest of the input. */
static void fuzz_reader(const uint8_t *data, size_t size)
{
	uint8_t *buf;
	struct sk_rd r;
	size_t i, n, consumed = 0;
	int failed = 0;

	if (size < 1)
		return;
	n = data[0] % 32;
	if (n + 1 > size)
		n = size - 1;
	buf = dup_exact(data + 1 + n, size - 1 - n);
	sk_rd_init(&r, buf, size - 1 - n);
	for (i = 0; i < n; i++) {
		size_t want = (size_t)(data[1 + i] % 4 == 3 ? data[1 + i] / 4 : (size_t)1 << (data[1 + i] % 4));
		const uint8_t *p = sk_rd_bytes(&r, want);

		if (p) {
			CHECK(!r.err && p == buf + consumed);
			consumed += want;
			CHECK(consumed <= size - 1 - n);
		} else {
			/* short, or an earlier read was (the error is sticky) */
			CHECK(r.err && (failed || consumed + want > size - 1 - n));
			failed = 1;
		}
	}
	CHECK(r.left + consumed == size - 1 - n || r.err);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready) {
		CHECK(sk_proto_master_key(&master_key, "fuzzing secret 0123456789", 25) == 0);
		sk_proto_derive(&dgram_key, &master_key, "dgram", NULL, 0);
		have_aes = crypto_aead_aes256gcm_is_available();
		ready = 1;
	}
	if (size == 0)
		return 0;
	switch (data[0] & 3) {
	case 0: fuzz_raw(data + 1, size - 1); break;
	case 1: fuzz_sealed(data + 1, size - 1); break;
	case 2: fuzz_handshake(data + 1, size - 1); break;
	default: fuzz_reader(data + 1, size - 1); break;
	}
	return 0;
}
