/* store.c — opening (with the format check), loading and closing the
 * RocksDB store. The rest: record.c (keys, checksums, errors), log.c (the
 * log, hard and conf states), snapshot.c, storage_iface.c.
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
 *   'e' be64(index)               raftpb.Entry, or for an entry of at least
 *                                 VLOG_MIN_BYTES of data a reference to it in
 *                                 DIR/vlog (vlog.h; first byte 0)
 *   'c' be64(gen) be64(offset)    a chunk of snapshot data of generation gen
 *
 * Every value is [le32 crc32c(key bytes, payload)][payload]: covering the
 * key too catches a value that ended up under the wrong key, not only a
 * flipped bit. A record that fails the check is an error naming its key.
 */
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec.h"

static const char FORMAT_MAGIC[12] = "raftfs-store"; /* not NUL-terminated */
#define FORMAT_LEN (sizeof(FORMAT_MAGIC) + 4)

/* A directory holding anything but a RocksDB database is not ours to take. */
/* mkdir -p: the node's data directory may be new too. */
static int make_dirs(store *s)
{
	if (s->dir[0] == '\0')
		return store_fail(s, RAFT_EINVAL, "empty directory name");
	char *path = strdup(s->dir);
	if (!path)
		return store_fail(s, RAFT_ENOMEM, "out of memory");
	int rv = 0;
	for (char *p = path + 1; rv == 0; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST)
			rv =
			    store_fail(s, -errno, "create directory %s: %s", path, strerror(errno));
		*p = c;
		if (c == '\0')
			break;
	}
	free(path);
	return rv;
}

static int check_dir(store *s)
{
	int rv = make_dirs(s);
	if (rv != 0)
		return rv;
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
	/* The term only: the last entry's data may be in the value log and
	 * not durable, which vlog_scan finds out next. */
	if (rv == 0 && s->last_index > s->compact_index)
		rv = entry_term(s, s->last_index, &s->last_term);
	return rv;
}

static int open_db(store *s)
{
	s->opts = rocksdb_options_create();
	/* Snapshot images are written beside the log from another thread at
	 * full speed (store_snap_writer, which backs off while RocksDB would
	 * slow writes down). With four memtables of 32 MiB (instead of two of
	 * 64: the same memory), RocksDB slows writes at three unflushed and
	 * stops them only at four, so the image's writer backs off before
	 * the log's writes on the loop thread would ever stop. */
	rocksdb_options_set_write_buffer_size(s->opts, 32u << 20);
	rocksdb_options_set_max_write_buffer_number(s->opts, 4);
	rocksdb_options_set_create_if_missing(s->opts, 1);
	rocksdb_options_set_info_log_level(s->opts, 2 /* WARN: no chatty LOG files */);
	rocksdb_options_set_keep_log_file_num(s->opts, 2);
	/* Snappy (RocksDB's default). Big entries' data no longer passes
	 * through RocksDB (the value log, vlog.h), so compressing costs little
	 * CPU now, and without it flushes and compactions of the small
	 * entries wrote several times more: 64 proposers of 4 KiB fell from
	 * ~7,500 to ~5,900 commits/s with p99 25 -> 70-130 ms (node-bench,
	 * same sitting), when it was turned off together with the value log. */
	rocksdb_options_set_compression(s->opts, rocksdb_snappy_compression);
#define STORE_BLOB_MIN (256u << 10)
	/* Snapshot chunks (1 MiB) go to blob files at flush: written once,
	 * uncompressed, and never rewritten by compaction, which otherwise
	 * decompressed and recompressed every image level by level (during
	 * tar x RocksDB's background threads took ~40% of the nodes' CPU:
	 * bench/snapshot/README.md, "What an image costs"). The bound is
	 * above VLOG_MIN_BYTES, so log entries stay in the tables (a big
	 * one's data is in the value log anyway). A replaced image's blobs
	 * become garbage when compaction drops its keys (chunks_reclaim asks
	 * for it); a blob file all garbage is deleted, and GC moves what is
	 * live out of the oldest. Blob records carry their own checksums;
	 * ours is inside the value as before. A store written without blob
	 * files opens as ever (its values stay in the tables until rewritten):
	 * RAFTFS_TEST_NO_BLOB_FILES=1 makes one, for that test and to measure. */
	_Static_assert(STORE_BLOB_MIN > VLOG_MIN_BYTES + 64, "entries would go to blob files");
	if (!getenv("RAFTFS_TEST_NO_BLOB_FILES")) {
		rocksdb_options_set_enable_blob_files(s->opts, 1);
		rocksdb_options_set_min_blob_size(s->opts, STORE_BLOB_MIN);
		rocksdb_options_set_blob_compression_type(s->opts, rocksdb_no_compression);
		rocksdb_options_set_enable_blob_gc(s->opts, 1);
	}
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
	/* The sync lock first: every store that exists has one to destroy. */
	if (!s || pthread_mutex_init(&s->sync_mu, NULL) != 0) {
		free(s);
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
		rv = vlog_open(s);
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
	/* After the snapshot record: a cut must never reach below it. */
	if (rv == 0)
		rv = vlog_scan(s);
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

uint64_t store_open_cut(const store *s)
{
	return s->vl.cut_at;
}

void store_close(store *s)
{
	if (!s)
		return;
	vlog_close(s);
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
	pthread_mutex_destroy(&s->sync_mu);
	free(s->scratch);
	free(s->dir);
	free(s);
}
