/* test_store_sync.c — a failed sync stays failed for store_save_sync too:
 * a second store_save_sync after a failed one, and one whose save was
 * written before (or while) another thread's synced write failed, never
 * return 0 (consensus/node_persist.c acknowledges a save on that 0). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "store.h"
#include "test_util.h"

typedef tu_store fixture;

/* Above the value log's bound (store/vlog.h VLOG_MIN_BYTES, 64 KiB). */
#define BIG_ENTRY (128u << 10)

static int setup(void **state)
{
	fixture *f = tu_store_new("store-sync");

	assert_non_null(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	tu_store_free(*state);
	return 0;
}

static int fail_eio(store *s, void *arg)
{
	(void)s;
	(void)arg;
	return RAFT_EIO;
}

static raft_conf_state three_voters(void)
{
	static uint64_t voters[] = {1, 2, 3};

	return (raft_conf_state){.voters = voters, .n_voters = 3};
}

/* The same thread calls store_save_sync again after it failed (nothing
 * is owed any more): the failure, not 0. */
static void test_second_sync_after_failure(void **state)
{
	fixture *f = *state;
	raft_entry *e = tu_entries(1, 2, 1, 100);
	char err[512];

	assert_int_equal(store_save_write(f->s, NULL, e, 1), 0);
	store_fail_next_sync(f->s, RAFT_EIO);
	assert_int_equal(store_save_sync(f->s, err, sizeof(err)), RAFT_EIO);
	assert_non_null(strstr(err, "failed on purpose"));
	err[0] = '\0';
	assert_int_equal(store_save_sync(f->s, err, sizeof(err)), RAFT_EIO);
	assert_non_null(strstr(err, "a sync of this store failed before"));
	raft_entries_free(e, 1);
}

/* A save written, then a synced write (a membership's conf state) fails
 * before the save's sync: the sync fails, and so does one owing nothing.
 * The save's entry is big, so its data is in the value log, whose sync
 * the refused store_save_sync still waits for (ASan: nothing left
 * running on the file at close). */
static void test_sync_after_failed_synced_write(void **state)
{
	fixture *f = *state;
	raft_entry *e = tu_entries(1, 2, 1, BIG_ENTRY);
	raft_conf_state cs = three_voters();
	char err[512];

	assert_int_equal(store_save_write(f->s, NULL, e, 1), 0);
	store_test_on_synced_write(f->s, fail_eio, NULL);
	assert_int_equal(store_set_conf_state(f->s, &cs), RAFT_EIO);
	assert_non_null(strstr(store_errmsg(f->s), "failed on purpose"));
	store_test_on_synced_write(f->s, NULL, NULL);
	assert_int_equal(store_save_sync(f->s, err, sizeof(err)), RAFT_EIO);
	assert_non_null(strstr(err, "a sync of this store failed before"));
	assert_int_equal(store_save_sync(f->s, err, sizeof(err)), RAFT_EIO);
	raft_entries_free(e, 1);
}

/* Two threads, as in the node: the persist thread syncs a save without
 * the store lock while the loop's synced write (store_compact, a conf
 * state) runs. The write's hook holds it between RocksDB's return and the
 * latch — the window in which the sync, had it run, could have taken the
 * WAL's writeback error from it and returned 0 — until the main thread's
 * store_save_sync either returned or waits for the store's sync lock; then
 * the write ends as write_result says (RAFT_EIO: its sync failed). */
typedef struct {
	fixture *f;
	int write_result;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool in_window;	 /* the writer is inside its hook */
	bool sync_done;	 /* the main thread's store_save_sync returned */
	bool saw_waiter; /* the hook saw that sync wait for the lock */
	int write_rv;
} race;

static int hold_window(store *s, void *arg)
{
	race *r = arg;
	struct timespec pause = {.tv_nsec = 1000000};

	pthread_mutex_lock(&r->mu);
	r->in_window = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	/* Polled: waiting for a lock has no notification of its own. */
	for (;;) {
		pthread_mutex_lock(&r->mu);
		bool done = r->sync_done;
		pthread_mutex_unlock(&r->mu);
		if (store_test_sync_waiting(s) > 0) {
			r->saw_waiter = true;
			return r->write_result;
		}
		if (done)
			return r->write_result;
		nanosleep(&pause, NULL);
	}
}

static void *synced_writer(void *arg)
{
	race *r = arg;
	raft_conf_state cs = three_voters();

	r->write_rv = store_set_conf_state(r->f->s, &cs);
	return NULL;
}

/* Writes a save of two entries, starts the synced write (r->f's store,
 * on a thread of its own) and, once it is inside its window, syncs the
 * save on this thread: store_save_sync's result (its message in err). */
static int race_sync(race *r, char *err, size_t errlen)
{
	raft_entry *e = tu_entries(1, 3, 1, 100);
	pthread_t t;
	int rv;

	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	assert_int_equal(store_save_write(r->f->s, NULL, e, 2), 0);
	store_test_on_synced_write(r->f->s, hold_window, r);
	assert_int_equal(pthread_create(&t, NULL, synced_writer, r), 0);
	pthread_mutex_lock(&r->mu);
	while (!r->in_window)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	rv = store_save_sync(r->f->s, err, errlen);
	pthread_mutex_lock(&r->mu);
	r->sync_done = true;
	pthread_mutex_unlock(&r->mu);
	pthread_join(t, NULL);
	store_test_on_synced_write(r->f->s, NULL, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	raft_entries_free(e, 2);
	return rv;
}

/* The synced write fails its sync: the save's sync must return the
 * failure. */
static void test_sync_during_failing_synced_write(void **state)
{
	race r = {.f = *state, .write_result = RAFT_EIO};
	char err[512] = "";
	int rv = race_sync(&r, err, sizeof(err));

	assert_int_equal(r.write_rv, RAFT_EIO);
	assert_int_equal(rv, RAFT_EIO);
	assert_non_null(strstr(err, "a sync of this store failed before"));
}

/* Without any failure the two threads do not disturb each other: the
 * sync waits for the synced write and both succeed. */
static void test_sync_waits_for_synced_write(void **state)
{
	fixture *f = *state;
	race r = {.f = f, .write_result = 0};
	char err[512] = "";

	assert_int_equal(race_sync(&r, err, sizeof(err)), 0);
	assert_true(r.saw_waiter);
	assert_int_equal(r.write_rv, 0);
	assert_int_equal(store_save_sync(f->s, err, sizeof(err)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_second_sync_after_failure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sync_after_failed_synced_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sync_during_failing_synced_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sync_waits_for_synced_write, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
