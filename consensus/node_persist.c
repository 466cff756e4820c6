/* node_persist.c — the persist thread: saves in Ready order, off the loop thread. */
#include "node_persist.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "blob.h"

struct node_persist {
	store *st;
	void (*wake)(void *arg);
	void *wake_arg;
	pthread_t thread;
	bool started;

	/* The store lock (node_persist.h). */
	pthread_mutex_t store_mu;

	/* Under mu: queued saves (head is the one under way while busy), the
	 * newest queued (tail: node_persist_defer adds to it), and the
	 * finished ones waiting for the loop. */
	pthread_mutex_t mu;
	pthread_cond_t cv;   /* the thread: work or stop */
	pthread_cond_t idle; /* the loop: the queue ran empty */
	persist_job *q_head, *q_tail;
	persist_job *d_head, *d_tail;
	bool stop;
	unsigned stall_ms; /* node_persist_stall_next */
	/* A save failed: every later one fails unsaved and sends nothing
	 * itself. Sticky: a later save's acknowledgement would cover the
	 * failed one's entries (Figure 2: only what is durable). The store
	 * latches a failed sync itself (store.h), but not every failure of
	 * a save (out of memory, a refused append): this covers them all. */
	int failed;
	bool sending; /* a finished batch is in neither list: its messages are being sent */
	bool woken;   /* the loop was woken and has not taken the done list since */

	/* node_persist_set_sender: direct sends, and when the loop may be
	 * left unwoken (node_persist_lazy). */
	int (*send)(void *arg, const raft_msg *m);
	void *send_arg;
	_Atomic bool lazy;
	_Atomic uint64_t commit_seen;
	_Atomic uint64_t n_direct; /* messages sent from this thread (tests) */

	raft_storage iface;
};

void node_persist_job_free(persist_job *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n_ents; i++)
		raft_blob_release(j->ents[i].data);
	free(j->ents);
	for (size_t i = 0; i < j->n_msgs; i++)
		raft_msg_free_contents(&j->msgs[i]);
	free(j->msgs);
	free(j);
}

static void hold(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Most saves written as one (group commit). */
#define PERSIST_BATCH 64

/* The saves from j on that can be written as one store_save: each one's
 * entries follow the previous ones' (a save that replaces a suffix
 * starts over, and is written on its own). Under mu. */
static size_t batch_len(const persist_job *j, size_t *n_ents)
{
	uint64_t next = 0; /* index the next entries must start at (0: any) */
	size_t len = 0;

	*n_ents = 0;
	for (; j && len < PERSIST_BATCH; j = j->next, len++) {
		if (j->n_ents) {
			if (next && j->ents[0].index != next)
				break;
			next = j->ents[j->n_ents - 1].index + 1;
			*n_ents += j->n_ents;
		}
	}
	return len ? len : 1;
}

/* Writes the first len saves from j as one batch under the store lock
 * (their entries in order, the newest hard state), then syncs it without
 * the lock, so the loop's reads of the store never wait for the disk. Saves queued while
 * the disk was busy share one sync, so a loop that no longer waits for
 * the disk does not cost a sync per Ready. The error text is copied
 * here: the store's message buffer belongs to whoever holds the lock
 * next. */
static void run_batch(node_persist *p, persist_job *j, size_t len, size_t n_ents, unsigned stall_ms)
{
	const raft_hard_state *hs = NULL;
	raft_entry none[1], *ents = none, *joined = NULL; /* none: no pointer arithmetic on NULL */
	persist_job *k = j, *with_ents = NULL;
	uint64_t t0 = uv_hrtime();
	size_t n_with = 0, at = 0;
	int rc;

	for (size_t i = 0; i < len; i++, k = k->next) {
		if (k->has_hs)
			hs = &k->hs;
		if (k->n_ents) {
			with_ents = k;
			n_with++;
		}
	}
	/* One save's entries (the common case) are written from where they
	 * are; several are joined into one array first. */
	if (n_with == 1) {
		ents = with_ents->ents;
	} else if (n_with > 1) {
		ents = joined = malloc(n_ents * sizeof(*ents));
		for (k = j; joined && k != with_ents->next; k = k->next) {
			if (k->n_ents)
				memcpy(joined + at, k->ents, k->n_ents * sizeof(*ents));
			at += k->n_ents;
		}
	}
	if (n_with > 1 && !joined) {
		rc = RAFT_ENOMEM;
		snprintf(j->err, sizeof(j->err), "saving %zu entries: out of memory", n_ents);
	} else {
		/* Written under the store lock, synced without it: the loop
		 * thread's store calls (the log for a lagging follower,
		 * status, snapshots) never wait behind a sync. */
		pthread_mutex_lock(&p->store_mu);
		rc = store_save_write(p->st, hs, ents, n_ents);
		if (rc < 0)
			snprintf(j->err, sizeof(j->err), "%s", store_errmsg(p->st));
		pthread_mutex_unlock(&p->store_mu);
		if (rc == 0)
			rc = store_save_sync(p->st, j->err, sizeof(j->err));
	}
	/* The store's own time: a test's hold below is reported apart
	 * (stalled_ms), so the loop's save timings stay true in stall tests. */
	j->save_ns = uv_hrtime() - t0;
	/* RAFTFS_TEST_STALL: a disk that takes this long to sync. */
	if (rc == 0 && stall_ms)
		hold(stall_ms);
	free(joined);
	j->stalled_ms = stall_ms;
	k = j;
	for (size_t i = 0; i < len; i++, k = k->next) {
		k->rc = rc;
		if (k != j && rc < 0)
			memcpy(k->err, j->err, sizeof(k->err));
	}
}

/* Fails the first len saves from j unsaved: an earlier save failed
 * (p->failed), so their entries would follow a hole in the log and their
 * messages must not go (the loop, which took the done list in order,
 * used to drop them at the first failed save). */
static void fail_batch(persist_job *j, size_t len, int rc)
{
	for (size_t i = 0; i < len; i++, j = j->next) {
		j->rc = rc;
		snprintf(j->err, sizeof(j->err), "not saved: an earlier save failed (%s)",
			 raft_strerror(rc));
	}
}

/* Sends what the finished saves from j on kept, straight from this thread
 * where the sender takes it (node_persist_set_sender): they are durable
 * now, with every save before them (Figure 2: a follower acknowledges
 * only what its stable storage holds), unless a save failed (failed:
 * this one or an earlier one; nothing is sent from here then). Those it
 * does not take stay for the loop. Returns whether the loop must be woken
 * for this batch anyway: a failed save, a test's stall, or messages left
 * to send. */
static bool send_direct(node_persist *p, int (*send)(void *, const raft_msg *), void *arg,
			persist_job *j, bool failed)
{
	bool need = failed, lazy = send && !failed && atomic_load(&p->lazy);

	for (; j; j = j->next) {
		size_t kept = 0;

		if (j->rc < 0 || j->stalled_ms)
			need = true;
		for (size_t i = 0; i < j->n_msgs; i++) {
			if (j->rc == 0 && lazy && send(arg, &j->msgs[i]) == 0) {
				atomic_fetch_add(&p->n_direct, 1);
				raft_msg_free_contents(&j->msgs[i]);
				continue;
			}
			j->msgs[kept++] = j->msgs[i];
		}
		j->n_msgs = kept;
		if (kept)
			need = true;
	}
	return need;
}

/* Whether the saves from j on hold an entry the loop knows committed
 * (commit): reporting them makes it applicable here, so the loop is
 * woken even where it may be left alone. */
static bool lazy_wakes(const persist_job *j, uint64_t commit)
{
	for (; j; j = j->next)
		if (j->n_ents && j->ents[0].index <= commit)
			return true;
	return false;
}

static void *persist_main(void *arg)
{
	node_persist *p = arg;

	pthread_setname_np(pthread_self(), "raft-persist");
	pthread_mutex_lock(&p->mu);
	for (;;) {
		persist_job *j, *last;
		unsigned stall_ms;
		int (*send)(void *, const raft_msg *);
		void *send_arg;
		int failed;
		bool wake, need;
		size_t len, n_ents;

		while (!p->q_head && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		if (!p->q_head)
			break;
		/* The jobs stay queued while they run: node_persist_defer
		 * may still add messages to the tail (they are only read once
		 * the job is in the done list); entries and hard state are
		 * not touched after node_persist_submit. */
		j = p->q_head;
		len = batch_len(j, &n_ents);
		stall_ms = p->stall_ms;
		p->stall_ms = 0;
		failed = p->failed;
		pthread_mutex_unlock(&p->mu);
		if (failed)
			fail_batch(j, len, failed);
		else
			run_batch(p, j, len, n_ents, stall_ms);
		j->done_ns = uv_hrtime();
		pthread_mutex_lock(&p->mu);
		last = j;
		for (size_t i = 1; i < len; i++) {
			last->next->done_ns = j->done_ns;
			last = last->next;
		}
		/* Before any of its messages is sent: a save queued after a
		 * failed one must not acknowledge entries it would cover. */
		if (!p->failed && j->rc < 0)
			p->failed = j->rc;
		failed = p->failed;
		p->q_head = last->next;
		if (!p->q_head)
			p->q_tail = NULL;
		last->next = NULL;
		/* Out of the queue, node_persist_defer cannot reach them: their
		 * messages are this thread's until they are in the done list. */
		p->sending = true;
		send = p->send;
		send_arg = p->send_arg;
		pthread_mutex_unlock(&p->mu);
		need = send_direct(p, send, send_arg, j, failed != 0);
		pthread_mutex_lock(&p->mu);
		p->sending = false;
		if (p->d_tail)
			p->d_tail->next = j;
		else
			p->d_head = j;
		p->d_tail = last;
		/* The loop is woken once for however many saves finish before
		 * it takes them (it takes the whole list), and not at all for
		 * a follower's saves whose acknowledgements went out here and
		 * that make nothing committed applicable: it takes them at its
		 * next turn (the leader's next message, a tick). Read after the
		 * job is in the done list: a loop that saw a new commit index
		 * before taking the list either finds the job there or its
		 * commit index is seen here (node_persist_lazy). */
		if (!need && !(atomic_load(&p->lazy) &&
			       !lazy_wakes(j, atomic_load(&p->commit_seen))))
			need = true;
		wake = need && !p->woken;
		if (wake)
			p->woken = true;
		pthread_cond_broadcast(&p->idle); /* drain, set_sender: not sending */
		pthread_mutex_unlock(&p->mu);
		if (wake)
			p->wake(p->wake_arg);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* ---- the core's reads, under the store lock ---- */

static int iface_initial_state(void *ctx, raft_hard_state *hs, raft_conf_state *cs)
{
	node_persist *p = ctx;
	raft_storage *s = store_raft_storage(p->st);
	int rc;

	pthread_mutex_lock(&p->store_mu);
	rc = s->initial_state(s->ctx, hs, cs);
	pthread_mutex_unlock(&p->store_mu);
	return rc;
}

static int iface_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes, raft_entry **out,
			 size_t *n)
{
	node_persist *p = ctx;
	raft_storage *s = store_raft_storage(p->st);
	int rc;

	pthread_mutex_lock(&p->store_mu);
	rc = s->entries(s->ctx, lo, hi, max_bytes, out, n);
	pthread_mutex_unlock(&p->store_mu);
	return rc;
}

static int iface_term(void *ctx, uint64_t index, uint64_t *term)
{
	node_persist *p = ctx;
	raft_storage *s = store_raft_storage(p->st);
	int rc;

	pthread_mutex_lock(&p->store_mu);
	rc = s->term(s->ctx, index, term);
	pthread_mutex_unlock(&p->store_mu);
	return rc;
}

/* No lock: the compaction point changes only under the loop thread's own
 * store calls (snapshots), and the loop thread is the one asking. */
static int iface_first_index(void *ctx, uint64_t *index)
{
	node_persist *p = ctx;
	raft_storage *s = store_raft_storage(p->st);

	return s->first_index(s->ctx, index);
}

static int iface_last_index(void *ctx, uint64_t *index)
{
	node_persist *p = ctx;
	raft_storage *s = store_raft_storage(p->st);
	int rc;

	pthread_mutex_lock(&p->store_mu);
	rc = s->last_index(s->ctx, index);
	pthread_mutex_unlock(&p->store_mu);
	return rc;
}

static int iface_snapshot(void *ctx, raft_snapshot *out)
{
	node_persist *p = ctx;
	raft_storage *s = store_raft_storage(p->st);
	int rc;

	pthread_mutex_lock(&p->store_mu);
	rc = s->snapshot(s->ctx, out);
	pthread_mutex_unlock(&p->store_mu);
	return rc;
}

raft_storage *node_persist_storage(node_persist *p)
{
	return &p->iface;
}

/* ---- the loop thread's side ---- */

int node_persist_new(store *st, void (*wake)(void *arg), void *arg, node_persist **out)
{
	node_persist *p = calloc(1, sizeof(*p));

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->st = st;
	p->wake = wake;
	p->wake_arg = arg;
	/* Not recursive: no section that holds it reaches another that
	 * takes it (answers to this node's own snapshot streams, which
	 * reopen a reader under it, are handled outside it:
	 * node_snap_on_chunk). */
	pthread_mutex_init(&p->store_mu, NULL);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	pthread_cond_init(&p->idle, NULL);
	p->iface = (raft_storage){
	    .ctx = p,
	    .initial_state = iface_initial_state,
	    .entries = iface_entries,
	    .term = iface_term,
	    .first_index = iface_first_index,
	    .last_index = iface_last_index,
	    .snapshot = iface_snapshot,
	};
	if (pthread_create(&p->thread, NULL, persist_main, p) != 0) {
		node_persist_free(p);
		return -EAGAIN;
	}
	p->started = true;
	*out = p;
	return 0;
}

void node_persist_free(node_persist *p)
{
	persist_job *j, *next;

	if (!p)
		return;
	if (p->started) {
		pthread_mutex_lock(&p->mu);
		p->stop = true;
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->thread, NULL);
	}
	for (j = p->d_head; j; j = next) {
		next = j->next;
		node_persist_job_free(j);
	}
	pthread_mutex_destroy(&p->store_mu);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	pthread_cond_destroy(&p->idle);
	free(p);
}

persist_job *node_persist_job_new(const raft_hard_state *hs, const raft_entry *ents, size_t n)
{
	persist_job *j = calloc(1, sizeof(*j));

	if (!j || (n && !(j->ents = malloc(n * sizeof(*ents))))) {
		free(j);
		return NULL;
	}
	if (hs) {
		j->has_hs = true;
		j->hs = *hs;
	}
	for (size_t i = 0; i < n; i++) {
		j->ents[i] = ents[i];
		raft_blob_ref(j->ents[i].data);
	}
	j->n_ents = n;
	return j;
}

int node_persist_keep(persist_job *j, const raft_msg *m)
{
	int rc;

	if (j->n_msgs == j->cap_msgs) {
		size_t cap = j->cap_msgs ? 2 * j->cap_msgs : 8;
		raft_msg *nm = realloc(j->msgs, cap * sizeof(*nm));

		if (!nm)
			return RAFT_ENOMEM;
		j->msgs = nm;
		j->cap_msgs = cap;
	}
	rc = raft_msg_copy(&j->msgs[j->n_msgs], m);
	if (rc == 0)
		j->n_msgs++;
	return rc;
}

void node_persist_submit(node_persist *p, persist_job *j)
{
	pthread_mutex_lock(&p->mu);
	if (p->q_tail)
		p->q_tail->next = j;
	else
		p->q_head = j;
	p->q_tail = j;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

bool node_persist_defer(node_persist *p, persist_job *holder)
{
	persist_job *j;
	bool kept = false;

	if (!holder->n_msgs)
		return true;
	pthread_mutex_lock(&p->mu);
	j = p->q_tail;
	if (j && !j->msgs) {
		/* The usual case: the newest save kept nothing yet. */
		j->msgs = holder->msgs;
		j->n_msgs = holder->n_msgs;
		j->cap_msgs = holder->cap_msgs;
		kept = true;
	} else if (j) {
		raft_msg *nm = j->n_msgs + holder->n_msgs > j->cap_msgs
				   ? realloc(j->msgs, (j->n_msgs + holder->n_msgs) * sizeof(*nm))
				   : j->msgs;

		if (nm) {
			/* Moved, not copied: holder forgets them below. */
			memcpy(nm + j->n_msgs, holder->msgs, holder->n_msgs * sizeof(*nm));
			if (j->n_msgs + holder->n_msgs > j->cap_msgs)
				j->cap_msgs = j->n_msgs + holder->n_msgs;
			j->msgs = nm;
			j->n_msgs += holder->n_msgs;
			free(holder->msgs);
			kept = true;
		}
	}
	pthread_mutex_unlock(&p->mu);
	if (kept) {
		holder->msgs = NULL;
		holder->n_msgs = holder->cap_msgs = 0;
	}
	return kept;
}

void node_persist_stall_next(node_persist *p, unsigned ms)
{
	pthread_mutex_lock(&p->mu);
	p->stall_ms = ms;
	pthread_mutex_unlock(&p->mu);
}

persist_job *node_persist_take_done(node_persist *p)
{
	persist_job *j;

	pthread_mutex_lock(&p->mu);
	j = p->d_head;
	p->d_head = p->d_tail = NULL;
	p->woken = false;
	pthread_mutex_unlock(&p->mu);
	return j;
}

void node_persist_drain(node_persist *p)
{
	pthread_mutex_lock(&p->mu);
	while (p->q_head || p->sending)
		pthread_cond_wait(&p->idle, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

void node_persist_lock(node_persist *p)
{
	pthread_mutex_lock(&p->store_mu);
}

void node_persist_unlock(node_persist *p)
{
	pthread_mutex_unlock(&p->store_mu);
}

pthread_mutex_t *node_persist_mutex(node_persist *p)
{
	return &p->store_mu;
}

void node_persist_set_sender(node_persist *p, int (*send)(void *arg, const raft_msg *m), void *arg)
{
	pthread_mutex_lock(&p->mu);
	while (p->sending) /* the old sender is no longer used once this returns */
		pthread_cond_wait(&p->idle, &p->mu);
	p->send = send;
	p->send_arg = arg;
	pthread_mutex_unlock(&p->mu);
}

void node_persist_lazy(node_persist *p, bool lazy, uint64_t commit)
{
	atomic_store(&p->commit_seen, commit);
	atomic_store(&p->lazy, lazy);
}

uint64_t node_persist_direct_sent(node_persist *p)
{
	return atomic_load(&p->n_direct);
}
