/* record.c — the store's keys, checksummed values and error messages.
 *
 * Every value is [le32 crc32c(key bytes, payload)][payload]: covering the
 * key too catches a value that ended up under the wrong key, not only a
 * flipped bit. A record that fails the check is an error naming its key.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "store_int.h"

#define CRC_LEN 4

const char KEY_FORMAT[] = "mformat";
const char KEY_HARD_STATE[] = "mhard";
const char KEY_CONF_STATE[] = "mconf";
const char KEY_LOG_START[] = "mlogstart";
const char KEY_SNAPSHOT[] = "msnap";
const char KEY_STAGE[] = "mstage";

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

int store_sync_failed(store *s, int code)
{
	int none = 0;

	atomic_compare_exchange_strong(&s->sync_failed, &none, code);
	return code;
}

int store_check_synced(store *s, const char *what)
{
	int code = atomic_load(&s->sync_failed);

	if (!code)
		return 0;
	return store_fail(s, code,
			  "%s: refused: a sync of this store failed before (what it was to "
			  "make durable may be lost); reopen the store",
			  what);
}

void store_sync_lock(store *s)
{
	atomic_fetch_add(&s->sync_waiting, 1);
	pthread_mutex_lock(&s->sync_mu);
	atomic_fetch_sub(&s->sync_waiting, 1);
}

void store_sync_unlock(store *s)
{
	pthread_mutex_unlock(&s->sync_mu);
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

size_t rec_size(size_t plen)
{
	return CRC_LEN + plen;
}

size_t rec_make(uint8_t *dst, const uint8_t *key, size_t klen, const void *payload, size_t plen)
{
	uint32_t crc;

	memcpy(dst + CRC_LEN, payload, plen);
	crc = rec_crc(key, klen, dst + CRC_LEN, plen);
	for (int i = 0; i < CRC_LEN; i++)
		dst[i] = (uint8_t)(crc >> (8 * i));
	return CRC_LEN + plen;
}

int rec_verify(const uint8_t *key, size_t klen, const char *val, size_t vlen,
	       const uint8_t **payload, size_t *plen, char *why, size_t whylen)
{
	char name[96];
	if (vlen < CRC_LEN) {
		snprintf(why, whylen, "%s: value truncated to %zu bytes",
			 key_describe(key, klen, name, sizeof(name)), vlen);
		return RAFT_ECORRUPT;
	}
	const uint8_t *v = (const uint8_t *)val;
	uint32_t stored =
	    (uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 24;
	uint32_t actual = rec_crc(key, klen, v + CRC_LEN, vlen - CRC_LEN);
	if (stored != actual) {
		snprintf(why, whylen,
			 "%s: checksum mismatch (stored %08x, computed %08x over %zu bytes)",
			 key_describe(key, klen, name, sizeof(name)), stored, actual, vlen);
		return RAFT_ECORRUPT;
	}
	*payload = v + CRC_LEN;
	*plen = vlen - CRC_LEN;
	return 0;
}

int rec_check(store *s, const uint8_t *key, size_t klen, const char *val, size_t vlen,
	      const uint8_t **payload, size_t *plen)
{
	char why[160];
	int rv = rec_verify(key, klen, val, vlen, payload, plen, why, sizeof(why));
	return rv == 0 ? 0 : store_fail(s, rv, "%s", why);
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
	int rv = store_check_synced(s, what);

	if (rv)
		return rv;
	if (!sync) {
		rocksdb_write(s->db, s->wo_async, b, &err);
		if (!err)
			return 0;
		rv = store_fail(s, RAFT_EIO, "%s: write: %s", what, err);
		rocksdb_free(err);
		return rv;
	}
	/* Its sync may take the WAL's writeback error from a concurrent
	 * store_save_sync: latched before anyone else syncs (store_int.h). */
	store_sync_lock(s);
	rocksdb_write(s->db, s->wo_sync, b, &err);
	int test_rv = s->synced_write_hook ? s->synced_write_hook(s, s->synced_write_arg) : 0;
	if (err) {
		/* Any error of a synced write latches, also one that came
		 * before its sync (ENOSPC on the WAL append): the C API gives
		 * only a message, and RocksDB itself refuses writes after a
		 * failed WAL write until it recovers. The node stops at its
		 * next save; a restart reads back what is on disk. */
		rv = store_sync_failed(s, store_fail(s, RAFT_EIO, "%s: write: %s", what, err));
		rocksdb_free(err);
	} else if (test_rv) {
		rv = store_sync_failed(s, store_fail(s, test_rv,
						     "%s: sync: test: failed on purpose "
						     "(store_test_on_synced_write)",
						     what));
	}
	store_sync_unlock(s);
	return rv;
}
