/* fz_tree.c — whole-tree comparison of a mount with the model, and the manifest of fsynced files. */
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

/* Hard-link groups: every name of one inode maps to the first name seen of it. */
struct links {
	ino_t ino[FZ_MAX_ENTRIES];
	char first[FZ_MAX_ENTRIES][FZ_PATH];
	int n;
};

static const char *first_name(struct links *l, ino_t ino, const char *path)
{
	for (int i = 0; i < l->n; i++)
		if (l->ino[i] == ino)
			return l->first[i];
	if (l->n == FZ_MAX_ENTRIES)
		return path;
	l->ino[l->n] = ino;
	/* Cut to FZ_PATH (names here are short); memcpy, not snprintf, whose
	 * truncation warning a Release build makes an error. */
	size_t k = strnlen(path, FZ_PATH - 1);
	memcpy(l->first[l->n], path, k);
	l->first[l->n][k] = '\0';
	return l->first[l->n++];
}

static int cmp_content(struct fz *z, int tdir, int mdir, const char *name, const char *path)
{
	int tf = openat(tdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int mf = openat(mdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int rc = 0;
	off_t off = 0;

	if (tf < 0 || mf < 0) {
		rc = fz_fail(z, "%s: open for comparing: %s", path, strerror(errno));
		goto out;
	}
	for (;;) {
		ssize_t a = pread(tf, z->buf, 1 << 20, off), b = pread(mf, z->buf2, 1 << 20, off);
		if (a != b || a < 0 || memcmp(z->buf, z->buf2, (size_t)(a > 0 ? a : 0))) {
			rc = fz_fail(z, "%s: content differs at or after byte %lld", path,
				     (long long)off);
			goto out;
		}
		if (a == 0)
			break;
		off += a;
	}
out:
	if (tf >= 0)
		close(tf);
	if (mf >= 0)
		close(mf);
	return rc;
}

/* User xattrs by /proc/self/fd of an O_PATH descriptor (symlinks included). */
static int cmp_xattrs(struct fz *z, int tdir, int mdir, const char *name, const char *path)
{
	int tf = openat(tdir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	int mf = openat(mdir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	char tp[64], mp[64], tl[4096], ml[4096], tv[4096], mv[4096];
	int rc = 0;

	if (tf < 0 || mf < 0) {
		rc = fz_fail(z, "%s: open for xattrs: %s", path, strerror(errno));
		goto out;
	}
	snprintf(tp, sizeof(tp), "/proc/self/fd/%d", tf);
	snprintf(mp, sizeof(mp), "/proc/self/fd/%d", mf);
	ssize_t a = llistxattr(tp, tl, sizeof(tl)), b = llistxattr(mp, ml, sizeof(ml));
	if (a < 0 || b < 0) {
		/* symlinks via /proc: the kernel lists the link's own xattrs (may be none) */
		if (a < 0 && b < 0)
			goto out;
		rc = fz_fail(z, "%s: listxattr: mount %zd, model %zd", path, a, b);
		goto out;
	}
	if (a != b) {
		rc = fz_fail(z, "%s: xattr lists differ (%zd and %zd bytes)", path, a, b);
		goto out;
	}
	for (char *q = tl; q < tl + a; q += strlen(q) + 1) {
		ssize_t x = lgetxattr(tp, q, tv, sizeof(tv)), y = lgetxattr(mp, q, mv, sizeof(mv));
		if (x != y || x < 0 || memcmp(tv, mv, (size_t)x)) {
			rc = fz_fail(z, "%s: xattr %s differs (%zd and %zd bytes)", path, q, x, y);
			goto out;
		}
	}
out:
	if (tf >= 0)
		close(tf);
	if (mf >= 0)
		close(mf);
	return rc;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of a directory (without dot names); *out is malloc'ed. */
static int names_of(int dfd, char ***out, int *n)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	char **v = NULL;
	int k = 0, cap = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (k == cap) {
			cap = cap ? 2 * cap : 16;
			char **nv = realloc(v, (size_t)cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[k++] = strdup(e->d_name);
	}
	closedir(d);
	if (k)
		qsort(v, (size_t)k, sizeof(*v), cmp_names);
	*out = v;
	*n = k;
	return 0;
}

static void free_names(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int cmp_dir(struct fz *z, int tdir, int mdir, const char *prefix, struct links *tl,
		   struct links *ml, int depth);

static int cmp_entry(struct fz *z, int tdir, int mdir, const char *name, const char *path,
		     struct links *tl, struct links *ml, int depth)
{
	struct stat ts, ms;

	if (fstatat(tdir, name, &ts, AT_SYMLINK_NOFOLLOW) < 0 ||
	    fstatat(mdir, name, &ms, AT_SYMLINK_NOFOLLOW) < 0)
		return fz_fail(z, "%s: lstat: %s", path, strerror(errno));
	if (ts.st_mode != ms.st_mode || ts.st_uid != ms.st_uid || ts.st_gid != ms.st_gid ||
	    ts.st_nlink != ms.st_nlink || (!S_ISDIR(ms.st_mode) && ts.st_size != ms.st_size))
		return fz_fail(z,
			       "%s: mount mode %o uid %u gid %u nlink %lu size %lld, model mode %o "
			       "uid %u gid %u nlink %lu size %lld",
			       path, ts.st_mode, ts.st_uid, ts.st_gid, (unsigned long)ts.st_nlink,
			       (long long)ts.st_size, ms.st_mode, ms.st_uid, ms.st_gid,
			       (unsigned long)ms.st_nlink, (long long)ms.st_size);
	if (!S_ISDIR(ms.st_mode) && ms.st_nlink > 1 &&
	    strcmp(first_name(tl, ts.st_ino, path), first_name(ml, ms.st_ino, path)))
		return fz_fail(z, "%s: hard links differ (mount: a link of %s, model: of %s)", path,
			       first_name(tl, ts.st_ino, path), first_name(ml, ms.st_ino, path));
	if (S_ISREG(ms.st_mode) && cmp_content(z, tdir, mdir, name, path))
		return -1;
	if (S_ISLNK(ms.st_mode)) {
		char a[FZ_PATH], b[FZ_PATH];
		ssize_t x = readlinkat(tdir, name, a, sizeof(a));
		ssize_t y = readlinkat(mdir, name, b, sizeof(b));
		if (x != y || x < 0 || memcmp(a, b, (size_t)x))
			return fz_fail(z, "%s: symlink targets differ", path);
	}
	if (!S_ISLNK(ms.st_mode) && cmp_xattrs(z, tdir, mdir, name, path))
		return -1;
	if (!S_ISDIR(ms.st_mode) || depth > 16)
		return 0;
	int td = openat(tdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int md = openat(mdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int rc = td < 0 || md < 0 ? fz_fail(z, "%s: open directory: %s", path, strerror(errno))
				  : cmp_dir(z, td, md, path, tl, ml, depth + 1);
	if (td >= 0)
		close(td);
	if (md >= 0)
		close(md);
	return rc;
}

static int cmp_dir(struct fz *z, int tdir, int mdir, const char *prefix, struct links *tl,
		   struct links *ml, int depth)
{
	char **tn = NULL, **mn = NULL;
	int nt = 0, nm = 0, rc = 0;

	if (names_of(tdir, &tn, &nt) || names_of(mdir, &mn, &nm)) {
		rc = fz_fail(z, "%s: readdir: %s", *prefix ? prefix : ".", strerror(errno));
		goto out;
	}
	for (int i = 0, j = 0; (i < nt || j < nm) && !rc;) {
		int c = i == nt ? 1 : j == nm ? -1 : strcmp(tn[i], mn[j]);
		char path[2 * FZ_PATH];
		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "/" : "",
			 c <= 0 ? tn[i] : mn[j]);
		if (c < 0)
			rc = fz_fail(z, "%s: only on the mount", path);
		else if (c > 0)
			rc = fz_fail(z, "%s: only in the model", path);
		else
			rc = cmp_entry(z, tdir, mdir, tn[i], path, tl, ml, depth);
		i += c <= 0;
		j += c >= 0;
	}
out:
	free_names(tn, nt);
	free_names(mn, nm);
	return rc;
}

int fz_compare_trees(struct fz *z, int m)
{
	static struct links tl, ml;
	int td = openat(z->troot[m], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int md = openat(z->mroot, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	tl.n = ml.n = 0;
	fz_describe(z, "compare the tree of n%d with the model", m + 1);
	rc = td < 0 || md < 0 ? fz_fail(z, "open the roots: %s", strerror(errno))
			      : cmp_dir(z, td, md, "", &tl, &ml, 0);
	if (td >= 0)
		close(td);
	if (md >= 0)
		close(md);
	return rc;
}

static uint64_t fnv64(const unsigned char *b, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

int fz_durable_write(struct fz *z)
{
	char name[FZ_PATH];
	size_t len = fz_size(z);
	uint64_t h = fnv64(NULL, 0, 0xcbf29ce484222325ull);
	FILE *mf;

	snprintf(name, sizeof(name), ".fzdur/s%llu-%ld", (unsigned long long)z->seed, z->op);
	fz_describe(z, "durable file %s of %zu bytes: create, write, fsync, close", name, len);
	int fd = openat(z->troot[z->cur], name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	struct fz_res r = fz_res_of(fd);
	if (fd < 0)
		return fz_check(z, "durable create", r, r);
	fz_fill(z, z->buf, len);
	h = fnv64(z->buf, len, h);
	for (size_t done = 0; done < len;) {
		r = fz_res_of(write(fd, z->buf + done, len - done));
		if (r.ret <= 0)
			break;
		done += (size_t)r.ret;
	}
	if (r.ret > 0)
		r = fz_res_of(fsync(fd));
	struct fz_res c = fz_res_of(close(fd));
	if (r.ret < 0 || c.ret < 0) {
		/* Unacknowledged: no claim on it, whatever the cause. */
		struct fz_res bad = r.ret < 0 ? r : c;
		return fz_check(z, "durable write/fsync/close", bad, bad);
	}
	if (!z->durable)
		return 0;
	if (!(mf = fopen(z->durable, "a")))
		return fz_fail(z, "open the manifest %s: %s", z->durable, strerror(errno));
	fprintf(mf, "%s %zu %016llx\n", name, len, (unsigned long long)h);
	fclose(mf);
	z->ndurable++;
	return 0;
}

int fz_durable_check(const char *manifest, const char *dir)
{
	FILE *f = fopen(manifest, "r");
	char name[FZ_PATH], path[2 * FZ_PATH + 2];
	size_t len;
	unsigned long long want;
	int bad = 0, n = 0;
	static unsigned char b[1 << 16];

	if (!f) {
		fprintf(stderr, "fsop_fuzz: open the manifest %s: %s\n", manifest, strerror(errno));
		return -1;
	}
	while (fscanf(f, "%255s %zu %llx", name, &len, &want) == 3) {
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		uint64_t h = fnv64(NULL, 0, 0xcbf29ce484222325ull);
		size_t got = 0;
		ssize_t r = 0;
		n++;
		while (fd >= 0 && (r = read(fd, b, sizeof(b))) > 0) {
			h = fnv64(b, (size_t)r, h);
			got += (size_t)r;
		}
		if (fd < 0 || r < 0 || got != len || h != want) {
			fprintf(stderr, "FAIL: %s: fsynced %zu bytes (fnv %016llx), found %zu%s\n",
				path, len, want, got, fd < 0 ? " (cannot open)" : "");
			bad++;
		}
		if (fd >= 0)
			close(fd);
	}
	fclose(f);
	printf("fsop_fuzz: %d fsynced files checked in %s, %d wrong\n", n, dir, bad);
	return bad ? -1 : 0;
}
