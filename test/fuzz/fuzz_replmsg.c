/* test/fuzz/fuzz_replmsg.c: libFuzzer target for every replication payload decoder and the control request parser. */
/*
 * The first input byte picks the decoder (and for operations the frame type; 184..187 the
 * generation set of START and GEN, 188..191 a listing's RS_EMPTY answer); the rest is
 * the payload (RS_DIR entries plain or with SK_RO_DMETA metadata), copied into a buffer of exactly its size so that any read past it is an ASan
 * error. Properties asserted (abort() on violation, which libFuzzer reports as a crash):
 *   - whatever a decoder accepts has lengths that fit the buffers the secondary copies them
 *     into (paths PATH_MAX, names NAME_MAX, symlink targets PATH_MAX, xattr values, data);
 *   - every decoded pointer lies inside the input;
 *   - decode -> encode gives back the input byte for byte (all these encodings are canonical:
 *     lengths must add up exactly, reserved fields are zero, no padding);
 *   - the control parser's error text is always a terminated string within its buffer, and
 *     an accepted request parses again the same from its canonical rendering;
 *   - an op built from the input that the encoder accepts decodes to the same fields, and the
 *     same op with one bit flipped is refused or holds all of the above.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gen.h"
#include "replmsg.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t data_max(uint8_t type)
{
	switch (type) {
	case SK_RMSG_WRITE:
	case SK_RMSG_RS_DIR:
	case SK_RMSG_RS_DATA:
	case SK_RMSG_RS_META:
		return SK_RMSG_DATA_MAX;
	case SK_RMSG_SYMLINK:
		return SK_RMSG_PATH_MAX;
	case SK_RMSG_START:
		return SK_GEN_WIRE_LEN; /* the primary's generations */
	case SK_RMSG_SETXATTR:
		return SK_RMSG_XATTR_VAL_MAX;
	default:
		return 0;
	}
}

static void fuzz_op(uint8_t type, const uint8_t *in, size_t n)
{
	static uint8_t hdr[SK_RMSG_OP_HDR + 2 * SK_RMSG_PATH_MAX + SK_RMSG_NAME_MAX];
	struct sk_rmsg_op op;
	const char *why = NULL;
	long e;

	if (sk_rmsg_op_decode(type, in, n, &op, &why) < 0) {
		CHECK(why != NULL);
		return;
	}
	CHECK(op.type == type);
	CHECK(op.path1_len <= SK_RMSG_PATH_MAX && op.path2_len <= SK_RMSG_PATH_MAX);
	CHECK(op.name_len <= SK_RMSG_NAME_MAX);
	CHECK(op.data_len <= data_max(type));
	CHECK(inside(op.path1, op.path1_len, in, n) && inside(op.path2, op.path2_len, in, n));
	CHECK(inside(op.name, op.name_len, in, n) && inside(op.data, op.data_len, in, n));
	if (op.path1_len)
		CHECK(sk_rmsg_path_ok(op.path1, op.path1_len, true));
	if (op.path2_len)
		CHECK(sk_rmsg_path_ok(op.path2, op.path2_len, true));
	CHECK(op.atime.nsec < 1000000000u && op.mtime.nsec < 1000000000u);
	e = sk_rmsg_op_encode(&op, hdr, sizeof(hdr));
	CHECK(e > 0);
	CHECK((size_t)e + op.data_len == n);
	CHECK(memcmp(hdr, in, (size_t)e) == 0);
	CHECK(op.data_len == 0 || op.data == in + e);
}

static void fuzz_ack(const uint8_t *in, size_t n)
{
	struct sk_rmsg_ack a;
	uint8_t out[SK_RMSG_ACK_LEN];

	if (sk_rmsg_ack_decode(in, n, &a) < 0)
		return;
	CHECK(n == SK_RMSG_ACK_LEN && a.err >= 0 && a.err <= 4095);
	sk_rmsg_ack_encode(&a, out);
	CHECK(memcmp(out, in, n) == 0);
}

static void fuzz_sums(const uint8_t *in, size_t n)
{
	struct sk_rmsg_sums s;
	uint8_t out[SK_RMSG_SUMS_HDR];

	if (sk_rmsg_sums_decode(in, n, &s) < 0)
		return;
	CHECK(s.count <= SK_RMSG_SUMS_MAX && s.off % SK_RMSG_BLOCK == 0);
	CHECK(n == SK_RMSG_SUMS_HDR + (size_t)s.count * SK_RMSG_SUM_LEN);
	CHECK(inside(s.sums, (size_t)s.count * SK_RMSG_SUM_LEN, in, n));
	sk_rmsg_sums_encode_hdr(&s, out);
	CHECK(memcmp(out, in, SK_RMSG_SUMS_HDR) == 0);
}

/* RS_DIR entries, plain or with SK_RO_DMETA's per-entry metadata */
static void fuzz_dirents(const uint8_t *in, size_t n, bool meta)
{
	static uint8_t out[2 + SK_RMSG_NAME_MAX + 34 + SK_RMSG_PATH_MAX + SK_RMSG_DMETA_LEN];
	struct sk_rmsg_dmeta m;
	struct sk_rmsg_dirent e;
	struct sk_rd r;
	int rc, k = 0;

	sk_rd_init(&r, in, n);
	for (;;) {
		const uint8_t *at = r.p;
		size_t left = r.left;
		long w;

		rc = meta ? sk_rmsg_dirent_meta_next(&r, &e, &m) : sk_rmsg_dirent_next(&r, &e);
		if (rc <= 0)
			break;
		if (meta)
			CHECK(m.atime.nsec < 1000000000u && m.mtime.nsec < 1000000000u &&
			      (!(m.flags & SK_RD_COMPLETE) || (S_ISREG(e.mode) && e.nlink == 1)));
		CHECK(e.name_len >= 1 && e.name_len <= SK_RMSG_NAME_MAX);
		CHECK(e.target_len <= SK_RMSG_PATH_MAX);
		CHECK(inside(e.name, e.name_len, in, n) && inside(e.target, e.target_len, in, n));
		CHECK(S_ISLNK(e.mode) ? e.target_len > 0 : e.target_len == 0);
		w = meta ? sk_rmsg_dirent_meta_put(&e, &m, out, sizeof(out))
			 : sk_rmsg_dirent_put(&e, out, sizeof(out));
		CHECK(w > 0 && (size_t)w == left - r.left);
		CHECK(memcmp(out, at, (size_t)w) == 0);
		k++;
	}
	CHECK(rc == 0 || rc == -EBADMSG);
	if (rc == 0)
		CHECK(r.left == 0 && !r.err);
	(void)k;
}

static void fuzz_xattrs(const uint8_t *in, size_t n)
{
	static uint8_t out[1 + 255 + 4 + SK_RMSG_XATTR_VAL_MAX];
	const char *name;
	const uint8_t *val;
	uint8_t nl;
	uint32_t vl;
	struct sk_rd r;
	int rc;

	sk_rd_init(&r, in, n);
	for (;;) {
		const uint8_t *at = r.p;
		size_t left = r.left;
		long w;

		rc = sk_rmsg_xattr_next(&r, &name, &nl, &val, &vl);
		if (rc <= 0)
			break;
		CHECK(nl >= 1 && vl <= SK_RMSG_XATTR_VAL_MAX);
		CHECK(inside(name, nl, in, n) && inside(val, vl, in, n));
		CHECK(memchr(name, '\0', nl) == NULL);
		w = sk_rmsg_xattr_put(name, nl, val, vl, out, sizeof(out));
		CHECK(w > 0 && (size_t)w == left - r.left);
		CHECK(memcmp(out, at, (size_t)w) == 0);
	}
	CHECK(rc == 0 || rc == -EBADMSG);
}

static void fuzz_rctl(const uint8_t *in, size_t n)
{
	struct sk_rctl_req q, q2;
	char err[96], canon[64];
	int rc;

	memset(err, 'X', sizeof(err));
	rc = sk_rctl_parse((const char *)in, n, &q, err, sizeof(err));
	if (rc < 0) {
		CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
		return;
	}
	CHECK(q.cmd == SK_RCTL_STATUS || q.cmd == SK_RCTL_ROLE);
	if (q.cmd == SK_RCTL_ROLE) {
		CHECK(q.role == SK_RCTL_PRIMARY || q.role == SK_RCTL_SECONDARY);
		snprintf(canon, sizeof(canon), "{\"cmd\":\"role\",\"role\":\"%s\"}",
			 q.role == SK_RCTL_PRIMARY ? "primary" : "secondary");
	} else {
		snprintf(canon, sizeof(canon), "{\"cmd\":\"status\"}");
	}
	CHECK(sk_rctl_parse(canon, strlen(canon), &q2, err, sizeof(err)) == 0);
	CHECK(q2.cmd == q.cmd && q2.role == q.role);
}

/*
 * Structured: an op built from the input is encoded by the library; whatever the encoder
 * accepts must decode to the same fields (encode -> decode -> encode), and one byte of
 * it flipped must be refused or decode with all the properties of fuzz_op.
 */
static void fuzz_built(const uint8_t *in, size_t n)
{
	static uint8_t wire[SK_RMSG_OP_HDR + 2 * SK_RMSG_PATH_MAX + SK_RMSG_NAME_MAX + 512];
	static uint8_t hdr[sizeof(wire)];
	char p1[64], p2[64], nm[64];
	uint8_t dat[256];
	struct src s = { in, n };
	struct sk_rmsg_op op, out;
	const char *why;
	size_t flip;
	long e, e2;

	memset(&op, 0, sizeof(op));
	op.type = (uint8_t)take(&s, 1) % 64;
	op.fh = take(&s, 1) ? take(&s, 8) : 0;
	op.fh2 = take(&s, 8);
	op.off = take(&s, 8);
	op.off2 = take(&s, 8);
	op.len = take(&s, 8);
	op.rdev = take(&s, 8);
	op.mode = (uint32_t)take(&s, 4);
	op.uid = (uint32_t)take(&s, 4);
	op.gid = (uint32_t)take(&s, 4);
	op.flags = (uint32_t)take(&s, 1);
	op.valid = (uint32_t)take(&s, 1);
	op.atime.sec = (int64_t)take(&s, 8);
	op.atime.nsec = (uint32_t)take(&s, 4) % 1000000000u;
	op.mtime.nsec = (uint32_t)take(&s, 4) % 1000000000u;
	op.path1 = p1;
	op.path1_len = (uint16_t)make_path(&s, p1, sizeof(p1));
	op.path2 = p2;
	op.path2_len = (uint16_t)make_path(&s, p2, sizeof(p2));
	op.name = nm;
	op.name_len = (uint16_t)(take(&s, 1) % 8);
	memset(nm, 'n', op.name_len);
	op.data_len = (uint32_t)(take(&s, 1) % sizeof(dat));
	for (uint32_t i = 0; i < op.data_len; i++)
		dat[i] = (uint8_t)take(&s, 1);
	op.data = dat;
	flip = (size_t)take(&s, 2);
	e = sk_rmsg_op_encode(&op, hdr, sizeof(hdr));
	if (e < 0)
		return;
	memcpy(wire, hdr, (size_t)e);
	memcpy(wire + e, dat, op.data_len);
	CHECK(sk_rmsg_op_decode(op.type, wire, (size_t)e + op.data_len, &out, &why) == 0);
	CHECK(out.fh == op.fh && out.fh2 == op.fh2 && out.off == op.off && out.len == op.len);
	CHECK(out.mode == op.mode && out.flags == op.flags && out.valid == op.valid);
	CHECK(out.path1_len == op.path1_len && out.path2_len == op.path2_len);
	CHECK(out.data_len == op.data_len && memcmp(out.data, dat, op.data_len) == 0);
	e2 = sk_rmsg_op_encode(&out, hdr, sizeof(hdr));
	CHECK(e2 == e && memcmp(hdr, wire, (size_t)e) == 0);
	flip %= (size_t)e + op.data_len;
	wire[flip] ^= (uint8_t)(1u << (take(&s, 1) % 8));
	fuzz_op(op.type, wire, (size_t)e + op.data_len);
}

/*
 * Structured dirent: lengths taken from the input as they are (up to 65535, the u16 the wire
 * allows) and the bytes to match, laid out by hand (the encoder refuses oversized ones): the
 * decoder must refuse whatever does not fit the secondary's buffers.
 */
static void fuzz_dirent_built(const uint8_t *in, size_t n)
{
	static const uint32_t types[] = { S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFCHR, 0170000 };
	static uint8_t b[2 + 65535 + 34 + 65535];
	struct src s = { in, n };
	struct sk_rmsg_dirent e;
	struct sk_rd r;
	uint16_t nl = (uint16_t)(take(&s, 1) ? take(&s, 1) : take(&s, 2));
	uint16_t tl = (uint16_t)(take(&s, 1) ? take(&s, 1) : take(&s, 2));
	uint32_t mode = types[take(&s, 1) % 6] | (uint32_t)(take(&s, 2) & 07777);
	size_t len;

	sk_put_u16(b, nl);
	memset(b + 2, 'n', nl);
	memset(b + 2 + nl, 0, 34);
	sk_put_u32(b + 2 + nl, mode);
	sk_put_u16(b + 2 + nl + 32, tl);
	memset(b + 2 + nl + 34, 't', tl);
	len = 2 + (size_t)nl + 34 + tl - (take(&s, 1) == 1 ? 1 : 0); /* sometimes one byte short */
	fuzz_dirents(b, len, false);
	sk_rd_init(&r, b, len);
	if (sk_rmsg_dirent_next(&r, &e) == 1)
		CHECK(e.target_len <= SK_RMSG_PATH_MAX && e.name_len <= SK_RMSG_NAME_MAX);
}

/* GEN answer / START data: accepted sets are canonical and say what the wire said. */
static void fuzz_gen(const uint8_t *in, size_t n)
{
	struct sk_gen_wire w;
	uint8_t out[SK_GEN_WIRE_LEN];

	if (sk_gen_decode(in, n, &w) < 0)
		return;
	CHECK(n == SK_GEN_WIRE_LEN);
	CHECK(w.g.n_hist <= SK_GEN_HIST && w.verdict <= SK_GEN_V__MAX);
	for (unsigned i = 0; i < w.g.n_hist; i++)
		CHECK(w.g.hist[i] != 0);
	sk_gen_encode(&w, out);
	CHECK(memcmp(out, in, n) == 0);
	/* classification is total and symmetric in its two extreme answers */
	{
		enum sk_gen_rel a = sk_gen_classify(&w.g, &w.g);

		CHECK(a == SK_GEN_EQUAL);
	}
}

/* RS_EMPTY, the secondary's answer to a listing (the primary decodes it). */
static void fuzz_rs_empty(const uint8_t *in, size_t n)
{
	struct sk_rmsg_rs_empty a;
	uint8_t out[SK_RMSG_RS_EMPTY_LEN];

	if (sk_rmsg_rs_empty_decode(in, n, &a) < 0)
		return;
	CHECK(n == SK_RMSG_RS_EMPTY_LEN && a.req != 0 && a.count <= SK_RMSG_RS_EMPTY_ENTRIES);
	CHECK(a.count == 64 || (a.bits >> a.count) == 0); /* no bit at or past count */
	sk_rmsg_rs_empty_encode(&a, out);
	CHECK(memcmp(out, in, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t sel, *in;
	size_t n;

	if (size == 0)
		return 0;
	sel = data[0];
	n = size - 1;
	in = malloc(n ? n : 1); /* exactly the payload: a read past it is an ASan report */
	if (!in)
		return 0;
	memcpy(in, data + 1, n);
	if (sel < 64) /* frame types: known ones decode, the rest must be refused */
		fuzz_op(sel, in, n);
	else if (sel < 72)
		fuzz_dirents(in, n, false);
	else if (sel < 80)
		fuzz_dirents(in, n, true);
	else if (sel < 96)
		fuzz_dirent_built(in, n);
	else if (sel < 128)
		fuzz_xattrs(in, n);
	else if (sel < 160)
		fuzz_sums(in, n);
	else if (sel < 184)
		fuzz_ack(in, n);
	else if (sel < 188)
		fuzz_gen(in, n);
	else if (sel < 192)
		fuzz_rs_empty(in, n);
	else if (sel < 224)
		fuzz_rctl(in, n);
	else
		fuzz_built(in, n);
	free(in);
	return 0;
}
