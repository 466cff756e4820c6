/* test_admit.c — a leader's admission of big proposals (consensus/node_admit.h):
 * small ones pass while big ones wait, big ones go in only under the bound,
 * held ones go round robin among clients as entries are done, each client's
 * in seq order (small ones behind its own big ones, a late lower seq before
 * them, a resend of a held one dropped), reset forgets, held bytes are
 * capped, a core that refuses keeps them held; and a randomized run
 * against a model of the log. No sockets, no clock: a fake log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "node_admit.h"

#define KIB (1u << 10)
#define MIB (1u << 20)
#define BOUND (4 * MIB)
#define BIG (64 * KIB)
#define MAXLOG 4096

/* The log the released and passed proposals went into. */
struct fake {
	node_admit *a;
	struct rec {
		uint64_t client, seq, len;
	} log[MAXLOG];
	uint64_t last;	      /* index of the last entry */
	bool refuse;	      /* the core takes nothing now */
	uint64_t over;	      /* placements that broke the bound */
	uint8_t buf[4 * MIB]; /* what offers copy from */
};

static uint64_t append(struct fake *f, uint64_t client, uint64_t seq, size_t len)
{
	node_admit_stats st;

	assert_true(f->last + 1 < MAXLOG);
	/* The bound, checked as each big entry goes in: only while under it. */
	node_admit_get_stats(f->a, &st);
	if (len >= BIG && st.outstanding >= BOUND)
		f->over++;
	f->log[++f->last] = (struct rec){client, seq, len};
	return f->last;
}

static uint64_t propose(void *arg, uint64_t client, uint64_t seq, const uint8_t *data, size_t len)
{
	struct fake *f = arg;

	/* What was held is what was offered: the sender's bytes. */
	for (size_t i = 0; i < len; i += 4096)
		assert_int_equal(data[i], (uint8_t)(seq + client));
	if (f->refuse)
		return 0;
	return append(f, client, seq, len);
}

static struct fake *fake_new(uint64_t bound, uint64_t held_max)
{
	struct fake *f = calloc(1, sizeof(*f));
	node_admit_limits lim = {.bound = bound, .big = BIG, .held_max = held_max};

	assert_non_null(f);
	assert_int_equal(node_admit_new(&lim, &f->a), 0);
	node_admit_reset(f->a, 1);
	return f;
}

static void fake_free(struct fake *f)
{
	node_admit_free(f->a);
	free(f);
}

/* Offers client's seq of len bytes; a pass goes into the log at once, as
 * the node does. Returns the verdict. */
static enum node_admit_verdict offer(struct fake *f, uint64_t client, uint64_t seq, size_t len)
{
	enum node_admit_verdict v;

	for (size_t i = 0; i < len; i += 4096)
		f->buf[i] = (uint8_t)(seq + client);
	v = node_admit_offer(f->a, client, seq, f->buf, len);
	if (v == NODE_ADMIT_PASS)
		node_admit_placed(f->a, append(f, client, seq, len), len);
	return v;
}

static void release(struct fake *f, uint64_t commit)
{
	node_admit_release(f->a, commit, propose, f);
}

static node_admit_stats stats(const struct fake *f)
{
	node_admit_stats st;

	node_admit_get_stats(f->a, &st);
	return st;
}

/* Big ones pass up to the bound and are held beyond; another client's
 * small one passes all the same, and its big one waits behind the held. */
static void test_small_passes(void **state)
{
	struct fake *f = fake_new(BOUND, 64 * MIB);

	(void)state;
	for (uint64_t s = 1; s <= 4; s++)
		assert_int_equal(offer(f, 7, s, MIB), NODE_ADMIT_PASS);
	assert_int_equal(offer(f, 7, 5, MIB), NODE_ADMIT_HELD);
	assert_int_equal(offer(f, 7, 6, MIB), NODE_ADMIT_HELD);
	assert_int_equal(offer(f, 9, 1, 4 * KIB), NODE_ADMIT_PASS);
	assert_int_equal(offer(f, 9, 2, MIB), NODE_ADMIT_HELD);
	assert_int_equal(stats(f).outstanding, 4 * MIB);
	assert_int_equal(stats(f).held, 3);
	assert_int_equal(stats(f).held_bytes, 3 * MIB);
	assert_int_equal(f->last, 5);
	assert_int_equal(f->log[5].client, 9);
	fake_free(f);
}

/* A big entry goes in while under the bound, however big it is. */
static void test_one_always_fits(void **state)
{
	struct fake *f = fake_new(MIB, 64 * MIB);

	(void)state;
	assert_int_equal(offer(f, 7, 1, 2 * MIB), NODE_ADMIT_PASS);
	assert_int_equal(offer(f, 7, 2, 2 * MIB), NODE_ADMIT_HELD);
	release(f, 0);
	assert_int_equal(f->last, 1);
	release(f, 1);
	assert_int_equal(f->last, 2);
	assert_int_equal(stats(f).held, 0);
	fake_free(f);
}

/* Commits make room; the held go round robin among clients, each turn one
 * big one, and a turn that does not fit ends the round. */
static void test_round_robin(void **state)
{
	struct fake *f = fake_new(BOUND, 64 * MIB);
	uint64_t clients[3] = {5, 6, 7}, commit = 0;
	int per[3] = {0};

	(void)state;
	for (uint64_t s = 1; s <= 4; s++)
		assert_int_equal(offer(f, 5, s, MIB), NODE_ADMIT_PASS);
	for (uint64_t s = 5; s <= 14; s++)
		for (int c = 0; c < 3; c++)
			assert_int_equal(offer(f, clients[c], c ? s - 4 : s, MIB), NODE_ADMIT_HELD);
	/* Commit one entry at a time: one released per commit. */
	while (stats(f).held) {
		uint64_t before = f->last;

		release(f, ++commit);
		assert_int_equal(f->last, before + 1);
		assert_true(stats(f).outstanding <= BOUND);
	}
	/* Entries 5.. alternate 5, 6, 7, ... (client 5 waited longest). */
	for (uint64_t i = 5; i <= f->last; i++) {
		assert_int_equal(f->log[i].client, clients[(i - 5) % 3]);
		per[(i - 5) % 3]++;
	}
	assert_int_equal(per[0], 10);
	assert_int_equal(per[1], 10);
	assert_int_equal(per[2], 10);
	assert_int_equal(f->over, 0);
	fake_free(f);
}

/* A client's small proposal behind its own held big one is held too, and
 * goes right after it in the same turn; a late lower seq goes before them;
 * a resend of a held seq is dropped. */
static void test_order(void **state)
{
	struct fake *f = fake_new(BOUND, 64 * MIB);

	(void)state;
	for (uint64_t s = 1; s <= 4; s++)
		assert_int_equal(offer(f, 7, s, MIB), NODE_ADMIT_PASS);
	assert_int_equal(offer(f, 7, 6, MIB), NODE_ADMIT_HELD);
	assert_int_equal(offer(f, 7, 7, 4 * KIB), NODE_ADMIT_HELD);
	assert_int_equal(offer(f, 7, 8, MIB), NODE_ADMIT_HELD);
	assert_int_equal(offer(f, 7, 9, 4 * KIB), NODE_ADMIT_HELD);
	assert_int_equal(offer(f, 7, 5, 4 * KIB), NODE_ADMIT_HELD); /* lost before, resent */
	assert_int_equal(offer(f, 7, 8, MIB), NODE_ADMIT_DROP);	    /* a resend of a held one */
	assert_int_equal(stats(f).n_dup, 1);
	assert_int_equal(offer(f, 9, 1, 4 * KIB), NODE_ADMIT_PASS);
	release(f, 2); /* room for 2 MiB: 5, 6, 7 go, 8 fits as well, and 9 behind it */
	assert_int_equal(f->last, 10);
	for (uint64_t i = 6; i <= 10; i++) {
		assert_int_equal(f->log[i].client, 7);
		assert_int_equal(f->log[i].seq, i - 1);
	}
	assert_int_equal(stats(f).held, 0);
	/* Nothing held any more: its small ones pass again. */
	assert_int_equal(offer(f, 7, 10, 4 * KIB), NODE_ADMIT_PASS);
	fake_free(f);
}

/* A newcomer's big proposal waits for its turn behind those held, even
 * when the bound has room (here: a commit made room, but the core took
 * nothing then). */
static void test_newcomer_waits(void **state)
{
	struct fake *f = fake_new(BOUND, 64 * MIB);

	(void)state;
	assert_int_equal(offer(f, 5, 1, 4 * MIB), NODE_ADMIT_PASS);
	assert_int_equal(offer(f, 6, 1, MIB), NODE_ADMIT_HELD);
	f->refuse = true;
	release(f, 1);
	assert_int_equal(stats(f).outstanding, 0);
	assert_int_equal(offer(f, 7, 1, MIB), NODE_ADMIT_HELD);
	assert_int_equal(offer(f, 8, 1, 4 * KIB), NODE_ADMIT_PASS);
	f->refuse = false;
	release(f, 1);
	assert_int_equal(f->last, 4);
	assert_int_equal(f->log[3].client, 6);
	assert_int_equal(f->log[4].client, 7);
	fake_free(f);
}

/* Leadership lost: held ones and the count are forgotten. */
static void test_reset(void **state)
{
	struct fake *f = fake_new(BOUND, 64 * MIB);

	(void)state;
	for (uint64_t s = 1; s <= 6; s++)
		offer(f, 7, s, MIB);
	assert_int_equal(stats(f).held, 2);
	assert_true(node_admit_busy(f->a));
	node_admit_reset(f->a, 2);
	assert_int_equal(node_admit_term(f->a), 2);
	assert_false(node_admit_busy(f->a));
	assert_int_equal(stats(f).held, 0);
	assert_int_equal(stats(f).held_bytes, 0);
	assert_int_equal(stats(f).outstanding, 0);
	assert_int_equal(stats(f).n_forgotten, 2);
	release(f, 100);
	assert_int_equal(f->last, 4);
	/* The new term counts afresh: the bound's worth passes again. */
	for (uint64_t s = 5; s <= 8; s++)
		assert_int_equal(offer(f, 7, s, MIB), NODE_ADMIT_PASS);
	fake_free(f);
}

/* Held bytes are capped: an offer beyond is dropped. */
static void test_held_max(void **state)
{
	struct fake *f = fake_new(BOUND, 3 * MIB);

	(void)state;
	for (uint64_t s = 1; s <= 4; s++)
		offer(f, 7, s, MIB);
	for (uint64_t s = 5; s <= 7; s++)
		assert_int_equal(offer(f, 7, s, MIB), NODE_ADMIT_HELD);
	assert_int_equal(offer(f, 7, 8, MIB), NODE_ADMIT_DROP);
	assert_int_equal(offer(f, 8, 1, 4 * KIB), NODE_ADMIT_PASS);
	assert_int_equal(stats(f).n_full, 1);
	assert_int_equal(stats(f).held_bytes_max, 3 * MIB);
	fake_free(f);
}

/* The seqs of client's entries in the log, in log order, into out (at
 * most max); returns how many. */
static size_t client_log(const struct fake *f, uint64_t client, uint64_t *out, size_t max)
{
	size_t n = 0;

	for (uint64_t i = 1; i <= f->last && n < max; i++)
		if (f->log[i].client == client)
			out[n++] = f->log[i].seq;
	return n;
}

/* An offer dropped at the cap keeps its client's later ones out until the
 * client offers it again (review finding 3): a client with a queue would
 * have its later ones held and released ahead of the dropped one, and one
 * without would have its small ones pass into the log ahead of it; either
 * way they are skipped as early and the client goes back. */
static void test_held_max_order(void **state)
{
	struct fake *f = fake_new(BOUND, 3 * MIB);
	uint64_t seqs[16];

	(void)state;
	for (uint64_t s = 1; s <= 4; s++)
		offer(f, 7, s, MIB);
	for (uint64_t s = 5; s <= 7; s++)
		assert_int_equal(offer(f, 7, s, MIB), NODE_ADMIT_HELD);
	/* Client 7 (a queue) and 8 (none): a big one dropped at the cap,
	 * then their later ones, small or big, dropped behind it. */
	assert_int_equal(offer(f, 7, 8, MIB), NODE_ADMIT_DROP);
	assert_int_equal(offer(f, 7, 9, 4 * KIB), NODE_ADMIT_DROP);
	assert_int_equal(offer(f, 8, 1, MIB), NODE_ADMIT_DROP);
	assert_int_equal(offer(f, 8, 2, 4 * KIB), NODE_ADMIT_DROP);
	assert_int_equal(offer(f, 8, 3, MIB), NODE_ADMIT_DROP);
	/* Another client's small one still passes. */
	assert_int_equal(offer(f, 9, 1, 4 * KIB), NODE_ADMIT_PASS);
	assert_int_equal(stats(f).n_full, 2);
	assert_int_equal(stats(f).n_behind, 3);
	/* Commits make room; the clients go back to the dropped seq. */
	release(f, f->last);
	for (uint64_t s = 8; s <= 9; s++)
		assert_int_not_equal(offer(f, 7, s, s == 8 ? MIB : 4 * KIB), NODE_ADMIT_DROP);
	for (uint64_t s = 1; s <= 3; s++)
		assert_int_not_equal(offer(f, 8, s, s == 2 ? 4 * KIB : MIB), NODE_ADMIT_DROP);
	while (stats(f).held)
		release(f, f->last);
	assert_int_equal(client_log(f, 7, seqs, 16), 9);
	for (uint64_t i = 0; i < 9; i++)
		assert_int_equal(seqs[i], i + 1);
	assert_int_equal(client_log(f, 8, seqs, 16), 3);
	for (uint64_t i = 0; i < 3; i++)
		assert_int_equal(seqs[i], i + 1);
	fake_free(f);
}

/* One client holds at most its share: beyond, its offers are dropped
 * (and its later ones behind them), while another client still gets
 * held. */
static void test_held_client_max(void **state)
{
	struct fake *f = fake_new(BOUND, 8 * MIB);

	(void)state;
	node_admit_free(f->a);
	assert_int_equal(node_admit_new(&(node_admit_limits){.bound = BOUND,
							     .big = BIG,
							     .held_max = 8 * MIB,
							     .held_client_max = 2 * MIB},
					&f->a),
			 0);
	node_admit_reset(f->a, 1);
	for (uint64_t s = 1; s <= 4; s++)
		assert_int_equal(offer(f, 7, s, MIB), NODE_ADMIT_PASS);
	for (uint64_t s = 5; s <= 6; s++)
		assert_int_equal(offer(f, 7, s, MIB), NODE_ADMIT_HELD);
	assert_int_equal(offer(f, 7, 7, MIB), NODE_ADMIT_DROP);
	for (uint64_t s = 1; s <= 2; s++)
		assert_int_equal(offer(f, 8, s, MIB), NODE_ADMIT_HELD);
	assert_int_equal(offer(f, 8, 3, MIB), NODE_ADMIT_DROP);
	assert_int_equal(stats(f).held_bytes, 4 * MIB);
	/* Released, a client's share is free again. */
	release(f, f->last);
	assert_int_not_equal(offer(f, 7, 7, MIB), NODE_ADMIT_DROP);
	fake_free(f);
}

/* A core that takes nothing (a leader transfer) leaves them held, first. */
static void test_refused(void **state)
{
	struct fake *f = fake_new(BOUND, 64 * MIB);

	(void)state;
	for (uint64_t s = 1; s <= 6; s++)
		offer(f, 7, s, MIB);
	f->refuse = true;
	release(f, 4);
	assert_int_equal(stats(f).held, 2);
	f->refuse = false;
	release(f, 4);
	assert_int_equal(stats(f).held, 0);
	assert_int_equal(f->log[5].seq, 5);
	assert_int_equal(f->log[6].seq, 6);
	fake_free(f);
}

/* Off: everything passes, nothing is counted. */
static void test_off(void **state)
{
	struct fake *f = fake_new(0, 64 * MIB);

	(void)state;
	for (uint64_t s = 1; s <= 20; s++)
		assert_int_equal(offer(f, 7, s, MIB), NODE_ADMIT_PASS);
	assert_false(node_admit_on(f->a));
	assert_false(node_admit_busy(f->a));
	fake_free(f);
}

/* Random offers of three clients (each in seq order, a few resends of
 * held ones) and commits: every proposal reaches the log exactly once,
 * each client's in seq order, the bound holds at every placement, and a
 * client with nothing held has its small ones pass. */
static void test_random(void **state)
{
	(void)state;
	for (unsigned seed = 1; seed <= 20; seed++) {
		struct fake *f = fake_new(BOUND, 256 * MIB);
		uint64_t next[3] = {1, 1, 1}, seen[3] = {0}, commit = 0;
		static const size_t sizes[] = {4 * KIB, 64 * KIB, 300 * KIB, MIB};

		srand(seed);
		for (int step = 0; step < 1000 && f->last < MAXLOG - 64; step++) {
			int c = rand() % 3;
			size_t len = sizes[rand() % 4];
			bool had_held = stats(f).held > 0;
			uint64_t client = 100 + (uint64_t)c;

			if (rand() % 3 == 0 && commit < f->last)
				commit += 1 + (uint64_t)rand() % (f->last - commit);
			if (rand() % 2)
				release(f, commit);
			if (rand() % 10 == 0 && next[c] > 1 && stats(f).held) {
				/* A resend of the last one: a duplicate if held
				 * (dropped), else appended again, as at a leader. */
				offer(f, client, next[c] - 1, len);
				continue;
			}
			enum node_admit_verdict v = offer(f, client, next[c]++, len);

			if (len < BIG && !had_held)
				assert_int_equal(v, NODE_ADMIT_PASS);
			assert_int_not_equal(v, NODE_ADMIT_DROP);
		}
		while (stats(f).held) {
			commit = f->last;
			release(f, commit);
		}
		assert_int_equal(f->over, 0);
		/* Each client's seqs in order, each at least once, and again
		 * only right after itself (a resend appended twice). */
		for (uint64_t i = 1; i <= f->last; i++) {
			int c = (int)(f->log[i].client - 100);

			assert_true(f->log[i].seq == seen[c] + 1 || f->log[i].seq == seen[c]);
			seen[c] = f->log[i].seq;
		}
		for (int c = 0; c < 3; c++)
			assert_int_equal(seen[c], next[c] - 1);
		fake_free(f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_small_passes),
	    cmocka_unit_test(test_one_always_fits),
	    cmocka_unit_test(test_round_robin),
	    cmocka_unit_test(test_order),
	    cmocka_unit_test(test_newcomer_waits),
	    cmocka_unit_test(test_reset),
	    cmocka_unit_test(test_held_max),
	    cmocka_unit_test(test_held_max_order),
	    cmocka_unit_test(test_held_client_max),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_off),
	    cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
