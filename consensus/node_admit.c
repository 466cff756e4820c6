/* node_admit.c — a leader's admission of big proposals (node_admit.h). */
#include "node_admit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* One held proposal. */
struct held {
	struct held *next;
	uint64_t seq;
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

/* A big entry in the log, not yet done (node_admit_release). */
struct placed {
	uint64_t index, len;
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

bool node_admit_holding(const node_admit *a)
{
	return a->turn != NULL;
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

/* Puts h into q in seq order; false if q holds that seq already. */
static bool queue_insert(struct queue *q, struct held *h)
{
	struct held **p = &q->head;

	while (*p && (*p)->seq < h->seq)
		p = &(*p)->next;
	if (*p && (*p)->seq == h->seq)
		return false;
	h->next = *p;
	*p = h;
	return true;
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

static enum node_admit_verdict hold(node_admit *a, struct queue *q, uint64_t client, uint64_t seq,
				    const void *data, size_t len)
{
	struct held *h;

	if (a->st.held_bytes + len > a->lim.held_max ||
	    (a->lim.held_client_max && (q ? q->bytes : 0) + len > a->lim.held_client_max))
		return drop_full(a, client, seq);
	h = malloc(sizeof(*h) + len);
	if (!h)
		return drop_full(a, client, seq);
	h->seq = seq;
	h->len = len;
	h->next = NULL;
	memcpy(h->data, data, len);
	if (!q && !(q = queue_add(a, client))) {
		free(h);
		return drop_full(a, client, seq);
	}
	if (!queue_insert(q, h)) {
		free(h);
		a->st.n_dup++;
		return NODE_ADMIT_DROP;
	}
	q->bytes += len;
	a->st.held++;
	a->st.n_held++;
	a->st.held_bytes += len;
	if (a->st.held_bytes > a->st.held_bytes_max)
		a->st.held_bytes_max = a->st.held_bytes;
	return NODE_ADMIT_HELD;
}

enum node_admit_verdict node_admit_offer(node_admit *a, uint64_t client, uint64_t seq,
					 const void *data, size_t len)
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
	if (q)
		return hold(a, q, client, seq, data, len); /* behind its own */
	if (!is_big(a, len))
		return NODE_ADMIT_PASS;
	/* A big one waits for its turn when others already wait (they
	 * came first), and for room under the bound. */
	if (!a->turn && room(a))
		return NODE_ADMIT_PASS;
	return hold(a, client ? NULL : queue_find(a, 0), client, seq, data, len);
}

void node_admit_placed(node_admit *a, uint64_t index, size_t len)
{
	if (!node_admit_on(a) || !is_big(a, len))
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
	a->pl[(a->pl_head + a->pl_n) % a->pl_cap] = (struct placed){index, len};
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
	node_admit_placed(a, index, h->len);
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
