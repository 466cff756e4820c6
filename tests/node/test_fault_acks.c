/* test_fault_acks.c — a follower whose apply failed (it stops: the Ready
 * loop ends, nothing more is sent or acknowledged, node.c fatal_stop)
 * does not go on acknowledging appends from its persist thread either.
 * The loop turns those direct acknowledgements off (node_persist_lazy)
 * at its first turn after the fault; it used to return before, so saves
 * queued before the fault still acknowledged once durable.
 *
 * Three in-process nodes, kv state machine. One follower's apply of
 * "boom" waits at a gate, then fails. Its next save is held HOLD_MS
 * (RAFTFS_TEST_STALL), a put is proposed on the leader (the follower
 * queues its save, with its acknowledgement, behind the hold), the gate
 * opens: the follower faults well before the hold ends. Its direct
 * acknowledgements must not grow past the hold's end. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "kvsm.h"
#include "node.h"
#include "node_testlib.h"

#define N_NODES 3
#define HOLD_MS 1500

static struct test_kv_member m[N_NODES];
static char dir[64];
static atomic_int boom_node = -1; /* whose apply of "boom" fails */

static struct test_gate gate = TEST_GATE_CLOSED;

/* The kv state machine, except on boom_node: "boom..." waits for the
 * gate, then fails as a full disk would. */
static int gated_apply(void *ctx, uint64_t index, const envelope *env, const uint8_t *cmd,
		       size_t len, int64_t *result)
{
	int who = atomic_load(&boom_node);

	if (who >= 0 && ctx == m[who].k && len >= 4 && !memcmp(cmd, "boom", 4)) {
		test_gate_wait(&gate);
		return NODE_EFAULT;
	}
	return m[0].inner.apply(ctx, index, env, cmd, len, result); /* the same for all */
}

static int teardown(void **state)
{
	(void)state;
	test_gate_open(&gate); /* a failed test must not leave an apply thread stuck */
	return test_kv_cluster_stop(m, N_NODES, dir);
}

/* Every node's apply goes through the gate (ctx stays the kv state
 * machine). */
static void tune(struct test_kv_member *member, int i)
{
	(void)i;
	member->cfg.proposal_timeout_ms = 30000;
	member->sm.apply = gated_apply;
}

static int setup(void **state)
{
	(void)state;
	return test_kv_cluster_start(m, N_NODES, "faultacks", dir, tune);
}

/* A node that says it leads (-1: none within 20 s). */
static int leading_node(void)
{
	return test_leading(&m[0].n, sizeof(m[0]), N_NODES, 20000);
}

/* Proposes kv on node i and waits for it to apply there: 1 applied, -1
 * failed, 0 not within 20 s. */
static int put_wait(int i, const char *kv)
{
	return test_put_wait(m[i].n, kv, 20000);
}

/* Holds node i's persist thread for ms after its next save, in any role;
 * the request's path in path. */
static void hold_next_save(int i, unsigned ms, char *path, size_t cap)
{
	assert_int_equal(test_hold_next_save(&m[i].cfg, "any", ms, path, cap), 0);
}

static void test_no_direct_ack_after_fault(void **state)
{
	char path[4200];
	long long t_hold, deadline;
	uint64_t acks0, acks1;
	int lead, fol;

	(void)state;
	lead = leading_node();
	assert_true(lead >= 0);
	assert_int_equal(put_wait(lead, "first=1"), 1);
	lead = leading_node();
	assert_true(lead >= 0);
	fol = (lead + 1) % N_NODES;
	atomic_store(&boom_node, fol);

	/* Committed by the other two; the follower's apply waits at the gate. */
	assert_int_equal(put_wait(lead, "boom=1"), 1);
	/* The follower's next save is held; the put's save queues behind it
	 * (or is it), its acknowledgement kept with it. */
	hold_next_save(fol, HOLD_MS, path, sizeof(path));
	t_hold = test_now_ms();
	assert_int_equal(put_wait(lead, "after=1"), 1);
	deadline = test_now_ms() + 10000;
	while (access(path, F_OK) == 0 && test_now_ms() < deadline)
		test_nap(); /* the follower read it: its held save is queued */
	assert_true(access(path, F_OK) != 0);
	assert_int_equal(node_fault(m[fol].n), 0);

	test_gate_open(&gate);
	deadline = test_now_ms() + 10000;
	while (!node_fault(m[fol].n) && test_now_ms() < deadline)
		test_nap();
	assert_int_equal(node_fault(m[fol].n), NODE_EFAULT);
	acks0 = node_direct_acks(m[fol].n);
	printf("follower %d faulted %lld ms into its %d ms hold, %llu direct acks so far\n",
	       fol + 1, test_now_ms() - t_hold, HOLD_MS, (unsigned long long)acks0);
	if (test_now_ms() - t_hold > HOLD_MS - 500) {
		/* A loaded machine got here late: the hold may end before the
		 * loop's next turn, which turns direct acks off. */
		printf("the fault came too late in the hold to judge\n");
		skip();
	}
	/* A negative: nothing may happen until well past the hold's end. */
	while (test_now_ms() < t_hold + HOLD_MS + 1000)
		test_nap();
	acks1 = node_direct_acks(m[fol].n);
	printf("after the hold: %llu direct acks\n", (unsigned long long)acks1);
	assert_int_equal(acks1, acks0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_no_direct_ack_after_fault, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
