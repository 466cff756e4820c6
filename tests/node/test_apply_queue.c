/* test_apply_queue.c — the queue of committed entries handed to the apply
 * thread is bounded by bytes ([raft] apply_queue_bytes): with the state
 * machine stuck, a node keeps committing (its commit index reaches every
 * proposal) while at most the bound plus one Ready's worth is queued; once
 * the state machine goes on, everything applies, in order, exactly once,
 * and the loop thread never waited for the apply thread (status requests,
 * served by the loop, answer all along). One in-process node with the kv
 * state machine behind a gate. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "kvsm.h"
#include "node.h"
#include "node_testlib.h"

#define QUEUE_BYTES (256u << 10)
#define ENTRY_BYTES 4096
#define ENTRIES 400 /* 1.6 MiB: six times the bound */

/* The kv state machine behind a gate: apply waits while it is closed. */
static struct test_gate gate = TEST_GATE_CLOSED;
static struct test_kv_member m;
static char dir[64];
/* Written by the apply thread alone, read by the test. */
static _Atomic uint64_t last_applied; /* the last index applied: they come in order */
static atomic_int out_of_order;

static int gated_apply(void *ctx, uint64_t index, const envelope *env, const uint8_t *cmd,
		       size_t len, int64_t *result)
{
	test_gate_wait(&gate);
	if (index <= atomic_load(&last_applied))
		atomic_fetch_add(&out_of_order, 1);
	atomic_store(&last_applied, index);
	return m.inner.apply(ctx, index, env, cmd, len, result);
}

static int teardown(void **state)
{
	(void)state;
	test_gate_open(&gate);
	return test_kv_cluster_stop(&m, 1, dir);
}

static void tune(struct test_kv_member *member, int i)
{
	(void)i;
	member->cfg.apply_queue_bytes = QUEUE_BYTES;
	member->cfg.proposal_timeout_ms = 60000;
	member->sm.apply = gated_apply;
}

static int setup(void **state)
{
	(void)state;
	return test_kv_node_start(&m, "apply-queue", dir, tune);
}

static void test_queue_bounded_while_apply_stalls(void **state)
{
	static char payload[ENTRY_BYTES];
	atomic_int done[2] = {0, 0}; /* applied, failed */
	node *n = m.n;
	char addr[64];
	uint64_t first, commit = 0, last;
	long long deadline, stall_end;

	(void)state;
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", m.cfg.listen_port);
	deadline = test_now_ms() + 20000;
	/* Leading, with its term's empty entry (index 1) applied. */
	assert_true(test_await_lead(n, deadline));
	first = node_applied(n);
	assert_int_equal(first, 1);
	memset(payload, 'x', sizeof(payload));
	for (int i = 0; i < ENTRIES; i++) {
		int len = snprintf(payload, 32, "k%d=", i);

		payload[len] = 'x';
		assert_int_equal(
		    node_start(n, payload, sizeof(payload), 0, test_on_count, done, NULL, NULL), 0);
	}
	/* Every put commits although none applies. */
	deadline = test_now_ms() + 30000;
	while ((commit = test_commit_index(addr, 2000)) < first + ENTRIES && test_now_ms() < deadline)
		test_nap();
	assert_true(commit >= first + ENTRIES);
	assert_int_equal(node_applied(n), first);
	/* Queued: less than the bound plus one entry; without the bound all
	 * 1.6 MiB (one Ready) would be. */
	printf("queued at most %llu bytes (bound %u, committed %d x %d bytes)\n",
	       (unsigned long long)node_apply_queue_max(n), QUEUE_BYTES, ENTRIES, ENTRY_BYTES);
	assert_true(node_apply_queue_max(n) >= QUEUE_BYTES);
	assert_true(node_apply_queue_max(n) < QUEUE_BYTES + ENTRY_BYTES + 64);

	/* Committed, most of them held back from apply by the bound: none is
	 * lost, so none is proposed again, however long apply stalls. The
	 * stall, three times retry_ms (1 s here), is the scenario, not a
	 * wait for something: a leader that took the held-back ones for lost
	 * put a duplicate of each in its log every retry_ms (164 for these
	 * 400 puts in a 6 s stall). */
	last = test_last_index(addr, 2000);
	assert_true(last >= commit);
	stall_end = test_now_ms() + 3000;
	while (test_now_ms() < stall_end)
		test_nap();
	assert_int_equal(test_last_index(addr, 2000), last);
	assert_int_equal(node_applied(n), first);

	test_gate_open(&gate);
	deadline = test_now_ms() + 30000;
	while (atomic_load(&done[0]) + atomic_load(&done[1]) < ENTRIES && test_now_ms() < deadline)
		test_nap();
	assert_int_equal(atomic_load(&done[0]), ENTRIES);
	assert_int_equal(atomic_load(&out_of_order), 0);
	/* Everything committed applies: applied and commit compared at one
	 * moment, not against the commit sampled above (a proposal not yet
	 * committed when a loaded machine reached its retry_ms was proposed
	 * again, and its duplicate, skipped by apply, took an index after
	 * that sample). With nothing pending now, the log no longer grows. */
	deadline = test_now_ms() + 30000;
	while (node_applied(n) != (commit = test_commit_index(addr, 2000)) &&
	       test_now_ms() < deadline)
		test_nap();
	assert_int_equal(node_applied(n), commit);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_queue_bounded_while_apply_stalls, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
