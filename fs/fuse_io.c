/* fuse_io.c — FUSE operations on file contents: open (the close-to-open
 * sync point), create, read from the local tree, write as pipelined Write
 * commands (fuse_write.h) awaited by flush, fsync and release (those are in
 * fuse_close.c), fallocate, lseek, copy_file_range. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_node.h"
#include "fs_release.h"
#include "fuse_behind.h"
#include "fuse_fs_impl.h"
#include "fuse_inval.h"
#include "fuse_write.h"
#include "sm.h"

/* The most copy_file_range copies per call (callers loop). */
#define COPY_MAX (8u << 20)

/* O_APPEND and write-only handles bypass the kernel's page cache. Through
 * it, a write that crosses a page boundary not yet cached reaches us as two
 * requests (the kernel stops filling a request at a partly written page),
 * and the kernel asks for security.capability (GETXATTR) before every
 * write(2) to decide whether privileges must go. Direct, one write(2) of up
 * to max_write is one request and one Write command: appends land whole on
 * every node (another mount's append cannot land between two halves), and
 * tar x sends a fifth fewer requests and commands (bench/fs/README.md,
 * "Apply and FUSE CPU per small file"). A write-only handle can neither
 * read nor be mapped, so it loses no cached reads; set-id bits are cleared
 * at apply either way (apply.c, plan_kill_setid). */
void ffs_direct_writes(struct fuse_file_info *fi)
{
	if ((fi->flags & O_APPEND) || (fi->flags & O_ACCMODE) == O_WRONLY)
		fi->direct_io = 1;
}

/* Opens ino for an open already pinned against its release (ffs_open). */
static void open_pinned(fuse_req_t req, struct fuse_fs *fs, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	uint64_t mark;
	int rc, err;

	/* Close-to-open: everything committed before this open is applied here
	 * and gone from the kernel's caches before the open is answered. */
	rc = ffs_barrier(fs);
	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	mark = fuse_inval_attr_mark(fs->inv, ino);
	fuse_inval_wait(fs->inv, mark);
	fuse_behind_wait(fs->bh, ino); /* made by this mount, write-behind */
	rc = sm_open_fd(fs->sm, ino);
	if (rc < 0) {
		/* Removed elsewhere while the kernel still had the name: ESTALE
		 * makes it walk the path again with a fresh lookup. */
		fuse_reply_err(req, rc == -ENOENT ? ESTALE : -rc);
		return;
	}
	fi->fh = (uint64_t)rc;
	fi->keep_cache = 0;
	ffs_direct_writes(fi);
	err = ffs_open_pinned(fs, ino, rc);
	if (err < 0) {
		close(rc);
		fuse_reply_err(req, -err);
		return;
	}
	if (fuse_reply_open(req, fi) != 0) {
		ffs_open_dec(fs, ino);
		close(rc);
		ffs_maybe_release(fs, ino);
	}
}

void ffs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = ffs_of(req);
	/* The pin comes before the barrier: a rename or unlink applied while
	 * the open waits for it may take the file's last name, and the file
	 * the lookup found must then stay this node's to open (a local
	 * filesystem gives the old file or the new, never an error). Refused:
	 * this node released it already, the name went before this open, and
	 * ESTALE makes the kernel look the path up again. */
	int rc = fs_release_pin(fs->cfg.rel, ino);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	open_pinned(req, fs, ino, fi);
	fs_release_unpin(fs->cfg.rel, ino);
}

void ffs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		struct fuse_file_info *fi)
{
	struct fuse_fs *fs = ffs_of(req);
	Fspb__Command c;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	struct pending *p;
	uint64_t id;
	uint32_t md = S_IFREG | (mode & 07777);
	int rc;

	if (fuse_behind_create(fs->bh, req, parent, name, mode, fi))
		return;
	rc = fuse_behind_reclaim(fs->bh, parent);
	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	if (ffs_new_node_cmd(fs, req, parent, &c, &id, &md) < 0)
		return;
	m.parent = parent;
	m.name = (char *)name;
	m.ino = id;
	m.mode = md;
	m.exclusive = (fi->flags & O_EXCL) != 0;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	p = ffs_pending_new(req, RP_CREATE);
	if (!p)
		return;
	p->id = id;
	p->parent = parent;
	p->fi = *fi;
	p->fi.keep_cache = 0;
	ffs_direct_writes(&p->fi);
	if (!(p->name = strdup(name))) {
		free(p);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ffs_propose_part(p, &c);
}

void ffs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	char *buf = malloc(size ? size : 1);
	int fd = fuse_behind_fd(ffs_of(req)->bh, fi->fh);
	ssize_t n;

	if (!buf || fd < 0) {
		free(buf);
		fuse_reply_err(req, fd < 0 ? -fd : ENOMEM);
		return;
	}
	/* Read-your-writes: this mount's writes answered before are applied. */
	fuse_write_wait(ffs_of(req)->wr, ino);
	n = pread(fd, buf, size, off);
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

/* Answers a write once its commands are proposed; a failure after that is
 * reported by the handle's next flush or fsync (fuse_write.h). */
static void write_reply(fuse_req_t req, ssize_t n)
{
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

void ffs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	       struct fuse_file_info *fi)
{
	/* O_APPEND (the kernel passes the file's flags): the command appends
	 * at the end the file has when applied, so appends from every mount
	 * land whole, one after the other, the same on every node; the offset
	 * the kernel chose from its cached size does not matter. */
	bool append = (fi->flags & O_APPEND) != 0;
	struct fuse_fs *fs = ffs_of(req);
	ssize_t n = fuse_write_data(fs->wr, req, ino, fi->fh, buf, size, (uint64_t)off, append);
	int err;

	/* No leader or no quorum lately: the write is answered once applied,
	 * so write(2) itself fails (a shell redirection never sees close's
	 * error). */
	if (n > 0 && fs_node_stalled(fs->fsn) && (err = fuse_write_sync(fs->wr, ino, fi->fh)))
		n = -err;
	write_reply(req, n);
}

void ffs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
		   struct fuse_file_info *fi)
{
	Fspb__Command c;
	Fspb__Fallocate f = FSPB__FALLOCATE__INIT;

	(void)fi;
	/* Ordered after this mount's writes: they must not land on top. */
	fuse_behind_forget(ffs_of(req)->bh, ino);
	fuse_write_fence(ffs_of(req)->wr, ino);
	ffs_cmd_init(&c, req);
	f.ino = ino;
	f.mode = mode;
	f.offset = (uint64_t)offset;
	f.length = (uint64_t)length;
	c.op_case = FSPB__COMMAND__OP_FALLOCATE;
	c.fallocate = &f;
	ffs_submit(req, &c, RP_NONE, 0, 0, NULL, 0);
}

void ffs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
	int fd = fuse_behind_fd(ffs_of(req)->bh, fi->fh);
	off_t r;

	if (fd < 0) {
		fuse_reply_err(req, -fd);
		return;
	}
	/* SEEK_DATA/SEEK_HOLE see this mount's writes. */
	fuse_write_wait(ffs_of(req)->wr, ino);
	r = lseek(fd, off, whence);
	if (r < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_lseek(req, r);
}

void ffs_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			 struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			 struct fuse_file_info *fi_out, size_t len, int flags)
{
	size_t want = len < COPY_MAX ? len : COPY_MAX;
	int fd = fuse_behind_fd(ffs_of(req)->bh, fi_in->fh);
	char *buf;
	ssize_t n;

	if (flags || fd < 0) {
		fuse_reply_err(req, fd < 0 ? -fd : EINVAL);
		return;
	}
	buf = malloc(want ? want : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fuse_write_wait(ffs_of(req)->wr, ino_in);
	n = pread(fd, buf, want, off_in);
	if (n < 0)
		fuse_reply_err(req, errno);
	else if (n == 0)
		fuse_reply_write(req, 0);
	else
		write_reply(req, fuse_write_data(ffs_of(req)->wr, req, ino_out, fi_out->fh, buf,
						 (size_t)n, (uint64_t)off_out, false));
	free(buf);
}
