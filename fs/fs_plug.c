/* fs_plug.c — the held proposals of one node's mount, in proposal order,
 * and the flusher thread that starts them once they lingered too long. */
#include "fs_plug.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* More than this many held, or bytes, and they go at once: the point is
 * one log write for a burst, not a queue (and fuse_write.c admits at most
 * 64 writes of one file in flight: a writer must not block on held ones). */
#define HOLD_MAX 32u
#define HOLD_MAX_BYTES (256u << 10)
/* A unit open longer than FS_PLUG_UNIT_HOLD_MS (a file written slowly, or
 * kept open) no longer keeps the linger from starting its commands: its
 * close then waits for their commit (fs_plug_flush_unit says false). */
#define UNIT_HOLD_NS ((uint64_t)FS_PLUG_UNIT_HOLD_MS * 1000000u)

struct held {
	struct held *next;
	uint8_t *buf;
	size_t len;
	void *arg;
	uint64_t serial; /* its place among every proposal made (fs_plug_unit_begin) */
	uint64_t ns;	 /* when it was proposed */
};

/* An open unit (fs_plug_unit_begin): its mark and when it began. */
struct unit {
	uint64_t mark, ns;
};

struct fs_plug {
	fs_plug_start_fn start;
	fs_plug_fail_fn fail;
	void *ctx;
	uint64_t linger_ns;
	pthread_mutex_t mu; /* the list, and the order of every start */
	pthread_cond_t cv;  /* the flusher: something was held, or stop */
	struct held *head, *tail;
	atomic_uint count; /* held (read without mu by a flush with nothing to do) */
	size_t bytes;
	/* Open units, oldest first (marks only grow): the linger starts
	 * nothing proposed since the oldest's mark while it is young. */
	struct unit *units;
	size_t nunits, units_cap;
	_Atomic uint64_t serial; /* proposals made so far (the next one's serial) */
	bool on, stop;
	/* The flusher waits with nothing held and no tick due: only then
	 * does a proposal wake it (flusher()). */
	bool idle;
	pthread_t flusher;
	_Atomic uint64_t stats[11];
};

enum {
	ST_HELD,
	ST_EAGER,
	ST_FLUSH,
	ST_LIMIT,
	ST_LINGER,
	ST_MERGED,
	ST_ENTRIES,
	ST_BATCHES,
	ST_UNITS,
	ST_UNITS_SPLIT,
	ST_WAKES
};

/* No unit to keep together (start_all). */
#define NO_UNIT UINT64_MAX

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Starts hs[0..n) as one proposal and frees their buffers; the ones that
 * failed are appended to *failed (the errno in len: the buffer is gone),
 * the others freed. */
static void start_batch(struct fs_plug *p, struct held **hs, unsigned n, struct held ***failed)
{
	struct fs_plug_cmd cmds[FS_PLUG_BATCH_MAX] = {{0}};
	int rc;

	for (unsigned i = 0; i < n; i++)
		cmds[i] = (struct fs_plug_cmd){hs[i]->buf, hs[i]->len, hs[i]->arg};
	rc = p->start(p->ctx, cmds, n);
	atomic_fetch_add(&p->stats[ST_ENTRIES], 1);
	if (n > 1)
		atomic_fetch_add(&p->stats[ST_BATCHES], 1);
	for (unsigned i = 0; i < n; i++) {
		struct held *h = hs[i];

		free(h->buf);
		h->buf = NULL;
		if (rc) {
			h->len = (size_t)rc;
			h->next = NULL;
			**failed = h;
			*failed = &h->next;
		} else {
			free(h);
		}
	}
}

/* Starts the held proposals older than end (NO_UNIT: all), oldest first
 * (under mu, so nothing else starts in between), as few proposals as the
 * batch limits allow, never cutting inside the unit (those of serial >=
 * unit) when it fits one. The ones that failed are returned as a list for
 * fail_all, outside mu; *whole: the unit went out as one proposal (or was
 * empty). */
static struct held *start_upto(struct fs_plug *p, int why, uint64_t end, uint64_t unit,
			       bool *whole)
{
	struct held *failed = NULL, **tail = &failed, *h;
	struct held *batch[FS_PLUG_BATCH_MAX];
	unsigned n = 0, total = 0, un = 0;
	size_t bytes = 0, ub = 0;
	bool fits;

	for (h = p->head; h; h = h->next)
		if (h->serial >= unit) {
			un++;
			ub += h->len;
		}
	fits = un <= 1 || (un <= FS_PLUG_BATCH_MAX && ub <= FS_PLUG_BATCH_BYTES);
	h = p->head;
	while (h && h->serial < end) {
		struct held *next = h->next;
		bool cut = n == FS_PLUG_BATCH_MAX || (n && bytes + h->len > FS_PLUG_BATCH_BYTES);

		/* The unit's first: a batch of its own unless the ones before
		 * it leave room for all of it. */
		if (n && fits && h->serial >= unit && batch[n - 1]->serial < unit &&
		    (n + un > FS_PLUG_BATCH_MAX || bytes + ub > FS_PLUG_BATCH_BYTES))
			cut = true;
		if (cut) {
			start_batch(p, batch, n, &tail);
			n = 0;
			bytes = 0;
		}
		batch[n++] = h;
		bytes += h->len;
		p->bytes -= h->len;
		total++;
		h = next;
	}
	if (n)
		start_batch(p, batch, n, &tail);
	p->head = h;
	if (!h)
		p->tail = NULL;
	atomic_fetch_sub(&p->count, total);
	if (total)
		atomic_fetch_add(&p->stats[why], total);
	if (whole)
		*whole = fits;
	return failed;
}

static struct held *start_all(struct fs_plug *p, int why, uint64_t unit, bool *whole)
{
	return start_upto(p, why, NO_UNIT, unit, whole);
}

static void fail_all(struct fs_plug *p, struct held *h)
{
	while (h) {
		struct held *next = h->next;

		p->fail(p->ctx, h->arg, (int)h->len);
		free(h);
		h = next;
	}
}

static void wait_until(struct fs_plug *p, uint64_t due)
{
	struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};

	pthread_cond_timedwait(&p->cv, &p->mu, &ts);
}

/* The flusher: starts what has lingered for linger_ns, but for the
 * commands of an open unit younger than UNIT_HOLD_NS: those wait for the
 * unit's end (a file's close) or that age.
 *
 * Once it started more than one command it ticks: it looks again one
 * linger later unasked, and waits for the linger of whatever is held
 * then as before (what goes out together is unchanged; starting the
 * young ones at the tick cut batches: 26 % more entries at one command
 * per 500 us). Only an idle flusher is woken by a proposal: one that
 * found nothing at a tick, or whose last start was a lone command
 * (commands further apart than the linger: a tick would mostly find
 * nothing, one wake-up more per command). In a dense stream (mkdir after
 * mkdir) the FUSE threads proposing so wake nobody: before, the first
 * command after each start signalled the flusher from under mu — a futex
 * wake on the request's path before its reply, the flusher often
 * preempting that thread only to block on mu (bench/fs/README.md,
 * "Session 11 (mkdir)"). */
static void *flusher(void *arg)
{
	struct fs_plug *p = arg;
	uint64_t tick = 0; /* when to look again unasked (0: idle) */

	/* Its own name, apart from the FUSE workers it serves: for top -H,
	 * perf, and bench/fs/lib.sh's CPU per thread kind. */
	pthread_setname_np(pthread_self(), "fs-plug");
	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		struct held *failed;
		uint64_t now = mono_ns(), end = NO_UNIT, young = 0, due;

		if (!p->head) {
			if (tick && now < tick) {
				wait_until(p, tick);
				continue;
			}
			tick = 0;
			p->idle = true;
			pthread_cond_wait(&p->cv, &p->mu);
			p->idle = false;
			continue;
		}
		due = p->head->ns + p->linger_ns;
		if (now < due) {
			wait_until(p, due);
			continue;
		}
		/* The oldest unit still young: units are in order of birth, so
		 * one file kept open past the hold (a log being written) lets
		 * the linger take its own commands, not those of every file
		 * created after it. */
		for (unsigned i = 0; i < p->nunits; i++)
			if (now < p->units[i].ns + UNIT_HOLD_NS) {
				end = p->units[i].mark;
				young = p->units[i].ns;
				break;
			}
		if (p->head->serial >= end) {
			wait_until(p, young + UNIT_HOLD_NS);
			continue;
		}
		unsigned before = atomic_load(&p->count);

		failed = start_upto(p, ST_LINGER, end, NO_UNIT, NULL);
		tick = before - atomic_load(&p->count) > 1 ? mono_ns() + p->linger_ns : 0;
		pthread_mutex_unlock(&p->mu);
		fail_all(p, failed);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int fs_plug_new(unsigned linger_us, fs_plug_start_fn start, fs_plug_fail_fn fail, void *ctx,
		struct fs_plug **out)
{
	struct fs_plug *p = calloc(1, sizeof(*p));
	pthread_condattr_t ca;

	if (!p)
		return -ENOMEM;
	p->start = start;
	p->fail = fail;
	p->ctx = ctx;
	p->linger_ns = (uint64_t)linger_us * 1000u;
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (linger_us && pthread_create(&p->flusher, NULL, flusher, p)) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		free(p);
		return -EAGAIN;
	}
	*out = p;
	return 0;
}

void fs_plug_free(struct fs_plug *p)
{
	struct held *failed;

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	p->on = false;
	failed = start_all(p, ST_FLUSH, NO_UNIT, NULL);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	fail_all(p, failed);
	if (p->linger_ns)
		pthread_join(p->flusher, NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->units);
	free(p);
}

int fs_plug_propose(struct fs_plug *p, uint8_t *buf, size_t len, void *arg, bool lazy)
{
	struct held *failed = NULL, *h = malloc(sizeof(*h));
	bool hold = lazy && p->on && p->linger_ns;
	int rc = 0;

	if (!h) {
		free(buf);
		return ENOMEM;
	}
	pthread_mutex_lock(&p->mu);
	*h = (struct held){NULL, buf, len, arg, atomic_fetch_add(&p->serial, 1), mono_ns()};
	if (p->tail)
		p->tail->next = h;
	else
		p->head = h;
	p->tail = h;
	p->bytes += len;
	atomic_fetch_add(&p->count, 1);
	if (hold) {
		atomic_fetch_add(&p->stats[ST_HELD], 1);
		if (p->idle) {
			p->idle = false; /* one wake-up is enough */
			atomic_fetch_add(&p->stats[ST_WAKES], 1);
			pthread_cond_signal(&p->cv);
		}
		if (atomic_load(&p->count) >= HOLD_MAX || p->bytes >= HOLD_MAX_BYTES)
			failed = start_all(p, ST_LIMIT, NO_UNIT, NULL);
	} else {
		/* Nothing held may be overtaken: it starts with what is held
		 * (in the same proposal if there is room). */
		struct held **prev = &failed;

		failed = start_all(p, ST_EAGER, NO_UNIT, NULL);
		atomic_fetch_sub(&p->stats[ST_EAGER], 1); /* counts held ones only */
		/* This one's failure is the caller's to report, not fail's. */
		while (*prev && *prev != h)
			prev = &(*prev)->next;
		if (*prev) {
			*prev = h->next;
			rc = (int)h->len;
			free(h);
		}
	}
	pthread_mutex_unlock(&p->mu);
	fail_all(p, failed);
	return rc;
}

bool fs_plug_merge_newest(struct fs_plug *p, fs_plug_merge_fn merge, void *mctx)
{
	struct held *h;
	uint8_t *buf;
	size_t len;
	bool done = false;

	pthread_mutex_lock(&p->mu);
	h = p->tail;
	if (h && merge(mctx, h->arg, h->buf, h->len, &buf, &len)) {
		p->bytes = p->bytes - h->len + len;
		free(h->buf);
		h->buf = buf;
		h->len = len;
		atomic_fetch_add(&p->stats[ST_MERGED], 1);
		done = true;
	}
	pthread_mutex_unlock(&p->mu);
	return done;
}

void fs_plug_flush(struct fs_plug *p)
{
	struct held *failed;

	if (!p || atomic_load(&p->count) == 0)
		return;
	pthread_mutex_lock(&p->mu);
	failed = start_all(p, ST_FLUSH, NO_UNIT, NULL);
	pthread_mutex_unlock(&p->mu);
	fail_all(p, failed);
}

uint64_t fs_plug_unit_begin(struct fs_plug *p)
{
	uint64_t mark;

	pthread_mutex_lock(&p->mu);
	mark = atomic_load(&p->serial);
	if (p->nunits == p->units_cap) {
		size_t cap = p->units_cap ? 2 * p->units_cap : 16;
		struct unit *u = realloc(p->units, cap * sizeof(*u));

		/* No room: the unit is not kept from the linger (its close
		 * may then wait; nothing else changes). */
		if (u) {
			p->units = u;
			p->units_cap = cap;
		}
	}
	if (p->nunits < p->units_cap)
		p->units[p->nunits++] = (struct unit){mark, mono_ns()};
	pthread_mutex_unlock(&p->mu);
	return mark;
}

/* Forgets the open unit of mark, if it is one (under mu). */
static void unit_drop(struct fs_plug *p, uint64_t mark)
{
	for (size_t i = 0; i < p->nunits; i++) {
		if (p->units[i].mark != mark)
			continue;
		memmove(&p->units[i], &p->units[i + 1], (p->nunits - i - 1) * sizeof(*p->units));
		p->nunits--;
		/* The flusher may wait for it. */
		if (i == 0)
			pthread_cond_signal(&p->cv);
		return;
	}
}

void fs_plug_unit_end(struct fs_plug *p, uint64_t mark)
{
	pthread_mutex_lock(&p->mu);
	unit_drop(p, mark);
	pthread_mutex_unlock(&p->mu);
}

bool fs_plug_flush_unit(struct fs_plug *p, uint64_t mark)
{
	struct held *failed;
	bool whole;

	pthread_mutex_lock(&p->mu);
	unit_drop(p, mark);
	/* Held ones are the newest proposals: the unit is all held iff the
	 * oldest held one is not younger than the mark (or none was made
	 * since). */
	whole = p->head ? p->head->serial <= mark : mark >= atomic_load(&p->serial);
	failed = start_all(p, ST_FLUSH, mark, whole ? &whole : NULL);
	pthread_mutex_unlock(&p->mu);
	atomic_fetch_add(&p->stats[whole ? ST_UNITS : ST_UNITS_SPLIT], 1);
	fail_all(p, failed);
	return whole;
}

void fs_plug_enable(struct fs_plug *p, bool on)
{
	struct held *failed = NULL;

	pthread_mutex_lock(&p->mu);
	p->on = on;
	if (!on)
		failed = start_all(p, ST_FLUSH, NO_UNIT, NULL);
	pthread_mutex_unlock(&p->mu);
	fail_all(p, failed);
}

void fs_plug_stats(struct fs_plug *p, struct fs_plug_stats *out)
{
	out->held = atomic_load(&p->stats[ST_HELD]);
	out->by_eager = atomic_load(&p->stats[ST_EAGER]);
	out->by_flush = atomic_load(&p->stats[ST_FLUSH]);
	out->by_limit = atomic_load(&p->stats[ST_LIMIT]);
	out->by_linger = atomic_load(&p->stats[ST_LINGER]);
	out->merged = atomic_load(&p->stats[ST_MERGED]);
	out->entries = atomic_load(&p->stats[ST_ENTRIES]);
	out->batches = atomic_load(&p->stats[ST_BATCHES]);
	out->units = atomic_load(&p->stats[ST_UNITS]);
	out->units_split = atomic_load(&p->stats[ST_UNITS_SPLIT]);
	out->wakes = atomic_load(&p->stats[ST_WAKES]);
}
