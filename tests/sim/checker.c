/* checker.c — Raft safety properties over the simulated cluster (see
 * checker.h). */
#include "checker.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sim_checker_init(sim_checker *ck, size_t n_nodes)
{
	memset(ck, 0, sizeof(*ck));
	ck->n_nodes = n_nodes;
}

void sim_checker_destroy(sim_checker *ck)
{
	for (size_t i = 0; i <= SIM_MAX_NODES; i++)
		free(ck->mirror[i].ents);
	for (size_t i = 0; i < ck->n_com; i++)
		free(ck->com[i].data);
	free(ck->com);
	free(ck->leader_of_term);
	free(ck->commit_by_term);
	memset(ck, 0, sizeof(*ck));
}

void sim_checker_fail(sim_checker *ck, const char *fmt, ...)
{
	if (ck->failed)
		return;
	ck->failed = true;
	int off = snprintf(ck->msg, sizeof(ck->msg), "tick %llu: ", (unsigned long long)ck->now);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ck->msg + off, sizeof(ck->msg) - (size_t)off, fmt, ap);
	va_end(ap);
}

static uint64_t mirror_last(const sim_mirror *m)
{
	return m->base + m->n;
}

/* The position at index, if the mirror knows it (the snapshot base counts). */
static const sim_log_pos *mirror_pos(const sim_mirror *m, uint64_t index)
{
	if (index == m->base)
		return &m->base_pos;
	if (index < m->base || index > mirror_last(m))
		return NULL;
	return &m->ents[index - m->base - 1];
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	void *np = realloc(*p, c * elem);
	if (!np)
		return RAFT_ENOMEM;
	*p = np;
	*cap = c;
	return 0;
}

static int ensure_term(sim_checker *ck, uint64_t term)
{
	if (term < ck->n_terms)
		return 0;
	size_t n = ck->n_terms ? ck->n_terms : 64;
	while (n <= term)
		n *= 2;
	uint64_t *a = realloc(ck->leader_of_term, n * sizeof(*a));
	if (!a)
		return RAFT_ENOMEM;
	ck->leader_of_term = a;
	uint64_t *b = realloc(ck->commit_by_term, n * sizeof(*b));
	if (!b)
		return RAFT_ENOMEM;
	ck->commit_by_term = b;
	memset(a + ck->n_terms, 0, (n - ck->n_terms) * sizeof(*a));
	memset(b + ck->n_terms, 0, (n - ck->n_terms) * sizeof(*b));
	ck->n_terms = n;
	return 0;
}

const sim_committed *sim_checker_entry(const sim_checker *ck, uint64_t index)
{
	if (index == 0 || index > ck->n_com)
		return NULL;
	return &ck->com[index - 1];
}

void sim_checker_persist_entries(sim_checker *ck, uint64_t node, const raft_entry *ents, size_t n)
{
	sim_mirror *m = &ck->mirror[node];
	size_t skip = 0;
	while (skip < n && ents[skip].index <= m->base)
		skip++; /* already covered by the snapshot, as memory_storage ignores them */
	if (skip == n)
		return;
	uint64_t first = ents[skip].index;
	if (first > mirror_last(m) + 1) {
		sim_checker_fail(ck,
				 "node %llu persisted entry %llu after last %llu: gap in the log",
				 (unsigned long long)node, (unsigned long long)first,
				 (unsigned long long)mirror_last(m));
		return;
	}
	if (grow((void **)&m->ents, &m->cap, (size_t)(first - m->base - 1) + (n - skip),
		 sizeof(*m->ents)) != 0) {
		sim_checker_fail(ck, "out of memory mirroring node %llu's log",
				 (unsigned long long)node);
		return;
	}
	m->n = (size_t)(first - m->base - 1);
	for (size_t k = skip; k < n; k++) {
		const raft_entry *e = &ents[k];
		if (e->index != mirror_last(m) + 1) {
			sim_checker_fail(
			    ck, "node %llu persisted non-contiguous entries (%llu after %llu)",
			    (unsigned long long)node, (unsigned long long)e->index,
			    (unsigned long long)mirror_last(m));
			return;
		}
		const sim_log_pos *prev = mirror_pos(m, e->index - 1);
		if (prev && e->term < prev->term) {
			sim_checker_fail(
			    ck,
			    "node %llu: entry %llu has term %llu below the previous entry's %llu",
			    (unsigned long long)node, (unsigned long long)e->index,
			    (unsigned long long)e->term, (unsigned long long)prev->term);
			return;
		}
		sim_log_pos p = {
		    .term = e->term,
		    .chain = sim_chain_next(prev ? prev->chain : 0, e),
		    .last_write = sim_entry_is_write(e) ? e->index : (prev ? prev->last_write : 0),
		};
		m->ents[m->n++] = p;

		/* A node never rewrites what it has itself committed. */
		const sim_committed *c = sim_checker_entry(ck, e->index);
		if (e->index <= m->commit && c && c->pos.chain != p.chain) {
			sim_checker_fail(
			    ck, "node %llu overwrote its committed entry %llu (commit %llu)",
			    (unsigned long long)node, (unsigned long long)e->index,
			    (unsigned long long)m->commit);
			return;
		}
		/* Log matching (§5.3): same index and term means same log up to it. */
		for (uint64_t o = 1; o <= ck->n_nodes; o++) {
			if (o == node)
				continue;
			const sim_log_pos *q = mirror_pos(&ck->mirror[o], e->index);
			if (q && q->term == p.term && q->chain != p.chain) {
				sim_checker_fail(
				    ck,
				    "log matching violated: nodes %llu and %llu both have "
				    "term %llu at index %llu but different logs up to it",
				    (unsigned long long)node, (unsigned long long)o,
				    (unsigned long long)p.term, (unsigned long long)e->index);
				return;
			}
		}
	}
}

void sim_checker_persist_snapshot(sim_checker *ck, uint64_t node, uint64_t index, uint64_t term)
{
	sim_mirror *m = &ck->mirror[node];
	const sim_committed *c = sim_checker_entry(ck, index);
	if (index > 0 && !c) {
		sim_checker_fail(
		    ck, "node %llu persisted a snapshot at %llu beyond every commit (%llu)",
		    (unsigned long long)node, (unsigned long long)index,
		    (unsigned long long)ck->n_com);
		return;
	}
	if (c && c->pos.term != term) {
		sim_checker_fail(ck,
				 "node %llu persisted a snapshot at %llu with term %llu, but "
				 "term %llu was committed there",
				 (unsigned long long)node, (unsigned long long)index,
				 (unsigned long long)term, (unsigned long long)c->pos.term);
		return;
	}
	m->base = index;
	memset(&m->base_pos, 0, sizeof(m->base_pos));
	if (c)
		m->base_pos = c->pos;
	m->n = 0;
	if (m->commit < index)
		m->commit = index;
}

void sim_checker_hard_state(sim_checker *ck, uint64_t node, const raft_hard_state *hs)
{
	raft_hard_state *prev = &ck->mirror[node].hs;
	if (hs->term < prev->term)
		sim_checker_fail(ck, "node %llu persisted term %llu after term %llu",
				 (unsigned long long)node, (unsigned long long)hs->term,
				 (unsigned long long)prev->term);
	else if (hs->term == prev->term && prev->vote && hs->vote != prev->vote)
		sim_checker_fail(ck, "node %llu voted twice in term %llu: for %llu, then for %llu",
				 (unsigned long long)node, (unsigned long long)hs->term,
				 (unsigned long long)prev->vote, (unsigned long long)hs->vote);
	else if (hs->commit < prev->commit)
		sim_checker_fail(ck, "node %llu persisted commit %llu after commit %llu",
				 (unsigned long long)node, (unsigned long long)hs->commit,
				 (unsigned long long)prev->commit);
	*prev = *hs;
}

void sim_checker_commit(sim_checker *ck, uint64_t node, uint64_t hs_term, uint64_t commit,
			bool is_leader)
{
	sim_mirror *m = &ck->mirror[node];
	if (commit > mirror_last(m)) {
		sim_checker_fail(ck, "node %llu committed %llu beyond its last entry %llu",
				 (unsigned long long)node, (unsigned long long)commit,
				 (unsigned long long)mirror_last(m));
		return;
	}
	if (commit > m->commit)
		m->commit = commit;
	/* Agreement with what is already known committed (state machine
	 * safety at the log level). */
	uint64_t j = commit < ck->n_com ? commit : ck->n_com;
	const sim_log_pos *p = j ? mirror_pos(m, j) : NULL;
	if (p && p->chain != ck->com[j - 1].pos.chain) {
		sim_checker_fail(ck,
				 "node %llu committed index %llu (term %llu) differently from what "
				 "was committed before (term %llu)",
				 (unsigned long long)node, (unsigned long long)j,
				 (unsigned long long)p->term,
				 (unsigned long long)ck->com[j - 1].pos.term);
		return;
	}
	if (commit > ck->n_com) {
		if (grow((void **)&ck->com, &ck->cap_com, (size_t)commit, sizeof(*ck->com)) != 0) {
			sim_checker_fail(ck, "out of memory recording commits");
			return;
		}
		for (uint64_t i = ck->n_com + 1; i <= commit; i++) {
			const sim_log_pos *q = mirror_pos(m, i);
			if (!q) {
				sim_checker_fail(
				    ck,
				    "node %llu committed %llu but its log (snapshot %llu) "
				    "does not show entry %llu",
				    (unsigned long long)node, (unsigned long long)commit,
				    (unsigned long long)m->base, (unsigned long long)i);
				return;
			}
			memset(&ck->com[i - 1], 0, sizeof(ck->com[i - 1]));
			ck->com[i - 1].pos = *q;
			ck->n_com = i;
		}
	}
	if (is_leader) {
		if (ensure_term(ck, hs_term) != 0) {
			sim_checker_fail(ck, "out of memory recording terms");
			return;
		}
		if (commit > ck->commit_by_term[hs_term])
			ck->commit_by_term[hs_term] = commit;
	}
}

void sim_checker_leader(sim_checker *ck, uint64_t node, uint64_t term)
{
	if (ensure_term(ck, term) != 0) {
		sim_checker_fail(ck, "out of memory recording terms");
		return;
	}
	uint64_t prev = ck->leader_of_term[term];
	if (prev && prev != node) {
		sim_checker_fail(
		    ck, "election safety violated: nodes %llu and %llu both leader of term %llu",
		    (unsigned long long)prev, (unsigned long long)node, (unsigned long long)term);
		return;
	}
	ck->leader_of_term[term] = node;

	/* Leader completeness (§5.4): everything committed by leaders of
	 * earlier terms is in this leader's log. */
	uint64_t need = 0;
	for (uint64_t t = 0; t < term; t++)
		if (ck->commit_by_term[t] > need)
			need = ck->commit_by_term[t];
	if (need == 0)
		return;
	const sim_mirror *m = &ck->mirror[node];
	if (need > mirror_last(m)) {
		sim_checker_fail(
		    ck,
		    "leader completeness violated: node %llu leads term %llu with last "
		    "index %llu but %llu was committed in an earlier term",
		    (unsigned long long)node, (unsigned long long)term,
		    (unsigned long long)mirror_last(m), (unsigned long long)need);
		return;
	}
	const sim_log_pos *p = mirror_pos(m, need);
	if (p && p->chain != ck->com[need - 1].pos.chain)
		sim_checker_fail(
		    ck,
		    "leader completeness violated: node %llu leads term %llu but its log "
		    "differs from the committed one at or before %llu",
		    (unsigned long long)node, (unsigned long long)term, (unsigned long long)need);
}

void sim_checker_apply(sim_checker *ck, uint64_t node, const raft_entry *e, const sim_sm *after)
{
	if (e->index == 0 || e->index > ck->n_com) {
		sim_checker_fail(ck,
				 "node %llu applied entry %llu (term %llu) that is not committed "
				 "(committed: %llu)",
				 (unsigned long long)node, (unsigned long long)e->index,
				 (unsigned long long)e->term, (unsigned long long)ck->n_com);
		return;
	}
	sim_committed *c = &ck->com[e->index - 1];
	if (c->pos.term != e->term || c->pos.chain != after->chain) {
		sim_checker_fail(
		    ck,
		    "state machine safety violated: node %llu applied index %llu term "
		    "%llu, which differs from the committed entry (term %llu) or follows a "
		    "different history",
		    (unsigned long long)node, (unsigned long long)e->index,
		    (unsigned long long)e->term, (unsigned long long)c->pos.term);
		return;
	}
	if (!c->applied) {
		c->applied = true;
		c->len = e->len;
		if (e->len) {
			c->data = malloc(e->len);
			if (!c->data) {
				sim_checker_fail(ck, "out of memory recording entry %llu",
						 (unsigned long long)e->index);
				return;
			}
			memcpy(c->data, e->data, e->len);
		}
	}
}

void sim_checker_restore(sim_checker *ck, uint64_t node, const sim_sm *sm)
{
	if (sm->applied == 0)
		return;
	const sim_committed *c = sim_checker_entry(ck, sm->applied);
	if (!c || c->pos.chain != sm->chain || c->pos.last_write != sm->last_write)
		sim_checker_fail(ck,
				 "node %llu restored a state machine at %llu that does not match "
				 "the committed log",
				 (unsigned long long)node, (unsigned long long)sm->applied);
}
