/* read_only.h — the leader's queue of ReadIndex requests awaiting a heartbeat quorum (thesis §6.4).
 *
 * Requests are batched into rounds: every request registered before a
 * heartbeat round is sent is confirmed when a majority acknowledges that
 * round (or a later one), so one round serves all reads pending when it
 * started. Rounds are numbered within a leader's term; a heartbeat carries
 * the round number as its context and the follower echoes it back.
 */
#ifndef RAFTFS_READ_ONLY_H
#define RAFTFS_READ_ONLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct raft_read_request {
	uint64_t from;	/* who asked: the leader itself or a follower */
	uint64_t index; /* commit index when the request arrived */
	uint64_t round; /* the heartbeat round that confirms it */
	uint8_t *ctx;	/* owned */
	size_t ctx_len;
} raft_read_request;

typedef struct raft_read_only {
	raft_read_request *q; /* FIFO: q[head .. head+n) */
	size_t head, n, cap;
	uint64_t round;	 /* last round started */
	bool need_round; /* requests wait for a round not yet started */
} raft_read_only;

/* Queues a request (ctx copied) to be confirmed by the next round. */
int raft_read_only_add(raft_read_only *ro, uint64_t from, uint64_t index, const void *ctx,
		       size_t ctx_len);
/* Starts the next round and returns its number. */
uint64_t raft_read_only_start_round(raft_read_only *ro);
/* Pops the oldest request if its round is <= confirmed; the caller then
 * owns out->ctx. False when there is none. */
bool raft_read_only_pop_confirmed(raft_read_only *ro, uint64_t confirmed, raft_read_request *out);
/* Drops every request (leadership lost: clients retry). */
void raft_read_only_reset(raft_read_only *ro);
void raft_read_only_destroy(raft_read_only *ro);

/* Heartbeat context encoding of a round number (8 bytes little-endian). */
void raft_read_only_encode_round(uint64_t round, uint8_t out[8]);
/* 0 when ctx is not a round number (8 bytes, or 16 with a tick). */
uint64_t raft_read_only_decode_round(const uint8_t *ctx, size_t len);

/* With lease reads a heartbeat's context is 16 bytes: the round (0: none)
 * then the leader's tick when it sent the heartbeat, echoed back by the
 * follower so the leader knows from when its lease runs (§6.4.1). */
#define RAFT_BEAT_CTX_LEASE 16
void raft_read_only_encode_beat(uint64_t round, uint64_t tick, uint8_t out[16]);
/* The tick of a 16-byte context; false for any other. */
bool raft_read_only_decode_tick(const uint8_t *ctx, size_t len, uint64_t *tick);

#endif
