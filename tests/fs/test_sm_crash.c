// Crash safety: a child applying a long command sequence is SIGKILLed many times; the restarted
// state machine must end exactly where an uninterrupted run does.
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
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
#include "tree_compare.h"

#define NCMDS 3000
#define MAX_KILLS 400
// Small, so the journal restart (saving the duplicate table) happens every
// 40 commands and kills land inside it too.
#define JOURNAL_LIMIT (40 * 128)

struct fx {
	char *top;
	struct tl_seq seq;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->top = tl_mkdtemp();
	tl_gen(&f->seq, 7, NCMDS);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	tl_rmtree(f->top);
	tl_gen_free(&f->seq);
	free(f);
	return 0;
}

// Applies the sequence from where the data dir stands to the end, storing
// each result at results[index]. Reports progress on `progress` (if >= 0).
// Returns 0, or the sm error.
static int run(struct fx *f, const char *data, int *results, int progress)
{
	struct sm *sm;
	int rc = sm_open(data, 1, &sm);
	if (rc)
		return rc;
	sm_set_journal_limit(sm, JOURNAL_LIMIT);
	for (uint64_t i = sm_applied_index(sm) + 1; i <= NCMDS && !rc; i++) {
		int res;
		rc =
		    sm_apply(sm, i, f->seq.client[i - 1], f->seq.seq[i - 1],
			     f->seq.min_pending[i - 1], f->seq.cmd[i - 1], f->seq.len[i - 1], &res);
		results[i] = res;
		if (!rc && progress >= 0 && write(progress, &i, sizeof(i)) < 0 && errno != EAGAIN)
			rc = -errno;
	}
	sm_close(sm);
	return rc;
}

static void print_diff(void *arg, const char *msg)
{
	fprintf(stderr, "  diff: %s\n", msg);
}

// What a killed child does: applies the sequence from where the crash dir
// stands, results written through to the shared file as they come.
struct kill_child {
	struct fx *f;
	const char *crash;
	int rfd;
};

static int apply_rest(void *arg, int progress)
{
	struct kill_child *k = arg;
	static int res[NCMDS + 1];
	struct sm *sm;
	int rc = sm_open(k->crash, 1, &sm);

	if (!rc)
		sm_set_journal_limit(sm, JOURNAL_LIMIT);
	for (uint64_t i = rc ? NCMDS + 1 : sm_applied_index(sm) + 1; i <= NCMDS; i++) {
		rc = sm_apply(sm, i, k->f->seq.client[i - 1], k->f->seq.seq[i - 1],
			      k->f->seq.min_pending[i - 1], k->f->seq.cmd[i - 1],
			      k->f->seq.len[i - 1], &res[i]);
		if (rc)
			break;
		if (pwrite(k->rfd, &res[i], sizeof(int), (off_t)(i * sizeof(int))) != sizeof(int))
			return 3;
		if (write(progress, &i, sizeof(i)) < 0 && errno != EAGAIN)
			return 4;
	}
	return rc ? 2 : 0;
}

static void test_kill_anywhere_then_converge(void **state)
{
	struct fx *f = *state;
	char ref[4096], crash[4096], respath[4096];
	snprintf(ref, sizeof(ref), "%s/ref", f->top);
	snprintf(crash, sizeof(crash), "%s/crash", f->top);
	snprintf(respath, sizeof(respath), "%s/results", f->top);

	static int want[NCMDS + 1];
	assert_int_equal(run(f, ref, want, -1), 0);

	// Results of the crashing runs go to a shared file mapping: each run
	// overwrites the entries it (re)applies.
	int rfd = open(respath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(rfd >= 0);
	static int got[NCMDS + 1];
	memset(got, 0xff, sizeof(got));
	assert_int_equal(pwrite(rfd, got, sizeof(got), 0), (ssize_t)sizeof(got));

	srand(12345);
	struct kill_child kc = {f, crash, rfd};
	int kills = tl_kill_until_done(apply_rest, &kc, 2000, MAX_KILLS);
	struct sm *probe;
	assert_int_equal(sm_open(crash, 1, &probe), 0);
	fprintf(stderr, "  killed the applying child %d times; it reached index %llu of %d\n",
		kills, (unsigned long long)sm_applied_index(probe), NCMDS);
	sm_close(probe);
	assert_true(kills >= 10);

	// Finish in this process (the sanitizers check this run for leaks too).
	static int tail[NCMDS + 1];
	memset(tail, 0xff, sizeof(tail));
	assert_int_equal(run(f, crash, tail, -1), 0);
	assert_int_equal(pread(rfd, got, sizeof(got), 0), (ssize_t)sizeof(got));
	close(rfd);
	for (size_t i = 1; i <= NCMDS; i++) {
		int r = tail[i] != -1 ? tail[i] : got[i];
		if (r != want[i])
			fprintf(stderr, "  command %zu: result %d, uninterrupted %d\n", i, r,
				want[i]);
		assert_int_equal(r, want[i]);
	}
	assert_int_equal(tree_compare(ref, crash, TREE_CMP_DATA, print_diff, NULL), 0);

	// The duplicate tables agree too.
	struct sm *a, *b;
	assert_int_equal(sm_open(ref, 1, &a), 0);
	assert_int_equal(sm_open(crash, 1, &b), 0);
	int recorded = 0;
	for (size_t i = 0; i < NCMDS; i++) {
		int ra = -1, rb = -1;
		int ca = sm_client_result(a, f->seq.client[i], f->seq.seq[i], &ra);
		int cb = sm_client_result(b, f->seq.client[i], f->seq.seq[i], &rb);
		assert_int_equal(ca, cb);
		assert_int_equal(ra, rb);
		recorded += ca == 0;
	}
	assert_true(recorded > 0);
	assert_int_equal(sm_applied_index(a), sm_applied_index(b));
	sm_close(a);
	sm_close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_kill_anywhere_then_converge, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
