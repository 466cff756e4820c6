/* test_retry_bytes.c — a proposal tried again never changes the bytes of
 * its earlier try's log entry. A proposal travels by reference (blob.h):
 * the leader's log, its persist job and its appends hold the block the
 * proposal was made in. A retry rewrites the envelope (min_pending), so it
 * must write into a copy while another holds the block (try_propose's
 * raft_blob_shared check); written in place, one index would hold the
 * first try's bytes on the followers that got them and the retry's on
 * those sent it later.
 *
 * Three in-process kv nodes. The leader's appends are dropped (a message
 * filter) while proposal A (short deadline) and B are made: nothing
 * commits. A times out, so B's retry carries another min_pending than its
 * first try, and is appended at a new index. Then the appends go through:
 * the followers, which lack everything since A, are sent B's first index
 * again from the leader's log, and its bytes must be those first sent. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "kvsm.h"
#include "node.h"
#include "node_testlib.h"
#include "raft_types.h"

#define N_NODES 3
/* A's deadline: past before B's first retry (retry_ms: 5 election
 * timeouts, 2.5 s here), long enough that A is still pending when B is
 * first tried right after it. */
#define A_TIMEOUT_MS 1000
#define MAX_RECS 16

static struct test_kv_member m[N_NODES];
static char dir[64];

/* Each entry index the leader sent in an append while holding, with the
 * bytes of its first sending; later sendings are compared with them.
 * Filled on the leader's loop thread, read by the test under mu. */
struct rec {
	uint64_t index;
	uint8_t *data;
	size_t len;
	bool resent;
};
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct rec recs[MAX_RECS];
static size_t n_recs;
static size_t mismatches;
static _Atomic uint64_t leader_id; /* 0: the filter lets everything pass */
static atomic_bool holding;	   /* the leader's appends are dropped */

static struct rec *rec_find(uint64_t index)
{
	for (size_t i = 0; i < n_recs; i++)
		if (recs[i].index == index)
			return &recs[i];
	return NULL;
}

static void note_entry(const raft_entry *e)
{
	struct rec *r = rec_find(e->index);

	if (r) {
		r->resent = true;
		if (r->len != e->len || memcmp(r->data, e->data, e->len) != 0)
			mismatches++;
		return;
	}
	if (!atomic_load(&holding) || n_recs == MAX_RECS)
		return;
	r = &recs[n_recs];
	r->data = malloc(e->len);
	if (!r->data)
		return;
	memcpy(r->data, e->data, e->len);
	r->len = e->len;
	r->index = e->index;
	n_recs++;
}

/* Message filter of every node (loop threads): notes the entries the
 * leader sends, drops its appends while holding. */
static bool watch(void *arg, const raft_msg *msg)
{
	(void)arg;
	if (msg->type != RAFT_MSG_APP || msg->from != atomic_load(&leader_id))
		return false;
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < msg->n_entries; i++)
		if (msg->entries[i].len)
			note_entry(&msg->entries[i]);
	pthread_mutex_unlock(&mu);
	return atomic_load(&holding);
}

static size_t recs_seen(void)
{
	size_t n;

	pthread_mutex_lock(&mu);
	n = n_recs;
	pthread_mutex_unlock(&mu);
	return n;
}

static void tune(struct test_kv_member *mm, int i)
{
	(void)i;
	mm->cfg.proposal_timeout_ms = 30000;
}

/* The filter must be in place before a node's loop thread runs: set
 * between making the nodes and launching them. */
static int setup(void **state)
{
	(void)state;
	if (test_kv_cluster_new(m, N_NODES, "retrybytes", dir, tune) != 0)
		return -1;
	for (int i = 0; i < N_NODES; i++)
		node_set_msg_filter(m[i].n, watch, NULL);
	return test_kv_cluster_launch(m, N_NODES, "retrybytes", dir);
}

static int teardown(void **state)
{
	(void)state;
	atomic_store(&holding, false);
	test_kv_cluster_stop(m, N_NODES, dir);
	for (size_t i = 0; i < n_recs; i++)
		free(recs[i].data);
	return 0;
}

static void retry_keeps_first_bytes(void **state)
{
	static atomic_int a_done, b_done;
	long long deadline;
	uint64_t term;
	bool is_leader;
	int l;

	(void)state;
	l = test_leading(&m[0].n, sizeof(m[0]), N_NODES, 20000);
	assert_true(l >= 0);
	atomic_store(&holding, true);
	atomic_store(&leader_id, m[l].cfg.id);
	assert_int_equal(node_start(m[l].n, "a=1", 3, A_TIMEOUT_MS, test_on_put, &a_done, &term,
				    &is_leader),
			 0);
	assert_int_equal(node_start(m[l].n, "b=2", 3, 30000, test_on_put, &b_done, &term,
				    &is_leader),
			 0);
	/* A's and B's first tries, then B's retry at a new index. */
	deadline = test_now_ms() + 30000;
	while (recs_seen() < 3 && test_now_ms() < deadline)
		test_nap();
	assert_int_equal(recs_seen(), 3);
	assert_int_equal(atomic_load(&a_done), -1); /* timed out: B's min_pending moved */
	atomic_store(&holding, false);

	deadline = test_now_ms() + 30000;
	while (atomic_load(&b_done) == 0 && test_now_ms() < deadline)
		test_nap();
	assert_int_equal(atomic_load(&b_done), 1);

	pthread_mutex_lock(&mu);
	/* The retry's envelope differs from the first try's (or this test
	 * would show nothing)... */
	assert_true(recs[1].len == recs[2].len &&
		    memcmp(recs[1].data, recs[2].data, recs[1].len) != 0);
	/* ...B's first index was sent again once the appends went through,
	 * with the bytes of its first sending. */
	assert_true(recs[1].resent);
	assert_int_equal(mismatches, 0);
	pthread_mutex_unlock(&mu);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(retry_keeps_first_bytes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
