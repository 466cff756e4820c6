/* sm.h — the test state machine every simulated node applies committed
 * entries to: a register (the last write) plus a hash chain over every
 * applied entry, small enough to snapshot by value. */
#ifndef RAFTFS_SIM_SM_H
#define RAFTFS_SIM_SM_H

#include <stddef.h>
#include <stdint.h>

#include "raft_types.h"

/* Two nodes that applied the same entries in the same order have the same
 * chain; one differing entry anywhere makes every later chain differ. */
typedef struct sim_sm {
	uint64_t applied;    /* index of the last applied entry */
	uint64_t chain;	     /* sim_chain_next over entries 1..applied */
	uint64_t last_write; /* index of the last non-empty normal entry */
	uint64_t value;	     /* sim_data_value of that entry's data */
} sim_sm;

#define SIM_SM_ENCODED_LEN 32

/* The chain after appending e to a chain ending in prev. */
uint64_t sim_chain_next(uint64_t prev, const raft_entry *e);

/* A 64-bit fingerprint of a command (its value in the register). */
uint64_t sim_data_value(const uint8_t *data, size_t len);

/* True for entries that write the register (no-ops and membership
 * changes do not). */
static inline int sim_entry_is_write(const raft_entry *e)
{
	return e->type == RAFT_ENTRY_NORMAL && e->len > 0;
}

/* Applies e, which must be at sm->applied + 1 (the caller checks). */
void sim_sm_apply(sim_sm *sm, const raft_entry *e);

/* Serializes sm into exactly SIM_SM_ENCODED_LEN bytes (snapshot data). */
void sim_sm_encode(const sim_sm *sm, uint8_t out[SIM_SM_ENCODED_LEN]);
/* Restores sm from snapshot data; RAFT_ECORRUPT if len is wrong. An empty
 * snapshot (len 0) is the empty state machine. */
int sim_sm_decode(sim_sm *sm, const uint8_t *data, size_t len);

#endif
