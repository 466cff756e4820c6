// Snapshot images of the state machine: an image installed into another data dir gives the same
// tree and the same future; corrupt images are refused; a kill -9 during install leaves old or new.
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
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
#include "snap_gate.h"
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

static int deleg_cmd(struct sm *sm, uint32_t node, Fspb__Command *c)
{
	c->node = node;
	return tl_apply(sm, c);
}

// Replicated directory delegations (holder, epoch: fs/sm_impl.h) travel in
// the image: B installs A's image and has the same delegations, so the
// same further commands get the same answers (a non-holder's create in a
// delegated directory is refused on both); also after B restarts.
static void test_image_keeps_delegations(void **state)
{
	struct fx *f = *state;
	const uint64_t d1 = 0x100, d2 = 0x101, d3 = 0x102, x1 = 0x200, x2 = 0x201;
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Mkdir m = FSPB__MKDIR__INIT;
	Fspb__Deleg g = FSPB__DELEG__INIT;
	Fspb__Mknod k = FSPB__MKNOD__INIT;
	uint32_t ha, hb;
	uint64_t ea, eb;

	// d1 delegated to node 2 by its mkdir; d2 granted to node 3 and
	// recalled by node 1 (epoch moves); d3 never delegated.
	m.parent = SM_ROOT_ID;
	m.mode = 0755;
	c.op_case = FSPB__COMMAND__OP_MKDIR;
	c.mkdir = &m;
	m.name = "d1", m.ino = d1, m.grant = true;
	assert_int_equal(deleg_cmd(f->sa, 2, &c), 0);
	m.name = "d2", m.ino = d2, m.grant = false;
	assert_int_equal(deleg_cmd(f->sa, 3, &c), 0);
	m.name = "d3", m.ino = d3;
	assert_int_equal(deleg_cmd(f->sa, 3, &c), 0);
	c.op_case = FSPB__COMMAND__OP_DELEG;
	c.deleg = &g;
	g.dir = d2, g.op = FSPB__DELEG__OP__GRANT;
	assert_int_equal(deleg_cmd(f->sa, 3, &c), 0);
	assert_int_equal(sm_deleg(f->sa, d2, &ha, &ea), 0);
	g.op = FSPB__DELEG__OP__RECALL, g.epoch = ea;
	deleg_cmd(f->sa, 1, &c);

	make_image(f->sa, f->img);
	assert_int_equal(install_file(f->sb, f->img), 0);
	assert_int_equal(differences(f->a, f->b), 0);
	for (int restarted = 0; restarted < 2; restarted++) {
		const uint64_t dirs[] = {d1, d2, d3, SM_ROOT_ID};

		for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
			assert_int_equal(sm_deleg(f->sa, dirs[i], &ha, &ea), 0);
			assert_int_equal(sm_deleg(f->sb, dirs[i], &hb, &eb), 0);
			assert_int_equal(hb, ha);
			assert_int_equal(eb, ea);
		}
		sm_close(f->sb);
		f->sb = NULL;
		assert_int_equal(sm_snapshot_recover(f->b), 0);
		assert_int_equal(sm_open(f->b, 2, &f->sb), 0);
	}
	assert_int_equal(sm_deleg(f->sb, d1, &hb, &eb), 0);
	assert_int_equal(hb, 2);
	// The same answers: node 3 may not create in node 2's d1, node 2 may.
	c = (Fspb__Command)FSPB__COMMAND__INIT;
	c.op_case = FSPB__COMMAND__OP_MKNOD;
	c.mknod = &k;
	k.parent = d1, k.mode = S_IFREG | 0644;
	k.name = "x", k.ino = x1;
	assert_int_not_equal(deleg_cmd(f->sa, 3, &c), 0);
	assert_int_not_equal(deleg_cmd(f->sb, 3, &c), 0);
	k.name = "y", k.ino = x2;
	assert_int_equal(deleg_cmd(f->sa, 2, &c), 0);
	assert_int_equal(deleg_cmd(f->sb, 2, &c), 0);
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

// ---- copy-on-write images: apply goes on while the image streams ----

#define COW_FILES 8
#define COW_FILE_BYTES (1u << 20)
#define COW_ID(k) ((9ULL << 48) | ((uint64_t)(k) + 1))

// Applies generated commands [from, to) at the next indexes.
static void apply_next(struct sm *sm, const struct tl_seq *s, size_t from, size_t to)
{
	for (size_t i = from; i < to && i < s->n; i++) {
		int r;

		assert_int_equal(sm_apply(sm, sm_applied_index(sm) + 1, s->client[i], s->seq[i],
					  s->min_pending[i], s->cmd[i], s->len[i], &r),
				 0);
	}
}

// COW_FILES files of 1 MiB (odd ones sparse: a hole in the middle), with
// bytes that differ per file and offset.
static void make_big_files(struct sm *sm)
{
	uint8_t *buf = malloc(256u << 10);

	assert_non_null(buf);
	for (int k = 0; k < COW_FILES; k++) {
		char name[32];

		snprintf(name, sizeof(name), "cow-big-%d", k);
		assert_int_equal(tl_mknod(sm, SM_ROOT_ID, name, COW_ID(k), S_IFREG | 0644), 0);
		for (uint32_t off = 0; off < COW_FILE_BYTES; off += 256u << 10) {
			if ((k & 1) && off > 0 && off < COW_FILE_BYTES - (256u << 10))
				continue;
			for (size_t i = 0; i < 256u << 10; i++)
				buf[i] = (uint8_t)(k * 31 + (off + i) / 4096 + i);
			assert_int_equal(tl_write(sm, COW_ID(k), off, buf, 256u << 10), 0);
		}
	}
	free(buf);
}

// Changes big file k's content the way op k % 5 says: overwrite, truncate,
// punch a hole, extend, unlink + release (its data deleted for good).
static void change_big_file(struct sm *sm, int k)
{
	char name[32];
	uint64_t id = COW_ID(k);

	snprintf(name, sizeof(name), "cow-big-%d", k);
	switch (k % 5) {
	case 0:
		assert_int_equal(tl_write(sm, id, 300u << 10, "overwritten", 11), 0);
		break;
	case 1: {
		Fspb__SetAttr s = FSPB__SET_ATTR__INIT;

		s.ino = id;
		s.valid = SM_SET_SIZE;
		s.size = 100u << 10;
		assert_int_equal(tl_setattr(sm, &s), 0);
		break;
	}
	case 2:
		assert_int_equal(
		    tl_fallocate(sm, id, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 512u << 10),
		    0);
		break;
	case 3:
		assert_int_equal(tl_write(sm, id, 3u << 20, "far", 3), 0);
		break;
	default:
		assert_int_equal(tl_unlink(sm, SM_ROOT_ID, name, 0), 0);
		assert_int_equal(tl_release(sm, id), 0);
		break;
	}
}

// The image begun at N streams while A applies more commands (writes,
// truncates, holes punched, a file extended, files released, plus the
// generated mix of renames, unlinks, ...), interleaved piece by piece;
// installed elsewhere it gives exactly the tree at N (a copy of A's data dir
// made at N).
static void test_cow_image_while_applying(void **state)
{
	struct fx *f = *state;
	char *c_dir = tl_mkdtemp(), *ref = tl_mkdtemp(), cmd[9000], cow[4200];
	struct snap_gate g;
	struct sm_snap_job *job;
	struct sm *sc;
	uint64_t index = 0;
	size_t next = N_FIRST, batch = N_MORE / 24 + 1;
	int k = 0, steps = 0, fd;
	struct stat sb;

	make_big_files(f->sa);
	apply_next(f->sa, &f->seq, 0, N_FIRST);
	snprintf(cmd, sizeof(cmd), "rm -rf %s && cp -a %s %s", ref, f->a, ref);
	assert_int_equal(system(cmd), 0);

	fd = open(f->img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(sm_snapshot_begin(f->sa, &job, &index), 0);
	assert_int_equal(index, sm_applied_index(f->sa));
	snap_gate_start(&g, job, fd);
	// One piece of the image, then a few commands, and so on; a big file
	// changes every third step, so some change before the stream reaches
	// them, some while it reads them, some after.
	while (!snap_gate_done(&g)) {
		if (steps % 3 == 1 && k < COW_FILES)
			change_big_file(f->sa, k++);
		apply_next(f->sa, &f->seq, next, next + batch);
		next += batch;
		snap_gate_step(&g);
		steps++;
	}
	assert_int_equal(snap_gate_finish(&g), 0);
	close(fd);
	fprintf(stderr, "  image streamed in %d pieces; %d big files changed meanwhile\n", g.pieces,
		k);
	assert_true(k >= COW_FILES / 2); // the stream really overlapped apply
	sm_snapshot_end(job);
	snprintf(cow, sizeof(cow), "%s/snap/cow", f->a);
	assert_int_equal(stat(cow, &sb), -1); // the copies are gone
	assert_true(differences_quiet(ref, f->a) > 0);

	// The image is the tree at N.
	assert_int_equal(sm_open(c_dir, 3, &sc), 0);
	assert_int_equal(install_file(sc, f->img), 0);
	assert_int_equal(sm_applied_index(sc), index);
	assert_int_equal(differences(ref, c_dir), 0);
	sm_close(sc);
	tl_rmtree(c_dir);
	tl_rmtree(ref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_image_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_image_keeps_delegations, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_image_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_kill_during_install, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cow_image_while_applying, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
