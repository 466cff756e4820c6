/* raft.c — creation, roles, elections and message dispatch of the Raft core.
 *
 * Replication and the leader's message handlers live in leader.c, the
 * follower's and candidate's in follower.c, Ready/advance in ready.c.
 */
#include "raft_internal.h"

#include <stdlib.h>
#include <string.h>

#include "quorum.h"

const char *raft_role_name(raft_role role)
{
	switch (role) {
	case RAFT_FOLLOWER:
		return "follower";
	case RAFT_CANDIDATE:
		return "candidate";
	case RAFT_LEADER:
		return "leader";
	case RAFT_PRE_CANDIDATE:
		return "pre-candidate";
	}
	return "?";
}

/* splitmix64: small, fast, and deterministic from cfg->seed and the id. */
uint64_t raft_next_random(raft *r)
{
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* §5.2: a fresh random timeout in [election, 2*election) on every reset, so
 * split votes are unlikely to repeat. */
static void reset_randomized_election_timeout(raft *r)
{
	r->randomized_election_timeout =
	    r->election_ticks + (int)(raft_next_random(r) % (uint64_t)r->election_ticks);
}

raft_peer *raft_peer_find(raft *r, uint64_t id)
{
	for (size_t i = 0; i < r->n_peers; i++)
		if (r->peers[i].id == id)
			return &r->peers[i];
	return NULL;
}

raft_peer *raft_self(raft *r)
{
	return raft_peer_find(r, r->id);
}

size_t raft_n_voters(const raft *r)
{
	size_t n = 0;
	for (size_t i = 0; i < r->n_peers; i++)
		n += !r->peers[i].learner;
	return n;
}

static bool promotable(raft *r)
{
	raft_peer *p = raft_self(r);
	return p && !p->learner && !r->log.pending_snap;
}

static void free_peers(raft *r)
{
	for (size_t i = 0; i < r->n_peers; i++)
		raft_progress_destroy(&r->peers[i].pr);
	free(r->peers);
	r->peers = NULL;
	r->n_peers = 0;
}

int raft_add_peer(raft *r, uint64_t id, bool learner)
{
	if (id == 0 || raft_peer_find(r, id))
		return 0;
	if (r->n_peers >= RAFT_MAX_MEMBERS)
		return RAFT_EINVAL;
	raft_peer *p = realloc(r->peers, (r->n_peers + 1) * sizeof(*p));
	if (!p)
		return RAFT_ENOMEM;
	r->peers = p;
	raft_peer *np = &p[r->n_peers];
	memset(np, 0, sizeof(*np));
	np->id = id;
	np->learner = learner;
	/* No byte bound where messages have none (or one so big it overflows). */
	uint64_t window = r->max_msg_bytes <= UINT64_MAX / RAFT_INFLIGHT_MSGS_BYTES
				  ? RAFT_INFLIGHT_MSGS_BYTES * r->max_msg_bytes
				  : 0;
	int rc = raft_progress_init(&np->pr, r->max_inflight, window);
	if (rc != 0)
		return rc;
	raft_progress_reset(&np->pr, 0, r->log.last + 1);
	r->n_peers++;
	return 0;
}

/* Replaces the membership (from storage or a snapshot). */
static int set_conf(raft *r, const uint64_t *voters, size_t nv, const uint64_t *learners, size_t nl)
{
	free_peers(r);
	for (size_t i = 0; i < nv; i++) {
		int rc = raft_add_peer(r, voters[i], false);
		if (rc != 0)
			return rc;
	}
	for (size_t i = 0; i < nl; i++) {
		int rc = raft_add_peer(r, learners[i], true);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int raft_set_conf_state(raft *r, const raft_conf_state *cs)
{
	return set_conf(r, cs->voters, cs->n_voters, cs->learners, cs->n_learners);
}

static void clear_pending_reads(raft *r)
{
	for (size_t i = 0; i < r->n_pending_reads; i++)
		raft_msg_free_contents(&r->pending_reads[i]);
	r->n_pending_reads = 0;
}

/* Resets the per-term state (etcd raft.reset). */
static void reset(raft *r, uint64_t term)
{
	if (term != r->term) {
		RAFT_TRACE(r, TRACE_TERM, "term %llu -> %llu", (unsigned long long)r->term,
			   (unsigned long long)term);
		r->term = term;
		r->vote = 0;
	}
	r->lead = 0;
	r->election_elapsed = 0;
	r->heartbeat_elapsed = 0;
	reset_randomized_election_timeout(r);
	raft_abort_leader_transfer(r);
	r->lease_broken = false;
	for (size_t i = 0; i < r->n_peers; i++) {
		raft_peer *p = &r->peers[i];
		p->vote = 0;
		p->read_acked = 0;
		p->lease_tick = 0;
		raft_progress_reset(&p->pr, 0, r->log.last + 1);
		/* Only what is durable here counts (raft_persisted). */
		if (p->id == r->id)
			p->pr.match = r->log.stable;
	}
	r->pending_conf_index = 0;
	r->need_bcast = false;
	raft_read_only_reset(&r->ro);
	clear_pending_reads(r);
}

void raft_become_follower(raft *r, uint64_t term, uint64_t lead)
{
	reset(r, term);
	r->lead = lead;
	if (r->role != RAFT_FOLLOWER)
		RAFT_TRACE(r, TRACE_LEAD, "%s -> follower (leader %llu)", raft_role_name(r->role),
			   (unsigned long long)lead);
	r->role = RAFT_FOLLOWER;
}

static void become_candidate(raft *r)
{
	reset(r, r->term + 1);
	r->vote = r->id;
	RAFT_TRACE(r, TRACE_LEAD, "%s -> candidate", raft_role_name(r->role));
	r->role = RAFT_CANDIDATE;
}

/* Pre-vote (thesis §9.6): asks whether an election could be won without
 * touching term or vote, so a partitioned node cannot disrupt the cluster. */
static void become_pre_candidate(raft *r)
{
	for (size_t i = 0; i < r->n_peers; i++)
		r->peers[i].vote = 0;
	r->lead = 0;
	r->need_bcast = false;
	RAFT_TRACE(r, TRACE_LEAD, "%s -> pre-candidate", raft_role_name(r->role));
	r->role = RAFT_PRE_CANDIDATE;
}

void raft_become_leader(raft *r)
{
	reset(r, r->term);
	r->lead = r->id;
	r->role = RAFT_LEADER;
	raft_peer *self = raft_self(r);
	if (self) {
		raft_progress_become_replicate(&self->pr);
		self->pr.recent_active = true;
	}
	r->pending_conf_index = r->log.last;
	RAFT_TRACE(r, TRACE_LEAD, "became leader at last %llu", (unsigned long long)r->log.last);
	/* §5.4.2 / §8: an entry of the new term lets earlier entries commit
	 * and tells the leader what is committed, so reads can be served. */
	raft_entry noop = {.type = RAFT_ENTRY_NORMAL};
	raft_append_entries(r, &noop, 1);
}

/* Records a vote reply and tallies the election. */
raft_vote_result raft_poll(raft *r, uint64_t id, raft_msg_type type, bool granted)
{
	raft_peer *p = raft_peer_find(r, id);
	if (p && p->vote == 0)
		p->vote = granted ? 1 : -1;
	RAFT_TRACE(r, TRACE_VOTE, "%s from %llu: %s", raft_msg_type_name(type),
		   (unsigned long long)id, granted ? "granted" : "rejected");
	size_t g = 0, rej = 0;
	for (size_t i = 0; i < r->n_peers; i++) {
		if (r->peers[i].learner)
			continue;
		g += r->peers[i].vote == 1;
		rej += r->peers[i].vote == -1;
	}
	return raft_quorum_vote_result(g, rej, raft_n_voters(r));
}

void raft_campaign_type(raft *r, raft_msg_type type, bool transfer)
{
	uint64_t term;
	raft_msg_type resp;
	if (type == RAFT_MSG_PRE_VOTE) {
		become_pre_candidate(r);
		term = r->term + 1; /* the term we would campaign in */
		resp = RAFT_MSG_PRE_VOTE_RESP;
	} else {
		become_candidate(r);
		term = r->term;
		resp = RAFT_MSG_VOTE_RESP;
	}
	if (raft_poll(r, r->id, resp, true) == RAFT_VOTE_WON) {
		/* A single voter wins at once. */
		if (type == RAFT_MSG_PRE_VOTE)
			raft_campaign_type(r, RAFT_MSG_VOTE, transfer);
		else
			raft_become_leader(r);
		return;
	}
	uint64_t last = r->log.last, last_term = raft_log_last_term(&r->log);
	for (size_t i = 0; i < r->n_peers; i++) {
		raft_peer *p = &r->peers[i];
		if (p->id == r->id || p->learner)
			continue;
		RAFT_TRACE(r, TRACE_VOTE, "sends %s for term %llu to %llu",
			   raft_msg_type_name(type), (unsigned long long)term,
			   (unsigned long long)p->id);
		raft_msg *m = raft_send(r, type, p->id);
		if (!m)
			return;
		m->term = term;
		m->index = last;
		m->log_term = last_term;
		if (transfer && type == RAFT_MSG_VOTE)
			raft_msg_set_context(m, RAFT_CAMPAIGN_TRANSFER,
					     strlen(RAFT_CAMPAIGN_TRANSFER));
	}
}

bool raft_in_lease(const raft *r)
{
	if (!r->check_quorum)
		return false;
	/* Just started: before a crash this node may have acknowledged a
	 * leader whose lease still runs (lease reads only). */
	if (r->lease_reads && r->tick < (uint64_t)r->election_ticks)
		return true;
	return r->lead != 0 && r->election_elapsed < r->election_ticks;
}

int raft_lease_ticks(int election_ticks)
{
	int margin = election_ticks / 4 > 2 ? election_ticks / 4 : 2;

	return election_ticks > margin ? election_ticks - margin : 0;
}

void raft_hup(raft *r, bool transfer)
{
	if (r->role == RAFT_LEADER)
		return;
	if (!promotable(r)) {
		RAFT_TRACE(r, TRACE_TIMR, "not promotable: no campaign");
		return;
	}
	/* A committed membership change not yet applied would change who
	 * votes: wait until it is in effect (etcd). */
	if (r->log.committed > r->log.applied &&
	    raft_log_has_conf_change(&r->log, r->log.applied + 1, r->log.committed)) {
		RAFT_TRACE(r, TRACE_TIMR, "no campaign: conf change committed but not applied");
		return;
	}
	if (r->pre_vote && !transfer)
		raft_campaign_type(r, RAFT_MSG_PRE_VOTE, false);
	else
		raft_campaign_type(r, RAFT_MSG_VOTE, transfer);
}

raft_msg *raft_send(raft *r, raft_msg_type type, uint64_t to)
{
	if (r->n_msgs == r->cap_msgs) {
		size_t cap = r->cap_msgs ? 2 * r->cap_msgs : 16;
		raft_msg *p = realloc(r->msgs, cap * sizeof(*p));
		if (!p)
			return NULL;
		r->msgs = p;
		r->cap_msgs = cap;
	}
	raft_msg *m = &r->msgs[r->n_msgs++];
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->to = to;
	m->from = r->id;
	m->term = r->term;
	return m;
}

void raft_msg_set_context(raft_msg *m, const void *ctx, size_t len)
{
	if (!len)
		return;
	m->context = malloc(len);
	if (m->context) {
		memcpy(m->context, ctx, len);
		m->context_len = len;
	}
}

int raft_add_read_state(raft *r, uint64_t index, const uint8_t *ctx, size_t len)
{
	if (r->n_rs == r->cap_rs) {
		size_t cap = r->cap_rs ? 2 * r->cap_rs : 8;
		raft_read_state *p = realloc(r->rs, cap * sizeof(*p));
		if (!p)
			return RAFT_ENOMEM;
		r->rs = p;
		r->cap_rs = cap;
	}
	raft_read_state *rs = &r->rs[r->n_rs];
	*rs = (raft_read_state){.index = index};
	if (len) {
		rs->ctx = malloc(len);
		if (!rs->ctx)
			return RAFT_ENOMEM;
		memcpy(rs->ctx, ctx, len);
		rs->ctx_len = len;
	}
	r->n_rs++;
	RAFT_TRACE(r, TRACE_READ, "read state at index %llu", (unsigned long long)index);
	return 0;
}

int raft_new(const raft_config *cfg, raft **out)
{
	*out = NULL;
	if (!cfg || cfg->id == 0 || !cfg->storage || cfg->heartbeat_ticks <= 0 ||
	    cfg->election_ticks <= cfg->heartbeat_ticks)
		return RAFT_EINVAL;
	raft *r = calloc(1, sizeof(*r));
	if (!r)
		return RAFT_ENOMEM;
	r->id = cfg->id;
	r->election_ticks = cfg->election_ticks;
	r->heartbeat_ticks = cfg->heartbeat_ticks;
	r->check_quorum = cfg->check_quorum;
	r->pre_vote = cfg->pre_vote;
	r->async_storage = cfg->async_storage;
	r->lease_ticks = raft_lease_ticks(cfg->election_ticks);
	r->lease_reads = cfg->lease_reads && cfg->check_quorum && r->lease_ticks > 0;
	r->max_msg_bytes = cfg->max_msg_bytes;
	r->max_inflight = cfg->max_inflight ? cfg->max_inflight : 1;
	r->rng = cfg->seed ^ (cfg->id * 0xd1342543de82ef95ull);
	r->trace_mask = raft_trace_mask_from_env();

	raft_hard_state hs;
	raft_conf_state cs;
	int rc = cfg->storage->initial_state(cfg->storage->ctx, &hs, &cs);
	if (rc != 0) {
		free(r);
		return rc;
	}
	rc = raft_log_init(&r->log, cfg->storage, cfg->applied);
	if (rc == 0) {
		if (cs.n_voters == 0)
			rc = set_conf(r, cfg->peers, cfg->n_peers, NULL, 0);
		else
			rc = raft_set_conf_state(r, &cs);
	}
	raft_conf_state_free_contents(&cs);
	if (rc == 0 && hs.commit > r->log.last)
		rc = RAFT_ECORRUPT; /* committed entries missing from storage */
	if (rc == 0 && cfg->applied > hs.commit && cfg->applied > r->log.committed)
		rc = RAFT_EINVAL; /* the state machine is ahead of the commit index */
	if (rc != 0) {
		raft_free(r);
		return rc;
	}
	raft_log_commit_to(&r->log, hs.commit);
	r->term = hs.term;
	r->vote = hs.vote;
	r->prev_hs =
	    (raft_hard_state){.term = r->term, .vote = r->vote, .commit = r->log.committed};
	raft_become_follower(r, r->term, 0);
	r->prev_role = RAFT_FOLLOWER;
	r->prev_lead = 0;
	RAFT_TRACE(r, TRACE_PERS, "start: commit %llu applied %llu last %llu, %zu peers",
		   (unsigned long long)r->log.committed, (unsigned long long)r->log.applied,
		   (unsigned long long)r->log.last, r->n_peers);
	*out = r;
	return 0;
}

/* Frees messages the core built: an append's or a forward's entries hold
 * references (blob_data), which raft_msg_free_contents releases. */
static void free_msgs(raft_msg *msgs, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		raft_msg_free_contents(&msgs[i]);
	*n = 0;
}

static void free_read_states(raft_read_state *rs, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		free(rs[i].ctx);
	*n = 0;
}

void raft_release_ready(raft *r)
{
	free_msgs(r->rd_msgs, &r->rd_n_msgs);
	free_read_states(r->rd_rs, &r->rd_n_rs);
	raft_entries_free(r->rd_committed_owned, r->rd_n_committed_owned);
	r->rd_committed_owned = NULL;
	r->rd_n_committed_owned = 0;
}

void raft_free(raft *r)
{
	if (!r)
		return;
	raft_release_ready(r);
	free_msgs(r->msgs, &r->n_msgs);
	free(r->msgs);
	free(r->rd_msgs);
	free_read_states(r->rs, &r->n_rs);
	free(r->rs);
	free(r->rd_rs);
	free(r->rd_ents);
	free(r->rd_committed);
	clear_pending_reads(r);
	free(r->pending_reads);
	raft_read_only_destroy(&r->ro);
	free_peers(r);
	raft_log_destroy(&r->log);
	free(r);
}

static void step_local(raft *r, raft_msg_type type)
{
	raft_msg m = {.type = type, .from = r->id};
	raft_step(r, &m);
}

static void tick_election(raft *r)
{
	r->election_elapsed++;
	if (promotable(r) && r->election_elapsed >= r->randomized_election_timeout) {
		RAFT_TRACE(r, TRACE_TIMR, "election timeout after %d ticks", r->election_elapsed);
		r->election_elapsed = 0;
		step_local(r, RAFT_MSG_HUP);
	}
}

static void tick_heartbeat(raft *r)
{
	r->heartbeat_elapsed++;
	r->election_elapsed++;
	if (r->election_elapsed >= r->election_ticks) {
		r->election_elapsed = 0;
		if (r->check_quorum)
			step_local(r, RAFT_MSG_CHECK_QUORUM);
		/* A transfer that did not finish within an election timeout
		 * is abandoned so proposals flow again (etcd). */
		if (r->role == RAFT_LEADER && r->lead_transferee != 0)
			raft_abort_leader_transfer(r);
	}
	if (r->role != RAFT_LEADER)
		return;
	if (r->heartbeat_elapsed >= r->heartbeat_ticks) {
		r->heartbeat_elapsed = 0;
		step_local(r, RAFT_MSG_BEAT);
	}
}

void raft_tick(raft *r)
{
	r->tick++;
	if (r->role == RAFT_LEADER)
		tick_heartbeat(r);
	else
		tick_election(r);
}

void raft_tick_stalled(raft *r, uint64_t k)
{
	if (r->role != RAFT_LEADER) {
		for (uint64_t i = 0; i < k; i++)
			raft_tick(r);
		return;
	}
	if (k == 0)
		return;
	r->tick += k;
	/* At the boundary, not past it: the next raft_tick checks the
	 * quorum (and abandons a stale transfer) once. */
	if ((uint64_t)r->election_elapsed + k >= (uint64_t)r->election_ticks)
		r->election_elapsed = r->election_ticks;
	else
		r->election_elapsed += (int)k;
	if ((uint64_t)r->heartbeat_elapsed + k >= (uint64_t)r->heartbeat_ticks) {
		r->heartbeat_elapsed = 0;
		step_local(r, RAFT_MSG_BEAT);
	} else {
		r->heartbeat_elapsed += (int)k;
	}
}

int raft_quiet_ticks(raft *r)
{
	int due;

	if (r->role == RAFT_LEADER) {
		/* tick_heartbeat: the beat on the tick that brings
		 * heartbeat_elapsed to heartbeat_ticks, the quorum check on the
		 * one that brings election_elapsed to election_ticks. */
		int beat = r->heartbeat_ticks - r->heartbeat_elapsed;
		int check = r->election_ticks - r->election_elapsed;

		due = beat < check ? beat : check;
	} else if (promotable(r)) {
		due = r->randomized_election_timeout - r->election_elapsed; /* tick_election */
	} else {
		due = r->election_ticks;
	}
	return due > 1 ? due : 1;
}

static bool is_local_msg(raft_msg_type t)
{
	return t == RAFT_MSG_HUP || t == RAFT_MSG_BEAT || t == RAFT_MSG_UNREACHABLE ||
	       t == RAFT_MSG_SNAP_STATUS || t == RAFT_MSG_CHECK_QUORUM;
}

static bool is_transfer_campaign(const raft_msg *m)
{
	size_t len = strlen(RAFT_CAMPAIGN_TRANSFER);
	return m->type == RAFT_MSG_VOTE && m->context_len == len &&
	       memcmp(m->context, RAFT_CAMPAIGN_TRANSFER, len) == 0;
}

/* Figure 2 "Rules for all servers" and RequestVote, with etcd's pre-vote
 * and leader-lease exceptions. Returns 0 when the message was consumed or
 * dropped here, 1 when the role's handler should see it. */
static int step_term(raft *r, const raft_msg *m, uint64_t mterm)
{
	if (mterm == 0)
		return 1;
	if (mterm > r->term) {
		bool leader_msg = m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT ||
				  m->type == RAFT_MSG_SNAP;
		if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE) {
			/* Check-quorum lease: while we hear from a leader, a
			 * vote request is from a disruptive node (§9.6). */
			if (!is_transfer_campaign(m) && raft_in_lease(r)) {
				RAFT_TRACE(r, TRACE_VOTE,
					   "ignores %s from %llu at term %llu: leader lease",
					   raft_msg_type_name(m->type), (unsigned long long)m->from,
					   (unsigned long long)mterm);
				return 0;
			}
		} else if (!leader_msg && r->lease_reads && r->role == RAFT_FOLLOWER &&
			   raft_in_lease(r)) {
			/* Lease reads (§6.4.1): taking a higher term from, say,
			 * a late answer would drop our leader and free our vote
			 * inside its lease. Only a leader of that term may move
			 * us (and exists only if the lease ran out). */
			RAFT_TRACE(r, TRACE_DROP, "ignores %s from %llu at term %llu: leader lease",
				   raft_msg_type_name(m->type), (unsigned long long)m->from,
				   (unsigned long long)mterm);
			return 0;
		}
		if (m->type == RAFT_MSG_PRE_VOTE) {
			/* A pre-vote never changes our term. */
		} else if (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject) {
			/* Granted pre-votes carry the future term; the term
			 * moves when the real election starts. */
		} else if (leader_msg) {
			raft_become_follower(r, mterm, m->from);
		} else {
			raft_become_follower(r, mterm, 0);
		}
		return 1;
	}
	if (mterm < r->term) {
		if ((r->check_quorum || r->pre_vote) &&
		    (m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_APP)) {
			/* A stale leader cut off by a partition may never see
			 * our higher term otherwise (it ignores its lost
			 * elections' votes): tell it, so it steps down. */
			raft_send(r, RAFT_MSG_APP_RESP, m->from);
		} else if (m->type == RAFT_MSG_PRE_VOTE || m->type == RAFT_MSG_VOTE) {
			/* Figure 2, RequestVote: "reply false if term <
			 * currentTerm", with currentTerm "for candidate to
			 * update itself". etcd answers only pre-votes and
			 * counts on the higher-term node to campaign itself;
			 * that node may be unable to (its campaign may reach
			 * only peers of an outdated configuration), and then
			 * the candidate would never learn the term it needs.
			 * The answer goes to a candidate, which has no leader
			 * to lose, so it cannot disrupt a healthy cluster. */
			raft_msg_type t =
			    m->type == RAFT_MSG_VOTE ? RAFT_MSG_VOTE_RESP : RAFT_MSG_PRE_VOTE_RESP;
			raft_msg *resp = raft_send(r, t, m->from);
			if (resp)
				resp->reject = true;
			RAFT_TRACE(r, TRACE_VOTE, "rejects %s from %llu: stale term %llu",
				   raft_msg_type_name(m->type), (unsigned long long)m->from,
				   (unsigned long long)mterm);
		} else {
			RAFT_TRACE(r, TRACE_DROP, "drops %s from %llu: stale term %llu",
				   raft_msg_type_name(m->type), (unsigned long long)m->from,
				   (unsigned long long)mterm);
		}
		return 0;
	}
	return 1;
}

/* RequestVote receiver (Figure 2, §5.2, §5.4.1). */
static void handle_vote(raft *r, const raft_msg *m, uint64_t mterm)
{
	raft_msg_type resp_type =
	    m->type == RAFT_MSG_VOTE ? RAFT_MSG_VOTE_RESP : RAFT_MSG_PRE_VOTE_RESP;
	bool can_vote = r->vote == m->from || (r->vote == 0 && r->lead == 0) ||
			(m->type == RAFT_MSG_PRE_VOTE && mterm > r->term);
	bool ok = can_vote && raft_log_is_up_to_date(&r->log, m->index, m->log_term);
	RAFT_TRACE(r, TRACE_VOTE, "%s %s from %llu (log %llu/%llu, ours %llu/%llu)",
		   ok ? "grants" : "rejects", raft_msg_type_name(m->type),
		   (unsigned long long)m->from, (unsigned long long)m->log_term,
		   (unsigned long long)m->index, (unsigned long long)raft_log_last_term(&r->log),
		   (unsigned long long)r->log.last);
	raft_msg *resp = raft_send(r, resp_type, m->from);
	if (!resp)
		return;
	if (ok) {
		/* A granted pre-vote answers in the asked term, or the
		 * pre-candidate would ignore it as stale. */
		resp->term = mterm;
		if (m->type == RAFT_MSG_VOTE) {
			r->election_elapsed = 0;
			r->vote = m->from;
		}
	} else {
		resp->reject = true;
	}
}

static int step(raft *r, const raft_msg *m)
{
	uint64_t mterm = is_local_msg(m->type) ? 0 : m->term;
	if (step_term(r, m, mterm) == 0)
		return 0;
	switch (m->type) {
	case RAFT_MSG_HUP:
		raft_hup(r, false);
		return 0;
	case RAFT_MSG_VOTE:
	case RAFT_MSG_PRE_VOTE:
		handle_vote(r, m, mterm);
		return 0;
	default:
		break;
	}
	switch (r->role) {
	case RAFT_LEADER:
		return raft_step_leader(r, m);
	case RAFT_CANDIDATE:
	case RAFT_PRE_CANDIDATE:
		return raft_step_candidate(r, m);
	case RAFT_FOLLOWER:
		return raft_step_follower(r, m);
	}
	return 0;
}

int raft_step(raft *r, const raft_msg *m)
{
	bool peer = m->from != 0 && m->from != r->id;
	if (peer && (m->type == RAFT_MSG_HUP || m->type == RAFT_MSG_BEAT ||
		     m->type == RAFT_MSG_CHECK_QUORUM)) {
		/* Timer events come from our own clock, never from the wire. */
		RAFT_TRACE(r, TRACE_DROP, "drops %s from peer %llu", raft_msg_type_name(m->type),
			   (unsigned long long)m->from);
		return 0;
	}
	/* Raft thesis §4.2.2: servers process incoming requests without
	 * consulting their configuration. A new member's leader or candidate
	 * may be unknown to a server whose applied configuration is older
	 * (it learns the newer one only from that leader), and refusing it
	 * can leave the new configuration without an electable quorum.
	 * Responses from unknown peers are still dropped: we asked no one
	 * outside our configuration. */
	bool request = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE ||
		       m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT ||
		       m->type == RAFT_MSG_SNAP;
	if (peer && !request && !raft_peer_find(r, m->from)) {
		RAFT_TRACE(r, TRACE_DROP, "drops %s from unknown peer %llu",
			   raft_msg_type_name(m->type), (unsigned long long)m->from);
		return 0;
	}
	int rc = step(r, m);
	/* A peer's forwarded proposal or read that cannot be served is lost
	 * like any message; only the local caller hears about the drop. */
	if (rc == RAFT_EPROPOSAL_DROPPED && peer)
		return 0;
	return rc;
}

/* raft_propose, and with refs raft_propose_refs. */
static int propose(raft *r, const void *data, size_t len, bool refs, uint64_t *index,
		   uint64_t *term)
{
	if (index)
		*index = 0;
	if (term)
		*term = 0;
	if (len > UINT32_MAX)
		return RAFT_EINVAL;
	raft_entry e = {.type = RAFT_ENTRY_NORMAL, .len = (uint32_t)len, .data = (uint8_t *)data};
	raft_msg m = {.type = RAFT_MSG_PROP,
		      .from = r->id,
		      .entries = &e,
		      .n_entries = 1,
		      .blob_data = refs && len > 0};
	int rc = step(r, &m);
	if (rc == 0 && r->role == RAFT_LEADER) {
		if (index)
			*index = r->log.last;
		if (term)
			*term = r->term;
	}
	return rc;
}

int raft_propose(raft *r, const void *data, size_t len, uint64_t *index, uint64_t *term)
{
	return propose(r, data, len, false, index, term);
}

int raft_propose_refs(raft *r, uint8_t *data, size_t len, uint64_t *index, uint64_t *term)
{
	return propose(r, data, len, true, index, term);
}

int raft_campaign(raft *r)
{
	/* A forced campaign would break the promise a leader's lease rests
	 * on (an election timeout ends it; a leader transfer, TIMEOUT_NOW,
	 * is the leader's own choice and ends its lease). */
	if (r->lease_reads && r->role == RAFT_FOLLOWER && raft_in_lease(r)) {
		RAFT_TRACE(r, TRACE_TIMR, "no campaign: inside the leader's lease");
		return 0;
	}
	return step(r, &(raft_msg){.type = RAFT_MSG_HUP, .from = r->id});
}

int raft_read_index(raft *r, const void *ctx, size_t ctx_len)
{
	raft_msg m = {.type = RAFT_MSG_READ_INDEX,
		      .from = r->id,
		      .context = (uint8_t *)ctx,
		      .context_len = ctx_len};
	return step(r, &m);
}

void raft_report_unreachable(raft *r, uint64_t peer)
{
	raft_step(r, &(raft_msg){.type = RAFT_MSG_UNREACHABLE, .from = peer});
}

void raft_report_snapshot(raft *r, uint64_t peer, bool failed)
{
	raft_step(r, &(raft_msg){.type = RAFT_MSG_SNAP_STATUS, .from = peer, .reject = failed});
}

uint64_t raft_term(const raft *r)
{
	return r->term;
}

uint64_t raft_commit_index(const raft *r)
{
	return r->log.committed;
}

uint64_t raft_last_index(const raft *r)
{
	return r->log.last;
}

uint64_t raft_term_at(const raft *r, uint64_t index)
{
	return raft_log_term_or_zero(&r->log, index);
}

bool raft_is_leader(const raft *r)
{
	return r->role == RAFT_LEADER;
}

uint64_t raft_leader(const raft *r)
{
	return r->lead;
}
