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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"
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

// A boot id no machine has: the next open sees a restarted machine.
static void fake_boot_id(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/sm/boot", dir);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("00000000-0000-0000-0000-000000000000\n", fp);
	fclose(fp);
}

// A child opens the data dir with a journal limit of 4 records, applies
// every entry and dies without closing: the machine then loses power.
static void apply_all_and_die(struct fx *f)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sm *sm;
		int r = 0, bad = sm_open(f->dir, 1, &sm);
		if (!bad)
			sm_set_journal_limit(sm, 4 * REC);
		for (int i = 1; i <= ENTRIES && !bad; i++)
			bad = sm_apply(sm, (uint64_t)i, 0, 0, 0, f->cmd[i], f->len[i], &r) || r;
		_exit(bad);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
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
	fake_boot_id(f->dir);
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

// Node 1's image at index 2 (a directory and a file) into path.
static void make_image(const char *path)
{
	char *src = tl_mkdtemp();
	struct sm *a;
	uint64_t index;
	assert_int_equal(sm_open(src, 1, &a), 0);
	assert_int_equal(tl_mkdir(a, SM_ROOT_ID, "img", DIR_ID(50), 0755), 0);
	assert_int_equal(tl_mknod(a, DIR_ID(50), "f", DIR_ID(51), S_IFREG | 0644), 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(sm_snapshot_make(a, sm_snap_fd_sink, &fd, &index), 0);
	close(fd);
	sm_close(a);
	tl_rmtree(src);
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
	make_image(path);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sm *sm;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		_exit(fd < 0 || sm_open(f->dir, 1, &sm) ||
		      sm_snapshot_install(sm, sm_snap_fd_source, &fd) || sm_applied_index(sm) != 2);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	tl_rmtree(img_dir);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	fake_boot_id(f->dir);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_fault(f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), 0);
	assert_int_equal(sm_lookup(f->sm, SM_ROOT_ID, "img", &st), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_compacted_journal_not_clean, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_compacted_journal_crash_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_installed_state_not_clean, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
