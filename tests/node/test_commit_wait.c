/* test_commit_wait.c — a proposal known committed does not fail at its
 * deadline: a put that committed while the proposing node's apply is held
 * (a gate) for longer than the proposal timeout finishes with success once
 * the gate opens, through the leader and through a follower (node.c,
 * waits_for_apply: failing it told the caller it failed while it applied
 * everywhere). A put that cannot commit (the other two nodes stopped) still
 * fails at its deadline. And a follower's put committed but held back from
 * its apply, then covered by a snapshot from the leader (the apply index
 * jumps past it), is answered at the restore from the restored duplicate
 * table, with its result and no retry (node.c, node_answer_restored):
 * before its deadline (it was retried, a duplicate in the log), and past
 * it (it waited for its committed copy, then failed with ETIMEDOUT
 * although it applied everywhere). Three in-process nodes with the kv
 * state machine, the proposer's apply behind a gate. */
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

#include "client.h"
#include "config.h"
#include "kvsm.h"
#include "node.h"
#include "node_testlib.h"
#include "raft_types.h"

#define N_NODES 3
/* Short, so that the hold below outlasts it by far. */
#define TIMEOUT_MS 1000

static struct test_kv_member m[N_NODES];
static char dir[64];
/* The gate the proposer's apply waits at; the other nodes apply freely. */
static struct test_gate gate = TEST_GATE_CLOSED;
static _Atomic(kvsm *) gated;

static int gated_apply(void *ctx, uint64_t index, const envelope *env, const uint8_t *cmd,
		       size_t len, int64_t *result)
{
	if (ctx == atomic_load(&gated))
		test_gate_wait(&gate);
	return m[0].inner.apply(ctx, index, env, cmd, len, result);
}

/* The put's outcome: its status, result and index once answered. */
static atomic_int answered;
static atomic_int status;
static _Atomic int64_t put_result;
static _Atomic uint64_t put_index;

static void on_done(void *arg, int st, int64_t result, uint64_t index)
{
	(void)arg;
	atomic_store(&status, st);
	atomic_store(&put_result, result);
	atomic_store(&put_index, index);
	atomic_store(&answered, 1);
}

static void tune(struct test_kv_member *member, int i)
{
	(void)i;
	member->cfg.proposal_timeout_ms = TIMEOUT_MS;
	member->sm.apply = gated_apply;
}

static int setup(void **state)
{
	(void)state;
	atomic_store(&gated, NULL);
	atomic_store(&answered, 0);
	test_gate_close(&gate);
	return test_kv_cluster_start(m, N_NODES, "commitwait", dir, tune);
}

static int teardown(void **state)
{
	(void)state;
	test_gate_open(&gate);
	return test_kv_cluster_stop(m, N_NODES, dir);
}

/* The records of cmd of the given kind ("new", "dup") in member i's kv log
 * (read while it runs): how many, and the index of the last in *at (0:
 * none). -1 if the log could not be read. */
static int kv_records(int i, const char *kind_wanted, const char *cmd, uint64_t *at)
{
	char *buf = NULL, line[256], err[128];
	size_t size = 0;
	int count = 0;
	FILE *f = open_memstream(&buf, &size);

	if (at)
		*at = 0;
	if (!f)
		return -1;
	if (kvsm_dump(m[i].cfg.data_dir, f, err, sizeof(err)) < 0) {
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	f = fmemopen(buf, size, "r");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long index;
		char kind[16], rest[200];

		/* "index kind client seq result command" */
		if (sscanf(line, "%llu %15s %*s %*s %*s %199s", &index, kind, rest) == 3 &&
		    strcmp(kind, kind_wanted) == 0 && strcmp(rest, cmd) == 0) {
			count++;
			if (at)
				*at = index;
		}
	}
	if (f)
		fclose(f);
	free(buf);
	return count;
}

/* The index at which member i applied cmd first (0: not yet). */
static uint64_t applied_at(int i, const char *cmd)
{
	uint64_t at;

	kv_records(i, "new", cmd, &at);
	return at;
}

/* Proposes cmd on member p with its apply held; waits until another member
 * applied it (so it is committed) and p's own commit index passed it (p
 * knows it committed); holds p's apply for three proposal timeouts, during
 * which the put must not be answered; then opens the gate: it must succeed. */
static void committed_put_outlasts_deadline(int p, const char *cmd)
{
	int other = (p + 1) % N_NODES;
	char addr[64];
	uint64_t index = 0;
	long long deadline, hold_end;

	snprintf(addr, sizeof(addr), "127.0.0.1:%u", m[p].cfg.listen_port);
	/* Known a leader and caught up: one put applied through p first. */
	assert_int_equal(test_put_wait(m[p].n, "warm=1", 20000), 1);
	atomic_store(&gated, m[p].k);
	assert_int_equal(node_start(m[p].n, cmd, strlen(cmd), 0, on_done, NULL, NULL, NULL), 0);
	deadline = test_now_ms() + 20000;
	while (!(index = applied_at(other, cmd)) && test_now_ms() < deadline)
		test_nap();
	assert_true(index > 0);
	while (test_commit_index(addr, 2000) < index && test_now_ms() < deadline)
		test_nap();
	assert_true(test_commit_index(addr, 2000) >= index);
	/* The hold is the scenario: apply here lags the commit by three
	 * proposal timeouts (a slow disk, a node catching up). */
	hold_end = test_now_ms() + 3 * TIMEOUT_MS;
	while (test_now_ms() < hold_end)
		test_nap();
	printf("n%d: put committed at %llu, held from apply for %d ms: %s\n", p + 1,
	       (unsigned long long)index, 3 * TIMEOUT_MS,
	       atomic_load(&answered) ? node_strerror(atomic_load(&status)) : "still waiting");
	assert_int_equal(atomic_load(&answered), 0);
	assert_int_equal(node_applied(m[p].n) < index, 1);

	test_gate_open(&gate);
	deadline = test_now_ms() + 20000;
	while (!atomic_load(&answered) && test_now_ms() < deadline)
		test_nap();
	assert_int_equal(atomic_load(&answered), 1);
	assert_int_equal(atomic_load(&status), 0);
	assert_true(node_applied(m[p].n) >= index);
}

static void test_leader_waits_for_apply(void **state)
{
	int leader;

	(void)state;
	leader = test_leading(&m[0].n, sizeof(m[0]), N_NODES, 20000);
	assert_true(leader >= 0);
	committed_put_outlasts_deadline(leader, "viale=1");
}

static void test_follower_waits_for_apply(void **state)
{
	int leader;

	(void)state;
	leader = test_leading(&m[0].n, sizeof(m[0]), N_NODES, 20000);
	assert_true(leader >= 0);
	committed_put_outlasts_deadline((leader + 1) % N_NODES, "viaf=1");
}

/* Not committed (no quorum): the bounded wait is kept. */
static void test_uncommitted_fails_at_deadline(void **state)
{
	int leader, p;
	long long t0;

	(void)state;
	leader = test_leading(&m[0].n, sizeof(m[0]), N_NODES, 20000);
	assert_true(leader >= 0);
	p = leader;
	assert_int_equal(test_put_wait(m[p].n, "warm=1", 20000), 1);
	for (int i = 0; i < N_NODES; i++) {
		if (i == p)
			continue;
		node_stop(m[i].n);
		node_free(m[i].n);
		m[i].n = NULL;
	}
	t0 = test_now_ms();
	assert_int_equal(node_start(m[p].n, "lost=1", 6, 0, on_done, NULL, NULL, NULL), 0);
	while (!atomic_load(&answered) && test_now_ms() - t0 < 30000)
		test_nap();
	printf("n%d alone: put answered after %lld ms: %s\n", p + 1, test_now_ms() - t0,
	       atomic_load(&answered) ? node_strerror(atomic_load(&status)) : "not at all");
	assert_int_equal(atomic_load(&answered), 1);
	assert_int_not_equal(atomic_load(&status), 0);
	assert_int_not_equal(atomic_load(&status), NODE_ESTOPPED);
}

/* The snapshot case: member `cut` (its index; -1: none) neither sends nor
 * is sent anything while set. */
static atomic_int cut = -1;

static bool cut_off(void *arg, const raft_msg *msg)
{
	int self = (int)(intptr_t)arg, c = atomic_load(&cut);

	return c >= 0 && (self == c || msg->to == (uint64_t)c + 1);
}

#define SNAP_QUEUE_BYTES (16u << 10)
#define SNAP_ENTRY_BYTES 4096
#define SNAP_EVERY 20

static void tune_snap(struct test_kv_member *member, int i)
{
	(void)i;
	/* Long: the put must be answered well before it (but for the put
	 * given a short timeout of its own). */
	member->cfg.proposal_timeout_ms = 60000;
	member->cfg.apply_queue_bytes = SNAP_QUEUE_BYTES;
	member->cfg.snapshot_entries = SNAP_EVERY;
	member->cfg.snapshot_trailing = 2;
	member->cfg.snapshot_amortize = 0;
	member->sm.apply = gated_apply;
}

static int setup_snap(void **state)
{
	(void)state;
	atomic_store(&gated, NULL);
	atomic_store(&answered, 0);
	atomic_store(&cut, -1);
	test_gate_close(&gate);
	if (test_kv_cluster_new(m, N_NODES, "commitwsnap", dir, tune_snap) != 0)
		return -1;
	for (int i = 0; i < N_NODES; i++)
		node_set_msg_filter(m[i].n, cut_off, (void *)(intptr_t)i);
	return test_kv_cluster_launch(m, N_NODES, "commitwsnap", dir);
}

/* A follower's put, committed but not handed to its apply, is covered by
 * a snapshot from the leader; timeout_ms: the put's own (0: the 60 s
 * configured), held past it before the snapshot is restored. It must be
 * answered at the restore with the result every node gave it, and no
 * retry (no duplicate in the follower's log). */
static void follower_put_under_snapshot(unsigned timeout_ms)
{
	static char payload[SNAP_ENTRY_BYTES];
	static atomic_int filled[2];
	int leader, f;
	char faddr[64], laddr[64];
	uint64_t index = 0, last = 0, flast;
	long long deadline, put_deadline;

	leader = test_leading(&m[0].n, sizeof(m[0]), N_NODES, 20000);
	assert_true(leader >= 0);
	f = (leader + 1) % N_NODES;
	snprintf(faddr, sizeof(faddr), "127.0.0.1:%u", m[f].cfg.listen_port);
	snprintf(laddr, sizeof(laddr), "127.0.0.1:%u", m[leader].cfg.listen_port);
	assert_int_equal(test_put_wait(m[f].n, "warm=1", 20000), 1);
	/* The follower's apply stops at the next entry, and the leader's puts
	 * fill its apply queue past the bound: what commits next is held
	 * back from being handed out there. */
	atomic_store(&gated, m[f].k);
	memset(payload, 'x', sizeof(payload));
	for (int i = 0; i < 8; i++) {
		int len = snprintf(payload, 32, "fill%d=", i);

		payload[len] = 'x';
		assert_int_equal(node_start(m[leader].n, payload, sizeof(payload), 0, test_on_count,
					    filled, NULL, NULL),
				 0);
	}
	deadline = test_now_ms() + 30000;
	while (node_apply_queue_max(m[f].n) < SNAP_QUEUE_BYTES && test_now_ms() < deadline)
		test_nap();
	assert_true(node_apply_queue_max(m[f].n) >= SNAP_QUEUE_BYTES);
	/* The put: committed (the leader applied it), known so at the
	 * follower (its commit index passed it), not handed out there. */
	put_deadline = test_now_ms() + timeout_ms;
	assert_int_equal(node_start(m[f].n, "under=1", 7, timeout_ms, on_done, NULL, NULL, NULL),
			 0);
	deadline = test_now_ms() + 30000;
	while (!(index = applied_at(leader, "under=1")) && test_now_ms() < deadline)
		test_nap();
	assert_true(index > 0);
	while (test_commit_index(faddr, 2000) < index && test_now_ms() < deadline)
		test_nap();
	assert_true(test_commit_index(faddr, 2000) >= index);
	/* Cut off, the follower misses enough for the leader to compact its
	 * log past the follower's last entry: it gets a snapshot when it is
	 * back. */
	flast = test_last_index(faddr, 2000);
	assert_true(flast >= index);
	atomic_store(&cut, f);
	deadline = test_now_ms() + 60000;
	for (int i = 0; test_first_index(laddr, 2000) <= flast + 1 && test_now_ms() < deadline; i++) {
		char kv[32];

		snprintf(kv, sizeof(kv), "more%d=1", i);
		assert_int_equal(test_put_wait(m[leader].n, kv, 20000), 1);
	}
	assert_true(test_first_index(laddr, 2000) > flast + 1);
	last = test_commit_index(laddr, 2000);
	atomic_store(&cut, -1);
	/* Its log takes the snapshot (the loop installs it in the store while
	 * apply still waits at the gate). */
	deadline = test_now_ms() + 30000;
	while (test_last_index(faddr, 2000) < last && test_now_ms() < deadline)
		test_nap();
	assert_true(test_last_index(faddr, 2000) >= last);
	/* The hold is the scenario: the put's deadline passes while it waits
	 * for its committed copy to apply. */
	while (timeout_ms && test_now_ms() <= put_deadline + 2 * TIMEOUT_MS)
		test_nap();
	assert_int_equal(atomic_load(&answered), 0);
	test_gate_open(&gate);
	deadline = test_now_ms() + 30000;
	while (!atomic_load(&answered) && test_now_ms() < deadline)
		test_nap();
	/* Read from the follower's own kv log: a retry's apply writes its
	 * record before it answers the put. */
	printf("follower n%d: put (timeout %u ms) committed at %llu, the leader at %llu when it "
	       "came back: %s (result %lld, index %llu); its log has it %d time(s) as a "
	       "duplicate\n",
	       f + 1, timeout_ms, (unsigned long long)index, (unsigned long long)last,
	       atomic_load(&answered) ? node_strerror(atomic_load(&status)) : "not answered",
	       (long long)atomic_load(&put_result), (unsigned long long)atomic_load(&put_index),
	       kv_records(f, "dup", "under=1", NULL));
	assert_int_equal(atomic_load(&answered), 1);
	assert_int_equal(atomic_load(&status), 0);
	/* The kv machine's result is the index the put applied at. */
	assert_int_equal(atomic_load(&put_result), (int64_t)index);
	assert_true(atomic_load(&put_index) >= index);
	/* From the restored table: no retry went into the log. */
	assert_int_equal(kv_records(f, "dup", "under=1", NULL), 0);
}

static void test_follower_put_under_snapshot(void **state)
{
	(void)state;
	follower_put_under_snapshot(0);
}

/* Its deadline passed while it waited for its committed copy. */
static void test_put_past_deadline_under_snapshot(void **state)
{
	(void)state;
	follower_put_under_snapshot(TIMEOUT_MS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_leader_waits_for_apply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_follower_waits_for_apply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_uncommitted_fails_at_deadline, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_follower_put_under_snapshot, setup_snap, teardown),
	    cmocka_unit_test_setup_teardown(test_put_past_deadline_under_snapshot, setup_snap,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
