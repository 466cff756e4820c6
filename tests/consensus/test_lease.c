/* test_lease.c — leader lease reads (Raft thesis §6.4.1): a leader that a
 * quorum acknowledged heartbeats from within the lease answers ReadIndex
 * without a heartbeat round; an expired or broken lease falls back to a
 * round; followers keep the promise the lease rests on (no vote, no higher
 * term from non-leaders, no forced campaign), also right after a restart;
 * and a leader cut off inside its lease never coexists with a newer one. */
#include <string.h>

#include "test_util.h"

#define R(net, id) (tnet_node((net), (id))->r)

static raft_config lease_cfg(void)
{
	raft_config c = tcfg();

	c.check_quorum = true;
	c.pre_vote = true;
	c.lease_reads = true;
	return c;
}

/* One tick on every node in turn (each delivered), as wall time passing. */
static void tick_all(tnet *net)
{
	for (uint64_t id = 1; id <= net->n; id++)
		tnet_tick(net, id, 1);
}

static uint64_t leader_of(tnet *net)
{
	for (uint64_t id = 1; id <= net->n; id++)
		if (raft_is_leader(R(net, id)))
			return id;
	return 0;
}

/* Lets time pass until a leader is elected and has committed an entry of
 * its term (the no-op), then one more tick for a heartbeat round. */
static uint64_t elect(tnet *net)
{
	uint64_t l = 0;

	for (int t = 0; t < 200 && !(l = leader_of(net)); t++)
		tick_all(net);
	assert_int_not_equal(l, 0);
	tick_all(net);
	assert_true(raft_is_leader(R(net, l)));
	return l;
}

static void test_lease_ticks(void **state)
{
	/* A quarter of the election timeout as margin, at least 2 ticks. */
	assert_int_equal(raft_lease_ticks(10), 8);
	assert_int_equal(raft_lease_ticks(20), 15);
	assert_int_equal(raft_lease_ticks(3), 1);
	assert_int_equal(raft_lease_ticks(2), 0);
}

/* Inside the lease a read is answered from the commit index at once: no
 * heartbeat leaves the leader for it. */
static void test_lease_read_without_round(void **state)
{
	raft_config c = lease_cfg();
	tnet *net = tnet_new(3, &c);
	uint64_t l = elect(net);
	tnode *ln = tnet_node(net, l);
	msgq q = {0};

	assert_true(raft_lease_valid(ln->r));
	assert_int_equal(raft_read_index(ln->r, "a", 1), 0);
	tn_drain(net, ln, &q);
	assert_int_equal(msgq_count(&q, RAFT_MSG_HEARTBEAT), 0);
	assert_int_equal(ln->n_reads, 1);
	assert_int_equal(ln->reads[0].index, tu_last(ln->r));
	assert_memory_equal(ln->reads[0].ctx, "a", 1);
	msgq_free(&q);

	/* A follower's read: one round trip to the leader, no round. */
	uint64_t f = l % 3 + 1;
	size_t beats = net->delivered[RAFT_MSG_HEARTBEAT];
	assert_int_equal(raft_read_index(R(net, f), "b", 1), 0);
	tn_drain(net, tnet_node(net, f), NULL);
	tnet_deliver(net);
	assert_int_equal(net->delivered[RAFT_MSG_HEARTBEAT], beats);
	assert_int_equal(net->delivered[RAFT_MSG_READ_INDEX_RESP], 1);
	assert_int_equal(tnet_node(net, f)->n_reads, 1);
	assert_int_equal(tnet_node(net, f)->reads[0].index, tu_last(ln->r));
	tnet_free(net);
}

/* Without acknowledgements for lease_ticks the lease expires: the read
 * waits for a heartbeat round, answered once the followers are back. */
static void test_lease_expiry_falls_back_to_round(void **state)
{
	raft_config c = lease_cfg();
	tnet *net = tnet_new(3, &c);
	uint64_t l = elect(net);
	tnode *ln = tnet_node(net, l);
	msgq q = {0};

	tnet_isolate(net, l);
	for (int t = 0; t < raft_lease_ticks(c.election_ticks) - 1; t++) {
		tnet_tick(net, l, 1);
		assert_true(raft_lease_valid(ln->r));
	}
	tnet_tick(net, l, 1);
	/* Still the leader (check-quorum waits an election timeout)... */
	assert_true(raft_is_leader(ln->r));
	/* ...but no longer inside its lease. */
	assert_false(raft_lease_valid(ln->r));
	assert_int_equal(raft_read_index(ln->r, "x", 1), 0);
	tn_drain(net, ln, &q);
	assert_int_equal(ln->n_reads, 0);
	assert_int_equal(msgq_count(&q, RAFT_MSG_HEARTBEAT), 2);
	for (size_t i = 0; i < q.n; i++)
		if (q.m[i].type == RAFT_MSG_HEARTBEAT)
			assert_int_equal(q.m[i].context_len, 16);
	msgq_free(&q);
	tnet_heal(net);
	tnet_tick(net, l, 1);
	assert_int_equal(ln->n_reads, 1);
	assert_true(raft_lease_valid(ln->r));
	tnet_free(net);
}

/* Heartbeats acknowledged late extend the lease only from when they were
 * sent. */
static void test_lease_counts_from_send(void **state)
{
	raft_config c = lease_cfg();
	tnet *net = tnet_new(3, &c);
	uint64_t l = elect(net);
	tnode *ln = tnet_node(net, l);
	msgq q = {0};
	int lease = raft_lease_ticks(c.election_ticks);

	/* One heartbeat round, held back by the network. */
	raft_tick(ln->r);
	tn_drain(net, ln, &q);
	assert_int_equal(msgq_count(&q, RAFT_MSG_HEARTBEAT), 2);
	tnet_isolate(net, l);
	for (int t = 0; t < lease; t++)
		tnet_tick(net, l, 1);
	assert_false(raft_lease_valid(ln->r));
	/* Delivered now and answered: the answers are about a beat sent
	 * lease ticks ago, which buys nothing. */
	for (size_t i = 0; i < q.n; i++) {
		msgq out = {0};

		if (q.m[i].type != RAFT_MSG_HEARTBEAT)
			continue;
		tu_step(net, q.m[i].to, q.m[i], &out);
		for (size_t j = 0; j < out.n; j++)
			if (out.m[j].type == RAFT_MSG_HEARTBEAT_RESP)
				tu_step(net, l, out.m[j], NULL);
		msgq_free(&out);
	}
	assert_false(raft_lease_valid(ln->r));
	msgq_free(&q);
	tnet_free(net);
}

/* A leader transfer ends the lease at once: the transferee campaigns past
 * the followers' promise. */
static void test_transfer_breaks_lease(void **state)
{
	raft_config c = lease_cfg();
	tnet *net = tnet_new(3, &c);
	uint64_t l = elect(net), f = l % 3 + 1;
	tnode *ln = tnet_node(net, l);
	msgq q = {0};

	assert_true(raft_lease_valid(ln->r));
	tnet_cut(net, l, f); /* TIMEOUT_NOW (or the catch-up) never arrives */
	tu_step(net, l, (raft_msg){.type = RAFT_MSG_TRANSFER_LEADER, .from = f, .to = l}, &q);
	assert_true(raft_is_leader(ln->r));
	assert_false(raft_lease_valid(ln->r));
	msgq_clear(&q);
	assert_int_equal(raft_read_index(ln->r, "t", 1), 0);
	tn_drain(net, ln, &q);
	assert_int_equal(ln->n_reads, 0);
	assert_true(msgq_count(&q, RAFT_MSG_HEARTBEAT) > 0);
	msgq_free(&q);
	tnet_free(net);
}

/* The promise: a follower that heard from its leader within the election
 * timeout grants no vote, takes no higher term from a non-leader and
 * refuses a forced campaign; after a restart it grants no vote for an
 * election timeout (it may have acknowledged a lease before the crash). */
static void test_follower_keeps_promise(void **state)
{
	raft_config c = lease_cfg();
	tnet *net = tnet_new(3, &c);
	uint64_t l = elect(net), f = l % 3 + 1, g = 6 - l - f; /* the third node */
	raft *fr = R(net, f);
	uint64_t term = raft_term(fr), last = tu_last(fr);
	msgq q = {0};

	/* A vote request of a higher term: ignored. */
	tu_step(net, f,
		(raft_msg){.type = RAFT_MSG_VOTE,
			   .from = g,
			   .to = f,
			   .term = term + 1,
			   .index = last + 5,
			   .log_term = term + 1},
		&q);
	assert_int_equal(raft_term(fr), term);
	assert_int_equal(msgq_count(&q, RAFT_MSG_VOTE_RESP), 0);
	/* A late answer of a higher term: ignored too (it would free our
	 * vote). */
	tu_step(net, f,
		(raft_msg){.type = RAFT_MSG_APP_RESP, .from = g, .to = f, .term = term + 3}, &q);
	assert_int_equal(raft_term(fr), term);
	assert_int_equal(raft_leader(fr), l);
	/* A forced campaign: nothing happens. */
	raft_campaign(fr);
	tn_drain(net, tnet_node(net, f), &q);
	assert_int_equal(tu_role(fr), RAFT_FOLLOWER);
	assert_int_equal(msgq_count(&q, RAFT_MSG_PRE_VOTE) + msgq_count(&q, RAFT_MSG_VOTE), 0);
	msgq_clear(&q);

	/* Restarted: votes are ignored for election_ticks ticks. */
	tnet_restart(net, f);
	fr = R(net, f);
	for (int t = 0; t < c.election_ticks; t++) {
		tu_step(net, f,
			(raft_msg){.type = RAFT_MSG_VOTE,
				   .from = g,
				   .to = f,
				   .term = term + 1,
				   .index = last + 5,
				   .log_term = term + 1},
			&q);
		assert_int_equal(msgq_count(&q, RAFT_MSG_VOTE_RESP), 0);
		raft_tick(fr);
		tn_drain(net, tnet_node(net, f), &q);
	}
	msgq_clear(&q);
	tu_step(net, f,
		(raft_msg){.type = RAFT_MSG_VOTE,
			   .from = g,
			   .to = f,
			   .term = term + 1,
			   .index = last + 5,
			   .log_term = term + 1},
		&q);
	assert_int_equal(msgq_count(&q, RAFT_MSG_VOTE_RESP), 1);
	assert_false(q.m[0].reject);
	msgq_free(&q);
	tnet_free(net);

	/* Off: a late answer of a higher term moves a follower's term. */
	c.lease_reads = false;
	net = tnet_new(3, &c);
	l = elect(net);
	f = l % 3 + 1;
	g = 6 - l - f;
	term = raft_term(R(net, f));
	tu_step(net, f, (raft_msg){.type = RAFT_MSG_APP_RESP, .from = g, .to = f, .term = term + 3},
		NULL);
	assert_int_equal(raft_term(R(net, f)), term + 3);
	tnet_free(net);
}

/* The partition case: a leader cut off inside its lease. Time passes on
 * every node alike; at no tick may the old leader hold a lease while
 * another node leads (with check-quorum and pre-vote, the others ignore
 * votes until an election timeout after they last heard from it, and the
 * lease is shorter than that). A new leader is elected eventually and the
 * old one's reads then go through rounds that cannot complete. */
static void test_partitioned_leader_lease(void **state)
{
	for (size_t nodes = 3; nodes <= 5; nodes += 2) {
		raft_config c = lease_cfg();
		tnet *net = tnet_new(nodes, &c);
		uint64_t l = elect(net), other = 0;
		tnode *ln = tnet_node(net, l);

		assert_true(raft_lease_valid(ln->r));
		tnet_isolate(net, l);
		for (int t = 0; t < 10 * c.election_ticks; t++) {
			tick_all(net);
			for (uint64_t id = 1; id <= nodes; id++)
				if (id != l && raft_is_leader(R(net, id)))
					other = id;
			if (other)
				assert_false(raft_lease_valid(ln->r));
		}
		assert_int_not_equal(other, 0);
		assert_false(raft_is_leader(ln->r)); /* check-quorum deposed it */
		tnet_free(net);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lease_ticks),
	    cmocka_unit_test(test_lease_read_without_round),
	    cmocka_unit_test(test_lease_expiry_falls_back_to_round),
	    cmocka_unit_test(test_lease_counts_from_send),
	    cmocka_unit_test(test_transfer_breaks_lease),
	    cmocka_unit_test(test_follower_keeps_promise),
	    cmocka_unit_test(test_partitioned_leader_lease),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
