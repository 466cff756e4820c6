/* memory_storage.c — raft_storage over a growable in-memory array (tests, sim).
 *
 * ents[0] is a dummy entry holding the index and term of the last snapshot
 * (0/0 when fresh), so term(snapshot index) is always answerable and every
 * real entry i lives at ents[i - ents[0].index].
 */
#include "memory_storage.h"

#include "blob.h"

#include <stdlib.h>
#include <string.h>

struct memory_storage {
	raft_storage iface;
	raft_hard_state hs;
	raft_conf_state cs;
	raft_snapshot snap;
	raft_entry *ents; /* ents[0] is the dummy */
	size_t n;	  /* >= 1 */
	size_t cap;
};

static uint64_t offset_of(const memory_storage *ms)
{
	return ms->ents[0].index;
}

static uint64_t last_of(const memory_storage *ms)
{
	return ms->ents[0].index + ms->n - 1;
}

static int ms_initial_state(void *ctx, raft_hard_state *hs, raft_conf_state *cs)
{
	memory_storage *ms = ctx;
	*hs = ms->hs;
	return raft_conf_state_copy(cs, &ms->cs);
}

static int ms_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes, raft_entry **out,
		      size_t *n)
{
	memory_storage *ms = ctx;
	*out = NULL;
	*n = 0;
	if (lo <= offset_of(ms))
		return RAFT_ECOMPACTED;
	if (hi > last_of(ms) + 1)
		return RAFT_EUNAVAILABLE;
	if (lo >= hi)
		return 0;
	size_t from = (size_t)(lo - offset_of(ms));
	size_t want = (size_t)(hi - lo);
	size_t count = 0;
	uint64_t bytes = 0;
	/* At least one entry, then as many as fit in max_bytes. */
	while (count < want) {
		uint64_t sz = raft_entry_size(&ms->ents[from + count]);
		if (count > 0 && bytes + sz > max_bytes)
			break;
		bytes += sz;
		count++;
	}
	raft_entry *arr = calloc(count, sizeof(*arr));
	if (!arr)
		return RAFT_ENOMEM;
	for (size_t i = 0; i < count; i++) {
		if (raft_entry_copy(&arr[i], &ms->ents[from + i]) != 0) {
			raft_entries_free(arr, i);
			return RAFT_ENOMEM;
		}
	}
	*out = arr;
	*n = count;
	return 0;
}

static int ms_term(void *ctx, uint64_t index, uint64_t *term)
{
	memory_storage *ms = ctx;
	*term = 0;
	if (index < offset_of(ms))
		return RAFT_ECOMPACTED;
	if (index > last_of(ms))
		return RAFT_EUNAVAILABLE;
	*term = ms->ents[index - offset_of(ms)].term;
	return 0;
}

static int ms_first_index(void *ctx, uint64_t *index)
{
	*index = offset_of(ctx) + 1;
	return 0;
}

static int ms_last_index(void *ctx, uint64_t *index)
{
	*index = last_of(ctx);
	return 0;
}

static int ms_snapshot(void *ctx, raft_snapshot *out)
{
	memory_storage *ms = ctx;
	return raft_snapshot_copy(out, &ms->snap);
}

memory_storage *memory_storage_new(void)
{
	memory_storage *ms = calloc(1, sizeof(*ms));
	if (!ms)
		return NULL;
	ms->cap = 16;
	ms->ents = calloc(ms->cap, sizeof(raft_entry));
	if (!ms->ents) {
		free(ms);
		return NULL;
	}
	ms->n = 1;
	ms->iface = (raft_storage){
	    .ctx = ms,
	    .initial_state = ms_initial_state,
	    .entries = ms_entries,
	    .term = ms_term,
	    .first_index = ms_first_index,
	    .last_index = ms_last_index,
	    .snapshot = ms_snapshot,
	};
	return ms;
}

/* Frees the data of ents[from..n) and shortens the array to from. */
static void truncate_to(memory_storage *ms, size_t from)
{
	for (size_t i = from; i < ms->n; i++) {
		raft_blob_release(ms->ents[i].data);
		ms->ents[i].data = NULL;
	}
	ms->n = from;
}

void memory_storage_free(memory_storage *ms)
{
	if (!ms)
		return;
	truncate_to(ms, 0);
	free(ms->ents);
	raft_conf_state_free_contents(&ms->cs);
	raft_snapshot_free_contents(&ms->snap);
	free(ms);
}

raft_storage *memory_storage_iface(memory_storage *ms)
{
	return &ms->iface;
}

static int reserve(memory_storage *ms, size_t need)
{
	if (need <= ms->cap)
		return 0;
	size_t cap = ms->cap;
	while (cap < need)
		cap *= 2;
	raft_entry *p = realloc(ms->ents, cap * sizeof(*p));
	if (!p)
		return RAFT_ENOMEM;
	ms->ents = p;
	ms->cap = cap;
	return 0;
}

int memory_storage_append(memory_storage *ms, const raft_entry *ents, size_t n)
{
	if (n == 0)
		return 0;
	uint64_t first = offset_of(ms) + 1;
	uint64_t last = ents[n - 1].index;
	if (last < first)
		return 0; /* everything is already compacted */
	if (ents[0].index < first) {
		size_t skip = (size_t)(first - ents[0].index);
		ents += skip;
		n -= skip;
	}
	uint64_t at = ents[0].index - offset_of(ms);
	if (at > ms->n)
		return RAFT_EUNAVAILABLE;
	if (reserve(ms, (size_t)at + n) != 0)
		return RAFT_ENOMEM;
	truncate_to(ms, (size_t)at);
	if (raft_blob_copy_entries(&ms->ents[ms->n], ents, n) != 0)
		return RAFT_ENOMEM;
	ms->n += n;
	return 0;
}

void memory_storage_set_hard_state(memory_storage *ms, const raft_hard_state *hs)
{
	ms->hs = *hs;
}

int memory_storage_set_conf_state(memory_storage *ms, const raft_conf_state *cs)
{
	raft_conf_state copy;
	int rc = raft_conf_state_copy(&copy, cs);
	if (rc != 0)
		return rc;
	raft_conf_state_free_contents(&ms->cs);
	ms->cs = copy;
	return 0;
}

int memory_storage_apply_snapshot(memory_storage *ms, const raft_snapshot *snap)
{
	if (snap->meta.index < ms->snap.meta.index)
		return RAFT_ESNAP_OUT_OF_DATE;
	raft_snapshot copy;
	raft_conf_state cs;
	int rc = raft_snapshot_copy(&copy, snap);
	if (rc != 0)
		return rc;
	rc = raft_conf_state_copy(&cs, &snap->meta.conf);
	if (rc != 0) {
		raft_snapshot_free_contents(&copy);
		return rc;
	}
	raft_snapshot_free_contents(&ms->snap);
	ms->snap = copy;
	raft_conf_state_free_contents(&ms->cs);
	ms->cs = cs;
	truncate_to(ms, 0);
	ms->ents[0] = (raft_entry){.index = snap->meta.index, .term = snap->meta.term};
	ms->n = 1;
	return 0;
}

int memory_storage_create_snapshot(memory_storage *ms, uint64_t index, const raft_conf_state *cs,
				   const void *data, size_t len)
{
	if (index <= ms->snap.meta.index)
		return RAFT_ESNAP_OUT_OF_DATE;
	if (index > last_of(ms))
		return RAFT_EUNAVAILABLE;
	uint64_t term;
	int rc = ms_term(ms, index, &term);
	if (rc != 0)
		return rc;
	raft_snapshot snap = {.meta = {.index = index, .term = term}, .len = len};
	if (cs && raft_conf_state_copy(&snap.meta.conf, cs) != 0)
		return RAFT_ENOMEM;
	if (len) {
		snap.data = malloc(len);
		if (!snap.data) {
			raft_snapshot_free_contents(&snap);
			return RAFT_ENOMEM;
		}
		memcpy(snap.data, data, len);
	}
	raft_snapshot_free_contents(&ms->snap);
	ms->snap = snap;
	return 0;
}

int memory_storage_compact(memory_storage *ms, uint64_t index)
{
	uint64_t off = offset_of(ms);
	if (index <= off)
		return RAFT_ECOMPACTED;
	if (index > last_of(ms))
		return RAFT_EUNAVAILABLE;
	size_t k = (size_t)(index - off);
	/* The entry at index becomes the dummy: keep its index and term only. */
	for (size_t i = 0; i <= k; i++) {
		raft_blob_release(ms->ents[i].data);
		ms->ents[i].data = NULL;
		ms->ents[i].len = 0;
	}
	memmove(&ms->ents[0], &ms->ents[k], (ms->n - k) * sizeof(raft_entry));
	ms->n -= k;
	ms->ents[0].type = RAFT_ENTRY_NORMAL;
	return 0;
}
