/* test_apply_queue_fwd.c — node.apply_queue through a follower: a follower
 * whose state machine is stuck keeps committing the proposals it forwarded
 * to the leader while the apply queue's bound ([raft] apply_queue_bytes)
 * holds most of them back from being handed out; it learns where each went
 * from the leader's append (the entry carrying its client id and seq), so
 * none of them is forwarded again however long apply stalls (each retry was
 * a duplicate in every node's log). Once the state machine goes on,
 * everything applies there, in order, exactly once. Three in-process nodes
 * with the kv state machine, the follower's behind a gate. */
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

#define N_NODES 3
#define QUEUE_BYTES (256u << 10)
#define ENTRY_BYTES 4096
#define ENTRIES 400 /* 1.6 MiB: six times the bound */
/* A node's retry_ms with the testlib's 500 ms election timeout (node.c:
 * five election timeouts). */
#define RETRY_MS 2500

static struct test_kv_member m[N_NODES];
static char dir[64];
/* The gate the follower's apply waits at; the other nodes apply freely. */
static struct test_gate gate = TEST_GATE_CLOSED;
static _Atomic(kvsm *) gated;
/* Written by the follower's apply thread alone, read by the test. */
static _Atomic uint64_t last_applied; /* the last index applied: they come in order */
static atomic_int out_of_order;

static int gated_apply(void *ctx, uint64_t index, const envelope *env, const uint8_t *cmd,
		       size_t len, int64_t *result)
{
	if (ctx == atomic_load(&gated)) {
		test_gate_wait(&gate);
		if (index <= atomic_load(&last_applied))
			atomic_fetch_add(&out_of_order, 1);
		atomic_store(&last_applied, index);
	}
	return m[0].inner.apply(ctx, index, env, cmd, len, result);
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
	atomic_store(&gated, NULL);
	return test_kv_cluster_start(m, N_NODES, "applyqfwd", dir, tune);
}

static int teardown(void **state)
{
	(void)state;
	test_gate_open(&gate);
	return test_kv_cluster_stop(m, N_NODES, dir);
}

static void test_follower_does_not_retry_committed(void **state)
{
	static char payload[ENTRY_BYTES];
	/* Applied, failed. Static: a failed assertion leaves the test with
	 * proposals pending, which the teardown's stop answers. */
	static atomic_int done[2];
	int leader, f;
	node *n;
	char addr[64];
	uint64_t first, commit = 0, last, last_after, term, term_after;
	long long deadline, stall_end;

	(void)state;
	leader = test_leading(&m[0].n, sizeof(m[0]), N_NODES, 20000);
	assert_true(leader >= 0);
	f = (leader + 1) % N_NODES;
	n = m[f].n;
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", m[f].cfg.listen_port);
	/* A put through the follower, applied there: it knows its leader and
	 * applied everything before (the term's empty entry). Nothing else
	 * commits until the puts below, so its apply is idle when the gate
	 * closes. */
	assert_int_equal(test_put_wait(n, "first=1", 20000), 1);
	first = node_applied(n);
	atomic_store(&last_applied, first);
	atomic_store(&gated, m[f].k);
	memset(payload, 'x', sizeof(payload));
	for (int i = 0; i < ENTRIES; i++) {
		int len = snprintf(payload, 32, "k%d=", i);

		payload[len] = 'x';
		assert_int_equal(
		    node_start(n, payload, sizeof(payload), 0, test_on_count, done, NULL, NULL), 0);
	}
	/* Every put commits at the follower although none applies there. */
	deadline = test_now_ms() + 60000;
	while ((commit = test_commit_index(addr, 2000)) < first + ENTRIES && test_now_ms() < deadline)
		test_nap();
	assert_true(commit >= first + ENTRIES);
	/* The follower hands committed entries to its apply once they are
	 * saved on its own disk too: the queue fills up to the bound a moment
	 * after the commit index got there. */
	while (node_apply_queue_max(n) < QUEUE_BYTES && test_now_ms() < deadline)
		test_nap();
	printf("follower: queued at most %llu bytes (bound %u, committed %d x %d bytes)\n",
	       (unsigned long long)node_apply_queue_max(n), QUEUE_BYTES, ENTRIES, ENTRY_BYTES);
	assert_true(node_apply_queue_max(n) >= QUEUE_BYTES);
	assert_true(node_apply_queue_max(n) < QUEUE_BYTES + ENTRY_BYTES + 64);

	/* Committed, most of them held back from apply by the bound: none is
	 * lost, so the follower forwards none again, however long apply
	 * stalls. The stall, three times retry_ms, is the scenario, not a
	 * wait for something: a follower that took the held-back ones for
	 * lost forwarded each again every retry_ms, a duplicate in the log.
	 * A leader change meanwhile (a loaded machine) puts its term's empty
	 * entry in the log: one entry per term, no more. */
	node_get_state(m[leader].n, &term, NULL);
	last = test_last_index(addr, 2000);
	assert_true(last >= commit);
	stall_end = test_now_ms() + 3 * RETRY_MS;
	while (test_now_ms() < stall_end)
		test_nap();
	last_after = test_last_index(addr, 2000);
	term_after = term;
	for (int i = 0; i < N_NODES; i++) {
		uint64_t t;

		node_get_state(m[i].n, &t, NULL);
		if (t > term_after)
			term_after = t;
	}
	printf("follower's last index %llu -> %llu over the stall, term %llu -> %llu\n",
	       (unsigned long long)last, (unsigned long long)last_after, (unsigned long long)term,
	       (unsigned long long)term_after);
	assert_true(last_after >= last);
	assert_true(last_after - last <= term_after - term);
	assert_int_equal(atomic_load(&done[0]) + atomic_load(&done[1]), 0);

	test_gate_open(&gate);
	deadline = test_now_ms() + 60000;
	while (atomic_load(&done[0]) + atomic_load(&done[1]) < ENTRIES && test_now_ms() < deadline)
		test_nap();
	assert_int_equal(atomic_load(&done[0]), ENTRIES);
	assert_int_equal(atomic_load(&out_of_order), 0);
	/* Everything committed applies there (applied and commit compared at
	 * one moment: with nothing pending the log no longer grows). */
	deadline = test_now_ms() + 30000;
	while (node_applied(n) != (commit = test_commit_index(addr, 2000)) &&
	       test_now_ms() < deadline)
		test_nap();
	assert_int_equal(node_applied(n), commit);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_follower_does_not_retry_committed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
