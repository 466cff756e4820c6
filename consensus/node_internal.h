/* node_internal.h — what node.c (proposals, reads, the Ready loop, the apply
 * thread), node_snapshot.c (snapshot images between the state machine, the
 * store and the leader), node_held.c (proposals held while this leader's
 * disk is behind), node_admit_hooks.c (admission of big proposals) and
 * node_members.c (membership changes) and node_pending.c (the pending
 * list) share. Not a public interface: only
 * the node runtime's own files include it. */
#ifndef RAFTFS_NODE_INTERNAL_H
#define RAFTFS_NODE_INTERNAL_H

/* Byte marks kept to bound the log behind a snapshot (node_snapshot.c). */
#define TRAIL_MARKS 64

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "node.h"
#include "node_persist.h"
#include "node_stages.h"
#include "raft.h"
#include "snapshot_stream.h"
#include "store.h"
#include "transport.h"

/* A proposal waiting to be applied. Owned by the pending list (under mu). */
typedef struct proposal {
	struct proposal *next, *prev;
	uint64_t seq;
	uint8_t *data; /* envelope + command: what is (re-)proposed */
	size_t len;
	node_done_cb cb;
	void *arg;
	uint64_t start_ms; /* when started (node_unanswered_ms) */
	uint64_t deadline_ms;
	uint64_t last_try_ms;
	uint64_t epoch; /* leader epoch of the last try */
	int last_error;
	bool proposed;
	/* Its last try's entry was handed out committed here (then it is not
	 * lost, only not applied yet: no retry by timer). */
	bool committed;
	/* Where an entry carrying it went into this node's log (index and
	 * term; 0: not seen yet): a leader's try sets them when it appends
	 * it, and any node's Ready when the entry reaches its log (a
	 * follower's forward comes back in the leader's append,
	 * note_own_logged). With the commit index past it and the entry at
	 * that index still of that term, it is committed although the apply
	 * queue's bound may hold it back from being handed out
	 * (check_proposals); log_committed: found so once (it stays so). */
	uint64_t log_index, log_term;
	bool log_committed;
	/* The index of a copy of it (any try's) known committed here, the
	 * highest (0: none): it will apply here or be skipped as early, so
	 * past its deadline it waits for the apply index to reach it instead
	 * of failing (check_proposals). Kept across retries (a committed
	 * entry stays); forgotten once apply passed it without answering
	 * (skipped as early, or under an installed snapshot whose duplicate
	 * table does not hold it: node_answer_restored). */
	uint64_t commit_seen;
	/* RAFTFS_STAGES: when it was started, first tried, persisted here and
	 * handed out committed (uv_hrtime ns; 0: not seen). */
	uint64_t t_start, t_tried, t_persisted, t_committed;
} proposal;

/* A read barrier waiting for its read index, then for apply. Loop thread. */
typedef struct reader {
	struct reader *next;
	uint64_t id;
	node_read_cb cb;
	void *arg;
	uint64_t deadline_ms;
	uint64_t last_try_ms;
	uint64_t epoch;
	uint64_t index;
	bool has_index;
} reader;

typedef enum { OP_PROPOSE, OP_READ, OP_CALL } op_kind;

/* Work handed to the loop thread. */
typedef struct op {
	struct op *next;
	op_kind kind;
	uint64_t seq;				       /* OP_PROPOSE */
	reader *rd;				       /* OP_READ */
	void (*fn)(node *n, void *arg, bool stopping); /* OP_CALL */
	void *arg;
} op;

/* Committed entries handed to the apply thread, in order. */
typedef struct apply_batch {
	struct apply_batch *next;
	raft_snapshot *snap; /* restore this first, or NULL */
	raft_entry *ents;
	size_t n;
	bool shared; /* ents' data are references to the core's blocks (blob.h) */
	uint64_t bytes; /* the entries' data, counted in node.aq_bytes */
	uint64_t queued_ms; /* when handed to the apply thread (now_ms) */
} apply_batch;

struct node {
	const node_config *cfg;
	const node_sm *sm;
	store *st;
	/* The persist thread: saves off the loop thread, and the store lock
	 * every other user of st on the loop thread takes (node_persist.h). */
	node_persist *pq;
	raft *r;
	transport *tp;
	uint64_t client_id;
	struct node_members *mem; /* node_members.c: membership, addresses */

	uv_loop_t loop;
	uv_async_t async;
	uv_timer_t tick;
	uv_prepare_t prep;
	uv_check_t chk; /* after each poll: ticks owed since a stall (clock_catch_up) */
	pthread_t loop_thread, apply_thread;
	bool launched, stopped;

	/* Shared: inbox and pending proposals. */
	pthread_mutex_t mu;
	op *inbox_head, *inbox_tail;
	proposal *pend_head, *pend_tail; /* increasing seq (node_pending.c) */
	/* How many are on that list, kept beside it (node_pending.c): the
	 * loop's tick_plan asks on every iteration whether any is pending and
	 * must not take mu for it (node_start and the apply thread hold it). */
	atomic_size_t pend_count;
	proposal *pend_unc; /* the first not handed out committed, or NULL */
	uint64_t seq;
	bool stopping;
	bool async_closed;

	/* Loop thread only. */
	reader *readers;
	uint64_t read_id;
	uint64_t leader;
	uint64_t epoch; /* bumped on every leader change */
	uint64_t retry_ms;
	bool closing;
	bool draining; /* stopping: leadership transfer under way */
	uint64_t drain_deadline_ms;
	raft_hard_state hs; /* last hard state of a Ready */
	bool hs_dirty;	    /* hs not yet queued to be written to the store */
	/* Saves queued and taken back done; vote_upto: the count of saves
	 * queued up to the newest that changes term or vote. A leader's
	 * appends go before its own save only once that one is durable. */
	uint64_t saves_queued, saves_done, vote_upto;
	/* A leader's entries not yet saved here (README-node.md, "Bounded
	 * memory"): in queued saves, and proposed since the last Ready (not
	 * yet in a save). held_seq: the lowest proposal held back while over
	 * the bound (0: none); unsaved_max: the most ever (tests). */
	uint64_t unsaved_bytes, unsaved_ents, new_bytes, new_ents, held_seq;
	uint64_t dropped_props;
	_Atomic uint64_t held_props; /* messages held so far (tests) */
	/* Forwarded proposals that found the bound reached: one message per
	 * peer (later ones joined to it up to unsaved_bytes / 8, beyond that
	 * dropped), stepped once a save makes room, taking turns with the
	 * held own proposals (fwd_first: whose turn it is to go first), so
	 * neither side starves. */
	raft_msg held_fwd[CONFIG_MAX_PEERS];
	size_t n_held_fwd;
	bool fwd_first;
	/* Loop thread: a leader's admission of big proposals (node_admit.h). */
	struct node_admit *adm;
	/* Loop thread, while admission is on and this node leads (term
	 * adm_term): each peer's match as of the last tick and when it last
	 * moved or trailed nothing, so a voter whose disk hangs (match frozen
	 * while its heartbeat answers keep it active) stops holding admission
	 * back after an election timeout (admit_done). */
	struct admit_peer {
		uint64_t id, match, moved_ms;
	} adm_peer[CONFIG_MAX_PEERS];
	size_t n_adm_peer;
	uint64_t adm_term;
	_Atomic uint64_t unsaved_max;
	snap_streams *ss;
	/* The local snapshot staged by SIO_BEGIN, while nothing else staged. */
	bool local_staging;
	uint64_t local_index, local_epoch;
	/* Bumped (loop) whenever something else begins staging; read by the
	 * thread writing a local image, which then stops. */
	_Atomic uint64_t stage_epoch;
	bool recv_pending;    /* a received snapshot is staged, its Ready not yet handled */
	/* Loop thread: the index of the last membership change put into
	 * effect (handed out). The stored membership is as of a snapshot's
	 * index N only while this is <= N (Raft §7). */
	uint64_t conf_index;

	/* Apply thread waiting for a snap_io. */
	pthread_mutex_t smu;
	pthread_cond_t scv;
	bool loop_done; /* under mu: the loop ran its last inbox */

	/* Apply queue. */
	pthread_mutex_t amu;
	pthread_cond_t acv;
	apply_batch *aq_head, *aq_tail;
	uint64_t aq_bytes;     /* under amu: entry data queued */
	uint64_t aq_bytes_max; /* under amu: the most ever queued */
	bool aq_full;	       /* under amu: the core holds committed entries back */
	/* Written under amu, read by any thread: queued_ms of the oldest
	 * batch not yet wholly applied (the one in the apply thread's hands,
	 * else the queue's head), 0 when none is (node_apply_lag_ms). */
	_Atomic uint64_t apply_front_ms;
	_Atomic bool apply_stop;
	uint64_t last_snap; /* apply thread: index of the last snapshot taken */
	uint64_t snap_bytes; /* apply thread: entry bytes applied since then */
	_Atomic uint64_t image_bytes; /* size of the current snapshot's image */
	/* Apply thread: (index, entry bytes applied up to it) every
	 * 2/TRAIL_MARKS of the trailing byte bound (node_snapshot.c). */
	struct trail_mark {
		uint64_t index, bytes;
	} trail[TRAIL_MARKS];
	unsigned trail_head, trail_n;
	uint64_t applied_bytes; /* apply thread: entry bytes ever applied */
	/* Set by the apply thread when it begins a local snapshot, read by
	 * the loop thread when that snapshot installs: the log may be
	 * compacted up to here whatever snapshot_trailing says, so entries
	 * kept behind a snapshot hold at most snapshot_bytes / 2. */
	_Atomic uint64_t trail_upto;
	bool apply_halted;   /* apply thread: a restore was cut short by the stop */

	_Atomic uint64_t applied;
	_Atomic uint64_t own_commit_ms; /* an own entry last seen committed (now_ms) */
	_Atomic uint64_t term;
	_Atomic bool is_leader;
	_Atomic int fault;
	/* Why fault was set (raftfs status): written once by the first to set
	 * it (fault_claimed), published by fault_why_set. */
	char fault_why[256];
	_Atomic bool fault_claimed, fault_why_set;
	_Atomic int readers_waiting; /* readers that have an index, waiting for apply */
	_Atomic bool snap_wanted;    /* raftfs snapshot: snapshot at the next applied entry */

	/* Order of this node's proposals (node.c, README-node.md "Order"). */
	uint64_t gbn_seq;	    /* loop: a resend from this seq is under way (0: none) */
	_Atomic uint64_t n_refused; /* own entries skipped as early (apply thread counts) */
	node_msg_filter msg_filter; /* tests: drops outgoing raft messages */
	void *msg_filter_arg;
	node_stages stages;	    /* RAFTFS_STAGES: where proposals' time goes */
	struct {		    /* RAFTFS_STAGES: where the loop thread's time goes */
		uint64_t readies, saves, saved_entries, saved_bytes;
		uint64_t save_ns, send_ns, hand_ns, step_ns; /* store_save, sends, ... */
	} lp;
	uint64_t tick_ns;	    /* loop: wall time (uv_hrtime) the core's clock is at */
	bool ticks_owed;	    /* loop: a stall's ticks wait for what was read meanwhile */
	bool test_stall;	    /* RAFTFS_TEST_STALL (tests): see test_stall() */
	uint64_t stall_commit;	    /* tests: the commit index when a stall was asked for */
	bool stall_loop;	    /* tests: RAFTFS_TEST_STALL=loop, see test_stall() */
	bool heard_leader;	    /* loop: ...and among it something from the leader */
	/* Quiet ticks (node.c, tick_plan): with nothing for on_tick to look
	 * after, the tick timer fires once, when the core's next tick acts
	 * (tick_due_ns), instead of every tick_ms; 0 while it repeats.
	 * quiet_off: RAFTFS_QUIET_TICKS=0, every tick as before (A/B). */
	uint64_t tick_due_ns;
	bool quiet_off;
	uint64_t tick_fires;	    /* loop: on_tick calls since the start (raftfs status) */
	uint64_t hs_flush_ns;	    /* loop: when the hard state was last flushed on a tick */
	/* node_elide.c, loop thread: elided entries filled from own
	 * proposals, and lacked; elide_forget (tests, RAFTFS_TEST_ELIDE_LACK=1):
	 * every one is lacked, as after a restart. */
	uint64_t elide_filled, elide_lacked;
	bool elide_forget;

	/* node_snapshot.c: a local image streamed by the snapshot thread while
	 * apply goes on (node_sm.snapshot_begin/stream/end). The apply thread
	 * starts, joins and ends it; the thread sets snap_done when through. */
	pthread_t snap_thread;
	bool snap_running; /* apply thread: a job begun, not yet ended */
	void *snap_job;
	uint64_t snap_job_index, snap_job_term;
	store_snap_writer *snap_writer; /* the job's writer into the staging */
	uint64_t snap_epoch;		/* stage_epoch of the job's staging */
	_Atomic bool snap_done;	  /* the snapshot thread is through */
	_Atomic bool snap_cancel; /* apply thread: cut the stream short */
};

/* Appends o to the inbox and wakes the loop; n->mu must be held. */
void node_inbox_push_locked(node *n, op *o);

/* A code from the state machine (errno), the store/core or the runtime. */
const char *node_any_strerror(int rc);

/* Marks the node faulty (it stops applying; status reports it unhealthy)
 * and, if it is the first fault, keeps the formatted reason for status and
 * writes it to the log with "this node stops applying". Any thread. */
void node_set_fault(node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Milliseconds of the monotonic clock (uv_hrtime), as node.c's timers use. */
uint64_t node_now_ms(void);

/* Loop thread: whether this node leads with more entries unsaved on its own
 * disk than [raft] unsaved_bytes / unsaved_entries allow. */
bool node_unsaved_full(const node *n);

/* Loop thread, mu held: proposes p and every pending proposal after it again,
 * in seq order (go-back-N, README-node.md "Order"). */
void node_resend_from(node *n, proposal *p, uint64_t now);

/* Apply thread, after a snapshot at index was restored and before the
 * applied index moves to it: answers every pending proposal of this node
 * the restored duplicate table holds as applied (node.c). */
void node_answer_restored(node *n, uint64_t index);

/* node_pending.c, the pending list (mu held for each): */
/* Appends p (its seq above every pending one). */
void node_pending_append(node *n, proposal *p);
/* Takes p out (applied, or failed). */
void node_pending_unlink(node *n, proposal *p);
/* p's last try was handed out committed here. */
void node_pending_committed(node *n, proposal *p);
/* p is tried again: its fate is unknown again (not committed). */
void node_pending_retried(node *n, proposal *p);
/* The first pending proposal not handed out committed, or NULL: O(1). */
const proposal *node_pending_unanswered(const node *n);

/* Loop thread: steps a peer's proposal message into the core (or offers it
 * to admission); a leader counts its entries as unsaved from then on. */
void node_step_forwarded(node *n, const raft_msg *m);

/* Loop thread: entries proposed to this leader's core, not yet in a save
 * (node_unsaved_full counts them). */
void node_unsaved_add(node *n, uint64_t bytes, uint64_t ents);

/* ---- node_admit_hooks.c: a leader's admission of big proposals ---- */

/* Makes n->adm from the config ([raft] admit_bytes; the held bytes capped
 * at four mounts' windows, one sender at one window). 0 or -ENOMEM. */
int node_admission_init(node *n);

/* Loop thread (try_propose): whether this node's own proposal seq (data:
 * envelope + command, len bytes; min_pending: the envelope's) may go to
 * the core now; false: admission holds it (proposed when released) or
 * drops it (a resend of one held or already in the log; its timer
 * retries). */
bool node_admission_own(node *n, uint64_t seq, uint64_t min_pending, const void *data,
			size_t len);

/* Loop thread: this node's own proposal seq (len bytes, its envelope's
 * min_pending) went into the log at index (admission counts a big one,
 * and tells later resends of it apart by min_pending). */
void node_admission_placed(node *n, uint64_t seq, uint64_t min_pending, uint64_t index,
			   size_t len);

/* Loop thread: a peer's proposal message, offered entry by entry while
 * admission holds or counts anything or an entry is big; false when it
 * is for the caller to step whole. */
bool node_admission_forwarded(node *n, const raft_msg *m);

/* Loop thread, each Ready: held proposals released as big entries are
 * saved by every voter that keeps up; forgotten once this node no longer
 * leads (their senders propose them again). */
void node_admission_ready(node *n);

/* Loop thread, each tick: notes when each peer's match last moved, so a
 * voter whose disk hangs stops holding admission back. */
void node_admission_tick(node *n, uint64_t now);

/* At stop, if this node ever held a proposal: what admission did, to the
 * log. */
void node_admission_report(node *n);

/* node_elide.c, loop thread. A forwarder's own bytes: fills the elided
 * entries of append m (m->elided, freed and NULL after) from this node's
 * pending proposals; at the first it lacks, m ends before it and the
 * transport is told (transport_lacks). */
void node_elide_fill(node *n, raft_msg *m);
/* At stop, if any entry was elided here or to here: counts to the log. */
void node_elide_report(node *n);

/* Loop thread (raftfs status): admission's state and counters into *as;
 * st is the core's status, taken just before. */
void node_admission_status(node *n, const raft_status *st, Transportpb__AdmitStatus *as);

/* ---- node_held.c: proposals held at a leader's unsaved bound ---- */

/* Loop thread: keeps a forwarded proposal message m that found the bound
 * reached (or others held before it), one message per peer; beyond what
 * is kept it is dropped and its forwarder proposes it again after
 * retry_ms. m stays the caller's. */
void node_hold_forwarded(node *n, const raft_msg *m);

/* Loop thread, each Ready after the saves were reaped: what was held goes
 * once there is room, the own proposals and the forwarded messages taking
 * turns at going first so neither starves (node.fwd_fair). */
void node_propose_held(node *n);

/* Frees the held forwarded messages (node_free, the loop gone). */
void node_held_free(node *n);

/* ---- node_snapshot.c ---- */

/* Restores the store's snapshot at *index into the state machine, streamed
 * from the store (direct: before the threads run, reading the store here).
 * A newer snapshot replacing it meanwhile is restored instead: *index is
 * what was restored, *bytes its size. */
int node_snap_restore_stream(node *n, bool direct, uint64_t *index, uint64_t *bytes);

/* Apply thread: restores the snapshot s handed over with a batch. */
void node_snap_restore(node *n, const raft_snapshot *s);

/* Apply thread, right after e was applied: takes a snapshot at e->index if
 * one is due (entries, bytes, or raftfs snapshot asked). */
void node_snap_maybe_take(node *n, const raft_entry *e);

/* Apply thread, as it exits: cuts a local image being streamed short, waits
 * for the snapshot thread and ends the job. */
void node_snap_stop(node *n);

/* Loop thread: makes the snapshot of a Ready current in the store;
 * *for_apply gets its metadata only (the apply thread streams the data). */
int node_snap_install(node *n, const raft_snapshot *snap, raft_snapshot *for_apply);

/* Transport callback: a chunk of a snapshot from the leader. */
void node_snap_on_chunk(void *arg, uint64_t from, const Transportpb__SnapshotChunk *ch);

/* snap_streams callback, from a stream's reader thread: chunks are ready,
 * the loop thread is to pump the streams. */
void node_snap_wake(void *arg);

/* snap_streams callback: sending a snapshot to peer finished or failed. */
void node_snap_report(void *arg, uint64_t peer, bool failed);

#endif
