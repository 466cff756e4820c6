// Applying commands to the local tree: a pure decision (plan) per op, then redo-safe steps (exec).
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "sm_impl.h"

// Largest file size and offset accepted (EFBIG above): below ext4's 16 TiB, the
// same on every node whatever its local filesystem.
#define MAX_FILE_SIZE (1ULL << 43)
// Bytes of user xattrs (each counted as 16 + name + value, rounded to 4) one
// object may hold: fits ext4's one xattr block beside our own xattrs, so a
// setxattr never fails locally where it succeeded elsewhere (ENOSPC result).
#define MAX_XATTR_SPACE 3072
#define MAX_XATTR_VALUE 65536
// ext4's link limit (EXT4_LINK_MAX), counting our index link: the user gets
// one less. A result, so a node on another filesystem cannot diverge.
#define MAX_LINKS 65000

#define ROUND4(n) (((n) + 3) & ~(size_t)3)

// ---- Helpers shared by plan and exec.

// A syscall failed where the tree must allow it: a local fault.
static int fault(const char *what, const char *path, int err)
{
	fprintf(stderr, "sm: %s %s: %s\n", what, path, strerror(err));
	return -err;
}

// The same for an object named by id (data ops on a cached fd).
static int fault_id(const char *what, uint64_t id, int err)
{
	fprintf(stderr, "sm: %s id %016llx: %s\n", what, (unsigned long long)id, strerror(err));
	return -err;
}

static struct timespec ns_to_ts(int64_t ns)
{
	struct timespec ts = {ns / 1000000000, ns % 1000000000};
	if (ts.tv_nsec < 0) {
		ts.tv_sec--;
		ts.tv_nsec += 1000000000;
	}
	return ts;
}

int apply_step(struct sm *sm)
{
	if (sm->crash_at > 0 && --sm->crash_at == 0)
		return -ECANCELED;
	return 0;
}

// ---- Objects by descriptor. A syscall on a path walks DATA/... again from
// the root (the id bucket, or a directory's whole path), and the apply of a
// small file made about ten of them on every node. Regular files and
// directories are changed through descriptors kept in sm->fds instead
// (files: their write fd; directories: an O_RDONLY one, for futimens,
// fsetxattr and the *at calls on their entries); ids are unique, so one
// table holds both. Symlinks and special files are still named by path.

// The cached descriptor of id, or -1.
static int cached_fd(struct sm *sm, uint64_t id)
{
	unsigned slot = (unsigned)(id % SM_FD_CACHE);
	return sm->fds[slot].fd >= 0 && sm->fds[slot].id == id ? sm->fds[slot].fd : -1;
}

// Keeps fd as id's descriptor (the table owns it from now on). It closes the
// descriptor it evicts: a descriptor got from the table is only good until
// the next write_fd, dir_fd or make_index_entry.
static void cache_fd(struct sm *sm, uint64_t id, int fd)
{
	unsigned slot = (unsigned)(id % SM_FD_CACHE);
	if (sm->fds[slot].fd >= 0)
		close(sm->fds[slot].fd);
	sm->fds[slot].id = id;
	sm->fds[slot].fd = fd;
}

// The cached write fd of regular file id (apply thread only).
static int write_fd(struct sm *sm, uint64_t id, int *fd)
{
	if ((*fd = cached_fd(sm, id)) >= 0)
		return 0;
	struct sm_path p;
	tree_index_path(sm, id, &p);
	int f = open(p.buf, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (f < 0)
		return fault("open for writing", p.buf, errno);
	cache_fd(sm, id, f);
	*fd = f;
	return 0;
}

// The cached descriptor of directory id (apply thread only).
static int dir_fd(struct sm *sm, uint64_t id, int *fd)
{
	if ((*fd = cached_fd(sm, id)) >= 0)
		return 0;
	struct sm_path p;
	int rc = tree_path(sm, id, &p);
	if (rc)
		return fault_id("resolve directory", id, -rc);
	int f = open(p.buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (f < 0)
		rc = fault("open directory", p.buf, errno);
	sm_path_release(&p);
	if (rc)
		return rc;
	cache_fd(sm, id, f);
	*fd = f;
	return 0;
}

// An object to change or stat: a cached descriptor (not the ref's to
// close) or its index path.
struct obj_ref {
	uint64_t id;
	int fd; // -1: use p
	struct sm_path p;
};

// Directories by descriptor (opened if need be: every entry change of a
// directory touches it), other objects by the descriptor they have in the
// cache (a file being written, just made) or else by path: opening a file
// only to set its ctime would cost a syscall more, not less.
static int ref_get(struct sm *sm, const struct sm_obj *o, struct obj_ref *r)
{
	r->id = o->id;
	r->p.fd = -1;
	if (o->type == S_IFDIR)
		return dir_fd(sm, o->id, &r->fd);
	if ((r->fd = cached_fd(sm, o->id)) < 0)
		tree_index_path(sm, o->id, &r->p);
	return 0;
}

static void ref_release(struct obj_ref *r)
{
	sm_path_release(&r->p);
}

// A syscall on r failed: a local fault, named by id or path.
static int ref_fault(const char *what, const struct obj_ref *r, int err)
{
	return r->fd >= 0 ? fault_id(what, r->id, err) : fault(what, r->p.buf, err);
}

static int ref_setxattr(const struct obj_ref *r, const char *name, const void *v, size_t len)
{
	return r->fd >= 0 ? fsetxattr(r->fd, name, v, len, 0) : lsetxattr(r->p.buf, name, v, len, 0);
}

static int ref_stat(const struct obj_ref *r, struct stat *st)
{
	return r->fd >= 0 ? fstat(r->fd, st) : lstat(r->p.buf, st);
}

// Sets mtime (and atime unless atime_ns is NULL) of r without following a
// symlink at the end.
static int set_times(const struct obj_ref *r, const int64_t *atime_ns, const int64_t *mtime_ns)
{
	struct timespec ts[2];
	ts[0].tv_sec = ts[1].tv_sec = 0;
	ts[0].tv_nsec = ts[1].tv_nsec = UTIME_OMIT;
	if (atime_ns)
		ts[0] = ns_to_ts(*atime_ns);
	if (mtime_ns)
		ts[1] = ns_to_ts(*mtime_ns);
	if (r->fd >= 0 ? futimens(r->fd, ts) : utimensat(AT_FDCWD, r->p.buf, ts, AT_SYMLINK_NOFOLLOW))
		return ref_fault("set times of", r, errno);
	return 0;
}

static int set_ctime(struct sm_obj *o, const struct obj_ref *r, int64_t t)
{
	if (ref_setxattr(r, SM_XATTR_CTIME, &t, sizeof(t)))
		return ref_fault("set ctime of", r, errno);
	__atomic_store_n(&o->ctime_ns, t, __ATOMIC_RELAXED);
	return 0;
}

// Gives a just-made object r atime, mtime and ctime t, with a crash point
// after each step (a redo sets the same times again). Not in the tables
// yet: the ctime goes to the xattr only.
static int stamp_new_times(struct sm *sm, const struct obj_ref *r, int64_t t)
{
	int rc = set_times(r, &t, &t);
	if (!rc && !(rc = apply_step(sm)) && ref_setxattr(r, SM_XATTR_CTIME, &t, sizeof(t)))
		rc = ref_fault("set ctime of", r, errno);
	if (!rc)
		rc = apply_step(sm);
	return rc;
}

// Gives r owner uid:gid (-1: keep that one; both -1: no chown) and then,
// unless mode < 0 or r is a symlink, permission bits mode; st is r's stat
// from before. A chown or chmod to what r already has is skipped: a
// syscall and an inode update on every node for nothing (tar sets each
// file's owner and mode to what its create gave it, and a node makes an
// object with the caller's mode and, for root, owner). A skip changes
// nothing the tree keeps: the local ctime is not ours (SM_XATTR_CTIME
// is), and the chmod after a chown undoes its clearing of set-id bits
// (plan_setattr puts that in mode). Except security.capability, which a
// chown of a non-directory removes even to the same owner: such a chown
// is skipped only when there is none (caps_none: r was made by this apply
// since open and given none since, sm_obj.caps_none; else it is read). A
// read that finds no security.* xattrs at all (ENOTSUP: a filesystem or
// file type without them) means none either, as before 9a42554 such a
// chown just succeeded; only another error faults. Every non-directory is
// read, not only regular files: a fifo's or symlink's capability goes with
// a chown too. A step after the chown, taken or skipped; the caller takes
// the one after the chmod.
static int set_owner_mode(struct sm *sm, const struct obj_ref *r, const struct stat *st,
			  uid_t uid, gid_t gid, int mode, bool caps_none)
{
	bool chown_wanted = uid != (uid_t)-1 || gid != (gid_t)-1;
	bool chown_needed = (uid != (uid_t)-1 && uid != st->st_uid) ||
			    (gid != (gid_t)-1 && gid != st->st_gid);
	if (chown_wanted && !chown_needed && !caps_none && !S_ISDIR(st->st_mode)) {
		ssize_t n = r->fd >= 0 ? fgetxattr(r->fd, SM_XATTR_CAPS, NULL, 0)
				       : lgetxattr(r->p.buf, SM_XATTR_CAPS, NULL, 0);
		if (sm->test_caps_errno) {
			n = -1;
			errno = sm->test_caps_errno;
		}
		sm->attr_calls++;
		// ENOTSUP is EOPNOTSUPP on Linux.
		if (n < 0 && errno != ENODATA && errno != ENOTSUP)
			return ref_fault("read capabilities of", r, errno);
		chown_needed = n >= 0;
	}
	if (chown_needed) {
		if (r->fd >= 0 ? fchown(r->fd, uid, gid) : lchown(r->p.buf, uid, gid))
			return ref_fault("chown", r, errno);
		sm->attr_calls++;
	}
	int rc = apply_step(sm);
	if (!rc && mode >= 0 && !S_ISLNK(st->st_mode) &&
	    (chown_needed || (st->st_mode & 07777) != (mode_t)mode)) {
		if (r->fd >= 0 ? fchmod(r->fd, (mode_t)mode) : chmod(r->p.buf, (mode_t)mode))
			return ref_fault("chmod", r, errno);
		sm->attr_calls++;
	}
	return rc;
}

// POSIX: adding or removing an entry updates the directory's mtime and ctime.
static int touch_now(struct sm *sm, uint64_t dir, int64_t t)
{
	struct obj_ref r;
	struct sm_obj *d = tree_get(sm, dir);
	int rc = d ? ref_get(sm, d, &r) : fault_id("resolve directory", dir, ENOENT);
	if (rc)
		return rc;
	rc = set_times(&r, NULL, &t);
	if (!rc)
		rc = apply_step(sm);
	if (!rc)
		rc = set_ctime(d, &r, t);
	if (!rc)
		rc = apply_step(sm);
	ref_release(&r);
	return rc;
}

static int ctime_of(struct sm *sm, struct sm_obj *o, int64_t t)
{
	struct obj_ref r;
	int rc = ref_get(sm, o, &r);
	if (rc)
		return rc;
	rc = set_ctime(o, &r, t);
	if (!rc)
		rc = apply_step(sm);
	ref_release(&r);
	return rc;
}

// ---- A Batch's times. Each entry a command adds or removes sets its
// directory's mtime and ctime, and each change of an object its ctime (an
// xattr) and often its mtime: a syscall each, on every node, for the same
// objects again and again in one Batch — a mount's held mkdirs in one
// directory, or a small file's create, write, chown, chmod and utimens,
// which a close behind sends as one entry. Within a Batch the new times
// are kept in sm->touch, per object and per time (the later one wins, as
// when set one by one), and set once at the end of the entry; earlier
// where a sub-command changes an object whose id the command does not
// carry: an unlink's file (every object's times first), a rename's (all
// of them first, and its own at once: a redo could not tell whether a
// rename of a name to its own object did anything). What is kept depends
// only on the sub-commands and their results, so a redo rebuilds it from
// the batch's records (apply_batch_replay). The entry's end tells the
// apply hook each object's attributes changed again (a reader of another
// node's mount may have read the old times in between, as it could read a
// new entry before its directory's times before).

#define T_ATIME 1u
#define T_MTIME 2u
#define T_CTIME 4u
#define T_OBJ 8u // kept by a command on the object itself, not as a directory

// Keeps times `what` of id for the end of the batch.
static void touch_keep(struct sm *sm, uint64_t id, unsigned what, int64_t at, int64_t mt,
		       int64_t ct)
{
	unsigned i = 0;
	while (i < sm->ntouch && sm->touch[i].id != id)
		i++;
	if (i == sm->ntouch) // at most two per sub-command: never full
		sm->touch[sm->ntouch++] = (struct sm_touch){.id = id};
	sm->touch[i].what |= (uint8_t)what;
	if (what & T_ATIME)
		sm->touch[i].at = at;
	if (what & T_MTIME)
		sm->touch[i].mt = mt;
	if (what & T_CTIME)
		sm->touch[i].ct = ct;
}

// Tells the apply hook that id's attributes changed (a SetAttr of none).
static void touch_hook(struct sm *sm, uint64_t id)
{
	Fspb__SetAttr a = FSPB__SET_ATTR__INIT;
	Fspb__Command c = FSPB__COMMAND__INIT;
	if (!sm->apply_hook)
		return;
	a.ino = id;
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = &a;
	sm->apply_hook(sm->apply_hook_arg, sm->touch_client, &c, false);
	sm->apply_hook(sm->apply_hook_arg, sm->touch_client, &c, true);
}

// Sets (unless replay: a redo rebuilding what a run before a crash did) and
// forgets the kept times of slot i. An object removed since has none.
static int touch_flush_slot(struct sm *sm, unsigned i, bool replay)
{
	struct sm_touch k = sm->touch[i];
	memmove(&sm->touch[i], &sm->touch[i + 1], (sm->ntouch - i - 1) * sizeof(sm->touch[0]));
	sm->ntouch--;
	struct sm_obj *o = replay ? NULL : tree_get(sm, k.id);
	if (!o)
		return 0;
	sm_meta_hook(sm, k.id);
	struct obj_ref r;
	int rc = ref_get(sm, o, &r);
	if (rc)
		return rc;
	if ((k.what & (T_ATIME | T_MTIME)) &&
	    !(rc = set_times(&r, (k.what & T_ATIME) ? &k.at : NULL,
			     (k.what & T_MTIME) ? &k.mt : NULL)))
		rc = apply_step(sm);
	if (!rc && (k.what & T_CTIME) && !(rc = set_ctime(o, &r, k.ct)))
		rc = apply_step(sm);
	ref_release(&r);
	if (!rc)
		touch_hook(sm, k.id);
	return rc;
}

// Every kept time (only kind's: T_OBJ, or 0 for all), oldest first.
static int touch_flush_all(struct sm *sm, unsigned kind, bool replay)
{
	int rc = 0;
	for (unsigned i = 0; i < sm->ntouch && !rc;) {
		if (kind && !(sm->touch[i].what & kind))
			i++;
		else
			rc = touch_flush_slot(sm, i, replay);
	}
	return rc;
}

// POSIX: adding or removing an entry updates the directory's mtime and ctime.
static int touch_dir(struct sm *sm, uint64_t dir, int64_t t)
{
	if (!sm->touch_defer)
		return touch_now(sm, dir, t);
	touch_keep(sm, dir, T_MTIME | T_CTIME, 0, t, t);
	return 0;
}

void apply_batch_begin(struct sm *sm, uint64_t client)
{
	sm->touch_defer = true;
	sm->touch_client = client;
	sm->ntouch = 0;
}

int apply_batch_prepare(struct sm *sm, const Fspb__Command *c, bool replay)
{
	if (!c)
		return 0;
	switch (c->op_case) {
	case FSPB__COMMAND__OP_MKNOD:
	case FSPB__COMMAND__OP_MKDIR:
	case FSPB__COMMAND__OP_SYMLINK:
	case FSPB__COMMAND__OP_LINK:
	case FSPB__COMMAND__OP_WRITE:
	case FSPB__COMMAND__OP_FALLOCATE:
	case FSPB__COMMAND__OP_SETATTR:
	case FSPB__COMMAND__OP_SETXATTR:
	case FSPB__COMMAND__OP_REMOVEXATTR:
	case FSPB__COMMAND__OP_RELEASE: // no times; what it drops has none left
	case FSPB__COMMAND__OP_DELEG:	// an xattr, not times
		return 0;
	case FSPB__COMMAND__OP_UNLINK: // its file's ctime (or a directory going)
		return touch_flush_all(sm, T_OBJ, replay);
	default: // rename (its objects are known after its plan only), or new
		return touch_flush_all(sm, 0, replay);
	}
}

// The times exec_setattr sets: what (T_*) and their values.
static unsigned setattr_times(const Fspb__Command *c, int64_t *at, int64_t *mt)
{
	const Fspb__SetAttr *s = c->setattr;
	uint32_t v = s->valid;
	unsigned what = 0;
	*at = (v & SM_SET_ATIME_NOW) ? c->time_ns : s->atime_ns;
	*mt = (v & SM_SET_MTIME_NOW) ? c->time_ns : s->mtime_ns;
	if (v & (SM_SET_ATIME | SM_SET_ATIME_NOW))
		what |= T_ATIME;
	if (v & (SM_SET_MTIME | SM_SET_MTIME_NOW))
		what |= T_MTIME;
	if (!(what & T_MTIME) && (v & SM_SET_SIZE)) {
		*mt = c->time_ns; // truncate changes mtime (POSIX)
		what |= T_MTIME;
	}
	if (v & (SM_SET_MODE | SM_SET_UID | SM_SET_GID | SM_SET_SIZE | SM_SET_ATIME |
		 SM_SET_MTIME | SM_SET_ATIME_NOW | SM_SET_MTIME_NOW))
		what |= T_CTIME;
	return what;
}

void apply_batch_replay(struct sm *sm, const Fspb__Command *c, int result)
{
	apply_batch_prepare(sm, c, true); // no syscall: cannot fail
	if (!c || result)
		return; // not executed: kept nothing
	int64_t t = c->time_ns, at, mt;
	unsigned what;
	switch (c->op_case) {
	case FSPB__COMMAND__OP_MKNOD:
		touch_keep(sm, c->mknod->ino, T_OBJ | T_ATIME | T_MTIME | T_CTIME, t, t, t);
		touch_keep(sm, c->mknod->parent, T_MTIME | T_CTIME, 0, t, t);
		break;
	case FSPB__COMMAND__OP_SYMLINK:
		touch_keep(sm, c->symlink->ino, T_OBJ | T_ATIME | T_MTIME | T_CTIME, t, t, t);
		touch_keep(sm, c->symlink->parent, T_MTIME | T_CTIME, 0, t, t);
		break;
	case FSPB__COMMAND__OP_MKDIR:
		touch_keep(sm, c->mkdir->parent, T_MTIME | T_CTIME, 0, t, t);
		break;
	case FSPB__COMMAND__OP_LINK:
		touch_keep(sm, c->link->ino, T_OBJ | T_CTIME, 0, 0, t);
		touch_keep(sm, c->link->new_parent, T_MTIME | T_CTIME, 0, t, t);
		break;
	case FSPB__COMMAND__OP_UNLINK:
		touch_keep(sm, c->unlink->parent, T_MTIME | T_CTIME, 0, t, t);
		break;
	case FSPB__COMMAND__OP_WRITE:
		if (c->write->data.len) // a write of nothing sets nothing
			touch_keep(sm, c->write->ino, T_OBJ | T_MTIME | T_CTIME, 0, t, t);
		break;
	case FSPB__COMMAND__OP_FALLOCATE:
		touch_keep(sm, c->fallocate->ino, T_OBJ | T_MTIME | T_CTIME, 0, t, t);
		break;
	case FSPB__COMMAND__OP_SETATTR:
		what = setattr_times(c, &at, &mt);
		if (what)
			touch_keep(sm, c->setattr->ino, T_OBJ | what, at, mt, t);
		break;
	case FSPB__COMMAND__OP_SETXATTR:
		touch_keep(sm, c->setxattr->ino, T_OBJ | T_CTIME, 0, 0, t);
		break;
	case FSPB__COMMAND__OP_REMOVEXATTR:
		touch_keep(sm, c->removexattr->ino, T_OBJ | T_CTIME, 0, 0, t);
		break;
	default:
		break;
	}
}

int apply_batch_end(struct sm *sm, bool ok)
{
	sm->touch_defer = false;
	if (!ok) {
		sm->ntouch = 0;
		return 0;
	}
	return touch_flush_all(sm, 0, false);
}

// Sets (or keeps, in a batch) the ctime of object o, changed by a command
// that carries its id.
static int ctime_kept(struct sm *sm, struct sm_obj *o, int64_t t)
{
	if (!sm->touch_defer)
		return ctime_of(sm, o, t);
	touch_keep(sm, o->id, T_OBJ | T_CTIME, 0, 0, t);
	return 0;
}

// Looks up parent/name for a plan. Sets *res to the command's result when the
// lookup itself decides it (bad name, parent missing or not a directory);
// *child is NULL when the entry does not exist. Returns <0 on a local fault.
static int find_child(struct sm *sm, uint64_t parent, const char *name, int *res,
		      struct sm_obj **child)
{
	*child = NULL;
	*res = -tree_check_name(name);
	if (*res)
		return 0;
	struct sm_obj *d = tree_get(sm, parent);
	if (!d || d->type != S_IFDIR) {
		*res = d ? ENOTDIR : ENOENT;
		return 0;
	}
	int dfd;
	int rc = dir_fd(sm, parent, &dfd);
	if (rc)
		return rc;
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW))
		return errno == ENOENT ? 0 : fault("stat", name, errno);
	*child = tree_map_get(&sm->by_ino, st.st_ino);
	return *child ? 0 : fault("find the id of", name, EIO);
}

static int stat_obj(struct sm *sm, uint64_t id, struct stat *st)
{
	struct sm_obj *o = tree_get(sm, id);
	struct obj_ref r;
	int rc = o ? ref_get(sm, o, &r) : fault_id("resolve object", id, ENOENT);
	if (rc)
		return rc;
	if (ref_stat(&r, st))
		rc = ref_fault("stat", &r, errno);
	ref_release(&r);
	return rc;
}

// Whether directory id has entries: 1, 0 or <0 (fault).
static int dir_nonempty(struct sm *sm, uint64_t id)
{
	struct sm_path p;
	int rc = tree_path(sm, id, &p);
	if (rc)
		return fault("resolve directory", "", -rc);
	rc = tree_dir_nonempty(p.buf);
	if (rc < 0)
		rc = fault("list", p.buf, -rc);
	sm_path_release(&p);
	return rc;
}

// Whether directory `anc` is `dir` or one of its ancestors.
static bool is_ancestor(struct sm *sm, uint64_t anc, uint64_t dir)
{
	for (struct sm_obj *o = tree_get(sm, dir); o; o = tree_get(sm, o->parent)) {
		if (o->id == anc)
			return true;
		if (o->id == SM_ROOT_ID)
			break;
	}
	return false;
}

// ---- Delegations (fs/README-sm.md, "Delegations").

// Whether command c may change the entries of directory dir: 0, or
// SM_RESULT_DELEGATED when another node holds it, or when c was answered
// before it applied (behind) under a delegation that has ended since. A
// directory that is not there passes: the op's own checks answer for it.
static int deleg_entries(struct sm *sm, const Fspb__Command *c, uint64_t dir)
{
	struct sm_obj *d = tree_get(sm, dir);
	if (!d || d->type != S_IFDIR)
		return 0;
	if (d->holder == 0)
		return c->behind ? SM_RESULT_DELEGATED : 0;
	return c->node == d->holder ? 0 : SM_RESULT_DELEGATED;
}

// A directory that c would remove (rmdir, rename over it) must not be
// delegated to another node: that node may have answered creates in it.
static int deleg_removal(const Fspb__Command *c, const struct sm_obj *dir)
{
	if (!dir || dir->type != S_IFDIR || dir->holder == 0 || dir->holder == c->node)
		return 0;
	return SM_RESULT_DELEGATED;
}

// ---- Plans: the result of each op as a function of the current state.

// The stat plan_setattr took of id, if it is the object exec_setattr
// changes next: nothing changes the tree between the two (run_one), so
// the exec skips a stat of its own. A redo, which runs no plan, stats.
static bool plan_stat_take(struct sm *sm, uint64_t id, struct stat *st)
{
	bool have = sm->plan_stat_id == id && id != 0;
	if (have)
		*st = sm->plan_stat;
	sm->plan_stat_id = 0;
	return have;
}

static int plan_setattr(struct sm *sm, const Fspb__SetAttr *s, struct sm_record *rec)
{
	struct sm_obj *o = tree_get(sm, s->ino);
	if (!o)
		return rec->result = ENOENT, 0;
	struct stat st;
	int rc = stat_obj(sm, s->ino, &st);
	if (rc)
		return rc;
	sm->plan_stat = st;
	sm->plan_stat_id = s->ino;
	if (s->valid & SM_SET_SIZE) {
		if (S_ISDIR(st.st_mode))
			return rec->result = EISDIR, 0;
		if (!S_ISREG(st.st_mode))
			return rec->result = EINVAL, 0;
		if (s->size > MAX_FILE_SIZE)
			return rec->result = EFBIG, 0;
	}
	if ((s->valid & SM_SET_MODE) && S_ISLNK(st.st_mode))
		return rec->result = EOPNOTSUPP, 0;
	mode_t m = st.st_mode & 07777;
	if (s->valid & SM_SET_MODE) {
		m = s->mode & 07777;
	} else if ((s->valid & (SM_SET_UID | SM_SET_GID)) && !S_ISDIR(st.st_mode)) {
		m = sm_drop_setid(m); // chown(2), any caller
	}
	rec->mode = m;
	return 0;
}

// Common checks of mknod/mkdir/symlink: the name is free, the id is new.
static int plan_create(struct sm *sm, const Fspb__Command *c, uint64_t parent, const char *name,
		       uint64_t ino, uint32_t mode, struct sm_record *rec)
{
	struct sm_obj *child;
	if ((rec->result = deleg_entries(sm, c, parent)))
		return 0;
	int rc = find_child(sm, parent, name, &rec->result, &child);
	if (rc || rec->result)
		return rc;
	if (child)
		return rec->result = EEXIST, 0;
	if (ino <= SM_ROOT_ID || tree_get(sm, ino))
		return rec->result = EINVAL, 0; // a proposer bug: ids are never reused
	struct stat pst;
	rc = stat_obj(sm, parent, &pst);
	if (rc)
		return rc;
	rec->gid = c->gid;
	rec->mode = mode & 07777;
	if (pst.st_mode & S_ISGID) {
		// BSD group semantics of a set-group-id directory (as ext4 does).
		rec->gid = pst.st_gid;
		if (S_ISDIR(mode))
			rec->mode |= S_ISGID;
	}
	return 0;
}

static int plan_link(struct sm *sm, const Fspb__Command *c, struct sm_record *rec)
{
	const Fspb__Link *l = c->link;
	if ((rec->result = deleg_entries(sm, c, l->new_parent)))
		return 0;
	struct sm_obj *o = tree_get(sm, l->ino);
	if (!o)
		return rec->result = ENOENT, 0;
	if (o->type == S_IFDIR)
		return rec->result = EPERM, 0;
	struct stat st;
	int rc = stat_obj(sm, l->ino, &st);
	if (rc)
		return rc;
	if (st.st_nlink <= 1)
		return rec->result = ENOENT, 0; // an orphan cannot get a name back
	if (st.st_nlink >= MAX_LINKS)
		return rec->result = EMLINK, 0;
	struct sm_obj *child;
	rc = find_child(sm, l->new_parent, l->new_name, &rec->result, &child);
	if (!rc && !rec->result && child)
		rec->result = EEXIST;
	return rc;
}

static int plan_unlink(struct sm *sm, const Fspb__Command *c, struct sm_record *rec)
{
	const Fspb__Unlink *u = c->unlink;
	struct sm_obj *child;
	if ((rec->result = deleg_entries(sm, c, u->parent)))
		return 0;
	int rc = find_child(sm, u->parent, u->name, &rec->result, &child);
	if (rc || rec->result)
		return rc;
	if (!child)
		return rec->result = ENOENT, 0;
	if (u->dir && child->type != S_IFDIR)
		return rec->result = ENOTDIR, 0;
	if (!u->dir && child->type == S_IFDIR)
		return rec->result = EISDIR, 0;
	// After the type checks: unlink() of a directory another node holds
	// is EISDIR, not a refusal its caller would retry forever.
	if ((rec->result = deleg_removal(c, child)))
		return 0;
	if (u->dir) {
		rc = dir_nonempty(sm, child->id);
		if (rc < 0)
			return rc;
		if (rc)
			return rec->result = ENOTEMPTY, 0;
	}
	rec->a = child->id;
	return 0;
}

static int plan_rename(struct sm *sm, const Fspb__Command *c, struct sm_record *rec)
{
	const Fspb__Rename *r = c->rename;
	bool exchange = r->flags & RENAME_EXCHANGE;
	if (r->flags & ~(uint32_t)(RENAME_EXCHANGE | RENAME_NOREPLACE) ||
	    (exchange && (r->flags & RENAME_NOREPLACE)))
		return rec->result = EINVAL, 0;
	struct sm_obj *src, *dst;
	if ((rec->result = deleg_entries(sm, c, r->parent)) ||
	    (rec->result = deleg_entries(sm, c, r->new_parent)))
		return 0;
	int rc = find_child(sm, r->parent, r->name, &rec->result, &src);
	if (rc || rec->result)
		return rc;
	rc = find_child(sm, r->new_parent, r->new_name, &rec->result, &dst);
	if (rc || rec->result)
		return rc;
	if (!src)
		return rec->result = ENOENT, 0;
	if (exchange && !dst)
		return rec->result = ENOENT, 0;
	if ((r->flags & RENAME_NOREPLACE) && dst)
		return rec->result = EEXIST, 0;
	rec->a = src->id;
	rec->b = dst ? dst->id : 0;
	if (dst == src)
		return 0; // two names of one file: POSIX says do nothing
	bool sdir = src->type == S_IFDIR, ddir = dst && dst->type == S_IFDIR;
	// A directory cannot move into its own subtree.
	if (sdir && is_ancestor(sm, src->id, r->new_parent))
		return rec->result = EINVAL, 0;
	if (exchange) {
		if (ddir && is_ancestor(sm, dst->id, r->parent))
			return rec->result = EINVAL, 0;
		return 0;
	}
	if (dst) {
		if (sdir && !ddir)
			return rec->result = ENOTDIR, 0;
		if (!sdir && ddir)
			return rec->result = EISDIR, 0;
		if ((rec->result = deleg_removal(c, dst)))
			return 0;
		if (ddir) {
			rc = dir_nonempty(sm, dst->id);
			if (rc < 0)
				return rc;
			if (rc)
				return rec->result = ENOTEMPTY, 0;
		}
	}
	return 0;
}

// The regular file a data op names: 0, or the result for anything else.
static int regular_file(struct sm *sm, uint64_t ino)
{
	struct sm_obj *o = tree_get(sm, ino);
	if (!o)
		return ENOENT;
	if (o->type == S_IFDIR)
		return EISDIR;
	return o->type == S_IFREG ? 0 : EINVAL;
}

// A write by an unprivileged caller clears set-user-ID, and set-group-ID
// when group execute is set, as Linux does (should_remove_suid). The kernel
// asks for it with a setattr before a buffered write, but not before a
// direct-I/O one (O_APPEND handles are direct), so the rule is decided here,
// from the command's uid, the same on every node. rec->mode: the file's new
// mode, or 0 when it keeps its own. (uid 0 stands for CAP_FSETID.)
static int plan_kill_setid(struct sm *sm, uint32_t uid, uint64_t ino, size_t len,
			   struct sm_record *rec)
{
	struct stat st;
	int fd;
	rec->mode = 0;
	if (uid == 0 || len == 0)
		return 0;
	// The write's own cached fd (exec uses it next): no path walk per write.
	int rc = write_fd(sm, ino, &fd);
	if (rc)
		return rc;
	if (fstat(fd, &st))
		return fault_id("stat", ino, errno);
	mode_t m = sm_drop_setid(st.st_mode & 07777);
	if (m != (st.st_mode & 07777))
		rec->mode = S_IFREG | m;
	return 0;
}

// rec->a is the offset written at: the file's size at decision time for an
// append (a redo must not append twice), else the command's offset.
static int plan_write(struct sm *sm, uint32_t uid, const Fspb__Write *w, struct sm_record *rec)
{
	rec->result = regular_file(sm, w->ino);
	if (rec->result)
		return 0;
	rec->a = w->offset;
	if (w->append) {
		struct stat st;
		int rc = stat_obj(sm, w->ino, &st);
		if (rc)
			return rc;
		rec->a = (uint64_t)st.st_size;
	}
	if (rec->a > MAX_FILE_SIZE || w->data.len > MAX_FILE_SIZE - rec->a)
		rec->result = EFBIG;
	if (!rec->result)
		return plan_kill_setid(sm, uid, w->ino, w->data.len, rec);
	return 0;
}

static int plan_fallocate(struct sm *sm, const Fspb__Fallocate *f, struct sm_record *rec)
{
	rec->result = regular_file(sm, f->ino);
	if (rec->result)
		return 0;
	// Only modes whose redo is idempotent (collapse/insert range shift data).
	int m = f->mode;
	int ok = m == 0 || m == FALLOC_FL_KEEP_SIZE ||
		 m == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) || m == FALLOC_FL_ZERO_RANGE ||
		 m == (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
	if (!ok)
		rec->result =
		    (m & FALLOC_FL_PUNCH_HOLE) && !(m & FALLOC_FL_KEEP_SIZE) ? EINVAL : EOPNOTSUPP;
	else if (f->length == 0)
		rec->result = EINVAL;
	else if (f->offset > MAX_FILE_SIZE || f->length > MAX_FILE_SIZE - f->offset)
		rec->result = EFBIG;
	return 0;
}

// Space the user xattrs of path take, in the MAX_XATTR_SPACE measure, not
// counting `except`. Sets *exists if `except` is present.
static int xattr_space(const char *path, const char *except, size_t *space, bool *exists)
{
	char names[8192];
	*space = 0;
	*exists = false;
	ssize_t n = llistxattr(path, names, sizeof(names));
	if (n < 0)
		return fault("list xattrs of", path, errno);
	for (char *name = names; name < names + n; name += strlen(name) + 1) {
		if (!strncmp(name, SM_XATTR_PREFIX, strlen(SM_XATTR_PREFIX)))
			continue;
		if (!strcmp(name, except)) {
			*exists = true;
			continue;
		}
		ssize_t v = lgetxattr(path, name, NULL, 0);
		if (v < 0)
			return fault("read xattr of", path, errno);
		*space += 16 + ROUND4(strlen(name)) + ROUND4((size_t)v);
	}
	return 0;
}

// Name checks common to setxattr and removexattr; the result or 0.
static int xattr_name_result(struct sm_obj *o, const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > XATTR_NAME_MAX)
		return ERANGE;
	if (!strncmp(name, SM_XATTR_PREFIX, strlen(SM_XATTR_PREFIX)))
		return EPERM;
	const char *ns[] = {"user.", "trusted.", "security."};
	for (size_t i = 0; i < 3; i++) {
		size_t pl = strlen(ns[i]);
		if (!strncmp(name, ns[i], pl)) {
			if (n == pl)
				return EINVAL;
			// Linux keeps user.* off symlinks and special files.
			if (i == 0 && o->type != S_IFREG && o->type != S_IFDIR)
				return EPERM;
			return 0;
		}
	}
	return EOPNOTSUPP; // system.* (ACLs) would change the mode behind our back
}

static int plan_xattr(struct sm *sm, uint64_t ino, const char *name, const ProtobufCBinaryData *v,
		      int flags, bool remove, struct sm_record *rec)
{
	struct sm_obj *o = tree_get(sm, ino);
	if (!o)
		return rec->result = ENOENT, 0;
	rec->result = xattr_name_result(o, name);
	if (rec->result)
		return 0;
	if (!remove && (flags & ~(XATTR_CREATE | XATTR_REPLACE)))
		return rec->result = EINVAL, 0;
	if (!remove && v->len > MAX_XATTR_VALUE)
		return rec->result = E2BIG, 0;
	struct sm_path p;
	int rc = tree_path(sm, ino, &p);
	if (rc)
		return fault("resolve object", name, -rc);
	size_t space;
	bool exists;
	rc = xattr_space(p.buf, name, &space, &exists);
	sm_path_release(&p);
	if (rc)
		return rc;
	if (remove)
		rec->result = exists ? 0 : ENODATA;
	else if ((flags & XATTR_CREATE) && exists)
		rec->result = EEXIST;
	else if ((flags & XATTR_REPLACE) && !exists)
		rec->result = ENODATA;
	else if (space + 16 + ROUND4(strlen(name)) + ROUND4(v->len) > MAX_XATTR_SPACE)
		rec->result = ENOSPC;
	return 0;
}

// The ids a Release names: ino (if set), then ids.
static size_t release_count(const Fspb__Release *r)
{
	return (r->ino ? 1 : 0) + r->n_ids;
}

static uint64_t release_id(const Fspb__Release *r, size_t i)
{
	if (r->ino && i-- == 0)
		return r->ino;
	return r->ids[i];
}

// Whether id is an orphan: 0, or the result naming it alone would get
// (ENOENT unknown, EISDIR, EBUSY still named); <0 on a local fault.
static int orphan_status(struct sm *sm, uint64_t id)
{
	struct sm_obj *o = tree_get(sm, id);
	if (!o)
		return ENOENT;
	if (o->type == S_IFDIR)
		return EISDIR;
	struct stat st;
	int rc = stat_obj(sm, id, &st);
	if (rc)
		return rc;
	return st.st_nlink > 1 ? EBUSY : 0; // it still has a name
}

// A Release is a batch: each id it names that is an orphan is released by
// the node, the others are skipped. Result 0 if at least one was an orphan,
// else the status of the first (so a Release of one id answers for it).
static int plan_release(struct sm *sm, const Fspb__Release *r, struct sm_record *rec)
{
	size_t n = release_count(r);
	if (n == 0 || r->n_voters > SM_MAX_VOTERS)
		return rec->result = EINVAL, 0;
	for (size_t i = 0; i < r->n_voters; i++)
		if (r->voters[i] == 0)
			return rec->result = EINVAL, 0; // node ids start at 1
	for (size_t i = 0; i < n; i++) {
		int st = orphan_status(sm, release_id(r, i));
		if (st < 0)
			return st;
		if (st == 0)
			return rec->result = 0, 0;
		if (i == 0)
			rec->result = st;
	}
	return 0;
}

// rec->a, rec->b, rec->mode: the directory's epoch, holder and flags
// (SM_DELEG_*) after the op.
static int plan_deleg(struct sm *sm, const Fspb__Command *c, struct sm_record *rec)
{
	const Fspb__Deleg *g = c->deleg;
	struct sm_obj *d = tree_get(sm, g->dir);
	if (!d)
		return rec->result = ENOENT, 0;
	if (d->type != S_IFDIR)
		return rec->result = ENOTDIR, 0;
	bool current = d->holder != 0 && g->epoch == d->epoch;
	rec->a = d->epoch;
	rec->b = d->holder;
	rec->mode = d->deleg_flags;
	switch (g->op) {
	case FSPB__DELEG__OP__GRANT:
		if (c->node == 0)
			return rec->result = EINVAL, 0;
		// It has it already: nothing changes, not even the close mode
		// (its mount learns it from sm_deleg_mode and closes behind
		// only under a delegation that says so).
		if (d->holder == c->node)
			return 0;
		if (d->holder)
			return rec->result = SM_RESULT_DELEGATED, 0;
		rec->a = d->epoch + 1;
		rec->b = c->node;
		rec->mode = g->close_behind ? SM_DELEG_CLOSE_BEHIND : 0;
		return 0;
	case FSPB__DELEG__OP__RECALL:
		rec->result = current ? 0 : ESTALE;
		return 0;
	case FSPB__DELEG__OP__RETURN:
		if (!current || c->node != d->holder)
			return rec->result = ESTALE, 0;
		rec->b = 0;
		rec->mode = 0;
		return 0;
	case FSPB__DELEG__OP__REVOKE:
		if (!current)
			return rec->result = ESTALE, 0;
		// Decided before its revoker applied the holder's latest start
		// (fs/sm_starts.h): the holder is back, nothing changes.
		if ((rec->result = sm_starts_revoke_result(&sm->starts, g, d->holder)))
			return 0;
		rec->b = 0;
		rec->mode = 0;
		return 0;
	default:
		return rec->result = EINVAL, 0;
	}
}

int apply_plan(struct sm *sm, const Fspb__Command *c, struct sm_record *rec)
{
	rec->result = 0;
	sm->plan_stat_id = 0; // for this command's exec only (plan_stat_take)
	switch (c->op_case) {
	case FSPB__COMMAND__OP_SETATTR:
		return plan_setattr(sm, c->setattr, rec);
	case FSPB__COMMAND__OP_MKNOD: {
		const Fspb__Mknod *m = c->mknod;
		mode_t t = m->mode & S_IFMT;
		if (t != S_IFREG && t != S_IFIFO && t != S_IFSOCK && t != S_IFCHR && t != S_IFBLK)
			return rec->result = EINVAL, 0;
		return plan_create(sm, c, m->parent, m->name, m->ino, m->mode, rec);
	}
	case FSPB__COMMAND__OP_MKDIR:
		return plan_create(sm, c, c->mkdir->parent, c->mkdir->name, c->mkdir->ino,
				   S_IFDIR | (c->mkdir->mode & 07777), rec);
	case FSPB__COMMAND__OP_SYMLINK: {
		size_t n = strlen(c->symlink->target);
		if (n == 0)
			return rec->result = ENOENT, 0;
		if (n >= PATH_MAX)
			return rec->result = ENAMETOOLONG, 0;
		return plan_create(sm, c, c->symlink->parent, c->symlink->name, c->symlink->ino,
				   S_IFLNK | 0777, rec);
	}
	case FSPB__COMMAND__OP_LINK:
		return plan_link(sm, c, rec);
	case FSPB__COMMAND__OP_UNLINK:
		return plan_unlink(sm, c, rec);
	case FSPB__COMMAND__OP_RENAME:
		return plan_rename(sm, c, rec);
	case FSPB__COMMAND__OP_WRITE:
		return plan_write(sm, c->uid, c->write, rec);
	case FSPB__COMMAND__OP_FALLOCATE:
		return plan_fallocate(sm, c->fallocate, rec);
	case FSPB__COMMAND__OP_SETXATTR:
		return plan_xattr(sm, c->setxattr->ino, c->setxattr->name, &c->setxattr->value,
				  c->setxattr->flags, false, rec);
	case FSPB__COMMAND__OP_REMOVEXATTR:
		return plan_xattr(sm, c->removexattr->ino, c->removexattr->name, NULL, 0, true,
				  rec);
	case FSPB__COMMAND__OP_RELEASE:
		return plan_release(sm, c->release, rec);
	case FSPB__COMMAND__OP_DELEG:
		return plan_deleg(sm, c, rec);
	default:
		rec->result = EINVAL;
		return 0;
	}
}

// ---- Exec: redo-safe steps. Each either is idempotent (chown, chmod,
// utimensat, setxattr, pwrite of the same bytes) or checks whether it was
// already done (create: EEXIST on the same object; rename: which inode the
// source name holds now).

void apply_forget_fd(struct sm *sm, uint64_t id)
{
	unsigned slot = (unsigned)(id % SM_FD_CACHE);
	if (sm->fds[slot].fd >= 0 && sm->fds[slot].id == id) {
		close(sm->fds[slot].fd);
		sm->fds[slot].fd = -1;
	}
}

void apply_content_change(struct sm *sm, uint64_t id, uint64_t off, uint64_t len, bool gone)
{
	if (sm->content_hook)
		sm->content_hook(sm->content_hook_arg, id, off, len, gone);
}

// Links the new object at `from` as parent/name; on redo the name may already
// be there, and must then be that same object.
static int link_name(struct sm *sm, const char *from, uint64_t parent, const char *name)
{
	int dfd;
	int rc = dir_fd(sm, parent, &dfd);
	if (rc)
		return rc;
	if (linkat(AT_FDCWD, from, dfd, name, 0)) {
		struct stat a, b;
		if (errno != EEXIST)
			rc = fault("link", name, errno);
		else if (lstat(from, &a) || fstatat(dfd, name, &b, AT_SYMLINK_NOFOLLOW) ||
			 a.st_ino != b.st_ino)
			rc = fault("link (name taken by another object)", name, EIO);
	}
	if (!rc)
		rc = apply_step(sm);
	return rc;
}

// Makes the index entry of a new object: 0 (made, or there from before a
// crash this redoes) or -errno. A regular file is created open, and its
// descriptor cached: the steps that follow, and its first write, use it.
// Made with its final permission bits perm as far as the umask lets (the
// set-id bits and the sticky bit by the chmod after), so that chmod is
// mostly skipped (set_owner_mode).
static int make_index_entry(struct sm *sm, uint64_t ino, const char *path, mode_t mode,
			    mode_t perm, uint64_t rdev, const char *target)
{
	if (target)
		return symlink(target, path) && errno != EEXIST ? -errno : 0;
	perm &= 0777;
	if (!S_ISREG(mode))
		return mknod(path, (mode & S_IFMT) | perm, (dev_t)rdev) && errno != EEXIST ? -errno
											: 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perm);
	if (fd < 0 && errno == EEXIST)
		fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	cache_fd(sm, ino, fd);
	return 0;
}

static int exec_create_file(struct sm *sm, const Fspb__Command *c, const struct sm_record *rec,
			    uint64_t parent, const char *name, uint64_t ino, mode_t mode,
			    uint64_t rdev, const char *target)
{
	sm_meta_hook(sm, parent);
	sm_new_hook(sm, ino);
	int noted = sm_note_id(sm, ino);
	if (noted)
		return fault_id("reserve ids past", ino, -noted);
	struct obj_ref r = {.id = ino};
	const char *path = r.p.buf;
	tree_index_path(sm, ino, &r.p);
	int made = make_index_entry(sm, ino, path, mode, rec->mode, rdev, target);
	if (made == -ENOENT) {
		// First object in this bucket of ids/: make the bucket.
		char bucket[PATH_MAX];
		snprintf(bucket, sizeof(bucket), "%s", path);
		*strrchr(bucket, '/') = 0;
		if (mkdir(bucket, 0700) && errno != EEXIST)
			return fault("mkdir", bucket, errno);
		made = make_index_entry(sm, ino, path, mode, rec->mode, rdev, target);
	}
	if (made)
		return fault("create", path, -made);
	// A regular file by the descriptor make_index_entry cached (valid until
	// the next cache lookup: link_name's), others by path.
	r.fd = cached_fd(sm, ino);
	char idx[17];
	tree_id_text(ino, idx);
	int64_t t = c->time_ns;
	struct stat st;
	int rc = apply_step(sm);
	if (!rc && ref_stat(&r, &st)) // owner and mode as made; its inode number stays
		rc = ref_fault("stat", &r, errno);
	if (!rc)
		rc = set_owner_mode(sm, &r, &st, c->uid, rec->gid, target ? -1 : (int)rec->mode,
				    true);
	if (!rc && !(rc = apply_step(sm)) && ref_setxattr(&r, SM_XATTR_ID, idx, 16))
		rc = ref_fault("set id of", &r, errno);
	if (!rc && !(rc = apply_step(sm))) {
		if (sm->touch_defer)
			touch_keep(sm, ino, T_OBJ | T_ATIME | T_MTIME | T_CTIME, t, t, t);
		else
			rc = stamp_new_times(sm, &r, t);
	}
	if (rc)
		return rc;
	pthread_rwlock_wrlock(&sm->lock);
	rc = tree_put(sm, ino, st.st_ino, st.st_mode & S_IFMT, t, 0, NULL);
	if (!rc)
		tree_get(sm, ino)->caps_none = true;
	if (!rc)
		rc = link_name(sm, path, parent, name);
	pthread_rwlock_unlock(&sm->lock);
	if (!rc)
		rc = touch_dir(sm, parent, t);
	return rc;
}

static int exec_mkdir(struct sm *sm, const Fspb__Command *c, const struct sm_record *rec)
{
	const Fspb__Mkdir *m = c->mkdir;
	sm_meta_hook(sm, m->parent);
	sm_new_hook(sm, m->ino);
	int pfd;
	int rc = sm_note_id(sm, m->ino);
	if (rc)
		return fault_id("reserve ids past", m->ino, -rc);
	if ((rc = dir_fd(sm, m->parent, &pfd)))
		return rc;
	int64_t t = c->time_ns;
	uint64_t id;
	struct stat st;
	if (mkdirat(pfd, m->name, rec->mode & 0777)) { // as make_index_entry
		if (errno != EEXIST)
			return fault("mkdir", m->name, errno);
		// Redo: ours if it has no id yet (cut short) or our id.
		struct sm_path p;
		if ((rc = tree_child_path(sm, m->parent, m->name, &p)))
			return fault("resolve", m->name, -rc);
		rc = tree_read_id(p.buf, &id);
		if (rc == -ENODATA || (rc == 0 && id == m->ino))
			rc = 0;
		else
			rc = fault("mkdir (name taken by another object)", p.buf, EIO);
		sm_path_release(&p);
		if (rc)
			return rc;
	}
	// The new directory by a cached descriptor (pfd may be closed by it),
	// good until touch_dir's lookup below.
	struct obj_ref r = {.id = m->ino, .p.fd = -1};
	r.fd = openat(pfd, m->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (r.fd < 0)
		return fault("open directory", m->name, errno);
	cache_fd(sm, m->ino, r.fd);
	if (!(rc = apply_step(sm)) && fstat(r.fd, &st)) // owner and mode as made; its inode number stays
		rc = ref_fault("stat", &r, errno);
	if (!rc)
		rc = set_owner_mode(sm, &r, &st, c->uid, rec->gid, (int)rec->mode, true);
	if (!rc && !(rc = apply_step(sm)))
		rc = stamp_new_times(sm, &r, t);
	// Granted to its maker (Mkdir.grant): nobody else has a view of it yet.
	bool grant = m->grant && c->node;
	uint8_t flags = m->grant_close_behind ? SM_DELEG_CLOSE_BEHIND : 0;
	if (!rc) {
		pthread_rwlock_wrlock(&sm->lock);
		rc = tree_put(sm, m->ino, st.st_ino, S_IFDIR, t, m->parent, m->name);
		if (!rc && grant) {
			struct sm_obj *o = tree_get(sm, m->ino);
			o->holder = c->node;
			o->epoch = 1;
			o->deleg_flags = flags;
		}
		pthread_rwlock_unlock(&sm->lock);
	}
	// The id: a directory with an id is complete for the scan, but for
	// its grant's xattr, which comes after it on purpose. ext4 keeps a
	// 256-byte inode's first 92 bytes of xattrs in the inode: the ctime
	// and the id fit (84), a third goes to an xattr block. The grant's
	// bytes are the same for every directory granted to one node, so
	// ext4 shares its block between them (mbcache); the id's are not, and
	// made last it cost every granted directory a block of its own (4 KiB
	// on every node; a block allocation per mkdir). A crash between the
	// two leaves a granted directory that the scan loads without its
	// grant: the entry is the newest and not done, so its redo writes the
	// grant again (tables and xattr), before anything else applies.
	char idx[17];
	tree_id_text(m->ino, idx);
	if (!rc && ref_setxattr(&r, SM_XATTR_ID, idx, 16))
		rc = ref_fault("set id of", &r, errno);
	if (!rc)
		rc = apply_step(sm);
	if (!rc && grant) {
		if ((rc = tree_fwrite_deleg(r.fd, c->node, 1, flags)))
			rc = ref_fault("delegate", &r, -rc);
		else
			rc = apply_step(sm);
	}
	if (!rc)
		rc = touch_dir(sm, m->parent, t);
	if (!rc && grant && sm->deleg_hook)
		sm->deleg_hook(sm->deleg_hook_arg, m->ino, FSPB__DELEG__OP__GRANT, c->node,
			       c->node, 1);
	return rc;
}

static int exec_link(struct sm *sm, const Fspb__Command *c)
{
	const Fspb__Link *l = c->link;
	sm_meta_hook(sm, l->ino);
	sm_meta_hook(sm, l->new_parent);
	struct sm_path p;
	tree_index_path(sm, l->ino, &p);
	pthread_rwlock_wrlock(&sm->lock);
	int rc = link_name(sm, p.buf, l->new_parent, l->new_name);
	pthread_rwlock_unlock(&sm->lock);
	if (!rc)
		rc = ctime_kept(sm, tree_get(sm, l->ino), c->time_ns);
	if (!rc)
		rc = touch_dir(sm, l->new_parent, c->time_ns);
	return rc;
}

// After a name of non-directory o went: tells the orphan hook if it was its
// last (only the index link is left). Not a step: nothing changes.
static int note_orphan(struct sm *sm, struct sm_obj *o)
{
	struct sm_path p;
	struct stat st;
	if (!sm->orphan_hook)
		return 0;
	tree_index_path(sm, o->id, &p);
	if (lstat(p.buf, &st))
		return fault("stat", p.buf, errno);
	if (st.st_nlink == 1)
		sm->orphan_hook(sm->orphan_hook_arg, o->id);
	return 0;
}

static int exec_unlink(struct sm *sm, const Fspb__Command *c, const struct sm_record *rec)
{
	const Fspb__Unlink *u = c->unlink;
	struct sm_obj *o = tree_get(sm, rec->a); // NULL on redo of a finished rmdir
	sm_meta_hook(sm, u->parent);
	if (o)
		sm_meta_hook(sm, o->id);
	struct sm_path p;
	int rc = tree_child_path(sm, u->parent, u->name, &p);
	if (rc)
		return fault("resolve", u->name, -rc);
	struct stat st;
	pthread_rwlock_wrlock(&sm->lock);
	if (lstat(p.buf, &st) == 0) {
		if (!o || st.st_ino != o->local_ino)
			rc = fault("unlink (name holds another object)", p.buf, EIO);
		else if (unlinkat(AT_FDCWD, p.buf, u->dir ? AT_REMOVEDIR : 0))
			rc = fault("unlink", p.buf, errno);
		else
			rc = apply_step(sm);
	} else if (errno != ENOENT) {
		rc = fault("stat", p.buf, errno);
	}
	if (!rc && o && u->dir) {
		apply_forget_fd(sm, rec->a);
		tree_drop(sm, rec->a);
	}
	pthread_rwlock_unlock(&sm->lock);
	sm_path_release(&p);
	// The file lost a link: its ctime changes (it may now be an orphan).
	if (!rc && o && !u->dir)
		rc = ctime_of(sm, o, c->time_ns);
	if (!rc)
		rc = touch_dir(sm, u->parent, c->time_ns);
	if (!rc && o && !u->dir)
		rc = note_orphan(sm, o);
	return rc;
}

static int exec_rename(struct sm *sm, const Fspb__Command *c, const struct sm_record *rec)
{
	const Fspb__Rename *r = c->rename;
	if (rec->a == rec->b)
		return 0;
	sm_meta_hook(sm, r->parent);
	sm_meta_hook(sm, r->new_parent);
	sm_meta_hook(sm, rec->a);
	if (rec->b)
		sm_meta_hook(sm, rec->b);
	bool exchange = r->flags & RENAME_EXCHANGE;
	struct sm_obj *src = tree_get(sm, rec->a);
	struct sm_obj *dst = rec->b ? tree_get(sm, rec->b) : NULL; // NULL on redo of a dir replaced
	struct sm_path from, to;
	int rc = tree_child_path(sm, r->parent, r->name, &from);
	if (rc)
		return fault("resolve", r->name, -rc);
	rc = tree_child_path(sm, r->new_parent, r->new_name, &to);
	if (rc) {
		sm_path_release(&from);
		return fault("resolve", r->new_name, -rc);
	}
	pthread_rwlock_wrlock(&sm->lock);
	struct stat st;
	bool at_source = lstat(from.buf, &st) == 0 && src && st.st_ino == src->local_ino;
	if (at_source) {
		if (renameat2(AT_FDCWD, from.buf, AT_FDCWD, to.buf, exchange ? RENAME_EXCHANGE : 0))
			rc = fault("rename", from.buf, errno);
		else
			rc = apply_step(sm);
	} else if (!src || lstat(to.buf, &st) || st.st_ino != src->local_ino) {
		// Neither not-yet-done nor done: the tree is not what the journal says.
		rc = fault("rename (tree does not match the journal)", from.buf, EIO);
	}
	if (!rc && src->type == S_IFDIR)
		rc = tree_move_dir(src, r->new_parent, r->new_name);
	if (!rc && dst && exchange && dst->type == S_IFDIR)
		rc = tree_move_dir(dst, r->parent, r->name);
	if (!rc && dst && !exchange && dst->type == S_IFDIR) {
		apply_forget_fd(sm, rec->b);
		tree_drop(sm, rec->b); // replaced an empty directory
		dst = NULL;
	}
	pthread_rwlock_unlock(&sm->lock);
	sm_path_release(&from);
	sm_path_release(&to);
	int64_t t = c->time_ns;
	if (!rc)
		rc = ctime_of(sm, src, t);
	if (!rc && dst) // exchanged, or a file that lost a name
		rc = ctime_of(sm, dst, t);
	// At once, not kept for the batch's end: a redo could not tell
	// whether a rename of a name to its own object (nothing done) ran.
	if (!rc)
		rc = touch_now(sm, r->parent, t);
	if (!rc && r->new_parent != r->parent)
		rc = touch_now(sm, r->new_parent, t);
	if (!rc && dst && !exchange)
		rc = note_orphan(sm, dst); // replaced: maybe its last name
	return rc;
}

// Sets mtime and ctime of an open regular file after a data change.
static int data_times(struct sm *sm, uint64_t id, int fd, int64_t t)
{
	if (sm->touch_defer) {
		touch_keep(sm, id, T_OBJ | T_MTIME | T_CTIME, 0, t, t);
		return 0;
	}
	struct timespec ts[2] = {{0, UTIME_OMIT}, ns_to_ts(t)};
	if (futimens(fd, ts))
		return fault_id("set mtime of", id, errno);
	int rc = apply_step(sm);
	if (rc)
		return rc;
	if (fsetxattr(fd, SM_XATTR_CTIME, &t, sizeof(t), 0))
		return fault_id("set ctime of", id, errno);
	__atomic_store_n(&tree_get(sm, id)->ctime_ns, t, __ATOMIC_RELAXED);
	return apply_step(sm);
}

// Big writes proposed by another node may go around the page cache. On this
// VM filling fresh page-cache pages is slow and erratic: under load 3 ms of
// CPU per MiB (a rewrite of cached pages 0.1), and then the apply threads'
// fills were half of the three nodes' CPU during a big write; on a quiet
// machine far less, and there the disk is the scarcer part (three value-log
// copies of every byte already near its bandwidth at 300 MiB/s, while the
// cache writes the tree back after a burst). So, by default (auto), a
// write goes direct only while the last buffered ones cost at least
// sm->direct_fill_ns of CPU per MiB and the last direct ones (the aligned
// copy included) less than that, and one in DIRECT_PROBE_EVERY goes the
// other way to measure it again (bench/fs/README.md, "Session 10 (seqw)"):
// where direct writes turn as dear as fills (a direct write flushing dirty
// cached pages of its range first), auto goes back to the cache rather
// than stay direct on a measure of fills alone. The proposer's own writes
// always fill the cache: its mount reads back what it wrote (fs-bench),
// and they are measured too. Decided by each node for itself, from its
// own measures and filesystem: the bytes are the same either way.
// RAFTFS_APPLY_DIRECT=0 never goes direct, =1 always (sm.c); auto never
// where direct writes do not bypass the cache (tmpfs: sm_direct.h, probed
// at open), and no mode after a direct write was refused with EINVAL.
// O_DIRECT wants the offset, the length and the buffer in whole blocks:
// only writes that are (dd, cp: 1 MiB at a time) take it, from an aligned
// copy. Durability is the same either way: apply syncs nothing of the tree
// (redo journal, DESIGN.md).
#define DIRECT_MIN_BYTES (256u << 10)
#define DIRECT_ALIGN 4096u
#define DIRECT_PROBE_EVERY 16u

static bool write_goes_direct(struct sm *sm, const Fspb__Command *c, uint64_t off, size_t len)
{
	if (sm->direct_mode == SM_DIRECT_OFF || c->node == 0 || c->node == sm->node_id ||
	    len < DIRECT_MIN_BYTES || off % DIRECT_ALIGN || len % DIRECT_ALIGN)
		return false;
	if (sm->direct_mode == SM_DIRECT_ON)
		return true;
	if (sm->fill_ns_mib < 0 || sm->fill_ns_mib < sm->direct_fill_ns)
		return false; // not measured yet, or cheap: through the cache
	bool cheaper = sm->direct_ns_mib < 0 || sm->direct_ns_mib < sm->fill_ns_mib;
	bool probe = ++sm->direct_run % DIRECT_PROBE_EVERY == 0;
	return cheaper != probe;
}

static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// A big write of len bytes took cpu_ns of this thread's CPU: the cost of a
// fill (buffered) or of a direct write, each smoothed over the last few.
// A pinned direct cost (sm_test_pin_direct_cost) stays as it is.
static void note_cost(struct sm *sm, bool direct, int64_t cpu_ns, size_t len)
{
	int64_t per_mib = cpu_ns * (1 << 20) / (int64_t)len;
	int64_t *avg = direct ? &sm->direct_ns_mib : &sm->fill_ns_mib;
	if (direct && sm->test_direct_pinned)
		return;
	*avg = *avg < 0 ? per_mib : (3 * *avg + per_mib) / 4;
}

// fd (apply's own descriptor) with O_DIRECT on or off; false if refused
// (a filesystem without direct I/O: the write stays buffered).
static bool set_direct(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);
	return fl >= 0 && fcntl(fd, F_SETFL, on ? fl | O_DIRECT : fl & ~O_DIRECT) == 0;
}

// An aligned copy of data for a direct write on fd, with O_DIRECT turned
// on; NULL (nothing changed) when it cannot be had.
static const uint8_t *direct_begin(struct sm *sm, int fd, const uint8_t *data, size_t len)
{
	if (sm->direct_cap < len) {
		void *b;
		if (posix_memalign(&b, DIRECT_ALIGN, len))
			return NULL;
		free(sm->direct_buf);
		sm->direct_buf = b;
		sm->direct_cap = len;
	}
	if (!set_direct(fd, true)) {
		sm->direct_mode = SM_DIRECT_OFF; // not on this filesystem: do not ask again
		return NULL;
	}
	memcpy(sm->direct_buf, data, len);
	return sm->direct_buf;
}

static int exec_write(struct sm *sm, const Fspb__Command *c, const struct sm_record *rec)
{
	const Fspb__Write *w = c->write;
	if (w->data.len == 0)
		return 0; // POSIX: a write of nothing changes nothing
	sm_meta_hook(sm, w->ino);
	apply_content_change(sm, w->ino, rec->a, w->data.len, false);
	int fd;
	int rc = write_fd(sm, w->ino, &fd);
	if (rc)
		return rc;
	const uint8_t *src = w->data.data;
	int64_t cpu0 = w->data.len >= DIRECT_MIN_BYTES ? thread_cpu_ns() : 0;
	if (write_goes_direct(sm, c, rec->a, w->data.len))
		src = direct_begin(sm, fd, w->data.data, w->data.len);
	bool direct = src && src != w->data.data;
	const bool began_direct = direct;
	if (!src)
		src = w->data.data;
	size_t done = 0;
	while (done < w->data.len) {
		ssize_t n;
		if (direct && sm->test_refuse_direct) {
			n = -1;
			errno = EINVAL;
		} else {
			n = pwrite(fd, src + done, w->data.len - done, (off_t)(rec->a + done));
		}
		if (n < 0 && direct && errno == EINVAL && done == 0) {
			// Direct I/O refused after all (F_SETFL took O_DIRECT, the
			// write does not): buffered, and no later write pays the
			// copy and the refusal again.
			n = 0;
			if (sm->direct_mode != SM_DIRECT_OFF)
				fprintf(stderr, "sm: a direct write refused (EINVAL): big "
						"writes go through the page cache\n");
			sm->direct_mode = SM_DIRECT_OFF;
		} else if (n <= 0) {
			if (direct)
				set_direct(fd, false);
			return fault_id("write", w->ino, n < 0 ? errno : EIO);
		}
		done += (size_t)n;
		if (direct && (n == 0 || (done < w->data.len && done % DIRECT_ALIGN))) {
			// The rest is not in whole blocks (or was refused):
			// buffered, from the command's own bytes.
			if (!set_direct(fd, false))
				return fault_id("write", w->ino, errno);
			direct = false;
			src = w->data.data;
		}
		if ((rc = apply_step(sm))) {
			if (direct)
				set_direct(fd, false);
			return rc;
		}
	}
	if (direct && !set_direct(fd, false))
		return fault_id("write", w->ino, errno);
	if (cpu0 && direct == began_direct) // not a direct write that ended buffered
		note_cost(sm, direct, thread_cpu_ns() - cpu0, w->data.len);
	if (c->node && c->node != sm->node_id && w->data.len >= DIRECT_MIN_BYTES) {
		sm->n_direct += direct;
		sm->n_buffered += !direct;
	}
	if (rec->mode && fchmod(fd, rec->mode & 07777)) // plan_kill_setid; idempotent
		return fault_id("clear set-id bits of", w->ino, errno);
	return data_times(sm, w->ino, fd, c->time_ns);
}

// Writes zeros over [off, end) of the file, within its current size.
static int write_zeros(int fd, off_t off, off_t end)
{
	static const char zeros[65536];
	struct stat st;
	if (fstat(fd, &st))
		return -errno;
	if (end > st.st_size)
		end = st.st_size;
	while (off < end) {
		size_t n =
		    (size_t)(end - off) < sizeof(zeros) ? (size_t)(end - off) : sizeof(zeros);
		ssize_t w = pwrite(fd, zeros, n, off);
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		off += w;
	}
	return 0;
}

// fallocate with the visible effect of `mode` on any local filesystem: where
// the filesystem lacks a mode (tmpfs has no ZERO_RANGE; some have no
// fallocate at all) the same content and size are produced another way, so
// a node's choice of filesystem is never a local fault. Only block
// allocation (st_blocks, not replicated) may differ. Every path is
// idempotent. Returns 0 or -errno.
static int do_fallocate(int fd, int mode, off_t off, off_t len)
{
	if (fallocate(fd, mode, off, len) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	bool keep = mode & FALLOC_FL_KEEP_SIZE;
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		// Zeros over the range: a hole if the filesystem can punch one.
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len)) {
			if (errno != EOPNOTSUPP)
				return -errno;
			int rc = write_zeros(fd, off, off + len);
			if (rc)
				return rc;
		}
	}
	struct stat st;
	if (!keep && (fstat(fd, &st) || (st.st_size < off + len && ftruncate(fd, off + len))))
		return -errno;
	return 0;
}

static int exec_fallocate(struct sm *sm, const Fspb__Command *c)
{
	const Fspb__Fallocate *f = c->fallocate;
	int fd;
	sm_meta_hook(sm, f->ino);
	apply_content_change(sm, f->ino, f->offset, f->length, false);
	int rc = write_fd(sm, f->ino, &fd);
	if (rc)
		return rc;
	if ((rc = do_fallocate(fd, f->mode, (off_t)f->offset, (off_t)f->length)))
		return fault_id("fallocate", f->ino, -rc);
	if ((rc = apply_step(sm)))
		return rc;
	return data_times(sm, f->ino, fd, c->time_ns);
}

static int exec_setattr(struct sm *sm, const Fspb__Command *c, const struct sm_record *rec)
{
	const Fspb__SetAttr *s = c->setattr;
	struct sm_obj *o = tree_get(sm, s->ino);
	sm_meta_hook(sm, s->ino);
	uint32_t v = s->valid;
	if (v & SM_SET_SIZE) // before every step: the hook wants the old bytes
		apply_content_change(sm, s->ino, s->size, SM_CONTENT_TO_END, false);
	struct obj_ref r;
	int rc = ref_get(sm, o, &r);
	if (rc)
		return rc;
	uid_t uid = (v & SM_SET_UID) ? s->uid : (uid_t)-1;
	gid_t gid = (v & SM_SET_GID) ? s->gid : (gid_t)-1;
	if (v & (SM_SET_MODE | SM_SET_UID | SM_SET_GID)) {
		// The chmod after the chown, which may have cleared set-id bits.
		struct stat st;
		if (!plan_stat_take(sm, s->ino, &st) && ref_stat(&r, &st))
			rc = ref_fault("stat", &r, errno);
		if (!rc)
			rc = set_owner_mode(sm, &r, &st, uid, gid, (int)rec->mode,
					    o->caps_none);
	} else {
		rc = apply_step(sm);
	}
	if (!rc && !(rc = apply_step(sm)) && (v & SM_SET_SIZE) &&
	    (r.fd >= 0 ? ftruncate(r.fd, (off_t)s->size) : truncate(r.p.buf, (off_t)s->size)))
		rc = ref_fault("truncate", &r, errno);
	if (!rc)
		rc = apply_step(sm);
	int64_t at, mt;
	unsigned what = setattr_times(c, &at, &mt);
	if (!rc && what && sm->touch_defer)
		touch_keep(sm, s->ino, T_OBJ | what, at, mt, c->time_ns);
	else if (!rc && (what & (T_ATIME | T_MTIME)) &&
		 !(rc = set_times(&r, (what & T_ATIME) ? &at : NULL,
				  (what & T_MTIME) ? &mt : NULL)))
		rc = apply_step(sm);
	if (!rc && !sm->touch_defer && (what & T_CTIME))
		rc = set_ctime(o, &r, c->time_ns);
	ref_release(&r);
	return rc;
}

static int exec_xattr(struct sm *sm, const Fspb__Command *c, uint64_t ino, const char *name,
		      const ProtobufCBinaryData *v)
{
	sm_meta_hook(sm, ino);
	struct sm_path p;
	int rc = tree_path(sm, ino, &p);
	if (rc)
		return fault("resolve object", name, -rc);
	struct sm_obj *o = tree_get(sm, ino);
	if (v && !strcmp(name, SM_XATTR_CAPS))
		o->caps_none = false;
	if (v && lsetxattr(p.buf, name, v->data, v->len, 0))
		rc = fault("setxattr", p.buf, errno);
	if (!v && lremovexattr(p.buf, name) && errno != ENODATA)
		rc = fault("removexattr", p.buf, errno);
	sm_path_release(&p);
	if (!rc)
		rc = apply_step(sm);
	if (!rc)
		rc = ctime_kept(sm, o, c->time_ns);
	return rc;
}

// Deletes orphan ino for good: its index link was its last link.
static int drop_orphan(struct sm *sm, uint64_t ino, const char *path)
{
	apply_content_change(sm, ino, 0, SM_CONTENT_TO_END, true); // its data goes for good
	apply_forget_fd(sm, ino);
	if (unlink(path) && errno != ENOENT)
		return fault("release", path, errno);
	int rc = apply_step(sm);
	if (rc)
		return rc;
	pthread_rwlock_wrlock(&sm->lock);
	tree_drop(sm, ino);
	pthread_rwlock_unlock(&sm->lock);
	return 0;
}

static bool has_node(const uint32_t *v, size_t n, uint32_t node)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == node)
			return true;
	return false;
}

// Node r->node releases orphan ino: it joins the set of nodes that released
// it, kept in SM_XATTR_RELEASED, restricted to the command's voters (a
// member since removed no longer counts); once every voter is in it, the
// orphan goes. Redo-safe: the new set is a function of the old one and the
// command, and a dropped orphan is skipped.
static int release_by_node(struct sm *sm, const Fspb__Release *r, uint64_t ino, const char *path)
{
	uint32_t set[SM_MAX_VOTERS + 1], out[SM_MAX_VOTERS + 1];
	const uint32_t self[1] = {r->node};
	const uint32_t *voters = r->n_voters ? r->voters : self;
	size_t nv = r->n_voters ? r->n_voters : 1, n = 0;
	int got = tree_read_released(path, set);
	if (got < 0)
		return fault("read the releases of", path, -got);
	bool all = true;
	for (size_t i = 0; i < nv; i++)
		if (voters[i] != r->node && !has_node(set, (size_t)got, voters[i]))
			all = false;
	if (all)
		return drop_orphan(sm, ino, path);
	// The kept set: ascending, without duplicates, only voters.
	for (uint32_t last = 0;;) {
		uint32_t next = UINT32_MAX;
		bool found = false;
		for (size_t i = 0; i < nv; i++)
			if (voters[i] > last && voters[i] <= next &&
			    (voters[i] == r->node || has_node(set, (size_t)got, voters[i]))) {
				next = voters[i];
				found = true;
			}
		if (!found)
			break;
		out[n++] = last = next;
	}
	int rc = tree_write_released(path, out, n);
	if (rc)
		return fault("record the releases of", path, -rc);
	return apply_step(sm);
}

static int exec_release(struct sm *sm, const Fspb__Release *r)
{
	for (size_t i = 0; i < release_count(r); i++) {
		uint64_t ino = release_id(r, i);
		struct sm_obj *o = tree_get(sm, ino);
		struct sm_path p;
		struct stat st;
		if (!o || o->type == S_IFDIR)
			continue; // unknown, or dropped before a crash this redoes
		tree_index_path(sm, ino, &p);
		bool gone = lstat(p.buf, &st) != 0;
		if (gone && errno != ENOENT)
			return fault("stat", p.buf, errno);
		if (!gone && st.st_nlink > 1)
			continue; // not an orphan: skipped
		sm_meta_hook(sm, ino); // its released set changes, or it goes
		// (gone: its last link went before the tables forgot it: finish.)
		int rc = r->node && !gone ? release_by_node(sm, r, ino, p.buf)
					  : drop_orphan(sm, ino, p.buf);
		if (rc)
			return rc;
	}
	return 0;
}

// Stores the planned delegation (idempotent), then tells the hook.
static int exec_deleg(struct sm *sm, const Fspb__Command *c, const struct sm_record *rec)
{
	const Fspb__Deleg *g = c->deleg;
	struct sm_obj *d = tree_get(sm, g->dir);
	int rc = 0;
	if (g->op != FSPB__DELEG__OP__RECALL) {
		sm_meta_hook(sm, g->dir);
		struct sm_path p;
		if ((rc = tree_path(sm, g->dir, &p)))
			return fault("resolve directory", "", -rc);
		uint8_t flags = (uint8_t)rec->mode;
		if ((rc = tree_write_deleg(p.buf, (uint32_t)rec->b, rec->a, flags)))
			rc = fault("delegate", p.buf, -rc);
		sm_path_release(&p);
		if (rc)
			return rc;
		pthread_rwlock_wrlock(&sm->lock);
		d->holder = (uint32_t)rec->b;
		d->epoch = rec->a;
		d->deleg_flags = flags;
		pthread_rwlock_unlock(&sm->lock);
		if ((rc = apply_step(sm)))
			return rc;
	}
	if (sm->deleg_hook)
		sm->deleg_hook(sm->deleg_hook_arg, g->dir, g->op, c->node, d->holder, d->epoch);
	return 0;
}

int apply_exec(struct sm *sm, const Fspb__Command *c, const struct sm_record *rec)
{
	switch (c->op_case) {
	case FSPB__COMMAND__OP_SETATTR:
		return exec_setattr(sm, c, rec);
	case FSPB__COMMAND__OP_MKNOD:
		return exec_create_file(sm, c, rec, c->mknod->parent, c->mknod->name, c->mknod->ino,
					c->mknod->mode, c->mknod->rdev, NULL);
	case FSPB__COMMAND__OP_MKDIR:
		return exec_mkdir(sm, c, rec);
	case FSPB__COMMAND__OP_SYMLINK:
		return exec_create_file(sm, c, rec, c->symlink->parent, c->symlink->name,
					c->symlink->ino, S_IFLNK, 0, c->symlink->target);
	case FSPB__COMMAND__OP_LINK:
		return exec_link(sm, c);
	case FSPB__COMMAND__OP_UNLINK:
		return exec_unlink(sm, c, rec);
	case FSPB__COMMAND__OP_RENAME:
		return exec_rename(sm, c, rec);
	case FSPB__COMMAND__OP_WRITE:
		return exec_write(sm, c, rec);
	case FSPB__COMMAND__OP_FALLOCATE:
		return exec_fallocate(sm, c);
	case FSPB__COMMAND__OP_SETXATTR:
		return exec_xattr(sm, c, c->setxattr->ino, c->setxattr->name, &c->setxattr->value);
	case FSPB__COMMAND__OP_REMOVEXATTR:
		return exec_xattr(sm, c, c->removexattr->ino, c->removexattr->name, NULL);
	case FSPB__COMMAND__OP_RELEASE:
		return exec_release(sm, c->release);
	case FSPB__COMMAND__OP_DELEG:
		return exec_deleg(sm, c, rec);
	default:
		return 0;
	}
}
