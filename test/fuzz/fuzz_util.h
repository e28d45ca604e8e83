/* test/fuzz/fuzz_util.h: what the libFuzzer targets share: a property check and an exact-size copy. */
#ifndef SK_FUZZ_UTIL_H
#define SK_FUZZ_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A property that must hold: abort, so libFuzzer keeps the input. */
#define CHECK(cond)              \
	do {                     \
		if (!(cond))     \
			abort(); \
	} while (0)

/* The input in a buffer of exactly its size, so ASan sees any read past its end. */
static inline uint8_t *dup_exact(const uint8_t *data, size_t size)
{
	uint8_t *p = malloc(size ? size : 1);

	CHECK(p);
	if (size)
		memcpy(p, data, size);
	return p;
}

#endif
