// Compares two trees entry by entry (names, attributes, xattrs, content).
#include "tree_compare.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define XATTR_ID "trusted.raftfs.id"
#define XATTR_CTIME "trusted.raftfs.ctime"
#define XATTR_OURS "trusted.raftfs."
#define XATTR_RELEASED "trusted.raftfs.released"

struct cmp {
	enum tree_cmp_kind kind;
	tree_diff_fn fn;
	void *arg;
	int diffs;
	int err;
};

static void diff(struct cmp *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void diff(struct cmp *c, const char *fmt, ...)
{
	char msg[PATH_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->diffs++;
	c->fn(c->arg, msg);
}

static void read_error(struct cmp *c, const char *what, const char *path, int err)
{
	diff(c, "%s %s: %s", what, path, strerror(err));
	if (!c->err)
		c->err = -err;
}

// The attributes compared, as the user sees them.
struct attrs {
	struct stat st;
	uint64_t id;
	int64_t ctime_ns;
};

static int load_attrs(struct cmp *c, const char *path, struct attrs *a)
{
	if (lstat(path, &a->st)) {
		read_error(c, "stat", path, errno);
		return -1;
	}
	a->id = a->st.st_ino;
	a->ctime_ns = (int64_t)a->st.st_ctim.tv_sec * 1000000000 + a->st.st_ctim.tv_nsec;
	if (c->kind == TREE_CMP_DATA) {
		char buf[17] = {0};
		a->id = 0;
		if (lgetxattr(path, XATTR_ID, buf, 16) == 16)
			a->id = strtoull(buf, NULL, 16);
		if (lgetxattr(path, XATTR_CTIME, &a->ctime_ns, sizeof(a->ctime_ns)) !=
		    sizeof(a->ctime_ns))
			a->ctime_ns = -1;
		if (!S_ISDIR(a->st.st_mode))
			a->st.st_nlink--;
	}
	return 0;
}

// Sorted user-visible xattr names of path, as one buffer of NUL-separated
// names; *n is its length. Caller frees.
static char *xattr_names(struct cmp *c, const char *path, ssize_t *n)
{
	char raw[65536];
	*n = llistxattr(path, raw, sizeof(raw));
	if (*n < 0) {
		read_error(c, "list xattrs of", path, errno);
		return NULL;
	}
	const char *v[4096];
	size_t k = 0;
	for (char *p = raw; p < raw + *n && k < 4096; p += strlen(p) + 1)
		if (c->kind != TREE_CMP_DATA || strncmp(p, XATTR_OURS, strlen(XATTR_OURS)))
			v[k++] = p;
	for (size_t i = 1; i < k; i++) // few names: insertion sort
		for (size_t j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
			const char *t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	char *out = malloc(sizeof(raw));
	if (!out)
		return NULL;
	size_t len = 0;
	for (size_t i = 0; i < k; i++) {
		size_t l = strlen(v[i]) + 1;
		memcpy(out + len, v[i], l);
		len += l;
	}
	*n = (ssize_t)len;
	return out;
}

static void compare_xattrs(struct cmp *c, const char *rel, const char *pa, const char *pb)
{
	ssize_t na, nb;
	char *a = xattr_names(c, pa, &na);
	char *b = xattr_names(c, pb, &nb);
	if (a && b) {
		if (na != nb || memcmp(a, b, (size_t)na)) {
			diff(c, "%s: xattr names differ", rel);
		} else {
			static char va[65536], vb[65536];
			for (char *p = a; p < a + na; p += strlen(p) + 1) {
				ssize_t la = lgetxattr(pa, p, va, sizeof(va));
				ssize_t lb = lgetxattr(pb, p, vb, sizeof(vb));
				if (la != lb || (la > 0 && memcmp(va, vb, (size_t)la)))
					diff(c, "%s: xattr %s differs", rel, p);
			}
		}
	}
	free(a);
	free(b);
}

static void compare_content(struct cmp *c, const char *rel, const char *pa, const char *pb)
{
	int fa = open(pa, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int fb = open(pb, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fa < 0 || fb < 0) {
		read_error(c, "open", fa < 0 ? pa : pb, errno);
	} else {
		static char ba[65536], bb[65536];
		for (off_t off = 0;; off += (off_t)sizeof(ba)) {
			ssize_t la = pread(fa, ba, sizeof(ba), off);
			ssize_t lb = pread(fb, bb, sizeof(bb), off);
			if (la != lb || (la > 0 && memcmp(ba, bb, (size_t)la))) {
				diff(c, "%s: content differs at or after byte %lld", rel,
				     (long long)off);
				break;
			}
			if (la <= 0)
				break;
		}
	}
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
}

// The nodes that released an orphan (replicated state kept in an xattr the
// user does not see).
static void compare_released(struct cmp *c, const char *rel, const char *pa, const char *pb)
{
	char va[1024], vb[1024];
	ssize_t la = lgetxattr(pa, XATTR_RELEASED, va, sizeof(va));
	ssize_t lb = lgetxattr(pb, XATTR_RELEASED, vb, sizeof(vb));
	if (la < 0 && errno != ENODATA)
		read_error(c, "read releases of", pa, errno);
	else if (lb < 0 && errno != ENODATA)
		read_error(c, "read releases of", pb, errno);
	else if (la != lb || (la > 0 && memcmp(va, vb, (size_t)la)))
		diff(c, "%s: released by different nodes", rel);
}

// Compares one object (not its children). Returns 1 if both are directories.
static int compare_obj(struct cmp *c, const char *rel, const char *pa, const char *pb)
{
	struct attrs a, b;
	if (load_attrs(c, pa, &a) || load_attrs(c, pb, &b))
		return 0;
	const struct stat *x = &a.st, *y = &b.st;
	if ((x->st_mode & S_IFMT) != (y->st_mode & S_IFMT)) {
		diff(c, "%s: type %o vs %o", rel, x->st_mode & S_IFMT, y->st_mode & S_IFMT);
		return 0;
	}
	if (a.id != b.id)
		diff(c, "%s: id %llx vs %llx", rel, (unsigned long long)a.id,
		     (unsigned long long)b.id);
	if (x->st_mode != y->st_mode)
		diff(c, "%s: mode %o vs %o", rel, x->st_mode, y->st_mode);
	if (x->st_uid != y->st_uid || x->st_gid != y->st_gid)
		diff(c, "%s: owner %u:%u vs %u:%u", rel, x->st_uid, x->st_gid, y->st_uid,
		     y->st_gid);
	if (!S_ISDIR(x->st_mode) && x->st_size != y->st_size)
		diff(c, "%s: size %lld vs %lld", rel, (long long)x->st_size, (long long)y->st_size);
	if (x->st_nlink != y->st_nlink)
		diff(c, "%s: nlink %lu vs %lu", rel, (unsigned long)x->st_nlink,
		     (unsigned long)y->st_nlink);
	if (x->st_mtim.tv_sec != y->st_mtim.tv_sec || x->st_mtim.tv_nsec != y->st_mtim.tv_nsec)
		diff(c, "%s: mtime %lld.%09ld vs %lld.%09ld", rel, (long long)x->st_mtim.tv_sec,
		     x->st_mtim.tv_nsec, (long long)y->st_mtim.tv_sec, y->st_mtim.tv_nsec);
	if (a.ctime_ns != b.ctime_ns)
		diff(c, "%s: ctime %lld vs %lld", rel, (long long)a.ctime_ns,
		     (long long)b.ctime_ns);
	if ((S_ISCHR(x->st_mode) || S_ISBLK(x->st_mode)) && x->st_rdev != y->st_rdev)
		diff(c, "%s: device number differs", rel);
	if (S_ISLNK(x->st_mode)) {
		char ta[PATH_MAX], tb[PATH_MAX];
		ssize_t la = readlink(pa, ta, sizeof(ta));
		ssize_t lb = readlink(pb, tb, sizeof(tb));
		if (la != lb || (la > 0 && memcmp(ta, tb, (size_t)la)))
			diff(c, "%s: symlink target differs", rel);
	}
	compare_xattrs(c, rel, pa, pb);
	if (c->kind == TREE_CMP_DATA)
		compare_released(c, rel, pa, pb);
	if (S_ISREG(x->st_mode) && x->st_size == y->st_size)
		compare_content(c, rel, pa, pb);
	return S_ISDIR(x->st_mode);
}

static int cmp_names(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

// Sorted entry names of directory path (without . and ..). Caller frees.
// A missing directory is empty if missing_ok (index buckets are made on
// first use).
static char **list_dir(struct cmp *c, const char *path, bool missing_ok, size_t *n)
{
	*n = 0;
	DIR *d = opendir(path);
	if (!d && errno == ENOENT && missing_ok)
		return calloc(1, sizeof(char *));
	if (!d) {
		read_error(c, "list", path, errno);
		return NULL;
	}
	size_t cap = 16;
	char **v = malloc(cap * sizeof(*v));
	struct dirent *e;
	while (v && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (*n == cap) {
			char **more = realloc(v, 2 * cap * sizeof(*v));
			if (!more)
				break;
			v = more;
			cap *= 2;
		}
		v[(*n)++] = strdup(e->d_name);
	}
	closedir(d);
	if (v)
		qsort(v, *n, sizeof(*v), cmp_names);
	return v;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void walk(struct cmp *c, const char *rel, const char *pa, const char *pb)
{
	if (!compare_obj(c, rel[0] ? rel : ".", pa, pb))
		return;
	size_t na, nb;
	char **la = list_dir(c, pa, false, &na);
	char **lb = list_dir(c, pb, false, &nb);
	size_t i = 0, j = 0;
	while (la && lb && (i < na || j < nb)) {
		int o = i == na ? 1 : j == nb ? -1 : strcmp(la[i], lb[j]);
		if (o < 0) {
			diff(c, "%s%s%s: only in the first tree", rel, rel[0] ? "/" : "", la[i++]);
		} else if (o > 0) {
			diff(c, "%s%s%s: only in the second tree", rel, rel[0] ? "/" : "", lb[j++]);
		} else {
			char r[PATH_MAX], a[PATH_MAX], b[PATH_MAX];
			snprintf(r, sizeof(r), "%s%s%s", rel, rel[0] ? "/" : "", la[i]);
			snprintf(a, sizeof(a), "%s/%s", pa, la[i]);
			snprintf(b, sizeof(b), "%s/%s", pb, lb[j]);
			walk(c, r, a, b);
			i++;
			j++;
		}
	}
	free_list(la, na);
	free_list(lb, nb);
}

// One index entry: its id xattr must be its name. Returns its link count
// (1: an orphan, only the index link is left), or 0 if it cannot be read.
static nlink_t index_entry(struct cmp *c, const char *path, const char *name)
{
	struct stat st;
	char buf[17] = {0};
	if (lstat(path, &st)) {
		read_error(c, "stat", path, errno);
		return 0;
	}
	if (lgetxattr(path, XATTR_ID, buf, 16) != 16 || strcmp(buf, name))
		diff(c, "index %s: carries id %s", name, buf[0] ? buf : "(none)");
	return st.st_nlink;
}

// The hard-link index DATA/ids: the same ids on both sides, each entry
// naming its own id; orphans (index entries with no name left) are compared
// whole here, the named through the tree.
static void compare_index(struct cmp *c, const char *da, const char *db)
{
	char pa[PATH_MAX], pb[PATH_MAX], r[64];
	for (unsigned k = 0; k < 256; k++) {
		snprintf(pa, sizeof(pa), "%s/ids/%02x", da, k);
		snprintf(pb, sizeof(pb), "%s/ids/%02x", db, k);
		size_t na, nb;
		char **la = list_dir(c, pa, true, &na);
		char **lb = list_dir(c, pb, true, &nb);
		size_t i = 0, j = 0;
		while (la && lb && (i < na || j < nb)) {
			int o = i == na ? 1 : j == nb ? -1 : strcmp(la[i], lb[j]);
			char p[2 * PATH_MAX], q[2 * PATH_MAX];
			if (o < 0) {
				diff(c, "index %s: only in the first tree", la[i++]);
				continue;
			}
			if (o > 0) {
				diff(c, "index %s: only in the second tree", lb[j++]);
				continue;
			}
			snprintf(p, sizeof(p), "%s/%s", pa, la[i]);
			snprintf(q, sizeof(q), "%s/%s", pb, lb[j]);
			nlink_t x = index_entry(c, p, la[i]), y = index_entry(c, q, lb[j]);
			if (x == 1 && y == 1) {
				snprintf(r, sizeof(r), "orphan %s", la[i]);
				compare_obj(c, r, p, q);
			} else if ((x == 1) != (y == 1) && x && y) {
				diff(c, "index %s: an orphan in the %s tree only", la[i],
				     x == 1 ? "first" : "second");
			}
			i++;
			j++;
		}
		free_list(la, na);
		free_list(lb, nb);
	}
}

int tree_compare(const char *a, const char *b, enum tree_cmp_kind kind, tree_diff_fn fn, void *arg)
{
	struct cmp c = {kind, fn, arg, 0, 0};
	if (kind == TREE_CMP_DATA) {
		char ta[PATH_MAX], tb[PATH_MAX];
		snprintf(ta, sizeof(ta), "%s/tree", a);
		snprintf(tb, sizeof(tb), "%s/tree", b);
		walk(&c, "", ta, tb);
		compare_index(&c, a, b);
	} else {
		walk(&c, "", a, b);
	}
	return c.err ? c.err : c.diffs;
}
