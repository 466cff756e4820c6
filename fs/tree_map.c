// A hash map from a 64-bit key to a pointer (open addressing, linear probing).
#include "tree_map.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot_of(uint64_t key, size_t cap)
{
	// Ids are (node << 48) | counter: mix so both halves spread over slots.
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	return (size_t)key & (cap - 1);
}

static int alloc_arrays(struct tree_map *m, size_t cap)
{
	m->keys = calloc(cap, sizeof(*m->keys));
	m->vals = calloc(cap, sizeof(*m->vals));
	if (!m->keys || !m->vals) {
		free(m->keys);
		free(m->vals);
		return -ENOMEM;
	}
	m->cap = cap;
	m->len = 0;
	return 0;
}

int tree_map_init(struct tree_map *m)
{
	return alloc_arrays(m, 64);
}

void tree_map_free(struct tree_map *m)
{
	free(m->keys);
	free(m->vals);
	m->keys = NULL;
	m->vals = NULL;
	m->cap = m->len = 0;
}

void *tree_map_get(const struct tree_map *m, uint64_t key)
{
	for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key)
			return m->vals[i];
		if (m->keys[i] == 0)
			return NULL;
	}
}

static void insert_fresh(struct tree_map *m, uint64_t key, void *val)
{
	size_t i = slot_of(key, m->cap);
	while (m->keys[i] != 0 && m->keys[i] != key)
		i = (i + 1) & (m->cap - 1);
	if (m->keys[i] == 0)
		m->len++;
	m->keys[i] = key;
	m->vals[i] = val;
}

static int grow(struct tree_map *m)
{
	struct tree_map old = *m;
	int rc = alloc_arrays(m, old.cap * 2);
	if (rc) {
		*m = old;
		return rc;
	}
	for (size_t i = 0; i < old.cap; i++)
		if (old.keys[i])
			insert_fresh(m, old.keys[i], old.vals[i]);
	free(old.keys);
	free(old.vals);
	return 0;
}

int tree_map_put(struct tree_map *m, uint64_t key, void *val)
{
	// Keep the load under 1/2 so probe runs stay short.
	if ((m->len + 1) * 2 > m->cap) {
		int rc = grow(m);
		if (rc)
			return rc;
	}
	insert_fresh(m, key, val);
	return 0;
}

void *tree_map_del(struct tree_map *m, uint64_t key)
{
	size_t mask = m->cap - 1;
	size_t i = slot_of(key, m->cap);
	while (m->keys[i] != key) {
		if (m->keys[i] == 0)
			return NULL;
		i = (i + 1) & mask;
	}
	void *val = m->vals[i];
	// Backward-shift: move later members of the probe run into the hole so
	// no tombstones are needed (Knuth 6.4, algorithm R).
	size_t hole = i;
	for (size_t j = (i + 1) & mask; m->keys[j] != 0; j = (j + 1) & mask) {
		size_t home = slot_of(m->keys[j], m->cap);
		// Move j into the hole unless its home lies cyclically in (hole, j].
		int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
		if (!stays) {
			m->keys[hole] = m->keys[j];
			m->vals[hole] = m->vals[j];
			hole = j;
		}
	}
	m->keys[hole] = 0;
	m->vals[hole] = NULL;
	m->len--;
	return val;
}

int tree_map_each(const struct tree_map *m, int (*fn)(uint64_t key, void *val, void *arg),
		  void *arg)
{
	for (size_t i = 0; i < m->cap; i++) {
		if (m->keys[i]) {
			int rc = fn(m->keys[i], m->vals[i], arg);
			if (rc)
				return rc;
		}
	}
	return 0;
}
