// sm_image_format.c — the image's byte stream: a hashed writer and reader, fd sinks and
// sources, and the small file helpers the image code shares.
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

// ---- checksum ----

#define FNV_PRIME 0x100000001b3ULL

uint64_t img_fnv(uint64_t h, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * FNV_PRIME;
	return h;
}

// ---- the writer ----

void img_w_flush(struct img_writer *w)
{
	if (!w->err && w->used)
		w->err = w->sink(w->arg, w->buf, w->used);
	w->used = 0;
}

void img_w_put(struct img_writer *w, const void *data, size_t len)
{
	const uint8_t *p = data;

	w->hash = img_fnv(w->hash, data, len);
	while (len && !w->err) {
		size_t n = BUF_BYTES - w->used < len ? BUF_BYTES - w->used : len;

		memcpy(w->buf + w->used, p, n);
		w->used += n;
		p += n;
		len -= n;
		if (w->used == BUF_BYTES)
			img_w_flush(w);
	}
}

void img_w_u8(struct img_writer *w, uint8_t v)
{
	img_w_put(w, &v, 1);
}
void img_w_u16(struct img_writer *w, uint16_t v)
{
	img_w_put(w, &v, 2);
}
void img_w_u32(struct img_writer *w, uint32_t v)
{
	img_w_put(w, &v, 4);
}
void img_w_u64(struct img_writer *w, uint64_t v)
{
	img_w_put(w, &v, 8);
}

void img_w_name(struct img_writer *w, const char *name)
{
	size_t len = strlen(name);

	img_w_u16(w, (uint16_t)len);
	img_w_put(w, name, len);
}

// ---- the reader ----

int img_r_fill(struct img_reader *r)
{
	ssize_t n = r->src(r->arg, r->buf, BUF_BYTES);

	if (n < 0)
		return (int)n;
	r->pos = 0;
	r->len = (size_t)n;
	return n == 0 ? -EBADMSG : 0;
}

// Reads len bytes into out (hashing them unless raw). Sets r->err.
int img_r_get_raw(struct img_reader *r, void *out, size_t len, bool hashed)
{
	uint8_t *p = out;

	while (len && !r->err) {
		if (r->pos == r->len && (r->err = img_r_fill(r)))
			break;
		size_t n = r->len - r->pos < len ? r->len - r->pos : len;

		memcpy(p, r->buf + r->pos, n);
		if (hashed)
			r->hash = img_fnv(r->hash, p, n);
		r->pos += n;
		p += n;
		len -= n;
	}
	return r->err;
}

int img_r_get(struct img_reader *r, void *out, size_t len)
{
	return img_r_get_raw(r, out, len, true);
}

uint8_t img_r_u8(struct img_reader *r)
{
	uint8_t v = 0;

	img_r_get(r, &v, 1);
	return v;
}
uint16_t img_r_u16(struct img_reader *r)
{
	uint16_t v = 0;

	img_r_get(r, &v, 2);
	return v;
}
uint32_t img_r_u32(struct img_reader *r)
{
	uint32_t v = 0;

	img_r_get(r, &v, 4);
	return v;
}
uint64_t img_r_u64(struct img_reader *r)
{
	uint64_t v = 0;

	img_r_get(r, &v, 8);
	return v;
}

// Reads a name (1..255 bytes, no '/', not . or ..) into out[256].
int img_r_name(struct img_reader *r, char *out, bool may_be_empty)
{
	uint16_t len = img_r_u16(r);

	if (r->err)
		return r->err;
	if (len > 255 || (!len && !may_be_empty))
		return r->err = -EBADMSG;
	if (img_r_get(r, out, len))
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
void img_rm_tree(const char *path)
{
	nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

int img_fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0 || fsync(fd))
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

double img_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

bool img_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}
