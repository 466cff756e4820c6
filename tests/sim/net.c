/* net.c — the simulated network (see net.h). */
#include "net.h"

#include <stdlib.h>
#include <string.h>

void sim_net_init(sim_net *net, size_t n_nodes, sim_rng *rng)
{
	memset(net, 0, sizeof(*net));
	net->n_nodes = n_nodes;
	net->rng = rng;
	for (size_t i = 0; i <= SIM_MAX_NODES; i++)
		net->connected[i] = true;
}

void sim_net_destroy(sim_net *net)
{
	for (size_t i = 0; i < net->n_heap; i++)
		raft_msg_free_contents(&net->heap[i].msg);
	free(net->heap);
	net->heap = NULL;
	net->n_heap = net->cap_heap = 0;
}

bool sim_net_can_talk(const sim_net *net, uint64_t a, uint64_t b)
{
	if (a == 0 || b == 0 || a > net->n_nodes || b > net->n_nodes)
		return false;
	return net->connected[a] && net->connected[b] && net->group[a] == net->group[b];
}

bool sim_msg_is_request(raft_msg_type t)
{
	switch (t) {
	case RAFT_MSG_PROP:
	case RAFT_MSG_APP:
	case RAFT_MSG_VOTE:
	case RAFT_MSG_SNAP:
	case RAFT_MSG_HEARTBEAT:
	case RAFT_MSG_TRANSFER_LEADER:
	case RAFT_MSG_TIMEOUT_NOW:
	case RAFT_MSG_READ_INDEX:
	case RAFT_MSG_PRE_VOTE:
		return true;
	default:
		return false;
	}
}

uint64_t sim_msg_bytes(const raft_msg *m)
{
	/* Fixed header fields as a varint-encoded protobuf would roughly take. */
	uint64_t n = 40 + m->context_len;
	for (size_t i = 0; i < m->n_entries; i++)
		n += raft_entry_size(&m->entries[i]);
	if (m->snapshot)
		n += m->snapshot->len + 24 +
		     8 * (m->snapshot->meta.conf.n_voters + m->snapshot->meta.conf.n_learners);
	return n;
}

static bool before(const sim_packet *a, const sim_packet *b)
{
	if (a->deliver_at != b->deliver_at)
		return a->deliver_at < b->deliver_at;
	return a->seq < b->seq;
}

static void swap_packets(sim_packet *a, sim_packet *b)
{
	sim_packet t = *a;
	*a = *b;
	*b = t;
}

static int heap_push(sim_net *net, sim_packet *p)
{
	if (net->n_heap == net->cap_heap) {
		size_t cap = net->cap_heap ? net->cap_heap * 2 : 64;
		sim_packet *h = realloc(net->heap, cap * sizeof(*h));
		if (!h)
			return RAFT_ENOMEM;
		net->heap = h;
		net->cap_heap = cap;
	}
	size_t i = net->n_heap++;
	net->heap[i] = *p;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!before(&net->heap[i], &net->heap[parent]))
			break;
		swap_packets(&net->heap[i], &net->heap[parent]);
		i = parent;
	}
	return 0;
}

static void heap_pop(sim_net *net, sim_packet *out)
{
	*out = net->heap[0];
	net->heap[0] = net->heap[--net->n_heap];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < net->n_heap && before(&net->heap[l], &net->heap[m]))
			m = l;
		if (r < net->n_heap && before(&net->heap[r], &net->heap[m]))
			m = r;
		if (m == i)
			break;
		swap_packets(&net->heap[i], &net->heap[m]);
		i = m;
	}
}

static uint64_t pick_delay(sim_net *net, const raft_msg *m)
{
	uint64_t d = 0;
	if (net->max_delay)
		d = sim_rng_below(net->rng, (uint64_t)net->max_delay + 1);
	/* Like labrpc's long reordering: replies held back, often past an
	 * election timeout, so stale responses arrive in a later term; the
	 * extra delay is skewed towards short (uniform below a uniform). */
	if (net->long_delay_pm && !sim_msg_is_request(m->type) &&
	    sim_rng_chance(net->rng, net->long_delay_pm))
		d += 1 + net->long_delay_min +
		     sim_rng_below(net->rng,
				   1 + sim_rng_below(net->rng, (uint64_t)net->long_delay_max + 1));
	return d;
}

static int queue_copy(sim_net *net, const raft_msg *m, uint64_t sender, uint64_t at, uint64_t inc)
{
	sim_packet p;
	memset(&p, 0, sizeof(p));
	if (raft_msg_copy(&p.msg, m) != 0)
		return RAFT_ENOMEM;
	p.deliver_at = at;
	p.seq = net->next_seq++;
	p.sender = sender;
	p.sender_incarnation = inc;
	if (heap_push(net, &p) != 0) {
		raft_msg_free_contents(&p.msg);
		return RAFT_ENOMEM;
	}
	return 0;
}

int sim_net_send(sim_net *net, const raft_msg *m, uint64_t from, uint64_t now, uint64_t inc)
{
	net->msgs_sent++;
	net->bytes_sent += sim_msg_bytes(m);
	if (from <= net->n_nodes && sim_msg_is_request(m->type))
		net->rpcs[from]++;
	if ((unsigned)m->type < RAFT_MSG_TYPE_COUNT)
		net->by_type[m->type]++;
	if (m->type == RAFT_MSG_APP_RESP && m->reject)
		net->rejects++;

	if (!sim_net_can_talk(net, from, m->to)) {
		net->msgs_dropped++;
		return 0;
	}
	if (net->drop_pm[from][m->to] && sim_rng_chance(net->rng, net->drop_pm[from][m->to])) {
		net->msgs_dropped++;
		return 0;
	}
	int copies = 1;
	if (net->dup_pm && sim_rng_chance(net->rng, net->dup_pm))
		copies = 2;
	for (int i = 0; i < copies; i++) {
		uint64_t at = now + pick_delay(net, m);
		if (at < net->hold_until[from][m->to])
			at = net->hold_until[from][m->to];
		int rc = queue_copy(net, m, from, at, inc);
		if (rc != 0)
			return rc;
	}
	return copies;
}

bool sim_net_pop_due(sim_net *net, uint64_t now, uint64_t seq_limit, sim_packet *out)
{
	if (net->n_heap == 0 || net->heap[0].deliver_at > now || net->heap[0].seq >= seq_limit)
		return false;
	heap_pop(net, out);
	return true;
}

void sim_net_set_drop(sim_net *net, uint32_t drop_pm)
{
	for (size_t a = 0; a <= SIM_MAX_NODES; a++)
		for (size_t b = 0; b <= SIM_MAX_NODES; b++)
			net->drop_pm[a][b] = drop_pm;
}
