/* fz_path_ops.c — operations by name, each run on the mount and on the model and compared. */
#include "fz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

static bool with_model(const struct fz *z)
{
	return z->mode == FZ_MODEL;
}

static int troot(const struct fz *z)
{
	return z->troot[z->cur];
}

/* The full name of p under the mount (side 0) or the model (side 1): the
 * xattr and truncate calls have no *at form. */
static const char *full(const struct fz *z, int side, const char *p, char *out)
{
	snprintf(out, 2 * FZ_PATH, "%s/%s", side ? z->mpath : z->tpath[z->cur], p);
	return out;
}

/* Attributes both sides must agree on (README "The filesystem"): not the
 * inode number, times or block counts, nor a directory's size. */
static int cmp_stat(struct fz *z, const char *what, const struct stat *t, const struct stat *m)
{
	if (t->st_mode != m->st_mode || t->st_uid != m->st_uid || t->st_gid != m->st_gid ||
	    t->st_nlink != m->st_nlink || (!S_ISDIR(m->st_mode) && t->st_size != m->st_size))
		return fz_fail(z,
			       "%s: mount mode %o uid %u gid %u nlink %lu size %lld, "
			       "model mode %o uid %u gid %u nlink %lu size %lld",
			       what, t->st_mode, t->st_uid, t->st_gid, (unsigned long)t->st_nlink,
			       (long long)t->st_size, m->st_mode, m->st_uid, m->st_gid,
			       (unsigned long)m->st_nlink, (long long)m->st_size);
	return 0;
}

static mode_t rand_mode(struct fz *z)
{
	mode_t m = (mode_t)fz_below(z, 01000);

	if (fz_below(z, 8) == 0)
		m |= (mode_t)fz_below(z, 8) << 9; /* set-id and sticky bits */
	return m | (fz_below(z, 4) ? 0600 : 0); /* mostly usable by the owner */
}

static int op_open(struct fz *z)
{
	static const int acc[] = {O_RDONLY, O_WRONLY, O_RDWR, O_RDWR};
	int slot = -1, flags = acc[fz_below(z, 4)];
	char p[FZ_PATH];
	struct stat st;

	for (int i = 0; i < FZ_MAX_FDS && slot < 0; i++)
		if (!z->fds[i].used)
			slot = i;
	if (slot < 0)
		return fz_fd_op(z, K_CLOSE, fz_pick_fd(z));
	fz_pick(z, fz_below(z, 8) ? "fl" : "fdl", p);
	if (fz_below(z, 2))
		flags |= O_CREAT;
	if (fz_below(z, 5) == 0)
		flags |= O_EXCL;
	if (fz_below(z, 5) == 0)
		flags |= O_TRUNC;
	if (fz_below(z, 5) == 0)
		flags |= O_APPEND;
	if (fz_below(z, 20) == 0)
		flags |= O_NOFOLLOW;
	if (fz_below(z, 20) == 0)
		flags |= O_DIRECTORY;
	/* A fifo would block the open: the model says what the path is. */
	if (z->mode == FZ_CHAOS ||
	    (fstatat(z->mroot, p, &st, 0) == 0 && S_ISFIFO(st.st_mode))) {
		flags |= O_NONBLOCK;
		if (z->nmounts > 1 && z->mode == FZ_MODEL) {
			/* A fifo is a pipe of one kernel: a reader on another
			 * mount is no reader here (ENXIO), unlike in the model. */
			fz_describe(z, "open %s: a fifo with several mounts, skipped", p);
			return 0;
		}
	}
	mode_t mode = rand_mode(z);
	fz_describe(z, "open %s flags %#o mode %o -> slot %d", p, flags, mode, slot);
	struct fz_res t = fz_res_of(openat(troot(z), p, flags | O_CLOEXEC, mode));
	struct fz_res m = {0, 0};
	if (with_model(z))
		m = fz_res_of(openat(z->mroot, p, flags | O_CLOEXEC, mode));
	int rc = fz_check(z, "open", t.ret < 0 ? t : (struct fz_res){0, 0},
			  m.ret < 0 ? m : (struct fz_res){0, 0});
	if (rc) {
		if (t.ret >= 0)
			close((int)t.ret);
		if (m.ret >= 0 && with_model(z))
			close((int)m.ret);
		return rc;
	}
	if (t.ret < 0)
		return 0;
	struct fz_fd *f = &z->fds[slot];
	*f = (struct fz_fd){.used = true, .tfd = (int)t.ret, .mfd = with_model(z) ? (int)m.ret : -1,
			    .mount = z->cur, .flags = flags, .dirty = false};
	snprintf(f->path, FZ_PATH, "%s", p);
	struct stat ts, ms;
	if (fstat(f->tfd, &ts) < 0)
		return fz_gone(z) ? 3 : fz_fail(z, "fstat after open: %s", strerror(errno));
	if (with_model(z) && fstat(f->mfd, &ms) < 0)
		return fz_fail(z, "fstat of the model after open: %s", strerror(errno));
	f->is_dir = S_ISDIR(ts.st_mode);
	f->is_fifo = S_ISFIFO(ts.st_mode);
	return with_model(z) ? cmp_stat(z, "attributes after open", &ts, &ms) : 0;
}

static int op_stat(struct fz *z)
{
	char p[FZ_PATH];
	int fl = fz_below(z, 2) ? AT_SYMLINK_NOFOLLOW : 0;
	struct stat ts, ms;

	fz_pick(z, "fdlp", p);
	fz_describe(z, "%s %s", fl ? "lstat" : "stat", p);
	struct fz_res t = fz_res_of(fstatat(troot(z), p, &ts, fl));
	struct fz_res m = {0, 0};
	if (!with_model(z))
		return fz_check(z, "stat", t, m);
	m = fz_res_of(fstatat(z->mroot, p, &ms, fl));
	int rc = fz_check(z, "stat", t, m);
	if (rc || t.ret < 0)
		return rc;
	return cmp_stat(z, "stat", &ts, &ms);
}

static off_t rand_len(struct fz *z, off_t cur)
{
	switch (fz_below(z, 4)) {
	case 0:
		return 0;
	case 1:
		return (off_t)fz_below(z, (uint64_t)cur + 1);
	case 2:
		return cur + (off_t)fz_below(z, 1 << 20);
	default:
		return (off_t)fz_below(z, FZ_MAX_FILE);
	}
}

static int op_truncate(struct fz *z)
{
	char p[FZ_PATH], ft[2 * FZ_PATH], fm[2 * FZ_PATH];
	struct stat st;

	fz_pick(z, "fdl", p);
	off_t cur = fstatat(z->troot[z->cur], p, &st, 0) == 0 ? st.st_size : 0;
	off_t len = rand_len(z, cur);
	fz_describe(z, "truncate %s %lld", p, (long long)len);
	struct fz_res t = fz_res_of(truncate(full(z, 0, p, ft), len));
	struct fz_res m = {0, 0};
	if (with_model(z))
		m = fz_res_of(truncate(full(z, 1, p, fm), len));
	return fz_check(z, "truncate", t, m);
}

struct args {
	char a[FZ_PATH], b[FZ_PATH];
	mode_t mode;
	unsigned flags;
	uid_t uid;
	gid_t gid;
	struct timespec ts[2];
};

/* After a mismatch: what each side shows of a path now (the kernel's cached view and a forced one). */
static void show(struct fz *z, const char *p)
{
	struct stat st;
	struct statx sx;

	if (!*p)
		return;
	for (int side = 0; side < 2; side++) {
		int root = side ? z->mroot : troot(z);
		if (fstatat(root, p, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			fprintf(stderr, "  %s %s: %s\n", side ? "model" : "mount", p, strerror(errno));
			continue;
		}
		fprintf(stderr, "  %s %s: mode %o ino %llu nlink %lu size %lld", side ? "model" : "mount",
			p, st.st_mode, (unsigned long long)st.st_ino, (unsigned long)st.st_nlink,
			(long long)st.st_size);
		if (!side && statx(root, p, AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC, STATX_BASIC_STATS,
				   &sx) == 0)
			fprintf(stderr, " (asked again: ino %llu nlink %u)", (unsigned long long)sx.stx_ino,
				sx.stx_nlink);
		fprintf(stderr, "\n");
	}
}

/* Runs an *at call that takes one root on each side; returns fz_check's verdict. */
static int both(struct fz *z, const char *what, long (*fn)(struct fz *, int root, void *arg),
		void *arg)
{
	struct args *a = arg;
	struct fz_res t = fz_res_of(fn(z, troot(z), arg));
	struct fz_res m = {0, 0};

	if (with_model(z))
		m = fz_res_of(fn(z, z->mroot, arg));
	if (with_model(z) && z->nmounts > 1 && t.ret < 0 && t.err == ESTALE &&
	    !(m.ret < 0 && m.err == ESTALE)) {
		/* A directory another mount moved, still held here (an open
		 * handle) under its old name: the kernel cannot move that
		 * dentry while a rename holds its lock, and the call fails
		 * before it reaches raftfs (tests/fuzz/README.md, "Found").
		 * A lookup of the names moves it; the call is then retried. */
		struct stat st;
		fstatat(troot(z), a->a, &st, AT_SYMLINK_NOFOLLOW);
		if (a->b[0])
			fstatat(troot(z), a->b, &st, AT_SYMLINK_NOFOLLOW);
		t = fz_res_of(fn(z, troot(z), arg));
		z->known_moved++;
	}
	int rc = fz_check(z, what, t, m);
	if (rc < 0 && with_model(z)) {
		show(z, a->a);
		show(z, a->b);
	}
	return rc;
}

static long do_mkdir(struct fz *z, int root, void *v)
{
	struct args *a = v;
	(void)z;
	return mkdirat(root, a->a, a->mode);
}

static long do_unlink(struct fz *z, int root, void *v)
{
	struct args *a = v;
	(void)z;
	return unlinkat(root, a->a, (int)a->flags);
}

static long do_rename(struct fz *z, int root, void *v)
{
	struct args *a = v;
	(void)z;
	return renameat2(root, a->a, root, a->b, a->flags);
}

static long do_link(struct fz *z, int root, void *v)
{
	struct args *a = v;
	(void)z;
	return linkat(root, a->a, root, a->b, 0);
}

static long do_symlink(struct fz *z, int root, void *v)
{
	struct args *a = v;
	(void)z;
	return symlinkat(a->b, root, a->a);
}

static long do_chmod(struct fz *z, int root, void *v)
{
	struct args *a = v;
	(void)z;
	return fchmodat(root, a->a, a->mode, 0);
}

static long do_chown(struct fz *z, int root, void *v)
{
	struct args *a = v;
	(void)z;
	return fchownat(root, a->a, a->uid, a->gid, (int)a->flags);
}

static long do_utimens(struct fz *z, int root, void *v)
{
	struct args *a = v;
	(void)z;
	return utimensat(root, a->a, a->ts, (int)a->flags);
}

static long do_mkfifo(struct fz *z, int root, void *v)
{
	struct args *a = v;
	(void)z;
	return mknodat(root, a->a, S_IFIFO | a->mode, 0);
}

static int op_rename(struct fz *z)
{
	struct args a = {0};
	static const char *const fl[] = {"", " NOREPLACE", " EXCHANGE"};
	unsigned r = (unsigned)fz_below(z, 10);
	int k = r < 6 ? 0 : r < 8 ? 1 : 2;

	a.flags = k == 1 ? RENAME_NOREPLACE : k == 2 ? RENAME_EXCHANGE : 0;
	fz_pick(z, "fdlp", a.a);
	if (fz_below(z, 10) == 0) /* a directory into its own subtree: EINVAL */
		snprintf(a.b, FZ_PATH, "%.*s/%c", FZ_PATH - 8, a.a, 'a' + (int)fz_below(z, 3));
	else if (fz_below(z, 2))
		fz_pick(z, "fdlp", a.b);
	else
		fz_newpath(z, a.b);
	fz_describe(z, "rename %s %s%s", a.a, a.b, fl[k]);
	return both(z, "rename", do_rename, &a);
}

static int op_utimens(struct fz *z)
{
	struct args a = {0};
	bool explicit_m = false;
	struct stat ts, ms;

	fz_pick(z, "fdlp", a.a);
	for (int i = 0; i < 2; i++) {
		switch (fz_below(z, 3)) {
		case 0:
			a.ts[i].tv_nsec = UTIME_NOW;
			break;
		case 1:
			a.ts[i].tv_nsec = UTIME_OMIT;
			break;
		default:
			a.ts[i].tv_sec = 1000000000 + (time_t)fz_below(z, 1000000000);
			a.ts[i].tv_nsec = (long)fz_below(z, 1000000000);
			explicit_m |= i == 1;
		}
	}
	a.flags = fz_below(z, 4) ? 0 : AT_SYMLINK_NOFOLLOW;
	fz_describe(z, "utimensat %s atime %lld.%ld mtime %lld.%ld%s", a.a,
		    (long long)a.ts[0].tv_sec, a.ts[0].tv_nsec, (long long)a.ts[1].tv_sec,
		    a.ts[1].tv_nsec, a.flags ? " NOFOLLOW" : "");
	int rc = both(z, "utimensat", do_utimens, &a);
	if (rc || !explicit_m || !with_model(z) || fstatat(z->mroot, a.a, &ms, (int)a.flags))
		return rc;
	/* An mtime set explicitly is the same on both sides (times are otherwise not comparable). */
	if (fstatat(troot(z), a.a, &ts, (int)a.flags))
		return fz_gone(z) ? 3 : fz_fail(z, "stat after utimensat: %s", strerror(errno));
	if (ts.st_mtim.tv_sec != ms.st_mtim.tv_sec || ts.st_mtim.tv_nsec != ms.st_mtim.tv_nsec)
		return fz_fail(z, "mtime after utimensat: mount %lld.%09ld, model %lld.%09ld",
			       (long long)ts.st_mtim.tv_sec, ts.st_mtim.tv_nsec,
			       (long long)ms.st_mtim.tv_sec, ms.st_mtim.tv_nsec);
	return 0;
}

static const char *xname(struct fz *z)
{
	static const char *const n[] = {"user.a", "user.b", "user.c", "user.fuzz-longer-name"};
	return n[fz_below(z, 4)];
}

static int op_xattr(struct fz *z, int kind)
{
	char p[FZ_PATH], ft[2 * FZ_PATH], fm[2 * FZ_PATH];
	const char *n = xname(z);
	struct fz_res t, m = {0, 0};

	fz_pick(z, "fdl", p);
	full(z, 0, p, ft);
	full(z, 1, p, fm);
	if (kind == K_SETXATTR) {
		/* Four names of up to 600 bytes stay under raftfs's 3072 bytes of
		 * user xattrs per object (ENOSPC: fs/README-sm.md) and ext4's. */
		size_t len = fz_below(z, 8) ? fz_below(z, 200) : fz_below(z, 600);
		int fl = (int)fz_below(z, 3); /* 0, XATTR_CREATE, XATTR_REPLACE */
		fz_fill(z, z->buf, len);
		fz_describe(z, "setxattr %s %s len %zu flags %d", p, n, len, fl);
		t = fz_res_of(lsetxattr(ft, n, z->buf, len, fl));
		if (with_model(z))
			m = fz_res_of(lsetxattr(fm, n, z->buf, len, fl));
		return fz_check(z, "setxattr", t, m);
	}
	if (kind == K_RMXATTR) {
		fz_describe(z, "removexattr %s %s", p, n);
		t = fz_res_of(lremovexattr(ft, n));
		if (with_model(z))
			m = fz_res_of(lremovexattr(fm, n));
		return fz_check(z, "removexattr", t, m);
	}
	/* get or list: size 0 asks for the length, a small buffer gives ERANGE. */
	size_t cap = fz_below(z, 4) == 0 ? 0 : fz_below(z, 4) == 0 ? 3 : 65536;
	if (kind == K_GETXATTR) {
		fz_describe(z, "getxattr %s %s cap %zu", p, n, cap);
		t = fz_res_of(lgetxattr(ft, n, cap ? z->buf : NULL, cap));
		if (with_model(z))
			m = fz_res_of(lgetxattr(fm, n, cap ? z->buf2 : NULL, cap));
	} else {
		fz_describe(z, "listxattr %s cap %zu", p, cap);
		t = fz_res_of(llistxattr(ft, cap ? (char *)z->buf : NULL, cap));
		if (with_model(z))
			m = fz_res_of(llistxattr(fm, cap ? (char *)z->buf2 : NULL, cap));
	}
	int rc = fz_check(z, fz_op_names[kind], t, m);
	if (rc || t.ret <= 0 || !cap || !with_model(z))
		return rc;
	if (kind == K_LISTXATTR) {
		/* Same set of names; the order is the filesystem's. */
		char *a = (char *)z->buf, *b = (char *)z->buf2;
		for (char *q = a; q < a + t.ret; q += strlen(q) + 1) {
			bool found = false;
			for (char *r = b; r < b + m.ret && !found; r += strlen(r) + 1)
				found = !strcmp(q, r);
			if (!found)
				return fz_fail(z, "listxattr: the mount lists %s, the model not", q);
		}
		return 0;
	}
	if (memcmp(z->buf, z->buf2, (size_t)t.ret))
		return fz_fail(z, "getxattr: values differ");
	return 0;
}

static int op_readlink(struct fz *z)
{
	char p[FZ_PATH], tb[FZ_PATH], mb[FZ_PATH];

	fz_pick(z, "lf", p);
	fz_describe(z, "readlink %s", p);
	struct fz_res t = fz_res_of(readlinkat(troot(z), p, tb, sizeof(tb)));
	struct fz_res m = {0, 0};
	if (with_model(z))
		m = fz_res_of(readlinkat(z->mroot, p, mb, sizeof(mb)));
	int rc = fz_check(z, "readlink", t, m);
	if (rc || t.ret < 0 || !with_model(z))
		return rc;
	return memcmp(tb, mb, (size_t)t.ret) ? fz_fail(z, "readlink: targets differ") : 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Reads a directory's names and types, sorted: "name/T" strings in out. */
static long list_dir(int root, const char *p, char (*out)[FZ_PATH + 4], int max)
{
	int fd = openat(root, p, O_RDONLY | O_DIRECTORY);
	DIR *d;
	struct dirent *e;
	int n = 0;

	if (fd < 0)
		return -1;
	if (!(d = fdopendir(fd))) {
		close(fd);
		return -1;
	}
	while ((e = readdir(d)) && n < max)
		if (e->d_name[0] != '.')
			snprintf(out[n++], FZ_PATH + 4, "%s/%d", e->d_name, e->d_type);
	closedir(d);
	qsort(out, (size_t)n, sizeof(out[0]), cmp_names);
	return n;
}

static int op_readdir(struct fz *z)
{
	static char tl[64][FZ_PATH + 4], ml[64][FZ_PATH + 4];
	char p[FZ_PATH];

	fz_pick(z, "dl", p);
	if (fz_below(z, 4) == 0)
		snprintf(p, sizeof(p), ".");
	fz_describe(z, "readdir %s", p);
	struct fz_res t = fz_res_of(list_dir(troot(z), p, tl, 64));
	struct fz_res m = {0, 0};
	if (with_model(z))
		m = fz_res_of(list_dir(z->mroot, p, ml, 64));
	int rc = fz_check(z, "readdir", t, m);
	if (rc || t.ret < 0 || !with_model(z))
		return rc;
	for (long i = 0; i < t.ret; i++)
		if (strcmp(tl[i], ml[i]))
			return fz_fail(z, "readdir: mount has %s where the model has %s", tl[i],
				       ml[i]);
	return 0;
}

int fz_path_op(struct fz *z, int kind)
{
	struct args a = {0};
	static const uid_t ids[] = {0, 1000, 65534, (uid_t)-1};

	switch (kind) {
	case K_OPEN:
		return op_open(z);
	case K_STAT:
		return op_stat(z);
	case K_TRUNC:
		return op_truncate(z);
	case K_MKDIR:
		fz_pick(z, "d", a.a);
		if (fz_below(z, 3))
			fz_newpath(z, a.a);
		a.mode = rand_mode(z) | 0700;
		fz_describe(z, "mkdir %s %o", a.a, a.mode);
		return both(z, "mkdir", do_mkdir, &a);
	case K_RMDIR:
		fz_pick(z, "d", a.a);
		a.flags = AT_REMOVEDIR;
		fz_describe(z, "rmdir %s", a.a);
		return both(z, "rmdir", do_unlink, &a);
	case K_UNLINK:
		fz_pick(z, "flpd", a.a);
		fz_describe(z, "unlink %s", a.a);
		return both(z, "unlink", do_unlink, &a);
	case K_RENAME:
		return op_rename(z);
	case K_LINK:
		fz_pick(z, "flpd", a.a);
		fz_newpath(z, a.b);
		fz_describe(z, "link %s %s", a.a, a.b);
		return both(z, "link", do_link, &a);
	case K_SYMLINK:
		fz_newpath(z, a.a);
		/* Targets never climb out of the work tree: the model's root has another parent. */
		if (fz_below(z, 4) == 0)
			snprintf(a.b, FZ_PATH, "/nonexistent/%c", 'a' + (int)fz_below(z, 3));
		else
			fz_newpath(z, a.b);
		fz_describe(z, "symlink %s -> %s", a.a, a.b);
		return both(z, "symlink", do_symlink, &a);
	case K_READLINK:
		return op_readlink(z);
	case K_CHMOD:
		fz_pick(z, "fdl", a.a);
		a.mode = rand_mode(z);
		fz_describe(z, "chmod %s %o", a.a, a.mode);
		return both(z, "chmod", do_chmod, &a);
	case K_CHOWN:
		fz_pick(z, "fdlp", a.a);
		a.uid = ids[fz_below(z, 4)];
		a.gid = ids[fz_below(z, 4)];
		a.flags = fz_below(z, 3) ? 0 : AT_SYMLINK_NOFOLLOW;
		fz_describe(z, "chown %s %d:%d%s", a.a, (int)a.uid, (int)a.gid,
			    a.flags ? " NOFOLLOW" : "");
		return both(z, "chown", do_chown, &a);
	case K_UTIMENS:
		return op_utimens(z);
	case K_SETXATTR:
	case K_GETXATTR:
	case K_LISTXATTR:
	case K_RMXATTR:
		return op_xattr(z, kind);
	case K_READDIR:
		return op_readdir(z);
	case K_MKFIFO:
		fz_newpath(z, a.a);
		a.mode = rand_mode(z);
		fz_describe(z, "mkfifo %s %o", a.a, a.mode);
		return both(z, "mkfifo", do_mkfifo, &a);
	}
	return fz_fail(z, "unknown operation kind %d", kind);
}
