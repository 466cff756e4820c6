/* peer_testlib.h — a real transport (node 1) connected to a plain TCP peer
 * played by the test (node 2): the test reads node 1's frames one by one
 * (node 1's loop run meanwhile) and writes frames of its own as node 2.
 * Every function asserts (cmocka) instead of returning an error. */
#ifndef RAFTFS_PEER_TESTLIB_H
#define RAFTFS_PEER_TESTLIB_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "frame.h"
#include "raft_types.h"
#include "transport.h"

struct test_peer {
	uv_loop_t loop;
	transport *t; /* node 1 */
	node_config cfg;
	int lfd, fd; /* node 2's listening socket and its end of the connection */
	frame_reader fr;
};

/* Callbacks for node 1 that ignore what it receives (arg NULL), and the
 * parts of them, for a test that handles some itself. */
extern const transport_callbacks test_peer_quiet;
void test_peer_no_raft(void *arg, raft_msg *m);
void test_peer_no_request(void *arg, transport_conn *c, const Transportpb__Request *r);
void test_peer_no_chunk(void *arg, uint64_t from, const Transportpb__SnapshotChunk *ch);

/* How test_peer_connect sets the pair up (0: the default). */
struct test_peer_opts {
	uint64_t client_id;	 /* node 2's hello says it (0: none, as an older node's) */
	int rcvbuf;		 /* node 2's receive buffer (SO_RCVBUF) */
	size_t send_queue_bytes; /* node 1's send queue (node_config) */
};

/* Node 1's transport (callbacks cb) dials node 2, which answers its hello
 * offering TRANSPORT_FEATURE_ELIDE; returns once node 1 counts node 2
 * connected. */
void test_peer_connect(struct test_peer *p, const transport_callbacks *cb,
		       const struct test_peer_opts *o);

/* Node 2 closes its end of the connection; returns once node 1 (its loop
 * run meanwhile) counts node 2 disconnected. */
void test_peer_hang_up(struct test_peer *p);

/* After test_peer_hang_up: node 2 takes node 1's next dial, with the hello
 * exchange of test_peer_connect (o: its options, but the socket's, set
 * already); returns once node 1 counts node 2 connected again. */
void test_peer_accept(struct test_peer *p, const struct test_peer_opts *o);

/* Runs node 1's loop until node 2 holds a whole frame (10 s at most): its
 * type, and its payload as a pointer into p->fr. */
uint8_t test_peer_next_frame(struct test_peer *p, const uint8_t **payload, size_t *len);

/* Node 2 writes a frame of type: msg (a protobuf message, e.g. a Hello)
 * or, msg NULL, the raft message m. */
void test_peer_send(struct test_peer *p, uint8_t type, const ProtobufCMessage *msg,
		    const raft_msg *m);

/* Closes both ends and node 1's transport and loop. */
void test_peer_close(struct test_peer *p);

#endif
