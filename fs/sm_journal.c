// The apply journal: fixed-size checksummed records appended to DATA/sm/journal.
#include "sm_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Records are 128 bytes, so none straddles a page, and one pwrite of one
// record is all or nothing even under SIGKILL (the kernel checks for fatal
// signals only between pages).
#define REC_SIZE 128
#define JOURNAL_MAGIC 0x4a4d5352u // "RSMJ"

uint64_t sm_hash(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t mix(uint64_t x)
{
	x *= 0xff51afd7ed558ccdULL;
	return x ^ (x >> 32);
}

static uint64_t load64(const unsigned char *p)
{
	uint64_t w;
	memcpy(&w, p, 8);
	return w;
}

uint64_t sm_cmd_hash(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t seed = 0x9e3779b97f4a7c15ULL ^ len;
	uint64_t a = seed, b = seed + 1, c = seed + 2, d = seed + 3;
	// The lanes do not depend on each other, so their multiplies overlap.
	for (; len >= 32; len -= 32, p += 32) {
		a = mix(a ^ load64(p));
		b = mix(b ^ load64(p + 8));
		c = mix(c ^ load64(p + 16));
		d = mix(d ^ load64(p + 24));
	}
	for (; len >= 8; len -= 8, p += 8)
		a = mix(a ^ load64(p));
	uint64_t tail = 0;
	memcpy(&tail, p, len);
	a = mix(a ^ tail ^ ((uint64_t)len << 56));
	return mix(mix(mix(a ^ b) ^ c) ^ d);
}

// Layout (host byte order: the journal never leaves the node):
// 0 magic u32 | 4 flags u32 | 8 index | 16 client | 24 seq | 32 min_pending |
// 40 a | 48 b | 56 result i32 | 60 mode u32 | 64 gid u32 | 68 sub u32 |
// 72 cmd_hash | 80 results | 88 nsub u32 | ... zero ... | 120 hash of bytes
// 0..119. Records written before batches have zeros where sub, results and
// nsub are: a plain command's record.
static void encode(const struct sm_record *r, unsigned char *s)
{
	uint32_t magic = JOURNAL_MAGIC;
	memset(s, 0, REC_SIZE);
	memcpy(s + 0, &magic, 4);
	memcpy(s + 4, &r->flags, 4);
	memcpy(s + 8, &r->index, 8);
	memcpy(s + 16, &r->client, 8);
	memcpy(s + 24, &r->seq, 8);
	memcpy(s + 32, &r->min_pending, 8);
	memcpy(s + 40, &r->a, 8);
	memcpy(s + 48, &r->b, 8);
	memcpy(s + 56, &r->result, 4);
	memcpy(s + 60, &r->mode, 4);
	memcpy(s + 64, &r->gid, 4);
	memcpy(s + 68, &r->sub, 4);
	memcpy(s + 72, &r->cmd_hash, 8);
	memcpy(s + 80, &r->results, 8);
	memcpy(s + 88, &r->nsub, 4);
	uint64_t h = sm_hash(s, 120);
	memcpy(s + 120, &h, 8);
}

static bool decode(const unsigned char *s, struct sm_record *r)
{
	uint32_t magic;
	uint64_t h;
	memcpy(&magic, s, 4);
	memcpy(&h, s + 120, 8);
	if (magic != JOURNAL_MAGIC || h != sm_hash(s, 120))
		return false;
	memcpy(&r->flags, s + 4, 4);
	memcpy(&r->index, s + 8, 8);
	memcpy(&r->client, s + 16, 8);
	memcpy(&r->seq, s + 24, 8);
	memcpy(&r->min_pending, s + 32, 8);
	memcpy(&r->a, s + 40, 8);
	memcpy(&r->b, s + 48, 8);
	memcpy(&r->result, s + 56, 4);
	memcpy(&r->mode, s + 60, 4);
	memcpy(&r->gid, s + 64, 4);
	memcpy(&r->sub, s + 68, 4);
	memcpy(&r->cmd_hash, s + 72, 8);
	memcpy(&r->results, s + 80, 8);
	memcpy(&r->nsub, s + 88, 4);
	return r->sub <= r->nsub;
}

static int replay(struct sm_journal *j, sm_replay_fn fn, void *arg)
{
	enum { BATCH = 256 };
	const size_t bufsize = BATCH * REC_SIZE;
	unsigned char *buf = malloc(bufsize);
	if (!buf)
		return -ENOMEM;
	int rc = 0;
	struct sm_record prev;
	bool have = false;
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(j->fd, buf, bufsize, off);
		if (n < 0) {
			rc = -errno;
			fprintf(stderr, "sm: read journal: %s\n", strerror(-rc));
			break;
		}
		ssize_t k;
		for (k = 0; k + REC_SIZE <= n; k += REC_SIZE) {
			struct sm_record r;
			if (!decode(buf + k, &r))
				break;
			if (have && (rc = fn(arg, &prev, false)))
				break;
			prev = r;
			have = true;
			j->last = off + k;
		}
		off += k;
		if (rc || k < (ssize_t)bufsize)
			break; // the end, or a torn record: the log ends here
	}
	free(buf);
	j->end = off;
	if (rc)
		return rc;
	return have ? fn(arg, &prev, true) : 0;
}

int sm_journal_open(int dirfd, struct sm_journal *j, sm_replay_fn fn, void *arg)
{
	j->dirfd = dirfd;
	j->last = -1;
	j->end = 0;
	j->fd = openat(dirfd, "journal", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->fd < 0) {
		int err = errno;
		fprintf(stderr, "sm: open journal: %s\n", strerror(err));
		return -err;
	}
	int rc = replay(j, fn, arg);
	if (rc)
		sm_journal_close(j);
	return rc;
}

static int write_at(struct sm_journal *j, const struct sm_record *rec, off_t off)
{
	unsigned char s[REC_SIZE];
	encode(rec, s);
	ssize_t n = pwrite(j->fd, s, REC_SIZE, off);
	if (n != REC_SIZE) {
		int err = n < 0 ? errno : EIO;
		fprintf(stderr, "sm: write journal record %llu: %s\n",
			(unsigned long long)rec->index, strerror(err));
		return -err;
	}
	return 0;
}

int sm_journal_append(struct sm_journal *j, const struct sm_record *rec)
{
	int rc = write_at(j, rec, j->end);
	if (!rc) {
		j->last = j->end;
		j->end += REC_SIZE;
	}
	return rc;
}

int sm_journal_rewrite_last(struct sm_journal *j, const struct sm_record *rec)
{
	return j->last < 0 ? -ENOENT : write_at(j, rec, j->last);
}

int sm_journal_restart(struct sm_journal *j, const struct sm_record *rec)
{
	int fd = openat(j->dirfd, "journal.new", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		int err = errno;
		fprintf(stderr, "sm: create journal.new: %s\n", strerror(err));
		return -err;
	}
	unsigned char s[REC_SIZE];
	encode(rec, s);
	if (pwrite(fd, s, REC_SIZE, 0) != REC_SIZE ||
	    renameat(j->dirfd, "journal.new", j->dirfd, "journal")) {
		int err = errno ? errno : EIO;
		fprintf(stderr, "sm: restart journal: %s\n", strerror(err));
		close(fd);
		return -err;
	}
	close(j->fd);
	j->fd = fd;
	j->last = 0;
	j->end = REC_SIZE;
	return 0;
}

off_t sm_journal_size(const struct sm_journal *j)
{
	return j->end;
}

void sm_journal_close(struct sm_journal *j)
{
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
}
