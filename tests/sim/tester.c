/* tester.c — the 6.824 tester surface (see tester.h). */
#include "tester.h"

#include <string.h>

/* 6.824's one(): 10 s overall, 2 s per submission, poll every 20 ms. */
#define ONE_TOTAL_TICKS (10 * SIM_TICKS_PER_SEC)
#define ONE_WAIT_TICKS (2 * SIM_TICKS_PER_SEC)
#define ONE_RETRY_TICKS 1

uint64_t sim_ms(sim_cluster *c, uint64_t ms)
{
	uint64_t per_tick = 1000 / SIM_TICKS_PER_SEC;
	uint64_t t = ms / per_tick;
	if (sim_rng_below(&c->rng, per_tick) < ms % per_tick)
		t++;
	return t;
}

uint64_t sim_rand_cmd(sim_cluster *c)
{
	return sim_rng_next(&c->rng) >> 1;
}

static void u64_bytes(uint8_t out[8], uint64_t v)
{
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

bool sim_start(sim_cluster *c, uint64_t id, const void *data, size_t len, uint64_t *index,
	       uint64_t *term)
{
	uint64_t i = 0, t = 0;
	bool ok = false;
	raft *r = c->nodes[id].r;
	if (r && raft_is_leader(r)) {
		int rc = sim_propose(c, id, data, len, &i, &t);
		ok = rc == 0 && i != 0;
		if (rc != 0 && rc != RAFT_EPROPOSAL_DROPPED)
			sim_fail(c, "node %llu: propose: %s", (unsigned long long)id,
				 raft_strerror(rc));
	}
	if (index)
		*index = i;
	if (term)
		*term = t ? t : (r ? raft_term(r) : 0);
	return ok;
}

bool sim_start_u64(sim_cluster *c, uint64_t id, uint64_t cmd, uint64_t *index, uint64_t *term)
{
	uint8_t b[8];
	u64_bytes(b, cmd);
	return sim_start(c, id, b, sizeof(b), index, term);
}

void sim_get_state(sim_cluster *c, uint64_t id, uint64_t *term, bool *is_leader)
{
	raft *r = c->nodes[id].r;
	*term = r ? raft_term(r) : 0;
	*is_leader = r ? raft_is_leader(r) : false;
}

void sim_crash1(sim_cluster *c, uint64_t id)
{
	sim_disconnect(c, id);
	sim_crash(c, id);
}

void sim_start1(sim_cluster *c, uint64_t id)
{
	sim_restart(c, id);
}

static bool up(sim_cluster *c, uint64_t id)
{
	return c->nodes[id].r && c->net.connected[id];
}

uint64_t sim_check_one_leader(sim_cluster *c)
{
	for (int iter = 0; iter < 10; iter++) {
		sim_run(c, 9 + sim_rng_below(&c->rng, 3)); /* the lab's 450..550 ms */
		uint64_t best_term = 0, best = 0;
		for (uint64_t i = 1; i <= c->opts.n_nodes; i++) {
			if (!up(c, i) || !raft_is_leader(c->nodes[i].r))
				continue;
			uint64_t t = raft_term(c->nodes[i].r);
			for (uint64_t j = i + 1; j <= c->opts.n_nodes; j++) {
				if (up(c, j) && raft_is_leader(c->nodes[j].r) &&
				    raft_term(c->nodes[j].r) == t) {
					sim_fail(c, "term %llu has two leaders: %llu and %llu",
						 (unsigned long long)t, (unsigned long long)i,
						 (unsigned long long)j);
					return 0;
				}
			}
			if (t >= best_term) {
				best_term = t;
				best = i;
			}
		}
		if (best)
			return best;
	}
	sim_fail(c, "expected one leader, got none");
	return 0;
}

uint64_t sim_check_terms(sim_cluster *c)
{
	uint64_t term = 0;
	for (uint64_t i = 1; i <= c->opts.n_nodes; i++) {
		if (!up(c, i))
			continue;
		uint64_t t = raft_term(c->nodes[i].r);
		if (term == 0)
			term = t;
		else if (t != term) {
			sim_fail(c, "servers disagree on term (%llu vs %llu at node %llu)",
				 (unsigned long long)term, (unsigned long long)t,
				 (unsigned long long)i);
			return 0;
		}
	}
	return term;
}

void sim_check_no_leader(sim_cluster *c)
{
	for (uint64_t i = 1; i <= c->opts.n_nodes; i++)
		if (up(c, i) && raft_is_leader(c->nodes[i].r))
			sim_fail(
			    c,
			    "expected no leader among connected servers, but %llu claims to be "
			    "leader",
			    (unsigned long long)i);
}

size_t sim_n_committed(sim_cluster *c, uint64_t index, const sim_committed **entry)
{
	size_t n = 0;
	for (uint64_t i = 1; i <= c->opts.n_nodes; i++)
		if (c->nodes[i].known_upto >= index)
			n++;
	const sim_committed *e = sim_checker_entry(&c->ck, index);
	if (n > 0 && (!e || !e->applied)) {
		sim_fail(c,
			 "nodes report index %llu applied but the checker has no committed entry",
			 (unsigned long long)index);
		n = 0;
	}
	if (entry)
		*entry = n ? e : NULL;
	return n;
}

static bool same_cmd(const sim_committed *e, const uint8_t *data, size_t len)
{
	return e && e->len == len && (len == 0 || memcmp(e->data, data, len) == 0);
}

void sim_client_begin(sim_cluster *c, sim_client *cl, uint64_t cmd, size_t expected, bool retry)
{
	memset(cl, 0, sizeof(*cl));
	u64_bytes(cl->data, cmd);
	cl->expected = expected;
	cl->retry = retry;
	cl->deadline = c->now + ONE_TOTAL_TICKS;
	cl->retry_at = c->now;
}

bool sim_client_poll(sim_cluster *c, sim_client *cl)
{
	if (cl->done || sim_failed(c))
		return true;
	if (cl->index) {
		const sim_committed *e;
		size_t nd = sim_n_committed(c, cl->index, &e);
		if (nd > 0 && nd >= cl->expected && same_cmd(e, cl->data, sizeof(cl->data))) {
			cl->done = true;
			return true;
		}
		if (c->now - cl->submitted < ONE_WAIT_TICKS)
			return false;
		if (!cl->retry) {
			sim_fail(c, "one(%016llx) failed to reach agreement",
				 (unsigned long long)sim_data_value(cl->data, sizeof(cl->data)));
			return true;
		}
		cl->index = 0;
		cl->retry_at = c->now + ONE_RETRY_TICKS;
	}
	if (c->now >= cl->deadline) {
		sim_fail(c, "one(%016llx) failed to reach agreement in %d ticks",
			 (unsigned long long)sim_data_value(cl->data, sizeof(cl->data)),
			 ONE_TOTAL_TICKS);
		return true;
	}
	if (c->now < cl->retry_at)
		return false;
	for (size_t k = 0; k < c->opts.n_nodes; k++) {
		cl->next_node = cl->next_node % c->opts.n_nodes + 1;
		uint64_t i = cl->next_node;
		uint64_t index;
		if (up(c, i) && sim_start(c, i, cl->data, sizeof(cl->data), &index, NULL)) {
			cl->index = index;
			cl->submitted = c->now;
			return false;
		}
	}
	/* No leader: the lab sleeps 50 ms before trying again. */
	cl->retry_at = c->now + ONE_RETRY_TICKS;
	return false;
}

uint64_t sim_one_u64(sim_cluster *c, uint64_t cmd, size_t expected, bool retry)
{
	uint8_t b[8];
	u64_bytes(b, cmd);
	return sim_one(c, b, sizeof(b), expected, retry);
}

uint64_t sim_one(sim_cluster *c, const void *data, size_t len, size_t expected, bool retry)
{
	uint64_t deadline = c->now + ONE_TOTAL_TICKS;
	size_t next = 0;
	while (c->now < deadline && !sim_failed(c)) {
		uint64_t index = 0;
		for (size_t k = 0; k < c->opts.n_nodes && index == 0; k++) {
			next = next % c->opts.n_nodes + 1;
			if (up(c, next))
				sim_start(c, next, data, len, &index, NULL);
		}
		if (index) {
			uint64_t t1 = c->now;
			while (c->now - t1 < ONE_WAIT_TICKS) {
				const sim_committed *e;
				size_t nd = sim_n_committed(c, index, &e);
				if (nd > 0 && nd >= expected && same_cmd(e, data, len))
					return index;
				sim_tick(c);
			}
			if (!retry) {
				sim_fail(c, "one(%zu-byte command) failed to reach agreement", len);
				return 0;
			}
		} else {
			sim_tick(c);
		}
	}
	sim_fail(c, "one(%zu-byte command) failed to reach agreement", len);
	return 0;
}

bool sim_wait(sim_cluster *c, uint64_t index, size_t n, int64_t start_term)
{
	uint64_t to = 1;
	for (int iter = 0; iter < 30; iter++) {
		if (sim_n_committed(c, index, NULL) >= n)
			return true;
		sim_run(c, to);
		if (to < SIM_TICKS_PER_SEC)
			to *= 2;
		if (start_term >= 0) {
			for (uint64_t i = 1; i <= c->opts.n_nodes; i++) {
				if (c->nodes[i].r &&
				    raft_term(c->nodes[i].r) > (uint64_t)start_term)
					return false; /* someone moved on: can't expect success */
			}
		}
	}
	if (sim_n_committed(c, index, NULL) >= n)
		return true;
	sim_fail(c, "only %zu decided for index %llu; wanted %zu", sim_n_committed(c, index, NULL),
		 (unsigned long long)index, n);
	return false;
}
