/* test_util.h — temp directories and deterministic entries for the store tests. */
#ifndef RAFTFS_TEST_STORE_UTIL_H
#define RAFTFS_TEST_STORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft_types.h"

/* A new empty directory /tmp/raftfs-<tag>-XXXXXX (malloc'd path), or NULL. */
char *tu_tmpdir(const char *tag);

/* Removes dir and everything below it; frees nothing. */
void tu_rmtree(const char *dir);

/* Fills e with an entry whose len bytes of data are a function of
 * (index, term), so any entry read back can be checked on its own. */
void tu_entry(raft_entry *e, uint64_t index, uint64_t term, size_t len);

/* Whether e's data is what tu_entry(index, term, e->len) makes. */
bool tu_entry_ok(const raft_entry *e, uint64_t index, uint64_t term);

/* Entries lo..hi-1 of the given term and data length (array to free with
 * raft_entries_free). */
raft_entry *tu_entries(uint64_t lo, uint64_t hi, uint64_t term, size_t len);

/* A small fixed-seed PRNG (xorshift64*), so failures replay. */
uint64_t tu_rand(uint64_t *state);

struct store;

/* A store opened in a fresh temp directory: what most store tests set up. */
typedef struct tu_store {
	char *dir;	  /* the store's directory */
	char *vdir;	  /* its value log's directory, dir/vlog */
	struct store *s;  /* NULL after a failed reopen */
	char *other;	  /* a second directory a test may make (tu_tmpdir), or NULL */
} tu_store;

/* A new store in tu_tmpdir(tag); NULL (with the reason on stderr) if it
 * cannot be made or opened. */
tu_store *tu_store_new(const char *tag);

/* Closes the store, removes its directory and t->other and frees t (NULL
 * is fine). */
void tu_store_free(tu_store *t);

/* Closes and opens the store again: store_open's code (t->s is NULL on
 * failure, err says why). */
int tu_store_reopen(tu_store *t, char *err, size_t errlen);

/* cmocka checks (a failure ends the test): */

/* Saves entries lo..hi-1 of term (data lengths lens[]) with hard state hs
 * (NULL: none). */
void tu_save(struct store *s, const raft_hard_state *hs, uint64_t lo, uint64_t hi, uint64_t term,
	     const size_t *lens);

/* Entries lo..hi-1 read back whole, of term. */
void tu_check(struct store *s, uint64_t lo, uint64_t hi, uint64_t term);

/* The path of t's value-log file number seq (malloc'd). */
char *tu_vlog_path(const tu_store *t, uint64_t seq);

#endif
