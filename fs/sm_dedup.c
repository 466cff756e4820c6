// The duplicate table: fixed slots in DATA/sm/clients, a hash map in memory.
#include "sm_dedup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sm_journal.h"

#define SLOT_SIZE 32

// Slot: client u64 | seq u64 | result i32 | hash32 u32 | reserved u64.
static void encode(const struct sm_client *c, unsigned char *s)
{
	memset(s, 0, SLOT_SIZE);
	memcpy(s, &c->id, 8);
	memcpy(s + 8, &c->seq, 8);
	memcpy(s + 16, &c->result, 4);
	uint64_t h = sm_hash(s, 20);
	uint32_t h32 = (uint32_t)(h ^ (h >> 32));
	memcpy(s + 20, &h32, 4);
}

static int load_slot(struct sm_dedup *d, const unsigned char *s, uint64_t slot)
{
	uint32_t h32;
	memcpy(&h32, s + 20, 4);
	uint64_t h = sm_hash(s, 20);
	struct sm_client c;
	memcpy(&c.id, s, 8);
	if (c.id == 0 || h32 != (uint32_t)(h ^ (h >> 32)))
		return 0; // unused, or torn by a power loss: the client retries
	memcpy(&c.seq, s + 8, 8);
	memcpy(&c.result, s + 16, 4);
	c.slot = slot;
	struct sm_client *p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	*p = c;
	free(tree_map_get(&d->clients, c.id));
	return tree_map_put(&d->clients, c.id, p);
}

static int free_client(uint64_t key, void *val, void *arg)
{
	free(val);
	return 0;
}

int sm_dedup_open(int dirfd, struct sm_dedup *d)
{
	d->nslots = 0;
	int rc = tree_map_init(&d->clients);
	if (rc)
		return rc;
	d->fd = openat(dirfd, "clients", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d->fd < 0) {
		rc = -errno;
		fprintf(stderr, "sm: open duplicate table: %s\n", strerror(-rc));
		tree_map_free(&d->clients);
		return rc;
	}
	unsigned char s[SLOT_SIZE];
	ssize_t n;
	while ((n = pread(d->fd, s, SLOT_SIZE, (off_t)(d->nslots * SLOT_SIZE))) == SLOT_SIZE) {
		rc = load_slot(d, s, d->nslots);
		if (rc)
			break;
		d->nslots++;
	}
	if (!rc && n < 0) {
		rc = -errno;
		fprintf(stderr, "sm: read duplicate table: %s\n", strerror(-rc));
	}
	if (rc)
		sm_dedup_close(d);
	return rc;
}

const struct sm_client *sm_dedup_get(const struct sm_dedup *d, uint64_t client)
{
	return tree_map_get(&d->clients, client);
}

int sm_dedup_put(struct sm_dedup *d, uint64_t client, uint64_t seq, int32_t result)
{
	struct sm_client *c = tree_map_get(&d->clients, client);
	if (!c) {
		c = malloc(sizeof(*c));
		if (!c)
			return -ENOMEM;
		c->id = client;
		c->slot = d->nslots;
		int rc = tree_map_put(&d->clients, client, c);
		if (rc) {
			free(c);
			return rc;
		}
		d->nslots++;
	}
	c->seq = seq;
	c->result = result;
	unsigned char s[SLOT_SIZE];
	encode(c, s);
	if (pwrite(d->fd, s, SLOT_SIZE, (off_t)(c->slot * SLOT_SIZE)) != SLOT_SIZE) {
		int err = errno ? errno : EIO;
		fprintf(stderr, "sm: write duplicate table slot of client %llu: %s\n",
			(unsigned long long)client, strerror(err));
		return -err;
	}
	return 0;
}

void sm_dedup_close(struct sm_dedup *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
	tree_map_each(&d->clients, free_client, NULL);
	tree_map_free(&d->clients);
}
