/* leader.c — the leader: replication with per-follower flow control, commit, ReadIndex, transfer.
 */
#include "raft_internal.h"

#include <stdlib.h>
#include <string.h>

#include "quorum.h"

/* raft_append_entries, and with refs raft_append_entries_refs. */
static int append_entries(raft *r, const raft_entry *ents, size_t n, bool refs)
{
	uint64_t li = r->log.last;
	int rc = refs ? raft_log_append_refs(&r->log, ents, n, r->term)
		      : raft_log_append_new(&r->log, ents, n, r->term);
	if (rc != 0)
		return rc;
	RAFT_TRACE(r, TRACE_LOG, "appends %zu entries at %llu..%llu", n, (unsigned long long)li + 1,
		   (unsigned long long)r->log.last);
	/* Sent at the next Ready, so proposals made in between are batched
	 * into one append per follower. The leader's own match moves only
	 * once they are persisted (raft_persisted), never here. */
	r->need_bcast = true;
	return 0;
}

int raft_append_entries(raft *r, const raft_entry *ents, size_t n)
{
	return append_entries(r, ents, n, false);
}

int raft_append_entries_refs(raft *r, const raft_entry *ents, size_t n)
{
	return append_entries(r, ents, n, true);
}

/* Replays ReadIndex requests that waited for the first commit of this term. */
static void release_pending_reads(raft *r)
{
	size_t n = r->n_pending_reads;
	raft_msg *msgs = r->pending_reads;
	r->pending_reads = NULL;
	r->n_pending_reads = 0;
	r->cap_pending_reads = 0;
	for (size_t i = 0; i < n; i++) {
		raft_step_leader(r, &msgs[i]);
		raft_msg_free_contents(&msgs[i]);
	}
	free(msgs);
}

static bool committed_in_current_term(const raft *r)
{
	return raft_log_term_or_zero(&r->log, r->log.committed) == r->term;
}

bool raft_maybe_commit(raft *r)
{
	uint64_t vals[RAFT_MAX_MEMBERS];
	size_t n = 0;
	for (size_t i = 0; i < r->n_peers && n < RAFT_MAX_MEMBERS; i++)
		if (!r->peers[i].learner)
			vals[n++] = r->peers[i].pr.match;
	uint64_t mci = raft_quorum_index(vals, n);
	/* §5.4.2, Figure 8: only an entry of the current term commits by
	 * counting replicas; earlier ones commit with it. */
	if (mci <= r->log.committed || raft_log_term_or_zero(&r->log, mci) != r->term)
		return false;
	RAFT_TRACE(r, TRACE_CMIT, "commit %llu -> %llu", (unsigned long long)r->log.committed,
		   (unsigned long long)mci);
	raft_log_commit_to(&r->log, mci);
	if (r->n_pending_reads)
		release_pending_reads(r);
	return true;
}

/* Sends the follower its snapshot when its next entries are compacted. */
static bool send_snapshot(raft *r, raft_peer *p)
{
	if (!p->pr.recent_active) {
		RAFT_TRACE(r, TRACE_SNAP, "no snapshot to %llu: not recently active",
			   (unsigned long long)p->id);
		return false;
	}
	raft_snapshot *snap = calloc(1, sizeof(*snap));
	if (!snap)
		return false;
	int rc = r->log.storage->snapshot(r->log.storage->ctx, snap);
	if (rc != 0 || snap->meta.index == 0) {
		RAFT_TRACE(r, TRACE_SNAP, "no snapshot to %llu: %s", (unsigned long long)p->id,
			   rc ? raft_strerror(rc) : "empty snapshot");
		raft_snapshot_free_contents(snap);
		free(snap);
		return false;
	}
	raft_msg *m = raft_send(r, RAFT_MSG_SNAP, p->id);
	if (!m) {
		raft_snapshot_free_contents(snap);
		free(snap);
		return false;
	}
	m->snapshot = snap;
	RAFT_TRACE(r, TRACE_SNAP, "sends snapshot %llu/%llu to %llu (match %llu)",
		   (unsigned long long)snap->meta.index, (unsigned long long)snap->meta.term,
		   (unsigned long long)p->id, (unsigned long long)p->pr.match);
	raft_progress_become_snapshot(&p->pr, snap->meta.index);
	return true;
}

bool raft_send_append(raft *r, uint64_t to, bool send_if_empty)
{
	raft_peer *p = raft_peer_find(r, to);
	if (!p || raft_progress_is_paused(&p->pr))
		return false;
	uint64_t prev_index = p->pr.next - 1, prev_term;
	int trc = raft_log_term(&r->log, prev_index, &prev_term);
	raft_entry *ents = NULL;
	size_t n = 0;
	int erc = 0;
	if (trc == 0)
		erc = raft_log_entries(&r->log, p->pr.next, r->max_msg_bytes, &ents, &n);
	if (trc == RAFT_ECOMPACTED || erc == RAFT_ECOMPACTED)
		return send_snapshot(r, p);
	if (trc != 0 || erc != 0) {
		RAFT_TRACE(r, TRACE_LOG, "cannot send to %llu from %llu: %s",
			   (unsigned long long)to, (unsigned long long)p->pr.next,
			   raft_strerror(trc ? trc : erc));
		return false;
	}
	if (n == 0 && !send_if_empty)
		return false;
	raft_msg *m = raft_send(r, RAFT_MSG_APP, to);
	if (!m) {
		raft_log_entries_free(ents, n);
		return false;
	}
	m->index = prev_index;
	m->log_term = prev_term;
	m->entries = ents;
	m->n_entries = n;
	m->blob_data = true; /* references (raft_log_entries) */
	m->commit = r->log.committed;
	if (n > 0) {
		if (p->pr.state == RAFT_PROGRESS_REPLICATE) {
			uint64_t bytes = 0;
			for (size_t i = 0; i < n; i++)
				bytes += raft_entry_size(&ents[i]);
			raft_progress_sent_entries(&p->pr, ents[n - 1].index, bytes);
		} else if (p->pr.state == RAFT_PROGRESS_PROBE)
			p->pr.probe_sent = true;
	}
	return true;
}

void raft_bcast_append(raft *r)
{
	for (size_t i = 0; i < r->n_peers; i++)
		if (r->peers[i].id != r->id)
			raft_send_append(r, r->peers[i].id, true);
}

static void send_heartbeat(raft *r, raft_peer *p, const uint8_t *ctx, size_t ctx_len)
{
	raft_msg *m = raft_send(r, RAFT_MSG_HEARTBEAT, p->id);
	if (!m)
		return;
	/* Never tell a follower to commit beyond what it is known to hold:
	 * it may not have the leader's entries there yet. */
	m->commit = p->pr.match < r->log.committed ? p->pr.match : r->log.committed;
	raft_msg_set_context(m, ctx, ctx_len);
}

void raft_bcast_heartbeat(raft *r)
{
	uint8_t ctx[RAFT_BEAT_CTX_LEASE];
	size_t len = 0;
	uint64_t round = r->ro.n > 0 ? r->ro.round : 0;
	/* Regular heartbeats repeat the latest read round, so a lost round
	 * is confirmed by the next beat; with lease reads every beat also
	 * carries its sending tick, which the follower echoes. */
	if (r->lease_reads) {
		raft_read_only_encode_beat(round, r->tick, ctx);
		len = RAFT_BEAT_CTX_LEASE;
	} else if (round > 0) {
		raft_read_only_encode_round(round, ctx);
		len = 8;
	}
	for (size_t i = 0; i < r->n_peers; i++)
		if (r->peers[i].id != r->id)
			send_heartbeat(r, &r->peers[i], ctx, len);
}

/* Hands a confirmed read to whoever asked. */
static void answer_read(raft *r, uint64_t from, uint64_t index, const uint8_t *ctx, size_t len)
{
	if (from == 0 || from == r->id) {
		raft_add_read_state(r, index, ctx, len);
		return;
	}
	raft_msg *m = raft_send(r, RAFT_MSG_READ_INDEX_RESP, from);
	if (!m)
		return;
	m->index = index;
	raft_msg_set_context(m, ctx, len);
}

/* Releases every read whose round a majority acknowledged. */
static void confirm_reads(raft *r)
{
	uint64_t vals[RAFT_MAX_MEMBERS];
	size_t n = 0;
	for (size_t i = 0; i < r->n_peers && n < RAFT_MAX_MEMBERS; i++) {
		raft_peer *p = &r->peers[i];
		if (!p->learner)
			vals[n++] = p->id == r->id ? r->ro.round : p->read_acked;
	}
	uint64_t confirmed = raft_quorum_index(vals, n);
	raft_read_request req;
	while (raft_read_only_pop_confirmed(&r->ro, confirmed, &req)) {
		RAFT_TRACE(r, TRACE_READ, "read of %llu confirmed by round %llu at index %llu",
			   (unsigned long long)req.from, (unsigned long long)req.round,
			   (unsigned long long)req.index);
		answer_read(r, req.from, req.index, req.ctx, req.ctx_len);
		free(req.ctx);
	}
}

void raft_flush_read_round(raft *r)
{
	if (r->role != RAFT_LEADER || !r->ro.need_round)
		return;
	uint64_t round = raft_read_only_start_round(&r->ro);
	RAFT_TRACE(r, TRACE_READ, "starts read round %llu for %zu requests",
		   (unsigned long long)round, r->ro.n);
	raft_bcast_heartbeat(r);
}

bool raft_lease_valid(const raft *r)
{
	uint64_t vals[RAFT_MAX_MEMBERS];
	size_t n = 0;
	if (!r->lease_reads || r->role != RAFT_LEADER || r->lease_broken)
		return false;
	for (size_t i = 0; i < r->n_peers && n < RAFT_MAX_MEMBERS; i++)
		if (!r->peers[i].learner)
			vals[n++] = r->peers[i].id == r->id ? r->tick + 1 : r->peers[i].lease_tick;
	/* The quorum's oldest acknowledged send, q - 1: a majority has
	 * promised to elect no one else until an election timeout after it. */
	uint64_t q = raft_quorum_index(vals, n);
	return q > 0 && r->tick + 1 < q + (uint64_t)r->lease_ticks;
}

/* ReadIndex on the leader (thesis §6.4). */
static int handle_read_index(raft *r, const raft_msg *m)
{
	/* A removed leader may lead no more than the others' catching up:
	 * a leader of the new configuration may be committing already. */
	if (raft_self_removed(r)) {
		RAFT_TRACE(r, TRACE_DROP, "drops read index: not a member");
		return RAFT_EPROPOSAL_DROPPED;
	}
	if (!committed_in_current_term(r)) {
		/* Step 1: the commit index is only known to be current once
		 * an entry of this term committed; hold the request till then. */
		if (r->n_pending_reads == r->cap_pending_reads) {
			size_t cap = r->cap_pending_reads ? 2 * r->cap_pending_reads : 8;
			raft_msg *p = realloc(r->pending_reads, cap * sizeof(*p));
			if (!p)
				return RAFT_ENOMEM;
			r->pending_reads = p;
			r->cap_pending_reads = cap;
		}
		int rc = raft_msg_copy(&r->pending_reads[r->n_pending_reads], m);
		if (rc != 0)
			return rc;
		r->n_pending_reads++;
		RAFT_TRACE(r, TRACE_READ, "read from %llu waits for a commit in this term",
			   (unsigned long long)m->from);
		return 0;
	}
	/* A lone voter is its own quorum. Only now, though: its no-op
	 * commits once persisted (raft_persisted), not at its append, and
	 * until then a commit index saved before a restart may lag what it
	 * had committed (and answered) before. */
	if (raft_n_voters(r) <= 1) {
		answer_read(r, m->from, r->log.committed, m->context, m->context_len);
		return 0;
	}
	if (raft_lease_valid(r)) {
		/* §6.4.1: inside the lease no other leader can have committed
		 * anything: our commit index is current without a round. */
		RAFT_TRACE(r, TRACE_READ, "read of %llu served by the lease at index %llu",
			   (unsigned long long)m->from, (unsigned long long)r->log.committed);
		answer_read(r, m->from, r->log.committed, m->context, m->context_len);
		return 0;
	}
	return raft_read_only_add(&r->ro, m->from, r->log.committed, m->context, m->context_len);
}

static bool quorum_active(raft *r)
{
	size_t active = 0;
	for (size_t i = 0; i < r->n_peers; i++) {
		raft_peer *p = &r->peers[i];
		if (p->id == r->id) {
			active += !p->learner;
			continue;
		}
		if (p->pr.recent_active && !p->learner)
			active++;
		p->pr.recent_active = false;
	}
	return active >= raft_n_voters(r) / 2 + 1;
}

void raft_abort_leader_transfer(raft *r)
{
	r->lead_transferee = 0;
}

static void send_timeout_now(raft *r, uint64_t to)
{
	/* The transferee campaigns past every follower's lease promise. */
	r->lease_broken = true;
	RAFT_TRACE(r, TRACE_LEAD, "transfers leadership to %llu", (unsigned long long)to);
	raft_send(r, RAFT_MSG_TIMEOUT_NOW, to);
}

bool raft_self_removed(raft *r)
{
	raft_peer *self = raft_self(r);
	return !self || self->learner;
}

/* A leader that applied its own removal does not step down at once: the
 * others learn that the removal committed only from its commit index, and
 * until then they count its vote, which it refuses to any candidate whose
 * log is shorter than its own — an old configuration with no possible
 * leader (CORE_BUGS 5: a removal the removed node commits as the next
 * leader). So it keeps replicating (proposals and reads refused) until a
 * voter holds its whole log: that voter wins its vote under either
 * configuration. Then it sends TIMEOUT_NOW there and steps down; should the
 * message be lost, the voter still wins an election later. */
void raft_removed_leader_hand_over(raft *r)
{
	if (r->role != RAFT_LEADER || !raft_self_removed(r))
		return;
	raft_peer *to = NULL;
	for (size_t i = 0; i < r->n_peers && !to; i++) {
		raft_peer *p = &r->peers[i];
		if (p->id != r->id && !p->learner && p->pr.match == r->log.last)
			to = p;
	}
	if (!to && raft_n_voters(r) > 0)
		return;
	RAFT_TRACE(r, TRACE_LEAD, "removed from the configuration: steps down%s",
		   to ? ", handing over" : "");
	if (to)
		send_timeout_now(r, to->id);
	raft_become_follower(r, r->term, 0);
}

static void handle_transfer(raft *r, raft_peer *p)
{
	if (p->learner || p->id == r->id)
		return;
	if (r->lead_transferee != 0) {
		if (r->lead_transferee == p->id)
			return;
		raft_abort_leader_transfer(r);
	}
	/* The transfer should end within an election timeout. */
	r->election_elapsed = 0;
	r->lead_transferee = p->id;
	if (p->pr.match == r->log.last)
		send_timeout_now(r, p->id);
	else
		raft_send_append(r, p->id, true);
}

static void handle_append_resp(raft *r, raft_peer *p, const raft_msg *m)
{
	raft_progress *pr = &p->pr;
	pr->recent_active = true;
	if (m->reject) {
		/* Fast backtracking: the follower's hint names the last index
		 * whose term is <= the term of the entry we sent; skip every
		 * entry of our log whose term is above the follower's there. */
		uint64_t next_probe = m->reject_hint, t;
		if (m->log_term > 0)
			next_probe = raft_log_find_conflict_by_term(&r->log, m->reject_hint,
								    m->log_term, &t);
		RAFT_TRACE(r, TRACE_LOG, "%llu rejected %llu (hint %llu/%llu): probe from %llu",
			   (unsigned long long)p->id, (unsigned long long)m->index,
			   (unsigned long long)m->reject_hint, (unsigned long long)m->log_term,
			   (unsigned long long)next_probe + 1);
		if (raft_progress_maybe_decr_to(pr, m->index, next_probe)) {
			if (pr->state == RAFT_PROGRESS_REPLICATE)
				raft_progress_become_probe(pr);
			raft_send_append(r, p->id, true);
		}
		return;
	}
	bool old_paused = raft_progress_is_paused(pr);
	/* A probe answered at the match we already knew also settles where
	 * the follower is: start replicating (etcd). */
	bool settled = pr->state == RAFT_PROGRESS_PROBE && pr->match == m->index;
	if (!raft_progress_maybe_update(pr, m->index) && !settled)
		return;
	switch (pr->state) {
	case RAFT_PROGRESS_PROBE:
		/* A success below the probe in flight answers an older append
		 * (a late delivery): it raised match, but only the probe's
		 * reply says where to replicate from. Replicating from match
		 * would resend what the probe skipped — after a snapshot, the
		 * snapshot itself (Raft §7). */
		if (m->index + 1 < pr->next)
			break;
		raft_progress_become_replicate(pr);
		RAFT_TRACE(r, TRACE_PROG, "%llu replicating from %llu", (unsigned long long)p->id,
			   (unsigned long long)pr->next);
		break;
	case RAFT_PROGRESS_SNAPSHOT:
		if (pr->match + 1 >= raft_log_first_index(&r->log)) {
			raft_progress_become_probe(pr);
			raft_progress_become_replicate(pr);
			RAFT_TRACE(r, TRACE_PROG, "%llu caught up after snapshot at %llu",
				   (unsigned long long)p->id, (unsigned long long)pr->match);
		}
		break;
	case RAFT_PROGRESS_REPLICATE:
		raft_inflights_free_le(&pr->ins, m->index);
		break;
	}
	if (raft_maybe_commit(r))
		raft_bcast_append(r);
	else if (old_paused)
		raft_send_append(r, p->id, true);
	/* Pipeline whatever else the window allows. */
	while (raft_send_append(r, p->id, false))
		;
	if (p->id == r->lead_transferee && pr->match == r->log.last)
		send_timeout_now(r, p->id);
	raft_removed_leader_hand_over(r);
}

static void handle_heartbeat_resp(raft *r, raft_peer *p, const raft_msg *m)
{
	raft_progress *pr = &p->pr;
	pr->recent_active = true;
	pr->probe_sent = false;
	/* A full window with a silent follower: free one slot so appends
	 * resume (the follower is alive). */
	if (pr->state == RAFT_PROGRESS_REPLICATE && raft_inflights_full(&pr->ins))
		raft_inflights_free_first(&pr->ins);
	if (pr->match < r->log.last)
		raft_send_append(r, p->id, true);
	uint64_t sent;
	if (raft_read_only_decode_tick(m->context, m->context_len, &sent) && sent <= r->tick &&
	    sent + 1 > p->lease_tick)
		p->lease_tick = sent + 1;
	uint64_t round = raft_read_only_decode_round(m->context, m->context_len);
	if (round > p->read_acked && round <= r->ro.round) {
		p->read_acked = round;
		confirm_reads(r);
	}
}

static int propose(raft *r, const raft_msg *m)
{
	raft_entry *admitted;
	int rc = raft_leader_admit_conf_changes(r, m, &admitted);
	if (rc != 0)
		return rc;
	if (!admitted)
		return m->blob_data ? raft_append_entries_refs(r, m->entries, m->n_entries)
				    : raft_append_entries(r, m->entries, m->n_entries);
	rc = raft_append_entries(r, admitted, m->n_entries);
	free(admitted);
	return rc;
}

int raft_step_leader(raft *r, const raft_msg *m)
{
	switch (m->type) {
	case RAFT_MSG_BEAT:
		raft_bcast_heartbeat(r);
		return 0;
	case RAFT_MSG_CHECK_QUORUM:
		/* A removed leader waits for a voter to catch up however long
		 * it takes (raft_removed_leader_hand_over): it serves nothing. */
		if (!quorum_active(r) && !raft_self_removed(r)) {
			RAFT_TRACE(r, TRACE_LEAD, "steps down: no quorum active");
			raft_become_follower(r, r->term, 0);
		}
		return 0;
	case RAFT_MSG_PROP:
		if (m->n_entries == 0)
			return RAFT_EINVAL;
		if (raft_self_removed(r) || r->lead_transferee != 0) {
			RAFT_TRACE(r, TRACE_DROP, "drops proposal: %s",
				   r->lead_transferee ? "leader transfer" : "not a member");
			return RAFT_EPROPOSAL_DROPPED;
		}
		return propose(r, m);
	case RAFT_MSG_READ_INDEX:
		return handle_read_index(r, m);
	default:
		break;
	}
	raft_peer *p = raft_peer_find(r, m->from);
	if (!p)
		return 0;
	switch (m->type) {
	case RAFT_MSG_APP_RESP:
		handle_append_resp(r, p, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		handle_heartbeat_resp(r, p, m);
		break;
	case RAFT_MSG_SNAP_STATUS:
		if (p->pr.state != RAFT_PROGRESS_SNAPSHOT)
			break;
		RAFT_TRACE(r, TRACE_SNAP, "snapshot to %llu %s", (unsigned long long)p->id,
			   m->reject ? "failed" : "sent");
		if (m->reject)
			p->pr.pending_snapshot = 0;
		raft_progress_become_probe(&p->pr);
		/* Wait for the follower's reply (or a heartbeat) before
		 * probing, so the snapshot has a chance to be applied. */
		p->pr.probe_sent = true;
		break;
	case RAFT_MSG_UNREACHABLE:
		/* Pipelined appends are probably lost: probe. A snapshot in
		 * flight probably is too, and a transport that never reports
		 * snapshot status would otherwise leave the follower in
		 * SNAPSHOT state for good: count it as failed (worst case the
		 * snapshot is sent again). */
		if (p->pr.state == RAFT_PROGRESS_REPLICATE) {
			raft_progress_become_probe(&p->pr);
		} else if (p->pr.state == RAFT_PROGRESS_SNAPSHOT) {
			p->pr.pending_snapshot = 0;
			raft_progress_become_probe(&p->pr);
			p->pr.probe_sent = true;
		}
		RAFT_TRACE(r, TRACE_PROG, "%llu unreachable: probing", (unsigned long long)p->id);
		break;
	case RAFT_MSG_TRANSFER_LEADER:
		handle_transfer(r, p);
		break;
	default:
		break;
	}
	return 0;
}
