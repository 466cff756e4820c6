/* transport.h — the TCP transport between the nodes of a cluster, and from
 * clients (raftfs status / kv) to a node. Runs on the node's libuv loop
 * thread; no function here may be called from another thread except
 * transport_send_direct.
 *
 * Connections: one TCP connection per pair of nodes, dialled by the node
 * with the lower id (so the pair never races into two connections) and
 * used both ways; the dialler reconnects with exponential backoff (50 ms
 * doubling to 1 s); TCP keepalive (nothing in flight) and TCP_USER_TIMEOUT
 * (data unacknowledged for five election timeouts, at least 2 s) notice a
 * peer that vanished without closing, so a healed partition reconnects at
 * once instead of after the kernel's retransmission backoff. A client
 * connects like a peer with node id 0.
 * Frames: consensus/frame.h. The first frame each way is a Hello (cluster
 * name, node id, protocol version); a wrong cluster, an unknown or
 * unexpected node id, another version, a malformed or oversized frame, or a
 * handshake not finished within 5 s closes that connection with a log line.
 * Sends never block: each connection has a bounded queue of unwritten
 * bytes, and a message that does not fit, or to a peer with no connection,
 * is dropped (Raft tolerates loss) and reported to the caller, which tells
 * the core the peer is unreachable. Snapshots travel as a series of
 * SnapshotChunk frames (consensus/snapshot_stream.h), paced by
 * transport_queued() so heartbeats are never stuck behind them.
 */
#ifndef RAFTFS_TRANSPORT_H
#define RAFTFS_TRANSPORT_H

#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "raft_types.h"
#include "transport.pb-c.h"

/* Nodes of different versions refuse each other at the hello. 2: the log
 * may hold fs Batch entries (proto/fs.proto), which a version-1 node would
 * apply as no-ops while the others apply them — a silent divergence.
 * What a node may leave out for a peer that can do without it is not a
 * version but a feature (TRANSPORT_FEATURE_*), offered in the hello and
 * used only towards a peer that offered it on the present connection: a
 * cluster is upgraded one node at a time, and the mixed cluster meanwhile
 * speaks what both ends of each connection know. */
#define TRANSPORT_VERSION 2

/* This node fills in the elided data of its own entries (node_elide.c), so
 * a leader may send it appends with raftpb.Entry.elided_len set. A node
 * that does not offer it (an older one, or RAFTFS_ELIDE=0) gets every
 * append whole: it would log the envelope as the entry. */
#define TRANSPORT_FEATURE_ELIDE 1u

/* A forwarder's own bytes (README-node.md): entry data at least this long
 * that a peer proposed itself (the client id its hello said on the present
 * connection, if it offered TRANSPORT_FEATURE_ELIDE there) is left out of
 * the appends to it, with its
 * length and CRC-32C; the receiver fills it in from its own pending copy
 * (node_elide.c) or, lacking one, names the entry in its next APP_RESP
 * (transport_lacks), and from then on every entry the leader had sent it
 * goes to it whole. */
#define TRANSPORT_ELIDE_MIN_BYTES (64u << 10)

typedef struct transport transport;
/* A client connection, kept alive by references while a request on it is
 * being answered. */
typedef struct transport_conn transport_conn;

typedef struct transport_callbacks {
	void *arg;
	/* A raft message from a connected peer; m is borrowed for the call
	 * (the callee may change it: the transport frees what m holds then). */
	void (*on_raft)(void *arg, raft_msg *m);
	/* A client request; req is borrowed for the call. Answer with
	 * transport_reply() now, or take a reference to conn and answer later. */
	void (*on_request)(void *arg, transport_conn *conn, const Transportpb__Request *req);
	/* A snapshot chunk from connected peer `from` (consensus/snapshot_stream.h);
	 * ch is borrowed for the call. */
	void (*on_snap_chunk)(void *arg, uint64_t from, const Transportpb__SnapshotChunk *ch);
} transport_callbacks;

/* Creates a transport for cfg (borrowed; must outlive the transport) on loop.
 * client_id is this node's own proposals' (their envelopes'), said to every
 * peer in the hello so that a leader knows which entries this node holds
 * (TRANSPORT_ELIDE_MIN_BYTES). Resolves every peer address now. 0 or a
 * negative errno, with a message logged naming what failed. */
int transport_new(uv_loop_t *loop, const node_config *cfg, uint64_t client_id,
		  const transport_callbacks *cb, transport **out);

/* Binds and listens on cfg->listen, then starts dialling the peers with a
 * higher id. 0 or a negative errno (e.g. -EADDRINUSE) with a log line. */
int transport_start(transport *t);

/* Sends m to peer m->to (or holds it: transport_cork). 0 when queued;
 * -ENOTCONN if there is no connection to the peer, -ENOBUFS if its send
 * queue is full, -EINVAL for a message the codec refuses. Nothing is sent
 * in the error cases. */
int transport_send(transport *t, const raft_msg *m);

/* Corks the peers' connections (loop thread): from now until
 * transport_uncork, a raft message of up to 16 KiB that transport_send
 * sends is held, copied behind the others held for its peer, and they all
 * go out in one write with the next thing written to that peer (a bigger
 * frame, a direct send) or at transport_uncork, in the order sent. The node
 * corks while it sends one round of Ready messages: a leader's append, its
 * commit notices and heartbeats to one follower are one write and one
 * wake-up of that follower's loop, not three (bench/fs/README.md, "Session
 * 13 (mkdir3)"). Nothing changes on the wire: the same frames, fewer
 * writes. */
void transport_cork(transport *t);
/* Writes what is held, one write per peer, and stops holding. */
void transport_uncork(transport *t);
/* Writes what is held, one write per peer, and goes on holding (before
 * the loop waits, or to send a round's frames ahead of what follows). */
void transport_flush(transport *t);

/* Socket writes tried so far (the loop's and direct sends), for tests and
 * measurements. Any thread. */
uint64_t transport_writes(const transport *t);

/* Sends m to peer m->to from any thread (the persist thread: a follower's
 * acknowledgement the moment its entries are durable, without a hand-off
 * to the loop thread), but only straight into the socket: 0 when the whole
 * frame was written; -EAGAIN when there is no connection to the peer, the
 * connection has bytes queued (they go first), or the socket is full;
 * another negative errno on a write error. On any error the caller sends m
 * again with transport_send on the loop thread (where an error is handled
 * and reported). A frame written in part makes the connection unusable
 * (-EPIPE): the loop closes it at its next write to it. Frames written here
 * and by the loop never interleave, and what the loop holds for the peer
 * (transport_cork) goes first, in the same write. */
int transport_send_direct(transport *t, const raft_msg *m);

/* A follower lacked its own copy of the elided data of entry index in an
 * append from peer id: its next append response to id says so (the
 * lowest such index until sent). */
void transport_lacks(transport *t, uint64_t id, uint64_t index);

/* Entries whose data was left out of appends (transport_send*), and the
 * bytes that saved, since the transport was made. */
void transport_elided(const transport *t, uint64_t *ents, uint64_t *bytes);

/* Sends a snapshot chunk to peer id, under the same rules as
 * transport_send (-ENOTCONN, -ENOBUFS, nothing sent on error). */
int transport_send_chunk(transport *t, uint64_t id, const Transportpb__SnapshotChunk *ch);

/* Bytes queued and not yet written on the connection to peer id, so a
 * bulk sender can leave room for heartbeats. 0 or -ENOTCONN. */
int transport_queued(const transport *t, uint64_t id, size_t *bytes);

/* Whether a handshaked connection to peer id exists. */
bool transport_peer_connected(const transport *t, uint64_t id);

/* The present handshaked connection to peer id as a number, 0 when there
 * is none. Every handshake takes the next number of this transport's
 * count, so a peer that restarted, or came back from a partition, shows a
 * number it did not have before: a sign of life that needs no command of
 * it to commit (fs/fuse_grant.h, a holder's silence). Any thread. */
uint64_t transport_peer_link(transport *t, uint64_t id);

/* Membership changes at runtime. transport_add_peer makes peer id known
 * at host:port (resolved now), dialling it if this node has the lower id,
 * or moves a known peer to a new address (its connection is closed and
 * redialled); this node's own id is ignored. 0, -EHOSTUNREACH (the address
 * does not resolve) or -ENOSPC (CONFIG_MAX_PEERS peers known). Before or
 * after transport_start. */
int transport_add_peer(transport *t, uint64_t id, const char *host, uint16_t port);

/* Forgets peer id (removed from the cluster): closes its connection and
 * stops dialling it; its connections are refused from now on. */
void transport_remove_peer(transport *t, uint64_t id);

/* Answers a client request (resp->id should be the request's id). A reply
 * on a connection that has since closed is silently dropped. */
void transport_reply(transport_conn *conn, const Transportpb__Response *resp);
void transport_conn_ref(transport_conn *conn);
void transport_conn_unref(transport_conn *conn);

/* Closes every handle of the transport; the loop must then run until the
 * close callbacks have fired, after which transport_free() releases it. */
void transport_close(transport *t);
void transport_free(transport *t);

#endif
