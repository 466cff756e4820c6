// The local tree: id tables, path resolution, the id/ctime xattrs, and the scan that rebuilds the
// tables at start.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "sm_impl.h"

// Ids in names and xattrs are 16 lowercase hex digits. The index directory is
// split 256 ways by the low byte of the id, so each bucket holds 1/256 of the
// files (ids of one node are consecutive: they spread evenly).
#define ID_HEX "%016llx"

void sm_path_release(struct sm_path *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

void tree_index_path(struct sm *sm, uint64_t id, struct sm_path *p)
{
	p->fd = -1;
	snprintf(p->buf, sizeof(p->buf), "%s/ids/%02x/" ID_HEX, sm->data_dir, (unsigned)(id & 0xff),
		 (unsigned long long)id);
}

struct sm_obj *tree_get(struct sm *sm, uint64_t id)
{
	return tree_map_get(&sm->by_id, id);
}

// Appends "/name" to p->buf at *len; when it would not fit, opens what is
// there so far as an O_PATH fd and continues relative to it.
static int path_append(struct sm_path *p, size_t *len, const char *name)
{
	size_t n = strlen(name);
	// Keep room for "/proc/self/fd/NNNNNNNNNN/" and the final name.
	if (*len + 1 + n + 300 >= sizeof(p->buf)) {
		int fd = openat(p->fd >= 0 ? p->fd : AT_FDCWD, p->fd >= 0 ? p->buf + 1 : p->buf,
				O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			return -errno;
		if (p->fd >= 0)
			close(p->fd);
		p->fd = fd;
		*len = 0;
		p->buf[0] = 0;
	}
	p->buf[(*len)++] = '/';
	memcpy(p->buf + *len, name, n + 1);
	*len += n;
	return 0;
}

// For a path held relative to an fd, rewrites buf as /proc/self/fd/<fd>/rest.
static int path_finish(struct sm_path *p, size_t len)
{
	if (p->fd < 0)
		return 0;
	char rest[PATH_MAX];
	memcpy(rest, p->buf, len + 1);
	int n = snprintf(p->buf, sizeof(p->buf), "/proc/self/fd/%d%s", p->fd, rest);
	return n < (int)sizeof(p->buf) ? 0 : -ENAMETOOLONG;
}

// Resolves directory d into p (root: DATA/tree).
static int dir_path(struct sm *sm, struct sm_obj *d, struct sm_path *p, size_t *len)
{
	// Collect the names from d up to the root, then append them root first.
	const char *stack[256];
	const char **names = stack;
	size_t cap = 256, depth = 0;
	int rc = 0;
	for (struct sm_obj *o = d; o->id != SM_ROOT_ID;) {
		if (depth == cap) {
			const char **more = malloc(2 * cap * sizeof(*more));
			if (!more) {
				rc = -ENOMEM;
				goto out;
			}
			memcpy(more, names, depth * sizeof(*names));
			if (names != stack)
				free(names);
			names = more;
			cap *= 2;
		}
		names[depth++] = o->name;
		o = tree_get(sm, o->parent);
		if (!o) {
			rc = -EIO; // a directory whose parent is unknown: tables broken
			goto out;
		}
	}
	p->fd = -1;
	*len = (size_t)snprintf(p->buf, sizeof(p->buf), "%s/tree", sm->data_dir);
	while (depth > 0 && rc == 0)
		rc = path_append(p, len, names[--depth]);
out:
	if (names != stack)
		free(names);
	if (rc)
		sm_path_release(p);
	return rc;
}

int tree_path(struct sm *sm, uint64_t id, struct sm_path *p)
{
	struct sm_obj *o = tree_get(sm, id);
	p->fd = -1;
	if (!o)
		return -ENOENT;
	if (o->type != S_IFDIR) {
		tree_index_path(sm, id, p);
		return 0;
	}
	size_t len;
	int rc = dir_path(sm, o, p, &len);
	if (!rc)
		rc = path_finish(p, len);
	if (rc)
		sm_path_release(p);
	return rc;
}

int tree_child_path(struct sm *sm, uint64_t parent, const char *name, struct sm_path *p)
{
	struct sm_obj *d = tree_get(sm, parent);
	p->fd = -1;
	if (!d)
		return -ENOENT;
	if (d->type != S_IFDIR)
		return -ENOTDIR;
	size_t len;
	int rc = dir_path(sm, d, p, &len);
	if (!rc)
		rc = path_append(p, &len, name);
	if (!rc)
		rc = path_finish(p, len);
	if (rc)
		sm_path_release(p);
	return rc;
}

int tree_check_name(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	if (n > NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

int tree_put(struct sm *sm, uint64_t id, uint64_t local_ino, mode_t type, int64_t ctime_ns,
	     uint64_t parent, const char *name)
{
	struct sm_obj *o = tree_get(sm, id);
	bool fresh = !o;
	if (fresh) {
		o = calloc(1, sizeof(*o));
		if (!o)
			return -ENOMEM;
		o->id = id;
	} else if (o->local_ino != local_ino) {
		tree_map_del(&sm->by_ino, o->local_ino);
	}
	o->local_ino = local_ino;
	o->type = type;
	__atomic_store_n(&o->ctime_ns, ctime_ns, __ATOMIC_RELAXED);
	int rc = 0;
	if (type == S_IFDIR)
		rc = tree_move_dir(o, parent, name);
	if (!rc && fresh)
		rc = tree_map_put(&sm->by_id, id, o);
	if (!rc)
		rc = tree_map_put(&sm->by_ino, local_ino, o);
	if (rc && fresh) {
		tree_map_del(&sm->by_id, id);
		free(o->name);
		free(o);
	}
	return rc;
}

int tree_move_dir(struct sm_obj *o, uint64_t parent, const char *name)
{
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	free(o->name);
	o->name = copy;
	o->parent = parent;
	return 0;
}

void tree_drop(struct sm *sm, uint64_t id)
{
	struct sm_obj *o = tree_map_del(&sm->by_id, id);
	if (!o)
		return;
	if (tree_map_get(&sm->by_ino, o->local_ino) == o)
		tree_map_del(&sm->by_ino, o->local_ino);
	free(o->name);
	free(o);
}

static int free_obj(uint64_t key, void *val, void *arg)
{
	struct sm_obj *o = val;
	free(o->name);
	free(o);
	return 0;
}

void tree_free(struct sm *sm)
{
	tree_map_each(&sm->by_id, free_obj, NULL);
	tree_map_free(&sm->by_id);
	tree_map_free(&sm->by_ino);
}

int tree_read_id(const char *path, uint64_t *id)
{
	char buf[17];
	ssize_t n = lgetxattr(path, SM_XATTR_ID, buf, sizeof(buf) - 1);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	char *end;
	*id = strtoull(buf, &end, 16);
	return (n == 16 && *end == 0 && *id != 0) ? 0 : -EIO;
}

void tree_id_text(uint64_t id, char out[17])
{
	snprintf(out, 17, ID_HEX, (unsigned long long)id);
}

int tree_write_id(const char *path, uint64_t id)
{
	char buf[17];
	tree_id_text(id, buf);
	return lsetxattr(path, SM_XATTR_ID, buf, 16, 0) ? -errno : 0;
}

int tree_read_ctime(const char *path, int64_t *ns)
{
	int64_t v;
	ssize_t n = lgetxattr(path, SM_XATTR_CTIME, &v, sizeof(v));
	if (n < 0)
		return -errno;
	if (n != sizeof(v))
		return -EIO;
	*ns = v;
	return 0;
}

int tree_write_ctime(const char *path, int64_t ns)
{
	return lsetxattr(path, SM_XATTR_CTIME, &ns, sizeof(ns), 0) ? -errno : 0;
}

int tree_read_released(const char *path, uint32_t *ids)
{
	ssize_t n = lgetxattr(path, SM_XATTR_RELEASED, ids, (SM_MAX_VOTERS + 1) * sizeof(*ids));
	if (n < 0)
		return errno == ENODATA ? 0 : -errno;
	if (n % sizeof(*ids))
		return -EIO;
	return (int)(n / (ssize_t)sizeof(*ids));
}

int tree_write_released(const char *path, const uint32_t *ids, size_t n)
{
	return lsetxattr(path, SM_XATTR_RELEASED, ids, n * sizeof(*ids), 0) ? -errno : 0;
}

// SM_XATTR_DELEG: holder u32 | epoch u64 [| flags u8], native order (a
// node's own disk). Without flags the old 12 bytes, so a delegation with
// none reads the same on a node that predates them (flags 0: the holder
// closes synchronously, no mount needs to recall before a lookup).
#define DELEG_BYTES 12
#define DELEG_BYTES_FLAGS 13

static int parse_deleg(const uint8_t *buf, ssize_t n, struct sm_obj *o)
{
	o->holder = 0;
	o->epoch = 0;
	o->deleg_flags = 0;
	if (n < 0)
		return errno == ENODATA ? 0 : -errno;
	if (n != DELEG_BYTES && n != DELEG_BYTES_FLAGS)
		return -EIO;
	memcpy(&o->holder, buf, 4);
	memcpy(&o->epoch, buf + 4, 8);
	if (n == DELEG_BYTES_FLAGS)
		o->deleg_flags = buf[DELEG_BYTES];
	return 0;
}

// The same on an open directory (the start-up scan).
static int fd_read_deleg(int fd, struct sm_obj *o)
{
	uint8_t buf[DELEG_BYTES_FLAGS];
	return parse_deleg(buf, fgetxattr(fd, SM_XATTR_DELEG, buf, sizeof(buf)), o);
}

// The xattr's bytes for a delegation; returns their count.
static size_t format_deleg(uint8_t *buf, uint32_t holder, uint64_t epoch, uint8_t flags)
{
	memcpy(buf, &holder, 4);
	memcpy(buf + 4, &epoch, 8);
	if (!flags)
		return DELEG_BYTES;
	buf[DELEG_BYTES] = flags;
	return DELEG_BYTES_FLAGS;
}

int tree_write_deleg(const char *path, uint32_t holder, uint64_t epoch, uint8_t flags)
{
	uint8_t buf[DELEG_BYTES_FLAGS];
	size_t n = format_deleg(buf, holder, epoch, flags);
	return lsetxattr(path, SM_XATTR_DELEG, buf, n, 0) ? -errno : 0;
}

int tree_fwrite_deleg(int fd, uint32_t holder, uint64_t epoch, uint8_t flags)
{
	uint8_t buf[DELEG_BYTES_FLAGS];
	size_t n = format_deleg(buf, holder, epoch, flags);
	return fsetxattr(fd, SM_XATTR_DELEG, buf, n, 0) ? -errno : 0;
}

int tree_stat(struct sm_obj *o, const char *path, struct stat *st)
{
	if (lstat(path, st))
		return -errno;
	tree_stat_fix(o, st);
	return 0;
}

void tree_stat_fix(struct sm_obj *o, struct stat *st)
{
	int64_t ct = __atomic_load_n(&o->ctime_ns, __ATOMIC_RELAXED);
	st->st_ino = o->id;
	st->st_ctim.tv_sec = ct / 1000000000;
	st->st_ctim.tv_nsec = ct % 1000000000;
	if (!S_ISDIR(st->st_mode) && st->st_nlink > 0)
		st->st_nlink--; // the index link is ours, not the user's
}

int tree_dir_nonempty(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	int found = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			found = 1;
			break;
		}
	}
	closedir(d);
	return found;
}

// ---- The scan at start.

static void note_id(struct sm *sm, uint64_t id)
{
	if ((id >> 48) == sm->node_id && (id & 0xffffffffffffULL) >= sm->next_counter)
		sm->next_counter = (id & 0xffffffffffffULL) + 1;
}

static int scan_index(struct sm *sm)
{
	char dir[PATH_MAX];
	for (unsigned b = 0; b < 256; b++) {
		snprintf(dir, sizeof(dir), "%s/ids/%02x", sm->data_dir, b);
		DIR *d = opendir(dir);
		if (!d && errno == ENOENT)
			continue; // bucket not used yet
		if (!d) {
			int err = errno;
			fprintf(stderr, "sm: scan %s: %s\n", dir, strerror(err));
			return -err;
		}
		struct dirent *e;
		int rc = 0;
		while (!rc && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char *end;
			uint64_t id = strtoull(e->d_name, &end, 16);
			if (*end || id == 0)
				continue; // not ours (e.g. a stray file): ignore
			struct sm_path p;
			tree_index_path(sm, id, &p);
			struct stat st;
			int64_t ct = 0;
			if (lstat(p.buf, &st)) {
				rc = -errno;
			} else {
				// A missing ctime means a create cut short by a crash; the
				// redo of that command writes it.
				int r2 = tree_read_ctime(p.buf, &ct);
				if (r2 && r2 != -ENODATA)
					rc = r2;
			}
			if (!rc)
				rc = tree_put(sm, id, st.st_ino, st.st_mode & S_IFMT, ct, 0, NULL);
			if (rc)
				fprintf(stderr, "sm: scan %s: %s\n", p.buf, strerror(-rc));
			note_id(sm, id);
		}
		closedir(d);
		if (rc)
			return rc;
	}
	return 0;
}

// Loads one subdirectory entry of the directory open as d (id `self`).
static int scan_subdir(struct sm *sm, DIR *d, const char *name, uint64_t self, uint64_t **queue,
		       size_t *qlen, size_t *qcap)
{
	int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub < 0) {
		int err = errno;
		fprintf(stderr, "sm: scan directory %s: %s\n", name, strerror(err));
		return -err;
	}
	char idbuf[17];
	ssize_t n = fgetxattr(sub, SM_XATTR_ID, idbuf, 16);
	if (n < 0 && errno == ENODATA) {
		close(sub); // a mkdir cut short by a crash: its redo finishes it
		return 0;
	}
	uint64_t id = 0;
	int64_t ct = 0;
	struct stat st;
	if (n == 16) {
		idbuf[16] = 0;
		id = strtoull(idbuf, NULL, 16);
	}
	int rc = 0;
	if (n != 16 || id == 0 || fstat(sub, &st)) {
		fprintf(stderr, "sm: scan directory %s: bad id xattr\n", name);
		rc = -EIO;
	} else {
		if (fgetxattr(sub, SM_XATTR_CTIME, &ct, sizeof(ct)) != sizeof(ct))
			ct = 0; // cut short by a crash before the ctime was written; redo writes it
		note_id(sm, id);
		rc = tree_put(sm, id, st.st_ino, S_IFDIR, ct, self, name);
		if (!rc && (rc = fd_read_deleg(sub, tree_get(sm, id))))
			fprintf(stderr, "sm: scan directory %s: delegation: %s\n", name,
				strerror(-rc));
	}
	close(sub);
	if (!rc && *qlen == *qcap) {
		uint64_t *more = realloc(*queue, 2 * *qcap * sizeof(**queue));
		if (!more)
			rc = -ENOMEM;
		else {
			*queue = more;
			*qcap *= 2;
		}
	}
	if (!rc)
		(*queue)[(*qlen)++] = id;
	return rc;
}

// Loads every directory of the tree, breadth first, resolving each through
// the table built so far: a constant number of fds whatever the depth.
static int scan_dirs(struct sm *sm)
{
	size_t qcap = 64, qlen = 0;
	uint64_t *queue = malloc(qcap * sizeof(*queue));
	if (!queue)
		return -ENOMEM;
	queue[qlen++] = SM_ROOT_ID;
	int rc = 0;
	for (size_t head = 0; head < qlen && !rc; head++) {
		struct sm_path p;
		rc = tree_path(sm, queue[head], &p);
		if (rc)
			break;
		DIR *d = opendir(p.buf);
		if (!d) {
			rc = -errno;
			fprintf(stderr, "sm: scan %s: %s\n", p.buf, strerror(-rc));
			sm_path_release(&p);
			break;
		}
		struct dirent *e;
		while (!rc && (e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			struct stat st;
			bool dir = e->d_type == DT_DIR;
			if (e->d_type == DT_UNKNOWN) // filesystems without d_type
				dir = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				      S_ISDIR(st.st_mode);
			if (dir)
				rc = scan_subdir(sm, d, e->d_name, queue[head], &queue, &qlen,
						 &qcap);
		}
		closedir(d);
		sm_path_release(&p);
	}
	free(queue);
	return rc;
}

int tree_scan(struct sm *sm)
{
	int rc = scan_index(sm);
	if (rc)
		return rc;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/tree", sm->data_dir);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	int64_t ct = 0;
	if (fd < 0 || fstat(fd, &st)) {
		rc = -errno;
		fprintf(stderr, "sm: open %s: %s\n", path, strerror(-rc));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if (fgetxattr(fd, SM_XATTR_CTIME, &ct, sizeof(ct)) != sizeof(ct))
		ct = 0;
	rc = tree_put(sm, SM_ROOT_ID, st.st_ino, S_IFDIR, ct, SM_ROOT_ID, "");
	if (!rc && (rc = fd_read_deleg(fd, tree_get(sm, SM_ROOT_ID))))
		fprintf(stderr, "sm: scan %s: delegation: %s\n", path, strerror(-rc));
	close(fd);
	return rc ? rc : scan_dirs(sm);
}
