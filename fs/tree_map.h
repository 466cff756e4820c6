// A hash map from a 64-bit key to a pointer: the id and local-inode indexes of the tree.
#ifndef RAFTFS_FS_TREE_MAP_H
#define RAFTFS_FS_TREE_MAP_H

#include <stddef.h>
#include <stdint.h>

// Open addressing with linear probing and backward-shift deletion, so lookups
// stay a few cache misses however many files the tree holds. Key 0 is
// reserved (no object has id 0 or local inode 0). Not thread-safe: the state
// machine guards it with its rwlock.
struct tree_map {
	uint64_t *keys;
	void **vals;
	size_t cap; // a power of two
	size_t len;
};

// Initialises an empty map. Returns 0 or -ENOMEM.
int tree_map_init(struct tree_map *m);

// Frees the map's arrays (not the values, which the caller owns).
void tree_map_free(struct tree_map *m);

// Returns the value stored for key, or NULL.
void *tree_map_get(const struct tree_map *m, uint64_t key);

// Stores val for key, replacing any previous value. Returns 0 or -ENOMEM.
int tree_map_put(struct tree_map *m, uint64_t key, void *val);

// Removes key if present and returns its value (NULL if it was absent).
void *tree_map_del(struct tree_map *m, uint64_t key);

// Calls fn for every entry until fn returns nonzero (which is then returned).
// fn must not modify the map.
int tree_map_each(const struct tree_map *m, int (*fn)(uint64_t key, void *val, void *arg),
		  void *arg);

#endif
