/* node_stages.h — where the time of this node's own proposals goes, stage
 * by stage (RAFTFS_STAGES=1 in the environment; off otherwise, at no cost
 * but a branch): summed over every proposal applied, with a histogram per
 * stage, printed to the log when the node stops. For measuring the commit
 * path (consensus/README-node.md, "Performance"), not for production
 * monitoring. */
#ifndef RAFTFS_NODE_STAGES_H
#define RAFTFS_NODE_STAGES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
	NODE_STAGE_QUEUE,   /* node_start -> the loop thread hands it to the core */
	NODE_STAGE_PERSIST, /* -> this node persisted the entry (leader: appended and
			       fsynced; follower: forwarded, replicated back, fsynced) */
	NODE_STAGE_COMMIT,  /* -> a Ready hands it out as committed (acks, commit index) */
	NODE_STAGE_HANDOFF, /* -> the apply thread starts applying it */
	NODE_STAGE_APPLY,   /* -> the state machine applied it */
	NODE_STAGE_REPLY,   /* -> the completion callback returned */
	NODE_STAGE_COUNT
} node_stage;

/* Histogram buckets per stage: bucket 0 holds times under 1 us, bucket k
 * those in [2^(k-1), 2^k) us, the last everything longer. A mean hides
 * whether a stage is slow always or stalls now and then. */
#define NODE_STAGE_BUCKETS 32

typedef struct node_stages {
	bool on;
	_Atomic uint64_t sum_ns[NODE_STAGE_COUNT], n[NODE_STAGE_COUNT];
	_Atomic uint64_t hist[NODE_STAGE_COUNT][NODE_STAGE_BUCKETS];
} node_stages;

/* Off unless RAFTFS_STAGES is set (and not "0"). */
void node_stages_init(node_stages *s);

/* Adds to stage st the time from `from` to `to` (uv_hrtime ns); ignored
 * when either is 0 (not observed: a retry, a restart) or out of order. */
void node_stages_add(node_stages *s, node_stage st, uint64_t from, uint64_t to);

/* The q-quantile (0 < q <= 1) of stage st's times as the upper bound, in
 * microseconds, of the histogram bucket it falls in (a power of two; for
 * the last bucket, UINT64_MAX); 0 when the stage has no times. */
uint64_t node_stages_quantile(const node_stages *s, node_stage st, double q);

/* Writes one log line with each stage's mean, p50 and p99 in microseconds
 * (p50 and p99 as bucket bounds: "<=64"). */
void node_stages_print(const node_stages *s, uint64_t node_id);

#endif
