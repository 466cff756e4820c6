/* vlog.h — the data of large log entries in append-only files beside
 * RocksDB (store-internal). The log record of such an entry holds a small
 * reference instead (store.c, "Layout"), so its bytes are written once per
 * node: not to RocksDB's WAL, memtable, flushed table and compactions, each
 * a copy and (RocksDB's portable build) a software CRC — most of a node's
 * CPU per byte of a big write, measured in bench/fs/README.md.
 *
 * Files: DIR/vlog/<seq, 16 hex digits>.vlog, appended to by one store, a new
 * one after each open and every VLOG_FILE_BYTES. A reference names the
 * file, offset, length and CRC-32C of the data. A save fdatasyncs the data
 * (on the syncer's thread, vlog_sync.h) while RocksDB writes the synced
 * batch holding the references, and returns only when both are durable.
 * So a crash during a save can leave durable references to data that is
 * not: only that last save's, all of it in the newest file it wrote to,
 * and none of it acknowledged (the node acknowledges a save only once it
 * returned). Open checks the data of every reference into that file and
 * cuts the log at the first one whose data is missing or fails its CRC
 * (vlog_scan). Before session 5 the data was synced first and the batch
 * written after it: two flushes one after the other. A file goes once every entry that was ever
 * written to it is compacted (its highest index is at or below the
 * compaction point), when a snapshot install discards the whole log, or at
 * open when no record refers to it.
 *
 * Spares (session 5): a file that goes is renamed DIR/vlog/<seq>.spare
 * while fewer than VLOG_SPARES are kept, and the next new file is a spare
 * renamed, written over from offset 0: the fdatasync of data written over
 * existing blocks costs several times less than of appended ones (no block
 * allocation; consensus/README-node.md, "Session 5"). Its stale bytes past
 * what was written are never named by a durable reference of a save that
 * returned; one a crash cut short may name them, and fails its CRC like
 * torn data (vlog_scan), unless they are the very bytes it names.
 *
 * Direct writes (session 6): a save's data is copied into one aligned
 * buffer and written with O_DIRECT, not through the page cache, before
 * RocksDB's batch (so a killed process still leaves every save whole; only
 * the fdatasync runs beside the batch): the value log is written once and
 * read back rarely (a lagging follower, the open-time check), and on this
 * machine filling fresh page-cache pages cost as much CPU as the rest of a
 * node's loop thread per byte of a big write (bench/fs/README.md, "Session
 * 6"). The file stays one contiguous stream of entries: each save rewrites
 * the partial block the previous one ended in (the same bytes; a torn
 * rewrite leaves them as they were) and pads its own last block with zeros,
 * so a file written only directly has a size that is a multiple of
 * VLOG_ALIGN (buffered saves, below, pad nothing; a reference carries its
 * own offset and length, so readers never rely on the padding). Where the filesystem
 * refuses O_DIRECT (EINVAL at open or at a write: remembered for the
 * store's life, so no later file asks again), or RAFTFS_STORE_VLOG_BUFFERED=1
 * (read at open; before/after measurements in one build), the entries' data
 * is written from where it is by pwritev through the page cache, with no
 * aligned copy and no padding (session 7). Not for use outside store/. */
#ifndef RAFTFS_STORE_VLOG_H
#define RAFTFS_STORE_VLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft_types.h"

typedef struct store store;

/* Entries with at least this much data go to the value log. Smaller ones
 * stay inline: for them the value log's extra fdatasync per save would
 * cost more latency than RocksDB's copies cost CPU. */
#define VLOG_MIN_BYTES (64u << 10)

/* A file takes no new data once it has this many bytes. */
#define VLOG_FILE_BYTES (64ull << 20)

/* Offsets and lengths of direct writes are multiples of this (the largest
 * logical block size of the devices it runs on). */
#define VLOG_ALIGN 4096u

/* A save buffer larger than this is not kept for the next save. */
#define VLOG_BUF_KEEP (64u << 20)

/* Spares kept at most (see "Spares" above). */
#define VLOG_SPARES 2

/* Size of a reference as stored in the entry's record. Its first byte is
 * 0, which no protobuf-encoded raftpb.Entry starts with (field number 0
 * does not exist), so records of both kinds share the 'e' keys. */
#define VLOG_REF_BYTES 42

typedef struct vlog_file {
	uint64_t seq;
	int fd;		    /* reads, syncs */
	int dfd;	    /* the file taking data: O_DIRECT writes; -1: none (fd) */
	uint64_t size;	    /* bytes written (and kept) so far */
	uint64_t max_index; /* highest entry index written to it; 0: none known */
	uint64_t min_index; /* open: lowest entry index referring to it */
} vlog_file;

struct vlog_syncer;

typedef struct vlog {
	char *dir;
	int dirfd;
	vlog_file *files; /* ascending seq */
	size_t n, cap;
	bool appending; /* files[n - 1] takes new data */
	uint64_t next_seq;
	struct vlog_syncer *syncer; /* made at the first save of big entries */
	int sync_fd;		    /* a sync begun by vlog_append, not yet waited for; -1: none */
	uint64_t sync_seq;	    /* ...of this file */
	uint8_t *buf;		    /* a save's data, aligned (VLOG_ALIGN); NULL: none yet */
	size_t buf_cap;
	size_t head;		    /* buf starts with the last head bytes of files[n - 1] (the
				       partial block its last save ended in) */
	bool buffered;		    /* no O_DIRECT: RAFTFS_STORE_VLOG_BUFFERED, or refused */
	bool sync_inline;	    /* no syncer thread: vlog_append_wait syncs itself */
	bool serial;		    /* RAFTFS_STORE_SERIAL_FLUSH: sync before the batch (as before
				       session 5; for before/after measurements in one build) */
	uint64_t cut_at;	    /* open: first entry cut from the log (0: none) */
	uint64_t spare[VLOG_SPARES]; /* seqs of the spares (DIR/vlog/<seq>.spare) */
	size_t n_spare, max_spare;   /* max: RAFTFS_STORE_VLOG_SPARES (measurements), else VLOG_SPARES */
} vlog;

/* Whether entry e's data goes to the value log. */
static inline bool vlog_wants(const raft_entry *e)
{
	return e->len >= VLOG_MIN_BYTES;
}

/* Whether a stored entry payload is a reference. */
static inline bool vlog_is_ref(const uint8_t *payload, size_t plen)
{
	return plen == VLOG_REF_BYTES && payload[0] == 0;
}

/* Opens DIR/vlog (made if missing) and its files, so entries can be read. */
int vlog_open(store *s);

/* Once the log bounds are loaded: notes which file every stored reference
 * names, checks the data of every reference into the newest such file and
 * cuts the log at the first whose data is missing or damaged (a save cut
 * short by a crash, see above; vl.cut_at says where), and deletes the files
 * no reference names. */
int vlog_scan(store *s);

/* Closes the files and frees the table. */
void vlog_close(store *s);

/* Writes the data of every entry of ents[0..n) that vlog_wants() (one
 * write) and begins making it durable (one fdatasync, on the syncer's
 * thread);
 * refs[i * VLOG_REF_BYTES] gets entry i's reference (untouched for the
 * others). After a 0 return the caller must call vlog_append_wait before
 * anything else of the value log, and count the data durable only once
 * that returned 0. */
int vlog_append(store *s, const raft_entry *ents, size_t n, uint8_t *refs);

/* Waits for the sync vlog_append began (0 at once if none): 0 once the
 * data is durable, or the error, naming the file. */
int vlog_append_wait(store *s);

/* The same wait without touching the store (store_save_sync runs without
 * the store lock, and vlog_append_wait records a failure as the store's
 * error, which the thread holding the lock may be using): 0 once the data
 * is durable, or the negative errno; the caller names the file
 * (v->sync_seq). */
int vlog_sync_wait(vlog *v);

/* Fills e (term, index, type, and a new data buffer the caller frees) from
 * the reference ref stored under index, reading and checking the data. */
int vlog_read(store *s, uint64_t index, const uint8_t *ref, raft_entry *e);

/* The term in a reference, without reading the data. */
uint64_t vlog_ref_term(const uint8_t *ref);

/* Whether compacting through index frees a file (the compaction must then
 * be durable before vlog_drop deletes it: a lost compaction would bring
 * back entries whose data is gone). */
bool vlog_droppable(const store *s, uint64_t index);

/* Deletes the files whose entries are all at or below index. */
void vlog_drop(store *s, uint64_t index);

/* Deletes every file: a durable write discarded the whole log (a snapshot
 * installed beyond it). A crash before this leaves files nothing refers
 * to, which the next open deletes (vlog_scan). */
void vlog_drop_all(store *s);

#endif
