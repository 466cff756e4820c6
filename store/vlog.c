/* vlog.c — large entries' data in append-only files beside RocksDB (see
 * vlog.h for why and for the durability order).
 *
 * Reference (VLOG_REF_BYTES, big-endian numbers):
 *   [0] 0  [1] entry type  [2..10) term  [10..18) index
 *   [18..26) file seq  [26..34) offset  [34..38) length  [38..42) crc32c(data)
 */
#include "vlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "crc32c.h"
#include "store_int.h"
#include "vlog_sync.h"

#define NAME_LEN 21 /* 16 hex digits + ".vlog" */
#define CHECK_PIECE (1u << 20) /* open reads referenced data in pieces of this */
#define WRITE_IOVS 64	       /* a buffered save's pwritev takes this many pieces at most */

static void be32_put(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint32_t be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void file_name(char *buf, uint64_t seq)
{
	snprintf(buf, NAME_LEN + 1, "%016llx.vlog", (unsigned long long)seq);
}

/* A spare: a file no reference can name any more, kept to be the next
 * file (vlog.h, "Spares"), under its old seq. */
static void spare_name(char *buf, uint64_t seq)
{
	snprintf(buf, NAME_LEN + 2, "%016llx.spare", (unsigned long long)seq);
}

static bool parse_seq(const char *name, const char *suffix, uint64_t *seq)
{
	char *end;

	if (strlen(name) != 16 + strlen(suffix) || strcmp(name + 16, suffix) != 0)
		return false;
	errno = 0;
	*seq = strtoull(name, &end, 16);
	return errno == 0 && end == name + 16;
}

static bool parse_name(const char *name, uint64_t *seq)
{
	return parse_seq(name, ".vlog", seq);
}

static bool spare_known(const vlog *v, uint64_t seq)
{
	for (size_t i = 0; i < v->n_spare; i++)
		if (v->spare[i] == seq)
			return true;
	return false;
}

static vlog_file *file_find(vlog *v, uint64_t seq)
{
	for (size_t i = 0; i < v->n; i++)
		if (v->files[i].seq == seq)
			return &v->files[i];
	return NULL;
}

static int file_add(store *s, uint64_t seq, int fd, uint64_t size)
{
	vlog *v = &s->vl;

	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 8;
		vlog_file *f = realloc(v->files, cap * sizeof(*f));

		if (!f)
			return store_fail(s, RAFT_ENOMEM, "value log: out of memory");
		v->files = f;
		v->cap = cap;
	}
	/* Kept in ascending seq: files are listed unordered at open. */
	size_t i = v->n;
	while (i > 0 && v->files[i - 1].seq > seq) {
		v->files[i] = v->files[i - 1];
		i--;
	}
	v->files[i] = (vlog_file){.seq = seq, .fd = fd, .dfd = -1, .size = size};
	v->n++;
	if (seq >= v->next_seq)
		v->next_seq = seq + 1;
	return 0;
}

/* Deletes files[i], or keeps it as a spare while there is room for one
 * (its name first: a failure leaves it for the next open, which removes
 * files nothing refers to). Not synced: a rename or deletion lost in a
 * crash leaves a file nothing refers to, removed again at open. */
static void file_remove(store *s, size_t i)
{
	vlog *v = &s->vl;
	uint64_t seq = v->files[i].seq;
	char name[NAME_LEN + 1], spare[NAME_LEN + 2];

	file_name(name, seq);
	spare_name(spare, seq);
	if (v->n_spare < v->max_spare && !spare_known(v, seq) &&
	    renameat(v->dirfd, name, v->dirfd, spare) == 0)
		v->spare[v->n_spare++] = seq;
	else if (unlinkat(v->dirfd, name, 0) != 0 && errno != ENOENT)
		return;
	close(v->files[i].fd);
	if (v->files[i].dfd >= 0)
		close(v->files[i].dfd);
	memmove(&v->files[i], &v->files[i + 1], (v->n - i - 1) * sizeof(*v->files));
	v->n--;
}

static int list_files(store *s)
{
	vlog *v = &s->vl;
	DIR *d = fdopendir(dup(v->dirfd));
	struct dirent *de;
	int rv = 0;

	if (!d)
		return store_fail(s, -errno, "value log %s: list: %s", v->dir, strerror(errno));
	while (rv == 0 && (de = readdir(d)) != NULL) {
		uint64_t seq;
		struct stat st;
		int fd;

		if (parse_seq(de->d_name, ".spare", &seq)) {
			if (v->n_spare < v->max_spare && !spare_known(v, seq))
				v->spare[v->n_spare++] = seq;
			else
				unlinkat(v->dirfd, de->d_name, 0);
			continue;
		}
		if (!parse_name(de->d_name, &seq))
			continue;
		fd = openat(v->dirfd, de->d_name, O_RDWR | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) != 0) {
			rv = store_fail(s, -errno, "value log: open %s/%s: %s", v->dir, de->d_name,
					strerror(errno));
			if (fd >= 0)
				close(fd);
			break;
		}
		rv = file_add(s, seq, fd, (uint64_t)st.st_size);
		if (rv != 0)
			close(fd);
	}
	closedir(d);
	return rv;
}

/* Notes, for every reference in the stored log, which file holds its
 * data: what decides which files may be deleted, and which file the last
 * save wrote to. */
static int scan_refs(store *s)
{
	uint8_t key[KEY_MAX];
	size_t klen = key_entry(key, s->compact_index + 1);
	rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ro);
	int rv = 0;

	for (size_t i = 0; i < s->vl.n; i++)
		s->vl.files[i].max_index = s->vl.files[i].min_index = 0;
	for (rocksdb_iter_seek(it, (const char *)key, klen); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		size_t got_len, vlen, plen;
		const char *got = rocksdb_iter_key(it, &got_len);
		const char *val;
		const uint8_t *payload;
		uint64_t index, seq;
		vlog_file *f;

		if (got_len != 9 || got[0] != KEY_PREFIX_ENTRY)
			break;
		index = be64_get((const uint8_t *)got + 1);
		if (index > s->last_index)
			break;
		val = rocksdb_iter_value(it, &vlen);
		/* A record that fails its check, or names a file that is gone,
		 * is reported when the entry is read, not here: open succeeds
		 * and the core learns what is wrong where it matters. */
		if (rec_check(s, (const uint8_t *)got, got_len, val, vlen, &payload, &plen) != 0 ||
		    !vlog_is_ref(payload, plen))
			continue;
		seq = be64_get(payload + 18);
		f = file_find(&s->vl, seq);
		if (f && index > f->max_index)
			f->max_index = index;
		if (f && (f->min_index == 0 || index < f->min_index))
			f->min_index = index;
	}
	if (rv == 0)
		rv = iter_status(s, it, "value log: scan the log's references");
	rocksdb_iter_destroy(it);
	return rv;
}

int vlog_open(store *s)
{
	vlog *v = &s->vl;
	size_t len = strlen(s->dir) + sizeof("/vlog");

	v->dirfd = -1;
	v->sync_fd = -1;
	v->next_seq = 1;
	v->serial =
	    getenv("RAFTFS_STORE_SERIAL_FLUSH") && strcmp(getenv("RAFTFS_STORE_SERIAL_FLUSH"), "0");
	v->buffered = getenv("RAFTFS_STORE_VLOG_BUFFERED") &&
		      strcmp(getenv("RAFTFS_STORE_VLOG_BUFFERED"), "0");
	v->max_spare = VLOG_SPARES;
	if (getenv("RAFTFS_STORE_VLOG_SPARES") &&
	    strtoul(getenv("RAFTFS_STORE_VLOG_SPARES"), NULL, 10) < VLOG_SPARES)
		v->max_spare = strtoul(getenv("RAFTFS_STORE_VLOG_SPARES"), NULL, 10);
	v->dir = malloc(len);
	if (!v->dir)
		return store_fail(s, RAFT_ENOMEM, "value log: out of memory");
	snprintf(v->dir, len, "%s/vlog", s->dir);
	if (mkdir(v->dir, 0755) != 0 && errno != EEXIST)
		return store_fail(s, -errno, "value log: create %s: %s", v->dir, strerror(errno));
	v->dirfd = open(v->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (v->dirfd < 0)
		return store_fail(s, -errno, "value log: open %s: %s", v->dir, strerror(errno));
	return list_files(s);
}

/* Whether the len bytes at off of f are there and match crc: 1 if so, 0 if
 * not (beyond the end, or different), negative on a read error. Read in
 * pieces: an entry may be large, and open should not need its size twice
 * in memory. */
static int data_intact(store *s, const vlog_file *f, uint64_t off, uint32_t len, uint32_t crc)
{
	uint8_t *buf;
	uint32_t got = 0, c = 0;

	if (off + len > f->size)
		return 0;
	buf = malloc(len < CHECK_PIECE ? (len ? len : 1) : CHECK_PIECE);
	if (!buf)
		return store_fail(s, RAFT_ENOMEM,
				  "value log: out of memory checking %s/%016llx.vlog", s->vl.dir,
				  (unsigned long long)f->seq);
	while (got < len) {
		size_t want = len - got < CHECK_PIECE ? len - got : CHECK_PIECE;
		ssize_t r = pread(f->fd, buf, want, (off_t)(off + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int rv =
			    store_fail(s, -errno, "value log: read %s/%016llx.vlog at %llu: %s",
				       s->vl.dir, (unsigned long long)f->seq,
				       (unsigned long long)(off + got), strerror(errno));
			free(buf);
			return rv;
		}
		if (r == 0)
			break; /* shorter than fstat said: as good as missing */
		c = crc32c_extend(c, buf, (size_t)r);
		got += (uint32_t)r;
	}
	free(buf);
	return got == len && c == crc;
}

/* The last save before a crash may have left references whose data never
 * became durable (vlog.h): they all name the newest file any reference
 * names. Finds the first entry, in index order, whose data in that file is
 * missing or damaged and cuts the log there; everything after it came
 * from the same save, which was never acknowledged. */
static int check_newest(store *s)
{
	vlog *v = &s->vl;
	vlog_file *f = NULL;
	uint8_t key[KEY_MAX];
	size_t klen;
	rocksdb_iterator_t *it;
	uint64_t cut = 0;
	int rv = 0;

	for (size_t i = v->n; i-- > 0 && !f;)
		if (v->files[i].max_index)
			f = &v->files[i];
	if (!f)
		return 0;
	klen = key_entry(key, f->min_index);
	it = rocksdb_create_iterator(s->db, s->ro);
	for (rocksdb_iter_seek(it, (const char *)key, klen); rv == 0 && rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		size_t got_len, vlen, plen;
		const char *got = rocksdb_iter_key(it, &got_len);
		const char *val;
		const uint8_t *p;
		uint64_t index;

		if (got_len != 9 || got[0] != KEY_PREFIX_ENTRY)
			break;
		index = be64_get((const uint8_t *)got + 1);
		if (index > f->max_index)
			break;
		val = rocksdb_iter_value(it, &vlen);
		/* A damaged record is reported when read, as in scan_refs. */
		if (rec_check(s, (const uint8_t *)got, got_len, val, vlen, &p, &plen) != 0 ||
		    !vlog_is_ref(p, plen) || be64_get(p + 18) != f->seq)
			continue;
		rv = data_intact(s, f, be64_get(p + 26), be32_get(p + 34), be32_get(p + 38));
		if (rv == 0) {
			cut = index;
			break;
		}
		rv = rv > 0 ? 0 : rv;
	}
	if (rv == 0)
		rv = iter_status(s, it, "value log: check the newest file's data");
	rocksdb_iter_destroy(it);
	if (rv != 0 || cut == 0)
		return rv;
	rv = log_cut(s, cut);
	if (rv == 0) {
		v->cut_at = cut;
		rv = scan_refs(s); /* the cut entries no longer hold files */
	}
	return rv;
}

int vlog_scan(store *s)
{
	vlog *v = &s->vl;
	int rv = scan_refs(s);

	if (rv == 0)
		rv = check_newest(s);

	/* Unreferenced: compacted before a crash lost the deletion, or written
	 * by a save that never reached RocksDB. */
	for (size_t i = v->n; rv == 0 && i-- > 0;)
		if (v->files[i].max_index == 0)
			file_remove(s, i);
	return rv;
}

void vlog_close(store *s)
{
	vlog *v = &s->vl;

	if (!v->dir)
		return;	     /* never opened */
	vlog_append_wait(s); /* a save that failed before waiting for its sync */
	vlog_syncer_free(v->syncer);
	for (size_t i = 0; i < v->n; i++) {
		close(v->files[i].fd);
		if (v->files[i].dfd >= 0)
			close(v->files[i].dfd);
	}
	free(v->buf);
	if (v->dirfd >= 0)
		close(v->dirfd);
	free(v->files);
	free(v->dir);
	memset(v, 0, sizeof(*v));
}

/* A new file to append to — a spare renamed, if there is one: writing over
 * its blocks costs the sync no block allocation — its name durable
 * before any reference to it can be. */
static int start_file(store *s)
{
	vlog *v = &s->vl;
	char name[NAME_LEN + 1], spare[NAME_LEN + 2];
	uint64_t seq = v->next_seq;
	int fd = -1, rv;

	file_name(name, seq);
	while (fd < 0 && v->n_spare > 0) {
		spare_name(spare, v->spare[--v->n_spare]);
		if (renameat(v->dirfd, spare, v->dirfd, name) == 0)
			fd = openat(v->dirfd, name, O_RDWR | O_CLOEXEC);
	}
	if (fd < 0)
		fd = openat(v->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return store_fail(s, -errno, "value log: create %s/%s: %s", v->dir, name,
				  strerror(errno));
	if (fsync(v->dirfd) != 0) {
		rv = store_fail(s, -errno, "value log: sync directory %s: %s", v->dir,
				strerror(errno));
		close(fd);
		unlinkat(v->dirfd, name, 0);
		return rv;
	}
	rv = file_add(s, seq, fd, 0);
	if (rv != 0) {
		close(fd);
		unlinkat(v->dirfd, name, 0);
		return rv;
	}
	/* Writes bypass the page cache where the filesystem allows it
	 * (vlog.h, "Direct writes"); reads and syncs use fd. A filesystem
	 * that refuses O_DIRECT refuses it for every file: asked once. */
	if (!v->buffered) {
		v->files[v->n - 1].dfd = openat(v->dirfd, name, O_WRONLY | O_DIRECT | O_CLOEXEC);
		if (v->files[v->n - 1].dfd < 0 && errno == EINVAL)
			v->buffered = true;
	}
	v->appending = true;
	v->head = 0;
	return 0;
}

static size_t align_up(size_t n)
{
	return (n + VLOG_ALIGN - 1) / VLOG_ALIGN * VLOG_ALIGN;
}

/* Makes buf hold at least cap bytes, keeping its first head bytes. */
static int buf_reserve(store *s, size_t cap)
{
	vlog *v = &s->vl;
	void *nb;

	if (cap <= v->buf_cap)
		return 0;
	cap = align_up(cap > 2 * v->buf_cap ? cap : 2 * v->buf_cap);
	if (posix_memalign(&nb, VLOG_ALIGN, cap) != 0)
		return store_fail(s, RAFT_ENOMEM, "value log: out of memory for a %zu-byte save",
				  cap);
	if (v->head)
		memcpy(nb, v->buf, v->head);
	free(v->buf);
	v->buf = nb;
	v->buf_cap = cap;
	return 0;
}

/* Writes buf[0..len) at off of f: directly if f takes direct writes, else
 * (or once the filesystem refused one: EINVAL) through the page cache. */
static int write_save(store *s, vlog_file *f, uint64_t off, size_t len)
{
	vlog *v = &s->vl;
	int fd = f->dfd >= 0 ? f->dfd : f->fd;
	const uint8_t *p = v->buf;
	size_t left = len;

	while (left > 0) {
		ssize_t w = pwrite(fd, p, left, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EINVAL && fd == f->dfd) {
			/* No direct writes here (or not at this alignment):
			 * this one again through the page cache, and every
			 * later one, in this file and the next ones. */
			close(f->dfd);
			f->dfd = -1;
			fd = f->fd;
			v->buffered = true;
			continue;
		}
		if (w <= 0)
			return store_fail(s, w < 0 ? -errno : RAFT_EIO,
					  "value log: write %zu bytes to %s/%016llx.vlog at %llu: %s",
					  left, v->dir, (unsigned long long)f->seq,
					  (unsigned long long)off, w < 0 ? strerror(errno) : "no progress");
		p += w;
		left -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* Fills entry e's reference, its data placed at the end of f. */
static void place(vlog_file *f, const raft_entry *e, uint8_t *r)
{
	r[0] = 0;
	r[1] = (uint8_t)e->type;
	be64_put(r + 2, e->term);
	be64_put(r + 10, e->index);
	be64_put(r + 18, f->seq);
	be64_put(r + 26, f->size);
	be32_put(r + 34, e->len);
	be32_put(r + 38, crc32c_extend(0, e->data, e->len));
	f->size += e->len;
	if (e->index > f->max_index)
		f->max_index = e->index;
}

/* A direct save: the entries' data copied into the aligned buffer after the
 * partial block the last save ended in (written again: direct writes take
 * whole blocks), padded with zeros to a whole block. */
static int append_direct(store *s, vlog_file *f, const raft_entry *ents, size_t n,
			 uint8_t *refs, size_t total)
{
	vlog *v = &s->vl;
	uint64_t base = f->size - v->head;
	size_t at = v->head, end = align_up(at + total);
	int rv = buf_reserve(s, end);

	if (rv != 0)
		return rv;
	for (size_t i = 0; i < n; i++) {
		if (!vlog_wants(&ents[i]))
			continue;
		memcpy(v->buf + at, ents[i].data, ents[i].len);
		at += ents[i].len;
		place(f, &ents[i], refs + i * VLOG_REF_BYTES);
	}
	memset(v->buf + at, 0, end - at);
	rv = write_save(s, f, base, end);
	if (rv != 0)
		return rv;
	memmove(v->buf, v->buf + (at - at % VLOG_ALIGN), at % VLOG_ALIGN);
	v->head = v->buffered ? 0 : at % VLOG_ALIGN; /* refused just now: no more blocks */
	if (v->buf_cap > VLOG_BUF_KEEP) {
		/* One huge save (a follower catching up) need not pin its
		 * buffer for good. */
		void *nb;

		if (posix_memalign(&nb, VLOG_ALIGN, VLOG_ALIGN) == 0) {
			memcpy(nb, v->buf, v->head);
			free(v->buf);
			v->buf = nb;
			v->buf_cap = VLOG_ALIGN;
		}
	}
	return 0;
}

/* A buffered save: the entries' data written where it is, by pwritev at
 * the end of f (past a direct save's padding, if the file had those, which
 * it then overwrites): the page cache takes its copy, no other is made. */
static int append_buffered(store *s, vlog_file *f, const raft_entry *ents, size_t n,
			   uint8_t *refs)
{
	vlog *v = &s->vl;
	uint64_t off = f->size;
	size_t i = 0, skip = 0; /* where the writing is: ents[i], skip bytes in */

	for (size_t k = 0; k < n; k++)
		if (vlog_wants(&ents[k]))
			place(f, &ents[k], refs + k * VLOG_REF_BYTES);
	while (i < n) {
		struct iovec iov[WRITE_IOVS];
		int cnt = 0;
		ssize_t w;

		for (size_t k = i; k < n && cnt < WRITE_IOVS; k++) {
			if (!vlog_wants(&ents[k]))
				continue;
			iov[cnt].iov_base = ents[k].data + (k == i ? skip : 0);
			iov[cnt++].iov_len = ents[k].len - (k == i ? skip : 0);
		}
		if (cnt == 0)
			break;
		w = pwritev(f->fd, iov, cnt, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return store_fail(s, w < 0 ? -errno : RAFT_EIO,
					  "value log: write to %s/%016llx.vlog at %llu: %s", v->dir,
					  (unsigned long long)f->seq, (unsigned long long)off,
					  w < 0 ? strerror(errno) : "no progress");
		off += (uint64_t)w;
		/* Moves past what was written: whole entries, then a part. */
		for (; i < n && w > 0; i++) {
			size_t left = vlog_wants(&ents[i]) ? ents[i].len - skip : 0;

			if ((size_t)w < left) {
				skip += (size_t)w;
				break;
			}
			w -= (ssize_t)left;
			skip = 0;
		}
		while (i < n && !vlog_wants(&ents[i]))
			i++;
	}
	return 0;
}

int vlog_append(store *s, const raft_entry *ents, size_t n, uint8_t *refs)
{
	vlog *v = &s->vl;
	vlog_file *f;
	size_t total = 0;
	int rv;

	for (size_t i = 0; i < n; i++)
		if (vlog_wants(&ents[i]))
			total += ents[i].len;
	if (total == 0)
		return 0;
	if (v->appending && v->files[v->n - 1].size >= VLOG_FILE_BYTES)
		v->appending = false;
	if (!v->appending && (rv = start_file(s)) != 0)
		return rv;
	f = &v->files[v->n - 1];
	/* Written here, before RocksDB's batch naming it: a process killed
	 * after that batch finds the whole save's data (a direct write is
	 * on the device once it returned, a buffered one in the page cache),
	 * as it did before direct writes. Only a power cut can leave the
	 * newest save's data torn, which open finds (vlog.h). */
	if (v->buffered)
		rv = append_buffered(s, f, ents, n, refs);
	else
		rv = append_direct(s, f, ents, n, refs, total);
	if (rv != 0) {
		v->appending = false; /* its end is unknown: the next save starts a file */
		v->head = 0;
		return rv;
	}
	/* One thread for the store's life; without one (it could not be
	 * started) the wait syncs on the caller's thread, as before. */
	if (!v->syncer && !v->sync_inline && vlog_syncer_new(&v->syncer) != 0)
		v->sync_inline = true;
	v->sync_fd = f->fd;
	v->sync_seq = f->seq;
	if (v->syncer)
		vlog_syncer_start(v->syncer, f->fd);
	return v->serial ? vlog_append_wait(s) : 0;
}

int vlog_sync_wait(vlog *v)
{
	int rv;

	if (v->sync_fd < 0)
		return 0;
	if (v->syncer)
		rv = vlog_syncer_wait(v->syncer);
	else
		rv = fdatasync(v->sync_fd) == 0 ? 0 : -errno;
	v->sync_fd = -1;
	return rv;
}

int vlog_append_wait(store *s)
{
	vlog *v = &s->vl;
	int rv = vlog_sync_wait(v);

	if (rv != 0)
		return store_sync_failed(s, store_fail(s, rv, "value log: sync %s/%016llx.vlog: %s",
						       v->dir, (unsigned long long)v->sync_seq,
						       strerror(-rv)));
	return 0;
}

uint64_t vlog_ref_term(const uint8_t *ref)
{
	return be64_get(ref + 2);
}

int vlog_read(store *s, uint64_t index, const uint8_t *ref, raft_entry *e)
{
	uint64_t seq = be64_get(ref + 18), off = be64_get(ref + 26);
	uint32_t len = be32_get(ref + 34), crc = be32_get(ref + 38);
	vlog_file *f = file_find(&s->vl, seq);
	uint8_t *data;
	size_t got = 0;

	if (be64_get(ref + 10) != index)
		return store_fail(s, RAFT_ECORRUPT, "entry %llu: its reference names entry %llu",
				  (unsigned long long)index,
				  (unsigned long long)be64_get(ref + 10));
	if (!f || off + len > f->size)
		return store_fail(s, RAFT_ECORRUPT,
				  "entry %llu: %u bytes at %llu of %s/%016llx.vlog, which %s",
				  (unsigned long long)index, len, (unsigned long long)off,
				  s->vl.dir, (unsigned long long)seq,
				  f ? "is shorter" : "is missing");
	data = malloc(len ? len : 1);
	if (!data)
		return store_fail(s, RAFT_ENOMEM, "entry %llu: out of memory for %u bytes",
				  (unsigned long long)index, len);
	while (got < len) {
		ssize_t r = pread(f->fd, data + got, len - got, (off_t)(off + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int rv = store_fail(s, r < 0 ? -errno : RAFT_ECORRUPT,
					    "entry %llu: read %s/%016llx.vlog at %llu: %s",
					    (unsigned long long)index, s->vl.dir,
					    (unsigned long long)seq, (unsigned long long)(off + got),
					    r < 0 ? strerror(errno) : "end of file");
			free(data);
			return rv;
		}
		got += (size_t)r;
	}
	if (crc32c_extend(0, data, len) != crc) {
		free(data);
		return store_fail(s, RAFT_ECORRUPT,
				  "entry %llu: checksum mismatch in %u bytes at %llu of "
				  "%s/%016llx.vlog",
				  (unsigned long long)index, len, (unsigned long long)off,
				  s->vl.dir, (unsigned long long)seq);
	}
	e->type = (raft_entry_type)ref[1];
	e->term = be64_get(ref + 2);
	e->index = index;
	e->len = len;
	e->data = len ? data : (free(data), NULL);
	return 0;
}

/* Files that are done with: not the one taking data, and every entry ever
 * written to them compacted. */
static bool file_done(const vlog *v, size_t i, uint64_t index)
{
	return !(v->appending && i == v->n - 1) && v->files[i].max_index <= index;
}

bool vlog_droppable(const store *s, uint64_t index)
{
	for (size_t i = 0; i < s->vl.n; i++)
		if (file_done(&s->vl, i, index))
			return true;
	return false;
}

void vlog_drop(store *s, uint64_t index)
{
	for (size_t i = s->vl.n; i-- > 0;)
		if (file_done(&s->vl, i, index))
			file_remove(s, i);
}

void vlog_drop_all(store *s)
{
	s->vl.appending = false; /* the next big entry starts a new file */
	s->vl.head = 0;
	for (size_t i = s->vl.n; i-- > 0;)
		file_remove(s, i);
}
