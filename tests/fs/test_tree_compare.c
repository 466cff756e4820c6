// tree_compare on trees whose paths are longer than PATH_MAX: compared whole, differences at the
// bottom reported with their full relative path, and nothing skipped silently when descriptors
// run out.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"
#include "tree_compare.h"

// 20 names of 240 bytes: the deepest path is over 4800 bytes (PATH_MAX 4096).
#define DEPTH 20
#define NAME_LEN 240
#define DIR_ID(i) ((1ULL << 48) | (100 + (i)))
#define LEAF_ID ((1ULL << 48) | 7)
#define LINK_ID ((1ULL << 48) | 8)
// Replicas made by the same commands: two for tree_compare, a third for
// tree_compare_each.
#define REPLICAS 3

struct fx {
	char *dir[REPLICAS];
	struct sm *sm[REPLICAS];
	char names[DEPTH][NAME_LEN + 1];
	char *leaf_rel; // the leaf's path relative to the tree
};

// Every difference reported, one string after another.
struct seen {
	int n;
	char *all;
	size_t len;
};

static void keep_diff(void *arg, const char *msg)
{
	struct seen *s = arg;
	size_t l = strlen(msg);
	char *more = realloc(s->all, s->len + l + 2);
	assert_non_null(more);
	s->all = more;
	memcpy(s->all + s->len, msg, l);
	s->all[s->len + l] = '\n';
	s->len += l + 1;
	s->all[s->len] = '\0';
	s->n++;
}

static void seen_reset(struct seen *s)
{
	free(s->all);
	*s = (struct seen){0};
}

// Applies c to every replica at the same index and time, as the nodes of
// a cluster would.
static void apply_both(struct fx *f, Fspb__Command *c)
{
	static int64_t now = 1700000000000000000LL;
	now += 1000;
	c->time_ns = now;
	size_t len;
	uint8_t *buf = tl_pack(c, &len);
	for (int k = 0; k < REPLICAS; k++) {
		int res = -1;
		assert_int_equal(
		    sm_apply(f->sm[k], sm_applied_index(f->sm[k]) + 1, 0, 0, 0, buf, len, &res), 0);
		assert_int_equal(res, 0);
	}
	free(buf);
}

static void mkdir_both(struct fx *f, uint64_t parent, const char *name, uint64_t id)
{
	Fspb__Command c;
	Fspb__Mkdir m;
	tl_mkdir_cmd(&c, &m, parent, name, id, 0755);
	apply_both(f, &c);
}

// The same commands on every replica: a chain of DEPTH directories with a
// file (content and xattr) and a symlink at the bottom.
static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	for (int i = 0; i < DEPTH; i++) {
		memset(f->names[i], 'a' + i % 26, NAME_LEN);
		snprintf(f->names[i] + NAME_LEN - 4, 5, "%04d", i);
	}
	size_t rel_len = (size_t)DEPTH * (NAME_LEN + 1) + 8;
	f->leaf_rel = malloc(rel_len);
	assert_non_null(f->leaf_rel);
	f->leaf_rel[0] = '\0';
	for (int i = 0; i < DEPTH; i++) {
		strcat(f->leaf_rel, f->names[i]);
		strcat(f->leaf_rel, "/");
	}
	strcat(f->leaf_rel, "leaf");
	assert_true(strlen(f->leaf_rel) > PATH_MAX);
	for (int k = 0; k < REPLICAS; k++) {
		f->dir[k] = tl_mkdtemp();
		assert_int_equal(sm_open(f->dir[k], 1, &f->sm[k]), 0);
	}
	uint64_t parent = SM_ROOT_ID;
	for (int i = 0; i < DEPTH; i++) {
		mkdir_both(f, parent, f->names[i], DIR_ID(i));
		parent = DIR_ID(i);
	}
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	m.parent = parent;
	m.name = "leaf";
	m.ino = LEAF_ID;
	m.mode = S_IFREG | 0644;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	apply_both(f, &c);
	Fspb__Write w = FSPB__WRITE__INIT;
	w.ino = LEAF_ID;
	w.data.data = (uint8_t *)"deep content";
	w.data.len = 12;
	c.op_case = FSPB__COMMAND__OP_WRITE;
	c.write = &w;
	apply_both(f, &c);
	Fspb__SetXattr x = FSPB__SET_XATTR__INIT;
	x.ino = LEAF_ID;
	x.name = "user.k";
	x.value.data = (uint8_t *)"v";
	x.value.len = 1;
	c.op_case = FSPB__COMMAND__OP_SETXATTR;
	c.setxattr = &x;
	apply_both(f, &c);
	Fspb__Symlink l = FSPB__SYMLINK__INIT;
	l.parent = parent;
	l.name = "link";
	l.ino = LINK_ID;
	l.target = "leaf";
	c.op_case = FSPB__COMMAND__OP_SYMLINK;
	c.symlink = &l;
	apply_both(f, &c);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	for (int k = 0; k < REPLICAS; k++) {
		sm_close(f->sm[k]);
		tl_rmtree(f->dir[k]);
	}
	free(f->leaf_rel);
	free(f);
	return 0;
}

// The deepest directory of replica k's tree, opened by descriptors.
static int open_deepest(struct fx *f, int k)
{
	char top[PATH_MAX];
	snprintf(top, sizeof(top), "%s/tree", f->dir[k]);
	int fd = open(top, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	for (int i = 0; i < DEPTH; i++) {
		int next = openat(fd, f->names[i], O_RDONLY | O_DIRECTORY);
		assert_true(next >= 0);
		close(fd);
		fd = next;
	}
	return fd;
}

static void test_identical_deep_trees(void **state)
{
	struct fx *f = *state;
	struct seen s = {0};
	int rc = tree_compare(f->dir[0], f->dir[1], TREE_CMP_DATA, keep_diff, &s);
	if (rc)
		fprintf(stderr, "%s", s.all);
	assert_int_equal(rc, 0);
	seen_reset(&s);
}

// A changed byte at the bottom is found and named by its whole path.
static void test_content_difference_at_the_bottom(void **state)
{
	struct fx *f = *state;
	int dir = open_deepest(f, 1);
	int fd = openat(dir, "leaf", O_RDWR);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(pwrite(fd, "D", 1, 0), 1);
	// Only the content differs: put the replicated mtime back.
	struct timespec ts[2] = {st.st_atim, st.st_mtim};
	assert_int_equal(futimens(fd, ts), 0);
	close(fd);

	struct seen s = {0};
	char want[PATH_MAX * 2];
	snprintf(want, sizeof(want), "%s: content differs at or after byte 0\n", f->leaf_rel);
	assert_int_equal(tree_compare(f->dir[0], f->dir[1], TREE_CMP_DATA, keep_diff, &s), 1);
	assert_string_equal(s.all, want);
	seen_reset(&s);

	// An xattr on the deepest directory, and the symlink's target.
	assert_int_equal(fsetxattr(dir, "user.extra", "1", 1, 0), 0);
	assert_int_equal(unlinkat(dir, "link", 0), 0);
	assert_int_equal(symlinkat("leag", dir, "link"), 0);
	close(dir);
	int rc = tree_compare(f->dir[0], f->dir[1], TREE_CMP_DATA, keep_diff, &s);
	assert_true(rc >= 3);
	char *last = strrchr(f->leaf_rel, '/');
	*last = '\0'; // the deepest directory
	snprintf(want, sizeof(want), "%s: xattr names differ\n", f->leaf_rel);
	assert_non_null(strstr(s.all, want));
	snprintf(want, sizeof(want), "%s/link: symlink target differs\n", f->leaf_rel);
	assert_non_null(strstr(s.all, want));
	*last = '/';
	seen_reset(&s);
}

// Out of descriptors part way down: reported as differences and an error,
// never a clean result.
static void test_no_descriptors_is_a_difference(void **state)
{
	struct fx *f = *state;
	struct rlimit old, low;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	// Enough to start the walk, too few for DEPTH levels (two per level).
	int probe = open("/dev/null", O_RDONLY);
	assert_true(probe >= 0);
	close(probe);
	low = old;
	low.rlim_cur = (rlim_t)probe + 12;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	struct seen s = {0};
	int rc = tree_compare(f->dir[0], f->dir[1], TREE_CMP_DATA, keep_diff, &s);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_int_equal(rc, -EMFILE);
	assert_true(s.n >= 1);
	assert_non_null(strstr(s.all, strerror(EMFILE)));
	seen_reset(&s);
}

// The same walk for mounts (plain directories): a tree is identical to
// itself, and a deep tree compared with a shallow copy differs.
static void test_mount_kind_walks_deep(void **state)
{
	struct fx *f = *state;
	char top[PATH_MAX];
	snprintf(top, sizeof(top), "%s/tree", f->dir[0]);
	struct seen s = {0};
	assert_int_equal(tree_compare(top, top, TREE_CMP_MOUNT, keep_diff, &s), 0);
	assert_int_equal(s.n, 0);
	int dir = open_deepest(f, 0);
	assert_int_equal(mkdirat(dir, "only-here", 0700), 0);
	close(dir);
	snprintf(top, sizeof(top), "%s/tree", f->dir[1]);
	char other[PATH_MAX];
	snprintf(other, sizeof(other), "%s/tree", f->dir[0]);
	// Local inode numbers differ between the two replicas; the new
	// directory is the one name missing on one side.
	assert_true(tree_compare(other, top, TREE_CMP_MOUNT, keep_diff, &s) > 0);
	char want[PATH_MAX * 2];
	char *last = strrchr(f->leaf_rel, '/');
	*last = '\0';
	snprintf(want, sizeof(want), "%s/only-here: only in the first tree\n", f->leaf_rel);
	*last = '/';
	assert_non_null(strstr(s.all, want));
	seen_reset(&s);
}

// Every difference of one pair of tree_compare_each, one string after
// another, per other tree.
struct seen_each {
	struct seen pair[3];
};

static void keep_each(void *arg, int other, const char *msg)
{
	struct seen_each *e = arg;
	assert_true(other >= 1 && other <= 2);
	keep_diff(&e->pair[other], msg);
}

// tree_compare_each of three trees reports for each pair what tree_compare
// of that pair reports, in the same order, and their sum: the first tree
// read once must not change what is found. The third tree differs at the
// bottom (content, an xattr, a symlink target), the second by one extra
// directory, the first by a file only it has (a difference of both pairs).
static void test_each_reports_as_pairs(void **state)
{
	struct fx *f = *state;
	const char *third = f->dir[2];
	const char *roots[3] = {f->dir[0], f->dir[1], third};
	struct seen_each e = {0};
	assert_int_equal(tree_compare_each(roots, 3, TREE_CMP_DATA, keep_each, &e), 0);
	assert_int_equal(e.pair[1].n + e.pair[2].n, 0);
	assert_int_equal(tree_differ(roots, 3, TREE_CMP_DATA), 0);

	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/tree", third);
	int top = open(path, O_RDONLY | O_DIRECTORY);
	assert_true(top >= 0);
	int dir = top;
	for (int i = 0; i < DEPTH; i++) {
		int next = openat(dir, f->names[i], O_RDONLY | O_DIRECTORY);
		assert_true(next >= 0);
		if (dir != top)
			close(dir);
		dir = next;
	}
	close(top);
	int fd = openat(dir, "leaf", O_RDWR);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(pwrite(fd, "D", 1, 3), 1);
	struct timespec ts[2] = {st.st_atim, st.st_mtim};
	assert_int_equal(futimens(fd, ts), 0);
	close(fd);
	assert_int_equal(fsetxattr(dir, "user.extra", "1", 1, 0), 0);
	assert_int_equal(unlinkat(dir, "link", 0), 0);
	assert_int_equal(symlinkat("leag", dir, "link"), 0);
	close(dir);
	dir = open_deepest(f, 1);
	assert_int_equal(mkdirat(dir, "only-in-second", 0700), 0);
	close(dir);
	dir = open_deepest(f, 0);
	fd = openat(dir, "only-in-first", O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	close(dir);

	int rc = tree_compare_each(roots, 3, TREE_CMP_DATA, keep_each, &e);
	// tree_differ stops at the first of them; the first two trees alone
	// differ too, the first with itself not.
	assert_int_equal(tree_differ(roots, 3, TREE_CMP_DATA), 1);
	assert_int_equal(tree_differ(roots, 2, TREE_CMP_DATA), 1);
	const char *same[2] = {f->dir[0], f->dir[0]};
	assert_int_equal(tree_differ(same, 2, TREE_CMP_DATA), 0);
	struct seen one[3] = {{0}};
	int rc1 = tree_compare(f->dir[0], f->dir[1], TREE_CMP_DATA, keep_diff, &one[1]);
	int rc2 = tree_compare(f->dir[0], third, TREE_CMP_DATA, keep_diff, &one[2]);
	assert_true(rc1 >= 2); // the extra directory, the deepest one's nlink
	assert_true(rc2 >= 4); // the first's file, content, xattr names, target
	assert_int_equal(rc, rc1 + rc2);
	for (int k = 1; k <= 2; k++) {
		assert_int_equal(e.pair[k].n, one[k].n);
		assert_string_equal(e.pair[k].all, one[k].all);
		seen_reset(&e.pair[k]);
		seen_reset(&one[k]);
	}

	// As mounts (plain directories, st_ino and all xattrs): the same.
	char t[3][PATH_MAX];
	const char *trees[3] = {t[0], t[1], t[2]};
	for (int k = 0; k < 3; k++)
		snprintf(t[k], sizeof(t[k]), "%s/tree", roots[k]);
	rc = tree_compare_each(trees, 3, TREE_CMP_MOUNT, keep_each, &e);
	rc1 = tree_compare(t[0], t[1], TREE_CMP_MOUNT, keep_diff, &one[1]);
	rc2 = tree_compare(t[0], t[2], TREE_CMP_MOUNT, keep_diff, &one[2]);
	assert_true(rc1 > 0 && rc2 > 0);
	assert_int_equal(rc, rc1 + rc2);
	for (int k = 1; k <= 2; k++) {
		assert_string_equal(e.pair[k].all, one[k].all);
		seen_reset(&e.pair[k]);
		seen_reset(&one[k]);
	}
}

// tree_compare_each against fixed expected lines, not against tree_compare
// (which is the same walk with two trees): the second tree differs at the
// top (its first directory renamed, so that pair is not compared below
// it), the third only at the bottom (the leaf's content). The walk must
// still go below for the third tree, and each pair gets its own lines.
static void test_each_expected_lines(void **state)
{
	struct fx *f = *state;
	const char *roots[3] = {f->dir[0], f->dir[1], f->dir[2]};
	char from[PATH_MAX], to[PATH_MAX];
	snprintf(from, sizeof(from), "%s/tree/%s", f->dir[1], f->names[0]);
	snprintf(to, sizeof(to), "%s/tree/moved", f->dir[1]);
	char top[PATH_MAX];
	snprintf(top, sizeof(top), "%s/tree", f->dir[1]);
	struct stat root;
	assert_int_equal(stat(top, &root), 0);
	assert_int_equal(rename(from, to), 0);
	// The root's mtime as the commands left it: the rename alone differs.
	struct timespec root_ts[2] = {root.st_atim, root.st_mtim};
	assert_int_equal(utimensat(AT_FDCWD, top, root_ts, 0), 0);
	int dir = open_deepest(f, 2);
	int fd = openat(dir, "leaf", O_RDWR);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(pwrite(fd, "D", 1, 3), 1); // same size, same times
	struct timespec ts[2] = {st.st_atim, st.st_mtim};
	assert_int_equal(futimens(fd, ts), 0);
	close(fd);
	close(dir);

	struct seen_each e = {0};
	assert_int_equal(tree_compare_each(roots, 3, TREE_CMP_DATA, keep_each, &e), 3);
	char want1[2 * NAME_LEN], *want2 = malloc(strlen(f->leaf_rel) + 64);
	assert_non_null(want2);
	snprintf(want1, sizeof(want1), "%s: only in the first tree\nmoved: only in the second tree\n",
		 f->names[0]);
	// "at or after": the first differing block read, from byte 0 here.
	sprintf(want2, "%s: content differs at or after byte 0\n", f->leaf_rel);
	assert_string_equal(e.pair[1].all, want1);
	assert_string_equal(e.pair[2].all, want2);
	free(want2);
	seen_reset(&e.pair[1]);
	seen_reset(&e.pair[2]);
}

// A first tree that cannot be read is a difference of every pair.
static void test_each_unreadable_first(void **state)
{
	struct fx *f = *state;
	const char *roots[3] = {"/nonexistent/raftfs-tree", f->dir[0], f->dir[1]};
	struct seen_each e = {0};
	assert_int_equal(tree_compare_each(roots, 3, TREE_CMP_MOUNT, keep_each, &e), -ENOENT);
	assert_int_equal(e.pair[1].n, 1);
	assert_int_equal(e.pair[2].n, 1);
	assert_non_null(strstr(e.pair[2].all, "cannot open it in the first tree"));
	seen_reset(&e.pair[1]);
	seen_reset(&e.pair[2]);
}

// A directory's delegation is replicated state in our own xattr: the same
// on every node at one index, and a node whose holder or epoch differs is
// a difference (as data trees; a mount shows none of our xattrs).
static void test_deleg_difference(void **state)
{
	struct fx *f = *state;
	const char *roots[2] = {f->dir[0], f->dir[1]};
	Fspb__Command c;
	Fspb__Mkdir m;
	struct seen one = {0};
	char path[PATH_MAX];
	uint8_t deleg[13];
	ssize_t n;

	tl_mkdir_cmd(&c, &m, SM_ROOT_ID, "held", (1ULL << 48) | 9, 0755);
	m.grant = true;
	c.node = 2;
	apply_both(f, &c);
	assert_int_equal(tree_differ(roots, 2, TREE_CMP_DATA), 0);
	snprintf(path, sizeof(path), "%s/tree/held", f->dir[1]);
	n = lgetxattr(path, "trusted.raftfs.deleg", deleg, sizeof(deleg));
	assert_true(n >= 12);
	deleg[4] ^= 1; // another epoch
	assert_int_equal(lsetxattr(path, "trusted.raftfs.deleg", deleg, (size_t)n, 0), 0);
	assert_int_equal(tree_compare(f->dir[0], f->dir[1], TREE_CMP_DATA, keep_diff, &one), 1);
	assert_non_null(strstr(one.all, "held: delegation differs"));
	seen_reset(&one);
	assert_int_equal(lremovexattr(path, "trusted.raftfs.deleg"), 0);
	assert_int_equal(tree_differ(roots, 2, TREE_CMP_DATA), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_identical_deep_trees, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_content_difference_at_the_bottom, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_descriptors_is_a_difference, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mount_kind_walks_deep, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_each_reports_as_pairs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_each_expected_lines, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_each_unreadable_first, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deleg_difference, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
