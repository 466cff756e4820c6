// The power-loss guard (fs/sm.c's boot check) against the journal's own
// compaction: compact() marks a record done while the state machine runs, so
// a journal whose newest record is done does not mean a clean close.
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"
#include "sm_reset.h"
#include "sm_snapshot.h"

#define REC 128	// one journal record (fs/sm_journal.c)
#define ENTRIES 6 // with a 4-record limit: compacted before 6, so [5 done][6]
#define DIR_ID(i) ((1ULL << 48) | (100 + (uint64_t)(i)))

struct fx {
	char *dir;
	struct sm *sm;
	uint8_t *cmd[ENTRIES + 1]; // mkdir d<i> at index i
	size_t len[ENTRIES + 1];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->dir = tl_mkdtemp();
	for (int i = 1; i <= ENTRIES; i++) {
		Fspb__Command c = FSPB__COMMAND__INIT;
		Fspb__Mkdir m = FSPB__MKDIR__INIT;
		char name[8];
		snprintf(name, sizeof(name), "d%d", i);
		m.parent = SM_ROOT_ID;
		m.name = name;
		m.ino = DIR_ID(i);
		m.mode = 0755;
		c.op_case = FSPB__COMMAND__OP_MKDIR;
		c.mkdir = &m;
		c.time_ns = 1000 + i;
		f->cmd[i] = tl_pack(&c, &f->len[i]);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	sm_close(f->sm);
	tl_rmtree(f->dir);
	for (int i = 1; i <= ENTRIES; i++)
		free(f->cmd[i]);
	free(f);
	return 0;
}

// In a child: with a journal limit of 4 records, applies every entry.
static int apply_all(struct sm *sm, void *arg)
{
	struct fx *f = arg;
	int r = 0, bad = 0;
	sm_set_journal_limit(sm, 4 * REC);
	for (int i = 1; i <= ENTRIES && !bad; i++)
		bad = sm_apply(sm, (uint64_t)i, 0, 0, 0, f->cmd[i], f->len[i], &r) || r;
	return bad;
}

// A child applies every entry and dies without closing: the machine then
// loses power.
static void apply_all_and_die(struct fx *f)
{
	tl_run_and_die(f->dir, 1, apply_all, f);
}

// The reviewer's case: the compaction's rename of journal.new reached the
// disk, the record appended after it did not, the tree change it described
// did. The journal then ends with a done record. The next boot must not
// trust the tree: it drops it, and the log rebuilds it without an error.
static void test_compacted_journal_not_clean(void **state)
{
	struct fx *f = *state;
	char path[4096];
	struct stat st;
	apply_all_and_die(f);
	snprintf(path, sizeof(path), "%s/sm/journal", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 2 * REC); // compacted: [5 done][6]
	assert_int_equal(truncate(path, REC), 0);
	tl_fake_boot_id(f->dir);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_fault(f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 0);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "d6", &st), -ENOENT);
	// Replayed from the log: every entry applies as it did the first time.
	for (int i = 1; i <= ENTRIES; i++) {
		int res = -1;
		assert_int_equal(sm_apply(f->sm, (uint64_t)i, 0, 0, 0, f->cmd[i], f->len[i], &res),
				 0);
		assert_int_equal(res, 0);
	}
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "d6", &st), 0);
	assert_int_equal(st.st_ino, DIR_ID(6));
}

// The same journal without a power loss (same boot id): a process crash
// only, which the journal's redo covers; nothing is dropped. The last entry
// (its record not marked done) is redone when the log applies it again.
static void test_compacted_journal_crash_only(void **state)
{
	struct fx *f = *state;
	struct stat st;
	int res = -1;
	apply_all_and_die(f);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_fault(f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), ENTRIES - 1);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "d5", &st), 0);
	assert_int_equal(sm_apply(f->sm, ENTRIES, 0, 0, 0, f->cmd[ENTRIES], f->len[ENTRIES], &res),
			 0);
	assert_int_equal(res, 0);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "d6", &st), 0);
	assert_int_equal(st.st_ino, DIR_ID(ENTRIES));
}

// In a child: installs the image at path (arg), at index 2.
static int install(struct sm *sm, void *arg)
{
	int fd = open(arg, O_RDONLY | O_CLOEXEC);
	int bad = fd < 0 || sm_snapshot_install(sm, sm_snap_fd_source, &fd) ||
		  sm_applied_index(sm) != 2;
	if (fd >= 0)
		close(fd);
	return bad;
}

// An installed image is not a clean close: a power loss after the install
// (the process dies without closing) drops the installed state too.
static void test_installed_state_not_clean(void **state)
{
	struct fx *f = *state;
	char *img_dir = tl_mkdtemp();
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/image", img_dir);
	tl_make_image(path, DIR_ID(50), DIR_ID(51));
	tl_run_and_die(f->dir, 1, install, path);
	tl_rmtree(img_dir);
	tl_fake_boot_id(f->dir);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_fault(f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 0);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "img", &st), -ENOENT);
}

// ---- The dropped tree (fs/sm_reset.h).

// In a child: a file of *(size_t *)arg bytes of 'x' (written 256 KiB at a
// time) and a directory.
static int write_big(struct sm *sm, void *arg)
{
	static char chunk[256 << 10];
	size_t bytes = *(size_t *)arg;
	int bad = tl_mknod(sm, SM_ROOT_ID, "big", DIR_ID(60), S_IFREG | 0644) ||
		  tl_mkdir(sm, SM_ROOT_ID, "sub", DIR_ID(61), 0755);
	memset(chunk, 'x', sizeof(chunk));
	for (size_t off = 0; off < bytes && !bad; off += sizeof(chunk))
		bad = tl_write(sm, DIR_ID(60), off, chunk, sizeof(chunk)) != 0;
	return bad;
}

// A child writes bytes in a file and dies without closing: the machine
// then loses power.
static void write_and_die(const char *dir, size_t bytes)
{
	tl_run_and_die(dir, 1, write_big, &bytes);
}

// Waits (up to 20 s) for the deleter's count of sm's dropped tree to
// reach bytes (it measures in the background); whether it did.
static bool await_measured(struct sm *sm, uint64_t bytes)
{
	uint64_t b = 0, e;
	for (int i = 0; i < 2000; i++) {
		sm_dropped_left(sm, &b, &e);
		if (b >= bytes)
			return true;
		usleep(10000);
	}
	return false;
}

// What is left to delete of a dropped tree is counted (raftfs status shows
// it): with the deletion held, the counts cover the file's 1 MiB and the
// tree's entries; then the next start deletes it all and the counts are 0.
static void test_dropped_left_counted(void **state)
{
	struct fx *f = *state;
	uint64_t bytes, entries;
	write_and_die(f->dir, 1 << 20);
	tl_fake_boot_id(f->dir);
	setenv("RAFTFS_TEST_DROPPED_HOLD", "1", 1);
	uint64_t walked = sm_reset_start_progress();
	int rc = sm_open(f->dir, 1, &f->sm);
	unsetenv("RAFTFS_TEST_DROPPED_HOLD");
	assert_int_equal(rc, 0);
	assert_int_equal(sm_applied_index(f->sm), 0);
	assert_true(await_measured(f->sm, 1 << 20));
	// Measured in the background: not the start's progress.
	assert_int_equal(sm_reset_start_progress(), walked);
	sm_dropped_left(f->sm, &bytes, &entries);
	// dropped/X, tree, big, sub, ids and its bucket, big's index link
	assert_true(entries >= 7);
	assert_true(bytes < (4 << 20));
	sm_close(f->sm);
	f->sm = NULL;
	assert_true(tl_exists(f->dir, "dropped"));
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_true(tl_dropped_deleted(f->dir));
	// The thread may log after the directory is gone: close to join it.
	sm_close(f->sm);
	f->sm = NULL;
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	sm_dropped_left(f->sm, &bytes, &entries);
	assert_int_equal(bytes, 0);
	assert_int_equal(entries, 0);
}

// A node whose disk is too full to hold both the dropped tree and its
// rebuild deletes the dropped tree before it opens: in a 4 MiB tmpfs, a
// 2.5 MiB file's tree dropped leaves 1.4 MiB free; the open returns with
// the tree deleted, and the replay of the same writes fits (in the
// background it might still be there: an apply failing with ENOSPC stops
// the node applying for good).
static void test_short_of_space_deletes_first(void **state)
{
	struct fx *f = *state;
	if (mount("raftfs-test", f->dir, "tmpfs", 0, "size=4m") != 0) {
		fprintf(stderr, "SKIP: cannot mount a tmpfs (%s)\n", strerror(errno));
		skip();
	}
	write_and_die(f->dir, 10 * (256 << 10));
	tl_fake_boot_id(f->dir);
	uint64_t walked = sm_reset_start_progress();
	int rc = sm_open(f->dir, 1, &f->sm);
	bool left = tl_exists(f->dir, "dropped");
	// The start's progress (fs/svc_start.h): every entry measured, then
	// deleted (dropped/X, tree, big, ids, its bucket, big's index link, ...).
	walked = sm_reset_start_progress() - walked;
	if (!rc) {
		static char chunk[256 << 10];
		memset(chunk, 'x', sizeof(chunk));
		rc = tl_mknod(f->sm, SM_ROOT_ID, "big", DIR_ID(60), S_IFREG | 0644);
		for (size_t off = 0; off < 10 * sizeof(chunk) && !rc; off += sizeof(chunk))
			rc = tl_write(f->sm, DIR_ID(60), off, chunk, sizeof(chunk));
	}
	sm_close(f->sm);
	f->sm = NULL;
	assert_int_equal(umount(f->dir), 0);
	assert_int_equal(rc, 0);
	assert_false(left);
	assert_true(walked >= 2 * 6);
}

// When the dropped tree must go first (space short) and deleting it fails,
// the open fails with that error (logged) instead of rebuilding into a
// disk the rebuild would fill (an apply failing with ENOSPC later stops
// the node applying for good); the next start deletes it and opens. The
// deletion fails here on a mount point inside dropped/ (EBUSY).
static void test_short_of_space_delete_fails(void **state)
{
	struct fx *f = *state;
	char busy[4096];
	if (mount("raftfs-test", f->dir, "tmpfs", 0, "size=4m") != 0) {
		fprintf(stderr, "SKIP: cannot mount a tmpfs (%s)\n", strerror(errno));
		skip();
	}
	write_and_die(f->dir, 10 * (256 << 10));
	tl_fake_boot_id(f->dir);
	snprintf(busy, sizeof(busy), "%s/dropped", f->dir);
	int made = mkdir(busy, 0700);
	snprintf(busy, sizeof(busy), "%s/dropped/busy", f->dir);
	if (!made)
		made = mkdir(busy, 0700);
	int inner = made ? -1 : mount("raftfs-test", busy, "tmpfs", 0, "size=1m");
	int first = inner ? 0 : sm_open(f->dir, 1, &f->sm);
	struct sm *opened = f->sm;
	sm_close(f->sm);
	f->sm = NULL;
	int second = -1;
	bool left = true;
	if (!inner && !umount(busy)) {
		second = sm_open(f->dir, 1, &f->sm);
		left = second || !tl_dropped_deleted(f->dir);
		sm_close(f->sm);
		f->sm = NULL;
	}
	assert_int_equal(umount(f->dir), 0);
	assert_int_equal(made, 0);
	assert_int_equal(inner, 0);
	assert_int_equal(first, -EBUSY);
	assert_null(opened);
	assert_int_equal(second, 0);
	assert_false(left);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_compacted_journal_not_clean, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_compacted_journal_crash_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_installed_state_not_clean, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dropped_left_counted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_short_of_space_deletes_first, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_short_of_space_delete_fails, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
