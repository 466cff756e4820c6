/* dedup.c — per-client duplicate table for exactly-once application. */
#include "dedup.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "le64.h"

#define DEDUP_MAGIC 0x44445031u /* "DDP1" */

typedef struct seq_result {
	uint64_t seq;
	int64_t result;
} seq_result;

typedef struct client_entry {
	uint64_t id;
	uint64_t low;	  /* seqs below were promised never to be retried */
	seq_result *seqs; /* unordered; small (proposals in flight) */
	size_t n, cap;
} client_entry;

struct dedup {
	client_entry *clients; /* sorted by id */
	size_t n, cap;
};

dedup *dedup_new(void)
{
	return calloc(1, sizeof(dedup));
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

int dedup_record(dedup *d, uint64_t client, uint64_t seq, uint64_t min_pending, int64_t result)
{
	client_entry *c;

	if (client == 0)
		return 0;
	c = insert_client(d, client);
	if (!c)
		return -ENOMEM;
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
	return 0;
}

size_t dedup_clients(const dedup *d)
{
	return d->n;
}

/* Layout, little-endian: u64 magic, u64 n_clients, then per client
 * u64 id, u64 low, u64 n, n x (u64 seq, u64 result). */
int dedup_serialize(const dedup *d, uint8_t **out, size_t *len)
{
	size_t sz = 16;
	uint8_t *buf, *p;

	for (size_t i = 0; i < d->n; i++)
		sz += 24 + 16 * d->clients[i].n;
	buf = malloc(sz);
	if (!buf)
		return -ENOMEM;
	p = le64_put(buf, DEDUP_MAGIC);
	p = le64_put(p, d->n);
	for (size_t i = 0; i < d->n; i++) {
		const client_entry *c = &d->clients[i];

		p = le64_put(p, c->id);
		p = le64_put(p, c->low);
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
	uint64_t n, prev = 0;
	dedup *d;
	int rc = -EINVAL;

	if (len < 16 || le64_get(p) != DEDUP_MAGIC)
		return -EINVAL;
	n = le64_get(p + 8);
	p += 16;
	if (n > (len - 16) / 24)
		return -EINVAL;
	d = dedup_new();
	if (!d)
		return -ENOMEM;
	d->clients = calloc(n ? n : 1, sizeof(client_entry));
	if (!d->clients) {
		rc = -ENOMEM;
		goto fail;
	}
	d->cap = n ? n : 1;
	for (uint64_t i = 0; i < n; i++) {
		client_entry *c = &d->clients[i];
		uint64_t m;

		if ((size_t)(end - p) < 24)
			goto fail;
		c->id = le64_get(p);
		c->low = le64_get(p + 8);
		m = le64_get(p + 16);
		p += 24;
		d->n++;
		/* Sorted, distinct, nonzero ids: anything else is corruption. */
		if (c->id == 0 || c->id <= prev || m > (size_t)(end - p) / 16)
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
		}
	}
	if (p != end)
		goto fail;
	*out = d;
	return 0;
fail:
	dedup_free(d);
	return rc;
}
