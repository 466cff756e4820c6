/* test_util.c — helpers shared by the store tests. */
#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

char *tu_tmpdir(const char *tag)
{
	char *path;
	if (asprintf(&path, "/tmp/raftfs-%s-XXXXXX", tag) < 0)
		return NULL;
	if (!mkdtemp(path)) {
		free(path);
		return NULL;
	}
	return path;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

void tu_rmtree(const char *dir)
{
	if (dir)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static uint8_t data_byte(uint64_t index, uint64_t term, size_t i)
{
	uint64_t x = index * 0x9E3779B97F4A7C15ull ^ term * 0xC2B2AE3D27D4EB4Full ^ i;
	x ^= x >> 29;
	return (uint8_t)(x * 0xBF58476D1CE4E5B9ull >> 56);
}

void tu_entry(raft_entry *e, uint64_t index, uint64_t term, size_t len)
{
	memset(e, 0, sizeof(*e));
	e->index = index;
	e->term = term;
	e->type = RAFT_ENTRY_NORMAL;
	e->len = (uint32_t)len;
	if (len) {
		e->data = malloc(len);
		if (!e->data)
			abort();
		for (size_t i = 0; i < len; i++)
			e->data[i] = data_byte(index, term, i);
	}
}

bool tu_entry_ok(const raft_entry *e, uint64_t index, uint64_t term)
{
	if (e->index != index || e->term != term)
		return false;
	for (size_t i = 0; i < e->len; i++)
		if (e->data[i] != data_byte(index, term, i))
			return false;
	return true;
}

raft_entry *tu_entries(uint64_t lo, uint64_t hi, uint64_t term, size_t len)
{
	raft_entry *ents = calloc(hi - lo ? hi - lo : 1, sizeof(*ents));
	if (!ents)
		abort();
	for (uint64_t i = lo; i < hi; i++)
		tu_entry(&ents[i - lo], i, term, len);
	return ents;
}

uint64_t tu_rand(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

tu_store *tu_store_new(const char *tag)
{
	tu_store *t = calloc(1, sizeof(*t));
	char err[256];

	if (!t || !(t->dir = tu_tmpdir(tag)) || asprintf(&t->vdir, "%s/vlog", t->dir) < 0) {
		fprintf(stderr, "tu_store_new(%s): out of memory or no temp dir\n", tag);
		if (t)
			free(t->dir);
		free(t);
		return NULL;
	}
	if (store_open(t->dir, &t->s, err, sizeof(err)) != 0) {
		fprintf(stderr, "tu_store_new(%s): store_open %s: %s\n", tag, t->dir, err);
		tu_store_free(t);
		return NULL;
	}
	return t;
}

void tu_store_free(tu_store *t)
{
	if (!t)
		return;
	if (t->s)
		store_close(t->s);
	tu_rmtree(t->dir);
	tu_rmtree(t->other);
	free(t->dir);
	free(t->other);
	free(t->vdir);
	free(t);
}

int tu_store_reopen(tu_store *t, char *err, size_t errlen)
{
	if (t->s)
		store_close(t->s);
	t->s = NULL;
	return store_open(t->dir, &t->s, err, errlen);
}

void tu_save(struct store *s, const raft_hard_state *hs, uint64_t lo, uint64_t hi, uint64_t term,
	     const size_t *lens)
{
	raft_entry *ents = calloc(hi - lo, sizeof(*ents));
	int rv;

	assert_non_null(ents);
	for (uint64_t i = lo; i < hi; i++)
		tu_entry(&ents[i - lo], i, term, lens[i - lo]);
	rv = store_save(s, hs, ents, hi - lo);
	raft_entries_free(ents, hi - lo);
	if (rv != 0)
		fail_msg("save %llu..%llu: %s", (unsigned long long)lo, (unsigned long long)hi - 1,
			 store_errmsg(s));
}

void tu_check(struct store *s, uint64_t lo, uint64_t hi, uint64_t term)
{
	raft_entry *ents;
	size_t n;

	if (store_entries(s, lo, hi, UINT64_MAX, &ents, &n) != 0)
		fail_msg("entries %llu..%llu: %s", (unsigned long long)lo,
			 (unsigned long long)hi - 1, store_errmsg(s));
	assert_int_equal(n, hi - lo);
	for (size_t i = 0; i < n; i++)
		assert_true(tu_entry_ok(&ents[i], lo + i, term));
	raft_entries_free(ents, n);
}

char *tu_vlog_path(const tu_store *t, uint64_t seq)
{
	char *p;

	assert_true(asprintf(&p, "%s/%016llx.vlog", t->vdir, (unsigned long long)seq) > 0);
	return p;
}
