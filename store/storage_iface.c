/* storage_iface.c — the store seen through the Raft core's raft_storage
 * table (consensus/storage.h): thin adapters over store.h. */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

static int iface_initial_state(void *ctx, raft_hard_state *hs, raft_conf_state *cs)
{
	store *s = ctx;
	store_hard_state(s, hs);
	return store_conf_state(s, cs);
}

static int iface_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t max_bytes, raft_entry **out,
			 size_t *n)
{
	return store_entries(ctx, lo, hi, max_bytes, out, n);
}

static int iface_term(void *ctx, uint64_t index, uint64_t *term)
{
	return store_term(ctx, index, term);
}

static int iface_first_index(void *ctx, uint64_t *index)
{
	*index = store_first_index(ctx);
	return 0;
}

static int iface_last_index(void *ctx, uint64_t *index)
{
	*index = store_last_index(ctx);
	return 0;
}

/* Metadata always; the data inline only when small (see store.h). */
static int iface_snapshot(void *ctx, raft_snapshot *out)
{
	store *s = ctx;
	uint64_t len;
	memset(out, 0, sizeof(*out));
	int rv = store_snapshot_meta(s, &out->meta, &len);
	if (rv != 0 || len == 0 || len > STORE_SNAPSHOT_INLINE_MAX)
		return rv;
	out->data = malloc(len);
	if (!out->data) {
		raft_snapshot_free_contents(out);
		return store_fail(s, RAFT_ENOMEM, "read snapshot data: out of memory");
	}
	size_t n;
	rv = store_snapshot_read(s, 0, out->data, len, &n);
	if (rv == 0 && n != len)
		rv = store_fail(s, RAFT_ECORRUPT, "read snapshot data: %zu of %llu bytes", n,
				(unsigned long long)len);
	if (rv != 0) {
		raft_snapshot_free_contents(out);
		return rv;
	}
	out->len = len;
	return 0;
}

void store_iface_init(store *s)
{
	s->iface = (raft_storage){
	    .ctx = s,
	    .initial_state = iface_initial_state,
	    .entries = iface_entries,
	    .term = iface_term,
	    .first_index = iface_first_index,
	    .last_index = iface_last_index,
	    .snapshot = iface_snapshot,
	};
}

raft_storage *store_raft_storage(store *s)
{
	return &s->iface;
}
