/* ready.c — Ready/advance: what the caller must persist, send and apply, and the status report. */
#include "raft_internal.h"

#include <stdlib.h>
#include <string.h>

static bool hard_state_changed(const raft *r)
{
	return r->term != r->prev_hs.term || r->vote != r->prev_hs.vote ||
	       r->log.committed != r->prev_hs.commit;
}

bool raft_has_ready(const raft *r)
{
	if (r->lead != r->prev_lead || r->role != r->prev_role)
		return true;
	if (hard_state_changed(r) || r->log.pending_snap || r->log.last > r->log.handed)
		return true;
	if (r->n_msgs || r->n_rs)
		return true;
	if (r->role == RAFT_LEADER && (r->need_bcast || r->ro.need_round))
		return true;
	return !(r->limit_on && r->committed_limit == 0) && raft_log_has_next_committed(&r->log);
}

void raft_limit_committed(raft *r, uint64_t max_bytes)
{
	r->limit_on = max_bytes != UINT64_MAX;
	r->committed_limit = max_bytes;
}

/* Copies n entry structs (not their data) into a reusable buffer. */
static const raft_entry *shallow_copy(raft_entry **buf, size_t *cap, const raft_entry *src,
				      size_t n)
{
	if (n == 0)
		return NULL;
	if (n > *cap) {
		raft_entry *p = realloc(*buf, n * sizeof(*p));
		if (!p)
			return NULL;
		*buf = p;
		*cap = n;
	}
	memcpy(*buf, src, n * sizeof(*src));
	return *buf;
}

/* Sends what was batched since the last Ready: appends for proposals
 * (one message per follower, more only if the byte cap splits them) and
 * the heartbeat round for queued reads. */
static void flush(raft *r)
{
	if (r->role != RAFT_LEADER)
		return;
	if (r->need_bcast) {
		r->need_bcast = false;
		for (size_t i = 0; i < r->n_peers; i++) {
			uint64_t id = r->peers[i].id;
			if (id == r->id)
				continue;
			while (raft_send_append(r, id, false))
				;
		}
	}
	raft_flush_read_round(r);
}

void raft_ready_get(raft *r, raft_ready *rd)
{
	/* A Ready not advanced is superseded. */
	raft_release_ready(r);
	flush(r);
	memset(rd, 0, sizeof(*rd));

	if (r->lead != r->prev_lead || r->role != r->prev_role) {
		rd->has_soft_state = true;
		r->prev_lead = r->lead;
		r->prev_role = r->role;
	}
	rd->leader = r->lead;
	rd->role = r->role;

	if (hard_state_changed(r)) {
		rd->has_hard_state = true;
		rd->hard_state =
		    (raft_hard_state){.term = r->term, .vote = r->vote, .commit = r->log.committed};
		rd->must_sync = r->term != r->prev_hs.term || r->vote != r->prev_hs.vote;
		r->prev_hs = rd->hard_state;
	}
	rd->snapshot = r->log.pending_snap;
	if (rd->snapshot)
		rd->must_sync = true; /* our reply to the leader says we have it */

	size_t n;
	const raft_entry *ents = raft_log_unstable(&r->log, &n);
	rd->entries = shallow_copy(&r->rd_ents, &r->cap_rd_ents, ents, n);
	rd->n_entries = rd->entries ? n : 0;
	if (rd->n_entries)
		rd->must_sync = true;

	raft_entry *owned = NULL;
	const raft_entry *committed = NULL;
	uint64_t max_committed = r->limit_on && r->committed_limit < RAFT_MAX_COMMITTED_BYTES
				     ? r->committed_limit
				     : RAFT_MAX_COMMITTED_BYTES;
	if (max_committed &&
	    raft_log_next_committed(&r->log, max_committed, &committed, &n, &owned) == 0) {
		if (owned) {
			r->rd_committed_owned = owned;
			r->rd_n_committed_owned = n;
			rd->committed = owned;
			rd->n_committed = n;
		} else {
			rd->committed =
			    shallow_copy(&r->rd_committed, &r->cap_rd_committed, committed, n);
			rd->n_committed = rd->committed ? n : 0;
			rd->committed_shared = true; /* the window's entries */
		}
	}

	/* The outbox becomes the Ready's; the Ready's old (emptied) buffer
	 * becomes the outbox. */
	raft_msg *mbuf = r->rd_msgs;
	size_t mcap = r->cap_rd_msgs;
	r->rd_msgs = r->msgs;
	r->cap_rd_msgs = r->cap_msgs;
	r->rd_n_msgs = r->n_msgs;
	r->msgs = mbuf;
	r->cap_msgs = mcap;
	r->n_msgs = 0;
	rd->msgs = r->rd_msgs;
	rd->n_msgs = r->rd_n_msgs;

	raft_read_state *rbuf = r->rd_rs;
	size_t rcap = r->cap_rd_rs;
	r->rd_rs = r->rs;
	r->cap_rd_rs = r->cap_rs;
	r->rd_n_rs = r->n_rs;
	r->rs = rbuf;
	r->cap_rs = rcap;
	r->n_rs = 0;
	rd->read_states = r->rd_rs;
	rd->n_read_states = r->rd_n_rs;

	RAFT_TRACE(r, TRACE_PERS, "ready: %zu entries, %zu committed, %zu msgs%s%s", rd->n_entries,
		   rd->n_committed, rd->n_msgs, rd->has_hard_state ? ", hard state" : "",
		   rd->snapshot ? ", snapshot" : "");
}

void raft_advance(raft *r, const raft_ready *rd)
{
	if (rd->snapshot) {
		uint64_t idx = rd->snapshot->meta.index;
		raft_log_stable_snap_to(&r->log, idx);
		raft_log_applied_to(&r->log, idx);
	}
	if (rd->n_entries) {
		const raft_entry *e = &rd->entries[rd->n_entries - 1];
		raft_log_handed_to(&r->log, e->index, e->term);
		/* Synchronous storage: the caller wrote them before advancing. */
		if (!r->async_storage)
			raft_persisted(r, e->index, e->term);
	}
	if (rd->n_committed)
		raft_log_applied_to(&r->log, rd->committed[rd->n_committed - 1].index);
	raft_release_ready(r);
	raft_log_release(&r->log);
}

void raft_persisted(raft *r, uint64_t index, uint64_t term)
{
	raft_log_stable_to(&r->log, index, term);
	if (r->role != RAFT_LEADER)
		return;
	/* Figure 2 / thesis §10.2.1: the leader is one of the replicas that
	 * make an entry committed, so it counts itself only for what is on
	 * its own disk, like any follower's acknowledgement (etcd:
	 * MsgStorageAppendResp to self). Everything up to stable is durable:
	 * saves complete in order, and an entry replaced meanwhile never
	 * moved stable (raft_log_stable_to checks its term). */
	raft_peer *self = raft_self(r);
	if (self && !self->learner && raft_progress_maybe_update(&self->pr, r->log.stable) &&
	    raft_maybe_commit(r))
		raft_bcast_append(r);
}

bool raft_msg_after_save(const raft_msg *m)
{
	switch (m->type) {
	case RAFT_MSG_PROP:
	case RAFT_MSG_READ_INDEX:
	case RAFT_MSG_READ_INDEX_RESP:
	case RAFT_MSG_HEARTBEAT_RESP:
		return false;
	default:
		return true;
	}
}

void raft_get_status(const raft *r, raft_status *st)
{
	memset(st, 0, sizeof(*st));
	st->id = r->id;
	st->role = r->role;
	st->term = r->term;
	st->vote = r->vote;
	st->leader = r->lead;
	st->commit = r->log.committed;
	st->applied = r->log.applied;
	st->first_index = raft_log_first_index(&r->log);
	st->last_index = r->log.last;
	/* A received snapshot replaced the log, and is not saved yet. */
	st->persisted = r->log.pending_snap ? 0 : r->log.stable;
	if (r->role != RAFT_LEADER)
		return;
	for (size_t i = 0; i < r->n_peers && st->n_peers < 16; i++) {
		const raft_peer *p = &r->peers[i];
		st->peers[st->n_peers++] = (raft_peer_status){
		    .id = p->id,
		    .match = p->pr.match,
		    .next = p->pr.next,
		    .state = p->pr.state,
		    .recent_active = p->pr.recent_active,
		    .learner = p->learner,
		};
	}
}
