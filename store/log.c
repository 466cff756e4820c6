/* log.c — the raft log in the store (append with suffix truncation, reads
 * under a byte cap, term lookups, compaction) and the hard and conf states.
 * First/last index and their terms are cached in the store struct, so the
 * hot path (store_save, term of the last entry) never seeks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "store_int.h"
#include "vlog_sync.h"

/* ref: the entry's value log reference when vlog_wants(e), else unused. */
static int entry_put(store *s, rocksdb_writebatch_t *b, const raft_entry *e, const uint8_t *ref)
{
	uint8_t key[KEY_MAX];
	size_t klen = key_entry(key, e->index);
	size_t plen = vlog_wants(e) ? VLOG_REF_BYTES : codec_entry_size(e);
	uint8_t *p = rec_buf(s, plen);
	if (!p)
		return RAFT_ENOMEM;
	if (vlog_wants(e))
		memcpy(p, ref, VLOG_REF_BYTES);
	else
		codec_entry_pack(e, p);
	rec_put(s, b, key, klen, plen);
	return 0;
}

/* Decodes a verified entry payload stored under index. */
static int entry_decode(store *s, uint64_t index, const uint8_t *payload, size_t plen,
			raft_entry *e)
{
	if (vlog_is_ref(payload, plen))
		return vlog_read(s, index, payload, e);
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

int entry_get(store *s, uint64_t index, raft_entry *e)
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

int entry_term(store *s, uint64_t index, uint64_t *term)
{
	uint8_t key[KEY_MAX];
	size_t klen = key_entry(key, index);
	rocksdb_pinnableslice_t *ps;
	const uint8_t *payload;
	size_t plen;
	raft_entry e;
	int rv = rec_get(s, key, klen, &ps, &payload, &plen);
	if (rv == 0)
		return store_fail(s, RAFT_ECORRUPT, "entry %llu: missing (log holds %llu..%llu)",
				  (unsigned long long)index,
				  (unsigned long long)s->compact_index + 1,
				  (unsigned long long)s->last_index);
	if (rv < 0)
		return rv;
	if (vlog_is_ref(payload, plen)) {
		*term = vlog_ref_term(payload);
		rocksdb_pinnableslice_destroy(ps);
		return 0;
	}
	rv = entry_decode(s, index, payload, plen, &e);
	rocksdb_pinnableslice_destroy(ps);
	if (rv == 0) {
		*term = e.term;
		raft_entry_free_contents(&e);
	}
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
	return entry_term(s, index, term);
}

int iter_status(store *s, rocksdb_iterator_t *it, const char *what)
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

int store_save_write(store *s, const raft_hard_state *hs, const raft_entry *ents, size_t n)
{
	/* Entries at or below the compaction point are already in the snapshot. */
	size_t skip = 0;
	while (skip < n && ents[skip].index <= s->compact_index)
		skip++;
	ents += skip;
	n -= skip;
	if (!hs && n == 0)
		return 0;
	int latched = store_check_synced(s, n ? "append entries" : "save hard state");
	if (latched)
		return latched;
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

	/* Large entries' data first; its fdatasync (on the value log's syncer
	 * thread) runs while RocksDB syncs the batch naming it, and the save
	 * is durable once both returned. A crash in between can leave a
	 * durable reference to data that is not: open cuts the log there
	 * (vlog.h), which only ever drops this unacknowledged save. */
	uint8_t *refs = NULL;
	size_t n_big = 0;
	for (size_t i = 0; i < n; i++)
		n_big += vlog_wants(&ents[i]);
	if (n_big > 0) {
		refs = malloc(n * VLOG_REF_BYTES);
		if (!refs)
			return store_fail(s, RAFT_ENOMEM, "append: out of memory");
		int rv = vlog_append(s, ents, n, refs);
		if (rv != 0) {
			free(refs);
			return rv;
		}
	}
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	int rv = 0;
	for (size_t i = 0; i < n && rv == 0; i++)
		rv = entry_put(s, b, &ents[i], refs ? refs + i * VLOG_REF_BYTES : NULL);
	free(refs);
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
	/* Not synced here: store_save_sync syncs the WAL without the
	 * caller's lock. Readable at once, durable only after that. */
	if (rv == 0)
		rv = batch_write(s, b, false, n ? "append entries" : "save hard state");
	rocksdb_writebatch_destroy(b);
	if (rv != 0) {
		/* Always waited for, also after a failed batch: the file
		 * must not be touched while its sync runs. */
		if (n_big > 0)
			vlog_append_wait(s);
		return rv;
	}
	s->sync_owed = true;
	if (hs)
		s->hs = *hs;
	if (n > 0) {
		s->last_index = new_last;
		s->last_term = ents[n - 1].term;
	}
	return 0;
}

/* The latched code of an earlier failed sync, said in err; else 0. */
static int save_sync_refused(store *s, char *err, size_t errlen)
{
	int code = atomic_load(&s->sync_failed);

	if (code)
		snprintf(err, errlen,
			 "store %s: sync: refused: a sync of this store failed before (what it "
			 "was to make durable may be lost); reopen the store",
			 s->dir);
	return code;
}

int store_save_sync(store *s, char *err, size_t errlen)
{
	char *rerr = NULL;
	int rv = 0, vrv;

	/* A sync that failed before (this thread's, or a synced write's on
	 * another) may have dropped this save's data: no success after it,
	 * also when nothing is owed (a second call after a failed one). */
	if (!s->sync_owed)
		return save_sync_refused(s, err, errlen);
	s->sync_owed = false;
	/* RocksDB's WAL sync and the value log's fdatasync (begun by the
	 * write, on its syncer thread) run at once; the save is durable
	 * once both returned. A failed sync fails the save (the node
	 * stops); open then checks the value log's data as after a crash.
	 * Both run also after a failure was latched: the value log's file
	 * must not be left with its sync running. The WAL's sync under the
	 * sync lock, which synced writes hold too (store_int.h); not the
	 * value log's, which they never sync: the loop's synced writes,
	 * under the store lock, wait at most for a WAL sync. */
	store_sync_lock(s);
	rocksdb_flush_wal(s->db, 1, &rerr);
	store_sync_unlock(s);
	if (rerr) {
		rv = RAFT_EIO;
		snprintf(err, errlen, "store %s: sync the write-ahead log: %s", s->dir, rerr);
		rocksdb_free(rerr);
	}
	vrv = vlog_sync_wait(&s->vl);
	if (vrv != 0 && rv == 0) {
		rv = vrv;
		snprintf(err, errlen, "store %s: value log: sync %s/%016llx.vlog: %s", s->dir, s->vl.dir,
			 (unsigned long long)s->vl.sync_seq, strerror(-vrv));
	}
	int fail = atomic_exchange(&s->fail_next_sync, 0);
	if (fail && rv == 0) {
		rv = fail;
		snprintf(err, errlen, "store %s: sync: test: failed on purpose (store_fail_next_sync)",
			 s->dir);
	}
	if (rv)
		return store_sync_failed(s, rv);
	/* Read after the WAL's sync: a synced write that failed before it
	 * (and perhaps took the writeback error this sync would have seen)
	 * latched before it let go of the sync lock; one that began after
	 * it cannot have touched this save. */
	return save_sync_refused(s, err, errlen);
}

void store_fail_next_sync(store *s, int rc)
{
	atomic_store(&s->fail_next_sync, rc);
}

void store_test_on_synced_write(store *s, int (*fn)(store *, void *), void *arg)
{
	s->synced_write_hook = fn;
	s->synced_write_arg = arg;
}

int store_test_sync_waiting(store *s)
{
	return atomic_load(&s->sync_waiting);
}

int store_save(store *s, const raft_hard_state *hs, const raft_entry *ents, size_t n)
{
	char why[STORE_ERRMSG_MAX];
	int rv = store_save_write(s, hs, ents, n);

	if (rv == 0 && (rv = store_save_sync(s, why, sizeof(why))) != 0)
		snprintf(s->errmsg, sizeof(s->errmsg), "%s", why);
	return rv;
}

int log_cut(store *s, uint64_t index)
{
	if (index <= s->compact_index || index > s->last_index)
		return store_fail(s, RAFT_EINVAL, "cut the log at %llu: outside %llu..%llu",
				  (unsigned long long)index,
				  (unsigned long long)s->compact_index + 1,
				  (unsigned long long)s->last_index);
	/* A local snapshot covers only applied entries, and entries are
	 * applied only once their save returned: such a save was whole. */
	if (index <= s->snap.meta.index)
		return store_fail(s, RAFT_ECORRUPT,
				  "entry %llu: its data in the value log is missing or damaged, "
				  "and the snapshot at %llu covers it",
				  (unsigned long long)index,
				  (unsigned long long)s->snap.meta.index);
	uint64_t term = s->compact_term;
	int rv = index - 1 > s->compact_index ? entry_term(s, index - 1, &term) : 0;
	if (rv != 0)
		return rv;
	uint8_t from[KEY_MAX], to[KEY_MAX];
	size_t flen = key_entry(from, index);
	size_t tlen = key_entry(to, s->last_index + 1);
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	rocksdb_writebatch_delete_range(b, (const char *)from, flen, (const char *)to, tlen);
	/* The save cut short may have carried a commit index covering its
	 * own entries (a follower learns both from one append); nothing of
	 * it was applied, and the core refuses a commit index beyond the
	 * log. */
	raft_hard_state hs = s->hs;
	if (hs.commit >= index) {
		hs.commit = index - 1;
		rv = hard_state_put(s, b, &hs);
	}
	if (rv == 0)
		rv = batch_write(s, b, true, "cut the log after a save cut short");
	rocksdb_writebatch_destroy(b);
	if (rv != 0)
		return rv;
	s->hs = hs;
	s->last_index = index - 1;
	s->last_term = term;
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
	/* Deleting a value log file is only safe once no crash can bring
	 * back the entries that refer to it. */
	bool drop = vlog_droppable(s, index);
	rv = batch_write(s, b, drop, "compact log");
	rocksdb_writebatch_destroy(b);
	if (rv != 0)
		return rv;
	s->compact_index = index;
	s->compact_term = term;
	if (drop)
		vlog_drop(s, index);
	return 0;
}
