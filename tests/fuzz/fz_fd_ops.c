/* fz_fd_ops.c — operations on open handles (also of unlinked files), run on mount and model and compared. */
#include "fz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fz_pick_fd(struct fz *z)
{
	int c[FZ_MAX_FDS], n = 0;

	for (int i = 0; i < FZ_MAX_FDS; i++)
		if (z->fds[i].used)
			c[n++] = i;
	return n ? c[fz_below(z, (uint64_t)n)] : -1;
}

/* The size of the handle's file as the model (the mount in chaos mode) sees it. */
static off_t fd_size(const struct fz_fd *f)
{
	struct stat st;

	return fstat(f->mfd >= 0 ? f->mfd : f->tfd, &st) == 0 ? st.st_size : 0;
}

static off_t rand_off(struct fz *z, off_t size, size_t len)
{
	off_t room = (off_t)FZ_MAX_FILE - (off_t)len;
	off_t o = fz_below(z, 10) ? (off_t)fz_below(z, (uint64_t)size + 65536)
				   : (off_t)fz_below(z, (uint64_t)room);
	return o > room ? room : o;
}

static int do_close(struct fz *z, struct fz_fd *f)
{
	struct fz_res t = fz_res_of(close(f->tfd));
	struct fz_res m = {0, 0};

	if (f->mfd >= 0)
		m = fz_res_of(close(f->mfd));
	f->used = false;
	return fz_check(z, "close", t, m);
}

static int op_write(struct fz *z, struct fz_fd *f)
{
	size_t len = fz_size(z);
	off_t size = fd_size(f);
	bool positional = fz_below(z, 10) < 7;
	off_t off = rand_off(z, size, len);
	struct fz_res t, m = {0, 0};

	if (!positional) {
		/* write(2) at the handle's position, which both sides share. */
		off_t pos = lseek(f->mfd >= 0 ? f->mfd : f->tfd, 0, SEEK_CUR);
		if (pos < 0 || pos > (off_t)FZ_MAX_FILE - (off_t)len || (f->flags & O_APPEND))
			positional = true;
	}
	if ((f->flags & O_APPEND) && size + (off_t)len > (off_t)FZ_MAX_FILE)
		len = 1; /* appends land at the end whatever the offset */
	fz_fill(z, z->buf, len);
	if (positional) {
		fz_describe(z, "pwrite slot %ld (%s) %zu at %lld", (long)(f - z->fds), f->path,
			    len, (long long)off);
		t = fz_res_of(pwrite(f->tfd, z->buf, len, off));
		if (f->mfd >= 0)
			m = fz_res_of(pwrite(f->mfd, z->buf, len, off));
	} else {
		fz_describe(z, "write slot %ld (%s) %zu", (long)(f - z->fds), f->path, len);
		t = fz_res_of(write(f->tfd, z->buf, len));
		if (f->mfd >= 0)
			m = fz_res_of(write(f->mfd, z->buf, len));
	}
	f->dirty = true;
	if (t.ret < 0 && t.err == EAGAIN && !f->is_fifo)
		return fz_fail(z, "%s: EAGAIN from a file that is no fifo", positional ? "pwrite" : "write");
	return fz_check(z, positional ? "pwrite" : "write", t, m);
}

static int op_read(struct fz *z, struct fz_fd *f)
{
	size_t len = fz_size(z);
	bool positional = fz_below(z, 10) < 7;
	off_t off = rand_off(z, fd_size(f), len);
	struct fz_res t, m = {0, 0};

	if (positional) {
		fz_describe(z, "pread slot %ld (%s) %zu at %lld", (long)(f - z->fds), f->path, len,
			    (long long)off);
		t = fz_res_of(pread(f->tfd, z->buf, len, off));
		if (f->mfd >= 0)
			m = fz_res_of(pread(f->mfd, z->buf2, len, off));
	} else {
		fz_describe(z, "read slot %ld (%s) %zu", (long)(f - z->fds), f->path, len);
		t = fz_res_of(read(f->tfd, z->buf, len));
		if (f->mfd >= 0)
			m = fz_res_of(read(f->mfd, z->buf2, len));
	}
	/* Chaos opens are non-blocking: EAGAIN is a fifo's answer, never a file's. */
	if (t.ret < 0 && t.err == EAGAIN && !f->is_fifo)
		return fz_fail(z, "%s: EAGAIN from a file that is no fifo", positional ? "pread" : "read");
	int rc = fz_check(z, positional ? "pread" : "read", t, m);
	if (rc || t.ret <= 0 || f->mfd < 0)
		return rc;
	for (long i = 0; i < t.ret; i++)
		if (z->buf[i] != z->buf2[i])
			return fz_fail(z, "read data differs at byte %ld of %ld (mount %#x, model %#x)",
				       i, t.ret, z->buf[i], z->buf2[i]);
	return 0;
}

static int op_ftruncate(struct fz *z, struct fz_fd *f)
{
	off_t size = fd_size(f), len;
	struct fz_res t, m = {0, 0};

	switch (fz_below(z, 4)) {
	case 0:
		len = 0;
		break;
	case 1:
		len = (off_t)fz_below(z, (uint64_t)size + 1);
		break;
	case 2:
		len = size + (off_t)fz_below(z, 1 << 20);
		break;
	default:
		len = (off_t)fz_below(z, FZ_MAX_FILE);
	}
	fz_describe(z, "ftruncate slot %ld (%s) %lld", (long)(f - z->fds), f->path,
		    (long long)len);
	t = fz_res_of(ftruncate(f->tfd, len));
	if (f->mfd >= 0)
		m = fz_res_of(ftruncate(f->mfd, len));
	f->dirty = true;
	return fz_check(z, "ftruncate", t, m);
}

static int op_fallocate(struct fz *z, struct fz_fd *f)
{
	static const int modes[] = {0,
				    FALLOC_FL_KEEP_SIZE,
				    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				    FALLOC_FL_ZERO_RANGE,
				    FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
				    FALLOC_FL_PUNCH_HOLE};
	int mode = modes[fz_below(z, sizeof(modes) / sizeof(modes[0]))];
	size_t len = fz_size(z);
	off_t off = rand_off(z, fd_size(f), len);
	struct fz_res t, m = {0, 0};

	if (fz_below(z, 30) == 0)
		len = 0; /* EINVAL */
	fz_describe(z, "fallocate slot %ld (%s) mode %#x %lld+%zu", (long)(f - z->fds), f->path,
		    mode, (long long)off, len);
	t = fz_res_of(fallocate(f->tfd, mode, off, (off_t)len));
	if (f->mfd >= 0)
		m = fz_res_of(fallocate(f->mfd, mode, off, (off_t)len));
	f->dirty = true;
	return fz_check(z, "fallocate", t, m);
}

/* Whether the model's bytes in [from, to) are all zero. */
static bool zeros(struct fz *z, int fd, off_t from, off_t to, off_t *at)
{
	while (from < to) {
		size_t want = to - from < (off_t)FZ_MAX_FILE ? (size_t)(to - from) : FZ_MAX_FILE;
		ssize_t n = pread(fd, z->buf2, want, from);
		if (n <= 0)
			return true;
		for (ssize_t i = 0; i < n; i++)
			if (z->buf2[i]) {
				*at = from + i;
				return false;
			}
		from += n;
	}
	return true;
}

/* SEEK_DATA/SEEK_HOLE: where data and holes lie is the filesystem's to say
 * (ext4 counts an unwritten extent as data once its pages are cached), so
 * the mount's answer is checked against the model's content, not against
 * the model's answer: SEEK_DATA may stop early (on zeros), never past a
 * nonzero byte, and says ENXIO only if nothing but zeros follows; SEEK_HOLE
 * may stop late, never on a nonzero byte; both stay within the size. */
static int check_placed(struct fz *z, struct fz_fd *f, int data, off_t off, struct fz_res t,
			off_t mpos)
{
	off_t size = fd_size(f), at = 0;
	const char *wn = data ? "DATA" : "HOLE";

	if (t.ret < 0 && t.err == ENXIO) {
		lseek(f->mfd, mpos, SEEK_SET); /* a failed lseek moves nothing */
		if (off >= size || (data && zeros(z, f->mfd, off, size, &at)))
			return 0;
		return off >= size ? 0
				   : fz_fail(z, "lseek %s: mount ENXIO below the size %lld%s%lld", wn,
					     (long long)size, data ? ", model data at " : " at ",
					     (long long)(data ? at : off));
	}
	if (t.ret < 0)
		return fz_check(z, "lseek", t, fz_res_of(lseek(f->mfd, off, data ? SEEK_DATA : SEEK_HOLE)));
	if (t.ret < off || t.ret > size || (data && t.ret == size))
		return fz_fail(z, "lseek %s from %lld: %lld, the size is %lld", wn, (long long)off,
			       (long long)t.ret, (long long)size);
	if (data ? !zeros(z, f->mfd, off, t.ret, &at)
		 : (t.ret < size && !zeros(z, f->mfd, t.ret, t.ret + 1, &at)))
		return fz_fail(z, "lseek %s from %lld: %lld passes the model's data at %lld", wn,
			       (long long)off, (long long)t.ret, (long long)at);
	lseek(f->mfd, t.ret, SEEK_SET); /* both handles go on from the mount's answer */
	z->seek_checked++;
	return 0;
}

static int op_lseek(struct fz *z, struct fz_fd *f)
{
	static const int wh[] = {SEEK_DATA, SEEK_HOLE, SEEK_SET, SEEK_END};
	static const char *const wn[] = {"DATA", "HOLE", "SET", "END"};
	int k = (int)fz_below(z, 4);
	off_t off = (off_t)fz_below(z, (uint64_t)fd_size(f) + 8192);
	struct fz_res t, m = {0, 0};

	if (k == 3)
		off = -(off_t)fz_below(z, 4096);
	if (f->is_dir) {
		/* A directory's offsets are cookies of the filesystem underneath. */
		fz_describe(z, "lseek slot %ld (%s): a directory, skipped", (long)(f - z->fds),
			    f->path);
		return 0;
	}
	fz_describe(z, "lseek slot %ld (%s) %lld %s", (long)(f - z->fds), f->path,
		    (long long)off, wn[k]);
	off_t mpos = f->mfd >= 0 ? lseek(f->mfd, 0, SEEK_CUR) : 0;
	t = fz_res_of(lseek(f->tfd, off, wh[k]));
	if (k <= 1 && f->mfd >= 0 && !(f->flags & O_NONBLOCK)) {
		fz_note(z, t);
		return check_placed(z, f, k == 0, off, t, mpos);
	}
	if (f->mfd >= 0)
		m = fz_res_of(lseek(f->mfd, off, wh[k]));
	return fz_check(z, "lseek", t, m);
}

static int op_copy(struct fz *z, struct fz_fd *in)
{
	struct fz_fd *out = NULL;
	size_t len = fz_size(z);
	struct fz_res t, m = {0, 0};

	/* Both ends on one mount: a copy between mounts is between two filesystems. */
	for (int tries = 0; tries < 8 && !out; tries++) {
		struct fz_fd *o = &z->fds[fz_below(z, FZ_MAX_FDS)];
		if (o->used && o->mount == in->mount)
			out = o;
	}
	if (!out)
		out = in;
	off_t oi = rand_off(z, fd_size(in), 0), oo = rand_off(z, fd_size(out), len);
	if (z->nmounts > 1) {
		/* The kernel checks the ranges against the size it cached, which
		 * an invalidation marks stale but does not refresh; a stat does
		 * (tests/fuzz/README.md, "Found": copy_file_range after a
		 * truncate on another mount). */
		struct stat st;
		fstat(in->tfd, &st);
		fstat(out->tfd, &st);
	}
	off_t ti = oi, to = oo, mi = oi, mo = oo;
	fz_describe(z, "copy_file_range slot %ld (%s) @%lld -> slot %ld (%s) @%lld, %zu",
		    (long)(in - z->fds), in->path, (long long)oi, (long)(out - z->fds), out->path,
		    (long long)oo, len);
	t = fz_res_of(copy_file_range(in->tfd, &ti, out->tfd, &to, len, 0));
	if (in->mfd >= 0)
		m = fz_res_of(copy_file_range(in->mfd, &mi, out->mfd, &mo, len, 0));
	out->dirty = true;
	return fz_check(z, "copy_file_range", t, m);
}

static int op_fstat(struct fz *z, struct fz_fd *f)
{
	struct stat ts, ms;

	fz_describe(z, "fstat slot %ld (%s)", (long)(f - z->fds), f->path);
	struct fz_res t = fz_res_of(fstat(f->tfd, &ts));
	struct fz_res m = {0, 0};
	if (f->mfd < 0)
		return fz_check(z, "fstat", t, m);
	m = fz_res_of(fstat(f->mfd, &ms));
	if (t.ret < 0 && t.err == ESTALE && (f->is_dir || f->is_fifo) && m.ret == 0 &&
	    ms.st_nlink == 0) {
		/* A directory or fifo removed while open: the mount forgets it
		 * (FUSE sends no open for a fifo; README.md, "Found"). */
		z->known_estale++;
		return 0;
	}
	int rc = fz_check(z, "fstat", t, m);
	if (rc || t.ret < 0)
		return rc;
	if (ts.st_mode != ms.st_mode || ts.st_nlink != ms.st_nlink || ts.st_uid != ms.st_uid ||
	    ts.st_gid != ms.st_gid || (S_ISREG(ms.st_mode) && ts.st_size != ms.st_size))
		return fz_fail(z,
			       "fstat: mount mode %o nlink %lu uid %u gid %u size %lld, model mode "
			       "%o nlink %lu uid %u gid %u size %lld",
			       ts.st_mode, (unsigned long)ts.st_nlink, ts.st_uid, ts.st_gid,
			       (long long)ts.st_size, ms.st_mode, (unsigned long)ms.st_nlink,
			       ms.st_uid, ms.st_gid, (long long)ms.st_size);
	return 0;
}

static int op_fsync(struct fz *z, struct fz_fd *f)
{
	bool data = fz_below(z, 3) == 0;

	fz_describe(z, "%s slot %ld (%s)", data ? "fdatasync" : "fsync", (long)(f - z->fds),
		    f->path);
	struct fz_res t = fz_res_of(data ? fdatasync(f->tfd) : fsync(f->tfd));
	struct fz_res m = {0, 0};
	if (f->mfd >= 0)
		m = fz_res_of(data ? fdatasync(f->mfd) : fsync(f->mfd));
	if (t.ret == 0)
		f->dirty = false;
	return fz_check(z, "fsync", t, m);
}

/* After a mismatch on a handle: what each side says of its file now. */
static void show_fd(const struct fz_fd *f)
{
	for (int side = 0; side < 2; side++) {
		int fd = side ? f->mfd : f->tfd;
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0)
			continue;
		off_t d = lseek(fd, 0, SEEK_DATA), h = lseek(fd, 0, SEEK_HOLE);
		fprintf(stderr, "  %s handle: ino %llu mode %o nlink %lu size %lld; data at %lld, hole at %lld\n",
			side ? "model" : "mount", (unsigned long long)st.st_ino, st.st_mode,
			(unsigned long)st.st_nlink, (long long)st.st_size, (long long)d, (long long)h);
	}
}

static int fd_op(struct fz *z, int kind, struct fz_fd *f);

int fz_fd_op(struct fz *z, int kind, int s)
{
	struct fz_fd *f = &z->fds[s];
	int rc = fd_op(z, kind, f);

	if (rc < 0 && f->used && f->mfd >= 0)
		show_fd(f);
	return rc;
}

static int fd_op(struct fz *z, int kind, struct fz_fd *f)
{
	int s = (int)(f - z->fds);

	z->cur = f->mount;
	switch (kind) {
	case K_CLOSE:
		fz_describe(z, "close slot %d (%s)", s, f->path);
		return do_close(z, f);
	case K_WRITE:
		return op_write(z, f);
	case K_READ:
		return op_read(z, f);
	case K_FTRUNC:
		return op_ftruncate(z, f);
	case K_FALLOC:
		return op_fallocate(z, f);
	case K_LSEEK:
		return op_lseek(z, f);
	case K_COPY:
		return op_copy(z, f);
	case K_FSYNC:
		return op_fsync(z, f);
	case K_FSTAT:
		return op_fstat(z, f);
	}
	return fz_fail(z, "unknown handle operation kind %d", kind);
}

int fz_close_all(struct fz *z)
{
	int rc = 0;

	for (int i = 0; i < FZ_MAX_FDS; i++)
		if (z->fds[i].used) {
			z->cur = z->fds[i].mount;
			fz_describe(z, "close slot %d (%s) at the end", i, z->fds[i].path);
			int r = do_close(z, &z->fds[i]);
			if (r && !rc)
				rc = r;
		}
	return rc;
}

int fz_sync_fds(struct fz *z, int m)
{
	for (int i = 0; i < FZ_MAX_FDS; i++) {
		struct fz_fd *f = &z->fds[i];
		if (!f->used || f->mount != m || !f->dirty)
			continue;
		fz_describe(z, "fsync slot %d (%s) before leaving n%d", i, f->path, m + 1);
		int e = fsync(f->tfd) < 0 ? errno : 0;
		/* fsync of a handle opened read-only, or of a fifo, is fine too. */
		if (e && e != EINVAL && e != EBADF)
			return fz_fail(z, "fsync: %s", strerror(e));
		f->dirty = false;
	}
	return 0;
}
