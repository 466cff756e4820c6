/* test_quiet.c — raft_quiet_ticks: the ticks before the one it names only
 * count, so a node with nothing else to do may sleep through them and give
 * them at once (the node's quiet ticks, consensus/README-node.md). A
 * follower cut off from its leader campaigns on exactly that tick; a
 * leader sends its heartbeats and checks its quorum on no other. */
#include <string.h>

#include "test_util.h"

#define R(net, id) (tnet_node((net), (id))->r)

static raft_config quiet_cfg(void)
{
	raft_config c = tcfg();

	c.heartbeat_ticks = 3;
	c.pre_vote = true;
	c.check_quorum = true;
	return c;
}

/* One tick of node id; its Ready's messages and whether its role moved. */
static size_t tick_sends(tnet *net, uint64_t id, raft_role *role)
{
	msgq q = {0};
	size_t n;

	raft_tick(R(net, id));
	tn_drain(net, tnet_node(net, id), &q);
	n = q.n;
	msgq_free(&q);
	*role = tu_role(R(net, id));
	return n;
}

/* A follower that stops hearing its leader: silent for quiet - 1 ticks,
 * campaigning on the quiet-th, whatever the randomized timeout. */
static void test_follower_campaigns_on_the_quiet_tick(void **state)
{
	raft_config c = quiet_cfg();

	for (uint64_t seed = 0; seed < 8; seed++) {
		tnet *net;
		raft_role role;
		int quiet;

		c.seed = seed;
		net = tnet_new(3, &c);
		tnet_campaign(net, 1);
		assert_true(raft_is_leader(R(net, 1)));
		tnet_isolate(net, 2);
		quiet = raft_quiet_ticks(R(net, 2));
		assert_true(quiet >= c.election_ticks && quiet < 2 * c.election_ticks);
		for (int i = 1; i < quiet; i++) {
			assert_int_equal(tick_sends(net, 2, &role), 0);
			assert_int_equal(role, RAFT_FOLLOWER);
			assert_int_equal(raft_quiet_ticks(R(net, 2)), quiet - i);
		}
		assert_true(tick_sends(net, 2, &role) > 0); /* its pre-vote requests */
		assert_int_equal(role, RAFT_PRE_CANDIDATE);
		tnet_free(net);
	}
}

/* A leader whose followers are gone: between the ticks quiet names it
 * sends nothing and keeps its role; on them it beats (every
 * heartbeat_ticks) and checks its quorum (every election_ticks), the
 * first check after it lost its followers deposing it. */
static void test_leader_acts_only_on_the_quiet_tick(void **state)
{
	raft_config c = quiet_cfg();
	tnet *net = tnet_new(3, &c);
	raft_role role = RAFT_LEADER;
	int ticks = 0, beats = 0;

	tnet_campaign(net, 1);
	assert_true(raft_is_leader(R(net, 1)));
	tnet_isolate(net, 1);
	while (role == RAFT_LEADER) {
		int quiet = raft_quiet_ticks(R(net, 1));

		assert_true(quiet >= 1 && quiet <= c.heartbeat_ticks);
		for (int i = 1; i < quiet; i++, ticks++) {
			assert_int_equal(tick_sends(net, 1, &role), 0);
			assert_int_equal(role, RAFT_LEADER);
		}
		ticks++;
		beats += tick_sends(net, 1, &role) > 0;
		assert_true(ticks <= 2 * c.election_ticks);
	}
	/* Deposed by the second check: the first counted the followers heard
	 * before the isolation. */
	assert_int_equal(ticks, 2 * c.election_ticks);
	assert_int_equal(beats, 2 * c.election_ticks / c.heartbeat_ticks);
	tnet_free(net);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_follower_campaigns_on_the_quiet_tick),
	    cmocka_unit_test(test_leader_acts_only_on_the_quiet_tick),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
