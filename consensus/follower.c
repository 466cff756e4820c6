/* follower.c — followers and candidates: AppendEntries, heartbeats, snapshots, forwarding, vote
 * counting. */
#include "raft_internal.h"

#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "quorum.h"

/* AppendEntries receiver (Figure 2, §5.3). */
static int handle_append(raft *r, const raft_msg *m)
{
	if (m->index < r->log.committed) {
		/* Everything up to our commit matches the leader's log
		 * (§5.4 Leader Completeness): say where we are. */
		raft_msg *resp = raft_send(r, RAFT_MSG_APP_RESP, m->from);
		if (resp)
			resp->index = r->log.committed;
		return 0;
	}
	uint64_t last_new;
	/* A received append's data is in shared blocks (codec_msg_decode):
	 * the log takes references, not copies. */
	int rc = (m->blob_data ? raft_log_maybe_append_refs
			       : raft_log_maybe_append)(&r->log, m->index, m->log_term, m->commit,
							m->entries, m->n_entries, &last_new);
	if (rc == 0) {
		raft_msg *resp = raft_send(r, RAFT_MSG_APP_RESP, m->from);
		if (resp)
			resp->index = last_new;
		return 0;
	}
	if (rc != RAFT_EINVAL)
		return rc;
	/* Reject with a hint (etcd findConflictByTerm): the last index at or
	 * below the probed one whose term is <= the leader's term there. The
	 * leader then skips a whole term of mismatching entries at once. */
	uint64_t hint = m->index < r->log.last ? m->index : r->log.last, hint_term;
	hint = raft_log_find_conflict_by_term(&r->log, hint, m->log_term, &hint_term);
	RAFT_TRACE(r, TRACE_LOG, "rejects append at %llu/%llu from %llu: hint %llu/%llu",
		   (unsigned long long)m->index, (unsigned long long)m->log_term,
		   (unsigned long long)m->from, (unsigned long long)hint,
		   (unsigned long long)hint_term);
	raft_msg *resp = raft_send(r, RAFT_MSG_APP_RESP, m->from);
	if (resp) {
		resp->index = m->index;
		resp->reject = true;
		resp->reject_hint = hint;
		resp->log_term = hint_term;
	}
	return 0;
}

static void handle_heartbeat(raft *r, const raft_msg *m)
{
	raft_log_commit_to(&r->log, m->commit);
	raft_msg *resp = raft_send(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
	if (resp)
		raft_msg_set_context(resp, m->context, m->context_len);
}

/* InstallSnapshot receiver: true when the log was replaced by snap. */
static bool restore(raft *r, const raft_snapshot *snap)
{
	if (snap->meta.index <= r->log.committed)
		return false;
	if (raft_log_match_term(&r->log, snap->meta.index, snap->meta.term)) {
		/* We hold the snapshot's last entry: keep the log (and any
		 * matching suffix after it) and just learn the commit. */
		RAFT_TRACE(r, TRACE_SNAP, "fast-forwards commit to snapshot %llu/%llu",
			   (unsigned long long)snap->meta.index,
			   (unsigned long long)snap->meta.term);
		raft_log_commit_to(&r->log, snap->meta.index);
		return false;
	}
	raft_snapshot *copy = calloc(1, sizeof(*copy));
	if (!copy)
		return false;
	if (raft_snapshot_copy(copy, snap) != 0) {
		free(copy);
		return false;
	}
	RAFT_TRACE(r, TRACE_SNAP, "restores snapshot %llu/%llu (commit was %llu)",
		   (unsigned long long)snap->meta.index, (unsigned long long)snap->meta.term,
		   (unsigned long long)r->log.committed);
	raft_log_restore(&r->log, copy);
	if (snap->meta.conf.n_voters > 0)
		raft_set_conf_state(r, &snap->meta.conf);
	return true;
}

static void handle_snapshot(raft *r, const raft_msg *m)
{
	if (!m->snapshot)
		return;
	bool restored = restore(r, m->snapshot);
	raft_msg *resp = raft_send(r, RAFT_MSG_APP_RESP, m->from);
	if (resp)
		resp->index = restored ? r->log.last : r->log.committed;
}

/* Forwards a proposal to the leader; proposals made between two Readies
 * share one message. Forwarded messages carry term 0: they are treated as
 * local at the leader (etcd). */
static int forward_proposal(raft *r, const raft_msg *m)
{
	raft_msg *last = r->n_msgs ? &r->msgs[r->n_msgs - 1] : NULL;
	/* One message holds entries of one kind: copies, or references to
	 * shared blocks (raft_propose_refs), which it then frees as such. */
	if (!last || last->type != RAFT_MSG_PROP || last->to != r->lead ||
	    last->blob_data != m->blob_data) {
		last = raft_send(r, RAFT_MSG_PROP, r->lead);
		if (!last)
			return RAFT_ENOMEM;
		last->term = 0;
		last->blob_data = m->blob_data;
	}
	raft_entry *p = realloc(last->entries, (last->n_entries + m->n_entries) * sizeof(*p));
	if (!p)
		return RAFT_ENOMEM;
	last->entries = p;
	for (size_t i = 0; i < m->n_entries; i++) {
		if (m->blob_data) {
			p[last->n_entries] = m->entries[i];
			raft_blob_ref(p[last->n_entries].data);
		} else {
			int rc = raft_entry_copy(&p[last->n_entries], &m->entries[i]);
			if (rc != 0)
				return rc;
		}
		last->n_entries++;
	}
	return 0;
}

/* Forwards a message as is (read index, transfer request) to the leader. */
static int forward(raft *r, const raft_msg *m)
{
	raft_msg copy;
	int rc = raft_msg_copy(&copy, m);
	if (rc != 0)
		return rc;
	raft_msg *f = raft_send(r, m->type, r->lead);
	if (!f) {
		raft_msg_free_contents(&copy);
		return RAFT_ENOMEM;
	}
	copy.to = r->lead;
	copy.term = 0;
	if (copy.from == 0)
		copy.from = r->id;
	*f = copy;
	return 0;
}

int raft_step_follower(raft *r, const raft_msg *m)
{
	switch (m->type) {
	case RAFT_MSG_PROP:
		if (r->lead == 0) {
			RAFT_TRACE(r, TRACE_DROP, "drops proposal: no leader");
			return RAFT_EPROPOSAL_DROPPED;
		}
		return forward_proposal(r, m);
	case RAFT_MSG_APP:
		r->election_elapsed = 0;
		r->lead = m->from;
		return handle_append(r, m);
	case RAFT_MSG_HEARTBEAT:
		r->election_elapsed = 0;
		r->lead = m->from;
		handle_heartbeat(r, m);
		return 0;
	case RAFT_MSG_SNAP:
		r->election_elapsed = 0;
		r->lead = m->from;
		handle_snapshot(r, m);
		return 0;
	case RAFT_MSG_TRANSFER_LEADER:
		/* The transferee is the message's from: only a request to make
		 * this node leader can be forwarded with us as its sender. */
		if (r->lead == 0 || (m->from != 0 && m->from != r->id)) {
			RAFT_TRACE(r, TRACE_DROP, "drops transfer request to %llu: %s",
				   (unsigned long long)m->from,
				   r->lead ? "not leader" : "no leader");
			return 0;
		}
		return forward(r, m);
	case RAFT_MSG_TIMEOUT_NOW:
		RAFT_TRACE(r, TRACE_LEAD, "campaigns at once: leader transfer from %llu",
			   (unsigned long long)m->from);
		raft_hup(r, true);
		return 0;
	case RAFT_MSG_READ_INDEX:
		if (r->lead == 0) {
			RAFT_TRACE(r, TRACE_DROP, "drops read index: no leader");
			return RAFT_EPROPOSAL_DROPPED;
		}
		if (m->from != 0 && m->from != r->id) {
			/* Forwarded to us while we were leader: the answer
			 * would have to come back through us, so drop it (the
			 * asker retries); every message we send is from us. */
			RAFT_TRACE(r, TRACE_DROP, "drops read index of %llu: not leader",
				   (unsigned long long)m->from);
			return 0;
		}
		return forward(r, m);
	case RAFT_MSG_READ_INDEX_RESP:
		return raft_add_read_state(r, m->index, m->context, m->context_len);
	default:
		return 0;
	}
}

int raft_step_candidate(raft *r, const raft_msg *m)
{
	raft_msg_type my_resp =
	    r->role == RAFT_PRE_CANDIDATE ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP;
	switch (m->type) {
	case RAFT_MSG_PROP:
	case RAFT_MSG_READ_INDEX:
		RAFT_TRACE(r, TRACE_DROP, "drops %s: no leader", raft_msg_type_name(m->type));
		return RAFT_EPROPOSAL_DROPPED;
	case RAFT_MSG_APP:
		raft_become_follower(r, m->term, m->from);
		return handle_append(r, m);
	case RAFT_MSG_HEARTBEAT:
		raft_become_follower(r, m->term, m->from);
		handle_heartbeat(r, m);
		return 0;
	case RAFT_MSG_SNAP:
		raft_become_follower(r, m->term, m->from);
		handle_snapshot(r, m);
		return 0;
	default:
		break;
	}
	if (m->type != my_resp)
		return 0;
	/* The pre-vote / vote tally: the real election follows a won
	 * pre-vote; a lost one returns to follower (§5.2). */
	switch (raft_poll(r, m->from, m->type, !m->reject)) {
	case RAFT_VOTE_WON:
		if (r->role == RAFT_PRE_CANDIDATE)
			raft_campaign_type(r, RAFT_MSG_VOTE, false);
		else
			raft_become_leader(r);
		break;
	case RAFT_VOTE_LOST:
		raft_become_follower(r, r->term, 0);
		break;
	case RAFT_VOTE_PENDING:
		break;
	}
	return 0;
}
