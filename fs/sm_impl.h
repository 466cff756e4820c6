// Internals shared by the state machine's files (sm.c, tree.c, apply.c, ...): not public.
#ifndef RAFTFS_FS_SM_IMPL_H
#define RAFTFS_FS_SM_IMPL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "dedup.h"
#include "fs.pb-c.h"
#include "sm.h"
#include "sm_id_hw.h"
#include "sm_journal.h"
#include "sm_starts.h"
#include "tree_map.h"

#define SM_XATTR_ID "trusted.raftfs.id"
// Linux's file capabilities: a chown of a non-directory removes them.
#define SM_XATTR_CAPS "security.capability"
#define SM_XATTR_CTIME "trusted.raftfs.ctime"
#define SM_XATTR_PREFIX "trusted.raftfs."
// On an orphan: the nodes that released it (u32 node ids, ascending), see
// apply.c's Release. Replicated state: snapshots must carry it.
#define SM_XATTR_RELEASED "trusted.raftfs.released"
// The most nodes a Release may name (voters): bounds the xattr above, which
// must fit ext4's one xattr block beside the user's.
#define SM_MAX_VOTERS 63
// On a directory: its delegation (u32 holder node, u64 epoch, then u8 flags
// SM_DELEG_* when any is set; absent: none, epoch 0), see apply.c's Deleg.
// Replicated state: snapshots must carry it.
#define SM_XATTR_DELEG "trusted.raftfs.deleg"
// Delegation flag: the holder closes behind (Deleg.close_behind).
#define SM_DELEG_CLOSE_BEHIND 1u

// One object of the tree, in memory. Directories are found by walking parent
// ids to the root (their path in DATA/tree); every other object by its index
// link DATA/ids/xx/<id>.
struct sm_obj {
	uint64_t id;
	uint64_t local_ino; // inode number in the local filesystem
	int64_t ctime_ns;   // replicated ctime (atomic access: readers race apply)
	mode_t type;	    // S_IFMT bits
	uint64_t parent;    // directories only
	char *name;	    // directories only (owned)
	uint32_t holder;    // directories: the node it is delegated to (0: none)
	uint64_t epoch;	    // directories: the number of its last grant
	uint8_t deleg_flags; // directories: SM_DELEG_* of the delegation
	// Non-directories: made by this apply since open and given no
	// security.capability since (apply thread only): a chown to the same
	// owner is skipped without reading one (apply.c, set_owner_mode).
	bool caps_none;
};

#define SM_FD_CACHE 64
#define SM_FROM_SLOTS 64

struct sm {
	char *data_dir;
	int sm_fd; // DATA/sm
	uint32_t node_id;

	// Guards the tables and the names in the tree: apply takes it for writing
	// around namespace changes, reads for reading around path resolution and
	// the syscall that uses the path, so no read sees half a rename.
	pthread_rwlock_t lock;
	struct tree_map by_id;	// id -> struct sm_obj *
	struct tree_map by_ino; // local inode -> struct sm_obj *

	uint64_t applied;
	struct sm_journal journal;
	dedup *dd;	      // the duplicate table (consensus/dedup.h), apply thread only
	uint64_t dedup_index; // index DATA/sm/dedup was saved at
	size_t journal_max;   // journal size that triggers a restart of it
	bool redo_pending;    // redo_rec is the command that was being applied at a crash
	struct sm_record redo_rec;
	struct sm_record last_rec; // the newest record written (re-marked done at close)
	int fault;
	struct sm_reset *reset; // deletes a tree dropped after a power loss (sm_reset.h)
	int crash_at; // test hook: stop exec after this many steps (0: off)
	uint64_t attr_calls; // chown, chmod and capability reads of apply (sm_test_attr_calls)
	int test_caps_errno; // test hook: capability reads fail with this (sm_test_caps_errno)
	struct stat plan_stat; // plan_setattr's stat of plan_stat_id (0: none), for its exec
	uint64_t plan_stat_id;
	// Test hook (RAFTFS_TEST_APPLY_DELAY_US at open): a slow node, each
	// command's apply takes this much longer.
	unsigned test_apply_delay_us;
	// Test hook (RAFTFS_TEST_APPLY_GATE=FILE at open): while FILE exists,
	// apply holds still before each command (test_gate_wait), so that a
	// test can pile up a backlog of a known size whatever the machine's
	// speed (tests/mount/mount_slow_holder.sh).
	const char *test_apply_gate;
	// Test hook (RAFTFS_TEST_START_KILL=K at open, K 1 or 2): the node
	// SIGKILLs itself at step K (before, after the table's xattr) of the
	// first start command of another node it applies
	// (tests/mount/mount_start_killed.sh).
	int test_start_kill;
	// Big writes of other nodes around the page cache (apply.c, exec_write):
	// whether (RAFTFS_APPLY_DIRECT), the CPU per MiB of a buffered write
	// from which auto goes direct (RAFTFS_APPLY_DIRECT_FILL_US), that of
	// the last few (-1: none yet), that of the last direct ones (-1: none
	// yet), big writes since the last probe, and the aligned copy of the
	// data. Test hooks: direct writes refused (EINVAL), the direct cost
	// pinned (sm_test_refuse_direct, sm_test_pin_direct_cost).
	enum { SM_DIRECT_AUTO, SM_DIRECT_OFF, SM_DIRECT_ON } direct_mode;
	int64_t direct_fill_ns, fill_ns_mib, direct_ns_mib;
	bool test_refuse_direct, test_direct_pinned;
	unsigned direct_run;
	uint64_t n_direct, n_buffered; // big writes of other nodes applied each way
	void *direct_buf;
	size_t direct_cap;
	// Commands applied per proposing node since open (sm_applied_from),
	// refused and skipped ones included: node ids in slots found by
	// probing from id % SM_FROM_SLOTS; written by apply only, read by any
	// thread (relaxed atomics).
	uint32_t from_node[SM_FROM_SLOTS];
	uint64_t from_count[SM_FROM_SLOTS];
	sm_content_hook content_hook; // sm_set_content_hook (apply thread)
	void *content_hook_arg;
	sm_orphan_hook orphan_hook; // sm_set_orphan_hook (apply thread)
	void *orphan_hook_arg;
	sm_deleg_hook deleg_hook; // sm_set_deleg_hook (apply thread)
	void *deleg_hook_arg;
	sm_apply_hook apply_hook; // sm_set_apply_hook (apply thread)
	void *apply_hook_arg;
	// An image being made (fs/sm_image_meta.c): see sm_meta_hook below.
	void (*meta_hook)(void *arg, uint64_t id, bool created);
	void *meta_hook_arg;

	// Write fds of regular files, by id (apply thread only).
	struct {
		uint64_t id;
		int fd;
	} fds[SM_FD_CACHE];

	// Times the Batch being applied set, kept to be set once at its end
	// (apply.c, "A Batch's times"; apply thread): at most two objects
	// per sub-command.
	struct sm_touch {
		uint64_t id;
		uint8_t what; // T_* of apply.c
		int64_t at, mt, ct;
	} touch[2 * SM_BATCH_MAX];
	unsigned ntouch;
	bool touch_defer;      // applying a Batch: times are kept
	uint64_t touch_client; // its proposer, for the apply hook at the end

	pthread_mutex_t id_lock;
	uint64_t next_counter; // next counter to hand out
	uint64_t reserved_to;  // counters below this are reserved in DATA/sm/next_id
	struct sm_id_hw id_hw; // every node's ids seen, for images (apply thread; sm_id_hw.h)
	atomic_bool ids_known; // DATA/sm/ids_known seen or written (sm_id_known.h)
	// Every node's last start command (sm_starts.h): written by apply
	// under the write lock, read under the read lock; and the index from
	// which this node's table is complete.
	struct sm_starts starts;
	uint64_t start_since;
};

// A path naming an object for path-based syscalls (lstat, lsetxattr, ...).
// Normally absolute; for trees deeper than PATH_MAX it is
// /proc/self/fd/<fd>/<rest> with fd an O_PATH descriptor held until released.
struct sm_path {
	char buf[PATH_MAX];
	int fd;
};

// Releases what a resolved path holds (no-op for a plain path).
void sm_path_release(struct sm_path *p);

// Resolves object id: its index link, or for a directory its path in the
// tree. -ENOENT if id is unknown. Caller holds the lock.
int tree_path(struct sm *sm, uint64_t id, struct sm_path *p);

// Resolves entry `name` of directory `parent`. -ENOENT/-ENOTDIR for parent.
int tree_child_path(struct sm *sm, uint64_t parent, const char *name, struct sm_path *p);

// The index link path of a non-directory id (whether or not it exists).
void tree_index_path(struct sm *sm, uint64_t id, struct sm_path *p);

// The object with this id, or NULL.
struct sm_obj *tree_get(struct sm *sm, uint64_t id);

// Adds (or updates, on redo) an object. name is copied for directories.
// Caller holds the write lock. Returns 0 or -ENOMEM.
int tree_put(struct sm *sm, uint64_t id, uint64_t local_ino, mode_t type, int64_t ctime_ns,
	     uint64_t parent, const char *name);

// Sets a directory's parent and name (rename). 0 or -ENOMEM.
int tree_move_dir(struct sm_obj *o, uint64_t parent, const char *name);

// Drops an object from the tables and frees it. Caller holds the write lock.
void tree_drop(struct sm *sm, uint64_t id);

// Loads the tables by scanning DATA/ids and the directories of DATA/tree.
// Also raises sm->next_counter above every id this node allocated.
int tree_scan(struct sm *sm);

// Frees every object.
void tree_free(struct sm *sm);

// Reads the id xattr of path (-ENODATA if it has none).
int tree_read_id(const char *path, uint64_t *id);

// Loads/stores the replicated ctime xattr.
int tree_read_ctime(const char *path, int64_t *ns);
int tree_write_ctime(const char *path, int64_t ns);
int tree_write_id(const char *path, uint64_t id);
// The id xattr's value: 16 hex digits and a NUL (written without the NUL).
void tree_id_text(uint64_t id, char out[17]);

// The set of nodes that released orphan path (SM_XATTR_RELEASED), ascending:
// the count (0 if none recorded) or -errno. ids has room for
// SM_MAX_VOTERS + 1.
int tree_read_released(const char *path, uint32_t *ids);
// Replaces it with n ids (ascending). 0 or -errno.
int tree_write_released(const char *path, const uint32_t *ids, size_t n);

// Stores the delegation of directory path (SM_XATTR_DELEG): holder, epoch
// and SM_DELEG_* flags. 0 or -errno.
int tree_write_deleg(const char *path, uint32_t holder, uint64_t epoch, uint8_t flags);
// The same through an open descriptor of the directory.
int tree_fwrite_deleg(int fd, uint32_t holder, uint64_t epoch, uint8_t flags);

// Fills st for object o from lstat of path, replacing what is replicated
// differently (ino, ctime, nlink). Returns 0 or -errno.
int tree_stat(struct sm_obj *o, const char *path, struct stat *st);
// The same for st already read by lstat (a lookup needs it to find o).
void tree_stat_fix(struct sm_obj *o, struct stat *st);

// Whether directory path has entries other than . and .. (1), not (0), or -errno.
int tree_dir_nonempty(const char *path);

// Checks a name for a directory entry: 0, -EINVAL or -ENAMETOOLONG.
int tree_check_name(const char *name);

// Decides a command's result and plan without changing anything (apply.c).
// Returns 0 with rec->result set, or a negative errno for a local fault.
int apply_plan(struct sm *sm, const Fspb__Command *cmd, struct sm_record *rec);

// Carries out a planned command whose result is 0. Every step is redo-safe:
// run again after a crash on a tree where some or all steps were done, it
// reaches the same end state. Returns 0 or a negative errno (local fault).
int apply_exec(struct sm *sm, const Fspb__Command *cmd, const struct sm_record *rec);

// Test hook (sm_test_crash_at): counts the redo-safe steps of an apply and
// stops it after the chosen one, as a crash there would. 0 or -ECANCELED.
int apply_step(struct sm *sm);

// Tells the content hook, if any, that [off, off + len) of regular file id
// is about to change, or (gone) that its data is about to be deleted.
void apply_content_change(struct sm *sm, uint64_t id, uint64_t off, uint64_t len, bool gone);

// Called on the apply thread before a command changes object id's
// attributes or xattrs, a directory's entries, or deletes id; and
// sm_new_hook before a command creates id. A snapshot image being made
// while apply goes on keeps what it has not read yet as it was
// (fs/sm_image.h). Every such change must call it before its first step.
static inline void sm_meta_hook(struct sm *sm, uint64_t id)
{
	if (sm->meta_hook)
		sm->meta_hook(sm->meta_hook_arg, id, false);
}

static inline void sm_new_hook(struct sm *sm, uint64_t id)
{
	if (sm->meta_hook)
		sm->meta_hook(sm->meta_hook_arg, id, true);
}

// Replaces <name> in directory dirfd with buf in one step (write <tmp>,
// rename it over <name>): a reader sees the old file or the new, never a
// torn one. With durable, also fsyncs the file before the rename and the
// directory after, so that the new file survives a power loss. dir names
// dirfd and `what` the purpose in the error message. 0 or -errno.
int sm_replace_file_at(int dirfd, const char *dir, const char *tmp, const char *name,
		       const void *buf, size_t len, bool durable, const char *what);

// sm_replace_file_at in sm's own directory, DATA/sm.
int sm_replace_file(struct sm *sm, const char *tmp, const char *name, const void *buf,
		    size_t len, bool durable, const char *what);

// Called by apply before an object with id enters the tree: an id of this
// node raises its counter past it, durably (sm/next_id fsynced when it
// passes the reservation). A node rebuilt from its log with an empty data
// dir thus never hands out an id its log already used. 0 or -errno.
int sm_note_id(struct sm *sm, uint64_t id);

// After an install swapped fresh's sm/ into live (transplant): live's
// reservation is what fresh's sm/next_id holds (a copy taken before the
// install, which live may have passed since), raised durably past both
// counters and bound (the image's mark of this node's ids: counters below
// it were handed out before the image), under one hold of live's id lock.
// 0 or -errno.
int sm_ids_take_over(struct sm *live, const struct sm *fresh, uint64_t bound);

// A Batch entry's sub-commands (sm.c's run_batch) keep the times they set
// (of directories whose entries they change, of the objects they change),
// to set each once at the end (apply.c, "A Batch's times"). Begin before
// the first; client: the entry's proposer.
void apply_batch_begin(struct sm *sm, uint64_t client);
// Before sub-command c (NULL: one that does not decode) is planned: sets
// the kept times it must not run past (of objects, or all). replay: c ran
// before a crash, and the batch is being redone from a later sub-command:
// forget them instead (set then). 0 or -errno.
int apply_batch_prepare(struct sm *sm, const Fspb__Command *c, bool replay);
// Rebuilds, in a redo, what sub-command c with result `result`, which ran
// before the crash, left kept (apply_batch_prepare included).
void apply_batch_replay(struct sm *sm, const Fspb__Command *c, int result);
// After the last sub-command (ok) sets every kept time; after a failed one
// (!ok) forgets them. 0 or -errno.
int apply_batch_end(struct sm *sm, bool ok);

// Closes a cached write fd of id, if any (apply thread).
void apply_forget_fd(struct sm *sm, uint64_t id);

#endif
