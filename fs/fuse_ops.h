/* fuse_ops.h — the FUSE low-level operations of a raftfs mount: reads from
 * the local tree, mutations as commands through Raft. */
#ifndef RAFTFS_FUSE_OPS_H
#define RAFTFS_FUSE_OPS_H

#include <stdbool.h>

struct fs_node;
struct fuse_inval;
struct fuse_lowlevel_ops;

struct fs_release;

struct fuse_ops_cfg {
	bool linearizable; /* lookups, getattr and readdir pass a ReadIndex barrier */
	double timeout;	   /* kernel entry/attribute cache timeout, seconds */
	/* This node's releaser of orphans (fs_release.h; borrowed, required):
	 * the mount tells it which files it holds. */
	struct fs_release *rel;
};

/* The per-mount state the operations share (the session's userdata). */
struct fuse_fs;

/* Creates it over fsn and inv (both borrowed). 0 or a negative errno. */
int fuse_fs_new(struct fs_node *fsn, struct fuse_inval *inv, const struct fuse_ops_cfg *cfg,
		struct fuse_fs **out);

/* The session serving fs (before it serves requests). */
struct fuse_session;
void fuse_fs_set_session(struct fuse_fs *fs, struct fuse_session *se);

/* At start (fs/README-sm.md, orphans): once this node applied its log,
 * proposes Release of every orphan this mount holds no handle on. Returns at
 * once; the work happens when the barrier completes. */
void fuse_fs_release_orphans(struct fuse_fs *fs);

/* Frees it (the session must be gone). NULL is allowed. */
void fuse_fs_free(struct fuse_fs *fs);

/* The operations table (userdata: a struct fuse_fs). */
const struct fuse_lowlevel_ops *fuse_fs_ops(void);

#endif
