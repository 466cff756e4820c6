/* test_lack_putback.c — a follower's "lacked" note (transport_lacks: the
 * entry whose elided data it could not fill in) goes to the leader in the
 * next append response it sends; when that response is taken for a send
 * that then does not happen, the note is put back, so that the response
 * sent again carries it (consensus/transport.c, encode_for's callers;
 * commit 6c1d430). Lost, the leader went on eliding that entry to a
 * follower that cannot fill it in. A real transport (node 1, the follower
 * here) and a plain TCP peer of this test (node 2, the leader) that reads
 * nothing until told, with a small receive buffer:
 *  - the loop's send (transport_send) refused for a full send queue
 *    (-ENOBUFS);
 *  - the persist thread's direct send (transport_send_direct) refused by
 *    the kernel (EAGAIN: the socket is full; the lane was free, so the
 *    response was encoded and the note taken).
 * Either way, once node 2 reads again, the response sent next names the
 * entry. Without the put-back it names none (checked: both fail so). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "codec.h"
#include "frame.h"
#include "node_testlib.h"
#include "peer_testlib.h"
#include "transport.h"

/* Node 1's send queue: small, so that a queue fills within a few hundred
 * responses once the socket is full. */
#define QUEUE_BYTES 4096
#define LACKED 7 /* the entry node 1 lacked */

/* Node 1 connected to node 2, whose small receive buffer node 1's sends
 * fill soon. */
static void connect_peer(struct test_peer *l)
{
	test_peer_connect(l, &test_peer_quiet,
			  &(struct test_peer_opts){.client_id = 0x2222,
						   .rcvbuf = 4096,
						   .send_queue_bytes = QUEUE_BYTES});
}

/* Node 1's end of its connection to node 2 (this process's socket whose
 * address is node 2's peer address) gets a small send buffer: with node
 * 2's small receive buffer the kernel refuses node 1's writes after a few
 * hundred responses, well within the TCP_USER_TIMEOUT (2 s and more,
 * transport.c) after which a connection that stopped moving is dropped. */
static void small_send_buffer(struct test_peer *l)
{
	struct sockaddr_in peer, a;
	socklen_t n = sizeof(peer);
	int small = 4096;

	assert_int_equal(getpeername(l->fd, (struct sockaddr *)&peer, &n), 0);
	for (int fd = 0; fd < 1024; fd++) {
		n = sizeof(a);
		if (fd == l->fd || fd == l->lfd || getsockname(fd, (struct sockaddr *)&a, &n) != 0 ||
		    a.sin_family != AF_INET || a.sin_port != peer.sin_port)
			continue;
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
		return;
	}
	fail_msg("node 1's socket to node 2 not found");
}

/* An append response of node 1 to node 2. */
static raft_msg resp(void)
{
	return (raft_msg){.type = RAFT_MSG_APP_RESP, .to = 2, .from = 1, .term = 1, .index = 5};
}

/* Node 2 reads sent frames (node 1's loop run meanwhile): all append
 * responses; every one but the last names no lacked entry, the last names
 * LACKED. */
static void expect_last_names_lacked(struct test_peer *l, long sent)
{
	const uint8_t *payload;
	size_t len;
	raft_msg r;

	for (long i = 0; i < sent; i++) {
		assert_int_equal(test_peer_next_frame(l, &payload, &len), FRAME_RAFT);
		assert_int_equal(codec_msg_decode(payload, len, &r), 0);
		assert_int_equal(r.type, RAFT_MSG_APP_RESP);
		if (i < sent - 1)
			assert_int_equal(r.full_from, 0);
		else
			assert_int_equal(r.full_from, LACKED);
		raft_msg_free_contents(&r);
	}
}

/* The loop's send: responses (naming nothing) until the send queue is
 * full; then the note, and a response refused (-ENOBUFS); then, the queue
 * drained by node 2's reads, the response again. */
static void test_loop_send_refused(void **state)
{
	struct test_peer l = {0};
	raft_msg m = resp();
	long sent = 0;
	size_t queued;
	int rc;

	(void)state;
	connect_peer(&l);
	small_send_buffer(&l);
	while ((rc = transport_send(l.t, &m)) == 0)
		sent++;
	assert_int_equal(rc, -ENOBUFS);
	transport_lacks(l.t, 2, LACKED);
	assert_int_equal(transport_send(l.t, &m), -ENOBUFS);
	/* Node 2 reads what was sent until node 1's queue is empty. */
	{
		const uint8_t *payload;
		size_t len;
		raft_msg r;
		long got = 0;

		for (;;) {
			assert_int_equal(transport_queued(l.t, 2, &queued), 0);
			if (!queued && got == sent)
				break;
			assert_int_equal(test_peer_next_frame(&l, &payload, &len), FRAME_RAFT);
			assert_int_equal(codec_msg_decode(payload, len, &r), 0);
			assert_int_equal(r.full_from, 0);
			raft_msg_free_contents(&r);
			got++;
		}
	}
	assert_int_equal(transport_send(l.t, &m), 0);
	expect_last_names_lacked(&l, 1);
	test_peer_close(&l);
}

/* Set when the direct send's socket tore a frame: ctest then says Skipped
 * (77), not Passed, since that case was not tested (cmocka's skip() alone
 * counts as a pass). */
static bool torn;

/* The direct send: responses (naming nothing) until the kernel takes no
 * more; then the note, and a response the kernel refuses after it was
 * encoded; then, node 2 reading, the response again. A socket that took
 * part of a frame (torn) ends the connection: nothing to test then. */
static void test_direct_send_refused(void **state)
{
	struct test_peer l = {0};
	raft_msg m = resp();
	long sent = 0;
	int rc;

	(void)state;
	connect_peer(&l);
	small_send_buffer(&l);
	while ((rc = transport_send_direct(l.t, &m)) == 0)
		sent++;
	if (rc == -EPIPE) {
		test_peer_close(&l);
		torn = true;
		skip(); /* torn: the kernel took part of a frame */
	}
	assert_int_equal(rc, -EAGAIN);
	transport_lacks(l.t, 2, LACKED);
	rc = transport_send_direct(l.t, &m);
	if (rc == -EPIPE) {
		test_peer_close(&l);
		torn = true;
		skip();
	}
	assert_int_equal(rc, -EAGAIN);
	/* Node 2 reads all that was sent; then the kernel takes a frame. */
	{
		const uint8_t *payload;
		size_t len;
		raft_msg r;

		for (long i = 0; i < sent; i++) {
			assert_int_equal(test_peer_next_frame(&l, &payload, &len), FRAME_RAFT);
			assert_int_equal(codec_msg_decode(payload, len, &r), 0);
			assert_int_equal(r.full_from, 0);
			raft_msg_free_contents(&r);
		}
	}
	/* The kernel takes it once node 1's socket has seen node 2's window
	 * update, which a loaded machine may deliver late: until then it is
	 * refused again (-EAGAIN), which only puts the note back again. */
	long long deadline = test_now_ms() + 10000;
	while ((rc = transport_send_direct(l.t, &m)) == -EAGAIN && test_now_ms() < deadline)
		uv_run(&l.loop, UV_RUN_NOWAIT);
	assert_int_equal(rc, 0);
	expect_last_names_lacked(&l, 1);
	test_peer_close(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_loop_send_refused),
	    cmocka_unit_test(test_direct_send_refused),
	};

	int failed = cmocka_run_group_tests(tests, NULL, NULL);

	return failed ? failed : torn ? 77 : 0;
}
