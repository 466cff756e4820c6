/* test_admit.c — a leader's admission of big proposals (consensus/node_admit.h):
 * small ones pass while big ones wait, big ones go in only under the bound,
 * held ones go round robin among clients as entries are done, each client's
 * in seq order (small ones behind its own big ones, a late lower seq before
 * them, a resend of a held one dropped, and of one in the log not yet
 * done unless a lower seq went in after it or the resend's min_pending is
 * higher), reset forgets, held bytes are capped, a core that refuses keeps
 * them held; and randomized runs against a model of the log and of
 * dedup's order rule. No sockets, no clock: a fake log. */
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
#define MODEL_SEQS 1024 /* seqs per client of test_resend_model */

/* The log the released and passed proposals went into. */
struct fake {
	node_admit *a;
	struct rec {
		uint64_t client, seq, min_pending, len;
	} log[MAXLOG];
	uint64_t last; /* index of the last entry */
	bool refuse;   /* the core takes nothing now */
	uint64_t over; /* placements that broke the bound */
	/* held now, for clients 100-102 (test_resend_model) */
	bool held[3][MODEL_SEQS];
	uint8_t buf[4 * MIB]; /* what offers copy from */
};

static uint64_t append(struct fake *f, uint64_t client, uint64_t seq, uint64_t min_pending,
		       size_t len)
{
	node_admit_stats st;

	assert_true(f->last + 1 < MAXLOG);
	/* The bound, checked as each big entry goes in: only while under it. */
	node_admit_get_stats(f->a, &st);
	if (len >= BIG && st.outstanding >= BOUND)
		f->over++;
	f->log[++f->last] = (struct rec){client, seq, min_pending, len};
	if (client >= 100 && client < 103 && seq < MODEL_SEQS)
		f->held[client - 100][seq] = false;
	return f->last;
}

static uint64_t propose(void *arg, uint64_t client, uint64_t seq, const uint8_t *data, size_t len)
{
	struct fake *f = arg;
	uint64_t min_pending;

	/* What was held is what was offered: the sender's bytes, its
	 * min_pending after them (as in an envelope). */
	for (size_t i = 0; i < len; i += 4096)
		assert_int_equal(data[i], (uint8_t)(seq + client));
	memcpy(&min_pending, data + 1, sizeof(min_pending));
	if (f->refuse)
		return 0;
	return append(f, client, seq, min_pending, len);
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

/* Offers client's seq of len bytes proposed with min_pending; a pass goes
 * into the log at once, as the node does. Returns the verdict. */
static enum node_admit_verdict offer_mp(struct fake *f, uint64_t client, uint64_t seq,
					uint64_t min_pending, size_t len)
{
	enum node_admit_verdict v;

	for (size_t i = 0; i < len; i += 4096)
		f->buf[i] = (uint8_t)(seq + client);
	memcpy(f->buf + 1, &min_pending, sizeof(min_pending));
	v = node_admit_offer(f->a, client, seq, min_pending, f->buf, len);
	if (v == NODE_ADMIT_HELD && client >= 100 && client < 103 && seq < MODEL_SEQS)
		f->held[client - 100][seq] = true;
	if (v == NODE_ADMIT_PASS)
		node_admit_placed(f->a, client, seq, min_pending,
				  append(f, client, seq, min_pending, len), len);
	return v;
}

/* offer_mp with min_pending 1: every resend waits for the same seqs as
 * its copy. */
static enum node_admit_verdict offer(struct fake *f, uint64_t client, uint64_t seq, size_t len)
{
	return offer_mp(f, client, seq, 1, len);
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

/* A resend (timer retry, go-back) of a big one already in the log and
 * not yet done is dropped, whether it passed at once or was held and
 * released; once done (committed and saved by every voter), a resend goes
 * in again (nothing vouches for it any more). */
static void test_resend_in_log(void **state)
{
	struct fake *f = fake_new(BOUND, 64 * MIB);

	(void)state;
	for (uint64_t s = 1; s <= 4; s++)
		assert_int_equal(offer(f, 7, s, MIB), NODE_ADMIT_PASS);
	assert_int_equal(offer(f, 7, 5, MIB), NODE_ADMIT_HELD);
	release(f, 1);
	assert_int_equal(f->last, 5); /* 5 released into the log */
	/* The sender goes back to 2: 2..5 are in the log, not done. */
	for (uint64_t s = 2; s <= 5; s++)
		assert_int_equal(offer(f, 7, s, MIB), NODE_ADMIT_DROP);
	assert_int_equal(stats(f).n_resent, 4);
	assert_int_equal(f->last, 5);
	/* Another client's same seq is its own. */
	assert_int_equal(offer(f, 8, 3, 4 * KIB), NODE_ADMIT_PASS);
	/* 1 is done: its resend goes in again (dedup answers it at apply). */
	assert_int_equal(offer(f, 7, 1, MIB), NODE_ADMIT_HELD);
	release(f, 5);
	assert_int_equal(f->log[f->last].client, 7);
	assert_int_equal(f->log[f->last].seq, 1);
	fake_free(f);
}

/* A lower seq of a client going into the log after its big ones (a lost
 * one resent) means those may be skipped as early at apply: their resends
 * go in again behind it, whether it was big or small, held or not. */
static void test_resend_after_lower(void **state)
{
	struct fake *f = fake_new(BOUND, 64 * MIB);

	(void)state;
	/* 1 is lost on its way; 2 and 3 go in ahead of it. */
	assert_int_equal(offer(f, 7, 2, MIB), NODE_ADMIT_PASS);
	assert_int_equal(offer(f, 7, 3, MIB), NODE_ADMIT_PASS);
	assert_int_equal(offer(f, 7, 2, MIB), NODE_ADMIT_DROP);
	/* The go-back: 1 (small) goes in, then 2 and 3 again. */
	assert_int_equal(offer(f, 7, 1, 4 * KIB), NODE_ADMIT_PASS);
	assert_int_equal(offer(f, 7, 2, MIB), NODE_ADMIT_PASS);
	assert_int_equal(offer(f, 7, 3, MIB), NODE_ADMIT_PASS);
	/* The new copies vouch again. */
	assert_int_equal(offer(f, 7, 3, MIB), NODE_ADMIT_DROP);
	assert_int_equal(stats(f).n_resent, 2);
	release(f, f->last);
	/* A held lower seq, once released, vouches against nothing above
	 * it: 6 goes in while 5 is lost, then 5 waits for room. */
	for (uint64_t s = 1; s <= 3; s++)
		assert_int_equal(offer(f, 8, s, MIB), NODE_ADMIT_PASS);
	assert_int_equal(offer(f, 7, 6, MIB), NODE_ADMIT_PASS);
	assert_int_equal(offer(f, 7, 5, MIB), NODE_ADMIT_HELD);
	release(f, f->last - 3); /* 8's first done: room for 5 */
	assert_int_equal(f->log[f->last].seq, 5);
	assert_int_equal(offer(f, 7, 5, MIB), NODE_ADMIT_DROP);
	assert_int_not_equal(offer(f, 7, 6, MIB), NODE_ADMIT_DROP);
	assert_int_equal(stats(f).n_resent, 3);
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

/* A resend of a held one while the held bytes are at the cap is a
 * duplicate, not an overflow (review finding): it takes no room, a higher
 * min_pending still replaces the held copy, and the client's later offers
 * are not kept out behind it. Before, the cap was checked first: the
 * resend counted as full and blocked seq 9 until the client went back. */
static void test_held_max_resend(void **state)
{
	struct fake *f = fake_new(BOUND, 3 * MIB);
	uint64_t seqs[16];

	(void)state;
	for (uint64_t s = 1; s <= 4; s++)
		offer(f, 7, s, MIB);
	for (uint64_t s = 5; s <= 7; s++)
		assert_int_equal(offer(f, 7, s, MIB), NODE_ADMIT_HELD);
	assert_int_equal(stats(f).held_bytes, 3 * MIB);
	assert_int_equal(offer(f, 7, 6, MIB), NODE_ADMIT_DROP);
	assert_int_equal(offer_mp(f, 7, 6, 6, MIB), NODE_ADMIT_DROP);
	assert_int_equal(stats(f).n_dup, 2);
	assert_int_equal(stats(f).n_full, 0);
	assert_int_equal(stats(f).held_bytes, 3 * MIB);
	while (stats(f).held)
		release(f, f->last);
	assert_int_equal(offer(f, 7, 8, 4 * KIB), NODE_ADMIT_PASS);
	assert_int_equal(stats(f).n_behind, 0);
	assert_int_equal(client_log(f, 7, seqs, 16), 8);
	for (uint64_t i = 0; i < 8; i++)
		assert_int_equal(seqs[i], i + 1);
	/* The copy that went in is the resend's. */
	for (uint64_t i = 1; i <= f->last; i++)
		if (f->log[i].client == 7 && f->log[i].seq == 6)
			assert_int_equal(f->log[i].min_pending, 6);
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

/* A resend whose min_pending is above its copy's (a predecessor failed at
 * its deadline meanwhile) waits at apply for fewer seqs than the copy: it
 * may apply where the copy is skipped as early, so it goes in; one whose
 * min_pending is not higher is dropped. A held copy takes the higher
 * min_pending of a resend of it (its bytes: the resend's). */
static void test_resend_min_pending(void **state)
{
	struct fake *f = fake_new(BOUND, 64 * MIB);

	(void)state;
	/* 1 is lost on its way; 2 goes in waiting for it. */
	assert_int_equal(offer_mp(f, 7, 2, 1, MIB), NODE_ADMIT_PASS);
	assert_int_equal(offer_mp(f, 7, 2, 1, MIB), NODE_ADMIT_DROP);
	/* 1 fails at its deadline: the resend of 2 no longer waits for it. */
	assert_int_equal(offer_mp(f, 7, 2, 2, MIB), NODE_ADMIT_PASS);
	assert_int_equal(f->last, 2);
	assert_int_equal(f->log[2].min_pending, 2);
	/* The new copy vouches for resends like it, and for older ones. */
	assert_int_equal(offer_mp(f, 7, 2, 2, MIB), NODE_ADMIT_DROP);
	assert_int_equal(offer_mp(f, 7, 2, 1, MIB), NODE_ADMIT_DROP);
	assert_int_equal(stats(f).n_resent, 3);
	assert_int_equal(f->last, 2);
	fake_free(f);

	/* Held: 6 waits for room while 5 is lost, then 5 fails. */
	f = fake_new(BOUND, 64 * MIB);
	for (uint64_t s = 1; s <= 4; s++)
		assert_int_equal(offer_mp(f, 7, s, 1, MIB), NODE_ADMIT_PASS);
	assert_int_equal(offer_mp(f, 7, 6, 5, MIB), NODE_ADMIT_HELD);
	assert_int_equal(offer_mp(f, 7, 6, 6, MIB), NODE_ADMIT_DROP);
	assert_int_equal(offer_mp(f, 7, 6, 5, MIB), NODE_ADMIT_DROP); /* late, older */
	assert_int_equal(stats(f).n_dup, 2);
	assert_int_equal(stats(f).held, 1);
	assert_int_equal(stats(f).held_bytes, MIB);
	release(f, 4);
	assert_int_equal(f->last, 5);
	assert_int_equal(f->log[5].seq, 6);
	assert_int_equal(f->log[5].min_pending, 6);
	fake_free(f);
}

/* A model of senders and of dedup's order rule at apply (dedup.h,
 * dedup_check_ordered: client's seq s proposed with min_pending m executes
 * only once every seq in [max(m, forgotten), s) has, else it is skipped as
 * early and its sender goes back; forgotten is the highest min_pending of
 * the client's executed entries): random offers, some lost on the way,
 * some failing at their sender's deadline (its min_pending moves past
 * them), go-backs on a skip, timer retries (resends lost too). A copy in
 * the log that answered a dropped resend may itself be skipped as early
 * (a seq it waits for failed), but only if the resend could not have
 * applied either: proposed with its min_pending at the copy's place, it
 * would wait for a seq not executed there, and that seq neither went into
 * the log between the copy and the drop nor was held at the drop (the
 * resend would have gone in behind it). Else the sender waits for its next
 * timer retry, which may be past its deadline. And in the end every seq
 * has applied or failed. */
struct sender {
	uint64_t next;		  /* the next seq to propose */
	uint64_t low;		  /* every seq below has applied or failed */
	uint8_t fate[MODEL_SEQS]; /* 0 pending, 1 applied, 2 failed */
	/* dedup's table of the client */
	bool executed[MODEL_SEQS];
	uint64_t forgotten;
};

struct model {
	struct fake *f;
	struct sender c[3];
	uint64_t commit, ap; /* committed, applied up to */
	bool early[MAXLOG];  /* index skipped as early at apply */
	struct vouched {
		uint64_t index;	      /* the copy */
		uint64_t min_pending; /* the dropped resend's */
		uint64_t at;	      /* where it would have gone: the log's end then */
		uint64_t held_lo;     /* the lowest seq in [min_pending, seq) held then, or 0 */
	} vouched[4 * MAXLOG];
	size_t n_vouched;
	uint64_t n_failed, n_early_vouched;
};

/* The sender's lowest pending seq: what its envelopes carry. */
static uint64_t model_min_pending(struct sender *s)
{
	while (s->low < s->next && s->fate[s->low])
		s->low++;
	return s->low;
}

/* The last copy of client's seq in the log. */
static uint64_t last_copy(const struct fake *f, uint64_t client, uint64_t seq)
{
	for (uint64_t i = f->last; i > 0; i--)
		if (f->log[i].client == client && f->log[i].seq == seq)
			return i;
	return 0;
}

static void model_offer(struct model *m, int c, uint64_t seq)
{
	uint64_t client = 100 + (uint64_t)c, before = stats(m->f).n_resent;
	static const size_t sizes[] = {4 * KIB, 256 * KIB, MIB};
	size_t len = sizes[rand() % 3];
	uint64_t mp = model_min_pending(&m->c[c]);

	offer_mp(m->f, client, seq, mp, len);
	if (stats(m->f).n_resent != before) {
		uint64_t i = last_copy(m->f, client, seq), lo = 0;

		assert_true(i > m->ap); /* in the log, not applied yet */
		assert_true(m->n_vouched < sizeof(m->vouched) / sizeof(m->vouched[0]));
		for (uint64_t t = mp; t < seq && !lo; t++)
			if (m->f->held[c][t])
				lo = t;
		m->vouched[m->n_vouched++] = (struct vouched){i, mp, m->f->last + 1, lo};
	}
}

/* The sender goes back: every pending seq again, in order, some lost on
 * the way again (a resend may then find a copy in the log while a lower
 * seq it waits for is still missing). */
static void model_resend(struct model *m, int c)
{
	struct sender *s = &m->c[c];

	for (uint64_t q = model_min_pending(s); q < s->next; q++)
		if (!s->fate[q] && rand() % 10)
			model_offer(m, c, q);
}

/* The sender's lowest pending seq fails at its deadline. */
static void model_fail(struct model *m, int c)
{
	struct sender *s = &m->c[c];
	uint64_t q = model_min_pending(s);

	if (q < s->next) {
		s->fate[q] = 2;
		m->n_failed++;
	}
}

/* dedup_check_ordered's order rule: whether seq, proposed with
 * min_pending, may execute now. */
static bool model_ready(const struct sender *s, uint64_t seq, uint64_t min_pending)
{
	uint64_t from = min_pending > s->forgotten ? min_pending : s->forgotten;

	for (uint64_t t = from; t < seq; t++)
		if (!s->executed[t])
			return false;
	return true;
}

/* The copy at m->ap of client's seq, which answered the dropped resend v,
 * is skipped as early: the resend must have been doomed too. */
static void model_check_vouched(struct model *m, const struct sender *s, uint64_t client,
				uint64_t seq, const struct vouched *v)
{
	uint64_t from = v->min_pending > s->forgotten ? v->min_pending : s->forgotten;

	m->n_early_vouched++;
	/* It waits for a seq not executed here (min_pending)... */
	assert_false(model_ready(s, seq, v->min_pending));
	for (uint64_t t = from; t < seq; t++) {
		if (s->executed[t])
			continue;
		/* ...that did not go in after the copy before the drop (a lower
		 * seq placed after a copy withdraws its vouch)... */
		for (uint64_t i = m->ap + 1; i < v->at; i++)
			assert_false(m->f->log[i].client == client && m->f->log[i].seq == t);
		/* ...and was not held then (the resend would go in after it). */
		assert_int_not_equal(t, v->held_lo);
	}
}

/* Applies the committed entries; a skipped one sends its sender back. */
static void model_apply(struct model *m)
{
	while (m->ap < m->commit) {
		const struct rec *r = &m->f->log[++m->ap];
		struct sender *s = &m->c[r->client - 100];

		if (r->seq < s->forgotten || s->executed[r->seq])
			continue; /* stale, duplicate */
		if (model_ready(s, r->seq, r->min_pending)) {
			s->executed[r->seq] = true;
			if (r->min_pending > s->forgotten)
				s->forgotten = r->min_pending;
			if (!s->fate[r->seq])
				s->fate[r->seq] = 1;
			continue;
		}
		m->early[m->ap] = true;
		for (size_t v = 0; v < m->n_vouched; v++) {
			if (m->vouched[v].index != m->ap)
				continue;
			model_check_vouched(m, s, r->client, r->seq, &m->vouched[v]);
		}
		if (!s->fate[r->seq])
			model_resend(m, (int)(r->client - 100));
	}
}

static void test_resend_model(void **state)
{
	uint64_t resent = 0, failed = 0, early_vouched = 0;

	(void)state;
	for (unsigned seed = 1; seed <= 30; seed++) {
		struct model *m = calloc(1, sizeof(*m));

		assert_non_null(m);
		m->f = fake_new(BOUND, 256 * MIB);
		for (int c = 0; c < 3; c++)
			m->c[c].next = m->c[c].low = 1;
		srand(seed);
		for (int step = 0; step < 400 && m->f->last < MAXLOG / 2; step++) {
			int c = rand() % 3, r = rand() % 20;

			if (r < 10) {
				uint64_t seq = m->c[c].next++;

				assert_true(seq < MODEL_SEQS);
				if (rand() % 10) /* else lost on the way */
					model_offer(m, c, seq);
			} else if (r < 16) {
				if (m->commit < m->f->last)
					m->commit +=
					    1 + (uint64_t)rand() % (m->f->last - m->commit);
				release(m->f, m->commit);
				model_apply(m);
			} else if (r < 19) {
				model_resend(m, c); /* a timer retry */
			} else {
				model_fail(m, c);
			}
		}
		/* Timer retries and commits until every seq applied. */
		for (int round = 0; round < 50; round++) {
			for (int c = 0; c < 3; c++)
				model_resend(m, c);
			while (stats(m->f).held || m->commit < m->f->last) {
				m->commit = m->f->last;
				release(m->f, m->commit);
				model_apply(m);
			}
		}
		for (int c = 0; c < 3; c++)
			assert_int_equal(model_min_pending(&m->c[c]), m->c[c].next);
		resent += stats(m->f).n_resent;
		failed += m->n_failed;
		early_vouched += m->n_early_vouched;
		fake_free(m->f);
		free(m);
	}
	print_message("%llu resends dropped as in the log, %llu seqs failed, %llu copies that "
		      "answered one skipped as early\n",
		      (unsigned long long)resent, (unsigned long long)failed,
		      (unsigned long long)early_vouched);
	/* The cases occurred: resends dropped, seqs failed, and copies that
	 * answered a dropped resend skipped as early. */
	assert_true(resent > 0);
	assert_true(failed > 0);
	assert_true(early_vouched > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_small_passes),
	    cmocka_unit_test(test_one_always_fits),
	    cmocka_unit_test(test_round_robin),
	    cmocka_unit_test(test_order),
	    cmocka_unit_test(test_resend_in_log),
	    cmocka_unit_test(test_resend_after_lower),
	    cmocka_unit_test(test_resend_min_pending),
	    cmocka_unit_test(test_newcomer_waits),
	    cmocka_unit_test(test_reset),
	    cmocka_unit_test(test_held_max),
	    cmocka_unit_test(test_held_max_order),
	    cmocka_unit_test(test_held_max_resend),
	    cmocka_unit_test(test_held_client_max),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_off),
	    cmocka_unit_test(test_random),
	    cmocka_unit_test(test_resend_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
