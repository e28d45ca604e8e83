/* test/unit/test_gen.c: data generations — classification of two copies, new currents, the wire form and its refusals. */
#include <criterion/criterion.h>

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "gen.h"
#include "replmsg.h"

static struct sk_gen G(uint64_t cur, uint64_t shared, unsigned n, uint64_t h0, uint64_t h1)
{
	struct sk_gen g = { .current = cur, .shared = shared, .n_hist = (uint8_t)n };

	g.hist[0] = h0;
	g.hist[1] = h1;
	return g;
}

Test(gen, equal_and_fresh)
{
	struct sk_gen a = G(7, 7, 0, 0, 0), b = G(7, 7, 0, 0, 0), z = G(0, 0, 0, 0, 0);

	cr_assert_eq(sk_gen_classify(&a, &b), SK_GEN_EQUAL);
	cr_assert_eq(sk_gen_classify(&z, &z), SK_GEN_EQUAL);
	/* a copy that never held data is behind any copy that did */
	cr_assert_eq(sk_gen_classify(&a, &z), SK_GEN_LOCAL_NEWER);
	cr_assert_eq(sk_gen_classify(&z, &a), SK_GEN_PEER_NEWER);
}

Test(gen, ancestor_either_way)
{
	/* primary lost its peer at X and moved on to Y; the peer still holds X */
	struct sk_gen prim = G(0xb, 0xa, 1, 0xa, 0), sec = G(0xa, 0xa, 0, 0, 0);

	cr_assert_eq(sk_gen_classify(&prim, &sec), SK_GEN_LOCAL_NEWER);
	cr_assert_eq(sk_gen_classify(&sec, &prim), SK_GEN_PEER_NEWER);
	/* two failovers later the old current is still in the history */
	prim = G(0xd, 0xc, 2, 0xc, 0xb);
	sec = G(0xb, 0xb, 1, 0xa, 0);
	cr_assert_eq(sk_gen_classify(&prim, &sec), SK_GEN_LOCAL_NEWER);
	cr_assert_eq(sk_gen_classify(&sec, &prim), SK_GEN_PEER_NEWER);
}

Test(gen, diverged)
{
	/* both were primary after sharing X: split brain, seen the same from both sides */
	struct sk_gen a = G(0xb, 0xa, 1, 0xa, 0), b = G(0xc, 0xa, 1, 0xa, 0);

	cr_assert_eq(sk_gen_classify(&a, &b), SK_GEN_DIVERGED);
	cr_assert_eq(sk_gen_classify(&b, &a), SK_GEN_DIVERGED);
	/* unrelated data (nothing in common) is never resynced by itself either */
	a = G(0x11, 0, 0, 0, 0);
	b = G(0x22, 0, 0, 0, 0);
	cr_assert_eq(sk_gen_classify(&a, &b), SK_GEN_DIVERGED);
}

Test(gen, new_current_keeps_four)
{
	struct sk_gen g = G(1, 0, 0, 0, 0);

	for (uint64_t id = 2; id <= 7; id++)
		sk_gen_new_current(&g, id);
	cr_assert_eq(g.current, 7);
	cr_assert_eq(g.n_hist, SK_GEN_HIST);
	cr_assert_eq(g.hist[0], 6);
	cr_assert_eq(g.hist[3], 3);
	/* from no data: nothing goes to the history */
	g = G(0, 0, 0, 0, 0);
	sk_gen_new_current(&g, 9);
	cr_assert_eq(g.n_hist, 0);
	cr_assert_eq(g.current, 9);
}

Test(gen, random_ids)
{
	cr_assert_geq(sodium_init(), 0);
	uint64_t a = sk_gen_random_id(), b = sk_gen_random_id();

	cr_assert_neq(a, 0);
	cr_assert_neq(a, b);
}

Test(gen, wire_round_trip_and_refusals)
{
	struct sk_gen_wire w = { .g = G(0x1234, 0x99, 2, 0x99, 0x55), .verdict = SK_GEN_V_DIVERGED,
				 .changed_files = 120, .changed_bytes = SK_GEN_UNKNOWN }, d;
	uint8_t b[SK_GEN_WIRE_LEN], c[SK_GEN_WIRE_LEN];

	sk_gen_encode(&w, b);
	cr_assert_eq(sk_gen_decode(b, sizeof(b), &d), 0);
	cr_assert_eq(d.g.current, 0x1234);
	cr_assert_eq(d.g.shared, 0x99);
	cr_assert_eq(d.g.n_hist, 2);
	cr_assert_eq(d.g.hist[1], 0x55);
	cr_assert_eq(d.verdict, SK_GEN_V_DIVERGED);
	cr_assert_eq(d.changed_files, 120);
	cr_assert_eq(d.changed_bytes, SK_GEN_UNKNOWN);
	sk_gen_encode(&d, c);
	cr_assert_eq(memcmp(b, c, sizeof(b)), 0, "the encoding is canonical");

	cr_assert_eq(sk_gen_decode(b, sizeof(b) - 1, &d), -EBADMSG, "short");
	memcpy(c, b, sizeof(b));
	c[0] = 2;
	cr_assert_eq(sk_gen_decode(c, sizeof(c), &d), -EBADMSG, "version");
	memcpy(c, b, sizeof(b));
	c[1] = SK_GEN_HIST + 1;
	cr_assert_eq(sk_gen_decode(c, sizeof(c), &d), -EBADMSG, "history count");
	memcpy(c, b, sizeof(b));
	c[2] = SK_GEN_V__MAX + 1;
	cr_assert_eq(sk_gen_decode(c, sizeof(c), &d), -EBADMSG, "verdict");
	memcpy(c, b, sizeof(b));
	c[5] = 1;
	cr_assert_eq(sk_gen_decode(c, sizeof(c), &d), -EBADMSG, "reserved");
	memcpy(c, b, sizeof(b));
	c[24 + 8 * 3 + 7] = 1; /* an id in an unused history slot */
	cr_assert_eq(sk_gen_decode(c, sizeof(c), &d), -EBADMSG, "unused slot");
	memcpy(c, b, sizeof(b));
	memset(c + 24 + 8, 0, 8); /* a used slot holding 0 */
	cr_assert_eq(sk_gen_decode(c, sizeof(c), &d), -EBADMSG, "empty used slot");
}

Test(gen, id_strings)
{
	char s[17];
	uint64_t v;

	sk_gen_id_str(0xa3f09c1d22e0b7c4ull, s);
	cr_assert_str_eq(s, "a3f09c1d22e0b7c4");
	cr_assert_eq(sk_gen_id_parse(s, &v), 0);
	cr_assert_eq(v, 0xa3f09c1d22e0b7c4ull);
	cr_assert_eq(sk_gen_id_parse("", &v), -EINVAL);
	cr_assert_eq(sk_gen_id_parse("12345678901234567", &v), -EINVAL);
	cr_assert_eq(sk_gen_id_parse("-1", &v), -EINVAL);
	cr_assert_eq(sk_gen_id_parse("0x1", &v), -EINVAL);
}

/* START carries the primary's set as its data, and the survivor bit beside the mode. */
Test(gen, start_frame)
{
	struct sk_gen_wire w = { .g = G(5, 4, 1, 4, 0) };
	uint8_t gb[SK_GEN_WIRE_LEN], hdr[SK_RMSG_OP_HDR], p[SK_RMSG_OP_HDR + SK_GEN_WIRE_LEN];
	struct sk_rmsg_op op = { .type = SK_RMSG_START, .flags = SK_REPL_SYNC | SK_START_F_SURVIVOR,
				 .data = gb, .data_len = sizeof(gb) }, d;
	const char *why = NULL;
	long n;

	sk_gen_encode(&w, gb);
	n = sk_rmsg_op_encode(&op, hdr, sizeof(hdr));
	cr_assert_eq(n, SK_RMSG_OP_HDR);
	memcpy(p, hdr, (size_t)n);
	memcpy(p + n, gb, sizeof(gb));
	cr_assert_eq(sk_rmsg_op_decode(SK_RMSG_START, p, sizeof(p), &d, &why), 0, "%s", why);
	cr_assert_eq(d.flags & SK_START_F_SURVIVOR, SK_START_F_SURVIVOR);
	cr_assert_eq(d.data_len, SK_GEN_WIRE_LEN);
	/* a generation set of another size is refused, by the encoder and the decoder */
	op.data_len = sizeof(gb) - 1;
	cr_assert_lt(sk_rmsg_op_encode(&op, hdr, sizeof(hdr)), 0);
	sk_put_u32(p + 124, SK_GEN_WIRE_LEN - 1);
	cr_assert_lt(sk_rmsg_op_decode(SK_RMSG_START, p, sizeof(p) - 1, &d, &why), 0);
	/* a START from a primary older than generations (no data) still decodes */
	op.data_len = 0;
	n = sk_rmsg_op_encode(&op, hdr, sizeof(hdr));
	cr_assert_eq(sk_rmsg_op_decode(SK_RMSG_START, hdr, (size_t)n, &d, &why), 0, "%s", why);
	/* an unknown START flag is refused */
	op.data_len = sizeof(gb);
	op.flags = SK_REPL_SYNC | 0x40;
	cr_assert_lt(sk_rmsg_op_encode(&op, hdr, sizeof(hdr)), 0);
}
