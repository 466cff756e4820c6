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
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool closed;
	node_sm inner;
} gate = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .closed = true};

static int failing_apply(void *ctx, uint64_t index, const envelope *env, const uint8_t *cmd,
			 size_t len, int64_t *result)
{
	(void)ctx, (void)index, (void)env, (void)cmd, (void)len, (void)result;
	pthread_mutex_lock(&gate.mu);
	while (gate.closed)
		pthread_cond_wait(&gate.cv, &gate.mu);
	pthread_mutex_unlock(&gate.mu);
	return NODE_EFAULT;
}

static void open_gate(void)
{
	pthread_mutex_lock(&gate.mu);
	gate.closed = false;
	pthread_cond_broadcast(&gate.cv);
	pthread_mutex_unlock(&gate.mu);
}

static atomic_int answered, as_fault;

static void on_done(void *arg, int status, int64_t result, uint64_t index)
{
	(void)arg, (void)result, (void)index;
	if (status == NODE_EFAULT)
		atomic_fetch_add(&as_fault, 1);
	atomic_fetch_add(&answered, 1);
}

static char dir[] = "/tmp/fault-pending.XXXXXX";

static int remove_dir(void **state)
{
	char cmd[64];

	(void)state;
	open_gate(); /* a failed test must not leave the apply thread stuck */
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_pending_fail_with_the_fault(void **state)
{
	char err[512], addr[64];
	uint16_t port = test_free_port();
	long long deadline;
	node_config cfg;
	node_sm sm;
	kvsm *k;
	node *n;

	(void)state;
	assert_int_not_equal(port, 0);
	assert_non_null(mkdtemp(dir));
	test_one_node_config(&cfg, "fault-pending", dir, port);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	cfg.snapshot_entries = 0;
	cfg.proposal_timeout_ms = 120000; /* far beyond the test's own wait */

	assert_int_equal(kvsm_open(cfg.data_dir, &k, err, sizeof(err)), 0);
	kvsm_iface(k, &gate.inner);
	sm = gate.inner;
	sm.apply = failing_apply;
	if (node_new(&cfg, &sm, &n, err, sizeof(err)) != 0)
		fail_msg("node_new: %s", err);
	assert_int_equal(node_launch(n), 0);
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

	open_gate(); /* the first apply fails: the node faults */
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
	node_stop(n);
	node_free(n);
	kvsm_close(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_pending_fail_with_the_fault, remove_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
