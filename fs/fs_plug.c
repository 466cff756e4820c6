/* fs_plug.c — the held proposals of one node's mount, in proposal order,
 * and the flusher thread that starts them once they lingered too long. */
#include "fs_plug.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* More than this many held, or bytes, and they go at once: the point is
 * one log write for a burst, not a queue (and fuse_write.c admits at most
 * 64 writes of one file in flight: a writer must not block on held ones). */
#define HOLD_MAX 32u
#define HOLD_MAX_BYTES (256u << 10)

struct held {
	struct held *next;
	uint8_t *buf;
	size_t len;
	void *arg;
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
	uint64_t first_ns; /* when the oldest held one was proposed */
	bool on, stop;
	pthread_t flusher;
	_Atomic uint64_t stats[6];
};

enum { ST_HELD, ST_EAGER, ST_FLUSH, ST_LIMIT, ST_LINGER, ST_MERGED };

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Starts every held proposal, oldest first (under mu, so nothing else
 * starts in between). The ones that failed are returned as a list for
 * fail_all, outside mu. */
static struct held *start_all(struct fs_plug *p, int why)
{
	struct held *failed = NULL, **tail = &failed, *h = p->head;
	unsigned n = 0;

	while (h) {
		struct held *next = h->next;
		int rc = p->start(p->ctx, h->buf, h->len, h->arg);

		free(h->buf);
		h->buf = NULL;
		if (rc) {
			/* The errno travels in len: the buffer is gone. */
			h->len = (size_t)rc;
			h->next = NULL;
			*tail = h;
			tail = &h->next;
		} else {
			free(h);
		}
		h = next;
		n++;
	}
	p->head = p->tail = NULL;
	atomic_store(&p->count, 0);
	p->bytes = 0;
	if (n)
		atomic_fetch_add(&p->stats[why], n);
	return failed;
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

/* The flusher: starts what has lingered for linger_ns. */
static void *flusher(void *arg)
{
	struct fs_plug *p = arg;

	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		struct held *failed;
		uint64_t now = mono_ns();

		if (!p->head) {
			pthread_cond_wait(&p->cv, &p->mu);
			continue;
		}
		if (now < p->first_ns + p->linger_ns) {
			uint64_t due = p->first_ns + p->linger_ns;
			struct timespec ts = {(time_t)(due / 1000000000u),
					      (long)(due % 1000000000u)};

			pthread_cond_timedwait(&p->cv, &p->mu, &ts);
			continue;
		}
		failed = start_all(p, ST_LINGER);
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
	failed = start_all(p, ST_FLUSH);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	fail_all(p, failed);
	if (p->linger_ns)
		pthread_join(p->flusher, NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

int fs_plug_propose(struct fs_plug *p, uint8_t *buf, size_t len, void *arg, bool lazy)
{
	struct held *failed = NULL, *h;
	int rc = 0;

	pthread_mutex_lock(&p->mu);
	if (lazy && p->on && p->linger_ns && (h = malloc(sizeof(*h)))) {
		*h = (struct held){NULL, buf, len, arg};
		if (p->tail)
			p->tail->next = h;
		else
			p->head = h;
		p->tail = h;
		p->bytes += len;
		atomic_fetch_add(&p->stats[ST_HELD], 1);
		if (atomic_fetch_add(&p->count, 1) == 0) {
			p->first_ns = mono_ns();
			pthread_cond_signal(&p->cv);
		}
		if (atomic_load(&p->count) >= HOLD_MAX || p->bytes >= HOLD_MAX_BYTES)
			failed = start_all(p, ST_LIMIT);
	} else {
		/* Nothing held may be overtaken. */
		failed = start_all(p, ST_EAGER);
		rc = p->start(p->ctx, buf, len, arg);
		free(buf);
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
	failed = start_all(p, ST_FLUSH);
	pthread_mutex_unlock(&p->mu);
	fail_all(p, failed);
}

void fs_plug_enable(struct fs_plug *p, bool on)
{
	struct held *failed = NULL;

	pthread_mutex_lock(&p->mu);
	p->on = on;
	if (!on)
		failed = start_all(p, ST_FLUSH);
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
}
