/* peer_testlib.c — a real transport and a plain TCP peer (peer_testlib.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "codec.h"
#include "node_testlib.h"
#include "peer_testlib.h"

void test_peer_no_raft(void *arg, raft_msg *m)
{
	(void)arg, (void)m;
}

void test_peer_no_request(void *arg, transport_conn *c, const Transportpb__Request *r)
{
	(void)arg, (void)c, (void)r;
}

void test_peer_no_chunk(void *arg, uint64_t from, const Transportpb__SnapshotChunk *ch)
{
	(void)arg, (void)from, (void)ch;
}

const transport_callbacks test_peer_quiet = {NULL, test_peer_no_raft, test_peer_no_request,
					     test_peer_no_chunk};

void test_peer_connect(struct test_peer *p, const transport_callbacks *cb,
		       const struct test_peer_opts *o)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	uint16_t port[2];
	int one = 1;

	assert_int_equal(test_distinct_ports(port, 2), 0);
	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(p->lfd >= 0);
	setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Inherited by the accepted socket. */
	if (o->rcvbuf)
		setsockopt(p->lfd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof(o->rcvbuf));
	a.sin_port = htons(port[1]);
	assert_int_equal(bind(p->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(p->lfd, 1), 0);
	assert_int_equal(uv_loop_init(&p->loop), 0);
	test_member_config(&p->cfg, "hello", "/nonexistent", 0, 2, port);
	if (o->send_queue_bytes)
		p->cfg.send_queue_bytes = o->send_queue_bytes;
	assert_int_equal(transport_new(&p->loop, &p->cfg, 0x1111, cb, &p->t), 0);
	assert_int_equal(transport_start(p->t), 0);
	p->fd = -1;
	test_peer_accept(p, o);
}

void test_peer_accept(struct test_peer *p, const struct test_peer_opts *o)
{
	Transportpb__Hello h = TRANSPORTPB__HELLO__INIT;
	long long deadline = test_now_ms() + 10000;
	const uint8_t *payload;
	size_t len;

	while (p->fd < 0 && test_now_ms() < deadline) {
		struct pollfd pf = {.fd = p->lfd, .events = POLLIN};

		uv_run(&p->loop, UV_RUN_NOWAIT);
		if (poll(&pf, 1, 5) == 1)
			p->fd = accept(p->lfd, NULL, NULL);
	}
	assert_true(p->fd >= 0);
	frame_reader_init(&p->fr, 64u << 20);
	assert_int_equal(test_peer_next_frame(p, &payload, &len), FRAME_HELLO);
	h.cluster = "hello";
	h.node_id = 2;
	h.version = TRANSPORT_VERSION;
	h.error = "";
	h.features = TRANSPORT_FEATURE_ELIDE;
	h.client_id = o->client_id;
	test_peer_send(p, FRAME_HELLO, &h.base, NULL);
	deadline = test_now_ms() + 10000;
	while (!transport_peer_connected(p->t, 2) && test_now_ms() < deadline) {
		uv_run(&p->loop, UV_RUN_NOWAIT);
		test_nap();
	}
	assert_true(transport_peer_connected(p->t, 2));
}

void test_peer_hang_up(struct test_peer *p)
{
	long long deadline = test_now_ms() + 10000;

	close(p->fd);
	p->fd = -1;
	frame_reader_free(&p->fr);
	while (transport_peer_connected(p->t, 2) && test_now_ms() < deadline) {
		uv_run(&p->loop, UV_RUN_NOWAIT);
		test_nap();
	}
	assert_false(transport_peer_connected(p->t, 2));
}

uint8_t test_peer_next_frame(struct test_peer *p, const uint8_t **payload, size_t *len)
{
	long long deadline = test_now_ms() + 10000;
	uint8_t type, buf[65536];
	int rc;

	while ((rc = frame_reader_next(&p->fr, &type, payload, len)) == 0 &&
	       test_now_ms() < deadline) {
		struct pollfd pf = {.fd = p->fd, .events = POLLIN};
		ssize_t n;

		uv_run(&p->loop, UV_RUN_NOWAIT);
		if (poll(&pf, 1, 5) != 1)
			continue;
		n = recv(p->fd, buf, sizeof(buf), 0);
		assert_true(n > 0);
		assert_int_equal(frame_reader_feed(&p->fr, buf, (size_t)n), 0);
	}
	assert_int_equal(rc, 1);
	return type;
}

void test_peer_send(struct test_peer *p, uint8_t type, const ProtobufCMessage *msg,
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
	assert_int_equal(send(p->fd, buf, FRAME_HEADER_BYTES + n, 0),
			 (ssize_t)(FRAME_HEADER_BYTES + n));
	free(buf);
}

void test_peer_close(struct test_peer *p)
{
	if (p->fd >= 0) {
		frame_reader_free(&p->fr);
		close(p->fd);
	}
	close(p->lfd);
	transport_close(p->t);
	while (uv_run(&p->loop, UV_RUN_NOWAIT))
		;
	transport_free(p->t);
	assert_int_equal(uv_loop_close(&p->loop), 0);
}
