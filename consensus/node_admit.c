/* node_admit.c — a leader's admission of big proposals (node_admit.h). */
#include "node_admit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One held proposal. */
struct held {
	struct held *next;
	uint64_t seq, min_pending;
	size_t len;
	uint8_t data[];
};

/* One client's held proposals, in seq order. Queues with something held
 * form a ring; the one whose turn it is comes first. */
struct queue {
	struct queue *next, *prev;
	uint64_t client;
	uint64_t bytes; /* held in it */
	struct held *head;
};

/* A client one of whose offers was dropped (held bytes at their cap, no
 * memory): its later offers are dropped too until it offers that seq (or
 * a lower one) again, or they would reach the log ahead of the dropped
 * one, be skipped as early and send the client back to it anyway. */
struct blocked {
	struct blocked *next;
	uint64_t client, seq;
};

/* A big entry in the log, not yet done (node_admit_release). While vouch
 * holds, nothing of client's with a lower seq went into the log after it,
 * so it applies unless a seq in [min_pending, seq) never executes (one
 * that failed at its sender's deadline): a resend of that seq whose
 * min_pending is not higher would wait for the same seqs and more, so it
 * is dropped (the copy in the log answers it, or neither would apply). */
struct placed {
	uint64_t index, len;
	uint64_t client, seq, min_pending;
	bool vouch;
};

struct node_admit {
	node_admit_limits lim;
	uint64_t term;
	struct queue *turn; /* the ring of non-empty queues, at the one to serve next */
	struct blocked *blocked;
	/* Big entries admitted and not yet done, in index order: a ring
	 * buffer (their number is about bound / big, more only while the
	 * bound is off). */
	struct placed *pl;
	size_t pl_head, pl_n, pl_cap;
	node_admit_stats st;
};

int node_admit_new(const node_admit_limits *lim, node_admit **out)
{
	node_admit *a = calloc(1, sizeof(*a));

	*out = NULL;
	if (!a)
		return -ENOMEM;
	a->lim = *lim;
	*out = a;
	return 0;
}

static void queue_free(struct queue *q)
{
	for (struct held *h = q->head, *next; h; h = next) {
		next = h->next;
		free(h);
	}
	free(q);
}

/* Drops every queue; returns the number of proposals they held. */
static uint64_t forget_held(node_admit *a)
{
	uint64_t n = a->st.held;

	while (a->turn) {
		struct queue *q = a->turn;

		if (q->next == q) {
			a->turn = NULL;
		} else {
			q->prev->next = q->next;
			q->next->prev = q->prev;
			a->turn = q->next;
		}
		queue_free(q);
	}
	a->st.held = a->st.held_bytes = 0;
	return n;
}

/* Forgets every client's dropped seq (a new term: its senders propose
 * again from their lowest pending one). */
static void forget_blocked(node_admit *a)
{
	while (a->blocked) {
		struct blocked *b = a->blocked;

		a->blocked = b->next;
		free(b);
	}
}

void node_admit_free(node_admit *a)
{
	if (!a)
		return;
	forget_held(a);
	forget_blocked(a);
	free(a->pl);
	free(a);
}

bool node_admit_on(const node_admit *a)
{
	return a->lim.bound > 0;
}

uint64_t node_admit_term(const node_admit *a)
{
	return a->term;
}

void node_admit_reset(node_admit *a, uint64_t term)
{
	a->st.n_forgotten += forget_held(a);
	forget_blocked(a);
	a->pl_head = a->pl_n = 0;
	a->st.outstanding = 0;
	a->term = term;
}

bool node_admit_busy(const node_admit *a)
{
	return a->turn || a->pl_n;
}

void node_admit_get_stats(const node_admit *a, node_admit_stats *st)
{
	*st = a->st;
}

static bool is_big(const node_admit *a, size_t len)
{
	return len >= a->lim.big;
}

/* Whether a big entry may go in now: while the big bytes outstanding are
 * under the bound (they exceed it by less than one entry). Its own size
 * does not matter, so a big entry never waits longer than a smaller one
 * that came later. */
static bool room(const node_admit *a)
{
	return a->st.outstanding < a->lim.bound;
}

static struct queue *queue_find(const node_admit *a, uint64_t client)
{
	struct queue *q = a->turn;

	if (q)
		do {
			if (q->client == client)
				return q;
			q = q->next;
		} while (q != a->turn);
	return NULL;
}

/* A new queue for client, last in the turn order (it waits for a full
 * round: those already waiting came first). */
static struct queue *queue_add(node_admit *a, uint64_t client)
{
	struct queue *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->client = client;
	if (!a->turn) {
		q->next = q->prev = q;
		a->turn = q;
	} else {
		q->next = a->turn;
		q->prev = a->turn->prev;
		q->prev->next = q;
		a->turn->prev = q;
	}
	return q;
}

/* Takes q, now empty, out of the ring (its turn moves to the next). */
static void queue_remove(node_admit *a, struct queue *q)
{
	if (q->next == q) {
		a->turn = NULL;
	} else {
		q->prev->next = q->next;
		q->next->prev = q->prev;
		if (a->turn == q)
			a->turn = q->next;
	}
	free(q);
}

/* The place of seq in q's seq order: the link to the held copy of seq,
 * if q holds one, else the link where it would go. */
static struct held **queue_place(struct queue *q, uint64_t seq)
{
	struct held **p = &q->head;

	while (*p && (*p)->seq < seq)
		p = &(*p)->next;
	return p;
}


/* Whether client's offer seq is to be dropped behind a dropped one of
 * its own; an offer at or below the dropped seq lifts the block (the
 * client went back to it). */
static bool behind_dropped(node_admit *a, uint64_t client, uint64_t seq)
{
	for (struct blocked **p = &a->blocked; *p; p = &(*p)->next) {
		struct blocked *b = *p;

		if (b->client != client)
			continue;
		if (seq > b->seq)
			return true;
		*p = b->next;
		free(b);
		return false;
	}
	return false;
}

/* Drops client's offer seq for want of room (held_max, memory) and every
 * later one of client's until it offers seq again (behind_dropped). */
static enum node_admit_verdict drop_full(node_admit *a, uint64_t client, uint64_t seq)
{
	struct blocked *b;

	a->st.n_full++;
	if (!client)
		return NODE_ADMIT_DROP; /* keeps no order */
	for (b = a->blocked; b && b->client != client; b = b->next)
		;
	if (b) {
		if (seq < b->seq)
			b->seq = seq;
		return NODE_ADMIT_DROP;
	}
	b = malloc(sizeof(*b));
	if (b) {
		/* Without it, a later offer may pass ahead of this one: it is
		 * then skipped as early, and the client goes back all the
		 * same, only later. */
		*b = (struct blocked){a->blocked, client, seq};
		a->blocked = b;
	}
	return NODE_ADMIT_DROP;
}

/* Whether len more bytes, held for a client whose queue holds q_bytes,
 * stay under the caps (held_max for all, held_client_max for one). */
static bool held_fits(const node_admit *a, uint64_t q_bytes, size_t len)
{
	return a->st.held_bytes + len <= a->lim.held_max &&
	       (!a->lim.held_client_max || q_bytes + len <= a->lim.held_client_max);
}

static struct held *held_new(uint64_t seq, uint64_t min_pending, const void *data, size_t len)
{
	struct held *h = malloc(sizeof(*h) + len);

	if (!h)
		return NULL;
	h->seq = seq;
	h->min_pending = min_pending;
	h->len = len;
	h->next = NULL;
	memcpy(h->data, data, len);
	return h;
}

/* A resend of the held *at: dropped, but when its min_pending is higher
 * (a predecessor failed at its deadline, or applied) it replaces the held
 * copy, which would wait at apply for that predecessor and be skipped as
 * early (dedup_check_ordered). Recognised before the caps are checked: it
 * takes no more room (the same seq, the same bytes), and refused as over
 * a cap it would block its client's later offers behind a seq that is
 * held (drop_full). */
static enum node_admit_verdict held_resend(node_admit *a, struct queue *q, struct held **at,
					   uint64_t min_pending, const void *data, size_t len)
{
	struct held *old = *at, *h;

	a->st.n_dup++;
	if (min_pending <= old->min_pending)
		return NODE_ADMIT_DROP;
	if (len > old->len && !held_fits(a, q->bytes, len - old->len))
		return NODE_ADMIT_DROP; /* not the same bytes: the held copy stays */
	h = held_new(old->seq, min_pending, data, len);
	if (!h)
		return NODE_ADMIT_DROP;
	h->next = old->next;
	*at = h;
	q->bytes = q->bytes - old->len + len;
	a->st.held_bytes = a->st.held_bytes - old->len + len;
	free(old);
	return NODE_ADMIT_DROP;
}

static enum node_admit_verdict hold(node_admit *a, struct queue *q, uint64_t client, uint64_t seq,
				    uint64_t min_pending, const void *data, size_t len)
{
	struct held *h, **at = q ? queue_place(q, seq) : NULL;

	if (at && *at && (*at)->seq == seq)
		return held_resend(a, q, at, min_pending, data, len);
	if (!held_fits(a, q ? q->bytes : 0, len))
		return drop_full(a, client, seq);
	h = held_new(seq, min_pending, data, len);
	if (!h)
		return drop_full(a, client, seq);
	if (!q) {
		if (!(q = queue_add(a, client))) {
			free(h);
			return drop_full(a, client, seq);
		}
		at = &q->head;
	}
	h->next = *at;
	*at = h;
	q->bytes += len;
	a->st.held++;
	a->st.n_held++;
	a->st.held_bytes += len;
	if (a->st.held_bytes > a->st.held_bytes_max)
		a->st.held_bytes_max = a->st.held_bytes;
	return NODE_ADMIT_HELD;
}

/* Whether client's seq, proposed with min_pending, is a big entry in the
 * log, not yet done, that applies wherever this resend would: a timer
 * retry or a go-back resend of one already admitted (the sender has not
 * seen it commit yet), which would only go into the log again and be
 * skipped at apply as a duplicate — log space, disk and network for
 * nothing. A resend with a higher min_pending than the copy's waits for
 * fewer predecessors (one failed at its deadline meanwhile): it may apply
 * where the copy is skipped as early, so it goes in. */
static bool in_log(const node_admit *a, uint64_t client, uint64_t seq, uint64_t min_pending)
{
	for (size_t i = 0; i < a->pl_n; i++) {
		const struct placed *p = &a->pl[(a->pl_head + i) % a->pl_cap];

		if (p->vouch && p->client == client && p->seq == seq &&
		    min_pending <= p->min_pending)
			return true;
	}
	return false;
}

/* Client's seq goes into the log now: its big entries of higher seqs,
 * placed before it, may no longer apply (a lower seq they wait for came
 * after them: a lost one resent, dedup.h DEDUP_EARLY), so their resends
 * must go in again. */
static void unvouch_later(node_admit *a, uint64_t client, uint64_t seq)
{
	for (size_t i = 0; i < a->pl_n; i++) {
		struct placed *p = &a->pl[(a->pl_head + i) % a->pl_cap];

		if (p->client == client && p->seq > seq)
			p->vouch = false;
	}
}

enum node_admit_verdict node_admit_offer(node_admit *a, uint64_t client, uint64_t seq,
					 uint64_t min_pending, const void *data, size_t len)
{
	struct queue *q;

	if (!node_admit_on(a))
		return NODE_ADMIT_PASS;
	if (client && a->blocked && behind_dropped(a, client, seq)) {
		a->st.n_behind++;
		return NODE_ADMIT_DROP;
	}
	/* Client 0 keeps no order: its small ones always pass. */
	q = client ? queue_find(a, client) : NULL;
	/* A copy in the log applies only if no lower seq of its client
	 * goes in after it: none is held (it would go in after). */
	if (client && a->pl_n && (!q || q->head->seq > seq) &&
	    in_log(a, client, seq, min_pending)) {
		a->st.n_resent++;
		return NODE_ADMIT_DROP;
	}
	if (q)
		return hold(a, q, client, seq, min_pending, data, len); /* behind its own */
	if (!is_big(a, len))
		return NODE_ADMIT_PASS;
	/* A big one waits for its turn when others already wait (they
	 * came first), and for room under the bound. */
	if (!a->turn && room(a))
		return NODE_ADMIT_PASS;
	return hold(a, client ? NULL : queue_find(a, 0), client, seq, min_pending, data, len);
}

void node_admit_placed(node_admit *a, uint64_t client, uint64_t seq, uint64_t min_pending,
		       uint64_t index, size_t len)
{
	if (!node_admit_on(a))
		return;
	if (client && a->pl_n)
		unvouch_later(a, client, seq);
	if (!is_big(a, len))
		return;
	if (a->pl_n == a->pl_cap) {
		size_t cap = a->pl_cap ? 2 * a->pl_cap : 16;
		struct placed *pl = malloc(cap * sizeof(*pl));

		if (!pl)
			return; /* uncounted: only the bound is looser */
		for (size_t i = 0; i < a->pl_n; i++)
			pl[i] = a->pl[(a->pl_head + i) % a->pl_cap];
		free(a->pl);
		a->pl = pl;
		a->pl_cap = cap;
		a->pl_head = 0;
	}
	a->pl[(a->pl_head + a->pl_n) % a->pl_cap] =
	    (struct placed){index, len, client, seq, min_pending, client != 0};
	a->pl_n++;
	a->st.outstanding += len;
	if (a->st.outstanding > a->st.outstanding_max)
		a->st.outstanding_max = a->st.outstanding;
}

/* Big entries up to done no longer count. */
static void retire_done(node_admit *a, uint64_t done)
{
	while (a->pl_n && a->pl[a->pl_head].index <= done) {
		a->st.outstanding -= a->pl[a->pl_head].len;
		a->pl_head = (a->pl_head + 1) % a->pl_cap;
		a->pl_n--;
	}
}

/* Hands out q's first proposal; false if the core did not take it. */
static bool release_one(node_admit *a, struct queue *q, node_admit_propose_fn propose, void *arg)
{
	struct held *h = q->head;
	uint64_t index = propose(arg, q->client, h->seq, h->data, h->len);

	if (!index)
		return false;
	node_admit_placed(a, q->client, h->seq, h->min_pending, index, h->len);
	q->head = h->next;
	q->bytes -= h->len;
	a->st.held--;
	a->st.held_bytes -= h->len;
	a->st.n_released++;
	free(h);
	return true;
}

void node_admit_release(node_admit *a, uint64_t done, node_admit_propose_fn propose, void *arg)
{
	retire_done(a, done);
	/* One turn: the queue's first big proposal, while under the bound,
	 * and the small ones right behind it (they would pass at once, were
	 * it not for their place in the client's order). */
	while (a->turn) {
		struct queue *q = a->turn;
		bool big_done = false;

		while (q->head && (!is_big(a, q->head->len) || (!big_done && room(a)))) {
			big_done |= is_big(a, q->head->len);
			if (!release_one(a, q, propose, arg))
				return;
		}
		if (!q->head)
			queue_remove(a, q);
		else if (big_done)
			a->turn = q->next;
		else
			return; /* no room for its turn */
	}
}
