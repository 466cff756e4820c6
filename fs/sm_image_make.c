// sm_image_make.c — begins an image on the apply thread: the metadata walk (directories
// breadth first, every object's names, attributes, xattrs) into the job's spool, with a
// marker where each file's extents go; the one pause of apply per snapshot.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
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
	struct img_writer w;
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
	img_w_u32(&m->w, st->st_mode);
	img_w_u32(&m->w, st->st_uid);
	img_w_u32(&m->w, st->st_gid);
	img_w_u64(&m->w, st->st_rdev);
	img_w_u64(&m->w, S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size);
	img_w_u64(&m->w, (uint64_t)((int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec));
	img_w_u64(&m->w, (uint64_t)__atomic_load_n(&o->ctime_ns, __ATOMIC_RELAXED));
	img_w_u32(&m->w, n);
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
		img_w_name(&m->w, name);
		img_w_u32(&m->w, (uint32_t)vlen);
		img_w_put(&m->w, m->vbuf, (size_t)vlen);
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
	img_w_u8(&m->w, 'D');
	img_w_u64(&m->w, id);
	img_w_u64(&m->w, id == SM_ROOT_ID ? 0 : o->parent);
	img_w_name(&m->w, id == SM_ROOT_ID ? "" : o->name);
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
	img_w_u8(&m->w, 'F');
	img_w_u64(&m->w, id);
	rc = put_attrs(m, o, p.buf, &st);
	if (!rc && S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(p.buf, target, sizeof(target));

		if (n < 0)
			return -errno;
		img_w_u32(&m->w, (uint32_t)n);
		img_w_put(&m->w, target, (size_t)n);
	}
	l = tree_map_get(&m->links, id);
	img_w_u32(&m->w, l ? (uint32_t)l->n : 0);
	for (size_t i = 0; l && i < l->n; i++) {
		img_w_u64(&m->w, l->v[i].parent);
		img_w_name(&m->w, l->v[i].name);
	}
	if (!rc && S_ISREG(st.st_mode))
		rc = mark_extents(m, id);
	return rc ? rc : m->w.err;
}

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

	img_w_flush(&m->w); // the bytes before the extents go first
	if (m->w.err)
		return m->w.err;
	memcpy(rec + 1, &id, 8);
	rc = tree_map_put(&j->files, id, (void *)(uintptr_t)(++j->n_files));
	return rc ? rc : spool_put(j, rec, sizeof(rec));
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
		img_rm_tree(j->cow); // a crashed run's copies
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
	m.w = (struct img_writer){.sink = spool_sink, .arg = j, .hash = FNV_OFFSET};
	m.w.buf = malloc(BUF_BYTES);
	m.xbuf = malloc(XATTR_LIST_MAX_BYTES);
	m.vbuf = malloc(XATTR_VALUE_MAX_BYTES);
	j->sbuf = malloc(SPOOL_BUF);
	rc = !m.w.buf || !m.xbuf || !m.vbuf || !j->sbuf ? -ENOMEM : tree_map_init(&m.links);
	if (!rc)
		rc = dedup_serialize(sm->dd, &dd, &dd_len);
	if (rc)
		goto out;
	img_w_put(&m.w, SNAP_MAGIC, 8);
	img_w_u32(&m.w, SNAP_VERSION);
	img_w_u64(&m.w, sm->applied);
	img_w_u64(&m.w, dd_len);
	img_w_put(&m.w, dd, dd_len);
	// Directories breadth first from the root, so a parent always comes
	// before its children; their walk also finds every name of the rest.
	rc = enqueue(&m, SM_ROOT_ID);
	while (!rc && m.q_head < m.q_len)
		rc = visit_dir(&m, m.queue[m.q_head++]);
	if (!rc)
		rc = tree_map_each(&sm->by_id, visit_nondir, &m);
	if (!rc) {
		img_w_flush(&m.w);
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
	sm_set_content_hook(sm, img_cow_hook, j);
	*index = j->index;
	*out = j;
	return 0;
}
