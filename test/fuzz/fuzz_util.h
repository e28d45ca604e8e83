/* test/fuzz/fuzz_util.h: what the libFuzzer targets share: a property check, an exact-size copy, input bytes as fields. */
#ifndef SK_FUZZ_UTIL_H
#define SK_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A property that must hold: say which, and abort, so libFuzzer keeps the input. */
#define CHECK(cond)                                                                           \
	do {                                                                                  \
		if (!(cond)) {                                                                \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                              \
		}                                                                             \
	} while (0)

/* [p, p + len) lies within the input [in, in + n) (an empty range anywhere). */
static inline bool inside(const void *p, size_t len, const uint8_t *in, size_t n)
{
	const uint8_t *q = p;

	return len == 0 || (q >= in && q <= in + n && len <= (size_t)(in + n - q));
}

/* The input in a buffer of exactly its size, so ASan sees any read past its end. */
static inline uint8_t *dup_exact(const uint8_t *data, size_t size)
{
	uint8_t *p = malloc(size ? size : 1);

	CHECK(p);
	if (size)
		memcpy(p, data, size);
	return p;
}

/* Input bytes as field values (bounded reads, zero past the end). */
struct src {
	const uint8_t *p;
	size_t n;
};

static inline uint64_t take(struct src *s, int bytes)
{
	uint64_t v = 0;

	while (bytes--) {
		v = (v << 8) | (s->n ? *s->p : 0);
		if (s->n) {
			s->p++;
			s->n--;
		}
	}
	return v;
}

/* A path of 0..3 components from a small alphabet that includes the refused ones, at most cap bytes. */
static inline size_t make_path(struct src *s, char *out, size_t cap)
{
	static const char *parts[] = { "a", "bb", ".", "..", "", "c/d", "x\0y", "long-name" };
	size_t n = 0, k = take(s, 1) % 4;

	for (size_t i = 0; i < k; i++) {
		const char *c = parts[take(s, 1) % 8];
		size_t cl = strcmp(c, "x\0y") == 0 ? 3 : strlen(c);

		if (n + 1 + cl > cap)
			break;
		if (i)
			out[n++] = '/';
		memcpy(out + n, c, cl);
		n += cl;
	}
	return n;
}

#endif
