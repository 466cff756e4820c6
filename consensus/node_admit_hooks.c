/* node_admit_hooks.c — where the node runtime (node.c) meets a leader's
 * admission of big proposals (node_admit.h): its own and forwarded
 * proposals offered, held ones released as voters save, voters whose disk
 * hangs left out (consensus/README-node.md, "Admission of big proposals"). */
#include <errno.h>
#include <stdio.h>

#include "envelope.h"
#include "node_admit.h"
#include "node_internal.h"
#include "raft.h"
#include "runtime_log.h"

/* Held proposals of all senders together, at most: the sum of four mounts'
 * windows (fs/fuse_write.c, 64 MiB each). Beyond, a proposal is not kept
 * (forwarded or this node's own): its sender proposes it again after
 * retry_ms. */
#define ADMIT_HELD_MAX (256ull << 20)
/* ...and of one sender: one mount's window, so a single sender cannot take
 * the room of the other three. */
#define ADMIT_HELD_CLIENT_MAX (ADMIT_HELD_MAX / 4)

/* Loop thread: the admission of this node's leadership, or NULL when it
 * does not lead or admission is off. What an earlier term held and
 * counted is forgotten (its log may have been cut; senders retry). */
static node_admit *admission(node *n)
{
	if (!node_admit_on(n->adm) || !raft_is_leader(n->r))
		return NULL;
	if (node_admit_term(n->adm) != raft_term(n->r))
		node_admit_reset(n->adm, raft_term(n->r));
	return n->adm;
}

/* The client and seq of an entry to offer; false for one that keeps no
 * order (no envelope, a membership change): it passes. */
static bool admit_key(const raft_entry *e, envelope *env)
{
	const uint8_t *cmd;
	size_t cmd_len;

	return e->type == RAFT_ENTRY_NORMAL &&
	       envelope_decode(e->data, e->len, env, &cmd, &cmd_len) == 0;
}

/* node_admit_propose_fn: a held proposal, released, goes into the log —
 * unless this leader's own unsaved entries reached their bound: then it
 * stays held (first in its queue) and release stops until a save makes
 * room, so admission exceeds the unsaved bound by one entry at most, as
 * every other way into the log does (README-node.md, "Bounded memory"). */
static uint64_t admit_propose(void *arg, uint64_t client, uint64_t seq, const uint8_t *data,
			      size_t len)
{
	node *n = arg;
	uint64_t index;

	if (node_unsaved_full(n))
		return 0;
	if (raft_propose(n->r, data, len, &index, NULL) < 0 || !index)
		return 0;
	node_unsaved_add(n, len, 1);
	RLOG(RLOG_CLNT, "admitted seq %llu of %016llx (%zu bytes) at %llu", (unsigned long long)seq,
	     (unsigned long long)client, len, (unsigned long long)index);
	return index;
}

/* Loop thread: proposals forwarded to this leader, offered one by one
 * (those that pass go into the log in order and are reported placed, the
 * others are held or dropped). False when the message may go to the core
 * whole: this node does not admit, or no entry is big and admission has
 * nothing held or counted (else a small one is reported too: it may be a
 * lower seq going in after a big one of its client, node_admit_placed). */
bool node_admission_forwarded(node *n, const raft_msg *m)
{
	node_admit *a = admission(n);
	bool whole = true;
	envelope env;

	if (!a)
		return false;
	for (size_t i = 0; i < m->n_entries && whole; i++)
		whole = m->entries[i].len < n->cfg->admit_entry_bytes;
	if (whole && !node_admit_busy(a))
		return false;
	for (size_t i = 0; i < m->n_entries; i++) {
		const raft_entry *e = &m->entries[i];
		raft_msg one = *m;

		if (!admit_key(e, &env))
			env.client = env.seq = env.min_pending = 0; /* keeps no order */
		else if (node_admit_offer(a, env.client, env.seq, env.min_pending, e->data,
					  e->len) != NODE_ADMIT_PASS)
			continue;
		one.entries = (raft_entry *)e;
		one.n_entries = 1;
		if (raft_step(n->r, &one) < 0 || !raft_is_leader(n->r))
			continue;
		node_unsaved_add(n, e->len, 1);
		node_admit_placed(a, env.client, env.seq, env.min_pending, raft_last_index(n->r),
				  e->len);
	}
	return true;
}

/* A voter whose log trails the commit index by more entries than this is
 * catching up (restarted, or slow for a while): admission does not wait
 * for it. One that keeps up trails by a few entries at most (the bound's
 * worth of big ones and the small ones between them). */
#define ADMIT_LAG_ENTRIES 64

/* Loop thread: the record of peer id's match, or NULL if it has none. */
static struct admit_peer *admit_peer_find(node *n, uint64_t id)
{
	for (size_t i = 0; i < n->n_adm_peer; i++)
		if (n->adm_peer[i].id == id)
			return &n->adm_peer[i];
	return NULL;
}

/* The record of peer id's match (a new one, or NULL when the table is
 * full: that peer is then never left out for being stuck). */
static struct admit_peer *admit_peer_of(node *n, uint64_t id)
{
	struct admit_peer *a = admit_peer_find(n, id);

	if (a)
		return a;
	if (n->n_adm_peer == CONFIG_MAX_PEERS)
		return NULL;
	n->adm_peer[n->n_adm_peer] = (struct admit_peer){.id = id, .match = UINT64_MAX};
	return &n->adm_peer[n->n_adm_peer++];
}

/* Loop thread, each tick while admission is on and this node leads: notes
 * when each peer's match last moved, or last had nothing outstanding past
 * it (an idle follower is not stuck). A new term starts afresh: matches
 * are the new leader's to learn. */
static void admit_track(node *n, uint64_t now)
{
	raft_status st;

	raft_get_status(n->r, &st);
	if (n->adm_term != st.term) {
		n->n_adm_peer = 0;
		n->adm_term = st.term;
	}
	for (size_t i = 0; i < st.n_peers; i++) {
		const raft_peer_status *p = &st.peers[i];
		struct admit_peer *a = admit_peer_of(n, p->id);

		if (a && (a->match != p->match || p->match >= st.last_index)) {
			a->match = p->match;
			a->moved_ms = now;
		}
	}
}

/* Whether peer p's match has stood still for an election timeout with
 * entries outstanding past it: its disk hangs (a follower answers
 * heartbeats at once, without waiting for its saves, so it stays recent
 * active and replicating while its match freezes). Counted in time, not
 * entries: while admission holds big entries back, the commit index
 * moves only a few entries past such a voter, never ADMIT_LAG_ENTRIES. */
static bool admit_stuck(node *n, const raft_peer_status *p, uint64_t now)
{
	const struct admit_peer *a;
	uint64_t timeout = (uint64_t)n->cfg->election_ticks * n->cfg->tick_ms;

	if (n->adm_term != raft_term(n->r))
		return false;
	a = admit_peer_find(n, p->id);
	return a && a->match == p->match && now - a->moved_ms > timeout;
}

/* Whether admission waits for voter p's saves: one that keeps up (see
 * admit_done). */
static bool admit_waits_for(node *n, const raft_status *st, const raft_peer_status *p, uint64_t now)
{
	return p->id != st->id && !p->learner && p->recent_active &&
	       p->state == RAFT_PROGRESS_REPLICATE && p->match + ADMIT_LAG_ENTRIES >= st->commit &&
	       !admit_stuck(n, p, now);
}

/* The index up to which big entries stop counting: committed, and saved
 * by every voter that keeps up (recently active, replicating, within
 * ADMIT_LAG_ENTRIES of the commit, its match moving) — not only by a
 * quorum: a small command waits also for its own node's save of what came
 * before it, and its node may be the slower follower. A voter that is
 * down, catching up or whose disk hangs does not hold admission back: a
 * minority node must not stop the cluster's big writes. */
static uint64_t admit_done(node *n, const raft_status *st, uint64_t now)
{
	uint64_t done = st->commit;

	for (size_t i = 0; i < st->n_peers; i++) {
		const raft_peer_status *p = &st->peers[i];

		if (p->match < done && admit_waits_for(n, st, p, now))
			done = p->match;
	}
	return done;
}

/* Loop thread, each Ready: big entries committed since make room for held
 * proposals, released round robin among senders. A node that no longer
 * leads forgets them (their senders propose them again to the new
 * leader). */
void node_admission_ready(node *n)
{
	raft_status st;

	if (!node_admit_busy(n->adm))
		return;
	if (!admission(n)) {
		node_admit_reset(n->adm, 0);
		return;
	}
	if (node_unsaved_full(n))
		return;
	raft_get_status(n->r, &st);
	node_admit_release(n->adm, admit_done(n, &st, node_now_ms()), admit_propose, n);
}

/* At stop, if this node ever held or dropped a proposal: what admission
 * did. */
void node_admission_report(node *n)
{
	node_admit_stats st;

	node_admit_get_stats(n->adm, &st);
	if (st.n_held || st.n_resent)
		rlog_write(RLOG_INFO,
			   "admission: %llu proposals held (at most %.1f MiB at once), %llu "
			   "released, resends dropped: %llu of held ones, %llu of ones in the log; "
			   "%llu over the cap (and %llu behind those), %llu forgotten with a "
			   "leadership; at most %.1f MiB of big entries outstanding (not yet saved "
			   "by every voter that keeps up)",
			   (unsigned long long)st.n_held, st.held_bytes_max / 1048576.0,
			   (unsigned long long)st.n_released, (unsigned long long)st.n_dup,
			   (unsigned long long)st.n_resent, (unsigned long long)st.n_full,
			   (unsigned long long)st.n_behind, (unsigned long long)st.n_forgotten,
			   st.outstanding_max / 1048576.0);
}

void node_admission_tick(node *n, uint64_t now)
{
	if (admission(n))
		admit_track(n, now);
}

bool node_admission_own(node *n, uint64_t seq, uint64_t min_pending, const void *data,
			size_t len)
{
	node_admit *a = admission(n);

	return !a || node_admit_offer(a, n->client_id, seq, min_pending, data, len) ==
			     NODE_ADMIT_PASS;
}

void node_admission_placed(node *n, uint64_t seq, uint64_t min_pending, uint64_t index,
			   size_t len)
{
	node_admit *a = admission(n);

	if (a)
		node_admit_placed(a, n->client_id, seq, min_pending, index, len);
}

int node_admission_init(node *n)
{
	const node_config *c = n->cfg;

	return node_admit_new(&(node_admit_limits){c->admit_bytes, c->admit_entry_bytes,
						   ADMIT_HELD_MAX, ADMIT_HELD_CLIENT_MAX},
			      &n->adm);
}

void node_admission_status(node *n, const raft_status *st, Transportpb__AdmitStatus *as)
{
	uint64_t now = node_now_ms();
	node_admit_stats a;

	transportpb__admit_status__init(as);
	node_admit_get_stats(n->adm, &a);
	as->bound = n->cfg->admit_bytes;
	as->outstanding = a.outstanding;
	as->held = a.held;
	as->held_bytes = a.held_bytes;
	as->n_held = a.n_held;
	as->n_released = a.n_released;
	as->n_dup = a.n_dup;
	as->n_resent = a.n_resent;
	as->n_full = a.n_full;
	as->n_behind = a.n_behind;
	as->n_forgotten = a.n_forgotten;
	as->held_bytes_max = a.held_bytes_max;
	as->outstanding_max = a.outstanding_max;
	if (!admission(n))
		return;
	/* The voters behind the commit that admit_done does not wait for
	 * (down, catching up, a hung disk): big writes go at the pace of the
	 * others, and such a voter's own mount waits for its apply. */
	for (size_t i = 0; i < st->n_peers; i++) {
		const raft_peer_status *p = &st->peers[i];

		if (p->id != st->id && !p->learner && p->match < st->commit &&
		    !admit_waits_for(n, st, p, now))
			as->stalled_voters++;
	}
}
