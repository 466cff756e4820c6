/* snapshot_recv.c — the follower's half of the chunked snapshot transfer.
 *
 * The loop thread checks each chunk (order, length, CRC-32C) and queues a
 * copy; a writer thread per incoming stream appends the chunks to the
 * store's staging (store_snap_writer), so the loop thread never waits for
 * RocksDB: a 1 MiB write there, behind a memtable flush on a loaded disk,
 * stalled the loop for 0.5-2 s, long enough to miss heartbeats and start
 * elections (Raft §5.2: a follower must answer within the election
 * timeout). The loop records on the store how much the writer wrote (what
 * a broken transfer resumes from) and acknowledges it to the sender, which
 * keeps at most the window granted in the answer to its offer beyond the
 * acknowledged offset: a slow disk slows the stream, and the queue here
 * stays within that window.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "crc32c.h"
#include "runtime_log.h"
#include "snapshot_stream_int.h"

/* A received chunk on its way to the writer thread. */
typedef struct wchunk {
	struct wchunk *next;
	uint64_t offset;
	size_t len;
	uint8_t data[];
} wchunk;

struct recv_writer {
	snap_streams *ss;
	store_snap_writer *w; /* NULL once the loop took it back */
	pthread_t thread;
	_Atomic bool cancel; /* a write waiting for RocksDB gives up */
	recv_writer *next;   /* in ss->retired */
	/* Shared with the thread, under mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	wchunk *head, *tail;
	size_t queued;	  /* bytes queued or being written */
	uint64_t written; /* the staging's length after the writes so far */
	bool stop;	  /* loop: drop the queue and exit */
	bool exited;	  /* thread: through, touches nothing of the writer */
	int err;	  /* thread: a write failed with this (message in errmsg) */
	char errmsg[256];
};

/* Test hook: RAFTFS_TEST_SNAP_WRITE_DELAY_MS=N makes every received chunk
 * take N ms longer to stage (a slow disk), so tests can tell whether the
 * staging holds up the follower's loop thread. */
static void write_delay(void)
{
	const char *e = getenv("RAFTFS_TEST_SNAP_WRITE_DELAY_MS");
	long ms = e ? strtol(e, NULL, 10) : 0;

	if (ms > 0) {
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

		nanosleep(&ts, NULL);
	}
}

/* The writer thread: appends queued chunks to the staging in order until
 * told to stop or a write fails; wakes the loop after each. */
static void *writer_main(void *arg)
{
	recv_writer *wr = arg;
	snap_streams *ss = wr->ss;

	pthread_mutex_lock(&wr->mu);
	for (;;) {
		wchunk *c;
		int rc;

		while (!wr->stop && !wr->head)
			pthread_cond_wait(&wr->cv, &wr->mu);
		if (wr->stop)
			break;
		c = wr->head;
		wr->head = c->next;
		if (!wr->head)
			wr->tail = NULL;
		pthread_mutex_unlock(&wr->mu);
		write_delay();
		rc = store_snap_writer_append(wr->w, c->data, c->len, &wr->cancel);
		pthread_mutex_lock(&wr->mu);
		wr->queued -= c->len;
		if (rc < 0) {
			wr->err = rc;
			snprintf(wr->errmsg, sizeof(wr->errmsg), "%s",
				 store_snap_writer_errmsg(wr->w));
		} else {
			wr->written = c->offset + c->len;
		}
		free(c);
		pthread_mutex_unlock(&wr->mu);
		ss->wake(ss->arg);
		pthread_mutex_lock(&wr->mu);
		if (rc < 0)
			break;
	}
	wr->exited = true;
	pthread_mutex_unlock(&wr->mu);
	/* The loop joins before it frees wr, and ss outlives every writer. */
	ss->wake(ss->arg);
	return NULL;
}

/* Starts r's writer, appending to the store's staging from its length. */
static int writer_start(snap_streams *ss, recv_stream *r)
{
	recv_writer *wr = calloc(1, sizeof(*wr));
	int rc;

	if (!wr)
		return -ENOMEM;
	rc = store_snap_writer_open(ss->st, &wr->w);
	if (rc < 0) {
		free(wr);
		return rc;
	}
	wr->ss = ss;
	store_snapshot_staged(ss->st, NULL, &wr->written);
	pthread_mutex_init(&wr->mu, NULL);
	pthread_cond_init(&wr->cv, NULL);
	if (pthread_create(&wr->thread, NULL, writer_main, wr) != 0) {
		pthread_cond_destroy(&wr->cv);
		pthread_mutex_destroy(&wr->mu);
		store_snap_writer_discard(ss->st, wr->w);
		free(wr);
		return -EAGAIN;
	}
	r->wr = wr;
	r->recorded = wr->written;
	return 0;
}

/* Ends r's writer without waiting for it: queued chunks are dropped, a
 * write under way finishes (or gives up, if RocksDB stalls it) and the
 * thread exits; snap_recv_pump joins it later. */
static void writer_retire(snap_streams *ss, recv_stream *r)
{
	recv_writer *wr = r->wr;

	if (!wr)
		return;
	r->wr = NULL;
	atomic_store(&wr->cancel, true);
	pthread_mutex_lock(&wr->mu);
	wr->stop = true;
	while (wr->head) {
		wchunk *c = wr->head;

		wr->head = c->next;
		wr->queued -= c->len;
		free(c);
	}
	wr->tail = NULL;
	pthread_cond_signal(&wr->cv);
	pthread_mutex_unlock(&wr->mu);
	wr->next = ss->retired;
	ss->retired = wr;
}

/* Joins retired writers whose thread exited (all of them if wait) and
 * gives their store writers back: chunks written into a staging that was
 * replaced meanwhile are deleted (store_snap_writer_discard). */
static void writers_reap(snap_streams *ss, bool wait)
{
	recv_writer **p = &ss->retired;

	while (*p) {
		recv_writer *wr = *p;
		bool gone;

		pthread_mutex_lock(&wr->mu);
		gone = wr->exited;
		pthread_mutex_unlock(&wr->mu);
		if (!gone && !wait) {
			p = &wr->next;
			continue;
		}
		*p = wr->next;
		pthread_join(wr->thread, NULL);
		store_snap_writer_discard(ss->st, wr->w);
		pthread_cond_destroy(&wr->cv);
		pthread_mutex_destroy(&wr->mu);
		free(wr);
	}
}

/* Tells the sender of a stream (identified by its message and total) how
 * much of it is staged, or that it was dropped (reject). Only to senders
 * that asked for it: an older one would take the answer for a chunk. */
static void send_ack(snap_streams *ss, uint64_t to, const uint8_t *msg, size_t msg_len,
		     uint64_t total, uint64_t offset, bool reject)
{
	Transportpb__SnapshotChunk a = TRANSPORTPB__SNAPSHOT_CHUNK__INIT;

	a.message.data = (uint8_t *)msg;
	a.message.len = msg_len;
	a.total = total;
	a.offset = offset;
	a.ack = true;
	a.reject = reject;
	a.crc = crc32c_extend(0, NULL, 0);
	if (transport_send_chunk(ss->t, to, &a) < 0)
		RLOG(RLOG_NET, "snapshot: the %s to %llu was not sent",
		     reject ? "refusal" : "acknowledgement", (unsigned long long)to);
}

/* Ends r's stream: its writer goes; the sender, if it honours a window,
 * hears that the stream was dropped, so it ends it instead of waiting for
 * acknowledgements, and its core sends the snapshot again. The stream is
 * named by msg (the chunk that was dropped, or r's own). */
static void recv_abort(snap_streams *ss, uint64_t from, recv_stream *r, const uint8_t *msg,
		       size_t msg_len, uint64_t total)
{
	if (r->acks && msg)
		send_ack(ss, from, msg, msg_len, total, r->recorded, true);
	writer_retire(ss, r);
	r->active = false;
	r->last = false;
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

/* Keeps a copy of the stream's message (echoed in acknowledgements). */
static int keep_msg(recv_stream *r, const ProtobufCBinaryData *m)
{
	uint8_t *p = malloc(m->len ? m->len : 1);

	if (!p)
		return -ENOMEM;
	memcpy(p, m->data, m->len);
	free(r->msg);
	r->msg = p;
	r->msg_len = m->len;
	return 0;
}

/* An offer from `from`: answers where its stream should go on, and the
 * window it may keep unacknowledged. What is staged resumes only if it
 * came from a stream of the very same image: the same sender in the same
 * term (one leader per term, and its snapshot at an index never changes)
 * with the same snapshot index and length. The store keeps that source
 * with the staging, so this holds across a restart of this node too.
 * Anything else starts from 0. */
static void on_offer(snap_streams *ss, uint64_t from, recv_stream *r, const raft_msg *m,
		     const Transportpb__SnapshotChunk *ch)
{
	Transportpb__SnapshotChunk ans = TRANSPORTPB__SNAPSHOT_CHUNK__INIT;
	store_snap_source src;
	uint64_t index, staged = 0;

	/* A new stream of the sender: its previous one is over. */
	writer_retire(ss, r);
	r->active = false;
	r->last = false;
	r->acks = ch->acks;
	if (store_snapshot_staged_source(ss->st, &src) == 1 && src.from == from &&
	    src.term == m->term && src.total == ch->total &&
	    store_snapshot_staged(ss->st, &index, &staged) && index == m->snapshot->meta.index &&
	    staged > 0 && staged < ch->total && keep_msg(r, &ch->message) == 0 &&
	    writer_start(ss, r) == 0) {
		r->active = true;
		r->index = index;
		r->term = m->term;
		r->total = ch->total;
		r->expected = staged;
		rlog_write(RLOG_INFO,
			   "snapshot at %llu from %llu: resuming at %llu of %llu bytes (staged "
			   "before the transfer broke)",
			   (unsigned long long)index, (unsigned long long)from,
			   (unsigned long long)staged, (unsigned long long)ch->total);
	} else {
		staged = 0; /* the chunk at 0 begins a new staging */
	}
	ans.message = ch->message;
	ans.total = ch->total;
	ans.offset = staged;
	ans.resume = true;
	ans.window = SNAP_WINDOW_BYTES;
	ans.crc = crc32c_extend(0, NULL, 0);
	if (transport_send_chunk(ss->t, from, &ans) < 0)
		RLOG(RLOG_NET, "snapshot at %llu from %llu: the answer to its offer was not sent",
		     (unsigned long long)m->snapshot->meta.index, (unsigned long long)from);
}

/* The chunk at offset 0: a new stream (or a restarted one) starts a new
 * staging, and a writer for it. */
static int begin_stream(snap_streams *ss, uint64_t from, recv_stream *r, const raft_msg *m,
			const Transportpb__SnapshotChunk *ch)
{
	store_snap_source src = {.from = from, .term = m->term, .total = ch->total};
	int rc;

	writer_retire(ss, r);
	r->active = false;
	r->last = false;
	rc = store_snapshot_begin(ss->st, &m->snapshot->meta);
	if (rc == 0)
		rc = store_snapshot_stage_source(ss->st, &src);
	if (rc < 0) {
		if (rc != RAFT_ESNAP_OUT_OF_DATE)
			rlog_write(RLOG_ERR, "store: staging the snapshot at %llu from %llu: %s",
				   (unsigned long long)m->snapshot->meta.index,
				   (unsigned long long)from, store_errmsg(ss->st));
		return rc;
	}
	/* The store stages one snapshot at a time: streams from other peers
	 * (an earlier leader) lost theirs. */
	snap_recv_reset(ss);
	ss->done = false;
	rc = keep_msg(r, &ch->message);
	if (rc == 0)
		rc = writer_start(ss, r);
	if (rc < 0) {
		rlog_write(RLOG_ERR, "snapshot at %llu from %llu: no writer: %s",
			   (unsigned long long)m->snapshot->meta.index, (unsigned long long)from,
			   rc == -ENOMEM ? "out of memory" : store_errmsg(ss->st));
		return rc;
	}
	r->active = true;
	r->index = m->snapshot->meta.index;
	r->term = m->term;
	r->expected = 0;
	r->total = ch->total;
	return 0;
}

/* Hands a checked chunk to r's writer (a copy: the transport frees ch). A
 * sender without a window is cut off once SNAP_RECV_QUEUE_MAX waits; it
 * resumes from what was staged by then. */
static int enqueue(recv_stream *r, const Transportpb__SnapshotChunk *ch)
{
	recv_writer *wr = r->wr;
	wchunk *c;
	bool full;

	pthread_mutex_lock(&wr->mu);
	full = !r->acks && wr->queued > SNAP_RECV_QUEUE_MAX;
	pthread_mutex_unlock(&wr->mu);
	if (full)
		return -ENOBUFS;
	c = malloc(sizeof(*c) + ch->data.len);
	if (!c)
		return -ENOMEM;
	c->next = NULL;
	c->offset = ch->offset;
	c->len = ch->data.len;
	memcpy(c->data, ch->data.data, ch->data.len);
	pthread_mutex_lock(&wr->mu);
	if (wr->tail)
		wr->tail->next = c;
	else
		wr->head = c;
	wr->tail = c;
	wr->queued += c->len;
	pthread_cond_signal(&wr->cv);
	pthread_mutex_unlock(&wr->mu);
	return 0;
}

int snap_recv_chunk(snap_streams *ss, uint64_t from, const Transportpb__SnapshotChunk *ch)
{
	recv_stream *r;
	raft_msg m;
	int rc;

	if (ch->resume) {
		snap_send_on_answer(ss, from, ch);
		return 0;
	}
	if (ch->ack) {
		snap_send_on_ack(ss, from, ch);
		return 0;
	}
	r = recv_for(ss, from);
	if (!r)
		return -ENOMEM;
	rc = codec_msg_decode(ch->message.data, ch->message.len, &m);
	if (rc < 0 || m.type != RAFT_MSG_SNAP || m.from != from) {
		rlog_write(RLOG_ERR, "snapshot chunk from %llu: bad message: dropped",
			   (unsigned long long)from);
		if (rc == 0)
			raft_msg_free_contents(&m);
		return RAFT_ECORRUPT;
	}
	if (ch->offer) {
		on_offer(ss, from, r, &m, ch);
		raft_msg_free_contents(&m);
		return 0;
	}
	if (ch->offset == 0) {
		rc = begin_stream(ss, from, r, &m, ch);
		if (rc < 0) {
			recv_abort(ss, from, r, ch->message.data, ch->message.len, ch->total);
			raft_msg_free_contents(&m);
			return rc;
		}
	}
	if (!r->active || r->last || r->index != m.snapshot->meta.index || r->term != m.term ||
	    ch->offset != r->expected || ch->total != r->total ||
	    ch->offset + ch->data.len > r->total) {
		RLOG(RLOG_NET, "snapshot chunk from %llu at %llu: not the expected one: dropped",
		     (unsigned long long)from, (unsigned long long)ch->offset);
		rc = RAFT_EINVAL;
	} else if (ch->crc != crc32c_extend(0, ch->data.data, ch->data.len)) {
		rlog_write(RLOG_ERR,
			   "snapshot at %llu from %llu, chunk at %llu: checksum mismatch: "
			   "rejected (the leader will send the snapshot again)",
			   (unsigned long long)r->index, (unsigned long long)from,
			   (unsigned long long)ch->offset);
		rc = RAFT_ECORRUPT;
	} else if (ch->last && ch->offset + ch->data.len != r->total) {
		rc = RAFT_EINVAL;
	} else if (ch->data.len && (rc = enqueue(r, ch)) < 0) {
		rlog_write(RLOG_ERR, "snapshot at %llu from %llu, chunk at %llu: %s: dropped",
			   (unsigned long long)r->index, (unsigned long long)from,
			   (unsigned long long)ch->offset,
			   rc == -ENOBUFS ? "the sender keeps no window and the queue is full"
					  : "out of memory");
	}
	raft_msg_free_contents(&m);
	if (rc < 0) {
		recv_abort(ss, from, r, ch->message.data, ch->message.len, ch->total);
		return rc;
	}
	r->expected += ch->data.len;
	r->last = ch->last;
	RLOG(RLOG_NET, "snapshot at %llu from %llu: received %llu of %llu bytes",
	     (unsigned long long)r->index, (unsigned long long)from,
	     (unsigned long long)r->expected, (unsigned long long)r->total);
	return 0;
}

void snap_recv_refuse(snap_streams *ss, uint64_t from, const Transportpb__SnapshotChunk *ch)
{
	recv_stream *r = recv_for(ss, from);

	if (r && r->acks && !ch->offer && !ch->resume && !ch->ack)
		send_ack(ss, from, ch->message.data, ch->message.len, ch->total, 0, true);
}

/* The stream of r is staged whole: makes the writer's length the staged
 * length and gives the core its message. 1 with *msg, or a negative code
 * (the staging was taken over meanwhile). */
static int complete(snap_streams *ss, uint64_t from, recv_stream *r, raft_msg *msg)
{
	recv_writer *wr = r->wr;
	store_snap_writer *w;
	int rc;

	pthread_mutex_lock(&wr->mu);
	w = wr->w; /* the thread is idle: everything is written */
	wr->w = NULL;
	pthread_mutex_unlock(&wr->mu);
	writer_retire(ss, r);
	r->active = false;
	r->last = false;
	rc = store_snapshot_stage_commit(ss->st, w);
	if (rc == 0)
		rc = codec_msg_decode(r->msg, r->msg_len, msg);
	if (rc < 0) {
		rlog_write(RLOG_ERR, "snapshot at %llu from %llu: staged whole, but %s: dropped",
			   (unsigned long long)r->index, (unsigned long long)from,
			   rc == RAFT_ESNAP_OUT_OF_DATE ? "its staging was taken over"
							: raft_strerror(rc));
		return rc;
	}
	ss->done = true;
	ss->done_index = r->index;
	ss->done_total = r->total;
	/* The data is staged in the store; the core gets the metadata. */
	free(msg->snapshot->data);
	msg->snapshot->data = NULL;
	msg->snapshot->len = 0;
	return 1;
}

int snap_recv_pump(snap_streams *ss, raft_msg *msg)
{
	writers_reap(ss, false);
	for (size_t i = 0; i < CONFIG_MAX_PEERS; i++) {
		recv_stream *r = &ss->in[i].s;
		uint64_t from = ss->in[i].peer, written;
		recv_writer *wr = r->wr;
		char why[256];
		int err, rc;

		if (!wr)
			continue;
		pthread_mutex_lock(&wr->mu);
		written = wr->written;
		err = wr->err;
		if (err)
			snprintf(why, sizeof(why), "%s", wr->errmsg);
		pthread_mutex_unlock(&wr->mu);
		if (err) {
			if (err != RAFT_ESNAP_OUT_OF_DATE)
				rlog_write(RLOG_ERR, "snapshot at %llu from %llu: %s: dropped",
					   (unsigned long long)r->index, (unsigned long long)from,
					   why);
			recv_abort(ss, from, r, r->msg, r->msg_len, r->total);
			continue;
		}
		if (written > r->recorded) {
			rc = store_snapshot_stage_record(ss->st, wr->w, written);
			if (rc < 0) {
				if (rc != RAFT_ESNAP_OUT_OF_DATE)
					rlog_write(RLOG_ERR, "store: snapshot at %llu: %s",
						   (unsigned long long)r->index,
						   store_errmsg(ss->st));
				recv_abort(ss, from, r, r->msg, r->msg_len, r->total);
				continue;
			}
			r->recorded = written;
			if (r->acks)
				send_ack(ss, from, r->msg, r->msg_len, r->total, written, false);
			RLOG(RLOG_NET, "snapshot at %llu from %llu: staged %llu of %llu bytes",
			     (unsigned long long)r->index, (unsigned long long)from,
			     (unsigned long long)written, (unsigned long long)r->total);
		}
		if (r->last && written == r->total) {
			rc = complete(ss, from, r, msg);
			if (rc == 1)
				return 1;
		}
	}
	return 0;
}

bool snap_recv_whole(const snap_streams *ss, uint64_t index, uint64_t len)
{
	return ss->done && ss->done_index == index && ss->done_total == len;
}

void snap_recv_reset(snap_streams *ss)
{
	for (size_t i = 0; i < CONFIG_MAX_PEERS; i++) {
		recv_stream *r = &ss->in[i].s;

		if (r->active || r->wr)
			recv_abort(ss, ss->in[i].peer, r, r->msg, r->msg_len, r->total);
	}
}

void snap_recv_free(snap_streams *ss)
{
	for (size_t i = 0; i < CONFIG_MAX_PEERS; i++) {
		writer_retire(ss, &ss->in[i].s);
		free(ss->in[i].s.msg);
		ss->in[i].s.msg = NULL;
	}
	writers_reap(ss, true);
}
