// Each state machine op and its errors, on a fresh tree, with no Raft and no FUSE.
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"

struct fx {
	char *dir;
	struct sm *sm;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->dir = tl_mkdtemp();
	if (sm_open(f->dir, 1, &f->sm))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	sm_close(f->sm);
	tl_rmtree(f->dir);
	free(f);
	return 0;
}

static int64_t mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static int64_t ctime_ns(const struct stat *st)
{
	return (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

#define F1 ((1ULL << 48) | 1)
#define F2 ((1ULL << 48) | 2)
#define F3 ((1ULL << 48) | 3)
#define D1 ((1ULL << 48) | 11)
#define D2 ((1ULL << 48) | 12)
#define D3 ((1ULL << 48) | 13)

static void test_fresh_root_and_ids(void **state)
{
	struct fx *f = *state;
	struct stat st;
	assert_int_equal(sm_getattr(f->sm, SM_ROOT_ID, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_ino, SM_ROOT_ID);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(mtime_ns(&st), 0);
	assert_int_equal(ctime_ns(&st), 0);
	assert_int_equal(sm_applied_index(f->sm), 0);

	uint64_t a, b;
	assert_int_equal(sm_alloc_id(f->sm, &a), 0);
	assert_int_equal(sm_alloc_id(f->sm, &b), 0);
	assert_int_equal(a >> 48, 1);
	assert_true(b > a);
	// A restart never hands out an id again.
	sm_close(f->sm);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	uint64_t c;
	assert_int_equal(sm_alloc_id(f->sm, &c), 0);
	assert_true(c > b);
	assert_int_equal(sm_open(f->dir, 0, &(struct sm *){NULL}), -EINVAL);
}

static void test_mknod(void **state)
{
	struct fx *f = *state;
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	m.parent = SM_ROOT_ID;
	m.name = "f";
	m.ino = F1;
	m.mode = S_IFREG | 0640;
	c.uid = 1000;
	c.gid = 100;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	assert_int_equal(tl_apply(f->sm, &c), 0);
	int64_t t = tl_last_time();
	struct stat st;
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "f", &st), 0);
	assert_int_equal(st.st_ino, F1);
	assert_int_equal(st.st_mode, S_IFREG | 0640);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_gid, 100);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(mtime_ns(&st), t);
	assert_int_equal(ctime_ns(&st), t);
	assert_int_equal(sm_getattr(f->sm, SM_ROOT_ID, &st), 0);
	assert_int_equal(mtime_ns(&st), t);
	assert_int_equal(ctime_ns(&st), t);

	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "f", F2, S_IFREG | 0644), EEXIST);
	assert_int_equal(tl_mknod(f->sm, D1, "g", F2, S_IFREG | 0644), ENOENT);
	assert_int_equal(tl_mknod(f->sm, F1, "g", F2, S_IFREG | 0644), ENOTDIR);
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, ".", F2, S_IFREG | 0644), EINVAL);
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "a/b", F2, S_IFREG | 0644), EINVAL);
	char longname[300];
	memset(longname, 'x', 299);
	longname[299] = 0;
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, longname, F2, S_IFREG | 0644), ENAMETOOLONG);
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "g", F1, S_IFREG | 0644), EINVAL);
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "g", F2, S_IFDIR | 0644), EINVAL);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "g", &st), -ENOENT);

	// FIFO, socket and a character device.
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "fifo", F2, S_IFIFO | 0600), 0);
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "sock", F3, S_IFSOCK | 0600), 0);
	Fspb__Mknod d = FSPB__MKNOD__INIT;
	d.parent = SM_ROOT_ID;
	d.name = "null";
	d.ino = D3;
	d.mode = S_IFCHR | 0666;
	d.rdev = makedev(1, 3);
	c.mknod = &d;
	assert_int_equal(tl_apply(f->sm, &c), 0);
	assert_int_equal(sm_getattr(f->sm, F2, &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	assert_int_equal(sm_getattr(f->sm, F3, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(sm_getattr(f->sm, D3, &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(st.st_rdev, makedev(1, 3));
	assert_int_equal(sm_getattr(f->sm, 12345, &st), -ENOENT);
}

static void test_mkdir_rmdir(void **state)
{
	struct fx *f = *state;
	struct stat st;
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "d", D1, 0750), 0);
	assert_int_equal(sm_getattr(f->sm, SM_ROOT_ID, &st), 0);
	assert_int_equal(st.st_nlink, 3);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "d", &st), 0);
	assert_int_equal(st.st_ino, D1);
	assert_int_equal(st.st_mode, S_IFDIR | 0750);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "d", D2, 0750), EEXIST);
	assert_int_equal(tl_mknod(f->sm, D1, "f", F1, S_IFREG | 0644), 0);
	assert_int_equal(tl_unlink(f->sm, SM_ROOT_ID, "d", 1), ENOTEMPTY);
	assert_int_equal(tl_unlink(f->sm, SM_ROOT_ID, "d", 0), EISDIR);
	assert_int_equal(tl_unlink(f->sm, D1, "f", 1), ENOTDIR);
	assert_int_equal(tl_unlink(f->sm, D1, "nope", 1), ENOENT);
	assert_int_equal(tl_unlink(f->sm, D1, "f", 0), 0);
	assert_int_equal(tl_release(f->sm, F1), 0);
	assert_int_equal(tl_unlink(f->sm, SM_ROOT_ID, "d", 1), 0);
	int64_t t = tl_last_time();
	assert_int_equal(sm_getattr(f->sm, SM_ROOT_ID, &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(mtime_ns(&st), t);
	assert_int_equal(sm_getattr(f->sm, D1, &st), -ENOENT);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "d", &st), -ENOENT);

	// A set-group-id directory passes on its group and the bit.
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mkdir m = FSPB__MKDIR__INIT;
	m.parent = SM_ROOT_ID;
	m.name = "g";
	m.ino = D2;
	m.mode = 02775;
	c.gid = 50;
	c.op_case = FSPB__COMMAND__OP_MKDIR;
	c.mkdir = &m;
	assert_int_equal(tl_apply(f->sm, &c), 0);
	m.parent = D2;
	m.name = "sub";
	m.ino = D3;
	m.mode = 0755;
	c.gid = 60;
	assert_int_equal(tl_apply(f->sm, &c), 0);
	assert_int_equal(sm_getattr(f->sm, D3, &st), 0);
	assert_int_equal(st.st_gid, 50);
	assert_int_equal(st.st_mode & 07777, 02755);
}

static void test_symlink(void **state)
{
	struct fx *f = *state;
	char buf[64];
	assert_int_equal(tl_symlink(f->sm, SM_ROOT_ID, "l", F1, "../target"), 0);
	ssize_t n = sm_readlink(f->sm, F1, buf, sizeof(buf));
	assert_int_equal(n, 9);
	assert_memory_equal(buf, "../target", 9);
	struct stat st;
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "l", &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(st.st_size, 9);
	assert_int_equal(tl_symlink(f->sm, SM_ROOT_ID, "e", F2, ""), ENOENT);
	assert_int_equal(tl_symlink(f->sm, SM_ROOT_ID, "l", F2, "x"), EEXIST);
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "f", F2, S_IFREG | 0644), 0);
	assert_int_equal(sm_readlink(f->sm, F2, buf, sizeof(buf)), -EINVAL);
	// A symlink can be hard-linked and renamed like any file.
	assert_int_equal(tl_link(f->sm, F1, SM_ROOT_ID, "l2"), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_nlink, 2);
}

static void test_link_unlink_orphan(void **state)
{
	struct fx *f = *state;
	struct stat st;
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "d", D1, 0755), 0);
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "f", F1, S_IFREG | 0644), 0);
	assert_int_equal(tl_write(f->sm, F1, 0, "hello", 5), 0);
	assert_int_equal(tl_link(f->sm, F1, D1, "g"), 0);
	int64_t t = tl_last_time();
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(ctime_ns(&st), t);
	assert_int_equal(sm_getattr(f->sm, D1, &st), 0);
	assert_int_equal(mtime_ns(&st), t);
	assert_int_equal(tl_link(f->sm, F1, D1, "g"), EEXIST);
	assert_int_equal(tl_link(f->sm, D1, SM_ROOT_ID, "d2"), EPERM);
	assert_int_equal(tl_link(f->sm, F2, SM_ROOT_ID, "x"), ENOENT);
	assert_int_equal(tl_link(f->sm, F1, F1, "x"), ENOTDIR);

	assert_int_equal(tl_unlink(f->sm, SM_ROOT_ID, "f", 0), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(tl_release(f->sm, F1), EBUSY);

	// Open before the last unlink; the fd and the id both keep working.
	int fd = sm_open_fd(f->sm, F1);
	assert_true(fd >= 0);
	assert_int_equal(tl_unlink(f->sm, D1, "g", 0), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_nlink, 0);
	assert_int_equal(tl_link(f->sm, F1, SM_ROOT_ID, "back"), ENOENT);
	assert_int_equal(tl_write(f->sm, F1, 5, " world", 6), 0);
	char buf[32];
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 11);
	assert_memory_equal(buf, "hello world", 11);
	assert_int_equal(sm_read(f->sm, F1, buf, sizeof(buf), 6), 5);
	assert_memory_equal(buf, "world", 5);
	uint64_t seen = 0;
	int count_one(void *arg, uint64_t id);
	assert_int_equal(sm_each_orphan(f->sm, count_one, &seen), 0);
	assert_int_equal(seen, F1);
	// The orphan survives a restart.
	sm_close(f->sm);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_read(f->sm, F1, buf, sizeof(buf), 0), 11);
	assert_int_equal(tl_release(f->sm, F1), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), -ENOENT);
	assert_int_equal(tl_release(f->sm, F1), ENOENT);
	assert_int_equal(tl_release(f->sm, D1), EISDIR);
	assert_int_equal(tl_write(f->sm, F1, 0, "x", 1), ENOENT);
	// An fd opened earlier still reads what the file held.
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 11);
	close(fd);
	seen = 0;
	assert_int_equal(sm_each_orphan(f->sm, count_one, &seen), 0);
	assert_int_equal(seen, 0);
}

int count_one(void *arg, uint64_t id)
{
	*(uint64_t *)arg = id;
	return 0;
}

static void test_rename(void **state)
{
	struct fx *f = *state;
	struct stat st;
	sm_alloc_id(f->sm, &(uint64_t){0});
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "a", D1, 0755), 0);
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "b", D2, 0755), 0);
	assert_int_equal(tl_mkdir(f->sm, D1, "sub", D3, 0755), 0);
	assert_int_equal(tl_mknod(f->sm, D3, "f", F1, S_IFREG | 0644), 0);
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "g", F2, S_IFREG | 0644), 0);

	// Move a directory across parents: nlinks, times, and ids below it.
	assert_int_equal(tl_rename(f->sm, D1, "sub", D2, "moved", 0), 0);
	int64_t t = tl_last_time();
	assert_int_equal(sm_getattr(f->sm, D1, &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(mtime_ns(&st), t);
	assert_int_equal(sm_getattr(f->sm, D2, &st), 0);
	assert_int_equal(st.st_nlink, 3);
	assert_int_equal(ctime_ns(&st), t);
	assert_int_equal(sm_getattr(f->sm, D3, &st), 0);
	assert_int_equal(ctime_ns(&st), t);
	assert_int_equal(sm_lookup(f->sm, D3, "f", &st), 0);
	assert_int_equal(st.st_ino, F1);
	// Write through the id after the rename lands in the same file.
	assert_int_equal(tl_write(f->sm, F1, 0, "abc", 3), 0);
	char buf[8];
	assert_int_equal(sm_read(f->sm, F1, buf, sizeof(buf), 0), 3);

	assert_int_equal(tl_rename(f->sm, D2, "moved", D3, "x", 0), EINVAL);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "b", D3, "x", 0), EINVAL);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "nope", D1, "x", 0), ENOENT);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "g", F1, "x", 0), ENOTDIR);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "g", D1, "x", 3), EINVAL);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "g", D2, "moved", 0), EISDIR);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "a", D3, "f", 0), ENOTDIR);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "a", D2, "moved", 0), ENOTEMPTY);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "g", D3, "f", RENAME_NOREPLACE), EEXIST);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "g", D3, "none", RENAME_EXCHANGE), ENOENT);

	// Over an existing file: the replaced one becomes an orphan.
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "g", D3, "f", 0), 0);
	assert_int_equal(sm_lookup(f->sm, D3, "f", &st), 0);
	assert_int_equal(st.st_ino, F2);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_nlink, 0);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "g", &st), -ENOENT);

	// A directory onto an empty directory.
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "empty", (1ULL << 48) | 20, 0700), 0);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "a", SM_ROOT_ID, "empty", 0), 0);
	assert_int_equal(sm_getattr(f->sm, (1ULL << 48) | 20, &st), -ENOENT);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "empty", &st), 0);
	assert_int_equal(st.st_ino, D1);

	// Exchange a file and a directory; paths below the directory follow.
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "x", F3, S_IFREG | 0644), 0);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "x", D2, "moved", RENAME_EXCHANGE), 0);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "x", &st), 0);
	assert_int_equal(st.st_ino, D3);
	assert_int_equal(sm_lookup(f->sm, D2, "moved", &st), 0);
	assert_int_equal(st.st_ino, F3);
	assert_int_equal(sm_lookup(f->sm, D3, "f", &st), 0);
	assert_int_equal(st.st_ino, F2);
	// Exchanging a directory into its own subtree is refused.
	assert_int_equal(tl_rename(f->sm, D3, "f", SM_ROOT_ID, "x", RENAME_EXCHANGE), EINVAL);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "b", D2, "moved", RENAME_EXCHANGE), EINVAL);

	// Two names of one file: nothing happens.
	assert_int_equal(tl_link(f->sm, F2, SM_ROOT_ID, "b2"), 0);
	assert_int_equal(tl_rename(f->sm, D3, "f", SM_ROOT_ID, "b2", 0), 0);
	assert_int_equal(sm_lookup(f->sm, D3, "f", &st), 0);
	assert_int_equal(st.st_nlink, 2);

	// Tables rebuilt by the scan agree with what apply left.
	sm_close(f->sm);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "x", &st), 0);
	assert_int_equal(st.st_ino, D3);
	assert_int_equal(sm_lookup(f->sm, D3, "f", &st), 0);
	assert_int_equal(st.st_ino, F2);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_nlink, 0);
}

static void test_write_read(void **state)
{
	struct fx *f = *state;
	struct stat st;
	char buf[16];
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "f", F1, S_IFREG | 0644), 0);
	assert_int_equal(tl_write(f->sm, F1, 0, "0123456789", 10), 0);
	assert_int_equal(tl_write(f->sm, F1, 4, "ab", 2), 0);
	int64_t t = tl_last_time();
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_size, 10);
	assert_int_equal(mtime_ns(&st), t);
	assert_int_equal(ctime_ns(&st), t);
	assert_int_equal(sm_read(f->sm, F1, buf, sizeof(buf), 0), 10);
	assert_memory_equal(buf, "0123ab6789", 10);
	// Sparse: a write far past the end leaves a hole of zeros.
	assert_int_equal(tl_write(f->sm, F1, 1 << 20, "z", 1), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_size, (1 << 20) + 1);
	assert_true(st.st_blocks < 64);
	assert_int_equal(sm_read(f->sm, F1, buf, 4, 4096), 4);
	assert_memory_equal(buf, "\0\0\0\0", 4);
	// An empty write changes nothing.
	assert_int_equal(tl_write(f->sm, F1, 0, "", 0), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(mtime_ns(&st), tl_last_time() - 1000);

	// Append: at the size the file has when applied, whatever the offset.
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Write w = FSPB__WRITE__INIT;
	w.ino = F1;
	w.offset = 3;
	w.append = 1;
	w.data.data = (uint8_t *)"END";
	w.data.len = 3;
	c.op_case = FSPB__COMMAND__OP_WRITE;
	c.write = &w;
	assert_int_equal(tl_apply(f->sm, &c), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_size, (1 << 20) + 4);
	assert_int_equal(sm_read(f->sm, F1, buf, 4, 1 << 20), 4);
	assert_memory_equal(buf, "zEND", 4);

	assert_int_equal(tl_write(f->sm, SM_ROOT_ID, 0, "x", 1), EISDIR);
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "p", F2, S_IFIFO | 0644), 0);
	assert_int_equal(tl_write(f->sm, F2, 0, "x", 1), EINVAL);
	assert_int_equal(tl_write(f->sm, F3, 0, "x", 1), ENOENT);
	assert_int_equal(tl_write(f->sm, F1, 1ULL << 62, "x", 1), EFBIG);
	assert_int_equal(sm_open_fd(f->sm, SM_ROOT_ID), -EISDIR);
	assert_int_equal(sm_open_fd(f->sm, F2), -EINVAL);
}

static void test_setattr(void **state)
{
	struct fx *f = *state;
	struct stat st;
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "f", F1, S_IFREG | 06755), 0);
	assert_int_equal(tl_write(f->sm, F1, 0, "0123456789", 10), 0);
	Fspb__SetAttr s = FSPB__SET_ATTR__INIT;
	s.ino = F1;
	// chown clears set-user-id and (group-executable) set-group-id.
	s.valid = SM_SET_UID | SM_SET_GID;
	s.uid = 7;
	s.gid = 8;
	assert_int_equal(tl_setattr(f->sm, &s), 0);
	int64_t t = tl_last_time();
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_uid, 7);
	assert_int_equal(st.st_gid, 8);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(ctime_ns(&st), t);
	s.valid = SM_SET_MODE;
	s.mode = 04700;
	assert_int_equal(tl_setattr(f->sm, &s), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_mode, S_IFREG | 04700);
	// Truncate down, then up: mtime follows the command.
	s.valid = SM_SET_SIZE;
	s.size = 4;
	assert_int_equal(tl_setattr(f->sm, &s), 0);
	s.size = 8;
	assert_int_equal(tl_setattr(f->sm, &s), 0);
	t = tl_last_time();
	char buf[16];
	assert_int_equal(sm_read(f->sm, F1, buf, sizeof(buf), 0), 8);
	assert_memory_equal(buf, "0123\0\0\0\0", 8);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(mtime_ns(&st), t);
	// Explicit times, and "now" taken from the command, never the local clock.
	s.valid = SM_SET_ATIME | SM_SET_MTIME;
	s.atime_ns = 1000000000LL * 86400 + 5;
	s.mtime_ns = 1000000000LL * 3600 + 7;
	assert_int_equal(tl_setattr(f->sm, &s), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(mtime_ns(&st), s.mtime_ns);
	assert_int_equal(st.st_atim.tv_sec, 86400);
	assert_int_equal(ctime_ns(&st), tl_last_time());
	s.valid = SM_SET_MTIME_NOW;
	assert_int_equal(tl_setattr(f->sm, &s), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(mtime_ns(&st), tl_last_time());

	s.valid = SM_SET_SIZE;
	s.ino = SM_ROOT_ID;
	assert_int_equal(tl_setattr(f->sm, &s), EISDIR);
	s.ino = F2;
	assert_int_equal(tl_setattr(f->sm, &s), ENOENT);
	s.ino = F1;
	s.size = 1ULL << 60;
	assert_int_equal(tl_setattr(f->sm, &s), EFBIG);
	assert_int_equal(tl_symlink(f->sm, SM_ROOT_ID, "l", F2, "f"), 0);
	s.ino = F2;
	s.valid = SM_SET_MODE;
	assert_int_equal(tl_setattr(f->sm, &s), EOPNOTSUPP);
	s.valid = SM_SET_SIZE;
	assert_int_equal(tl_setattr(f->sm, &s), EINVAL);
	s.valid = SM_SET_UID;
	s.uid = 42;
	assert_int_equal(tl_setattr(f->sm, &s), 0);
	assert_int_equal(sm_getattr(f->sm, F2, &st), 0);
	assert_int_equal(st.st_uid, 42);
}

static void test_fallocate(void **state)
{
	struct fx *f = *state;
	struct stat st;
	char buf[8192];
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "f", F1, S_IFREG | 0644), 0);
	assert_int_equal(tl_fallocate(f->sm, F1, FALLOC_FL_KEEP_SIZE, 0, 65536), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_true(st.st_blocks >= 128);
	assert_int_equal(tl_fallocate(f->sm, F1, 0, 0, 8192), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_size, 8192);
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(tl_write(f->sm, F1, 0, buf, sizeof(buf)), 0);
	assert_int_equal(
	    tl_fallocate(f->sm, F1, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), 0);
	assert_int_equal(sm_read(f->sm, F1, buf, sizeof(buf), 0), 8192);
	assert_int_equal(buf[0], 0);
	assert_int_equal(buf[4095], 0);
	assert_int_equal(buf[4096], 'x');
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(mtime_ns(&st), tl_last_time());
	assert_int_equal(tl_fallocate(f->sm, F1, FALLOC_FL_ZERO_RANGE, 8000, 1000), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(st.st_size, 9000);
	assert_int_equal(tl_fallocate(f->sm, F1, FALLOC_FL_COLLAPSE_RANGE, 0, 4096), EOPNOTSUPP);
	assert_int_equal(tl_fallocate(f->sm, F1, FALLOC_FL_PUNCH_HOLE, 0, 4096), EINVAL);
	assert_int_equal(tl_fallocate(f->sm, F1, 0, 0, 0), EINVAL);
	assert_int_equal(tl_fallocate(f->sm, SM_ROOT_ID, 0, 0, 1), EISDIR);
	assert_int_equal(tl_fallocate(f->sm, F1, 0, 1ULL << 62, 1), EFBIG);
}

static void test_xattr(void **state)
{
	struct fx *f = *state;
	struct stat st;
	char buf[256];
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "f", F1, S_IFREG | 0644), 0);
	assert_int_equal(tl_setxattr(f->sm, F1, "user.a", "one", 0), 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_int_equal(ctime_ns(&st), tl_last_time());
	assert_int_equal(sm_getxattr(f->sm, F1, "user.a", buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "one", 3);
	assert_int_equal(tl_setxattr(f->sm, F1, "user.a", "two", XATTR_CREATE), EEXIST);
	assert_int_equal(tl_setxattr(f->sm, F1, "user.b", "two", XATTR_REPLACE), ENODATA);
	assert_int_equal(tl_setxattr(f->sm, F1, "user.a", "three", XATTR_REPLACE), 0);
	assert_int_equal(tl_setxattr(f->sm, F1, "trusted.t", "x", XATTR_CREATE), 0);
	assert_int_equal(sm_getxattr(f->sm, F1, "user.a", buf, sizeof(buf)), 5);
	// Our own xattrs are hidden and untouchable.
	ssize_t n = sm_listxattr(f->sm, F1, buf, sizeof(buf));
	assert_int_equal(n, (ssize_t)sizeof("user.a") + (ssize_t)sizeof("trusted.t"));
	assert_int_equal(sm_listxattr(f->sm, F1, NULL, 0), n);
	assert_int_equal(sm_listxattr(f->sm, F1, buf, 3), -ERANGE);
	assert_int_equal(sm_getxattr(f->sm, F1, "trusted.raftfs.id", buf, sizeof(buf)), -ENODATA);
	assert_int_equal(tl_setxattr(f->sm, F1, "trusted.raftfs.id", "1", 0), EPERM);
	assert_int_equal(tl_removexattr(f->sm, F1, "trusted.raftfs.ctime"), EPERM);
	assert_int_equal(tl_setxattr(f->sm, F1, "system.posix_acl_access", "x", 0), EOPNOTSUPP);
	assert_int_equal(tl_setxattr(f->sm, F1, "user.", "x", 0), EINVAL);
	assert_int_equal(tl_setxattr(f->sm, F1, "", "x", 0), ERANGE);
	assert_int_equal(tl_setxattr(f->sm, F2, "user.a", "x", 0), ENOENT);
	assert_int_equal(tl_symlink(f->sm, SM_ROOT_ID, "l", F2, "f"), 0);
	assert_int_equal(tl_setxattr(f->sm, F2, "user.a", "x", 0), EPERM);
	assert_int_equal(tl_setxattr(f->sm, F2, "trusted.a", "x", 0), 0);
	assert_int_equal(tl_setxattr(f->sm, SM_ROOT_ID, "user.dir", "d", 0), 0);
	assert_int_equal(sm_getxattr(f->sm, SM_ROOT_ID, "user.dir", buf, sizeof(buf)), 1);
	// The space limit is a result, the same everywhere, not a local ENOSPC.
	static char big[2049];
	memset(big, 'v', 2048);
	assert_int_equal(tl_setxattr(f->sm, F1, "user.big1", big, 0), 0);
	assert_int_equal(tl_setxattr(f->sm, F1, "user.big2", big, 0), ENOSPC);
	assert_int_equal(tl_removexattr(f->sm, F1, "user.a"), 0);
	assert_int_equal(tl_removexattr(f->sm, F1, "user.a"), ENODATA);
	assert_int_equal(sm_getxattr(f->sm, F1, "user.a", buf, sizeof(buf)), -ENODATA);
}

static void test_dedup(void **state)
{
	struct fx *f = *state;
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	m.parent = SM_ROOT_ID;
	m.name = "f";
	m.ino = F1;
	m.mode = S_IFREG | 0644;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	size_t len;
	uint8_t *buf = tl_pack(&c, &len);
	int res = -1;
	assert_int_equal(sm_apply(f->sm, 1, 77, 5, 5, buf, len, &res), 0);
	assert_int_equal(res, 0);
	// The same (client, seq) again: the first result, not EEXIST.
	assert_int_equal(sm_apply(f->sm, 2, 77, 5, 5, buf, len, &res), 0);
	assert_int_equal(res, 0);
	// Executed again under a new seq: EEXIST, recorded. Seq 5 is still
	// pending (min_pending 5), so its result is kept.
	assert_int_equal(sm_apply(f->sm, 3, 77, 6, 5, buf, len, &res), 0);
	assert_int_equal(res, EEXIST);
	assert_int_equal(sm_client_result(f->sm, 77, 5, &res), 0);
	assert_int_equal(res, 0);
	// min_pending 7: the client promises never to retry below 7.
	assert_int_equal(sm_apply(f->sm, 4, 77, 7, 7, buf, len, &res), 0);
	assert_int_equal(res, EEXIST);
	assert_int_equal(sm_client_result(f->sm, 77, 5, &res), -ESTALE);
	assert_int_equal(sm_apply(f->sm, 5, 77, 6, 6, buf, len, &res), 0);
	assert_int_equal(res, SM_RESULT_STALE);
	// Client 0 is never deduplicated.
	assert_int_equal(sm_apply(f->sm, 6, 0, 0, 0, buf, len, &res), 0);
	assert_int_equal(res, EEXIST);
	assert_int_equal(sm_client_result(f->sm, 77, 8, &res), -ENOENT);
	assert_int_equal(sm_client_result(f->sm, 78, 1, &res), -ENOENT);
	// Out-of-order indexes are caller bugs, not faults.
	assert_int_equal(sm_apply(f->sm, 6, 77, 8, 8, buf, len, &res), -EALREADY);
	assert_int_equal(sm_apply(f->sm, 9, 77, 8, 8, buf, len, &res), -EINVAL);
	assert_int_equal(sm_apply_empty(f->sm, 9), -EINVAL);
	assert_int_equal(sm_fault(f->sm), 0);
	// Undecodable bytes are a deterministic EINVAL.
	assert_int_equal(sm_apply(f->sm, 7, 77, 8, 8, "\xff\xff\xff", 3, &res), 0);
	assert_int_equal(res, EINVAL);
	// An empty entry (leader no-op) only moves the index.
	assert_int_equal(sm_apply_empty(f->sm, 8), 0);
	assert_int_equal(sm_applied_index(f->sm), 8);
	free(buf);

	// Everything survives a clean restart.
	sm_close(f->sm);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 8);
	assert_int_equal(sm_client_result(f->sm, 77, 8, &res), 0);
	assert_int_equal(res, EINVAL);
	assert_int_equal(sm_client_result(f->sm, 77, 7, &res), -ESTALE);

	// A process dying right after an apply: that command counts as not
	// applied and must be delivered again, the same bytes, and is redone.
	m.name = "g";
	m.ino = F2;
	buf = tl_pack(&c, &len);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sm *sm;
		int r;
		_exit(sm_open(f->dir, 1, &sm) || sm_apply(sm, 9, 77, 9, 9, buf, len, &r) || r);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	sm_close(f->sm);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 8);
	assert_int_equal(sm_client_result(f->sm, 77, 9, &res), -ENOENT);
	assert_int_equal(sm_apply(f->sm, 9, 77, 10, 9, buf, len, &res), -EINVAL);
	assert_int_equal(sm_apply_empty(f->sm, 9), -EINVAL);
	assert_int_equal(sm_apply(f->sm, 9, 77, 9, 9, "\x10\x01", 2, &res), -EINVAL);
	assert_int_equal(sm_apply(f->sm, 9, 77, 9, 9, buf, len, &res), 0);
	assert_int_equal(res, 0);
	assert_int_equal(sm_client_result(f->sm, 77, 9, &res), 0);
	struct stat st;
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "g", &st), 0);
	assert_int_equal(st.st_ino, F2);
	assert_int_equal(sm_fault(f->sm), 0);
	free(buf);
}

struct dirlist {
	int n;
	char names[16][16];
	uint64_t ids[16];
	mode_t modes[16];
	off_t offs[16];
	int stop_after;
};

static int collect(void *arg, const char *name, const struct stat *st, off_t next)
{
	struct dirlist *l = arg;
	if (l->n == l->stop_after)
		return 1;
	snprintf(l->names[l->n], 16, "%s", name);
	l->ids[l->n] = st->st_ino;
	l->modes[l->n] = st->st_mode;
	l->offs[l->n] = next;
	l->n++;
	return 0;
}

static void test_readdir(void **state)
{
	struct fx *f = *state;
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "d", D1, 0755), 0);
	assert_int_equal(tl_mknod(f->sm, D1, "a", F1, S_IFREG | 0644), 0);
	assert_int_equal(tl_mknod(f->sm, D1, "b", F2, S_IFREG | 0600), 0);
	assert_int_equal(tl_mkdir(f->sm, D1, "c", D2, 0755), 0);
	struct dirlist all = {.stop_after = 16};
	assert_int_equal(sm_readdir(f->sm, D1, 0, true, collect, &all), 0);
	assert_int_equal(all.n, 5);
	int seen = 0;
	for (int i = 0; i < all.n; i++) {
		const char *n = all.names[i];
		uint64_t want = !strcmp(n, ".")	   ? D1
				: !strcmp(n, "..") ? SM_ROOT_ID
				: !strcmp(n, "a")  ? F1
				: !strcmp(n, "b")  ? F2
						   : D2;
		assert_int_equal(all.ids[i], want);
		if (!strcmp(n, "b"))
			assert_int_equal(all.modes[i], S_IFREG | 0600);
		seen++;
	}
	assert_int_equal(seen, 5);
	// Resume after the second entry: the rest, exactly once.
	struct dirlist part = {.stop_after = 2};
	assert_int_equal(sm_readdir(f->sm, D1, 0, false, collect, &part), 0);
	assert_int_equal(part.n, 2);
	struct dirlist rest = {.stop_after = 16};
	assert_int_equal(sm_readdir(f->sm, D1, part.offs[1], false, collect, &rest), 0);
	assert_int_equal(rest.n, 3);
	for (int i = 0; i < 3; i++)
		assert_string_equal(rest.names[i], all.names[i + 2]);
	assert_int_equal(sm_readdir(f->sm, F1, 0, false, collect, &rest), -ENOTDIR);
	assert_int_equal(sm_readdir(f->sm, F3, 0, false, collect, &rest), -ENOENT);
}

static void test_deep_tree(void **state)
{
	struct fx *f = *state;
	// 40 levels of 200-byte names: paths far beyond PATH_MAX.
	char name[201];
	memset(name, 'd', 200);
	name[200] = 0;
	uint64_t parent = SM_ROOT_ID;
	for (uint64_t i = 0; i < 40; i++) {
		uint64_t id = (1ULL << 48) | (100 + i);
		assert_int_equal(tl_mkdir(f->sm, parent, name, id, 0755), 0);
		parent = id;
	}
	assert_int_equal(tl_mknod(f->sm, parent, "leaf", F1, S_IFREG | 0644), 0);
	assert_int_equal(tl_write(f->sm, F1, 0, "deep", 4), 0);
	assert_int_equal(tl_setxattr(f->sm, parent, "user.x", "y", 0), 0);
	struct stat st;
	assert_int_equal(sm_lookup(f->sm, parent, "leaf", &st), 0);
	assert_int_equal(st.st_ino, F1);
	assert_int_equal(sm_getattr(f->sm, parent, &st), 0);
	assert_int_equal(ctime_ns(&st), tl_last_time());
	// Rename the top: everything below follows; the scan finds it all again.
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, name, SM_ROOT_ID, "top", 0), 0);
	sm_close(f->sm);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_lookup(f->sm, parent, "leaf", &st), 0);
	assert_int_equal(st.st_size, 4);
	char buf[8];
	assert_int_equal(sm_getxattr(f->sm, parent, "user.x", buf, sizeof(buf)), 1);
	assert_int_equal(tl_unlink(f->sm, parent, "leaf", 0), 0);
	assert_int_equal(tl_unlink(f->sm, (1ULL << 48) | 138, name, 1), 0);
	struct statvfs sv;
	assert_int_equal(sm_statfs(f->sm, &sv), 0);
	assert_true(sv.f_bsize > 0);
}

// The entry a child applies before it dies (apply_and_die).
struct entry {
	uint64_t index;
	const uint8_t *buf;
	size_t len;
};

static int apply_entry(struct sm *sm, void *arg)
{
	const struct entry *e = arg;
	int r;
	return sm_apply(sm, e->index, 0, 0, 0, e->buf, e->len, &r) || r;
}

// A child process applies the mknod of F1 at `next` and dies without
// closing: as if the machine then lost power.
static void apply_and_die(const char *dir, uint64_t next, const uint8_t *buf, size_t len)
{
	struct entry e = {next, buf, len};
	tl_run_and_die(dir, 1, apply_entry, &e);
}

static void test_power_loss_guard(void **state)
{
	struct fx *f = *state;
	struct stat st;
	uint64_t before, after;
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "d", D1, 0755), 0);
	assert_int_equal(sm_alloc_id(f->sm, &before), 0);
	// A clean close syncs: a machine restart after it is harmless.
	sm_close(f->sm);
	f->sm = NULL;
	assert_true(tl_exists(f->dir, "sm/clean"));
	tl_fake_boot_id(f->dir);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_false(tl_exists(f->dir, "sm/clean"));
	assert_int_equal(sm_fault(f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 1);
	assert_int_equal(sm_getattr(f->sm, D1, &st), 0);
	assert_false(tl_exists(f->dir, "dropped"));
	// The process dies with a command applied but not synced, then the
	// machine restarts: the data dir cannot be trusted.
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	m.parent = SM_ROOT_ID;
	m.name = "f";
	m.ino = F1;
	m.mode = S_IFREG | 0644;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	size_t len;
	uint8_t *buf = tl_pack(&c, &len);
	sm_close(f->sm); // before the child: its clean close would mark the dir clean
	f->sm = NULL;
	apply_and_die(f->dir, 2, buf, len);
	tl_fake_boot_id(f->dir);
	// It is dropped, not trusted: an empty state machine at 0, healthy,
	// which the log (here: the same two commands) rebuilds.
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_fault(f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 0);
	assert_int_equal(sm_getattr(f->sm, D1, &st), -ENOENT);
	assert_int_equal(sm_getattr(f->sm, SM_ROOT_ID, &st), 0);
	// The id reservation survives: no id is handed out twice.
	assert_int_equal(sm_alloc_id(f->sm, &after), 0);
	assert_true(after > before);
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "d", D1, 0755), 0);
	int res;
	assert_int_equal(sm_apply(f->sm, 2, 0, 0, 0, buf, len, &res), 0);
	assert_int_equal(res, 0);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_true(tl_dropped_deleted(f->dir));
	// And the next open, in the same boot, trusts what it rebuilt.
	sm_close(f->sm);
	f->sm = NULL;
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 2);
	assert_int_equal(sm_getattr(f->sm, F1, &st), 0);
	assert_false(tl_exists(f->dir, "dropped"));
	free(buf);
}

// A crash in the middle of the drop (the tree moved aside, the journal
// still there) leaves it untrusted: the next open drops again.
static void test_power_loss_drop_cut_short(void **state)
{
	struct fx *f = *state;
	struct stat st;
	char from[4096], to[4096];
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "d", D1, 0755), 0);
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	m.parent = SM_ROOT_ID;
	m.name = "f";
	m.ino = F1;
	m.mode = S_IFREG | 0644;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	size_t len;
	uint8_t *buf = tl_pack(&c, &len);
	sm_close(f->sm);
	f->sm = NULL;
	apply_and_die(f->dir, 2, buf, len);
	free(buf);
	tl_fake_boot_id(f->dir);
	snprintf(from, sizeof(from), "%s/tree", f->dir);
	snprintf(to, sizeof(to), "%s/tree.gone", f->dir);
	assert_int_equal(rename(from, to), 0);
	assert_true(tl_exists(f->dir, "sm/journal"));
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_fault(f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 0);
	assert_int_equal(sm_getattr(f->sm, D1, &st), -ENOENT); // tree.gone: teardown's
}

// After a clean close and a reopen, the records appended since may be lost
// in a power loss while changes of the tree they describe were written:
// the journal then ends with the record the clean close marked done. That
// must not pass for clean: the open removed the clean mark.
static void test_power_loss_journal_tail_lost(void **state)
{
	struct fx *f = *state;
	struct stat st;
	char path[4096];
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "d", D1, 0755), 0);
	sm_close(f->sm);
	f->sm = NULL;
	assert_true(tl_exists(f->dir, "sm/clean"));
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	m.parent = SM_ROOT_ID;
	m.name = "f";
	m.ino = F1;
	m.mode = S_IFREG | 0644;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	size_t len;
	uint8_t *buf = tl_pack(&c, &len);
	apply_and_die(f->dir, 2, buf, len);
	free(buf);
	assert_false(tl_exists(f->dir, "sm/clean"));
	// The record of index 2 (128 bytes, the last) lost; the tree has f.
	snprintf(path, sizeof(path), "%s/sm/journal", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, st.st_size - 128), 0);
	assert_true(tl_exists(f->dir, "tree/f"));
	tl_fake_boot_id(f->dir);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_fault(f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 0);
	assert_int_equal(sm_getattr(f->sm, D1, &st), -ENOENT);
	assert_int_equal(sm_getattr(f->sm, F1, &st), -ENOENT);
}

static void test_torn_journal_record(void **state)
{
	struct fx *f = *state;
	// Three creates by a process that dies without closing.
	uint8_t *cmds[3];
	size_t lens[3];
	for (int i = 0; i < 3; i++) {
		Fspb__Command c = FSPB__COMMAND__INIT;
		Fspb__Mkdir m = FSPB__MKDIR__INIT;
		char name[8];
		snprintf(name, sizeof(name), "d%d", i);
		m.parent = SM_ROOT_ID;
		m.name = name;
		m.ino = D1 + (uint64_t)i;
		m.mode = 0755;
		c.op_case = FSPB__COMMAND__OP_MKDIR;
		c.mkdir = &m;
		c.time_ns = 1000 + i;
		cmds[i] = tl_pack(&c, &lens[i]);
	}
	sm_close(f->sm);
	f->sm = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sm *sm;
		int r, bad = sm_open(f->dir, 1, &sm);
		for (int i = 0; i < 3 && !bad; i++)
			bad = sm_apply(sm, (uint64_t)i + 1, 0, 0, 0, cmds[i], lens[i], &r) || r;
		_exit(bad);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	// A fourth record was being appended when the process died: torn.
	char path[4096];
	snprintf(path, sizeof(path), "%s/sm/journal", f->dir);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 3 * 128);
	char junk[128];
	memset(junk, 0x5a, sizeof(junk));
	assert_int_equal(pwrite(fd, junk, 100, st.st_size), 100);
	close(fd);
	// Replay stops at the torn record; entry 3 is redone, then the log goes
	// on over the junk.
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 2);
	int res;
	assert_int_equal(sm_apply(f->sm, 3, 0, 0, 0, cmds[2], lens[2], &res), 0);
	assert_int_equal(res, 0);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "d2", &st), 0);
	assert_int_equal(st.st_ino, D1 + 2);
	assert_int_equal(st.st_mtim.tv_nsec, 1002);
	assert_int_equal(sm_apply(f->sm, 4, 0, 0, 0, cmds[0], lens[0], &res), 0);
	assert_int_equal(res, EEXIST);
	sm_close(f->sm);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 4);
	for (int i = 0; i < 3; i++)
		free(cmds[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_fresh_root_and_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mknod, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mkdir_rmdir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_symlink, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_link_unlink_orphan, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rename, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_read, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_setattr, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fallocate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_xattr, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_readdir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deep_tree, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_power_loss_guard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_loss_drop_cut_short, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_loss_journal_tail_lost, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_torn_journal_record, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
