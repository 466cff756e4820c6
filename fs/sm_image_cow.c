// sm_image_cow.c — the contents of an image made while apply goes on: each file's extents
// from the live file, or from the copy the content hook made before apply changed it; ends
// the job.
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

// sm's content hook while an image is made: file id is about to change.
void img_cow_hook(void *arg, uint64_t id)
{
	struct sm_snap_job *j = arg;
	struct sm_obj *o = tree_get(j->sm, id); // apply thread: its own tables

	// The Release of an orphan calls it whatever the orphan is: only a
	// regular file has contents (opening a FIFO would block).
	if (!o || o->type != S_IFREG)
		return;
	img_lock_hook(j);
	// Not in the image (made after it), streamed already, or copied.
	if (!j->finished && !j->err && !tree_map_get(&j->born, id) &&
	    !((uintptr_t)tree_map_get(&j->done, id) & IMG_DONE_DATA) &&
	    !tree_map_get(&j->copied, id)) {
		int rc = copy_aside(j, id);

		if (!rc)
			rc = tree_map_put(&j->copied, id, (void *)1);
		if (rc)
			j->err = rc;
		else
			j->copies++;
	}
	img_unlock(j);
}

int img_stream_extents(struct sm_snap_job *j, struct img_writer *w, uint8_t *data, uint64_t id)
{
	struct sm_path p;
	bool on_copy = false;
	int fd = -1, rc = 0;
	off_t off = 0;

	while (!rc) {
		off_t at = 0;
		size_t n = 0;

		// One piece at a time under the lock: the hook copies the file
		// aside before its first change, and the pieces after that come
		// from the copy.
		img_lock_walk(j);
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
		if (!rc && n == 0)
			rc = tree_map_put(&j->done, id,
					  (void *)((uintptr_t)tree_map_get(&j->done, id) |
						   IMG_DONE_DATA));
		img_unlock(j);
		if (rc || n == 0)
			break;
		img_w_u64(w, (uint64_t)at);
		img_w_u64(w, (uint64_t)n);
		img_w_put(w, data, n);
		off = at + (off_t)n;
		rc = w->err;
	}
	if (fd >= 0)
		close(fd);
	img_w_u64(w, 0);
	img_w_u64(w, 0);
	if (on_copy) {
		cow_path(j, id, p.buf, sizeof(p.buf));
		unlink(p.buf); // the stream is past it: no longer needed
	}
	return rc ? rc : w->err;
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
	tree_map_free(&j->copied);
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
