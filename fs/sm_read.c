// The read side of the state machine: attributes, lookup, readdir, symlinks, data and xattrs by id.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "sm_impl.h"

// Every read resolves a path and uses it under the read lock, so apply cannot
// rename a directory on the path between the two.

int sm_getattr(struct sm *sm, uint64_t id, struct stat *st)
{
	pthread_rwlock_rdlock(&sm->lock);
	struct sm_path p;
	int rc = tree_path(sm, id, &p);
	if (!rc) {
		rc = tree_stat(tree_get(sm, id), p.buf, st);
		sm_path_release(&p);
	}
	pthread_rwlock_unlock(&sm->lock);
	return rc;
}

int sm_lookup(struct sm *sm, uint64_t parent, const char *name, struct stat *st)
{
	int rc = tree_check_name(name);
	if (rc)
		return rc;
	pthread_rwlock_rdlock(&sm->lock);
	struct sm_path p;
	rc = tree_child_path(sm, parent, name, &p);
	if (!rc) {
		if (lstat(p.buf, st) == 0) {
			struct sm_obj *o = tree_map_get(&sm->by_ino, st->st_ino);
			// Not in the tables: being created right now; not there yet.
			if (o)
				tree_stat_fix(o, st);
			else
				rc = -ENOENT;
		} else {
			rc = -errno;
		}
		sm_path_release(&p);
	}
	pthread_rwlock_unlock(&sm->lock);
	return rc;
}

// One entry of a readdir: maps the local inode to the object; *holder its
// delegation's holder (0: none, or not a directory).
static int dirent_stat(struct sm *sm, DIR *d, struct dirent *e, uint64_t dir, bool plus,
		       struct stat *st, uint32_t *holder, bool *skip)
{
	struct sm_obj *self = tree_get(sm, dir);
	struct sm_obj *o;
	*skip = false;
	if (!strcmp(e->d_name, "."))
		o = self;
	else if (!strcmp(e->d_name, ".."))
		o = tree_get(sm, self->parent);
	else
		o = tree_map_get(&sm->by_ino, e->d_ino);
	if (!o) {
		*skip = true; // being created right now
		return 0;
	}
	*holder = o->type == S_IFDIR ? o->holder : 0;
	memset(st, 0, sizeof(*st));
	if (plus) {
		struct sm_path p;
		int rc = tree_path(sm, o->id, &p);
		if (!rc) {
			rc = tree_stat(o, p.buf, st);
			sm_path_release(&p);
		}
		return rc;
	}
	st->st_ino = o->id;
	st->st_mode = o->type;
	return 0;
}

// sm_readdir is sm_readdir_held with a callback that leaves the holder out.
struct plain_fn {
	sm_dirent_fn fn;
	void *arg;
};

static int plain_entry(void *arg, const char *name, const struct stat *st, uint32_t holder,
		       off_t next)
{
	struct plain_fn *p = arg;
	(void)holder;
	return p->fn(p->arg, name, st, next);
}

int sm_readdir(struct sm *sm, uint64_t dir, off_t off, bool plus, sm_dirent_fn fn, void *arg)
{
	struct plain_fn p = {fn, arg};
	return sm_readdir_held(sm, dir, off, plus, plain_entry, &p);
}

int sm_readdir_held(struct sm *sm, uint64_t dir, off_t off, bool plus, sm_dirent_held_fn fn,
		    void *arg)
{
	pthread_rwlock_rdlock(&sm->lock);
	struct sm_obj *self = tree_get(sm, dir);
	struct sm_path p;
	int rc = !self ? -ENOENT : self->type != S_IFDIR ? -ENOTDIR : tree_path(sm, dir, &p);
	if (rc) {
		pthread_rwlock_unlock(&sm->lock);
		return rc;
	}
	DIR *d = opendir(p.buf);
	sm_path_release(&p);
	if (!d) {
		rc = -errno;
		pthread_rwlock_unlock(&sm->lock);
		return rc;
	}
	if (off)
		seekdir(d, off);
	struct dirent *e;
	errno = 0;
	while ((e = readdir(d))) {
		struct stat st;
		uint32_t holder = 0;
		bool skip;
		rc = dirent_stat(sm, d, e, dir, plus, &st, &holder, &skip);
		if (rc)
			break;
		if (!skip && fn(arg, e->d_name, &st, holder, telldir(d)))
			break;
		errno = 0;
	}
	if (!e && errno)
		rc = -errno;
	closedir(d);
	pthread_rwlock_unlock(&sm->lock);
	return rc;
}

ssize_t sm_readlink(struct sm *sm, uint64_t id, char *buf, size_t size)
{
	pthread_rwlock_rdlock(&sm->lock);
	struct sm_obj *o = tree_get(sm, id);
	ssize_t rc = !o ? -ENOENT : o->type != S_IFLNK ? -EINVAL : 0;
	if (!rc) {
		struct sm_path p;
		tree_index_path(sm, id, &p);
		rc = readlink(p.buf, buf, size);
		if (rc < 0)
			rc = -errno;
	}
	pthread_rwlock_unlock(&sm->lock);
	return rc;
}

int sm_open_fd(struct sm *sm, uint64_t id)
{
	pthread_rwlock_rdlock(&sm->lock);
	struct sm_obj *o = tree_get(sm, id);
	int rc = !o ? -ENOENT : o->type == S_IFDIR ? -EISDIR : o->type != S_IFREG ? -EINVAL : 0;
	if (!rc) {
		struct sm_path p;
		tree_index_path(sm, id, &p);
		rc = open(p.buf, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (rc < 0)
			rc = -errno;
	}
	pthread_rwlock_unlock(&sm->lock);
	return rc;
}

ssize_t sm_read(struct sm *sm, uint64_t id, void *buf, size_t size, off_t off)
{
	int fd = sm_open_fd(sm, id);
	if (fd < 0)
		return fd;
	ssize_t n = pread(fd, buf, size, off);
	if (n < 0)
		n = -errno;
	close(fd);
	return n;
}

ssize_t sm_listxattr(struct sm *sm, uint64_t id, char *buf, size_t size)
{
	char names[65536];
	pthread_rwlock_rdlock(&sm->lock);
	struct sm_path p;
	ssize_t n = tree_path(sm, id, &p);
	if (!n) {
		n = llistxattr(p.buf, names, sizeof(names));
		if (n < 0)
			n = -errno;
		sm_path_release(&p);
	}
	pthread_rwlock_unlock(&sm->lock);
	if (n < 0)
		return n;
	size_t out = 0, plen = strlen(SM_XATTR_PREFIX);
	for (char *name = names; name < names + n; name += strlen(name) + 1) {
		size_t len = strlen(name) + 1;
		if (!strncmp(name, SM_XATTR_PREFIX, plen))
			continue;
		if (size) {
			if (out + len > size)
				return -ERANGE;
			memcpy(buf + out, name, len);
		}
		out += len;
	}
	return (ssize_t)out;
}

ssize_t sm_getxattr(struct sm *sm, uint64_t id, const char *name, void *buf, size_t size)
{
	if (!strncmp(name, SM_XATTR_PREFIX, strlen(SM_XATTR_PREFIX)))
		return -ENODATA; // ours, not the user's
	pthread_rwlock_rdlock(&sm->lock);
	struct sm_path p;
	ssize_t n = tree_path(sm, id, &p);
	if (!n) {
		n = lgetxattr(p.buf, name, buf, size);
		if (n < 0)
			n = -errno;
		sm_path_release(&p);
	}
	pthread_rwlock_unlock(&sm->lock);
	return n;
}

int sm_statfs(struct sm *sm, struct statvfs *st)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/tree", sm->data_dir);
	return statvfs(path, st) ? -errno : 0;
}

struct orphan_walk {
	struct sm *sm;
	int (*fn)(void *arg, uint64_t id);
	void *arg;
};

static int orphan_step(uint64_t id, void *val, void *arg)
{
	struct orphan_walk *w = arg;
	struct sm_obj *o = val;
	if (o->type == S_IFDIR)
		return 0;
	struct sm_path p;
	struct stat st;
	tree_index_path(w->sm, id, &p);
	if (lstat(p.buf, &st) == 0 && st.st_nlink == 1)
		return w->fn(w->arg, id);
	return 0;
}

int sm_each_orphan(struct sm *sm, int (*fn)(void *arg, uint64_t id), void *arg)
{
	struct orphan_walk w = {sm, fn, arg};
	pthread_rwlock_rdlock(&sm->lock);
	int rc = tree_map_each(&sm->by_id, orphan_step, &w);
	pthread_rwlock_unlock(&sm->lock);
	return rc;
}

int sm_orphan_released_by(struct sm *sm, uint64_t id, uint32_t node)
{
	uint32_t ids[SM_MAX_VOTERS + 1];
	struct sm_path p;
	struct stat st;
	int rc = 0;
	pthread_rwlock_rdlock(&sm->lock);
	struct sm_obj *o = tree_get(sm, id);
	if (o && o->type != S_IFDIR) {
		tree_index_path(sm, id, &p);
		if (lstat(p.buf, &st))
			rc = errno == ENOENT ? 0 : -errno;
		else if (st.st_nlink == 1 && (rc = tree_read_released(p.buf, ids)) > 0) {
			int n = rc;
			rc = 0;
			for (int i = 0; i < n; i++)
				if (ids[i] == node)
					rc = 1;
		}
	}
	pthread_rwlock_unlock(&sm->lock);
	return rc;
}

int sm_deleg_mode(struct sm *sm, uint64_t dir, uint32_t *holder, uint64_t *epoch,
		  bool *close_behind)
{
	int rc = 0;
	pthread_rwlock_rdlock(&sm->lock);
	struct sm_obj *o = tree_get(sm, dir);
	if (!o)
		rc = -ENOENT;
	else if (o->type != S_IFDIR)
		rc = -ENOTDIR;
	else {
		*holder = o->holder;
		*epoch = o->epoch;
		*close_behind = o->holder && (o->deleg_flags & SM_DELEG_CLOSE_BEHIND);
	}
	pthread_rwlock_unlock(&sm->lock);
	return rc;
}

int sm_deleg(struct sm *sm, uint64_t dir, uint32_t *holder, uint64_t *epoch)
{
	bool close_behind;
	return sm_deleg_mode(sm, dir, holder, epoch, &close_behind);
}
