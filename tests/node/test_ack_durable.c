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
#define ELECTION_TICKS 50 /* 500 ms: no elections from a loaded machine's pauses */
#define FOLLOWER_PUTS 200

struct member {
	node_config cfg;
	kvsm *k;
	node_sm sm;
	node *n;
};

static struct member m[N_NODES];
static char dir[32];

static void on_put(void *arg, int status, int64_t result, uint64_t index)
{
	(void)result;
	(void)index;
	atomic_store((atomic_int *)arg, status == 0 ? 1 : -1);
}

static int teardown(void **state)
{
	char cmd[64];

	(void)state;
	for (int i = 0; i < N_NODES; i++) {
		if (m[i].n) {
			node_stop(m[i].n);
			node_free(m[i].n);
		}
		if (m[i].k)
			kvsm_close(m[i].k);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* cmocka runs no teardown after a failed setup: undo here what was made. */
static int setup_failed(const char *why)
{
	fprintf(stderr, "ack_durable setup in %s: %s\n", dir, why);
	teardown(NULL);
	return -1;
}

static int setup(void **state)
{
	uint16_t port[N_NODES];
	char err[256];

	(void)state;
	memset(m, 0, sizeof(m));
	snprintf(dir, sizeof(dir), "/tmp/ack_durable.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	setenv("RAFTFS_TEST_STALL", "1", 1);
	if (test_distinct_ports(port, N_NODES) != 0)
		return setup_failed("no free port");
	for (int i = 0; i < N_NODES; i++) {
		node_config *c = &m[i].cfg;

		test_member_config(c, "ackdurable", dir, i, N_NODES, port);
		c->snapshot_entries = 0;
		c->proposal_timeout_ms = 30000;
		c->election_ticks = ELECTION_TICKS;
		if (kvsm_open(c->data_dir, &m[i].k, err, sizeof(err)) != 0)
			return setup_failed(err);
		kvsm_iface(m[i].k, &m[i].sm);
		if (node_new(c, &m[i].sm, &m[i].n, err, sizeof(err)) != 0)
			return setup_failed(err);
	}
	for (int i = 0; i < N_NODES; i++)
		if (node_launch(m[i].n) != 0)
			return setup_failed("node_launch failed");
	return 0;
}

/* A node that says it leads (-1: none within 20 s). */
static int leading_node(void)
{
	return test_leading(&m[0].n, sizeof(m[0]), N_NODES, 20000);
}

/* Proposes key=value on node i and waits for it to apply there: 1 applied,
 * -1 failed, 0 not within ms. */
static int put_wait(int i, const char *kv, long long ms)
{
	static atomic_int done;
	long long deadline = test_now_ms() + ms;

	atomic_store(&done, 0);
	if (node_start(m[i].n, kv, strlen(kv), 30000, on_put, &done, NULL, NULL) != 0)
		return -1;
	while (atomic_load(&done) == 0 && test_now_ms() < deadline)
		test_nap();
	return atomic_load(&done);
}

/* The leader once a put through it applied (its term's entry saved). */
static int find_leader(void)
{
	int i = leading_node();

	if (i < 0 || put_wait(i, "first=1", 20000) != 1)
		return -1;
	return leading_node();
}

/* Holds node i's persist thread for ms after its next save (RAFTFS_TEST_STALL,
 * any role): written aside and renamed in, so never read half. */
static void hold_next_save(int i, unsigned ms)
{
	char tmp[4200], path[4200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/stall-any", m[i].cfg.data_dir);
	snprintf(tmp, sizeof(tmp), "%s/stall-any.tmp", m[i].cfg.data_dir);
	f = fopen(tmp, "w");
	assert_non_null(f);
	fprintf(f, "%u\n", ms);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
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
	assert_int_equal(node_start(m[leader].n, "held=1", 6, 30000, on_put, &done, NULL, NULL), 0);
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
		assert_int_equal(put_wait(fol, kv, 10000), 1);
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
