/* test_stages.c — the stage accounting of RAFTFS_STAGES: off by default,
 * times sorted into power-of-two microsecond buckets, quantiles as bucket
 * bounds (a stage that stalls now and then shows in p99, not in p50). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "node_stages.h"

#define US 1000ull /* ns */

static void test_off_by_default(void **state)
{
	node_stages s;

	(void)state;
	unsetenv("RAFTFS_STAGES");
	node_stages_init(&s);
	node_stages_add(&s, NODE_STAGE_QUEUE, 1, 1 + 10 * US);
	assert_false(s.on);
	assert_int_equal(s.n[NODE_STAGE_QUEUE], 0);
	assert_int_equal(node_stages_quantile(&s, NODE_STAGE_QUEUE, 0.5), 0);
	setenv("RAFTFS_STAGES", "0", 1);
	node_stages_init(&s);
	assert_false(s.on);
}

static void test_quantiles(void **state)
{
	node_stages s;

	(void)state;
	setenv("RAFTFS_STAGES", "1", 1);
	node_stages_init(&s);
	assert_true(s.on);
	/* 99 times of 10 us (bucket [8, 16)) and one stall of 5 ms
	 * ([4096, 8192) us): the mean moves, p50 and p99 do not. */
	for (int i = 0; i < 99; i++)
		node_stages_add(&s, NODE_STAGE_PERSIST, 1000, 1000 + 10 * US);
	node_stages_add(&s, NODE_STAGE_PERSIST, 1000, 1000 + 5000 * US);
	assert_int_equal(s.n[NODE_STAGE_PERSIST], 100);
	assert_int_equal(s.sum_ns[NODE_STAGE_PERSIST], (99 * 10 + 5000) * US);
	assert_int_equal(node_stages_quantile(&s, NODE_STAGE_PERSIST, 0.5), 16);
	assert_int_equal(node_stages_quantile(&s, NODE_STAGE_PERSIST, 0.99), 16);
	assert_int_equal(node_stages_quantile(&s, NODE_STAGE_PERSIST, 1.0), 8192);
	/* Another stage is untouched. */
	assert_int_equal(node_stages_quantile(&s, NODE_STAGE_COMMIT, 0.5), 0);
}

static void test_edges(void **state)
{
	node_stages s;

	(void)state;
	setenv("RAFTFS_STAGES", "1", 1);
	node_stages_init(&s);
	/* Not observed (0) or out of order: ignored. */
	node_stages_add(&s, NODE_STAGE_APPLY, 0, 5 * US);
	node_stages_add(&s, NODE_STAGE_APPLY, 5 * US, 0);
	node_stages_add(&s, NODE_STAGE_APPLY, 9 * US, 5 * US);
	assert_int_equal(s.n[NODE_STAGE_APPLY], 0);
	/* Under a microsecond: the first bucket, bound 1. */
	node_stages_add(&s, NODE_STAGE_APPLY, 7, 7 + 999);
	assert_int_equal(node_stages_quantile(&s, NODE_STAGE_APPLY, 0.5), 1);
	/* Exactly a power of two starts the next bucket. */
	node_stages_add(&s, NODE_STAGE_REPLY, 1, 1 + 16 * US);
	assert_int_equal(node_stages_quantile(&s, NODE_STAGE_REPLY, 0.5), 32);
	/* Beyond the last bound: the last bucket, no bound. */
	node_stages_add(&s, NODE_STAGE_HANDOFF, 1, 1 + (1ull << 40) * US);
	assert_int_equal(node_stages_quantile(&s, NODE_STAGE_HANDOFF, 0.5), UINT64_MAX);
	/* The log line formats every stage, the last bucket included. */
	node_stages_print(&s, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_off_by_default),
	    cmocka_unit_test(test_quantiles),
	    cmocka_unit_test(test_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
