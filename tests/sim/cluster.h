/* cluster.h — a deterministic in-memory Raft cluster: N cores on
 * memory_storage, driven by raft.h's Ready loop in virtual time over a
 * simulated network, with crashes, restarts, snapshots and linearizable
 * reads, and every step checked by the safety checker.
 *
 * Durability model: a node's memory_storage is its disk. The harness
 * writes to it only at the persist step of a Ready (snapshot, entries,
 * hard state, in that order) and sends that Ready's messages only after;
 * a crash discards the raft and the state machine and keeps the storage.
 * The state machine is volatile: a restarted node rebuilds it from the
 * storage's snapshot (or from empty) and starts its raft with applied =
 * that snapshot's index, so entries after it are applied again.
 *
 * Time: one tick = raft_tick() on every live node, then message delivery
 * in rounds until nothing more is due this tick (a message with zero
 * delay and its consequences complete within the tick).
 *
 * Failures: violations of Raft's safety properties and harness errors
 * are recorded in ck (first one kept) and processing continues; each
 * public function then calls fail_hook, if set, before returning (tests
 * use it to fail the current cmocka test). */
#ifndef RAFTFS_SIM_CLUSTER_H
#define RAFTFS_SIM_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "checker.h"
#include "memory_storage.h"
#include "net.h"
#include "raft.h"
#include "rng.h"
#include "sm.h"

typedef struct sim_opts {
	size_t n_nodes; /* 1..SIM_MAX_NODES; node ids are 1..n_nodes */
	/* Voters of the initial configuration: nodes 1..n_voters (0: all).
	 * The others run as spares outside the cluster until a membership
	 * change adds them. */
	size_t n_voters;
	uint64_t seed;
	int election_ticks;
	int heartbeat_ticks;
	uint64_t max_msg_bytes;
	size_t max_inflight;
	bool pre_vote;
	bool check_quorum;
	bool lease_reads; /* raft_config.lease_reads */
	/* Each node snapshots its state machine every snapshot_every applied
	 * entries (0: never) and compacts its log up to snapshot_keep
	 * entries behind the snapshot. */
	uint64_t snapshot_every;
	uint64_t snapshot_keep;
	/* Chance (per mille) that a node's clock ticks while it holds a Ready
	 * (between raft_ready_get and raft_advance), as with a runtime that
	 * persists asynchronously; its clock then runs a little fast. */
	uint32_t tick_in_ready_pm;
	/* Chance (per mille) that a node is handed a proposal while it holds
	 * a Ready (a client request arriving during the persist). */
	uint32_t propose_in_ready_pm;
	/* Asynchronous storage writes (raft_config.async_storage, as the
	 * node runtime does): a Ready's save completes later, in order, after
	 * 0..persist_delay ticks (and a coin flip per delivery round once
	 * due); messages that depend on it wait for it, a leader's appends
	 * go at once; a crash loses the saves not yet done. */
	bool async_storage;
	uint32_t persist_delay;
	bool no_checks;	 /* benchmarks: skip the safety checker */
	FILE *trace;	 /* readable story of the run; NULL: stderr if SIM_TRACE is set */
	bool trace_msgs; /* also every message sent and delivered */
} sim_opts;

/* Fills o with the defaults: election 10 ticks, heartbeat 2, pre-vote and
 * check-quorum on, 1 MiB messages, 256 in flight, no snapshots. */
void sim_opts_default(sim_opts *o, size_t n_nodes, uint64_t seed);

/* A save of a node with async_storage, waiting to become durable. */
struct sim_save {
	struct sim_save *next;
	raft_entry *ents; /* copies */
	size_t n_ents;
	bool has_hs;
	raft_hard_state hs;
	bool hs_leader; /* leader of hs.term when it was handed out */
	raft_msg *msgs;	/* copies, sent once durable */
	size_t n_msgs, cap_msgs;
	uint64_t due; /* tick */
};

typedef struct sim_node {
	uint64_t id;
	memory_storage *ms; /* survives crashes: the node's disk */
	raft *r;	    /* NULL while crashed */
	uint64_t incarnation;
	sim_sm sm;	     /* volatile state machine */
	uint64_t known_upto; /* highest index ever applied here (6.824's logs[i]) */
	raft_role role;	     /* last soft state seen */
	uint64_t leader;
	raft_conf_state conf; /* membership as of sm.applied */
	/* Removed from the cluster: shut down, as an operator does with a
	 * removed member, until a membership change adds it back. */
	bool retired;
	bool crash_in_ready;		 /* crash after the next persist, before sending */
	/* async_storage: saves handed out and not yet durable, oldest first
	 * (lost in a crash); saves queued and done; vote_upto: saves queued
	 * up to the newest that changed term or vote (a leader's appends go
	 * before its own save only once that one is durable). */
	struct sim_save *saves, *saves_tail;
	uint64_t saves_queued, saves_done, vote_upto;
	raft_hard_state last_hs; /* the last hard state handed out */
	uint64_t last_in_ready_proposal; /* tick (at most one per tick) */
} sim_node;

/* A linearizable read in progress. */
typedef struct sim_pending_read {
	uint64_t id;
	uint64_t node, incarnation;
	uint64_t min_index; /* committed index when the read was issued */
	uint64_t issued_at;
	uint64_t index; /* read state index, once has_index */
	bool has_index;
} sim_pending_read;

typedef struct sim_cluster sim_cluster;
typedef void (*sim_fail_fn)(void *arg, const char *msg);

struct sim_cluster {
	sim_opts opts;
	sim_rng rng; /* faults and schedules; the cores have their own seeds */
	sim_net net;
	sim_checker ck;
	sim_node nodes[SIM_MAX_NODES + 1]; /* [1..n_nodes] */
	uint64_t now;
	FILE *trace;
	raft_conf_state conf;

	sim_pending_read *reads;
	size_t n_reads, cap_reads;
	uint64_t next_read_id;
	uint64_t reads_done;

	/* Snapshot sends that the network lost when they were sent; the
	 * sender hears of it (raft_report_snapshot) once its Ready is done,
	 * as a transport reports a failed stream. */
	struct sim_snap_report {
		uint64_t from, to, incarnation;
	} * lost_snaps;
	size_t n_lost_snaps, cap_lost_snaps;

	/* Membership changes applied somewhere, acted upon as an operator
	 * would once the current Readies are done: an added node is started;
	 * a removed one is shut down (retired) once every member of the new
	 * configuration has applied its removal (earlier, a survivor that
	 * never learned the removal committed could need its vote). */
	struct sim_conf_event {
		int type;
		uint64_t node, index;
		raft_conf_state after; /* owned: the configuration it made */
	} * conf_events;
	size_t n_conf_events, cap_conf_events;
	bool conf_events_new;
	uint64_t conf_acted_index; /* highest conf change index acted upon */

	uint64_t applied_entries;    /* entries applied, all nodes */
	uint64_t in_ready_proposals; /* proposals made inside a Ready */
	sim_fail_fn fail_hook;
	void *fail_arg;
};

/* Creates a cluster with every node started and connected. Returns 0 or
 * an error code; *out is freed with sim_cluster_free. */
int sim_cluster_new(const sim_opts *opts, sim_cluster **out);
void sim_cluster_free(sim_cluster *c);

/* Advances virtual time by one tick / by n ticks. */
void sim_tick(sim_cluster *c);
void sim_run(sim_cluster *c, uint64_t ticks);
/* Handles every pending Ready and delivers every message due now, without
 * advancing time. */
void sim_settle(sim_cluster *c);
/* One delivery round without advancing time: handles pending Readies,
 * delivers the messages due now that were sent before the round began,
 * handles the Readies that caused. Returns whether anything was
 * delivered. (Benchmarks pipeline proposals round by round.) */
bool sim_deliver_round(sim_cluster *c);

/* Kills node id: its raft and state machine are gone, its storage stays.
 * No-op if already down. */
void sim_crash(sim_cluster *c, uint64_t id);
/* The node crashes while handling its next Ready: after persisting it,
 * before sending its messages or applying. */
void sim_crash_in_next_ready(sim_cluster *c, uint64_t id);
/* Starts node id again from its storage (crashing it first if it is up).
 * Returns 0 or an error code (also recorded as a failure). */
int sim_restart(sim_cluster *c, uint64_t id);
static inline bool sim_alive(const sim_cluster *c, uint64_t id)
{
	return c->nodes[id].r != NULL;
}

/* Network shape: a disconnected node neither sends nor receives;
 * sim_partition puts node i in group groups[i] (groups[0] unused). */
void sim_disconnect(sim_cluster *c, uint64_t id);
void sim_connect(sim_cluster *c, uint64_t id);
void sim_partition(sim_cluster *c, const int *groups);
/* Everyone connected, one group, no loss, delay or duplication. */
void sim_heal(sim_cluster *c);

/* raft_propose on node id (RAFT_EPROPOSAL_DROPPED if it is down). The
 * Ready is handled at the next tick or settle, as a runtime would. */
int sim_propose(sim_cluster *c, uint64_t id, const void *data, size_t len, uint64_t *index,
		uint64_t *term);
/* Proposes a membership change on node id (type: raft_conf_change_type
 * of codec.h). Once applied by some node the cluster acts as an operator
 * would: a removed node is shut down (retired), an added one started. */
int sim_propose_conf_change(sim_cluster *c, uint64_t id, int type, uint64_t node);

/* True if node id is a voter or learner in the configuration node `of`
 * has applied. */
bool sim_in_conf(const sim_cluster *c, uint64_t of, uint64_t id);

/* Starts a linearizable read on node id; it is checked when served. */
int sim_read(sim_cluster *c, uint64_t id);

/* True once a violation or harness error was recorded; the message. */
static inline bool sim_failed(const sim_cluster *c)
{
	return c->ck.failed;
}
static inline const char *sim_failure(const sim_cluster *c)
{
	return c->ck.msg;
}
/* Records a failure (first one kept) and calls the fail hook. */
void sim_fail(sim_cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Calls the fail hook if a failure was recorded. */
void sim_check(sim_cluster *c);

/* Writes one line of the story (when tracing), prefixed with the tick. */
void sim_trace(sim_cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
