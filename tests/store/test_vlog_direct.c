/* test_vlog_direct.c — the value log's direct writes (store/vlog.h, "Direct
 * writes"): a save's data is written with O_DIRECT from an aligned buffer,
 * rewriting the partial block the previous save ended in. These tests check
 * that the file stays one contiguous stream of entries whatever their sizes
 * (every entry at the offset the sum of the ones before it gives, bytes of
 * earlier saves intact after a later save rewrote their last block), that
 * entries read back whole across reopens in both modes, that direct
 * writes really leave nothing in the page cache (buffered ones do), that a
 * filesystem's refusal of direct writes is asked once per store, not once
 * per file, and that buffered saves write the entries from where they are
 * (no aligned copy). pwrite and pwritev of the store library are wrapped
 * (CMakeLists.txt: --wrap) to see and to refuse what it writes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"
#include "test_util.h"

#define BIG (64u << 10) /* VLOG_MIN_BYTES */
#define ALIGN 4096u	/* VLOG_ALIGN */

typedef tu_store fixture;

/* What the wrapped writes saw, and whether they refuse direct ones. */
static struct {
	bool refuse_direct; /* a pwrite to an O_DIRECT descriptor fails: EINVAL */
	int direct_tries;   /* pwrites to O_DIRECT descriptors */
	int pwrites;	    /* every pwrite */
	const void *bases[256]; /* where pwritev's pieces came from */
	int n_bases;
} wr;

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __real_pwritev(int fd, const struct iovec *iov, int cnt, off_t off);

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	int fl = fcntl(fd, F_GETFL);

	wr.pwrites++;
	if (fl >= 0 && (fl & O_DIRECT)) {
		wr.direct_tries++;
		if (wr.refuse_direct) {
			errno = EINVAL;
			return -1;
		}
	}
	return __real_pwrite(fd, buf, n, off);
}

ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	for (int i = 0; i < cnt && wr.n_bases < 256; i++)
		wr.bases[wr.n_bases++] = iov[i].iov_base;
	return __real_pwritev(fd, iov, cnt, off);
}

static int setup(void **state)
{
	fixture *f;

	unsetenv("RAFTFS_STORE_VLOG_BUFFERED");
	memset(&wr, 0, sizeof(wr));
	f = tu_store_new("vlogdirect");
	assert_non_null(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	tu_store_free(*state);
	unsetenv("RAFTFS_STORE_VLOG_BUFFERED");
	return 0;
}

static void reopen_ok(fixture *f)
{
	char err[256];

	if (tu_store_reopen(f, err, sizeof(err)) != 0)
		fail_msg("reopen: %s", err);
}

/* Whether this filesystem takes O_DIRECT opens (tmpfs of older kernels
 * does not: the value log then writes through the page cache). */
static bool direct_possible(const fixture *f)
{
	char *p;
	int fd;

	assert_true(asprintf(&p, "%s/probe", f->dir) > 0);
	fd = open(p, O_WRONLY | O_CREAT | O_DIRECT, 0644);
	if (fd >= 0)
		close(fd);
	unlink(p);
	free(p);
	return fd >= 0;
}

/* Sizes that end saves mid-block, exactly on a block, one byte past one,
 * and saves of several entries, small ones (kept in RocksDB) among them. */
static const size_t lens[] = {BIG + 1,	      BIG + ALIGN - 1, 7,	  BIG,	   3 * BIG + 5,
			      BIG + 2 * ALIGN, 100,	       BIG + 4095, BIG + 17, 2 * BIG};
static const uint64_t cuts[] = {1, 2, 4, 5, 6, 7, 10, 11}; /* saves: [cuts[i], cuts[i+1]) */
#define N_ENTS (sizeof(lens) / sizeof(lens[0]))
#define N_CUTS (sizeof(cuts) / sizeof(cuts[0]))

static void save_all(fixture *f, uint64_t term)
{
	for (size_t i = 0; i + 1 < N_CUTS; i++)
		tu_save(f->s, NULL, cuts[i], cuts[i + 1], term, lens + cuts[i] - 1);
}

/* The file is the big entries' data back to back, in index order, padded
 * with zeros to a whole block if written directly: read raw and compared. */
static void check_layout(const fixture *f, uint64_t seq, uint64_t term, bool padded)
{
	char *p = tu_vlog_path(f, seq);
	int fd = open(p, O_RDONLY);
	struct stat st;
	uint64_t off = 0;
	uint8_t *buf;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	for (size_t i = 0; i < N_ENTS; i++) {
		raft_entry e;

		if (lens[i] < BIG)
			continue;
		tu_entry(&e, i + 1, term, lens[i]);
		buf = malloc(lens[i]);
		assert_non_null(buf);
		assert_int_equal(pread(fd, buf, lens[i], (off_t)off), (ssize_t)lens[i]);
		if (memcmp(buf, e.data, lens[i]) != 0)
			fail_msg("entry %zu: not at offset %llu of %s", i + 1,
				 (unsigned long long)off, p);
		free(buf);
		raft_entry_free_contents(&e);
		off += lens[i];
	}
	assert_int_equal((uint64_t)st.st_size, padded ? (off + ALIGN - 1) / ALIGN * ALIGN : off);
	buf = calloc(1, ALIGN);
	assert_non_null(buf);
	if (st.st_size > (off_t)off) {
		uint8_t *zeros = calloc(1, ALIGN);

		assert_non_null(zeros);
		assert_int_equal(pread(fd, buf, (size_t)st.st_size - off, (off_t)off),
				 (ssize_t)(st.st_size - (off_t)off));
		assert_memory_equal(buf, zeros, (size_t)st.st_size - off);
		free(zeros);
	}
	free(buf);
	close(fd);
	free(p);
}

/* Saves of every shape into one file: each entry where the stream puts
 * it, earlier saves' bytes intact after later saves rewrote their last
 * block; all read back before and after a reopen. */
static void contiguous(fixture *f)
{
	save_all(f, 1);
	tu_check(f->s, 1, N_ENTS + 1, 1);
	check_layout(f, 1, 1, true);
	reopen_ok(f);
	assert_int_equal(store_open_cut(f->s), 0);
	tu_check(f->s, 1, N_ENTS + 1, 1);
	check_layout(f, 1, 1, true);
}

static void test_contiguous_direct(void **state)
{
	/* Where O_DIRECT is refused the log writes buffered, and this would
	 * only repeat test_contiguous_buffered. */
	if (!direct_possible(*state))
		skip();
	contiguous(*state);
}

static void test_contiguous_buffered(void **state)
{
	fixture *f = *state;

	setenv("RAFTFS_STORE_VLOG_BUFFERED", "1", 1);
	reopen_ok(f); /* read at open */
	save_all(f, 1);
	tu_check(f->s, 1, N_ENTS + 1, 1);
	check_layout(f, 1, 1, false);
	unsetenv("RAFTFS_STORE_VLOG_BUFFERED");
	reopen_ok(f); /* a direct store reads what a buffered one wrote */
	tu_check(f->s, 1, N_ENTS + 1, 1);
	check_layout(f, 1, 1, false);
}

/* How many of the file's pages are in the page cache. */
static size_t resident_pages(const fixture *f, uint64_t seq)
{
	char *p = tu_vlog_path(f, seq);
	int fd = open(p, O_RDONLY);
	struct stat st;
	size_t pages, n = 0;
	unsigned char *vec;
	void *m;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	pages = ((size_t)st.st_size + 4095) / 4096;
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(m != MAP_FAILED);
	vec = calloc(pages, 1);
	assert_non_null(vec);
	assert_int_equal(mincore(m, (size_t)st.st_size, vec), 0);
	for (size_t i = 0; i < pages; i++)
		n += vec[i] & 1;
	free(vec);
	munmap(m, (size_t)st.st_size);
	close(fd);
	free(p);
	return n;
}

/* 8 MiB saved directly leaves none of it in the page cache; saved through
 * it (the knob), all of it. */
static void test_page_cache(void **state)
{
	fixture *f = *state;
	const size_t mib[] = {1u << 20, 1u << 20, 1u << 20, 1u << 20};

	if (!direct_possible(f))
		skip();
	tu_save(f->s, NULL, 1, 5, 1, mib);
	tu_save(f->s, NULL, 5, 9, 1, mib);
	assert_int_equal(resident_pages(f, 1), 0);
	setenv("RAFTFS_STORE_VLOG_BUFFERED", "1", 1);
	reopen_ok(f);
	tu_save(f->s, NULL, 9, 13, 1, mib);
	tu_save(f->s, NULL, 13, 17, 1, mib);
	assert_int_equal(resident_pages(f, 2), 2048);
	tu_check(f->s, 1, 17, 1);
}

/* A filesystem that refuses direct writes (EINVAL at the first pwrite):
 * the save goes through the page cache, and so does every later one, also
 * in the next file (a store writes a new one every 64 MiB) — one refused
 * try per store, not one per file. Everything reads back, also after the
 * first file's half-direct, half-buffered stream. */
static void test_refusal_remembered(void **state)
{
	fixture *f = *state;
	size_t mib[8];
	uint64_t next = 1;
	char *p;
	struct stat st;

	if (!direct_possible(f))
		skip();
	for (size_t i = 0; i < 8; i++)
		mib[i] = (1u << 20) + 1;
	wr.refuse_direct = true;
	/* Past VLOG_FILE_BYTES (64 MiB) in saves of 8 entries, then one more
	 * save, which starts file 2. */
	while (next <= 72) {
		tu_save(f->s, NULL, next, next + 8, 1, mib);
		next += 8;
	}
	tu_save(f->s, NULL, next, next + 8, 1, mib);
	next += 8;
	p = tu_vlog_path(f, 2);
	assert_int_equal(stat(p, &st), 0); /* the next file was started */
	free(p);
	assert_int_equal(wr.direct_tries, 1);
	tu_check(f->s, 1, next, 1);
	reopen_ok(f);
	tu_check(f->s, 1, next, 1);
}

/* Buffered saves write each entry's data from the caller's buffer (the
 * pieces of a pwritev), never through the aligned buffer (a pwrite); the
 * file is the entries back to back. */
static void test_buffered_in_place(void **state)
{
	fixture *f = *state;
	raft_entry ents[N_ENTS];

	setenv("RAFTFS_STORE_VLOG_BUFFERED", "1", 1);
	reopen_ok(f);
	wr.pwrites = 0;
	for (size_t i = 0; i < N_ENTS; i++)
		tu_entry(&ents[i], i + 1, 1, lens[i]);
	for (size_t i = 0; i + 1 < N_CUTS; i++)
		if (store_save(f->s, NULL, ents + cuts[i] - 1, cuts[i + 1] - cuts[i]) != 0)
			fail_msg("save %llu..: %s", (unsigned long long)cuts[i],
				 store_errmsg(f->s));
	assert_int_equal(wr.pwrites, 0);
	for (size_t i = 0; i < N_ENTS; i++) {
		bool seen = false;

		for (int k = 0; k < wr.n_bases; k++)
			seen = seen || wr.bases[k] == ents[i].data;
		if (seen != (lens[i] >= BIG))
			fail_msg("entry %zu (%zu bytes): %s", i + 1, lens[i],
				 seen ? "small, but in the value log"
				      : "not written from its own buffer");
	}
	for (size_t i = 0; i < N_ENTS; i++)
		raft_entry_free_contents(&ents[i]);
	tu_check(f->s, 1, N_ENTS + 1, 1);
	check_layout(f, 1, 1, false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_contiguous_direct, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_contiguous_buffered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_page_cache, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refusal_remembered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_buffered_in_place, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
