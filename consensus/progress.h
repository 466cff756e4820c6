/* progress.h — the leader's view of one follower: match/next, flow-control state, in-flight window.
 *
 * Same state machine as etcd raft's Progress: PROBE sends one append per
 * heartbeat interval until the follower's position is known; REPLICATE
 * pipelines up to max_inflight appends optimistically, and at most
 * RAFT_INFLIGHT_MSGS_BYTES appends' worth of entry bytes; SNAPSHOT sends
 * nothing until the snapshot is reported applied or failed.
 */
#ifndef RAFTFS_PROGRESS_H
#define RAFTFS_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft.h"

/* A follower's window in bytes, in full append messages (max_msg_bytes):
 * a follower that comes back far behind is sent its missing entries this
 * many messages at a time. Without it, its first answer let the leader
 * pipeline max_inflight (256) messages of up to 1 MiB in one go: the loop
 * read and sent the whole backlog at once (1.8 s of loop CPU for 160 MiB,
 * Release, load 8-20), the other followers heard no heartbeat for longer
 * than an election timeout, and the cluster held elections again and
 * again while the node caught up (tests/fuzz/README.md "Found" 21). 8
 * cost a leader's big writes ~13 % (it waits for acknowledgements); 32
 * showed no cost there and kept the elections away. */
#define RAFT_INFLIGHT_MSGS_BYTES 32

/* A ring of the in-flight append messages: the last index of each and
 * its entry bytes (raft_entry_size), their sum and its bound (0: none). */
typedef struct raft_inflights {
	uint64_t *buf, *bytes;
	size_t start, count, size;
	uint64_t in_bytes, max_bytes;
} raft_inflights;

typedef struct raft_progress {
	uint64_t match, next;
	raft_progress_state state;
	uint64_t pending_snapshot; /* index of the snapshot sent, in SNAPSHOT state */
	bool probe_sent;	   /* PROBE: an append is out, wait for a reply or a heartbeat */
	bool recent_active;	   /* heard from since the last check-quorum */
	raft_inflights ins;
} raft_progress;

/* max_bytes: the window's bound in entry bytes (0: count only). */
int raft_progress_init(raft_progress *pr, size_t max_inflight, uint64_t max_bytes);
void raft_progress_destroy(raft_progress *pr);
/* Back to a fresh PROBE state expecting next, as on election (§5.3). */
void raft_progress_reset(raft_progress *pr, uint64_t match, uint64_t next);

void raft_progress_become_probe(raft_progress *pr);
void raft_progress_become_replicate(raft_progress *pr);
void raft_progress_become_snapshot(raft_progress *pr, uint64_t snap_index);

/* An append response acknowledged index n: true if match moved forward. */
bool raft_progress_maybe_update(raft_progress *pr, uint64_t n);
/* Records an append sent in REPLICATE state ending at last, carrying
 * bytes of entries (raft_entry_size). */
void raft_progress_sent_entries(raft_progress *pr, uint64_t last, uint64_t bytes);
/* A rejection of the append at rejected with the follower's hint
 * match_hint; false if it is stale (etcd MaybeDecrTo). */
bool raft_progress_maybe_decr_to(raft_progress *pr, uint64_t rejected, uint64_t match_hint);
/* True when no append may be sent now (flow control). */
bool raft_progress_is_paused(const raft_progress *pr);

/* True when the window holds max_inflight messages or max_bytes. */
bool raft_inflights_full(const raft_inflights *in);
/* Frees every in-flight message ending at or before index. */
void raft_inflights_free_le(raft_inflights *in, uint64_t index);
void raft_inflights_free_first(raft_inflights *in);

const char *raft_progress_state_name(raft_progress_state s);

#endif
