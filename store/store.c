/* store.c — opening the RocksDB store, checksummed records, the raft log
 * and the hard and conf states.
 *
 * Layout: one column family (the default); a key's first byte says what it
 * is, and numbers in keys are big-endian so bytewise order is numeric:
 *
 *   "mformat"                     magic "raftfs-store" + be32 format version
 *   "mhard"                       raftpb.HardState
 *   "mconf"                       raftpb.ConfState (membership as applied)
 *   "mlogstart"                   be64 index, be64 term of the last discarded
 *                                 entry (the compaction point; absent = 0, 0)
 *   "msnap"                       the current snapshot: be64 generation,
 *                                 be64 data length, raftpb.SnapshotMetadata
 *   "mstage"                      the staged snapshot, same shape (absent
 *                                 when none); its length is what is written
 *   'e' be64(index)               raftpb.Entry
 *   'c' be64(gen) be64(offset)    a chunk of snapshot data of generation gen
 *
 * Every value is [le32 crc32c(key bytes, payload)][payload]: covering the
 * key too catches a value that ended up under the wrong key, not only a
 * flipped bit. A record that fails the check is an error naming its key.
 */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec.h"
#include "crc32c.h"

const char KEY_FORMAT[] = "mformat";
const char KEY_HARD_STATE[] = "mhard";
const char KEY_CONF_STATE[] = "mconf";
const char KEY_LOG_START[] = "mlogstart";
const char KEY_SNAPSHOT[] = "msnap";
const char KEY_STAGE[] = "mstage";

static const char FORMAT_MAGIC[12] = "raftfs-store"; /* not NUL-terminated */
#define FORMAT_LEN (sizeof(FORMAT_MAGIC) + 4)
#define CRC_LEN 4

/* ---- errors, keys, records ---- */

int store_fail(store *s, int code, const char *fmt, ...)
{
	int n = snprintf(s->errmsg, sizeof(s->errmsg), "store %s: ", s->dir ? s->dir : "?");
	if (n < 0 || (size_t)n >= sizeof(s->errmsg))
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->errmsg + n, sizeof(s->errmsg) - (size_t)n, fmt, ap);
	va_end(ap);
	return code;
}

const char *store_errmsg(const store *s)
{
	return s->errmsg;
}

const char *store_dir(const store *s)
{
	return s->dir;
}

void be64_put(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

uint64_t be64_get(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

size_t key_entry(uint8_t *k, uint64_t index)
{
	k[0] = KEY_PREFIX_ENTRY;
	be64_put(k + 1, index);
	return 9;
}

size_t key_chunk(uint8_t *k, uint64_t gen, uint64_t offset)
{
	k[0] = KEY_PREFIX_CHUNK;
	be64_put(k + 1, gen);
	be64_put(k + 9, offset);
	return 17;
}

/* A key as a person reads it in an error message. */
static const char *key_describe(const uint8_t *k, size_t klen, char *buf, size_t cap)
{
	if (klen == 9 && k[0] == KEY_PREFIX_ENTRY)
		snprintf(buf, cap, "entry %llu", (unsigned long long)be64_get(k + 1));
	else if (klen == 17 && k[0] == KEY_PREFIX_CHUNK)
		snprintf(buf, cap, "snapshot chunk (generation %llu, offset %llu)",
			 (unsigned long long)be64_get(k + 1), (unsigned long long)be64_get(k + 9));
	else
		snprintf(buf, cap, "record \"%.*s\"", (int)klen, (const char *)k);
	return buf;
}

uint8_t *rec_buf(store *s, size_t plen)
{
	size_t need = CRC_LEN + plen;
	if (need > s->scratch_cap) {
		size_t cap = s->scratch_cap ? s->scratch_cap : 4096;
		while (cap < need)
			cap *= 2;
		uint8_t *p = realloc(s->scratch, cap);
		if (!p) {
			store_fail(s, RAFT_ENOMEM, "out of memory for a %zu-byte value", need);
			return NULL;
		}
		s->scratch = p;
		s->scratch_cap = cap;
	}
	return s->scratch + CRC_LEN;
}

static uint32_t rec_crc(const uint8_t *key, size_t klen, const uint8_t *payload, size_t plen)
{
	return crc32c_extend(crc32c_extend(0, key, klen), payload, plen);
}

void rec_put(store *s, rocksdb_writebatch_t *b, const uint8_t *key, size_t klen, size_t plen)
{
	uint32_t crc = rec_crc(key, klen, s->scratch + CRC_LEN, plen);
	for (int i = 0; i < CRC_LEN; i++)
		s->scratch[i] = (uint8_t)(crc >> (8 * i));
	rocksdb_writebatch_put(b, (const char *)key, klen, (const char *)s->scratch,
			       CRC_LEN + plen);
}

int rec_check(store *s, const uint8_t *key, size_t klen, const char *val, size_t vlen,
	      const uint8_t **payload, size_t *plen)
{
	char name[96];
	if (vlen < CRC_LEN)
		return store_fail(s, RAFT_ECORRUPT, "%s: value truncated to %zu bytes",
				  key_describe(key, klen, name, sizeof(name)), vlen);
	const uint8_t *v = (const uint8_t *)val;
	uint32_t stored =
	    (uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 24;
	uint32_t actual = rec_crc(key, klen, v + CRC_LEN, vlen - CRC_LEN);
	if (stored != actual)
		return store_fail(
		    s, RAFT_ECORRUPT,
		    "%s: checksum mismatch (stored %08x, computed %08x over %zu bytes)",
		    key_describe(key, klen, name, sizeof(name)), stored, actual, vlen);
	*payload = v + CRC_LEN;
	*plen = vlen - CRC_LEN;
	return 0;
}

int rec_get(store *s, const uint8_t *key, size_t klen, rocksdb_pinnableslice_t **ps,
	    const uint8_t **payload, size_t *plen)
{
	char *err = NULL;
	char name[96];
	*ps = rocksdb_get_pinned(s->db, s->ro, (const char *)key, klen, &err);
	if (err) {
		int rv = store_fail(s, RAFT_EIO, "read %s: %s",
				    key_describe(key, klen, name, sizeof(name)), err);
		rocksdb_free(err);
		return rv;
	}
	if (!*ps)
		return 0;
	size_t vlen;
	const char *val = rocksdb_pinnableslice_value(*ps, &vlen);
	int rv = rec_check(s, key, klen, val, vlen, payload, plen);
	if (rv != 0) {
		rocksdb_pinnableslice_destroy(*ps);
		*ps = NULL;
		return rv;
	}
	return 1;
}

int batch_write(store *s, rocksdb_writebatch_t *b, bool sync, const char *what)
{
	char *err = NULL;
	rocksdb_write(s->db, sync ? s->wo_sync : s->wo_async, b, &err);
	if (err) {
		int rv = store_fail(s, RAFT_EIO, "%s: write: %s", what, err);
		rocksdb_free(err);
		return rv;
	}
	return 0;
}

/* ---- entries ---- */

static int entry_put(store *s, rocksdb_writebatch_t *b, const raft_entry *e)
{
	uint8_t key[KEY_MAX];
	size_t klen = key_entry(key, e->index);
	size_t plen = codec_entry_size(e);
	uint8_t *p = rec_buf(s, plen);
	if (!p)
		return RAFT_ENOMEM;
	codec_entry_pack(e, p);
	rec_put(s, b, key, klen, plen);
	return 0;
}

/* Decodes a verified entry payload stored under index. */
static int entry_decode(store *s, uint64_t index, const uint8_t *payload, size_t plen,
			raft_entry *e)
{
	if (codec_entry_decode(payload, plen, e) != 0)
		return store_fail(s, RAFT_ECORRUPT, "entry %llu: does not decode as raftpb.Entry",
				  (unsigned long long)index);
	if (e->index != index) {
		unsigned long long got = e->index;
		raft_entry_free_contents(e);
		return store_fail(s, RAFT_ECORRUPT, "entry %llu: holds index %llu",
				  (unsigned long long)index, got);
	}
	return 0;
}

static int entry_get(store *s, uint64_t index, raft_entry *e)
{
	uint8_t key[KEY_MAX];
	size_t klen = key_entry(key, index);
	rocksdb_pinnableslice_t *ps;
	const uint8_t *payload;
	size_t plen;
	int rv = rec_get(s, key, klen, &ps, &payload, &plen);
	if (rv == 0)
		return store_fail(s, RAFT_ECORRUPT, "entry %llu: missing (log holds %llu..%llu)",
				  (unsigned long long)index,
				  (unsigned long long)s->compact_index + 1,
				  (unsigned long long)s->last_index);
	if (rv < 0)
		return rv;
	rv = entry_decode(s, index, payload, plen, e);
	rocksdb_pinnableslice_destroy(ps);
	return rv;
}

uint64_t store_first_index(const store *s)
{
	return s->compact_index + 1;
}

uint64_t store_last_index(const store *s)
{
	return s->last_index;
}

int store_term(store *s, uint64_t index, uint64_t *term)
{
	if (index < s->compact_index)
		return RAFT_ECOMPACTED;
	if (index > s->last_index)
		return RAFT_EUNAVAILABLE;
	if (index == s->compact_index) {
		*term = s->compact_term;
		return 0;
	}
	if (index == s->last_index) {
		*term = s->last_term;
		return 0;
	}
	raft_entry e;
	int rv = entry_get(s, index, &e);
	if (rv != 0)
		return rv;
	*term = e.term;
	raft_entry_free_contents(&e);
	return 0;
}

static int iter_status(store *s, rocksdb_iterator_t *it, const char *what)
{
	char *err = NULL;
	rocksdb_iter_get_error(it, &err);
	if (!err)
		return 0;
	int rv = store_fail(s, RAFT_EIO, "%s: %s", what, err);
	rocksdb_free(err);
	return rv;
}

/* Appends one entry to the growing array *arr. */
static int entries_push(raft_entry **arr, size_t *n, size_t *cap, raft_entry *e)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		raft_entry *p = realloc(*arr, ncap * sizeof(*p));
		if (!p)
			return RAFT_ENOMEM;
		*arr = p;
		*cap = ncap;
	}
	(*arr)[(*n)++] = *e;
	return 0;
}

int store_entries(store *s, uint64_t lo, uint64_t hi, uint64_t max_bytes, raft_entry **out,
		  size_t *n)
{
	*out = NULL;
	*n = 0;
	if (lo > hi)
		return store_fail(s, RAFT_EINVAL, "entries [%llu, %llu): bad range",
				  (unsigned long long)lo, (unsigned long long)hi);
	if (lo <= s->compact_index)
		return RAFT_ECOMPACTED;
	if (hi > s->last_index + 1)
		return RAFT_EUNAVAILABLE;
	if (lo == hi)
		return 0;

	raft_entry *arr = NULL;
	size_t cnt = 0, cap = 0;
	uint64_t bytes = 0;
	int rv = 0;
	uint8_t key[KEY_MAX];
	size_t klen = key_entry(key, lo);
	rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ro);
	rocksdb_iter_seek(it, (const char *)key, klen);
	for (uint64_t want = lo; want < hi; want++, rocksdb_iter_next(it)) {
		klen = key_entry(key, want);
		size_t got_len = 0;
		const char *got = rocksdb_iter_valid(it) ? rocksdb_iter_key(it, &got_len) : NULL;
		if (!got || got_len != klen || memcmp(got, key, klen) != 0) {
			rv = iter_status(s, it, "read entries");
			if (rv == 0)
				rv = store_fail(s, RAFT_ECORRUPT,
						"entry %llu: missing (log holds %llu..%llu)",
						(unsigned long long)want,
						(unsigned long long)s->compact_index + 1,
						(unsigned long long)s->last_index);
			break;
		}
		size_t vlen, plen;
		const char *val = rocksdb_iter_value(it, &vlen);
		const uint8_t *payload;
		raft_entry e;
		rv = rec_check(s, key, klen, val, vlen, &payload, &plen);
		if (rv == 0)
			rv = entry_decode(s, want, payload, plen, &e);
		if (rv != 0)
			break;
		uint64_t size = raft_entry_size(&e);
		if (cnt > 0 && bytes + size > max_bytes) {
			raft_entry_free_contents(&e);
			break;
		}
		if (entries_push(&arr, &cnt, &cap, &e) != 0) {
			raft_entry_free_contents(&e);
			rv = store_fail(s, RAFT_ENOMEM, "read entries: out of memory at entry %llu",
					(unsigned long long)want);
			break;
		}
		bytes += size;
	}
	rocksdb_iter_destroy(it);
	if (rv != 0) {
		raft_entries_free(arr, cnt);
		return rv;
	}
	*out = arr;
	*n = cnt;
	return 0;
}

static int hard_state_put(store *s, rocksdb_writebatch_t *b, const raft_hard_state *hs)
{
	size_t plen = codec_hard_state_size(hs);
	uint8_t *p = rec_buf(s, plen);
	if (!p)
		return RAFT_ENOMEM;
	codec_hard_state_pack(hs, p);
	rec_put(s, b, (const uint8_t *)KEY_HARD_STATE, strlen(KEY_HARD_STATE), plen);
	return 0;
}

int store_save(store *s, const raft_hard_state *hs, const raft_entry *ents, size_t n)
{
	/* Entries at or below the compaction point are already in the snapshot. */
	size_t skip = 0;
	while (skip < n && ents[skip].index <= s->compact_index)
		skip++;
	ents += skip;
	n -= skip;
	if (!hs && n == 0)
		return 0;
	for (size_t i = 1; i < n; i++)
		if (ents[i].index != ents[i - 1].index + 1)
			return store_fail(s, RAFT_EINVAL,
					  "append: entry %llu follows entry %llu in one batch",
					  (unsigned long long)ents[i].index,
					  (unsigned long long)ents[i - 1].index);
	if (n > 0 && ents[0].index > s->last_index + 1)
		return store_fail(s, RAFT_EUNAVAILABLE,
				  "append: entry %llu would leave a gap after last index %llu",
				  (unsigned long long)ents[0].index,
				  (unsigned long long)s->last_index);

	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	int rv = 0;
	for (size_t i = 0; i < n && rv == 0; i++)
		rv = entry_put(s, b, &ents[i]);
	uint64_t new_last = n ? ents[n - 1].index : s->last_index;
	if (rv == 0 && n > 0 && new_last < s->last_index) {
		/* Raft §5.3: a conflicting entry and all that follow it go. */
		uint8_t from[KEY_MAX], to[KEY_MAX];
		size_t flen = key_entry(from, new_last + 1);
		size_t tlen = key_entry(to, s->last_index + 1);
		rocksdb_writebatch_delete_range(b, (const char *)from, flen, (const char *)to,
						tlen);
	}
	if (rv == 0 && hs)
		rv = hard_state_put(s, b, hs);
	if (rv == 0)
		rv = batch_write(s, b, true, n ? "append entries" : "save hard state");
	rocksdb_writebatch_destroy(b);
	if (rv != 0)
		return rv;
	if (hs)
		s->hs = *hs;
	if (n > 0) {
		s->last_index = new_last;
		s->last_term = ents[n - 1].term;
	}
	return 0;
}

int store_append(store *s, const raft_entry *ents, size_t n)
{
	return store_save(s, NULL, ents, n);
}

int store_set_hard_state(store *s, const raft_hard_state *hs)
{
	return store_save(s, hs, NULL, 0);
}

void store_hard_state(const store *s, raft_hard_state *hs)
{
	*hs = s->hs;
}

int conf_state_put(store *s, rocksdb_writebatch_t *b, const raft_conf_state *cs)
{
	size_t plen = codec_conf_state_size(cs);
	uint8_t *p = rec_buf(s, plen);
	if (!p)
		return RAFT_ENOMEM;
	codec_conf_state_pack(cs, p);
	rec_put(s, b, (const uint8_t *)KEY_CONF_STATE, strlen(KEY_CONF_STATE), plen);
	return 0;
}

int store_set_conf_state(store *s, const raft_conf_state *cs)
{
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	int rv = conf_state_put(s, b, cs);
	if (rv == 0)
		rv = batch_write(s, b, true, "save conf state");
	rocksdb_writebatch_destroy(b);
	return rv;
}

int store_conf_state(store *s, raft_conf_state *cs)
{
	memset(cs, 0, sizeof(*cs));
	rocksdb_pinnableslice_t *ps;
	const uint8_t *payload;
	size_t plen;
	int rv = rec_get(s, (const uint8_t *)KEY_CONF_STATE, strlen(KEY_CONF_STATE), &ps, &payload,
			 &plen);
	if (rv <= 0)
		return rv;
	rv = codec_conf_state_decode(payload, plen, cs);
	rocksdb_pinnableslice_destroy(ps);
	if (rv != 0)
		return store_fail(s, rv, "record \"%s\": does not decode as raftpb.ConfState",
				  KEY_CONF_STATE);
	return 0;
}

void log_start_put(store *s, rocksdb_writebatch_t *b, uint64_t index, uint64_t term)
{
	uint8_t *p = rec_buf(s, 16); /* never fails: scratch is at least 4 KiB after open */
	be64_put(p, index);
	be64_put(p + 8, term);
	rec_put(s, b, (const uint8_t *)KEY_LOG_START, strlen(KEY_LOG_START), 16);
}

int store_compact(store *s, uint64_t index)
{
	if (index < s->compact_index + 1)
		return RAFT_ECOMPACTED;
	if (index > s->last_index)
		return RAFT_EUNAVAILABLE;
	if (index > s->snap.meta.index)
		return store_fail(s, RAFT_EINVAL,
				  "compact through %llu: beyond the snapshot at %llu, entries "
				  "would be lost",
				  (unsigned long long)index,
				  (unsigned long long)s->snap.meta.index);
	uint64_t term;
	int rv = store_term(s, index, &term);
	if (rv != 0)
		return rv;
	uint8_t from[KEY_MAX], to[KEY_MAX];
	size_t flen = key_entry(from, 0);
	size_t tlen = key_entry(to, index + 1);
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	rocksdb_writebatch_delete_range(b, (const char *)from, flen, (const char *)to, tlen);
	log_start_put(s, b, index, term);
	rv = batch_write(s, b, false, "compact log");
	rocksdb_writebatch_destroy(b);
	if (rv != 0)
		return rv;
	s->compact_index = index;
	s->compact_term = term;
	return 0;
}

/* ---- open, format, close ---- */

/* A directory holding anything but a RocksDB database is not ours to take. */
static int check_dir(store *s)
{
	if (mkdir(s->dir, 0755) != 0 && errno != EEXIST)
		return store_fail(s, -errno, "create directory: %s", strerror(errno));
	DIR *d = opendir(s->dir);
	if (!d)
		return store_fail(s, -errno, "open directory: %s", strerror(errno));
	bool empty = true, has_current = false;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		empty = false;
		if (strcmp(de->d_name, "CURRENT") == 0)
			has_current = true;
	}
	closedir(d);
	if (!empty && !has_current)
		return store_fail(s, RAFT_EINVAL,
				  "not a raftfs store: the directory is not empty and holds no "
				  "RocksDB database");
	return 0;
}

static int format_write(store *s)
{
	uint8_t *p = rec_buf(s, FORMAT_LEN);
	if (!p)
		return RAFT_ENOMEM;
	memcpy(p, FORMAT_MAGIC, sizeof(FORMAT_MAGIC));
	for (int i = 0; i < 4; i++)
		p[sizeof(FORMAT_MAGIC) + i] = (uint8_t)(STORE_FORMAT_VERSION >> (24 - 8 * i));
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	rec_put(s, b, (const uint8_t *)KEY_FORMAT, strlen(KEY_FORMAT), FORMAT_LEN);
	int rv = batch_write(s, b, true, "write format record");
	rocksdb_writebatch_destroy(b);
	return rv;
}

static bool db_is_empty(store *s)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ro);
	rocksdb_iter_seek_to_first(it);
	bool empty = !rocksdb_iter_valid(it);
	rocksdb_iter_destroy(it);
	return empty;
}

static int format_check(store *s)
{
	rocksdb_pinnableslice_t *ps;
	const uint8_t *p;
	size_t plen;
	int rv = rec_get(s, (const uint8_t *)KEY_FORMAT, strlen(KEY_FORMAT), &ps, &p, &plen);
	if (rv < 0)
		return rv;
	if (rv == 0) {
		if (db_is_empty(s))
			return format_write(s);
		return store_fail(
		    s, RAFT_EINVAL,
		    "not a raftfs store: a RocksDB database without the \"%s\" record", KEY_FORMAT);
	}
	if (plen != FORMAT_LEN || memcmp(p, FORMAT_MAGIC, sizeof(FORMAT_MAGIC)) != 0) {
		rocksdb_pinnableslice_destroy(ps);
		return store_fail(s, RAFT_EINVAL, "not a raftfs store: bad \"%s\" record",
				  KEY_FORMAT);
	}
	uint32_t version = 0;
	for (int i = 0; i < 4; i++)
		version = (version << 8) | p[sizeof(FORMAT_MAGIC) + i];
	rocksdb_pinnableslice_destroy(ps);
	if (version != STORE_FORMAT_VERSION)
		return store_fail(s, RAFT_EINVAL,
				  "format version %u, but this build reads only version %u",
				  version, STORE_FORMAT_VERSION);
	return 0;
}

static int load_hard_state(store *s)
{
	rocksdb_pinnableslice_t *ps;
	const uint8_t *p;
	size_t plen;
	int rv =
	    rec_get(s, (const uint8_t *)KEY_HARD_STATE, strlen(KEY_HARD_STATE), &ps, &p, &plen);
	if (rv <= 0)
		return rv;
	rv = codec_hard_state_decode(p, plen, &s->hs);
	rocksdb_pinnableslice_destroy(ps);
	if (rv != 0)
		return store_fail(s, rv, "record \"%s\": does not decode as raftpb.HardState",
				  KEY_HARD_STATE);
	return 0;
}

static int load_log_start(store *s)
{
	rocksdb_pinnableslice_t *ps;
	const uint8_t *p;
	size_t plen;
	int rv = rec_get(s, (const uint8_t *)KEY_LOG_START, strlen(KEY_LOG_START), &ps, &p, &plen);
	if (rv <= 0)
		return rv;
	if (plen != 16) {
		rocksdb_pinnableslice_destroy(ps);
		return store_fail(s, RAFT_ECORRUPT, "record \"%s\": %zu bytes, expected 16",
				  KEY_LOG_START, plen);
	}
	s->compact_index = be64_get(p);
	s->compact_term = be64_get(p + 8);
	rocksdb_pinnableslice_destroy(ps);
	return 0;
}

/* Finds the bounds of the stored log and checks they agree with the
 * compaction point. */
static int load_log_bounds(store *s)
{
	uint8_t key[KEY_MAX];
	size_t klen;
	int rv = 0;
	rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ro);

	s->last_index = s->compact_index;
	s->last_term = s->compact_term;
	klen = key_entry(key, UINT64_MAX);
	rocksdb_iter_seek_for_prev(it, (const char *)key, klen);
	size_t got_len = 0;
	const char *got = rocksdb_iter_valid(it) ? rocksdb_iter_key(it, &got_len) : NULL;
	if (got && got_len == 9 && got[0] == KEY_PREFIX_ENTRY) {
		uint64_t last = be64_get((const uint8_t *)got + 1);
		rocksdb_iter_seek(it, (const char *)key, key_entry(key, 0));
		got = rocksdb_iter_key(it, &got_len); /* valid: at least entry `last` exists */
		uint64_t first = be64_get((const uint8_t *)got + 1);
		if (first != s->compact_index + 1)
			rv = store_fail(
			    s, RAFT_ECORRUPT,
			    "log starts at entry %llu, but the compaction point is %llu",
			    (unsigned long long)first, (unsigned long long)s->compact_index);
		else
			s->last_index = last;
	}
	if (rv == 0)
		rv = iter_status(s, it, "find log bounds");
	rocksdb_iter_destroy(it);
	if (rv == 0 && s->last_index > s->compact_index) {
		raft_entry e;
		rv = entry_get(s, s->last_index, &e);
		if (rv == 0) {
			s->last_term = e.term;
			raft_entry_free_contents(&e);
		}
	}
	return rv;
}

static int open_db(store *s)
{
	s->opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(s->opts, 1);
	rocksdb_options_set_info_log_level(s->opts, 2 /* WARN: no chatty LOG files */);
	rocksdb_options_set_keep_log_file_num(s->opts, 2);
	s->wo_sync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(s->wo_sync, 1);
	s->wo_async = rocksdb_writeoptions_create();
	s->ro = rocksdb_readoptions_create();
	rocksdb_readoptions_set_verify_checksums(s->ro, 1);

	char *err = NULL;
	s->db = rocksdb_open(s->opts, s->dir, &err);
	if (err) {
		int rv = store_fail(s, RAFT_EIO, "open RocksDB: %s", err);
		rocksdb_free(err);
		return rv;
	}
	return 0;
}

int store_open(const char *dir, store **out, char *err, size_t errlen)
{
	*out = NULL;
	store *s = calloc(1, sizeof(*s));
	if (!s) {
		if (err)
			snprintf(err, errlen, "store %s: out of memory", dir);
		return RAFT_ENOMEM;
	}
	s->dir = strdup(dir);
	int rv = s->dir ? 0 : store_fail(s, RAFT_ENOMEM, "out of memory");
	if (rv == 0 && !rec_buf(s, 4096))
		rv = RAFT_ENOMEM;
	if (rv == 0)
		rv = check_dir(s);
	if (rv == 0)
		rv = open_db(s);
	if (rv == 0)
		rv = format_check(s);
	if (rv == 0)
		rv = load_hard_state(s);
	if (rv == 0)
		rv = load_log_start(s);
	if (rv == 0)
		rv = load_log_bounds(s);
	if (rv == 0) {
		bool found;
		rv = snap_record_load(s, KEY_SNAPSHOT, &s->snap, &found);
		if (rv == 0 && found && s->snap.meta.index < s->compact_index)
			rv = store_fail(s, RAFT_ECORRUPT,
					"snapshot at %llu is behind the compaction point %llu",
					(unsigned long long)s->snap.meta.index,
					(unsigned long long)s->compact_index);
	}
	if (rv == 0)
		rv = snap_record_load(s, KEY_STAGE, &s->stage, &s->staging);
	if (rv != 0) {
		if (err)
			snprintf(err, errlen, "%s", s->errmsg);
		store_close(s);
		return rv;
	}
	store_iface_init(s);
	*out = s;
	return 0;
}

void store_close(store *s)
{
	if (!s)
		return;
	if (s->db)
		rocksdb_close(s->db);
	if (s->ro)
		rocksdb_readoptions_destroy(s->ro);
	if (s->wo_sync)
		rocksdb_writeoptions_destroy(s->wo_sync);
	if (s->wo_async)
		rocksdb_writeoptions_destroy(s->wo_async);
	if (s->opts)
		rocksdb_options_destroy(s->opts);
	snap_records_free(s);
	free(s->scratch);
	free(s->dir);
	free(s);
}
