/* test_util.c — helpers shared by the core's unit tests. */
#include "test_util.h"

#include <stdlib.h>

#include "raft.h"

void tu_preload(tnet *net, uint64_t id, const uint64_t *terms, size_t n, uint64_t term,
		uint64_t commit)
{
	tnode *nd = tnet_node(net, id);
	raft_entry *ents = calloc(n ? n : 1, sizeof(*ents));
	assert_non_null(ents);
	for (size_t i = 0; i < n; i++)
		ents[i] = ent(i + 1, terms[i]);
	assert_int_equal(memory_storage_append(nd->ms, ents, n), 0);
	free(ents);
	raft_hard_state hs = {.term = term, .commit = commit};
	memory_storage_set_hard_state(nd->ms, &hs);
	tnet_restart(net, id);
}

void tu_step(tnet *net, uint64_t id, raft_msg m, msgq *out)
{
	tnode *nd = tnet_node(net, id);
	m.to = id;
	raft_step(nd->r, &m);
	tn_drain(net, nd, out);
}

void tu_make_leader(tnet *net, uint64_t id, msgq *out)
{
	tnode *nd = tnet_node(net, id);
	raft_campaign(nd->r);
	tn_drain(net, nd, out);
	for (size_t i = 1; i <= net->n && !raft_is_leader(nd->r); i++) {
		if (i == id)
			continue;
		tu_step(net, id,
			(raft_msg){.type = RAFT_MSG_VOTE_RESP, .from = i, .term = raft_term(nd->r)},
			out);
	}
	assert_true(raft_is_leader(nd->r));
}

uint64_t tu_stored_term(tnet *net, uint64_t id, uint64_t index)
{
	raft_storage *s = memory_storage_iface(tnet_node(net, id)->ms);
	uint64_t t = 0;
	if (s->term(s->ctx, index, &t) != 0)
		return 0;
	return t;
}

uint64_t tu_stored_last(tnet *net, uint64_t id)
{
	raft_storage *s = memory_storage_iface(tnet_node(net, id)->ms);
	uint64_t last = 0;
	s->last_index(s->ctx, &last);
	return last;
}
