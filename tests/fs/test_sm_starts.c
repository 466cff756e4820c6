// Every node's last start command and the Revoke checked against it at
// apply (fs/sm_starts.h): a Revoke that knew an older start of the holder
// than the holder's last changes nothing, only while every named member
// honours the rule and every member's table is complete for the starts it
// looks at; the table and the local since survive a restart, travel in
// snapshot images, and a state or image from before them still loads.
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"
#include "sm_starts.h"
#include "snap_node.h"

#define D1 ((2ULL << 48) | 1)
#define D2 ((2ULL << 48) | 2)
#define D3 ((2ULL << 48) | 3)

struct fx {
	char *dir, *other;
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
	tl_rmtree(f->other);
	free(f);
	return 0;
}

static const uint32_t ALL[] = {1, 2, 3};

// A start command of node (caps, since as it says them): its index.
static uint64_t start_as(struct sm *sm, uint32_t node, uint32_t caps, uint64_t since)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	c.node = node;
	c.start_caps = caps;
	c.start_since = since;
	assert_int_equal(tl_apply(sm, &c), EINVAL); // no operation, as before
	assert_int_equal(sm_start_index(sm, node), sm_applied_index(sm));
	return sm_applied_index(sm);
}

// Node 2 makes directory name (id) and holds it.
static void held_dir(struct sm *sm, const char *name, uint64_t id)
{
	assert_int_equal(tl_mkdir_as(sm, 2, SM_ROOT_ID, name, id, true, false), 0);
}

// Node 1 revokes dir (epoch) knowing the holder's start `known`, naming
// members (knows: the new fields set at all).
static int revoke(struct sm *sm, uint64_t dir, uint64_t epoch, bool knows, uint64_t known,
		  const uint32_t *members, size_t n)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Deleg g = FSPB__DELEG__INIT;
	g.dir = dir;
	g.op = FSPB__DELEG__OP__REVOKE;
	g.epoch = epoch;
	g.knows_start = knows;
	g.holder_start = known;
	g.members = (uint32_t *)members;
	g.n_members = n;
	c.op_case = FSPB__COMMAND__OP_DELEG;
	c.deleg = &g;
	c.node = 1;
	return tl_apply(sm, &c);
}

static uint32_t holder_of(struct sm *sm, uint64_t dir)
{
	uint32_t h = 99;
	uint64_t e;
	assert_int_equal(sm_deleg(sm, dir, &h, &e), 0);
	return h;
}

static uint64_t since_of(struct sm *sm)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	sm_start_fill(sm, &c);
	assert_int_equal(c.start_caps, SM_START_CAP_REVOKE_KNOWS);
	return c.start_since;
}

static void reopen(struct fx *f)
{
	sm_close(f->sm);
	f->sm = NULL;
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
}

// The table's bytes, and a full table giving way to a new node.
static void test_codec(void **state)
{
	(void)state;
	struct sm_starts t = {0}, back;
	uint8_t buf[SM_STARTS_BYTES];
	size_t len;

	for (uint32_t i = 0; i < SM_STARTS_MAX; i++)
		sm_starts_put(&t, i + 1, 1, 100 + i, i);
	sm_starts_put(&t, 5, 0, 500, 7); // an existing node: replaced
	assert_int_equal(t.n, SM_STARTS_MAX);
	sm_starts_put(&t, 99, 1, 600, 0); // full: node 1 (the oldest, 100) goes
	assert_null(sm_starts_find(&t, 1));
	assert_int_equal(sm_starts_find(&t, 99)->index, 600);
	len = sm_starts_encode(&t, buf);
	assert_int_equal(len, SM_STARTS_BYTES);
	assert_int_equal(sm_starts_decode(buf, len, &back), 0);
	assert_memory_equal(&back, &t, sizeof(t));
	assert_int_equal(sm_starts_find(&back, 5)->since, 7);
	assert_int_equal(sm_starts_decode(buf, len - 1, &back), -EBADMSG);
	buf[0] = 2;
	assert_int_equal(sm_starts_decode(buf, len, &back), -EBADMSG);
}

// The rule alone: who must have said what, and when.
static void test_honoured(void **state)
{
	(void)state;
	struct sm_starts t = {0};
	Fspb__Deleg g = FSPB__DELEG__INIT;

	assert_false(sm_starts_honoured(&t, ALL, 3));
	sm_starts_put(&t, 1, 1, 10, 0);
	sm_starts_put(&t, 2, 1, 11, 0);
	assert_false(sm_starts_honoured(&t, ALL, 3)); // node 3: no start yet
	assert_true(sm_starts_honoured(&t, ALL, 2));
	assert_false(sm_starts_honoured(&t, ALL, 0)); // no members named
	sm_starts_put(&t, 3, 0, 12, 0);
	assert_false(sm_starts_honoured(&t, ALL, 3)); // node 3: an older binary
	sm_starts_put(&t, 3, 1, 13, 11);
	assert_false(sm_starts_honoured(&t, ALL, 3)); // node 2's start (11) not after 11
	sm_starts_put(&t, 2, 1, 14, 0);
	assert_false(sm_starts_honoured(&t, ALL, 3)); // node 1's (10) neither
	sm_starts_put(&t, 1, 1, 15, 0);
	assert_true(sm_starts_honoured(&t, ALL, 3));

	g.members = (uint32_t *)ALL;
	g.n_members = 3;
	g.holder_start = 13;
	assert_int_equal(sm_starts_revoke_result(&t, &g, 3), 0); // not knows_start
	g.knows_start = true;
	assert_int_equal(sm_starts_revoke_result(&t, &g, 3), 0); // knew the last
	g.holder_start = 12;
	assert_int_equal(sm_starts_revoke_result(&t, &g, 3), SM_RESULT_HOLDER_BACK);
	assert_int_equal(sm_starts_revoke_result(&t, &g, 4), 0); // a holder with no start
	g.holder_start = 20;
	assert_int_equal(sm_starts_revoke_result(&t, &g, 3), 0);
}

// Applied: a Revoke that knew an older start of the holder changes nothing;
// one that knew the last revokes; so does any Revoke while a member has no
// start, or an older binary's, or while a member's table is younger than
// some member's last start; the table survives a restart.
static void test_apply(void **state)
{
	struct fx *f = *state;
	uint64_t s2;

	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(since_of(f->sm), 0); // a fresh tree: complete from the start
	start_as(f->sm, 1, 1, 0);
	s2 = start_as(f->sm, 2, 1, 0);
	held_dir(f->sm, "d", D1);
	held_dir(f->sm, "e", D2);
	// Node 3 has no start yet: the rule is off, the Revoke revokes.
	assert_int_equal(revoke(f->sm, D1, 1, true, 0, ALL, 3), 0);
	assert_int_equal(holder_of(f->sm, D1), 0);
	start_as(f->sm, 3, 1, 0);
	// Node 2 came back (a new start) after node 1 decided on s2.
	start_as(f->sm, 2, 1, 0);
	assert_int_equal(revoke(f->sm, D2, 1, true, s2, ALL, 3), SM_RESULT_HOLDER_BACK);
	assert_int_equal(holder_of(f->sm, D2), 2);
	// An older revoker (no knows_start): revokes as before.
	s2 = sm_start_index(f->sm, 2);
	reopen(f);
	assert_int_equal(sm_start_index(f->sm, 2), s2);
	assert_int_equal(since_of(f->sm), 0); // kept, though applied moved
	assert_int_equal(revoke(f->sm, D2, 1, false, s2, ALL, 3), 0);
	assert_int_equal(holder_of(f->sm, D2), 0);

	// Node 3 restarted with an older binary: off for everyone.
	held_dir(f->sm, "g", D1 + 10);
	s2 = sm_start_index(f->sm, 2);
	start_as(f->sm, 2, 1, 0);
	start_as(f->sm, 3, 0, 0);
	assert_int_equal(revoke(f->sm, D1 + 10, 1, true, s2, ALL, 3), 0);
	assert_int_equal(holder_of(f->sm, D1 + 10), 0);

	// Node 3 upgraded: its table is complete from since3 only, and node
	// 1's start is older (node 3 may have missed it), so the rule stays
	// off, and node 1 (and node 2, whose start is older too) is told to
	// start again.
	uint64_t since3 = sm_applied_index(f->sm);
	held_dir(f->sm, "h", D1 + 11);
	start_as(f->sm, 3, 1, since3);
	assert_true(sm_start_outdated(f->sm, 1));
	assert_true(sm_start_outdated(f->sm, 2));
	assert_false(sm_start_outdated(f->sm, 3));
	assert_false(sm_start_outdated(f->sm, 4)); // no start: nothing to redo
	// A since past its own start's index cannot be: not a reason to start
	// again (every node would, until the log passed it).
	start_as(f->sm, 4, 1, sm_applied_index(f->sm) + 1000);
	assert_false(sm_start_outdated(f->sm, 3));
	s2 = start_as(f->sm, 2, 1, 0);
	start_as(f->sm, 2, 1, 0);
	assert_int_equal(revoke(f->sm, D1 + 11, 1, true, s2, ALL, 3), 0); // node 1: still old
	assert_int_equal(holder_of(f->sm, D1 + 11), 0);
	start_as(f->sm, 1, 1, 0);
	assert_false(sm_start_outdated(f->sm, 1));
	assert_false(sm_start_outdated(f->sm, 2));
	held_dir(f->sm, "i", D1 + 12);
	s2 = start_as(f->sm, 2, 1, 0);
	start_as(f->sm, 2, 1, 0);
	assert_int_equal(revoke(f->sm, D1 + 12, 1, true, s2, ALL, 3), SM_RESULT_HOLDER_BACK);
	assert_int_equal(holder_of(f->sm, D1 + 12), 2);
	assert_int_equal(revoke(f->sm, D1 + 12, 1, true, s2 + 1, ALL, 3), 0);
	assert_int_equal(holder_of(f->sm, D1 + 12), 0);
}

// A state from before the table (no xattrs on the root) loads: no entries,
// and a since at the applied index (this binary did not see the starts
// before it). A table that does not decode stops the open.
static void test_old_state(void **state)
{
	struct fx *f = *state;
	char root[4096];
	uint64_t at;

	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	start_as(f->sm, 2, 1, 0);
	held_dir(f->sm, "d", D1);
	at = sm_applied_index(f->sm);
	sm_close(f->sm);
	f->sm = NULL;
	snprintf(root, sizeof(root), "%s/tree", f->dir);
	assert_int_equal(lremovexattr(root, SM_XATTR_STARTS), 0);
	assert_int_equal(lremovexattr(root, SM_XATTR_START_SINCE), 0);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_start_index(f->sm, 2), 0);
	assert_int_equal(since_of(f->sm), at);
	assert_int_equal(holder_of(f->sm, D1), 2);
	reopen(f);
	assert_int_equal(since_of(f->sm), at);
	sm_close(f->sm);
	f->sm = NULL;
	assert_int_equal(lsetxattr(root, SM_XATTR_STARTS, "\1\1", 2, 0), 0);
	assert_int_not_equal(sm_open(f->dir, 1, &f->sm), 0);
	f->sm = NULL;
}

// A node that installs an image holds the same table (and decides the
// same), with its since at the image's index; an image without a table
// (made before it) installs as an empty one.
static void test_image(void **state)
{
	struct fx *f = *state;
	struct tl_image im = {0};
	struct sm *other = NULL;
	uint64_t s2, at;

	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	start_as(f->sm, 1, 1, 0);
	s2 = start_as(f->sm, 2, 1, 0);
	start_as(f->sm, 3, 1, 0);
	held_dir(f->sm, "d", D1);
	start_as(f->sm, 2, 1, 0);
	at = sm_applied_index(f->sm);
	assert_int_equal(snap_node_snapshot(f->sm, tl_image_put, &im), 0);
	f->other = tl_mkdtemp();
	assert_int_equal(sm_open(f->other, 3, &other), 0);
	assert_int_equal(snap_node_restore(other, at, tl_image_get, &im), 0);
	free(im.buf);
	memset(&im, 0, sizeof(im));
	for (uint32_t n = 1; n <= 3; n++)
		assert_int_equal(sm_start_index(other, n), sm_start_index(f->sm, n));
	assert_int_equal(since_of(other), at);
	// Its own last start (node 3's, in the image) says since 0: it must
	// start again, saying the image's index.
	assert_true(sm_start_outdated(other, 3));
	assert_false(sm_start_outdated(f->sm, 3)); // node 1's view of node 3
	sm_close(other);
	assert_int_equal(sm_open(f->other, 3, &other), 0);
	assert_true(sm_start_outdated(other, 3));
	assert_int_equal(sm_start_index(other, 2), s2 + 3);
	assert_int_equal(since_of(other), at);
	// Both decide alike: a Revoke knowing s2 changes nothing on either.
	assert_int_equal(revoke(other, D1, 1, true, s2, ALL, 3), SM_RESULT_HOLDER_BACK);
	assert_int_equal(revoke(f->sm, D1, 1, true, s2, ALL, 3), SM_RESULT_HOLDER_BACK);
	start_as(other, 3, 1, at); // the start it then proposes
	assert_false(sm_start_outdated(other, 3));

	// An image of a state without the table.
	char root[4096];
	sm_close(f->sm);
	f->sm = NULL;
	snprintf(root, sizeof(root), "%s/tree", f->dir);
	assert_int_equal(lremovexattr(root, SM_XATTR_STARTS), 0);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(snap_node_snapshot(f->sm, tl_image_put, &im), 0);
	at = sm_applied_index(f->sm);
	sm_close(other);
	tl_rmtree(f->other);
	f->other = tl_mkdtemp();
	assert_int_equal(sm_open(f->other, 3, &other), 0);
	assert_int_equal(snap_node_restore(other, at, tl_image_get, &im), 0);
	free(im.buf);
	assert_int_equal(sm_start_index(other, 2), 0);
	assert_int_equal(revoke(other, D1, 1, true, s2, ALL, 3), 0);
	assert_int_equal(holder_of(other, D1), 0);
	sm_close(other);
}

// Node 3 (B) installs an image made by an older binary (no table) while
// node 1 (C) kept its table; both then apply the same log and must decide
// every Revoke alike. B's own start is gone from its table: it must start
// again (saying the image's index), and until then its Revokes must not
// say what it knows (its table lacks the holder's start the others have).
static void test_table_less_install(void **state)
{
	struct fx *f = *state;
	struct tl_image im = {0};
	struct sm *other = NULL;
	uint64_t s2, at;
	char root[4096];
	uint8_t saved[SM_STARTS_BYTES];
	ssize_t n;

	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	start_as(f->sm, 1, 1, 0);
	start_as(f->sm, 2, 1, 0);
	start_as(f->sm, 3, 1, 0);
	held_dir(f->sm, "d", D1);
	held_dir(f->sm, "e", D2);
	held_dir(f->sm, "g", D3);
	// The image as an older binary makes it: the same tree, no table.
	sm_close(f->sm);
	f->sm = NULL;
	snprintf(root, sizeof(root), "%s/tree", f->dir);
	n = lgetxattr(root, SM_XATTR_STARTS, saved, sizeof(saved));
	assert_true(n > 0);
	assert_int_equal(lremovexattr(root, SM_XATTR_STARTS), 0);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(snap_node_snapshot(f->sm, tl_image_put, &im), 0);
	at = sm_applied_index(f->sm);
	sm_close(f->sm);
	f->sm = NULL;
	assert_int_equal(lsetxattr(root, SM_XATTR_STARTS, saved, (size_t)n, 0), 0);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	f->other = tl_mkdtemp();
	assert_int_equal(sm_open(f->other, 3, &other), 0);
	assert_int_equal(snap_node_restore(other, at, tl_image_get, &im), 0);
	free(im.buf);
	assert_int_equal(sm_start_index(other, 3), 0);
	assert_int_equal(since_of(other), at);
	assert_true(sm_start_outdated(other, 3));
	assert_false(sm_start_knows(other));
	assert_true(sm_start_knows(f->sm));

	// B revokes holder 2 as propose_revoke says it: knowing nothing.
	assert_int_equal(revoke(f->sm, D1, 1, sm_start_knows(other), sm_start_index(other, 2),
				ALL, 3),
			 0);
	assert_int_equal(revoke(other, D1, 1, sm_start_knows(other), sm_start_index(other, 2),
				ALL, 3),
			 0);
	assert_int_equal(holder_of(f->sm, D1), 0);
	assert_int_equal(holder_of(other, D1), 0);

	// B starts again, saying the image's index; then node 2 restarts
	// after a decision that knew its start before. The rule is off on
	// both (node 1's last start is before B's since): both revoke.
	s2 = sm_start_index(f->sm, 2);
	start_as(f->sm, 3, 1, at);
	start_as(other, 3, 1, at);
	assert_false(sm_start_outdated(other, 3));
	assert_true(sm_start_knows(other));
	start_as(f->sm, 2, 1, 0);
	start_as(other, 2, 1, 0);
	assert_int_equal(revoke(f->sm, D2, 1, true, s2, ALL, 3), 0);
	assert_int_equal(revoke(other, D2, 1, true, s2, ALL, 3), 0);

	// Node 1 (whose own table says so) then starts again too: the rule is
	// on on both, and a Revoke knowing node 2's older start changes
	// nothing.
	assert_true(sm_start_outdated(f->sm, 1));
	start_as(f->sm, 1, 1, 0);
	start_as(other, 1, 1, 0);
	assert_false(sm_start_outdated(f->sm, 1));
	assert_int_equal(revoke(f->sm, D3, 1, true, s2, ALL, 3), SM_RESULT_HOLDER_BACK);
	assert_int_equal(revoke(other, D3, 1, true, s2, ALL, 3), SM_RESULT_HOLDER_BACK);
	assert_int_equal(holder_of(f->sm, D3), 2);
	assert_int_equal(holder_of(other, D3), 2);
	sm_close(other);
}

// The root's xattr block holds the user's xattrs up to their limit
// (apply.c, MAX_XATTR_SPACE: one value as large as it allows, the
// tightest case in ext4's measure) beside a full table: the start note
// never fails on space (a failed note stops the node), the user's next
// xattr gets ENOSPC, and the table survives a reopen.
static void test_full_root_xattrs(void **state)
{
	struct fx *f = *state;
	char big[3072 - 16 - 8 + 1];

	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(tl_setxattr(f->sm, SM_ROOT_ID, "user.a", big, 0), 0);
	assert_int_equal(tl_setxattr(f->sm, SM_ROOT_ID, "user.b", "v", 0), ENOSPC);
	for (uint32_t n = 1; n <= SM_STARTS_MAX + 1; n++)
		start_as(f->sm, n, 1, sm_applied_index(f->sm));
	reopen(f);
	assert_int_equal(sm_start_index(f->sm, 1), 0); // the oldest went
	for (uint32_t n = 2; n <= SM_STARTS_MAX + 1; n++)
		assert_int_not_equal(sm_start_index(f->sm, n), 0);
	assert_int_equal(tl_setxattr(f->sm, SM_ROOT_ID, "user.b", "v", 0), ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codec),
	    cmocka_unit_test(test_honoured),
	    cmocka_unit_test_setup_teardown(test_apply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_old_state, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_image, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_table_less_install, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_full_root_xattrs, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
