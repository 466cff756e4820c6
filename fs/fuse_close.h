/* fuse_close.h — what close (flush, release), fsync and fsyncdir of a mount
 * wait for and report, under [fs] close = commit|behind.
 *
 * commit (RAFTFS_CLOSE=commit): close waits until every write of the file
 * and every write-behind command the mount proposed before it applied here
 * (committed on a quorum), and returns the first failure (NFS semantics).
 *
 * behind (the default since session 7): close of a file this mount created
 * behind in a directory it holds (fuse_behind_close_early) returns once the
 * file's commands are proposed, all of them in one log entry (so if this
 * node dies, the other nodes have the whole file or none of it), like a
 * local filesystem's close before writeback; when they could not go in one
 * entry (a big file, a flush, the plug's linger or limits started some
 * before), close waits for their commit as under commit. A failure of them
 * is logged and returned by a later close, fsync or fsyncdir of the mount.
 * Close-to-open across mounts still holds: another mount recalls the
 * directory before it looks into it (fuse_behind_fence), and the holder
 * returns it behind those commands. fsync and fsyncdir stay the durability
 * points: they wait for everything the mount answered before them, the
 * files closed behind included. Every other close is as under commit.
 *
 * Either mode: the close of a handle through which nothing was written, of
 * a file not created behind (a read's), waits for nothing and returns a
 * failure the mount already knows of: what the mount proposed before is
 * the business of the closes and fsyncs of the handles that made it (and
 * other mounts see it through their recall, not through this close). */
#ifndef RAFTFS_FUSE_CLOSE_H
#define RAFTFS_FUSE_CLOSE_H

struct fuse_fs;

/* fsyncdir (and the part of fsync beyond the file's own writes): waits
 * until every write and write-behind command this mount proposed before
 * the call applied, then returns the first failure not yet reported (a
 * positive errno) or 0, and counts it as reported. */
int fuse_close_sync_mount(struct fuse_fs *fs);

/* The FUSE flush, release and fsync operations themselves are ffs_flush,
 * ffs_release and ffs_fsync (fuse_fs_impl.h), defined in fuse_close.c. */

#endif
