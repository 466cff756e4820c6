// Directory delegations in the state machine: who may change a delegated
// directory's entries, Grant/Recall/Return/Revoke, the state kept across a
// restart, the hook, and crash-redo of every step of the new commands.
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"
#include "snap_node.h"
#include "tree_compare.h"

#define D1 ((1ULL << 48) | 1)
#define D2 ((1ULL << 48) | 2)
#define D3 ((1ULL << 48) | 3)
#define F1 ((1ULL << 48) | 11)
#define F2 ((1ULL << 48) | 12)
#define F3 ((1ULL << 48) | 13)
#define F4 ((1ULL << 48) | 14)

struct fx {
	char *dir;
	struct sm *sm;
	char *ref;
	uint8_t *cmd[32];
	size_t len[32];
	int n;
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
	tl_rmtree(f->ref);
	for (int i = 0; i < f->n; i++)
		free(f->cmd[i]);
	free(f);
	return 0;
}

// Builders of commands as node `node` proposes them; behind: answered
// before it applied (write-behind under the node's delegation).
static void who(Fspb__Command *c, uint32_t node, int behind)
{
	c->node = node;
	c->behind = behind != 0;
}

static int mknod_as(struct sm *sm, uint32_t node, int behind, uint64_t parent, const char *name,
		    uint64_t ino)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	m.parent = parent;
	m.name = (char *)name;
	m.ino = ino;
	m.mode = S_IFREG | 0644;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	who(&c, node, behind);
	return tl_apply(sm, &c);
}

static int unlink_as(struct sm *sm, uint32_t node, int behind, uint64_t parent, const char *name,
		     int dir)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Unlink u = FSPB__UNLINK__INIT;
	u.parent = parent;
	u.name = (char *)name;
	u.dir = dir != 0;
	c.op_case = FSPB__COMMAND__OP_UNLINK;
	c.unlink = &u;
	who(&c, node, behind);
	return tl_apply(sm, &c);
}

static int rename_as(struct sm *sm, uint32_t node, int behind, uint64_t p, const char *n,
		     uint64_t np, const char *nn)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Rename r = FSPB__RENAME__INIT;
	r.parent = p;
	r.name = (char *)n;
	r.new_parent = np;
	r.new_name = (char *)nn;
	c.op_case = FSPB__COMMAND__OP_RENAME;
	c.rename = &r;
	who(&c, node, behind);
	return tl_apply(sm, &c);
}

static int link_as(struct sm *sm, uint32_t node, uint64_t ino, uint64_t np, const char *nn)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Link l = FSPB__LINK__INIT;
	l.ino = ino;
	l.new_parent = np;
	l.new_name = (char *)nn;
	c.op_case = FSPB__COMMAND__OP_LINK;
	c.link = &l;
	who(&c, node, 0);
	return tl_apply(sm, &c);
}

static void deleg_cmd(Fspb__Command *c, Fspb__Deleg *g, uint32_t node, uint64_t dir, int op,
		      uint64_t epoch)
{
	g->dir = dir;
	g->op = op;
	g->epoch = epoch;
	c->op_case = FSPB__COMMAND__OP_DELEG;
	c->deleg = g;
	who(c, node, 0);
}

static int deleg_as(struct sm *sm, uint32_t node, uint64_t dir, int op, uint64_t epoch)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Deleg g = FSPB__DELEG__INIT;
	deleg_cmd(&c, &g, node, dir, op, epoch);
	return tl_apply(sm, &c);
}

static void expect_deleg(struct sm *sm, uint64_t dir, uint32_t holder, uint64_t epoch)
{
	uint32_t h = 99;
	uint64_t e = 99;
	assert_int_equal(sm_deleg(sm, dir, &h, &e), 0);
	assert_int_equal(h, holder);
	assert_int_equal(e, epoch);
}

struct hook_log {
	int calls;
	uint64_t dir;
	int op;
	uint32_t node, holder;
	uint64_t epoch;
};

static void hook(void *arg, uint64_t dir, int op, uint32_t node, uint32_t holder, uint64_t epoch)
{
	struct hook_log *l = arg;
	l->calls++;
	l->dir = dir;
	l->op = op;
	l->node = node;
	l->holder = holder;
	l->epoch = epoch;
}

// Who may change a delegated directory's entries, and the life of a delegation.
static void test_rules(void **state)
{
	struct fx *f = *state;
	struct hook_log log = {0};
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	struct sm *sm = f->sm;
	sm_set_deleg_hook(sm, hook, &log);

	// A Mkdir with grant delegates the new directory to its proposer.
	assert_int_equal(tl_mkdir_as(sm, 2, SM_ROOT_ID, "d", D1, true, false), 0);
	expect_deleg(sm, D1, 2, 1);
	assert_int_equal(log.calls, 1);
	assert_int_equal(log.dir, D1);
	assert_int_equal(log.op, FSPB__DELEG__OP__GRANT);
	assert_int_equal(log.holder, 2);
	// Without grant (or from node 0) nothing is delegated.
	assert_int_equal(tl_mkdir_as(sm, 3, SM_ROOT_ID, "e", D2, false, false), 0);
	expect_deleg(sm, D2, 0, 0);
	expect_deleg(sm, SM_ROOT_ID, 0, 0);

	// Only the holder changes its entries, behind or not.
	assert_int_equal(mknod_as(sm, 2, 1, D1, "f", F1), 0);
	assert_int_equal(mknod_as(sm, 2, 0, D1, "g", F2), 0);
	assert_int_equal(mknod_as(sm, 3, 0, D1, "h", F3), SM_RESULT_DELEGATED);
	assert_int_equal(mknod_as(sm, 0, 0, D1, "h", F3), SM_RESULT_DELEGATED);
	// The check comes first: an existing name is not the non-holder's answer.
	assert_int_equal(mknod_as(sm, 3, 0, D1, "f", F3), SM_RESULT_DELEGATED);
	assert_int_equal(tl_mkdir_as(sm, 3, D1, "x", D3, false, false), SM_RESULT_DELEGATED);
	assert_int_equal(unlink_as(sm, 3, 0, D1, "f", 0), SM_RESULT_DELEGATED);
	assert_int_equal(rename_as(sm, 3, 0, D1, "f", SM_ROOT_ID, "f"), SM_RESULT_DELEGATED);
	assert_int_equal(rename_as(sm, 3, 0, SM_ROOT_ID, "e", D1, "e"), SM_RESULT_DELEGATED);
	assert_int_equal(link_as(sm, 3, F1, D1, "f2"), SM_RESULT_DELEGATED);
	// Changing the files themselves is not an entry change.
	assert_int_equal(tl_write(sm, F1, 0, "abc", 3), 0);
	// A directory delegated to another node cannot be removed or replaced.
	assert_int_equal(unlink_as(sm, 3, 0, SM_ROOT_ID, "d", 1), SM_RESULT_DELEGATED);
	assert_int_equal(rename_as(sm, 3, 0, SM_ROOT_ID, "e", SM_ROOT_ID, "d"),
			 SM_RESULT_DELEGATED);
	// But what could not remove it anyway gets its own answer, not a
	// refusal the mount would retry by recalling the parent (fuzz.faults:
	// a mount whose cache still showed a file there got EAGAIN).
	assert_int_equal(unlink_as(sm, 3, 0, SM_ROOT_ID, "d", 0), EISDIR);
	assert_int_equal(mknod_as(sm, 3, 0, SM_ROOT_ID, "r", F4), 0);
	assert_int_equal(rename_as(sm, 3, 0, SM_ROOT_ID, "r", SM_ROOT_ID, "d"), EISDIR);
	assert_int_equal(unlink_as(sm, 3, 0, SM_ROOT_ID, "r", 0), 0);
	// A behind command for a directory nobody holds fails.
	assert_int_equal(mknod_as(sm, 3, 1, D2, "h", F3), SM_RESULT_DELEGATED);
	assert_int_equal(mknod_as(sm, 2, 0, D1, "h", F3), 0);

	// Recall changes nothing; a wrong epoch is ESTALE.
	int calls = log.calls;
	assert_int_equal(deleg_as(sm, 3, D1, FSPB__DELEG__OP__RECALL, 1), 0);
	assert_int_equal(log.calls, calls + 1);
	assert_int_equal(log.op, FSPB__DELEG__OP__RECALL);
	assert_int_equal(log.node, 3);
	assert_int_equal(log.holder, 2);
	assert_int_equal(deleg_as(sm, 3, D1, FSPB__DELEG__OP__RECALL, 2), ESTALE);
	assert_int_equal(log.calls, calls + 1); // failed commands call nothing
	expect_deleg(sm, D1, 2, 1);
	// Only the holder returns; a grant to another is refused meanwhile.
	assert_int_equal(deleg_as(sm, 3, D1, FSPB__DELEG__OP__RETURN, 1), ESTALE);
	assert_int_equal(deleg_as(sm, 3, D1, FSPB__DELEG__OP__GRANT, 0), SM_RESULT_DELEGATED);
	assert_int_equal(deleg_as(sm, 2, D1, FSPB__DELEG__OP__GRANT, 0), 0); // has it already
	expect_deleg(sm, D1, 2, 1);
	assert_int_equal(deleg_as(sm, 2, D1, FSPB__DELEG__OP__RETURN, 1), 0);
	expect_deleg(sm, D1, 0, 1);
	assert_int_equal(log.holder, 0);
	// The old holder's behind commands now fail; anyone's synchronous ones work.
	assert_int_equal(unlink_as(sm, 2, 1, D1, "g", 0), SM_RESULT_DELEGATED);
	assert_int_equal(unlink_as(sm, 3, 0, D1, "g", 0), 0);
	assert_int_equal(deleg_as(sm, 2, D1, FSPB__DELEG__OP__RETURN, 1), ESTALE);

	// A new grant has a new epoch; a revoke of an old epoch does nothing.
	assert_int_equal(deleg_as(sm, 0, D1, FSPB__DELEG__OP__GRANT, 0), EINVAL);
	assert_int_equal(deleg_as(sm, 3, D1, FSPB__DELEG__OP__GRANT, 0), 0);
	expect_deleg(sm, D1, 3, 2);
	assert_int_equal(deleg_as(sm, 1, D1, FSPB__DELEG__OP__REVOKE, 1), ESTALE);
	expect_deleg(sm, D1, 3, 2);
	assert_int_equal(mknod_as(sm, 2, 0, D1, "g", F2), SM_RESULT_DELEGATED);
	assert_int_equal(deleg_as(sm, 1, D1, FSPB__DELEG__OP__REVOKE, 2), 0);
	expect_deleg(sm, D1, 0, 2);
	assert_int_equal(mknod_as(sm, 3, 1, D1, "g", F2), SM_RESULT_DELEGATED);
	assert_int_equal(deleg_as(sm, 1, F1, FSPB__DELEG__OP__GRANT, 0), ENOTDIR);
	assert_int_equal(deleg_as(sm, 1, D3, FSPB__DELEG__OP__GRANT, 0), ENOENT);
	assert_int_equal(deleg_as(sm, 1, D1, 9, 0), EINVAL);

	// Kept across a restart (the start-up scan reads it from the tree).
	assert_int_equal(deleg_as(sm, 1, D2, FSPB__DELEG__OP__GRANT, 0), 0);
	assert_int_equal(deleg_as(sm, 1, SM_ROOT_ID, FSPB__DELEG__OP__GRANT, 0), 0);
	sm_close(sm);
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	sm = f->sm;
	expect_deleg(sm, D1, 0, 2);
	expect_deleg(sm, D2, 1, 1);
	expect_deleg(sm, SM_ROOT_ID, 1, 1);
	// The holder removes its own (empty) delegated directory.
	assert_int_equal(unlink_as(sm, 2, 0, SM_ROOT_ID, "e", 1), SM_RESULT_DELEGATED);
	assert_int_equal(unlink_as(sm, 1, 1, SM_ROOT_ID, "e", 1), 0);
	assert_int_equal(sm_deleg(sm, D2, &(uint32_t){0}, &(uint64_t){0}), -ENOENT);
	uint32_t h;
	uint64_t e;
	assert_int_equal(sm_deleg(sm, F1, &h, &e), -ENOTDIR);
}

static void add(struct fx *f, Fspb__Command *c)
{
	c->time_ns = 1600000000000000000LL + (int64_t)f->n * 1000000;
	f->cmd[f->n] = tl_pack(c, &f->len[f->n]);
	f->n++;
}

// The scenario of the crash test: every new command and every new rule.
static void build(struct fx *f)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mkdir m = FSPB__MKDIR__INIT;
	Fspb__Mknod k = FSPB__MKNOD__INIT;
	Fspb__Deleg g = FSPB__DELEG__INIT;

	m.parent = SM_ROOT_ID;
	m.name = "d";
	m.ino = D1;
	m.mode = 0755;
	m.grant = true;
	c.op_case = FSPB__COMMAND__OP_MKDIR;
	c.mkdir = &m;
	who(&c, 2, 0);
	add(f, &c);
	k.parent = D1;
	k.name = "f";
	k.ino = F1;
	k.mode = S_IFREG | 0600;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &k;
	who(&c, 2, 1);
	add(f, &c);
	deleg_cmd(&c, &g, 3, D1, FSPB__DELEG__OP__RECALL, 1);
	add(f, &c);
	deleg_cmd(&c, &g, 2, D1, FSPB__DELEG__OP__RETURN, 1);
	add(f, &c);
	deleg_cmd(&c, &g, 3, D1, FSPB__DELEG__OP__GRANT, 0);
	add(f, &c);
	deleg_cmd(&c, &g, 1, D1, FSPB__DELEG__OP__REVOKE, 2);
	add(f, &c);
	deleg_cmd(&c, &g, 1, SM_ROOT_ID, FSPB__DELEG__OP__GRANT, 0);
	add(f, &c);
}

static void print_diff(void *arg, const char *msg)
{
	fprintf(stderr, "  diff (%s): %s\n", (const char *)arg, msg);
}

static void apply_prefix(struct fx *f, struct sm *sm, int n)
{
	int res;
	for (int j = 0; j < n; j++) {
		assert_int_equal(sm_apply(sm, (uint64_t)j + 1, 0, 0, 0, f->cmd[j], f->len[j], &res),
				 0);
		assert_int_equal(res, 0);
	}
}

// Each command of the scenario is stopped after each of its steps, as a
// crash there would; the restarted state machine redoes it and must hold
// the clean run's tree and delegations.
static void test_crash_redo(void **state)
{
	struct fx *f = *state;
	build(f);
	int crashes = 0;
	for (int i = 0; i < f->n; i++) {
		struct hook_log want = {0};
		tl_rmtree(f->ref);
		f->ref = tl_mkdtemp();
		assert_int_equal(sm_open(f->ref, 1, &f->sm), 0);
		apply_prefix(f, f->sm, i);
		sm_set_deleg_hook(f->sm, hook, &want);
		int res0;
		assert_int_equal(
		    sm_apply(f->sm, (uint64_t)i + 1, 0, 0, 0, f->cmd[i], f->len[i], &res0), 0);
		assert_int_equal(res0, 0);
		uint32_t h[2];
		uint64_t e[2];
		assert_int_equal(sm_deleg(f->sm, D1, &h[0], &e[0]), 0);
		assert_int_equal(sm_deleg(f->sm, SM_ROOT_ID, &h[1], &e[1]), 0);
		sm_close(f->sm);
		f->sm = NULL;
		for (int k = 1;; k++) {
			int res;
			struct hook_log got = {0};
			tl_rmtree(f->dir);
			f->dir = tl_mkdtemp();
			assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
			apply_prefix(f, f->sm, i);
			sm_test_crash_at(f->sm, k);
			int rc = sm_apply(f->sm, (uint64_t)i + 1, 0, 0, 0, f->cmd[i], f->len[i], &res);
			sm_close(f->sm);
			f->sm = NULL;
			if (rc == 0)
				break;
			assert_int_equal(rc, -ECANCELED);
			crashes++;
			assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
			sm_set_deleg_hook(f->sm, hook, &got);
			assert_int_equal(sm_applied_index(f->sm), i);
			assert_int_equal(
			    sm_apply(f->sm, (uint64_t)i + 1, 0, 0, 0, f->cmd[i], f->len[i], &res), 0);
			assert_int_equal(res, 0);
			expect_deleg(f->sm, D1, h[0], e[0]);
			expect_deleg(f->sm, SM_ROOT_ID, h[1], e[1]);
			// The redo tells the hook what the clean run's last apply did.
			assert_int_equal(got.dir, want.dir);
			assert_int_equal(got.op, want.op);
			assert_int_equal(got.holder, want.holder);
			assert_int_equal(got.epoch, want.epoch);
			sm_close(f->sm);
			f->sm = NULL;
			// ...and after one more restart (read back from the tree).
			assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
			expect_deleg(f->sm, D1, h[0], e[0]);
			expect_deleg(f->sm, SM_ROOT_ID, h[1], e[1]);
			sm_close(f->sm);
			f->sm = NULL;
			char where[64];
			snprintf(where, sizeof(where), "stop at step %d of command %d", k, i);
			assert_int_equal(tree_compare(f->ref, f->dir, TREE_CMP_DATA, print_diff, where),
					 0);
		}
	}
	fprintf(stderr, "  %d commands, stopped at %d intermediate states, all converged\n", f->n,
		crashes);
	assert_true(crashes >= f->n);
}

// A node that installs a snapshot holds the same delegations as the others:
// the image carries them, and after the install the rules act on them.
static void test_snapshot(void **state)
{
	struct fx *f = *state;
	struct tl_image im = {0};
	struct sm *other = NULL;
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(tl_mkdir_as(f->sm, 2, SM_ROOT_ID, "d", D1, true, false), 0);
	assert_int_equal(tl_mkdir_as(f->sm, 2, SM_ROOT_ID, "e", D2, true, false), 0);
	assert_int_equal(deleg_as(f->sm, 2, D2, FSPB__DELEG__OP__RETURN, 1), 0);
	assert_int_equal(deleg_as(f->sm, 3, D2, FSPB__DELEG__OP__GRANT, 0), 0);
	assert_int_equal(snap_node_snapshot(f->sm, tl_image_put, &im), 0);
	f->ref = tl_mkdtemp();
	assert_int_equal(sm_open(f->ref, 2, &other), 0);
	assert_int_equal(snap_node_restore(other, sm_applied_index(f->sm), tl_image_get, &im), 0);
	free(im.buf);
	expect_deleg(other, D1, 2, 1);
	expect_deleg(other, D2, 3, 2);
	expect_deleg(other, SM_ROOT_ID, 0, 0);
	assert_int_equal(mknod_as(other, 3, 0, D1, "x", F1), SM_RESULT_DELEGATED);
	assert_int_equal(mknod_as(other, 3, 0, D2, "x", F1), 0);
	sm_close(other);
	// ...and after a restart of the installed node.
	assert_int_equal(sm_open(f->ref, 2, &other), 0);
	expect_deleg(other, D1, 2, 1);
	expect_deleg(other, D2, 3, 2);
	sm_close(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_redo, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
