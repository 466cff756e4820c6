/* test_persist.c — the persist thread's account of a save: the time it
 * reports (save_ns, summed into the loop's stage line under
 * RAFTFS_STAGES) is the store's, without a test's hold after it
 * (node_persist_stall_next), which it reports apart (stalled_ms). With
 * the hold counted in, every stall test's save timings said the disk took
 * the whole hold (session 7 review finding (d)). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "node_persist.h"
#include "store.h"

#define HOLD_MS 1000

static char dir[] = "/tmp/persist.XXXXXX";
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool woken;

static void on_wake(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	woken = true;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

static int remove_dir(void **state)
{
	char cmd[64];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Saves hs once (held hold_ms after it) and returns the finished job. */
static persist_job *save_once(node_persist *p, const raft_hard_state *hs, unsigned hold_ms)
{
	persist_job *j = node_persist_job_new(hs, NULL, 0);

	assert_non_null(j);
	if (hold_ms)
		node_persist_stall_next(p, hold_ms);
	pthread_mutex_lock(&mu);
	woken = false;
	pthread_mutex_unlock(&mu);
	node_persist_submit(p, j);
	pthread_mutex_lock(&mu);
	while (!woken)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	j = node_persist_take_done(p);
	assert_non_null(j);
	assert_null(j->next);
	assert_int_equal(j->rc, 0);
	return j;
}

static void test_save_time_without_hold(void **state)
{
	raft_hard_state hs = {.term = 1, .vote = 1, .commit = 0};
	char err[512], sub[64];
	node_persist *p;
	persist_job *j;
	store *st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/raft", dir);
	if (store_open(sub, &st, err, sizeof(err)) != 0)
		fail_msg("store_open %s: %s", sub, err);
	assert_int_equal(node_persist_new(st, on_wake, NULL, &p), 0);

	j = save_once(p, &hs, HOLD_MS);
	printf("a held save: %.3f ms in the store, held %u ms\n", j->save_ns / 1e6, j->stalled_ms);
	assert_int_equal(j->stalled_ms, HOLD_MS);
	/* A hard state's save on a tmp directory takes well under the hold;
	 * with the hold counted it would be at least HOLD_MS. */
	assert_true(j->save_ns < (uint64_t)HOLD_MS * 1000000 / 2);
	node_persist_job_free(j);

	hs.term = 2;
	j = save_once(p, &hs, 0);
	assert_int_equal(j->stalled_ms, 0);
	node_persist_job_free(j);

	node_persist_free(p);
	store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_save_time_without_hold, remove_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
