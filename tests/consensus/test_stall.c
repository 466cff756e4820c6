/* test_stall.c — a leader whose own thread stalled (raft_tick_stalled):
 * the ticks it missed are given at once, before it reads what arrived
 * meanwhile. It keeps leading when acknowledgements from a quorum were
 * waiting for it, loses leadership by check-quorum when none were, sends
 * one heartbeat round for the whole stall, and its lease counts every
 * missed tick (Raft thesis §6.4.1: a stalled leader must not hold a lease
 * longer, in real time, than its followers keep their promise). */
#include <string.h>

#include "test_util.h"

#define R(net, id) (tnet_node((net), (id))->r)

static raft_config stall_cfg(void)
{
	raft_config c = tcfg();

	c.check_quorum = true;
	c.pre_vote = true;
	c.lease_reads = true;
	return c;
}

static uint64_t leader_of(tnet *net)
{
	for (uint64_t id = 1; id <= net->n; id++)
		if (raft_is_leader(R(net, id)))
			return id;
	return 0;
}

/* Time passes on every node until one leads and a heartbeat round is done
 * (a node just started refuses votes for an election timeout under lease
 * reads, so no campaign is forced). Returns the leader, whose lease holds. */
static uint64_t elect(tnet *net)
{
	uint64_t l = 0;

	for (int t = 0; t < 200 && !(l = leader_of(net)); t++)
		for (uint64_t id = 1; id <= net->n; id++)
			tnet_tick(net, id, 1);
	assert_int_not_equal(l, 0);
	tnet_tick(net, l, 1);
	assert_true(raft_lease_valid(R(net, l)));
	return l;
}

/* Moves the network queue's messages into q (they "wait in the socket"). */
static void hold(tnet *net, msgq *q)
{
	for (size_t i = 0; i < net->q.n; i++) {
		msgq_push_copy(q, &net->q.m[i]);
		raft_msg_free_contents(&net->q.m[i]);
	}
	net->q.n = 0;
}

static bool heard_any(const raft *r)
{
	raft_status st;

	raft_get_status(r, &st);
	for (size_t i = 0; i < st.n_peers; i++)
		if (st.peers[i].id != st.id && st.peers[i].recent_active)
			return true;
	return false;
}

/* Ticks leader l, its beats lost, until a quorum check clears what it
 * heard; the beat of that same tick then reaches the followers, and their
 * answers are held back in q as if they reached its socket while its
 * thread was stuck. */
static void answers_held_after_check(tnet *net, uint64_t l, const raft_config *c, msgq *q)
{
	msgq beats = {0};
	int t;

	assert_true(heard_any(R(net, l)));
	for (t = 0; t <= c->election_ticks; t++) {
		msgq_clear(&beats);
		raft_tick(R(net, l));
		tn_drain(net, tnet_node(net, l), &beats);
		if (!heard_any(R(net, l)))
			break;
	}
	assert_true(t <= c->election_ticks);
	assert_true(raft_is_leader(R(net, l)));
	assert_int_equal(msgq_count(&beats, RAFT_MSG_HEARTBEAT), 2);
	for (size_t i = 0; i < beats.n; i++)
		tnet_step(net, &beats.m[i]);
	msgq_free(&beats);
	hold(net, q);
	assert_int_equal(msgq_count(q, RAFT_MSG_HEARTBEAT_RESP), 2);
}

static void step_all(tnet *net, uint64_t to, const msgq *q)
{
	for (size_t i = 0; i < q->n; i++)
		if (q->m[i].to == to)
			raft_step(R(net, to), &q->m[i]);
}

/* A stall of three election timeouts that began right after a quorum
 * check. Given as one stalled catch-up, the answers that waited decide the
 * next tick's check: read, the leader keeps leading (and goes on with the
 * followers answering); not there, it steps down at once. Given as
 * separate ticks (what the runtime did before), the first check came
 * before the answers were read and deposed it even with them waiting. */
static void test_stalled_leader_check_uses_what_waited(void **state)
{
	raft_config c = stall_cfg();
	uint64_t stall = 3 * (uint64_t)c.election_ticks;
	enum { STALLED_HEARD, STALLED_SILENT, SEPARATE_HEARD, CASES };

	for (int k = 0; k < CASES; k++) {
		tnet *net = tnet_new(3, &c);
		uint64_t l = elect(net), term = raft_term(R(net, l));
		msgq q = {0};

		answers_held_after_check(net, l, &c, &q);
		if (k == SEPARATE_HEARD) {
			for (uint64_t i = 0; i < stall; i++)
				raft_tick(R(net, l));
		} else {
			raft_tick_stalled(R(net, l), stall);
			assert_true(raft_is_leader(R(net, l)));
		}
		if (k != STALLED_SILENT)
			step_all(net, l, &q);
		msgq_free(&q);
		raft_tick(R(net, l));
		if (k == STALLED_SILENT) {
			assert_int_equal(tu_role(R(net, l)), RAFT_FOLLOWER);
			assert_int_equal(raft_term(R(net, l)), term);
		} else if (k == SEPARATE_HEARD) {
			/* Deposed at the first check; campaigning by now. */
			assert_false(raft_is_leader(R(net, l)));
		} else {
			assert_true(raft_is_leader(R(net, l)));
			tn_drain(net, tnet_node(net, l), NULL);
			tnet_deliver(net);
			tnet_tick(net, l, 2 * c.election_ticks);
			assert_true(raft_is_leader(R(net, l)));
			assert_int_equal(raft_term(R(net, l)), term);
		}
		tnet_free(net);
	}
}

/* One heartbeat round for the whole stall (not one per missed tick), and
 * the lease counts every missed tick: gone after a stall longer than it,
 * back once the followers answered a beat sent after the stall. */
static void test_stall_one_round_and_lease_counts(void **state)
{
	raft_config c = stall_cfg();
	tnet *net = tnet_new(3, &c);
	uint64_t l = elect(net);
	msgq q = {0};

	raft_tick_stalled(R(net, l), (uint64_t)raft_lease_ticks(c.election_ticks));
	tn_drain(net, tnet_node(net, l), &q);
	assert_int_equal(msgq_count(&q, RAFT_MSG_HEARTBEAT), 2);
	assert_false(raft_lease_valid(R(net, l)));
	for (size_t i = 0; i < q.n; i++)
		tnet_step(net, &q.m[i]);
	msgq_free(&q);
	tnet_deliver(net);
	assert_true(raft_lease_valid(R(net, l)));

	/* A stall shorter than the lease leaves it valid. */
	raft_tick_stalled(R(net, l), 2);
	assert_true(raft_lease_valid(R(net, l)));
	tnet_free(net);
}

/* A follower's missed ticks are plain ticks: it campaigns as k raft_tick
 * calls would make it (the runtime decides whether to give them). */
static void test_stall_follower_plain_ticks(void **state)
{
	raft_config c = tcfg();
	tnet *net = tnet_new(3, &c);

	tnet_campaign(net, 1);
	tnet_isolate(net, 2);
	raft_tick_stalled(R(net, 2), 2 * (uint64_t)c.election_ticks);
	assert_int_equal(tu_role(R(net, 2)), RAFT_CANDIDATE);
	tnet_free(net);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stalled_leader_check_uses_what_waited),
	    cmocka_unit_test(test_stall_one_round_and_lease_counts),
	    cmocka_unit_test(test_stall_follower_plain_ticks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
