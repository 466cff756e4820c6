/* test_pending.c — the pending list's first proposal not handed out
 * committed (consensus/node_pending.c), which node_unanswered_ms reads on
 * every close-behind close: after appends, commits out of order, retries
 * (a leader change tries every pending one again: none committed), drops
 * in the middle (a deadline) and applies at the head, it is what a walk of
 * the list finds. The corner cases by hand, then random runs against that
 * walk. No sockets, no threads: a zeroed node, only its list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "node_internal.h"

#define MAXP 64

struct list {
	node *n;
	proposal *p[MAXP + 1]; /* by seq; NULL once unlinked */
	uint64_t seq;	       /* the last appended */
};

static struct list *list_new(void)
{
	struct list *l = calloc(1, sizeof(*l));

	assert_non_null(l);
	l->n = calloc(1, sizeof(*l->n));
	assert_non_null(l->n);
	return l;
}

static void list_free(struct list *l)
{
	for (size_t i = 0; i <= MAXP; i++)
		free(l->p[i]);
	free(l->n);
	free(l);
}

static uint64_t append(struct list *l)
{
	proposal *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	assert_true(l->seq < MAXP);
	p->seq = ++l->seq;
	l->p[p->seq] = p;
	node_pending_append(l->n, p);
	return p->seq;
}

static void unlink_seq(struct list *l, uint64_t seq)
{
	node_pending_unlink(l->n, l->p[seq]);
	free(l->p[seq]);
	l->p[seq] = NULL;
}

/* What the old walk found: the first in list order not committed. */
static const proposal *walk(const node *n)
{
	for (const proposal *p = n->pend_head; p; p = p->next)
		if (!p->committed)
			return p;
	return NULL;
}

static uint64_t unanswered(const struct list *l)
{
	const proposal *p = node_pending_unanswered(l->n);

	assert_ptr_equal(p, walk(l->n));
	return p ? p->seq : 0;
}

static void test_corners(void **state)
{
	struct list *l = list_new();

	(void)state;
	assert_int_equal(unanswered(l), 0);
	for (int i = 0; i < 5; i++)
		append(l);
	assert_int_equal(unanswered(l), 1);
	/* Committed out of order: 2 and 3 first, then 1 — the head moves
	 * past all three at once. */
	node_pending_committed(l->n, l->p[2]);
	node_pending_committed(l->n, l->p[3]);
	assert_int_equal(unanswered(l), 1);
	node_pending_committed(l->n, l->p[1]);
	assert_int_equal(unanswered(l), 4);
	/* A leader change: 2 tried again (a go-back resend from it): its
	 * fate is unknown again, and it is the first unanswered. */
	node_pending_retried(l->n, l->p[2]);
	assert_int_equal(unanswered(l), 2);
	/* Retried while later than the first: no move. */
	node_pending_retried(l->n, l->p[5]);
	assert_int_equal(unanswered(l), 2);
	/* Dropped at its deadline while the first: the next not committed
	 * after it (3 is committed). */
	unlink_seq(l, 2);
	assert_int_equal(unanswered(l), 4);
	/* Applied at the head (1, 3): no move. */
	unlink_seq(l, 1);
	unlink_seq(l, 3);
	assert_int_equal(unanswered(l), 4);
	/* All committed: none; a new one then is the first. */
	node_pending_committed(l->n, l->p[4]);
	node_pending_committed(l->n, l->p[5]);
	assert_int_equal(unanswered(l), 0);
	append(l);
	assert_int_equal(unanswered(l), 6);
	/* The last one dropped while the first: none. */
	node_pending_committed(l->n, l->p[6]);
	node_pending_retried(l->n, l->p[6]);
	unlink_seq(l, 6);
	assert_int_equal(unanswered(l), 0);
	unlink_seq(l, 4);
	unlink_seq(l, 5);
	assert_null(l->n->pend_head);
	assert_null(l->n->pend_tail);
	assert_int_equal(unanswered(l), 0);
	list_free(l);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* A random pending proposal's seq, or 0 if none. */
static uint64_t any(const struct list *l, uint64_t *s)
{
	uint64_t k = rnd(s) % (l->seq + 1);

	for (uint64_t i = 0; i < l->seq; i++) {
		uint64_t q = (k + i) % l->seq + 1;

		if (l->p[q])
			return q;
	}
	return 0;
}

static void test_random(void **state)
{
	(void)state;
	for (uint64_t seed = 1; seed <= 2000; seed++) {
		struct list *l = list_new();
		uint64_t s = seed * 0x9e3779b97f4a7c15ull, q;

		for (int step = 0; step < 200; step++) {
			switch (rnd(&s) % 6) {
			case 0:
				if (l->seq < MAXP)
					append(l);
				break;
			case 1: /* commits come in log order, mostly */
			case 2:
				if ((q = any(l, &s)))
					node_pending_committed(l->n, l->p[q]);
				break;
			case 3: /* a go-back resend from q: q and all after it */
				if ((q = any(l, &s)))
					for (proposal *p = l->p[q]; p; p = p->next)
						node_pending_retried(l->n, p);
				break;
			case 4: /* applied at the head */
				if (l->n->pend_head)
					unlink_seq(l, l->n->pend_head->seq);
				break;
			case 5: /* failed anywhere (its deadline) */
				if ((q = any(l, &s)))
					unlink_seq(l, q);
				break;
			}
			unanswered(l);
		}
		list_free(l);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_corners),
	    cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
