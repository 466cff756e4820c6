/* test_snap_blob.c — snapshot images live in RocksDB's blob files (written
 * once at flush, never recompressed by compaction), read back whole and
 * checked; replaced images' blob files are reclaimed; a store written
 * without blob files opens and reads as before. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "store.h"
#include "test_util.h"

#define CHUNK (1u << 20) /* NODE_SNAP_CHUNK */
#define IMAGE (6u * CHUNK + 12345) /* a last chunk too small for a blob */

typedef struct fixture {
	char *dir;
	store *s;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = tu_tmpdir("snapblob");
	assert_non_null(f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	store_close(f->s);
	unsetenv("RAFTFS_TEST_NO_BLOB_FILES");
	tu_rmtree(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static void reopen(fixture *f)
{
	char err[256];

	store_close(f->s);
	f->s = NULL;
	if (store_open(f->dir, &f->s, err, sizeof(err)) != 0)
		fail_msg("open %s: %s", f->dir, err);
}

/* Incompressible bytes that are a function of (seed, offset). */
static uint8_t *image_data(uint64_t seed, size_t len)
{
	uint8_t *p = malloc(len);
	uint64_t st = seed * 0x9e3779b97f4a7c15ull + 1;

	assert_non_null(p);
	for (size_t i = 0; i < len; i += 8) {
		uint64_t r = tu_rand(&st);

		memcpy(p + i, &r, len - i < 8 ? len - i : 8);
	}
	return p;
}

/* Stages and installs an image at index (as a follower receiving one:
 * the store's writer, 1 MiB chunks). */
static void put_image(store *s, uint64_t index, uint64_t seed)
{
	raft_snapshot_meta m = {.index = index, .term = 1};
	store_snap_writer *w;
	uint8_t *data = image_data(seed, IMAGE);

	assert_int_equal(store_snapshot_begin(s, &m), 0);
	assert_int_equal(store_snap_writer_open(s, &w), 0);
	for (size_t off = 0; off < IMAGE; off += CHUNK) {
		size_t n = IMAGE - off < CHUNK ? IMAGE - off : CHUNK;

		if (store_snap_writer_append(w, data + off, n, NULL) != 0)
			fail_msg("append chunk at %zu: %s", off, store_snap_writer_errmsg(w));
	}
	assert_int_equal(store_snapshot_stage_commit(s, w), 0);
	if (store_snapshot_install(s) != 0)
		fail_msg("install image at %llu: %s", (unsigned long long)index, store_errmsg(s));
	free(data);
}

/* The current image is index's, made from seed: read through a reader
 * (which checks every chunk's checksum) and through store_snapshot_read. */
static void expect_image(store *s, uint64_t index, uint64_t seed)
{
	uint8_t *want = image_data(seed, IMAGE), *got = malloc(IMAGE);
	store_snap_reader *r;
	uint64_t idx, len, off;
	size_t n, have = 0;

	assert_non_null(got);
	assert_int_equal(store_snap_reader_open(s, 0, &r, &idx, &len), 0);
	assert_int_equal(idx, index);
	assert_int_equal(len, IMAGE);
	while (have < IMAGE) {
		if (store_snap_reader_read(r, got + have, 300000, &off, &n) != 0)
			fail_msg("read image at %zu: %s", have, store_snap_reader_errmsg(r));
		assert_int_equal(off, have);
		assert_true(n > 0);
		have += n;
	}
	store_snap_reader_close(r);
	assert_memory_equal(got, want, IMAGE);
	memset(got, 0, IMAGE);
	assert_int_equal(store_snapshot_read(s, CHUNK - 7, got, 2 * CHUNK, &n), 0);
	assert_int_equal(n, 2 * CHUNK);
	assert_memory_equal(got, want + CHUNK - 7, 2 * CHUNK);
	free(want);
	free(got);
}

/* Total bytes of the files in dir whose names end in suffix. */
static uint64_t bytes_of(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint64_t sum = 0;
	size_t sl = strlen(suffix);

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		size_t nl = strlen(de->d_name);
		char path[4096];
		struct stat st;

		if (nl < sl || strcmp(de->d_name + nl - sl, suffix) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0)
			sum += (uint64_t)st.st_size;
	}
	closedir(d);
	return sum;
}

/* Log entries up to 64 KiB stay in the tables; an image's 1 MiB chunks go
 * to blob files (the reopen flushes what the log recovered), and read back
 * whole, also across a reopen. */
static void test_image_in_blob_files(void **state)
{
	fixture *f = *state;
	raft_entry *ents = tu_entries(1, 41, 1, 60000);

	reopen(f);
	assert_non_null(ents);
	assert_int_equal(store_append(f->s, ents, 40), 0);
	raft_entries_free(ents, 40);
	reopen(f);
	assert_int_equal(bytes_of(f->dir, ".blob"), 0);

	put_image(f->s, 40, 7);
	expect_image(f->s, 40, 7);
	reopen(f);
	expect_image(f->s, 40, 7);
	uint64_t blob = bytes_of(f->dir, ".blob"), sst = bytes_of(f->dir, ".sst");
	if (blob < 6u * CHUNK || sst > 40u * 60000 + CHUNK)
		fail_msg("image of %u bytes: %llu bytes in blob files, %llu in tables", IMAGE,
			 (unsigned long long)blob, (unsigned long long)sst);
}

/* Images replaced one after another leave about one image in blob files,
 * not all of them: the compaction each install asks for (and RocksDB's own)
 * drops the old keys, and a blob file holding only garbage is deleted. */
static void test_replaced_images_reclaimed(void **state)
{
	fixture *f = *state;
	const uint64_t bound = 3u * IMAGE;
	struct timespec ts = {0, 50 * 1000000};
	uint64_t blob = 0;

	reopen(f);
	for (uint64_t i = 1; i <= 8; i++) {
		put_image(f->s, 10 * i, i);
		reopen(f); /* flushes the image and the last one's deletion */
		if (i == 1)
			assert_true(bytes_of(f->dir, ".blob") >= 6u * CHUNK);
	}
	expect_image(f->s, 80, 8);
	/* Compactions run in RocksDB's threads: wait for them (60 s at most). */
	for (int tries = 0; tries < 1200; tries++) {
		blob = bytes_of(f->dir, ".blob");
		if (blob <= bound)
			break;
		nanosleep(&ts, NULL);
	}
	if (blob > bound)
		fail_msg("8 images of %u bytes replaced one by one: %llu bytes in blob files "
			 "(more than %llu)",
			 IMAGE, (unsigned long long)blob, (unsigned long long)bound);
	expect_image(f->s, 80, 8);
}

/* A store written before blob files (RAFTFS_TEST_NO_BLOB_FILES) opens with
 * them: its image and log read back, and a new image replaces the old. */
static void test_store_without_blob_files_opens(void **state)
{
	fixture *f = *state;
	raft_entry *ents = tu_entries(1, 11, 1, 1000), *got = NULL;
	size_t n = 0;

	setenv("RAFTFS_TEST_NO_BLOB_FILES", "1", 1);
	reopen(f);
	assert_non_null(ents);
	assert_int_equal(store_append(f->s, ents, 10), 0);
	raft_entries_free(ents, 10);
	put_image(f->s, 12, 3);
	reopen(f);
	assert_int_equal(bytes_of(f->dir, ".blob"), 0);
	assert_true(bytes_of(f->dir, ".sst") >= 6u * CHUNK);

	unsetenv("RAFTFS_TEST_NO_BLOB_FILES");
	reopen(f);
	expect_image(f->s, 12, 3);
	ents = tu_entries(13, 21, 2, 1000);
	assert_non_null(ents);
	assert_int_equal(store_append(f->s, ents, 8), 0);
	raft_entries_free(ents, 8);
	reopen(f);
	assert_int_equal(store_entries(f->s, 13, 21, UINT64_MAX, &got, &n), 0);
	assert_int_equal(n, 8);
	for (size_t i = 0; i < n; i++)
		assert_true(tu_entry_ok(&got[i], 13 + i, 2));
	put_image(f->s, 30, 4);
	reopen(f);
	expect_image(f->s, 30, 4);
	assert_true(bytes_of(f->dir, ".blob") >= 6u * CHUNK);
	raft_entries_free(got, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_image_in_blob_files, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replaced_images_reclaimed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_without_blob_files_opens, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
