/* log.h — the Raft log of one node: stable storage, unstable entries, commit and applied.
 *
 * Entries live in one growable window [off, last] kept in memory: every
 * entry not yet persisted (index > stable) is in it, and persisted entries
 * stay in it until they are also applied, so the common path (append,
 * replicate, apply) never reads storage. Older entries are read from
 * storage. A snapshot received from the leader waits here (pending) until
 * the caller has persisted it.
 *
 * Invariants: applied <= committed <= last; off <= stable + 1; entries
 * <= committed are never truncated (Raft §5.3 Log Matching + §5.4 safety).
 */
#ifndef RAFTFS_LOG_H
#define RAFTFS_LOG_H

#include "raft_types.h"
#include "storage.h"

typedef struct raft_log {
	raft_storage *storage;
	raft_entry *ents; /* window: ents[head .. head+n) hold indexes off .. off+n-1 */
	size_t head, n, cap;
	uint64_t off;
	uint64_t last;		     /* last index of the whole log */
	uint64_t stable;	     /* last index known to be in stable storage */
	/* Last index handed out in a Ready to be persisted (>= stable). With
	 * asynchronous storage writes the two differ while a save is under
	 * way: entries in (stable, handed] are being written. */
	uint64_t handed;
	uint64_t committed;	     /* highest index known committed */
	uint64_t applied;	     /* highest index handed to the state machine and advanced */
	raft_snapshot *pending_snap; /* received, not yet persisted; owned */
	/* Data of entries truncated away while a Ready may still point at
	 * them; freed at the next advance. */
	uint8_t **graveyard;
	size_t n_graveyard, cap_graveyard;
} raft_log;

/* Opens the log over storage; applied is where the state machine is. */
int raft_log_init(raft_log *l, raft_storage *storage, uint64_t applied);
void raft_log_destroy(raft_log *l);

/* Term of entry i, or RAFT_ECOMPACTED / RAFT_EUNAVAILABLE (*term = 0). */
int raft_log_term(const raft_log *l, uint64_t i, uint64_t *term);
/* Term of entry i, 0 when it is not available. */
uint64_t raft_log_term_or_zero(const raft_log *l, uint64_t i);
uint64_t raft_log_last_term(const raft_log *l);
/* The first index still held (after the snapshot / compaction point). */
uint64_t raft_log_first_index(const raft_log *l);
bool raft_log_match_term(const raft_log *l, uint64_t i, uint64_t term);

/* §5.4.1: is a log ending at (last_index, last_term) at least as
 * up-to-date as ours? */
bool raft_log_is_up_to_date(const raft_log *l, uint64_t last_index, uint64_t last_term);

/* Leader side: appends copies of ents after last, giving them the
 * indexes last+1.. and the given term. */
int raft_log_append_new(raft_log *l, const raft_entry *ents, size_t n, uint64_t term);
/* The same, but each entry's data is a block of blob.h (raft_blob_new)
 * the log takes a reference to instead of a copy. */
int raft_log_append_refs(raft_log *l, const raft_entry *ents, size_t n, uint64_t term);

/* Follower side of AppendEntries (Figure 2): if our entry at index has
 * log_term, appends ents (truncating a conflicting suffix, never a matching
 * one), advances commit to min(commit, index + n) and returns 0 with
 * *last_new set; RAFT_EINVAL when the log does not match at index; a
 * negative error on failure. */
int raft_log_maybe_append(raft_log *l, uint64_t index, uint64_t log_term, uint64_t commit,
			  const raft_entry *ents, size_t n, uint64_t *last_new);
/* The same, but each entry's data is a block of blob.h (a decoded
 * message's, codec_msg_decode) the log takes a reference to instead of a
 * copy. */
int raft_log_maybe_append_refs(raft_log *l, uint64_t index, uint64_t log_term, uint64_t commit,
			       const raft_entry *ents, size_t n, uint64_t *last_new);

/* The largest index <= index whose term is <= term (etcd findConflictByTerm):
 * the hint a rejecting follower sends, and what the leader uses to skip a
 * whole term per round trip. *out_term is that entry's term. */
uint64_t raft_log_find_conflict_by_term(const raft_log *l, uint64_t index, uint64_t term,
					uint64_t *out_term);

/* Moves committed forward to index (never backward). */
void raft_log_commit_to(raft_log *l, uint64_t index);

/* Entries [lo, last] (at least one if any, at most max_bytes) for an append
 * message: a new array whose entries share their data with the log's window
 * (a reference each, consensus/blob.h: a leader sends every entry to every
 * follower without copying it); those read from storage are copied into a
 * block of their own. Released with raft_log_entries_free (never
 * raft_entries_free), or by raft_msg_free_contents once they are an
 * append's (raft_msg.blob_data). RAFT_ECOMPACTED when lo is below the
 * first index. */
int raft_log_entries(const raft_log *l, uint64_t lo, uint64_t max_bytes, raft_entry **out,
		     size_t *n);

/* Releases what raft_log_entries returned. */
void raft_log_entries_free(raft_entry *ents, size_t n);

/* True if an entry in [lo, hi] is a conf change (scans: for rare use). */
bool raft_log_has_conf_change(const raft_log *l, uint64_t lo, uint64_t hi);

/* Replaces the log with a snapshot's position (kept pending, owned). */
void raft_log_restore(raft_log *l, raft_snapshot *snap);

/* Entries not yet handed out to be persisted (after handed), pointing
 * into the window (valid until the log changes). */
const raft_entry *raft_log_unstable(const raft_log *l, size_t *n);

/* Committed entries ready to apply (persisted, after applied, at most
 * max_bytes but at least one). *owned is set when the array was read from
 * storage and must be freed by the caller with raft_entries_free; otherwise
 * it points into the window. */
int raft_log_next_committed(const raft_log *l, uint64_t max_bytes, const raft_entry **out,
			    size_t *n, raft_entry **owned);
bool raft_log_has_next_committed(const raft_log *l);

/* After the caller persisted entries up to (index, term). Nothing moves
 * if the log no longer holds that entry (a conflicting suffix replaced it
 * meanwhile: a later save writes the replacement). */
void raft_log_stable_to(raft_log *l, uint64_t index, uint64_t term);
/* After a Ready handed out entries up to (index, term) to be persisted. */
void raft_log_handed_to(raft_log *l, uint64_t index, uint64_t term);
/* After the caller persisted the pending snapshot at index. */
void raft_log_stable_snap_to(raft_log *l, uint64_t index);
/* After the state machine applied up to index. */
void raft_log_applied_to(raft_log *l, uint64_t index);
/* Frees the graveyard and window entries no longer needed in memory. */
void raft_log_release(raft_log *l);

#endif
