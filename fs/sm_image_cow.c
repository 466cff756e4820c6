// sm_image_cow.c — the contents of an image made while apply goes on: each file's extents
// from the live file, or from the ranges the content hook copied aside before apply changed
// them; ends the job.
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

// What the content hook saved of one file for the image: the byte ranges
// copied aside (sorted, disjoint, never touching) and whether the live file
// went (deleted: its last link is in DATA/snap/cow).
struct img_cow_file {
	uint64_t size; // its size at the index: nothing at or past it is saved
	bool gone;     // DATA/snap/cow/<id>.live is the file now
	size_t n, cap;
	struct range {
		uint64_t a, b; // [a, b)
	} * r;
};

static void cow_path(const struct sm_snap_job *j, uint64_t id, const char *suffix, char *out,
		     size_t len)
{
	snprintf(out, len, "%s/" ID_HEX_FMT "%s", j->cow, (unsigned long long)id, suffix);
}

// The first saved range of f that ends after off (f->n if none).
static size_t range_after(const struct img_cow_file *f, uint64_t off)
{
	size_t lo = 0, hi = f->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->r[mid].b <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

// Adds [a, b) to f's saved ranges (it touches or overlaps none of them but
// may merge with neighbours). 0 or -ENOMEM.
static int range_add(struct img_cow_file *f, uint64_t a, uint64_t b)
{
	size_t i = range_after(f, a), k = i;

	if (i > 0 && f->r[i - 1].b == a)
		i--; // joins the one before
	while (k < f->n && f->r[k].a <= b)
		k++; // the ones it touches (overlaps cannot happen)
	if (i < k) {
		f->r[i].a = f->r[i].a < a ? f->r[i].a : a;
		f->r[i].b = f->r[k - 1].b > b ? f->r[k - 1].b : b;
		memmove(&f->r[i + 1], &f->r[k], (f->n - k) * sizeof(*f->r));
		f->n -= k - i - 1;
		return 0;
	}
	if (f->n == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 4;
		struct range *r = realloc(f->r, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		f->r = r;
		f->cap = cap;
	}
	memmove(&f->r[i + 1], &f->r[i], (f->n - i) * sizeof(*f->r));
	f->r[i] = (struct range){a, b};
	f->n++;
	return 0;
}

// Copies [off, off + len) of in to out at the same offset; data extents
// only, so a hole stays a hole.
static int copy_range(int in, int out, off_t off, off_t len)
{
	static __thread uint8_t buf[64 << 10];
	off_t end = off + len;

	while (off < end) {
		off_t data = lseek(in, off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			return 0; // a hole to the end of the file
		hole = data < 0 ? -1 : lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		if (data >= end)
			return 0;
		loff_t a = data, b = data;
		off_t n_left = (hole < end ? hole : end) - data;

		while (n_left > 0) {
			ssize_t n = copy_file_range(in, &a, out, &b, (size_t)n_left, 0);

			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				      errno == EOPNOTSUPP)) {
				size_t want = n_left < (off_t)sizeof(buf) ? (size_t)n_left
									  : sizeof(buf);

				n = pread(in, buf, want, a);
				if (n > 0 && pwrite(out, buf, (size_t)n, b) != n)
					n = -1;
				if (n > 0) {
					a += n;
					b += n;
				}
			}
			if (n <= 0)
				return n < 0 ? -errno : -EIO;
			n_left -= n;
		}
		off = a;
	}
	return 0;
}

// The file's saved state, made at the hook's first call for it: the live
// file has not changed since the index (every change calls the hook first),
// so its size now is its size at the index.
static int cow_file_of(struct sm_snap_job *j, uint64_t id, int live, struct img_cow_file **out)
{
	struct img_cow_file *f = tree_map_get(&j->saved, id);
	struct stat st;
	int rc;

	*out = f;
	if (f)
		return 0;
	if (fstat(live, &st))
		return -errno;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->size = (uint64_t)st.st_size;
	rc = tree_map_put(&j->saved, id, f);
	if (rc) {
		free(f);
		return rc;
	}
	*out = f;
	return 0;
}

// Copies aside the bytes of [lo, hi) that f has not saved yet, from live to
// DATA/snap/cow/<id>.
static int save_range(struct sm_snap_job *j, uint64_t id, struct img_cow_file *f, int live,
		      uint64_t lo, uint64_t hi)
{
	char to[PATH_MAX];
	int out = -1, rc = 0;
	size_t i = range_after(f, lo);

	while (!rc && lo < hi) {
		uint64_t gap_end = i < f->n && f->r[i].a < hi ? f->r[i].a : hi;

		if (i < f->n && f->r[i].a <= lo) { // saved already: skip it
			lo = f->r[i++].b;
			continue;
		}
		if (out < 0) {
			cow_path(j, id, "", to, sizeof(to));
			out = open(to, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
			if (out < 0) {
				rc = -errno;
				break;
			}
		}
		rc = copy_range(live, out, (off_t)lo, (off_t)(gap_end - lo));
		if (!rc) {
			if (f->n == 0)
				j->copies++;
			j->copied_bytes += gap_end - lo;
			rc = range_add(f, lo, gap_end);
		}
		i = range_after(f, gap_end);
		lo = gap_end;
	}
	if (out >= 0)
		close(out);
	return rc;
}

// Saves what the image still needs of file id before [off, off + len) of
// it changes (gone: before it is deleted). Under j->mu, apply thread.
static int save_before_change(struct sm_snap_job *j, uint64_t id, uint64_t off, uint64_t len,
			      bool gone)
{
	struct img_cow_file *f;
	struct sm_path p;
	char to[PATH_MAX];
	uint64_t lo = off, hi;
	int live, rc;

	tree_index_path(j->sm, id, &p);
	live = open(p.buf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (live < 0)
		return -errno;
	rc = cow_file_of(j, id, live, &f);
	if (rc) {
		close(live);
		return rc;
	}
	hi = gone || len > f->size || off > f->size - len ? f->size : off + len;
	if (gone)
		lo = 0;
	if (j->stream_id == id && lo < j->stream_off)
		lo = j->stream_off; // the image holds those bytes already
	if (gone && !f->gone) {
		// Its data changes no more: a last link keeps it, copying nothing.
		cow_path(j, id, ".live", to, sizeof(to));
		if (!link(p.buf, to))
			f->gone = true;
		else if (errno != EXDEV && errno != EPERM && errno != EMLINK)
			rc = -errno;
	}
	if (!rc && !f->gone && lo < hi)
		rc = save_range(j, id, f, live, lo, hi);
	close(live);
	return rc;
}

void img_cow_hook(void *arg, uint64_t id, uint64_t off, uint64_t len, bool gone)
{
	struct sm_snap_job *j = arg;
	struct sm_obj *o = tree_get(j->sm, id); // apply thread: its own tables

	// The Release of an orphan calls it whatever the orphan is: only a
	// regular file has contents (opening a FIFO would block).
	if (!o || o->type != S_IFREG)
		return;
	img_lock_hook(j);
	// Not in the image (made after it) or streamed already.
	if (!j->finished && !j->err && !tree_map_get(&j->born, id) &&
	    !((uintptr_t)tree_map_get(&j->done, id) & IMG_DONE_DATA)) {
		int rc = save_before_change(j, id, off, len, gone);

		if (rc) {
			fprintf(stderr,
				"sm snapshot: image at %llu: saving file %016llx before it "
				"changes (at %llu): %s\n",
				(unsigned long long)j->index, (unsigned long long)id,
				(unsigned long long)off, strerror(-rc));
			j->err = rc;
		}
	}
	img_unlock(j);
}

// Reads the next data of fd in [off, end) (holes skipped, at most
// EXTENT_MAX bytes): *n bytes (0 if none before end) at *at.
static int read_piece(int fd, uint8_t *buf, uint64_t off, uint64_t end, uint64_t *at, size_t *n)
{
	off_t data = lseek(fd, (off_t)off, SEEK_DATA), hole;
	uint64_t stop;
	ssize_t got;

	*n = 0;
	if (data < 0)
		return errno == ENXIO ? 0 : -errno;
	if ((uint64_t)data >= end)
		return 0;
	hole = lseek(fd, data, SEEK_HOLE);
	if (hole < 0)
		return -errno;
	stop = (uint64_t)hole < end ? (uint64_t)hole : end;
	if (stop - (uint64_t)data > EXTENT_MAX)
		stop = (uint64_t)data + EXTENT_MAX;
	got = pread(fd, buf, stop - (uint64_t)data, data);
	if (got <= 0)
		return got < 0 ? -errno : -EIO;
	*at = (uint64_t)data;
	*n = (size_t)got;
	return 0;
}

// The descriptors the walk reads one file from.
struct source {
	int live, copy; // -1 until opened
	char path[PATH_MAX];
};

static int open_source(struct sm_snap_job *j, uint64_t id, const struct img_cow_file *f,
		       bool copy, struct source *s)
{
	int *fd = copy ? &s->copy : &s->live;

	if (*fd >= 0)
		return 0;
	if (copy || (f && f->gone)) {
		cow_path(j, id, copy ? "" : ".live", s->path, sizeof(s->path));
	} else {
		struct sm_path p;

		tree_index_path(j->sm, id, &p);
		snprintf(s->path, sizeof(s->path), "%s", p.buf);
	}
	*fd = open(s->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0 && copy && errno == ENOENT)
		return 0; // saved ranges that were all holes: nothing was written
	if (*fd < 0) {
		int rc = -errno;

		fprintf(stderr, "sm snapshot: open %s: %s\n", s->path, strerror(-rc));
		return rc;
	}
	return 0;
}

// Under the walk's lock: the next piece of file id at or after *off and
// below size, from wherever the bytes at the index are now. *n 0 with *off
// moved on: nothing more before the next change of source.
static int next_piece(struct sm_snap_job *j, uint64_t id, uint64_t size, struct source *s,
		      uint8_t *data, uint64_t *off, uint64_t *at, size_t *n)
{
	const struct img_cow_file *f = tree_map_get(&j->saved, id);
	size_t i = f ? range_after(f, *off) : 0;
	bool copy = f && i < f->n && f->r[i].a <= *off;
	uint64_t end = copy ? f->r[i].b : f && i < f->n ? f->r[i].a : size;
	int rc;

	*n = 0;
	if (end > size)
		end = size;
	rc = open_source(j, id, f, copy, s);
	if (!rc && (copy ? s->copy : s->live) >= 0)
		rc = read_piece(copy ? s->copy : s->live, data, *off, end, at, n);
	if (rc)
		fprintf(stderr, "sm snapshot: read %s: %s\n", s->path, strerror(-rc));
	else if (*n == 0)
		*off = end;
	return rc;
}

int img_stream_extents(struct sm_snap_job *j, struct img_writer *w, uint8_t *data, uint64_t id,
		       uint64_t size)
{
	struct source s = {.live = -1, .copy = -1};
	uint64_t off = 0;
	int rc = 0;

	while (!rc) {
		uint64_t at = 0;
		size_t n = 0;

		// One piece at a time under the lock: a hook saves what a change
		// overwrites before it, and the walk reads past what it saved.
		img_lock_walk(j);
		rc = j->err;
		j->stream_id = id;
		j->stream_off = off;
		while (!rc && n == 0 && off < size)
			rc = next_piece(j, id, size, &s, data, &off, &at, &n);
		if (!rc && n == 0) {
			struct img_cow_file *f = tree_map_del(&j->saved, id);

			rc = tree_map_put(&j->done, id,
					  (void *)((uintptr_t)tree_map_get(&j->done, id) |
						   IMG_DONE_DATA));
			j->stream_id = 0;
			if (f) { // the stream is past it: no longer needed
				cow_path(j, id, "", s.path, sizeof(s.path));
				unlink(s.path);
				cow_path(j, id, ".live", s.path, sizeof(s.path));
				unlink(s.path);
				free(f->r);
				free(f);
			}
		}
		img_unlock(j);
		if (rc || n == 0)
			break;
		img_w_u64(w, at);
		img_w_u64(w, (uint64_t)n);
		img_w_put(w, data, n);
		off = at + n;
		rc = w->err;
	}
	if (s.live >= 0)
		close(s.live);
	if (s.copy >= 0)
		close(s.copy);
	img_w_u64(w, 0);
	img_w_u64(w, 0);
	return rc ? rc : w->err;
}

static int free_saved(uint64_t id, void *val, void *arg)
{
	struct img_cow_file *f = val;

	(void)id;
	(void)arg;
	free(f->r);
	free(f);
	return 0;
}

void img_cow_free(struct sm_snap_job *j)
{
	if (!j->saved.keys)
		return;
	tree_map_each(&j->saved, free_saved, NULL);
	tree_map_free(&j->saved);
}

void sm_snapshot_end(struct sm_snap_job *j)
{
	if (!j)
		return;
	if (j->sm->content_hook == img_cow_hook && j->sm->content_hook_arg == j)
		sm_set_content_hook(j->sm, NULL, NULL);
	if (j->sm->meta_hook == img_meta_hook && j->sm->meta_hook_arg == j) {
		j->sm->meta_hook = NULL;
		j->sm->meta_hook_arg = NULL;
	}
	if (j->spool >= 0)
		close(j->spool);
	img_rm_tree(j->cow);
	tree_map_free(&j->born);
	tree_map_free(&j->done);
	tree_map_free(&j->pre);
	img_cow_free(j);
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
	img_buf_free(&j->hbuf);
	free(j->dedup);
	free(j->xbuf);
	free(j->vbuf);
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
