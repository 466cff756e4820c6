/* test_cork.c — a corked transport (transport_cork: the node while it sends
 * one round of Ready messages) writes what it sends to one peer in one
 * write, in the order sent: at transport_uncork, or in front of the next
 * frame too big to hold, or in front of a direct send (a follower's
 * persist thread's acknowledgement). Uncorked, each frame is written when
 * sent, as before. A real transport (node 1) dials a plain TCP peer of
 * this test (node 2); the socket writes are counted by transport_writes,
 * and node 2 reads every frame back, checking each one's mark (its commit
 * field) and so their order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>
#include <sys/ioctl.h>
#include <uv.h>

#include "codec.h"
#include "frame.h"
#include "node_testlib.h"
#include "peer_testlib.h"
#include "transport.h"

#define BIG_BYTES (20u << 10) /* entry data past what a cork holds (16 KiB) */

static void connect_pair(struct test_peer *p)
{
	test_peer_connect(p, &test_peer_quiet, &(struct test_peer_opts){0});
}

/* An append to node 2 marked by its commit field, with len bytes of entry
 * data (0: a commit notice, as a leader sends after a commit). */
static void send_marked(struct test_peer *p, uint64_t mark, size_t len)
{
	static uint8_t data[BIG_BYTES];
	raft_entry e = {.term = 1, .index = 1, .type = RAFT_ENTRY_NORMAL, .len = (uint32_t)len,
			.data = data};
	raft_msg m = {.type = RAFT_MSG_APP, .to = 2, .from = 1, .term = 1, .entries = &e,
		      .n_entries = len ? 1 : 0, .commit = mark};

	assert_int_equal(transport_send(p->t, &m), 0);
}

/* Node 2 reads the next frame: a raft message marked mark. */
static void expect_mark(struct test_peer *p, uint64_t mark)
{
	const uint8_t *payload;
	raft_msg r;
	size_t len;

	assert_int_equal(test_peer_next_frame(p, &payload, &len), FRAME_RAFT);
	assert_int_equal(codec_msg_decode(payload, len, &r), 0);
	assert_int_equal(r.commit, mark);
	raft_msg_free_contents(&r);
}

/* Bytes node 2 could read now. */
static int readable(const struct test_peer *p)
{
	int n = -1;

	assert_int_equal(ioctl(p->fd, FIONREAD, &n), 0);
	return n;
}

/* Three commit notices and an append sent corked: nothing is written until
 * the uncork, then all four in one write, in order. */
static void test_one_write_at_uncork(void **state)
{
	struct test_peer p = {0};
	uint64_t w0;

	(void)state;
	connect_pair(&p);
	w0 = transport_writes(p.t);
	transport_cork(p.t);
	send_marked(&p, 1, 0);
	send_marked(&p, 2, 100);
	send_marked(&p, 3, 0);
	send_marked(&p, 4, 0);
	assert_int_equal(transport_writes(p.t), w0);
	assert_int_equal(readable(&p), 0);
	transport_uncork(p.t);
	assert_int_equal(transport_writes(p.t), w0 + 1);
	for (uint64_t mark = 1; mark <= 4; mark++)
		expect_mark(&p, mark);
	/* Uncorked again: each frame is written when sent. */
	send_marked(&p, 5, 0);
	send_marked(&p, 6, 0);
	assert_int_equal(transport_writes(p.t), w0 + 3);
	expect_mark(&p, 5);
	expect_mark(&p, 6);
	test_peer_close(&p);
}

/* A frame too big to hold is written at once, with what is held in front
 * of it (one write); what is sent after it is held again. */
static void test_big_frame_takes_held(void **state)
{
	struct test_peer p = {0};
	uint64_t w0;

	(void)state;
	connect_pair(&p);
	w0 = transport_writes(p.t);
	transport_cork(p.t);
	send_marked(&p, 1, 0);
	send_marked(&p, 2, BIG_BYTES);
	assert_int_equal(transport_writes(p.t), w0 + 1);
	send_marked(&p, 3, 0);
	assert_int_equal(transport_writes(p.t), w0 + 1);
	transport_uncork(p.t);
	assert_int_equal(transport_writes(p.t), w0 + 2);
	for (uint64_t mark = 1; mark <= 3; mark++)
		expect_mark(&p, mark);
	test_peer_close(&p);
}

/* A direct send (any thread) while the loop holds frames for the same peer
 * writes them first, in its own write; the uncork then has nothing left. */
static void test_direct_send_takes_held(void **state)
{
	struct test_peer p = {0};
	raft_msg resp = {.type = RAFT_MSG_APP_RESP, .to = 2, .from = 1, .term = 1, .index = 7,
			 .commit = 3};
	uint64_t w0;

	(void)state;
	connect_pair(&p);
	w0 = transport_writes(p.t);
	transport_cork(p.t);
	send_marked(&p, 1, 0);
	send_marked(&p, 2, 0);
	assert_int_equal(transport_send_direct(p.t, &resp), 0);
	assert_int_equal(transport_writes(p.t), w0 + 1);
	transport_uncork(p.t);
	assert_int_equal(transport_writes(p.t), w0 + 1);
	for (uint64_t mark = 1; mark <= 3; mark++)
		expect_mark(&p, mark);
	test_peer_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_write_at_uncork),
	    cmocka_unit_test(test_big_frame_takes_held),
	    cmocka_unit_test(test_direct_send_takes_held),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
