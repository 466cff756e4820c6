// Compares two trees entry by entry (names, attributes, xattrs, content).
//
// The walk holds a descriptor per directory level and names every object
// relative to its parent's descriptor (openat, fstatat, readlinkat; xattrs
// through /proc/self/fd/N), never by an absolute path: the filesystem
// allows paths longer than PATH_MAX, and such a tree must be compared
// whole. Depth is bounded by the descriptor limit (two per level). Whatever
// cannot be read is a reported difference, never a silent skip.
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

// Room for one xattr value (Linux: XATTR_SIZE_MAX), a symlink target
// (< PATH_MAX) or one block of content.
#define BUF_SIZE 65536

struct cmp {
	enum tree_cmp_kind kind;
	tree_diff_fn fn;
	void *arg;
	int diffs;
	int err;
	// The path of the object being compared, relative to the roots; grows
	// without bound (it is only ever printed).
	char *rel;
	size_t rel_len, rel_cap;
	char *buf[2]; // BUF_SIZE each, one per tree
};

// One side's object, held by an O_PATH descriptor so that every check
// reads the same inode, however long its path and whatever its type (an
// O_PATH open neither follows a symlink nor opens a FIFO or device).
struct obj {
	int fd;
	char proc[32]; // /proc/self/fd/<fd>: the object itself for the *xattr calls
	struct stat st;
	uint64_t id;
	int64_t ctime_ns;
};

static const char *const side_name[2] = {"first", "second"};

static void diff(struct cmp *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void diff(struct cmp *c, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	c->diffs++;
	if (n < 0) {
		// Still a difference: say at least that there was one.
		c->fn(c->arg, "a difference (out of memory formatting it)");
		if (!c->err)
			c->err = -ENOMEM;
		return;
	}
	c->fn(c->arg, msg);
	free(msg);
}

// Something of one tree could not be read: a difference (the trees cannot
// be shown identical) and an error for the caller.
static void read_error(struct cmp *c, const char *rel, const char *what, int side, int err)
{
	diff(c, "%s: cannot %s in the %s tree: %s", rel, what, side_name[side], strerror(err));
	if (!c->err)
		c->err = -err;
}

// Appends "/name" (just "name" at the root) to c->rel; returns the old
// length for rel_pop, or -1 (reported) without memory.
static long rel_push(struct cmp *c, const char *name)
{
	size_t old = c->rel_len, n = strlen(name), need = old + 1 + n + 1;
	if (need > c->rel_cap) {
		size_t cap = c->rel_cap ? c->rel_cap : 256;
		while (cap < need)
			cap *= 2;
		char *more = realloc(c->rel, cap);
		if (!more) {
			diff(c, "%s/%s: not compared: out of memory", c->rel, name);
			if (!c->err)
				c->err = -ENOMEM;
			return -1;
		}
		c->rel = more;
		c->rel_cap = cap;
	}
	if (old)
		c->rel[c->rel_len++] = '/';
	memcpy(c->rel + c->rel_len, name, n + 1);
	c->rel_len += n;
	return (long)old;
}

static void rel_pop(struct cmp *c, long old)
{
	c->rel_len = (size_t)old;
	c->rel[old] = '\0';
}

// The label of the current object in messages.
static const char *rel_name(const struct cmp *c)
{
	return c->rel_len ? c->rel : ".";
}

static void obj_close(struct obj *o)
{
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
}

// Opens entry name of directory dirfd (AT_FDCWD and follow for a root) and
// loads the attributes the user sees. Returns 0, or -1 after reporting.
static int obj_open(struct cmp *c, const char *rel, int side, int dirfd, const char *name,
		    bool follow, struct obj *o)
{
	o->fd = openat(dirfd, name, O_PATH | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
	if (o->fd < 0) {
		read_error(c, rel, "open it", side, errno);
		return -1;
	}
	snprintf(o->proc, sizeof(o->proc), "/proc/self/fd/%d", o->fd);
	if (fstatat(o->fd, "", &o->st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) {
		read_error(c, rel, "stat it", side, errno);
		obj_close(o);
		return -1;
	}
	o->id = o->st.st_ino;
	o->ctime_ns = (int64_t)o->st.st_ctim.tv_sec * 1000000000 + o->st.st_ctim.tv_nsec;
	if (c->kind == TREE_CMP_DATA) {
		// The replicated id and ctime live in xattrs; the user's link
		// count leaves out the index link DATA/ids/xx/<id>.
		char buf[17] = {0};
		o->id = 0;
		if (getxattr(o->proc, XATTR_ID, buf, 16) == 16)
			o->id = strtoull(buf, NULL, 16);
		if (getxattr(o->proc, XATTR_CTIME, &o->ctime_ns, sizeof(o->ctime_ns)) !=
		    sizeof(o->ctime_ns))
			o->ctime_ns = -1;
		if (!S_ISDIR(o->st.st_mode))
			o->st.st_nlink--;
	}
	return 0;
}

static int cmp_strings(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

// Sorted user-visible xattr names of o, as one buffer of NUL-separated
// names; *n is its length. Caller frees. NULL (reported) on error.
static char *xattr_names(struct cmp *c, const char *rel, int side, const struct obj *o, ssize_t *n)
{
	char *raw = NULL;
	// The list may grow between asking its size and reading it: retry.
	for (int tries = 0;; tries++) {
		ssize_t size = listxattr(o->proc, NULL, 0);
		if (size < 0) {
			read_error(c, rel, "list xattrs", side, errno);
			return NULL;
		}
		free(raw);
		raw = malloc((size_t)size + 1);
		if (!raw) {
			read_error(c, rel, "list xattrs", side, ENOMEM);
			return NULL;
		}
		*n = listxattr(o->proc, raw, (size_t)size + 1);
		if (*n >= 0)
			break;
		if (errno != ERANGE || tries == 3) {
			read_error(c, rel, "list xattrs", side, errno);
			free(raw);
			return NULL;
		}
	}
	size_t k = 0, count = 0;
	for (char *p = raw; p < raw + *n; p += strlen(p) + 1)
		count++;
	char **v = malloc((count ? count : 1) * sizeof(*v));
	char *out = malloc((size_t)*n + 1);
	if (!v || !out) {
		read_error(c, rel, "list xattrs", side, ENOMEM);
		free(v);
		free(out);
		free(raw);
		return NULL;
	}
	for (char *p = raw; p < raw + *n; p += strlen(p) + 1)
		if (c->kind != TREE_CMP_DATA || strncmp(p, XATTR_OURS, strlen(XATTR_OURS)))
			v[k++] = p;
	qsort(v, k, sizeof(*v), cmp_strings);
	size_t len = 0;
	for (size_t i = 0; i < k; i++) {
		size_t l = strlen(v[i]) + 1;
		memcpy(out + len, v[i], l);
		len += l;
	}
	*n = (ssize_t)len;
	free(v);
	free(raw);
	return out;
}

static void compare_xattrs(struct cmp *c, const char *rel, const struct obj *a, const struct obj *b)
{
	ssize_t na, nb;
	char *x = xattr_names(c, rel, 0, a, &na);
	char *y = xattr_names(c, rel, 1, b, &nb);
	if (x && y) {
		if (na != nb || memcmp(x, y, (size_t)na)) {
			diff(c, "%s: xattr names differ", rel);
		} else {
			for (char *p = x; p < x + na; p += strlen(p) + 1) {
				ssize_t la = getxattr(a->proc, p, c->buf[0], BUF_SIZE);
				int ea = errno;
				ssize_t lb = getxattr(b->proc, p, c->buf[1], BUF_SIZE);
				if (la < 0 || lb < 0)
					read_error(c, rel, "read an xattr", la < 0 ? 0 : 1,
						   la < 0 ? ea : errno);
				else if (la != lb || memcmp(c->buf[0], c->buf[1], (size_t)la))
					diff(c, "%s: xattr %s differs", rel, p);
			}
		}
	}
	free(x);
	free(y);
}

static void compare_content(struct cmp *c, const char *rel, const struct obj *a,
			    const struct obj *b)
{
	// Reopening through /proc reads the very inode that was stat'ed.
	int fa = open(a->proc, O_RDONLY | O_CLOEXEC);
	int ea = errno;
	int fb = open(b->proc, O_RDONLY | O_CLOEXEC);
	if (fa < 0 || fb < 0) {
		read_error(c, rel, "open it for reading", fa < 0 ? 0 : 1, fa < 0 ? ea : errno);
	} else {
		for (off_t off = 0;; off += BUF_SIZE) {
			ssize_t la = pread(fa, c->buf[0], BUF_SIZE, off);
			ssize_t lb = pread(fb, c->buf[1], BUF_SIZE, off);
			if (la < 0 || lb < 0) {
				read_error(c, rel, "read it", la < 0 ? 0 : 1, errno);
				break;
			}
			if (la != lb || memcmp(c->buf[0], c->buf[1], (size_t)la)) {
				diff(c, "%s: content differs at or after byte %lld", rel,
				     (long long)off);
				break;
			}
			if (la == 0)
				break;
		}
	}
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
}

static void compare_symlinks(struct cmp *c, const char *rel, const struct obj *a,
			     const struct obj *b)
{
	// A target is shorter than PATH_MAX; a full buffer would be a
	// truncated one.
	ssize_t la = readlinkat(a->fd, "", c->buf[0], PATH_MAX);
	int ea = errno;
	ssize_t lb = readlinkat(b->fd, "", c->buf[1], PATH_MAX);
	if (la < 0 || lb < 0)
		read_error(c, rel, "read the symlink", la < 0 ? 0 : 1, la < 0 ? ea : errno);
	else if (la == PATH_MAX || lb == PATH_MAX)
		read_error(c, rel, "read the whole symlink", la == PATH_MAX ? 0 : 1, ENAMETOOLONG);
	else if (la != lb || memcmp(c->buf[0], c->buf[1], (size_t)la))
		diff(c, "%s: symlink target differs", rel);
}

// The nodes that released an orphan (replicated state kept in an xattr the
// user does not see).
static void compare_released(struct cmp *c, const char *rel, const struct obj *a,
			     const struct obj *b)
{
	ssize_t la = getxattr(a->proc, XATTR_RELEASED, c->buf[0], BUF_SIZE);
	if (la < 0 && errno != ENODATA) {
		read_error(c, rel, "read the releases", 0, errno);
		return;
	}
	ssize_t lb = getxattr(b->proc, XATTR_RELEASED, c->buf[1], BUF_SIZE);
	if (lb < 0 && errno != ENODATA)
		read_error(c, rel, "read the releases", 1, errno);
	else if (la != lb || (la > 0 && memcmp(c->buf[0], c->buf[1], (size_t)la)))
		diff(c, "%s: released by different nodes", rel);
}

// Compares one object (not its children). Returns 1 if both are directories.
static int compare_obj(struct cmp *c, const char *rel, const struct obj *a, const struct obj *b)
{
	const struct stat *x = &a->st, *y = &b->st;
	if ((x->st_mode & S_IFMT) != (y->st_mode & S_IFMT)) {
		diff(c, "%s: type %o vs %o", rel, x->st_mode & S_IFMT, y->st_mode & S_IFMT);
		return 0;
	}
	if (a->id != b->id)
		diff(c, "%s: id %llx vs %llx", rel, (unsigned long long)a->id,
		     (unsigned long long)b->id);
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
	if (a->ctime_ns != b->ctime_ns)
		diff(c, "%s: ctime %lld vs %lld", rel, (long long)a->ctime_ns,
		     (long long)b->ctime_ns);
	if ((S_ISCHR(x->st_mode) || S_ISBLK(x->st_mode)) && x->st_rdev != y->st_rdev)
		diff(c, "%s: device number differs", rel);
	if (S_ISLNK(x->st_mode))
		compare_symlinks(c, rel, a, b);
	compare_xattrs(c, rel, a, b);
	if (c->kind == TREE_CMP_DATA)
		compare_released(c, rel, a, b);
	if (S_ISREG(x->st_mode) && x->st_size == y->st_size)
		compare_content(c, rel, a, b);
	return S_ISDIR(x->st_mode);
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

// Sorted entry names (without . and ..) of directory entry name of dirfd
// ("." for dirfd itself). Caller frees. A missing directory is empty if
// missing_ok (index buckets are made on first use). NULL (reported) on
// error: a listing cut short would hide entries.
static char **list_dir(struct cmp *c, const char *rel, int side, int dirfd, const char *name,
		       bool missing_ok, size_t *n)
{
	*n = 0;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT && missing_ok)
		return calloc(1, sizeof(char *));
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		read_error(c, rel, "list it", side, errno);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	size_t cap = 16;
	char **v = malloc(cap * sizeof(*v));
	int err = v ? 0 : ENOMEM;
	while (!err) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			err = errno;
			break;
		}
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (*n == cap) {
			char **more = realloc(v, 2 * cap * sizeof(*v));
			if (!more) {
				err = ENOMEM;
				break;
			}
			v = more;
			cap *= 2;
		}
		if (!(v[*n] = strdup(e->d_name)))
			err = ENOMEM;
		else
			(*n)++;
	}
	closedir(d);
	if (err) {
		read_error(c, rel, "list it", side, err);
		free_list(v, *n);
		*n = 0;
		return NULL;
	}
	qsort(v, *n, sizeof(*v), cmp_strings);
	return v;
}

// One directory level of the walk: both directories and their listings,
// merged in step. The levels live on an explicit stack (not the C stack),
// so depth is bounded by descriptors alone.
struct level {
	struct obj a, b;
	char **la, **lb; // NULL if unreadable (reported): the level is done
	size_t na, nb, i, j;
	long rel_old; // c->rel's length before this level's name; -1 at the root
};

static void level_free(struct cmp *c, struct level *l)
{
	free_list(l->la, l->na);
	free_list(l->lb, l->nb);
	obj_close(&l->a);
	obj_close(&l->b);
	if (l->rel_old >= 0)
		rel_pop(c, l->rel_old);
}

// Lists the directories of a new level (c->rel names them).
static void level_list(struct cmp *c, struct level *l)
{
	l->la = list_dir(c, rel_name(c), 0, l->a.fd, ".", false, &l->na);
	l->lb = list_dir(c, rel_name(c), 1, l->b.fd, ".", false, &l->nb);
	l->i = l->j = 0;
}

// Compares the directories x and y (already compared themselves) entry by
// entry, depth first; takes their descriptors.
static void walk(struct cmp *c, struct obj *x, struct obj *y)
{
	size_t depth = 0, cap = 16;
	struct level *st = malloc(cap * sizeof(*st));
	if (!st) {
		read_error(c, rel_name(c), "list it", 0, ENOMEM);
		obj_close(x);
		obj_close(y);
		return;
	}
	st[depth++] = (struct level){.a = *x, .b = *y, .rel_old = -1};
	level_list(c, &st[0]);
	while (depth > 0) {
		struct level *l = &st[depth - 1];
		if (!l->la || !l->lb || (l->i == l->na && l->j == l->nb)) {
			level_free(c, l);
			depth--;
			continue;
		}
		int o = l->i == l->na ? 1 : l->j == l->nb ? -1 : strcmp(l->la[l->i], l->lb[l->j]);
		const char *name = o < 0 ? l->la[l->i] : l->lb[l->j];
		long old = rel_push(c, name);
		if (old < 0) { // reported; the rest of this level is not compared
			l->i = l->na;
			l->j = l->nb;
			continue;
		}
		if (o != 0) {
			diff(c, "%s: only in the %s tree", c->rel, side_name[o > 0]);
			if (o < 0)
				l->i++;
			else
				l->j++;
			rel_pop(c, old);
			continue;
		}
		l->i++;
		l->j++;
		struct level next = {.a = {.fd = -1}, .b = {.fd = -1}, .rel_old = old};
		if (obj_open(c, c->rel, 0, l->a.fd, name, false, &next.a) ||
		    obj_open(c, c->rel, 1, l->b.fd, name, false, &next.b) ||
		    !compare_obj(c, c->rel, &next.a, &next.b)) {
			level_free(c, &next);
			continue;
		}
		if (depth == cap) {
			struct level *more = realloc(st, 2 * cap * sizeof(*st));
			if (!more) {
				read_error(c, c->rel, "list it", 0, ENOMEM);
				level_free(c, &next);
				continue;
			}
			st = more;
			cap *= 2;
		}
		st[depth] = next;
		level_list(c, &st[depth]);
		depth++;
	}
	free(st);
}

// One index entry: its id xattr must be its name. Returns its link count
// (1: an orphan, only the index link is left), or 0 if it cannot be read.
static nlink_t index_entry(struct cmp *c, const char *rel, int side, const struct obj *o,
			   const char *name)
{
	char buf[17] = {0};
	if (getxattr(o->proc, XATTR_ID, buf, 16) != 16 || strcmp(buf, name))
		diff(c, "index %s: carries id %s in the %s tree", name, buf[0] ? buf : "(none)",
		     side_name[side]);
	// obj_open left out the index link itself from the user's count.
	return o->st.st_nlink + 1;
}

// The hard-link index DATA/ids: the same ids on both sides, each entry
// naming its own id; orphans (index entries with no name left) are compared
// whole here, the named through the tree.
static void compare_index(struct cmp *c, int da, int db)
{
	char bucket[16], r[64];
	for (unsigned k = 0; k < 256; k++) {
		snprintf(bucket, sizeof(bucket), "ids/%02x", k);
		size_t na, nb;
		char **la = list_dir(c, bucket, 0, da, bucket, true, &na);
		char **lb = list_dir(c, bucket, 1, db, bucket, true, &nb);
		size_t i = 0, j = 0;
		while (la && lb && (i < na || j < nb)) {
			int o = i == na ? 1 : j == nb ? -1 : strcmp(la[i], lb[j]);
			if (o < 0) {
				diff(c, "index %s: only in the first tree", la[i++]);
				continue;
			}
			if (o > 0) {
				diff(c, "index %s: only in the second tree", lb[j++]);
				continue;
			}
			snprintf(r, sizeof(r), "%s/%s", bucket, la[i]);
			struct obj x = {.fd = -1}, y = {.fd = -1};
			nlink_t nx = 0, ny = 0;
			if (!obj_open(c, r, 0, da, r, false, &x))
				nx = index_entry(c, r, 0, &x, la[i]);
			if (!obj_open(c, r, 1, db, r, false, &y))
				ny = index_entry(c, r, 1, &y, lb[j]);
			if (nx == 1 && ny == 1) {
				snprintf(r, sizeof(r), "orphan %s", la[i]);
				compare_obj(c, r, &x, &y);
			} else if ((nx == 1) != (ny == 1) && nx && ny) {
				diff(c, "index %s: an orphan in the %s tree only", la[i],
				     nx == 1 ? "first" : "second");
			}
			obj_close(&x);
			obj_close(&y);
			i++;
			j++;
		}
		free_list(la, na);
		free_list(lb, nb);
	}
}

// Compares the trees under roots a and b (opened following symlinks: a
// data dir may be a link to another disk).
static void compare_roots(struct cmp *c, int dira, const char *a, int dirb, const char *b)
{
	struct obj x, y = {.fd = -1};
	if (obj_open(c, ".", 0, dira, a, dira == AT_FDCWD, &x))
		return;
	if (!obj_open(c, ".", 1, dirb, b, dirb == AT_FDCWD, &y) && compare_obj(c, ".", &x, &y)) {
		walk(c, &x, &y);
		return;
	}
	obj_close(&x);
	obj_close(&y);
}

int tree_compare(const char *a, const char *b, enum tree_cmp_kind kind, tree_diff_fn fn, void *arg)
{
	struct cmp c = {.kind = kind, .fn = fn, .arg = arg};
	c.buf[0] = malloc(BUF_SIZE);
	c.buf[1] = malloc(BUF_SIZE);
	c.rel = calloc(1, 256);
	c.rel_cap = 256;
	if (!c.buf[0] || !c.buf[1] || !c.rel) {
		free(c.buf[0]);
		free(c.buf[1]);
		free(c.rel);
		fn(arg, "trees not compared: out of memory");
		return -ENOMEM;
	}
	if (kind == TREE_CMP_DATA) {
		int da = open(a, O_PATH | O_DIRECTORY | O_CLOEXEC);
		int ea = errno;
		int db = open(b, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (da < 0 || db < 0) {
			diff(&c, "cannot open data dir %s: %s", da < 0 ? a : b,
			     strerror(da < 0 ? ea : errno));
			c.err = -(da < 0 ? ea : errno);
		} else {
			compare_roots(&c, da, "tree", db, "tree");
			compare_index(&c, da, db);
		}
		if (da >= 0)
			close(da);
		if (db >= 0)
			close(db);
	} else {
		compare_roots(&c, AT_FDCWD, a, AT_FDCWD, b);
	}
	free(c.buf[0]);
	free(c.buf[1]);
	free(c.rel);
	return c.err ? c.err : c.diffs;
}
