/* test_async.c — asynchronous storage writes (raft_config.async_storage):
 * the leader counts its own entries toward commitment only once its save
 * is reported durable (raft_persisted), and nothing is applied before it
 * is durable here (Figure 2; etcd's MsgStorageAppendResp to self). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "memory_storage.h"
#include "raft.h"

#define N 3

/* One core whose saves wait until the test completes them. */
typedef struct anode {
	raft *r;
	memory_storage *ms;
	raft_entry *pend; /* entries handed out, not yet saved (copies) */
	size_t n_pend;
	raft_entry *applied; /* committed entries handed out (copies) */
	size_t n_applied;
} anode;

typedef struct acluster {
	anode n[N + 1];
	msgq q; /* messages sent, in order */
} acluster;

static void acluster_init(acluster *c)
{
	uint64_t peers[N] = {1, 2, 3};

	memset(c, 0, sizeof(*c));
	for (uint64_t i = 1; i <= N; i++) {
		raft_config cfg = tcfg();
		cfg.id = i;
		cfg.peers = peers;
		cfg.n_peers = N;
		cfg.async_storage = true;
		cfg.seed = i;
		c->n[i].ms = memory_storage_new();
		assert_non_null(c->n[i].ms);
		cfg.storage = memory_storage_iface(c->n[i].ms);
		assert_int_equal(raft_new(&cfg, &c->n[i].r), 0);
	}
}

static void acluster_free(acluster *c)
{
	for (uint64_t i = 1; i <= N; i++) {
		raft_free(c->n[i].r);
		memory_storage_free(c->n[i].ms);
		raft_entries_free(c->n[i].pend, c->n[i].n_pend);
		raft_entries_free(c->n[i].applied, c->n[i].n_applied);
	}
	msgq_free(&c->q);
}

/* Completes node i's outstanding save: the entries reach its storage and
 * the core hears of it. */
static void save_done(acluster *c, uint64_t i)
{
	anode *a = &c->n[i];

	if (!a->n_pend)
		return;
	assert_int_equal(memory_storage_append(a->ms, a->pend, a->n_pend), 0);
	raft_persisted(a->r, a->pend[a->n_pend - 1].index, a->pend[a->n_pend - 1].term);
	raft_entries_free(a->pend, a->n_pend);
	a->pend = NULL;
	a->n_pend = 0;
}

/* Handles node i's Readies: entries are kept pending (saved at once if
 * save_now), hard state is written at once (this test is about entries),
 * messages go to the queue, committed entries are recorded. */
static void handle(acluster *c, uint64_t i, bool save_now)
{
	anode *a = &c->n[i];

	while (raft_has_ready(a->r)) {
		raft_ready rd;

		raft_ready_get(a->r, &rd);
		if (rd.n_entries) {
			raft_entry *p = realloc(a->pend, (a->n_pend + rd.n_entries) * sizeof(*p));
			assert_non_null(p);
			a->pend = p;
			for (size_t k = 0; k < rd.n_entries; k++)
				assert_int_equal(
				    raft_entry_copy(&a->pend[a->n_pend + k], &rd.entries[k]), 0);
			a->n_pend += rd.n_entries;
		}
		if (rd.has_hard_state)
			memory_storage_set_hard_state(a->ms, &rd.hard_state);
		for (size_t k = 0; k < rd.n_msgs; k++)
			msgq_push_copy(&c->q, &rd.msgs[k]);
		if (rd.n_committed) {
			raft_entry *p =
			    realloc(a->applied, (a->n_applied + rd.n_committed) * sizeof(*p));
			assert_non_null(p);
			a->applied = p;
			for (size_t k = 0; k < rd.n_committed; k++)
				assert_int_equal(raft_entry_copy(&a->applied[a->n_applied + k],
								 &rd.committed[k]),
						 0);
			a->n_applied += rd.n_committed;
		}
		raft_advance(a->r, &rd);
		if (save_now)
			save_done(c, i);
	}
}

/* Delivers every queued message (to nodes not in skip), handling Readies
 * with saves completed at once except on node keep_unsaved (0: none),
 * until nothing is left. Messages to a skipped node are dropped. */
static void settle(acluster *c, uint64_t keep_unsaved, uint64_t skip)
{
	for (int rounds = 0; rounds < 100; rounds++) {
		for (uint64_t i = 1; i <= N; i++)
			handle(c, i, i != keep_unsaved);
		if (c->q.n == 0)
			return;
		msgq q = c->q;
		memset(&c->q, 0, sizeof(c->q));
		for (size_t k = 0; k < q.n; k++)
			if (q.m[k].to != skip)
				raft_step(c->n[q.m[k].to].r, &q.m[k]);
		msgq_free(&q);
	}
	fail_msg("messages still flowing after 100 rounds");
}

static uint64_t commit_of(acluster *c, uint64_t i)
{
	raft_status st;

	raft_get_status(c->n[i].r, &st);
	return st.commit;
}

/* Node 1 leads with its no-op committed everywhere. */
static void elect_1(acluster *c)
{
	raft_campaign(c->n[1].r);
	settle(c, 0, 0);
	assert_true(raft_is_leader(c->n[1].r));
	assert_int_equal(commit_of(c, 1), 1);
}

/* Two of three make a quorum, but the leader's own vote counts only once
 * its save is durable: with one follower's answer and the leader's save
 * still under way, nothing commits; the save's report commits it. A
 * leader that counted its entries at append would commit at once. */
static void test_leader_counts_itself_once_persisted(void **state)
{
	(void)state;
	acluster c;
	uint64_t idx, term;

	acluster_init(&c);
	elect_1(&c);
	assert_int_equal(raft_propose(c.n[1].r, "x", 1, &idx, &term), 0);
	/* Node 3 hears nothing; node 2 saves and answers at once. */
	settle(&c, 1, 3);
	assert_true(c.n[1].n_pend > 0);
	assert_true(commit_of(&c, 1) < idx);
	assert_int_equal(c.n[1].n_applied, 1); /* the no-op only */
	save_done(&c, 1);
	assert_int_equal(commit_of(&c, 1), idx);
	handle(&c, 1, true);
	assert_int_equal(c.n[1].n_applied, 2);
	assert_memory_equal(c.n[1].applied[1].data, "x", 1);
	acluster_free(&c);
}

/* The two followers' saves make a quorum without the leader's: the entry
 * commits while the leader's own disk is stalled (what lets a node with a
 * slow disk keep leading), but the leader applies it only once it is
 * durable there too (it would otherwise apply from a log it may lose). */
static void test_followers_commit_leader_applies_after_save(void **state)
{
	(void)state;
	acluster c;
	uint64_t idx, term;

	acluster_init(&c);
	elect_1(&c);
	assert_int_equal(raft_propose(c.n[1].r, "y", 1, &idx, &term), 0);
	settle(&c, 1, 0);
	assert_int_equal(commit_of(&c, 1), idx);
	assert_int_equal(c.n[1].n_applied, 1); /* committed, not yet applicable here */
	assert_int_equal(c.n[2].n_applied, 2); /* the followers have it saved */
	assert_int_equal(c.n[3].n_applied, 2);
	save_done(&c, 1);
	handle(&c, 1, true);
	assert_int_equal(c.n[1].n_applied, 2);
	assert_memory_equal(c.n[1].applied[1].data, "y", 1);
	acluster_free(&c);
}

/* Node i crashes: what it had not saved is lost; it restarts from its
 * storage. */
static void restart(acluster *c, uint64_t i)
{
	uint64_t peers[N] = {1, 2, 3};
	raft_config cfg = tcfg();
	anode *a = &c->n[i];

	raft_free(a->r);
	raft_entries_free(a->pend, a->n_pend);
	a->pend = NULL;
	a->n_pend = 0;
	cfg.id = i;
	cfg.peers = peers;
	cfg.n_peers = N;
	cfg.async_storage = true;
	cfg.seed = i + 100;
	cfg.storage = memory_storage_iface(a->ms);
	assert_int_equal(raft_new(&cfg, &a->r), 0);
}

/* A save reported after its entries were replaced (a follower whose
 * suffix a new leader overwrote while the save was under way) moves
 * nothing: those entries are not the log's any more, and the
 * replacement is not durable yet. */
static void test_report_of_replaced_entries_ignored(void **state)
{
	(void)state;
	acluster c;
	uint64_t idx, term;
	raft_status st;

	acluster_init(&c);
	elect_1(&c);
	/* The leader's entry reaches node 2 only, and is saved nowhere. */
	assert_int_equal(raft_propose(c.n[1].r, "z", 1, &idx, &term), 0);
	handle(&c, 1, false);
	msgq q = c.q;
	memset(&c.q, 0, sizeof(c.q));
	for (size_t k = 0; k < q.n; k++)
		if (q.m[k].to == 2 && q.m[k].type == RAFT_MSG_APP)
			raft_step(c.n[2].r, &q.m[k]);
	msgq_free(&q);
	handle(&c, 2, false);
	msgq_clear(&c.q);
	assert_int_equal(c.n[2].n_pend, 1);
	raft_entry old = c.n[2].pend[0];
	free(c.n[2].pend);
	c.n[2].pend = NULL;
	c.n[2].n_pend = 0;
	/* The leader crashes and loses it; node 3 leads the next term with
	 * node 1's vote, and its no-op replaces the entry on node 2, whose
	 * saves stay under way. */
	restart(&c, 1);
	raft_campaign(c.n[3].r);
	settle(&c, 2, 0);
	assert_true(raft_is_leader(c.n[3].r));
	raft_get_status(c.n[2].r, &st);
	assert_int_equal(st.last_index, idx);
	uint64_t before = st.persisted;
	assert_true(before < idx);
	/* The old save completes late and is reported: nothing moves. */
	raft_persisted(c.n[2].r, old.index, old.term);
	raft_get_status(c.n[2].r, &st);
	assert_int_equal(st.persisted, before);
	raft_entry_free_contents(&old);
	acluster_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_leader_counts_itself_once_persisted),
	    cmocka_unit_test(test_followers_commit_leader_applies_after_save),
	    cmocka_unit_test(test_report_of_replaced_entries_ignored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
