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
#include "mono_ms.h"

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
/* How long an id stays queued at least before this node decides to release
 * it: an open whose lookup found the file just before a rename or unlink
 * took its last name reaches fs_release_pin this much later at most and
 * still gets the file, as on a local filesystem (the kernel retries an
 * ESTALE open only once, with a fresh lookup that can race the same way
 * with the next rename). */
#define GRACE_MS 50

/* A queued id: when it was queued, and whether a Release of it was
 * proposed before (timed out: it may still apply, so no open may pin it). */
struct queued {
	uint64_t id;
	int64_t at_ms;
	bool tried;
};

/* Opens in progress on one id (fs_release_pin). */
struct pin {
	uint64_t id;
	unsigned count;
	bool wanted; /* its release was put off for the pin: queue it after */
};

struct fs_release {
	struct fs_node *fsn;
	struct sm *sm;
	uint32_t self;
	uint32_t voters[VOTERS_MAX];
	size_t n_voters;

	pthread_mutex_t mu; /* guards everything below */
	fs_holds_fn holds;
	void *holds_arg;
	struct queued *queue; /* ids waiting for the next command, oldest first */
	size_t n, cap;
	uint64_t *sent; /* the ids of the command in flight (decided) */
	size_t n_sent;
	struct pin *pins; /* opens in progress (few: one per FUSE thread) */
	size_t n_pins, cap_pins;
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

/* Appends id to the queue, stamped now (so the queue stays oldest first).
 * Call with mu held. */
static int enqueue(struct fs_release *r, uint64_t id, bool tried)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 64;
		struct queued *q = realloc(r->queue, cap * sizeof(*q));

		if (!q) {
			fprintf(stderr, "fs_release: queue the Release of %016llx: out of memory\n",
				(unsigned long long)id);
			return -ENOMEM;
		}
		r->queue = q;
		r->cap = cap;
	}
	r->queue[r->n++] = (struct queued){.id = id, .at_ms = mono_ms(), .tried = tried};
	return 0;
}

/* The opens in progress on id, or NULL. Call with mu held. */
static struct pin *pin_of(struct fs_release *r, uint64_t id)
{
	for (size_t i = 0; i < r->n_pins; i++)
		if (r->pins[i].id == id)
			return &r->pins[i];
	return NULL;
}

/* Whether this node decided to release id and has not seen the Release
 * apply yet: it is in the command in flight, or in one that timed out and
 * may still commit. Call with mu held. */
static bool deciding(struct fs_release *r, uint64_t id)
{
	if (r->in_flight && bsearch(&id, r->sent, r->n_sent, sizeof(id), cmp_u64))
		return true;
	for (size_t i = 0; i < r->n; i++)
		if (r->queue[i].id == id && r->queue[i].tried)
			return true;
	return false;
}

/* The decision: takes the ids queued at least GRACE_MS ago into r->sent,
 * up to BATCH_MAX distinct, leaving out those this node holds a handle on
 * (their last close releases them) and those an open is pinning (released
 * when the pin goes, unless the open then holds them). Pins and this check
 * are under mu, so an open either pins first or finds its id decided. Call
 * with mu held and nothing in flight; false if nothing is to be proposed. */
static bool take_batch(struct fs_release *r)
{
	int64_t due = mono_ms() - GRACE_MS;
	size_t i, k = 0, n = 0;

	for (i = 0; i < r->n && k < BATCH_MAX && r->queue[i].at_ms <= due; i++)
		r->sent[k++] = r->queue[i].id;
	memmove(r->queue, r->queue + i, (r->n - i) * sizeof(*r->queue));
	r->n -= i;
	qsort(r->sent, k, sizeof(*r->sent), cmp_u64);
	for (i = 0; i < k; i++) {
		uint64_t id = r->sent[i];
		struct pin *p;

		if (n > 0 && id == r->sent[n - 1])
			continue; /* queued twice: released once */
		if ((p = pin_of(r, id))) {
			p->wanted = true;
			continue;
		}
		if (r->holds && r->holds(r->holds_arg, id))
			continue;
		r->sent[n++] = id;
	}
	r->n_sent = n;
	if (n == 0)
		return false;
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
		/* No quorum in time: keep them for the next command, marked
		 * as tried (the command may still commit: no open pins them).
		 * (EIO: the node stopped; its next start releases what is
		 * left.) */
		for (size_t i = 0; i < r->n_sent; i++)
			if (enqueue(r, r->sent[i], true))
				break;
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

/* When the batcher next takes a batch: the oldest queued id waits LINGER_MS
 * for company, or only its grace when a full batch is queued. Call with mu
 * held and the queue not empty. */
static struct timespec batch_due(const struct fs_release *r)
{
	int64_t due = r->queue[0].at_ms + (r->n >= BATCH_MAX ? GRACE_MS : LINGER_MS);

	return (struct timespec){.tv_sec = due / 1000, .tv_nsec = (due % 1000) * 1000000};
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
		for (;;) {
			until = batch_due(r);
			if (r->stop || pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT)
				break;
		}
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
	/* Decided later, by take_batch: whether this node holds it then. */
	if (!id)
		return;
	pthread_mutex_lock(&r->mu);
	if (enqueue(r, id, false) == 0)
		pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

int fs_release_pin(struct fs_release *r, uint64_t id)
{
	struct pin *p;
	int rc = 0;

	if (!r || !id)
		return 0;
	pthread_mutex_lock(&r->mu);
	if (deciding(r, id) || sm_orphan_released_by(r->sm, id, r->self) == 1) {
		rc = -ESTALE;
	} else if ((p = pin_of(r, id))) {
		p->count++;
	} else if (r->n_pins == r->cap_pins &&
		   !(p = realloc(r->pins, (r->cap_pins ? 2 * r->cap_pins : 16) * sizeof(*p)))) {
		fprintf(stderr, "fs_release: node %u: pin %016llx for an open: out of memory\n",
			r->self, (unsigned long long)id);
		rc = -ENOMEM;
	} else {
		if (r->n_pins == r->cap_pins) {
			r->pins = p;
			r->cap_pins = r->cap_pins ? 2 * r->cap_pins : 16;
		}
		r->pins[r->n_pins++] = (struct pin){.id = id, .count = 1};
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

void fs_release_unpin(struct fs_release *r, uint64_t id)
{
	struct pin *p;

	if (!r || !id)
		return;
	pthread_mutex_lock(&r->mu);
	p = pin_of(r, id);
	if (p && --p->count == 0) {
		bool wanted = p->wanted;

		*p = r->pins[--r->n_pins];
		/* Put off for the open: decided again (held now, or not if
		 * the open failed). */
		if (wanted && enqueue(r, id, false) == 0)
			pthread_cond_signal(&r->cv);
	}
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
	free(r->pins);
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
