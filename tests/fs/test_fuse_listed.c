/* test_fuse_listed.c — the bookkeeping of recalls ahead (fs/fuse_listed.h):
 * a look at one held directory a listing showed takes them all, once; a
 * look at one no listing showed, or after FUSE_LISTED_MS, takes none; the
 * reads of one listing add up (duplicates once); of the taken ones, those
 * whose Recalls were sent count as recalled ahead for the window asked,
 * and only they. Time is an
 * argument: no clock, no sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "fuse_listed.h"

static void test_takes_the_listing_once(void **state)
{
	const uint64_t ids[] = {30, 10, 20};
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, ids, 3, 1000);
	/* Not shown: nothing. */
	assert_int_equal(fuse_listed_take(l, 40, 1001, &out), 0);
	assert_null(out);
	assert_int_equal(fuse_listed_take(l, 20, 1002, &out), 3);
	assert_int_equal(out[0], 10);
	assert_int_equal(out[1], 20);
	assert_int_equal(out[2], 30);
	free(out);
	/* Taken: the next look (ls -l's next lookup) takes nothing more. */
	assert_int_equal(fuse_listed_take(l, 30, 1003, &out), 0);
	assert_null(out);
	fuse_listed_free(l);
}

static void test_reads_add_up(void **state)
{
	const uint64_t a[] = {5, 6}, b[] = {6, 7};
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, a, 2, 1000);
	fuse_listed_note(l, 1, b, 2, 1001);
	assert_int_equal(fuse_listed_take(l, 7, 1002, &out), 3);
	assert_int_equal(out[0], 5);
	assert_int_equal(out[2], 7);
	free(out);
	fuse_listed_free(l);
}

static void test_old_listing_takes_nothing(void **state)
{
	const uint64_t ids[] = {5, 6};
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, ids, 2, 1000);
	assert_int_equal(fuse_listed_take(l, 5, 1000 + FUSE_LISTED_MS, &out), 0);
	assert_null(out);
	fuse_listed_free(l);
}

static void test_ahead_for_the_taken_only(void **state)
{
	const uint64_t ids[] = {5, 6}, other[] = {8, 9};
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, ids, 2, 1000);
	fuse_listed_note(l, 2, other, 2, 1000);
	/* Shown, not taken yet: not recalled ahead. */
	assert_false(fuse_listed_ahead(l, 5, 1001, 500));
	assert_int_equal(fuse_listed_take(l, 6, 1001, &out), 2);
	/* Taken, not sent yet: not recalled ahead (its Recall may fail). */
	assert_false(fuse_listed_ahead(l, 5, 1001, 500));
	fuse_listed_sent(l, 6, out, 2, 1001);
	free(out);
	assert_true(fuse_listed_ahead(l, 5, 1100, 500));
	assert_true(fuse_listed_ahead(l, 6, 1100, 500));
	assert_false(fuse_listed_ahead(l, 8, 1100, 500)); /* another listing, not taken */
	assert_false(fuse_listed_ahead(l, 5, 1501, 500)); /* past the window */
	fuse_listed_free(l);
}

static void test_ahead_for_the_sent_only(void **state)
{
	const uint64_t ids[] = {5, 6, 7}, sent[] = {5, 7};
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, ids, 3, 1000);
	assert_int_equal(fuse_listed_take(l, 7, 1001, &out), 3);
	free(out);
	/* 6's Recall was not proposed (returned meanwhile, or failed): its
	 * own look recalls it at once. */
	fuse_listed_sent(l, 7, sent, 2, 1002);
	assert_true(fuse_listed_ahead(l, 5, 1003, 500));
	assert_false(fuse_listed_ahead(l, 6, 1003, 500));
	assert_true(fuse_listed_ahead(l, 7, 1003, 500));
	/* Still taken: no second batch. */
	assert_int_equal(fuse_listed_take(l, 5, 1004, &out), 0);
	fuse_listed_free(l);
}

static void test_slots_reused_oldest_first(void **state)
{
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	/* One more listing than there are slots: the oldest (parent 100,
	 * id 1000) goes, the others stay. */
	for (uint64_t p = 0; p <= FUSE_LISTED_SLOTS; p++) {
		uint64_t id = 1000 + p;

		fuse_listed_note(l, 100 + p, &id, 1, 1000 + (int64_t)p);
	}
	assert_int_equal(fuse_listed_take(l, 1000, 1100, &out), 0);
	assert_int_equal(fuse_listed_take(l, 1001, 1100, &out), 1);
	free(out);
	assert_int_equal(fuse_listed_take(l, 1000 + FUSE_LISTED_SLOTS, 1100, &out), 1);
	free(out);
	fuse_listed_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_takes_the_listing_once),
	    cmocka_unit_test(test_reads_add_up),
	    cmocka_unit_test(test_old_listing_takes_nothing),
	    cmocka_unit_test(test_ahead_for_the_taken_only),
	    cmocka_unit_test(test_ahead_for_the_sent_only),
	    cmocka_unit_test(test_slots_reused_oldest_first),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
