/* fuse_guard.h — a child process that aborts the mount's kernel connection
 * if the node dies without unmounting.
 *
 * Why: a node killed (SIGKILL, a crash) while its invalidation thread waits
 * in the kernel for a directory lock (fuse_lowlevel_notify_inval_entry) that
 * a caller holds while it waits for a reply only the node could send never
 * finishes dying: that thread cannot leave its uninterruptible wait, so the
 * process cannot close /dev/fuse, so the kernel never aborts the
 * connection, so the caller never lets go of the lock. The node's process,
 * its mount, its RocksDB lock and every caller hang until someone writes to
 * the connection's fusectl `abort` file. The guard is that someone: it is
 * told by the kernel (PR_SET_PDEATHSIG) when the thread that mounted exits,
 * and aborts the connection unless the node disarmed it after a clean
 * unmount. */
#ifndef RAFTFS_FUSE_GUARD_H
#define RAFTFS_FUSE_GUARD_H

struct fuse_guard;

/* Starts the guard of the FUSE mount at mountpoint (just mounted by the
 * calling thread, which must be the process's main thread and outlive the
 * mount). Needs root (fusectl). 0, or a negative errno (no guard: the
 * mount works without one; the caller logs it). */
int fuse_guard_start(const char *mountpoint, struct fuse_guard **out);

/* The kernel connection of the FUSE mount at mountpoint (its number in
 * /sys/fs/fuse/connections and its bdi's name, 0:conn) is its device's
 * minor number (major 0): read from /proc/self/mountinfo, the topmost of
 * stacked mounts, rather than by stat(), which would ask the filesystem
 * itself (and hang before its session serves). 0 or a negative errno. */
int fuse_guard_connection(const char *mountpoint, unsigned *conn);

/* After a clean unmount: the guard exits without touching anything; waits
 * for it and frees. NULL is allowed. */
void fuse_guard_stop(struct fuse_guard *g);

#endif
