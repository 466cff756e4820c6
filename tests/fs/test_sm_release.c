// Orphans held across nodes: Release{node, ids, voters} on three replicas, restarts, crashes.
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
#include "tree_compare.h"

#define N 3
#define F1 ((1ULL << 48) | 1)
#define F2 ((1ULL << 48) | 2)
#define F3 ((1ULL << 48) | 3)
#define D1 ((1ULL << 48) | 11)
#define MAX_SEEN 64

// Three replicas of one cluster (nodes 1..3), each recording what its
// orphan hook reported.
struct fx {
	char *dir[N];
	struct sm *sm[N];
	uint64_t seen[N][MAX_SEEN];
	size_t n_seen[N];
	int64_t time;
};

struct hook_arg {
	uint64_t *seen;
	size_t *n;
};

static struct hook_arg hooks[N];

static void record_orphan(void *arg, uint64_t id)
{
	struct hook_arg *h = arg;
	assert_true(*h->n < MAX_SEEN);
	h->seen[(*h->n)++] = id;
}

static void open_replica(struct fx *f, int k)
{
	assert_int_equal(sm_open(f->dir[k], (uint32_t)k + 1, &f->sm[k]), 0);
	hooks[k].seen = f->seen[k];
	hooks[k].n = &f->n_seen[k];
	sm_set_orphan_hook(f->sm[k], record_orphan, &hooks[k]);
}

static void reopen(struct fx *f, int k)
{
	sm_close(f->sm[k]);
	open_replica(f, k);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	for (int k = 0; k < N; k++) {
		f->dir[k] = tl_mkdtemp();
		open_replica(f, k);
	}
	f->time = 1700000000000000000LL;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	for (int k = 0; k < N; k++) {
		sm_close(f->sm[k]);
		tl_rmtree(f->dir[k]);
	}
	free(f);
	return 0;
}

// Applies c on every replica at the next index; the results must agree.
static int apply_all(struct fx *f, Fspb__Command *c)
{
	c->time_ns = f->time += 1000;
	size_t len;
	uint8_t *buf = tl_pack(c, &len);
	int first = -1;
	for (int k = 0; k < N; k++) {
		int result = -1;
		assert_int_equal(
		    sm_apply(f->sm[k], sm_applied_index(f->sm[k]) + 1, 0, 0, 0, buf, len, &result),
		    0);
		if (k == 0)
			first = result;
		assert_int_equal(result, first);
	}
	free(buf);
	return first;
}

static int release(struct fx *f, uint32_t node, const uint64_t *ids, size_t n,
		   const uint32_t *voters, size_t nv)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Release r = FSPB__RELEASE__INIT;
	r.node = node;
	r.ids = (uint64_t *)ids;
	r.n_ids = n;
	r.voters = (uint32_t *)voters;
	r.n_voters = nv;
	c.op_case = FSPB__COMMAND__OP_RELEASE;
	c.release = &r;
	return apply_all(f, &c);
}

static const uint32_t all3[N] = {1, 2, 3};

static int release1(struct fx *f, uint32_t node, uint64_t id)
{
	return release(f, node, &id, 1, all3, N);
}

static int mknod_all(struct fx *f, uint64_t parent, const char *name, uint64_t id)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	m.parent = parent;
	m.name = (char *)name;
	m.ino = id;
	m.mode = S_IFREG | 0644;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	return apply_all(f, &c);
}

static int unlink_all(struct fx *f, uint64_t parent, const char *name)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Unlink u = FSPB__UNLINK__INIT;
	u.parent = parent;
	u.name = (char *)name;
	c.op_case = FSPB__COMMAND__OP_UNLINK;
	c.unlink = &u;
	return apply_all(f, &c);
}

static int write_all(struct fx *f, uint64_t id, uint64_t off, const char *data)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Write w = FSPB__WRITE__INIT;
	w.ino = id;
	w.offset = off;
	w.data.data = (uint8_t *)data;
	w.data.len = strlen(data);
	c.op_case = FSPB__COMMAND__OP_WRITE;
	c.write = &w;
	return apply_all(f, &c);
}

// 1 if id still exists on every replica, 0 if on none (anything else fails).
static int exists(struct fx *f, uint64_t id)
{
	struct stat st;
	int there = sm_getattr(f->sm[0], id, &st) == 0;
	for (int k = 1; k < N; k++)
		assert_int_equal(sm_getattr(f->sm[k], id, &st) == 0, there);
	return there;
}

static void print_diff(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "  diff: %s\n", msg);
}

static void same_trees(struct fx *f)
{
	for (int k = 1; k < N; k++)
		assert_int_equal(
		    tree_compare(f->dir[0], f->dir[k], TREE_CMP_DATA, print_diff, NULL), 0);
}

// Every order of the three nodes' releases; the orphan stays readable and
// writable by id until the last, and goes with it. A replica restarts
// between the releases.
static void test_every_order(void **state)
{
	struct fx *f = *state;
	static const int orders[6][N] = {{1, 2, 3}, {1, 3, 2}, {2, 1, 3},
					 {2, 3, 1}, {3, 1, 2}, {3, 2, 1}};
	for (int o = 0; o < 6; o++) {
		uint64_t id = F1 + (uint64_t)o;
		char name[16];
		snprintf(name, sizeof(name), "f%d", o);
		assert_int_equal(mknod_all(f, SM_ROOT_ID, name, id), 0);
		assert_int_equal(write_all(f, id, 0, "data"), 0);
		assert_int_equal(unlink_all(f, SM_ROOT_ID, name), 0);
		for (int i = 0; i < N; i++) {
			uint32_t node = (uint32_t)orders[o][i];
			assert_int_equal(exists(f, id), 1);
			assert_int_equal(sm_orphan_released_by(f->sm[0], id, node), 0);
			// Still written by id, on every replica, by whoever holds it.
			assert_int_equal(write_all(f, id, 4, "+"), 0);
			assert_int_equal(release1(f, node, id), 0);
			if (i < N - 1) {
				for (int k = 0; k < N; k++)
					assert_int_equal(sm_orphan_released_by(f->sm[k], id, node),
							 1);
				same_trees(f);
				// Released twice: changes nothing.
				assert_int_equal(release1(f, node, id), 0);
				reopen(f, (o + i) % N);
				assert_int_equal(
				    sm_orphan_released_by(f->sm[(o + i) % N], id, node), 1);
			}
		}
		assert_int_equal(exists(f, id), 0);
		assert_int_equal(release1(f, 1, id), ENOENT);
	}
	same_trees(f);
}

static void test_results(void **state)
{
	struct fx *f = *state;
	assert_int_equal(mknod_all(f, SM_ROOT_ID, "named", F1), 0);
	assert_int_equal(mknod_all(f, SM_ROOT_ID, "gone", F2), 0);
	assert_int_equal(unlink_all(f, SM_ROOT_ID, "gone"), 0);
	assert_int_equal(release1(f, 1, F1), EBUSY);	      // still named
	assert_int_equal(release1(f, 1, F3), ENOENT);	      // unknown
	assert_int_equal(release1(f, 1, SM_ROOT_ID), EISDIR); // a directory
	assert_int_equal(release(f, 1, NULL, 0, all3, N), EINVAL);
	const uint32_t zero[2] = {1, 0};
	assert_int_equal(release(f, 1, (uint64_t[]){F2}, 1, zero, 2), EINVAL);
	uint32_t many[64];
	for (int i = 0; i < 64; i++)
		many[i] = (uint32_t)i + 1;
	assert_int_equal(release(f, 1, (uint64_t[]){F2}, 1, many, 64), EINVAL);
	// A batch: the orphan among others is released, the others skipped.
	const uint64_t batch[] = {F3, F1, F2, SM_ROOT_ID};
	assert_int_equal(release(f, 2, batch, 4, all3, N), 0);
	assert_int_equal(sm_orphan_released_by(f->sm[0], F2, 2), 1);
	assert_int_equal(sm_orphan_released_by(f->sm[0], F1, 2), 0);
	assert_int_equal(exists(f, F1), 1);
	// The first version's Release (node 0) drops at once, as before.
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Release r = FSPB__RELEASE__INIT;
	r.ino = F2;
	c.op_case = FSPB__COMMAND__OP_RELEASE;
	c.release = &r;
	assert_int_equal(apply_all(f, &c), 0);
	assert_int_equal(exists(f, F2), 0);
	same_trees(f);
}

// Voters change between releases: a member removed no longer counts (its
// earlier release is forgotten), one added must release too.
static void test_membership(void **state)
{
	struct fx *f = *state;
	assert_int_equal(mknod_all(f, SM_ROOT_ID, "a", F1), 0);
	assert_int_equal(mknod_all(f, SM_ROOT_ID, "b", F2), 0);
	assert_int_equal(unlink_all(f, SM_ROOT_ID, "a"), 0);
	assert_int_equal(unlink_all(f, SM_ROOT_ID, "b"), 0);
	// Node 3 is removed: {1, 2} suffice for a.
	const uint32_t two[2] = {1, 2};
	assert_int_equal(release(f, 3, (uint64_t[]){F1}, 1, all3, N), 0);
	assert_int_equal(release(f, 1, (uint64_t[]){F1}, 1, two, 2), 0);
	assert_int_equal(sm_orphan_released_by(f->sm[0], F1, 3), 0); // forgotten
	assert_int_equal(exists(f, F1), 1);
	assert_int_equal(release(f, 2, (uint64_t[]){F1}, 1, two, 2), 0);
	assert_int_equal(exists(f, F1), 0);
	// Node 4 joins: b waits for it too.
	const uint32_t four[4] = {1, 2, 3, 4};
	for (uint32_t node = 1; node <= 3; node++)
		assert_int_equal(release(f, node, (uint64_t[]){F2}, 1, four, 4), 0);
	assert_int_equal(exists(f, F2), 1);
	assert_int_equal(release(f, 4, (uint64_t[]){F2}, 1, four, 4), 0);
	assert_int_equal(exists(f, F2), 0);
	// A Release without voters counts the releasing node alone.
	assert_int_equal(mknod_all(f, SM_ROOT_ID, "c", F3), 0);
	assert_int_equal(unlink_all(f, SM_ROOT_ID, "c"), 0);
	assert_int_equal(release(f, 2, (uint64_t[]){F3}, 1, NULL, 0), 0);
	assert_int_equal(exists(f, F3), 0);
	same_trees(f);
}

// The orphan hook: the last name of a file going, by unlink or by a rename
// over it; not another name, not a directory, not an exchange.
static void test_orphan_hook(void **state)
{
	struct fx *f = *state;
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Link l = FSPB__LINK__INIT;
	Fspb__Rename rn = FSPB__RENAME__INIT;
	Fspb__Mkdir md = FSPB__MKDIR__INIT;
	assert_int_equal(mknod_all(f, SM_ROOT_ID, "a", F1), 0);
	assert_int_equal(mknod_all(f, SM_ROOT_ID, "b", F2), 0);
	assert_int_equal(mknod_all(f, SM_ROOT_ID, "c", F3), 0);
	l.ino = F1;
	l.new_parent = SM_ROOT_ID;
	l.new_name = "a2";
	c.op_case = FSPB__COMMAND__OP_LINK;
	c.link = &l;
	assert_int_equal(apply_all(f, &c), 0);
	md.parent = SM_ROOT_ID;
	md.name = "d";
	md.ino = D1;
	md.mode = 0755;
	c.op_case = FSPB__COMMAND__OP_MKDIR;
	c.mkdir = &md;
	assert_int_equal(apply_all(f, &c), 0);
	assert_int_equal(unlink_all(f, SM_ROOT_ID, "a"), 0); // a2 is left
	rn.parent = SM_ROOT_ID;
	rn.name = "b";
	rn.new_parent = SM_ROOT_ID;
	rn.new_name = "c";
	rn.flags = 2; // RENAME_EXCHANGE
	c.op_case = FSPB__COMMAND__OP_RENAME;
	c.rename = &rn;
	assert_int_equal(apply_all(f, &c), 0);
	Fspb__Unlink u = FSPB__UNLINK__INIT;
	u.parent = SM_ROOT_ID;
	u.name = "d";
	u.dir = 1;
	c.op_case = FSPB__COMMAND__OP_UNLINK;
	c.unlink = &u;
	assert_int_equal(apply_all(f, &c), 0);
	for (int k = 0; k < N; k++)
		assert_int_equal(f->n_seen[k], 0);
	// b holds F3 and c F2 now: b over c leaves F2 without a name.
	rn.flags = 0;
	c.op_case = FSPB__COMMAND__OP_RENAME;
	c.rename = &rn;
	assert_int_equal(apply_all(f, &c), 0);
	assert_int_equal(unlink_all(f, SM_ROOT_ID, "a2"), 0);
	for (int k = 0; k < N; k++) {
		assert_int_equal(f->n_seen[k], 2);
		assert_true(f->seen[k][0] == F2);
		assert_true(f->seen[k][1] == F1);
	}
	// Redone after a crash, the unlink reports it again.
	assert_int_equal(mknod_all(f, SM_ROOT_ID, "e", F3 + 1), 0);
	Fspb__Unlink ue = FSPB__UNLINK__INIT;
	ue.parent = SM_ROOT_ID;
	ue.name = "e";
	c.op_case = FSPB__COMMAND__OP_UNLINK;
	c.unlink = &ue;
	c.time_ns = f->time += 1000;
	size_t len;
	uint8_t *buf = tl_pack(&c, &len);
	int result;
	uint64_t index = sm_applied_index(f->sm[0]) + 1;
	sm_test_crash_at(f->sm[0], 1);
	assert_int_equal(sm_apply(f->sm[0], index, 0, 0, 0, buf, len, &result), -ECANCELED);
	assert_int_equal(f->n_seen[0], 2); // cut before the end: not yet
	reopen(f, 0);
	assert_int_equal(sm_apply(f->sm[0], index, 0, 0, 0, buf, len, &result), 0);
	free(buf);
	assert_int_equal(f->n_seen[0], 3);
	assert_true(f->seen[0][2] == F3 + 1);
}

// A batch release cut short after each of its steps, on one replica: the
// redo reaches the tree of the replicas that were not interrupted.
static void test_crash_in_a_batch(void **state)
{
	struct fx *f = *state;
	uint64_t ids[6];
	for (int i = 0; i < 6; i++) {
		char name[8];
		snprintf(name, sizeof(name), "f%d", i);
		ids[i] = F1 + (uint64_t)i;
		assert_int_equal(mknod_all(f, SM_ROOT_ID, name, ids[i]), 0);
		assert_int_equal(write_all(f, ids[i], 0, "x"), 0);
		assert_int_equal(unlink_all(f, SM_ROOT_ID, name), 0);
	}
	// Nodes 1 and 2 released the first three already: node 3's release
	// drops those three and records itself on the other three.
	for (uint32_t node = 1; node <= 2; node++)
		assert_int_equal(release(f, node, ids, 3, all3, N), 0);
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Release r = FSPB__RELEASE__INIT;
	r.node = 3;
	r.ids = ids;
	r.n_ids = 6;
	r.voters = (uint32_t *)all3;
	r.n_voters = N;
	c.op_case = FSPB__COMMAND__OP_RELEASE;
	c.release = &r;
	c.time_ns = f->time += 1000;
	size_t len;
	uint8_t *buf = tl_pack(&c, &len);
	// Replicas 0 and 1 apply it whole; replica 2 is cut after step k,
	// reopened and redoes it, until a run goes through uncut.
	int result;
	for (int k = 0; k < 2; k++) {
		assert_int_equal(
		    sm_apply(f->sm[k], sm_applied_index(f->sm[k]) + 1, 0, 0, 0, buf, len, &result),
		    0);
		assert_int_equal(result, 0);
	}
	uint64_t index = sm_applied_index(f->sm[2]) + 1;
	int cuts = 0;
	for (int k = 1;; k++) {
		sm_test_crash_at(f->sm[2], k);
		int rc = sm_apply(f->sm[2], index, 0, 0, 0, buf, len, &result);
		if (rc == 0)
			break;
		assert_int_equal(rc, -ECANCELED);
		cuts++;
		reopen(f, 2);
		assert_int_equal(sm_applied_index(f->sm[2]), index - 1);
	}
	sm_test_crash_at(f->sm[2], 0);
	assert_int_equal(result, 0);
	assert_true(cuts >= 3); // the redo was cut in its drops and in its records
	free(buf);
	same_trees(f);
	for (int i = 0; i < 6; i++)
		assert_int_equal(exists(f, ids[i]), i >= 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_every_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_results, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_membership, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_orphan_hook, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_in_a_batch, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
