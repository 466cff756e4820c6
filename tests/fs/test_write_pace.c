/* test_write_pace.c — the mount's byte window for big writes (fs/write_pace.h):
 * it grows to its cap while writes see no queueing, shrinks to its floor
 * while they queue past the target, settles where the queueing delay is
 * the target, ignores small writes, follows a slower pipeline only after
 * its base period, and is off with a target of 0. Time is an argument. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "write_pace.h"

#define MIB (1u << 20)
#define MS 1000000ll

static void init(struct write_pace *p)
{
	write_pace_init(p, 8 * MIB, 4 * MIB, 64 * MIB, 30 * MS);
}

/* n writes of bytes, each taking lat, one every ms from *now on. */
static void run(struct write_pace *p, int n, size_t bytes, int64_t lat, int64_t *now)
{
	for (int i = 0; i < n; i++) {
		*now += MS;
		write_pace_sample(p, bytes, lat, *now);
		assert_true(p->window >= p->floor && p->window <= p->max);
	}
}

static void test_grows_when_idle(void **state)
{
	struct write_pace p;
	int64_t now = 0;

	(void)state;
	init(&p);
	assert_int_equal(p.window, 8 * MIB);
	run(&p, 1, MIB, 10 * MS, &now); /* the base */
	run(&p, 200, MIB, 10 * MS, &now);
	assert_int_equal(p.window, 64 * MIB);
}

static void test_shrinks_when_queued(void **state)
{
	struct write_pace p;
	int64_t now = 0;

	(void)state;
	init(&p);
	run(&p, 1, MIB, 10 * MS, &now);
	run(&p, 50, MIB, 10 * MS + 100 * MS, &now); /* 100 ms queued: far over */
	assert_int_equal(p.window, 4 * MIB);
}

/* A pipeline where each MiB in flight adds 10 ms (a 100 MiB/s queue over
 * a base of 10 ms): the window settles where the queueing delay is the
 * target, 30 ms, i.e. ~3 MiB (the floor lowered to 1 MiB to see it). */
static void test_settles_at_target(void **state)
{
	struct write_pace p;
	int64_t now = 0;

	(void)state;
	write_pace_init(&p, 8 * MIB, MIB, 64 * MIB, 30 * MS);
	run(&p, 1, MIB, 10 * MS, &now);
	for (int i = 0; i < 2000; i++) {
		int64_t lat = 10 * MS + (int64_t)p.window * 10 * MS / MIB;

		run(&p, 1, MIB, lat, &now);
	}
	assert_true(p.window >= 2 * MIB && p.window <= 4 * MIB);
}

static void test_small_writes_ignored(void **state)
{
	struct write_pace p;
	int64_t now = 0;

	(void)state;
	init(&p);
	run(&p, 100, WRITE_PACE_MIN_BYTES - 1, 500 * MS, &now);
	assert_int_equal(p.window, 8 * MIB);
	assert_int_equal(write_pace_base(&p), 0);
}

/* The base is the lowest latency of this period and the last: a pipeline
 * that became slower is followed only two periods later, and until then
 * its new latency counts as queueing. */
static void test_base_follows_late(void **state)
{
	struct write_pace p;
	int64_t now = 0;

	(void)state;
	init(&p);
	run(&p, 10, MIB, 10 * MS, &now);
	assert_int_equal(write_pace_base(&p), 10 * MS);
	now += WRITE_PACE_PERIOD_NS;
	run(&p, 40, MIB, 80 * MS, &now); /* a new period: the old base still counts */
	assert_int_equal(write_pace_base(&p), 10 * MS);
	assert_int_equal(p.window, 4 * MIB);
	now += WRITE_PACE_PERIOD_NS;
	run(&p, 200, MIB, 80 * MS, &now); /* two periods on: 80 ms is the base */
	assert_int_equal(write_pace_base(&p), 80 * MS);
	assert_int_equal(p.window, 64 * MIB);
	run(&p, 1, MIB, 20 * MS, &now); /* faster again: followed at once */
	assert_int_equal(write_pace_base(&p), 20 * MS);
}

static void test_off(void **state)
{
	struct write_pace p;
	int64_t now = 0;

	(void)state;
	write_pace_init(&p, 8 * MIB, 4 * MIB, 64 * MIB, 0);
	assert_int_equal(p.window, 0);
	for (int i = 0; i < 10; i++) {
		now += MS;
		write_pace_sample(&p, MIB, 500 * MS, now);
	}
	assert_int_equal(p.window, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_grows_when_idle),   cmocka_unit_test(test_shrinks_when_queued),
	    cmocka_unit_test(test_settles_at_target), cmocka_unit_test(test_small_writes_ignored),
	    cmocka_unit_test(test_base_follows_late), cmocka_unit_test(test_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
