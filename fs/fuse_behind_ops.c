/* fuse_behind_ops.c — the FUSE operations answered behind: create, mknod,
 * mkdir, symlink, unlink, rmdir, rename and setattr proposed with a
 * predicted answer, the handles of files created behind, and the reads
 * that wait for or predict from the pending commands (sync). */
#include "fuse_behind_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_node.h"
#include "fuse_fs_impl.h"
#include "fuse_inval.h"
#include "fuse_write.h"
#include "cmd_merge.h"
#include "sm.h"

/* The attributes a new object gets when its command applies (apply.c):
 * the proposer's time for all three times, the caller's owner (the group
 * and set-gid bit of a set-gid parent already in c and mode). */
static void predict_new(struct stat *st, uint64_t id, mode_t mode, const Fspb__Command *c,
			off_t size, dev_t rdev)
{
	struct timespec t = {c->time_ns / 1000000000, c->time_ns % 1000000000};

	memset(st, 0, sizeof(*st));
	st->st_ino = id;
	st->st_mode = mode;
	st->st_uid = c->uid;
	st->st_gid = c->gid;
	st->st_nlink = S_ISDIR(mode) ? 2 : 1;
	st->st_size = size;
	st->st_rdev = rdev;
	st->st_blksize = 4096;
	st->st_blocks = S_ISDIR(mode) ? 8 : 0;
	st->st_atim = st->st_mtim = st->st_ctim = t;
}

/* The checks of a name that apply.c makes (tree_check_name). */
static int name_result(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
		return EINVAL;
	return n > 255 ? ENAMETOOLONG : 0;
}

/* Creates parent/name as c (built by the caller, without the op) behind:
 * 1 answered, 0 not possible here. st is the prediction. */
static bool create_behind(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
			  Fspb__Command *c, const struct stat *st, const char *verb)
{
	struct fuse_fs *fs = b->fs;
	struct bh_dir *d;
	struct bh_op *op;
	struct stat old;
	int rc;

	d = bh_dir_held(b, parent);
	if (!d)
		return false;
	rc = name_result(name);
	if (!rc) {
		rc = bh_view_lookup(b, parent, name, &old);
		rc = rc < 0 ? -rc : rc ? EEXIST : 0;
	}
	if (rc) {
		bh_end(b);
		fuse_reply_err(req, rc);
		return true;
	}
	op = bh_op_new(b, verb, parent, name);
	if (!op || bh_op_touch(b, op, 0, d, name, st, st->st_ino, c->time_ns)) {
		if (op) {
			pthread_mutex_unlock(&b->mu);
			bh_op_done(op, 0);
			pthread_mutex_lock(&b->mu);
		}
		bh_end(b);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	if (S_ISDIR(st->st_mode)) {
		bh_op_nlink(b, op, d, 1);
		/* Granted with the mkdir: its own entries are this mount's to
		 * change at once (mkdir -p, tar x of a deep tree). */
		bh_dir_add(b, st->st_ino, 1, D_HELD);
	}
	pthread_mutex_unlock(&b->mu);
	rc = bh_op_propose(b, op, c);
	pthread_mutex_unlock(&b->order);
	if (rc) {
		fuse_reply_err(req, rc);
		return true;
	}
	ffs_reply_entry_st(fs, req, st);
	return true;
}

/* The start of a new object's write-behind creation in parent: room in
 * flight, the locks (bh_begin), the delegation check, then the command's
 * common part and a new id (ffs_new_node_cmd). NEW_NOT_HELD: nothing was
 * done, the caller takes the synchronous path; NEW_ANSWERED: the request
 * got an error; NEW_READY: locks held, finish with finish_new. */
enum new_start { NEW_NOT_HELD, NEW_ANSWERED, NEW_READY };

static enum new_start start_new(struct fuse_behind *b, fuse_req_t req, uint64_t parent,
				Fspb__Command *c, uint64_t *ino, uint32_t *md)
{
	if (!ffs_ids_known_now(b->fs))
		return NEW_NOT_HELD;
	bh_begin(b);
	if (!bh_dir_held(b, parent)) {
		bh_end(b);
		return NEW_NOT_HELD;
	}
	if (ffs_new_node_cmd(b->fs, req, parent, c, ino, md) < 0) {
		bh_end(b);
		return NEW_ANSWERED;
	}
	return NEW_READY;
}

/* Proposes a started creation behind (create_behind); the locks are
 * released on either outcome. */
static bool finish_new(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
		       Fspb__Command *c, const struct stat *st, const char *verb)
{
	bool done = create_behind(b, req, parent, name, c, st, verb);

	if (!done)
		bh_end(b);
	return done;
}

bool fuse_behind_mknod(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
		       mode_t mode, dev_t rdev)
{
	Fspb__Command c;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	struct stat st;
	uint32_t md = mode;
	mode_t t = mode & S_IFMT;

	if (!bh_behind_on(b) ||
	    (t != S_IFREG && t != S_IFIFO && t != S_IFSOCK && t != S_IFCHR && t != S_IFBLK))
		return false;
	enum new_start started = start_new(b, req, parent, &c, &m.ino, &md);
	if (started != NEW_READY)
		return started == NEW_ANSWERED;
	m.parent = parent;
	m.name = (char *)name;
	m.mode = md;
	m.rdev = rdev;
	m.exclusive = true;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	predict_new(&st, m.ino, (md & S_IFMT) | (md & 07777), &c, 0, (dev_t)rdev);
	return finish_new(b, req, parent, name, &c, &st, "mknod");
}

bool fuse_behind_mkdir(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
		       mode_t mode)
{
	Fspb__Command c;
	Fspb__Mkdir m = FSPB__MKDIR__INIT;
	struct stat st;
	uint32_t md = S_IFDIR | (mode & 07777);

	if (!bh_behind_on(b))
		return false;
	enum new_start started = start_new(b, req, parent, &c, &m.ino, &md);
	if (started != NEW_READY)
		return started == NEW_ANSWERED;
	m.parent = parent;
	m.name = (char *)name;
	m.mode = md;
	m.grant = true;
	/* Other mounts fence it if this one closes behind (fuse_behind_fence). */
	m.grant_close_behind = fs_node_close_behind(b->fs->fsn);
	c.op_case = FSPB__COMMAND__OP_MKDIR;
	c.mkdir = &m;
	predict_new(&st, m.ino, S_IFDIR | (md & 07777), &c, 4096, 0);
	return finish_new(b, req, parent, name, &c, &st, "mkdir");
}

bool fuse_behind_symlink(struct fuse_behind *b, fuse_req_t req, const char *target, uint64_t parent,
			 const char *name)
{
	Fspb__Command c;
	Fspb__Symlink s = FSPB__SYMLINK__INIT;
	struct stat st;
	uint32_t md = S_IFLNK | 0777;
	size_t len = strlen(target);

	/* The results apply.c gives a bad target are left to it. */
	if (!bh_behind_on(b) || len == 0 || len >= PATH_MAX)
		return false;
	enum new_start started = start_new(b, req, parent, &c, &s.ino, &md);
	if (started != NEW_READY)
		return started == NEW_ANSWERED;
	s.parent = parent;
	s.name = (char *)name;
	s.target = (char *)target;
	c.op_case = FSPB__COMMAND__OP_SYMLINK;
	c.symlink = &s;
	predict_new(&st, s.ino, S_IFLNK | 0777, &c, (off_t)len, 0);
	return finish_new(b, req, parent, name, &c, &st, "symlink");
}

bool fuse_behind_remove(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
			bool dir)
{
	Fspb__Command c;
	Fspb__Unlink u = FSPB__UNLINK__INIT;
	struct bh_dir *d, *child = NULL;
	struct bh_op *op;
	struct stat st;
	int rc;

	if (!bh_behind_on(b))
		return false;
	bh_begin(b);
	d = bh_dir_held(b, parent);
	if (!d) {
		bh_end(b);
		return false;
	}
	rc = bh_view_lookup(b, parent, name, &st);
	if (rc < 0 ||
	    (rc == 1 && dir && S_ISDIR(st.st_mode) && !(child = bh_dir_held(b, st.st_ino)))) {
		/* A directory this mount does not hold: another node may be
		 * changing it (synchronously, after a recall if needed). */
		bh_end(b);
		return false;
	}
	rc = rc == 0 ? ENOENT : 0;
	if (!rc && dir && !S_ISDIR(st.st_mode))
		rc = ENOTDIR;
	if (!rc && !dir && S_ISDIR(st.st_mode))
		rc = EISDIR;
	if (!rc && dir) {
		rc = bh_view_empty(b, st.st_ino);
		if (rc < 0) {
			bh_end(b);
			return false;
		}
		rc = rc ? 0 : ENOTEMPTY;
	}
	if (rc) {
		bh_end(b);
		fuse_reply_err(req, rc);
		return true;
	}
	ffs_cmd_init(&c, req);
	u.parent = parent;
	u.name = (char *)name;
	u.dir = dir;
	c.op_case = FSPB__COMMAND__OP_UNLINK;
	c.unlink = &u;
	op = bh_op_new(b, dir ? "rmdir" : "unlink", parent, name);
	if (!op || bh_op_touch(b, op, 0, d, name, NULL, st.st_ino, c.time_ns)) {
		if (op) {
			pthread_mutex_unlock(&b->mu);
			bh_op_done(op, 0);
			pthread_mutex_lock(&b->mu);
		}
		bh_end(b);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	if (child) {
		bh_op_nlink(b, op, d, -1);
		child->state = D_GONE; /* nothing more goes behind in it */
		bh_dir_put(b, child);
	}
	pthread_mutex_unlock(&b->mu);
	/* The file's own writes are proposed before (per-node order): they
	 * apply while it still has its name. */
	rc = bh_op_propose(b, op, &c);
	pthread_mutex_unlock(&b->order);
	fuse_reply_err(req, rc);
	return true;
}

/* Ends close behind for the open handles of ino (under b->mu). */
static void mark_moved(struct fuse_behind *b, uint64_t ino)
{
	for (struct bh_fh *h = b->fhs; h; h = h->next)
		if (h->ino == ino)
			h->moved = true;
}

bool fuse_behind_rename(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
			uint64_t newparent, const char *newname, unsigned flags)
{
	Fspb__Command c;
	Fspb__Rename r = FSPB__RENAME__INIT;
	struct bh_dir *d1, *d2;
	struct bh_op *op;
	struct stat src, dst;
	int rc, have_dst;

	/* Files only, plain or NOREPLACE: directories (subtree checks) and
	 * exchanges stay synchronous. */
	if (!bh_behind_on(b) || (flags & ~(unsigned)RENAME_NOREPLACE))
		return false;
	bh_begin(b);
	d1 = bh_dir_held(b, parent);
	d2 = bh_dir_held(b, newparent);
	if (!d1 || !d2) {
		bh_end(b);
		return false;
	}
	rc = bh_view_lookup(b, parent, name, &src);
	have_dst = bh_view_lookup(b, newparent, newname, &dst);
	if (rc < 0 || have_dst < 0 || (rc == 1 && S_ISDIR(src.st_mode)) ||
	    (have_dst == 1 && S_ISDIR(dst.st_mode))) {
		bh_end(b);
		return false;
	}
	rc = rc == 0 ? ENOENT : name_result(newname);
	if (!rc && have_dst && (flags & RENAME_NOREPLACE))
		rc = EEXIST;
	if (!rc && have_dst && dst.st_ino == src.st_ino) {
		/* Two names of one file: POSIX says do nothing (nor do we). */
		bh_end(b);
		fuse_reply_err(req, 0);
		return true;
	}
	if (rc) {
		bh_end(b);
		fuse_reply_err(req, rc);
		return true;
	}
	ffs_cmd_init(&c, req);
	r.parent = parent;
	r.name = (char *)name;
	r.new_parent = newparent;
	r.new_name = (char *)newname;
	r.flags = flags;
	c.op_case = FSPB__COMMAND__OP_RENAME;
	c.rename = &r;
	/* The moved file's ctime changes with the rename. */
	src.st_ctim.tv_sec = c.time_ns / 1000000000;
	src.st_ctim.tv_nsec = c.time_ns % 1000000000;
	op = bh_op_new(b, "rename", parent, name);
	if (!op || bh_op_touch(b, op, 0, d1, name, NULL, src.st_ino, c.time_ns) ||
	    bh_op_touch(b, op, 1, d2, newname, &src, have_dst ? dst.st_ino : 0, c.time_ns)) {
		if (op) {
			pthread_mutex_unlock(&b->mu);
			bh_op_done(op, 0);
			pthread_mutex_lock(&b->mu);
		}
		bh_end(b);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	/* Its handles' closes wait from now on: it may be found through
	 * newparent, which another mount may have recalled meanwhile. */
	mark_moved(b, src.st_ino);
	pthread_mutex_unlock(&b->mu);
	rc = bh_op_propose(b, op, &c);
	pthread_mutex_unlock(&b->order);
	fuse_reply_err(req, rc);
	return true;
}

/* A handle of a file created behind: its descriptor is opened on first
 * use. Its address, with the top bit set, is the handle (fds are small). */
#define DEFERRED (1ULL << 63)

bool fuse_behind_create(struct fuse_behind *b, fuse_req_t req, uint64_t parent, const char *name,
			mode_t mode, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = b->fs;
	Fspb__Command c;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	struct fuse_entry_param e;
	struct bh_dir *d;
	struct bh_op *op;
	struct bh_fh *h;
	struct stat st, old;
	uint32_t md = S_IFREG | (mode & 07777);
	int rc;

	if (!bh_behind_on(b) || !ffs_ids_known_now(fs))
		return false;
	bh_begin(b);
	d = bh_dir_held(b, parent);
	rc = d ? bh_view_lookup(b, parent, name, &old) : -1;
	/* An existing name without O_EXCL opens what is there: the
	 * synchronous way (it waits for this mount's pending commands). */
	if (rc < 0 || (rc == 1 && !(fi->flags & O_EXCL))) {
		bh_end(b);
		return false;
	}
	rc = rc ? EEXIST : name_result(name);
	if (rc) {
		bh_end(b);
		fuse_reply_err(req, rc);
		return true;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		bh_end(b);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	if (ffs_new_node_cmd(fs, req, parent, &c, &m.ino, &md) < 0) {
		bh_end(b);
		free(h);
		return true;
	}
	m.parent = parent;
	m.name = (char *)name;
	m.mode = md;
	m.exclusive = (fi->flags & O_EXCL) != 0;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	predict_new(&st, m.ino, S_IFREG | (md & 07777), &c, 0, 0);
	op = bh_op_new(b, "create", parent, name);
	if (!op || bh_op_touch(b, op, 0, d, name, &st, m.ino, c.time_ns)) {
		if (op) {
			pthread_mutex_unlock(&b->mu);
			bh_op_done(op, 0);
			pthread_mutex_lock(&b->mu);
		}
		bh_end(b);
		free(h);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	h->dir = parent;
	h->epoch = d->epoch;
	h->mark = fs_node_unit_begin(fs->fsn);
	pthread_mutex_unlock(&b->mu);
	rc = bh_op_propose(b, op, &c);
	pthread_mutex_unlock(&b->order);
	if (rc) {
		fs_node_unit_end(fs->fsn, h->mark);
		free(h);
		fuse_reply_err(req, rc);
		return true;
	}
	h->ino = m.ino;
	h->fd = -1;
	pthread_mutex_lock(&b->mu);
	h->next = b->fhs;
	if (b->fhs)
		b->fhs->prev = h;
	b->fhs = h;
	pthread_mutex_unlock(&b->mu);
	fi->fh = (uint64_t)(uintptr_t)h | DEFERRED;
	fi->keep_cache = 0;
	ffs_direct_writes(fi); /* as ffs_open */
	ffs_fill_entry(fs, &e, &st);
	ffs_open_inc(fs, m.ino, -1); /* not an orphan: counted */
	fuse_inval_ref(fs->inv, m.ino, 1);
	if (fuse_reply_create(req, &e, fi) != 0) {
		fuse_inval_unref(fs->inv, m.ino, 1);
		ffs_open_dec(fs, m.ino);
		fuse_behind_close(b, fi->fh);
	}
	return true;
}

int fuse_behind_fd(struct fuse_behind *b, uint64_t fh)
{
	struct bh_fh *h;
	int fd;

	if (!(fh & DEFERRED))
		return (int)fh;
	h = (struct bh_fh *)(uintptr_t)(fh & ~DEFERRED);
	pthread_mutex_lock(&b->mu);
	if (h->fd < 0 && bh_ino_busy(b, h->ino, false))
		bh_flush_held(b);
	while (h->fd < 0 && bh_ino_busy(b, h->ino, false))
		pthread_cond_wait(&b->cv, &b->mu);
	if (h->fd < 0)
		h->fd = sm_open_fd(b->fs->sm, h->ino);
	fd = h->fd;
	if (fd < 0)
		h->fd = -1;
	pthread_mutex_unlock(&b->mu);
	return fd;
}

void fuse_behind_close(struct fuse_behind *b, uint64_t fh)
{
	struct bh_fh *h;

	if (!(fh & DEFERRED)) {
		close((int)fh);
		return;
	}
	h = (struct bh_fh *)(uintptr_t)(fh & ~DEFERRED);
	fs_node_unit_end(b->fs->fsn, h->mark); /* released without a flush */
	pthread_mutex_lock(&b->mu);
	if (h->prev)
		h->prev->next = h->next;
	else
		b->fhs = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&b->mu);
	if (h->fd >= 0)
		close(h->fd);
	free(h);
}

/* A file's predicted attributes with what this mount's writes in flight
 * leave (apply.c: each write sets the size it reaches, mtime and ctime). */
static void with_writes(const struct stat *base, uint64_t wend, int64_t wt, struct stat *st)
{
	int64_t mt = base->st_mtim.tv_sec * 1000000000LL + base->st_mtim.tv_nsec;

	*st = *base;
	if ((off_t)wend > st->st_size)
		st->st_size = (off_t)wend;
	if (wt > mt) {
		st->st_mtim.tv_sec = st->st_ctim.tv_sec = wt / 1000000000;
		st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = wt % 1000000000;
	}
}

/* The attributes of directory ino for a setattr answered behind: one this
 * mount holds (nobody else can remove it: apply.c refuses to remove a
 * directory another node holds), with nothing of its own pending but a
 * setattr answered so (a mkdir still pending: synchronous). tar x sets
 * every directory's times, owner and mode when it is done with it: three
 * commit rounds each, synchronously. Under b->mu: true with *st as
 * fuse_behind_getattr would give it, or false. */
static bool dir_view(struct fuse_behind *b, uint64_t ino, struct bh_ino *in, struct stat *st)
{
	struct bh_dir *d = bh_dir_held(b, ino);
	bool from_set = in && in->pending;

	if (!d)
		return false;
	if (from_set) {
		/* The answer to that setattr, which applies before this one. */
		if (!in->dir_st || !in->set_op || in->pending != 1)
			return false;
		*st = in->st;
	} else if (sm_getattr(b->fs->sm, ino, st) != 0 || !S_ISDIR(st->st_mode)) {
		return false;
	}
	/* Entry changes pending in it: their time (the last one's) and link
	 * count, as fuse_behind_getattr shows them; after a setattr answered
	 * behind only those made since (which apply after it). */
	if (d->pending && (!from_set || d->mtime_ns > st->st_ctim.tv_sec * 1000000000LL +
							  st->st_ctim.tv_nsec)) {
		st->st_mtim.tv_sec = st->st_ctim.tv_sec = d->mtime_ns / 1000000000;
		st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = d->mtime_ns % 1000000000;
	}
	if (d->pending && d->nlink_ops)
		st->st_nlink = d->nlink;
	return true;
}

/* Under the order lock and b->mu: merges setattr c into in's previous one
 * if that is still held back and the newest proposal of this node (tar x
 * sets a file's times, owner and mode one call after the other: one log
 * entry, journal record and ctime write on every node instead of three).
 * The merged command applies exactly as the two would one after the other
 * (cmd_merge.h); the first one's completion reports its result. */
static bool merge_held(struct fuse_behind *b, struct bh_ino *in, Fspb__Command *c, bool dir)
{
	Fspb__SetAttr m;
	Fspb__Command mc;

	if (!in->set_op || !setattr_mergeable(&in->set, c->setattr))
		return false;
	m = in->set;
	setattr_merge(&m, c->setattr, dir);
	mc = *c;
	mc.setattr = &m;
	mc.node = b->self;
	mc.behind = true;
	if (!fs_node_amend(b->fs->fsn, bh_op_done, in->set_op, &mc))
		return false;
	in->set = m;
	return true;
}

bool fuse_behind_setattr(struct fuse_behind *b, fuse_req_t req, uint64_t ino,
			 const struct stat *attr, unsigned valid)
{
	struct fuse_fs *fs = b->fs;
	Fspb__Command c;
	Fspb__SetAttr s = FSPB__SET_ATTR__INIT;
	struct bh_ino *in;
	struct bh_op *op;
	struct stat st;
	uint64_t wend;
	int64_t wt;
	int rc;

	if (!bh_behind_on(b) || (valid & SM_SET_SIZE))
		return false;
	bh_begin(b);
	in = bh_ino_find(b, ino);
	if (in && in->have_st && fuse_write_pending(fs->wr, ino, &wend, &wt)) {
		with_writes(&in->st, wend, wt, &st);
	} else if (!dir_view(b, ino, in, &st)) {
		bh_end(b);
		return false;
	}
	if ((valid & SM_SET_MODE) && S_ISLNK(st.st_mode)) {
		bh_end(b);
		fuse_reply_err(req, EOPNOTSUPP);
		return true;
	}
	ffs_cmd_init(&c, req);
	s.ino = ino;
	s.valid = valid;
	s.mode = attr->st_mode & 07777;
	s.uid = attr->st_uid;
	s.gid = attr->st_gid;
	s.atime_ns = (valid & SM_SET_ATIME_NOW)
			 ? c.time_ns
			 : attr->st_atim.tv_sec * 1000000000LL + attr->st_atim.tv_nsec;
	s.mtime_ns = (valid & SM_SET_MTIME_NOW)
			 ? c.time_ns
			 : attr->st_mtim.tv_sec * 1000000000LL + attr->st_mtim.tv_nsec;
	/* The same command without its clock in the NOW bits, so that it
	 * can be merged with the next (the ctime is the merged one's). */
	setattr_explicit(&s, c.time_ns);
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = &s;
	/* apply.c's plan_setattr and exec_setattr, on the predicted state. */
	if (valid & SM_SET_MODE) {
		st.st_mode = (st.st_mode & S_IFMT) | (s.mode & 07777);
	} else if ((valid & (SM_SET_UID | SM_SET_GID)) && !S_ISDIR(st.st_mode)) {
		st.st_mode = sm_drop_setid(st.st_mode);
	}
	if (valid & SM_SET_UID)
		st.st_uid = s.uid;
	if (valid & SM_SET_GID)
		st.st_gid = s.gid;
	if (valid & (SM_SET_ATIME | SM_SET_ATIME_NOW)) {
		st.st_atim.tv_sec = s.atime_ns / 1000000000;
		st.st_atim.tv_nsec = s.atime_ns % 1000000000;
	}
	if (valid & (SM_SET_MTIME | SM_SET_MTIME_NOW)) {
		st.st_mtim.tv_sec = s.mtime_ns / 1000000000;
		st.st_mtim.tv_nsec = s.mtime_ns % 1000000000;
	}
	st.st_ctim.tv_sec = c.time_ns / 1000000000;
	st.st_ctim.tv_nsec = c.time_ns % 1000000000;
	if (in && merge_held(b, in, &c, S_ISDIR(st.st_mode))) {
		in->st = st;
		bh_end(b);
		fuse_reply_attr(req, &st, fs->cfg.timeout);
		return true;
	}
	op = bh_op_new(b, "setattr", ino, "");
	if (op && !in && !(in = bh_ino_get(b, ino))) {
		pthread_mutex_unlock(&b->mu);
		bh_op_done(op, 0);
		pthread_mutex_lock(&b->mu);
		op = NULL;
	}
	if (!op) {
		bh_end(b);
		fuse_reply_err(req, ENOMEM);
		return true;
	}
	in->dir_st = S_ISDIR(st.st_mode);
	in->pending++;
	op->inos[0] = in;
	in->set_op = op;
	in->set = s;
	/* Later predictions start from here; the writes in flight are
	 * counted again then (the size only grows, the later clock wins). */
	in->st = st;
	pthread_mutex_unlock(&b->mu);
	rc = bh_op_propose(b, op, &c);
	pthread_mutex_unlock(&b->order);
	if (rc)
		fuse_reply_err(req, rc);
	else
		fuse_reply_attr(req, &st, fs->cfg.timeout);
	return true;
}

void fuse_behind_forget(struct fuse_behind *b, uint64_t ino)
{
	struct bh_ino *in;

	pthread_mutex_lock(&b->mu);
	if ((in = bh_ino_find(b, ino)))
		in->have_st = false;
	/* A link gives it a name elsewhere: closes wait from now on. */
	mark_moved(b, ino);
	pthread_mutex_unlock(&b->mu);
}

bool fuse_behind_fresh(struct fuse_behind *b, uint64_t ino)
{
	struct bh_ino *in;
	bool fresh;

	pthread_mutex_lock(&b->mu);
	in = bh_ino_find(b, ino);
	fresh = in && in->have_st;
	pthread_mutex_unlock(&b->mu);
	return fresh;
}

/* ---- reads ---- */

/* Under b->mu: until no pending command changes ino (and, with entries,
 * its entries), the held proposals sent out first so none waits for the
 * plug's linger (fs_plug.h). */
static void wait_ino_idle(struct fuse_behind *b, uint64_t ino, bool entries)
{
	if (bh_ino_busy(b, ino, entries))
		bh_flush_held(b);
	while (bh_ino_busy(b, ino, entries))
		pthread_cond_wait(&b->cv, &b->mu);
}

bool fuse_behind_name(struct fuse_behind *b, uint64_t parent, const char *name)
{
	struct bh_name *n;
	bool held;

	pthread_mutex_lock(&b->mu);
	if ((n = bh_name_find(b, parent, name)) && n->pending)
		bh_flush_held(b);
	while ((n = bh_name_find(b, parent, name)) && n->pending)
		pthread_cond_wait(&b->cv, &b->mu);
	held = bh_dir_held(b, parent) != NULL;
	pthread_mutex_unlock(&b->mu);
	return held;
}

void fuse_behind_wait(struct fuse_behind *b, uint64_t ino)
{
	pthread_mutex_lock(&b->mu);
	wait_ino_idle(b, ino, true);
	pthread_mutex_unlock(&b->mu);
}

bool fuse_behind_predict(struct fuse_behind *b, uint64_t ino, struct stat *st)
{
	struct bh_ino *in;
	uint64_t wend;
	int64_t wt;
	bool ok;

	pthread_mutex_lock(&b->mu);
	in = bh_ino_find(b, ino);
	ok = in && in->have_st && fuse_write_pending(b->fs->wr, ino, &wend, &wt);
	if (ok)
		with_writes(&in->st, wend, wt, st);
	pthread_mutex_unlock(&b->mu);
	return ok;
}

int fuse_behind_getattr(struct fuse_behind *b, uint64_t ino, struct stat *st)
{
	struct bh_dir *d;
	int rc;

	pthread_mutex_lock(&b->mu);
	wait_ino_idle(b, ino, false);
	/* The kernel asks for a directory's attributes before each change
	 * in it (default_permissions, after the last change dropped them):
	 * answered from the view, or every create would wait for the last. */
	rc = sm_getattr(b->fs->sm, ino, st);
	d = bh_dir_find(b, ino);
	if (rc == 0 && d && d->pending) {
		st->st_mtim.tv_sec = st->st_ctim.tv_sec = d->mtime_ns / 1000000000;
		st->st_mtim.tv_nsec = st->st_ctim.tv_nsec = d->mtime_ns % 1000000000;
		if (d->nlink_ops)
			st->st_nlink = d->nlink;
	}
	pthread_mutex_unlock(&b->mu);
	return rc;
}

static int cmp_id(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int fuse_behind_busy(struct fuse_behind *b, uint64_t **out, size_t *n)
{
	size_t cap = 0;

	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&b->mu);
	if (b->count == 0) /* the usual case: nothing pending, nothing to scan */
		goto done;
	for (unsigned i = 0; i < BUCKETS; i++) {
		for (struct bh_ino *in = b->inos[i]; in; in = in->next)
			cap += in->pending > 0;
		for (struct bh_dir *d = b->dirs[i]; d; d = d->next)
			cap += d->pending > 0;
	}
	if (cap && !(*out = malloc(cap * sizeof(**out)))) {
		pthread_mutex_unlock(&b->mu);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < BUCKETS; i++) {
		for (struct bh_ino *in = b->inos[i]; in; in = in->next)
			if (in->pending)
				(*out)[(*n)++] = in->id;
		for (struct bh_dir *d = b->dirs[i]; d; d = d->next)
			if (d->pending)
				(*out)[(*n)++] = d->id;
	}
done:
	pthread_mutex_unlock(&b->mu);
	if (*n > 1)
		qsort(*out, *n, sizeof(**out), cmp_id);
	return 0;
}

int fuse_behind_sync(struct fuse_behind *b, bool take)
{
	uint64_t mark;
	int err;

	pthread_mutex_lock(&b->mu);
	mark = b->next_seq;
	if (b->head && b->head->seq < mark)
		bh_flush_held(b);
	while (b->head && b->head->seq < mark)
		pthread_cond_wait(&b->cv, &b->mu);
	err = b->err;
	if (take)
		b->err = 0;
	pthread_mutex_unlock(&b->mu);
	return err;
}

bool fuse_behind_made(uint64_t fh)
{
	return (fh & DEFERRED) != 0;
}

bool fuse_behind_close_early(struct fuse_behind *b, uint64_t fh)
{
	struct bh_fh *h;
	struct bh_dir *d;
	bool early;

	if (!(fh & DEFERRED) || !fs_node_close_behind(b->fs->fsn))
		return false;
	if (!bh_behind_on(b) || !fs_node_progressing(b->fs->fsn, CLOSE_LEASE_MS)) {
		pthread_mutex_lock(&b->mu);
		b->flushes++;
		pthread_mutex_unlock(&b->mu);
		return false;
	}
	h = (struct bh_fh *)(uintptr_t)(fh & ~DEFERRED);
	pthread_mutex_lock(&b->mu);
	/* Still held (not even recalled: the Return, proposed only after
	 * the recall applied here, then comes behind every command this
	 * handle proposed), under the same delegation: every other mount
	 * that found the file recalled it first (fuse_behind_fence). */
	d = bh_dir_held(b, h->dir);
	early = !h->moved && d && d->epoch == h->epoch;
	pthread_mutex_unlock(&b->mu);
	/* Whole or absent on every node: the file's commands since its
	 * creation go out in one entry, or its close waits for their commit
	 * (fs/fuse_close.h). Outside b->mu: a failed start completes here. */
	if (early)
		early = fs_node_flush_unit(b->fs->fsn, h->mark);
	pthread_mutex_lock(&b->mu);
	b->flushes++;
	b->flushed_early += early;
	pthread_mutex_unlock(&b->mu);
	return early;
}

int fuse_behind_error(struct fuse_behind *b, bool take)
{
	int err;

	pthread_mutex_lock(&b->mu);
	err = b->err;
	if (take)
		b->err = 0;
	pthread_mutex_unlock(&b->mu);
	return err;
}
