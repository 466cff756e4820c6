/* test_snap_vlog.c — a snapshot install that discards the whole log drops
 * the value log's files with it (their entries are gone), at once rather
 * than when a later compaction passes them or the next open; a crash
 * between the install and the drop leaves files the next open deletes;
 * an install that keeps the log keeps every file its entries need. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"
#include "test_util.h"

#define BIG (64u << 10) /* VLOG_MIN_BYTES: goes to the value log */

/* The fixture: a store in a temp dir (test_util.h), and f->other, a
 * directory on the same filesystem to keep hard links of value-log files
 * aside (both removed in teardown). */
typedef tu_store fixture;

static int setup(void **state)
{
	fixture *f = tu_store_new("snapvlog");

	assert_non_null(f);
	f->other = tu_tmpdir("snapvlog-aside");
	assert_non_null(f->other);
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
		fail_msg("reopen %s: %s", f->dir, err);
}

/* Appends big entries lo..hi-1 of term. */
static void append(store *s, uint64_t lo, uint64_t hi, uint64_t term)
{
	raft_entry *ents = tu_entries(lo, hi, term, BIG);
	int rv;

	assert_non_null(ents);
	rv = store_append(s, ents, hi - lo);
	raft_entries_free(ents, hi - lo);
	if (rv != 0)
		fail_msg("append %llu..%llu: %s", (unsigned long long)lo,
			 (unsigned long long)hi - 1, store_errmsg(s));
}

/* Entries lo..hi-1 read back whole, of term. */
static void check(store *s, uint64_t lo, uint64_t hi, uint64_t term)
{
	raft_entry *ents;
	size_t n;

	if (store_entries(s, lo, hi, UINT64_MAX, &ents, &n) != 0)
		fail_msg("read %llu..%llu: %s", (unsigned long long)lo,
			 (unsigned long long)hi - 1, store_errmsg(s));
	assert_int_equal(n, hi - lo);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(ents[i].len, BIG);
		assert_true(tu_entry_ok(&ents[i], lo + i, term));
	}
	raft_entries_free(ents, n);
}

/* Hard links (in dir "to") of the value log files in "from": returns how
 * many. */
static int link_files(const char *from, const char *to)
{
	DIR *d = opendir(from);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char a[512], b[512];

		if (!strstr(de->d_name, ".vlog"))
			continue;
		snprintf(a, sizeof(a), "%s/%s", from, de->d_name);
		snprintf(b, sizeof(b), "%s/%s", to, de->d_name);
		assert_int_equal(link(a, b), 0);
		n++;
	}
	closedir(d);
	return n;
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

/* Stages a snapshot at index/term (one voter, a byte of data) and
 * installs it, as received (local false) or as this node's own. */
static void install_at(store *s, uint64_t index, uint64_t term, bool local)
{
	raft_snapshot_meta m = {.index = index, .term = term};
	uint64_t voter = 1;
	int rv;

	m.conf.voters = &voter;
	m.conf.n_voters = 1;
	assert_int_equal(store_snapshot_begin(s, &m), 0);
	assert_int_equal(store_snapshot_write(s, 0, "x", 1), 0);
	rv = local ? store_snapshot_install_local(s) : store_snapshot_install(s);
	if (rv != 0)
		fail_msg("install %llu: %s", (unsigned long long)index, store_errmsg(s));
}

/* A snapshot beyond the log (a follower far behind) replaces the whole
 * log: every value log file goes at once, two files here (one written
 * before a reopen, one still taking data). New big entries after it go to
 * a new file and read back, also after a reopen. */
static void test_install_beyond_log_drops_files(void **state)
{
	fixture *f = *state;

	append(f->s, 1, 4, 1);
	reopen(f);
	append(f->s, 4, 6, 1);
	assert_int_equal(count_files(f->vdir), 2);
	install_at(f->s, 10, 3, false);
	assert_int_equal(store_last_index(f->s), 10);
	assert_int_equal(count_files(f->vdir), 0);
	append(f->s, 11, 14, 3);
	assert_int_equal(count_files(f->vdir), 1);
	check(f->s, 11, 14, 3);
	reopen(f);
	check(f->s, 11, 14, 3);
	assert_int_equal(count_files(f->vdir), 1);
}

/* A crash after the install's synced write and before the files were
 * deleted leaves them on disk (put back here from hard links taken before
 * the install): the next open deletes them, and the store is the
 * installed one, entries after it included. */
static void test_crash_before_drop(void **state)
{
	fixture *f = *state;

	append(f->s, 1, 5, 1);
	assert_int_equal(link_files(f->vdir, f->other), 1);
	install_at(f->s, 10, 3, false);
	append(f->s, 11, 13, 3);
	store_close(f->s);
	f->s = NULL;
	assert_int_equal(link_files(f->other, f->vdir), 1); /* as if never deleted */
	assert_int_equal(count_files(f->vdir), 2);
	reopen(f);
	assert_int_equal(count_files(f->vdir), 1);
	assert_int_equal(store_first_index(f->s), 11);
	assert_int_equal(store_last_index(f->s), 12);
	check(f->s, 11, 13, 3);
}

/* A snapshot whose last entry the log holds (this node's own, or a
 * received one the log agrees with) keeps the log, and so every file:
 * all entries read back, before and after a reopen. */
static void test_install_keeping_log_keeps_files(void **state)
{
	fixture *f = *state;

	append(f->s, 1, 4, 2);
	reopen(f);
	append(f->s, 4, 7, 2);
	install_at(f->s, 3, 2, true);
	assert_int_equal(count_files(f->vdir), 2);
	check(f->s, 1, 7, 2);
	install_at(f->s, 5, 2, false);
	assert_int_equal(count_files(f->vdir), 2);
	check(f->s, 1, 7, 2);
	reopen(f);
	check(f->s, 1, 7, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_install_beyond_log_drops_files, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_before_drop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_install_keeping_log_keeps_files, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
