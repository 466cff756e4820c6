/* snapshot_stream_int.h — what the sending (snapshot_stream.c) and the
 * receiving (snapshot_recv.c) halves of the chunked snapshot transfer
 * share: the streams object and the receive side's per-peer state. Not a
 * public surface: snapshot_stream.h is.
 */
#ifndef RAFTFS_SNAPSHOT_STREAM_INT_H
#define RAFTFS_SNAPSHOT_STREAM_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "snapshot_stream.h"

typedef struct send_stream send_stream;
typedef struct recv_writer recv_writer;

/* A stream being received from one peer: what the next chunk must be, and
 * the thread that writes its chunks into the store's staging. */
typedef struct recv_stream {
	bool active;
	uint64_t index, expected, total; /* expected: bytes received (queued or written) */
	uint64_t term;			 /* the sender's */
	bool acks;			 /* the sender's offer said it honours a window */
	bool last;			 /* the last chunk is queued for the writer */
	uint64_t recorded;		 /* staged length on record (and acknowledged) */
	uint8_t *msg;			 /* the stream's MSG_SNAP as sent (echoed in acks) */
	size_t msg_len;
	recv_writer *wr; /* NULL when no chunk of this stream is being written */
} recv_stream;

struct snap_streams {
	/* Reader threads still running (they free their orphaned streams):
	 * snap_streams_free waits for none, as they read from the store. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int readers;
	transport *t;
	store *st;
	/* The store lock (consensus/node_persist.h), taken here around the
	 * store calls made on the loop thread that the callers do not already
	 * hold it for (opening readers); NULL: none. */
	pthread_mutex_t *store_mu;
	snap_report_fn report;
	snap_wake_fn wake;
	void *arg;
	send_stream *out[CONFIG_MAX_PEERS];
	/* The last snapshot received whole: its index and length (done). */
	bool done;
	uint64_t done_index, done_total;
	struct {
		uint64_t peer;
		recv_stream s;
	} in[CONFIG_MAX_PEERS];
	/* Writers of dropped streams whose threads may still be inside a
	 * write: reaped (joined) by the loop thread once they exited. */
	recv_writer *retired;
};

/* snapshot_stream.c: the follower's answer to this node's offer, and its
 * acknowledgements, for the stream to `from`. */
void snap_send_on_answer(snap_streams *ss, uint64_t from, const Transportpb__SnapshotChunk *ch);
void snap_send_on_ack(snap_streams *ss, uint64_t from, const Transportpb__SnapshotChunk *ch);

/* snapshot_recv.c: ends every writer, waiting for their threads (the
 * streams are being freed; the store is still open). */
void snap_recv_free(snap_streams *ss);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t snap_mono_ms(void);

#endif
