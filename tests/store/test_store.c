/* test_store.c — every call of store.h, with its boundaries, and that a
 * reopen keeps what was written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store.h"
#include "test_util.h"

/* The fixture: a store in a temp dir, and f->other for a test that makes a
 * second directory (test_util.h; both removed in teardown). */
typedef tu_store fixture;

static int setup(void **state)
{
	fixture *f = tu_store_new("store");

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

static void append(store *s, uint64_t lo, uint64_t hi, uint64_t term, size_t len)
{
	raft_entry *ents = tu_entries(lo, hi, term, len);
	int rv = store_append(s, ents, hi - lo);
	raft_entries_free(ents, hi - lo);
	if (rv != 0)
		fail_msg("append %llu..%llu: %s", (unsigned long long)lo,
			 (unsigned long long)hi - 1, store_errmsg(s));
}

static uint64_t term_of(store *s, uint64_t index)
{
	uint64_t t = 0;
	int rv = store_term(s, index, &t);
	if (rv != 0)
		fail_msg("term(%llu): %s", (unsigned long long)index, raft_strerror(rv));
	return t;
}

/* Reads [lo, hi) with no cap and checks each entry has the given term. */
static void expect_entries(store *s, uint64_t lo, uint64_t hi, uint64_t term)
{
	raft_entry *ents;
	size_t n;
	assert_int_equal(store_entries(s, lo, hi, UINT64_MAX, &ents, &n), 0);
	assert_int_equal(n, hi - lo);
	for (size_t i = 0; i < n; i++)
		assert_true(tu_entry_ok(&ents[i], lo + i, term));
	raft_entries_free(ents, n);
}

static void install(store *s, uint64_t index, uint64_t term, const uint64_t *voters,
		    size_t n_voters, const void *data, size_t len, size_t chunk)
{
	raft_snapshot_meta m = {.index = index, .term = term};
	m.conf.voters = (uint64_t *)voters;
	m.conf.n_voters = n_voters;
	assert_int_equal(store_snapshot_begin(s, &m), 0);
	for (size_t off = 0; off < len; off += chunk) {
		size_t c = len - off < chunk ? len - off : chunk;
		assert_int_equal(store_snapshot_write(s, off, (const uint8_t *)data + off, c), 0);
	}
	int rv = store_snapshot_install(s);
	if (rv != 0)
		fail_msg("install snapshot %llu: %s", (unsigned long long)index, store_errmsg(s));
}

static void test_fresh_store(void **state)
{
	fixture *f = *state;
	for (int round = 0; round < 2; round++) {
		uint64_t t = 99;
		raft_entry *ents = (raft_entry *)1;
		size_t n = 7;
		assert_int_equal(store_first_index(f->s), 1);
		assert_int_equal(store_last_index(f->s), 0);
		assert_int_equal(store_term(f->s, 0, &t), 0);
		assert_int_equal(t, 0);
		assert_int_equal(store_term(f->s, 1, &t), RAFT_EUNAVAILABLE);
		assert_int_equal(store_entries(f->s, 1, 1, 100, &ents, &n), 0);
		assert_null(ents);
		assert_int_equal(n, 0);
		assert_int_equal(store_entries(f->s, 1, 2, 100, &ents, &n), RAFT_EUNAVAILABLE);
		assert_int_equal(store_entries(f->s, 0, 1, 100, &ents, &n), RAFT_ECOMPACTED);
		raft_hard_state hs = {1, 2, 3};
		store_hard_state(f->s, &hs);
		assert_true(hs.term == 0 && hs.vote == 0 && hs.commit == 0);
		raft_conf_state cs;
		assert_int_equal(store_conf_state(f->s, &cs), 0);
		assert_int_equal(cs.n_voters + cs.n_learners, 0);
		raft_snapshot_meta m;
		uint64_t len = 5;
		assert_int_equal(store_snapshot_meta(f->s, &m, &len), 0);
		assert_true(m.index == 0 && m.term == 0 && len == 0 && m.conf.n_voters == 0);
		uint8_t buf[4];
		assert_int_equal(store_snapshot_read(f->s, 0, buf, sizeof(buf), &n), 0);
		assert_int_equal(n, 0);
		assert_false(store_snapshot_staged(f->s, NULL, NULL));
		/* Snapshot at index 0 is the fresh store's: nothing older to replace. */
		assert_int_equal(store_snapshot_begin(f->s, &m), RAFT_ESNAP_OUT_OF_DATE);
		assert_int_equal(store_compact(f->s, 0), RAFT_ECOMPACTED);
		assert_int_equal(store_compact(f->s, 1), RAFT_EUNAVAILABLE);
		reopen(f);
	}
}

static void test_append_and_read(void **state)
{
	fixture *f = *state;
	append(f->s, 1, 11, 1, 100);
	append(f->s, 11, 12, 2, 0); /* an empty entry, like the leader's no-op */
	for (int round = 0; round < 2; round++) {
		assert_int_equal(store_first_index(f->s), 1);
		assert_int_equal(store_last_index(f->s), 11);
		assert_int_equal(term_of(f->s, 5), 1);
		assert_int_equal(term_of(f->s, 11), 2);
		expect_entries(f->s, 1, 11, 1);
		expect_entries(f->s, 11, 12, 2);
		expect_entries(f->s, 4, 7, 1);
		reopen(f);
	}
	uint64_t t;
	assert_int_equal(store_term(f->s, 12, &t), RAFT_EUNAVAILABLE);
	raft_entry *ents;
	size_t n;
	assert_int_equal(store_entries(f->s, 5, 4, 0, &ents, &n), RAFT_EINVAL);
	assert_int_equal(store_entries(f->s, 1, 13, UINT64_MAX, &ents, &n), RAFT_EUNAVAILABLE);
}

static void test_byte_cap(void **state)
{
	fixture *f = *state;
	append(f->s, 1, 11, 1, 100);
	const uint64_t one = 100 + 24; /* raft_entry_size */
	static const struct {
		uint64_t max;
		size_t want;
	} cases[] = {
	    {0, 1}, /* a cap below one entry still yields one */
	    {1, 1},	  {one - 1, 1},		  {one, 1},	  {one + 1, 1},
	    {3 * one, 3}, {3 * one + one - 1, 3}, {10 * one, 10}, {UINT64_MAX, 10},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		raft_entry *ents;
		size_t n;
		assert_int_equal(store_entries(f->s, 1, 11, cases[i].max, &ents, &n), 0);
		assert_int_equal(n, cases[i].want);
		for (size_t k = 0; k < n; k++)
			assert_true(tu_entry_ok(&ents[k], 1 + k, 1));
		raft_entries_free(ents, n);
	}
}

static void test_append_truncates_suffix(void **state)
{
	fixture *f = *state;
	append(f->s, 1, 11, 1, 50);
	append(f->s, 6, 8, 2, 50); /* conflicts at 6: 8..10 must go */
	for (int round = 0; round < 2; round++) {
		assert_int_equal(store_last_index(f->s), 7);
		assert_int_equal(term_of(f->s, 7), 2);
		expect_entries(f->s, 1, 6, 1);
		expect_entries(f->s, 6, 8, 2);
		uint64_t t;
		assert_int_equal(store_term(f->s, 8, &t), RAFT_EUNAVAILABLE);
		reopen(f);
	}
	/* Entries written again past the old end read back as the new ones. */
	append(f->s, 8, 10, 3, 50);
	expect_entries(f->s, 8, 10, 3);
	uint64_t t;
	assert_int_equal(store_term(f->s, 10, &t), RAFT_EUNAVAILABLE);
	/* Overlap that extends the log: rewrites 5..9 and adds 10..12. */
	append(f->s, 5, 13, 4, 50);
	reopen(f);
	expect_entries(f->s, 1, 5, 1);
	expect_entries(f->s, 5, 13, 4);
	assert_int_equal(store_last_index(f->s), 12);
}

static void test_append_errors(void **state)
{
	fixture *f = *state;
	append(f->s, 1, 4, 1, 10);
	raft_entry *gap = tu_entries(5, 7, 1, 10);
	assert_int_equal(store_append(f->s, gap, 2), RAFT_EUNAVAILABLE);
	assert_non_null(strstr(store_errmsg(f->s), "gap"));
	assert_non_null(strstr(store_errmsg(f->s), f->dir));
	raft_entries_free(gap, 2);

	raft_entry *holey = tu_entries(4, 7, 1, 10);
	holey[2].index = 9;
	assert_int_equal(store_append(f->s, holey, 3), RAFT_EINVAL);
	raft_entries_free(holey, 3);
	assert_int_equal(store_last_index(f->s), 3);
	assert_int_equal(store_append(f->s, NULL, 0), 0);
	reopen(f);
	assert_int_equal(store_last_index(f->s), 3);
}

/* A failed sync is sticky (review finding): the saves after it fail too,
 * also a resend of the same entries whose own sync would succeed, and a
 * hard state alone, until the store is reopened. Without the latch the
 * second save returned 0, and its caller would have counted the first
 * save's entries as durable. */
static void test_sync_failure_sticky(void **state)
{
	fixture *f = *state;
	raft_entry *e = tu_entries(1, 4, 1, 100);
	raft_hard_state hs = {.term = 1, .vote = 1, .commit = 1};

	assert_int_equal(store_save(f->s, NULL, e, 1), 0);
	store_fail_next_sync(f->s, RAFT_EIO);
	assert_int_equal(store_save(f->s, NULL, e + 1, 1), RAFT_EIO);
	assert_non_null(strstr(store_errmsg(f->s), "failed on purpose"));
	assert_int_equal(store_save(f->s, NULL, e + 1, 2), RAFT_EIO);
	assert_non_null(strstr(store_errmsg(f->s), "a sync of this store failed before"));
	assert_int_equal(store_save_write(f->s, &hs, NULL, 0), RAFT_EIO);
	assert_int_equal(store_append(f->s, e + 1, 2), RAFT_EIO);
	reopen(f);
	assert_int_equal(store_save(f->s, &hs, e + 1, 2), 0);
	expect_entries(f->s, 1, 4, 1);
	raft_entries_free(e, 3);
}

static void test_save_hard_state_with_entries(void **state)
{
	fixture *f = *state;
	raft_entry *ents = tu_entries(1, 4, 2, 30);
	raft_hard_state hs = {.term = 2, .vote = 3, .commit = 1};
	assert_int_equal(store_save(f->s, &hs, ents, 3), 0);
	raft_entries_free(ents, 3);
	hs.commit = 3;
	assert_int_equal(store_save(f->s, &hs, NULL, 0), 0);
	reopen(f);
	raft_hard_state got;
	store_hard_state(f->s, &got);
	assert_true(got.term == 2 && got.vote == 3 && got.commit == 3);
	expect_entries(f->s, 1, 4, 2);
	hs = (raft_hard_state){.term = 5, .vote = 0, .commit = 3};
	assert_int_equal(store_set_hard_state(f->s, &hs), 0);
	reopen(f);
	store_hard_state(f->s, &got);
	assert_true(got.term == 5 && got.vote == 0 && got.commit == 3);
}

static void test_conf_state(void **state)
{
	fixture *f = *state;
	uint64_t voters[] = {1, 2, 3}, learners[] = {7};
	raft_conf_state cs = {.voters = voters, .n_voters = 3, .learners = learners, .n_learners = 1};
	assert_int_equal(store_set_conf_state(f->s, &cs), 0);
	reopen(f);
	raft_conf_state got;
	assert_int_equal(store_conf_state(f->s, &got), 0);
	assert_int_equal(got.n_voters, 3);
	assert_int_equal(got.n_learners, 1);
	assert_memory_equal(got.voters, voters, sizeof(voters));
	assert_int_equal(got.learners[0], 7);
	raft_conf_state_free_contents(&got);
}

/* A snapshot the log agrees with keeps the log; compaction then discards
 * up to (never beyond) the snapshot. */
static void test_local_snapshot_and_compact(void **state)
{
	fixture *f = *state;
	append(f->s, 1, 11, 1, 40);
	uint64_t voters[] = {1, 2, 3};
	install(f->s, 7, 1, voters, 3, "state", 5, 2);
	assert_int_equal(store_first_index(f->s), 1);
	assert_int_equal(store_last_index(f->s), 10);
	assert_int_equal(store_compact(f->s, 8), RAFT_EINVAL); /* beyond the snapshot */
	assert_non_null(strstr(store_errmsg(f->s), "beyond the snapshot"));
	assert_int_equal(store_compact(f->s, 11), RAFT_EUNAVAILABLE);
	assert_int_equal(store_compact(f->s, 5), 0);
	for (int round = 0; round < 2; round++) {
		uint64_t t;
		raft_entry *ents;
		size_t n;
		assert_int_equal(store_first_index(f->s), 6);
		assert_int_equal(store_last_index(f->s), 10);
		assert_int_equal(term_of(f->s, 5), 1); /* the compaction point's term */
		assert_int_equal(store_term(f->s, 4, &t), RAFT_ECOMPACTED);
		assert_int_equal(store_entries(f->s, 5, 7, UINT64_MAX, &ents, &n), RAFT_ECOMPACTED);
		expect_entries(f->s, 6, 11, 1);
		reopen(f);
	}
	assert_int_equal(store_compact(f->s, 5), RAFT_ECOMPACTED);
	assert_int_equal(store_compact(f->s, 7), 0);
	assert_int_equal(store_first_index(f->s), 8);
	/* Entries at or below the compaction point are ignored, the rest
	 * appended (and the suffix after them truncated). */
	append(f->s, 5, 10, 1, 40);
	assert_int_equal(store_last_index(f->s), 9);
	expect_entries(f->s, 8, 10, 1);
	/* Everything compacted: an empty log that still knows term(last). */
	install(f->s, 9, 1, voters, 3, "s2", 2, 1);
	assert_int_equal(store_compact(f->s, 9), 0);
	reopen(f);
	assert_int_equal(store_first_index(f->s), 10);
	assert_int_equal(store_last_index(f->s), 9);
	assert_int_equal(term_of(f->s, 9), 1);
	raft_entry *ents;
	size_t n;
	assert_int_equal(store_entries(f->s, 10, 10, 0, &ents, &n), 0);
	assert_int_equal(n, 0);
	append(f->s, 10, 11, 2, 40);
	expect_entries(f->s, 10, 11, 2);
}

/* A snapshot the log does not agree with replaces it (Raft §7). */
static void test_received_snapshot_replaces_log(void **state)
{
	fixture *f = *state;
	append(f->s, 1, 11, 1, 40);
	uint64_t voters[] = {4, 5};
	install(f->s, 7, 2, voters, 2, "abc", 3, 3);
	for (int round = 0; round < 2; round++) {
		uint64_t t;
		assert_int_equal(store_first_index(f->s), 8);
		assert_int_equal(store_last_index(f->s), 7);
		assert_int_equal(term_of(f->s, 7), 2);
		assert_int_equal(store_term(f->s, 6, &t), RAFT_ECOMPACTED);
		assert_int_equal(store_term(f->s, 8, &t), RAFT_EUNAVAILABLE);
		raft_conf_state cs;
		assert_int_equal(store_conf_state(f->s, &cs), 0);
		assert_int_equal(cs.n_voters, 2);
		assert_int_equal(cs.voters[1], 5);
		raft_conf_state_free_contents(&cs);
		reopen(f);
	}
	/* Beyond the end of the log: also a replacement. */
	install(f->s, 20, 3, voters, 2, NULL, 0, 1);
	assert_int_equal(store_first_index(f->s), 21);
	assert_int_equal(store_last_index(f->s), 20);
	raft_entry *gap = tu_entries(22, 23, 3, 1);
	assert_int_equal(store_append(f->s, gap, 1), RAFT_EUNAVAILABLE);
	raft_entries_free(gap, 1);
	append(f->s, 21, 23, 3, 40);
	reopen(f);
	expect_entries(f->s, 21, 23, 3);
}

static void expect_snapshot_data(store *s, const uint8_t *want, size_t len)
{
	uint8_t *buf = malloc(len + 16);
	assert_non_null(buf);
	/* Every read position and a few sizes, crossing chunk boundaries. */
	static const size_t caps[] = {1, 7, 100, 4096, 1 << 20};
	for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++)
		for (size_t off = 0; off <= len; off += (len / 37) + 1) {
			size_t n;
			assert_int_equal(store_snapshot_read(s, off, buf, caps[c], &n), 0);
			size_t expect = len - off < caps[c] ? len - off : caps[c];
			assert_int_equal(n, expect);
			assert_memory_equal(buf, want + off, n);
		}
	size_t n = 1;
	assert_int_equal(store_snapshot_read(s, len + 5, buf, 16, &n), 0);
	assert_int_equal(n, 0);
	free(buf);
}

static void test_snapshot_chunks(void **state)
{
	fixture *f = *state;
	size_t len = 10000;
	uint8_t *data = malloc(len);
	assert_non_null(data);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 31 + 7);
	raft_snapshot_meta m = {.index = 5, .term = 2};

	assert_int_equal(store_snapshot_write(f->s, 0, data, 10), RAFT_EINVAL);
	assert_int_equal(store_snapshot_install(f->s), RAFT_EINVAL);
	assert_int_equal(store_snapshot_begin(f->s, &m), 0);
	assert_int_equal(store_snapshot_write(f->s, 0, data, 1000), 0);
	assert_int_equal(store_snapshot_write(f->s, 1000, data + 1000, 3000), 0);
	assert_int_equal(store_snapshot_write(f->s, 5000, data, 1), RAFT_EINVAL); /* hole */
	assert_int_equal(store_snapshot_write(f->s, 500, data, 1), RAFT_EINVAL);  /* mid-chunk */
	/* Resume from an earlier chunk: 1000.. is written again. */
	assert_int_equal(store_snapshot_write(f->s, 1000, data + 1000, 2500), 0);
	uint64_t idx, staged;
	assert_true(store_snapshot_staged(f->s, &idx, &staged));
	assert_int_equal(idx, 5);
	assert_int_equal(staged, 3500);

	/* Staging survives a restart; the current snapshot is still the old one. */
	reopen(f);
	assert_true(store_snapshot_staged(f->s, &idx, &staged));
	assert_int_equal(staged, 3500);
	raft_snapshot_meta cur;
	uint64_t cur_len;
	assert_int_equal(store_snapshot_meta(f->s, &cur, &cur_len), 0);
	assert_int_equal(cur.index, 0);
	assert_int_equal(cur_len, 0);

	assert_int_equal(store_snapshot_write(f->s, 3500, data + 3500, len - 3500 - 7), 0);
	assert_int_equal(store_snapshot_write(f->s, len - 7, data + len - 7, 7), 0);
	assert_int_equal(store_snapshot_install(f->s), 0);
	assert_false(store_snapshot_staged(f->s, NULL, NULL));
	for (int round = 0; round < 2; round++) {
		assert_int_equal(store_snapshot_meta(f->s, &cur, &cur_len), 0);
		assert_int_equal(cur.index, 5);
		assert_int_equal(cur.term, 2);
		assert_int_equal(cur_len, len);
		expect_snapshot_data(f->s, data, len);
		reopen(f);
	}
	m.index = 5;
	assert_int_equal(store_snapshot_begin(f->s, &m), RAFT_ESNAP_OUT_OF_DATE);

	/* A second snapshot replaces the first, data and all; a staged one that
	 * is begun again starts from nothing. */
	m.index = 9;
	assert_int_equal(store_snapshot_begin(f->s, &m), 0);
	assert_int_equal(store_snapshot_write(f->s, 0, data, 3), 0);
	assert_int_equal(store_snapshot_begin(f->s, &m), 0);
	assert_true(store_snapshot_staged(f->s, NULL, &staged));
	assert_int_equal(staged, 0);
	assert_int_equal(store_snapshot_write(f->s, 0, data + 100, 50), 0);
	assert_int_equal(store_snapshot_install(f->s), 0);
	reopen(f);
	expect_snapshot_data(f->s, data + 100, 50);
	free(data);
}

static void test_raft_storage_snapshot_inline_limit(void **state)
{
	fixture *f = *state;
	raft_storage *st = store_raft_storage(f->s);
	size_t big = STORE_SNAPSHOT_INLINE_MAX + 1;
	uint8_t *data = calloc(1, big);
	assert_non_null(data);
	data[big - 1] = 0x5a;
	uint64_t voters[] = {1};

	install(f->s, 3, 1, voters, 1, data, STORE_SNAPSHOT_INLINE_MAX, 1 << 18);
	raft_snapshot snap;
	assert_int_equal(st->snapshot(st->ctx, &snap), 0);
	assert_int_equal(snap.meta.index, 3);
	assert_int_equal(snap.len, STORE_SNAPSHOT_INLINE_MAX);
	assert_memory_equal(snap.data, data, snap.len);
	assert_int_equal(snap.meta.conf.n_voters, 1);
	raft_snapshot_free_contents(&snap);

	install(f->s, 4, 1, voters, 1, data, big, 1 << 18);
	assert_int_equal(st->snapshot(st->ctx, &snap), 0);
	assert_int_equal(snap.meta.index, 4);
	assert_null(snap.data);
	assert_int_equal(snap.len, 0);
	raft_snapshot_free_contents(&snap);
	uint8_t last;
	size_t n;
	assert_int_equal(store_snapshot_read(f->s, big - 1, &last, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(last, 0x5a);
	free(data);
}

static void test_open_refuses_foreign_dir(void **state)
{
	fixture *f = *state;
	char *dir = f->other = tu_tmpdir("store-foreign");
	assert_non_null(dir);
	char *file;
	assert_true(asprintf(&file, "%s/notes.txt", dir) > 0);
	FILE *fp = fopen(file, "w");
	assert_non_null(fp);
	fclose(fp);
	store *s = NULL;
	char err[512];
	assert_int_equal(store_open(dir, &s, err, sizeof(err)), RAFT_EINVAL);
	assert_null(s);
	assert_non_null(strstr(err, dir));
	assert_non_null(strstr(err, "not a raftfs store"));
	/* Opening the same store twice fails on RocksDB's lock, with a message. */
	assert_int_not_equal(store_open(f->dir, &s, err, sizeof(err)), 0);
	assert_non_null(strstr(err, f->dir));
	free(file);
}

static void test_open_creates_parents(void **state)
{
	fixture *f = *state;
	f->other = tu_tmpdir("store-nested");
	assert_non_null(f->other);
	char *nested;
	assert_true(asprintf(&nested, "%s/data/node1/raft", f->other) > 0);
	store *s = NULL;
	char err[512];
	if (store_open(nested, &s, err, sizeof(err)) != 0)
		fail_msg("open %s: %s", nested, err);
	append(s, 1, 3, 1, 10);
	store_close(s);
	assert_int_equal(store_open(nested, &s, err, sizeof(err)), 0);
	assert_int_equal(store_last_index(s), 2);
	store_close(s);
	free(nested);
	assert_int_equal(store_open("", &s, err, sizeof(err)), RAFT_EINVAL);
	assert_null(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_fresh_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_append_and_read, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_byte_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_append_truncates_suffix, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_append_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sync_failure_sticky, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_hard_state_with_entries, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_conf_state, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_local_snapshot_and_compact, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_received_snapshot_replaces_log, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_chunks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_raft_storage_snapshot_inline_limit, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_open_refuses_foreign_dir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_creates_parents, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
