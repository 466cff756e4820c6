// sm_id_hw.h — each node's highest id seen, kept in snapshot images: no rebuilt node reuses one.
#ifndef RAFTFS_FS_SM_ID_HW_H
#define RAFTFS_FS_SM_ID_HW_H

#include <stdbool.h>
#include <stdint.h>

struct sm;

// Node ids tracked; a cluster that has had more members than this leaves
// the rest untracked (logged once): their rebuilt nodes may reuse ids of
// deleted objects, as before this table existed.
#define SM_ID_HW_MAX 64

// Bounds are raised in steps of this many counters, so DATA/sm/id_hw is
// rewritten (and fsynced) once per step of a node's creates, not per create.
#define SM_ID_HW_STEP 4096u

// For each node i < n: every counter that node ever used in an id this
// state machine applied, or that an installed image knew, is below
// bound[i]. An upper bound: it only ever rises, and overshoots by up to
// two steps, which costs nothing but unused ids.
struct sm_id_hw {
	bool loaded; // read from DATA/sm/id_hw (lazily: first use after open or install)
	bool full_logged;
	uint32_t n;
	uint32_t node[SM_ID_HW_MAX];
	uint64_t bound[SM_ID_HW_MAX];
};

// Apply thread, before an object with id enters the tree (sm_note_id):
// raises its node's bound past it, durably (DATA/sm/id_hw fsynced) when it
// passes the bound on disk. Why durably: a node rebuilt from an image must
// learn every id handed out before the image, including ids whose objects
// are gone, which only this table remembers (fs/README-sm.md, "Ids").
// 0 or a negative errno.
int sm_id_hw_note(struct sm *sm, uint64_t id);

// Apply thread: a copy of sm's table (loaded if needed), for an image.
// 0 or a negative errno.
int sm_id_hw_get(struct sm *sm, struct sm_id_hw *out);

// Raises each bound of *into to at least the one in *from (adding nodes
// *into does not have, while there is room).
void sm_id_hw_merge(struct sm_id_hw *into, const struct sm_id_hw *from);

// The bound of node (0 if unknown).
uint64_t sm_id_hw_bound(const struct sm_id_hw *hw, uint32_t node);

// Writes hw as DATA/sm/id_hw of the sm directory dir (a new state being
// built by an install), durably. 0 or a negative errno.
int sm_id_hw_write_dir(const char *dir, const struct sm_id_hw *hw);

// After an install swapped in another sm/ directory: the table is read
// again from it at its next use.
void sm_id_hw_forget(struct sm *sm);

#endif
