/* store_int.h — what the store's own files share: the store struct, keys,
 * checksummed records and errors. Not for use outside store/. */
#ifndef RAFTFS_STORE_INT_H
#define RAFTFS_STORE_INT_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>

#include "store.h"
#include "vlog.h"

#define STORE_ERRMSG_MAX 512
#define KEY_MAX 17 /* prefix byte + two big-endian u64 */

/* Key prefixes. Indexes and offsets follow big-endian so RocksDB's bytewise
 * order is numeric order. */
#define KEY_PREFIX_META 'm'  /* "m<name>": single records, see store.c */
#define KEY_PREFIX_ENTRY 'e' /* 'e' be64(index): one raftpb.Entry */
#define KEY_PREFIX_CHUNK 'c' /* 'c' be64(generation) be64(offset): snapshot data */

extern const char KEY_FORMAT[], KEY_HARD_STATE[], KEY_CONF_STATE[], KEY_LOG_START[], KEY_SNAPSHOT[],
    KEY_STAGE[];

/* A snapshot as recorded (current or staged): its data lives in the chunks
 * of generation gen, len bytes in all (for a staged one: so far). */
typedef struct snap_record {
	uint64_t gen;
	uint64_t len;
	raft_snapshot_meta meta; /* owns meta.conf */
} snap_record;

struct store {
	char *dir;
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_writeoptions_t *wo_sync;
	rocksdb_writeoptions_t *wo_async;
	rocksdb_readoptions_t *ro;

	/* Cached so the hot path never seeks (kept in step with every write). */
	uint64_t compact_index; /* last discarded entry (the snapshot point), 0 when fresh */
	uint64_t compact_term;
	uint64_t last_index; /* == compact_index when the log is empty */
	uint64_t last_term;
	raft_hard_state hs;
	snap_record snap;  /* current snapshot */
	snap_record stage; /* staged snapshot, valid when staging */
	bool staging;

	uint8_t *scratch; /* reused buffer for encoding one value */
	size_t scratch_cap;

	vlog vl; /* large entries' data (vlog.h) */
	/* store_save_write wrote a save that store_save_sync has not yet
	 * made durable (the saving thread's own: no other reads it). */
	bool sync_owed;
	/* The code of the first failed sync (0: none). Every later write
	 * fails with it until the store is reopened: a sync that fails may
	 * have dropped the data it was to make durable (Linux marks the
	 * pages clean after a failed writeback), so a later sync that
	 * succeeds says nothing about it, and a save that counted on it
	 * would be acknowledged and lost. Reopening reads back what is on
	 * disk (open cuts a value log reference to lost data, vlog.h).
	 * Atomic: store_save_sync sets it without the caller's lock. */
	atomic_int sync_failed;
	/* Held by every sync of RocksDB's WAL: store_save_sync's (which
	 * runs without the caller's lock) and every synced batch_write
	 * (under it), from its write to its latch. Linux reports a file's
	 * failed writeback to one fsync only, so when a synced write fails
	 * its WAL sync, a store_save_sync syncing at the same time could
	 * return 0 for a save whose data was dropped; holding this, the
	 * failing write latches sync_failed before the other sync starts,
	 * and store_save_sync reads the latch after its sync. Lock order:
	 * the caller's lock, then this. */
	pthread_mutex_t sync_mu;
	atomic_int sync_waiting; /* threads waiting for sync_mu (store_test_sync_waiting) */
	/* Tests: store_fail_next_sync's code (set by the test's thread, read
	 * by the syncing one) and store_test_on_synced_write's hook. */
	atomic_int fail_next_sync;
	int (*synced_write_hook)(store *, void *);
	void *synced_write_arg;

	raft_storage iface;
	char errmsg[STORE_ERRMSG_MAX];
};

/* Records msg (prefixed with the store's directory) as the store's error
 * and returns code, so failures read `return store_fail(s, ...)`. */
int store_fail(store *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A sync failed with code: latched as s->sync_failed (the first code
 * stays). Returns code. */
int store_sync_failed(store *s, int code);

/* If a sync failed before: records why `what` is refused as the store's
 * error and returns the latched code; else 0. */
int store_check_synced(store *s, const char *what);

/* s->sync_mu, counted in s->sync_waiting while waited for. */
void store_sync_lock(store *s);
void store_sync_unlock(store *s);

size_t key_entry(uint8_t *k, uint64_t index);
size_t key_chunk(uint8_t *k, uint64_t gen, uint64_t offset);

void be64_put(uint8_t *p, uint64_t v);
uint64_t be64_get(const uint8_t *p);

/* A buffer for a value's payload of plen bytes, followed by rec_put(): the
 * checksum header goes in front of it. NULL (error recorded) on OOM. */
uint8_t *rec_buf(store *s, size_t plen);

/* Adds key -> [crc32c(key, payload)][payload] to the batch; the payload is
 * the plen bytes at rec_buf(). */
void rec_put(store *s, rocksdb_writebatch_t *b, const uint8_t *key, size_t klen, size_t plen);

/* Verifies a value read under key and returns its payload (pointing into
 * val). RAFT_ECORRUPT, with the key named in the error, if it is truncated
 * or its checksum does not match. */
int rec_check(store *s, const uint8_t *key, size_t klen, const char *val, size_t vlen,
	      const uint8_t **payload, size_t *plen);

/* A record built in a buffer of the caller's (for threads other than the
 * store's owner, which cannot use rec_buf's scratch): rec_size(plen)
 * bytes at dst get the checksum and a copy of the payload; returns the
 * value's length. */
size_t rec_size(size_t plen);
size_t rec_make(uint8_t *dst, const uint8_t *key, size_t klen, const void *payload, size_t plen);

/* rec_check() without a store, for threads other than the store's owner:
 * the reason of a failure goes to why[0..whylen). */
int rec_verify(const uint8_t *key, size_t klen, const char *val, size_t vlen,
	       const uint8_t **payload, size_t *plen, char *why, size_t whylen);

/* Reads and verifies the record under key. Returns 1 and sets *ps (destroy
 * with rocksdb_pinnableslice_destroy; the payload points into it) if found,
 * 0 if absent, or a negative error. */
int rec_get(store *s, const uint8_t *key, size_t klen, rocksdb_pinnableslice_t **ps,
	    const uint8_t **payload, size_t *plen);

/* Writes the batch (synced if sync); what names the operation for errors. */
int batch_write(store *s, rocksdb_writebatch_t *b, bool sync, const char *what);

/* Reads and decodes entry index (log.c); RAFT_ECORRUPT if it is missing. */
int entry_get(store *s, uint64_t index, raft_entry *e);

/* The term of stored entry index, without reading a large entry's data. */
int entry_term(store *s, uint64_t index, uint64_t *term);

/* Open, after a crash during a save (vlog.h): discards entries index..last
 * in one synced batch, and lowers the saved commit index below index if it
 * was at or above it. */
int log_cut(store *s, uint64_t index);

/* The iterator's error, if any, recorded with what as context. */
int iter_status(store *s, rocksdb_iterator_t *it, const char *what);

/* Adds the compaction point (index, term) to the batch. */
void log_start_put(store *s, rocksdb_writebatch_t *b, uint64_t index, uint64_t term);

/* Adds the conf state record to the batch. */
int conf_state_put(store *s, rocksdb_writebatch_t *b, const raft_conf_state *cs);

/* Snapshot records (snapshot.c). */
int snap_record_load(store *s, const char *key, snap_record *r, bool *found);
int snap_record_put(store *s, rocksdb_writebatch_t *b, const char *key, const snap_record *r);
void snap_records_free(store *s);

/* The raft_storage table (storage_iface.c). */
void store_iface_init(store *s);

#endif
