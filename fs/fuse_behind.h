/* fuse_behind.h — write-behind metadata under directory delegations: in a
 * directory delegated to this node (fs/README-sm.md, "Delegations"), the
 * mount answers creates, mkdirs, symlinks, unlinks, rmdirs and renames as
 * soon as they are proposed, with the result and attributes predicted from
 * its local view (the applied tree plus its own pending commands): nobody
 * else can change those entries, and one node's commands apply in the order
 * it made them. close, fsync, fsyncdir and release wait until everything
 * proposed before them applied and report the first failure not yet
 * reported (fuse_behind_sync). Also the other side: recalling a directory
 * another node holds before changing it, and returning this node's
 * delegations when they are recalled. */
#ifndef RAFTFS_FUSE_BEHIND_H
#define RAFTFS_FUSE_BEHIND_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

struct fuse_fs;
struct fuse_behind;

/* A tracker for mount fs (borrowed) with its returner thread, hooked to the
 * node's delegation events. 0 or a negative errno. */
int fuse_behind_new(struct fuse_fs *fs, struct fuse_behind **out);

/* Unhooks and frees b (after the session ended and the node stopped, so no
 * command completes later). NULL is allowed. */
void fuse_behind_free(struct fuse_behind *b);

/* Entry changes. Each answers req and returns true when it could decide
 * without waiting (proposed behind, or an error predicted exactly from the
 * view); false: nothing was done, the caller takes the synchronous path. */
bool fuse_behind_mknod(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
		       mode_t mode, dev_t rdev);
bool fuse_behind_mkdir(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
		       mode_t mode);
bool fuse_behind_symlink(struct fuse_behind *b, fuse_req_t req, const char *target,
			 uint64_t parent, const char *name);
bool fuse_behind_remove(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
			bool dir);
bool fuse_behind_rename(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
			uint64_t newparent, const char *newname, unsigned flags);

/* setattr (chmod, chown, utimens; not truncate) of a file this mount
 * created behind whose creation is still pending: answered at once with the
 * predicted attributes. Its only failure at apply would be the file gone,
 * which needs its name removed and every handle released first (the
 * creator's pending creation keeps it). Same return rule as above.
 * fuse_behind_forget: a synchronous change of ino (truncate, fallocate,
 * link) ends the prediction of its attributes. */
bool fuse_behind_setattr(struct fuse_behind *b, fuse_req_t req, uint64_t ino,
			 const struct stat *attr, unsigned valid);
void fuse_behind_forget(struct fuse_behind *b, uint64_t ino);

/* Whether ino is a file this mount created behind whose creation is still
 * pending, with nothing else changed synchronously since: it has no
 * xattrs (the kernel asks for security.capability before the first write
 * of every file; waiting would cost a commit round per file). */
bool fuse_behind_fresh(struct fuse_behind *b, uint64_t ino);

/* create(): a new regular file answered behind, open, with a handle whose
 * descriptor is opened once the file exists here (fuse_behind_fd). Same
 * return rule as above. */
bool fuse_behind_create(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
			mode_t mode, struct fuse_file_info *fi);

/* The descriptor of a handle (fi->fh): the local file opened by open or a
 * synchronous create, or for a handle of fuse_behind_create the file opened
 * on first use (after its creation applied). The fd, or a negative errno.
 * fuse_behind_close closes a handle's descriptor and forgets the handle. */
int fuse_behind_fd(struct fuse_behind *b, uint64_t fh);
void fuse_behind_close(struct fuse_behind *b, uint64_t fh);

/* Before a synchronous change of directory dir's entries (or the removal of
 * dir itself): if another node holds it, proposes a Recall and waits until
 * the holder's Return applied; past a bound (a holder that is down or cut
 * off), proposes a Revoke. If nobody holds it and this mount changed it
 * often lately, asks for it and waits for the answer (grant on demand). 0,
 * or a positive errno (ETIMEDOUT: no quorum). */
int fuse_behind_reclaim(struct fuse_behind *b, uint64_t dir);

/* fuse_behind_reclaim for a lookup that missed (no change of dir's
 * entries is coming from here): also does not count toward asking for
 * dir (grant on demand: a directory this mount keeps changing
 * synchronously, nobody holding it, is asked for by fuse_behind_reclaim;
 * fuse_grant.h). */
int fuse_behind_recall(struct fuse_behind *b, uint64_t dir);

/* A synchronous entry change that another node's grant refused (granted
 * between this mount's recall and the command's apply) is proposed again
 * under this node's own delegation: each of dirs (those that refused it)
 * is reclaimed and granted to this node, and propose(arg) runs before any
 * Return of them can be proposed, so the command applies while this node
 * holds them and cannot be refused again. Races lost for the grant itself
 * start over (16 times at most: EAGAIN). 0 once propose ran, or a positive
 * errno without running it. */
int fuse_behind_claim(struct fuse_behind *b, const uint64_t *dirs, unsigned n,
		      void (*propose)(void *arg), void *arg);

/* Reads. fuse_behind_name waits until this mount's pending commands on
 * parent/name applied and says whether parent is delegated to this node
 * (then a miss is final: no barrier). fuse_behind_wait waits until every
 * pending command creating, removing or moving ino, or changing its entries,
 * applied (open, readdir, readlink, xattrs). fuse_behind_getattr fills st
 * for ino: a directory with pending entry changes from the applied state
 * and the prediction (times, link count), without waiting; anything else
 * after fuse_behind_wait-ing for its own creation. 0 or a negative errno. */
bool fuse_behind_name(struct fuse_behind *b, uint64_t parent, const char *name);
/* The attributes of a file this mount created behind, creation pending,
 * predicted without waiting (with its writes in flight): true with st, or
 * false (ask fuse_behind_getattr). The kernel asks before every chown (to
 * clear set-id bits): tar x chowns every file. */
bool fuse_behind_predict(struct fuse_behind *b, uint64_t ino, struct stat *st);
void fuse_behind_wait(struct fuse_behind *b, uint64_t ino);
int fuse_behind_getattr(struct fuse_behind *b, uint64_t ino, struct stat *st);

/* The objects whose attributes this mount's pending write-behind commands
 * change (created, removed, moved, set, or entries changed): getattr
 * predicts or waits for them, so their applied attributes must not reach
 * the kernel — readdirplus, which cannot wait (it reads under the state
 * machine's lock), sends such entries without attributes. Sorted ids in
 * *out (malloc'd, NULL when none), their count in *n; 0 or -ENOMEM. */
int fuse_behind_busy(struct fuse_behind *b, uint64_t **out, size_t *n);

/* Close behind ([fs] close = behind, fs/fuse_close.h): whether handle fh
 * may be closed once its commands are proposed, before they commit: a file
 * this mount created behind, in a directory it still holds under the
 * delegation it was created in (another mount that looked into the
 * directory since recalled it: fuse_behind_fence), not renamed, linked or
 * changed synchronously since, on a node whose proposals get through
 * (fs_node_progressing), and whose commands since its creation all went
 * out in one log entry just now (fs_node_flush_unit: each node applies all
 * of them or none, so a crash of this node never leaves the file torn
 * elsewhere). When it answers early it has started the file's commands;
 * otherwise the close's wait for them (fuse_write_sync) starts them. */
bool fuse_behind_close_early(struct fuse_behind *b, uint64_t fh);

/* Whether fh is a handle of fuse_behind_create (its file's creation was
 * answered behind, so its close has commands of its own to wait for even
 * when nothing was written through it). */
bool fuse_behind_made(uint64_t fh);

/* close = behind, on the other side: before this mount hands its kernel
 * names or entries of dir (lookup, readdir), recalls dir if another node
 * holds it, so that everything that node closed behind there applied here
 * first (its Return is proposed behind its commands), and what it answered
 * behind there whatever its close mode (a chown, an unlink). Nothing
 * without a quorum (reads keep working). 1:
 * another node held dir and the recall ended that (read it again); 0:
 * nobody else held it; or a negative errno (the caller may go on: its
 * barrier decides). */
int fuse_behind_fence(struct fuse_behind *b, uint64_t dir);

/* A listing of parent showed ids[0..n), directories another node holds:
 * the first of them fuse_behind_fence fences (ls -l's lookups, right
 * after) recalls them all at once (fs/fuse_listed.h). */
void fuse_behind_listed(struct fuse_behind *b, uint64_t parent, const uint64_t *ids, size_t n);

/* The first failure of a write-behind command not yet reported, without
 * waiting (a positive errno, or 0); take as for fuse_behind_sync. */
int fuse_behind_error(struct fuse_behind *b, bool take);

/* Waits until every write-behind command this mount proposed before the
 * call applied, then returns the first failure of one not yet reported (a
 * positive errno), or 0; take: it counts as reported (flush, fsync and
 * fsyncdir take it; release, whose answer the kernel drops, does not). */
int fuse_behind_sync(struct fuse_behind *b, bool take);

#endif
