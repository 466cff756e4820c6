/* harness.c — the unit tests' in-memory cluster. */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"

void msgq_push_copy(msgq *q, const raft_msg *m)
{
	if (q->n == q->cap) {
		q->cap = q->cap ? 2 * q->cap : 16;
		q->m = realloc(q->m, q->cap * sizeof(raft_msg));
		assert_non_null(q->m);
	}
	assert_int_equal(raft_msg_copy(&q->m[q->n], m), 0);
	q->n++;
}

void msgq_clear(msgq *q)
{
	for (size_t i = 0; i < q->n; i++)
		raft_msg_free_contents(&q->m[i]);
	q->n = 0;
}

void msgq_free(msgq *q)
{
	msgq_clear(q);
	free(q->m);
	memset(q, 0, sizeof(*q));
}

size_t msgq_count(const msgq *q, raft_msg_type type)
{
	size_t c = 0;
	for (size_t i = 0; i < q->n; i++)
		c += type == RAFT_MSG_TYPE_COUNT || q->m[i].type == type;
	return c;
}

raft_config tcfg(void)
{
	return (raft_config){
	    .election_ticks = 10,
	    .heartbeat_ticks = 1,
	    .max_msg_bytes = 1 << 20,
	    .max_inflight = 256,
	    .seed = 1,
	};
}

static void start_node(tnet *net, tnode *n)
{
	n->cfg.storage = memory_storage_iface(n->ms);
	n->cfg.peers = net->peers;
	n->cfg.n_peers = net->n_voters;
	n->cfg.id = n->id;
	assert_int_equal(raft_new(&n->cfg, &n->r), 0);
}

tnet *tnet_new(size_t n, const raft_config *tmpl)
{
	return tnet_new_voters(n, n, tmpl);
}

tnet *tnet_new_voters(size_t n, size_t n_voters, const raft_config *tmpl)
{
	assert_true(n >= 1 && n <= TN_MAX && n_voters <= n);
	tnet *net = calloc(1, sizeof(*net));
	assert_non_null(net);
	net->n = n;
	net->n_voters = n_voters;
	for (size_t i = 0; i < n; i++)
		net->peers[i] = i + 1;
	for (size_t i = 0; i < n; i++) {
		tnode *nd = &net->nodes[i];
		nd->id = i + 1;
		nd->ms = memory_storage_new();
		assert_non_null(nd->ms);
		nd->cfg = *tmpl;
		start_node(net, nd);
	}
	return net;
}

static void free_node_records(tnode *n)
{
	raft_entries_free(n->applied, n->n_applied);
	n->applied = NULL;
	n->n_applied = n->cap_applied = 0;
	for (size_t i = 0; i < n->n_reads; i++)
		free(n->reads[i].ctx);
	free(n->reads);
	n->reads = NULL;
	n->n_reads = n->cap_reads = 0;
}

void tnet_free(tnet *net)
{
	for (size_t i = 0; i < net->n; i++) {
		raft_free(net->nodes[i].r);
		memory_storage_free(net->nodes[i].ms);
		free_node_records(&net->nodes[i]);
	}
	msgq_free(&net->q);
	free(net);
}

tnode *tnet_node(tnet *net, uint64_t id)
{
	assert_true(id >= 1 && id <= net->n);
	return &net->nodes[id - 1];
}

void tnet_restart(tnet *net, uint64_t id)
{
	tnode *n = tnet_node(net, id);
	raft_free(n->r);
	n->r = NULL;
	free_node_records(n);
	n->cfg.applied = 0;
	start_node(net, n);
}

static void apply_conf_change(tnode *n, const raft_entry *e)
{
	raft_conf_change cc;
	assert_int_equal(codec_conf_change_decode(e->data, e->len, &cc), 0);
	raft_conf_state cs;
	assert_int_equal(raft_apply_conf_change(n->r, cc.type, cc.node_id, &cs), 0);
	assert_int_equal(memory_storage_set_conf_state(n->ms, &cs), 0);
	raft_conf_state_free_contents(&cs);
	raft_conf_change_free_contents(&cc);
}

void tn_drain(tnet *net, tnode *n, msgq *out)
{
	while (raft_has_ready(n->r)) {
		raft_ready rd;
		raft_ready_get(n->r, &rd);
		n->readies++;
		if (rd.snapshot) {
			assert_int_equal(memory_storage_apply_snapshot(n->ms, rd.snapshot), 0);
			n->snap_installed = rd.snapshot->meta.index;
		}
		if (rd.n_entries)
			assert_int_equal(memory_storage_append(n->ms, rd.entries, rd.n_entries), 0);
		if (rd.has_hard_state)
			memory_storage_set_hard_state(n->ms, &rd.hard_state);
		for (size_t i = 0; i < rd.n_msgs; i++)
			msgq_push_copy(out ? out : &net->q, &rd.msgs[i]);
		for (size_t i = 0; i < rd.n_committed; i++) {
			if (n->n_applied == n->cap_applied) {
				n->cap_applied = n->cap_applied ? 2 * n->cap_applied : 16;
				n->applied =
				    realloc(n->applied, n->cap_applied * sizeof(raft_entry));
				assert_non_null(n->applied);
			}
			assert_int_equal(
			    raft_entry_copy(&n->applied[n->n_applied++], &rd.committed[i]), 0);
			if (rd.committed[i].type == RAFT_ENTRY_CONF_CHANGE && rd.committed[i].len)
				apply_conf_change(n, &rd.committed[i]);
		}
		for (size_t i = 0; i < rd.n_read_states; i++) {
			if (n->n_reads == n->cap_reads) {
				n->cap_reads = n->cap_reads ? 2 * n->cap_reads : 8;
				n->reads =
				    realloc(n->reads, n->cap_reads * sizeof(raft_read_state));
				assert_non_null(n->reads);
			}
			raft_read_state *rs = &n->reads[n->n_reads++];
			*rs = rd.read_states[i];
			rs->ctx = NULL;
			if (rs->ctx_len) {
				rs->ctx = malloc(rs->ctx_len);
				memcpy(rs->ctx, rd.read_states[i].ctx, rs->ctx_len);
			}
		}
		raft_advance(n->r, &rd);
	}
}

void tnet_step(tnet *net, const raft_msg *m)
{
	tnode *n = tnet_node(net, m->to);
	raft_step(n->r, m);
	tn_drain(net, n, NULL);
}

void tnet_deliver(tnet *net)
{
	for (size_t i = 0; i < net->n; i++)
		tn_drain(net, &net->nodes[i], NULL);
	size_t head = 0;
	while (head < net->q.n) {
		raft_msg m = net->q.m[head];
		memset(&net->q.m[head], 0, sizeof(raft_msg));
		head++;
		bool drop =
		    net->cut[m.from][m.to] || (net->filter && net->filter(net->filter_ctx, &m));
		if (!drop) {
			net->delivered[m.type]++;
			tnet_step(net, &m);
		}
		raft_msg_free_contents(&m);
		/* Compact the queue now and then so it does not grow forever. */
		if (head > 1024 && head * 2 > net->q.n) {
			memmove(net->q.m, net->q.m + head, (net->q.n - head) * sizeof(raft_msg));
			net->q.n -= head;
			head = 0;
		}
	}
	net->q.n = 0;
}

void tnet_campaign(tnet *net, uint64_t id)
{
	tnode *n = tnet_node(net, id);
	raft_campaign(n->r);
	tn_drain(net, n, NULL);
	tnet_deliver(net);
}

void tnet_tick(tnet *net, uint64_t id, int ticks)
{
	tnode *n = tnet_node(net, id);
	for (int i = 0; i < ticks; i++) {
		raft_tick(n->r);
		tn_drain(net, n, NULL);
		tnet_deliver(net);
	}
}

int tnet_propose(tnet *net, uint64_t id, const char *data)
{
	tnode *n = tnet_node(net, id);
	int rc = raft_propose(n->r, data, strlen(data), NULL, NULL);
	tn_drain(net, n, NULL);
	tnet_deliver(net);
	return rc;
}

void tnet_isolate(tnet *net, uint64_t id)
{
	for (size_t i = 1; i <= net->n; i++) {
		if (i == id)
			continue;
		net->cut[id][i] = true;
		net->cut[i][id] = true;
	}
}

void tnet_cut(tnet *net, uint64_t a, uint64_t b)
{
	net->cut[a][b] = true;
	net->cut[b][a] = true;
}

void tnet_heal(tnet *net)
{
	memset(net->cut, 0, sizeof(net->cut));
}

int tnet_log_cmp(tnet *net, uint64_t a, uint64_t b)
{
	raft_storage *sa = memory_storage_iface(tnet_node(net, a)->ms);
	raft_storage *sb = memory_storage_iface(tnet_node(net, b)->ms);
	uint64_t la, lb, fa, fb;
	sa->last_index(sa->ctx, &la);
	sb->last_index(sb->ctx, &lb);
	sa->first_index(sa->ctx, &fa);
	sb->first_index(sb->ctx, &fb);
	if (la != lb)
		return 1;
	uint64_t lo = fa > fb ? fa : fb;
	for (uint64_t i = lo; i <= la; i++) {
		uint64_t ta, tb;
		if (sa->term(sa->ctx, i, &ta) != 0 || sb->term(sb->ctx, i, &tb) != 0 || ta != tb)
			return 1;
	}
	return 0;
}
