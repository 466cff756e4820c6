/* raft.h — the Raft consensus core: a pure state machine.
 *
 * No sockets, no disk, no clock, no threads. Time is raft_tick(); input is
 * raft_step() (messages from peers), raft_propose(), raft_read_index() and
 * raft_campaign(); output is a Ready that the caller persists, sends and
 * applies, then hands back with raft_advance(). Figure 2 of the extended
 * Raft paper is the contract; the shape is etcd raft's RawNode.
 *
 * Driving loop (what consensus/node.c and tests/sim do):
 *
 *   raft_tick(r) every tick; raft_step(r, &msg) for each message received;
 *   while (raft_has_ready(r)) {
 *       raft_ready rd; raft_ready(r, &rd);
 *       persist rd.snapshot, rd.entries, rd.hard_state (one durable write);
 *       send rd.msgs;                  -- only after the write is durable
 *       install rd.snapshot, apply rd.committed in order;
 *       raft_advance(r, &rd);
 *   }
 *
 * or, with raft_config.async_storage, the write goes to a thread of its
 * own and raft_persisted() reports it done (see there).
 *
 * Everything a Ready points to is owned by the core and valid until
 * raft_advance(); the caller copies (raft_msg_copy) what it keeps longer.
 * Not thread-safe: one thread drives one raft.
 */
#ifndef RAFTFS_RAFT_H
#define RAFTFS_RAFT_H

#include "raft_types.h"
#include "storage.h"

typedef struct raft raft;

typedef enum {
	RAFT_FOLLOWER = 0,
	RAFT_CANDIDATE = 1,
	RAFT_LEADER = 2,
	RAFT_PRE_CANDIDATE = 3,
} raft_role;

const char *raft_role_name(raft_role role);

typedef struct raft_config {
	uint64_t id; /* nonzero */
	/* Voters, self included. Used only to bootstrap a storage that has no
	 * conf state yet; afterwards membership comes from storage. */
	const uint64_t *peers;
	size_t n_peers;
	/* The election timeout is drawn per term in [election_ticks,
	 * 2*election_ticks); heartbeat_ticks < election_ticks. */
	int election_ticks;
	int heartbeat_ticks;
	/* Cap on entry bytes (raft_entry_size) in one append message; a
	 * message always carries at least one entry if one is due. */
	uint64_t max_msg_bytes;
	/* Append messages in flight per follower in replicate state. */
	size_t max_inflight;
	bool pre_vote;
	bool check_quorum;
	/* Leader lease reads (Raft thesis §6.4.1); needs check_quorum, and
	 * every node of the cluster must agree on it. A leader that a
	 * quorum acknowledged heartbeats from within the last
	 * raft_lease_ticks() ticks answers ReadIndex at once, without a
	 * heartbeat round: those followers ignore vote requests (and every
	 * other non-leader message of a higher term) until an election
	 * timeout after they last heard from it, so no other leader can exist
	 * meanwhile. Relies on clocks whose rates differ by less than the
	 * margin (a quarter of the election timeout, at least a tick). With
	 * it, a node also refuses votes for its first election_ticks ticks
	 * (it may have acknowledged a leader before a restart), and a forced
	 * raft_campaign() inside a leader's lease does nothing. */
	bool lease_reads;
	/* Asynchronous storage writes (etcd's AsyncStorageWrites): the
	 * caller persists a Ready's entries after raft_advance, on a thread
	 * of its own, in Ready order, and reports each save with
	 * raft_persisted. Until then the entries count for nothing here: not
	 * toward the leader's commit quorum, not as applicable. Messages of a
	 * Ready that saves something must still wait for that save (and every
	 * earlier one), except a leader's appends and heartbeats when its
	 * term and vote are durable (thesis §10.2.1). false: raft_advance
	 * means the Ready was persisted. */
	bool async_storage;
	raft_storage *storage; /* borrowed; must outlive the raft */
	/* Index of the last entry the state machine has applied (0 when it
	 * starts empty): committed entries after it are handed out again. */
	uint64_t applied;
	/* Seed of the election timeout randomness, so simulations replay. */
	uint64_t seed;
} raft_config;

typedef struct raft_read_state {
	uint64_t index; /* apply up to here, then the read may be served */
	uint8_t *ctx;   /* the context given to raft_read_index */
	size_t ctx_len;
} raft_read_state;

typedef struct raft_ready {
	/* Leader and role, if they changed since the last Ready. */
	bool has_soft_state;
	uint64_t leader;
	raft_role role;
	/* Hard state to persist, if it changed. */
	bool has_hard_state;
	raft_hard_state hard_state;
	/* Snapshot to persist and install first, or NULL. */
	const raft_snapshot *snapshot;
	/* Entries to append to stable storage (replacing any suffix from
	 * entries[0].index on). */
	const raft_entry *entries;
	size_t n_entries;
	/* Committed entries to apply, in order. */
	const raft_entry *committed;
	size_t n_committed;
	/* The committed entries' data is in the log's shared blocks
	 * (consensus/blob.h): a caller may keep it past raft_advance by taking
	 * a reference (raft_blob_ref) instead of copying it. */
	bool committed_shared;
	/* Messages to send once the above is durable. */
	const raft_msg *msgs;
	size_t n_msgs;
	/* Linearizable reads that became ready. */
	const raft_read_state *read_states;
	size_t n_read_states;
	/* True when entries or hard state must be fsynced before sending. */
	bool must_sync;
} raft_ready;

typedef enum {
	RAFT_PROGRESS_PROBE = 0,
	RAFT_PROGRESS_REPLICATE = 1,
	RAFT_PROGRESS_SNAPSHOT = 2,
} raft_progress_state;

typedef struct raft_peer_status {
	uint64_t id;
	uint64_t match;
	uint64_t next;
	raft_progress_state state;
	bool recent_active;
	bool learner;
} raft_peer_status;

typedef struct raft_status {
	uint64_t id;
	raft_role role;
	uint64_t term;
	uint64_t vote;
	uint64_t leader;
	uint64_t commit;
	uint64_t applied;
	uint64_t first_index;
	uint64_t last_index;
	/* The last index known durable here and matching the log (with
	 * async_storage, what raft_persisted reported; else last_index once
	 * advanced; 0 while a snapshot received from the leader waits to be
	 * saved). */
	uint64_t persisted;
	/* Filled in on the leader only (n_peers == 0 elsewhere); self included. */
	raft_peer_status peers[16];
	size_t n_peers;
} raft_status;

/* Creates a core restored from cfg->storage. Returns 0 or an error code. */
int raft_new(const raft_config *cfg, raft **out);
void raft_free(raft *r);

/* Advances the logical clock by one tick. */
void raft_tick(raft *r);

/* Advances the clock by k ticks at once: ticks the caller's own thread
 * missed while it was held up (a long fsync, a starved CPU), given before
 * it has read the messages that arrived meanwhile. The clock, and with it
 * the lease (raft_lease_valid), moves by all k now. A leader sends at
 * most one heartbeat round for them and does not check its quorum for
 * them now: the check they owe (one, however many election timeouts the
 * stall spanned) is made by the next raft_tick, by when the caller has
 * read the acknowledgements that waited in its sockets. A stall of the
 * leader's own thread is no evidence that its followers are gone, and
 * check-quorum only serves liveness (leases rest on the tick count, which
 * is exact). Given k separate raft_tick calls, a leader stalled for an
 * election timeout deposed itself before reading those acknowledgements.
 * Other roles: as k calls of raft_tick. */
void raft_tick_stalled(raft *r, uint64_t k);

/* How many more ticks can pass before one acts: the one that ends a
 * follower's (or candidate's) election timeout, or a leader's next
 * heartbeat or quorum check; at least 1. The ticks before it only count,
 * so a caller with nothing else to do may sleep until then and give them
 * as that many raft_tick calls when it wakes, exactly as one at a time
 * (the node's quiet ticks, consensus/README-node.md). A node that cannot
 * campaign (a learner, one with a snapshot pending) acts on no tick: it
 * gets one election timeout's. */
int raft_quiet_ticks(raft *r);

/* Feeds a message from a peer (or a local message). m stays the caller's;
 * the core copies what it keeps. Requests (vote, pre-vote, append,
 * heartbeat, snapshot) are processed whoever sends them, in the local
 * configuration or not (Raft thesis §4.2.2), so the transport must accept
 * them from, and deliver answers to, any cluster node; other messages from
 * peers outside the configuration are dropped, and so are stale-term
 * messages (a stale vote or pre-vote is rejected, and a stale append or
 * heartbeat answered with check-quorum or pre-vote on, so the sender
 * learns the term). Returns 0 then: loss is normal in Raft. */
int raft_step(raft *r, const raft_msg *m);

/* Proposes a command. On the leader the entry is appended at once and, if
 * index/term are non-NULL, they receive its position. On a follower it is
 * forwarded to the leader (index/term set to 0). RAFT_EPROPOSAL_DROPPED if
 * no leader is known or a leader transfer is under way. */
int raft_propose(raft *r, const void *data, size_t len, uint64_t *index,
		 uint64_t *term);

/* raft_propose for data in a block of blob.h (raft_blob_new): the log (on
 * the leader) or the message forwarding it (on a follower) takes a
 * reference instead of a copy. The caller keeps its own reference and
 * must not change the bytes while raft_blob_shared says another is held. */
int raft_propose_refs(raft *r, uint8_t *data, size_t len, uint64_t *index,
		      uint64_t *term);

/* Proposes a membership change, one server at a time (Raft thesis §4.1):
 * an entry of type RAFT_ENTRY_CONF_CHANGE whose data is an encoded
 * raft_conf_change (codec.h; the core never decodes it). Like
 * raft_propose, and RAFT_EPROPOSAL_DROPPED while an earlier change is not
 * yet applied on the leader. */
int raft_propose_conf_change(raft *r, const void *data, size_t len, uint64_t *index,
			     uint64_t *term);

/* Puts a committed conf change into effect: call it when applying a
 * RAFT_ENTRY_CONF_CHANGE entry, with the decoded type (raft_conf_change_type
 * of codec.h: add voter, remove, add learner) and node. Adding an existing
 * learner as a voter promotes it. If cs is non-NULL it receives the new
 * membership (caller frees contents) to persist with the applied state.
 *
 * A leader that removed (or demoted) itself does not step down at once:
 * configurations take effect when applied, so the survivors learn that the
 * removal committed only from the leader's commit index, and a removed
 * leader that stepped down before sending it would leave them on the old
 * configuration, needing the vote of a node that will not campaign and
 * whose longer log wins no election for them. So it keeps replicating
 * (refusing proposals and reads, no check-quorum step-down) until a voter
 * holds its whole log, then hands over with TIMEOUT_NOW and steps down
 * (tests/sim/CORE_BUGS.md #5). Callers should still prefer transferring
 * leadership (MSG_TRANSFER_LEADER) before a leader's own removal, as etcd's
 * server does and consensus/node_members.c does. */
int raft_apply_conf_change(raft *r, int type, uint64_t node_id, raft_conf_state *cs);

/* Starts an election now (pre-vote first when enabled). */
int raft_campaign(raft *r);

/* Asks for a linearizable read point (ReadIndex, Raft thesis §6.4). When
 * the leader has confirmed its leadership, a read state with ctx and the
 * commit index appears in a Ready. Requests are batched per heartbeat
 * round; with lease_reads, a leader inside its lease confirms at once (a
 * follower's request is then one round trip to the leader).
 * RAFT_EPROPOSAL_DROPPED if no leader is known. */
int raft_read_index(raft *r, const void *ctx, size_t ctx_len);

/* The transport could not deliver to a peer / a snapshot send finished. */
void raft_report_unreachable(raft *r, uint64_t peer);
void raft_report_snapshot(raft *r, uint64_t peer, bool failed);

bool raft_has_ready(const raft *r);
void raft_ready_get(raft *r, raft_ready *rd);

/* Back-pressure from the caller's apply queue: the next Readies carry
 * committed entries of at most max_bytes of data (at least one entry), and
 * none at all with 0 (raft_has_ready then does not count them); they stay
 * committed and are handed out once the limit allows. UINT64_MAX: no limit
 * but the core's own per-Ready cap. Everything else (appends, votes,
 * heartbeats, the commit index) goes on. */
void raft_limit_committed(raft *r, uint64_t max_bytes);
void raft_advance(raft *r, const raft_ready *rd);

/* With async_storage: the caller's save of entries up to (index, term)
 * (the last entry of a Ready, and so every entry handed out before it) is
 * durable. Moves what may be applied and, on the leader, its own match:
 * a leader counts itself toward commitment only for entries on its own
 * disk (Figure 2: a replica "has" an entry once it is stored). A report
 * for an entry that a conflicting suffix replaced meanwhile moves
 * nothing. Without async_storage raft_advance calls it. */
void raft_persisted(raft *r, uint64_t index, uint64_t term);

/* With async_storage: whether m (from a Ready) must wait until every save
 * handed out before it is durable. True for everything that speaks for
 * this node's log, term or vote (append and vote answers, vote requests:
 * a candidate counts its own vote at once). False for what does not:
 * forwarded proposals and reads, read answers, heartbeat answers (they
 * confirm a leader, not a log: a follower restarted after losing its
 * term refuses votes for an election timeout anyway, see lease_reads).
 * A leader's appends and heartbeats are the caller's to send early
 * (thesis §10.2.1) once its term and vote are durable. */
bool raft_msg_after_save(const raft_msg *m);

void raft_get_status(const raft *r, raft_status *st);

/* Length of the leader lease in ticks for an election timeout of
 * election_ticks: the timeout less a margin for clock drift and tick
 * phase (a quarter, at least 2 ticks). 0: too short for a lease. */
int raft_lease_ticks(int election_ticks);

/* With lease_reads: whether this node leads and holds a lease now. */
bool raft_lease_valid(const raft *r);

/* Convenience for the 6.824-style surface. */
uint64_t raft_term(const raft *r);
bool raft_is_leader(const raft *r);
uint64_t raft_leader(const raft *r);

/* The highest index this node knows committed (cheaper than raft_get_status:
 * the runtime reads it on every loop iteration). */
uint64_t raft_commit_index(const raft *r);
/* The index of the last entry in this node's log (as cheap). */
uint64_t raft_last_index(const raft *r);
/* The term of the entry at index in this node's log, 0 when the log does
 * not hold it (compacted, or past the end). */
uint64_t raft_term_at(const raft *r, uint64_t index);

#endif
