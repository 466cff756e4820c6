// sm_image_make.c — makes an image while apply goes on: begin (apply thread: the index,
// the duplicate table, the hooks; O(1), the one pause of apply), then the walk (another
// thread): directories breadth first from their listings, every other object from DATA/ids,
// each taken live or from its pre-image, with its extents.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dedup.h"
#include "sm_image.h"
#include "sm_impl.h"

// ---- begin ----

int sm_snapshot_begin(struct sm *sm, struct sm_snap_job **out, uint64_t *index)
{
	struct sm_snap_job *j;
	char path[PATH_MAX];
	int rc;

	*out = NULL;
	if (sm->fault)
		return sm->fault;
	if (sm->redo_pending || sm->content_hook || sm->meta_hook)
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
	pthread_cond_init(&j->cv, NULL);
	snprintf(path, sizeof(path), "%s/snap", sm->data_dir);
	snprintf(j->cow, sizeof(j->cow), "%s/snap/cow", sm->data_dir);
	j->xbuf = malloc(XATTR_LIST_MAX_BYTES);
	j->vbuf = malloc(XATTR_VALUE_MAX_BYTES);
	rc = !j->xbuf || !j->vbuf ? -ENOMEM : 0;
	if (!rc)
		rc = tree_map_init(&j->born);
	if (!rc)
		rc = tree_map_init(&j->done);
	if (!rc)
		rc = tree_map_init(&j->pre);
	if (!rc)
		rc = tree_map_init(&j->saved);
	if (!rc)
		rc = dedup_serialize(sm->dd, &j->dedup, &j->dedup_len);
	// Later than the index is fine: the marks only rise, and an image must
	// carry at least every id handed out up to it (fs/sm_id_hw.h).
	if (!rc)
		rc = sm_id_hw_get(sm, &j->hw);
	if (rc)
		goto out;
	img_rm_tree(j->cow); // a crashed run's copies
	if ((mkdir(path, 0700) && errno != EEXIST) || mkdir(j->cow, 0700))
		rc = -errno;
	if (!rc) {
		snprintf(path, sizeof(path), "%s/spool", j->cow);
		j->spool = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (j->spool < 0 || unlink(path))
			rc = -errno;
	}
	if (rc)
		fprintf(stderr, "sm snapshot: preparing %s for an image: %s\n", j->cow,
			strerror(-rc));
out:
	if (rc) {
		fprintf(stderr, "sm snapshot: image of %s at %llu failed: %s\n", sm->data_dir,
			(unsigned long long)sm->applied, strerror(-rc));
		sm_snapshot_end(j);
		return rc;
	}
	sm_set_content_hook(sm, img_cow_hook, j);
	sm->meta_hook = img_meta_hook;
	sm->meta_hook_arg = j;
	*index = j->index;
	*out = j;
	return 0;
}

// ---- the walk ----

// The names of one non-directory: (parent, name) pairs.
struct links {
	size_t n, cap;
	struct {
		uint64_t parent;
		char *name;
	} * v;
};

// A directory to visit, with the name and parent its parent's listing gave.
struct dir_ent {
	uint64_t id, parent;
	char *name;
};

struct walker {
	struct sm_snap_job *j;
	struct img_writer w;
	struct img_buf cap;    // the object being written
	struct tree_map links; // id -> struct links *
	struct dir_ent *queue; // directories to visit (BFS: parents first)
	size_t q_head, q_len, q_cap;
	uint8_t *data; // extents
	uint64_t dirs, others;
};

// Reading a capture (sm_image.h) back: bounds checked, -EIO past its end.
struct cursor {
	const uint8_t *p;
	size_t left;
	int err;
};

static const void *cur_take(struct cursor *c, size_t len)
{
	const void *p = c->p;

	if (c->err || len > c->left) {
		c->err = -EIO;
		return NULL;
	}
	c->p += len;
	c->left -= len;
	return p;
}

static uint64_t cur_uint(struct cursor *c, size_t len)
{
	const void *p = cur_take(c, len);
	uint64_t v = 0;
	uint32_t v32 = 0;
	uint16_t v16 = 0;

	if (p && len == 8)
		memcpy(&v, p, 8);
	else if (p && len == 4)
		memcpy(&v32, p, 4), v = v32;
	else if (p && len == 2)
		memcpy(&v16, p, 2), v = v16;
	return v;
}

// A name of a listing into out[256].
static int cur_name(struct cursor *c, char *out)
{
	size_t len = (size_t)cur_uint(c, 2);
	const char *p = len <= 255 ? cur_take(c, len) : NULL;

	if (!p)
		return c->err = -EIO;
	memcpy(out, p, len);
	out[len] = 0;
	return 0;
}

static int add_link(struct walker *wk, uint64_t id, uint64_t parent, const char *name)
{
	struct links *l = tree_map_get(&wk->links, id);

	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l || tree_map_put(&wk->links, id, l)) {
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

static int enqueue(struct walker *wk, uint64_t id, uint64_t parent, const char *name)
{
	if (wk->q_len == wk->q_cap) {
		size_t cap = wk->q_cap ? 2 * wk->q_cap : 256;
		struct dir_ent *q = realloc(wk->queue, cap * sizeof(*q));

		if (!q)
			return -ENOMEM;
		wk->queue = q;
		wk->q_cap = cap;
	}
	wk->queue[wk->q_len].id = id;
	wk->queue[wk->q_len].parent = parent;
	wk->queue[wk->q_len].name = strdup(name);
	if (!wk->queue[wk->q_len].name)
		return -ENOMEM;
	wk->q_len++;
	return 0;
}

// Takes object id as it was at the index into wk->cap (sm_image_meta.c);
// *skip if it is not in the image or taken already.
static int take(struct walker *wk, uint64_t id, bool *skip)
{
	int rc;

	img_lock_walk(wk->j);
	rc = wk->j->err; // a failed pre-image or copy voids the image: stop
	if (!rc)
		rc = img_take(wk->j, id, &wk->cap, skip);
	img_unlock(wk->j);
	return rc;
}

// Writes the 'D' record of the next queued directory (its name and parent
// from the listing that found it) and queues its subdirectories; records
// the names of everything else in it.
static int visit_dir(struct walker *wk, const struct dir_ent *d)
{
	/* d points into wk->queue, which enqueue() below may move. */
	const uint64_t dir_id = d->id;
	struct cursor c;
	const void *blob;
	uint32_t len, n, mode = 0;
	bool skip;
	int rc = take(wk, d->id, &skip);

	if (!rc && skip) {
		fprintf(stderr, "sm snapshot: directory %016llx listed twice or made after %llu\n",
			(unsigned long long)d->id, (unsigned long long)wk->j->index);
		rc = -EIO;
	}
	if (rc)
		return rc;
	c = (struct cursor){wk->cap.data, wk->cap.len, 0};
	len = (uint32_t)cur_uint(&c, 4);
	blob = cur_take(&c, len);
	n = (uint32_t)cur_uint(&c, 4);
	if (!c.err && len >= 4)
		memcpy(&mode, blob, 4);
	if (c.err || !S_ISDIR(mode)) {
		fprintf(stderr, "sm snapshot: directory %016llx: bad capture\n",
			(unsigned long long)d->id);
		return -EIO;
	}
	img_w_u8(&wk->w, 'D');
	img_w_u64(&wk->w, d->id);
	img_w_u64(&wk->w, d->parent);
	img_w_name(&wk->w, d->name);
	img_w_put(&wk->w, blob, len);
	for (uint32_t i = 0; i < n && !rc; i++) {
		uint64_t id = cur_uint(&c, 8);
		uint32_t type = (uint32_t)cur_uint(&c, 4);
		char name[256];

		rc = cur_name(&c, name);
		if (!rc)
			rc = type == S_IFDIR ? enqueue(wk, id, dir_id, name)
					     : add_link(wk, id, dir_id, name);
	}
	wk->dirs++;
	return rc ? rc : wk->w.err;
}

// Writes the 'F' record of non-directory id (with its extents), unless it
// is not in the image or written already.
static int visit_other(struct walker *wk, uint64_t id)
{
	struct links *l;
	struct cursor c;
	const void *blob;
	uint32_t len, mode = 0;
	bool skip;
	int rc = take(wk, id, &skip);

	if (rc || skip)
		return rc;
	c = (struct cursor){wk->cap.data, wk->cap.len, 0};
	len = (uint32_t)cur_uint(&c, 4);
	blob = cur_take(&c, len);
	if (!c.err && len >= 4)
		memcpy(&mode, blob, 4);
	if (c.err || len < 4 || S_ISDIR(mode)) {
		fprintf(stderr, "sm snapshot: object %016llx: bad capture\n",
			(unsigned long long)id);
		return -EIO;
	}
	img_w_u8(&wk->w, 'F');
	img_w_u64(&wk->w, id);
	img_w_put(&wk->w, blob, len);
	l = tree_map_get(&wk->links, id);
	img_w_u32(&wk->w, l ? (uint32_t)l->n : 0);
	for (size_t i = 0; l && i < l->n; i++) {
		img_w_u64(&wk->w, l->v[i].parent);
		img_w_name(&wk->w, l->v[i].name);
	}
	wk->others++;
	if (S_ISREG(mode)) {
		uint64_t size = 0;

		if (len >= 28) // attrs: mode, uid, gid u32, rdev u64, size u64
			memcpy(&size, (const uint8_t *)blob + 20, 8);
		rc = img_stream_extents(wk->j, &wk->w, wk->data, id, size);
	}
	return rc ? rc : wk->w.err;
}

// Every non-directory there is now, by its index link: those made after
// the index are skipped, those deleted since were saved by the hook
// (visit_untaken). A name that is no id (none should be there) is skipped.
static int visit_ids(struct walker *wk)
{
	char path[PATH_MAX];
	int rc = 0;

	for (unsigned b = 0; b < 256 && !rc; b++) {
		struct dirent *de;
		DIR *d;

		snprintf(path, sizeof(path), "%s/ids/%02x", wk->j->sm->data_dir, b);
		d = opendir(path);
		if (!d) {
			if (errno == ENOENT)
				continue; // no object ever had an id in this bucket
			rc = -errno;
			fprintf(stderr, "sm snapshot: open directory %s: %s\n", path,
				strerror(-rc));
			break;
		}
		while (!rc && (errno = 0, de = readdir(d))) {
			char *end;
			uint64_t id = strtoull(de->d_name, &end, 16);

			if (strlen(de->d_name) == 16 && !*end && id)
				rc = visit_other(wk, id);
		}
		if (!rc && errno)
			rc = -errno;
		closedir(d);
	}
	return rc;
}

// Objects of the image deleted before the walk got to them: from their
// pre-images.
static int visit_untaken(struct walker *wk)
{
	uint64_t *ids = NULL;
	size_t n = 0;
	int rc;

	img_lock_walk(wk->j);
	rc = img_untaken(wk->j, &ids, &n);
	img_unlock(wk->j);
	for (size_t i = 0; i < n && !rc; i++)
		rc = visit_other(wk, ids[i]);
	free(ids);
	return rc;
}

static int walk(struct walker *wk)
{
	struct sm_snap_job *j = wk->j;
	int rc;

	img_w_put(&wk->w, SNAP_MAGIC, 8);
	img_w_u32(&wk->w, SNAP_VERSION);
	img_w_u64(&wk->w, j->index);
	img_w_u64(&wk->w, j->dedup_len);
	img_w_put(&wk->w, j->dedup, j->dedup_len);
	img_w_u32(&wk->w, j->hw.n);
	for (uint32_t i = 0; i < j->hw.n; i++) {
		img_w_u32(&wk->w, j->hw.node[i]);
		img_w_u64(&wk->w, j->hw.bound[i]);
	}
	// Directories breadth first from the root, so a parent always comes
	// before its children; their listings also give every name of the rest.
	rc = enqueue(wk, SM_ROOT_ID, 0, "");
	while (!rc && wk->q_head < wk->q_len) {
		rc = visit_dir(wk, &wk->queue[wk->q_head]);
		free(wk->queue[wk->q_head].name);
		wk->queue[wk->q_head++].name = NULL;
	}
	if (!rc)
		rc = visit_ids(wk);
	if (!rc)
		rc = visit_untaken(wk);
	if (!rc) {
		uint64_t h;

		img_w_u8(&wk->w, 'E');
		h = wk->w.hash;
		img_w_u64(&wk->w, h);
		img_w_flush(&wk->w);
		rc = wk->w.err;
	}
	return rc;
}

int sm_snapshot_stream(struct sm_snap_job *j, sm_snap_sink sink, void *arg)
{
	struct walker wk = {.j = j, .w = {.sink = sink, .arg = arg, .hash = FNV_OFFSET}};
	uint64_t pres, copies, copied_bytes;
	int rc;

	wk.w.buf = malloc(BUF_BYTES);
	wk.data = malloc(EXTENT_MAX);
	rc = !wk.w.buf || !wk.data ? -ENOMEM : tree_map_init(&wk.links);
	if (!rc)
		rc = walk(&wk);
	img_lock_walk(j);
	j->finished = true; // nothing more to save for this image
	if (rc && !j->err)
		j->err = rc;
	rc = j->err;
	pres = j->pres;
	copies = j->copies;
	copied_bytes = j->copied_bytes;
	img_unlock(j);
	if (rc)
		fprintf(stderr, "sm snapshot: streaming the image of %s at %llu failed: %s\n",
			j->sm->data_dir, (unsigned long long)j->index, strerror(-rc));
	else if (pres || copies)
		fprintf(stderr,
			"sm snapshot: image at %llu: %llu directories, %llu other objects; "
			"%llu kept as they were before apply changed them, %llu files "
			"changed (%llu bytes copied aside)\n",
			(unsigned long long)j->index, (unsigned long long)wk.dirs,
			(unsigned long long)wk.others, (unsigned long long)pres,
			(unsigned long long)copies, (unsigned long long)copied_bytes);
	if (wk.links.keys) {
		tree_map_each(&wk.links, free_links, NULL);
		tree_map_free(&wk.links);
	}
	for (size_t i = wk.q_head; i < wk.q_len; i++)
		free(wk.queue[i].name);
	free(wk.queue);
	img_buf_free(&wk.cap);
	free(wk.w.buf);
	free(wk.data);
	return rc;
}
