/* test_storage_table.c — the raft_storage contract of consensus/storage.h
 * as a table of cases, run against the RocksDB store and (when the core
 * provides it) against memory_storage: both must answer every query alike.
 *
 * Each case is a script of writes through the implementation's own API
 * (append, local snapshot, received snapshot, compaction) and queries
 * through the raft_storage table only, with the expected result.
 */
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
#ifdef HAVE_MEMORY_STORAGE
#include "memory_storage.h"
#endif

#define ENTRY_LEN 10
#define ENTRY_SIZE (ENTRY_LEN + 24) /* raft_entry_size */

typedef enum {
	END,
	APPEND,	   /* entries [a, b) of term c -> rv */
	SNAP,	   /* local snapshot at a (its term from the log) -> rv */
	RECV_SNAP, /* snapshot from a leader at a, term b, replacing the log -> rv */
	COMPACT,   /* compact through a -> rv */
	REOPEN,	   /* close and reopen (a no-op for memory) */
	FIRST,	   /* first_index == want */
	LAST,	   /* last_index == want */
	TERM,	   /* term(a) -> rv, == want */
	ENTRIES,   /* entries(a, b, max c) -> rv, want entries */
	SNAPSHOT,  /* snapshot() has index a, term b */
} op_kind;

typedef struct op {
	op_kind k;
	uint64_t a, b, c;
	int rv;
	uint64_t want;
} op;

typedef struct tcase {
	const char *name;
	op ops[24];
} tcase;

/* Rows laid out by hand: one operation per cell reads better. */
/* clang-format off */
#define U UINT64_MAX
static const tcase cases[] = {
	{"empty log",
	 {{FIRST, .want = 1}, {LAST, .want = 0}, {TERM, 0, .want = 0},
	  {TERM, 1, .rv = RAFT_EUNAVAILABLE}, {ENTRIES, 1, 1, U, .want = 0},
	  {ENTRIES, 1, 2, U, .rv = RAFT_EUNAVAILABLE}, {ENTRIES, 0, 1, U, .rv = RAFT_ECOMPACTED},
	  {SNAPSHOT, 0, 0}}},
	{"appended entries",
	 {{APPEND, 1, 6, 1}, {APPEND, 6, 8, 2}, {REOPEN}, {FIRST, .want = 1}, {LAST, .want = 7},
	  {TERM, 0, .want = 0}, {TERM, 5, .want = 1}, {TERM, 6, .want = 2}, {TERM, 7, .want = 2},
	  {TERM, 8, .rv = RAFT_EUNAVAILABLE}, {ENTRIES, 1, 8, U, .want = 7},
	  {ENTRIES, 3, 5, U, .want = 2}, {ENTRIES, 1, 9, U, .rv = RAFT_EUNAVAILABLE},
	  {ENTRIES, 0, 3, U, .rv = RAFT_ECOMPACTED}}},
	{"byte caps",
	 {{APPEND, 1, 6, 1}, {ENTRIES, 1, 6, 0, .want = 1}, {ENTRIES, 1, 6, 1, .want = 1},
	  {ENTRIES, 1, 6, ENTRY_SIZE, .want = 1}, {ENTRIES, 1, 6, 2 * ENTRY_SIZE - 1, .want = 1},
	  {ENTRIES, 1, 6, 2 * ENTRY_SIZE, .want = 2}, {ENTRIES, 2, 6, 3 * ENTRY_SIZE, .want = 3},
	  {ENTRIES, 1, 6, 5 * ENTRY_SIZE, .want = 5}, {ENTRIES, 1, 6, 100 * ENTRY_SIZE, .want = 5}}},
	{"conflicting append truncates the suffix",
	 {{APPEND, 1, 8, 1}, {APPEND, 4, 6, 2}, {REOPEN}, {LAST, .want = 5},
	  {TERM, 3, .want = 1}, {TERM, 4, .want = 2}, {TERM, 6, .rv = RAFT_EUNAVAILABLE},
	  {ENTRIES, 1, 6, U, .want = 5}, {ENTRIES, 1, 7, U, .rv = RAFT_EUNAVAILABLE},
	  {APPEND, 6, 7, 3}, {LAST, .want = 6}, {TERM, 6, .want = 3}}},
	{"append with a gap is refused",
	 {{APPEND, 1, 4, 1}, {APPEND, 5, 7, 1, .rv = RAFT_EUNAVAILABLE}, {LAST, .want = 3},
	  {APPEND, 4, 5, 1}, {LAST, .want = 4}}},
	{"compacted log",
	 {{APPEND, 1, 11, 1}, {SNAP, 5}, {COMPACT, 5}, {REOPEN}, {FIRST, .want = 6},
	  {LAST, .want = 10}, {TERM, 5, .want = 1}, {TERM, 4, .rv = RAFT_ECOMPACTED},
	  {TERM, 0, .rv = RAFT_ECOMPACTED}, {ENTRIES, 5, 7, U, .rv = RAFT_ECOMPACTED},
	  {ENTRIES, 6, 11, U, .want = 5}, {ENTRIES, 6, 11, 0, .want = 1}, {SNAPSHOT, 5, 1},
	  {COMPACT, 5, .rv = RAFT_ECOMPACTED}, {COMPACT, 3, .rv = RAFT_ECOMPACTED}}},
	{"everything compacted",
	 {{APPEND, 1, 4, 1}, {APPEND, 4, 6, 2}, {SNAP, 5}, {COMPACT, 5}, {REOPEN},
	  {FIRST, .want = 6}, {LAST, .want = 5}, {TERM, 5, .want = 2},
	  {TERM, 6, .rv = RAFT_EUNAVAILABLE}, {ENTRIES, 6, 6, U, .want = 0},
	  {ENTRIES, 6, 7, U, .rv = RAFT_EUNAVAILABLE}, {APPEND, 6, 7, 3}, {LAST, .want = 6},
	  {TERM, 6, .want = 3}}},
	{"append at or below the compaction point is ignored there",
	 {{APPEND, 1, 11, 1}, {SNAP, 5}, {COMPACT, 5}, {APPEND, 3, 8, 2}, {REOPEN},
	  {FIRST, .want = 6}, {LAST, .want = 7}, {TERM, 5, .want = 1}, {TERM, 6, .want = 2},
	  {ENTRIES, 6, 8, U, .want = 2}}},
	{"received snapshot replaces the log",
	 {{APPEND, 1, 6, 1}, {RECV_SNAP, 10, 3}, {REOPEN}, {FIRST, .want = 11},
	  {LAST, .want = 10}, {TERM, 10, .want = 3}, {TERM, 9, .rv = RAFT_ECOMPACTED},
	  {TERM, 11, .rv = RAFT_EUNAVAILABLE}, {SNAPSHOT, 10, 3},
	  {ENTRIES, 10, 11, U, .rv = RAFT_ECOMPACTED}, {APPEND, 11, 13, 3}, {LAST, .want = 12},
	  {ENTRIES, 11, 13, U, .want = 2}}},
	{"received snapshot inside a conflicting log",
	 {{APPEND, 1, 9, 1}, {RECV_SNAP, 4, 2}, {FIRST, .want = 5}, {LAST, .want = 4},
	  {TERM, 4, .want = 2}, {TERM, 5, .rv = RAFT_EUNAVAILABLE}}},
	{"stale snapshots are refused",
	 {{RECV_SNAP, 5, 2},
	  {RECV_SNAP, 3, 2, .rv = RAFT_ESNAP_OUT_OF_DATE}, {SNAPSHOT, 5, 2},
	  {FIRST, .want = 6}}},
};
/* clang-format on */

/* One implementation under test, written through its own API. */
typedef struct impl {
	const char *name;
	raft_storage *st;
	void *h;
	char *dir;
	int (*append)(struct impl *, const raft_entry *, size_t);
	int (*snap)(struct impl *, uint64_t index, uint64_t term, const raft_conf_state *cs);
	int (*recv_snap)(struct impl *, uint64_t index, uint64_t term, const raft_conf_state *cs);
	int (*compact)(struct impl *, uint64_t index);
	void (*reopen)(struct impl *);
	void (*close)(struct impl *);
} impl;

/* ---- the store ---- */

static int st_append(impl *im, const raft_entry *e, size_t n)
{
	return store_append(im->h, e, n);
}

static int st_install(impl *im, uint64_t index, uint64_t term, const raft_conf_state *cs)
{
	raft_snapshot_meta m = {.index = index, .term = term, .conf = *cs};
	int rv = store_snapshot_begin(im->h, &m);
	if (rv == 0)
		rv = store_snapshot_write(im->h, 0, "snap", 4);
	if (rv == 0)
		rv = store_snapshot_install(im->h);
	return rv;
}

static int st_compact(impl *im, uint64_t index)
{
	return store_compact(im->h, index);
}

static void st_reopen(impl *im)
{
	char err[256];
	store_close(im->h);
	store *s;
	if (store_open(im->dir, &s, err, sizeof(err)) != 0)
		fail_msg("reopen: %s", err);
	im->h = s;
	im->st = store_raft_storage(s);
}

static void st_close(impl *im)
{
	store_close(im->h);
	tu_rmtree(im->dir);
	free(im->dir);
}

static void st_open(impl *im)
{
	*im = (impl){.name = "rocksdb store",
		     .append = st_append,
		     .snap = st_install,
		     .recv_snap = st_install,
		     .compact = st_compact,
		     .reopen = st_reopen,
		     .close = st_close};
	im->dir = tu_tmpdir("storage-table");
	assert_non_null(im->dir);
	store *s;
	char err[256];
	if (store_open(im->dir, &s, err, sizeof(err)) != 0)
		fail_msg("open: %s", err);
	im->h = s;
	im->st = store_raft_storage(s);
}

/* ---- memory_storage ---- */

#ifdef HAVE_MEMORY_STORAGE
static int ms_append(impl *im, const raft_entry *e, size_t n)
{
	return memory_storage_append(im->h, e, n);
}

static int ms_snap(impl *im, uint64_t index, uint64_t term, const raft_conf_state *cs)
{
	return memory_storage_create_snapshot(im->h, index, cs, "snap", 4);
}

static int ms_recv_snap(impl *im, uint64_t index, uint64_t term, const raft_conf_state *cs)
{
	raft_snapshot s = {.meta = {.index = index, .term = term, .conf = *cs},
			   .data = (uint8_t *)"snap",
			   .len = 4};
	int rv = memory_storage_apply_snapshot(im->h, &s);
	if (rv == 0)
		rv = memory_storage_set_conf_state(im->h, cs);
	return rv;
}

static int ms_compact(impl *im, uint64_t index)
{
	return memory_storage_compact(im->h, index);
}

static void ms_reopen(impl *im)
{
}

static void ms_close(impl *im)
{
	memory_storage_free(im->h);
}

static void ms_open(impl *im)
{
	*im = (impl){.name = "memory_storage",
		     .append = ms_append,
		     .snap = ms_snap,
		     .recv_snap = ms_recv_snap,
		     .compact = ms_compact,
		     .reopen = ms_reopen,
		     .close = ms_close};
	im->h = memory_storage_new();
	assert_non_null(im->h);
	im->st = memory_storage_iface(im->h);
}
#endif

/* ---- the runner ---- */

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail_msg(__VA_ARGS__);                                                     \
	} while (0)

static void run_op(impl *im, const tcase *tc, size_t i)
{
	const op *o = &tc->ops[i];
	raft_storage *st = im->st;
	uint64_t voters[] = {1, 2, 3};
	raft_conf_state cs = {.voters = voters, .n_voters = 3};
	uint64_t v = 0;
	int rv = 0;
	const char *what = "";

	switch (o->k) {
	case APPEND: {
		raft_entry *ents = tu_entries(o->a, o->b, o->c, ENTRY_LEN);
		rv = im->append(im, ents, o->b - o->a);
		raft_entries_free(ents, o->b - o->a);
		what = "append";
		break;
	}
	case SNAP: {
		uint64_t t = 0;
		CHECK(st->term(st->ctx, o->a, &t) == 0,
		      "%s, %s, op %zu: no term for snapshot at %llu", im->name, tc->name, i,
		      (unsigned long long)o->a);
		rv = im->snap(im, o->a, t, &cs);
		what = "snapshot";
		break;
	}
	case RECV_SNAP:
		rv = im->recv_snap(im, o->a, o->b, &cs);
		what = "received snapshot";
		break;
	case COMPACT:
		rv = im->compact(im, o->a);
		what = "compact";
		break;
	case REOPEN:
		im->reopen(im);
		return;
	case FIRST:
	case LAST:
		rv = (o->k == FIRST ? st->first_index : st->last_index)(st->ctx, &v);
		CHECK(rv == 0 && v == o->want, "%s, %s, op %zu: %s index %llu, want %llu", im->name,
		      tc->name, i, o->k == FIRST ? "first" : "last", (unsigned long long)v,
		      (unsigned long long)o->want);
		return;
	case TERM:
		rv = st->term(st->ctx, o->a, &v);
		CHECK(rv == o->rv && (rv != 0 || v == o->want),
		      "%s, %s, op %zu: term(%llu) = %d (%s), %llu; want %d, %llu", im->name,
		      tc->name, i, (unsigned long long)o->a, rv, raft_strerror(rv),
		      (unsigned long long)v, o->rv, (unsigned long long)o->want);
		return;
	case ENTRIES: {
		raft_entry *ents = NULL;
		size_t n = 0;
		rv = st->entries(st->ctx, o->a, o->b, o->c, &ents, &n);
		CHECK(rv == o->rv && (rv != 0 || n == o->want),
		      "%s, %s, op %zu: entries(%llu, %llu, %llu) = %d (%s), %zu entries; want %d, "
		      "%llu",
		      im->name, tc->name, i, (unsigned long long)o->a, (unsigned long long)o->b,
		      (unsigned long long)o->c, rv, raft_strerror(rv), n, o->rv,
		      (unsigned long long)o->want);
		for (size_t k = 0; k < n; k++) {
			uint64_t t = 0;
			st->term(st->ctx, o->a + k, &t);
			CHECK(tu_entry_ok(&ents[k], o->a + k, t),
			      "%s, %s, op %zu: entry %llu wrong", im->name, tc->name, i,
			      (unsigned long long)(o->a + k));
		}
		raft_entries_free(ents, n);
		return;
	}
	case SNAPSHOT: {
		raft_snapshot s;
		rv = st->snapshot(st->ctx, &s);
		CHECK(rv == 0 && s.meta.index == o->a && s.meta.term == o->b,
		      "%s, %s, op %zu: snapshot() = %d, at %llu term %llu; want %llu term %llu",
		      im->name, tc->name, i, rv, (unsigned long long)s.meta.index,
		      (unsigned long long)s.meta.term, (unsigned long long)o->a,
		      (unsigned long long)o->b);
		raft_snapshot_free_contents(&s);
		return;
	}
	case END:
		return;
	}
	CHECK(rv == o->rv, "%s, %s, op %zu: %s = %d (%s), want %d (%s)", im->name, tc->name, i,
	      what, rv, raft_strerror(rv), o->rv, raft_strerror(o->rv));
}

/* The implementation open right now, closed by teardown if a case fails. */
static impl *current;

static void run_case(void (*open)(impl *), const tcase *tc)
{
	static impl im;
	open(&im);
	current = &im;
	for (size_t i = 0; i < sizeof(tc->ops) / sizeof(tc->ops[0]) && tc->ops[i].k != END; i++)
		run_op(&im, tc, i);
	current = NULL;
	im.close(&im);
}

static int teardown(void **state)
{
	if (current)
		current->close(current);
	current = NULL;
	return 0;
}

static void test_store_table(void **state)
{
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
		run_case(st_open, &cases[c]);
}

#ifdef HAVE_MEMORY_STORAGE
static void test_memory_storage_table(void **state)
{
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
		run_case(ms_open, &cases[c]);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_store_table, teardown),
#ifdef HAVE_MEMORY_STORAGE
	    cmocka_unit_test_teardown(test_memory_storage_table, teardown),
#endif
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
