/* test_fault_pending.c — a node whose apply failed (disk full, I/O error:
 * it stops applying and says so in its status) fails the proposals still
 * waiting on it with the fault at once, instead of letting each run into
 * its proposal timeout: they can never apply here. One in-process node
 * with the kv state machine behind a gate; its first gated apply fails. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "kvsm.h"
#include "node.h"
#include "node_testlib.h"

#define PROPOSALS 3

/* Apply waits while the gate is closed, then fails: the node faults on
 * the first proposal, with the others committed behind it. */
static struct test_gate gate = TEST_GATE_CLOSED;

static int failing_apply(void *ctx, uint64_t index, const envelope *env, const uint8_t *cmd,
			 size_t len, int64_t *result)
{
	(void)ctx, (void)index, (void)env, (void)cmd, (void)len, (void)result;
	test_gate_wait(&gate);
	return NODE_EFAULT;
}

static atomic_int answered, as_fault;

static void on_done(void *arg, int status, int64_t result, uint64_t index)
{
	(void)arg, (void)result, (void)index;
	if (status == NODE_EFAULT)
		atomic_fetch_add(&as_fault, 1);
	atomic_fetch_add(&answered, 1);
}

static struct test_kv_member m;
static char dir[64];

static int teardown(void **state)
{
	(void)state;
	test_gate_open(&gate);
	return test_kv_cluster_stop(&m, 1, dir);
}

static void tune(struct test_kv_member *member, int i)
{
	(void)i;
	member->cfg.proposal_timeout_ms = 120000; /* far beyond the test's own wait */
	member->sm.apply = failing_apply;
}

static int setup(void **state)
{
	(void)state;
	return test_kv_node_start(&m, "fault-pending", dir, tune);
}

static void test_pending_fail_with_the_fault(void **state)
{
	node *n = m.n;
	char addr[64];
	long long deadline;

	(void)state;
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", m.cfg.listen_port);
	deadline = test_now_ms() + 20000;
	/* Leading, with its term's empty entry (index 1) applied. */
	assert_true(test_await_lead(n, deadline));
	for (int i = 0; i < PROPOSALS; i++) {
		char put[16];
		int len = snprintf(put, sizeof(put), "k%d=v", i);

		assert_int_equal(node_start(n, put, (size_t)len, 0, on_done, NULL, NULL, NULL), 0);
	}
	/* All three commit (the apply thread waits at the gate on the first). */
	while (test_commit_index(addr, 2000) < 1 + PROPOSALS && test_now_ms() < deadline)
		test_nap();
	assert_true(test_commit_index(addr, 2000) >= 1 + PROPOSALS);

	test_gate_open(&gate); /* the first apply fails: the node faults */
	deadline = test_now_ms() + 20000;
	while (!node_fault(n) && test_now_ms() < deadline)
		test_nap();
	assert_int_equal(node_fault(n), NODE_EFAULT);
	/* Every proposal is answered with the fault well before its timeout
	 * (120 s); before, they waited it out. */
	while (atomic_load(&answered) < PROPOSALS && test_now_ms() < deadline)
		test_nap();
	assert_int_equal(atomic_load(&answered), PROPOSALS);
	assert_int_equal(atomic_load(&as_fault), PROPOSALS);
	assert_int_equal(node_applied(n), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_pending_fail_with_the_fault, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
