/* test_crc32c.c — CRC-32C: the known check values, and the hardware
 * (SSE4.2) and table-driven implementations agree on random buffers of
 * every length and alignment, also when a CRC is continued piecewise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crc32c.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return rng;
}

/* RFC 3720 (iSCSI) B.4 and the usual "123456789" check value. */
static void test_known_values(void **state)
{
	uint8_t zeros[32] = {0}, ones[32], inc[32];

	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 32; i++)
		inc[i] = (uint8_t)i;
	assert_int_equal(crc32c_extend(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(crc32c_extend_sw(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(crc32c_extend(0, zeros, 32), 0x8A9136AAu);
	assert_int_equal(crc32c_extend(0, ones, 32), 0x62A8AB43u);
	assert_int_equal(crc32c_extend(0, inc, 32), 0x46DD794Eu);
	assert_int_equal(crc32c_extend(0, NULL, 0), 0);
	printf("crc32c: %s\n", crc32c_hw() ? "SSE4.2 crc32 instruction" : "tables only");
}

static void test_hw_matches_sw(void **state)
{
	static uint8_t buf[70000];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)next();
	for (int round = 0; round < 3000; round++) {
		size_t off = next() % 64, len = round < 200 ? (size_t)round : next() % (sizeof(buf) - 64);
		uint32_t seed = round % 3 ? (uint32_t)next() : 0;
		uint32_t a = crc32c_extend(seed, buf + off, len);
		uint32_t b = crc32c_extend_sw(seed, buf + off, len);

		assert_int_equal(a, b);
		/* Piecewise equals whole. */
		size_t cut = len ? next() % len : 0;
		assert_int_equal(crc32c_extend(crc32c_extend(seed, buf + off, cut), buf + off + cut,
					       len - cut),
				 a);
	}
}

/* MiB-sized buffers take the three-lane path many times over (and its
 * remainders): the same values as the tables, whole and in pieces. */
static void test_long_buffers(void **state)
{
	const size_t size = (1u << 20) + 100;
	uint8_t *buf = malloc(size);

	assert_non_null(buf);
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)next();
	for (int round = 0; round < 20; round++) {
		size_t off = next() % 64, len = round ? next() % (size - 64) : size - 64;
		uint32_t seed = (uint32_t)next();
		uint32_t a = crc32c_extend(seed, buf + off, len);
		size_t cut = len ? next() % len : 0;

		assert_int_equal(a, crc32c_extend_sw(seed, buf + off, len));
		assert_int_equal(crc32c_extend(crc32c_extend(seed, buf + off, cut), buf + off + cut,
					       len - cut),
				 a);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_values),
	    cmocka_unit_test(test_hw_matches_sw),
	    cmocka_unit_test(test_long_buffers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
