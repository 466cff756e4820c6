/* checker.h — the safety properties of Raft (Figure 3 of the extended
 * paper), checked on every persist, commit, election and apply of every
 * simulated node: election safety, log matching, leader completeness and
 * state machine safety. The first violation is kept as a message. */
#ifndef RAFTFS_SIM_CHECKER_H
#define RAFTFS_SIM_CHECKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "raft_types.h"
#include "sm.h"

/* What the checker remembers about one log position. */
typedef struct sim_log_pos {
	uint64_t term;
	uint64_t chain;	     /* sim_chain_next over entries 1..index */
	uint64_t last_write; /* index of the last register write at or before */
} sim_log_pos;

/* A shadow of one node's persisted log: what its memory_storage holds,
 * reduced to (term, chain) per index. Compaction does not shrink it (the
 * compacted entries are committed, hence known); a snapshot resets it. */
typedef struct sim_mirror {
	uint64_t base; /* snapshot index; entries base+1 .. base+n follow */
	sim_log_pos base_pos;
	sim_log_pos *ents;
	size_t n, cap;
	uint64_t commit;    /* persisted commit index */
	raft_hard_state hs; /* last persisted hard state */
} sim_mirror;

/* A committed log position, with the command once some node applied it. */
typedef struct sim_committed {
	sim_log_pos pos;
	uint8_t *data; /* owned; NULL until applied somewhere or if empty */
	uint32_t len;
	bool applied;
} sim_committed;

typedef struct sim_checker {
	size_t n_nodes;
	sim_mirror mirror[SIM_MAX_NODES + 1];
	/* Every index committed by some node: com[i - 1] is index i. */
	sim_committed *com;
	size_t n_com, cap_com;
	/* Per term: the leader seen (0 = none) and the highest commit index it
	 * reached while leader (for leader completeness). */
	uint64_t *leader_of_term;
	uint64_t *commit_by_term;
	size_t n_terms;
	uint64_t now; /* the cluster's tick, for messages */
	bool failed;
	char msg[1024];
} sim_checker;

/* An empty checker for n_nodes nodes (tables grow as needed). */
void sim_checker_init(sim_checker *ck, size_t n_nodes);
void sim_checker_destroy(sim_checker *ck);

/* Records a violation (only the first is kept). */
void sim_checker_fail(sim_checker *ck, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Node persisted these entries (replacing its log from ents[0].index on).
 * Checks log matching against every other node and that no entry at or
 * below the node's own commit index changes. */
void sim_checker_persist_entries(sim_checker *ck, uint64_t node, const raft_entry *ents, size_t n);
/* Node persisted a snapshot at index/term: its log is empty after it. */
void sim_checker_persist_snapshot(sim_checker *ck, uint64_t node, uint64_t index, uint64_t term);
/* Node persisted hard state hs: the term never goes back and a node
 * votes at most once per term (Figure 2's persistent state), the commit
 * index never goes back. */
void sim_checker_hard_state(sim_checker *ck, uint64_t node, const raft_hard_state *hs);
/* Node persisted hard state with this commit; is_leader if it was leader
 * of hs_term when it did. Extends the committed table from its log. */
void sim_checker_commit(sim_checker *ck, uint64_t node, uint64_t hs_term, uint64_t commit,
			bool is_leader);
/* Node became leader of term, with its log persisted: election safety
 * (§5.2) and leader completeness (§5.4). */
void sim_checker_leader(sim_checker *ck, uint64_t node, uint64_t term);
/* Node applied e, leaving its state machine at *after: state machine
 * safety (§5.4.3). */
void sim_checker_apply(sim_checker *ck, uint64_t node, const raft_entry *e, const sim_sm *after);
/* Node's state machine was restored from a snapshot to *sm. */
void sim_checker_restore(sim_checker *ck, uint64_t node, const sim_sm *sm);

/* Highest index known committed anywhere. */
static inline uint64_t sim_checker_committed(const sim_checker *ck)
{
	return ck->n_com;
}

/* The committed entry at index (1 <= index <= committed), or NULL. */
const sim_committed *sim_checker_entry(const sim_checker *ck, uint64_t index);

#endif
