// sm_image_meta.c — the metadata of an image made while apply goes on: what the walk takes
// of one object (attributes, xattrs, symlink target, a directory's listing), live or from
// the pre-image sm's meta hook saved before apply changed it; the job's lock.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "sm_image.h"
#include "sm_impl.h"

// ---- the job's lock ----

void img_lock_walk(struct sm_snap_job *j)
{
	pthread_mutex_lock(&j->mu);
	// A hook holds up apply: it goes before the walk's next object, or a
	// walk that takes one object after another could keep it waiting.
	while (__atomic_load_n(&j->hooks_waiting, __ATOMIC_ACQUIRE) > 0)
		pthread_cond_wait(&j->cv, &j->mu);
}

void img_lock_hook(struct sm_snap_job *j)
{
	__atomic_add_fetch(&j->hooks_waiting, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_lock(&j->mu);
	__atomic_sub_fetch(&j->hooks_waiting, 1, __ATOMIC_ACQ_REL);
}

void img_unlock(struct sm_snap_job *j)
{
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
}

// ---- captures ----

void img_buf_put(struct img_buf *b, const void *data, size_t len)
{
	if (b->err)
		return;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *d;

		while (cap < b->len + len)
			cap *= 2;
		d = realloc(b->data, cap);
		if (!d) {
			b->err = -ENOMEM;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

void img_buf_free(struct img_buf *b)
{
	free(b->data);
	*b = (struct img_buf){0};
}

static void put_u16(struct img_buf *b, uint16_t v)
{
	img_buf_put(b, &v, 2);
}
static void put_u32(struct img_buf *b, uint32_t v)
{
	img_buf_put(b, &v, 4);
}
static void put_u64(struct img_buf *b, uint64_t v)
{
	img_buf_put(b, &v, 8);
}
static void put_name(struct img_buf *b, const char *name)
{
	size_t len = strlen(name);

	put_u16(b, (uint16_t)len);
	img_buf_put(b, name, len);
}

// Whether the image carries xattr name: the user's, and the replicated
// ones of the state machine but id and ctime. (The install's sm_open loads
// delegations and the root's table of start commands from the xattrs, as
// at start; the root's start_since is local, sm_starts.h.)
static bool image_xattr(const char *name)
{
	return strncmp(name, SM_XATTR_PREFIX, strlen(SM_XATTR_PREFIX)) ||
	       !strcmp(name, SM_XATTR_RELEASED) || !strcmp(name, SM_XATTR_DELEG) ||
	       !strcmp(name, SM_XATTR_STARTS);
}

// The attrs block (sm_image.h) of object o found at path.
static int put_attrs(struct sm_snap_job *j, struct img_buf *b, struct sm_obj *o, const char *path,
		     const struct stat *st)
{
	ssize_t len = llistxattr(path, j->xbuf, XATTR_LIST_MAX_BYTES);
	uint32_t n = 0;

	if (len < 0) {
		fprintf(stderr, "sm snapshot: list xattrs of %s: %s\n", path, strerror(errno));
		return -errno;
	}
	for (ssize_t i = 0; i < len; i += (ssize_t)strlen(j->xbuf + i) + 1)
		n += image_xattr(j->xbuf + i);
	put_u32(b, st->st_mode);
	put_u32(b, st->st_uid);
	put_u32(b, st->st_gid);
	put_u64(b, st->st_rdev);
	put_u64(b, S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size);
	put_u64(b, (uint64_t)((int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec));
	put_u64(b, (uint64_t)__atomic_load_n(&o->ctime_ns, __ATOMIC_RELAXED));
	put_u32(b, n);
	for (ssize_t i = 0; i < len; i += (ssize_t)strlen(j->xbuf + i) + 1) {
		const char *name = j->xbuf + i;
		ssize_t vlen;

		if (!image_xattr(name))
			continue;
		vlen = lgetxattr(path, name, j->vbuf, XATTR_VALUE_MAX_BYTES);
		if (vlen < 0) {
			fprintf(stderr, "sm snapshot: get xattr %s of %s: %s\n", name, path,
				strerror(errno));
			return -errno;
		}
		put_name(b, name);
		put_u32(b, (uint32_t)vlen);
		img_buf_put(b, j->vbuf, (size_t)vlen);
	}
	return b->err;
}

// The listing of directory id at path: n, then (id, type, name) per entry.
// Entries are matched to ids by d_ino without a stat where the filesystem
// gives inode numbers there (a stat is the fallback: overlays). Under the
// state machine's lock.
static int put_listing(struct sm *sm, struct img_buf *b, uint64_t id, const char *path)
{
	size_t at = b->len;
	uint32_t n = 0;
	struct dirent *de;
	DIR *d = opendir(path);
	int rc = 0;

	if (!d) {
		rc = -errno;
		fprintf(stderr, "sm snapshot: open directory %s: %s\n", path, strerror(-rc));
		return rc;
	}
	put_u32(b, 0);
	while (!rc && (errno = 0, de = readdir(d))) {
		struct sm_obj *c;
		struct stat cst;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		c = tree_map_get(&sm->by_ino, de->d_ino);
		if (!c || (c->type == S_IFDIR && c->parent != id)) {
			if (fstatat(dirfd(d), de->d_name, &cst, AT_SYMLINK_NOFOLLOW)) {
				rc = -errno;
				fprintf(stderr, "sm snapshot: stat %s/%s: %s\n", path, de->d_name,
					strerror(-rc));
				break;
			}
			c = tree_map_get(&sm->by_ino, cst.st_ino);
		}
		if (!c) {
			fprintf(stderr, "sm snapshot: %s/%s has no id in the tables\n", path,
				de->d_name);
			rc = -EIO;
			break;
		}
		put_u64(b, c->id);
		put_u32(b, c->type);
		put_name(b, de->d_name);
		n++;
	}
	if (!rc && errno)
		rc = -errno;
	closedir(d);
	if (!rc && !b->err)
		memcpy(b->data + at, &n, 4);
	return rc ? rc : b->err;
}

// The live state of object id into b (a capture, sm_image.h). Under the
// job's lock; takes the state machine's read lock (paths, tables).
static int capture(struct sm_snap_job *j, uint64_t id, struct img_buf *b)
{
	struct sm *sm = j->sm;
	struct sm_path p = {.fd = -1};
	struct sm_obj *o;
	struct stat st;
	size_t at;
	int rc;

	b->len = 0;
	b->err = 0;
	pthread_rwlock_rdlock(&sm->lock);
	o = tree_get(sm, id);
	rc = o ? tree_path(sm, id, &p) : -ENOENT;
	if (rc) {
		fprintf(stderr, "sm snapshot: resolve object %016llx: %s\n",
			(unsigned long long)id, strerror(-rc));
		goto out;
	}
	if (lstat(p.buf, &st)) {
		rc = -errno;
		fprintf(stderr, "sm snapshot: stat %s: %s\n", p.buf, strerror(-rc));
		goto out;
	}
	at = b->len;
	put_u32(b, 0);
	rc = put_attrs(j, b, o, p.buf, &st);
	if (!rc && S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(p.buf, target, sizeof(target));

		if (n < 0) {
			rc = -errno;
			fprintf(stderr, "sm snapshot: read link %s: %s\n", p.buf, strerror(-rc));
			goto out;
		}
		put_u32(b, (uint32_t)n);
		img_buf_put(b, target, (size_t)n);
	}
	if (!rc && !b->err) {
		uint32_t blob = (uint32_t)(b->len - at - 4);

		memcpy(b->data + at, &blob, 4);
	}
	if (!rc && S_ISDIR(st.st_mode))
		rc = put_listing(sm, b, id, p.buf);
	if (!rc)
		rc = b->err;
out:
	pthread_rwlock_unlock(&sm->lock);
	sm_path_release(&p);
	return rc;
}

// ---- pre-images in the spool ----

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

// Appends the capture in j->hbuf as the pre-image of id. Under mu.
static int save_pre(struct sm_snap_job *j, uint64_t id)
{
	uint64_t len = j->hbuf.len, off = j->spool_end;
	int rc = pwrite_all(j->spool, &len, 8, off);

	if (!rc)
		rc = pwrite_all(j->spool, j->hbuf.data, j->hbuf.len, off + 8);
	if (!rc)
		rc = tree_map_put(&j->pre, id, (void *)(uintptr_t)(off + 1));
	if (rc) {
		fprintf(stderr, "sm snapshot: saving the pre-image of %016llx in %s/spool: %s\n",
			(unsigned long long)id, j->cow, strerror(-rc));
		return rc;
	}
	j->spool_end = off + 8 + len;
	j->pres++;
	return 0;
}

static int read_pre(struct sm_snap_job *j, uint64_t off, struct img_buf *out)
{
	uint64_t len;
	int rc = pread_all(j->spool, &len, 8, off);

	out->len = 0;
	out->err = 0;
	if (!rc && len > j->spool_end)
		rc = -EIO;
	if (!rc) {
		if (out->cap < len) {
			uint8_t *d = realloc(out->data, len);

			if (!d)
				return -ENOMEM;
			out->data = d;
			out->cap = len;
		}
		rc = pread_all(j->spool, out->data, len, off + 8);
		out->len = len;
	}
	if (rc)
		fprintf(stderr, "sm snapshot: reading a pre-image in %s/spool: %s\n", j->cow,
			strerror(-rc));
	return rc;
}

static uintptr_t done_bits(const struct sm_snap_job *j, uint64_t id)
{
	return (uintptr_t)tree_map_get(&j->done, id);
}

int img_take(struct sm_snap_job *j, uint64_t id, struct img_buf *out, bool *skip)
{
	uintptr_t off;
	int rc;

	*skip = tree_map_get(&j->born, id) || (done_bits(j, id) & IMG_DONE_META);
	if (*skip)
		return 0;
	off = (uintptr_t)tree_map_get(&j->pre, id);
	rc = off ? read_pre(j, off - 1, out) : capture(j, id, out);
	if (!rc)
		rc = tree_map_put(&j->done, id, (void *)(done_bits(j, id) | IMG_DONE_META));
	return rc;
}

struct untaken {
	struct sm_snap_job *j;
	uint64_t *ids;
	size_t n;
};

static int add_untaken(uint64_t id, void *val, void *arg)
{
	struct untaken *u = arg;

	(void)val;
	if (!(done_bits(u->j, id) & IMG_DONE_META) && !tree_map_get(&u->j->born, id))
		u->ids[u->n++] = id;
	return 0;
}

int img_untaken(struct sm_snap_job *j, uint64_t **ids, size_t *n)
{
	struct untaken u = {j, malloc((j->pre.len ? j->pre.len : 1) * sizeof(uint64_t)), 0};

	*ids = u.ids;
	*n = 0;
	if (!u.ids)
		return -ENOMEM;
	tree_map_each(&j->pre, add_untaken, &u);
	*n = u.n;
	return 0;
}

void img_meta_hook(void *arg, uint64_t id, bool created)
{
	struct sm_snap_job *j = arg;
	int rc = 0;

	img_lock_hook(j);
	if (j->finished || j->err)
		goto out;
	if (created) {
		rc = tree_map_put(&j->born, id, (void *)1);
	} else if (tree_get(j->sm, id) && !tree_map_get(&j->born, id) &&
		   !(done_bits(j, id) & IMG_DONE_META) && !tree_map_get(&j->pre, id)) {
		// Apply thread: the tables are its own to read. The first change
		// of an object the walk has not taken: keep it as it was.
		rc = capture(j, id, &j->hbuf);
		if (!rc)
			rc = save_pre(j, id);
	}
	if (rc) {
		fprintf(stderr,
			"sm snapshot: image at %llu: keeping object %016llx as it was before it "
			"changes: %s\n",
			(unsigned long long)j->index, (unsigned long long)id, strerror(-rc));
		j->err = rc;
	}
out:
	img_unlock(j);
}
