/* node_pending.c — the node's pending proposals (a list in increasing seq,
 * under mu) and the first of them not handed out committed here, kept as
 * the list changes, so that the close lease's question — how long has the
 * oldest unanswered proposal waited (node_unanswered_ms, asked on every
 * close-behind close) — costs O(1) instead of a walk over the committed
 * head of the list (up to the pending bound while the apply lags). */
#include "node_internal.h"

/* Moves n->pend_unc past proposals handed out committed. Each step passes
 * one that was committed since pend_unc last moved past it: amortised over
 * the commits, O(1). */
static void unc_skip(node *n)
{
	while (n->pend_unc && n->pend_unc->committed)
		n->pend_unc = n->pend_unc->next;
}

void node_pending_append(node *n, proposal *p)
{
	p->next = NULL;
	p->prev = n->pend_tail;
	if (n->pend_tail)
		n->pend_tail->next = p;
	else
		n->pend_head = p;
	n->pend_tail = p;
	atomic_fetch_add(&n->pend_count, 1);
	if (!n->pend_unc && !p->committed)
		n->pend_unc = p;
}

void node_pending_unlink(node *n, proposal *p)
{
	if (n->pend_unc == p) {
		n->pend_unc = p->next;
		unc_skip(n);
	}
	if (p->prev)
		p->prev->next = p->next;
	else
		n->pend_head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		n->pend_tail = p->prev;
	p->next = p->prev = NULL;
	atomic_fetch_sub(&n->pend_count, 1);
}

void node_pending_committed(node *n, proposal *p)
{
	p->committed = true;
	if (n->pend_unc == p)
		unc_skip(n);
}

void node_pending_retried(node *n, proposal *p)
{
	p->committed = false;
	/* Every one before pend_unc is committed, so p, now not, is the
	 * first unless one before it is not either. */
	if (!n->pend_unc || p->seq < n->pend_unc->seq)
		n->pend_unc = p;
}

const proposal *node_pending_unanswered(const node *n)
{
	return n->pend_unc;
}
