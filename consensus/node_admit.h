/* node_admit.h — a leader's admission of big proposals into its log: big
 * entries (file data) go in only while the big bytes outstanding (in the
 * log, not yet committed and saved by every voter that keeps up: the index
 * the node reports as done) are under a bound, the rest wait per client in
 * FIFOs released round robin as done moves, and small ones (metadata,
 * small writes, fsync barriers) pass at once, so they never queue behind
 * more than the bound (consensus/README-node.md, "Admission of big
 * proposals").
 *
 * Why at the leader: every command enters the one log behind every byte
 * proposed before it and not yet committed. Each mount paces its own big
 * writes (fs/write_pace.h), but n writers still leave n windows queued
 * ahead of another mount's fsync; only the leader sees them all
 * (bench/fs/README.md, "Session 8 (admit)").
 *
 * Order: one client's proposals must reach the log in seq order, or the
 * later ones are skipped as early and the client goes back N (dedup.h,
 * README-node.md "Order"). So once a client has something held, every
 * later proposal of that client is held behind it, small ones too, and a
 * proposal arriving out of order (a resend of a lost one) is put in its
 * seq place among the held ones; a resend of one already held is dropped
 * (the held copy goes in its place, taking the resend's min_pending if
 * higher), and so is a resend of a big one already admitted into this
 * term's log and not yet done, unless a lower seq of its client went into
 * the log after it or the resend's min_pending is above the copy's (the
 * copy may then be skipped as early where the resend applies:
 * node_admit_placed). A proposal is never acknowledged
 * before it applies, so whatever is held and then forgotten (leadership
 * lost, the held bytes at their cap) is only delayed: its sender proposes
 * it again to whoever leads (node.c, check_proposals).
 *
 * Pure: no clock, no I/O, no locking (the node's loop thread owns it).
 */
#ifndef RAFTFS_NODE_ADMIT_H
#define RAFTFS_NODE_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct node_admit node_admit;

typedef struct node_admit_limits {
	/* A big entry is admitted only while the big bytes outstanding
	 * (admitted, not yet done: node_admit_release) are under this (so
	 * they exceed it by less than one entry). 0: admission off (every
	 * proposal passes). */
	uint64_t bound;
	/* Entries of this many bytes or more are big. */
	uint64_t big;
	/* Bytes held at most: an offer beyond is dropped (its sender
	 * retries later), so held proposals cannot fill the memory. */
	uint64_t held_max;
	/* Bytes one client may hold at most (0: held_max alone), so one
	 * sender cannot take the whole of held_max from the others. */
	uint64_t held_client_max;
} node_admit_limits;

enum node_admit_verdict {
	NODE_ADMIT_PASS = 0, /* propose it now (a big one: then node_admit_placed) */
	NODE_ADMIT_HELD = 1, /* copied and held: node_admit_release hands it out */
	NODE_ADMIT_DROP = 2, /* not proposed and not kept: a duplicate of one held,
				over held_max, or a later one of a client whose
				offer was dropped over held_max (until the client
				offers that seq again) */
};

/* What it did so far (tests, logs). */
typedef struct node_admit_stats {
	uint64_t outstanding;	   /* big bytes admitted, not yet done */
	uint64_t outstanding_max;  /* the most ever */
	uint64_t held_bytes, held; /* held now: bytes, proposals */
	uint64_t held_bytes_max;   /* the most bytes ever held */
	uint64_t n_held;	   /* proposals ever held */
	uint64_t n_released;	   /* ...and handed out by node_admit_release */
	uint64_t n_dup;		   /* offers dropped as duplicates of held ones */
	uint64_t n_resent;	   /* ...and as resends of big ones in the log, not yet done */
	uint64_t n_full;	   /* offers dropped over held_max or held_client_max
				      (or out of memory) */
	uint64_t n_behind;	   /* ...and later ones of their clients, dropped behind them */
	uint64_t n_forgotten;	   /* held ones dropped by node_admit_reset */
} node_admit_stats;

/* Proposes data (envelope + command of client's seq) to the core for
 * node_admit_release; returns the index it was appended at, or 0 if the
 * core would not take it now (it stays held, first in its queue). */
typedef uint64_t (*node_admit_propose_fn)(void *arg, uint64_t client, uint64_t seq,
					  const uint8_t *data, size_t len);

/* A new admission with these limits (copied), counting for term 0. 0 or
 * -ENOMEM. */
int node_admit_new(const node_admit_limits *lim, node_admit **out);

/* Frees it and every proposal it holds. NULL is fine. */
void node_admit_free(node_admit *a);

/* Whether admission is on (bound > 0). */
bool node_admit_on(const node_admit *a);

/* The term it counts for: what it holds and counts belongs to this node's
 * leadership in that term. */
uint64_t node_admit_term(const node_admit *a);

/* Leadership lost or a new term began: forgets every held proposal (their
 * senders retry: none was acknowledged) and every outstanding byte (the
 * new term's log is counted afresh), and counts for term from now on. */
void node_admit_reset(node_admit *a, uint64_t term);

/* Decides on client's proposal seq (data, len bytes: copied if held),
 * whose envelope carries min_pending (envelope.h). client 0 is no client
 * (no order to keep): it never waits behind others of client 0. */
enum node_admit_verdict node_admit_offer(node_admit *a, uint64_t client, uint64_t seq,
					 uint64_t min_pending, const void *data, size_t len);

/* Client's proposal seq (len bytes, envelope's min_pending) went into the
 * log at index: every one that passed must be reported, small ones too. A
 * big one counts until done (node_admit_release), and until then a
 * resend of it is dropped as in the log already (timer retries and
 * go-back resends of its sender, who has not seen it commit), unless a
 * lower seq of client is placed after it, or the resend's min_pending is
 * higher: then the copy may be skipped as early at apply where the resend
 * applies (dedup_check_ordered waits for every seq in [min_pending, seq);
 * a higher one waits for fewer, e.g. once a predecessor failed at its
 * deadline), so the resend must go in. client 0: no client (nothing
 * dropped for it). */
void node_admit_placed(node_admit *a, uint64_t client, uint64_t seq, uint64_t min_pending,
		       uint64_t index, size_t len);

/* Big entries up to index done stop counting (the node gives the index
 * committed and saved by every voter that keeps up: a small command waits
 * for its own node's save too), then held proposals are handed to
 * propose, round robin among clients (a big one per turn, with the small
 * ones queued right behind it), in each client's seq order, while under
 * the bound. */
void node_admit_release(node_admit *a, uint64_t done, node_admit_propose_fn propose, void *arg);

/* Whether it holds or counts anything (else release has nothing to do). */
bool node_admit_busy(const node_admit *a);

/* Fills *st. */
void node_admit_get_stats(const node_admit *a, node_admit_stats *st);

#endif
