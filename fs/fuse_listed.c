/* fuse_listed.c — the held directories listings showed, for recalls ahead
 * (fuse_listed.h). */
#include "fuse_listed.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct slot {
	uint64_t parent;
	uint64_t gen;  /* bumped whenever the slot is emptied for a listing */
	int64_t ms;    /* the listing's last read, or when recalled ahead */
	uint64_t look; /* the first of its directories looked at (0: none) */
	bool recalled; /* taken (fuse_listed_take): no second batch */
	bool sent;     /* ids are those whose Recalls were proposed at ms */
	bool sorted;
	uint64_t *ids;
	uint64_t *epochs; /* once sent: the epoch each Recall was for */
	size_t n, cap;
};

struct fuse_listed {
	pthread_mutex_t mu;
	struct slot slots[FUSE_LISTED_SLOTS];
};

int fuse_listed_new(struct fuse_listed **out)
{
	struct fuse_listed *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	pthread_mutex_init(&l->mu, NULL);
	*out = l;
	return 0;
}

void fuse_listed_free(struct fuse_listed *l)
{
	if (!l)
		return;
	for (unsigned i = 0; i < FUSE_LISTED_SLOTS; i++) {
		free(l->slots[i].ids);
		free(l->slots[i].epochs);
	}
	pthread_mutex_destroy(&l->mu);
	free(l);
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

/* s's ids sorted, duplicates (a listing read twice) dropped. Under mu. */
static void sort_slot(struct slot *s)
{
	size_t k = 0;

	if (s->sorted)
		return;
	qsort(s->ids, s->n, sizeof(*s->ids), cmp_u64);
	for (size_t i = 0; i < s->n; i++)
		if (k == 0 || s->ids[k - 1] != s->ids[i])
			s->ids[k++] = s->ids[i];
	s->n = k;
	s->sorted = true;
}

/* Where dir is in s's ids, or NULL. */
static uint64_t *find(struct slot *s, uint64_t dir)
{
	sort_slot(s);
	return s->n ? bsearch(&dir, s->ids, s->n, sizeof(*s->ids), cmp_u64) : NULL;
}

/* The slot of a listing of parent not recalled yet, else the oldest (or
 * an empty one), emptied for it. Under mu. */
static struct slot *slot_for(struct fuse_listed *l, uint64_t parent, int64_t now_ms)
{
	struct slot *old = &l->slots[0];

	for (unsigned i = 0; i < FUSE_LISTED_SLOTS; i++) {
		struct slot *s = &l->slots[i];

		if (s->n && s->parent == parent && !s->recalled &&
		    now_ms - s->ms < FUSE_LISTED_MS)
			return s;
		if (!s->n || s->ms < old->ms)
			old = s;
	}
	old->parent = parent;
	old->gen++; /* a take of what was here files nothing here any more */
	old->look = 0;
	old->recalled = false;
	old->sent = false;
	old->sorted = true;
	old->n = 0;
	return old;
}

void fuse_listed_note(struct fuse_listed *l, uint64_t parent, const uint64_t *ids, size_t n,
		      int64_t now_ms)
{
	struct slot *s;

	if (!n)
		return;
	pthread_mutex_lock(&l->mu);
	s = slot_for(l, parent, now_ms);
	s->ms = now_ms;
	if (s->n + n > FUSE_LISTED_IDS_MAX)
		n = FUSE_LISTED_IDS_MAX - s->n;
	if (s->n + n > s->cap) {
		size_t cap = s->cap ? s->cap : 64;
		uint64_t *p;

		while (cap < s->n + n)
			cap *= 2;
		/* No room: this read's directories are recalled each on its
		 * own look, as without this. */
		if (!(p = realloc(s->ids, cap * sizeof(*p))))
			n = 0;
		else {
			s->ids = p;
			s->cap = cap;
		}
	}
	if (n) {
		memcpy(s->ids + s->n, ids, n * sizeof(*ids));
		s->n += n;
		s->sorted = false;
	}
	pthread_mutex_unlock(&l->mu);
}

size_t fuse_listed_take(struct fuse_listed *l, uint64_t dir, int64_t now_ms, uint64_t **out,
			struct fuse_listed_token *tok)
{
	size_t n = 0, start;

	*out = NULL;
	*tok = (struct fuse_listed_token){0};
	pthread_mutex_lock(&l->mu);
	for (unsigned i = 0; i < FUSE_LISTED_SLOTS; i++) {
		struct slot *s = &l->slots[i];
		uint64_t *at;

		if (!s->n || s->recalled || now_ms - s->ms >= FUSE_LISTED_MS ||
		    !(at = find(s, dir)))
			continue;
		/* The first look (or the same one again): maybe a cd, not a
		 * scan; only dir's own recall. */
		if (!s->look || s->look == dir) {
			s->look = dir;
			break;
		}
		/* A scan: all of them, or beyond FUSE_LISTED_AHEAD_MAX that
		 * many from dir on (ls -l looks in listing order, roughly that
		 * of the ids; those before it were looked at already); the
		 * rest each on its own look. */
		n = s->n;
		start = 0;
		if (n > FUSE_LISTED_AHEAD_MAX) {
			n = FUSE_LISTED_AHEAD_MAX;
			start = (size_t)(at - s->ids);
			if (start > s->n - n)
				start = s->n - n;
		}
		if ((*out = malloc(n * sizeof(**out))))
			memcpy(*out, s->ids + start, n * sizeof(**out));
		else
			n = 0;
		/* Recalled ahead from now on (also when out of memory: each
		 * is then recalled on its own look, as without this). */
		s->recalled = true;
		s->ms = now_ms;
		*tok = (struct fuse_listed_token){.slot = i, .gen = s->gen};
		break;
	}
	pthread_mutex_unlock(&l->mu);
	return n;
}

void fuse_listed_sent(struct fuse_listed *l, struct fuse_listed_token tok, const uint64_t *ids,
		      uint64_t *epochs, size_t n, int64_t now_ms)
{
	struct slot *s = &l->slots[tok.slot % FUSE_LISTED_SLOTS];
	uint64_t *e = epochs;

	/* n fits the slot: a subset of its take, which the ids array held. */
	pthread_mutex_lock(&l->mu);
	/* Only the take's own listing: a newer one emptied the slot (gen),
	 * or it was filed already. */
	if (s->gen == tok.gen && s->recalled && !s->sent && n <= s->cap) {
		if (n)
			memcpy(s->ids, ids, n * sizeof(*ids));
		free(s->epochs);
		s->epochs = e;
		e = NULL;
		s->n = n;
		s->sorted = true;
		s->sent = true;
		s->ms = now_ms;
	}
	pthread_mutex_unlock(&l->mu);
	free(e);
}

bool fuse_listed_ahead(struct fuse_listed *l, uint64_t dir, uint64_t epoch, int64_t now_ms,
		       int64_t window_ms)
{
	bool ahead = false;

	pthread_mutex_lock(&l->mu);
	for (unsigned i = 0; i < FUSE_LISTED_SLOTS && !ahead; i++) {
		struct slot *s = &l->slots[i];
		uint64_t *at;

		if (!s->n || !s->sent || now_ms - s->ms >= window_ms || !(at = find(s, dir)))
			continue;
		/* A Recall of an older delegation of dir is no Recall of this
		 * one: its own recaller sends that at once. */
		ahead = s->epochs[at - s->ids] == epoch;
	}
	pthread_mutex_unlock(&l->mu);
	return ahead;
}
