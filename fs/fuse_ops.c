/* fuse_ops.c — FUSE low-level operations on names and attributes, and the
 * operations table: reads are served from the local tree by id; every
 * mutation becomes an fspb.Command proposed through Raft, and the request is
 * answered when this node applied it (with the command's result, the same on
 * every node). File contents are in fuse_io.c; writes are answered before
 * they apply (fuse_write.h), so every operation here that names a file
 * waits for this mount's writes of it first. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs_node.h"
#include "fuse_behind.h"
#include "fuse_close.h"
#include "fuse_fs_impl.h"
#include "fuse_inval.h"
#include "fuse_write.h"
#include "runtime_log.h"
#include "sm.h"
#include "test_gate.h"

/* ---- metadata ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fuse_fs *fs = userdata;
	int rc = fuse_write_new(fs->fsn, &fs->wr);

	/* init cannot fail a mount: end the session instead of serving
	 * writes with nowhere to track them. */
	if (rc < 0) {
		fprintf(stderr, "fuse: write tracker of the mount: %s\n", strerror(-rc));
		fuse_session_exit(fs->se);
	}
	rc = fuse_behind_new(fs, &fs->bh);
	if (rc < 0) {
		fprintf(stderr, "fuse: write-behind tracker of the mount: %s\n", strerror(-rc));
		fuse_session_exit(fs->se);
	}
	/* Truncation on open must be its own replicated setattr. */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_SPLICE_READ)
		conn->want &= ~FUSE_CAP_SPLICE_READ;
	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
}

/* After the session ended and the node stopped: no write can complete any
 * more. */
static void op_destroy(void *userdata)
{
	struct fuse_fs *fs = userdata;
	/* Requests still waiting for a retry are answered while the session
	 * is there to take the answers. */
	ffs_retry_stop(fs);

	fuse_write_free(fs->wr);
	fs->wr = NULL;
	fuse_behind_free(fs->bh);
	fs->bh = NULL;
}

/* The size and mtime this mount's writes of ino will make, before its
 * attributes are answered: waits for them (read-your-writes).
 * fuse_write_wait starts what the plug holds (fs_plug.h) only for an inode
 * with writes in flight: lookups and getattrs of directories come with
 * every mkdir, rename and unlink (the path walk, default_permissions), and
 * flushing there sent each write-behind command out as an entry of its
 * own instead of batches (2,000 mkdirs: 2,000 entries, 3,980 of 4,000
 * held commands started by a flush). */
static void wait_writes(struct fuse_fs *fs, uint64_t ino)
{
	fuse_write_wait(fs->wr, ino);
}

/* The entry's attributes are those getattr answers (the kernel caches
 * them as such): with this mount's writes (fuse_write.h) and its pending
 * write-behind changes of the object (a chmod of a file created behind, an
 * unlink of another of its names). */
static int entry_attrs(struct fuse_fs *fs, struct stat *st)
{
	uint64_t id = st->st_ino;

	if (fuse_behind_predict(fs->bh, id, st))
		return 0;
	wait_writes(fs, id);
	return fuse_behind_getattr(fs->bh, id, st);
}

/* Rounds of reply_entry's fence before it answers with what it read. */
#define SLIP_ROUNDS 8

/* Answers a lookup with st. A directory granted to another node after the
 * fences above read its attributes and before the kernel got them: the
 * grant's own invalidation (fuse_inval.c) skipped it, the kernel not
 * knowing it yet, and the kernel would keep attributes from before the
 * holder could answer a chown of it behind for its timeout, past an open's
 * barrier (review finding 3 of session 10). So the lookup count is taken
 * first — a grant applied after that finds the directory known and
 * invalidates it — then grants applied since grants (sampled before the
 * attributes were read) are looked for: the directory is fenced and read
 * again. A grant applied after this check finds the directory known and
 * queues its invalidation, which can reach the kernel before the kernel
 * made the inode from the reply (it answers ENOENT for an inode it does
 * not have yet): fuse_inval.c retries it until the kernel has it. */
static void reply_entry(struct fuse_fs *fs, fuse_req_t req, struct stat *st, uint64_t grants)
{
	struct fuse_entry_param e;
	uint32_t self = fs_node_id(fs->fsn);

	for (unsigned round = 0;; round++) {
		uint32_t holder;
		uint64_t epoch;
		int rc;

		fuse_inval_ref(fs->inv, st->st_ino, 1);
		if (!S_ISDIR(st->st_mode) || round == SLIP_ROUNDS ||
		    fuse_inval_grants(fs->inv) == grants ||
		    sm_deleg(fs->sm, st->st_ino, &holder, &epoch) < 0 || !holder ||
		    holder == self)
			break;
		fuse_inval_unref(fs->inv, st->st_ino, 1);
		grants = fuse_inval_grants(fs->inv);
		(void)fuse_behind_fence(fs->bh, st->st_ino);
		if ((rc = entry_attrs(fs, st)) < 0) {
			fuse_reply_err(req, -rc);
			return;
		}
	}
	fuse_inval_test_reply_gate(fs->inv);
	ffs_fill_entry(fs, &e, st);
	if (fuse_reply_entry(req, &e) != 0)
		fuse_inval_unref(fs->inv, st->st_ino, 1);
}

/* After a lookup of name in parent returned rc and *st: when it found a
 * directory whose fence brought in changes another node answered behind,
 * looks name up again (the new rc and *st); otherwise rc. */
static int fence_found_dir(struct fuse_fs *fs, fuse_ino_t parent, const char *name,
			   struct stat *st, int rc)
{
	if (rc == 0 && S_ISDIR(st->st_mode) && fuse_behind_fence(fs->bh, st->st_ino) > 0)
		return sm_lookup(fs->sm, parent, name, st);
	return rc;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_fs *fs = ffs_of(req);
	struct stat st;
	bool held;
	int rc;
	/* Before anything is read: reply_entry looks for grants since. */
	uint64_t grants = fuse_inval_grants(fs->inv);

	ffs_note_use(fs);
	if (fs->cfg.linearizable && (rc = ffs_barrier(fs))) {
		fuse_reply_err(req, rc);
		return;
	}
	/* This mount's pending changes of the name first; in a directory
	 * delegated to this node nobody else creates names. */
	held = fuse_behind_name(fs->bh, parent, name);
	rc = sm_lookup(fs->sm, parent, name, &st);
	/* close = behind: what another node closed behind in parent is
	 * applied here before the kernel gets an entry (fuse_close.h).
	 * Checked after the lookup: a grant and a create applied just
	 * before it are then seen, and the name looked up again. */
	if (!held && fuse_behind_fence(fs->bh, parent) > 0)
		rc = sm_lookup(fs->sm, parent, name, &st);
	/* A directory found is fenced too: its holder answers changes of
	 * the directory itself behind (chown, chmod, utimens: tar x's last
	 * word on each) and of its entries (its link count), which the
	 * parent's Return does not cover when another node holds the parent
	 * (fuzz.mixed, seed 62: n3 made b and chowned it, n1's lookup of b
	 * showed the old group). */
	rc = fence_found_dir(fs, parent, name, &st, rc);
	/* A name created elsewhere before this lookup began must be found
	 * (what a shell did on one mount is true on all when it returns): a
	 * miss waits until this node caught up, then looks again. */
	if (rc == -ENOENT && !fs->cfg.linearizable && !held) {
		int brc;

		/* Names another node's mount answered behind (write-behind,
		 * fuse_behind.h) may not be in the log yet: in a directory
		 * delegated to another node, recall it first, so the holder
		 * commits what it answered before its Return. Not while
		 * degraded (no quorum: a recall cannot commit either); a failed
		 * recall leaves the barrier to decide. */
		if (!atomic_load(&fs->degraded))
			(void)fuse_behind_recall(fs->bh, parent);
		brc = ffs_barrier(fs);

		if (brc) {
			fuse_reply_err(req, brc);
			return;
		}
		rc = sm_lookup(fs->sm, parent, name, &st);
		/* A directory found only now (made elsewhere just before) is
		 * fenced as one found at once: its maker holds it and may have
		 * answered a chown of it behind (mount.lookup_fence, case 4). */
		rc = fence_found_dir(fs, parent, name, &st, rc);
	}
	if (rc == 0)
		rc = entry_attrs(fs, &st);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	test_gate_wait(fs->test_lookup_gate);
	reply_entry(fs, req, &st, grants);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fuse_inval_unref(ffs_of(req)->inv, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		fuse_inval_unref(ffs_of(req)->inv, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = ffs_of(req);
	struct stat st;
	int rc;

	ffs_note_use(fs);
	if (fs->cfg.linearizable && (rc = ffs_barrier(fs))) {
		fuse_reply_err(req, rc);
		return;
	}
	(void)fi;
	if (fuse_behind_predict(fs->bh, ino, &st)) {
		fuse_reply_attr(req, &st, fs->cfg.timeout);
		return;
	}
	/* The size and mtime this mount's writes made. */
	wait_writes(fs, ino);
	rc = fuse_behind_getattr(fs->bh, ino, &st);
	/* A directory another node holds is fenced as a lookup's: the
	 * kernel asks here, not by a lookup, while it still has the entry
	 * from before the holder's grant (its attributes were dropped when
	 * the grant applied here: fuse_inval.c), and the holder may have
	 * answered a chown of it behind since (mount.lookup_fence, case 6). */
	if (rc == 0 && S_ISDIR(st.st_mode) && fuse_behind_fence(fs->bh, ino) > 0)
		rc = fuse_behind_getattr(fs->bh, ino, &st);
	if (rc == -ENOENT)
		rc = ffs_orphan_stat(fs, ino, &st);
	if (rc < 0) /* ESTALE: the kernel looks the path up again */
		fuse_reply_err(req, rc == -ENOENT ? ESTALE : -rc);
	else
		fuse_reply_attr(req, &st, fs->cfg.timeout);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	const unsigned known = SM_SET_MODE | SM_SET_UID | SM_SET_GID | SM_SET_SIZE | SM_SET_ATIME |
			       SM_SET_MTIME | SM_SET_ATIME_NOW | SM_SET_MTIME_NOW;
	Fspb__Command c;
	Fspb__SetAttr s = FSPB__SET_ATTR__INIT;
	unsigned valid = (unsigned)to_set & known;

	(void)fi;
	if (!valid) {
		/* ctime only (e.g. a touch of nothing) or flags we do not keep:
		 * the attributes as this mount's writes left them. */
		fuse_write_wait(ffs_of(req)->wr, ino);
		fuse_behind_wait(ffs_of(req)->bh, ino);
		ffs_reply_attr_id(ffs_of(req), req, ino);
		return;
	}
	/* A file this mount created write-behind, its creation pending:
	 * answered from the prediction (tar x, cp -a). */
	if (fuse_behind_setattr(ffs_of(req)->bh, req, ino, attr, valid))
		return;
	fuse_behind_forget(ffs_of(req)->bh, ino);
	/* A truncate or utimes lands after this mount's writes, as they were
	 * made; the attributes answered include them. */
	fuse_write_fence(ffs_of(req)->wr, ino);
	ffs_cmd_init(&c, req);
	s.ino = ino;
	s.valid = valid;
	s.mode = attr->st_mode & 07777;
	s.uid = attr->st_uid;
	s.gid = attr->st_gid;
	s.size = (uint64_t)attr->st_size;
	s.atime_ns = (valid & SM_SET_ATIME_NOW)
			 ? c.time_ns
			 : attr->st_atim.tv_sec * 1000000000LL + attr->st_atim.tv_nsec;
	s.mtime_ns = (valid & SM_SET_MTIME_NOW)
			 ? c.time_ns
			 : attr->st_mtim.tv_sec * 1000000000LL + attr->st_mtim.tv_nsec;
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = &s;
	ffs_submit(req, &c, RP_ATTR, ino, 0, NULL, 0);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n;

	fuse_behind_wait(ffs_of(req)->bh, ino);
	n = sm_readlink(ffs_of(req)->sm, ino, buf, sizeof(buf) - 1);

	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

/* Before a synchronous change of dir's entries: if another node holds it,
 * recall it (fuse_behind.h). Replies the error and returns false if that
 * failed. */
static bool reclaimed(fuse_req_t req, uint64_t dir)
{
	int rc = fuse_behind_reclaim(ffs_of(req)->bh, dir);

	if (rc)
		fuse_reply_err(req, rc);
	return rc == 0;
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct fuse_fs *fs = ffs_of(req);
	Fspb__Command c;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	uint64_t id;
	uint32_t md = mode;

	if (fuse_behind_mknod(fs->bh, req, parent, name, mode, rdev) || !reclaimed(req, parent))
		return;
	if (ffs_new_node_cmd(fs, req, parent, &c, &id, &md) < 0)
		return;
	m.parent = parent;
	m.name = (char *)name;
	m.ino = id;
	m.mode = md;
	m.rdev = rdev;
	m.exclusive = true;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	ffs_submit(req, &c, RP_ENTRY, id, 0, NULL, 0);
}

/* Tests (RAFTFS_TEST_HANG_MKDIR=NAME): a mkdir of NAME is never answered,
 * and the invalidation thread is sent to drop NAME in its parent, where it
 * waits for the directory lock the kernel holds for that mkdir: the state
 * in which a node killed with SIGKILL cannot finish dying unless its
 * guard aborts the connection (fuse_guard.h). */
static bool test_hang(struct fuse_fs *fs, fuse_ino_t parent, const char *name)
{
	const char *hang = fs->test_hang_mkdir;

	if (!hang || strcmp(hang, name) != 0)
		return false;
	rlog_write(RLOG_INFO, "test: mkdir %s is never answered", name);
	fuse_inval_entry(fs->inv, parent, name);
	return true;
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fuse_fs *fs = ffs_of(req);
	Fspb__Command c;
	Fspb__Mkdir m = FSPB__MKDIR__INIT;
	uint64_t id;
	uint32_t md = S_IFDIR | (mode & 07777);

	if (test_hang(fs, parent, name))
		return;
	if (fuse_behind_mkdir(fs->bh, req, parent, name, mode) || !reclaimed(req, parent))
		return;
	if (ffs_new_node_cmd(fs, req, parent, &c, &id, &md) < 0)
		return;
	m.parent = parent;
	m.name = (char *)name;
	m.ino = id;
	m.mode = md;
	/* A new directory is this node's to change behind (nobody else has
	 * seen it): tar x or mkdir -p under an undelegated one. */
	m.grant = fs_node_write_behind(fs->fsn) && !fs->cfg.linearizable;
	/* Every mount recalls it before looking in it if this one closes
	 * behind there (fuse_behind_fence). */
	m.grant_close_behind = m.grant && fs_node_close_behind(fs->fsn);
	c.op_case = FSPB__COMMAND__OP_MKDIR;
	c.mkdir = &m;
	ffs_submit(req, &c, RP_ENTRY, id, 0, NULL, 0);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct fuse_fs *fs = ffs_of(req);
	Fspb__Command c;
	Fspb__Symlink s = FSPB__SYMLINK__INIT;
	uint64_t id;
	uint32_t md = S_IFLNK | 0777;

	if (fuse_behind_symlink(fs->bh, req, target, parent, name) || !reclaimed(req, parent))
		return;
	if (ffs_new_node_cmd(fs, req, parent, &c, &id, &md) < 0)
		return;
	s.parent = parent;
	s.name = (char *)name;
	s.ino = id;
	s.target = (char *)target;
	c.op_case = FSPB__COMMAND__OP_SYMLINK;
	c.symlink = &s;
	ffs_submit(req, &c, RP_ENTRY, id, 0, NULL, 0);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	Fspb__Command c;
	Fspb__Link l = FSPB__LINK__INIT;

	if (!reclaimed(req, newparent))
		return;
	fuse_behind_forget(ffs_of(req)->bh, ino); /* its link count and ctime change */
	fuse_write_fence(ffs_of(req)->wr, ino);
	ffs_cmd_init(&c, req);
	l.ino = ino;
	l.new_parent = newparent;
	l.new_name = (char *)newname;
	c.op_case = FSPB__COMMAND__OP_LINK;
	c.link = &l;
	ffs_submit(req, &c, RP_ENTRY, ino, 0, NULL, 0);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name, bool dir)
{
	struct fuse_fs *fs = ffs_of(req);
	Fspb__Command c;
	Fspb__Unlink u = FSPB__UNLINK__INIT;
	struct stat st;
	uint64_t child = 0;

	if (fuse_behind_remove(fs->bh, req, parent, name, dir) || !reclaimed(req, parent))
		return;
	/* A directory delegated elsewhere cannot be removed under its holder. */
	if (dir && sm_lookup(fs->sm, parent, name, &st) == 0 && !reclaimed(req, st.st_ino))
		return;
	if (!dir && sm_lookup(fs->sm, parent, name, &st) == 0)
		child = st.st_ino;
	/* Its writes apply while it still has the name (and is not an orphan
	 * released under them). */
	if (child)
		fuse_write_fence(fs->wr, child);
	ffs_cmd_init(&c, req);
	u.parent = parent;
	u.name = (char *)name;
	u.dir = dir;
	c.op_case = FSPB__COMMAND__OP_UNLINK;
	c.unlink = &u;
	ffs_submit(req, &c, RP_NONE, 0, 0, NULL, child);
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
	struct fuse_fs *fs = ffs_of(req);
	Fspb__Command c;
	Fspb__Rename r = FSPB__RENAME__INIT;
	struct stat st;
	uint64_t replaced = 0;

	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (fuse_behind_rename(fs->bh, req, parent, name, newparent, newname, flags) ||
	    !reclaimed(req, parent) || !reclaimed(req, newparent))
		return;
	if (!(flags & RENAME_EXCHANGE) && sm_lookup(fs->sm, newparent, newname, &st) == 0 &&
	    S_ISDIR(st.st_mode) && !reclaimed(req, st.st_ino))
		return;
	if (!(flags & RENAME_EXCHANGE) && sm_lookup(fs->sm, newparent, newname, &st) == 0 &&
	    !S_ISDIR(st.st_mode))
		replaced = st.st_ino;
	/* Whoever finds the file under its new name finds this mount's
	 * writes in it; the replaced file's writes land before it goes. */
	if (sm_lookup(fs->sm, parent, name, &st) == 0 && !S_ISDIR(st.st_mode))
		fuse_write_fence(fs->wr, st.st_ino);
	if (replaced)
		fuse_write_fence(fs->wr, replaced);
	ffs_cmd_init(&c, req);
	r.parent = parent;
	r.name = (char *)name;
	r.new_parent = newparent;
	r.new_name = (char *)newname;
	r.flags = flags;
	c.op_case = FSPB__COMMAND__OP_RENAME;
	c.rename = &r;
	ffs_submit(req, &c, RP_NONE, 0, 0, NULL, replaced);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	int rc = sm_statfs(ffs_of(req)->sm, &st);

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
	fuse_behind_forget(ffs_of(req)->bh, ino);
	fuse_write_fence(ffs_of(req)->wr, ino);
	ffs_cmd_init(&c, req);
	s.ino = ino;
	s.name = (char *)name;
	s.value.data = (uint8_t *)value;
	s.value.len = size;
	s.flags = flags;
	c.op_case = FSPB__COMMAND__OP_SETXATTR;
	c.setxattr = &s;
	ffs_submit(req, &c, RP_NONE, 0, 0, NULL, 0);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fuse_fs *fs = ffs_of(req);
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
	if (fuse_behind_fresh(fs->bh, ino))
		n = -ENODATA; /* created behind, nothing set yet */
	else {
		fuse_behind_wait(fs->bh, ino);
		n = sm_getxattr(fs->sm, ino, name, buf, size);
	}
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
	struct fuse_fs *fs = ffs_of(req);
	char *buf = NULL;
	ssize_t n;

	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (fuse_behind_fresh(fs->bh, ino))
		n = 0;
	else {
		fuse_behind_wait(fs->bh, ino);
		n = sm_listxattr(fs->sm, ino, buf, size);
	}
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
	fuse_behind_forget(ffs_of(req)->bh, ino);
	fuse_write_fence(ffs_of(req)->wr, ino);
	ffs_cmd_init(&c, req);
	r.ino = ino;
	r.name = (char *)name;
	c.op_case = FSPB__COMMAND__OP_REMOVEXATTR;
	c.removexattr = &r;
	ffs_submit(req, &c, RP_NONE, 0, 0, NULL, 0);
}

/* default_permissions makes the kernel check modes; existence is ours. */
static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct stat st;
	int rc;

	(void)mask;
	fuse_behind_wait(ffs_of(req)->bh, ino);
	rc = sm_getattr(ffs_of(req)->sm, ino, &st);
	fuse_reply_err(req, rc < 0 ? -rc : 0);
}

/* ---- directories ---- */

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_fs *fs = ffs_of(req);
	struct stat st;
	int rc;

	if (fs->cfg.linearizable && (rc = ffs_barrier(fs))) {
		fuse_reply_err(req, rc);
		return;
	}
	/* A listing shows this mount's pending changes of the directory. */
	fuse_behind_wait(fs->bh, ino);
	rc = sm_getattr(fs->sm, ino, &st);
	if (rc < 0) {
		fuse_reply_err(req, rc == -ENOENT ? ESTALE : -rc);
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
	uint32_t self;	/* this node: a directory it holds keeps its attributes */
	uint64_t epoch; /* fuse_write_epoch before the directory was read */
	uint64_t *busy; /* sorted: objects with pending write-behind changes */
	size_t nbusy;
	/* The directories other nodes hold in this read, recalled together
	 * on the first look at one of them (fuse_behind_listed). */
	uint64_t *held;
	size_t nheld, held_cap;
	/* The entries this read hands attributes of, whose lookups the
	 * mount counts only once the listing is final (readdir_common);
	 * dirs: how many of them are directories. */
	uint64_t *given;
	size_t ngiven, given_cap, dirs;
	bool no_dir_attrs; /* the last round: no directory gets attributes */
};

/* Notes st, a directory another node holds, as sent in d's read. */
static void note_held(struct dir_fill *d, const struct stat *st)
{
	if (d->nheld == d->held_cap) {
		size_t cap = d->held_cap ? 2 * d->held_cap : 32;
		uint64_t *p = realloc(d->held, cap * sizeof(*p));

		if (!p)
			return; /* recalled on its own look, as without this */
		d->held = p;
		d->held_cap = cap;
	}
	d->held[d->nheld++] = st->st_ino;
}

/* Room for one more id in d->given; false when there is none (the entry
 * then goes without attributes). */
static bool given_room(struct dir_fill *d)
{
	if (d->ngiven == d->given_cap) {
		size_t cap = d->given_cap ? 2 * d->given_cap : 64;
		uint64_t *p = realloc(d->given, cap * sizeof(*p));

		if (!p)
			return false;
		d->given = p;
		d->given_cap = cap;
	}
	return true;
}

static int cmp_id(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int dir_add(void *arg, const char *name, const struct stat *st, uint32_t holder,
		   off_t next)
{
	struct dir_fill *d = arg;
	bool dot = !strcmp(name, ".") || !strcmp(name, "..");
	bool elsewhere = holder && holder != d->self; /* another node holds it */
	size_t need;

	if (!d->plus) {
		need =
		    fuse_add_direntry(d->req, d->buf + d->used, d->size - d->used, name, st, next);
	} else {
		struct fuse_entry_param e;

		/* Attributes from before this mount's writes would shrink the
		 * size the kernel knows, and those from before its pending
		 * write-behind commands (a chmod, an unlink of another name, a
		 * mkdir inside) would be cached instead of the view's, which
		 * getattr and lookup answer; the state machine's lock is held
		 * here, so no waiting (apply needs it): such an entry goes
		 * without attributes, as the dots do, and the kernel looks it
		 * up. So does a directory another node holds: its holder may
		 * have answered a chown of it behind, the kernel would keep the
		 * attributes read here for its timeout, past an open's barrier,
		 * and the lookup fences it (mount.lookup_fence, case 5). */
		bool stale = !dot && (fuse_write_busy(d->fs->wr, st->st_ino) ||
				      fuse_write_epoch(d->fs->wr) != d->epoch ||
				      elsewhere ||
				      (d->no_dir_attrs && S_ISDIR(st->st_mode)) ||
				      (d->nbusy && bsearch(&st->st_ino, d->busy, d->nbusy,
							   sizeof(*d->busy), cmp_id)) ||
				      !given_room(d));

		ffs_fill_entry(d->fs, &e, st);
		if (dot || stale) {
			/* No lookup count for these: the kernel skips them. */
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = st->st_ino;
			e.attr.st_mode = st->st_mode;
		}
		need = fuse_add_direntry_plus(d->req, d->buf + d->used, d->size - d->used, name, &e,
					      next);
		if (need <= d->size - d->used && !dot && !stale) {
			d->given[d->ngiven++] = st->st_ino;
			d->dirs += S_ISDIR(st->st_mode);
		}
	}
	if (need > d->size - d->used)
		return 1;
	d->used += need;
	if (elsewhere && S_ISDIR(st->st_mode) && !dot)
		note_held(d, st);
	return 0;
}

/* Counts (count) or drops the count of (!count) a lookup of every entry d
 * hands attributes of. */
static void count_given(struct dir_fill *d, bool count)
{
	for (size_t i = 0; i < d->ngiven; i++)
		if (count)
			fuse_inval_ref(d->fs->inv, d->given[i], 1);
		else
			fuse_inval_unref(d->fs->inv, d->given[i], 1);
}

/* Rounds of readdir_common's read before the last, which hands no
 * directory's attributes. */
#define LIST_ROUNDS 4

/* The listing's lookups are counted only after the final fence (which can
 * wait for a holder's round trip, seconds for a silent one), right before
 * the reply: a subdirectory granted to another node during the fence is
 * then not known to the mount, its grant's invalidation is not queued (a
 * known one the kernel did not have yet would be retried for up to 1 s,
 * fuse_inval.c's settle, holding the invalidation queue and every open
 * behind it, and then dropped, the reply's pre-grant attributes kept).
 * Grants applied since the read began (fuse_inval_grants, sampled before
 * it) are looked for after the count, as in reply_entry: the listing is
 * read again, and the last round hands no directory's attributes. A grant
 * applied after that look finds the directory counted and queues its
 * invalidation, which settle retries through the reply's short way. */
static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct dir_fill d = {
	    .fs = ffs_of(req),
	    .req = req,
	    .buf = malloc(size),
	    .size = size,
	    .plus = plus,
	    .self = fs_node_id(ffs_of(req)->fsn),
	    .epoch = fuse_write_epoch(ffs_of(req)->wr),
	};
	int rc;

	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ffs_note_use(d.fs);
	fuse_behind_wait(d.fs->bh, ino);
	/* close = behind, as in lookup: before (the listing is complete) and
	 * after (a grant and a create applied meanwhile: the holder's closes
	 * before the recall are applied before the reply). */
	(void)fuse_behind_fence(d.fs->bh, ino);
	/* Taken before the read: a command made later is newer than the
	 * entries, and the kernel orders the answers (attr_version). */
	rc = plus ? fuse_behind_busy(d.fs->bh, &d.busy, &d.nbusy) : 0;
	for (unsigned round = 0; rc == 0; round++) {
		uint64_t grants = fuse_inval_grants(d.fs->inv);

		d.used = d.nheld = d.ngiven = d.dirs = 0;
		d.no_dir_attrs = round == LIST_ROUNDS;
		rc = sm_readdir_held(d.fs->sm, ino, off, plus, dir_add, &d);
		test_gate_wait(d.fs->test_list_gate);
		(void)fuse_behind_fence(d.fs->bh, ino);
		count_given(&d, true);
		if (!d.dirs || fuse_inval_grants(d.fs->inv) == grants)
			break;
		/* A grant applied meanwhile and attributes of a directory
		 * were handed: read again (its result decides, not this). */
		count_given(&d, false);
		rc = 0;
	}
	fuse_behind_listed(d.fs->bh, ino, d.held, d.nheld);
	if (rc < 0 && d.used == 0) {
		count_given(&d, false);
		fuse_reply_err(req, -rc);
	} else if (fuse_reply_buf(req, d.buf, d.used) != 0) {
		/* The kernel never got these (an interrupted request). */
		count_given(&d, false);
	}
	free(d.busy);
	free(d.held);
	free(d.given);
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

/* Synchronous directory changes are answered once applied, so committed;
 * write-behind ones (and, closing behind, the files closed so) are waited
 * for here, and their first failure reported. */
static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, fuse_close_sync_mount(ffs_of(req)));
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .destroy = op_destroy,
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
    .open = ffs_open,
    .read = ffs_read,
    .write = ffs_write,
    .flush = ffs_flush,
    .release = ffs_release,
    .fsync = ffs_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .access = op_access,
    .create = ffs_create,
    .fallocate = ffs_fallocate,
    .readdirplus = op_readdirplus,
    .copy_file_range = ffs_copy_file_range,
    .lseek = ffs_lseek,
};

const struct fuse_lowlevel_ops *fuse_fs_ops(void)
{
	return &ops;
}
