/* test_cork.c — a corked transport (transport_cork: the node while it sends
 * one round of Ready messages) writes what it sends to one peer in one
 * write, in the order sent: at transport_uncork, or in front of the next
 * frame too big to hold, or in front of a direct send (a follower's
 * persist thread's acknowledgement). Uncorked, each frame is written when
 * sent, as before. Behind a full socket (node 2 stops reading) the held
 * bytes go, in part or not at all, with what is written next and the rest
 * is queued behind what was queued before; held bytes are lost with their
 * connection, never written to the next one. A real transport (node 1)
 * dials a plain TCP peer of this test (node 2); the socket writes are
 * counted by transport_writes, and node 2 reads every frame back, checking
 * each one's mark (its commit field): every frame once, in the order
 * sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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
 * data in *e (0: a commit notice, as a leader sends after a commit). */
static raft_msg marked(raft_entry *e, uint64_t mark, size_t len)
{
	static uint8_t data[BIG_BYTES];

	*e = (raft_entry){.term = 1, .index = 1, .type = RAFT_ENTRY_NORMAL, .len = (uint32_t)len,
			  .data = data};
	return (raft_msg){.type = RAFT_MSG_APP, .to = 2, .from = 1, .term = 1, .entries = e,
			  .n_entries = len ? 1 : 0, .commit = mark};
}

static void send_marked(struct test_peer *p, uint64_t mark, size_t len)
{
	raft_entry e;
	raft_msg m = marked(&e, mark, len);

	assert_int_equal(transport_send(p->t, &m), 0);
}

/* The bytes of send_marked's frame on the wire. */
static size_t marked_bytes(uint64_t mark, size_t len)
{
	raft_entry e;
	raft_msg m = marked(&e, mark, len);
	uint8_t *buf;
	size_t n;

	assert_int_equal(codec_msg_encode(&m, FRAME_HEADER_BYTES, &buf, &n), 0);
	free(buf);
	return FRAME_HEADER_BYTES + n;
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

/* Node 1's bytes queued for node 2 (not yet taken by the socket). */
static size_t queued(const struct test_peer *p)
{
	size_t bytes = 0;

	assert_int_equal(transport_queued(p->t, 2, &bytes), 0);
	return bytes;
}

/* Node 2's receive buffer, small: the socket fills after a few rounds. */
#define SMALL_RCVBUF 4096
/* Rounds sent at most before the socket must be full (each ~20 KiB, far
 * past any send buffer the kernel allows a socket). */
#define FILL_ROUNDS_MAX 8000

/* Node 2 reads nothing while node 1 sends rounds as the node does — two
 * small frames held, then a big one written with them in front — until
 * the socket takes no more: the round that fills it writes the held bytes
 * and the big frame in part (or none of them: the kernel may have taken
 * more than its buffer the round before) and queues the rest. Behind
 * that, everything queues: held frames are copied in front of a big one
 * into its queued write, a direct send refuses (-EAGAIN, bytes queued)
 * and leaves them held, and the uncork queues them. Node 2 then reads
 * every frame once, in the order sent. */
static void test_held_behind_full_socket(void **state)
{
	struct test_peer p = {0};
	raft_msg resp = {.type = RAFT_MSG_APP_RESP, .to = 2, .from = 1, .term = 1, .index = 7};
	uint64_t mark = 0;
	size_t round = 0;
	int rounds;

	(void)state;
	test_peer_connect(&p, &test_peer_quiet,
			  &(struct test_peer_opts){.rcvbuf = SMALL_RCVBUF,
						   .send_queue_bytes = 256u << 20});
	for (rounds = 0; rounds < FILL_ROUNDS_MAX && !queued(&p); rounds++) {
		round = marked_bytes(mark + 1, 0) + marked_bytes(mark + 2, 100) +
			marked_bytes(mark + 3, BIG_BYTES);
		transport_cork(p.t);
		send_marked(&p, ++mark, 0);
		send_marked(&p, ++mark, 100);
		send_marked(&p, ++mark, BIG_BYTES);
		transport_uncork(p.t);
	}
	assert_true(queued(&p) > 0);
	printf("socket full after %d rounds: the last wrote %zu of its %zu bytes, queued %zu\n",
	       rounds, round - queued(&p), round, queued(&p));
	/* The socket is full: whatever is written now queues. */
	transport_cork(p.t);
	send_marked(&p, ++mark, 0);
	send_marked(&p, ++mark, 0);
	send_marked(&p, ++mark, BIG_BYTES);
	send_marked(&p, ++mark, 100);
	resp.commit = ++mark;
	assert_int_equal(transport_send_direct(p.t, &resp), -EAGAIN);
	/* The node sends a refused acknowledgement again through its loop. */
	assert_int_equal(transport_send(p.t, &resp), 0);
	transport_uncork(p.t);
	for (uint64_t k = 1; k <= mark; k++)
		expect_mark(&p, k);
	/* Nothing twice: the next frame is the one sent next. */
	send_marked(&p, mark + 1, 0);
	expect_mark(&p, mark + 1);
	test_peer_close(&p);
}

/* Node 2 hangs up while node 1 holds frames for it: they are lost with the
 * connection (as its queued writes are; Raft sends again what matters),
 * the uncork writes nothing, and the next connection starts with nothing
 * held: the first frame node 2 reads after the hello is one sent on it. */
static void test_held_lost_with_connection(void **state)
{
	struct test_peer p = {0};
	raft_entry e;
	raft_msg m = marked(&e, 3, 0);
	uint64_t w0;

	(void)state;
	connect_pair(&p);
	transport_cork(p.t);
	send_marked(&p, 1, 0);
	send_marked(&p, 2, 100);
	w0 = transport_writes(p.t);
	test_peer_hang_up(&p);
	assert_int_equal(transport_send(p.t, &m), -ENOTCONN);
	transport_uncork(p.t);
	assert_int_equal(transport_writes(p.t), w0);
	test_peer_accept(&p, &(struct test_peer_opts){0});
	send_marked(&p, 4, 0);
	expect_mark(&p, 4);
	/* Corked on the new connection: held and written as ever. */
	transport_cork(p.t);
	send_marked(&p, 5, 0);
	send_marked(&p, 6, 0);
	transport_uncork(p.t);
	expect_mark(&p, 5);
	expect_mark(&p, 6);
	test_peer_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_write_at_uncork),
	    cmocka_unit_test(test_big_frame_takes_held),
	    cmocka_unit_test(test_direct_send_takes_held),
	    cmocka_unit_test(test_held_behind_full_socket),
	    cmocka_unit_test(test_held_lost_with_connection),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
