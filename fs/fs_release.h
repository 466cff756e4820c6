/* fs_release.h — this node's part in dropping orphans: it proposes, batched,
 * Release{node = this node} for every orphan it holds no handle on (see
 * fs/README-sm.md, "Orphans"); the state machine drops an orphan once every
 * voter released it. */
#ifndef RAFTFS_FS_RELEASE_H
#define RAFTFS_FS_RELEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fs_node;
struct fs_release;

/* Whether this node holds a handle on id (the mount's open files). */
typedef bool (*fs_holds_fn)(void *arg, uint64_t id);

/* Creates the releaser of node `self` over f (borrowed) and installs it as
 * the state machine's orphan hook (sm_set_orphan_hook), so every orphan the
 * apply thread makes is released unless held. voters (copied) are the
 * cluster's voting members as this node's configuration lists them; every
 * Release carries them, so applying it needs no view of the Raft
 * configuration. Call before the node applies anything. 0 or a negative
 * errno (-EINVAL: no voter, or too many). */
int fs_release_new(struct fs_node *f, uint32_t self, const uint32_t *voters, size_t n_voters,
		   struct fs_release **out);

/* Stops the hook and frees. The node must be stopped (no callbacks left).
 * NULL is allowed. */
void fs_release_free(struct fs_release *r);

/* Who holds handles (NULL: nobody, e.g. a node without a mount). The mount
 * sets it before serving and clears it when freed. */
void fs_release_set_holder(struct fs_release *r, fs_holds_fn holds, void *arg);

/* Releases id unless this node holds a handle on it or an open pins it
 * when it is decided: queued, decided at least GRACE_MS (50 ms) later and
 * proposed in one command with whatever else is queued within LINGER_MS
 * (100 ms) of the first, by the releaser's thread, one command in flight
 * at a time. Any thread (the apply thread too: it never blocks on a
 * proposal); not with the holder's lock held (the decision calls the
 * holder with the releaser's lock held). */
void fs_release_id(struct fs_release *r, uint64_t id);

/* An open of id is in progress (call before its read barrier): until
 * fs_release_unpin, this node does not decide to release id, so the open
 * may count its handle even if id lost its last name meanwhile — it gets
 * the file its lookup found, as on a local filesystem. -ESTALE if this node
 * already released id or is proposing that (the open must fail with ESTALE:
 * the kernel retries it once with a fresh lookup), -ENOMEM. 0 for r NULL. */
int fs_release_pin(struct fs_release *r, uint64_t id);

/* The open pinning id counted its handle or failed: a release put off for
 * the pin is decided again. NULL r allowed. */
void fs_release_unpin(struct fs_release *r, uint64_t id);

/* At start: once this node applied everything committed (a read barrier),
 * releases every orphan it holds no handle on — those left by a crash, and
 * those that waited for this node while it was down. Returns at once. */
void fs_release_start(struct fs_release *r);

/* A membership change (node_members_hook; arg is the releaser): the
 * voters every later Release carries become voters[0..n), and every orphan
 * this node holds no handle on is released again with them, even one it
 * released before: an orphan waiting only for a removed member goes, and a
 * new voter records its release (fs/README-sm.md, "Orphans"). Any thread;
 * never blocks. */
void fs_release_on_members(void *arg, const uint64_t *voters, size_t n);

/* Ids this node proposed Release for so far (tests, statistics). */
uint64_t fs_release_proposed(struct fs_release *r);

#endif
