// sm_image_install.c — installs an image beside the live state (DATA/snap/new), swaps it
// in behind a durable marker, and finishes or drops a half-done install at start.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "dedup.h"
#include "sm_image.h"
#include "sm_impl.h"

static const char *const parts[] = {"tree", "ids", "sm"};

// ---- installing an image ----

struct dir_info {
	char *path;
	int64_t mtime_ns;
};

struct builder {
	struct img_reader r;
	char root[PATH_MAX / 2]; // DATA/snap/new (data dirs are shorter)
	struct tree_map dirs;	 // id -> struct dir_info *
	uint64_t index;
	uint8_t *dedup;
	uint64_t dedup_len;
	struct sm_id_hw hw; // the image's id high-water marks, then merged with live's
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
	struct img_reader *r = &b->r;

	a->mode = img_r_u32(r);
	a->uid = img_r_u32(r);
	a->gid = img_r_u32(r);
	a->rdev = img_r_u64(r);
	a->size = img_r_u64(r);
	a->mtime_ns = (int64_t)img_r_u64(r);
	a->ctime_ns = (int64_t)img_r_u64(r);
	x->n = img_r_u32(r);
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
		if (img_r_name(r, x->names[i], false))
			break;
		x->lens[i] = img_r_u32(r);
		if (r->err)
			break;
		if (x->lens[i] > XATTR_VALUE_MAX_BYTES)
			return r->err = -EBADMSG;
		x->vals[i] = malloc(x->lens[i] ? x->lens[i] : 1);
		if (!x->vals[i])
			return r->err = -ENOMEM;
		img_r_get(r, x->vals[i], x->lens[i]);
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
	struct img_reader *r = &b->r;
	struct xattr_list x = {0};
	struct attrs a;
	struct dir_info *di = NULL;
	struct dir_info *parent;
	char name[256];
	uint64_t id = img_r_u64(r), pid = img_r_u64(r);
	int rc;

	if (img_r_name(r, name, id == SM_ROOT_ID) || read_attrs(b, &a, &x))
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
	struct img_reader *r = &b->r;

	*end = 0;
	for (;;) {
		uint64_t off = img_r_u64(r), len = img_r_u64(r);

		if (r->err || len == 0)
			return r->err;
		if (off + len > *end)
			*end = off + len;
		if (len > EXTENT_MAX || off > (1ULL << 62))
			return r->err = -EBADMSG;
		if (img_r_get(r, b->data, len))
			return r->err;
		if (pwrite(fd, b->data, len, (off_t)off) != (ssize_t)len) {
			fprintf(stderr, "sm snapshot: write %s: %s\n", path, strerror(errno));
			return r->err = errno ? -errno : -EIO;
		}
	}
}

static int build_nondir(struct builder *b)
{
	struct img_reader *r = &b->r;
	struct xattr_list x = {0};
	struct attrs a;
	char idx[PATH_MAX], bucket[PATH_MAX / 2 + 32], target[PATH_MAX];
	uint64_t id = img_r_u64(r), end = 0;
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
		uint32_t tlen = img_r_u32(r);

		if (r->err || tlen == 0 || tlen >= PATH_MAX) {
			r->err = r->err ? r->err : -EBADMSG;
			goto out;
		}
		if (img_r_get(r, target, tlen))
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
	n_links = img_r_u32(r);
	if (r->err)
		goto out;
	if (n_links > 65000) {
		r->err = -EBADMSG;
		goto out;
	}
	for (uint32_t i = 0; i < n_links && !r->err; i++) {
		uint64_t pid = img_r_u64(r);
		struct dir_info *d;
		char name[256], path[PATH_MAX];

		if (img_r_name(r, name, false))
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
static int drain_and_check(struct img_reader *r, int err)
{
	uint8_t lag[8];
	size_t have = 0;

	if (err == -EBADMSG || err == -ENOMEM)
		return err;
	r->err = 0;
	for (;;) {
		uint8_t c;

		if (r->pos == r->len && img_r_fill(r))
			break;
		c = r->buf[r->pos++];
		if (have == 8) {
			r->hash = img_fnv(r->hash, lag, 1);
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

// Version 2's id high-water marks (fs/sm_id_hw.h).
static int read_id_hw(struct builder *b)
{
	struct img_reader *r = &b->r;
	uint32_t n = img_r_u32(r);

	if (r->err || n > SM_ID_HW_MAX)
		return -EBADMSG;
	b->hw.n = n;
	for (uint32_t i = 0; i < n && !r->err; i++) {
		b->hw.node[i] = img_r_u32(r);
		b->hw.bound[i] = img_r_u64(r);
	}
	return r->err;
}

static int read_records(struct builder *b)
{
	struct img_reader *r = &b->r;
	uint32_t version;
	char magic[8];
	uint64_t got, want;

	if (img_r_get(r, magic, 8))
		return r->err;
	if (memcmp(magic, SNAP_MAGIC, 8))
		return -EBADMSG;
	version = img_r_u32(r);
	if (version != 1 && version != SNAP_VERSION)
		return -EBADMSG;
	b->index = img_r_u64(r);
	b->dedup_len = img_r_u64(r);
	if (r->err)
		return r->err;
	if (b->dedup_len > (1ULL << 32))
		return -EBADMSG;
	b->dedup = malloc(b->dedup_len ? b->dedup_len : 1);
	if (!b->dedup)
		return -ENOMEM;
	if (img_r_get(r, b->dedup, b->dedup_len))
		return r->err;
	if (version >= 2 && read_id_hw(b))
		return r->err ? r->err : -EBADMSG;
	for (;;) {
		uint8_t kind = img_r_u8(r);

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
	if (img_r_get_raw(r, &want, 8, false))
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
		if (!img_exists(from))
			continue; // moved already
		snprintf(to, sizeof(to), "%s/%s", data, parts[i]);
		if (img_exists(to)) {
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
		rc = img_fsync_path(data);
	snprintf(from, sizeof(from), "%s/INSTALL", snap);
	if (!rc && unlink(from))
		rc = -errno;
	if (!rc)
		rc = img_fsync_path(snap);
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
	if (img_exists(path))
		rc = roll_forward(data);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/snap/new", data);
	img_rm_tree(path);
	snprintf(path, sizeof(path), "%s/snap/old", data);
	img_rm_tree(path);
	snprintf(path, sizeof(path), "%s/snap/cow", data);
	img_rm_tree(path);
	return 0;
}

// Moves the freshly opened state machine's tables and files into the live
// one (whose lock readers may be waiting on, so the struct itself stays);
// fresh gets the old ones and is closed by the caller. Fails only if the id
// reservation cannot be stored (the state is swapped in all the same).
// bound: the image's mark of live's node ids (reserve_image_ids).
static int transplant(struct sm *live, struct sm *fresh, uint64_t bound)
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
	SWAP(starts);
	SWAP(start_since);
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
	// build_sm_dir copied sm/next_id without the id lock: live may have
	// reserved past that copy since, and the copy is now the file on disk.
	return sm_ids_take_over(live, fresh, bound);
}

// The new state's id high-water marks: this node's and the image's, each
// the higher (both are upper bounds of ids handed out), durably in its sm/.
static int build_id_hw(struct builder *b, struct sm *live)
{
	char path[PATH_MAX + 16];
	struct sm_id_hw mine;
	int rc = sm_id_hw_get(live, &mine);

	if (rc)
		return rc;
	sm_id_hw_merge(&b->hw, &mine);
	snprintf(path, sizeof(path), "%s/sm", b->root);
	return sm_id_hw_write_dir(path, &b->hw);
}

// Test hook (sm_snapshot_set_swap_hook): called with the new state swapped
// in, the tree's write lock still held.
static void (*swap_hook)(struct sm *sm, void *arg);
static void *swap_hook_arg;

void sm_snapshot_set_swap_hook(void (*hook)(struct sm *sm, void *arg), void *arg)
{
	swap_hook = hook;
	swap_hook_arg = arg;
}

// Every image byte an install reads passes here, counted for
// sm_snapshot_install_progress.
static _Atomic uint64_t install_bytes;

struct counted_source {
	sm_snap_source src;
	void *arg;
};

static ssize_t counted_read(void *arg, void *buf, size_t len)
{
	struct counted_source *c = arg;
	ssize_t got = c->src(c->arg, buf, len);

	if (got > 0)
		atomic_fetch_add(&install_bytes, (uint64_t)got);
	return got;
}

uint64_t sm_snapshot_install_progress(void)
{
	return atomic_load(&install_bytes);
}

int sm_snapshot_install(struct sm *sm, sm_snap_source src, void *arg)
{
	struct counted_source counted = {src, arg};
	struct builder b = {.r = {.src = counted_read, .arg = &counted, .hash = FNV_OFFSET}};
	struct sm *fresh = NULL;
	char path[PATH_MAX + 16];
	double t[5] = {0};
	int rc;

	if (strlen(sm->data_dir) > sizeof(b.root) - 16)
		return -ENAMETOOLONG;
	if (sm->content_hook == img_cow_hook)
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
	t[0] = img_now_ms();
	if (!rc)
		rc = read_image(&b);
	if (!rc)
		rc = build_sm_dir(&b, sm->data_dir);
	if (!rc)
		rc = build_id_hw(&b, sm);
	t[1] = img_now_ms();
	if (!rc)
		rc = img_fsync_path(b.root); // syncfs: the whole new state is on disk
	if (!rc) {
		int fd = open(b.root, O_RDONLY | O_CLOEXEC);

		if (fd < 0 || syncfs(fd))
			rc = -errno;
		if (fd >= 0)
			close(fd);
	}
	t[2] = img_now_ms();
	// The new state's tables are loaded while it is still beside the live
	// one (tables hold ids and inode numbers, which the renames keep), so
	// readers are held off only for the renames, not for a whole scan.
	if (!rc)
		rc = sm_open(b.root, sm->node_id, &fresh);
	t[3] = img_now_ms();
	if (!rc) {
		char tmp[PATH_MAX + 16];

		snprintf(tmp, sizeof(tmp), "%s/snap/INSTALL.tmp", sm->data_dir);
		snprintf(path, sizeof(path), "%s/snap/INSTALL", sm->data_dir);
		rc = write_file(tmp, &b.index, 8);
		if (!rc)
			rc = img_fsync_path(tmp);
		if (!rc && rename(tmp, path))
			rc = -errno;
		if (!rc) {
			snprintf(path, sizeof(path), "%s/snap", sm->data_dir);
			rc = img_fsync_path(path);
		}
	}
	if (rc) {
		fprintf(stderr, "sm snapshot: install into %s failed%s: %s\n", sm->data_dir,
			rc == -EBADMSG ? " (corrupt or truncated image)" : "", strerror(-rc));
		if (fresh)
			fresh->fault = -ECANCELED; // close it without marking anything
		sm_close(fresh);
		snprintf(path, sizeof(path), "%s/snap/new", sm->data_dir);
		img_rm_tree(path);
		goto out;
	}
	// From here on the new state wins, even across a crash.
	pthread_rwlock_wrlock(&sm->lock);
	rc = roll_forward(sm->data_dir);
	if (rc) {
		sm->fault = rc;
		fresh->fault = -ECANCELED;
	} else {
		// This node's counter goes past its own mark in the new state's
		// table (the image's and this node's), so a node rebuilt from an
		// image never hands out an id of an object deleted before the
		// image (which neither the image's tree nor the log after it
		// shows). In the same hold of the id lock as the swap's: the FUSE
		// threads allocate under that lock alone. The table is read again
		// from the new sm/ at its next use.
		sm_id_hw_forget(sm);
		rc = transplant(sm, fresh, sm_id_hw_bound(&b.hw, sm->node_id));
		if (rc)
			sm->fault = rc; // fresh holds the old state now: closes as before
		else if (swap_hook)
			swap_hook(sm, swap_hook_arg);
	}
	pthread_rwlock_unlock(&sm->lock);
	sm_close(fresh);
	sm_snapshot_recover(sm->data_dir);
	t[4] = img_now_ms();
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
