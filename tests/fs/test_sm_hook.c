// The content-change hook: called before every change of a file's bytes or size, with the
// range that changes, never else.
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"

#define MAX_CALLS 16

// What the hook saw: the ids, the range or gone, and the size each file had
// when it was called (-1 if it could not be read), to check it runs before
// the change.
struct rec {
	struct sm *sm;
	size_t n;
	uint64_t id[MAX_CALLS], off[MAX_CALLS], len[MAX_CALLS];
	bool gone[MAX_CALLS];
	int64_t size[MAX_CALLS];
};

struct fx {
	char *dir;
	struct sm *sm;
	struct rec rec;
};

static void hook(void *arg, uint64_t id, uint64_t off, uint64_t len, bool gone)
{
	struct rec *r = arg;
	struct stat st;
	assert_true(r->n < MAX_CALLS);
	r->id[r->n] = id;
	r->off[r->n] = off;
	r->len[r->n] = len;
	r->gone[r->n] = gone;
	r->size[r->n] = sm_getattr(r->sm, id, &st) == 0 ? (int64_t)st.st_size : -1;
	r->n++;
}

static void open_sm(struct fx *f)
{
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	f->rec.sm = f->sm;
	sm_set_content_hook(f->sm, hook, &f->rec);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->dir = tl_mkdtemp();
	open_sm(f);
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

#define F1 ((1ULL << 48) | 1)
#define F2 ((1ULL << 48) | 2)
#define D1 ((1ULL << 48) | 11)

#define GONE (UINT64_MAX - 1) // expect_one's off: the hook was told the data goes

// One call for id about [off, off + len) (off GONE: its data going), made
// while the file still had size `before`; then forget it.
static void expect_one(struct fx *f, uint64_t id, uint64_t off, uint64_t len, int64_t before)
{
	assert_int_equal(f->rec.n, 1);
	assert_true(f->rec.id[0] == id);
	assert_int_equal(f->rec.gone[0], off == GONE);
	if (off != GONE) {
		assert_int_equal(f->rec.off[0], off);
		assert_int_equal(f->rec.len[0], len);
	}
	assert_int_equal(f->rec.size[0], before);
	f->rec.n = 0;
}

static void test_content_changes_call_it_first(void **state)
{
	struct fx *f = *state;
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "a", F1, S_IFREG | 0644), 0);
	assert_int_equal(f->rec.n, 0); // a new empty file has no old content

	assert_int_equal(tl_write(f->sm, F1, 0, "hello", 5), 0);
	expect_one(f, F1, 0, 5, 0);
	assert_int_equal(tl_write(f->sm, F1, 5, "", 0), 0);
	assert_int_equal(f->rec.n, 0); // nothing written, nothing changed

	Fspb__SetAttr s = FSPB__SET_ATTR__INIT;
	s.ino = F1;
	s.valid = SM_SET_SIZE;
	s.size = 2;
	assert_int_equal(tl_setattr(f->sm, &s), 0);
	expect_one(f, F1, 2, SM_CONTENT_TO_END, 5); // everything from the new size

	assert_int_equal(tl_fallocate(f->sm, F1, 0, 0, 100), 0);
	expect_one(f, F1, 0, 100, 2);
	assert_int_equal(tl_fallocate(f->sm, F1, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 3, 10),
			 0);
	expect_one(f, F1, 3, 10, 100);
	assert_int_equal(tl_fallocate(f->sm, F1, FALLOC_FL_ZERO_RANGE, 50, 100), 0);
	expect_one(f, F1, 50, 100, 100);
	assert_int_equal(tl_fallocate(f->sm, F1, FALLOC_FL_KEEP_SIZE, 0, 400), 0);
	expect_one(f, F1, 0, 400, 150);
	// An append is told where it applies: at the size then.
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Write w = FSPB__WRITE__INIT;
	w.ino = F1;
	w.append = true;
	w.data.data = (uint8_t *)"tail";
	w.data.len = 4;
	c.op_case = FSPB__COMMAND__OP_WRITE;
	c.write = &w;
	c.time_ns = 2;
	size_t len;
	uint8_t *buf = tl_pack(&c, &len);
	int result = -1;
	assert_int_equal(sm_apply(f->sm, sm_applied_index(f->sm) + 1, 0, 0, 0, buf, len, &result),
			 0);
	assert_int_equal(result, 0);
	expect_one(f, F1, 150, 4, 150);
	free(buf);
}

static void test_metadata_and_failures_do_not(void **state)
{
	struct fx *f = *state;
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "a", F1, S_IFREG | 0644), 0);
	assert_int_equal(tl_mkdir(f->sm, SM_ROOT_ID, "d", D1, 0755), 0);
	assert_int_equal(tl_symlink(f->sm, SM_ROOT_ID, "s", F2, "a"), 0);
	Fspb__SetAttr s = FSPB__SET_ATTR__INIT;
	s.ino = F1;
	s.valid = SM_SET_MODE | SM_SET_UID | SM_SET_GID | SM_SET_MTIME;
	s.mode = 0600;
	s.uid = 7;
	s.gid = 8;
	s.mtime_ns = 42;
	assert_int_equal(tl_setattr(f->sm, &s), 0);
	assert_int_equal(tl_setxattr(f->sm, F1, "user.x", "v", 0), 0);
	assert_int_equal(tl_removexattr(f->sm, F1, "user.x"), 0);
	assert_int_equal(tl_link(f->sm, F1, D1, "b"), 0);
	assert_int_equal(tl_rename(f->sm, D1, "b", SM_ROOT_ID, "c", 0), 0);
	assert_int_equal(tl_unlink(f->sm, SM_ROOT_ID, "c", 0), 0);
	// Failed commands change nothing.
	assert_int_equal(tl_write(f->sm, D1, 0, "x", 1), EISDIR);
	assert_int_equal(tl_write(f->sm, F2, 0, "x", 1), EINVAL);
	s.valid = SM_SET_SIZE;
	s.ino = D1;
	assert_int_equal(tl_setattr(f->sm, &s), EISDIR);
	assert_int_equal(tl_fallocate(f->sm, F1, 0, 0, 0), EINVAL);
	assert_int_equal(tl_release(f->sm, F1), EBUSY);
	assert_int_equal(f->rec.n, 0);
}

// A name going away keeps the data (an orphan); the Release that drops it
// is the change, with the orphan's content still there when the hook runs.
static void test_data_deleted_for_good(void **state)
{
	struct fx *f = *state;
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "a", F1, S_IFREG | 0644), 0);
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "b", F2, S_IFREG | 0644), 0);
	assert_int_equal(tl_write(f->sm, F1, 0, "abc", 3), 0);
	assert_int_equal(tl_write(f->sm, F2, 0, "defg", 4), 0);
	f->rec.n = 0;
	assert_int_equal(tl_unlink(f->sm, SM_ROOT_ID, "a", 0), 0);
	assert_int_equal(tl_rename(f->sm, SM_ROOT_ID, "b", SM_ROOT_ID, "c", 0), 0);
	assert_int_equal(f->rec.n, 0);
	assert_int_equal(tl_release(f->sm, F1), 0);
	expect_one(f, F1, GONE, 0, 3);
	assert_int_equal(tl_release(f->sm, F1), ENOENT);
	assert_int_equal(f->rec.n, 0);
}

// Stops a Write after its first step, reopens, redoes it: the hook runs again.
static void test_called_again_on_redo(void **state)
{
	struct fx *f = *state;
	assert_int_equal(tl_mknod(f->sm, SM_ROOT_ID, "a", F1, S_IFREG | 0644), 0);
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Write w = FSPB__WRITE__INIT;
	w.ino = F1;
	w.data.data = (uint8_t *)"redo";
	w.data.len = 4;
	c.op_case = FSPB__COMMAND__OP_WRITE;
	c.write = &w;
	c.time_ns = 1;
	size_t len;
	uint8_t *buf = tl_pack(&c, &len);
	uint64_t index = sm_applied_index(f->sm) + 1;
	int result = -1;
	sm_test_crash_at(f->sm, 1);
	assert_int_equal(sm_apply(f->sm, index, 0, 0, 0, buf, len, &result), -ECANCELED);
	expect_one(f, F1, 0, 4, 0);
	sm_close(f->sm);
	open_sm(f);
	assert_int_equal(sm_applied_index(f->sm), index - 1);
	assert_int_equal(sm_apply(f->sm, index, 0, 0, 0, buf, len, &result), 0);
	assert_int_equal(result, 0);
	expect_one(f, F1, 0, 4, 4); // the bytes written before the "crash" are there already
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_content_changes_call_it_first, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_metadata_and_failures_do_not, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_data_deleted_for_good, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_called_again_on_redo, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
