/* net.h — the simulated network: a time-ordered queue of in-flight Raft
 * messages with per-link loss, delay, duplication and reordering,
 * disconnection of nodes, partitions into groups, and traffic counters. */
#ifndef RAFTFS_SIM_NET_H
#define RAFTFS_SIM_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft_types.h"
#include "rng.h"

#define SIM_MAX_NODES 9

/* A message in flight. The network owns msg (raft_msg_free_contents). */
typedef struct sim_packet {
	raft_msg msg;
	uint64_t deliver_at; /* tick */
	uint64_t seq;	     /* send order: ties on deliver_at go in send order */
	uint64_t sender;     /* the node that sent it: m.from may name the node a
			      * forwarded request (read index) originated from */
	uint64_t sender_incarnation;
} sim_packet;

typedef struct sim_net {
	size_t n_nodes; /* node ids are 1..n_nodes */
	sim_rng *rng;	/* borrowed: the cluster's */

	sim_packet *heap; /* min-heap on (deliver_at, seq) */
	size_t n_heap, cap_heap;
	uint64_t next_seq;

	/* 6.824-style connectivity: a disconnected node neither sends nor
	 * receives. Partitions: only nodes in the same group talk. Both are
	 * checked when a message is sent and again when it arrives. */
	bool connected[SIM_MAX_NODES + 1];
	int group[SIM_MAX_NODES + 1];

	/* Faults. Loss per directed link, the rest network-wide. */
	uint32_t drop_pm[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];
	uint32_t dup_pm;	/* chance a message is delivered twice */
	uint32_t max_delay;	/* extra ticks, uniform in [0, max_delay] */
	uint32_t long_delay_pm; /* chance a response is held back for long */
	/* Messages on link a->b are not delivered before hold_until[a][b]. */
	uint64_t hold_until[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];
	uint32_t long_delay_min; /* extra ticks: 1 + min + [0, [0, max]] */
	uint32_t long_delay_max;

	/* Counters since the start. "RPCs" are requests (what labrpc counts:
	 * one per call, replies not counted); msgs counts everything sent. */
	uint64_t rpcs[SIM_MAX_NODES + 1];
	uint64_t msgs_sent;
	uint64_t bytes_sent;
	uint64_t msgs_dropped;
	uint64_t rejects; /* append responses with reject set */
	uint64_t by_type[RAFT_MSG_TYPE_COUNT];
} sim_net;

/* Initializes a reliable, fully connected network of n nodes. */
void sim_net_init(sim_net *net, size_t n_nodes, sim_rng *rng);
/* Frees every message still in flight. */
void sim_net_destroy(sim_net *net);

/* True if a message from a to b may pass right now (connectivity and
 * partition only; loss is decided separately). */
bool sim_net_can_talk(const sim_net *net, uint64_t a, uint64_t b);

/* Node sender sends a copy of m at tick now, applying loss, delay and
 * duplication. Returns the number of copies queued (0 when lost), or
 * RAFT_ENOMEM. */
int sim_net_send(sim_net *net, const raft_msg *m, uint64_t sender, uint64_t now,
		 uint64_t sender_incarnation);

/* If the earliest message is due at or before now and was sent before
 * seq_limit, moves it into *out (caller frees with raft_msg_free_contents)
 * and returns true. */
bool sim_net_pop_due(sim_net *net, uint64_t now, uint64_t seq_limit, sim_packet *out);

/* Sets every link's loss rate (0 for a reliable network). */
void sim_net_set_drop(sim_net *net, uint32_t drop_pm);

/* Approximate wire size of m (what RPCBytes counts). */
uint64_t sim_msg_bytes(const raft_msg *m);

/* True for message types that are requests rather than responses. */
bool sim_msg_is_request(raft_msg_type t);

#endif
