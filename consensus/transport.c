/* transport.c — TCP connections between nodes and from clients (libuv). */
#include "transport.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "codec.h"
#include "crc32c.h"
#include "envelope.h"
#include "frame.h"
#include "runtime_log.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define HANDSHAKE_TIMEOUT_MS 5000
/* Largest frame before the handshake: a Hello is a cluster name, an id and
 * at most a refusal's reason. Anyone may connect, and the frame reader
 * makes room for a whole frame as soon as it reads its length: with the
 * configured limit (64 MiB) every connection that never says hello could
 * make the node hold that much until the handshake timeout. */
#define HELLO_MAX_FRAME 4096
/* How long sent data may stay unacknowledged before the connection is
 * given up and redialled: this many election timeouts, at least the floor.
 * Keepalive alone never fires on a peer connection (heartbeats keep data in
 * flight), and the kernel's retransmission backoff would otherwise keep a
 * healed link silent for up to two minutes (tests/partition/README.md). */
#define USER_TIMEOUT_ELECTIONS 5
#define USER_TIMEOUT_MIN_MS 2000
/* The least room offered to each socket read. */
#define READ_MIN_BYTES (64u << 10)

/* REFUSED: the refusal is being flushed; nothing more is read. */
enum conn_state { CONN_HANDSHAKE, CONN_PEER, CONN_CLIENT, CONN_REFUSED, CONN_CLOSED };

struct transport_conn {
	uv_tcp_t tcp;
	transport *t;
	frame_reader fr;
	enum conn_state state;
	bool outbound;
	uint64_t peer; /* expected (outbound) or announced (inbound) node id */
	uint64_t born_ms;
	size_t queued; /* bytes handed to uv_write and not yet written; changed under wmu */
	int fd;	       /* the socket, for transport_send_direct (set under wmu at peer_up) */
	uint64_t link; /* transport_peer_link's number (set under wmu at peer_up) */
	/* Under wmu: a direct send wrote part of a frame; nothing more may be
	 * written and the loop closes the connection at its next write. */
	bool torn;
	/* Under wmu: small frames the loop sent while corked
	 * (transport_cork), not yet written; whatever is written to the
	 * socket next (a frame, a direct send, transport_uncork) writes them
	 * first, in the same syscall. */
	uint8_t *cork;
	size_t cork_len, cork_cap;
	int refs;      /* the open handle counts as one */
	struct transport_conn *next, *prev;
	char name[96]; /* for log lines */
};

typedef struct peer {
	uint64_t id;
	transport *t;
	struct sockaddr_storage sa;
	char addr[CONFIG_HOST_MAX + 8];
	transport_conn *conn; /* handshaked connection, or NULL */
	bool dialer;	      /* this node dials it (lower id dials) */
	bool dialing;
	unsigned backoff_ms;
	uv_timer_t timer; /* redial */
	/* A forwarder's own bytes (transport.h, TRANSPORT_ELIDE_MIN_BYTES):
	 * the client id of this peer's own proposals, from its hello on the
	 * present connection (0: none said), the highest entry index sent to
	 * it, and
	 * the index up to which its entries go whole (it lacked one). Set on
	 * the loop thread, read by direct senders too. */
	_Atomic uint64_t own_client, sent_max, whole_upto;
	/* TRANSPORT_FEATURE_* it offered in its hello on the present
	 * connection (set before the connection is used). */
	_Atomic uint32_t features;
	/* This node as follower: the lowest entry of this peer's appends
	 * whose elided data it lacked, for the next APP_RESP (0: none). */
	_Atomic uint64_t lacked;
} peer;

struct transport {
	uv_loop_t *loop;
	const node_config *cfg;
	transport_callbacks cb;
	uv_tcp_t listener;
	uv_timer_t sweep;
	peer peers[CONFIG_MAX_PEERS];
	size_t n_peers;
	transport_conn *conns;
	bool closing;
	/* Direct sends from other threads (transport_send_direct): the
	 * handshaked peer connections, and the lock that every write to a
	 * connection's socket, every change of its queued bytes and every
	 * change of these lanes holds. */
	pthread_mutex_t wmu;
	struct lane {
		uint64_t id;
		transport_conn *c;
		struct peer *p; /* its peer (slots never move) */
	} lane[CONFIG_MAX_PEERS];
	size_t n_lane;
	_Atomic uint64_t elided_ents, elided_bytes; /* transport_elided */
	uint64_t links; /* handshakes so far (transport_peer_link), under wmu */
	bool elide; /* a forwarder's own bytes are left out (RAFTFS_ELIDE) */
	uint64_t client_id; /* this node's, said in every hello */
	bool corked; /* transport_cork: small frames are held (loop thread) */
	/* A frame was held since the last flush (loop thread; stale, never
	 * wrong, when a direct send wrote them meanwhile). */
	bool held;
	_Atomic uint64_t writes; /* transport_writes */
};

/* While corked, a frame up to this long is copied behind the connection's
 * held bytes instead of written; a longer one is written at once, with
 * what is held in front of it (no copy of a big append's data). */
#define CORK_FRAME_MAX (16u << 10)
/* Held bytes per connection, at most: past it they go out with the frame
 * that would not fit. */
#define CORK_MAX (64u << 10)

typedef struct wreq {
	uv_write_t req;
	uint8_t *buf;
	size_t len;
	transport_conn *conn;
} wreq;

static void dial(peer *p);

static peer *find_peer(transport *t, uint64_t id)
{
	for (size_t i = 0; i < t->n_peers; i++)
		if (t->peers[i].id == id)
			return &t->peers[i];
	return NULL;
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *sa)
{
	struct addrinfo hints = {0}, *res = NULL;
	char ps[8];
	int rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(ps, sizeof(ps), "%u", port);
	rc = getaddrinfo(host, ps, &hints, &res);
	if (rc != 0) {
		rlog_write(RLOG_ERR, "resolve %s:%u: %s", host, port, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	memcpy(sa, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

int transport_new(uv_loop_t *loop, const node_config *cfg, uint64_t client_id,
		  const transport_callbacks *cb, transport **out)
{
	transport *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->wmu, NULL);
	t->loop = loop;
	t->cfg = cfg;
	t->client_id = client_id;
	/* RAFTFS_ELIDE=0: every append whole (before/after in one build). */
	t->elide = !getenv("RAFTFS_ELIDE") || strcmp(getenv("RAFTFS_ELIDE"), "0");
	t->cb = *cb;
	for (size_t i = 0; i < cfg->n_peers; i++) {
		const config_peer *cp = &cfg->peers[i];
		peer *p;

		if (cp->id == cfg->id)
			continue;
		p = &t->peers[t->n_peers++];
		p->id = cp->id;
		p->t = t;
		p->dialer = cfg->id < cp->id;
		p->backoff_ms = BACKOFF_MIN_MS;
		snprintf(p->addr, sizeof(p->addr), "%s:%u", cp->host, cp->port);
		if (resolve(cp->host, cp->port, &p->sa) < 0) {
			free(t);
			return -EHOSTUNREACH;
		}
	}
	*out = t;
	return 0;
}

/* ---- connection lifetime ---- */

/* A connection reads into blob.h blocks: a received append's big entries
 * stay where they arrived, referenced by the message and then the log
 * (codec_msg_decode_in), and the reader moves on to a new block while
 * any are held. */
static const frame_buf_ops frame_blocks = {raft_blob_new, raft_blob_shared, raft_blob_release};

static transport_conn *conn_new(transport *t, bool outbound)
{
	transport_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->t = t;
	c->outbound = outbound;
	c->refs = 1;
	c->born_ms = uv_now(t->loop);
	c->tcp.data = c;
	frame_reader_init_shared(&c->fr, HELLO_MAX_FRAME, &frame_blocks);
	c->next = t->conns;
	if (t->conns)
		t->conns->prev = c;
	t->conns = c;
	return c;
}

static void conn_free(transport_conn *c)
{
	transport *t = c->t;

	if (c->prev)
		c->prev->next = c->next;
	else if (t->conns == c)
		t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	frame_reader_free(&c->fr);
	free(c->cork);
	free(c);
}

void transport_conn_ref(transport_conn *c)
{
	c->refs++;
}

void transport_conn_unref(transport_conn *c)
{
	if (--c->refs == 0)
		conn_free(c);
}

static void on_redial(uv_timer_t *timer)
{
	dial(timer->data);
}

static void schedule_redial(peer *p)
{
	if (p->t->closing || p->dialing || p->conn)
		return;
	uv_timer_start(&p->timer, on_redial, p->backoff_ms, 0);
	p->backoff_ms = p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff_ms * 2;
}

static void on_closed(uv_handle_t *h)
{
	transport_conn *c = h->data;
	transport *t = c->t;
	peer *p = c->outbound ? find_peer(t, c->peer) : NULL;

	if (p) {
		p->dialing = false;
		schedule_redial(p);
	}
	transport_conn_unref(c);
}

/* Makes c the connection that direct sends to peer p use. Loop thread. */
static void lane_set(transport *t, peer *p, transport_conn *c)
{
	uint64_t id = p->id;
	size_t i;

	pthread_mutex_lock(&t->wmu);
	for (i = 0; i < t->n_lane && t->lane[i].id != id; i++)
		;
	if (i == t->n_lane && t->n_lane < CONFIG_MAX_PEERS)
		t->n_lane++;
	if (i < t->n_lane) {
		t->lane[i].id = id;
		t->lane[i].c = c;
		t->lane[i].p = p;
		c->link = ++t->links;
		c->fd = -1;
		uv_fileno((uv_handle_t *)&c->tcp, &c->fd);
	}
	pthread_mutex_unlock(&t->wmu);
}

/* No direct send uses c from now on (it is closing). Loop thread. */
static void lane_drop(transport *t, transport_conn *c)
{
	pthread_mutex_lock(&t->wmu);
	for (size_t i = 0; i < t->n_lane; i++)
		if (t->lane[i].c == c)
			t->lane[i--] = t->lane[--t->n_lane];
	c->cork_len = 0; /* lost with the connection, like its queued writes */
	pthread_mutex_unlock(&t->wmu);
}

static void conn_close(transport_conn *c)
{
	peer *p;

	if (c->state == CONN_CLOSED)
		return;
	p = c->peer ? find_peer(c->t, c->peer) : NULL;
	if (p && p->conn == c) {
		p->conn = NULL;
		RLOG(RLOG_NET, "%s: disconnected", c->name);
	}
	lane_drop(c->t, c);
	c->state = CONN_CLOSED;
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* ---- writing ---- */

static void on_written(uv_write_t *req, int status)
{
	wreq *w = (wreq *)req;

	pthread_mutex_lock(&w->conn->t->wmu);
	w->conn->queued -= w->len;
	pthread_mutex_unlock(&w->conn->t->wmu);
	if (status < 0 && status != UV_ECANCELED) {
		RLOG(RLOG_NET, "%s: write failed: %s", w->conn->name, uv_strerror(status));
		conn_close(w->conn);
	}
	free(w->buf);
	free(w);
}

/* The most pieces one frame is written from (codec_msg_encode_segs). */
#define SEND_SEGS 65

/* Queues the len bytes at data, inside buf (owned, freed once written),
 * behind what the connection already queued. Under wmu. 0, or -1: the
 * connection is to be closed (buf freed). */
static int queue_write(transport_conn *c, uint8_t *buf, const uint8_t *data, size_t len)
{
	wreq *w = malloc(sizeof(*w));
	uv_buf_t b;
	int n;

	if (!w) {
		free(buf);
		return -1;
	}
	w->buf = buf;
	w->len = len;
	w->conn = c;
	c->queued += w->len;
	b = uv_buf_init((char *)data, (unsigned)w->len);
	n = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
	if (n < 0) {
		c->queued -= w->len;
		free(buf);
		free(w);
		return -1;
	}
	return 0;
}

/* write_segs under wmu: 0, or -1 when the connection is to be closed
 * (buf freed either way). The connection's held bytes (cork) go first, in
 * the same write. */
static int write_segs_locked(transport_conn *c, uint8_t *buf, const codec_seg *segs, size_t n,
			     size_t len)
{
	uv_buf_t b[SEND_SEGS + 1];
	uint8_t *rest, *q;
	size_t skip, left, nb = 0, held = c->cork_len;
	int w;

	if (c->torn) { /* a direct send left half a frame: the stream is lost */
		free(buf);
		return -1;
	}
	if (held)
		b[nb++] = uv_buf_init((char *)c->cork, (unsigned)held);
	for (size_t i = 0; i < n; i++)
		b[nb++] = uv_buf_init((char *)segs[i].data, (unsigned)segs[i].len);
	len += held;
	c->cork_len = 0;
	atomic_fetch_add_explicit(&c->t->writes, 1, memory_order_relaxed);
	/* Most frames go out at once; only what the kernel would not take
	 * is queued (uv_try_write refuses while earlier writes are queued, so
	 * order is kept). The kernel copies from the entries' data itself:
	 * no copy of a big append is made here unless the socket is full. */
	w = uv_try_write((uv_stream_t *)&c->tcp, b, (unsigned)nb);
	if (w == (int)len) {
		free(buf);
		return 0;
	}
	if (w < 0 && w != UV_EAGAIN) {
		RLOG(RLOG_NET, "%s: write failed: %s", c->name, uv_strerror(w));
		free(buf);
		return -1;
	}
	skip = w < 0 ? 0 : (size_t)w;
	left = len - skip;
	if (nb == 1 && !held) /* one piece: its rest is queued in place */
		return queue_write(c, buf, buf + skip, left);
	rest = malloc(left);
	if (!rest) {
		free(buf);
		return -1;
	}
	q = rest;
	for (size_t i = 0; i < nb; i++) {
		size_t from = skip < b[i].len ? skip : b[i].len;

		memcpy(q, b[i].base + from, b[i].len - from);
		q += b[i].len - from;
		skip -= from;
	}
	free(buf);
	return queue_write(c, rest, rest, left);
}

/* Copies the frame segs[0..n) (len bytes, segs[0] at buf, freed here)
 * behind c's held bytes. Under wmu. false: no room (nothing done). */
static bool cork_frame_locked(transport_conn *c, uint8_t *buf, const codec_seg *segs, size_t n,
			      size_t len)
{
	if (c->torn || c->cork_len + len > CORK_MAX)
		return false;
	if (c->cork_len + len > c->cork_cap) {
		size_t cap = c->cork_cap ? c->cork_cap : 4096;
		uint8_t *nc;

		while (cap < c->cork_len + len)
			cap *= 2;
		if (!(nc = realloc(c->cork, cap)))
			return false;
		c->cork = nc;
		c->cork_cap = cap;
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(c->cork + c->cork_len, segs[i].data, segs[i].len);
		c->cork_len += segs[i].len;
	}
	free(buf);
	return true;
}

/* Writes a whole frame of len bytes, given as segs[0..n) (segs[0] starting
 * at buf, which it owns; the others may point anywhere and are used only
 * during the call). Under wmu, so that no direct send
 * (transport_send_direct) writes into the middle of it. */
static void write_segs(transport_conn *c, uint8_t *buf, const codec_seg *segs, size_t n, size_t len)
{
	int rc;

	pthread_mutex_lock(&c->t->wmu);
	rc = write_segs_locked(c, buf, segs, n, len);
	pthread_mutex_unlock(&c->t->wmu);
	if (rc < 0)
		conn_close(c);
}

/* Writes a whole frame; takes ownership of buf. */
static void write_frame(transport_conn *c, uint8_t *buf, size_t len)
{
	codec_seg seg = {buf, len};

	write_segs(c, buf, &seg, 1, len);
}

static int send_pb(transport_conn *c, uint8_t type, const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(FRAME_HEADER_BYTES + n);

	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf + FRAME_HEADER_BYTES);
	frame_header(buf, type, n);
	write_frame(c, buf, FRAME_HEADER_BYTES + n);
	return 0;
}

static void send_hello(transport_conn *c, const char *error)
{
	Transportpb__Hello h = TRANSPORTPB__HELLO__INIT;

	h.cluster = (char *)c->t->cfg->cluster;
	h.node_id = c->t->cfg->id;
	h.version = TRANSPORT_VERSION;
	/* RAFTFS_ELIDE=0 turns the whole feature off: nothing left out for
	 * others, and none asked to leave anything out for this node. */
	h.features = c->t->elide ? TRANSPORT_FEATURE_ELIDE : 0;
	h.client_id = c->t->client_id;
	h.error = (char *)(error ? error : "");
	send_pb(c, FRAME_HELLO, &h.base);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	conn_close(req->data);
	free(req);
}

/* Refuses a connection: says why in a Hello, then closes once it is out. */
static void refuse(transport_conn *c, const char *why)
{
	uv_shutdown_t *req = malloc(sizeof(*req));

	rlog_write(RLOG_ERR, "%s: refused: %s", c->name, why);
	send_hello(c, why);
	if (c->state == CONN_CLOSED) /* the write failed */
		return;
	c->state = CONN_REFUSED;
	uv_read_stop((uv_stream_t *)&c->tcp);
	if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
		free(req);
		conn_close(c);
		return;
	}
	req->data = c;
}

/* Raises *v to at least x. */
static void atomic_raise(_Atomic uint64_t *v, uint64_t x)
{
	uint64_t cur = atomic_load(v);

	while (cur < x && !atomic_compare_exchange_weak(v, &cur, x))
		;
}

/* Leaves out of append m to p the data of the big entries p proposed
 * itself but their envelope (by which it finds its copy): *v (a copy of m)
 * gets a copy of m's entries, those cut to their envelope, and beside them
 * v->elided, their whole length and CRC-32C: one allocation at v->entries,
 * the data still m's. false (v untouched) when nothing is left out, or the
 * allocation failed: sent whole. */
static bool elide(transport *t, peer *p, const raft_msg *m, raft_msg *v)
{
	uint64_t client = atomic_load(&p->own_client), whole = atomic_load(&p->whole_upto);
	raft_entry *ents = NULL;
	raft_elision *el = NULL;

	atomic_raise(&p->sent_max, m->entries[m->n_entries - 1].index);
	if (!t->elide || !(atomic_load(&p->features) & TRANSPORT_FEATURE_ELIDE))
		return false; /* turned off here, or it could not fill anything in */
	for (size_t i = 0; client && i < m->n_entries; i++) {
		const raft_entry *e = &m->entries[i];
		envelope env;
		const uint8_t *cmd;
		size_t cmd_len;

		if (e->type != RAFT_ENTRY_NORMAL || e->len < TRANSPORT_ELIDE_MIN_BYTES ||
		    e->index <= whole || envelope_decode(e->data, e->len, &env, &cmd, &cmd_len) != 0 ||
		    env.client != client)
			continue;
		if (!ents) {
			/* raft_elision's alignment divides raft_entry's size. */
			ents = malloc(m->n_entries * (sizeof(*ents) + sizeof(*el)));
			if (!ents)
				return false;
			memcpy(ents, m->entries, m->n_entries * sizeof(*ents));
			el = (raft_elision *)(ents + m->n_entries);
			memset(el, 0, m->n_entries * sizeof(*el));
		}
		el[i] = (raft_elision){e->len, crc32c_extend(0, e->data, e->len)};
		ents[i].len = ENVELOPE_BYTES;
		atomic_fetch_add(&t->elided_ents, 1);
		atomic_fetch_add(&t->elided_bytes, e->len - ENVELOPE_BYTES);
	}
	if (!ents)
		return false;
	v->entries = ents;
	v->elided = el;
	return true;
}

/* Peer p's appends lacked entry index: the lowest such goes in the next
 * append response to p. */
static void note_lacked(peer *p, uint64_t index)
{
	uint64_t cur = atomic_load(&p->lacked);

	while ((!cur || index < cur) && !atomic_compare_exchange_weak(&p->lacked, &cur, index))
		;
}

/* codec_msg_encode_segs of m for peer p (m->to; NULL: unknown), with a
 * frame header's room: an append leaves out what the peer has (elide), an
 * append response names the entry this node lacked (transport_lacks),
 * taken from p into *took (0: none): a caller whose send then fails puts
 * it back (note_lacked), or the leader would never hear of it. */
static int encode_for(transport *t, peer *p, const raft_msg *m, uint8_t **buf, size_t *len,
		      codec_seg *segs, size_t *n_segs, uint64_t *took)
{
	raft_msg v = *m;
	bool cut;
	int rc;

	v.full_from = 0;
	cut = p && m->type == RAFT_MSG_APP && m->n_entries && elide(t, p, m, &v);
	if (p && m->type == RAFT_MSG_APP_RESP)
		v.full_from = atomic_exchange(&p->lacked, 0);
	rc = codec_msg_encode_segs(&v, FRAME_HEADER_BYTES, buf, len, segs, SEND_SEGS, n_segs);
	if (cut)
		free(v.entries); /* and v.elided, in the same allocation */
	*took = v.full_from;
	if (rc != 0 && *took) {
		note_lacked(p, *took);
		*took = 0;
	}
	return rc;
}

void transport_lacks(transport *t, uint64_t id, uint64_t index)
{
	peer *p = find_peer(t, id);

	if (p && index)
		note_lacked(p, index);
}

void transport_elided(const transport *t, uint64_t *ents, uint64_t *bytes)
{
	*ents = atomic_load(&t->elided_ents);
	*bytes = atomic_load(&t->elided_bytes);
}

int transport_send(transport *t, const raft_msg *m)
{
	peer *p = find_peer(t, m->to);
	codec_seg segs[SEND_SEGS];
	size_t len, n_segs;
	uint64_t took;
	uint8_t *buf;

	if (!p || !p->conn)
		return -ENOTCONN;
	/* A big append is written from the entries' own data: one copy less
	 * of every byte a leader sends, per follower. */
	if (encode_for(t, p, m, &buf, &len, segs, &n_segs, &took) != 0)
		return -EINVAL;
	if (p->conn->queued + len > t->cfg->send_queue_bytes) {
		free(buf);
		if (took)
			note_lacked(p, took);
		return -ENOBUFS;
	}
	frame_header(buf, FRAME_RAFT, len);
	len += FRAME_HEADER_BYTES;
	if (t->corked && len <= CORK_FRAME_MAX) {
		bool held;

		pthread_mutex_lock(&t->wmu);
		held = cork_frame_locked(p->conn, buf, segs, n_segs, len);
		pthread_mutex_unlock(&t->wmu);
		if (held) {
			t->held = true;
			return 0;
		}
	}
	write_segs(p->conn, buf, segs, n_segs, len);
	return 0;
}

void transport_cork(transport *t)
{
	t->corked = true;
}

void transport_flush(transport *t)
{
	/* Most loop passes held nothing: no peer's wmu for them (the persist
	 * thread holds it across its direct sends). */
	if (!t->held)
		return;
	t->held = false;
	for (size_t i = 0; i < t->n_peers; i++) {
		transport_conn *c = t->peers[i].conn;
		int rc = 0;

		if (!c)
			continue;
		pthread_mutex_lock(&t->wmu);
		if (c->cork_len)
			rc = write_segs_locked(c, NULL, NULL, 0, 0);
		pthread_mutex_unlock(&t->wmu);
		if (rc < 0)
			conn_close(c);
	}
}

void transport_uncork(transport *t)
{
	t->corked = false;
	transport_flush(t);
}

uint64_t transport_writes(const transport *t)
{
	return atomic_load_explicit(&t->writes, memory_order_relaxed);
}

/* Under wmu: the connection to peer id a direct send may write to now,
 * or NULL: none, or only behind bytes the loop queued (they go first), or
 * torn by an earlier direct send. *pp (when asked): the lane's peer, whose
 * record is never freed while the transport lives. */
static transport_conn *free_lane(transport *t, uint64_t id, peer **pp)
{
	for (size_t i = 0; i < t->n_lane; i++) {
		transport_conn *c = t->lane[i].c;

		if (t->lane[i].id != id)
			continue;
		if (pp)
			*pp = t->lane[i].p;
		return c && c->fd >= 0 && !c->queued && !c->torn ? c : NULL;
	}
	return NULL;
}

int transport_send_direct(transport *t, const raft_msg *m)
{
	codec_seg segs[SEND_SEGS];
	struct iovec iov[SEND_SEGS + 1]; /* [0]: the loop's held bytes, if any */
	struct msghdr mh = {0};
	transport_conn *c;
	size_t len, n_segs;
	uint64_t took;
	uint8_t *buf;
	ssize_t w;
	peer *p = NULL;
	int rc;

	/* Looked at before encoding: a busy lane (the common refusal) costs
	 * no encode. Looked at again below, the loop may queue meanwhile. */
	pthread_mutex_lock(&t->wmu);
	c = free_lane(t, m->to, &p);
	pthread_mutex_unlock(&t->wmu);
	if (!c)
		return -EAGAIN;
	if (encode_for(t, p, m, &buf, &len, segs, &n_segs, &took) != 0)
		return -EINVAL;
	frame_header(buf, FRAME_RAFT, len);
	for (size_t i = 0; i < n_segs; i++)
		iov[i + 1] = (struct iovec){.iov_base = (void *)segs[i].data, .iov_len = segs[i].len};
	mh.msg_iov = iov + 1;
	mh.msg_iovlen = n_segs;
	len += FRAME_HEADER_BYTES;
	pthread_mutex_lock(&t->wmu);
	/* The same connection it was encoded for, or none: what encode_for
	 * read of the peer (its features, its client id, a lacked entry)
	 * belongs to that connection, and a new one starts from nothing
	 * (peer_up). */
	if (free_lane(t, m->to, NULL) != c) {
		rc = -EAGAIN;
	} else {
		/* What the loop holds for this peer was sent before: it goes
		 * first, in this write. */
		size_t held = c->cork_len;

		if (held) {
			iov[0] = (struct iovec){.iov_base = c->cork, .iov_len = held};
			mh.msg_iov = iov;
			mh.msg_iovlen = n_segs + 1;
		}
		atomic_fetch_add_explicit(&t->writes, 1, memory_order_relaxed);
		w = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w >= 0 && held)
			c->cork_len = 0; /* written, or lost with the torn stream */
		if (w == (ssize_t)(held + len)) {
			rc = 0;
		} else if (w < 0) {
			rc = errno == EWOULDBLOCK ? -EAGAIN : -errno;
		} else if (held && w == (ssize_t)held) {
			rc = -EAGAIN; /* the held bytes went, whole; m did not */
		} else {
			/* Part of a frame: the rest cannot follow from here
			 * (the loop may write next). The connection is lost;
			 * the loop closes it at its next write to it. */
			c->torn = true;
			rc = -EPIPE;
		}
	}
	pthread_mutex_unlock(&t->wmu);
	free(buf);
	/* Not sent (or torn: the connection is lost, and the next one starts
	 * with nothing lacked, peer_up): the caller sends m again through
	 * the loop, which encodes it again and takes it back. */
	if (rc != 0 && took)
		note_lacked(p, took);
	return rc;
}

int transport_send_chunk(transport *t, uint64_t id, const Transportpb__SnapshotChunk *ch)
{
	peer *p = find_peer(t, id);

	if (!p || !p->conn)
		return -ENOTCONN;
	if (p->conn->queued + protobuf_c_message_get_packed_size(&ch->base) >
	    t->cfg->send_queue_bytes)
		return -ENOBUFS;
	return send_pb(p->conn, FRAME_SNAP_CHUNK, &ch->base);
}

int transport_queued(const transport *t, uint64_t id, size_t *bytes)
{
	for (size_t i = 0; i < t->n_peers; i++)
		if (t->peers[i].id == id && t->peers[i].conn) {
			*bytes = t->peers[i].conn->queued;
			return 0;
		}
	return -ENOTCONN;
}

bool transport_peer_connected(const transport *t, uint64_t id)
{
	for (size_t i = 0; i < t->n_peers; i++)
		if (t->peers[i].id == id)
			return t->peers[i].conn != NULL;
	return false;
}

uint64_t transport_peer_link(transport *t, uint64_t id)
{
	uint64_t link = 0;

	/* The lanes: exactly the handshaked peer connections, kept under wmu
	 * (the peers' own slots are the loop thread's). */
	pthread_mutex_lock(&t->wmu);
	for (size_t i = 0; i < t->n_lane; i++)
		if (t->lane[i].id == id)
			link = t->lane[i].c->link;
	pthread_mutex_unlock(&t->wmu);
	return link;
}

void transport_reply(transport_conn *c, const Transportpb__Response *resp)
{
	if (c->state != CONN_CLIENT)
		return;
	send_pb(c, FRAME_RESPONSE, &resp->base);
}

/* ---- reading ---- */

static void peer_up(transport_conn *c, peer *p, const Transportpb__Hello *h)
{
	if (p->conn && p->conn != c) {
		/* The peer restarted before we noticed the old connection die:
		 * the newest connection wins. */
		transport_conn *old = p->conn;

		p->conn = NULL;
		conn_close(old);
	}
	c->state = CONN_PEER;
	c->fr.max_frame = c->t->cfg->max_frame_bytes;
	p->conn = c;
	/* Its client id is this connection's: a restarted peer is a new
	 * client and has none of its old proposals. Said in the hello, not
	 * learnt from its forwarded proposals: a follower also forwards
	 * proposals of other nodes that reached it. */
	atomic_store(&p->own_client, h->client_id);
	atomic_store(&p->lacked, 0);
	atomic_store(&p->features, h->features);
	lane_set(c->t, p, c);
	p->backoff_ms = BACKOFF_MIN_MS;
	RLOG(RLOG_NET, "%s: connected (features %#x)", c->name, (unsigned)h->features);
}

static void on_hello(transport_conn *c, const uint8_t *payload, size_t len)
{
	transport *t = c->t;
	Transportpb__Hello *h = transportpb__hello__unpack(NULL, len, payload);
	char why[160];
	peer *p;

	if (!h) {
		rlog_write(RLOG_ERR, "%s: malformed hello: closing", c->name);
		conn_close(c);
		return;
	}
	if (c->outbound) {
		if (h->error && h->error[0])
			rlog_write(RLOG_ERR, "%s: peer refused us: %s", c->name, h->error);
		else if (strcmp(h->cluster, t->cfg->cluster) != 0)
			rlog_write(RLOG_ERR, "%s: answered for cluster '%s', ours is '%s': closing",
				   c->name, h->cluster, t->cfg->cluster);
		else if (h->node_id != c->peer)
			rlog_write(RLOG_ERR, "%s: answered as node %llu: closing", c->name,
				   (unsigned long long)h->node_id);
		else if (h->version != TRANSPORT_VERSION)
			rlog_write(RLOG_ERR, "%s: protocol version %u, ours is %u: closing",
				   c->name, h->version, TRANSPORT_VERSION);
		else if (find_peer(t, c->peer)) {
			peer_up(c, find_peer(t, c->peer), h);
			goto out;
		} /* else: the peer was removed while we dialled it */
		conn_close(c);
		goto out;
	}
	/* Inbound: a client (node id 0) or a lower-id peer dialling us. */
	p = h->node_id ? find_peer(t, h->node_id) : NULL;
	if (h->version != TRANSPORT_VERSION)
		snprintf(why, sizeof(why), "protocol version %u, want %u", h->version,
			 TRANSPORT_VERSION);
	else if (h->node_id == 0 && h->cluster[0] && strcmp(h->cluster, t->cfg->cluster))
		snprintf(why, sizeof(why), "client of cluster '%s', this is '%s'", h->cluster,
			 t->cfg->cluster);
	else if (h->node_id && strcmp(h->cluster, t->cfg->cluster))
		snprintf(why, sizeof(why), "node %llu of cluster '%s', this is '%s'",
			 (unsigned long long)h->node_id, h->cluster, t->cfg->cluster);
	else if (h->node_id && !p)
		snprintf(why, sizeof(why), "unknown node id %llu", (unsigned long long)h->node_id);
	else if (p && p->dialer)
		snprintf(why, sizeof(why), "node %llu must be dialled by us (lower id dials)",
			 (unsigned long long)h->node_id);
	else
		why[0] = '\0';
	if (why[0]) {
		refuse(c, why);
		goto out;
	}
	send_hello(c, NULL);
	if (p) {
		c->peer = p->id;
		snprintf(c->name, sizeof(c->name), "peer %llu (in)", (unsigned long long)p->id);
		peer_up(c, p, h);
	} else {
		c->state = CONN_CLIENT;
		c->fr.max_frame = t->cfg->max_frame_bytes;
	}
out:
	transportpb__hello__free_unpacked(h, NULL);
}

/* An append response naming an entry the peer lacked makes every entry
 * sent to it so far go whole (the core sends them again as after any
 * loss: node_elide.c). */
static void learn_lacked(transport *t, const raft_msg *m)
{
	peer *p = find_peer(t, m->from);

	if (p && m->type == RAFT_MSG_APP_RESP && m->full_from) {
		atomic_raise(&p->whole_upto, atomic_load(&p->sent_max));
		RLOG(RLOG_NET, "peer %llu lacked its own data of entry %llu: entries up to %llu go whole",
		     (unsigned long long)p->id, (unsigned long long)m->full_from,
		     (unsigned long long)atomic_load(&p->whole_upto));
	}
}

static void on_frame(transport_conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
	transport *t = c->t;

	if (c->state == CONN_HANDSHAKE) {
		if (type != FRAME_HELLO) {
			rlog_write(RLOG_ERR, "%s: frame type %u before the handshake: closing",
				   c->name, type);
			conn_close(c);
			return;
		}
		on_hello(c, payload, len);
		return;
	}
	if (c->state == CONN_PEER && type == FRAME_RAFT) {
		raft_msg m;

		/* payload is the reader's, consumed: decoding may write in
		 * it (codec_msg_decode_in). */
		if (codec_msg_decode_in(c->fr.buf, (uint8_t *)payload, len, &m) != 0) {
			rlog_write(RLOG_ERR, "%s: undecodable raft message (%zu bytes): closing",
				   c->name, len);
			conn_close(c);
			return;
		}
		if (m.from != c->peer || m.to != t->cfg->id) {
			rlog_write(RLOG_ERR, "%s: message from %llu to %llu on this link: dropped",
				   c->name, (unsigned long long)m.from, (unsigned long long)m.to);
		} else {
			learn_lacked(t, &m);
			t->cb.on_raft(t->cb.arg, &m);
		}
		raft_msg_free_contents(&m);
		return;
	}
	if (c->state == CONN_PEER && type == FRAME_SNAP_CHUNK) {
		Transportpb__SnapshotChunk *ch =
		    transportpb__snapshot_chunk__unpack(NULL, len, payload);

		if (!ch) {
			rlog_write(RLOG_ERR, "%s: malformed snapshot chunk: closing", c->name);
			conn_close(c);
			return;
		}
		t->cb.on_snap_chunk(t->cb.arg, c->peer, ch);
		transportpb__snapshot_chunk__free_unpacked(ch, NULL);
		return;
	}
	if (c->state == CONN_CLIENT && type == FRAME_REQUEST) {
		Transportpb__Request *req = transportpb__request__unpack(NULL, len, payload);

		if (!req) {
			rlog_write(RLOG_ERR, "%s: malformed request: closing", c->name);
			conn_close(c);
			return;
		}
		t->cb.on_request(t->cb.arg, c, req);
		transportpb__request__free_unpacked(req, NULL);
		return;
	}
	rlog_write(RLOG_ERR, "%s: unexpected frame type %u: closing", c->name, type);
	conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	transport_conn *c = h->data;
	uint8_t *space;
	size_t cap;

	(void)suggested;
	/* Straight into the frame reader: a big append is copied out of the
	 * kernel once, not once more through a bounce buffer. libuv takes
	 * no buffer (UV_ENOBUFS to on_read) when this fails. */
	if (frame_reader_space(&c->fr, READ_MIN_BYTES, &space, &cap) < 0) {
		*buf = uv_buf_init(NULL, 0);
		return;
	}
	*buf = uv_buf_init((char *)space, cap > UINT_MAX ? UINT_MAX : (unsigned)cap);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	transport_conn *c = s->data;
	const uint8_t *payload;
	uint8_t type;
	size_t len;
	int rc;

	if (nread == 0 || c->state == CONN_CLOSED || c->state == CONN_REFUSED)
		return;
	if (nread == UV_ENOBUFS) {
		rlog_write(RLOG_ERR, "%s: out of memory buffering a frame: closing", c->name);
		conn_close(c);
		return;
	}
	if (nread < 0) {
		RLOG(RLOG_NET, "%s: %s", c->name,
		     nread == UV_EOF ? "closed by the other end" : uv_strerror((int)nread));
		conn_close(c);
		return;
	}
	frame_reader_commit(&c->fr, (size_t)nread);
	while ((c->state == CONN_HANDSHAKE || c->state == CONN_PEER || c->state == CONN_CLIENT) &&
	       (rc = frame_reader_next(&c->fr, &type, &payload, &len))) {
		if (rc < 0) {
			rlog_write(RLOG_ERR, "%s: %s (max frame %zu bytes): closing", c->name,
				   rc == -EMSGSIZE ? "bad frame length" : "unknown frame type",
				   c->fr.max_frame);
			conn_close(c);
			return;
		}
		on_frame(c, type, payload, len);
	}
}

/* ---- connecting ---- */

/* TCP options of every connection, outbound or accepted. */
static void conn_set_options(transport_conn *c)
{
	const node_config *cfg = c->t->cfg;
	unsigned ms = cfg->tick_ms * (unsigned)cfg->election_ticks * USER_TIMEOUT_ELECTIONS;
	uv_os_fd_t fd;

	if (ms < USER_TIMEOUT_MIN_MS)
		ms = USER_TIMEOUT_MIN_MS;
	uv_tcp_nodelay(&c->tcp, 1);
	/* A peer that vanished without a FIN (power loss, partition) while
	 * nothing was in flight is noticed by keepalive... */
	uv_tcp_keepalive(&c->tcp, 1, 5);
	/* ...and while data is in flight, by the user timeout. */
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms)) < 0)
		RLOG(RLOG_NET, "%s: TCP_USER_TIMEOUT: %s", c->name, strerror(errno));
}

static void on_connect(uv_connect_t *req, int status)
{
	transport_conn *c = req->data;
	int rc;

	free(req);
	if (c->state == CONN_CLOSED)
		return;
	if (status < 0) {
		RLOG(RLOG_NET, "%s: connect: %s", c->name, uv_strerror(status));
		conn_close(c);
		return;
	}
	conn_set_options(c);
	rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rc < 0) {
		rlog_write(RLOG_ERR, "%s: read start: %s", c->name, uv_strerror(rc));
		conn_close(c);
		return;
	}
	send_hello(c, NULL);
}

static void dial(peer *p)
{
	transport *t = p->t;
	transport_conn *c;
	uv_connect_t *req;
	int rc;

	if (t->closing || p->dialing || p->conn)
		return;
	c = conn_new(t, true);
	req = malloc(sizeof(*req));
	if (!c || !req) {
		free(req);
		if (c)
			conn_free(c);
		rlog_write(RLOG_ERR, "dial peer %llu: out of memory", (unsigned long long)p->id);
		schedule_redial(p);
		return;
	}
	c->peer = p->id;
	snprintf(c->name, sizeof(c->name), "peer %llu (%s)", (unsigned long long)p->id, p->addr);
	uv_tcp_init(t->loop, &c->tcp);
	p->dialing = true;
	req->data = c;
	rc = uv_tcp_connect(req, &c->tcp, (const struct sockaddr *)&p->sa, on_connect);
	if (rc < 0) {
		free(req);
		RLOG(RLOG_NET, "%s: connect: %s", c->name, uv_strerror(rc));
		conn_close(c); /* on_closed schedules the redial */
	}
}

static void on_accept(uv_stream_t *server, int status)
{
	transport *t = server->data;
	transport_conn *c;
	struct sockaddr_storage sa;
	int salen = sizeof(sa), rc;
	char host[64] = "?";

	if (status < 0) {
		rlog_write(RLOG_ERR, "accept: %s", uv_strerror(status));
		return;
	}
	c = conn_new(t, false);
	if (!c) {
		rlog_write(RLOG_ERR, "accept: out of memory");
		return;
	}
	uv_tcp_init(t->loop, &c->tcp);
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c);
		return;
	}
	conn_set_options(c);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
		if (sa.ss_family == AF_INET6)
			uv_ip6_name((struct sockaddr_in6 *)&sa, host, sizeof(host));
		else
			uv_ip4_name((struct sockaddr_in *)&sa, host, sizeof(host));
	}
	snprintf(c->name, sizeof(c->name), "connection from %s", host);
	rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rc < 0)
		conn_close(c);
}

static void on_sweep(uv_timer_t *timer)
{
	transport *t = timer->data;
	uint64_t now = uv_now(t->loop);

	for (transport_conn *c = t->conns; c; c = c->next)
		if (c->state == CONN_HANDSHAKE && now - c->born_ms > HANDSHAKE_TIMEOUT_MS) {
			rlog_write(RLOG_ERR, "%s: no handshake within %d ms: closing", c->name,
				   HANDSHAKE_TIMEOUT_MS);
			conn_close(c);
		}
}

int transport_start(transport *t)
{
	struct sockaddr_storage sa;
	int rc;

	if (resolve(t->cfg->listen_host, t->cfg->listen_port, &sa) < 0)
		return -EHOSTUNREACH;
	uv_tcp_init(t->loop, &t->listener);
	t->listener.data = t;
	uv_timer_init(t->loop, &t->sweep);
	t->sweep.data = t;
	/* Every slot's timer, so peers added at runtime have one. */
	for (size_t i = 0; i < CONFIG_MAX_PEERS; i++) {
		uv_timer_init(t->loop, &t->peers[i].timer);
		t->peers[i].timer.data = &t->peers[i];
	}
	rc = uv_tcp_bind(&t->listener, (const struct sockaddr *)&sa, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&t->listener, 128, on_accept);
	if (rc < 0) {
		rlog_write(RLOG_ERR, "listen on %s:%u: %s", t->cfg->listen_host,
			   t->cfg->listen_port, uv_strerror(rc));
		return rc;
	}
	uv_timer_start(&t->sweep, on_sweep, 1000, 1000);
	for (size_t i = 0; i < t->n_peers; i++)
		if (t->peers[i].dialer)
			dial(&t->peers[i]);
	return 0;
}

/* ---- membership changes (consensus/node_members.c) ---- */

int transport_add_peer(transport *t, uint64_t id, const char *host, uint16_t port)
{
	struct sockaddr_storage sa;
	char addr[CONFIG_HOST_MAX + 8];
	peer *p;

	if (id == 0)
		return -EINVAL;
	if (id == t->cfg->id)
		return 0;
	snprintf(addr, sizeof(addr), "%s:%u", host, port);
	p = find_peer(t, id);
	if (p && strcmp(p->addr, addr) == 0)
		return 0;
	if (resolve(host, port, &sa) < 0)
		return -EHOSTUNREACH;
	if (!p) {
		/* A slot freed by a removal, else a new one: slots never move
		 * (each timer's data points at its slot). */
		for (size_t i = 0; i < t->n_peers && !p; i++)
			if (t->peers[i].id == 0)
				p = &t->peers[i];
		if (!p && t->n_peers == CONFIG_MAX_PEERS)
			return -ENOSPC;
		if (!p)
			p = &t->peers[t->n_peers++];
		p->id = id;
		p->t = t;
		p->conn = NULL;
		p->dialing = false;
	} else if (p->conn) {
		/* Readdressed: the old connection goes, the dialler redials. */
		conn_close(p->conn);
	}
	p->dialer = t->cfg->id < id;
	p->backoff_ms = BACKOFF_MIN_MS;
	p->sa = sa;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	rlog_write(RLOG_INFO, "peer %llu is at %s", (unsigned long long)id, addr);
	if (t->listener.loop && !t->closing && p->dialer)
		dial(p);
	return 0;
}

void transport_remove_peer(transport *t, uint64_t id)
{
	peer *p = id ? find_peer(t, id) : NULL;

	if (!p)
		return;
	if (t->listener.loop)
		uv_timer_stop(&p->timer);
	p->id = 0;
	if (p->conn)
		conn_close(p->conn);
	p->conn = NULL;
	p->dialing = false;
	rlog_write(RLOG_INFO, "peer %llu forgotten (no longer a member)", (unsigned long long)id);
}

static void on_handle_closed(uv_handle_t *h)
{
}

void transport_close(transport *t)
{
	transport_conn *c, *next;

	t->closing = true;
	if (t->listener.loop) {
		uv_close((uv_handle_t *)&t->listener, on_handle_closed);
		uv_close((uv_handle_t *)&t->sweep, on_handle_closed);
		for (size_t i = 0; i < CONFIG_MAX_PEERS; i++)
			uv_close((uv_handle_t *)&t->peers[i].timer, on_handle_closed);
	}
	for (c = t->conns; c; c = next) {
		next = c->next;
		conn_close(c);
	}
}

void transport_free(transport *t)
{
	if (!t)
		return;
	/* Connections still referenced by unanswered requests: the node drops
	 * its references before freeing the transport, so none should remain. */
	while (t->conns)
		conn_free(t->conns);
	pthread_mutex_destroy(&t->wmu);
	free(t);
}
