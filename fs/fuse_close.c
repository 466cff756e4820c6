/* fuse_close.c — flush (close), release, fsync and the mount-wide sync of
 * fsyncdir, under [fs] close = commit|behind (fuse_close.h). */
#include "fuse_close.h"

#include "fs_node.h"
#include "fuse_behind.h"
#include "fuse_fs_impl.h"
#include "fuse_write.h"

/* The first failure a close or fsync has not reported yet beyond its own
 * file's: a write-behind command's, then a write's of a handle closed
 * behind. Each is taken only when it is the one returned (the next call
 * reports the other). */
static int take_mount_error(struct fuse_fs *fs)
{
	int err = fuse_behind_error(fs->bh, true);

	return err ? err : fuse_write_late(fs->wr, true);
}

int fuse_close_sync_mount(struct fuse_fs *fs)
{
	int err;

	/* close = behind: the writes of files closed behind are covered too
	 * (under commit their closes waited for them already). */
	if (fs_node_close_behind(fs->fsn))
		fuse_write_wait_all(fs->wr);
	err = fuse_behind_sync(fs->bh, true);
	return err ? err : fuse_write_late(fs->wr, true);
}

/* close(2) returns what flush answers. Synchronously: the first failure of
 * a write made through this handle, once every write of the file and every
 * write-behind command the mount proposed before is applied here, hence
 * committed (close-to-open: the file's creation, its parent directories).
 * Behind (fuse_behind_close_early): once the file's commands are proposed
 * in one log entry (not held back by the plug: the close acknowledged
 * them), with a failure already known. A handle that wrote nothing and
 * made nothing (a read's) has nothing to wait for: a failure already
 * known, at once — waiting for the mount's whole write-behind backlog made
 * every cat during a tar x take milliseconds (fuse_close.h). */
void ffs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = ffs_of(req);
	int err;

	if (fuse_behind_close_early(fs->bh, fi->fh)) {
		err = fuse_write_take(fs->wr, fi->fh);
	} else if (!fuse_behind_made(fi->fh) && fuse_write_unused(fs->wr, fi->fh)) {
		err = 0;
	} else {
		err = fuse_write_sync(fs->wr, ino, fi->fh);
		/* Waits; takes the failure even when err is returned (the
		 * file's own error comes first). */
		int berr = fuse_behind_sync(fs->bh, true);

		if (!err)
			err = berr;
	}
	if (!err)
		err = take_mount_error(fs);
	fuse_reply_err(req, err);
}

void ffs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = ffs_of(req);
	int err = 0;

	if (fs_node_close_behind(fs->fsn) ||
	    (!fuse_behind_made(fi->fh) && fuse_write_unused(fs->wr, fi->fh))) {
		/* Nothing waits here: the handle's writes, if any, stay in
		 * flight and report to the mount (fuse_write_detach). An
		 * orphan's Release, proposed after them by this node, applies
		 * after them (one node's commands apply in order). */
		fuse_write_detach(fs->wr, fi->fh);
	} else {
		/* The kernel ignores release's answer; but the writes must be
		 * applied before an orphan's Release is proposed, or they
		 * would fail. */
		int berr;

		err = fuse_write_release(fs->wr, ino, fi->fh);
		berr = fuse_behind_sync(fs->bh, false);
		if (!err)
			err = berr;
	}
	fuse_behind_close(fs->bh, fi->fh);
	if (ffs_open_dec(fs, ino) == 0)
		ffs_maybe_release(fs, ino);
	fuse_reply_err(req, err);
}

/* A write is durable once applied here: its entry was committed, so it is
 * on a quorum's fsynced logs. fsync waits for that and reports the first
 * failure of this handle's writes, then of the mount's (fuse_close.h). */
void ffs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = ffs_of(req);
	int err = fuse_write_sync(fs->wr, ino, fi->fh);
	int merr = fuse_close_sync_mount(fs);

	(void)datasync;
	fuse_reply_err(req, err ? err : merr);
}
