/* tester.h — the 6.824 lab tester's surface (config.go) over the simulated
 * cluster, in ticks instead of seconds: start, get_state,
 * check_one_leader, n_committed, one, wait. Failures are recorded in the
 * cluster and reported through its fail hook, like t.Fatalf. */
#ifndef RAFTFS_SIM_TESTER_H
#define RAFTFS_SIM_TESTER_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster.h"

/* Virtual time: with election_ticks = 10 an election timeout is 10..20
 * ticks, so one tick stands for 50 ms of the lab's wall clock and the
 * lab's generous RaftElectionTimeout (1 s) is 20 ticks. */
#define SIM_TICKS_PER_SEC 20
#define SIM_ELECTION_TIMEOUT SIM_TICKS_PER_SEC

/* Lab time in milliseconds to ticks, rounding at random in proportion so
 * that short sleeps are sometimes one tick and sometimes none. */
uint64_t sim_ms(sim_cluster *c, uint64_t ms);

/* 6.824's Start(): proposes on node id if it believes it is the leader.
 * Returns true with the entry's index and term; false if not leader. */
bool sim_start(sim_cluster *c, uint64_t id, const void *data, size_t len, uint64_t *index,
	       uint64_t *term);
/* Same with an 8-byte command. */
bool sim_start_u64(sim_cluster *c, uint64_t id, uint64_t cmd, uint64_t *index, uint64_t *term);

/* 6.824's GetState(). A crashed node reports term 0, not leader. */
void sim_get_state(sim_cluster *c, uint64_t id, uint64_t *term, bool *is_leader);

/* 6.824's crash1 (crash and disconnect) and start1 (restart from what
 * was persisted, left disconnected). */
void sim_crash1(sim_cluster *c, uint64_t id);
void sim_start1(sim_cluster *c, uint64_t id);

/* Waits (up to 10 rounds of 10 ticks) for a leader among the connected
 * live nodes; fails if a term has two, or if none appears. Returns the
 * leader of the newest term. */
uint64_t sim_check_one_leader(sim_cluster *c);
/* All connected live nodes agree on the term; returns it. */
uint64_t sim_check_terms(sim_cluster *c);
/* No connected live node thinks it is leader. */
void sim_check_no_leader(sim_cluster *c);

/* How many nodes have applied index (crashed ones keep their record), and
 * the committed entry there (NULL if none applied it). */
size_t sim_n_committed(sim_cluster *c, uint64_t index, const sim_committed **entry);

/* 6.824's one(): submits cmd via whichever connected node is leader and
 * waits until at least expected nodes applied it; with retry, re-submits
 * after a leader change. Returns the index, or 0 after recording failure. */
uint64_t sim_one(sim_cluster *c, const void *data, size_t len, size_t expected, bool retry);
uint64_t sim_one_u64(sim_cluster *c, uint64_t cmd, size_t expected, bool retry);

/* 6.824's wait(): waits for n nodes to apply index; returns true, or false
 * if some node moved past start_term (a value < 0 never gives up). */
bool sim_wait(sim_cluster *c, uint64_t index, size_t n, int64_t start_term);

/* A client running one() concurrently with others, advanced one tick at
 * a time by sim_client_poll: the lab's goroutines calling one(). */
typedef struct sim_client {
	uint8_t data[8];
	size_t expected;
	bool retry;
	uint64_t deadline;  /* give up (fail) at this tick */
	uint64_t index;	    /* submitted at this index, 0 if not */
	uint64_t submitted; /* tick of the submission */
	uint64_t retry_at;  /* next submission attempt when index == 0 */
	size_t next_node;   /* round-robin over nodes as the lab does */
	bool done;
} sim_client;

void sim_client_begin(sim_cluster *c, sim_client *cl, uint64_t cmd, size_t expected, bool retry);
/* Makes progress without advancing time; true once done (or failed). */
bool sim_client_poll(sim_cluster *c, sim_client *cl);

/* A random 64-bit command from the cluster's rng (the lab's rand.Int()). */
uint64_t sim_rand_cmd(sim_cluster *c);

#endif
