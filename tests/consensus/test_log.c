/* test_log.c — the Raft log (window over storage), progress/inflights and quorum arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "blob.h"
#include "log.h"
#include "memory_storage.h"
#include "progress.h"
#include "quorum.h"

/* A storage holding entries 1..n with the given terms. */
static memory_storage *stored(const uint64_t *terms, size_t n)
{
	memory_storage *ms = memory_storage_new();
	assert_non_null(ms);
	for (size_t i = 0; i < n; i++) {
		raft_entry e = {.index = i + 1, .term = terms[i]};
		assert_int_equal(memory_storage_append(ms, &e, 1), 0);
	}
	return ms;
}

/* Appends entries with the given terms after the log's last, as a
 * follower would (so each keeps its own term). */
static void append_terms(raft_log *l, const uint64_t *terms, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		raft_entry e = {.index = l->last + 1, .term = terms[i]};
		uint64_t last_new;
		assert_int_equal(
		    raft_log_maybe_append(l, l->last, raft_log_last_term(l), 0, &e, 1, &last_new),
		    0);
	}
}

static const uint64_t fig7[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};

/* findConflictByTerm over a log split between storage (1..5) and the
 * in-memory window (6..10): the result does not depend on the split. */
static void test_find_conflict_by_term(void **state)
{
	static const struct {
		uint64_t index, term, want, wterm;
	} tt[] = {
	    {10, 6, 10, 6}, {10, 5, 7, 5}, {10, 4, 5, 4},  {10, 3, 3, 1},
	    {10, 0, 0, 0},  {4, 2, 3, 1},  {11, 9, 11, 0},
	};
	for (int split = 0; split <= 10; split += 5) {
		memory_storage *ms = stored(fig7, (size_t)split);
		raft_log l;
		assert_int_equal(raft_log_init(&l, memory_storage_iface(ms), 0), 0);
		append_terms(&l, fig7 + split, 10 - (size_t)split);
		assert_int_equal(l.last, 10);
		for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
			uint64_t t;
			assert_int_equal(
			    raft_log_find_conflict_by_term(&l, tt[i].index, tt[i].term, &t),
			    tt[i].want);
			assert_int_equal(t, tt[i].wterm);
		}
		raft_log_destroy(&l);
		memory_storage_free(ms);
	}
}

/* A conflict below the in-memory window (right after a restart) replaces
 * the stored suffix: the new entries are unstable, the prefix is read
 * from storage. */
static void test_conflict_below_window(void **state)
{
	static const uint64_t terms[] = {1, 1, 1, 1, 1};
	memory_storage *ms = stored(terms, 5);
	raft_log l;
	assert_int_equal(raft_log_init(&l, memory_storage_iface(ms), 0), 0);
	raft_entry ents[] = {{.index = 3, .term = 2}, {.index = 4, .term = 2}};
	uint64_t last_new;
	assert_int_equal(raft_log_maybe_append(&l, 2, 1, 0, ents, 2, &last_new), 0);
	assert_int_equal(last_new, 4);
	assert_int_equal(l.last, 4);
	assert_int_equal(l.stable, 2);
	size_t n;
	const raft_entry *u = raft_log_unstable(&l, &n);
	assert_int_equal(n, 2);
	assert_int_equal(u[0].index, 3);
	assert_int_equal(raft_log_term_or_zero(&l, 2), 1);
	assert_int_equal(raft_log_term_or_zero(&l, 3), 2);
	uint64_t t;
	assert_int_equal(raft_log_term(&l, 5, &t), RAFT_EUNAVAILABLE);
	raft_entry *out;
	assert_int_equal(raft_log_entries(&l, 1, UINT64_MAX, &out, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(out[1].term, 1);
	assert_int_equal(out[2].term, 2);
	raft_log_entries_free(out, n);
	raft_log_destroy(&l);
	memory_storage_free(ms);
}

/* Committed entries must never be rewritten. */
static void test_conflict_with_committed_refused(void **state)
{
	memory_storage *ms = stored(fig7, 3);
	raft_log l;
	assert_int_equal(raft_log_init(&l, memory_storage_iface(ms), 0), 0);
	raft_log_commit_to(&l, 3);
	raft_entry e = {.index = 3, .term = 9};
	uint64_t last_new;
	assert_int_equal(raft_log_maybe_append(&l, 2, 1, 0, &e, 1, &last_new), RAFT_ECORRUPT);
	assert_int_equal(raft_log_term_or_zero(&l, 3), 1);
	raft_log_destroy(&l);
	memory_storage_free(ms);
}

/* Entries to apply stop at what is persisted, and at the byte cap (but
 * include at least one entry). */
static void test_next_committed_bounds(void **state)
{
	memory_storage *ms = memory_storage_new();
	raft_log l;
	assert_int_equal(raft_log_init(&l, memory_storage_iface(ms), 0), 0);
	raft_entry ents[4];
	for (int i = 0; i < 4; i++)
		ents[i] = (raft_entry){.len = 100, .data = calloc(1, 100)};
	assert_int_equal(raft_log_append_new(&l, ents, 4, 1), 0);
	for (int i = 0; i < 4; i++)
		free(ents[i].data);
	raft_log_commit_to(&l, 4);
	assert_false(raft_log_has_next_committed(&l)); /* nothing persisted yet */
	raft_log_stable_to(&l, 3, 1);
	const raft_entry *c;
	raft_entry *owned;
	size_t n;
	assert_int_equal(raft_log_next_committed(&l, UINT64_MAX, &c, &n, &owned), 0);
	assert_int_equal(n, 3);
	assert_null(owned);
	assert_int_equal(raft_log_next_committed(&l, 1, &c, &n, &owned), 0);
	assert_int_equal(n, 1);
	assert_int_equal(raft_log_next_committed(&l, 2 * 124, &c, &n, &owned), 0);
	assert_int_equal(n, 2);
	raft_log_applied_to(&l, 2);
	raft_log_release(&l);
	/* Applied and stable entries left memory, but for the last applied
	 * one (its term is asked for by every append). */
	assert_int_equal(l.off, 2);
	assert_int_equal(raft_log_next_committed(&l, UINT64_MAX, &c, &n, &owned), 0);
	assert_int_equal(n, 1);
	assert_int_equal(c[0].index, 3);
	raft_log_destroy(&l);
	memory_storage_free(ms);
}

/* Data of a truncated entry outlives the truncation until release, so a
 * Ready handed out before it stays readable (ASan checks this). */
static void test_truncated_data_survives_until_release(void **state)
{
	memory_storage *ms = memory_storage_new();
	raft_log l;
	assert_int_equal(raft_log_init(&l, memory_storage_iface(ms), 0), 0);
	raft_entry e = {.len = 4, .data = (uint8_t *)"old!"};
	assert_int_equal(raft_log_append_new(&l, &e, 1, 1), 0);
	size_t n;
	const raft_entry *u = raft_log_unstable(&l, &n);
	raft_entry seen = u[0];
	raft_entry repl = {.index = 1, .term = 2, .len = 4, .data = (uint8_t *)"new!"};
	uint64_t last_new;
	assert_int_equal(raft_log_maybe_append(&l, 0, 0, 0, &repl, 1, &last_new), 0);
	assert_memory_equal(seen.data, "old!", 4);
	raft_log_release(&l);
	assert_int_equal(raft_log_term_or_zero(&l, 1), 2);
	raft_log_destroy(&l);
	memory_storage_free(ms);
}

/* etcd TestProgressMaybeDecr. */
static void test_progress_maybe_decr(void **state)
{
	static const struct {
		raft_progress_state st;
		uint64_t match, next, rejected, hint;
		bool w;
		uint64_t wnext;
	} tt[] = {
	    {RAFT_PROGRESS_REPLICATE, 5, 10, 5, 5, false, 10},
	    {RAFT_PROGRESS_REPLICATE, 5, 10, 4, 4, false, 10},
	    {RAFT_PROGRESS_REPLICATE, 5, 10, 9, 9, true, 6},
	    {RAFT_PROGRESS_PROBE, 0, 0, 0, 0, false, 0},
	    {RAFT_PROGRESS_PROBE, 0, 10, 5, 5, false, 10},
	    {RAFT_PROGRESS_PROBE, 0, 10, 9, 9, true, 9},
	    {RAFT_PROGRESS_PROBE, 0, 2, 1, 1, true, 1},
	    {RAFT_PROGRESS_PROBE, 0, 1, 0, 0, true, 1},
	    {RAFT_PROGRESS_PROBE, 0, 10, 9, 2, true, 3},
	    {RAFT_PROGRESS_PROBE, 0, 10, 9, 0, true, 1},
	};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		raft_progress pr;
		assert_int_equal(raft_progress_init(&pr, 4, 0), 0);
		raft_progress_reset(&pr, tt[i].match, tt[i].next);
		pr.state = tt[i].st;
		assert_int_equal(raft_progress_maybe_decr_to(&pr, tt[i].rejected, tt[i].hint),
				 tt[i].w);
		assert_int_equal(pr.match, tt[i].match);
		assert_int_equal(pr.next, tt[i].wnext);
		raft_progress_destroy(&pr);
	}
}

/* The in-flight window: full at max, freed up to an acknowledged index,
 * wrapping around its ring. */
static void test_inflights(void **state)
{
	raft_progress pr;
	assert_int_equal(raft_progress_init(&pr, 3, 0), 0);
	raft_progress_reset(&pr, 0, 1);
	raft_progress_become_replicate(&pr);
	for (uint64_t last = 1; last <= 3; last++) {
		assert_false(raft_progress_is_paused(&pr));
		raft_progress_sent_entries(&pr, last * 10, 1);
	}
	assert_true(raft_progress_is_paused(&pr));
	assert_int_equal(pr.next, 31);
	raft_inflights_free_le(&pr.ins, 15);
	assert_int_equal(pr.ins.count, 2);
	raft_progress_sent_entries(&pr, 40, 1); /* wraps */
	assert_true(raft_inflights_full(&pr.ins));
	raft_inflights_free_first(&pr.ins);
	assert_int_equal(pr.ins.count, 2);
	raft_inflights_free_le(&pr.ins, 40);
	assert_int_equal(pr.ins.count, 0);
	/* Probe: one message, then paused until a reply or heartbeat. */
	raft_progress_become_probe(&pr);
	assert_false(raft_progress_is_paused(&pr));
	pr.probe_sent = true;
	assert_true(raft_progress_is_paused(&pr));
	raft_progress_become_snapshot(&pr, 50);
	assert_true(raft_progress_is_paused(&pr));
	raft_progress_become_probe(&pr);
	assert_int_equal(pr.next, 51);
	raft_progress_destroy(&pr);
}

static void test_quorum(void **state)
{
	static const struct {
		uint64_t v[5];
		size_t n;
		uint64_t want;
	} tt[] = {
	    {{0}, 0, 0},
	    {{1}, 1, 1},
	    {{1, 2, 3}, 3, 2},
	    {{5, 1, 5}, 3, 5},
	    {{1, 2, 3, 4}, 4, 2},
	    {{1, 2, 3, 4, 5}, 5, 3},
	    {{9, 9, 1, 1, 1}, 5, 1},
	};
	for (size_t i = 0; i < sizeof(tt) / sizeof(tt[0]); i++) {
		uint64_t v[5];
		memcpy(v, tt[i].v, sizeof(v));
		assert_int_equal(raft_quorum_index(v, tt[i].n), tt[i].want);
	}
	assert_int_equal(raft_quorum_vote_result(2, 0, 3), RAFT_VOTE_WON);
	assert_int_equal(raft_quorum_vote_result(1, 1, 3), RAFT_VOTE_PENDING);
	assert_int_equal(raft_quorum_vote_result(1, 2, 3), RAFT_VOTE_LOST);
	assert_int_equal(raft_quorum_vote_result(2, 2, 4), RAFT_VOTE_LOST);
	assert_int_equal(raft_quorum_vote_result(2, 1, 4), RAFT_VOTE_PENDING);
	assert_int_equal(raft_quorum_vote_result(1, 3, 4), RAFT_VOTE_LOST);
	assert_int_equal(raft_quorum_vote_result(1, 0, 1), RAFT_VOTE_WON);
}

/* A batch's data shares one block that lives until its last entry goes
 * (ASan reports a leak or a use after free otherwise). */
static void test_blob(void **state)
{
	raft_entry src[3] = {{.index = 1, .len = 3, .data = (uint8_t *)"abc"},
			     {.index = 2},
			     {.index = 3, .len = 9, .data = (uint8_t *)"123456789"}};
	raft_entry dst[3];
	assert_int_equal(raft_blob_copy_entries(dst, src, 3), 0);
	assert_int_equal(dst[0].index, 1);
	assert_null(dst[1].data);
	assert_memory_equal(dst[2].data, "123456789", 9);
	raft_blob_release(dst[2].data);
	assert_memory_equal(dst[0].data, "abc", 3);
	raft_blob_release(dst[1].data);
	raft_blob_release(dst[0].data);
	raft_entry none[1] = {{.index = 7}};
	assert_int_equal(raft_blob_copy_entries(dst, none, 1), 0);
	assert_null(dst[0].data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_find_conflict_by_term),
	    cmocka_unit_test(test_conflict_below_window),
	    cmocka_unit_test(test_conflict_with_committed_refused),
	    cmocka_unit_test(test_next_committed_bounds),
	    cmocka_unit_test(test_truncated_data_survives_until_release),
	    cmocka_unit_test(test_progress_maybe_decr),
	    cmocka_unit_test(test_inflights),
	    cmocka_unit_test(test_quorum),
	    cmocka_unit_test(test_blob),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
