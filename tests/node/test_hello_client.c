/* test_hello_client.c — a leader leaves out of its appends to a peer only
 * the data of that peer's own proposals: those of the client id the peer
 * said in its hello (Transportpb.Hello client_id), never of a client id a
 * proposal it forwarded carried (a follower also forwards proposals of
 * other nodes that reached it). A real transport (node 1, the leader here)
 * dials a plain TCP peer of this test (node 2), which answers the Hello
 * offering TRANSPORT_FEATURE_ELIDE, then forwards a proposal of another
 * client. Node 1 then sends an append of two big entries, one of that
 * other client and one of node 2's own: only node 2's own goes as its
 * envelope. A peer whose hello says no client id (a node older than the
 * field) gets both whole, whatever it forwarded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "codec.h"
#include "envelope.h"
#include "frame.h"
#include "node_testlib.h"
#include "peer_testlib.h"
#include "transport.h"

#define OWN_CLIENT 0x2222ull	/* node 2's, said in its hello */
#define OTHER_CLIENT 0x3333ull	/* node 3's, whose proposal node 2 forwards */
#define BIG (TRANSPORT_ELIDE_MIN_BYTES + 100)

struct leader {
	struct test_peer p;
	int props; /* proposals node 1's transport handed on */
};

static void on_raft(void *arg, raft_msg *m)
{
	struct leader *l = arg;

	if (m->type == RAFT_MSG_PROP)
		l->props++;
}

/* Entry index of client's proposal seq 1: an envelope and BIG - its
 * length of command bytes, in data (BIG long). */
static void big_entry(raft_entry *e, uint8_t *data, uint64_t index, uint64_t client)
{
	envelope env = {client, 1, 1};

	memset(data, (int)index, BIG);
	envelope_encode(&env, data);
	*e = (raft_entry){.term = 1, .index = index, .type = RAFT_ENTRY_NORMAL,
			  .len = BIG, .data = data};
}

/* Node 2 forwards node 3's proposal; node 1 then appends node 3's entry
 * (index 1) and node 2's own (index 2) to node 2. Returns the lengths of
 * the two entries' data as they came, each elided length in elided[]. */
static void forward_then_append(uint64_t hello_client, uint32_t came[2], uint32_t elided[2])
{
	static uint8_t d3[BIG], d2[BIG], dp[BIG];
	struct leader l = {0};
	transport_callbacks cb = {&l, on_raft, test_peer_no_request, test_peer_no_chunk};
	raft_entry e[2], pe;
	const uint8_t *payload;
	long long deadline;
	raft_msg m, r;
	size_t len;

	test_peer_connect(&l.p, &cb, &(struct test_peer_opts){.client_id = hello_client});
	big_entry(&pe, dp, 0, OTHER_CLIENT);
	m = (raft_msg){.type = RAFT_MSG_PROP, .to = 1, .from = 2, .term = 1,
		       .entries = &pe, .n_entries = 1};
	test_peer_send(&l.p, FRAME_RAFT, NULL, &m);
	deadline = test_now_ms() + 10000;
	while (!l.props && test_now_ms() < deadline) {
		uv_run(&l.p.loop, UV_RUN_NOWAIT);
		test_nap();
	}
	assert_int_equal(l.props, 1);

	big_entry(&e[0], d3, 1, OTHER_CLIENT);
	big_entry(&e[1], d2, 2, OWN_CLIENT);
	m = (raft_msg){.type = RAFT_MSG_APP, .to = 2, .from = 1, .term = 1,
		       .entries = e, .n_entries = 2};
	assert_int_equal(transport_send(l.p.t, &m), 0);
	assert_int_equal(test_peer_next_frame(&l.p, &payload, &len), FRAME_RAFT);
	assert_int_equal(codec_msg_decode(payload, len, &r), 0);
	assert_int_equal(r.type, RAFT_MSG_APP);
	assert_int_equal(r.n_entries, 2);
	for (int i = 0; i < 2; i++) {
		came[i] = r.entries[i].len;
		elided[i] = r.elided ? r.elided[i].len : 0;
		/* What came is the leader's bytes from the start. */
		assert_memory_equal(r.entries[i].data, e[i].data, came[i]);
	}
	raft_msg_free_contents(&r);
	test_peer_close(&l.p);
}

/* Node 2's own entry goes as its envelope; node 3's, which node 2 only
 * forwarded, goes whole. */
static void test_own_client_from_hello(void **state)
{
	uint32_t came[2], elided[2];

	(void)state;
	forward_then_append(OWN_CLIENT, came, elided);
	assert_int_equal(came[0], BIG);
	assert_int_equal(elided[0], 0);
	assert_int_equal(came[1], ENVELOPE_BYTES);
	assert_int_equal(elided[1], BIG);
}

/* A peer that said no client id gets every entry whole. */
static void test_no_client_in_hello(void **state)
{
	uint32_t came[2], elided[2];

	(void)state;
	forward_then_append(0, came, elided);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(came[i], BIG);
		assert_int_equal(elided[i], 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_own_client_from_hello),
	    cmocka_unit_test(test_no_client_in_hello),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
