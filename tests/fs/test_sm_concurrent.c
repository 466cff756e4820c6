// Reads by id never see a torn state while the apply thread renames the directories above them.
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"

#define D1 ((1ULL << 48) | 1)
#define D2 ((1ULL << 48) | 2)
#define D3 ((1ULL << 48) | 3)
#define A ((1ULL << 48) | 4)
#define F ((1ULL << 48) | 5)

struct shared {
	struct sm *sm;
	atomic_bool stop;
	atomic_long reads;
	atomic_long errors;
};

static int find_d3(void *arg, const char *name, const struct stat *st, off_t next)
{
	if (st->st_ino == D3)
		*(int *)arg = 1;
	return 0;
}

static void *reader(void *arg)
{
	struct shared *s = arg;
	while (!atomic_load(&s->stop)) {
		struct stat st;
		int found = 0;
		char buf[8];
		int bad = sm_getattr(s->sm, F, &st) != 0 || st.st_ino != F;
		bad |= sm_getattr(s->sm, D3, &st) != 0 || !S_ISDIR(st.st_mode);
		bad |= sm_lookup(s->sm, D3, "file", &st) != 0 || st.st_ino != F;
		bad |= sm_readdir(s->sm, D2, 0, true, find_d3, &found) != 0 || !found;
		bad |= sm_read(s->sm, F, buf, sizeof(buf), 0) != 4;
		bad |= sm_getxattr(s->sm, D3, "user.k", buf, sizeof(buf)) != 1;
		if (bad)
			atomic_fetch_add(&s->errors, 1);
		atomic_fetch_add(&s->reads, 1);
	}
	return NULL;
}

struct fx {
	char *dir;
	struct shared s;
	pthread_t t[2];
	int started;
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

// Stops the readers, closes, removes the data dir: also after a failure.
static int teardown(void **state)
{
	struct fx *f = *state;
	atomic_store(&f->s.stop, true);
	for (int i = 0; i < f->started; i++)
		pthread_join(f->t[i], NULL);
	sm_close(f->s.sm);
	tl_rmtree(f->dir);
	free(f);
	return 0;
}

static void test_reads_during_renames(void **state)
{
	struct fx *f = *state;
	struct shared *sp = &f->s;
	assert_int_equal(sm_open(f->dir, 1, &sp->sm), 0);
	assert_int_equal(tl_mkdir(sp->sm, SM_ROOT_ID, "d1", D1, 0755), 0);
	assert_int_equal(tl_mkdir(sp->sm, D1, "d2", D2, 0755), 0);
	assert_int_equal(tl_mkdir(sp->sm, D2, "d3", D3, 0755), 0);
	assert_int_equal(tl_mkdir(sp->sm, SM_ROOT_ID, "a", A, 0755), 0);
	assert_int_equal(tl_mknod(sp->sm, D3, "file", F, S_IFREG | 0644), 0);
	assert_int_equal(tl_write(sp->sm, F, 0, "data", 4), 0);
	assert_int_equal(tl_setxattr(sp->sm, D3, "user.k", "v", 0), 0);

	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_create(&f->t[i], NULL, reader, sp), 0);
		f->started++;
	}
	// Move the top of the path back and forth, and churn its neighbours.
	for (uint64_t i = 0; i < 600; i++) {
		int even = i % 2 == 0;
		assert_int_equal(tl_rename(sp->sm, even ? SM_ROOT_ID : A, even ? "d1" : "moved",
					   even ? A : SM_ROOT_ID, even ? "moved" : "d1", 0),
				 0);
		assert_int_equal(
		    tl_rename(sp->sm, D1, even ? "d2" : "e2", D1, even ? "e2" : "d2", 0), 0);
		assert_int_equal(tl_mkdir(sp->sm, D2, "tmp", (2ULL << 48) | i, 0755), 0);
		assert_int_equal(tl_unlink(sp->sm, D2, "tmp", 1), 0);
		assert_int_equal(tl_write(sp->sm, F, 0, "data", 4), 0);
	}
	atomic_store(&sp->stop, true);
	for (; f->started > 0; f->started--)
		pthread_join(f->t[f->started - 1], NULL);
	fprintf(stderr, "  %ld reads during 3000 commands, %ld inconsistent\n",
		atomic_load(&sp->reads), atomic_load(&sp->errors));
	assert_true(atomic_load(&sp->reads) > 100);
	assert_int_equal(atomic_load(&sp->errors), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_reads_during_renames, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
