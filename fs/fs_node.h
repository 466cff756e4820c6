/* fs_node.h — the filesystem on a Raft node: the node_sm over the state
 * machine (fs/sm.h), the proposer that turns fspb.Commands into Raft
 * proposals and reports their results, and read barriers. */
#ifndef RAFTFS_FS_NODE_H
#define RAFTFS_FS_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "fs.pb-c.h"
#include "node.h"
#include "sm.h"

struct fs_node;
struct fuse_inval;

/* Completion of a proposal or barrier: err is 0, the command's positive errno
 * (EEXIST, ENOENT, ... — the same on every node), or a positive errno for a
 * failure to get it applied (ETIMEDOUT: no quorum or no leader within the
 * proposal timeout; EIO: the node stopped or its state machine failed).
 * Runs on the apply or the loop thread: must not block. */
typedef void (*fs_done_fn)(void *arg, int err);

/* Opens the state machine in data_dir for node node_id. 0 or a negative
 * errno (the state machine printed what failed). */
int fs_node_open(const char *data_dir, uint32_t node_id, struct fs_node **out);

/* Frees everything; the node using the iface must be stopped first. */
void fs_node_close(struct fs_node *f);

/* The node_sm table over f, for node_new. */
void fs_node_iface(struct fs_node *f, node_sm *out);

/* Gives f the running node to propose through (borrowed), and with it
 * this process's client id (node_client_id): commands carrying it are this
 * mount's own and get no kernel invalidation. */
void fs_node_attach(struct fs_node *f, node *n);

/* The client id f takes for its own commands (0 before fs_node_attach). */
uint64_t fs_node_own_client(struct fs_node *f);

/* Where applied changes are reported so the kernel's caches are invalidated
 * (NULL: nowhere). Set before the mount serves requests, cleared after.
 * While it is set, lazy proposals (write-behind metadata, small writes) may
 * be held back up to 1 ms (RAFTFS_PLUG_US) so that a burst shares one log
 * write (fs_plug.h); clearing it starts what is held, so a mount that stops
 * clears it before its node stops. */
void fs_node_set_inval(struct fs_node *f, struct fuse_inval *inv);

/* Starts every proposal held back so far: call before waiting for a
 * command this mount proposed lazily (flush, fsync, a read of its file),
 * holding no lock its completion takes (a start that fails completes it
 * with the error on this thread). */
void fs_node_flush(struct fs_node *f);

/* Opens a unit (a file created behind, until its close) and returns its
 * mark for fs_node_flush_unit: the proposals made after this call, which
 * the plug's linger leaves held for a while (fs_plug_unit_begin).
 * fs_node_unit_end ends it without a flush (a handle released unflushed,
 * a creation not proposed); no effect on a unit that ended. */
uint64_t fs_node_unit_begin(struct fs_node *f);
void fs_node_unit_end(struct fs_node *f, uint64_t mark);

/* Ends the unit of mark and flushes (fs_node_flush), keeping every proposal made since mark in one log entry
 * (a Batch, fs.proto), so that they apply on every node together or not at
 * all: true. false: they did not go out together (some had started before
 * — a flush, a limit, the linger, an eager proposal — or they were too many
 * for one entry); only waiting for their commit then makes them durable
 * together. Same rules as fs_node_flush. */
bool fs_node_flush_unit(struct fs_node *f, uint64_t mark);

/* The state machine, for the read side. */
struct sm *fs_node_sm(struct fs_node *f);

/* Proposes c (packed here; the caller keeps c). A command answered before
 * it applies (Command.behind, a small Write) may be held back briefly
 * (fs_node_set_inval) and then fails through done. done fires exactly once when
 * this node applied it or gave up, unless this returns nonzero: a positive
 * errno (ENOMEM, EIO) and done is not called. Any number may be in flight:
 * the commands proposed through one node apply, on every node, in the order
 * of their fs_node_propose calls, each at most once; when one applies, every
 * earlier one has applied before it or had been given up (its done reports an
 * error, maybe a moment later). Successful done callbacks run in that order
 * (node.h, node_start). */
int fs_node_propose(struct fs_node *f, const Fspb__Command *c, fs_done_fn done, void *arg);

/* Replaces the command of the proposal made with (done, arg) by c (packed
 * here), if that proposal is still held back and nothing was proposed
 * since: c then applies in its place, and done(arg) gets c's result. For
 * changes of one object made back to back that one command can carry
 * (fuse_behind_setattr). true; false: nothing changed, propose c. */
bool fs_node_amend(struct fs_node *f, fs_done_fn done, void *arg, const Fspb__Command *c);

/* Linearizable read barrier (ReadIndex, Raft thesis §6.4): done fires once
 * this node applied everything committed before the call. Same rules as
 * fs_node_propose. */
int fs_node_barrier(struct fs_node *f, fs_done_fn done, void *arg);

/* This node's id (what its commands carry in Command.node). */
uint32_t fs_node_id(struct fs_node *f);

/* [fs] write_behind (node config): the mount answers changes of the
 * directories delegated to this node before they apply (fs/fuse_behind.h).
 * Set before the mount starts. */
void fs_node_set_write_behind(struct fs_node *f, bool on);
bool fs_node_write_behind(struct fs_node *f);

/* [fs] close = behind (node config): close of a file this mount created
 * behind may return before its commands commit (fs/fuse_close.h). Set
 * before the mount starts. */
void fs_node_set_close_behind(struct fs_node *f, bool on);
bool fs_node_close_behind(struct fs_node *f);

/* This node's start command (fs/fuse_run.c, propose_hello) applied here:
 * from then on every other node that applies as far knows this node is
 * back. Until then its mount answers nothing behind, not even in the
 * directories it still holds from before a restart: another mount that
 * took it for dead may revoke them at once, and a Revoke ordered before
 * the start command applies here first (fs/fuse_behind_state.c,
 * bh_dir_held). Set once (any thread), never cleared. */
void fs_node_set_back(struct fs_node *f);
bool fs_node_back(struct fs_node *f);

/* Whether this node's proposals and barriers get through: false while one
 * has been outstanding for more than ms milliseconds with none completing or
 * (a proposal) committing meanwhile (cut off from a quorum, no leader, an
 * election; an apply that lags the commit by up to two seconds does not
 * count), while its apply lags its commit by more than two seconds (below a
 * recaller's revoke silence: fs_node.c, APPLY_LAG_MAX_MS), and for good
 * once the node stopped applying (node_fault). What the node can observe
 * of a lease: an answer given before commit (close behind) is only given
 * while this holds, so a node cut off acknowledges for at most ms, and a
 * node whose apply stopped acknowledges nothing early. */
bool fs_node_progressing(struct fs_node *f, unsigned ms);

/* The present connection to node id as a number that every new connection
 * changes, 0 when there is none (node_peer_link): a holder that was taken
 * for dead and shows a new one is back, before any command of it applied
 * (fs/fuse_grant.h, fuse_holder_look). Any thread. */
uint64_t fs_node_peer_link(struct fs_node *f, uint32_t id);

/* The cluster's members (voters, then learners) as this node last put
 * them into effect, into out[0..cap): their count, 0 if more than cap or
 * before the node is attached. A Revoke names them (fs/sm_starts.h). Any
 * thread. */
size_t fs_node_members(struct fs_node *f, uint32_t *out, size_t cap);

/* Whether the last proposal or barrier of this node to end timed out (no
 * leader or no quorum): until one succeeds again, the mount answers
 * nothing before it applied (no write-behind, synchronous writes). */
bool fs_node_stalled(struct fs_node *f);

/* Proposals and barriers of this node whose done has not run yet: a
 * stopping mount lets them finish (for a moment) before the node fails
 * them. */
unsigned fs_node_outstanding(struct fs_node *f);

/* Where the state machine's delegation events go (sm_set_deleg_hook's
 * rules; the sink must outlive its use: clear it with NULL, after the node
 * stopped, before freeing it). */
struct fs_deleg_sink {
	sm_deleg_hook fn;
	void *arg;
};
void fs_node_set_deleg_sink(struct fs_node *f, const struct fs_deleg_sink *sink);

/* The proposer's clock for Command.time_ns (CLOCK_REALTIME, ns). */
int64_t fs_node_now(void);

#endif
