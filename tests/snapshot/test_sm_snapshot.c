// Snapshot images of the state machine: an image installed into another data dir gives the same
// tree and the same future; corrupt images are refused; a kill -9 during install leaves old or new.
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"
#include "sm_snapshot.h"
#include "tree_compare.h"

#define N_FIRST 2000
#define N_MORE 800

struct fx {
	char *a, *b, *img_dir;
	char img[4096];
	struct sm *sa, *sb;
	struct tl_seq seq;
};

static void print_diff(void *arg, const char *msg)
{
	int *n = arg;

	if ((*n)++ < 10)
		fprintf(stderr, "  diff: %s\n", msg);
}

static int differences(const char *a, const char *b)
{
	int shown = 0;

	return tree_compare(a, b, TREE_CMP_DATA, print_diff, &shown);
}

static void no_print(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

static int differences_quiet(const char *a, const char *b)
{
	int shown = 0;

	return tree_compare(a, b, TREE_CMP_DATA, no_print, &shown);
}

static void apply_range(struct sm *sm, const struct tl_seq *s, size_t from, size_t to, int *res)
{
	for (size_t i = from; i < to; i++) {
		int r;

		assert_int_equal(sm_apply(sm, i + 1, s->client[i], s->seq[i], s->min_pending[i],
					  s->cmd[i], s->len[i], &r),
				 0);
		if (res)
			res[i] = r;
	}
}

// Writes an image of sm to path; returns its index.
static uint64_t make_image(struct sm *sm, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	uint64_t index = 0;

	assert_true(fd >= 0);
	assert_int_equal(sm_snapshot_make(sm, sm_snap_fd_sink, &fd, &index), 0);
	close(fd);
	return index;
}

static int install_file(struct sm *sm, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	assert_true(fd >= 0);
	rc = sm_snapshot_install(sm, sm_snap_fd_source, &fd);
	close(fd);
	return rc;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->a = tl_mkdtemp();
	f->b = tl_mkdtemp();
	f->img_dir = tl_mkdtemp();
	snprintf(f->img, sizeof(f->img), "%s/image", f->img_dir);
	if (sm_open(f->a, 1, &f->sa) || sm_open(f->b, 2, &f->sb))
		return -1;
	tl_gen(&f->seq, 7, N_FIRST + N_MORE);
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
	tl_rmtree(f->img_dir);
	tl_gen_free(&f->seq);
	free(f);
	return 0;
}

static int count_orphan(void *arg, uint64_t id)
{
	(void)id;
	(*(int *)arg)++;
	return 0;
}

// A's state at N_FIRST, installed into an open B (which had applied
// something else), makes B's tree identical; both then apply the same
// further commands with the same results (duplicate table carried over)
// and stay identical.
static void test_image_roundtrip(void **state)
{
	struct fx *f = *state;
	int *ra = calloc(N_FIRST + N_MORE, sizeof(int));
	int *rb = calloc(N_FIRST + N_MORE, sizeof(int));
	struct stat st;
	int orphans_a = 0, orphans_b = 0;
	uint64_t index;

	apply_range(f->sa, &f->seq, 0, N_FIRST, ra);
	apply_range(f->sb, &f->seq, 0, N_FIRST / 3, NULL); // a different, older state
	assert_true(differences(f->a, f->b) > 0);
	index = make_image(f->sa, f->img);
	assert_int_equal(index, N_FIRST);
	assert_int_equal(stat(f->img, &st), 0);
	fprintf(stderr, "  image of %d commands: %lld bytes\n", N_FIRST, (long long)st.st_size);

	assert_int_equal(install_file(f->sb, f->img), 0);
	assert_int_equal(sm_applied_index(f->sb), N_FIRST);
	assert_int_equal(differences(f->a, f->b), 0);
	sm_each_orphan(f->sa, count_orphan, &orphans_a);
	sm_each_orphan(f->sb, count_orphan, &orphans_b);
	assert_int_equal(orphans_a, orphans_b);

	// The same future: same results (retries hit the carried duplicate
	// table), same tree.
	apply_range(f->sa, &f->seq, N_FIRST, N_FIRST + N_MORE, ra);
	apply_range(f->sb, &f->seq, N_FIRST, N_FIRST + N_MORE, rb);
	for (size_t i = N_FIRST; i < N_FIRST + N_MORE; i++)
		assert_int_equal(ra[i], rb[i]);
	assert_int_equal(differences(f->a, f->b), 0);

	// And after a restart of B (tables rebuilt from disk).
	sm_close(f->sb);
	f->sb = NULL;
	assert_int_equal(sm_snapshot_recover(f->b), 0);
	assert_int_equal(sm_open(f->b, 2, &f->sb), 0);
	assert_int_equal(sm_applied_index(f->sb), N_FIRST + N_MORE);
	assert_int_equal(differences(f->a, f->b), 0);
	free(ra);
	free(rb);
}

static void flip_byte(const char *path, off_t at)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t c;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, at), 1);
	c ^= 0x10;
	assert_int_equal(pwrite(fd, &c, 1, at), 1);
	close(fd);
}

// A flipped byte anywhere, or a truncated image, is refused with EBADMSG
// and B's state is untouched (it still equals its own past).
static void test_corrupt_image_refused(void **state)
{
	struct fx *f = *state;
	char copy[4200];
	struct stat st;
	unsigned seed = 11;

	apply_range(f->sa, &f->seq, 0, N_FIRST / 2, NULL);
	apply_range(f->sb, &f->seq, 0, N_FIRST / 4, NULL);
	make_image(f->sa, f->img);
	assert_int_equal(stat(f->img, &st), 0);
	snprintf(copy, sizeof(copy), "%s.bad", f->img);
	for (int i = 0; i < 6; i++) {
		char cmd[8500];
		off_t at = (off_t)(rand_r(&seed) % (unsigned)st.st_size);

		snprintf(cmd, sizeof(cmd), "cp %s %s", f->img, copy);
		assert_int_equal(system(cmd), 0);
		if (i == 0) {
			assert_int_equal(truncate(copy, st.st_size / 2), 0);
		} else {
			flip_byte(copy, at);
		}
		assert_int_equal(install_file(f->sb, copy), -EBADMSG);
		assert_int_equal(sm_applied_index(f->sb), N_FIRST / 4);
	}
	// B still works from where it was, and the good image still installs.
	apply_range(f->sb, &f->seq, N_FIRST / 4, N_FIRST / 4 + 10, NULL);
	assert_int_equal(install_file(f->sb, f->img), 0);
	assert_int_equal(differences(f->a, f->b), 0);
}

// kill -9 of a process installing at random instants: after recovery the
// data dir is exactly the old state or exactly the new one.
static void test_kill_during_install(void **state)
{
	struct fx *f = *state;
	char *old_ref = tl_mkdtemp();
	struct sm *ref;
	int saw_old = 0, saw_new = 0;
	unsigned seed = 5;
	struct timespec t0, t1;
	long install_us = 0;

	apply_range(f->sa, &f->seq, 0, N_FIRST, NULL);
	make_image(f->sa, f->img);
	// The old state: B and a reference copy of it.
	sm_close(f->sb);
	f->sb = NULL;
	assert_int_equal(sm_open(old_ref, 2, &ref), 0);
	apply_range(ref, &f->seq, 0, N_FIRST / 2, NULL);
	sm_close(ref);
	assert_int_equal(sm_open(f->b, 2, &f->sb), 0);
	apply_range(f->sb, &f->seq, 0, N_FIRST / 2, NULL);

	sm_close(f->sb);
	f->sb = NULL;

	// Run 0 is not killed: it measures how long a whole run (open,
	// install) takes, so the kills of the others spread over it.
	for (int i = 0; i < 16; i++) {
		char cmd[8500];
		pid_t pid;
		int status, d_old, d_new;

		// Reset B to the old state.
		snprintf(cmd, sizeof(cmd), "rm -rf %s && cp -a %s %s", f->b, old_ref, f->b);
		assert_int_equal(system(cmd), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct sm *sm;

			if (sm_open(f->b, 2, &sm))
				_exit(2);
			_exit(install_file(sm, f->img) ? 3 : 0);
		}
		if (i == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t0);
		} else {
			usleep((useconds_t)(rand_r(&seed) % (unsigned)(install_us + 1)));
			kill(pid, SIGKILL);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (i == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t1);
			install_us =
			    (t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
			fprintf(stderr, "  one run (open + install): %ld us\n", install_us);
			assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		}
		assert_true(WIFSIGNALED(status) || WEXITSTATUS(status) == 0);
		assert_int_equal(sm_snapshot_recover(f->b), 0);
		assert_int_equal(sm_open(f->b, 2, &f->sb), 0);
		d_new = differences_quiet(f->a, f->b);
		d_old = d_new ? differences(old_ref, f->b) : 1;
		assert_true(d_new == 0 || d_old == 0);
		assert_int_equal(sm_applied_index(f->sb), d_new == 0 ? N_FIRST : N_FIRST / 2);
		saw_new += d_new == 0;
		saw_old += d_new != 0;
		sm_close(f->sb);
		f->sb = NULL;
	}
	fprintf(stderr, "  after kill -9: %d old, %d new\n", saw_old, saw_new);
	assert_true(saw_old + saw_new == 16);
	assert_int_equal(sm_open(f->b, 2, &f->sb), 0);
	tl_rmtree(old_ref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_image_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_image_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_kill_during_install, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
