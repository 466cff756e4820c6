/* store.h — a node's Raft stable storage in one RocksDB directory: log,
 * hard state, membership, snapshot metadata and (chunked) snapshot data.
 *
 * The only module that knows RocksDB. One store per node; not thread-safe:
 * the node runtime uses it under one lock (consensus/node_persist.h: the
 * persist thread per save, the loop thread for everything else). Every function returns 0 or a
 * negative code (raft_types.h); on error store_errmsg() says what failed and
 * on what (the directory, the key, RocksDB's own message).
 *
 * Durability, said once here and again per call: "durable" means the data
 * is on disk (RocksDB WAL written with sync=true) when the call returns, so
 * a crash right after cannot lose it. Each write call is atomic (one
 * WriteBatch): after a crash either all of it or none of it is there.
 *
 * Index conventions are those of consensus/storage.h: with the log
 * compacted up to S (S = 0 when fresh), entries S+1 .. last are held,
 * term(S) is still known, first index is S+1, and last index is S when the
 * log is empty. Compaction never goes past the current snapshot, so every
 * discarded entry is covered by a snapshot.
 *
 * On-disk layout (one column family, keys by prefix byte; see store.c).
 */
#ifndef RAFTFS_STORE_H
#define RAFTFS_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage.h"

/* Bumped whenever keys or values change incompatibly; a store of another
 * version is refused at open. */
#define STORE_FORMAT_VERSION 1

/* storage->snapshot() carries the snapshot data inline up to this size;
 * larger data is left for the caller to stream with store_snapshot_read(). */
#define STORE_SNAPSHOT_INLINE_MAX (1u << 20)

typedef struct store store;

/* Opens the store in directory dir, creating the directory (with its
 * parents) and an empty store if missing. Refuses a directory that holds something else: a non-empty
 * directory that is not a RocksDB database, a RocksDB database without the
 * raftfs format record, or one of another format version. On success *out
 * is the store (close with store_close); on failure *out is NULL and, if err
 * is not NULL, err[0..errlen) holds the reason. A new store's format record
 * is durable on return. */
int store_open(const char *dir, store **out, char *err, size_t errlen);

/* Closes the store and frees it. Everything acknowledged as durable is on
 * disk already; non-durable writes are flushed to the OS by RocksDB. */
void store_close(store *s);

/* The last error on this store, with context (directory, key, cause). */
const char *store_errmsg(const store *s);

/* The directory the store lives in. */
const char *store_dir(const store *s);

/* The first entry this open cut from the log, or 0 if none: a crash during
 * a save left references to value-log data that never became durable
 * (that save was never acknowledged, see store_save). For the node's log
 * and for tests. */
uint64_t store_open_cut(const store *s);

/* ---- the log and the persistent state ---- */

/* Persists one Ready of the Raft core: the hard state (if hs is not NULL)
 * and entries ents[0..n), in one synced WriteBatch, so that term, vote and
 * log can never be seen out of step with each other after a crash. The
 * entries must have contiguous indexes; they replace every stored entry
 * from ents[0].index on (a conflicting suffix is deleted, Raft §5.3), and
 * entries at or below the compaction point are ignored (already covered by
 * the snapshot). RAFT_EUNAVAILABLE if ents[0].index > last + 1 (a gap),
 * RAFT_EINVAL if the batch is not contiguous. Durable on return. A crash
 * before it returns may leave the batch's references to large entries'
 * data that is not durable (the two flushes run at once); the next open
 * then cuts the log at the first such entry (store_open_cut), so the
 * caller must not count any of the batch as durable before the return. */
int store_save(store *s, const raft_hard_state *hs, const raft_entry *ents, size_t n);

/* store_save() in two steps, so that whoever shares the store under a
 * lock need not hold it while the disk syncs (consensus/node_persist.c:
 * the loop thread reads the log and answers status meanwhile).
 * store_save_write checks and writes the save (RocksDB's batch not
 * synced; the value log's data written and its fdatasync begun on the
 * syncer thread) and moves the cached last index and hard state: the
 * entries are readable at once but not durable. store_save_sync then
 * syncs RocksDB's write-ahead log and waits for the value log's sync:
 * durable on its 0 return, and not a moment before (a crash may lose the
 * save, or leave it cut at open as store_save says). Same thread for
 * both, store_save_sync after every store_save_write that returned 0 and
 * before the next. store_save_sync touches nothing any other call reads
 * or writes but the sync lock and the latch below (its error goes to
 * err[0..errlen), not to store_errmsg; it waits while a synced write of
 * another thread runs), so other threads may use the store meanwhile,
 * but none may discard the log it is syncing (store_snapshot_install of
 * a snapshot beyond the log) or count an entry of it as durable before it
 * returned. */
int store_save_write(store *s, const raft_hard_state *hs, const raft_entry *ents, size_t n);
int store_save_sync(store *s, char *err, size_t errlen);

/* A failed sync is sticky: once store_save_sync, store_save or a synced
 * write (store_set_conf_state, store_compact, a snapshot's install...)
 * failed, every later save, write and store_save_sync fails with the
 * same code (store_errmsg or err says why) until the store is closed and
 * opened again — a later sync that succeeds would not cover what the
 * failed one may have dropped. A store_save_sync that owes nothing
 * returns the code too, and one that runs while another thread's synced
 * write fails returns 0 only if its WAL sync was done before that write
 * began. Any error of a synced write latches, also one before its sync
 * (ENOSPC appending to the WAL): the node stops at its next save. */

/* Tests: the next store_save_sync (or store_save's sync) fails with rc
 * after syncing, as if the disk had failed it. */
void store_fail_next_sync(store *s, int rc);

/* Tests: fn(s, arg) runs inside every synced write (store_set_conf_state,
 * store_compact, ...) after RocksDB's write returned, with the store's
 * sync lock held; a nonzero return fails the write with that code as if
 * its sync had failed (NULL: no hook). store_test_sync_waiting: how many
 * threads wait for that lock now (a sync blocked behind the write). */
void store_test_on_synced_write(store *s, int (*fn)(store *, void *), void *arg);
int store_test_sync_waiting(store *s);

/* store_save() without a hard state. Durable on return. */
int store_append(store *s, const raft_entry *ents, size_t n);

/* Sets the hard state. Durable on return. */
int store_set_hard_state(store *s, const raft_hard_state *hs);

/* Sets the membership (conf state) as of the applied index. Durable on return. */
int store_set_conf_state(store *s, const raft_conf_state *cs);

/* The hard state as last saved (zeros when fresh). From memory, no I/O. */
void store_hard_state(const store *s, raft_hard_state *hs);

/* The conf state as last saved (empty when fresh), copied into *cs; the
 * caller frees it with raft_conf_state_free_contents. */
int store_conf_state(store *s, raft_conf_state *cs);

/* First and last index of the log (see the conventions above). From
 * memory, no I/O. */
uint64_t store_first_index(const store *s);
uint64_t store_last_index(const store *s);

/* Term of entry index: the compaction point's term for index == first - 1;
 * RAFT_ECOMPACTED below that, RAFT_EUNAVAILABLE beyond the last index. */
int store_term(store *s, uint64_t index, uint64_t *term);

/* Entries [lo, hi): as many as fit in max_bytes (raft_entry_size), but at
 * least one if lo < hi. *out is a new array (NULL when *n == 0) the caller
 * frees with raft_entries_free. RAFT_ECOMPACTED if lo < first index,
 * RAFT_EUNAVAILABLE if hi > last + 1, RAFT_EINVAL if lo > hi. */
int store_entries(store *s, uint64_t lo, uint64_t hi, uint64_t max_bytes, raft_entry **out,
		  size_t *n);

/* Discards every entry up to and including index, remembering its term as
 * the new compaction point (first index becomes index + 1). RAFT_ECOMPACTED
 * if index < first index, RAFT_EUNAVAILABLE if index > last index,
 * RAFT_EINVAL if index is beyond the current snapshot (the entries would be
 * lost). Not durable on return: a compaction lost in a crash only brings
 * back entries the snapshot also covers; it is atomic either way. */
int store_compact(store *s, uint64_t index);

/* ---- snapshots ----
 *
 * The current snapshot is metadata plus data of any size, kept in chunks so
 * that no call holds all of it in memory. A new snapshot (received from the
 * leader, or made of the local state machine) is staged: begin, write its
 * data chunk by chunk, then install, which makes it current atomically.
 * Until install, the current snapshot is untouched and readable. A fresh
 * store has a snapshot at index 0, term 0, empty membership, no data. */

/* The current snapshot's metadata (copied; free the conf with
 * raft_conf_state_free_contents) and its data length. */
int store_snapshot_meta(store *s, raft_snapshot_meta *meta, uint64_t *len);

/* Reads up to cap bytes of the current snapshot's data from offset into
 * buf; *n is the count read (0 at or beyond the end). */
int store_snapshot_read(store *s, uint64_t offset, void *buf, size_t cap, size_t *n);

/* A reader of one snapshot's data in stored chunks, for a thread other than
 * the store's owner: bulk reads (sending a snapshot to a follower) then
 * never hold up the loop thread that owns the store. */
typedef struct store_snap_reader store_snap_reader;

/* Opens a reader of the current snapshot's data from offset on, and gives
 * its index and data length (either pointer may be NULL). The reader sees
 * the data as it is now (a RocksDB snapshot pins it): a newer snapshot
 * installed meanwhile, which deletes these chunks, does not change what it
 * reads. Call on the store's thread; the reader may then be used on any
 * one thread at a time until store_snap_reader_close, which must come
 * before store_close. */
int store_snap_reader_open(store *s, uint64_t offset, store_snap_reader **out, uint64_t *index,
			   uint64_t *len);

/* Copies data from the reader's position into buf and advances: at most
 * cap bytes and never past the end of a stored chunk, so a cap of at least
 * the chunk size reads whole stored chunks, one per call (one iterator
 * step, no seek). *offset is where the bytes start, *n their count (0 at
 * the end). A chunk that fails its checksum or is missing is RAFT_ECORRUPT;
 * store_snap_reader_errmsg says what failed. */
int store_snap_reader_read(store_snap_reader *r, void *buf, size_t cap, uint64_t *offset,
			   size_t *n);

/* What the reader's last failure was, naming the store and the chunk. */
const char *store_snap_reader_errmsg(const store_snap_reader *r);

/* Releases the reader and what it pins. NULL is ignored. Any thread. */
void store_snap_reader_close(store_snap_reader *r);

/* Starts staging a snapshot with the given metadata (copied), discarding
 * any snapshot staged before and not installed. RAFT_ESNAP_OUT_OF_DATE if
 * meta->index is not beyond the current snapshot. Not durable on return
 * (a crash loses the staging; the current snapshot is unaffected). */
int store_snapshot_begin(store *s, const raft_snapshot_meta *meta);

/* Writes the chunk buf[0..len) of the staged snapshot's data at offset.
 * offset is either the staged length (append) or the offset of an earlier
 * chunk, which drops that chunk and everything after it (a resumed
 * transfer); otherwise RAFT_EINVAL. RAFT_EINVAL without a staged snapshot.
 * Not durable on return; store_snapshot_staged() tells after a restart how
 * much survived. */
int store_snapshot_write(store *s, uint64_t offset, const void *buf, size_t len);

/* Whether a snapshot is staged; if so, its metadata index and the length of
 * data staged so far (either pointer may be NULL). */
bool store_snapshot_staged(const store *s, uint64_t *index, uint64_t *len);

/* Where a staged snapshot comes from: a stream from node `from` in its
 * term `term` (a leader's image at an index never changes within its
 * term), `total` bytes in all. Kept so that a transfer broken off, also
 * by a restart of this node, resumes where the staging ends. */
typedef struct store_snap_source {
	uint64_t from, term, total;
} store_snap_source;

/* Records the staged snapshot's source (store_snapshot_begin forgets it).
 * Not durable on return, as the staging itself. */
int store_snapshot_stage_source(store *s, const store_snap_source *src);

/* The staged snapshot's source: 1 and *src if one was recorded, 0 if not
 * (nothing staged, or a local snapshot), or a negative error. */
int store_snapshot_staged_source(store *s, store_snap_source *src);

/* A writer of the staged snapshot's data for a thread other than the
 * store's owner (a local image streamed while apply goes on): the chunks
 * go into RocksDB from that thread, and the owner only records at the end
 * how much was written (store_snapshot_stage_commit). */
typedef struct store_snap_writer store_snap_writer;

/* Opens a writer that appends to the staged snapshot from its current
 * length on. RAFT_EINVAL without a staged snapshot. Store's thread. */
int store_snap_writer_open(store *s, store_snap_writer **out);

/* Appends buf[0..len) as one stored chunk. Not durable on return (install
 * makes it so). The writes yield to the store's own: while RocksDB would
 * slow or stop writes (memtables or level-0 files piling up: all writers
 * would wait, the log's too), this waits, polling every few ms, so an
 * image never holds up the Raft log. *cancel (may be NULL) is polled while
 * waiting: RAFT_ESNAP_OUT_OF_DATE when it is set. On error
 * store_snap_writer_errmsg says what failed. The writer's thread only. */
int store_snap_writer_append(store_snap_writer *w, const void *buf, size_t len,
			     const _Atomic bool *cancel);

/* How long (ms, about) the writer waited for RocksDB so far. */
uint64_t store_snap_writer_waited_ms(const store_snap_writer *w);

/* What the writer's last failure was, naming the store and the chunk. */
const char *store_snap_writer_errmsg(const store_snap_writer *w);

/* Store's thread, once the writer's thread is done with it: if the
 * staging is still the one the writer was opened on, records the length
 * written as its staged length (so store_snapshot_install takes it) and
 * returns 0; otherwise (another staging began meanwhile) deletes the
 * chunks the writer wrote and returns RAFT_ESNAP_OUT_OF_DATE. Frees the
 * writer either way. */
int store_snapshot_stage_commit(store *s, store_snap_writer *w);

/* Store's thread, while w's thread goes on writing: records len (what w's
 * thread reported written) as the staged length, so that a restart, or an
 * offer of the same image, resumes there. RAFT_ESNAP_OUT_OF_DATE if the
 * staging is no longer the one w was opened on. Not durable on return. */
int store_snapshot_stage_record(store *s, const store_snap_writer *w, uint64_t len);

/* Store's thread: frees the writer of an image given up; its chunks go
 * with the staging (the next begin drops them) or now, if that staging
 * was replaced meanwhile. NULL is ignored. */
void store_snap_writer_discard(store *s, store_snap_writer *w);

/* Frees the writer without the store (its owner is gone: a stopped node);
 * the chunks stay with the staging, which the next begin drops. */
void store_snap_writer_free(store_snap_writer *w);

/* Makes the staged snapshot current, in one synced WriteBatch, following
 * the Raft paper §7: if the log holds an entry at the snapshot's index with
 * the snapshot's term (a snapshot of the local state machine, or a received
 * one the log already agrees with), the log is kept as it is and the caller
 * compacts it when it likes (store_compact: followers that lag a little
 * still get entries instead of a snapshot); otherwise the whole log is
 * discarded and the snapshot's index becomes the compaction point (first
 * index = index + 1, last index = index). The conf state becomes the
 * snapshot's, so meta.conf must be the membership as of its index (true
 * for a received snapshot, and for a local one taken at the applied index),
 * and the previous snapshot's data is deleted. RAFT_EINVAL if nothing is
 * staged, RAFT_ESNAP_OUT_OF_DATE if a newer snapshot became current
 * meanwhile. Durable on return. */
int store_snapshot_install(store *s);

/* store_snapshot_install for a snapshot of this node's own state machine:
 * when the log is kept, the conf state is left as it is rather than set to
 * the snapshot's. The runtime puts membership changes into effect (and
 * stores them) as they commit, ahead of apply, so the stored membership
 * may already hold changes from entries after the snapshot's index; the
 * snapshot's record still carries the membership as of its index. */
int store_snapshot_install_local(store *s);

/* ---- the Raft core's view ---- */

/* The raft_storage table over this store (ctx = s), valid while s is open.
 * snapshot() returns the current snapshot's metadata, with its data inline
 * when at most STORE_SNAPSHOT_INLINE_MAX bytes and otherwise data = NULL,
 * len = 0 (the runtime streams it with store_snapshot_read()); it never
 * returns RAFT_ESNAP_TEMP_UNAVAILABLE, since staging leaves the current
 * snapshot readable. */
raft_storage *store_raft_storage(store *s);

#endif
