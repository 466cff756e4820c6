// sm_image_cow.c — streams a begun image while apply goes on: the spool, and each file's
// extents from the live file or from the copy the content hook made before apply changed
// it; ends the job.
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

// sm's content hook while an image streams: file id is about to change.
void img_cow_hook(void *arg, uint64_t id)
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
static int stream_file(struct sm_snap_job *j, struct img_writer *w, uint8_t *data, uint64_t id)
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
	pthread_mutex_lock(&j->mu);
	j->next = ord + 1;
	pthread_mutex_unlock(&j->mu);
	if (on_copy) {
		cow_path(j, id, p.buf, sizeof(p.buf));
		unlink(p.buf); // the stream is past it: no longer needed
	}
	return rc ? rc : w->err;
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
static int stream_spool(struct sm_snap_job *j, struct img_writer *w, uint8_t *buf, uint8_t *data)
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
			img_w_put(w, buf, (size_t)n);
			len -= (uint32_t)n;
		}
		if (w->err)
			return w->err;
	}
}

int sm_snapshot_stream(struct sm_snap_job *j, sm_snap_sink sink, void *arg)
{
	struct img_writer w = {.sink = sink, .arg = arg, .hash = FNV_OFFSET};
	uint8_t *buf = malloc(BUF_BYTES), *data = malloc(EXTENT_MAX);
	uint64_t copies;
	int rc;

	w.buf = malloc(BUF_BYTES);
	rc = !buf || !data || !w.buf ? -ENOMEM : stream_spool(j, &w, buf, data);
	if (!rc) {
		uint64_t h;

		img_w_u8(&w, 'E');
		h = w.hash;
		img_w_u64(&w, h);
		img_w_flush(&w);
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
	if (j->sm->content_hook == img_cow_hook && j->sm->content_hook_arg == j)
		sm_set_content_hook(j->sm, NULL, NULL);
	if (j->spool >= 0)
		close(j->spool);
	img_rm_tree(j->cow);
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
