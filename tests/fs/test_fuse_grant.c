/* test_fuse_grant.c — the timing rules of delegations (fs/fuse_grant.h).
 * When a mount asks for a directory it did not make: after
 * FUSE_GRANT_AFTER synchronous changes within the window, not during the
 * back-off after a recall, which doubles per recall up to its maximum and
 * starts afresh long after; a full table still answers. When it returns a
 * directory unasked: idle for the idle time once the mount is quiet, ten
 * times that while it works elsewhere. When a recaller recalls again and
 * revokes: by the holder's progress, capped, and afresh for a new holder.
 * Time is an argument: no clock, no sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fuse_grant.h"

/* Notes n changes of dir at times t, t+step, ...; how many said "ask". */
static unsigned note_n(struct fuse_grant *g, uint64_t dir, unsigned n, int64_t t, int64_t step)
{
	unsigned asks = 0;

	for (unsigned i = 0; i < n; i++)
		asks += fuse_grant_note(g, dir, t + (int64_t)i * step);
	return asks;
}

static void test_asks_after_enough_changes(void **state)
{
	struct fuse_grant *g;

	(void)state;
	assert_int_equal(fuse_grant_new(&g, false), 0);
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER - 1, 1000, 1), 0);
	assert_true(fuse_grant_note(g, 7, 1100));
	/* The count starts again: the next ask needs as many again. */
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER - 1, 1200, 1), 0);
	assert_true(fuse_grant_note(g, 7, 1300));
	/* Other directories count apart. */
	assert_int_equal(note_n(g, 8, FUSE_GRANT_AFTER - 1, 1400, 1), 0);
	fuse_grant_free(g);
}

static void test_slow_changes_never_ask(void **state)
{
	struct fuse_grant *g;

	(void)state;
	assert_int_equal(fuse_grant_new(&g, false), 0);
	/* One change per window and a bit: never enough within one. */
	assert_int_equal(note_n(g, 7, 10 * FUSE_GRANT_AFTER, 0, FUSE_GRANT_WINDOW_MS / 4 + 1), 0);
	fuse_grant_free(g);
}

static void test_backoff_after_recall(void **state)
{
	struct fuse_grant *g;
	int64_t t = 100000;

	(void)state;
	assert_int_equal(fuse_grant_new(&g, false), 0);
	fuse_grant_recalled(g, 7, t);
	/* During the back-off: many changes, no ask. */
	assert_int_equal(note_n(g, 7, 5 * FUSE_GRANT_AFTER, t, 10), 0);
	/* After it: asks again. */
	t += FUSE_GRANT_BACKOFF_MS;
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER, t, 1), 1);
	/* A second recall doubles it. */
	fuse_grant_recalled(g, 7, t + 100);
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER, t + 100 + FUSE_GRANT_BACKOFF_MS, 1), 0);
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER, t + 100 + 2 * FUSE_GRANT_BACKOFF_MS, 1), 1);
	fuse_grant_free(g);
}

static void test_backoff_caps_and_resets(void **state)
{
	struct fuse_grant *g;
	int64_t t = 0, quiet = 0;

	(void)state;
	assert_int_equal(fuse_grant_new(&g, false), 0);
	/* Recalls back to back: the back-off grows to the maximum, no more. */
	for (int i = 0; i < 20; i++) {
		fuse_grant_recalled(g, 7, t);
		t += 10;
	}
	t -= 10;
	quiet = t + FUSE_GRANT_BACKOFF_MAX_MS;
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER, quiet - 100, 1), 0);
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER, quiet, 1), 1);
	/* Long after: a recall starts from the first back-off again. */
	t = quiet + 2 * FUSE_GRANT_BACKOFF_MAX_MS;
	fuse_grant_recalled(g, 7, t);
	assert_int_equal(note_n(g, 7, FUSE_GRANT_AFTER, t + FUSE_GRANT_BACKOFF_MS, 1), 1);
	fuse_grant_free(g);
}

static void test_full_table(void **state)
{
	struct fuse_grant *g;

	(void)state;
	assert_int_equal(fuse_grant_new(&g, false), 0);
	/* More directories than it keeps, all recently changed: no ask for
	 * a new one (nothing is dropped while it may matter)... */
	for (uint64_t d = 1; d <= FUSE_GRANT_DIRS_MAX; d++)
		fuse_grant_note(g, d, 0);
	assert_int_equal(note_n(g, 999999, FUSE_GRANT_AFTER, 1, 0), 0);
	/* ...until the old ones' windows are over and they are dropped. */
	assert_int_equal(note_n(g, 999999, FUSE_GRANT_AFTER, FUSE_GRANT_WINDOW_MS + 10, 0), 1);
	fuse_grant_free(g);
}

#define MS 1000000LL /* ns */

static void test_idle_when_mount_quiet(void **state)
{
	const int64_t idle = FUSE_IDLE_RETURN_MS, t = 1000000 * MS;

	(void)state;
	/* The whole mount quiet since the directory's last use. */
	assert_false(fuse_grant_idle(t, t, t + (idle - 1) * MS, idle));
	assert_true(fuse_grant_idle(t, t, t + idle * MS, idle));
	/* Its last use somewhere else long ago as well. */
	assert_true(fuse_grant_idle(t - 5 * idle * MS, t, t + idle * MS, idle));
	/* 0: never. */
	assert_false(fuse_grant_idle(t, t, t + 1000 * idle * MS, 0));
}

static void test_idle_when_mount_busy(void **state)
{
	const int64_t idle = FUSE_IDLE_RETURN_MS, t = 1000000 * MS;
	const int64_t busy = FUSE_IDLE_BUSY_X * idle * MS;

	(void)state;
	/* The mount used another directory just now: kept well past idle. */
	for (int64_t age = idle * MS; age < busy; age += idle * MS / 2)
		assert_false(fuse_grant_idle(t - age, t, t, idle));
	/* ...until it was left alone for the longer time. */
	assert_true(fuse_grant_idle(t - busy, t, t, idle));
	/* A use stamped after now (another thread's clock read) is now. */
	assert_false(fuse_grant_idle(t - idle * MS, t + 5, t, idle));
	/* Scales with the configured idle time. */
	assert_false(fuse_grant_idle(t - 10 * FUSE_IDLE_BUSY_X * MS + 1, t, t, 10));
	assert_true(fuse_grant_idle(t - 10 * FUSE_IDLE_BUSY_X * MS, t, t, 10));
}

/* Steps r with holder/epoch/progress from t to t + ms in steps of 10 ms;
 * how many Recalls it said, and the time of the first Revoke (-1: none). */
static int64_t run_clock(struct fuse_reclaim *r, uint32_t holder, uint64_t epoch,
			 uint64_t progress, int64_t t, int64_t ms, unsigned *recalls)
{
	for (int64_t now = t; now <= t + ms; now += 10) {
		enum fuse_reclaim_do d = fuse_reclaim_step(r, holder, epoch, progress, 0, now, now);

		if (d == FUSE_RECLAIM_REVOKE)
			return now;
		*recalls += d == FUSE_RECLAIM_RECALL;
		assert_true(fuse_reclaim_due(r, now) > 0);
		assert_true(fuse_reclaim_due(r, now) <= FUSE_RECALL_EVERY_MS);
	}
	return -1;
}

static void test_reclaim_recalls_then_revokes(void **state)
{
	struct fuse_reclaim r;
	unsigned recalls = 0;
	int64_t t = 50000;

	(void)state;
	fuse_reclaim_start(&r, t);
	/* A Recall at once, then one per FUSE_RECALL_EVERY_MS. */
	assert_int_equal(fuse_reclaim_step(&r, 2, 7, 100, 0, t, t), FUSE_RECLAIM_RECALL);
	assert_int_equal(fuse_reclaim_step(&r, 2, 7, 100, 0, t + 1, t + 1), FUSE_RECLAIM_WAIT);
	/* No progress: revoked at FUSE_REVOKE_AFTER_MS. */
	assert_int_equal(run_clock(&r, 2, 7, 100, t + 10, 2 * FUSE_REVOKE_AFTER_MS, &recalls),
			 t + FUSE_REVOKE_AFTER_MS);
	assert_int_equal(recalls, FUSE_REVOKE_AFTER_MS / FUSE_RECALL_EVERY_MS - 1);
}

static void test_reclaim_progress_and_cap(void **state)
{
	struct fuse_reclaim r;
	unsigned recalls = 0;
	int64_t t = 0, revoked = -1;
	uint64_t progress = 1;

	(void)state;
	fuse_reclaim_start(&r, t);
	/* A holder whose commands keep applying is not revoked... */
	for (; t < FUSE_REVOKE_CAP_MS - FUSE_REVOKE_AFTER_MS; t += FUSE_REVOKE_AFTER_MS / 2)
		assert_int_equal(run_clock(&r, 2, 7, progress++, t, FUSE_REVOKE_AFTER_MS / 2 - 10,
					   &recalls),
				 -1);
	/* ...until the cap, however busy. */
	for (; t <= FUSE_REVOKE_CAP_MS && revoked < 0; t += 10)
		if (fuse_reclaim_step(&r, 2, 7, progress++, 0, t, t) == FUSE_RECLAIM_REVOKE)
			revoked = t;
	assert_int_equal(revoked, FUSE_REVOKE_CAP_MS);
}

static void test_reclaim_new_holder_starts_afresh(void **state)
{
	struct fuse_reclaim r;
	unsigned recalls = 0;
	int64_t t = 1000;

	(void)state;
	fuse_reclaim_start(&r, t);
	assert_int_equal(run_clock(&r, 2, 7, 5, t, FUSE_REVOKE_AFTER_MS - 10, &recalls), -1);
	t += FUSE_REVOKE_AFTER_MS - 5;
	/* Node 2 returned; node 3 was granted it (a new epoch) just before
	 * this look: asked at once, and given the whole time. */
	assert_int_equal(fuse_reclaim_step(&r, 3, 8, 40, 0, t, t), FUSE_RECLAIM_RECALL);
	recalls = 0;
	assert_int_equal(run_clock(&r, 3, 8, 40, t + 10, 2 * FUSE_REVOKE_AFTER_MS, &recalls),
			 t + FUSE_REVOKE_AFTER_MS);
	/* Same holder, new epoch (returned and granted again): afresh too. */
	fuse_reclaim_start(&r, t);
	assert_int_equal(run_clock(&r, 3, 8, 40, t, FUSE_REVOKE_AFTER_MS - 10, &recalls), -1);
	t += FUSE_REVOKE_AFTER_MS - 5;
	assert_int_equal(fuse_reclaim_step(&r, 3, 9, 40, 0, t, t), FUSE_RECLAIM_RECALL);
	assert_int_equal(fuse_reclaim_step(&r, 3, 9, 40, 0, t + 10, t + 10), FUSE_RECLAIM_WAIT);
}

/* A wait that revoked a silent holder at once, the Revoke applied 31 s
 * after the wait began (past the cap) and changed nothing: the holder had
 * started again (SM_RESULT_HOLDER_BACK). The live holder is recalled and
 * given the whole FUSE_REVOKE_AFTER_MS, not revoked at the next look by a
 * cap that ran out while the Revoke was on its way (review rev_starts,
 * finding 2). */
static void test_reclaim_holder_back_starts_afresh(void **state)
{
	struct fuse_reclaim r;
	unsigned recalls = 0;
	int64_t t = 1000, back = t + FUSE_REVOKE_CAP_MS + 1000;

	(void)state;
	fuse_reclaim_start(&r, t);
	fuse_reclaim_holder_back(&r, back);
	/* Its start command applied here: progress, and its silence ends. */
	assert_int_equal(fuse_reclaim_step(&r, 3, 8, 41, 12, back, back), FUSE_RECLAIM_RECALL);
	assert_int_equal(run_clock(&r, 3, 8, 41, back + 10, 2 * FUSE_REVOKE_AFTER_MS, &recalls),
			 back + FUSE_REVOKE_AFTER_MS);
}

/* Reviewer's finding 2: node 3, dead (no connection), holds the directory
 * a wait started on at t; it restarts and connects at t + 2000 (link 12),
 * its start command not applied here yet. The wait's clock starts again
 * at the connection: no Revoke at t + 3000 (it was one), one at t + 5000;
 * and the silence mark that Revoke sets is the mark of connection 12.
 * A Revoke decided on a connection a later look no longer shows (another
 * recaller saw a newer one meanwhile) marks nothing. */
static void test_reclaim_clock_starts_again_on_a_new_connection(void **state)
{
	struct fuse_grant *g;
	struct fuse_reclaim r;
	unsigned recalls = 0;
	int64_t t = 20000, since;
	bool silent;

	(void)state;
	assert_int_equal(fuse_grant_new(&g, false), 0);
	assert_true(fuse_holder_join(g, 3, 60, 0, t));
	fuse_reclaim_start(&r, t);
	since = fuse_holder_look(g, 3, 60, 0, t, &silent);
	assert_int_equal(fuse_reclaim_step(&r, 3, 4, 60, 0, since, t), FUSE_RECLAIM_RECALL);
	assert_int_equal(run_clock(&r, 3, 4, 60, t + 10, 1990, &recalls), -1);
	since = fuse_holder_look(g, 3, 60, 12, t + 2000, &silent);
	assert_int_equal(since, t + 2000);
	assert_int_not_equal(fuse_reclaim_step(&r, 3, 4, 60, 12, since, t + 2000),
			     FUSE_RECLAIM_REVOKE);
	assert_int_not_equal(fuse_reclaim_step(&r, 3, 4, 60, 12, since, t + 3000),
			     FUSE_RECLAIM_REVOKE);
	assert_int_not_equal(fuse_reclaim_step(&r, 3, 4, 60, 12, since, t + 4990),
			     FUSE_RECLAIM_REVOKE);
	assert_int_equal(fuse_reclaim_step(&r, 3, 4, 60, 12, since, t + 5000), FUSE_RECLAIM_REVOKE);
	/* A look of another recaller saw connection 13 in between: the
	 * Revoke decided on 12 marks nothing. */
	(void)fuse_holder_look(g, 3, 60, 13, t + 5000, &silent);
	fuse_holder_silent(g, 3, 60, 12);
	(void)fuse_holder_look(g, 3, 60, 13, t + 5001, &silent);
	assert_false(silent);
	/* Decided on 13, the connection the look shows: marked. */
	fuse_holder_silent(g, 3, 60, 13);
	(void)fuse_holder_look(g, 3, 60, 13, t + 5002, &silent);
	assert_true(silent);
	fuse_holder_leave(g, 3);
	fuse_grant_free(g);
}

/* A holder seen working in this wait may then fall silent while its own
 * apply catches up (a synchronous step waits behind its backlog): revoked
 * only FUSE_REVOKE_BUSY_MS after its last command applied here. The next
 * holder starts with the short bound again. */
static void test_reclaim_busy_holder_gets_longer(void **state)
{
	struct fuse_reclaim r;
	unsigned recalls = 0;
	int64_t t = 7000;

	(void)state;
	fuse_reclaim_start(&r, t);
	assert_int_equal(fuse_reclaim_step(&r, 2, 7, 100, 0, t, t), FUSE_RECLAIM_RECALL);
	/* Its commands arrive for a second... */
	for (uint64_t p = 101; p <= 110; p++) {
		t += 100;
		assert_int_not_equal(fuse_reclaim_step(&r, 2, 7, p, 0, t, t), FUSE_RECLAIM_REVOKE);
	}
	/* ...then none: past the short bound it keeps the delegation, and
	 * is revoked at the long one. */
	assert_int_equal(run_clock(&r, 2, 7, 110, t + 10, 2 * FUSE_REVOKE_BUSY_MS, &recalls),
			 t + FUSE_REVOKE_BUSY_MS);
	assert_true(r.busy);
	/* Returned and granted to node 3, which does nothing: the short
	 * bound. */
	t += FUSE_REVOKE_BUSY_MS + 100;
	assert_int_equal(fuse_reclaim_step(&r, 3, 8, 50, 0, t, t), FUSE_RECLAIM_RECALL);
	assert_false(r.busy);
	assert_int_equal(run_clock(&r, 3, 8, 50, t + 10, 2 * FUSE_REVOKE_AFTER_MS, &recalls),
			 t + FUSE_REVOKE_AFTER_MS);
}

/* Two recallers of one mount wait for one silent holder: the second,
 * started later, is revoked with the first (one clock), not a whole
 * FUSE_REVOKE_AFTER_MS after its own start. */
static void test_holder_parallel_waits_share_a_clock(void **state)
{
	struct fuse_grant *g;
	struct fuse_reclaim a, b;
	unsigned recalls = 0;
	int64_t t = 9000, since;
	bool silent;

	(void)state;
	assert_int_equal(fuse_grant_new(&g, false), 0);
	assert_true(fuse_holder_join(g, 3, 77, 9, t));
	fuse_reclaim_start(&a, t);
	assert_int_equal(fuse_reclaim_step(&a, 3, 5, 77, 0, fuse_holder_look(g, 3, 77, 9, t, &silent), t),
			 FUSE_RECLAIM_RECALL);
	assert_false(silent);
	/* The second one joins 2 s later: the holder has been silent since
	 * t as far as this mount saw. */
	assert_true(fuse_holder_join(g, 3, 77, 9, t + 2000));
	since = fuse_holder_look(g, 3, 77, 9, t + 2000, &silent);
	assert_int_equal(since, t);
	fuse_reclaim_start(&b, t + 2000);
	assert_int_equal(fuse_reclaim_step(&b, 3, 6, 77, 0, since, t + 2000), FUSE_RECLAIM_RECALL);
	assert_int_equal(run_clock(&b, 3, 6, 77, t + 2010, FUSE_REVOKE_AFTER_MS, &recalls),
			 t + FUSE_REVOKE_AFTER_MS);
	assert_int_equal(run_clock(&a, 3, 5, 77, t + 10, FUSE_REVOKE_AFTER_MS, &recalls),
			 t + FUSE_REVOKE_AFTER_MS);
	fuse_holder_leave(g, 3);
	fuse_holder_leave(g, 3);
	/* Nobody waits now and it was not marked silent: the next wait
	 * starts its own clock. */
	assert_true(fuse_holder_join(g, 3, 77, 9, t + 60000));
	assert_int_equal(fuse_holder_look(g, 3, 77, 9, t + 60000, &silent), t + 60000);
	assert_false(silent);
	fuse_holder_leave(g, 3);
	fuse_grant_free(g);
}

/* Holder 3 (at progress 50, on connection 9) waited for at t and revoked
 * for silence: marked silent on that connection. */
static void revoked_for_silence(struct fuse_grant *g, int64_t t)
{
	bool silent;

	assert_true(fuse_holder_join(g, 3, 50, 9, t));
	(void)fuse_holder_look(g, 3, 50, 9, t, &silent);
	fuse_holder_silent(g, 3, 50, 0);
	fuse_holder_leave(g, 3);
}

/* A holder marked silent that shows a connection newer than the one its
 * silence began on restarted (or came back from a partition) before any
 * command of it applied: recalled with the whole wait, not revoked at
 * once. The same connection, or none, leaves it silent: a dead holder is
 * still revoked at once. */
static void test_holder_back_on_a_new_connection(void **state)
{
	struct fuse_grant *g;
	int64_t t = 4000;
	bool silent;

	(void)state;
	assert_int_equal(fuse_grant_new(&g, false), 0);
	revoked_for_silence(g, t);
	/* Its connection went down (killed): still silent. */
	assert_true(fuse_holder_join(g, 3, 50, 0, t + 4000));
	(void)fuse_holder_look(g, 3, 50, 0, t + 4000, &silent);
	assert_true(silent);
	/* The old connection, never dropped (cut off): still silent. */
	(void)fuse_holder_look(g, 3, 50, 9, t + 4500, &silent);
	assert_true(silent);
	/* A new one: back, its silence counted from this look. */
	assert_int_equal(fuse_holder_look(g, 3, 50, 12, t + 5000, &silent), t + 5000);
	assert_false(silent);
	fuse_holder_leave(g, 3);
	/* Silent again (on connection 12, at the same progress): only a
	 * connection newer than 12 says it is back. */
	assert_true(fuse_holder_join(g, 3, 50, 12, t + 9000));
	fuse_holder_silent(g, 3, 50, 0);
	(void)fuse_holder_look(g, 3, 50, 12, t + 9000, &silent);
	assert_true(silent);
	(void)fuse_holder_look(g, 3, 50, 13, t + 9100, &silent);
	assert_false(silent);
	fuse_holder_leave(g, 3);
	fuse_grant_free(g);
}

/* A wait revoked for silence marks its holder silent: later recalls of
 * its other directories revoke at once, until a command of it applies
 * (then a recall gives it the whole time again). Other holders and a
 * revoke at the cap (a busy holder) are not marked. */
static void test_holder_silent_until_it_comes_back(void **state)
{
	struct fuse_grant *g;
	struct fuse_reclaim r;
	unsigned recalls = 0;
	int64_t t = 4000, revoked = -1;
	uint64_t progress = 1;
	bool silent;

	(void)state;
	assert_int_equal(fuse_grant_new(&g, false), 0);
	revoked_for_silence(g, t);
	/* Seconds later, nothing of it applied: silent. */
	assert_true(fuse_holder_join(g, 3, 50, 9, t + 5000));
	(void)fuse_holder_look(g, 3, 50, 9, t + 5000, &silent);
	assert_true(silent);
	fuse_holder_leave(g, 3);
	/* Another holder is not. */
	assert_true(fuse_holder_join(g, 2, 50, 9, t + 5000));
	(void)fuse_holder_look(g, 2, 50, 9, t + 5000, &silent);
	assert_false(silent);
	fuse_holder_leave(g, 2);
	/* Node 3 came back: one of its commands applied. */
	assert_true(fuse_holder_join(g, 3, 51, 9, t + 6000));
	assert_int_equal(fuse_holder_look(g, 3, 51, 9, t + 6000, &silent), t + 6000);
	assert_false(silent);
	fuse_holder_leave(g, 3);
	/* A mark for an older progress than the record's changes nothing. */
	fuse_holder_silent(g, 3, 50, 0);
	assert_true(fuse_holder_join(g, 3, 51, 9, t + 7000));
	(void)fuse_holder_look(g, 3, 51, 9, t + 7000, &silent);
	assert_false(silent);
	fuse_holder_leave(g, 3);
	/* A revoke at the cap says capped (the caller marks nothing). */
	fuse_reclaim_start(&r, 0);
	for (t = 0; t <= FUSE_REVOKE_CAP_MS && revoked < 0; t += 10)
		if (fuse_reclaim_step(&r, 2, 7, progress++, 0, t, t) == FUSE_RECLAIM_REVOKE)
			revoked = t;
	assert_int_equal(revoked, FUSE_REVOKE_CAP_MS);
	assert_true(r.capped);
	/* A revoke for silence does not. */
	fuse_reclaim_start(&r, 0);
	assert_int_equal(run_clock(&r, 2, 7, 9, 0, 2 * FUSE_REVOKE_AFTER_MS, &recalls),
			 FUSE_REVOKE_AFTER_MS);
	assert_false(r.capped);
	fuse_grant_free(g);
}

/* A table full of holders being waited for counts no further one (its
 * wait keeps a clock of its own); once one is left alone its slot is
 * taken. */
static void test_holder_table_full(void **state)
{
	struct fuse_grant *g;
	bool silent;

	(void)state;
	assert_int_equal(fuse_grant_new(&g, false), 0);
	for (uint32_t h = 1; h <= FUSE_HOLDERS_MAX; h++)
		assert_true(fuse_holder_join(g, h, 5, 9, 100));
	assert_false(fuse_holder_join(g, 1000, 5, 9, 100));
	assert_int_equal(fuse_holder_look(g, 1000, 5, 9, 700, &silent), 700);
	assert_false(silent);
	fuse_holder_leave(g, 7);
	assert_true(fuse_holder_join(g, 1000, 5, 9, 800));
	assert_int_equal(fuse_holder_look(g, 1000, 5, 9, 900, &silent), 800);
	for (uint32_t h = 1; h <= FUSE_HOLDERS_MAX; h++)
		if (h != 7)
			fuse_holder_leave(g, h);
	fuse_holder_leave(g, 1000);
	fuse_grant_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_asks_after_enough_changes),
	    cmocka_unit_test(test_slow_changes_never_ask),
	    cmocka_unit_test(test_backoff_after_recall),
	    cmocka_unit_test(test_backoff_caps_and_resets),
	    cmocka_unit_test(test_full_table),
	    cmocka_unit_test(test_idle_when_mount_quiet),
	    cmocka_unit_test(test_idle_when_mount_busy),
	    cmocka_unit_test(test_reclaim_recalls_then_revokes),
	    cmocka_unit_test(test_reclaim_progress_and_cap),
	    cmocka_unit_test(test_reclaim_new_holder_starts_afresh),
	    cmocka_unit_test(test_reclaim_holder_back_starts_afresh),
	    cmocka_unit_test(test_reclaim_busy_holder_gets_longer),
	    cmocka_unit_test(test_reclaim_clock_starts_again_on_a_new_connection),
	    cmocka_unit_test(test_holder_parallel_waits_share_a_clock),
	    cmocka_unit_test(test_holder_silent_until_it_comes_back),
	    cmocka_unit_test(test_holder_back_on_a_new_connection),
	    cmocka_unit_test(test_holder_table_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
