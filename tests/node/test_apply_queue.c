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
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool closed;
	node_sm inner;
	uint64_t last; /* the last index applied: they come in order */
	int out_of_order;
} gate = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .closed = true};

static int gated_apply(void *ctx, uint64_t index, const envelope *env, const uint8_t *cmd,
		       size_t len, int64_t *result)
{
	pthread_mutex_lock(&gate.mu);
	while (gate.closed)
		pthread_cond_wait(&gate.cv, &gate.mu);
	gate.out_of_order += index <= gate.last;
	gate.last = index;
	pthread_mutex_unlock(&gate.mu);
	return gate.inner.apply(ctx, index, env, cmd, len, result);
}

static void open_gate(void)
{
	pthread_mutex_lock(&gate.mu);
	gate.closed = false;
	pthread_cond_broadcast(&gate.cv);
	pthread_mutex_unlock(&gate.mu);
}

static void on_done(void *arg, int status, int64_t result, uint64_t index)
{
	(void)result;
	(void)index;
	atomic_fetch_add((atomic_int *)(status == 0 ? arg : (atomic_int *)arg + 1), 1);
}

static char dir[] = "/tmp/apply-queue.XXXXXX";

static int remove_dir(void **state)
{
	char cmd[64];

	(void)state;
	open_gate(); /* a failed test must not leave the apply thread stuck */
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_queue_bounded_while_apply_stalls(void **state)
{
	static char payload[ENTRY_BYTES];
	atomic_int done[2] = {0, 0}; /* applied, failed */
	char err[512], addr[64];
	uint16_t port = test_free_port();
	uint64_t first, commit = 0;
	long long deadline;
	node_config cfg;
	node_sm sm;
	kvsm *k;
	node *n;

	(void)state;
	assert_int_not_equal(port, 0);
	assert_non_null(mkdtemp(dir));
	test_one_node_config(&cfg, "apply-queue", dir, port);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	cfg.apply_queue_bytes = QUEUE_BYTES;
	cfg.snapshot_entries = 0;
	cfg.proposal_timeout_ms = 60000;

	assert_int_equal(kvsm_open(cfg.data_dir, &k, err, sizeof(err)), 0);
	kvsm_iface(k, &gate.inner);
	sm = gate.inner;
	sm.apply = gated_apply;
	if (node_new(&cfg, &sm, &n, err, sizeof(err)) != 0)
		fail_msg("node_new: %s", err);
	assert_int_equal(node_launch(n), 0);
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
		    node_start(n, payload, sizeof(payload), 0, on_done, done, NULL, NULL), 0);
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

	open_gate();
	deadline = test_now_ms() + 30000;
	while (atomic_load(&done[0]) + atomic_load(&done[1]) < ENTRIES && test_now_ms() < deadline)
		test_nap();
	assert_int_equal(atomic_load(&done[0]), ENTRIES);
	assert_int_equal(node_applied(n), commit);
	assert_int_equal(gate.out_of_order, 0);
	node_stop(n);
	node_free(n);
	kvsm_close(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_queue_bounded_while_apply_stalls, remove_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
