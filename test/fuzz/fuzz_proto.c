/* test/fuzz/fuzz_proto.c: libFuzzer target for the frame decoders (stream, handshake, datagram). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proto.h"

static struct sk_key master_key, dgram_key;
static int ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[SK_HS_FRAME_LEN];
	struct sk_chan c;
	struct sk_frame f;
	struct sk_hs hs;
	enum sk_reject why;
	uint64_t last = 0;
	size_t off = 0;
	int i;

	if (!ready) {
		sk_proto_master_key(&master_key, "fuzzing secret 0123456789", 25);
		sk_proto_derive(&dgram_key, &master_key, "dgram", NULL, 0);
		ready = 1;
	}
	/* A stream: decode frames back to back until one is incomplete or refused. */
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
	return 0;
}
