// A directory a Mkdir grants to its maker costs its ext4 tree one block
// (the directory's own), not two: ext4 keeps a 256-byte inode's first 92
// bytes of xattrs in the inode (the ctime and the id fit), and the grant,
// the same bytes for every directory granted to one node, goes to an xattr
// block ext4 shares between them (fs/apply.c, exec_mkdir). Made before
// the id, the grant took the inode's room and the id, different in every
// directory, a block of its own: 4 KiB more per directory on every node,
// and a block allocation more per mkdir.
//
// Needs root and a loop-mounted ext4 (made here, 256-byte inodes as
// mkfs.ext4 makes them by default, 4 KiB blocks); skipped without.
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"

// Granted directories made after the first (which may make ext4's shared
// block); each one's own directory block is one.
#define DIRS 64

struct fx {
	char *dir; // the image and its mount point
	char mnt[4096];
	bool mounted;
	struct sm *sm;
};

static int run(const char *cmd)
{
	int rc = system(cmd);
	return rc == -1 || !WIFEXITED(rc) ? -1 : WEXITSTATUS(rc);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	*state = f;
	f->dir = tl_mkdtemp();
	snprintf(f->mnt, sizeof(f->mnt), "%s/mnt", f->dir);
	char cmd[16384];
	if (geteuid() != 0 || mkdir(f->mnt, 0700))
		return 0;
	snprintf(cmd, sizeof(cmd),
		 "truncate -s 64M '%s/img' && mkfs.ext4 -q -F -b 4096 -I 256 -O ^has_journal '%s/img' "
		 ">/dev/null 2>&1 && mount -o loop '%s/img' '%s' 2>/dev/null",
		 f->dir, f->dir, f->dir, f->mnt);
	f->mounted = run(cmd) == 0;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	sm_close(f->sm);
	if (f->mounted) {
		char cmd[16384];
		snprintf(cmd, sizeof(cmd), "umount '%s' || umount -l '%s'", f->mnt, f->mnt);
		run(cmd);
	}
	tl_rmtree(f->dir);
	free(f);
	return 0;
}

static uint64_t used_blocks(const char *path)
{
	struct statvfs v;
	assert_int_equal(statvfs(path, &v), 0);
	assert_int_equal(v.f_frsize, 4096);
	return v.f_blocks - v.f_bfree;
}

// Set when there was no loop-mounted ext4 to test on: ctest then says
// Skipped (77), not Passed (cmocka's skip() alone counts as a pass).
static bool skipped;

static void test_grant_shares_a_block(void **state)
{
	struct fx *f = *state;
	if (!f->mounted) {
		skipped = true;
		skip(); // not root, or no loop-mounted ext4 here
	}
	char data[4200];
	snprintf(data, sizeof(data), "%s/data", f->mnt);
	assert_int_equal(mkdir(data, 0700), 0);
	assert_int_equal(sm_open(data, 1, &f->sm), 0);
	uint64_t id = (1ULL << 48) | 1;
	assert_int_equal(tl_mkdir_as(f->sm, 2, SM_ROOT_ID, "first", id++, true, false), 0);
	uint64_t before = used_blocks(f->mnt);
	for (int i = 0; i < DIRS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "d%d", i);
		assert_int_equal(tl_mkdir_as(f->sm, 2, SM_ROOT_ID, name, id++, true, false), 0);
	}
	uint64_t used = used_blocks(f->mnt) - before;
	// One block each, and a few for the state machine's own files (its
	// journal grows by a record per command) and the root's entries: far
	// from the two each a block of its own per grant would take.
	fprintf(stderr, "  %d granted directories: %llu blocks\n", DIRS, (unsigned long long)used);
	assert_true(used >= DIRS);
	assert_true(used <= DIRS + DIRS / 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_grant_shares_a_block, setup, teardown),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	return failed ? failed : skipped ? 77 : 0;
}
