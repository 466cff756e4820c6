/* test_fuse_grant.c — when a mount asks for a directory it did not make
 * (fs/fuse_grant.h): after FUSE_GRANT_AFTER synchronous changes within the
 * window, not during the back-off after a recall, which doubles per recall
 * up to its maximum and starts afresh long after; a full table still
 * answers. Time is an argument: no clock, no sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fuse_grant.h"

/* Notes n changes of dir at times t, t+step, ...; how many said "ask". */
static unsigned note_n(struct fuse_grant *g, uint64_t dir, unsigned n, int64_t t, int64_t step)
{
	unsigned asks = 0;

	for (unsigned i = 0; i < n; i++)
		asks += fuse_grant_note(g, dir, t + (int64_t)i * step);
	return asks;
}

static void test_asks_after_enough_changes(void **state)
{
	struct fuse_grant *g;

	(void)state;
	assert_int_equal(fuse_grant_new(&g), 0);
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER - 1, 1000, 1), 0);
	assert_true(fuse_grant_note(g, 7, 1100));
	/* The count starts again: the next ask needs as many again. */
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER - 1, 1200, 1), 0);
	assert_true(fuse_grant_note(g, 7, 1300));
	/* Other directories count apart. */
	assert_int_equal(note_n(g, 8, FUSE_GRANT_AFTER - 1, 1400, 1), 0);
	fuse_grant_free(g);
}

static void test_slow_changes_never_ask(void **state)
{
	struct fuse_grant *g;

	(void)state;
	assert_int_equal(fuse_grant_new(&g), 0);
	/* One change per window and a bit: never enough within one. */
	assert_int_equal(note_n(g, 7, 10 * FUSE_GRANT_AFTER, 0, FUSE_GRANT_WINDOW_MS / 4 + 1), 0);
	fuse_grant_free(g);
}

static void test_backoff_after_recall(void **state)
{
	struct fuse_grant *g;
	int64_t t = 100000;

	(void)state;
	assert_int_equal(fuse_grant_new(&g), 0);
	fuse_grant_recalled(g, 7, t);
	/* During the back-off: many changes, no ask. */
	assert_int_equal(note_n(g, 7, 5 * FUSE_GRANT_AFTER, t, 10), 0);
	/* After it: asks again. */
	t += FUSE_GRANT_BACKOFF_MS;
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER, t, 1), 1);
	/* A second recall doubles it. */
	fuse_grant_recalled(g, 7, t + 100);
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER, t + 100 + FUSE_GRANT_BACKOFF_MS, 1), 0);
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER, t + 100 + 2 * FUSE_GRANT_BACKOFF_MS, 1), 1);
	fuse_grant_free(g);
}

static void test_backoff_caps_and_resets(void **state)
{
	struct fuse_grant *g;
	int64_t t = 0, quiet = 0;

	(void)state;
	assert_int_equal(fuse_grant_new(&g), 0);
	/* Recalls back to back: the back-off grows to the maximum, no more. */
	for (int i = 0; i < 20; i++) {
		fuse_grant_recalled(g, 7, t);
		t += 10;
	}
	t -= 10;
	quiet = t + FUSE_GRANT_BACKOFF_MAX_MS;
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER, quiet - 100, 1), 0);
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER, quiet, 1), 1);
	/* Long after: a recall starts from the first back-off again. */
	t = quiet + 2 * FUSE_GRANT_BACKOFF_MAX_MS;
	fuse_grant_recalled(g, 7, t);
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER, t + FUSE_GRANT_BACKOFF_MS, 1), 1);
	fuse_grant_free(g);
}

static void test_full_table(void **state)
{
	struct fuse_grant *g;

	(void)state;
	assert_int_equal(fuse_grant_new(&g), 0);
	/* More directories than it keeps, all recently changed: no ask for
	 * a new one (nothing is dropped while it may matter)... */
	for (uint64_t d = 1; d <= FUSE_GRANT_DIRS_MAX; d++)
		fuse_grant_note(g, d, 0);
	assert_int_equal(note_n(g, 999999, FUSE_GRANT_AFTER, 1, 0), 0);
	/* ...until the old ones' windows are over and they are dropped. */
	assert_int_equal(note_n(g, 999999, FUSE_GRANT_AFTER, FUSE_GRANT_WINDOW_MS + 10, 0), 1);
	fuse_grant_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_asks_after_enough_changes),
	    cmocka_unit_test(test_slow_changes_never_ask),
	    cmocka_unit_test(test_backoff_after_recall),
	    cmocka_unit_test(test_backoff_caps_and_resets),
	    cmocka_unit_test(test_full_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
