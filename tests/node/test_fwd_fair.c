/* test_fwd_fair.c — a leader at its unsaved bound (its disk slow) shares
 * the room its saves free between its own proposals and those forwarded
 * by a follower: neither side starves (consensus/README-node.md, "Bounded
 * memory of a stalled leader"; session 7 review finding (b)).
 *
 * Three in-process nodes with the kv state machine over loopback TCP. The
 * leader's disk takes SLOW_MS per save (RAFTFS_TEST_STALL's hold, renewed
 * after every save) and its own proposer keeps four bounds' worth of puts
 * pending, so its proposals are held at the bound all along. A follower
 * then starts FOLLOWER_PUTS puts. Before the fix, every save's room went to
 * the leader's held proposals the moment it was reaped, and a forwarded
 * message, which only arrives later, always found the leader full and was
 * dropped; the follower's runtime proposed it again a second later, to the
 * same fate, until its puts timed out. */
#include <pthread.h>
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
#define BOUND (64u << 10)
#define PUT_BYTES 4096
#define OWN_WINDOW ((int)(4 * BOUND / PUT_BYTES)) /* the leader's own puts kept pending */
#define FOLLOWER_PUTS 16
#define SLOW_MS 40
#define WAIT_MS 10000 /* for the follower's puts: four of its retry intervals (2.5 s) */

static struct test_kv_member m[N_NODES];
static char dir[64];
static _Atomic bool stop_disk, stop_own;
/* The test's threads and the leader they work on: here, not in the test
 * function, so that a failed assert (which returns from it at once) leaves
 * them something alive to read; teardown stops and joins them before it
 * stops the nodes. */
static struct {
	pthread_t disk, own;
	bool disk_on, own_on;
	int leader;
} th;
static atomic_int own_done, own_failed, fol_done, fol_failed;
static atomic_int own_pending;
static pthread_mutex_t own_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t own_cv = PTHREAD_COND_INITIALIZER;

static void on_own(void *arg, int status, int64_t result, uint64_t index)
{
	(void)arg;
	(void)result;
	(void)index;
	atomic_fetch_add(status == 0 ? &own_done : &own_failed, 1);
	pthread_mutex_lock(&own_mu);
	atomic_fetch_sub(&own_pending, 1);
	pthread_cond_signal(&own_cv);
	pthread_mutex_unlock(&own_mu);
}

static void on_follower(void *arg, int status, int64_t result, uint64_t index)
{
	(void)arg;
	(void)result;
	(void)index;
	atomic_fetch_add(status == 0 ? &fol_done : &fol_failed, 1);
}

/* Asks node i (RAFTFS_TEST_STALL) to hold its persist thread for ms after
 * its next save, unless such a request is still waiting: written aside and
 * renamed in, so never read half. */
static void slow_next_save(int i, unsigned ms)
{
	char tmp[4200], path[4200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/stall-once", m[i].cfg.data_dir);
	if (access(path, F_OK) == 0)
		return;
	snprintf(tmp, sizeof(tmp), "%s/stall-once.tmp", m[i].cfg.data_dir);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "%u\n", ms);
	if (fclose(f) == 0)
		rename(tmp, path);
}

/* The leader's slow disk: every save held SLOW_MS. */
static void *disk_main(void *arg)
{
	int leader = th.leader;

	(void)arg;
	while (!atomic_load(&stop_disk)) {
		slow_next_save(leader, SLOW_MS);
		usleep(2000);
	}
	return NULL;
}

/* The leader's own proposer: OWN_WINDOW puts pending at all times. */
static void *own_main(void *arg)
{
	static char payload[PUT_BYTES];
	int leader = th.leader;

	(void)arg;
	memset(payload, 'o', sizeof(payload));
	for (int i = 0; !atomic_load(&stop_own); i++) {
		int len = snprintf(payload, 32, "own%d=", i);

		payload[len] = 'o';
		pthread_mutex_lock(&own_mu);
		while (atomic_load(&own_pending) >= OWN_WINDOW && !atomic_load(&stop_own))
			pthread_cond_wait(&own_cv, &own_mu);
		atomic_fetch_add(&own_pending, 1);
		pthread_mutex_unlock(&own_mu);
		if (atomic_load(&stop_own) ||
		    node_start(m[leader].n, payload, sizeof(payload), 60000, on_own, NULL, NULL,
			       NULL) != 0) {
			atomic_fetch_sub(&own_pending, 1);
			break;
		}
	}
	return NULL;
}

/* Starts the leader's own proposer (and its slow disk, if slow). */
static void start_threads(int leader, bool slow)
{
	th.leader = leader;
	if (slow) {
		assert_int_equal(pthread_create(&th.disk, NULL, disk_main, NULL), 0);
		th.disk_on = true;
	}
	assert_int_equal(pthread_create(&th.own, NULL, own_main, NULL), 0);
	th.own_on = true;
}

/* Stops and joins the leader's own proposer, if it runs. */
static void stop_own_thread(void)
{
	atomic_store(&stop_own, true);
	pthread_mutex_lock(&own_mu);
	pthread_cond_broadcast(&own_cv);
	pthread_mutex_unlock(&own_mu);
	if (th.own_on)
		pthread_join(th.own, NULL);
	th.own_on = false;
}

/* Stops and joins the slow disk's thread, if it runs. */
static void stop_disk_thread(void)
{
	atomic_store(&stop_disk, true);
	if (th.disk_on)
		pthread_join(th.disk, NULL);
	th.disk_on = false;
}

static void tune(struct test_kv_member *member, int i)
{
	(void)i;
	member->cfg.unsaved_bytes = BOUND;
	member->cfg.proposal_timeout_ms = 60000;
}

static int setup(void **state)
{
	(void)state;
	memset(&th, 0, sizeof(th));
	atomic_store(&stop_disk, false);
	atomic_store(&stop_own, false);
	atomic_store(&own_done, 0);
	atomic_store(&own_failed, 0);
	atomic_store(&own_pending, 0);
	atomic_store(&fol_done, 0);
	atomic_store(&fol_failed, 0);
	return test_kv_cluster_start(m, N_NODES, "fwdfair", dir, tune);
}

static int leading_node(void);

static int teardown(void **state)
{
	(void)state;
	/* The threads first: they use the nodes. */
	stop_own_thread();
	stop_disk_thread();
	return test_kv_cluster_stop(m, N_NODES, dir);
}

static void on_first(void *arg, int status, int64_t result, uint64_t index)
{
	(void)result;
	(void)index;
	atomic_store((atomic_int *)arg, status == 0 ? 1 : -1);
}

/* The node that leads once a put through it applied: its term's vote and
 * no-op entry are saved (a stall of that save would hold back every
 * message of the new term, and elections would follow). */
static int find_leader(void)
{
	static atomic_int first;
	int i = leading_node();
	long long deadline = test_now_ms() + 20000;

	if (i < 0)
		return -1;
	atomic_store(&first, 0);
	if (node_start(m[i].n, "first=1", 7, 20000, on_first, &first, NULL, NULL) != 0)
		return -1;
	while (atomic_load(&first) == 0 && test_now_ms() < deadline)
		test_nap();
	return atomic_load(&first) == 1 ? leading_node() : -1;
}

/* A node that says it leads (-1: none within 20 s). */
static int leading_node(void)
{
	return test_leading(&m[0].n, sizeof(m[0]), N_NODES, 20000);
}

static void test_forwarded_not_starved(void **state)
{
	static char payload[1024];
	int leader, fol, own_before, own_during;
	long long t0, took = -1;

	(void)state;
	leader = find_leader();
	assert_true(leader >= 0);
	fol = (leader + 1) % N_NODES;
	start_threads(leader, true);
	/* The leader's own puts reach the bound and stay there, and are
	 * applied at its disk's pace. */
	t0 = test_now_ms();
	while ((node_unsaved_max(m[leader].n) < BOUND || atomic_load(&own_done) < OWN_WINDOW) &&
	       test_now_ms() - t0 < 20000)
		test_nap();
	assert_true(node_unsaved_max(m[leader].n) >= BOUND);
	assert_true(atomic_load(&own_done) >= OWN_WINDOW);

	own_before = atomic_load(&own_done);
	t0 = test_now_ms();
	memset(payload, 'f', sizeof(payload));
	for (int i = 0; i < FOLLOWER_PUTS; i++) {
		int len = snprintf(payload, 32, "fol%d=", i);

		payload[len] = 'f';
		assert_int_equal(node_start(m[fol].n, payload, sizeof(payload), 60000, on_follower,
					    NULL, NULL, NULL),
				 0);
	}
	/* Both sides progress: the follower's puts all apply, and the
	 * leader's own go on applying. */
	while ((atomic_load(&fol_done) + atomic_load(&fol_failed) < FOLLOWER_PUTS ||
		atomic_load(&own_done) == own_before) &&
	       test_now_ms() - t0 < WAIT_MS) {
		if (took < 0 && atomic_load(&fol_done) == FOLLOWER_PUTS)
			took = test_now_ms() - t0;
		test_nap();
	}
	if (took < 0 && atomic_load(&fol_done) == FOLLOWER_PUTS)
		took = test_now_ms() - t0;
	own_during = atomic_load(&own_done) - own_before;
	/* The leader was still held at its bound when the follower's puts
	 * were done (or given up on): the contention lasted throughout. */
	bool still_full = atomic_load(&own_pending) >= OWN_WINDOW / 2;

	stop_own_thread();
	stop_disk_thread();

	printf("follower (n%d): %d of %d puts applied in %lld ms; the leader's own (n%d): %d "
	       "applied meanwhile, %d pending at the end; %llu entries refused by the leader's "
	       "order\n",
	       fol + 1, atomic_load(&fol_done), FOLLOWER_PUTS, took, leader + 1, own_during,
	       atomic_load(&own_pending), (unsigned long long)node_refused(m[fol].n));
	assert_true(still_full);
	assert_int_equal(atomic_load(&fol_failed), 0);
	assert_int_equal(atomic_load(&fol_done), FOLLOWER_PUTS);
	/* Nor do the leader's own proposals starve behind the forwarded ones. */
	assert_true(own_during > 0);

	/* Once the disk is back everything pending completes. */
	t0 = test_now_ms();
	while (atomic_load(&own_pending) > 0 && test_now_ms() - t0 < 30000)
		test_nap();
	assert_int_equal(atomic_load(&own_pending), 0);
	assert_int_equal(atomic_load(&own_failed), 0);
}

/* A leader that stops while it holds a follower's forwarded message frees
 * it (ASan's leak check: in node_free, or when it hands leadership over on
 * the way), and the follower's puts apply, through the next leader, when
 * its runtime proposes them again. */
static void test_held_when_leader_stops(void **state)
{
	static char payload[1024];
	int leader, fol;
	long long t0;

	(void)state;
	leader = find_leader();
	assert_true(leader >= 0);
	fol = (leader + 1) % N_NODES;
	/* One long hold: the leader's own puts fill the bound and stay. */
	slow_next_save(leader, 4000);
	start_threads(leader, false);
	t0 = test_now_ms();
	while (node_unsaved_max(m[leader].n) < BOUND && test_now_ms() - t0 < 20000)
		test_nap();
	assert_true(node_unsaved_max(m[leader].n) >= BOUND);

	memset(payload, 'f', sizeof(payload));
	for (int i = 0; i < FOLLOWER_PUTS; i++) {
		int len = snprintf(payload, 32, "fol%d=", i);

		payload[len] = 'f';
		assert_int_equal(node_start(m[fol].n, payload, sizeof(payload), 60000, on_follower,
					    NULL, NULL, NULL),
				 0);
	}
	t0 = test_now_ms();
	while (node_held_forwarded(m[leader].n) == 0 && test_now_ms() - t0 < 3000)
		test_nap();
	assert_int_not_equal(node_held_forwarded(m[leader].n), 0);
	assert_int_equal(atomic_load(&fol_done), 0);

	/* The leader goes with the message held (handing over first, or
	 * not), its own puts failing. */
	stop_own_thread();
	t0 = test_now_ms();
	node_stop(m[leader].n);
	node_free(m[leader].n);
	m[leader].n = NULL;

	while (atomic_load(&fol_done) + atomic_load(&fol_failed) < FOLLOWER_PUTS &&
	       test_now_ms() - t0 < 30000)
		test_nap();
	printf("follower (n%d): %d of %d puts applied within %lld ms of the leader's (n%d) stop "
	       "(its disk held 4 s)\n",
	       fol + 1, atomic_load(&fol_done), FOLLOWER_PUTS, test_now_ms() - t0, leader + 1);
	assert_int_equal(atomic_load(&fol_failed), 0);
	assert_int_equal(atomic_load(&fol_done), FOLLOWER_PUTS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_forwarded_not_starved, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_held_when_leader_stops, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
