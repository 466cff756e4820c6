/* progress.h — the leader's view of one follower: match/next, flow-control state, in-flight window.
 *
 * Same state machine as etcd raft's Progress: PROBE sends one append per
 * heartbeat interval until the follower's position is known; REPLICATE
 * pipelines up to max_inflight appends optimistically; SNAPSHOT sends
 * nothing until the snapshot is reported applied or failed.
 */
#ifndef RAFTFS_PROGRESS_H
#define RAFTFS_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft.h"

/* A ring of the last indexes of in-flight append messages. */
typedef struct raft_inflights {
	uint64_t *buf;
	size_t start, count, size;
} raft_inflights;

typedef struct raft_progress {
	uint64_t match, next;
	raft_progress_state state;
	uint64_t pending_snapshot; /* index of the snapshot sent, in SNAPSHOT state */
	bool probe_sent;	   /* PROBE: an append is out, wait for a reply or a heartbeat */
	bool recent_active;	   /* heard from since the last check-quorum */
	raft_inflights ins;
} raft_progress;

int raft_progress_init(raft_progress *pr, size_t max_inflight);
void raft_progress_destroy(raft_progress *pr);
/* Back to a fresh PROBE state expecting next, as on election (§5.3). */
void raft_progress_reset(raft_progress *pr, uint64_t match, uint64_t next);

void raft_progress_become_probe(raft_progress *pr);
void raft_progress_become_replicate(raft_progress *pr);
void raft_progress_become_snapshot(raft_progress *pr, uint64_t snap_index);

/* An append response acknowledged index n: true if match moved forward. */
bool raft_progress_maybe_update(raft_progress *pr, uint64_t n);
/* Records an append sent in REPLICATE state ending at last. */
void raft_progress_sent_entries(raft_progress *pr, uint64_t last);
/* A rejection of the append at rejected with the follower's hint
 * match_hint; false if it is stale (etcd MaybeDecrTo). */
bool raft_progress_maybe_decr_to(raft_progress *pr, uint64_t rejected, uint64_t match_hint);
/* True when no append may be sent now (flow control). */
bool raft_progress_is_paused(const raft_progress *pr);

bool raft_inflights_full(const raft_inflights *in);
/* Frees every in-flight message ending at or before index. */
void raft_inflights_free_le(raft_inflights *in, uint64_t index);
void raft_inflights_free_first(raft_inflights *in);

const char *raft_progress_state_name(raft_progress_state s);

#endif
