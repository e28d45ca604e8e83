/* test/fuzz/fuzz_proto.c: libFuzzer target for the frame decoders (stream, handshake, datagram). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sk_key master_key, dgram_key;
static int ready;

/* Raw bytes from the network: every decoder must refuse or accept without reading out of bounds. */
static void fuzz_raw(const uint8_t *data, size_t size)
{
	uint8_t out[SK_HS_FRAME_LEN];
	struct sk_chan c;
	struct sk_frame f;
	struct sk_hs hs;
	enum sk_reject why;
	uint64_t last = 0;
	size_t off = 0;
	int i;

	memset(&c, 0, sizeof(c));
	for (i = 0; i < 64 && off < size; i++) {
		long n = sk_chan_open(&c, data + off, size - off, &f, &why);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	sk_hs_server_reply(&hs, &master_key, SK_CHAN_REPL, 1, data, size, out, &c, &why);
	sk_hs_client_hello(&hs, &master_key, SK_CHAN_REPL, 1, 0, out);
	sk_hs_client_finish(&hs, data, size, &c, &why);
	sk_dgram_open(&dgram_key, data, size, &last, &f, &why);
}

/*
 * Authentic frames with fuzzed header fields and payload: gets past the MAC so
 * the header checks and sequence logic see adversarial but authenticated input.
 */
static void fuzz_sealed(const uint8_t *data, size_t size)
{
	static uint8_t buf[SK_PROTO_HDR_LEN + 4096 + SK_PROTO_MAC_LEN];
	struct sk_chan tx, rx;
	struct sk_frame f;
	enum sk_reject why;
	size_t len;
	long n;

	if (size < 3)
		return;
	memset(&tx, 0, sizeof(tx));
	memset(&rx, 0, sizeof(rx));
	sk_proto_derive(&tx.tx_key, &master_key, "fuzz", NULL, 0);
	rx.rx_key = tx.tx_key;
	tx.tx_seq = data[1];
	rx.rx_seq = data[2];
	len = size - 3 > 4096 ? 4096 : size - 3;
	n = sk_chan_encode(&tx, buf, sizeof(buf), data[0], 0, 1, data + 3, len);
	if (n > 0)
		sk_chan_open(&rx, buf, (size_t)n, &f, &why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready) {
		sk_proto_master_key(&master_key, "fuzzing secret 0123456789", 25);
		sk_proto_derive(&dgram_key, &master_key, "dgram", NULL, 0);
		ready = 1;
	}
	if (size == 0)
		return 0;
	if (data[0] & 1)
		fuzz_sealed(data + 1, size - 1);
	else
		fuzz_raw(data + 1, size - 1);
	return 0;
}
