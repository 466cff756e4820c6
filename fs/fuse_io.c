/* fuse_io.c — FUSE operations on file contents: open (the close-to-open
 * sync point), create, read from the local tree, write as Write commands,
 * release, fallocate, lseek, copy_file_range. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_node.h"
#include "fuse_fs_impl.h"
#include "fuse_inval.h"
#include "sm.h"

/* The largest data one Write command carries: bounded Raft entries. */
#define WRITE_CHUNK (256u << 10)
/* The most copy_file_range copies per call (callers loop). */
#define COPY_MAX (8u << 20)

/* Without a writeback cache the kernel appends at the size it has cached,
 * and an invalidation does not make it ask again before a write: store an
 * empty range at the current end, which extends the size it knows. (Only
 * growth is learnt this way; a file shrunk elsewhere gets a hole.) */
static void refresh_size(fuse_req_t req, fuse_ino_t ino, int fd)
{
	struct fuse_bufvec empty = FUSE_BUFVEC_INIT(0);
	struct stat st;

	if (fstat(fd, &st) == 0 && st.st_size > 0)
		fuse_lowlevel_notify_store(ffs_of(req)->se, ino, st.st_size, &empty, 0);
}

void ffs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = ffs_of(req);
	uint64_t mark;
	int rc;

	/* Close-to-open: everything committed before this open is applied here
	 * and gone from the kernel's caches before the open is answered. */
	rc = ffs_barrier(fs);
	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	mark = fuse_inval_attr_mark(fs->inv, ino);
	fuse_inval_wait(fs->inv, mark);
	rc = sm_open_fd(fs->sm, ino);
	if (rc < 0) {
		/* Removed elsewhere while the kernel still had the name: ESTALE
		 * makes it walk the path again with a fresh lookup. */
		fuse_reply_err(req, rc == -ENOENT ? ESTALE : -rc);
		return;
	}
	if (fi->flags & O_APPEND)
		refresh_size(req, ino, rc);
	fi->fh = (uint64_t)rc;
	fi->keep_cache = 0;
	ffs_open_inc(fs, ino, rc);
	if (fuse_reply_open(req, fi) != 0) {
		ffs_open_dec(fs, ino);
		close(rc);
	}
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
	ssize_t n;

	(void)ino;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = pread((int)fi->fh, buf, size, off);
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

/* Proposes data as Write commands of at most WRITE_CHUNK bytes each; the
 * request is answered when all are applied. */
static void write_data(fuse_req_t req, uint64_t ino, const char *data, size_t size, off_t off,
		       size_t count)
{
	struct pending *p = ffs_pending_new(req, RP_WRITE);
	size_t done = 0;

	if (!p)
		return;
	p->count = count;
	do {
		Fspb__Command c;
		Fspb__Write w = FSPB__WRITE__INIT;
		size_t n = size - done < WRITE_CHUNK ? size - done : WRITE_CHUNK;

		ffs_cmd_init(&c, req);
		w.ino = ino;
		w.offset = (uint64_t)off + done;
		w.data.data = (uint8_t *)data + done;
		w.data.len = n;
		c.op_case = FSPB__COMMAND__OP_WRITE;
		c.write = &w;
		done += n;
		atomic_fetch_add(&p->parts, 1);
		ffs_propose_part(p, &c);
	} while (done < size);
	ffs_part_done(p, 0); /* the initial count */
}

void ffs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	       struct fuse_file_info *fi)
{
	(void)fi;
	write_data(req, ino, buf, size, off, size);
}

void ffs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

void ffs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = ffs_of(req);

	close((int)fi->fh);
	if (ffs_open_dec(fs, ino) == 0)
		ffs_maybe_release(fs, ino);
	fuse_reply_err(req, 0);
}

void ffs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
		   struct fuse_file_info *fi)
{
	Fspb__Command c;
	Fspb__Fallocate f = FSPB__FALLOCATE__INIT;

	(void)fi;
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
	off_t r;

	(void)ino;
	r = lseek((int)fi->fh, off, whence);
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
	char *buf;
	ssize_t n;

	(void)ino_in;
	(void)fi_out;
	if (flags) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	buf = malloc(want ? want : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = pread((int)fi_in->fh, buf, want, off_in);
	if (n < 0)
		fuse_reply_err(req, errno);
	else if (n == 0)
		fuse_reply_write(req, 0);
	else
		write_data(req, ino_out, buf, (size_t)n, off_out, (size_t)n);
	free(buf);
}

/* Every reply is sent once the command is applied on a quorum's logs
 * (fsynced there): nothing is left to sync. */
void ffs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}
