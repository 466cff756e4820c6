/* quorum.h — majority arithmetic: the index a majority holds, election outcomes. */
#ifndef RAFTFS_QUORUM_H
#define RAFTFS_QUORUM_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
	RAFT_VOTE_PENDING = 0,
	RAFT_VOTE_WON = 1,
	RAFT_VOTE_LOST = 2,
} raft_vote_result;

/* The largest value that at least a majority of the n values reach
 * (n <= 64; the order of vals is clobbered). 0 when n == 0. Used for the
 * commit index over match indexes (§5.3) and for ReadIndex rounds. */
uint64_t raft_quorum_index(uint64_t *vals, size_t n);

/* Outcome of an election among n voters with the given replies (§5.2). */
raft_vote_result raft_quorum_vote_result(size_t granted, size_t rejected, size_t n);

#endif
