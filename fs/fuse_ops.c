/* fuse_ops.c — FUSE low-level operations: reads are served from the local
 * tree by id; every mutation becomes an fspb.Command proposed through Raft,
 * and the request is answered when this node applied it (with the command's
 * result, the same on every node). */
#define FUSE_USE_VERSION 314
#include "fuse_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_node.h"
#include "fuse_inval.h"
#include "sm.h"

/* The largest data one Write command carries: bounded Raft entries. */
#define WRITE_CHUNK (256u << 10)
/* The most copy_file_range copies per call (callers loop). */
#define COPY_MAX (8u << 20)

#define OPEN_BUCKETS 1024

/* Handles open on this mount, per id: an unlinked file is released only when
 * its last local handle closes. */
struct open_count {
	struct open_count *next;
	uint64_t id;
	unsigned count;
	int fd; /* a read fd of the file, for stat after a Release */
};

struct fuse_fs {
	struct fs_node *fsn;
	struct sm *sm;
	struct fuse_inval *inv;
	struct fuse_ops_cfg cfg;
	struct fuse_session *se;
	atomic_bool degraded; /* no quorum seen: reads do not wait for barriers */
	atomic_bool probing;  /* a background barrier is in flight */
	pthread_mutex_t mu;
	struct open_count *open[OPEN_BUCKETS];
};

int fuse_fs_new(struct fs_node *fsn, struct fuse_inval *inv, const struct fuse_ops_cfg *cfg,
		struct fuse_fs **out)
{
	struct fuse_fs *fs = calloc(1, sizeof(*fs));

	if (!fs)
		return -ENOMEM;
	fs->fsn = fsn;
	fs->sm = fs_node_sm(fsn);
	fs->inv = inv;
	fs->cfg = *cfg;
	pthread_mutex_init(&fs->mu, NULL);
	*out = fs;
	return 0;
}

void fuse_fs_free(struct fuse_fs *fs)
{
	if (!fs)
		return;
	for (size_t i = 0; i < OPEN_BUCKETS; i++)
		while (fs->open[i]) {
			struct open_count *o = fs->open[i];

			fs->open[i] = o->next;
			if (o->fd >= 0)
				close(o->fd);
			free(o);
		}
	pthread_mutex_destroy(&fs->mu);
	free(fs);
}

void fuse_fs_set_session(struct fuse_fs *fs, struct fuse_session *se)
{
	fs->se = se;
}

static struct fuse_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ---- open handles and orphans ---- */

static struct open_count **open_slot(struct fuse_fs *fs, uint64_t id)
{
	struct open_count **p = &fs->open[(id ^ (id >> 48)) % OPEN_BUCKETS];

	while (*p && (*p)->id != id)
		p = &(*p)->next;
	return p;
}

static void open_inc(struct fuse_fs *fs, uint64_t id, int fd)
{
	struct open_count **p;

	pthread_mutex_lock(&fs->mu);
	p = open_slot(fs, id);
	if (!*p && (*p = calloc(1, sizeof(**p)))) {
		(*p)->id = id;
		(*p)->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	}
	if (*p)
		(*p)->count++;
	pthread_mutex_unlock(&fs->mu);
}

/* Drops one handle; the count left. */
static unsigned open_dec(struct fuse_fs *fs, uint64_t id)
{
	struct open_count **p, *o;
	unsigned left = 0;

	pthread_mutex_lock(&fs->mu);
	p = open_slot(fs, id);
	o = *p;
	if (o && --o->count == 0) {
		*p = o->next;
		if (o->fd >= 0)
			close(o->fd);
		free(o);
	} else if (o) {
		left = o->count;
	}
	pthread_mutex_unlock(&fs->mu);
	return left;
}

/* Attributes of a file released while this mount holds it open (the orphan
 * rule): what its handles still read. */
static int orphan_stat(struct fuse_fs *fs, uint64_t id, struct stat *st)
{
	struct open_count *o;
	int rc = -ENOENT;

	pthread_mutex_lock(&fs->mu);
	o = *open_slot(fs, id);
	if (o && o->fd >= 0)
		rc = fstat(o->fd, st) < 0 ? -errno : 0;
	pthread_mutex_unlock(&fs->mu);
	if (rc == 0) {
		st->st_ino = id;
		st->st_nlink = 0;
	}
	return rc;
}

static bool is_open(struct fuse_fs *fs, uint64_t id)
{
	bool r;

	pthread_mutex_lock(&fs->mu);
	r = *open_slot(fs, id) != NULL;
	pthread_mutex_unlock(&fs->mu);
	return r;
}

static void ignore_done(void *arg, int err)
{
	(void)arg;
	(void)err;
}

/* The orphan rule: a file whose last name is gone is released by the mount
 * that closes its last local handle, or right away by the mount that removed
 * the last name when it holds no handle. (Handles on other mounts keep
 * reading through their fd; their writes then fail with ESTALE.) */
static void maybe_release(struct fuse_fs *fs, uint64_t id)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Release r = FSPB__RELEASE__INIT;
	struct stat st;

	if (!id || is_open(fs, id) || sm_getattr(fs->sm, id, &st) < 0 || st.st_nlink > 0 ||
	    S_ISDIR(st.st_mode))
		return;
	r.ino = id;
	c.time_ns = fs_node_now();
	c.op_case = FSPB__COMMAND__OP_RELEASE;
	c.release = &r;
	fs_node_propose(fs->fsn, &c, ignore_done, NULL);
}

/* ---- replies ---- */

static void fill_entry(struct fuse_fs *fs, struct fuse_entry_param *e, const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = st->st_ino;
	e->generation = 1;
	e->attr = *st;
	e->attr_timeout = fs->cfg.timeout;
	e->entry_timeout = fs->cfg.timeout;
}

static void reply_entry_st(struct fuse_fs *fs, fuse_req_t req, const struct stat *st)
{
	struct fuse_entry_param e;

	fill_entry(fs, &e, st);
	fuse_inval_ref(fs->inv, st->st_ino, 1);
	if (fuse_reply_entry(req, &e) != 0)
		fuse_inval_unref(fs->inv, st->st_ino, 1);
}

static void reply_attr_id(struct fuse_fs *fs, fuse_req_t req, uint64_t id)
{
	struct stat st;
	int rc = sm_getattr(fs->sm, id, &st);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs->cfg.timeout);
}

/* ---- pending mutations ---- */

enum reply_kind { RP_NONE, RP_ENTRY, RP_ATTR, RP_CREATE, RP_WRITE };

/* A request waiting for its command(s) to be applied. */
struct pending {
	struct fuse_fs *fs;
	fuse_req_t req;
	enum reply_kind kind;
	uint64_t id;         /* entry/attr/create: the object answered about */
	uint64_t parent;     /* entry/create: where the name is, if id is gone */
	char *name;          /* owned */
	uint64_t release;    /* after success: release it if it became an orphan */
	struct fuse_file_info fi;
	size_t count;        /* write: bytes */
	atomic_int parts;    /* commands still in flight */
	atomic_int err;      /* the first error of any part */
};

static struct pending *pending_new(fuse_req_t req, enum reply_kind kind)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p) {
		fuse_reply_err(req, ENOMEM);
		return NULL;
	}
	p->fs = fs_of(req);
	p->req = req;
	p->kind = kind;
	atomic_init(&p->parts, 1);
	return p;
}

static void finish(struct pending *p)
{
	struct fuse_fs *fs = p->fs;
	int err = atomic_load(&p->err);
	struct stat st;
	int rc;

	if (err) {
		/* A write to a file released by another mount (the orphan rule). */
		if (p->kind == RP_WRITE && err == ENOENT)
			err = ESTALE;
		fuse_reply_err(p->req, err);
		goto out;
	}
	switch (p->kind) {
	case RP_NONE:
		fuse_reply_err(p->req, 0);
		break;
	case RP_ATTR:
		reply_attr_id(fs, p->req, p->id);
		break;
	case RP_WRITE:
		fuse_reply_write(p->req, p->count);
		break;
	case RP_ENTRY:
	case RP_CREATE:
		rc = sm_getattr(fs->sm, p->id, &st);
		if (rc < 0 && p->name)
			rc = sm_lookup(fs->sm, p->parent, p->name, &st);
		if (rc < 0) {
			fuse_reply_err(p->req, -rc);
			break;
		}
		if (p->kind == RP_ENTRY) {
			reply_entry_st(fs, p->req, &st);
			break;
		}
		rc = sm_open_fd(fs->sm, st.st_ino);
		if (rc < 0) {
			fuse_reply_err(p->req, -rc);
			break;
		}
		{
			struct fuse_entry_param e;

			fill_entry(fs, &e, &st);
			p->fi.fh = (uint64_t)rc;
			open_inc(fs, st.st_ino, rc);
			fuse_inval_ref(fs->inv, st.st_ino, 1);
			if (fuse_reply_create(p->req, &e, &p->fi) != 0) {
				fuse_inval_unref(fs->inv, st.st_ino, 1);
				open_dec(fs, st.st_ino);
				close(rc);
			}
		}
		break;
	}
	if (p->release)
		maybe_release(fs, p->release);
out:
	free(p->name);
	free(p);
}

static void part_done(void *arg, int err)
{
	struct pending *p = arg;
	int zero = 0;

	if (err)
		atomic_compare_exchange_strong(&p->err, &zero, err);
	if (atomic_fetch_sub(&p->parts, 1) == 1)
		finish(p);
}

/* Proposes one more part of p (call with parts counting it already). */
static void propose_part(struct pending *p, const Fspb__Command *c)
{
	int rc = fs_node_propose(p->fs->fsn, c, part_done, p);

	if (rc)
		part_done(p, rc);
}

/* A command with the caller's identity and the proposer's clock. */
static void cmd_init(Fspb__Command *c, fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	fspb__command__init(c);
	c->uid = ctx->uid;
	c->gid = ctx->gid;
	c->time_ns = fs_node_now();
}

/* New objects in a set-gid directory take its group (and directories the
 * bit), as on a local filesystem. */
static void inherit_gid(struct fuse_fs *fs, uint64_t parent, Fspb__Command *c, uint32_t *mode)
{
	struct stat st;

	if (sm_getattr(fs->sm, parent, &st) == 0 && (st.st_mode & S_ISGID)) {
		c->gid = st.st_gid;
		if (S_ISDIR(*mode))
			*mode |= S_ISGID;
	}
}

static int new_id(struct fuse_fs *fs, fuse_req_t req, uint64_t *id)
{
	int rc = sm_alloc_id(fs->sm, id);

	if (rc < 0)
		fuse_reply_err(req, -rc);
	return rc;
}

/* Proposes a single command for req, answered as kind about id. */
static void submit(fuse_req_t req, Fspb__Command *c, enum reply_kind kind, uint64_t id,
		   uint64_t parent, const char *name, uint64_t release)
{
	struct pending *p = pending_new(req, kind);

	if (!p)
		return;
	p->id = id;
	p->parent = parent;
	p->release = release;
	if (name && !(p->name = strdup(name))) {
		free(p);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	propose_part(p, c);
}

/* ---- barriers ---- */

struct sync_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int err;
};

static void sync_done(void *arg, int err)
{
	struct sync_wait *w = arg;

	pthread_mutex_lock(&w->mu);
	w->done = true;
	w->err = err;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void probe_done(void *arg, int err)
{
	struct fuse_fs *fs = arg;

	if (!err)
		atomic_store(&fs->degraded, false);
	atomic_store(&fs->probing, false);
}

/* Waits (on this FUSE thread) until this node applied everything committed
 * before now. 0 or a positive errno.
 *
 * Without a quorum no barrier completes. Unless linearizable, reads must
 * keep working then: after one barrier timed out, the mount serves from its
 * local state without waiting (degraded) while one barrier at a time probes
 * in the background; the first that succeeds ends the degraded mode. */
static int barrier(struct fuse_fs *fs)
{
	struct sync_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
	int rc;

	if (!fs->cfg.linearizable && atomic_load(&fs->degraded)) {
		if (!atomic_exchange(&fs->probing, true) &&
		    fs_node_barrier(fs->fsn, probe_done, fs) != 0)
			atomic_store(&fs->probing, false);
		return 0;
	}
	rc = fs_node_barrier(fs->fsn, sync_done, &w);
	if (rc)
		return rc;
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	if (w.err == ETIMEDOUT && !fs->cfg.linearizable) {
		atomic_store(&fs->degraded, true);
		return 0;
	}
	/* The state machine failed here (it stopped applying): the frozen
	 * tree is still served to readers. */
	if (w.err == EIO && !fs->cfg.linearizable)
		return 0;
	return w.err;
}

/* ---- metadata ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Truncation on open must be its own replicated setattr. */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_SPLICE_READ)
		conn->want &= ~FUSE_CAP_SPLICE_READ;
	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_fs *fs = fs_of(req);
	struct stat st;
	int rc;

	if (fs->cfg.linearizable && (rc = barrier(fs))) {
		fuse_reply_err(req, rc);
		return;
	}
	rc = sm_lookup(fs->sm, parent, name, &st);
	/* A name created elsewhere before this lookup began must be found
	 * (what a shell did on one mount is true on all when it returns): a
	 * miss waits until this node caught up, then looks again. */
	if (rc == -ENOENT && !fs->cfg.linearizable) {
		int brc = barrier(fs);

		if (brc) {
			fuse_reply_err(req, brc);
			return;
		}
		rc = sm_lookup(fs->sm, parent, name, &st);
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		reply_entry_st(fs, req, &st);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fuse_inval_unref(fs_of(req)->inv, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		fuse_inval_unref(fs_of(req)->inv, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = fs_of(req);
	struct stat st;
	int rc;

	if (fs->cfg.linearizable && (rc = barrier(fs))) {
		fuse_reply_err(req, rc);
		return;
	}
	(void)fi;
	rc = sm_getattr(fs->sm, ino, &st);
	if (rc == -ENOENT)
		rc = orphan_stat(fs, ino, &st);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs->cfg.timeout);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	const unsigned known = SM_SET_MODE | SM_SET_UID | SM_SET_GID | SM_SET_SIZE |
			       SM_SET_ATIME | SM_SET_MTIME | SM_SET_ATIME_NOW | SM_SET_MTIME_NOW;
	Fspb__Command c;
	Fspb__SetAttr s = FSPB__SET_ATTR__INIT;
	unsigned valid = (unsigned)to_set & known;

	(void)fi;
	if (!valid) {
		/* ctime only (e.g. a touch of nothing) or flags we do not keep. */
		reply_attr_id(fs_of(req), req, ino);
		return;
	}
	cmd_init(&c, req);
	s.ino = ino;
	s.valid = valid;
	s.mode = attr->st_mode & 07777;
	s.uid = attr->st_uid;
	s.gid = attr->st_gid;
	s.size = (uint64_t)attr->st_size;
	s.atime_ns = (valid & SM_SET_ATIME_NOW) ? c.time_ns
						 : attr->st_atim.tv_sec * 1000000000LL +
							   attr->st_atim.tv_nsec;
	s.mtime_ns = (valid & SM_SET_MTIME_NOW) ? c.time_ns
						 : attr->st_mtim.tv_sec * 1000000000LL +
							   attr->st_mtim.tv_nsec;
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = &s;
	submit(req, &c, RP_ATTR, ino, 0, NULL, 0);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n = sm_readlink(fs_of(req)->sm, ino, buf, sizeof(buf) - 1);

	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	struct fuse_fs *fs = fs_of(req);
	Fspb__Command c;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	uint64_t id;
	uint32_t md = mode;

	if (new_id(fs, req, &id) < 0)
		return;
	cmd_init(&c, req);
	inherit_gid(fs, parent, &c, &md);
	m.parent = parent;
	m.name = (char *)name;
	m.ino = id;
	m.mode = md;
	m.rdev = rdev;
	m.exclusive = true;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	submit(req, &c, RP_ENTRY, id, 0, NULL, 0);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fuse_fs *fs = fs_of(req);
	Fspb__Command c;
	Fspb__Mkdir m = FSPB__MKDIR__INIT;
	uint64_t id;
	uint32_t md = S_IFDIR | (mode & 07777);

	if (new_id(fs, req, &id) < 0)
		return;
	cmd_init(&c, req);
	inherit_gid(fs, parent, &c, &md);
	m.parent = parent;
	m.name = (char *)name;
	m.ino = id;
	m.mode = md;
	c.op_case = FSPB__COMMAND__OP_MKDIR;
	c.mkdir = &m;
	submit(req, &c, RP_ENTRY, id, 0, NULL, 0);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct fuse_fs *fs = fs_of(req);
	Fspb__Command c;
	Fspb__Symlink s = FSPB__SYMLINK__INIT;
	uint64_t id;
	uint32_t md = S_IFLNK | 0777;

	if (new_id(fs, req, &id) < 0)
		return;
	cmd_init(&c, req);
	inherit_gid(fs, parent, &c, &md);
	s.parent = parent;
	s.name = (char *)name;
	s.ino = id;
	s.target = (char *)target;
	c.op_case = FSPB__COMMAND__OP_SYMLINK;
	c.symlink = &s;
	submit(req, &c, RP_ENTRY, id, 0, NULL, 0);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	Fspb__Command c;
	Fspb__Link l = FSPB__LINK__INIT;

	cmd_init(&c, req);
	l.ino = ino;
	l.new_parent = newparent;
	l.new_name = (char *)newname;
	c.op_case = FSPB__COMMAND__OP_LINK;
	c.link = &l;
	submit(req, &c, RP_ENTRY, ino, 0, NULL, 0);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name, bool dir)
{
	struct fuse_fs *fs = fs_of(req);
	Fspb__Command c;
	Fspb__Unlink u = FSPB__UNLINK__INIT;
	struct stat st;
	uint64_t child = 0;

	if (!dir && sm_lookup(fs->sm, parent, name, &st) == 0)
		child = st.st_ino;
	cmd_init(&c, req);
	u.parent = parent;
	u.name = (char *)name;
	u.dir = dir;
	c.op_case = FSPB__COMMAND__OP_UNLINK;
	c.unlink = &u;
	submit(req, &c, RP_NONE, 0, 0, NULL, child);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, false);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, true);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct fuse_fs *fs = fs_of(req);
	Fspb__Command c;
	Fspb__Rename r = FSPB__RENAME__INIT;
	struct stat st;
	uint64_t replaced = 0;

	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (!(flags & RENAME_EXCHANGE) && sm_lookup(fs->sm, newparent, newname, &st) == 0 &&
	    !S_ISDIR(st.st_mode))
		replaced = st.st_ino;
	cmd_init(&c, req);
	r.parent = parent;
	r.name = (char *)name;
	r.new_parent = newparent;
	r.new_name = (char *)newname;
	r.flags = flags;
	c.op_case = FSPB__COMMAND__OP_RENAME;
	c.rename = &r;
	submit(req, &c, RP_NONE, 0, 0, NULL, replaced);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	int rc = sm_statfs(fs_of(req)->sm, &st);

	(void)ino;
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_statfs(req, &st);
}

/* system.* names would act on the local tree (ACLs), not be replicated. */
static bool xattr_name_ok(const char *name)
{
	return strncmp(name, "system.", 7) != 0;
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	Fspb__Command c;
	Fspb__SetXattr s = FSPB__SET_XATTR__INIT;

	if (!xattr_name_ok(name)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	cmd_init(&c, req);
	s.ino = ino;
	s.name = (char *)name;
	s.value.data = (uint8_t *)value;
	s.value.len = size;
	s.flags = flags;
	c.op_case = FSPB__COMMAND__OP_SETXATTR;
	c.setxattr = &s;
	submit(req, &c, RP_NONE, 0, 0, NULL, 0);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fuse_fs *fs = fs_of(req);
	char *buf = NULL;
	ssize_t n;

	if (!xattr_name_ok(name)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = sm_getxattr(fs->sm, ino, name, buf, size);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (!size)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fuse_fs *fs = fs_of(req);
	char *buf = NULL;
	ssize_t n;

	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = sm_listxattr(fs->sm, ino, buf, size);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (!size)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	Fspb__Command c;
	Fspb__RemoveXattr r = FSPB__REMOVE_XATTR__INIT;

	if (!xattr_name_ok(name)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	cmd_init(&c, req);
	r.ino = ino;
	r.name = (char *)name;
	c.op_case = FSPB__COMMAND__OP_REMOVEXATTR;
	c.removexattr = &r;
	submit(req, &c, RP_NONE, 0, 0, NULL, 0);
}

/* default_permissions makes the kernel check modes; existence is ours. */
static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct stat st;
	int rc = sm_getattr(fs_of(req)->sm, ino, &st);

	(void)mask;
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

/* ---- directories ---- */

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = fs_of(req);
	struct stat st;
	int rc;

	if (fs->cfg.linearizable && (rc = barrier(fs))) {
		fuse_reply_err(req, rc);
		return;
	}
	rc = sm_getattr(fs->sm, ino, &st);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fi->fh = 0;
	fuse_reply_open(req, fi);
}

struct dir_fill {
	struct fuse_fs *fs;
	fuse_req_t req;
	char *buf;
	size_t size, used;
	bool plus;
};

static int dir_add(void *arg, const char *name, const struct stat *st, off_t next)
{
	struct dir_fill *d = arg;
	size_t need;

	if (!d->plus) {
		need = fuse_add_direntry(d->req, d->buf + d->used, d->size - d->used, name, st,
					 next);
	} else {
		struct fuse_entry_param e;
		bool dot = !strcmp(name, ".") || !strcmp(name, "..");

		fill_entry(d->fs, &e, st);
		if (dot) {
			/* No lookup count for these: the kernel skips them. */
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = st->st_ino;
			e.attr.st_mode = st->st_mode;
		}
		need = fuse_add_direntry_plus(d->req, d->buf + d->used, d->size - d->used, name,
					      &e, next);
		if (need <= d->size - d->used && !dot)
			fuse_inval_ref(d->fs->inv, st->st_ino, 1);
	}
	if (need > d->size - d->used)
		return 1;
	d->used += need;
	return 0;
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct dir_fill d = {fs_of(req), req, malloc(size), size, 0, plus};
	int rc;

	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = sm_readdir(d.fs->sm, ino, off, plus, dir_add, &d);
	if (rc < 0 && d.used == 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, d.buf, d.used);
	free(d.buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	readdir_common(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	readdir_common(req, ino, size, off, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

/* Every reply is sent once the command is applied on a quorum's logs
 * (fsynced there): nothing is left to sync. */
static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

/* ---- files ---- */

/* Without a writeback cache the kernel appends at the size it has cached,
 * and an invalidation does not make it ask again before a write: store an
 * empty range at the current end, which extends the size it knows. (Only
 * growth is learnt this way; a file shrunk elsewhere gets a hole.) */
static void refresh_size(fuse_req_t req, fuse_ino_t ino, int fd)
{
	struct fuse_bufvec empty = FUSE_BUFVEC_INIT(0);
	struct stat st;

	if (fstat(fd, &st) == 0 && st.st_size > 0)
		fuse_lowlevel_notify_store(fs_of(req)->se, ino, st.st_size, &empty, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = fs_of(req);
	uint64_t mark;
	int rc;

	/* Close-to-open: everything committed before this open is applied here
	 * and gone from the kernel's caches before the open is answered. */
	rc = barrier(fs);
	if (rc) {
		fuse_reply_err(req, rc);
		return;
	}
	mark = fuse_inval_attr_mark(fs->inv, ino);
	fuse_inval_wait(fs->inv, mark);
	rc = sm_open_fd(fs->sm, ino);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (fi->flags & O_APPEND)
		refresh_size(req, ino, rc);
	fi->fh = (uint64_t)rc;
	fi->keep_cache = 0;
	open_inc(fs, ino, rc);
	if (fuse_reply_open(req, fi) != 0) {
		open_dec(fs, ino);
		close(rc);
	}
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fuse_fs *fs = fs_of(req);
	Fspb__Command c;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	struct pending *p;
	uint64_t id;
	uint32_t md = S_IFREG | (mode & 07777);

	if (new_id(fs, req, &id) < 0)
		return;
	cmd_init(&c, req);
	inherit_gid(fs, parent, &c, &md);
	m.parent = parent;
	m.name = (char *)name;
	m.ino = id;
	m.mode = md;
	m.exclusive = (fi->flags & O_EXCL) != 0;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	p = pending_new(req, RP_CREATE);
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
	propose_part(p, &c);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
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
	struct pending *p = pending_new(req, RP_WRITE);
	size_t done = 0;

	if (!p)
		return;
	p->count = count;
	do {
		Fspb__Command c;
		Fspb__Write w = FSPB__WRITE__INIT;
		size_t n = size - done < WRITE_CHUNK ? size - done : WRITE_CHUNK;

		cmd_init(&c, req);
		w.ino = ino;
		w.offset = (uint64_t)off + done;
		w.data.data = (uint8_t *)data + done;
		w.data.len = n;
		c.op_case = FSPB__COMMAND__OP_WRITE;
		c.write = &w;
		done += n;
		atomic_fetch_add(&p->parts, 1);
		propose_part(p, &c);
	} while (done < size);
	part_done(p, 0); /* the initial count */
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)fi;
	write_data(req, ino, buf, size, off, size);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = fs_of(req);

	close((int)fi->fh);
	if (open_dec(fs, ino) == 0)
		maybe_release(fs, ino);
	fuse_reply_err(req, 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	Fspb__Command c;
	Fspb__Fallocate f = FSPB__FALLOCATE__INIT;

	(void)fi;
	cmd_init(&c, req);
	f.ino = ino;
	f.mode = mode;
	f.offset = (uint64_t)offset;
	f.length = (uint64_t)length;
	c.op_case = FSPB__COMMAND__OP_FALLOCATE;
	c.fallocate = &f;
	submit(req, &c, RP_NONE, 0, 0, NULL, 0);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	off_t r;

	(void)ino;
	r = lseek((int)fi->fh, off, whence);
	if (r < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_lseek(req, r);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
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

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsync,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.access = op_access,
	.create = op_create,
	.fallocate = op_fallocate,
	.readdirplus = op_readdirplus,
	.copy_file_range = op_copy_file_range,
	.lseek = op_lseek,
};

const struct fuse_lowlevel_ops *fuse_fs_ops(void)
{
	return &ops;
}
