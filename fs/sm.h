// The filesystem state machine: applies fspb.Commands to a node's local tree, reads it by id.
#ifndef RAFTFS_FS_SM_H
#define RAFTFS_FS_SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

// Layout of a data directory DATA (see fs/README-sm.md for the full story):
//   DATA/tree/        the filesystem as a plain tree (readable with ls while down)
//   DATA/ids/xx/<id>  one hard link per non-directory object, xx = low id byte
//   DATA/sm/          the append-only apply journal, the saved duplicate table,
//                     the id reservation, the boot id
// Every object carries its id in xattr trusted.raftfs.id and its replicated
// ctime in trusted.raftfs.ctime. The daemon must run as root (trusted.*).

struct sm;

#define SM_ROOT_ID 1ULL

// Bits of fspb.SetAttr.valid; the same values as FUSE_SET_ATTR_* so the FUSE
// layer can pass its `to_set` through unchanged.
#define SM_SET_MODE (1u << 0)
#define SM_SET_UID (1u << 1)
#define SM_SET_GID (1u << 2)
#define SM_SET_SIZE (1u << 3)
#define SM_SET_ATIME (1u << 4)
#define SM_SET_MTIME (1u << 5)
#define SM_SET_ATIME_NOW (1u << 7) // the proposer puts its clock in atime_ns
#define SM_SET_MTIME_NOW (1u << 8) // the proposer puts its clock in mtime_ns

// Linux's loss of privileges, decided by the state machine so every node
// gets the same mode whatever its kernel does: chown(2) of a non-directory
// (any caller) and a write by anyone but root clear set-user-id, and
// set-group-id when group execute is set (without it the bit marks
// mandatory locking and stays). The mount's predictions use it too.
static inline mode_t sm_drop_setid(mode_t m)
{
	m &= ~(mode_t)S_ISUID;
	if (m & S_IXGRP)
		m &= ~(mode_t)S_ISGID;
	return m;
}

// Result of a stale retry: a (client, seq) below the client's min_pending,
// whose result was forgotten; by the envelope's contract nobody waits for it.
#define SM_RESULT_STALE EALREADY

// Result of a command that changes the entries of a directory delegated to
// another node (Command.node is not its holder), or of a write-behind
// command (Command.behind) whose delegation ended before it applied
// (fs/README-sm.md, "Delegations"). The proposer recalls and retries, or
// reports the write-behind failure.
#define SM_RESULT_DELEGATED EREMOTE

// Result of a Revoke decided before its revoker applied the holder's
// latest start command (fs/sm_starts.h): nothing changes; the holder is
// back, and the revoker recalls it instead.
#define SM_RESULT_HOLDER_BACK EAGAIN

// Opens (creating on first use) the state machine over data_dir. node_id
// (1..65535) is this node's id, used only to allocate fresh ids. A fresh
// data dir gets an empty root, id 1, mode 0755, root:root, times 0.
// On success *out owns the state machine; free it with sm_close.
// Returns 0 or a negative errno; a message naming what failed goes to stderr.
int sm_open(const char *data_dir, uint32_t node_id, struct sm **out);

// After a machine crash (the boot id changed while the state machine was
// open, without a clean close), the data dir may have lost writes that were
// only in the page cache: sm_open then drops the tree, the index and the
// journal (fs/sm_reset.h; the id reservation is kept) and opens an empty
// state machine at index 0, which the runtime rebuilds from the node's
// stored snapshot and Raft log (fs/README-sm.md, "Power loss").

// Closes everything sm holds (syncing the tree and marking the journal clean
// if it is healthy) and frees it. NULL is allowed.
void sm_close(struct sm *sm);

// The index of the last command known applied. After a crash, the command the
// process was applying is counted as not applied: the caller must deliver it
// again (the raft log still holds it) and sm_apply redoes it with the result it
// recorded before the crash (the redo steps are idempotent).
uint64_t sm_applied_index(struct sm *sm);

// The duplicate table sm_apply records into (consensus/dedup.h), for the
// runtime's per-node order rule. Apply thread only.
struct dedup;
const struct dedup *sm_dedup(struct sm *sm);

// Applies the command (an encoded fspb.Command) committed at `index`, which
// must be sm_applied_index() + 1. client_id/seq/min_pending come from the
// runtime's envelope (consensus/envelope.h); client_id 0 means "no duplicate
// detection". A (client_id, seq) already applied is not executed again:
// *result is its recorded result (SM_RESULT_STALE if it was below the
// client's min_pending and forgotten). The duplicate table is
// consensus/dedup.h, persisted through the journal.
//
// Returns 0 with *result = 0 or a positive errno (EEXIST, ENOENT, ...): the
// command's outcome, a deterministic function of the replicated state, the
// same on every node. Returns a negative errno for a local fault (ENOSPC, EIO,
// a tree that does not match the journal): the node must stop applying and
// report itself unhealthy; every later call returns the same error.
// -EALREADY/-EINVAL (not sticky) for an index out of sequence, or for a
// redelivered index whose command differs from the one being applied at the
// crash (the caller's log is not the one this state machine applied).
// Call from one thread at a time (the apply thread); reads may run concurrently.
int sm_apply(struct sm *sm, uint64_t index, uint64_t client_id, uint64_t seq, uint64_t min_pending,
	     const void *cmd, size_t len, int *result);

// The most commands a Batch entry carries (fs.proto): its result packs
// theirs, one byte each, into 64 bits.
#define SM_BATCH_MAX 8

// sm_apply with the entry's whole result: for a Batch (fs.proto, a mount's
// held commands as one entry), byte k is sub-command k's result (0 or a
// positive errno); each sub-command applies as its own entry would, in
// order, and a crash in the middle resumes at the one it cut short (each
// has its journal record). The duplicate table keeps the whole result.
int sm_apply_entry(struct sm *sm, uint64_t index, uint64_t client_id, uint64_t seq,
		   uint64_t min_pending, const void *cmd, size_t len, int64_t *result);

// An entry without a command (the leader's no-op, a membership change): only
// the applied index moves (and is journaled). 0 or a negative fault/caller error.
int sm_apply_empty(struct sm *sm, uint64_t index);

// 0 while healthy, else the negative errno of the fault that stopped applying.
int sm_fault(struct sm *sm);

// What the duplicate table holds for (client_id, seq): 0 with *result if it
// was applied, -ENOENT if not, -ESTALE if below the client's min_pending.
// Apply thread only (the table is not locked), or while nothing applies.
int sm_client_result(struct sm *sm, uint64_t client_id, uint64_t seq, int *result);

// Sets the journal size (bytes; records are 128) above which the duplicate
// table is saved whole and the journal restarted. Default 4 MiB. For tests
// (small values exercise the restart) and tuning.
void sm_set_journal_limit(struct sm *sm, size_t bytes);

// Test hook: the next command's execution stops after its `steps`-th step
// (each a redo-safe change of the tree; a start command has two, before and
// after its start table's xattr) as a crash there would: sm_apply
// returns -ECANCELED and the state machine is faulted; close and reopen it to
// see the redo. 0 turns it off. Lets tests visit every intermediate state.
void sm_test_crash_at(struct sm *sm, int steps);

// chown, chmod and security.capability reads the apply made since open:
// tests count the ones it skips (apply.c, set_owner_mode).
uint64_t sm_test_attr_calls(const struct sm *sm);

// Test hook: while err is not 0, the apply's security.capability reads fail
// with err, as on a filesystem or file type that keeps no security.* xattrs
// (EOPNOTSUPP) or one that fails the read (EIO).
void sm_test_caps_errno(struct sm *sm, int err);

// Test hook: while on, the apply's direct writes fail with EINVAL, as on a
// filesystem that takes O_DIRECT at fcntl but refuses its writes.
void sm_test_refuse_direct(struct sm *sm, bool on);

// Test hook: the CPU per MiB auto takes direct writes to cost, kept
// whatever they measure (-1: as if none was measured yet), so a test
// decides which way is cheaper (apply.c, write_goes_direct).
void sm_test_pin_direct_cost(struct sm *sm, int64_t ns_per_mib);

// Big writes of other nodes applied since open around the page cache and
// through it (what sm_close logs): tests see the choice where residency
// cannot show it (tmpfs caches direct writes too).
void sm_test_big_writes(const struct sm *sm, uint64_t *direct, uint64_t *buffered);

// Commands proposed by node `node` (Command.node) that this state machine
// applied since it opened, refused and skipped ones included: a mount
// waiting for a delegation's Return sees from it that the holder's commands
// still reach the log (a slow holder draining a long queue, not a dead or
// cut-off one). Any thread.
uint64_t sm_applied_from(struct sm *sm, uint32_t node);

// Called on the apply thread with the id of a regular file *before* any step
// of a command changes its content or size, with the bytes that change, so a
// copy-on-write snapshot can save those old bytes first (and only those):
// Write (of at least one byte; copy_file_range arrives as Writes): [offset,
// offset + length) at the offset it applies at; SetAttr with a size
// (truncate): [size, SM_CONTENT_TO_END); Fallocate (every mode, punch hole
// and zero range included): its range. gone is true, and the range
// meaningless, before a file's data is deleted for good (the Release that
// drops an orphan: an unlink or rename of a last name keeps the data as an
// orphan, so it calls nothing). Never for metadata-only changes (mode, owner,
// times, xattrs, names). Symlink targets never change today (no command
// rewrites one); a command that did would call the hook first. A command
// redone after a crash (see sm_apply) calls it again, so it must be
// idempotent, and it may be called for a Release whose data a previous run
// already deleted (the file is then gone).
#define SM_CONTENT_TO_END UINT64_MAX // a length: up to the end of the file
typedef void (*sm_content_hook)(void *arg, uint64_t id, uint64_t off, uint64_t len, bool gone);

// Installs fn (NULL: none) with arg. Call while nothing applies (before the
// apply thread starts, or from it).
void sm_set_content_hook(struct sm *sm, sm_content_hook fn, void *arg);

// Called on the apply thread with the id of a file that a command has just
// made an orphan (its last name went: Unlink, or Rename over it), so the
// node can propose its Release if it holds no handle on it (fs/README-sm.md,
// "Orphans"). Also called again when such a command is redone after a crash.
// Must not block (it may queue a proposal) nor call sm_apply.
typedef void (*sm_orphan_hook)(void *arg, uint64_t id);

// Installs fn (NULL: none) with arg; same rules as sm_set_content_hook.
void sm_set_orphan_hook(struct sm *sm, sm_orphan_hook fn, void *arg);

// Called on the apply thread after a Deleg command (proto/fs.proto) or a
// Mkdir that granted the new directory applied with result 0: dir, the op
// (FSPB__DELEG__OP__*), the node that proposed it, and the directory's
// delegation now (holder 0: none) with its epoch. Also when redone after a
// crash. Must not block nor call sm_apply.
typedef void (*sm_deleg_hook)(void *arg, uint64_t dir, int op, uint32_t node, uint32_t holder,
			      uint64_t epoch);

// Installs fn (NULL: none) with arg; same rules as sm_set_content_hook.
void sm_set_deleg_hook(struct sm *sm, sm_deleg_hook fn, void *arg);

struct Fspb__Command;

// Called on the apply thread around a command that is executed with result
// 0 (not for a skipped duplicate nor a refused command): with done false
// just before it changes the tree, with done true once it has (also when it
// is redone after a crash). It gets the command sm_apply decoded, so an
// observer (the mount's kernel-cache invalidation) need not decode every
// entry a second time. client is the proposing client. Must not block nor
// call sm_apply.
typedef void (*sm_apply_hook)(void *arg, uint64_t client, const struct Fspb__Command *c,
			      bool done);

// Installs fn (NULL: none) with arg; same rules as sm_set_content_hook.
void sm_set_apply_hook(struct sm *sm, sm_apply_hook fn, void *arg);

// Allocates a fresh id for a new object proposed by this node:
// (node_id << 48) | counter, the counter persisted (fsynced in blocks) so an id
// is never handed out twice, even across crashes. Thread-safe.
// Returns 0 or a negative errno.
int sm_alloc_id(struct sm *sm, uint64_t *id);

// ---- Read side. Thread-safe, concurrent with sm_apply. Negative errno on error.

// Attributes of object `id`: st_ino is the id, st_ctim the replicated ctime,
// st_nlink the user's link count (the index link is not counted). atime is
// local, not replicated.
int sm_getattr(struct sm *sm, uint64_t id, struct stat *st);

// Looks up `name` in directory `parent`; fills st as sm_getattr (st->st_ino is
// the child's id). -ENOENT, -ENOTDIR, -ENAMETOOLONG, -EINVAL (bad name).
int sm_lookup(struct sm *sm, uint64_t parent, const char *name, struct stat *st);

// Called by sm_readdir for each entry. st->st_ino is the id; with plus the whole
// stat is filled, else only st_ino and the type bits of st_mode. next is the
// offset to pass to sm_readdir to continue after this entry. Return nonzero to
// stop (e.g. the reply buffer is full; that entry counts as not consumed).
typedef int (*sm_dirent_fn)(void *arg, const char *name, const struct stat *st, off_t next);

// Lists directory `dir` from offset `off` (0: the start), including "." and
// "..". Offsets are stable across calls while entries are added and removed.
// Returns 0 (end reached or fn stopped) or a negative errno.
int sm_readdir(struct sm *sm, uint64_t dir, off_t off, bool plus, sm_dirent_fn fn, void *arg);

// sm_readdir whose callback also gets each entry's delegation holder (0: none
// or not a directory), read under the same lock as the entry: a readdirplus
// withholds the attributes of directories another node holds without a second
// look (sm_deleg) per entry, each a wait on the lock behind a busy apply.
typedef int (*sm_dirent_held_fn)(void *arg, const char *name, const struct stat *st,
				 uint32_t holder, off_t next);
int sm_readdir_held(struct sm *sm, uint64_t dir, off_t off, bool plus, sm_dirent_held_fn fn,
		    void *arg);

// Reads the target of symlink `id` into buf (not NUL-terminated).
// Returns its length, or -EINVAL if id is not a symlink.
ssize_t sm_readlink(struct sm *sm, uint64_t id, char *buf, size_t size);

// Opens regular file `id` read-only; the caller owns and closes the fd. The fd
// keeps working after renames, unlinks and even a Release of the file.
int sm_open_fd(struct sm *sm, uint64_t id);

// Reads up to size bytes of regular file `id` at off. Returns bytes read.
ssize_t sm_read(struct sm *sm, uint64_t id, void *buf, size_t size, off_t off);

// The user-visible xattr names of `id` (trusted.raftfs.* hidden), as
// listxattr(2): size 0 returns the size needed.
ssize_t sm_listxattr(struct sm *sm, uint64_t id, char *buf, size_t size);

// One user-visible xattr of `id`, as getxattr(2) (-ENODATA when absent).
ssize_t sm_getxattr(struct sm *sm, uint64_t id, const char *name, void *buf, size_t size);

// Space of the filesystem that holds the tree.
int sm_statfs(struct sm *sm, struct statvfs *st);

// Calls fn for every orphan (a non-directory whose last name is gone and that
// awaits a Release command). Returns 0 or what fn returned (nonzero stops).
int sm_each_orphan(struct sm *sm, int (*fn)(void *arg, uint64_t id), void *arg);

// The delegation of directory `dir` as of the last applied command: *holder
// (0: none) and *epoch. -ENOENT, -ENOTDIR.
int sm_deleg(struct sm *sm, uint64_t dir, uint32_t *holder, uint64_t *epoch);
// The same, and whether the holder closes behind (Deleg.close_behind,
// Mkdir.grant_close_behind): a holder restarted under another [fs] close
// does not take such a directory back (fuse_behind_state.c, bh_dir_held).
int sm_deleg_mode(struct sm *sm, uint64_t dir, uint32_t *holder, uint64_t *epoch,
		  bool *close_behind);

// Whether node `node` already released orphan id (a Release of it by that
// node was applied): 1, 0 (not yet, or id is no orphan), or a negative errno.
int sm_orphan_released_by(struct sm *sm, uint64_t id, uint32_t node);

#endif
