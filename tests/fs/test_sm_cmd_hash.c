/* test_sm_cmd_hash.c — the command hash of the apply journal (a redo after a
 * crash must recognise its command by it): deterministic, sensitive to every
 * byte and to the length, whatever the alignment and the tail length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sm_journal.h"

#define LEN 300

static void fill(unsigned char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		b[i] = (unsigned char)(seed >> 16);
	}
}

/* Every length up to LEN and every start offset 0..7 hashes the same bytes
 * the same way: only content and length count, not alignment. */
static void test_alignment_independent(void **state)
{
	unsigned char src[LEN], buf[LEN + 8];

	(void)state;
	fill(src, LEN, 1);
	for (size_t len = 0; len <= LEN; len++) {
		uint64_t h = sm_cmd_hash(src, len);

		for (size_t off = 1; off < 8; off++) {
			memcpy(buf + off, src, len);
			assert_int_equal(sm_cmd_hash(buf + off, len), h);
		}
	}
}

/* Flipping any one bit of any byte, in the word lanes or in the tail,
 * changes the hash. */
static void test_every_bit_counts(void **state)
{
	unsigned char b[LEN];

	(void)state;
	fill(b, LEN, 2);
	for (size_t len = 1; len <= 70; len++) {
		uint64_t h = sm_cmd_hash(b, len);

		for (size_t i = 0; i < len; i++)
			for (int bit = 0; bit < 8; bit++) {
				b[i] ^= (unsigned char)(1u << bit);
				assert_int_not_equal(sm_cmd_hash(b, len), h);
				b[i] ^= (unsigned char)(1u << bit);
			}
	}
}

/* Zero bytes appended are not lost: prefixes of a zero buffer all differ. */
static void test_length_counts(void **state)
{
	unsigned char z[LEN] = {0};
	uint64_t seen[LEN + 1];

	(void)state;
	for (size_t len = 0; len <= LEN; len++) {
		seen[len] = sm_cmd_hash(z, len);
		for (size_t k = 0; k < len; k++)
			assert_int_not_equal(seen[k], seen[len]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_alignment_independent),
	    cmocka_unit_test(test_every_bit_counts),
	    cmocka_unit_test(test_length_counts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
