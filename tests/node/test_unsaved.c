/* test_unsaved.c — a leader whose disk stalls holds at most
 * node_config.unsaved_bytes of entries not yet saved on it (plus one
 * entry: here every proposal is the node's own): its proposals beyond wait in the node and go, in order, once
 * saves catch up; none is lost or applied twice, and the loop answers
 * status all along. One in-process node (a cluster of one: nothing
 * commits while its disk is held) with the kv state machine; the disk
 * stall is RAFTFS_TEST_STALL's (the persist thread held after a save). */
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

#define BOUND (256u << 10)
#define ENTRY_BYTES 4096
#define ENTRIES 400 /* 1.6 MiB: six times the bound */
#define STALL_MS 1500

/* Completions: counts, and the order they came in (by index). */
static struct {
	atomic_int ok, failed, out_of_order;
	_Atomic uint64_t last_index;
} done;

static void on_done(void *arg, int status, int64_t result, uint64_t index)
{
	(void)arg;
	(void)result;
	if (status != 0) {
		atomic_fetch_add(&done.failed, 1);
		return;
	}
	if (index <= atomic_load(&done.last_index))
		atomic_fetch_add(&done.out_of_order, 1);
	atomic_store(&done.last_index, index);
	atomic_fetch_add(&done.ok, 1);
}

/* Puts the kv state machine executed ("new" in its applied log), all by
 * one client in increasing seq; -1 if not. */
static int count_new(const node_config *cfg)
{
	char err[256], *text = NULL, *line, *save = NULL;
	unsigned long long last = 0;
	size_t len = 0;
	int count = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	if (kvsm_dump(cfg->data_dir, f, err, sizeof(err)) != 0)
		fail_msg("kvsm_dump: %s", err);
	assert_int_equal(fclose(f), 0);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long long index, cid, seq;
		char kind[8];

		if (sscanf(line, "%llu %7s %llx %llu", &index, kind, &cid, &seq) != 4)
			fail_msg("kv applied log: %s", line);
		if (strcmp(kind, "new"))
			continue;
		if (seq <= last) {
			free(text);
			return -1;
		}
		last = seq;
		count++;
	}
	free(text);
	return count;
}

static char dir[] = "/tmp/unsaved.XXXXXX";

static int remove_dir(void **state)
{
	char cmd[64];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Asks the node (RAFTFS_TEST_STALL) to hold its persist thread for ms
 * after its next save: written aside and renamed in, so never read half. */
static void stall_next_save(const node_config *cfg, unsigned ms)
{
	char tmp[4200], path[4200];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s/stall-once.tmp", cfg->data_dir);
	snprintf(path, sizeof(path), "%s/stall-once", cfg->data_dir);
	f = fopen(tmp, "w");
	assert_non_null(f);
	fprintf(f, "%u\n", ms);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static void test_unsaved_bounded_while_disk_stalls(void **state)
{
	static char payload[ENTRY_BYTES];
	char err[512], addr[64];
	uint16_t port = test_free_port();
	uint64_t first, commit, max;
	long long deadline, t0;
	node_config cfg;
	node_sm sm;
	int answers = 0;
	kvsm *k;
	node *n;

	(void)state;
	assert_int_not_equal(port, 0);
	assert_non_null(mkdtemp(dir));
	test_one_node_config(&cfg, "unsaved", dir, port);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	cfg.unsaved_bytes = BOUND;
	cfg.snapshot_entries = 0;
	cfg.proposal_timeout_ms = 60000;
	setenv("RAFTFS_TEST_STALL", "1", 1);

	assert_int_equal(kvsm_open(cfg.data_dir, &k, err, sizeof(err)), 0);
	kvsm_iface(k, &sm);
	if (node_new(&cfg, &sm, &n, err, sizeof(err)) != 0)
		fail_msg("node_new: %s", err);
	assert_int_equal(node_launch(n), 0);
	deadline = test_now_ms() + 20000;
	/* Leading, with its term's empty entry (index 1) applied. */
	assert_true(test_await_lead(n, deadline));
	first = node_applied(n);
	assert_int_equal(first, 1);

	/* The first put's save holds the disk; the others pile up behind. */
	stall_next_save(&cfg, STALL_MS);
	t0 = test_now_ms();
	memset(payload, 'x', sizeof(payload));
	for (int i = 0; i < ENTRIES; i++) {
		int len = snprintf(payload, 32, "k%d=", i);

		payload[len] = 'x';
		assert_int_equal(node_start(n, payload, sizeof(payload), 0, on_done, NULL, NULL, NULL),
				 0);
	}
	/* While the disk is held nothing commits (one node: its own save is
	 * the quorum), and the loop answers status all along. */
	while (test_now_ms() - t0 < STALL_MS / 2) {
		commit = test_commit_index(addr, 1000);
		assert_int_not_equal(commit, 0);
		assert_true(commit <= first + 1);
		answers++;
		test_nap();
	}
	max = node_unsaved_max(n);
	printf("unsaved at most %llu bytes during the stall (bound %u, %d puts of %d bytes); "
	       "%d status answers\n",
	       (unsigned long long)max, BOUND, ENTRIES, ENTRY_BYTES, answers);
	/* The bound was reached (the stall held the puts back) and not
	 * passed by more than one entry; unbounded, all 1.6 MiB would be. */
	assert_true(max >= BOUND);
	assert_true(max < BOUND + ENTRY_BYTES + 64);

	/* Once the disk is back, every put goes, in order, exactly once. */
	deadline = test_now_ms() + 60000;
	while (atomic_load(&done.ok) + atomic_load(&done.failed) < ENTRIES &&
	       test_now_ms() < deadline)
		test_nap();
	assert_int_equal(atomic_load(&done.failed), 0);
	assert_int_equal(atomic_load(&done.ok), ENTRIES);
	assert_int_equal(atomic_load(&done.out_of_order), 0);
	assert_true(node_unsaved_max(n) < BOUND + ENTRY_BYTES + 64);
	/* None skipped: held puts never reached the core out of order. */
	assert_int_equal(node_refused(n), 0);
	node_stop(n);
	node_free(n);
	kvsm_close(k);
	/* Each put executed exactly once, in order. (A put tried again by
	 * the retry timer, 1 s without an answer, may be in the log twice:
	 * the second is a "dup", which changes nothing.) */
	assert_int_equal(count_new(&cfg), ENTRIES);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_unsaved_bounded_while_disk_stalls, remove_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
