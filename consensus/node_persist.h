/* node_persist.h — the persist thread: a node's saves in Ready order, off the loop thread.
 *
 * etcd raft's asynchronous storage writes (doc.go, "Asynchronous Storage
 * Writes"): the loop thread hands each Ready's save here and goes on
 * reading sockets, ticking and sending while the disk works; a save's
 * completion comes back to the loop (wake callback, then
 * node_persist_take_done), which only then reports it to the core
 * (raft_persisted) and sends the messages that depended on it. One
 * thread, one queue: saves become durable in the order they were queued,
 * so a finished save means every earlier one is durable too.
 *
 * The store is not thread-safe (store.h). Whoever holds the store lock
 * (node_persist_lock) owns it: the persist thread while it writes each
 * save (store_save_write; the sync, store_save_sync, runs without it, so
 * the loop never waits behind the disk), the loop thread around every
 * other store call (snapshots, membership, status, the core's reads
 * through node_persist_storage). The store's snapshot
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
	uint64_t save_ns;    /* time in the store's save (a test's hold not included) */
	unsigned stalled_ms; /* tests: held this long after it (node_persist_stall_next) */
	uint64_t done_ns;    /* uv_hrtime() when it was done: durable (or failed) */
} persist_job;

/* Starts the persist thread over st. wake(arg) is called from it when a
 * finished save is waiting to be taken back and none was before (the
 * loop then calls node_persist_take_done and takes all of them: one
 * wake-up for however many saves finished meanwhile).
 * Returns 0 or a negative errno. */
int node_persist_new(store *st, void (*wake)(void *arg), void *arg, node_persist **out);

/* Lets the persist thread send the messages kept with a save itself once
 * it is durable, where send(arg, m) takes them (0; anything else leaves m
 * for the loop), while node_persist_lazy says so. send NULL: none (the
 * old one is not called once this returns). */
void node_persist_set_sender(node_persist *p, int (*send)(void *arg, const raft_msg *m), void *arg);

/* Loop thread, before each node_persist_take_done: lazy says whether this
 * node is a follower whose saves need no hand-off to the loop: their
 * messages go from the persist thread (set_sender), and the loop is not
 * woken for a save unless it failed, kept a message the sender did not
 * take, or holds an entry at or below commit, the commit index the loop
 * knows now (reporting it makes that entry applicable here); the loop
 * takes the others at its next turn. A leader must not be lazy: its own
 * save counts toward its commit (raft_persisted). */
void node_persist_lazy(node_persist *p, bool lazy, uint64_t commit);

/* Messages the persist thread sent itself so far (tests). Any thread. */
uint64_t node_persist_direct_sent(node_persist *p);

/* Finishes every queued save, stops the thread and frees p with every job
 * not yet taken back (their messages unsent). NULL is ignored. */
void node_persist_free(node_persist *p);

/* Loop thread: a save (store_save_write under the store lock, then
 * store_save_sync without it) of hs (if not NULL)
 * and ents[0..n) (the Ready's; a reference to each entry's block is
 * taken, the data is not copied), not yet queued: messages that must wait
 * for it are added with node_persist_keep, then node_persist_submit
 * queues it, so a Ready costs one lock of the queue however many
 * messages wait. NULL out of memory. hs and ents may both be empty: a
 * holder of messages for node_persist_defer. */
persist_job *node_persist_job_new(const raft_hard_state *hs, const raft_entry *ents, size_t n);

/* Loop thread: keeps a copy of m in j (not yet queued), to be sent once j
 * and every save queued before it are durable. 0 or RAFT_ENOMEM. */
int node_persist_keep(persist_job *j, const raft_msg *m);

/* Loop thread: queues j (from node_persist_job_new), which then belongs
 * to the persist thread until node_persist_take_done hands it back. */
void node_persist_submit(node_persist *p, persist_job *j);

/* Loop thread: moves the messages kept in holder (a job never submitted)
 * to the newest queued save, so that they are sent only once it (and
 * every earlier one) is durable. false when no save is queued or under
 * way: they may go now. The caller still frees holder. */
bool node_persist_defer(node_persist *p, persist_job *holder);

/* Tests (RAFTFS_TEST_STALL): the persist thread holds still for ms after
 * its next save, as a disk whose sync takes that long. Loop thread. */
void node_persist_stall_next(node_persist *p, unsigned ms);

/* Loop thread: every finished save not yet taken back, oldest first
 * (linked by next), or NULL. The caller frees each with
 * node_persist_job_free. */
persist_job *node_persist_take_done(node_persist *p);

/* Frees a job (its entry references and messages). Any thread. */
void node_persist_job_free(persist_job *j);

/* Loop thread: waits until every queued save is done (they are then
 * waiting in the done list). A snapshot from the leader replaces the log,
 * so it waits for the saves queued before it. */
void node_persist_drain(node_persist *p);

/* The store lock: held by the persist thread while it writes each save
 * (not while the disk syncs it); the loop thread holds it around every
 * other use of the store. Not recursive: no section that holds it may
 * reach another that takes it. */
void node_persist_lock(node_persist *p);
void node_persist_unlock(node_persist *p);
pthread_mutex_t *node_persist_mutex(node_persist *p);

/* The core's view of the store (consensus/storage.h) with the store lock
 * taken around each read, except first_index: the compaction point moves
 * only on the loop thread, which is also the only one asking. */
raft_storage *node_persist_storage(node_persist *p);

#endif
