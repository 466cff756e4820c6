/* fs_release.c — proposing this node's Releases of orphans, batched. */
#include "fs_release.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_node.h"
#include "sm.h"

/* Ids per Release command: 64 KiB of ids keeps the entry far below the
 * transport's frame limit; more wait for the next command. */
#define BATCH_MAX 8192
/* The state machine's bound on the voters a Release may name (sm_impl.h). */
#define VOTERS_MAX 63
/* How long the first queued id waits for others to join its command: an
 * rm -r unlinks one file per commit, as fast as a Release would commit, so
 * without a wait every Release would carry one id (measured: 1.3 Release
 * commands per unlink with three nodes). Nothing waits for a Release. */
#define LINGER_MS 100

struct fs_release {
	struct fs_node *fsn;
	struct sm *sm;
	uint32_t self;
	uint32_t voters[VOTERS_MAX];
	size_t n_voters;

	pthread_mutex_t mu; /* guards everything below */
	fs_holds_fn holds;
	void *holds_arg;
	uint64_t *queue; /* ids waiting for the next command */
	size_t n, cap;
	uint64_t *sent; /* the ids of the command in flight */
	size_t n_sent;
	bool in_flight;
	bool stop;
	bool scan; /* the start barrier passed: list the orphans */
	bool rescan; /* the voters changed: release every unheld orphan again */
	uint64_t proposed;
	pthread_cond_t cv; /* something queued, the command in flight done, stop */
	pthread_t thread;  /* proposes the batches */
};

static void sent_done(void *arg, int err);

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Takes up to BATCH_MAX distinct ids off the queue into r->sent. Call with
 * mu held and nothing in flight; false if the queue is empty. */
static bool take_batch(struct fs_release *r)
{
	size_t i, n = 0;

	if (r->n == 0)
		return false;
	qsort(r->queue, r->n, sizeof(*r->queue), cmp_u64);
	for (i = 0; i < r->n; i++) {
		if (n > 0 && r->queue[i] == r->sent[n - 1])
			continue; /* queued twice: released once */
		if (n == BATCH_MAX)
			break; /* the rest waits for the next command */
		r->sent[n++] = r->queue[i];
	}
	memmove(r->queue, r->queue + i, (r->n - i) * sizeof(*r->queue));
	r->n -= i;
	r->n_sent = n;
	r->in_flight = true;
	r->proposed += n;
	return true;
}

/* Proposes r->sent (mu not held: the completion may run at once). */
static void propose_sent(struct fs_release *r)
{
	Fspb__Command c = FSPB__COMMAND__INIT;
	Fspb__Release rel = FSPB__RELEASE__INIT;
	uint32_t voters[VOTERS_MAX];
	int rc;

	rel.node = r->self;
	rel.ids = r->sent;
	rel.n_ids = r->n_sent;
	pthread_mutex_lock(&r->mu); /* fs_release_on_members may change them */
	memcpy(voters, r->voters, r->n_voters * sizeof(*voters));
	rel.n_voters = r->n_voters;
	pthread_mutex_unlock(&r->mu);
	rel.voters = voters;
	c.time_ns = fs_node_now();
	c.op_case = FSPB__COMMAND__OP_RELEASE;
	c.release = &rel;
	rc = fs_node_propose(r->fsn, &c, sent_done, r);
	if (rc)
		sent_done(r, rc);
}

static void sent_done(void *arg, int err)
{
	struct fs_release *r = arg;

	pthread_mutex_lock(&r->mu);
	r->in_flight = false;
	if (err == ETIMEDOUT) {
		/* No quorum in time: keep them for the next command. (EIO: the
		 * node stopped; its next start releases what is left.) */
		size_t need = r->n + r->n_sent;

		if (need > r->cap) {
			uint64_t *q = realloc(r->queue, need * sizeof(*q));

			if (q) {
				r->queue = q;
				r->cap = need;
			}
		}
		if (need <= r->cap) {
			memcpy(r->queue + r->n, r->sent, r->n_sent * sizeof(*r->sent));
			r->n = need;
		}
	} else if (err && err != EIO && err != ENOENT && err != EBUSY && err != EISDIR) {
		/* (ENOENT and the like: none of them was an orphan any more,
		 * e.g. released twice; nothing to do.) */
		fprintf(stderr, "fs_release: Release of %zu orphans by node %u: %s\n", r->n_sent,
			r->self, strerror(err));
	}
	r->n_sent = 0;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

struct id_list {
	uint64_t *v;
	size_t n, cap;
};

static int collect(void *arg, uint64_t id)
{
	struct id_list *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		uint64_t *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = id;
	return 0;
}

/* Releases every orphan this node holds no handle on and did not release
 * yet (batcher thread: a walk of every object, kept off the loop thread). */
static void scan_orphans(struct fs_release *r, bool again)
{
	struct id_list l = {0};
	/* Listed first, released after: sm_each_orphan holds the read lock,
	 * which its callback must not take again. */
	int rc = sm_each_orphan(r->sm, collect, &l);

	if (rc)
		fprintf(stderr, "fs_release: node %u: list the orphans: %s\n", r->self,
			strerror(-rc));
	for (size_t i = 0; i < l.n; i++)
		if (again || sm_orphan_released_by(r->sm, l.v[i], r->self) == 0)
			fs_release_id(r, l.v[i]);
	free(l.v);
}

/* One command in flight at a time; the first id queued waits LINGER_MS for
 * company (less when a full batch is queued). */
static void *batcher(void *arg)
{
	struct fs_release *r = arg;
	struct timespec until;

	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (!r->stop && !r->scan && !r->rescan && (r->n == 0 || r->in_flight))
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->stop)
			break;
		if (r->scan || r->rescan) {
			bool again = r->rescan;

			r->scan = r->rescan = false;
			pthread_mutex_unlock(&r->mu);
			scan_orphans(r, again);
			pthread_mutex_lock(&r->mu);
			continue;
		}
		deadline_in(&until, LINGER_MS);
		while (!r->stop && r->n < BATCH_MAX &&
		       pthread_cond_timedwait(&r->cv, &r->mu, &until) != ETIMEDOUT)
			;
		if (r->stop || !take_batch(r))
			continue;
		pthread_mutex_unlock(&r->mu);
		propose_sent(r);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

void fs_release_id(struct fs_release *r, uint64_t id)
{
	fs_holds_fn holds;
	void *arg;

	pthread_mutex_lock(&r->mu);
	holds = r->holds;
	arg = r->holds_arg;
	pthread_mutex_unlock(&r->mu);
	/* An open racing with this check sees the orphan unheld and fails
	 * (ffs_open_inc), so it cannot slip in between. */
	if (!id || (holds && holds(arg, id)))
		return;
	pthread_mutex_lock(&r->mu);
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 64;
		uint64_t *q = realloc(r->queue, cap * sizeof(*q));

		if (!q) {
			pthread_mutex_unlock(&r->mu);
			fprintf(stderr, "fs_release: queue the Release of %016llx: out of memory\n",
				(unsigned long long)id);
			return;
		}
		r->queue = q;
		r->cap = cap;
	}
	r->queue[r->n++] = id;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void fs_release_on_members(void *arg, const uint64_t *voters, size_t n)
{
	struct fs_release *r = arg;

	if (n == 0 || n > VOTERS_MAX) {
		fprintf(stderr, "fs_release: node %u: %zu voters (1..%d supported): kept the old\n",
			r->self, n, VOTERS_MAX);
		return;
	}
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < n; i++)
		r->voters[i] = (uint32_t)voters[i];
	r->n_voters = n;
	r->rescan = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void on_orphan(void *arg, uint64_t id)
{
	fs_release_id(arg, id);
}

static void start_done(void *arg, int err)
{
	struct fs_release *r = arg;

	if (err == ETIMEDOUT) {
		/* No quorum yet: ask again (each try waits for its timeout). */
		fs_release_start(r);
		return;
	}
	if (err)
		return; /* the node stopped: the next start does it */
	pthread_mutex_lock(&r->mu);
	r->scan = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void fs_release_start(struct fs_release *r)
{
	int rc = fs_node_barrier(r->fsn, start_done, r);

	if (rc)
		fprintf(stderr, "fs_release: start barrier: %s\n", strerror(rc));
}

int fs_release_new(struct fs_node *f, uint32_t self, const uint32_t *voters, size_t n_voters,
		   struct fs_release **out)
{
	struct fs_release *r;

	if (n_voters == 0 || n_voters > VOTERS_MAX) {
		fprintf(stderr, "fs_release: node %u: %zu voters (1..%d supported)\n", self,
			n_voters, VOTERS_MAX);
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->sent = malloc(BATCH_MAX * sizeof(*r->sent));
	if (!r->sent) {
		free(r);
		return -ENOMEM;
	}
	r->fsn = f;
	r->sm = fs_node_sm(f);
	r->self = self;
	memcpy(r->voters, voters, n_voters * sizeof(*voters));
	r->n_voters = n_voters;
	pthread_condattr_t ca;
	int rc;

	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	rc = -pthread_create(&r->thread, NULL, batcher, r);
	if (rc) {
		fprintf(stderr, "fs_release: node %u: start the batching thread: %s\n", self,
			strerror(-rc));
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		free(r->sent);
		free(r);
		return rc;
	}
	sm_set_orphan_hook(r->sm, on_orphan, r);
	*out = r;
	return 0;
}

void fs_release_free(struct fs_release *r)
{
	if (!r)
		return;
	sm_set_orphan_hook(r->sm, NULL, NULL);
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r->queue);
	free(r->sent);
	free(r);
}

void fs_release_set_holder(struct fs_release *r, fs_holds_fn holds, void *arg)
{
	pthread_mutex_lock(&r->mu);
	r->holds = holds;
	r->holds_arg = arg;
	pthread_mutex_unlock(&r->mu);
}

uint64_t fs_release_proposed(struct fs_release *r)
{
	uint64_t n;

	pthread_mutex_lock(&r->mu);
	n = r->proposed;
	pthread_mutex_unlock(&r->mu);
	return n;
}
