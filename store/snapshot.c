/* snapshot.c — the store's snapshots: metadata records, data in chunks,
 * staging and the atomic install (Raft §7).
 *
 * Each snapshot's data lives in chunks keyed by (generation, offset). The
 * staged snapshot always has a generation of its own, so installing it is
 * one WriteBatch that points "msnap" at the new generation and range-deletes
 * the old one: no copy, and a crash leaves either the old snapshot or the
 * new one, never a mix.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "store_int.h"

#define SNAP_HDR 16 /* be64 generation, be64 length */

/* Who is sending the staged snapshot: be64 sender id, be64 sender's term,
 * be64 total length; absent for a local one (store_snapshot_stage_source). */
static const char KEY_STAGE_SOURCE[] = "mstagesrc";

int snap_record_load(store *s, const char *key, snap_record *r, bool *found)
{
	memset(r, 0, sizeof(*r));
	*found = false;
	rocksdb_pinnableslice_t *ps;
	const uint8_t *p;
	size_t plen;
	int rv = rec_get(s, (const uint8_t *)key, strlen(key), &ps, &p, &plen);
	if (rv <= 0)
		return rv;
	if (plen < SNAP_HDR ||
	    codec_snapshot_meta_decode(p + SNAP_HDR, plen - SNAP_HDR, &r->meta) != 0) {
		rocksdb_pinnableslice_destroy(ps);
		return store_fail(s, RAFT_ECORRUPT, "record \"%s\": does not decode as a snapshot",
				  key);
	}
	r->gen = be64_get(p);
	r->len = be64_get(p + 8);
	rocksdb_pinnableslice_destroy(ps);
	*found = true;
	return 0;
}

int snap_record_put(store *s, rocksdb_writebatch_t *b, const char *key, const snap_record *r)
{
	size_t plen = SNAP_HDR + codec_snapshot_meta_size(&r->meta);
	uint8_t *p = rec_buf(s, plen);
	if (!p)
		return RAFT_ENOMEM;
	be64_put(p, r->gen);
	be64_put(p + 8, r->len);
	codec_snapshot_meta_pack(&r->meta, p + SNAP_HDR);
	rec_put(s, b, (const uint8_t *)key, strlen(key), plen);
	return 0;
}

void snap_records_free(store *s)
{
	raft_conf_state_free_contents(&s->snap.meta.conf);
	raft_conf_state_free_contents(&s->stage.meta.conf);
}

/* Adds the deletion of every chunk of generation gen to the batch. */
static void chunks_delete(rocksdb_writebatch_t *b, uint64_t gen, uint64_t from_offset)
{
	uint8_t from[KEY_MAX], to[KEY_MAX];
	size_t flen = key_chunk(from, gen, from_offset);
	size_t tlen = key_chunk(to, gen + 1, 0);
	rocksdb_writebatch_delete_range(b, (const char *)from, flen, (const char *)to, tlen);
}

/* The chunks of generation gen were deleted (a range tombstone): asks
 * RocksDB to compact the tables that still hold their bytes soon, in its
 * background threads, rather than whenever the levels next fill up, so
 * the directory holds about one image beside the log, not several
 * replaced ones. Best effort: a failure only delays reclaiming the space. */
static void chunks_reclaim(store *s, uint64_t gen)
{
	uint8_t from[KEY_MAX], to[KEY_MAX];
	size_t flen = key_chunk(from, gen, 0);
	size_t tlen = key_chunk(to, gen + 1, 0);
	char *err = NULL;

	rocksdb_suggest_compact_range(s->db, (const char *)from, flen, (const char *)to, tlen,
				      &err);
	rocksdb_free(err);
}

int store_snapshot_meta(store *s, raft_snapshot_meta *meta, uint64_t *len)
{
	memset(meta, 0, sizeof(*meta));
	if (raft_conf_state_copy(&meta->conf, &s->snap.meta.conf) != 0)
		return store_fail(s, RAFT_ENOMEM, "copy snapshot metadata: out of memory");
	meta->index = s->snap.meta.index;
	meta->term = s->snap.meta.term;
	if (len)
		*len = s->snap.len;
	return 0;
}

int store_snapshot_read(store *s, uint64_t offset, void *buf, size_t cap, size_t *n)
{
	*n = 0;
	if (offset >= s->snap.len || cap == 0)
		return 0;
	uint64_t gen = s->snap.gen;
	uint64_t end = offset + cap < s->snap.len ? offset + cap : s->snap.len;
	uint64_t pos = offset;
	uint8_t key[KEY_MAX];
	size_t klen = key_chunk(key, gen, offset);
	int rv = 0;
	rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ro);

	/* The chunk holding offset is the last one starting at or before it. */
	rocksdb_iter_seek_for_prev(it, (const char *)key, klen);
	while (pos < end) {
		size_t got_len = 0;
		const uint8_t *got =
		    rocksdb_iter_valid(it) ? (const uint8_t *)rocksdb_iter_key(it, &got_len) : NULL;
		uint64_t chunk_off =
		    got && got_len == 17 && got[0] == KEY_PREFIX_CHUNK && be64_get(got + 1) == gen
			? be64_get(got + 9)
			: UINT64_MAX;
		size_t vlen, plen = 0;
		const uint8_t *payload = NULL;
		if (chunk_off <= pos) {
			const char *val = rocksdb_iter_value(it, &vlen);
			rv = rec_check(s, got, got_len, val, vlen, &payload, &plen);
			if (rv != 0)
				break;
		}
		if (!payload || pos >= chunk_off + plen) {
			char *err = NULL;
			rocksdb_iter_get_error(it, &err);
			if (err) {
				rv = store_fail(s, RAFT_EIO, "read snapshot data: %s", err);
				rocksdb_free(err);
			} else {
				rv = store_fail(s, RAFT_ECORRUPT,
						"snapshot generation %llu: no data at offset %llu "
						"of %llu",
						(unsigned long long)gen, (unsigned long long)pos,
						(unsigned long long)s->snap.len);
			}
			break;
		}
		uint64_t in_chunk = pos - chunk_off;
		uint64_t take = plen - in_chunk;
		if (take > end - pos)
			take = end - pos;
		memcpy((uint8_t *)buf + (pos - offset), payload + in_chunk, take);
		pos += take;
		rocksdb_iter_next(it);
	}
	rocksdb_iter_destroy(it);
	if (rv != 0)
		return rv;
	*n = (size_t)(pos - offset);
	return 0;
}

int store_snapshot_begin(store *s, const raft_snapshot_meta *meta)
{
	if (meta->index <= s->snap.meta.index)
		return RAFT_ESNAP_OUT_OF_DATE;
	snap_record r = {0};
	r.gen = (s->staging && s->stage.gen > s->snap.gen ? s->stage.gen : s->snap.gen) + 1;
	r.meta.index = meta->index;
	r.meta.term = meta->term;
	if (raft_conf_state_copy(&r.meta.conf, &meta->conf) != 0)
		return store_fail(s, RAFT_ENOMEM, "stage snapshot %llu: out of memory",
				  (unsigned long long)meta->index);

	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	if (s->staging)
		chunks_delete(b, s->stage.gen, 0);
	rocksdb_writebatch_delete(b, KEY_STAGE_SOURCE, strlen(KEY_STAGE_SOURCE));
	int rv = snap_record_put(s, b, KEY_STAGE, &r);
	if (rv == 0)
		rv = batch_write(s, b, false, "stage snapshot");
	rocksdb_writebatch_destroy(b);
	if (rv != 0) {
		raft_conf_state_free_contents(&r.meta.conf);
		return rv;
	}
	if (s->staging && s->stage.len > 0)
		chunks_reclaim(s, s->stage.gen);
	raft_conf_state_free_contents(&s->stage.meta.conf);
	s->stage = r;
	s->staging = true;
	return 0;
}

int store_snapshot_write(store *s, uint64_t offset, const void *buf, size_t len)
{
	if (!s->staging)
		return store_fail(s, RAFT_EINVAL, "write snapshot data: no snapshot staged");
	uint64_t gen = s->stage.gen;
	uint8_t key[KEY_MAX];
	size_t klen = key_chunk(key, gen, offset);
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	int rv = 0;

	if (offset > s->stage.len) {
		rv = store_fail(s, RAFT_EINVAL,
				"write snapshot %llu data at offset %llu: only %llu bytes staged",
				(unsigned long long)s->stage.meta.index, (unsigned long long)offset,
				(unsigned long long)s->stage.len);
	} else if (offset < s->stage.len) {
		/* A resumed transfer restarts at a chunk it wrote before. */
		rocksdb_pinnableslice_t *ps;
		const uint8_t *p;
		size_t plen;
		rv = rec_get(s, key, klen, &ps, &p, &plen);
		if (rv == 0)
			rv = store_fail(s, RAFT_EINVAL,
					"write snapshot %llu data at offset %llu: not the start "
					"of a chunk written before",
					(unsigned long long)s->stage.meta.index,
					(unsigned long long)offset);
		if (rv > 0) {
			rocksdb_pinnableslice_destroy(ps);
			chunks_delete(b, gen, offset);
			rv = 0;
		}
	}
	if (rv == 0 && len > 0) {
		uint8_t *p = rec_buf(s, len);
		if (!p)
			rv = RAFT_ENOMEM;
		else {
			memcpy(p, buf, len);
			rec_put(s, b, key, klen, len);
		}
	}
	uint64_t old_len = s->stage.len;
	if (rv == 0) {
		s->stage.len = offset + len;
		rv = snap_record_put(s, b, KEY_STAGE, &s->stage);
	}
	if (rv == 0)
		rv = batch_write(s, b, false, "write snapshot data");
	rocksdb_writebatch_destroy(b);
	if (rv != 0)
		s->stage.len = old_len;
	return rv;
}

bool store_snapshot_staged(const store *s, uint64_t *index, uint64_t *len)
{
	if (s->staging) {
		if (index)
			*index = s->stage.meta.index;
		if (len)
			*len = s->stage.len;
	}
	return s->staging;
}

int store_snapshot_stage_source(store *s, const store_snap_source *src)
{
	uint8_t *p;
	rocksdb_writebatch_t *b;
	int rv;

	if (!s->staging)
		return store_fail(s, RAFT_EINVAL, "record a snapshot's source: none staged");
	p = rec_buf(s, 24);
	if (!p)
		return RAFT_ENOMEM;
	be64_put(p, src->from);
	be64_put(p + 8, src->term);
	be64_put(p + 16, src->total);
	b = rocksdb_writebatch_create();
	rec_put(s, b, (const uint8_t *)KEY_STAGE_SOURCE, strlen(KEY_STAGE_SOURCE), 24);
	rv = batch_write(s, b, false, "record a snapshot's source");
	rocksdb_writebatch_destroy(b);
	return rv;
}

int store_snapshot_staged_source(store *s, store_snap_source *src)
{
	rocksdb_pinnableslice_t *ps;
	const uint8_t *p;
	size_t plen;
	int rv;

	memset(src, 0, sizeof(*src));
	if (!s->staging)
		return 0;
	rv = rec_get(s, (const uint8_t *)KEY_STAGE_SOURCE, strlen(KEY_STAGE_SOURCE), &ps, &p,
		     &plen);
	if (rv <= 0)
		return rv;
	if (plen == 24) {
		src->from = be64_get(p);
		src->term = be64_get(p + 8);
		src->total = be64_get(p + 16);
	}
	rocksdb_pinnableslice_destroy(ps);
	return plen == 24 ? 1
			  : store_fail(s, RAFT_ECORRUPT, "record \"%s\": %zu bytes, not 24",
				       KEY_STAGE_SOURCE, plen);
}

/* Installs the staging; a local one leaves the conf state alone when the
 * log is kept (store_snapshot_install_local). */
static int install(store *s, bool local)
{
	if (!s->staging)
		return store_fail(s, RAFT_EINVAL, "install snapshot: no snapshot staged");
	uint64_t index = s->stage.meta.index, term = s->stage.meta.term;
	if (index <= s->snap.meta.index)
		return RAFT_ESNAP_OUT_OF_DATE;

	/* Raft §7: a log that holds the snapshot's last entry is kept (the
	 * caller compacts it when it likes, store_compact); any other log is
	 * discarded whole and the snapshot becomes the compaction point. */
	bool keep = false;
	if (index > s->compact_index && index <= s->last_index) {
		uint64_t t;
		int rv = store_term(s, index, &t);
		if (rv != 0)
			return rv;
		keep = t == term;
	}

	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	if (!keep) {
		uint8_t from[KEY_MAX], to[KEY_MAX];
		size_t flen = key_entry(from, 0);
		size_t tlen = key_entry(to, UINT64_MAX);
		rocksdb_writebatch_delete_range(b, (const char *)from, flen, (const char *)to,
						tlen);
		log_start_put(s, b, index, term);
	}
	/* The membership becomes the snapshot's, except for a local snapshot
	 * whose log stays: changes from entries after its index may be in
	 * effect already, and would be lost (apply does not run them again). */
	int rv = local && keep ? 0 : conf_state_put(s, b, &s->stage.meta.conf);
	if (rv == 0) {
		chunks_delete(b, s->snap.gen, 0);
		rv = snap_record_put(s, b, KEY_SNAPSHOT, &s->stage);
	}
	if (rv == 0) {
		rocksdb_writebatch_delete(b, KEY_STAGE, strlen(KEY_STAGE));
		rocksdb_writebatch_delete(b, KEY_STAGE_SOURCE, strlen(KEY_STAGE_SOURCE));
		rv = batch_write(s, b, true, "install snapshot");
	}
	rocksdb_writebatch_destroy(b);
	if (rv != 0)
		return rv;
	if (!keep)
		vlog_drop_all(s); /* the data of entries that are gone (durably) */
	if (s->snap.len > 0)
		chunks_reclaim(s, s->snap.gen);

	if (!keep) {
		s->compact_index = index;
		s->compact_term = term;
		s->last_index = index;
		s->last_term = term;
	}
	raft_conf_state_free_contents(&s->snap.meta.conf);
	s->snap = s->stage;
	memset(&s->stage, 0, sizeof(s->stage));
	s->staging = false;
	return 0;
}

int store_snapshot_install(store *s)
{
	return install(s, false);
}

int store_snapshot_install_local(store *s)
{
	return install(s, true);
}

/* ---- readers of a snapshot for other threads ---- */

struct store_snap_reader {
	rocksdb_t *db;
	const rocksdb_snapshot_t *pin;
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	uint8_t upper[KEY_MAX]; /* the next generation's first key (bound) */
	uint64_t gen, len, pos;
	bool positioned; /* the iterator is at the chunk holding pos */
	const char *dir; /* the store's, for messages */
	char errmsg[STORE_ERRMSG_MAX];
};

static int reader_fail(store_snap_reader *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int reader_fail(store_snap_reader *r, int code, const char *fmt, ...)
{
	int n = snprintf(r->errmsg, sizeof(r->errmsg), "store %s: ", r->dir);
	va_list ap;

	if (n < 0 || (size_t)n >= sizeof(r->errmsg))
		return code;
	va_start(ap, fmt);
	vsnprintf(r->errmsg + n, sizeof(r->errmsg) - (size_t)n, fmt, ap);
	va_end(ap);
	return code;
}

int store_snap_reader_open(store *s, uint64_t offset, store_snap_reader **out, uint64_t *index,
			   uint64_t *len)
{
	store_snap_reader *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r)
		return store_fail(s, RAFT_ENOMEM, "snapshot reader: out of memory");
	r->db = s->db;
	r->dir = s->dir;
	r->gen = s->snap.gen;
	r->len = s->snap.len;
	r->pos = offset < r->len ? offset : r->len;
	r->pin = rocksdb_create_snapshot(s->db);
	r->ro = rocksdb_readoptions_create();
	rocksdb_readoptions_set_verify_checksums(r->ro, 1);
	rocksdb_readoptions_set_snapshot(r->ro, r->pin);
	/* A whole image read once: keep it out of the block cache, and read
	 * the files ahead since the reads are sequential. */
	rocksdb_readoptions_set_fill_cache(r->ro, 0);
	rocksdb_readoptions_set_readahead_size(r->ro, 2u << 20);
	rocksdb_readoptions_set_iterate_upper_bound(r->ro, (const char *)r->upper,
						    key_chunk(r->upper, r->gen + 1, 0));
	r->it = rocksdb_create_iterator(s->db, r->ro);
	if (index)
		*index = s->snap.meta.index;
	if (len)
		*len = r->len;
	*out = r;
	return 0;
}

int store_snap_reader_read(store_snap_reader *r, void *buf, size_t cap, uint64_t *offset,
			   size_t *n)
{
	const uint8_t *key, *payload = NULL;
	size_t klen = 0, vlen, plen = 0;
	uint64_t chunk_off = UINT64_MAX;

	*offset = r->pos;
	*n = 0;
	if (r->pos >= r->len || cap == 0)
		return 0;
	if (!r->positioned) {
		uint8_t k[KEY_MAX];

		/* The chunk holding pos is the last one starting at or before it. */
		rocksdb_iter_seek_for_prev(r->it, (const char *)k, key_chunk(k, r->gen, r->pos));
		r->positioned = true;
	}
	key = rocksdb_iter_valid(r->it) ? (const uint8_t *)rocksdb_iter_key(r->it, &klen) : NULL;
	if (key && klen == 17 && key[0] == KEY_PREFIX_CHUNK && be64_get(key + 1) == r->gen)
		chunk_off = be64_get(key + 9);
	if (chunk_off <= r->pos) {
		const char *val = rocksdb_iter_value(r->it, &vlen);
		char why[160];

		if (rec_verify(key, klen, val, vlen, &payload, &plen, why, sizeof(why)) != 0)
			return reader_fail(r, RAFT_ECORRUPT, "%s", why);
	}
	if (!payload || r->pos >= chunk_off + plen) {
		char *err = NULL;
		int rv;

		rocksdb_iter_get_error(r->it, &err);
		if (err) {
			rv = reader_fail(r, RAFT_EIO, "read snapshot data: %s", err);
			rocksdb_free(err);
			return rv;
		}
		return reader_fail(r, RAFT_ECORRUPT,
				   "snapshot generation %llu: no data at offset %llu of %llu",
				   (unsigned long long)r->gen, (unsigned long long)r->pos,
				   (unsigned long long)r->len);
	}
	{
		uint64_t in_chunk = r->pos - chunk_off, take = plen - in_chunk;

		if (take > r->len - r->pos)
			take = r->len - r->pos;
		if (take > cap)
			take = cap;
		memcpy(buf, payload + in_chunk, take);
		r->pos += take;
		*n = (size_t)take;
		if (r->pos >= chunk_off + plen)
			rocksdb_iter_next(r->it);
	}
	return 0;
}

const char *store_snap_reader_errmsg(const store_snap_reader *r)
{
	return r->errmsg;
}

void store_snap_reader_close(store_snap_reader *r)
{
	if (!r)
		return;
	rocksdb_iter_destroy(r->it);
	rocksdb_readoptions_destroy(r->ro);
	rocksdb_release_snapshot(r->db, r->pin);
	free(r);
}

/* ---- a writer of the staged snapshot for other threads ---- */

struct store_snap_writer {
	rocksdb_t *db;
	rocksdb_writeoptions_t *wo;
	uint64_t gen, len; /* staging generation, bytes in it after our writes */
	uint8_t *buf;	   /* checksum + payload of one chunk */
	size_t cap;
	uint64_t waited_ms; /* backing off while RocksDB would stall */
	const char *dir;
	char errmsg[STORE_ERRMSG_MAX];
};

int store_snap_writer_open(store *s, store_snap_writer **out)
{
	store_snap_writer *w;

	*out = NULL;
	if (!s->staging)
		return store_fail(s, RAFT_EINVAL, "write snapshot data: no snapshot staged");
	w = calloc(1, sizeof(*w));
	if (!w)
		return store_fail(s, RAFT_ENOMEM, "snapshot writer: out of memory");
	w->db = s->db;
	w->dir = s->dir;
	w->gen = s->stage.gen;
	w->len = s->stage.len;
	/* Not synced (install is) and never waiting inside RocksDB: a write
	 * that would be slowed down fails with Incomplete instead. */
	w->wo = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_no_slowdown(w->wo, 1);
	*out = w;
	return 0;
}

/* Whether RocksDB refused a write only because it would have stalled. */
static bool write_would_stall(const char *err)
{
	return strstr(err, "ncomplete") != NULL || strstr(err, "stall") != NULL;
}

int store_snap_writer_append(store_snap_writer *w, const void *buf, size_t len,
			     const _Atomic bool *cancel)
{
	uint8_t key[KEY_MAX];
	size_t klen = key_chunk(key, w->gen, w->len), vlen;
	rocksdb_writebatch_t *b;
	int rv = 0;

	if (len == 0)
		return 0;
	if (rec_size(len) > w->cap) {
		uint8_t *p = realloc(w->buf, rec_size(len));

		if (!p) {
			snprintf(w->errmsg, sizeof(w->errmsg),
				 "store %s: snapshot chunk at %llu: out of memory", w->dir,
				 (unsigned long long)w->len);
			return RAFT_ENOMEM;
		}
		w->buf = p;
		w->cap = rec_size(len);
	}
	vlen = rec_make(w->buf, key, klen, buf, len);
	b = rocksdb_writebatch_create();
	rocksdb_writebatch_put(b, (const char *)key, klen, (const char *)w->buf, vlen);
	for (;;) {
		char *err = NULL;
		struct timespec ts = {0, 5 * 1000000};

		rocksdb_write(w->db, w->wo, b, &err);
		if (!err)
			break;
		if (!write_would_stall(err)) {
			snprintf(w->errmsg, sizeof(w->errmsg),
				 "store %s: write snapshot chunk (generation %llu, offset %llu): %s",
				 w->dir, (unsigned long long)w->gen, (unsigned long long)w->len,
				 err);
			rocksdb_free(err);
			rv = RAFT_EIO;
			break;
		}
		rocksdb_free(err);
		if (cancel && atomic_load(cancel)) {
			snprintf(w->errmsg, sizeof(w->errmsg), "store %s: snapshot write cancelled",
				 w->dir);
			rv = RAFT_ESNAP_OUT_OF_DATE;
			break;
		}
		nanosleep(&ts, NULL); /* RocksDB is flushing: let the log's writes go first */
		w->waited_ms += 5;
	}
	rocksdb_writebatch_destroy(b);
	if (rv == 0)
		w->len += len;
	return rv;
}

uint64_t store_snap_writer_waited_ms(const store_snap_writer *w)
{
	return w->waited_ms;
}

const char *store_snap_writer_errmsg(const store_snap_writer *w)
{
	return w->errmsg;
}

void store_snap_writer_free(store_snap_writer *w)
{
	if (!w)
		return;
	rocksdb_writeoptions_destroy(w->wo);
	free(w->buf);
	free(w);
}

int store_snapshot_stage_commit(store *s, store_snap_writer *w)
{
	int rv;

	if (!s->staging || s->stage.gen != w->gen) {
		store_snap_writer_discard(s, w);
		return RAFT_ESNAP_OUT_OF_DATE;
	}
	/* The staged length goes on record with the chunks (as a write of
	 * them would have done), so a restart knows what is staged. */
	uint64_t old_len = s->stage.len;
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();

	s->stage.len = w->len;
	rv = snap_record_put(s, b, KEY_STAGE, &s->stage);
	if (rv == 0)
		rv = batch_write(s, b, false, "record the staged snapshot's length");
	rocksdb_writebatch_destroy(b);
	if (rv != 0)
		s->stage.len = old_len;
	store_snap_writer_free(w);
	return rv;
}

int store_snapshot_stage_record(store *s, const store_snap_writer *w, uint64_t len)
{
	uint64_t old_len = s->stage.len;
	rocksdb_writebatch_t *b;
	int rv;

	if (!s->staging || s->stage.gen != w->gen)
		return RAFT_ESNAP_OUT_OF_DATE;
	if (len == old_len)
		return 0;
	b = rocksdb_writebatch_create();
	s->stage.len = len;
	rv = snap_record_put(s, b, KEY_STAGE, &s->stage);
	if (rv == 0)
		rv = batch_write(s, b, false, "record the staged snapshot's length");
	rocksdb_writebatch_destroy(b);
	if (rv != 0)
		s->stage.len = old_len;
	return rv;
}

void store_snap_writer_discard(store *s, store_snap_writer *w)
{
	if (!w)
		return;
	if (w->gen != s->snap.gen && !(s->staging && s->stage.gen == w->gen)) {
		/* Written after its staging was dropped (whose range deletion
		 * came before these chunks): delete them now. */
		rocksdb_writebatch_t *b = rocksdb_writebatch_create();

		chunks_delete(b, w->gen, 0);
		batch_write(s, b, false, "drop an abandoned snapshot's chunks");
		rocksdb_writebatch_destroy(b);
		chunks_reclaim(s, w->gen);
	}
	store_snap_writer_free(w);
}
