/* node_persist.h — the persist thread: a node's saves in Ready order, off the loop thread.
 *
 * etcd raft's asynchronous storage writes (doc.go, "Asynchronous Storage
 * Writes"): the loop thread hands each Ready's save here and goes on
 * reading sockets, ticking and sending while the disk works; a save's
 * completion comes back to the loop (wake callback, then
 * node_persist_next_done), which only then reports it to the core
 * (raft_persisted) and sends the messages that depended on it. One
 * thread, one queue: saves become durable in the order they were queued,
 * so a finished save means every earlier one is durable too.
 *
 * The store is not thread-safe (store.h). Whoever holds the store lock
 * (node_persist_lock) owns it: the persist thread for each save, the loop
 * thread around every other store call (snapshots, membership, status,
 * the core's reads through node_persist_storage). The store's snapshot
 * reader and writer threads keep their own rules (store.h).
 */
#ifndef RAFTFS_NODE_PERSIST_H
#define RAFTFS_NODE_PERSIST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft_types.h"
#include "storage.h"
#include "store.h"

typedef struct node_persist node_persist;

/* A save, queued by the loop thread and handed back to it once done. */
typedef struct persist_job {
	struct persist_job *next;
	bool has_hs;
	raft_hard_state hs;
	raft_entry *ents; /* references to the core's blocks (blob.h), not copies */
	size_t n_ents;
	raft_msg *msgs; /* copies, to send once this save is durable */
	size_t n_msgs, cap_msgs;
	/* Filled in by the persist thread. */
	int rc;
	char err[256];
	uint64_t save_ns;    /* time in the store's save */
	unsigned stalled_ms; /* tests: held this long after it (node_persist_stall_next) */
} persist_job;

/* Starts the persist thread over st. wake(arg) is called from it after
 * every finished save (the loop then calls node_persist_next_done).
 * Returns 0 or a negative errno. */
int node_persist_new(store *st, void (*wake)(void *arg), void *arg, node_persist **out);

/* Finishes every queued save, stops the thread and frees p with every job
 * not yet taken back (their messages unsent). NULL is ignored. */
void node_persist_free(node_persist *p);

/* Loop thread: queues a save (store_save: one synced batch) of hs (if not
 * NULL) and ents[0..n) (the Ready's; a reference to each entry's block is
 * taken, the data is not copied).
 * Returns the queued job, to which messages may still be added with
 * node_persist_defer, or NULL out of memory. */
persist_job *node_persist_save(node_persist *p, const raft_hard_state *hs, const raft_entry *ents,
			       size_t n);

/* Loop thread: keeps a copy of m to be handed back with the newest queued
 * save, so that it is sent only once that save (and every earlier one) is
 * durable. false when no save is queued or under way (m may go now) or
 * out of memory (RAFT_ENOMEM in *rc). */
bool node_persist_defer(node_persist *p, const raft_msg *m, int *rc);

/* Tests (RAFTFS_TEST_STALL): the persist thread holds still for ms after
 * its next save, as a disk whose sync takes that long. Loop thread. */
void node_persist_stall_next(node_persist *p, unsigned ms);

/* Loop thread: the oldest finished save not yet taken back, or NULL. The
 * caller frees it with node_persist_job_free. */
persist_job *node_persist_next_done(node_persist *p);

/* Frees a job (its entry references and messages). Any thread. */
void node_persist_job_free(persist_job *j);

/* Loop thread: waits until every queued save is done (they are then
 * waiting in the done list). A snapshot from the leader replaces the log,
 * so it waits for the saves queued before it. */
void node_persist_drain(node_persist *p);

/* The store lock: held by the persist thread during each save; the loop
 * thread holds it around every other use of the store (recursive: those
 * sections nest). */
void node_persist_lock(node_persist *p);
void node_persist_unlock(node_persist *p);
pthread_mutex_t *node_persist_mutex(node_persist *p);

/* The core's view of the store (consensus/storage.h) with the store lock
 * taken around each read, except first_index: the compaction point moves
 * only on the loop thread, which is also the only one asking. */
raft_storage *node_persist_storage(node_persist *p);

#endif
