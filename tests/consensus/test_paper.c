/* test_paper.c — the Raft core against the paper, section by section (after etcd's
 * raft_paper_test.go). */
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

static raft *R(tnet *net, uint64_t id)
{
	return tnet_node(net, id)->r;
}

/* TinyKV: a new node is a follower at term 0 with no leader. */
static void test_start_as_follower(void **state)
{
	raft_config c = tcfg();
	tnet *net = tnet_new(3, &c);
	raft_status st;
	raft_get_status(R(net, 1), &st);
	assert_int_equal(st.role, RAFT_FOLLOWER);
	assert_int_equal(st.term, 0);
	assert_int_equal(st.leader, 0);
	assert_int_equal(st.vote, 0);
	tnet_free(net);
}

/* §5.1: a message with a higher term makes any role a follower of that term. */
static void test_update_term_from_message(void **state)
{
	for (raft_role role = RAFT_FOLLOWER; role <= RAFT_LEADER; role++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(3, &c);
		msgq q = {0};
		if (role == RAFT_CANDIDATE) {
			raft_campaign(R(net, 1));
			tn_drain(net, tnet_node(net, 1), &q);
		} else if (role == RAFT_LEADER) {
			tu_make_leader(net, 1, &q);
		}
		assert_int_equal(tu_role(R(net, 1)), role);
		uint64_t t = raft_term(R(net, 1)) + 1;
		tu_step(net, 1, (raft_msg){.type = RAFT_MSG_APP, .from = 2, .term = t}, &q);
		assert_int_equal(raft_term(R(net, 1)), t);
		assert_int_equal(tu_role(R(net, 1)), RAFT_FOLLOWER);
		assert_int_equal(raft_leader(R(net, 1)), 2);
		msgq_free(&q);
		tnet_free(net);
	}
}

/* §5.1: a message with a stale term is ignored. */
static void test_reject_stale_term_message(void **state)
{
	raft_config c = tcfg();
	tnet *net = tnet_new(3, &c);
	tu_preload(net, 1, NULL, 0, 2, 0);
	msgq q = {0};
	raft_entry e = ent(1, 1);
	tu_step(
	    net, 1,
	    (raft_msg){.type = RAFT_MSG_APP, .from = 2, .term = 1, .entries = &e, .n_entries = 1},
	    &q);
	assert_int_equal(q.n, 0);
	assert_int_equal(raft_term(R(net, 1)), 2);
	assert_int_equal(tu_stored_last(net, 1), 0);
	msgq_free(&q);
	tnet_free(net);
}

/* Figure 2, RequestVote: "reply false if term < currentTerm"; the reply
 * carries currentTerm "for candidate to update itself", whatever the
 * pre-vote and check-quorum settings. */
static void test_reject_stale_vote_with_current_term(void **state)
{
	for (int mode = 0; mode < 4; mode++) {
		raft_config c = tcfg();
		c.pre_vote = mode & 1;
		c.check_quorum = mode & 2;
		tnet *net = tnet_new(3, &c);
		tu_preload(net, 1, NULL, 0, 5, 0);
		msgq q = {0};
		tu_step(net, 1, (raft_msg){.type = RAFT_MSG_VOTE, .from = 2, .term = 3}, &q);
		assert_int_equal(q.n, 1);
		assert_int_equal(q.m[0].type, RAFT_MSG_VOTE_RESP);
		assert_int_equal(q.m[0].to, 2);
		assert_int_equal(q.m[0].term, 5);
		assert_true(q.m[0].reject);
		assert_int_equal(raft_term(R(net, 1)), 5);
		msgq_free(&q);
		tnet_free(net);
	}
}

/* ... and the candidate that asked learns the term and steps down (raft-sim
 * seed 3286, CORE_BUGS.md 3: a higher-term node that cannot win an election
 * itself must still let the others move past its term). */
static void test_candidate_learns_term_from_stale_vote_reply(void **state)
{
	raft_config c = tcfg();
	tnet *net = tnet_new(3, &c);
	tu_preload(net, 1, NULL, 0, 5, 0);
	tnet_cut(net, 2, 3);
	tnet_campaign(net, 2);
	assert_int_equal(raft_term(R(net, 2)), 5);
	assert_int_equal(tu_role(R(net, 2)), RAFT_FOLLOWER);
	/* Its next campaign is at a term node 1 accepts. */
	tnet_campaign(net, 2);
	assert_true(raft_is_leader(R(net, 2)));
	assert_int_equal(raft_term(R(net, 2)), 6);
	tnet_free(net);
}

/* §5.2: the leader sends heartbeats to every follower each heartbeat interval. */
static void test_leader_bcast_beat(void **state)
{
	raft_config c = tcfg();
	c.heartbeat_ticks = 2;
	tnet *net = tnet_new(3, &c);
	msgq q = {0};
	tu_make_leader(net, 1, &q);
	msgq_clear(&q);
	raft_tick(R(net, 1));
	tn_drain(net, tnet_node(net, 1), &q);
	assert_int_equal(msgq_count(&q, RAFT_MSG_HEARTBEAT), 0);
	raft_tick(R(net, 1));
	tn_drain(net, tnet_node(net, 1), &q);
	assert_int_equal(q.n, 2);
	for (size_t i = 0; i < q.n; i++) {
		assert_int_equal(q.m[i].type, RAFT_MSG_HEARTBEAT);
		assert_int_equal(q.m[i].term, 1);
		assert_int_equal(q.m[i].commit, 0); /* min(match, commit) */
		assert_int_equal(q.m[i].to, i + 2);
	}
	msgq_free(&q);
	tnet_free(net);
}

/* §5.2: a follower or candidate that hears nothing for an election timeout
 * starts a new election: term+1, votes for itself, asks every peer. */
static void check_start_election(bool from_candidate)
{
	raft_config c = tcfg();
	tnet *net = tnet_new(3, &c);
	msgq q = {0};
	if (from_candidate) {
		raft_campaign(R(net, 1));
		tn_drain(net, tnet_node(net, 1), &q);
		msgq_clear(&q);
	}
	uint64_t t0 = raft_term(R(net, 1));
	for (int i = 0; i < 2 * c.election_ticks; i++)
		raft_tick(R(net, 1));
	tn_drain(net, tnet_node(net, 1), &q);
	raft_status st;
	raft_get_status(R(net, 1), &st);
	assert_int_equal(st.term, t0 + 1);
	assert_int_equal(st.role, RAFT_CANDIDATE);
	assert_int_equal(st.vote, 1);
	assert_int_equal(q.n, 2);
	for (size_t i = 0; i < q.n; i++) {
		assert_int_equal(q.m[i].type, RAFT_MSG_VOTE);
		assert_int_equal(q.m[i].term, t0 + 1);
		assert_int_equal(q.m[i].to, i + 2);
		assert_int_equal(q.m[i].index, 0);
		assert_int_equal(q.m[i].log_term, 0);
	}
	msgq_free(&q);
	tnet_free(net);
}

static void test_follower_start_election(void **state)
{
	check_start_election(false);
}

static void test_candidate_start_new_election(void **state)
{
	check_start_election(true);
}

/* §5.2: a candidate wins with a majority of votes, loses with a majority
 * of refusals, and otherwise stays candidate. */
static void test_leader_election_in_one_round_rpc(void **state)
{
	static const struct {
		size_t size;
		int votes[5]; /* per peer 2..: 1 grant, -1 refuse, 0 no reply */
		raft_role want;
	} tt[] = {
	    {1, {0}, RAFT_LEADER},
	    {3, {1, 1}, RAFT_LEADER},
	    {3, {1, 0}, RAFT_LEADER},
	    {5, {1, 1, 1, 1}, RAFT_LEADER},
	    {5, {1, 1, 1, 0}, RAFT_LEADER},
	    {5, {1, 1, 0, 0}, RAFT_LEADER},
	    {3, {-1, -1}, RAFT_FOLLOWER},
	    {5, {-1, -1, -1, -1}, RAFT_FOLLOWER},
	    {5, {1, -1, -1, -1}, RAFT_FOLLOWER},
	    {3, {0, 0}, RAFT_CANDIDATE},
	    {5, {1, 0, 0, 0}, RAFT_CANDIDATE},
	    {5, {-1, -1, 0, 0}, RAFT_CANDIDATE},
	    {5, {0, 0, 0, 0}, RAFT_CANDIDATE},
	};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(tt[i].size, &c);
		msgq q = {0};
		raft_campaign(R(net, 1));
		tn_drain(net, tnet_node(net, 1), &q);
		for (size_t p = 0; p + 1 < tt[i].size; p++) {
			if (tt[i].votes[p] == 0)
				continue;
			tu_step(net, 1,
				(raft_msg){.type = RAFT_MSG_VOTE_RESP,
					   .from = p + 2,
					   .term = 1,
					   .reject = tt[i].votes[p] < 0},
				&q);
		}
		assert_int_equal(tu_role(R(net, 1)), tt[i].want);
		assert_int_equal(raft_term(R(net, 1)), 1);
		msgq_free(&q);
		tnet_free(net);
	}
}

/* §5.2: each server votes for at most one candidate per term, first come
 * first served. */
static void test_follower_vote(void **state)
{
	static const struct {
		uint64_t vote, nvote;
		bool wreject;
	} tt[] = {
	    {0, 1, false}, {0, 2, false}, {1, 1, false}, {2, 2, false}, {1, 2, true}, {2, 1, true},
	};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(3, &c);
		tnode *n3 = tnet_node(net, 3);
		raft_hard_state hs = {.term = 1, .vote = tt[i].vote};
		memory_storage_set_hard_state(n3->ms, &hs);
		tnet_restart(net, 3);
		msgq q = {0};
		tu_step(net, 3, (raft_msg){.type = RAFT_MSG_VOTE, .from = tt[i].nvote, .term = 1},
			&q);
		assert_int_equal(q.n, 1);
		assert_int_equal(q.m[0].type, RAFT_MSG_VOTE_RESP);
		assert_int_equal(q.m[0].to, tt[i].nvote);
		assert_int_equal(q.m[0].term, 1);
		assert_int_equal(q.m[0].reject, tt[i].wreject);
		msgq_free(&q);
		tnet_free(net);
	}
}

/* §5.2: a candidate that hears from a leader of its term or newer becomes
 * its follower. */
static void test_candidate_fallback(void **state)
{
	for (uint64_t t = 1; t <= 2; t++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(3, &c);
		msgq q = {0};
		raft_campaign(R(net, 1));
		tn_drain(net, tnet_node(net, 1), &q);
		assert_int_equal(tu_role(R(net, 1)), RAFT_CANDIDATE);
		tu_step(net, 1, (raft_msg){.type = RAFT_MSG_APP, .from = 2, .term = t}, &q);
		assert_int_equal(tu_role(R(net, 1)), RAFT_FOLLOWER);
		assert_int_equal(raft_term(R(net, 1)), t);
		assert_int_equal(raft_leader(R(net, 1)), 2);
		msgq_free(&q);
		tnet_free(net);
	}
}

/* Ticks node 1 until it starts a campaign; returns the ticks taken. */
static int ticks_to_campaign(tnet *net, msgq *q)
{
	uint64_t t0 = raft_term(R(net, 1));
	raft_role r0 = tu_role(R(net, 1));
	for (int i = 1; i < 1000; i++) {
		raft_tick(R(net, 1));
		if (raft_term(R(net, 1)) != t0 || tu_role(R(net, 1)) != r0) {
			tn_drain(net, tnet_node(net, 1), q);
			msgq_clear(q);
			return i;
		}
	}
	fail_msg("node 1 never campaigned");
	return -1;
}

/* §5.2: election timeouts are drawn at random from [et, 2et). */
static void check_timeout_randomized(bool candidate)
{
	raft_config c = tcfg();
	tnet *net = tnet_new(3, &c);
	msgq q = {0};
	bool seen[64] = {0};
	for (int round = 0; round < 50 * c.election_ticks; round++) {
		if (candidate) {
			raft_campaign(R(net, 1));
		} else {
			uint64_t t = raft_term(R(net, 1)) + 1;
			raft_step(
			    R(net, 1),
			    &(raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 1, .term = t});
		}
		tn_drain(net, tnet_node(net, 1), &q);
		msgq_clear(&q);
		int d = ticks_to_campaign(net, &q);
		assert_true(d >= c.election_ticks && d < 2 * c.election_ticks);
		seen[d] = true;
	}
	for (int d = c.election_ticks; d < 2 * c.election_ticks; d++)
		assert_true(seen[d]);
	msgq_free(&q);
	tnet_free(net);
}

static void test_follower_election_timeout_randomized(void **state)
{
	check_timeout_randomized(false);
}

static void test_candidate_election_timeout_randomized(void **state)
{
	check_timeout_randomized(true);
}

/* §5.2: in most cases only one server times out first, so split votes are
 * rare (etcd: under 30% of rounds with a tie at the first timeout). */
static void test_follower_election_timeout_nonconflict(void **state)
{
	raft_config c = tcfg();
	tnet *net = tnet_new(5, &c);
	msgq q = {0};
	int conflicts = 0, rounds = 1000;
	for (int round = 0; round < rounds; round++) {
		for (uint64_t id = 1; id <= 5; id++) {
			raft *r = R(net, id);
			uint64_t from = id % 5 + 1;
			raft_step(r, &(raft_msg){.type = RAFT_MSG_HEARTBEAT,
						 .from = from,
						 .to = id,
						 .term = raft_term(r) + 1});
			tn_drain(net, tnet_node(net, id), &q);
		}
		msgq_clear(&q);
		int fired = 0;
		while (fired == 0) {
			for (uint64_t id = 1; id <= 5; id++) {
				raft *r = R(net, id);
				uint64_t t = raft_term(r);
				raft_tick(r);
				fired += raft_term(r) != t;
			}
		}
		conflicts += fired > 1;
		/* Bring every node back to follower for the next round. */
		for (uint64_t id = 1; id <= 5; id++) {
			tn_drain(net, tnet_node(net, id), &q);
			msgq_clear(&q);
		}
	}
	assert_true(conflicts * 10 < rounds * 3);
	msgq_free(&q);
	tnet_free(net);
}

/* §5.3: the leader appends a proposal and sends it to every follower with
 * the preceding index and term and its commit index. */
static void test_leader_start_replication(void **state)
{
	raft_config c = tcfg();
	tnet *net = tnet_new(3, &c);
	tnet_campaign(net, 1);
	msgq q = {0};
	raft *r = R(net, 1);
	uint64_t li = tu_last(r), idx, term;
	assert_int_equal(raft_propose(r, "some data", 9, &idx, &term), 0);
	assert_int_equal(idx, li + 1);
	assert_int_equal(term, 1);
	tn_drain(net, tnet_node(net, 1), &q);
	assert_int_equal(q.n, 2);
	for (size_t i = 0; i < q.n; i++) {
		raft_msg *m = &q.m[i];
		assert_int_equal(m->type, RAFT_MSG_APP);
		assert_int_equal(m->to, i + 2);
		assert_int_equal(m->index, li);
		assert_int_equal(m->log_term, 1);
		assert_int_equal(m->commit, li);
		assert_int_equal(m->n_entries, 1);
		assert_int_equal(m->entries[0].index, li + 1);
		assert_int_equal(m->entries[0].term, 1);
		assert_memory_equal(m->entries[0].data, "some data", 9);
	}
	/* Persisted before the messages could be sent. */
	assert_int_equal(tu_stored_last(net, 1), li + 1);
	msgq_free(&q);
	tnet_free(net);
}

/* §5.3: once a majority holds the entry the leader commits and applies
 * it, and tells the followers the new commit index. */
static void test_leader_commit_entry(void **state)
{
	raft_config c = tcfg();
	tnet *net = tnet_new(3, &c);
	tnet_campaign(net, 1);
	raft *r = R(net, 1);
	tnode *n1 = tnet_node(net, 1);
	uint64_t li = tu_last(r);
	size_t applied0 = n1->n_applied;
	msgq q = {0}, out = {0};
	raft_propose(r, "some data", 9, NULL, NULL);
	tn_drain(net, n1, &q);
	for (size_t i = 0; i < q.n; i++) {
		tnet_step(net, &q.m[i]);
		/* The follower's reply goes to the leader. */
		for (size_t j = 0; j < net->q.n; j++)
			tu_step(net, 1, net->q.m[j], &out);
		msgq_clear(&net->q);
	}
	raft_status st;
	raft_get_status(r, &st);
	assert_int_equal(st.commit, li + 1);
	assert_int_equal(n1->n_applied, applied0 + 1);
	assert_memory_equal(n1->applied[applied0].data, "some data", 9);
	size_t apps = 0;
	for (size_t i = 0; i < out.n; i++) {
		if (out.m[i].type != RAFT_MSG_APP)
			continue;
		apps++;
		assert_int_equal(out.m[i].commit, li + 1);
	}
	assert_true(apps >= 2);
	msgq_free(&q);
	msgq_free(&out);
	tnet_free(net);
}

/* §5.3: an entry commits once the leader has it on a majority. */
static void test_leader_acknowledge_commit(void **state)
{
	static const struct {
		size_t size;
		uint64_t acceptors[4];
		bool wack;
	} tt[] = {
	    {1, {0}, true},    {3, {0}, false},	     {3, {2}, true},
	    {3, {2, 3}, true}, {5, {0}, false},	     {5, {2}, false},
	    {5, {2, 3}, true}, {5, {2, 3, 4}, true}, {5, {2, 3, 4, 5}, true},
	};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(tt[i].size, &c);
		tnet_campaign(net, 1);
		raft *r = R(net, 1);
		msgq q = {0};
		raft_propose(r, "x", 1, NULL, NULL);
		tn_drain(net, tnet_node(net, 1), &q);
		uint64_t li = tu_last(r);
		for (size_t k = 0; k < 4 && tt[i].acceptors[k]; k++)
			tu_step(net, 1,
				(raft_msg){.type = RAFT_MSG_APP_RESP,
					   .from = tt[i].acceptors[k],
					   .term = 1,
					   .index = li},
				&q);
		raft_status st;
		raft_get_status(r, &st);
		assert_int_equal(st.commit == li, tt[i].wack);
		msgq_free(&q);
		tnet_free(net);
	}
}

/* §5.3: committing an entry of its term commits every entry before it,
 * including those of earlier leaders. */
static void test_leader_commit_preceding_entries(void **state)
{
	static const struct {
		uint64_t terms[2];
		size_t n;
	} tt[] = {{{0}, 0}, {{2}, 1}, {{1, 2}, 2}, {{1}, 1}};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(3, &c);
		tu_preload(net, 1, tt[i].terms, tt[i].n, 2, 0);
		msgq q = {0};
		tu_make_leader(net, 1, &q);
		raft *r = R(net, 1);
		raft_propose(r, "some data", 9, NULL, NULL);
		tn_drain(net, tnet_node(net, 1), &q);
		uint64_t li = tu_last(r);
		for (uint64_t p = 2; p <= 3; p++)
			tu_step(net, 1,
				(raft_msg){
				    .type = RAFT_MSG_APP_RESP, .from = p, .term = 3, .index = li},
				&q);
		tnode *n1 = tnet_node(net, 1);
		assert_int_equal(n1->n_applied, tt[i].n + 2);
		for (size_t k = 0; k < tt[i].n; k++)
			assert_int_equal(n1->applied[k].term, tt[i].terms[k]);
		assert_int_equal(n1->applied[tt[i].n].term, 3); /* the no-op */
		assert_int_equal(n1->applied[tt[i].n].len, 0);
		assert_memory_equal(n1->applied[tt[i].n + 1].data, "some data", 9);
		msgq_free(&q);
		tnet_free(net);
	}
}

/* §5.3: a follower learns the commit index from appends and applies. */
static void test_follower_commit_entry(void **state)
{
	static const struct {
		size_t n;
		uint64_t commit;
	} tt[] = {{1, 1}, {2, 2}, {2, 1}, {3, 2}};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(3, &c);
		raft_entry ents[3];
		char data[3][8];
		for (size_t k = 0; k < tt[i].n; k++) {
			data[k][0] = 'd';
			data[k][1] = (char)('0' + k);
			ents[k] = (raft_entry){
			    .index = k + 1, .term = 1, .len = 2, .data = (uint8_t *)data[k]};
		}
		msgq q = {0};
		tu_step(net, 1,
			(raft_msg){.type = RAFT_MSG_APP,
				   .from = 2,
				   .term = 1,
				   .entries = ents,
				   .n_entries = tt[i].n,
				   .commit = tt[i].commit},
			&q);
		raft_status st;
		raft_get_status(R(net, 1), &st);
		assert_int_equal(st.commit, tt[i].commit);
		tnode *n1 = tnet_node(net, 1);
		assert_int_equal(n1->n_applied, tt[i].commit);
		for (size_t k = 0; k < n1->n_applied; k++)
			assert_memory_equal(n1->applied[k].data, data[k], 2);
		msgq_free(&q);
		tnet_free(net);
	}
}

/* §5.3: the follower rejects an append whose preceding entry it does not
 * hold, with a hint of where the logs may agree. */
static void test_follower_check_msgapp(void **state)
{
	static const struct {
		uint64_t log_term, index;
		uint64_t windex;
		bool wreject;
		uint64_t whint, wlogterm;
	} tt[] = {
	    {0, 0, 1, false, 0, 0}, /* below commit: acknowledged at commit */
	    {1, 1, 1, false, 0, 0}, {2, 2, 2, false, 0, 0},
	    {1, 2, 2, true, 1, 1}, /* term mismatch at 2: hint entry 1 (term 1) */
	    {3, 3, 3, true, 2, 2}, /* beyond our log: hint our last entry */
	};
	static const uint64_t terms[] = {1, 2};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(3, &c);
		tu_preload(net, 1, terms, 2, 2, 1);
		msgq q = {0};
		tu_step(net, 1,
			(raft_msg){.type = RAFT_MSG_APP,
				   .from = 2,
				   .term = 2,
				   .log_term = tt[i].log_term,
				   .index = tt[i].index},
			&q);
		assert_int_equal(q.n, 1);
		raft_msg *m = &q.m[0];
		assert_int_equal(m->type, RAFT_MSG_APP_RESP);
		assert_int_equal(m->term, 2);
		assert_int_equal(m->index, tt[i].windex);
		assert_int_equal(m->reject, tt[i].wreject);
		assert_int_equal(m->reject_hint, tt[i].whint);
		assert_int_equal(m->log_term, tt[i].wlogterm);
		msgq_free(&q);
		tnet_free(net);
	}
}

/* §5.3: the follower deletes a conflicting suffix and appends the new
 * entries; entries it already holds are kept as they are. */
static void test_follower_append_entries(void **state)
{
	static const struct {
		uint64_t index, log_term;
		raft_entry ents[2];
		size_t n;
		uint64_t wterms[3];
		size_t wn;
		raft_entry wunstable[2];
		size_t wun;
	} tt[] = {
	    {2, 2, {{.index = 3, .term = 3}}, 1, {1, 2, 3}, 3, {{.index = 3, .term = 3}}, 1},
	    {1,
	     1,
	     {{.index = 2, .term = 3}, {.index = 3, .term = 4}},
	     2,
	     {1, 3, 4},
	     3,
	     {{.index = 2, .term = 3}, {.index = 3, .term = 4}},
	     2},
	    {0, 0, {{.index = 1, .term = 1}}, 1, {1, 2}, 2, {{0}}, 0},
	    {0, 0, {{.index = 1, .term = 3}}, 1, {3}, 1, {{.index = 1, .term = 3}}, 1},
	};
	static const uint64_t terms[] = {1, 2};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(3, &c);
		tu_preload(net, 1, terms, 2, 2, 0);
		tnode *n1 = tnet_node(net, 1);
		raft_step(n1->r, &(raft_msg){.type = RAFT_MSG_APP,
					     .from = 2,
					     .to = 1,
					     .term = 2,
					     .index = tt[i].index,
					     .log_term = tt[i].log_term,
					     .entries = (raft_entry *)tt[i].ents,
					     .n_entries = tt[i].n});
		raft_ready rd;
		raft_ready_get(n1->r, &rd);
		assert_int_equal(rd.n_entries, tt[i].wun);
		for (size_t k = 0; k < tt[i].wun; k++) {
			assert_int_equal(rd.entries[k].index, tt[i].wunstable[k].index);
			assert_int_equal(rd.entries[k].term, tt[i].wunstable[k].term);
		}
		if (rd.n_entries)
			memory_storage_append(n1->ms, rd.entries, rd.n_entries);
		raft_advance(n1->r, &rd);
		msgq q = {0};
		tn_drain(net, n1, &q);
		assert_int_equal(tu_stored_last(net, 1), tt[i].wn);
		for (size_t k = 0; k < tt[i].wn; k++)
			assert_int_equal(tu_stored_term(net, 1, k + 1), tt[i].wterms[k]);
		msgq_free(&q);
		tnet_free(net);
	}
}

/* §5.3, Figure 7: whatever the follower's log, the leader brings it to
 * its own. */
static void test_leader_sync_follower_log(void **state)
{
	static const uint64_t lead[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
	static const struct {
		uint64_t terms[12];
		size_t n;
	} tt[] = {
	    {{1, 1, 1, 4, 4, 5, 5, 6, 6}, 9},
	    {{1, 1, 1, 4}, 4},
	    {{1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6}, 11},
	    {{1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7}, 12},
	    {{1, 1, 1, 4, 4, 4, 4}, 7},
	    {{1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}, 11},
	};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(3, &c);
		tu_preload(net, 1, lead, 10, 8, 0);
		tu_preload(net, 2, tt[i].terms, tt[i].n, 7, 0);
		tu_preload(net, 3, NULL, 0, 7, 0);
		tnet_campaign(net, 1);
		assert_true(raft_is_leader(R(net, 1)));
		assert_int_equal(tnet_propose(net, 1, "x"), 0);
		assert_int_equal(tnet_log_cmp(net, 1, 2), 0);
		assert_int_equal(tnet_log_cmp(net, 1, 3), 0);
		tnet_free(net);
	}
}

/* §5.2/§5.4.1: vote requests carry the candidate's last index and term. */
static void test_vote_request(void **state)
{
	static const struct {
		uint64_t terms[2];
		size_t n;
		uint64_t wterm;
	} tt[] = {{{1}, 1, 2}, {{1, 2}, 2, 3}};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(3, &c);
		raft_entry ents[2];
		for (size_t k = 0; k < tt[i].n; k++)
			ents[k] = ent(k + 1, tt[i].terms[k]);
		msgq q = {0};
		tu_step(net, 1,
			(raft_msg){.type = RAFT_MSG_APP,
				   .from = 2,
				   .term = tt[i].wterm - 1,
				   .entries = ents,
				   .n_entries = tt[i].n},
			&q);
		msgq_clear(&q);
		for (int k = 0; k < 2 * c.election_ticks; k++)
			raft_tick(R(net, 1));
		tn_drain(net, tnet_node(net, 1), &q);
		assert_int_equal(q.n, 2);
		for (size_t k = 0; k < q.n; k++) {
			assert_int_equal(q.m[k].type, RAFT_MSG_VOTE);
			assert_int_equal(q.m[k].to, k + 2);
			assert_int_equal(q.m[k].term, tt[i].wterm);
			assert_int_equal(q.m[k].index, tt[i].n);
			assert_int_equal(q.m[k].log_term, tt[i].terms[tt[i].n - 1]);
		}
		msgq_free(&q);
		tnet_free(net);
	}
}

/* §5.4.1: a voter refuses a candidate whose log is less up-to-date. */
static void test_voter(void **state)
{
	static const struct {
		uint64_t terms[2];
		size_t n;
		uint64_t log_term, index;
		bool wreject;
	} tt[] = {
	    /* same last term: longer or equal log wins */
	    {{1}, 1, 1, 1, false},
	    {{1}, 1, 1, 2, false},
	    {{1, 1}, 2, 1, 1, true},
	    /* candidate's last term is higher */
	    {{1}, 1, 2, 1, false},
	    {{1}, 1, 2, 2, false},
	    {{1, 1}, 2, 2, 1, false},
	    /* voter's last term is higher */
	    {{2}, 1, 1, 1, true},
	    {{2}, 1, 1, 2, true},
	    {{2, 1}, 2, 1, 1, true},
	};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(3, &c);
		tu_preload(net, 1, tt[i].terms, tt[i].n, 2, 0);
		msgq q = {0};
		tu_step(net, 1,
			(raft_msg){.type = RAFT_MSG_VOTE,
				   .from = 2,
				   .term = 3,
				   .log_term = tt[i].log_term,
				   .index = tt[i].index},
			&q);
		assert_int_equal(q.n, 1);
		assert_int_equal(q.m[0].type, RAFT_MSG_VOTE_RESP);
		assert_int_equal(q.m[0].reject, tt[i].wreject);
		msgq_free(&q);
		tnet_free(net);
	}
}

/* §5.4.2: entries of earlier terms are never committed by counting. */
static void test_leader_only_commits_log_from_current_term(void **state)
{
	static const struct {
		uint64_t index, wcommit;
	} tt[] = {{1, 0}, {2, 0}, {3, 3}};
	static const uint64_t terms[] = {1, 2};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		raft_config c = tcfg();
		tnet *net = tnet_new(2, &c);
		tu_preload(net, 1, terms, 2, 2, 0);
		msgq q = {0};
		tu_make_leader(net, 1, &q);
		assert_int_equal(raft_term(R(net, 1)), 3);
		tu_step(net, 1,
			(raft_msg){
			    .type = RAFT_MSG_APP_RESP, .from = 2, .term = 3, .index = tt[i].index},
			&q);
		raft_status st;
		raft_get_status(R(net, 1), &st);
		assert_int_equal(st.commit, tt[i].wcommit);
		msgq_free(&q);
		tnet_free(net);
	}
}

/* TinyKV: a new leader appends an empty entry of its term. */
static void test_noop_on_election(void **state)
{
	raft_config c = tcfg();
	tnet *net = tnet_new(3, &c);
	tnet_campaign(net, 1);
	for (uint64_t id = 1; id <= 3; id++) {
		assert_int_equal(tu_stored_last(net, id), 1);
		assert_int_equal(tu_stored_term(net, id, 1), 1);
		tnode *n = tnet_node(net, id);
		assert_int_equal(n->n_applied, 1);
		assert_int_equal(n->applied[0].len, 0);
	}
	tnet_free(net);
}

/* TinyKV: local messages (HUP, BEAT, PROP) are handled whatever their term. */
static void test_local_msg_ignores_term(void **state)
{
	raft_config c = tcfg();
	tnet *net = tnet_new(3, &c);
	msgq q = {0};
	tu_step(net, 1, (raft_msg){.type = RAFT_MSG_HUP, .term = 7}, &q);
	assert_int_equal(raft_term(R(net, 1)), 1);
	assert_int_equal(tu_role(R(net, 1)), RAFT_CANDIDATE);
	msgq_clear(&q);
	for (uint64_t p = 2; p <= 3; p++)
		tu_step(net, 1, (raft_msg){.type = RAFT_MSG_VOTE_RESP, .from = p, .term = 1}, &q);
	assert_true(raft_is_leader(R(net, 1)));
	msgq_clear(&q);
	tu_step(net, 1, (raft_msg){.type = RAFT_MSG_BEAT, .term = 9}, &q);
	assert_int_equal(msgq_count(&q, RAFT_MSG_HEARTBEAT), 2);
	assert_int_equal(raft_term(R(net, 1)), 1);
	assert_true(raft_is_leader(R(net, 1)));
	raft_entry e = {.len = 1, .data = (uint8_t *)"z"};
	tu_step(net, 1, (raft_msg){.type = RAFT_MSG_PROP, .entries = &e, .n_entries = 1}, &q);
	assert_int_equal(tu_last(R(net, 1)), 2);
	msgq_free(&q);
	tnet_free(net);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_start_as_follower),
	    cmocka_unit_test(test_update_term_from_message),
	    cmocka_unit_test(test_reject_stale_term_message),
	    cmocka_unit_test(test_reject_stale_vote_with_current_term),
	    cmocka_unit_test(test_candidate_learns_term_from_stale_vote_reply),
	    cmocka_unit_test(test_leader_bcast_beat),
	    cmocka_unit_test(test_follower_start_election),
	    cmocka_unit_test(test_candidate_start_new_election),
	    cmocka_unit_test(test_leader_election_in_one_round_rpc),
	    cmocka_unit_test(test_follower_vote),
	    cmocka_unit_test(test_candidate_fallback),
	    cmocka_unit_test(test_follower_election_timeout_randomized),
	    cmocka_unit_test(test_candidate_election_timeout_randomized),
	    cmocka_unit_test(test_follower_election_timeout_nonconflict),
	    cmocka_unit_test(test_leader_start_replication),
	    cmocka_unit_test(test_leader_commit_entry),
	    cmocka_unit_test(test_leader_acknowledge_commit),
	    cmocka_unit_test(test_leader_commit_preceding_entries),
	    cmocka_unit_test(test_follower_commit_entry),
	    cmocka_unit_test(test_follower_check_msgapp),
	    cmocka_unit_test(test_follower_append_entries),
	    cmocka_unit_test(test_leader_sync_follower_log),
	    cmocka_unit_test(test_vote_request),
	    cmocka_unit_test(test_voter),
	    cmocka_unit_test(test_leader_only_commits_log_from_current_term),
	    cmocka_unit_test(test_noop_on_election),
	    cmocka_unit_test(test_local_msg_ignores_term),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
