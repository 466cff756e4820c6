/* test_memory_storage.c — memory_storage against memory_storage.h and storage.h's index rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "memory_storage.h"

/* A storage holding a snapshot point at 3 (term 3) and entries 4 (t4), 5 (t5). */
static memory_storage *fixture(void)
{
	memory_storage *ms = memory_storage_new();
	assert_non_null(ms);
	raft_snapshot snap = {.meta = {.index = 3, .term = 3}};
	assert_int_equal(memory_storage_apply_snapshot(ms, &snap), 0);
	raft_entry ents[] = {{.index = 4, .term = 4, .len = 1, .data = (uint8_t *)"a"},
			     {.index = 5, .term = 5, .len = 2, .data = (uint8_t *)"bb"}};
	assert_int_equal(memory_storage_append(ms, ents, 2), 0);
	return ms;
}

static void test_fresh(void **state)
{
	memory_storage *ms = memory_storage_new();
	raft_storage *s = memory_storage_iface(ms);
	uint64_t v;
	assert_int_equal(s->first_index(s->ctx, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(s->last_index(s->ctx, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(s->term(s->ctx, 0, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(s->term(s->ctx, 1, &v), RAFT_EUNAVAILABLE);
	raft_hard_state hs = {.term = 9};
	raft_conf_state cs;
	assert_int_equal(s->initial_state(s->ctx, &hs, &cs), 0);
	assert_int_equal(hs.term, 0);
	assert_int_equal(cs.n_voters, 0);
	raft_conf_state_free_contents(&cs);
	raft_snapshot snap;
	assert_int_equal(s->snapshot(s->ctx, &snap), 0);
	assert_int_equal(snap.meta.index, 0);
	raft_snapshot_free_contents(&snap);
	memory_storage_free(ms);
}

static void test_term(void **state)
{
	static const struct {
		uint64_t i;
		int werr;
		uint64_t wterm;
	} tt[] = {
	    {2, RAFT_ECOMPACTED, 0}, {3, 0, 3}, {4, 0, 4}, {5, 0, 5}, {6, RAFT_EUNAVAILABLE, 0}};
	memory_storage *ms = fixture();
	raft_storage *s = memory_storage_iface(ms);
	for (size_t k = 0; k < sizeof(tt) / sizeof(tt[0]); k++) {
		uint64_t t = 99;
		assert_int_equal(s->term(s->ctx, tt[k].i, &t), tt[k].werr);
		assert_int_equal(t, tt[k].wterm);
	}
	memory_storage_free(ms);
}

static void test_entries(void **state)
{
	static const struct {
		uint64_t lo, hi, max;
		int werr;
		size_t wn;
	} tt[] = {
	    {2, 6, UINT64_MAX, RAFT_ECOMPACTED, 0},
	    {3, 4, UINT64_MAX, RAFT_ECOMPACTED, 0},
	    {4, 5, UINT64_MAX, 0, 1},
	    {4, 6, UINT64_MAX, 0, 2},
	    {4, 7, UINT64_MAX, RAFT_EUNAVAILABLE, 0},
	    {4, 6, 0, 0, 1},  /* at least one entry */
	    {4, 6, 25, 0, 1}, /* 25 bytes for the first, the second does not fit */
	    {4, 6, 51, 0, 2},
	    {5, 5, UINT64_MAX, 0, 0},
	};
	memory_storage *ms = fixture();
	raft_storage *s = memory_storage_iface(ms);
	for (size_t k = 0; k < sizeof(tt) / sizeof(tt[0]); k++) {
		raft_entry *ents = NULL;
		size_t n = 99;
		assert_int_equal(s->entries(s->ctx, tt[k].lo, tt[k].hi, tt[k].max, &ents, &n),
				 tt[k].werr);
		assert_int_equal(n, tt[k].wn);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(ents[i].index, tt[k].lo + i);
		if (n)
			assert_memory_equal(ents[0].data, tt[k].lo == 4 ? "a" : "bb", ents[0].len);
		raft_entries_free(ents, n);
	}
	memory_storage_free(ms);
}

static void test_append(void **state)
{
	static const struct {
		raft_entry ents[3];
		size_t n;
		int werr;
		uint64_t wterms[4]; /* terms of 3.. */
		size_t wn;
	} tt[] = {
	    /* already compacted: ignored */
	    {{{.index = 2, .term = 2}, {.index = 3, .term = 3}}, 2, 0, {3, 4, 5}, 3},
	    /* same entries */
	    {{{.index = 4, .term = 4}, {.index = 5, .term = 5}}, 2, 0, {3, 4, 5}, 3},
	    /* replace a suffix */
	    {{{.index = 4, .term = 4}, {.index = 5, .term = 6}, {.index = 6, .term = 6}},
	     3,
	     0,
	     {3, 4, 6, 6},
	     4},
	    /* truncate from the first new index */
	    {{{.index = 4, .term = 7}}, 1, 0, {3, 7}, 2},
	    /* overlapping the compaction point */
	    {{{.index = 3, .term = 3}, {.index = 4, .term = 8}}, 2, 0, {3, 8}, 2},
	    /* direct append */
	    {{{.index = 6, .term = 5}}, 1, 0, {3, 4, 5, 5}, 4},
	    /* gap */
	    {{{.index = 7, .term = 5}}, 1, RAFT_EUNAVAILABLE, {3, 4, 5}, 3},
	};
	for (size_t k = 0; k < sizeof(tt) / sizeof(tt[0]); k++) {
		memory_storage *ms = fixture();
		raft_storage *s = memory_storage_iface(ms);
		assert_int_equal(memory_storage_append(ms, tt[k].ents, tt[k].n), tt[k].werr);
		uint64_t last;
		s->last_index(s->ctx, &last);
		assert_int_equal(last, 3 + tt[k].wn - 1);
		for (size_t i = 0; i < tt[k].wn; i++) {
			uint64_t t;
			assert_int_equal(s->term(s->ctx, 3 + i, &t), 0);
			assert_int_equal(t, tt[k].wterms[i]);
		}
		memory_storage_free(ms);
	}
}

static void test_compact(void **state)
{
	memory_storage *ms = fixture();
	raft_storage *s = memory_storage_iface(ms);
	assert_int_equal(memory_storage_compact(ms, 3), RAFT_ECOMPACTED);
	assert_int_equal(memory_storage_compact(ms, 4), 0);
	uint64_t v;
	s->first_index(s->ctx, &v);
	assert_int_equal(v, 5);
	assert_int_equal(s->term(s->ctx, 4, &v), 0);
	assert_int_equal(v, 4);
	assert_int_equal(s->term(s->ctx, 3, &v), RAFT_ECOMPACTED);
	s->last_index(s->ctx, &v);
	assert_int_equal(v, 5);
	raft_entry *ents;
	size_t n;
	assert_int_equal(s->entries(s->ctx, 5, 6, UINT64_MAX, &ents, &n), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(ents[0].data, "bb", 2);
	raft_entries_free(ents, n);
	assert_int_equal(memory_storage_compact(ms, 9), RAFT_EUNAVAILABLE);
	memory_storage_free(ms);
}

static void test_create_snapshot(void **state)
{
	memory_storage *ms = fixture();
	raft_storage *s = memory_storage_iface(ms);
	uint64_t voters[] = {1, 2, 3};
	raft_conf_state cs = {.voters = voters, .n_voters = 3};
	assert_int_equal(memory_storage_create_snapshot(ms, 3, &cs, "x", 1),
			 RAFT_ESNAP_OUT_OF_DATE);
	assert_int_equal(memory_storage_create_snapshot(ms, 6, &cs, "x", 1), RAFT_EUNAVAILABLE);
	assert_int_equal(memory_storage_create_snapshot(ms, 4, &cs, "data", 4), 0);
	raft_snapshot snap;
	assert_int_equal(s->snapshot(s->ctx, &snap), 0);
	assert_int_equal(snap.meta.index, 4);
	assert_int_equal(snap.meta.term, 4);
	assert_int_equal(snap.meta.conf.n_voters, 3);
	assert_int_equal(snap.len, 4);
	assert_memory_equal(snap.data, "data", 4);
	raft_snapshot_free_contents(&snap);
	/* Does not compact. */
	uint64_t v;
	s->first_index(s->ctx, &v);
	assert_int_equal(v, 4);
	memory_storage_free(ms);
}

static void test_apply_snapshot(void **state)
{
	memory_storage *ms = fixture();
	raft_storage *s = memory_storage_iface(ms);
	uint64_t voters[] = {1, 2};
	raft_snapshot old = {.meta = {.index = 2, .term = 2}};
	assert_int_equal(memory_storage_apply_snapshot(ms, &old), RAFT_ESNAP_OUT_OF_DATE);
	raft_snapshot snap = {
	    .meta = {.index = 10, .term = 7, .conf = {.voters = voters, .n_voters = 2}},
	    .data = (uint8_t *)"sm",
	    .len = 2};
	assert_int_equal(memory_storage_apply_snapshot(ms, &snap), 0);
	uint64_t v;
	s->first_index(s->ctx, &v);
	assert_int_equal(v, 11);
	s->last_index(s->ctx, &v);
	assert_int_equal(v, 10);
	assert_int_equal(s->term(s->ctx, 10, &v), 0);
	assert_int_equal(v, 7);
	raft_hard_state hs;
	raft_conf_state cs;
	assert_int_equal(s->initial_state(s->ctx, &hs, &cs), 0);
	assert_int_equal(cs.n_voters, 2);
	raft_conf_state_free_contents(&cs);
	raft_entry e = {.index = 11, .term = 7};
	assert_int_equal(memory_storage_append(ms, &e, 1), 0);
	s->last_index(s->ctx, &v);
	assert_int_equal(v, 11);
	memory_storage_free(ms);
}

static void test_hard_and_conf_state(void **state)
{
	memory_storage *ms = memory_storage_new();
	raft_storage *s = memory_storage_iface(ms);
	raft_hard_state hs = {.term = 3, .vote = 2, .commit = 0};
	memory_storage_set_hard_state(ms, &hs);
	uint64_t voters[] = {1, 2, 3}, learners[] = {4};
	raft_conf_state cs = {
	    .voters = voters, .n_voters = 3, .learners = learners, .n_learners = 1};
	assert_int_equal(memory_storage_set_conf_state(ms, &cs), 0);
	raft_hard_state got;
	raft_conf_state gcs;
	assert_int_equal(s->initial_state(s->ctx, &got, &gcs), 0);
	assert_int_equal(got.term, 3);
	assert_int_equal(got.vote, 2);
	assert_int_equal(gcs.n_voters, 3);
	assert_int_equal(gcs.n_learners, 1);
	assert_int_equal(gcs.learners[0], 4);
	raft_conf_state_free_contents(&gcs);
	memory_storage_free(ms);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fresh),	   cmocka_unit_test(test_term),
	    cmocka_unit_test(test_entries),	   cmocka_unit_test(test_append),
	    cmocka_unit_test(test_compact),	   cmocka_unit_test(test_create_snapshot),
	    cmocka_unit_test(test_apply_snapshot), cmocka_unit_test(test_hard_and_conf_state),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
