// The start table (fs/sm_starts.h) and the Revoke checked against it, cut
// short: each command of a scenario — start commands, a Revoke that
// revokes, a holder's new start and a Revoke it turns into a no-op, a start
// into a full table — is stopped after each of its steps (sm_test_crash_at:
// before and after a start's table is written, after a Revoke's delegation
// is), and apart from that killed after it ran whole, before its record
// was marked done (a child that dies without closing). The reopened state
// machine redoes the command; it must return the clean run's result and
// hold its start table (the root's xattr and in memory), its delegations
// and its tree: what the nodes that were not cut short hold.
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
#include "tree_compare.h"

#define D1 ((3ULL << 48) | 1)
#define D2 ((3ULL << 48) | 2)
#define MAX_CMDS TL_CMDS_MAX
#define FILLER_NODES (SM_STARTS_MAX - 3) // nodes 4.. until the table is full
#define NEW_NODE 40			 // a start into the full table

static const uint32_t ALL[] = {1, 2, 3};

// The scenario, one command per entry (index i + 1), the clean run's
// result of each, and whether it is cut short (the starts that only fill
// the table are not: each costs a state machine's open and close per stop,
// and they are the same case as the ones before them).
struct scenario {
	int n;
	uint8_t *cmd[MAX_CMDS];
	size_t len[MAX_CMDS];
	int want[MAX_CMDS];
	bool filler[MAX_CMDS];
	bool cmd_deleg[MAX_CMDS];
};

static void add(struct scenario *s, Fspb__Command *c, int want)
{
	assert_true(s->n < MAX_CMDS);
	c->time_ns = TL_CMDS_TIME0 + (int64_t)s->n * 1000000;
	s->cmd[s->n] = tl_pack(c, &s->len[s->n]);
	s->want[s->n++] = want;
}

static void start(struct scenario *s, uint32_t node)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	c.node = node;
	c.start_caps = SM_START_CAP_REVOKE_KNOWS;
	add(s, &c, EINVAL); // no operation: EINVAL, as a start always was
}

// Node 1 revokes dir (epoch 1) knowing the holder's start at `known`.
static void revoke(struct scenario *s, uint64_t dir, uint64_t known, int want)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Deleg g = FSPB__DELEG__INIT;
	g.dir = dir;
	g.op = FSPB__DELEG__OP__REVOKE;
	g.epoch = 1;
	g.knows_start = true;
	g.holder_start = known;
	g.members = (uint32_t *)ALL;
	g.n_members = 3;
	c.op_case = FSPB__COMMAND__OP_DELEG;
	c.deleg = &g;
	c.node = 1;
	s->cmd_deleg[s->n] = true;
	add(s, &c, want);
}

static void build(struct scenario *s)
{
	Fspb__Command c;
	Fspb__Mkdir m;

	start(s, 1);
	start(s, 2); // index 2
	start(s, 3); // index 3
	tl_mkdir_cmd(&c, &m, SM_ROOT_ID, "d1", D1, 0755);
	m.grant = true;
	c.node = 2; // held by node 2
	add(s, &c, 0);
	tl_mkdir_cmd(&c, &m, SM_ROOT_ID, "d2", D2, 0755);
	m.grant = true;
	c.node = 3; // held by node 3
	add(s, &c, 0);
	revoke(s, D1, 2, 0);			 // knew node 2's last start: revokes
	start(s, 3);				 // node 3 is back...
	revoke(s, D2, 3, SM_RESULT_HOLDER_BACK); // ...after node 1 decided on 3
	for (uint32_t node = 4; node < 4 + FILLER_NODES; node++) {
		start(s, node);
		s->filler[s->n - 1] = node + 1 < 4 + FILLER_NODES; // the last fills it
	}
	start(s, NEW_NODE); // full: replaces node 1's entry (the oldest)
	start(s, 1);	    // and node 1's replaces node 2's
}

// What a node holds of the start table and the delegations.
struct held {
	uint8_t starts[SM_STARTS_BYTES];
	ssize_t starts_len;
	uint64_t index[NEW_NODE + 1]; // sm_start_index of nodes 1..NEW_NODE
	int deleg_rc[2];
	uint32_t holder[2];
	uint64_t epoch[2];
};

static void hold(struct sm *sm, const char *dir, struct held *h)
{
	char root[4096];
	const uint64_t dirs[2] = {D1, D2};

	memset(h, 0, sizeof(*h));
	snprintf(root, sizeof(root), "%s/tree", dir);
	h->starts_len = lgetxattr(root, SM_XATTR_STARTS, h->starts, sizeof(h->starts));
	if (h->starts_len < 0)
		h->starts_len = -errno;
	for (uint32_t node = 1; node <= NEW_NODE; node++)
		h->index[node] = sm_start_index(sm, node);
	for (int i = 0; i < 2; i++)
		h->deleg_rc[i] = sm_deleg(sm, dirs[i], &h->holder[i], &h->epoch[i]);
}

static void expect_held(struct sm *sm, const char *dir, const struct held *want, const char *where)
{
	struct held got;

	hold(sm, dir, &got);
	if (memcmp(&got, want, sizeof(got)) == 0)
		return;
	fprintf(stderr, "  %s: start table or delegations differ from the clean run's\n", where);
	fprintf(stderr, "    xattr %zd bytes (clean %zd), %s\n", got.starts_len, want->starts_len,
		memcmp(got.starts, want->starts, sizeof(got.starts)) ? "differ" : "same");
	for (uint32_t node = 1; node <= NEW_NODE; node++)
		if (got.index[node] != want->index[node])
			fprintf(stderr, "    node %u's last start: %llu (clean %llu)\n", node,
				(unsigned long long)got.index[node],
				(unsigned long long)want->index[node]);
	for (int i = 0; i < 2; i++)
		fprintf(stderr, "    dir %d: rc %d holder %u epoch %llu (clean %d %u %llu)\n", i,
			got.deleg_rc[i], got.holder[i], (unsigned long long)got.epoch[i],
			want->deleg_rc[i], want->holder[i], (unsigned long long)want->epoch[i]);
	fail();
}

static void print_diff(void *arg, const char *msg)
{
	fprintf(stderr, "  diff (%s): %s\n", (const char *)arg, msg);
}

// Everything a run creates, removed by teardown also when an assertion fails.
struct fx {
	struct scenario s;
	char *ref, *dir;
	struct sm *ref_sm, *sm;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	sm_close(f->sm);
	sm_close(f->ref_sm);
	tl_rmtree(f->dir);
	tl_rmtree(f->ref);
	for (int i = 0; i < f->s.n; i++)
		free(f->s.cmd[i]);
	free(f);
	return 0;
}

static int apply_cmd(struct sm *sm, const struct scenario *s, int i, int *res)
{
	return sm_apply(sm, (uint64_t)i + 1, 0, 0, 0, s->cmd[i], s->len[i], res);
}

// A fresh state machine in f->dir (left open in f->sm) after commands [0, n).
static void fresh_prefix(struct fx *f, int n)
{
	int res;

	tl_rmtree(f->dir);
	f->dir = tl_mkdtemp();
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	for (int j = 0; j < n; j++)
		assert_int_equal(apply_cmd(f->sm, &f->s, j, &res), 0);
}

static void close_sm(struct fx *f)
{
	sm_close(f->sm);
	f->sm = NULL;
}

// Reopens f->dir, where command i was cut short, redoes it, and compares
// with the clean run (f->ref, want) right after it: so a redo that parts
// cannot be masked by later commands.
static void redo_and_compare(struct fx *f, int i, const struct held *want, const char *where)
{
	int res = -1;

	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	assert_int_equal(sm_applied_index(f->sm), i);
	assert_int_equal(apply_cmd(f->sm, &f->s, i, &res), 0);
	assert_int_equal(res, f->s.want[i]);
	expect_held(f->sm, f->dir, want, where);
	close_sm(f);
	// ...and as a restart reads it back.
	assert_int_equal(sm_open(f->dir, 1, &f->sm), 0);
	expect_held(f->sm, f->dir, want, where);
	close_sm(f);
	assert_int_equal(tree_compare(f->ref, f->dir, TREE_CMP_DATA, print_diff, (void *)where), 0);
}

struct one {
	const struct scenario *s;
	int i;
};

// The child of the kill: applies command i whole and dies unclosed.
static int apply_then_die(struct sm *sm, void *arg)
{
	const struct one *o = arg;
	int res;
	return apply_cmd(sm, o->s, o->i, &res) || res != o->s->want[o->i];
}

static void test_cut_every_step(void **state)
{
	struct fx *f = *state;
	struct scenario *s = &f->s;
	int cut = 0, stops = 0, res;

	build(s);
	f->ref = tl_mkdtemp();
	assert_int_equal(sm_open(f->ref, 1, &f->ref_sm), 0);
	for (int i = 0; i < s->n; i++) {
		struct held want;
		char where[64];

		// The clean run, one command further (its tree compared open:
		// apply leaves nothing unwritten for a reader).
		assert_int_equal(apply_cmd(f->ref_sm, s, i, &res), 0);
		assert_int_equal(res, s->want[i]);
		hold(f->ref_sm, f->ref, &want);
		if (s->filler[i])
			continue;
		cut++;
		int k;
		for (k = 1;; k++) {
			fresh_prefix(f, i);
			sm_test_crash_at(f->sm, k);
			int rc = apply_cmd(f->sm, s, i, &res);
			close_sm(f);
			if (rc == 0) // fewer than k steps: every stop of command i visited
				break;
			assert_int_equal(rc, -ECANCELED);
			stops++;
			snprintf(where, sizeof(where), "stop at step %d of command %d", k, i);
			redo_and_compare(f, i, &want, where);
		}
		// A start stops before and after its table's xattr; a Revoke that
		// revokes after its delegation's; one that changes nothing nowhere.
		if (s->want[i] == EINVAL)
			assert_int_equal(k - 1, 2);
		else if (s->cmd_deleg[i])
			assert_int_equal(k - 1, s->want[i] == 0 ? 1 : 0);
		fresh_prefix(f, i);
		close_sm(f);
		struct one o = {s, i};
		tl_run_and_die(f->dir, 1, apply_then_die, &o);
		snprintf(where, sizeof(where), "killed after command %d", i);
		redo_and_compare(f, i, &want, where);
	}
	// The clean run ended as the scenario says.
	assert_int_equal(sm_start_index(f->ref_sm, 1), s->n);
	assert_int_equal(sm_start_index(f->ref_sm, NEW_NODE), s->n - 1);
	assert_int_equal(sm_start_index(f->ref_sm, 2), 0);
	assert_int_equal(sm_start_index(f->ref_sm, 3), 7);
	uint32_t h;
	uint64_t e;
	assert_int_equal(sm_deleg(f->ref_sm, D1, &h, &e), 0);
	assert_int_equal(h, 0); // revoked
	assert_int_equal(sm_deleg(f->ref_sm, D2, &h, &e), 0);
	assert_int_equal(h, 3); // its holder was back
	fprintf(stderr,
		"  %d of %d commands stopped at %d intermediate states and killed after "
		"each, all converged\n",
		cut, s->n, stops);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_cut_every_step, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
