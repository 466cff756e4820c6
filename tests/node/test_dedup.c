/* test_dedup.c — the duplicate table: exactly-once verdicts with many
 * proposals in flight per client, forgetting below min_pending, and a
 * serialization that round-trips and never trusts its input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dedup.h"

static void test_new_then_duplicate(void **state)
{
	dedup *d = dedup_new();
	int64_t r = 0;

	assert_int_equal(dedup_check(d, 7, 1, &r), DEDUP_NEW);
	assert_int_equal(dedup_record(d, 7, 1, 1, -17), 0);
	assert_int_equal(dedup_check(d, 7, 1, &r), DEDUP_DUPLICATE);
	assert_int_equal(r, -17);
	/* Another client with the same seq is a different command. */
	assert_int_equal(dedup_check(d, 8, 1, &r), DEDUP_NEW);
	/* Client 0 is never deduplicated. */
	assert_int_equal(dedup_record(d, 0, 1, 1, 5), 0);
	assert_int_equal(dedup_check(d, 0, 1, &r), DEDUP_NEW);
	assert_int_equal(dedup_clients(d), 1);
	dedup_free(d);
}

static void test_out_of_order_in_flight(void **state)
{
	dedup *d = dedup_new();
	int64_t r;

	/* Seqs 1..4 in flight; 3 lands first, then 1 (min_pending 1 all along). */
	assert_int_equal(dedup_record(d, 5, 3, 1, 30), 0);
	assert_int_equal(dedup_check(d, 5, 1, &r), DEDUP_NEW);
	assert_int_equal(dedup_record(d, 5, 1, 1, 10), 0);
	assert_int_equal(dedup_check(d, 5, 2, &r), DEDUP_NEW);
	assert_int_equal(dedup_check(d, 5, 3, &r), DEDUP_DUPLICATE);
	assert_int_equal(r, 30);
	/* Seq 5 proposed once 1 completed: min_pending 2 forgets seq 1. */
	assert_int_equal(dedup_record(d, 5, 5, 2, 50), 0);
	assert_int_equal(dedup_check(d, 5, 1, &r), DEDUP_STALE);
	assert_int_equal(dedup_check(d, 5, 2, &r), DEDUP_NEW);
	assert_int_equal(dedup_check(d, 5, 3, &r), DEDUP_DUPLICATE);
	assert_int_equal(dedup_check(d, 5, 5, &r), DEDUP_DUPLICATE);
	assert_int_equal(r, 50);
	dedup_free(d);
}

static dedup *sample(void)
{
	dedup *d = dedup_new();

	for (uint64_t c = 1; c <= 20; c++)
		for (uint64_t s = 1; s <= c % 7 + 1; s++)
			assert_int_equal(dedup_record(d, c * 0x9e3779b97f4a7c15ull, s,
						      s > 2 ? s - 2 : 1,
						      (int64_t)(c * 100 + s) * (s % 2 ? -1 : 1)),
					 0);
	return d;
}

static void test_serialize_roundtrip(void **state)
{
	dedup *d = sample(), *e;
	uint8_t *a, *b;
	size_t al, bl;
	int64_t r1, r2;

	assert_int_equal(dedup_serialize(d, &a, &al), 0);
	assert_int_equal(dedup_deserialize(a, al, &e), 0);
	assert_int_equal(dedup_serialize(e, &b, &bl), 0);
	assert_int_equal(al, bl);
	assert_memory_equal(a, b, al);
	for (uint64_t c = 1; c <= 20; c++)
		for (uint64_t s = 0; s <= 9; s++) {
			uint64_t id = c * 0x9e3779b97f4a7c15ull;
			int v1 = dedup_check(d, id, s, &r1), v2 = dedup_check(e, id, s, &r2);

			assert_int_equal(v1, v2);
			if (v1 == DEDUP_DUPLICATE)
				assert_int_equal(r1, r2);
		}
	free(a);
	free(b);
	dedup_free(d);
	dedup_free(e);
}

static void test_deserialize_untrusted(void **state)
{
	dedup *d = sample(), *e;
	uint64_t x = 0x2545F4914F6CDD1Dull;
	int ok = 0, refused = 0;
	uint8_t *a, *m;
	size_t al;

	assert_int_equal(dedup_serialize(d, &a, &al), 0);
	m = malloc(al);
	for (int i = 0; i < 3000; i++) {
		size_t len = al;

		memcpy(m, a, al);
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (i % 3 == 0)
			len = x % al; /* truncated */
		else
			m[x % al] ^= (uint8_t)(1u << (x >> 32) % 8); /* a flipped bit */
		if (dedup_deserialize(m, len, &e) == 0) {
			ok++;
			dedup_free(e);
		} else {
			refused++;
		}
	}
	/* Truncations are always refused; some flips (in results) decode. */
	assert_true(refused >= 1000);
	assert_true(ok > 0);
	assert_int_equal(dedup_deserialize((const uint8_t *)"", 0, &e), -EINVAL);
	free(m);
	free(a);
	dedup_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_then_duplicate),
	    cmocka_unit_test(test_out_of_order_in_flight),
	    cmocka_unit_test(test_serialize_roundtrip),
	    cmocka_unit_test(test_deserialize_untrusted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
