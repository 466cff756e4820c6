/* harness.h — a tiny in-memory cluster for the core's unit tests (etcd raft's "network").
 *
 * Each node is a raft on its own memory_storage. Ready is handled exactly
 * as raft.h says: persist snapshot, entries and hard state into the
 * storage, record committed entries and read states, queue the messages,
 * advance. Messages are delivered in FIFO order; links can be cut and a
 * filter can drop or inspect messages.
 */
#ifndef RAFTFS_TESTS_CONSENSUS_HARNESS_H
#define RAFTFS_TESTS_CONSENSUS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memory_storage.h"
#include "raft.h"

#define TN_MAX 8

typedef struct msgq {
	raft_msg *m;
	size_t n, cap;
} msgq;

void msgq_push_copy(msgq *q, const raft_msg *m);
void msgq_clear(msgq *q);
void msgq_free(msgq *q);
/* Number of messages in q of the given type (RAFT_MSG_TYPE_COUNT: all). */
size_t msgq_count(const msgq *q, raft_msg_type type);

typedef struct tnode {
	uint64_t id;
	raft *r;
	memory_storage *ms;
	raft_config cfg;
	raft_entry *applied; /* copies of every committed entry handed out */
	size_t n_applied, cap_applied;
	raft_read_state *reads;
	size_t n_reads, cap_reads;
	uint64_t snap_installed; /* index of the last snapshot installed */
	size_t readies;
} tnode;

/* Returns true to drop the message. */
typedef bool (*tnet_filter)(void *ctx, const raft_msg *m);

typedef struct tnet {
	tnode nodes[TN_MAX];
	size_t n;
	size_t n_voters; /* the initial configuration is nodes 1..n_voters */
	uint64_t peers[TN_MAX];
	bool cut[TN_MAX + 1][TN_MAX + 1];
	tnet_filter filter;
	void *filter_ctx;
	msgq q;
	size_t delivered[RAFT_MSG_TYPE_COUNT];
} tnet;

/* Defaults for tests: election 10, heartbeat 1, no byte cap (1 MiB),
 * 256 in flight, no pre-vote, no check-quorum. */
raft_config tcfg(void);

/* A network of n nodes with ids 1..n, configured from tmpl (id, peers and
 * storage are filled in). Aborts the test on failure. */
tnet *tnet_new(size_t n, const raft_config *tmpl);
/* Same, but only nodes 1..n_voters form the initial configuration; the
 * others start outside it, waiting to be added. */
tnet *tnet_new_voters(size_t n, size_t n_voters, const raft_config *tmpl);
void tnet_free(tnet *net);
tnode *tnet_node(tnet *net, uint64_t id);

/* Crashes node id (everything not persisted in its storage is lost) and
 * restarts it on the same storage with applied = 0. */
void tnet_restart(tnet *net, uint64_t id);

/* Handles every Ready of node n (committed conf changes are decoded and
 * put into effect, and the new membership persisted); its messages go to out (or the network
 * queue when out is NULL). */
void tn_drain(tnet *net, tnode *n, msgq *out);
/* Steps m into its recipient and drains it into the network queue. */
void tnet_step(tnet *net, const raft_msg *m);
/* Delivers queued messages (and what they cause) until none is left. */
void tnet_deliver(tnet *net);
/* Campaign / tick / propose on one node, then deliver everything. */
void tnet_campaign(tnet *net, uint64_t id);
void tnet_tick(tnet *net, uint64_t id, int ticks);
int tnet_propose(tnet *net, uint64_t id, const char *data);
void tnet_isolate(tnet *net, uint64_t id);
void tnet_cut(tnet *net, uint64_t a, uint64_t b);
void tnet_heal(tnet *net);

/* Entries [1..last] of node id's log as one call to its storage+unstable:
 * 0 when equal to node other's. */
int tnet_log_cmp(tnet *net, uint64_t a, uint64_t b);

#endif
