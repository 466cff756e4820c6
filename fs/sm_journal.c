// The apply journal: two alternating fixed-size slots in DATA/sm/journal.
#include "sm_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SLOT_SIZE 80
#define JOURNAL_MAGIC 0x4a4d5352u // "RSMJ"

uint64_t sm_hash(const void *data, uint64_t len)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (uint64_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

// Slot layout (host byte order: the journal never leaves the node):
// magic u32 | flags u32 | index | client | seq | a | b | result i32 | mode u32 |
// gid u32 | pad u32 | cmd_hash | hash
static void encode(const struct sm_record *r, unsigned char *s)
{
	uint32_t magic = JOURNAL_MAGIC, pad = 0;
	memset(s, 0, SLOT_SIZE);
	memcpy(s + 0, &magic, 4);
	memcpy(s + 4, &r->flags, 4);
	memcpy(s + 8, &r->index, 8);
	memcpy(s + 16, &r->client, 8);
	memcpy(s + 24, &r->seq, 8);
	memcpy(s + 32, &r->a, 8);
	memcpy(s + 40, &r->b, 8);
	memcpy(s + 48, &r->result, 4);
	memcpy(s + 52, &r->mode, 4);
	memcpy(s + 56, &r->gid, 4);
	memcpy(s + 60, &pad, 4);
	memcpy(s + 64, &r->cmd_hash, 8);
	uint64_t h = sm_hash(s, 72);
	memcpy(s + 72, &h, 8);
}

static bool decode(const unsigned char *s, struct sm_record *r)
{
	uint32_t magic;
	uint64_t h;
	memcpy(&magic, s, 4);
	memcpy(&h, s + 72, 8);
	if (magic != JOURNAL_MAGIC || h != sm_hash(s, 72))
		return false;
	memcpy(&r->flags, s + 4, 4);
	memcpy(&r->index, s + 8, 8);
	memcpy(&r->client, s + 16, 8);
	memcpy(&r->seq, s + 24, 8);
	memcpy(&r->a, s + 32, 8);
	memcpy(&r->b, s + 40, 8);
	memcpy(&r->result, s + 48, 4);
	memcpy(&r->mode, s + 52, 4);
	memcpy(&r->gid, s + 56, 4);
	memcpy(&r->cmd_hash, s + 64, 8);
	return true;
}

int sm_journal_open(int dirfd, struct sm_journal *j, struct sm_record *last, bool *have)
{
	j->fd = openat(dirfd, "journal", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->fd < 0) {
		int err = errno;
		fprintf(stderr, "sm: open journal: %s\n", strerror(err));
		return -err;
	}
	unsigned char buf[2 * SLOT_SIZE];
	ssize_t n = pread(j->fd, buf, sizeof(buf), 0);
	if (n < 0) {
		int err = errno;
		fprintf(stderr, "sm: read journal: %s\n", strerror(err));
		close(j->fd);
		return -err;
	}
	*have = false;
	for (int i = 0; i < 2; i++) {
		struct sm_record r;
		if ((i + 1) * SLOT_SIZE <= n && decode(buf + i * SLOT_SIZE, &r) &&
		    (!*have || r.index > last->index)) {
			*last = r;
			*have = true;
		}
	}
	return 0;
}

int sm_journal_write(struct sm_journal *j, const struct sm_record *rec)
{
	unsigned char s[SLOT_SIZE];
	encode(rec, s);
	ssize_t n = pwrite(j->fd, s, SLOT_SIZE, (off_t)(rec->index % 2) * SLOT_SIZE);
	if (n != SLOT_SIZE) {
		int err = n < 0 ? errno : EIO;
		fprintf(stderr, "sm: write journal record %llu: %s\n",
			(unsigned long long)rec->index, strerror(err));
		return -err;
	}
	return 0;
}

void sm_journal_close(struct sm_journal *j)
{
	if (j->fd >= 0)
		close(j->fd);
	j->fd = -1;
}
