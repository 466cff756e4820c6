/* fuse_grant.c — per directory: recent synchronous changes by this mount
 * and the back-off after recalls, in a small hash table; the idle-return
 * rule; a recaller's clock. */
#include "fuse_grant.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#define BUCKETS 256

struct want {
	struct want *next;
	uint64_t dir;
	unsigned changes;
	int64_t since_ms;	/* start of the current counting window */
	int64_t quiet_until_ms; /* no Grant asked for before this */
	int64_t backoff_ms;	/* the last back-off (doubles per recall) */
};

/* One holder's silence (fuse_holder_*). A slot is free when its holder is
 * 0, or reusable when nobody waits for it and it is not known silent. */
struct holder {
	uint32_t holder;
	unsigned waiters;  /* recallers waiting for it now */
	uint64_t progress; /* its commands applied here, when last changed */
	uint64_t link;	   /* the connection to it then (0: none) */
	int64_t since_ms;  /* silent since (the first look at that progress) */
	bool silent;	   /* revoked for silence at progress */
};

struct fuse_grant {
	pthread_mutex_t mu;
	struct holder holders[FUSE_HOLDERS_MAX];
	struct want *b[BUCKETS];
	unsigned count;
	/* Test hook (RAFTFS_TEST_GRANT_EAGER): ask at the first change, never
	 * back off — mounts sharing a directory then fight over it as hard as
	 * they can (tests/mount/mount_grant_race.sh). */
	bool eager;
};

static unsigned bucket(uint64_t dir)
{
	return (unsigned)((dir ^ (dir >> 48) ^ (dir >> 17)) % BUCKETS);
}

int fuse_grant_new(struct fuse_grant **out, bool eager)
{
	struct fuse_grant *g = calloc(1, sizeof(*g));

	if (!g)
		return -ENOMEM;
	g->eager = eager;
	pthread_mutex_init(&g->mu, NULL);
	*out = g;
	return 0;
}

void fuse_grant_free(struct fuse_grant *g)
{
	if (!g)
		return;
	for (unsigned i = 0; i < BUCKETS; i++)
		while (g->b[i]) {
			struct want *w = g->b[i];

			g->b[i] = w->next;
			free(w);
		}
	pthread_mutex_destroy(&g->mu);
	free(g);
}

/* Drops what no longer matters: windows long over, back-offs run out. A
 * full table of live entries stays full (and asks for nothing new). Under
 * mu. */
static void prune(struct fuse_grant *g, int64_t now)
{
	for (unsigned i = 0; i < BUCKETS; i++)
		for (struct want **p = &g->b[i]; *p;) {
			struct want *w = *p;

			if (now - w->since_ms > FUSE_GRANT_WINDOW_MS && now >= w->quiet_until_ms) {
				*p = w->next;
				free(w);
				g->count--;
			} else {
				p = &w->next;
			}
		}
}

/* dir's entry, made if absent (NULL: out of memory or full). Under mu. */
static struct want *get(struct fuse_grant *g, uint64_t dir, int64_t now)
{
	struct want **p = &g->b[bucket(dir)], *w;

	for (w = *p; w; w = w->next)
		if (w->dir == dir)
			return w;
	if (g->count >= FUSE_GRANT_DIRS_MAX)
		prune(g, now);
	if (g->count >= FUSE_GRANT_DIRS_MAX || !(w = calloc(1, sizeof(*w))))
		return NULL;
	w->dir = dir;
	w->since_ms = now;
	w->next = *p;
	*p = w;
	g->count++;
	return w;
}

bool fuse_grant_note(struct fuse_grant *g, uint64_t dir, int64_t now_ms)
{
	struct want *w;
	bool ask = false;

	pthread_mutex_lock(&g->mu);
	w = get(g, dir, now_ms);
	if (w) {
		if (now_ms - w->since_ms > FUSE_GRANT_WINDOW_MS) {
			w->since_ms = now_ms;
			w->changes = 0;
		}
		if (g->eager || (++w->changes >= FUSE_GRANT_AFTER && now_ms >= w->quiet_until_ms)) {
			ask = true;
			w->changes = 0;
			w->since_ms = now_ms;
		}
	}
	pthread_mutex_unlock(&g->mu);
	return ask;
}

void fuse_grant_recalled(struct fuse_grant *g, uint64_t dir, int64_t now_ms)
{
	struct want *w;

	pthread_mutex_lock(&g->mu);
	w = get(g, dir, now_ms);
	if (w) {
		/* A recall long after the last back-off ended starts afresh. */
		if (now_ms - w->quiet_until_ms > FUSE_GRANT_BACKOFF_MAX_MS)
			w->backoff_ms = 0;
		w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : FUSE_GRANT_BACKOFF_MS;
		if (w->backoff_ms > FUSE_GRANT_BACKOFF_MAX_MS)
			w->backoff_ms = FUSE_GRANT_BACKOFF_MAX_MS;
		w->quiet_until_ms = now_ms + w->backoff_ms;
		w->changes = 0;
	}
	pthread_mutex_unlock(&g->mu);
}

bool fuse_grant_idle(int64_t last_ns, int64_t newest_ns, int64_t now_ns, int64_t idle_ms)
{
	int64_t idle_ns = idle_ms * 1000000;

	if (idle_ms <= 0 || now_ns - last_ns < idle_ns)
		return false;
	/* The mount still works elsewhere: it may come back here soon. */
	if (now_ns - newest_ns < idle_ns)
		return now_ns - last_ns >= FUSE_IDLE_BUSY_X * idle_ns;
	return true;
}

void fuse_reclaim_start(struct fuse_reclaim *r, int64_t now_ms)
{
	*r = (struct fuse_reclaim){.deadline_ms = now_ms + FUSE_REVOKE_AFTER_MS,
				   .cap_ms = now_ms + FUSE_REVOKE_CAP_MS,
				   .next_recall_ms = now_ms};
}

void fuse_reclaim_holder_back(struct fuse_reclaim *r, int64_t now_ms)
{
	fuse_reclaim_start(r, now_ms);
}

enum fuse_reclaim_do fuse_reclaim_step(struct fuse_reclaim *r, uint32_t holder, uint64_t epoch,
				       uint64_t progress, uint64_t link, int64_t silent_ms,
				       int64_t now_ms)
{
	bool relinked = link && link != r->link;

	if (link)
		r->link = link;
	if (holder != r->holder || epoch != r->epoch) {
		/* Another delegation: it has not been asked yet. Its holder's
		 * silence may have started before this wait (another recaller
		 * of this mount waits for it too): one clock for both. */
		r->holder = holder;
		r->epoch = epoch;
		r->progress = progress;
		r->link = link;
		r->busy = false;
		r->deadline_ms = (silent_ms < now_ms ? silent_ms : now_ms) + FUSE_REVOKE_AFTER_MS;
		r->next_recall_ms = now_ms;
	} else if (progress != r->progress) {
		/* Progress, not wall time: its commands still arrive. It is
		 * alive and has a backlog, which a synchronous step of its
		 * own may wait out in silence: the longer bound from now on. */
		r->progress = progress;
		r->busy = true;
		r->deadline_ms = now_ms + FUSE_REVOKE_BUSY_MS;
	} else if (relinked) {
		/* Connected anew (restarted, or back from a partition): its
		 * silence starts now. */
		r->deadline_ms = now_ms + (r->busy ? FUSE_REVOKE_BUSY_MS : FUSE_REVOKE_AFTER_MS);
	}
	if (r->deadline_ms > r->cap_ms)
		r->deadline_ms = r->cap_ms;
	if (now_ms >= r->deadline_ms) {
		r->capped = r->deadline_ms == r->cap_ms;
		r->deadline_ms = now_ms + FUSE_REVOKE_AFTER_MS;
		r->cap_ms = r->deadline_ms + FUSE_REVOKE_CAP_MS;
		return FUSE_RECLAIM_REVOKE;
	}
	if (now_ms >= r->next_recall_ms) {
		r->next_recall_ms = now_ms + FUSE_RECALL_EVERY_MS;
		return FUSE_RECLAIM_RECALL;
	}
	return FUSE_RECLAIM_WAIT;
}

int64_t fuse_reclaim_due(const struct fuse_reclaim *r, int64_t now_ms)
{
	int64_t t = r->deadline_ms < r->next_recall_ms ? r->deadline_ms : r->next_recall_ms;

	return t > now_ms ? t - now_ms : 1;
}

/* holder's record, taken if absent (NULL: the table is full of holders
 * waited for or known silent). Under mu. */
static struct holder *holder_get(struct fuse_grant *g, uint32_t holder)
{
	struct holder *spare = NULL;

	for (unsigned i = 0; i < FUSE_HOLDERS_MAX; i++) {
		struct holder *h = &g->holders[i];

		if (h->holder == holder)
			return h;
		if (!spare && (h->holder == 0 || (!h->waiters && !h->silent)))
			spare = h;
	}
	if (spare)
		*spare = (struct holder){.holder = holder};
	return spare;
}

bool fuse_holder_join(struct fuse_grant *g, uint32_t holder, uint64_t progress, uint64_t link,
		      int64_t now_ms)
{
	struct holder *h;

	pthread_mutex_lock(&g->mu);
	if ((h = holder_get(g, holder))) {
		/* The first waiter starts the clock: an old look at the same
		 * progress says nothing about a node nobody asked since. */
		if (!h->waiters++ && !h->silent) {
			h->progress = progress;
			h->link = link;
			h->since_ms = now_ms;
		}
	}
	pthread_mutex_unlock(&g->mu);
	return h != NULL;
}

void fuse_holder_leave(struct fuse_grant *g, uint32_t holder)
{
	pthread_mutex_lock(&g->mu);
	for (unsigned i = 0; i < FUSE_HOLDERS_MAX; i++)
		if (g->holders[i].holder == holder && g->holders[i].waiters) {
			g->holders[i].waiters--;
			break;
		}
	pthread_mutex_unlock(&g->mu);
}

int64_t fuse_holder_look(struct fuse_grant *g, uint32_t holder, uint64_t progress, uint64_t link,
			 int64_t now_ms, bool *silent)
{
	int64_t since = now_ms;

	*silent = false;
	pthread_mutex_lock(&g->mu);
	for (unsigned i = 0; i < FUSE_HOLDERS_MAX; i++) {
		struct holder *h = &g->holders[i];

		if (h->holder != holder)
			continue;
		/* A command of it applied, or a connection to it came up
		 * since its silence began (it restarted: its start's command
		 * may not have committed yet): alive, back if it was silent;
		 * its silence starts again from here. */
		if (progress != h->progress || (link && link != h->link)) {
			h->progress = progress;
			h->link = link;
			h->since_ms = now_ms;
			h->silent = false;
		}
		if (h->waiters || h->silent)
			since = h->since_ms;
		*silent = h->silent;
		break;
	}
	pthread_mutex_unlock(&g->mu);
	return since;
}

void fuse_holder_silent(struct fuse_grant *g, uint32_t holder, uint64_t progress, uint64_t link)
{
	struct holder *h;

	pthread_mutex_lock(&g->mu);
	if ((h = holder_get(g, holder)) && h->progress == progress && (!link || h->link == link))
		h->silent = true;
	pthread_mutex_unlock(&g->mu);
}
