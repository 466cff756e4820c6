// Snapshot images made while apply changes metadata: every kind of change applied after
// sm_snapshot_begin, before the walk reaches what it changes, leaves the image exactly the
// tree at the begin index (compared with a state machine that stopped there).
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"
#include "sm_snapshot.h"
#include "tree_compare.h"

#define ID(n) ((1ULL << 48) | (n))
// The base tree (make_base): names and ids.
#define D1 ID(1)
#define D2 ID(2)
#define D3 ID(3)
#define SUB ID(4)
#define EMPTY ID(5)
#define F1 ID(10) // d1/f1 and d2/f1link
#define F2 ID(11) // d1/f2, mode 04755
#define S1 ID(12) // d1/s1 -> f1
#define G1 ID(13) // d1/sub/g1
#define P1 ID(14) // d2/p1, a FIFO
#define H1 ID(15) // d2/h1
#define K1 ID(16) // d3/k1 (d3 is delegated to node 2)
#define O1 ID(17) // an orphan
#define O2 ID(18) // an orphan node 1 released (voters 1..3)
#define NEW(n) ID(100 + (n))

static const uint64_t all_dirs[] = {SM_ROOT_ID, D1, D2, D3, SUB, EMPTY};
static const uint32_t voters[3] = {1, 2, 3};

// A: applies everything and makes the image; R: the reference, stopped at
// the begin index; C: where the image is installed.
struct fx {
	char *a, *r, *c, *img_dir;
	char img[4096];
	struct sm *sa, *sr, *sc;
	int64_t t; // the commands' clock: the same bytes go to A and R
	struct tl_seq seq;
};

static void print_diff(void *arg, const char *msg)
{
	int *n = arg;

	if ((*n)++ < 10)
		fprintf(stderr, "  diff: %s\n", msg);
}

static int differences(const char *a, const char *b)
{
	int shown = 0;

	return tree_compare(a, b, TREE_CMP_DATA, print_diff, &shown);
}

// Applies c to sm at its next index with the next time; the result.
static int apply_to(struct fx *f, struct sm *sm, Fspb__Command *c)
{
	size_t len;
	uint8_t *buf;
	int result = -1;

	c->time_ns = f->t;
	buf = tl_pack(c, &len);
	assert_int_equal(sm_apply(sm, sm_applied_index(sm) + 1, 0, 0, 0, buf, len, &result), 0);
	free(buf);
	return result;
}

// A change after the begin index: A only.
static void change(struct fx *f, Fspb__Command *c)
{
	f->t += 1000;
	assert_int_equal(apply_to(f, f->sa, c), 0);
}

// A command of the base tree: A and R alike.
static void both(struct fx *f, Fspb__Command *c)
{
	f->t += 1000;
	assert_int_equal(apply_to(f, f->sa, c), 0);
	assert_int_equal(apply_to(f, f->sr, c), 0);
}

// ---- one-line command builders; each goes to `to` (change or both) ----

typedef void (*apply_fn)(struct fx *f, Fspb__Command *c);

static void mknod_(apply_fn to, struct fx *f, uint64_t parent, const char *name, uint64_t ino,
		   uint32_t mode, uint32_t node)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;

	m.parent = parent, m.name = (char *)name, m.ino = ino, m.mode = mode;
	m.rdev = makedev(1, 3);
	c.op_case = FSPB__COMMAND__OP_MKNOD, c.mknod = &m, c.node = node;
	to(f, &c);
}

static void mkdir_(apply_fn to, struct fx *f, uint64_t parent, const char *name, uint64_t ino,
		   uint32_t node, bool grant)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mkdir m = FSPB__MKDIR__INIT;

	m.parent = parent, m.name = (char *)name, m.ino = ino, m.mode = 0755, m.grant = grant;
	c.op_case = FSPB__COMMAND__OP_MKDIR, c.mkdir = &m, c.node = node;
	to(f, &c);
}

static void symlink_(apply_fn to, struct fx *f, uint64_t parent, const char *name, uint64_t ino,
		     const char *target)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Symlink s = FSPB__SYMLINK__INIT;

	s.parent = parent, s.name = (char *)name, s.ino = ino, s.target = (char *)target;
	c.op_case = FSPB__COMMAND__OP_SYMLINK, c.symlink = &s;
	to(f, &c);
}

static void link_(apply_fn to, struct fx *f, uint64_t ino, uint64_t parent, const char *name)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Link l = FSPB__LINK__INIT;

	l.ino = ino, l.new_parent = parent, l.new_name = (char *)name;
	c.op_case = FSPB__COMMAND__OP_LINK, c.link = &l;
	to(f, &c);
}

static void unlink_(apply_fn to, struct fx *f, uint64_t parent, const char *name, bool dir)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Unlink u = FSPB__UNLINK__INIT;

	u.parent = parent, u.name = (char *)name, u.dir = dir;
	c.op_case = FSPB__COMMAND__OP_UNLINK, c.unlink = &u;
	to(f, &c);
}

static void rename_(apply_fn to, struct fx *f, uint64_t p, const char *n, uint64_t np,
		    const char *nn, uint32_t flags)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Rename r = FSPB__RENAME__INIT;

	r.parent = p, r.name = (char *)n, r.new_parent = np, r.new_name = (char *)nn;
	r.flags = flags;
	c.op_case = FSPB__COMMAND__OP_RENAME, c.rename = &r;
	to(f, &c);
}

static void write_(apply_fn to, struct fx *f, uint64_t ino, uint64_t off, size_t len,
		   uint32_t uid)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Write w = FSPB__WRITE__INIT;
	uint8_t *data = malloc(len);

	assert_non_null(data);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(ino * 13 + off + i * 7);
	w.ino = ino, w.offset = off, w.data.data = data, w.data.len = len;
	c.op_case = FSPB__COMMAND__OP_WRITE, c.write = &w, c.uid = uid;
	to(f, &c);
	free(data);
}

static void setattr_(apply_fn to, struct fx *f, uint64_t ino, uint32_t valid, uint32_t mode,
		     uint32_t uid, uint64_t size)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__SetAttr s = FSPB__SET_ATTR__INIT;

	s.ino = ino, s.valid = valid, s.mode = mode, s.uid = uid, s.gid = uid, s.size = size;
	s.atime_ns = s.mtime_ns = 1500000000123456789LL + (int64_t)ino % 1000;
	c.op_case = FSPB__COMMAND__OP_SETATTR, c.setattr = &s;
	to(f, &c);
}

static void setxattr_(apply_fn to, struct fx *f, uint64_t ino, const char *name, const char *v)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__SetXattr x = FSPB__SET_XATTR__INIT;

	x.ino = ino, x.name = (char *)name;
	x.value.data = (uint8_t *)v, x.value.len = strlen(v);
	c.op_case = FSPB__COMMAND__OP_SETXATTR, c.setxattr = &x;
	to(f, &c);
}

static void removexattr_(apply_fn to, struct fx *f, uint64_t ino, const char *name)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__RemoveXattr x = FSPB__REMOVE_XATTR__INIT;

	x.ino = ino, x.name = (char *)name;
	c.op_case = FSPB__COMMAND__OP_REMOVEXATTR, c.removexattr = &x;
	to(f, &c);
}

static void fallocate_(apply_fn to, struct fx *f, uint64_t ino, int mode, uint64_t off,
		       uint64_t len)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Fallocate a = FSPB__FALLOCATE__INIT;

	a.ino = ino, a.mode = mode, a.offset = off, a.length = len;
	c.op_case = FSPB__COMMAND__OP_FALLOCATE, c.fallocate = &a;
	to(f, &c);
}

// node 0: the orphan goes at once; else node joins its released set.
static void release_(apply_fn to, struct fx *f, uint64_t ino, uint32_t node)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Release r = FSPB__RELEASE__INIT;

	r.ino = ino, r.node = node;
	if (node)
		r.voters = (uint32_t *)voters, r.n_voters = 3;
	c.op_case = FSPB__COMMAND__OP_RELEASE, c.release = &r;
	to(f, &c);
}

static void deleg_(apply_fn to, struct fx *f, uint64_t dir, int op, uint32_t node)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Deleg g = FSPB__DELEG__INIT;
	uint32_t holder;
	uint64_t epoch;

	assert_int_equal(sm_deleg(f->sa, dir, &holder, &epoch), 0);
	g.dir = dir, g.op = op, g.epoch = epoch;
	c.op_case = FSPB__COMMAND__OP_DELEG, c.deleg = &g, c.node = node;
	to(f, &c);
}

// The base tree (names at the top), on A and R.
static void make_base(struct fx *f)
{
	mkdir_(both, f, SM_ROOT_ID, "d1", D1, 0, false);
	mkdir_(both, f, SM_ROOT_ID, "d2", D2, 0, false);
	mkdir_(both, f, SM_ROOT_ID, "d3", D3, 2, true);
	mkdir_(both, f, D1, "sub", SUB, 0, false);
	mkdir_(both, f, D1, "empty", EMPTY, 0, false);
	mknod_(both, f, D1, "f1", F1, S_IFREG | 0644, 0);
	write_(both, f, F1, 0, 5000, 0);
	setxattr_(both, f, F1, "user.x", "one");
	mknod_(both, f, D1, "f2", F2, S_IFREG | 04755, 0);
	write_(both, f, F2, 0, 10, 0);
	symlink_(both, f, D1, "s1", S1, "f1");
	mknod_(both, f, SUB, "g1", G1, S_IFREG | 0600, 0);
	write_(both, f, G1, 100, 300, 0);
	setxattr_(both, f, D2, "user.d", "dir");
	link_(both, f, F1, D2, "f1link");
	mknod_(both, f, D2, "p1", P1, S_IFIFO | 0644, 0);
	mknod_(both, f, D2, "h1", H1, S_IFREG | 0644, 0);
	write_(both, f, H1, 0, 70000, 0);
	mknod_(both, f, D3, "k1", K1, S_IFREG | 0644, 2);
	mknod_(both, f, SM_ROOT_ID, "o1", O1, S_IFREG | 0644, 0);
	write_(both, f, O1, 0, 1234, 0);
	unlink_(both, f, SM_ROOT_ID, "o1", false);
	mknod_(both, f, SM_ROOT_ID, "o2", O2, S_IFREG | 0644, 0);
	write_(both, f, O2, 4096, 4096, 0);
	unlink_(both, f, SM_ROOT_ID, "o2", false);
	release_(both, f, O2, 1);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->a = tl_mkdtemp();
	f->r = tl_mkdtemp();
	f->c = tl_mkdtemp();
	f->img_dir = tl_mkdtemp();
	f->t = 1700000000000000000LL;
	snprintf(f->img, sizeof(f->img), "%s/image", f->img_dir);
	if (sm_open(f->a, 1, &f->sa) || sm_open(f->r, 1, &f->sr) || sm_open(f->c, 3, &f->sc))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	sm_close(f->sa);
	sm_close(f->sr);
	sm_close(f->sc);
	tl_rmtree(f->a);
	tl_rmtree(f->r);
	tl_rmtree(f->c);
	tl_rmtree(f->img_dir);
	tl_gen_free(&f->seq);
	free(f);
	return 0;
}

static int install_image(struct fx *f)
{
	int fd = open(f->img, O_RDONLY | O_CLOEXEC), rc;

	assert_true(fd >= 0);
	rc = sm_snapshot_install(f->sc, sm_snap_fd_source, &fd);
	close(fd);
	return rc;
}

// C (the installed image) is R: the same tree and orphans, the same
// delegations of the directories named, the same index.
static void expect_image_is_reference(struct fx *f, const uint64_t *dirs, size_t n)
{
	assert_int_equal(install_image(f), 0);
	assert_int_equal(sm_applied_index(f->sc), sm_applied_index(f->sr));
	assert_int_equal(differences(f->r, f->c), 0);
	for (size_t i = 0; i < n; i++) {
		uint32_t hr = 0, hc = 0;
		uint64_t er = 0, ec = 0;
		int rr = sm_deleg(f->sr, dirs[i], &hr, &er);

		assert_int_equal(sm_deleg(f->sc, dirs[i], &hc, &ec), rr);
		assert_int_equal(hc, hr);
		assert_true(ec == er);
	}
}

static void no_print(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

// Whether A is no longer R (the changes happened): its tree, or the
// delegation of a directory (not in tree_compare).
static bool a_differs(struct fx *f)
{
	if (tree_compare(f->r, f->a, TREE_CMP_DATA, no_print, NULL) > 0)
		return true;
	for (size_t i = 0; i < sizeof(all_dirs) / sizeof(all_dirs[0]); i++) {
		uint32_t ha = 0, hr = 0;
		uint64_t ea = 0, er = 0;

		sm_deleg(f->sa, all_dirs[i], &ha, &ea);
		sm_deleg(f->sr, all_dirs[i], &hr, &er);
		if (ha != hr || ea != er)
			return true;
	}
	return false;
}

// Begins an image of A, makes the changes (before the walk has read
// anything: it runs in sm_snapshot_stream), then streams it; A differs
// from R afterwards (the changes happened), the image does not.
static void image_across(struct fx *f, void (*changes)(struct fx *f))
{
	struct sm_snap_job *job;
	uint64_t index;
	int fd;

	assert_int_equal(sm_snapshot_begin(f->sa, &job, &index), 0);
	assert_int_equal(index, sm_applied_index(f->sr));
	changes(f);
	fd = open(f->img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(sm_snapshot_stream(job, sm_snap_fd_sink, &fd), 0);
	close(fd);
	sm_snapshot_end(job);
	assert_true(sm_applied_index(f->sa) > index);
	assert_true(a_differs(f));
	expect_image_is_reference(f, all_dirs, sizeof(all_dirs) / sizeof(all_dirs[0]));
}

// ---- the kinds of change ----

static void chmod_chown_utimens(struct fx *f)
{
	setattr_(change, f, F2, SM_SET_MODE, 0700, 0, 0);
	setattr_(change, f, F1, SM_SET_UID | SM_SET_GID, 0, 5, 0);
	setattr_(change, f, D1, SM_SET_MTIME | SM_SET_ATIME, 0, 0, 0);
	setattr_(change, f, S1, SM_SET_MTIME, 0, 0, 0);
	setattr_(change, f, D2, SM_SET_MODE | SM_SET_UID, 0700, 9, 0);
	setattr_(change, f, SM_ROOT_ID, SM_SET_MODE, 0711, 0, 0);
	setattr_(change, f, P1, SM_SET_MTIME_NOW, 0, 0, 0);
}

static void sizes_and_times(struct fx *f)
{
	write_(change, f, F1, 4000, 3000, 0);	      // extends it
	setattr_(change, f, H1, SM_SET_SIZE, 0, 0, 0); // truncate
	fallocate_(change, f, G1, 0, 0, 9000);	      // extends it
	write_(change, f, F2, 2, 3, 1000);	      // clears set-user-ID
	fallocate_(change, f, O1, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 512);
}

static void xattrs(struct fx *f)
{
	setxattr_(change, f, F1, "user.x", "two, longer");
	setxattr_(change, f, SUB, "user.new", "v");
	removexattr_(change, f, D2, "user.d");
	setxattr_(change, f, O1, "user.o", "orphan's");
	setxattr_(change, f, SM_ROOT_ID, "trusted.t", "root's");
}

static void links(struct fx *f)
{
	link_(change, f, F2, SUB, "f2b");
	link_(change, f, H1, SM_ROOT_ID, "h1b");
	link_(change, f, F1, D1, "f1c");
}

static void unlinks(struct fx *f)
{
	unlink_(change, f, D2, "f1link", false); // f1 keeps a name
	unlink_(change, f, D1, "f2", false);	 // f2 becomes an orphan
	unlink_(change, f, D1, "empty", true);	 // rmdir
	unlink_(change, f, SUB, "g1", false);
	unlink_(change, f, D1, "sub", true); // a whole subtree gone
}

static void renames(struct fx *f)
{
	rename_(change, f, D1, "f1", D2, "f1new", 0);	      // across directories
	rename_(change, f, D1, "sub", D2, "sub2", 0);	      // a directory moves
	rename_(change, f, D2, "h1", D2, "p1", 0);	      // over another file
	rename_(change, f, D1, "s1", D1, "s1b", 0);	      // within one directory
	rename_(change, f, SM_ROOT_ID, "d1", SM_ROOT_ID, "d2", RENAME_EXCHANGE);
	rename_(change, f, SM_ROOT_ID, "d2", D2, "d1moved", 0); // into the other
	rename_(change, f, D1, "empty", SM_ROOT_ID, "e2", 0);	// out of the moved one
}

static void creates(struct fx *f)
{
	mknod_(change, f, D1, "new1", NEW(1), S_IFREG | 0644, 0);
	write_(change, f, NEW(1), 0, 100, 0);
	mkdir_(change, f, SUB, "newdir", NEW(2), 0, false);
	symlink_(change, f, D2, "newlink", NEW(3), "/x");
	mknod_(change, f, NEW(2), "deep", NEW(4), S_IFSOCK | 0600, 0);
	mkdir_(change, f, SM_ROOT_ID, "granted", NEW(5), 1, true);
	link_(change, f, NEW(1), EMPTY, "again");
	rename_(change, f, D1, "new1", D2, "moved", 0);
	mknod_(change, f, D3, "k2", NEW(6), S_IFREG | 0644, 2);
	mknod_(change, f, D2, "gone", NEW(7), S_IFREG | 0644, 0);
	unlink_(change, f, D2, "gone", false);
	release_(change, f, NEW(7), 0);
}

static void releases(struct fx *f)
{
	release_(change, f, O1, 0); // dropped at once
	release_(change, f, O2, 2); // joins the set
	release_(change, f, O2, 3); // the last voter: dropped
	unlink_(change, f, D1, "f2", false);
	release_(change, f, F2, 2); // a new orphan, released by one node
}

static void delegations(struct fx *f)
{
	deleg_(change, f, D3, FSPB__DELEG__OP__RETURN, 2);
	deleg_(change, f, D1, FSPB__DELEG__OP__GRANT, 3);
	deleg_(change, f, D2, FSPB__DELEG__OP__GRANT, 1);
	deleg_(change, f, D2, FSPB__DELEG__OP__REVOKE, 2);
}

// All kinds in one image (unlinks and the release of f2 have tests of
// their own: here f2 keeps the name links() gives it).
static void everything(struct fx *f)
{
	chmod_chown_utimens(f);
	xattrs(f);
	sizes_and_times(f);
	creates(f);
	links(f);
	renames(f);
	release_(change, f, O1, 0);
	release_(change, f, O2, 2);
	release_(change, f, O2, 3);
	delegations(f);
}

#define KIND_TEST(fn)                                                                              \
	static void test_##fn(void **state)                                                        \
	{                                                                                          \
		struct fx *f = *state;                                                             \
		make_base(f);                                                                      \
		image_across(f, fn);                                                               \
	}

KIND_TEST(chmod_chown_utimens)
KIND_TEST(sizes_and_times)
KIND_TEST(xattrs)
KIND_TEST(links)
KIND_TEST(unlinks)
KIND_TEST(renames)
KIND_TEST(creates)
KIND_TEST(releases)
KIND_TEST(delegations)
KIND_TEST(everything)

// The first command stamps a fresh root's birth time (sm.c): an image
// begun before it has the unstamped root.
static void first_command(struct fx *f)
{
	mkdir_(change, f, SM_ROOT_ID, "first", NEW(1), 0, false);
}

static void test_root_stamped_after_begin(void **state)
{
	image_across(*state, first_command);
}

// A directory with more subdirectories than the walk's first queue holds
// (256): the queue moves while the directory is being read, and every
// entry after that must still name it as parent (a read through the moved
// queue gave them garbage parents: ASan's heap-use-after-free).
static void test_wide_directory(void **state)
{
	struct fx *f = *state;
	struct sm_snap_job *job;
	uint64_t index;
	char name[32];
	int fd;

	make_base(f);
	for (int i = 0; i < 600; i++) {
		snprintf(name, sizeof(name), "w%03d", i);
		mkdir_(both, f, D2, name, NEW(1000 + i), 0, false);
		snprintf(name, sizeof(name), "x%03d", i);
		mknod_(both, f, D2, name, NEW(2000 + i), S_IFREG | 0644, 0);
	}
	assert_int_equal(sm_snapshot_begin(f->sa, &job, &index), 0);
	fd = open(f->img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(sm_snapshot_stream(job, sm_snap_fd_sink, &fd), 0);
	close(fd);
	sm_snapshot_end(job);
	expect_image_is_reference(f, all_dirs, sizeof(all_dirs) / sizeof(all_dirs[0]));
}

// ---- a random mix, the walk interleaved with apply ----

#define MIX_FIRST 3000
#define MIX_MORE 1500
// Files of 256 KiB among the generated ones, spread over DATA/ids: the
// walk writes a piece of the image (and waits for a token) at each.
#define MIX_BIG 24
#define MIX_BIG_ID(k) ((2ULL << 48) | ((uint64_t)(k)*11 + 3))

// The stream's sink: each piece waits for a token the applying thread
// hands out, so applies and pieces of the walk interleave.
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int tokens;
	bool done;
	int pieces;
	int fd;
};

static int gated_sink(void *arg, const void *buf, size_t len)
{
	struct gate *g = arg;

	pthread_mutex_lock(&g->mu);
	while (g->tokens == 0)
		pthread_cond_wait(&g->cv, &g->mu);
	g->tokens--;
	g->pieces++;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
	return sm_snap_fd_sink(&g->fd, buf, len);
}

struct streamer {
	struct sm_snap_job *job;
	struct gate *g;
	int rc;
};

static void *stream_main(void *arg)
{
	struct streamer *s = arg;

	s->rc = sm_snapshot_stream(s->job, gated_sink, s->g);
	pthread_mutex_lock(&s->g->mu);
	s->g->done = true;
	pthread_cond_broadcast(&s->g->cv);
	pthread_mutex_unlock(&s->g->mu);
	return NULL;
}

// Lets the stream write one more piece; whether it has ended.
static bool step_stream(struct gate *g)
{
	bool done;

	pthread_mutex_lock(&g->mu);
	int want = g->pieces + 1;

	g->tokens++;
	pthread_cond_broadcast(&g->cv);
	while (!g->done && g->pieces < want)
		pthread_cond_wait(&g->cv, &g->mu);
	done = g->done;
	pthread_mutex_unlock(&g->mu);
	return done;
}

static void apply_seq(struct sm *sm, const struct tl_seq *s, size_t from, size_t to, int *res)
{
	for (size_t i = from; i < to; i++) {
		int r;

		assert_int_equal(sm_apply(sm, sm_applied_index(sm) + 1, s->client[i], s->seq[i],
					  s->min_pending[i], s->cmd[i], s->len[i], &r),
				 0);
		if (res)
			res[i] = r;
	}
}

// Generated commands (every op, names colliding, retries) from a seed:
// the image begun at MIX_FIRST while a thread walks it and A applies
// MIX_MORE more between its pieces (the first batch before the walk read
// anything) equals R at MIX_FIRST; C and R then apply the same future with
// the same results (the duplicate table came along).
static void test_random_mix_interleaved(void **state)
{
	struct fx *f = *state;
	const char *e = getenv("RAFTFS_TEST_SEED");
	uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
	struct gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	struct streamer st = {.g = &g};
	size_t next = MIX_FIRST, batch = 50;
	int *rr = calloc(MIX_FIRST + 2 * MIX_MORE, sizeof(int));
	int *rc = calloc(MIX_FIRST + 2 * MIX_MORE, sizeof(int));
	pthread_t th;
	uint64_t index;
	int steps = 0;

	fprintf(stderr, "  seed %llu (RAFTFS_TEST_SEED=%llu repeats it)\n",
		(unsigned long long)seed, (unsigned long long)seed);
	tl_gen(&f->seq, seed, MIX_FIRST + 2 * MIX_MORE);
	for (int k = 0; k < MIX_BIG; k++) {
		char name[16];

		snprintf(name, sizeof(name), "big%d", k);
		mknod_(both, f, SM_ROOT_ID, name, MIX_BIG_ID(k), S_IFREG | 0644, 0);
		write_(both, f, MIX_BIG_ID(k), 0, 256u << 10, 0);
	}
	apply_seq(f->sa, &f->seq, 0, MIX_FIRST, NULL);
	apply_seq(f->sr, &f->seq, 0, MIX_FIRST, rr);
	g.fd = open(f->img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(g.fd >= 0);
	assert_int_equal(sm_snapshot_begin(f->sa, &st.job, &index), 0);
	assert_int_equal(index, MIX_FIRST + 2 * MIX_BIG);
	// A batch before the walk reads anything, then one per piece.
	apply_seq(f->sa, &f->seq, next, next + batch, NULL);
	next += batch;
	assert_int_equal(pthread_create(&th, NULL, stream_main, &st), 0);
	for (bool done = false; !done; steps++) {
		if (next < MIX_FIRST + MIX_MORE) {
			apply_seq(f->sa, &f->seq, next, next + batch, NULL);
			next += batch;
		}
		done = step_stream(&g);
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(st.rc, 0);
	close(g.fd);
	sm_snapshot_end(st.job);
	fprintf(stderr, "  image in %d pieces, %zu commands applied meanwhile\n", g.pieces,
		next - MIX_FIRST);
	assert_true(g.pieces >= MIX_BIG); // the walk was interleaved with apply
	assert_true(next > MIX_FIRST);
	expect_image_is_reference(f, NULL, 0);
	// The same future on R and C.
	apply_seq(f->sr, &f->seq, MIX_FIRST + MIX_MORE, MIX_FIRST + 2 * MIX_MORE, rr);
	apply_seq(f->sc, &f->seq, MIX_FIRST + MIX_MORE, MIX_FIRST + 2 * MIX_MORE, rc);
	for (size_t i = MIX_FIRST + MIX_MORE; i < MIX_FIRST + 2 * MIX_MORE; i++)
		assert_int_equal(rr[i], rc[i]);
	assert_int_equal(differences(f->r, f->c), 0);
	free(rr);
	free(rc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_chmod_chown_utimens, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sizes_and_times, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_xattrs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_links, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unlinks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_renames, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_creates, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_releases, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delegations, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_everything, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_root_stamped_after_begin, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wide_directory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_random_mix_interleaved, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
