/* trace.h — per-topic debug logging of the Raft core, switched on by RAFTFS_DEBUG.
 *
 * RAFTFS_DEBUG is a comma-separated list of topics (VOTE,LEAD,TERM,LOG,CMIT,
 * PERS,SNAP,TIMR,DROP,READ,PROG) or "all". Each line goes to stderr and
 * starts with the tick count, node id and term. When a topic is off the
 * cost is one test of a cached bitmask: arguments are not even evaluated.
 */
#ifndef RAFTFS_TRACE_H
#define RAFTFS_TRACE_H

#include <stdint.h>

enum raft_trace_topic {
	TRACE_VOTE = 1u << 0,  /* votes asked, granted, refused */
	TRACE_LEAD = 1u << 1,  /* role changes, leader learnt, transfers */
	TRACE_TERM = 1u << 2,  /* term changes */
	TRACE_LOG = 1u << 3,   /* appends, conflicts, rejections */
	TRACE_CMIT = 1u << 4,  /* commit index moves */
	TRACE_PERS = 1u << 5,  /* Ready / advance: what is persisted */
	TRACE_SNAP = 1u << 6,  /* snapshots sent, restored */
	TRACE_TIMR = 1u << 7,  /* timeouts firing */
	TRACE_DROP = 1u << 8,  /* messages and proposals dropped */
	TRACE_READ = 1u << 9,  /* ReadIndex requests and confirmations */
	TRACE_PROG = 1u << 10, /* follower progress state changes */
};

/* The topic mask parsed from RAFTFS_DEBUG (read once per call; callers cache
 * it, the core in each raft at raft_new). Unknown topics are ignored. */
unsigned raft_trace_mask_from_env(void);

/* Writes one line "<tick> n<id> t<term> TOPIC: ..." to stderr. */
void raft_trace_write(uint64_t tick, uint64_t id, uint64_t term, unsigned topic, const char *fmt,
		      ...) __attribute__((format(printf, 5, 6)));

/* Logs for raft r (any struct with tick, id, term and trace_mask fields)
 * only when its topic is enabled. */
#define RAFT_TRACE(r, topic, ...)                                                                  \
	do {                                                                                       \
		if ((r)->trace_mask & (topic))                                                     \
			raft_trace_write((r)->tick, (r)->id, (r)->term, (topic), __VA_ARGS__);     \
	} while (0)

#endif
