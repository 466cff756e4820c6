/* test_vlog_cut.c — open after a crash during a save (store/vlog.h): the
 * value log's fdatasync and RocksDB's synced batch run at once, so a crash
 * can leave durable references to data that never reached the disk. A
 * process kill cannot show that (the page cache survives it), so these
 * tests make the disk look as a power cut would leave it — the newest
 * file's tail missing, zeroed or garbled — and check that open cuts the
 * log at the first entry whose data is not intact, keeps everything
 * before it, lowers the commit index with it, refuses to cut under a
 * snapshot, and never cuts for damage in an older file (that is
 * corruption of acknowledged data, reported when read). Also the spares:
 * a file that goes is kept (up to VLOG_SPARES) and becomes the next file,
 * and a torn save into it, whose blocks still hold old entries' bytes,
 * is cut the same way. */
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

#define BIG (64u << 10) /* VLOG_MIN_BYTES */

/* The fixture: a store in a temp dir (test_util.h). */
typedef tu_store fixture;

static int setup(void **state)
{
	fixture *f = tu_store_new("vlogcut");

	assert_non_null(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	tu_store_free(*state);
	return 0;
}

/* Reopens; returns store_open's code (the store is NULL on failure). */
static int reopen(fixture *f, char *err, size_t errlen)
{
	return tu_store_reopen(f, err, errlen);
}

static void reopen_ok(fixture *f)
{
	char err[256];

	if (reopen(f, err, sizeof(err)) != 0)
		fail_msg("reopen: %s", err);
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

typedef enum { TORN_TRUNCATE, TORN_ZEROS, TORN_FLIP } torn_kind;

/* Makes len bytes at off of value log file seq look as a power cut may
 * leave unsynced data: gone (the file cut at off), never written (zeros,
 * the size already extended) or half written (a flipped byte). */
static void tear(const fixture *f, uint64_t seq, off_t off, size_t len, torn_kind how)
{
	char *path = tu_vlog_path(f, seq);
	int fd = open(path, O_RDWR);
	uint8_t *zeros, b;

	assert_true(fd >= 0);
	switch (how) {
	case TORN_TRUNCATE:
		assert_int_equal(ftruncate(fd, off), 0);
		break;
	case TORN_ZEROS:
		zeros = calloc(1, len);
		assert_non_null(zeros);
		assert_int_equal(pwrite(fd, zeros, len, off), (ssize_t)len);
		free(zeros);
		break;
	case TORN_FLIP:
		assert_int_equal(pread(fd, &b, 1, off + (off_t)len / 2), 1);
		b ^= 0x10;
		assert_int_equal(pwrite(fd, &b, 1, off + (off_t)len / 2), 1);
		break;
	}
	close(fd);
	free(path);
}

/* Two saves into one file: 1..3 whole, then 4..8 (big, small, big, big,
 * small) with a commit index covering all of it, as a follower's append
 * brings both. Entry 6's data torn: the log ends at 5 after the reopen,
 * commit lowered to 5, term and vote kept; the log takes new entries from
 * 6 on, and a second reopen cuts nothing. Each way of tearing. */
static void torn_second_save(fixture *f, torn_kind how)
{
	const size_t l1[] = {BIG, 7, BIG + 3}, l2[] = {BIG + 1, 10, 2 * BIG, BIG + 5, 9};
	raft_hard_state hs1 = {.term = 2, .vote = 3, .commit = 1};
	raft_hard_state hs2 = {.term = 2, .vote = 3, .commit = 8}, got;
	/* file offsets: 1 at 0, 3 at BIG, 4 at 2 BIG + 3, 6 at 3 BIG + 4 */
	const off_t off6 = 3 * (off_t)BIG + 4;

	tu_save(f->s, &hs1, 1, 4, 2, l1);
	tu_save(f->s, &hs2, 4, 9, 2, l2);
	assert_int_equal(store_last_index(f->s), 8);
	tear(f, 1, how == TORN_TRUNCATE ? off6 + 100 : off6, 2 * BIG, how);
	reopen_ok(f);
	assert_int_equal(store_open_cut(f->s), 6);
	assert_int_equal(store_last_index(f->s), 5);
	tu_check(f->s, 1, 6, 2);
	store_hard_state(f->s, &got);
	assert_int_equal(got.term, 2);
	assert_int_equal(got.vote, 3);
	assert_int_equal(got.commit, 5);

	const size_t l3[] = {BIG, BIG};
	tu_save(f->s, NULL, 6, 8, 3, l3); /* a new file: the torn one takes no more */
	tu_check(f->s, 1, 6, 2);
	tu_check(f->s, 6, 8, 3);
	reopen_ok(f);
	assert_int_equal(store_open_cut(f->s), 0);
	assert_int_equal(store_last_index(f->s), 7);
	tu_check(f->s, 1, 6, 2);
	tu_check(f->s, 6, 8, 3);
}

static void test_torn_truncated(void **state)
{
	torn_second_save(*state, TORN_TRUNCATE);
}

static void test_torn_zeros(void **state)
{
	torn_second_save(*state, TORN_ZEROS);
}

static void test_torn_flipped(void **state)
{
	torn_second_save(*state, TORN_FLIP);
}

/* The cut is at the first entry not intact, even when later entries of
 * the same save made it to the disk (pages are written back in any
 * order); and a commit index below the cut stays as it was. */
static void test_cut_at_first_not_last(void **state)
{
	fixture *f = *state;
	const size_t lens[] = {BIG, BIG, BIG, BIG};
	raft_hard_state hs = {.term = 1, .commit = 1}, got;

	tu_save(f->s, &hs, 1, 5, 1, lens);
	tear(f, 1, (off_t)BIG, BIG, TORN_ZEROS); /* entry 2; 3 and 4 intact */
	reopen_ok(f);
	assert_int_equal(store_open_cut(f->s), 2);
	assert_int_equal(store_last_index(f->s), 1);
	tu_check(f->s, 1, 2, 1);
	store_hard_state(f->s, &got);
	assert_int_equal(got.commit, 1);
}

/* The whole newest file lost (all of the last save's data): the log goes
 * back to the previous file's entries, and the empty file is deleted. */
static void test_newest_file_empty(void **state)
{
	fixture *f = *state;
	const size_t lens[] = {BIG, BIG, BIG};

	tu_save(f->s, NULL, 1, 3, 1, lens); /* file 1 */
	reopen_ok(f);
	tu_save(f->s, NULL, 3, 6, 1, lens); /* file 2 */
	tear(f, 2, 0, 0, TORN_TRUNCATE);
	reopen_ok(f);
	assert_int_equal(store_open_cut(f->s), 3);
	assert_int_equal(store_last_index(f->s), 2);
	assert_int_equal(count_files(f->vdir), 1);
	tu_check(f->s, 1, 3, 1);
}

/* Damage in a file older than the newest is not a save cut short (every
 * save into it returned before the next began): open keeps the log, and
 * reading the entry reports it. */
static void test_older_file_not_cut(void **state)
{
	fixture *f = *state;
	const size_t lens[] = {BIG, BIG};
	raft_entry *ents;
	size_t n;

	tu_save(f->s, NULL, 1, 3, 1, lens); /* file 1 */
	reopen_ok(f);
	tu_save(f->s, NULL, 3, 5, 1, lens); /* file 2 */
	tear(f, 1, (off_t)BIG, BIG, TORN_FLIP);
	reopen_ok(f);
	assert_int_equal(store_open_cut(f->s), 0);
	assert_int_equal(store_last_index(f->s), 4);
	assert_int_equal(store_entries(f->s, 2, 3, UINT64_MAX, &ents, &n), RAFT_ECORRUPT);
	assert_non_null(strstr(store_errmsg(f->s), "entry 2: checksum mismatch"));
	tu_check(f->s, 3, 5, 1);
}

/* Entries a snapshot covers were applied, so their save was whole: data
 * missing under the snapshot is corruption, and open refuses to cut. */
static void test_no_cut_under_snapshot(void **state)
{
	fixture *f = *state;
	const size_t lens[] = {BIG, BIG, BIG};
	raft_snapshot_meta m = {.index = 2, .term = 1};
	uint64_t voter = 1;
	char err[512];

	tu_save(f->s, NULL, 1, 4, 1, lens);
	m.conf.voters = &voter;
	m.conf.n_voters = 1;
	assert_int_equal(store_snapshot_begin(f->s, &m), 0);
	assert_int_equal(store_snapshot_write(f->s, 0, "x", 1), 0);
	assert_int_equal(store_snapshot_install_local(f->s), 0); /* log kept */
	tear(f, 1, (off_t)BIG, BIG, TORN_ZEROS);		 /* entry 2 */
	assert_int_equal(reopen(f, err, sizeof(err)), RAFT_ECORRUPT);
	assert_non_null(strstr(err, "entry 2"));
	assert_non_null(strstr(err, "snapshot at 2"));
}

static int count_suffix(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += strstr(de->d_name, suffix) != NULL;
	closedir(d);
	return n;
}

static ino_t inode_of(const fixture *f, uint64_t seq, const char *suffix)
{
	char *p;
	struct stat st;

	assert_true(asprintf(&p, "%s/%016llx%s", f->vdir, (unsigned long long)seq, suffix) > 0);
	assert_int_equal(stat(p, &st), 0);
	free(p);
	return st.st_ino;
}

/* Makes entries 1..3 (file 1) compacted away, 4 kept (file 2): file 1 is
 * then a spare. */
static void make_spare(fixture *f)
{
	const size_t lens[] = {BIG, BIG, BIG};
	raft_snapshot_meta m = {.index = 4, .term = 1};
	uint64_t voter = 1;

	tu_save(f->s, NULL, 1, 4, 1, lens);
	reopen_ok(f);
	tu_save(f->s, NULL, 4, 5, 1, lens);
	m.conf.voters = &voter;
	m.conf.n_voters = 1;
	assert_int_equal(store_snapshot_begin(f->s, &m), 0);
	assert_int_equal(store_snapshot_write(f->s, 0, "x", 1), 0);
	assert_int_equal(store_snapshot_install_local(f->s), 0);
	assert_int_equal(store_compact(f->s, 3), 0);
	assert_int_equal(count_suffix(f->vdir, ".spare"), 1);
	assert_int_equal(count_suffix(f->vdir, ".vlog"), 1);
}

/* A compacted file is kept as a spare (also across a reopen) and is the
 * next new file: the same inode, written over, read back right. */
static void test_spare_reused(void **state)
{
	fixture *f = *state;
	const size_t lens[] = {BIG + 9, 2 * BIG};
	ino_t ino;

	make_spare(f);
	ino = inode_of(f, 1, ".spare");
	reopen_ok(f);
	assert_int_equal(count_suffix(f->vdir, ".spare"), 1);
	tu_save(f->s, NULL, 5, 7, 2, lens); /* a new file: seq 3, the spare */
	assert_int_equal(count_suffix(f->vdir, ".spare"), 0);
	assert_true(inode_of(f, 3, ".vlog") == ino);
	tu_check(f->s, 4, 5, 1);
	tu_check(f->s, 5, 7, 2);
	reopen_ok(f);
	assert_int_equal(store_open_cut(f->s), 0);
	tu_check(f->s, 5, 7, 2);
}

/* A save into a recycled file cut short: the disk still holds an old
 * entry's bytes where entry 6 should be. They fail entry 6's CRC and the
 * log is cut there, as for any torn save. */
static void test_torn_into_spare(void **state)
{
	fixture *f = *state;
	const size_t lens[] = {BIG, BIG, BIG};
	raft_entry old;
	char *path;
	int fd;

	make_spare(f);
	reopen_ok(f);			 /* file 2 takes no more */
	tu_save(f->s, NULL, 5, 8, 2, lens); /* into the spare, now seq 3 */
	assert_int_equal(count_suffix(f->vdir, ".spare"), 0);
	tu_entry(&old, 2, 1, BIG);	 /* what was at offset BIG before */
	path = tu_vlog_path(f, 3);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, old.data, BIG, BIG), BIG);
	close(fd);
	free(path);
	raft_entry_free_contents(&old);
	reopen_ok(f);
	assert_int_equal(store_open_cut(f->s), 6);
	assert_int_equal(store_last_index(f->s), 5);
	tu_check(f->s, 5, 6, 2);
}

/* At most VLOG_SPARES (2) are kept: a snapshot that replaces a log of
 * three files leaves two spares and deletes the third. */
static void test_spares_bounded(void **state)
{
	fixture *f = *state;
	const size_t lens[] = {BIG};
	raft_snapshot_meta m = {.index = 10, .term = 3};
	uint64_t voter = 1;

	for (uint64_t i = 1; i <= 3; i++) {
		tu_save(f->s, NULL, i, i + 1, 1, lens);
		reopen_ok(f);
	}
	assert_int_equal(count_suffix(f->vdir, ".vlog"), 3);
	m.conf.voters = &voter;
	m.conf.n_voters = 1;
	assert_int_equal(store_snapshot_begin(f->s, &m), 0);
	assert_int_equal(store_snapshot_write(f->s, 0, "x", 1), 0);
	assert_int_equal(store_snapshot_install(f->s), 0); /* beyond the log */
	assert_int_equal(count_suffix(f->vdir, ".vlog"), 0);
	assert_int_equal(count_suffix(f->vdir, ".spare"), 2);
	reopen_ok(f);
	assert_int_equal(count_suffix(f->vdir, ".spare"), 2);
	assert_int_equal(store_last_index(f->s), 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_torn_truncated, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_torn_zeros, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_torn_flipped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cut_at_first_not_last, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_newest_file_empty, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_older_file_not_cut, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_cut_under_snapshot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_spare_reused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_torn_into_spare, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_spares_bounded, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
