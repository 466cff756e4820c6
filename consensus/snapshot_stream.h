/* snapshot_stream.h — InstallSnapshot in chunks: the leader streams its
 * store's current snapshot to a follower a piece at a time, leaving room on
 * the connection for heartbeats and appends; the follower stages the pieces
 * in its store and, after the last one, hands the core a MSG_SNAP that
 * carries only the metadata (Raft §7; the data stays on disk).
 *
 * Loop thread only (it uses the store and the transport); the disk work
 * runs on a reader thread per outgoing and a writer thread per incoming
 * stream.
 */
#ifndef RAFTFS_SNAPSHOT_STREAM_H
#define RAFTFS_SNAPSHOT_STREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "raft_types.h"
#include "store.h"
#include "transport.h"

/* A chunk of the stream: the runtime stores images in chunks of this size
 * (NODE_SNAP_CHUNK), and a stream sends each stored chunk whole. */
#define SNAP_CHUNK_BYTES (1u << 20)
/* A stream sends only while the peer's connection has less than this
 * queued, so heartbeats never wait behind more than this and a chunk. */
#define SNAP_QUEUE_BYTES (1u << 20)
/* Stored chunks a stream's reader thread reads ahead of the connection. */
#define SNAP_READAHEAD 3
/* How long a stream waits for the follower's answer to its offer before
 * it sends from the beginning (a follower that does not resume). */
#define SNAP_OFFER_WAIT_MS 1000
/* The window a follower grants: bytes a stream may have sent beyond what
 * the follower acknowledged as staged (its queue holds at most this). */
#define SNAP_WINDOW_BYTES (4u * SNAP_CHUNK_BYTES)
/* A stream whose window stays full this long without an acknowledgement
 * ends as failed (the core sends again; the transfer resumes). */
#define SNAP_ACK_WAIT_MS 15000u
/* A sender that keeps no window (an older one) is cut off when this much
 * waits to be staged; its next stream resumes from what was staged. */
#define SNAP_RECV_QUEUE_MAX (32u * SNAP_CHUNK_BYTES)

typedef struct snap_streams snap_streams;

/* Reports the end of a stream to peer: failed or not (raft_report_snapshot). */
typedef void (*snap_report_fn)(void *arg, uint64_t peer, bool failed);

/* Asks the loop thread to call snap_send_pump and snap_recv_pump soon;
 * called from a stream's reader thread when a chunk it read is ready for
 * a connection that waited for it, and from a receiving stream's writer
 * thread when it staged a chunk. */
typedef void (*snap_wake_fn)(void *arg);

/* Streams over t from st; report is called from snap_send_pump, wake from
 * reader threads. The loop thread shares st with a persist thread:
 * store_mu (or NULL) is taken around the readers' opening here, and the
 * caller holds it around snap_recv_* (snapshot_stream_int.h). NULL on out
 * of memory. snap_streams_free ends every stream (joining its reader
 * thread) and must come before the store is closed, with no save under
 * way. */
snap_streams *snap_streams_new(transport *t, store *st, pthread_mutex_t *store_mu,
			       snap_report_fn report, snap_wake_fn wake, void *arg);
void snap_streams_free(snap_streams *ss);

/* Starts streaming the store's current snapshot to m->to, with m (a
 * MSG_SNAP from the core; its data, if any, is not used) as the message
 * the follower's core receives. The stream pins the snapshot's data and
 * reads it on a thread of its own, so the loop thread never waits for the
 * disk; it first offers the snapshot, and goes on from the offset the
 * follower answers (a transfer broken earlier resumes there). A stream to
 * the same peer is replaced. 0, or a negative code when it cannot start
 * (reported as failed at the next pump). */
int snap_send_start(snap_streams *ss, const raft_msg *m);

/* Sends what the connections have room for and what the reader threads
 * have read; reports streams that ended. Cheap when nothing streams: call
 * every tick and whenever the loop runs (a connection's queue drained),
 * outside a Ready (report steps the core). */
void snap_send_pump(snap_streams *ss);

/* Whether any stream is being sent (its pump has work each tick). */
bool snap_send_busy(const snap_streams *ss);

/* A chunk from peer `from`, on the loop thread: an offer (answered here),
 * a data chunk (checked, then queued for the stream's writer thread, which
 * stages it in the store), or, for a stream this node sends, the answer
 * to its offer or an acknowledgement. 0, or a negative code for a chunk
 * that does not fit (out of order, of an unknown stream, corrupt,
 * undecodable): it is dropped with a log line, and the sender told. */
int snap_recv_chunk(snap_streams *ss, uint64_t from, const Transportpb__SnapshotChunk *ch);

/* Loop thread, after chunks arrived and whenever a writer thread woke it
 * (snap_wake_fn): records on the store what the writers staged (a broken
 * transfer resumes there), acknowledges it to the senders, and reaps
 * writers that ended. Returns 1 when a snapshot is staged whole: *msg is
 * then the MSG_SNAP for the core (caller frees it with
 * raft_msg_free_contents); call again until it returns 0. */
int snap_recv_pump(snap_streams *ss, raft_msg *msg);

/* A chunk from `from` that this node drops unseen (a received snapshot
 * waits for its install): the sender is told, so it ends its stream. */
void snap_recv_refuse(snap_streams *ss, uint64_t from, const Transportpb__SnapshotChunk *ch);

/* Whether the staging, of snapshot index with len bytes, is one this node
 * received whole (every chunk, checked): what may be installed for a
 * streamed snapshot's Ready. */
bool snap_recv_whole(const snap_streams *ss, uint64_t index, uint64_t len);

/* Forgets every snapshot being received (the store's staging was taken
 * for a local snapshot): their further chunks are dropped until a stream
 * starts again at offset 0. */
void snap_recv_reset(snap_streams *ss);

#endif
