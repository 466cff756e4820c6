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

// Commands of one or more batches, recorded by fs_testlib's builders
// (node 1); batch b holds c.cmd[first[b]] up to c.cmd[first[b + 1]].
struct plan {
	struct tl_cmds c;
	int nb;
	int first[5];
};

// The builders record into s from here on (their sm is NULL). A failed
// test leaves the recording on: every test starts its plans with this.
static void plan_on(struct plan *s)
{
	s->c.node = 1;
	tl_record(&s->c);
}

// Ends the batch being added (at least one command since the last).
static void cut(struct plan *s)
{
	s->first[++s->nb] = s->c.n;
}

static void plan_free(struct plan *s)
{
	tl_record(NULL);
	tl_cmds_free(&s->c);
}

// Explicit times, earlier than any command's: a later touch would show.
static void utimes_(uint64_t ino)
{
	Fspb__SetAttr a = FSPB__SET_ATTR__INIT;
	a.ino = ino;
	a.valid = SM_SET_ATIME | SM_SET_MTIME;
	a.atime_ns = a.mtime_ns = 1500000000000000000LL;
	tl_setattr(NULL, &a);
}

static void write_(uint64_t ino, const char *data)
{
	tl_write(NULL, ino, 0, data, strlen(data));
}

// What tar x as root does to a file it made: chown, chmod, then utimens.
static void setattr_(uint64_t ino, uint32_t valid)
{
	Fspb__SetAttr a = FSPB__SET_ATTR__INIT;
	a.ino = ino;
	a.valid = valid;
	a.uid = 7;
	a.gid = 8;
	a.mode = 0640;
	a.size = 3;
	a.atime_ns = 1500000000000000000LL;
	a.mtime_ns = 1500000000000000001LL;
	tl_setattr(NULL, &a);
}

static uint8_t *pack_batch(const struct plan *s, int b, size_t *len)
{
	ProtobufCBinaryData parts[MAX_SUBS];
	Fspb__Batch bt = FSPB__BATCH__INIT;
	Fspb__Command c = FSPB__COMMAND__INIT;
	int n = s->first[b + 1] - s->first[b];
	assert_true(n >= 1 && n <= MAX_SUBS);
	for (int k = 0; k < n; k++)
		parts[k] = (ProtobufCBinaryData){s->c.len[s->first[b] + k], s->c.cmd[s->first[b] + k]};
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
			    sm_apply(sm, (uint64_t)i + 1, 0, 0, 0, s->c.cmd[i], s->c.len[i], &r), 0);
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
	fprintf(stderr, "  %d sub-commands, stopped at %d steps of the last batch\n", s->c.n,
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
	for (int i = last; i < s->c.n; i++) {
		for (int k = 1;; k++) {
			struct sm *sm;
			assert_int_equal(sm_open(dir, 1, &sm), 0);
			for (int b = 0; b + 1 < s->nb; b++)
				assert_int_equal(apply_batch(sm, s, b, 0, &res), 0);
			int r;
			for (int j = last; j < i; j++)
				assert_int_equal(sm_apply(sm, (uint64_t)(s->nb + j - last), 0, 0, 0,
							  s->c.cmd[j], s->c.len[j], &r),
						 0);
			sm_test_crash_at(sm, k);
			int rc = sm_apply(sm, (uint64_t)(s->nb + i - last), 0, 0, 0, s->c.cmd[i],
					  s->c.len[i], &r);
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
	plan_on(&one);
	tl_mkdir(NULL, SM_ROOT_ID, "p", P, 0755);
	cut(&one);
	tl_mkdir(NULL, P, "d0", ID(0), 0755);
	cut(&one);
	plan_on(&eight);
	tl_mkdir(NULL, SM_ROOT_ID, "p", P, 0755);
	cut(&eight);
	for (int i = 0; i < 8; i++) {
		char name[8];
		snprintf(name, sizeof(name), "d%d", i);
		tl_mkdir(NULL, P, name, ID(i), 0755);
	}
	cut(&eight);
	tl_record(NULL);
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
	plan_on(&s);
	tl_mkdir(NULL, SM_ROOT_ID, "p", P, 0755);
	cut(&s);
	tl_mknod(NULL, P, "f", ID(0), S_IFREG | 0644);
	write_(ID(0), "abc");
	setattr_(ID(0), SM_SET_UID | SM_SET_GID);
	setattr_(ID(0), SM_SET_MODE);
	setattr_(ID(0), SM_SET_ATIME | SM_SET_MTIME);
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
	plan_on(&s);
	tl_mkdir(NULL, SM_ROOT_ID, "p", P, 0755);
	tl_mkdir(NULL, SM_ROOT_ID, "q", Q, 0755);
	tl_mknod(NULL, P, "old", ID(9), S_IFREG | 0644);
	cut(&s);
	tl_mknod(NULL, P, "f", ID(0), S_IFREG | 0644);
	write_(ID(0), "abcdef");
	setattr_(ID(0), SM_SET_SIZE);
	setattr_(ID(9), SM_SET_ATIME);
	tl_unlink(NULL, P, "f", false); // its ctime at once: kept ones first
	tl_setxattr(NULL, ID(9), "user.t", "v", 0);
	setattr_(ID(9), SM_SET_MTIME_NOW);
	write_(ID(9), "xy");
	cut(&s);
	setattr_(ID(9), SM_SET_MTIME);
	tl_rename(NULL, P, "old", Q, "new", 0);
	setattr_(ID(9), SM_SET_ATIME_NOW | SM_SET_MODE);
	tl_symlink(NULL, Q, "sl", ID(1), "new");
	tl_link(NULL, ID(9), P, "again");
	setattr_(ID(1), SM_SET_UID);
	tl_unlink(NULL, Q, "new", false);
	write_(ID(9), "");
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
	plan_on(&s);
	tl_mkdir(NULL, SM_ROOT_ID, "p", P, 0755);
	tl_mkdir(NULL, SM_ROOT_ID, "q", Q, 0755);
	cut(&s);
	tl_mknod(NULL, P, "a", ID(0), S_IFREG | 0644);
	utimes_(P);
	tl_mknod(NULL, Q, "b", ID(1), S_IFREG | 0644);
	tl_setxattr(NULL, Q, "user.t", "v", 0);
	tl_mkdir(NULL, SM_ROOT_ID, "c", ID(2), 0755);
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
	plan_on(&s);
	tl_mkdir(NULL, SM_ROOT_ID, "p", P, 0755);
	tl_mkdir(NULL, SM_ROOT_ID, "q", Q, 0755);
	cut(&s);
	tl_mkdir(NULL, P, "c", ID(0), 0755);
	tl_mknod(NULL, Q, "b", ID(1), S_IFREG | 0644);
	tl_mknod(NULL, ID(0), "d", ID(2), S_IFREG | 0644);
	write_(ID(2), "x");
	write_(ID(2), ""); // nothing written: no times
	tl_link(NULL, ID(2), Q, "l");
	tl_mknod(NULL, P, "no/such", ID(4), S_IFREG | 0644); // refused: keeps nothing
	tl_mknod(NULL, Q, "e", ID(3), S_IFREG | 0644);
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
	plan_on(&s);
	tl_mkdir(NULL, SM_ROOT_ID, "p", P, 0755);
	tl_mkdir(NULL, SM_ROOT_ID, "q", Q, 0755);
	cut(&s);
	tl_mkdir(NULL, P, "d", ID(0), 0755);
	tl_mknod(NULL, ID(0), "f", ID(1), S_IFREG | 0644);
	tl_rename(NULL, P, "d", Q, "e", 0);
	tl_mknod(NULL, P, "g", ID(2), S_IFREG | 0644);
	tl_unlink(NULL, Q, "e/f", false); // refused (a name with a slash): no touch
	tl_unlink(NULL, P, "g", false);
	tl_mkdir(NULL, Q, "h", ID(3), 0755);
	tl_mkdir(NULL, ID(3), "i", ID(4), 0755);
	cut(&s);
	tl_unlink(NULL, ID(3), "i", true);
	tl_unlink(NULL, Q, "h", true);
	tl_mknod(NULL, Q, "j", ID(5), S_IFREG | 0644);
	tl_rename(NULL, Q, "j", Q, "j", 0); // to itself: nothing done
	tl_rename(NULL, Q, "j", P, "j2", 0);
	tl_mknod(NULL, ID(0), "k", ID(6), S_IFREG | 0644);
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
