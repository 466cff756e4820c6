/* net_fuzz.c — bad input to a node's port: random bytes, cut frames, absurd
 * lengths, well-formed requests and raft messages with absurd fields. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "raft.pb-c.h"
#include "transport.h" /* TRANSPORT_VERSION only: a copy would go stale */
#include "transport.pb-c.h"

/* consensus/frame.h restated: this program speaks the wire format from
 * outside, as an attacker would. */
enum { F_HELLO = 1, F_RAFT = 2, F_REQUEST = 3, F_RESPONSE = 4, F_CHUNK = 5 };
#define WAIT_MS 20000 /* longest a request may wait for its answer (a propose: 5 s) */

struct nf {
	uint64_t rng;
	struct sockaddr_in addr;
	const char *cluster;
	uint64_t peer;	 /* a member id to pose as (its node stopped), or 0 */
	uint64_t target; /* the attacked node's id */
	uint64_t term;	 /* the highest term a raft message may carry: below the cluster's */
	long answered, closed_by_node, refused, requests, raft_msgs;
};

static uint64_t rnd(struct nf *z)
{
	uint64_t x = z->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	z->rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t below(struct nf *z, uint64_t n)
{
	return n ? rnd(z) % n : 0;
}

/* A value a field should never hold, or sometimes an ordinary one. */
static uint64_t absurd(struct nf *z)
{
	static const uint64_t v[] = {
	    0,	       1, 2, UINT32_MAX, (uint64_t)UINT32_MAX + 1, UINT64_MAX / 2, UINT64_MAX - 1,
	    UINT64_MAX};
	return below(z, 4) ? v[below(z, sizeof(v) / sizeof(v[0]))] : rnd(z);
}

static void fill(struct nf *z, uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd(z);
}

static int dial(struct nf *z)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0 || connect(fd, (struct sockaddr *)&z->addr, sizeof(z->addr)) < 0) {
		fprintf(stderr, "net_fuzz: connect to %s:%u: %s\n", inet_ntoa(z->addr.sin_addr),
			ntohs(z->addr.sin_port), strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Sends all of buf; false if the node closed the connection meanwhile. */
static bool send_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static bool send_frame(int fd, uint8_t type, const void *payload, size_t len)
{
	uint8_t hdr[5];
	uint32_t l = (uint32_t)len + 1;

	hdr[0] = (uint8_t)(l >> 24);
	hdr[1] = (uint8_t)(l >> 16);
	hdr[2] = (uint8_t)(l >> 8);
	hdr[3] = (uint8_t)l;
	hdr[4] = type;
	return send_all(fd, hdr, 5) && send_all(fd, payload, len);
}

/* Reads exactly n bytes within ms: 1, 0 on end of stream or reset, -1 on timeout. */
static int read_n(int fd, uint8_t *buf, size_t n, int ms)
{
	while (n) {
		struct pollfd p = {fd, POLLIN, 0};
		int r = poll(&p, 1, ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return -1;
		ssize_t got = recv(fd, buf, n, 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return 0;
		buf += got;
		n -= (size_t)got;
	}
	return 1;
}

/* The next frame from the node (malloc'd payload): 1, 0 if it closed, -1 on timeout. */
static int read_frame(int fd, uint8_t *type, uint8_t **payload, size_t *len, int ms)
{
	uint8_t hdr[5];
	int r = read_n(fd, hdr, 5, ms);

	if (r <= 0)
		return r;
	uint32_t l =
	    (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (l == 0 || l > (64u << 20)) {
		fprintf(stderr, "net_fuzz: the node sent a frame of length %u\n", l);
		return 0;
	}
	*type = hdr[4];
	*len = l - 1;
	*payload = malloc(*len + 1);
	if (!*payload)
		return 0;
	r = read_n(fd, *payload, *len, ms);
	if (r <= 0)
		free(*payload);
	return r;
}

/* Waits until the node ends the connection (1) or ms pass (0). */
static int closed_within(int fd, int ms)
{
	uint8_t buf[4096];
	int r;

	while ((r = read_n(fd, buf, 1, ms)) == 1)
		;
	return r == 0;
}

/* Hello as `id` (0: a client); 1 if the node answered with its own Hello
 * and no error, 0 if it refused, -1 if it said nothing in time. */
static int hello(struct nf *z, int fd, uint64_t id)
{
	Transportpb__Hello h = TRANSPORTPB__HELLO__INIT;
	uint8_t buf[256], type, *ans;
	size_t len;
	int r;

	h.cluster = (char *)z->cluster;
	h.node_id = id;
	h.version = TRANSPORT_VERSION;
	len = transportpb__hello__pack(&h, buf);
	if (!send_frame(fd, F_HELLO, buf, len))
		return 0;
	r = read_frame(fd, &type, &ans, &len, WAIT_MS);
	if (r <= 0)
		return r;
	Transportpb__Hello *a = type == F_HELLO ? transportpb__hello__unpack(NULL, len, ans) : NULL;
	free(ans);
	r = a && !(a->error && a->error[0]);
	if (a && !r)
		fprintf(stderr, "net_fuzz: hello as %llu refused: %s\n", (unsigned long long)id,
			a->error);
	if (a)
		transportpb__hello__free_unpacked(a, NULL);
	return r;
}

/* Bytes that are no frame at all, then the end of the stream. */
static int attack_garbage(struct nf *z)
{
	uint8_t buf[2048];
	size_t n = 1 + below(z, sizeof(buf));
	int fd = dial(z);

	if (fd < 0)
		return -1;
	fill(z, buf, n);
	if (below(z, 2))
		buf[0] = buf[1] = 0; /* a plausible length: the frame is then cut short */
	send_all(fd, buf, n);
	shutdown(fd, SHUT_WR);
	z->closed_by_node += closed_within(fd, WAIT_MS);
	close(fd);
	return 0;
}

/* A frame header whose length is 0, past the limit, or larger than what
 * follows (a frame cut short by the end of the stream), in any state. */
static int attack_lengths(struct nf *z)
{
	static const uint32_t lens[] = {0, 1, 2, 1u << 20, (64u << 20) + 1, UINT32_MAX};
	uint8_t hdr[5], tail[512];
	uint32_t l = lens[below(z, sizeof(lens) / sizeof(lens[0]))];
	int fd = dial(z);

	if (fd < 0)
		return -1;
	if (below(z, 2) && hello(z, fd, 0) != 1) {
		close(fd);
		return 0;
	}
	hdr[0] = (uint8_t)(l >> 24);
	hdr[1] = (uint8_t)(l >> 16);
	hdr[2] = (uint8_t)(l >> 8);
	hdr[3] = (uint8_t)l;
	hdr[4] = (uint8_t)(1 + below(z, 6));
	fill(z, tail, sizeof(tail));
	send_all(fd, hdr, 4 + below(z, 2));
	send_all(fd, tail, below(z, sizeof(tail)));
	shutdown(fd, SHUT_WR);
	z->closed_by_node += closed_within(fd, WAIT_MS);
	close(fd);
	return 0;
}

/* One request with absurd fields; the node must answer it (or close). */
static void fill_request(struct nf *z, Transportpb__Request *rq, void *op, uint8_t *data,
			 size_t dlen)
{
	switch (below(z, 5)) {
	case 0: {
		Transportpb__StatusRequest *s = op;
		transportpb__status_request__init(s);
		rq->op_case = TRANSPORTPB__REQUEST__OP_STATUS;
		rq->status = s;
		break;
	}
	case 1: {
		Transportpb__QueryRequest *q = op;
		transportpb__query_request__init(q);
		q->data.data = data;
		q->data.len = dlen;
		q->linearizable = below(z, 2);
		rq->op_case = TRANSPORTPB__REQUEST__OP_QUERY;
		rq->query = q;
		break;
	}
	case 2: {
		/* A command for the state machine that is no command: its
		 * result is an error, the same on every node. */
		Transportpb__ProposeRequest *p = op;
		transportpb__propose_request__init(p);
		p->data.data = data;
		p->data.len = dlen;
		p->timeout_ms = below(z, 2) ? 0 : (uint32_t)(1 + below(z, 3000));
		rq->op_case = TRANSPORTPB__REQUEST__OP_PROPOSE;
		rq->propose = p;
		break;
	}
	case 3: {
		/* Membership requests that cannot succeed: an unknown
		 * operation, node 0, a node that is no member, an address
		 * that is none (never a plausible new member). */
		static const uint64_t ids[] = {0, 1000000, UINT64_MAX};
		static const char *addrs[] = {"", ":", "no-port", "256.1.1.1:99999", "[::1"};
		Transportpb__MemberRequest *m = op;
		transportpb__member_request__init(m);
		m->op = (Transportpb__MemberRequest__Op)(below(z, 2) ? 4 + below(z, 100)
								     : 2 + below(z, 2));
		m->node_id = ids[below(z, 3)];
		m->addr = (char *)addrs[below(z, 5)];
		m->timeout_ms = (uint32_t)below(z, 200);
		m->forwarded = below(z, 2);
		rq->op_case = TRANSPORTPB__REQUEST__OP_MEMBER;
		rq->member = m;
		break;
	}
	default:
		/* No operation at all. */
		rq->op_case = TRANSPORTPB__REQUEST__OP__NOT_SET;
		break;
	}
}

/* A client that sends well-formed requests with absurd fields, each
 * answered (matched by id) before the next; now and then a frame that is
 * not a request, which ends the connection. */
static int attack_client(struct nf *z)
{
	int fd = dial(z), r;
	uint8_t data[1024], *out = NULL, type, *ans;
	size_t len;

	if (fd < 0)
		return -1;
	if ((r = hello(z, fd, 0)) != 1) {
		close(fd);
		if (r < 0)
			fprintf(stderr, "net_fuzz: the node did not answer a client's hello\n");
		return r < 0 ? -1 : 0;
	}
	for (int k = 0, n = 1 + (int)below(z, 8); k < n; k++) {
		Transportpb__Request rq = TRANSPORTPB__REQUEST__INIT;
		union {
			Transportpb__StatusRequest s;
			Transportpb__QueryRequest q;
			Transportpb__ProposeRequest p;
			Transportpb__MemberRequest m;
		} op;
		size_t dlen = below(z, sizeof(data));

		fill(z, data, dlen);
		rq.id = below(z, 4) ? (uint64_t)k + 1 : absurd(z);
		fill_request(z, &rq, &op, data, dlen);
		if (below(z, 12) == 0) {
			/* A raft message or snapshot chunk from a client. */
			if (send_frame(fd, below(z, 2) ? F_RAFT : F_CHUNK, data, dlen))
				z->closed_by_node += closed_within(fd, WAIT_MS);
			break;
		}
		len = transportpb__request__get_packed_size(&rq);
		out = realloc(out, len ? len : 1);
		if (!out)
			break;
		transportpb__request__pack(&rq, out);
		z->requests++;
		if (!send_frame(fd, F_REQUEST, out, len))
			break;
		r = read_frame(fd, &type, &ans, &len, WAIT_MS);
		if (r < 0) {
			fprintf(stderr,
				"net_fuzz: request %llu (op %d) not answered within %d ms\n",
				(unsigned long long)rq.id, (int)rq.op_case, WAIT_MS);
			free(out);
			close(fd);
			return -1;
		}
		if (r == 0) {
			z->closed_by_node++;
			break;
		}
		Transportpb__Response *resp =
		    type == F_RESPONSE ? transportpb__response__unpack(NULL, len, ans) : NULL;
		free(ans);
		if (!resp || resp->id != rq.id) {
			fprintf(stderr, "net_fuzz: request %llu answered with %s\n",
				(unsigned long long)rq.id, resp ? "another id" : "no response");
			if (resp)
				transportpb__response__free_unpacked(resp, NULL);
			free(out);
			close(fd);
			return -1;
		}
		z->answered++;
		transportpb__response__free_unpacked(resp, NULL);
	}
	free(out);
	close(fd);
	return 0;
}

/* A hello frame announced as 1 MiB (a hello is a few dozen bytes), partly
 * sent, the connection left open: the node must close it at once, not
 * make room for the frame and wait for it until its handshake timeout. */
static int attack_big_hello(struct nf *z)
{
	uint8_t buf[5 + 100] = {0x00, 0x10, 0x00, 0x00, F_HELLO};
	int fd = dial(z), closed;

	if (fd < 0)
		return -1;
	fill(z, buf + 5, sizeof(buf) - 5);
	send_all(fd, buf, sizeof(buf));
	closed = closed_within(fd, 2000);
	close(fd);
	if (!closed) {
		fprintf(stderr, "net_fuzz: a 1 MiB hello frame was still awaited after 2 s\n");
		return -1;
	}
	z->closed_by_node++;
	return 0;
}

/* One request of each kind with every field empty (protobuf-c hands an
 * empty bytes field over as NULL, 0), each to be answered. */
static int attack_empty(struct nf *z)
{
	Transportpb__StatusRequest st = TRANSPORTPB__STATUS_REQUEST__INIT;
	Transportpb__QueryRequest q = TRANSPORTPB__QUERY_REQUEST__INIT;
	Transportpb__ProposeRequest p = TRANSPORTPB__PROPOSE_REQUEST__INIT;
	Transportpb__MemberRequest m = TRANSPORTPB__MEMBER_REQUEST__INIT;
	Transportpb__SnapshotRequest sn = TRANSPORTPB__SNAPSHOT_REQUEST__INIT;
	uint8_t out[64], type, *ans;
	size_t len;
	int fd = dial(z);

	if (fd < 0)
		return -1;
	if (hello(z, fd, 0) != 1) {
		close(fd);
		return -1;
	}
	for (int k = 0; k < 6; k++) {
		Transportpb__Request rq = TRANSPORTPB__REQUEST__INIT;

		rq.id = (uint64_t)k;
		rq.op_case = k == 0   ? TRANSPORTPB__REQUEST__OP_STATUS
			     : k == 1 ? TRANSPORTPB__REQUEST__OP_QUERY
			     : k == 2 ? TRANSPORTPB__REQUEST__OP_PROPOSE
			     : k == 3 ? TRANSPORTPB__REQUEST__OP_MEMBER
			     : k == 4 ? TRANSPORTPB__REQUEST__OP_SNAPSHOT
				      : TRANSPORTPB__REQUEST__OP__NOT_SET;
		rq.status = &st;
		rq.query = &q;
		rq.propose = &p;
		rq.member = &m;
		rq.snapshot = &sn;
		len = transportpb__request__pack(&rq, out);
		z->requests++;
		if (!send_frame(fd, F_REQUEST, out, len) ||
		    read_frame(fd, &type, &ans, &len, WAIT_MS) != 1) {
			fprintf(stderr, "net_fuzz: empty request %d not answered\n", k);
			close(fd);
			return -1;
		}
		free(ans);
		z->answered++;
	}
	close(fd);
	return 0;
}

/* Raft messages from a member (whose node is stopped) with fields no
 * correct node sends: out-of-range types (local ones too), stale terms,
 * indexes and commits past anything, entries of unknown types, holes in
 * entry indexes, elided entries (raftpb.Entry.elided_len, absurd lengths
 * too) the node never proposed, snapshots with absurd metadata; and snapshot chunks with
 * offsets and lengths past their image. Every term is below the cluster's
 * (-T; never 0, which the core takes for a local message), so nothing here
 * may move a node: it may answer, drop or close, but never crash, change
 * its log or stop committing. (A member id is all a peer's hello proves:
 * at the current term these would be a leader's messages — no defence
 * against that without peer authentication.) */
static int attack_peer(struct nf *z)
{
	int fd = dial(z), r;
	uint8_t data[512], *out = NULL;
	size_t len;

	if (fd < 0)
		return -1;
	if ((r = hello(z, fd, z->peer)) != 1) {
		close(fd);
		z->refused += r == 0;
		return r < 0 ? -1 : 0;
	}
	for (int k = 0, n = 1 + (int)below(z, 16); k < n; k++) {
		Raftpb__Message m = RAFTPB__MESSAGE__INIT;
		Raftpb__Entry ents[4], *pents[4];
		Raftpb__Snapshot snap = RAFTPB__SNAPSHOT__INIT;
		Raftpb__SnapshotMetadata meta = RAFTPB__SNAPSHOT_METADATA__INIT;
		Raftpb__ConfState cs = RAFTPB__CONF_STATE__INIT;
		uint64_t voters[2] = {absurd(z), absurd(z)};
		size_t dlen = below(z, sizeof(data));

		fill(z, data, dlen);
		if (below(z, 5) == 0) {
			Transportpb__SnapshotChunk ch = TRANSPORTPB__SNAPSHOT_CHUNK__INIT;
			uint8_t inner[256];
			ch.message.data = data;
			ch.message.len = below(z, 2) ? dlen / 2 : 0;
			if (below(z, 2)) {
				/* A snapshot message that decodes, about an image
				 * this chunk does not fit. */
				m.type = RAFTPB__MESSAGE_TYPE__MSG_SNAP;
				m.to = z->target;
				m.from = z->peer;
				m.term = 1 + below(z, z->term);
				meta.index = absurd(z);
				meta.term = 1 + below(z, z->term);
				snap.metadata = &meta;
				m.snapshot = &snap;
				if (raftpb__message__get_packed_size(&m) <= sizeof(inner)) {
					ch.message.len = raftpb__message__pack(&m, inner);
					ch.message.data = inner;
				}
			}
			ch.offset = absurd(z);
			ch.total = absurd(z);
			ch.data.data = data;
			ch.data.len = dlen;
			ch.last = below(z, 2);
			ch.offer = below(z, 2);
			ch.resume = below(z, 2);
			ch.crc = (uint32_t)rnd(z);
			len = transportpb__snapshot_chunk__get_packed_size(&ch);
			out = realloc(out, len ? len : 1);
			if (!out)
				break;
			transportpb__snapshot_chunk__pack(&ch, out);
			if (!send_frame(fd, F_CHUNK, out, len))
				break;
			continue;
		}
		m.type = (Raftpb__MessageType)(below(z, 8) ? below(z, 19) : below(z, 1000));
		m.to = below(z, 8) ? z->target : absurd(z);
		m.from = below(z, 8) ? z->peer : absurd(z);
		m.term = 1 + below(z, z->term);
		m.log_term = absurd(z);
		m.index = absurd(z);
		m.commit = absurd(z);
		m.reject = below(z, 2);
		m.reject_hint = absurd(z);
		m.context.data = data;
		m.context.len = below(z, 2) ? dlen : 0;
		m.n_entries = below(z, 5);
		for (size_t i = 0; i < m.n_entries; i++) {
			raftpb__entry__init(&ents[i]);
			ents[i].term = 1 + below(z, z->term);
			ents[i].index =
			    below(z, 2) ? m.index + 1 + i * (1 + below(z, 3)) : absurd(z);
			ents[i].type = (Raftpb__EntryType)(below(z, 4) ? 0 : below(z, 5));
			ents[i].data.data = data;
			ents[i].data.len = below(z, dlen + 1);
			if (below(z, 3) == 0) {
				/* Left out by a "leader" (consensus/node_elide.c):
				 * an envelope's length or any, and a whole length
				 * that may be absurd (past any frame: 4 GiB - 1). */
				if (below(z, 2) && dlen >= 25)
					ents[i].data.len = 25;
				ents[i].elided_len = below(z, 4) == 0 ? UINT32_MAX
						     : below(z, 2)    ? (uint32_t)rnd(z)
								      : (uint32_t)(ents[i].data.len + 1 + below(z, 1u << 20));
				ents[i].elided_crc = (uint32_t)rnd(z);
			}
			pents[i] = &ents[i];
		}
		m.entries = pents;
		if (m.type == RAFTPB__MESSAGE_TYPE__MSG_SNAP || below(z, 10) == 0) {
			cs.n_voters = below(z, 3);
			cs.voters = voters;
			meta.conf_state = below(z, 2) ? &cs : NULL;
			meta.index = absurd(z);
			meta.term = 1 + below(z, z->term);
			snap.metadata = below(z, 4) ? &meta : NULL;
			snap.data.data = data;
			snap.data.len = dlen;
			m.snapshot = &snap;
		}
		len = raftpb__message__get_packed_size(&m);
		out = realloc(out, len ? len : 1);
		if (!out)
			break;
		raftpb__message__pack(&m, out);
		z->raft_msgs++;
		if (!send_frame(fd, F_RAFT, out, len))
			break;
	}
	free(out);
	/* Whatever the node answers is read and dropped; it may close. */
	shutdown(fd, SHUT_WR);
	z->closed_by_node += closed_within(fd, 2000);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	struct nf z = {0};
	long rounds = 100;
	bool empty = false, big_hello = false;
	int c, port;
	char host[64];

	z.rng = 1;
	while ((c = getopt(argc, argv, "s:n:c:p:t:T:EB")) != -1) {
		switch (c) {
		case 's':
			z.rng = strtoull(optarg, NULL, 0) * 0x9E3779B97F4A7C15ull + 1;
			break;
		case 'n':
			rounds = strtol(optarg, NULL, 0);
			break;
		case 'c':
			z.cluster = optarg;
			break;
		case 'p':
			z.peer = strtoull(optarg, NULL, 0);
			break;
		case 't':
			z.target = strtoull(optarg, NULL, 0);
			break;
		case 'T':
			z.term = strtoull(optarg, NULL, 0);
			break;
		case 'E':
			empty = true;
			break;
		case 'B':
			big_hello = true;
			break;
		default:
			goto usage;
		}
	}
	if (optind + 1 != argc || !z.cluster || (z.peer && (!z.target || !z.term)) ||
	    sscanf(argv[optind], "%63[^:]:%d", host, &port) != 2)
		goto usage;
	z.addr.sin_family = AF_INET;
	z.addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &z.addr.sin_addr) != 1)
		goto usage;
	signal(SIGPIPE, SIG_IGN);
	if (big_hello && attack_big_hello(&z) < 0)
		return 1;
	if (empty && attack_empty(&z) < 0) {
		fprintf(stderr, "net_fuzz: empty requests to %s failed\n", argv[optind]);
		return 1;
	}
	for (long i = 0; i < rounds; i++) {
		int kind = (int)below(&z, z.peer ? 5 : 4), rc;

		rc = kind == 0	 ? attack_garbage(&z)
		     : kind == 1 ? attack_lengths(&z)
		     : kind == 4 ? attack_peer(&z)
				 : attack_client(&z);
		if (rc < 0) {
			fprintf(stderr, "net_fuzz: round %ld (attack %d) against %s failed\n", i,
				kind, argv[optind]);
			return 1;
		}
	}
	printf("net_fuzz: %ld rounds against %s: %ld requests, %ld answered; %ld raft messages "
	       "as node %llu (%ld hellos refused); %ld connections closed by the node\n",
	       rounds, argv[optind], z.requests, z.answered, z.raft_msgs,
	       (unsigned long long)z.peer, z.refused, z.closed_by_node);
	return 0;
usage:
	fprintf(stderr, "usage: net_fuzz [-s SEED] [-n ROUNDS] [-E] [-B] [-p MEMBER_ID -t "
			"TARGET_ID -T MAX_TERM]\n"
			"                -c CLUSTER HOST:PORT\n"
			"Sends bad input to a node: random bytes, frames cut short or of absurd\n"
			"length, client requests with absurd fields (each must be answered), and\n"
			"with -p, raft messages and snapshot chunks to node TARGET_ID posing as\n"
			"member MEMBER_ID (its node stopped) with terms 1..MAX_TERM, below the\n"
			"cluster's. -E: first one request of each kind with every field empty.\n"
			"-B: first a 1 MiB hello frame, cut short; the node must close at once.\n"
			"Exits 1 if the node stops answering.\n");
	return 2;
}
