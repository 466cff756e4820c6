/* vlog_sync.h — a value log file's fdatasync on a thread of its own, so a
 * save's two flushes (the value log's data, RocksDB's synced WAL write) run
 * at once instead of one after the other (store-internal; vlog.h says why
 * that is safe). */
#ifndef RAFTFS_STORE_VLOG_SYNC_H
#define RAFTFS_STORE_VLOG_SYNC_H

typedef struct vlog_syncer vlog_syncer;

/* Starts the syncing thread. 0, or a negative errno (no thread: the caller
 * then syncs on its own thread). */
int vlog_syncer_new(vlog_syncer **out);

/* Stops and joins the thread (after the sync under way, if any), frees it.
 * NULL is ignored. */
void vlog_syncer_free(vlog_syncer *y);

/* Hands fd to the thread for one fdatasync; one at a time: every start is
 * followed by vlog_syncer_wait before the next. fd must stay open until
 * then. */
void vlog_syncer_start(vlog_syncer *y, int fd);

/* Waits for the sync begun by vlog_syncer_start: 0, or the negative errno
 * fdatasync failed with. */
int vlog_syncer_wait(vlog_syncer *y);

#endif
