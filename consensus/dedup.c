/* dedup.c — per-client duplicate table for exactly-once application. */
#include "dedup.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "le64.h"

#define DEDUP_MAGIC_V1 0x44445031u /* "DDP1": no expiry data */
#define DEDUP_MAGIC 0x44445032u	   /* "DDP2" */

typedef struct seq_result {
	uint64_t seq;
	int64_t result;
} seq_result;

typedef struct client_entry {
	uint64_t id;
	uint64_t low;	  /* seqs below were promised never to be retried */
	uint64_t top;	  /* the highest seq executed (0: none) */
	uint64_t last;	  /* index of its last executed command (dedup_record_at) */
	seq_result *seqs; /* unordered; small (proposals in flight) */
	size_t n, cap;
} client_entry;

struct dedup {
	client_entry *clients; /* sorted by id */
	size_t n, cap;
	uint64_t now;	 /* the highest index given to dedup_record_at */
	uint64_t expire; /* entries of idleness before a client's results go */
};

dedup *dedup_new(void)
{
	dedup *d = calloc(1, sizeof(dedup));

	if (d)
		d->expire = DEDUP_EXPIRE_ENTRIES;
	return d;
}

void dedup_set_expiry(dedup *d, uint64_t entries)
{
	d->expire = entries;
}

void dedup_free(dedup *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->clients[i].seqs);
	free(d->clients);
	free(d);
}

/* Binary search: index of client id, or where it would be inserted. */
static size_t find_client(const dedup *d, uint64_t id, int *found)
{
	size_t lo = 0, hi = d->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (d->clients[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < d->n && d->clients[lo].id == id;
	return lo;
}

enum dedup_verdict dedup_check(const dedup *d, uint64_t client, uint64_t seq, int64_t *result)
{
	const client_entry *c;
	int found;
	size_t i;

	if (client == 0)
		return DEDUP_NEW;
	i = find_client(d, client, &found);
	if (!found)
		return DEDUP_NEW;
	c = &d->clients[i];
	for (size_t j = 0; j < c->n; j++)
		if (c->seqs[j].seq == seq) {
			*result = c->seqs[j].result;
			return DEDUP_DUPLICATE;
		}
	return seq < c->low ? DEDUP_STALE : DEDUP_NEW;
}

enum dedup_verdict dedup_check_ordered(const dedup *d, uint64_t client, uint64_t seq,
				       uint64_t min_pending, int64_t *result)
{
	enum dedup_verdict v = dedup_check(d, client, seq, result);
	const client_entry *c;
	uint64_t lo, present = 0;
	int found;
	size_t i;

	if (v != DEDUP_NEW || client == 0)
		return v;
	lo = min_pending;
	i = find_client(d, client, &found);
	c = found ? &d->clients[i] : NULL;
	if (c && c->low > lo)
		lo = c->low;
	if (lo >= seq)
		return DEDUP_NEW;
	/* The table holds distinct seqs: [lo, seq) is complete iff it holds
	 * seq - lo of them. */
	for (size_t j = 0; c && j < c->n; j++)
		present += c->seqs[j].seq >= lo && c->seqs[j].seq < seq;
	return present == seq - lo ? DEDUP_NEW : DEDUP_EARLY;
}

static client_entry *insert_client(dedup *d, uint64_t id)
{
	int found;
	size_t i = find_client(d, id, &found);

	if (found)
		return &d->clients[i];
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		client_entry *nc = realloc(d->clients, cap * sizeof(*nc));

		if (!nc)
			return NULL;
		d->clients = nc;
		d->cap = cap;
	}
	memmove(&d->clients[i + 1], &d->clients[i], (d->n - i) * sizeof(client_entry));
	memset(&d->clients[i], 0, sizeof(client_entry));
	d->clients[i].id = id;
	d->n++;
	return &d->clients[i];
}

static void forget_below(client_entry *c, uint64_t low)
{
	size_t k = 0;

	if (low <= c->low)
		return;
	c->low = low;
	for (size_t j = 0; j < c->n; j++)
		if (c->seqs[j].seq >= low)
			c->seqs[k++] = c->seqs[j];
	c->n = k;
}

/* Expiry (thesis §6.3), run when the index crosses a multiple of expire/8,
 * so its cost is amortized and its moments are a function of the indexes
 * recorded: a client idle for more than `expire` entries keeps only
 * low = top + 1 (every seq it ever used answers STALE: a late retry is
 * never executed again); idle for twice that, it is dropped. */
static void expire_clients(dedup *d, uint64_t index)
{
	uint64_t step = d->expire / 8 ? d->expire / 8 : 1;
	size_t k = 0;

	if (!d->expire || index / step == d->now / step)
		return;
	for (size_t i = 0; i < d->n; i++) {
		client_entry *c = &d->clients[i];
		uint64_t idle = index - c->last;

		if (idle > 2 * d->expire) {
			free(c->seqs);
			continue;
		}
		if (idle > d->expire && (c->n || c->low <= c->top)) {
			free(c->seqs);
			c->seqs = NULL;
			c->n = c->cap = 0;
			c->low = c->top + 1;
		}
		d->clients[k++] = *c;
	}
	d->n = k;
}

int dedup_record_at(dedup *d, uint64_t index, uint64_t client, uint64_t seq, uint64_t min_pending,
		    int64_t result)
{
	client_entry *c;

	if (index > d->now) {
		expire_clients(d, index);
		d->now = index;
	}
	if (client == 0)
		return 0;
	c = insert_client(d, client);
	if (!c)
		return -ENOMEM;
	c->last = d->now;
	forget_below(c, min_pending);
	if (seq < c->low)
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 4;
		seq_result *ns = realloc(c->seqs, cap * sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		c->seqs = ns;
		c->cap = cap;
	}
	c->seqs[c->n].seq = seq;
	c->seqs[c->n].result = result;
	c->n++;
	if (seq > c->top)
		c->top = seq;
	return 0;
}

int dedup_record(dedup *d, uint64_t client, uint64_t seq, uint64_t min_pending, int64_t result)
{
	return dedup_record_at(d, d->now, client, seq, min_pending, result);
}

size_t dedup_clients(const dedup *d)
{
	return d->n;
}

/* Layout, little-endian: u64 magic, u64 now, u64 n_clients, then per
 * client u64 id, u64 low, u64 top, u64 last, u64 n, n x (u64 seq, u64
 * result). (DDP1, before expiry: no now, top or last.) */
int dedup_serialize(const dedup *d, uint8_t **out, size_t *len)
{
	size_t sz = 24;
	uint8_t *buf, *p;

	for (size_t i = 0; i < d->n; i++)
		sz += 40 + 16 * d->clients[i].n;
	buf = malloc(sz);
	if (!buf)
		return -ENOMEM;
	p = le64_put(buf, DEDUP_MAGIC);
	p = le64_put(p, d->now);
	p = le64_put(p, d->n);
	for (size_t i = 0; i < d->n; i++) {
		const client_entry *c = &d->clients[i];

		p = le64_put(p, c->id);
		p = le64_put(p, c->low);
		p = le64_put(p, c->top);
		p = le64_put(p, c->last);
		p = le64_put(p, c->n);
		for (size_t j = 0; j < c->n; j++) {
			p = le64_put(p, c->seqs[j].seq);
			p = le64_put(p, (uint64_t)c->seqs[j].result);
		}
	}
	*out = buf;
	*len = sz;
	return 0;
}

int dedup_deserialize(const uint8_t *buf, size_t len, dedup **out)
{
	const uint8_t *p = buf, *end = buf + len;
	uint64_t n, prev = 0, magic;
	size_t head, per;
	dedup *d;
	int rc = -EINVAL;

	if (len < 16)
		return -EINVAL;
	magic = le64_get(p);
	if (magic != DEDUP_MAGIC && magic != DEDUP_MAGIC_V1)
		return -EINVAL;
	/* A DDP1 table (written before expiry) loads with now = 0 and every
	 * client last seen at 0: the same on every replica, so they all
	 * expire its clients at the same index. */
	head = magic == DEDUP_MAGIC ? 24 : 16;
	per = magic == DEDUP_MAGIC ? 40 : 24;
	if (len < head)
		return -EINVAL;
	n = le64_get(p + head - 8);
	if (n > (len - head) / per)
		return -EINVAL;
	d = dedup_new();
	if (!d)
		return -ENOMEM;
	if (magic == DEDUP_MAGIC)
		d->now = le64_get(p + 8);
	p += head;
	d->clients = calloc(n ? n : 1, sizeof(client_entry));
	if (!d->clients) {
		rc = -ENOMEM;
		goto fail;
	}
	d->cap = n ? n : 1;
	for (uint64_t i = 0; i < n; i++) {
		client_entry *c = &d->clients[i];
		uint64_t m;

		if ((size_t)(end - p) < per)
			goto fail;
		c->id = le64_get(p);
		c->low = le64_get(p + 8);
		if (magic == DEDUP_MAGIC) {
			c->top = le64_get(p + 16);
			c->last = le64_get(p + 24);
		}
		m = le64_get(p + per - 8);
		p += per;
		d->n++;
		/* Sorted, distinct, nonzero ids, nothing seen after now:
		 * anything else is corruption. */
		if (c->id == 0 || c->id <= prev || c->last > d->now || m > (size_t)(end - p) / 16)
			goto fail;
		prev = c->id;
		if (m) {
			c->seqs = malloc(m * sizeof(seq_result));
			if (!c->seqs) {
				rc = -ENOMEM;
				goto fail;
			}
		}
		c->n = c->cap = m;
		for (uint64_t j = 0; j < m; j++) {
			c->seqs[j].seq = le64_get(p);
			c->seqs[j].result = (int64_t)le64_get(p + 8);
			p += 16;
			if (magic == DEDUP_MAGIC_V1 && c->seqs[j].seq > c->top)
				c->top = c->seqs[j].seq;
			else if (magic == DEDUP_MAGIC && c->seqs[j].seq > c->top)
				goto fail;
		}
		if (magic == DEDUP_MAGIC_V1 && c->low > c->top + 1)
			c->top = c->low - 1;
	}
	if (p != end)
		goto fail;
	*out = d;
	return 0;
fail:
	dedup_free(d);
	return rc;
}
