// Snapshot images of the state machine: streamed out of a live data dir, installed beside it.
//
// Image format (all integers little-endian, as this machine writes them):
//   header  "RFSSNAP1" | version u32 | index u64 | dedup_len u64 | dedup table
//   'D'     id u64 | parent u64 | name_len u16 | name | attrs
//           directories, each after its parent (the root: id 1, parent 0, "")
//   'F'     id u64 | attrs | [symlink: target_len u32 | target]
//           | n_links u32 | n_links x (parent u64 | name_len u16 | name)
//           | [regular: extents (offset u64 | len u64 | bytes), ended by len 0]
//           every other object; an orphan (open but unlinked) has no link
//   'E'     end | checksum u64 (FNV-1a 64 of every byte before it)
//   attrs = mode u32 | uid u32 | gid u32 | rdev u64 | size u64 | mtime_ns i64
//           | ctime_ns i64 (replicated) | n_xattrs u32 | n x (name_len u16 |
//           name | value_len u32 | value)   (user-visible xattrs,
//           trusted.raftfs.released of an orphan, trusted.raftfs.deleg of a
//           delegated directory)
//
// Installing builds DATA/snap/new/{tree,ids,sm} from the image, then
// DATA/snap/INSTALL (durable) says "the new state wins": tree/, ids/ and sm/
// are moved to DATA/snap/old/ and the new ones into place. Recovery after a
// crash: with the marker, finish the moves (each is a rename, redone only if
// not done); without it, drop DATA/snap/new. Either way DATA/snap/old goes.
#include "sm_snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "dedup.h"
#include "sm_impl.h"

#define SNAP_MAGIC "RFSSNAP1"
#define SNAP_VERSION 1u
#define BUF_BYTES (256u << 10)
#define EXTENT_MAX (1u << 20)
#define XATTR_LIST_MAX_BYTES 65536
#define XATTR_VALUE_MAX_BYTES 65536
#define DEDUP_MAGIC 0x44505552u // DATA/sm/dedup, as sm.c writes it
#define ID_HEX_FMT "%016llx"
// Of the state machine's own xattrs, the image carries the replicated ones
// besides id and ctime (which have their own fields): the set of nodes that
// released an orphan and a directory's delegation (fs/sm_impl.h).
#ifndef SM_XATTR_RELEASED
#define SM_XATTR_RELEASED "trusted.raftfs.released"
#endif

static const char *const parts[] = {"tree", "ids", "sm"};

// ---- checksum ----

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * FNV_PRIME;
	return h;
}

// ---- the writer ----

struct writer {
	sm_snap_sink sink;
	void *arg;
	uint8_t *buf;
	size_t used;
	uint64_t hash;
	int err;
};

static void w_flush(struct writer *w)
{
	if (!w->err && w->used)
		w->err = w->sink(w->arg, w->buf, w->used);
	w->used = 0;
}

static void w_put(struct writer *w, const void *data, size_t len)
{
	const uint8_t *p = data;

	w->hash = fnv(w->hash, data, len);
	while (len && !w->err) {
		size_t n = BUF_BYTES - w->used < len ? BUF_BYTES - w->used : len;

		memcpy(w->buf + w->used, p, n);
		w->used += n;
		p += n;
		len -= n;
		if (w->used == BUF_BYTES)
			w_flush(w);
	}
}

static void w_u8(struct writer *w, uint8_t v)
{
	w_put(w, &v, 1);
}
static void w_u16(struct writer *w, uint16_t v)
{
	w_put(w, &v, 2);
}
static void w_u32(struct writer *w, uint32_t v)
{
	w_put(w, &v, 4);
}
static void w_u64(struct writer *w, uint64_t v)
{
	w_put(w, &v, 8);
}

static void w_name(struct writer *w, const char *name)
{
	size_t len = strlen(name);

	w_u16(w, (uint16_t)len);
	w_put(w, name, len);
}

// ---- the reader ----

struct reader {
	sm_snap_source src;
	void *arg;
	uint8_t *buf;
	size_t pos, len;
	uint64_t hash;
	int err;
};

static int r_fill(struct reader *r)
{
	ssize_t n = r->src(r->arg, r->buf, BUF_BYTES);

	if (n < 0)
		return (int)n;
	r->pos = 0;
	r->len = (size_t)n;
	return n == 0 ? -EBADMSG : 0;
}

// Reads len bytes into out (hashing them unless raw). Sets r->err.
static int r_get_raw(struct reader *r, void *out, size_t len, bool hashed)
{
	uint8_t *p = out;

	while (len && !r->err) {
		if (r->pos == r->len && (r->err = r_fill(r)))
			break;
		size_t n = r->len - r->pos < len ? r->len - r->pos : len;

		memcpy(p, r->buf + r->pos, n);
		if (hashed)
			r->hash = fnv(r->hash, p, n);
		r->pos += n;
		p += n;
		len -= n;
	}
	return r->err;
}

static int r_get(struct reader *r, void *out, size_t len)
{
	return r_get_raw(r, out, len, true);
}

static uint8_t r_u8(struct reader *r)
{
	uint8_t v = 0;

	r_get(r, &v, 1);
	return v;
}
static uint16_t r_u16(struct reader *r)
{
	uint16_t v = 0;

	r_get(r, &v, 2);
	return v;
}
static uint32_t r_u32(struct reader *r)
{
	uint32_t v = 0;

	r_get(r, &v, 4);
	return v;
}
static uint64_t r_u64(struct reader *r)
{
	uint64_t v = 0;

	r_get(r, &v, 8);
	return v;
}

// Reads a name (1..255 bytes, no '/', not . or ..) into out[256].
static int r_name(struct reader *r, char *out, bool may_be_empty)
{
	uint16_t len = r_u16(r);

	if (r->err)
		return r->err;
	if (len > 255 || (!len && !may_be_empty))
		return r->err = -EBADMSG;
	if (r_get(r, out, len))
		return r->err;
	out[len] = 0;
	if (memchr(out, '/', len) || memchr(out, 0, len) ||
	    (len && (!strcmp(out, ".") || !strcmp(out, ".."))))
		return r->err = -EBADMSG;
	return 0;
}

// ---- helpers ----

int sm_snap_fd_sink(void *arg, const void *buf, size_t len)
{
	int fd = *(int *)arg;
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t sm_snap_fd_source(void *arg, void *buf, size_t len)
{
	int fd = *(int *)arg;
	ssize_t n;

	do
		n = read(fd, buf, len);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if ((flag == FTW_DP ? rmdir(path) : unlink(path)) && errno != ENOENT)
		fprintf(stderr, "sm snapshot: remove %s: %s\n", path, strerror(errno));
	return 0;
}

// Removes path and everything under it (absent is fine).
static void rm_tree(const char *path)
{
	nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0 || fsync(fd))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

// ---- making an image ----

// The names of one non-directory: (parent, name) pairs.
struct links {
	size_t n, cap;
	struct {
		uint64_t parent;
		char *name;
	} * v;
};

struct sm_snap_job;

struct maker {
	struct sm *sm;
	struct sm_snap_job *job; // where the image goes (copy-on-write, below)
	struct writer w;
	struct tree_map links; // id -> struct links *
	uint64_t *queue;       // directories to visit (BFS: parents first)
	size_t q_head, q_len, q_cap;
	char *xbuf; // listxattr buffer
	char *vbuf; // one xattr value
};

static int add_link(struct maker *m, uint64_t id, uint64_t parent, const char *name)
{
	struct links *l = tree_map_get(&m->links, id);

	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l || tree_map_put(&m->links, id, l)) {
			free(l);
			return -ENOMEM;
		}
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 2;
		void *v = realloc(l->v, cap * sizeof(*l->v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n].parent = parent;
	l->v[l->n].name = strdup(name);
	if (!l->v[l->n].name)
		return -ENOMEM;
	l->n++;
	return 0;
}

static int free_links(uint64_t key, void *val, void *arg)
{
	struct links *l = val;

	(void)key;
	(void)arg;
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	free(l);
	return 0;
}

static int enqueue(struct maker *m, uint64_t id)
{
	if (m->q_len == m->q_cap) {
		size_t cap = m->q_cap ? 2 * m->q_cap : 256;
		uint64_t *q = realloc(m->queue, cap * sizeof(*q));

		if (!q)
			return -ENOMEM;
		m->queue = q;
		m->q_cap = cap;
	}
	m->queue[m->q_len++] = id;
	return 0;
}

// Whether the image carries xattr name: the user's, and the replicated
// ones of the state machine but id and ctime. (The install's sm_open loads
// delegations from the xattr, as at start.)
static bool image_xattr(const char *name)
{
	return strncmp(name, SM_XATTR_PREFIX, strlen(SM_XATTR_PREFIX)) ||
	       !strcmp(name, SM_XATTR_RELEASED) || !strcmp(name, SM_XATTR_DELEG);
}

// Writes the attrs block of object o found at path.
static int put_attrs(struct maker *m, struct sm_obj *o, const char *path, const struct stat *st)
{
	ssize_t len = llistxattr(path, m->xbuf, XATTR_LIST_MAX_BYTES);
	uint32_t n = 0;

	if (len < 0) {
		fprintf(stderr, "sm snapshot: list xattrs of %s: %s\n", path, strerror(errno));
		return -errno;
	}
	for (ssize_t i = 0; i < len; i += (ssize_t)strlen(m->xbuf + i) + 1)
		n += image_xattr(m->xbuf + i);
	w_u32(&m->w, st->st_mode);
	w_u32(&m->w, st->st_uid);
	w_u32(&m->w, st->st_gid);
	w_u64(&m->w, st->st_rdev);
	w_u64(&m->w, S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size);
	w_u64(&m->w, (uint64_t)((int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec));
	w_u64(&m->w, (uint64_t)__atomic_load_n(&o->ctime_ns, __ATOMIC_RELAXED));
	w_u32(&m->w, n);
	for (ssize_t i = 0; i < len; i += (ssize_t)strlen(m->xbuf + i) + 1) {
		const char *name = m->xbuf + i;
		ssize_t vlen;

		if (!image_xattr(name))
			continue;
		vlen = lgetxattr(path, name, m->vbuf, XATTR_VALUE_MAX_BYTES);
		if (vlen < 0) {
			fprintf(stderr, "sm snapshot: get xattr %s of %s: %s\n", name, path,
				strerror(errno));
			return -errno;
		}
		w_name(&m->w, name);
		w_u32(&m->w, (uint32_t)vlen);
		w_put(&m->w, m->vbuf, (size_t)vlen);
	}
	return m->w.err;
}

// Emits directory id and queues its subdirectories; records the names of
// everything else in it.
static int visit_dir(struct maker *m, uint64_t id)
{
	struct sm_obj *o = tree_get(m->sm, id);
	struct sm_path p;
	struct stat st;
	struct dirent *de;
	DIR *d;
	int rc;

	if (!o || o->type != S_IFDIR)
		return -EIO;
	rc = tree_path(m->sm, id, &p);
	if (rc)
		return rc;
	if (lstat(p.buf, &st)) {
		rc = -errno;
		fprintf(stderr, "sm snapshot: stat %s: %s\n", p.buf, strerror(-rc));
		goto out;
	}
	w_u8(&m->w, 'D');
	w_u64(&m->w, id);
	w_u64(&m->w, id == SM_ROOT_ID ? 0 : o->parent);
	w_name(&m->w, id == SM_ROOT_ID ? "" : o->name);
	rc = put_attrs(m, o, p.buf, &st);
	if (rc)
		goto out;
	d = opendir(p.buf);
	if (!d) {
		rc = -errno;
		fprintf(stderr, "sm snapshot: open directory %s: %s\n", p.buf, strerror(-rc));
		goto out;
	}
	while (!rc && (errno = 0, de = readdir(d))) {
		struct stat cst;
		struct sm_obj *c;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		// d_ino is the inode number on the filesystems a data dir lives
		// on; a stat is the fallback where it is not (overlays).
		c = tree_map_get(&m->sm->by_ino, de->d_ino);
		if (!c || (c->type == S_IFDIR && c->parent != id)) {
			if (fstatat(dirfd(d), de->d_name, &cst, AT_SYMLINK_NOFOLLOW)) {
				rc = -errno;
				break;
			}
			c = tree_map_get(&m->sm->by_ino, cst.st_ino);
		}
		if (!c) {
			fprintf(stderr, "sm snapshot: %s/%s has no id in the tables\n", p.buf,
				de->d_name);
			rc = -EIO;
		} else if (c->type == S_IFDIR) {
			rc = enqueue(m, c->id);
		} else {
			rc = add_link(m, c->id, id, de->d_name);
		}
	}
	if (!rc && errno)
		rc = -errno;
	closedir(d);
out:
	sm_path_release(&p);
	return rc;
}

// Where the extents of regular file id go: the spool gets a marker, the
// stream puts the file's data there (copy-on-write images, below).
static int mark_extents(struct maker *m, uint64_t id);

static int visit_nondir(uint64_t id, void *val, void *arg)
{
	struct maker *m = arg;
	struct sm_obj *o = val;
	struct links *l;
	struct sm_path p;
	struct stat st;
	int rc = 0;

	if (o->type == S_IFDIR)
		return 0;
	tree_index_path(m->sm, id, &p);
	if (lstat(p.buf, &st)) {
		fprintf(stderr, "sm snapshot: stat %s: %s\n", p.buf, strerror(errno));
		return -errno;
	}
	w_u8(&m->w, 'F');
	w_u64(&m->w, id);
	rc = put_attrs(m, o, p.buf, &st);
	if (!rc && S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(p.buf, target, sizeof(target));

		if (n < 0)
			return -errno;
		w_u32(&m->w, (uint32_t)n);
		w_put(&m->w, target, (size_t)n);
	}
	l = tree_map_get(&m->links, id);
	w_u32(&m->w, l ? (uint32_t)l->n : 0);
	for (size_t i = 0; l && i < l->n; i++) {
		w_u64(&m->w, l->v[i].parent);
		w_name(&m->w, l->v[i].name);
	}
	if (!rc && S_ISREG(st.st_mode))
		rc = mark_extents(m, id);
	return rc ? rc : m->w.err;
}

// ---- copy-on-write images ----
//
// An image is made in two steps, so that apply pauses only for the first.
// sm_snapshot_begin (apply thread, between two applies) writes everything
// but the contents of regular files (names, attributes, xattrs, symlink
// targets, the duplicate table) into a spool file, with a marker where each
// file's extents go, and starts watching content changes (sm's content
// hook). sm_snapshot_stream (another thread, while apply goes on) copies the
// spool to the sink and reads each file's extents from the live file;
// unless apply was about to change that file before the stream got past
// it: the hook has then copied the file aside first (DATA/snap/cow/<id>,
// holes kept), as it was at the image's index, and the stream reads the
// copy. The hook and the stream hold job->mu around every piece they copy
// or read, so no piece is read half-changed: a file is either unchanged
// since the index, or read from its copy.
//
// Spool records: 'B' len u32 | len image bytes, or 'X' id u64 (the extents of
// file id go here).

#define SPOOL_BUF (256u << 10)

struct sm_snap_job {
	struct sm *sm;
	uint64_t index;
	int spool;     // unnamed file in DATA/snap/cow
	uint8_t *sbuf; // spool writes, buffered (begin only)
	size_t sused;
	char cow[PATH_MAX / 2]; // DATA/snap/cow
	struct tree_map files;	// id -> ordinal + 1 of each regular file in the image
	uint64_t n_files;

	pthread_mutex_t mu;	// the hook (apply thread) against the stream
	struct tree_map copied; // under mu: id -> (void *)1 once copied aside
	uint64_t next;		// under mu: ordinal of the file the stream is at
	uint64_t copies;	// under mu: files copied aside
	int err;		// under mu: a failed copy voids the image
};

static int spool_flush(struct sm_snap_job *j)
{
	int rc = sm_snap_fd_sink(&j->spool, j->sbuf, j->sused);

	j->sused = 0;
	return rc;
}

static int spool_put(struct sm_snap_job *j, const void *buf, size_t len)
{
	if (j->sused + len > SPOOL_BUF) {
		int rc = spool_flush(j);

		if (rc)
			return rc;
		if (len > SPOOL_BUF)
			return sm_snap_fd_sink(&j->spool, buf, len);
	}
	memcpy(j->sbuf + j->sused, buf, len);
	j->sused += len;
	return 0;
}

// The maker's sink in begin: image bytes become a 'B' record.
static int spool_sink(void *arg, const void *buf, size_t len)
{
	struct sm_snap_job *j = arg;
	uint8_t hdr[5] = {'B'};
	uint32_t l = (uint32_t)len;
	int rc;

	memcpy(hdr + 1, &l, 4);
	rc = spool_put(j, hdr, sizeof(hdr));
	return rc ? rc : spool_put(j, buf, len);
}

static int mark_extents(struct maker *m, uint64_t id)
{
	struct sm_snap_job *j = m->job;
	uint8_t rec[9] = {'X'};
	int rc;

	w_flush(&m->w); // the bytes before the extents go first
	if (m->w.err)
		return m->w.err;
	memcpy(rec + 1, &id, 8);
	rc = tree_map_put(&j->files, id, (void *)(uintptr_t)(++j->n_files));
	return rc ? rc : spool_put(j, rec, sizeof(rec));
}

// Reads the next piece of data of fd at or after *off (holes skipped):
// *n bytes (0 at the end) at *at.
static int read_piece(int fd, uint8_t *buf, off_t off, off_t *at, size_t *n)
{
	off_t data = lseek(fd, off, SEEK_DATA), hole;
	ssize_t got;

	*n = 0;
	if (data < 0)
		return errno == ENXIO ? 0 : -errno;
	hole = lseek(fd, data, SEEK_HOLE);
	if (hole < 0)
		return -errno;
	got = pread(fd, buf, hole - data < EXTENT_MAX ? (size_t)(hole - data) : EXTENT_MAX, data);
	if (got <= 0)
		return got < 0 ? -errno : -EIO;
	*at = data;
	*n = (size_t)got;
	return 0;
}

static void cow_path(const struct sm_snap_job *j, uint64_t id, char *out, size_t len)
{
	snprintf(out, len, "%s/" ID_HEX_FMT, j->cow, (unsigned long long)id);
}

// Copies [off, off + len) of in to out at the same offset.
static int copy_range(int in, int out, off_t off, off_t len)
{
	static __thread uint8_t buf[64 << 10];
	loff_t a = off, b = off;

	while (len > 0) {
		ssize_t n = copy_file_range(in, &a, out, &b, (size_t)len, 0);

		if (n < 0 &&
		    (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
			n = pread(in, buf, len < (off_t)sizeof(buf) ? (size_t)len : sizeof(buf), a);
			if (n > 0 && pwrite(out, buf, (size_t)n, b) != n)
				n = -1;
			if (n > 0) {
				a += n;
				b += n;
			}
		}
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		len -= n;
	}
	return 0;
}

// Copies file id as it is now (data extents, holes kept, size) to its
// place in DATA/snap/cow. Under j->mu.
static int copy_aside(struct sm_snap_job *j, uint64_t id)
{
	struct sm_path p;
	char to[PATH_MAX];
	int in, out = -1, rc = 0;
	off_t end, off = 0;

	tree_index_path(j->sm, id, &p);
	cow_path(j, id, to, sizeof(to));
	in = open(p.buf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in >= 0)
		out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	end = in >= 0 && out >= 0 ? lseek(in, 0, SEEK_END) : -1;
	if (end < 0)
		rc = -errno;
	while (!rc && off < end) {
		off_t data = lseek(in, off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;
		hole = data < 0 ? -1 : lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			rc = -errno;
		else
			rc = copy_range(in, out, data, hole - data);
		off = hole;
	}
	if (!rc && ftruncate(out, end))
		rc = -errno;
	if (rc)
		fprintf(stderr, "sm snapshot: copying %s aside to %s before it changes: %s\n",
			p.buf, to, strerror(-rc));
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return rc;
}

// sm's content hook while an image streams: file id is about to change.
static void cow_hook(void *arg, uint64_t id)
{
	struct sm_snap_job *j = arg;
	uintptr_t ord = (uintptr_t)tree_map_get(&j->files, id); // read-only after begin

	if (!ord)
		return; // not in the image (made after it), or no regular file
	pthread_mutex_lock(&j->mu);
	if (!j->err && ord - 1 >= j->next && !tree_map_get(&j->copied, id)) {
		int rc = copy_aside(j, id);

		if (!rc)
			rc = tree_map_put(&j->copied, id, (void *)1);
		if (rc)
			j->err = rc;
		else
			j->copies++;
	}
	pthread_mutex_unlock(&j->mu);
}

// Writes the extents of file id (ordinal ord) from the live file, or from
// its copy once the hook made one.
static int stream_file(struct sm_snap_job *j, struct writer *w, uint8_t *data, uint64_t id)
{
	uint64_t ord = (uintptr_t)tree_map_get(&j->files, id) - 1;
	struct sm_path p;
	bool on_copy = false;
	int fd = -1, rc = 0;
	off_t off = 0;

	pthread_mutex_lock(&j->mu);
	j->next = ord;
	pthread_mutex_unlock(&j->mu);
	while (!rc) {
		off_t at = 0;
		size_t n = 0;

		pthread_mutex_lock(&j->mu);
		rc = j->err;
		if (!rc && !on_copy && tree_map_get(&j->copied, id)) {
			if (fd >= 0)
				close(fd);
			fd = -1;
			on_copy = true;
		}
		if (!rc && fd < 0) {
			tree_index_path(j->sm, id, &p);
			if (on_copy)
				cow_path(j, id, p.buf, sizeof(p.buf));
			fd = open(p.buf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0) {
				rc = -errno;
				fprintf(stderr, "sm snapshot: open %s: %s\n", p.buf, strerror(-rc));
			}
		}
		if (!rc) {
			rc = read_piece(fd, data, off, &at, &n);
			if (rc)
				fprintf(stderr, "sm snapshot: read %s: %s\n", p.buf, strerror(-rc));
		}
		pthread_mutex_unlock(&j->mu);
		if (rc || n == 0)
			break;
		w_u64(w, (uint64_t)at);
		w_u64(w, (uint64_t)n);
		w_put(w, data, n);
		off = at + (off_t)n;
		rc = w->err;
	}
	if (fd >= 0)
		close(fd);
	w_u64(w, 0);
	w_u64(w, 0);
	pthread_mutex_lock(&j->mu);
	j->next = ord + 1;
	pthread_mutex_unlock(&j->mu);
	if (on_copy) {
		cow_path(j, id, p.buf, sizeof(p.buf));
		unlink(p.buf); // the stream is past it: no longer needed
	}
	return rc ? rc : w->err;
}

int sm_snapshot_begin(struct sm *sm, struct sm_snap_job **out, uint64_t *index)
{
	struct maker m = {.sm = sm};
	struct sm_snap_job *j;
	char path[PATH_MAX];
	uint8_t *dd = NULL;
	size_t dd_len = 0;
	int rc;

	*out = NULL;
	if (sm->fault)
		return sm->fault;
	if (sm->redo_pending || sm->content_hook)
		return -EBUSY; // half a command applied, or another image under way
	if (strlen(sm->data_dir) > sizeof(j->cow) - 16)
		return -ENAMETOOLONG;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->sm = sm;
	j->index = sm->applied;
	j->spool = -1;
	pthread_mutex_init(&j->mu, NULL);
	snprintf(path, sizeof(path), "%s/snap", sm->data_dir);
	snprintf(j->cow, sizeof(j->cow), "%s/snap/cow", sm->data_dir);
	rc = tree_map_init(&j->files);
	if (!rc)
		rc = tree_map_init(&j->copied);
	if (!rc) {
		rm_tree(j->cow); // a crashed run's copies
		if ((mkdir(path, 0700) && errno != EEXIST) || mkdir(j->cow, 0700))
			rc = -errno;
	}
	if (!rc) {
		snprintf(path, sizeof(path), "%s/spool", j->cow);
		j->spool = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (j->spool < 0 || unlink(path))
			rc = -errno;
	}
	if (rc) {
		fprintf(stderr, "sm snapshot: preparing %s for an image: %s\n", j->cow,
			strerror(-rc));
		goto out;
	}
	m.job = j;
	m.w = (struct writer){.sink = spool_sink, .arg = j, .hash = FNV_OFFSET};
	m.w.buf = malloc(BUF_BYTES);
	m.xbuf = malloc(XATTR_LIST_MAX_BYTES);
	m.vbuf = malloc(XATTR_VALUE_MAX_BYTES);
	j->sbuf = malloc(SPOOL_BUF);
	rc = !m.w.buf || !m.xbuf || !m.vbuf || !j->sbuf ? -ENOMEM : tree_map_init(&m.links);
	if (!rc)
		rc = dedup_serialize(sm->dd, &dd, &dd_len);
	if (rc)
		goto out;
	w_put(&m.w, SNAP_MAGIC, 8);
	w_u32(&m.w, SNAP_VERSION);
	w_u64(&m.w, sm->applied);
	w_u64(&m.w, dd_len);
	w_put(&m.w, dd, dd_len);
	// Directories breadth first from the root, so a parent always comes
	// before its children; their walk also finds every name of the rest.
	rc = enqueue(&m, SM_ROOT_ID);
	while (!rc && m.q_head < m.q_len)
		rc = visit_dir(&m, m.queue[m.q_head++]);
	if (!rc)
		rc = tree_map_each(&sm->by_id, visit_nondir, &m);
	if (!rc) {
		w_flush(&m.w);
		rc = m.w.err ? m.w.err : spool_flush(j);
	}
out:
	if (m.links.keys) {
		tree_map_each(&m.links, free_links, NULL);
		tree_map_free(&m.links);
	}
	free(dd);
	free(m.queue);
	free(m.w.buf);
	free(m.xbuf);
	free(m.vbuf);
	free(j->sbuf);
	j->sbuf = NULL;
	if (rc) {
		fprintf(stderr, "sm snapshot: image of %s at %llu failed: %s\n", sm->data_dir,
			(unsigned long long)sm->applied, strerror(-rc));
		sm_snapshot_end(j);
		return rc;
	}
	sm_set_content_hook(sm, cow_hook, j);
	*index = j->index;
	*out = j;
	return 0;
}

// Reads up to len bytes of the spool at *pos; the count (0 at its end).
static ssize_t spool_read(const struct sm_snap_job *j, void *buf, size_t len, uint64_t *pos)
{
	ssize_t n;

	do
		n = pread(j->spool, buf, len, (off_t)*pos);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	*pos += (uint64_t)n;
	return n;
}

// Copies the spool into w, with the files' extents at the markers.
static int stream_spool(struct sm_snap_job *j, struct writer *w, uint8_t *buf, uint8_t *data)
{
	uint64_t pos = 0;

	for (;;) {
		uint8_t hdr[9];
		uint32_t len;
		uint64_t id;
		ssize_t n = spool_read(j, hdr, 1, &pos);
		int rc;

		if (n <= 0)
			return (int)n; // 0: its end
		if (hdr[0] == 'X') {
			if (spool_read(j, &id, 8, &pos) != 8)
				return -EIO;
			rc = stream_file(j, w, data, id);
			if (rc)
				return rc;
			continue;
		}
		if (hdr[0] != 'B' || spool_read(j, &len, 4, &pos) != 4)
			return -EIO;
		while (len) {
			n = spool_read(j, buf, len < BUF_BYTES ? len : BUF_BYTES, &pos);
			if (n <= 0)
				return n < 0 ? (int)n : -EIO;
			w_put(w, buf, (size_t)n);
			len -= (uint32_t)n;
		}
		if (w->err)
			return w->err;
	}
}

int sm_snapshot_stream(struct sm_snap_job *j, sm_snap_sink sink, void *arg)
{
	struct writer w = {.sink = sink, .arg = arg, .hash = FNV_OFFSET};
	uint8_t *buf = malloc(BUF_BYTES), *data = malloc(EXTENT_MAX);
	uint64_t copies;
	int rc;

	w.buf = malloc(BUF_BYTES);
	rc = !buf || !data || !w.buf ? -ENOMEM : stream_spool(j, &w, buf, data);
	if (!rc) {
		uint64_t h;

		w_u8(&w, 'E');
		h = w.hash;
		w_u64(&w, h);
		w_flush(&w);
		rc = w.err;
	}
	pthread_mutex_lock(&j->mu);
	j->next = UINT64_MAX; // nothing more to copy aside
	if (rc && !j->err)
		j->err = rc;
	copies = j->copies;
	pthread_mutex_unlock(&j->mu);
	if (rc)
		fprintf(stderr, "sm snapshot: streaming the image of %s at %llu failed: %s\n",
			j->sm->data_dir, (unsigned long long)j->index, strerror(-rc));
	else if (copies)
		fprintf(stderr,
			"sm snapshot: image at %llu: %llu files copied aside before "
			"apply changed them\n",
			(unsigned long long)j->index, (unsigned long long)copies);
	free(buf);
	free(data);
	free(w.buf);
	return rc;
}

void sm_snapshot_end(struct sm_snap_job *j)
{
	if (!j)
		return;
	if (j->sm->content_hook == cow_hook && j->sm->content_hook_arg == j)
		sm_set_content_hook(j->sm, NULL, NULL);
	if (j->spool >= 0)
		close(j->spool);
	rm_tree(j->cow);
	if (j->files.keys)
		tree_map_free(&j->files);
	if (j->copied.keys)
		tree_map_free(&j->copied);
	pthread_mutex_destroy(&j->mu);
	free(j->sbuf);
	free(j);
}

int sm_snapshot_make(struct sm *sm, sm_snap_sink sink, void *arg, uint64_t *index)
{
	struct sm_snap_job *j;
	int rc = sm_snapshot_begin(sm, &j, index);

	if (rc)
		return rc;
	rc = sm_snapshot_stream(j, sink, arg);
	sm_snapshot_end(j);
	return rc;
}

// ---- installing an image ----

struct dir_info {
	char *path;
	int64_t mtime_ns;
};

struct builder {
	struct reader r;
	char root[PATH_MAX / 2]; // DATA/snap/new (data dirs are shorter)
	struct tree_map dirs;	 // id -> struct dir_info *
	uint64_t index;
	uint8_t *dedup;
	uint64_t dedup_len;
	char *vbuf;
	uint8_t *data;
	uint8_t buckets[32]; // bit b: DATA/snap/new/ids/<b> made (one mkdir each, not per file)
};

struct attrs {
	uint32_t mode, uid, gid;
	uint64_t rdev, size;
	int64_t mtime_ns, ctime_ns;
};

// Reads an attrs block; applies the xattrs to path later (apply_xattrs),
// so they are read here into a list.
struct xattr_list {
	uint32_t n;
	char (*names)[256];
	uint32_t *lens;
	char **vals;
};

static void xattr_list_free(struct xattr_list *x)
{
	for (uint32_t i = 0; i < x->n && x->vals; i++)
		free(x->vals[i]);
	free(x->names);
	free(x->lens);
	free(x->vals);
	memset(x, 0, sizeof(*x));
}

static int read_attrs(struct builder *b, struct attrs *a, struct xattr_list *x)
{
	struct reader *r = &b->r;

	a->mode = r_u32(r);
	a->uid = r_u32(r);
	a->gid = r_u32(r);
	a->rdev = r_u64(r);
	a->size = r_u64(r);
	a->mtime_ns = (int64_t)r_u64(r);
	a->ctime_ns = (int64_t)r_u64(r);
	x->n = r_u32(r);
	if (r->err)
		return r->err;
	if (x->n > 4096)
		return r->err = -EBADMSG;
	if (!x->n)
		return 0;
	x->names = calloc(x->n, sizeof(*x->names));
	x->lens = calloc(x->n, sizeof(*x->lens));
	x->vals = calloc(x->n, sizeof(*x->vals));
	if (!x->names || !x->lens || !x->vals)
		return r->err = -ENOMEM;
	for (uint32_t i = 0; i < x->n && !r->err; i++) {
		if (r_name(r, x->names[i], false))
			break;
		x->lens[i] = r_u32(r);
		if (r->err)
			break;
		if (x->lens[i] > XATTR_VALUE_MAX_BYTES)
			return r->err = -EBADMSG;
		x->vals[i] = malloc(x->lens[i] ? x->lens[i] : 1);
		if (!x->vals[i])
			return r->err = -ENOMEM;
		r_get(r, x->vals[i], x->lens[i]);
	}
	return r->err;
}

// Gives path its identity and attributes (times apart for directories,
// which their entries would change again).
static int set_attrs(const char *path, uint64_t id, const struct attrs *a,
		     const struct xattr_list *x)
{
	int rc = tree_write_id(path, id);

	if (!rc)
		rc = tree_write_ctime(path, a->ctime_ns);
	for (uint32_t i = 0; !rc && i < x->n; i++)
		if (lsetxattr(path, x->names[i], x->vals[i], x->lens[i], 0))
			rc = -errno;
	// chown first: it clears set-id bits that chmod then restores.
	if (!rc && lchown(path, a->uid, a->gid))
		rc = -errno;
	if (!rc && !S_ISLNK(a->mode) && chmod(path, a->mode & 07777))
		rc = -errno;
	if (!rc && !S_ISDIR(a->mode)) {
		struct timespec ts[2] = {{a->mtime_ns / 1000000000, a->mtime_ns % 1000000000}};

		ts[1] = ts[0];
		if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW))
			rc = -errno;
	}
	if (rc)
		fprintf(stderr, "sm snapshot: set attributes of %s: %s\n", path, strerror(-rc));
	return rc;
}

static int build_dir(struct builder *b)
{
	struct reader *r = &b->r;
	struct xattr_list x = {0};
	struct attrs a;
	struct dir_info *di = NULL;
	struct dir_info *parent;
	char name[256];
	uint64_t id = r_u64(r), pid = r_u64(r);
	int rc;

	if (r_name(r, name, id == SM_ROOT_ID) || read_attrs(b, &a, &x))
		goto out;
	rc = -EBADMSG;
	if (!S_ISDIR(a.mode) || !id || tree_map_get(&b->dirs, id))
		goto fail;
	di = calloc(1, sizeof(*di));
	if (!di)
		goto nomem;
	di->mtime_ns = a.mtime_ns;
	if (id == SM_ROOT_ID) {
		if (asprintf(&di->path, "%s/tree", b->root) < 0)
			goto nomem;
	} else {
		parent = tree_map_get(&b->dirs, pid);
		if (!parent || !name[0])
			goto fail;
		if (asprintf(&di->path, "%s/%s", parent->path, name) < 0)
			goto nomem;
		if (mkdir(di->path, 0700)) {
			rc = -errno;
			fprintf(stderr, "sm snapshot: mkdir %s: %s\n", di->path, strerror(-rc));
			goto fail;
		}
	}
	if (tree_map_put(&b->dirs, id, di))
		goto nomem;
	rc = set_attrs(di->path, id, &a, &x);
	if (rc)
		r->err = rc;
	di = NULL;
	goto out;
nomem:
	rc = -ENOMEM;
fail:
	r->err = rc;
	if (di)
		free(di->path);
out:
	free(di);
	xattr_list_free(&x);
	return r->err;
}

// Writes the extents of the image into fd; *end is where the furthest one
// ends (the file's size then, unless the image says otherwise).
static int read_extents(struct builder *b, int fd, const char *path, uint64_t *end)
{
	struct reader *r = &b->r;

	*end = 0;
	for (;;) {
		uint64_t off = r_u64(r), len = r_u64(r);

		if (r->err || len == 0)
			return r->err;
		if (off + len > *end)
			*end = off + len;
		if (len > EXTENT_MAX || off > (1ULL << 62))
			return r->err = -EBADMSG;
		if (r_get(r, b->data, len))
			return r->err;
		if (pwrite(fd, b->data, len, (off_t)off) != (ssize_t)len) {
			fprintf(stderr, "sm snapshot: write %s: %s\n", path, strerror(errno));
			return r->err = errno ? -errno : -EIO;
		}
	}
}

static int build_nondir(struct builder *b)
{
	struct reader *r = &b->r;
	struct xattr_list x = {0};
	struct attrs a;
	char idx[PATH_MAX], bucket[PATH_MAX / 2 + 32], target[PATH_MAX];
	uint64_t id = r_u64(r), end = 0;
	uint32_t n_links;
	int rc = 0, fd = -1;

	if (read_attrs(b, &a, &x))
		goto out;
	if (!id || S_ISDIR(a.mode)) {
		r->err = -EBADMSG;
		goto out;
	}
	snprintf(bucket, sizeof(bucket), "%s/ids/%02x", b->root, (unsigned)(id & 0xff));
	snprintf(idx, sizeof(idx), "%s/" ID_HEX_FMT, bucket, (unsigned long long)id);
	if (!(b->buckets[(id & 0xff) / 8] & (1u << (id & 7)))) {
		if (mkdir(bucket, 0700) && errno != EEXIST) {
			rc = -errno;
			goto made;
		}
		b->buckets[(id & 0xff) / 8] |= (uint8_t)(1u << (id & 7));
	}
	if (S_ISLNK(a.mode)) {
		uint32_t tlen = r_u32(r);

		if (r->err || tlen == 0 || tlen >= PATH_MAX) {
			r->err = r->err ? r->err : -EBADMSG;
			goto out;
		}
		if (r_get(r, target, tlen))
			goto out;
		target[tlen] = 0;
		if (symlink(target, idx))
			rc = -errno;
	} else if (S_ISREG(a.mode)) {
		fd = open(idx, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			rc = -errno;
	} else if (S_ISFIFO(a.mode) || S_ISSOCK(a.mode) || S_ISCHR(a.mode) || S_ISBLK(a.mode)) {
		if (mknod(idx, (a.mode & S_IFMT) | 0600, (dev_t)a.rdev))
			rc = -errno;
	} else {
		r->err = -EBADMSG;
		goto out;
	}
made:
	if (rc) {
		fprintf(stderr, "sm snapshot: create %s: %s\n", idx, strerror(-rc));
		r->err = rc;
		goto out;
	}
	n_links = r_u32(r);
	if (r->err)
		goto out;
	if (n_links > 65000) {
		r->err = -EBADMSG;
		goto out;
	}
	for (uint32_t i = 0; i < n_links && !r->err; i++) {
		uint64_t pid = r_u64(r);
		struct dir_info *d;
		char name[256], path[PATH_MAX];

		if (r_name(r, name, false))
			break;
		d = tree_map_get(&b->dirs, pid);
		if (!d) {
			r->err = -EBADMSG;
			break;
		}
		if (snprintf(path, sizeof(path), "%s/%s", d->path, name) >= (int)sizeof(path)) {
			r->err = -ENAMETOOLONG;
			break;
		}
		if (link(idx, path)) {
			r->err = -errno;
			fprintf(stderr, "sm snapshot: link %s to %s: %s\n", idx, path,
				strerror(errno));
		}
	}
	if (!r->err && fd >= 0 && !read_extents(b, fd, idx, &end) && end != a.size &&
	    ftruncate(fd, (off_t)a.size))
		r->err = -errno;
	if (!r->err)
		r->err = set_attrs(idx, id, &a, &x);
out:
	if (fd >= 0)
		close(fd);
	xattr_list_free(&x);
	return r->err;
}

static int set_dir_time(uint64_t id, void *val, void *arg)
{
	struct dir_info *d = val;
	struct timespec ts[2] = {{d->mtime_ns / 1000000000, d->mtime_ns % 1000000000}};

	(void)id;
	(void)arg;
	ts[1] = ts[0];
	if (utimensat(AT_FDCWD, d->path, ts, AT_SYMLINK_NOFOLLOW)) {
		fprintf(stderr, "sm snapshot: set times of %s: %s\n", d->path, strerror(errno));
		return -errno;
	}
	return 0;
}

static int free_dir(uint64_t id, void *val, void *arg)
{
	struct dir_info *d = val;

	(void)id;
	(void)arg;
	free(d->path);
	free(d);
	return 0;
}

static int write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), rc = 0;

	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		rc = errno ? -errno : -EIO;
	if (fd >= 0)
		close(fd);
	return rc;
}

// The state machine's own files of the new state: the duplicate table as of
// the image's index, and a journal whose one record says that index is done.
static int build_sm_dir(struct builder *b, const char *live_data)
{
	char path[PATH_MAX + 16];
	struct sm_journal j = {.fd = -1};
	struct sm_record rec = {.index = b->index, .flags = SM_REC_SKIP | SM_REC_DONE};
	size_t total = 24 + b->dedup_len + 8;
	uint8_t *buf = malloc(total);
	uint32_t magic = DEDUP_MAGIC, pad = 0;
	uint64_t h, counter;
	int dirfd, rc, fd;

	if (!buf)
		return -ENOMEM;
	memcpy(buf, &magic, 4);
	memcpy(buf + 4, &pad, 4);
	memcpy(buf + 8, &b->index, 8);
	memcpy(buf + 16, &b->dedup_len, 8);
	memcpy(buf + 24, b->dedup, b->dedup_len);
	h = sm_hash(buf, 24 + b->dedup_len);
	memcpy(buf + 24 + b->dedup_len, &h, 8);
	snprintf(path, sizeof(path), "%s/sm/dedup", b->root);
	rc = write_file(path, buf, total);
	free(buf);
	if (rc)
		return rc;
	// The id counter is this node's, not the image's: keep it.
	snprintf(path, sizeof(path), "%s/sm/next_id", live_data);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (pread(fd, &counter, 8, 0) == 8) {
			snprintf(path, sizeof(path), "%s/sm/next_id", b->root);
			rc = write_file(path, &counter, 8);
		}
		close(fd);
		if (rc)
			return rc;
	}
	snprintf(path, sizeof(path), "%s/sm", b->root);
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	j.dirfd = dirfd;
	rc = sm_journal_open(dirfd, &j, NULL, NULL);
	if (!rc)
		rc = sm_journal_append(&j, &rec);
	sm_journal_close(&j);
	close(dirfd);
	return rc;
}

// After a failure to build from the image, reads the rest of it: if its
// checksum does not match, the failure came from corrupt bytes (-EBADMSG),
// not from this node.
static int drain_and_check(struct reader *r, int err)
{
	uint8_t lag[8];
	size_t have = 0;

	if (err == -EBADMSG || err == -ENOMEM)
		return err;
	r->err = 0;
	for (;;) {
		uint8_t c;

		if (r->pos == r->len && r_fill(r))
			break;
		c = r->buf[r->pos++];
		if (have == 8) {
			r->hash = fnv(r->hash, lag, 1);
			memmove(lag, lag + 1, 7);
			have = 7;
		}
		lag[have++] = c;
	}
	if (have != 8 || memcmp(lag, &r->hash, 8))
		return -EBADMSG;
	return err;
}

static int read_records(struct builder *b);

static int read_image(struct builder *b)
{
	int rc = read_records(b);

	return rc ? drain_and_check(&b->r, rc) : 0;
}

static int read_records(struct builder *b)
{
	struct reader *r = &b->r;
	char magic[8];
	uint64_t got, want;

	if (r_get(r, magic, 8))
		return r->err;
	if (memcmp(magic, SNAP_MAGIC, 8) || r_u32(r) != SNAP_VERSION)
		return -EBADMSG;
	b->index = r_u64(r);
	b->dedup_len = r_u64(r);
	if (r->err)
		return r->err;
	if (b->dedup_len > (1ULL << 32))
		return -EBADMSG;
	b->dedup = malloc(b->dedup_len ? b->dedup_len : 1);
	if (!b->dedup)
		return -ENOMEM;
	if (r_get(r, b->dedup, b->dedup_len))
		return r->err;
	for (;;) {
		uint8_t kind = r_u8(r);

		if (r->err)
			return r->err;
		if (kind == 'D')
			build_dir(b);
		else if (kind == 'F')
			build_nondir(b);
		else if (kind == 'E')
			break;
		else
			return -EBADMSG;
		if (r->err)
			return r->err;
	}
	got = r->hash;
	if (r_get_raw(r, &want, 8, false))
		return r->err;
	if (got != want || r->pos != r->len || r->src(r->arg, b->data, 1) != 0)
		return -EBADMSG;
	if (!tree_map_get(&b->dirs, SM_ROOT_ID))
		return -EBADMSG;
	return tree_map_each(&b->dirs, set_dir_time, NULL);
}

// With the marker DATA/snap/INSTALL present, moves the staged state into
// place; every step is a rename that is skipped when already done.
static int roll_forward(const char *data)
{
	char snap[PATH_MAX], from[PATH_MAX + 16], to[PATH_MAX + 16];
	int rc = 0;

	snprintf(snap, sizeof(snap), "%s/snap", data);
	snprintf(to, sizeof(to), "%s/old", snap);
	if (mkdir(to, 0700) && errno != EEXIST)
		return -errno;
	for (size_t i = 0; i < 3 && !rc; i++) {
		snprintf(from, sizeof(from), "%s/new/%s", snap, parts[i]);
		if (!exists(from))
			continue; // moved already
		snprintf(to, sizeof(to), "%s/%s", data, parts[i]);
		if (exists(to)) {
			snprintf(from, sizeof(from), "%s/%s", data, parts[i]);
			snprintf(to, sizeof(to), "%s/old/%s", snap, parts[i]);
			if (rename(from, to))
				rc = -errno;
		}
		snprintf(from, sizeof(from), "%s/new/%s", snap, parts[i]);
		snprintf(to, sizeof(to), "%s/%s", data, parts[i]);
		if (!rc && rename(from, to))
			rc = -errno;
	}
	if (!rc)
		rc = fsync_path(data);
	snprintf(from, sizeof(from), "%s/INSTALL", snap);
	if (!rc && unlink(from))
		rc = -errno;
	if (!rc)
		rc = fsync_path(snap);
	if (rc)
		fprintf(stderr, "sm snapshot: swapping in the installed state in %s: %s\n", data,
			strerror(-rc));
	return rc;
}

int sm_snapshot_recover(const char *data)
{
	char path[PATH_MAX + 16];
	int rc = 0;

	snprintf(path, sizeof(path), "%s/snap/INSTALL", data);
	if (exists(path))
		rc = roll_forward(data);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/snap/new", data);
	rm_tree(path);
	snprintf(path, sizeof(path), "%s/snap/old", data);
	rm_tree(path);
	snprintf(path, sizeof(path), "%s/snap/cow", data);
	rm_tree(path);
	return 0;
}

// Moves the freshly opened state machine's tables and files into the live
// one (whose lock readers may be waiting on, so the struct itself stays);
// fresh gets the old ones and is closed by the caller.
static void transplant(struct sm *live, struct sm *fresh)
{
#define SWAP(field)                                                                                \
	do {                                                                                       \
		__typeof__(live->field) tmp_ = live->field;                                        \
		live->field = fresh->field;                                                        \
		fresh->field = tmp_;                                                               \
	} while (0)
	SWAP(sm_fd);
	SWAP(by_id);
	SWAP(by_ino);
	SWAP(applied);
	SWAP(journal);
	SWAP(dd);
	SWAP(dedup_index);
	SWAP(redo_pending);
	SWAP(redo_rec);
	SWAP(last_rec);
	SWAP(fault);
#undef SWAP
	// The old journal must not be marked done by fresh's close (it is
	// already moved aside, but keep it as it was).
	fresh->fault = fresh->fault ? fresh->fault : -ECANCELED;
	for (int i = 0; i < SM_FD_CACHE; i++) {
		if (live->fds[i].fd >= 0)
			close(live->fds[i].fd);
		live->fds[i].fd = -1;
		live->fds[i].id = 0;
	}
	pthread_mutex_lock(&live->id_lock);
	if (fresh->next_counter > live->next_counter)
		live->next_counter = fresh->next_counter;
	pthread_mutex_unlock(&live->id_lock);
}

int sm_snapshot_install(struct sm *sm, sm_snap_source src, void *arg)
{
	struct builder b = {.r = {.src = src, .arg = arg, .hash = FNV_OFFSET}};
	struct sm *fresh = NULL;
	char path[PATH_MAX + 16];
	double t[5] = {0};
	int rc;

	if (strlen(sm->data_dir) > sizeof(b.root) - 16)
		return -ENAMETOOLONG;
	if (sm->content_hook == cow_hook)
		return -EBUSY; // an image of the live state streams: end it first
	rc = sm_snapshot_recover(sm->data_dir);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/snap", sm->data_dir);
	if (mkdir(path, 0700) && errno != EEXIST)
		return -errno;
	snprintf(b.root, sizeof(b.root), "%s/snap/new", sm->data_dir);
	b.r.buf = malloc(BUF_BYTES);
	b.data = malloc(EXTENT_MAX);
	rc = !b.r.buf || !b.data ? -ENOMEM : tree_map_init(&b.dirs);
	for (size_t i = 0; !rc && i <= 3; i++) {
		snprintf(path, sizeof(path), "%s%s%s", b.root, i ? "/" : "", i ? parts[i - 1] : "");
		if (mkdir(path, 0700))
			rc = -errno;
	}
	t[0] = now_ms();
	if (!rc)
		rc = read_image(&b);
	if (!rc)
		rc = build_sm_dir(&b, sm->data_dir);
	t[1] = now_ms();
	if (!rc)
		rc = fsync_path(b.root); // syncfs: the whole new state is on disk
	if (!rc) {
		int fd = open(b.root, O_RDONLY | O_CLOEXEC);

		if (fd < 0 || syncfs(fd))
			rc = -errno;
		if (fd >= 0)
			close(fd);
	}
	t[2] = now_ms();
	// The new state's tables are loaded while it is still beside the live
	// one (tables hold ids and inode numbers, which the renames keep), so
	// readers are held off only for the renames, not for a whole scan.
	if (!rc)
		rc = sm_open(b.root, sm->node_id, &fresh);
	t[3] = now_ms();
	if (!rc) {
		char tmp[PATH_MAX + 16];

		snprintf(tmp, sizeof(tmp), "%s/snap/INSTALL.tmp", sm->data_dir);
		snprintf(path, sizeof(path), "%s/snap/INSTALL", sm->data_dir);
		rc = write_file(tmp, &b.index, 8);
		if (!rc)
			rc = fsync_path(tmp);
		if (!rc && rename(tmp, path))
			rc = -errno;
		if (!rc) {
			snprintf(path, sizeof(path), "%s/snap", sm->data_dir);
			rc = fsync_path(path);
		}
	}
	if (rc) {
		fprintf(stderr, "sm snapshot: install into %s failed%s: %s\n", sm->data_dir,
			rc == -EBADMSG ? " (corrupt or truncated image)" : "", strerror(-rc));
		if (fresh)
			fresh->fault = -ECANCELED; // close it without marking anything
		sm_close(fresh);
		snprintf(path, sizeof(path), "%s/snap/new", sm->data_dir);
		rm_tree(path);
		goto out;
	}
	// From here on the new state wins, even across a crash.
	pthread_rwlock_wrlock(&sm->lock);
	rc = roll_forward(sm->data_dir);
	if (!rc)
		transplant(sm, fresh);
	else
		sm->fault = rc;
	pthread_rwlock_unlock(&sm->lock);
	if (rc)
		fresh->fault = -ECANCELED;
	sm_close(fresh);
	sm_snapshot_recover(sm->data_dir);
	t[4] = now_ms();
	if (!rc)
		fprintf(stderr,
			"sm snapshot: installed the image at %llu into %s: built in %.0f ms, "
			"synced in %.0f ms, loaded in %.0f ms, swapped in %.0f ms\n",
			(unsigned long long)b.index, sm->data_dir, t[1] - t[0], t[2] - t[1],
			t[3] - t[2], t[4] - t[3]);
out:
	if (b.dirs.keys) {
		tree_map_each(&b.dirs, free_dir, NULL);
		tree_map_free(&b.dirs);
	}
	free(b.dedup);
	free(b.r.buf);
	free(b.data);
	return rc;
}
