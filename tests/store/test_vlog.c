/* test_vlog.c — large entries' data in the value log (store/vlog.h): read
 * back whole, after reopening, after a conflicting suffix is replaced; files
 * deleted once compacted and when nothing refers to them; damaged data is an
 * error naming the file. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"
#include "test_util.h"

#define BIG (64u << 10)	 /* VLOG_MIN_BYTES: the smallest entry that goes there */
#define SMALL (BIG - 1) /* the largest that stays inline */

/* The fixture: a store in a temp dir (test_util.h). */
typedef tu_store fixture;

static int setup(void **state)
{
	fixture *f = tu_store_new("vlog");

	assert_non_null(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	tu_store_free(*state);
	return 0;
}

static void reopen(fixture *f)
{
	char err[256];

	if (tu_store_reopen(f, err, sizeof(err)) != 0)
		fail_msg("reopen: %s", err);
}

/* Appends entries lo..hi-1 of term; entry i's length is lens[i - lo]. */
static void append(store *s, uint64_t lo, uint64_t hi, uint64_t term, const size_t *lens)
{
	raft_entry *ents = calloc(hi - lo, sizeof(*ents));
	int rv;

	assert_non_null(ents);
	for (uint64_t i = lo; i < hi; i++)
		tu_entry(&ents[i - lo], i, term, lens[i - lo]);
	rv = store_append(s, ents, hi - lo);
	raft_entries_free(ents, hi - lo);
	if (rv != 0)
		fail_msg("append %llu..%llu: %s", (unsigned long long)lo,
			 (unsigned long long)hi - 1, store_errmsg(s));
}

/* Reads [lo, hi) and checks terms, lengths and data. */
static void check(store *s, uint64_t lo, uint64_t hi, const uint64_t *terms, const size_t *lens)
{
	raft_entry *ents;
	size_t n;
	int rv = store_entries(s, lo, hi, UINT64_MAX, &ents, &n);

	if (rv != 0)
		fail_msg("entries %llu..%llu: %s", (unsigned long long)lo,
			 (unsigned long long)hi - 1, store_errmsg(s));
	assert_int_equal(n, hi - lo);
	for (size_t i = 0; i < n; i++) {
		uint64_t t = 0;

		assert_int_equal(ents[i].len, lens[i]);
		assert_true(tu_entry_ok(&ents[i], lo + i, terms[i]));
		assert_int_equal(store_term(s, lo + i, &t), 0);
		assert_int_equal(t, terms[i]);
	}
	raft_entries_free(ents, n);
}

static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += strstr(de->d_name, ".vlog") != NULL;
	closedir(d);
	return n;
}

/* Big and small entries mixed read back the same, before and after a
 * reopen, and only the big ones make a value log file. */
static void test_mixed_round_trip(void **state)
{
	fixture *f = *state;
	const size_t lens[] = {10, BIG, SMALL, 3 * BIG + 7, 0, BIG, 1};
	const uint64_t terms[] = {1, 1, 1, 1, 1, 1, 1};

	append(f->s, 1, 2, 1, lens);
	assert_int_equal(count_files(f->vdir), 0); /* small: inline */
	append(f->s, 2, 8, 1, lens + 1);
	assert_int_equal(count_files(f->vdir), 1);
	check(f->s, 1, 8, terms, lens);
	reopen(f);
	assert_int_equal(store_last_index(f->s), 7);
	check(f->s, 1, 8, terms, lens);
	/* Reopened: the next big entry starts a new file. */
	append(f->s, 8, 9, 1, lens + 1);
	assert_int_equal(count_files(f->vdir), 2);
	check(f->s, 8, 9, terms, lens + 1);
}

/* Raft §5.3: a conflicting suffix replaced by entries of a newer term; the
 * new data is read, not the old bytes still in the file. */
static void test_conflict_replaced(void **state)
{
	fixture *f = *state;
	const size_t lens[] = {BIG, BIG + 1, BIG + 2, BIG + 3};
	const uint64_t t1[] = {1, 1}, t2[] = {2, 2, 2};

	append(f->s, 1, 5, 1, lens);
	append(f->s, 3, 6, 2, lens + 1); /* replaces 3 and 4, adds 5 */
	assert_int_equal(store_last_index(f->s), 5);
	check(f->s, 1, 3, t1, lens);
	check(f->s, 3, 6, t2, lens + 1);
	reopen(f);
	check(f->s, 1, 3, t1, lens);
	check(f->s, 3, 6, t2, lens + 1);
}

static void install_at(store *s, uint64_t index, uint64_t term)
{
	raft_snapshot_meta m = {.index = index, .term = term};
	uint64_t voter = 1;
	int rv;

	m.conf.voters = &voter;
	m.conf.n_voters = 1;
	assert_int_equal(store_snapshot_begin(s, &m), 0);
	assert_int_equal(store_snapshot_write(s, 0, "x", 1), 0);
	rv = store_snapshot_install(s);
	if (rv != 0)
		fail_msg("install %llu: %s", (unsigned long long)index, store_errmsg(s));
}

/* A file goes when the log is compacted past every entry written to it;
 * the file still taking data stays, and so do the entries after. */
static void test_compaction_deletes_files(void **state)
{
	fixture *f = *state;
	const size_t lens[] = {BIG, BIG, BIG, BIG, BIG, BIG};
	const uint64_t terms[] = {1, 1, 1, 1, 1, 1};

	append(f->s, 1, 4, 1, lens); /* file A: 1..3 */
	reopen(f);
	append(f->s, 4, 7, 1, lens); /* file B: 4..6, taking data */
	assert_int_equal(count_files(f->vdir), 2);
	install_at(f->s, 6, 1);
	assert_int_equal(store_compact(f->s, 2), 0); /* A still holds 3 */
	assert_int_equal(count_files(f->vdir), 2);
	check(f->s, 3, 7, terms, lens);
	assert_int_equal(store_compact(f->s, 3), 0);
	assert_int_equal(count_files(f->vdir), 1);
	check(f->s, 4, 7, terms, lens);
	assert_int_equal(store_compact(f->s, 5), 0);
	check(f->s, 6, 7, terms, lens);
	assert_int_equal(store_compact(f->s, 6), 0); /* all of B, but it takes data */
	assert_int_equal(count_files(f->vdir), 1);
	reopen(f); /* no longer taking data, and nothing refers to it */
	assert_int_equal(count_files(f->vdir), 0);
	assert_int_equal(store_last_index(f->s), 6);
}

/* A snapshot that replaces the whole log leaves files nothing refers to:
 * the next open deletes them. So does a file a save wrote before a crash
 * kept its records out of RocksDB. */
static void test_unreferenced_deleted_at_open(void **state)
{
	fixture *f = *state;
	const size_t lens[] = {BIG, BIG};
	char *stray;
	int fd;

	append(f->s, 1, 3, 1, lens);
	install_at(f->s, 10, 3); /* beyond the log: the log goes */
	assert_int_equal(store_last_index(f->s), 10);
	assert_true(asprintf(&stray, "%s/00000000000000ff.vlog", f->vdir) > 0);
	fd = open(stray, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "junk", 4), 4);
	close(fd);
	reopen(f);
	assert_int_equal(count_files(f->vdir), 0);
	free(stray);
}

/* A flipped byte in the data is RAFT_ECORRUPT, and the error names the
 * entry and the file; the term is still known (it is in the record). */
static void test_damaged_data(void **state)
{
	fixture *f = *state;
	const size_t lens[] = {BIG, BIG};
	char *path;
	raft_entry *ents;
	size_t n;
	uint64_t t = 0;
	int fd;
	uint8_t b;

	append(f->s, 1, 3, 4, lens);
	assert_true(asprintf(&path, "%s/0000000000000001.vlog", f->vdir) > 0);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, BIG + 100), 1); /* inside entry 2 */
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, BIG + 100), 1);
	close(fd);
	free(path);
	assert_int_equal(store_entries(f->s, 1, 2, UINT64_MAX, &ents, &n), 0);
	raft_entries_free(ents, n);
	assert_int_equal(store_entries(f->s, 1, 3, UINT64_MAX, &ents, &n), RAFT_ECORRUPT);
	assert_non_null(strstr(store_errmsg(f->s), "entry 2: checksum mismatch"));
	assert_non_null(strstr(store_errmsg(f->s), "0000000000000001.vlog"));
	assert_int_equal(store_term(f->s, 2, &t), 0);
	assert_int_equal(t, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_mixed_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_conflict_replaced, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_compaction_deletes_files, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unreferenced_deleted_at_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_data, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
