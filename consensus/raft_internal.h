/* raft_internal.h — the raft struct and the functions the core's files share (not public). */
#ifndef RAFTFS_RAFT_INTERNAL_H
#define RAFTFS_RAFT_INTERNAL_H

#include "log.h"
#include "progress.h"
#include "quorum.h"
#include "raft.h"
#include "read_only.h"
#include "trace.h"

/* Most members (voters and learners) a configuration may have: quorum
 * computations use fixed arrays of this size. */
#define RAFT_MAX_MEMBERS 64

/* Cap on the bytes of committed entries handed out in one Ready. */
#define RAFT_MAX_COMMITTED_BYTES (64ull << 20)

/* Context of a vote request sent on a leader transfer (MSG_TIMEOUT_NOW):
 * it must not be refused for the leader lease (etcd campaignTransfer). */
#define RAFT_CAMPAIGN_TRANSFER "CampaignTransfer"

typedef struct raft_peer {
	uint64_t id;
	bool learner;
	raft_progress pr;
	int vote;	     /* this election: 0 no reply, 1 granted, -1 refused */
	uint64_t read_acked; /* highest ReadIndex round this peer acknowledged */
	/* Leader lease: 1 + the tick at which the newest heartbeat this peer
	 * acknowledged in this term was sent (0: none). */
	uint64_t lease_tick;
} raft_peer;

struct raft {
	uint64_t id;
	uint64_t term;
	uint64_t vote;
	uint64_t lead;
	raft_role role;
	raft_log log;
	/* raft_limit_committed (limit_on: its max_bytes in committed_limit). */
	bool limit_on;
	uint64_t committed_limit;

	raft_peer *peers; /* voters and learners, self included */
	size_t n_peers;

	int election_ticks, heartbeat_ticks;
	int randomized_election_timeout;
	/* Ticks since the last timeout reset; on the leader, since the last
	 * check-quorum. */
	int election_elapsed;
	int heartbeat_elapsed;
	bool check_quorum, pre_vote;
	bool async_storage; /* raft_config.async_storage */
	bool lease_reads;	/* raft_config.lease_reads && check_quorum */
	int lease_ticks;	/* raft_lease_ticks(election_ticks) */
	bool lease_broken;	/* this leader sent TIMEOUT_NOW this term: no lease */
	uint64_t max_msg_bytes;
	size_t max_inflight;
	uint64_t rng;

	uint64_t tick; /* ticks since creation, for the debug log */
	unsigned trace_mask;

	uint64_t lead_transferee;    /* leader transfer target, 0 if none */
	uint64_t pending_conf_index; /* index of the last conf change proposed */
	bool need_bcast;	     /* proposals appended since the last Ready */

	raft_read_only ro;
	/* ReadIndex requests that arrived before this leader committed an
	 * entry of its term (thesis §6.4 step 1): replayed on that commit. */
	raft_msg *pending_reads;
	size_t n_pending_reads, cap_pending_reads;

	/* Outbox, moved into the Ready on raft_ready_get. */
	raft_msg *msgs;
	size_t n_msgs, cap_msgs;
	raft_read_state *rs;
	size_t n_rs, cap_rs;

	/* What the last Ready handed out, released on raft_advance. */
	raft_msg *rd_msgs;
	size_t rd_n_msgs, cap_rd_msgs;
	raft_read_state *rd_rs;
	size_t rd_n_rs, cap_rd_rs;
	raft_entry *rd_ents; /* shallow copies (data stays in the log) */
	size_t cap_rd_ents;
	raft_entry *rd_committed; /* shallow copies, or owned when read from storage */
	size_t cap_rd_committed;
	raft_entry *rd_committed_owned;
	size_t rd_n_committed_owned;

	raft_hard_state prev_hs;
	uint64_t prev_lead;
	raft_role prev_role;
};

/* raft.c */
/* The member with this id, or NULL. */
raft_peer *raft_peer_find(raft *r, uint64_t id);
/* This node's own entry among the members, or NULL if it is not one. */
raft_peer *raft_self(raft *r);
size_t raft_n_voters(const raft *r);
/* Role changes (§5.2); each resets the per-term state. */
void raft_become_follower(raft *r, uint64_t term, uint64_t lead);
void raft_become_leader(raft *r);
/* Starts a pre-vote (type RAFT_MSG_PRE_VOTE) or an election; transfer
 * marks a campaign ordered by a leader transfer (bypasses leases). */
void raft_campaign_type(raft *r, raft_msg_type type, bool transfer);
/* An election timeout or an explicit campaign: campaigns if allowed. */
void raft_hup(raft *r, bool transfer);
/* Lease reads: this node promised a leader (or, just started, maybe
 * one before a restart) not to help elect another until an election
 * timeout after it last heard from it (Raft thesis §6.4.1, §4.2.3). */
bool raft_in_lease(const raft *r);
/* Records a (pre-)vote reply from id and tallies the election. */
raft_vote_result raft_poll(raft *r, uint64_t id, raft_msg_type type, bool granted);
/* Appends a zeroed message to the outbox (from, to, type, term = current
 * term) and returns it; the pointer is valid until the next raft_send. */
raft_msg *raft_send(raft *r, raft_msg_type type, uint64_t to);
/* Gives m a copy of ctx as its context. Best effort: without memory the
 * message goes without one, which costs no more than losing it would. */
void raft_msg_set_context(raft_msg *m, const void *ctx, size_t len);
/* Queues a read state (ctx copied) for the next Ready. */
int raft_add_read_state(raft *r, uint64_t index, const uint8_t *ctx, size_t len);
/* Next value of the node's deterministic PRNG (seeded by cfg seed and id). */
uint64_t raft_next_random(raft *r);
/* Adds a member with a fresh progress (no-op if present). */
int raft_add_peer(raft *r, uint64_t id, bool learner);
/* Replaces the membership with cs (from storage or a snapshot). */
int raft_set_conf_state(raft *r, const raft_conf_state *cs);
/* Frees what the last Ready handed out. */
void raft_release_ready(raft *r);

/* leader.c */
/* The leader's handler of every message not consumed by raft_step. */
int raft_step_leader(raft *r, const raft_msg *m);
/* Sends the follower what it lacks (entries, or a snapshot if they are
 * compacted) if flow control allows; with send_if_empty an append without
 * entries still goes (probe / commit update). True if something was sent. */
bool raft_send_append(raft *r, uint64_t to, bool send_if_empty);
void raft_bcast_append(raft *r);
/* Heartbeats to all; they carry the latest ReadIndex round if reads wait. */
void raft_bcast_heartbeat(raft *r);
/* Advances commit to what a majority holds, if of the current term
 * (§5.4.2). True if it moved. */
bool raft_maybe_commit(raft *r);
/* Sends the heartbeat round that confirms queued reads, if one is due. */
void raft_flush_read_round(raft *r);
/* Leader: appends entries of the current term (data copied). */
int raft_append_entries(raft *r, const raft_entry *ents, size_t n);
/* The same for entries whose data are blob.h blocks: the log takes
 * references (a proposal of raft_propose_refs). */
int raft_append_entries_refs(raft *r, const raft_entry *ents, size_t n);
void raft_abort_leader_transfer(raft *r);
/* Whether this node is no voter of its configuration any more (removed,
 * or demoted to learner). */
bool raft_self_removed(raft *r);
/* Leader that applied its own removal: hands leadership to a voter that
 * holds its whole log and steps down, once there is one (CORE_BUGS 5). */
void raft_removed_leader_hand_over(raft *r);

/* conf_change.c */
/* Leader: checks the conf-change entries of a proposal (one change in
 * flight at a time). *admitted is NULL when there are none, else a copy
 * of the entries to append (the caller frees the array); refused changes
 * inside a forwarded batch become empty normal entries. */
int raft_leader_admit_conf_changes(raft *r, const raft_msg *m, raft_entry **admitted);

/* follower.c */
/* Handlers of messages not consumed by raft_step, per role. */
int raft_step_follower(raft *r, const raft_msg *m);
int raft_step_candidate(raft *r, const raft_msg *m);

#endif
