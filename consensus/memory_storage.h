/* memory_storage.h — an in-memory raft_storage, for tests and the simulator.
 *
 * Plays the role of stable storage in a simulated node: what was appended
 * here survives a simulated crash (the test keeps the memory_storage and
 * builds a new raft on it), what was not is lost. Same semantics as etcd
 * raft's MemoryStorage. Not thread-safe.
 */
#ifndef RAFTFS_MEMORY_STORAGE_H
#define RAFTFS_MEMORY_STORAGE_H

#include "storage.h"

typedef struct memory_storage memory_storage;

/* An empty storage: no entries, snapshot at index 0 term 0, empty conf
 * state, zero hard state. NULL on out of memory. */
memory_storage *memory_storage_new(void);
void memory_storage_free(memory_storage *ms);

/* The raft_storage table reading this storage (ctx = ms). The returned
 * pointer lives as long as ms. */
raft_storage *memory_storage_iface(memory_storage *ms);

/* Append entries (copied), replacing any entries from ents[0].index on.
 * Entries at or below the snapshot index are ignored. Returns 0, or
 * RAFT_EUNAVAILABLE if ents[0].index would leave a gap after last. */
int memory_storage_append(memory_storage *ms, const raft_entry *ents, size_t n);
void memory_storage_set_hard_state(memory_storage *ms, const raft_hard_state *hs);
int memory_storage_set_conf_state(memory_storage *ms, const raft_conf_state *cs);

/* Replace everything with a snapshot (copied): the log becomes empty after
 * snap->meta.index. RAFT_ESNAP_OUT_OF_DATE if older than the current one. */
int memory_storage_apply_snapshot(memory_storage *ms, const raft_snapshot *snap);

/* Record a snapshot of the state machine at index (<= last index) with the
 * given data (copied) and membership; does not compact.
 * RAFT_ESNAP_OUT_OF_DATE if index <= the current snapshot index. */
int memory_storage_create_snapshot(memory_storage *ms, uint64_t index,
				   const raft_conf_state *cs, const void *data,
				   size_t len);

/* Discard entries below index (index becomes the new "dummy" position
 * whose term is still known). RAFT_ECOMPACTED if already compacted. */
int memory_storage_compact(memory_storage *ms, uint64_t index);

#endif
