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
// sm_reset_stop, or a crash) is taken up by the next start. *out is the
// deleter (NULL when there is nothing to delete). Returns 0 or a negative
// errno (the thread could not start; nothing is lost, the next start tries
// again).
struct sm_reset;
int sm_reset_start_deleting(const char *data_dir, struct sm_reset **out);

// Stops the deleter (it stops at its next file) and frees it. NULL is allowed.
void sm_reset_stop(struct sm_reset *r);

#endif
