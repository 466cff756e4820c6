/* node.c — the node runtime: loop thread (core, store, transport), apply
 * thread, proposal and read-barrier bookkeeping, client requests. */
#include "node.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "blob.h"
#include "node_admit.h"
#include "node_internal.h"
#include "node_members.h"
#include "raft.h"
#include "runtime_log.h"
#include "snapshot_stream.h"
#include "store.h"
#include "transport.h"

const char *node_strerror(int code)
{
	switch (code) {
	case 0:
		return "ok";
	case NODE_ENOLEADER:
		return "no leader";
	case NODE_ELEADERLOST:
		return "leadership lost";
	case NODE_ETIMEOUT:
		return "timed out";
	case NODE_ESTOPPED:
		return "node stopping";
	case NODE_EFAULT:
		return "state machine failed on this node";
	case NODE_ENOMEM:
		return "out of memory";
	case NODE_E2BIG:
		return "command too large";
	}
	if (MEMBER_IS_ERROR(code))
		return node_members_strerror(code);
	return raft_strerror(code);
}

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000;
}

uint64_t node_now_ms(void)
{
	return now_ms();
}

/* ---- inbox (any thread -> loop thread) ---- */

/* Appends o to the inbox and wakes the loop; n->mu must be held. The wake-up
 * is sent under the lock, so it never races with the loop closing the
 * handle; once closed, the loop thread drains the inbox on exit. */
void node_inbox_push_locked(node *n, op *o)
{
	o->next = NULL;
	if (n->inbox_tail)
		n->inbox_tail->next = o;
	else
		n->inbox_head = o;
	n->inbox_tail = o;
	if (!n->async_closed)
		uv_async_send(&n->async);
}

/* Wakes the loop thread from another thread: it runs its inbox, takes
 * back finished saves and releases committed entries. */
static void wake_loop(node *n)
{
	pthread_mutex_lock(&n->mu);
	if (!n->async_closed)
		uv_async_send(&n->async);
	pthread_mutex_unlock(&n->mu);
}

static int post(node *n, op *o)
{
	pthread_mutex_lock(&n->mu);
	if (n->stopping && o->kind != OP_CALL) {
		pthread_mutex_unlock(&n->mu);
		return NODE_ESTOPPED;
	}
	node_inbox_push_locked(n, o);
	pthread_mutex_unlock(&n->mu);
	return 0;
}

/* Runs fn(n, arg) on the loop thread (with stopping = true if the node is
 * shutting down: fn must then only release what arg holds). */
static int post_call(node *n, void (*fn)(node *, void *, bool), void *arg)
{
	op *o = calloc(1, sizeof(*o));

	if (!o)
		return NODE_ENOMEM;
	o->kind = OP_CALL;
	o->fn = fn;
	o->arg = arg;
	return post(n, o);
}

/* ---- proposals ---- */

static proposal *pending_find(node *n, uint64_t seq)
{
	for (proposal *p = n->pend_head; p; p = p->next)
		if (p->seq == seq)
			return p;
	return NULL;
}

/* The pending proposal with seq, looking from `from` on (the list is in
 * seq order, so the walk stops at the first larger seq), else from the
 * head: for a run of entries in seq order, one walk in all. */
static proposal *pending_find_from(node *n, proposal *from, uint64_t seq)
{
	for (proposal *p = from; p && p->seq <= seq; p = p->next)
		if (p->seq == seq)
			return p;
	return from == n->pend_head ? NULL : pending_find_from(n, n->pend_head, seq);
}

static void proposal_finish(proposal *p, int status, int64_t result, uint64_t index)
{
	p->cb(p->arg, status, result, index);
	raft_blob_release(p->data);
	free(p);
}

int node_start(node *n, const void *cmd, size_t len, unsigned timeout_ms, node_done_cb cb,
	       void *arg, uint64_t *term, bool *is_leader)
{
	proposal *p = calloc(1, sizeof(*p));
	op *o = calloc(1, sizeof(*o));
	envelope env;

	/* An entry travels whole in an append message: one that does not fit
	 * in a frame would stall replication for good. */
	if (len > n->cfg->max_frame_bytes / 2) {
		free(p);
		free(o);
		return NODE_E2BIG;
	}
	/* A shared block: the log or the forward to the leader takes a
	 * reference to it, not a copy (raft_propose_refs). */
	if (p)
		p->data = raft_blob_new(ENVELOPE_BYTES + len);
	if (!p || !o || !p->data) {
		if (p)
			raft_blob_release(p->data);
		free(p);
		free(o);
		return NODE_ENOMEM;
	}
	if (len) /* an empty command may come as (NULL, 0): memcpy wants a pointer */
		memcpy(p->data + ENVELOPE_BYTES, cmd, len);
	p->len = ENVELOPE_BYTES + len;
	p->t_start = n->stages.on ? uv_hrtime() : 0;
	p->cb = cb;
	p->arg = arg;
	p->start_ms = now_ms();
	p->deadline_ms = p->start_ms + (timeout_ms ? timeout_ms : n->cfg->proposal_timeout_ms);

	pthread_mutex_lock(&n->mu);
	if (n->stopping) {
		pthread_mutex_unlock(&n->mu);
		raft_blob_release(p->data);
		free(p);
		free(o);
		return NODE_ESTOPPED;
	}
	/* Sequence numbers are handed out under the lock in list order, so
	 * the list head is always the lowest pending seq (dedup.h), and the
	 * loop is told under the same lock, so it proposes them in seq order
	 * (an entry that reached the leader before its predecessor would be
	 * skipped as early and proposed again). */
	p->seq = ++n->seq;
	env.client = n->client_id;
	env.seq = p->seq;
	env.min_pending = n->pend_head ? n->pend_head->seq : p->seq;
	envelope_encode(&env, p->data);
	node_pending_append(n, p);
	o->kind = OP_PROPOSE;
	o->seq = p->seq;
	node_inbox_push_locked(n, o);
	pthread_mutex_unlock(&n->mu);
	node_get_state(n, term, is_leader);
	return 0;
}

/* Loop thread: entries proposed to this leader's core, not yet in a
 * save. */
void node_unsaved_add(node *n, uint64_t bytes, uint64_t ents)
{
	n->new_bytes += bytes;
	n->new_ents += ents;
	if (n->unsaved_bytes + n->new_bytes > atomic_load(&n->unsaved_max))
		atomic_store(&n->unsaved_max, n->unsaved_bytes + n->new_bytes);
}

/* Loop thread: whether this node leads with more entries unsaved on its
 * own disk than the bound allows. Only a leader's pile up: a follower
 * takes entries at the pace its acknowledgements, which wait for its
 * saves, let the leader send them (max_inflight). */
bool node_unsaved_full(const node *n)
{
	const node_config *c = n->cfg;

	return raft_is_leader(n->r) &&
	       ((c->unsaved_bytes && n->unsaved_bytes + n->new_bytes >= c->unsaved_bytes) ||
		(c->unsaved_entries && n->unsaved_ents + n->new_ents >= c->unsaved_entries));
}

/* Hands p to the core (loop thread, mu held). Each try carries the
 * current lowest pending seq: one that failed meanwhile (timed out) is
 * then no longer a predecessor the entry waits for (dedup_check_ordered),
 * and its results may be forgotten. Returns false when p could not even
 * be tried (no memory for its copy): the proposals after it must not be
 * tried either, or they land ahead of it and are refused as early. */
static bool try_propose(node *n, proposal *p, uint64_t now)
{
	envelope env = {n->client_id, p->seq, n->pend_head->seq};
	uint64_t index, term;
	int rc;

	/* The envelope changes between tries (min_pending): a block the log,
	 * a message or another thread still reads from an earlier try is
	 * left to them, and this try gets a copy. */
	if (raft_blob_shared(p->data)) {
		uint8_t *d = raft_blob_new(p->len);

		if (!d) { /* tried again at the next retry */
			p->last_error = NODE_ENOMEM;
			p->last_try_ms = now;
			return false;
		}
		memcpy(d, p->data, p->len);
		raft_blob_release(p->data);
		p->data = d;
	}
	envelope_encode(&env, p->data);
	if (n->stages.on && !p->t_tried)
		p->t_tried = uv_hrtime();
	p->last_try_ms = now;
	p->epoch = n->epoch;
	p->log_index = p->log_term = 0;
	p->log_committed = false;
	node_pending_retried(n, p); /* this try's fate is unknown again */
	if (node_unsaved_full(n)) {
		/* Its disk is behind: held, in seq order, until reap_saves
		 * finds room (node_propose_held). */
		if (!n->held_seq || p->seq < n->held_seq)
			n->held_seq = p->seq;
		return true;
	}
	/* A big one waits for room in this leader's log (node_admission_ready
	 * proposes it), and so does every later one while one waits. */
	if (!node_admission_own(n, p->seq, env.min_pending, p->data, p->len))
		return true;
	rc = raft_propose_refs(n->r, p->data, p->len, &index, &term);
	if (rc == 0 && raft_is_leader(n->r)) {
		node_unsaved_add(n, p->len, 1);
		node_admission_placed(n, p->seq, env.min_pending, index, p->len);
		p->log_index = index;
		p->log_term = term;
	}
	if (rc == 0) {
		p->proposed = true;
		RLOG(RLOG_CLNT, "proposed seq %llu (%zu bytes)", (unsigned long long)p->seq,
		     p->len);
	} else if (rc == RAFT_EPROPOSAL_DROPPED) {
		if (!p->proposed)
			p->last_error = NODE_ENOLEADER;
	} else {
		rlog_write(RLOG_ERR, "propose seq %llu: %s", (unsigned long long)p->seq,
			   raft_strerror(rc));
	}
	return true;
}

/* Proposes p and every pending proposal after it again, in seq order
 * (go-back-N: whatever follows a lost proposal is skipped as early where it
 * lands before it). Loop thread, mu held. */
void node_resend_from(node *n, proposal *p, uint64_t now)
{
	RLOG(RLOG_CLNT, "resending from seq %llu", (unsigned long long)p->seq);
	n->gbn_seq = p->seq;
	if (n->held_seq && p->seq <= n->held_seq)
		n->held_seq = 0; /* tried again below, held again if still full */
	/* One that could not be tried stops the round: it is due again at
	 * the next retry, and this round's later ones would only land
	 * before it. */
	for (; p; p = p->next)
		if (!try_propose(n, p, now))
			break;
}

/* An entry carrying p is committed in this node's log: its commit index is
 * past the entry's index and the entry there is still of the term it had
 * when it came (Log Matching: the entries up to the commit index are the
 * leader's, and an index and a term name one entry; a new leader's entry
 * that overwrote it has another term). Entries up to the commit index
 * never change, so the answer is kept (one term look-up per proposal);
 * an entry overwritten is forgotten (p is retried, and noted again if a
 * copy of it comes back), and so is one the log no longer holds (a
 * snapshot's: retried, as before). Loop thread, which owns the core, mu
 * held. */
static bool committed_in_log(node *n, proposal *p)
{
	if (p->log_committed)
		return true;
	if (!p->log_index || p->log_index > raft_commit_index(n->r))
		return false;
	if (raft_term_at(n->r, p->log_index) != p->log_term) {
		p->log_index = p->log_term = 0;
		return false;
	}
	p->log_committed = true;
	if (p->log_index > p->commit_seen)
		p->commit_seen = p->log_index;
	return true;
}

/* When apply went past every copy of p known committed here without
 * answering it: the copy was skipped as early (on_refused proposes it
 * again), or an installed snapshot covered it and its restored duplicate
 * table does not hold p as applied (the copy was skipped as early before
 * the image was taken, or the result is forgotten; node_answer_restored
 * answered the others). Then what was known is forgotten, so p is retried by timer as an
 * uncommitted one and fails at its deadline as one. complete_local
 * unlinks p under mu before the apply thread moves `applied` past its
 * entry, so a p still listed here with its index passed was not answered.
 * Loop thread, mu held. */
static void forget_passed_commit(node *n, proposal *p, uint64_t applied)
{
	if (!p->commit_seen || p->commit_seen > applied)
		return;
	p->commit_seen = 0;
	if (p->log_index && p->log_index <= applied) {
		p->log_index = p->log_term = 0;
		p->log_committed = false;
	}
	if (p->committed)
		node_pending_retried(n, p);
}

/* Whether p, past its deadline, waits on: a copy of it is committed here
 * and not yet applied. It will apply (or be skipped as early) unless this
 * node faults or stops, which check_proposals answers at once; failing it
 * at the deadline told its caller it failed while it applied everywhere
 * (this node's apply may lag its commit by more than the timeout: a slow
 * disk, a restarted node catching up, a snapshot install). Only what is
 * not known committed gets the bounded wait. */
static bool waits_for_apply(node *n, proposal *p, uint64_t applied)
{
	committed_in_log(n, p); /* notes commit_seen if it is */
	return p->commit_seen > applied;
}

/* Fails proposals past their deadline but those known committed and not
 * yet applied here (waits_for_apply), or all once this node faulted;
 * re-proposes those due for a retry and all after them: after a leader
 * change, or when a try got no answer for retry_ms (a forwarded proposal
 * can be lost with its connection). */
static void check_proposals(node *n, uint64_t now)
{
	proposal *failed = NULL, *p, *next, *due = NULL;
	bool stopping, faulted;
	uint64_t applied;

	pthread_mutex_lock(&n->mu);
	stopping = n->stopping;
	faulted = atomic_load(&n->fault) != 0;
	/* Read under mu: see forget_passed_commit. */
	applied = atomic_load(&n->applied);
	for (p = n->pend_head; p; p = next) {
		next = p->next;
		forget_passed_commit(n, p, applied);
		/* A node that stopped applying will never apply what it waits
		 * for: its callers get the fault now, not at their deadline (a
		 * close after a disk filled took the proposal timeout, 5 s, to
		 * fail). As after a timeout, the entry may still commit and
		 * apply on the others. */
		if (faulted)
			p->last_error = NODE_EFAULT;
		if ((now >= p->deadline_ms && !waits_for_apply(n, p, applied)) || n->stopping ||
		    faulted) {
			node_pending_unlink(n, p);
			p->next = failed;
			failed = p;
			continue;
		}
		if (p->epoch != n->epoch && p->proposed)
			p->last_error = NODE_ELEADERLOST;
		/* A committed one is not lost, only not applied here yet (this
		 * node's apply may lag its commit by seconds: a slow disk, a
		 * snapshot install); proposing it and all after it again each
		 * retry_ms flooded the log with duplicates (~1,000 a second
		 * under close = behind). If apply skips it as early, on_refused
		 * sends it again. A leader knows it committed before it is
		 * handed out: the apply queue's bound can hold committed entries
		 * back for longer than retry_ms, and each retry of them was a
		 * duplicate in the log (164 for 400 puts in a 6 s stall). So
		 * does a follower once the leader's append brought the entry it
		 * forwarded (note_own_logged), and either of a copy of an
		 * earlier try known committed (commit_seen). */
		if (!due && n->leader && !p->committed && p->commit_seen <= applied &&
		    !committed_in_log(n, p) &&
		    (p->epoch != n->epoch || now - p->last_try_ms >= n->retry_ms))
			due = p;
	}
	if (due)
		node_resend_from(n, due, now);
	pthread_mutex_unlock(&n->mu);
	for (p = failed; p; p = next) {
		int status = stopping	     ? NODE_ESTOPPED
			     : p->last_error ? p->last_error
			     : n->leader     ? NODE_ETIMEOUT
					     : NODE_ENOLEADER;

		next = p->next;
		RLOG(RLOG_CLNT, "seq %llu failed: %s", (unsigned long long)p->seq,
		     node_strerror(status));
		proposal_finish(p, status, 0, 0);
	}
}

/* ---- the core's clock ---- */

/* Gives the core one tick per tick_ms of wall time since the last one, so
 * its clock never runs slow, even when the loop was held up (a long fsync,
 * a loaded machine: libuv fires a late repeating timer once, not once per
 * period missed). Lease reads depend on it (raft.h): a leader whose ticks
 * lagged would hold its lease longer, in real time, than its followers
 * keep their promise. Called before anything that may answer a read:
 * every tick, every message from a peer, every read tried.
 *
 * Several ticks at once mean the loop was held up. A leader gets them all
 * in one raft_tick_stalled: its clock (and lease) moves by every one, but
 * the quorum check they owe waits for the next tick, after this poll has
 * read the acknowledgements that waited in its sockets — before, a leader
 * whose own fsync took an election timeout deposed itself before reading
 * them (session 5). Others get at most two election timeouts of ticks
 * (a flood of them would serve no one) and start over from now. */
static void give_ticks(node *n, uint64_t now)
{
	uint64_t period = (uint64_t)n->cfg->tick_ms * 1000000;
	uint64_t max = 2ull * (uint64_t)n->cfg->election_ticks + 2;
	uint64_t k = now - n->tick_ns >= period ? (now - n->tick_ns) / period : 0;

	if (k == 0)
		return;
	if (k == 1) {
		n->tick_ns += period;
		raft_tick(n->r);
	} else if (n->tick_due_ns && n->tick_ns + k * period <= n->tick_due_ns) {
		/* Slept through quiet ticks (tick_plan), not held up: none
		 * but the last can act, each is given as it would have come. */
		n->tick_ns += k * period;
		for (uint64_t i = 0; i < k; i++)
			raft_tick(n->r);
	} else if (raft_is_leader(n->r)) {
		n->tick_ns += k * period;
		raft_tick_stalled(n->r, k);
	} else if (k <= max) {
		n->tick_ns += k * period;
		raft_tick_stalled(n->r, k); /* plain ticks for a follower */
	} else {
		n->tick_ns = now;
		raft_tick_stalled(n->r, max);
	}
}

static void clock_catch_up(node *n)
{
	uint64_t now = uv_hrtime(), period = (uint64_t)n->cfg->tick_ms * 1000000;

	/* A follower (or candidate) whose own loop did not run for a whole
	 * election timeout (a long fsync of a big batch, a starved CPU) owes
	 * the ticks it missed until the messages that arrived meanwhile are
	 * read: given first, they would make it campaign before it reads the
	 * heartbeats waiting in its socket, and a loaded node would depose a
	 * healthy leader. on_check settles them after the next poll: dropped
	 * if the leader was heard (fewer ticks only make a follower's promise
	 * to a lease last longer, see "Lease reads": safe), given otherwise
	 * (a leader that is gone is not waited for longer). A leader always
	 * catches up, since its lease must not outlast the followers' (its
	 * quorum check waits for the next tick: give_ticks). A loop woken
	 * before the tick it planned to wake for (tick_plan: none of the
	 * ticks given can act) was asleep, not held up: it gets them at once,
	 * as it got them one by one before. Taken for a stall, a follower
	 * asleep until its own election deadline ignored the pre-vote of the
	 * one whose deadline came first (with an election timeout it had not
	 * counted yet), and the later deadline of the two made the leader
	 * (failover +45 ms median). Its timer, at that tick, still counts as
	 * a stall when it came an election timeout late: what arrived is read
	 * first. */
	bool slept = n->tick_due_ns && now < n->tick_due_ns;

	if (!raft_is_leader(n->r) &&
	    (n->ticks_owed ||
	     (!slept && now - n->tick_ns >= (uint64_t)n->cfg->election_ticks * period))) {
		if (!n->ticks_owed)
			n->heard_leader = false;
		n->ticks_owed = true;
		return;
	}
	give_ticks(n, now);
}

/* ---- read barriers ---- */

int node_read_index(node *n, node_read_cb cb, void *arg)
{
	reader *rd = calloc(1, sizeof(*rd));
	op *o = calloc(1, sizeof(*o));
	int rc;

	if (!rd || !o) {
		free(rd);
		free(o);
		return NODE_ENOMEM;
	}
	rd->cb = cb;
	rd->arg = arg;
	rd->deadline_ms = now_ms() + n->cfg->proposal_timeout_ms;
	o->kind = OP_READ;
	o->rd = rd;
	rc = post(n, o);
	if (rc < 0) {
		free(rd);
		free(o);
	}
	return rc;
}

static void try_read(node *n, reader *rd, uint64_t now)
{
	uint8_t ctx[8];

	clock_catch_up(n);
	rd->last_try_ms = now;
	rd->epoch = n->epoch;
	memcpy(ctx, &rd->id, 8);
	raft_read_index(n->r, ctx, sizeof(ctx));
}

static void check_readers(node *n, uint64_t now)
{
	uint64_t applied = atomic_load(&n->applied);
	reader **pp = &n->readers, *rd;
	int waiting = 0;

	while ((rd = *pp)) {
		int status = 1;

		if (rd->has_index && applied >= rd->index)
			status = 0;
		else if (n->closing)
			status = NODE_ESTOPPED;
		else if (now >= rd->deadline_ms)
			status = n->leader ? NODE_ETIMEOUT : NODE_ENOLEADER;
		else if (atomic_load(&n->fault))
			status = NODE_EFAULT;
		if (status <= 0) {
			*pp = rd->next;
			rd->cb(rd->arg, status);
			free(rd);
			continue;
		}
		if (rd->has_index)
			waiting++;
		else if (n->leader &&
			 (rd->epoch != n->epoch || now - rd->last_try_ms >= n->retry_ms))
			try_read(n, rd, now);
		pp = &rd->next;
	}
	atomic_store(&n->readers_waiting, waiting);
}

static void on_read_state(node *n, const raft_read_state *rs)
{
	uint64_t id;

	if (rs->ctx_len != 8)
		return;
	memcpy(&id, rs->ctx, 8);
	for (reader *rd = n->readers; rd; rd = rd->next)
		if (rd->id == id && !rd->has_index) {
			rd->has_index = true;
			rd->index = rs->index;
		}
}

/* ---- apply thread ---- */

/* t_apply: when the apply thread began applying it (RAFTFS_STAGES). */
static void complete_local(node *n, uint64_t seq, int64_t result, uint64_t index,
			   uint64_t t_apply)
{
	node_stages *s = &n->stages;
	uint64_t t_applied = s->on ? uv_hrtime() : 0;
	proposal *p;

	pthread_mutex_lock(&n->mu);
	p = pending_find(n, seq);
	if (p)
		node_pending_unlink(n, p);
	pthread_mutex_unlock(&n->mu);
	/* Not found: a retry applied twice (the second is a dedup hit), or
	 * the proposal already timed out. */
	if (!p)
		return;
	if (s->on) {
		node_stages_add(s, NODE_STAGE_QUEUE, p->t_start, p->t_tried);
		node_stages_add(s, NODE_STAGE_PERSIST, p->t_tried, p->t_persisted);
		node_stages_add(s, NODE_STAGE_COMMIT, p->t_persisted, p->t_committed);
		node_stages_add(s, NODE_STAGE_HANDOFF, p->t_committed, t_apply);
		node_stages_add(s, NODE_STAGE_APPLY, t_apply, t_applied);
	}
	proposal_finish(p, 0, result, index);
	node_stages_add(s, NODE_STAGE_REPLY, t_applied, s->on ? uv_hrtime() : 0);
}

/* A restored snapshot covers entries this node never applied itself, its
 * own among them: a proposal whose copy applied before the image was
 * taken is answered by no apply here. The restored duplicate table holds
 * its result (the one every node gave), so it is answered now, exactly,
 * with no retry: before, it was retried by timer, and one already past
 * its deadline (it waited for that copy, waits_for_apply) failed at once
 * with ETIMEDOUT although it applied everywhere. The index reported is
 * the snapshot's: it applied at or before it. One the table does not hold
 * as applied is left pending: new (after the image: it applies, or is
 * retried), or stale (its result forgotten: it is retried and fails at
 * its deadline as before, forget_passed_commit). Answered in seq order,
 * like applies (node.h, guarantee 3). The table is the apply thread's,
 * read here on it. */
void node_answer_restored(node *n, uint64_t index)
{
	const dedup *dd = n->sm->dedup_table ? n->sm->dedup_table(n->sm->ctx) : NULL;
	proposal *done = NULL, **tail = &done, *p, *next;
	int64_t result;

	if (!dd)
		return;
	pthread_mutex_lock(&n->mu);
	for (p = n->pend_head; p; p = next) {
		next = p->next;
		if (dedup_check(dd, n->client_id, p->seq, &result) != DEDUP_DUPLICATE)
			continue;
		node_pending_unlink(n, p);
		*tail = p;
		tail = &p->next;
	}
	pthread_mutex_unlock(&n->mu);
	for (p = done; p; p = next) {
		next = p->next;
		dedup_check(dd, n->client_id, p->seq, &result);
		RLOG(RLOG_CLNT, "seq %llu answered from the snapshot at %llu: %lld",
		     (unsigned long long)p->seq, (unsigned long long)index, (long long)result);
		proposal_finish(p, 0, result, index);
	}
}

/* Caller holds mu: the pending proposal of this node that e carries,
 * looked for from after (a batch's entries come in seq order), or NULL. */
static proposal *own_pending(node *n, const raft_entry *e, proposal *after)
{
	const uint8_t *cmd;
	size_t cmd_len;
	envelope env;

	if (e->type != RAFT_ENTRY_NORMAL ||
	    envelope_decode(e->data, e->len, &env, &cmd, &cmd_len) < 0 || env.client != n->client_id)
		return NULL;
	return pending_find_from(n, after ? after : n->pend_head, env.seq);
}

/* Loop thread: notes this node's own entries among ents as persisted here
 * (persisted; only for RAFTFS_STAGES) or handed out committed (always:
 * check_proposals does not retry a committed proposal). at: when (the
 * persist thread's time for a save: a lazy follower's loop may take the
 * save back much later), 0 for now. */
static void mark_own(node *n, const raft_entry *ents, size_t cnt, bool persisted, uint64_t at)
{
	uint64_t now = n->stages.on ? (at ? at : uv_hrtime()) : 0;
	proposal *p = NULL;
	bool own_committed = false;

	if (!cnt)
		return; /* most Readies hand out nothing: no lock for them */
	pthread_mutex_lock(&n->mu);
	for (size_t i = 0; i < cnt && n->pend_head; i++) {
		proposal *q = own_pending(n, &ents[i], p);

		if (!q)
			continue;
		p = q;
		if (persisted && !p->t_persisted)
			p->t_persisted = now;
		else if (!persisted) {
			node_pending_committed(n, p);
			if (ents[i].index > p->commit_seen)
				p->commit_seen = ents[i].index;
			own_committed = true;
			if (!p->t_committed)
				p->t_committed = now;
		}
	}
	pthread_mutex_unlock(&n->mu);
	if (own_committed)
		atomic_store(&n->own_commit_ms, now_ms());
}

/* Loop thread: notes where this node's own entries among ents (a Ready's,
 * new in its log) are: a follower learns the index and term of a proposal
 * it forwarded only from the leader's append that brings the entry
 * carrying its (client id, seq) — an elided one is whole by then
 * (node_elide.c) — and a leader a proposal it held or admitted late.
 * check_proposals then leaves it alone once committed (committed_in_log).
 * Any copy will do: one committed applies, or is skipped as early and
 * on_refused proposes it again. */
static void note_own_logged(node *n, const raft_entry *ents, size_t cnt)
{
	proposal *p = NULL;

	if (!cnt)
		return;
	pthread_mutex_lock(&n->mu);
	for (size_t i = 0; i < cnt && n->pend_head; i++) {
		proposal *q = own_pending(n, &ents[i], p);

		if (!q)
			continue;
		p = q;
		if (!p->log_committed) {
			p->log_index = ents[i].index;
			p->log_term = ents[i].term;
		}
	}
	pthread_mutex_unlock(&n->mu);
}

/* Loop thread: an entry of ours with seq was skipped as early, so a
 * predecessor was lost or overtaken: go back to the lowest pending one.
 * Entries sent before that resend are skipped too as they arrive; they
 * are ignored while the resend's first proposal is still pending. */
static void on_refused(node *n, void *arg, bool stopping)
{
	uint64_t seq = (uint64_t)(uintptr_t)arg;

	if (stopping)
		return;
	pthread_mutex_lock(&n->mu);
	if (n->pend_head && n->pend_head->seq <= seq && n->leader &&
	    !(n->gbn_seq && pending_find(n, n->gbn_seq)))
		node_resend_from(n, n->pend_head, now_ms());
	pthread_mutex_unlock(&n->mu);
}

static int apply_entry(node *n, const raft_entry *e)
{
	const dedup *dd;
	uint64_t t_apply;
	const uint8_t *cmd;
	size_t cmd_len;
	envelope env;
	int64_t result = 0;
	int rc;

	if (e->type != RAFT_ENTRY_NORMAL || e->len == 0)
		return n->sm->apply_empty(n->sm->ctx, e->index);
	if (envelope_decode(e->data, e->len, &env, &cmd, &cmd_len) < 0) {
		rlog_write(RLOG_ERR, "entry %llu: bad envelope (%u bytes, version %u)",
			   (unsigned long long)e->index, e->len, e->data[0]);
		return NODE_EFAULT;
	}
	dd = n->sm->dedup_table ? n->sm->dedup_table(n->sm->ctx) : NULL;
	if (dd && dedup_check_ordered(dd, env.client, env.seq, env.min_pending, &result) ==
		      DEDUP_EARLY) {
		/* The same verdict on every replica: the entry is a no-op. */
		RLOG(RLOG_APPL, "skipped %llu client %llx seq %llu: a predecessor is missing",
		     (unsigned long long)e->index, (unsigned long long)env.client,
		     (unsigned long long)env.seq);
		rc = n->sm->apply_empty(n->sm->ctx, e->index);
		if (rc == 0 && env.client == n->client_id) {
			atomic_fetch_add(&n->n_refused, 1);
			post_call(n, on_refused, (void *)(uintptr_t)env.seq);
		}
		return rc;
	}
	t_apply = n->stages.on && env.client == n->client_id ? uv_hrtime() : 0;
	rc = n->sm->apply(n->sm->ctx, e->index, &env, cmd, cmd_len, &result);
	if (rc < 0)
		return rc;
	RLOG(RLOG_APPL, "applied %llu client %llx seq %llu -> %lld", (unsigned long long)e->index,
	     (unsigned long long)env.client, (unsigned long long)env.seq, (long long)result);
	if (env.client == n->client_id)
		complete_local(n, env.seq, result, e->index, t_apply);
	return 0;
}

static void apply_batch_free(apply_batch *b)
{
	if (b->snap) {
		raft_snapshot_free_contents(b->snap);
		free(b->snap);
	}
	raft_entries_release(b->ents, b->n, b->shared);
	free(b);
}

static void *apply_main(void *arg)
{
	node *n = arg;

	pthread_setname_np(pthread_self(), "raft-apply"); /* for top -H, perf */

	for (;;) {
		apply_batch *b;
		bool wake;

		pthread_mutex_lock(&n->amu);
		while (!n->aq_head && !n->apply_stop)
			pthread_cond_wait(&n->acv, &n->amu);
		b = n->aq_head;
		if (!b) {
			pthread_mutex_unlock(&n->amu);
			break;
		}
		n->aq_head = b->next;
		if (!n->aq_head)
			n->aq_tail = NULL;
		pthread_mutex_unlock(&n->amu);

		if (b->snap && !atomic_load(&n->fault) && !n->apply_halted)
			node_snap_restore(n, b->snap);
		for (size_t i = 0; i < b->n; i++) {
			const raft_entry *e = &b->ents[i];
			int rc;

			if (atomic_load(&n->fault) || n->apply_stop || n->apply_halted)
				break;
			if (e->index <= atomic_load(&n->applied))
				continue;
			rc = apply_entry(n, e);
			if (rc < 0) {
				node_set_fault(n, "apply of entry %llu failed: %s",
					       (unsigned long long)e->index, node_any_strerror(rc));
				break;
			}
			atomic_store(&n->applied, e->index);
			node_snap_maybe_take(n, e);
		}
		pthread_mutex_lock(&n->amu);
		n->aq_bytes -= b->bytes;
		atomic_store(&n->apply_front_ms, n->aq_head ? n->aq_head->queued_ms : 0);
		wake = n->aq_full && n->aq_bytes <= n->cfg->apply_queue_bytes / 2;
		pthread_mutex_unlock(&n->amu);
		apply_batch_free(b);
		if (wake || atomic_load(&n->readers_waiting) > 0)
			wake_loop(n); /* the loop releases the core's committed entries */
	}
	node_snap_stop(n); /* a local image still streaming is cut short */
	return NULL;
}

/* Queues committed entries (and a snapshot to restore first) for the
 * apply thread. Entries in the core's shared blocks are held by reference,
 * not copied: a big write's data is not copied once more per node. */
static int hand_to_apply(node *n, const raft_snapshot *snap, const raft_entry *ents, size_t cnt,
			 bool shared)
{
	apply_batch *b = calloc(1, sizeof(*b));

	if (!b || !(b->ents = calloc(cnt ? cnt : 1, sizeof(raft_entry)))) {
		free(b);
		return NODE_ENOMEM;
	}
	if (snap) {
		b->snap = calloc(1, sizeof(*b->snap));
		if (!b->snap || raft_snapshot_copy(b->snap, snap) < 0) {
			free(b->snap);
			free(b->ents);
			free(b);
			return NODE_ENOMEM;
		}
	}
	b->shared = shared;
	for (size_t i = 0; i < cnt; i++) {
		if (shared) {
			b->ents[i] = ents[i];
			raft_blob_ref(b->ents[i].data);
		} else if (raft_entry_copy(&b->ents[i], &ents[i]) < 0) {
			b->n = i;
			apply_batch_free(b);
			return NODE_ENOMEM;
		}
	}
	b->n = cnt;
	for (size_t i = 0; i < cnt; i++)
		b->bytes += ents[i].len;
	b->queued_ms = now_ms();
	pthread_mutex_lock(&n->amu);
	if (!atomic_load(&n->apply_front_ms))
		atomic_store(&n->apply_front_ms, b->queued_ms); /* none older left */
	n->aq_bytes += b->bytes;
	if (n->aq_bytes > n->aq_bytes_max)
		n->aq_bytes_max = n->aq_bytes;
	if (n->aq_tail)
		n->aq_tail->next = b;
	else
		n->aq_head = b;
	n->aq_tail = b;
	pthread_cond_signal(&n->acv);
	pthread_mutex_unlock(&n->amu);
	return 0;
}

/* ---- the Ready loop ---- */

void node_set_fault(node *n, const char *fmt, ...)
{
	va_list ap;

	if (!atomic_exchange(&n->fault_claimed, true)) {
		va_start(ap, fmt);
		vsnprintf(n->fault_why, sizeof(n->fault_why), fmt, ap);
		va_end(ap);
		atomic_store(&n->fault_why_set, true);
		rlog_write(RLOG_ERR, "%s: this node stops applying", n->fault_why);
	}
	atomic_store(&n->fault, NODE_EFAULT);
}

/* A save, or a hand-off that must not fail, failed: this node can no
 * longer take part in Raft safely (it would acknowledge what it did not
 * persist). As after an apply fault, the Ready loop stops (handle_ready and
 * reap_saves check the fault), so nothing more is sent or acknowledged, but
 * the loop keeps running: `raftfs status` is answered with the reason and
 * proposals fail, instead of the node going silent (it used to stop the
 * loop: "Connection refused" was all status could say of a full disk). */
static void fatal_stop(node *n, const char *what, int rc)
{
	node_set_fault(n, "%s: %s", what, raft_strerror(rc));
}

static bool is_append(const raft_msg *m)
{
	return m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT;
}

/* Sends one message now; a peer that could not be reached is added to
 * unreachable[], to be reported after advance. */
static void send_one(node *n, const raft_msg *m, uint64_t *unreachable, size_t *n_unreachable)
{
	size_t j;

	if (n->msg_filter && n->msg_filter(n->msg_filter_arg, m))
		return;
	if (m->type == RAFT_MSG_SNAP) {
		/* Streamed in chunks from the next tick on. */
		snap_send_start(n->ss, m);
		return;
	}
	if (transport_send(n->tp, m) == 0)
		return;
	for (j = 0; j < *n_unreachable; j++)
		if (unreachable[j] == m->to)
			return;
	if (*n_unreachable < CONFIG_MAX_PEERS)
		unreachable[(*n_unreachable)++] = m->to;
}

/* Sends the messages of rd: the leader's appends and heartbeats now
 * (early) and those that depend on no save (raft_msg_after_save); the
 * others are kept in job (this Ready's save, not yet queued) or, without
 * one, go with the newest queued save, or now if none is under way:
 * either way once every save queued so far is durable. Returns 0 or
 * RAFT_ENOMEM. */
static int send_msgs(node *n, const raft_ready *rd, bool early, persist_job *job,
		     uint64_t *unreachable, size_t *n_unreachable)
{
	persist_job *holder = NULL;
	int rc = 0;

	for (size_t i = 0; i < rd->n_msgs && rc == 0; i++) {
		const raft_msg *m = &rd->msgs[i];

		if ((early && is_append(m)) || !raft_msg_after_save(m)) {
			send_one(n, m, unreachable, n_unreachable);
			continue;
		}
		if (!job && !holder && !(holder = node_persist_job_new(NULL, NULL, 0)))
			return RAFT_ENOMEM;
		rc = node_persist_keep(job ? job : holder, m);
	}
	/* One lock for all of them, not one per message. */
	if (rc == 0 && holder && !node_persist_defer(n->pq, holder))
		for (size_t i = 0; i < holder->n_msgs; i++)
			send_one(n, &holder->msgs[i], unreachable, n_unreachable);
	node_persist_job_free(holder);
	return rc;
}

/* RAFTFS_STAGES: the time since t0 (from loop_clock) added to *sum. */
static uint64_t loop_clock(const node *n)
{
	return n->stages.on ? uv_hrtime() : 0;
}

static void loop_add(const node *n, uint64_t *sum, uint64_t t0)
{
	if (n->stages.on)
		*sum += uv_hrtime() - t0;
}

/* Bounds the apply queue by bytes (apply_queue_bytes): a Ready carries
 * committed entries only up to the room left (one entry at least), and
 * none once the bound is reached, until the apply thread drained half of
 * it (it wakes the loop then). The loop thread never waits for the apply
 * thread: the apply thread may wait for the loop (snapshot I/O), so
 * blocking here could deadlock. */
static void apply_backpressure(node *n)
{
	uint64_t cap = n->cfg->apply_queue_bytes, room;

	if (!cap)
		return;
	pthread_mutex_lock(&n->amu);
	if (!n->aq_full && n->aq_bytes >= cap)
		n->aq_full = true;
	else if (n->aq_full && n->aq_bytes <= cap / 2)
		n->aq_full = false;
	room = n->aq_full ? 0 : cap - n->aq_bytes;
	pthread_mutex_unlock(&n->amu);
	raft_limit_committed(n->r, room);
}

/* Tests (RAFTFS_TEST_STALL=1): a leader whose data directory holds a file
 * "stall-once" saying N removes it and holds its persist thread for N ms
 * right after its next save, as a disk whose sync takes that long would
 * (the loop thread goes on: heartbeats, acknowledgements, commits). A
 * file "stall-any" does the same in any role (a follower's hung disk:
 * its heartbeat answers go on, its acknowledgements of entries stop).
 * RAFTFS_TEST_STALL=loop makes the loop thread wait for that save and
 * the stall, as the runtime did before session 6 (the save on the loop
 * thread): node.cluster.leader_stall must fail then. */
static void test_stall(node *n)
{
	char path[PATH_MAX + 16];
	unsigned ms = 0;
	raft_status st;
	FILE *f;

	snprintf(path, sizeof(path), "%s/stall-any", n->cfg->data_dir);
	f = fopen(path, "r");
	if (!f && raft_is_leader(n->r)) {
		snprintf(path, sizeof(path), "%s/stall-once", n->cfg->data_dir);
		f = fopen(path, "r");
	}
	if (!f)
		return;
	if (fscanf(f, "%u", &ms) != 1) {
		/* Caught between the test's truncate and its write: look again
		 * at the next save rather than stall for 0 ms. */
		fclose(f);
		return;
	}
	fclose(f);
	unlink(path);
	raft_get_status(n->r, &st);
	n->stall_commit = st.commit;
	rlog_write(RLOG_INFO,
		   "test: the persist thread stalls for %u ms after a save as %s (commit %llu)",
		   ms, raft_is_leader(n->r) ? "leader" : "follower", (unsigned long long)st.commit);
	node_persist_stall_next(n->pq, ms);
	n->stall_loop = !strcmp(getenv("RAFTFS_TEST_STALL"), "loop");
}

/* Takes back the saves the persist thread finished, in order, and sends
 * the messages that waited for them. The core hears once, of the newest
 * saved entry: saves complete in order, so it covers the earlier ones
 * (had it been replaced meanwhile, the replacement's own save, still
 * under way, reports it). One report, so a leader's commit moves and is
 * broadcast once per reap rather than once per save. */
static void reap_saves(node *n)
{
	uint64_t unreachable[CONFIG_MAX_PEERS];
	size_t n_unreachable = 0;
	uint64_t idx = 0, term = 0;
	persist_job *j, *next;

	if (atomic_load(&n->fault)) {
		/* Nothing more is acknowledged: not from the persist thread
		 * either (a failed save already stopped it: node_persist.h;
		 * an apply fault stops it here, at the loop's next turn). */
		node_persist_lazy(n->pq, false, 0);
		return;
	}
	/* Before the done list is taken (node_persist_lazy's order): a
	 * follower with a leader, its messages unfiltered. */
	node_persist_lazy(n->pq,
			  !raft_is_leader(n->r) && raft_leader(n->r) != 0 && !n->msg_filter,
			  raft_commit_index(n->r));
	for (j = node_persist_take_done(n->pq); j; j = next) {
		next = j->next;
		n->saves_done++;
		if (j->rc < 0 || atomic_load(&n->fault)) {
			int rc = j->rc;

			if (rc < 0)
				rlog_write(RLOG_ERR, "store: %s", j->err);
			for (; j; j = next) {
				next = j->next;
				node_persist_job_free(j);
			}
			if (rc < 0)
				fatal_stop(n, "saving a Ready", rc);
			return;
		}
		n->lp.save_ns += j->save_ns;
		n->unsaved_ents -= j->n_ents;
		for (size_t i = 0; i < j->n_ents; i++)
			n->unsaved_bytes -= j->ents[i].len;
		if (j->stalled_ms) {
			raft_status st;

			/* What the test checks: the cluster committed while
			 * this node's disk was held (a quorum of followers). */
			raft_get_status(n->r, &st);
			rlog_write(RLOG_INFO,
				   "test: the persist thread was held %u ms; commit %llu -> %llu "
				   "meanwhile, %s",
				   j->stalled_ms, (unsigned long long)n->stall_commit,
				   (unsigned long long)st.commit, raft_role_name(st.role));
		}
		RLOG(RLOG_PERS, "saved %zu entries%s", j->n_ents, j->has_hs ? " + hard state" : "");
		if (j->n_ents) {
			idx = j->ents[j->n_ents - 1].index;
			term = j->ents[j->n_ents - 1].term;
			if (n->stages.on)
				mark_own(n, j->ents, j->n_ents, true, j->done_ns);
		}
		for (size_t i = 0; i < j->n_msgs; i++)
			send_one(n, &j->msgs[i], unreachable, &n_unreachable);
		node_persist_job_free(j);
	}
	if (idx)
		raft_persisted(n->r, idx, term);
	for (size_t i = 0; i < n_unreachable; i++)
		raft_report_unreachable(n->r, unreachable[i]);
}

/* Queues the hard state, if it changed since the last save, as a save of
 * its own: only the commit index moved (once a second, and at stop). */
static void flush_hard_state(node *n)
{
	if (!n->hs_dirty || atomic_load(&n->fault))
		return;
	persist_job *j = node_persist_job_new(&n->hs, NULL, 0);

	if (!j) {
		rlog_write(RLOG_ERR, "store: saving the hard state: out of memory");
		return;
	}
	node_persist_submit(n->pq, j);
	n->saves_queued++;
	n->hs_dirty = false;
}

/* Persist thread: a follower's acknowledgement goes straight from the
 * persist thread once its entries are durable (node_persist_lazy), saving
 * the hand-off to this loop and its wake-up; anything else, or an ack the
 * socket would not take whole at once, is the loop's. */
static int persist_send(void *arg, const raft_msg *m)
{
	node *n = arg;

	if (m->type != RAFT_MSG_APP_RESP)
		return -1;
	return transport_send_direct(n->tp, m);
}

/* Persist thread: a save is done; the loop takes it back (reap_saves). */
static void persist_wake(void *arg)
{
	wake_loop(arg);
}

/* Steps a peer's proposal message into the core; a leader counts its
 * entries as unsaved from now on. */
void node_step_forwarded(node *n, const raft_msg *m)
{
	if (node_admission_forwarded(n, m))
		return; /* offered one by one: big ones wait for room */
	raft_step(n->r, m);
	if (raft_is_leader(n->r))
		for (size_t i = 0; i < m->n_entries; i++)
			node_unsaved_add(n, m->entries[i].len, 1);
}

static void handle_ready_corked(node *n)
{
	uint64_t t0;

	reap_saves(n);
	node_propose_held(n);
	node_admission_ready(n);
	while (!atomic_load(&n->fault) && (apply_backpressure(n), raft_has_ready(n->r))) {
		uint64_t unreachable[CONFIG_MAX_PEERS];
		size_t n_unreachable = 0;
		raft_snapshot snap = {0};
		persist_job *job;
		raft_ready rd;
		bool early, vote;
		int rc;

		raft_ready_get(n->r, &rd);
		n->new_bytes = n->new_ents = 0; /* in this Ready's save now */
		if (rd.snapshot) {
			/* It replaces the log: the saves queued before it go
			 * first. Rare, so the loop waits for them here (what
			 * it holds to send goes before it waits). */
			transport_flush(n->tp);
			node_persist_drain(n->pq);
			node_persist_lock(n->pq);
			rc = node_snap_install(n, rd.snapshot, &snap);
			node_persist_unlock(n->pq);
			if (rc < 0) {
				free(snap.data);
				fatal_stop(n, "saving a snapshot from the leader", rc);
				return;
			}
			node_members_on_snapshot(n, rd.snapshot);
		}
		/* Raft thesis §10.2.1: a leader may send its appends before its
		 * own write of the same entries is durable, overlapping its
		 * fsync with the followers'; the core counts its own entries
		 * only once raft_persisted says they are durable. Not when
		 * this Ready changes the term or vote, nor while a save that
		 * changed them is not durable yet (a vote must be durable
		 * before anything that depends on it leaves, Figure 2), and
		 * only for appends and heartbeats. */
		vote = rd.has_hard_state &&
		       (rd.hard_state.term != n->hs.term || rd.hard_state.vote != n->hs.vote);
		early = raft_is_leader(n->r) && !vote && n->saves_done >= n->vote_upto;
		n->lp.readies++;
		if (rd.has_hard_state) {
			n->hs = rd.hard_state;
			n->hs_dirty = true;
		}
		/* A hard state whose term and vote did not change (only the
		 * commit index moved) need not be durable before anything is
		 * sent (the commit index is volatile state, Raft Figure 2): it
		 * rides along with the next save instead of costing an fsync
		 * on the commit path. The save itself is the persist thread's:
		 * this thread goes on at once (node_persist.h). */
		job = NULL;
		if (rd.n_entries || (rd.has_hard_state && rd.must_sync)) {
			if (n->test_stall)
				test_stall(n);
			job = node_persist_job_new(n->hs_dirty ? &n->hs : NULL, rd.entries,
						   rd.n_entries);
			if (!job) {
				free(snap.data);
				fatal_stop(n, "queueing a save", RAFT_ENOMEM);
				return;
			}
		}
		/* Messages that depend on a save go once it is durable
		 * (reap_saves): kept in this Ready's save before it is
		 * queued; the leader's early ones now. */
		t0 = loop_clock(n);
		rc = send_msgs(n, &rd, early, job, unreachable, &n_unreachable);
		loop_add(n, &n->lp.send_ns, t0);
		if (rc < 0) {
			node_persist_job_free(job);
			free(snap.data);
			fatal_stop(n, "keeping messages until their save is durable", rc);
			return;
		}
		/* A leader's appends and commit notices leave before its own
		 * save is queued and the committed entries are handed out:
		 * each wakes another thread, which on a busy machine may run
		 * before this one reaches the uncork at the end of the round,
		 * and what the followers do with them (their saves, which the
		 * commit waits for, and their applies, which their mounts'
		 * fsyncs wait for) is the longer path; the leader's own save
		 * starts first anyway. */
		if (early && rd.n_msgs && (job || rd.n_committed))
			transport_flush(n->tp);
		if (job) {
			node_persist_submit(n->pq, job);
			n->saves_queued++;
			n->unsaved_ents += rd.n_entries;
			for (size_t i = 0; i < rd.n_entries; i++) {
				n->unsaved_bytes += rd.entries[i].len;
				n->lp.saved_bytes += rd.entries[i].len;
			}
			if (n->unsaved_bytes > atomic_load(&n->unsaved_max))
				atomic_store(&n->unsaved_max, n->unsaved_bytes);
			if (vote)
				n->vote_upto = n->saves_queued;
			if (n->stall_loop) {
				n->stall_loop = false;
				transport_flush(n->tp);
				node_persist_drain(n->pq);
			}
			n->lp.saves++;
			n->lp.saved_entries += rd.n_entries;
			n->hs_dirty = false;
		}
		t0 = loop_clock(n);
		note_own_logged(n, rd.entries, rd.n_entries);
		mark_own(n, rd.committed, rd.n_committed, false, 0);
		/* Committed entries are handed out only once durable here too
		 * (the core's apply limit is the persisted index): the state
		 * machine, its snapshots and the log compaction behind them
		 * never get ahead of this node's own log. */
		rc = rd.snapshot || rd.n_committed
			 ? hand_to_apply(n, rd.snapshot ? &snap : NULL, rd.committed,
					 rd.n_committed, rd.committed_shared)
			 : 0;
		loop_add(n, &n->lp.hand_ns, t0);
		if (rd.snapshot)
			free(snap.data);
		if (rc < 0) {
			fatal_stop(n, "handing committed entries to the apply thread", RAFT_ENOMEM);
			return;
		}
		/* Membership changes take effect as they are handed out, in
		 * log order, on this thread, which owns the core. */
		for (size_t i = 0; i < rd.n_committed; i++)
			if (rd.committed[i].type == RAFT_ENTRY_CONF_CHANGE) {
				node_members_apply(n, &rd.committed[i]);
				n->conf_index = rd.committed[i].index;
			}
		for (size_t i = 0; i < rd.n_read_states; i++)
			on_read_state(n, &rd.read_states[i]);
		if (rd.has_soft_state) {
			atomic_store(&n->is_leader, rd.role == RAFT_LEADER);
			if (rd.leader != n->leader) {
				n->leader = rd.leader;
				n->epoch++;
				rlog_write(RLOG_INFO, "leader is %llu (this node: %s)",
					   (unsigned long long)rd.leader, raft_role_name(rd.role));
			}
		}
		raft_advance(n->r, &rd);
		for (size_t j = 0; j < n_unreachable; j++)
			raft_report_unreachable(n->r, unreachable[j]);
		atomic_store(&n->term, raft_term(n->r));
		rlog_set_term(raft_term(n->r));
	}
}

/* The Readies' messages to one peer (an append, commit notices,
 * heartbeats) go out in one write (transport_cork). */
static void handle_ready(node *n)
{
	transport_cork(n->tp);
	handle_ready_corked(n);
	transport_uncork(n->tp);
}

/* ---- quiet ticks ---- */

/* A dirty hard state (a commit index moved with nothing else to save) is
 * saved on a tick at most this many ticks apart. */
#define HS_FLUSH_TICKS 100

static void on_tick(uv_timer_t *h);

/* Whether on_tick has more to look after than the core's clock: proposals
 * or reads waiting (deadlines, retries), forwarded proposals held, a
 * membership change, a snapshot being sent, a stop's handover, a stall's
 * owed ticks. */
static bool tick_work(node *n)
{
	/* pend_count, not pend_head under mu: no lock per loop iteration. A
	 * proposal added just after this read is no more missed than one
	 * added just after an unlock would be: node_start wakes the loop
	 * (its inbox op), whose next iteration plans again. */
	bool pending = atomic_load(&n->pend_count) != 0;

	return pending || n->readers || n->n_held_fwd || n->draining || n->ticks_owed ||
	       node_members_busy(n) || snap_send_busy(n->ss);
}

/* After each loop iteration (on_prepare). With work, the tick timer
 * repeats every tick_ms as it always did. Without, it is armed once, for
 * the tick on which the core acts next (raft_quiet_ticks) or the hard
 * state's flush, and give_ticks hands the ticks slept over as separate
 * raft_tick calls: an idle follower's loop wakes for the leader's
 * heartbeats alone, an idle leader's for its heartbeats, its quorum
 * checks and their answers (README-node.md, "Quiet ticks"). Every event
 * in between catches the core's clock up first (clock_catch_up) and ends
 * here, so a deadline it moved earlier (a leader elected, its first beat)
 * is armed at once; one it moved later (a heartbeat restarting a
 * follower's election timeout) is left: the timer fires early once, and
 * is armed again. */
static void tick_plan(node *n)
{
	uint64_t period = (uint64_t)n->cfg->tick_ms * 1000000, due, now;

	if (n->closing || n->quiet_off)
		return;
	if (tick_work(n)) {
		if (n->tick_due_ns) {
			n->tick_due_ns = 0;
			uv_timer_start(&n->tick, on_tick, n->cfg->tick_ms, n->cfg->tick_ms);
		}
		return;
	}
	due = n->tick_ns + (uint64_t)raft_quiet_ticks(n->r) * period;
	if (n->hs_dirty && n->hs_flush_ns + HS_FLUSH_TICKS * period < due)
		due = n->hs_flush_ns + HS_FLUSH_TICKS * period;
	if (n->tick_due_ns && n->tick_due_ns <= due && uv_is_active((uv_handle_t *)&n->tick))
		return;
	n->tick_due_ns = due;
	uv_update_time(&n->loop);
	now = uv_hrtime();
	/* +1: libuv counts whole ms from its cached clock; never early. */
	uv_timer_start(&n->tick, on_tick, due > now ? (due - now) / 1000000 + 1 : 0, 0);
}

static void on_prepare(uv_prepare_t *h)
{
	node *n = h->data;

	/* Snapshot streams go on as soon as a connection's queue drained
	 * (any write completion runs the loop), not a tick later. */
	snap_send_pump(n->ss);
	handle_ready(n);
	n->recv_pending = false; /* a received snapshot's Ready is handled */
	check_readers(n, now_ms());
	tick_plan(n);
}

static void begin_close(node *n);
static void run_inbox(node *n);
static bool transfer_before_stop(node *n, uint64_t now);

static void on_tick(uv_timer_t *h)
{
	node *n = h->data;
	uint64_t now = now_ms(), now_ns = uv_hrtime();

	n->tick_fires++;
	/* Every HS_FLUSH_TICKS ticks of time, however many fired (tick_plan). */
	if (now_ns - n->hs_flush_ns >= HS_FLUSH_TICKS * (uint64_t)n->cfg->tick_ms * 1000000) {
		n->hs_flush_ns = now_ns;
		flush_hard_state(n);
	}
	node_admission_tick(n, now);
	clock_catch_up(n);
	snap_send_pump(n->ss);
	if (n->draining && !n->closing && !transfer_before_stop(n, now)) {
		if (!raft_is_leader(n->r))
			rlog_write(RLOG_INFO, "leadership handed over to %llu",
				   (unsigned long long)raft_leader(n->r));
		else
			rlog_write(RLOG_INFO, "stopping as leader: the handover did not finish "
					      "within two election timeouts");
		begin_close(n);
		run_inbox(n);
		return;
	}
	check_proposals(n, now);
	check_readers(n, now);
	node_members_tick(n);
}

static void on_raft_msg(void *arg, raft_msg *m)
{
	node *n = arg;
	uint64_t t0 = loop_clock(n);

	clock_catch_up(n);
	if (m->type == RAFT_MSG_PROP) {
		/* Forwarded proposals while this leader's disk is behind
		 * wait (README-node.md, "Bounded memory"). */
		if (node_unsaved_full(n) || n->n_held_fwd)
			node_hold_forwarded(n, m); /* behind those held: in order */
		else
			node_step_forwarded(n, m);
		loop_add(n, &n->lp.step_ns, t0);
		return;
	}
	if (m->type == RAFT_MSG_APP)
		node_elide_fill(n, m);
	raft_step(n->r, m);
	if (n->ticks_owed && m->from == raft_leader(n->r) &&
	    (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAP))
		n->heard_leader = true;
	loop_add(n, &n->lp.step_ns, t0);
}

/* After each poll: the ticks a stalled follower owes (clock_catch_up). */
static void on_check(uv_check_t *h)
{
	node *n = h->data;

	if (!n->ticks_owed)
		return;
	n->ticks_owed = false;
	if (n->heard_leader)
		n->tick_ns = uv_hrtime();
	else
		give_ticks(n, uv_hrtime());
}

static void on_closed(uv_handle_t *h)
{
}

/* Shutting down (loop thread): fail what waits, close every handle. */
static void begin_close(node *n)
{
	if (n->closing)
		return;
	n->closing = true;
	flush_hard_state(n);
	node_members_close(n);
	check_proposals(n, now_ms());
	check_readers(n, now_ms());
	transport_close(n->tp);
	uv_close((uv_handle_t *)&n->tick, on_closed);
	uv_close((uv_handle_t *)&n->prep, on_closed);
	uv_close((uv_handle_t *)&n->chk, on_closed);
	pthread_mutex_lock(&n->mu);
	n->async_closed = true;
	uv_close((uv_handle_t *)&n->async, on_closed);
	pthread_mutex_unlock(&n->mu);
}

static void run_inbox(node *n)
{
	op *o, *next;
	bool stopping;

	pthread_mutex_lock(&n->mu);
	o = n->inbox_head;
	n->inbox_head = n->inbox_tail = NULL;
	stopping = n->stopping;
	pthread_mutex_unlock(&n->mu);
	for (; o; o = next) {
		next = o->next;
		if (o->kind == OP_PROPOSE && !stopping) {
			proposal *p;

			pthread_mutex_lock(&n->mu);
			p = pending_find(n, o->seq);
			/* Already tried: a resend proposed it in order. */
			if (p && !p->last_try_ms)
				try_propose(n, p, now_ms());
			pthread_mutex_unlock(&n->mu);
		} else if (o->kind == OP_READ) {
			reader *rd = o->rd;

			rd->id = ++n->read_id;
			rd->next = n->readers;
			n->readers = rd;
			if (!stopping)
				try_read(n, rd, now_ms());
		} else if (o->kind == OP_CALL) {
			o->fn(n, o->arg, stopping);
		}
		free(o);
	}
}

/* A leader asked to stop first hands its leadership to the most
 * up-to-date follower (Raft thesis §3.10), so the cluster does not wait an
 * election timeout for a new one. Returns true while that is under way. */
static bool transfer_before_stop(node *n, uint64_t now)
{
	raft_status st;
	raft_msg m = {0};
	uint64_t best = 0, best_match = 0;

	if (n->draining)
		return raft_is_leader(n->r) && now < n->drain_deadline_ms;
	n->draining = true;
	if (!raft_is_leader(n->r))
		return false;
	raft_get_status(n->r, &st);
	/* Not recent_active: check-quorum clears it for everyone at each
	 * election timeout, so a stop in that window would find no one
	 * (tests/FLAKY.md). A connected voter is enough; the transfer itself
	 * is bounded by the drain deadline. */
	for (size_t i = 0; i < st.n_peers; i++)
		if (st.peers[i].id != st.id && !st.peers[i].learner &&
		    transport_peer_connected(n->tp, st.peers[i].id) &&
		    st.peers[i].match >= best_match) {
			best = st.peers[i].id;
			best_match = st.peers[i].match;
		}
	if (!best) {
		rlog_write(RLOG_INFO, "stopping as leader: no connected follower to hand over to");
		return false;
	}
	rlog_write(RLOG_INFO, "stopping: handing leadership to %llu", (unsigned long long)best);
	m.type = RAFT_MSG_TRANSFER_LEADER;
	m.from = best;
	m.to = n->cfg->id;
	raft_step(n->r, &m);
	n->drain_deadline_ms = now + 2ull * n->cfg->election_ticks * n->cfg->tick_ms;
	return true;
}

static void on_async(uv_async_t *h)
{
	node *n = h->data;
	bool stopping;

	run_inbox(n);
	pthread_mutex_lock(&n->mu);
	stopping = n->stopping;
	pthread_mutex_unlock(&n->mu);
	/* Once a handover is under way the tick sees it through (and says
	 * how it ended): the persist thread's saves wake this callback too. */
	if (stopping && !n->draining && !transfer_before_stop(n, now_ms())) {
		begin_close(n);
		/* Completions failed just now post their replies: run them. */
		run_inbox(n);
	}
	check_readers(n, now_ms());
}

static void *loop_main(void *arg)
{
	node *n = arg;
	sigset_t pipe;

	pthread_setname_np(pthread_self(), "raft-loop");
	/* A write to a connection the peer closed fails with EPIPE here
	 * instead of killing the process: libuv's writes cannot ask for
	 * MSG_NOSIGNAL, and a program using the runtime (a test) need not
	 * ignore SIGPIPE. More likely since the persist thread writes too
	 * (transport_send_direct): its write after the peer's FIN draws the
	 * reset that the loop's next write would meet. */
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, NULL);

	uv_run(&n->loop, UV_RUN_DEFAULT);
	if (!n->closing) {
		/* The loop ended without a stop being asked for (nothing
		 * calls uv_stop today; a fault keeps the loop answering):
		 * close down all the same. */
		pthread_mutex_lock(&n->mu);
		n->stopping = true;
		pthread_mutex_unlock(&n->mu);
		begin_close(n);
		run_inbox(n);
		uv_run(&n->loop, UV_RUN_DEFAULT);
	}
	/* After this last run, snapshot I/O of the apply thread is refused. */
	pthread_mutex_lock(&n->mu);
	n->loop_done = true;
	pthread_mutex_unlock(&n->mu);
	run_inbox(n);
	return NULL;
}

/* ---- client requests (loop thread) ---- */

/* A client request being answered later. */
typedef struct pending_reply {
	node *n;
	transport_conn *conn;
	uint64_t id;
	int status;
	int64_t result;
	uint64_t index;
	uint8_t *query; /* QueryRequest data, for after the barrier */
	size_t query_len;
} pending_reply;

static void reply_error(transport_conn *conn, uint64_t id, int status)
{
	Transportpb__Response resp = TRANSPORTPB__RESPONSE__INIT;

	resp.id = id;
	resp.error = status;
	resp.error_msg = (char *)node_strerror(status);
	transport_reply(conn, &resp);
}

static void send_propose_reply(node *n, void *arg, bool stopping)
{
	pending_reply *pr = arg;
	Transportpb__Response resp = TRANSPORTPB__RESPONSE__INIT;

	resp.id = pr->id;
	resp.error = pr->status;
	resp.error_msg = (char *)node_strerror(pr->status);
	resp.result = pr->result;
	resp.index = pr->index;
	transport_reply(pr->conn, &resp);
	transport_conn_unref(pr->conn);
	free(pr);
}

static void on_propose_done(void *arg, int status, int64_t result, uint64_t index)
{
	pending_reply *pr = arg;

	pr->status = status;
	pr->result = result;
	pr->index = index;
	/* May run on the apply thread: the reply goes out on the loop thread. */
	post_call(pr->n, send_propose_reply, pr);
}

static void send_query_reply(node *n, void *arg, bool stopping)
{
	pending_reply *pr = arg;
	Transportpb__Response resp = TRANSPORTPB__RESPONSE__INIT;
	uint8_t *out = NULL;
	size_t out_len = 0;
	int rc = pr->status;

	if (rc == 0 && !n->sm->query)
		rc = RAFT_EINVAL;
	if (rc == 0)
		rc = n->sm->query(n->sm->ctx, pr->query, pr->query_len, &out, &out_len);
	resp.id = pr->id;
	resp.error = rc;
	resp.error_msg = (char *)node_strerror(rc);
	resp.value.data = out;
	resp.value.len = out_len;
	resp.index = atomic_load(&n->applied);
	transport_reply(pr->conn, &resp);
	transport_conn_unref(pr->conn);
	free(out);
	free(pr->query);
	free(pr);
}

static void on_query_ready(void *arg, int status)
{
	pending_reply *pr = arg;

	pr->status = status;
	post_call(pr->n, send_query_reply, pr);
}

static const char *progress_name(raft_progress_state s)
{
	return s == RAFT_PROGRESS_PROBE	      ? "probe"
	       : s == RAFT_PROGRESS_REPLICATE ? "replicate"
					      : "snapshot";
}

static void reply_status(node *n, transport_conn *conn, uint64_t id)
{
	Transportpb__Response resp = TRANSPORTPB__RESPONSE__INIT;
	Transportpb__NodeStatus ns = TRANSPORTPB__NODE_STATUS__INIT;
	Transportpb__AdmitStatus as;
	Transportpb__PeerStatus ps[16], *pps[16];
	raft_snapshot_meta meta;
	uint64_t snap_len;
	raft_status st;
	char why[sizeof(n->fault_why) + 32];
	int rc;

	raft_get_status(n->r, &st);
	ns.id = st.id;
	ns.role = (char *)raft_role_name(st.role);
	ns.term = st.term;
	ns.leader = st.leader;
	ns.commit = st.commit;
	ns.applied = atomic_load(&n->applied);
	ns.first_index = st.first_index;
	ns.last_index = st.last_index;
	node_persist_lock(n->pq);
	rc = store_snapshot_meta(n->st, &meta, &snap_len);
	node_persist_unlock(n->pq);
	if (rc == 0) {
		ns.snapshot_index = meta.index;
		ns.snapshot_bytes = snap_len;
		raft_conf_state_free_contents(&meta.conf);
	}
	for (size_t i = 0; i < st.n_peers && i < 16; i++) {
		transportpb__peer_status__init(&ps[i]);
		ps[i].id = st.peers[i].id;
		ps[i].match = st.peers[i].match;
		ps[i].next = st.peers[i].next;
		ps[i].state = (char *)progress_name(st.peers[i].state);
		ps[i].active = st.peers[i].recent_active;
		ps[i].learner = st.peers[i].learner;
		ps[i].connected =
		    st.peers[i].id == st.id || transport_peer_connected(n->tp, st.peers[i].id);
		pps[i] = &ps[i];
	}
	ns.n_peers = st.n_peers < 16 ? st.n_peers : 16;
	if (st.n_peers == 0) {
		/* Not the leader: no progress to report, but the members as this
		 * node knows them, learners too, with its own connections. */
		uint64_t ids[16];
		size_t nv = node_voters(n, ids, 16), nl;

		nv = nv < 16 ? nv : 16;
		nl = node_learners(n, ids + nv, 16 - nv);
		nl = nl < 16 - nv ? nl : 16 - nv;
		for (size_t i = 0; i < nv + nl; i++) {
			transportpb__peer_status__init(&ps[i]);
			ps[i].id = ids[i];
			ps[i].state = ""; /* only the leader tracks progress */
			ps[i].learner = i >= nv;
			ps[i].connected = ids[i] == st.id || transport_peer_connected(n->tp, ids[i]);
			pps[i] = &ps[i];
		}
		ns.n_peers = nv + nl;
	}
	ns.peers = pps;
	ns.cluster = (char *)n->cfg->cluster;
	node_admission_status(n, &st, &as);
	ns.admit = &as;
	ns.tick_fires = n->tick_fires;
	if (n->sm->status) {
		node_sm_status sms = {0};

		n->sm->status(n->sm->ctx, &sms);
		ns.dropped_bytes = sms.dropped_bytes;
		ns.dropped_entries = sms.dropped_entries;
	}
	if (atomic_load(&n->fault)) {
		/* With the reason once its writer published it (a fault set
		 * a moment ago may not have one yet). */
		snprintf(why, sizeof(why), "stopped applying: %s",
			 atomic_load(&n->fault_why_set) ? n->fault_why
							: "the state machine failed on this node");
		ns.error = why;
	} else if (st.leader == 0) {
		ns.error = "no leader known";
	} else {
		ns.healthy = true;
		ns.error = "";
	}
	resp.id = id;
	resp.status = &ns;
	transport_reply(conn, &resp);
}

/* raftfs snapshot: the apply thread snapshots at the next entry it applies;
 * an empty entry is proposed so that there is one (Raft §7). */
static void request_snapshot(node *n, transport_conn *conn, uint64_t id)
{
	static const uint8_t none;
	Transportpb__Response resp = TRANSPORTPB__RESPONSE__INIT;
	int rc = n->sm->snapshot ? 0 : RAFT_EINVAL;

	if (rc == 0) {
		atomic_store(&n->snap_wanted, true);
		rc = raft_propose(n->r, &none, 0, NULL, NULL);
	}
	resp.id = id;
	resp.error = rc;
	resp.error_msg = (char *)node_strerror(rc);
	resp.index = atomic_load(&n->applied);
	transport_reply(conn, &resp);
}

static void on_request(void *arg, transport_conn *conn, const Transportpb__Request *req)
{
	node *n = arg;
	pending_reply *pr;
	int rc;

	switch (req->op_case) {
	case TRANSPORTPB__REQUEST__OP_STATUS:
		reply_status(n, conn, req->id);
		return;
	case TRANSPORTPB__REQUEST__OP_SNAPSHOT:
		request_snapshot(n, conn, req->id);
		return;
	case TRANSPORTPB__REQUEST__OP_MEMBER:
		node_members_request(n, conn, req);
		return;
	case TRANSPORTPB__REQUEST__OP_PROPOSE:
	case TRANSPORTPB__REQUEST__OP_QUERY:
		break;
	default:
		reply_error(conn, req->id, RAFT_EINVAL);
		return;
	}
	pr = calloc(1, sizeof(*pr));
	if (!pr) {
		reply_error(conn, req->id, NODE_ENOMEM);
		return;
	}
	pr->n = n;
	pr->conn = conn;
	pr->id = req->id;
	transport_conn_ref(conn);
	if (req->op_case == TRANSPORTPB__REQUEST__OP_PROPOSE) {
		rc = node_start(n, req->propose->data.data, req->propose->data.len,
				req->propose->timeout_ms, on_propose_done, pr, NULL, NULL);
	} else {
		pr->query_len = req->query->data.len;
		pr->query = malloc(pr->query_len ? pr->query_len : 1);
		if (!pr->query) {
			rc = NODE_ENOMEM;
		} else {
			if (pr->query_len) /* protobuf-c: an empty field is (NULL, 0) */
				memcpy(pr->query, req->query->data.data, pr->query_len);
			if (req->query->linearizable) {
				rc = node_read_index(n, on_query_ready, pr);
			} else {
				send_query_reply(n, pr, false);
				return;
			}
		}
	}
	if (rc < 0) {
		reply_error(conn, req->id, rc);
		transport_conn_unref(conn);
		free(pr->query);
		free(pr);
	}
}

/* ---- lifecycle ---- */

/* A snapshot from the leader is installed in the store before the state
 * machine restores it: after a crash in between, the state machine is
 * behind the store's snapshot, whose log entries are gone. Restore it now. */
static int restore_from_store(node *n, char *err, size_t errlen)
{
	raft_snapshot_meta meta;
	uint64_t len, index;
	int rc;

	rc = store_snapshot_meta(n->st, &meta, &len);
	if (rc < 0) {
		snprintf(err, errlen, "%s", store_errmsg(n->st));
		return rc;
	}
	raft_conf_state_free_contents(&meta.conf);
	n->last_snap = meta.index;
	atomic_store(&n->image_bytes, len);
	/* The state machine replays the log after what it has applied (an fs
	 * state machine dropped after a power loss starts again at 0): the log
	 * must reach back to it. The store compacts only up to its snapshot,
	 * so this cannot happen; if it does, refuse rather than skip entries. */
	if (meta.index <= atomic_load(&n->applied) &&
	    atomic_load(&n->applied) + 1 < store_first_index(n->st)) {
		snprintf(err, errlen,
			 "the state machine (applied %llu) is behind the log, which starts at "
			 "%llu, and the stored snapshot (at %llu) does not cover the gap",
			 (unsigned long long)atomic_load(&n->applied),
			 (unsigned long long)store_first_index(n->st),
			 (unsigned long long)meta.index);
		return RAFT_EINVAL;
	}
	if (meta.index <= atomic_load(&n->applied))
		return 0;
	if (!n->sm->restore) {
		snprintf(err, errlen,
			 "the store holds a snapshot at %llu beyond the state machine "
			 "(applied %llu), which cannot restore snapshots",
			 (unsigned long long)meta.index,
			 (unsigned long long)atomic_load(&n->applied));
		return RAFT_EINVAL;
	}
	index = meta.index;
	rc = node_snap_restore_stream(n, true, &index, &len);
	if (rc < 0) {
		snprintf(err, errlen, "restoring the stored snapshot at %llu: %s",
			 (unsigned long long)meta.index, node_any_strerror(rc));
		return rc;
	}
	rlog_write(RLOG_INFO, "state restored from the stored snapshot at %llu (%llu bytes)",
		   (unsigned long long)index, (unsigned long long)len);
	atomic_store(&n->applied, index);
	return 0;
}

/* Entries of up to 1 MiB are allocated on one thread and freed on another
 * (FUSE thread -> loop -> apply) at hundreds of MiB/s. glibc's defaults
 * serve each from fresh pages (mmap, or memory trimmed back to the system
 * and faulted in again): 50,000 page faults and a fifth of the nodes' CPU
 * per 64 MiB written (bench/fs/README.md). Buffers below 32 MiB come from
 * the heap, and up to 64 MiB of free heap is kept for reuse. */
static void malloc_tune(void)
{
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

int node_new(const node_config *cfg, const node_sm *sm, node **out, char *err, size_t errlen)
{
	static pthread_once_t tuned = PTHREAD_ONCE_INIT;
	transport_callbacks cb = {0};
	uint64_t ids[CONFIG_MAX_PEERS];
	raft_config rc_cfg = {0};
	raft_hard_state hs;
	char dir[PATH_MAX + 8];
	node *n;
	int rc;

	pthread_once(&tuned, malloc_tune);
	n = calloc(1, sizeof(*n));
	if (!n) {
		snprintf(err, errlen, "out of memory");
		return NODE_ENOMEM;
	}
	n->cfg = cfg;
	n->sm = sm;
	node_stages_init(&n->stages);
	n->test_stall = getenv("RAFTFS_TEST_STALL") && strcmp(getenv("RAFTFS_TEST_STALL"), "0");
	n->elide_forget =
	    getenv("RAFTFS_TEST_ELIDE_LACK") && !strcmp(getenv("RAFTFS_TEST_ELIDE_LACK"), "1");
	pthread_mutex_init(&n->mu, NULL);
	pthread_mutex_init(&n->amu, NULL);
	pthread_cond_init(&n->acv, NULL);
	pthread_mutex_init(&n->smu, NULL);
	pthread_cond_init(&n->scv, NULL);
	/* A fresh client id per process run: sequence numbers restart at 1
	 * and must never meet an old run's entries in the duplicate table. */
	while (n->client_id == 0)
		if (getrandom(&n->client_id, sizeof(n->client_id), 0) != sizeof(n->client_id))
			n->client_id = uv_hrtime() ^ ((uint64_t)getpid() << 32);
	/* A proposal is lost without a leader change only when its forward
	 * to the leader is dropped: retry rarely, so a slow commit under load
	 * is not doubled by retries. */
	n->retry_ms = 5ull * cfg->election_ticks * cfg->tick_ms;
	if (n->retry_ms < 1000)
		n->retry_ms = 1000;
	atomic_store(&n->applied, sm->applied_index(sm->ctx));
	rc = node_admission_init(n);
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}

	snprintf(dir, sizeof(dir), "%s/raft", cfg->data_dir);
	rc = store_open(dir, &n->st, err, errlen);
	if (rc < 0)
		goto fail;
	if (store_open_cut(n->st))
		rlog_write(RLOG_INFO,
			   "store: log cut at entry %llu (a save cut short by a crash: its "
			   "value-log data never became durable, and it was never acknowledged)",
			   (unsigned long long)store_open_cut(n->st));
	/* The stored membership may hold changes up to any entry handed out
	 * before a crash, i.e. up to the last in the log. */
	n->conf_index = store_last_index(n->st);
	/* The persist thread idles until the loop queues its first save:
	 * until then this thread may use the store without the lock. */
	rc = node_persist_new(n->st, persist_wake, n, &n->pq);
	if (rc < 0) {
		snprintf(err, errlen, "persist thread for %s: %s", dir, strerror(-rc));
		goto fail;
	}
	rc = node_members_init(n, err, errlen);
	if (rc < 0)
		goto fail;
	for (size_t i = 0; i < cfg->n_peers; i++)
		ids[i] = cfg->peers[i].id;
	rc_cfg.id = cfg->id;
	rc_cfg.peers = ids;
	rc_cfg.n_peers = cfg->n_peers;
	rc_cfg.election_ticks = cfg->election_ticks;
	rc_cfg.heartbeat_ticks = cfg->heartbeat_ticks;
	rc_cfg.max_msg_bytes = cfg->max_msg_bytes;
	rc_cfg.max_inflight = cfg->max_inflight;
	rc_cfg.pre_vote = cfg->pre_vote;
	rc_cfg.check_quorum = cfg->check_quorum;
	rc_cfg.lease_reads = cfg->lease_reads;
	rc_cfg.storage = node_persist_storage(n->pq);
	rc_cfg.async_storage = true;
	/* The commit index is saved lazily (see handle_ready), so the state
	 * machine may be ahead of the saved one: the core is told the lower
	 * of the two, and the apply thread skips entries applied already. */
	store_hard_state(n->st, &hs);
	n->hs = hs;
	rc = restore_from_store(n, err, errlen);
	if (rc < 0)
		goto fail;
	rc_cfg.applied = atomic_load(&n->applied);
	if (hs.commit < n->last_snap) {
		/* A snapshot is committed by definition, but the commit index
		 * is saved lazily: killed right after a local snapshot at N
		 * (its log compacted to N - snapshot_trailing), the store can
		 * hold a commit index below N, and the core, which reads the
		 * saved one, would find the state machine ahead of it and of
		 * the log and refuse to start (seen in snapshot.crash). Save
		 * the truth before the core reads it. */
		hs.commit = n->last_snap;
		rc = store_set_hard_state(n->st, &hs);
		if (rc < 0) {
			snprintf(err, errlen, "saving the hard state in %s: %s", dir,
				 store_errmsg(n->st));
			goto fail;
		}
		n->hs = hs;
	}
	if (rc_cfg.applied > hs.commit)
		rc_cfg.applied = hs.commit;
	rc_cfg.seed = n->client_id;
	rc = raft_new(&rc_cfg, &n->r);
	if (rc < 0) {
		snprintf(err, errlen, "raft core for node %llu in %s: %s",
			 (unsigned long long)cfg->id, dir, raft_strerror(rc));
		goto fail;
	}
	atomic_store(&n->term, raft_term(n->r));
	rc = uv_loop_init(&n->loop);
	if (rc < 0) {
		snprintf(err, errlen, "event loop: %s", uv_strerror(rc));
		goto fail;
	}
	cb.arg = n;
	cb.on_raft = on_raft_msg;
	cb.on_request = on_request;
	cb.on_snap_chunk = node_snap_on_chunk;
	rc = transport_new(&n->loop, cfg, n->client_id, &cb, &n->tp);
	if (rc < 0) {
		snprintf(err, errlen, "transport: cannot resolve the peer addresses");
		uv_loop_close(&n->loop);
		goto fail;
	}
	node_members_attach(n, err, errlen);
	n->ss = snap_streams_new(n->tp, n->st, node_persist_mutex(n->pq), node_snap_report,
				 node_snap_wake, n);
	if (!n->ss) {
		snprintf(err, errlen, "out of memory");
		transport_free(n->tp);
		uv_loop_close(&n->loop);
		rc = NODE_ENOMEM;
		goto fail;
	}
	*out = n;
	return 0;
fail:
	if (n->r)
		raft_free(n->r);
	node_persist_free(n->pq);
	if (n->st)
		store_close(n->st);
	node_members_free(n);
	node_admit_free(n->adm);
	pthread_mutex_destroy(&n->mu);
	pthread_mutex_destroy(&n->amu);
	pthread_cond_destroy(&n->acv);
	pthread_mutex_destroy(&n->smu);
	pthread_cond_destroy(&n->scv);
	free(n);
	return rc;
}

int node_launch(node *n)
{
	int rc;

	uv_async_init(&n->loop, &n->async, on_async);
	n->async.data = n;
	uv_timer_init(&n->loop, &n->tick);
	n->tick.data = n;
	uv_prepare_init(&n->loop, &n->prep);
	n->prep.data = n;
	uv_check_init(&n->loop, &n->chk);
	n->chk.data = n;
	/* RAFTFS_DIRECT_ACKS=0: every acknowledgement through the loop, as
	 * before session 9 (for A/B measurements; README-node.md). */
	if (!getenv("RAFTFS_DIRECT_ACKS") || strcmp(getenv("RAFTFS_DIRECT_ACKS"), "0"))
		node_persist_set_sender(n->pq, persist_send, n);
	rc = transport_start(n->tp);
	if (rc < 0) {
		/* Close the handles opened so far, so node_free can close the loop. */
		n->stopping = true;
		begin_close(n);
		uv_run(&n->loop, UV_RUN_DEFAULT);
		return rc;
	}
	n->tick_ns = uv_hrtime();
	n->hs_flush_ns = n->tick_ns;
	n->quiet_off = getenv("RAFTFS_QUIET_TICKS") && !strcmp(getenv("RAFTFS_QUIET_TICKS"), "0");
	uv_timer_start(&n->tick, on_tick, n->cfg->tick_ms, n->cfg->tick_ms);
	uv_prepare_start(&n->prep, on_prepare);
	uv_check_start(&n->chk, on_check);
	if (pthread_create(&n->apply_thread, NULL, apply_main, n) != 0)
		return -EAGAIN;
	if (pthread_create(&n->loop_thread, NULL, loop_main, n) != 0) {
		pthread_mutex_lock(&n->amu);
		n->apply_stop = true;
		pthread_cond_signal(&n->acv);
		pthread_mutex_unlock(&n->amu);
		pthread_join(n->apply_thread, NULL);
		return -EAGAIN;
	}
	n->launched = true;
	rlog_write(RLOG_INFO, "node %llu of cluster '%s' listening on %s:%u, applied %llu",
		   (unsigned long long)n->cfg->id, n->cfg->cluster, n->cfg->listen_host,
		   n->cfg->listen_port, (unsigned long long)atomic_load(&n->applied));
	return 0;
}

void node_stop(node *n)
{
	if (!n->launched || n->stopped)
		return;
	pthread_mutex_lock(&n->mu);
	n->stopping = true;
	if (!n->async_closed)
		uv_async_send(&n->async);
	pthread_mutex_unlock(&n->mu);
	pthread_join(n->loop_thread, NULL);
	pthread_mutex_lock(&n->amu);
	n->apply_stop = true;
	pthread_cond_signal(&n->acv);
	pthread_mutex_unlock(&n->amu);
	pthread_join(n->apply_thread, NULL);
	n->stopped = true;
	node_admission_report(n);
	node_elide_report(n);
	node_stages_print(&n->stages, n->cfg->id);
	if (n->stages.on)
		rlog_write(RLOG_INFO,
			   "node %llu loop: %llu Readies; %llu saves of %llu entries, %.1f MiB, "
			   "%.1f ms; sending %.1f ms; hand-off to apply %.1f ms; stepping peer "
			   "messages %.1f ms",
			   (unsigned long long)n->cfg->id, (unsigned long long)n->lp.readies,
			   (unsigned long long)n->lp.saves, (unsigned long long)n->lp.saved_entries,
			   n->lp.saved_bytes / 1048576.0, n->lp.save_ns / 1e6, n->lp.send_ns / 1e6,
			   n->lp.hand_ns / 1e6, n->lp.step_ns / 1e6);
}

void node_free(node *n)
{
	apply_batch *b, *next;

	if (!n)
		return;
	node_stop(n);
	run_inbox(n);
	/* The loop is gone, so nothing queues saves any more: once the last
	 * ones are done the store is this thread's (snap_streams_free). */
	node_persist_drain(n->pq);
	node_persist_set_sender(n->pq, NULL, NULL); /* the transport goes below */
	node_held_free(n);
	for (b = n->aq_head; b; b = next) {
		next = b->next;
		apply_batch_free(b);
	}
	snap_streams_free(n->ss);
	transport_free(n->tp);
	uv_loop_close(&n->loop);
	raft_free(n->r);
	/* Finishes the saves still queued (the last hard state among them). */
	node_persist_free(n->pq);
	store_close(n->st);
	node_members_free(n);
	node_admit_free(n->adm);
	pthread_mutex_destroy(&n->mu);
	pthread_mutex_destroy(&n->amu);
	pthread_cond_destroy(&n->acv);
	pthread_mutex_destroy(&n->smu);
	pthread_cond_destroy(&n->scv);
	free(n);
}

void node_get_state(node *n, uint64_t *term, bool *is_leader)
{
	if (term)
		*term = atomic_load(&n->term);
	if (is_leader)
		*is_leader = atomic_load(&n->is_leader);
}

uint64_t node_applied(node *n)
{
	return atomic_load(&n->applied);
}

uint64_t node_client_id(node *n)
{
	return n->client_id; /* set in node_new, never changed */
}

uint64_t node_saved_commit(node *n)
{
	/* A log cut at open (store_open_cut) never held committed entries,
	 * but a commit index beyond the log could not be applied from it. */
	uint64_t last = store_last_index(n->st);
	uint64_t c = n->hs.commit < last ? n->hs.commit : last;

	return c > n->last_snap ? c : n->last_snap;
}

uint64_t node_unanswered_ms(node *n)
{
	uint64_t since = 0, now = now_ms(), committed;
	const proposal *p;

	/* Committed ones lead the list while the apply lags (they leave it
	 * when applied): the first that is not is kept (node_pending.c). */
	pthread_mutex_lock(&n->mu);
	p = node_pending_unanswered(n);
	if (p)
		since = p->start_ms;
	pthread_mutex_unlock(&n->mu);
	if (!since)
		return 0;
	committed = atomic_load(&n->own_commit_ms);
	if (committed > since)
		since = committed;
	return now > since ? now - since : 0;
}

uint64_t node_apply_lag_ms(node *n)
{
	uint64_t front = atomic_load(&n->apply_front_ms), now = now_ms();

	return front && now > front ? now - front : 0;
}

int node_fault(node *n)
{
	return atomic_load(&n->fault);
}

uint64_t node_peer_link(node *n, uint64_t id)
{
	return transport_peer_link(n->tp, id);
}

void node_set_msg_filter(node *n, node_msg_filter filter, void *arg)
{
	n->msg_filter = filter;
	n->msg_filter_arg = arg;
}

uint64_t node_unsaved_max(node *n)
{
	return atomic_load(&n->unsaved_max);
}

uint64_t node_direct_acks(node *n)
{
	return node_persist_direct_sent(n->pq);
}

uint64_t node_held_forwarded(node *n)
{
	return atomic_load(&n->held_props);
}

uint64_t node_apply_queue_max(node *n)
{
	uint64_t v;

	pthread_mutex_lock(&n->amu);
	v = n->aq_bytes_max;
	pthread_mutex_unlock(&n->amu);
	return v;
}

uint64_t node_refused(node *n)
{
	return atomic_load(&n->n_refused);
}
