/* node_held.c — forwarded proposals held at a leader's unsaved bound (one
 * message per follower), taking turns with the leader's own held proposals
 * once saves make room (README-node.md, "Bounded memory"; node.fwd_fair). */
#include "node_internal.h"
#include "raft.h"
#include "runtime_log.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* Appends copies of m's entries to the held message h, if its entry
 * data stays within an eighth of the unsaved bound (and one message's
 * bytes), so what is held beside the bound stays small beside it: 0, or
 * -1 (h unchanged). */
static int held_append(node *n, raft_msg *h, const raft_msg *m)
{
	uint64_t bytes = 0, most = n->cfg->max_msg_bytes;
	raft_entry *e;

	if (n->cfg->unsaved_bytes && n->cfg->unsaved_bytes / 8 < most)
		most = n->cfg->unsaved_bytes / 8;
	for (size_t i = 0; i < h->n_entries; i++)
		bytes += h->entries[i].len;
	for (size_t i = 0; i < m->n_entries; i++)
		bytes += m->entries[i].len;
	if (bytes > most)
		return -1;
	e = realloc(h->entries, (h->n_entries + m->n_entries) * sizeof(*e));
	if (!e)
		return -1;
	h->entries = e;
	for (size_t i = 0; i < m->n_entries; i++) {
		if (raft_entry_copy(&e[h->n_entries + i], &m->entries[i]) != 0) {
			for (size_t k = 0; k < i; k++)
				raft_entry_free_contents(&e[h->n_entries + k]);
			return -1;
		}
	}
	h->n_entries += m->n_entries;
	return 0;
}

/* Loop thread: forwarded proposals that found this leader at its unsaved
 * bound are kept, one message per peer (later ones from the same peer
 * joined to it, see held_append), and stepped once a save makes room
 * (node_propose_held); beyond that they are dropped, and the forwarder
 * proposes them again after its retry interval. Dropping them all, as
 * before, starved a follower while the leader's own held proposals took
 * every save's room the moment it was reaped: a forwarded message only
 * arrives later, and found the leader full each time (node.fwd_fair). */
void node_hold_forwarded(node *n, const raft_msg *m)
{
	raft_msg *h = NULL;
	bool kept = false;

	for (size_t i = 0; i < n->n_held_fwd; i++)
		if (n->held_fwd[i].from == m->from)
			h = &n->held_fwd[i];
	if (h)
		kept = held_append(n, h, m) == 0;
	else if (n->n_held_fwd < CONFIG_MAX_PEERS &&
		 raft_msg_copy(&n->held_fwd[n->n_held_fwd], m) == 0) {
		n->n_held_fwd++;
		kept = true;
	}
	if (kept) {
		uint64_t held = atomic_fetch_add(&n->held_props, 1) + 1;

		if (held % 1000 == 1)
			rlog_write(RLOG_INFO,
				   "proposals from %llu held: %llu entries (%llu bytes) not yet "
				   "saved here (%llu messages held so far)",
				   (unsigned long long)m->from,
				   (unsigned long long)(n->unsaved_ents + n->new_ents),
				   (unsigned long long)(n->unsaved_bytes + n->new_bytes),
				   (unsigned long long)held);
		return;
	}
	if (n->dropped_props++ % 1000 == 0)
		rlog_write(RLOG_INFO,
			   "proposals from %llu dropped: %llu entries (%llu bytes) not yet "
			   "saved here (%llu dropped so far)",
			   (unsigned long long)m->from,
			   (unsigned long long)(n->unsaved_ents + n->new_ents),
			   (unsigned long long)(n->unsaved_bytes + n->new_bytes),
			   (unsigned long long)n->dropped_props);
}

/* Steps the held forwarded messages, in arrival order, while there is
 * room; those that find none stay held. Not leading any more: dropped
 * (their forwarders propose them again to the new leader). */
static void step_held_forwarded(node *n)
{
	size_t i = 0, kept = 0;

	for (; i < n->n_held_fwd; i++) {
		if (node_unsaved_full(n)) {
			n->held_fwd[kept++] = n->held_fwd[i];
			continue;
		}
		if (raft_is_leader(n->r))
			node_step_forwarded(n, &n->held_fwd[i]);
		raft_msg_free_contents(&n->held_fwd[i]);
	}
	n->n_held_fwd = kept;
}

/* Proposals of this node's own held back while the bound was reached. */
static void propose_held_own(node *n)
{
	proposal *p;

	if (!n->held_seq || node_unsaved_full(n))
		return;
	pthread_mutex_lock(&n->mu);
	for (p = n->pend_head; p && p->seq < n->held_seq; p = p->next)
		;
	n->held_seq = 0;
	if (p)
		node_resend_from(n, p, node_now_ms());
	pthread_mutex_unlock(&n->mu);
}

/* What was held back while this leader's unsaved entries were over the
 * bound goes once saves have made room (or when it no longer leads: its
 * own proposals forwarded to the new leader): its own proposals, in seq
 * order, and the forwarded messages, the two taking turns at going
 * first, so each gets the room of every other reap at least. */
void node_propose_held(node *n)
{
	if (!n->held_seq && !n->n_held_fwd)
		return;
	if (node_unsaved_full(n))
		return;
	if (n->fwd_first) {
		step_held_forwarded(n);
		propose_held_own(n);
	} else {
		propose_held_own(n);
		step_held_forwarded(n);
	}
	n->fwd_first = !n->fwd_first;
}

void node_held_free(node *n)
{
	for (size_t i = 0; i < n->n_held_fwd; i++)
		raft_msg_free_contents(&n->held_fwd[i]);
	n->n_held_fwd = 0;
}
