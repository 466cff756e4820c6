/* node.h — a running Raft node: the libuv loop thread that drives the core,
 * the RocksDB store and the TCP transport, plus the apply thread that feeds
 * committed commands to the state machine. The proposal API is callable
 * from any thread.
 *
 * Threads. The loop thread owns the raft core and the transport; other
 * threads reach it only through a queue and uv_async_send. Each Ready's
 * save (hard state and entries) goes to the persist thread
 * (node_persist.h), which writes the saves queued meanwhile as one synced
 * store_save(); the messages that must follow a save (append and vote
 * answers) are sent once it is durable, the leader's appends at once
 * (thesis §10.2.1). Committed entries that are saved here are handed in
 * order to the apply thread, which calls the state machine, so neither a
 * slow disk nor a slow state machine delays heartbeats.
 *
 * Proposals. Every proposal's entry is an envelope (consensus/envelope.h:
 * this process's client id, a sequence number, the lowest sequence number
 * still pending) + the command. Completion is matched by (client, seq)
 * when the entry is applied on this node. Until then the runtime
 * re-proposes the same bytes after a leader change and every few election
 * timeouts (a forwarded proposal may be lost); the state machine's
 * duplicate table (consensus/dedup.h) makes the retries harmless.
 *
 * Order. With a state machine that exposes its duplicate table
 * (node_sm.dedup_table), the proposals of one node apply in the order
 * node_start() was called on it, across leader changes, lost forwards and
 * retries: an entry whose predecessors are not all applied is skipped on
 * every replica (dedup_check_ordered) and the runtime proposes it again
 * behind them (consensus/README-node.md, "Order").
 */
#ifndef RAFTFS_NODE_H
#define RAFTFS_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "dedup.h"
#include "envelope.h"

/* Failure reasons of a proposal or read (all negative). */
enum {
	NODE_ENOLEADER = -2001,	  /* no leader known until the deadline */
	NODE_ELEADERLOST = -2002, /* the leader changed and the retries did not land in time */
	NODE_ETIMEOUT = -2003,	  /* a leader was known, but the command was not applied in time */
	NODE_ESTOPPED = -2004,	  /* the node is shutting down */
	NODE_EFAULT = -2005,	  /* the state machine failed locally; the node stopped applying */
	NODE_ENOMEM = -2006,
	NODE_E2BIG = -2007, /* a command that could never travel in one frame */
};
const char *node_strerror(int code);

/* A snapshot image travels between the state machine and the store in
 * pieces of at most this many bytes (the runtime's memory for a snapshot
 * is a couple of these, whatever the image's size). */
#define NODE_SNAP_CHUNK (1u << 20)

/* Where a snapshot image is written to: the next len bytes of it. 0 or a
 * negative code. */
typedef int (*node_snap_write)(void *arg, const void *buf, size_t len);

/* Where a snapshot image is read from: up to len bytes of it into buf.
 * The count (0 at the end) or a negative code. */
typedef ssize_t (*node_snap_read)(void *arg, void *buf, size_t len);

/* The state machine's part of a node's status (node_sm.status). */
typedef struct node_sm_status {
	/* A copy of the state dropped after a power loss (fs/sm_reset.h),
	 * still being deleted: bytes of disk it holds, and entries. */
	uint64_t dropped_bytes, dropped_entries;
} node_sm_status;

/* The replicated state machine, as the runtime calls it. Every call but
 * query() and status() come from the apply thread, one at a time, in log
 * order. */
typedef struct node_sm {
	void *ctx;
	/* Index of the last entry whose effect is in the state machine
	 * (0 for a new one). Read once at start: later committed entries are
	 * handed out again, so application must be durable together with this
	 * index (or idempotent). */
	uint64_t (*applied_index)(void *ctx);
	/* Applies the command of entry `index`. The state machine
	 * deduplicates on env (dedup_check/dedup_record): a command already
	 * applied for (env->client, env->seq) must not run again and returns
	 * its recorded result. Returns 0 with the deterministic outcome in
	 * *result (the same on every node; handed to the proposer), or a
	 * negative code for a local fault (disk full, I/O error): the node then
	 * stops applying and reports itself unhealthy rather than diverge. */
	int (*apply)(void *ctx, uint64_t index, const envelope *env, const uint8_t *cmd, size_t len,
		     int64_t *result);
	/* An entry with no command (the leader's no-op, a membership change):
	 * only the applied index moves. 0 or a negative local fault. */
	int (*apply_empty)(void *ctx, uint64_t index);
	/* Optional: answers a read-only query from the current state, on the
	 * loop thread, concurrently with apply (the state machine locks).
	 * *out is malloc'd (caller frees). 0 or a negative code. */
	int (*query)(void *ctx, const uint8_t *q, size_t len, uint8_t **out, size_t *out_len);
	/* Optional (with restore; NULL: no snapshots, the log is never
	 * compacted): writes the whole state as of the last applied index
	 * through write(warg, buf, len), piece by piece, in order (each call
	 * returns 0 or a negative code; on a negative code the state machine
	 * stops and returns it). The runtime streams the pieces into the
	 * store's snapshot staging in chunks of NODE_SNAP_CHUNK bytes, so the
	 * image never sits whole in memory. Called on the apply thread every
	 * cfg->snapshot_entries applied entries; the runtime then makes it the
	 * current snapshot and compacts the Raft log up to that index (Raft
	 * §7). 0 or a negative code (the snapshot is skipped). */
	int (*snapshot)(void *ctx, node_snap_write write, void *warg);
	/* Optional, all three or none; preferred to snapshot() when set: the
	 * image made without holding apply for all of it (copy-on-write).
	 * snapshot_begin runs on the apply thread right after the entry of the
	 * snapshot's index N was applied and captures only what it must there
	 * (*job: the state machine's handle of this image); apply pauses only
	 * for it. snapshot_stream then writes the image through write (as
	 * snapshot() does) on the runtime's snapshot thread while apply goes
	 * on: it must be exactly the state at N, whatever is applied meanwhile.
	 * snapshot_end frees the job on the apply thread, between two applies
	 * or after apply stopped, once per successful begin, whether the
	 * stream ran, failed or was cut short (a snapshot from the leader to
	 * restore, a stop: write then returns a negative code). begin and
	 * stream return 0 or a negative code (the snapshot is skipped). */
	int (*snapshot_begin)(void *ctx, void **job);
	int (*snapshot_stream)(void *ctx, void *job, node_snap_write write, void *warg);
	void (*snapshot_end)(void *ctx, void *job);
	/* Replaces the whole state by a snapshot (made by snapshot() on some
	 * node at `index`), when this node was too far behind the leader's
	 * log. The image is read through read(rarg, buf, len) (up to len
	 * bytes; the count, 0 at its end, or a negative code, which the state
	 * machine returns, leaving its state as it was). Afterwards
	 * applied_index() is index. 0 or a negative local fault (the node
	 * stops applying). Apply thread. */
	int (*restore)(void *ctx, uint64_t index, node_snap_read read, void *rarg);
	/* Optional (NULL: proposals of a node may apply out of order): the
	 * state machine's duplicate table, the one its apply() records into,
	 * as of the last applied entry. Apply thread, before each apply(): the
	 * runtime skips (apply_empty) an entry dedup_check_ordered() calls
	 * DEDUP_EARLY, so one node's proposals apply in seq order. */
	const dedup *(*dedup_table)(void *ctx);
	/* Optional: what the state machine adds to this node's status
	 * (raftfs status). The loop thread, at every status request: it must
	 * not block. */
	void (*status)(void *ctx, node_sm_status *out);
} node_sm;

typedef struct node node;

/* Completion of a proposal: status 0 with the state machine's result and the
 * index it was applied at (for one this node's apply passed under a
 * restored snapshot, answered from its duplicate table: the snapshot's
 * index, at or after the one it was applied at), or a negative NODE_E*
 * reason. Fires exactly once,
 * on the apply thread or the loop thread: it must not block, and must not
 * call node_stop(). */
typedef void (*node_done_cb)(void *arg, int status, int64_t result, uint64_t index);

/* Completion of a read barrier: 0 or a negative NODE_E* reason. Same
 * thread rules as node_done_cb. */
typedef void (*node_read_cb)(void *arg, int status);

/* Opens the store in cfg->data_dir/raft and builds the core and transport
 * (cfg and sm are borrowed and must outlive the node). Nothing runs yet.
 * 0 or a negative code, with what failed in err. */
int node_new(const node_config *cfg, const node_sm *sm, node **out, char *err, size_t errlen);

/* Starts listening and the loop and apply threads. 0 or a negative code
 * with a log line (e.g. the listen address is taken). */
int node_launch(node *n);

/* Stops both threads (pending proposals and reads fail with
 * NODE_ESTOPPED) and waits for them. Idempotent. Not from a callback. */
void node_stop(node *n);

/* Frees a stopped (or never launched) node. */
void node_free(node *n);

/* Proposes cmd[0..len) (copied). Returns 0 once queued, with the current
 * term and whether this node believes it leads (either may be NULL); the
 * index is not known until applied and is given to cb. timeout_ms 0 means
 * the configured proposal timeout. NODE_ESTOPPED / NODE_ENOMEM, or
 * NODE_E2BIG for a command longer than half the transport's frame limit
 * (cb is then not called). Any thread; may be called again before cb
 * fired (pipelining: any number in flight).
 *
 * Guarantees, when the state machine sets node_sm.dedup_table (kvsm and
 * the filesystem do): (1) each command is applied at most once on every
 * replica; cb reports status 0 only for a command that was applied (with
 * the state machine's result, the same everywhere); a failed one (NODE_E*)
 * may or may not be applied. (2) The commands of this node apply in the
 * order of their node_start() calls (calls from several threads are
 * ordered by when each took the node's lock): when a command is applied,
 * every command started before it on this node was applied earlier in the
 * log, or had been given up by then (its cb reports a NODE_E* error,
 * maybe a moment later); a given-up command never applies once a later
 * one has. (3) Successful callbacks run in that order, on the apply thread;
 * failures come from the loop thread. */
int node_start(node *n, const void *cmd, size_t len, unsigned timeout_ms, node_done_cb cb,
	       void *arg, uint64_t *term, bool *is_leader);

/* Current term and whether this node is the leader. Any thread. */
void node_get_state(node *n, uint64_t *term, bool *is_leader);

/* Linearizable read barrier (ReadIndex, Raft thesis §6.4): cb fires once
 * this node has applied everything committed before the call. Any thread.
 * 0 once queued, or NODE_ESTOPPED / NODE_ENOMEM (cb is then not called). */
int node_read_index(node *n, node_read_cb cb, void *arg);

/* Index of the last entry applied on this node. Any thread. */
uint64_t node_applied(node *n);

/* The client id this process's proposals carry in their envelopes (a
 * fresh random one per node_new, never 0): a state machine that treats its
 * own commands apart (fs: no kernel invalidation for them) asks, rather
 * than guessing from which completion came after which apply. Any thread. */
uint64_t node_client_id(node *n);

/* The commit index this node's store held when node_new opened it (at
 * least its stored snapshot's): what it knew to be committed before it
 * stopped, all of it in its own log, so it applies that far without any
 * peer (a filesystem node waits for this before it serves: fs/svc_start.h).
 * Between node_new and node_launch only (the loop thread owns it after). */
uint64_t node_saved_commit(node *n);

/* How long this node's proposals have gone unanswered, in milliseconds: 0
 * while every pending one was seen committed (or none is pending), else
 * the time since the later of the oldest uncommitted one's start and the
 * last commit of any of them. Commit, not apply: a node whose apply lags by
 * seconds still gets its proposals through (the close lease of
 * fs/fuse_close.h), one cut off from a quorum sees none commit. Any thread
 * (takes the node's lock). */
uint64_t node_unanswered_ms(node *n);

/* How far this node's apply lags its commit, in milliseconds: the time
 * since the oldest batch of committed entries still not wholly applied was
 * handed to the apply thread, 0 when every entry handed out is applied.
 * node_unanswered_ms counts commits only; this is what bounds what a node
 * answering before apply has not yet seen of others' commands (a Recall:
 * fs_node_progressing). Any thread, no lock. */
uint64_t node_apply_lag_ms(node *n);

/* 0 while healthy; the NODE_EFAULT code once applying failed. Any thread. */
int node_fault(node *n);

/* The present connection to peer id as a number that every new connection
 * changes, 0 when there is none (transport_peer_link): a peer seen with a
 * number it did not have before restarted or came back. Any thread. */
uint64_t node_peer_link(node *n, uint64_t id);

/* Acknowledgements of appended entries this node's persist thread sent
 * itself once they were durable, without a hand-off to the loop (tests:
 * node.ack_durable). Any thread. */
uint64_t node_direct_acks(node *n);

/* Testing: filter(arg, m) is asked about every Raft message this node is
 * about to send (on the loop thread); true drops it, as a lossy network
 * would (the peer is not reported unreachable). Set before node_launch. */
struct raft_msg;
typedef bool (*node_msg_filter)(void *arg, const struct raft_msg *m);
void node_set_msg_filter(node *n, node_msg_filter filter, void *arg);

/* How many entries of this node's proposals were skipped as early (their
 * predecessor was lost or overtaken; each costs a resend): for tests and
 * measurements. Any thread. */
uint64_t node_refused(node *n);

/* The most bytes of committed entry data ever queued for the apply thread
 * at once: less than apply_queue_bytes (node_config) plus one entry,
 * whatever the apply thread's pace. */
uint64_t node_apply_queue_max(node *n);

/* Tests: the most entry data this node ever held unsaved on its own disk
 * (in queued saves, or proposed to it as leader), in bytes: as leader at
 * most node_config.unsaved_bytes plus one message's entries (its own
 * proposal, or a follower's forwarded batch: the bound is checked once per
 * message). Any thread. */
uint64_t node_unsaved_max(node *n);

/* Tests: forwarded proposal messages this node, as leader at its unsaved
 * bound, held back so far (README-node.md, "Bounded memory"). Any
 * thread. */
uint64_t node_held_forwarded(node *n);

#endif
