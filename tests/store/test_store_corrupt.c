/* test_store_corrupt.c — damaged records are reported, naming the key,
 * never returned as data; stores of another format are refused.
 *
 * The damage is done with the plain RocksDB API behind the store's back
 * (bit flips, truncation, a value moved under another key, a format record
 * of another version). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <rocksdb/c.h>

#include "crc32c.h"
#include "store.h"
#include "test_util.h"

typedef struct fixture {
	char *dir;
	store *s;
	rocksdb_t *raw;
	rocksdb_options_t *opts;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->dir = tu_tmpdir("store-corrupt");
	assert_non_null(f->dir);
	*state = f;
	return 0;
}

static void raw_close(fixture *f)
{
	if (f->raw)
		rocksdb_close(f->raw);
	if (f->opts)
		rocksdb_options_destroy(f->opts);
	f->raw = NULL;
	f->opts = NULL;
}

static int teardown(void **state)
{
	fixture *f = *state;
	store_close(f->s);
	raw_close(f);
	tu_rmtree(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static void open_store(fixture *f)
{
	char err[512];
	if (store_open(f->dir, &f->s, err, sizeof(err)) != 0)
		fail_msg("open: %s", err);
}

static void close_store(fixture *f)
{
	store_close(f->s);
	f->s = NULL;
}

/* Opens the store's directory with plain RocksDB (store closed). */
static void raw_open(fixture *f, bool create)
{
	char *err = NULL;
	f->opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(f->opts, create);
	f->raw = rocksdb_open(f->opts, f->dir, &err);
	if (err)
		fail_msg("raw open %s: %s", f->dir, err);
}

static char *raw_get(fixture *f, const void *key, size_t klen, size_t *vlen)
{
	char *err = NULL;
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	char *v = rocksdb_get(f->raw, ro, key, klen, vlen, &err);
	rocksdb_readoptions_destroy(ro);
	assert_null(err);
	assert_non_null(v);
	return v;
}

static void raw_put(fixture *f, const void *key, size_t klen, const void *val, size_t vlen)
{
	char *err = NULL;
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
	rocksdb_put(f->raw, wo, key, klen, val, vlen, &err);
	rocksdb_writeoptions_destroy(wo);
	assert_null(err);
}

static size_t entry_key(uint8_t *k, uint64_t index)
{
	k[0] = 'e';
	for (int i = 0; i < 8; i++)
		k[1 + i] = (uint8_t)(index >> (56 - 8 * i));
	return 9;
}

static void append(store *s, uint64_t lo, uint64_t hi)
{
	raft_entry *ents = tu_entries(lo, hi, 1, 100);
	assert_int_equal(store_append(s, ents, hi - lo), 0);
	raft_entries_free(ents, hi - lo);
}

/* Replaces entry index's stored value by what damage() makes of it. */
static void damage_entry(fixture *f, uint64_t index, size_t (*damage)(char *v, size_t len))
{
	uint8_t key[9];
	size_t klen = entry_key(key, index), vlen;
	raw_open(f, false);
	char *v = raw_get(f, key, klen, &vlen);
	vlen = damage(v, vlen);
	raw_put(f, key, klen, v, vlen);
	rocksdb_free(v);
	raw_close(f);
}

static size_t flip_bit(char *v, size_t len)
{
	v[len / 2] ^= 0x10;
	return len;
}

static size_t truncate_short(char *v, size_t len)
{
	return 2;
}

static size_t truncate_half(char *v, size_t len)
{
	return len / 2;
}

static void expect_error_naming(store *s, int rv, const char *what, const char *detail)
{
	assert_int_equal(rv, RAFT_ECORRUPT);
	const char *msg = store_errmsg(s);
	if (!strstr(msg, what) || !strstr(msg, detail))
		fail_msg("error \"%s\" does not name \"%s\" / \"%s\"", msg, what, detail);
}

static void test_flipped_entry(void **state)
{
	fixture *f = *state;
	open_store(f);
	append(f->s, 1, 6);
	close_store(f);
	damage_entry(f, 3, flip_bit);
	open_store(f);

	raft_entry *ents;
	size_t n;
	uint64_t t;
	expect_error_naming(f->s, store_entries(f->s, 1, 6, UINT64_MAX, &ents, &n), "entry 3",
			    "checksum mismatch");
	assert_null(ents);
	expect_error_naming(f->s, store_term(f->s, 3, &t), "entry 3", "checksum");
	raft_storage *st = store_raft_storage(f->s);
	expect_error_naming(f->s, st->entries(st->ctx, 2, 4, UINT64_MAX, &ents, &n), "entry 3",
			    f->dir);
	/* The rest of the log still reads. */
	assert_int_equal(store_entries(f->s, 4, 6, UINT64_MAX, &ents, &n), 0);
	assert_int_equal(n, 2);
	raft_entries_free(ents, n);
	/* A cap that stops before the damage reads fine too. */
	assert_int_equal(store_entries(f->s, 1, 6, 1, &ents, &n), 0);
	assert_int_equal(n, 1);
	raft_entries_free(ents, n);
}

static void test_truncated_entries(void **state)
{
	fixture *f = *state;
	open_store(f);
	append(f->s, 1, 6);
	close_store(f);
	damage_entry(f, 2, truncate_short);
	damage_entry(f, 4, truncate_half);
	open_store(f);
	uint64_t t;
	expect_error_naming(f->s, store_term(f->s, 2, &t), "entry 2", "truncated to 2 bytes");
	expect_error_naming(f->s, store_term(f->s, 4, &t), "entry 4", "checksum");
}

/* The checksum covers the key: a sound value under the wrong key is caught. */
static void test_value_under_wrong_key(void **state)
{
	fixture *f = *state;
	open_store(f);
	append(f->s, 1, 6);
	close_store(f);
	raw_open(f, false);
	uint8_t k2[9], k3[9];
	size_t vlen;
	char *v = raw_get(f, k2, entry_key(k2, 2), &vlen);
	raw_put(f, k3, entry_key(k3, 3), v, vlen);
	rocksdb_free(v);
	raw_close(f);
	open_store(f);
	uint64_t t;
	expect_error_naming(f->s, store_term(f->s, 3, &t), "entry 3", "checksum");
}

static void test_damage_found_at_open(void **state)
{
	fixture *f = *state;
	open_store(f);
	append(f->s, 1, 6);
	raft_hard_state hs = {.term = 3, .vote = 2, .commit = 4};
	assert_int_equal(store_set_hard_state(f->s, &hs), 0);
	close_store(f);

	/* The last entry is read at open (its term is cached). */
	damage_entry(f, 5, flip_bit);
	char err[512];
	store *s = NULL;
	assert_int_equal(store_open(f->dir, &s, err, sizeof(err)), RAFT_ECORRUPT);
	assert_null(s);
	assert_non_null(strstr(err, "entry 5"));
	assert_non_null(strstr(err, f->dir));

	raw_open(f, false);
	uint8_t k5[9];
	size_t vlen;
	char *v = raw_get(f, "mhard", 5, &vlen);
	v[vlen - 1] ^= 1;
	raw_put(f, "mhard", 5, v, vlen);
	rocksdb_free(v);
	/* Drop the damaged entry so the hard state is what fails now. */
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
	char *e = NULL;
	rocksdb_delete(f->raw, wo, (const char *)k5, entry_key(k5, 5), &e);
	rocksdb_writeoptions_destroy(wo);
	assert_null(e);
	raw_close(f);
	assert_int_equal(store_open(f->dir, &s, err, sizeof(err)), RAFT_ECORRUPT);
	assert_non_null(strstr(err, "\"mhard\""));
	assert_non_null(strstr(err, "checksum"));
}

static void test_corrupt_snapshot_chunk(void **state)
{
	fixture *f = *state;
	open_store(f);
	uint8_t data[3000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	for (int gen = 1; gen <= 2; gen++) {
		raft_snapshot_meta m = {.index = (uint64_t)gen, .term = 1};
		assert_int_equal(store_snapshot_begin(f->s, &m), 0);
		for (size_t off = 0; off < sizeof(data); off += 1000)
			assert_int_equal(store_snapshot_write(f->s, off, data + off, 1000), 0);
		assert_int_equal(store_snapshot_install(f->s), 0);
	}
	close_store(f);

	raw_open(f, false);
	/* Installing generation 2 deleted every chunk of generation 1. */
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = rocksdb_create_iterator(f->raw, ro);
	size_t chunks = 0;
	for (rocksdb_iter_seek(it, "c", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
		if (k[0] != 'c')
			break;
		assert_int_equal(klen, 17);
		assert_int_equal(k[8], 2); /* low byte of the big-endian generation */
		chunks++;
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	assert_int_equal(chunks, 3);

	uint8_t key[17] = {'c'};
	key[8] = 2;
	key[15] = 1000 >> 8;
	key[16] = 1000 & 0xff;
	size_t vlen;
	char *v = raw_get(f, key, sizeof(key), &vlen);
	v[500] ^= 0x40;
	raw_put(f, key, sizeof(key), v, vlen);
	rocksdb_free(v);
	raw_close(f);

	open_store(f);
	uint8_t buf[3000];
	size_t n;
	assert_int_equal(store_snapshot_read(f->s, 0, buf, 1000, &n), 0);
	assert_int_equal(n, 1000);
	assert_memory_equal(buf, data, 1000);
	expect_error_naming(f->s, store_snapshot_read(f->s, 0, buf, sizeof(buf), &n),
			    "snapshot chunk (generation 2, offset 1000)", "checksum");
	raft_storage *st = store_raft_storage(f->s);
	raft_snapshot snap;
	expect_error_naming(f->s, st->snapshot(st->ctx, &snap), "offset 1000", "checksum");
	assert_null(snap.data);
}

static void put_format(fixture *f, const char *magic, uint32_t version)
{
	uint8_t val[4 + 16];
	memcpy(val + 4, magic, 12);
	for (int i = 0; i < 4; i++)
		val[16 + i] = (uint8_t)(version >> (24 - 8 * i));
	uint32_t crc = crc32c_extend(crc32c_extend(0, "mformat", 7), val + 4, 16);
	for (int i = 0; i < 4; i++)
		val[i] = (uint8_t)(crc >> (8 * i));
	raw_put(f, "mformat", 7, val, sizeof(val));
}

static void test_format_version_refused(void **state)
{
	fixture *f = *state;
	open_store(f);
	append(f->s, 1, 3);
	close_store(f);

	raw_open(f, false);
	put_format(f, "raftfs-store", 99);
	raw_close(f);
	char err[512];
	store *s = NULL;
	assert_int_equal(store_open(f->dir, &s, err, sizeof(err)), RAFT_EINVAL);
	assert_null(s);
	if (!strstr(err, f->dir) || !strstr(err, "format version 99") || !strstr(err, "version 1"))
		fail_msg("unclear refusal: %s", err);

	raw_open(f, false);
	put_format(f, "other-stuff!", 1);
	raw_close(f);
	assert_int_equal(store_open(f->dir, &s, err, sizeof(err)), RAFT_EINVAL);
	assert_non_null(strstr(err, "not a raftfs store"));

	/* Back to this version: the store opens and its log is intact. */
	raw_open(f, false);
	put_format(f, "raftfs-store", STORE_FORMAT_VERSION);
	raw_close(f);
	open_store(f);
	assert_int_equal(store_last_index(f->s), 2);
}

static void test_foreign_rocksdb_refused(void **state)
{
	fixture *f = *state;
	raw_open(f, true);
	raw_put(f, "somebody", 8, "else's", 6);
	raw_close(f);
	char err[512];
	store *s = NULL;
	assert_int_equal(store_open(f->dir, &s, err, sizeof(err)), RAFT_EINVAL);
	assert_non_null(strstr(err, "not a raftfs store"));
	assert_non_null(strstr(err, f->dir));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_flipped_entry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_entries, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_value_under_wrong_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damage_found_at_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_snapshot_chunk, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_format_version_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_foreign_rocksdb_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
