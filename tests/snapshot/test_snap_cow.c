// Copy-on-write by range: a snapshot image begun before writes, truncates, hole punches,
// extensions and deletes holds every file exactly as it was at the image's index, and only
// the bytes overwritten below a file's old size are copied aside.
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs_testlib.h"
#include "sm.h"
#include "sm_snapshot.h"
#include "snap_gate.h"

#define N_FILES 8
#define FILE_ID(k) ((9ULL << 48) | ((uint64_t)(k) + 1))

// One file at the image's index: its bytes (holes are zeros) and whether
// a command deleted it since.
struct file {
	uint8_t *data;
	size_t size;
	bool gone;
};

struct fx {
	char *a, *c, *img_dir;
	char img[4200];
	struct sm *sa;
	struct file f[N_FILES];
	uint64_t rng;
};

static uint64_t next_rand(struct fx *x)
{
	x->rng ^= x->rng << 13;
	x->rng ^= x->rng >> 7;
	x->rng ^= x->rng << 17;
	return x->rng;
}

static uint64_t below(struct fx *x, uint64_t n)
{
	return n ? next_rand(x) % n : 0;
}

static void name_of(int k, char *out, size_t len)
{
	snprintf(out, len, "f%d", k);
}

// Writes len bytes of a pattern at off of file k, through the state machine.
static void write_pattern(struct fx *x, int k, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len);

	assert_non_null(buf);
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)next_rand(x);
	assert_int_equal(tl_write(x->sa, FILE_ID(k), off, buf, len), 0);
	free(buf);
}

// N_FILES files of 1.5-3.5 MiB, some with holes (between written pieces
// and at the end), their bytes remembered as the image must hold them.
static void make_files(struct fx *x)
{
	for (int k = 0; k < N_FILES; k++) {
		char name[16], path[4400];
		struct file *f = &x->f[k];
		struct stat st;
		int fd;

		name_of(k, name, sizeof(name));
		assert_int_equal(tl_mknod(x->sa, SM_ROOT_ID, name, FILE_ID(k), S_IFREG | 0644), 0);
		f->size = (3u << 19) + below(x, 2u << 20);
		for (uint64_t off = 0; off < f->size; off += 256u << 10) {
			uint64_t len = f->size - off < (256u << 10) ? f->size - off : 256u << 10;

			if (k % 3 == 1 && off / (256u << 10) % 3 == 1 && off + len < f->size)
				continue; // a hole
			write_pattern(x, k, off, (size_t)len);
		}
		if (k % 3 == 2) { // a hole at the end
			Fspb__SetAttr s = FSPB__SET_ATTR__INIT;

			s.ino = FILE_ID(k);
			s.valid = SM_SET_SIZE;
			s.size = f->size + (300u << 10);
			assert_int_equal(tl_setattr(x->sa, &s), 0);
			f->size = s.size;
		}
		f->data = calloc(1, f->size);
		assert_non_null(f->data);
		snprintf(path, sizeof(path), "%s/tree/%s", x->a, name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_size, f->size);
		assert_int_equal(pread(fd, f->data, f->size, 0), (ssize_t)f->size);
		close(fd);
	}
}

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));
	const char *env = getenv("RAFTFS_TEST_SEED");

	x->a = tl_mkdtemp();
	x->c = tl_mkdtemp();
	x->img_dir = tl_mkdtemp();
	snprintf(x->img, sizeof(x->img), "%s/image", x->img_dir);
	static uint64_t runs;

	x->rng = env ? strtoull(env, NULL, 0)
		     : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20) ^ (++runs << 40);
	x->rng |= 1;
	fprintf(stderr, "  seed %llu (RAFTFS_TEST_SEED repeats the changes; the stream's reads may interleave them differently)\n", (unsigned long long)x->rng);
	if (sm_open(x->a, 1, &x->sa))
		return -1;
	make_files(x);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	sm_close(x->sa);
	tl_rmtree(x->a);
	tl_rmtree(x->c);
	tl_rmtree(x->img_dir);
	for (int k = 0; k < N_FILES; k++)
		free(x->f[k].data);
	free(x);
	return 0;
}

// Begins an image of A and starts streaming it, gated.
static void begin(struct fx *x, struct snap_gate *g, uint64_t *index)
{
	struct sm_snap_job *job;
	int fd = open(x->img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(sm_snapshot_begin(x->sa, &job, index), 0);
	snap_gate_start(g, job, fd);
}

// Ends the stream, installs the image into a fresh state machine and
// compares every file with its bytes at the index.
static void finish_and_check(struct fx *x, struct snap_gate *g, uint64_t index)
{
	struct sm *sc;
	uint8_t *buf;

	assert_int_equal(snap_gate_finish(g), 0);
	close(g->fd);
	sm_snapshot_end(g->job);
	assert_int_equal(sm_open(x->c, 3, &sc), 0);
	{
		int fd = open(x->img, O_RDONLY | O_CLOEXEC);

		assert_true(fd >= 0);
		assert_int_equal(sm_snapshot_install(sc, sm_snap_fd_source, &fd), 0);
		close(fd);
	}
	assert_int_equal(sm_applied_index(sc), index);
	for (int k = 0; k < N_FILES; k++) {
		const struct file *f = &x->f[k];
		char name[16], path[4400];
		struct stat st;
		int fd;

		name_of(k, name, sizeof(name));
		snprintf(path, sizeof(path), "%s/tree/%s", x->c, name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_size, f->size);
		buf = malloc(f->size + 1);
		assert_non_null(buf);
		assert_int_equal(pread(fd, buf, f->size + 1, 0), (ssize_t)f->size);
		for (size_t i = 0; i < f->size; i++)
			if (buf[i] != f->data[i])
				fail_msg("file %d (%s) differs from its bytes at the index first "
					 "at offset %zu (of %zu)",
					 k, f->gone ? "deleted since" : "changed since", i, f->size);
		free(buf);
		close(fd);
	}
	sm_close(sc);
}

static void truncate_to(struct fx *x, int k, uint64_t size)
{
	Fspb__SetAttr s = FSPB__SET_ATTR__INIT;

	s.ino = FILE_ID(k);
	s.valid = SM_SET_SIZE;
	s.size = size;
	assert_int_equal(tl_setattr(x->sa, &s), 0);
}

static void delete(struct fx *x, int k)
{
	char name[16];

	name_of(k, name, sizeof(name));
	assert_int_equal(tl_unlink(x->sa, SM_ROOT_ID, name, 0), 0);
	assert_int_equal(tl_release(x->sa, FILE_ID(k)), 0);
	x->f[k].gone = true;
}

// What was copied aside of file k so far (white box: the copy is
// DATA/snap/cow/<id in hex>): its allocated bytes, -1 if there is none.
static long long copied_of(struct fx *x, int k)
{
	char path[4400];
	struct stat st;

	snprintf(path, sizeof(path), "%s/snap/cow/%016llx", x->a, (unsigned long long)FILE_ID(k));
	return stat(path, &st) ? -1 : (long long)st.st_blocks * 512;
}

// Every kind of change, to files the stream has not reached yet (it is
// held inside file 0); only what is overwritten below a file's old size is
// copied aside; then more changes while it streams them.
static void test_each_change(void **state)
{
	struct fx *x = *state;
	struct snap_gate g;
	uint64_t index;

	begin(x, &g, &index);
	// Overwrites, overlapping, one across the old end.
	write_pattern(x, 1, 100u << 10, 200u << 10);
	write_pattern(x, 1, 200u << 10, 400u << 10);
	write_pattern(x, 1, 50u << 10, 100u << 10);
	write_pattern(x, 1, x->f[1].size - 1000, 5000);
	// One byte and one page: a page or two copied, not the file.
	write_pattern(x, 2, (3u << 19) + 7, 1);
	write_pattern(x, 2, 0, 4096);
	assert_true(copied_of(x, 2) > 0);
	assert_true(copied_of(x, 2) <= 16 << 10);
	// Past the end only: nothing to copy.
	write_pattern(x, 3, x->f[3].size + 100, 64u << 10);
	assert_int_equal(copied_of(x, 3), -1);
	// Truncated, written in what was cut, extended.
	truncate_to(x, 4, 1u << 20);
	write_pattern(x, 4, 3u << 19, 10);
	truncate_to(x, 4, x->f[4].size + (1u << 20));
	// Holes punched, zeroed, then written into.
	assert_int_equal(tl_fallocate(x->sa, FILE_ID(5), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      300u << 10, 600u << 10),
			 0);
	assert_int_equal(tl_fallocate(x->sa, FILE_ID(5), FALLOC_FL_ZERO_RANGE, 800u << 10,
				      400u << 10),
			 0);
	write_pattern(x, 5, 850u << 10, 10u << 10);
	// Overwritten, then deleted; deleted untouched (its data kept by a link).
	write_pattern(x, 6, 1u << 20, 100);
	delete(x, 6);
	delete(x, 7);
	assert_int_equal(copied_of(x, 7), -1);
	// Now piece by piece, a change of every live file after each.
	while (!snap_gate_done(&g)) {
		for (int k = 0; k < 6; k++)
			write_pattern(x, k, below(x, x->f[k].size + 4096), 1 + below(x, 70u << 10));
		snap_gate_step(&g);
	}
	finish_and_check(x, &g, index);
}

// Random changes of random ranges, interleaved with the stream piece by
// piece: any byte the hook fails to save before it changes shows.
static void test_random_changes(void **state)
{
	struct fx *x = *state;
	struct snap_gate g;
	uint64_t index;
	int ops = 0;

	begin(x, &g, &index);
	while (!snap_gate_done(&g)) {
		for (int n = (int)below(x, 4); n > 0; n--, ops++) {
			int k = (int)below(x, N_FILES);
			uint64_t size = x->f[k].size, off = below(x, size + size / 4);
			uint64_t len = 1 + below(x, below(x, 4) ? 64u << 10 : 1u << 20);

			if (x->f[k].gone)
				continue;
			switch (below(x, 8)) {
			case 0:
				truncate_to(x, k, below(x, size + size / 4));
				break;
			case 1:
				assert_int_equal(tl_fallocate(x->sa, FILE_ID(k),
							      FALLOC_FL_PUNCH_HOLE |
								  FALLOC_FL_KEEP_SIZE,
							      off, len),
						 0);
				break;
			case 2:
				assert_int_equal(tl_fallocate(x->sa, FILE_ID(k), FALLOC_FL_ZERO_RANGE,
							      off, len),
						 0);
				break;
			case 3:
				if (below(x, 6) == 0) {
					delete(x, k);
					break;
				}
				/* fall through */
			default:
				write_pattern(x, k, off, (size_t)len);
				break;
			}
		}
		snap_gate_step(&g);
	}
	fprintf(stderr, "  %d changes in %d pieces\n", ops, g.pieces);
	assert_true(ops >= g.pieces / 2); // the changes really overlapped the stream
	finish_and_check(x, &g, index);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_each_change, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_random_changes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_random_changes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_random_changes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
