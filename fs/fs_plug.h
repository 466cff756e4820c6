/* fs_plug.h — holds a mount's lazy proposals back briefly (the block
 * layer's "plugging"), so that commands a program makes back to back — a
 * file's create, its writes, its chmod/chown/utimens — reach the node
 * together and share one log write and one commit round, instead of the
 * second missing the first's round by a few microseconds and waiting for
 * a round of its own. A held proposal goes out when something needs it:
 * an eager proposal (which must not overtake it: one node's commands apply
 * in the order they were started, consensus/node.h guarantee 2), a flush
 * (anyone about to wait for a held command: close, fsync, a read of the
 * file), a size or count limit, or at the latest after the linger time.
 *
 * What starts together goes out as few proposals as it can: up to
 * FS_PLUG_BATCH_MAX commands and FS_PLUG_BATCH_BYTES bytes are one proposal,
 * one log entry (fs.proto's Batch), so they reach the log, and every node,
 * together or not at all. A flush for a unit (fs_plug_flush_unit) keeps the
 * commands proposed since a mark in one entry: what makes a file closed
 * before its commit whole or absent on the other nodes (fs/fuse_close.h). */
#ifndef RAFTFS_FS_PLUG_H
#define RAFTFS_FS_PLUG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fs_plug;

/* The most commands, and bytes of them, one started proposal carries (its
 * result packs theirs, one byte each: fs/sm.h's SM_BATCH_MAX). */
#define FS_PLUG_BATCH_MAX 8u
#define FS_PLUG_BATCH_BYTES (256u << 10)

/* A proposal as the plug starts it: the packed command and its owner's arg. */
struct fs_plug_cmd {
	const uint8_t *buf;
	size_t len;
	void *arg;
};

/* Starts cmds[0..n) for real, in order, as one proposal (n > 1: one log
 * entry carrying them all; n <= FS_PLUG_BATCH_MAX, and more than one only
 * within FS_PLUG_BATCH_BYTES). The plug frees the buffers afterwards. 0, or
 * a positive errno: none of them started. */
typedef int (*fs_plug_start_fn)(void *ctx, const struct fs_plug_cmd *cmds, unsigned n);
/* A held proposal that could not be started (the start's errno): the owner
 * completes it with that error. Called with no lock of the plug held. */
typedef void (*fs_plug_fail_fn)(void *ctx, void *arg, int err);

/* A plug starting through start/fail with ctx, holding proposals at most
 * linger_us microseconds (0: never holds; every proposal starts at once).
 * Disabled until fs_plug_enable. 0 or a negative errno. */
int fs_plug_new(unsigned linger_us, fs_plug_start_fn start, fs_plug_fail_fn fail, void *ctx,
		struct fs_plug **out);

/* Starts whatever is held, stops the flusher thread, frees p (NULL is
 * allowed). */
void fs_plug_free(struct fs_plug *p);

/* Proposes buf[0..len) (ownership passes to the plug) for arg. lazy: it may
 * be held; otherwise everything held is started first, then this one, and
 * its start's result is returned (0 or a positive errno; then buf is freed
 * and fail is not called for it). A held one returns 0; if its start fails
 * later, fail(arg, errno) is called. */
int fs_plug_propose(struct fs_plug *p, uint8_t *buf, size_t len, void *arg, bool lazy);

/* Offers the newest held proposal (its arg and packed command) to merge,
 * under the plug's lock: merge may put a command that does what it and a
 * new one do together in *buf, *len (malloc'd; it then belongs to the plug,
 * and the proposal keeps its arg and its place) and return true. For a
 * change made right after another of the same object (fs_node_amend,
 * fs_node_propose's writes). false: nothing held, or merge declined. */
typedef bool (*fs_plug_merge_fn)(void *mctx, void *arg, const uint8_t *held, size_t held_len,
				 uint8_t **buf, size_t *len);
bool fs_plug_merge_newest(struct fs_plug *p, fs_plug_merge_fn merge, void *mctx);

/* Starts everything held now: before waiting for a command that may be
 * held. Completions of failed starts may run on the calling thread (fail):
 * call it holding no lock that a completion takes. */
void fs_plug_flush(struct fs_plug *p);

/* How long an open unit keeps the linger from starting its commands. */
#define FS_PLUG_UNIT_HOLD_MS 50u

/* Opens a unit and returns its mark: the proposals made through p after
 * this call are the unit's, kept together by fs_plug_flush_unit(p, mark).
 * Until the unit ends (that flush, or fs_plug_unit_end), the linger starts
 * none of them — only what was held before — for up to
 * FS_PLUG_UNIT_HOLD_MS: a file's
 * commands wait for its close instead of going out without it. */
uint64_t fs_plug_unit_begin(struct fs_plug *p);

/* Ends the unit of mark without a flush (no effect if it ended). */
void fs_plug_unit_end(struct fs_plug *p, uint64_t mark);

/* Ends the unit of mark, and fs_plug_flush, keeping every proposal made
 * since mark in one started proposal (one log entry), the ones before in
 * earlier ones. true: they
 * went out together (none had started before, and they fit one: at most
 * FS_PLUG_BATCH_MAX and FS_PLUG_BATCH_BYTES); false: they did not (a flush,
 * a limit, the linger or an eager proposal started some of them before). */
bool fs_plug_flush_unit(struct fs_plug *p, uint64_t mark);

/* Whether lazy proposals may be held (a mount serving requests), off:
 * starts what is held, and nothing is held any more (before the node
 * stops, so that nothing held outlives it). */
void fs_plug_enable(struct fs_plug *p, bool on);

/* Proposals held so far that went out by each trigger, proposals merged
 * into the newest held one, proposals started (entries) and those that
 * carried more than one command, unit flushes that kept their unit
 * together and that could not, and held proposals that had to wake the
 * flusher (for measuring). */
struct fs_plug_stats {
	uint64_t held, by_eager, by_flush, by_limit, by_linger, merged;
	uint64_t entries, batches, units, units_split, wakes;
};
void fs_plug_stats(struct fs_plug *p, struct fs_plug_stats *out);

#endif
