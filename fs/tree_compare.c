// Compares trees entry by entry (names, attributes, xattrs, content): the
// first with each of the others, in one walk, so that each object of the
// first tree is read once however many trees it is compared with (raftfs
// verify reads three mounts three times, not four: every object read
// through a mount is a FUSE round trip, every open a barrier).
//
// The walk holds a descriptor per directory level and names every object
// relative to its parent's descriptor (openat, fstatat, readlinkat; xattrs
// through /proc/self/fd/N), never by an absolute path: the filesystem
// allows paths longer than PATH_MAX, and such a tree must be compared
// whole. Depth is bounded by the descriptor limit (one per tree per level). Whatever
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
#define XATTR_DELEG "trusted.raftfs.deleg"

// Room for one xattr value (Linux: XATTR_SIZE_MAX), a symlink target
// (< PATH_MAX) or one block of content.
#define BUF_SIZE 65536

struct cmp {
	enum tree_cmp_kind kind;
	tree_diffs_fn fn;
	void *arg;
	int n; // trees; tree 0 is the one each other is compared with
	int diffs;
	int err;
	// first_only: the walk stops at the first difference (stop), for a
	// caller that only asks whether the trees are identical yet.
	bool first_only, stop;
	// The path of the object being compared, relative to the roots; grows
	// without bound (it is only ever printed).
	char *rel;
	size_t rel_len, rel_cap;
	// BUF_SIZE each: the first tree's bytes, then each other tree's in
	// turn, so the first tree's are read once for all of them.
	char *buf[2];
	bool *tmp;	// n: the pairs one step of compare_obj compares
	bool *set;	// n: the pairs of one index entry (compare_index)
	int *fds;	// n: the files whose content is compared
	nlink_t *links; // n: one index entry's link counts (compare_index)
};

// One tree's object, held by an O_PATH descriptor so that every check
// reads the same inode, however long its path and whatever its type (an
// O_PATH open neither follows a symlink nor opens a FIFO or device).
struct obj {
	int fd;
	char proc[32]; // /proc/self/fd/<fd>: the object itself for the *xattr calls
	struct stat st;
	uint64_t id;
	int64_t ctime_ns;
};

// Messages name the trees of a pair as tree_compare names its two.
static const char *const side_name[2] = {"first", "second"};

static void diff(struct cmp *c, int pair, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// A difference between tree 0 and tree pair.
static void diff(struct cmp *c, int pair, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	c->diffs++;
	c->stop = c->first_only;
	if (n < 0) {
		// Still a difference: say at least that there was one.
		c->fn(c->arg, pair, "a difference (out of memory formatting it)");
		if (!c->err)
			c->err = -ENOMEM;
		return;
	}
	c->fn(c->arg, pair, msg);
	free(msg);
}

// Something could not be read, in the first tree or in tree pair: a
// difference of that pair (it cannot be shown identical) and an error for
// the caller.
static void read_error(struct cmp *c, const char *rel, const char *what, bool first, int pair,
		       int err)
{
	diff(c, pair, "%s: cannot %s in the %s tree: %s", rel, what, side_name[!first],
	     strerror(err));
	if (!c->err)
		c->err = -err;
}

// Something of the first tree could not be read: a difference of every
// pair in on.
static void read_error_first(struct cmp *c, const char *rel, const char *what, const bool *on,
			     int err)
{
	for (int i = 1; i < c->n; i++)
		if (on[i])
			read_error(c, rel, what, true, i, err);
}

static bool any_on(const struct cmp *c, const bool *on)
{
	for (int i = 1; i < c->n; i++)
		if (on[i])
			return true;
	return false;
}

// Appends "/name" (just "name" at the root) to c->rel; returns the old
// length for rel_pop, or -1 without memory (reported to the pairs in on).
static long rel_push(struct cmp *c, const bool *on, const char *name)
{
	size_t old = c->rel_len, n = strlen(name), need = old + 1 + n + 1;
	if (need > c->rel_cap) {
		size_t cap = c->rel_cap ? c->rel_cap : 256;
		while (cap < need)
			cap *= 2;
		char *more = realloc(c->rel, cap);
		if (!more) {
			for (int i = 1; i < c->n; i++)
				if (on[i])
					diff(c, i, "%s/%s: not compared: out of memory", c->rel,
					     name);
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
// loads the attributes the user sees. Returns 0, or an errno with *what
// saying what failed (the caller knows which pairs to tell).
static int obj_open(const struct cmp *c, int dirfd, const char *name, bool follow, struct obj *o,
		    const char **what)
{
	o->fd = openat(dirfd, name, O_PATH | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
	if (o->fd < 0) {
		*what = "open it";
		return errno;
	}
	snprintf(o->proc, sizeof(o->proc), "/proc/self/fd/%d", o->fd);
	if (fstatat(o->fd, "", &o->st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) {
		int err = errno;
		*what = "stat it";
		obj_close(o);
		return err;
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
// names; *n is its length. Caller frees. NULL with *err set on error.
static char *xattr_names(const struct cmp *c, const struct obj *o, ssize_t *n, int *err)
{
	char *raw = NULL;
	// The list may grow between asking its size and reading it: retry.
	for (int tries = 0;; tries++) {
		ssize_t size = listxattr(o->proc, NULL, 0);
		if (size < 0) {
			*err = errno;
			free(raw);
			return NULL;
		}
		free(raw);
		raw = malloc((size_t)size + 1);
		if (!raw) {
			*err = ENOMEM;
			return NULL;
		}
		*n = listxattr(o->proc, raw, (size_t)size + 1);
		if (*n >= 0)
			break;
		if (errno != ERANGE || tries == 3) {
			*err = errno;
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
		*err = ENOMEM;
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

// The xattrs of the pairs in on: names, then each value of the first
// tree's object read once and compared with every other's.
static void compare_xattrs(struct cmp *c, const char *rel, const struct obj *o, const bool *on)
{
	bool *same = c->tmp; // the pairs with the same names
	ssize_t nx, ny;
	int err = 0;
	char *x = xattr_names(c, &o[0], &nx, &err);
	if (!x)
		read_error_first(c, rel, "list xattrs", on, err);
	for (int i = 1; i < c->n; i++) {
		same[i] = false;
		if (!on[i])
			continue;
		char *y = xattr_names(c, &o[i], &ny, &err);
		if (!y)
			read_error(c, rel, "list xattrs", false, i, err);
		else if (x && (nx != ny || memcmp(x, y, (size_t)nx)))
			diff(c, i, "%s: xattr names differ", rel);
		else if (x)
			same[i] = true;
		free(y);
	}
	for (char *p = x; x && p < x + nx; p += strlen(p) + 1) {
		ssize_t la = getxattr(o[0].proc, p, c->buf[0], BUF_SIZE);
		int ea = errno;
		for (int i = 1; i < c->n; i++) {
			if (!same[i])
				continue;
			ssize_t lb = getxattr(o[i].proc, p, c->buf[1], BUF_SIZE);
			if (la < 0 || lb < 0)
				read_error(c, rel, "read an xattr", la < 0, i, la < 0 ? ea : errno);
			else if (la != lb || memcmp(c->buf[0], c->buf[1], (size_t)la))
				diff(c, i, "%s: xattr %s differs", rel, p);
		}
	}
	free(x);
}

// The content of the regular files of the pairs in live (their sizes are
// equal): the first tree's file is read once, a block at a time, and each
// block compared with every other file's still equal.
static void compare_content(struct cmp *c, const char *rel, const struct obj *o, bool *live)
{
	// Reopening through /proc reads the very inode that was stat'ed.
	int *fd = c->fds;
	if (!any_on(c, live))
		return;
	for (int i = 0; i < c->n; i++)
		fd[i] = -1;
	fd[0] = open(o[0].proc, O_RDONLY | O_CLOEXEC);
	if (fd[0] < 0) {
		read_error_first(c, rel, "open it for reading", live, errno);
		return;
	}
	for (int i = 1; i < c->n; i++)
		if (live[i] && (fd[i] = open(o[i].proc, O_RDONLY | O_CLOEXEC)) < 0) {
			read_error(c, rel, "open it for reading", false, i, errno);
			live[i] = false;
		}
	for (off_t off = 0; any_on(c, live) && !c->stop; off += BUF_SIZE) {
		ssize_t la = pread(fd[0], c->buf[0], BUF_SIZE, off);
		if (la < 0) {
			read_error_first(c, rel, "read it", live, errno);
			break;
		}
		for (int i = 1; i < c->n; i++) {
			if (!live[i])
				continue;
			ssize_t lb = pread(fd[i], c->buf[1], BUF_SIZE, off);
			if (lb < 0) {
				read_error(c, rel, "read it", false, i, errno);
				live[i] = false;
			} else if (la != lb || memcmp(c->buf[0], c->buf[1], (size_t)la)) {
				diff(c, i, "%s: content differs at or after byte %lld", rel,
				     (long long)off);
				live[i] = false;
			}
		}
		if (la == 0)
			break;
	}
	for (int i = 0; i < c->n; i++)
		if (fd[i] >= 0)
			close(fd[i]);
}

static void compare_symlinks(struct cmp *c, const char *rel, const struct obj *o, const bool *on)
{
	// A target is shorter than PATH_MAX; a full buffer would be a
	// truncated one.
	ssize_t la = readlinkat(o[0].fd, "", c->buf[0], PATH_MAX);
	if (la < 0) {
		read_error_first(c, rel, "read the symlink", on, errno);
		return;
	}
	if (la == PATH_MAX) {
		read_error_first(c, rel, "read the whole symlink", on, ENAMETOOLONG);
		return;
	}
	for (int i = 1; i < c->n; i++) {
		if (!on[i])
			continue;
		ssize_t lb = readlinkat(o[i].fd, "", c->buf[1], PATH_MAX);
		if (lb < 0)
			read_error(c, rel, "read the symlink", false, i, errno);
		else if (lb == PATH_MAX)
			read_error(c, rel, "read the whole symlink", false, i, ENAMETOOLONG);
		else if (la != lb || memcmp(c->buf[0], c->buf[1], (size_t)la))
			diff(c, i, "%s: symlink target differs", rel);
	}
}

// One of our xattrs that is replicated state the user does not see, the
// same bytes on every node at one applied index (written only at apply, or
// carried by an image): the nodes that released an orphan, a directory's
// delegation. (Not the root's table of start commands: a node upgraded
// later, or rebuilt from an older binary's image, lacks the starts before
// its since, by design, fs/sm_starts.h; nor its local since.)
static void compare_ours(struct cmp *c, const char *rel, const struct obj *o, const bool *on,
			 const char *name, const char *read, const char *differ)
{
	ssize_t la = getxattr(o[0].proc, name, c->buf[0], BUF_SIZE);
	if (la < 0 && errno != ENODATA) {
		read_error_first(c, rel, read, on, errno);
		return;
	}
	for (int i = 1; i < c->n; i++) {
		if (!on[i])
			continue;
		ssize_t lb = getxattr(o[i].proc, name, c->buf[1], BUF_SIZE);
		if (lb < 0 && errno != ENODATA)
			read_error(c, rel, read, false, i, errno);
		else if (la != lb || (la > 0 && memcmp(c->buf[0], c->buf[1], (size_t)la)))
			diff(c, i, "%s: %s", rel, differ);
	}
}

// Compares one object of the first tree with the same object of each tree
// whose pair is in on (not their children). Leaves on only the pairs where
// both are directories; returns how many.
static int compare_obj(struct cmp *c, const char *rel, const struct obj *o, bool *on)
{
	const struct stat *x = &o[0].st;
	for (int i = 1; i < c->n; i++) {
		if (!on[i])
			continue;
		const struct stat *y = &o[i].st;
		if ((x->st_mode & S_IFMT) != (y->st_mode & S_IFMT)) {
			diff(c, i, "%s: type %o vs %o", rel, x->st_mode & S_IFMT,
			     y->st_mode & S_IFMT);
			on[i] = false;
			continue;
		}
		if (o[0].id != o[i].id)
			diff(c, i, "%s: id %llx vs %llx", rel, (unsigned long long)o[0].id,
			     (unsigned long long)o[i].id);
		if (x->st_mode != y->st_mode)
			diff(c, i, "%s: mode %o vs %o", rel, x->st_mode, y->st_mode);
		if (x->st_uid != y->st_uid || x->st_gid != y->st_gid)
			diff(c, i, "%s: owner %u:%u vs %u:%u", rel, x->st_uid, x->st_gid, y->st_uid,
			     y->st_gid);
		if (!S_ISDIR(x->st_mode) && x->st_size != y->st_size)
			diff(c, i, "%s: size %lld vs %lld", rel, (long long)x->st_size,
			     (long long)y->st_size);
		if (x->st_nlink != y->st_nlink)
			diff(c, i, "%s: nlink %lu vs %lu", rel, (unsigned long)x->st_nlink,
			     (unsigned long)y->st_nlink);
		if (x->st_mtim.tv_sec != y->st_mtim.tv_sec ||
		    x->st_mtim.tv_nsec != y->st_mtim.tv_nsec)
			diff(c, i, "%s: mtime %lld.%09ld vs %lld.%09ld", rel,
			     (long long)x->st_mtim.tv_sec, x->st_mtim.tv_nsec,
			     (long long)y->st_mtim.tv_sec, y->st_mtim.tv_nsec);
		if (o[0].ctime_ns != o[i].ctime_ns)
			diff(c, i, "%s: ctime %lld vs %lld", rel, (long long)o[0].ctime_ns,
			     (long long)o[i].ctime_ns);
		if ((S_ISCHR(x->st_mode) || S_ISBLK(x->st_mode)) && x->st_rdev != y->st_rdev)
			diff(c, i, "%s: device number differs", rel);
	}
	if (!any_on(c, on) || c->stop)
		return 0;
	if (S_ISLNK(x->st_mode))
		compare_symlinks(c, rel, o, on);
	compare_xattrs(c, rel, o, on);
	if (c->kind == TREE_CMP_DATA) {
		compare_ours(c, rel, o, on, XATTR_RELEASED, "read the releases",
			     "released by different nodes");
		if (S_ISDIR(x->st_mode))
			compare_ours(c, rel, o, on, XATTR_DELEG, "read the delegation",
				     "delegation differs");
	}
	if (S_ISREG(x->st_mode)) {
		for (int i = 1; i < c->n; i++)
			c->tmp[i] = on[i] && o[i].st.st_size == x->st_size;
		compare_content(c, rel, o, c->tmp);
	}
	int dirs = 0;
	for (int i = 1; i < c->n; i++) {
		on[i] = on[i] && S_ISDIR(x->st_mode);
		dirs += on[i];
	}
	return dirs;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

// Sorted entry names (without . and ..) of directory entry name of dirfd
// ("." for dirfd itself). Caller frees. A missing directory is empty if
// missing_ok (index buckets are made on first use). NULL with *err set on
// error: a listing cut short would hide entries.
static char **list_dir(int dirfd, const char *name, bool missing_ok, size_t *n, int *err)
{
	*n = 0;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT && missing_ok)
		return calloc(1, sizeof(char *));
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		*err = errno;
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	size_t cap = 16;
	char **v = malloc(cap * sizeof(*v));
	*err = v ? 0 : ENOMEM;
	while (!*err) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			*err = errno;
			break;
		}
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (*n == cap) {
			char **more = realloc(v, 2 * cap * sizeof(*v));
			if (!more) {
				*err = ENOMEM;
				break;
			}
			v = more;
			cap *= 2;
		}
		if (!(v[*n] = strdup(e->d_name)))
			*err = ENOMEM;
		else
			(*n)++;
	}
	closedir(d);
	if (*err) {
		free_list(v, *n);
		*n = 0;
		return NULL;
	}
	qsort(v, *n, sizeof(*v), cmp_strings);
	return v;
}

// One tree's sorted listing of a directory, consumed in step with the
// others'.
struct listing {
	char **v;
	size_t n, i;
};

// Lists entry name of dirfd[k] for tree 0 and each tree whose pair is in
// on; a pair whose tree cannot be listed is reported and turned off, all
// of them if tree 0 cannot be. rel names the directory in messages.
static void list_all(struct cmp *c, const char *rel, const int *dirfd, const char *name,
		     bool missing_ok, struct listing *ls, bool *on)
{
	int err = 0;
	ls[0].v = list_dir(dirfd[0], name, missing_ok, &ls[0].n, &err);
	ls[0].i = 0;
	if (!ls[0].v) {
		read_error_first(c, rel, "list it", on, err);
		for (int i = 1; i < c->n; i++)
			on[i] = false;
		return;
	}
	for (int i = 1; i < c->n; i++) {
		ls[i].i = 0;
		if (on[i] && !(ls[i].v = list_dir(dirfd[i], name, missing_ok, &ls[i].n, &err))) {
			read_error(c, rel, "list it", false, i, err);
			on[i] = false;
		}
	}
}

static void free_listings(const struct cmp *c, struct listing *ls)
{
	for (int i = 0; i < c->n; i++) {
		free_list(ls[i].v, ls[i].n);
		ls[i] = (struct listing){0};
	}
}

static bool listing_at(const struct listing *l, const char *name)
{
	return l->i < l->n && !strcmp(l->v[l->i], name);
}

// The next name in the merged listings of tree 0 and of the trees whose
// pair is in on (NULL when they are all done). Reports it to each pair in
// on where only one of the two trees has it (prefix names it) and moves
// past it; in both[i] the pairs where both have it.
static const char *merge_next(struct cmp *c, struct listing *ls, const bool *on, bool *both,
			      const char *prefix, const char *sep)
{
	const char *name = ls[0].i < ls[0].n ? ls[0].v[ls[0].i] : NULL;
	for (int i = 1; i < c->n; i++)
		if (on[i] && ls[i].i < ls[i].n && (!name || strcmp(ls[i].v[ls[i].i], name) < 0))
			name = ls[i].v[ls[i].i];
	if (!name)
		return NULL;
	bool in0 = listing_at(&ls[0], name);
	for (int i = 1; i < c->n; i++) {
		both[i] = false;
		if (!on[i])
			continue;
		bool in = listing_at(&ls[i], name);
		if (in0 != in)
			diff(c, i, "%s%s%s: only in the %s tree", prefix, sep, name, side_name[in]);
		both[i] = in0 && in;
		ls[i].i += in;
	}
	ls[0].i += in0;
	return name;
}

// One directory level of the walk: the directory in each tree and their
// listings, merged in step. The levels live on an explicit stack (not the
// C stack), so depth is bounded by descriptors alone.
struct level {
	struct obj *o;	    // per tree
	struct listing *ls; // per tree
	bool *on;	    // per tree: the pairs still compared at this level
	int *fd;	    // per tree: o[i].fd, for list_all
	long rel_old;	    // c->rel's length before this level's name; -1 at the root
};

// One allocation for a level's arrays; false without memory.
static bool level_init(const struct cmp *c, struct level *l, long rel_old)
{
	size_t n = (size_t)c->n;
	char *p = calloc(
	    1, n * (sizeof(struct obj) + sizeof(struct listing) + sizeof(int) + sizeof(bool)));
	if (!p)
		return false;
	l->o = (struct obj *)p;
	l->ls = (struct listing *)(l->o + n);
	l->fd = (int *)(l->ls + n);
	l->on = (bool *)(l->fd + n);
	for (size_t i = 0; i < n; i++)
		l->o[i].fd = -1;
	l->rel_old = rel_old;
	return true;
}

static void level_free(struct cmp *c, struct level *l)
{
	if (!l->o)
		return;
	free_listings(c, l->ls);
	for (int i = 0; i < c->n; i++)
		obj_close(&l->o[i]);
	if (l->rel_old >= 0)
		rel_pop(c, l->rel_old);
	free(l->o);
	l->o = NULL;
}

// Lists the directories of a new level (c->rel names them); closes the
// other trees' objects, which are not directories here.
static void level_list(struct cmp *c, struct level *l)
{
	for (int i = 0; i < c->n; i++) {
		if (i && !l->on[i])
			obj_close(&l->o[i]);
		l->fd[i] = l->o[i].fd;
	}
	list_all(c, rel_name(c), l->fd, ".", false, l->ls, l->on);
}

// Opens entry name of each tree's directory at level l for the pairs in on
// (tree 0's once), turning off those that cannot be opened (reported).
static void open_entry(struct cmp *c, const struct level *l, const char *name, struct level *next)
{
	const char *what = NULL;
	int err = obj_open(c, l->o[0].fd, name, false, &next->o[0], &what);
	if (err) {
		read_error_first(c, c->rel, what, next->on, err);
		for (int i = 1; i < c->n; i++)
			next->on[i] = false;
		return;
	}
	for (int i = 1; i < c->n; i++)
		if (next->on[i] &&
		    (err = obj_open(c, l->o[i].fd, name, false, &next->o[i], &what))) {
			read_error(c, c->rel, what, false, i, err);
			next->on[i] = false;
		}
}

// Compares the directories of level root (already compared themselves)
// entry by entry, depth first; takes the level.
static void walk(struct cmp *c, struct level *root)
{
	size_t depth = 0, cap = 16;
	struct level *st = malloc(cap * sizeof(*st));
	if (!st) {
		read_error_first(c, rel_name(c), "list it", root->on, ENOMEM);
		level_free(c, root);
		return;
	}
	st[depth++] = *root;
	level_list(c, &st[0]);
	while (depth > 0) {
		struct level *l = &st[depth - 1];
		struct level next = {0};
		if (!level_init(c, &next, -1)) {
			read_error_first(c, rel_name(c), "list it", l->on, ENOMEM);
			level_free(c, l);
			depth--;
			continue;
		}
		const char *name = NULL;
		if (any_on(c, l->on) && !c->stop)
			name = merge_next(c, l->ls, l->on, next.on, c->rel, c->rel_len ? "/" : "");
		if (!name) { // this level is done
			level_free(c, &next);
			level_free(c, l);
			depth--;
			continue;
		}
		if (!any_on(c, next.on)) { // only in some trees: reported
			level_free(c, &next);
			continue;
		}
		long old = rel_push(c, next.on, name);
		if (old < 0) { // reported; the rest of this level is not compared
			for (int i = 1; i < c->n; i++)
				l->on[i] = false;
			level_free(c, &next);
			continue;
		}
		next.rel_old = old;
		open_entry(c, l, name, &next);
		if (!any_on(c, next.on) || !compare_obj(c, c->rel, next.o, next.on)) {
			level_free(c, &next);
			continue;
		}
		if (depth == cap) {
			struct level *more = realloc(st, 2 * cap * sizeof(*st));
			if (!more) {
				read_error_first(c, c->rel, "list it", next.on, ENOMEM);
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
static nlink_t index_entry(const struct obj *o, const char *name, char *id)
{
	if (getxattr(o->proc, XATTR_ID, id, 16) != 16 || strcmp(id, name))
		return 0;
	// obj_open left out the index link itself from the user's count.
	return o->st.st_nlink + 1;
}

// Opens index entry r of tree i and checks its id; its link count, 0 if it
// could not be opened (reported to pair, or every pair in on for tree 0).
static nlink_t open_index_entry(struct cmp *c, int i, int dirfd, const char *r, const char *name,
				const bool *on, int pair, struct obj *o)
{
	const char *what = NULL;
	char id[17] = {0};
	int err = obj_open(c, dirfd, r, false, o, &what);
	if (err) {
		if (i == 0)
			read_error_first(c, r, what, on, err);
		else
			read_error(c, r, what, false, pair, err);
		return 0;
	}
	nlink_t links = index_entry(o, name, id);
	if (!links) {
		for (int k = 1; k < c->n; k++)
			if (i == 0 ? on[k] : k == pair)
				diff(c, k, "index %s: carries id %s in the %s tree", name,
				     id[0] ? id : "(none)", side_name[i != 0]);
		links = o->st.st_nlink + 1;
	}
	return links;
}

// The hard-link index DATA/ids: the same ids in each tree as in tree 0,
// each entry naming its own id; orphans (index entries with no name left)
// are compared whole here, the named through the tree.
static void compare_index(struct cmp *c, const int *dirfd, const bool *pairs, struct level *l)
{
	char bucket[16], r[64];
	for (unsigned k = 0; k < 256 && !c->stop; k++) {
		snprintf(bucket, sizeof(bucket), "ids/%02x", k);
		memcpy(l->on, pairs, (size_t)c->n * sizeof(bool));
		list_all(c, bucket, dirfd, bucket, true, l->ls, l->on);
		const char *name;
		bool *both = c->set;
		while (any_on(c, l->on) && !c->stop &&
		       (name = merge_next(c, l->ls, l->on, both, "index ", ""))) {
			if (!any_on(c, both))
				continue;
			snprintf(r, sizeof(r), "%s/%s", bucket, name);
			nlink_t n0 = open_index_entry(c, 0, dirfd[0], r, name, both, 0, &l->o[0]);
			nlink_t *ni = c->links;
			for (int i = 1; i < c->n; i++)
				ni[i] = both[i] ? open_index_entry(c, i, dirfd[i], r, name, both, i,
								   &l->o[i])
						: 0;
			// The orphans of both trees compared as objects; an
			// orphan in one only is a difference.
			for (int i = 1; i < c->n; i++) {
				if (n0 && ni[i] && (n0 == 1) != (ni[i] == 1))
					diff(c, i, "index %s: an orphan in the %s tree only", name,
					     n0 == 1 ? "first" : "second");
				both[i] = n0 == 1 && ni[i] == 1;
			}
			snprintf(r, sizeof(r), "orphan %s", name);
			if (any_on(c, both))
				compare_obj(c, r, l->o, both);
			for (int i = 0; i < c->n; i++)
				obj_close(&l->o[i]);
		}
		free_listings(c, l->ls);
	}
}

// Compares the roots (entry name[i] of dirfd[i], followed at AT_FDCWD: a
// mount or data dir given may be a link), then the trees under them, for
// the pairs in on.
static void compare_roots(struct cmp *c, const int *dirfd, const char *const *name, const bool *on)
{
	struct level root;
	const char *what = NULL;
	if (!level_init(c, &root, -1)) {
		read_error_first(c, ".", "open it", on, ENOMEM);
		return;
	}
	memcpy(root.on, on, (size_t)c->n * sizeof(bool));
	int err = obj_open(c, dirfd[0], name[0], dirfd[0] == AT_FDCWD, &root.o[0], &what);
	if (err) {
		read_error_first(c, ".", what, root.on, err);
		level_free(c, &root);
		return;
	}
	for (int i = 1; i < c->n; i++)
		if (root.on[i] && (err = obj_open(c, dirfd[i], name[i], dirfd[i] == AT_FDCWD,
						  &root.o[i], &what))) {
			read_error(c, ".", what, false, i, err);
			root.on[i] = false;
		}
	if (any_on(c, root.on) && compare_obj(c, ".", root.o, root.on))
		walk(c, &root);
	else
		level_free(c, &root);
}

// The data dirs' trees and hard-link indexes (dirfd: the data dirs).
static void compare_data(struct cmp *c, const char *const *roots, int *dirfd, bool *on)
{
	const char **tree = calloc((size_t)c->n, sizeof(*tree));
	struct level scratch = {0};
	if (!tree || !level_init(c, &scratch, -1)) {
		read_error_first(c, ".", "open it", on, ENOMEM);
		free(tree);
		return;
	}
	for (int i = 0; i < c->n; i++) {
		tree[i] = "tree";
		if ((dirfd[i] = open(roots[i], O_PATH | O_DIRECTORY | O_CLOEXEC)) >= 0)
			continue;
		int err = errno;
		for (int k = 1; k < c->n; k++)
			if (on[k] && (i == 0 || k == i))
				diff(c, k, "cannot open data dir %s: %s", roots[i], strerror(err));
		if (!c->err)
			c->err = -err;
		if (i == 0)
			memset(on, 0, (size_t)c->n * sizeof(bool));
		on[i] = false;
	}
	if (any_on(c, on)) {
		compare_roots(c, dirfd, tree, on);
		compare_index(c, dirfd, on, &scratch);
	}
	level_free(c, &scratch);
	free(tree);
}

static int compare_each(const char *const *roots, int n, enum tree_cmp_kind kind, tree_diffs_fn fn,
			void *arg, bool first_only)
{
	struct cmp c = {.kind = kind, .fn = fn, .arg = arg, .n = n, .first_only = first_only};
	if (n < 2)
		return 0;
	size_t un = (size_t)n;
	int *dirfd = malloc(un * sizeof(*dirfd));
	bool *on = calloc(un, sizeof(*on));
	c.buf[0] = malloc(BUF_SIZE);
	c.buf[1] = malloc(BUF_SIZE);
	c.rel = calloc(1, 256);
	c.rel_cap = 256;
	c.tmp = calloc(un, sizeof(*c.tmp));
	c.set = calloc(un, sizeof(*c.set));
	c.fds = calloc(un, sizeof(*c.fds));
	c.links = calloc(un, sizeof(*c.links));
	if (!dirfd || !on || !c.buf[0] || !c.buf[1] || !c.rel || !c.tmp || !c.set || !c.fds ||
	    !c.links) {
		for (int i = 1; i < n; i++)
			fn(arg, i, "trees not compared: out of memory");
		c.err = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		dirfd[i] = AT_FDCWD;
		on[i] = i > 0;
	}
	if (kind == TREE_CMP_DATA)
		compare_data(&c, roots, dirfd, on);
	else
		compare_roots(&c, dirfd, roots, on);
	for (int i = 0; kind == TREE_CMP_DATA && i < n; i++)
		if (dirfd[i] >= 0)
			close(dirfd[i]);
out:
	free(dirfd);
	free(on);
	free(c.buf[0]);
	free(c.buf[1]);
	free(c.rel);
	free(c.tmp);
	free(c.set);
	free(c.fds);
	free(c.links);
	return c.err ? c.err : c.diffs;
}

int tree_compare_each(const char *const *roots, int n, enum tree_cmp_kind kind, tree_diffs_fn fn,
		      void *arg)
{
	return compare_each(roots, n, kind, fn, arg, false);
}

static void ignore_diff(void *arg, int other, const char *msg)
{
	(void)arg, (void)other, (void)msg;
}

int tree_differ(const char *const *roots, int n, enum tree_cmp_kind kind)
{
	// compare_each counts what it found before it stopped: the first
	// object's differing attributes all at once (how many depends on
	// the times the trees got), so only "some" is meaningful.
	int rc = compare_each(roots, n, kind, ignore_diff, NULL, true);
	return rc < 0 ? rc : rc > 0;
}

// tree_compare's caller's function and argument, behind tree_diffs_fn.
struct one_pair {
	tree_diff_fn fn;
	void *arg;
};

static void pass_diff(void *arg, int other, const char *msg)
{
	struct one_pair *p = arg;
	(void)other;
	p->fn(p->arg, msg);
}

int tree_compare(const char *a, const char *b, enum tree_cmp_kind kind, tree_diff_fn fn, void *arg)
{
	const char *roots[2] = {a, b};
	struct one_pair p = {fn, arg};
	return tree_compare_each(roots, 2, kind, pass_diff, &p);
}
