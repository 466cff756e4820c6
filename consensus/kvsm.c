/* kvsm.c — the replicated test state machine (append-only applied log +
 * key/value view + duplicate table). */
#include "kvsm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dedup.h"

#define REC_MAGIC 0x4b565231u /* "KVR1" */
#define REC_HDR 16	      /* u32 magic, u32 payload length, u64 checksum */
#define REC_FIXED 41	      /* index, client, seq, min_pending, result, kind */
#define BUCKETS 4096

enum rec_kind { REC_NEW = 0, REC_DUP = 1, REC_STALE = 2, REC_EMPTY = 3 };

typedef struct kv_item {
	struct kv_item *next;
	char *key, *value;
} kv_item;

struct kvsm {
	int fd;
	char path[PATH_MAX + 16]; /* the applied log */
	uint64_t applied;
	dedup *dd;
	pthread_mutex_t mu; /* guards the map against query() on the loop thread */
	kv_item *buckets[BUCKETS];
};

typedef struct rec {
	uint64_t index, client, seq, min_pending;
	int64_t result;
	uint8_t kind;
	const uint8_t *cmd;
	size_t cmd_len;
} rec;

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* FNV-1a: enough to tell a torn or garbled tail record from a whole one. */
static uint64_t checksum(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static uint32_t hash_key(const char *k)
{
	return (uint32_t)checksum((const uint8_t *)k, strlen(k)) % BUCKETS;
}

static kv_item *map_find(kvsm *k, const char *key)
{
	for (kv_item *it = k->buckets[hash_key(key)]; it; it = it->next)
		if (!strcmp(it->key, key))
			return it;
	return NULL;
}

/* Executes a "key=value" command; other commands only go to the list. */
static int map_apply(kvsm *k, const uint8_t *cmd, size_t len)
{
	const uint8_t *eq = memchr(cmd, '=', len);
	char *key, *value;
	kv_item *it;

	if (!eq || memchr(cmd, '\0', len))
		return 0;
	key = strndup((const char *)cmd, (size_t)(eq - cmd));
	value = strndup((const char *)eq + 1, len - (size_t)(eq - cmd) - 1);
	if (!key || !value) {
		free(key);
		free(value);
		return -ENOMEM;
	}
	pthread_mutex_lock(&k->mu);
	it = map_find(k, key);
	if (it) {
		free(it->value);
		it->value = value;
		free(key);
	} else if ((it = malloc(sizeof(*it)))) {
		uint32_t b = hash_key(key);

		it->key = key;
		it->value = value;
		it->next = k->buckets[b];
		k->buckets[b] = it;
	} else {
		free(key);
		free(value);
	}
	pthread_mutex_unlock(&k->mu);
	return it ? 0 : -ENOMEM;
}

/* Replays one record into memory (at start, and after writing it). */
static int replay(kvsm *k, const rec *r)
{
	int rc = 0;

	if (r->kind == REC_NEW) {
		rc = dedup_record(k->dd, r->client, r->seq, r->min_pending, r->result);
		if (rc == 0)
			rc = map_apply(k, r->cmd, r->cmd_len);
	}
	k->applied = r->index;
	return rc;
}

/* Parses the record at buf[0..len): its total size, 0 if incomplete or
 * damaged (a torn tail). */
static size_t parse_rec(const uint8_t *buf, size_t len, rec *r)
{
	uint32_t plen;
	const uint8_t *p;

	if (len < REC_HDR || get32(buf) != REC_MAGIC)
		return 0;
	plen = get32(buf + 4);
	if (plen < REC_FIXED || len - REC_HDR < plen)
		return 0;
	p = buf + REC_HDR;
	if (checksum(p, plen) != get64(buf + 8))
		return 0;
	r->index = get64(p);
	r->client = get64(p + 8);
	r->seq = get64(p + 16);
	r->min_pending = get64(p + 24);
	r->result = (int64_t)get64(p + 32);
	r->kind = p[40];
	r->cmd = p + REC_FIXED;
	r->cmd_len = plen - REC_FIXED;
	return REC_HDR + plen;
}

static int read_file(const char *path, uint8_t **buf, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;

	*buf = NULL;
	*len = 0;
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0 || !(*buf = malloc((size_t)st.st_size + 1))) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return 0;
}

int kvsm_open(const char *data_dir, kvsm **out, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	size_t len, off = 0, n;
	uint8_t *buf;
	kvsm *k;
	rec r;
	int rc;

	snprintf(dir, sizeof(dir), "%s/kv", data_dir);
	snprintf(path, sizeof(path), "%s/applied.log", dir);
	if (mkdir(data_dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: mkdir: %s", data_dir, strerror(errno));
		return -errno;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: mkdir: %s", dir, strerror(errno));
		return -errno;
	}
	k = calloc(1, sizeof(*k));
	if (!k || !(k->dd = dedup_new())) {
		free(k);
		return -ENOMEM;
	}
	pthread_mutex_init(&k->mu, NULL);
	rc = read_file(path, &buf, &len);
	if (rc < 0) {
		snprintf(err, errlen, "%s: read: %s", path, strerror(-rc));
		kvsm_close(k);
		return rc;
	}
	while ((n = parse_rec(buf + off, len - off, &r)) > 0) {
		rc = replay(k, &r);
		if (rc < 0) {
			snprintf(err, errlen, "%s: replay: %s", path, strerror(-rc));
			free(buf);
			kvsm_close(k);
			return rc;
		}
		off += n;
	}
	free(buf);
	snprintf(k->path, sizeof(k->path), "%s", path);
	k->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	/* A torn record at the end (kill -9 mid-write) is cut off: it was
	 * never counted as applied, so it is applied again. */
	if (k->fd < 0 || (off < len && ftruncate(k->fd, (off_t)off) < 0)) {
		rc = -errno;
		snprintf(err, errlen, "%s: open: %s", path, strerror(errno));
		kvsm_close(k);
		return rc;
	}
	*out = k;
	return 0;
}

void kvsm_close(kvsm *k)
{
	if (!k)
		return;
	if (k->fd > 0)
		close(k->fd);
	for (size_t b = 0; b < BUCKETS; b++) {
		kv_item *it = k->buckets[b], *next;

		for (; it; it = next) {
			next = it->next;
			free(it->key);
			free(it->value);
			free(it);
		}
	}
	dedup_free(k->dd);
	pthread_mutex_destroy(&k->mu);
	free(k);
}

static int append_rec(kvsm *k, const rec *r)
{
	size_t plen = REC_FIXED + r->cmd_len, total = REC_HDR + plen;
	uint8_t small[512], *buf = total <= sizeof(small) ? small : malloc(total);
	uint8_t *p = buf + REC_HDR;
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	put64(p, r->index);
	put64(p + 8, r->client);
	put64(p + 16, r->seq);
	put64(p + 24, r->min_pending);
	put64(p + 32, (uint64_t)r->result);
	p[40] = r->kind;
	if (r->cmd_len)
		memcpy(p + REC_FIXED, r->cmd, r->cmd_len);
	put32(buf, REC_MAGIC);
	put32(buf + 4, (uint32_t)plen);
	put64(buf + 8, checksum(p, plen));
	n = write(k->fd, buf, total);
	if (buf != small)
		free(buf);
	if (n != (ssize_t)total)
		return n < 0 ? -errno : -EIO;
	return 0;
}

static uint64_t sm_applied(void *ctx)
{
	return ((kvsm *)ctx)->applied;
}

static int sm_apply(void *ctx, uint64_t index, const envelope *env, const uint8_t *cmd, size_t len,
		    int64_t *result)
{
	kvsm *k = ctx;
	rec r = {index, env->client, env->seq, env->min_pending, 0, REC_NEW, cmd, len};
	int rc;

	switch (dedup_check(k->dd, env->client, env->seq, &r.result)) {
	case DEDUP_DUPLICATE:
		r.kind = REC_DUP;
		break;
	case DEDUP_STALE:
		r.kind = REC_STALE;
		break;
	case DEDUP_NEW:
	case DEDUP_EARLY: /* dedup_check never says so (the runtime checks order) */
		r.result = (int64_t)index; /* the deterministic outcome */
		break;
	}
	rc = append_rec(k, &r);
	if (rc == 0)
		rc = replay(k, &r);
	*result = r.result;
	return rc;
}

static int sm_apply_empty(void *ctx, uint64_t index)
{
	kvsm *k = ctx;
	rec r = {.index = index, .kind = REC_EMPTY};
	int rc = append_rec(k, &r);

	if (rc == 0)
		k->applied = index;
	return rc;
}

/* The snapshot is the applied log itself: every node's log must stay
 * byte-identical for the tests, and the map and duplicate table are
 * derived from it. */
static int sm_snapshot(void *ctx, node_snap_write write_fn, void *warg)
{
	kvsm *k = ctx;
	uint8_t buf[64 << 10];
	int fd, rc = 0;
	off_t off = 0;

	/* The apply thread, the only writer, is the caller: the file is
	 * complete up to the applied index. */
	fd = open(k->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t got = pread(fd, buf, sizeof(buf), off);

		if (got <= 0) {
			rc = got < 0 ? -errno : off > 0 ? 0 : -EIO;
			break;
		}
		rc = write_fn(warg, buf, (size_t)got);
		if (rc < 0)
			break;
		off += got;
	}
	close(fd);
	return rc;
}

static void map_clear(kvsm *k)
{
	pthread_mutex_lock(&k->mu);
	for (size_t b = 0; b < BUCKETS; b++) {
		kv_item *it = k->buckets[b], *next;

		for (; it; it = next) {
			next = it->next;
			free(it->key);
			free(it->value);
			free(it);
		}
		k->buckets[b] = NULL;
	}
	pthread_mutex_unlock(&k->mu);
}

static int sm_restore(void *ctx, uint64_t index, node_snap_read read_fn, void *rarg)
{
	kvsm *k = ctx;
	char tmp[PATH_MAX + 32];
	uint8_t *data = NULL, chunk[64 << 10];
	size_t len = 0, off = 0, n;
	int fd, rc = 0;
	rec r;

	/* Replace the file atomically: a crash leaves the old or the new one.
	 * The image streams into the new file; the test state machine then
	 * replays it from there. */
	snprintf(tmp, sizeof(tmp), "%s.restore", k->path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t got = read_fn(rarg, chunk, sizeof(chunk));

		if (got <= 0) {
			rc = (int)got;
			break;
		}
		for (ssize_t w = 0; w < got;) {
			ssize_t put = write(fd, chunk + w, (size_t)(got - w));

			if (put <= 0) {
				rc = put < 0 ? -errno : -EIO;
				break;
			}
			w += put;
		}
		if (rc < 0)
			break;
	}
	if (rc == 0 && fdatasync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0)
		rc = read_file(tmp, &data, &len);
	if (rc == 0 && rename(tmp, k->path) < 0)
		rc = -errno;
	if (rc < 0) {
		free(data);
		unlink(tmp);
		return rc;
	}
	close(k->fd);
	k->fd = open(k->path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (k->fd < 0) {
		free(data);
		return -errno;
	}
	map_clear(k);
	dedup_free(k->dd);
	k->dd = dedup_new();
	k->applied = 0;
	if (!k->dd) {
		free(data);
		return -ENOMEM;
	}
	while (data && (n = parse_rec(data + off, len - off, &r)) > 0) {
		rc = replay(k, &r);
		if (rc < 0)
			break;
		off += n;
	}
	free(data);
	if (rc < 0)
		return rc;
	/* A snapshot that does not end exactly at its index is not ours. */
	return off == len && k->applied == index ? 0 : -EINVAL;
}

static const dedup *sm_dedup_table(void *ctx)
{
	return ((kvsm *)ctx)->dd;
}

static int sm_query(void *ctx, const uint8_t *q, size_t len, uint8_t **out, size_t *out_len)
{
	kvsm *k = ctx;
	char *key = strndup((const char *)q, len);
	kv_item *it;

	if (!key)
		return -ENOMEM;
	pthread_mutex_lock(&k->mu);
	it = map_find(k, key);
	*out = (uint8_t *)strdup(it ? it->value : "");
	pthread_mutex_unlock(&k->mu);
	free(key);
	if (!*out)
		return -ENOMEM;
	*out_len = strlen((char *)*out);
	return 0;
}

void kvsm_iface(kvsm *k, node_sm *out)
{
	/* The whole struct: a field left out (the asynchronous snapshot's
	 * begin/stream/end, status) is NULL, never what the caller's stack
	 * held, which node_snapshot.c would call. */
	*out = (node_sm){
	    .ctx = k,
	    .applied_index = sm_applied,
	    .apply = sm_apply,
	    .apply_empty = sm_apply_empty,
	    .query = sm_query,
	    .snapshot = sm_snapshot,
	    .restore = sm_restore,
	    .dedup_table = sm_dedup_table,
	};
}

int kvsm_dump(const char *data_dir, FILE *out, char *err, size_t errlen)
{
	static const char *kinds[] = {"new", "dup", "stale", "empty"};
	char path[PATH_MAX + 32];
	size_t len, off = 0, n;
	uint8_t *buf;
	rec r;
	int rc;

	snprintf(path, sizeof(path), "%s/kv/applied.log", data_dir);
	rc = read_file(path, &buf, &len);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	while ((n = parse_rec(buf + off, len - off, &r)) > 0) {
		fprintf(out, "%llu %s %016llx %llu %lld %.*s\n", (unsigned long long)r.index,
			r.kind < 4 ? kinds[r.kind] : "?", (unsigned long long)r.client,
			(unsigned long long)r.seq, (long long)r.result, (int)r.cmd_len, r.cmd);
		off += n;
	}
	free(buf);
	return 0;
}
