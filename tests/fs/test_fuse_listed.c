/* test_fuse_listed.c — the bookkeeping of recalls ahead (fs/fuse_listed.h):
 * a look at a second held directory a listing showed (a scan) takes them,
 * once, at most FUSE_LISTED_AHEAD_MAX; one look alone, a look at one no
 * listing showed, or after FUSE_LISTED_MS, takes none; the
 * reads of one listing add up (duplicates once); of the taken ones, those
 * whose Recalls were sent count as recalled ahead for the window asked and
 * the epoch sent, and only they, filed with their own take. Time is an
 * argument: no clock, no sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fuse_listed.h"

/* A malloc'd copy of epochs[0..n), as fuse_listed_sent takes them. */
static uint64_t *taken(const uint64_t *epochs, size_t n)
{
	uint64_t *e = malloc(n * sizeof(*e));

	assert_non_null(e);
	memcpy(e, epochs, n * sizeof(*e));
	return e;
}

/* A first look at one of them (a cd, a monitor's stat): no scan yet. */
static void look(struct fuse_listed *l, uint64_t dir, int64_t now_ms)
{
	struct fuse_listed_token tok;
	uint64_t *out;

	assert_int_equal(fuse_listed_take(l, dir, now_ms, &out, &tok), 0);
	assert_null(out);
}

static void test_takes_the_listing_once(void **state)
{
	const uint64_t ids[] = {30, 10, 20};
	struct fuse_listed_token tok;
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, ids, 3, 1000);
	/* Not shown: nothing. */
	look(l, 40, 1001);
	look(l, 10, 1001);
	assert_int_equal(fuse_listed_take(l, 20, 1002, &out, &tok), 3);
	assert_int_equal(out[0], 10);
	assert_int_equal(out[1], 20);
	assert_int_equal(out[2], 30);
	free(out);
	/* Taken: the next look (ls -l's next lookup) takes nothing more. */
	look(l, 30, 1003);
	fuse_listed_free(l);
}

/* One look, however often repeated, is no scan (cd t/d1 after tab
 * completion; `ls t; stat t/x` every few seconds): it takes nothing. */
static void test_one_look_takes_nothing(void **state)
{
	const uint64_t ids[] = {5, 6, 7};
	struct fuse_listed *l;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	for (int64_t t = 1000; t < 1000 + 4 * FUSE_LISTED_MS; t += FUSE_LISTED_MS / 2) {
		fuse_listed_note(l, 1, ids, 3, t);
		look(l, 6, t + 1);
		look(l, 6, t + 2);
	}
	fuse_listed_free(l);
}

static void test_reads_add_up(void **state)
{
	const uint64_t a[] = {5, 6}, b[] = {6, 7};
	struct fuse_listed_token tok;
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, a, 2, 1000);
	fuse_listed_note(l, 1, b, 2, 1001);
	look(l, 7, 1002);
	assert_int_equal(fuse_listed_take(l, 5, 1002, &out, &tok), 3);
	assert_int_equal(out[0], 5);
	assert_int_equal(out[1], 6);
	assert_int_equal(out[2], 7);
	free(out);
	fuse_listed_free(l);
}

static void test_old_listing_takes_nothing(void **state)
{
	const uint64_t ids[] = {5, 6};
	struct fuse_listed_token tok;
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, ids, 2, 1000);
	look(l, 6, 1001);
	assert_int_equal(fuse_listed_take(l, 5, 1000 + FUSE_LISTED_MS, &out, &tok), 0);
	assert_null(out);
	fuse_listed_free(l);
}

/* At most FUSE_LISTED_AHEAD_MAX, from the looked-at one on. */
static void test_batch_capped(void **state)
{
	const size_t n = FUSE_LISTED_AHEAD_MAX + 100;
	struct fuse_listed_token tok;
	struct fuse_listed *l;
	uint64_t *ids = malloc(n * sizeof(*ids)), *out;

	(void)state;
	assert_non_null(ids);
	for (size_t i = 0; i < n; i++)
		ids[i] = 100 + i;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, ids, n, 1000);
	look(l, 100, 1001);
	assert_int_equal(fuse_listed_take(l, 110, 1002, &out, &tok), FUSE_LISTED_AHEAD_MAX);
	assert_int_equal(out[0], 110);
	assert_int_equal(out[FUSE_LISTED_AHEAD_MAX - 1], 110 + FUSE_LISTED_AHEAD_MAX - 1);
	free(out);
	/* Near the end: the last FUSE_LISTED_AHEAD_MAX. */
	fuse_listed_note(l, 2, ids, n, 1000);
	look(l, 100, 1001);
	assert_int_equal(fuse_listed_take(l, 100 + n - 2, 1002, &out, &tok),
			 FUSE_LISTED_AHEAD_MAX);
	assert_int_equal(out[0], 100 + n - FUSE_LISTED_AHEAD_MAX);
	assert_int_equal(out[FUSE_LISTED_AHEAD_MAX - 1], 100 + n - 1);
	free(out);
	free(ids);
	fuse_listed_free(l);
}

static void test_ahead_for_the_taken_only(void **state)
{
	const uint64_t ids[] = {5, 6}, other[] = {8, 9}, epochs[] = {1, 1};
	struct fuse_listed_token tok;
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, ids, 2, 1000);
	fuse_listed_note(l, 2, other, 2, 1000);
	/* Shown, not taken yet: not recalled ahead. */
	assert_false(fuse_listed_ahead(l, 5, 1, 1001, 500));
	look(l, 6, 1001);
	assert_int_equal(fuse_listed_take(l, 5, 1001, &out, &tok), 2);
	/* Taken, not sent yet: not recalled ahead (its Recall may fail). */
	assert_false(fuse_listed_ahead(l, 5, 1, 1001, 500));
	fuse_listed_sent(l, tok, out, taken(epochs, 2), 2, 1001);
	free(out);
	assert_true(fuse_listed_ahead(l, 5, 1, 1100, 500));
	assert_true(fuse_listed_ahead(l, 6, 1, 1100, 500));
	assert_false(fuse_listed_ahead(l, 8, 1, 1100, 500)); /* another listing, not taken */
	assert_false(fuse_listed_ahead(l, 5, 1, 1501, 500)); /* past the window */
	fuse_listed_free(l);
}

static void test_ahead_for_the_sent_only(void **state)
{
	const uint64_t ids[] = {5, 6, 7}, sent[] = {5, 7}, epochs[] = {3, 4};
	struct fuse_listed_token tok;
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, ids, 3, 1000);
	look(l, 7, 1001);
	assert_int_equal(fuse_listed_take(l, 5, 1001, &out, &tok), 3);
	free(out);
	/* 6's Recall was not proposed (returned meanwhile, or failed): its
	 * own look recalls it at once. */
	fuse_listed_sent(l, tok, sent, taken(epochs, 2), 2, 1002);
	assert_true(fuse_listed_ahead(l, 5, 3, 1003, 500));
	assert_false(fuse_listed_ahead(l, 6, 3, 1003, 500));
	assert_true(fuse_listed_ahead(l, 7, 4, 1003, 500));
	/* Still taken: no second batch. */
	look(l, 6, 1004);
	fuse_listed_free(l);
}

/* A Recall sent ahead for an older delegation of a directory (returned
 * and granted again since) is no Recall of the one a lookup now waits
 * for: that one is not counted as ahead (its recaller sends its own at
 * once, not FUSE_RECALL_EVERY_MS later). */
static void test_ahead_only_for_its_epoch(void **state)
{
	const uint64_t ids[] = {5, 6}, epochs[] = {7, 7};
	struct fuse_listed_token tok;
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, ids, 2, 1000);
	look(l, 6, 1001);
	assert_int_equal(fuse_listed_take(l, 5, 1001, &out, &tok), 2);
	fuse_listed_sent(l, tok, out, taken(epochs, 2), 2, 1002);
	free(out);
	assert_true(fuse_listed_ahead(l, 5, 7, 1003, 500));
	assert_false(fuse_listed_ahead(l, 5, 8, 1003, 500));
	assert_false(fuse_listed_ahead(l, 6, 6, 1003, 500));
	fuse_listed_free(l);
}

/* Two listings of one parent overlap (the first taken, a second read and
 * scanned before the first's Recalls were filed): each take's Recalls are
 * filed with its own listing, and a take whose slot went to another
 * listing meanwhile files nothing. */
static void test_sent_files_with_its_own_take(void **state)
{
	const uint64_t ids[] = {5, 6, 7}, sent_a[] = {6, 7}, sent_b[] = {5}, ea[] = {1, 1},
		       eb[] = {2};
	struct fuse_listed_token a, b;
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, ids, 3, 1000);
	look(l, 5, 1001);
	assert_int_equal(fuse_listed_take(l, 6, 1001, &out, &a), 3);
	free(out);
	/* The second listing of parent 1, scanned from 5 on. */
	fuse_listed_note(l, 1, ids, 3, 1002);
	look(l, 7, 1002);
	assert_int_equal(fuse_listed_take(l, 5, 1002, &out, &b), 3);
	free(out);
	fuse_listed_sent(l, b, sent_b, taken(eb, 1), 1, 1003);
	fuse_listed_sent(l, a, sent_a, taken(ea, 2), 2, 1003);
	assert_true(fuse_listed_ahead(l, 5, 2, 1004, 500));
	assert_true(fuse_listed_ahead(l, 6, 1, 1004, 500));
	assert_true(fuse_listed_ahead(l, 7, 1, 1004, 500));
	/* a filed again (or late) changes nothing: once. */
	fuse_listed_sent(l, a, sent_b, taken(eb, 1), 1, 1005);
	assert_true(fuse_listed_ahead(l, 6, 1, 1005, 500));
	fuse_listed_free(l);

	/* A take whose slot another listing got before its Recalls were
	 * filed: they are not filed with that listing. */
	assert_int_equal(fuse_listed_new(&l), 0);
	fuse_listed_note(l, 1, ids, 3, 1000);
	look(l, 5, 1001);
	assert_int_equal(fuse_listed_take(l, 6, 1001, &out, &a), 3);
	free(out);
	/* The last of these gets a's slot (the oldest), and is scanned. */
	for (uint64_t p = 2; p < 1 + FUSE_LISTED_SLOTS; p++) {
		uint64_t other = 100 + p;

		fuse_listed_note(l, p, &other, 1, 1002);
	}
	fuse_listed_note(l, 1 + FUSE_LISTED_SLOTS, ids, 3, 1002);
	look(l, 5, 1002);
	assert_int_equal(fuse_listed_take(l, 6, 1002, &out, &b), 3);
	free(out);
	fuse_listed_sent(l, a, sent_a, taken(ea, 2), 2, 1003);
	assert_false(fuse_listed_ahead(l, 6, 1, 1004, 500));
	assert_false(fuse_listed_ahead(l, 7, 1, 1004, 500));
	fuse_listed_sent(l, b, sent_b + 0, taken(eb, 1), 1, 1003);
	assert_true(fuse_listed_ahead(l, 5, 2, 1004, 500));
	fuse_listed_free(l);
}

static void test_slots_reused_oldest_first(void **state)
{
	struct fuse_listed_token tok;
	struct fuse_listed *l;
	uint64_t *out;

	(void)state;
	assert_int_equal(fuse_listed_new(&l), 0);
	/* One more listing than there are slots: the oldest (parent 100,
	 * ids 1000 and 5000) goes, the others stay. */
	for (uint64_t p = 0; p <= FUSE_LISTED_SLOTS; p++) {
		uint64_t id[] = {1000 + p, 5000 + p};

		fuse_listed_note(l, 100 + p, id, 2, 1000 + (int64_t)p);
	}
	look(l, 5000, 1100);
	assert_int_equal(fuse_listed_take(l, 1000, 1100, &out, &tok), 0);
	look(l, 5001, 1100);
	assert_int_equal(fuse_listed_take(l, 1001, 1100, &out, &tok), 2);
	free(out);
	look(l, 5000 + FUSE_LISTED_SLOTS, 1100);
	assert_int_equal(fuse_listed_take(l, 1000 + FUSE_LISTED_SLOTS, 1100, &out, &tok), 2);
	free(out);
	fuse_listed_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_takes_the_listing_once),
	    cmocka_unit_test(test_one_look_takes_nothing),
	    cmocka_unit_test(test_reads_add_up),
	    cmocka_unit_test(test_old_listing_takes_nothing),
	    cmocka_unit_test(test_batch_capped),
	    cmocka_unit_test(test_ahead_for_the_taken_only),
	    cmocka_unit_test(test_ahead_for_the_sent_only),
	    cmocka_unit_test(test_ahead_only_for_its_epoch),
	    cmocka_unit_test(test_sent_files_with_its_own_take),
	    cmocka_unit_test(test_slots_reused_oldest_first),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
