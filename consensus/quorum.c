/* quorum.c — majority computations over small voter sets. */
#include "quorum.h"

uint64_t raft_quorum_index(uint64_t *vals, size_t n)
{
	if (n == 0)
		return 0;
	/* Insertion sort, descending: voter sets are tiny. */
	for (size_t i = 1; i < n; i++) {
		uint64_t v = vals[i];
		size_t j = i;
		while (j > 0 && vals[j - 1] < v) {
			vals[j] = vals[j - 1];
			j--;
		}
		vals[j] = v;
	}
	/* The (n/2+1)-th largest value is held by a majority. */
	return vals[n / 2];
}

raft_vote_result raft_quorum_vote_result(size_t granted, size_t rejected, size_t n)
{
	size_t q = n / 2 + 1;
	if (granted >= q)
		return RAFT_VOTE_WON;
	if (n - rejected < q)
		return RAFT_VOTE_LOST;
	return RAFT_VOTE_PENDING;
}
