/* snapshot_stream.c — chunked snapshot transfer between leader and follower. */
#include "snapshot_stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "config.h"
#include "crc32c.h"
#include "runtime_log.h"

typedef struct send_stream {
	bool active;
	uint64_t peer;
	uint64_t index; /* snapshot index being sent */
	uint64_t total, offset;
	uint8_t *msg; /* the encoded MSG_SNAP, without data */
	size_t msg_len;
	bool started; /* at least the first chunk went out */
	int fail;     /* nonzero: report as failed at the next pump */
} send_stream;

typedef struct recv_stream {
	bool active;
	uint64_t index, expected, total;
} recv_stream;

struct snap_streams {
	transport *t;
	store *st;
	snap_report_fn report;
	void *arg;
	send_stream out[CONFIG_MAX_PEERS];
	struct {
		uint64_t peer;
		recv_stream s;
	} in[CONFIG_MAX_PEERS];
	uint8_t *buf; /* SNAP_CHUNK_BYTES */
};

snap_streams *snap_streams_new(transport *t, store *st, snap_report_fn report, void *arg)
{
	snap_streams *ss = calloc(1, sizeof(*ss));

	if (!ss || !(ss->buf = malloc(SNAP_CHUNK_BYTES))) {
		free(ss);
		return NULL;
	}
	ss->t = t;
	ss->st = st;
	ss->report = report;
	ss->arg = arg;
	return ss;
}

static void stream_clear(send_stream *s)
{
	free(s->msg);
	memset(s, 0, sizeof(*s));
}

void snap_streams_free(snap_streams *ss)
{
	if (!ss)
		return;
	for (size_t i = 0; i < CONFIG_MAX_PEERS; i++)
		stream_clear(&ss->out[i]);
	free(ss->buf);
	free(ss);
}

/* Test hook: RAFTFS_TEST_SNAP_CORRUPT=N flips a byte in the first N chunks
 * this process sends, after their checksum is computed, so tests see a
 * corrupt chunk rejected and the snapshot sent again. */
static void seal_chunk(Transportpb__SnapshotChunk *ch, uint8_t *data)
{
	static long corrupt = -1;

	ch->crc = crc32c_extend(0, data, ch->data.len);
	if (corrupt < 0) {
		const char *e = getenv("RAFTFS_TEST_SNAP_CORRUPT");

		corrupt = e ? strtol(e, NULL, 10) : 0;
	}
	if (corrupt > 0 && ch->data.len > 0) {
		corrupt--;
		data[ch->data.len / 2] ^= 0x5a;
		rlog_write(RLOG_INFO, "test: corrupted the snapshot chunk at %llu",
			   (unsigned long long)ch->offset);
	}
}

static send_stream *stream_for(snap_streams *ss, uint64_t peer, bool create)
{
	send_stream *free_slot = NULL;

	for (size_t i = 0; i < CONFIG_MAX_PEERS; i++) {
		if (ss->out[i].active && ss->out[i].peer == peer)
			return &ss->out[i];
		if (!ss->out[i].active && !free_slot)
			free_slot = &ss->out[i];
	}
	return create ? free_slot : NULL;
}

int snap_send_start(snap_streams *ss, const raft_msg *m)
{
	send_stream *s = stream_for(ss, m->to, true);
	raft_snapshot_meta meta;
	raft_snapshot bare;
	raft_msg copy = *m;
	uint64_t len;
	int rc;

	if (!s)
		return -ENOMEM;
	if (s->active && s->index == m->snapshot->meta.index && !s->fail)
		return 0; /* already streaming this one */
	stream_clear(s);
	s->active = true;
	s->peer = m->to;
	s->index = m->snapshot->meta.index;
	rc = store_snapshot_meta(ss->st, &meta, &len);
	if (rc < 0) {
		s->fail = rc;
		return rc;
	}
	raft_conf_state_free_contents(&meta.conf);
	if (meta.index != s->index) {
		/* The core asked for a snapshot the store no longer has. */
		s->fail = RAFT_ESNAP_OUT_OF_DATE;
		return s->fail;
	}
	s->total = len;
	bare = *m->snapshot;
	bare.data = NULL;
	bare.len = 0;
	copy.snapshot = &bare;
	rc = codec_msg_encode(&copy, 0, &s->msg, &s->msg_len);
	if (rc < 0)
		s->fail = rc;
	RLOG(RLOG_NET, "snapshot at %llu (%llu bytes) to %llu: streaming",
	     (unsigned long long)s->index, (unsigned long long)len, (unsigned long long)m->to);
	return rc;
}

/* Sends chunks of s while the connection has room. 1 when all is sent,
 * 0 when more remains, negative on failure. */
static int pump_one(snap_streams *ss, send_stream *s)
{
	for (;;) {
		Transportpb__SnapshotChunk ch = TRANSPORTPB__SNAPSHOT_CHUNK__INIT;
		raft_snapshot_meta meta;
		uint64_t len;
		size_t queued, n = 0;
		int rc;

		if (s->started && s->offset >= s->total)
			return 1;
		rc = transport_queued(ss->t, s->peer, &queued);
		if (rc < 0)
			return rc;
		if (queued >= SNAP_QUEUE_BYTES)
			return 0;
		/* A newer local snapshot replaces the data under the stream. */
		rc = store_snapshot_meta(ss->st, &meta, &len);
		if (rc < 0)
			return rc;
		raft_conf_state_free_contents(&meta.conf);
		if (meta.index != s->index)
			return RAFT_ESNAP_OUT_OF_DATE;
		if (s->offset < s->total) {
			size_t want = s->total - s->offset < SNAP_CHUNK_BYTES
					  ? (size_t)(s->total - s->offset)
					  : SNAP_CHUNK_BYTES;

			rc = store_snapshot_read(ss->st, s->offset, ss->buf, want, &n);
			if (rc < 0 || n == 0)
				return rc < 0 ? rc : RAFT_EIO;
		}
		ch.message.data = s->msg;
		ch.message.len = s->msg_len;
		ch.offset = s->offset;
		ch.data.data = ss->buf;
		ch.data.len = n;
		ch.total = s->total;
		ch.last = s->offset + n >= s->total;
		seal_chunk(&ch, ss->buf);
		rc = transport_send_chunk(ss->t, s->peer, &ch);
		if (rc == -ENOBUFS)
			return 0;
		if (rc < 0)
			return rc;
		s->offset += n;
		s->started = true;
	}
}

void snap_send_pump(snap_streams *ss)
{
	for (size_t i = 0; i < CONFIG_MAX_PEERS; i++) {
		send_stream *s = &ss->out[i];
		uint64_t peer = s->peer;
		int rc;

		if (!s->active)
			continue;
		rc = s->fail ? s->fail : pump_one(ss, s);
		if (rc == 0)
			continue;
		if (rc < 0)
			rlog_write(RLOG_ERR,
				   "snapshot at %llu to %llu: %s after %llu of %llu bytes",
				   (unsigned long long)s->index, (unsigned long long)peer,
				   rc == -ENOTCONN ? "no connection" : raft_strerror(rc),
				   (unsigned long long)s->offset, (unsigned long long)s->total);
		else
			RLOG(RLOG_NET, "snapshot at %llu to %llu: all %llu bytes sent",
			     (unsigned long long)s->index, (unsigned long long)peer,
			     (unsigned long long)s->total);
		stream_clear(s);
		ss->report(ss->arg, peer, rc < 0);
	}
}

static recv_stream *recv_for(snap_streams *ss, uint64_t from)
{
	size_t i, empty = CONFIG_MAX_PEERS;

	for (i = 0; i < CONFIG_MAX_PEERS; i++) {
		if (ss->in[i].peer == from)
			return &ss->in[i].s;
		if (ss->in[i].peer == 0 && empty == CONFIG_MAX_PEERS)
			empty = i;
	}
	if (empty == CONFIG_MAX_PEERS)
		return NULL;
	ss->in[empty].peer = from;
	return &ss->in[empty].s;
}

/* Whether the store's staging holds snapshot index with len bytes so far
 * (a local snapshot may have taken it over since the last chunk). */
static bool staging_is(snap_streams *ss, uint64_t index, uint64_t len)
{
	uint64_t i, l;

	return store_snapshot_staged(ss->st, &i, &l) && i == index && l == len;
}

int snap_recv_chunk(snap_streams *ss, uint64_t from, const Transportpb__SnapshotChunk *ch,
		    raft_msg *msg)
{
	recv_stream *r = recv_for(ss, from);
	int rc;

	if (!r)
		return -ENOMEM;
	rc = codec_msg_decode(ch->message.data, ch->message.len, msg);
	if (rc < 0 || msg->type != RAFT_MSG_SNAP || msg->from != from) {
		rlog_write(RLOG_ERR, "snapshot chunk from %llu: bad message: dropped",
			   (unsigned long long)from);
		if (rc == 0)
			raft_msg_free_contents(msg);
		return RAFT_ECORRUPT;
	}
	if (ch->offset == 0) {
		/* A new stream (or a restarted one) starts a new staging. */
		rc = store_snapshot_begin(ss->st, &msg->snapshot->meta);
		if (rc < 0) {
			if (rc != RAFT_ESNAP_OUT_OF_DATE)
				rlog_write(RLOG_ERR, "store: staging the snapshot at %llu: %s",
					   (unsigned long long)msg->snapshot->meta.index,
					   store_errmsg(ss->st));
			r->active = false;
			raft_msg_free_contents(msg);
			return rc;
		}
		/* The store stages one snapshot at a time: streams from other
		 * peers (an earlier leader) lost theirs. */
		snap_recv_reset(ss);
		r->active = true;
		r->index = msg->snapshot->meta.index;
		r->expected = 0;
		r->total = ch->total;
	}
	if (!r->active || r->index != msg->snapshot->meta.index || ch->offset != r->expected ||
	    ch->total != r->total || ch->offset + ch->data.len > r->total) {
		RLOG(RLOG_NET, "snapshot chunk from %llu at %llu: not the expected one: dropped",
		     (unsigned long long)from, (unsigned long long)ch->offset);
		r->active = false;
		raft_msg_free_contents(msg);
		return RAFT_EINVAL;
	}
	if (ch->crc != crc32c_extend(0, ch->data.data, ch->data.len)) {
		rlog_write(RLOG_ERR, "snapshot at %llu from %llu, chunk at %llu: checksum mismatch: "
				     "rejected (the leader will send the snapshot again)",
			   (unsigned long long)r->index, (unsigned long long)from,
			   (unsigned long long)ch->offset);
		r->active = false;
		raft_msg_free_contents(msg);
		return RAFT_ECORRUPT;
	}
	if (!staging_is(ss, r->index, ch->offset)) {
		RLOG(RLOG_NET, "snapshot at %llu from %llu: the staging was taken over: dropped",
		     (unsigned long long)r->index, (unsigned long long)from);
		r->active = false;
		raft_msg_free_contents(msg);
		return RAFT_EINVAL;
	}
	if (ch->data.len) {
		rc = store_snapshot_write(ss->st, ch->offset, ch->data.data, ch->data.len);
		if (rc < 0) {
			rlog_write(RLOG_ERR, "store: snapshot at %llu, chunk at %llu: %s",
				   (unsigned long long)r->index, (unsigned long long)ch->offset,
				   store_errmsg(ss->st));
			r->active = false;
			raft_msg_free_contents(msg);
			return rc;
		}
	}
	r->expected += ch->data.len;
	if (!ch->last) {
		raft_msg_free_contents(msg);
		return 0;
	}
	r->active = false;
	if (r->expected != r->total) {
		raft_msg_free_contents(msg);
		return RAFT_EINVAL;
	}
	/* The data is staged in the store; the core gets the metadata. */
	free(msg->snapshot->data);
	msg->snapshot->data = NULL;
	msg->snapshot->len = 0;
	return 1;
}

void snap_recv_reset(snap_streams *ss)
{
	for (size_t i = 0; i < CONFIG_MAX_PEERS; i++)
		ss->in[i].s.active = false;
}
