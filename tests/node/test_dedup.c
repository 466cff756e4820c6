/* test_dedup.c — the duplicate table: exactly-once verdicts with many
 * proposals in flight per client, forgetting below min_pending, the order
 * rule (dedup_check_ordered) against a lossy, reordering network, a
 * serialization that round-trips and never trusts its input, and the
 * expiry of idle clients (bounded, deterministic across restarts, late
 * retries refused). */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dedup.h"

static void test_new_then_duplicate(void **state)
{
	dedup *d = dedup_new();
	int64_t r = 0;

	assert_int_equal(dedup_check(d, 7, 1, &r), DEDUP_NEW);
	assert_int_equal(dedup_record(d, 7, 1, 1, -17), 0);
	assert_int_equal(dedup_check(d, 7, 1, &r), DEDUP_DUPLICATE);
	assert_int_equal(r, -17);
	/* Another client with the same seq is a different command. */
	assert_int_equal(dedup_check(d, 8, 1, &r), DEDUP_NEW);
	/* Client 0 is never deduplicated. */
	assert_int_equal(dedup_record(d, 0, 1, 1, 5), 0);
	assert_int_equal(dedup_check(d, 0, 1, &r), DEDUP_NEW);
	assert_int_equal(dedup_clients(d), 1);
	dedup_free(d);
}

static void test_out_of_order_in_flight(void **state)
{
	dedup *d = dedup_new();
	int64_t r;

	/* Seqs 1..4 in flight; 3 lands first, then 1 (min_pending 1 all along). */
	assert_int_equal(dedup_record(d, 5, 3, 1, 30), 0);
	assert_int_equal(dedup_check(d, 5, 1, &r), DEDUP_NEW);
	assert_int_equal(dedup_record(d, 5, 1, 1, 10), 0);
	assert_int_equal(dedup_check(d, 5, 2, &r), DEDUP_NEW);
	assert_int_equal(dedup_check(d, 5, 3, &r), DEDUP_DUPLICATE);
	assert_int_equal(r, 30);
	/* Seq 5 proposed once 1 completed: min_pending 2 forgets seq 1. */
	assert_int_equal(dedup_record(d, 5, 5, 2, 50), 0);
	assert_int_equal(dedup_check(d, 5, 1, &r), DEDUP_STALE);
	assert_int_equal(dedup_check(d, 5, 2, &r), DEDUP_NEW);
	assert_int_equal(dedup_check(d, 5, 3, &r), DEDUP_DUPLICATE);
	assert_int_equal(dedup_check(d, 5, 5, &r), DEDUP_DUPLICATE);
	assert_int_equal(r, 50);
	dedup_free(d);
}

/* The order rule, case by case: P1 lost on its way, P2 lands first. */
static void test_ordered_rule(void **state)
{
	dedup *d = dedup_new();
	int64_t r;

	/* Nothing of client 9 known: seq 1 may run, seq 2 (min 1) may not. */
	assert_int_equal(dedup_check_ordered(d, 9, 1, 1, &r), DEDUP_NEW);
	assert_int_equal(dedup_check_ordered(d, 9, 2, 1, &r), DEDUP_EARLY);
	/* Client 0 is never ordered. */
	assert_int_equal(dedup_check_ordered(d, 0, 2, 1, &r), DEDUP_NEW);
	/* P1 retried and applied: P2 now may run; P3 (min 1) waits for P2. */
	assert_int_equal(dedup_record(d, 9, 1, 1, 10), 0);
	assert_int_equal(dedup_check_ordered(d, 9, 3, 1, &r), DEDUP_EARLY);
	assert_int_equal(dedup_check_ordered(d, 9, 2, 1, &r), DEDUP_NEW);
	assert_int_equal(dedup_record(d, 9, 2, 1, 20), 0);
	assert_int_equal(dedup_check_ordered(d, 9, 3, 1, &r), DEDUP_NEW);
	/* An applied seq stays a duplicate whatever is missing below it. */
	assert_int_equal(dedup_check_ordered(d, 9, 2, 1, &r), DEDUP_DUPLICATE);
	assert_int_equal(r, 20);
	/* P3 failed (timed out) and was dropped by its client: P4 is sent
	 * with min_pending 4 and runs without it... */
	assert_int_equal(dedup_check_ordered(d, 9, 4, 3, &r), DEDUP_EARLY);
	assert_int_equal(dedup_check_ordered(d, 9, 4, 4, &r), DEDUP_NEW);
	assert_int_equal(dedup_record(d, 9, 4, 4, 40), 0);
	/* ...after which a late copy of P3 is stale: it can no longer run
	 * after a later seq. */
	assert_int_equal(dedup_check_ordered(d, 9, 3, 1, &r), DEDUP_STALE);
	/* A gap above what was forgotten still counts. */
	assert_int_equal(dedup_check_ordered(d, 9, 6, 4, &r), DEDUP_EARLY);
	assert_int_equal(dedup_check_ordered(d, 9, 5, 4, &r), DEDUP_NEW);
	dedup_free(d);
}

/* ---- a randomized model: one client as node.c runs it, a network that
 * loses, duplicates and reorders every copy, one applier ---- */

#define MODEL_SEQS 150
#define MODEL_POOL 4096

struct copy {
	uint64_t seq, min;
};

struct model {
	uint64_t x; /* xorshift state */
	/* client */
	uint64_t next_seq; /* seqs 1..next_seq-1 started */
	bool pending[MODEL_SEQS + 2], failed[MODEL_SEQS + 2];
	uint64_t gbn; /* a resend from this seq is under way */
	/* network */
	struct copy pool[MODEL_POOL];
	size_t n_pool;
	/* applier */
	dedup *d;
	uint64_t last_executed;
	int executed[MODEL_SEQS + 2];
	unsigned early;
};

static uint64_t rnd(struct model *m)
{
	m->x ^= m->x << 13, m->x ^= m->x >> 7, m->x ^= m->x << 17;
	return m->x;
}

static uint64_t head(const struct model *m)
{
	for (uint64_t s = 1; s < m->next_seq; s++)
		if (m->pending[s])
			return s;
	return m->next_seq;
}

/* The client sends a copy of seq; the network may lose it. */
static void send_copy(struct model *m, uint64_t seq, unsigned loss_pct)
{
	if (rnd(m) % 100 < loss_pct || m->n_pool == MODEL_POOL)
		return;
	m->pool[m->n_pool++] = (struct copy){seq, head(m)};
}

static void resend_all(struct model *m, unsigned loss_pct)
{
	uint64_t h = head(m);

	m->gbn = h;
	for (uint64_t s = h; s < m->next_seq; s++)
		if (m->pending[s])
			send_copy(m, s, loss_pct);
}

/* The applier takes the oldest copy, or (reordering) any. */
static void deliver(struct model *m, bool reorder, unsigned loss_pct)
{
	size_t i = reorder && rnd(m) % 3 == 0 ? rnd(m) % m->n_pool : 0;
	struct copy c = m->pool[i];
	int64_t r;

	memmove(&m->pool[i], &m->pool[i + 1], (m->n_pool - i - 1) * sizeof(c));
	m->n_pool--;
	switch (dedup_check_ordered(m->d, 5, c.seq, c.min, &r)) {
	case DEDUP_NEW:
		/* Safety: a client's commands execute in increasing seq order,
		 * each once. */
		assert_true(c.seq > m->last_executed);
		assert_int_equal(m->executed[c.seq], 0);
		m->executed[c.seq]++;
		m->last_executed = c.seq;
		assert_int_equal(dedup_record(m->d, 5, c.seq, c.min, (int64_t)c.seq), 0);
		m->pending[c.seq] = false; /* completion */
		break;
	case DEDUP_DUPLICATE:
		assert_int_equal(r, (int64_t)c.seq);
		m->pending[c.seq] = false;
		break;
	case DEDUP_STALE:
		break;
	case DEDUP_EARLY:
		m->early++;
		/* node.c on_refused: go back, unless a resend's first is
		 * still pending. */
		if (m->pending[c.seq] && !(m->gbn && m->pending[m->gbn]))
			resend_all(m, loss_pct);
		break;
	}
}

static void run_model(uint64_t seed, unsigned loss_pct, bool reorder, unsigned fail_pct)
{
	struct model *m = calloc(1, sizeof(*m));

	m->x = seed;
	m->d = dedup_new();
	m->next_seq = 1;
	for (int step = 0; step < 5000; step++) {
		uint64_t op = rnd(m) % 100;

		if (op < 30 && m->next_seq <= MODEL_SEQS) {
			uint64_t s = m->next_seq++;

			m->pending[s] = true;
			send_copy(m, s, loss_pct);
		} else if (op < 32) {
			resend_all(m, loss_pct); /* the retry timer */
		} else if (op < 32 + fail_pct) {
			/* A pending proposal times out: the client gives up. */
			uint64_t s = 1 + rnd(m) % (m->next_seq - 1 ? m->next_seq - 1 : 1);

			if (m->pending[s]) {
				m->pending[s] = false;
				m->failed[s] = true;
			}
		} else if (m->n_pool) {
			deliver(m, reorder, loss_pct);
		}
	}
	/* The network heals: the retry timer brings every pending one in. */
	for (int round = 0; round < 50 && head(m) < m->next_seq; round++) {
		resend_all(m, 0);
		while (m->n_pool)
			deliver(m, false, 0);
	}
	for (uint64_t s = 1; s < m->next_seq; s++) {
		assert_false(m->pending[s]);
		/* Everything not given up on was executed, once. */
		if (!m->failed[s])
			assert_int_equal(m->executed[s], 1);
	}
	/* The schedule did exercise the rule. */
	if (loss_pct || reorder)
		assert_true(m->early > 0);
	dedup_free(m->d);
	free(m);
}

static void test_ordered_lossy_network(void **state)
{
	for (uint64_t seed = 1; seed <= 15; seed++) {
		run_model(seed * 0x9e3779b97f4a7c15ull, 10, false, 0);
		run_model(seed * 0x2545F4914F6CDD1Dull, 25, true, 0);
		run_model(seed * 0x5851f42d4c957f2dull, 10, true, 3);
	}
}

static dedup *sample(void)
{
	dedup *d = dedup_new();

	for (uint64_t c = 1; c <= 20; c++)
		for (uint64_t s = 1; s <= c % 7 + 1; s++)
			assert_int_equal(dedup_record(d, c * 0x9e3779b97f4a7c15ull, s,
						      s > 2 ? s - 2 : 1,
						      (int64_t)(c * 100 + s) * (s % 2 ? -1 : 1)),
					 0);
	return d;
}

static void test_serialize_roundtrip(void **state)
{
	dedup *d = sample(), *e;
	uint8_t *a, *b;
	size_t al, bl;
	int64_t r1, r2;

	assert_int_equal(dedup_serialize(d, &a, &al), 0);
	assert_int_equal(dedup_deserialize(a, al, &e), 0);
	assert_int_equal(dedup_serialize(e, &b, &bl), 0);
	assert_int_equal(al, bl);
	assert_memory_equal(a, b, al);
	for (uint64_t c = 1; c <= 20; c++)
		for (uint64_t s = 0; s <= 9; s++) {
			uint64_t id = c * 0x9e3779b97f4a7c15ull;
			int v1 = dedup_check(d, id, s, &r1), v2 = dedup_check(e, id, s, &r2);

			assert_int_equal(v1, v2);
			if (v1 == DEDUP_DUPLICATE)
				assert_int_equal(r1, r2);
		}
	free(a);
	free(b);
	dedup_free(d);
	dedup_free(e);
}

static void test_deserialize_untrusted(void **state)
{
	dedup *d = sample(), *e;
	uint64_t x = 0x2545F4914F6CDD1Dull;
	int ok = 0, refused = 0;
	uint8_t *a, *m;
	size_t al;

	assert_int_equal(dedup_serialize(d, &a, &al), 0);
	m = malloc(al);
	for (int i = 0; i < 3000; i++) {
		size_t len = al;

		memcpy(m, a, al);
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (i % 3 == 0)
			len = x % al; /* truncated */
		else
			m[x % al] ^= (uint8_t)(1u << (x >> 32) % 8); /* a flipped bit */
		if (dedup_deserialize(m, len, &e) == 0) {
			ok++;
			dedup_free(e);
		} else {
			refused++;
		}
	}
	/* Truncations are always refused; some flips (in results) decode. */
	assert_true(refused >= 1000);
	assert_true(ok > 0);
	assert_int_equal(dedup_deserialize((const uint8_t *)"", 0, &e), -EINVAL);
	free(m);
	free(a);
	dedup_free(d);
}

/* Expiry (thesis §6.3): one client per node-process run, forever, unless
 * idle clients go. 1,000 clients, one command each at its own index, with
 * an expiry of 80 entries: the table keeps only the recent ones. */
static void test_expiry_bounds_the_table(void **state)
{
	dedup *d = dedup_new(), *keep = dedup_new();
	size_t most = 0;

	dedup_set_expiry(d, 80);
	dedup_set_expiry(keep, 0); /* never: the table before expiry */
	for (uint64_t i = 1; i <= 1000; i++) {
		assert_int_equal(dedup_record_at(d, i, 1000 + i, 1, 1, 0), 0);
		assert_int_equal(dedup_record_at(keep, i, 1000 + i, 1, 1, 0), 0);
		if (dedup_clients(d) > most)
			most = dedup_clients(d);
	}
	/* Idle for over 2 x 80 entries, checked every 80/8: at most 2 x 80 +
	 * 10 clients, and never fewer than the last 2 x 80. */
	assert_true(most <= 2 * 80 + 10);
	assert_true(dedup_clients(d) >= 2 * 80);
	assert_int_equal(dedup_clients(keep), 1000);
	/* The client of the last index is there with its result. */
	int64_t r;
	assert_int_equal(dedup_check(d, 2000, 1, &r), DEDUP_DUPLICATE);
	dedup_free(d);
	dedup_free(keep);
}

/* A client whose results expired gets STALE for every seq it used — a
 * late retry is refused, never executed twice — and may go on with new
 * seqs; idle twice as long it is gone. */
static void test_expired_client_refused_then_new(void **state)
{
	dedup *d = dedup_new();
	uint64_t idx = 0;
	int64_t r;

	dedup_set_expiry(d, 50);
	for (uint64_t s = 1; s <= 3; s++)
		assert_int_equal(dedup_record_at(d, ++idx, 7, s, 1, (int64_t)s * 10), 0);
	/* Seqs 1..3 in flight still (min_pending 1): duplicates answered. */
	assert_int_equal(dedup_check(d, 7, 2, &r), DEDUP_DUPLICATE);
	assert_int_equal(r, 20);
	/* Others work for 60 entries: client 7 is idle past its expiry. */
	while (idx < 3 + 60) {
		idx++;
		assert_int_equal(dedup_record_at(d, idx, 8, idx, idx, 0), 0);
	}
	for (uint64_t s = 1; s <= 3; s++) {
		assert_int_equal(dedup_check(d, 7, s, &r), DEDUP_STALE);
		assert_int_equal(dedup_check_ordered(d, 7, s, 1, &r), DEDUP_STALE);
	}
	assert_int_equal(dedup_clients(d), 2);
	/* A new seq of the same client: executes, and the client lives on. */
	assert_int_equal(dedup_check_ordered(d, 7, 4, 4, &r), DEDUP_NEW);
	assert_int_equal(dedup_record_at(d, ++idx, 7, 4, 4, 40), 0);
	assert_int_equal(dedup_check(d, 7, 4, &r), DEDUP_DUPLICATE);
	assert_int_equal(r, 40);
	assert_int_equal(dedup_check(d, 7, 3, &r), DEDUP_STALE);
	/* Idle for over 2 x 50 entries: dropped. */
	uint64_t until = idx + 2 * 50 + 10;
	while (idx < until) {
		idx++;
		assert_int_equal(dedup_record_at(d, idx, 8, idx, idx, 0), 0);
	}
	assert_int_equal(dedup_clients(d), 1);
	dedup_free(d);
}

/* Every replica decides alike: a table serialized and read back (a
 * restart, a snapshot) at any point expires the same clients at the same
 * index as one that ran through, byte for byte. */
static void test_expiry_deterministic_across_restarts(void **state)
{
	dedup *a = dedup_new(), *b = dedup_new();
	uint64_t x = 0x9E3779B97F4A7C15ull;

	dedup_set_expiry(a, 64);
	dedup_set_expiry(b, 64);
	for (uint64_t i = 1; i <= 3000; i++) {
		/* Clients come and go: 40 ids, each busy for 50 entries in
		 * turn, with another one now and then. */
		uint64_t client = x % 5 ? 1 + (i / 50) % 40 : 1 + (x >> 33) % 40, seq = i;
		int64_t r;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (dedup_check(a, client, seq, &r) == DEDUP_NEW) {
			assert_int_equal(dedup_record_at(a, i, client, seq, seq, (int64_t)i), 0);
			assert_int_equal(dedup_record_at(b, i, client, seq, seq, (int64_t)i), 0);
		}
		if (i % 97 == 0) {
			/* b restarts from its serialization. */
			uint8_t *buf;
			size_t len;
			dedup *c;

			assert_int_equal(dedup_serialize(b, &buf, &len), 0);
			assert_int_equal(dedup_deserialize(buf, len, &c), 0);
			free(buf);
			dedup_free(b);
			b = c;
			dedup_set_expiry(b, 64);
		}
	}
	uint8_t *ba, *bb;
	size_t la, lb;
	assert_int_equal(dedup_serialize(a, &ba, &la), 0);
	assert_int_equal(dedup_serialize(b, &bb, &lb), 0);
	assert_int_equal(la, lb);
	assert_memory_equal(ba, bb, la);
	assert_true(dedup_clients(a) < 40);
	free(ba);
	free(bb);
	dedup_free(a);
	dedup_free(b);
}

/* A table written before expiry (DDP1: no clock) still loads: its clients
 * are kept with their results, last seen at index 0 on every replica. */
static void test_reads_tables_from_before_expiry(void **state)
{
	uint8_t v1[16 + 24 + 16];
	uint8_t *p = v1;
	uint64_t words[] = {0x44445031u, 1, 9, 3, 1, 4, (uint64_t)7};
	dedup *d;
	int64_t r;

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		for (int b = 0; b < 8; b++)
			*p++ = (uint8_t)(words[i] >> (8 * b));
	assert_int_equal(dedup_deserialize(v1, sizeof(v1), &d), 0);
	assert_int_equal(dedup_check(d, 9, 4, &r), DEDUP_DUPLICATE);
	assert_int_equal(r, 7);
	assert_int_equal(dedup_check(d, 9, 2, &r), DEDUP_STALE);
	dedup_set_expiry(d, 10);
	assert_int_equal(dedup_record_at(d, 15, 5, 1, 1, 0), 0);
	/* Idle since 0, past 10 entries: its seqs are STALE now. */
	assert_int_equal(dedup_check(d, 9, 4, &r), DEDUP_STALE);
	assert_int_equal(dedup_check(d, 9, 5, &r), DEDUP_NEW);
	dedup_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_then_duplicate),
	    cmocka_unit_test(test_out_of_order_in_flight),
	    cmocka_unit_test(test_ordered_rule),
	    cmocka_unit_test(test_ordered_lossy_network),
	    cmocka_unit_test(test_serialize_roundtrip),
	    cmocka_unit_test(test_deserialize_untrusted),
	    cmocka_unit_test(test_expiry_bounds_the_table),
	    cmocka_unit_test(test_expired_client_refused_then_new),
	    cmocka_unit_test(test_expiry_deterministic_across_restarts),
	    cmocka_unit_test(test_reads_tables_from_before_expiry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
