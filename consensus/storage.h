/* storage.h — what the Raft core reads of its stable storage.
 *
 * The core only reads through this table; the application writes (after
 * each Ready: entries, hard state, snapshot) through the implementation's
 * own API. Two implementations: consensus/memory_storage.c (tests, sim) and
 * store/ (RocksDB, the real node). Same contract as etcd raft's Storage.
 *
 * Index conventions: a storage that was compacted up to snapshot index S
 * (or is fresh: S = 0) holds entries S+1 .. last. first_index() is S+1;
 * term(S) is still answered (the snapshot's term), term(i < S) is
 * RAFT_ECOMPACTED, term(i > last) is RAFT_EUNAVAILABLE.
 */
#ifndef RAFTFS_STORAGE_H
#define RAFTFS_STORAGE_H

#include "raft_types.h"

typedef struct raft_storage {
	void *ctx;
	/* Hard state and membership as last persisted. The conf state is
	 * copied into *cs (caller frees contents). */
	int (*initial_state)(void *ctx, raft_hard_state *hs, raft_conf_state *cs);
	/* Entries [lo, hi): at least one entry if lo < hi, otherwise as many as
	 * fit in max_bytes (raft_entry_size). *out is a new array the caller
	 * frees with raft_entries_free. RAFT_ECOMPACTED if lo < first_index,
	 * RAFT_EUNAVAILABLE if hi > last_index + 1. */
	int (*entries)(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes,
		       raft_entry **out, size_t *n);
	int (*term)(void *ctx, uint64_t index, uint64_t *term);
	int (*first_index)(void *ctx, uint64_t *index);
	int (*last_index)(void *ctx, uint64_t *index);
	/* The most recent snapshot (copy; caller frees contents), or
	 * RAFT_ESNAP_TEMP_UNAVAILABLE while one is being made. */
	int (*snapshot)(void *ctx, raft_snapshot *out);
} raft_storage;

#endif
