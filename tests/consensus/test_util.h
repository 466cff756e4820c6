/* test_util.h — small helpers shared by the core's unit test files. */
#ifndef RAFTFS_TESTS_CONSENSUS_TEST_UTIL_H
#define RAFTFS_TESTS_CONSENSUS_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

/* An entry without data, as (index, term). */
static inline raft_entry ent(uint64_t index, uint64_t term)
{
	return (raft_entry){.index = index, .term = term};
}

static inline raft_role tu_role(const raft *r)
{
	raft_status st;
	raft_get_status(r, &st);
	return st.role;
}

static inline uint64_t tu_last(const raft *r)
{
	raft_status st;
	raft_get_status(r, &st);
	return st.last_index;
}

/* Gives node id a persisted log (indexes 1..n with the given terms) and
 * hard state, then restarts it on that storage. */
void tu_preload(tnet *net, uint64_t id, const uint64_t *terms, size_t n, uint64_t term,
		uint64_t commit);

/* Makes node id leader by stepping granted votes from every other voter
 * into it (no delivery to the others); its messages go to out. */
void tu_make_leader(tnet *net, uint64_t id, msgq *out);

/* Steps m into node id and drains its Ready into out. */
void tu_step(tnet *net, uint64_t id, raft_msg m, msgq *out);

/* The term of entry index in node id's stable storage (0 if absent). */
uint64_t tu_stored_term(tnet *net, uint64_t id, uint64_t index);
uint64_t tu_stored_last(tnet *net, uint64_t id);

#endif
