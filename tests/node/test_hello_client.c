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
#include "transport.h"

#define OWN_CLIENT 0x2222ull	/* node 2's, said in its hello */
#define OTHER_CLIENT 0x3333ull	/* node 3's, whose proposal node 2 forwards */
#define BIG (TRANSPORT_ELIDE_MIN_BYTES + 100)

struct leader {
	uv_loop_t loop;
	transport *t;
	node_config cfg;
	int lfd, fd; /* node 2's listening socket and its end of the connection */
	frame_reader fr;
	int props; /* proposals node 1's transport handed on */
};

static void on_raft(void *arg, raft_msg *m)
{
	struct leader *l = arg;

	if (m->type == RAFT_MSG_PROP)
		l->props++;
}

static void on_request(void *arg, transport_conn *c, const Transportpb__Request *r)
{
	(void)arg, (void)c, (void)r;
}

static void on_chunk(void *arg, uint64_t from, const Transportpb__SnapshotChunk *ch)
{
	(void)arg, (void)from, (void)ch;
}

/* Runs node 1's loop until node 2 holds a whole frame: its type and a
 * pointer into l->fr. */
static uint8_t next_frame(struct leader *l, const uint8_t **payload, size_t *len)
{
	long long deadline = test_now_ms() + 10000;
	uint8_t type, buf[65536];
	int rc;

	while ((rc = frame_reader_next(&l->fr, &type, payload, len)) == 0 &&
	       test_now_ms() < deadline) {
		struct pollfd p = {.fd = l->fd, .events = POLLIN};
		ssize_t n;

		uv_run(&l->loop, UV_RUN_NOWAIT);
		if (poll(&p, 1, 5) != 1)
			continue;
		n = recv(l->fd, buf, sizeof(buf), 0);
		assert_true(n > 0);
		assert_int_equal(frame_reader_feed(&l->fr, buf, (size_t)n), 0);
	}
	assert_int_equal(rc, 1);
	return type;
}

/* Node 2 writes frame type with payload msg (a Hello) or m (a raft message). */
static void peer_send(struct leader *l, uint8_t type, const ProtobufCMessage *msg,
		      const raft_msg *m)
{
	size_t n;
	uint8_t *buf;

	if (msg) {
		n = protobuf_c_message_get_packed_size(msg);
		buf = malloc(FRAME_HEADER_BYTES + n);
		assert_non_null(buf);
		protobuf_c_message_pack(msg, buf + FRAME_HEADER_BYTES);
	} else {
		assert_int_equal(codec_msg_encode(m, FRAME_HEADER_BYTES, &buf, &n), 0);
	}
	frame_header(buf, type, n);
	assert_int_equal(send(l->fd, buf, FRAME_HEADER_BYTES + n, 0),
			 (ssize_t)(FRAME_HEADER_BYTES + n));
	free(buf);
}

/* Node 1 (a transport) connected to node 2 (this test), whose hello says
 * client_id (0: none, as an older node's). */
static void connect_peer(struct leader *l, uint64_t client_id)
{
	transport_callbacks cb = {l, on_raft, on_request, on_chunk};
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	Transportpb__Hello h = TRANSPORTPB__HELLO__INIT;
	const uint8_t *payload;
	uint16_t port[2];
	long long deadline;
	int one = 1;
	size_t len;

	assert_int_equal(test_distinct_ports(port, 2), 0);
	l->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(l->lfd >= 0);
	setsockopt(l->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_port = htons(port[1]);
	assert_int_equal(bind(l->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l->lfd, 1), 0);
	assert_int_equal(uv_loop_init(&l->loop), 0);
	test_member_config(&l->cfg, "hello", "/nonexistent", 0, 2, port);
	assert_int_equal(transport_new(&l->loop, &l->cfg, 0x1111, &cb, &l->t), 0);
	assert_int_equal(transport_start(l->t), 0);
	deadline = test_now_ms() + 10000;
	l->fd = -1;
	while (l->fd < 0 && test_now_ms() < deadline) {
		struct pollfd p = {.fd = l->lfd, .events = POLLIN};

		uv_run(&l->loop, UV_RUN_NOWAIT);
		if (poll(&p, 1, 5) == 1)
			l->fd = accept(l->lfd, NULL, NULL);
	}
	assert_true(l->fd >= 0);
	frame_reader_init(&l->fr, 64u << 20);
	assert_int_equal(next_frame(l, &payload, &len), FRAME_HELLO);
	h.cluster = "hello";
	h.node_id = 2;
	h.version = TRANSPORT_VERSION;
	h.error = "";
	h.features = TRANSPORT_FEATURE_ELIDE;
	h.client_id = client_id;
	peer_send(l, FRAME_HELLO, &h.base, NULL);
	deadline = test_now_ms() + 10000;
	while (!transport_peer_connected(l->t, 2) && test_now_ms() < deadline) {
		uv_run(&l->loop, UV_RUN_NOWAIT);
		test_nap();
	}
	assert_true(transport_peer_connected(l->t, 2));
}

static void disconnect_peer(struct leader *l)
{
	frame_reader_free(&l->fr);
	close(l->fd);
	close(l->lfd);
	transport_close(l->t);
	while (uv_run(&l->loop, UV_RUN_NOWAIT))
		;
	transport_free(l->t);
	assert_int_equal(uv_loop_close(&l->loop), 0);
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
	raft_entry e[2], pe;
	const uint8_t *payload;
	long long deadline;
	raft_msg m, r;
	size_t len;

	connect_peer(&l, hello_client);
	big_entry(&pe, dp, 0, OTHER_CLIENT);
	m = (raft_msg){.type = RAFT_MSG_PROP, .to = 1, .from = 2, .term = 1,
		       .entries = &pe, .n_entries = 1};
	peer_send(&l, FRAME_RAFT, NULL, &m);
	deadline = test_now_ms() + 10000;
	while (!l.props && test_now_ms() < deadline) {
		uv_run(&l.loop, UV_RUN_NOWAIT);
		test_nap();
	}
	assert_int_equal(l.props, 1);

	big_entry(&e[0], d3, 1, OTHER_CLIENT);
	big_entry(&e[1], d2, 2, OWN_CLIENT);
	m = (raft_msg){.type = RAFT_MSG_APP, .to = 2, .from = 1, .term = 1,
		       .entries = e, .n_entries = 2};
	assert_int_equal(transport_send(l.t, &m), 0);
	assert_int_equal(next_frame(&l, &payload, &len), FRAME_RAFT);
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
	disconnect_peer(&l);
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
