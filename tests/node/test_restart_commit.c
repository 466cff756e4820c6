/* test_restart_commit.c — a node starts again when its saved commit index
 * is below its own latest snapshot. The commit index is saved lazily
 * (consensus/node.c, handle_ready), so a node killed right after taking a
 * local snapshot at N, its log compacted to N - snapshot_trailing, can
 * find a commit index below N in its store; it must start anyway (a
 * snapshot is committed by definition). Seen once as snapshot.crash's
 * "raft core ... invalid argument". The test makes that store state by
 * hand: one in-process node with the kv state machine, stopped, its saved
 * commit index lowered to 1, started again. */
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
#include "store.h"

#define PUTS_PER_ROUND 100
#define MAX_ROUNDS 10

/* Starts the node of cfg (a one-node cluster), waits for it to lead, puts
 * `puts` keys and waits for them to apply; stops it. */
static void run_node(const node_config *cfg, int round, int puts)
{
	char err[512];
	atomic_int done[2] = {0, 0}; /* applied, failed */
	node_sm sm;
	kvsm *k;
	node *n;
	bool leads = false;
	long long deadline = test_now_ms() + 20000;

	assert_int_equal(kvsm_open(cfg->data_dir, &k, err, sizeof(err)), 0);
	kvsm_iface(k, &sm);
	if (node_new(cfg, &sm, &n, err, sizeof(err)) != 0)
		fail_msg("node_new (round %d): %s", round, err);
	assert_int_equal(node_launch(n), 0);
	while (!leads && test_now_ms() < deadline) {
		struct timespec ts = {0, 10 * 1000 * 1000};

		node_get_state(n, NULL, &leads);
		if (!leads)
			nanosleep(&ts, NULL); /* polling a condition with a deadline */
	}
	assert_true(leads);
	for (int i = 0; i < puts; i++) {
		char cmd[64];
		int len = snprintf(cmd, sizeof(cmd), "r%d-%d=%d", round, i, i);

		assert_int_equal(node_start(n, cmd, (size_t)len, 0, test_on_count, done, NULL, NULL), 0);
	}
	while (atomic_load(&done[0]) + atomic_load(&done[1]) < puts && test_now_ms() < deadline) {
		struct timespec ts = {0, 5 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
	assert_int_equal(atomic_load(&done[0]), puts);
	node_stop(n);
	node_free(n);
	kvsm_close(k);
}

/* The test's directory, removed by the teardown also when the test fails. */
static char dir[] = "/tmp/restart-commit.XXXXXX";

static int remove_dir(void **state)
{
	char cmd[64];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_restart_with_commit_below_snapshot(void **state)
{
	char raft_dir[4200], err[512];
	raft_snapshot_meta meta = {0};
	raft_hard_state hs;
	node_config cfg;
	uint64_t len = 0;
	uint16_t port = test_free_port();
	store *s;
	int round;

	(void)state;
	assert_int_not_equal(port, 0);
	assert_non_null(mkdtemp(dir));
	test_one_node_config(&cfg, "restart-commit", dir, port);
	cfg.snapshot_entries = 20;
	cfg.snapshot_trailing = 10;
	snprintf(raft_dir, sizeof(raft_dir), "%s/raft", cfg.data_dir);

	/* Until a snapshot with entries compacted behind it is in the store
	 * (the snapshot thread makes it while puts go on). */
	for (round = 0; round < MAX_ROUNDS; round++) {
		run_node(&cfg, round, PUTS_PER_ROUND);
		assert_int_equal(store_open(raft_dir, &s, err, sizeof(err)), 0);
		meta = (raft_snapshot_meta){0};
		if (store_snapshot_meta(s, &meta, &len) == 0 && meta.index > cfg.snapshot_trailing &&
		    store_first_index(s) <= meta.index) {
			raft_conf_state_free_contents(&meta.conf);
			break;
		}
		raft_conf_state_free_contents(&meta.conf);
		store_close(s);
	}
	assert_true(round < MAX_ROUNDS);
	/* What a kill -9 right after the snapshot can leave: the saved commit
	 * index below the snapshot and below the compacted log's start. */
	store_hard_state(s, &hs);
	hs.commit = 1;
	assert_int_equal(store_set_hard_state(s, &hs), 0);
	store_close(s);

	/* It starts, leads and applies again. */
	run_node(&cfg, round + 1, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_restart_with_commit_below_snapshot, remove_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
