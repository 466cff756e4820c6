/* fuse_write.h — pipelined writes of one mount: a FUSE write is answered as
 * soon as its Write commands are proposed; this module remembers what each
 * inode has in flight, so that every operation whose answer depends on the
 * inode's contents waits for it first, flush/fsync report a write's failure
 * (as NFS does: close() returns it), and a fast writer blocks once too much
 * is in flight. */
#ifndef RAFTFS_FUSE_WRITE_H
#define RAFTFS_FUSE_WRITE_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct fs_node;

/* The largest data one Write command carries: the kernel's max_write, so an
 * O_APPEND write of one call is one command, atomic on every node. */
#define FUSE_WRITE_CHUNK (1u << 20)

/* What one mount has in flight. */
struct fuse_write;

/* A tracker proposing through fsn (borrowed). 0 or -ENOMEM. */
int fuse_write_new(struct fs_node *fsn, struct fuse_write **out);

/* Frees w. Every write must be done (its node stopped or drained), so no
 * completion can come later. NULL is allowed. */
void fuse_write_free(struct fuse_write *w);

/* Proposes size bytes of data for ino as Write commands of at most
 * FUSE_WRITE_CHUNK bytes (at off, or at the file's end when applied if
 * append), on behalf of req's caller through handle fh, and returns without
 * waiting for them to apply. Blocks first while this mount or this inode
 * has too much in flight, and, unless the node applies one client's
 * proposals in order, while an earlier write in flight overlaps (writes
 * that could be reordered into different contents are not in flight
 * together; an append overlaps every write of its file). The count of bytes
 * proposed (> 0 unless size is 0), or a negative errno when nothing was. A
 * write that fails once proposed is reported by fuse_write_sync(fh). */
ssize_t fuse_write_data(struct fuse_write *w, fuse_req_t req, uint64_t ino, uint64_t fh,
			const char *data, size_t size, uint64_t off, bool append);

/* Waits until every write of ino proposed through this mount before the
 * call is applied (or failed): reads, getattr and mutations naming ino see
 * what this mount wrote. Starts what the node's plug holds only when ino
 * has writes in flight (a read of a file with none leaves the plug's
 * batches whole). */
void fuse_write_wait(struct fuse_write *w, uint64_t ino);

/* Orders a mutation of ino about to be proposed (setattr, fallocate, link,
 * unlink, rename, xattrs) after this mount's writes of it: fuse_write_wait
 * while the node does not keep one client's proposals in order, nothing
 * once it does (the mutation then applies after them, and its answer,
 * sent once applied, includes them). */
void fuse_write_fence(struct fuse_write *w, uint64_t ino);

/* Answers that carry attributes read before a wait (lookup, readdirplus)
 * must not give the kernel a size from before this mount's writes: the
 * kernel takes attributes from any reply to a request sent after the write
 * was answered. fuse_write_epoch counts the writes completed so far (an
 * answer read before a change of it may be stale); fuse_write_busy says
 * whether ino has writes in flight, without waiting (for callers that hold
 * the state machine's lock, which apply needs). */
uint64_t fuse_write_epoch(struct fuse_write *w);
bool fuse_write_busy(struct fuse_write *w, uint64_t ino);

/* What ino's writes in flight through this mount leave once applied, for
 * an answer predicted before they apply (fuse_behind.h): *end, the largest
 * end offset (0: none), and *time_ns, the clock of the latest (the file's
 * mtime and ctime then; 0: none). false when one is an append (its offset
 * is decided at apply): no prediction. */
bool fuse_write_pending(struct fuse_write *w, uint64_t ino, uint64_t *end, int64_t *time_ns);

/* fuse_write_wait, then the first error (a positive errno) that a write
 * through handle fh got since the last report, or 0. The error is reported
 * once: flush takes it, so close() returns it. */
int fuse_write_sync(struct fuse_write *w, uint64_t ino, uint64_t fh);

/* Whether nothing was ever written through handle fh (no write of it in
 * flight, none failed unreported): a read's handle, say. Its close has
 * nothing of its own to wait for. */
bool fuse_write_unused(struct fuse_write *w, uint64_t fh);

/* fuse_write_sync for a handle being released: afterwards fh is forgotten
 * (its number may be reused by the next open). */
int fuse_write_release(struct fuse_write *w, uint64_t ino, uint64_t fh);

/* Close behind (fs/fuse_close.h). fuse_write_take: the first error of
 * fh's writes known so far, taken, without waiting. fuse_write_detach: fh
 * is released with writes still in flight; a failure of one of them is
 * logged (naming the file) and kept for fuse_write_late, and fh is
 * forgotten (its number may come back with the next open). */
int fuse_write_take(struct fuse_write *w, uint64_t fh);
void fuse_write_detach(struct fuse_write *w, uint64_t fh);

/* The first failure of a detached handle's write (or an error its handle
 * had not reported when detached) not yet reported: a positive errno, or
 * 0. take: it counts as reported (close and fsync take it). No waiting. */
int fuse_write_late(struct fuse_write *w, bool take);

/* Waits until every write proposed through this mount before the call
 * completed, whatever its file or handle: fsync and fsyncdir cover the
 * files closed behind before them (the durability point). */
void fuse_write_wait_all(struct fuse_write *w);

#endif
