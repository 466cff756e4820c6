// Two state machines applying the same commands end with identical trees; the comparison finds real
// differences.
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"
#include "tree_compare.h"

struct fx {
	char *a, *b;
	struct sm *sa, *sb;
	struct tl_seq seq;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	f->a = tl_mkdtemp();
	f->b = tl_mkdtemp();
	if (sm_open(f->a, 1, &f->sa) || sm_open(f->b, 2, &f->sb))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	sm_close(f->sa);
	sm_close(f->sb);
	tl_rmtree(f->a);
	tl_rmtree(f->b);
	tl_gen_free(&f->seq);
	free(f);
	return 0;
}

static void print_diff(void *arg, const char *msg)
{
	int *n = arg;
	if ((*n)++ < 20)
		fprintf(stderr, "  diff: %s\n", msg);
}

static void test_same_commands_same_tree(void **state)
{
	struct fx *f = *state;
	const size_t n = 3000;
	tl_gen(&f->seq, 42, n);
	int counts[2] = {0, 0}; // successes, errors: the mix must exercise both
	for (size_t i = 0; i < n; i++) {
		int ra, rb;
		assert_int_equal(sm_apply(f->sa, i + 1, f->seq.client[i], f->seq.seq[i],
					  f->seq.min_pending[i], f->seq.cmd[i], f->seq.len[i], &ra),
				 0);
		assert_int_equal(sm_apply(f->sb, i + 1, f->seq.client[i], f->seq.seq[i],
					  f->seq.min_pending[i], f->seq.cmd[i], f->seq.len[i], &rb),
				 0);
		assert_int_equal(ra, rb);
		counts[ra != 0]++;
	}
	fprintf(stderr, "  %d succeeded, %d failed\n", counts[0], counts[1]);
	assert_true(counts[0] > (int)n / 5);
	assert_true(counts[1] > (int)n / 10);
	int shown = 0;
	assert_int_equal(tree_compare(f->a, f->b, TREE_CMP_DATA, print_diff, &shown), 0);

	// The comparison is not blind: change one side behind the state
	// machine's back and it reports it.
	char path[4096];
	snprintf(path, sizeof(path), "%s/tree/sentinel", f->b);
	int res;
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mknod m = FSPB__MKNOD__INIT;
	m.parent = SM_ROOT_ID;
	m.name = "sentinel";
	m.ino = (1ULL << 48) | 999999;
	m.mode = S_IFREG | 0644;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &m;
	c.time_ns = 1;
	size_t len;
	uint8_t *buf = tl_pack(&c, &len);
	assert_int_equal(sm_apply(f->sa, n + 1, 0, 0, 0, buf, len, &res), 0);
	assert_int_equal(res, 0);
	assert_int_equal(sm_apply(f->sb, n + 1, 0, 0, 0, buf, len, &res), 0);
	assert_int_equal(res, 0);
	free(buf);
	shown = 0;
	assert_int_equal(tree_compare(f->a, f->b, TREE_CMP_DATA, print_diff, &shown), 0);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(setxattr(path, "user.z", "1", 1, 0), 0);
	shown = 0;
	res = tree_compare(f->a, f->b, TREE_CMP_DATA, print_diff, &shown);
	assert_int_equal(res, 2);
	assert_int_equal(truncate(path, 1), 0);
	shown = 0;
	// size, and the mtime the local truncate set
	assert_int_equal(tree_compare(f->a, f->b, TREE_CMP_DATA, print_diff, &shown), 4);
	assert_int_equal(unlink(path), 0);
	shown = 0;
	assert_true(tree_compare(f->a, f->b, TREE_CMP_DATA, print_diff, &shown) >= 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_same_commands_same_tree, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
