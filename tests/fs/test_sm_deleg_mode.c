// The holder's close mode in a delegation (Deleg.close_behind,
// Mkdir.grant_close_behind): set by the grant, kept across a restart and a
// redo, cleared when the delegation ends, and read as "synchronous" from a
// delegation stored before the flag existed.
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"

#define D1 ((1ULL << 48) | 1)
#define D2 ((1ULL << 48) | 2)
#define F1 ((1ULL << 48) | 11)

struct fx {
	char *dir;
	struct sm *sm;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->dir = tl_mkdtemp();
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

static int deleg_as(struct sm *sm, uint32_t node, uint64_t dir, int op, uint64_t epoch,
		    bool behind)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Deleg g = FSPB__DELEG__INIT;
	g.dir = dir;
	g.op = op;
	g.epoch = epoch;
	g.close_behind = behind;
	c.op_case = FSPB__COMMAND__OP_DELEG;
	c.deleg = &g;
	c.node = node;
	return tl_apply(sm, &c);
}

static void expect(struct sm *sm, uint64_t dir, uint32_t holder, uint64_t epoch, bool behind)
{
	uint32_t h = 99;
	uint64_t e = 99;
	bool b = !behind;
	assert_int_equal(sm_deleg_mode(sm, dir, &h, &e, &b), 0);
	assert_int_equal(h, holder);
	assert_int_equal(e, epoch);
	assert_int_equal(b, behind);
}

// Restarts the state machine: the start-up scan reads the flag back from
// the directory's xattr.
static void reopen(struct fx *f)
{
	sm_close(f->sm);
	f->sm = NULL;
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
}

static void test_life(void **state)
{
	struct fx *f = *state;
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);

	// Made by a mount that closes behind / synchronously.
	assert_int_equal(tl_mkdir_as(f->sm, 2, SM_ROOT_ID, "b", D1, true, true), 0);
	assert_int_equal(tl_mkdir_as(f->sm, 3, SM_ROOT_ID, "c", D2, true, false), 0);
	expect(f->sm, D1, 2, 1, true);
	expect(f->sm, D2, 3, 1, false);
	// The flag without a grant means nothing.
	assert_int_equal(tl_mkdir_as(f->sm, 2, D1, "x", F1, false, true), 0);
	expect(f->sm, F1, 0, 0, false);
	reopen(f);
	expect(f->sm, D1, 2, 1, true);
	expect(f->sm, D2, 3, 1, false);

	// A grant to the holder again changes nothing, the flag neither.
	assert_int_equal(deleg_as(f->sm, 2, D1, FSPB__DELEG__OP__GRANT, 0, false), 0);
	expect(f->sm, D1, 2, 1, true);
	assert_int_equal(deleg_as(f->sm, 3, D2, FSPB__DELEG__OP__GRANT, 0, true), 0);
	expect(f->sm, D2, 3, 1, false);
	// A recall changes nothing either.
	assert_int_equal(deleg_as(f->sm, 1, D1, FSPB__DELEG__OP__RECALL, 1, false), 0);
	expect(f->sm, D1, 2, 1, true);

	// Return and revoke end it with its mode.
	assert_int_equal(deleg_as(f->sm, 2, D1, FSPB__DELEG__OP__RETURN, 1, false), 0);
	expect(f->sm, D1, 0, 1, false);
	assert_int_equal(deleg_as(f->sm, 1, D1, FSPB__DELEG__OP__GRANT, 0, false), 0);
	expect(f->sm, D1, 1, 2, false);
	assert_int_equal(deleg_as(f->sm, 1, D1, FSPB__DELEG__OP__RETURN, 2, false), 0);
	assert_int_equal(deleg_as(f->sm, 3, D1, FSPB__DELEG__OP__GRANT, 0, true), 0);
	expect(f->sm, D1, 3, 3, true);
	reopen(f);
	expect(f->sm, D1, 3, 3, true);
	assert_int_equal(deleg_as(f->sm, 1, D1, FSPB__DELEG__OP__REVOKE, 3, false), 0);
	expect(f->sm, D1, 0, 3, false);
	reopen(f);
	expect(f->sm, D1, 0, 3, false);
	// A refused grant leaves the holder's mode.
	assert_int_equal(deleg_as(f->sm, 2, D2, FSPB__DELEG__OP__GRANT, 0, true), EREMOTE);
	expect(f->sm, D2, 3, 1, false);
}

// A delegation stored before the flag existed (12 bytes: holder, epoch) is
// one whose holder closes synchronously; a bad length is refused at start.
static void test_old_format(void **state)
{
	struct fx *f = *state;
	char path[4096];
	uint8_t old[12];
	uint32_t holder = 2;
	uint64_t epoch = 5;

	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(tl_mkdir_as(f->sm, 2, SM_ROOT_ID, "b", D1, true, true), 0);
	sm_close(f->sm);
	f->sm = NULL;
	snprintf(path, sizeof(path), "%s/tree/b", f->dir);
	memcpy(old, &holder, 4);
	memcpy(old + 4, &epoch, 8);
	assert_int_equal(lsetxattr(path, "trusted.raftfs.deleg", old, sizeof(old), 0), 0);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	expect(f->sm, D1, 2, 5, false);
	sm_close(f->sm);
	f->sm = NULL;
	assert_int_equal(lsetxattr(path, "trusted.raftfs.deleg", old, 7, 0), 0);
	assert_int_not_equal(sm_open(f->dir, 1, &f->sm), 0);
	f->sm = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_life, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_old_format, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
