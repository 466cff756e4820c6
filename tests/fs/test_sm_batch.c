// Batch entries (fs.proto's Batch: a mount's held commands as one Raft entry): each sub-command
// applies as its own entry would, with its own result; a retry is a duplicate as a whole; a crash
// after any step of any sub-command (every step in turn, and SIGKILLs at random moments) resumes
// the batch where it stopped, so the entry applies exactly once.
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

// Commands generated (tl_gen), grouped into batches of 1..SM_BATCH_MAX.
#define NCMDS 1200
#define MAX_ENTRIES (2 * NCMDS)
#define CLIENT 77
#define MAX_KILLS 300
// Small, so the journal restart (saving the duplicate table) happens often
// and kills land inside it too.
#define JOURNAL_LIMIT (40 * 128)

// The entries: batches of the generated commands, each proposed once by
// CLIENT with the next seq, some followed by a retry of themselves (the
// same client, seq and bytes, as after a leader change).
struct entries {
	size_t n;
	uint8_t *cmd[MAX_ENTRIES];
	size_t len[MAX_ENTRIES];
	uint64_t seq[MAX_ENTRIES];
	bool retry[MAX_ENTRIES];
	size_t first[MAX_ENTRIES], count[MAX_ENTRIES]; // the generated commands it carries
};

struct fx {
	char *top;
	struct tl_seq gen;
	struct entries e;
	struct sm *sm;
};

static uint64_t rnd(uint64_t *r)
{
	*r ^= *r << 13;
	*r ^= *r >> 7;
	*r ^= *r << 17;
	return *r;
}

static uint8_t *pack_batch(const struct tl_seq *g, size_t first, size_t n, size_t *len)
{
	ProtobufCBinaryData parts[SM_BATCH_MAX];
	Fspb__Batch b = FSPB__BATCH__INIT;
	Fspb__Command c = FSPB__COMMAND__INIT;
	for (size_t k = 0; k < n; k++)
		parts[k] = (ProtobufCBinaryData){g->len[first + k], g->cmd[first + k]};
	b.n_cmds = n;
	b.cmds = parts;
	c.node = 1;
	c.op_case = FSPB__COMMAND__OP_BATCH;
	c.batch = &b;
	return tl_pack(&c, len);
}

static void build(struct fx *f)
{
	struct entries *e = &f->e;
	uint64_t r = 0x5eed, seq = 0;
	size_t i = 0;
	tl_gen(&f->gen, 11, NCMDS);
	while (i < NCMDS) {
		size_t n = 1 + rnd(&r) % SM_BATCH_MAX;
		if (n > NCMDS - i)
			n = NCMDS - i;
		e->first[e->n] = i;
		e->count[e->n] = n;
		e->seq[e->n] = ++seq;
		e->cmd[e->n] = pack_batch(&f->gen, i, n, &e->len[e->n]);
		e->n++;
		if (rnd(&r) % 8 == 0) {
			e->first[e->n] = i;
			e->count[e->n] = n;
			e->seq[e->n] = seq;
			e->retry[e->n] = true;
			e->cmd[e->n] = pack_batch(&f->gen, i, n, &e->len[e->n]);
			e->n++;
		}
		i += n;
	}
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->top = tl_mkdtemp();
	build(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	sm_close(f->sm);
	tl_rmtree(f->top);
	tl_gen_free(&f->gen);
	for (size_t i = 0; i < f->e.n; i++)
		free(f->e.cmd[i]);
	free(f);
	return 0;
}

static int apply_entry(struct sm *sm, const struct entries *e, size_t i, int64_t *res)
{
	return sm_apply_entry(sm, i + 1, CLIENT, e->seq[i], e->seq[i], e->cmd[i], e->len[i], res);
}

// Applies entries [applied, n) to the state machine in data, each result at
// results[i]; progress (if >= 0) hears each index applied. 0 or the sm error.
static int run(const struct entries *e, const char *data, size_t n, int64_t *results,
	       int progress)
{
	struct sm *sm;
	int rc = sm_open(data, 1, &sm);
	if (rc)
		return rc;
	sm_set_journal_limit(sm, JOURNAL_LIMIT);
	for (uint64_t i = sm_applied_index(sm); i < n && !rc; i++) {
		rc = apply_entry(sm, e, i, &results[i]);
		if (!rc && progress >= 0 && write(progress, &i, sizeof(i)) < 0 && errno != EAGAIN)
			rc = -errno;
	}
	sm_close(sm);
	return rc;
}

static void print_diff(void *arg, const char *msg)
{
	fprintf(stderr, "  diff (%s): %s\n", (const char *)arg, msg);
}

// A batch does what its commands do one entry each: the same tree, each
// sub-command's result in its byte; a retry returns the same and does
// nothing more.
static void test_batch_equals_commands(void **state)
{
	struct fx *f = *state;
	const struct entries *e = &f->e;
	char one[4096], batched[4096];
	static int64_t res[MAX_ENTRIES];
	snprintf(one, sizeof(one), "%s/one", f->top);
	snprintf(batched, sizeof(batched), "%s/batched", f->top);

	int *want = calloc(NCMDS, sizeof(int));
	assert_non_null(want);
	assert_int_equal(sm_open(one, 1, &f->sm), 0);
	int failures = 0;
	for (size_t i = 0; i < NCMDS; i++) {
		assert_int_equal(sm_apply(f->sm, i + 1, 0, 0, 0, f->gen.cmd[i], f->gen.len[i],
					  &want[i]),
				 0);
		failures += want[i] != 0;
	}
	sm_close(f->sm);
	f->sm = NULL;
	assert_int_equal(run(e, batched, e->n, res, -1), 0);
	int retries = 0;
	for (size_t i = 0; i < e->n; i++) {
		retries += e->retry[i];
		if (e->retry[i])
			assert_int_equal(res[i], res[i - 1]);
		for (size_t k = 0; k < e->count[i]; k++)
			assert_int_equal((res[i] >> (8 * k)) & 0xff, want[e->first[i] + k]);
		if (e->count[i] < SM_BATCH_MAX)
			assert_int_equal((uint64_t)res[i] >> (8 * e->count[i]), 0);
	}
	fprintf(stderr, "  %zu entries (%d retries) carried %d commands, %d of them failing\n",
		e->n, retries, NCMDS, failures);
	assert_true(failures > 0 && retries > 0);
	assert_int_equal(tree_compare(one, batched, TREE_CMP_DATA, print_diff, "batched"), 0);
	// The duplicate table holds each entry's whole result.
	assert_int_equal(sm_open(batched, 1, &f->sm), 0);
	int64_t r;
	assert_int_equal(sm_apply_entry(f->sm, e->n + 1, CLIENT, e->seq[e->n - 1],
					e->seq[e->n - 1], e->cmd[e->n - 1], e->len[e->n - 1], &r),
			 0);
	assert_int_equal(r, res[e->n - 1]);
	sm_close(f->sm);
	f->sm = NULL;
	free(want);
}

// An errno every sub-command of a batch gets: a whole-entry result.
static int64_t every_byte(int err)
{
	uint64_t r = 0;
	for (int k = 0; k < SM_BATCH_MAX; k++)
		r |= (uint64_t)err << (8 * k);
	return (int64_t)r;
}

// Batches too big or empty are refused (EINVAL) as a whole: every
// sub-command's caller gets EINVAL (the proposer reads byte k for its k-th
// command), deterministically, and nothing changes. A nested one fails
// alone.
static void test_bad_batches(void **state)
{
	struct fx *f = *state;
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/bad", f->top);
	assert_int_equal(sm_open(dir, 1, &f->sm), 0);
	size_t len;
	int64_t r;
	uint8_t *big = pack_batch(&f->gen, 0, SM_BATCH_MAX, &len);
	// SM_BATCH_MAX + 1 commands: append one more part by hand.
	Fspb__Command *c = fspb__command__unpack(NULL, len, big);
	assert_non_null(c);
	ProtobufCBinaryData parts[SM_BATCH_MAX + 1];
	for (size_t k = 0; k < SM_BATCH_MAX; k++)
		parts[k] = c->batch->cmds[k];
	parts[SM_BATCH_MAX] = parts[0];
	Fspb__Batch b = FSPB__BATCH__INIT;
	b.n_cmds = SM_BATCH_MAX + 1;
	b.cmds = parts;
	Fspb__Command outer = FSPB__COMMAND__INIT;
	outer.op_case = FSPB__COMMAND__OP_BATCH;
	outer.batch = &b;
	uint8_t *over = tl_pack(&outer, &len);
	assert_int_equal(sm_apply_entry(f->sm, 1, CLIENT, 1, 1, over, len, &r), 0);
	assert_int_equal(r, every_byte(EINVAL));
	// A retry gets the same from the duplicate table.
	assert_int_equal(sm_apply_entry(f->sm, 2, CLIENT, 1, 1, over, len, &r), 0);
	assert_int_equal(r, every_byte(EINVAL));
	free(over);
	b.n_cmds = 0;
	uint8_t *empty = tl_pack(&outer, &len);
	assert_int_equal(sm_apply_entry(f->sm, 3, CLIENT, 2, 2, empty, len, &r), 0);
	assert_int_equal(r, every_byte(EINVAL));
	free(empty);
	// A batch inside a batch: that sub-command alone fails.
	size_t inner_len;
	uint8_t *inner = pack_batch(&f->gen, 0, 1, &inner_len);
	parts[0] = (ProtobufCBinaryData){inner_len, inner};
	parts[1] = (ProtobufCBinaryData){f->gen.len[0], f->gen.cmd[0]};
	b.n_cmds = 2;
	uint8_t *nested = tl_pack(&outer, &len);
	int want;
	assert_int_equal(sm_apply_entry(f->sm, 4, CLIENT, 3, 3, nested, len, &r), 0);
	free(nested);
	free(inner);
	fspb__command__free_unpacked(c, NULL);
	free(big);
	assert_int_equal(r & 0xff, EINVAL);
	// The second is the first generated command, applied for real.
	char ref[4096];
	snprintf(ref, sizeof(ref), "%s/bad-ref", f->top);
	struct sm *sm;
	assert_int_equal(sm_open(ref, 1, &sm), 0);
	assert_int_equal(sm_apply(sm, 1, 0, 0, 0, f->gen.cmd[0], f->gen.len[0], &want), 0);
	sm_close(sm);
	assert_int_equal(r >> 8, want);
	sm_close(f->sm);
	f->sm = NULL;
	assert_int_equal(tree_compare(ref, dir, TREE_CMP_DATA, print_diff, "bad batches"), 0);
}

// A batch skipped as a stale retry (its seq below what its client still
// waits for) is answered as a whole: SM_RESULT_STALE in every byte, and
// nothing executes.
static void test_stale_batch(void **state)
{
	struct fx *f = *state;
	const struct entries *e = &f->e;
	char dir[4096], ref[4096];
	snprintf(dir, sizeof(dir), "%s/stale", f->top);
	snprintf(ref, sizeof(ref), "%s/stale-ref", f->top);
	int64_t r;
	// The first entry as seq 9, min_pending 9: seqs below 9 are stale.
	assert_int_equal(sm_open(dir, 1, &f->sm), 0);
	assert_int_equal(sm_apply_entry(f->sm, 1, CLIENT, 9, 9, e->cmd[0], e->len[0], &r), 0);
	int64_t first = r;
	assert_int_equal(sm_apply_entry(f->sm, 2, CLIENT, 3, 3, e->cmd[1], e->len[1], &r), 0);
	assert_int_equal(r, every_byte(SM_RESULT_STALE));
	sm_close(f->sm);
	f->sm = NULL;
	// The same tree as the first entry alone.
	assert_int_equal(run(e, ref, 1, &r, -1), 0);
	assert_int_equal(r, first);
	assert_int_equal(tree_compare(ref, dir, TREE_CMP_DATA, print_diff, "stale batch"), 0);
}

// Every step of every sub-command of the first entries in turn: stop there
// (as a crash would), restart, the entry is delivered again and resumes;
// the result and the tree are those of a run without a stop.
#define STEP_ENTRIES 12

static void test_stop_after_every_step(void **state)
{
	struct fx *f = *state;
	const struct entries *e = &f->e;
	static int64_t want[MAX_ENTRIES];
	char ref[STEP_ENTRIES][4096], dir[4096];
	assert_true(e->n > STEP_ENTRIES);
	for (size_t i = 0; i < STEP_ENTRIES; i++) {
		snprintf(ref[i], sizeof(ref[i]), "%s/ref%zu", f->top, i);
		assert_int_equal(run(e, ref[i], i + 1, want, -1), 0);
	}
	int stops = 0, subs = 0;
	for (size_t i = 0; i < STEP_ENTRIES; i++) {
		subs += (int)e->count[i];
		for (int k = 1;; k++) {
			int64_t res = -1;
			snprintf(dir, sizeof(dir), "%s/stop", f->top);
			assert_int_equal(run(e, dir, i, want, -1), 0);
			assert_int_equal(sm_open(dir, 1, &f->sm), 0);
			sm_test_crash_at(f->sm, k);
			int rc = apply_entry(f->sm, e, i, &res);
			sm_close(f->sm);
			f->sm = NULL;
			if (rc == 0) { // fewer than k steps: every stop of entry i visited
				assert_int_equal(res, want[i]);
				tl_rmtree(strdup(dir));
				break;
			}
			assert_int_equal(rc, -ECANCELED);
			stops++;
			assert_int_equal(sm_open(dir, 1, &f->sm), 0);
			assert_int_equal(sm_applied_index(f->sm), i);
			assert_int_equal(apply_entry(f->sm, e, i, &res), 0);
			assert_int_equal(res, want[i]);
			sm_close(f->sm);
			f->sm = NULL;
			char where[64];
			snprintf(where, sizeof(where), "stop at step %d of entry %zu", k, i);
			assert_int_equal(tree_compare(ref[i], dir, TREE_CMP_DATA, print_diff, where),
					 0);
			tl_rmtree(strdup(dir));
		}
	}
	fprintf(stderr, "  %d entries of %d commands, stopped at %d intermediate states\n",
		STEP_ENTRIES, subs, stops);
	assert_true(stops > subs);
}

// What a killed child does: applies the entries from where the crash dir
// stands, results written through to the shared file as they come.
struct kill_child {
	const struct entries *e;
	const char *crash;
	int rfd;
};

static int apply_rest(void *arg, int progress)
{
	struct kill_child *k = arg;
	struct sm *sm;
	int rc = sm_open(k->crash, 1, &sm);

	if (!rc)
		sm_set_journal_limit(sm, JOURNAL_LIMIT);
	for (uint64_t i = rc ? k->e->n : sm_applied_index(sm); i < k->e->n; i++) {
		int64_t r;

		rc = apply_entry(sm, k->e, i, &r);
		if (rc)
			break;
		if (pwrite(k->rfd, &r, sizeof(r), (off_t)(i * sizeof(r))) != sizeof(r))
			return 3;
		if (write(progress, &i, sizeof(i)) < 0 && errno != EAGAIN)
			return 4;
	}
	return rc ? 2 : 0;
}

// A child applying the entries is SIGKILLed at random moments until it
// gets through: results, tree and duplicate table are those of a run
// without kills.
static void test_kill_anywhere(void **state)
{
	struct fx *f = *state;
	const struct entries *e = &f->e;
	char ref[4096], crash[4096], respath[4096];
	snprintf(ref, sizeof(ref), "%s/kref", f->top);
	snprintf(crash, sizeof(crash), "%s/kcrash", f->top);
	snprintf(respath, sizeof(respath), "%s/results", f->top);
	static int64_t want[MAX_ENTRIES], got[MAX_ENTRIES], tail[MAX_ENTRIES];
	assert_int_equal(run(e, ref, e->n, want, -1), 0);

	// Results of the killed runs go to a shared file, as they come.
	int rfd = open(respath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(rfd >= 0);
	memset(got, 0xff, sizeof(got));
	assert_int_equal(pwrite(rfd, got, sizeof(got), 0), (ssize_t)sizeof(got));
	srand(4242);
	struct kill_child kc = {e, crash, rfd};
	int kills = tl_kill_until_done(apply_rest, &kc, 3000, MAX_KILLS);
	fprintf(stderr, "  killed the applying child %d times over %zu entries\n", kills, e->n);
	assert_true(kills >= 10);
	memset(tail, 0xff, sizeof(tail));
	assert_int_equal(run(e, crash, e->n, tail, -1), 0);
	assert_int_equal(pread(rfd, got, sizeof(got), 0), (ssize_t)sizeof(got));
	close(rfd);
	for (size_t i = 0; i < e->n; i++) {
		int64_t r = tail[i] != -1 ? tail[i] : got[i];
		if (r != want[i])
			fprintf(stderr, "  entry %zu: result %llx, without kills %llx\n", i,
				(unsigned long long)r, (unsigned long long)want[i]);
		assert_int_equal(r, want[i]);
	}
	assert_int_equal(tree_compare(ref, crash, TREE_CMP_DATA, print_diff, "killed"), 0);
	// The duplicate tables agree: a retry of the last entry gets its result.
	struct sm *a, *b;
	int64_t ra, rb;
	assert_int_equal(sm_open(ref, 1, &a), 0);
	assert_int_equal(sm_open(crash, 1, &b), 0);
	assert_int_equal(sm_applied_index(a), sm_applied_index(b));
	assert_int_equal(sm_apply_entry(a, e->n + 1, CLIENT, e->seq[e->n - 1], e->seq[e->n - 1],
					e->cmd[e->n - 1], e->len[e->n - 1], &ra),
			 0);
	assert_int_equal(sm_apply_entry(b, e->n + 1, CLIENT, e->seq[e->n - 1], e->seq[e->n - 1],
					e->cmd[e->n - 1], e->len[e->n - 1], &rb),
			 0);
	assert_int_equal(ra, want[e->n - 1]);
	assert_int_equal(rb, want[e->n - 1]);
	sm_close(a);
	sm_close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_batch_equals_commands, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_batches, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stale_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_after_every_step, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_kill_anywhere, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
