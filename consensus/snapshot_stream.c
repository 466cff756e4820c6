/* snapshot_stream.c — chunked snapshot transfer between leader and follower.
 *
 * Sending: each stream pins the store's current snapshot (a reader, see
 * store.h) and a reader thread of its own reads it ahead, a stored chunk
 * at a time, into a small ring; the loop thread only moves what was read
 * onto the connection while its queue has room. So a stream costs the
 * loop thread a memcpy into the transport per chunk, never a disk read:
 * with 100 ms election timeouts, a loop that waited for RocksDB (an
 * iterator, a seek and a 1 MiB read per chunk) missed heartbeats and
 * elections followed.
 *
 * Resuming: a stream starts with an offer; the follower answers with the
 * length it already staged of that very image (same sender, term, index,
 * snapshot term and length) and the stream goes on from there.
 *
 * Flow control: the answer also grants a window; the stream then keeps at
 * most that many bytes sent beyond what the follower acknowledged as
 * staged (snapshot_recv.c), so a follower whose disk is slow slows the
 * stream down instead of queueing it in memory, and a stream the follower
 * dropped (it says so) ends at once instead of running to its end.
 */
#include "snapshot_stream.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "config.h"
#include "crc32c.h"
#include "runtime_log.h"
#include "snapshot_stream_int.h"

/* A stored chunk read ahead: data[0..len) at offset, its CRC-32C. */
typedef struct slot {
	uint8_t *data;
	uint64_t offset;
	size_t len;
	uint32_t crc;
} slot;

struct send_stream {
	snap_streams *ss;
	uint64_t peer;
	uint64_t index; /* snapshot index being sent */
	uint64_t total, offset;
	uint8_t *msg; /* the encoded MSG_SNAP, without data */
	size_t msg_len;
	bool offered;	      /* the offer went out; waiting for the answer */
	bool reading;	      /* the reader thread runs (from the answered offset) */
	uint64_t offer_until; /* ms (monotonic): then start from 0 anyway */
	bool started;	      /* at least the first chunk went out */
	uint64_t window;      /* granted by the follower's answer; 0: none */
	uint64_t acked;	      /* bytes the follower acknowledged as staged */
	uint64_t acked_at;    /* ms (monotonic) of the last acknowledgement */
	int fail;	      /* nonzero: report as failed at the next pump */
	store_snap_reader *rd;

	/* Shared with the reader thread, under mu. The loop owns the slots
	 * ring[head .. head+count) once they are counted in; the reader the
	 * others. */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	slot ring[SNAP_READAHEAD];
	size_t head, count;
	bool stop;	 /* loop: the stream ends, the thread is to exit */
	bool orphan;	 /* loop: ...and free the stream as it exits */
	bool exited;	 /* reader: through, touches nothing of the stream */
	bool eof;	 /* reader: everything read */
	int rerr;	 /* reader: failed with this code (message in rerrmsg) */
	bool want_wake;	 /* loop: the ring was empty, wake me */
	char rerrmsg[256];
};

uint64_t snap_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void store_lock(snap_streams *ss)
{
	if (ss->store_mu)
		pthread_mutex_lock(ss->store_mu);
}

static void store_unlock(snap_streams *ss)
{
	if (ss->store_mu)
		pthread_mutex_unlock(ss->store_mu);
}

snap_streams *snap_streams_new(transport *t, store *st, pthread_mutex_t *store_mu,
			       snap_report_fn report, snap_wake_fn wake, void *arg)
{
	snap_streams *ss = calloc(1, sizeof(*ss));

	if (!ss)
		return NULL;
	pthread_mutex_init(&ss->mu, NULL);
	pthread_cond_init(&ss->cv, NULL);
	ss->t = t;
	ss->st = st;
	ss->store_mu = store_mu;
	ss->report = report;
	ss->wake = wake;
	ss->arg = arg;
	return ss;
}

static void stream_release(send_stream *s)
{
	store_snap_reader_close(s->rd);
	for (size_t i = 0; i < SNAP_READAHEAD; i++)
		free(s->ring[i].data);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s->msg);
	free(s);
}

/* Ends a stream without waiting: a reader thread still inside a read
 * (the disk may take its time: the loop thread must not wait for it) is
 * told to stop and frees the stream as it exits. */
static void stream_free(send_stream *s)
{
	bool orphaned = false;

	if (!s)
		return;
	if (s->reading) {
		pthread_mutex_lock(&s->mu);
		s->stop = true;
		orphaned = s->orphan = !s->exited;
		pthread_cond_signal(&s->cv);
		pthread_mutex_unlock(&s->mu);
	}
	if (!orphaned)
		stream_release(s);
}

void snap_streams_free(snap_streams *ss)
{
	if (!ss)
		return;
	for (size_t i = 0; i < CONFIG_MAX_PEERS; i++)
		stream_free(ss->out[i]);
	snap_recv_free(ss);
	pthread_mutex_lock(&ss->mu);
	while (ss->readers > 0)
		pthread_cond_wait(&ss->cv, &ss->mu);
	pthread_mutex_unlock(&ss->mu);
	pthread_cond_destroy(&ss->cv);
	pthread_mutex_destroy(&ss->mu);
	free(ss);
}

/* Test hook: RAFTFS_TEST_SNAP_CORRUPT=N flips a byte in the first N chunks
 * this process sends, after their checksum is computed, so tests see a
 * corrupt chunk rejected and the snapshot sent again. */
static void maybe_corrupt(Transportpb__SnapshotChunk *ch, uint8_t *data)
{
	static long corrupt = -1;

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

/* Test hook: RAFTFS_TEST_SNAP_READ_DELAY_MS=N makes every chunk read for
 * sending take N ms longer (a slow disk), so tests can tell whether a
 * stream's reads hold up the loop thread. */
static void read_delay(void)
{
	const char *e = getenv("RAFTFS_TEST_SNAP_READ_DELAY_MS");
	long ms = e ? strtol(e, NULL, 10) : 0;

	if (ms > 0) {
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

		nanosleep(&ts, NULL);
	}
}

/* The reader thread: fills free slots of the ring with the next stored
 * chunks until everything is read, it fails, or the stream stops. */
static void *reader_main(void *arg)
{
	send_stream *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		slot *sl;
		int rc;
		bool wake;

		while (!s->stop && s->count == SNAP_READAHEAD)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->stop)
			break;
		sl = &s->ring[(s->head + s->count) % SNAP_READAHEAD];
		pthread_mutex_unlock(&s->mu);
		rc = store_snap_reader_read(s->rd, sl->data, SNAP_CHUNK_BYTES, &sl->offset,
					    &sl->len);
		if (rc == 0 && sl->len) {
			sl->crc = crc32c_extend(0, sl->data, sl->len);
			read_delay();
		}
		pthread_mutex_lock(&s->mu);
		if (rc < 0) {
			s->rerr = rc;
			snprintf(s->rerrmsg, sizeof(s->rerrmsg), "%s",
				 store_snap_reader_errmsg(s->rd));
		} else if (sl->len == 0) {
			s->eof = true;
		} else {
			s->count++;
		}
		wake = s->want_wake;
		s->want_wake = false;
		if (wake) {
			pthread_mutex_unlock(&s->mu);
			s->ss->wake(s->ss->arg);
			pthread_mutex_lock(&s->mu);
		}
		if (rc < 0 || sl->len == 0)
			break;
	}
	{
		snap_streams *ss = s->ss;
		bool orphan = s->orphan;

		s->exited = true;
		pthread_mutex_unlock(&s->mu);
		if (orphan)
			stream_release(s);
		pthread_mutex_lock(&ss->mu);
		ss->readers--;
		pthread_cond_broadcast(&ss->cv);
		pthread_mutex_unlock(&ss->mu);
	}
	return NULL;
}

static size_t stream_slot(snap_streams *ss, uint64_t peer)
{
	size_t free_slot = CONFIG_MAX_PEERS;

	for (size_t i = 0; i < CONFIG_MAX_PEERS; i++) {
		if (ss->out[i] && ss->out[i]->peer == peer)
			return i;
		if (!ss->out[i] && free_slot == CONFIG_MAX_PEERS)
			free_slot = i;
	}
	return free_slot;
}

/* The offer (or, with no data, any chunk of s without data). */
static int send_bare(snap_streams *ss, send_stream *s, bool offer)
{
	Transportpb__SnapshotChunk ch = TRANSPORTPB__SNAPSHOT_CHUNK__INIT;

	ch.message.data = s->msg;
	ch.message.len = s->msg_len;
	ch.total = s->total;
	ch.offer = offer;
	ch.acks = offer; /* this sender keeps to the window the answer grants */
	ch.last = !offer;
	ch.crc = crc32c_extend(0, NULL, 0);
	return transport_send_chunk(ss->t, s->peer, &ch);
}

int snap_send_start(snap_streams *ss, const raft_msg *m)
{
	size_t i = stream_slot(ss, m->to);
	raft_snapshot bare;
	raft_msg copy = *m;
	send_stream *s;
	uint64_t index;
	int rc;

	if (i == CONFIG_MAX_PEERS)
		return -ENOMEM;
	s = ss->out[i];
	if (s && s->index == m->snapshot->meta.index && !s->fail)
		return 0; /* already streaming this one */
	stream_free(s);
	ss->out[i] = s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ss = ss;
	s->peer = m->to;
	s->index = m->snapshot->meta.index;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	for (size_t k = 0; k < SNAP_READAHEAD; k++)
		if (!(s->ring[k].data = malloc(SNAP_CHUNK_BYTES)))
			return s->fail = -ENOMEM;
	store_lock(ss);
	rc = store_snap_reader_open(ss->st, 0, &s->rd, &index, &s->total);
	if (rc < 0)
		rlog_write(RLOG_ERR, "snapshot at %llu to %llu: %s", (unsigned long long)s->index,
			   (unsigned long long)s->peer, store_errmsg(ss->st));
	store_unlock(ss);
	if (rc < 0)
		return s->fail = rc;
	if (index != s->index) /* the core asked for one the store no longer has */
		return s->fail = RAFT_ESNAP_OUT_OF_DATE;
	bare = *m->snapshot;
	bare.data = NULL;
	bare.len = 0;
	copy.snapshot = &bare;
	rc = codec_msg_encode(&copy, 0, &s->msg, &s->msg_len);
	if (rc < 0)
		return s->fail = rc;
	RLOG(RLOG_NET, "snapshot at %llu (%llu bytes) to %llu: streaming",
	     (unsigned long long)s->index, (unsigned long long)s->total,
	     (unsigned long long)m->to);
	return 0;
}

/* Starts the reader thread at offset (what the follower has). */
static int start_reading(send_stream *s, uint64_t offset)
{
	uint64_t index, len;
	store_snap_reader *rd;

	if (offset > 0) {
		/* Reopen at the offset, on the same pinned data: the old
		 * reader keeps it pinned until the new one holds it too. */
		int rc;

		store_lock(s->ss);
		rc = store_snap_reader_open(s->ss->st, offset, &rd, &index, &len);
		store_unlock(s->ss);

		if (rc < 0)
			return rc;
		if (index != s->index || len != s->total) {
			/* A newer snapshot is current: no reader of this one
			 * at another offset exists. Start over from 0. */
			store_snap_reader_close(rd);
			offset = 0;
		} else {
			store_snap_reader_close(s->rd);
			s->rd = rd;
		}
		if (offset)
			rlog_write(RLOG_INFO,
				   "snapshot at %llu to %llu: resuming at %llu of %llu bytes",
				   (unsigned long long)s->index, (unsigned long long)s->peer,
				   (unsigned long long)offset, (unsigned long long)s->total);
	}
	s->offset = offset;
	s->started = offset > 0;
	pthread_mutex_lock(&s->ss->mu);
	s->ss->readers++;
	pthread_mutex_unlock(&s->ss->mu);
	if (pthread_create(&s->thread, NULL, reader_main, s) != 0) {
		pthread_mutex_lock(&s->ss->mu);
		s->ss->readers--;
		pthread_mutex_unlock(&s->ss->mu);
		return -EAGAIN;
	}
	pthread_detach(s->thread);
	s->reading = true;
	return 0;
}

/* The window is full, or everything was sent: waits for the follower's
 * acknowledgements (0), but not for one that stopped staging (a resumed
 * stream goes on from what it staged): -ETIMEDOUT. A stream ends (and is
 * reported to the core) only once the follower staged all of it, so the
 * core sends no other snapshot meanwhile. */
static int ack_wait(const send_stream *s)
{
	if (snap_mono_ms() - s->acked_at < SNAP_ACK_WAIT_MS)
		return 0;
	rlog_write(RLOG_ERR, "snapshot at %llu to %llu: nothing acknowledged for %u ms",
		   (unsigned long long)s->index, (unsigned long long)s->peer, SNAP_ACK_WAIT_MS);
	return -ETIMEDOUT;
}

/* Sends chunks of s while the connection has room and the reader has
 * them. 1 when all is sent, 0 when more remains, negative on failure. */
static int pump_one(snap_streams *ss, send_stream *s)
{
	size_t queued;
	int rc;

	if (!s->offered) {
		rc = send_bare(ss, s, true);
		if (rc == -ENOBUFS)
			return 0;
		if (rc < 0)
			return rc;
		s->offered = true;
		s->offer_until = snap_mono_ms() + SNAP_OFFER_WAIT_MS;
		return 0;
	}
	if (!s->reading) {
		if (snap_mono_ms() < s->offer_until)
			return 0;
		rc = start_reading(s, 0);
		if (rc < 0)
			return rc;
	}
	if (s->offset >= s->total && s->started)
		return s->window && s->acked < s->total ? ack_wait(s) : 1;
	for (;;) {
		Transportpb__SnapshotChunk ch = TRANSPORTPB__SNAPSHOT_CHUNK__INIT;
		slot *sl;

		rc = transport_queued(ss->t, s->peer, &queued);
		if (rc < 0)
			return rc;
		if (queued >= SNAP_QUEUE_BYTES)
			return 0;
		if (s->window && s->offset >= s->acked + s->window)
			return ack_wait(s);
		pthread_mutex_lock(&s->mu);
		if (s->count == 0) {
			rc = s->rerr ? s->rerr : s->eof ? 1 : 0;
			s->want_wake = rc == 0;
			pthread_mutex_unlock(&s->mu);
			if (rc < 0)
				rlog_write(RLOG_ERR, "snapshot at %llu to %llu: %s",
					   (unsigned long long)s->index,
					   (unsigned long long)s->peer, s->rerrmsg);
			if (rc == 1 && !s->started) {
				/* No data at all: one empty last chunk. */
				rc = send_bare(ss, s, false);
				if (rc == 0)
					rc = 1;
				else if (rc == -ENOBUFS)
					rc = 0;
			}
			return rc;
		}
		sl = &s->ring[s->head];
		pthread_mutex_unlock(&s->mu);
		ch.message.data = s->msg;
		ch.message.len = s->msg_len;
		ch.offset = sl->offset;
		ch.data.data = sl->data;
		ch.data.len = sl->len;
		ch.total = s->total;
		ch.last = sl->offset + sl->len >= s->total;
		ch.crc = sl->crc;
		maybe_corrupt(&ch, sl->data);
		rc = transport_send_chunk(ss->t, s->peer, &ch);
		if (rc == -ENOBUFS)
			return 0;
		if (rc < 0)
			return rc;
		s->offset = sl->offset + sl->len;
		s->started = true;
		pthread_mutex_lock(&s->mu);
		s->head = (s->head + 1) % SNAP_READAHEAD;
		s->count--;
		pthread_cond_signal(&s->cv);
		pthread_mutex_unlock(&s->mu);
		if (ch.last)
			return s->window && s->acked < s->total ? ack_wait(s) : 1;
	}
}

bool snap_send_busy(const snap_streams *ss)
{
	for (size_t i = 0; i < CONFIG_MAX_PEERS; i++)
		if (ss->out[i])
			return true;
	return false;
}

void snap_send_pump(snap_streams *ss)
{
	for (size_t i = 0; i < CONFIG_MAX_PEERS; i++) {
		send_stream *s = ss->out[i];
		uint64_t peer;
		int rc;

		if (!s)
			continue;
		peer = s->peer;
		rc = s->fail ? s->fail : pump_one(ss, s);
		if (rc == 0)
			continue;
		if (rc < 0)
			rlog_write(RLOG_ERR,
				   "snapshot at %llu to %llu: %s after %llu of %llu bytes",
				   (unsigned long long)s->index, (unsigned long long)peer,
				   rc == -ENOTCONN    ? "no connection"
				   : rc == -ETIMEDOUT ? "no acknowledgement"
						      : raft_strerror(rc),
				   (unsigned long long)s->offset, (unsigned long long)s->total);
		else
			RLOG(RLOG_NET, "snapshot at %llu to %llu: all %llu bytes sent",
			     (unsigned long long)s->index, (unsigned long long)peer,
			     (unsigned long long)s->total);
		ss->out[i] = NULL;
		stream_free(s);
		ss->report(ss->arg, peer, rc < 0);
	}
}

/* The stream to peer `from`, if ch (an answer or an acknowledgement) is
 * about it: the same message and length. */
static send_stream *stream_of(snap_streams *ss, uint64_t from, const Transportpb__SnapshotChunk *ch)
{
	size_t i = stream_slot(ss, from);
	send_stream *s = i < CONFIG_MAX_PEERS ? ss->out[i] : NULL;

	if (!s || s->fail || !s->offered || ch->message.len != s->msg_len ||
	    memcmp(ch->message.data, s->msg, s->msg_len) != 0 || ch->total != s->total)
		return NULL;
	return s;
}

/* The follower's answer to an offer: the stream to it goes on from there,
 * within the window it grants. An answer that comes after the stream
 * started from 0 anyway (the offer's wait ran out) still sets the window. */
void snap_send_on_answer(snap_streams *ss, uint64_t from, const Transportpb__SnapshotChunk *ch)
{
	send_stream *s = stream_of(ss, from, ch);
	int rc;

	if (!s || ch->offset > s->total)
		return; /* not (or no longer) an answer to this stream's offer */
	s->window = ch->window;
	s->acked_at = snap_mono_ms();
	if (s->reading)
		return;
	s->acked = ch->offset < s->total ? ch->offset : 0;
	rc = start_reading(s, s->acked);
	if (rc < 0)
		s->fail = rc;
}

/* The follower staged the stream up to ch->offset, or (reject) dropped it:
 * the stream then ends, reported failed, and the core sends again. */
void snap_send_on_ack(snap_streams *ss, uint64_t from, const Transportpb__SnapshotChunk *ch)
{
	send_stream *s = stream_of(ss, from, ch);

	if (!s)
		return;
	if (ch->reject) {
		rlog_write(RLOG_INFO, "snapshot at %llu to %llu: the follower dropped the stream at "
				      "%llu of %llu bytes",
			   (unsigned long long)s->index, (unsigned long long)from,
			   (unsigned long long)ch->offset, (unsigned long long)s->total);
		s->fail = RAFT_EINVAL;
		return;
	}
	if (ch->offset > s->acked && ch->offset <= s->offset) {
		s->acked = ch->offset;
		s->acked_at = snap_mono_ms();
	}
}
