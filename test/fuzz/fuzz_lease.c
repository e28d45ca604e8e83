/* test/fuzz/fuzz_lease.c: libFuzzer target for the lease witness payloads, its grant table and skfused's lease command. */
/*
 * Properties checked (abort() on violation, so libFuzzer reports a crash):
 *  - the decoders never read past their input (exactly sized heap copies, so ASan sees one byte
 *    too far) and what they accept re-encodes to the same bytes;
 *  - the grant table, fed the decoded requests with a clock the input drives, never has two
 *    nodes holding one module's lease at once, grants nothing during its start grace, and
 *    never hands the lease to another node before the holder's lease ended + margin;
 *  - the lease command parser accepts only valid_ms 0..SK_LEASE_VALID_MAX.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sk_lease_table t;
	struct sk_lease_req q;
	struct sk_lease_reply r;
	struct sk_lease_ctl lc;
	uint8_t out[64];
	uint8_t *p = dup_exact(data, size);
	uint64_t now = 1000;
	char err[160];

	if (sk_lease_req_decode(p, size, &q) == 0) {
		CHECK(sk_lease_req_encode(&q, out, sizeof(out)) == SK_LEASE_REQ_LEN);
		CHECK(!memcmp(out, p, SK_LEASE_REQ_LEN));
	}
	if (sk_lease_reply_decode(p, size, &r) == 0) {
		CHECK(r.valid_ms <= SK_LEASE_VALID_MAX);
		CHECK(sk_lease_reply_encode(&r, out, sizeof(out)) == SK_LEASE_REPLY_LEN);
		CHECK(!memcmp(out, p, SK_LEASE_REPLY_LEN));
	}
	if (sk_lease_ctl_parse((const char *)p, size, &lc, err, sizeof(err)) == 0)
		CHECK(lc.valid_ms <= SK_LEASE_VALID_MAX);

	/* the table: every 4 bytes are (clock step, node 1..4, op, module 1..3) */
	sk_lease_table_init(&t, 2000, 250, now);
	{
		uint8_t holder[4] = { 0 };
		uint64_t until[4] = { 0 };

		for (size_t i = 0; i + 4 <= size && i < 4 * 512; i += 4) {
			struct sk_lease_req rq = { .node = (uint8_t)(1 + p[i + 1] % 4),
						   .op = (uint8_t)(1 + p[i + 2] % 2),
						   .module = (uint32_t)(1 + p[i + 3] % 3), .nonce = 1 };
			unsigned m = rq.module;

			now += (uint64_t)p[i] * 20;
			memset(&r, 0, sizeof(r));
			sk_lease_table_ask(&t, now, &rq, &r);
			if (r.result != SK_LEASE_GRANTED) {
				if (rq.op == SK_LEASE_RELEASE && holder[m] == rq.node && until[m] > now)
					until[m] = now;
				continue;
			}
			CHECK(now >= 1000 + 2000 + 250);
			CHECK(r.holder == rq.node && r.valid_ms == 2000);
			if (holder[m] && holder[m] != rq.node)
				CHECK(now >= until[m] + 250);
			holder[m] = rq.node;
			until[m] = now + 2000;
		}
	}
	free(p);
	return 0;
}
