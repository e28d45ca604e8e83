/* test/fuzz/fuzz_ownlist.c: libFuzzer target for the OWNLIST decoder (a returning copy's own changes, read by the primary as hostile input). */
/*
 * The first input byte picks the mode, the rest is the payload, copied into a buffer of exactly
 * its size (a built frame: the rest of its buffer poisoned) so that any read past it is an ASan error. Properties (abort() on violation):
 *   - raw: whatever sk_rmsg_own_decode accepts has a size within [SK_OWN_HDR, SK_OWN_FRAME_MAX],
 *     known flags only, and exactly `count` entries, each of a known kind, with a path that fits
 *     the PATH_MAX buffer the primary copies it into, lies inside the input and follows the
 *     stream's path rules (the root only for directories); sk_rmsg_own_next then ends with 0 and
 *     nothing left; header + entries re-encoded (sk_rmsg_own_hdr, sk_rmsg_own_put) give back the
 *     input byte for byte (the encoding is canonical); a refused payload is refused again;
 *   - built: entries taken from the input (kinds 0..4, paths from an alphabet that includes the
 *     refused components, lengths up to the u16 the wire allows, laid out by hand when the encoder
 *     refuses them), a count that may be off by one, a frame that may be one byte short: the
 *     decoder accepts it exactly when every entry is one the encoder accepts and the count and
 *     length add up, and then gives back the same entries.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sanitizer/asan_interface.h>

#include "fuzz_util.h"
#include "replmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_raw(const uint8_t *in, size_t n)
{
	static uint8_t out[SK_OWN_FRAME_MAX];
	uint32_t flags = 0, count = 0, k = 0, flags2, count2;
	struct sk_rd r, r2;
	size_t w = SK_OWN_HDR;
	const char *path;
	uint16_t len;
	uint8_t kind;
	int rc;

	if (sk_rmsg_own_decode(in, n, &flags, &count, &r) < 0) {
		CHECK(sk_rmsg_own_decode(in, n, &flags2, &count2, &r2) == -EBADMSG);
		return;
	}
	CHECK(n >= SK_OWN_HDR && n <= SK_OWN_FRAME_MAX);
	CHECK((flags & ~(SK_OWN_F_LAST | SK_OWN_F_UNKNOWN)) == 0);
	sk_rmsg_own_hdr(flags, count, out);
	while ((rc = sk_rmsg_own_next(&r, &kind, &path, &len)) == 1) {
		long e;

		CHECK(kind == SK_OWN_FILE || kind == SK_OWN_DIR || kind == SK_OWN_WALK);
		CHECK(len <= SK_RMSG_PATH_MAX);
		CHECK(inside(path, len, in, n));
		CHECK(kind != SK_OWN_FILE || len > 0);
		CHECK(len == 0 || memchr(path, '\0', len) == NULL);
		CHECK(sk_rmsg_path_ok(path, len, kind != SK_OWN_FILE));
		e = sk_rmsg_own_put(kind, path, len, out + w, sizeof(out) - w);
		CHECK(e == 3 + (long)len);
		w += (size_t)e;
		k++;
	}
	CHECK(rc == 0 && r.left == 0 && !r.err);
	CHECK(k == count);
	CHECK(w == n && memcmp(out, in, n) == 0);
}

#define BUILT_MAX 8

static void fuzz_built(const uint8_t *in, size_t n)
{
	static uint8_t frame[SK_OWN_HDR + 3 + 65535 + BUILT_MAX * (3 + 64)];
	static char longp[65535]; /* "a/a/.../a": valid components, any length */
	char small[BUILT_MAX][64];
	const char *paths[BUILT_MAX];
	struct src s = { in, n };
	uint8_t kinds[BUILT_MAX];
	uint16_t lens[BUILT_MAX];
	size_t w = SK_OWN_HDR, m = take(&s, 1) % (BUILT_MAX + 1), len;
	uint32_t count = (uint32_t)m, flags, fl2, cnt2;
	bool good = true, had_long = false;
	struct sk_rd r;
	int rc;

	flags = (uint32_t)take(&s, 1) % 5; /* 4: an unknown flag */
	good = flags < 4;
	for (size_t i = 0; i < m; i++) {
		long e;

		kinds[i] = (uint8_t)(take(&s, 1) % 5); /* 0 and 4: unknown kinds */
		if (!had_long && take(&s, 1) % 8 == 0) {
			/* long (one per frame: big frames are slow under ASan): just at the bound, just
			 * past it, or any length the wire's u16 allows (no path buffer holds it) */
			size_t want = take(&s, 1) % 4 ? SK_RMSG_PATH_MAX + 2 * (take(&s, 1) % 2)
						      : (size_t)take(&s, 2);

			had_long = true;

			if (!longp[0])
				for (size_t j = 0; j < sizeof(longp); j++)
					longp[j] = (j % 2) ? '/' : 'a';
			len = want - (want && want % 2 == 0); /* never a trailing slash */
			paths[i] = longp;
		} else {
			len = make_path(&s, small[i], sizeof(small[i]));
			paths[i] = small[i];
		}
		lens[i] = (uint16_t)len;
		e = sk_rmsg_own_put(kinds[i], paths[i], len, frame + w, sizeof(frame) - w);
		if (e < 0) {
			CHECK(e == -EINVAL); /* the buffer holds any u16 length */
			good = false;
			/* laid out by hand: the decoder must refuse it */
			frame[w] = kinds[i];
			sk_put_u16(frame + w + 1, (uint16_t)len);
			memcpy(frame + w + 3, paths[i], len);
			e = (long)(3 + len);
		}
		w += (size_t)e;
	}
	switch (take(&s, 1) % 8) {
	case 0:
		count++;
		good = false;
		break;
	case 1:
		if (count) {
			count--;
			good = false;
		}
		break;
	case 2:
		if (w > SK_OWN_HDR) {
			w--; /* one byte short */
			good = false;
		}
		break;
	default:
		break;
	}
	if (w > SK_OWN_FRAME_MAX)
		good = false;
	sk_rmsg_own_hdr(flags == 4 ? 0x80u : flags, count, frame);
	{
		/* the frame's end poisoned rather than copied: a 64 KiB malloc per run is slow under ASan */
		uint8_t *exact = frame;

		ASAN_POISON_MEMORY_REGION(frame + w, sizeof(frame) - w);
		rc = sk_rmsg_own_decode(exact, w, &fl2, &cnt2, &r);
		CHECK((rc == 0) == good);
		if (rc == 0) {
			const char *p;
			uint16_t l;
			uint8_t k;

			CHECK(fl2 == flags && cnt2 == count);
			for (size_t i = 0; i < m; i++) {
				CHECK(sk_rmsg_own_next(&r, &k, &p, &l) == 1);
				CHECK(k == kinds[i] && l == lens[i] && memcmp(p, paths[i], l) == 0);
				CHECK(inside(p, l, exact, w));
			}
			CHECK(sk_rmsg_own_next(&r, &k, &p, &l) == 0);
		}
		fuzz_raw(exact, w);
		ASAN_UNPOISON_MEMORY_REGION(frame + w, sizeof(frame) - w);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *in;

	if (size == 0)
		return 0;
	in = dup_exact(data + 1, size - 1);
	if (data[0] < 128)
		fuzz_raw(in, size - 1);
	else
		fuzz_built(in, size - 1);
	free(in);
	return 0;
}
