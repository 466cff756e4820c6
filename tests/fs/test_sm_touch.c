// A Batch sets each time its sub-commands set (a directory's when its entries change, an object's
// when it changes) once, at its end (fs/apply.c, "A Batch's times"): fewer steps than one per
// sub-command, and the same tree as the commands applied one entry each — also where a later
// sub-command sets those times itself, renames or removes the object, and after a stop at any step.
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

#define P ((1ULL << 48) | 1)
#define Q ((1ULL << 48) | 2)
#define ID(n) ((1ULL << 48) | (100 + (n)))
#define MAX_SUBS SM_BATCH_MAX

// Commands of one or more batches; batch b holds cmds [first[b], first[b + 1]).
struct plan {
	int n, nb;
	uint8_t *cmd[4 * MAX_SUBS];
	size_t len[4 * MAX_SUBS];
	int first[5];
};

static void add(struct plan *s, Fspb__Command *c)
{
	assert_true(s->n < 4 * MAX_SUBS);
	c->time_ns = 1600000000000000000LL + (int64_t)s->n * 1000000;
	c->node = 1;
	s->cmd[s->n] = tl_pack(c, &s->len[s->n]);
	s->n++;
}

// Ends the batch being added (at least one command since the last).
static void cut(struct plan *s)
{
	s->first[++s->nb] = s->n;
}

static void mkdir_(struct plan *s, uint64_t parent, const char *name, uint64_t ino)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mkdir m = FSPB__MKDIR__INIT;
	m.parent = parent;
	m.name = (char *)name;
	m.ino = ino;
	m.mode = 0755;
	c.op_case = FSPB__COMMAND__OP_MKDIR;
	c.mkdir = &m;
	add(s, &c);
}

static void mknod_(struct plan *s, uint64_t parent, const char *name, uint64_t ino)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	m.parent = parent;
	m.name = (char *)name;
	m.ino = ino;
	m.mode = S_IFREG | 0644;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	add(s, &c);
}

static void unlink_(struct plan *s, uint64_t parent, const char *name, bool dir)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Unlink u = FSPB__UNLINK__INIT;
	u.parent = parent;
	u.name = (char *)name;
	u.dir = dir;
	c.op_case = FSPB__COMMAND__OP_UNLINK;
	c.unlink = &u;
	add(s, &c);
}

static void rename_(struct plan *s, uint64_t parent, const char *name, uint64_t np,
		    const char *nn)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Rename r = FSPB__RENAME__INIT;
	r.parent = parent;
	r.name = (char *)name;
	r.new_parent = np;
	r.new_name = (char *)nn;
	c.op_case = FSPB__COMMAND__OP_RENAME;
	c.rename = &r;
	add(s, &c);
}

// Explicit times, earlier than any command's: a later touch would show.
static void utimes_(struct plan *s, uint64_t ino)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__SetAttr a = FSPB__SET_ATTR__INIT;
	a.ino = ino;
	a.valid = SM_SET_ATIME | SM_SET_MTIME;
	a.atime_ns = a.mtime_ns = 1500000000000000000LL;
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = &a;
	add(s, &c);
}

static void write_(struct plan *s, uint64_t ino, const char *data)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Write w = FSPB__WRITE__INIT;
	w.ino = ino;
	w.data.data = (uint8_t *)data;
	w.data.len = strlen(data);
	c.op_case = FSPB__COMMAND__OP_WRITE;
	c.write = &w;
	add(s, &c);
}

// What tar x as root does to a file it made: chown, chmod, then utimens.
static void setattr_(struct plan *s, uint64_t ino, uint32_t valid)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__SetAttr a = FSPB__SET_ATTR__INIT;
	a.ino = ino;
	a.valid = valid;
	a.uid = 7;
	a.gid = 8;
	a.mode = 0640;
	a.size = 3;
	a.atime_ns = 1500000000000000000LL;
	a.mtime_ns = 1500000000000000001LL;
	c.op_case = FSPB__COMMAND__OP_SETATTR;
	c.setattr = &a;
	add(s, &c);
}

static void setxattr_(struct plan *s, uint64_t ino)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__SetXattr x = FSPB__SET_XATTR__INIT;
	x.ino = ino;
	x.name = "user.t";
	x.value.data = (uint8_t *)"v";
	x.value.len = 1;
	c.op_case = FSPB__COMMAND__OP_SETXATTR;
	c.setxattr = &x;
	add(s, &c);
}

static void plan_free(struct plan *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->cmd[i]);
}

static uint8_t *pack_batch(const struct plan *s, int b, size_t *len)
{
	ProtobufCBinaryData parts[MAX_SUBS];
	Fspb__Batch bt = FSPB__BATCH__INIT;
	Fspb__Command c = FSPB__COMMAND__INIT;
	int n = s->first[b + 1] - s->first[b];
	assert_true(n >= 1 && n <= MAX_SUBS);
	for (int k = 0; k < n; k++)
		parts[k] = (ProtobufCBinaryData){s->len[s->first[b] + k], s->cmd[s->first[b] + k]};
	bt.n_cmds = (size_t)n;
	bt.cmds = parts;
	c.node = 1;
	c.op_case = FSPB__COMMAND__OP_BATCH;
	c.batch = &bt;
	return tl_pack(&c, len);
}

// Applies batch b at index b + 1 (client 9, seq b + 1). The entry's result,
// or the sm's error (with crash_at: -ECANCELED once stopped).
static int apply_batch(struct sm *sm, const struct plan *s, int b, int crash_at, int64_t *res)
{
	size_t len;
	uint8_t *buf = pack_batch(s, b, &len);
	if (crash_at)
		sm_test_crash_at(sm, crash_at);
	int rc = sm_apply_entry(sm, (uint64_t)b + 1, 9, (uint64_t)b + 1, (uint64_t)b + 1, buf,
				len, res);
	free(buf);
	return rc;
}

// The reference: every command its own entry. Returns the results packed
// per batch as a Batch entry returns them (byte k: sub-command k's).
static void apply_one_by_one(const struct plan *s, const char *dir, int64_t *want)
{
	struct sm *sm;
	assert_int_equal(sm_open(dir, 1, &sm), 0);
	for (int b = 0; b < s->nb; b++) {
		want[b] = 0;
		for (int i = s->first[b]; i < s->first[b + 1]; i++) {
			int r;
			assert_int_equal(
			    sm_apply(sm, (uint64_t)i + 1, 0, 0, 0, s->cmd[i], s->len[i], &r), 0);
			want[b] |= (int64_t)((uint64_t)(r & 0xff) << (8 * (i - s->first[b])));
		}
	}
	sm_close(sm);
}

static void print_diff(void *arg, const char *msg)
{
	fprintf(stderr, "  diff (%s): %s\n", (const char *)arg, msg);
}

// Applies the batches in a fresh dir, the last one stopped after step k
// (0: not stopped) then delivered again after a restart; checks the
// results and the tree against ref. Returns whether the stop happened
// (false: the batch has fewer than k steps).
static bool run_checked(const struct plan *s, const char *top, const char *ref,
			const int64_t *want, int k)
{
	char dir[4096], where[64];
	snprintf(dir, sizeof(dir), "%s/run", top);
	struct sm *sm;
	int64_t res = -1;
	assert_int_equal(sm_open(dir, 1, &sm), 0);
	for (int b = 0; b + 1 < s->nb; b++) {
		assert_int_equal(apply_batch(sm, s, b, 0, &res), 0);
		assert_int_equal(res, want[b]);
	}
	int rc = apply_batch(sm, s, s->nb - 1, k, &res);
	sm_close(sm);
	bool stopped = rc == -ECANCELED;
	if (stopped) {
		assert_int_equal(sm_open(dir, 1, &sm), 0);
		assert_int_equal(sm_applied_index(sm), (uint64_t)s->nb - 1);
		rc = apply_batch(sm, s, s->nb - 1, 0, &res);
		sm_close(sm);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(res, want[s->nb - 1]);
	snprintf(where, sizeof(where), "stop after step %d", k);
	assert_int_equal(tree_compare(ref, dir, TREE_CMP_DATA, print_diff, where), 0);
	tl_rmtree(strdup(dir));
	return stopped;
}

// The plan batched equals the plan one by one, also stopped after any step
// of its last batch.
static void check_plan(const struct plan *s)
{
	char *top = tl_mkdtemp();
	char ref[4096];
	int64_t want[4];
	snprintf(ref, sizeof(ref), "%s/ref", top);
	apply_one_by_one(s, ref, want);
	int stops = 0;
	assert_false(run_checked(s, top, ref, want, 0));
	while (run_checked(s, top, ref, want, stops + 1))
		stops++;
	fprintf(stderr, "  %d sub-commands, stopped at %d steps of the last batch\n", s->n,
		stops);
	assert_true(stops > 0);
	tl_rmtree(top);
}

// Steps (sm_test_crash_at) the last batch of s takes, from the batches
// before it applied on a fresh tree.
static int steps_of_last(const struct plan *s)
{
	char *top = tl_mkdtemp();
	char dir[4096];
	int64_t res;
	int k = 1;
	snprintf(dir, sizeof(dir), "%s/d", top);
	for (;; k++) {
		struct sm *sm;
		assert_int_equal(sm_open(dir, 1, &sm), 0);
		for (int b = 0; b + 1 < s->nb; b++)
			assert_int_equal(apply_batch(sm, s, b, 0, &res), 0);
		int rc = apply_batch(sm, s, s->nb - 1, k, &res);
		sm_close(sm);
		tl_rmtree(strdup(dir));
		if (rc == 0)
			break;
		assert_int_equal(rc, -ECANCELED);
	}
	tl_rmtree(top);
	return k - 1;
}

// Steps of the commands of the last batch of s applied each as an entry of
// its own (no Batch), after the batches before it.
static int steps_one_by_one(const struct plan *s)
{
	char *top = tl_mkdtemp();
	char dir[4096];
	int64_t res;
	int total = 0;
	snprintf(dir, sizeof(dir), "%s/d", top);
	int last = s->first[s->nb - 1];
	for (int i = last; i < s->n; i++) {
		for (int k = 1;; k++) {
			struct sm *sm;
			assert_int_equal(sm_open(dir, 1, &sm), 0);
			for (int b = 0; b + 1 < s->nb; b++)
				assert_int_equal(apply_batch(sm, s, b, 0, &res), 0);
			int r;
			for (int j = last; j < i; j++)
				assert_int_equal(sm_apply(sm, (uint64_t)(s->nb + j - last), 0, 0, 0,
							  s->cmd[j], s->len[j], &r),
						 0);
			sm_test_crash_at(sm, k);
			int rc = sm_apply(sm, (uint64_t)(s->nb + i - last), 0, 0, 0, s->cmd[i],
					  s->len[i], &r);
			sm_close(sm);
			tl_rmtree(strdup(dir));
			if (rc == 0) {
				total += k - 1;
				break;
			}
			assert_int_equal(rc, -ECANCELED);
		}
	}
	tl_rmtree(top);
	return total;
}

// Eight mkdirs in one directory set its times once (two steps: mtime,
// ctime), not eight times: 7 × 2 steps fewer than eight batches of one.
static void test_one_touch_per_batch(void **state)
{
	(void)state;
	struct plan one = {0}, eight = {0};
	mkdir_(&one, SM_ROOT_ID, "p", P);
	cut(&one);
	mkdir_(&one, P, "d0", ID(0));
	cut(&one);
	mkdir_(&eight, SM_ROOT_ID, "p", P);
	cut(&eight);
	for (int i = 0; i < 8; i++) {
		char name[8];
		snprintf(name, sizeof(name), "d%d", i);
		mkdir_(&eight, P, name, ID(i));
	}
	cut(&eight);
	int s1 = steps_of_last(&one), s8 = steps_of_last(&eight);
	fprintf(stderr, "  steps: one mkdir %d, eight in one batch %d\n", s1, s8);
	assert_int_equal(s8, 8 * s1 - 7 * 2);
	check_plan(&eight);
	plan_free(&one);
	plan_free(&eight);
}

// A small file as a close behind sends it (create, write, chown, chmod,
// utimens in one entry) gets its times and ctime set once at the end: the
// create's times and ctime, the write's, the utimens' times (a setattr's
// ctime is no step of its own) and its directory's would be 2 + 2 + 1 + 2
// steps: 4 at the end instead (on ext4, 6 syscalls fewer: the chown's and
// chmod's ctime xattrs too).
static void test_file_times_once(void **state)
{
	(void)state;
	struct plan s = {0};
	mkdir_(&s, SM_ROOT_ID, "p", P);
	cut(&s);
	mknod_(&s, P, "f", ID(0));
	write_(&s, ID(0), "abc");
	setattr_(&s, ID(0), SM_SET_UID | SM_SET_GID);
	setattr_(&s, ID(0), SM_SET_MODE);
	setattr_(&s, ID(0), SM_SET_ATIME | SM_SET_MTIME);
	cut(&s);
	int one = steps_one_by_one(&s), batched = steps_of_last(&s);
	fprintf(stderr, "  steps: one by one %d, in one batch %d\n", one, batched);
	assert_int_equal(batched, one - 3);
	check_plan(&s);
	plan_free(&s);
}

// Every kind of time a sub-command keeps, mixed with sub-commands that set
// them at once (unlink: a file's ctime; rename): a link's ctime, xattrs,
// truncate's mtime, atime or mtime alone, "now" times, a symlink.
static void test_object_times_mixed(void **state)
{
	(void)state;
	struct plan s = {0};
	mkdir_(&s, SM_ROOT_ID, "p", P);
	mkdir_(&s, SM_ROOT_ID, "q", Q);
	mknod_(&s, P, "old", ID(9));
	cut(&s);
	mknod_(&s, P, "f", ID(0));
	write_(&s, ID(0), "abcdef");
	setattr_(&s, ID(0), SM_SET_SIZE);
	setattr_(&s, ID(9), SM_SET_ATIME);
	unlink_(&s, P, "f", false); // its ctime at once: kept ones first
	setxattr_(&s, ID(9));
	setattr_(&s, ID(9), SM_SET_MTIME_NOW);
	write_(&s, ID(9), "xy");
	cut(&s);
	setattr_(&s, ID(9), SM_SET_MTIME);
	rename_(&s, P, "old", Q, "new");
	setattr_(&s, ID(9), SM_SET_ATIME_NOW | SM_SET_MODE);
	{
		Fspb__Command c = FSPB__COMMAND__INIT;
		Fspb__Symlink l = FSPB__SYMLINK__INIT;
		Fspb__Link k = FSPB__LINK__INIT;
		l.parent = Q;
		l.name = "sl";
		l.ino = ID(1);
		l.target = "new";
		c.op_case = FSPB__COMMAND__OP_SYMLINK;
		c.symlink = &l;
		add(&s, &c);
		Fspb__Command c2 = FSPB__COMMAND__INIT;
		k.ino = ID(9);
		k.new_parent = P;
		k.new_name = "again";
		c2.op_case = FSPB__COMMAND__OP_LINK;
		c2.link = &k;
		add(&s, &c2);
	}
	setattr_(&s, ID(1), SM_SET_UID);
	unlink_(&s, Q, "new", false);
	write_(&s, ID(9), "");
	cut(&s);
	check_plan(&s);
	plan_free(&s);
}

// A sub-command that sets the directory's own times (utimens, an xattr's
// ctime) after an entry changed: its times win, as one by one.
static void test_own_times_after(void **state)
{
	(void)state;
	struct plan s = {0};
	mkdir_(&s, SM_ROOT_ID, "p", P);
	mkdir_(&s, SM_ROOT_ID, "q", Q);
	cut(&s);
	mknod_(&s, P, "a", ID(0));
	utimes_(&s, P);
	mknod_(&s, Q, "b", ID(1));
	setxattr_(&s, Q);
	mkdir_(&s, SM_ROOT_ID, "c", ID(2));
	cut(&s);
	check_plan(&s);
	plan_free(&s);
}

// A redo after a stop rebuilds the times the sub-commands before the stop
// kept: here P's, which no later one sets again, and a file's mtime (its
// write) and ctime (its new link).
static void test_redo_keeps_earlier(void **state)
{
	(void)state;
	struct plan s = {0};
	mkdir_(&s, SM_ROOT_ID, "p", P);
	mkdir_(&s, SM_ROOT_ID, "q", Q);
	cut(&s);
	mkdir_(&s, P, "c", ID(0));
	mknod_(&s, Q, "b", ID(1));
	mknod_(&s, ID(0), "d", ID(2));
	write_(&s, ID(2), "x");
	write_(&s, ID(2), ""); // nothing written: no times
	{
		Fspb__Command c = FSPB__COMMAND__INIT;
		Fspb__Link k = FSPB__LINK__INIT;
		k.ino = ID(2);
		k.new_parent = Q;
		k.new_name = "l";
		c.op_case = FSPB__COMMAND__OP_LINK;
		c.link = &k;
		add(&s, &c);
	}
	mknod_(&s, P, "no/such", ID(4)); // refused: keeps nothing
	mknod_(&s, Q, "e", ID(3));
	cut(&s);
	check_plan(&s);
	plan_free(&s);
}

// A directory renamed (its ctime) or removed (its times go with it) after
// an entry of it changed in the same batch; a rename's own directories.
static void test_renamed_or_removed_after(void **state)
{
	(void)state;
	struct plan s = {0};
	mkdir_(&s, SM_ROOT_ID, "p", P);
	mkdir_(&s, SM_ROOT_ID, "q", Q);
	cut(&s);
	mkdir_(&s, P, "d", ID(0));
	mknod_(&s, ID(0), "f", ID(1));
	rename_(&s, P, "d", Q, "e");
	mknod_(&s, P, "g", ID(2));
	unlink_(&s, Q, "e/f", false); // refused (a name with a slash): no touch
	unlink_(&s, P, "g", false);
	mkdir_(&s, Q, "h", ID(3));
	mkdir_(&s, ID(3), "i", ID(4));
	cut(&s);
	unlink_(&s, ID(3), "i", true);
	unlink_(&s, Q, "h", true);
	mknod_(&s, Q, "j", ID(5));
	rename_(&s, Q, "j", Q, "j"); // to itself: nothing done
	rename_(&s, Q, "j", P, "j2");
	mknod_(&s, ID(0), "k", ID(6));
	cut(&s);
	check_plan(&s);
	plan_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_touch_per_batch),
	    cmocka_unit_test(test_file_times_once),
	    cmocka_unit_test(test_object_times_mixed),
	    cmocka_unit_test(test_own_times_after),
	    cmocka_unit_test(test_redo_keeps_earlier),
	    cmocka_unit_test(test_renamed_or_removed_after),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
