/* node_elide.c — a forwarder's own bytes (README-node.md): the data a
 * leader left out of an append to this node because this node proposed it
 * (transport.h, TRANSPORT_ELIDE_MIN_BYTES) is filled in from the pending
 * proposal it forwarded, and a leader that hears a follower lacked one
 * sends it again whole.
 *
 * Raft safety: the log must hold exactly the leader's bytes. The leader
 * kept the envelope (client id, seq, min_pending as of the try it logged)
 * and sent the whole length and CRC-32C; the copy is the leader's envelope
 * followed by the pending proposal's command, and is taken only when the
 * client id is this node's, the seq is pending here, the lengths agree and
 * the CRC of the result is the leader's. Anything else — a proposal
 * answered and freed meanwhile, another run's client id (this node
 * restarted), a different command — cuts the append before that entry:
 * the core takes the whole entries before it, and the next append
 * response names the entry, so the leader sends it and everything it had
 * sent whole: the core sends it again as plain Raft does after a loss (the
 * next append, which this node refuses, or a heartbeat answered while this
 * node's match is behind). */
#include "node_internal.h"

#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "crc32c.h"
#include "envelope.h"
#include "runtime_log.h"

/* Under n->mu: the pending proposal seq if it is len bytes long, or NULL.
 * The newest are looked at first: appends follow proposals closely. */
static proposal *pending_of_len(node *n, uint64_t seq, size_t len)
{
	proposal *p;

	for (p = n->pend_tail; p && p->seq > seq; p = p->prev)
		;
	return p && p->seq == seq && p->len == len ? p : NULL;
}

/* Fills e, of which el says what was left out, from this node's pending
 * proposals: 0, or -1 when it lacks it; blob: e's message holds its data
 * in shared blocks (raft_msg.blob_data), and so will e. When the leader
 * logged the try the proposal still holds (the same envelope), e takes a
 * reference to the proposal's block (node_start's): its bytes never
 * change while another holds it (try_propose copies a shared block before
 * writing another envelope), and both run on the loop thread. Otherwise
 * (the envelope of an earlier try, or a message of copies) the leader's
 * envelope and the pending command are copied: nothing is allocated
 * before a pending copy of the length the leader named is found (el->len
 * comes from the network). The copy itself is made under n->mu, which
 * FUSE threads (node_start) and apply also take: a proposal is freed
 * under it by whoever answers it (apply, or check_proposals at its
 * deadline while its entry may still commit), so reading it outside the
 * lock would need a pin that every one of those honours, deferring the
 * free to the pinner — more than a copy of at most max_frame_bytes / 2
 * (node_start) is worth, once per own big entry. The buffer is allocated
 * outside the lock, and the lookup done again. */
static int fill_one(node *n, raft_entry *e, const raft_elision *el, bool blob)
{
	envelope env;
	const uint8_t *cmd;
	size_t cmd_len;
	uint8_t *whole = NULL;
	proposal *p;
	bool found;

	if (n->elide_forget || e->len != ENVELOPE_BYTES ||
	    envelope_decode(e->data, e->len, &env, &cmd, &cmd_len) != 0 || env.client != n->client_id)
		return -1;
	pthread_mutex_lock(&n->mu);
	p = pending_of_len(n, env.seq, el->len);
	found = p != NULL;
	if (p && blob && memcmp(p->data, e->data, ENVELOPE_BYTES) == 0) {
		whole = p->data;
		raft_blob_ref(whole);
	}
	pthread_mutex_unlock(&n->mu);
	if (!found)
		return -1;
	if (!whole) {
		if (!(whole = blob ? raft_blob_new(el->len) : malloc(el->len)))
			return -1;
		memcpy(whole, e->data, ENVELOPE_BYTES);
		pthread_mutex_lock(&n->mu);
		p = pending_of_len(n, env.seq, el->len); /* answered meanwhile: NULL */
		if (p)
			memcpy(whole + ENVELOPE_BYTES, p->data + ENVELOPE_BYTES,
			       p->len - ENVELOPE_BYTES);
		pthread_mutex_unlock(&n->mu);
		found = p != NULL;
	}
	if (!found || crc32c_extend(0, whole, el->len) != el->crc) {
		raft_data_release(whole, blob);
		return -1;
	}
	raft_data_release(e->data, blob);
	e->data = whole;
	e->len = el->len;
	return 0;
}

void node_elide_fill(node *n, raft_msg *m)
{
	raft_elision *el = m->elided;

	/* The message is whole from here on, or cut before what it lacks. */
	m->elided = NULL;
	for (size_t i = 0; el && i < m->n_entries; i++) {
		if (!el[i].len)
			continue;
		if (fill_one(n, &m->entries[i], &el[i], m->blob_data) == 0) {
			n->elide_filled++;
			continue;
		}
		n->elide_lacked++;
		RLOG(RLOG_NET, "lacks its own data of entry %llu from %llu: asks for it whole",
		     (unsigned long long)m->entries[i].index, (unsigned long long)m->from);
		transport_lacks(n->tp, m->from, m->entries[i].index);
		for (size_t j = i; j < m->n_entries; j++) {
			raft_data_release(m->entries[j].data, m->blob_data);
			m->entries[j].data = NULL;
			m->entries[j].len = 0;
		}
		m->n_entries = i;
		break;
	}
	free(el);
}

void node_elide_report(node *n)
{
	uint64_t ents, bytes;

	transport_elided(n->tp, &ents, &bytes);
	if (ents || n->elide_filled || n->elide_lacked)
		rlog_write(RLOG_INFO,
			   "elision: sent %llu entries without the data their proposer has (%.1f "
			   "MiB left out); filled %llu from own proposals; lacked %llu (sent again "
			   "whole)",
			   (unsigned long long)ents, bytes / 1048576.0,
			   (unsigned long long)n->elide_filled, (unsigned long long)n->elide_lacked);
}
