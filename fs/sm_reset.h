// Throws away a state machine that a power loss left untrusted, keeping what is durable by design.
#ifndef RAFTFS_FS_SM_RESET_H
#define RAFTFS_FS_SM_RESET_H

// After a power loss (fs/README-sm.md, "power-loss guard") the tree, the id
// index and the journal may each have lost a different suffix of changes.
// They are not repaired: they are dropped, and the node rebuilds its state
// from what is durable, its own stored snapshot and its own Raft log after
// it (Raft §7: a snapshot plus the log after it is the state). This moves
// DATA/tree and DATA/ids into DATA/dropped/<unique>/ (renames: start-up does
// not wait for 100k unlinks) and deletes the journal and the duplicate
// table from DATA/sm, leaving DATA/sm/next_id (the id reservation, fsynced
// before any id of a block is handed out: ids must never be handed out
// twice) and DATA/sm/boot (rewritten by the next open). Every step is
// durable before the next, and last DATA/sm/clean marks the empty state
// clean (sm.c check_boot): a crash before that leaves the state with its
// old boot id and no mark, which the next open drops again.
// Returns 0 or a negative errno; a message naming what failed goes to stderr.
int sm_reset_drop(const char *data_dir);

// Deletes DATA/dropped, if there is one, on a thread of its own, so a
// dropped tree costs no start-up time; a deletion cut short (by
// sm_reset_stop, or a crash) is taken up by the next start. The thread
// first measures what is there (sm_reset_left), then deletes it (with
// RAFTFS_TEST_DROPPED_HOLD set it measures only, for tests).
// Except when space is short: the rebuild writes about as much as the
// dropped tree holds, so with it still there a node whose filesystem has
// less free than that would fail an apply with ENOSPC and stop applying.
// When the free space is below what the filesystem uses (the dropped
// tree is part of that), the tree is measured here, and if the free
// space is below its size plus 1/16, it is deleted here, before the
// caller goes on (logged). *out is the deleter (NULL when there is
// nothing left to delete). Returns 0 (also when the thread could not
// start: logged; nothing is lost, the next start tries again), or the
// negative errno of a deletion here that failed: the caller must not go on
// (the rebuild would fail an apply with ENOSPC later, stopping the node
// applying for good); the next start tries again.
struct sm_reset;
int sm_reset_start_deleting(const char *data_dir, struct sm_reset **out);

// Entries of a dropped tree that starts in this process walked before
// going on (the measuring walk when space may be short, and the deletion
// when it is): how far a start that shows no other progress got
// (fs/svc_start.h), so a big deletion is not killed as a stuck start.
// Any thread.
uint64_t sm_reset_start_progress(void);

// What of the dropped tree is still to delete: bytes (allocated blocks)
// and entries; both 0 once deleted, or with no deleter (r NULL), and
// while the thread is still measuring, what it counted so far. Any thread.
void sm_reset_left(const struct sm_reset *r, uint64_t *bytes, uint64_t *entries);

// sm_reset_left of the open state machine sm's deleter. Any thread.
struct sm;
void sm_dropped_left(const struct sm *sm, uint64_t *bytes, uint64_t *entries);

// Stops the deleter (it stops at its next file) and frees it. NULL is allowed.
void sm_reset_stop(struct sm_reset *r);

#endif
