/* blob.c — shared, reference-counted storage for the data of a batch of entries.
 *
 * Layout: a header with the reference count, then for every entry with
 * data an 8-byte back pointer to the header followed by the data, padded
 * to 8 bytes. raft_blob_release finds the header through the back pointer.
 * A slice (raft_blob_slice) is data anywhere in one entry's bytes (a
 * received frame's) with a back pointer written just before it.
 */
#include "blob.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct blob {
	_Atomic size_t refs;
} blob;

#define ALIGN8(x) (((x) + 7u) & ~(size_t)7u)

int raft_blob_copy_entries(raft_entry *dst, const raft_entry *src, size_t n)
{
	size_t bytes = sizeof(blob), refs = 0;
	for (size_t i = 0; i < n; i++) {
		if (src[i].len) {
			bytes += sizeof(blob *) + ALIGN8((size_t)src[i].len);
			refs++;
		}
	}
	blob *b = NULL;
	if (refs) {
		b = malloc(bytes);
		if (!b)
			return RAFT_ENOMEM;
		atomic_init(&b->refs, refs);
	}
	uint8_t *p = (uint8_t *)(b + 1);
	for (size_t i = 0; i < n; i++) {
		dst[i] = src[i];
		dst[i].data = NULL;
		if (!src[i].len)
			continue;
		memcpy(p, &b, sizeof(b));
		p += sizeof(blob *);
		memcpy(p, src[i].data, src[i].len);
		dst[i].data = p;
		p += ALIGN8((size_t)src[i].len);
	}
	return 0;
}

uint8_t *raft_blob_new(size_t len)
{
	blob *b = malloc(sizeof(blob) + sizeof(blob *) + ALIGN8(len));
	if (!b)
		return NULL;
	atomic_init(&b->refs, 1);
	uint8_t *p = (uint8_t *)(b + 1);
	memcpy(p, &b, sizeof(b));
	return p + sizeof(blob *);
}

bool raft_blob_shared(const uint8_t *data)
{
	blob *b;
	memcpy(&b, data - sizeof(blob *), sizeof(b));
	return atomic_load(&b->refs) > 1;
}

void raft_blob_release(uint8_t *data)
{
	if (!data)
		return;
	blob *b;
	memcpy(&b, data - sizeof(blob *), sizeof(b));
	if (atomic_fetch_sub(&b->refs, 1) == 1)
		free(b);
}

void raft_data_release(uint8_t *data, bool shared)
{
	if (shared)
		raft_blob_release(data);
	else
		free(data);
}

void raft_blob_slice(const uint8_t *buf, uint8_t *data)
{
	blob *b;
	memcpy(&b, buf - sizeof(blob *), sizeof(b));
	memcpy(data - sizeof(blob *), &b, sizeof(b));
	atomic_fetch_add(&b->refs, 1);
}

void raft_blob_ref(uint8_t *data)
{
	if (!data)
		return;
	blob *b;
	memcpy(&b, data - sizeof(blob *), sizeof(b));
	atomic_fetch_add(&b->refs, 1);
}
