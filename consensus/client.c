/* client.c — blocking request/response client of the node transport. */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "frame.h"
#include "transport.h"

struct client {
	int fd;
	uint64_t next_id;
	frame_reader fr;
	char addr[CONFIG_HOST_MAX + 8];
};

static long long ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, long long deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	long long left = deadline - ms_now();
	int rc;

	if (left < 0)
		left = 0;
	do
		rc = poll(&p, 1, (int)left);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	return rc == 0 ? -ETIMEDOUT : 0;
}

static int send_all(client *c, const uint8_t *buf, size_t len, long long deadline)
{
	while (len > 0) {
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			int rc = wait_fd(c->fd, POLLOUT, deadline);

			if (rc < 0)
				return rc;
			continue;
		}
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_pb(client *c, uint8_t type, const ProtobufCMessage *m, long long deadline)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(FRAME_HEADER_BYTES + n);
	int rc;

	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(m, buf + FRAME_HEADER_BYTES);
	frame_header(buf, type, n);
	rc = send_all(c, buf, FRAME_HEADER_BYTES + n, deadline);
	free(buf);
	return rc;
}

/* Reads until a whole frame is there. The payload points into the reader. */
static int recv_frame(client *c, uint8_t *type, const uint8_t **payload, size_t *len,
		      long long deadline)
{
	for (;;) {
		uint8_t buf[65536];
		ssize_t n;
		int rc = frame_reader_next(&c->fr, type, payload, len);

		if (rc != 0)
			return rc < 0 ? rc : 0;
		rc = wait_fd(c->fd, POLLIN, deadline);
		if (rc < 0)
			return rc;
		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			return -errno;
		rc = frame_reader_feed(&c->fr, buf, (size_t)n);
		if (rc < 0)
			return rc;
	}
}

int client_connect(const char *addr, unsigned timeout_ms, client **out, char *err, size_t errlen)
{
	struct addrinfo hints = {0}, *res = NULL;
	long long deadline = ms_now() + timeout_ms;
	Transportpb__Hello h = TRANSPORTPB__HELLO__INIT, *reply;
	char host[CONFIG_HOST_MAX], ps[8];
	const uint8_t *payload;
	uint16_t port;
	uint8_t type;
	size_t len;
	client *c;
	int rc, one = 1, soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (config_parse_addr(addr, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "bad address '%s' (want host:port)", addr);
		return -EINVAL;
	}
	snprintf(ps, sizeof(ps), "%u", port);
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, ps, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", addr, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		freeaddrinfo(res);
		return -ENOMEM;
	}
	c->fd = -1;
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
	frame_reader_init(&c->fr, 1u << 30);
	c->fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: socket: %s", addr, strerror(errno));
		goto fail;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, res->ai_addr, res->ai_addrlen) < 0 && errno != EINPROGRESS) {
		rc = -errno;
		snprintf(err, errlen, "%s: connect: %s", addr, strerror(errno));
		goto fail;
	}
	rc = wait_fd(c->fd, POLLOUT, deadline);
	if (rc == 0 && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr)
		rc = -soerr;
	if (rc < 0) {
		snprintf(err, errlen, "%s: connect: %s", addr, strerror(-rc));
		goto fail;
	}
	h.cluster = "";
	h.node_id = 0;
	h.version = TRANSPORT_VERSION;
	h.error = "";
	rc = send_pb(c, FRAME_HELLO, &h.base, deadline);
	if (rc == 0)
		rc = recv_frame(c, &type, &payload, &len, deadline);
	if (rc < 0) {
		snprintf(err, errlen, "%s: handshake: %s", addr, strerror(-rc));
		goto fail;
	}
	reply = type == FRAME_HELLO ? transportpb__hello__unpack(NULL, len, payload) : NULL;
	if (!reply) {
		snprintf(err, errlen, "%s: handshake: malformed answer", addr);
		rc = -EPROTO;
		goto fail;
	}
	if (reply->error && reply->error[0]) {
		snprintf(err, errlen, "%s: refused: %s", addr, reply->error);
		rc = -ECONNREFUSED;
		transportpb__hello__free_unpacked(reply, NULL);
		goto fail;
	}
	transportpb__hello__free_unpacked(reply, NULL);
	freeaddrinfo(res);
	*out = c;
	return 0;
fail:
	freeaddrinfo(res);
	client_close(c);
	return rc;
}

int client_call(client *c, Transportpb__Request *req, Transportpb__Response **resp,
		unsigned timeout_ms, char *err, size_t errlen)
{
	long long deadline = ms_now() + timeout_ms;
	const uint8_t *payload;
	uint8_t type;
	size_t len;
	int rc;

	req->id = ++c->next_id;
	rc = send_pb(c, FRAME_REQUEST, &req->base, deadline);
	while (rc == 0) {
		Transportpb__Response *r;

		rc = recv_frame(c, &type, &payload, &len, deadline);
		if (rc < 0)
			break;
		r = type == FRAME_RESPONSE ? transportpb__response__unpack(NULL, len, payload)
					   : NULL;
		if (!r) {
			snprintf(err, errlen, "%s: malformed response", c->addr);
			return -EPROTO;
		}
		if (r->id == req->id) {
			*resp = r;
			return 0;
		}
		/* A late answer to an earlier, timed-out request. */
		transportpb__response__free_unpacked(r, NULL);
	}
	snprintf(err, errlen, "%s: %s", c->addr,
		 rc == -ETIMEDOUT ? "no answer in time" : strerror(-rc));
	return rc;
}

void client_abort(client *c)
{
	if (c && c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
}

void client_close(client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	frame_reader_free(&c->fr);
	free(c);
}
