/* test_persist_fail.c — a failed save stops the persist thread's own
 * acknowledgements for good. A follower's persist thread sends a save's
 * messages itself once it is durable (node_persist_set_sender); a save
 * queued after one whose sync failed must neither be saved nor send its
 * acknowledgement, which would cover the failed save's entries (Figure 2:
 * a follower acknowledges only what its stable storage holds; the leader
 * would commit an entry this follower may lose at its next start). */
#include <errno.h>
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

#include <cmocka.h>

#include "node_persist.h"
#include "store.h"

static char dir[] = "/tmp/persist-fail.XXXXXX";
static atomic_bool woken;
static atomic_uint_fast64_t n_sent, top_sent; /* by the sender: how many, highest index */

static void on_wake(void *arg)
{
	(void)arg;
	atomic_store(&woken, true);
}

/* The persist thread's sender: takes every message, notes what it acks. */
static int count_send(void *arg, const raft_msg *m)
{
	(void)arg;
	atomic_fetch_add(&n_sent, 1);
	if (m->index > atomic_load(&top_sent))
		atomic_store(&top_sent, m->index);
	return 0;
}

static int remove_dir(void **state)
{
	char cmd[64];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Queues a save of entry index (term 1) with its acknowledgement kept,
 * and waits until the persist thread is done with it (and every earlier
 * save), as the loop would not: it takes nothing back meanwhile. */
static void save_and_wait(node_persist *p, uint64_t index)
{
	raft_hard_state hs = {.term = 1, .vote = 2, .commit = 0};
	raft_entry e = {.term = 1, .index = index, .type = RAFT_ENTRY_NORMAL};
	raft_msg ack = {.type = RAFT_MSG_APP_RESP, .to = 2, .from = 1, .term = 1, .index = index};
	persist_job *j = node_persist_job_new(&hs, &e, 1);

	assert_non_null(j);
	assert_int_equal(node_persist_keep(j, &ack), 0);
	node_persist_submit(p, j);
	node_persist_drain(p);
}

static void test_no_ack_after_failed_save(void **state)
{
	char err[512], sub[64];
	node_persist *p;
	persist_job *j, *next;
	store *st;
	int n;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/raft", dir);
	if (store_open(sub, &st, err, sizeof(err)) != 0)
		fail_msg("store_open %s: %s", sub, err);
	assert_int_equal(node_persist_new(st, on_wake, NULL, &p), 0);
	node_persist_set_sender(p, count_send, NULL);
	node_persist_lazy(p, true, 0);

	/* A good save's acknowledgement goes from the persist thread: the
	 * test sees direct sends (else the rest proves nothing). */
	save_and_wait(p, 1);
	assert_int_equal(atomic_load(&n_sent), 1);
	assert_int_equal(atomic_load(&top_sent), 1);
	assert_int_equal(node_persist_direct_sent(p), 1);
	j = node_persist_take_done(p);
	assert_non_null(j);
	assert_int_equal(j->rc, 0);
	assert_int_equal(j->n_msgs, 0);
	node_persist_job_free(j);

	/* Entry 2's sync fails; entry 3's save, queued before the loop has
	 * heard of that (nothing taken back in between), would succeed on
	 * its own and acknowledge index 3, covering entry 2. */
	atomic_store(&woken, false);
	store_fail_next_sync(st, RAFT_EIO);
	save_and_wait(p, 2);
	save_and_wait(p, 3);
	assert_true(atomic_load(&woken)); /* a failed save wakes the loop */
	assert_int_equal(atomic_load(&n_sent), 1);
	assert_int_equal(atomic_load(&top_sent), 1);
	assert_int_equal(node_persist_direct_sent(p), 1);

	/* Both come back failed, their acknowledgements unsent, in order. */
	n = 0;
	for (j = node_persist_take_done(p); j; j = next, n++) {
		next = j->next;
		printf("save of entry %llu: rc %d (%s), %zu message(s) kept\n",
		       (unsigned long long)j->ents[0].index, j->rc, j->err, j->n_msgs);
		assert_int_equal(j->ents[0].index, 2 + n);
		assert_true(j->rc < 0);
		assert_int_equal(j->n_msgs, 1);
		/* Entry 3's save is failed by the persist thread's own mark,
		 * not only by the store's latched sync: saves that fail
		 * without a sync (none latched) must stop the later ones too. */
		if (n == 1)
			assert_non_null(strstr(j->err, "an earlier save failed"));
		node_persist_job_free(j);
	}
	assert_int_equal(n, 2);

	/* Entry 3 was not written: the store ends at the failed save's
	 * entry (written, its sync failed) at most. */
	node_persist_lock(p);
	assert_true(store_last_index(st) <= 2);
	node_persist_unlock(p);

	node_persist_free(p);
	store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_no_ack_after_failed_save, remove_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
