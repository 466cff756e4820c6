/* cluster.c — the deterministic in-memory cluster (see cluster.h). */
#include "cluster.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

/* A tick whose deliveries keep producing due messages this long is a
 * message storm: some exchange never settles. */
#define MAX_ROUNDS_PER_TICK 10000
/* Reads not served within this many ticks were lost with a message. */
#define READ_EXPIRY_TICKS 2000

void sim_opts_default(sim_opts *o, size_t n_nodes, uint64_t seed)
{
	memset(o, 0, sizeof(*o));
	o->n_nodes = n_nodes;
	o->seed = seed;
	o->election_ticks = 10;
	o->heartbeat_ticks = 2;
	o->max_msg_bytes = 1 << 20;
	o->max_inflight = 256;
	o->pre_vote = true;
	o->check_quorum = true;
}

void sim_trace(sim_cluster *c, const char *fmt, ...)
{
	if (!c->trace)
		return;
	fprintf(c->trace, "[%6llu] ", (unsigned long long)c->now);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(c->trace, fmt, ap);
	va_end(ap);
	fputc('\n', c->trace);
}

void sim_fail(sim_cluster *c, const char *fmt, ...)
{
	if (!c->ck.failed) {
		char buf[900];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		sim_checker_fail(&c->ck, "%s", buf);
	}
	sim_check(c);
}

void sim_check(sim_cluster *c)
{
	if (c->ck.failed && c->fail_hook) {
		sim_trace(c, "FAILED: %s", c->ck.msg);
		c->fail_hook(c->fail_arg, c->ck.msg);
	}
}

/* Records without calling the hook: used in the middle of a step. */
static void record_fail(sim_cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void record_fail(sim_cluster *c, const char *fmt, ...)
{
	if (c->ck.failed)
		return;
	char buf[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sim_checker_fail(&c->ck, "%s", buf);
	sim_trace(c, "VIOLATION: %s", c->ck.msg);
}

static void trace_msg(sim_cluster *c, const char *what, const raft_msg *m)
{
	if (!c->trace || !c->opts.trace_msgs)
		return;
	sim_trace(
	    c, "%s n%llu->n%llu %s term=%llu log_term=%llu index=%llu entries=%zu commit=%llu%s%s",
	    what, (unsigned long long)m->from, (unsigned long long)m->to,
	    raft_msg_type_name(m->type), (unsigned long long)m->term,
	    (unsigned long long)m->log_term, (unsigned long long)m->index, m->n_entries,
	    (unsigned long long)m->commit, m->reject ? " REJECT" : "",
	    m->snapshot ? " +snapshot" : "");
}

/* --- reads ------------------------------------------------------------ */

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void remove_read(sim_cluster *c, size_t i)
{
	c->reads[i] = c->reads[--c->n_reads];
}

static sim_pending_read *find_read(sim_cluster *c, uint64_t id)
{
	for (size_t i = 0; i < c->n_reads; i++)
		if (c->reads[i].id == id)
			return &c->reads[i];
	return NULL;
}

static void on_read_state(sim_cluster *c, sim_node *n, const raft_read_state *rs)
{
	if (rs->ctx_len != 8) {
		record_fail(c, "node %llu got a read state with a %zu-byte context; 8 were given",
			    (unsigned long long)n->id, rs->ctx_len);
		return;
	}
	uint64_t id = get_u64(rs->ctx);
	sim_pending_read *rd = find_read(c, id);
	if (!rd || rd->has_index) {
		/* Served already (a duplicated request) or expired. */
		sim_trace(c, "n%llu read %llu: extra read state at %llu ignored",
			  (unsigned long long)n->id, (unsigned long long)id,
			  (unsigned long long)rs->index);
		return;
	}
	if (rd->node != n->id) {
		record_fail(c, "read %llu issued on node %llu came back on node %llu",
			    (unsigned long long)id, (unsigned long long)rd->node,
			    (unsigned long long)n->id);
		return;
	}
	sim_trace(c, "n%llu read %llu: read index %llu (needs >= %llu)", (unsigned long long)n->id,
		  (unsigned long long)id, (unsigned long long)rs->index,
		  (unsigned long long)rd->min_index);
	if (rs->index < rd->min_index) {
		record_fail(c,
			    "linearizability violated: read %llu on node %llu got read index %llu, "
			    "but %llu was already committed when the read began",
			    (unsigned long long)id, (unsigned long long)n->id,
			    (unsigned long long)rs->index, (unsigned long long)rd->min_index);
		return;
	}
	rd->index = rs->index;
	rd->has_index = true;
}

/* Serves the node's reads whose read index it has applied. */
static void serve_reads(sim_cluster *c, sim_node *n)
{
	for (size_t i = 0; i < c->n_reads;) {
		sim_pending_read *rd = &c->reads[i];
		if (rd->node != n->id || !rd->has_index || rd->index > n->sm.applied) {
			i++;
			continue;
		}
		uint64_t need = 0;
		const sim_committed *e = sim_checker_entry(&c->ck, rd->min_index);
		if (e)
			need = e->pos.last_write;
		sim_trace(c, "n%llu read %llu served at applied %llu: last write %llu",
			  (unsigned long long)n->id, (unsigned long long)rd->id,
			  (unsigned long long)n->sm.applied, (unsigned long long)n->sm.last_write);
		if (!c->opts.no_checks && n->sm.last_write < need)
			record_fail(
			    c,
			    "linearizability violated: read %llu on node %llu saw the write "
			    "at %llu, but the write at %llu was committed before the read began",
			    (unsigned long long)rd->id, (unsigned long long)n->id,
			    (unsigned long long)n->sm.last_write, (unsigned long long)need);
		c->reads_done++;
		remove_read(c, i);
	}
}

static void drop_reads(sim_cluster *c, uint64_t id)
{
	for (size_t i = 0; i < c->n_reads;) {
		if (c->reads[i].node == id)
			remove_read(c, i);
		else
			i++;
	}
}

int sim_read(sim_cluster *c, uint64_t id)
{
	sim_node *n = &c->nodes[id];
	if (!n->r)
		return RAFT_EPROPOSAL_DROPPED;
	if (c->n_reads == c->cap_reads) {
		size_t cap = c->cap_reads ? c->cap_reads * 2 : 16;
		sim_pending_read *r = realloc(c->reads, cap * sizeof(*r));
		if (!r)
			return RAFT_ENOMEM;
		c->reads = r;
		c->cap_reads = cap;
	}
	uint64_t rid = ++c->next_read_id;
	uint8_t ctx[8];
	put_u64(ctx, rid);
	int rc = raft_read_index(n->r, ctx, sizeof(ctx));
	sim_trace(c, "n%llu read %llu issued (committed %llu): %s", (unsigned long long)id,
		  (unsigned long long)rid, (unsigned long long)sim_checker_committed(&c->ck),
		  raft_strerror(rc));
	if (rc != 0)
		return rc;
	c->reads[c->n_reads++] = (sim_pending_read){
	    .id = rid,
	    .node = id,
	    .incarnation = n->incarnation,
	    .min_index = sim_checker_committed(&c->ck),
	    .issued_at = c->now,
	};
	return 0;
}

static void expire_reads(sim_cluster *c)
{
	for (size_t i = 0; i < c->n_reads;) {
		if (c->now - c->reads[i].issued_at > READ_EXPIRY_TICKS)
			remove_read(c, i);
		else
			i++;
	}
}

/* --- the Ready loop ----------------------------------------------------- */

static void crash_node(sim_cluster *c, sim_node *n);

static void restore_sm(sim_cluster *c, sim_node *n, const raft_snapshot *s)
{
	if (s->meta.index < n->sm.applied) {
		record_fail(c, "node %llu was handed snapshot %llu after applying %llu",
			    (unsigned long long)n->id, (unsigned long long)s->meta.index,
			    (unsigned long long)n->sm.applied);
		return;
	}
	if (sim_sm_decode(&n->sm, s->data, s->len) != 0 || n->sm.applied != s->meta.index) {
		record_fail(c,
			    "node %llu: snapshot %llu holds a state machine that does not decode "
			    "or is at another index",
			    (unsigned long long)n->id, (unsigned long long)s->meta.index);
		return;
	}
	if (!c->opts.no_checks)
		sim_checker_restore(&c->ck, n->id, &n->sm);
	if (n->sm.applied > n->known_upto)
		n->known_upto = n->sm.applied;
	raft_conf_state cs;
	if (raft_conf_state_copy(&cs, &s->meta.conf) != 0) {
		record_fail(c, "out of memory copying snapshot %llu's membership",
			    (unsigned long long)s->meta.index);
		return;
	}
	raft_conf_state_free_contents(&n->conf);
	n->conf = cs;
	sim_trace(c, "n%llu state machine restored from snapshot %llu", (unsigned long long)n->id,
		  (unsigned long long)s->meta.index);
}

static const char *conf_type_name(int type)
{
	switch (type) {
	case RAFT_CONF_ADD_NODE:
		return "add";
	case RAFT_CONF_REMOVE_NODE:
		return "remove";
	case RAFT_CONF_ADD_LEARNER:
		return "add learner";
	default:
		return "?";
	}
}

static void note_conf_event(sim_cluster *c, int type, uint64_t node, uint64_t index,
			    const raft_conf_state *after)
{
	if (c->n_conf_events == c->cap_conf_events) {
		size_t cap = c->cap_conf_events ? 2 * c->cap_conf_events : 4;
		struct sim_conf_event *e = realloc(c->conf_events, cap * sizeof(*e));
		if (!e) {
			record_fail(c, "out of memory noting a membership change");
			return;
		}
		c->conf_events = e;
		c->cap_conf_events = cap;
	}
	struct sim_conf_event *ev = &c->conf_events[c->n_conf_events];
	*ev = (struct sim_conf_event){.type = type, .node = node, .index = index};
	if (raft_conf_state_copy(&ev->after, after) != 0) {
		record_fail(c, "out of memory noting a membership change");
		return;
	}
	c->n_conf_events++;
	c->conf_events_new = true;
}

/* A committed membership change: the core puts it into effect, the node
 * keeps the new membership with its state machine. */
static void apply_conf_change(sim_cluster *c, sim_node *n, const raft_entry *e)
{
	raft_conf_change cc;
	int rc = codec_conf_change_decode(e->data, e->len, &cc);
	if (rc != 0) {
		record_fail(c, "node %llu: decode conf change at %llu: %s",
			    (unsigned long long)n->id, (unsigned long long)e->index,
			    raft_strerror(rc));
		return;
	}
	raft_conf_state cs;
	rc = raft_apply_conf_change(n->r, (int)cc.type, cc.node_id, &cs);
	if (rc != 0) {
		record_fail(c, "node %llu: apply conf change at %llu (%s %llu): %s",
			    (unsigned long long)n->id, (unsigned long long)e->index,
			    conf_type_name((int)cc.type), (unsigned long long)cc.node_id,
			    raft_strerror(rc));
		raft_conf_change_free_contents(&cc);
		return;
	}
	raft_conf_state_free_contents(&n->conf);
	n->conf = cs;
	/* The node runtime stores the membership as it puts a change into
	 * effect (consensus/node_members.c), since the commit index is saved
	 * lazily: with async saves a crash may lose the save that recorded
	 * this entry committed, and a node that forgot its removal of a peer
	 * the operator has since retired would wait for that peer's vote. */
	if (c->opts.async_storage && memory_storage_set_conf_state(n->ms, &cs) != 0)
		record_fail(c, "node %llu: persist the membership after %llu: out of memory",
			    (unsigned long long)n->id, (unsigned long long)e->index);
	sim_trace(c, "n%llu applies conf change at %llu: %s n%llu (%zu voters, %zu learners)",
		  (unsigned long long)n->id, (unsigned long long)e->index,
		  conf_type_name((int)cc.type), (unsigned long long)cc.node_id, cs.n_voters,
		  cs.n_learners);
	if (e->index > c->conf_acted_index) {
		c->conf_acted_index = e->index;
		note_conf_event(c, (int)cc.type, cc.node_id, e->index, &cs);
	}
	raft_conf_change_free_contents(&cc);
}

static void apply_entry(sim_cluster *c, sim_node *n, const raft_entry *e)
{
	if (e->index != n->sm.applied + 1) {
		record_fail(c, "node %llu was handed entry %llu to apply after applying %llu",
			    (unsigned long long)n->id, (unsigned long long)e->index,
			    (unsigned long long)n->sm.applied);
		return;
	}
	if (c->opts.no_checks) {
		/* Benchmarks: no hashing, so the harness costs little. */
		n->sm.applied = e->index;
		if (sim_entry_is_write(e))
			n->sm.last_write = e->index;
	} else {
		sim_sm_apply(&n->sm, e);
	}
	c->applied_entries++;
	if (!c->opts.no_checks)
		sim_checker_apply(&c->ck, n->id, e, &n->sm);
	if (e->index > n->known_upto)
		n->known_upto = e->index;
	if (e->type == RAFT_ENTRY_CONF_CHANGE)
		apply_conf_change(c, n, e);
}

/* Takes a snapshot of the state machine into storage and compacts, as a
 * service does when its log grows (6.824's Snapshot(), etcd's
 * CreateSnapshot + Compact). */
static void maybe_snapshot(sim_cluster *c, sim_node *n)
{
	raft_storage *st = memory_storage_iface(n->ms);
	uint64_t first = 0;
	if (st->first_index(st->ctx, &first) != 0)
		return;
	raft_snapshot cur;
	if (st->snapshot(st->ctx, &cur) != 0)
		return;
	uint64_t snap_index = cur.meta.index;
	raft_snapshot_free_contents(&cur);
	if (n->sm.applied < snap_index + c->opts.snapshot_every)
		return;
	uint8_t data[SIM_SM_ENCODED_LEN];
	sim_sm_encode(&n->sm, data);
	int rc = memory_storage_create_snapshot(n->ms, n->sm.applied, &n->conf, data, sizeof(data));
	/* The membership is durable with the applied state it belongs to: a
	 * restart re-applies the changes after the snapshot. */
	if (rc == 0)
		rc = memory_storage_set_conf_state(n->ms, &n->conf);
	if (rc != 0) {
		record_fail(c, "node %llu: create snapshot at %llu: %s", (unsigned long long)n->id,
			    (unsigned long long)n->sm.applied, raft_strerror(rc));
		return;
	}
	uint64_t upto =
	    n->sm.applied > c->opts.snapshot_keep ? n->sm.applied - c->opts.snapshot_keep : 0;
	if (upto >= first) {
		rc = memory_storage_compact(n->ms, upto);
		if (rc != 0) {
			record_fail(c, "node %llu: compact to %llu: %s", (unsigned long long)n->id,
				    (unsigned long long)upto, raft_strerror(rc));
			return;
		}
	}
	sim_trace(c, "n%llu snapshot at %llu, log compacted to %llu", (unsigned long long)n->id,
		  (unsigned long long)n->sm.applied, (unsigned long long)upto);
}

static void note_lost_snapshot(sim_cluster *c, sim_node *n, uint64_t to)
{
	if (c->n_lost_snaps == c->cap_lost_snaps) {
		size_t cap = c->cap_lost_snaps ? c->cap_lost_snaps * 2 : 8;
		struct sim_snap_report *r = realloc(c->lost_snaps, cap * sizeof(*r));
		if (!r) {
			record_fail(c, "out of memory noting a lost snapshot");
			return;
		}
		c->lost_snaps = r;
		c->cap_lost_snaps = cap;
	}
	c->lost_snaps[c->n_lost_snaps++] =
	    (struct sim_snap_report){.from = n->id, .to = to, .incarnation = n->incarnation};
}

/* Tells senders about snapshots lost at send time (outside any Ready). */
static void report_lost_snapshots(sim_cluster *c)
{
	for (size_t i = 0; i < c->n_lost_snaps; i++) {
		sim_node *s = &c->nodes[c->lost_snaps[i].from];
		if (s->r && s->incarnation == c->lost_snaps[i].incarnation) {
			sim_trace(c, "n%llu: snapshot to n%llu failed", (unsigned long long)s->id,
				  (unsigned long long)c->lost_snaps[i].to);
			raft_report_snapshot(s->r, c->lost_snaps[i].to, true);
		}
	}
	c->n_lost_snaps = 0;
}

/* --- persisting ------------------------------------------------------- */

static void persist_snapshot(sim_cluster *c, sim_node *n, const raft_snapshot *snap)
{
	int rc = memory_storage_apply_snapshot(n->ms, snap);
	if (rc != 0)
		record_fail(c, "node %llu: persist snapshot %llu: %s", (unsigned long long)n->id,
			    (unsigned long long)snap->meta.index, raft_strerror(rc));
	else if (!c->opts.no_checks)
		sim_checker_persist_snapshot(&c->ck, n->id, snap->meta.index, snap->meta.term);
	sim_trace(c, "n%llu persist snapshot index=%llu term=%llu", (unsigned long long)n->id,
		  (unsigned long long)snap->meta.index, (unsigned long long)snap->meta.term);
}

static void persist_entries(sim_cluster *c, sim_node *n, const raft_entry *ents, size_t cnt)
{
	int rc = memory_storage_append(n->ms, ents, cnt);
	if (rc != 0)
		record_fail(c, "node %llu: persist entries %llu..%llu: %s",
			    (unsigned long long)n->id, (unsigned long long)ents[0].index,
			    (unsigned long long)ents[cnt - 1].index, raft_strerror(rc));
	else if (!c->opts.no_checks)
		sim_checker_persist_entries(&c->ck, n->id, ents, cnt);
	sim_trace(c, "n%llu persist entries %llu..%llu (term %llu..%llu)",
		  (unsigned long long)n->id, (unsigned long long)ents[0].index,
		  (unsigned long long)ents[cnt - 1].index, (unsigned long long)ents[0].term,
		  (unsigned long long)ents[cnt - 1].term);
}

static void persist_hard_state(sim_cluster *c, sim_node *n, const raft_hard_state *hs, bool leader)
{
	memory_storage_set_hard_state(n->ms, hs);
	if (!c->opts.no_checks) {
		sim_checker_hard_state(&c->ck, n->id, hs);
		sim_checker_commit(&c->ck, n->id, hs->term, hs->commit, leader);
	}
	sim_trace(c, "n%llu persist hard state term=%llu vote=%llu commit=%llu",
		  (unsigned long long)n->id, (unsigned long long)hs->term,
		  (unsigned long long)hs->vote, (unsigned long long)hs->commit);
}

static void send_msg(sim_cluster *c, sim_node *n, const raft_msg *m)
{
	/* Every message is from its sender (CORE_NOTES: a read forwarded to
	 * an ex-leader is dropped, not re-forwarded). */
	if (m->from != n->id || m->to == 0 || m->to > c->opts.n_nodes || m->to == n->id) {
		record_fail(c, "node %llu sent a misaddressed %s (from %llu to %llu)",
			    (unsigned long long)n->id, raft_msg_type_name(m->type),
			    (unsigned long long)m->from, (unsigned long long)m->to);
		return;
	}
	trace_msg(c, "send", m);
	int copies = sim_net_send(&c->net, m, n->id, c->now, n->incarnation);
	if (copies < 0)
		record_fail(c, "out of memory queueing a message from node %llu",
			    (unsigned long long)n->id);
	else if (copies == 0 && m->type == RAFT_MSG_SNAP)
		note_lost_snapshot(c, n, m->to);
}

static void save_free(struct sim_save *sv)
{
	raft_entries_free(sv->ents, sv->n_ents);
	for (size_t i = 0; i < sv->n_msgs; i++)
		raft_msg_free_contents(&sv->msgs[i]);
	free(sv->msgs);
	free(sv);
}

/* A crash: what was not durable is gone. */
static void drop_saves(sim_node *n)
{
	while (n->saves) {
		struct sim_save *sv = n->saves;
		n->saves = sv->next;
		save_free(sv);
	}
	n->saves_tail = NULL;
	n->saves_queued = n->saves_done = n->vote_upto = 0;
}

/* async_storage: the commit index is volatile (Figure 2) and the core
 * knows it before its hard state is saved; the checker learns what is
 * committed of the node's durable log that matches its log (what the
 * core may apply: never beyond raft_status.persisted). */
static void note_commit(sim_cluster *c, sim_node *n)
{
	raft_status st;
	if (!n->r || c->opts.no_checks)
		return;
	raft_get_status(n->r, &st);
	sim_checker_commit(&c->ck, n->id, st.term,
			   st.commit < st.persisted ? st.commit : st.persisted,
			   st.role == RAFT_LEADER);
}

/* async_storage: the node's saves that are due become durable, oldest
 * first (all: every one, as before a snapshot replaces the log); each is
 * reported to the core and the messages that waited for it go. */
static void complete_saves(sim_cluster *c, sim_node *n, bool all)
{
	/* Before a snapshot (all), the core's commit index is the snapshot's
	 * already, the storage's not yet: the checker hears of it after. */
	bool note = !all;
	while (n->saves && (all || (n->saves->due <= c->now && sim_rng_chance(&c->rng, 500)))) {
		struct sim_save *sv = n->saves;
		n->saves = sv->next;
		if (!n->saves)
			n->saves_tail = NULL;
		n->saves_done++;
		if (sv->n_ents)
			persist_entries(c, n, sv->ents, sv->n_ents);
		if (sv->has_hs)
			persist_hard_state(c, n, &sv->hs, sv->hs_leader);
		if (n->r && sv->n_ents) {
			raft_persisted(n->r, sv->ents[sv->n_ents - 1].index,
				       sv->ents[sv->n_ents - 1].term);
			if (note)
				note_commit(c, n);
		}
		for (size_t i = 0; i < sv->n_msgs; i++)
			send_msg(c, n, &sv->msgs[i]);
		save_free(sv);
	}
}

static int save_keep_msg(struct sim_save *sv, const raft_msg *m)
{
	if (sv->n_msgs == sv->cap_msgs) {
		size_t cap = sv->cap_msgs ? 2 * sv->cap_msgs : 8;
		raft_msg *p = realloc(sv->msgs, cap * sizeof(*p));
		if (!p)
			return RAFT_ENOMEM;
		sv->msgs = p;
		sv->cap_msgs = cap;
	}
	int rc = raft_msg_copy(&sv->msgs[sv->n_msgs], m);
	if (rc == 0)
		sv->n_msgs++;
	return rc;
}

/* async_storage: queues rd's save (if it has one) and sends or keeps its
 * messages as the node runtime does (consensus/node.c handle_ready). */
static void queue_save(sim_cluster *c, sim_node *n, const raft_ready *rd, uint64_t term)
{
	bool vote = rd->has_hard_state && (rd->hard_state.term != n->last_hs.term ||
					   rd->hard_state.vote != n->last_hs.vote);
	bool early = raft_is_leader(n->r) && !vote && n->saves_done >= n->vote_upto;
	if (rd->has_hard_state)
		n->last_hs = rd->hard_state;
	if (rd->n_entries || rd->has_hard_state) {
		struct sim_save *sv = calloc(1, sizeof(*sv));
		if (!sv ||
		    (rd->n_entries && !(sv->ents = calloc(rd->n_entries, sizeof(raft_entry))))) {
			free(sv);
			record_fail(c, "out of memory queueing a save of node %llu",
				    (unsigned long long)n->id);
			return;
		}
		for (size_t i = 0; i < rd->n_entries; i++) {
			if (raft_entry_copy(&sv->ents[i], &rd->entries[i]) != 0) {
				sv->n_ents = i;
				save_free(sv);
				record_fail(c, "out of memory queueing a save of node %llu",
					    (unsigned long long)n->id);
				return;
			}
		}
		sv->n_ents = rd->n_entries;
		sv->has_hs = rd->has_hard_state;
		sv->hs = rd->hard_state;
		sv->hs_leader = raft_is_leader(n->r) && term == rd->hard_state.term;
		sv->due =
		    c->now +
		    (c->opts.persist_delay ? sim_rng_below(&c->rng, c->opts.persist_delay + 1) : 0);
		if (n->saves_tail)
			n->saves_tail->next = sv;
		else
			n->saves = sv;
		n->saves_tail = sv;
		n->saves_queued++;
		if (vote)
			n->vote_upto = n->saves_queued;
	}
	for (size_t i = 0; i < rd->n_msgs; i++) {
		const raft_msg *m = &rd->msgs[i];
		bool append = m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT;
		if ((early && append) || !raft_msg_after_save(m) || !n->saves_tail)
			send_msg(c, n, m);
		else if (save_keep_msg(n->saves_tail, m) != 0)
			record_fail(c, "out of memory keeping a message of node %llu",
				    (unsigned long long)n->id);
	}
}

/* Figure 2 from the leader's side: whatever it calls committed is on the
 * disks (storages) of a quorum of its voters — the leader itself counting
 * only once its own save is done. A leader that counted entries it had
 * not persisted breaks this as soon as one follower answers before the
 * leader's own save completes. */
static void check_commit_durable(sim_cluster *c, sim_node *n, uint64_t commit)
{
	raft_status st;
	raft_get_status(n->r, &st);
	if (st.role != RAFT_LEADER || c->opts.no_checks)
		return;
	size_t voters = 0, have = 0;
	for (size_t i = 0; i < st.n_peers; i++) {
		if (st.peers[i].learner)
			continue;
		voters++;
		raft_storage *s = memory_storage_iface(c->nodes[st.peers[i].id].ms);
		uint64_t t, first = 0;
		int rc = s->term(s->ctx, commit, &t);
		if ((rc == 0 && t == st.term) ||
		    (rc == RAFT_ECOMPACTED && s->first_index(s->ctx, &first) == 0 &&
		     first > commit))
			have++;
	}
	if (2 * have <= voters)
		record_fail(
		    c,
		    "leader %llu of term %llu committed %llu, held durably by %zu of its %zu "
		    "voters only",
		    (unsigned long long)n->id, (unsigned long long)st.term,
		    (unsigned long long)commit, have, voters);
}

static void handle_ready(sim_cluster *c, sim_node *n)
{
	while (n->r && raft_has_ready(n->r)) {
		raft_ready rd;
		raft_ready_get(n->r, &rd);
		uint64_t term = raft_term(n->r);

		if (rd.has_soft_state) {
			if (rd.role != n->role || rd.leader != n->leader)
				sim_trace(c, "n%llu is %s of term %llu (leader n%llu)",
					  (unsigned long long)n->id, raft_role_name(rd.role),
					  (unsigned long long)term, (unsigned long long)rd.leader);
			n->role = rd.role;
			n->leader = rd.leader;
		}
		if (rd.has_hard_state && rd.hard_state.commit > n->last_hs.commit &&
		    rd.role == RAFT_LEADER)
			check_commit_durable(c, n, rd.hard_state.commit);

		if (c->opts.async_storage) {
			/* A snapshot replaces the log: the saves before it go
			 * first (the runtime waits for them too). */
			if (rd.snapshot) {
				complete_saves(c, n, true);
				persist_snapshot(c, n, rd.snapshot);
			}
			queue_save(c, n, &rd, term);
			if (rd.has_hard_state)
				note_commit(c, n);
			if (n->crash_in_ready) {
				sim_trace(c, "n%llu crashes with %llu saves not yet durable",
					  (unsigned long long)n->id,
					  (unsigned long long)(n->saves_queued - n->saves_done));
				crash_node(c, n); /* rd dies with the raft */
				return;
			}
		} else {
			/* Persist: snapshot, entries, hard state — one "durable write". */
			if (rd.snapshot)
				persist_snapshot(c, n, rd.snapshot);
			if (rd.n_entries)
				persist_entries(c, n, rd.entries, rd.n_entries);
			if (rd.has_hard_state) {
				persist_hard_state(c, n, &rd.hard_state,
						   raft_is_leader(n->r) &&
						       term == rd.hard_state.term);
				n->last_hs = rd.hard_state;
			}
		}
		if (rd.has_soft_state && rd.role == RAFT_LEADER && !c->opts.no_checks)
			sim_checker_leader(&c->ck, n->id, term);

		if (!c->opts.async_storage) {
			if (n->crash_in_ready) {
				sim_trace(
				    c,
				    "n%llu crashes after persisting, before sending %zu messages",
				    (unsigned long long)n->id, rd.n_msgs);
				crash_node(c, n); /* rd dies with the raft */
				return;
			}
			for (size_t i = 0; i < rd.n_msgs; i++)
				send_msg(c, n, &rd.msgs[i]);
		}

		if (c->opts.tick_in_ready_pm && sim_rng_chance(&c->rng, c->opts.tick_in_ready_pm)) {
			sim_trace(c, "n%llu ticks while holding its Ready",
				  (unsigned long long)n->id);
			raft_tick(n->r);
		}
		/* At most once per node and tick: each proposal causes further
		 * Readies, which must not feed on themselves within a tick. */
		if (c->opts.propose_in_ready_pm && n->last_in_ready_proposal != c->now &&
		    sim_rng_chance(&c->rng, c->opts.propose_in_ready_pm)) {
			n->last_in_ready_proposal = c->now;
			uint8_t b[8];
			uint64_t v = (1ULL << 62) | ++c->in_ready_proposals;
			for (int i = 0; i < 8; i++)
				b[i] = (uint8_t)(v >> (8 * i));
			int rc = raft_propose(n->r, b, sizeof(b), NULL, NULL);
			sim_trace(c, "n%llu is handed a proposal while holding its Ready: %s",
				  (unsigned long long)n->id, raft_strerror(rc));
			if (rc != 0 && rc != RAFT_EPROPOSAL_DROPPED)
				record_fail(c, "node %llu: propose inside a Ready: %s",
					    (unsigned long long)n->id, raft_strerror(rc));
		}
		if (rd.snapshot)
			restore_sm(c, n, rd.snapshot);
		if (rd.n_committed)
			sim_trace(c, "n%llu apply %llu..%llu", (unsigned long long)n->id,
				  (unsigned long long)rd.committed[0].index,
				  (unsigned long long)rd.committed[rd.n_committed - 1].index);
		for (size_t i = 0; i < rd.n_committed; i++)
			apply_entry(c, n, &rd.committed[i]);
		for (size_t i = 0; i < rd.n_read_states; i++)
			on_read_state(c, n, &rd.read_states[i]);

		raft_advance(n->r, &rd);
		serve_reads(c, n);
		if (c->opts.snapshot_every && (rd.n_committed || rd.snapshot))
			maybe_snapshot(c, n);
	}
}

static int start_node(sim_cluster *c, sim_node *n);

/* True once every member of ev's configuration has applied it. */
static bool applied_by_members(const sim_cluster *c, const struct sim_conf_event *ev)
{
	for (size_t i = 0; i < ev->after.n_voters; i++)
		if (c->nodes[ev->after.voters[i]].known_upto < ev->index)
			return false;
	for (size_t i = 0; i < ev->after.n_learners; i++)
		if (c->nodes[ev->after.learners[i]].known_upto < ev->index)
			return false;
	return true;
}

static void drop_conf_event(sim_cluster *c, size_t i)
{
	raft_conf_state_free_contents(&c->conf_events[i].after);
	c->conf_events[i] = c->conf_events[--c->n_conf_events];
}

/* What an operator does once a membership change is applied (see
 * conf_events in cluster.h). */
static void act_on_conf_events(sim_cluster *c)
{
	c->conf_events_new = false;
	for (size_t i = 0; i < c->n_conf_events;) {
		struct sim_conf_event *ev = &c->conf_events[i];
		uint64_t id = ev->node;
		if (id == 0 || id > c->opts.n_nodes) {
			drop_conf_event(c, i);
			continue;
		}
		sim_node *x = &c->nodes[id];
		if (ev->type != RAFT_CONF_REMOVE_NODE) {
			/* Added (back): cancel an earlier removal still pending. */
			for (size_t k = 0; k < c->n_conf_events; k++)
				if (k != i && c->conf_events[k].node == id &&
				    c->conf_events[k].index < ev->index)
					c->conf_events[k].node = 0;
			x->retired = false;
			if (!x->r)
				start_node(c, x);
			drop_conf_event(c, i);
			continue;
		}
		if (!applied_by_members(c, ev)) {
			i++;
			continue;
		}
		if (!x->retired)
			sim_trace(c, "n%llu retired (removed from the cluster)",
				  (unsigned long long)id);
		x->retired = true;
		crash_node(c, x);
		drop_conf_event(c, i);
	}
}

static void handle_all_ready(sim_cluster *c)
{
	do {
		report_lost_snapshots(c);
		if (c->n_conf_events)
			act_on_conf_events(c);
		for (size_t i = 1; i <= c->opts.n_nodes; i++) {
			if (c->opts.async_storage)
				complete_saves(c, &c->nodes[i], false);
			handle_ready(c, &c->nodes[i]);
		}
	} while (c->n_lost_snaps || c->conf_events_new);
}

/* --- delivery ----------------------------------------------------------- */

static void report_snapshot(sim_cluster *c, const sim_packet *p, bool failed)
{
	sim_node *s = &c->nodes[p->sender];
	if (s->r && s->incarnation == p->sender_incarnation)
		raft_report_snapshot(s->r, p->msg.to, failed);
}

static void deliver(sim_cluster *c, sim_packet *p)
{
	const raft_msg *m = &p->msg;
	sim_node *to = &c->nodes[m->to];
	if (!to->r || !sim_net_can_talk(&c->net, p->sender, m->to)) {
		trace_msg(c, "lost", m);
		c->net.msgs_dropped++;
		if (m->type == RAFT_MSG_SNAP)
			report_snapshot(c, p, true);
		/* A transport notices a peer it cannot reach (etcd's
		 * ReportUnreachable): the leader goes back to probing. */
		sim_node *s = &c->nodes[p->sender];
		if (m->type == RAFT_MSG_APP && s->r && s->incarnation == p->sender_incarnation)
			raft_report_unreachable(s->r, m->to);
		return;
	}
	trace_msg(c, "recv", m);
	int rc = raft_step(to->r, m);
	if (rc != 0 && rc != RAFT_EPROPOSAL_DROPPED && rc != RAFT_ESTEP_PEER_NOT_FOUND)
		record_fail(c, "node %llu: step %s from %llu: %s", (unsigned long long)m->to,
			    raft_msg_type_name(m->type), (unsigned long long)m->from,
			    raft_strerror(rc));
	if (m->type == RAFT_MSG_SNAP)
		report_snapshot(c, p, false);
}

static bool round_once(sim_cluster *c)
{
	uint64_t limit = c->net.next_seq;
	bool any = false;
	sim_packet p;
	while (sim_net_pop_due(&c->net, c->now, limit, &p)) {
		any = true;
		deliver(c, &p);
		raft_msg_free_contents(&p.msg);
	}
	/* A save due at this tick completes in one of its rounds (a coin
	 * flip per round: before or after this round's deliveries). */
	for (size_t i = 1; i <= c->opts.n_nodes && !any; i++)
		any = c->nodes[i].saves && c->nodes[i].saves->due <= c->now;
	if (any)
		handle_all_ready(c);
	return any;
}

/* Delivers what is due and handles the Readies, round after round, until
 * nothing more is due at this tick. */
static void deliver_due(sim_cluster *c)
{
	handle_all_ready(c);
	for (int round = 0; round_once(c); round++) {
		if (round == MAX_ROUNDS_PER_TICK) {
			record_fail(
			    c, "message storm: deliveries still due after %d rounds in one tick",
			    round);
			return;
		}
	}
}

bool sim_deliver_round(sim_cluster *c)
{
	handle_all_ready(c);
	bool any = round_once(c);
	sim_check(c);
	return any;
}

void sim_settle(sim_cluster *c)
{
	deliver_due(c);
	sim_check(c);
}

void sim_tick(sim_cluster *c)
{
	c->now++;
	c->ck.now = c->now;
	for (size_t i = 1; i <= c->opts.n_nodes; i++)
		if (c->nodes[i].r)
			raft_tick(c->nodes[i].r);
	deliver_due(c);
	if (c->n_reads && c->now % 256 == 0)
		expire_reads(c);
	sim_check(c);
}

void sim_run(sim_cluster *c, uint64_t ticks)
{
	for (uint64_t i = 0; i < ticks; i++)
		sim_tick(c);
}

/* --- crash and restart -------------------------------------------------- */

static void crash_node(sim_cluster *c, sim_node *n)
{
	if (!n->r)
		return;
	raft_free(n->r);
	n->r = NULL;
	n->crash_in_ready = false;
	drop_saves(n);
	memset(&n->sm, 0, sizeof(n->sm));
	n->role = RAFT_FOLLOWER;
	n->leader = 0;
	drop_reads(c, n->id);
	sim_trace(c, "n%llu CRASH", (unsigned long long)n->id);
}

void sim_crash(sim_cluster *c, uint64_t id)
{
	crash_node(c, &c->nodes[id]);
	sim_check(c);
}

void sim_crash_in_next_ready(sim_cluster *c, uint64_t id)
{
	if (c->nodes[id].r)
		c->nodes[id].crash_in_ready = true;
}

static int start_node(sim_cluster *c, sim_node *n)
{
	raft_storage *st = memory_storage_iface(n->ms);
	raft_snapshot snap;
	int rc = st->snapshot(st->ctx, &snap);
	if (rc != 0) {
		record_fail(c, "node %llu: read snapshot from storage: %s",
			    (unsigned long long)n->id, raft_strerror(rc));
		return rc;
	}
	rc = sim_sm_decode(&n->sm, snap.data, snap.len);
	if (rc == 0 && snap.len && n->sm.applied != snap.meta.index)
		rc = RAFT_ECORRUPT;
	uint64_t snap_index = snap.meta.index;
	raft_snapshot_free_contents(&snap);
	if (rc != 0) {
		record_fail(c, "node %llu: state machine in stored snapshot: %s",
			    (unsigned long long)n->id, raft_strerror(rc));
		return rc;
	}
	if (!c->opts.no_checks)
		sim_checker_restore(&c->ck, n->id, &n->sm);
	raft_hard_state hs;
	raft_conf_state cs;
	rc = st->initial_state(st->ctx, &hs, &cs);
	if (rc != 0) {
		record_fail(c, "node %llu: read initial state from storage: %s",
			    (unsigned long long)n->id, raft_strerror(rc));
		return rc;
	}
	if (hs.commit < snap_index) {
		/* With async_storage the state machine (and so a snapshot of
		 * it) may get ahead of the saved commit index, whose save was
		 * lost in the crash: a snapshot is committed by definition,
		 * and the node runtime saves that truth before its core starts
		 * (consensus/node.c, node_new). */
		hs.commit = snap_index;
		memory_storage_set_hard_state(n->ms, &hs);
	}
	raft_conf_state_free_contents(&n->conf);
	n->conf = cs;
	n->last_hs = hs;

	uint64_t peers[SIM_MAX_NODES];
	for (size_t i = 0; i < c->conf.n_voters; i++)
		peers[i] = c->conf.voters[i];
	n->incarnation++;
	raft_config cfg = {
	    .id = n->id,
	    .peers = peers,
	    .n_peers = c->conf.n_voters,
	    .election_ticks = c->opts.election_ticks,
	    .heartbeat_ticks = c->opts.heartbeat_ticks,
	    .max_msg_bytes = c->opts.max_msg_bytes,
	    .max_inflight = c->opts.max_inflight,
	    .pre_vote = c->opts.pre_vote,
	    .check_quorum = c->opts.check_quorum,
	    .lease_reads = c->opts.lease_reads,
	    .async_storage = c->opts.async_storage,
	    .storage = st,
	    .applied = n->sm.applied,
	    .seed = sim_splitmix64(c->opts.seed ^ (n->id << 48) ^ (n->incarnation << 32)),
	};
	rc = raft_new(&cfg, &n->r);
	if (rc != 0) {
		n->r = NULL;
		record_fail(c, "node %llu: raft_new: %s", (unsigned long long)n->id,
			    raft_strerror(rc));
		return rc;
	}
	n->role = RAFT_FOLLOWER;
	n->leader = 0;
	sim_trace(c, "n%llu START (incarnation %llu, applied %llu)", (unsigned long long)n->id,
		  (unsigned long long)n->incarnation, (unsigned long long)n->sm.applied);
	return 0;
}

int sim_restart(sim_cluster *c, uint64_t id)
{
	sim_node *n = &c->nodes[id];
	crash_node(c, n);
	int rc = start_node(c, n);
	sim_check(c);
	return rc;
}

/* --- network shape ------------------------------------------------------ */

void sim_disconnect(sim_cluster *c, uint64_t id)
{
	c->net.connected[id] = false;
	sim_trace(c, "n%llu disconnected", (unsigned long long)id);
}

void sim_connect(sim_cluster *c, uint64_t id)
{
	c->net.connected[id] = true;
	sim_trace(c, "n%llu connected", (unsigned long long)id);
}

void sim_partition(sim_cluster *c, const int *groups)
{
	char buf[128];
	size_t off = 0;
	for (size_t i = 1; i <= c->opts.n_nodes; i++) {
		c->net.group[i] = groups[i];
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, " n%zu:%d", i, groups[i]);
	}
	sim_trace(c, "partition%s", buf);
}

void sim_heal(sim_cluster *c)
{
	for (size_t i = 0; i <= SIM_MAX_NODES; i++) {
		c->net.connected[i] = true;
		c->net.group[i] = 0;
	}
	sim_net_set_drop(&c->net, 0);
	c->net.dup_pm = 0;
	c->net.max_delay = 0;
	c->net.long_delay_pm = 0;
	sim_trace(c, "network healed");
}

/* --- proposals ---------------------------------------------------------- */

int sim_propose(sim_cluster *c, uint64_t id, const void *data, size_t len, uint64_t *index,
		uint64_t *term)
{
	sim_node *n = &c->nodes[id];
	uint64_t i = 0, t = 0;
	int rc = n->r ? raft_propose(n->r, data, len, &i, &t) : RAFT_EPROPOSAL_DROPPED;
	if (index)
		*index = i;
	if (term)
		*term = t;
	if (c->trace)
		sim_trace(c, "n%llu propose %zu bytes (value %016llx): %s index=%llu term=%llu",
			  (unsigned long long)id, len,
			  (unsigned long long)sim_data_value(data, len), raft_strerror(rc),
			  (unsigned long long)i, (unsigned long long)t);
	return rc;
}

int sim_propose_conf_change(sim_cluster *c, uint64_t id, int type, uint64_t node)
{
	sim_node *n = &c->nodes[id];
	if (!n->r)
		return RAFT_EPROPOSAL_DROPPED;
	raft_conf_change cc = {.type = (raft_conf_change_type)type, .node_id = node};
	uint8_t buf[64];
	if (codec_conf_change_size(&cc) > sizeof(buf))
		return RAFT_EINVAL;
	size_t len = codec_conf_change_pack(&cc, buf);
	uint64_t index = 0;
	int rc = raft_propose_conf_change(n->r, buf, len, &index, NULL);
	sim_trace(c, "n%llu propose conf change %s n%llu: %s index=%llu", (unsigned long long)id,
		  conf_type_name(type), (unsigned long long)node, raft_strerror(rc),
		  (unsigned long long)index);
	return rc;
}

bool sim_in_conf(const sim_cluster *c, uint64_t of, uint64_t id)
{
	const raft_conf_state *cs = &c->nodes[of].conf;
	for (size_t i = 0; i < cs->n_voters; i++)
		if (cs->voters[i] == id)
			return true;
	for (size_t i = 0; i < cs->n_learners; i++)
		if (cs->learners[i] == id)
			return true;
	return false;
}

/* --- lifecycle ---------------------------------------------------------- */

int sim_cluster_new(const sim_opts *opts, sim_cluster **out)
{
	*out = NULL;
	if (opts->n_nodes == 0 || opts->n_nodes > SIM_MAX_NODES)
		return RAFT_EINVAL;
	sim_cluster *c = calloc(1, sizeof(*c));
	if (!c)
		return RAFT_ENOMEM;
	c->opts = *opts;
	c->trace = opts->trace;
	if (!c->trace && getenv("SIM_TRACE")) {
		c->trace = stderr;
		if (strcmp(getenv("SIM_TRACE"), "msgs") == 0)
			c->opts.trace_msgs = true;
	}
	sim_rng_seed(&c->rng, opts->seed);
	sim_net_init(&c->net, opts->n_nodes, &c->rng);
	sim_checker_init(&c->ck, opts->n_nodes);

	int rc = RAFT_ENOMEM;
	size_t nv =
	    opts->n_voters && opts->n_voters < opts->n_nodes ? opts->n_voters : opts->n_nodes;
	c->conf.voters = calloc(nv, sizeof(uint64_t));
	if (!c->conf.voters)
		goto fail;
	c->conf.n_voters = nv;
	for (size_t i = 1; i <= nv; i++)
		c->conf.voters[i - 1] = i;
	for (size_t i = 1; i <= opts->n_nodes; i++) {
		c->nodes[i].id = i;
		c->nodes[i].ms = memory_storage_new();
		if (!c->nodes[i].ms)
			goto fail;
		/* Bootstrap: every node's disk starts knowing the membership. */
		rc = memory_storage_set_conf_state(c->nodes[i].ms, &c->conf);
		if (rc != 0)
			goto fail;
	}
	for (size_t i = 1; i <= opts->n_nodes; i++) {
		rc = start_node(c, &c->nodes[i]);
		if (rc != 0)
			goto fail;
	}
	*out = c;
	return 0;
fail:
	sim_cluster_free(c);
	return rc;
}

void sim_cluster_free(sim_cluster *c)
{
	if (!c)
		return;
	for (size_t i = 1; i <= SIM_MAX_NODES; i++) {
		if (c->nodes[i].r)
			raft_free(c->nodes[i].r);
		drop_saves(&c->nodes[i]);
		if (c->nodes[i].ms)
			memory_storage_free(c->nodes[i].ms);
		raft_conf_state_free_contents(&c->nodes[i].conf);
	}
	sim_net_destroy(&c->net);
	sim_checker_destroy(&c->ck);
	raft_conf_state_free_contents(&c->conf);
	free(c->reads);
	free(c->lost_snaps);
	for (size_t i = 0; i < c->n_conf_events; i++)
		raft_conf_state_free_contents(&c->conf_events[i].after);
	free(c->conf_events);
	free(c);
}
