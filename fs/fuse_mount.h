/* fuse_mount.h — mounting a raftfs node's filesystem: options, the FUSE
 * session and its multi-threaded loop, unmounting. */
#ifndef RAFTFS_FUSE_MOUNT_H
#define RAFTFS_FUSE_MOUNT_H

#include <stdbool.h>

struct fs_node;
struct fuse_mount;

struct fs_release;

/* Mounts fsn's filesystem at mountpoint and starts serving it; rel
 * (borrowed, NULL allowed) is the node's releaser of orphans, told which
 * files the mount holds (fs_release.h). opts is a
 * comma-separated option list (NULL or "" for none): raftfs's own
 * (linearizable, timeout=SECONDS, see fuse_mount.c) and any libfuse/mount
 * option (allow_other, ro, debug, ...). default_permissions is always on,
 * allow_other too when running as root. A stale mount left at mountpoint by
 * a killed node is detached first. 0 or a negative errno, with what failed
 * on stderr. */
int fuse_mount_start(struct fs_node *fsn, struct fs_release *rel, const char *mountpoint,
		     const char *opts, struct fuse_mount **out);

/* True once the session loop ended by itself (e.g. fusermount3 -u). */
bool fuse_mount_ended(struct fuse_mount *m);

/* First half of a stop: no invalidations any more, the session loop is told
 * to end, and the mount is unmounted if nobody uses it; then up to a second
 * for the commands the mount proposed to complete. Requests still waiting
 * after that wait for the node: stop it (node_stop fails them with EIO),
 * then call fuse_mount_finish. */
void fuse_mount_stop(struct fuse_mount *m);

/* Second half, after node_stop: a mount still in use is taken away (its
 * kernel connection aborted: requests not yet answered fail with ENOTCONN,
 * so a process holding a file there cannot keep the loop alive) and
 * detached, and the session loop is joined. Then fuse_mount_free frees
 * everything. */
void fuse_mount_finish(struct fuse_mount *m);

/* Frees what the mount holds. NULL is allowed. */
void fuse_mount_free(struct fuse_mount *m);

struct node_config;

/* raftfs node with the filesystem state machine: opens the state machine in
 * cfg->data_dir, runs the node, mounts at cfg->mount (none if empty) with
 * mount_opts, and serves until SIGTERM/SIGINT or an external unmount. A
 * local apply fault does not end it: the node reports itself unhealthy,
 * mutations fail with EIO and reads keep working. Returns the exit status. */
int fuse_run_node(const struct node_config *cfg, const char *mount_opts);

#endif
