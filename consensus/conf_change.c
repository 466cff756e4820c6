/* conf_change.c — membership changes one server at a time (Raft thesis §4.1). */
#include "raft_internal.h"

#include <stdlib.h>
#include <string.h>

/* Same numbering as raft_conf_change_type in codec.h (raftpb.ConfChangeType). */
enum { CONF_ADD_NODE = 0, CONF_REMOVE_NODE = 1, CONF_ADD_LEARNER = 2 };

int raft_propose_conf_change(raft *r, const void *data, size_t len, uint64_t *index, uint64_t *term)
{
	if (index)
		*index = 0;
	if (term)
		*term = 0;
	if (len > UINT32_MAX)
		return RAFT_EINVAL;
	raft_entry e = {
	    .type = RAFT_ENTRY_CONF_CHANGE, .len = (uint32_t)len, .data = (uint8_t *)data};
	raft_msg m = {.type = RAFT_MSG_PROP, .from = r->id, .entries = &e, .n_entries = 1};
	int rc = raft_step(r, &m);
	if (rc == 0 && r->role == RAFT_LEADER) {
		if (index)
			*index = r->log.last;
		if (term)
			*term = r->term;
	}
	return rc;
}

int raft_leader_admit_conf_changes(raft *r, const raft_msg *m, raft_entry **admitted)
{
	*admitted = NULL;
	size_t n_conf = 0;
	for (size_t i = 0; i < m->n_entries; i++)
		n_conf += m->entries[i].type == RAFT_ENTRY_CONF_CHANGE;
	if (n_conf == 0)
		return 0;
	bool local = m->from == 0 || m->from == r->id;
	raft_entry *ents = malloc(m->n_entries * sizeof(*ents));
	if (!ents)
		return RAFT_ENOMEM;
	memcpy(ents, m->entries, m->n_entries * sizeof(*ents));
	for (size_t i = 0; i < m->n_entries; i++) {
		if (ents[i].type != RAFT_ENTRY_CONF_CHANGE)
			continue;
		/* §4.1: the next change may start only once the previous one
		 * is applied here (its configuration is in effect). */
		if (r->pending_conf_index > r->log.applied) {
			RAFT_TRACE(r, TRACE_DROP,
				   "refuses conf change: one pending at %llu (applied %llu)",
				   (unsigned long long)r->pending_conf_index,
				   (unsigned long long)r->log.applied);
			if (local && m->n_entries == 1) {
				free(ents);
				return RAFT_EPROPOSAL_DROPPED;
			}
			/* Inside a forwarded batch: keep the slot, drop the change. */
			ents[i] = (raft_entry){.type = RAFT_ENTRY_NORMAL};
			continue;
		}
		r->pending_conf_index = r->log.last + 1 + i;
	}
	*admitted = ents;
	return 0;
}

static int fill_conf_state(const raft *r, raft_conf_state *cs)
{
	memset(cs, 0, sizeof(*cs));
	size_t nv = raft_n_voters(r), nl = r->n_peers - nv;
	cs->voters = nv ? malloc(nv * sizeof(uint64_t)) : NULL;
	cs->learners = nl ? malloc(nl * sizeof(uint64_t)) : NULL;
	if ((nv && !cs->voters) || (nl && !cs->learners)) {
		raft_conf_state_free_contents(cs);
		return RAFT_ENOMEM;
	}
	for (size_t i = 0; i < r->n_peers; i++) {
		if (r->peers[i].learner)
			cs->learners[cs->n_learners++] = r->peers[i].id;
		else
			cs->voters[cs->n_voters++] = r->peers[i].id;
	}
	return 0;
}

static void remove_peer(raft *r, uint64_t id)
{
	raft_peer *p = raft_peer_find(r, id);
	if (!p)
		return;
	raft_progress_destroy(&p->pr);
	size_t i = (size_t)(p - r->peers);
	memmove(&r->peers[i], &r->peers[i + 1], (r->n_peers - i - 1) * sizeof(*p));
	r->n_peers--;
}

int raft_apply_conf_change(raft *r, int type, uint64_t node_id, raft_conf_state *cs)
{
	if (cs)
		memset(cs, 0, sizeof(*cs));
	if (node_id == 0)
		return RAFT_EINVAL;
	raft_peer *p = raft_peer_find(r, node_id);
	int rc = 0;
	switch (type) {
	case CONF_ADD_NODE:
	case CONF_ADD_LEARNER: {
		bool learner = type == CONF_ADD_LEARNER;
		if (p) {
			p->learner = learner;
			break;
		}
		rc = raft_add_peer(r, node_id, learner);
		p = raft_peer_find(r, node_id);
		/* A new member counts as active, or check-quorum could
		 * depose the leader before it ever answered. */
		if (rc == 0 && p)
			p->pr.recent_active = true;
		break;
	}
	case CONF_REMOVE_NODE:
		remove_peer(r, node_id);
		break;
	default:
		return RAFT_EINVAL;
	}
	if (rc != 0)
		return rc;
	RAFT_TRACE(r, TRACE_LEAD, "conf change applied: %s %llu, %zu voters",
		   type == CONF_ADD_NODE      ? "add"
		   : type == CONF_ADD_LEARNER ? "add learner"
					      : "remove",
		   (unsigned long long)node_id, raft_n_voters(r));
	if (r->role == RAFT_LEADER) {
		raft_peer *self = raft_self(r);
		if (!self || self->learner) {
			/* Removed (or demoted) leader: it hands over once a
			 * voter holds its whole log (leader.c). */
			raft_abort_leader_transfer(r);
			raft_removed_leader_hand_over(r);
		} else {
			if (r->lead_transferee && !raft_peer_find(r, r->lead_transferee))
				raft_abort_leader_transfer(r);
			/* The quorum changed: something may commit now. */
			if (raft_maybe_commit(r))
				raft_bcast_append(r);
			/* Start probing a new member now, not at the next beat. */
			if (type != CONF_REMOVE_NODE)
				raft_send_append(r, node_id, true);
		}
	}
	return cs ? fill_conf_state(r, cs) : 0;
}
