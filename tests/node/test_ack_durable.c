/* test_ack_durable.c — a follower's persist thread sends its append
 * acknowledgements itself (consensus/README-node.md, "Session 9"), but only
 * once the entries are on its stable storage (Raft Figure 2: a follower
 * acknowledges only what it has persisted; the leader counts that
 * acknowledgement toward the commit).
 *
 * Three in-process nodes with the kv state machine over loopback TCP. Both
 * followers' disks are made to take HOLD_MS for their next save
 * (RAFTFS_TEST_STALL's hold, which sits where a slow sync sits), then a put
 * is proposed on the leader: no quorum holds it durably before the holds
 * end, so it must not be applied before then. An acknowledgement sent
 * before the hold (before the save is durable) lets the leader commit and
 * apply the put within milliseconds. Then puts through a follower: the
 * acknowledgements went from the persist threads (node_direct_acks), and a
 * follower's own puts complete, its loop not woken for every save. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
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
/* The put must still be unapplied this long after it was proposed: well
 * under HOLD_MS, so a loaded machine's late start of the holds cannot make
 * a correct runtime fail. */
#define UNAPPLIED_MS 800
#define FOLLOWER_PUTS 200

static struct test_kv_member m[N_NODES];
static char dir[64];

static int teardown(void **state)
{
	(void)state;
	return test_kv_cluster_stop(m, N_NODES, dir);
}

static void tune(struct test_kv_member *member, int i)
{
	(void)i;
	member->cfg.proposal_timeout_ms = 30000;
}

static int setup(void **state)
{
	(void)state;
	return test_kv_cluster_start(m, N_NODES, "ackdurable", dir, tune);
}

/* A node that says it leads (-1: none within 20 s). */
static int leading_node(void)
{
	return test_leading(&m[0].n, sizeof(m[0]), N_NODES, 20000);
}

/* The leader once a put through it applied (its term's entry saved). */
static int find_leader(void)
{
	int i = leading_node();

	if (i < 0 || test_put_wait(m[i].n, "first=1", 20000) != 1)
		return -1;
	return leading_node();
}

/* Holds node i's persist thread for ms after its next save, in any role. */
static void hold_next_save(int i, unsigned ms)
{
	char path[4200];

	assert_int_equal(test_hold_next_save(&m[i].cfg, "any", ms, path, sizeof(path)), 0);
}

static void test_ack_waits_for_durable(void **state)
{
	static atomic_int done;
	int leader;
	long long t0, applied_ms = -1;

	(void)state;
	leader = find_leader();
	assert_true(leader >= 0);
	for (int i = 0; i < N_NODES; i++)
		if (i != leader)
			hold_next_save(i, HOLD_MS);
	atomic_store(&done, 0);
	t0 = test_now_ms();
	assert_int_equal(
	    node_start(m[leader].n, "held=1", 6, 30000, test_on_put, &done, NULL, NULL), 0);
	while (atomic_load(&done) == 0 && test_now_ms() - t0 < 20000)
		test_nap();
	if (atomic_load(&done))
		applied_ms = test_now_ms() - t0;
	printf("put on the leader (n%d) with both followers' saves held %d ms: applied after "
	       "%lld ms\n",
	       leader + 1, HOLD_MS, applied_ms);
	assert_int_equal(atomic_load(&done), 1);
	/* Not before a follower's save was durable. */
	assert_true(applied_ms >= UNAPPLIED_MS);
}

static void test_follower_puts_direct(void **state)
{
	int leader, fol;
	uint64_t acks0 = 0, acks1 = 0;
	long long t0;
	char kv[32];

	(void)state;
	leader = find_leader();
	assert_true(leader >= 0);
	fol = (leader + 1) % N_NODES;
	for (int i = 0; i < N_NODES; i++)
		acks0 += node_direct_acks(m[i].n);
	t0 = test_now_ms();
	for (int i = 0; i < FOLLOWER_PUTS; i++) {
		snprintf(kv, sizeof(kv), "f%d=%d", i, i);
		assert_int_equal(test_put_wait(m[fol].n, kv, 10000), 1);
	}
	for (int i = 0; i < N_NODES; i++)
		acks1 += node_direct_acks(m[i].n);
	printf("%d puts through a follower (n%d), one at a time: %lld ms; %llu acknowledgements "
	       "sent by persist threads\n",
	       FOLLOWER_PUTS, fol + 1, test_now_ms() - t0, (unsigned long long)(acks1 - acks0));
	/* Each put's entry is acknowledged by two followers; a few may go
	 * through the loop (socket busy at that moment). */
	assert_true(acks1 - acks0 >= FOLLOWER_PUTS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_ack_waits_for_durable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_follower_puts_direct, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
